"""`python -m tune_distill.search SPACE.yaml [--samples N] ...`: the same as `tune-distill space ...`."""

import sys

from tune_distill.cli import main

sys.exit(main(["space", *sys.argv[1:]]))
