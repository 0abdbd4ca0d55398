"""Where a sweep keeps its experiment: the output folder, or a remote storage_path (s3://...) beside it.

What it does: names the sweep folder's own files (sweep.json, trials.jsonl, the scheduler's state);
`sweep_storage` resolves the config's storage_path into a `SweepStorage` (the forms Tune and pyarrow
take) and, for a remote one, probes it before anything is computed (the bucket exists, a marker can
be written and deleted) and refuses to start a fresh sweep over an existing one; `upload_sweep_files`
copies the sweep's files next to a remote experiment; `fetch_sweep` brings sweep.json (and the rest)
back into an empty output folder, so `--resume` works from the bucket alone.

What it must not know: Ray, trials, the report; the remote file system calls are storage.py's
(`tune_distill.storage`).

Example (CPU, instant):
    python -c "from pathlib import Path; from tune_distill.sweep.config import load_sweep_config, preset_path; \
from tune_distill.sweep.storage import sweep_storage; \
print(sweep_storage(load_sweep_config(preset_path('smoke')), Path('sweeps/smoke')))"
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tune_distill import storage as storage_io
from tune_distill.study import STUDY_FILE  # the Optuna study
from tune_distill.sweep.config import SweepConfig, SweepConfigError
from tune_distill.sweep.plan import _absolute

log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"
TRIALS_FILE = "trials.jsonl"
SCHEDULER_STATE_FILE = "scheduler_state.json"
# The sweep's own files, copied next to a remote experiment (the report adds its results files).
SWEEP_FILES = (SWEEP_FILE, TRIALS_FILE, SCHEDULER_STATE_FILE, STUDY_FILE)


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
    if not storage_io.is_remote(storage):
        folder = _absolute(storage.removeprefix("file://"))
        experiment = str(Path(folder) / config.name)
        return SweepStorage(folder, "", folder, experiment, experiment)
    uri = storage.rstrip("/")
    endpoint = storage_io.resolve_endpoint(config.storage_endpoint) if uri.startswith("s3://") else ""
    filesystem, path = storage_io.open_location(uri, endpoint, SweepConfigError)
    storage_io.probe(filesystem, path, uri, endpoint, SweepConfigError)
    location = SweepStorage(uri, endpoint, path, f"{path}/{config.name}", None, filesystem)
    if fresh:
        for used in (location.experiment, f"{path}/{SWEEP_FILE}"):
            if storage_io.exists(filesystem, used):
                raise SweepConfigError(f"storage_path {uri} already holds a sweep ({location.uri_of(used)}); resume "
                                       "it (--resume) or choose another storage_path")
    log.info("experiment storage: %s%s", location.uri_of(location.experiment), f" via {endpoint}" if endpoint else "")
    return location


def upload_sweep_files(location: SweepStorage, out_dir: Path, names: Sequence[str] = SWEEP_FILES) -> None:
    """Copy the sweep's own files next to a remote experiment; a failure is logged (they stay in out_dir)."""
    if location.filesystem is None:
        return
    try:
        written = storage_io.upload_files(out_dir, names, location.filesystem, location.tune_path)
    except OSError as failure:
        log.error("could not copy %s to %s (%s); they are in %s", ", ".join(names), location.uri,
                  storage_io.explain(failure, location.uri, location.endpoint), out_dir)
        return
    log.info("copied %s to %s", ", ".join(Path(path).name for path in written), location.uri)


def fetch_sweep(out_dir: Path, storage_path: str, storage_endpoint: str = "") -> None:
    """Resume without the local folder: copy sweep.json (and trials.jsonl, the scheduler's state, the Optuna
    study, which the resumed sweep continues) from a remote storage_path into out_dir."""
    if not storage_io.is_remote(storage_path):
        raise SweepConfigError(f"--resume: {out_dir} holds no sweep ({SWEEP_FILE} missing)")
    filesystem, path = storage_io.open_location(storage_path.rstrip("/"), storage_endpoint, SweepConfigError)
    endpoint = storage_io.resolve_endpoint(storage_endpoint) if storage_path.startswith("s3://") else ""
    try:
        found = storage_io.download_file(filesystem, f"{path}/{SWEEP_FILE}", out_dir / SWEEP_FILE)
        for name in SWEEP_FILES[1:] if found else ():  # trials.jsonl, the scheduler's state, the Optuna study
            storage_io.download_file(filesystem, f"{path}/{name}", out_dir / name)
    except OSError as failure:
        raise SweepConfigError(f"--resume: {storage_io.explain(failure, storage_path, endpoint)}") from None
    if not found:
        raise SweepConfigError(f"--resume: neither {out_dir} nor {storage_path} holds a sweep ({SWEEP_FILE} missing)")
    log.info("resuming from %s: its %s copied into %s", storage_path, SWEEP_FILE, out_dir)
