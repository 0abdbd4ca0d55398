"""Trial records: the trials.jsonl format, its one writer and its one reader.

What it does: names the file (`TRIALS_FILE`) and the statuses a record can have (`STATUSES`:
complete, stopped early, failed, unfinished; `trial_status` says which from a finished trial's last
result); `write_trials` writes records atomically, one JSON object per line; `read_trials` reads
them back (the last record per trial wins) and refuses a line that is not a record;
`resolve_run_dir` finds where a record's run folder is now (the sweep folder may have moved), looking
only inside the folder being read (`run_roots`). A record is a plain dict: trial_id, number, kind, baseline,
status, params, overrides, metrics, error, attempts, duration, checkpoint, run_dir, node_id, device, seed,
started_at, finished_at, steps_saved (sweep/experiment.py builds them from Tune's trials). A trial that pruned its
trained student into a family (prune/family.py) carries its members in its final metrics (`family`, JSON);
`family_records` turns each member into a record of its own: kind `family`, `parent` the trial's id, trial id
`<parent>-keep70`, its parameters the parent's plus `prune.keep`, its run folder `<parent run>/family/keep70`.

A sweep folder read by `report`, `confirm` or `export` may come from elsewhere: it is data, checked here
before use. `read_trials` checks the fields readers use (`check_record`), reads a metric that is not a finite
number (NaN, Infinity) as missing with one WARNING, and drops a torn last line (no newline, not JSON: the
writer was killed or the disk filled) with a WARNING; any other bad line is one ValueError naming
`file:line` and the field. `read_sweep_settings` does the same for what readers take from the folder's
`sweep.json` (objectives, constraints, the config's name and storage settings; `check_objectives`,
`check_constraints`); the sweep (sweep/driver.py) writes that file.

Why a helper module of its own, below the training code: the sweep writes the records while the
study (study.py), the report, confirm and export read them; none of those readers may depend on the
sweep (Ray) or on each other to read a file, so the format (and what readers take from sweep.json) lives
here and imports only files.py.

What it must not know: Ray, how trials ran or were chosen, the study, the report's tables.

Example (CPU, instant; any sweep folder):
    python -c "from tune_distill.records import read_trials; print(read_trials('sweeps/smoke')[0]['status'])"
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from tune_distill.files import parse_json, read_json_object, write_atomically

log = logging.getLogger(__name__)

TRIALS_FILE = "trials.jsonl"
SWEEP_FILE = "sweep.json"  # the sweep's settings and summary (sweep/driver.py writes it; read_sweep_settings)
COMPLETE, STOPPED, FAILED, UNFINISHED = "complete", "stopped", "failed", "unfinished"
STATUSES = (COMPLETE, STOPPED, FAILED, UNFINISHED)  # a record's `status`
DIRECTIONS = ("max", "min")  # an objective's `direction`
CONSTRAINT_OPS = (">=", "<=")  # a constraint's `op`
# The fields of a record its readers use, with the JSON types each may have (null is always allowed but for
# trial_id): a record breaking them is refused naming the line and field.
RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "trial_id": (str, int), "number": (int,), "status": (str,), "baseline": (bool,), "params": (dict,),
    "overrides": (dict,), "metrics": (dict,), "run_dir": (str,), "checkpoint": (str,), "parent": (str,),
}
FAMILY_KIND = "family"  # a member of a trial's post-training pruning family (its record's `kind`)
FAMILY_METRIC = "family"  # the final metric holding a trial's members (JSON text: [{name, keep, metrics}])
FAMILY_FOLDER = "family"  # the members' run folders: <parent run>/family/<name>


def trial_status(last_result: Mapping[str, Any], errored: bool) -> str:
    """How a finished trial ended: failed (it raised), complete (its last result is the run's final one) or
    stopped (early, by the scheduler)."""
    if errored:
        return FAILED
    return COMPLETE if last_result.get("final") else STOPPED


def write_trials(out_dir: str | Path, records: Sequence[Mapping[str, Any]]) -> Path:
    """Replace `out_dir`/trials.jsonl (atomically) with `records`, one JSON object per line; return its path."""
    path = Path(out_dir) / TRIALS_FILE
    write_atomically(path, "".join(json.dumps(record, default=str) + "\n" for record in records))
    return path


def family_records(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`records` with every complete trial's pruning family (its `family` metric) as records of their own, each
    after its parent; the parent keeps its metrics without `family`. Records without one pass unchanged, so
    records already expanded (a trials.jsonl read back) are not expanded twice."""
    expanded: list[dict[str, Any]] = []
    for record in records:
        metrics = dict(record.get("metrics") or {})
        text = metrics.pop(FAMILY_METRIC, None)
        if text is None:
            expanded.append(dict(record))
            continue
        expanded.append({**record, "metrics": metrics})
        if record.get("status") != COMPLETE:
            continue
        where = f"trial {record.get('trial_id')}: metrics.{FAMILY_METRIC}"
        members = parse_json(text, where, ValueError) if isinstance(text, str) else text
        if not isinstance(members, list) or not all(isinstance(m, dict) and isinstance(m.get("metrics"), dict)
                                                    and isinstance(m.get("name"), str) for m in members):
            raise ValueError(f"{where}: expected a list of {{name, keep, metrics}} objects")
        expanded += [_member_record(record, member) for member in members]
    return expanded


def _member_record(parent: Mapping[str, Any], member: Mapping[str, Any]) -> dict[str, Any]:
    """One family member as a trial record (see family_records)."""
    params = {**((parent.get("overrides") or {}) if parent.get("baseline") else {}), **(parent.get("params") or {})}
    run_dir = parent.get("run_dir")
    metrics = {key: value for key, value in member["metrics"].items() if key != "prune_identity"}
    return {
        **{key: parent.get(key) for key in ("number", "node_id", "device", "seed", "finished_at")},
        "trial_id": f"{parent['trial_id']}-{member['name']}", "kind": FAMILY_KIND, "baseline": False,
        "status": COMPLETE, "params": {**params, "prune.keep": member.get("keep")},
        "overrides": {**(parent.get("overrides") or {}), "prune.keep": [member.get("keep")]},
        "metrics": metrics, "error": None, "attempts": 1, "duration": metrics.get("wall_seconds"),
        "checkpoint": None, "run_dir": str(Path(run_dir) / FAMILY_FOLDER / member["name"]) if run_dir else None,
        "started_at": None, "steps_saved": None, "parent": str(parent["trial_id"]),
    }


def read_trials(path: str | Path) -> list[dict[str, Any]]:
    """Trial records from a sweep folder's trials.jsonl (or the file itself); the last record per trial wins.

    Each record is checked (`check_record`); metric values that are not finite numbers are read as missing
    (one WARNING says which); a torn last line (no newline at its end, and not JSON) is dropped with a WARNING.
    """
    path = Path(path)
    if path.is_dir():
        path = path / TRIALS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trial records (expected a sweep folder with trials.jsonl)")
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    records: dict[str, dict[str, Any]] = {}
    not_finite: list[str] = []
    for line_number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line_number == len(lines) and torn_line(line):
            log.warning("%s:%d: dropped a torn last line (cut while it was written: the writer was killed or the "
                        "disk filled)", path, line_number)
            continue
        record = check_record(parse_json(line, f"{path}:{line_number}", ValueError), f"{path}:{line_number}")
        not_finite += [f"line {line_number} trial {record['trial_id']} {name}"
                       for name in finite_metrics(record)]
        records[str(record["trial_id"])] = record
    if not_finite:
        log.warning("%s: %d metric value(s) are not finite numbers (NaN or infinite) and are read as missing: %s",
                    path, len(not_finite), "; ".join(not_finite[:5]) + (" ..." if len(not_finite) > 5 else ""))
    return sorted(records.values(), key=lambda r: (r.get("number") or 0, str(r["trial_id"])))


def torn_line(line: str) -> bool:
    """Whether the last piece of a JSON-lines file (the text after its last newline) is a line cut short: it is
    not JSON. (One that parses was written whole, only without its newline.)"""
    try:
        json.loads(line)
    except (ValueError, RecursionError):
        return True
    return False


def _shown(value: Any) -> str:
    """A value for an error message: its JSON type and (shortened) text."""
    kind = {str: "string", bool: "boolean", int: "number", float: "number", list: "list", dict: "object",
            type(None): "null"}.get(type(value), type(value).__name__)
    text = json.dumps(value, default=str) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return f"{kind} {text[:60]}{'...' if len(text) > 60 else ''}"


def check_record(record: Any, where: str) -> dict[str, Any]:
    """`record` if it is a trial record readers can use (RECORD_FIELDS' types, a known status), else one
    ValueError naming `where` (file:line) and the field."""
    if not isinstance(record, dict) or record.get("trial_id") is None:
        raise ValueError(f"{where}: record has no trial_id (expected a JSON object per line)")
    for field, kinds in RECORD_FIELDS.items():
        value = record.get(field)
        if value is None:
            continue
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join({str: "a string", int: "an integer", bool: "true or false", dict: "an object"}[kind]
                                for kind in kinds)
            raise ValueError(f"{where}: {field}: expected {names}, got {_shown(value)}")
    if record.get("status") is not None and record["status"] not in STATUSES:
        raise ValueError(f"{where}: status: expected one of {', '.join(STATUSES)}, got {_shown(record['status'])}")
    return record


def finite_metrics(record: dict[str, Any]) -> list[str]:
    """Set the record's metric values that are numbers but not finite (NaN, Infinity) to None; return their names."""
    metrics = record.get("metrics") or {}
    dropped = [name for name, value in metrics.items() if isinstance(value, float) and not math.isfinite(value)]
    for name in dropped:
        metrics[name] = None
    return dropped


def _named_items(value: Any, where: str, section: str, shape: str, non_empty: bool = False) -> list[dict[str, Any]]:
    """`value` as a list (`non_empty`: with at least one item) of objects `shape` (e.g. '{name, op, bound}'), each
    with a non-empty `name`; else one ValueError naming `where` and the field (section[index].name). What the other
    fields hold is the caller's to check."""
    if not isinstance(value, list) or (non_empty and not value):
        kind = "a non-empty list" if non_empty else "a list"
        raise ValueError(f"{where}: {section}: expected {kind} of {shape} objects, got {_shown(value)}")
    for index, item in enumerate(value):
        field = f"{section}[{index}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: {field}: expected a {shape} object, got {_shown(item)}")
        if not isinstance(item.get("name"), str) or not item["name"]:
            raise ValueError(f"{where}: {field}.name: expected a metric name, got {_shown(item.get('name'))}")
    return [dict(item) for item in value]


def check_objectives(value: Any, where: str) -> list[dict[str, Any]]:
    """`value` as objectives: a non-empty list of {name, direction ('max' or 'min')}; else one ValueError
    naming `where` and the field."""
    items = _named_items(value, where, "objectives", "{name, direction}", non_empty=True)
    for index, item in enumerate(items):
        if item.get("direction") not in DIRECTIONS:
            raise ValueError(f"{where}: objectives[{index}].direction: expected 'max' or 'min', got "
                             f"{_shown(item.get('direction'))}")
    return items


def check_constraints(value: Any, where: str) -> list[dict[str, Any]]:
    """`value` as constraints: a list of {name, op ('>=' or '<='), bound (a finite number)}; else one ValueError
    naming `where` and the field."""
    items = _named_items(value, where, "constraints", "{name, op, bound}")
    for index, item in enumerate(items):
        field = f"constraints[{index}]"
        if item.get("op") not in CONSTRAINT_OPS:
            raise ValueError(f"{where}: {field}.op: expected '>=' or '<=', got {_shown(item.get('op'))}")
        bound = item.get("bound")
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
            raise ValueError(f"{where}: {field}.bound: expected a finite number, got {_shown(bound)}")
    return items


def read_sweep_settings(sweep: str | Path, error: type[Exception] = ValueError) -> dict[str, Any]:
    """A sweep folder's sweep.json as its readers use it ({} when there is none), checked: `objectives` and
    `constraints` (null or as check_objectives / check_constraints say), `config` an object whose `name`,
    `storage_path` and `storage_endpoint` are strings, `experiment_path` and `out_dir` strings. A file that
    breaks this is one line of `error` naming the file and the field."""
    path = Path(sweep) / SWEEP_FILE
    if not path.is_file():
        return {}
    settings = read_json_object(path, "the sweep's record", error)
    try:
        if settings.get("objectives") is not None:
            settings["objectives"] = check_objectives(settings["objectives"], str(path))
        if settings.get("constraints") is not None:
            settings["constraints"] = check_constraints(settings["constraints"], str(path))
        config = settings.get("config")
        if config is not None and not isinstance(config, dict):
            raise ValueError(f"{path}: config: expected an object, got {_shown(config)}")
        fields = [(f"config.{key}", (config or {}).get(key)) for key in ("name", "storage_path", "storage_endpoint")]
        for field, value in [*fields, ("experiment_path", settings.get("experiment_path")),
                             ("out_dir", settings.get("out_dir"))]:
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{path}: {field}: expected a string, got {_shown(value)}")
    except ValueError as problem:
        raise error(str(problem)) from None
    return settings


def run_roots(sweep_dir: str | Path, settings: Mapping[str, Any] | None = None) -> tuple[Path, ...]:
    """The folders a sweep folder's run folders may be read from: the folder itself, and the Tune experiment its
    sweep.json names (`settings`, read_sweep_settings) when that is a local folder outside the folder the sweep
    started in (a local storage_path elsewhere: copies of the folder share it)."""
    roots = [Path(sweep_dir).resolve()]
    experiment, started_in = (settings or {}).get("experiment_path"), (settings or {}).get("out_dir")
    if experiment and started_in and "://" not in experiment and not _inside(Path(experiment), Path(started_in)):
        roots.append(Path(experiment).resolve())
    return tuple(roots)


def _inside(path: Path, root: Path) -> bool:
    """Whether `path` (symbolic links followed) is `root` or inside it."""
    return path.resolve().is_relative_to(root.resolve())


_OUTSIDE_NOTED: set[str] = set()  # the sweep folders whose records name run folders outside them (noted once)


def resolve_run_dir(sweep_dir: Path, trial_id: str, run_dir: Any = None, checkpoint: Any = None,
                    roots: Sequence[Path] | None = None) -> Path | None:
    """A trial's run folder inside the sweep folder being read (or another of `roots`, default: the folder
    itself; see run_roots): the recorded run_dir, else `run/` beside its recorded Tune checkpoint, else
    `<sweep>/*/trial_*_<trial_id>/run` (a sweep folder moved or copied elsewhere). A recorded path outside
    `roots` is never read: a copy of a sweep reads its own run folders, not the original's."""
    sweep_dir = Path(sweep_dir)
    roots = tuple(roots) if roots else (sweep_dir,)
    recorded: list[Path] = []
    if isinstance(run_dir, str) and run_dir:
        recorded.append(Path(run_dir))
    if isinstance(checkpoint, str) and checkpoint and "://" not in checkpoint:
        recorded.append(Path(checkpoint).parent / "run")
    candidates = []
    for path in (path if path.is_absolute() else sweep_dir / path for path in recorded):
        if any(_inside(path, root) for root in roots):
            candidates.append(path)
        elif str(sweep_dir) not in _OUTSIDE_NOTED:
            _OUTSIDE_NOTED.add(str(sweep_dir))
            log.info("%s: trial %s's recorded run folder %s is outside the sweep folder; its run folders are looked "
                     "for inside it", sweep_dir / TRIALS_FILE, trial_id, path)
    parent, _, member = str(trial_id).rpartition("-")
    inner = f"trial_*_{parent}/run/{FAMILY_FOLDER}/{member}" if parent and member else None  # a family member's
    for pattern in filter(None, (f"trial_*_{trial_id}/run", inner)):
        candidates += sorted(sweep_dir.glob(f"*/{pattern}"))
        candidates += [path for root in roots[1:] for path in sorted(root.glob(pattern))]
    for candidate in candidates:
        if candidate.is_dir() and any(_inside(candidate, root) for root in roots):
            return candidate
    return None
