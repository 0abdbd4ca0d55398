"""The Ray searcher adapter: Tune asks `SweepSearcher`, which asks a tune_distill searcher.

What it does: `SweepSearcher` is a `ray.tune.search.Searcher` around a `search.Searcher`
(multi-objective with constraints, which Ray's own OptunaSearch cannot do). Its suggestions are
{number, kind, params (sampled), overrides (resolved config keys)}; the baseline, if any, is
suggestion 0 and is never shown to the wrapped searcher. A trial's last result reaches the wrapped
searcher once (complete, pruned by the scheduler, or failed), and `save`/`restore` carry the
wrapped searcher's state so a resumed sweep continues from what it saw.

What it must not know: how trials run, the scheduler, files other than Tune's searcher checkpoint.

Example (CPU, a minute; the smoke sweep's searcher goes through it):
    tune-distill sweep --preset smoke --out sweeps/smoke --num-samples 3
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Sequence

from ray.tune.search import Searcher as RaySearcher

from tune_distill.search import Constraint, Objective, SearcherError, SearchSpace, restore_searcher

log = logging.getLogger(__name__)


class SweepSearcher(RaySearcher):
    """Ray Tune searcher around a tune_distill `search.Searcher`.

    suggest -> {number, kind, params (sampled), overrides (resolved config keys)}; the baseline, if
    any, is suggestion 0 and is not shown to the wrapped searcher (it usually lies outside the space).
    A trial's last result reaches the wrapped searcher once: `final: True` -> complete (objectives and
    constraint metrics), no final flag -> pruned by the scheduler (its last values given), error ->
    failed. `save`/`restore` carry the wrapped searcher's state bytes, so a resumed sweep continues.
    """

    def __init__(self, searcher: Any, space: SearchSpace, objectives: Sequence[Objective],
                 constraints: Sequence[Constraint], num_samples: int, baseline: Mapping[str, Any] | None = None):
        # No metric for Tune: it would demand it in every result, and ours differ between reports.
        super().__init__(metric=None, mode=None)
        # Not called `searcher`: Tune treats objects with a `.searcher` as wrappers when saving state.
        self._inner = searcher
        self._space = space
        self._objectives = tuple(objectives)
        self._constraints = tuple(constraints)
        self._num_samples = int(num_samples)
        self._baseline = dict(baseline) if baseline is not None else None
        self._next_number = 0
        self._outstanding: set[str] = set()  # suggested by the wrapped searcher, not yet observed
        self._observed: dict[str, str] = {}

    @property
    def next_number(self) -> int:
        return self._next_number

    def suggest(self, trial_id: str) -> dict | str | None:
        if self._next_number >= self._num_samples:
            return self.FINISHED
        number = self._next_number
        if number == 0 and self._baseline is not None:
            suggestion = {"number": 0, "kind": "baseline", "params": {}, "overrides": dict(self._baseline)}
        else:
            params = self._inner.suggest(trial_id)
            if params is None:
                log.info("searcher has no more suggestions after %d trials", number)
                return self.FINISHED
            self._outstanding.add(trial_id)
            suggestion = {"number": number, "kind": "search", "params": dict(params),
                          "overrides": self._space.resolve(params)}
        self._next_number += 1
        return suggestion

    def outcome(self, result: Mapping[str, Any] | None, error: bool) -> tuple[str, dict[str, float] | None]:
        """(status, values) the wrapped searcher is told for a trial's last result."""
        if error or not result:
            return "failed", None
        names = [o.name for o in self._objectives] + [c.name for c in self._constraints]
        values = {name: float(result[name]) for name in names
                  if isinstance(result.get(name), (int, float)) and not isinstance(result.get(name), bool)}
        if not result.get("final"):
            return "pruned", values
        missing = [name for name in names if name not in values or not math.isfinite(values[name])]
        if missing:
            log.warning("trial %s finished without %s; the searcher records it as failed", result.get("trial_id"),
                        missing)
            return "failed", None
        return "complete", values

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        status, values = self.outcome(result, error)
        if trial_id not in self._outstanding:
            if trial_id in self._observed:
                log.info("trial %s finished again (%s) after a resume; the searcher keeps its first outcome (%s)",
                         trial_id, status, self._observed[trial_id])
            return
        try:
            self._inner.observe(trial_id, values, status)
        except (SearcherError, ValueError) as problem:  # never let bookkeeping crash the sweep
            log.warning("searcher could not record trial %s (%s): %s", trial_id, status, problem)
        self._outstanding.discard(trial_id)
        self._observed[trial_id] = status

    def get_state(self) -> dict:
        return {"inner": self._inner.state(), "next_number": self._next_number,
                "outstanding": sorted(self._outstanding), "observed": dict(self._observed)}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._inner = restore_searcher(state["inner"])
        self._next_number = int(state["next_number"])
        self._outstanding = set(state["outstanding"])
        self._observed = dict(state["observed"])

    def save(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.get_state(), handle)

    def restore(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "rb") as handle:
            self.set_state(pickle.load(handle))
        log.info("searcher restored: %d trials suggested, %d observed, %d outstanding", self._next_number,
                 len(self._observed), len(self._outstanding))
