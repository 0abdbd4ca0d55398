"""Pruning by measured importance (importance.py): what it ranks, what it keeps, what it caches."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from tune_distill import importance as importance_module
from tune_distill.config import StudentConfig, load_config
from tune_distill.data import load_features
from tune_distill.export import pad_pruned_heads
from tune_distill.importance import importance_for_student, mask_tuning, measure_importance, tune_pruned_student
from tune_distill.run import run_distillation, training_settings
from tune_distill.student import (
    StudentShapeError,
    build_student,
    head_importance,
    load_student,
    save_student,
)

HEAD_SIZE = 8  # tiny model: hidden 32, 4 heads


@pytest.fixture
def teacher(tiny_qa_model_dir):
    return AutoModelForQuestionAnswering.from_pretrained(str(tiny_qa_model_dir)).eval()


@pytest.fixture
def windows(tiny_qa_model_dir, tiny_squad_file):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_qa_model_dir))
    return load_features([str(tiny_squad_file)], tokenizer, kind="train", max_seq_length=48, doc_stride=16,
                         max_query_length=16, cache_dir=None)


def _inputs(batch: int = 2, seq_len: int = 12) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {"input_ids": torch.randint(5, 60, (batch, seq_len), generator=generator),  # (batch, seq_len)
            "attention_mask": torch.ones(batch, seq_len, dtype=torch.long)}  # (batch, seq_len)


def _measured(student: StudentConfig, teacher, windows, **kwargs):
    return importance_for_student(student, "unused-teacher-path", teacher, windows, **kwargs)


def test_keeping_every_head_and_neuron_reproduces_the_teacher_exactly(teacher, windows):
    student = StudentConfig(num_hidden_layers=4, init="prune", layer_selection="first", prune_score="gradient",
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    measured = _measured(student, teacher, windows)
    model = build_student(student, teacher.config, teacher, importance=measured).eval()
    with torch.no_grad():
        ours, theirs = model(**_inputs()), teacher(**_inputs())
    assert torch.equal(ours.start_logits, theirs.start_logits) and torch.equal(ours.end_logits, theirs.end_logits)


def test_a_head_that_cannot_change_the_output_is_ranked_last_whatever_its_weights(teacher, windows):
    """Head 1 of layer 0 writes only the constant direction, which the LayerNorm after it removes: a useless
    head with large weights. Head 3 of layer 1 has its output-projection columns zeroed."""
    columns = slice(1 * HEAD_SIZE, 2 * HEAD_SIZE)
    with torch.no_grad():
        dense = teacher.bert.encoder.layer[0].attention.output.dense.weight  # (hidden, heads * head_size)
        dense[:, columns] = 5.0  # every column a multiple of the all-ones vector
        teacher.bert.encoder.layer[0].attention.self.value.weight[columns] *= 10.0
        teacher.bert.encoder.layer[1].attention.output.dense.weight[:, 3 * HEAD_SIZE:] = 0.0
    copy = build_student(StudentConfig(num_hidden_layers=4, init="teacher", layer_selection="first",
                                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
                         teacher.config, teacher)
    measured = measure_importance(copy, windows, teacher=teacher, windows=64)
    for score in ("gradient", "fisher"):
        assert int(measured.head_scores(score, 0).argmin()) == 1
        assert int(measured.head_scores(score, 1).argmin()) == 3
        assert float(measured.head_scores(score, 1)[3]) == 0.0
    # the data-free score is fooled by the large weights: it ranks that head first
    assert int(head_importance(teacher.bert.encoder.layer[0], HEAD_SIZE).argmax()) == 1
    # pruned to 3 heads, the measured score drops the useless head
    student = StudentConfig(num_hidden_layers=4, init="prune", layer_selection="first", prune_score="gradient",
                            num_attention_heads=3)
    kept = build_student(student, teacher.config, teacher, importance=dataclasses.replace(
        measured, teacher_layers=(0, 1, 2, 3)))
    value = kept.bert.encoder.layer[0].attention.self.value.weight  # (3 * head_size, hidden)
    original = teacher.bert.encoder.layer[0].attention.self.value.weight
    kept_heads = [head for head in range(4) if any(torch.equal(value[row * HEAD_SIZE:(row + 1) * HEAD_SIZE],
                                                               original[head * HEAD_SIZE:(head + 1) * HEAD_SIZE])
                                                   for row in range(3))]
    assert kept_heads == [0, 2, 3]


def test_a_dead_feed_forward_neuron_is_ranked_last(teacher, windows):
    with torch.no_grad():
        teacher.bert.encoder.layer[2].output.dense.weight[:, 17] = 0.0  # neuron 17 writes nothing
    copy = build_student(StudentConfig(num_hidden_layers=4, init="teacher", layer_selection="first"),
                         teacher.config, teacher)
    measured = measure_importance(copy, windows, teacher=teacher, windows=64)
    scores = measured.neuron_scores("gradient", 2)
    assert int(scores.argmin()) == 17 and float(scores[17]) == 0.0 and float(scores.min()) < float(scores.median())


def test_importance_is_measured_once_per_teacher_layers_and_data_then_read_from_the_cache(
        teacher, windows, tiny_qa_model_dir, tmp_path, monkeypatch):
    student = StudentConfig(num_hidden_layers=2, init="prune", layer_selection="1,3", prune_score="fisher",
                            num_attention_heads=2, intermediate_size=40, prune_windows=5)
    first = importance_for_student(student, str(tiny_qa_model_dir), teacher, windows, cache_dir=tmp_path)
    assert first.path is not None and first.path.parent == tmp_path / "importance" and first.windows == 5
    assert first.teacher_layers == (1, 3) and first.heads["fisher"].shape == (2, 4)
    assert first.neurons["gradient"].shape == (2, 64)

    def must_not_run(*args, **kwargs):
        raise AssertionError("measured again instead of read from the cache")

    monkeypatch.setattr(importance_module, "measure_importance", must_not_run)
    again = importance_for_student(dataclasses.replace(student, num_attention_heads=3, prune_score="gradient"),
                                   str(tiny_qa_model_dir), teacher, windows, cache_dir=tmp_path)
    assert again.path == first.path
    assert all((again.heads[name] == first.heads[name]).all() for name in ("gradient", "fisher"))
    with pytest.raises(AssertionError, match="measured again"):  # another layer choice is another key
        importance_for_student(dataclasses.replace(student, layer_selection="0,3"), str(tiny_qa_model_dir),
                               teacher, windows, cache_dir=tmp_path)
    assert importance_for_student(dataclasses.replace(student, prune_score="magnitude"), str(tiny_qa_model_dir),
                                  teacher, windows, cache_dir=tmp_path) is None


def test_a_measured_score_without_measurements_or_of_other_layers_is_refused(teacher, windows):
    student = StudentConfig(num_hidden_layers=2, init="prune", prune_score="gradient", num_attention_heads=2)
    with pytest.raises(StudentShapeError, match="prune_score=gradient needs importance measured"):
        build_student(student, teacher.config, teacher)
    other = _measured(dataclasses.replace(student, layer_selection="first"), teacher, windows)
    with pytest.raises(StudentShapeError, match=r"importance is of teacher layers \[0, 1\]"):
        build_student(student, teacher.config, teacher, importance=other)
    with pytest.raises(StudentShapeError, match="student.prune_score: expected one of"):
        build_student(dataclasses.replace(student, prune_score="norm"), teacher.config, teacher)


def test_a_pruned_student_saves_loads_and_pads_for_export_as_before(teacher, windows, tiny_qa_model_dir, tmp_path):
    student = StudentConfig(num_hidden_layers=2, init="prune", prune_score="gradient", num_attention_heads=2,
                            intermediate_size=24, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = build_student(student, teacher.config, teacher, importance=_measured(student, teacher, windows)).eval()
    save_student(model, tmp_path / "model", AutoTokenizer.from_pretrained(str(tiny_qa_model_dir)))
    loaded = load_student(tmp_path / "model").eval()
    padded = pad_pruned_heads(loaded).eval()
    with torch.no_grad():
        expected = model(**_inputs()).start_logits
        assert torch.equal(loaded(**_inputs()).start_logits, expected)
        assert torch.allclose(padded(**_inputs()).start_logits, expected, atol=1e-5)
    assert loaded.bert.encoder.layer[0].intermediate.dense.out_features == 24
    assert padded.config.num_attention_heads == 4


def test_mask_tuning_of_a_student_that_keeps_everything_changes_nothing(teacher, windows):
    student = StudentConfig(num_hidden_layers=4, init="prune", layer_selection="first", prune_rescale=True,
                            prune_windows=64)
    model = build_student(student, teacher.config, teacher).eval()
    scales = tune_pruned_student(model, student, teacher, windows)
    assert len(scales) == 4
    for layer in scales:
        assert torch.allclose(layer["heads"], torch.ones(4), atol=1e-4)
        assert torch.allclose(layer["neurons"], torch.ones(64), atol=1e-3)
    with torch.no_grad():
        assert torch.allclose(model(**_inputs()).start_logits, teacher(**_inputs()).start_logits, atol=1e-4)
    assert tune_pruned_student(model, dataclasses.replace(student, prune_rescale=False), teacher, windows) is None


def _attention_error(pruned, full, windows) -> float:
    """Squared error of layer 0's attention output (before residual and LayerNorm) against the full copy's."""
    from tune_distill.data import collate, model_inputs

    outputs = []
    hooks = [model.bert.encoder.layer[0].attention.output.dense.register_forward_hook(
        lambda module, inputs, output: outputs.append(output)) for model in (pruned, full)]
    batch = collate(model_inputs(windows), list(range(len(windows))), 0)
    with torch.no_grad():
        pruned(**batch)
        full(**batch)
    for hook in hooks:
        hook.remove()
    real = batch["attention_mask"].bool()  # (batch, seq_len)
    return float(((outputs[0] - outputs[1])[real]).pow(2).sum())


def test_mask_tuning_reconstructs_the_unpruned_layers_better_than_plain_pruning(teacher, windows):
    student = StudentConfig(num_hidden_layers=2, init="prune", num_attention_heads=2, intermediate_size=24,
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    full = build_student(dataclasses.replace(student, init="teacher", num_attention_heads=0, intermediate_size=0),
                         teacher.config, teacher).eval()
    plain = build_student(student, teacher.config, teacher).eval()
    tuned = build_student(student, teacher.config, teacher).eval()
    scales = mask_tuning(tuned, full, windows, windows=len(windows))
    assert [tuple(layer["heads"].shape) + tuple(layer["neurons"].shape) for layer in scales] == [(2, 24)] * 2
    before, after = _attention_error(plain, full, windows), _attention_error(tuned, full, windows)
    assert after < before  # least squares over these very windows: never worse than the unscaled 1
    assert not torch.equal(tuned.bert.encoder.layer[0].output.dense.weight,
                           plain.bert.encoder.layer[0].output.dense.weight)


def test_a_run_prunes_by_measured_importance_and_old_checkpoints_keep_their_settings(
        tiny_qa_model_dir, tiny_squad_file, tmp_path):
    overrides = [f"teacher.path={tiny_qa_model_dir}", f"data.train_files=[{tiny_squad_file}]",
                 f"data.val_file={tiny_squad_file}", f"data.cache_dir={tmp_path / 'cache'}",
                 "data.max_seq_length=48", "data.doc_stride=16", "data.max_query_length=16",
                 "student.num_hidden_layers=2", "student.init=prune", "student.num_attention_heads=2",
                 "student.intermediate_size=32", "student.prune_score=gradient", "student.prune_rescale=true",
                 "distill.max_steps=2", "distill.train_batch_size=4"]
    config = load_config(None, overrides)
    metrics = run_distillation(config, tmp_path / "run", measure_latency=False)
    assert len(list((tmp_path / "cache" / "importance").glob("*.npz"))) == 1
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert saved["intermediate_size"] == 32 and metrics["step"] == 2
    assert load_student(tmp_path / "run" / "model").bert.encoder.layer[1].attention.self.query.out_features == 16
    assert training_settings(config)["student.prune_score"] == "gradient"
    assert training_settings(config)["student.prune_rescale"] is True
    magnitude = load_config(None, [*overrides[:-4], "distill.max_steps=2", "distill.train_batch_size=4"])
    assert not {"student.prune_score", "student.prune_rescale"} & set(training_settings(magnitude))  # as before
