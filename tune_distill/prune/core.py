"""Post-training pruning of one trained student to one budget: search, rearrange, prune, tune the masks.

Kwon et al., 2022, "A Fast Post-Training Pruning Framework for Transformers" (NeurIPS), without retraining:

1. search (search.py): the heads and neurons that keep the most Fisher-diagonal score within the budget
   (`keep` of the parent's non-embedding parameters or FLOPs, budget.py);
2. rearrange (rearrange.py, optional): per layer, the same counts placed where the layer's full Fisher
   block says pruning costs least;
3. apply (apply.py): a copy of the parent physically pruned to the mask;
4. mask tuning (importance.mask_tuning, skipped when tune_windows is 0): per layer, one scale per kept head
   and neuron, by least squares, so the layer's sublayer outputs reconstruct the parent's on training windows.

The parent is left unchanged. `PrunedModel` holds the pruned copy, its masks, per-layer shape, counts, the
share of the parent it reached (by the same measure as the budget), and what each step did.

Must not know: runs, trials, Ray, evaluation metrics, files (the caller saves the model).

Example (CPU, a minute or two for a 3-layer hidden-384 student with 256 tuning windows):
    from tune_distill.prune import measure_fisher, prune_model
    fisher = measure_fisher(student, features, teacher=teacher_logits)
    member = prune_model(student, fisher, keep=0.7, features=features, seq_length=256)
    member.share, member.heads_per_layer  # 0.69..., [9, 8, 10]
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from tune_distill.data import FeatureSet
from tune_distill.importance import mask_tuning
from tune_distill.prune.apply import apply_masks
from tune_distill.prune.budget import budget, check_keep, costs
from tune_distill.prune.fisher import Fisher, uniform_shape
from tune_distill.prune.rearrange import objective, rearrange
from tune_distill.prune.search import search_mask
from tune_distill.student import count_parameters, layer_shapes

log = logging.getLogger(__name__)


@dataclasses.dataclass
class PrunedModel:
    """One pruned member: the model and how it was made."""

    model: nn.Module
    keep: float  # the share asked for
    by: str  # parameters or flops
    head_mask: np.ndarray  # bool (layers, heads) of the parent
    neuron_mask: np.ndarray  # bool (layers, intermediate) of the parent
    heads_per_layer: list[int]
    neurons_per_layer: list[int]
    non_embedding_parameters: int
    parameters: int
    share: float  # achieved share of the parent's non-embedding parameters or FLOPs, by `by`
    info: dict[str, Any]  # objectives before/after rearrangement, mask-tuning scale ranges, seconds per step


def _search(fisher: Fisher, price, keep: float, with_rearrange: bool, info: dict[str, Any]):
    """Steps 1-2: the masks, and the rearrangement's objectives in `info`."""
    began = time.perf_counter()
    heads, neurons = search_mask(fisher.heads, fisher.neurons, price, budget(price, keep))
    info["seconds_search"] = time.perf_counter() - began
    before = objective(heads, fisher.head_blocks) + objective(neurons, fisher.neuron_blocks)
    info["objective_searched"] = before
    if with_rearrange:
        began = time.perf_counter()
        heads, neurons = rearrange(heads, fisher.head_blocks), rearrange(neurons, fisher.neuron_blocks)
        info["seconds_rearrange"] = time.perf_counter() - began
        info["objective_rearranged"] = objective(heads, fisher.head_blocks) + objective(neurons, fisher.neuron_blocks)
    return heads, neurons


def _scale_ranges(scales: list[dict[str, torch.Tensor]]) -> list[dict[str, list[float]]]:
    """[min, max] of each layer's head and neuron scales (JSON-ready)."""
    return [{name: [float(values.min()), float(values.max())] for name, values in layer.items()} for layer in scales]


def prune_model(model: nn.Module, fisher: Fisher, *, keep: float, by: str = "parameters", features: FeatureSet,
                seq_length: int, rearrange: bool = True, tune_windows: int = 256, seed: int = 0,
                pad_token_id: int = 0, pad_multiple: int = 0, device: torch.device | str = "cpu") -> PrunedModel:
    """A copy of `model` pruned to `keep` of its non-embedding parameters or FLOPs (`by`, FLOPs at `seq_length`),
    with masks chosen from `fisher` (measure_fisher of this model) and tuned on `tune_windows` of `features`."""
    keep = check_keep(keep)
    if tune_windows < 0:
        raise ValueError(f"prune.tune_windows: must be >= 0, got {tune_windows}")
    heads, neurons, _ = uniform_shape(model)
    if fisher.heads.shape != (len(model.bert.encoder.layer), heads) or fisher.neurons.shape[1] != neurons:
        raise ValueError(f"prune_model: the Fisher information is of shape {fisher.heads.shape} heads and "
                         f"{fisher.neurons.shape} neurons, not of this model ({layer_shapes(model)[0]} per layer)")
    price = costs(model, by, seq_length)
    info: dict[str, Any] = {"windows_fisher": fisher.windows}
    head_mask, neuron_mask = _search(fisher, price, keep, rearrange, info)
    began = time.perf_counter()
    pruned = apply_masks(model, head_mask, neuron_mask)
    info["seconds_apply"] = time.perf_counter() - began
    if tune_windows:
        began = time.perf_counter()
        scales = mask_tuning(pruned, model, features, windows=tune_windows, seed=seed, pad_token_id=pad_token_id,
                             pad_multiple=pad_multiple, device=device)
        info["seconds_tune"] = time.perf_counter() - began
        info["tune_windows"] = min(tune_windows, len(features))
        info["scales"] = _scale_ranges(scales)
    shapes = layer_shapes(pruned)
    counts = count_parameters(pruned)
    share = costs(pruned, by, seq_length).total / price.total
    log.info("prune: keep %.3f by %s -> share %.4f, heads %s, neurons %s", keep, by, share,
             [shape["heads"] for shape in shapes], [shape["intermediate"] for shape in shapes])
    return PrunedModel(model=pruned, keep=keep, by=by, head_mask=head_mask, neuron_mask=neuron_mask,
                       heads_per_layer=[shape["heads"] for shape in shapes],
                       neurons_per_layer=[shape["intermediate"] for shape in shapes],
                       non_embedding_parameters=counts["non_embedding_parameters"], parameters=counts["parameters"],
                       share=share, info=info)
