"""A sweep folder's signed manifest: a resume unpickles nothing that this user's own sweeps did not write.

Why: resuming a sweep unpickles files of its folder (Ray's tuner.pkl, the pickles Ray keeps hex-encoded in
experiment_state-*.json, search_gen_state-*.json, callback-states-*.pkl, a trial's error.pkl, and searcher states
of earlier versions): whoever could write the folder (a folder handed over, a shared bucket) could run code on the
resuming machine, with its credentials. So the folder carries `manifest.json`, the SHA-256 of the files that are
unpickled or steer the resume, signed with HMAC-SHA256 under a key that never leaves this user's machine (or the
cluster's secret store): tune_distill/signing.py.

What is signed (paths relative to the sweep folder; the experiment's under its name, `tune/` by default, also when
it lives in a bucket): sweep.json and space.yaml (they steer what runs), and in the Tune experiment every file at
its top level but hidden ones (tuner.pkl, experiment_state-*, searcher-state-*, search_gen_state-*, callback
states: Ray reads none by a name starting with a dot, and its half-written temporaries do) and every trial
folder's error.pkl. Not signed, because nothing unpickles them: the trials' params.pkl (Ray writes it, a resume
never reads it), trials.jsonl and study.journal (JSON lines appended as trials finish), scheduler_state.json
(JSON rung records), cache/ (Arrow tables and .npy arrays read without pickles), and the trials' checkpoints and
run folders (state.pt is loaded with weights_only=True; the rest is JSON, text and safetensors).

When: `FolderSigner.sign_local` after our code writes sweep.json or space.yaml (start, resume, end); `watch`
signs tuner.pkl right after a fresh Tuner wrote it and adds a `CheckpointSigner`, a Tune callback whose get_state
(called by Tune right after it wrote the experiment state and the searcher's into its driver staging folder, before
it syncs them to the experiment: private_api.tune_driver_staging_path) signs what Tune is about to sync; `close`
signs once more when the sweep ends, normally or not. A file keeps the digests of its last KEEP_DIGESTS versions,
all written by this user's own driver: a driver killed while Tune syncs leaves each file at one of them. Only a
kill in the instant a file is half copied leaves a mismatch; the resume then says which file changed.

How verified: `open_for_resume` (before sweep.json's paths are used: the manifest's signature with the keys held
here, old ones included, and sweep.json, space.yaml) and `FolderSigner.use_storage` (where the experiment is,
local or in the bucket after a fetch: every covered file read and hashed there, before Ray or the searcher
unpickles anything). A missing manifest, a key not held here, a changed file or one not listed is refused with one
line naming it; `--trust-folder` resumes such a folder anyway, with a warning, and from then on it is signed with
this user's key (it is adopted). A folder signed with an older key is re-signed with the current one. The
legacy pickled searcher states are read only inside `FolderSigner.unpickling` (signing.trusted_pickles).
Residual: a bucket writer racing a resume in the seconds between its check and Ray's own read of the bucket.

What it must not know: what Tune or the searcher keep in those files, how keys are made or kept (signing.py).

Example (CPU, a few minutes):
    tune-distill sweep --preset smoke --out sweeps/smoke --num-samples 2 && cat sweeps/smoke/manifest.json
    tune-distill sweep --resume --out sweeps/smoke
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence

from ray.tune import Callback as RayCallback

from tune_distill import remote
from tune_distill.config import ConfigError
from tune_distill.files import parse_json, read_text_limited, write_json
from tune_distill.private_api import PrivateApiChanged, tune_driver_staging_path
from tune_distill.signing import (
    SigningKey,
    UntrustedFolder,
    current_key,
    digest_file,
    digest_stream,
    record_digest,
    sign_manifest,
    signing_keys,
    trusted_pickles,
    verify_manifest,
)
from tune_distill.sweep.experiment import put_callback, tuner_callbacks
from tune_distill.sweep.storage import MANIFEST_FILE, SPACE_FILE, SWEEP_FILE, SweepStorage

log = logging.getLogger(__name__)

SIGNED_SWEEP_FILES = (SWEEP_FILE, SPACE_FILE)  # the sweep folder's own files a resume trusts (beside the experiment)
TUNER_FILE = "tuner.pkl"  # written by Tune once, when a fresh Tuner is made
ERROR_PICKLE = "error.pkl"  # a trial's error, unpickled by Tune's ResultGrid for trials that did not end well
MANIFEST_MAX_BYTES = 16 * 2**20
TRUST_HINT = ("if the folder is your own (its driver was killed while Tune saved it, or you edited it) or you trust "
              "whoever wrote it, resume it with --trust-folder, which unpickles its files: any code an author put in "
              "them runs, with your account and credentials")
TRUSTED_WARNING = ("--trust-folder: %s; resuming it anyway: Ray and the searcher unpickle its files, so any code an "
                   "author put in them runs now, with your account and credentials; from now on the folder is signed "
                   "with your key")


def _refusal(problem: str) -> UntrustedFolder:
    return UntrustedFolder(f"--resume: {problem}; nothing in the folder was unpickled. {TRUST_HINT}")


def experiment_name(location: SweepStorage) -> str:
    """The Tune experiment's folder name (its manifest paths start with it)."""
    return location.experiment.rstrip("/").rsplit("/", 1)[-1]


def _filesystem(location: SweepStorage) -> Any:
    from pyarrow import fs as pafs

    return location.filesystem if location.filesystem is not None else pafs.LocalFileSystem()


def covered_files(filesystem: Any, experiment: str) -> list[str]:
    """The files of a Tune experiment (`experiment`, a path on the pyarrow `filesystem`) that a resume may
    unpickle, relative to it: every file at its top level but hidden ones, and every trial folder's error.pkl."""
    from pyarrow import fs as pafs

    found = []
    for info in filesystem.get_file_info(pafs.FileSelector(experiment, allow_not_found=True)):
        if info.base_name.startswith("."):
            continue
        if info.type == pafs.FileType.File:
            found.append(info.base_name)
        elif info.type == pafs.FileType.Directory and \
                filesystem.get_file_info(f"{info.path}/{ERROR_PICKLE}").type == pafs.FileType.File:
            found.append(f"{info.base_name}/{ERROR_PICKLE}")
    return sorted(found)


def _digest(filesystem: Any, path: str) -> str:
    with filesystem.open_input_stream(path) as handle:
        return digest_stream(handle)


def _changed(shown: str, listed: Sequence[str] | None, digest: str) -> str | None:
    """Why a file does not verify (None when it does)."""
    if listed is None:
        return f"{shown} was added since this sweep last signed its folder"
    return None if digest in listed else f"{shown} changed since this sweep last signed its folder"


def _read_manifest(out_dir: Path) -> tuple[dict[str, list[str]], SigningKey]:
    """The files of out_dir's manifest and the key that signed it (UntrustedFolder when it cannot be verified)."""
    path = out_dir / MANIFEST_FILE
    if not path.is_file():
        raise UntrustedFolder(f"{out_dir} has no {MANIFEST_FILE}: no sweep of yours signed it (it was written "
                              "before sweep folders were signed, or by someone else)")
    document = parse_json(read_text_limited(path, MANIFEST_MAX_BYTES, str(path), UntrustedFolder), str(path),
                          UntrustedFolder, "the manifest")
    return verify_manifest(document, signing_keys(create=False), str(path))


def open_for_resume(out_dir: Path, trust: bool = False) -> FolderSigner:
    """The signer of a folder to resume: its manifest verified with the keys held here and sweep.json, space.yaml
    checked against it (the experiment is checked by `use_storage`). Refused (UntrustedFolder, one line naming
    the file) unless `trust`, which adopts the folder as it is, with a warning."""
    try:
        files, key = _read_manifest(out_dir)
        for name in SIGNED_SWEEP_FILES:
            if (out_dir / name).is_file():
                problem = _changed(str(out_dir / name), files.get(name), digest_file(out_dir / name))
                if problem:
                    raise UntrustedFolder(f"{problem} ({out_dir / MANIFEST_FILE})")
    except UntrustedFolder as problem:
        if not trust:
            raise _refusal(str(problem)) from None
        log.warning(TRUSTED_WARNING, problem)
        signer = FolderSigner(out_dir, resumed=True, trust=True, adopt=True)
        signer.sign_local()
        return signer
    current = current_key(create=False)
    if key != current:
        log.info("%s: signed with an older key (%s); the folder is re-signed with the current one (%s)",
                 out_dir / MANIFEST_FILE, key.key_id, current.key_id)
    return FolderSigner(out_dir, files, resumed=True, trust=trust)


def fresh_signer(out_dir: Path) -> FolderSigner:
    """The signer of a fresh sweep; the signing key is made now if there is none yet (before any work)."""
    current_key(create=True)
    return FolderSigner(out_dir)


class FolderSigner:
    """The manifest of a sweep folder while a sweep runs in it: the digests it verified or adopted, and those of
    what this run writes. It holds no key (the key is read when signing): nothing secret if it were pickled."""

    def __init__(self, out_dir: Path, files: dict[str, list[str]] | None = None, *, resumed: bool = False,
                 trust: bool = False, adopt: bool = False):
        self.out_dir = Path(out_dir)
        self.files = {path: list(digests) for path, digests in (files or {}).items()}
        self.resumed = resumed  # opened for a resume: nothing is written until the experiment verified too
        self.trust = trust  # --trust-folder: what does not verify is adopted, with a warning, instead of refused
        self.adopt = adopt  # the folder did not verify and is trusted: its files are signed as they are
        self.location: SweepStorage | None = None
        self.ready = not resumed
        self.when_verified: list[Callable[[], None]] = []  # writes a resume makes only once the folder verified

    def sign_local(self, names: Sequence[str] = SIGNED_SWEEP_FILES) -> None:
        """Record the sweep folder's own files `names` as they are now (written by this sweep)."""
        for name in names:
            if (self.out_dir / name).is_file():
                record_digest(self.files, name, digest_file(self.out_dir / name))

    def use_storage(self, location: SweepStorage) -> None:
        """Where the experiment is. A resumed folder's experiment is checked there first (adopted with
        --trust-folder): UntrustedFolder names the first file that does not verify, and nothing is written; then
        the writes held in `when_verified` are made and the manifest is written again, signed with the current key.
        A fresh sweep writes nothing yet (a sweep that fails its checks leaves no folder)."""
        self.location = location
        if self.resumed:
            self._check_experiment(location)
            self.ready = True
            for write in self.when_verified:
                write()
            self.when_verified.clear()
            self.write()

    def _check_experiment(self, location: SweepStorage) -> None:
        filesystem, name = _filesystem(location), experiment_name(location)
        found = {relative: _digest(filesystem, f"{location.experiment}/{relative}")
                 for relative in covered_files(filesystem, location.experiment)}
        problems = [] if self.adopt else [
            (relative, problem) for relative, digest in found.items()
            if (problem := _changed(location.uri_of(f"{location.experiment}/{relative}"),
                                    self.files.get(f"{name}/{relative}"), digest))]
        if problems:
            others = [f"{name}/{relative}" for relative, _ in problems[1:]]
            more = f" (also {', '.join(others[:3])}{', ...' if len(others) > 3 else ''})" if others else ""
            problem = f"{problems[0][1]} ({self.out_dir / MANIFEST_FILE}){more}"
            if not self.trust:
                raise _refusal(problem)
            log.warning(TRUSTED_WARNING, problem)
            self.adopt = True
        if self.adopt:
            for relative, digest in found.items():
                record_digest(self.files, f"{name}/{relative}", digest)

    def sign_experiment_file(self, relative: str) -> None:
        """Record a file of the experiment as it is now (e.g. tuner.pkl, which a fresh Tuner just wrote)."""
        assert self.location is not None, "use_storage first"
        path = f"{self.location.experiment}/{relative}"
        record_digest(self.files, f"{experiment_name(self.location)}/{relative}",
                      _digest(_filesystem(self.location), path))
        self.write()

    def sign_staging(self, staging: str) -> None:
        """Record the experiment files Tune just wrote into its driver staging folder `staging` (what it syncs to
        the experiment next) and write the manifest."""
        from pyarrow import fs as pafs

        assert self.location is not None, "use_storage first"
        name = experiment_name(self.location)
        for relative in covered_files(pafs.LocalFileSystem(), staging):
            record_digest(self.files, f"{name}/{relative}", digest_file(Path(staging) / relative))
        self.write()

    def write(self) -> None:
        """The manifest, signed with the current key, in the sweep folder (and next to a remote experiment)."""
        if not self.ready or not self.files:
            return
        write_json(self.out_dir / MANIFEST_FILE, sign_manifest(self.files, current_key(create=True)))
        location = self.location
        if location is not None and location.filesystem is not None:
            try:
                remote.upload_files(self.out_dir, (MANIFEST_FILE,), location.filesystem, location.tune_path)
            except OSError as failure:
                log.warning("could not copy %s to %s (%s); it is in %s", MANIFEST_FILE, location.uri,
                            remote.explain(failure, location.uri, location.endpoint), self.out_dir)

    def close(self) -> None:
        """Sign the sweep folder's own files once more as the sweep ends (normally or not)."""
        if self.ready:
            self.sign_local()
            self.write()

    def unpickling(self) -> ContextManager[None]:
        """Where a resumed folder's legacy pickles may be read (signing.trusted_pickles): once it verified, or was
        trusted explicitly; a fresh sweep reads none."""
        if not (self.resumed and self.ready):
            return contextlib.nullcontext()
        how = "trusted with --trust-folder" if self.adopt else "its signature verified"
        return trusted_pickles(f"the sweep folder {self.out_dir} ({how})")


class CheckpointSigner(RayCallback):
    """Signs each experiment checkpoint: Tune calls get_state right after writing the experiment state and the
    searcher's into its driver staging folder (found through a trial: private_api.tune_driver_staging_path) and
    before syncing them to the experiment; on_experiment_end comes after the last one (synced, waited for: the
    one a resume of a finished sweep writes without running a step). It has no state of its own (get_state
    returns None, so Tune writes no callback file) and never stops the sweep: a failure to sign is a warning."""

    def __init__(self, signer: FolderSigner):
        self.signer = signer
        self.staging: str | None = None
        self.unavailable = False

    def _find_staging(self, trials: Sequence[Any]) -> None:
        if self.staging is None and trials and not self.unavailable:
            try:
                self.staging = tune_driver_staging_path(trials[0])
            except PrivateApiChanged as changed:
                self.unavailable = True
                log.warning("%s", changed)

    def _sign(self) -> None:
        if self.staging is not None:
            try:
                self.signer.sign_staging(self.staging)
            except (OSError, ConfigError) as failure:
                log.warning("the sweep folder could not be signed at this checkpoint (%s: %s); a driver killed now "
                            "leaves a folder that resumes only with --trust-folder", type(failure).__name__, failure)

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        self._find_staging(trials)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._find_staging(trials)

    def get_state(self) -> dict | None:
        self._sign()
        return None

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._find_staging(trials)
        self._sign()


def watch(tuner: Any, signer: FolderSigner, *, fresh: bool) -> None:
    """Sign tuner.pkl of a fresh Tuner (Tune wrote it when the Tuner was made) and add a CheckpointSigner to the
    Tuner's callbacks. It is added to the Tuner's run config after the Tuner was made, never pickled into
    tuner.pkl; Tune has no public way to do so (private_api.tuner_run_config). When that has changed, a WARNING
    says so and the sweep goes on: the folder is then signed at the end only."""
    if fresh:
        signer.sign_experiment_file(TUNER_FILE)
    run_config = tuner_callbacks(tuner, "the sweep folder is signed when the sweep ends, not at every checkpoint")
    if run_config is not None:
        put_callback(run_config, CheckpointSigner(signer))
