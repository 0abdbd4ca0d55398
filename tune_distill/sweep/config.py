"""The sweep's configuration: schema, parsing, checks and presets.

What it does: `SweepConfig` (frozen dataclasses, loaded from `configs/sweep_*.yaml` presets or any YAML
file) holds the search space, the base overrides every trial shares, objectives (default: exact max,
parameters min), constraints (default `exact >= no_answer`, where `no_answer` is the validation
split's score for answering "no answer" everywhere), the searcher, trial count and concurrency,
resources per trial (fractional GPUs allowed), the early-stopping scheduler, retries and storage.
`sweep_config_from_dict` builds and checks one (unknown keys and bad values are errors naming the
source and the key; values are read with config.py's `coerce_value`, the one coercion), `load_sweep_config`
reads a file, `preset_path` finds a preset, `with_overrides` applies the command line's changes and
`sweep_config_to_dict` writes the dict that reads back (sweep.json keeps it).

What it must not know: Ray, trials, models or data files' contents (it checks that the storage
location is well formed, not that it answers).

Example (CPU, instant):
    python -c "from tune_distill.sweep.config import load_sweep_config, preset_path; \
print(load_sweep_config(preset_path('smoke')).scheduler)"
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from tune_distill import remote
from tune_distill.config import ConfigError, RunConfig, apply_overrides, coerce_value, flatten, read_yaml, setting
from tune_distill.search import DEFAULT_SEARCHER, SEARCHER_NAMES, Constraint, Objective
from tune_distill.search.objectives import DEFAULT_OBJECTIVES
from tune_distill.sweep.ranking import RANKING_RULES

CONFIGS_DIR = Path(__file__).resolve().parent.parent.parent / "configs"
# The benchmarks' presets and the cpu preset's earlier versions (kept for replays and reruns).
BENCH_CONFIGS_DIR = CONFIGS_DIR.parent / "bench" / "configs"
SCHEDULERS = ("pareto_sh", "asha", "fifo")
WITHIN_FRONT = tuple(RANKING_RULES)  # pareto_sh's order within a front (sweep/ranking.py)
RUNG_RULES = ("beyond_error", "plain")  # pareto_sh's rung decision (sweep/schedulers.py)
NO_ANSWER = "no_answer"
# Metrics present in every evaluation report (the rest, e.g. latency, only in the final one).
INTERMEDIATE_METRICS = ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1", "parameters",
                        "non_embedding_parameters", "HasAns_exact_always_answer", "HasAns_f1_always_answer")
FINAL_METRICS = INTERMEDIATE_METRICS + ("bytes_on_disk", "train_seconds", "wall_seconds")
_LATENCY_METRIC = re.compile(r"^latency_ms_b(\d+)$")
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=)\s*(\S+)\s*$")


class SweepConfigError(ConfigError):
    """A sweep configuration that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class SearcherSettings:
    name: str = setting(DEFAULT_SEARCHER, f"Searcher of tune_distill.search: one of {', '.join(SEARCHER_NAMES)}.")
    seed: int = setting(0, "Seed of the searcher (trial seeds are distill.seed + trial number).")
    options: dict = field(default_factory=dict,
                          metadata={"help": "Keyword options of the searcher (e.g. n_startup_trials)."})


@dataclass(frozen=True)
class SchedulerSettings:
    name: str = setting("fifo", "pareto_sh (Pareto successive halving), asha (Ray's ASHA on exact) or fifo (none).")
    rungs: tuple[int, ...] = setting((), "pareto_sh: optimiser steps at which trials are compared (evaluations must "
                                         "fall on them).")
    reduction_factor: float = setting(3.0, "Keep the best 1/reduction_factor of the trials seen at a rung.")
    grace_period: int = setting(0, "Steps before the first decision: asha's first rung; pareto_sh's first rung "
                                   "when no rungs are given (then rungs grow by reduction_factor up to max_t).")
    max_t: int = setting(0, "Largest step considered by asha / generated pareto_sh rungs (0 = unbounded for asha).")
    within_front: str = setting("sweep_hypervolume", "pareto_sh: order within a front of the non-dominated sorting: "
                                                     "'sweep_hypervolume' (exclusive hypervolume contribution against "
                                                     "the report's reference point: least accuracy, 1.1 x largest "
                                                     "size), 'hypervolume' (the same against the rung's nadir pushed "
                                                     "out by 10% of the spread; the order before issue 15) or "
                                                     "'crowding' (NSGA-II crowding distance).")
    rung_rule: str = setting("beyond_error",
                             "pareto_sh: how a rung decides. 'beyond_error': a trial is dominated only beyond its "
                             "measured error (better on a measured objective by more than noise_z standard errors of "
                             "the difference, from the results' <metric>_se; results without one are compared "
                             "plainly), and the baseline is a yardstick that dominates others, is not ranked, and "
                             "holds one of the ceil(n / reduction_factor) kept slots; 'plain': the rule before issue "
                             "15 (plain Pareto dominance, the baseline ranked as a competitor; with within_front "
                             "hypervolume, the whole rule of old). Measured in "
                             "results/archive/early-stopping-noise.md.")
    noise_z: float = setting(2.0, "pareto_sh with rung_rule beyond_error: how many standard errors of a difference "
                                  "make it real, 0 to 10 (0 = any difference on a measured objective). 2 was chosen "
                                  "by replaying recorded curves (results/archive/early-stopping-noise.md).")
    rung_fill: int = setting(0, "pareto_sh: a rung decides only once it holds this many results (0 = each result is "
                                "decided on arrival); earlier arrivals are paused at their checkpoint and ranked as if "
                                "they had arrived last. Measured in results/early-stopping-20-workers.md.")


@dataclass(frozen=True)
class Resources:
    cpu: float = setting(1.0, "CPU cores per trial (torch threads follow it unless distill.num_threads is set).")
    gpu: float = setting(0.0, "GPUs per trial; fractions let small students share a GPU (e.g. 0.5).")


@dataclass(frozen=True)
class SimulateSettings:
    enabled: bool = setting(False, "Simulate the trials (sweep/simulated.py): the real driver, searcher, scheduler, "
                                   "records and storage, on trials that report a surrogate's learning curves at the "
                                   "times a measured device would take, without training. For planning a sweep.")
    surrogate: str = setting("configs/simulate/surrogate.json", "The fitted surrogate (tune-distill simulate-fit); "
                                                                 "relative to the current directory.")
    device: str = setting("h200", "The measured device whose step and evaluation times the trials take "
                                  "(simulate/timing.py: h200, cpu).")
    time_scale: float = setting(60.0, "Simulated seconds per real second (60: an hour of GPU time in a minute).")
    train_windows: int = setting(0, "Training windows in one epoch, which sets steps per epoch (0 = one per training "
                                    "question, a lower bound: `tune-distill features` prints the true count).")
    val_windows: int = setting(0, "Validation windows an evaluation scores (0 = one per validation question).")
    noise: float = setting(0.0, "A fresh normal draw at each evaluation's standard error, times this (0 = the "
                                "recorded curves' own noise; simulate/surrogate.py says why).")
    gpus: int = setting(0, "Logical GPUs of a Ray started here for the simulation (0 = max_concurrent x "
                           "resources_per_trial.gpu); a joined cluster's own resources are used as they are.")


@dataclass(frozen=True)
class HeldApartSettings:
    articles: int = setting(0, "Validation articles (distinct data[].title of base data.val_file) kept apart for "
                               "confirmation: chosen by a seeded permutation of the titles, never by a score, and "
                               "written to <sweep>/data/validation-held-apart.json; the rest, "
                               "<sweep>/data/validation-select.json, is every trial's data.val_file (what the sweep "
                               "chooses on; data.max_val_examples applies to it). When the sweep ends, the students "
                               "the findings name are re-scored on the held-apart articles (<sweep>/held-apart/, "
                               "`tune-distill confirm --sweep S --held-apart`). 0 = none kept apart.")
    seed: int = setting(0, "Seed of the permutation of the validation titles that chooses the held-apart articles.")


@dataclass(frozen=True)
class SweepConfig:
    space: str = setting("", "Search-space YAML (see search.load_space); relative to the current directory.")
    # (dict settings: dataclasses.field, as config.setting takes no mapping defaults)
    space_overrides: dict = field(default_factory=dict, metadata={
        "help": "Changes to the space: {parameters: {name: {field: value} | null}, derived: {key: expr | null}, "
                "fixed: {key: value | null}}."})
    base: dict = field(default_factory=dict, metadata={
        "help": "RunConfig overrides for every trial, 'section.field: value' (the --set syntax)."})
    objectives: tuple = setting(DEFAULT_OBJECTIVES, "Metrics to optimise: {name: max|min} in order (exact, f1, "
                                                    "parameters, latency_ms_b1...).")
    constraints: tuple = setting(("exact >= no_answer",), "Bounds 'metric >= x' or 'metric <= x'; x is a number "
                                                          "or no_answer (100 x share of unanswerable validation "
                                                          "questions).")
    searcher: SearcherSettings = setting(SearcherSettings(), "The searcher.")
    num_samples: int = setting(24, "Trials in all (the baseline included).")
    max_concurrent: int = setting(2, "Trials running at once.")
    resources_per_trial: Resources = setting(Resources(), "Resources of one trial.")
    scheduler: SchedulerSettings = setting(SchedulerSettings(), "Early stopping.")
    max_failures: int = setting(1, "Retries of a trial that raised (then it is recorded as failed).")
    trial_timeout_s: float = setting(0.0, "Time limit of one attempt of a trial, in seconds (0 = none), checked after "
                                          "every optimiser step and evaluation; an attempt that hangs anywhere is "
                                          "ended by a watchdog shortly after the limit (a tenth of it, 1 to 30 s). "
                                          "Either way it counts as a failure (retried from its checkpoint up to "
                                          "max_failures, then recorded as failed with 'timed out after T s at step "
                                          "S').")
    snapshot_period_s: float = setting(60.0, "Seconds between two snapshots of the Tune experiment (its state and the "
                                             "searcher's, copied to storage_path with every trial's files), what a "
                                             "resume starts from: a killed driver's running trials redo at most "
                                             "this much. Tune's own choice (every 10 s or more) made the snapshots "
                                             "of a 480-trial sweep the driver's main work (issue 22); 0 = Tune's.")
    storage_path: str = setting("", "Where Tune keeps the experiment: a local folder or a pyarrow URI such as "
                                    "s3://bucket/sweeps/cpu (empty = the sweep's output folder). A remote one also "
                                    "gets a copy of the sweep's files (sweep.json, trials.jsonl, results.*), so it "
                                    "can be resumed and read from there.")
    storage_endpoint: str = setting("", "S3-compatible endpoint for an s3:// storage_path, e.g. http://127.0.0.1:9000 "
                                        "(MinIO, moto); empty = AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, else AWS. "
                                        "Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or "
                                        "~/.aws, the region from AWS_REGION/AWS_DEFAULT_REGION.")
    forward_aws_credentials: bool = setting(False, "Pass the driver's AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / "
                                                   "AWS_SESSION_TOKEN to the workers of a joined cluster. Off: nodes "
                                                   "use their own (instance role, IRSA, ~/.aws). Risky: Ray writes "
                                                   "them in plain text into every node's logs and its job API returns "
                                                   "them.")
    name: str = setting("tune", "Name of the Tune experiment folder under storage_path.")
    baseline: bool = setting(True, "Trial 0 is the DistilBERT-like baseline: half the teacher's layers (every other), "
                                   "teacher width, init=teacher, default distillation settings.")
    baseline_settings: dict = field(default_factory=dict, metadata={
        "help": "The baseline's own training knobs, 'section.field: value' (e.g. distill.learning_rate: 2.0e-4); "
                "its shape keys are not allowed here."})
    measure_latency: bool = setting(True, "Time each final student (needed for latency objectives).")
    simulate: SimulateSettings = setting(SimulateSettings(), "A simulated sweep, for planning one (off by default).")
    held_apart: HeldApartSettings = setting(HeldApartSettings(), "Validation articles kept apart to confirm the "
                                                                 "chosen students on (off by default).")
    description: str = setting("", "Free text.")


_SECTIONS: dict[str, type] = {"searcher": SearcherSettings, "scheduler": SchedulerSettings,
                              "resources_per_trial": Resources, "simulate": SimulateSettings,
                              "held_apart": HeldApartSettings}


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
        values[key] = _setting(cls, key, value, f"{where}.{key}")
    return cls(**values)


def _reject_unknown(raw: Mapping[str, Any], cls: type, prefix: str) -> None:
    """A clear error for the first key of `raw` that `cls` has no field for (`prefix` + key names it)."""
    known = _fields(cls)
    unknown = [key for key in raw if key not in known]
    if unknown:
        raise SweepConfigError(f"{prefix}{unknown[0]}: unknown key; known: {', '.join(known)}")


def _setting(cls: type, key: str, value: Any, where: str) -> Any:
    """One plain setting of `cls`, read by config.coerce_value (the one coercion) from its annotation.

    What coerce_value does not cover is handled here: a mapping setting (searcher.options, space_overrides),
    and a key written without a value (YAML null), which empties a text, list or mapping setting.
    """
    annotation = typing.get_type_hints(cls)[key]
    kind = typing.get_origin(annotation) or annotation
    if value is None and kind in (str, tuple, dict):
        return kind()
    if kind is dict:
        if not isinstance(value, Mapping):
            raise SweepConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    try:
        return coerce_value(where, value, annotation)
    except ConfigError as error:
        raise SweepConfigError(str(error)) from None


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
            values[key] = _setting(SweepConfig, key, raw, where)
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
    if not math.isfinite(config.snapshot_period_s) or config.snapshot_period_s < 0:
        raise SweepConfigError(f"{source}: snapshot_period_s: must be a number of seconds >= 0 (0 = Tune's own), "
                               f"got {config.snapshot_period_s}")
    if not math.isfinite(config.trial_timeout_s) or config.trial_timeout_s < 0:
        raise SweepConfigError(f"{source}: trial_timeout_s: must be a number of seconds >= 0 (0 = no limit), "
                               f"got {config.trial_timeout_s}")
    resources = config.resources_per_trial
    if resources.cpu < 0 or resources.gpu < 0 or resources.cpu + resources.gpu <= 0:
        raise SweepConfigError(f"{source}: resources_per_trial: cpu and gpu must be >= 0 and not both 0")
    if resources.gpu > 1 and resources.gpu != int(resources.gpu):
        raise SweepConfigError(f"{source}: resources_per_trial.gpu: fractions are for sharing one GPU (< 1), "
                               f"got {resources.gpu}")
    for key, value in config.searcher.options.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise SweepConfigError(f"{source}: searcher.options.{key}: must be a finite number, got {value!r}")
    if config.searcher.name not in SEARCHER_NAMES:
        raise SweepConfigError(f"{source}: searcher.name: unknown searcher {config.searcher.name!r}; "
                               f"known: {', '.join(SEARCHER_NAMES)}")
    _check_simulate(config.simulate, source)
    _check_held_apart(config, source)
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
    if scheduler.rung_rule not in RUNG_RULES:
        raise SweepConfigError(f"{source}: scheduler.rung_rule: expected one of {', '.join(RUNG_RULES)}, "
                               f"got {scheduler.rung_rule!r}")
    if isinstance(scheduler.noise_z, bool) or not isinstance(scheduler.noise_z, (int, float)) \
            or not math.isfinite(scheduler.noise_z) or not 0 <= scheduler.noise_z <= 10:
        raise SweepConfigError(f"{source}: scheduler.noise_z: must be a number of standard errors in [0, 10], "
                               f"got {scheduler.noise_z!r}")
    if scheduler.grace_period < 0 or scheduler.max_t < 0:
        raise SweepConfigError(f"{source}: scheduler: grace_period and max_t must be >= 0")
    if isinstance(scheduler.rung_fill, bool) or not isinstance(scheduler.rung_fill, int) or scheduler.rung_fill < 0:
        raise SweepConfigError(f"{source}: scheduler.rung_fill: must be an integer >= 0 (0 = decide on arrival), "
                               f"got {scheduler.rung_fill!r}")
    if scheduler.rung_fill and scheduler.name != "pareto_sh":
        raise SweepConfigError(f"{source}: scheduler.rung_fill: a pareto_sh setting (a rung waits for that many "
                               f"results); scheduler {scheduler.name} has no rungs that wait: remove it or set 0")
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
    remote.check_location(config.storage_path, config.storage_endpoint, SweepConfigError, source)


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
    """configs/sweep_<name>.yaml of the current directory or of this checkout, else bench/configs/sweep_<name>.yaml
    (the benchmarks' presets and the cpu preset's earlier versions: es, es_teacher, es_learners, cpu_v3, cpu_v4)."""
    folders = (Path("configs"), CONFIGS_DIR, BENCH_CONFIGS_DIR)
    for folder in folders:
        candidate = folder / f"sweep_{name}.yaml"
        if candidate.is_file():
            return candidate
    available = sorted({p.stem[len("sweep_"):] for folder in folders if folder.is_dir()
                        for p in folder.glob("sweep_*.yaml")})
    raise SweepConfigError(f"preset {name!r}: no configs/sweep_{name}.yaml (nor bench/configs/sweep_{name}.yaml); "
                           f"available: {', '.join(available) or 'none'}")


def sweep_config_to_dict(config: SweepConfig) -> dict[str, Any]:
    """Plain dict (YAML/JSON-ready) that `sweep_config_from_dict` reads back."""
    data = dataclasses.asdict(config)
    data["objectives"] = {o.name: o.direction for o in config.objectives}
    data["constraints"] = list(config.constraints)
    data["scheduler"]["rungs"] = list(config.scheduler.rungs)
    return json.loads(json.dumps(data, default=str))


def _check_simulate(simulate: SimulateSettings, source: str) -> None:
    from tune_distill.simulate.timing import DEVICES

    if simulate.device not in DEVICES:
        raise SweepConfigError(f"{source}: simulate.device: expected one of {', '.join(sorted(DEVICES))} (measured "
                               f"profiles), got {simulate.device!r}")
    if not math.isfinite(simulate.time_scale) or simulate.time_scale <= 0:
        raise SweepConfigError(f"{source}: simulate.time_scale: must be a number > 0, got {simulate.time_scale}")
    for name in ("train_windows", "val_windows", "gpus"):
        if getattr(simulate, name) < 0:
            raise SweepConfigError(f"{source}: simulate.{name}: must be >= 0, got {getattr(simulate, name)}")
    if not math.isfinite(simulate.noise) or simulate.noise < 0:
        raise SweepConfigError(f"{source}: simulate.noise: must be >= 0, got {simulate.noise}")


def _check_held_apart(config: SweepConfig, source: str) -> None:
    """held_apart: counts, and a validation file that can be split by article (a JSON file, not a hub split); its
    articles are counted when the sweep is planned (sweep/held_apart.py)."""
    held = config.held_apart
    for name in ("articles", "seed"):
        value = getattr(held, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SweepConfigError(f"{source}: held_apart.{name}: must be an integer >= 0, got {value!r}")
    val_file = apply_overrides(RunConfig(), config.base).data.val_file
    if held.articles and val_file.startswith("hub:"):
        raise SweepConfigError(f"{source}: held_apart.articles: base data.val_file {val_file} is a hub split; "
                               "held-apart articles need a SQuAD 2.0 JSON file to split by article")


def with_overrides(config: SweepConfig, *, base: Mapping[str, Any] | None = None, data_dir: str | None = None,
                   teacher: str | None = None, num_samples: int | None = None,
                   max_concurrent: int | None = None, storage_path: str | None = None,
                   storage_endpoint: str | None = None, forward_aws_credentials: bool | None = None,
                   simulate: bool = False, time_scale: float | None = None) -> SweepConfig:
    """The CLI's changes: extra base overrides, a data folder, a teacher, trial counts, storage, a simulation."""
    merged = dict(config.base)
    if data_dir:
        folder = Path(data_dir)
        val = folder / "val.json"
        extra = folder / "train-extra.json"
        train = [folder / "train.json"] + ([extra] if extra.exists() else [])
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
    if forward_aws_credentials is not None:
        changes["forward_aws_credentials"] = forward_aws_credentials
    if simulate or time_scale is not None:
        changes["simulate"] = dataclasses.replace(config.simulate, enabled=config.simulate.enabled or simulate,
                                                  **({} if time_scale is None else {"time_scale": time_scale}))
    updated = dataclasses.replace(config, **changes)
    check_sweep_config(updated, "command line")
    return updated
