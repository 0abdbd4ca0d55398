"""`python -m tune_distill.search SPACE.yaml [--samples N] ...`: the same as `tune-distill space ...`.

What it does: hands its arguments to `tune_distill.cli.main` as the `space` subcommand (see preview.py).
What it must not know: anything else; options, logging and error reporting live in the CLI.

Example (CPU, a few seconds):
    python -m tune_distill.search configs/space_rich.yaml --samples 5
"""

import sys

from tune_distill.cli import main

sys.exit(main(["space", *sys.argv[1:]]))
