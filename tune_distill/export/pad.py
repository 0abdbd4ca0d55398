"""Pad a pruned student's missing attention heads back as zeros: a vanilla BertForQuestionAnswering.

A pruned student (fewer heads than its width implies, `student.PRUNED_HEADS_KEY` in its config)
cannot be written as a vanilla BertConfig, so its missing heads are put back as zeros: zero Q/K/V
rows (weights and biases) and zero columns of the attention output projection. A zero head attends
uniformly (all its scores are 0) to zero values and is projected by zero columns, so it adds
exactly 0 and the logits are the pruned student's up to float32 summation order (the export checks
them on a real batch against PADDING_TOLERANCE and records the difference). Feed-forward pruning by
student.init=prune keeps one `intermediate_size` for every layer, which BertConfig expresses; a
post-training pruned student (`student.LAYER_SHAPES_KEY`: layers of their own shapes) also gets its
missing neurons back as zeros, up to the config's `intermediate_size`: a zero up-projection row and
bias give GELU(0) = 0, and a zero down-projection column adds nothing.

Must not know: sweeps, files, ONNX, data or training.

Example (CPU, seconds):
    python -c "from tune_distill.student import load_student; from tune_distill.export import pad_pruned_heads; \
print(pad_pruned_heads(load_student('runs/tiny/model')).config.num_attention_heads)"
"""

from __future__ import annotations

import copy
import re

import torch

from tune_distill.export.errors import ExportError
from tune_distill.student import LAYER_SHAPES_KEY, PRUNED_HEADS_KEY, layer_shapes

# max |logit difference| padded export vs pruned student: zero heads add exactly 0, what remains is float32
# summation order (what it was on a real student: results/README.md, "Export tolerances")
PADDING_TOLERANCE = 1e-4
# Tensors that may be narrower in a pruned student than in the padded export, and the dimension that
# holds the heads or neurons (0: output rows of Q/K/V or the up projection, 1: input columns of the
# attention output projection or the down projection).
_HEAD_TENSORS = (
    (re.compile(r"\.attention\.self\.(query|key|value)\.(weight|bias)$"), 0),
    (re.compile(r"\.attention\.output\.dense\.weight$"), 1),
    (re.compile(r"\.intermediate\.dense\.(weight|bias)$"), 0),
    (re.compile(r"\.layer\.\d+\.output\.dense\.weight$"), 1),
)


def _head_dimension(name: str) -> int | None:
    for pattern, dim in _HEAD_TENSORS:
        if pattern.search(name):
            return dim
    return None


def pad_pruned_heads(student: torch.nn.Module):
    """A vanilla BertForQuestionAnswering equal to `student`, pruned heads put back as zeros.

    Kept heads take the first positions of each layer (as student.load_student lays them out); the
    rest get zero Q/K/V rows and biases and zero output-projection columns (missing neurons likewise:
    zero up-projection rows and biases, zero down-projection columns). Students without pruned
    heads come back as a plain copy. Any other shape difference is an error.
    """
    from transformers import BertForQuestionAnswering

    config = copy.deepcopy(student.config)
    for key in (PRUNED_HEADS_KEY, LAYER_SHAPES_KEY):
        if hasattr(config, key):
            delattr(config, key)
    config.architectures = ["BertForQuestionAnswering"]
    padded = BertForQuestionAnswering(config).eval()
    source = student.state_dict()
    target = padded.state_dict()
    state: dict[str, torch.Tensor] = {}
    for name, tensor in target.items():
        if name not in source:
            if "position_ids" in name:
                continue
            raise ExportError(f"padding heads: the student has no tensor {name!r}")
        value = source[name].detach()
        if value.shape != tensor.shape:
            dim = _head_dimension(name)
            if dim is None or value.dim() != tensor.dim() or value.shape[dim] > tensor.shape[dim] or any(
                    value.shape[d] != tensor.shape[d] for d in range(value.dim()) if d != dim):
                raise ExportError(f"padding heads: {name} has shape {tuple(value.shape)} in the student but "
                                  f"{tuple(tensor.shape)} in a vanilla BERT of its config; only attention heads "
                                  "and feed-forward neurons can be padded")
            # (heads * head_size, hidden), (heads * head_size,) or (hidden, heads * head_size)
            zeros = torch.zeros_like(tensor)
            zeros.narrow(dim, 0, value.shape[dim]).copy_(value)
            value = zeros
        state[name] = value.clone()
    unexpected = [name for name in source if name not in target and "position_ids" not in name]
    if unexpected:
        raise ExportError(f"padding heads: student tensors with no place in a vanilla BERT: {unexpected[:5]}")
    padded.load_state_dict(state, strict=False)
    for module_name, module in padded.named_modules():  # the attention modules must use every head again
        if hasattr(module, "num_attention_heads") and hasattr(module, "attention_head_size"):
            if module.num_attention_heads != config.num_attention_heads:
                raise ExportError(f"padding heads: {module_name} has {module.num_attention_heads} heads, "
                                  f"expected {config.num_attention_heads}")
    return padded


def kept_heads_per_layer(model: torch.nn.Module) -> list[int]:
    """Heads each layer actually computes (from its query projection's width: student.layer_shapes)."""
    return [shape["heads"] for shape in layer_shapes(model)]
