"""Export: trial choice rules on a sweep folder, pruned heads padded into a vanilla BERT, ONNX checked.

The sweep folders are written here in the format the sweep package writes (trials.jsonl records with run_dir
and checkpoint, sweep.json with constraints, run folders under tune/trial_NNNN_<id>/run). The pick
rule tests use hand-written scores (they test selection only); the export tests use real tiny
students (pruned and not) scored on the tiny SQuAD file.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import make_tiny_qa_model_dir, tiny_squad_dict

from tune_distill import cli
from tune_distill.config import load_config, to_dict
from tune_distill.data import collate, load_features, model_inputs
from tune_distill.evaluate import postprocess, predict_logits
from tune_distill.export import (
    EXPORT_INFO_FILE,
    ONNX_FILE,
    ONNX_TOLERANCE,
    ExportError,
    choose_trial,
    export_trial,
    onnx_logits,
    onnx_session,
    read_sweep,
    torch_logits,
)
from tune_distill.report import results_frame
from tune_distill.scoring import evaluate_predictions
from tune_distill.student import PRUNED_HEADS_KEY, build_student, count_parameters, load_student, save_student

LENGTHS = {"max_seq_length": 64, "doc_stride": 16, "max_query_length": 16}


def _record(sweep: Path, trial_id: str, number: int, *, status: str = "complete", baseline: bool = False,
            metrics: dict | None = None, params: dict | None = None, run_dir: str | None = None) -> dict:
    """A trials.jsonl line as sweep.experiment.trial_record builds it."""
    trial_dir = sweep / "tune" / f"trial_{number:04d}_{trial_id}"
    return {
        "trial_id": trial_id, "number": number, "kind": "baseline" if baseline else "search", "baseline": baseline,
        "status": status, "params": params or {}, "overrides": params or {}, "metrics": metrics or {},
        "error": "RuntimeError: boom" if status == "failed" else None, "attempts": 1, "duration": 3.0,
        "checkpoint": str(trial_dir / "checkpoint_000001"),
        "run_dir": run_dir if run_dir is not None else str(trial_dir / "run"),
        "node_id": "node", "device": "cpu", "seed": number, "started_at": 0.0, "finished_at": 1.0, "steps_saved": None,
    }


def _write_sweep(sweep: Path, records: list[dict], constraints: list[dict] | None = None) -> None:
    sweep.mkdir(parents=True, exist_ok=True)
    (sweep / "trials.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    settings = {"objectives": [{"name": "exact", "direction": "max"}, {"name": "parameters", "direction": "min"}],
                "constraints": [{"name": "exact", "op": ">=", "bound": 55.0}] if constraints is None else constraints}
    (sweep / "sweep.json").write_text(json.dumps(settings))


# --------------------------------------------------------------------------------------------------
# Choosing a trial (hand-written scores)
# --------------------------------------------------------------------------------------------------

# (id, number, status, baseline, exact, parameters, latency_ms_b1, has a saved model)
PICK_TRIALS = [
    ("t0", 0, "complete", True, 60.0, 1000, 5.0, True),  # the baseline
    ("t1", 1, "complete", False, 62.0, 800, 4.0, True),
    ("t2", 2, "complete", False, 61.0, 500, 3.0, True),  # smallest at >= baseline exact
    ("t3", 3, "complete", False, 65.0, 1200, 6.0, True),  # best exact with a model
    ("t4", 4, "stopped", False, 70.0, 300, None, False),  # stopped early, no model: never exported
    ("t5", 5, "failed", False, None, None, None, False),
    ("t6", 6, "complete", False, 50.0, 100, 1.0, True),  # below the no-answer floor, but smallest and fastest
]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    return make_tiny_qa_model_dir(tmp_path_factory.mktemp("model") / "model", num_hidden_layers=1)


def _pick_sweep(root: Path, saved_model: Path, constraints: list[dict] | None = None,
                trials=PICK_TRIALS) -> tuple[Path, list[dict]]:
    sweep = root / "sweep"
    records = []
    for trial_id, number, status, baseline, exact, parameters, latency, has_model in trials:
        metrics = {} if exact is None else {"exact": exact, "f1": exact + 1, "parameters": parameters,
                                            "na_threshold": 0.5}
        if latency is not None:
            metrics["latency_ms_b1"] = latency
        record = _record(sweep, trial_id, number, status=status, baseline=baseline, metrics=metrics)
        Path(record["run_dir"]).mkdir(parents=True)
        if has_model:
            shutil.copytree(saved_model, Path(record["run_dir"]) / "model")
        records.append(record)
    _write_sweep(sweep, records, constraints)
    return sweep, records


def test_pick_rules_choose_the_right_trials(tmp_path, saved_model):
    sweep, _ = _pick_sweep(tmp_path, saved_model)
    trials = read_sweep(sweep)
    assert choose_trial(trials, pick="smallest-at-baseline").trial_id == "t2"
    assert choose_trial(trials, pick="best-exact").trial_id == "t3"  # t4 scores higher but has no model
    assert choose_trial(trials, max_params=200).trial_id == "t6"
    assert choose_trial(trials, max_params=800).trial_id == "t1"
    assert choose_trial(trials, max_latency_ms=3.5).trial_id == "t2"
    chosen = choose_trial(trials, trial_id="t3")
    assert chosen.model_dir == sweep / "tune" / "trial_0003_t3" / "run" / "model"
    assert chosen.metrics["exact"] == 65.0 and chosen.rule == "trial"


def test_smallest_at_baseline_respects_the_sweep_constraints(tmp_path, saved_model):
    sweep, _ = _pick_sweep(tmp_path, saved_model, constraints=[{"name": "exact", "op": ">=", "bound": 61.5}])
    assert choose_trial(sweep, pick="smallest-at-baseline").trial_id == "t1"  # t2 (61.0) is now infeasible


def test_a_stopped_baseline_without_model_still_sets_the_bar(tmp_path, saved_model):
    trials = [("b", 0, "stopped", True, 61.5, 1000, None, False)] + [t for t in PICK_TRIALS if not t[3]]
    sweep, _ = _pick_sweep(tmp_path, saved_model, trials=trials)
    choice = choose_trial(sweep, pick="smallest-at-baseline")
    assert choice.trial_id == "t1" and "stopped early" in choice.reason


@pytest.mark.parametrize("kwargs, message", [
    ({"trial_id": "nope"}, "no trial 'nope'"),
    ({"trial_id": "t4"}, "trial t4 cannot be exported (no model folder"),
    ({"trial_id": "t5"}, "trial t5 cannot be exported (status failed)"),
    ({"max_params": 50}, "no exportable trial has at most 50 parameters (the smallest is trial t6 with 100)"),
    ({"max_latency_ms": 0.5}, "no exportable trial has latency_ms_b1 <= 0.5 ms (the fastest is trial t6 at 1.00 ms)"),
    ({"pick": "best-exact", "max_params": 10}, "choose exactly one of"),
    ({}, "choose exactly one of"),
    ({"pick": "fastest"}, "--pick 'fastest': expected one of smallest-at-baseline, best-exact"),
])
def test_pick_errors_say_what_went_wrong_and_list_the_trials(tmp_path, saved_model, kwargs, message):
    sweep, _ = _pick_sweep(tmp_path, saved_model)
    with pytest.raises(ExportError) as error:
        choose_trial(sweep, **kwargs)
    assert message in str(error.value)
    if "choose exactly" not in message and "--pick" not in message:
        for trial_id in ("t0", "t3", "t4", "t5", "t6"):  # the listing of what exists
            assert f"\n  {trial_id} " in str(error.value)


def test_nothing_reaches_the_baseline_or_no_baseline(tmp_path, saved_model):
    trials = [("b", 0, "complete", True, 90.0, 1000, 1.0, False)] + [t for t in PICK_TRIALS if not t[3]]
    sweep, _ = _pick_sweep(tmp_path / "high", saved_model, trials=trials)
    with pytest.raises(ExportError, match="no exportable feasible student reaches the baseline's exact 90.00"):
        choose_trial(sweep, pick="smallest-at-baseline")
    sweep, _ = _pick_sweep(tmp_path / "none", saved_model, trials=[t for t in PICK_TRIALS if not t[3]])
    with pytest.raises(ExportError, match="needs a finished baseline trial"):
        choose_trial(sweep, pick="smallest-at-baseline")
    with pytest.raises(ExportError, match="no trials.jsonl or results.parquet"):
        choose_trial(tmp_path, pick="best-exact")


def test_list_prints_the_trials_and_exports_nothing(tmp_path, saved_model, capsys):
    sweep, _ = _pick_sweep(tmp_path, saved_model)
    assert cli.main(["export", "--sweep", str(sweep), "--list"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:2] == ["trial_id", "#"]
    for trial_id in ("t0", "t3", "t4", "t5", "t6"):
        assert f"\n  {trial_id} " in table
    assert "no: status failed" in table and "(baseline)" in table
    assert cli.main(["export", "--sweep", str(sweep), "--trial", "t3"]) == 2  # no --out
    assert "--out" in capsys.readouterr().err
    listed = subprocess.run([sys.executable, "-m", "tune_distill.export", "--sweep", str(sweep), "--list"],
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and listed.stdout == table


def test_a_moved_sweep_folder_and_results_parquet_alone_are_enough(tmp_path, saved_model):
    sweep, records = _pick_sweep(tmp_path, saved_model)
    for record in records:  # as if the folder had been copied from another machine
        record["run_dir"] = "/elsewhere/" + record["trial_id"]
        record["checkpoint"] = "/elsewhere/ckpt"
    _write_sweep(sweep, records)
    assert choose_trial(sweep, pick="best-exact").model_dir == sweep / "tune" / "trial_0003_t3" / "run" / "model"
    (sweep / "trials.jsonl").unlink()
    results_frame(_pick_records_with_real_paths(sweep, records)).to_parquet(sweep / "results.parquet")
    assert choose_trial(sweep, pick="smallest-at-baseline").trial_id == "t2"


def _pick_records_with_real_paths(sweep: Path, records: list[dict]) -> list[dict]:
    return [{**record, "checkpoint": str(sweep / "tune" / f"trial_{record['number']:04d}_{record['trial_id']}"
                                    / "checkpoint_000001")} for record in records]


# --------------------------------------------------------------------------------------------------
# Exporting real tiny students
# --------------------------------------------------------------------------------------------------


def _score(model, tokenizer, squad_file: Path) -> dict:
    """Real validation metrics of a tiny model on the tiny SQuAD file (what run.py records)."""
    features = load_features([str(squad_file)], tokenizer, kind="eval", cache_dir=None, **LENGTHS)
    start, end = predict_logits(model, features, batch_size=8, device="cpu")
    texts, odds = postprocess(features.examples, features, start, end)
    return {**evaluate_predictions(features.examples, texts, odds, None), **count_parameters(model)}


def _write_run(run_dir: Path, model, tokenizer, config, squad_file: Path) -> dict:
    from tune_distill.run import environment

    save_student(model, run_dir / "model", tokenizer)
    metrics = _score(model, tokenizer, squad_file)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    (run_dir / "environment.json").write_text(json.dumps(environment(torch.device("cpu"))))
    return metrics


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A sweep with a full baseline and a pruned student; `tune-distill export --trial prun1` (the pick rules
    are tested above on hand-written scores: random tiny students' scores order them by chance)."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    root = tmp_path_factory.mktemp("export")
    teacher_dir = make_tiny_qa_model_dir(root / "teacher", num_hidden_layers=2)
    squad_file = root / "tiny_squad.json"
    squad_file.write_text(json.dumps(tiny_squad_dict()))
    teacher = AutoModelForQuestionAnswering.from_pretrained(str(teacher_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(teacher_dir))
    sweep = root / "sweep"
    shapes = {
        "base0": ("baseline", {"student.num_hidden_layers": 2, "student.init": "teacher"}),
        "prun1": ("search", {"student.num_hidden_layers": 2, "student.init": "prune", "student.num_attention_heads": 2,
                             "student.intermediate_size": 48}),
    }
    records, metrics = [], {}
    for number, (trial_id, (kind, overrides)) in enumerate(shapes.items()):
        config = load_config(None, {**overrides, "data.val_file": str(squad_file), "teacher.path": str(teacher_dir),
                                    **{f"data.{key}": value for key, value in LENGTHS.items()},
                                    "evaluate.latency_seq_length": 32})
        student = build_student(config.student, teacher.config, teacher, seed=number).eval()
        record = _record(sweep, trial_id, number, baseline=kind == "baseline", params=overrides)
        metrics[trial_id] = _write_run(Path(record["run_dir"]), student, tokenizer, config, squad_file)
        record["metrics"] = metrics[trial_id]
        records.append(record)
    _write_sweep(sweep, records)
    out = root / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = cli.main(["export", "--sweep", str(sweep), "--trial", "prun1", "--out", str(out),
                           "--latency-seq-length", "32", "--latency-repeats", "2", "--latency-warmup", "1"])
    assert status == 0
    return {"out": out, "sweep": sweep, "run_dir": Path(records[1]["run_dir"]), "metrics": metrics["prun1"],
            "printed": printed.getvalue(), "squad_file": squad_file, "tokenizer": tokenizer}


def _window_batch(tokenizer, squad_file: Path) -> dict[str, torch.Tensor]:
    """All evaluation windows of the tiny SQuAD file, padded into one batch (some rows padded)."""
    features = load_features([str(squad_file)], tokenizer, kind="eval", cache_dir=None, **LENGTHS)
    return collate(model_inputs(features), np.arange(len(features)), tokenizer.pad_token_id)  # each (batch, seq_len)


def test_transformers_loads_the_export_as_is_and_logits_match_the_pruned_student(exported):
    from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoTokenizer, BertForQuestionAnswering

    out = exported["out"]
    config = AutoConfig.from_pretrained(str(out))
    assert not hasattr(config, PRUNED_HEADS_KEY) and config.num_attention_heads == 4
    assert config.intermediate_size == 48  # pruned feed-forward width: plain BertConfig
    model = AutoModelForQuestionAnswering.from_pretrained(str(out)).eval()
    assert type(model) is BertForQuestionAnswering
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert tokenizer.get_vocab() == exported["tokenizer"].get_vocab()

    student = load_student(exported["run_dir"] / "model").eval()
    assert student.bert.encoder.layer[0].attention.self.query.out_features == 2 * 8  # really pruned: 2 heads of 8
    batch = _window_batch(tokenizer, exported["squad_file"])
    assert (batch["attention_mask"] == 0).any()
    expected, got = torch_logits(student, batch), torch_logits(model, batch)
    real = batch["attention_mask"].numpy().astype(bool)  # (batch, seq_len)
    np.testing.assert_allclose(got[0][real], expected[0][real], atol=1e-5)
    np.testing.assert_allclose(got[1][real], expected[1][real], atol=1e-5)
    layer = model.bert.encoder.layer[0]
    assert torch.count_nonzero(layer.attention.self.value.weight[16:]) == 0  # padded heads are zeros
    assert torch.count_nonzero(layer.attention.output.dense.weight[:, 16:]) == 0


def test_export_record_has_threshold_metrics_provenance_sizes_and_latency(exported):
    record = json.loads((exported["out"] / EXPORT_INFO_FILE).read_text())
    metrics = exported["metrics"]
    assert record["na_threshold"] == pytest.approx(metrics["na_threshold"])
    assert record["validation"]["exact"] == pytest.approx(metrics["exact"])
    assert record["tokenization"] == LENGTHS
    source = record["provenance"]
    assert source["trial_id"] == "prun1" and source["rule"] == "trial"
    assert source["sweep_dir"] == str(exported["sweep"].resolve())
    assert source["run_config"]["student"]["num_attention_heads"] == 2
    assert source["tune_distill_version"] and source["exported_at"] and "git_sha" in source
    assert source["training_environment"]["versions"]["torch"]
    sizes = record["parameters"]
    assert sizes["parameters"] == metrics["parameters"] < sizes["padded_parameters"]
    assert sizes["heads_per_layer_kept"] == [2, 2] and sizes["heads_per_layer_on_disk"] == 4
    # the padding adds 2 heads x 8 dims per layer to Q, K, V (weights + biases) and the output projection
    assert sizes["padded_parameters"] - sizes["parameters"] == 2 * (3 * (16 * 32 + 16) + 32 * 16)
    assert record["verification"]["padding_max_abs_diff"] <= 1e-5
    assert record["onnx"]["max_abs_diff"] <= ONNX_TOLERANCE == record["onnx"]["tolerance"]
    for runtime in ("pytorch", "onnxruntime"):
        assert set(record["latency"][runtime]) == {"latency_ms_b1", "latency_ms_b32"}
        assert all(value > 0 for value in record["latency"][runtime].values())
    assert record["latency"]["seq_length"] == 32
    printed = exported["printed"]
    assert "exported trial prun1" in printed and "ONNX Runtime vs PyTorch max |diff|" in printed
    assert "onnxruntime  batch 1" in printed and "pytorch      batch 1" in printed


def test_onnx_runtime_matches_pytorch_on_other_batch_shapes(exported):
    import onnx
    from transformers import AutoModelForQuestionAnswering

    path = exported["out"] / ONNX_FILE
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in graph.output] == ["start_logits", "end_logits"]
    assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", "seq_len"]
    model = AutoModelForQuestionAnswering.from_pretrained(str(exported["out"])).eval()
    session = onnx_session(path)
    batch = _window_batch(exported["tokenizer"], exported["squad_file"])
    for rows in ([0], [1, 2, 3]):  # one window; three windows of different lengths
        part = {name: tensor[rows] for name, tensor in batch.items()}  # each (len(rows), seq_len)
        reference, runtime = torch_logits(model, part), onnx_logits(session, part)
        real = part["attention_mask"].numpy().astype(bool)
        assert np.abs(reference[0] - runtime[0])[real].max() <= ONNX_TOLERANCE
        assert np.abs(reference[1] - runtime[1])[real].max() <= ONNX_TOLERANCE


def test_answer_on_the_export_equals_answer_on_the_pruned_run_folder(exported):
    from tune_distill.answer import answer

    questions = ["When was the city founded?", "Where did the cat sit?"]
    contexts = [tiny_squad_dict()["data"][0]["paragraphs"][0]["context"],
                tiny_squad_dict()["data"][1]["paragraphs"][0]["context"]]
    from_export = answer(exported["out"], questions, contexts)
    from_run = answer(exported["run_dir"] / "model", questions, contexts, **LENGTHS)
    assert from_export[0]["threshold_source"].endswith(EXPORT_INFO_FILE)
    assert from_run[0]["threshold_source"].endswith("metrics.json")
    for a, b in zip(from_export, from_run):
        assert a["answer"] == b["answer"] and a["best_span"] == b["best_span"] and a["windows"] == b["windows"]
        assert a["null_odds"] == pytest.approx(b["null_odds"], abs=1e-4)
        assert a["threshold"] == pytest.approx(exported["metrics"]["na_threshold"])


def test_unpruned_export_without_onnx_and_refusing_a_full_folder(exported, tmp_path):
    choice = choose_trial(exported["sweep"], trial_id="base0")
    record = export_trial(choice, tmp_path / "base", onnx=False, latency=False)
    assert record["parameters"]["parameters"] == record["parameters"]["padded_parameters"]
    assert record["parameters"]["heads_per_layer_kept"] == [4, 4]
    assert record["verification"]["padding_max_abs_diff"] == 0.0
    assert record["onnx"] is None and record["latency"] is None
    assert not (tmp_path / "base" / ONNX_FILE).exists()
    with pytest.raises(ExportError, match="exists and is not empty; choose another folder or pass --overwrite"):
        export_trial(choice, tmp_path / "base", onnx=False, latency=False)


def test_export_into_a_run_folder_is_refused_and_a_failed_export_leaves_no_output(exported, tmp_path, monkeypatch):
    from tune_distill.export import bundle

    choice = choose_trial(exported["sweep"], trial_id="base0")
    files = {path: path.read_bytes() for path in sorted(exported["sweep"].rglob("*")) if path.is_file()}
    for out in (choice.run_dir / "model", exported["sweep"]):
        with pytest.raises(ExportError, match=f"^--out {out}: is (inside )?a (run|sweep) folder"):
            export_trial(choice, out, onnx=False, latency=False, overwrite=True)
    assert {path: path.read_bytes() for path in sorted(exported["sweep"].rglob("*")) if path.is_file()} == files

    def fail(*args, **kwargs):
        raise ExportError("verification: the padded model's logits differ")

    monkeypatch.setattr(bundle, "_check_padding", fail)  # after the model and tokenizer were written
    with pytest.raises(ExportError, match="logits differ"):
        export_trial(choice, tmp_path / "new" / "export", onnx=False, latency=False)
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"  # a folder that was there stays, without what the failed export added
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="logits differ"):
        export_trial(choice, kept, onnx=False, latency=False, overwrite=True)
    assert [path.name for path in kept.iterdir()] == ["notes.txt"]


def test_cli_export_reports_errors_plainly(exported, tmp_path, capsys):
    status = cli.main(["export", "--sweep", str(exported["sweep"]), "--trial", "zzz", "--out", str(tmp_path / "x")])
    assert status == 2
    error = capsys.readouterr().err
    assert "no trial 'zzz'" in error and "prun1" in error and "base0" in error
