"""Distillation: the loss, the optimiser and schedule, determinism, resume, the loss curve."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoTokenizer

from tune_distill import teacher
from tune_distill.config import ConfigError, DistillConfig, StudentConfig, load_config
from tune_distill.data import load_features
from tune_distill.distill import (
    distillation_loss,
    make_optimizer,
    make_scheduler,
    train,
)
from tune_distill.student import build_student
from tune_distill.teacher import teacher_logits


def _logits(batch=3, seq_len=7, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, seq_len, generator=generator) * 3  # (batch, seq_len)


def test_kl_is_zero_when_logits_agree():
    start, end = _logits(seed=0), _logits(seed=1)
    mask = torch.ones_like(start, dtype=torch.long)
    positions = torch.tensor([0, 2, 4])
    loss, parts = distillation_loss(start, end, start.clone(), end.clone(), positions, positions, mask, 1.0, 3.0)
    assert parts["kl"] == pytest.approx(0.0, abs=1e-6)
    assert float(loss) == pytest.approx(0.0, abs=1e-5)


def test_kl_term_is_scaled_by_temperature_squared():
    student_start, student_end = _logits(seed=0), _logits(seed=1)
    teacher_start, teacher_end = _logits(seed=2), _logits(seed=3)
    mask = torch.ones_like(student_start, dtype=torch.long)
    positions = torch.tensor([1, 2, 3])
    temperature = 4.0

    def reference_kl(student, teacher):
        p = F.softmax(teacher / temperature, dim=-1)
        return (p * (p.log() - F.log_softmax(student / temperature, dim=-1))).sum(-1).mean()

    expected_kl = (reference_kl(student_start, teacher_start) + reference_kl(student_end, teacher_end)) / 2
    loss, parts = distillation_loss(student_start, student_end, teacher_start, teacher_end, positions, positions,
                                    mask, 1.0, temperature)
    assert parts["kl"] == pytest.approx(float(expected_kl), rel=1e-5)
    assert float(loss) == pytest.approx(temperature**2 * float(expected_kl), rel=1e-5)

    expected_ce = (F.cross_entropy(student_start, positions) + F.cross_entropy(student_end, positions)) / 2
    mixed, _ = distillation_loss(student_start, student_end, teacher_start, teacher_end, positions, positions,
                                 mask, 0.25, temperature)
    expected = 0.25 * temperature**2 * float(expected_kl) + 0.75 * float(expected_ce)
    assert float(mixed) == pytest.approx(expected, rel=1e-5)


def test_padding_positions_do_not_count():
    start, end = _logits(seed=0), _logits(seed=1)
    mask = torch.ones_like(start, dtype=torch.long)
    mask[:, 5:] = 0
    positions = torch.tensor([0, 1, 2])
    teacher_start, teacher_end = start.clone(), end.clone()
    teacher_start[:, 5:] = 100.0  # garbage beyond the mask
    loss_a, _ = distillation_loss(start, end, teacher_start, teacher_end, positions, positions, mask, 0.5, 2.0)
    shifted = start.clone()
    shifted[:, 5:] = -50.0
    loss_b, parts = distillation_loss(shifted, end, teacher_start, teacher_end, positions, positions, mask, 0.5, 2.0)
    assert float(loss_a) == pytest.approx(float(loss_b), rel=1e-6)
    assert parts["kl"] == pytest.approx(0.0, abs=1e-6)


def test_loss_needs_teacher_logits_to_distil():
    start = _logits()
    mask = torch.ones_like(start, dtype=torch.long)
    positions = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="teacher logits"):
        distillation_loss(start, start, None, None, positions, positions, mask, 0.5, 2.0)


def test_optimizer_uses_every_configured_hyperparameter():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    config = DistillConfig(learning_rate=3e-4, adam_beta1=0.8, adam_beta2=0.95, adam_epsilon=1e-7, weight_decay=0.05)
    optimizer = make_optimizer(model, config)
    decay_group, no_decay_group = optimizer.param_groups
    assert decay_group["betas"] == (0.8, 0.95) and decay_group["eps"] == 1e-7 and decay_group["lr"] == 3e-4
    assert decay_group["weight_decay"] == 0.05 and no_decay_group["weight_decay"] == 0.0
    assert len(decay_group["params"]) == 1 and len(no_decay_group["params"]) == 3  # weight vs bias, LN weight, LN bias


def test_schedule_warms_up_then_decays_to_zero():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=1.0)
    scheduler = make_scheduler(optimizer, warmup=4, total_steps=10)
    rates = []
    for _ in range(10):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert rates[5:] == pytest.approx([5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
    assert scheduler.get_last_lr()[0] == 0.0


@pytest.mark.parametrize("field, value, expected", [
    ("learning_rate", 0.0, "> 0"), ("adam_beta1", 1.0, ">= 0.0 and < 1.0"), ("adam_beta2", 1.0, ">= 0.0 and < 1.0"),
    ("adam_epsilon", 0.0, "> 0"), ("weight_decay", -0.1, ">= 0"), ("alpha_ce", 1.5, ">= 0.0 and <= 1.0"),
    ("temperature", 0.0, "> 0"), ("temperature", -1.0, "> 0"), ("train_batch_size", 0, ">= 1"),
    ("eval_batch_size", 0, ">= 1"), ("num_train_epochs", 0.0, "> 0"), ("warmup_steps", -1, ">= 0"),
    ("warmup_ratio", 1.0, ">= 0.0 and < 1.0"), ("warmup_ratio", 1.5, ">= 0.0 and < 1.0"),
    ("max_grad_norm", -1.0, ">= 0")])
def test_a_setting_that_cannot_train_is_refused_where_it_enters(field, value, expected):
    """Training settings are checked once, when they enter the config (config.RANGES), naming the field."""
    with pytest.raises(ConfigError, match=re.escape(f"distill.{field}: must be {expected}, got {value!r}")):
        load_config(overrides=[f"distill.{field}={value}"])


@pytest.fixture
def setup(tiny_qa_model_dir, tiny_squad_file, tmp_path):
    """Tiny teacher, its train features (short windows: several per context) and cached logits."""
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_qa_model_dir))
    teacher_model = AutoModelForQuestionAnswering.from_pretrained(str(tiny_qa_model_dir)).eval()
    features = load_features([str(tiny_squad_file)], tokenizer, kind="train", max_seq_length=48, doc_stride=16,
                             max_query_length=16, cache_dir=tmp_path / "cache")
    logits = teacher_logits(str(tiny_qa_model_dir), features, cache_dir=tmp_path / "cache", model=teacher_model,
                            batch_size=4)
    teacher_config = AutoConfig.from_pretrained(str(tiny_qa_model_dir))
    return teacher_model, teacher_config, features, logits


def _student(setup, seed=0):
    teacher_model, teacher_config, _, _ = setup
    return build_student(StudentConfig(num_hidden_layers=2, init="teacher"), teacher_config, teacher_model, seed=seed)


CONFIG = DistillConfig(learning_rate=1e-3, train_batch_size=4, max_steps=9, eval_every_steps=3, warmup_steps=2,
                       alpha_ce=0.5, temperature=2.0, seed=7, num_threads=1)


def test_cached_logits_match_a_fresh_teacher_pass(setup, tiny_qa_model_dir, tmp_path, monkeypatch):
    teacher_model, _, features, logits = setup
    assert len(logits.start) == len(features) and len(features) > 7  # several windows per long context
    row = features.table.slice(3, 1).to_pylist()[0]
    with torch.no_grad():
        output = teacher_model(input_ids=torch.tensor([row["input_ids"]]),
                               token_type_ids=torch.tensor([row["token_type_ids"]]),
                               attention_mask=torch.tensor([row["attention_mask"]]))
    assert torch.allclose(torch.from_numpy(logits.start.row(3).astype("float32")), output.start_logits[0], atol=2e-2)

    runs = []
    real_qa_logits = teacher.qa_logits
    monkeypatch.setattr(teacher, "qa_logits", lambda *args, **kwargs: runs.append(1) or real_qa_logits(*args, **kwargs))
    again = teacher_logits(str(tiny_qa_model_dir), features, cache_dir=tmp_path / "cache", model=teacher_model)
    assert runs == []  # the second call reads the cache: the teacher does not run
    assert again.path == logits.path and again.path.exists()
    assert (again.start.values == logits.start.values).all() and (again.end.values == logits.end.values).all()
    other = teacher_logits("another-teacher", features, cache_dir=tmp_path / "cache", model=teacher_model)
    assert runs == [1] and other.path != logits.path  # another teacher's key misses the cache and runs the model


def test_teacher_logits_command_fills_the_cache_trials_read(setup, tiny_qa_model_dir, tiny_squad_file, tmp_path,
                                                             capsys):
    from tune_distill import cli

    cache = tmp_path / "command-cache"
    assert cli.main(["teacher-logits", "--teacher", str(tiny_qa_model_dir), "--data", str(tiny_squad_file),
                     "--cache-dir", str(cache), "--max-seq-length", "128", "--doc-stride", "32",
                     "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["features"] >= 7 and (Path(printed["cache"]) / "done").is_file()
    assert Path(printed["cache"]).parent == cache / "teacher_logits"


def test_same_seed_same_result(setup, tmp_path):
    _, _, features, logits = setup
    first, second = _student(setup), _student(setup)
    result_a = train(first, features, CONFIG, teacher=logits, out_dir=tmp_path / "a")
    result_b = train(second, features, CONFIG, teacher=logits, out_dir=tmp_path / "b")
    assert [r["train_loss"] for r in result_a.history] == [r["train_loss"] for r in result_b.history]
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name


def test_resume_equals_uninterrupted(setup, tmp_path):
    _, _, features, logits = setup
    uninterrupted = _student(setup)
    train(uninterrupted, features, CONFIG, teacher=logits, out_dir=tmp_path / "whole")

    class Killed(Exception):
        pass

    def kill_after_second_evaluation(record):
        if record["step"] == 6:
            raise Killed

    interrupted = _student(setup)
    with pytest.raises(Killed):
        train(interrupted, features, CONFIG, teacher=logits, out_dir=tmp_path / "killed",
              callback=kill_after_second_evaluation)
    resumed = _student(setup)  # a fresh process would rebuild the student from scratch
    result = train(resumed, features, CONFIG, teacher=logits, out_dir=tmp_path / "killed")
    assert result.step == 9 and [r["step"] for r in result.history] == [3, 6, 9]
    for (name, a), b in zip(uninterrupted.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_callback_can_stop_early_and_sees_evaluations(setup, tmp_path):
    _, _, features, logits = setup
    seen = []

    def evaluator(model, step):
        assert not model.training
        return {"exact": float(step), "_predictions": {"q": "x"}}

    def callback(record):
        seen.append(record)
        return record["step"] >= 6

    result = train(_student(setup), features, CONFIG, teacher=logits, out_dir=tmp_path / "run", evaluator=evaluator,
                   callback=callback)
    assert result.stopped_early and result.step == 6
    assert [r["exact"] for r in seen] == [3.0, 6.0]
    assert all("_predictions" not in r for r in result.history)


def test_loss_curve_is_pinned(setup, tmp_path):
    """The tiny run's loss curve: deterministic, and it learns (pinned values guard the loop's maths)."""
    _, _, features, logits = setup
    config = dataclasses.replace(CONFIG, max_steps=40, eval_every_steps=10, learning_rate=3e-3, length_bucketing=False)
    result = train(_student(setup), features, config, teacher=logits, out_dir=tmp_path / "curve")
    losses = [record["train_loss"] for record in result.history]
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < 0.6 * losses[0]
    assert losses == pytest.approx(PINNED_LOSSES, rel=1e-3)


PINNED_LOSSES = [1.656277, 1.074130, 0.874389, 0.630706]  # recorded with torch 2.13 CPU; rel tol 1e-3


def test_teacherless_training_needs_alpha_zero(setup, tmp_path):
    _, _, features, _ = setup
    with pytest.raises(ValueError, match="teacher"):
        train(_student(setup), features, CONFIG, teacher=None, out_dir=tmp_path / "x")
    result = train(_student(setup), features, dataclasses.replace(CONFIG, alpha_ce=0.0), teacher=None,
                   out_dir=tmp_path / "y")
    assert result.step == 9


# --- the GPU code path of training, exercised as far as a CPU allows -----------------------------------


def test_bf16_autocast_training_runs_and_tracks_fp32(setup, tmp_path):
    """The mixed-precision branch of the training loop (bf16 autocast exists on CPU too); no GradScaler for bf16."""
    _, _, features, logits = setup
    fp32 = train(_student(setup), features, CONFIG, teacher=logits, out_dir=tmp_path / "fp32")
    bf16 = train(_student(setup), features, dataclasses.replace(CONFIG, precision="bf16"), teacher=logits,
                 out_dir=tmp_path / "bf16")
    losses_fp32 = [r["train_loss"] for r in fp32.history if "train_loss" in r]
    losses_bf16 = [r["train_loss"] for r in bf16.history if "train_loss" in r]
    assert len(losses_bf16) == len(losses_fp32) > 0 and all(math.isfinite(x) for x in losses_bf16)
    assert losses_bf16 != losses_fp32  # autocast really changed the arithmetic
    assert max(abs(a - b) for a, b in zip(losses_bf16, losses_fp32)) < 0.1 * max(losses_fp32)
