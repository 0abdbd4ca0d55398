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

Ours pads batches to the run's fixed widths (`--pad-multiple`, default auto as distill.pad_multiple:
64 on a GPU, 8 = the old padding on CPU) and trains in `--precision` (auto: fp32 on CPU, on a GPU
the fastest of fp32/bf16/fp16 timed for this student, runtime.training_precision). `--concurrent 1,2,4,8`
then runs ours again as N separate processes sharing the device, started together, and prints their
combined features/s (total features over the span from the first start to the last end of their
training loops), its ratio to one process, and trials per device-hour for a trial of `--trial-features`
windows (default: the paper preset's 3 epochs of 13,513 windows, no early stopping).

Run (CPU, about 5 minutes):
    python bench/distill_throughput.py
    python bench/distill_throughput.py --steps 5 --max-examples 300   # quick look
    python bench/distill_throughput.py --steps 5 --max-examples 300 --no-reference --concurrent 1,2
On a GPU (the reference loop stays fp32 as the reference experiment's did; the matmul peak is
measured in ours' dtype); every GPU figure of issue 13 in one script: bench/gpu_check.sh
    python bench/distill_throughput.py --device cuda --steps 50 --out bench/results/distill_throughput_gpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tune_distill.config import DistillConfig, StudentConfig
from tune_distill.data import bucketed_batches, collate, load_features, model_inputs
from tune_distill.distill import distillation_loss, make_optimizer, make_scheduler, train
from tune_distill.runtime import PRECISIONS, resolve_device, resolve_pad_multiple
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


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default=str(SHARED / "models/teacher-minilm-l6-squad2"))
    parser.add_argument("--data", default=str(SHARED / "data/squad2/train.json"))
    parser.add_argument("--max-examples", type=int, default=2000, help="questions tokenised (the feature pool)")
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps timed in each loop")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--layers", type=int, default=0, help="student layers (0 = half the teacher's)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0 = torch's default; with --concurrent N: cores / N each)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="auto",
                        help="ours: auto (measured on a GPU, fp32 on CPU), fp32, bf16, fp16; the reference stays fp32")
    parser.add_argument("--pad-multiple", type=int, default=DistillConfig().pad_multiple,
                        help="ours: batch widths are multiples of this up to the longest window (0 = auto: 64 on "
                             "a GPU, 8 on CPU)")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference loop (and the ratio)")
    parser.add_argument("--concurrent", default="",
                        help="comma-separated process counts, e.g. 1,2,4,8: ours as N processes sharing the device")
    parser.add_argument("--trial-features", type=int, default=3 * 13513,
                        help="windows one trial trains on, for trials per device-hour (default: a paper trial)")
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a --concurrent process: its cache folder
    return parser.parse_args(argv)


def setup(args: argparse.Namespace, cache: str):
    """(device, teacher, tokenizer, features, teacher logits, cache seconds, ours' config, student config)."""
    device = resolve_device(args.device)
    args.pad_multiple = resolve_pad_multiple(args.pad_multiple, device)
    teacher, tokenizer = load_teacher(args.teacher, device)
    layers = args.layers or max(1, teacher.config.num_hidden_layers // 2)
    pad = tokenizer.pad_token_id or 0
    features = load_features([args.data], tokenizer, kind="train", max_seq_length=args.max_seq_length,
                             doc_stride=args.doc_stride, max_query_length=64, max_examples=args.max_examples,
                             cache_dir=cache)
    began = time.perf_counter()
    logits = teacher_logits(args.teacher, features, cache_dir=cache, model=teacher, batch_size=64, pad_token_id=pad,
                            device=device, precision="fp32" if args.precision == "auto" else args.precision,
                            pad_multiple=args.pad_multiple)
    cache_seconds = time.perf_counter() - began
    config = DistillConfig(learning_rate=5e-5, train_batch_size=args.batch_size, max_steps=args.steps,
                           warmup_steps=1, alpha_ce=0.5, temperature=2.0, seed=0, precision=args.precision,
                           pad_multiple=args.pad_multiple)
    return device, teacher, pad, features, logits, cache_seconds, config, StudentConfig(num_hidden_layers=layers,
                                                                                        init="teacher")


def worker(args: argparse.Namespace) -> None:
    """One of --concurrent N processes: set up, say ready, wait for the start signal, train, write figures."""
    cache = Path(args.worker)
    device, teacher, pad, features, logits, _, config, student_config = setup(args, str(cache))
    student = build_student(student_config, teacher.config, teacher, seed=0).to(device)
    del teacher
    synchronize(device)
    (cache / f"ready.{os.getpid()}").touch()
    while not (cache / "go").exists():
        time.sleep(0.005)
    result = train(student, features, config, teacher=logits, out_dir=cache / f"run.{os.getpid()}", pad_token_id=pad,
                   precision_cache=cache)
    end = time.time()
    Path(args.out).write_text(json.dumps({"features": result.features_per_second * result.train_seconds,
                                          "start": end - result.train_seconds, "end": end,
                                          "features_per_second": result.features_per_second}))


def concurrent_rates(args: argparse.Namespace, cache: str, counts: list[int], precision: str) -> list[dict]:
    """Combined features/s of N processes training ours together on the device, for each N in `counts`."""
    rows = []
    for count in counts:
        folder = Path(tempfile.mkdtemp(dir=cache, prefix=f"concurrent{count}-"))
        for name in os.listdir(cache):  # the features and teacher logits: cache hits in every process
            if not name.startswith("concurrent") and not (folder / name).exists():
                os.symlink(Path(cache) / name, folder / name)
        threads = args.threads or max(1, (os.cpu_count() or 1) // count)  # the cores shared out, no oversubscription
        command = [sys.executable, __file__, "--worker", str(folder), "--precision", precision,
                   "--threads", str(threads)]
        for flag in ("teacher", "data", "max_examples", "steps", "batch_size", "max_seq_length", "doc_stride",
                     "layers", "device", "pad_multiple"):
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        processes = [subprocess.Popen(command + ["--out", str(folder / f"figures{index}.json")])
                     for index in range(count)]
        while len(list(folder.glob("ready.*"))) < count:
            if any(process.poll() not in (None, 0) for process in processes):
                raise SystemExit(f"--concurrent {count}: a process failed while setting up")
            time.sleep(0.05)
        (folder / "go").touch()
        if any(process.wait() != 0 for process in processes):
            raise SystemExit(f"--concurrent {count}: a process failed")
        runs = [json.loads((folder / f"figures{index}.json").read_text()) for index in range(count)]
        span = max(run["end"] for run in runs) - min(run["start"] for run in runs)
        combined = sum(run["features"] for run in runs) / span
        rows.append({"processes": count, "threads_each": threads, "combined_features_per_second": combined,
                     "per_process_features_per_second": [run["features_per_second"] for run in runs],
                     "trials_per_device_hour": combined * 3600 / args.trial_features})
    for row in rows:
        row["ratio_to_one_process"] = row["combined_features_per_second"] / rows[0]["combined_features_per_second"] \
            if rows[0]["processes"] == 1 else None
    return rows


def main() -> None:
    args = parse_arguments()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        worker(args)
        return
    counts = [int(count) for count in args.concurrent.split(",") if count.strip()]
    with tempfile.TemporaryDirectory() as cache:
        device, teacher, pad, features, logits, cache_seconds, config, student_config = setup(args, cache)
        cache_rate = len(features) / cache_seconds
        layers = student_config.num_hidden_layers

        student = build_student(student_config, teacher.config, teacher, seed=0).to(device)
        result = train(student, features, config, teacher=logits, out_dir=Path(cache) / "ours", pad_token_id=pad,
                       precision_cache=cache)
        ours_rate, precision = result.features_per_second, result.precision
        choices = Path(cache) / "precision_choices.json"
        measured = json.loads(choices.read_text()) if choices.is_file() else {}

        reference_rate = None
        if not args.no_reference:
            reference_student = build_student(student_config, teacher.config, teacher, seed=0).to(device)
            reference_config = dataclasses.replace(config, precision="fp32")
            seconds, seen = reference_loop(reference_student, teacher, features, reference_config, args.steps,
                                           args.max_seq_length, pad)
            reference_rate = seen / seconds
            del reference_student
        del teacher
        rows = concurrent_rates(args, cache, counts, precision) if counts else []

    lengths = model_inputs(features)["input_ids"].lengths
    mean_tokens = float(lengths.mean())
    counts_of = count_parameters(student)
    hidden = student.config.hidden_size
    flops_per_feature = training_flops(1, counts_of["non_embedding_parameters"], layers, hidden, mean_tokens) \
        * mean_tokens
    peak = matmul_flops_per_second(device=device, dtype=PRECISIONS[precision] or torch.float32)
    ours_flops = flops_per_feature * ours_rate
    epoch_features = len(features)
    one_epoch_ours = epoch_features / ours_rate + cache_seconds

    figures = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "precision_asked": args.precision,
        "precision_ours": precision,
        "precision_measured": measured,
        "precision_reference": "fp32",
        "pad_multiple_ours": args.pad_multiple,
        "threads": torch.get_num_threads(),
        "features": len(features),
        "mean_tokens_per_feature": mean_tokens,
        "max_seq_length": args.max_seq_length,
        "student_layers": layers,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "ours_features_per_second": ours_rate,
        "reference_features_per_second": reference_rate,
        "ratio": ours_rate / reference_rate if reference_rate else None,
        "teacher_cache_features_per_second": cache_rate,
        "ratio_one_epoch_with_cache_cost":
            epoch_features / reference_rate / one_epoch_ours if reference_rate else None,
        "matmul_flops_per_second": peak,
        "ours_model_flops_per_second": ours_flops,
        "ours_share_of_matmul_peak": ours_flops / peak,
        "concurrent": rows,
    }
    print(f"features: {len(features)} windows, mean {mean_tokens:.0f} tokens (max {args.max_seq_length}); "
          f"student {layers} layers; {args.steps} steps of {args.batch_size}; {torch.get_num_threads()} threads; "
          f"{figures['device']}, ours {precision} (asked {args.precision}), padded to multiples of {args.pad_multiple}")
    for key, value in measured.items():
        print(f"precision auto measured {value['seconds']} s per step -> {value['choice']} ({key})")
    if reference_rate:
        print(f"reference loop (teacher every step, padded to {args.max_seq_length}, fp32): "
              f"{reference_rate:.2f} features/s")
    print(f"ours (cached teacher logits, bucketed, fixed widths):             {ours_rate:.2f} features/s")
    if reference_rate:
        print(f"ratio: {ours_rate / reference_rate:.2f}")
        print(f"teacher-logit cache: {cache_seconds:.1f}s once ({cache_rate:.1f} features/s); "
              f"charged to one 1-epoch run on these {epoch_features} features: "
              f"ratio {figures['ratio_one_epoch_with_cache_cost']:.2f}")
    print(f"matmul peak here ({precision}): {peak / 1e9:.1f} GFLOP/s; "
          f"ours achieves {ours_flops / 1e9:.1f} GFLOP/s of model FLOPs "
          f"= {100 * ours_flops / peak:.0f}% of it")
    for row in rows:
        ratio = f"{row['ratio_to_one_process']:.2f}x one process" if row["ratio_to_one_process"] else ""
        print(f"concurrent {row['processes']}: combined {row['combined_features_per_second']:.2f} features/s "
              f"{ratio}; {row['trials_per_device_hour']:.3f} trials of {args.trial_features} windows per "
              f"device-hour")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
