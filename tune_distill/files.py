"""Atomic file writes: the one helper every module uses to replace a file so readers never see half of it.

What it does: `write_atomically(path, data)` writes bytes or text to a temporary file in the target's
folder, flushes it to disk (fsync), then renames it over the target (`os.replace`, atomic on POSIX
and Windows within one file system), and removes the temporary file if anything fails.
`atomic_path(path)` does the same for writers that need a path of their own (Arrow, numpy).
`write_json` is the JSON form used for records, summaries and scheduler states; `read_json_object` reads
one back, refusing a file that is not a JSON object with an error that names it. `check_out_folder` refuses
an output folder that cannot be made (it or a folder above it is a file) before any work.

Decided once: always fsync. The files written this way are records a resumed sweep trusts (sweep.json,
trials.jsonl, scheduler states, cached features); a rename that reaches the disk before its data
would leave an empty file after a power loss. They are small and written rarely, so the cost is noise.

What it must not know: what the files mean.

Example (CPU, instant):
    python -c "from tune_distill.files import write_json; write_json('/tmp/x.json', {'a': 1})"
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on a clean exit it is fsynced and renamed onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(temporary)
    os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; give the mode a plain open() would
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path: str | Path, data: bytes | str) -> Path:
    """Replace `path` with `data` (text is written as UTF-8) so that readers see the old or the new file."""
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    with atomic_path(path) as temporary:
        temporary.write_bytes(payload)
    return Path(path)


def read_json_object(path: str | Path, what: str = "file", error: type[Exception] = ValueError) -> dict[str, Any]:
    """A JSON file that must hold an object (what this package writes with `write_json`), or `error` naming it."""
    try:
        value = json.loads(Path(path).read_text())
    except json.JSONDecodeError as problem:
        raise error(f"{path}: {what} is not valid JSON ({problem})") from None
    if not isinstance(value, dict):
        raise error(f"{path}: {what} should be a JSON object, got {type(value).__name__}")
    return value


def write_json(path: str | Path, payload: Any, *, indent: int | None = 1) -> Path:
    """`write_atomically` of `payload` as JSON (values JSON cannot hold are written with `str`)."""
    return write_atomically(path, json.dumps(payload, indent=indent, default=str) + "\n")


def check_out_folder(path: str | Path, what: str = "--out", error: type[Exception] = ValueError) -> Path:
    """`path` if a folder can be made there; refused naming `what` when it, or the nearest existing folder above
    it, is a file (checked before any work, so that nothing is half-written)."""
    path = Path(path)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise error(f"{what} {path}: {folder} is a file, not a folder")
            break
    return path
