"""ONNX: write a QA model to `model.onnx`, check it, run it with ONNX Runtime, time it.

torch.onnx's dynamo exporter at opset 18 with dynamic batch and sequence axes; inputs input_ids,
attention_mask (and token_type_ids when the model takes them), outputs start_logits, end_logits.
The legacy TorchScript exporter (dynamo=False) is not used: with transformers 5 its trace of the
attention-mask code does not generalise to other batches (the logit errors it gave:
results/README.md, "Export tolerances"). The file is checked with onnx.checker; ONNX Runtime runs
it on CPU with torch's thread count, and `measure_onnx_latency` times it on random ids drawn as
evaluate.measure_latency draws them (warm-up, median of repeats).

Must not know: sweeps, trial choice, training, data files.

Example (CPU, under a minute):
    python -c "from transformers import AutoModelForQuestionAnswering as M; from tune_distill.export import \
export_onnx; export_onnx(M.from_pretrained('../shared/models/teacher-minilm-l6-squad2'), '/tmp/teacher.onnx')"
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from tune_distill.export.errors import ExportError
from tune_distill.runtime import accepts_token_type_ids

ONNX_FILE = "model.onnx"
ONNX_OPSET = 18
ONNX_TOLERANCE = 1e-4  # max |logit difference| allowed between ONNX Runtime and PyTorch (fp32)


class _LogitsOnly(torch.nn.Module):
    """The QA model as a function of plain tensors returning (start_logits, end_logits)."""

    def __init__(self, model: torch.nn.Module, token_types: bool):
        super().__init__()
        self.model = model
        self.token_types = token_types

    def forward(self, input_ids, attention_mask, token_type_ids=None):  # (batch, seq_len) each
        extra = {"token_type_ids": token_type_ids} if self.token_types else {}
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return output.start_logits, output.end_logits  # (batch, seq_len), (batch, seq_len)


def onnx_input_names(model: torch.nn.Module) -> list[str]:
    return ["input_ids", "attention_mask"] + (["token_type_ids"] if accepts_token_type_ids(model) else [])


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's per-pass INFO lines and its known harmless warnings for one export."""
    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx", "torch.export")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*axis name.*")  # our names are kept (checked in tests)
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_onnx(model: torch.nn.Module, path: str | Path, opset: int = ONNX_OPSET) -> Path:
    """Write `model` (a HF QA model) to an ONNX file with dynamic batch and sequence axes."""
    import onnx

    path = Path(path)
    names = onnx_input_names(model)
    token_types = "token_type_ids" in names
    max_positions = int(getattr(model.config, "max_position_embeddings", 512))
    example = torch.randint(0, int(model.config.vocab_size), (2, min(16, max_positions)),
                            generator=torch.Generator().manual_seed(0))  # (batch, seq_len)
    args = (example, torch.ones_like(example)) + ((torch.zeros_like(example),) if token_types else ())
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq_len = torch.export.Dim("seq_len", min=1, max=max_positions)
    dynamic = {name: {0: batch, 1: seq_len} for name in names}
    wrapper = _LogitsOnly(model.eval(), token_types).eval()
    bytes_estimate = sum(p.numel() * p.element_size() for p in model.parameters())
    with _quiet_exporter():
        torch.onnx.export(wrapper, args, str(path), input_names=names, output_names=["start_logits", "end_logits"],
                          opset_version=opset, dynamo=True, dynamic_shapes=dynamic, verbose=False,
                          external_data=bytes_estimate > 1_800_000_000)  # one file below protobuf's 2 GB limit
    onnx.checker.check_model(str(path))
    return path


def onnx_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session with `threads` intra-op threads (default: torch's thread count)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def onnx_logits(session: Any, inputs: Mapping[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """Start and end logits from ONNX Runtime.  # 2 x (batch, seq_len)"""
    wanted = {item.name for item in session.get_inputs()}
    feed = {name: tensor.numpy().astype(np.int64) for name, tensor in inputs.items() if name in wanted}
    start, end = session.run(["start_logits", "end_logits"], feed)
    return start, end


def measure_onnx_latency(session: Any, *, vocab_size: int, seq_length: int, batch_sizes: Sequence[int] = (1, 32),
                         repeats: int = 10, warmup: int = 3) -> dict[str, Any]:
    """Median ONNX Runtime call time (ms) per batch size, on random ids drawn as evaluate.measure_latency draws them."""
    if repeats < 1:
        raise ValueError(f"latency repeats={repeats}: expected at least 1")
    wanted = {item.name for item in session.get_inputs()}
    generator = torch.Generator().manual_seed(0)
    result: dict[str, Any] = {}
    for batch_size in batch_sizes:
        input_ids = torch.randint(0, vocab_size, (batch_size, seq_length), generator=generator)  # (batch, seq_len)
        feed = {"input_ids": input_ids.numpy(), "attention_mask": np.ones_like(input_ids.numpy()),
                "token_type_ids": np.zeros_like(input_ids.numpy())}  # each (batch, seq_len)
        feed = {name: value for name, value in feed.items() if name in wanted}
        for _ in range(warmup):
            session.run(None, feed)
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            session.run(None, feed)
            timings.append(1000.0 * (time.perf_counter() - started))
        result[f"latency_ms_b{batch_size}"] = float(np.median(timings))
    return result


def onnx_packages():
    """onnxruntime (for its version), after checking that every package the ONNX export needs is there."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401  (torch.onnx's dynamo exporter needs it)
    except ImportError as error:
        raise ExportError(f"--onnx needs the onnx, onnxruntime and onnxscript packages ({error}); install them "
                          "(pip install onnx onnxruntime onnxscript) or pass --no-onnx") from None
    return onnxruntime
