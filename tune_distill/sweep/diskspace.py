"""Disk space: a sweep that runs out of it stops resumably, with one line naming the folder and the space needed.

What it does: `SpaceGuard` (a Ray Tune callback) checks the free space of the sweep folder's disk after every
checkpoint, finished or failed trial, and at most every CHECK_EVERY_S seconds otherwise (a statvfs call: cheap);
when it is below `reserve` (room for the final experiment snapshot and a trial folder per running trial, the
largest trial folder measured so far) it
stops the sweep as Ctrl-C does (Tune's own SIGUSR1 handling: the unfinished trials are saved as such, and
`--resume` continues them from their checkpoints). Before that it keeps the experiment's last complete
snapshot aside (experiment.keep_snapshot), since the final one may be cut by the full disk; the driver puts
it back when it was (experiment.settle_snapshot). `DiskFull` is the one-line error the sweep then ends with
(`no_space_message`: the folder, the space free, about how much to free, and the command to resume);
`no_space` tells whether an error (or one it was raised from) is a full disk (ENOSPC), so that any write of
the driver that fails for lack of space ends the same way.

What it must not know: what the files hold, how trials train, what Tune keeps in its snapshot (experiment.py).

Example (CPU, instant):
    python -c "from tune_distill.sweep.diskspace import no_space_message; print(no_space_message('sweeps/smoke'))"
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Sequence

from ray.tune import Callback as RayCallback

from tune_distill.sweep.config import SweepConfigError
from tune_distill.sweep.experiment import keep_snapshot, put_callback, tuner_callbacks

log = logging.getLogger(__name__)

CHECK_EVERY_S = 0.5  # how often the guard looks at the free space between trial events
MARGIN = 1 << 20  # bytes kept free beyond the estimate: the sweep's own records (trials.jsonl, sweep.json, study)
MB = 1e6


class DiskFull(SweepConfigError):
    """The sweep stopped because its disk is (nearly) full; the message names the folder and the space needed."""


def no_space(error: BaseException | None) -> bool:
    """Whether `error`, or an error it was raised from (its cause or context), is a full disk (ENOSPC)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        error = error.__cause__ or error.__context__
    return False


def free_bytes(folder: str | Path) -> int | None:
    """The bytes free for this user on the disk of `folder` (None when it cannot be told)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def folder_bytes(folder: str | Path) -> int:
    """The bytes of the files under `folder` (0 when it is not there)."""
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def top_files_bytes(folder: str | Path | None) -> int:
    """The bytes of the files directly in `folder` (a Tune experiment: its snapshot files); 0 when none."""
    if not folder or not Path(folder).is_dir():
        return 0
    return sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file(follow_symlinks=False))


def needed_bytes(trial_bytes: int, trials_left: int, snapshot_bytes: int) -> int:
    """About the space a sweep needs to finish: a trial folder per trial left, two snapshots, MARGIN."""
    return max(trials_left, 1) * trial_bytes + 2 * snapshot_bytes + MARGIN


def no_space_message(folder: str | Path, needed: int | None = None, trial_bytes: int = 0) -> str:
    """The one line a sweep ends with when its disk is full: the folder, its free space, about how much to free
    (`needed` bytes in all, less what is free; estimated from the folder's trial folders when not given)."""
    folder = Path(folder)
    free = free_bytes(folder) or 0
    if needed is None:
        trial_bytes = trial_bytes or max((folder_bytes(path) for path in folder.glob("*/trial_*")), default=0)
        experiment = next((path.parent for path in folder.glob("*/tuner.pkl")), None)
        needed = needed_bytes(trial_bytes, 1, top_files_bytes(experiment))
    short = max(needed - free, MARGIN)
    each = f"; a trial folder here takes about {trial_bytes / MB:.1f} MB" if trial_bytes else ""
    return (f"no space left on the disk of {folder} ({free / MB:.1f} MB free): free about {short / MB:.0f} MB there"
            f"{each}, then run again with --resume (tune-distill sweep --resume --out {folder}); the finished trials "
            "and the checkpoints of the others are kept")


class SpaceGuard(RayCallback):
    """Stops the sweep, resumably, before its disk fills, or as soon as a trial failed and the disk is full.

    `folder`: the sweep folder (its disk is watched); `experiment`: the local Tune experiment (None when it is
    remote: nothing is measured or kept there). After the run, `stopped` says why it stopped the sweep (None:
    it did not) and `message()` is the line to end with.
    """

    def __init__(self, folder: str, experiment: str | None, num_samples: int):
        self.folder = str(folder)
        self.experiment = experiment
        self.num_samples = num_samples
        self.trial_bytes = 0  # the largest trial folder measured so far
        self.stopped: str | None = None
        self.needed = 0
        self._checked = 0.0

    def __getstate__(self) -> dict[str, Any]:
        """(Were it pickled with a Tuner: a resumed sweep starts with a fresh guard anyway.)"""
        return {**self.__dict__, "stopped": None, "_checked": 0.0}

    def reserve(self, trials: Sequence[Any]) -> int:
        """The free space the sweep needs to go on: a trial folder per running trial, two snapshots, MARGIN."""
        running = sum(1 for trial in trials if trial.status in ("RUNNING", "PENDING"))
        return needed_bytes(self.trial_bytes, running, top_files_bytes(self.experiment))

    def check(self, trials: Sequence[Any], why: str = "") -> None:
        """Stop the sweep when the free space is below `reserve`."""
        self._checked = time.monotonic()
        free = free_bytes(self.folder)
        reserve = self.reserve(trials)
        if free is None or free >= reserve or self.stopped:
            return
        left = self.num_samples - sum(1 for trial in trials if trial.status == "TERMINATED")
        self.needed = needed_bytes(self.trial_bytes, left, top_files_bytes(self.experiment))
        self.stopped = (f"{free / MB:.1f} MB free in {self.folder}, less than the {reserve / MB:.1f} MB the sweep "
                        f"needs to go on{why}")
        log.warning("stopping the sweep, resumably: %s", self.stopped)
        if self.experiment:
            keep_snapshot(self.experiment)  # the final snapshot may be cut by the full disk
        handler = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
        if not callable(handler):  # not Tune's run loop in this thread: end it by raising
            raise DiskFull(self.message())
        signal.raise_signal(signal.SIGUSR1)  # Tune ends the run as on Ctrl-C: unfinished trials saved as such

    def message(self) -> str:
        return no_space_message(self.folder, self.needed, self.trial_bytes)

    def _measure(self, trial: Any) -> None:
        path = getattr(trial, "path", None)  # (Tune's local_path is its driver staging folder, elsewhere)
        if self.experiment and path and "://" not in str(path):
            self.trial_bytes = max(self.trial_bytes, folder_bytes(path))

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if not self.stopped and time.monotonic() - self._checked >= CHECK_EVERY_S:
            self.check(trials)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: Any, **info: Any) -> None:
        # Results come often (20 workers, every evaluation): no folder walk here, only the timed free-space check;
        # a trial folder grows at its checkpoints, where it is measured.
        self.on_step_begin(iteration, trials)

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        self._measure(trial)
        self.check(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._measure(trial)
        self.check(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._measure(trial)
        self.check(trials, f" (trial {trial.trial_id} failed)")


def guard_sweep(tuner: Any, guard: SpaceGuard) -> None:
    """Add `guard` to a Tuner's callbacks (fresh or restored), after the Tuner was made: it is never pickled into
    tuner.pkl. Tune has no public way to change a restored Tuner's callbacks (private_api.tuner_run_config); when
    that has changed, a WARNING says so and the sweep goes on unguarded (a full disk then fails its trials and
    writes, each write of ours atomic, and the driver still ends with DiskFull's line)."""
    run_config = tuner_callbacks(tuner, "the sweep's free disk space is not watched")
    if run_config is not None:
        put_callback(run_config, guard)
