"""pareto_sh's rung_fill through Ray Tune: paused trials are settled, resumed from their checkpoint or stopped.

A tiny function trainable (no training: it reports a fixed `exact` per trial at steps 1-4, with a checkpoint at
each report, and resumes from its checkpoint), the sweep's searcher adapter and `make_scheduler` built from
SchedulerSettings with rung_fill, as the sweep driver builds them: 6 trials, 3 at once, one rung at step 2,
reduction factor 3. The first three trials wait at the rung; it settles (at the third result, rung_fill 3, or
once nothing else can reach it, rung_fill 6: three paused trials hold all the concurrency) and keeps
ceil(3 / 3) = 1 of them; the next three are decided on arrival. About 8 s per case on a CPU (Ray start: 5 s).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from sweep_world import OBJECTIVES, TINY_SPACE, ray_cluster_fixture  # noqa: F401  (fixture `ray_cluster`)

from tune_distill.search import make_searcher, parse_space
from tune_distill.sweep.config import SchedulerSettings
from tune_distill.sweep.schedulers import CONTINUE, STOP, make_scheduler, read_scheduler_state
from tune_distill.sweep.searcher import SweepSearcher

EXACT = (60.0, 50.0, 40.0, 70.0, 30.0, 20.0)  # by trial number: 0 is the best of the first three, 3 the best of all
TOTAL_STEPS = 4


def counting_trainable():
    """A trainable reporting steps 1..TOTAL_STEPS (a checkpoint with each), continuing after the checkpoint it
    resumes from. Made here: a nested function travels to Ray's workers by value (this test module is not
    importable there)."""
    exact, total = EXACT, TOTAL_STEPS

    def trainable(config):
        from ray import tune

        checkpoint, start = tune.get_checkpoint(), 0
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                start = json.loads((Path(folder) / "state.json").read_text())["step"]
        for step in range(start + 1, total + 1):
            with tempfile.TemporaryDirectory() as folder:
                (Path(folder) / "state.json").write_text(json.dumps({"step": step}))
                tune.report({"number": config["number"], "step": step, "resumed_from": start, "total_steps": total,
                             "exact": exact[config["number"]], "parameters": 100, "final": step == total},
                            checkpoint=tune.Checkpoint.from_directory(folder))

    return trainable


class _Told:
    """The wrapped searcher, remembering what the adapter tells it: {trial id: (status, values)}."""

    def __init__(self, inner):
        self.inner, self.told = inner, {}

    def suggest(self, trial_id):
        return self.inner.suggest(trial_id)

    def observe(self, trial_id, values, status):
        self.told[trial_id] = (status, values)
        self.inner.observe(trial_id, values, status)

    def state(self):
        return self.inner.state()


def _sweep(tmp_path: Path, rung_fill: int):
    """Run the six trials; (trials, the searcher's record, the scheduler's state, reports per trial number)."""
    from ray import tune

    reports: dict[int, list[tuple[int, int]]] = {}

    class Reports(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            reports.setdefault(result["number"], []).append((result["step"], result["resumed_from"]))

    space = parse_space(TINY_SPACE, {"teacher.num_hidden_layers": 2})
    told = _Told(make_searcher("random", space, OBJECTIVES, (), seed=0))
    searcher = SweepSearcher(told, space, OBJECTIVES, (), num_samples=len(EXACT))
    settings = SchedulerSettings(name="pareto_sh", rungs=(2,), reduction_factor=3, rung_fill=rung_fill)
    state = tmp_path / "scheduler.json"
    tuner = tune.Tuner(
        tune.with_resources(counting_trainable(), {"cpu": 0.5}),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=make_scheduler(settings, OBJECTIVES, str(state)),
                                    num_samples=len(EXACT), max_concurrent_trials=3, reuse_actors=True,
                                    time_budget_s=120),
        run_config=tune.RunConfig(name="fill", storage_path=str(tmp_path / "tune"), callbacks=[Reports()], verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )
    grid = tuner.fit()
    trials = {result.config["number"]: result for result in grid}
    return trials, told.told, read_scheduler_state(state, len(OBJECTIVES)), reports


@pytest.mark.parametrize("rung_fill", [3, 6], ids=["settled-by-the-kth-result", "settled-when-nothing-else-can-come"])
def test_paused_trials_end_resumed_from_their_checkpoint_or_stopped(ray_cluster, tmp_path, rung_fill):
    trials, told, state, reports = _sweep(tmp_path, rung_fill)
    assert sorted(trials) == list(range(len(EXACT)))
    assert all(result.error is None for result in trials.values())
    ids = {number: result.metrics["trial_id"] for number, result in trials.items()}
    rung = state["records"]["2"]
    # the first three settle together and keep ceil(3 / 3) = 1 (trial 0); the others are decided on arrival:
    # trial 3 is the best so far, trials 4 and 5 rank below the quota (2 of 4, 5 or 6)
    assert {number: rung[ids[number]]["decision"] for number in ids} == {
        0: CONTINUE, 1: STOP, 2: STOP, 3: CONTINUE, 4: STOP, 5: STOP}
    assert state["filled"] == [2] and state["num_stopped"] == 4
    for number, steps in reports.items():  # never restarted: each step once, in order, after its checkpoint
        kept = rung[ids[number]]["decision"] == CONTINUE
        assert [step for step, _ in steps] == list(range(1, (TOTAL_STEPS if kept else 2) + 1)), (number, steps)
        assert all(start in (0, 2) and start < step for step, start in steps), (number, steps)
    if rung_fill == 6:  # every one of the first three was paused: the kept one resumed after step 2
        assert reports[0] == [(1, 0), (2, 0), (3, 2), (4, 2)]
    # every trial ended: the kept ones complete, the stopped ones pruned with their rung values (a paused trial
    # stopped by Tune comes to the searcher without a result: the adapter keeps its last values)
    assert {number: told[ids[number]][0] for number in ids} == {
        0: "complete", 1: "pruned", 2: "pruned", 3: "complete", 4: "pruned", 5: "pruned"}
    assert all(told[ids[number]][1] == {"exact": EXACT[number], "parameters": 100.0} for number in ids)
