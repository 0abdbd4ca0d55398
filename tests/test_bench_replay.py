"""bench/replay_schedulers.py: recorded curves replayed through the sweep's schedulers (no training, no Ray run)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import write_replay_run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import replay_schedulers  # noqa: E402


def _curves(tmp_path: Path) -> Path:
    # (trial, kind, parameters, span F1 at steps 2, 4, 6); two trials at a time, in number order
    trials = [
        ("t0", "baseline", 100, (30, 40, 50)),
        ("t1", "search", 90, (10, 12, 14)),   # smaller, far less accurate
        ("t2", "search", 100, (20, 30, 35)),  # as large as the baseline and less accurate: dominated
        ("t3", "search", 50, (28, 38, 45)),   # half the size, nearly as accurate
    ]
    rows = []
    for number, (trial_id, kind, parameters, scores) in enumerate(trials):
        for index, (step, score) in enumerate(zip((2, 4, 6), scores)):
            rows.append({"trial_id": trial_id, "number": number, "kind": kind, "step": step, "total_steps": 6,
                         "final": step == 6, "timestamp": 10 * (number // 2) + index + 0.1 * number,
                         "metrics": {"f1": float(score), "parameters": parameters}})
    return write_replay_run(tmp_path, rows)


def test_replay_measures_steps_and_hypervolume_like_the_benchmark(tmp_path, capsys):
    curves = _curves(tmp_path)
    out = tmp_path / "replay.json"
    assert replay_schedulers.main([str(curves), "--reduction-factors", "2", "--json", str(out)]) == 0
    table = {row["scheduler"]: row for row in json.loads(out.read_text())["table"]}
    assert table["fifo"]["steps"] == 24 and table["fifo"]["stopped"] == 0
    # pareto_sh (rungs 2 and 4, keep half): t2 is dominated by the baseline at rung 2 and stops there;
    # t3 (small, accurate) and the baseline run to the end; t1 (smallest) is first at rung 2 of its pair
    pareto = table["pareto_sh rf=2"]
    assert (2, 2) in [tuple(stop) for stop in pareto["stops"]]
    assert all(number != 3 for number, _ in pareto["stops"])
    assert pareto["steps_saved_pct"] > 0 and pareto["hypervolume_loss_pct"] is not None
    # single-objective halving on f1 stops the small, weak t1 at its first rung
    assert [1, 2] in table["single rf=2"]["stops"]
    assert "pareto_sh:crowding rf=2" in table and "asha rf=2" in table
    assert "scheduler" in capsys.readouterr().out


def test_replicates_are_summarised_with_their_range_and_target_count(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    curves = [_curves(first), _curves(second)]
    out = tmp_path / "replay.json"
    assert replay_schedulers.main([*map(str, curves), "--reduction-factors", "2", "--schedulers", "pareto_sh",
                                   "--target-steps", "0", "--target-loss", "100", "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    assert [run["source"] for run in written["runs"]] == [str(path) for path in curves]
    one_run = {row["scheduler"]: row for row in written["runs"][0]["table"]}["pareto_sh rf=2"]
    summary = {row["scheduler"]: row for row in written["summary"]}["pareto_sh rf=2"]
    # the same curves twice: mean = min = max = the single run's figures; a target of 0% / 100% is met twice
    assert summary["steps_saved_pct"] == {"mean": one_run["steps_saved_pct"], "min": one_run["steps_saved_pct"],
                                          "max": one_run["steps_saved_pct"]}
    assert summary["hypervolume_loss_pct"]["max"] == pytest.approx(one_run["hypervolume_loss_pct"])
    assert summary["meets_target"] == 2 and summary["runs"] == 2
    assert "2 runs; target" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        replay_schedulers.main([*map(str, curves), "--save-curves", str(tmp_path / "c.jsonl")])


def test_replay_reads_a_sweep_folder_and_saves_its_curves(tmp_path):
    folder = tmp_path / "fifo"
    trial = folder / "tune" / "trial_0000_aa"
    trial.mkdir(parents=True)
    results = [{"trial_id": "aa", "number": 0, "kind": "baseline", "timestamp": step, "step": step, "total_steps": 4,
                "final": step == 4, "f1": 10.0 * step, "parameters": 5, "done": False} for step in (2, 4)]
    (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results))
    curves = replay_schedulers.read_curves(folder, ["f1", "parameters"])
    assert [row["step"] for row in curves] == [2, 4] and curves[0]["metrics"] == {"f1": 20.0, "parameters": 5}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"trial_id": "x"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: evaluation 0 lacks \['timestamp', 'step', 'metrics'\]"):
        replay_schedulers.read_curves(bad, ["f1"])


def test_missing_rung_errors_are_the_trials_share_of_the_binomial_bound():
    # a trial's final span F1 50 on 100 questions with se 4 is 0.8 of the bound sqrt(50 * 50 / 100) = 5
    records = [{"trial_id": "a", "metrics": {"f1": 50.0, "f1_se": 4.0, "total": 100}},
               {"trial_id": "b", "metrics": {"f1": 20.0, "total": 100}}]  # no final error: the pooled share
    curves = [{"trial_id": "a", "step": 2, "metrics": {"f1": 20.0, "parameters": 9}},
              {"trial_id": "b", "step": 2, "metrics": {"f1": 20.0, "parameters": 9}}]
    filled, note = replay_schedulers.estimate_standard_errors(curves, records, ["f1", "parameters"])
    bound = (20.0 * 80.0 / 100) ** 0.5  # 4.0 at the rung's score
    assert filled[0]["metrics"]["f1_se"] == pytest.approx(0.8 * bound)
    assert filled[1]["metrics"]["f1_se"] == pytest.approx(replay_schedulers.POOLED_SHARE * bound)
    assert "parameters_se" not in filled[0]["metrics"] and note.startswith("estimated (trial")
    bounded, _ = replay_schedulers.estimate_standard_errors(curves, records, ["f1"], mode="bound")
    assert bounded[0]["metrics"]["f1_se"] == pytest.approx(bound)
    untouched, note = replay_schedulers.estimate_standard_errors(curves, records, ["f1"], mode="none")
    assert "f1_se" not in untouched[0]["metrics"] and note.startswith("none")


def test_the_clairvoyant_bound_keeps_only_what_the_final_front_needs(tmp_path):
    rows = [json.loads(line) for line in _curves(tmp_path).read_text().splitlines()]
    objectives = [{"name": "f1", "direction": "max"}, {"name": "parameters", "direction": "min"}]
    reference = replay_schedulers.curve_reference(rows, objectives, [])
    loose = replay_schedulers.clairvoyant(rows, [2, 4], objectives, [], reference, target_loss=100.0)
    assert loose["kept_past_first_rung"] == [] and loose["steps"] == 6 + 3 * 2  # the baseline runs to its end
    exact = replay_schedulers.clairvoyant(rows, [2, 4], objectives, [], reference, target_loss=0.0)
    assert exact["hypervolume_loss_pct"] == pytest.approx(0.0)
    assert (3, 6) in exact["kept_past_first_rung"]  # t3, half the size, is on the final front
    assert all(number != 2 for number, _ in exact["kept_past_first_rung"])  # t2 is dominated at every step
