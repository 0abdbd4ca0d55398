"""bench/replay_workers.py: recorded curves played with N workers in virtual time (no training, no Ray run)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import write_replay_run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import replay_schedulers, replay_workers  # noqa: E402


def _curves(tmp_path: Path) -> Path:
    # (trial, kind, parameters, span F1 at steps 2, 4, 6, seconds per step); recorded two at a time, in number order
    trials = [
        ("t0", "baseline", 100, (30, 40, 50), 1.0),
        ("t1", "search", 90, (10, 12, 14), 1.0),   # smaller, far less accurate
        ("t2", "search", 100, (20, 30, 35), 1.0),  # as large as the baseline and less accurate: dominated
        ("t3", "search", 50, (28, 38, 45), 3.0),   # half the size, nearly as accurate, three times slower
    ]
    rows = []
    for number, (trial_id, kind, parameters, scores, pace) in enumerate(trials):
        start = 100.0 * (number // 2)
        for step, score in zip((2, 4, 6), scores):
            rows.append({"trial_id": trial_id, "number": number, "kind": kind, "step": step, "total_steps": 6,
                         "final": step == 6, "timestamp": start + pace * step,
                         "metrics": {"f1": float(score), "parameters": parameters}})
    return write_replay_run(tmp_path, rows)


def test_each_trial_keeps_its_recorded_durations_and_starts_in_number_order(tmp_path):
    run = replay_schedulers.load_run(_curves(tmp_path), None, None)
    trials = replay_workers.timelines(run["curves"])
    assert [t["number"] for t in trials] == [0, 1, 2, 3]
    assert trials[3]["durations"] == [6.0, 6.0, 6.0]  # the first segment at the second's pace
    played = replay_workers.play(trials, None, workers=2)  # fifo: trials 2 and 3 start when 0 and 1 end (t = 6)
    assert played["ends"] == [(6.0, "t0"), (6.0, "t1"), (12.0, "t2"), (24.0, "t3")]
    assert replay_workers.play(trials, None, workers=4)["makespan"] == 18.0  # all at once: the slowest


def test_with_two_workers_the_default_makes_the_recorded_orders_decisions(tmp_path):
    curves = _curves(tmp_path)
    recorded = replay_schedulers.replay_table(curves, None, None, [3.0], ["pareto_sh"])
    played = replay_workers.workers_table(curves, None, ["pareto_sh"], workers=2)
    assert [row["stops"] for row in played["table"]] == [row["stops"] for row in recorded["table"]]


def test_a_rung_that_waits_pauses_early_arrivals_and_settles_when_nothing_else_can_come(tmp_path):
    table = replay_workers.workers_table(_curves(tmp_path), None, ["pareto_sh", "pareto_sh:fill=workers"], workers=4)
    rows = {row["scheduler"]: row for row in table["table"]}
    # on arrival the fast dominated trial 2 reaches step 2 beside the baseline and trial 1 only, and is kept;
    # waiting for all four, the rung keeps ceil(4 / 3) = 2 (the reserved baseline and trial 3)
    assert rows["pareto_sh:fill=workers"]["stops"] == [(1, 2), (2, 2)]
    assert rows["pareto_sh:fill=workers"]["hypervolume_loss_pct"] == 0.0
    assert rows["pareto_sh:fill=workers"]["steps_saved_pct"] > rows["pareto_sh"]["steps_saved_pct"]
    # 95% of fifo's hypervolume needs trial 3, the slowest (18 s), under either rule
    assert rows["fifo"]["t95"] == 18.0 and rows["pareto_sh:fill=workers"]["t95"] == 18.0


def test_the_command_writes_every_table_and_the_summary(tmp_path, capsys):
    out = tmp_path / "w.json"
    assert replay_workers.main([str(_curves(tmp_path)), "--workers", "3", "--arms", "fifo", "pareto_sh",
                                "--json", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["workers"] == 3 and [row["scheduler"] for row in saved["summary"]] == ["fifo", "pareto_sh"]
    assert {"t95", "t95_ratio", "steps_saved_pct", "hypervolume_loss_pct"} <= set(saved["runs"][0]["table"][1])
    assert "t95/fifo" in capsys.readouterr().out
