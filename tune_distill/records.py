"""Trial records: the trials.jsonl format, its one writer and its one reader.

What it does: names the file (`TRIALS_FILE`) and the statuses a record can have (`STATUSES`:
complete, stopped early, failed, unfinished; `trial_status` says which from a finished trial's last
result); `write_trials` writes records atomically, one JSON object per line; `read_trials` reads
them back (the last record per trial wins) and refuses a line that is not a record;
`resolve_run_dir` finds where a record's run folder is now (the sweep folder may have moved). A
record is a plain dict: trial_id, number, kind, baseline, status, params, overrides, metrics, error,
attempts, duration, checkpoint, run_dir, node_id, device, seed, started_at, finished_at,
steps_saved (sweep/experiment.py builds them from Tune's trials).

Why a helper module of its own, below the training code: the sweep writes the records while the
study (study.py), the report, confirm and export read them; none of those readers may depend on the
sweep (Ray) or on each other to read a file, so the format lives here and imports only files.py.

What it must not know: Ray, how trials ran or were chosen, the study, the report's tables.

Example (CPU, instant; any sweep folder):
    python -c "from tune_distill.records import read_trials; print(read_trials('sweeps/smoke')[0]['status'])"
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from tune_distill.files import parse_json, write_atomically

TRIALS_FILE = "trials.jsonl"
COMPLETE, STOPPED, FAILED, UNFINISHED = "complete", "stopped", "failed", "unfinished"
STATUSES = (COMPLETE, STOPPED, FAILED, UNFINISHED)  # a record's `status`


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


def read_trials(path: str | Path) -> list[dict[str, Any]]:
    """Trial records from a sweep folder's trials.jsonl (or the file itself); the last record per trial wins."""
    path = Path(path)
    if path.is_dir():
        path = path / TRIALS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trial records (expected a sweep folder with trials.jsonl)")
    records: dict[str, dict[str, Any]] = {}
    for line_number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        record = parse_json(line, f"{path}:{line_number}", ValueError)
        if not isinstance(record, dict) or "trial_id" not in record:
            raise ValueError(f"{path}:{line_number}: record has no trial_id (expected a JSON object per line)")
        records[str(record["trial_id"])] = record
    return sorted(records.values(), key=lambda r: (r.get("number", 0), str(r["trial_id"])))


def resolve_run_dir(sweep_dir: Path, trial_id: str, run_dir: Any = None, checkpoint: Any = None) -> Path | None:
    """A trial's run folder: the recorded run_dir, else `run/` beside its recorded Tune checkpoint, else
    `<sweep>/*/trial_*_<trial_id>/run` (a sweep folder moved or copied elsewhere)."""
    candidates: list[Path] = []
    if isinstance(run_dir, str) and run_dir:
        candidates.append(Path(run_dir))
    if isinstance(checkpoint, str) and checkpoint and "://" not in checkpoint:
        candidates.append(Path(checkpoint).parent / "run")
    candidates += sorted(sweep_dir.glob(f"*/trial_*_{trial_id}/run"))
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None
