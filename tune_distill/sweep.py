"""Ray Tune sweeps: many distillation runs, chosen by a multi-objective searcher, run in parallel.

What it does:
  * `SweepConfig` (frozen dataclasses, loaded from `configs/sweep_*.yaml` presets or any YAML file):
    the search space, the base overrides every trial shares, objectives (default: exact max,
    parameters min), constraints (default `exact >= no_answer`, where `no_answer` is the validation
    split's score for answering "no answer" everywhere), the searcher, trial count and concurrency,
    resources per trial (fractional GPUs allowed), the early-stopping scheduler, retries and storage.
  * `make_trainable`: the function each Ray trial runs. It rebuilds the trial's `RunConfig` from the
    base overrides plus the searcher's resolved parameters (the `--set` syntax of config.py), derives
    its seed (base seed + trial number), calls `run.run_distillation` with the run folder inside the
    trial folder, reports every evaluation to Tune with the checkpoint, resumes from
    `tune.get_checkpoint()`, and reports the final metrics (`final: True`) with node id and device.
  * `SweepSearcher`: a `ray.tune.search.Searcher` around a `search.Searcher` (multi-objective with
    constraints, which Ray's own OptunaSearch cannot do); the baseline is its first suggestion; it
    saves and restores the wrapped searcher's state so a resumed sweep continues from what it saw.
  * `ParetoSuccessiveHalving` (`pareto_sh`): asynchronous successive halving whose rung ranking is
    non-dominated sorting on (intermediate exact, parameters), hypervolume contribution breaking ties,
    so small students are not all stopped for a lower exact. `asha` (Ray's ASHAScheduler on exact)
    and `fifo` (no early stopping) remain available.
  * `run_sweep` / `main`: prepare features and teacher logits once on the driver, start or join Ray,
    run (or resume) the Tuner, log one progress line per finished trial, and write `trials.jsonl`
    (one line per trial) and `sweep.json` (the resolved sweep and a summary) in the output folder.

Output folder: `sweep.json`, `trials.jsonl`, `cache/` (features, teacher logits), `scheduler_state.json`
(pareto_sh) and, unless `storage_path` points elsewhere, the Tune experiment `tune/` whose trial
folders `trial_NNNN_<id>/` hold Tune's checkpoints and the trial's run folder `run/`. A remote
`storage_path` (s3://bucket/prefix, endpoint from `storage_endpoint` or AWS_ENDPOINT_URL, see
storage.py) is probed before anything is computed and then holds what the output folder would: the
experiment `<name>/` and copies of sweep.json (at the start), trials.jsonl and the scheduler's state (at
the end), and the report's files; `--resume` restores the experiment from there, also into an empty
`--out` (give `--storage-path URI`, or the config that names it).

Must not know: how a run trains or evaluates (run.py does), how searchers model anything (search.py
does), how results are reported or plotted (report.py reads `trials.jsonl`).

Example (CPU, a few minutes, from the repository root; the smoke preset reads data/squad2-sample and
.cache/smoke-teacher, or give --data DIR --teacher DIR):
    python -m tune_distill.sweep --preset smoke --out sweeps/smoke --num-samples 4
    python -m tune_distill.sweep --out sweeps/smoke --resume      # continue it after an interruption
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import re
import shlex
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml
from ray.tune import Callback as RayCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import Searcher as RaySearcher

from tune_distill import storage as storage_io
from tune_distill.config import ConfigError, RunConfig, apply_overrides, flatten, parse_override, read_yaml
from tune_distill.search import (
    DEFAULT_SEARCHER,
    SEARCHER_NAMES,
    Constraint,
    Objective,
    SearchSpace,
    SearchSpaceError,
    SearcherError,
    crowding_distance,
    hypervolume_contributions,
    is_feasible,
    make_searcher,
    nadir_reference,
    non_dominated_sort,
    parse_space,
    restore_searcher,
)

log = logging.getLogger(__name__)

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
SWEEP_FILE = "sweep.json"
TRIALS_FILE = "trials.jsonl"
SCHEDULER_STATE_FILE = "scheduler_state.json"
TRIAL_LOG = "trial.log"
TRIAL_ERROR_FILE = "trial_error.json"
SCHEDULERS = ("pareto_sh", "asha", "fifo")
WITHIN_FRONT = ("hypervolume", "crowding")  # pareto_sh's order within a front
# pareto_sh ranks a front by hypervolume contribution against the rung's nadir pushed out by this
# share of each objective's spread (search.nadir_reference): an extreme point owns a box too.
RUNG_REFERENCE_MARGIN = 0.1
NO_ANSWER = "no_answer"
# Environment variables a joined cluster's workers need to behave like the driver (offline hub, quiet tokenizers).
PROPAGATED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "TOKENIZERS_PARALLELISM")
# Metrics present in every evaluation report (the rest, e.g. latency, only in the final one).
INTERMEDIATE_METRICS = ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1", "parameters",
                        "non_embedding_parameters", "HasAns_exact_always_answer", "HasAns_f1_always_answer")
FINAL_METRICS = INTERMEDIATE_METRICS + ("bytes_on_disk", "train_seconds", "wall_seconds")
# Bookkeeping Tune adds to every result, and identity fields of our reports: not metrics of the run.
_NOT_METRICS = frozenset({
    "timestamp", "training_iteration", "time_this_iter_s", "time_total_s", "time_since_restore",
    "iterations_since_restore", "checkpoint_dir_name", "date", "hostname", "node_ip", "pid", "done", "trial_id",
    "experiment_tag", "should_checkpoint", "config", "number", "kind", "node_id", "device", "seed", "run_dir",
    "final", "status", "started_at", "finished_at",
})
_LATENCY_METRIC = re.compile(r"^latency_ms_b(\d+)$")
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=)\s*(\S+)\s*$")


class SweepConfigError(ConfigError):
    """A sweep configuration that cannot be used; the message names the file and the key."""


# --------------------------------------------------------------------------------------------------
# Sweep configuration
# --------------------------------------------------------------------------------------------------


def _f(default: Any, help: str) -> Any:
    if isinstance(default, (dict, list, tuple)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class SearcherSettings:
    name: str = _f(DEFAULT_SEARCHER, f"Searcher of tune_distill.search: one of {', '.join(SEARCHER_NAMES)}.")
    seed: int = _f(0, "Seed of the searcher (trial seeds are distill.seed + trial number).")
    options: dict = _f({}, "Keyword options of the searcher (e.g. n_startup_trials).")


@dataclass(frozen=True)
class SchedulerSettings:
    name: str = _f("fifo", "pareto_sh (Pareto successive halving), asha (Ray's ASHA on exact) or fifo (none).")
    rungs: tuple = _f((), "pareto_sh: optimiser steps at which trials are compared (evaluations must fall on them).")
    reduction_factor: float = _f(3.0, "Keep the best 1/reduction_factor of the trials seen at a rung.")
    grace_period: int = _f(0, "Steps before the first decision: asha's first rung; pareto_sh's first rung "
                              "when no rungs are given (then rungs grow by reduction_factor up to max_t).")
    max_t: int = _f(0, "Largest step considered by asha / generated pareto_sh rungs (0 = unbounded for asha).")
    within_front: str = _f("hypervolume", "pareto_sh: order within a front of the non-dominated sorting: "
                                          "'hypervolume' (exclusive hypervolume contribution, largest first) "
                                          "or 'crowding' (NSGA-II crowding distance).")


@dataclass(frozen=True)
class Resources:
    cpu: float = _f(1.0, "CPU cores per trial (torch threads follow it unless distill.num_threads is set).")
    gpu: float = _f(0.0, "GPUs per trial; fractions let small students share a GPU (e.g. 0.5).")


@dataclass(frozen=True)
class SweepConfig:
    space: str = _f("", "Search-space YAML (see search.load_space); relative to the current directory.")
    space_overrides: dict = _f({}, "Changes to the space: {parameters: {name: {field: value} | null}, "
                                   "derived: {key: expr | null}, fixed: {key: value | null}}.")
    base: dict = _f({}, "RunConfig overrides for every trial, 'section.field: value' (the --set syntax).")
    objectives: tuple = _f((Objective("exact", "max"), Objective("parameters", "min")),
                           "Metrics to optimise: {name: max|min} in order (exact, f1, parameters, latency_ms_b1...).")
    constraints: tuple = _f(("exact >= no_answer",), "Bounds 'metric >= x' or 'metric <= x'; x is a number or "
                                                     "no_answer (100 x share of unanswerable validation questions).")
    searcher: SearcherSettings = _f(SearcherSettings(), "The searcher.")
    num_samples: int = _f(24, "Trials in all (the baseline included).")
    max_concurrent: int = _f(2, "Trials running at once.")
    resources_per_trial: Resources = _f(Resources(), "Resources of one trial.")
    scheduler: SchedulerSettings = _f(SchedulerSettings(), "Early stopping.")
    max_failures: int = _f(1, "Retries of a trial that raised (then it is recorded as failed).")
    storage_path: str = _f("", "Where Tune keeps the experiment: a local folder or a pyarrow URI such as "
                               "s3://bucket/sweeps/cpu (empty = the sweep's output folder). A remote one also gets "
                               "a copy of the sweep's files (sweep.json, trials.jsonl, results.*), so it can be "
                               "resumed and read from there.")
    storage_endpoint: str = _f("", "S3-compatible endpoint for an s3:// storage_path, e.g. http://127.0.0.1:9000 "
                                   "(MinIO, moto); empty = AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, else AWS. "
                                   "Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or "
                                   "~/.aws, the region from AWS_REGION/AWS_DEFAULT_REGION.")
    name: str = _f("tune", "Name of the Tune experiment folder under storage_path.")
    baseline: bool = _f(True, "Trial 0 is the DistilBERT-like baseline: half the teacher's layers (every other), "
                              "teacher width, init=teacher, default distillation settings.")
    baseline_settings: dict = _f({}, "The baseline's own training knobs, 'section.field: value' (e.g. "
                                     "distill.learning_rate: 2.0e-4); its shape keys are not allowed here.")
    measure_latency: bool = _f(True, "Time each final student (needed for latency objectives).")
    description: str = _f("", "Free text.")


_SECTIONS: dict[str, type] = {"searcher": SearcherSettings, "scheduler": SchedulerSettings,
                              "resources_per_trial": Resources}


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def parse_objectives(raw: Any, where: str) -> tuple[Objective, ...]:
    """{exact: max, parameters: min}, [{exact: max}, ...] or ['exact max', ...] -> Objectives, in order."""
    items: list[tuple[Any, Any]] = []
    if isinstance(raw, Mapping):
        items = list(raw.items())
    elif isinstance(raw, (list, tuple)):
        for item in raw:
            if isinstance(item, Objective):
                items.append((item.name, item.direction))
            elif isinstance(item, Mapping) and set(item) == {"name", "direction"}:
                items.append((item["name"], item["direction"]))
            elif isinstance(item, Mapping) and len(item) == 1:
                items.extend(item.items())
            elif isinstance(item, str) and len(item.split()) == 2:
                items.append(tuple(item.split()))
            else:
                raise SweepConfigError(f"{where}: objectives: expected 'name: max|min' entries, got {item!r}")
    else:
        raise SweepConfigError(f"{where}: objectives: expected a mapping like {{exact: max, parameters: min}}")
    if not items:
        raise SweepConfigError(f"{where}: objectives: at least one objective is needed")
    objectives = []
    for name, direction in items:
        if direction not in ("max", "min"):
            raise SweepConfigError(f"{where}: objectives.{name}: direction must be max or min, got {direction!r}")
        if not _known_metric(str(name)):
            raise SweepConfigError(f"{where}: objectives.{name}: unknown metric; known: {', '.join(FINAL_METRICS)}, "
                                   "latency_ms_bN")
        objectives.append(Objective(str(name), direction))
    if len({o.name for o in objectives}) != len(objectives):
        raise SweepConfigError(f"{where}: objectives: names must be distinct, got {[o.name for o in objectives]}")
    return tuple(objectives)


def _known_metric(name: str) -> bool:
    return name in FINAL_METRICS or bool(_LATENCY_METRIC.match(name))


def parse_constraint(text: Any, where: str) -> tuple[str, str, float | str]:
    """'exact >= no_answer' -> ('exact', '>=', 'no_answer'); 'latency_ms_b1 <= 20' -> (..., 20.0)."""
    match = _CONSTRAINT.match(text) if isinstance(text, str) else None
    if not match:
        raise SweepConfigError(f"{where}: constraints: expected 'metric >= bound' or 'metric <= bound', got {text!r}")
    name, op, raw = match.groups()
    if not _known_metric(name):
        raise SweepConfigError(f"{where}: constraints: {text!r}: unknown metric {name!r}")
    if raw == NO_ANSWER:
        return name, op, NO_ANSWER
    try:
        bound = float(raw)
    except ValueError:
        raise SweepConfigError(f"{where}: constraints: {text!r}: the bound must be a number or {NO_ANSWER}") from None
    if not math.isfinite(bound):
        raise SweepConfigError(f"{where}: constraints: {text!r}: the bound must be finite")
    return name, op, bound


def resolve_constraints(texts: Sequence[str], no_answer: float | None) -> tuple[Constraint, ...]:
    """Constraint objects with `no_answer` replaced by its value."""
    constraints = []
    for text in texts:
        name, op, bound = parse_constraint(text, "constraints")
        if bound == NO_ANSWER:
            if no_answer is None:
                raise SweepConfigError(f"constraints: {text!r} needs the validation split's no-answer score")
            bound = no_answer
        constraints.append(Constraint(name, op, float(bound)))
    return tuple(constraints)


def _section(cls: type, raw: Any, where: str) -> Any:
    if isinstance(raw, cls):
        return raw
    if raw is None:
        return cls()
    if not isinstance(raw, Mapping):
        raise SweepConfigError(f"{where}: expected a mapping with keys {', '.join(_fields(cls))}")
    _reject_unknown(raw, cls, f"{where}.")
    values = {}
    for key, value in raw.items():
        values[key] = _coerce_setting(cls, key, value, f"{where}.{key}")
    return cls(**values)


def _reject_unknown(raw: Mapping[str, Any], cls: type, prefix: str) -> None:
    """A clear error for the first key of `raw` that `cls` has no field for (`prefix` + key names it)."""
    known = _fields(cls)
    unknown = [key for key in raw if key not in known]
    if unknown:
        raise SweepConfigError(f"{prefix}{unknown[0]}: unknown key; known: {', '.join(known)}")


def _coerce_setting(cls: type, key: str, value: Any, where: str) -> Any:
    default = _fields(cls)[key]
    default = default.default if default.default is not dataclasses.MISSING else default.default_factory()
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SweepConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise SweepConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SweepConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if value is None:
            return ""
        if isinstance(value, (dict, list)):
            raise SweepConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if isinstance(default, dict):
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise SweepConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if isinstance(default, tuple):
        if value is None:
            return ()
        return tuple(value) if isinstance(value, (list, tuple)) else (value,)
    return value


def sweep_config_from_dict(mapping: Mapping[str, Any], source: str = "sweep config") -> SweepConfig:
    """Build and check a SweepConfig; errors name `source` and the key."""
    if not isinstance(mapping, Mapping):
        raise SweepConfigError(f"{source}: expected a mapping of sweep settings")
    _reject_unknown(mapping, SweepConfig, f"{source}: ")
    values: dict[str, Any] = {}
    for key, raw in mapping.items():
        where = f"{source}: {key}"
        if key in _SECTIONS:
            values[key] = _section(_SECTIONS[key], raw, where)
        elif key == "objectives":
            values[key] = parse_objectives(raw, source)
        elif key == "constraints":
            raw = [] if raw is None else ([raw] if isinstance(raw, str) else list(raw))
            for text in raw:
                parse_constraint(text, source)
            values[key] = tuple(str(text) for text in raw)
        elif key in ("base", "baseline_settings"):
            values[key] = _flat_base(raw, where)
        else:
            values[key] = _coerce_setting(SweepConfig, key, raw, where)
    config = SweepConfig(**values)
    check_sweep_config(config, source)
    return config


def _flat_base(raw: Any, where: str) -> dict[str, Any]:
    """Base overrides as {'section.field': value}; nested {section: {field: value}} is accepted too."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SweepConfigError(f"{where}: expected a mapping of section.field: value")
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if "." not in str(key) and isinstance(value, Mapping):
            flat.update(flatten({key: value}, where))
        else:
            flat[str(key)] = list(value) if isinstance(value, tuple) else value
    try:
        apply_overrides(RunConfig(), flat)
    except ConfigError as error:
        raise SweepConfigError(f"{where}: {error}") from None
    return flat


def check_sweep_config(config: SweepConfig, source: str = "sweep config") -> None:
    """Checks that need no files: counts, resources, scheduler settings, objectives vs latency."""
    if not config.space:
        raise SweepConfigError(f"{source}: space: a search-space YAML file is required")
    if config.num_samples < 1:
        raise SweepConfigError(f"{source}: num_samples: must be >= 1, got {config.num_samples}")
    if config.max_concurrent < 1:
        raise SweepConfigError(f"{source}: max_concurrent: must be >= 1, got {config.max_concurrent}")
    if config.max_failures < 0:
        raise SweepConfigError(f"{source}: max_failures: must be >= 0, got {config.max_failures}")
    resources = config.resources_per_trial
    if resources.cpu < 0 or resources.gpu < 0 or resources.cpu + resources.gpu <= 0:
        raise SweepConfigError(f"{source}: resources_per_trial: cpu and gpu must be >= 0 and not both 0")
    if resources.gpu > 1 and resources.gpu != int(resources.gpu):
        raise SweepConfigError(f"{source}: resources_per_trial.gpu: fractions are for sharing one GPU (< 1), "
                               f"got {resources.gpu}")
    if config.searcher.name not in SEARCHER_NAMES:
        raise SweepConfigError(f"{source}: searcher.name: unknown searcher {config.searcher.name!r}; "
                               f"known: {', '.join(SEARCHER_NAMES)}")
    scheduler = config.scheduler
    if scheduler.name not in SCHEDULERS:
        raise SweepConfigError(f"{source}: scheduler.name: expected one of {', '.join(SCHEDULERS)}, "
                               f"got {scheduler.name!r}")
    if scheduler.reduction_factor <= 1:
        raise SweepConfigError(f"{source}: scheduler.reduction_factor: must be > 1, got {scheduler.reduction_factor}")
    for rung in scheduler.rungs:
        if isinstance(rung, bool) or not isinstance(rung, int) or rung < 1:
            raise SweepConfigError(f"{source}: scheduler.rungs: steps must be positive integers, got {rung!r}")
    if scheduler.within_front not in WITHIN_FRONT:
        raise SweepConfigError(f"{source}: scheduler.within_front: expected one of {', '.join(WITHIN_FRONT)}, "
                               f"got {scheduler.within_front!r}")
    if scheduler.grace_period < 0 or scheduler.max_t < 0:
        raise SweepConfigError(f"{source}: scheduler: grace_period and max_t must be >= 0")
    if scheduler.name == "pareto_sh" and not scheduler.rungs and not (scheduler.grace_period and scheduler.max_t):
        raise SweepConfigError(f"{source}: scheduler.rungs: pareto_sh needs rungs (steps), or grace_period and max_t")
    if scheduler.name == "asha" and scheduler.max_t and scheduler.max_t < max(1, scheduler.grace_period):
        raise SweepConfigError(f"{source}: scheduler.max_t: must be >= grace_period")
    base = apply_overrides(RunConfig(), config.base)
    for objective in config.objectives:
        latency = _LATENCY_METRIC.match(objective.name)
        if latency and not config.measure_latency:
            raise SweepConfigError(f"{source}: objectives.{objective.name}: needs measure_latency: true")
        if latency and int(latency.group(1)) not in base.evaluate.latency_batch_sizes:
            raise SweepConfigError(f"{source}: objectives.{objective.name}: batch size {latency.group(1)} is not in "
                                   f"evaluate.latency_batch_sizes {list(base.evaluate.latency_batch_sizes)}")
    if config.name in ("", ".", "..") or "/" in config.name:
        raise SweepConfigError(f"{source}: name: a plain folder name is needed, got {config.name!r}")
    storage_io.check_location(config.storage_path, config.storage_endpoint, SweepConfigError, source)


def load_sweep_config(path: str | Path) -> SweepConfig:
    """Read a sweep YAML file; unknown keys are errors naming the file and the key."""
    path = Path(path)
    mapping = read_yaml(path, "sweep config file", SweepConfigError)
    config = sweep_config_from_dict(mapping, str(path))
    space = Path(config.space)
    if not space.is_absolute() and not space.exists():
        # written relative to the sweep file, or to the repository root (configs/space_*.yaml)
        for folder in (path.resolve().parent, CONFIGS_DIR.parent):
            if (folder / space).is_file():
                return dataclasses.replace(config, space=str(folder / space))
    return config


def preset_path(name: str) -> Path:
    """configs/sweep_<name>.yaml of this checkout (or of the current directory)."""
    for folder in (Path("configs"), CONFIGS_DIR):
        candidate = folder / f"sweep_{name}.yaml"
        if candidate.is_file():
            return candidate
    available = sorted(p.stem[len("sweep_"):] for folder in {Path("configs"), CONFIGS_DIR} if folder.is_dir()
                       for p in folder.glob("sweep_*.yaml"))
    raise SweepConfigError(f"preset {name!r}: no configs/sweep_{name}.yaml; available: {', '.join(available) or 'none'}")


def sweep_config_to_dict(config: SweepConfig) -> dict[str, Any]:
    """Plain dict (YAML/JSON-ready) that `sweep_config_from_dict` reads back."""
    data = dataclasses.asdict(config)
    data["objectives"] = {o.name: o.direction for o in config.objectives}
    data["constraints"] = list(config.constraints)
    data["scheduler"]["rungs"] = list(config.scheduler.rungs)
    return json.loads(json.dumps(data, default=str))


def with_overrides(config: SweepConfig, *, base: Mapping[str, Any] | None = None, data_dir: str | None = None,
                   teacher: str | None = None, num_samples: int | None = None,
                   max_concurrent: int | None = None, storage_path: str | None = None,
                   storage_endpoint: str | None = None) -> SweepConfig:
    """The CLI's changes: extra base overrides, a data folder, a teacher, trial counts, storage."""
    merged = dict(config.base)
    if data_dir:
        folder = Path(data_dir)
        val = folder / "val.json"
        train = [folder / "train.json"] + ([folder / "train-extra.json"] if (folder / "train-extra.json").exists() else [])
        if not val.is_file() or not train[0].is_file():
            raise SweepConfigError(f"--data {data_dir}: expected train.json and val.json in that folder")
        merged["data.train_files"] = [str(p) for p in train]
        merged["data.val_file"] = str(val)
    if teacher:
        merged["teacher.path"] = teacher
    merged.update(base or {})
    changes: dict[str, Any] = {"base": _flat_base(merged, "base")}
    if num_samples is not None:
        changes["num_samples"] = num_samples
    if max_concurrent is not None:
        changes["max_concurrent"] = max_concurrent
    if storage_path is not None:
        changes["storage_path"] = storage_path
    if storage_endpoint is not None:
        changes["storage_endpoint"] = storage_endpoint
    updated = dataclasses.replace(config, **changes)
    check_sweep_config(updated, "command line")
    return updated


# --------------------------------------------------------------------------------------------------
# The search space, the baseline and each trial's RunConfig
# --------------------------------------------------------------------------------------------------


def teacher_context(teacher_config: Any) -> dict[str, int]:
    """The teacher's shape as the space expressions name it ({teacher.hidden_size}, ...)."""
    return {f"teacher.{name}": int(getattr(teacher_config, name))
            for name in ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")}


def _merge_space(mapping: Mapping[str, Any], overrides: Mapping[str, Any], source: str) -> dict[str, Any]:
    merged = {key: (dict(value) if isinstance(value, Mapping) else value) for key, value in mapping.items()}
    for section, changes in overrides.items():
        if section not in ("parameters", "derived", "fixed"):
            raise SweepConfigError(f"{source}: space_overrides.{section}: unknown section; known: parameters, "
                                   "derived, fixed")
        if not isinstance(changes, Mapping):
            raise SweepConfigError(f"{source}: space_overrides.{section}: expected a mapping")
        target = dict(merged.get(section) or {})
        for key, value in changes.items():
            if value is None:
                target.pop(key, None)
            elif section == "parameters" and isinstance(value, Mapping) and isinstance(target.get(key), Mapping):
                target[key] = {**target[key], **value}
            else:
                target[key] = value
        merged[section] = target
    return merged


def load_sweep_space(config: SweepConfig, context: Mapping[str, Any]) -> SearchSpace:
    """The space file with `space_overrides` applied, checked against the config keys and the base."""
    path = Path(config.space)
    mapping = read_yaml(path, "search space file (the sweep's space)", SweepConfigError)
    source = str(path) + (" (with space_overrides)" if config.space_overrides else "")
    try:
        space = parse_space(_merge_space(mapping, config.space_overrides, str(path)), context, source=source)
    except SearchSpaceError as error:
        raise SweepConfigError(str(error)) from None
    space_keys = set(space.names) | set(space.derived) | set(space.fixed)
    clashes = sorted(key for key in config.base if key in space_keys)
    if clashes:
        raise SweepConfigError(
            f"base.{clashes[0]}: the space {path} sets this key (sampled, derived or fixed), so a base value would be "
            "ignored; change it under space_overrides instead"
        )
    for u in (0.0, 1.0):
        overrides = space.resolve({p.name: p.from_unit(u) for p in space.params})
        try:
            apply_overrides(RunConfig(), {**config.base, **overrides})
        except ConfigError as error:
            raise SweepConfigError(f"space {path}: {error}") from None
    return space


BASELINE_SHAPE = ("student.num_hidden_layers", "student.hidden_size", "student.num_attention_heads",
                  "student.intermediate_size", "student.init", "student.layer_selection")


def baseline_overrides(space: SearchSpace, context: Mapping[str, Any],
                       settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """DistilBERT-like student: half the teacher's layers (every other), teacher width, default distill settings.

    The space's fixed keys (training length, sequence length) apply, so it trains like every other trial;
    `settings` (the sweep's baseline_settings) give its training knobs, which the space samples for others.
    """
    settings = dict(settings or {})
    shape = [key for key in settings if key in BASELINE_SHAPE]
    if shape:
        raise SweepConfigError(f"baseline_settings: {shape[0]}: the baseline's shape is fixed (half the teacher's "
                               "layers, its width); set training knobs only")
    fixed = [key for key in settings if key in space.fixed]
    if fixed:
        raise SweepConfigError(f"baseline_settings: {fixed[0]}: fixed by the space for every trial; change it "
                               "under space_overrides instead")
    try:
        apply_overrides(RunConfig(), settings)
    except ConfigError as error:
        raise SweepConfigError(f"baseline_settings: {error}") from None
    overrides = dict(space.fixed)
    overrides.update(settings)
    overrides.update({
        "student.num_hidden_layers": max(1, int(context["teacher.num_hidden_layers"]) // 2),
        "student.hidden_size": 0,
        "student.num_attention_heads": 0,
        "student.intermediate_size": 0,
        "student.init": "teacher",
        "student.layer_selection": "every_other",
    })
    return overrides


def trial_run_config(base: Mapping[str, Any], overrides: Mapping[str, Any], number: int,
                     cpus: float = 0.0) -> RunConfig:
    """base + the trial's overrides, seed = base seed + trial number, torch threads = the trial's CPUs."""
    config = apply_overrides(RunConfig(), {**base, **overrides})
    changes: dict[str, Any] = {"distill.seed": config.distill.seed + int(number)}
    if config.distill.num_threads == 0 and cpus >= 1:
        changes["distill.num_threads"] = int(cpus)
    return apply_overrides(config, changes)


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def absolute_base(base: Mapping[str, Any], out_dir: Path) -> dict[str, Any]:
    """Base overrides with every local path made absolute (trials run in other folders and on other
    nodes) and the cache folder set (default: <out>/cache), so every trial finds the driver's caches."""
    config = apply_overrides(RunConfig(), base)
    result = dict(base)
    result["data.train_files"] = [f if f.startswith("hub:") else _absolute(f) for f in config.data.train_files]
    result["data.val_file"] = config.data.val_file if config.data.val_file.startswith("hub:") \
        else _absolute(config.data.val_file)
    teacher = Path(config.teacher.path).expanduser()
    if teacher.exists() or config.teacher.path.startswith((".", "/", "~")):
        result["teacher.path"] = _absolute(config.teacher.path)
    cache = base.get("data.cache_dir")
    result["data.cache_dir"] = _absolute(cache) if cache else str(out_dir / "cache")
    return result


# --------------------------------------------------------------------------------------------------
# The trainable
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialContext:
    """What every trial needs besides its own overrides (pickled to the workers)."""

    base: dict
    experiment_dir: str | None  # local experiment folder (run folders go inside its trial folders), or None
    cpus: float
    measure_latency: bool


def _json_scalars(metrics: Mapping[str, Any]) -> dict[str, Any]:
    clean = {}
    for key, value in metrics.items():
        if key.startswith("_"):
            continue
        if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
            value = value.item()
        if value is None or isinstance(value, (bool, int, float, str)):
            clean[key] = value
    return clean


def _device_name(config: RunConfig) -> str:
    from tune_distill.teacher import resolve_device

    device = resolve_device(config.distill.device)
    if device.type == "cuda":
        import torch

        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _total_steps(config: RunConfig, metrics: Mapping[str, Any]) -> int | None:
    """The run's total optimiser steps, from an evaluation's step and epoch (epoch = step / steps per epoch)."""
    if config.distill.max_steps:
        return config.distill.max_steps
    step, epoch = metrics.get("step"), metrics.get("epoch")
    if not step or not epoch:
        return None
    per_epoch = max(1, round(step / epoch))
    return max(1, math.ceil(config.distill.num_train_epochs * per_epoch))


def _trim_history(run_dir: Path, step: int) -> None:
    """Drop history lines written after the checkpoint we resume from (an attempt that died later)."""
    path = run_dir / "history.jsonl"
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in kept))


def run_trial(config: Mapping[str, Any], context: TrialContext) -> None:
    """Body of one Ray trial: one `run_distillation` call, every evaluation reported to Tune."""
    import ray
    from ray import tune

    from tune_distill.run import run_distillation

    number = int(config["number"])
    run_config = trial_run_config(context.base, config["overrides"], number, context.cpus)
    trial_dir = Path(tune.get_context().get_trial_dir())
    run_dir = (Path(context.experiment_dir) / trial_dir.name if context.experiment_dir else trial_dir) / "run"
    node_id = ray.get_runtime_context().get_node_id()
    device = _device_name(run_config)
    identity = {"number": number, "kind": config.get("kind", "search"), "node_id": node_id, "device": device,
                "seed": run_config.distill.seed, "run_dir": str(run_dir), "started_at": time.time()}

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            if not (Path(directory) / "step.json").is_file():
                checkpoint = None  # emptied by repair_missing_checkpoints: start over
    if checkpoint is None and run_dir.exists():
        shutil.rmtree(run_dir)  # an attempt that never reported a checkpoint: start clean
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / TRIAL_ERROR_FILE).unlink(missing_ok=True)  # from an earlier attempt
    handler = logging.FileHandler(run_dir / TRIAL_LOG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    package_logger = logging.getLogger("tune_distill")
    previous_level = package_logger.level
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO)
    try:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # weight-loading bars from every trial flood the driver's console
        log.info("trial %04d on node %s, device %s, seed %d, overrides %s", number, node_id, device,
                 run_config.distill.seed, json.dumps(config["overrides"], sort_keys=True))

        def report(metrics: Mapping[str, Any]) -> None:
            values = _json_scalars(metrics)
            total = _total_steps(run_config, values)
            if total is not None and values.get("step", 0) >= total:
                return  # the last evaluation: the final report (with the same scores) follows at once
            values.update(identity, total_steps=total, final=False, status="running")
            tune.report(values, checkpoint=tune.Checkpoint.from_directory(str(run_dir / "checkpoint")))

        # command.txt: the command that reruns this trial outside the sweep
        command = ["tune-distill", "distill", "--out", shlex.quote(str(run_dir))]
        for key, value in sorted({**context.base, **config["overrides"], "distill.seed": run_config.distill.seed}.items()):
            text = json.dumps(list(value)) if isinstance(value, (list, tuple)) else str(value)
            command += ["--set", shlex.quote(f"{key}={text}")]
        kwargs = dict(callback=report, measure_latency=context.measure_latency, command=command)
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                step = json.loads((Path(directory) / "step.json").read_text())["step"]
                log.info("trial %04d resumes from Tune's checkpoint at step %d", number, step)
                _trim_history(run_dir, step)
                metrics = run_distillation(run_config, run_dir, resume=True, resume_from=directory, **kwargs)
        else:
            metrics = run_distillation(run_config, run_dir, resume=False, **kwargs)
        final = _json_scalars(metrics)
        final.update(identity, final=True, status="complete", finished_at=time.time())
        final.setdefault("total_steps", _total_steps(run_config, final))
        tune.report(final, checkpoint=tune.Checkpoint.from_directory(str(run_dir / "checkpoint")))
    except Exception as error:
        details = {**identity, "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
        (run_dir / TRIAL_ERROR_FILE).write_text(json.dumps(details, indent=1))
        log.error("trial %04d failed: %s: %s", number, type(error).__name__, error)
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # pragma: no cover - best effort only
            pass
        raise
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)
        handler.close()


def make_trainable(context: TrialContext) -> Callable[[dict], None]:
    """The function trainable Tune runs for every trial (a closure over `context`)."""

    def tune_distill_trial(config: dict) -> None:
        run_trial(config, context)

    return tune_distill_trial


def trial_dirname(trial: Any) -> str:
    """trial_0003_<id>: trial folders sort by number."""
    return f"trial_{int(trial.config.get('number', 0)):04d}_{trial.trial_id}"


def trial_name(trial: Any) -> str:
    return f"trial_{int(trial.config.get('number', 0)):04d}"


# --------------------------------------------------------------------------------------------------
# Searcher adapter
# --------------------------------------------------------------------------------------------------


class SweepSearcher(RaySearcher):
    """Ray Tune searcher around a tune_distill `search.Searcher`.

    suggest -> {number, kind, params (sampled), overrides (resolved config keys)}; the baseline, if
    any, is suggestion 0 and is not shown to the wrapped searcher (it usually lies outside the space).
    A trial's last result reaches the wrapped searcher once: `final: True` -> complete (objectives and
    constraint metrics), no final flag -> pruned by the scheduler (its last values given), error ->
    failed. `save`/`restore` carry the wrapped searcher's state bytes, so a resumed sweep continues.
    """

    def __init__(self, searcher: Any, space: SearchSpace, objectives: Sequence[Objective],
                 constraints: Sequence[Constraint], num_samples: int, baseline: Mapping[str, Any] | None = None):
        # No metric for Tune: it would demand it in every result, and ours differ between reports.
        super().__init__(metric=None, mode=None)
        # Not called `searcher`: Tune treats objects with a `.searcher` as wrappers when saving state.
        self._inner = searcher
        self._space = space
        self._objectives = tuple(objectives)
        self._constraints = tuple(constraints)
        self._num_samples = int(num_samples)
        self._baseline = dict(baseline) if baseline is not None else None
        self._next_number = 0
        self._outstanding: set[str] = set()  # suggested by the wrapped searcher, not yet observed
        self._observed: dict[str, str] = {}

    @property
    def next_number(self) -> int:
        return self._next_number

    def suggest(self, trial_id: str) -> dict | str | None:
        if self._next_number >= self._num_samples:
            return self.FINISHED
        number = self._next_number
        if number == 0 and self._baseline is not None:
            suggestion = {"number": 0, "kind": "baseline", "params": {}, "overrides": dict(self._baseline)}
        else:
            params = self._inner.suggest(trial_id)
            if params is None:
                log.info("searcher has no more suggestions after %d trials", number)
                return self.FINISHED
            self._outstanding.add(trial_id)
            suggestion = {"number": number, "kind": "search", "params": dict(params),
                          "overrides": self._space.resolve(params)}
        self._next_number += 1
        return suggestion

    def outcome(self, result: Mapping[str, Any] | None, error: bool) -> tuple[str, dict[str, float] | None]:
        """(status, values) the wrapped searcher is told for a trial's last result."""
        if error or not result:
            return "failed", None
        names = [o.name for o in self._objectives] + [c.name for c in self._constraints]
        values = {name: float(result[name]) for name in names
                  if isinstance(result.get(name), (int, float)) and not isinstance(result.get(name), bool)}
        if not result.get("final"):
            return "pruned", values
        missing = [name for name in names if name not in values or not math.isfinite(values[name])]
        if missing:
            log.warning("trial %s finished without %s; the searcher records it as failed", result.get("trial_id"),
                        missing)
            return "failed", None
        return "complete", values

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        status, values = self.outcome(result, error)
        if trial_id not in self._outstanding:
            if trial_id in self._observed:
                log.info("trial %s finished again (%s) after a resume; the searcher keeps its first outcome (%s)",
                         trial_id, status, self._observed[trial_id])
            return
        try:
            self._inner.observe(trial_id, values, status)
        except (SearcherError, ValueError) as problem:  # never let bookkeeping crash the sweep
            log.warning("searcher could not record trial %s (%s): %s", trial_id, status, problem)
        self._outstanding.discard(trial_id)
        self._observed[trial_id] = status

    def get_state(self) -> dict:
        return {"inner": self._inner.state(), "next_number": self._next_number,
                "outstanding": sorted(self._outstanding), "observed": dict(self._observed)}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._inner = restore_searcher(state["inner"])
        self._next_number = int(state["next_number"])
        self._outstanding = set(state["outstanding"])
        self._observed = dict(state["observed"])

    def save(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.get_state(), handle)

    def restore(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "rb") as handle:
            self.set_state(pickle.load(handle))
        log.info("searcher restored: %d trials suggested, %d observed, %d outstanding", self._next_number,
                 len(self._observed), len(self._outstanding))


# --------------------------------------------------------------------------------------------------
# Pareto successive halving
# --------------------------------------------------------------------------------------------------


CONTINUE, STOP = "CONTINUE", "STOP"  # the values of TrialScheduler.CONTINUE / STOP


class ParetoSuccessiveHalving(FIFOScheduler):
    """Asynchronous successive halving that ranks on several objectives.

    When a trial first reports at or past a rung (an optimiser step), it is ranked among every trial
    recorded at that rung so far (itself included) by non-dominated sorting, then within its front by
    `within_front` (larger first; ties go to the newcomer):
      * 'hypervolume' (default): the exclusive hypervolume contribution of each member of the front,
        against the rung points' nadir pushed out by 10% of each objective's spread
        (`search.nadir_reference`). A point's box spans the gaps to its neighbours on the front, so a
        student that is smaller than its neighbour by little and less accurate by much ranks low, and
        one that opens a wide gap ranks high; an extreme of the front (the smallest, the most
        accurate) owns a box as deep as a tenth of the spread, not an automatic place (with two points
        the two boxes are equal, and the newcomer keeps the tie);
      * 'crowding': NSGA-II crowding distance (every extreme of the front ranks first).
    It continues when its rank is within the best ceil(n / reduction_factor) of those n trials, else
    it stops. The first trial at a rung always continues (nothing to compare with), like ASHA.
    Decisions are never revisited; a resumed trial meets its recorded decision again. A report at
    the run's last step is recorded but never stopped. Rung records persist to `state_path` (JSON)
    so a resumed sweep keeps them.
    """

    def __init__(self, rungs: Sequence[int], objectives: Sequence[Objective], reduction_factor: float = 3.0,
                 time_attr: str = "step", state_path: str | None = None, within_front: str = "hypervolume"):
        super().__init__()
        if not rungs:
            raise SweepConfigError("pareto_sh: at least one rung is needed")
        if reduction_factor <= 1:
            raise SweepConfigError(f"pareto_sh: reduction_factor must be > 1, got {reduction_factor}")
        if within_front not in WITHIN_FRONT:
            raise SweepConfigError(f"pareto_sh: within_front must be one of {', '.join(WITHIN_FRONT)}, "
                                   f"got {within_front!r}")
        self.within_front = within_front
        self.rungs = tuple(sorted({int(r) for r in rungs}))
        self.objectives = tuple(objectives)
        self.reduction_factor = float(reduction_factor)
        self.time_attr = time_attr
        self.state_path = state_path
        self.records: dict[int, dict[str, dict[str, Any]]] = {rung: {} for rung in self.rungs}
        self.num_stopped = 0
        self.steps_saved = 0
        self._loaded = False

    # -- Ray hooks ---------------------------------------------------------------------------------

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        return self.on_result(trial.trial_id, result)

    def debug_string(self) -> str:
        seen = ", ".join(f"{rung}: {len(self.records[rung])}" for rung in self.rungs)
        return f"ParetoSuccessiveHalving: {self.num_stopped} stopped, {self.steps_saved} steps saved; trials per rung {seen}"

    # -- the decision ------------------------------------------------------------------------------

    def on_result(self, trial_id: str, result: Mapping[str, Any]) -> str:
        """CONTINUE or STOP for one reported result (pure bookkeeping: testable without Ray)."""
        self._load()
        step = result.get(self.time_attr)
        if step is None or result.get("final"):
            return CONTINUE
        values = [result.get(o.name) for o in self.objectives]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            log.debug("pareto_sh: trial %s reported no usable %s; continuing", trial_id,
                      [o.name for o in self.objectives])
            return CONTINUE
        total = result.get("total_steps")
        decision = CONTINUE
        changed = False
        for rung in self.rungs:
            if rung > step:
                break
            record = self.records[rung].get(trial_id)
            if record is not None:
                if record["decision"] == STOP:
                    decision = STOP
                    break
                continue
            rank, quota, seen = self.rank(rung, [float(v) for v in values])
            last_step = total is not None and step >= total
            # the baseline is the sweep's yardstick: it is ranked (others are compared with it) but never stopped
            protected = result.get("kind") == "baseline"
            verdict = CONTINUE if rank < quota or last_step or protected else STOP
            self.records[rung][trial_id] = {"values": [float(v) for v in values], "decision": verdict,
                                            "step": int(step)}
            changed = True
            log.info("pareto_sh: trial %s at rung %d (step %d): rank %d of %d, keep %d -> %s", trial_id, rung, step,
                     rank + 1, seen, quota, verdict.lower())
            if verdict == STOP:
                self.num_stopped += 1
                self.steps_saved += max(0, int(total) - int(step)) if total is not None else 0
                decision = STOP
                break
        if changed:
            self._save()
        return decision

    def rank(self, rung: int, values: Sequence[float]) -> tuple[int, int, int]:
        """(rank of `values` among the trials recorded at `rung` plus itself, quota kept, count)."""
        import numpy as np

        points = [list(values)] + [record["values"] for record in self.records[rung].values()]
        n = len(points)
        quota = max(1, math.ceil(n / self.reduction_factor))
        directions = [o.direction for o in self.objectives]
        array = np.asarray(points, dtype=float)
        reference = nadir_reference(array, directions, RUNG_REFERENCE_MARGIN)
        position = 0
        for front in non_dominated_sort(array, directions):
            members = list(front)
            if 0 in members:
                if len(members) == 1:
                    order = np.array([np.inf])
                elif self.within_front == "hypervolume":
                    order = hypervolume_contributions(array[members], directions, reference)
                else:
                    order = crowding_distance(array[members], directions)
                mine = order[members.index(0)]
                ahead = sum(1 for index, value in zip(members, order) if index != 0 and value > mine)
                return position + ahead, quota, n
            position += len(members)
        raise AssertionError("a point is missing from the fronts")  # pragma: no cover

    # -- persistence -------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"rungs": list(self.rungs), "objectives": [[o.name, o.direction] for o in self.objectives],
                "reduction_factor": self.reduction_factor, "within_front": self.within_front,
                "num_stopped": self.num_stopped,
                "steps_saved": self.steps_saved,
                "records": {str(rung): records for rung, records in self.records.items()}}

    def _save(self) -> None:
        if not self.state_path:
            return
        path = Path(self.state_path)
        staging = path.with_name(f".{path.name}.tmp{os.getpid()}")
        staging.write_text(json.dumps(self.state(), indent=1))
        os.replace(staging, path)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if not self.state_path or not Path(self.state_path).is_file():
            return
        state = json.loads(Path(self.state_path).read_text())
        for rung, records in state.get("records", {}).items():
            if int(rung) in self.records:
                self.records[int(rung)].update(records)
        self.num_stopped = int(state.get("num_stopped", 0))
        self.steps_saved = int(state.get("steps_saved", 0))
        log.info("pareto_sh: restored rung records from %s (%d stopped so far)", self.state_path, self.num_stopped)

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps(self.state()))

    def restore(self, checkpoint_path: str) -> None:
        self.state_path, previous = checkpoint_path, self.state_path
        self._loaded = False
        self._load()
        self.state_path = previous


def pareto_rungs(settings: SchedulerSettings) -> tuple[int, ...]:
    """Explicit rungs, or grace_period x reduction_factor^k below max_t."""
    if settings.rungs:
        return tuple(sorted(set(settings.rungs)))
    rungs, step = [], float(settings.grace_period)
    while step < settings.max_t:
        rungs.append(int(round(step)))
        step *= settings.reduction_factor
    return tuple(sorted(set(rungs)))


class BaselineKeepingASHA(ASHAScheduler):
    """Ray's ASHA, except that the baseline trial (the sweep's yardstick) always runs to the end."""

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if result.get("kind") == "baseline":
            return CONTINUE
        return super().on_trial_result(tune_controller, trial, result)


def make_scheduler(settings: SchedulerSettings, objectives: Sequence[Objective], state_path: str | None = None):
    """The Tune scheduler named in the sweep config."""
    if settings.name == "fifo":
        return FIFOScheduler()
    ranked = [o for o in objectives if o.name in INTERMEDIATE_METRICS]
    if settings.name == "asha":
        if settings.rungs:
            raise SweepConfigError(
                f"scheduler asha: rungs {list(settings.rungs)} are pareto_sh's setting; asha decides at "
                "grace_period x reduction_factor^k steps (set grace_period and max_t instead)")
        metric = ranked[0] if ranked else Objective("exact", "max")
        return BaselineKeepingASHA(time_attr="step", metric=metric.name, mode=metric.direction,
                                   max_t=settings.max_t or 10**9, grace_period=max(1, settings.grace_period),
                                   reduction_factor=settings.reduction_factor, stop_last_trials=False)
    if not ranked:
        raise SweepConfigError("scheduler pareto_sh: no objective is reported at evaluations "
                               f"({', '.join(INTERMEDIATE_METRICS)})")
    return ParetoSuccessiveHalving(pareto_rungs(settings), ranked, settings.reduction_factor, state_path=state_path,
                                   within_front=settings.within_front)


# --------------------------------------------------------------------------------------------------
# Progress lines
# --------------------------------------------------------------------------------------------------


def params_digest(params: Mapping[str, Any], width: int = 90) -> str:
    """'layers=2 lr=3.2e-04 alpha_ce=0.51 ...' from the sampled parameters (short names)."""
    short = {"num_hidden_layers": "layers", "learning_rate": "lr", "num_attention_heads": "heads",
             "hidden_size": "hidden", "intermediate_size": "ffn"}
    parts = []
    # student shape first, then training knobs, auxiliary '_' values last
    for key in sorted(params, key=lambda k: (k.startswith("_"), not k.startswith("student."), k)):
        name = key.rsplit(".", 1)[-1]
        name = short.get(name, name)
        value = params[key]
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        parts.append(f"{name}={text}")
    line = " ".join(parts) or "baseline"
    return line if len(line) <= width else line[: width - 3] + "..."


def _status(last_result: Mapping[str, Any], errored: bool) -> str:
    if errored:
        return "failed"
    return "complete" if last_result.get("final") else "stopped"


def _short(name: str, value: Any) -> str:
    """A metric for a progress line: counts in millions, scores with two decimals, '-' when absent."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return f"{value / 1e6:.2f}M" if name.endswith("parameters") else f"{value:.2f}"


class ProgressLines(RayCallback):
    """One log line per finished trial: id, status, its objectives (and exact, parameters), params digest, running best."""

    def __init__(self, objectives: Sequence[Objective], constraints: Sequence[Constraint], num_samples: int):
        self.objectives = tuple(objectives)
        self.constraints = tuple(constraints)
        self.num_samples = num_samples

    def _line(self, trials: Sequence[Any], trial: Any, errored: bool) -> None:
        result = trial.last_result or {}
        number = int(trial.config.get("number", -1))
        status = _status(result, errored)
        first = self.objectives[0]
        best = None
        for other in trials:
            other_result = other.last_result or {}
            if other.status == "ERROR" or not other_result.get("final") or first.name not in other_result:
                continue
            if not is_feasible(other_result, self.constraints):
                continue
            value = other_result[first.name]
            if best is None or (value > best[0] if first.direction == "max" else value < best[0]):
                best = (value, int(other.config.get("number", -1)))
        finished = sum(1 for t in trials if t is trial or t.status in ("TERMINATED", "ERROR"))
        shown = [o.name for o in self.objectives]
        shown += [name for name in ("exact", "parameters") if name not in shown]
        values = " ".join(f"{name} {_short(name, result.get(name))}" for name in shown)
        feasible = "" if status != "complete" else (" feasible" if is_feasible(result, self.constraints)
                                                     else " infeasible")
        log.info(
            "trial %04d %s %-8s %s%s | %s | best %s %s [%d/%d finished]",
            number, trial.trial_id, status, values, feasible,
            params_digest(trial.config.get("params") or {}), first.name,
            f"{best[0]:.4g} (trial {best[1]:04d})" if best else "none feasible yet", finished, self.num_samples,
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trials, trial, errored=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trials, trial, errored=True)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        log.warning("trial %04d %s raised (attempt %d); retrying", int(trial.config.get("number", -1)),
                    trial.trial_id, trial.num_failures)


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def connect_ray(address: str | None = None, num_cpus: int | None = None,
                extra_env: Sequence[str] = ()) -> tuple[bool, str | None]:
    """Join the cluster at `address` (or RAY_ADDRESS), else start a local Ray with its dashboard on 127.0.0.1.

    A joined cluster's workers get PROPAGATED_ENV and `extra_env` (those set here) through the job's
    runtime_env; a local Ray's workers inherit this process's environment. Returns (whether we started
    Ray here and must shut it down, the dashboard URL if any). An already initialised Ray (e.g. in
    tests) is used as it is.
    """
    import ray

    if ray.is_initialized():
        return False, None
    address = address or os.environ.get("RAY_ADDRESS") or None
    env_vars = {name: os.environ[name] for name in (*PROPAGATED_ENV, *extra_env) if name in os.environ}
    runtime_env = {"env_vars": env_vars} if env_vars else None
    if address:
        try:
            context = ray.init(address=address, runtime_env=runtime_env)
        except ConnectionError as error:
            raise ConnectionError(
                f"{error}. If the cluster uses token authentication (the default for clusters Ray starts), set "
                "RAY_AUTH_MODE=token and provide its token (~/.ray/auth_token or RAY_AUTH_TOKEN)"
            ) from error
        log.info("joined the Ray cluster at %s", address)
    else:
        # address="local": a new instance here, never a cluster someone else `ray start`ed on this machine
        try:
            context = ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1")
        except Exception as error:  # missing dashboard packages, port trouble, ...
            log.warning("the Ray dashboard could not start (%s: %s); running without it", type(error).__name__, error)
            ray.shutdown()
            context = ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
    url = getattr(context, "dashboard_url", None) or None
    if url:
        url = url if "://" in url else f"http://{url}"
        log.info("Ray dashboard: %s", url)
        print(f"Ray dashboard: {url}", file=sys.stderr, flush=True)
    return not address, url


@dataclass(frozen=True)
class SweepStorage:
    """Where Tune keeps the experiment, in the forms Tune and pyarrow take."""

    uri: str  # storage_path resolved: an absolute folder, or the URI (s3://bucket/prefix)
    endpoint: str  # the S3 endpoint in use ('' = AWS, or not S3)
    tune_path: str  # RunConfig.storage_path: the folder, or the path on `filesystem` (bucket/prefix)
    experiment: str  # the Tune experiment: a folder, or a path on `filesystem`
    local_experiment: str | None  # the experiment folder when it is local
    filesystem: Any = None  # pyarrow filesystem of a remote storage_path (None: local)

    def uri_of(self, path: str) -> str:
        """A path on the remote filesystem as a URI (s3://bucket/...); local paths as they are."""
        if self.filesystem is None or "://" in path:
            return path
        return f"{self.uri.split('://', 1)[0]}://{path}"


# The sweep's own files, copied next to a remote experiment (the report adds its results files).
SWEEP_FILES = (SWEEP_FILE, TRIALS_FILE, SCHEDULER_STATE_FILE)


def sweep_storage(config: SweepConfig, out_dir: Path, *, fresh: bool = False) -> SweepStorage:
    """The sweep's storage. A remote one is checked first (the bucket exists, a marker object can be written
    and deleted with these credentials) and, for a fresh sweep, must not hold a sweep already."""
    storage = config.storage_path or str(out_dir)
    if not storage_io.is_remote(storage):
        folder = _absolute(storage.removeprefix("file://"))
        experiment = str(Path(folder) / config.name)
        return SweepStorage(folder, "", folder, experiment, experiment)
    uri = storage.rstrip("/")
    endpoint = storage_io.resolve_endpoint(config.storage_endpoint) if uri.startswith("s3://") else ""
    filesystem, path = storage_io.open_location(uri, endpoint, SweepConfigError)
    storage_io.probe(filesystem, path, uri, endpoint, SweepConfigError)
    location = SweepStorage(uri, endpoint, path, f"{path}/{config.name}", None, filesystem)
    if fresh:
        for used in (location.experiment, f"{path}/{SWEEP_FILE}"):
            if storage_io.exists(filesystem, used):
                raise SweepConfigError(f"storage_path {uri} already holds a sweep ({location.uri_of(used)}); resume "
                                       "it (--resume) or choose another storage_path")
    log.info("experiment storage: %s%s", location.uri_of(location.experiment), f" via {endpoint}" if endpoint else "")
    return location


def upload_sweep_files(location: SweepStorage, out_dir: Path, names: Sequence[str] = SWEEP_FILES) -> None:
    """Copy the sweep's own files next to a remote experiment; a failure is logged (they stay in out_dir)."""
    if location.filesystem is None:
        return
    try:
        written = storage_io.upload_files(out_dir, names, location.filesystem, location.tune_path)
    except OSError as failure:
        log.error("could not copy %s to %s (%s); they are in %s", ", ".join(names), location.uri,
                  storage_io.explain(failure, location.uri, location.endpoint), out_dir)
        return
    log.info("copied %s to %s", ", ".join(Path(path).name for path in written), location.uri)


def fetch_sweep(out_dir: Path, storage_path: str, storage_endpoint: str = "") -> None:
    """Resume without the local folder: copy sweep.json (and trials.jsonl, the scheduler's state) from a remote
    storage_path into out_dir."""
    if not storage_io.is_remote(storage_path):
        raise SweepConfigError(f"--resume: {out_dir} holds no sweep ({SWEEP_FILE} missing)")
    filesystem, path = storage_io.open_location(storage_path.rstrip("/"), storage_endpoint, SweepConfigError)
    endpoint = storage_io.resolve_endpoint(storage_endpoint) if storage_path.startswith("s3://") else ""
    try:
        found = storage_io.download_file(filesystem, f"{path}/{SWEEP_FILE}", out_dir / SWEEP_FILE)
        for name in (TRIALS_FILE, SCHEDULER_STATE_FILE) if found else ():
            storage_io.download_file(filesystem, f"{path}/{name}", out_dir / name)
    except OSError as failure:
        raise SweepConfigError(f"--resume: {storage_io.explain(failure, storage_path, endpoint)}") from None
    if not found:
        raise SweepConfigError(f"--resume: neither {out_dir} nor {storage_path} holds a sweep ({SWEEP_FILE} missing)")
    log.info("resuming from %s: its %s copied into %s", storage_path, SWEEP_FILE, out_dir)


def no_answer_score(examples: Sequence[Any]) -> float:
    """Exact (= F1) of answering "no answer" everywhere: 100 x the share of unanswerable questions."""
    if not examples:
        raise SweepConfigError("data.val_file: no validation questions")
    return 100.0 * sum(bool(example.is_impossible) for example in examples) / len(examples)


@dataclass
class _Prepared:
    config: SweepConfig  # base with absolute paths
    space: SearchSpace
    context: dict
    constraints: tuple
    baseline: dict | None
    no_answer: float


def prepare_sweep(config: SweepConfig, out_dir: Path) -> _Prepared:
    """Check everything, then tokenise and compute teacher logits once (cached under data.cache_dir)."""
    from transformers import AutoConfig

    from tune_distill.run import prepare_inputs
    from tune_distill.teacher import resolve_device

    base = absolute_base(config.base, out_dir)
    config = dataclasses.replace(config, base=base)
    run_config = apply_overrides(RunConfig(), base)
    teacher_path = run_config.teacher.path
    if not Path(teacher_path).exists() and teacher_path.startswith("/"):
        raise SweepConfigError(f"base.teacher.path: {teacher_path} does not exist (use --teacher DIR)")
    for path in [*run_config.data.train_files, run_config.data.val_file]:
        if not path.startswith("hub:") and not Path(path).is_file():
            raise SweepConfigError(f"base.data: {path} does not exist (use --data DIR)")
    try:
        teacher_config = AutoConfig.from_pretrained(teacher_path)
    except (OSError, ValueError) as error:
        raise SweepConfigError(f"base.teacher.path: cannot read the teacher's config from {teacher_path}: {error}") from None
    context = teacher_context(teacher_config)
    space = load_sweep_space(config, context)
    baseline = baseline_overrides(space, context, config.baseline_settings) if config.baseline else None
    if config.scheduler.name != "fifo":
        shared = apply_overrides(run_config, dict(space.fixed))
        if shared.distill.eval_every_steps <= 0 and "distill.eval_every_steps" not in space.names:
            raise SweepConfigError(f"scheduler {config.scheduler.name}: trials must evaluate during training; set "
                                   "base distill.eval_every_steps (the rungs should be multiples of it)")
        every = shared.distill.eval_every_steps
        if every > 0 and config.scheduler.name == "pareto_sh":
            odd = [rung for rung in pareto_rungs(config.scheduler) if rung % every]
            if odd:
                log.warning("pareto_sh rungs %s are not multiples of distill.eval_every_steps=%d: decisions happen at "
                            "the first evaluation past them", odd, every)

    varying = sorted(key for key in [*space.names, *space.derived] if key.startswith(("data.", "teacher.")))
    if varying:
        log.warning("the space varies %s: trials build their own caches (written atomically) on first use", varying)
    shared = apply_overrides(run_config, dict(space.fixed))
    alpha_varies = "distill.alpha_ce" in space.names or "distill.alpha_ce" in space.derived
    needs_logits = alpha_varies or shared.distill.alpha_ce > 0

    device = resolve_device(shared.distill.device)
    began = time.perf_counter()
    log.info("preparing features%s once on the driver (%s) under %s", " and teacher logits" if needs_logits else "",
             device, shared.data.cache_dir)
    inputs = prepare_inputs(shared, device, teacher_logits_needed=needs_logits)
    log.info("inputs ready in %.1fs: %d train windows, %d validation questions", time.perf_counter() - began,
             len(inputs.train_features), len(inputs.val_features.examples))
    no_answer = no_answer_score(inputs.val_features.examples)
    constraints = resolve_constraints(config.constraints, no_answer)
    log.info("no-answer score of the validation split: %.2f; constraints: %s", no_answer,
             ", ".join(f"{c.name} {c.op} {c.bound:.4g}" for c in constraints) or "none")
    return _Prepared(config, space, context, constraints, baseline, no_answer)


def _record(trial: Any, result: Any | None) -> dict[str, Any]:
    """One trials.jsonl line from a Tune trial (and its Result, for the error and checkpoint)."""
    last = dict(trial.last_result or {})
    errored = trial.status == "ERROR"
    finished = trial.status in ("TERMINATED", "ERROR")
    status = _status(last, errored) if finished else "unfinished"
    config = trial.config or {}
    metrics = {key: value for key, value in last.items() if key not in _NOT_METRICS}
    run_dir = last.get("run_dir")
    error = None
    node_id, device, seed = last.get("node_id"), last.get("device"), last.get("seed")
    if errored:
        cause = getattr(result, "error", None) if result is not None else None
        cause = getattr(cause, "cause", None) or cause
        error = f"{type(cause).__name__}: {cause}".strip() if cause is not None else "error (see the trial's error.txt)"
        error = error.splitlines()[-1] if "\n" in error else error
    if run_dir is None and trial.path and "://" not in str(trial.path):
        candidate = Path(trial.path) / "run"
        run_dir = str(candidate) if candidate.exists() else None
    if run_dir and (Path(run_dir) / TRIAL_ERROR_FILE).is_file():
        details = json.loads((Path(run_dir) / TRIAL_ERROR_FILE).read_text())
        node_id, device = node_id or details.get("node_id"), device or details.get("device")
        seed = seed if seed is not None else details.get("seed")
        if errored:
            error = details.get("error", error)
    checkpoint = getattr(result, "checkpoint", None) if result is not None else None
    steps_saved = None
    if status == "stopped" and last.get("total_steps") and last.get("step") is not None:
        steps_saved = max(0, int(last["total_steps"]) - int(last["step"]))
    return {
        "trial_id": trial.trial_id,
        "number": int(config.get("number", -1)),
        "kind": config.get("kind", "search"),
        "baseline": config.get("kind") == "baseline",
        "status": status,
        "params": config.get("params", {}),
        "overrides": config.get("overrides", {}),
        "metrics": metrics,
        "error": error,
        "attempts": int(getattr(trial, "num_failures", 0)) + (0 if errored else 1),  # every failure was one
        "duration": last.get("time_total_s"),
        "checkpoint": getattr(checkpoint, "path", None),
        "run_dir": run_dir,
        "node_id": node_id,
        "device": device,
        "seed": seed,
        "started_at": last.get("started_at"),
        "finished_at": last.get("finished_at"),
        "steps_saved": steps_saved,
    }


def _write_json_atomically(path: Path, payload: Any) -> None:
    staging = path.with_name(f".{path.name}.tmp{os.getpid()}")
    staging.write_text(json.dumps(payload, indent=1, default=str))
    os.replace(staging, path)


def run_sweep(sweep_config: SweepConfig | None, out_dir: str | Path, *, resume: bool = False,
              ray_address: str | None = None) -> list[dict[str, Any]]:
    """Run (or, with resume=True, continue) a sweep; returns one dict per trial and writes trials.jsonl.

    A fresh sweep needs an output folder without a sweep in it. Resuming reads the sweep's own
    `sweep.json` (the `sweep_config` argument may be None; a different one is ignored with a warning),
    keeps finished trials, resumes unfinished ones from their checkpoints, retries errored ones from
    theirs, and restores the searcher's state; every trial appears once in trials.jsonl.
    """
    from ray import tune

    # num_to_keep=1 makes Tune snapshot the experiment at every checkpoint (what resume needs); not a problem.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    out_dir = Path(out_dir).expanduser().resolve()
    saved_path = out_dir / SWEEP_FILE
    if resume:
        if not saved_path.is_file() and sweep_config is not None and storage_io.is_remote(sweep_config.storage_path):
            fetch_sweep(out_dir, sweep_config.storage_path, sweep_config.storage_endpoint)  # the local folder is gone
        if not saved_path.is_file():
            raise SweepConfigError(f"--resume: {out_dir} holds no sweep ({SWEEP_FILE} missing)")
        saved = json.loads(saved_path.read_text())
        stored = sweep_config_from_dict(saved["config"], str(saved_path))
        if sweep_config is not None and sweep_config_to_dict(sweep_config) != sweep_config_to_dict(stored):
            log.warning("resuming with the sweep's saved configuration (%s); the one given now is ignored", saved_path)
        sweep_config = stored
    else:
        if sweep_config is None:
            raise SweepConfigError("run_sweep: a sweep config is needed (or resume=True)")
        if saved_path.exists():
            raise SweepConfigError(f"{out_dir} already holds a sweep; resume it (--resume) or choose another --out")
    # a remote storage_path is checked before the features and teacher logits are computed
    location = sweep_storage(sweep_config, out_dir, fresh=not resume)
    out_dir.mkdir(parents=True, exist_ok=True)

    prepared = prepare_sweep(sweep_config, out_dir)
    storage, experiment_path, local_experiment = location.tune_path, location.experiment, location.local_experiment
    config = dataclasses.replace(prepared.config, storage_path=location.uri, storage_endpoint=location.endpoint)
    started_ray, dashboard = connect_ray(ray_address, extra_env=storage_io.WORKER_ENV if location.filesystem else ())
    try:
        if not resume:
            _write_json_atomically(saved_path, {
                "config": sweep_config_to_dict(config),
                "no_answer": prepared.no_answer,
                # resolved, in the form report.py reads: [{name, direction}], [{name, op, bound}]
                "objectives": [dataclasses.asdict(o) for o in config.objectives],
                "constraints": [dataclasses.asdict(c) for c in prepared.constraints],
                "teacher": prepared.context,
                "baseline": prepared.baseline,
                "experiment_path": location.uri_of(experiment_path),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            })
            upload_sweep_files(location, out_dir, (SWEEP_FILE,))  # what a resume from the bucket alone needs
        resources = {"cpu": config.resources_per_trial.cpu, "gpu": config.resources_per_trial.gpu}
        context = TrialContext(base=config.base, experiment_dir=local_experiment, cpus=config.resources_per_trial.cpu,
                               measure_latency=config.measure_latency)
        trainable = tune.with_resources(make_trainable(context), resources)
        began = time.perf_counter()
        if resume:
            if not tune.Tuner.can_restore(experiment_path, storage_filesystem=location.filesystem):
                raise SweepConfigError(f"--resume: no Tune experiment to restore at {location.uri_of(experiment_path)}")
            log.info("resuming the sweep in %s", location.uri_of(experiment_path))
            repair_missing_checkpoints(experiment_path, location.filesystem)
            tuner = tune.Tuner.restore(experiment_path, trainable, resume_unfinished=True, resume_errored=True,
                                       storage_filesystem=location.filesystem)
        else:
            inner = make_searcher(config.searcher.name, prepared.space, config.objectives, prepared.constraints,
                                  seed=config.searcher.seed, **config.searcher.options)
            searcher = SweepSearcher(inner, prepared.space, config.objectives, prepared.constraints,
                                     config.num_samples, prepared.baseline)
            scheduler = make_scheduler(config.scheduler, config.objectives, str(out_dir / SCHEDULER_STATE_FILE))
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=config.num_samples,
                                            max_concurrent_trials=config.max_concurrent, reuse_actors=True,
                                            trial_name_creator=trial_name, trial_dirname_creator=trial_dirname),
                run_config=tune.RunConfig(
                    name=config.name, storage_path=storage, storage_filesystem=location.filesystem,
                    failure_config=tune.FailureConfig(max_failures=config.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    sync_config=tune.SyncConfig(sync_artifacts=local_experiment is None),
                    callbacks=[ProgressLines(config.objectives, prepared.constraints, config.num_samples)],
                    verbose=0,
                ),
            )
        tuner.fit()
        records = collect_trials(experiment_path, location.filesystem)
        for record in records:
            record["checkpoint"] = location.uri_of(record["checkpoint"]) if record["checkpoint"] else None
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    _write_trials(out_dir, records)
    summary = _summary(records, config, time.perf_counter() - began)
    saved = json.loads(saved_path.read_text())
    saved.setdefault("runs", []).append({"resumed": resume, "dashboard": dashboard, **summary})
    saved["summary"] = summary
    _write_json_atomically(saved_path, saved)
    upload_sweep_files(location, out_dir)
    counts = ", ".join(f"{count} {status}" for status, count in summary["status_counts"].items())
    if summary["interrupted"]:
        log.warning("sweep interrupted with %d of %d trials finished (%s); continue it with --resume --out %s",
                    summary["finished"], config.num_samples, counts, out_dir)
    else:
        log.info("sweep done: %s -> %s", counts, out_dir / TRIALS_FILE)
    return records


def repair_missing_checkpoints(experiment_path: str, filesystem: Any = None) -> int:
    """Point unfinished trials whose recorded checkpoint was deleted at the newest one that exists.

    Tune records each trial's latest checkpoint in its experiment snapshot and, with num_to_keep=1,
    deletes the previous checkpoint as soon as a new one is registered; a driver killed between that
    deletion and the next snapshot leaves a snapshot naming a deleted checkpoint, and Tune's restore
    then fails ("does not exist on storage anymore"). Training is deterministic, so resuming from the
    newer checkpoint is as good: it is moved to the recorded name. Returns the number of repairs.
    `filesystem`: the remote storage's pyarrow filesystem, `experiment_path` a path on it (None: local).
    """
    from pyarrow import fs as pafs
    from ray.tune import ExperimentAnalysis

    repaired = 0
    for trial in ExperimentAnalysis(experiment_path, storage_filesystem=filesystem).trials:
        checkpoint = trial.checkpoint
        if trial.status == "TERMINATED" or checkpoint is None:
            continue
        fs, path = filesystem or checkpoint.filesystem, checkpoint.path
        if fs.get_file_info(path).type != pafs.FileType.NotFound:
            continue
        parent = path.rstrip("/").rsplit("/", 1)[0]
        siblings = sorted(info.path for info in fs.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
                          if info.type == pafs.FileType.Directory and info.base_name.startswith("checkpoint_"))
        if siblings:
            _move_folder(fs, siblings[-1], path)
            log.warning("trial %s: its recorded checkpoint %s was deleted after the last snapshot; resuming from the "
                        "newer %s instead", trial.trial_id, path, siblings[-1])
        else:
            fs.create_dir(path)  # empty: the trial starts over
            log.warning("trial %s: no checkpoint left in %s; it starts over", trial.trial_id, parent)
        repaired += 1
    return repaired


def _move_folder(filesystem: Any, source: str, target: str) -> None:
    """Rename a folder; object stores (S3) cannot rename one, so there it is copied, then deleted."""
    from pyarrow import fs as pafs

    if isinstance(filesystem, pafs.LocalFileSystem):
        filesystem.move(source, target)
        return
    pafs.copy_files(source, target, source_filesystem=filesystem, destination_filesystem=filesystem, use_threads=False)
    filesystem.delete_dir(source)


def collect_trials(experiment_path: str, filesystem: Any = None) -> list[dict[str, Any]]:
    """trials.jsonl records from the experiment as Tune saved it (`filesystem`: see repair_missing_checkpoints).

    The saved state, not the Tuner's in-memory one: after an interrupt (Ctrl-C) Tune marks running
    trials terminated in memory but saves them as running, and those are the ones a resume continues.
    """
    from ray.tune import ExperimentAnalysis, ResultGrid

    analysis = ExperimentAnalysis(experiment_path, storage_filesystem=filesystem)
    results = {}
    for result in ResultGrid(analysis):
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name.split("_")[-1]
        results[trial_id] = result
    records = [_record(trial, results.get(trial.trial_id)) for trial in analysis.trials]
    return sorted(records, key=lambda record: record["number"])


def _write_trials(out_dir: Path, records: Sequence[Mapping[str, Any]]) -> None:
    path = out_dir / TRIALS_FILE
    staging = path.with_name(f".{path.name}.tmp{os.getpid()}")
    staging.write_text("".join(json.dumps(record, default=str) + "\n" for record in records))
    os.replace(staging, path)


def _summary(records: Sequence[Mapping[str, Any]], config: SweepConfig, seconds: float) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for record in records:
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    finished = sum(record["status"] != "unfinished" for record in records)
    return {
        "trials": len(records),
        "finished": finished,
        # trials left unfinished, or fewer created than planned (search.py's searchers never run dry)
        "interrupted": bool(counts.get("unfinished")) or len(records) < config.num_samples,
        "status_counts": counts,
        "steps_saved": sum(record["steps_saved"] or 0 for record in records),
        "steps_trained": sum(int(record["metrics"].get("step") or 0) for record in records),
        "wall_seconds": round(seconds, 1),
        "ended_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `tune-distill sweep` options (cli.py adds them to its subcommand)."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", help="configs/sweep_<NAME>.yaml: smoke, cpu or paper")
    source.add_argument("--config", help="a sweep YAML file")
    parser.add_argument("--data", help="folder with train.json (+ train-extra.json) and val.json")
    parser.add_argument("--teacher", help="teacher model folder")
    parser.add_argument("--out", help="sweep folder (default sweeps/<preset or config name>)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted sweep in --out")
    parser.add_argument("--set-base", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="extra base override for every trial; repeatable")
    parser.add_argument("--num-samples", type=int, help="trials in all (baseline included)")
    parser.add_argument("--max-concurrent", type=int, help="trials at once")
    parser.add_argument("--ray-address", help="join this Ray cluster (default: RAY_ADDRESS, else start one here)")
    parser.add_argument("--storage-path", metavar="URI",
                        help="where Tune keeps the experiment and a copy of the sweep's files, e.g. "
                             "s3://bucket/sweeps/cpu (overrides the config's storage_path); with --resume and no "
                             "sweep in --out, the sweep is resumed from there")
    parser.add_argument("--storage-endpoint", metavar="URL",
                        help="S3-compatible endpoint for an s3:// storage path, e.g. http://127.0.0.1:9000 "
                             "(default: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, else AWS)")


def out_folder(args: argparse.Namespace) -> Path:
    """The sweep folder: --out, else sweeps/<preset or config name>."""
    if args.out:
        return Path(args.out)
    return Path("sweeps") / (args.preset or (Path(args.config).stem if args.config else "sweep"))


def command(args: argparse.Namespace) -> int:
    """Run `tune-distill sweep` from parsed arguments; returns the exit status."""
    try:
        if args.preset:
            path = preset_path(args.preset)
        elif args.config:
            path = Path(args.config)
        elif not args.resume:
            raise SweepConfigError("give --preset NAME or --config FILE (or --resume --out DIR)")
        else:
            path = None
        out = out_folder(args)
        config = None
        if args.resume and (out / SWEEP_FILE).is_file():
            if args.set_base or args.data or args.teacher or args.num_samples or args.max_concurrent \
                    or args.storage_path or args.storage_endpoint:
                log.warning("--resume: the sweep's saved settings (%s) are used; --set-base, --data, --teacher, "
                            "--num-samples, --max-concurrent and --storage-* are ignored", out / SWEEP_FILE)
        elif path is not None:
            config = with_overrides(load_sweep_config(path), base=dict(parse_override(t) for t in args.set_base),
                                    data_dir=args.data, teacher=args.teacher, num_samples=args.num_samples,
                                    max_concurrent=args.max_concurrent, storage_path=args.storage_path,
                                    storage_endpoint=args.storage_endpoint)
        elif args.storage_path:  # --resume without the local folder: the sweep's files are kept with the experiment
            fetch_sweep(out.expanduser().resolve(), args.storage_path, args.storage_endpoint or "")
        records = run_sweep(config, out, resume=args.resume, ray_address=args.ray_address)
    except (ConfigError, SearcherError, FileNotFoundError, ConnectionError) as error:
        log.error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts: dict[str, int] = {}
    for record in records:
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    interrupted = json.loads((out / SWEEP_FILE).read_text())["summary"]["interrupted"]
    print(json.dumps({"out": str(out), "trials": len(records), **counts, "interrupted": interrupted}))
    return 1 if interrupted else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tune-distill sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("urllib3", "filelock", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
