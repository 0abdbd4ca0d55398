"""Questions into tokenised windows, the way Hugging Face's question-answering example does.

The question (cut to `max_query_length` tokens) comes first, the context second; only the context
is truncated, into windows of at most `max_seq_length` tokens that overlap by `doc_stride` tokens.
Training windows carry start/end token labels (0, the [CLS] token, for "no answer in this window");
evaluation windows carry each token's character offsets into the context ([-1, -1] outside it).
Windows are returned unpadded, as a dict of Python lists (one entry per window). `ContextWindows`
makes the same evaluation windows for many questions about one context with the context tokenised
once, one window at a time (for `answer`, whose contexts may be long).

Must not know: files, caches, models, training or metrics.

Example (CPU, seconds):
    python -c "from transformers import AutoTokenizer; from tune_distill.data import load_examples, \
prepare_eval_features; t = AutoTokenizer.from_pretrained('../shared/models/teacher-minilm-l6-squad2'); \
print(len(prepare_eval_features(load_examples('../shared/data/squad2/val.json', 20), t, 256, 96, 64)['input_ids']))"
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterable, Literal, Sequence

from tune_distill.data.squad import DataError, SquadExample
from tune_distill.progress import Progress

logger = logging.getLogger(__name__)

TOKENIZE_CHUNK_EXAMPLES = 1000  # examples tokenised per tokenizer call (and per progress-bar step)
TRAIN_COLUMNS = ("input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions", "example_index")
EVAL_COLUMNS = ("input_ids", "token_type_ids", "attention_mask", "offset_mapping", "example_index")
NON_CONTEXT_OFFSET = (-1, -1)


def check_tokenizer(tokenizer: Any, max_seq_length: int, doc_stride: int, max_query_length: int) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(
            f"{type(tokenizer).__name__}: a fast (Rust-backed) tokenizer is needed for offsets and overflowing windows"
        )
    if tokenizer.padding_side != "right":
        raise DataError(
            f"{type(tokenizer).__name__}: padding_side is {tokenizer.padding_side!r}; expected 'right' "
            "(question first, context second, BERT-like)"
        )
    if max_seq_length <= 0 or max_query_length <= 0 or doc_stride < 0:
        raise DataError(
            f"max_seq_length={max_seq_length}, doc_stride={doc_stride}, max_query_length={max_query_length}: "
            "expected positive lengths and a non-negative stride"
        )
    special = tokenizer.num_special_tokens_to_add(pair=True)
    room_for_context = max_seq_length - max_query_length - special
    if room_for_context <= doc_stride:
        raise DataError(
            f"max_seq_length={max_seq_length} leaves {room_for_context} context tokens per window after a "
            f"{max_query_length}-token question and {special} special tokens; expected more than "
            f"doc_stride={doc_stride} so that windows advance"
        )


def _truncate_questions(questions: list[str], tokenizer: Any, max_query_length: int) -> list[str]:
    """Cut each question (leading spaces stripped) after its first `max_query_length` tokens."""
    questions = [question.lstrip() for question in questions]
    encoded = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    result = []
    for question, offsets in zip(questions, encoded["offset_mapping"]):
        limit = max_query_length
        while len(offsets) > max_query_length and limit > 0:
            # Cut at the end character of the last kept token; re-tokenise to be sure (a cut inside a
            # word can in principle split differently), dropping one more token if needed.
            question = question[: offsets[limit - 1][1]]
            offsets = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            limit -= 1
        result.append(question)
    return result


def _tokenize_chunk(
    examples: Sequence[SquadExample], tokenizer: Any, max_seq_length: int, doc_stride: int, max_query_length: int
):
    questions = _truncate_questions([example.question for example in examples], tokenizer, max_query_length)
    return tokenizer(
        questions,
        [example.context for example in examples],
        truncation="only_second",
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_token_type_ids=True,
        return_attention_mask=True,
        padding=False,
    )


def _chunks(count: int, size: int) -> Iterable[range]:
    for start in range(0, count, size):
        yield range(start, min(start + size, count))


def _context_span(sequence_ids: list[int | None]) -> tuple[int, int]:
    """First and last token index of the context (sequence 1) in one window."""
    first = sequence_ids.index(1)
    last = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
    return first, last


def _prepare(
    examples: Sequence[SquadExample],
    tokenizer: Any,
    max_seq_length: int,
    doc_stride: int,
    max_query_length: int,
    kind: Literal["train", "eval"],
) -> dict[str, list]:
    check_tokenizer(tokenizer, max_seq_length, doc_stride, max_query_length)
    columns = TRAIN_COLUMNS if kind == "train" else EVAL_COLUMNS
    features: dict[str, list] = {name: [] for name in columns}
    started = time.perf_counter()
    chunks = list(_chunks(len(examples), TOKENIZE_CHUNK_EXAMPLES))
    for chunk in Progress.iterate(chunks, f"tokenising {kind}", unit="chunk"):
        encoded = _tokenize_chunk(
            [examples[i] for i in chunk], tokenizer, max_seq_length, doc_stride, max_query_length
        )
        for window, local_index in enumerate(encoded["overflow_to_sample_mapping"]):
            example_index = chunk.start + local_index
            example = examples[example_index]
            offsets = encoded["offset_mapping"][window]
            sequence_ids = encoded.sequence_ids(window)
            features["input_ids"].append(list(encoded["input_ids"][window]))
            features["token_type_ids"].append(list(encoded["token_type_ids"][window]))
            features["attention_mask"].append(list(encoded["attention_mask"][window]))
            features["example_index"].append(example_index)
            if kind == "eval":
                features["offset_mapping"].append(
                    [
                        [int(start), int(end)] if sequence_id == 1 else list(NON_CONTEXT_OFFSET)
                        for (start, end), sequence_id in zip(offsets, sequence_ids)
                    ]
                )
                continue
            start_label, end_label = 0, 0  # [CLS]: no answer in this window
            if not example.is_impossible:
                # Like HF's example, train on the first gold answer.
                answer_start = example.answer_starts[0]
                answer_end = answer_start + len(example.answer_texts[0])  # exclusive
                if 1 not in sequence_ids:
                    raise DataError(f"question {example.id}: marked answerable, but its context "
                                    f"{example.context[:40]!r} has no tokens for this tokenizer (nothing the answer "
                                    "could point to)")
                first, last = _context_span(sequence_ids)
                if offsets[first][0] <= answer_start and offsets[last][1] >= answer_end:
                    start_label = first
                    while start_label <= last and offsets[start_label][0] <= answer_start:
                        start_label += 1
                    start_label -= 1
                    end_label = last
                    while end_label >= first and offsets[end_label][1] >= answer_end:
                        end_label -= 1
                    end_label += 1
            features["start_positions"].append(start_label)
            features["end_positions"].append(end_label)
    seconds = time.perf_counter() - started
    logger.info(
        "features: %d %s windows from %d questions in %.1fs (%.0f questions/s)",
        len(features["input_ids"]),
        kind,
        len(examples),
        seconds,
        len(examples) / max(seconds, 1e-9),
    )
    return features


def prepare_train_features(
    examples: Sequence[SquadExample], tokenizer: Any, max_seq_length: int, doc_stride: int, max_query_length: int
) -> dict[str, list]:
    """Training windows: unpadded input_ids/token_type_ids/attention_mask, start/end token labels, example_index.

    A label is the token span of the first gold answer when it lies wholly inside the window's context,
    else (0, 0), the [CLS] token, as for unanswerable questions.
    """
    return _prepare(examples, tokenizer, max_seq_length, doc_stride, max_query_length, "train")


def prepare_eval_features(
    examples: Sequence[SquadExample], tokenizer: Any, max_seq_length: int, doc_stride: int, max_query_length: int
) -> dict[str, list]:
    """Evaluation windows: unpadded inputs, offset_mapping ([start, end) context characters of each token,
    [-1, -1] for question and special tokens) and example_index."""
    return _prepare(examples, tokenizer, max_seq_length, doc_stride, max_query_length, "eval")


def _pair_template(tokenizer: Any) -> tuple[list[int], list[int], list[int], list[int]] | None:
    """How the tokenizer frames a (question, context) pair: the special tokens before the question, between
    the two and after the context, and the token type of each of the five parts; None if it cannot be read
    off a sample pair (the caller then tokenises pairs as prepare_eval_features does)."""
    question = tokenizer("a", add_special_tokens=False)["input_ids"]
    context = tokenizer("b", add_special_tokens=False)["input_ids"]
    pair = tokenizer("a", "b", return_token_type_ids=True)
    ids, types, sequence = pair["input_ids"], pair["token_type_ids"], pair.sequence_ids()
    in_question = [i for i, s in enumerate(sequence) if s == 0]
    in_context = [i for i, s in enumerate(sequence) if s == 1]
    if not in_question or not in_context or [ids[i] for i in in_question] != question \
            or [ids[i] for i in in_context] != context or in_question[-1] >= in_context[0]:
        return None
    q0, q1, c0, c1 = in_question[0], in_question[-1] + 1, in_context[0], in_context[-1] + 1
    return ids[:q0], ids[q1:c0], ids[c1:], [*types[:q0], types[q0], *types[q1:c0], types[c0], *types[c1:]]


class ContextWindows:
    """Evaluation windows of questions about one context, the context tokenised once, made one at a time.

    `windows(question)` yields the windows prepare_eval_features makes for that (question, context) pair, in
    order, as dicts of input_ids, token_type_ids, attention_mask and offset_mapping; `count(question)` says
    how many there will be without making them. Memory: the context's tokens once, plus one window.
    """

    def __init__(self, context: str, tokenizer: Any, max_seq_length: int, doc_stride: int,
                 max_query_length: int) -> None:
        check_tokenizer(tokenizer, max_seq_length, doc_stride, max_query_length)
        self.context, self.tokenizer = context, tokenizer
        self.max_seq_length, self.doc_stride, self.max_query_length = max_seq_length, doc_stride, max_query_length
        self.template = _pair_template(tokenizer)
        if self.template is not None:
            encoded = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)
            self.ids, self.offsets = encoded["input_ids"], encoded["offset_mapping"]

    def _question_ids(self, question: str) -> list[int]:
        text = _truncate_questions([question], self.tokenizer, self.max_query_length)[0]
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _spans(self, question_ids: list[int]) -> Iterable[tuple[int, int]]:
        """[start, stop) context token ranges of the windows, as the tokenizer's overflow makes them."""
        before, between, after, _ = self.template
        room = self.max_seq_length - len(question_ids) - len(before) - len(between) - len(after)
        if len(self.ids) <= room:
            yield 0, len(self.ids)
            return
        for start in range(0, len(self.ids), room - self.doc_stride):
            stop = min(start + room, len(self.ids))
            yield start, stop
            if stop == len(self.ids):
                return

    def count(self, question: str) -> int:
        if self.template is None:
            return len(self._fallback(question)["input_ids"])
        return sum(1 for _ in self._spans(self._question_ids(question)))

    def _fallback(self, question: str) -> dict[str, list]:
        example = SquadExample("q", "", self.context, question, (), (), False)
        return prepare_eval_features([example], self.tokenizer, self.max_seq_length, self.doc_stride,
                                     self.max_query_length)

    def windows(self, question: str) -> Iterable[dict[str, list]]:
        if self.template is None:  # a tokenizer whose pair framing is not plain: its own pair tokenisation
            features = self._fallback(question)
            for index in range(len(features["input_ids"])):
                yield {name: features[name][index] for name in EVAL_COLUMNS if name != "example_index"}
            return
        before, between, after, (t_before, t_question, t_between, t_context, t_after) = \
            self._split_types(*self.template)
        question_ids = self._question_ids(question)
        skip = [list(NON_CONTEXT_OFFSET)]
        for start, stop in self._spans(question_ids):
            pieces = self.ids[start:stop]
            yield {
                "input_ids": [*before, *question_ids, *between, *pieces, *after],
                "token_type_ids": [*t_before, *[t_question] * len(question_ids), *t_between,
                                   *[t_context] * len(pieces), *t_after],
                "attention_mask": [1] * (len(before) + len(question_ids) + len(between) + len(pieces) + len(after)),
                "offset_mapping": [*skip * (len(before) + len(question_ids) + len(between)),
                                   *([int(s), int(e)] for s, e in self.offsets[start:stop]), *skip * len(after)],
            }

    @staticmethod
    def _split_types(before: list[int], between: list[int], after: list[int], types: list[int]):
        """The template's flat type list as (before types, question type, between types, context type, after)."""
        t_before = types[:len(before)]
        t_question = types[len(before)]
        t_between = types[len(before) + 1:len(before) + 1 + len(between)]
        t_context = types[len(before) + 1 + len(between)]
        t_after = types[len(before) + 2 + len(between):]
        return before, between, after, (t_before, t_question, t_between, t_context, t_after)
