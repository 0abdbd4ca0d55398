"""sweep/config.py: presets load, every bad setting is an error naming its key, settings read by config.coerce_value.

No Ray: the config layer imports without it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sweep_world import tiny_sweep, world_fixture  # noqa: F401  (fixture `world`)

from tune_distill.search import EXAMPLE_TEACHER_CONTEXT
from tune_distill.sweep.config import (
    SweepConfigError,
    load_sweep_config,
    preset_path,
    sweep_config_from_dict,
    sweep_config_to_dict,
    with_overrides,
)
from tune_distill.sweep.plan import load_sweep_space, trial_run_config


def test_presets_load_and_their_spaces_resolve():
    # users' presets in configs/; the benchmarks' and the cpu preset's earlier versions in bench/configs/
    for name in ("smoke", "cpu", "paper", "cpu_v4", "cpu_v3", "es", "es_teacher", "es_learners"):
        config = load_sweep_config(preset_path(name))
        assert Path(config.space).is_file(), name
        space = load_sweep_space(config, EXAMPLE_TEACHER_CONTEXT)
        for u in (0.0, 0.5, 1.0):
            trial_run_config(config.base, space.resolve({p.name: p.from_unit(u) for p in space.params}), 1)
    cpu = load_sweep_config(preset_path("cpu"))
    space = load_sweep_space(cpu, EXAMPLE_TEACHER_CONTEXT)
    assert space.fixed["student.num_hidden_layers"] == 3  # small students only: pruned copies of 3 layers
    assert [o.name for o in cpu.objectives] == ["HasAns_f1_always_answer", "non_embedding_parameters"]
    paper = load_sweep_config(preset_path("paper"))
    assert paper.scheduler.name == "pareto_sh" and paper.resources_per_trial.gpu == 1 and paper.num_samples >= 400
    assert preset_path("cpu").parent.name == "configs" and preset_path("cpu_v4").parent.parent.name == "bench"
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
        ({"scheduler": {"name": "pareto_sh", "rungs": [1], "rung_fill": -1}},
         r"scheduler.rung_fill: must be an integer >= 0 \(0 = decide on arrival\), got -1"),
        ({"scheduler": {"name": "pareto_sh", "rungs": [1], "rung_fill": True}},
         r"scheduler.rung_fill: expected an integer"),
        ({"scheduler": {"name": "asha", "rung_fill": 3}}, r"scheduler.rung_fill: a pareto_sh setting.*scheduler asha"),
        ({"scheduler": {"name": "fifo", "rung_fill": 3}}, r"scheduler.rung_fill: a pareto_sh setting.*scheduler fifo"),
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


def test_settings_follow_the_one_coercion_and_null_empties_a_setting(world):
    # config.coerce_value reads YAML strings as the run config does (true/false/yes/no, numbers)
    config = tiny_sweep(world, measure_latency="false", num_samples="4", resources_per_trial={"cpu": "2"})
    assert config.measure_latency is False and config.num_samples == 4 and config.resources_per_trial.cpu == 2.0
    assert tiny_sweep(world, scheduler={"name": "pareto_sh", "rungs": "2,6"}).scheduler.rungs == (2, 6)
    # a key written without a value: an empty text, list or mapping
    empty = tiny_sweep(world, storage_path=None, description=None, space_overrides=None,
                       searcher={"name": "random", "options": None})
    assert (empty.storage_path, empty.description, empty.space_overrides, empty.searcher.options) == ("", "", {}, {})
    for changes, message in [({"searcher": {"name": "random", "options": [1]}}, "searcher.options: expected a mapping"),
                             ({"scheduler": {"name": "pareto_sh", "rungs": [1.5]}}, "rungs: expected an integer"),
                             ({"baseline": 1}, "baseline: expected true/false")]:
        with pytest.raises(SweepConfigError, match=message):
            tiny_sweep(world, **changes)
    # what sweep.json keeps reads back as the same config
    config = tiny_sweep(world, scheduler={"name": "pareto_sh", "rungs": [1], "within_front": "crowding"})
    assert sweep_config_from_dict(sweep_config_to_dict(config), "sweep.json") == config


def test_config_and_plan_import_without_ray():
    code = ("import sys, tune_distill.sweep.config, tune_distill.sweep.plan, tune_distill.sweep.ranking; "
            "from tune_distill.sweep import SweepConfigError, load_sweep_config; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout
