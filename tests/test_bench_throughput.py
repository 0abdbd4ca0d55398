"""bench/distill_throughput.py runs on any device, CPU included: ours against the reference loop (`ratio:`),
model FLOP/s against the matmul peak, and with --concurrent the combined features/s of N processes.

Tiny teacher and data, a few steps: what is checked is that every figure is there, not its size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import write_sweep_inputs

ROOT = Path(__file__).resolve().parent.parent


def test_the_throughput_bench_reports_ratio_flops_and_concurrent_runs(tmp_path):
    teacher, data = write_sweep_inputs(tmp_path)
    out = tmp_path / "figures.json"
    command = [sys.executable, str(ROOT / "bench" / "distill_throughput.py"), "--teacher", str(teacher),
               "--data", str(data / "train.json"), "--max-examples", "0", "--steps", "2", "--batch-size", "4",
               "--max-seq-length", "128", "--doc-stride", "32", "--layers", "1", "--threads", "1",
               "--concurrent", "1,2", "--out", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    finished = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    lines = finished.stdout.splitlines()
    assert any(line.startswith("ratio: ") for line in lines)
    assert any(line.startswith("matmul peak here (fp32)") and "% of it" in line for line in lines)
    assert [line.split(":")[0] for line in lines if line.startswith("concurrent")] == ["concurrent 1", "concurrent 2"]
    figures = json.loads(out.read_text())
    assert figures["precision_ours"] == "fp32" and figures["pad_multiple_ours"] == 8  # auto on CPU, both
    assert figures["ratio"] > 0 and figures["ours_share_of_matmul_peak"] > 0
    rows = figures["concurrent"]
    assert [row["processes"] for row in rows] == [1, 2] and rows[0]["ratio_to_one_process"] == 1
    assert all(row["combined_features_per_second"] > 0 and row["trials_per_device_hour"] > 0 for row in rows)
    assert len(rows[1]["per_process_features_per_second"]) == 2
