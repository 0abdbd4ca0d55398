"""Training throughput: our distillation loop against a reference-style loop, measured in one run.

Reference loop (written here the way the reference experiment trained): the teacher runs a forward
pass in every step, every batch is padded to max_seq_length, fp32, shuffled batches. Ours:
`tune_distill.distill.train` with teacher logits read from the cache, length-bucketed batches with
dynamic padding. Same student (half the teacher's layers, copied from it), same features, same
batch size, same loss, same number of steps, same threads.

Prints train features per second for both, `ratio: X` (ours / reference, steady state: the
teacher-logit cache is computed once per sweep, not per trial) on a line of its own, the one-off
cache cost and the ratio once that cost is charged to a single one-epoch run, and achieved model
FLOP/s against the matmul FLOP/s this machine reaches (measured here too).

Run (CPU, about 5 minutes):
    python bench/distill_throughput.py
    python bench/distill_throughput.py --steps 5 --max-examples 300   # quick look
On a GPU (ours in bf16 autocast, or fp16 where bf16 is missing; the reference loop stays fp32 as the
reference experiment's did; the matmul peak is then measured in ours' dtype):
    python bench/distill_throughput.py --device cuda --steps 50 --out bench/results/distill_throughput_gpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tune_distill.config import DistillConfig, StudentConfig
from tune_distill.data import bucketed_batches, collate, load_features, model_inputs
from tune_distill.distill import distillation_loss, make_optimizer, make_scheduler, train
from tune_distill.runtime import PRECISIONS, resolve_device, resolve_precision
from tune_distill.student import build_student, count_parameters
from tune_distill.teacher import load_teacher, teacher_logits

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings cover it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops_per_second(size: int = 2048, repeats: int = 10, device: torch.device = torch.device("cpu"),
                            dtype: torch.dtype = torch.float32) -> float:
    """Matmul FLOP/s reached here in `dtype` (best of `repeats`), the device's practical peak."""
    if device.type == "cuda":
        size = max(size, 8192)  # small matrices do not fill a GPU
    a = torch.randn(size, size, device=device, dtype=dtype)  # (size, size)
    b = torch.randn(size, size, device=device, dtype=dtype)  # (size, size)
    torch.mm(a, b)
    synchronize(device)
    best = math.inf
    for _ in range(repeats):
        began = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best


def training_flops(tokens: int, non_embedding_parameters: int, layers: int, hidden: int, seq_len: float) -> float:
    """Model FLOPs of training on `tokens` real tokens: 6 x params x tokens + attention scores/values."""
    dense = 6 * non_embedding_parameters * tokens
    attention = 3 * layers * 4 * seq_len * hidden * tokens  # QK^T and AV, forward + backward
    return dense + attention


def reference_loop(student, teacher, features, config: DistillConfig, steps: int, max_seq_length: int,
                   pad_token_id: int):
    """Teacher forward every step, batches padded to max_seq_length, fp32. Returns (seconds, features)."""
    device = next(student.parameters()).device
    columns = model_inputs(features)
    starts = torch.from_numpy(np.asarray(features.numpy("start_positions"), dtype=np.int64)).to(device)  # (features,)
    ends = torch.from_numpy(np.asarray(features.numpy("end_positions"), dtype=np.int64)).to(device)  # (features,)
    optimizer = make_optimizer(student, config)
    scheduler = make_scheduler(optimizer, 0, steps)
    batches = bucketed_batches(columns["input_ids"].lengths, config.train_batch_size, seed=0, epoch=0, bucketing=False)
    student.train()
    teacher.eval()
    seen = 0
    synchronize(device)
    began = time.perf_counter()
    for step in range(steps):
        indices = batches[step % len(batches)]
        batch = {name: tensor.to(device)  # each (batch, max_seq_length)
                 for name, tensor in collate(columns, indices, pad_token_id, length=max_seq_length).items()}
        with torch.no_grad():
            teacher_output = teacher(**batch)
        output = student(**batch)
        loss, _ = distillation_loss(output.start_logits, output.end_logits, teacher_output.start_logits,
                                    teacher_output.end_logits, starts[indices], ends[indices], batch["attention_mask"],
                                    config.alpha_ce, config.temperature)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seen += len(indices)
    synchronize(device)
    return time.perf_counter() - began, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default=str(SHARED / "models/teacher-minilm-l6-squad2"))
    parser.add_argument("--data", default=str(SHARED / "data/squad2/train.json"))
    parser.add_argument("--max-examples", type=int, default=2000, help="questions tokenised (the feature pool)")
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps timed in each loop")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--layers", type=int, default=0, help="student layers (0 = half the teacher's)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="auto",
                        help="ours: auto (bf16/fp16 on a GPU, fp32 on CPU), fp32, bf16, fp16; the reference stays fp32")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    teacher, tokenizer = load_teacher(args.teacher, device)
    layers = args.layers or max(1, teacher.config.num_hidden_layers // 2)
    pad = tokenizer.pad_token_id or 0
    with tempfile.TemporaryDirectory() as cache:
        features = load_features([args.data], tokenizer, kind="train", max_seq_length=args.max_seq_length,
                                 doc_stride=args.doc_stride, max_query_length=64, max_examples=args.max_examples,
                                 cache_dir=cache)
        config = DistillConfig(learning_rate=5e-5, train_batch_size=args.batch_size, max_steps=args.steps,
                               warmup_steps=1, alpha_ce=0.5, temperature=2.0, seed=0, precision=precision)
        student_config = StudentConfig(num_hidden_layers=layers, init="teacher")

        began = time.perf_counter()
        logits = teacher_logits(args.teacher, features, cache_dir=cache, model=teacher, batch_size=64, pad_token_id=pad,
                                device=device, precision=precision)
        cache_seconds = time.perf_counter() - began
        cache_rate = len(features) / cache_seconds

        student = build_student(student_config, teacher.config, teacher, seed=0).to(device)
        result = train(student, features, config, teacher=logits, out_dir=Path(cache) / "ours", pad_token_id=pad)
        ours_rate = result.features_per_second

        reference_student = build_student(student_config, teacher.config, teacher, seed=0).to(device)
        reference_config = dataclasses.replace(config, precision="fp32")
        seconds, seen = reference_loop(reference_student, teacher, features, reference_config, args.steps,
                                       args.max_seq_length, pad)
        reference_rate = seen / seconds

    lengths = model_inputs(features)["input_ids"].lengths
    mean_tokens = float(lengths.mean())
    counts = count_parameters(student)
    hidden = teacher.config.hidden_size
    flops_per_feature = training_flops(1, counts["non_embedding_parameters"], layers, hidden, mean_tokens) * mean_tokens
    peak = matmul_flops_per_second(device=device, dtype=PRECISIONS[precision] or torch.float32)
    ours_flops = flops_per_feature * ours_rate
    epoch_features = len(features)
    one_epoch_ours = epoch_features / ours_rate + cache_seconds
    one_epoch_reference = epoch_features / reference_rate

    figures = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "precision_ours": precision,
        "precision_reference": "fp32",
        "threads": torch.get_num_threads(),
        "features": len(features),
        "mean_tokens_per_feature": mean_tokens,
        "max_seq_length": args.max_seq_length,
        "student_layers": layers,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "ours_features_per_second": ours_rate,
        "reference_features_per_second": reference_rate,
        "ratio": ours_rate / reference_rate,
        "teacher_cache_features_per_second": cache_rate,
        "ratio_one_epoch_with_cache_cost": one_epoch_reference / one_epoch_ours,
        "matmul_flops_per_second": peak,
        "ours_model_flops_per_second": ours_flops,
        "ours_share_of_matmul_peak": ours_flops / peak,
    }
    print(f"features: {len(features)} windows, mean {mean_tokens:.0f} tokens (max {args.max_seq_length}); "
          f"student {layers} layers; {args.steps} steps of {args.batch_size}; {torch.get_num_threads()} threads; "
          f"{figures['device']}, ours {precision}")
    print(f"reference loop (teacher every step, padded to {args.max_seq_length}, fp32): "
          f"{reference_rate:.2f} features/s")
    print(f"ours (cached teacher logits, bucketed dynamic padding):            {ours_rate:.2f} features/s")
    print(f"ratio: {ours_rate / reference_rate:.2f}")
    print(f"teacher-logit cache: {cache_seconds:.1f}s once ({cache_rate:.1f} features/s); "
          f"charged to one 1-epoch run on these {epoch_features} features: "
          f"ratio {one_epoch_reference / one_epoch_ours:.2f}")
    print(f"matmul peak here ({precision}): {peak / 1e9:.1f} GFLOP/s; "
          f"ours achieves {ours_flops / 1e9:.1f} GFLOP/s of model FLOPs "
          f"= {100 * ours_flops / peak:.0f}% of it")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
