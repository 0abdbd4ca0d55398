"""Run any searcher on a plain Python objective: the loop benchmarks and tests use.

What it does: `optimize(objective_fn, space, objectives, constraints, searcher, n_trials, ...)`
suggests `batch_size` trials at a time (as parallel workers would), calls
`objective_fn(space.resolve(sample))` for each and observes the outcomes; an exception, a missing or
a non-finite metric is a failed trial (a `TrialRecord` with its error), never a crash.

What it must not know: Ray, models or data; it is the Ray-free twin of a sweep's trial loop.

Example (CPU, a few seconds):
    python -c "from tune_distill.search import *; s = SearchSpace((Param('x', 'float', 0, 1),)); \\
print(optimize(lambda c: {'y': c['x']}, s, [Objective('y', 'max')], searcher='random', n_trials=3))"
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from tune_distill.pareto import is_feasible
from tune_distill.search.errors import SearcherError
from tune_distill.search.expression import is_number
from tune_distill.search.objectives import Constraint, Objective
from tune_distill.search.searchers import make_searcher
from tune_distill.search.searchers.base import Searcher, TrialStatus
from tune_distill.search.space import SearchSpace

logger = logging.getLogger(__name__)


@dataclass
class TrialRecord:
    """One evaluated trial: what was sampled, what the objective saw, and what came back."""

    trial_id: str
    params: dict[str, Any]
    config: dict[str, Any]
    values: dict[str, float] | None
    status: TrialStatus
    feasible: bool | None = None
    error: str | None = None


def optimize(
    objective_fn: Callable[[dict[str, Any]], Mapping[str, float]],
    space: SearchSpace,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint] = (),
    searcher: str | Searcher = "optuna-tpe",
    n_trials: int = 60,
    seed: int = 0,
    batch_size: int = 1,
    **searcher_options: Any,
) -> list[TrialRecord]:
    """Run `searcher` for `n_trials` evaluations of `objective_fn(space.resolve(sample))`.

    `batch_size` trials are suggested before any of them is observed (as parallel workers would).
    An exception in `objective_fn`, a missing or non-finite metric: a failed trial, not an error.
    """
    if n_trials < 0 or batch_size < 1:
        raise SearcherError(f"need n_trials >= 0 and batch_size >= 1, got {n_trials} and {batch_size}")
    if isinstance(searcher, str):
        searcher = make_searcher(searcher, space, objectives, constraints, seed=seed, **searcher_options)
    elif searcher_options:
        raise SearcherError("searcher options apply only when the searcher is given by name")
    needed = [o.name for o in objectives] + [c.name for c in constraints if c.name not in {o.name for o in objectives}]
    records: list[TrialRecord] = []
    while len(records) < n_trials:
        batch = []
        for _ in range(min(batch_size, n_trials - len(records))):
            trial_id = f"trial_{len(records) + len(batch):04d}"
            params = searcher.suggest(trial_id)
            if params is None:
                break
            batch.append((trial_id, params))
        if not batch:
            logger.info("searcher has no more suggestions after %d trials", len(records))
            break
        finished = [_evaluate(objective_fn, space, trial_id, params, needed, constraints) for trial_id, params in batch]
        for record in finished:
            searcher.observe(record.trial_id, record.values if record.status == "complete" else None, record.status)
            records.append(record)
            logger.debug("%s %s %s %s", record.trial_id, record.status, record.values, record.params)
    n_failed = sum(r.status == "failed" for r in records)
    logger.info("optimize: %d trials, %d failed", len(records), n_failed)
    return records


def _evaluate(objective_fn, space, trial_id, params, needed, constraints) -> TrialRecord:
    config = space.resolve(params)
    try:
        raw = objective_fn(dict(config))
        values = {name: float(raw[name]) for name in needed}
        extra = {name: float(value) for name, value in raw.items() if name not in values and is_number(value)}
        values.update(extra)
    except Exception as error:  # the objective failing is data, not a crash
        return TrialRecord(trial_id, params, config, None, "failed", error=f"{type(error).__name__}: {error}")
    if not all(math.isfinite(values[name]) for name in needed):
        return TrialRecord(trial_id, params, config, values, "failed", error="non-finite metric")
    return TrialRecord(trial_id, params, config, values, "complete", feasible=is_feasible(values, constraints))
