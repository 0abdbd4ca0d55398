"""A run folder's checkpoint and history: written atomically, loaded without running code, recovered after a kill.

What it does: `save_checkpoint` writes `checkpoint/` (state.pt: model, optimiser, scheduler, scaler, RNG
states, step, history; step.json: the step and the run's training settings with their hash) into a
staging folder, then swaps it in; a kill at any moment leaves a complete checkpoint, the new or the
old one, and `find_checkpoint` puts the old one back when the kill fell between the two renames of
the swap and sweeps up staging folders of dead processes. A failed write (disk full) raises
`CheckpointError` naming the folder. `load_checkpoint` reads state.pt with `torch.load(weights_only=True)`:
no code runs, whatever the file holds (checkpoints come back from shared storage on resume); the RNG
states are kept as plain tensors and numbers for that. A checkpoint of the previous format (numpy's RNG
state pickled as an array) loads with numpy's array and dtype types allowed, nothing else.
`check_settings` refuses a checkpoint trained with other settings, naming the keys that differ.
`append_history` writes one history.jsonl line per evaluation (a newline ends every complete line, so a
torn tail is visible) and `reconcile_history` cuts the file back to the step a run resumes from,
dropping a torn last line with a warning.

What it must not know: what the settings mean (run.py chooses them), the training loop, Ray.

Example (CPU, instant):
    python -c "from tune_distill.checkpoint import rng_state; print(sorted(rng_state()))"
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from tune_distill.files import write_atomically
from tune_distill.private_api import numpy_pickle_globals

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint"
STATE_FILE = "state.pt"
META_FILE = "step.json"
HISTORY_FILE = "history.jsonl"
FORMAT = 2  # 1: RNG states pickled as Python/numpy objects (needs numpy types to load); 2: plain tensors
_STAGING, _PREVIOUS = f".{CHECKPOINT_NAME}.tmp", f".{CHECKPOINT_NAME}.old"


class CheckpointError(ValueError):
    """A checkpoint that cannot be written, trusted or used here; the message names the folder and what to do."""


# --- RNG states as plain values ---------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Python's, numpy's and torch's (CPU, every CUDA device) generator states as tensors and numbers."""
    version, internal, gauss = random.getstate()
    _, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(position), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what `rng_state` (or the format-1 checkpoints' pickled tuples) recorded."""
    python, numpy_state = state["python"], state["numpy"]
    if isinstance(python, Mapping):
        python = (python["version"], tuple(int(x) for x in python["state"].tolist()), python["gauss"])
    random.setstate(python)
    if isinstance(numpy_state, Mapping):
        numpy_state = ("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                       numpy_state["has_gauss"], numpy_state["cached_gaussian"])
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- settings fingerprint ---------------------------------------------------------------------------------


def settings_hash(settings: Mapping[str, Any]) -> str:
    """sha256 of the settings as sorted JSON (what a checkpoint was trained with)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def read_meta(path: str | Path) -> dict[str, Any]:
    """step.json of a checkpoint folder ({} when absent or unreadable)."""
    try:
        return json.loads((Path(path) / META_FILE).read_text())
    except (OSError, ValueError):
        return {}


def check_settings(path: str | Path, settings: Mapping[str, Any] | None) -> None:
    """Refuse the checkpoint in `path` if it was trained with other `settings` (the keys that differ are named).

    A checkpoint without recorded settings (written before they were recorded) is accepted with a warning.
    """
    if settings is None or not (Path(path) / STATE_FILE).is_file():
        return
    meta = read_meta(path)
    if "settings_hash" not in meta:
        log.warning("checkpoint %s records no training settings (older format): resuming without checking them", path)
        return
    if meta["settings_hash"] == settings_hash(settings):
        return
    saved = json.loads(json.dumps(meta.get("settings", {}), default=str))
    now = json.loads(json.dumps(dict(settings), default=str))
    differing = sorted(key for key in set(saved) | set(now) if saved.get(key) != now.get(key))
    details = "; ".join(f"{key}: {saved.get(key)!r} in the checkpoint, {now.get(key)!r} now" for key in differing[:6])
    more = f" (and {len(differing) - 6} more)" if len(differing) > 6 else ""
    raise CheckpointError(
        f"{path} holds a checkpoint trained with other settings ({details or 'settings differ'}{more}); "
        "resume with the settings it was trained with, choose another --out, or start over with --no-resume"
    )


# --- writing and recovering -------------------------------------------------------------------------------


def _pid_of(folder: Path, prefix: str) -> int | None:
    suffix = folder.name[len(prefix):]
    return int(suffix) if suffix.isdigit() else None


def _alive(pid: int | None) -> bool:
    """Whether `pid` is another live process on this machine (our own pid is not: we are not saving now)."""
    if pid is None or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_checkpoint(directory: str | Path) -> Path | None:
    """`directory/checkpoint` after repairing what a kill can leave, or None when there is none.

    A kill between the swap's two renames leaves only the previous checkpoint (`.checkpoint.old<pid>`): it
    is put back (training is deterministic, so resuming from it ends the same). Staging and previous folders
    of processes that are gone are removed.
    """
    directory = Path(directory)
    target = directory / CHECKPOINT_NAME
    if not directory.is_dir():
        return None
    leftovers = [(folder, prefix) for prefix in (_STAGING, _PREVIOUS) for folder in directory.glob(prefix + "*")
                 if folder.is_dir() and not _alive(_pid_of(folder, prefix))]
    previous = sorted((folder for folder, prefix in leftovers if prefix == _PREVIOUS and (folder / STATE_FILE).is_file()
                       and (folder / META_FILE).is_file()), key=lambda folder: read_meta(folder).get("step", -1))
    if not target.exists() and previous:
        os.replace(previous[-1], target)
        log.warning("%s: the run was killed while swapping checkpoints; resuming from the previous one (step %s)",
                    directory, read_meta(target).get("step"))
    for folder, _ in leftovers:
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
            log.info("removed %s, left by a process that is gone", folder)
    return target if (target / STATE_FILE).is_file() else None


def save_checkpoint(directory: str | Path, state: Mapping[str, Any], step: int,
                    settings: Mapping[str, Any] | None = None) -> Path:
    """Write `directory/checkpoint` (state.pt + step.json) so that a kill leaves the old or the new one."""
    directory = Path(directory)
    target = directory / CHECKPOINT_NAME
    staging = directory / f"{_STAGING}{os.getpid()}"
    previous = directory / f"{_PREVIOUS}{os.getpid()}"
    find_checkpoint(directory)  # sweep up what dead processes left
    meta: dict[str, Any] = {"step": step, "format": FORMAT}
    if settings is not None:
        meta.update(settings_hash=settings_hash(settings), settings=dict(settings))
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with open(staging / STATE_FILE, "wb") as handle:  # a Python file: a full disk raises OSError here
            torch.save(dict(state, format=FORMAT), handle)
            handle.flush()
            os.fsync(handle.fileno())
        write_atomically(staging / META_FILE, json.dumps(meta, default=str))
        if target.exists():
            os.replace(target, previous)
        os.replace(staging, target)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        if not target.exists() and previous.exists():
            os.replace(previous, target)
        reason = "no space left on the device" if error.errno == errno.ENOSPC else (error.strerror or str(error))
        raise CheckpointError(f"cannot write the checkpoint in {directory}: {reason}; free space there (or choose "
                              "another --out) and run again: it resumes from the last complete checkpoint") from None
    shutil.rmtree(previous, ignore_errors=True)
    return target


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The state saved in `path` (a checkpoint folder), loaded with weights_only=True: no code runs.

    Raises CheckpointError when the file holds anything but tensors, numbers, strings and containers
    (format 1 may hold numpy arrays and scalars too), private_api.PrivateApiChanged when the numpy installed
    no longer has the reconstructors a format-1 checkpoint names.
    """
    file = Path(path) / STATE_FILE
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        try:
            # what a format-1 checkpoint pickles besides tensors: numpy arrays (the RNG state) and numpy scalars
            with torch.serialization.safe_globals(numpy_pickle_globals()):
                state = torch.load(file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            reason = str(error).strip().splitlines()[0][:300]
            raise CheckpointError(
                f"{file} cannot be loaded safely: it holds objects other than tensors and numbers ({reason}); it was "
                f"not written by this version, or was tampered with. Delete {Path(path)} (or run with --no-resume) "
                "to train from step 0; load it with weights_only=False only if you trust where it came from"
            ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise CheckpointError(f"{file} cannot be read ({type(error).__name__}: {str(error)[:200]}); delete "
                              f"{Path(path)} (or run with --no-resume) to train from step 0") from None
    if "history_json" in state:
        state["history"] = json.loads(state.pop("history_json"))
    return state


# --- history.jsonl ----------------------------------------------------------------------------------------


def append_history(out_dir: str | Path, record: Mapping[str, Any]) -> None:
    """Append one evaluation to history.jsonl: one write of a complete line, flushed to disk."""
    line = (json.dumps(record) + "\n").encode()
    descriptor = os.open(Path(out_dir) / HISTORY_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def reconcile_history(out_dir: str | Path, step: int) -> list[dict[str, Any]]:
    """Cut history.jsonl back to the evaluations up to `step` (where the run resumes; 0: a fresh start).

    A torn line (no newline at the end, or not JSON: the process died while writing it) is dropped with
    a warning, and so are evaluations after `step` (they are repeated by the resumed run). Returns the
    records kept.
    """
    path = Path(out_dir) / HISTORY_FILE
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    kept, torn, later = [], [], 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line) if number < len(lines) else None  # the last piece has no newline: torn
        except ValueError:
            record = None
        if not isinstance(record, dict):
            torn.append(number)
        elif int(record.get("step", 0)) <= step:
            kept.append(record)
        else:
            later += 1
    if torn:
        log.warning("%s: dropped %d torn line(s) (line %s; written when the run was killed)", path, len(torn),
                    ", ".join(map(str, torn)))
    if torn or later:
        if later:
            log.info("%s: dropped %d evaluation(s) after step %d (the resumed run repeats them)", path, later, step)
        write_atomically(path, "".join(json.dumps(record) + "\n" for record in kept))
    return kept
