"""Signing keys and signed manifests: proof that a folder's files were written by this user's own runs.

What it does: a signing key is 32 random bytes (64 hex digits) kept outside every folder it signs:
`TUNE_DISTILL_SIGNING_KEY` (the key itself, e.g. from a cluster's secret store; several, comma-separated,
the first signing and the others only verifying) or else a key file, `TUNE_DISTILL_SIGNING_KEY_FILE` or
~/.config/tune_distill/signing.key ($XDG_CONFIG_HOME is honoured), one key per line, the first signing and
the ones below it (older keys, after a rotation) only verifying. `signing_keys(create=True)` makes the key
file on first use (mode 0600, its folder 0700) and refuses one that others may read. A key is named by its
`key_id` (a hash of it, never the key). `sign_manifest` turns {relative path: [SHA-256 digests]} into a
manifest document signed with HMAC-SHA256 over a canonical JSON encoding; `verify_manifest` checks one
against the keys held here and returns its files, or raises `UntrustedFolder` (one line: signed with a key
not held here, altered, malformed). `record_digest` keeps the last KEEP_DIGESTS digests of a path (the
versions a run wrote, newest first: a driver killed while a file was being replaced leaves one of them).
`rotate_key` puts a new key first in the key file and keeps the old ones for verification.

The pickle gate: `require_trusted_pickle` refuses, naming what, to read a pickle unless the caller runs
inside `trusted_pickles` (entered only by a resume whose folder was verified, or that the user explicitly
trusted); the legacy pickled searcher states (search/searchers/base.py, sweep/searcher.py) call it.
`hidden_key_env` keeps the key out of the environment of child processes started meanwhile (a local Ray).

What it must not know: sweeps, Ray, which files a folder holds or which of them get unpickled (the callers
choose what to sign), the command line (callers add how to resume a folder anyway).

Example (CPU, instant; prints the key ids, never the keys; `rotate` makes a new key, `retire` drops the old):
    python -m tune_distill.signing ids
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Mapping, Sequence

from tune_distill.config import ConfigError

log = logging.getLogger(__name__)

KEY_ENV = "TUNE_DISTILL_SIGNING_KEY"  # the key(s) themselves, comma- or space-separated: for clusters
KEY_FILE_ENV = "TUNE_DISTILL_SIGNING_KEY_FILE"  # where the key file is (default: default_key_file())
MANIFEST_FORMAT = "tune_distill.signing/1"
KEEP_DIGESTS = 8  # versions of one file a manifest accepts (what a run wrote last, newest first)
_KEY_HEX = re.compile(r"^[0-9a-f]{64}$")
_DIGEST_HEX = re.compile(r"^[0-9a-f]{64}$")
_KEY_FILE_HEADER = ("# tune_distill signing keys (docs/signing.md): the first key signs, those below it only verify.\n"
                    "# Keep this file to yourself (mode 0600); never copy it into a sweep folder or a bucket.\n")


class UntrustedFolder(ConfigError):
    """A folder (or a file in it) that cannot be shown to come from this user's own runs; the message is one line."""


@dataclass(frozen=True)
class SigningKey:
    """One HMAC key; its repr shows the key id only."""

    secret: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        """A name for the key that reveals nothing of it (16 hex digits of a hash)."""
        return hashlib.sha256(b"tune_distill signing key id\n" + self.secret).hexdigest()[:16]


def default_key_file() -> Path:
    """~/.config/tune_distill/signing.key (under $XDG_CONFIG_HOME when it is set)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "tune_distill" / "signing.key"


def key_file() -> Path:
    """The key file in use: TUNE_DISTILL_SIGNING_KEY_FILE, else default_key_file()."""
    named = os.environ.get(KEY_FILE_ENV)
    return Path(named).expanduser() if named else default_key_file()


def key_source() -> str:
    """Where the keys come from, for messages (never the keys)."""
    return f"the environment variable {KEY_ENV}" if os.environ.get(KEY_ENV) else f"the key file {key_file()}"


def parse_keys(text: str, where: str) -> list[SigningKey]:
    """The keys in `text` (64 hex digits each, separated by lines, commas or spaces; '#' starts a comment line).
    A malformed entry is refused naming `where` and its position, never its content (it may be a key)."""
    keys = []
    tokens = [token for line in text.splitlines() if not line.lstrip().startswith("#")
              for token in re.split(r"[\s,]+", line.strip()) if token]
    for position, token in enumerate(tokens, 1):
        if not _KEY_HEX.match(token.lower()):
            raise ConfigError(f"{where}: entry {position} is not a signing key (expected 64 hex digits: 32 random "
                              "bytes; make one with `python -m tune_distill.signing rotate`)")
        keys.append(SigningKey(bytes.fromhex(token)))
    return keys


def _read_key_file(path: Path) -> list[SigningKey]:
    """The keys of a key file that only its owner may read or write (else refused, naming the fix)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path}: the signing key file may be read or written by others (mode {mode:o}); "
                          f"make it yours alone: chmod 600 {path}")
    keys = parse_keys(path.read_text(encoding="utf-8"), str(path))
    if not keys:
        raise ConfigError(f"{path}: holds no signing key (expected 64 hex digits on a line)")
    return keys


def _write_key_file(path: Path, keys: Sequence[SigningKey], *, replace: bool) -> bool:
    """Write `keys` to `path` created with mode 0600 (its folder 0700 when made here); with replace=False an
    existing file is left as it is (another process made it first) and False returned."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = path.with_name(f".{path.name}.{os.getpid()}.tmp") if replace else path
    try:
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if replace:
            raise
        return False
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(_KEY_FILE_HEADER + "".join(f"{key.secret.hex()}\n" for key in keys))
        handle.flush()
        os.fsync(handle.fileno())
    if replace:
        os.replace(target, path)
    return True


def signing_keys(create: bool = False) -> list[SigningKey]:
    """This user's keys, the signing one first: from TUNE_DISTILL_SIGNING_KEY, else the key file (made, with a
    new random key, when `create` and it does not exist yet). [] when there is none and none is to be made."""
    if os.environ.get(KEY_ENV):
        return parse_keys(os.environ[KEY_ENV], KEY_ENV)
    path = key_file()
    if not path.exists():
        if not create:
            return []
        if _write_key_file(path, [SigningKey(secrets.token_bytes(32))], replace=False):
            log.info("made a signing key for your sweep folders: %s (mode 0600; key id %s). Keep it: a sweep folder "
                     "resumes only where its key is (docs/signing.md)", path, _read_key_file(path)[0].key_id)
    return _read_key_file(path)


def current_key(create: bool = True) -> SigningKey:
    """The key that signs (the first of `signing_keys`)."""
    keys = signing_keys(create=create)
    if not keys:
        raise ConfigError(f"no signing key in {key_source()}")
    return keys[0]


def rotate_key() -> SigningKey:
    """A new signing key, first in the key file; the old keys stay below it and still verify (remove them with
    `retire_keys` once the folders they signed have been resumed, which re-signs them). Returns the new key."""
    if os.environ.get(KEY_ENV):
        raise ConfigError(f"{KEY_ENV} is set: rotate the key where it comes from (put a new key first in it, the "
                          "old one after a comma, until the folders it signed have been resumed)")
    new = SigningKey(secrets.token_bytes(32))
    _write_key_file(key_file(), [new, *signing_keys(create=False)], replace=True)
    return new


def retire_keys() -> list[str]:
    """Keep only the signing key in the key file; returns the ids of the keys removed (folders they signed no
    longer verify)."""
    if os.environ.get(KEY_ENV):
        raise ConfigError(f"{KEY_ENV} is set: remove the old keys where it comes from")
    keys = signing_keys(create=False)
    if keys:
        _write_key_file(key_file(), keys[:1], replace=True)
    return [key.key_id for key in keys[1:]]


# --- digests and manifests -------------------------------------------------------------------------------


def digest_stream(handle: BinaryIO, chunk: int = 1 << 20) -> str:
    """The SHA-256 (hex) of everything `handle` still holds, read in chunks."""
    hasher = hashlib.sha256()
    for block in iter(lambda: handle.read(chunk), b""):
        hasher.update(block)
    return hasher.hexdigest()


def digest_file(path: str | Path) -> str:
    """The SHA-256 (hex) of a local file."""
    with open(path, "rb") as handle:
        return digest_stream(handle)


def record_digest(files: dict[str, list[str]], path: str, digest: str) -> None:
    """Accept `digest` as the newest version of `path` (the KEEP_DIGESTS newest are kept)."""
    files[path] = [digest, *[kept for kept in files.get(path, []) if kept != digest]][:KEEP_DIGESTS]


def _canonical(key_id: str, files: Mapping[str, Sequence[str]]) -> bytes:
    body = {"format": MANIFEST_FORMAT, "key_id": key_id, "files": {path: list(files[path]) for path in sorted(files)}}
    return MANIFEST_FORMAT.encode() + b"\n" + json.dumps(body, sort_keys=True, separators=(",", ":"),
                                                          ensure_ascii=True).encode()


def _signature(key: SigningKey, files: Mapping[str, Sequence[str]]) -> str:
    return hmac.new(key.secret, _canonical(key.key_id, files), hashlib.sha256).hexdigest()


def sign_manifest(files: Mapping[str, Sequence[str]], key: SigningKey) -> dict[str, Any]:
    """The manifest document of `files` ({relative path: [digest, ...]}) signed with `key`."""
    return {"format": MANIFEST_FORMAT, "key_id": key.key_id,
            "about": "SHA-256 of the files that are unpickled or steer a resume, signed with a key kept outside "
                     "this folder (docs/signing.md)",
            "files": {path: list(files[path]) for path in sorted(files)}, "signature": _signature(key, files)}


def _manifest_files(document: Any, where: str) -> dict[str, list[str]]:
    """The files of a manifest document, its shape checked (one line naming `where` otherwise)."""
    if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
        raise UntrustedFolder(f"{where}: not a manifest (expected format {MANIFEST_FORMAT!r})")
    files = document.get("files")
    if not isinstance(files, dict) or not isinstance(document.get("key_id"), str) or \
            not isinstance(document.get("signature"), str):
        raise UntrustedFolder(f"{where}: a manifest needs files, key_id and signature")
    for path, digests in files.items():
        if not isinstance(digests, list) or not all(isinstance(d, str) and _DIGEST_HEX.match(d) for d in digests):
            raise UntrustedFolder(f"{where}: files[{path!r}] is not a list of SHA-256 digests")
    return {path: list(digests) for path, digests in files.items()}


def verify_manifest(document: Any, keys: Sequence[SigningKey], where: str) -> tuple[dict[str, list[str]], SigningKey]:
    """(files, the key that signed it) of a manifest signed by one of `keys`; UntrustedFolder naming `where`
    otherwise (no key here, a key not held here, a signature that does not match, a malformed document)."""
    files = _manifest_files(document, where)
    if not keys:
        raise UntrustedFolder(f"{where}: this machine holds no signing key ({key_source()}), so the signature cannot "
                              "be checked")
    key = next((key for key in keys if key.key_id == document["key_id"]), None)
    if key is None:
        raise UntrustedFolder(f"{where}: signed with a key this machine does not hold (key id {document['key_id']}; "
                              f"{key_source()} holds {', '.join(k.key_id for k in keys)})")
    if not hmac.compare_digest(_signature(key, files), document["signature"]):
        raise UntrustedFolder(f"{where}: its signature does not match its contents (altered after it was signed)")
    return files, key


# --- the pickle gate ---------------------------------------------------------------------------------------

_TRUSTED: list[str] = []  # why pickles may be read now (innermost last); process-wide: Tune restores in its thread
_TRUSTED_LOCK = threading.Lock()


@contextlib.contextmanager
def trusted_pickles(reason: str) -> Iterator[None]:
    """Within this block `require_trusted_pickle` lets legacy pickles be read; `reason` says why they may be (a
    verified folder, or the user's explicit trust)."""
    with _TRUSTED_LOCK:
        _TRUSTED.append(reason)
    try:
        yield
    finally:
        with _TRUSTED_LOCK:
            _TRUSTED.remove(reason)


def require_trusted_pickle(what: str) -> None:
    """Refuse (UntrustedFolder naming `what`) to read a pickle outside `trusted_pickles`: reading one runs any code
    it holds."""
    if not _TRUSTED:
        raise UntrustedFolder(f"{what}: a pickle (reading one can run code) is read only while resuming a sweep folder "
                              "whose signature was verified, or one the user trusted explicitly (--trust-folder)")


@contextlib.contextmanager
def hidden_key_env() -> Iterator[None]:
    """TUNE_DISTILL_SIGNING_KEY is out of os.environ within this block (child processes started meanwhile, such
    as a local Ray's, do not inherit it); put back afterwards."""
    held = os.environ.pop(KEY_ENV, None)
    try:
        yield
    finally:
        if held is not None:
            os.environ[KEY_ENV] = held


def main(argv: Sequence[str]) -> int:
    """`python -m tune_distill.signing ids|rotate|retire`: list the key ids, add a new signing key, drop the old."""
    action = argv[0] if argv else "ids"
    try:
        if action == "rotate":
            print(f"new signing key {rotate_key().key_id} in {key_file()}; the older keys below it still verify")
        elif action == "retire":
            removed = retire_keys()
            print(f"removed {', '.join(removed) or 'no key'} from {key_file()}")
        elif action == "ids":
            keys = signing_keys(create=False)
            print(f"{key_source()}: " + (", ".join(key.key_id for key in keys) + " (the first signs)" if keys else
                                         "no key yet (the first sweep makes one)"))
        else:
            print("usage: python -m tune_distill.signing [ids|rotate|retire]", file=sys.stderr)
            return 2
    except (ConfigError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
