"""Early stopping: Pareto successive halving (`pareto_sh`), baseline-keeping ASHA, and the factory.

What it does: `ParetoSuccessiveHalving` stops trials at rungs (optimiser steps) by ranking them on
several objectives with a `RankingRule` (sweep/ranking.py: non-dominated sorting, then hypervolume
contribution or crowding distance within a front), so small students are not all stopped for a
lower exact; with a `BeyondError` relation (scheduler.rung_rule beyond_error, the default) a trial
counts as dominated only beyond the evaluations' standard errors (`<metric>_se`), so statistical ties
survive a rung, and the baseline is a yardstick, not a competitor (BASELINE_ROLES). Its rung records
persist to a JSON file so a resumed sweep keeps its decisions; `read_scheduler_state` reads one back,
checked (a bad one is one SweepConfigError naming the file and field, before any trial runs on resume).
With `rung_fill` k > 0 (scheduler.rung_fill) a rung decides nothing until it holds k results: earlier arrivals
are PAUSED (Tune saves the checkpoint of that evaluation and ends their actor, but they still hold a
max_concurrent slot) and, once the k-th arrives, or once nothing else can reach the rung (`stuck_rungs`), each
waiting trial is judged as if it had arrived last: kept ones resume from that checkpoint, the others are stopped
where they wait; later arrivals are decided on arrival as before (measured in results/early-stopping-20-workers.md).
`BaselineKeepingASHA` is Ray's ASHA on one metric that never stops the baseline. `pareto_rungs` turns
the settings into rung steps and `make_scheduler` builds the scheduler a sweep config names
(pareto_sh, asha, or fifo: no early stopping).

What it must not know: how trials run, the searcher, the Pareto maths (pareto.py and ranking.py do it).

Example (CPU, instant; decisions fed by hand):
    python -c "from tune_distill.sweep.schedulers import ParetoSuccessiveHalving as P; \
from tune_distill.search.objectives import DEFAULT_OBJECTIVES as O; s = P([2], O, 2); \
print(s.on_result('a', {'step': 2, 'exact': 50, 'parameters': 9}), \
s.on_result('b', {'step': 2, 'exact': 9, 'parameters': 99}))"
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from tune_distill.files import read_json_object, write_json
from tune_distill.search import Objective
from tune_distill.search.objectives import DEFAULT_OBJECTIVES
from tune_distill.sweep.config import INTERMEDIATE_METRICS, WITHIN_FRONT, SchedulerSettings, SweepConfigError
from tune_distill.sweep.ranking import RANKING_RULES, BeyondError, RankingRule, ranking_rule

log = logging.getLogger(__name__)

CONTINUE, STOP, PAUSE = "CONTINUE", "STOP", "PAUSE"  # the values of TrialScheduler.CONTINUE / STOP / PAUSE
# How pareto_sh's rung treats the baseline (never stopped in any case):
#   competitor  ranked like any trial: counted in n, it takes a kept slot when it ranks within the quota
#               and competes within its front (the rule before issue 15);
#   yardstick   it dominates others, but is left out of n, of the kept slots and of the within-front order;
#   reserved    as yardstick, except that it is counted in n and always holds one of the ceil(n / rf) slots
#               (it always continues, so it spends one of them): the others share ceil(n / rf) - 1 (at least 1).
BASELINE_ROLES = ("competitor", "yardstick", "reserved")


class ParetoSuccessiveHalving(FIFOScheduler):
    """Asynchronous successive halving that ranks on several objectives.

    When a trial first reports at or past a rung (an optimiser step), it is ranked among every trial
    recorded at that rung so far (itself included) by non-dominated sorting, then within its front by
    the ranking rule `within_front` (a `RankingRule`, or the name of one in ranking.RANKING_RULES;
    larger first; ties go to the newcomer):
      * 'hypervolume' (the constructor's default, `HypervolumeContribution`): the exclusive hypervolume contribution of
        each member of the front, against the rung points' nadir pushed out by 10% of each objective's
        spread (`pareto.nadir_reference`). A point's box spans the gaps to its neighbours on the front, so a
        student that is smaller than its neighbour by little and less accurate by much ranks low, and
        one that opens a wide gap ranks high; an extreme of the front (the smallest, the most
        accurate) owns a box as deep as a tenth of the spread, not an automatic place (with two points
        the two boxes are equal, and the newcomer keeps the tie);
      * 'crowding' (`CrowdingDistance`): NSGA-II crowding distance (every extreme of the front ranks first);
      * 'sweep_hypervolume' (the config's default, `SweepHypervolumeContribution`): the contribution against
        the reference the sweep's report measures with (the least accuracy, 1.1 x the largest size).
    It continues when its rank is within the best ceil(n / reduction_factor) of those n trials, else
    it stops. The first trial at a rung always continues (nothing to compare with), like ASHA.
    The noise-aware rule (`beyond_error`, a `ranking.BeyondError`, None = plain dominance): the fronts
    are sorted by dominance beyond error (better on a measured objective by more than z standard errors
    of the difference, the standard errors read from each result's `<objective>_se`), and a front's
    members are then ordered as before (plain fronts within it, then the rule's score). `baseline` says
    how the baseline counts (BASELINE_ROLES; make_scheduler: 'reserved' with the noise-aware rule,
    'competitor' with the plain one). Results without standard errors are compared plainly (logged once).
    Built directly, without `beyond_error`, it decides by the rule before issue 15 (old state files and
    pickles resume with it); the config's defaults (make_scheduler) build the noise-aware rule.
    Decisions are never revisited; a resumed trial meets its recorded decision again. A report at
    the run's last step is recorded but never stopped. Rung records persist to `state_path` (JSON)
    so a resumed sweep keeps them.
    `rung_fill` k (0 = off): a rung decides only once it holds k results (the baseline and reports at the
    last step count, and are decided on arrival as always). A search trial arriving earlier is recorded with
    decision PAUSE and gets PAUSE (Tune pauses it at the evaluation it just checkpointed); when the k-th
    result arrives, or `choose_trial_to_run` finds that nothing else can reach the rung (`stuck_rungs`), the
    rung `settle`s: each waiting trial is ranked among all n results as if it had arrived last and continues
    when within ceil(n / rf) (the quota above), else stops. Paused trials it keeps are resumed before any new
    trial; stopped ones are stopped where they wait. Later arrivals are decided on arrival. Which rungs have
    settled persists with the records.
    """

    def __init__(self, rungs: Sequence[int], objectives: Sequence[Objective], reduction_factor: float = 3.0,
                 time_attr: str = "step", state_path: str | None = None,
                 within_front: str | RankingRule = "hypervolume", beyond_error: BeyondError | None = None,
                 baseline: str = "competitor", guard: bool = False, rung_fill: int = 0):
        super().__init__()
        if not rungs:
            raise SweepConfigError("pareto_sh: at least one rung is needed")
        if reduction_factor <= 1:
            raise SweepConfigError(f"pareto_sh: reduction_factor must be > 1, got {reduction_factor}")
        if not isinstance(within_front, RankingRule) and within_front not in RANKING_RULES:
            raise SweepConfigError(f"pareto_sh: within_front must be one of {', '.join(WITHIN_FRONT)}, "
                                   f"got {within_front!r}")
        self.ranking = within_front if isinstance(within_front, RankingRule) else ranking_rule(within_front)
        self.within_front = self.ranking.name  # its name, for the state file
        self.beyond_error = beyond_error  # None: plain Pareto dominance (the rule before issue 15)
        if baseline not in BASELINE_ROLES:
            raise SweepConfigError(f"pareto_sh: baseline must be one of {', '.join(BASELINE_ROLES)}, got {baseline!r}")
        self.baseline = baseline
        self.guard = bool(guard)
        if isinstance(rung_fill, bool) or not isinstance(rung_fill, int) or rung_fill < 0:
            raise SweepConfigError(f"pareto_sh: rung_fill must be an integer >= 0 (0 = decide on arrival), "
                                   f"got {rung_fill!r}")
        self.rung_fill = rung_fill
        self.filled: set[int] = set()  # rungs that have settled: later arrivals are decided on arrival
        self.decided: dict[str, str] = {}  # verdicts on waiting trials made by another trial's result, to apply
        self._fallback_logged = False
        self.rungs = tuple(sorted({int(r) for r in rungs}))
        self.objectives = tuple(objectives)
        self.reduction_factor = float(reduction_factor)
        self.time_attr = time_attr
        self.state_path = state_path
        self.records: dict[int, dict[str, dict[str, Any]]] = {rung: {} for rung in self.rungs}
        self.num_stopped = 0
        self.steps_saved = 0
        self._loaded = False

    # -- Ray hooks ---------------------------------------------------------------------------------

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = self.on_result(trial.trial_id, result)
        self._apply(tune_controller)
        return decision

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        """A paused trial its rung kept first, then a new (PENDING) one; never a trial still waiting. Settles
        the rungs nothing else can reach first (no PENDING trial, every RUNNING one reported past the rung)."""
        from ray.tune.experiment import Trial

        self._load()
        trials = tune_controller.get_trials()
        running = [(t.last_result or {}).get(self.time_attr) for t in trials if t.status == Trial.RUNNING]
        pending = [t for t in trials if t.status == Trial.PENDING]
        for rung in self.stuck_rungs(running, len(pending)):
            self.decided.update(self.settle(rung))
        self._apply(tune_controller)
        waiting = self.waiting()
        for trial in trials:
            if trial.status == Trial.PAUSED and trial.trial_id not in waiting:
                return trial
        return pending[0] if pending else None

    def _apply(self, tune_controller: Any) -> None:
        """Stop the paused trials a rung has stopped (the kept ones are left to choose_trial_to_run). A trial whose
        PAUSE is still in flight (Tune saves its checkpoint first: it is RUNNING until then) keeps its verdict for a
        later call; were it dropped, the trial would be resumed once PAUSED and run to its next report."""
        if not self.decided or tune_controller is None:
            return
        from ray.tune.experiment import Trial

        verdicts, self.decided = self.decided, {}
        for trial in tune_controller.get_trials():
            if verdicts.get(trial.trial_id) != STOP:
                continue
            if trial.status == Trial.PAUSED:
                tune_controller.stop_trial(trial)
            elif trial.status in (Trial.RUNNING, Trial.PENDING):
                self.decided[trial.trial_id] = STOP

    def debug_string(self) -> str:
        seen = ", ".join(f"{rung}: {len(self.records[rung])}" for rung in self.rungs)
        return (f"ParetoSuccessiveHalving: {self.num_stopped} stopped, {self.steps_saved} steps saved; "
                f"trials per rung {seen}")

    # -- the decision ------------------------------------------------------------------------------

    def on_result(self, trial_id: str, result: Mapping[str, Any]) -> str:
        """CONTINUE or STOP for one reported result (pure bookkeeping: testable without Ray)."""
        self._load()
        step = result.get(self.time_attr)
        if step is None or result.get("final"):
            return CONTINUE
        values = [result.get(o.name) for o in self.objectives]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            log.debug("pareto_sh: trial %s reported no usable %s; continuing", trial_id,
                      [o.name for o in self.objectives])
            return CONTINUE
        total = result.get("total_steps")
        decision = CONTINUE
        changed = False
        for rung in self.rungs:
            if rung > step:
                break
            record = self.records[rung].get(trial_id)
            if record is not None:
                if record["decision"] in (STOP, PAUSE):  # stopped, or still waiting for its rung to settle
                    decision = record["decision"]
                    break
                continue
            # the baseline is the sweep's yardstick: it is ranked (others are compared with it) but never stopped
            protected = result.get("kind") == "baseline"
            errors = [_standard_error(result, o.name) for o in self.objectives]
            last_step = total is not None and step >= total
            if self.rung_fill and rung not in self.filled and not (protected or last_step):
                decision, changed = self._wait(rung, trial_id, values, errors, step, total), True
                if decision == CONTINUE:
                    continue
                break
            rank, quota, seen = self.rank(rung, [float(v) for v in values], errors, protected)
            verdict = CONTINUE if rank < quota or last_step or protected else STOP
            record = {"values": [float(v) for v in values], "decision": verdict, "step": int(step)}
            if any(e is not None for e in errors):
                record["errors"] = errors
            if protected:
                record["baseline"] = True
            self.records[rung][trial_id] = record
            changed = True
            log.info("pareto_sh: trial %s at rung %d (step %d): rank %d of %d, keep %d -> %s", trial_id, rung, step,
                     rank + 1, seen, quota, "baseline, continue" if protected else verdict.lower())
            if verdict == STOP:
                self.num_stopped += 1
                self.steps_saved += max(0, int(total) - int(step)) if total is not None else 0
                decision = STOP
                break
        if changed:
            self._save()
        return decision

    def _wait(self, rung: int, trial_id: str, values: Sequence[float], errors: Sequence[float | None], step: int,
              total: Any) -> str:
        """Record a trial waiting at an unsettled rung; PAUSE, or its verdict when it fills the rung."""
        record: dict[str, Any] = {"values": [float(v) for v in values], "decision": PAUSE, "step": int(step)}
        if any(e is not None for e in errors):
            record["errors"] = list(errors)
        if total is not None:
            record["total_steps"] = int(total)
        self.records[rung][trial_id] = record
        log.info("pareto_sh: trial %s waits at rung %d (%d of %d results)", trial_id, rung, len(self.records[rung]),
                 self.rung_fill)
        if len(self.records[rung]) < self.rung_fill:
            return PAUSE
        verdicts = self.settle(rung)
        self.decided.update({other: verdict for other, verdict in verdicts.items() if other != trial_id})
        return verdicts[trial_id]

    def settle(self, rung: int) -> dict[str, str]:
        """Decide every trial waiting at `rung`, each ranked among all the rung's results as if it had arrived
        last; the rung is settled from then on (later arrivals are decided on arrival). {trial id: verdict}."""
        self._load()
        self.filled.add(rung)
        verdicts = {}
        for trial_id, record in self.records[rung].items():
            if record["decision"] != PAUSE:
                continue
            rank, quota, seen = self.rank(rung, record["values"], record.get("errors"), exclude=trial_id)
            verdicts[trial_id] = CONTINUE if rank < quota else STOP
            log.info("pareto_sh: rung %d settles: trial %s rank %d of %d, keep %d -> %s", rung, trial_id, rank + 1,
                     seen, quota, verdicts[trial_id].lower())
        for trial_id, verdict in verdicts.items():
            record = self.records[rung][trial_id]
            record["decision"] = verdict
            if verdict == STOP:
                self.num_stopped += 1
                self.steps_saved += max(0, record.get("total_steps", record["step"]) - record["step"])
        self._save()
        return verdicts

    def waiting(self) -> set[str]:
        """The trials waiting (paused) at a rung that has not settled."""
        return {trial_id for records in self.records.values() for trial_id, record in records.items()
                if record["decision"] == PAUSE}

    def stuck_rungs(self, running_steps: Sequence[Any], pending: int) -> list[int]:
        """The unsettled rungs with waiting trials that nothing else can reach: no trial is pending and every
        running one has reported a step at or past the rung (`running_steps`: their last steps, None = none yet)."""
        if pending or any(not isinstance(s, (int, float)) for s in running_steps):
            return []
        return [rung for rung in self.rungs if rung not in self.filled and all(s >= rung for s in running_steps)
                and any(record["decision"] == PAUSE for record in self.records[rung].values())]

    def rank(self, rung: int, values: Sequence[float], errors: Sequence[float | None] | None = None,
             baseline: bool = False, exclude: str | None = None) -> tuple[int, int, int]:
        """(rank of `values` among the trials recorded at `rung` plus itself, quota kept, count).

        `errors`: the newcomer's standard errors (None where none was reported); `baseline`: the newcomer
        is the baseline; `exclude`: a trial recorded at the rung to leave out (the one being judged, when it
        is already recorded). With `beyond_error` the fronts come from dominance beyond error. Unless the
        baseline is a 'competitor', it dominates but is not ranked: it is left out of the rank and the
        within-front scores, and of the count ('yardstick') or of the slots the others share ('reserved').
        """
        records = [record for trial_id, record in self.records[rung].items() if trial_id != exclude]
        points = [list(values)] + [record["values"] for record in records]
        directions = [o.direction for o in self.objectives]
        yardsticks = [baseline] + [bool(record.get("baseline")) for record in records]
        if self.baseline == "competitor":
            yardsticks = [False] * len(points)
        n = len(points) - (sum(yardsticks) if self.baseline == "yardstick" else 0)
        quota = max(1, math.ceil(n / self.reduction_factor) - (sum(yardsticks) if self.baseline == "reserved" else 0))
        if self.beyond_error is None:
            return self.ranking.rank(points, directions, yardsticks=yardsticks), quota, n
        table = [list(errors or [None] * len(values))] + [record.get("errors") or [None] * len(values)
                                                           for record in records]
        dominates, fallback = self.beyond_error.matrix(
            points, [[np.nan if e is None else e for e in row] for row in table], directions)
        if fallback and not self._fallback_logged:
            self._fallback_logged = True
            log.warning("pareto_sh: some rung results carry no standard error (%s); those pairs are compared by "
                        "plain Pareto dominance", ", ".join(f"{o.name}_se" for o in self.objectives))
        if self.guard:  # the plain order proposes; only a trial dominated beyond error can be stopped
            rank = self.ranking.rank(points, directions, yardsticks=yardsticks)
            return (rank if dominates[:, 0].any() else 0), quota, n
        return self.ranking.rank(points, directions, dominates, yardsticks), quota, n

    # -- persistence -------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"rungs": list(self.rungs), "objectives": [[o.name, o.direction] for o in self.objectives],
                "reduction_factor": self.reduction_factor, "within_front": self.within_front,
                "rung_rule": "plain" if self.beyond_error is None else self.beyond_error.name,
                "noise_z": None if self.beyond_error is None else self.beyond_error.z, "baseline": self.baseline,
                "rung_fill": self.rung_fill, "filled": sorted(self.filled),
                "num_stopped": self.num_stopped,
                "steps_saved": self.steps_saved,
                "records": {str(rung): records for rung, records in self.records.items()}}

    def _save(self) -> None:
        if not self.state_path:
            return
        write_json(self.state_path, self.state())

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if not self.state_path or not Path(self.state_path).is_file():
            return
        state = read_scheduler_state(self.state_path, len(self.objectives))
        for rung, records in state.get("records", {}).items():
            if int(rung) in self.records:
                self.records[int(rung)].update(records)
        self.num_stopped = int(state.get("num_stopped", 0))
        self.steps_saved = int(state.get("steps_saved", 0))
        self.filled.update(int(rung) for rung in state.get("filled", []) if int(rung) in self.records)
        log.info("pareto_sh: restored rung records from %s (%d stopped so far)", self.state_path, self.num_stopped)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A scheduler pickled before ranking rules existed (tuner.pkl of a sweep started by older code) has
        # only the rule's name: rebuild the rule it names, so that such a sweep resumes with the same decisions.
        if "ranking" not in state:
            state = {**state, "ranking": ranking_rule(state.get("within_front", "hypervolume"))}
        # ... and one pickled before issue 15 decides by the rule of its time: plain dominance, baseline in the quota
        state = {"beyond_error": None, "baseline": "competitor", "guard": False, "_fallback_logged": False,
                 "rung_fill": 0, "filled": set(), "decided": {}, **state}
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps(self.state()))

    def restore(self, checkpoint_path: str) -> None:
        self.state_path, previous = checkpoint_path, self.state_path
        self._loaded = False
        self._load()
        self.state_path = previous


def read_scheduler_state(path: str | Path, objectives: int | None = None) -> dict[str, Any]:
    """A pareto_sh state file (ParetoSuccessiveHalving.state), checked: `records` maps each rung (an integer) to
    {trial id: {values: `objectives` finite numbers, decision: CONTINUE, STOP or PAUSE (waiting for the rung to
    settle), step: an integer, ...}}, `num_stopped` and `steps_saved` are integers, `filled` (the settled rungs)
    a list of integers. A file that breaks this is one SweepConfigError naming the file
    and the field (move it aside to resume without the rung records)."""
    state = read_json_object(path, "the pareto_sh scheduler's state", SweepConfigError)

    def refuse(field: str, expected: str, value: Any) -> None:
        raise SweepConfigError(f"{path}: {field}: expected {expected}, got {json.dumps(value, default=str)[:60]}")

    for key in ("num_stopped", "steps_saved"):
        if not isinstance(state.get(key, 0), int) or isinstance(state.get(key), bool):
            refuse(key, "an integer", state.get(key))
    filled = state.get("filled", [])
    if not isinstance(filled, list) or not all(isinstance(r, int) and not isinstance(r, bool) for r in filled):
        refuse("filled", "a list of integer rungs", filled)
    if not isinstance(state.get("records", {}), dict):
        refuse("records", "an object of rungs", state.get("records"))
    for rung, records in state.get("records", {}).items():
        if not rung.lstrip("-").isdigit() or not isinstance(records, dict):
            refuse(f"records.{rung}", "an integer rung holding an object of trial records", records)
        for trial_id, record in records.items():
            field = f"records.{rung}.{trial_id}"
            values = record.get("values") if isinstance(record, dict) else None
            if not isinstance(values, list) or (objectives is not None and len(values) != objectives) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
                refuse(f"{field}.values", f"a list of {objectives} finite numbers" if objectives else
                       "a list of finite numbers (one per objective)", values)
            if record.get("decision") not in (CONTINUE, STOP, PAUSE):
                refuse(f"{field}.decision", f"{CONTINUE}, {STOP} or {PAUSE}", record.get("decision"))
            if not isinstance(record.get("step"), int) or isinstance(record.get("step"), bool):
                refuse(f"{field}.step", "an integer", record.get("step"))
    return state


def _standard_error(result: Mapping[str, Any], name: str) -> float | None:
    """The result's `<name>_se` when it is a finite number >= 0, else None (an exact or unmeasured value)."""
    value = result.get(f"{name}_se")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) and value >= 0 else None


def pareto_rungs(settings: SchedulerSettings) -> tuple[int, ...]:
    """Explicit rungs, or grace_period x reduction_factor^k below max_t."""
    if settings.rungs:
        return tuple(sorted(set(settings.rungs)))
    rungs, step = [], float(settings.grace_period)
    while step < settings.max_t:
        rungs.append(int(round(step)))
        step *= settings.reduction_factor
    return tuple(sorted(set(rungs)))


class BaselineKeepingASHA(ASHAScheduler):
    """Ray's ASHA, except that the baseline trial (the sweep's yardstick) always runs to the end."""

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if result.get("kind") == "baseline":
            return CONTINUE
        return super().on_trial_result(tune_controller, trial, result)


def make_scheduler(settings: SchedulerSettings, objectives: Sequence[Objective], state_path: str | None = None):
    """The Tune scheduler named in the sweep config."""
    if settings.name == "fifo":
        return FIFOScheduler()
    ranked = [o for o in objectives if o.name in INTERMEDIATE_METRICS]
    if settings.name == "asha":
        if settings.rungs:
            raise SweepConfigError(
                f"scheduler asha: rungs {list(settings.rungs)} are pareto_sh's setting; asha decides at "
                "grace_period x reduction_factor^k steps (set grace_period and max_t instead)")
        metric = ranked[0] if ranked else DEFAULT_OBJECTIVES[0]
        return BaselineKeepingASHA(time_attr="step", metric=metric.name, mode=metric.direction,
                                   max_t=settings.max_t or 10**9, grace_period=max(1, settings.grace_period),
                                   reduction_factor=settings.reduction_factor, stop_last_trials=False)
    if not ranked:
        raise SweepConfigError("scheduler pareto_sh: no objective is reported at evaluations "
                               f"({', '.join(INTERMEDIATE_METRICS)})")
    noise_aware = settings.rung_rule == "beyond_error"
    return ParetoSuccessiveHalving(pareto_rungs(settings), ranked, settings.reduction_factor, state_path=state_path,
                                   within_front=ranking_rule(settings.within_front),
                                   beyond_error=BeyondError(settings.noise_z) if noise_aware else None,
                                   baseline="reserved" if noise_aware else "competitor",
                                   rung_fill=settings.rung_fill)

