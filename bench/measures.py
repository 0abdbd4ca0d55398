"""Measures of an early-stopping arm over its trial records: which trials count, their hypervolume against one
reference point common to the arms compared, and the optimiser steps each trained.

Shared by bench/early_stopping.py (real arms: a sweep's trials.jsonl) and the replays (bench/replay_schedulers.py,
bench/replay_moasha.py: records made from recorded curves, bench/curves.py's `as_records`), so that every bench
counts steps and hypervolume the same way, as tune_distill.report.summarise does for one sweep.

Must not know: how the records were made (a sweep, a replay), schedulers, Ray, training.

Example (CPU, instant, on a finished sweep folder):
    PYTHONPATH=. python -c "from bench.measures import steps_of; from tune_distill.records import read_trials; \
print(sum(steps_of(r) for r in read_trials('sweeps/smoke')))"
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def usable_rows(records: Sequence[Mapping[str, Any]], names: Sequence[str], statuses: Sequence[str]) -> list[dict]:
    """Records of the given statuses whose metrics hold every name (report.summarise's `done`)."""
    rows = []
    for record in records:
        if record.get("status") not in statuses:
            continue
        metrics = record.get("metrics") or {}
        values = {name: _number(metrics.get(name)) for name in names}
        if all(v is not None for v in values.values()):
            rows.append({"record": record, "values": values})
    return rows


def feasible(values: Mapping[str, float], constraints: Sequence[Mapping[str, Any]]) -> bool:
    """report._feasible for one row: a constraint whose metric is missing fails."""
    for constraint in constraints:
        value = values.get(constraint["name"])
        if value is None:
            return False
        bound = float(constraint["bound"])
        if not (value >= bound if constraint["op"] == ">=" else value <= bound):
            return False
    return True


def common_reference(all_rows: Sequence[Mapping[str, Any]], objectives: Sequence[Mapping[str, str]],
                     constraints: Sequence[Mapping[str, Any]]) -> list[float]:
    """report.summarise's reference point, over the union of the arms' usable trials."""
    from tune_distill.pareto import hypervolume_reference

    names = [o["name"] for o in objectives]
    floors = [next((float(c["bound"]) for c in constraints if c["name"] == name), None) for name in names]
    values = np.array([[row["values"][name] for name in names] for row in all_rows], dtype=float)
    directions = [o["direction"] for o in objectives]
    return hypervolume_reference(values.reshape(len(all_rows), len(names)), directions, floors)


def arm_hypervolume(rows: Sequence[Mapping[str, Any]], objectives: Sequence[Mapping[str, str]],
                    constraints: Sequence[Mapping[str, Any]], reference: Sequence[float]) -> tuple[float, int]:
    """(hypervolume of the feasible rows against `reference`, number of feasible rows)."""
    from tune_distill.pareto import hypervolume

    names = [o["name"] for o in objectives]
    points = []
    for row in rows:
        values = dict(row["values"])
        values.update({c["name"]: _number((row["record"].get("metrics") or {}).get(c["name"])) for c in constraints})
        if feasible(values, constraints):
            points.append([row["values"][name] for name in names])
    if not points:
        return 0.0, 0
    return hypervolume(np.asarray(points, dtype=float), [o["direction"] for o in objectives], reference), len(points)


def steps_of(record: Mapping[str, Any]) -> int:
    return int((record.get("metrics") or {}).get("step") or 0)


def across_runs(runs: Sequence[Mapping[str, Any]], target_steps: float, target_loss: float) -> list[dict[str, Any]]:
    """Per scheduler row: mean, min and max of steps saved and hypervolume loss over the runs, and in how
    many runs it met the target (at least `target_steps`% fewer steps for at most `target_loss`% loss)."""
    summary = []
    for scheduler in [row["scheduler"] for row in runs[0]["table"]]:
        rows = [next(row for row in run["table"] if row["scheduler"] == scheduler) for run in runs]
        saved = np.array([row["steps_saved_pct"] for row in rows], dtype=float)
        loss = np.array([row["hypervolume_loss_pct"] for row in rows], dtype=float)
        summary.append({"scheduler": scheduler, "runs": len(rows),
                        "steps_saved_pct": {"mean": float(saved.mean()), "min": float(saved.min()),
                                            "max": float(saved.max())},
                        "hypervolume_loss_pct": {"mean": float(loss.mean()), "min": float(loss.min()),
                                                 "max": float(loss.max())},
                        "meets_target": int(((saved >= target_steps) & (loss <= target_loss)).sum())})
    return summary
