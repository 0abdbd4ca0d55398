"""Simulated sweeps: the surrogate fitted to recorded curves, the device clock, the simulated trial, pruning."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from sweep_world import ray_cluster_fixture, tiny_sweep, world_fixture  # noqa: F401  (fixtures)

from tune_distill.config import RunConfig, apply_overrides
from tune_distill.simulate.surrogate import FEATURES, Surrogate, features, fit_surrogate, teacher_namespace
from tune_distill.simulate.timing import DEVICES, evaluation_seconds, step_seconds
from tune_distill.sweep.config import SweepConfigError, sweep_config_from_dict
from tune_distill.sweep.pruning import CheckpointPruner, prune_trial
from tune_distill.sweep.simulated import SIMULATION_FILE, run_simulated, simulated_cost

TEACHER = {"teacher.num_hidden_layers": 4, "teacher.hidden_size": 32, "teacher.num_attention_heads": 4,
           "teacher.intermediate_size": 64}


def recorded_sweep(folder: Path, offset: float, with_errors: bool = True) -> Path:
    """A recorded fifo sweep on disk: 8 trials of 3 evaluations, span F1 rising with the learning rate and falling
    with depth, exact flat; the baseline first."""
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text(json.dumps({"teacher": TEACHER, "config": {"base": {"distill.max_steps": 30}}}))
    curves, records = [], []
    for number in range(8):
        rate, layers = 10 ** (-4.5 + 0.2 * number), 1 + number % 4
        final = offset + 40 + 30 * (math.log10(rate) + 4.5) - 2 * layers
        overrides = {"distill.learning_rate": rate, "student.num_hidden_layers": layers,
                     "distill.temperature": 1.0 + number % 3, "student.init": "random"}
        for step in (10, 20, 30):
            metrics = {"f1span": final - (30 - step) * 0.4, "exact": 50.0, "parameters": 1000}
            if with_errors:
                metrics.update(f1span_se=1.0 + step / 100, exact_se=0.5)
            curves.append({"trial_id": f"t{number}", "number": number, "kind": "baseline" if number == 0 else "search",
                           "timestamp": 100 * number + step, "step": step, "total_steps": 30, "final": step == 30,
                           "metrics": metrics})
        records.append({"trial_id": f"t{number}", "number": number, "kind": "baseline" if number == 0 else "search",
                        "baseline": number == 0, "status": "complete", "params": {}, "overrides": overrides,
                        "metrics": {"f1span": final, "exact": 50.0}})
    (folder / "curves.jsonl").write_text("".join(json.dumps(row) + "\n" for row in curves))
    (folder / "trials.jsonl").write_text("".join(json.dumps(row) + "\n" for row in records))
    return folder


@pytest.fixture
def surrogate(tmp_path) -> Surrogate:
    return fit_surrogate([recorded_sweep(tmp_path / "a", 0.0), recorded_sweep(tmp_path / "b", 5.0)])


def test_the_surrogate_learns_the_recorded_trend_and_keeps_the_curves_it_borrows(surrogate):
    assert surrogate.metrics == ("exact", "f1span")
    assert len(surrogate.shapes) == 16 and len(surrogate.low) == len(FEATURES)
    assert surrogate.fit_quality["f1span"]["r_squared"] > 0.9  # the recorded finals follow the settings
    fast, slow = list(surrogate.shapes[7]["features"]), list(surrogate.shapes[1]["features"])
    high = surrogate.evaluations(fast, [1.0], seed=0)[0]["f1span"]
    low = surrogate.evaluations(slow, [1.0], seed=0)[0]["f1span"]
    assert high > low + 20
    early, late = surrogate.evaluations(fast, [1 / 3, 1.0], seed=0)
    assert late["f1span"] - early["f1span"] == pytest.approx(8.0)  # the donor's rise over the last 20 of 30 steps
    assert early["f1span_se"] == pytest.approx(1.1) and late["exact_se"] == 0.5  # the measured errors, reported


def test_evaluations_depend_only_on_the_seed_and_the_share_of_the_run(surrogate):
    settings = list(surrogate.shapes[3]["features"])
    whole = surrogate.evaluations(settings, [0.25, 0.5, 1.0], seed=7)
    assert surrogate.evaluations(settings, [0.5, 1.0], seed=7) == whole[1:]  # a resumed trial reports the same
    assert surrogate.evaluations(settings, [1.0], seed=8) != whole[2:]  # another seed, another trial
    noisy = surrogate.evaluations(settings, [1.0], seed=7, noise=1.0)[0]
    assert noisy["f1span"] != whole[2]["f1span"] and noisy["f1span_se"] == whole[2]["f1span_se"]


def test_settings_outside_the_recorded_range_are_read_at_its_edge(surrogate):
    edge = list(surrogate.high)
    beyond = [value * 10 + 100 for value in edge]
    assert surrogate.evaluations(beyond, [1.0], seed=1) == surrogate.evaluations(edge, [1.0], seed=1)


def test_a_fitted_surrogate_is_data_that_reads_back_the_same(surrogate, tmp_path):
    path = tmp_path / "surrogate.json"
    path.write_text(surrogate.to_json(command="made here"))
    again = Surrogate.from_json(path)
    settings = list(surrogate.shapes[2]["features"])
    assert again.evaluations(settings, [0.5, 1.0], seed=3) == surrogate.evaluations(settings, [0.5, 1.0], seed=3)
    path.write_text(json.dumps({"format": 1, "surrogate": {"metrics": []}}))
    with pytest.raises(ValueError, match=r"surrogate\.json: surrogate fields"):
        Surrogate.from_json(path)
    path.write_text("[]")
    with pytest.raises(ValueError, match="surrogate.json"):
        Surrogate.from_json(path)


def test_fitting_needs_curves_with_errors_and_enough_trials(tmp_path):
    with pytest.raises(ValueError, match="no recorded trial has standard errors"):
        fit_surrogate([recorded_sweep(tmp_path / "bare", 0.0, with_errors=False)])
    with pytest.raises(ValueError, match="asked for"):
        fit_surrogate([recorded_sweep(tmp_path / "a", 0.0)], metrics=["latency_ms_b1"])


def test_features_read_the_shape_as_shares_of_the_teacher():
    teacher = teacher_namespace(TEACHER)
    run = apply_overrides(RunConfig(), {"student.num_hidden_layers": 2, "student.init": "teacher",
                                        "distill.warmup_steps": 10, "distill.learning_rate": 1e-4})
    values = dict(zip(FEATURES, features(run, teacher, total_steps=100)))
    assert values["depth_share"] == 0.5 and values["size_share"] == pytest.approx(0.5, rel=0.01)
    assert values["warmup_share"] == 0.1 and values["log_learning_rate"] == pytest.approx(-4)


def test_step_times_grow_with_depth_and_batch_and_only_measured_devices_exist():
    assert step_seconds("h200", 6, 10_000_000, 32, 384) > step_seconds("h200", 3, 5_000_000, 32, 384)
    assert step_seconds("cpu", 3, 5_000_000, 32, 192) == pytest.approx(2 * step_seconds("cpu", 3, 5_000_000, 16, 192))
    # the measured H200 student (3 layers, batch 32): 1,841 windows per second
    assert 32 / step_seconds("h200", 3, 5_324_162, 32, 384) == pytest.approx(1841.3, rel=1e-3)
    assert evaluation_seconds("cpu", 3, 5_324_162, 2391, 64, 192) == pytest.approx(2391 / 16, rel=1e-3)
    with pytest.raises(ValueError, match="measured profiles"):
        step_seconds("tpu", 1, 1, 1, 1)
    assert set(DEVICES) == {"h200", "cpu"}


def _settings(path: Path) -> dict:
    return {"enabled": True, "surrogate": str(path), "device": "cpu", "time_scale": 1e6, "train_windows": 40,
            "val_windows": 10, "noise": 0.0, "gpus": 0}


def test_a_simulated_run_reports_at_its_evaluations_and_resumes_where_it_stopped(surrogate, tmp_path,
                                                                               tiny_qa_model_dir):
    path = tmp_path / "surrogate.json"
    path.write_text(surrogate.to_json())
    run = apply_overrides(RunConfig(), {"teacher.path": str(tiny_qa_model_dir), "student.num_hidden_layers": 2,
                                        "student.init": "teacher", "distill.train_batch_size": 4,
                                        "distill.num_train_epochs": 2, "distill.eval_every_steps": 8,
                                        "distill.seed": 5})
    reported = []
    final = run_simulated(run, tmp_path / "run", _settings(path), callback=reported.append)
    assert [m["step"] for m in reported] == [8, 16, 20]  # every 8 steps, then the last of 2 x 10
    assert final == reported[-1] and final["epoch"] == 2.0
    assert final["non_embedding_parameters"] > 0 and final["parameters"] > final["non_embedding_parameters"]
    plan = json.loads((tmp_path / "run" / SIMULATION_FILE).read_text())
    assert plan["total_steps"] == 20 and plan["evaluations"] == [8, 16, 20]
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "step.json").write_text(json.dumps({"step": 8}))
    resumed = []
    run_simulated(run, tmp_path / "again", _settings(path), resume_from=str(checkpoint), callback=resumed.append)
    assert resumed == reported[1:]


def test_simulated_cost_counts_gpu_hours_wall_clock_and_saved_steps():
    records = [{"status": "complete", "metrics": {"simulated_seconds": 3600.0, "step": 100}, "steps_saved": 0},
               {"status": "stopped", "metrics": {"simulated_seconds": 1800.0, "step": 50}, "steps_saved": 50}]
    cost = simulated_cost(records, {"time_scale": 60.0, "device": "h200"}, gpus_per_trial=1.0, wall_seconds=90.0)
    assert cost["gpu_hours"] == 1.5 and cost["wall_hours"] == 1.5
    assert cost["steps_saved_by_early_stopping"] == 50 and cost["steps_saved_pct"] == 25.0
    assert cost["status_counts"] == {"complete": 1, "stopped": 1}


@pytest.mark.parametrize("change, message", [
    ({"device": "tpu"}, "simulate.device"), ({"time_scale": 0}, "simulate.time_scale"),
    ({"train_windows": -1}, "simulate.train_windows"), ({"noise": -1}, "simulate.noise"),
    ({"speed": 2}, "speed"),
])
def test_bad_simulation_settings_name_the_setting(change, message):
    with pytest.raises(SweepConfigError, match=message):
        sweep_config_from_dict({"space": "s.yaml", "simulate": {"enabled": True, **change}}, "test sweep")


def _trial_with_checkpoints(root: Path, count: int):
    import pyarrow.fs

    folder = root / "trial_0001"
    for index in range(count):
        (folder / f"checkpoint_{index:06d}").mkdir(parents=True)
    (folder / "result.json").write_text("{}")
    latest = SimpleNamespace(filesystem=pyarrow.fs.LocalFileSystem(), path=str(folder / f"checkpoint_{count - 1:06d}"))
    return SimpleNamespace(checkpoint=latest), folder


def test_an_ended_trial_keeps_only_its_last_checkpoint(tmp_path):
    trial, folder = _trial_with_checkpoints(tmp_path, 3)
    assert prune_trial(trial) == 2
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint_000002", "result.json"]
    assert prune_trial(SimpleNamespace(checkpoint=None)) == 0


def test_checkpoints_go_two_snapshots_after_the_trial_ended(tmp_path):
    """The snapshot after a trial ends names it ended; only once that snapshot is written do its older checkpoints
    go, so a driver killed in between resumes from a snapshot whose checkpoints all exist."""
    trial, folder = _trial_with_checkpoints(tmp_path, 2)
    pruner = CheckpointPruner()
    pruner.on_trial_complete(1, [trial], trial)
    pruner.get_state()
    assert len(list(folder.glob("checkpoint_*"))) == 2
    pruner.get_state()
    assert [p.name for p in folder.glob("checkpoint_*")] == ["checkpoint_000001"] and pruner.removed == 1


def test_a_simulated_sweep_runs_the_real_driver_without_training(tmp_path, surrogate, world, ray_cluster):
    """The driver, searcher, records and study as in a real sweep; the trials report the surrogate's curves and the
    sweep says what it would cost."""
    from tune_distill.records import read_trials
    from tune_distill.sweep.driver import run_sweep

    path = tmp_path / "surrogate.json"
    path.write_text(surrogate.to_json())
    config = tiny_sweep(world, num_samples=4, simulate={**_settings(path), "train_windows": 12, "device": "h200"})
    records = run_sweep(config, tmp_path / "sweep")
    assert sorted(r["number"] for r in records) == [0, 1, 2, 3]
    assert all(r["status"] == "complete" and r["metrics"]["simulated_seconds"] > 0 for r in records)
    assert read_trials(tmp_path / "sweep")[0]["metrics"]["exact"] == records[0]["metrics"]["exact"]
    run_dir = Path(records[1]["run_dir"])
    assert (run_dir / SIMULATION_FILE).is_file() and not list(run_dir.rglob("*.safetensors"))  # nothing trained
    summary = json.loads((tmp_path / "sweep" / "sweep.json").read_text())["summary"]
    simulated = summary["simulated"]
    assert simulated["trials"] == 4 and simulated["steps_trained"] > 0 and simulated["gpu_hours"] == 0  # CPU trials
    suggestions = (tmp_path / "sweep" / "suggestions.jsonl").read_text().splitlines()
    assert [json.loads(line)["number"] for line in suggestions] == [1, 2, 3]  # the baseline is not the searcher's
