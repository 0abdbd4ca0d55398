"""Student construction: shapes, initialisations, pruning, parameter counts, bad shapes."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoConfig, AutoModelForQuestionAnswering

from tune_distill.config import StudentConfig
from tune_distill.student import (
    StudentShapeError,
    build_student,
    count_parameters,
    load_student,
    resolve_shape,
    save_student,
    select_teacher_layers,
    shape_parameters,
)


@pytest.fixture
def teacher(tiny_qa_model_dir):
    model = AutoModelForQuestionAnswering.from_pretrained(str(tiny_qa_model_dir)).eval()
    return model, AutoConfig.from_pretrained(str(tiny_qa_model_dir))


def _inputs(vocab_size: int = 60, batch: int = 2, seq_len: int = 12) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        "input_ids": torch.randint(5, vocab_size, (batch, seq_len), generator=generator),  # (batch, seq_len)
        "attention_mask": torch.ones(batch, seq_len, dtype=torch.long),  # (batch, seq_len)
    }


def test_layer_selection_rules():
    assert select_teacher_layers("every_other", 3, 6) == (0, 2, 4)
    assert select_teacher_layers("every_other", 4, 6) == (0, 2, 3, 5)  # too many for stride 2: spread
    assert select_teacher_layers("spread", 3, 7) == (0, 3, 6)
    assert select_teacher_layers("spread", 1, 6) == (5,)
    assert select_teacher_layers("first", 2, 6) == (0, 1)
    assert select_teacher_layers("last", 2, 6) == (4, 5)
    assert select_teacher_layers("1,3", 2, 6) == (1, 3)
    assert select_teacher_layers("spread", 8, 4) == (0, 0, 1, 1, 2, 2, 3, 3)  # deeper than the teacher: repeats


@pytest.mark.parametrize(
    "selection, layers, message",
    [("first", 7, "only 6"), ("0,9", 2, "outside"), ("0,1,2", 2, "3 indices"), ("middle", 2, "expected one of")],
)
def test_layer_selection_errors(selection, layers, message):
    with pytest.raises(StudentShapeError, match=message):
        select_teacher_layers(selection, layers, 6)


def test_teacher_init_copies_chosen_layers_embeddings_and_head(teacher):
    teacher_model, teacher_config = teacher
    student = build_student(StudentConfig(num_hidden_layers=2, init="teacher", layer_selection="every_other"),
                            teacher_config, teacher_model)
    for student_index, teacher_index in enumerate((0, 2)):
        student_state = student.bert.encoder.layer[student_index].state_dict()
        teacher_state = teacher_model.bert.encoder.layer[teacher_index].state_dict()
        assert student_state.keys() == teacher_state.keys()
        for name in student_state:
            assert torch.equal(student_state[name], teacher_state[name]), name
    assert torch.equal(student.bert.embeddings.word_embeddings.weight,
                       teacher_model.bert.embeddings.word_embeddings.weight)
    assert torch.equal(student.qa_outputs.weight, teacher_model.qa_outputs.weight)


def test_full_copy_reproduces_teacher_outputs(teacher):
    teacher_model, teacher_config = teacher
    student = build_student(StudentConfig(num_hidden_layers=4, init="teacher", layer_selection="first"),
                            teacher_config, teacher_model).eval()
    inputs = _inputs()
    assert torch.allclose(student(**inputs).start_logits, teacher_model(**inputs).start_logits, atol=1e-6)


def test_prune_keeping_every_head_is_exact_and_fewer_heads_shrink(teacher):
    teacher_model, teacher_config = teacher
    inputs = _inputs()
    keep_all = build_student(StudentConfig(num_hidden_layers=4, init="prune", layer_selection="first",
                                           num_attention_heads=4), teacher_config, teacher_model).eval()
    assert torch.allclose(keep_all(**inputs).end_logits, teacher_model(**inputs).end_logits, atol=1e-6)

    pruned_config = StudentConfig(num_hidden_layers=2, init="prune", num_attention_heads=2, intermediate_size=40)
    pruned = build_student(pruned_config, teacher_config, teacher_model).eval()
    attention = pruned.bert.encoder.layer[0].attention
    head_size = 32 // 4
    assert attention.self.query.weight.shape == (2 * head_size, 32)
    assert attention.output.dense.weight.shape == (32, 2 * head_size)
    assert pruned.bert.encoder.layer[0].intermediate.dense.weight.shape == (40, 32)
    output = pruned(**inputs)
    assert output.start_logits.shape == (2, 12)
    # the kept heads are the teacher's most important ones, with their weights unchanged
    teacher_value = teacher_model.bert.encoder.layer[0].attention.self.value.weight
    kept_rows = attention.self.value.weight
    matches = [torch.equal(kept_rows[i * head_size:(i + 1) * head_size],
                           teacher_value[h * head_size:(h + 1) * head_size])
               for i in range(2) for h in range(4)]
    assert sum(matches) == 2


def test_pruned_student_save_load_round_trip(teacher, tmp_path):
    teacher_model, teacher_config = teacher
    student = build_student(StudentConfig(num_hidden_layers=2, init="prune", num_attention_heads=3, qa_dropout=0.1),
                            teacher_config, teacher_model).eval()
    save_student(student, tmp_path / "student")
    reloaded = load_student(tmp_path / "student").eval()
    inputs = _inputs()
    assert torch.equal(student(**inputs).start_logits, reloaded(**inputs).start_logits)
    assert count_parameters(reloaded) == count_parameters(student)


def test_parameter_count_is_exact(teacher):
    teacher_model, teacher_config = teacher
    student = build_student(StudentConfig(num_hidden_layers=1, init="random", hidden_size=16, num_attention_heads=2,
                                          intermediate_size=24), teacher_config)
    vocab, positions, types = teacher_config.vocab_size, teacher_config.max_position_embeddings, 2
    hidden, inter = 16, 24
    embeddings = (vocab + positions + types) * hidden + 2 * hidden  # + LayerNorm
    layer = 4 * (hidden * hidden + hidden) + 2 * hidden  # Q, K, V, output dense + LayerNorm
    layer += hidden * inter + inter + inter * hidden + hidden + 2 * hidden  # FFN + LayerNorm
    head = hidden * 2 + 2
    counts = count_parameters(student)
    assert counts["parameters"] == embeddings + layer + head
    assert counts["non_embedding_parameters"] == layer + head
    assert counts["parameters"] == sum(p.numel() for p in student.parameters())


@pytest.mark.parametrize("changes", [
    dict(num_hidden_layers=1, init="random", hidden_size=16, num_attention_heads=2, intermediate_size=24),
    dict(num_hidden_layers=2, init="teacher"),
    dict(num_hidden_layers=2, init="prune", num_attention_heads=1, intermediate_size=20, prune_score="magnitude"),
])
def test_parameter_counts_of_a_shape_match_the_built_student(teacher, changes):
    """Plans and simulated sweeps count a shape's parameters without building it: the same figures."""
    teacher_model, teacher_config = teacher
    student = StudentConfig(**changes)
    built = build_student(student, teacher_config, teacher_model)
    assert shape_parameters(resolve_shape(student, teacher_config), teacher_config) == count_parameters(built)


def test_qa_dropout_keeps_state_dict_names(teacher):
    teacher_model, teacher_config = teacher
    with_dropout = build_student(StudentConfig(num_hidden_layers=2, qa_dropout=0.2), teacher_config, teacher_model)
    without = build_student(StudentConfig(num_hidden_layers=2, qa_dropout=0.0), teacher_config, teacher_model)
    assert with_dropout.state_dict().keys() == without.state_dict().keys()


def test_defaults_follow_teacher(teacher):
    _, teacher_config = teacher
    shape = resolve_shape(StudentConfig(num_hidden_layers=2), teacher_config)
    assert (shape.hidden_size, shape.num_attention_heads, shape.intermediate_size) == (32, 4, 64)
    shape = resolve_shape(StudentConfig(num_hidden_layers=2, init="random", hidden_size=24, num_attention_heads=3),
                          teacher_config)
    assert shape.intermediate_size == 96


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"init": "random", "hidden_size": 30, "num_attention_heads": 4}, "not divisible"),
        ({"init": "teacher", "hidden_size": 48}, "must be the teacher's 32"),
        ({"init": "teacher", "num_attention_heads": 2}, "use student.init=prune"),
        ({"init": "prune", "num_attention_heads": 8}, "exceeds the teacher's 4"),
        ({"init": "prune", "intermediate_size": 128}, "exceeds the teacher's 64"),
        ({"init": "copy"}, "student.init"),
        ({"num_hidden_layers": 0}, "num_hidden_layers"),
        ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob"),
        ({"initializer_range": 0.0}, "initializer_range"),
    ],
)
def test_impossible_shapes_are_rejected(teacher, changes, message):
    teacher_model, teacher_config = teacher
    config = dataclasses.replace(StudentConfig(num_hidden_layers=2), **changes)
    with pytest.raises(StudentShapeError, match=message):
        build_student(config, teacher_config, teacher_model)


def test_teacher_init_needs_teacher_weights(teacher):
    _, teacher_config = teacher
    with pytest.raises(StudentShapeError, match="needs the teacher"):
        build_student(StudentConfig(num_hidden_layers=2, init="teacher"), teacher_config, None)


def test_student_command_prints_the_parameter_counts(teacher, tiny_qa_model_dir, capsys):
    from tune_distill import cli

    assert cli.main(["student", "--teacher", str(tiny_qa_model_dir), "--set", "student.num_hidden_layers=2",
                     "--set", "student.init=prune", "--set", "student.num_attention_heads=2"]) == 0
    printed = capsys.readouterr().out.strip()
    model, config = teacher
    expected = build_student(StudentConfig(num_hidden_layers=2, init="prune", num_attention_heads=2), config, model)
    assert printed == str(count_parameters(expected))
