"""Mask rearrangement: move a layer's pruned entries where the Fisher's off-diagonal terms say they cost less.

The mask search (search.py) scores each head or neuron alone (the Fisher diagonal). Kwon et al., 2022
("A Fast Post-Training Pruning Framework for Transformers", NeurIPS, section 4.2) then refine each layer's
mask with the layer's full Fisher block F: with p = 1 - m the indicator of what is pruned, the loss of
pruning is approximated by p^T F p, which counts how pruned entries interact. Keeping the number kept in
the layer fixed, this module lowers that objective by greedy swaps (our choice of greedy; the paper's
greedy selection differs in its order): one iteration visits every pruned entry, the one whose own and
interaction terms are largest first, and swaps it with the kept entry that lowers p^T F p the most, when
one does. Swapping kept k and pruned q changes the objective by

    F_kk + F_qq - 2 F_kq + 2 (s_k - s_q),   s = F p  (each entry's interaction with the pruned set),

so each candidate costs one vector of the block. Iterations stop when one makes no swap, or after
`max_iterations`. A swap is made only when it lowers the objective, so it never rises.

Must not know: models, runs, trials, Ray, evaluation metrics, files.

Example (CPU, about a second for 3 layers of 1,536 neurons):
    heads = rearrange(heads, fisher.head_blocks)
"""

from __future__ import annotations

import numpy as np

TOLERANCE = 1e-12  # a swap must lower the objective by more than this share of the block's largest diagonal


def objective(mask: np.ndarray, blocks: list[np.ndarray]) -> float:
    """sum over layers of (1 - m)^T F_l (1 - m): the block-diagonal Fisher's estimate of the loss of pruning."""
    total = 0.0
    for row, block in zip(np.asarray(mask, dtype=bool), blocks):
        pruned = (~row).astype(np.float64)  # (n,)
        total += float(pruned @ np.asarray(block, dtype=np.float64) @ pruned)
    return total


def _rearrange_layer(row: np.ndarray, block: np.ndarray, max_iterations: int) -> np.ndarray:
    """One layer's mask (True = kept) after greedy swaps, with as many kept as `row`."""
    kept = row.copy()
    if kept.all() or not kept.any():
        return kept
    diagonal = np.diagonal(block).copy()  # (n,)
    slack = TOLERANCE * max(float(np.abs(diagonal).max()), 1e-300)
    interaction = block @ (~kept).astype(np.float64)  # (n,) s = F p
    for _ in range(max_iterations):
        swapped = False
        for pruned in np.flatnonzero(~kept)[np.argsort(-interaction[~kept], kind="stable")]:
            if kept[pruned]:
                continue  # brought back by an earlier swap of this iteration
            candidates = np.flatnonzero(kept)  # (kept,)
            change = (diagonal[candidates] + diagonal[pruned] - 2 * block[candidates, pruned]
                      + 2 * (interaction[candidates] - interaction[pruned]))  # (kept,)
            best = int(np.argmin(change))
            if change[best] < -slack:
                out = candidates[best]
                kept[out], kept[pruned] = False, True
                interaction += block[:, out] - block[:, pruned]
                swapped = True
        if not swapped:
            break
    return kept


def rearrange(mask: np.ndarray, blocks: list[np.ndarray], max_iterations: int = 20) -> np.ndarray:
    """A new (layers, n) mask (True = kept) with the same count kept per layer and an objective no higher."""
    mask = np.asarray(mask, dtype=bool)
    if len(blocks) != len(mask) or any(np.shape(block) != (mask.shape[1],) * 2 for block in blocks):
        raise ValueError(f"rearrange: expected {len(mask)} blocks of {(mask.shape[1],) * 2}, got "
                         f"{[np.shape(block) for block in blocks]}")
    return np.stack([_rearrange_layer(row, np.asarray(block, dtype=np.float64), max_iterations)
                     for row, block in zip(mask, blocks)])
