"""The empirical Fisher information of a trained student's head and neuron masks, from per-window gradients.

What it does: puts a mask on every attention head's output and every feed-forward neuron of a trained
BERT QA student, one mask row per window of a batch (forward pre-hooks on the attention output projection
and the feed-forward down projection; the model's code is untouched), and takes the gradient of the
distillation loss against the teacher (KL(teacher || student) of the start and end distributions at
temperature 1, distill.distillation_loss with alpha_ce = 1, as importance.measure_importance) with
respect to those masks. Each window's own gradient g (heads and neurons of one layer) is what is summed:

    heads[l, i]      = sum over windows of g_i^2       (the diagonal of the Fisher)
    head_blocks[l]   = sum over windows of g g^T       (the layer's full block; its diagonal is heads[l])

and the same for neurons. Kwon et al., 2022, "A Fast Post-Training Pruning Framework for Transformers"
(NeurIPS), sections 4.1-4.2: the diagonal drives the mask search, the per-layer blocks the mask
rearrangement. Per-window gradients come from one batched pass: with a mask row per window, the gradient
of the batch's mean loss with respect to row b is that window's own gradient divided by the batch size.
Sums, not means, over the windows: the scale does not change which mask is best.

Must not know: runs, trials, Ray, evaluation metrics, files.

Example (CPU, about a minute for 256 windows of a 3-layer hidden-384 student):
    from tune_distill.prune import measure_fisher
    fisher = measure_fisher(student, inputs.train_features, teacher=inputs.teacher_logits, windows=256)
    fisher.heads.shape  # (3, 12)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from tune_distill.data import FeatureSet, collate, sorted_batches
from tune_distill.importance import frozen, mask_gradients, masked, sampled_windows
from tune_distill.student import layer_shapes
from tune_distill.teacher import TeacherLogits

BATCH_SIZE = 16  # windows per pass; each still gets its own gradient


@dataclasses.dataclass(frozen=True)
class Fisher:
    """Sums over `windows` windows of per-window mask gradients' squares (diagonals) and outer products (blocks)."""

    heads: np.ndarray  # (layers, heads) diagonal
    neurons: np.ndarray  # (layers, intermediate) diagonal
    head_blocks: list[np.ndarray]  # per layer (heads, heads) = sum over windows of g g^T
    neuron_blocks: list[np.ndarray]  # per layer (intermediate, intermediate)
    windows: int


def uniform_shape(model: nn.Module) -> tuple[int, int, int]:
    """(heads per layer, neurons per layer, head size) of a model whose layers all have the same shape; else
    a ValueError (the masks are one (layers, heads) and one (layers, intermediate) array)."""
    shapes = layer_shapes(model)
    if any(shape != shapes[0] for shape in shapes):
        raise ValueError(f"post-training pruning needs a student whose layers all have the same shape (the masks "
                         f"are rectangular); this one has {shapes}")
    head_size = model.config.hidden_size // model.config.num_attention_heads
    return shapes[0]["heads"], shapes[0]["intermediate"], head_size


def window_masks(model: nn.Module, batch: int):
    """Masks of ones, one row per window of a batch of `batch`, multiplied into every layer's head outputs
    and feed-forward neurons (importance.masked with a batch): a context manager yielding (heads (batch, layers,
    heads), neurons (batch, layers, intermediate)); the hooks are removed on exit."""
    _, _, head_size = uniform_shape(model)
    return masked(model, head_size, batch=batch)


def _window_gradients(model, teacher, batch, indices, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Each window's own gradient of its distillation loss with respect to the head and neuron masks:
    (batch, layers, heads) and (batch, layers, intermediate)."""
    with window_masks(model, len(indices)) as masks:
        heads, neurons = mask_gradients(model, teacher, batch, indices, masks, device)
    return heads * len(indices), neurons * len(indices)  # the batch loss is the mean of the windows' losses


def measure_fisher(model: nn.Module, features: FeatureSet, *, teacher: TeacherLogits | nn.Module,
                   windows: int = 256, seed: int = 0, pad_token_id: int = 0, pad_multiple: int = 0,
                   device: torch.device | str = "cpu") -> Fisher:
    """The empirical Fisher of `model`'s head and neuron masks over `windows` training windows (all if fewer).

    `model`: a trained student whose layers share one shape (a ValueError otherwise); it is left unchanged
    (weights, requires_grad flags, train/eval mode). `teacher`: the teacher's cached logits over `features`,
    or the teacher model (run on the scored windows).
    """
    if windows < 1:
        raise ValueError(f"prune.windows: must be >= 1, got {windows}")
    device = torch.device(device)
    heads, intermediate, _ = uniform_shape(model)
    layers = len(model.bert.encoder.layer)
    rows, columns, lengths, widths = sampled_windows(features, windows, seed, pad_multiple, device)
    head_blocks = torch.zeros(layers, heads, heads, dtype=torch.float64)  # (layers, heads, heads)
    neuron_blocks = torch.zeros(layers, intermediate, intermediate, dtype=torch.float64)  # (layers, inter, inter)
    with frozen(model):
        for order in sorted_batches(lengths[rows], BATCH_SIZE):
            indices = rows[order]
            batch = {name: tensor.to(device) for name, tensor in
                     collate(columns, indices, pad_token_id, widths=widths).items()}
            head_grads, neuron_grads = (g.double().cpu() for g in _window_gradients(model, teacher, batch, indices,
                                                                                   device))
            head_blocks += torch.einsum("blh,blg->lhg", head_grads, head_grads)
            neuron_blocks += torch.einsum("bli,blj->lij", neuron_grads, neuron_grads)
    return Fisher(heads=torch.diagonal(head_blocks, dim1=1, dim2=2).numpy().copy(),
                  neurons=torch.diagonal(neuron_blocks, dim1=1, dim2=2).numpy().copy(),
                  head_blocks=[block.numpy() for block in head_blocks],
                  neuron_blocks=[block.numpy() for block in neuron_blocks], windows=len(rows))
