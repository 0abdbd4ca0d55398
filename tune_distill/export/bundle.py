"""One trial of a sweep -> a plain Hugging Face QA model folder, an ONNX file, and its record.

`export_trial` writes `out/`: `config.json`, `model.safetensors` and the tokenizer files, which
`AutoModelForQuestionAnswering.from_pretrained(out)` / `AutoTokenizer.from_pretrained(out)` load as
they are (vanilla BertForQuestionAnswering, no custom code; pruned heads padded back, pad.py). The
exported model is checked against the student on a real verification batch (verify.py), written
to ONNX and checked again (onnx.py), and timed with PyTorch (evaluate.measure_latency) and ONNX
Runtime at batch 1 and 32 and a fixed sequence length. `tune_distill.json` (EXPORT_INFO_FILE)
records the no-answer threshold, validation metrics, tokenisation lengths, parameters (the true
pruned count and the padded count on disk), the checks, the timings and provenance (sweep folder,
trial, resolved run config, training environment, git SHA, export time, version). An `out` that is or is
inside a run's folders (the trial's own run folder, a sweep's trial folder) is refused, and a failed export
leaves no folder it made and no file it added (files.output_folder).
`summary_lines` is what `tune-distill export` prints.

Must not know: Ray, the sweep module or searchers, how students were trained, how a trial was chosen
(it takes a TrialChoice).

Example (CPU, under a minute on the smoke sweep's tiny students; the same as `tune-distill export --trial`):
    python -c "from tune_distill.export import choose_trial, export_trial; \
        export_trial(choose_trial('sweeps/smoke', pick='best-exact'), 'exports/smoke-best', onnx=False)"
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

import tune_distill
from tune_distill.config import ConfigError, read_yaml
from tune_distill.evaluate import measure_latency
from tune_distill.export.choose import TrialChoice
from tune_distill.export.errors import ExportError
from tune_distill.export.onnx import (
    ONNX_FILE,
    ONNX_OPSET,
    ONNX_TOLERANCE,
    export_onnx,
    measure_onnx_latency,
    onnx_input_names,
    onnx_logits,
    onnx_packages,
    onnx_session,
)
from tune_distill.export.pad import PADDING_TOLERANCE, kept_heads_per_layer, pad_pruned_heads
from tune_distill.export.verify import VerifyBatch, max_diff, torch_logits, verification_batch
from tune_distill.files import output_folder, read_json_object, write_json
from tune_distill.run import git_sha
from tune_distill.student import PRUNED_HEADS_KEY, count_parameters, load_student

log = logging.getLogger(__name__)

EXPORT_INFO_FILE = "tune_distill.json"
EXPORT_FORMAT_VERSION = 1


def _read_json(path: Path, what: str) -> dict[str, Any]:
    return read_json_object(path, what, ExportError) if path.is_file() else {}


def _tokenizer(choice: TrialChoice, run_config: Mapping[str, Any]):
    """The trial's tokenizer: saved with its model, else its teacher's."""
    from transformers import AutoTokenizer

    errors = []
    teacher = (run_config.get("teacher") or {}).get("path")
    for source in (choice.model_dir, teacher):
        if not source:
            continue
        try:
            return AutoTokenizer.from_pretrained(str(source))
        except (OSError, ValueError) as error:
            errors.append(f"{source}: {error}")
    raise ExportError(f"trial {choice.trial_id}: no tokenizer in {choice.model_dir} or its teacher "
                      f"({'; '.join(errors)})")


def _prepare_out(out: Path, overwrite: bool, before: set[str]) -> None:
    """Refuse an --out that held files (`before`) unless `overwrite`; remove an earlier export's ONNX file, record."""
    if before and not overwrite:
        raise ExportError(f"--out {out}: exists and is not empty; choose another folder or pass --overwrite")
    for stale in (ONNX_FILE, ONNX_FILE + ".data", EXPORT_INFO_FILE):
        (out / stale).unlink(missing_ok=True)


VALIDATION_KEYS = ("exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1",
                   "NoAns_total", "na_threshold", "exact_at_0", "f1_at_0", "best_f1", "best_f1_thresh", "val_questions",
                   "step", "total_steps")


def export_trial(choice: TrialChoice, out: str | Path, *, sweep_dir: str | Path | None = None, onnx: bool = True,
                 verify_data: str | Path | None = None, verify_questions: int = 16, latency: bool = True,
                 latency_seq_length: int | None = None, latency_batch_sizes: Sequence[int] = (1, 32),
                 latency_repeats: int = 10, latency_warmup: int = 3, overwrite: bool = False) -> dict[str, Any]:
    """Write the chosen trial as a vanilla HF QA model folder (+ ONNX), verify it, time it; return the record
    written to out/tune_distill.json. An --out inside a run's folders is refused, and a failed export leaves no
    folder it made and no file it added (files.output_folder)."""
    began = time.perf_counter()
    onnxruntime = onnx_packages() if onnx else None  # before anything is written
    out = Path(out)
    trial = _read_trial(choice)
    before = set(os.listdir(out)) if out.is_dir() else set()
    with output_folder(out, "--out", ExportError):
        _prepare_out(out, overwrite, before)
        model = _write_model(choice, trial, out)
        check = _check_padding(model, out, verify_data or trial.data.get("val_file"), verify_questions,
                               trial.lengths)
        record = _record(choice, trial, model, check, out, sweep_dir)
        session = _export_onnx(model, check, out, record, onnxruntime) if onnx else None
        if latency:
            record["latency"] = _timings(model.exported, session, trial.run_config, latency_seq_length,
                                         dict(batch_sizes=tuple(latency_batch_sizes), repeats=latency_repeats,
                                              warmup=latency_warmup))
        record["export_seconds"] = time.perf_counter() - began
        _write_record(out, record)
    log.info("export: trial %s -> %s in %.1fs", choice.trial_id, out, record["export_seconds"])
    return record


@dataclass(frozen=True)
class _Trial:
    """What the trial's run folder says: its resolved config, tokenisation lengths, metrics and environment."""

    run_config: dict[str, Any]
    data: Mapping[str, Any]  # the run config's data section
    lengths: dict[str, int]  # max_seq_length, doc_stride, max_query_length
    metrics: dict[str, Any]  # the trial record's metrics, then metrics.json's
    environment: dict[str, Any]


def _read_trial(choice: TrialChoice) -> _Trial:
    """The trial's run config, metrics and environment, refused without a no-answer threshold."""
    run_config_path = choice.run_dir / "config.yaml"
    try:
        run_config = read_yaml(run_config_path, "run config") if run_config_path.is_file() else {}
    except ConfigError as error:
        raise ExportError(str(error)) from None
    if not isinstance(run_config, dict):
        raise ExportError(f"{run_config_path}: expected a mapping of config sections")
    if not run_config:
        log.warning("export: %s is missing; tokenisation lengths fall back to the defaults", run_config_path)
    data = run_config.get("data") or {}
    lengths = {"max_seq_length": int(data.get("max_seq_length", 384)), "doc_stride": int(data.get("doc_stride", 128)),
               "max_query_length": int(data.get("max_query_length", 64))}
    metrics = {**choice.metrics, **_read_json(choice.run_dir / "metrics.json", "metrics.json")}
    environment = _read_json(choice.run_dir / "environment.json", "environment.json")
    if "na_threshold" not in metrics:
        raise ExportError(f"trial {choice.trial_id}: no na_threshold in {choice.run_dir / 'metrics.json'} "
                          "or its trial record")
    return _Trial(run_config, data, lengths, metrics, environment)


@dataclass(frozen=True)
class _Model:
    """The trial's student and the vanilla model written from it (as users will load it)."""

    student: torch.nn.Module
    exported: torch.nn.Module
    tokenizer: Any
    true_counts: dict[str, int]  # count_parameters of the student (pruned heads not counted)
    kept: list[int]  # heads kept per layer


def _write_model(choice: TrialChoice, trial: _Trial, out: Path) -> _Model:
    """The student with its pruned heads padded back, and its tokenizer, saved to `out`; then loaded back."""
    from transformers import AutoModelForQuestionAnswering

    student = load_student(choice.model_dir).eval()
    tokenizer = _tokenizer(choice, trial.run_config)
    true_counts = count_parameters(student)
    kept = kept_heads_per_layer(student)
    padded = pad_pruned_heads(student)
    padded.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    exported = AutoModelForQuestionAnswering.from_pretrained(str(out)).eval()  # what users will load
    if getattr(exported.config, PRUNED_HEADS_KEY, None) is not None:
        raise ExportError(f"{out}/config.json still carries {PRUNED_HEADS_KEY}")
    return _Model(student, exported, tokenizer, true_counts, kept)


@dataclass(frozen=True)
class _Check:
    """The verification batch and the exported model's logits on it."""

    batch: VerifyBatch  # inputs, source, questions
    mask: np.ndarray  # (batch, seq_len)
    exported_logits: tuple[np.ndarray, np.ndarray]  # start, end: 2 x (batch, seq_len)
    padding_diff: float  # max |exported - student| over unpadded positions


def _check_padding(model: _Model, out: Path, data_file: str | Path | None, questions: int,
                   lengths: Mapping[str, int]) -> _Check:
    """The exported model's logits against the student's on a real verification batch; refused past
    PADDING_TOLERANCE."""
    batch = verification_batch(model.tokenizer, data_file=data_file, questions=questions,
                               pad_token_id=model.tokenizer.pad_token_id or 0, **lengths)
    mask = batch.inputs["attention_mask"].numpy()  # (batch, seq_len)
    student_logits = torch_logits(model.student, batch.inputs)
    exported_logits = torch_logits(model.exported, batch.inputs)
    padding_diff = max_diff(student_logits, exported_logits, mask)
    if padding_diff > PADDING_TOLERANCE:
        raise ExportError(f"{out}: the exported model's logits differ from the student's by {padding_diff:.3g} "
                          f"(allowed {PADDING_TOLERANCE:g}); the export is wrong, not written as good")
    return _Check(batch, mask, exported_logits, padding_diff)


def _record(choice: TrialChoice, trial: _Trial, model: _Model, check: _Check, out: Path,
            sweep_dir: str | Path | None) -> dict[str, Any]:
    """The export's record (tune_distill.json) before ONNX and timings: threshold, validation metrics, sizes,
    the padding check and provenance."""
    metrics, counts, exported = trial.metrics, model.true_counts, model.exported
    padded_counts = count_parameters(exported)
    return {
        "format_version": EXPORT_FORMAT_VERSION,
        "na_threshold": float(metrics["na_threshold"]),
        "tokenization": trial.lengths,
        "validation": {key: metrics[key] for key in VALIDATION_KEYS if key in metrics}
        | {"val_file": trial.data.get("val_file")},
        "parameters": {
            "parameters": counts["parameters"],
            "non_embedding_parameters": counts["non_embedding_parameters"],
            "padded_parameters": padded_counts["parameters"],
            "padded_non_embedding_parameters": padded_counts["non_embedding_parameters"],
            "sweep_parameters": metrics.get("parameters"),
            "heads_per_layer_kept": model.kept,
            "heads_per_layer_on_disk": int(exported.config.num_attention_heads),
            "bytes_on_disk": sum(path.stat().st_size for path in out.glob("*.safetensors")),
        },
        "verification": {
            "data": check.batch.source,
            "questions": check.batch.questions,
            "batch_shape": list(check.batch.inputs["input_ids"].shape),
            "padding_max_abs_diff": check.padding_diff,
            "padding_tolerance": PADDING_TOLERANCE,
        },
        "provenance": {
            "sweep_dir": str(Path(sweep_dir).resolve()) if sweep_dir else None,
            "trial_id": choice.trial_id,
            "trial_number": choice.number,
            "trial_status": choice.status,
            "baseline": choice.baseline,
            "rule": choice.rule,
            "reason": choice.reason,
            "params": choice.params,
            "run_dir": str(choice.run_dir),
            "model_dir": str(choice.model_dir),
            "run_config": trial.run_config,
            "training_environment": trial.environment,
            "git_sha": git_sha(),
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "tune_distill_version": tune_distill.__version__,
            "torch": torch.__version__,
        },
        "onnx": None,
        "latency": None,
    }


def _export_onnx(model: _Model, check: _Check, out: Path, record: dict[str, Any], onnxruntime: Any) -> Any:
    """Write the ONNX file, check ONNX Runtime's logits against PyTorch's (the verification batch and one
    unpadded window) into record["onnx"]; past ONNX_TOLERANCE the record is written and the export refused.
    Returns the ONNX Runtime session."""
    began = time.perf_counter()
    exported, inputs, mask = model.exported, check.batch.inputs, check.mask
    path = export_onnx(exported, out / ONNX_FILE)
    session = onnx_session(path)
    diff = max_diff(check.exported_logits, onnx_logits(session, inputs), mask)
    single = {name: tensor[:1, : int(mask[0].sum())] for name, tensor in inputs.items()}  # (1, len)
    diff = max(diff, max_diff(torch_logits(exported, single), onnx_logits(session, single),
                               single["attention_mask"].numpy()))
    record["onnx"] = {
        "file": ONNX_FILE,
        "opset": ONNX_OPSET,
        "exporter": "torch.onnx.export(dynamo=True)",
        "inputs": onnx_input_names(exported),
        "outputs": ["start_logits", "end_logits"],
        "dynamic_axes": {"0": "batch", "1": "seq_len"},
        "max_abs_diff": diff,
        "tolerance": ONNX_TOLERANCE,
        "checked_on": [list(inputs["input_ids"].shape), list(single["input_ids"].shape)],
        "bytes": sum(p.stat().st_size for p in out.glob(ONNX_FILE + "*")),
        "onnxruntime": onnxruntime.__version__,
        "export_seconds": time.perf_counter() - began,
    }
    if diff > ONNX_TOLERANCE:
        _write_record(out, record)
        raise ExportError(f"{out / ONNX_FILE}: ONNX Runtime logits differ from PyTorch by {diff:.3g} "
                          f"(allowed {ONNX_TOLERANCE:g}); recorded in {EXPORT_INFO_FILE}")
    return session


def _timings(exported: torch.nn.Module, session: Any, run_config: Mapping[str, Any],
             latency_seq_length: int | None, settings: dict[str, Any]) -> dict[str, Any]:
    """CPU forward times of the exported model with PyTorch and, when exported, ONNX Runtime, at the run's
    latency_seq_length (or the one given), at most the model's longest input."""
    evaluate_settings = run_config.get("evaluate") or {}
    seq_length = int(latency_seq_length or evaluate_settings.get("latency_seq_length", 384))
    seq_length = min(seq_length, int(exported.config.max_position_embeddings))
    settings = dict(seq_length=seq_length, **settings)
    pytorch = measure_latency(exported, device="cpu", precision="fp32", **settings)
    timing: dict[str, Any] = {
        "seq_length": seq_length, "repeats": settings["repeats"], "warmup": settings["warmup"], "statistic": "median",
        "device": pytorch.pop("latency_device"), "threads": pytorch.pop("latency_threads"),
        "inputs": "random token ids, no padding (evaluate.measure_latency)",
        "pytorch": {key: value for key, value in pytorch.items() if key.startswith("latency_ms_")},
    }
    if session is not None:
        timing["onnxruntime"] = measure_onnx_latency(session, vocab_size=int(exported.config.vocab_size), **settings)
    return timing


def _write_record(out: Path, record: Mapping[str, Any]) -> None:
    write_json(out / EXPORT_INFO_FILE, record)


def summary_lines(record: Mapping[str, Any], out: str | Path) -> list[str]:
    """What `tune-distill export` prints."""
    source, parameters = record["provenance"], record["parameters"]
    validation = record["validation"]
    lines = [
        f"exported trial {source['trial_id']} ({source['rule']}: {source['reason']}) -> {out}",
        f"  validation exact {validation.get('exact', float('nan')):.2f} f1 {validation.get('f1', float('nan')):.2f} "
        f"at na_threshold {record['na_threshold']:.4f}",
        f"  parameters {parameters['parameters']:,} (padded on disk: {parameters['padded_parameters']:,}; heads kept "
        f"per layer {parameters['heads_per_layer_kept']} of {parameters['heads_per_layer_on_disk']})",
        f"  padded vs student logits: max |diff| {record['verification']['padding_max_abs_diff']:.2e} "
        f"on {record['verification']['batch_shape']} windows of {record['verification']['data']}",
    ]
    if record.get("onnx"):
        onnx_record = record["onnx"]
        lines.append(f"  {onnx_record['file']}: ONNX Runtime vs PyTorch max |diff| {onnx_record['max_abs_diff']:.2e} "
                     f"(tolerance {onnx_record['tolerance']:g})")
    if record.get("latency"):
        timing = record["latency"]
        lines.append(f"  latency (median ms, seq {timing['seq_length']}, {timing['threads']} threads, "
                     f"{timing['device']}):")
        for runtime in ("pytorch", "onnxruntime"):
            if runtime in timing:
                figures = ", ".join(f"batch {key.removeprefix('latency_ms_b')} {value:.2f}"
                                    for key, value in timing[runtime].items())
                lines.append(f"    {runtime:<12} {figures}")
    return lines
