"""`python -m tune_distill.sweep ...` is `tune-distill sweep ...` (the one entry point, tune_distill/cli.py)."""

import sys

import tune_distill.cli

sys.exit(tune_distill.cli.main(["sweep", *sys.argv[1:]]))
