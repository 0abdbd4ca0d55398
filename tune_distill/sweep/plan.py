"""What each trial runs: the search space, the baseline and a trial's RunConfig.

What it does: `teacher_context` names the teacher's shape for the space's expressions
({teacher.hidden_size}, ...); `load_sweep_space` reads the space file with the sweep's
`space_overrides` and checks it against the base overrides; `baseline_overrides` builds trial 0, the
DistilBERT-like baseline (half the teacher's layers, every other one, teacher width); `trial_run_config`
turns base + a trial's overrides into its RunConfig (seed = base seed + trial number, torch threads =
the trial's CPUs); `absolute_base` makes the base's local paths absolute and sets the shared cache.

What it must not know: Ray, schedulers, how a run trains, or how the searcher chooses parameters.

Example (CPU, instant):
    python -c "from tune_distill.sweep.plan import trial_run_config; \
print(trial_run_config({'distill.seed': 7}, {'student.num_hidden_layers': 1}, 5).distill.seed)"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from tune_distill.config import ConfigError, RunConfig, apply_overrides, read_yaml
from tune_distill.search import SearchSpace, SearchSpaceError, parse_space
from tune_distill.sweep.config import SweepConfig, SweepConfigError


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


def no_answer_score(examples: Sequence[Any]) -> float:
    """Exact (= F1) of answering "no answer" everywhere: 100 x the share of unanswerable questions."""
    if not examples:
        raise SweepConfigError("data.val_file: no validation questions")
    return 100.0 * sum(bool(example.is_impossible) for example in examples) / len(examples)
