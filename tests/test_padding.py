"""Padding: a run pads its batches to a few fixed widths (distill.pad_multiple), in training, evaluation and
the teacher's logits, so a GPU meets a handful of shapes; padding is masked, so results do not change."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoTokenizer

from tune_distill.config import DistillConfig, StudentConfig
from tune_distill.data import RUN_PAD_MULTIPLE, collate, lengths, load_features, model_inputs, pad_widths
from tune_distill.distill import train
from tune_distill.runtime import qa_logits, resolve_pad_multiple
from tune_distill.student import build_student
from tune_distill.teacher import teacher_logits

# one window per step, every window once: the run meets every length of the data
CONFIG = DistillConfig(learning_rate=1e-3, train_batch_size=1, warmup_steps=2, eval_every_steps=5, alpha_ce=0.5,
                       temperature=2.0, seed=3, num_threads=1)


def test_a_run_has_a_few_fixed_widths():
    # auto (0): 64 on a GPU, where every new shape costs a slow first step; 8 on CPU, where it costs nothing
    assert DistillConfig().pad_multiple == 0
    assert resolve_pad_multiple(0, torch.device("cuda")) == RUN_PAD_MULTIPLE == 64
    assert resolve_pad_multiple(0, torch.device("cpu")) == 8 and resolve_pad_multiple(32, torch.device("cpu")) == 32
    assert pad_widths(range(1, 385)) == (64, 128, 192, 256, 320, 384)  # 6 shapes at max_seq_length 384
    assert pad_widths([300, 17]) == (64, 128, 192, 256, 304)  # capped at the longest row (rounded up to 8)
    assert pad_widths([384], 8) == tuple(range(8, 385, 8))  # the old padding: 48 widths
    with pytest.raises(ValueError, match="distill.pad_multiple"):
        pad_widths([10], 0)


def test_collate_pads_to_the_smallest_fixed_width_that_holds_the_batch(tiny_squad_file, tiny_tokenizer):
    features = load_features([str(tiny_squad_file)], tiny_tokenizer, kind="train", max_seq_length=96, doc_stride=32,
                             max_query_length=16, cache_dir=None)
    columns = model_inputs(features)
    widths = pad_widths(columns["input_ids"].lengths, 32)
    assert widths == (32, 64, 96)
    for index, length in enumerate(columns["input_ids"].lengths):
        width = collate(columns, [index], 0, widths=widths)["input_ids"].shape[1]
        assert width == min(w for w in widths if w >= length)
    with pytest.raises(ValueError, match="longer than the widest pad width 64"):
        collate(columns, [int(np.argmax(columns["input_ids"].lengths))], 0, widths=(32, 64))


@pytest.fixture
def setup(tiny_qa_model_dir, tiny_squad_file, tmp_path):
    """Tiny teacher and its train features at 96 tokens: window lengths 32 to 96."""
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_qa_model_dir))
    teacher_model = AutoModelForQuestionAnswering.from_pretrained(str(tiny_qa_model_dir)).eval()
    features = load_features([str(tiny_squad_file)], tokenizer, kind="train", max_seq_length=96, doc_stride=32,
                             max_query_length=16, cache_dir=tmp_path / "cache")
    return teacher_model, AutoConfig.from_pretrained(str(tiny_qa_model_dir)), features


def _shape_recorder(model: torch.nn.Module) -> set[tuple[int, int]]:
    """The (batch, length) shapes the model's forward is called with, collected as it runs."""
    shapes: set[tuple[int, int]] = set()
    model.register_forward_pre_hook(lambda module, args, kwargs: shapes.add(tuple(kwargs["input_ids"].shape)),
                                    with_kwargs=True)
    return shapes


def _train(setup, tmp_path, pad_multiple: int):
    teacher_model, teacher_config, features = setup
    logits = teacher_logits("tiny-teacher", features, cache_dir=None, model=teacher_model, batch_size=4)
    # no dropout: its random masks are drawn over the padded width, so they differ between paddings
    student_config = StudentConfig(num_hidden_layers=2, init="teacher", hidden_dropout_prob=0.0,
                                   attention_probs_dropout_prob=0.0)
    student = build_student(student_config, teacher_config, teacher_model, seed=0)
    shapes = _shape_recorder(student)
    config = dataclasses.replace(CONFIG, max_steps=len(features), pad_multiple=pad_multiple)
    result = train(student, features, config, teacher=logits, out_dir=tmp_path / f"run{pad_multiple}")
    return shapes, result


def test_a_training_run_sees_only_its_fixed_widths(setup, tmp_path):
    features = setup[2]
    assert len(set(lengths(features).tolist())) > 4  # lengths 32, 35, 37, 66, 71, 91, 95, 96
    shapes, result = _train(setup, tmp_path, RUN_PAD_MULTIPLE)  # a GPU's default
    assert {length for _, length in shapes} <= set(pad_widths(lengths(features))) == {64, 96}
    assert len(shapes) <= len(pad_widths(lengths(features)))
    old_shapes, old_result = _train(setup, tmp_path, 8)  # the old padding, same data and batches
    assert len(old_shapes) > len(shapes)
    # padding is masked: the same losses, up to float rounding
    assert [r["train_loss"] for r in result.history] == pytest.approx([r["train_loss"] for r in old_result.history],
                                                                       rel=1e-4)


def test_evaluation_and_teacher_logits_see_only_the_fixed_widths_and_do_not_depend_on_them(setup):
    teacher_model, _, features = setup
    shapes = _shape_recorder(teacher_model)
    start, end = qa_logits(teacher_model, features, batch_size=1, pad_multiple=RUN_PAD_MULTIPLE)
    assert {length for _, length in shapes} <= set(pad_widths(lengths(features)))
    shapes.clear()
    old_start, old_end = qa_logits(teacher_model, features, batch_size=1, pad_multiple=8)
    assert len({length for _, length in shapes}) > len(pad_widths(lengths(features)))
    assert np.allclose(start.values, old_start.values, atol=1e-4) and np.allclose(end.values, old_end.values, atol=1e-4)
