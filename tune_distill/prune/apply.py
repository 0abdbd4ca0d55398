"""Physically prune a copy of a student to a head and neuron mask: smaller layers, each of its own shape.

Per layer, the kept heads stay (student.shrink_attention_heads slices Q, K, V and the attention output
projection) and the kept feed-forward neurons stay (student.shrink_feed_forward slices the up projection's
rows and the down projection's columns); the weights kept are unchanged, so the pruned model computes what
the unpruned one computes with the pruned heads' and neurons' masks at 0. Layers may keep different numbers
of heads and neurons; the copy's config records them (student.LAYER_SHAPES_KEY, by
student.record_layer_shapes), so student.save_student / student.load_student round-trip it. The copy keeps
everything else of the model, its QA-dropout head included.

Must not know: the Fisher information, budgets, runs, trials, Ray, evaluation metrics, files.

Example (CPU, instant on a small student):
    pruned = apply_masks(student, heads, neurons)  # bool (layers, heads), bool (layers, intermediate)
"""

from __future__ import annotations

import copy

import numpy as np
from torch import nn

from tune_distill.student import layer_shapes, record_layer_shapes, shrink_attention_heads, shrink_feed_forward


def apply_masks(model: nn.Module, head_mask: np.ndarray, neuron_mask: np.ndarray) -> nn.Module:
    """A deep copy of `model` keeping, per layer, the heads and neurons whose mask entries are true (or 1)."""
    head_mask = np.asarray(head_mask) > 0.5  # (layers, heads)
    neuron_mask = np.asarray(neuron_mask) > 0.5  # (layers, intermediate)
    shapes = layer_shapes(model)
    wanted = [{"heads": head_mask.shape[1], "intermediate": neuron_mask.shape[1]}] * len(head_mask)
    if head_mask.ndim != 2 or neuron_mask.ndim != 2 or shapes != wanted:
        raise ValueError(f"apply_masks: masks of shapes {head_mask.shape} and {neuron_mask.shape} do not fit a "
                         f"model whose layers are {shapes}")
    empty = [index for index in range(len(shapes)) if not head_mask[index].any() or not neuron_mask[index].any()]
    if empty:
        raise ValueError(f"apply_masks: layers {empty} would keep no head or no neuron (every layer keeps at least "
                         "one of each)")
    pruned = copy.deepcopy(model)
    head_size = model.config.hidden_size // model.config.num_attention_heads
    for layer, heads, neurons in zip(pruned.bert.encoder.layer, head_mask, neuron_mask):
        if not heads.all():
            shrink_attention_heads(layer, np.flatnonzero(heads).tolist(), head_size)
        if not neurons.all():
            shrink_feed_forward(layer, np.flatnonzero(neurons).tolist())
    record_layer_shapes(pruned)
    return pruned
