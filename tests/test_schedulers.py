"""sweep/schedulers.py and sweep/ranking.py: Pareto successive halving and its rung-ranking rules.

No Ray trials: results are fed in by hand. The rules' decisions are checked against rung ranks recorded
from the pre-split sweep.py (fixtures/old_sweep/rung_ranks.json, made by make_rung_ranks.py there).
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
    CrowdingDistance,
    HypervolumeContribution,
    RankingRule,
    SweepHypervolumeContribution,
    ranking_rule,
)
from tune_distill.sweep.schedulers import (
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
    again = pickle.loads(pickle.dumps(scheduler))
    assert isinstance(again.ranking, CrowdingDistance) and again.records == scheduler.records
