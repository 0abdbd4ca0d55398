"""Recorded evaluation curves of a sweep, replayed through a scheduler into trial records.

`read_curves` reads every evaluation a fifo sweep recorded (its Tune trial folders' result.json, or a curves.jsonl
written by bench/replay_schedulers.py --save-curves), in arrival order; `replay` feeds them to a scheduler (ours:
`on_result`; Ray's: `on_trial_add` / `on_trial_result`) and keeps each trial's last seen evaluation, stopped ones
flagged; `as_records` shapes those as a sweep's trials.jsonl records, for bench/measures.py.

Shared by bench/replay_schedulers.py and bench/replay_moasha.py.

Must not know: which scheduler it is given, how steps and hypervolume are measured (bench/measures.py), Ray
beyond the trial object a Ray scheduler needs.

Example (CPU, instant, on a finished fifo sweep folder):
    PYTHONPATH=. python -c "from pathlib import Path; from bench.curves import read_curves; \
print(len(read_curves(Path('sweeps/smoke'), ['exact', 'parameters'])))"
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

KEPT_FIELDS = ("trial_id", "number", "kind", "timestamp", "step", "total_steps", "final")


def read_curves(source: Path, metric_names: Sequence[str]) -> list[dict[str, Any]]:
    """Every recorded evaluation as {trial_id, number, kind, timestamp, step, total_steps, final, metrics}."""
    rows: list[dict[str, Any]] = []
    if source.is_file():
        for line_number, line in enumerate(source.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{source}:{line_number}: not JSON ({error})") from None
    else:
        files = sorted((source / "tune").glob("trial_*/result.json"))
        if not files:
            raise FileNotFoundError(f"{source}: no tune/trial_*/result.json "
                                    "(expected a sweep folder or a curves.jsonl)")
        for path in files:
            for line in path.read_text().splitlines():
                if not line.strip():
                    continue
                result = json.loads(line)
                row = {key: result.get(key) for key in KEPT_FIELDS}
                row["metrics"] = {name: result.get(name) for name in metric_names}
                row["metrics"].update({f"{name}_se": result[f"{name}_se"] for name in metric_names
                                       if result.get(f"{name}_se") is not None})  # the rung's measured noise
                rows.append(row)
    for index, row in enumerate(rows):
        missing = [key for key in ("trial_id", "timestamp", "step", "metrics") if row.get(key) is None]
        if missing:
            raise ValueError(f"{source}: evaluation {index} lacks {missing}")
    return sorted(rows, key=lambda row: (row["timestamp"], str(row["trial_id"]), row["step"]))


def replay(curves: Sequence[Mapping[str, Any]], scheduler: Any) -> dict[str, dict[str, Any]]:
    """Each trial's last seen evaluation under `scheduler` (stopped ones flagged)."""
    last: dict[str, dict[str, Any]] = {}
    stopped: set[str] = set()
    trials: dict[str, Any] = {}
    for row in curves:
        trial_id = str(row["trial_id"])
        if trial_id in stopped:
            continue
        result = {**row["metrics"], **{key: row.get(key) for key in KEPT_FIELDS}}
        if hasattr(scheduler, "on_result"):
            decision = scheduler.on_result(trial_id, result)
        else:  # a Ray scheduler: it needs trial objects, added before their first result
            if trial_id not in trials:
                trials[trial_id] = SimpleNamespace(trial_id=trial_id)
                scheduler.on_trial_add(None, trials[trial_id])
            decision = scheduler.on_trial_result(None, trials[trial_id], result)
        last[trial_id] = {**row, "stopped": decision == "STOP"}
        if decision == "STOP":
            stopped.add(trial_id)
    return last


def as_records(last: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Trial records shaped like a sweep's trials.jsonl, for bench/early_stopping.py's measures."""
    return [{"trial_id": trial_id, "number": row.get("number"), "kind": row.get("kind"),
             "status": "stopped" if row["stopped"] else "complete",
             "metrics": {**row["metrics"], "step": row["step"], "total_steps": row.get("total_steps")}}
            for trial_id, row in last.items()]
