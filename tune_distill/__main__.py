"""`python -m tune_distill ...` is the `tune-distill` command (see cli.py).

Must not know: anything; it only forwards to cli.main.

Example (CPU, instant):
    python -m tune_distill config --help-keys
"""

import sys

from tune_distill.cli import main

sys.exit(main())
