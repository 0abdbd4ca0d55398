"""A sweep folder is untrusted input (issue 25, item 1): `--resume` unpickles nothing its owner's key did not sign.

Crafted pickles stand in for an attacker's: unpickling one makes a marker folder (os.mkdir; a shell command would
run the same way). They are put into copies of one tiny signed sweep (2 trials of 2 steps, made once for the
module on its local Ray): the resume refuses with one line naming the file and the marker is never made. The
owner's folder resumes; a folder signed by another key, or by none, is refused; `--trust-folder` resumes a
handed-over folder with a warning (and its legacy pickled searcher state is then read); the key file is made 0600
and never reaches the folder; an old key still verifies after a rotation and the folder is re-signed with the new
one. The module's key lives under its own temp folder (TUNE_DISTILL_SIGNING_KEY_FILE), never in the real home.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

ray = pytest.importorskip("ray")

from sweep_world import ray_cluster_fixture, tiny_sweep, world_fixture  # noqa: E402,F401  (fixtures)

from tune_distill import cli, signing  # noqa: E402
from tune_distill.config import ConfigError  # noqa: E402
from tune_distill.search import restore_searcher  # noqa: E402
from tune_distill.search.searchers.base import PICKLED_STATE_HEADER  # noqa: E402
from tune_distill.signing import (  # noqa: E402
    KEY_ENV,
    KEY_FILE_ENV,
    SigningKey,
    UntrustedFolder,
    parse_keys,
    record_digest,
    sign_manifest,
    verify_manifest,
)
from tune_distill.sweep import driver  # noqa: E402
from tune_distill.sweep.config import sweep_config_from_dict  # noqa: E402
from tune_distill.sweep.driver import run_sweep  # noqa: E402
from tune_distill.sweep.manifest import CheckpointSigner, FolderSigner, open_for_resume  # noqa: E402
from tune_distill.sweep.searcher import read_searcher_checkpoint  # noqa: E402
from tune_distill.sweep.storage import MANIFEST_FILE, relocate_saved, sweep_storage  # noqa: E402


class _Marker:
    """Unpickling this makes the folder `marker`: what a crafted pickle of a sweep folder does, harmlessly."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _contents(folder: Path) -> dict[str, bytes | None]:
    return {str(path.relative_to(folder)): path.read_bytes() if path.is_file() else None
            for path in sorted(folder.rglob("*"))}


def _manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST_FILE).read_text())


def _verify(folder: Path) -> FolderSigner:
    """What `--resume` checks before anything is unpickled, without running the sweep: the manifest, sweep.json,
    space.yaml, then every covered file of the experiment (the manifest is then re-signed with the current key)."""
    signer = open_for_resume(folder)
    saved = relocate_saved(json.loads((folder / "sweep.json").read_text()), folder)
    signer.use_storage(sweep_storage(sweep_config_from_dict(saved["config"], "sweep.json"), folder))
    return signer


# --- keys and manifests (no Ray) -------------------------------------------------------------------------


def test_a_key_file_is_made_0600_in_a_0700_folder_and_a_loose_one_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "config" / "tune_distill" / "signing.key"
    monkeypatch.setenv(KEY_FILE_ENV, str(path))
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert signing.signing_keys() == []  # not made unless asked
    key = signing.current_key(create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert signing.signing_keys() == [key] and len(key.key_id) == 16 and key.secret.hex() not in repr(key)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=rf"^{path}: the signing key file may be read or written by others \(mode "
                                          rf"644\); make it yours alone: chmod 600 {path}$"):
        signing.signing_keys()


def test_a_malformed_key_is_refused_without_showing_it(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "not-a-key-but-a-secret")
    with pytest.raises(ConfigError, match=f"^{KEY_ENV}: entry 1 is not a signing key") as caught:
        signing.signing_keys()
    assert "secret" not in str(caught.value)


def test_keys_from_the_environment_come_first_and_the_older_ones_verify(tmp_path, monkeypatch):
    new, old = SigningKey(os.urandom(32)), SigningKey(os.urandom(32))
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "unused.key"))
    monkeypatch.setenv(KEY_ENV, f"{new.secret.hex()}, {old.secret.hex()}")
    assert signing.signing_keys() == [new, old] and signing.current_key() == new
    files = {"tune/tuner.pkl": ["a" * 64]}
    assert verify_manifest(sign_manifest(files, old), signing.signing_keys(), "m") == (files, old)
    assert not (tmp_path / "unused.key").exists()


def test_a_manifest_verifies_only_with_its_key_and_its_contents():
    key, stranger = SigningKey(os.urandom(32)), SigningKey(os.urandom(32))
    document = sign_manifest({"sweep.json": ["b" * 64]}, key)
    assert key.secret.hex() not in json.dumps(document)
    with pytest.raises(UntrustedFolder, match=f"^m: signed with a key this machine does not hold \\(key id "
                                              f"{key.key_id}; .* holds {stranger.key_id}\\)$"):
        verify_manifest(document, [stranger], "m")
    altered = {**document, "files": {"sweep.json": ["c" * 64]}}
    with pytest.raises(UntrustedFolder, match="^m: its signature does not match its contents"):
        verify_manifest(altered, [key], "m")
    with pytest.raises(UntrustedFolder, match="^m: this machine holds no signing key"):
        verify_manifest(document, [], "m")


def test_a_file_keeps_the_digests_of_its_newest_versions():
    files: dict[str, list[str]] = {}
    for version in range(signing.KEEP_DIGESTS + 3):
        record_digest(files, "tune/experiment_state-x.json", f"{version:064x}")
    record_digest(files, "tune/experiment_state-x.json", f"{signing.KEEP_DIGESTS + 1:064x}")  # written again
    assert files["tune/experiment_state-x.json"][:2] == [f"{signing.KEEP_DIGESTS + 1:064x}",
                                                         f"{signing.KEEP_DIGESTS + 2:064x}"]
    assert len(files["tune/experiment_state-x.json"]) == signing.KEEP_DIGESTS


def test_legacy_pickled_searcher_states_are_read_only_inside_a_trusted_resume(tmp_path):
    marker = tmp_path / "marker"
    outer = tmp_path / "searcher-state-x.pkl"
    outer.write_bytes(pickle.dumps(_Marker(marker)))
    with pytest.raises(UntrustedFolder, match=f"^{outer}: a pickled searcher checkpoint .*--trust-folder"):
        read_searcher_checkpoint(outer)
    with pytest.raises(UntrustedFolder, match="^a pickled searcher state .* is read only while resuming"):
        restore_searcher(PICKLED_STATE_HEADER + pickle.dumps(_Marker(marker)))  # the inner pickle, header first
    assert not marker.exists()


def test_the_key_is_kept_out_of_a_local_rays_environment(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "ab" * 32)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    seen = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **options: seen.append(os.environ.get(KEY_ENV)) or SimpleNamespace())
    assert driver.connect_ray() == (True, None)
    assert seen == [None] and os.environ[KEY_ENV] == "ab" * 32  # hidden while Ray started, then put back


def test_a_changed_staging_touch_is_a_warning_and_the_sweep_goes_on(tmp_path, caplog):
    signer = CheckpointSigner(FolderSigner(tmp_path))
    with caplog.at_level("WARNING", logger="tune_distill"):
        signer.on_step_begin(0, [SimpleNamespace()])
        assert signer.get_state() is None
    assert signer.unavailable and "experiment_driver_staging_path" in caplog.text


# --- a real signed sweep, copied and tampered with ----------------------------------------------------------


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    """The module's signing key location, under its own temp folder."""
    path = tmp_path_factory.mktemp("home") / "config" / "tune_distill" / "signing.key"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(KEY_ENV, raising=False)
        patch.setenv(KEY_FILE_ENV, str(path))
        yield path


@pytest.fixture(scope="module")
def signed_sweep(world, ray_cluster, key_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("signed") / "sweep"
    records = run_sweep(tiny_sweep(world, num_samples=2, max_concurrent=1), out)
    assert [record["status"] for record in records] == ["complete", "complete"]
    return out


@pytest.fixture
def copy(signed_sweep, tmp_path):
    """The signed sweep copied elsewhere (as a user copies their own folder, or is handed one)."""
    target = tmp_path / "copy"
    shutil.copytree(signed_sweep, target)
    return target


def test_the_key_file_is_0600_and_never_written_into_the_folder(signed_sweep, key_file):
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    key = parse_keys(key_file.read_text(), str(key_file))[0]
    for name, content in _contents(signed_sweep).items():
        for secret in (key.secret, key.secret.hex().encode(), key.secret.hex().upper().encode()):
            assert content is None or secret not in content, name
    manifest = _manifest(signed_sweep)
    assert manifest["key_id"] == key.key_id
    signed = set(manifest["files"])
    assert {"sweep.json", "space.yaml", "tune/tuner.pkl"} <= signed
    for pattern in ("tune/experiment_state-*.json", "tune/searcher-state-*.pkl", "tune/search_gen_state-*.json"):
        names = {str(path.relative_to(signed_sweep)) for path in signed_sweep.glob(pattern)}
        assert names and names <= signed, pattern
    assert not [name for name in signed if name.endswith("params.pkl")]  # nothing unpickles those
    _verify(shutil.copytree(signed_sweep, signed_sweep.parent / "verified"))  # every file as it was signed


def test_the_owners_folder_resumes_and_stays_signed(copy, caplog):
    with caplog.at_level("INFO", logger="tune_distill"):
        records = run_sweep(None, copy, resume=True)
    assert [record["status"] for record in records] == ["complete", "complete"]
    assert "--trust-folder" not in caplog.text
    _verify(copy)  # the resumed run's own files (a new experiment state, ...) are signed too


def test_a_crafted_tuner_pkl_ends_with_one_line_naming_it_and_runs_nothing(copy, tmp_path, capsys):
    marker = tmp_path / "marker"
    (copy / "tune" / "tuner.pkl").write_bytes(pickle.dumps(_Marker(marker)))
    before = _contents(copy)
    capsys.readouterr()
    assert cli.main(["sweep", "--resume", "--out", str(copy)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"error: --resume: {copy / 'tune' / 'tuner.pkl'} changed since this sweep last "
                                f"signed its folder ({copy / MANIFEST_FILE}); nothing in the folder was unpickled")
    assert "--trust-folder" in errors[0] and " also " not in errors[0]
    assert not marker.exists() and _contents(copy) == before


@pytest.mark.parametrize("layer", ["outer pickle", "inner pickle", "added file"])
def test_a_crafted_searcher_state_is_refused_naming_it_and_runs_nothing(copy, tmp_path, layer):
    marker = tmp_path / "marker"
    path = next((copy / "tune").glob("searcher-state-*.pkl"))
    if layer == "outer pickle":  # read by pickle.load in the legacy path
        path.write_bytes(pickle.dumps(_Marker(marker)))
    elif layer == "inner pickle":  # JSON outside, the wrapped searcher's state a format-1 pickle (text protocol)
        document = json.loads(path.read_text())
        document["inner"] = (PICKLED_STATE_HEADER + pickle.dumps(_Marker(marker), protocol=0)).decode()
        path.write_text(json.dumps(document))
    else:  # a newer name, which Tune would pick, and a callback state Tune would load
        path.with_name("searcher-state-9999-12-31_23-59-59.pkl").write_bytes(pickle.dumps(_Marker(marker)))
        path = copy / "tune" / "callback-states-x.pkl"
        path.write_bytes(pickle.dumps(_Marker(marker)))
    how = "was added" if layer == "added file" else "changed"
    also = " (also tune/searcher-state-9999-12-31_23-59-59.pkl)" if layer == "added file" else ""
    expected = f"--resume: {path} {how} since this sweep last signed its folder ({copy / MANIFEST_FILE}){also}; "
    with pytest.raises(UntrustedFolder, match="^" + re.escape(expected)):
        run_sweep(None, copy, resume=True)
    assert not marker.exists()


def test_a_folder_signed_by_another_key_or_by_none_is_refused(copy):
    stranger = SigningKey(os.urandom(32))
    manifest = _manifest(copy)
    (copy / MANIFEST_FILE).write_text(json.dumps(sign_manifest(manifest["files"], stranger)))
    with pytest.raises(UntrustedFolder, match=rf"^--resume: {copy / MANIFEST_FILE}: signed with a key this machine "
                                              rf"does not hold \(key id {stranger.key_id};.*--trust-folder"):
        run_sweep(None, copy, resume=True)
    (copy / MANIFEST_FILE).unlink()
    with pytest.raises(UntrustedFolder, match=rf"^--resume: {copy} has no {MANIFEST_FILE}: no sweep of yours signed "
                                              rf"it .*; nothing in the folder was unpickled.*--trust-folder"):
        run_sweep(None, copy, resume=True)


def test_trust_folder_resumes_a_handed_over_folder_with_a_warning(copy, caplog):
    # handed over: signed by someone else, its searcher state a (benign) pickle of an earlier version, under the
    # newest name (Tune restores the newest state of its staging folder, which the module's one Ray session shares
    # between the resumes of copies of one sweep)
    saved = next((copy / "tune").glob("searcher-state-*.pkl"))
    path = saved.rename(saved.with_name("searcher-state-9999-12-31_23-59-59.pkl"))
    path.write_bytes(pickle.dumps(read_searcher_checkpoint(path)))
    stranger = SigningKey(os.urandom(32))
    (copy / MANIFEST_FILE).write_text(json.dumps(sign_manifest(_manifest(copy)["files"], stranger)))
    with pytest.raises(UntrustedFolder):
        run_sweep(None, copy, resume=True)
    with caplog.at_level("INFO", logger="tune_distill"):
        records = run_sweep(None, copy, resume=True, trust_folder=True)
    assert [record["status"] for record in records] == ["complete", "complete"]
    assert "--trust-folder: --resume: " not in caplog.text  # the warning names the problem once, then the risk
    assert f"--trust-folder: {copy / MANIFEST_FILE}: signed with a key this machine does not hold" in caplog.text
    assert "any code an author put in them runs now, with your account and credentials" in caplog.text
    assert "a pickled searcher checkpoint written by an earlier tune_distill" in caplog.text  # read, as trusted
    assert _manifest(copy)["key_id"] != stranger.key_id
    _verify(copy)  # adopted: signed with this user's key from now on


def test_an_old_key_still_verifies_after_a_rotation_and_the_folder_is_re_signed(copy, key_file, tmp_path,
                                                                                monkeypatch, caplog):
    own = tmp_path / "keys" / "signing.key"
    own.parent.mkdir(mode=0o700)
    shutil.copy2(key_file, own)
    monkeypatch.setenv(KEY_FILE_ENV, str(own))
    old = signing.current_key(create=False)
    new = signing.rotate_key()
    assert signing.signing_keys() == [new, old] and stat.S_IMODE(own.stat().st_mode) == 0o600
    with caplog.at_level("INFO", logger="tune_distill"):
        _verify(copy)
    assert f"signed with an older key ({old.key_id}); the folder is re-signed with the current one ({new.key_id})" \
        in caplog.text
    assert _manifest(copy)["key_id"] == new.key_id
    assert signing.retire_keys() == [old.key_id] and signing.signing_keys() == [new]
    _verify(copy)  # re-signed: the retired key is no longer needed
