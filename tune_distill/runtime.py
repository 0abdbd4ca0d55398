"""Where and how models run: device, precision (autocast), batches onto the device, batched inference.

`resolve_device` turns "auto" into cuda or cpu (and refuses a device the machine lacks);
`resolve_precision` turns "auto" into bf16 on a GPU that has it,
fp16 on other GPUs and fp32 on CPU (the static rule, for inference); `autocast` is the
matching context (weights stay fp32). Training's "auto" is measured instead: `training_precision`
times a few forward+backward steps of the student in each candidate precision (`step_timer`) once
per (device, student shape, batch, length) and keeps the fastest in a small JSON cache
(`fastest_precision`: fp32 unless another is clearly faster); on CPU it is fp32 without timing.
`bound_gpu_memory` caps a process's CUDA allocator at its share of a GPU (trials packed on one GPU);
`is_out_of_memory` recognises a CUDA out-of-memory error. `to_device` moves a batch of CPU tensors
to the device (through pinned memory on CUDA). `qa_logits` runs any question-answering model over
a feature set in length-sorted batches padded to a few fixed widths (data.pad_widths) and returns
unpadded start/end logits in feature order: the one batched inference behind the teacher's cached
logits, evaluation and answering (it refuses a batch size below 1 and checks that every row got its
logits). `load_qa_weights` loads a question-answering model and refuses a folder that is not one
(`check_qa_config`: no ...ForQuestionAnswering architecture; or no answer-head weights), and
`check_vocabulary` a tokenizer that makes ids the model's embeddings lack.

Must not know: teachers, students, losses, the training loop (step_timer's probe steps are a plain
forward and backward), metrics, Ray or searchers.

Example (CPU, instant):
    python -c "from tune_distill.runtime import resolve_device, resolve_precision; \
device = resolve_device('auto'); print(device, resolve_precision('auto', device))"
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from tune_distill.data import (
    PAD_MULTIPLE,
    RUN_PAD_MULTIPLE,
    FeatureSet,
    PackedColumn,
    collate,
    model_inputs,
    pad_widths,
    sorted_batches,
)
from tune_distill.files import read_json_object, write_json
from tune_distill.progress import Progress

log = logging.getLogger(__name__)


def resolve_device(name: torch.device | str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; a device this machine lacks is a ValueError naming it."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {name!r}: torch sees no CUDA GPU on this machine; use cpu or auto")
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {name!r}: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}")
    return device


def load_qa_weights(path: str | Path, what: str = "model"):
    """A Hugging Face question-answering model (eval mode) from a folder or hub id, refused with a ValueError
    naming `what` and the folder when it is not one: config.json must name a ...ForQuestionAnswering
    architecture and the weights must hold its answer head (qa_outputs), never a randomly initialised one."""
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    check_qa_config(AutoConfig.from_pretrained(str(path)), path, what)
    model, info = AutoModelForQuestionAnswering.from_pretrained(str(path), output_loading_info=True)
    missing = [name for name in info.get("missing_keys", ()) if "qa_outputs" in name]
    if missing:
        raise ValueError(f"{what} {path}: not a question-answering model: its weights have no answer head "
                         f"({', '.join(sorted(missing))} missing)")
    return model.eval()


def check_qa_config(config: Any, path: str | Path, what: str = "model") -> None:
    """A ValueError unless `config` (a folder's config.json) names a ...ForQuestionAnswering architecture."""
    architectures = list(getattr(config, "architectures", None) or [])
    if not any(str(name).endswith("ForQuestionAnswering") for name in architectures):
        raise ValueError(f"{what} {path}: not a question-answering model: config.json lists architectures "
                         f"{architectures or 'none'}, expected a ...ForQuestionAnswering one (a fine-tuned QA model, "
                         "e.g. from tune-distill teacher or export)")


def check_vocabulary(tokenizer: Any, config: Any, path: str | Path, what: str = "model") -> None:
    """A ValueError when the tokenizer makes token ids the model's embeddings do not have."""
    vocab_size = getattr(config, "vocab_size", None)
    if vocab_size is not None and len(tokenizer) > vocab_size:
        raise ValueError(f"{what} {path}: its tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
                         f"{vocab_size}: tokenizer and weights do not belong together")


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


PRECISION_CACHE = "precision_choices.json"  # under the cache dir: {cache key: {"choice", "seconds"}}
AUTO_MARGIN = 0.95  # a reduced precision is chosen only when its step takes under 95% of fp32's


def precision_candidates(device: torch.device) -> tuple[str, ...]:
    """What training's "auto" chooses among: fp32 only on CPU (bf16 autocast there is slower for these
    students: bench/results/padding_cpu.md), else fp32, bf16 where the GPU has it, and fp16."""
    if device.type != "cuda":
        return ("fp32",)
    return ("fp32", "bf16", "fp16") if torch.cuda.is_bf16_supported() else ("fp32", "fp16")


def fastest_precision(key: Mapping[str, Any], candidates: Sequence[str], seconds_per_step: Callable[[str], float],
                      cache_file: str | Path | None = None) -> str:
    """The fastest of `candidates` by `seconds_per_step(precision)`; fp32 (the first) unless another takes
    under AUTO_MARGIN of its time. The choice is kept in `cache_file` under `key` and read back from there
    (no timing) the next time the same key is asked for."""
    text = json.dumps(dict(key), sort_keys=True)
    cache_file = Path(cache_file) if cache_file else None
    cached = read_json_object(cache_file, "precision cache") if cache_file and cache_file.is_file() else {}
    if text in cached and cached[text].get("choice") in candidates:
        return cached[text]["choice"]
    if len(candidates) == 1:
        return candidates[0]
    seconds = {precision: float(seconds_per_step(precision)) for precision in candidates}
    choice = candidates[0]
    for precision in candidates[1:]:
        if seconds[precision] < AUTO_MARGIN * seconds[choice]:
            choice = precision
    log.info("precision auto: %s (seconds per step %s)", choice,
             ", ".join(f"{name} {value * 1000:.1f} ms" for name, value in seconds.items()))
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fresh = read_json_object(cache_file, "precision cache") if cache_file.is_file() else {}
        write_json(cache_file, {**fresh, text: {"choice": choice, "seconds": seconds, "measured_at": time.time()}})
    return choice


def step_timer(model: torch.nn.Module, *, batch_size: int, width: int, device: torch.device, steps: int = 5,
               warmup: int = 2) -> Callable[[str], float]:
    """seconds_per_step(precision): median forward+backward time of a copy of `model` on random tokens of
    shape (batch_size, width) under that precision's autocast. The model and every RNG stay untouched."""

    def seconds_per_step(precision: str) -> float:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            probe = copy.deepcopy(model).to(device).train()
            torch.manual_seed(0)
            input_ids = torch.randint(0, int(probe.config.vocab_size), (batch_size, width)).to(device)  # (batch, len)
            inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}  # (batch, seq_len)
            timings = []
            for index in range(warmup + steps):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                began = time.perf_counter()
                with autocast(device, precision):
                    output = probe(**inputs)
                (output.start_logits.float().sum() + output.end_logits.float().sum()).backward()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if index >= warmup:
                    timings.append(time.perf_counter() - began)
                probe.zero_grad(set_to_none=True)
            del probe
        return float(np.median(timings))

    return seconds_per_step


def precision_key(model: torch.nn.Module, device: torch.device, batch_size: int, width: int) -> dict[str, Any]:
    """What a measured precision choice depends on: device name, student shape, batch, length, torch."""
    config = getattr(model, "config", None)
    shape = {name: getattr(config, name, None) for name in
             ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return {"device": name, "model": type(model).__name__, **shape,
            "parameters": sum(parameter.numel() for parameter in model.parameters()),
            "batch": batch_size, "length": width, "torch": torch.__version__}


def training_precision(precision: str, model: torch.nn.Module, device: torch.device, *, batch_size: int, width: int,
                       cache_dir: str | Path | None = None,
                       seconds_per_step: Callable[[str], float] | None = None) -> str:
    """Training's precision: a fixed setting is checked and returned; "auto" is fp32 on CPU and on CUDA the
    fastest candidate measured for this student (cached under cache_dir/PRECISION_CACHE)."""
    if precision != "auto":
        return resolve_precision(precision, device)
    candidates = precision_candidates(device)
    if len(candidates) == 1:
        return candidates[0]
    timer = seconds_per_step or step_timer(model, batch_size=batch_size, width=width, device=device)
    cache_file = Path(cache_dir) / PRECISION_CACHE if cache_dir else None
    return fastest_precision(precision_key(model, device, batch_size, width), candidates, timer, cache_file)


GPU_MEMORY_HEADROOM = 0.9  # of a trial's GPU share, what its allocator may take (CUDA contexts live outside it)


def gpu_memory_fraction(share: float) -> float | None:
    """The fraction of a GPU's memory a process holding `share` of that GPU may allocate: share x headroom
    for a fractional share (trials packed on one GPU), None (no bound) for a whole GPU or none."""
    return share * GPU_MEMORY_HEADROOM if 0 < share < 1 else None


def bound_gpu_memory(share: float, device: torch.device) -> float | None:
    """Bound this process's CUDA allocator on `device` to its `share` of the GPU, so that trials packed on
    one GPU cannot run each other out of memory (one that outgrows its share fails alone). Returns the
    fraction set, or None where nothing was bounded (CPU, a whole GPU)."""
    fraction = gpu_memory_fraction(share)
    if fraction is None or device.type != "cuda" or not torch.cuda.is_available():
        return None
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction


def is_out_of_memory(error: BaseException) -> bool:
    """A CUDA out-of-memory error (torch.cuda.OutOfMemoryError, or the RuntimeError of older torch)."""
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error))


def resolve_pad_multiple(setting: int, device: torch.device) -> int:
    """distill.pad_multiple: 0 (auto) -> RUN_PAD_MULTIPLE (64) on a GPU, PAD_MULTIPLE (8) elsewhere."""
    if setting:
        return setting
    return RUN_PAD_MULTIPLE if torch.device(device).type == "cuda" else PAD_MULTIPLE


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
              precision: str = "fp32", pad_token_id: int = 0, desc: str = "logits",
              pad_multiple: int = 0) -> tuple[PackedColumn, PackedColumn]:
    """Start and end logits of a QA model for every feature, unpadded, as packed float32 columns.

    Rows are run in length-sorted batches padded to the fixed widths `pad_widths(lengths, pad_multiple)`
    (0 = auto: resolve_pad_multiple) and written back in feature order.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{desc}: the batch size must be an integer >= 1, got {batch_size!r}")
    device = resolve_device(device)
    model.eval()
    model.to(device)
    columns = model_inputs(features)
    lengths = columns["input_ids"].lengths
    offsets = columns["input_ids"].offsets
    written = np.zeros(len(lengths), dtype=bool)  # every row must get its logits: zeros are not logits
    start_values = np.zeros(int(offsets[-1]), dtype=np.float32)
    end_values = np.zeros(int(offsets[-1]), dtype=np.float32)
    pass_token_types = accepts_token_type_ids(model)
    widths = pad_widths(lengths, resolve_pad_multiple(pad_multiple, device))
    with Progress(len(lengths), desc, unit="feat") as progress, autocast(device, precision):
        for batch_indices in sorted_batches(lengths, batch_size):
            batch = collate(columns, batch_indices, pad_token_id, widths=widths)
            if not pass_token_types:
                batch.pop("token_type_ids")
            output = model(**to_device(batch, device))
            start = output.start_logits.float().cpu().numpy()  # (batch, seq_len)
            end = output.end_logits.float().cpu().numpy()  # (batch, seq_len)
            for row, index in enumerate(batch_indices):
                begin, length = offsets[index], lengths[index]
                start_values[begin : begin + length] = start[row, :length]
                end_values[begin : begin + length] = end[row, :length]
            written[batch_indices] = True
            progress.update(len(batch_indices))
    if not written.all():
        missing = np.flatnonzero(~written)
        raise RuntimeError(f"{desc}: {len(missing)} of {len(lengths)} windows got no logits (first: window "
                           f"{int(missing[0])}); nothing is returned or cached")
    return PackedColumn(start_values, offsets.copy()), PackedColumn(end_values, offsets.copy())
