"""sweep/schedulers.py and sweep/ranking.py: Pareto successive halving, its rung-ranking rules, its rung rules.

No Ray trials: results are fed in by hand (tests/test_ranking.py has the relation beyond error on its
own). The rules' decisions are checked against rung ranks recorded from the pre-split sweep.py
(fixtures/old_sweep/rung_ranks.json, made by make_rung_ranks.py there).
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from sweep_world import OBJECTIVES

from tune_distill.search import Objective
from tune_distill.sweep.config import WITHIN_FRONT, SchedulerSettings, SweepConfigError
from tune_distill.sweep.ranking import (
    RANKING_RULES,
    BeyondError,
    CrowdingDistance,
    HypervolumeContribution,
    RankingRule,
    SweepHypervolumeContribution,
    ranking_rule,
)
from tune_distill.sweep.schedulers import (
    BASELINE_ROLES,
    CONTINUE,
    STOP,
    BaselineKeepingASHA,
    ParetoSuccessiveHalving,
    make_scheduler,
    pareto_rungs,
)

RUNG_RANKS = Path(__file__).parent / "fixtures" / "old_sweep" / "rung_ranks.json"


def _result(step, exact, parameters, total=10, **extra):
    return {"step": step, "exact": exact, "parameters": parameters, "total_steps": total, **extra}


def test_pareto_sh_keeps_small_models_and_stops_dominated_ones(tmp_path):
    state = tmp_path / "state.json"
    scheduler = ParetoSuccessiveHalving([2, 4], OBJECTIVES, reduction_factor=2, state_path=str(state))
    assert scheduler.on_result("a", _result(1, 50, 1000)) == CONTINUE  # before the first rung
    assert scheduler.on_result("a", _result(2, 50, 1000)) == CONTINUE  # first at the rung
    assert scheduler.on_result("b", _result(2, 40, 2000)) == STOP  # dominated by a: rank 2 of 2, keep 1
    # much lower exact but smaller than everything: on the first front, so it continues (ASHA on exact would stop it)
    assert scheduler.on_result("c", _result(2, 30, 500)) == CONTINUE  # rank 1 of 3, keep 2
    assert scheduler.on_result("d", _result(2, 45, 1500)) == STOP  # second front: rank 3 of 4, keep 2
    assert scheduler.num_stopped == 2 and scheduler.steps_saved == 16  # (10 - 2) x 2
    # decisions stick: a stopped trial reporting again stops again; a kept one is not re-judged
    assert scheduler.on_result("b", _result(3, 99, 1)) == STOP
    assert scheduler.on_result("c", _result(3, 30, 500)) == CONTINUE
    # evaluations past a rung are judged at the first report beyond it (here step 5 for rung 4)
    assert scheduler.on_result("a", _result(5, 55, 1000)) == CONTINUE
    assert scheduler.on_result("c", _result(5, 20, 2000)) == STOP  # dominated at rung 4
    # a report at the run's last step and the final report are never stopped
    assert scheduler.on_result("e", _result(4, 1, 9999, total=4)) == CONTINUE
    assert scheduler.on_result("f", _result(2, 0, 9999, final=True)) == CONTINUE
    assert scheduler.on_result("g", {"step": 2, "exact": 50}) == CONTINUE  # no parameters: not judged
    # the rung records survive a restart (resume) through the state file
    restored = ParetoSuccessiveHalving([2, 4], OBJECTIVES, reduction_factor=2, state_path=str(state))
    assert restored.on_result("b", _result(4, 99, 1)) == STOP
    assert restored.num_stopped == 3 and set(restored.records[2]) == {"a", "b", "c", "d", "e"}


def test_the_baseline_is_ranked_but_never_stopped():
    scheduler = ParetoSuccessiveHalving([2], OBJECTIVES, reduction_factor=2)
    assert scheduler.on_result("a", _result(2, 50, 1000)) == CONTINUE
    baseline = {**_result(2, 40, 2000), "kind": "baseline"}  # dominated by a: a search trial here would stop
    assert scheduler.on_result("base", baseline) == CONTINUE
    assert scheduler.on_result("b", _result(2, 39, 2100)) == STOP  # the baseline's point still counts for others
    assert set(scheduler.records[2]) == {"a", "base", "b"}

    asha = BaselineKeepingASHA(time_attr="step", metric="exact", mode="max", max_t=10, grace_period=1)
    assert asha.on_trial_result(None, None, {"step": 1, "exact": 0.0, "kind": "baseline"}) == CONTINUE


def test_pareto_sh_orders_a_front_by_hypervolume_contribution():
    scheduler = ParetoSuccessiveHalving([1], OBJECTIVES, reduction_factor=2)
    # With one recorded point, the two boxes against the nadir + 10% of the spread are equal and the
    # newcomer keeps the tie: a less accurate but smaller first arrival is not stopped by convention.
    scheduler.records[1]["big"] = {"values": [60, 1000], "decision": CONTINUE, "step": 1}
    assert scheduler.rank(1, [30, 10])[:2] == (0, 1)
    scheduler.records[1]["mid"] = {"values": [55, 400], "decision": CONTINUE, "step": 1}
    # Reference (49.55, 1099). Boxes: mid 4.5 x 600 = 2700, big 5 x 99 = 495, a tiny student barely
    # above the worst exact 0.95 x 390 = 370.5: last of its front (rank 3 of 3, keep 2), stopped,
    # although it is on the first front and crowding distance would keep it as an extreme.
    rank, quota, seen = scheduler.rank(1, [50.5, 10])
    assert (rank, quota, seen) == (2, 2, 3)
    crowding = ParetoSuccessiveHalving([1], OBJECTIVES, reduction_factor=2, within_front="crowding")
    crowding.records = scheduler.records
    assert crowding.rank(1, [50.5, 10])[0] == 0
    # a small student that keeps most of the accuracy opens a wide box and ranks first
    assert scheduler.rank(1, [58, 100])[0] == 0
    with pytest.raises(SweepConfigError, match="within_front"):
        ParetoSuccessiveHalving([1], OBJECTIVES, within_front="area")


def test_pareto_sh_breaks_ties_on_a_front_by_crowding_distance():
    scheduler = ParetoSuccessiveHalving([1], OBJECTIVES, reduction_factor=2, within_front="crowding")
    for name, exact, parameters in (("p0", 10, 100), ("p1", 20, 200), ("p2", 21, 210), ("p3", 40, 400)):
        scheduler.records[1][name] = {"values": [exact, parameters], "decision": CONTINUE, "step": 1}
    # all on one front: p0 and p3 are extremes (infinite crowding); a newcomer crowded next to p1/p2 ranks low
    rank, quota, seen = scheduler.rank(1, [20.5, 205])
    assert (quota, seen) == (3, 5) and rank >= 3
    # a newcomer that opens a new extreme (smallest model) ranks among the best
    rank, _, _ = scheduler.rank(1, [5, 50])
    assert rank == 0
    assert pareto_rungs(dataclasses.replace(tiny_rungs := _settings(), rungs=())) == (2, 6, 18)
    assert pareto_rungs(tiny_rungs) == (3, 9)


def _settings():
    return SchedulerSettings(name="pareto_sh", rungs=(9, 3), reduction_factor=3, grace_period=2, max_t=20)


# --------------------------------------------------------------------------------------------------
# Ranking rules
# --------------------------------------------------------------------------------------------------


def test_ranking_rules_are_named_in_one_place():
    assert WITHIN_FRONT == tuple(RANKING_RULES) == ("hypervolume", "crowding", "sweep_hypervolume")
    assert isinstance(ranking_rule("hypervolume"), HypervolumeContribution)
    assert isinstance(ranking_rule("sweep_hypervolume"), SweepHypervolumeContribution)
    assert isinstance(ranking_rule("crowding"), CrowdingDistance)
    assert ranking_rule("hypervolume").margin == 0.1  # nadir pushed out by 10% of each objective's spread
    scheduler = make_scheduler(SchedulerSettings(name="pareto_sh", rungs=(1,), within_front="crowding"), OBJECTIVES)
    assert isinstance(scheduler.ranking, CrowdingDistance) and scheduler.state()["within_front"] == "crowding"


def test_ranking_rules_rank_as_the_pre_split_scheduler_did():
    cases = json.loads(RUNG_RANKS.read_text())
    assert len(cases) == 480 and {case["within_front"] for case in cases} == {"hypervolume", "crowding"}
    for case in cases:
        points, directions = case["points"], case["directions"]
        assert ranking_rule(case["within_front"]).rank(points, directions) == case["rank"][0], case
        # and through the scheduler (quota and count too)
        objectives = [Objective(f"m{i}", d) for i, d in enumerate(directions)]
        scheduler = ParetoSuccessiveHalving([1], objectives, case["reduction_factor"],
                                            within_front=case["within_front"])
        for number, values in enumerate(points[1:]):
            scheduler.records[1][f"t{number}"] = {"values": values, "decision": CONTINUE, "step": 1}
        assert list(scheduler.rank(1, points[0])) == case["rank"], case


def test_a_rule_is_a_strategy_object_the_scheduler_takes():
    class SmallestFirst(RankingRule):
        """Within a front, the fewest parameters first (a rule that is not in RANKING_RULES)."""

        name = "smallest"

        def score(self, front, directions, rung):
            return -np.asarray(front)[:, 1]

    for rule, tiny in ((SmallestFirst(), CONTINUE), ("hypervolume", STOP)):
        scheduler = ParetoSuccessiveHalving([1], OBJECTIVES, reduction_factor=2, within_front=rule)
        assert scheduler.on_result("big", _result(1, 60, 1000)) == CONTINUE
        assert scheduler.on_result("mid", _result(1, 55, 400)) == CONTINUE  # rank 1 of 2 either way, keep 1
        # one front of three, keep 2: the smallest ranks first by this rule, last by hypervolume contribution
        assert scheduler.on_result("tiny", _result(1, 50.5, 10)) == tiny
    assert ParetoSuccessiveHalving([1], OBJECTIVES, within_front=SmallestFirst()).state()["within_front"] == "smallest"
    # a point alone on its front needs no score (the rule scores fronts of two or more)
    assert SmallestFirst().rank([[5, 5], [9, 1]], ["max", "min"]) == 1
    assert SmallestFirst().rank([[9, 1], [5, 5]], ["max", "min"]) == 0


def test_a_scheduler_pickled_before_ranking_rules_unpickles_with_its_rule():
    scheduler = ParetoSuccessiveHalving([1], OBJECTIVES, reduction_factor=2, within_front="crowding")
    scheduler.records[1]["a"] = {"values": [60, 1000], "decision": CONTINUE, "step": 1}
    old_state = {key: value for key, value in vars(scheduler).items() if key != "ranking"}  # as older code pickled
    restored = ParetoSuccessiveHalving.__new__(ParetoSuccessiveHalving)
    restored.__setstate__(old_state)
    assert isinstance(restored.ranking, CrowdingDistance) and restored.rank(1, [50, 10]) == scheduler.rank(1, [50, 10])
    # ... and one pickled before issue 15 decides by the rule of its time
    assert restored.beyond_error is None and restored.baseline == "competitor" and not restored.guard
    again = pickle.loads(pickle.dumps(scheduler))
    assert isinstance(again.ranking, CrowdingDistance) and again.records == scheduler.records


# --------------------------------------------------------------------------------------------------
# The noise-aware rung rule (issue 15): ties within error survive, the baseline is a yardstick
# --------------------------------------------------------------------------------------------------

F1 = "HasAns_f1_always_answer"
SPAN = (Objective(F1, "max"), Objective("parameters", "min"))
BASELINE_SIZE = 17242754


def _span(step, f1, se, parameters=BASELINE_SIZE, kind="search", total=120):
    """A rung result as a sweep reports it: span F1 with its standard error, the parameter count."""
    result = {"step": step, F1: f1, "parameters": parameters, "total_steps": total, "kind": kind}
    return {**result, f"{F1}_se": se} if se is not None else result


def _noise_aware(**settings):
    return make_scheduler(SchedulerSettings(name="pareto_sh", rungs=(40,), **settings), SPAN)


def test_the_default_rule_is_the_noise_aware_one_and_the_old_one_stays_available():
    scheduler = _noise_aware()
    assert isinstance(scheduler.beyond_error, BeyondError) and scheduler.beyond_error.z == 2.0
    assert scheduler.baseline == "reserved" and isinstance(scheduler.ranking, SweepHypervolumeContribution)
    assert scheduler.state()["rung_rule"] == "beyond_error" and scheduler.state()["noise_z"] == 2.0
    old = _noise_aware(rung_rule="plain", within_front="hypervolume")
    assert old.beyond_error is None and old.baseline == "competitor"
    assert isinstance(old.ranking, HypervolumeContribution)
    assert _noise_aware(noise_z=0.5).beyond_error.z == 0.5
    # built directly, the scheduler keeps the rule of old (what old sweeps' state files were decided by)
    assert ParetoSuccessiveHalving([1], OBJECTIVES).beyond_error is None


def test_a_newcomer_tied_with_the_baseline_within_its_error_survives():
    # results/archive/early-stopping-learners at step 40: trial 7 is 0.004 points below the baseline at its size,
    # with standard errors of 1.4; the plain rule stopped it (it ended as the best student, 48.0 F1)
    for scheduler, verdict in ((_noise_aware(), CONTINUE), (_noise_aware(rung_rule="plain"), STOP)):
        assert scheduler.on_result("1", _span(40, 27.20, 1.32, 16504034)) == CONTINUE
        assert scheduler.on_result("0", _span(40, 32.072, 1.41, kind="baseline")) == CONTINUE
        assert scheduler.on_result("7", _span(40, 32.068, 1.44)) == verdict


def test_a_newcomer_dominated_far_beyond_its_error_is_stopped():
    scheduler = _noise_aware()
    scheduler.on_result("1", _span(40, 27.20, 1.32, 16504034))
    scheduler.on_result("0", _span(40, 32.072, 1.41, kind="baseline"))
    scheduler.on_result("7", _span(40, 32.068, 1.44))
    # 17 points below trial 7 and the baseline at their size (beyond 2 x 1.8): behind both trials
    assert scheduler.rank(40, [15.31, BASELINE_SIZE], [1.08, None]) == (2, 1, 4)
    assert scheduler.on_result("2", _span(40, 15.31, 1.08)) == STOP
    assert scheduler.records[40]["2"] == {"values": [15.31, BASELINE_SIZE], "decision": STOP, "step": 40,
                                          "errors": [1.08, None]}
    assert scheduler.records[40]["0"]["baseline"] is True


def test_the_baseline_holds_one_slot_but_takes_none_by_rank():
    # rung: the baseline (best) and one small trial; the newcomer is tied with the baseline at its size
    newcomer, errors = [32.068, BASELINE_SIZE], [1.44, None]
    ranks = {}
    for role in BASELINE_ROLES:
        scheduler = _noise_aware()
        scheduler.baseline = role
        scheduler.on_result("1", _span(40, 27.20, 1.32, 16504034))
        scheduler.on_result("0", _span(40, 32.072, 1.41, kind="baseline"))
        ranks[role] = scheduler.rank(40, newcomer, errors)
    # competitor (the old role): counted, and ranked ahead of the newcomer within the front (a tie at
    # its size loses to it plainly): rank 2 of 3, 1 slot
    assert ranks["competitor"] == (2, 1, 3)
    # reserved (the default): counted in n, it holds one of ceil(3 / 3) = 1 slots, at least one is left
    # to the others, and the newcomer is ranked among the search trials only: first
    assert ranks["reserved"] == (0, 1, 3)
    # yardstick: left out of n too
    assert ranks["yardstick"] == (0, 1, 2)
    scheduler = _noise_aware()
    scheduler.on_result("0", _span(40, 50, 1, kind="baseline"))
    for number in range(1, 6):
        scheduler.on_result(str(number), _span(40, 10 + number, 1, 16_000_000 - number))
    assert scheduler.rank(40, [30, 15_000_000], [1, None])[1:] == (2, 7)  # ceil(7 / 3) = 3 slots, one the baseline's
    with pytest.raises(SweepConfigError, match="baseline must be one of"):
        ParetoSuccessiveHalving([1], SPAN, baseline="judge")


def test_results_without_standard_errors_fall_back_to_plain_dominance_and_say_so_once(caplog):
    scheduler = _noise_aware()
    scheduler.on_result("1", _span(40, 27.20, None, 16504034))
    scheduler.on_result("0", _span(40, 32.072, None, kind="baseline"))
    with caplog.at_level("WARNING", logger="tune_distill.sweep.schedulers"):
        # without standard errors the baseline dominates trial 7 plainly: behind trial 1, outside 1 slot
        assert scheduler.on_result("7", _span(40, 32.068, None)) == STOP
        assert scheduler.on_result("8", _span(40, 5.0, None, 17000000)) == STOP
    warnings = [r.getMessage() for r in caplog.records if "no standard error" in r.getMessage()]
    assert len(warnings) == 1 and f"{F1}_se" in warnings[0]
    assert "errors" not in scheduler.records[40]["7"]


def test_resume_keeps_the_noise_aware_decisions(tmp_path):
    state = tmp_path / "scheduler_state.json"
    settings = SchedulerSettings(name="pareto_sh", rungs=(40, 80), reduction_factor=3)
    first = make_scheduler(settings, SPAN, str(state))
    decisions = {}
    for trial, args in (("1", (27.20, 1.32, 16504034)), ("0", (32.072, 1.41, BASELINE_SIZE, "baseline")),
                        ("7", (32.068, 1.44)), ("2", (15.31, 1.08))):
        decisions[trial] = first.on_result(trial, _span(40, *args))
    assert decisions == {"1": CONTINUE, "0": CONTINUE, "7": CONTINUE, "2": STOP}
    saved = json.loads(state.read_text())
    assert saved["rung_rule"] == "beyond_error" and saved["baseline"] == "reserved"
    resumed = make_scheduler(settings, SPAN, str(state))
    # a stopped trial stays stopped and a kept one is not judged again at its rung, whatever it reports now
    assert resumed.on_result("2", _span(41, 99.0, 0.1)) == STOP
    assert resumed.on_result("7", _span(41, 0.0, 0.1)) == CONTINUE
    assert resumed.records[40] == first.records[40] and resumed.num_stopped == 1
    # a state file written before issue 15 (records without standard errors or baseline flags) loads,
    # and its decisions stand
    for records in saved["records"].values():
        for record in records.values():
            record.pop("errors", None), record.pop("baseline", None)
    old = tmp_path / "old_state.json"
    old.write_text(json.dumps({key: value for key, value in saved.items()
                               if key not in ("rung_rule", "noise_z", "baseline")}))
    from_old = make_scheduler(settings, SPAN, str(old))
    assert [from_old.on_result(trial, _span(40, 20.0, 1.0)) for trial in decisions] == list(decisions.values())


@pytest.mark.parametrize(("scheduler", "message"), [
    ({"rung_rule": "fuzzy"}, r"scheduler.rung_rule: expected one of beyond_error, plain, got 'fuzzy'"),
    ({"noise_z": -1}, r"scheduler.noise_z: must be a number of standard errors in \[0, 10\], got -1"),
    ({"noise_z": 11}, r"scheduler.noise_z: must be a number of standard errors in \[0, 10\]"),
    ({"noise_z": float("nan")}, r"scheduler.noise_z: must be a finite number"),
    ({"noise_z": "two"}, r"scheduler.noise_z: expected a number"),
    ({"noise": 2}, r"scheduler.noise: unknown key"),
])
def test_the_rung_rule_settings_are_checked(scheduler, message):
    from tune_distill.sweep.config import CONFIGS_DIR, sweep_config_from_dict

    space = str(CONFIGS_DIR / "space_smoke.yaml")
    settings = sweep_config_from_dict({"space": space, "scheduler": {"name": "pareto_sh", "rungs": [1]}}).scheduler
    assert (settings.rung_rule, settings.noise_z, settings.within_front) == ("beyond_error", 2.0, "sweep_hypervolume")
    with pytest.raises(SweepConfigError, match=message):
        sweep_config_from_dict({"space": space, "scheduler": {"name": "pareto_sh", "rungs": [1], **scheduler}})
