"""One distillation run end to end through the CLI: run folder contents, resume, scratch teacher."""

from __future__ import annotations

import json

import pytest
import yaml

from tune_distill.cli import main
from tune_distill.config import load_config
from tune_distill.run import make_teacher, run_distillation
from tune_distill.student import load_student


def _overrides(teacher_dir, squad_file, cache_dir):
    return [
        f"teacher.path={teacher_dir}",
        f"data.train_files=[{squad_file}]",
        f"data.val_file={squad_file}",
        f"data.cache_dir={cache_dir}",
        "data.max_seq_length=48",
        "data.doc_stride=16",
        "data.max_query_length=16",
        "student.num_hidden_layers=2",
        "distill.max_steps=4",
        "distill.eval_every_steps=2",
        "distill.train_batch_size=4",
        "distill.learning_rate=1e-3",
        "evaluate.latency_seq_length=32",
        "evaluate.latency_batch_sizes=1,4",
        "evaluate.latency_repeats=2",
        "evaluate.latency_warmup=1",
    ]


def test_distill_command_writes_a_complete_run_folder(tiny_qa_model_dir, tiny_squad_file, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["distill", "--out", str(out)]
    for override in _overrides(tiny_qa_model_dir, tiny_squad_file, tmp_path / "cache"):
        args += ["--set", override]
    assert main(args) == 0
    for name in ("config.yaml", "command.txt", "environment.json", "history.jsonl", "metrics.json",
                 "predictions.json", "null_odds.json", "checkpoint/state.pt", "model/model.safetensors",
                 "model/tokenizer.json"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("exact", "f1", "HasAns_exact", "NoAns_exact", "na_threshold", "parameters",
                "non_embedding_parameters", "bytes_on_disk", "latency_ms_b1", "latency_ms_b4"):
        assert key in metrics, key
    assert metrics["step"] == 4 and metrics["val_questions"] == 7
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [2, 4] and history[-1]["exact"] == metrics["exact"]
    predictions = json.loads((out / "predictions.json").read_text())
    assert set(predictions) == {"q-founded", "q-bridge", "q-cathedral", "q-airport", "q-cat", "q-dog-year", "q-bird"}
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["student"]["num_hidden_layers"] == 2 and resolved["distill"]["max_steps"] == 4
    assert "tune-distill distill" in (out / "command.txt").read_text()
    environment = json.loads((out / "environment.json").read_text())
    assert environment["versions"]["torch"] and environment["device"] == "cpu"
    assert load_student(out / "model").config.num_hidden_layers == 2
    printed = capsys.readouterr().out
    assert '"exact"' in printed and str(out) in printed


def test_rerun_of_a_finished_folder_resumes_instead_of_retraining(tiny_qa_model_dir, tiny_squad_file, tmp_path):
    config = load_config(None, _overrides(tiny_qa_model_dir, tiny_squad_file, tmp_path / "cache"))
    first = run_distillation(config, tmp_path / "run", measure_latency=False)
    again = run_distillation(config, tmp_path / "run", measure_latency=False)
    assert again["step"] == first["step"] == 4
    assert again["exact"] == first["exact"] and again["f1"] == first["f1"]
    assert again["train_seconds"] < 1.0  # nothing left to train


def test_a_folder_trained_with_other_settings_is_refused_and_left_as_it_was(tiny_qa_model_dir, tiny_squad_file,
                                                                           tmp_path, capsys):
    out = tmp_path / "run"
    overrides = _overrides(tiny_qa_model_dir, tiny_squad_file, tmp_path / "cache")
    run_distillation(load_config(None, overrides), out, measure_latency=False)
    header = {name: (out / name).read_text() for name in ("config.yaml", "command.txt", "environment.json")}
    args = ["distill", "--out", str(out)]
    for override in [*overrides, "distill.learning_rate=2e-3", "student.num_hidden_layers=1"]:
        args += ["--set", override]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "distill.learning_rate: 0.001 in the checkpoint, 0.002 now" in error and "student.num_hidden_layers" in error
    assert "--no-resume" in error and "Traceback" not in error
    assert {name: (out / name).read_text() for name in header} == header  # the folder does not lie
    # settings that change neither the weights nor the history's scores may differ: the run resumes
    again = run_distillation(load_config(None, [*overrides, "distill.device=cpu", "evaluate.latency_repeats=5",
                                                "distill.eval_batch_size=2"]), out, measure_latency=False)
    assert again["step"] == 4


def test_distill_command_reports_config_errors(capsys):
    assert main(["distill", "--set", "student.num_layers=3"]) == 2
    assert "unknown field 'num_layers'" in capsys.readouterr().err


def test_scratch_teacher_is_a_loadable_qa_model(tiny_squad_file, tmp_path):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    config = load_config(None, [f"data.train_files=[{tiny_squad_file}]", f"data.val_file={tiny_squad_file}",
                                f"data.cache_dir={tmp_path / 'cache'}", "data.max_seq_length=48", "data.doc_stride=16",
                                "data.max_query_length=16", "distill.max_steps=3", "distill.train_batch_size=4"])
    metrics = make_teacher(config, "scratch:hidden=16,layers=1,heads=2,intermediate=32,vocab=200", tmp_path / "teacher")
    assert "exact" in metrics and metrics["parameters"] > 0
    model = AutoModelForQuestionAnswering.from_pretrained(str(tmp_path / "teacher"))
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "teacher"))
    assert model.config.hidden_size == 16 and len(tokenizer) <= 200
    with pytest.raises(ValueError, match="not divisible"):
        make_teacher(config, "scratch:hidden=10,heads=3", tmp_path / "bad")
