"""Trials packed on one GPU: each one's CUDA allocator is bounded to its GPU share, and a CUDA out-of-memory
error is reported as such ("CUDA out of memory at batch N (GPU share X)"), not as a generic failure.

The CUDA calls are fakes here (a CPU machine); the trial runs for real, with Ray's context faked."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tune_distill.runtime import GPU_MEMORY_HEADROOM, bound_gpu_memory, gpu_memory_fraction, is_out_of_memory


def test_a_fractional_gpu_share_bounds_the_memory_fraction():
    assert gpu_memory_fraction(0.25) == pytest.approx(0.25 * GPU_MEMORY_HEADROOM) and GPU_MEMORY_HEADROOM < 1
    assert gpu_memory_fraction(0.5) == pytest.approx(0.5 * GPU_MEMORY_HEADROOM)
    assert gpu_memory_fraction(1.0) is None and gpu_memory_fraction(0.0) is None and gpu_memory_fraction(2) is None


def test_the_bound_is_set_on_cuda_only(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda *args: calls.append(args))
    assert bound_gpu_memory(0.125, torch.device("cuda", 0)) == pytest.approx(0.125 * GPU_MEMORY_HEADROOM)
    assert calls == [(pytest.approx(0.125 * GPU_MEMORY_HEADROOM), torch.device("cuda", 0))]
    assert bound_gpu_memory(1.0, torch.device("cuda", 0)) is None  # a whole GPU: no bound
    assert bound_gpu_memory(0.5, torch.device("cpu")) is None
    assert len(calls) == 1


def test_out_of_memory_errors_are_recognised():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))  # older torch
    assert not is_out_of_memory(RuntimeError("shape mismatch")) and not is_out_of_memory(ValueError("out of memory"))


def _fake_ray(monkeypatch, trial_dir: Path, gpu_share: float) -> list:
    """Ray's runtime context and Tune's session functions, as run_trial uses them, for one trial."""
    import ray
    from ray import tune

    reports: list = []
    context = SimpleNamespace(get_node_id=lambda: "node-1", get_assigned_resources=lambda: {"CPU": 1, "GPU": gpu_share})
    monkeypatch.setattr(ray, "get_runtime_context", lambda: context)
    monkeypatch.setattr(tune, "get_context", lambda: SimpleNamespace(get_trial_dir=lambda: str(trial_dir)))
    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(tune, "report", lambda metrics, checkpoint=None: reports.append(metrics))
    return reports


def test_a_trial_that_runs_out_of_gpu_memory_says_so(monkeypatch, tmp_path):
    from conftest import write_sweep_inputs
    from transformers import BertForQuestionAnswering

    from tune_distill import runtime
    from tune_distill.sweep.trial import TRIAL_ERROR_FILE, TrialContext, TrialOutOfMemory, run_trial

    teacher, data = write_sweep_inputs(tmp_path)
    base = {"data.train_files": [str(data / "train.json")], "data.val_file": str(data / "val.json"),
            "teacher.path": str(teacher), "data.max_seq_length": 48, "data.doc_stride": 16,
            "data.max_query_length": 16, "data.cache_dir": str(tmp_path / "cache"), "distill.device": "cpu",
            "distill.max_steps": 3, "student.num_hidden_layers": 1}
    reports = _fake_ray(monkeypatch, tmp_path / "experiment" / "trial_0001_x", gpu_share=0.25)
    bounds = []
    monkeypatch.setattr(runtime, "bound_gpu_memory", lambda share, device: bounds.append((share, device.type)))
    real_forward = BertForQuestionAnswering.forward

    def forward(self, *args, **kwargs):
        if self.training:  # the student's training step; teacher logits and evaluation run in eval mode
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(BertForQuestionAnswering, "forward", forward)
    context = TrialContext(base=base, experiment_dir=None, cpus=1, measure_latency=False)
    with pytest.raises(TrialOutOfMemory, match=r"CUDA out of memory at batch 32 \(GPU share 0.25\)") as raised:
        run_trial({"number": 1, "overrides": {"distill.train_batch_size": 32}}, context)
    assert isinstance(raised.value.__cause__, torch.cuda.OutOfMemoryError)
    assert bounds == [(0.25, "cpu")]  # asked to bound (a no-op off CUDA)
    details = json.loads((tmp_path / "experiment" / "trial_0001_x" / "run" / TRIAL_ERROR_FILE).read_text())
    assert details["error"].startswith("TrialOutOfMemory: CUDA out of memory at batch 32 (GPU share 0.25)")
    assert reports == []


def test_other_trial_errors_are_raised_unchanged(monkeypatch, tmp_path):
    from tune_distill.sweep.trial import out_of_memory

    assert out_of_memory(ValueError("bad"), 32, 0.5) is None
    converted = out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory.\nmore"), 16, 0.5)
    assert str(converted) == "CUDA out of memory at batch 16 (GPU share 0.5): CUDA out of memory."
