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
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tune_distill.data import bucketed_batches
from tune_distill.config import DistillConfig, StudentConfig
from tune_distill.data import load_features
from tune_distill.distill import MASKED_LOGIT, distillation_loss, make_optimizer, make_scheduler, train
from tune_distill.student import build_student, count_parameters
from tune_distill.teacher import collate, load_teacher, model_inputs, teacher_logits

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def matmul_flops_per_second(size: int = 2048, repeats: int = 10) -> float:
    """fp32 matmul FLOP/s reached here (best of `repeats`), the machine's practical peak."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        began = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best


def training_flops(tokens: int, non_embedding_parameters: int, layers: int, hidden: int, seq_len: float) -> float:
    """Model FLOPs of training on `tokens` real tokens: 6 x params x tokens + attention scores/values."""
    dense = 6 * non_embedding_parameters * tokens
    attention = 3 * layers * 4 * seq_len * hidden * tokens  # QK^T and AV, forward + backward
    return dense + attention


def reference_loop(student, teacher, features, config: DistillConfig, steps: int, max_seq_length: int, pad_token_id: int):
    """Teacher forward every step, batches padded to max_seq_length, fp32. Returns (seconds, features)."""
    columns = model_inputs(features)
    starts = torch.from_numpy(np.asarray(features.numpy("start_positions"), dtype=np.int64))
    ends = torch.from_numpy(np.asarray(features.numpy("end_positions"), dtype=np.int64))
    optimizer = make_optimizer(student, config)
    scheduler = make_scheduler(optimizer, 0, steps)
    batches = bucketed_batches(columns["input_ids"].lengths, config.train_batch_size, seed=0, epoch=0, bucketing=False)
    student.train()
    teacher.eval()
    seen = 0
    began = time.perf_counter()
    for step in range(steps):
        indices = batches[step % len(batches)]
        batch = collate(columns, indices, pad_token_id, length=max_seq_length)  # each (batch, max_seq_length)
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
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)

    teacher, tokenizer = load_teacher(args.teacher, "cpu")
    layers = args.layers or max(1, teacher.config.num_hidden_layers // 2)
    pad = tokenizer.pad_token_id or 0
    with tempfile.TemporaryDirectory() as cache:
        features = load_features([args.data], tokenizer, kind="train", max_seq_length=args.max_seq_length,
                                 doc_stride=args.doc_stride, max_query_length=64, max_examples=args.max_examples,
                                 cache_dir=cache)
        config = DistillConfig(learning_rate=5e-5, train_batch_size=args.batch_size, max_steps=args.steps,
                               warmup_steps=1, alpha_ce=0.5, temperature=2.0, seed=0, precision="fp32")
        student_config = StudentConfig(num_hidden_layers=layers, init="teacher")

        began = time.perf_counter()
        logits = teacher_logits(args.teacher, features, cache_dir=cache, model=teacher, batch_size=64, pad_token_id=pad)
        cache_seconds = time.perf_counter() - began
        cache_rate = len(features) / cache_seconds

        student = build_student(student_config, teacher.config, teacher, seed=0)
        result = train(student, features, config, teacher=logits, out_dir=Path(cache) / "ours", pad_token_id=pad)
        ours_rate = result.features_per_second

        reference_student = build_student(student_config, teacher.config, teacher, seed=0)
        seconds, seen = reference_loop(reference_student, teacher, features, config, args.steps, args.max_seq_length, pad)
        reference_rate = seen / seconds

    lengths = model_inputs(features)["input_ids"].lengths
    mean_tokens = float(lengths.mean())
    counts = count_parameters(student)
    hidden = teacher.config.hidden_size
    flops_per_feature = training_flops(1, counts["non_embedding_parameters"], layers, hidden, mean_tokens) * mean_tokens
    peak = matmul_flops_per_second()
    ours_flops = flops_per_feature * ours_rate
    epoch_features = len(features)
    one_epoch_ours = epoch_features / ours_rate + cache_seconds
    one_epoch_reference = epoch_features / reference_rate

    figures = {
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
          f"student {layers} layers; {args.steps} steps of {args.batch_size}; {torch.get_num_threads()} threads")
    print(f"reference loop (teacher every step, padded to {args.max_seq_length}, fp32): {reference_rate:.2f} features/s")
    print(f"ours (cached teacher logits, bucketed dynamic padding):            {ours_rate:.2f} features/s")
    print(f"ratio: {ours_rate / reference_rate:.2f}")
    print(f"teacher-logit cache: {cache_seconds:.1f}s once ({cache_rate:.1f} features/s); "
          f"charged to one 1-epoch run on these {epoch_features} features: ratio {one_epoch_reference / one_epoch_ours:.2f}")
    print(f"matmul peak here: {peak / 1e9:.1f} GFLOP/s; ours achieves {ours_flops / 1e9:.1f} GFLOP/s of model FLOPs "
          f"= {100 * ours_flops / peak:.0f}% of it")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
