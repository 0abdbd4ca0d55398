"""`python -m tune_distill.data ...` is `tune-distill features ...` (see cli.py).

Must not know: anything; it only forwards to cli.main.

Example (CPU, instant):
    python -m tune_distill.data --help
"""

import sys

from tune_distill.cli import main

sys.exit(main(["features", *sys.argv[1:]]))
