"""distill.precision=auto in training: fp32 on CPU; on a GPU the fastest precision measured for this student,
once per (device, student shape, batch, length), cached in a small JSON file. Timings here are fakes."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering

from tune_distill import runtime
from tune_distill.runtime import (
    PRECISION_CACHE,
    fastest_precision,
    precision_key,
    step_timer,
    training_precision,
)


def _timings(**seconds):
    """A fake seconds_per_step that records what it was asked to time."""
    asked = []

    def seconds_per_step(precision: str) -> float:
        asked.append(precision)
        return seconds[precision]

    seconds_per_step.asked = asked
    return seconds_per_step


def _never(precision: str) -> float:
    raise AssertionError(f"timed {precision}, but no timing was expected")


def _tiny_model(layers: int = 2) -> BertForQuestionAnswering:
    torch.manual_seed(0)
    return BertForQuestionAnswering(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=layers,
                                               num_attention_heads=4, intermediate_size=64))


KEY = {"device": "Fake GPU", "batch": 32, "length": 192}


def test_the_fastest_precision_is_chosen_and_fp32_keeps_near_ties():
    assert fastest_precision(KEY, ("fp32", "bf16", "fp16"), _timings(fp32=1.0, bf16=0.5, fp16=0.6)) == "bf16"
    assert fastest_precision(KEY, ("fp32", "bf16", "fp16"), _timings(fp32=1.0, bf16=1.2, fp16=0.8)) == "fp16"
    # bf16 only 3% faster: within timing noise, fp32 (the numerically safer) stays
    assert fastest_precision(KEY, ("fp32", "bf16"), _timings(fp32=1.0, bf16=0.97)) == "fp32"
    assert fastest_precision(KEY, ("fp32", "bf16"), _timings(fp32=0.5, bf16=1.0)) == "fp32"


def test_the_choice_is_cached_per_key(tmp_path):
    cache = tmp_path / "cache" / PRECISION_CACHE
    timer = _timings(fp32=1.0, bf16=0.4)
    assert fastest_precision(KEY, ("fp32", "bf16"), timer, cache) == "bf16"
    assert timer.asked == ["fp32", "bf16"]
    stored = json.loads(cache.read_text())
    assert list(stored) == [json.dumps(KEY, sort_keys=True)]
    assert stored[json.dumps(KEY, sort_keys=True)]["seconds"] == {"fp32": 1.0, "bf16": 0.4}
    assert fastest_precision(dict(reversed(KEY.items())), ("fp32", "bf16"), _never, cache) == "bf16"  # a hit
    other = {**KEY, "batch": 8}  # another batch size is another key: timed, and kept beside the first
    assert fastest_precision(other, ("fp32", "bf16"), _timings(fp32=1.0, bf16=2.0), cache) == "fp32"
    assert len(json.loads(cache.read_text())) == 2


def test_the_cache_key_names_device_student_shape_batch_and_length():
    model = _tiny_model(layers=2)
    key = precision_key(model, torch.device("cpu"), batch_size=16, width=128)
    assert key["device"] == "cpu" and key["batch"] == 16 and key["length"] == 128
    assert key["num_hidden_layers"] == 2 and key["hidden_size"] == 32 and key["num_attention_heads"] == 4
    assert key["parameters"] == sum(p.numel() for p in model.parameters()) and key["torch"] == torch.__version__
    assert precision_key(_tiny_model(layers=3), torch.device("cpu"), 16, 128) != key


def test_auto_is_fp32_on_cpu_without_timing(tmp_path):
    assert training_precision("auto", _tiny_model(), torch.device("cpu"), batch_size=4, width=64,
                              cache_dir=tmp_path, seconds_per_step=_never) == "fp32"
    assert not (tmp_path / PRECISION_CACHE).exists()
    assert training_precision("bf16", _tiny_model(), torch.device("cpu"), batch_size=4, width=64,
                              seconds_per_step=_never) == "bf16"  # a fixed setting is kept


@pytest.mark.parametrize("bf16_supported, candidates", [(True, ["fp32", "bf16", "fp16"]), (False, ["fp32", "fp16"])])
def test_auto_on_a_gpu_times_each_candidate_once_and_caches(monkeypatch, tmp_path, bf16_supported, candidates):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16_supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args, **kwargs: "Fake H200")
    cuda = torch.device("cuda")
    timer = _timings(fp32=1.0, bf16=1.1, fp16=0.5)
    model = _tiny_model()
    assert training_precision("auto", model, cuda, batch_size=32, width=192, cache_dir=tmp_path,
                              seconds_per_step=timer) == "fp16"
    assert timer.asked == candidates
    (key,) = json.loads((tmp_path / PRECISION_CACHE).read_text())
    assert json.loads(key)["device"] == "Fake H200" and json.loads(key)["length"] == 192
    assert training_precision("auto", model, cuda, batch_size=32, width=192, cache_dir=tmp_path,
                              seconds_per_step=_never) == "fp16"


def test_the_step_timer_leaves_the_model_and_the_random_state_alone():
    model = _tiny_model()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    rng = torch.get_rng_state()
    timer = step_timer(model, batch_size=2, width=16, device=torch.device("cpu"), steps=2, warmup=1)
    assert timer("fp32") > 0 and timer("bf16") > 0
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(parameter.grad is None for parameter in model.parameters())


def test_training_runs_in_the_precision_auto_chose(monkeypatch, tiny_squad_file, tiny_tokenizer, tmp_path):
    from tune_distill import distill
    from tune_distill.config import DistillConfig
    from tune_distill.data import load_features

    features = load_features([str(tiny_squad_file)], tiny_tokenizer, kind="train", max_seq_length=48, doc_stride=16,
                             max_query_length=16, cache_dir=None)
    asked = []

    def choose(precision, model, device, *, batch_size, width, cache_dir=None, seconds_per_step=None):
        asked.append((precision, batch_size, width, cache_dir))
        return "bf16"  # as a GPU's measurement might

    monkeypatch.setattr(distill, "training_precision", choose)
    config = DistillConfig(train_batch_size=4, max_steps=2, alpha_ce=0.0, num_threads=1)
    model = _tiny_model()
    model.resize_token_embeddings(len(tiny_tokenizer))
    result = distill.train(model, features, config, teacher=None, out_dir=tmp_path / "run",
                           precision_cache=tmp_path / "cache")
    assert asked == [("auto", 4, 48, tmp_path / "cache")]  # the median window (48 tokens) padded to its width
    assert result.precision == "bf16"
    assert runtime.training_precision is not choose
