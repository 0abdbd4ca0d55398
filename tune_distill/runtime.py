"""Where and how models run: device, precision (autocast), batches onto the device, batched inference.

`resolve_device` turns "auto" into cuda or cpu; `resolve_precision` turns "auto" into bf16 on a GPU
that has it, fp16 on other GPUs and fp32 on CPU; `autocast` is the matching context (weights stay
fp32). `to_device` moves a batch of CPU tensors to the device (through pinned memory on CUDA).
`qa_logits` runs any question-answering model over a feature set in length-sorted batches and
returns unpadded start/end logits in feature order: the one batched inference behind the teacher's
cached logits, evaluation and answering.

Must not know: teachers, students, losses, training, metrics, Ray or searchers.

Example (CPU, instant):
    python -c "from tune_distill.runtime import resolve_device, resolve_precision; \
device = resolve_device('auto'); print(device, resolve_precision('auto', device))"
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from tune_distill.data import FeatureSet, PackedColumn, collate, model_inputs, sorted_batches
from tune_distill.progress import Progress


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


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Move a batch of CPU tensors to `device`; on CUDA through pinned memory, so the copy is asynchronous."""
    if device.type != "cuda":
        return {name: tensor.to(device) for name, tensor in batch.items()}
    return {name: tensor.pin_memory().to(device, non_blocking=True) for name, tensor in batch.items()}


@torch.inference_mode()
def qa_logits(model, features: FeatureSet, *, batch_size: int = 64, device: torch.device | str = "cpu",
              precision: str = "fp32", pad_token_id: int = 0,
              desc: str = "logits") -> tuple[PackedColumn, PackedColumn]:
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
