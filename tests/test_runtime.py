"""tune_distill.runtime: devices, precision, batches onto the device (GPU code paths as far as a CPU allows)."""

from __future__ import annotations

import pytest
import torch

from tune_distill.runtime import autocast_dtype, resolve_device, resolve_precision, to_device


def test_auto_device_is_cuda_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_precision_is_bf16_or_fp16_on_gpus_and_fp32_on_cpu(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_precision("auto", cuda) == "bf16" and autocast_dtype("auto", cuda) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)  # e.g. a V100
    assert resolve_precision("auto", cuda) == "fp16" and autocast_dtype("auto", cuda) == torch.float16
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32" and autocast_dtype("auto", cpu) is None
    with pytest.raises(ValueError, match="precision='fp8'"):
        resolve_precision("fp8", cuda)


def test_batches_go_to_cuda_through_pinned_memory(monkeypatch):
    class FakeCuda:
        type = "cuda"

    calls = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: calls.append("pin") or self.clone())
    real_to = torch.Tensor.to
    monkeypatch.setattr(torch.Tensor, "to",
                        lambda self, device, non_blocking=False: calls.append(("to", non_blocking)) or self)
    batch = {"input_ids": torch.ones(2, 8, dtype=torch.long)}  # (batch, seq_len)
    moved = to_device(batch, FakeCuda())
    assert calls == ["pin", ("to", True)] and torch.equal(moved["input_ids"], batch["input_ids"])
    monkeypatch.setattr(torch.Tensor, "to", real_to)
    calls.clear()
    on_cpu = to_device(batch, torch.device("cpu"))
    assert calls == [] and on_cpu["input_ids"].device.type == "cpu"  # no pinning without a GPU
