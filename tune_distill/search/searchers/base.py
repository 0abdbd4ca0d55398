"""What every searcher shares: the ask/tell protocol, outcome reading, bookkeeping and saved states.

What it does: `Searcher` is the three-method protocol (suggest, observe, state); `_read_outcome`
turns what a trial reported into objective values and constraint violations (or a failure);
`_SearcherBase` keeps trial ids and writes state bytes (`_STATE_HEADER` + a pickle) that
`restore_searcher` reads back; `_HistorySearcher` is the base of the searchers that keep their own
history in the unit-cube encoding (replay, parego, botorch).

What it must not know: any particular algorithm or library (Optuna, hyperopt, BoTorch), Ray or
models. The state header's text is kept from the single-module days so that saved states still load.

Example (CPU, a few seconds):
    python -c "from tune_distill.search.searchers.base import _STATE_HEADER; print(_STATE_HEADER)"
"""

from __future__ import annotations

import logging
import math
import pickle
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Protocol, Sequence

import numpy as np

from tune_distill.search.errors import SearcherError
from tune_distill.search.objectives import Constraint, Objective
from tune_distill.search.space import SearchSpace

logger = logging.getLogger(__name__)

TrialStatus = Literal["complete", "failed", "pruned"]


class Searcher(Protocol):
    """Ask/tell interface shared by every searcher.

    suggest(trial_id) -> sampled parameters (feed them to `SearchSpace.resolve`), or None when the
        searcher has nothing more to propose. May be called again before earlier trials are observed.
    observe(trial_id, values, status) -> record a finished trial: `values` maps every objective and
        constraint metric name to a number; failed trials pass values=None and status="failed".
    state() -> bytes from which `restore_searcher` rebuilds the searcher, pending trials included,
        so that a resumed sweep continues exactly as the uninterrupted one would.
    """

    def suggest(self, trial_id: str) -> dict[str, Any] | None: ...

    def observe(
        self, trial_id: str, values: Mapping[str, float] | None, status: TrialStatus = "complete"
    ) -> None: ...

    def state(self) -> bytes: ...


_STATE_HEADER = b"tune_distill.search.state/1\n"


def restore_searcher(state: bytes) -> Searcher:
    """Rebuild a searcher from `Searcher.state()` bytes (trusted input: it is a pickle)."""
    if not isinstance(state, (bytes, bytearray)) or not bytes(state).startswith(_STATE_HEADER):
        raise SearcherError("not a searcher state written by tune_distill.search (missing header)")
    return pickle.loads(bytes(state)[len(_STATE_HEADER):])


@dataclass
class _Outcome:
    """A finished trial as the searchers see it: objective values (as given) and constraint violations."""

    status: TrialStatus
    objective_values: tuple[float, ...] | None = None
    violations: tuple[float, ...] | None = None


def _read_outcome(
    trial_id: str,
    values: Mapping[str, float] | None,
    status: str,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint],
) -> _Outcome:
    if status not in ("complete", "failed", "pruned"):
        raise SearcherError(f"trial {trial_id}: status must be complete, failed or pruned, got {status!r}")
    if status != "complete":
        return _Outcome(status)
    if values is None:
        logger.warning("trial %s: status 'complete' without values; recorded as failed", trial_id)
        return _Outcome("failed")
    names = [o.name for o in objectives] + [c.name for c in constraints]
    missing = [name for name in names if name not in values]
    if missing:
        raise SearcherError(f"trial {trial_id}: values lack {missing}; got {sorted(values)}")
    numbers = {}
    for name in names:
        try:
            numbers[name] = float(values[name])
        except (TypeError, ValueError):
            raise SearcherError(f"trial {trial_id}: value of {name!r} is not a number: {values[name]!r}") from None
    if not all(math.isfinite(v) for v in numbers.values()):
        logger.warning("trial %s: non-finite values %s; recorded as failed", trial_id, numbers)
        return _Outcome("failed")
    return _Outcome(
        "complete",
        tuple(numbers[o.name] for o in objectives),
        tuple(c.violation(numbers[c.name]) for c in constraints),
    )


class _SearcherBase:
    """Bookkeeping shared by all searchers: trial ids, pending trials, state bytes."""

    def __init__(
        self, space: SearchSpace, objectives: Sequence[Objective], constraints: Sequence[Constraint], seed: int
    ) -> None:
        if not objectives:
            raise SearcherError("at least one objective is needed")
        if len({o.name for o in objectives}) != len(objectives):
            raise SearcherError(f"objective names must be distinct: {[o.name for o in objectives]}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise SearcherError(f"seed must be an integer, got {seed!r}")
        self.space = space
        self.objectives = tuple(objectives)
        self.constraints = tuple(constraints)
        self.seed = int(seed)
        self._seen_ids: set[str] = set()

    def _register(self, trial_id: str) -> None:
        if trial_id in self._seen_ids:
            raise SearcherError(f"trial id {trial_id!r} was already suggested")
        self._seen_ids.add(trial_id)

    def state(self) -> bytes:
        return _STATE_HEADER + pickle.dumps(self)


class _HistorySearcher(_SearcherBase):
    """Searchers that keep their own history: suggestions in the unit cube, outcomes by trial id."""

    def __init__(self, space, objectives, constraints, seed) -> None:
        super().__init__(space, objectives, constraints, seed)
        self._rng = np.random.default_rng(self.seed)
        self._pending: dict[str, dict[str, Any]] = {}
        self._completed: list[tuple[dict[str, Any], np.ndarray, np.ndarray]] = []  # params, minimised y, violations
        self._n_suggested = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        self._register(trial_id)
        params = self._propose()
        self._n_suggested += 1
        self._pending[trial_id] = params
        return dict(params)

    def observe(self, trial_id: str, values: Mapping[str, float] | None, status: TrialStatus = "complete") -> None:
        if trial_id not in self._pending:
            raise SearcherError(f"{type(self).__name__}: trial {trial_id!r} is not pending")
        outcome = _read_outcome(trial_id, values, status, self.objectives, self.constraints)
        params = self._pending.pop(trial_id)
        if outcome.status == "complete":
            signs = np.array([-1.0 if o.direction == "max" else 1.0 for o in self.objectives])
            self._completed.append(
                (params, signs * np.array(outcome.objective_values), np.array(outcome.violations, dtype=float))
            )

    def _history_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit-cube X, minimised Y and violations V of the completed trials."""
        X = np.array([[p.to_unit(params[p.name]) for p in self.space.params] for params, _, _ in self._completed])
        Y = np.array([y for _, y, _ in self._completed])
        V = np.array([v for _, _, v in self._completed]).reshape(len(self._completed), len(self.constraints))
        return X.reshape(len(self._completed), len(self.space.params)), Y, V

    def _propose(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError
