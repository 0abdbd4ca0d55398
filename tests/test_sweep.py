"""The Ray sweep layer: config checks, Pareto successive halving, the searcher adapter, and tiny real sweeps.

Tiny everything: a 2-layer 32-wide teacher, the 7-question SQuAD file of conftest, 2-6 optimiser steps
per trial. One Ray instance (2 CPUs, no dashboard) serves every sweep of this module.
"""

from __future__ import annotations

import dataclasses
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

from conftest import write_sweep_inputs  # noqa: E402

from tune_distill.search import (  # noqa: E402
    EXAMPLE_TEACHER_CONTEXT,
    Constraint,
    Objective,
    make_searcher,
    parse_space,
)
from tune_distill.report import read_trials  # noqa: E402
from tune_distill.sweep import (  # noqa: E402
    CONTINUE,
    STOP,
    ParetoSuccessiveHalving,
    SweepConfigError,
    SweepSearcher,
    baseline_overrides,
    load_sweep_config,
    load_sweep_space,
    no_answer_score,
    pareto_rungs,
    preset_path,
    resolve_constraints,
    run_sweep,
    sweep_config_from_dict,
    sweep_config_to_dict,
    trial_run_config,
    with_overrides,
)

TINY_SPACE = {
    "description": "tiny test space",
    "parameters": {
        "student.num_hidden_layers": {"type": "int", "low": 1, "high": "{teacher.num_hidden_layers}"},
        "distill.learning_rate": {"type": "float", "low": 1.0e-5, "high": 1.0e-3, "log": True},
    },
    "fixed": {
        "student.init": "teacher",
        "distill.max_steps": 2,
        "distill.train_batch_size": 4,
        "data.max_seq_length": 64,
        "data.doc_stride": 24,
        "data.max_query_length": 16,
    },
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Teacher, data and a space on disk, shared by the module."""
    root = tmp_path_factory.mktemp("sweep_world")
    teacher, data = write_sweep_inputs(root)
    space = root / "space.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    return {"root": root, "teacher": teacher, "data": data, "space": space}


def tiny_sweep(world, **changes):
    raw = {
        "space": str(world["space"]),
        "base": {
            "data.train_files": [str(world["data"] / "train.json")],
            "data.val_file": str(world["data"] / "val.json"),
            "teacher.path": str(world["teacher"]),
            "distill.device": "cpu",
            "distill.seed": 100,
            "distill.eval_every_steps": 1,
            "evaluate.latency_seq_length": 32,
            "evaluate.latency_batch_sizes": [1],
            "evaluate.latency_repeats": 1,
            "evaluate.latency_warmup": 0,
        },
        "searcher": {"name": "random", "seed": 0},
        "num_samples": 3,
        "max_concurrent": 2,
        "max_failures": 0,
        "scheduler": {"name": "fifo"},
    }
    space_overrides = changes.pop("space_overrides", None)
    if space_overrides:
        raw["space_overrides"] = space_overrides
    raw.update(changes)
    return sweep_config_from_dict(raw, "test sweep")


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for the module (2 CPUs, no dashboard); yields its address for subprocess drivers."""
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield context.address_info["address"]
    ray.shutdown()


# --------------------------------------------------------------------------------------------------
# Sweep configuration
# --------------------------------------------------------------------------------------------------


def test_presets_load_and_their_spaces_resolve():
    for name in ("smoke", "cpu", "paper"):
        config = load_sweep_config(preset_path(name))
        assert Path(config.space).is_file(), name
        space = load_sweep_space(config, EXAMPLE_TEACHER_CONTEXT)
        for u in (0.0, 0.5, 1.0):
            trial_run_config(config.base, space.resolve({p.name: p.from_unit(u) for p in space.params}), 1)
    cpu = load_sweep_config(preset_path("cpu"))
    space = load_sweep_space(cpu, EXAMPLE_TEACHER_CONTEXT)
    assert space.param("student.num_hidden_layers").high <= 3  # small students only
    paper = load_sweep_config(preset_path("paper"))
    assert paper.scheduler.name == "fifo" and paper.resources_per_trial.gpu == 1 and paper.num_samples >= 400
    with pytest.raises(SweepConfigError, match="no configs/sweep_nope.yaml"):
        preset_path("nope")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_sample": 3}, r"test sweep: num_sample: unknown key"),
        ({"scheduler": {"name": "pareto_sh", "rung": [1]}}, r"scheduler.rung: unknown key"),
        ({"scheduler": {"name": "pareto_sh"}}, r"pareto_sh needs rungs"),
        ({"scheduler": {"name": "hyperband"}}, r"scheduler.name: expected one of"),
        ({"scheduler": {"name": "asha", "reduction_factor": 1}}, r"reduction_factor: must be > 1"),
        ({"scheduler": {"name": "pareto_sh", "rungs": [1], "within_front": "area"}},
         r"scheduler.within_front: expected one of hypervolume, crowding"),
        ({"constraints": ["exact > 3"]}, r"expected 'metric >= bound'"),
        ({"constraints": ["exact >= lots"]}, r"a number or no_answer"),
        ({"constraints": ["accuracy >= 3"]}, r"unknown metric 'accuracy'"),
        ({"objectives": {"exact": "maximum"}}, r"objectives.exact: direction must be max or min"),
        ({"objectives": {"speed": "max"}}, r"objectives.speed: unknown metric"),
        ({"objectives": {"latency_ms_b8": "min"}}, r"batch size 8 is not in evaluate.latency_batch_sizes"),
        ({"base": {"distill.learning_rat": 1e-4}}, r"base: distill.learning_rat: unknown field"),
        ({"base": {"distill.learning_rate": "fast"}}, r"base: distill.learning_rate: expected a number"),
        ({"searcher": {"name": "grid"}}, r"searcher.name: unknown searcher 'grid'"),
        ({"resources_per_trial": {"cpu": 1, "gpu": 1.5}}, r"fractions are for sharing one GPU"),
        ({"num_samples": 0}, r"num_samples: must be >= 1"),
        ({"max_concurrent": "two"}, r"max_concurrent: expected an integer"),
    ],
)
def test_sweep_config_errors_name_the_key(world, changes, message):
    with pytest.raises(SweepConfigError, match=message):
        tiny_sweep(world, **changes)


def test_sweep_config_files_and_space_checks(world, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("space: x.yaml\nbasee: {}\n")
    with pytest.raises(SweepConfigError, match=r"bad.yaml: basee: unknown key"):
        load_sweep_config(path)
    with pytest.raises(SweepConfigError, match="not found"):
        load_sweep_config(tmp_path / "missing.yaml")
    context = {f"teacher.{k}": v for k, v in (("num_hidden_layers", 2), ("hidden_size", 32),
                                              ("num_attention_heads", 4), ("intermediate_size", 64))}
    clash = tiny_sweep(world, base={"data.max_seq_length": 128})
    with pytest.raises(SweepConfigError, match=r"base.data.max_seq_length: the space .* sets this key"):
        load_sweep_space(clash, context)
    # space_overrides change bounds and fixed keys, and remove parameters
    changed = tiny_sweep(world, space_overrides={"parameters": {"student.num_hidden_layers": {"high": 1},
                                                                "distill.learning_rate": None},
                                                 "fixed": {"distill.learning_rate": 3e-4, "data.max_seq_length": 48}})
    space = load_sweep_space(changed, context)
    assert space.names == ("student.num_hidden_layers",)
    assert space.param("student.num_hidden_layers").high == 1
    assert space.resolve({"student.num_hidden_layers": 1})["data.max_seq_length"] == 48
    with pytest.raises(SweepConfigError, match="space_overrides.params: unknown section"):
        load_sweep_space(tiny_sweep(world, space_overrides={"params": {}}), context)
    # CLI-style changes
    cli = with_overrides(tiny_sweep(world), base={"distill.learning_rate": 1e-4}, data_dir=str(world["data"]),
                         teacher=str(world["teacher"]), num_samples=5)
    assert cli.num_samples == 5 and cli.base["distill.learning_rate"] == 1e-4
    with pytest.raises(SweepConfigError, match="expected train.json and val.json"):
        with_overrides(tiny_sweep(world), data_dir=str(tmp_path))


def test_constraints_baseline_and_seed(world):
    assert resolve_constraints(["exact >= no_answer", "latency_ms_b1 <= 20"], 55.4) == (
        Constraint("exact", ">=", 55.4), Constraint("latency_ms_b1", "<=", 20.0))

    class Question:
        def __init__(self, impossible):
            self.is_impossible = impossible

    assert no_answer_score([Question(True), Question(False), Question(True), Question(False)]) == 50.0
    space = parse_space(TINY_SPACE, {"teacher.num_hidden_layers": 6})
    baseline = baseline_overrides(space, {"teacher.num_hidden_layers": 6})
    assert baseline["student.num_hidden_layers"] == 3 and baseline["student.init"] == "teacher"
    assert baseline["distill.max_steps"] == 2  # trains like every other trial
    assert "distill.learning_rate" not in baseline  # the default recipe unless baseline_settings say otherwise
    tuned = baseline_overrides(space, {"teacher.num_hidden_layers": 6}, {"distill.learning_rate": 2e-4})
    assert tuned["distill.learning_rate"] == 2e-4 and tuned["student.num_hidden_layers"] == 3
    for settings, message in [({"student.num_hidden_layers": 2}, "the baseline's shape is fixed"),
                              ({"distill.max_steps": 5}, "fixed by the space"),
                              ({"distill.learning_rat": 1e-4}, "distill.learning_rat: unknown field")]:
        with pytest.raises(SweepConfigError, match=message):
            baseline_overrides(space, {"teacher.num_hidden_layers": 6}, settings)
    config = trial_run_config({"distill.seed": 7}, {"student.num_hidden_layers": 1}, number=5, cpus=2)
    assert config.distill.seed == 12 and config.distill.num_threads == 2 and config.student.num_hidden_layers == 1


def test_command_line_errors_exit_with_2(tmp_path, capsys):
    from tune_distill.sweep import main

    assert main(["--preset", "nope", "--out", str(tmp_path / "a")]) == 2
    assert "no configs/sweep_nope.yaml" in capsys.readouterr().err
    assert main(["--resume", "--out", str(tmp_path / "b")]) == 2
    assert "holds no sweep" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "c")]) == 2
    assert "give --preset NAME or --config FILE" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# Pareto successive halving (no Ray trials: results are fed in by hand)
# --------------------------------------------------------------------------------------------------

OBJECTIVES = (Objective("exact", "max"), Objective("parameters", "min"))


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
    from tune_distill.sweep import BaselineKeepingASHA

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


def test_progress_line_shows_the_objectives_exact_and_size(caplog):
    from types import SimpleNamespace

    from tune_distill.sweep import ProgressLines

    objectives = (Objective("HasAns_f1_always_answer", "max"), Objective("parameters", "min"))
    lines = ProgressLines(objectives, (Constraint("exact", ">=", 50.0),), num_samples=4)
    done = SimpleNamespace(trial_id="aa", status="TERMINATED", config={"number": 1, "params": {"lr": 0.1}},
                           last_result={"final": True, "HasAns_f1_always_answer": 31.25, "exact": 52.0,
                                        "parameters": 2_500_000})
    running = SimpleNamespace(trial_id="bb", status="RUNNING", config={"number": 2}, last_result={})
    with caplog.at_level("INFO", logger="tune_distill.sweep"):
        lines.on_trial_complete(0, [done, running], done)
    message = caplog.records[-1].getMessage()
    assert "trial 0001 aa complete HasAns_f1_always_answer 31.25 parameters 2.50M exact 52.00 feasible" in message
    assert "best HasAns_f1_always_answer 31.25 (trial 0001) [1/4 finished]" in message


def _settings():
    from tune_distill.sweep import SchedulerSettings

    return SchedulerSettings(name="pareto_sh", rungs=(9, 3), reduction_factor=3, grace_period=2, max_t=20)


# --------------------------------------------------------------------------------------------------
# Searcher adapter (no Ray trials)
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Real (tiny) sweeps on Ray
# --------------------------------------------------------------------------------------------------


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
    # distill.temperature -1 makes run_distillation raise (ValueError) in the trials that draw it
    config = tiny_sweep(world, num_samples=4, max_failures=1, searcher={"name": "random", "seed": 0},
                        space_overrides={"parameters": {"distill.temperature": {"type": "categorical",
                                                                                "choices": [2.0, -1.0]}}})
    records = run_sweep(config, tmp_path / "sweep")
    assert [r["number"] for r in records] == [0, 1, 2, 3]
    failed = [r for r in records if r["status"] == "failed"]
    complete = [r for r in records if r["status"] == "complete"]
    assert failed and len(failed) + len(complete) == 4
    for record in failed:
        assert record["params"]["distill.temperature"] == -1.0
        assert "temperature" in record["error"] and record["attempts"] == 2
        assert record["node_id"] and record["device"] == "cpu"
    for record in complete:
        assert record["params"].get("distill.temperature", 2.0) == 2.0 and record["error"] is None


def test_a_killed_driver_resumes_and_counts_every_trial_once(world, ray_cluster, tmp_path, caplog):
    # one trial at a time, 30 steps each with a checkpoint at each of 3 evaluations; the driver (a
    # subprocess on the module's Ray) is killed as soon as trial 0001 has written a checkpoint
    config = tiny_sweep(world, num_samples=5, max_concurrent=1, base={**tiny_sweep(world).base,
                                                                      "distill.eval_every_steps": 10},
                        space_overrides={"fixed": {"distill.max_steps": 30}})
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
                if list(out.glob("tune/trial_0001_*/checkpoint_*")):
                    time.sleep(0.2)
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
