"""Score any question-answering model on SQuAD 2.0: logits, answers, official metrics, size, latency.

Pipeline: `predict_logits` runs a model over evaluation windows (dynamic padding, batches of
similar length); `postprocess` turns each question's window logits into its best answer text and a
null-odds score; a no-answer threshold on the null odds decides between that text and "" (chosen
on the validation split with `best_threshold`, given unchanged for any other split); and
`squad_v2_scores` computes the official SQuAD 2.0 exact / F1 figures.

Conventions (following Hugging Face's question-answering example and the official v2.0 script):
  * null score of a question = the MINIMUM over its windows of start_logit[CLS] + end_logit[CLS];
  * span candidates: in every window, the n_best highest start logits x the n_best highest end
    logits (over all tokens), kept when both tokens are context tokens, end >= start and
    end - start + 1 <= max_answer_length; a span's score is start_logit + end_logit, and the best
    span over all windows gives the answer text context[offset_start:offset_end];
  * null_odds = null score - best span score; the answer is "" when null_odds > threshold;
    a question with no valid span gets "" and null_odds = NO_SPAN_NULL_ODDS (a large finite number);
  * the threshold chosen maximises EXACT (the official find_best_thresh sweep); the F1-maximising
    one is reported as best_f1_thresh. The shared teacher's teacher_metrics.json used neither: its
    na_threshold (-3.6677 on val.json at 256/96) is the null odds one question below this module's
    best_f1_thresh (-3.6439); applied here it gives its exact 58.22 / F1 59.21 to every digit, while
    this module's own choice is -4.3694 (exact 58.45 / F1 59.06). exact_at_0 / f1_at_0 agree exactly.

Must not know: how a model was built or trained (teacher, student, distillation), Ray, searchers.
It imports from `config`, `data`, `teacher` (whose `qa_logits` is the shared batched inference)
and `student` (parameter counts).

Example (CPU, a few minutes):
    nice python -m tune_distill.evaluate --model ../shared/models/teacher-minilm-l6-squad2 \
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
import re
import string
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from tune_distill.config import EvaluateConfig
from tune_distill.data import FeatureSet, SquadExample, file_fingerprint, load_features
from tune_distill.student import count_parameters
from tune_distill.teacher import PRECISIONS, accepts_token_type_ids, autocast, qa_logits, resolve_device, resolve_precision

logger = logging.getLogger(__name__)

NO_SPAN_NULL_ODDS = 1e9  # null odds of a question without any valid span: always "no answer"
WEIGHT_FILE_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth")


# --------------------------------------------------------------------------------------------------
# Devices and precision
# --------------------------------------------------------------------------------------------------


def predict_logits(
    model: torch.nn.Module,
    features: FeatureSet,
    batch_size: int,
    device: torch.device | str,
    precision: str = "fp32",
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Start and end logits of every window, each a float32 array of that window's own length.

    The batched, length-sorted inference is the teacher stage's `qa_logits` (one implementation for
    teacher logits and evaluation); this returns it as one array per window.
    """
    pad_id = getattr(getattr(model, "config", None), "pad_token_id", None) or 0
    start, end = qa_logits(model, features, batch_size=batch_size, device=device, precision=precision,
                           pad_token_id=pad_id, desc="predicting")
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


def apply_threshold(best_texts: Mapping[str, str], null_odds: Mapping[str, float], threshold: float) -> dict[str, str]:
    """Final predictions: "" (no answer) where null_odds > threshold, the best span text otherwise."""
    return {qid: ("" if null_odds[qid] > threshold else text) for qid, text in best_texts.items()}


# --------------------------------------------------------------------------------------------------
# Official SQuAD 2.0 metrics
# --------------------------------------------------------------------------------------------------

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation, drop the articles a/an/the, collapse whitespace (official order)."""
    text = text.lower()
    text = "".join(character for character in text if character not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _answer_tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def compute_exact(gold: str, prediction: str) -> int:
    """1 if the normalised answers are equal, else 0."""
    return int(normalize_answer(gold) == normalize_answer(prediction))


def compute_f1(gold: str, prediction: str) -> float:
    """Token F1 of the normalised answers; when either is empty, 1 if both are, else 0."""
    gold_tokens = _answer_tokens(gold)
    predicted_tokens = _answer_tokens(prediction)
    if not gold_tokens or not predicted_tokens:
        return float(gold_tokens == predicted_tokens)
    shared = sum((collections.Counter(gold_tokens) & collections.Counter(predicted_tokens)).values())
    if shared == 0:
        return 0.0
    precision = shared / len(predicted_tokens)
    recall = shared / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def gold_answers(example: SquadExample) -> list[str]:
    """Gold texts that survive normalisation; [""] for an unanswerable question (official rule)."""
    answers = [text for text in example.answer_texts if normalize_answer(text)]
    return answers or [""]


def _raw_scores(
    examples: Sequence[SquadExample], predictions: Mapping[str, str]
) -> tuple[dict[str, float], dict[str, float]]:
    """Per-question exact and F1 (max over gold answers); a missing prediction scores 0."""
    known_ids = {example.id for example in examples}
    unknown = [qid for qid in predictions if qid not in known_ids]
    if unknown:
        raise ValueError(
            f"{len(unknown)} prediction id(s) are not questions of the evaluated data, e.g. {unknown[:3]}"
        )
    exact: dict[str, float] = {}
    f1: dict[str, float] = {}
    missing = 0
    for example in examples:
        if example.id not in predictions:
            missing += 1
            exact[example.id] = 0.0
            f1[example.id] = 0.0
            continue
        prediction = predictions[example.id]
        golds = gold_answers(example)
        exact[example.id] = float(max(compute_exact(gold, prediction) for gold in golds))
        f1[example.id] = max(compute_f1(gold, prediction) for gold in golds)
    if missing:
        logger.warning("metrics: %d of %d questions have no prediction; counted as wrong", missing, len(examples))
    return exact, f1


def standard_error(scores: Sequence[float]) -> float:
    """Standard error (percentage points) of the mean of per-question scores in [0, 1].

    sample standard deviation / sqrt(n): how far the score of these n questions may lie from the
    model's score on the population they were drawn from. Questions are treated as independent; those
    of one paragraph are not quite, so it likely understates the error. 0.0 for fewer than two questions.
    """
    n = len(scores)
    if n < 2:
        return 0.0
    mean = sum(scores) / n
    variance = sum((score - mean) ** 2 for score in scores) / (n - 1)
    return 100.0 * math.sqrt(variance / n)


def squad_v2_scores(examples: Sequence[SquadExample], predictions: Mapping[str, str]) -> dict[str, Any]:
    """Official SQuAD 2.0 exact and F1 (percent) overall and for answerable (HasAns) / unanswerable (NoAns).

    Each figure comes with its standard error (`exact_se`, `f1_se`, `HasAns_f1_se`, ...; see
    `standard_error`), so that two students' scores on the same questions can be told apart from noise.
    """
    if not examples:
        raise ValueError("squad_v2_scores: no questions to score")
    exact, f1 = _raw_scores(examples, predictions)

    def summary(ids: list[str], prefix: str = "") -> dict[str, Any]:
        exact_scores = [exact[qid] for qid in ids]
        f1_scores = [f1[qid] for qid in ids]
        return {
            f"{prefix}exact": 100.0 * sum(exact_scores) / len(ids),
            f"{prefix}f1": 100.0 * sum(f1_scores) / len(ids),
            f"{prefix}total": len(ids),
            f"{prefix}exact_se": standard_error(exact_scores),
            f"{prefix}f1_se": standard_error(f1_scores),
        }

    metrics = summary([example.id for example in examples])
    answerable = [example.id for example in examples if gold_answers(example) != [""]]
    unanswerable = [example.id for example in examples if gold_answers(example) == [""]]
    if answerable:
        metrics.update(summary(answerable, "HasAns_"))
    if unanswerable:
        metrics.update(summary(unanswerable, "NoAns_"))
    return metrics


def _threshold_sweep(
    examples: Sequence[SquadExample],
    best_texts: Mapping[str, str],
    null_odds: Mapping[str, float],
    per_question: Mapping[str, float],
) -> tuple[float, float]:
    """(best score in percent, threshold) of the official find_best_thresh sweep.

    Start with every question answered "" (score = number of unanswerable ones); then, in increasing
    null odds, switch questions to their best span: an answerable one gains its span's score, an
    unanswerable one loses 1 if the span is non-empty. The best running score wins (the first, i.e.
    lowest, threshold on ties). Two deliberate differences from the official script: questions with
    equal null odds switch together (a threshold cannot separate them), and when answering nothing
    is best the threshold returned lies below every null odds (the official script returns 0.0).
    """
    ids = [example.id for example in examples]
    missing = [qid for qid in ids if qid not in null_odds or qid not in best_texts]
    if missing:
        raise ValueError(f"threshold search: {len(missing)} question(s) have no null odds / text, e.g. {missing[:3]}")
    has_answer = {example.id: gold_answers(example) != [""] for example in examples}
    score = float(sum(not has_answer[qid] for qid in ids))
    best_score = score
    ordered = sorted(ids, key=lambda qid: null_odds[qid])
    best_thresh = float(null_odds[ordered[0]]) - 1.0 if ordered else 0.0
    for position, qid in enumerate(ordered):
        if has_answer[qid]:
            score += per_question[qid]
        elif best_texts[qid]:
            score -= 1.0
        next_is_tied = position + 1 < len(ordered) and null_odds[ordered[position + 1]] == null_odds[qid]
        if not next_is_tied and score > best_score:
            best_score = score
            best_thresh = float(null_odds[qid])
    return 100.0 * best_score / max(len(ids), 1), best_thresh


def best_threshold(
    examples: Sequence[SquadExample], best_texts: Mapping[str, str], null_odds: Mapping[str, float]
) -> float:
    """The no-answer threshold maximising EXACT on these questions (official find_best_thresh sweep)."""
    exact, _ = _raw_scores(examples, best_texts)
    return _threshold_sweep(examples, best_texts, null_odds, exact)[1]


def best_f1_threshold(
    examples: Sequence[SquadExample], best_texts: Mapping[str, str], null_odds: Mapping[str, float]
) -> float:
    """The no-answer threshold maximising F1 on these questions (same sweep, F1 per question)."""
    _, f1 = _raw_scores(examples, best_texts)
    return _threshold_sweep(examples, best_texts, null_odds, f1)[1]


def evaluate_predictions(
    examples: Sequence[SquadExample],
    best_texts: Mapping[str, str],
    null_odds: Mapping[str, float],
    na_threshold: float | None,
) -> dict[str, Any]:
    """Metrics at a no-answer threshold: chosen here (max exact) when None, else applied unchanged.

    Also reports exact/F1 at threshold 0 (exact_at_0, f1_at_0), the F1-maximising threshold of these
    questions (best_f1_thresh, with best_f1) and HasAns scores when always answering.
    """
    exact_per_question, f1_per_question = _raw_scores(examples, best_texts)
    best_exact, exact_thresh = _threshold_sweep(examples, best_texts, null_odds, exact_per_question)
    best_f1, f1_thresh = _threshold_sweep(examples, best_texts, null_odds, f1_per_question)
    chosen = na_threshold is None
    threshold = exact_thresh if chosen else float(na_threshold)
    metrics = squad_v2_scores(examples, apply_threshold(best_texts, null_odds, threshold))
    at_zero = squad_v2_scores(examples, apply_threshold(best_texts, null_odds, 0.0))
    always_answer = squad_v2_scores(examples, dict(best_texts))
    metrics.update(
        {
            "na_threshold": threshold,
            "na_threshold_chosen_here": chosen,
            "exact_at_0": at_zero["exact"],
            "f1_at_0": at_zero["f1"],
            "best_exact": best_exact,
            "best_exact_thresh": exact_thresh,
            "best_f1": best_f1,
            "best_f1_thresh": f1_thresh,
        }
    )
    if "HasAns_total" in always_answer:
        metrics["HasAns_exact_always_answer"] = always_answer["HasAns_exact"]
        metrics["HasAns_f1_always_answer"] = always_answer["HasAns_f1"]
        metrics["HasAns_exact_always_answer_se"] = always_answer["HasAns_exact_se"]
        metrics["HasAns_f1_always_answer_se"] = always_answer["HasAns_f1_se"]
    return metrics


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


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


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
) -> dict[str, Any]:
    """Evaluate a Hugging Face QA model (folder or hub id) on a SQuAD 2.0 file.

    Writes out_dir/metrics.json, predictions.json (id -> answer after the threshold, "" = no answer)
    and null_odds.json; returns the metrics. With na_threshold=None the threshold is chosen on this
    file (use that for the validation split only). latency=True adds forward-pass timings with the
    latency_* settings of `latency_config` (default: EvaluateConfig()).
    """
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    started = time.perf_counter()
    device = resolve_device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForQuestionAnswering.from_pretrained(str(model_dir))
    features = load_features(
        [str(data_file)],
        tokenizer,
        kind="eval",
        max_seq_length=max_seq_length,
        doc_stride=doc_stride,
        max_query_length=max_query_length,
        max_examples=max_examples,
        cache_dir=cache_dir,
    )
    logger.info(
        "evaluate: %s on %s: %d questions, %d windows, device %s",
        model_dir, data_file, len(features.examples), len(features), device,
    )
    predict_started = time.perf_counter()
    start_logits, end_logits = predict_logits(model, features, batch_size, device, precision)
    predict_seconds = time.perf_counter() - predict_started
    best_texts, null_odds = postprocess(
        features.examples, features, start_logits, end_logits, n_best_size, max_answer_length
    )
    metrics = evaluate_predictions(features.examples, best_texts, null_odds, na_threshold)
    predictions = apply_threshold(best_texts, null_odds, metrics["na_threshold"])
    local_dir = Path(model_dir) if Path(model_dir).is_dir() else None
    metrics.update(model_size(model, local_dir))
    if latency:
        settings = latency_config or EvaluateConfig()
        seq_length = settings.latency_seq_length
        max_positions = getattr(model.config, "max_position_embeddings", None) or seq_length
        if seq_length > max_positions:
            logger.warning(
                "latency: the model takes at most %d positions; timing at %d instead of %d tokens",
                max_positions, max_positions, seq_length,
            )
            seq_length = max_positions
        metrics.update(
            measure_latency(
                model,
                seq_length=seq_length,
                batch_sizes=settings.latency_batch_sizes,
                repeats=settings.latency_repeats,
                warmup=settings.latency_warmup,
                device=device,
                precision=precision,
            )
        )
    data_path = Path(data_file)
    metrics.update(
        {
            "model": str(model_dir),
            "data_file": str(data_file),
            "data_sha256": file_fingerprint(data_path) if data_path.is_file() else None,
            "windows": len(features),
            "max_seq_length": max_seq_length,
            "doc_stride": doc_stride,
            "max_query_length": max_query_length,
            "n_best_size": n_best_size,
            "max_answer_length": max_answer_length,
            "max_examples": max_examples,
            "device": str(device),
            "precision": resolve_precision(precision, device),
            "predict_seconds": predict_seconds,
            "eval_seconds": time.perf_counter() - started,
        }
    )
    _write_json(out_dir / "metrics.json", metrics)
    _write_json(out_dir / "predictions.json", predictions)
    _write_json(out_dir / "null_odds.json", null_odds)
    logger.info(
        "evaluate: exact %.2f f1 %.2f (HasAns %s / NoAns %s exact) at na_threshold %.4f; wrote %s",
        metrics["exact"],
        metrics["f1"],
        f"{metrics['HasAns_exact']:.2f}" if "HasAns_exact" in metrics else "-",
        f"{metrics['NoAns_exact']:.2f}" if "NoAns_exact" in metrics else "-",
        metrics["na_threshold"],
        out_dir,
    )
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The evaluation options (also `tune-distill evaluate`'s)."""
    parser.add_argument("--model", required=True, help="model folder or hub id (AutoModelForQuestionAnswering)")
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
        args.model,
        args.data,
        args.out,
        na_threshold=args.na_threshold,
        max_seq_length=args.max_seq_length,
        doc_stride=args.doc_stride,
        max_query_length=args.max_query_length,
        batch_size=args.batch_size,
        n_best_size=args.n_best_size,
        max_answer_length=args.max_answer_length,
        device=args.device,
        cache_dir=args.cache_dir,
        max_examples=args.max_examples,
        latency=args.latency,
        precision=args.precision,
    )
    json.dump(metrics, sys.stdout, indent=1, default=str)
    sys.stdout.write("\n")
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Evaluate a question-answering model on a SQuAD 2.0 file.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    command(args)


if __name__ == "__main__":
    main()
