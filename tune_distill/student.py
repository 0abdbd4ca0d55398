"""Build a student question-answering model from a `StudentConfig` and the teacher's configuration.

Shapes use Hugging Face BERT names (`num_hidden_layers`, `hidden_size`, `num_attention_heads`,
`intermediate_size`, dropouts, `initializer_range`); a 0 means "the teacher's". Three
initialisations:

- `teacher`: DistilBERT-style. Copy the embeddings, a chosen subset of teacher layers
  (`layer_selection`: every_other, spread, first, last, or explicit indices "0,2,4") and the QA
  head. Widths must match the teacher's.
- `prune`: like `teacher`, then keep the `num_attention_heads` most important heads of every layer
  (and the most important feed-forward neurons when `intermediate_size` is smaller than the
  teacher's). `student.prune_score` picks the importance: `magnitude` is data-free (the product
  of the norms of a head's value rows and its output-projection columns; for neurons: input row
  norm x output column norm); `gradient` and `fisher` are measured on training windows
  (importance.py, passed in as `importance`). The hidden width stays the teacher's. transformers 5
  dropped `prune_heads`, so pruned attention is done here by slicing the projections; `load_student`
  rebuilds that shape from the saved config. Post-training pruning (tune_distill/prune) leaves layers of
  different shapes; `record_layer_shapes` writes them into the config (LAYER_SHAPES_KEY) for `load_student`.
- `random`: fresh weights from `initializer_range` (any shape whose heads divide the width).

Parameter counts are exact: all trainable parameters (embeddings included, as the reference
experiment counted them) and the non-embedding ones.

Must not know: data files, the loss, training, evaluation, Ray or searchers.

Example (CPU, seconds):
    tune-distill student --teacher ../shared/models/teacher-minilm-l6-squad2 \
        --set student.num_hidden_layers=3 --set student.init=prune --set student.num_attention_heads=6
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tune_distill.config import ConfigError, StudentConfig, add_config_arguments, load_config

log = logging.getLogger(__name__)

PRUNED_HEADS_KEY = "tune_distill_heads_per_layer"  # one head count for every layer (student.init=prune)
# Layers that differ in shape (post-training pruning, tune_distill/prune): [{"heads": n, "intermediate": m}, ...],
# one entry per layer; the config's num_attention_heads and intermediate_size stay the unpruned ones (head size).
LAYER_SHAPES_KEY = "tune_distill_layer_shapes"
INIT_CHOICES = ("teacher", "prune", "random")
PRUNE_SCORE_CHOICES = ("magnitude", "gradient", "fisher")
SELECTION_CHOICES = ("every_other", "spread", "first", "last")


class StudentShapeError(ConfigError):
    """A student shape that cannot be built; the message names the field."""


@dataclasses.dataclass(frozen=True)
class ResolvedShape:
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int  # heads actually kept per layer
    intermediate_size: int
    head_size: int
    teacher_layers: tuple[int, ...]  # teacher layer copied into each student layer (empty for random)


def select_teacher_layers(selection: str, num_student_layers: int, num_teacher_layers: int) -> tuple[int, ...]:
    """Teacher layer index for every student layer.

    every_other: 0, 2, 4, ... (DistilBERT); when the student has more layers than that, falls
    back to `spread`. spread: evenly spaced from first to last (repeats when the student is deeper
    than the teacher). first / last: the bottom or top layers. "0,2,4": exactly those.
    """
    student, teacher = num_student_layers, num_teacher_layers
    if student < 1:
        raise StudentShapeError(f"student.num_hidden_layers: must be >= 1, got {student}")
    if selection == "every_other":
        evens = list(range(0, teacher, 2))
        if student <= len(evens):
            return tuple(evens[:student])
        selection = "spread"
    if selection == "spread":
        if student == 1:
            return (teacher - 1,)
        return tuple(round(index * (teacher - 1) / (student - 1)) for index in range(student))
    if selection in ("first", "last"):
        if student > teacher:
            raise StudentShapeError(
                f"student.layer_selection={selection}: the student has {student} layers but the teacher only "
                f"{teacher}; use spread or every_other"
            )
        return tuple(range(student)) if selection == "first" else tuple(range(teacher - student, teacher))
    try:
        indices = tuple(int(part) for part in selection.split(",") if part.strip())
    except ValueError:
        raise StudentShapeError(
            f"student.layer_selection: expected one of {SELECTION_CHOICES} or indices like '0,2,4', got {selection!r}"
        ) from None
    if len(indices) != student:
        raise StudentShapeError(
            f"student.layer_selection: {len(indices)} indices given for {student} layers ({selection!r})"
        )
    bad = [index for index in indices if not 0 <= index < teacher]
    if bad:
        raise StudentShapeError(f"student.layer_selection: indices {bad} outside the teacher's 0..{teacher - 1}")
    return indices


def resolve_shape(student: StudentConfig, teacher_config: Any) -> ResolvedShape:
    """Fill in 0 = teacher's values and reject impossible shapes with a message naming the field."""
    if student.init not in INIT_CHOICES:
        raise StudentShapeError(f"student.init: expected one of {INIT_CHOICES}, got {student.init!r}")
    if student.prune_score not in PRUNE_SCORE_CHOICES:
        raise StudentShapeError(
            f"student.prune_score: expected one of {PRUNE_SCORE_CHOICES}, got {student.prune_score!r}")
    teacher_hidden = teacher_config.hidden_size
    teacher_heads = teacher_config.num_attention_heads
    hidden = student.hidden_size or teacher_hidden
    heads = student.num_attention_heads or teacher_heads
    if student.intermediate_size:
        intermediate = student.intermediate_size
    else:
        intermediate = teacher_config.intermediate_size if hidden == teacher_hidden else 4 * hidden
    for name, value in (("hidden_size", hidden), ("num_attention_heads", heads), ("intermediate_size", intermediate)):
        if value < 1:
            raise StudentShapeError(f"student.{name}: must be >= 1, got {value}")
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "qa_dropout"):
        value = getattr(student, name)
        if not 0.0 <= value < 1.0:
            raise StudentShapeError(f"student.{name}: must be in [0, 1), got {value}")
    if student.initializer_range <= 0:
        raise StudentShapeError(f"student.initializer_range: must be > 0, got {student.initializer_range}")

    if student.init == "random":
        if hidden % heads:
            raise StudentShapeError(
                f"student.hidden_size={hidden} is not divisible by student.num_attention_heads={heads}"
            )
        return ResolvedShape(student.num_hidden_layers, hidden, heads, intermediate, hidden // heads, ())

    if hidden != teacher_hidden:
        raise StudentShapeError(
            f"student.init={student.init} copies teacher weights, so student.hidden_size must be the teacher's "
            f"{teacher_hidden} (got {hidden}); use student.init=random for another width"
        )
    head_size = teacher_hidden // teacher_heads
    if student.init == "teacher":
        if heads != teacher_heads:
            raise StudentShapeError(
                f"student.init=teacher keeps every head: student.num_attention_heads must be {teacher_heads} "
                f"(got {heads}); use student.init=prune to keep fewer"
            )
        if intermediate != teacher_config.intermediate_size:
            raise StudentShapeError(
                f"student.init=teacher: student.intermediate_size must be the teacher's "
                f"{teacher_config.intermediate_size} (got {intermediate}); use student.init=prune to shrink it"
            )
    else:  # prune
        if heads > teacher_heads:
            raise StudentShapeError(
                f"student.init=prune: student.num_attention_heads={heads} exceeds the teacher's {teacher_heads}"
            )
        if intermediate > teacher_config.intermediate_size:
            raise StudentShapeError(
                f"student.init=prune: student.intermediate_size={intermediate} exceeds the teacher's "
                f"{teacher_config.intermediate_size}"
            )
    layers = select_teacher_layers(student.layer_selection, student.num_hidden_layers, teacher_config.num_hidden_layers)
    return ResolvedShape(student.num_hidden_layers, hidden, heads, intermediate, head_size, layers)


def _hf_config(student: StudentConfig, shape: ResolvedShape, teacher_config: Any):
    from transformers import BertConfig

    # Attention modules are built with the full teacher head count (so head size is right) and
    # then sliced down to the kept heads; random students use their own head count directly.
    built_heads = shape.hidden_size // shape.head_size
    config = BertConfig(
        vocab_size=teacher_config.vocab_size,
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=built_heads,
        intermediate_size=shape.intermediate_size,
        hidden_act=getattr(teacher_config, "hidden_act", "gelu"),
        hidden_dropout_prob=student.hidden_dropout_prob,
        attention_probs_dropout_prob=student.attention_probs_dropout_prob,
        max_position_embeddings=teacher_config.max_position_embeddings,
        type_vocab_size=getattr(teacher_config, "type_vocab_size", 2),
        initializer_range=student.initializer_range,
        layer_norm_eps=getattr(teacher_config, "layer_norm_eps", 1e-12),
        pad_token_id=getattr(teacher_config, "pad_token_id", 0),
        classifier_dropout=student.qa_dropout,
        architectures=["BertForQuestionAnswering"],
    )
    if shape.num_attention_heads != built_heads:
        setattr(config, PRUNED_HEADS_KEY, shape.num_attention_heads)
    return config


class QADropoutHead(nn.Module):
    """Dropout before a QA span head, with the same parameter names as HF's plain Linear head."""

    def __init__(self, linear: nn.Linear, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.weight = linear.weight
        self.bias = linear.bias

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:  # (batch, seq_len, hidden) -> (batch, seq_len, 2)
        return nn.functional.linear(self.dropout(hidden_states), self.weight, self.bias)


def _attach_qa_dropout(model: nn.Module, dropout: float) -> None:
    """BertForQuestionAnswering has no dropout before its head; add one when asked (state-dict compatible)."""
    if dropout > 0 and isinstance(model.qa_outputs, nn.Linear):
        head = QADropoutHead(model.qa_outputs, dropout)
        model.qa_outputs = head  # parameter names stay qa_outputs.weight / qa_outputs.bias


def _slice_linear(linear: nn.Linear, keep: torch.Tensor, dim: int) -> nn.Linear:
    """A new Linear keeping `keep` output rows (dim=0) or input columns (dim=1)."""
    weight = linear.weight.detach().index_select(dim, keep).clone()
    bias = linear.bias.detach().clone() if linear.bias is not None else None
    if dim == 0 and bias is not None:
        bias = bias.index_select(0, keep)
    out_features, in_features = weight.shape
    new = nn.Linear(in_features, out_features, bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def shrink_attention_heads(layer: nn.Module, keep_heads: list[int], head_size: int) -> None:
    """Keep only `keep_heads` in one BertLayer's self-attention (slices Q, K, V and the output projection)."""
    self_attention = layer.attention.self
    keep = torch.tensor(
        [head * head_size + offset for head in sorted(keep_heads) for offset in range(head_size)], dtype=torch.long
    )
    self_attention.query = _slice_linear(self_attention.query, keep, 0)
    self_attention.key = _slice_linear(self_attention.key, keep, 0)
    self_attention.value = _slice_linear(self_attention.value, keep, 0)
    self_attention.num_attention_heads = len(keep_heads)
    self_attention.all_head_size = len(keep_heads) * head_size
    layer.attention.output.dense = _slice_linear(layer.attention.output.dense, keep, 1)


def shrink_feed_forward(layer: nn.Module, keep_neurons: list[int]) -> None:
    """Keep only `keep_neurons` of one BertLayer's feed-forward (up-projection rows, down-projection columns)."""
    keep = torch.tensor(sorted(keep_neurons), dtype=torch.long)
    layer.intermediate.dense = _slice_linear(layer.intermediate.dense, keep, 0)
    layer.output.dense = _slice_linear(layer.output.dense, keep, 1)


def layer_shapes(model: nn.Module) -> list[dict[str, int]]:
    """Heads and feed-forward neurons each layer computes, read from its weights: [{"heads", "intermediate"}, ...]."""
    head_size = model.config.hidden_size // model.config.num_attention_heads
    return [{"heads": layer.attention.self.query.out_features // head_size,
             "intermediate": layer.intermediate.dense.out_features} for layer in model.bert.encoder.layer]


def record_layer_shapes(model: nn.Module) -> None:
    """Write the model's per-layer shape into its config (LAYER_SHAPES_KEY), so that `load_student` rebuilds it."""
    if hasattr(model.config, PRUNED_HEADS_KEY):
        delattr(model.config, PRUNED_HEADS_KEY)  # the per-layer shapes say it, layer by layer
    setattr(model.config, LAYER_SHAPES_KEY, layer_shapes(model))


def head_importance(layer: nn.Module, head_size: int) -> torch.Tensor:
    """Data-free importance of each head: ||value rows|| x ||output-projection columns||.  # (heads,)"""
    value = layer.attention.self.value.weight.detach()  # (heads * head_size, hidden)
    output = layer.attention.output.dense.weight.detach()  # (hidden, heads * head_size)
    heads = value.shape[0] // head_size
    value_norm = value.view(heads, head_size, -1).pow(2).sum(dim=(1, 2)).sqrt()  # (heads,)
    output_norm = output.view(output.shape[0], heads, head_size).pow(2).sum(dim=(0, 2)).sqrt()  # (heads,)
    return value_norm * output_norm


def neuron_importance(layer: nn.Module) -> torch.Tensor:
    """Data-free importance of each feed-forward neuron.  # (intermediate,)"""
    up = layer.intermediate.dense.weight.detach()  # (intermediate, hidden)
    down = layer.output.dense.weight.detach()  # (hidden, intermediate)
    return up.norm(dim=1) * down.norm(dim=0)


def _copy_from_teacher(student_model: nn.Module, teacher_model: nn.Module, shape: ResolvedShape,
                       importance: Any = None, score: str = "magnitude") -> None:
    """Copy embeddings, chosen layers (pruned to the student's heads/neurons) and the QA head.

    Heads and neurons are kept by `importance` (importance.Importance, its `score`) when given, else by magnitude.
    """
    student_bert, teacher_bert = student_model.bert, teacher_model.bert
    student_bert.embeddings.load_state_dict(teacher_bert.embeddings.state_dict())
    for student_index, teacher_index in enumerate(shape.teacher_layers):
        teacher_layer = teacher_bert.encoder.layer[teacher_index]
        student_layer = student_bert.encoder.layer[student_index]
        state = {name: tensor.clone() for name, tensor in teacher_layer.state_dict().items()}
        if shape.intermediate_size < teacher_layer.intermediate.dense.out_features:
            scores = (importance.neuron_scores(score, student_index) if importance is not None
                      else neuron_importance(teacher_layer))
            keep = torch.topk(scores, shape.intermediate_size).indices.sort().values
            state["intermediate.dense.weight"] = state["intermediate.dense.weight"][keep]
            state["intermediate.dense.bias"] = state["intermediate.dense.bias"][keep]
            state["output.dense.weight"] = state["output.dense.weight"][:, keep]
        student_layer.load_state_dict(state)
        total_heads = shape.hidden_size // shape.head_size
        if shape.num_attention_heads < total_heads:
            scores = (importance.head_scores(score, student_index) if importance is not None
                      else head_importance(teacher_layer, shape.head_size))
            keep_heads = torch.topk(scores, shape.num_attention_heads).indices.tolist()
            shrink_attention_heads(student_layer, keep_heads, shape.head_size)
    student_model.qa_outputs.weight.data.copy_(teacher_model.qa_outputs.weight.data)
    student_model.qa_outputs.bias.data.copy_(teacher_model.qa_outputs.bias.data)


def build_student(student: StudentConfig, teacher_config: Any, teacher_model: nn.Module | None = None, seed: int = 0,
                  importance: Any = None):
    """A BertForQuestionAnswering student. `teacher_model` is needed for init=teacher/prune.

    `importance` (importance.Importance of the same teacher layers): required by init=prune with a measured
    `prune_score` (gradient, fisher); see importance.importance_for_student.
    """
    from transformers import BertForQuestionAnswering

    shape = resolve_shape(student, teacher_config)
    if shape.teacher_layers and teacher_model is None:
        raise StudentShapeError(f"student.init={student.init} needs the teacher model's weights")
    measured = student.init == "prune" and student.prune_score != "magnitude"
    if measured and importance is None:
        raise StudentShapeError(
            f"student.prune_score={student.prune_score} needs importance measured on training windows "
            "(tune-distill distill measures it; importance.importance_for_student); use student.prune_score=magnitude "
            "for a data-free student")
    if measured and tuple(importance.teacher_layers) != shape.teacher_layers:
        raise StudentShapeError(f"student.layer_selection: the measured importance is of teacher layers "
                                f"{list(importance.teacher_layers)}, the student copies {list(shape.teacher_layers)}")
    torch.manual_seed(seed)
    config = _hf_config(student, shape, teacher_config)
    model = BertForQuestionAnswering(config)
    if shape.teacher_layers:
        _copy_from_teacher(model, teacher_model, shape, importance if measured else None, student.prune_score)
    _attach_qa_dropout(model, student.qa_dropout)
    log.info(
        "student: %d layers, hidden %d, %d heads, intermediate %d, init=%s %s -> %s parameters",
        shape.num_hidden_layers,
        shape.hidden_size,
        shape.num_attention_heads,
        shape.intermediate_size,
        student.init,
        f"teacher layers {list(shape.teacher_layers)}" if shape.teacher_layers else "",
        f"{count_parameters(model)['parameters']:,}",
    )
    return model


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable parameters, embeddings included, and the non-embedding share (exact, no double counting)."""
    seen: set[int] = set()
    total = non_embedding = 0
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad or id(parameter) in seen:
            continue
        seen.add(id(parameter))
        total += parameter.numel()
        if ".embeddings." not in f".{name}":
            non_embedding += parameter.numel()
    return {"parameters": total, "non_embedding_parameters": non_embedding}


def shape_parameters(shape: ResolvedShape, teacher_config: Any) -> dict[str, int]:
    """The parameter counts `count_parameters` gives for a student of `shape`, computed without building it.

    For plans and simulations (sweep/simulated.py), where building a model per trial would cost more than the
    trial. A BertForQuestionAnswering without pooler: embeddings (word, position, token type, LayerNorm), per
    layer the kept heads' query/key/value and output projection, two LayerNorms and the feed-forward pair, then
    the span head (hidden -> 2); tests/test_student.py checks it against built students.
    """
    hidden, attention = shape.hidden_size, shape.num_attention_heads * shape.head_size
    embeddings = (teacher_config.vocab_size + teacher_config.max_position_embeddings
                  + getattr(teacher_config, "type_vocab_size", 2) + 2) * hidden
    per_layer = (3 * (hidden * attention + attention) + attention * hidden + hidden + 2 * hidden
                 + 2 * hidden * shape.intermediate_size + shape.intermediate_size + hidden + 2 * hidden)
    non_embedding = shape.num_hidden_layers * per_layer + 2 * hidden + 2
    return {"parameters": embeddings + non_embedding, "non_embedding_parameters": non_embedding}


def _pruned_skeleton(config: Any):
    """An untrained BertForQuestionAnswering of the shape the config records (uniform heads or per-layer shapes)."""
    from transformers import BertForQuestionAnswering

    model = BertForQuestionAnswering(config)
    head_size = config.hidden_size // config.num_attention_heads
    shapes = getattr(config, LAYER_SHAPES_KEY, None)
    if shapes:
        if len(shapes) != len(model.bert.encoder.layer):
            raise ValueError(f"{LAYER_SHAPES_KEY}: {len(shapes)} layer shapes for {config.num_hidden_layers} layers")
        for layer, shape in zip(model.bert.encoder.layer, shapes):
            shrink_attention_heads(layer, list(range(int(shape["heads"]))), head_size)
            shrink_feed_forward(layer, list(range(int(shape["intermediate"]))))
    else:
        for layer in model.bert.encoder.layer:
            shrink_attention_heads(layer, list(range(getattr(config, PRUNED_HEADS_KEY))), head_size)
    return model


def has_pruned_shape(config: Any) -> bool:
    """Whether a config describes a pruned student that only `load_student` can rebuild."""
    return bool(getattr(config, PRUNED_HEADS_KEY, None) or getattr(config, LAYER_SHAPES_KEY, None))


def load_student(directory: str | Path):
    """Load a saved student, re-applying the pruned shape recorded in its config (uniform pruned heads,
    PRUNED_HEADS_KEY, or per-layer heads and neurons, LAYER_SHAPES_KEY); the weights must fit it exactly."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, BertForQuestionAnswering

    directory = Path(directory)
    config = AutoConfig.from_pretrained(str(directory))
    if not has_pruned_shape(config):
        model = BertForQuestionAnswering.from_pretrained(str(directory))
    else:
        model = _pruned_skeleton(config)
        state = load_file(str(directory / "model.safetensors"))
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as error:  # a tensor of another shape
            raise ValueError(f"{directory}: weights do not match the saved config ({error})") from None
        if unexpected or [name for name in missing if "position_ids" not in name]:
            raise ValueError(f"{directory}: weights do not match the saved config "
                             f"(missing {missing}, unexpected {unexpected})")
    dropout = getattr(config, "classifier_dropout", None) or 0.0
    _attach_qa_dropout(model, float(dropout))
    return model


def save_student(model: nn.Module, directory: str | Path, tokenizer=None) -> Path:
    """Save weights (safetensors) and config, plus the tokenizer if given."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    return directory


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `tune-distill student`."""
    parser.add_argument("--teacher", required=True, help="teacher directory or hub id")
    add_config_arguments(parser)  # its student section and distill.seed are used


def command(args: argparse.Namespace) -> dict[str, int]:
    """Build the student the options describe; print and return its parameter counts."""
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    config = load_config(args.config, args.set)
    teacher_config = AutoConfig.from_pretrained(args.teacher)
    teacher = None
    if config.student.init != "random":
        teacher = AutoModelForQuestionAnswering.from_pretrained(args.teacher)
    model = build_student(config.student, teacher_config, teacher, seed=config.distill.seed)
    counts = count_parameters(model)
    print(counts)
    return counts
