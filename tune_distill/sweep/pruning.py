"""Old checkpoints of finished trials removed, without Tune's forced experiment snapshots.

What it does: a sweep keeps every checkpoint a running trial writes (Tune's CheckpointConfig without
num_to_keep), and `CheckpointPruner`, a Tune callback, removes the superseded ones of each trial that has ended
(completed or stopped by the scheduler): only its last checkpoint is read again (by report, confirm and export).
It removes them two experiment snapshots after the trial ended, so that a snapshot naming the trial as ended has
been written and synced before its older checkpoints go: a driver killed at any moment resumes from a snapshot
whose checkpoints all exist.

Why not num_to_keep=1, as the sweep did before issue 22: Tune then forces an experiment snapshot, and waits for
the previous sync to storage, after every trial checkpoint (ray/tune/execution/experiment_state.py,
sync_every_n_trial_checkpoints). Each snapshot holds every trial (about 35 KB each) and each sync copies every
trial's files, so at 20 workers the driver's loop spent its time snapshotting: measured on the simulated paper
preset at 40 trials, 87 snapshots of up to 1.4 MB and 29,487 requests to storage, and a free slot waited 28 s
(p50) for its next trial (results/sim-seed-scale/).

What it must not know: what a checkpoint holds, the searcher, the scheduler.

Example (CPU, a minute; the smoke sweep's finished trials keep one checkpoint each):
    tune-distill sweep --preset smoke --out sweeps/smoke --num-samples 3
"""

from __future__ import annotations

import logging
import posixpath
from typing import Any

from ray.tune import Callback as RayCallback

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint_"  # Tune's name for a trial's checkpoint folders (checkpoint_000002)


class CheckpointPruner(RayCallback):
    """Removes the superseded checkpoints of ended trials, two experiment snapshots after they ended."""

    def __init__(self) -> None:
        self._ended: list[Any] = []  # trials that ended since the last snapshot
        self._noted: list[Any] = []  # trials that had ended by the last snapshot
        self.removed = 0

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended.append(trial)

    def get_state(self) -> dict | None:
        """Called by Tune at each experiment snapshot, after the experiment state is written."""
        ready, self._noted, self._ended = self._noted, self._ended, []
        for trial in ready:
            self.removed += prune_trial(trial)
        return None

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for trial in [*self._noted, *self._ended]:  # the final snapshot follows: every trial has ended
            self.removed += prune_trial(trial)
        self._noted, self._ended = [], []


def prune_trial(trial: Any) -> int:
    """Remove every checkpoint folder of `trial` but its latest (Trial.checkpoint); how many were removed. A storage
    that cannot be listed or changed is a WARNING: a kept checkpoint only costs space."""
    latest = getattr(trial, "checkpoint", None)
    if latest is None:
        return 0
    from pyarrow.fs import FileSelector, FileType

    filesystem, keep = latest.filesystem, latest.path
    parent = posixpath.dirname(keep.rstrip("/"))
    removed = 0
    try:
        for info in filesystem.get_file_info(FileSelector(parent)):
            name = posixpath.basename(info.path)
            if info.type == FileType.Directory and name.startswith(CHECKPOINT_PREFIX) and info.path != keep:
                filesystem.delete_dir(info.path)
                removed += 1
    except OSError as failure:
        log.warning("could not remove the older checkpoints of %s in %s (%s); they only take space", trial, parent,
                    failure)
    return removed
