"""The `tune-distill sweep` command's options and action (tune_distill/cli.py parses and sets up logging).

What it does: `add_arguments` declares the options (a preset or config file, data and teacher folders,
the output folder, --resume and --trust-folder, base overrides, trial counts, the Ray address, the storage
location); `out_folder` says which folder a command line means; `command` loads the config (or the saved one
when resuming), runs the sweep and returns the exit status: 0 done, 1 interrupted, 2 a usage or
configuration error, 3 stopped for lack of disk space (resumable: free space, then --resume); errors are
printed in one line, not raised.

What it must not know: logging set-up and the report (cli.py runs `report` after the sweep).

Example (CPU, a few minutes):
    tune-distill sweep --preset smoke --out sweeps/smoke --num-samples 4
    python -m tune_distill.sweep --out sweeps/smoke --resume
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tune_distill.config import ConfigError, parse_override
from tune_distill.search import SearcherError
from tune_distill.sweep.config import SweepConfigError, load_sweep_config, preset_path, with_overrides
from tune_distill.sweep.diskspace import DiskFull
from tune_distill.sweep.driver import run_sweep
from tune_distill.sweep.storage import SWEEP_FILE, fetch_sweep

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `tune-distill sweep` options (cli.py adds them to its subcommand)."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", help="configs/sweep_<NAME>.yaml: smoke, cpu or paper")
    source.add_argument("--config", help="a sweep YAML file")
    parser.add_argument("--data", help="folder with train.json (+ train-extra.json) and val.json")
    parser.add_argument("--teacher", help="teacher model folder")
    parser.add_argument("--out", help="sweep folder (default sweeps/<preset or config name>)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted sweep in --out")
    parser.add_argument("--trust-folder", action="store_true",
                        help="with --resume: resume a sweep folder that your signing key did not sign (handed to you, "
                             "fetched from a shared bucket, written before folders were signed, or changed since). "
                             "Risky: Ray and the searcher unpickle its files, which runs any code whoever wrote them "
                             "put there, on this machine with your account and cloud credentials. Afterwards the "
                             "folder is signed with your key (docs/signing.md)")
    parser.add_argument("--set-base", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="extra base override for every trial; repeatable")
    parser.add_argument("--num-samples", type=int, help="trials in all (baseline included)")
    parser.add_argument("--max-concurrent", type=int, help="trials at once")
    parser.add_argument("--ray-address", help="join this Ray cluster (default: RAY_ADDRESS, else start one here)")
    parser.add_argument("--storage-path", metavar="URI",
                        help="where Tune keeps the experiment and a copy of the sweep's files, e.g. "
                             "s3://bucket/sweeps/cpu (overrides the config's storage_path); with --resume and no "
                             "sweep in --out, the sweep is resumed from there")
    parser.add_argument("--storage-endpoint", metavar="URL",
                        help="S3-compatible endpoint for an s3:// storage path, e.g. http://127.0.0.1:9000 "
                             "(default: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, else AWS)")
    parser.add_argument("--forward-aws-credentials", action="store_true",
                        help="pass this machine's AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN to "
                             "the workers of a joined cluster (default: each node uses its own role or ~/.aws). "
                             "Risky: Ray writes them in plain text into every node's logs and its job API shows them")


    parser.add_argument("--simulate", action="store_true",
                        help="simulate the trials: the real driver, searcher, scheduler, records and storage on "
                             "trials that report a surrogate's learning curves at a measured device's pace, without "
                             "training (the config's simulate section; --preset simulate is the paper preset so)")
    parser.add_argument("--time-scale", type=float, metavar="X",
                        help="simulated seconds per real second (simulate.time_scale)")


def out_folder(args: argparse.Namespace) -> Path:
    """The sweep folder: --out, else sweeps/<preset or config name>."""
    if args.out:
        return Path(args.out)
    return Path("sweeps") / (args.preset or (Path(args.config).stem if args.config else "sweep"))


def command(args: argparse.Namespace) -> int:
    """Run `tune-distill sweep` from parsed arguments; returns the exit status."""
    try:
        if args.preset:
            path = preset_path(args.preset)
        elif args.config:
            path = Path(args.config)
        elif not args.resume:
            raise SweepConfigError("give --preset NAME or --config FILE (or --resume --out DIR)")
        else:
            path = None
        if args.trust_folder and not args.resume:
            raise SweepConfigError("--trust-folder: only with --resume (a fresh sweep reads no sweep folder)")
        out = out_folder(args)
        config = None
        if args.resume and (out / SWEEP_FILE).is_file():
            if args.set_base or args.data or args.teacher or args.num_samples or args.max_concurrent \
                    or args.storage_path or args.storage_endpoint or args.forward_aws_credentials:
                log.warning("--resume: the sweep's saved settings (%s) are used; --set-base, --data, --teacher, "
                            "--num-samples, --max-concurrent, --storage-* and --forward-aws-credentials are ignored",
                            out / SWEEP_FILE)
        elif path is not None:
            config = with_overrides(load_sweep_config(path), base=dict(parse_override(t) for t in args.set_base),
                                    data_dir=args.data, teacher=args.teacher, num_samples=args.num_samples,
                                    max_concurrent=args.max_concurrent, storage_path=args.storage_path,
                                    storage_endpoint=args.storage_endpoint,
                                    forward_aws_credentials=args.forward_aws_credentials or None,
                                    simulate=args.simulate, time_scale=args.time_scale)
        elif args.storage_path:  # --resume without the local folder: the sweep's files are kept with the experiment
            fetch_sweep(out.expanduser().resolve(), args.storage_path, args.storage_endpoint or "")
        records = run_sweep(config, out, resume=args.resume, ray_address=args.ray_address,
                            trust_folder=args.trust_folder)
    except DiskFull as error:
        log.error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        return 3
    except (ConfigError, SearcherError, FileNotFoundError, ConnectionError) as error:
        log.error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts: dict[str, int] = {}
    for record in records:
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    interrupted = json.loads((out / SWEEP_FILE).read_text())["summary"]["interrupted"]
    print(json.dumps({"out": str(out), "trials": len(records), **counts, "interrupted": interrupted}))
    return 1 if interrupted else 0
