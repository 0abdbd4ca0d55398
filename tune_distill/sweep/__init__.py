"""Ray Tune sweeps: many distillation runs, chosen by a multi-objective searcher, run in parallel.

One module per concern:
  config.py      the sweep's settings (`SweepConfig`), parsing, checks, presets
  plan.py        the search space, the baseline (trial 0) and each trial's RunConfig
  trial.py       the trainable Tune runs for every trial (`make_trainable`, `run_trial`)
  searcher.py    `SweepSearcher`: Tune's searcher around a tune_distill.search searcher
  ranking.py     rung-ranking rules (hypervolume contribution, crowding distance); no Ray
  schedulers.py  Pareto successive halving (`pareto_sh`), baseline-keeping ASHA, `make_scheduler`
  callbacks.py   one progress line per finished trial; each finished trial into the Optuna study
  diskspace.py   a sweep running out of disk space stops resumably, with one line (`SpaceGuard`, `DiskFull`)
  experiment.py  the Tune experiment as saved: its trials as trials.jsonl records (tune_distill/records.py), repair
  storage.py     the sweep folder's files and a remote storage_path (s3://..., through tune_distill/remote.py)
  manifest.py    the folder's signed manifest: a resume unpickles nothing its owner's key did not sign
  driver.py      prepare once, start or join Ray, run or resume the Tuner, write sweep.json
  cli.py         the `tune-distill sweep` options and action

The names below are importable as `tune_distill.sweep.X`, and loaded on first use, so that
`tune_distill.sweep.config` and `.plan` import without Ray. Besides the names other modules, tests and
benches import, they keep what older sweeps pickled under `tune_distill.sweep` importable there: Tune's
`tuner.pkl` holds the scheduler (`ParetoSuccessiveHalving`, `BaselineKeepingASHA`), the searcher
adapter (`SweepSearcher`) and the callback (`ProgressLines`); its experiment state holds the trial
naming functions (`trial_name`, `trial_dirname`); the trainable (`make_trainable`'s closure, which
calls `run_trial` with a `TrialContext`) is pickled to the workers. A sweep started before this
package existed resumes through these names (tests/test_sweep_compat.py). Keep them.

What it must not know: how runs train (run.py), how searchers model (tune_distill.search), the report.

Example (CPU, a few minutes, from the repository root):
    python -m tune_distill.sweep --preset smoke --out sweeps/smoke --num-samples 4
    python -m tune_distill.sweep --out sweeps/smoke --resume      # continue it after an interruption
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module of this package that defines it
_EXPORTS = {
    # configuration
    "SweepConfig": "config", "SearcherSettings": "config", "SchedulerSettings": "config", "Resources": "config",
    "SweepConfigError": "config", "load_sweep_config": "config", "preset_path": "config",
    "sweep_config_from_dict": "config", "sweep_config_to_dict": "config", "check_sweep_config": "config",
    "with_overrides": "config", "parse_objectives": "config", "parse_constraint": "config",
    "resolve_constraints": "config",
    # space, baseline, trial configs
    "teacher_context": "plan", "load_sweep_space": "plan", "baseline_overrides": "plan",
    "trial_run_config": "plan", "absolute_base": "plan",
    # the trainable (pickled to the workers) and trial names (pickled in Tune's experiment state)
    "TrialContext": "trial", "run_trial": "trial", "make_trainable": "trial", "trial_dirname": "trial",
    "trial_name": "trial",
    # pickled in tuner.pkl
    "SweepSearcher": "searcher",
    "ParetoSuccessiveHalving": "schedulers", "BaselineKeepingASHA": "schedulers",
    "ProgressLines": "callbacks",
    # schedulers
    "CONTINUE": "schedulers", "STOP": "schedulers", "pareto_rungs": "schedulers", "make_scheduler": "schedulers",
    # the experiment's records, storage, driver
    "collect_trials": "experiment", "repair_missing_checkpoints": "experiment",
    "SWEEP_FILE": "storage", "TRIALS_FILE": "storage", "SCHEDULER_STATE_FILE": "storage",
    "SweepStorage": "storage", "sweep_storage": "storage", "upload_sweep_files": "storage", "fetch_sweep": "storage",
    "connect_ray": "driver", "no_answer_score": "plan", "prepare_sweep": "driver", "run_sweep": "driver",
    # the command (tune_distill/cli.py)
    "add_arguments": "cli", "out_folder": "cli", "command": "cli",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
