"""What pruning a head or a feed-forward neuron saves, and the budget a keep share allows.

Two measures of a BERT QA model's size, both of the non-embedding part (the embeddings are never pruned):

- `parameters`: exact, as student.count_parameters counts non-embedding parameters. One head of size d in
  a layer of width H owns 4*H*d weights (its rows of Q, K, V and its columns of the output projection)
  and 3*d biases (Q, K, V; the output projection's bias is shared by all heads): 4*H*d + 3*d. One
  feed-forward neuron owns a row of the up projection, its bias and a column of the down projection:
  2*H + 1. The rest (output biases, LayerNorms, the span head) is fixed: no mask removes it.
- `flops`: per token at sequence length S, counting a multiply-add as 2. A head: its four projections
  4*H*d*2, its attention scores and weighted sum 2*S*d*2. A neuron: its two products 2*H*2. Fixed: the
  span head H*2*2. Biases, LayerNorm, softmax and the activation are left out (small, and either fixed or
  in proportion to the terms counted).

`costs(model, ...)` reads the model's actual heads and neurons (layers may differ); the unpruned `total`
is the fixed part plus every head and neuron, and `budget(costs, keep)` is keep * total: the whole
non-embedding cost a pruned model may have, fixed part included, so a model pruned to it has at most
`keep` of its parent's non-embedding parameters (or FLOPs) as counted after physical pruning.

Must not know: runs, trials, Ray, evaluation metrics, files, the Fisher information.

Example (CPU, instant):
    from tune_distill.prune import budget, costs
    allowed = budget(costs(student, "parameters", 256), keep=0.7)
"""

from __future__ import annotations

import dataclasses

from torch import nn

from tune_distill.student import count_parameters, layer_shapes

MEASURES = ("parameters", "flops")


@dataclasses.dataclass(frozen=True)
class Costs:
    """Cost of one head, one neuron and the fixed part, and the model's unpruned total, in `by` units."""

    by: str  # parameters or flops
    seq_length: int  # the sequence length FLOPs are counted at
    head: float
    neuron: float
    fixed: float  # what no mask removes
    total: float  # fixed + every head and neuron of the model measured
    heads: int  # heads in the model, all layers together
    neurons: int  # feed-forward neurons, all layers together

    def of(self, heads: int, neurons: int) -> float:
        """The cost of a model keeping `heads` heads and `neurons` neurons in all."""
        return self.fixed + heads * self.head + neurons * self.neuron


def costs(model: nn.Module, by: str, seq_length: int) -> Costs:
    """What each head and neuron of `model` costs, by "parameters" or "flops" (per token at `seq_length`)."""
    if by not in MEASURES:
        raise ValueError(f"prune.by: expected one of {MEASURES}, got {by!r}")
    if seq_length < 1:
        raise ValueError(f"seq_length: must be >= 1, got {seq_length}")
    hidden = model.config.hidden_size
    head_size = hidden // model.config.num_attention_heads
    shapes = layer_shapes(model)
    heads = sum(shape["heads"] for shape in shapes)
    neurons = sum(shape["intermediate"] for shape in shapes)
    if by == "parameters":
        head, neuron = 4 * hidden * head_size + 3 * head_size, 2 * hidden + 1
        fixed = count_parameters(model)["non_embedding_parameters"] - heads * head - neurons * neuron
    else:
        head = 4 * hidden * head_size * 2 + 2 * seq_length * head_size * 2
        neuron, fixed = 2 * hidden * 2, hidden * 2 * 2
    return Costs(by, seq_length, float(head), float(neuron), float(fixed),
                 float(fixed + heads * head + neurons * neuron), heads, neurons)


def check_keep(keep: float) -> float:
    """`keep` as a float in (0, 1]; else a ValueError naming prune.keep."""
    try:
        value = float(keep)
    except (TypeError, ValueError):
        raise ValueError(f"prune.keep: expected a share in (0, 1], got {keep!r}") from None
    if not 0.0 < value <= 1.0:  # also refuses nan
        raise ValueError(f"prune.keep: expected a share in (0, 1] of the unpruned model's non-embedding "
                         f"parameters or FLOPs, got {keep!r}")
    return value


def budget(costs: Costs, keep: float) -> float:
    """The whole non-embedding cost (fixed part included) a model pruned to `keep` of `costs.total` may have."""
    return check_keep(keep) * costs.total
