"""`tune-distill export`: its options and what it does with them.

`--list` prints a sweep's trials (status, exact, parameters, latency, whether each can be exported);
`--trial ID`, `--pick RULE`, `--max-params N` or `--max-latency-ms X` choose one (choose.py) and
export it into `--out` (bundle.py), then print a summary.

Must not know: anything the export modules do not expose; no logic beyond reading the options.

Example (CPU, seconds, on a finished smoke sweep):
    tune-distill export --sweep sweeps/smoke --list
"""

from __future__ import annotations

import argparse
from typing import Any

from tune_distill.export.bundle import export_trial, summary_lines
from tune_distill.export.choose import PICK_RULES, choose_trial, read_sweep, trial_table
from tune_distill.export.errors import ExportError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The export options (also `tune-distill export`'s)."""
    parser.add_argument("--sweep", required=True, help="sweep folder (trials.jsonl or results.parquet, sweep.json)")
    rule = parser.add_mutually_exclusive_group(required=True)
    rule.add_argument("--list", action="store_true", help="print the sweep's trials (and which can be exported); "
                      "export nothing")
    rule.add_argument("--trial", help="export this trial id")
    rule.add_argument("--pick", choices=PICK_RULES, help="smallest-at-baseline: smallest feasible Pareto student with "
                      "exact >= the baseline's; best-exact: highest exact")
    rule.add_argument("--max-params", type=int, help="highest exact with at most N parameters")
    rule.add_argument("--max-latency-ms", type=float,
                      help="highest exact with latency_ms_b1 (as the sweep measured it) <= X")
    parser.add_argument("--out", help="folder for the model, tokenizer, model.onnx and tune_distill.json "
                        "(required unless --list)")
    parser.add_argument("--onnx", action=argparse.BooleanOptionalAction, default=True, help="also write model.onnx")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    parser.add_argument("--verify-data", help="SQuAD 2.0 file for the verification batch (default: the run's val_file)")
    parser.add_argument("--verify-questions", type=int, default=16, help="questions in the verification batch")
    parser.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True,
                        help="time PyTorch and ONNX Runtime")
    parser.add_argument("--latency-seq-length", type=int, default=None,
                        help="tokens per timed input (default: the run's evaluate.latency_seq_length)")
    parser.add_argument("--latency-batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--latency-repeats", type=int, default=10)
    parser.add_argument("--latency-warmup", type=int, default=3)


def command(args: argparse.Namespace) -> dict[str, Any] | None:
    """Choose, export, verify and time as the parsed options say; print a summary and return the record.

    With --list: print the sweep's trials as a table and return None.
    """
    from transformers.utils import logging as transformers_logging

    trials = read_sweep(args.sweep)
    if args.list:
        print(trial_table(trials.frame))
        return None
    if not args.out:
        raise ExportError("--out: give the folder to export into (only --list needs none)")
    transformers_logging.disable_progress_bar()  # weight loading/saving bars would bury the summary
    choice = choose_trial(trials, trial_id=args.trial, pick=args.pick, max_params=args.max_params,
                          max_latency_ms=args.max_latency_ms)
    record = export_trial(choice, args.out, sweep_dir=args.sweep, onnx=args.onnx, verify_data=args.verify_data,
                          verify_questions=args.verify_questions, latency=args.latency,
                          latency_seq_length=args.latency_seq_length, latency_batch_sizes=args.latency_batch_sizes,
                          latency_repeats=args.latency_repeats, latency_warmup=args.latency_warmup,
                          overwrite=args.overwrite)
    print("\n".join(summary_lines(record, args.out)))
    return record
