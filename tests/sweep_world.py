"""Shared by the sweep tests: a tiny world on disk (teacher, data, space), a tiny sweep config, one local Ray.

Tiny everything: a 2-layer 32-wide teacher, the 7-question SQuAD file of conftest, 2-6 optimiser steps
per trial. A test module imports the fixtures it uses by their function names (`world_fixture` gives
`world`; `ray_cluster_fixture` gives `ray_cluster`: one local Ray with 2 CPUs and no dashboard per module).
"""

from __future__ import annotations

import os

import pytest
import yaml
from conftest import write_sweep_inputs

from tune_distill.search import Objective
from tune_distill.sweep.config import sweep_config_from_dict

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

OBJECTIVES = (Objective("exact", "max"), Objective("parameters", "min"))


@pytest.fixture(scope="module", name="world")
def world_fixture(tmp_path_factory):
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


@pytest.fixture(scope="module", name="ray_cluster")
def ray_cluster_fixture():
    """One local Ray for the module (2 CPUs, no dashboard); yields its address for subprocess drivers."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False,
                       log_to_driver=False)
    yield context.address_info["address"]
    ray.shutdown()
