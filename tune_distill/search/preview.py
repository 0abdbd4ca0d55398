"""Preview a search space: load it for a teacher's shape and print resolved random samples.

What it does: the `space` subcommand of `tune-distill` (also `python -m tune_distill.search`).
`add_arguments(parser)` declares its options; `command(args)` loads the space, prints one JSON
line per resolved sample and returns the samples. A bad space raises `SearchSpaceError` (a
`ValueError`), which the command line reports as a plain error.

What it must not know: searchers, Ray or models; logging is set up by `tune_distill.cli` only.

Example (CPU, a few seconds): five resolved samples of a shipped space for a 6-layer/384-wide/12-head
teacher
    python -m tune_distill.search configs/space_rich.yaml --samples 5
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from tune_distill.files import parse_yaml
from tune_distill.search.errors import SearchSpaceError
from tune_distill.search.space import EXAMPLE_TEACHER_CONTEXT, load_space


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The space-preview options (also `tune-distill space`'s)."""
    parser.add_argument("space", help="search space YAML")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--context", action="append", default=[], metavar="KEY=NUMBER",
        help="teacher shape, e.g. teacher.hidden_size=768 (default: a 6-layer, 384-wide, 12-head teacher)",
    )


def command(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Load the space as the parsed options say; print and return `--samples` resolved samples."""
    context = dict(EXAMPLE_TEACHER_CONTEXT)
    for item in args.context:
        key, _, raw = item.partition("=")
        context[key.strip()] = parse_yaml(raw, f"--context {item!r}", SearchSpaceError)
    space = load_space(args.space, context)
    rng = np.random.default_rng(args.seed)
    resolved = []
    for _ in range(args.samples):
        resolved.append(space.resolve(space.sample_uniform(rng)))
        print(json.dumps(resolved[-1], sort_keys=True))
    return resolved
