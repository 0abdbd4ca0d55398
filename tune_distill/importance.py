"""Measured importance of attention heads and feed-forward neurons, for `student.init=prune`.

What it does: copies the chosen teacher layers into an unpruned student (every head, the whole
feed-forward width), puts a mask of ones on every head's output and every feed-forward neuron
(forward pre-hooks on the attention output projection and the feed-forward down projection, so
the model's code is untouched), and runs a pass over `windows` training windows with the
distillation loss against the teacher's logits: KL(teacher || student) of the start and end
distributions at temperature 1 (distill.distillation_loss with alpha_ce = 1). The score of a head
or neuron is

    gradient: mean over batches of |dL / d mask|  (Michel, Levy and Neubig, 2019, "Are Sixteen Heads
              Really Better than One?"; per batch of `batch_size` windows rather than per window);
    fisher:   mean over batches of (dL / d mask)^2  (the diagonal Fisher information of the mask,
              Kwon et al., 2022, "A Fast Post-Training Pruning Framework for Transformers").

Both come from the same pass. The loss does not depend on a trial's alpha_ce or temperature, so the
scores depend only on (teacher, layer choice, training windows, number of windows, seed) and are
computed once per such key and cached under `<cache_dir>/importance/<key>.npz` (written atomically,
files.atomic_path), as the teacher logits are: every trial of a sweep that prunes the same copy
reads them. The teacher's logits come from its cached logits when the run has them, else from the
teacher itself on the scored windows.

`mask_tuning` (student.prune_rescale) is Kwon et al.'s last step, no retraining: after pruning,
each copied layer's kept heads and kept neurons get one scale each (their output-projection columns
multiplied by it), chosen by ridge-damped least squares so that the layer's attention and
feed-forward outputs (before the residual and LayerNorm) reconstruct those of the unpruned copy on
the same windows; layers are solved in order, each from the inputs the already rescaled layers
below give it. Keeping everything solves to scales of 1.

A head whose output cannot change the loss (its output projection zeroed, or mapping onto the
constant direction a LayerNorm removes) scores (about) 0 here, whatever its weights' norms say.

Must not know: trials, searchers, Ray, evaluation metrics, run folders.

Example (CPU; the measurement is a few minutes of the run for 512 windows of 192 tokens, then cached):
    tune-distill distill --config configs/distill_cpu.yaml --set student.init=prune \
        --set student.prune_score=gradient --set student.num_attention_heads=8 --set student.intermediate_size=768
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from tune_distill.data import FeatureSet, collate, model_inputs, pad_widths, sorted_batches
from tune_distill.distill import MASKED_LOGIT, distillation_loss
from tune_distill.files import atomic_path
from tune_distill.runtime import resolve_pad_multiple
from tune_distill.teacher import TeacherLogits, teacher_fingerprint

log = logging.getLogger(__name__)

IMPORTANCE_FORMAT_VERSION = 1
MEASURED_SCORES = ("gradient", "fisher")
SCORE_CHOICES = ("magnitude", *MEASURED_SCORES)


@dataclasses.dataclass(frozen=True)
class Importance:
    """Measured scores of the copied layers, one row per student layer (teacher layer `teacher_layers[i]`)."""

    teacher_layers: tuple[int, ...]
    heads: dict[str, np.ndarray]  # score name -> (layers, heads)
    neurons: dict[str, np.ndarray]  # score name -> (layers, intermediate)
    windows: int
    path: Path | None = None

    def head_scores(self, score: str, layer: int) -> torch.Tensor:
        """(heads,) scores of student layer `layer`."""
        return torch.from_numpy(np.asarray(self.heads[score][layer], dtype=np.float64))

    def neuron_scores(self, score: str, layer: int) -> torch.Tensor:
        """(intermediate,) scores of student layer `layer`."""
        return torch.from_numpy(np.asarray(self.neurons[score][layer], dtype=np.float64))


def sampled_windows(features, windows: int, seed: int, pad_multiple: int, device: torch.device):
    """The `windows` training windows scored (a seeded sample, in file order; all if fewer), their model
    inputs, every window's length and the run's padded widths (also prune/fisher.py's)."""
    rows = np.arange(len(features))
    if windows < len(rows):
        rows = np.sort(np.random.default_rng(seed).choice(rows, windows, replace=False))
    columns = model_inputs(features)
    lengths = columns["input_ids"].lengths
    return rows, columns, lengths, pad_widths(lengths, resolve_pad_multiple(pad_multiple, device))


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode with no parameter requiring grad (only the masks do), both restored on exit."""
    was_training, flags = model.training, [parameter.requires_grad for parameter in model.parameters()]
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    try:
        yield model
    finally:
        for parameter, flag in zip(model.parameters(), flags):
            parameter.requires_grad_(flag)
        model.train(was_training)


def mask_gradients(model: nn.Module, teacher: TeacherLogits | nn.Module, batch: dict[str, torch.Tensor],
                   indices: np.ndarray, masks: tuple[torch.Tensor, torch.Tensor],
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient of the batch's distillation loss against the teacher (KL at temperature 1, alpha_ce 1) with
    respect to `masks` (masked's head and neuron masks), for the batch of training windows `indices`. `teacher`:
    its cached logits over the windows' features, or the teacher model (run on the batch)."""
    width = batch["input_ids"].shape[1]
    if isinstance(teacher, TeacherLogits):
        teacher_start, teacher_end = (t.to(device) for t in teacher.batch(indices, width, MASKED_LOGIT))
    else:
        with torch.no_grad():
            output = teacher(**batch)
        teacher_start, teacher_end = output.start_logits, output.end_logits  # 2 x (batch, seq_len)
    output = model(**batch)
    zeros = torch.zeros(len(indices), dtype=torch.long, device=device)  # gold spans unused at alpha 1
    loss, _ = distillation_loss(output.start_logits, output.end_logits, teacher_start, teacher_end,
                                zeros, zeros, batch["attention_mask"], alpha_ce=1.0, temperature=1.0)
    return torch.autograd.grad(loss, list(masks))


@contextlib.contextmanager
def masked(model: nn.Module, head_size: int, batch: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Head and neuron masks of ones (requiring grad) multiplied into every layer of a BERT model.

    Yields (head_mask (layers, heads), neuron_mask (layers, intermediate)), or with `batch` one row per window of a
    batch of that size, (batch, layers, heads) and (batch, layers, intermediate), so that each window's gradient
    is its own (prune/fisher.py); the hooks are removed on exit.
    """
    layers = model.bert.encoder.layer
    heads = layers[0].attention.output.dense.in_features // head_size
    intermediate = layers[0].output.dense.in_features
    lead = () if batch is None else (batch,)
    head_mask = torch.ones(*lead, len(layers), heads, requires_grad=True)  # ([batch,] layers, heads)
    neuron_mask = torch.ones(*lead, len(layers), intermediate, requires_grad=True)  # ([batch,] layers, intermediate)
    handles = []
    for index, layer in enumerate(layers):
        def mask_heads(module, inputs, index=index):
            context = inputs[0]  # (batch, seq_len, heads * head_size)
            shaped = context.view(*context.shape[:-1], heads, head_size)  # (batch, seq_len, heads, head_size)
            scale = head_mask[..., index, :].to(context)  # ([batch,] heads)
            scale = scale[:, None, :, None] if batch is not None else scale[:, None]  # ([batch, 1,] heads, 1)
            return ((shaped * scale).view_as(context),)

        def mask_neurons(module, inputs, index=index):
            scale = neuron_mask[..., index, :].to(inputs[0])  # ([batch,] intermediate)
            scale = scale[:, None, :] if batch is not None else scale  # ([batch, 1,] intermediate)
            return (inputs[0] * scale,)  # (batch, seq_len, intermediate)

        handles.append(layer.attention.output.dense.register_forward_pre_hook(mask_heads))
        handles.append(layer.output.dense.register_forward_pre_hook(mask_neurons))
    try:
        yield head_mask, neuron_mask
    finally:
        for handle in handles:
            handle.remove()


def measure_importance(model: nn.Module, features: FeatureSet, *, teacher: TeacherLogits | nn.Module,
                       windows: int = 512, batch_size: int = 8, seed: int = 0, pad_token_id: int = 0,
                       pad_multiple: int = 0, device: torch.device | str = "cpu",
                       teacher_layers: tuple[int, ...] = ()) -> Importance:
    """Gradient and Fisher scores of `model`'s heads and neurons over `windows` training windows (all if fewer).

    `model`: an unpruned BERT QA model (a copy of teacher layers); it is left unchanged. `teacher`: the
    teacher's cached logits over `features`, or the teacher model (run on the scored windows).
    """
    if windows < 1:
        raise ValueError(f"student.prune_windows: must be >= 1, got {windows}")
    device = torch.device(device)
    head_size = model.config.hidden_size // model.config.num_attention_heads
    rows, columns, lengths, widths = sampled_windows(features, windows, seed, pad_multiple, device)
    with frozen(model), masked(model, head_size) as (head_mask, neuron_mask):
        gradient = [torch.zeros_like(head_mask), torch.zeros_like(neuron_mask)]
        fisher = [torch.zeros_like(head_mask), torch.zeros_like(neuron_mask)]
        batches = [rows[order] for order in sorted_batches(lengths[rows], batch_size)]
        for indices in batches:
            batch = {name: tensor.to(device) for name, tensor in
                     collate(columns, indices, pad_token_id, widths=widths).items()}
            grads = mask_gradients(model, teacher, batch, indices, (head_mask, neuron_mask), device)
            for total, grad in zip(gradient, grads):
                total += grad.abs()
            for total, grad in zip(fisher, grads):
                total += grad.pow(2)
        sums = {"gradient": [t / len(batches) for t in gradient], "fisher": [t / len(batches) for t in fisher]}
    return Importance(
        teacher_layers=tuple(teacher_layers),
        heads={name: values[0].numpy() for name, values in sums.items()},
        neurons={name: values[1].numpy() for name, values in sums.items()},
        windows=len(rows),
    )


RIDGE = 1e-4  # damping of the least squares, relative to the mean of its Gram matrix's diagonal


def _solve(gram: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """argmin_m |A m - y|^2 + ridge |m - 1|^2 from A^T A and A^T y (damped towards the unscaled 1).  # (k,)"""
    damping = RIDGE * float(gram.diagonal().mean().clamp_min(1e-12))
    eye = torch.eye(len(gram), dtype=gram.dtype)
    return torch.linalg.solve(gram + damping * eye, target + damping * torch.ones_like(target))


@torch.no_grad()
def mask_tuning(pruned: nn.Module, full: nn.Module, features: FeatureSet, *, windows: int = 512,
                batch_size: int = 8, seed: int = 0, pad_token_id: int = 0, pad_multiple: int = 0,
                device: torch.device | str = "cpu") -> list[dict[str, torch.Tensor]]:
    """Rescale `pruned`'s kept heads and neurons, layer by layer, to reconstruct `full`'s sublayer outputs.

    `full`: the unpruned copy of the same teacher layers (its weights are the target); `pruned` is changed
    in place (its attention and feed-forward output projections). Returns each layer's scales
    ({"heads": (kept heads,), "neurons": (kept neurons,)}).
    """
    device = torch.device(device)
    rows, columns, lengths, widths = sampled_windows(features, windows, seed, pad_multiple, device)
    batches = [rows[order] for order in sorted_batches(lengths[rows], batch_size)]
    modes = (pruned.training, full.training)
    pruned.eval()
    full.eval()
    head_size = full.config.hidden_size // full.config.num_attention_heads
    scales = []
    captured: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(module, inputs, output):
            captured[name] = inputs[0]
            captured[f"{name}_out"] = output
        return hook

    try:
        for index, (small, big) in enumerate(zip(pruned.bert.encoder.layer, full.bert.encoder.layer)):

            handles = [small.attention.output.dense.register_forward_hook(keep("context")),
                       small.output.dense.register_forward_hook(keep("act")),
                       big.attention.output.dense.register_forward_hook(keep("full_context")),
                       big.output.dense.register_forward_hook(keep("full_act"))]
            attention_weight = small.attention.output.dense.weight  # (hidden, kept heads * head_size)
            down_weight = small.output.dense.weight  # (hidden, kept neurons)
            heads = attention_weight.shape[1] // head_size
            sums = {"head_gram": torch.zeros(heads, heads, dtype=torch.float64),
                    "head_target": torch.zeros(heads, dtype=torch.float64),
                    "neuron_gram": torch.zeros(down_weight.shape[1], down_weight.shape[1], dtype=torch.float64),
                    "neuron_target": torch.zeros(down_weight.shape[1], dtype=torch.float64)}
            try:
                for indices in batches:
                    batch = {name: tensor.to(device) for name, tensor in
                             collate(columns, indices, pad_token_id, widths=widths).items()}
                    full(**batch)
                    pruned(**batch)
                    real = batch["attention_mask"].reshape(-1).bool()  # (batch * seq_len,)
                    context = captured["context"].reshape(-1, heads, head_size)[real]  # (tokens, heads, head_size)
                    blocks = attention_weight.T.reshape(heads, head_size, -1)  # (heads, head_size, hidden)
                    parts = torch.einsum("ths,hsd->thd", context, blocks).double()  # (tokens, heads, hidden)
                    target = (captured["full_context_out"] - big.attention.output.dense.bias)  # (batch, seq, hidden)
                    target = target.reshape(-1, target.shape[-1])[real].double()  # (tokens, hidden)
                    sums["head_gram"] += torch.einsum("thd,tgd->hg", parts, parts)
                    sums["head_target"] += torch.einsum("thd,td->h", parts, target)
                    act = captured["act"].reshape(-1, down_weight.shape[1])[real].double()  # (tokens, kept)
                    weight = down_weight.double()  # (hidden, kept)
                    target = (captured["full_act_out"] - big.output.dense.bias)  # (batch, seq, hidden)
                    target = target.reshape(-1, target.shape[-1])[real].double()  # (tokens, hidden)
                    sums["neuron_gram"] += (act.T @ act) * (weight.T @ weight)
                    sums["neuron_target"] += (act * (target @ weight)).sum(dim=0)
            finally:
                for handle in handles:
                    handle.remove()
            head_scale = _solve(sums["head_gram"], sums["head_target"]).float()  # (heads,)
            neuron_scale = _solve(sums["neuron_gram"], sums["neuron_target"]).float()  # (kept neurons,)
            attention_weight.mul_(head_scale.repeat_interleave(head_size).to(attention_weight)[None, :])
            down_weight.mul_(neuron_scale.to(down_weight)[None, :])
            scales.append({"heads": head_scale, "neurons": neuron_scale})
            log.info("mask tuning: layer %d: head scales %.3f..%.3f, neuron scales %.3f..%.3f", index,
                     float(head_scale.min()), float(head_scale.max()), float(neuron_scale.min()),
                     float(neuron_scale.max()))
    finally:
        pruned.train(modes[0])
        full.train(modes[1])
    return scales


def tune_pruned_student(model: nn.Module, student: Any, teacher_model: nn.Module, features: FeatureSet, *,
                        pad_token_id: int = 0, pad_multiple: int = 0,
                        device: torch.device | str = "cpu") -> list[dict[str, torch.Tensor]] | None:
    """`mask_tuning` of a student built with init=prune when student.prune_rescale asks for it (else None)."""
    from tune_distill.student import build_student, resolve_shape

    if student.init != "prune" or not student.prune_rescale:
        return None
    shape = resolve_shape(student, teacher_model.config)
    full = dataclasses.replace(student, init="teacher", num_attention_heads=0, intermediate_size=0,
                               layer_selection=",".join(map(str, shape.teacher_layers)))
    copy = build_student(full, teacher_model.config, teacher_model).to(device)
    return mask_tuning(model, copy, features, windows=student.prune_windows, pad_token_id=pad_token_id,
                       pad_multiple=pad_multiple, device=device)


def _cache_file(cache_dir: str | Path, teacher_path: str, teacher_layers: tuple[int, ...], features: FeatureSet,
                windows: int, seed: int) -> Path:
    key = hashlib.sha256(json.dumps([IMPORTANCE_FORMAT_VERSION, teacher_fingerprint(teacher_path),
                                     list(teacher_layers), features.fingerprint, windows, seed]).encode())
    return Path(cache_dir) / "importance" / f"{key.hexdigest()[:20]}.npz"


def _save(path: Path, importance: Importance) -> None:
    arrays = {f"heads_{name}": values for name, values in importance.heads.items()}
    arrays.update({f"neurons_{name}": values for name, values in importance.neurons.items()})
    arrays["meta"] = np.array(json.dumps({"teacher_layers": list(importance.teacher_layers),
                                          "windows": importance.windows}))
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, **arrays)


def _load(path: Path) -> Importance:
    with np.load(path) as stored:
        meta = json.loads(str(stored["meta"]))
        heads = {name: stored[f"heads_{name}"] for name in MEASURED_SCORES}
        neurons = {name: stored[f"neurons_{name}"] for name in MEASURED_SCORES}
    return Importance(tuple(meta["teacher_layers"]), heads, neurons, int(meta["windows"]), path)


def importance_for_student(student: Any, teacher_path: str, teacher_model: nn.Module, features: FeatureSet, *,
                           teacher_logits: TeacherLogits | None = None, cache_dir: str | Path | None = None,
                           seed: int = 0, pad_token_id: int = 0, pad_multiple: int = 0,
                           device: torch.device | str = "cpu") -> Importance | None:
    """The measured importance a `StudentConfig` needs (None unless init=prune with a measured prune_score).

    Read from the cache when `cache_dir` holds it for (teacher, layer choice, windows, seed); else
    measured on `features` (training windows) and cached.
    """
    from tune_distill.student import build_student, resolve_shape

    if student.init != "prune" or student.prune_score == "magnitude":
        return None
    if student.prune_score not in MEASURED_SCORES:
        raise ValueError(f"student.prune_score: expected one of {SCORE_CHOICES}, got {student.prune_score!r}")
    shape = resolve_shape(student, teacher_model.config)
    target = (_cache_file(cache_dir, teacher_path, shape.teacher_layers, features, student.prune_windows, seed)
              if cache_dir else None)
    if target is not None and target.is_file():
        log.info("importance: cache hit %s", target)
        return _load(target)
    full = dataclasses.replace(student, init="teacher", num_attention_heads=0, intermediate_size=0,
                               layer_selection=",".join(map(str, shape.teacher_layers)),
                               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, qa_dropout=0.0)
    copy = build_student(full, teacher_model.config, teacher_model, seed=seed).to(device)
    teacher = teacher_logits if teacher_logits is not None else teacher_model.to(device).eval()
    log.info("importance: scoring %d heads and %d neurons per layer of teacher layers %s on %d windows",
             teacher_model.config.num_attention_heads, teacher_model.config.intermediate_size,
             list(shape.teacher_layers), min(student.prune_windows, len(features)))
    importance = measure_importance(copy, features, teacher=teacher, windows=student.prune_windows, seed=seed,
                                    pad_token_id=pad_token_id, pad_multiple=pad_multiple, device=device,
                                    teacher_layers=shape.teacher_layers)
    if target is None:
        return importance
    _save(target, importance)
    return dataclasses.replace(importance, path=target)
