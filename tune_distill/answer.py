"""Answer questions about a context with a QA model folder: the text and its score, or "no answer".

`answer(model_dir, questions, contexts)` reads any Hugging Face question-answering folder (an
export of `tune-distill export`, a teacher, or a run's `model/` with pruned heads, which goes
through student.load_student; evaluate.load_qa_model refuses a folder that is not a QA model) and
answers many questions at once, in batches. It does not re-implement anything evaluation does:
questions and contexts become the evaluation windows of data.prepare_eval_features (question first,
long contexts split into overlapping windows of `max_seq_length` tokens with `doc_stride` tokens of
overlap), made by data.windows.ContextWindows, which tokenises each distinct context once and makes
a question's windows lazily; logits come from evaluate.predict_logits, `batch_size` windows at a
time (only logits and offsets are kept: memory is bounded by one batch plus a few numbers per
window, and a question whose context makes more than `max_windows` windows is refused before any
inference; a context of more than `max_windows` x CONTEXT_BYTES_PER_WINDOW characters, 20 MB at the
default, or a --context-file of more bytes, is refused up front, before it is read in full or tokenised);
evaluate.postprocess / scoring.apply_threshold pick the best span and decide between it and "no
answer" exactly as validation scoring did.

The no-answer threshold (null odds = null score - best span score; "no answer" when the null odds
exceed it) is, in this order: the one given; `na_threshold` of the folder's tune_distill.json (an
export), of its teacher_metrics.json (a `tune-distill teacher` folder), or of the run's
metrics.json beside a run's `model/`; else 0.0. Window lengths default to the export's
`tokenization` record, else 384 / 128 / 64 (max_seq_length / doc_stride / max_query_length); a
model with fewer positions than the default window gets windows of its own length (stride and
question a quarter of it), while an asked-for length it cannot take is an error.

Must not know: sweeps, Ray, training, how a model was chosen or exported (it reads the export's
JSON record only).

Example (CPU, seconds):
    tune-distill answer --model ../shared/models/teacher-minilm-l6-squad2 \
        --question "When was the bridge built?" \
        --context "The great bridge was built in 1802 and it joined the two banks of the river."
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tune_distill.config import check_range
from tune_distill.data import DataError, FeatureSet, SquadExample, features_to_table
from tune_distill.data.windows import ContextWindows
from tune_distill.evaluate import NO_SPAN_NULL_ODDS, load_qa_model, postprocess, predict_logits
from tune_distill.export import EXPORT_INFO_FILE
from tune_distill.files import read_json_object, read_text_limited
from tune_distill.runtime import check_vocabulary, resolve_device
from tune_distill.scoring import apply_threshold

log = logging.getLogger(__name__)

DEFAULT_LENGTHS = {"max_seq_length": 384, "doc_stride": 128, "max_query_length": 64}
LENGTH_KEYS = tuple(DEFAULT_LENGTHS)
MAX_WINDOWS = 10_000  # windows of one question (a 384-token window advances ~190 tokens: a ~7 MB context)
# Text allowed per window a question may make, checked before tokenising: a window advances at most max_seq_length -
# doc_stride tokens (256 at the defaults), about 1 KB of English; twice that, so that no context within max_windows
# is refused for its size, while a far bigger one is refused without the seconds and gigabytes tokenising it takes.
CONTEXT_BYTES_PER_WINDOW = 2048


def saved_threshold(model_dir: str | Path) -> tuple[float, str]:
    """(no-answer threshold, where it came from) recorded with a model folder; (0.0, "default") if none."""
    model_dir = Path(model_dir)
    candidates = [model_dir / EXPORT_INFO_FILE, model_dir / "teacher_metrics.json"]
    if model_dir.name == "model":  # a run folder's model/: the run's metrics.json
        candidates.append(model_dir.parent / "metrics.json")
    for path in candidates:
        if path.is_file():
            value = read_json_object(path).get("na_threshold")
            if value is None:
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"{path}: field 'na_threshold' must be a finite number, got {value!r}")
            return float(value), str(path)
    return 0.0, "default"


def saved_lengths(model_dir: str | Path) -> dict[str, int]:
    """Window lengths recorded by an export (tune_distill.json 'tokenization'), else the defaults."""
    path = Path(model_dir) / EXPORT_INFO_FILE
    lengths = dict(DEFAULT_LENGTHS)
    if path.is_file():
        recorded = read_json_object(path).get("tokenization") or {}
        for key in LENGTH_KEYS:
            if key in recorded:
                if not isinstance(recorded[key], int) or isinstance(recorded[key], bool):
                    raise ValueError(f"{path}: tokenization.{key} must be an integer, got {recorded[key]!r}")
                lengths[key] = recorded[key]
    return lengths


def context_limit(max_windows: int) -> tuple[int, str]:
    """(the most characters, or bytes of a file, a context may have; the advice naming where that comes from)."""
    return max_windows * CONTEXT_BYTES_PER_WINDOW, (f" (max_windows={max_windows} x {CONTEXT_BYTES_PER_WINDOW}); "
                                                    "split the context or raise --max-windows")


def _examples(questions: Sequence[str], contexts: str | Sequence[str]) -> list[SquadExample]:
    if isinstance(questions, str):
        questions = [questions]
    if isinstance(contexts, str):
        contexts = [contexts] * len(questions)
    if not questions:
        raise ValueError("answer: no questions given")
    if len(contexts) != len(questions):
        raise ValueError(f"answer: {len(questions)} questions but {len(contexts)} contexts; give one context, "
                         "or one per question")
    examples = []
    for index, (question, context) in enumerate(zip(questions, contexts)):
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"answer: question {index} is empty (expected text)")
        if not isinstance(context, str) or not context.strip():
            raise ValueError(f"answer: the context of question {index} is empty (expected text)")
        examples.append(SquadExample(f"q{index}", "", context, question, (), (), False))
    return examples


def answer(model_dir: str | Path, questions: str | Sequence[str], contexts: str | Sequence[str], *,
           threshold: float | None = None, max_seq_length: int | None = None, doc_stride: int | None = None,
           max_query_length: int | None = None, batch_size: int = 32, n_best_size: int = 20,
           max_answer_length: int = 30, device: str = "cpu", model: Any = None, tokenizer: Any = None,
           max_windows: int = MAX_WINDOWS) -> list[dict]:
    """One dict per question, in order: answer ("" for no answer), no_answer, best_span, score (start + end
    logit of the best span; None when no span is valid), null_score, null_odds, threshold (and its source),
    windows. `contexts` is one text for every question or one per question; `model` / `tokenizer` may be
    given already loaded (from `model_dir`) to skip loading."""
    from transformers import AutoTokenizer

    examples = _examples(questions, contexts)
    lengths = saved_lengths(model_dir)
    for key, value in (("max_seq_length", max_seq_length), ("doc_stride", doc_stride),
                       ("max_query_length", max_query_length)):
        if value is not None:
            lengths[key] = check_range(f"--{key.replace('_', '-')}", value, 1)
    for name, value in (("--batch-size", batch_size), ("--n-best-size", n_best_size),
                        ("--max-answer-length", max_answer_length), ("--max-windows", max_windows)):
        check_range(name, value, 1)
    limit, advice = context_limit(max_windows)
    for index, example in enumerate(examples):  # before any context is tokenised
        if len(example.context) > limit:
            raise DataError(f"answer: the context of question {index} has {len(example.context):,} characters, more "
                            f"than the {limit:,} allowed{advice}")
    if threshold is None:
        threshold, source = saved_threshold(model_dir)
    else:
        threshold, source = check_range("--threshold", threshold), "given"
    resolve_device(device)
    model = model if model is not None else load_qa_model(model_dir)
    tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(str(model_dir))
    check_vocabulary(tokenizer, model.config, model_dir, "--model")
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if max_positions is not None and lengths["max_seq_length"] > max_positions and max_seq_length is None:
        # default (not asked-for) lengths too long for this model: its own maximum, stride and question a quarter of it
        lengths = {"max_seq_length": max_positions, "doc_stride": min(lengths["doc_stride"], max_positions // 4),
                   "max_query_length": min(lengths["max_query_length"], max_positions // 4)}
        log.warning("answer: %s takes at most %d positions; windows of %s", model_dir, max_positions, lengths)
    if max_positions is not None and lengths["max_seq_length"] > max_positions:
        raise DataError(f"max_seq_length={lengths['max_seq_length']} exceeds {model_dir}'s max_position_embeddings="
                        f"{max_positions}; pass a smaller --max-seq-length")

    windows_of = {context: ContextWindows(context, tokenizer, **lengths)  # each distinct context tokenised once
                  for context in dict.fromkeys(example.context for example in examples)}
    results = []
    for example in examples:
        results.append(_answer_one(example, windows_of[example.context], model, threshold, source, batch_size,
                                   n_best_size, max_answer_length, device, max_windows))
    return results


def _answer_one(example: SquadExample, context_windows: ContextWindows, model: Any, threshold: float, source: str,
                batch_size: int, n_best_size: int, max_answer_length: int, device: str, max_windows: int) -> dict:
    """One question: its windows made and run `batch_size` at a time (only their logits and offsets are kept,
    as numpy arrays), then evaluate.postprocess and the threshold over all of them."""
    count = context_windows.count(example.question)
    if count > max_windows:
        raise DataError(f"answer: question {example.id[1:]}: its context makes {count} windows of "
                        f"{context_windows.max_seq_length} tokens, more than max_windows={max_windows}; split the "
                        "context or raise --max-windows")
    start_logits: list[np.ndarray] = []
    end_logits: list[np.ndarray] = []
    offsets: list[np.ndarray] = []
    batch: list[dict] = []
    for window in itertools.chain(context_windows.windows(example.question), [None]):
        if window is not None:
            batch.append(window)
        if batch and (window is None or len(batch) == batch_size):
            columns = {name: [w[name] for w in batch] for name in batch[0]}
            feature_set = FeatureSet(features_to_table({**columns, "example_index": [0] * len(batch)}), [example],
                                     fingerprint="", path=None)
            starts, ends = predict_logits(model, feature_set, batch_size, device)  # per window: (seq_len,)
            start_logits += starts
            end_logits += ends
            offsets += [np.asarray(w["offset_mapping"], dtype=np.int32) for w in batch]
            batch = []
    windows = {"offset_mapping": offsets, "example_index": [0] * len(offsets)}
    best_texts, null_odds = postprocess([example], windows, start_logits, end_logits, n_best_size, max_answer_length)
    final = apply_threshold(best_texts, null_odds, threshold)
    null_score = min(float(start[0] + end[0]) for start, end in zip(start_logits, end_logits))  # [CLS] start + end
    odds = null_odds[example.id]
    has_span = odds != NO_SPAN_NULL_ODDS
    return {
        "question": example.question,
        "answer": final[example.id],
        "no_answer": final[example.id] == "",
        "best_span": best_texts[example.id],
        "score": null_score - odds if has_span else None,
        "null_score": null_score,
        "null_odds": odds,
        "threshold": float(threshold),
        "threshold_source": source,
        "windows": len(offsets),
    }


def describe(result: dict[str, Any]) -> str:
    """Two lines for people: the question, then the answer and its score, or plainly "no answer"."""
    threshold = f"threshold {result['threshold']:.4g} ({result['threshold_source']})"
    if not result["no_answer"]:
        return (f"Q: {result['question']}\nA: {result['answer']}  (score {result['score']:.4g}; null score "
                f"{result['null_score']:.4g}; null odds {result['null_odds']:.4g} <= {threshold})")
    if result["score"] is None:
        return f"Q: {result['question']}\nA: no answer  (no valid span in the context; {threshold})"
    return (f"Q: {result['question']}\nA: no answer  (the null score {result['null_score']:.4g} wins over the "
            f"best span {result['best_span']!r}, score {result['score']:.4g}: null odds {result['null_odds']:.4g} "
            f"> {threshold})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The answer options (also `tune-distill answer`'s)."""
    parser.add_argument("--model", required=True, help="QA model folder (an export, a teacher, a run's model/)")
    parser.add_argument("--question", action="append", required=True, help="a question; repeat for several")
    context = parser.add_mutually_exclusive_group(required=True)
    context.add_argument("--context", help="the text the questions are about")
    context.add_argument("--context-file", help="a UTF-8 text file holding the context")
    parser.add_argument("--threshold", type=float, default=None,
                        help="no-answer threshold on the null odds (default: the one saved with the model, else 0)")
    parser.add_argument("--max-seq-length", type=int, default=None,
                        help="tokens per window (default: the export's, else 384)")
    parser.add_argument("--doc-stride", type=int, default=None,
                        help="overlap of context windows (default: the export's, else 128)")
    parser.add_argument("--max-query-length", type=int, default=None,
                        help="question tokens kept (default: the export's, else 64)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-best-size", type=int, default=20)
    parser.add_argument("--max-answer-length", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-windows", type=int, default=MAX_WINDOWS,
                        help=f"most windows one question's context may make (default {MAX_WINDOWS}); windows are "
                             "made and run --batch-size at a time; a context of more than "
                             f"{CONTEXT_BYTES_PER_WINDOW} characters per window is refused before it is tokenised")
    parser.add_argument("--json", action="store_true", help="print the result dicts as JSON")


def command(args: argparse.Namespace) -> list[dict]:
    """Answer as the parsed options say; print and return the results."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    if args.context_file:
        path = Path(args.context_file)
        if not path.is_file():
            raise FileNotFoundError(f"--context-file {path}: not found")
        check_range("--max-windows", args.max_windows, 1)
        limit, advice = context_limit(args.max_windows)
        context = read_text_limited(path, limit, f"--context-file {path}", DataError, advice)
    else:
        context = args.context
    results = answer(args.model, args.question, context, threshold=args.threshold,
                     max_seq_length=args.max_seq_length, doc_stride=args.doc_stride,
                     max_query_length=args.max_query_length, batch_size=args.batch_size,
                     n_best_size=args.n_best_size, max_answer_length=args.max_answer_length, device=args.device,
                     max_windows=args.max_windows)
    if args.json:
        json.dump(results, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print("\n".join(describe(result) for result in results))
    return results
