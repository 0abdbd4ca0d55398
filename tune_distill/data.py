"""SQuAD 2.0 questions in, tokenised windows out, cached on disk with Arrow.

Reads SQuAD 2.0 files (the official JSON layout, or `hub:squad_v2:<split>` through `datasets`),
checks them strictly (every error names the file, the question id and what was expected), and turns
questions into model inputs the way Hugging Face's question-answering example does: the question
(cut to `max_query_length` tokens) comes first, the context second; only the context is truncated,
into windows of at most `max_seq_length` tokens that overlap by `doc_stride` tokens. Training
windows carry start/end token labels (0, the [CLS] token, for "no answer in this window");
evaluation windows carry each token's character offsets into the context ([-1, -1] outside it).

Features are stored unpadded (one variable-length list per window) in an Arrow IPC file under
`cache_dir`, named by a fingerprint of everything that decides them (data bytes, tokenizer, lengths,
kind, max_examples, FORMAT_VERSION). Files are written to a temporary name and renamed into place,
so sweep trials running at once never see a half-written cache; reads are memory-mapped.

Arrow layout of a cached FeatureSet (one row per window):
    input_ids, token_type_ids, attention_mask   list<int32>
    example_index                               int32 (index into FeatureSet.examples)
    start_positions, end_positions              int32 (kind="train" only)
    offset_mapping                              list<fixed_size_list<int32, 2>> (kind="eval" only)

Also here: how windows become batches. Each column is packed as one flat array plus row offsets
(`PackedColumn`); `bucketed_batches` gives an epoch's batch order as a pure function of (seed,
epoch), grouping windows of similar length, and `pad_rows` pads a batch only to its own longest row.

Must not know: models, teachers, students, training or metrics. It imports only the `progress`
utility from the project.

Example (CPU, about a minute):
    nice python -m tune_distill.data --data ../shared/data/squad2/val.json \
        --tokenizer ../shared/models/teacher-minilm-l6-squad2 --kind eval \
        --max-seq-length 256 --doc-stride 96 --cache-dir /tmp/td-cache
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import pyarrow as pa
import torch

from tune_distill.files import atomic_path
from tune_distill.progress import Progress

logger = logging.getLogger(__name__)

# Bump whenever the content or layout of cached features changes: old cache files are then ignored.
FORMAT_VERSION = 1
HUB_PREFIX = "hub:"
TOKENIZE_CHUNK_EXAMPLES = 1000  # examples tokenised per tokenizer call (and per progress-bar step)
TRAIN_COLUMNS = ("input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions", "example_index")
EVAL_COLUMNS = ("input_ids", "token_type_ids", "attention_mask", "offset_mapping", "example_index")
NON_CONTEXT_OFFSET = (-1, -1)


class DataError(ValueError):
    """Unusable input data or tokenizer; the message names the file, field and question id."""


@dataclass(frozen=True)
class SquadExample:
    """One SQuAD 2.0 question with its context; unanswerable questions have no answers."""

    id: str
    title: str
    context: str
    question: str
    answer_texts: tuple[str, ...]
    answer_starts: tuple[int, ...]
    is_impossible: bool


# --------------------------------------------------------------------------------------------------
# Loading and checking examples
# --------------------------------------------------------------------------------------------------


def _require(mapping: Any, field: str, expected: type | tuple[type, ...], where: str) -> Any:
    """mapping[field], checked to be of the expected type; DataError naming `where` otherwise."""
    if not isinstance(mapping, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(mapping).__name__}")
    if field not in mapping:
        raise DataError(f"{where}: missing field {field!r}")
    value = mapping[field]
    # bool is an int in Python: never accept it where a number is expected.
    if not isinstance(value, expected) or (isinstance(value, bool) and bool not in _as_tuple(expected)):
        names = " or ".join(t.__name__ for t in _as_tuple(expected))
        raise DataError(f"{where}: field {field!r} must be {names}, got {type(value).__name__} {value!r:.60}")
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _build_example(
    source: str,
    question_id: str,
    title: str,
    context: str,
    question: str,
    answers: Sequence[tuple[str, int]],
    is_impossible: bool,
) -> SquadExample:
    """A checked SquadExample: answers must sit at their answer_start and agree with is_impossible."""
    where = f"{source}: question {question_id!r}"
    if not question.strip():
        raise DataError(f"{where}: the question text is empty")
    if not context.strip():
        raise DataError(f"{where}: the context is empty")
    if is_impossible and answers:
        raise DataError(f"{where}: is_impossible is true but it has {len(answers)} answer(s); expected none")
    if not is_impossible and not answers:
        raise DataError(f"{where}: is_impossible is false but 'answers' is empty; expected at least one answer")
    for number, (text, start) in enumerate(answers):
        if not text:
            raise DataError(f"{where}: answer {number} has an empty text")
        found = context[start : start + len(text)]
        if start < 0 or found != text:
            raise DataError(
                f"{where}: answer {number} answer_start={start} does not point at its text {text!r} "
                f"(the context there reads {found!r})"
            )
    return SquadExample(
        id=question_id,
        title=title,
        context=context,
        question=question,
        answer_texts=tuple(text for text, _ in answers),
        answer_starts=tuple(start for _, start in answers),
        is_impossible=is_impossible,
    )


def _examples_from_json(path: Path) -> list[SquadExample]:
    """Parse and check an official-layout SQuAD 2.0 JSON file."""
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not valid JSON ({error})") from None
    articles = _require(document, "data", list, f"{path} (top level)")
    examples: list[SquadExample] = []
    seen: set[str] = set()
    for article_number, article in enumerate(articles):
        article_where = f"{path}: article {article_number}"
        title = _require(article, "title", str, article_where)
        paragraphs = _require(article, "paragraphs", list, f"{article_where} ({title!r})")
        for paragraph_number, paragraph in enumerate(paragraphs):
            paragraph_where = f"{article_where} ({title!r}) paragraph {paragraph_number}"
            context = _require(paragraph, "context", str, paragraph_where)
            questions = _require(paragraph, "qas", list, paragraph_where)
            for question_number, qa in enumerate(questions):
                question_id = _require(qa, "id", str, f"{paragraph_where} question {question_number}")
                where = f"{path}: question {question_id!r}"
                if question_id in seen:
                    raise DataError(f"{where}: duplicate question id (each id must appear once)")
                seen.add(question_id)
                question = _require(qa, "question", str, where)
                is_impossible = _require(qa, "is_impossible", bool, where)
                answers = []
                for answer_number, answer in enumerate(_require(qa, "answers", list, where)):
                    answer_where = f"{where} answer {answer_number}"
                    text = _require(answer, "text", str, answer_where)
                    start = _require(answer, "answer_start", int, answer_where)
                    answers.append((text, start))
                examples.append(
                    _build_example(str(path), question_id, title, context, question, answers, is_impossible)
                )
    if not examples:
        raise DataError(f"{path}: no questions found (expected data[].paragraphs[].qas[] entries)")
    return examples


def _parse_hub_source(source: str) -> tuple[str, str]:
    """'hub:squad_v2:validation' -> ('squad_v2', 'validation')."""
    parts = source.split(":")
    if len(parts) != 3 or parts[0] != "hub" or not parts[1] or not parts[2]:
        raise DataError(f"{source}: hub sources are written 'hub:<dataset>:<split>', e.g. 'hub:squad_v2:train'")
    if parts[1] != "squad_v2":
        raise DataError(f"{source}: only the squad_v2 dataset is supported from the hub")
    return parts[1], parts[2]


def _examples_from_hub(source: str) -> list[SquadExample]:
    """Load a split of squad_v2 through `datasets` (needs the network or a filled HF cache)."""
    import datasets  # imported here: only hub sources need it

    name, split = _parse_hub_source(source)
    logger.info("data: loading %s split %s through datasets", name, split)
    rows = datasets.load_dataset(name, split=split)
    examples: list[SquadExample] = []
    seen: set[str] = set()
    for row in rows:
        question_id = row["id"]
        if question_id in seen:
            raise DataError(f"{source}: question {question_id!r}: duplicate question id")
        seen.add(question_id)
        answers = list(zip(row["answers"]["text"], row["answers"]["answer_start"]))
        examples.append(
            _build_example(
                source, question_id, row["title"], row["context"], row["question"], answers, not answers
            )
        )
    if not examples:
        raise DataError(f"{source}: no questions found")
    return examples


def load_examples(source: str, max_examples: int = 0) -> list[SquadExample]:
    """Every question of one SQuAD 2.0 source (a JSON path or 'hub:squad_v2:<split>'), checked.

    The whole source is checked even when only the first `max_examples` (0 = all) are returned.
    """
    source = str(source)
    if source.startswith(HUB_PREFIX):
        examples = _examples_from_hub(source)
    else:
        examples = _examples_from_json(Path(source))
    return examples[:max_examples] if max_examples > 0 else examples


def load_many(sources: Sequence[str], max_examples: int = 0) -> list[SquadExample]:
    """Questions of several sources in order; ids must be unique across all of them.

    `max_examples` (0 = all) keeps the first N questions of the concatenation.
    """
    if isinstance(sources, (str, Path)):
        sources = [str(sources)]
    if not sources:
        raise DataError("no data sources given")
    examples: list[SquadExample] = []
    first_source: dict[str, str] = {}
    for source in sources:
        for example in load_examples(str(source)):
            if example.id in first_source:
                raise DataError(
                    f"{source}: question {example.id!r}: duplicate question id, already in {first_source[example.id]}"
                )
            first_source[example.id] = str(source)
            examples.append(example)
    return examples[:max_examples] if max_examples > 0 else examples


# --------------------------------------------------------------------------------------------------
# Tokenising into windows
# --------------------------------------------------------------------------------------------------


def _check_tokenizer(tokenizer: Any, max_seq_length: int, doc_stride: int, max_query_length: int) -> None:
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
    _check_tokenizer(tokenizer, max_seq_length, doc_stride, max_query_length)
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


# --------------------------------------------------------------------------------------------------
# Fingerprints
# --------------------------------------------------------------------------------------------------


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_fingerprint(path: str | Path) -> str:
    """sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        raise DataError(f"{path}: data file not found") from None
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Stable hash of what decides a tokenizer's output: class, full tokenizer JSON (or vocab),
    special tokens and padding side. Truncation/padding state left behind by earlier calls is ignored."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)  # set by every call with truncation=...; not part of identity
        state.pop("padding", None)
    else:
        state = {"vocab": tokenizer.get_vocab()}
    special_names = ("cls_token", "sep_token", "pad_token", "unk_token", "mask_token")
    special = {name: str(getattr(tokenizer, name, None)) for name in special_names}
    description = {
        "class": type(tokenizer).__name__,
        "state": state,
        "special_tokens": special,
        "all_special_tokens": sorted(map(str, getattr(tokenizer, "all_special_tokens", []))),
        "padding_side": tokenizer.padding_side,
    }
    return _sha256_text(json.dumps(description, sort_keys=True, ensure_ascii=False))


def _source_fingerprint(source: str) -> str:
    if source.startswith(HUB_PREFIX):
        name, split = _parse_hub_source(source)
        return f"hub:{name}:{split}"
    return file_fingerprint(source)


def features_fingerprint(
    sources: Sequence[str],
    tokenizer: Any,
    *,
    kind: str,
    max_seq_length: int,
    doc_stride: int,
    max_query_length: int,
    max_examples: int,
) -> str:
    """The cache key of load_features: every input that decides the features."""
    key = {
        "format_version": FORMAT_VERSION,
        "sources": [_source_fingerprint(str(source)) for source in sources],
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "kind": kind,
        "max_seq_length": max_seq_length,
        "doc_stride": doc_stride,
        "max_query_length": max_query_length,
        "max_examples": max_examples,
    }
    return _sha256_text(json.dumps(key, sort_keys=True))


# --------------------------------------------------------------------------------------------------
# Arrow feature sets and the on-disk cache
# --------------------------------------------------------------------------------------------------


def _list_array_to_numpy(column: pa.ChunkedArray | pa.Array) -> list[np.ndarray]:
    """Split a list<...> column into one numpy array per row (zero-copy views where possible)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(array) == 0:
        return []
    offsets = array.offsets.to_numpy()
    values = array.values
    if pa.types.is_fixed_size_list(values.type):
        width = values.type.list_size
        flat = values.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
    else:
        flat = values.to_numpy(zero_copy_only=False)
    return [flat[offsets[row] : offsets[row + 1]] for row in range(len(array))]


@dataclass
class FeatureSet:
    """Windows of one kind (train or eval) as an Arrow table, with the questions they came from."""

    table: pa.Table
    examples: list[SquadExample]
    fingerprint: str
    path: Path | None

    def __len__(self) -> int:
        return self.table.num_rows

    def column(self, name: str) -> list:
        """A column as Python lists (offset_mapping rows are lists of [start, end])."""
        if name not in self.table.column_names:
            raise KeyError(f"feature column {name!r} not present; have {', '.join(self.table.column_names)}")
        return self.table.column(name).to_pylist()

    def arrays(self, name: str) -> list[np.ndarray]:
        """A list column as one numpy array per window (offset_mapping: shape (len, 2))."""
        if name not in self.table.column_names:
            raise KeyError(f"feature column {name!r} not present; have {', '.join(self.table.column_names)}")
        return _list_array_to_numpy(self.table.column(name))

    def numpy(self, name: str) -> np.ndarray:
        """A scalar column (example_index, start_positions, end_positions) as a numpy array."""
        return self.table.column(name).to_numpy()


def features_to_table(features: Mapping[str, list], metadata: Mapping[str, str] | None = None) -> pa.Table:
    """The dict returned by prepare_*_features as an Arrow table in the documented layout."""
    arrays: dict[str, pa.Array] = {}
    for name, values in features.items():
        if name == "offset_mapping":
            arrays[name] = pa.array(values, type=pa.list_(pa.list_(pa.int32(), 2)))
        elif name in ("input_ids", "token_type_ids", "attention_mask"):
            arrays[name] = pa.array(values, type=pa.list_(pa.int32()))
        else:
            arrays[name] = pa.array(values, type=pa.int32())
    table = pa.table(arrays)
    if metadata:
        table = table.replace_schema_metadata({key: str(value) for key, value in metadata.items()})
    return table


def lengths(features: FeatureSet | Mapping[str, list] | pa.Table) -> np.ndarray:
    """Token count of every window, shape (num_features,), for length bucketing and dynamic padding."""
    if isinstance(features, FeatureSet):
        features = features.table
    if isinstance(features, pa.Table):
        column = features.column("input_ids").combine_chunks()
        return np.diff(column.offsets.to_numpy()).astype(np.int64)
    return np.array([len(ids) for ids in features["input_ids"]], dtype=np.int64)


def _write_table(table: pa.Table, path: Path) -> None:
    """Write an Arrow IPC file atomically (`files.atomic_path`)."""
    with atomic_path(path) as temporary:
        with pa.OSFile(str(temporary), "wb") as sink:
            with pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)

def _read_cached(path: Path, fingerprint: str, num_examples: int) -> pa.Table | None:
    """The memory-mapped table at `path` if it is a complete cache for this fingerprint, else None."""
    try:
        table = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
    except (OSError, pa.ArrowInvalid) as error:
        logger.warning("features: unreadable cache %s (%s); rebuilding", path, error)
        return None
    metadata = {key.decode(): value.decode() for key, value in (table.schema.metadata or {}).items()}
    if metadata.get("fingerprint") != fingerprint or metadata.get("num_examples") != str(num_examples):
        logger.warning("features: cache %s does not match its name's key; rebuilding", path)
        return None
    return table


def load_features(
    sources: Sequence[str],
    tokenizer: Any,
    *,
    kind: Literal["train", "eval"],
    max_seq_length: int,
    doc_stride: int,
    max_query_length: int,
    max_examples: int = 0,
    cache_dir: str | Path | None,
) -> FeatureSet:
    """Checked examples of `sources` and their windows; cached under `cache_dir` (None = no cache)."""
    if kind not in ("train", "eval"):
        raise DataError(f"kind={kind!r}: expected 'train' or 'eval'")
    if isinstance(sources, (str, Path)):
        sources = [str(sources)]
    sources = [str(source) for source in sources]
    _check_tokenizer(tokenizer, max_seq_length, doc_stride, max_query_length)
    examples = load_many(sources, max_examples)
    fingerprint = features_fingerprint(
        sources,
        tokenizer,
        kind=kind,
        max_seq_length=max_seq_length,
        doc_stride=doc_stride,
        max_query_length=max_query_length,
        max_examples=max_examples,
    )
    path = Path(cache_dir) / f"features-{kind}-{fingerprint[:24]}.arrow" if cache_dir else None
    if path is not None and path.is_file():
        table = _read_cached(path, fingerprint, len(examples))
        if table is not None:
            logger.info("features: cache hit %s (%d windows)", path, table.num_rows)
            return FeatureSet(table=table, examples=examples, fingerprint=fingerprint, path=path)
    prepare = prepare_train_features if kind == "train" else prepare_eval_features
    features = prepare(examples, tokenizer, max_seq_length, doc_stride, max_query_length)
    metadata = {
        "fingerprint": fingerprint,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "sources": json.dumps(sources),
        "num_examples": len(examples),
        "max_seq_length": max_seq_length,
        "doc_stride": doc_stride,
        "max_query_length": max_query_length,
    }
    table = features_to_table(features, metadata)
    if path is None:
        return FeatureSet(table=table, examples=examples, fingerprint=fingerprint, path=None)
    _write_table(table, path)
    logger.info("features: wrote %s (%d windows)", path, table.num_rows)
    # Re-open memory-mapped so that every caller holds the same kind of table, built or cached.
    table = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
    return FeatureSet(table=table, examples=examples, fingerprint=fingerprint, path=path)


# --------------------------------------------------------------------------------------------------
# Batches: packed columns, length-bucketed batch order, dynamic padding
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackedColumn:
    """A list<int> column as one flat array and row offsets (row i = values[offsets[i]:offsets[i+1]])."""

    values: np.ndarray  # (total_tokens,)
    offsets: np.ndarray  # (rows + 1,)

    @classmethod
    def from_arrow(cls, column) -> "PackedColumn":
        if hasattr(column, "combine_chunks"):
            column = column.combine_chunks()
        offsets = column.offsets.to_numpy().astype(np.int64)
        values = column.flatten().to_numpy(zero_copy_only=False)
        return cls(values=values, offsets=offsets - offsets[0])

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]]) -> "PackedColumn":
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.fromiter((value for row in rows for value in row), dtype=np.int64, count=int(offsets[-1]))
        return cls(values=values, offsets=offsets)

    @property
    def lengths(self) -> np.ndarray:  # (rows,)
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, index: int) -> np.ndarray:
        return self.values[self.offsets[index] : self.offsets[index + 1]]


def pad_rows(column: PackedColumn, indices: Sequence[int], pad_value: int | float, dtype: torch.dtype,
             length: int | None = None) -> torch.Tensor:
    """Rows `indices` right-padded to the longest of them (or to `length`).  # (batch, seq_len)"""
    lengths = column.lengths[np.asarray(indices)]
    width = int(lengths.max()) if length is None else length
    out = np.full((len(indices), width), pad_value, dtype=column.values.dtype)  # (batch, width)
    for out_row, (index, row_length) in enumerate(zip(indices, lengths)):
        start = column.offsets[index]
        out[out_row, :row_length] = column.values[start : start + row_length]
    return torch.from_numpy(out).to(dtype)


def bucketed_batches(lengths: Sequence[int] | np.ndarray, batch_size: int, *, seed: int, epoch: int,
                     bucket_batches: int = 50, bucketing: bool = True, drop_last: bool = False) -> list[np.ndarray]:
    """The epoch's batches of row indices, a pure function of (lengths, batch_size, seed, epoch).

    With bucketing: shuffle, cut into groups of `bucket_batches` batches, sort each group by length,
    split into batches and shuffle the batch order (so lengths are similar within a batch but the
    order of batches stays random). Without: plain shuffled batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lengths = np.asarray(lengths)
    generator = np.random.default_rng([seed, epoch])
    order = generator.permutation(len(lengths))
    if bucketing:
        group = batch_size * bucket_batches
        chunks = []
        for start in range(0, len(order), group):
            chunk = order[start : start + group]
            chunks.append(chunk[np.argsort(lengths[chunk], kind="stable")])
        order = np.concatenate(chunks) if chunks else order
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if bucketing:
        batches = [batches[index] for index in generator.permutation(len(batches))]
    return batches


def sorted_batches(lengths: Sequence[int] | np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Inference batches: rows sorted by length (least padding); callers restore the original order."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def main(argv: list[str] | None = None) -> None:
    """Check data files and build (or find) their cached features; logs counts and the cache path."""
    from transformers import AutoTokenizer

    parser = argparse.ArgumentParser(description="Check SQuAD 2.0 files and cache their tokenised windows.")
    parser.add_argument("--data", nargs="+", required=True, help="SQuAD 2.0 JSON files or hub:squad_v2:<split>")
    parser.add_argument("--tokenizer", required=True, help="tokenizer directory (or hub id)")
    parser.add_argument("--kind", choices=("train", "eval"), default="eval")
    parser.add_argument("--max-seq-length", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--max-query-length", type=int, default=64)
    parser.add_argument("--max-examples", type=int, default=0)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    feature_set = load_features(
        args.data,
        tokenizer,
        kind=args.kind,
        max_seq_length=args.max_seq_length,
        doc_stride=args.doc_stride,
        max_query_length=args.max_query_length,
        max_examples=args.max_examples,
        cache_dir=args.cache_dir,
    )
    window_lengths = lengths(feature_set)
    unanswerable = sum(example.is_impossible for example in feature_set.examples)
    logger.info(
        "data: %d questions (%d unanswerable), %d windows, mean length %.1f tokens, cache %s",
        len(feature_set.examples),
        unanswerable,
        len(feature_set),
        float(window_lengths.mean()) if len(window_lengths) else 0.0,
        feature_set.path,
    )


if __name__ == "__main__":
    main()
