"""The Ray searcher adapter: Tune asks `SweepSearcher`, which asks a tune_distill searcher.

What it does: `SweepSearcher` is a `ray.tune.search.Searcher` around a `search.Searcher`
(multi-objective with constraints, which Ray's own OptunaSearch cannot do). Its suggestions are
{number, kind, params (sampled), overrides (resolved config keys)}; the baseline, if any, is
suggestion 0 and is never shown to the wrapped searcher. A trial's last result reaches the wrapped
searcher once (complete, pruned by the scheduler, or failed), and `save`/`restore` carry the
wrapped searcher's state (plain data, JSON) so a resumed sweep continues from what it saw. Each outstanding
trial's last reported values are kept (objectives, constraint metrics, final flag) for a trial Tune stops while
it is PAUSED (pareto_sh's rung_fill): Tune then reports it with no result, and it is told as pruned with them.

What it must not know: how trials run, the scheduler, files other than Tune's searcher checkpoint.

Example (CPU, a minute; the smoke sweep's searcher goes through it):
    tune-distill sweep --preset smoke --out sweeps/smoke --num-samples 3
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from ray.tune.search import Searcher as RaySearcher

from tune_distill.search import Constraint, Objective, SearcherError, SearchSpace, restore_searcher
from tune_distill.signing import require_trusted_pickle

log = logging.getLogger(__name__)


class SweepSearcher(RaySearcher):
    """Ray Tune searcher around a tune_distill `search.Searcher`.

    suggest -> {number, kind, params (sampled), overrides (resolved config keys)}; the baseline, if
    any, is suggestion 0 and is not shown to the wrapped searcher (it usually lies outside the space).
    A trial's last result reaches the wrapped searcher once: `final: True` -> complete (objectives and
    constraint metrics), no final flag -> pruned by the scheduler (its last values given), error ->
    failed. A trial completed with no result and no error (one Tune stopped while PAUSED, e.g. by pareto_sh's
    rung_fill at its rung) is told with the last values `on_trial_result` kept for it (pruned), or as failed when
    it never reported. `save`/`restore` carry the wrapped searcher's state bytes, so a resumed sweep continues.
    """

    def __init__(self, searcher: Any, space: SearchSpace, objectives: Sequence[Objective],
                 constraints: Sequence[Constraint], num_samples: int, baseline: Mapping[str, Any] | None = None,
                 suggestions_log: str | None = None):
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
        self._last: dict[str, dict[str, Any]] = {}  # outstanding trial -> its last reported values (`_kept`)
        self.suggestions_log = suggestions_log  # SUGGESTIONS_FILE: one line per suggestion, appended

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A searcher pickled before paused trials' last values were kept (tuner.pkl of an older sweep) has none.
        self.__dict__.update({"_last": {}, **state})

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
            began = time.perf_counter()
            params = self._inner.suggest(trial_id)
            self._log_suggestion(number, time.perf_counter() - began)
            if params is None:
                log.info("searcher has no more suggestions after %d trials", number)
                return self.FINISHED
            self._outstanding.add(trial_id)
            suggestion = {"number": number, "kind": "search", "params": dict(params),
                          "overrides": self._space.resolve(params)}
        self._next_number += 1
        return suggestion

    def _log_suggestion(self, number: int, seconds: float) -> None:
        """suggestions.jsonl: the suggestion's number, the trials the searcher had seen (finished, running) and how
        long it took, appended (a sweep's searcher cost as it grows; a failed write is a warning, never a stop)."""
        if not getattr(self, "suggestions_log", None):  # a searcher pickled before the log was kept has none
            return
        line = {"number": number, "observed": len(self._observed), "running": len(self._outstanding),
                "seconds": round(seconds, 4), "time": round(time.time(), 3)}
        try:
            with open(self.suggestions_log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(line) + "\n")
        except OSError as problem:
            log.warning("could not append to %s (%s); suggestion times are no longer logged", self.suggestions_log,
                        problem)
            self.suggestions_log = None

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

    def _kept(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """What `outcome` reads from a result: the objectives' and constraints' numbers, and the final flag."""
        names = [o.name for o in self._objectives] + [c.name for c in self._constraints]
        kept: dict[str, Any] = {name: float(result[name]) for name in names
                                if isinstance(result.get(name), (int, float)) and not isinstance(result.get(name), bool)
                                and math.isfinite(result[name])}
        if result.get("final"):
            kept["final"] = True
        return kept

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Keep an outstanding trial's last values, for a completion that comes without a result."""
        if trial_id in self._outstanding and result:
            self._last[trial_id] = self._kept(result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result is None and not error and self._last.get(trial_id):
            result = self._last[trial_id]  # stopped while PAUSED: Tune passes no result
            log.info("trial %s was stopped while paused; the searcher is told its last values", trial_id)
        self._last.pop(trial_id, None)
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
                "outstanding": sorted(self._outstanding), "observed": dict(self._observed),
                "last": {trial_id: dict(values) for trial_id, values in self._last.items()}}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._inner = restore_searcher(state["inner"])
        self._next_number = int(state["next_number"])
        self._outstanding = set(state["outstanding"])
        self._observed = dict(state["observed"])
        last = state.get("last") or {}  # absent in states saved before it was kept
        self._last = {trial_id: dict(values) for trial_id, values in last.items() if trial_id in self._outstanding}

    def save(self, checkpoint_path: str) -> None:
        """Tune's searcher checkpoint (tune/searcher-state-*.pkl, a name Tune chooses) as JSON: the adapter's
        counters and the wrapped searcher's state data."""
        state = self.get_state()
        document = {"format": SWEEP_SEARCHER_FORMAT, **state, "inner": _state_text(state["inner"])}
        with open(checkpoint_path, "w", encoding="utf-8") as handle:
            json.dump(document, handle, allow_nan=False)

    def restore(self, checkpoint_path: str) -> None:
        self.set_state(read_searcher_checkpoint(checkpoint_path))
        log.info("searcher restored: %d trials suggested, %d observed, %d outstanding", self._next_number,
                 len(self._observed), len(self._outstanding))


SWEEP_SEARCHER_FORMAT = "tune_distill.sweep.searcher/2"
SUGGESTIONS_FILE = "suggestions.jsonl"


def _state_text(state: bytes) -> str:
    """A searcher's state bytes (a header line and JSON) as text for the checkpoint's JSON."""
    try:
        return state.decode("utf-8")
    except UnicodeDecodeError:  # a pickled (format 1) state cannot be written as data
        raise SearcherError("the wrapped searcher's state is not data (a pickle): it cannot be saved") from None


def read_searcher_checkpoint(path: str | Path) -> dict[str, Any]:
    """The adapter state in Tune's searcher checkpoint `path`: JSON (this version), or a pickle written by an
    earlier version (trusted input only: reading a pickle can run code; refused, signing.UntrustedFolder naming the
    file, outside signing.trusted_pickles). SearcherError names the file."""
    raw = Path(path).read_bytes()
    if raw[:1] != b"{":
        import pickle

        require_trusted_pickle(f"{path}: a pickled searcher checkpoint (written by an earlier tune_distill)")
        log.warning("%s: a pickled searcher checkpoint written by an earlier tune_distill (trusted input only)", path)
        return pickle.loads(raw)
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise SearcherError(f"{path}: not a searcher checkpoint ({error})") from None
    if not isinstance(document, dict) or document.get("format") != SWEEP_SEARCHER_FORMAT:
        raise SearcherError(f"{path}: not a searcher checkpoint (expected format {SWEEP_SEARCHER_FORMAT!r})")
    problems = [key for key, kind in (("inner", str), ("next_number", int), ("outstanding", list),
                                      ("observed", dict)) if not isinstance(document.get(key), kind)]
    last = document.get("last", {})  # optional: absent before paused trials' last values were kept
    if not isinstance(last, dict) or not all(isinstance(values, dict) for values in last.values()):
        problems.append("last")
    if problems:
        raise SearcherError(f"{path}: field(s) {problems} missing or of the wrong type")
    return {**document, "inner": document["inner"].encode("utf-8")}
