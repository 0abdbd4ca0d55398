"""sweep/searcher.py: the Ray searcher adapter (no Ray trials: suggestions and outcomes fed by hand)."""

from __future__ import annotations

import json

import pytest
from sweep_world import OBJECTIVES, TINY_SPACE

from tune_distill.search import Constraint, SearcherError, make_searcher, parse_space
from tune_distill.sweep.searcher import SWEEP_SEARCHER_FORMAT, SweepSearcher


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


def test_the_searcher_checkpoint_is_json_data_and_bad_files_are_named(tmp_path):
    """Tune's searcher checkpoint (tune/searcher-state-*.pkl by Tune's name) holds JSON, not a pickle: the same
    suggestions after a restore as without one, and a damaged file refused with its path in the message."""
    space = parse_space(TINY_SPACE, {"teacher.num_hidden_layers": 2})

    def adapter():
        return SweepSearcher(make_searcher("nsga2", space, OBJECTIVES, (), seed=1, population_size=2), space,
                             OBJECTIVES, (), num_samples=8)

    searcher, twin = adapter(), adapter()
    for index in range(4):
        for one in (searcher, twin):
            one.suggest(f"t{index}")
            one.on_trial_complete(f"t{index}", {"exact": 10.0 * index, "parameters": 5 - index, "final": True})
    searcher.suggest("t4")
    twin.suggest("t4")
    path = tmp_path / "searcher-state-x.pkl"
    searcher.save(str(path))
    document = json.loads(path.read_text())
    assert document["format"] == SWEEP_SEARCHER_FORMAT and document["outstanding"] == ["t4"]
    assert document["inner"].startswith("tune_distill.search.state/2\n")
    restored = adapter()
    restored.restore(str(path))
    for one in (restored, twin):
        one.on_trial_complete("t4", {"exact": 3.0, "parameters": 2, "final": True})
    assert restored.suggest("t5") == twin.suggest("t5")

    path.write_text(json.dumps({**document, "next_number": "five"}))
    with pytest.raises(SearcherError, match=rf"{path}: field\(s\) \['next_number'\]"):
        adapter().restore(str(path))
    path.write_text('{"format": ')
    with pytest.raises(SearcherError, match=rf"{path}: not a searcher checkpoint"):
        adapter().restore(str(path))


class _Told:
    """A wrapped searcher that remembers what it was told (trial id, status, values)."""

    def __init__(self, inner):
        self.inner, self.told = inner, []

    def suggest(self, trial_id):
        return self.inner.suggest(trial_id)

    def observe(self, trial_id, values, status):
        self.told.append((trial_id, status, values))
        self.inner.observe(trial_id, values, status)

    def state(self):
        return self.inner.state()


def _listen(adapter: SweepSearcher) -> _Told:
    """Put a _Told around the adapter's wrapped searcher (set_state rebuilds it: listen after a restore)."""
    adapter._inner = _Told(adapter._inner)
    return adapter._inner


def test_a_trial_stopped_while_paused_is_told_pruned_with_its_last_values(tmp_path):
    """Tune completes a trial it stops while PAUSED (pareto_sh's rung_fill) with no result and no error: the
    searcher is told the values of its last report (pruned), only objectives, constraints and the final flag are
    kept (the saved state stays small), and they survive a save and restore; a trial that never reported, or
    one that raised, is still failed."""
    space = parse_space(TINY_SPACE, {"teacher.num_hidden_layers": 2})
    constraints = (Constraint("f1", ">=", 10.0),)

    def adapter():
        return SweepSearcher(make_searcher("random", space, OBJECTIVES, constraints, seed=0), space, OBJECTIVES,
                             constraints, num_samples=6, baseline={"student.init": "teacher"})

    searcher = adapter()
    told = _listen(searcher)
    for index in range(6):
        searcher.suggest(f"t{index}")
    rung = {"step": 2, "exact": 40.0, "parameters": 10, "f1": 45.5, "loss": 1.25, "HasAns_f1": 3.0, "config": {}}
    searcher.on_trial_result("t0", {**rung, "kind": "baseline"})  # the baseline is never told: nothing kept
    searcher.on_trial_result("t1", {**rung, "step": 1, "exact": 20.0})
    searcher.on_trial_result("t1", rung)  # the report it was paused at (the last one counts)
    searcher.on_trial_result("t3", {**rung, "exact": float("nan")})  # a non-finite value is not kept
    searcher.on_trial_result("t4", {**rung, "exact": 55.0})
    assert searcher.get_state()["last"] == {"t1": {"exact": 40.0, "parameters": 10.0, "f1": 45.5},
                                            "t3": {"parameters": 10.0, "f1": 45.5},
                                            "t4": {"exact": 55.0, "parameters": 10.0, "f1": 45.5}}
    searcher.on_trial_complete("t1")  # stopped while paused
    searcher.on_trial_complete("t2")  # never reported (e.g. stopped while PENDING)
    searcher.on_trial_complete("t3", None, error=True)
    assert told.told == [("t1", "pruned", {"exact": 40.0, "parameters": 10.0, "f1": 45.5}), ("t2", "failed", None),
                         ("t3", "failed", None)]
    assert set(searcher.get_state()["last"]) == {"t4"}  # told trials' values are dropped

    path = tmp_path / "searcher-state.pkl"
    searcher.save(str(path))
    restored = adapter()
    restored.restore(str(path))
    told = _listen(restored)  # after the restore, which rebuilds the wrapped searcher
    restored.on_trial_complete("t4")
    assert told.told == [("t4", "pruned", {"exact": 55.0, "parameters": 10.0, "f1": 45.5})]

    # a checkpoint saved before the last values were kept still loads: a stopped paused trial is then failed
    document = json.loads(path.read_text())
    del document["last"]
    path.write_text(json.dumps(document))
    old = adapter()
    old.restore(str(path))
    told = _listen(old)
    old.on_trial_complete("t4")
    old.on_trial_complete("t5", {"exact": 50.0, "parameters": 9, "f1": 50.0, "final": True})
    assert told.told == [("t4", "failed", None), ("t5", "complete", {"exact": 50.0, "parameters": 9.0, "f1": 50.0})]
    path.write_text(json.dumps({**document, "last": ["t4"]}))
    with pytest.raises(SearcherError, match=r"field\(s\) \['last'\]"):
        adapter().restore(str(path))
