"""`python -m tune_distill.export ...` is `tune-distill export ...` (see cli.py).

Must not know: anything; it only forwards to cli.main.

Example (CPU, seconds, on a finished smoke sweep):
    python -m tune_distill.export --sweep sweeps/smoke --list
"""

import sys

from tune_distill.cli import main

sys.exit(main(["export", *sys.argv[1:]]))
