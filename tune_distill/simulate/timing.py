"""How long a trial's optimiser steps and evaluations take on a measured device: the clock of a simulated sweep.

A step of a student with N non-embedding parameters on a batch of b windows of t tokens costs about 6·N·b·t
floating-point operations (forward and backward; the teacher's logits are cached, so no teacher pass), an
evaluation window 2·N·t. Small students do not load a GPU: its time then goes to kernel launches, about a fixed
time per layer and step. So a device profile is two measured rates:

    step seconds       = launch_s · layers + 6·N·b·t / train_flops
    evaluation seconds = (launch_s / 3) · layers · ceil(windows / eval batch) + 2·N·t·windows / eval_flops

Profiles (`DEVICES`), from measurements in this repository:
- `h200`: bench/results/gpu-h200/distill_throughput_gpu_fp32_300.json (3 layers, 384 wide, 5,324,162
  non-embedding parameters, batch 32, mean 153.1 tokens, fp32): 1,841.3 windows/s, a measured matmul peak of
  5.05e13 FLOP/s. At the peak the step's arithmetic takes 3.3 ms of the measured 17.4 ms; the rest, 4.7 ms per
  layer, is the launch time. Larger students use the GPU better than this one, so their time is overestimated
  (a conservative plan); a forward pass launches about a third of a step's kernels.
- `cpu`: results/archive/cpu-v5 (the cpu preset v5 on this 2-core machine, one core per trial, two trials at once): full
  3-layer students trained at 2.45 windows/s and scored 16 windows/s (192-token windows; the mean length taken
  as 153 tokens, as measured at 384: contexts are mostly short).
Tokens per window: the measured mean, 153.1, capped at the run's max_seq_length.

Must not know: Ray, the surrogate, what the run learns.

Example (CPU, instant):
    python -c "from tune_distill.simulate.timing import step_seconds as s; print(s('h200', 6, 10648320, 32, 384))"
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Device:
    """A measured device: launch time per layer and step, and the arithmetic rates of training and evaluation."""

    launch_s: float
    train_flops: float
    eval_flops: float
    source: str


MEAN_TOKENS = 153.1  # measured mean tokens per window at max_seq_length 384 (bench/results/gpu-h200)
_REFERENCE_N = 5_324_162  # non-embedding parameters of the measured 3-layer student
_H200_STEP = 32 / 1841.2961  # seconds per measured step
_H200_PEAK = 5.0457743854e13
DEVICES = {
    "h200": Device(
        launch_s=(_H200_STEP - 6 * _REFERENCE_N * 32 * MEAN_TOKENS / _H200_PEAK) / 3,
        train_flops=_H200_PEAK, eval_flops=_H200_PEAK,
        source="bench/results/gpu-h200/distill_throughput_gpu_fp32_300.json"),
    "cpu": Device(
        launch_s=0.0, train_flops=6 * _REFERENCE_N * MEAN_TOKENS * 2.45, eval_flops=2 * _REFERENCE_N * MEAN_TOKENS * 16,
        source="results/archive/cpu-v5 (results/README.md: 2.45 windows/s training, 16 windows/s scoring)"),
}


def device(name: str) -> Device:
    """The profile called `name`; an unknown name is a ValueError listing the measured ones."""
    if name not in DEVICES:
        raise ValueError(f"simulate.device: expected one of {sorted(DEVICES)} (measured profiles), got {name!r}")
    return DEVICES[name]


def tokens_per_window(max_seq_length: int) -> float:
    return min(float(max_seq_length), MEAN_TOKENS)


def step_seconds(name: str, layers: int, non_embedding: int, batch: int, max_seq_length: int) -> float:
    """Seconds of one optimiser step of a student with `layers` layers and `non_embedding` parameters."""
    profile = device(name)
    work = 6.0 * non_embedding * batch * tokens_per_window(max_seq_length)
    return profile.launch_s * layers + work / profile.train_flops


def evaluation_seconds(name: str, layers: int, non_embedding: int, windows: int, eval_batch: int,
                       max_seq_length: int) -> float:
    """Seconds of one evaluation: `windows` validation windows in batches of `eval_batch`."""
    profile = device(name)
    batches = math.ceil(windows / max(1, eval_batch))
    work = 2.0 * non_embedding * tokens_per_window(max_seq_length) * windows
    return profile.launch_s / 3 * layers * batches + work / profile.eval_flops
