"""The Tune experiment as Tune saved it: its trials as trial records, and its repair before a resume.

What it does: `collect_trials` reads the Tune experiment (local or remote) and turns each trial into
one record (`trial_record`: number, kind, status complete/stopped/failed/unfinished, params,
overrides, metrics, error, attempts, checkpoint, run folder, node, device, seed, times, steps saved),
in the format of tune_distill/records.py, which writes and reads trials.jsonl;
`repair_missing_checkpoints` fixes an experiment whose driver died between Tune's deletion of an old
checkpoint and its next snapshot, so that it can be resumed. A full disk can cut Tune's snapshot files
(experiment_state-*.json, the searcher's states: Tune overwrites them in place): `keep_snapshot` moves the
last complete ones aside (hidden `.complete-*` names, no space needed) when the sweep stops for lack of space,
and `settle_snapshot` (after the run, and before a resume) puts them back where the final snapshot was cut,
else falls back to an earlier run's complete snapshot, else refuses in one line naming the cut file.
`collect_trials` reads an experiment whose trials' error files a full disk left empty.

What it must not know: how trials ran or were chosen, the report's tables, the file format (records.py).

Example (CPU, seconds; any finished sweep folder):
    python -c "from tune_distill.sweep.experiment import collect_trials; print(collect_trials('sweeps/smoke/tune')[0])"
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tune_distill.private_api import PrivateApiChanged, tuner_run_config
from tune_distill.records import STOPPED, UNFINISHED, trial_status
from tune_distill.sweep.config import SweepConfigError
from tune_distill.sweep.trial import TRIAL_ERROR_FILE

log = logging.getLogger(__name__)

# Bookkeeping Tune adds to every result, and identity fields of our reports: not metrics of the run.
_NOT_METRICS = frozenset({
    "timestamp", "training_iteration", "time_this_iter_s", "time_total_s", "time_since_restore",
    "iterations_since_restore", "checkpoint_dir_name", "date", "hostname", "node_ip", "pid", "done", "trial_id",
    "experiment_tag", "should_checkpoint", "config", "number", "kind", "node_id", "device", "seed", "run_dir",
    "final", "status", "started_at", "finished_at",
})


def trial_record(trial: Any, result: Any | None) -> dict[str, Any]:
    """One trials.jsonl record from a Tune trial (and its Result, for the error and checkpoint)."""
    last = dict(trial.last_result or {})
    errored = trial.status == "ERROR"
    finished = trial.status in ("TERMINATED", "ERROR")
    status = trial_status(last, errored) if finished else UNFINISHED
    config = trial.config or {}
    metrics = {key: value for key, value in last.items() if key not in _NOT_METRICS}
    run_dir = last.get("run_dir")
    error = None
    node_id, device, seed = last.get("node_id"), last.get("device"), last.get("seed")
    if errored:
        cause = getattr(result, "error", None) if result is not None else None
        cause = getattr(cause, "cause", None) or cause
        error = f"{type(cause).__name__}: {cause}".strip() if cause is not None else "error (see the trial's error.txt)"
        error = error.splitlines()[-1] if "\n" in error else error
    if trial.path and "://" not in str(trial.path):
        # the run folder inside the trial's folder where it is now (the sweep folder may have moved since)
        candidate = Path(trial.path) / "run"
        run_dir = str(candidate) if candidate.exists() else run_dir
    if run_dir and (Path(run_dir) / TRIAL_ERROR_FILE).is_file():
        try:
            details = json.loads((Path(run_dir) / TRIAL_ERROR_FILE).read_text())
        except (OSError, ValueError):  # cut short (a full disk): the error Tune recorded stands
            details = {}
        details = details if isinstance(details, dict) else {}
        node_id, device = node_id or details.get("node_id"), device or details.get("device")
        seed = seed if seed is not None else details.get("seed")
        if errored:
            error = details.get("error", error)
    checkpoint = getattr(result, "checkpoint", None) if result is not None else None
    steps_saved = None
    if status == STOPPED and last.get("total_steps") and last.get("step") is not None:
        steps_saved = max(0, int(last["total_steps"]) - int(last["step"]))
    return {
        "trial_id": trial.trial_id,
        "number": int(config.get("number", -1)),
        "kind": config.get("kind", "search"),
        "baseline": config.get("kind") == "baseline",
        "status": status,
        "params": config.get("params", {}),
        "overrides": config.get("overrides", {}),
        "metrics": metrics,
        "error": error,
        "attempts": int(getattr(trial, "num_failures", 0)) + (0 if errored else 1),  # every failure was one
        "duration": last.get("time_total_s"),
        "checkpoint": getattr(checkpoint, "path", None),
        "run_dir": run_dir,
        "node_id": node_id,
        "device": device,
        "seed": seed,
        "started_at": last.get("started_at"),
        "finished_at": last.get("finished_at"),
        "steps_saved": steps_saved,
    }


def collect_trials(experiment_path: str, filesystem: Any = None) -> list[dict[str, Any]]:
    """trials.jsonl records from the experiment as Tune saved it (`filesystem`: see repair_missing_checkpoints).

    The saved state, not the Tuner's in-memory one: after an interrupt (Ctrl-C) Tune marks running
    trials terminated in memory but saves them as running, and those are the ones a resume continues.
    """
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(experiment_path, storage_filesystem=filesystem)
    results = _results(analysis)
    records = [trial_record(trial, results.get(trial.trial_id)) for trial in analysis.trials]
    return sorted(records, key=lambda record: record["number"])


def _results(analysis: Any) -> dict[str, Any]:
    """trial id -> Tune's Result of each trial; when a trial's error file cannot be read (left empty or cut by a
    full disk), each trial's checkpoint without its error (the trial's own error record still names it)."""
    from ray.tune import ResultGrid

    try:
        grid = list(ResultGrid(analysis))
    except Exception as failure:  # noqa: BLE001 - an error.pkl cut short: EOFError, UnpicklingError, OSError, ...
        log.warning("the Tune experiment's trial errors could not all be read (%s: %s); the trials' own error records "
                    "are used", type(failure).__name__, str(failure)[:200])
        return {trial.trial_id: SimpleNamespace(error=None, checkpoint=trial.checkpoint) for trial in analysis.trials}
    results = {}
    for result in grid:
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name.split("_")[-1]
        results[trial_id] = result
    return results


def repair_missing_checkpoints(experiment_path: str, filesystem: Any = None) -> int:
    """Point unfinished trials whose recorded checkpoint was deleted at the newest one that exists.

    Tune records each trial's latest checkpoint in its experiment snapshot and, with num_to_keep=1,
    deletes the previous checkpoint as soon as a new one is registered; a driver killed between that
    deletion and the next snapshot leaves a snapshot naming a deleted checkpoint, and Tune's restore
    then fails ("does not exist on storage anymore"). Training is deterministic, so resuming from the
    newer checkpoint is as good: it is moved to the recorded name. Returns the number of repairs.
    `filesystem`: the remote storage's pyarrow filesystem, `experiment_path` a path on it (None: local).
    """
    from pyarrow import fs as pafs
    from ray.tune import ExperimentAnalysis

    repaired = 0
    for trial in ExperimentAnalysis(experiment_path, storage_filesystem=filesystem).trials:
        checkpoint = trial.checkpoint
        if trial.status == "TERMINATED" or checkpoint is None:
            continue
        fs, path = filesystem or checkpoint.filesystem, checkpoint.path
        if fs.get_file_info(path).type != pafs.FileType.NotFound:
            continue
        parent = path.rstrip("/").rsplit("/", 1)[0]
        siblings = sorted(info.path for info in fs.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
                          if info.type == pafs.FileType.Directory and info.base_name.startswith("checkpoint_"))
        if siblings:
            _move_folder(fs, siblings[-1], path)
            log.warning("trial %s: its recorded checkpoint %s was deleted after the last snapshot; resuming from the "
                        "newer %s instead", trial.trial_id, path, siblings[-1])
        else:
            fs.create_dir(path)  # empty: the trial starts over
            log.warning("trial %s: no checkpoint left in %s; it starts over", trial.trial_id, parent)
        repaired += 1
    return repaired


def _move_folder(filesystem: Any, source: str, target: str) -> None:
    """Rename a folder; object stores (S3) cannot rename one, so there it is copied, then deleted."""
    from pyarrow import fs as pafs

    if isinstance(filesystem, pafs.LocalFileSystem):
        filesystem.move(source, target)
        return
    pafs.copy_files(source, target, source_filesystem=filesystem, destination_filesystem=filesystem, use_threads=False)
    filesystem.delete_dir(source)


KEPT = ".complete-"  # the prefix of a snapshot file kept aside (hidden: neither Tune nor the manifest reads it)
STATE_PREFIX, STATE_SUFFIX = "experiment_state-", ".json"  # Tune's experiment snapshot: experiment_state-<run>.json


def _runs(experiment: Path, prefix: str = "") -> list[str]:
    """The runs (Tune's session strings) whose experiment snapshot is in `experiment`, oldest first."""
    start = prefix + STATE_PREFIX
    return sorted(path.name[len(start):-len(STATE_SUFFIX)] for path in experiment.glob(f"{start}*{STATE_SUFFIX}"))


def snapshot_files(experiment: str | Path, run: str, prefix: str = "") -> list[Path]:
    """The files of one run's snapshot at the experiment's top level: its experiment state, the searcher's
    states, the callbacks' (every `<name>-<run>.json` or `.pkl`)."""
    return sorted(path for path in Path(experiment).glob(f"{prefix}*-{run}.*")
                  if path.suffix in (".json", ".pkl") and path.is_file() and (prefix or not path.name.startswith(".")))


def whole(path: Path) -> bool:
    """Whether a snapshot file was written to its end: a pickle ends with its STOP opcode, the rest is JSON."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if data[:1] == b"\x80":
        return len(data) > 2 and data.endswith(b".")
    try:
        json.loads(data)
    except (ValueError, RecursionError):
        return False
    return True


def keep_snapshot(experiment: str | Path) -> list[Path]:
    """Move the newest snapshot's files aside (`.complete-<name>`, a rename: no space needed) when every one is
    whole, so that a final snapshot cut by a full disk cannot take the last complete one with it; returns the
    kept files (none when the snapshot was already cut)."""
    experiment = Path(experiment)
    runs = _runs(experiment)
    files = snapshot_files(experiment, runs[-1]) if runs else []
    if not files:
        return []
    if not all(whole(path) for path in files):
        log.warning("%s: its experiment snapshot is already cut short (the disk is full): none to keep aside",
                    experiment)
        return []
    kept = [path.with_name(KEPT + path.name) for path in files]
    for path, target in zip(files, kept):
        os.replace(path, target)
    return kept


def settle_snapshot(experiment: str | Path) -> str | None:
    """After a run (and before a resume): put the snapshot keep_snapshot kept aside back when the one written
    since is cut or missing (else drop it); a cut snapshot with no kept one falls back to an earlier run's
    complete snapshot (the cut one moved aside as `.cut-<name>`); trials' error files a full disk left empty are
    removed (drop_empty_error_files). Returns what was done (None: nothing);
    SweepConfigError, one line naming the cut file, when no complete snapshot is left."""
    experiment = Path(experiment)
    if not experiment.is_dir():
        return None
    drop_empty_error_files(experiment)
    kept_runs, runs = _runs(experiment, KEPT), _runs(experiment)
    current = snapshot_files(experiment, runs[-1]) if runs else []
    current_whole = bool(current) and all(whole(path) for path in current)
    kept = snapshot_files(experiment, kept_runs[-1], KEPT) if kept_runs else []
    if kept and (not current_whole or kept_runs[-1] > runs[-1]) and all(whole(path) for path in kept):
        for path in kept:
            os.replace(path, path.with_name(path.name[len(KEPT):]))
        log.warning("%s: the experiment's final snapshot was cut (the disk filled); its last complete one is back in "
                    "place", experiment)
        return "restored"
    for path in experiment.glob(KEPT + "*"):
        path.unlink()
    if not current or current_whole:
        return None
    cut = next(path for path in current if not whole(path))
    earlier = [run for run in runs[:-1] if all(whole(path) for path in snapshot_files(experiment, run))]
    if not earlier:
        raise SweepConfigError(f"{cut}: cut short (the disk filled, or the driver was killed, while Tune wrote it) "
                               "and no complete snapshot of the experiment is kept: this sweep cannot be resumed; "
                               "start it again in a new folder")
    for path in current:
        os.replace(path, path.with_name(".cut-" + path.name))
    log.warning("%s: cut short; resuming from the experiment's earlier snapshot (%s): trials it does not know start "
                "again", cut, earlier[-1])
    return "earlier"


def drop_empty_error_files(experiment: str | Path) -> int:
    """Remove the trials' error.pkl and error.txt files that are empty (Tune created them on a full disk: they hold
    nothing, and a resume retries those trials anyway); returns how many."""
    empty = [path for name in ("error.pkl", "error.txt") for path in Path(experiment).glob(f"trial_*/{name}")
             if path.is_file() and path.stat().st_size == 0]
    for path in empty:
        path.unlink()
    if empty:
        log.info("%s: removed %d empty trial error file(s) left by the full disk", experiment, len(empty))
    return len(empty)


def tuner_callbacks(tuner: Any, without_them: str) -> Any | None:
    """The run config of a Tuner (fresh or restored) whose callbacks the sweep may change, or None.

    Callbacks added after the Tuner was made are never pickled into tuner.pkl, but Tune has no public way to reach
    a Tuner's run config (private_api.tuner_run_config). When that has changed, a WARNING says so and what the
    sweep goes on without (`without_them`); a Tuner driven through Ray Client has none (INFO). Either way None."""
    try:
        run_config = tuner_run_config(tuner)
    except PrivateApiChanged as changed:
        logging.getLogger(__name__).warning("%s; %s", changed, without_them)
        return None
    if run_config is None:
        logging.getLogger(__name__).info("%s (a Tuner driven through Ray Client)", without_them)
    return run_config


def put_callback(run_config: Any, callback: Any) -> None:
    """`callback` in place of any callback of its type in `run_config` (a restored Tuner may hold an older one)."""
    kept = [held for held in run_config.callbacks or [] if not isinstance(held, type(callback))]
    run_config.callbacks = [*kept, callback]
