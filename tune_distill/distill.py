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
from tune_distill.data import FeatureSet, bucketed_batches, collate, model_inputs, pad_widths, padded_width
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
    """Total loss and its parts ('kl' is the unscaled KL, 'ce' the gold-span cross-entropy)."""
    if not 0.0 <= alpha_ce <= 1.0:
        raise ValueError(f"distill.alpha_ce: must be in [0, 1], got {alpha_ce}")
    if temperature <= 0:
        raise ValueError(f"distill.temperature: must be > 0, got {temperature}")
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


def validate(config: DistillConfig) -> None:
    """Reject settings that cannot train, naming the field."""
    checks = [
        (config.learning_rate > 0, "learning_rate", "> 0"),
        (0 <= config.adam_beta1 < 1, "adam_beta1", "in [0, 1)"),
        (0 <= config.adam_beta2 < 1, "adam_beta2", "in [0, 1)"),
        (config.adam_epsilon > 0, "adam_epsilon", "> 0"),
        (config.weight_decay >= 0, "weight_decay", ">= 0"),
        (0 <= config.alpha_ce <= 1, "alpha_ce", "in [0, 1]"),
        (config.temperature > 0, "temperature", "> 0"),
        (config.train_batch_size >= 1, "train_batch_size", ">= 1"),
        (config.eval_batch_size >= 1, "eval_batch_size", ">= 1"),
        (config.num_train_epochs > 0 or config.max_steps > 0, "num_train_epochs", "> 0 (or set max_steps)"),
        (config.warmup_steps >= 0, "warmup_steps", ">= 0"),
        (0 <= config.warmup_ratio < 1, "warmup_ratio", "in [0, 1)"),
        (config.max_grad_norm >= 0, "max_grad_norm", ">= 0"),
    ]
    for ok, field_name, expected in checks:
        if not ok:
            raise ValueError(f"distill.{field_name}: must be {expected}, got {getattr(config, field_name)!r}")


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
    where distill.precision=auto keeps its measured choice (runtime.training_precision).
    """
    validate(config)
    if config.alpha_ce > 0 and teacher is None:
        raise ValueError("distill.alpha_ce > 0 needs cached teacher logits (teacher=None given)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    device = next(model.parameters()).device

    columns = model_inputs(features)
    starts = np.asarray(features.table.column("start_positions").to_numpy(), dtype=np.int64)
    ends = np.asarray(features.table.column("end_positions").to_numpy(), dtype=np.int64)
    lengths = columns["input_ids"].lengths
    widths = pad_widths(lengths, resolve_pad_multiple(config.pad_multiple, device))  # the run's few batch shapes
    precision = training_precision(config.precision, model, device, batch_size=config.train_batch_size,
                                   width=padded_width(int(np.median(lengths)), widths), cache_dir=precision_cache)
    cast = autocast_dtype(precision, device)
    scaler = torch.amp.GradScaler("cuda") if cast == torch.float16 else None
    batches_per_epoch = math.ceil(len(lengths) / config.train_batch_size)
    total_steps = config.max_steps or max(1, math.ceil(config.num_train_epochs * batches_per_epoch))
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, warmup_steps(config, total_steps), total_steps)

    seed_everything(config.seed)
    step, history = 0, []
    checkpoint_path = Path(resume_from) if resume_from else find_checkpoint(out_dir) or out_dir / CHECKPOINT_NAME
    if resume and (checkpoint_path / "state.pt").exists():
        check_settings(checkpoint_path, settings)
        state = load_checkpoint(checkpoint_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        step, history = state["step"], state["history"]
        log.info("resumed from %s at step %d of %d", checkpoint_path, step, total_steps)
    reconcile_history(out_dir, step)  # evaluations after the checkpoint (or all, on a fresh start) are redone

    eval_every = config.eval_every_steps
    checkpoint_every = config.checkpoint_every_steps or eval_every
    model.train()
    began = time.perf_counter()
    features_seen = 0
    running_loss, running_count = 0.0, 0
    stopped_early = False
    epoch_cache: dict[int, list[np.ndarray]] = {}
    progress = Progress(total_steps, "distill", unit="step", initial=step)
    while step < total_steps:
        epoch, position = divmod(step, batches_per_epoch)
        if epoch not in epoch_cache:
            epoch_cache = {epoch: bucketed_batches(lengths, config.train_batch_size, seed=config.seed, epoch=epoch,
                                                   bucketing=config.length_bucketing)}
        indices = epoch_cache[epoch][position]
        batch = to_device(collate(columns, indices, pad_token_id, widths=widths), device)
        width = batch["input_ids"].shape[1]
        positions = to_device({"start": torch.from_numpy(starts[indices]),  # (batch,)
                               "end": torch.from_numpy(ends[indices])}, device)  # (batch,)
        start_positions, end_positions = positions["start"], positions["end"]
        teacher_start = teacher_end = None
        if config.alpha_ce > 0:
            teacher_start, teacher_end = teacher.batch(indices, width, MASKED_LOGIT)  # 2 x (batch, seq_len)
            targets = to_device({"start": teacher_start, "end": teacher_end}, device)
            teacher_start, teacher_end = targets["start"], targets["end"]
        with torch.autocast(device.type, dtype=cast or torch.float32, enabled=cast is not None):
            output = model(**batch)
        loss, parts = distillation_loss(output.start_logits, output.end_logits, teacher_start, teacher_end,
                                        start_positions, end_positions, batch["attention_mask"],
                                        config.alpha_ce, config.temperature)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"training diverged: the loss became {float(loss.detach())} at step {step}; lower "
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
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        features_seen += len(indices)
        running_loss += float(loss.detach())
        running_count += 1
        progress.update(1)
        progress.set_postfix(loss=f"{running_loss / running_count:.3f}")
        if on_step is not None:
            on_step(step)

        at_eval = (eval_every and step % eval_every == 0) or step == total_steps
        at_checkpoint = (checkpoint_every and step % checkpoint_every == 0) or step == total_steps
        if at_eval:
            record: dict[str, Any] = {
                "step": step,
                "total_steps": total_steps,
                "epoch": step / batches_per_epoch,
                "train_loss": running_loss / max(1, running_count),
                "learning_rate": scheduler.get_last_lr()[0],
                "kl": parts["kl"],
                "ce": parts["ce"],
            }
            running_loss, running_count = 0.0, 0
            if evaluator is not None:
                model.eval()
                # keys starting with "_" (e.g. predictions) are for the caller, not the history
                record.update({k: v for k, v in evaluator(model, step).items() if not k.startswith("_")})
                model.train()
            history.append(record)
            append_history(out_dir, record)
            log.info("step %d/%d: %s", step, total_steps,
                     ", ".join(f"{k}={v:.4g}" for k, v in record.items() if isinstance(v, float)))
        if at_checkpoint:
            save_checkpoint(out_dir, {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "rng": rng_state(),
                "step": step,
                "history_json": json.dumps(history),  # plain text: loads under weights_only whatever the metrics
            }, step, settings)
        if at_eval and callback is not None and callback(history[-1]) is True:
            stopped_early = step < total_steps
            break
    progress.close()
    seconds = time.perf_counter() - began
    model.eval()
    return TrainResult(step=step, total_steps=total_steps, stopped_early=stopped_early, history=history,
                       train_seconds=seconds, features_per_second=features_seen / seconds if seconds > 0 else 0.0,
                       precision=precision)


def fine_tune(model: torch.nn.Module, features: FeatureSet, config: DistillConfig, *, out_dir: str | Path,
              evaluator: Evaluator | None = None, pad_token_id: int = 0) -> TrainResult:
    """Fine-tune a QA model on gold spans only (alpha_ce = 0): how a teacher is made from an encoder."""
    config = dataclasses.replace(config, alpha_ce=0.0)
    return train(model, features, config, teacher=None, out_dir=out_dir, evaluator=evaluator, pad_token_id=pad_token_id)
