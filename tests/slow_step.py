"""A step that hangs, for tests/test_trial_timeout.py: loaded into every Ray worker of its module's local Ray.

`install` (Ray's worker_process_setup_hook) wraps distill's optimiser step so that the second step of the trial
whose seed is SLOW_SEED (the sweep's base seed 100 + trial 1) sleeps SLEEP_S: long past any limit of the tests.
"""

from __future__ import annotations

import time

SLOW_SEED = 101
SLEEP_S = 300.0


def install() -> None:
    from tune_distill import distill

    step = distill._train_step

    def slow_step(run):
        if run.config.seed == SLOW_SEED and run.step == 1:
            time.sleep(SLEEP_S)
        return step(run)

    distill._train_step = slow_step
