"""sweep/searcher.py: the Ray searcher adapter (no Ray trials: suggestions and outcomes fed by hand)."""

from __future__ import annotations

from sweep_world import OBJECTIVES, TINY_SPACE

from tune_distill.search import Constraint, make_searcher, parse_space
from tune_distill.sweep.searcher import SweepSearcher


def test_sweep_searcher_baseline_statuses_and_state(tmp_path):
    space = parse_space(TINY_SPACE, {"teacher.num_hidden_layers": 2})
    constraints = (Constraint("exact", ">=", 30.0),)
    inner = make_searcher("random", space, OBJECTIVES, constraints, seed=0)
    searcher = SweepSearcher(inner, space, OBJECTIVES, constraints, num_samples=5, baseline={"student.init": "teacher"})
    first = searcher.suggest("t0")
    assert first == {"number": 0, "kind": "baseline", "params": {}, "overrides": {"student.init": "teacher"}}
    second, third = searcher.suggest("t1"), searcher.suggest("t2")
    assert (second["number"], third["number"]) == (1, 2) and second["kind"] == "search"
    assert second["overrides"]["distill.max_steps"] == 2 and set(second["params"]) == set(space.names)
    assert searcher.outcome({"exact": 50.0, "parameters": 10, "final": True}, False) == (
        "complete", {"exact": 50.0, "parameters": 10.0})
    assert searcher.outcome({"exact": 50.0, "parameters": 10}, False)[0] == "pruned"
    assert searcher.outcome({"parameters": 10, "final": True}, False) == ("failed", None)
    assert searcher.outcome(None, True) == ("failed", None)
    searcher.on_trial_complete("t0", {"exact": 40.0, "parameters": 10, "final": True})  # baseline: not observed
    searcher.on_trial_complete("t1", {"exact": 40.0, "parameters": 10, "final": True})
    path = tmp_path / "searcher.pkl"
    searcher.save(str(path))
    fresh = SweepSearcher(make_searcher("random", space, OBJECTIVES, constraints, seed=0), space, OBJECTIVES,
                          constraints, num_samples=5, baseline={"student.init": "teacher"})
    fresh.restore(str(path))
    assert fresh.next_number == 3
    fresh.on_trial_complete("t2", None, error=True)  # still outstanding after the restore
    fresh.on_trial_complete("t1", {"exact": 1.0, "parameters": 1, "final": True})  # seen before: ignored
    assert fresh.suggest("t3")["number"] == 3 and fresh.suggest("t4")["number"] == 4
    assert fresh.suggest("t5") == SweepSearcher.FINISHED
