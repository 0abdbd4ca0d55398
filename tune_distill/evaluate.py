"""Score any question-answering model on SQuAD 2.0: logits, answers, official metrics, size, latency.

Pipeline: `predict_logits` runs a model over evaluation windows (runtime.qa_logits: dynamic
padding, batches of similar length); `postprocess` turns each question's window logits into its
best answer text and a null-odds score; scoring.py then applies the no-answer threshold (chosen on
the validation split, given unchanged for any other split) and computes the official SQuAD 2.0
exact / F1 figures. `model_size` and `measure_latency` add parameters, bytes and forward time;
`evaluate_model_dir` does it all for a model folder (`tune-distill evaluate`), loaded by `load_qa_model`
(any Hugging Face QA folder or hub id, or a run's `model/` with pruned heads; a folder that is not a QA
model is refused naming what is missing); its options are checked before anything is loaded or written, and an
`--out` that is or is inside a run's folder (a run, a sweep's trial) is refused: its metrics.json, predictions
and null odds are that run's records (files.check_not_a_run_folder).

Conventions of `postprocess` (following Hugging Face's question-answering example and the official
v2.0 script):
  * null score of a question = the MINIMUM over its windows of start_logit[CLS] + end_logit[CLS];
  * span candidates: in every window, the n_best highest start logits x the n_best highest end
    logits (over all tokens), kept when both tokens are context tokens, end >= start and
    end - start + 1 <= max_answer_length; a span's score is start_logit + end_logit, and the best
    span over all windows gives the answer text context[offset_start:offset_end];
  * null_odds = null score - best span score; the answer is "" when null_odds > threshold;
    a question with no valid span gets "" and null_odds = NO_SPAN_NULL_ODDS (a large finite number).
The shared teacher's own na_threshold follows neither of scoring.py's threshold rules (how it
compares: results/README.md, `archive/teacher-eval-at-teacher-threshold/`).

Must not know: how a model was built or trained (teacher, student, distillation), Ray, searchers.
It imports from `config`, `data`, `runtime` (the shared batched inference and QA-model check),
`scoring` and `student` (parameter counts, and loading a student whose heads were pruned).

Example (CPU, a few minutes):
    nice tune-distill evaluate --model ../shared/models/teacher-minilm-l6-squad2 \
        --data ../shared/data/squad2/val.json --out /tmp/teacher-eval \
        --max-seq-length 256 --doc-stride 96
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from tune_distill.config import EvaluateConfig, check_range
from tune_distill.data import FeatureSet, SquadExample, file_fingerprint, load_features
from tune_distill.files import check_not_a_run_folder, check_out_folder, output_folder, write_atomically
from tune_distill.runtime import (
    PRECISIONS,
    accepts_token_type_ids,
    autocast,
    check_qa_config,
    check_vocabulary,
    load_qa_weights,
    qa_logits,
    resolve_device,
    resolve_precision,
)
from tune_distill.scoring import apply_threshold, evaluate_predictions
from tune_distill.student import count_parameters, has_pruned_shape, load_student

logger = logging.getLogger(__name__)

NO_SPAN_NULL_ODDS = 1e9  # null odds of a question without any valid span: always "no answer"
WEIGHT_FILE_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth")


# --------------------------------------------------------------------------------------------------
# Logits
# --------------------------------------------------------------------------------------------------


def predict_logits(
    model: torch.nn.Module,
    features: FeatureSet,
    batch_size: int,
    device: torch.device | str,
    precision: str = "fp32",
    pad_multiple: int = 0,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Start and end logits of every window, each a float32 array of that window's own length.

    The batched, length-sorted inference is `runtime.qa_logits` (one implementation for teacher
    logits and evaluation); this returns it as one array per window.
    """
    pad_id = getattr(getattr(model, "config", None), "pad_token_id", None) or 0
    start, end = qa_logits(model, features, batch_size=batch_size, device=device, precision=precision,
                           pad_token_id=pad_id, desc="predicting", pad_multiple=pad_multiple)
    return [start.row(i) for i in range(len(start))], [end.row(i) for i in range(len(end))]


# --------------------------------------------------------------------------------------------------
# Post-processing: logits -> answer text and null odds
# --------------------------------------------------------------------------------------------------


def _feature_offsets_and_examples(features: FeatureSet | Mapping[str, list]) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-window (len, 2) offset arrays and the example index of every window."""
    if isinstance(features, FeatureSet):
        return features.arrays("offset_mapping"), features.numpy("example_index").astype(np.int64)
    offsets = [np.asarray(rows, dtype=np.int64).reshape(-1, 2) for rows in features["offset_mapping"]]
    return offsets, np.asarray(features["example_index"], dtype=np.int64)


def postprocess(
    examples: Sequence[SquadExample],
    features: FeatureSet | Mapping[str, list],
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> tuple[dict[str, str], dict[str, float]]:
    """Best non-null answer text and null odds (null score - best span score) of every question.

    `features` are evaluation features (a FeatureSet or the dict of prepare_eval_features) whose
    offset_mapping marks non-context tokens with [-1, -1]. See the module docstring for the rules.
    """
    offsets_per_window, example_of_window = _feature_offsets_and_examples(features)
    if not (len(offsets_per_window) == len(start_logits) == len(end_logits)):
        raise ValueError(
            f"postprocess: {len(offsets_per_window)} windows but {len(start_logits)} start and "
            f"{len(end_logits)} end logit arrays"
        )
    windows_of_example: dict[int, list[int]] = collections.defaultdict(list)
    for window, example_index in enumerate(example_of_window):
        windows_of_example[int(example_index)].append(window)

    best_texts: dict[str, str] = {}
    null_odds: dict[str, float] = {}
    for example_index, example in enumerate(examples):
        null_score = math.inf
        best_score, best_span = -math.inf, None
        for window in windows_of_example.get(example_index, []):
            starts = np.asarray(start_logits[window], dtype=np.float32)  # (seq_len,)
            ends = np.asarray(end_logits[window], dtype=np.float32)  # (seq_len,)
            offsets = offsets_per_window[window]  # (seq_len, 2)
            if not (len(starts) == len(ends) == len(offsets)):
                raise ValueError(
                    f"postprocess: window {window} of question {example.id!r} has {len(offsets)} tokens but "
                    f"{len(starts)} start / {len(ends)} end logits"
                )
            null_score = min(null_score, float(starts[0] + ends[0]))
            in_context = offsets[:, 0] >= 0  # (seq_len,)
            top_starts = np.argsort(starts)[::-1][:n_best_size]
            top_ends = np.argsort(ends)[::-1][:n_best_size]
            for start in top_starts:
                if not in_context[start]:
                    continue
                for end in top_ends:
                    if not in_context[end] or end < start or end - start + 1 > max_answer_length:
                        continue
                    score = float(starts[start] + ends[end])
                    if score > best_score:
                        best_score = score
                        best_span = (int(offsets[start, 0]), int(offsets[end, 1]))
        if best_span is None or not math.isfinite(null_score):
            best_texts[example.id] = ""
            null_odds[example.id] = NO_SPAN_NULL_ODDS
        else:
            best_texts[example.id] = example.context[best_span[0] : best_span[1]]
            null_odds[example.id] = null_score - best_score
    return best_texts, null_odds


# --------------------------------------------------------------------------------------------------
# Size and speed
# --------------------------------------------------------------------------------------------------


def model_size(model: torch.nn.Module, directory: str | Path | None = None) -> dict[str, int]:
    """Parameter counts (student.count_parameters) and, given a folder, bytes of its weight files."""
    size = dict(count_parameters(model))
    if directory is not None and Path(directory).is_dir():
        weight_files = {path for pattern in WEIGHT_FILE_PATTERNS for path in Path(directory).glob(pattern)}
        size["bytes_on_disk"] = sum(path.stat().st_size for path in weight_files)
    return size


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def measure_latency(
    model: torch.nn.Module,
    *,
    seq_length: int,
    batch_sizes: Sequence[int] = (1, 32),
    repeats: int = 10,
    warmup: int = 3,
    device: torch.device | str,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Median forward time (ms) on random token ids of a fixed length, per batch size."""
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if max_positions is not None and seq_length > max_positions:
        raise ValueError(f"latency seq_length={seq_length} exceeds the model's max_position_embeddings={max_positions}")
    if repeats < 1:
        raise ValueError(f"latency repeats={repeats}: expected at least 1")
    model.eval()
    model.to(device)
    generator = torch.Generator().manual_seed(0)
    vocab_size = int(model.config.vocab_size)
    pass_token_types = accepts_token_type_ids(model)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    result: dict[str, Any] = {}
    with torch.inference_mode(), autocast(device, precision):
        for batch_size in batch_sizes:
            shape = (batch_size, seq_length)
            input_ids = torch.randint(0, vocab_size, shape, generator=generator).to(device)  # (batch, seq_len)
            inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}  # (batch, seq_len)
            if pass_token_types:
                inputs["token_type_ids"] = torch.zeros_like(input_ids)  # (batch, seq_len)
            for _ in range(warmup):
                model(**inputs)
            synchronize()
            timings = []
            for _ in range(repeats):
                started = time.perf_counter()
                model(**inputs)
                synchronize()
                timings.append(1000.0 * (time.perf_counter() - started))
            result[f"latency_ms_b{batch_size}"] = float(np.median(timings))
    result.update(
        {
            "latency_device": _device_name(device),
            "latency_threads": torch.get_num_threads(),
            "latency_seq_length": seq_length,
            "latency_precision": precision,
        }
    )
    return result


# --------------------------------------------------------------------------------------------------
# A model folder, end to end
# --------------------------------------------------------------------------------------------------


def load_qa_model(model_dir: str | Path, what: str = "--model"):
    """A QA model (eval mode) from a folder or hub id: a pruned tune_distill student (a run's `model/`) through
    student.load_student, anything else through runtime.load_qa_weights; a folder that is not a QA model (no
    ...ForQuestionAnswering architecture, no answer-head weights) is refused naming it and what is missing."""
    from transformers import AutoConfig

    local = Path(model_dir)
    if local.is_file():
        raise FileNotFoundError(f"{what} {local}: a file, not a folder (expected a Hugging Face QA model folder with "
                                "config.json)")
    if local.is_dir() and not (local / "config.json").is_file():
        raise FileNotFoundError(f"{what} {local}: no config.json there (expected a Hugging Face QA model folder)")
    if not local.exists() and str(model_dir).startswith((".", "/")):
        raise FileNotFoundError(f"{what} {model_dir}: no such folder (no config.json there)")
    config = AutoConfig.from_pretrained(str(model_dir))
    if has_pruned_shape(config):
        check_qa_config(config, model_dir, what)
        return load_student(model_dir).eval()
    return load_qa_weights(model_dir, what)


def _json_text(value: Any) -> str:
    return json.dumps(value, indent=1, ensure_ascii=False) + "\n"


def evaluate_model_dir(
    model_dir: str | Path,
    data_file: str | Path,
    out_dir: str | Path,
    *,
    na_threshold: float | None = None,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
    batch_size: int = 64,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    device: torch.device | str = "auto",
    cache_dir: str | Path | None = None,
    max_examples: int = 0,
    latency: bool = False,
    latency_config: EvaluateConfig | None = None,
    precision: str = "fp32",
    pad_multiple: int = 0,
) -> dict[str, Any]:
    """Evaluate a Hugging Face QA model (folder or hub id) on a SQuAD 2.0 file.

    Writes out_dir/metrics.json (with the answer rates at the threshold: scoring.answer_rates),
    predictions.json (id -> answer after the threshold, "" = no answer) and null_odds.json; returns the
    metrics. With na_threshold=None the threshold is chosen on this file (use that for the validation split
    only). latency=True adds forward-pass timings with the
    latency_* settings of `latency_config` (default: EvaluateConfig()).
    """
    started = time.perf_counter()
    lengths = {"max_seq_length": max_seq_length, "doc_stride": doc_stride, "max_query_length": max_query_length}
    answers = {"n_best_size": n_best_size, "max_answer_length": max_answer_length}
    _check_options(na_threshold, max_examples, batch_size=batch_size, **lengths, **answers)
    device = resolve_device(device)
    out_dir = Path(out_dir)
    check_out_folder(check_not_a_run_folder(out_dir, "--out"), "--out")  # before the model is loaded
    model, features = _load_model_and_features(model_dir, data_file, lengths, max_examples, cache_dir)
    logger.info(
        "evaluate: %s on %s: %d questions, %d windows, device %s",
        model_dir, data_file, len(features.examples), len(features), device,
    )
    predict_started = time.perf_counter()
    start_logits, end_logits = predict_logits(model, features, batch_size, device, precision, pad_multiple)
    predict_seconds = time.perf_counter() - predict_started
    best_texts, null_odds = postprocess(
        features.examples, features, start_logits, end_logits, n_best_size, max_answer_length
    )
    metrics = evaluate_predictions(features.examples, best_texts, null_odds, na_threshold)
    predictions = apply_threshold(best_texts, null_odds, metrics["na_threshold"])
    local_dir = Path(model_dir) if Path(model_dir).is_dir() else None
    metrics.update(model_size(model, local_dir))
    if latency:
        metrics.update(_latency(model, latency_config or EvaluateConfig(), device, precision))
    data_path = Path(data_file)
    metrics.update({
        "model": str(model_dir),
        "data_file": str(data_file),
        "data_sha256": file_fingerprint(data_path) if data_path.is_file() else None,
        "windows": len(features),
        **lengths,
        **answers,
        "max_examples": max_examples,
        "device": str(device),
        "precision": resolve_precision(precision, device),
        "predict_seconds": predict_seconds,
        "eval_seconds": time.perf_counter() - started,
    })
    _write_evaluation(out_dir, metrics, predictions, null_odds)
    return metrics


def _check_options(na_threshold: float | None, max_examples: int, **at_least_one: int) -> None:
    """Refuse a size below 1 (max_examples below 0) or a non-finite threshold, naming the command-line option,
    before anything is loaded or written."""
    for name, value in at_least_one.items():
        check_range(f"--{name.replace('_', '-')}", value, 1)
    check_range("--max-examples", max_examples, 0)
    if na_threshold is not None:
        check_range("--na-threshold", na_threshold)


def _load_model_and_features(model_dir: str | Path, data_file: str | Path, lengths: Mapping[str, int],
                             max_examples: int, cache_dir: str | Path | None) -> tuple[torch.nn.Module, FeatureSet]:
    """The QA model and its tokenizer's evaluation windows of `data_file`."""
    from transformers import AutoTokenizer

    model = load_qa_model(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    check_vocabulary(tokenizer, model.config, model_dir, "--model")
    features = load_features([str(data_file)], tokenizer, kind="eval", **lengths, max_examples=max_examples,
                             cache_dir=cache_dir)
    return model, features


def _latency(model: torch.nn.Module, settings: EvaluateConfig, device: torch.device, precision: str) -> dict[str, Any]:
    """measure_latency with the latency_* settings, at most at the model's longest input."""
    seq_length = settings.latency_seq_length
    max_positions = getattr(model.config, "max_position_embeddings", None) or seq_length
    if seq_length > max_positions:
        logger.warning(
            "latency: the model takes at most %d positions; timing at %d instead of %d tokens",
            max_positions, max_positions, seq_length,
        )
        seq_length = max_positions
    return measure_latency(model, seq_length=seq_length, batch_sizes=settings.latency_batch_sizes,
                           repeats=settings.latency_repeats, warmup=settings.latency_warmup, device=device,
                           precision=precision)


def _write_evaluation(out_dir: Path, metrics: Mapping[str, Any], predictions: Mapping[str, str],
                      null_odds: Mapping[str, float]) -> None:
    """metrics.json, predictions.json and null_odds.json, each written atomically once all three are formatted (a
    failure leaves no folder made for them and no file added: files.output_folder), and a one-line summary."""
    texts = {"metrics.json": _json_text(metrics), "predictions.json": _json_text(predictions),
             "null_odds.json": _json_text(null_odds)}
    with output_folder(out_dir, "--out") as folder:
        for name, text in texts.items():
            write_atomically(folder / name, text)
    logger.info(
        "evaluate: exact %.2f f1 %.2f (HasAns %s / NoAns %s exact) at na_threshold %.4f, answering %d of %d "
        "questions (%s of the answerable); wrote %s",
        metrics["exact"],
        metrics["f1"],
        f"{metrics['HasAns_exact']:.2f}" if "HasAns_exact" in metrics else "-",
        f"{metrics['NoAns_exact']:.2f}" if "NoAns_exact" in metrics else "-",
        metrics["na_threshold"],
        metrics.get("answered", 0),
        metrics.get("total", 0),
        f"{metrics['HasAns_answer_rate']:.1f}%" if "HasAns_answer_rate" in metrics else "-",
        out_dir,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The evaluation options (also `tune-distill evaluate`'s)."""
    parser.add_argument("--model", required=True,
                        help="QA model folder or hub id (an export, a teacher, a run's model/)")
    parser.add_argument("--data", required=True, help="SQuAD 2.0 JSON file")
    parser.add_argument("--out", required=True, help="folder for metrics.json, predictions.json, null_odds.json")
    parser.add_argument("--na-threshold", type=float, default=None,
                        help="no-answer threshold to apply; default: choose it on this file (validation only)")
    parser.add_argument("--max-seq-length", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--max-query-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n-best-size", type=int, default=20)
    parser.add_argument("--max-answer-length", type=int, default=30)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=("auto", *PRECISIONS))
    parser.add_argument("--cache-dir", default=None, help="feature cache folder (default: no cache)")
    parser.add_argument("--max-examples", type=int, default=0, help="first N questions only (0 = all)")
    parser.add_argument("--latency", action="store_true", help="also time forward passes")


def command(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate as the parsed options say; print and return the metrics."""
    metrics = evaluate_model_dir(
        args.model, args.data, args.out, na_threshold=args.na_threshold,
        max_seq_length=args.max_seq_length, doc_stride=args.doc_stride, max_query_length=args.max_query_length,
        batch_size=args.batch_size, n_best_size=args.n_best_size, max_answer_length=args.max_answer_length,
        device=args.device, cache_dir=args.cache_dir, max_examples=args.max_examples, latency=args.latency,
        precision=args.precision,
    )
    json.dump(metrics, sys.stdout, indent=1, default=str)
    sys.stdout.write("\n")
    return metrics
