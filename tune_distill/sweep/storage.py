"""Where a sweep keeps its experiment: the output folder, or a remote storage_path (s3://...) beside it.

What it does: names the sweep folder's own files (sweep.json, trials.jsonl, the scheduler's state);
`sweep_storage` resolves the config's storage_path into a `SweepStorage` (the forms Tune and pyarrow
take) and, for a remote one, probes it before anything is computed (the bucket exists, a marker can
be written and deleted) and refuses to start a fresh sweep over an existing one; `upload_sweep_files`
copies the sweep's files next to a remote experiment; `fetch_sweep` brings sweep.json (and the rest)
back into an empty output folder, so `--resume` works from the bucket alone (the resume verifies what it
fetched, manifest.json included, before anything is unpickled: sweep/manifest.py). `claim_folder` makes a
sweep the only one using its folder (an O_EXCL claim file with pid and host; a claim whose process is
gone on this host is taken over), and `relocate_saved` re-roots the paths inside a sweep folder that
was copied or moved since it started, so a resume writes only into the folder it is given.

What it must not know: Ray, trials, the report; the remote file system calls are remote.py's
(`tune_distill.remote`), the trial records' format records.py's.

Example (CPU, instant):
    python -c "from pathlib import Path; from tune_distill.sweep.config import load_sweep_config, preset_path; \
from tune_distill.sweep.storage import sweep_storage; \
print(sweep_storage(load_sweep_config(preset_path('smoke')), Path('sweeps/smoke')))"
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tune_distill import remote
from tune_distill.records import TRIALS_FILE
from tune_distill.study import STUDY_FILE  # the Optuna study
from tune_distill.sweep.config import SweepConfig, SweepConfigError

log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"
SCHEDULER_STATE_FILE = "scheduler_state.json"
SPACE_FILE = "space.yaml"  # the search space, copied at the start: a moved or copied folder resumes anywhere
CLAIM_FILE = ".sweep.claim"  # held while a sweep runs in the folder
MANIFEST_FILE = "manifest.json"  # the signed digests of the files a resume trusts (sweep/manifest.py)
# The sweep's own files, copied next to a remote experiment (the report adds its results files); the manifest last.
SWEEP_FILES = (SWEEP_FILE, TRIALS_FILE, SCHEDULER_STATE_FILE, STUDY_FILE, SPACE_FILE, MANIFEST_FILE)


@dataclass(frozen=True)
class SweepStorage:
    """Where Tune keeps the experiment, in the forms Tune and pyarrow take."""

    uri: str  # storage_path resolved: an absolute folder, or the URI (s3://bucket/prefix)
    endpoint: str  # the S3 endpoint in use ('' = AWS, or not S3)
    tune_path: str  # RunConfig.storage_path: the folder, or the path on `filesystem` (bucket/prefix)
    experiment: str  # the Tune experiment: a folder, or a path on `filesystem`
    local_experiment: str | None  # the experiment folder when it is local
    filesystem: Any = None  # pyarrow filesystem of a remote storage_path (None: local)

    def uri_of(self, path: str) -> str:
        """A path on the remote filesystem as a URI (s3://bucket/...); local paths as they are."""
        if self.filesystem is None or "://" in path:
            return path
        return f"{self.uri.split('://', 1)[0]}://{path}"


def sweep_storage(config: SweepConfig, out_dir: Path, *, fresh: bool = False) -> SweepStorage:
    """The sweep's storage. A remote one is checked first (the bucket exists, a marker object can be written
    and deleted with these credentials) and, for a fresh sweep, must not hold a sweep already."""
    storage = config.storage_path or str(out_dir)
    if not remote.is_remote(storage):
        folder = str(Path(storage.removeprefix("file://")).expanduser().resolve())
        experiment = str(Path(folder) / config.name)
        if fresh and Path(experiment).is_dir() and any(Path(experiment).iterdir()):
            raise SweepConfigError(f"storage_path {folder} already holds a Tune experiment ({experiment}); resume "
                                   "its sweep (--resume --out ITS_FOLDER) or choose another storage_path or name")
        return SweepStorage(folder, "", folder, experiment, experiment)
    uri = storage.rstrip("/")
    endpoint = remote.resolve_endpoint(config.storage_endpoint) if uri.startswith("s3://") else ""
    filesystem, path = remote.open_location(uri, endpoint, SweepConfigError)
    remote.probe(filesystem, path, uri, endpoint, SweepConfigError)
    location = SweepStorage(uri, endpoint, path, f"{path}/{config.name}", None, filesystem)
    if fresh:
        for used in (location.experiment, f"{path}/{SWEEP_FILE}"):
            if remote.exists(filesystem, used):
                raise SweepConfigError(f"storage_path {uri} already holds a sweep ({location.uri_of(used)}); resume "
                                       "it (--resume) or choose another storage_path")
    log.info("experiment storage: %s%s", location.uri_of(location.experiment), f" via {endpoint}" if endpoint else "")
    return location


def upload_sweep_files(location: SweepStorage, out_dir: Path, names: Sequence[str] = SWEEP_FILES) -> None:
    """Copy the sweep's own files next to a remote experiment; a failure is logged (they stay in out_dir)."""
    if location.filesystem is None:
        return
    try:
        written = remote.upload_files(out_dir, names, location.filesystem, location.tune_path)
    except OSError as failure:
        log.error("could not copy %s to %s (%s); they are in %s", ", ".join(names), location.uri,
                  remote.explain(failure, location.uri, location.endpoint), out_dir)
        return
    log.info("copied %s to %s", ", ".join(Path(path).name for path in written), location.uri)


def fetch_sweep(out_dir: Path, storage_path: str, storage_endpoint: str = "") -> None:
    """Resume without the local folder: copy sweep.json (and trials.jsonl, the scheduler's state, the Optuna
    study, which the resumed sweep continues, and the signed manifest) from a remote storage_path into out_dir.
    Nothing fetched is trusted yet: the resume verifies it (sweep/manifest.py) before using it."""
    if not remote.is_remote(storage_path):
        raise SweepConfigError(f"--resume: {out_dir} holds no sweep ({SWEEP_FILE} missing)")
    filesystem, path = remote.open_location(storage_path.rstrip("/"), storage_endpoint, SweepConfigError)
    endpoint = remote.resolve_endpoint(storage_endpoint) if storage_path.startswith("s3://") else ""
    try:
        found = remote.download_file(filesystem, f"{path}/{SWEEP_FILE}", out_dir / SWEEP_FILE)
        for name in SWEEP_FILES[1:] if found else ():  # trials.jsonl, the scheduler's state, the Optuna study
            remote.download_file(filesystem, f"{path}/{name}", out_dir / name)
    except OSError as failure:
        raise SweepConfigError(f"--resume: {remote.explain(failure, storage_path, endpoint)}") from None
    if not found:
        raise SweepConfigError(f"--resume: neither {out_dir} nor {storage_path} holds a sweep ({SWEEP_FILE} missing)")
    log.info("resuming from %s: its %s copied into %s", storage_path, SWEEP_FILE, out_dir)


@dataclass
class Claim:
    """A sweep's hold on its folder (see claim_folder); `release` ends it."""

    path: Path

    def release(self) -> None:
        try:
            if json.loads(self.path.read_text()).get("pid") == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass


def _holder_alive(holder: dict) -> bool:
    """Whether the process that wrote a claim may still run (True when it cannot be told: another host)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return True
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_folder(out_dir: Path) -> Claim:
    """Make this process the only sweep in `out_dir` (created if needed), atomically: the claim file is created
    with O_EXCL and names our pid and host. A claim whose process is gone (same host) is taken over; a live one
    (or one on another host) is refused with a message naming it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CLAIM_FILE
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for attempt in range(2):
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                holder = {}
            if attempt == 0 and holder and not _holder_alive(holder):
                log.warning("%s: taking over the claim of sweep process %s (no longer running)", out_dir,
                            holder.get("pid"))
                path.unlink(missing_ok=True)
                continue
            who = f"process {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}"
            raise SweepConfigError(f"{out_dir} is in use by another sweep ({who}); wait for it to end, or if it no "
                                   f"longer runs, remove {path}") from None
        with os.fdopen(descriptor, "w") as handle:
            handle.write(json.dumps(mine))
        return Claim(path)
    raise SweepConfigError(f"{out_dir}: could not claim the folder ({path})")


def _rerooted(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str) and (value == old or value.startswith(old + "/")):
        return new + value[len(old):]
    if isinstance(value, list):
        return [_rerooted(item, old, new) for item in value]
    if isinstance(value, dict):
        return {key: _rerooted(item, old, new) for key, item in value.items()}
    return value


def original_folder(saved: dict) -> str | None:
    """The folder a sweep started in: recorded in sweep.json, or (older sweeps) the parent of a local experiment
    kept in the folder."""
    if saved.get("out_dir"):
        return saved["out_dir"]
    experiment = saved.get("experiment_path") or ""
    storage = saved.get("config", {}).get("storage_path") or ""
    if experiment and "://" not in experiment and str(Path(experiment).parent) == storage:
        return storage
    return None


def relocate_saved(saved: dict, out_dir: Path) -> dict:
    """sweep.json's contents with every path inside the folder the sweep started in moved into `out_dir` (the
    same folder, or a copy of it elsewhere); paths outside it (data, teacher, a remote storage) are kept."""
    old, new = original_folder(saved), str(out_dir)
    if old is None or old == new:
        return {**saved, "out_dir": new}
    log.warning("this sweep started in %s: it resumes in %s, and paths inside the folder follow it", old, new)
    return {**_rerooted(saved, old, new), "out_dir": new}
