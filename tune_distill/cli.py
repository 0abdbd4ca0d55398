"""The `tune-distill` command (also `python -m tune_distill`): thin entry points over the library.

Subcommands:
    distill         one distillation run -> a run folder (config, command, environment, metrics, student)
    evaluate        score any Hugging Face QA model directory on a SQuAD 2.0 file
    teacher         fine-tune a pretrained encoder (or a tiny one from scratch) into a QA teacher
    teacher-logits  compute (and cache) a teacher's logits over a data file's training windows
    student         build a student from a config and print its parameter counts
    prune           a finished run's post-training pruning family: pruned members at size budgets, each scored
    features        check SQuAD 2.0 files and build (or find) their cached tokenised windows
    space           preview a search space: resolved random samples for a teacher's shape
    sweep           multi-objective search over students on Ray Tune, then the report below (and, for a sweep
                    with held-apart validation articles, `confirm --held-apart`)
    report          results.parquet/csv, pareto.csv, frontier.png, summary.json of a sweep folder
    confirm         the sweep's claims re-scored on a split it never saw (confirm.csv/.json/.png)
    config          print the resolved configuration, or every key with its help (--help-keys)
    export          one trial of a sweep -> a plain Hugging Face QA model folder (+ model.onnx), verified and timed
    answer          answer questions about a context with any QA model folder (an export, a teacher, a run's model/)
    dashboard       a sweep's study in the Optuna dashboard: read-only, on 127.0.0.1 only (make dashboard)

Every subcommand that takes a configuration accepts `--config FILE` and repeated
`--set section.field=value` (the same override syntax sweep trials use). A library module's
subcommand is its `add_arguments(parser)` and `command(args)` (MODULE_COMMANDS); `python -m
tune_distill.<package>` forwards here. Logging is set up here and nowhere else.

Must not know: anything the library modules do not expose; no logic of its own beyond argument
parsing and logging set-up.

Example (CPU, about a minute):
    tune-distill distill --out runs/tiny --set data.max_train_examples=200 --set data.max_val_examples=100 \
        --set data.max_seq_length=256 --set data.doc_stride=96 --set student.num_hidden_layers=3
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import logging
import sys
import time
from pathlib import Path

from tune_distill.config import ConfigError, add_config_arguments, help_text, load_config, to_dict


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("urllib3", "filelock", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# subcommand -> (module exposing add_arguments(parser) and command(args), help)
MODULE_COMMANDS = {
    "evaluate": ("tune_distill.evaluate", "score a QA model directory on a SQuAD 2.0 file"),
    "teacher-logits": ("tune_distill.teacher", "compute (and cache) a teacher's logits over training windows"),
    "student": ("tune_distill.student", "build a student and print its parameter counts"),
    "prune": ("tune_distill.prune.family", "prune a finished run into a family of smaller students (no retraining)"),
    "features": ("tune_distill.data.features", "check SQuAD 2.0 files and cache their tokenised windows"),
    "space": ("tune_distill.search.preview", "print resolved random samples of a search space"),
    "report": ("tune_distill.report", "(re)write a sweep folder's results files from its trials.jsonl"),
    "confirm": ("tune_distill.confirm", "re-score a sweep's baseline and Pareto students on an unseen split"),
    "export": ("tune_distill.export", "export one trial of a sweep as a Hugging Face QA model folder (+ ONNX)"),
    "answer": ("tune_distill.answer", "answer questions about a context with a QA model folder"),
    "dashboard": ("tune_distill.dashboard", "serve a sweep's study read-only in the Optuna dashboard on 127.0.0.1"),
    "simulate-fit": ("tune_distill.simulate.surrogate", "fit the learning-curve surrogate of simulated sweeps to "
                                                        "recorded sweep folders"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tune-distill", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)

    distill = commands.add_parser("distill", help="distil one student and write a run folder")
    add_config_arguments(distill)
    distill.add_argument("--out", help="run folder (default runs/distill-<time>)")
    distill.add_argument("--no-resume", action="store_true", help="start over even if the folder has a checkpoint")

    teacher = commands.add_parser("teacher", help="fine-tune a pretrained encoder into a QA teacher")
    add_config_arguments(teacher)
    teacher.add_argument("--encoder", required=True, help="pretrained encoder directory or hub id")
    teacher.add_argument("--out", required=True, help="output model directory")

    commands.add_parser("sweep", add_help=False,
                        help="multi-objective search over students on Ray Tune (tune-distill sweep --help)")

    config = commands.add_parser("config", help="print the resolved configuration")
    add_config_arguments(config)
    config.add_argument("--help-keys", action="store_true", help="list every key with its default and help")

    for name, (module_name, summary) in MODULE_COMMANDS.items():
        module = importlib.import_module(module_name)
        subparser = commands.add_parser(name, help=summary)
        module.add_arguments(subparser)
        subparser.set_defaults(run=module.command)
    return parser


def sweep_main(argv: list[str]) -> int:
    """`tune-distill sweep ...`: run (or resume) a sweep, then write its results files with report.

    Kept apart from the other subcommands so that Ray is imported only when a sweep is asked for.
    """
    from tune_distill import confirm, records, report, sweep

    parser = argparse.ArgumentParser(prog="tune-distill sweep",
                                     description="Multi-objective search over students on Ray Tune.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sweep.add_arguments(parser)
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    status = sweep.command(args)
    out = sweep.out_folder(args)
    if status not in (0, 1) or not (out / "trials.jsonl").is_file():  # the sweep did not run (or its disk is full)
        return status
    try:
        # the storage this sweep just ran with (the user's config, or the sweep they resumed): the results go there too
        config = records.read_sweep_settings(out).get("config") or {}
        summary = report.report_sweep(out, storage_path=config.get("storage_path") or "",
                                      storage_endpoint=config.get("storage_endpoint") or "")
        # validation articles kept apart from the choice: the findings confirmed there (a failure is a warning)
        summary = confirm.after_sweep(out, config.get("storage_path") or "", config.get("storage_endpoint") or "") \
            or summary
    except (ConfigError, FileNotFoundError, ValueError) as error:
        logging.getLogger("tune_distill").error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    print(f"results: {out}/results.parquet, pareto.csv, frontier.png, summary.json")
    return status


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "sweep":
        return sweep_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    command = ["tune-distill", *argv]
    try:
        if args.command == "config":
            import yaml

            if args.help_keys:
                print(help_text())
            else:
                print(yaml.safe_dump(to_dict(load_config(args.config, args.set)), sort_keys=False), end="")
        elif args.command == "distill":
            from tune_distill.run import run_distillation

            config = load_config(args.config, args.set)
            out = Path(args.out or f"runs/distill-{time.strftime('%Y%m%d-%H%M%S')}")
            metrics = run_distillation(config, out, resume=not args.no_resume, command=command)
            print(json.dumps({k: metrics[k] for k in ("exact", "f1", "parameters", "na_threshold") if k in metrics}))
            print(f"run folder: {out}")
        elif args.command == "teacher":
            from tune_distill.run import make_teacher

            config = load_config(args.config, args.set)
            metrics = make_teacher(config, args.encoder, args.out, command=command)
            print(json.dumps(metrics, indent=1, default=str))
        else:
            args.run(args)
    except (ConfigError, FileNotFoundError, ValueError) as error:
        logging.getLogger("tune_distill").error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        where = f" for {error.filename}" if error.filename else ""
        logging.getLogger("tune_distill").error("no space left on the disk%s", where)
        print(f"error: no space left on the disk{where}: free space there and run the command again (the files it "
              "replaces are kept whole until then)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
