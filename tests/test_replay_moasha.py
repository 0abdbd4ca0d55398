"""bench/replay_moasha.py, and what Syne Tune's MOASHA does at a rung (skipped where syne_tune is not installed).

The first tests pin the INSTALLED Syne Tune's behaviour (the ordering flaw of results/archive/moasha.md): if a
release fixes it, they fail and the note must be revisited. Run them in a venv that has syne-tune:
  PYTHONPATH=. /work/venv-syne/bin/python -m pytest -q tests/test_replay_moasha.py
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("syne_tune")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from syne_tune.backend.trial_status import Trial  # noqa: E402
from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA  # noqa: E402
from syne_tune.optimizer.schedulers.multiobjective.non_dominated_priority import (  # noqa: E402
    compute_epsilon_net,
    nondominated_sort,
)

from bench import replay_moasha  # noqa: E402

# The minimal case: one rung, two minimised objectives (error, size), MOASHA's default reduction factor 3.
# D arrives last and dominates A, B and C.
MINIMAL = {"A": (0.70, 20.0), "B": (0.75, 15.0), "C": (0.90, 25.0), "D": (0.65, 10.0)}


def _decisions(priority=None) -> dict[str, str]:
    scheduler = MOASHA(config_space={}, metrics=["error", "size"], do_minimize=True, time_attr="epoch", max_t=9,
                       grace_period=1, reduction_factor=3, multiobjective_priority=priority)
    decisions = {}
    for trial_id, (name, (error, size)) in enumerate(MINIMAL.items()):
        trial = Trial(trial_id=trial_id, config={}, creation_time=datetime.now())
        scheduler.on_trial_add(trial)
        decisions[name] = scheduler.on_trial_result(trial, {"epoch": 1, "error": error, "size": size})
    return decisions


def test_moasha_default_stops_a_newcomer_that_dominates_every_trial_at_its_rung():
    # nondominated_sort lists the trials best first: D, then the front {A, B}, then C (indices 3, 0, 1, 2);
    # the bracket takes that list as one priority per trial and reads the newcomer's entry at the end: 2 (C's
    # index), a quantile of 2/4 > 1/3, so D is stopped
    assert nondominated_sort(np.array(list(MINIMAL.values())), dim=0) == [3, 0, 1, 2]
    assert _decisions() == {"A": "CONTINUE", "B": "STOP", "C": "STOP", "D": "STOP"}


def test_the_order_read_as_ranks_keeps_the_dominant_newcomer():
    # the one-line fix (priority = argsort of the order, i.e. each trial's rank) keeps D (rank 0 of 4)
    assert _decisions(replay_moasha.make_priority("moasha:ranks")) == {
        "A": "CONTINUE", "B": "STOP", "C": "STOP", "D": "CONTINUE"}


def test_on_a_line_order_and_ranks_coincide_which_is_all_syne_tunes_own_tests_use():
    # points each dominating the next, in arrival order (np.arange rows, or metric1 == metric2): the order is
    # the identity, equal to its ranks, so reading one as the other changes nothing
    line = np.arange(15, dtype=float).reshape(5, 3)
    assert nondominated_sort(line, dim=0) == [0, 1, 2, 3, 4]
    shuffled = line[[2, 0, 4, 1, 3]]  # the same line arriving in another order: now they differ
    order = nondominated_sort(shuffled, dim=0)
    assert order == [1, 3, 0, 4, 2] and replay_moasha.ranks_of(order).tolist() == [2, 0, 4, 1, 3]


def test_the_epsilon_net_returns_ranks_that_nondominated_sort_uses_as_an_order():
    # one front of four points: the net picks 0 (lowest first objective), then 3 (farthest), then 1, then 2,
    # and returns each point's pick position (ranks 0, 2, 3, 1); nondominated_sort indexes the front with those
    # ranks as if they were the picks, and puts 3, the net's second pick, third
    front = np.array([[0.0, 4.0], [1.0, 2.0], [2.0, 1.0], [3.0, 0.0]])
    assert compute_epsilon_net(front, dim=0).tolist() == [0, 2, 3, 1]
    assert nondominated_sort(front, dim=0) == [0, 2, 3, 1]
    fixed = replay_moasha.make_priority("moasha:ranks+enet")(front)
    assert np.argsort(fixed).tolist() == [0, 3, 1, 2]  # the net's own picking order


def _curves(folder: Path) -> Path:
    # (kind, parameters, f1 at steps 2, 4, 6): the baseline, two weak large students, then one that dominates
    # everything at the first rung (2) from its first evaluation on
    trials = [
        ("baseline", 100, (30, 40, 50)),
        ("search", 90, (20, 25, 30)),
        ("search", 120, (10, 12, 14)),
        ("search", 110, (15, 20, 22)),
        ("search", 50, (35, 45, 55)),
    ]
    rows = []
    for number, (kind, parameters, scores) in enumerate(trials):
        for index, (step, score) in enumerate(zip((2, 4, 6), scores)):
            rows.append({"trial_id": f"t{number}", "number": number, "kind": kind, "step": step, "total_steps": 6,
                         "final": step == 6, "timestamp": 10 * number + index,
                         "metrics": {"f1": float(score), "exact": 60.0, "parameters": parameters}})
    fifo = folder / "fifo"
    fifo.mkdir(parents=True)
    curves = fifo / "curves.jsonl"
    curves.write_text("".join(json.dumps(row) + "\n" for row in rows))
    (fifo / "sweep.json").write_text(json.dumps({
        "objectives": [{"name": "f1", "direction": "max"}, {"name": "parameters", "direction": "min"}],
        "constraints": [{"name": "exact", "op": ">=", "bound": 50.0}], "config": {"scheduler": {"rungs": [2, 4]}}}))
    return curves


def test_the_bench_replays_moasha_in_fifo_order_with_the_same_accounting(tmp_path, capsys):
    curves = _curves(tmp_path / "run-a")
    # an earlier replay of our schedulers beside it: its arms are rebuilt from their stops and accounted alike
    (tmp_path / "run-a" / "replay.json").write_text(json.dumps({
        "rungs": [2, 4], "trials": 5, "table": [
            {"scheduler": "fifo", "steps": 30, "hypervolume_loss_pct": 0.0, "stops": []},
            {"scheduler": "pareto_sh rf=3", "steps": 24, "hypervolume_loss_pct": 0.0, "stops": [[2, 2], [3, 4]]}]}))
    out = tmp_path / "moasha.json"
    assert replay_moasha.main([str(curves), "--reduction-factors", "3", "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    rows = {(row["scheduler"], row["reduction_factor"]): row for row in written["rows"]}
    assert set(rows) == {("fifo", None), ("moasha", 3.0), ("moasha:ranks", 3.0), ("moasha:ranks+enet", 3.0),
                         ("pareto_sh", 3.0)}
    assert rows[("fifo", None)]["steps"] == 30 and rows[("fifo", None)]["stopped"] == 0
    # at rung 2 the newcomer t4 (rank 0 of 5) lands after t3, whose index (3) the default reads: 3/5 > 1/3, stop
    assert [4, 2] in rows[("moasha", 3.0)]["stops"]
    assert all(number != 4 for number, _ in rows[("moasha:ranks", 3.0)]["stops"])
    # the baseline (number 0) is never stopped; steps are the last reported step of each trial
    for row in written["rows"]:
        assert all(number != 0 for number, _ in row["stops"])
        stop_steps = {number: step for number, step in row["stops"]}
        assert row["steps"] == sum(stop_steps.get(number, 6) for number in range(5))
    ours = rows[("pareto_sh", 3.0)]
    assert ours["steps"] == 24 and ours["source"] == "replay.json"
    table = rows  # every row carries the run's diagnostics too
    assert table[("pareto_sh", 3.0)]["matches_replay_json"]
    assert table[("moasha", 3.0)]["dominant_stopped"] == 1 and table[("moasha:ranks", 3.0)]["dominant_stopped"] == 0
    assert table[("moasha:ranks", 3.0)]["decisions_unlike_ranks"] == 0
    assert table[("moasha", 3.0)]["stopped_ranks_keep"] >= 1
    # losing t4, the best student, costs hypervolume; keeping it costs none
    assert rows[("moasha", 3.0)]["hypervolume_loss_pct"] > 0 == rows[("moasha:ranks", 3.0)]["hypervolume_loss_pct"]
    assert written["runs"][0]["run"] == "run-a" and "moasha" in capsys.readouterr().out


def test_replicates_are_summarised_per_group(tmp_path, capsys):
    sources = [str(_curves(tmp_path / name)) for name in ("run-a", "run-b")]
    out = tmp_path / "moasha.json"
    assert replay_moasha.main([*sources, "--reduction-factors", "2", "--priorities", "moasha",
                               "--group", "pair=run-a,run-b", "--json", str(out)]) == 0
    summaries = json.loads(out.read_text())["summaries"]
    assert set(summaries) == {"all", "pair"} and summaries["pair"]["runs"] == ["run-a", "run-b"]
    moasha = {row["scheduler"]: row for row in summaries["pair"]["summary"]}["moasha rf=2"]
    assert moasha["runs"] == 2 and moasha["steps_saved_pct"]["min"] == moasha["steps_saved_pct"]["max"]
    assert "2 runs; target" in capsys.readouterr().out


def test_the_simulator_backend_replays_the_same_curves_through_its_tuner(tmp_path, capsys):
    pytest.importorskip("pandas")
    pytest.importorskip("huggingface_hub")  # syne_tune.blackbox_repository imports it
    curves = _curves(tmp_path / "run-a")
    out = tmp_path / "moasha.json"
    assert replay_moasha.main([str(curves), "--reduction-factors", "3", "--priorities", "moasha", "moasha:ranks",
                               "--simulator", "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    run = written["runs"][0]
    # one worker (no max_concurrent in sweep.json) and trials run one after another: the simulated fifo run
    # delivers the results in the recorded order, so the simulated arms decide as the API-driven ones
    assert run["simulator"] == {"n_workers": 1, "fifo_order_matches": True, "fifo_rung_peers_match": True}
    rows = {(row["scheduler"], row["reduction_factor"]): row for row in written["rows"]}
    assert rows[("moasha@sim", 3.0)]["source"] == "syne_tune simulator"
    for name in ("moasha", "moasha:ranks"):
        assert rows[(f"{name}@sim", 3.0)]["stops"] == rows[(name, 3.0)]["stops"]
    assert [4, 2] in rows[("moasha@sim", 3.0)]["stops"]
    assert "simulator: 1 workers" in capsys.readouterr().out


def test_curves_outside_a_fifo_folder_and_a_trial_that_stopped_reporting(tmp_path, capsys):
    # a run folder holding curves.jsonl, sweep.json and replay.json side by side; trial 3 failed after rung 2
    curves = _curves(tmp_path / "run-b")
    folder = tmp_path / "run-b" / "cpu-run"
    curves.parent.rename(folder)
    curves = folder / "curves.jsonl"
    rows = [json.loads(line) for line in curves.read_text().splitlines()]
    curves.write_text("".join(json.dumps(row) + "\n" for row in rows if not (row["number"] == 3 and row["step"] > 2)))
    (folder / "replay.json").write_text(json.dumps({"rungs": [2, 4], "table": [
        {"scheduler": "asha rf=3", "steps": 22, "hypervolume_loss_pct": 0.0, "stops": [[1, 2]]}]}))
    out = tmp_path / "moasha.json"
    assert replay_moasha.main([str(curves), "--reduction-factors", "3", "--priorities", "moasha", "--simulator",
                               "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["runs"][0]["run"] == "cpu-run" and "skipped" in written["runs"][0]["simulator"]
    rows = {(row["scheduler"], row["reduction_factor"]): row for row in written["rows"]}
    assert rows[("fifo", None)]["steps"] == 26  # trial 3 counts its last step, 2
    assert rows[("asha", 3.0)]["source"] == "replay.json" and ("moasha@sim", 3.0) not in rows
    assert "simulator: skipped" in capsys.readouterr().out
