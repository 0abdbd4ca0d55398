"""Feature sets: tokenised windows of checked questions, cached on disk as Arrow IPC files.

`load_features` checks the sources (squad.py), windows them (windows.py) and stores the windows
unpadded (one variable-length list per window) in an Arrow IPC file under `cache_dir`, named by a
fingerprint of everything that decides them (data bytes, tokenizer, lengths, kind, max_examples,
FORMAT_VERSION). Files are written to a temporary name and renamed into place (`files.atomic_path`),
so sweep trials running at once never see a half-written cache; reads are memory-mapped.

Arrow layout of a cached FeatureSet (one row per window):
    input_ids, token_type_ids, attention_mask   list<int32>
    example_index                               int32 (index into FeatureSet.examples)
    start_positions, end_positions              int32 (kind="train" only)
    offset_mapping                              list<fixed_size_list<int32, 2>> (kind="eval" only)

Also here: `tune-distill features`, which checks data files and builds (or finds) their cache.

Must not know: models, teachers, students, training or metrics.

Example (CPU, about a minute):
    nice tune-distill features --data ../shared/data/squad2/val.json \
        --tokenizer ../shared/models/teacher-minilm-l6-squad2 --kind eval \
        --max-seq-length 256 --doc-stride 96 --cache-dir /tmp/td-cache
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pyarrow as pa

from tune_distill.data.squad import HUB_PREFIX, DataError, SquadExample, load_many, parse_hub_source
from tune_distill.data.windows import check_tokenizer, prepare_eval_features, prepare_train_features
from tune_distill.files import atomic_path

logger = logging.getLogger(__name__)

# Bump whenever the content or layout of cached features changes: old cache files are then ignored.
FORMAT_VERSION = 1


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
        name, split = parse_hub_source(source)
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
    check_tokenizer(tokenizer, max_seq_length, doc_stride, max_query_length)
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
# tune-distill features
# --------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `tune-distill features`."""
    parser.add_argument("--data", nargs="+", required=True, help="SQuAD 2.0 JSON files or hub:squad_v2:<split>")
    parser.add_argument("--tokenizer", required=True, help="tokenizer directory (or hub id)")
    parser.add_argument("--kind", choices=("train", "eval"), default="eval")
    parser.add_argument("--max-seq-length", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--max-query-length", type=int, default=64)
    parser.add_argument("--max-examples", type=int, default=0)
    parser.add_argument("--cache-dir", default=None)


def command(args: argparse.Namespace) -> FeatureSet:
    """Check data files and build (or find) their cached features; logs counts and the cache path."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    feature_set = load_features(
        args.data, tokenizer, kind=args.kind, max_seq_length=args.max_seq_length, doc_stride=args.doc_stride,
        max_query_length=args.max_query_length, max_examples=args.max_examples, cache_dir=args.cache_dir,
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
    return feature_set
