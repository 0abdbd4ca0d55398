"""Atomic file writes (the one helper every module uses to replace a file so readers never see half of it), and
bounded reads of JSON and YAML that may come from elsewhere.

What it does: `write_atomically(path, data)` writes bytes or text to a temporary file in the target's
folder, flushes it to disk (fsync), then renames it over the target (`os.replace`, atomic on POSIX
and Windows within one file system), and removes the temporary file if anything fails.
`atomic_path(path)` does the same for writers that need a path of their own (Arrow, numpy).
`write_json` is the JSON form used for records, summaries and scheduler states; `read_json_object` reads
one back, refusing a file that is not a JSON object with an error that names it. `check_out_folder` refuses
an output folder that cannot be made (it or a folder above it is a file) before any work.
`check_not_a_run_folder` refuses an output folder that is, or is inside, another run's folder (a run folder, a
sweep's trial folder or Tune experiment, or a sweep folder itself: told apart by the files that mark them,
RUN_FOLDER_FILES and the like), so that no command overwrites a run's records; `output_folder` is the one way a
command (evaluate, export, confirm) makes its --out: both checks, then, when the command fails, what it added is
removed again (no empty or half-written output folder is left).

Reading files that may come from elsewhere (a copied sweep folder, a downloaded data set) with bounded work,
every failure one line of the caller's error type naming the file: `parse_json` (bad JSON, or nesting too deep
for Python's parser), `read_text_limited` (a UTF-8 file refused by its size before it is read) and
`parse_yaml` (safe YAML whose aliases may not expand it beyond YAML_MAX_NODES values nor loop; config.read_yaml
reads every YAML file of the project through it, at most YAML_MAX_BYTES).

Decided once: always fsync. The files written this way are records a resumed sweep trusts (sweep.json,
trials.jsonl, scheduler states, cached features); a rename that reaches the disk before its data
would leave an empty file after a power loss. They are small and written rarely, so the cost is noise.

What it must not know: what the files mean (beyond the names that mark a run's folders).

Example (CPU, instant):
    python -c "from tune_distill.files import write_json; write_json('/tmp/x.json', {'a': 1})"
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import yaml

# Every YAML file the project reads is a run config, a sweep config or a search space, written by people: the
# biggest shipped is 7.5 KB (configs/sweep_cpu.yaml). 256 KiB is over 30 times that, and still parses in seconds
# (PyYAML's pure-Python parser takes about 2 s per 100 KB on a busy CPU, so a bigger limit would no longer bound
# the time). Aliases may expand a document to no more values than a document of that size could write out.
YAML_MAX_BYTES = 256 * 1024
YAML_MAX_NODES = YAML_MAX_BYTES


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


def parse_json(text: str | bytes, where: str, error: type[Exception] = ValueError, what: str = "") -> Any:
    """`json.loads(text)`; bad JSON, or JSON nested deeper than Python's parser can go (its RecursionError), is one
    line of `error` naming `where` (a file, or 'file:line' of a JSON-lines file) and `what` the text is."""
    subject = f"{what} is " if what else ""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as problem:
        raise error(f"{where}: {subject}not valid JSON ({problem})") from None
    except RecursionError:
        raise error(f"{where}: {subject}JSON nested too deeply to read (arrays or objects inside each other about "
                    f"{sys.getrecursionlimit()} levels or more)") from None


def read_json_object(path: str | Path, what: str = "file", error: type[Exception] = ValueError) -> dict[str, Any]:
    """A JSON file that must hold an object (what this package writes with `write_json`), or `error` naming it."""
    try:
        text = Path(path).read_bytes()
    except OSError as problem:
        raise error(f"{path}: cannot read {what} ({problem.strerror or problem})") from None
    value = parse_json(text, str(path), error, what)
    if not isinstance(value, dict):
        raise error(f"{path}: {what} should be a JSON object, got {type(value).__name__}")
    return value


def read_text_limited(path: str | Path, limit: int, where: str, error: type[Exception] = ValueError,
                      advice: str = "") -> str:
    """A UTF-8 text file of at most `limit` bytes; a bigger one is refused by its size before it is read (at most
    `limit` + 1 bytes are ever read, for files whose size the file system does not know), naming `where`."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            data = handle.read(limit + 1) if size <= limit else b""
    except OSError as problem:
        raise error(f"{where}: cannot read it ({problem.strerror or problem})") from None
    if size > limit or len(data) > limit:
        raise error(f"{where}: {max(size, len(data)):,} bytes, more than the {limit:,} allowed{advice}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as problem:
        raise error(f"{where}: not UTF-8 text (byte {problem.start}: {problem.reason}); save it as UTF-8") from None


def parse_yaml(text: str, where: str, error: type[Exception] = ValueError, max_nodes: int = YAML_MAX_NODES) -> Any:
    """`yaml.safe_load(text)` with its work bounded: the node graph is composed first and refused, naming `where`,
    when its aliases would expand it beyond `max_nodes` nodes or refer to a node they are inside of; bad YAML
    and nesting deeper than Python's recursion limit are one line of `error` too."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node, max_nodes, where, error)
        return loader.construct_document(node)
    except yaml.YAMLError as problem:
        raise error(f"{where}: not valid YAML ({_yaml_problem(problem)})") from None
    except RecursionError:
        raise error(f"{where}: YAML nested too deeply to read (collections inside each other about "
                    f"{sys.getrecursionlimit() // 3} levels or more)") from None
    finally:
        loader.dispose()


def _yaml_problem(problem: yaml.YAMLError) -> str:
    """PyYAML's message on one line: what it was doing, what it found and where (its quoted snippet left out)."""
    mark = getattr(problem, "problem_mark", None)
    if isinstance(problem, yaml.MarkedYAMLError) and problem.problem and mark is not None:
        found = f"{problem.problem} at line {mark.line + 1}, column {mark.column + 1}"
        return f"{problem.context}: {found}" if problem.context else found
    return " ".join(str(problem).split())


def _check_expanded_size(root: yaml.Node, max_nodes: int, where: str, error: type[Exception]) -> None:
    """Count the nodes of `root` as if every alias were copied out (each distinct node visited once, its expanded
    size memoised, without recursion), refusing as soon as the count passes `max_nodes` or an alias loops."""
    sizes: dict[int, int] = {}
    entered: set[int] = set()  # the nodes whose children are being counted: the path from the root
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_counted = stack.pop()
        children = [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else \
            node.value if isinstance(node, yaml.SequenceNode) else []
        if children_counted:
            entered.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] > max_nodes:
                raise error(f"{where}: its YAML aliases (*name) expand it to more than {max_nodes:,} values; write "
                            "the values out, or use fewer aliases")
        elif id(node) in entered:
            raise error(f"{where}: a YAML alias (*name) refers to a collection it is inside of (a loop)")
        elif id(node) not in sizes:
            entered.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)


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


# Folders no command but the one that made them may write into (`check_not_a_run_folder`): a run folder (files
# run.write_run_header writes first, and one of what training adds: a teacher's folder, an export's or an
# evaluation's has not both), a Tune trial folder, a Tune experiment, and a sweep folder itself (a new folder inside
# a sweep folder, such as its confirm/, is fine).
RUN_FOLDER_FILES = ("config.yaml", "environment.json")
RUN_FOLDER_TRAINED = ("history.jsonl", "metrics.json", "checkpoint", "model")


def _kept_folder(folder: Path, itself: bool) -> str | None:
    """What `folder` is, when it is one that only its own run may write into (else None)."""
    if not folder.is_dir():
        return None
    if all((folder / name).is_file() for name in RUN_FOLDER_FILES) and \
            any((folder / name).exists() for name in RUN_FOLDER_TRAINED):
        return "a run folder"
    if (folder / "params.json").is_file() and (folder / "result.json").is_file():
        return "a Tune trial folder"
    if (folder / "tuner.pkl").is_file() or next(folder.glob("experiment_state-*.json"), None) is not None:
        return "a Tune experiment"
    if itself and ((folder / "sweep.json").is_file() or (folder / "trials.jsonl").is_file()):
        return "a sweep folder"
    return None


def check_not_a_run_folder(path: str | Path, what: str = "--out", error: type[Exception] = ValueError) -> Path:
    """`path`, refused naming `what` when it is, or is inside, a folder whose files are another run's records: a run
    folder, a sweep's trial folder or Tune experiment (or it is a sweep folder itself). Symbolic links and '..' are
    followed first."""
    path = Path(path)
    target = path.expanduser().resolve()
    for folder in (target, *target.parents):
        kind = _kept_folder(folder, itself=folder == target)
        if kind is not None:
            where = "is" if folder == target else "is inside"
            instead = f"e.g. {folder / 'evaluations'}" if kind == "a sweep folder" else "outside it"
            raise error(f"{what} {path}: {where} {kind} ({folder}), whose files are its own records; write to a new "
                        f"folder, {instead}")
    return path


@contextlib.contextmanager
def output_folder(path: str | Path, what: str = "--out", error: type[Exception] = ValueError) -> Iterator[Path]:
    """A command's output folder: refused inside a run's folders (check_not_a_run_folder) or where a file is in the
    way (check_out_folder), then made. When the command fails (Ctrl-C included) what it added is removed: the
    folder and the folders above it that it made, else the entries it added to a folder that was there (files it
    replaced stay replaced, each whole: write them with write_atomically)."""
    path = check_out_folder(check_not_a_run_folder(path, what, error), what, error)
    made = next((folder for folder in reversed((path, *path.parents)) if not folder.exists()), None)
    before = set(os.listdir(path)) if made is None else set()
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        _remove_added(path, made, before)
        raise


def _remove_added(path: Path, made: Path | None, before: set[str]) -> None:
    """Undo output_folder's folder: remove `made` (the topmost folder it made), else the entries not in `before`."""
    import shutil

    if made is not None:
        shutil.rmtree(made, ignore_errors=True)
        return
    for name in set(os.listdir(path)) - before:
        entry = path / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
