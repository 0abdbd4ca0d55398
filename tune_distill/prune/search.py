"""Which heads and neurons to keep under a cost budget: the mask search of Kwon et al., 2022 (Algorithm 1).

With the Fisher diagonal as scores, the loss of pruning a set of heads and neurons is approximated by the
sum of their scores (Kwon et al., "A Fast Post-Training Pruning Framework for Transformers", NeurIPS 2022,
section 4.1), so the best mask keeps the most total score the budget can hold. All heads cost the same and
all neurons cost the same, so for a fixed number h of heads kept the best choice is the h highest-scoring
heads and then as many of the highest-scoring neurons as the budget left over pays for; the search tries
every h, from the fewest allowed to all, and keeps the h with the most total kept score.

Every layer keeps at least one head and one neuron: a BERT layer with no heads (or no feed-forward neurons)
is a different module (its attention or feed-forward block would have to be removed, residual and LayerNorm
handled apart), which student.load_student and the export do not build. Each layer's best head and best
neuron are therefore kept first, whatever their scores; a budget that cannot pay for those is refused,
naming the keep share and the smallest share possible.

Must not know: models, runs, trials, Ray, evaluation metrics, files.

Example (CPU, instant):
    heads, neurons = search_mask(fisher.heads, fisher.neurons, price, budget(price, 0.7))
"""

from __future__ import annotations

import numpy as np

from tune_distill.prune.budget import Costs


def _priority(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of (layers, n) scores in the order they are kept (each layer's best first, then the rest
    by descending score) and the cumulative kept score after each.  # (layers * n,), (layers * n + 1,)"""
    layers, width = scores.shape
    best = scores.argmax(axis=1) + np.arange(layers) * width  # (layers,) each layer's best, flat
    rest = np.setdiff1d(np.arange(layers * width), best)
    rest = rest[np.argsort(-scores.reshape(-1)[rest], kind="stable")]
    order = np.concatenate([best, rest])
    return order, np.concatenate([[0.0], np.cumsum(scores.reshape(-1)[order])])


def _mask(order: np.ndarray, kept: int, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape[0] * shape[1], dtype=bool)
    mask[order[:kept]] = True
    return mask.reshape(shape)


def search_mask(head_scores: np.ndarray, neuron_scores: np.ndarray, costs: Costs,
                budget: float) -> tuple[np.ndarray, np.ndarray]:
    """Masks (True = kept) of (layers, heads) and (layers, intermediate) keeping the most total score at a cost of
    at most `budget` (budget.budget: the whole non-embedding cost allowed, fixed part included)."""
    head_scores = np.asarray(head_scores, dtype=np.float64)
    neuron_scores = np.asarray(neuron_scores, dtype=np.float64)
    if head_scores.ndim != 2 or neuron_scores.ndim != 2 or len(head_scores) != len(neuron_scores):
        raise ValueError(f"search_mask: expected (layers, heads) and (layers, intermediate) scores, got shapes "
                         f"{head_scores.shape} and {neuron_scores.shape}")
    layers = len(head_scores)
    least = costs.of(layers, layers)
    if least > budget:
        raise ValueError(f"prune.keep={budget / costs.total:.4g}: the budget cannot hold one head and one neuron per "
                         f"layer; the smallest share possible is {least / costs.total:.4g}")
    head_order, head_kept = _priority(head_scores)
    neuron_order, neuron_kept = _priority(neuron_scores)
    heads = np.arange(layers, head_scores.size + 1)  # (options,) heads kept in all
    left = budget - costs.fixed - heads * costs.head  # (options,)
    neurons = np.floor(left / costs.neuron)  # (options,) then corrected for the division's rounding
    neurons = np.where(left - (neurons + 1) * costs.neuron >= 0, neurons + 1, neurons)
    neurons = np.where(left - neurons * costs.neuron < 0, neurons - 1, neurons)
    neurons = np.minimum(neurons, neuron_scores.size).astype(np.int64)  # (options,)
    feasible = neurons >= layers
    total = np.where(feasible, head_kept[heads] + neuron_kept[np.clip(neurons, 0, None)], -np.inf)  # (options,)
    best = int(np.argmax(total))
    return (_mask(head_order, int(heads[best]), head_scores.shape),
            _mask(neuron_order, int(neurons[best]), neuron_scores.shape))
