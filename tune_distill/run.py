"""One distillation run, end to end: SQuAD 2.0 in, a scored student out. A plain function, no Ray.

`run_distillation(config, out_dir)` wires the stages in their order: data (features, cached) ->
teacher (logits, cached) -> student (built and initialised) -> distill (trained, checkpointed,
resumable) -> evaluate (validation exact/F1 with the no-answer threshold chosen there, size,
latency). Every sweep trial is one call of it; `prepare_inputs` does the shared work (tokenising,
teacher logits) once so that trials only read caches.

The run folder holds: `config.yaml` (resolved), `command.txt`, `environment.json` (versions, git
SHA, device), `history.jsonl` (one line per evaluation), `metrics.json` (final), `checkpoint/`
(for resume) and `model/` (the student with its tokenizer). A folder with a checkpoint resumes only
with the settings it was trained with (`training_settings`: every key that changes the trained
weights or the scores in its history; not the device, threads, cache folder, evaluation batch size,
evaluation/checkpoint cadence or latency settings); the header is written after that check.

Must not know: Ray, searchers, sweeps, reports.

Example (CPU, about a minute):
    tune-distill distill --out runs/tiny --set data.max_train_examples=200 --set data.max_val_examples=100 \
        --set data.max_seq_length=256 --set data.doc_stride=96 --set student.num_hidden_layers=3
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from tune_distill import distill, evaluate, scoring
from tune_distill.checkpoint import CHECKPOINT_NAME, check_settings, find_checkpoint
from tune_distill.claims import write_per_question
from tune_distill.config import ConfigError, DataConfig, RunConfig, flatten, to_dict
from tune_distill.data import FeatureSet, load_features, load_many
from tune_distill.files import check_not_a_run_folder, check_out_folder, write_atomically
from tune_distill.importance import importance_for_student, tune_pruned_student
from tune_distill.runtime import check_qa_config, check_vocabulary, qa_logits, resolve_device
from tune_distill.student import build_student, count_parameters, resolve_shape, save_student
from tune_distill.teacher import (
    TeacherLogits,
    load_teacher,
    parse_scratch_spec,
    scratch_encoder,
    teacher_logits,
    train_wordpiece_tokenizer,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Inputs:
    """What every trial of a sweep shares: tokenizer, features and teacher logits (all cached on disk)."""

    tokenizer: Any
    teacher_config: Any
    train_features: FeatureSet
    val_features: FeatureSet
    teacher_logits: TeacherLogits | None


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def git_sha() -> str | None:
    """The commit of this checkout, with "+dirty" when tracked files differ from it."""
    sha = _git("rev-parse", "HEAD")
    if not sha:
        return None
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{sha}+dirty" if dirty else sha


def environment(device: torch.device | None = None) -> dict[str, Any]:
    """Versions, git SHA, host and device, for the run folder."""
    import importlib.metadata as metadata

    versions = {}
    for package in ("torch", "transformers", "datasets", "pyarrow", "numpy", "ray", "optuna", "hyperopt"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "git_sha": git_sha(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device) if device is not None else None,
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# Keys that change neither the trained weights nor the scores of the history a resumed run keeps.
NOT_TRAINING_SETTINGS = frozenset({
    "data.cache_dir", "teacher.batch_size", "distill.device", "distill.num_threads", "distill.eval_batch_size",
    "distill.eval_every_steps", "distill.checkpoint_every_steps", "evaluate.latency_seq_length",
    "evaluate.latency_batch_sizes", "evaluate.latency_repeats", "evaluate.latency_warmup",
})


def training_settings(config: RunConfig) -> dict[str, Any]:
    """The config's keys a checkpoint is tied to ('section.field': value): all but NOT_TRAINING_SETTINGS.

    student.prune_score / prune_windows / prune_rescale count only where they change the student (a measured
    score or the rescale under init=prune), so checkpoints written before they existed still resume. The prune
    section acts after training (prune/family.py), so none of it does."""
    settings = {key: value for key, value in flatten(to_dict(config)).items()
                if key not in NOT_TRAINING_SETTINGS and not key.startswith("prune.")}
    student = config.student
    if student.init != "prune" or not student.prune_rescale:
        settings.pop("student.prune_rescale", None)
    if student.init != "prune" or (student.prune_score == "magnitude" and not student.prune_rescale):
        settings.pop("student.prune_score", None)
        settings.pop("student.prune_windows", None)
    return settings


def write_run_header(out_dir: Path, config: RunConfig, device: torch.device | None,
                     command: list[str] | None = None) -> None:
    """config.yaml, command.txt and environment.json of a run folder, each replaced atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(out_dir / "config.yaml", yaml.safe_dump(to_dict(config), sort_keys=False))
    write_atomically(out_dir / "command.txt", " ".join(command if command is not None else sys.argv) + "\n")
    write_atomically(out_dir / "environment.json", json.dumps(environment(device), indent=2))


def load_run_features(data: DataConfig, tokenizer: Any) -> tuple[FeatureSet, FeatureSet]:
    """The training and validation windows (cached) of a run's data section, for `tokenizer`."""
    lengths = dict(max_seq_length=data.max_seq_length, doc_stride=data.doc_stride,
                   max_query_length=data.max_query_length)
    train_features = load_features(list(data.train_files), tokenizer, kind="train",
                                   max_examples=data.max_train_examples, cache_dir=data.cache_dir, **lengths)
    val_features = load_features([data.val_file], tokenizer, kind="eval", max_examples=data.max_val_examples,
                                 cache_dir=data.cache_dir, **lengths)
    return train_features, val_features


def prepare_inputs(config: RunConfig, device: torch.device | str = "cpu", teacher_model=None,
                   teacher_logits_needed: bool | None = None) -> Inputs:
    """Tokenise (cached) and compute the teacher's logits (cached) once.

    Teacher logits are computed when `teacher_logits_needed` (default: when distill.alpha_ce > 0);
    a sweep whose trials vary alpha_ce asks for them explicitly.
    """
    from transformers import AutoConfig, AutoTokenizer

    data = config.data
    tokenizer = AutoTokenizer.from_pretrained(config.teacher.path)
    teacher_config = AutoConfig.from_pretrained(config.teacher.path)
    train_features, val_features = load_run_features(data, tokenizer)
    logits = None
    if teacher_logits_needed if teacher_logits_needed is not None else config.distill.alpha_ce > 0:
        logits = teacher_logits(config.teacher.path, train_features, cache_dir=data.cache_dir,
                                batch_size=config.teacher.batch_size, dtype=config.teacher.logits_dtype,
                                device=device, model=teacher_model, pad_token_id=tokenizer.pad_token_id or 0,
                                pad_multiple=config.distill.pad_multiple)
    return Inputs(tokenizer, teacher_config, train_features, val_features, logits)


def make_evaluator(config: RunConfig, val_features: FeatureSet, device: torch.device,
                   pad_token_id: int) -> Callable[[torch.nn.Module, int], dict[str, Any]]:
    """Scores a model on the validation features (the no-answer threshold is chosen there)."""

    def evaluator(model: torch.nn.Module, step: int) -> dict[str, Any]:
        start, end = qa_logits(model, val_features, batch_size=config.distill.eval_batch_size, device=device,
                               precision=config.distill.precision, pad_token_id=pad_token_id, desc="evaluate",
                               pad_multiple=config.distill.pad_multiple)
        start_rows = [start.row(index) for index in range(len(start))]
        end_rows = [end.row(index) for index in range(len(end))]
        best_texts, null_odds = evaluate.postprocess(val_features.examples, val_features, start_rows, end_rows,
                                                     n_best_size=config.evaluate.n_best_size,
                                                     max_answer_length=config.evaluate.max_answer_length)
        metrics = scoring.evaluate_predictions(val_features.examples, best_texts, null_odds, na_threshold=None)
        metrics["_predictions"] = scoring.apply_threshold(best_texts, null_odds, metrics["na_threshold"])
        metrics["_null_odds"] = null_odds
        metrics["_per_question"] = scoring.per_question_scores(val_features.examples, best_texts, null_odds,
                                                               metrics["na_threshold"])
        return metrics

    return evaluator


def _public(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics without the bulky "_"-prefixed entries (predictions, null odds)."""
    return {key: value for key, value in metrics.items() if not key.startswith("_")}


def check_run(config: RunConfig, out_dir: Path, inputs: Inputs | None = None) -> None:
    """What would fail late, checked before anything is written: the output folder can be made, the teacher is
    a BERT question-answering model whose tokenizer fits its vocabulary, the student's shape fits the teacher.
    Errors name the key (ConfigError, a ValueError) or the folder."""
    from transformers import AutoConfig, AutoTokenizer

    check_out_folder(out_dir, "--out", ConfigError)
    if inputs is not None:  # a sweep trial: the driver checked and prepared these
        teacher_config = inputs.teacher_config
    else:
        path = config.teacher.path
        if not Path(path).exists() and (path.startswith((".", "/")) or path.count("/") > 1):
            raise ConfigError(f"teacher.path: {path} does not exist (give a local model directory or a hub id)")
        try:
            teacher_config = AutoConfig.from_pretrained(path)
        except (OSError, ValueError) as error:
            raise ConfigError(f"teacher.path {path}: cannot read its config.json ({error})") from None
        check_qa_config(teacher_config, path, "teacher.path")
        check_vocabulary(AutoTokenizer.from_pretrained(path), teacher_config, path, "teacher.path")
    if getattr(teacher_config, "model_type", "bert") != "bert":
        raise ConfigError(f"teacher.path {config.teacher.path}: a {teacher_config.model_type} model; students are "
                          "built from BERT-architecture teachers (model_type bert, e.g. BERT, MiniLM) only")
    resolve_shape(config.student, teacher_config)


def run_distillation(config: RunConfig, out_dir: str | Path, *, callback: distill.Callback | None = None,
                     resume: bool = True, inputs: Inputs | None = None, resume_from: str | Path | None = None,
                     measure_latency: bool = True, command: list[str] | None = None,
                     on_step: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """Distil one student as `config` says, write the run folder, return the final metrics.

    `on_step(step)` runs after every optimiser step (distill.train); a sweep trial's time limit raises there.
    """
    out_dir = Path(out_dir)
    try:
        device = resolve_device(config.distill.device)
    except ValueError as error:
        raise ConfigError(f"distill.device: {error}") from None
    check_run(config, out_dir, inputs)
    settings = training_settings(config)
    if resume:  # a checkpoint of other settings is refused before anything in the folder changes
        check_settings(Path(resume_from) if resume_from else find_checkpoint(out_dir) or out_dir / CHECKPOINT_NAME,
                       settings)
    began = time.perf_counter()
    needs_teacher_weights = config.student.init != "random"
    teacher_model = None
    if needs_teacher_weights:
        teacher_model, _ = load_teacher(config.teacher.path, "cpu")
    if inputs is None:
        inputs = prepare_inputs(config, device, teacher_model=teacher_model.to(device) if teacher_model else None)
        if teacher_model is not None:
            teacher_model.to("cpu")
    write_run_header(out_dir, config, device, command)  # after the data and the teacher proved usable
    pad_token_id = inputs.tokenizer.pad_token_id or 0

    importance = importance_for_student(config.student, config.teacher.path, teacher_model, inputs.train_features,
                                        teacher_logits=inputs.teacher_logits, cache_dir=config.data.cache_dir,
                                        pad_token_id=pad_token_id,
                                        pad_multiple=config.distill.pad_multiple, device=device) \
        if teacher_model is not None else None
    model = build_student(config.student, inputs.teacher_config, teacher_model, seed=config.distill.seed,
                          importance=importance)
    model.to(device)
    if teacher_model is not None:
        tune_pruned_student(model, config.student, teacher_model, inputs.train_features, pad_token_id=pad_token_id,
                            pad_multiple=config.distill.pad_multiple, device=device)
    del teacher_model
    score = make_evaluator(config, inputs.val_features, device, pad_token_id)
    last_evaluation: dict[str, Any] = {}

    def evaluator(model: torch.nn.Module, step: int) -> dict[str, Any]:
        metrics = {**score(model, step), **count_parameters(model)}
        last_evaluation.clear()
        last_evaluation.update(metrics, _step=step)  # the final one is written out, not recomputed
        write_per_question(out_dir, metrics.pop("_per_question"), step=step, na_threshold=metrics["na_threshold"])
        return metrics

    result = distill.train(model, inputs.train_features, config.distill, teacher=inputs.teacher_logits,
                           out_dir=out_dir, evaluator=evaluator, callback=callback,
                           pad_token_id=pad_token_id, resume=resume, resume_from=resume_from, settings=settings,
                           on_step=on_step, precision_cache=config.data.cache_dir)
    final = last_evaluation if last_evaluation.get("_step") == result.step else score(model, result.step)
    if "_per_question" in final:
        write_per_question(out_dir, final.pop("_per_question"), step=result.step, na_threshold=final["na_threshold"])
    model_dir = save_student(model, out_dir / "model", inputs.tokenizer)
    metrics = _public(final)
    metrics.update(count_parameters(model))
    metrics["bytes_on_disk"] = sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))
    metrics.update(step=result.step, total_steps=result.total_steps, stopped_early=result.stopped_early,
                   train_seconds=result.train_seconds, train_features_per_second=result.features_per_second,
                   wall_seconds=time.perf_counter() - began, train_features=len(inputs.train_features),
                   val_questions=len(inputs.val_features.examples))
    if measure_latency:
        metrics.update(measured_latency(model, config, device))
    write_atomically(out_dir / "metrics.json", json.dumps(metrics, indent=2, default=str))
    if "_predictions" in final:
        write_atomically(out_dir / "predictions.json", json.dumps(final["_predictions"], indent=1))
        write_atomically(out_dir / "null_odds.json", json.dumps(final["_null_odds"], indent=1))
    log.info("run done: exact %.2f f1 %.2f, %s parameters -> %s", metrics.get("exact", float("nan")),
             metrics.get("f1", float("nan")), f"{metrics['parameters']:,}", out_dir)
    return metrics


def measured_latency(model: torch.nn.Module, config: RunConfig, device: torch.device) -> dict[str, Any]:
    """The model's latency at the config's evaluate.latency_* settings and precision (evaluate.measure_latency)."""
    ev = config.evaluate
    return evaluate.measure_latency(model, seq_length=ev.latency_seq_length, batch_sizes=ev.latency_batch_sizes,
                                    repeats=ev.latency_repeats, warmup=ev.latency_warmup, device=device,
                                    precision=config.distill.precision)


def make_teacher(config: RunConfig, encoder: str, out_dir: str | Path,
                 command: list[str] | None = None) -> dict[str, Any]:
    """Fine-tune a pretrained encoder (local dir or hub id) into a QA teacher on the config's data.

    `encoder="scratch:hidden=64,layers=4,..."` instead learns a WordPiece vocabulary from the
    training data and starts from random weights: a tiny teacher for smoke sweeps, offline.

    Gold-span loss only (distill.fine_tune); the no-answer threshold is chosen on the validation
    file. Writes a Hugging Face model directory (weights, config, tokenizer) plus metrics.json; an `out_dir` that is
    or is inside a run's folders (files.check_not_a_run_folder) is refused.
    """
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    out_dir = check_out_folder(check_not_a_run_folder(Path(out_dir), "--out", ConfigError), "--out", ConfigError)
    try:
        device = resolve_device(config.distill.device)
    except ValueError as error:
        raise ConfigError(f"distill.device: {error}") from None
    write_run_header(out_dir, config, device, command)
    data = config.data
    if encoder.startswith("scratch"):
        sizes = parse_scratch_spec(encoder)
        texts = [text for example in load_many(list(data.train_files)) for text in (example.question, example.context)]
        tokenizer = train_wordpiece_tokenizer(dict.fromkeys(texts), vocab_size=sizes["vocab"])
        model = scratch_encoder(tokenizer, hidden_size=sizes["hidden"], num_hidden_layers=sizes["layers"],
                                num_attention_heads=sizes["heads"], intermediate_size=sizes["intermediate"],
                                max_position_embeddings=max(512, data.max_seq_length), seed=config.distill.seed)
    else:
        tokenizer = AutoTokenizer.from_pretrained(encoder)
        torch.manual_seed(config.distill.seed)
        model = AutoModelForQuestionAnswering.from_pretrained(encoder)
    model.to(device)
    train_features, val_features = load_run_features(data, tokenizer)
    pad_token_id = tokenizer.pad_token_id or 0
    score = make_evaluator(config, val_features, device, pad_token_id)
    result = distill.fine_tune(model, train_features, config.distill, out_dir=out_dir / "training",
                               evaluator=score, pad_token_id=pad_token_id)
    save_student(model, out_dir, tokenizer)
    metrics = _public(result.history[-1]) if result.history else _public(score(model, result.step))
    metrics.update(count_parameters(model), train_seconds=result.train_seconds, encoder=encoder)
    write_atomically(out_dir / "teacher_metrics.json", json.dumps(metrics, indent=2, default=str))
    return metrics
