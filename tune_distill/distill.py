"""Distillation: train a student on SQuAD 2.0 features against cached teacher logits.

Loss (per batch, start and end averaged):

    alpha_ce * T^2 * KL(softmax(teacher / T) || softmax(student / T))
      + (1 - alpha_ce) * cross-entropy(student, gold start/end)

Padding positions are masked out of both terms. AdamW takes betas, epsilon and weight decay from
the config (no decay on biases and LayerNorm); the learning rate warms up linearly and then decays
linearly to zero; gradients are clipped; bf16/fp16 autocast where it pays (precision auto: measured
once per GPU and student shape, runtime.training_precision); batches are length-bucketed and padded
to the smallest of a few fixed widths (distill.pad_multiple). Every `eval_every_steps` an `evaluator`
scores the model and a `callback` receives the metrics (the sweep reports them to Ray; returning True
stops the run).
Checkpoints hold model, optimiser, scheduler, scaler, every RNG state and the step, written
atomically (checkpoint.py: loaded without running code, checked against the run's settings, recovered
after a kill), so a killed run resumes where it stopped and ends with the same weights as a run that
was never interrupted; history.jsonl is cut back to the resumed step. The batch order is a pure
function of (seed, epoch), so resuming replays it.

`fine_tune` is the same loop with alpha_ce = 0 and no teacher: it turns a pretrained encoder into
a teacher (`tune-distill teacher`).

Must not know: how features are made, how metrics are computed (an evaluator is passed in), Ray,
searchers.

Example (CPU, about a minute; the full run is `tune-distill distill`, see run.py):
    tune-distill distill --set data.max_train_examples=200 --set data.max_val_examples=100 \
        --set data.max_seq_length=256 --set data.doc_stride=96 --set student.num_hidden_layers=3
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from tune_distill.checkpoint import (
    CHECKPOINT_NAME,
    append_history,
    check_settings,
    find_checkpoint,
    load_checkpoint,
    reconcile_history,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from tune_distill.config import DistillConfig
from tune_distill.data import (
    FeatureSet,
    PackedColumn,
    bucketed_batches,
    collate,
    model_inputs,
    pad_widths,
    padded_width,
)
from tune_distill.progress import Progress
from tune_distill.runtime import autocast_dtype, resolve_pad_multiple, to_device, training_precision
from tune_distill.teacher import TeacherLogits

log = logging.getLogger(__name__)

MASKED_LOGIT = -1.0e4  # logit given to padding positions (both models), so they carry no probability

Evaluator = Callable[[torch.nn.Module, int], dict[str, Any]]
Callback = Callable[[dict[str, Any]], Any]


class TrainingDiverged(FloatingPointError, ValueError):
    """The loss became NaN or infinite: a one-line error naming the step and the settings to change."""


def distillation_loss(
    student_start: torch.Tensor,  # (batch, seq_len)
    student_end: torch.Tensor,  # (batch, seq_len)
    teacher_start: torch.Tensor | None,  # (batch, seq_len) or None when alpha_ce = 0
    teacher_end: torch.Tensor | None,  # (batch, seq_len)
    start_positions: torch.Tensor,  # (batch,)
    end_positions: torch.Tensor,  # (batch,)
    attention_mask: torch.Tensor,  # (batch, seq_len)
    alpha_ce: float,
    temperature: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts ('kl' is the unscaled KL, 'ce' the gold-span cross-entropy).

    `alpha_ce` in [0, 1] and `temperature` > 0 are not checked again here: the config's values were checked where
    they entered (config.RANGES); the other callers pass constants (importance.py, bench/distill_throughput.py)."""
    padding = attention_mask == 0  # (batch, seq_len)
    student_start = student_start.float().masked_fill(padding, MASKED_LOGIT)  # (batch, seq_len)
    student_end = student_end.float().masked_fill(padding, MASKED_LOGIT)  # (batch, seq_len)
    cross_entropy = (F.cross_entropy(student_start, start_positions) + F.cross_entropy(student_end, end_positions)) / 2
    parts = {"ce": float(cross_entropy.detach())}
    if alpha_ce == 0.0:
        parts["kl"] = 0.0
        return cross_entropy, parts
    if teacher_start is None or teacher_end is None:
        raise ValueError("distill.alpha_ce > 0 needs teacher logits")
    teacher_start = teacher_start.float().masked_fill(padding, MASKED_LOGIT)  # (batch, seq_len)
    teacher_end = teacher_end.float().masked_fill(padding, MASKED_LOGIT)  # (batch, seq_len)

    def kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return F.kl_div(
            F.log_softmax(student_logits / temperature, dim=-1),  # (batch, seq_len)
            F.log_softmax(teacher_logits / temperature, dim=-1),  # (batch, seq_len)
            log_target=True,
            reduction="batchmean",
        )

    kl_divergence = (kl(student_start, teacher_start) + kl(student_end, teacher_end)) / 2
    parts["kl"] = float(kl_divergence.detach())
    loss = alpha_ce * temperature**2 * kl_divergence + (1.0 - alpha_ce) * cross_entropy
    return loss, parts


def make_optimizer(model: torch.nn.Module, config: DistillConfig) -> torch.optim.AdamW:
    """AdamW with the config's betas, epsilon and weight decay; no decay for biases and LayerNorm weights."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or "LayerNorm" in name or name.endswith(".bias") else decay).append(parameter)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_epsilon,
    )


def warmup_steps(config: DistillConfig, total_steps: int) -> int:
    return config.warmup_steps if config.warmup_steps > 0 else int(config.warmup_ratio * total_steps)


def make_scheduler(optimizer: torch.optim.Optimizer, warmup: int,
                   total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 to the peak over `warmup` steps, then linear decay to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclasses.dataclass
class TrainResult:
    step: int
    total_steps: int
    stopped_early: bool
    history: list[dict[str, Any]]
    train_seconds: float
    features_per_second: float
    precision: str = "fp32"  # what the run trained in ("auto" resolved)


@dataclasses.dataclass
class _Run:
    """What the training loop carries from step to step (setup fills it; a resumed checkpoint restores it)."""

    model: torch.nn.Module
    config: DistillConfig
    teacher: TeacherLogits | None
    out_dir: Path
    device: torch.device
    columns: dict[str, PackedColumn]  # input_ids, token_type_ids, attention_mask (data.model_inputs)
    starts: np.ndarray  # (features,) gold start positions
    ends: np.ndarray  # (features,) gold end positions
    lengths: np.ndarray  # (features,) tokens per feature
    widths: tuple[int, ...]  # the run's few padded batch widths (data.pad_widths)
    pad_token_id: int
    precision: str
    cast: torch.dtype | None
    scaler: torch.amp.GradScaler | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    batches_per_epoch: int
    total_steps: int
    step: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    features_seen: int = 0
    running_loss: float = 0.0
    running_count: int = 0
    epoch_cache: dict[int, list[np.ndarray]] = dataclasses.field(default_factory=dict)


def train(
    model: torch.nn.Module,
    features: FeatureSet,
    config: DistillConfig,
    *,
    teacher: TeacherLogits | None,
    out_dir: str | Path,
    evaluator: Evaluator | None = None,
    callback: Callback | None = None,
    pad_token_id: int = 0,
    resume: bool = True,
    resume_from: str | Path | None = None,
    settings: dict[str, Any] | None = None,
    on_step: Callable[[int], Any] | None = None,
    precision_cache: str | Path | None = None,
) -> TrainResult:
    """Train `model` in place. Checkpoints go to out_dir/checkpoint; resumes from it when present.

    `settings`: what the run was configured with (run.training_settings), recorded in every checkpoint;
    resuming from one recorded with other settings raises CheckpointError. `on_step(step)` is called
    after every optimiser step (a trial's time limit raises there). `precision_cache`: the folder
    where distill.precision=auto keeps its measured choice (runtime.training_precision). The config's values
    are checked where they enter (config.RANGES, applied by config.apply_overrides), not again here.
    """
    if config.alpha_ce > 0 and teacher is None:
        raise ValueError("distill.alpha_ce > 0 needs cached teacher logits (teacher=None given)")
    run = _setup(model, features, config, teacher, Path(out_dir), pad_token_id, precision_cache)
    _start_or_resume(run, resume, resume_from, settings)
    eval_every = config.eval_every_steps
    checkpoint_every = config.checkpoint_every_steps or eval_every
    model.train()
    began = time.perf_counter()
    stopped_early = False
    progress = Progress(run.total_steps, "distill", unit="step", initial=run.step)
    while run.step < run.total_steps:
        parts = _train_step(run)
        progress.update(1)
        progress.set_postfix(loss=f"{run.running_loss / run.running_count:.3f}")
        if on_step is not None:
            on_step(run.step)
        at_eval = (eval_every and run.step % eval_every == 0) or run.step == run.total_steps
        at_checkpoint = (checkpoint_every and run.step % checkpoint_every == 0) or run.step == run.total_steps
        if at_eval:
            _evaluate(run, parts, evaluator)
        if at_checkpoint:
            _save(run, settings)
        if at_eval and callback is not None and callback(run.history[-1]) is True:
            stopped_early = run.step < run.total_steps
            break
    progress.close()
    seconds = time.perf_counter() - began
    model.eval()
    return TrainResult(step=run.step, total_steps=run.total_steps, stopped_early=stopped_early, history=run.history,
                       train_seconds=seconds,
                       features_per_second=run.features_seen / seconds if seconds > 0 else 0.0,
                       precision=run.precision)


def _setup(model: torch.nn.Module, features: FeatureSet, config: DistillConfig, teacher: TeacherLogits | None,
           out_dir: Path, pad_token_id: int, precision_cache: str | Path | None) -> _Run:
    """The run's data columns, batch widths, precision, optimiser and schedule (nothing seeded or restored yet)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    device = next(model.parameters()).device
    columns = model_inputs(features)
    starts = np.asarray(features.table.column("start_positions").to_numpy(), dtype=np.int64)  # (features,)
    ends = np.asarray(features.table.column("end_positions").to_numpy(), dtype=np.int64)  # (features,)
    lengths = columns["input_ids"].lengths  # (features,)
    widths = pad_widths(lengths, resolve_pad_multiple(config.pad_multiple, device))  # the run's few batch shapes
    precision = training_precision(config.precision, model, device, batch_size=config.train_batch_size,
                                   width=padded_width(int(np.median(lengths)), widths), cache_dir=precision_cache)
    cast = autocast_dtype(precision, device)
    scaler = torch.amp.GradScaler("cuda") if cast == torch.float16 else None
    batches_per_epoch = math.ceil(len(lengths) / config.train_batch_size)
    total_steps = config.max_steps or max(1, math.ceil(config.num_train_epochs * batches_per_epoch))
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, warmup_steps(config, total_steps), total_steps)
    return _Run(model=model, config=config, teacher=teacher, out_dir=out_dir, device=device, columns=columns,
                starts=starts, ends=ends, lengths=lengths, widths=widths, pad_token_id=pad_token_id,
                precision=precision, cast=cast, scaler=scaler, optimizer=optimizer, scheduler=scheduler,
                batches_per_epoch=batches_per_epoch, total_steps=total_steps)


def _start_or_resume(run: _Run, resume: bool, resume_from: str | Path | None,
                     settings: dict[str, Any] | None) -> None:
    """Seed everything; then, when a checkpoint is there to resume, restore the run's whole state from it."""
    seed_everything(run.config.seed)
    out_dir = run.out_dir
    checkpoint_path = Path(resume_from) if resume_from else find_checkpoint(out_dir) or out_dir / CHECKPOINT_NAME
    if resume and (checkpoint_path / "state.pt").exists():
        check_settings(checkpoint_path, settings)
        state = load_checkpoint(checkpoint_path)
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        if run.scaler is not None and state["scaler"] is not None:
            run.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        run.step, run.history = state["step"], state["history"]
        log.info("resumed from %s at step %d of %d", checkpoint_path, run.step, run.total_steps)
    reconcile_history(out_dir, run.step)  # evaluations after the checkpoint (or all, on a fresh start) are redone


def _next_batch(run: _Run) -> tuple[np.ndarray, dict[str, torch.Tensor], dict[str, torch.Tensor | None]]:
    """The step's feature indices, model inputs, and targets (gold positions; teacher logits when alpha_ce > 0)."""
    config, device = run.config, run.device
    epoch, position = divmod(run.step, run.batches_per_epoch)
    if epoch not in run.epoch_cache:
        run.epoch_cache = {epoch: bucketed_batches(run.lengths, config.train_batch_size, seed=config.seed,
                                                   epoch=epoch, bucketing=config.length_bucketing)}
    indices = run.epoch_cache[epoch][position]  # (batch,)
    batch = to_device(collate(run.columns, indices, run.pad_token_id, widths=run.widths), device)
    width = batch["input_ids"].shape[1]
    targets: dict[str, torch.Tensor | None] = to_device({
        "start_positions": torch.from_numpy(run.starts[indices]),  # (batch,)
        "end_positions": torch.from_numpy(run.ends[indices])}, device)  # (batch,)
    targets["teacher_start"] = targets["teacher_end"] = None
    if config.alpha_ce > 0:
        teacher_start, teacher_end = run.teacher.batch(indices, width, MASKED_LOGIT)  # 2 x (batch, seq_len)
        targets.update(to_device({"teacher_start": teacher_start, "teacher_end": teacher_end}, device))
    return indices, batch, targets


def _train_step(run: _Run) -> dict[str, float]:
    """One optimiser step on the next batch; returns the loss's parts ('kl', 'ce')."""
    config, model, optimizer, scaler = run.config, run.model, run.optimizer, run.scaler
    indices, batch, targets = _next_batch(run)
    with torch.autocast(run.device.type, dtype=run.cast or torch.float32, enabled=run.cast is not None):
        output = model(**batch)
    loss, parts = distillation_loss(output.start_logits, output.end_logits,  # 2 x (batch, seq_len)
                                    targets["teacher_start"], targets["teacher_end"],
                                    targets["start_positions"], targets["end_positions"], batch["attention_mask"],
                                    config.alpha_ce, config.temperature)
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"training diverged: the loss became {float(loss.detach())} at step {run.step}; lower "
                               f"distill.learning_rate (now {config.learning_rate:g}) or try"
                               " distill.precision=fp32")
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if config.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    run.scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    run.step += 1
    run.features_seen += len(indices)
    run.running_loss += float(loss.detach())
    run.running_count += 1
    return parts


def _evaluate(run: _Run, parts: dict[str, float], evaluator: Evaluator | None) -> None:
    """Record the running loss, the last step's loss parts and the evaluator's metrics in the history."""
    record: dict[str, Any] = {
        "step": run.step,
        "total_steps": run.total_steps,
        "epoch": run.step / run.batches_per_epoch,
        "train_loss": run.running_loss / max(1, run.running_count),
        "learning_rate": run.scheduler.get_last_lr()[0],
        "kl": parts["kl"],
        "ce": parts["ce"],
    }
    run.running_loss, run.running_count = 0.0, 0
    if evaluator is not None:
        run.model.eval()
        # keys starting with "_" (e.g. predictions) are for the caller, not the history
        record.update({k: v for k, v in evaluator(run.model, run.step).items() if not k.startswith("_")})
        run.model.train()
    run.history.append(record)
    append_history(run.out_dir, record)
    log.info("step %d/%d: %s", run.step, run.total_steps,
             ", ".join(f"{k}={v:.4g}" for k, v in record.items() if isinstance(v, float)))


def _save(run: _Run, settings: dict[str, Any] | None) -> None:
    """Checkpoint everything a resume needs to go on as if never interrupted (checkpoint.save_checkpoint)."""
    save_checkpoint(run.out_dir, {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "rng": rng_state(),
        "step": run.step,
        "history_json": json.dumps(run.history),  # plain text: loads under weights_only whatever the metrics
    }, run.step, settings)


def fine_tune(model: torch.nn.Module, features: FeatureSet, config: DistillConfig, *, out_dir: str | Path,
              evaluator: Evaluator | None = None, pad_token_id: int = 0) -> TrainResult:
    """Fine-tune a QA model on gold spans only (alpha_ce = 0): how a teacher is made from an encoder."""
    config = dataclasses.replace(config, alpha_ce=0.0)
    return train(model, features, config, teacher=None, out_dir=out_dir, evaluator=evaluator, pad_token_id=pad_token_id)
