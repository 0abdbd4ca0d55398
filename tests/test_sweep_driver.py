"""sweep/driver.py (with records.py, trial.py and the rest): tiny real sweeps on one local Ray.

A sweep of 3-5 trials with 2-30 optimiser steps each: every trial recorded once, a failing trial retried
then recorded, and a driver killed mid-sweep resumed to the end. One Ray instance (2 CPUs, no
dashboard) serves every sweep of this module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray")

from sweep_world import ray_cluster_fixture, tiny_sweep, world_fixture  # noqa: E402,F401  (fixtures)

from tune_distill.records import read_trials  # noqa: E402
from tune_distill.sweep.config import SweepConfigError, sweep_config_to_dict  # noqa: E402
from tune_distill.sweep.driver import run_sweep  # noqa: E402


def test_smoke_sweep_runs_every_trial_and_reads_the_caches(world, ray_cluster, tmp_path):
    config = tiny_sweep(world, num_samples=4, scheduler={"name": "pareto_sh", "rungs": [1], "reduction_factor": 2})
    out = tmp_path / "sweep"
    records = run_sweep(config, out)
    assert records == read_trials(out)
    assert [r["number"] for r in records] == [0, 1, 2, 3]
    assert len({r["trial_id"] for r in records}) == 4
    # pareto_sh may stop a trial at step 1 (of 2); every other one completes
    assert all(r["status"] in ("complete", "stopped") for r in records), [(r["status"], r["error"]) for r in records]
    assert records[0]["kind"] == "baseline" and records[0]["baseline"] and records[0]["status"] == "complete"
    assert not any(r["baseline"] for r in records[1:])
    assert records[0]["overrides"]["student.num_hidden_layers"] == 1  # half the tiny teacher's 2 layers
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["no_answer"] == pytest.approx(100 * 2 / 7)
    assert saved["objectives"] == [{"name": "exact", "direction": "max"}, {"name": "parameters", "direction": "min"}]
    assert saved["constraints"] == [{"name": "exact", "op": ">=", "bound": pytest.approx(100 * 2 / 7)}]
    assert saved["summary"]["trials"] == 4
    for record in records:
        assert record["seed"] == 100 + record["number"]
        assert record["node_id"] and record["device"] == "cpu"
        assert record["started_at"] <= record["finished_at"] if record["status"] == "complete" else True
        assert record["metrics"]["parameters"] > 0 and "exact" in record["metrics"]
        run_dir = Path(record["run_dir"])
        assert run_dir.parent.parent == out / "tune"
        trial_log = (run_dir / "trial.log").read_text()
        assert "features: cache hit" in trial_log and "teacher logits: cache hit" in trial_log, trial_log
        if record["status"] == "complete":
            assert json.loads((run_dir / "metrics.json").read_text())["exact"] == record["metrics"]["exact"]
            assert "latency_ms_b1" in record["metrics"] and record["checkpoint"]
        else:
            assert record["steps_saved"] == 1
    with pytest.raises(SweepConfigError, match="already holds a sweep"):
        run_sweep(config, out)


def test_a_failing_trial_is_retried_then_recorded_and_the_others_complete(world, ray_cluster, tmp_path):
    # layer_selection "7" passes the up-front checks but makes build_student raise (no teacher layer 7, or too
    # few indices for two layers) in the trials that draw it
    config = tiny_sweep(world, num_samples=4, max_failures=1, searcher={"name": "random", "seed": 0},
                        space_overrides={"parameters": {"student.layer_selection": {"type": "categorical",
                                                                                    "choices": ["first", "7"]}}})
    records = run_sweep(config, tmp_path / "sweep")
    assert [r["number"] for r in records] == [0, 1, 2, 3]
    failed = [r for r in records if r["status"] == "failed"]
    complete = [r for r in records if r["status"] == "complete"]
    assert failed and len(failed) + len(complete) == 4
    for record in failed:
        assert record["params"]["student.layer_selection"] == "7"
        assert "layer_selection" in record["error"] and record["attempts"] == 2
        assert record["node_id"] and record["device"] == "cpu"
    for record in complete:
        assert record["params"].get("student.layer_selection", "first") == "first" and record["error"] is None


def _snapshot_has_an_unfinished_checkpoint(out: Path) -> bool:
    """Whether the experiment's last snapshot holds an unfinished trial with a checkpoint (False while unreadable)."""
    from ray.tune import ExperimentAnalysis

    try:
        return any(t.status != "TERMINATED" and t.checkpoint for t in ExperimentAnalysis(str(out / "tune")).trials)
    except Exception:  # noqa: BLE001 - a snapshot being written, or none yet
        return False


def test_a_killed_driver_resumes_and_counts_every_trial_once(world, ray_cluster, tmp_path, caplog):
    # one trial at a time, 30 steps each with a checkpoint at each of 3 evaluations; the driver (a
    # subprocess on the module's Ray) is killed as soon as trial 0001 has written a checkpoint
    # snapshots every half second (the default's 60 s would outlast this short sweep: a killed driver's trials then
    # restart from the beginning, which is what a resume from an older snapshot does)
    config = tiny_sweep(world, num_samples=5, max_concurrent=1, base={**tiny_sweep(world).base,
                                                                      "distill.eval_every_steps": 10},
                        space_overrides={"fixed": {"distill.max_steps": 30}}, snapshot_period_s=0.5)
    config_path = tmp_path / "sweep.yaml"
    config_path.write_text(yaml.safe_dump(sweep_config_to_dict(config)))
    out = tmp_path / "sweep"
    env = dict(os.environ, RAY_ADDRESS=ray_cluster, PYTHONUNBUFFERED="1")
    log_path = tmp_path / "driver.log"
    with open(log_path, "w") as driver_log:
        driver = subprocess.Popen([sys.executable, "-m", "tune_distill.sweep", "--config", str(config_path),
                                   "--out", str(out)], stdout=driver_log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 180
        try:
            while time.time() < deadline and driver.poll() is None:
                if list(out.glob("tune/trial_0001_*/checkpoint_*")) and _snapshot_has_an_unfinished_checkpoint(out):
                    break
                time.sleep(0.05)
        finally:
            driver.send_signal(signal.SIGKILL)
            driver.wait(timeout=30)
    assert list(out.glob("tune/trial_0001_*/checkpoint_*")), log_path.read_text()[-3000:]
    assert "summary" not in json.loads((out / "sweep.json").read_text())  # it really died mid-sweep

    # Make Tune's delete-then-snapshot race certain: the unfinished trials' recorded checkpoints vanish and a
    # newer one appears (as when the driver dies after Tune deleted the old one, before the next snapshot)
    from ray.tune import ExperimentAnalysis

    interrupted = [t for t in ExperimentAnalysis(str(out / "tune")).trials if t.status != "TERMINATED" and t.checkpoint]
    assert interrupted, "no trial was interrupted with a checkpoint"
    for trial in interrupted:
        recorded = Path(trial.checkpoint.path)
        if recorded.exists():  # (else the race really happened)
            recorded.rename(recorded.with_name("checkpoint_000099"))

    with caplog.at_level("INFO", logger="tune_distill"):
        records = run_sweep(None, out, resume=True)
    assert "was deleted after the last snapshot" in caplog.text
    assert [r["number"] for r in records] == [0, 1, 2, 3, 4]
    assert len({r["trial_id"] for r in records}) == 5
    assert all(r["status"] == "complete" for r in records), [(r["status"], r["error"]) for r in records]
    assert all(r["metrics"]["step"] == 30 for r in records)
    for trial in interrupted:
        record = next(r for r in records if r["trial_id"] == trial.trial_id)
        assert "resumes from Tune's checkpoint" in (Path(record["run_dir"]) / "trial.log").read_text()
    assert read_trials(out) == records
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["summary"]["status_counts"] == {"complete": 5}
    assert [run["resumed"] for run in saved["runs"]] == [True]
