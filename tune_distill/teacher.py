"""The teacher: load a fine-tuned QA model, and compute its logits over the train features once.

A teacher is any Hugging Face question-answering model (`AutoModelForQuestionAnswering`), from a
local directory or a hub id. Distillation needs its start/end logits for every training window;
instead of running the teacher in every step of every trial (the reference experiment's waste),
`teacher_logits` computes them once and caches them on disk (float16 by default) under a key made
of the teacher's fingerprint and the feature cache's fingerprint. Trials memory-map the cache.

Users without a teacher fine-tune one with `tune-distill teacher` (see `distill.fine_tune`): that
is the training loop with alpha_ce = 0, so it lives in the distillation stage.

Must not know: students, losses, evaluation metrics, Ray or searchers.

Example (CPU, a few minutes on the shared teacher; seconds with --max-examples 50):
    python -m tune_distill.teacher --teacher ../shared/models/teacher-minilm-l6-squad2 \
        --data ../shared/data/squad2/val.json --max-examples 50
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tune_distill.progress import Progress

from tune_distill.data import PackedColumn, pad_rows, sorted_batches
from tune_distill.data import FeatureSet

log = logging.getLogger(__name__)

LOGITS_FORMAT_VERSION = 1


def resolve_device(name: torch.device | str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> bf16 on a GPU that has it, else fp16 on GPU, fp32 on CPU; others checked and returned."""
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: expected auto, {', '.join(PRECISIONS)}")
    return precision


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision setting on a device (None = plain fp32)."""
    return PRECISIONS[resolve_precision(precision, device)]


def autocast(device: torch.device, precision: str):
    """Autocast context for bf16/fp16 (weights stay fp32); a no-op for fp32."""
    dtype = autocast_dtype(precision, device)
    return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def accepts_token_type_ids(model: torch.nn.Module) -> bool:
    """DistilBERT-like models take no token_type_ids; BERT-like ones do."""
    return "token_type_ids" in inspect.signature(model.forward).parameters


def load_teacher(path: str, device: torch.device | str = "cpu"):
    """(model in eval mode, tokenizer) from a local directory or a hub id."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    local = Path(path)
    if not local.exists() and (path.startswith((".", "/")) or path.count("/") > 1):
        raise FileNotFoundError(f"teacher.path: {path} does not exist (give a local model directory or a hub id)")
    model = AutoModelForQuestionAnswering.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
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


def model_inputs(features: FeatureSet) -> dict[str, PackedColumn]:
    """The packed model-input columns of a feature set."""
    return {name: PackedColumn.from_arrow(features.table.column(name))
            for name in ("input_ids", "token_type_ids", "attention_mask")}


PAD_MULTIPLE = 8  # batch widths are rounded up to this: fewer distinct shapes (allocator reuse, kernels)


def collate(columns: dict[str, PackedColumn], indices, pad_token_id: int, length: int | None = None) -> dict[str, torch.Tensor]:
    """Model inputs for rows `indices`, padded to the longest row rounded up to PAD_MULTIPLE (or to `length`)."""
    if length is None:
        longest = int(columns["input_ids"].lengths[np.asarray(indices)].max())
        length = -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE
    return {
        "input_ids": pad_rows(columns["input_ids"], indices, pad_token_id, torch.long, length),  # (batch, seq_len)
        "token_type_ids": pad_rows(columns["token_type_ids"], indices, 0, torch.long, length),  # (batch, seq_len)
        "attention_mask": pad_rows(columns["attention_mask"], indices, 0, torch.long, length),  # (batch, seq_len)
    }


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Move a batch of CPU tensors to `device`; on CUDA through pinned memory, so the copy is asynchronous."""
    if device.type != "cuda":
        return {name: tensor.to(device) for name, tensor in batch.items()}
    return {name: tensor.pin_memory().to(device, non_blocking=True) for name, tensor in batch.items()}


@torch.inference_mode()
def qa_logits(model, features: FeatureSet, *, batch_size: int = 64, device: torch.device | str = "cpu",
              precision: str = "fp32", pad_token_id: int = 0, desc: str = "logits") -> tuple[PackedColumn, PackedColumn]:
    """Start and end logits of a QA model for every feature, unpadded, as packed float32 columns.

    Rows are run in length-sorted batches (least padding) and written back in feature order.
    """
    device = resolve_device(device)
    model.eval()
    model.to(device)
    columns = model_inputs(features)
    lengths = columns["input_ids"].lengths
    offsets = columns["input_ids"].offsets
    start_values = np.zeros(int(offsets[-1]), dtype=np.float32)
    end_values = np.zeros(int(offsets[-1]), dtype=np.float32)
    pass_token_types = accepts_token_type_ids(model)
    with Progress(len(lengths), desc, unit="feat") as progress, autocast(device, precision):
        for batch_indices in sorted_batches(lengths, batch_size):
            batch = collate(columns, batch_indices, pad_token_id)
            if not pass_token_types:
                batch.pop("token_type_ids")
            output = model(**to_device(batch, device))
            start = output.start_logits.float().cpu().numpy()  # (batch, seq_len)
            end = output.end_logits.float().cpu().numpy()  # (batch, seq_len)
            for row, index in enumerate(batch_indices):
                begin, length = offsets[index], lengths[index]
                start_values[begin : begin + length] = start[row, :length]
                end_values[begin : begin + length] = end[row, :length]
            progress.update(len(batch_indices))
    return PackedColumn(start_values, offsets.copy()), PackedColumn(end_values, offsets.copy())


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
                   model=None, pad_token_id: int = 0) -> TeacherLogits:
    """The teacher's logits over `features`, computed once and then read from the cache."""
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
                           pad_token_id=pad_token_id, desc="teacher logits")
    log.info("teacher logits: %d features in %.1fs", len(features), time.perf_counter() - began)
    numpy_dtype = np.float16 if dtype == "float16" else np.float32
    start = PackedColumn(start.values.astype(numpy_dtype), start.offsets)
    end = PackedColumn(end.values.astype(numpy_dtype), end.offsets)
    if target is None:
        return TeacherLogits(start, end, None)
    staging = target.with_name(f"{target.name}.tmp{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    np.save(staging / "offsets.npy", start.offsets)
    np.save(staging / "start.npy", start.values)
    np.save(staging / "end.npy", end.values)
    (staging / "done").write_text(json.dumps({"teacher": teacher_path, "features": features.fingerprint, "dtype": dtype}))
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


def main(argv: list[str] | None = None) -> None:
    from tune_distill.data import load_features

    parser = argparse.ArgumentParser(description="Compute (and cache) a teacher's logits over a data file's train features.")
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--data", required=True, nargs="+")
    parser.add_argument("--cache-dir", default=".cache/tune_distill")
    parser.add_argument("--max-seq-length", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--max-examples", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    device = resolve_device(args.device)
    model, tokenizer = load_teacher(args.teacher, device)
    features = load_features(args.data, tokenizer, kind="train", max_seq_length=args.max_seq_length,
                             doc_stride=args.doc_stride, max_query_length=64, max_examples=args.max_examples,
                             cache_dir=args.cache_dir)
    logits = teacher_logits(args.teacher, features, cache_dir=args.cache_dir, device=device, model=model,
                            pad_token_id=tokenizer.pad_token_id or 0)
    print(json.dumps({"features": len(features), "cache": str(logits.path)}))


if __name__ == "__main__":
    main()
