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


def test_a_device_this_machine_lacks_is_a_named_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device 'cuda': torch sees no CUDA GPU on this machine; use cpu or auto"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match=r"device 'gpu': expected auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"device 'cuda:1': this machine has 1 CUDA GPU\(s\), cuda:0..cuda:0"):
        resolve_device("cuda:1")
    assert resolve_device("cuda:0") == torch.device("cuda:0")


def test_a_folder_without_an_answer_head_is_refused_naming_what_is_missing(tmp_path):
    """A plain encoder, and an encoder whose config claims a QA architecture without the head's weights."""
    import json

    from conftest import make_tiny_qa_model_dir
    from transformers import BertModel

    from tune_distill.runtime import load_qa_weights

    good = make_tiny_qa_model_dir(tmp_path / "good")
    assert load_qa_weights(good, "--model").qa_outputs.weight.shape == (2, 32)
    plain = tmp_path / "plain"
    BertModel.from_pretrained(str(good)).save_pretrained(str(plain))
    with pytest.raises(ValueError, match=r"--model .*plain: not a question-answering model: config.json lists "
                                         r"architectures \['BertModel'\]"):
        load_qa_weights(plain, "--model")
    config = json.loads((plain / "config.json").read_text())
    (plain / "config.json").write_text(json.dumps({**config, "architectures": ["BertForQuestionAnswering"]}))
    with pytest.raises(ValueError, match=r"teacher.path .*plain: not a question-answering model: its weights have "
                                         r"no answer head \(qa_outputs.bias, qa_outputs.weight missing\)"):
        load_qa_weights(plain, "teacher.path")


def test_logits_need_a_positive_batch_size_and_every_row_written(tiny_qa_model_dir, tiny_squad_file, tiny_tokenizer,
                                                                  monkeypatch):
    import numpy as np

    from tune_distill import runtime
    from tune_distill.data import load_features
    from tune_distill.runtime import load_qa_weights, qa_logits

    model = load_qa_weights(tiny_qa_model_dir)
    features = load_features([str(tiny_squad_file)], tiny_tokenizer, kind="eval", max_seq_length=48, doc_stride=16,
                             max_query_length=16, cache_dir=None)
    for size in (0, -1):
        with pytest.raises(ValueError, match=rf"logits: the batch size must be an integer >= 1, got {size}"):
            qa_logits(model, features, batch_size=size)
    real = runtime.sorted_batches
    monkeypatch.setattr(runtime, "sorted_batches", lambda lengths, size: real(lengths, size)[1:])  # one batch lost
    with pytest.raises(RuntimeError, match=r"logits: \d+ of \d+ windows got no logits"):
        qa_logits(model, features, batch_size=4)
    monkeypatch.setattr(runtime, "sorted_batches", real)
    start, _ = qa_logits(model, features, batch_size=4)
    assert np.isfinite(start.values).all()


def test_non_finite_teacher_logits_are_refused_and_not_cached(tiny_qa_model_dir, tiny_squad_file, tiny_tokenizer,
                                                              tmp_path):
    from tune_distill.data import load_features
    from tune_distill.runtime import load_qa_weights
    from tune_distill.teacher import teacher_logits

    model = load_qa_weights(tiny_qa_model_dir)
    with torch.no_grad():
        model.qa_outputs.bias.fill_(float("nan"))
    features = load_features([str(tiny_squad_file)], tiny_tokenizer, kind="train", max_seq_length=48, doc_stride=16,
                             max_query_length=16, cache_dir=None)
    with pytest.raises(ValueError, match=r"teacher.path .*: \d+ of its logits are NaN or infinite as float16 .*not "
                                         r"cached"):
        teacher_logits(str(tiny_qa_model_dir), features, cache_dir=tmp_path / "cache", model=model)
    assert not list((tmp_path / "cache").rglob("done"))
