"""The teacher: load a fine-tuned QA model, and compute its logits over the train features once.

A teacher is any Hugging Face question-answering model (`AutoModelForQuestionAnswering`), from a
local directory or a hub id. Distillation needs its start/end logits for every training window;
instead of running the teacher in every step of every trial (the reference experiment's waste),
`teacher_logits` computes them once (runtime.qa_logits) and caches them on disk (float16 by
default) under a key made of the teacher's fingerprint and the feature cache's fingerprint. Trials
memory-map the cache. `tune-distill teacher-logits` fills the cache from the command line.

Users without a teacher fine-tune one with `tune-distill teacher` (see `distill.fine_tune`): that
is the training loop with alpha_ce = 0, so it lives in the distillation stage. For a teacher made
from scratch (smoke sweeps, offline), the WordPiece tokenizer and the random encoder are made here.

Must not know: students, losses, evaluation metrics, Ray or searchers.

Example (CPU, a few minutes on the shared teacher; seconds with --max-examples 50):
    tune-distill teacher-logits --teacher ../shared/models/teacher-minilm-l6-squad2 \
        --data ../shared/data/squad2/val.json --max-examples 50
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tune_distill.data import FeatureSet, PackedColumn, load_features, pad_rows
from tune_distill.runtime import check_vocabulary, load_qa_weights, qa_logits, resolve_device

log = logging.getLogger(__name__)

LOGITS_FORMAT_VERSION = 1


def load_teacher(path: str, device: torch.device | str = "cpu"):
    """(model in eval mode, tokenizer) from a local directory or a hub id."""
    from transformers import AutoTokenizer

    local = Path(path)
    if not local.exists() and (path.startswith((".", "/")) or path.count("/") > 1):
        raise FileNotFoundError(f"teacher.path: {path} does not exist (give a local model directory or a hub id)")
    model = load_qa_weights(path, "teacher.path")
    tokenizer = AutoTokenizer.from_pretrained(path)
    check_vocabulary(tokenizer, model.config, path, "teacher.path")
    model.to(device).eval()
    return model, tokenizer


def teacher_fingerprint(path: str) -> str:
    """Content hash of a local teacher (config + weight files); the id for a hub teacher."""
    local = Path(path)
    digest = hashlib.sha256()
    if local.is_dir():
        for file in sorted(local.iterdir()):
            if file.suffix in (".json", ".safetensors", ".bin") and "tokenizer" not in file.name:
                digest.update(file.name.encode())
                stat = file.stat()
                if file.suffix == ".json" or stat.st_size < 1 << 20:
                    digest.update(file.read_bytes())
                else:  # large weights: hash size + first and last MiB (fast, and changes with any retrain)
                    digest.update(str(stat.st_size).encode())
                    with open(file, "rb") as handle:
                        digest.update(handle.read(1 << 20))
                        handle.seek(-(1 << 20), os.SEEK_END)
                        digest.update(handle.read(1 << 20))
    else:
        digest.update(f"hub:{path}".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class TeacherLogits:
    """Cached teacher logits aligned with a feature set's rows (packed, memory-mapped)."""

    start: PackedColumn
    end: PackedColumn
    path: Path | None

    def batch(self, indices, length: int, fill: float) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 start/end logits for rows `indices`, padded with `fill` to `length`.  # 2 x (batch, length)"""
        start = pad_rows(self.start, indices, fill, torch.float32, length)  # (batch, length)
        end = pad_rows(self.end, indices, fill, torch.float32, length)  # (batch, length)
        return start, end


def _logits_dir(cache_dir: str | Path, teacher_path: str, features: FeatureSet, dtype: str) -> Path:
    key = hashlib.sha256(
        json.dumps([LOGITS_FORMAT_VERSION, teacher_fingerprint(teacher_path), features.fingerprint, dtype]).encode()
    ).hexdigest()[:20]
    return Path(cache_dir) / "teacher_logits" / key


def teacher_logits(teacher_path: str, features: FeatureSet, *, cache_dir: str | Path | None, batch_size: int = 64,
                   dtype: str = "float16", device: torch.device | str = "cpu", precision: str = "fp32",
                   model=None, pad_token_id: int = 0, pad_multiple: int = 0) -> TeacherLogits:
    """The teacher's logits over `features`, computed once and then read from the cache (batches padded to
    the fixed widths of `pad_multiple`, 0 = auto: the logits do not depend on it beyond float rounding)."""
    if dtype not in ("float16", "float32"):
        raise ValueError(f"teacher.logits_dtype: expected float16 or float32, got {dtype!r}")
    target = _logits_dir(cache_dir, teacher_path, features, dtype) if cache_dir else None
    if target is not None and (target / "done").exists():
        log.info("teacher logits: cache hit %s", target)
        offsets = np.load(target / "offsets.npy")
        start = np.load(target / "start.npy", mmap_mode="r")
        end = np.load(target / "end.npy", mmap_mode="r")
        return TeacherLogits(PackedColumn(start, offsets), PackedColumn(end, offsets), target)
    if model is None:
        model, _ = load_teacher(teacher_path, device)
    began = time.perf_counter()
    start, end = qa_logits(model, features, batch_size=batch_size, device=device, precision=precision,
                           pad_token_id=pad_token_id, desc="teacher logits", pad_multiple=pad_multiple)
    log.info("teacher logits: %d features in %.1fs", len(features), time.perf_counter() - began)
    numpy_dtype = np.float16 if dtype == "float16" else np.float32
    start = PackedColumn(start.values.astype(numpy_dtype), start.offsets)
    end = PackedColumn(end.values.astype(numpy_dtype), end.offsets)
    bad = int((~np.isfinite(start.values)).sum() + (~np.isfinite(end.values)).sum())
    if bad:
        raise ValueError(f"teacher.path {teacher_path}: {bad} of its logits are NaN or infinite as {dtype} (precision "
                         f"{precision}); not cached. Try teacher.logits_dtype=float32 or distill.precision=fp32")
    if target is None:
        return TeacherLogits(start, end, None)
    staging = target.with_name(f"{target.name}.tmp{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    np.save(staging / "offsets.npy", start.offsets)
    np.save(staging / "start.npy", start.values)
    np.save(staging / "end.npy", end.values)
    done = {"teacher": teacher_path, "features": features.fingerprint, "dtype": dtype}
    (staging / "done").write_text(json.dumps(done))
    try:
        os.replace(staging, target)
    except OSError:  # another process finished first: keep theirs
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return teacher_logits(teacher_path, features, cache_dir=cache_dir, dtype=dtype)


SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece_tokenizer(texts, vocab_size: int = 4000):
    """A lower-cased BERT WordPiece tokenizer learned from `texts` (for a teacher made from scratch)."""
    from tokenizers.implementations import BertWordPieceTokenizer
    from transformers import BertTokenizer

    learner = BertWordPieceTokenizer(lowercase=True)
    learner.train_from_iterator(list(texts), vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=1,
                                show_progress=False)
    vocabulary = dict(sorted(learner.get_vocab().items(), key=lambda item: item[1]))
    return BertTokenizer(vocab=vocabulary)


def scratch_encoder(tokenizer, *, hidden_size: int = 64, num_hidden_layers: int = 4, num_attention_heads: int = 4,
                    intermediate_size: int = 256, max_position_embeddings: int = 512, seed: int = 0):
    """A randomly initialised BERT QA model sized by the arguments, for the tokenizer's vocabulary."""
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                        num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
                        max_position_embeddings=max_position_embeddings, pad_token_id=tokenizer.pad_token_id or 0)
    return BertForQuestionAnswering(config)


def parse_scratch_spec(spec: str) -> dict[str, int]:
    """'scratch:hidden=64,layers=4,heads=4,intermediate=256,vocab=4000' -> sizes (missing keys: defaults)."""
    sizes = {"hidden": 64, "layers": 4, "heads": 4, "intermediate": 256, "vocab": 4000}
    body = spec.split(":", 1)[1] if ":" in spec else ""
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, _, value = part.partition("=")
        if key not in sizes or not value.isdigit():
            raise ValueError(f"--encoder {spec!r}: expected scratch:key=int,... with keys {', '.join(sizes)}")
        sizes[key] = int(value)
    if sizes["hidden"] % sizes["heads"]:
        raise ValueError(f"--encoder {spec!r}: hidden={sizes['hidden']} is not divisible by heads={sizes['heads']}")
    return sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `tune-distill teacher-logits`."""
    parser.add_argument("--teacher", required=True, help="teacher directory or hub id")
    parser.add_argument("--data", required=True, nargs="+", help="SQuAD 2.0 JSON files or hub:squad_v2:<split>")
    parser.add_argument("--cache-dir", default=".cache/tune_distill")
    parser.add_argument("--max-seq-length", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--max-examples", type=int, default=0)
    parser.add_argument("--device", default="auto")


def command(args: argparse.Namespace) -> TeacherLogits:
    """Compute (and cache) a teacher's logits over a data file's train features; print the cache path."""
    device = resolve_device(args.device)
    model, tokenizer = load_teacher(args.teacher, device)
    features = load_features(args.data, tokenizer, kind="train", max_seq_length=args.max_seq_length,
                             doc_stride=args.doc_stride, max_query_length=64, max_examples=args.max_examples,
                             cache_dir=args.cache_dir)
    logits = teacher_logits(args.teacher, features, cache_dir=args.cache_dir, device=device, model=model,
                            pad_token_id=tokenizer.pad_token_id or 0)
    print(json.dumps({"features": len(features), "cache": str(logits.path)}))
    return logits
