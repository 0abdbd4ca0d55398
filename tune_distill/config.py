"""Run configuration: frozen dataclasses, one YAML file format, one override syntax.

Every stage reads its settings from one section of `RunConfig` (`data`, `teacher`, `student`,
`distill`, `evaluate`). A configuration is built from defaults, then an optional YAML file, then
`--set section.field=value` overrides, in that order; sweep trials use the very same overrides, so a
trial's configuration can always be rebuilt from its parameter dict. Unknown sections or fields,
and values of the wrong type, are errors that name the key.

Must not know: anything about models, data files' contents, Ray or searchers. It is the one module
every stage may import.

Example (CPU, instant):
    tune-distill config --set student.num_hidden_layers=3 --set distill.alpha_ce=0.5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from tune_distill.files import YAML_MAX_BYTES, parse_yaml, read_text_limited


class ConfigError(ValueError):
    """A configuration key or value that cannot be used; the message names the key."""


def setting(default: Any, help: str) -> Any:
    """A dataclass field with a help text (tuple/list defaults are stored as tuples)."""
    if isinstance(default, (list, tuple)):
        value = tuple(default)
        return field(default_factory=lambda: value, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class DataConfig:
    train_files: tuple[str, ...] = setting(
        ("../shared/data/squad2/train.json",),
        "SQuAD 2.0 JSON files to train on (local paths), or 'hub:squad_v2:train' for the HF hub.",
    )
    val_file: str = setting(
        "../shared/data/squad2/val.json",
        "SQuAD 2.0 JSON file used for evaluation and for choosing the no-answer threshold.",
    )
    max_seq_length: int = setting(384, "Tokens per window (question + context + special tokens).")
    doc_stride: int = setting(128, "Tokens of overlap between consecutive context windows.")
    max_query_length: int = setting(64, "Questions are truncated to this many tokens.")
    max_train_examples: int = setting(0, "Use only the first N training questions (0 = all).")
    max_val_examples: int = setting(0, "Use only the first N validation questions (0 = all).")
    cache_dir: str = setting(".cache/tune_distill", "Folder for the feature and teacher-logit caches.")


@dataclass(frozen=True)
class TeacherConfig:
    path: str = setting(
        "../shared/models/teacher-minilm-l6-squad2",
        "Fine-tuned question-answering teacher: a local directory or a hub id.",
    )
    logits_dtype: str = setting("float16", "Dtype of cached teacher logits: float16 or float32.")
    batch_size: int = setting(64, "Batch size when computing the teacher's logits once.")


@dataclass(frozen=True)
class StudentConfig:
    num_hidden_layers: int = setting(3, "Transformer layers in the student.")
    hidden_size: int = setting(0, "Hidden width; 0 = the teacher's.")
    num_attention_heads: int = setting(0, "Attention heads; 0 = the teacher's.")
    intermediate_size: int = setting(0, "Feed-forward width; 0 = the teacher's (or 4 x hidden if widths differ).")
    hidden_dropout_prob: float = setting(0.1, "Dropout on hidden states.")
    attention_probs_dropout_prob: float = setting(0.1, "Dropout on attention probabilities.")
    qa_dropout: float = setting(0.0, "Dropout before the start/end QA head.")
    initializer_range: float = setting(0.02, "Std of the normal initialiser for randomly initialised weights.")
    init: str = setting(
        "teacher",
        "teacher: copy embeddings, chosen layers and QA head from the teacher (widths must match); "
        "prune: like teacher, then keep the num_attention_heads most important heads and intermediate_size "
        "most important feed-forward neurons of each copied layer (see prune_score); random: fresh weights.",
    )
    layer_selection: str = setting(
        "every_other",
        "Which teacher layers to copy: every_other, spread, first, last, or a list like '0,2,4'.",
    )
    prune_score: str = setting(
        "magnitude",
        "How init=prune ranks heads and feed-forward neurons: magnitude (data-free weight norms, the default, as "
        "before), gradient (mean |dLoss/dmask| over training windows, Michel et al. 2019) or fisher (mean "
        "squared gradient, Kwon et al. 2022); the measured ones use the KL to the teacher's logits and are "
        "cached per teacher, layer choice and data (importance.py).",
    )
    prune_windows: int = setting(512, "Training windows the measured prune_score (gradient, fisher) is computed on.")
    prune_rescale: bool = setting(
        False,
        "After init=prune, rescale each copied layer's kept heads and feed-forward neurons (one factor each, "
        "least squares on prune_windows training windows) so the layer reconstructs the unpruned copy's outputs: "
        "Kwon et al. 2022's mask tuning, no retraining (importance.mask_tuning).",
    )


@dataclass(frozen=True)
class DistillConfig:
    learning_rate: float = setting(5e-5, "Peak AdamW learning rate.")
    adam_beta1: float = setting(0.9, "AdamW beta1.")
    adam_beta2: float = setting(0.999, "AdamW beta2.")
    adam_epsilon: float = setting(1e-8, "AdamW epsilon.")
    weight_decay: float = setting(0.01, "AdamW decoupled weight decay (not applied to biases and LayerNorm).")
    alpha_ce: float = setting(0.5, "Weight of the distillation (KL) loss; the gold-span loss gets 1 - alpha_ce.")
    temperature: float = setting(2.0, "Softmax temperature of the distillation loss.")
    warmup_steps: int = setting(0, "Linear warm-up steps (if 0, warmup_ratio is used).")
    warmup_ratio: float = setting(0.1, "Warm-up as a share of all steps, used when warmup_steps is 0.")
    num_train_epochs: float = setting(1.0, "Passes over the training features (fractions allowed).")
    max_steps: int = setting(0, "Stop after this many optimiser steps (0 = from num_train_epochs).")
    train_batch_size: int = setting(32, "Training features per optimiser step.")
    eval_batch_size: int = setting(64, "Evaluation batch size (fixed: it changes speed, not results).")
    max_grad_norm: float = setting(1.0, "Gradient clipping norm (0 = off).")
    eval_every_steps: int = setting(0, "Evaluate every N steps (0 = only at the end).")
    checkpoint_every_steps: int = setting(0, "Checkpoint every N steps (0 = at evaluations and the end).")
    seed: int = setting(0, "Seed for initialisation, dropout and batch order.")
    precision: str = setting("auto", "auto, fp32, bf16, fp16. auto: fp32 on CPU; on a GPU training times fp32, bf16 "
                                     "and fp16 steps of the student once (cached per GPU, shape, batch and length) and "
                                     "keeps the fastest; evaluation takes bf16 where the GPU has it, else fp16.")
    device: str = setting("auto", "auto, cpu, cuda, cuda:N.")
    num_threads: int = setting(0, "CPU threads for torch (0 = leave torch's default).")
    length_bucketing: bool = setting(True, "Group features of similar length into batches (dynamic padding).")
    pad_multiple: int = setting(0, "Batches (training, evaluation, teacher logits) are padded to a multiple of this, "
                                   "capped at the longest window: a run sees at most max_seq_length / N + 1 shapes. "
                                   "0 = auto: 64 on a GPU (each new shape costs a slow first step there), 8 on CPU "
                                   "(no such cost; less padding is less work: bench/results/padding_cpu.md).")


@dataclass(frozen=True)
class EvaluateConfig:
    n_best_size: int = setting(20, "Start and end candidates considered per window.")
    max_answer_length: int = setting(30, "Longest answer span, in tokens.")
    latency_seq_length: int = setting(384, "Sequence length of the latency measurement.")
    latency_batch_sizes: tuple[int, ...] = setting((1, 32), "Batch sizes timed for latency.")
    latency_repeats: int = setting(10, "Timed repeats per batch size (after warm-up); the median is kept.")
    latency_warmup: int = setting(3, "Untimed warm-up calls per batch size.")


@dataclass(frozen=True)
class PruneConfig:
    keep: tuple[float, ...] = setting(
        (),
        "Post-training pruning family (prune/): after training, one pruned member of the trained student per share "
        "listed, each keeping at most that share (0 < keep < 1) of the student's non-embedding parameters (or "
        "FLOPs: prune.by), e.g. [0.8, 0.7, 0.6]; each is scored on validation with its own threshold and recorded "
        "as its own row. Empty: no family.",
    )
    by: str = setting("parameters", "What prune.keep is a share of: parameters (non-embedding) or flops (per token "
                                     "at evaluate.latency_seq_length).")
    windows: int = setting(256, "Training windows the Fisher information of the heads and neurons is measured on.")
    tune_windows: int = setting(0, "Training windows of Kwon et al.'s layer-wise least-squares mask tuning (0 = "
                                   "none, the default: on the cpu preset's students it lowered span F1; "
                                   "configs/sweep_cpu.yaml has the figures).")
    rearrange: bool = setting(True, "Rearrange each layer's mask with the layer's whole Fisher matrix (Kwon et al.'s "
                                    "second step) after the search on its diagonal.")
    recover_steps: int = setting(0, "Optimiser steps of recovery fine-tuning (the run's distillation loss and "
                                    "settings, on its training windows) after pruning; 0 = none, Kwon et al.'s "
                                    "setting.")
    recover_learning_rate: float = setting(0.0, "Peak learning rate of the recovery fine-tuning (0 = the run's "
                                                "distill.learning_rate).")


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Data and features."})
    teacher: TeacherConfig = field(default_factory=TeacherConfig, metadata={"help": "The teacher."})
    student: StudentConfig = field(default_factory=StudentConfig, metadata={"help": "Student shape and init."})
    distill: DistillConfig = field(default_factory=DistillConfig, metadata={"help": "Training."})
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig, metadata={"help": "Evaluation."})
    prune: PruneConfig = field(default_factory=PruneConfig,
                               metadata={"help": "Post-training pruning family of the trained student."})


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "teacher": TeacherConfig,
    "student": StudentConfig,
    "distill": DistillConfig,
    "evaluate": EvaluateConfig,
    "prune": PruneConfig,
}


class Range(typing.NamedTuple):
    """The values a numeric setting may take: from `low` to `high` (None: no bound), an end excluded when open."""

    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False


# Allowed ranges of numeric settings, checked where a value enters (apply_overrides: YAML files, --set, a sweep's
# base and trial parameters; the defaults are in range) and nowhere else. A value outside is refused up front with a
# message naming the key (a batch size of 0 would run no batch and keep all-zero logits; a temperature of 0 divides
# by zero in the loss; NaN or infinite numbers are refused for every float setting by coerce_value).
_UNIT = Range(0.0, 1.0)
_BELOW_ONE = Range(0.0, 1.0, high_open=True)
_POSITIVE = Range(0, low_open=True)
RANGES: dict[str, Range] = {
    "data.max_seq_length": Range(1), "data.doc_stride": Range(1),
    "data.max_query_length": Range(1), "data.max_train_examples": Range(0),
    "data.max_val_examples": Range(0),
    "teacher.batch_size": Range(1),
    "student.num_hidden_layers": Range(1), "student.hidden_size": Range(0),
    "student.num_attention_heads": Range(0), "student.intermediate_size": Range(0),
    "student.hidden_dropout_prob": _UNIT, "student.attention_probs_dropout_prob": _UNIT, "student.qa_dropout": _UNIT,
    "student.initializer_range": Range(0), "student.prune_windows": Range(1),
    "distill.learning_rate": _POSITIVE, "distill.adam_beta1": _BELOW_ONE, "distill.adam_beta2": _BELOW_ONE,
    "distill.adam_epsilon": _POSITIVE, "distill.weight_decay": Range(0), "distill.alpha_ce": _UNIT,
    "distill.temperature": _POSITIVE, "distill.warmup_steps": Range(0), "distill.warmup_ratio": _BELOW_ONE,
    "distill.num_train_epochs": _POSITIVE, "distill.max_steps": Range(0),
    "distill.train_batch_size": Range(1), "distill.eval_batch_size": Range(1),
    "distill.max_grad_norm": Range(0), "distill.eval_every_steps": Range(0),
    "distill.checkpoint_every_steps": Range(0), "distill.seed": Range(0),
    "distill.num_threads": Range(0), "distill.pad_multiple": Range(0),
    "evaluate.n_best_size": Range(1), "evaluate.max_answer_length": Range(1),
    "evaluate.latency_seq_length": Range(1), "evaluate.latency_batch_sizes": Range(1),
    "evaluate.latency_repeats": Range(1), "evaluate.latency_warmup": Range(0),
    "prune.keep": Range(0, 1, low_open=True, high_open=True), "prune.windows": Range(1),
    "prune.tune_windows": Range(0), "prune.recover_steps": Range(0), "prune.recover_learning_rate": Range(0),
}


def check_range(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False, error: type[Exception] = ConfigError) -> Any:
    """`value` (a number, or each of a tuple) if finite and within [low, high] (an end excluded when `low_open` /
    `high_open`), else `error` naming `name` (a config key or a command-line option) and the range expected."""
    for item in value if isinstance(value, (tuple, list)) else (value,):
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise error(f"{name}: expected a number, got {item!r}")
        if item != item or item in (float("inf"), float("-inf")):
            raise error(f"{name}: must be a finite number, got {item!r}")
        below = low is not None and (item <= low if low_open else item < low)
        above = high is not None and (item >= high if high_open else item > high)
        if below or above:
            wanted = " and ".join(part for part in (
                "" if low is None else f"{'>' if low_open else '>='} {low}",
                "" if high is None else f"{'<' if high_open else '<='} {high}") if part)
            raise error(f"{name}: must be {wanted}, got {item!r}")
    return value


def _field_types(section_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(section_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(section_cls)}


def coerce_value(key: str, value: Any, annotation: Any) -> Any:
    """Coerce a YAML/override value to the field's type, or raise ConfigError naming the key."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        (item_type, *_rest) = typing.get_args(annotation)
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [value]
        return tuple(coerce_value(key, item, item_type) for item in items)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        return check_range(key, number)  # NaN and infinities are never a usable setting
    if annotation is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported field type {annotation!r}")  # pragma: no cover


def parse_override(text: str) -> tuple[str, Any]:
    """Split 'section.field=value' into (key, value); the value is read as YAML (1e-5, true, [1,2])."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected section.field=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if key.count(".") != 1:
        raise ConfigError(f"override {text!r}: the key must be section.field, e.g. distill.learning_rate")
    try:
        value = parse_yaml(raw, f"override {text!r}", ConfigError) if raw.strip() else ""
    except ConfigError:  # not YAML, or YAML past the bounds of files.parse_yaml: the text itself
        value = raw
    return key, value


def apply_overrides(config: RunConfig, overrides: Mapping[str, Any]) -> RunConfig:
    """Return a new config with {'section.field': value} applied; unknown keys are errors."""
    changes: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if key.count(".") != 1:
            raise ConfigError(f"{key}: keys are section.field, e.g. distill.learning_rate")
        section, name = key.split(".")
        if section not in SECTIONS:
            raise ConfigError(f"{key}: unknown section {section!r}; known: {', '.join(SECTIONS)}")
        types = _field_types(SECTIONS[section])
        if name not in types:
            raise ConfigError(f"{key}: unknown field {name!r} in section {section!r}; known: {', '.join(types)}")
        changes.setdefault(section, {})[name] = coerce_value(key, value, types[name])
        if key in RANGES:
            low, high, low_open, high_open = RANGES[key]
            check_range(key, changes[section][name], low, high, low_open=low_open, high_open=high_open)
    updated = {
        section: dataclasses.replace(getattr(config, section), **fields) for section, fields in changes.items()
    }
    return dataclasses.replace(config, **updated)


def flatten(mapping: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """Turn {'distill': {'learning_rate': 1e-4}} into {'distill.learning_rate': 1e-4}."""
    flat: dict[str, Any] = {}
    for section, fields in (mapping or {}).items():
        if not isinstance(fields, Mapping):
            raise ConfigError(f"{source}: section {section!r} must be a mapping of field: value")
        for name, value in fields.items():
            flat[f"{section}.{name}"] = value
    return flat


def read_yaml(path: str | Path, what: str = "config file", error: type[Exception] = ConfigError) -> Any:
    """A YAML file's content ({} when empty); a missing file, bad YAML, or one past files.YAML_MAX_BYTES or whose
    aliases expand past files.YAML_MAX_NODES values raises `error` naming the file, before the work blows up."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    text = read_text_limited(path, YAML_MAX_BYTES, f"{path}: {what}", error, " (a YAML file the project reads)")
    return parse_yaml(text, str(path), error) or {}


def load_config(path: str | Path | None = None, overrides: list[str] | Mapping[str, Any] = ()) -> RunConfig:
    """Defaults, then the YAML file at `path` (if any), then overrides ('a.b=1' strings or a dict)."""
    config = RunConfig()
    if path:
        path = Path(path)
        loaded = read_yaml(path, "config file")
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"{path}: expected a mapping of sections ({', '.join(SECTIONS)})")
        try:
            config = apply_overrides(config, flatten(loaded, str(path)))
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
    if isinstance(overrides, Mapping):
        return apply_overrides(config, overrides)
    return apply_overrides(config, dict(parse_override(text) for text in overrides))


def to_dict(config: RunConfig) -> dict[str, dict[str, Any]]:
    """Plain nested dict (tuples become lists), ready for JSON or YAML."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config FILE` and repeated `--set section.field=value`: how every command takes a configuration."""
    parser.add_argument("--config", help="YAML config file (sections data, teacher, student, distill, evaluate, prune)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override one config field; repeatable")


def help_text() -> str:
    """Every key with its default and help, for `tune-distill config --help-keys`."""
    lines = []
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            lines.append(f"{section}.{f.name} = {default!r}\n    {f.metadata.get('help', '')}")
    return "\n".join(lines)
