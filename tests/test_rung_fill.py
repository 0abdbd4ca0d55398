"""sweep/schedulers.py: pareto_sh's rung_fill, a rung that decides only once it holds k results.

Decisions fed by hand (no Ray trials): earlier arrivals wait (PAUSE), the k-th result settles the rung (each
waiting trial ranked as if it had arrived last), a rung nothing else can reach settles with what it has, and a
restarted scheduler keeps both the waiting trials and the settled rungs (the state file).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sweep_world import OBJECTIVES

from tune_distill.sweep.config import SchedulerSettings, SweepConfigError
from tune_distill.sweep.schedulers import (
    CONTINUE,
    PAUSE,
    STOP,
    ParetoSuccessiveHalving,
    make_scheduler,
    read_scheduler_state,
)


def _result(step, exact, parameters, total=10, **extra):
    return {"step": step, "exact": exact, "parameters": parameters, "total_steps": total, **extra}


def test_a_rung_waits_for_k_results_then_keeps_the_best_ceil_n_over_rf():
    scheduler = ParetoSuccessiveHalving([2], OBJECTIVES, reduction_factor=3, rung_fill=4)
    assert scheduler.on_result("a", _result(2, 30, 100)) == PAUSE  # would continue on arrival: first at the rung
    assert scheduler.on_result("b", _result(2, 50, 100)) == PAUSE
    assert scheduler.on_result("c", _result(2, 40, 100)) == PAUSE
    assert scheduler.waiting() == {"a", "b", "c"}
    # the fourth result settles the rung: n = 4, keep ceil(4 / 3) = 2 (b and d); its own verdict is returned
    assert scheduler.on_result("d", _result(2, 45, 100)) == CONTINUE
    assert scheduler.decided == {"a": STOP, "b": CONTINUE, "c": STOP}  # for the caller to apply to paused trials
    assert scheduler.waiting() == set() and scheduler.num_stopped == 2 and scheduler.steps_saved == 16
    # settled: later arrivals are decided on arrival, and a waiting trial meets its verdict again
    assert scheduler.on_result("e", _result(2, 60, 100)) == CONTINUE
    assert scheduler.on_result("a", _result(3, 99, 1)) == STOP
    assert scheduler.on_result("b", _result(3, 50, 100)) == CONTINUE


def test_the_baseline_and_last_step_reports_never_wait_but_fill_the_rung():
    scheduler = ParetoSuccessiveHalving([2], OBJECTIVES, reduction_factor=2, rung_fill=3)
    assert scheduler.on_result("base", _result(2, 40, 100, kind="baseline")) == CONTINUE
    assert scheduler.on_result("short", _result(2, 10, 100, total=2)) == CONTINUE  # its last step: never stopped
    assert scheduler.on_result("a", _result(2, 5, 100)) == STOP  # the third result: n = 3, keep 2; a ranks 3rd
    assert scheduler.waiting() == set() and 2 in scheduler.filled


def test_a_waiting_trial_reporting_again_before_the_rung_settles_waits_again():
    scheduler = ParetoSuccessiveHalving([2, 4], OBJECTIVES, reduction_factor=2, rung_fill=3)
    assert scheduler.on_result("a", _result(2, 30, 100)) == PAUSE
    assert scheduler.on_result("a", _result(4, 35, 100)) == PAUSE  # e.g. resumed by a restarted sweep
    assert set(scheduler.records[4]) == set()  # not judged at a later rung while it waits at an earlier one


def test_a_rung_nothing_else_can_reach_settles_with_what_it_holds():
    scheduler = ParetoSuccessiveHalving([2, 4], OBJECTIVES, reduction_factor=2, rung_fill=5)
    scheduler.on_result("a", _result(2, 30, 100))
    scheduler.on_result("b", _result(2, 50, 100))
    assert scheduler.stuck_rungs([1], pending=0) == []  # a running trial has not reached step 2 yet
    assert scheduler.stuck_rungs([None], pending=0) == []  # a running trial that has reported nothing yet
    assert scheduler.stuck_rungs([2], pending=1) == []  # a trial waits to start
    assert scheduler.stuck_rungs([2, 5], pending=0) == [2]  # rung 4 holds no waiting trial
    assert scheduler.settle(2) == {"a": STOP, "b": CONTINUE}  # n = 2, keep 1
    assert scheduler.stuck_rungs([], pending=0) == []


def test_waiting_trials_and_settled_rungs_survive_a_restart(tmp_path):
    state = tmp_path / "state.json"
    first = ParetoSuccessiveHalving([2, 4], OBJECTIVES, reduction_factor=3, state_path=str(state), rung_fill=3)
    first.on_result("a", _result(2, 30, 100))
    first.on_result("b", _result(2, 50, 100))
    first.on_result("c", _result(2, 40, 100))  # settles rung 2: keep 1 of 3 (b)
    first.on_result("b", _result(4, 55, 100))  # waits at rung 4
    saved = read_scheduler_state(state, 2)
    assert saved["filled"] == [2] and saved["records"]["4"]["b"]["decision"] == PAUSE
    restarted = ParetoSuccessiveHalving([2, 4], OBJECTIVES, reduction_factor=3, state_path=str(state), rung_fill=3)
    assert restarted.on_result("d", _result(2, 10, 100)) == STOP  # rung 2 settled: decided on arrival
    assert restarted.waiting() == {"b"} and restarted.num_stopped == first.num_stopped + 1


def test_a_state_file_with_a_bad_decision_or_settled_list_is_refused(tmp_path):
    path = tmp_path / "state.json"
    path.write_text('{"records": {"2": {"a": {"values": [1, 2], "decision": "WAIT", "step": 2}}}}')
    with pytest.raises(SweepConfigError, match="decision"):
        read_scheduler_state(path, 2)
    path.write_text('{"filled": ["2"], "records": {}}')
    with pytest.raises(SweepConfigError, match="filled"):
        read_scheduler_state(path, 2)
    with pytest.raises(SweepConfigError, match="rung_fill"):
        ParetoSuccessiveHalving([2], OBJECTIVES, rung_fill=-1)


def test_the_config_key_reaches_the_scheduler():
    settings = SchedulerSettings(name="pareto_sh", rungs=(2,), rung_fill=4)
    assert make_scheduler(settings, OBJECTIVES).rung_fill == 4
    assert make_scheduler(SchedulerSettings(name="pareto_sh", rungs=(2,)), OBJECTIVES).rung_fill == 0  # on arrival


class _Controller:
    """What the scheduler reaches of Tune's controller: its trials, and stopping one."""

    def __init__(self, **statuses):
        self.trials = {name: SimpleNamespace(trial_id=name, status=status, last_result={"step": 2})
                       for name, status in statuses.items()}
        self.stopped = []

    def get_trials(self):
        return list(self.trials.values())

    def stop_trial(self, trial):
        self.stopped.append(trial.trial_id)
        trial.status = "TERMINATED"


def test_a_stop_waits_for_a_pause_still_in_flight_and_kept_trials_are_resumed_first():
    """Tune pauses a trial by saving its checkpoint first (RUNNING until then): a rung that settles meanwhile
    stops it once it is PAUSED, never resumes it."""
    scheduler = ParetoSuccessiveHalving([2], OBJECTIVES, reduction_factor=3, rung_fill=5)
    for name, exact in (("a", 60), ("b", 50), ("c", 40)):
        assert scheduler.on_result(name, _result(2, exact, 100)) == PAUSE
    controller = _Controller(a="PAUSED", b="PAUSED", c="RUNNING")  # c's pause is in flight
    # nothing else can reach the rung (no pending trial, the running one is past it): it settles, keeps 1 of 3
    assert scheduler.choose_trial_to_run(controller).trial_id == "a"
    assert controller.stopped == ["b"] and scheduler.decided == {"c": STOP}
    controller.trials["a"].status, controller.trials["c"].status = "RUNNING", "PAUSED"  # a resumed, c paused
    assert scheduler.choose_trial_to_run(controller) is None
    assert controller.stopped == ["b", "c"] and scheduler.decided == {}
