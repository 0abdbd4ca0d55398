"""Choose the trial to export from a sweep folder's records, under exactly one rule.

`read_sweep` reads a sweep folder's trials (`trials.jsonl` as the sweep wrote it, through
records.read_trials / report.results_frame, or `results.parquet` when only that is there; the
constraints from `sweep.json`) and finds every trial's run and model folder. Only
finished trials (complete or stopped early) whose run folder still holds a saved `model/` qualify.
`choose_trial` rules: an explicit trial id; `smallest-at-baseline` (the smallest feasible Pareto
student, on exact vs parameters, whose exact is at least the baseline trial's); `best-exact`; the
best exact with at most N parameters; the best exact with a batch-1 latency (`latency_ms_b1`, as
the sweep measured it) of at most X ms. Ties go to the smaller model. Every refusal names what was
asked and lists the trials there are (`trial_table`, also what `tune-distill export --list` prints).
The folder is read as data (it may come from elsewhere): trials.jsonl and sweep.json through records.py's
checked readers (one line naming the file and field), run folders only inside the sweep folder
(records.resolve_run_dir), never through the absolute paths its records name.

Must not know: Ray, the sweep module or searchers (it reads the sweep folder's files only), models.

Example (CPU, seconds, on a finished smoke sweep):
    tune-distill export --sweep sweeps/smoke --list
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tune_distill.export.errors import ExportError
from tune_distill.pareto import feasible_mask
from tune_distill.records import read_sweep_settings, read_trials, resolve_run_dir, run_roots
from tune_distill.report import pareto_rows, results_frame
from tune_distill.search.objectives import DEFAULT_OBJECTIVES

log = logging.getLogger(__name__)

PICK_RULES = ("smallest-at-baseline", "best-exact")
FINISHED = ("complete", "stopped")
ACCURACY, SIZE, LATENCY = "exact", "parameters", "latency_ms_b1"


@dataclass(frozen=True)
class TrialChoice:
    """The chosen trial, where its files are, and why it was chosen."""

    trial_id: str
    number: int | None
    status: str
    baseline: bool
    run_dir: Path
    model_dir: Path
    metrics: dict[str, Any]
    params: dict[str, Any]
    rule: str
    reason: str


@dataclass
class SweepTrials:
    """A sweep folder's trials: report's results frame plus the run/model folder of every row."""

    sweep_dir: Path
    frame: Any  # pandas.DataFrame, one row per trial (report.results_frame columns + run_dir, model_dir, model_problem)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # trial_id -> trials.jsonl record
    settings: dict[str, Any] = field(default_factory=dict)  # sweep.json (objectives, constraints, ...)


def _has_model(model_dir: Path) -> str | None:
    """None when `model_dir` holds a saved model (config.json + weights), else what is missing."""
    if not model_dir.is_dir():
        return f"no model folder {model_dir}"
    if not (model_dir / "config.json").is_file():
        return f"{model_dir} has no config.json"
    if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("*.bin")):
        return f"{model_dir} has no weights (*.safetensors)"
    return None


def read_sweep(sweep_dir: str | Path) -> SweepTrials:
    """The trials of a sweep folder (trials.jsonl, else results.parquet) with their model folders."""
    import pandas as pd

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ExportError(f"--sweep {sweep_dir}: not a folder (expected a sweep folder with trials.jsonl)")
    records: dict[str, dict[str, Any]] = {}
    if (sweep_dir / "trials.jsonl").is_file():
        trial_list = read_trials(sweep_dir)
        records = {str(record["trial_id"]): record for record in trial_list}
        frame = results_frame(trial_list)
    elif (sweep_dir / "results.parquet").is_file():
        try:
            frame = pd.read_parquet(sweep_dir / "results.parquet")
        except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
            raise ExportError(f"{sweep_dir / 'results.parquet'}: not a results table ({str(error)[:200]})") from None
    else:
        raise ExportError(f"{sweep_dir}: no trials.jsonl or results.parquet (is it a sweep folder?)")
    if frame.empty:
        raise ExportError(f"{sweep_dir}: the sweep has no trials")
    for column in ("trial_id", "status"):
        if column not in frame:
            raise ExportError(f"{sweep_dir}: the trial records have no {column!r} field")
    frame = frame.copy()
    frame["trial_id"] = frame["trial_id"].astype(str)
    if "baseline" not in frame:
        frame["baseline"] = False
    for column in (ACCURACY, SIZE, LATENCY):
        frame[column] = pd.to_numeric(frame[column], errors="coerce") if column in frame else float("nan")
    settings = read_sweep_settings(sweep_dir, ExportError)
    roots = run_roots(sweep_dir, settings)
    run_dirs, model_dirs, problems = [], [], []
    for row in frame.itertuples(index=False):
        record = records.get(row.trial_id, {})
        run_dir = resolve_run_dir(sweep_dir, row.trial_id, record.get("run_dir"), getattr(row, "checkpoint", None),
                                  roots)
        model_dir = run_dir / "model" if run_dir is not None else None
        if row.status not in FINISHED:
            problem = f"status {row.status}"
        elif run_dir is None:
            problem = "run folder not found"
        else:
            problem = _has_model(model_dir)
        if problem is None and (math.isnan(getattr(row, ACCURACY)) or math.isnan(getattr(row, SIZE))):
            problem = f"no {ACCURACY}/{SIZE} recorded"
        run_dirs.append(str(run_dir) if run_dir else None)
        model_dirs.append(str(model_dir) if model_dir else None)
        problems.append(problem)
    frame["run_dir"], frame["model_dir"], frame["model_problem"] = run_dirs, model_dirs, problems
    return SweepTrials(sweep_dir, frame, records, settings)


def trial_table(frame) -> str:
    """The trials as a short text table, for error messages and `--list`."""
    lines = [f"  {'trial_id':<12} {'#':>3} {'status':<10} {'exact':>7} {'parameters':>12} {'ms@b1':>8}  exportable"]
    for row in frame.sort_values("number" if "number" in frame else "trial_id").itertuples(index=False):
        number = getattr(row, "number", None)
        number_text = str(int(number)) if number is not None and not _isnan(number) else "-"
        exact, size, latency = getattr(row, ACCURACY), getattr(row, SIZE), getattr(row, LATENCY)
        lines.append(
            f"  {row.trial_id:<12} {number_text:>3} {str(row.status):<10} "
            f"{'-' if _isnan(exact) else f'{exact:.2f}':>7} {'-' if _isnan(size) else f'{int(size):,}':>12} "
            f"{'-' if _isnan(latency) else f'{latency:.2f}':>8}  "
            f"{'yes' if _isnan(row.model_problem) else 'no: ' + str(row.model_problem)}"
            f"{' (baseline)' if bool(row.baseline) else ''}"
        )
    return "\n".join(lines)


def _isnan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _best_exact(candidates):
    """The row with the highest exact; ties go to fewer parameters, then the lower trial number."""
    keys = [ACCURACY, SIZE] + (["number"] if "number" in candidates else [])
    return candidates.sort_values(keys, ascending=[False, True] + [True] * (len(keys) - 2)).iloc[0]


def choose_trial(sweep: str | Path | SweepTrials, *, trial_id: str | None = None, pick: str | None = None,
                 max_params: int | None = None, max_latency_ms: float | None = None) -> TrialChoice:
    """The trial to export under exactly one rule (see the module docstring); ExportError otherwise."""
    trials = sweep if isinstance(sweep, SweepTrials) else read_sweep(sweep)
    asked = {"--trial": trial_id, "--pick": pick, "--max-params": max_params, "--max-latency-ms": max_latency_ms}
    given = [name for name, value in asked.items() if value is not None]
    if len(given) != 1:
        raise ExportError("choose exactly one of --trial, --pick, --max-params, --max-latency-ms "
                          f"(got {given or 'none'})")
    frame = trials.frame
    exportable = frame[frame["model_problem"].isna()]  # None: nothing stops the export
    table = trial_table(frame)
    where = trials.sweep_dir

    if trial_id is not None:
        rows = frame[frame["trial_id"] == str(trial_id)]
        if rows.empty:
            raise ExportError(f"{where}: no trial {trial_id!r}; the trials are:\n{table}")
        row = rows.iloc[0]
        if not _isnan(row["model_problem"]):
            raise ExportError(f"{where}: trial {trial_id} cannot be exported ({row['model_problem']}); "
                              f"the trials are:\n{table}")
        return _choice(trials, row, "trial", f"asked for by id ({trial_id})")
    if exportable.empty:
        raise ExportError(f"{where}: no trial can be exported (none finished with a saved model); "
                          f"the trials are:\n{table}")

    if pick is not None:
        if pick not in PICK_RULES:
            raise ExportError(f"--pick {pick!r}: expected one of {', '.join(PICK_RULES)}")
        if pick == "best-exact":
            row = _best_exact(exportable)
            return _choice(trials, row, pick,
                           f"highest exact ({row[ACCURACY]:.2f}) of {len(exportable)} exportable trials")
        baselines = frame[frame["baseline"].astype(bool) & frame["status"].isin(FINISHED) & frame[ACCURACY].notna()]
        if baselines.empty:
            raise ExportError(f"{where}: --pick smallest-at-baseline needs a finished baseline trial (flagged "
                              f"'baseline') with an exact score; the trials are:\n{table}")
        complete = baselines[baselines["status"] == "complete"]
        base = (complete if len(complete) else baselines).iloc[0]
        base_exact = float(base[ACCURACY])
        constraints = list(trials.settings.get("constraints") or ())
        try:
            feasible = exportable[feasible_mask(exportable, constraints)]
        except ValueError as error:
            raise ExportError(f"sweep.json: {error}") from None
        objectives = [dataclasses.asdict(objective) for objective in DEFAULT_OBJECTIVES]  # exact max, parameters min
        front = pareto_rows(feasible, objectives) if len(feasible) else feasible
        at_least = front[front[ACCURACY] >= base_exact] if len(front) else front
        if at_least.empty:
            bounds = ", ".join(f"{c['name']} {c['op']} {c['bound']:.4g}" for c in constraints) or "none"
            raise ExportError(f"{where}: no exportable feasible student reaches the baseline's exact {base_exact:.2f} "
                              f"(trial {base['trial_id']}, {base['status']}; constraints: {bounds}); "
                              f"the trials are:\n{table}")
        row = at_least.sort_values([SIZE, ACCURACY], ascending=[True, False]).iloc[0]
        note = "" if base["status"] == "complete" else " (stopped early: its last intermediate exact)"
        return _choice(trials, row, pick, f"smallest feasible Pareto student with exact >= the baseline's "
                                          f"{base_exact:.2f} (trial {base['trial_id']}{note})")
    if max_params is not None:
        if max_params <= 0:
            raise ExportError(f"--max-params {max_params}: expected a positive parameter count")
        row = _best_within(exportable, SIZE, max_params, f"{where}: no exportable trial has at most {max_params:,} "
                           "parameters (the smallest is trial {trial} with {value:,.0f})", table)
        return _choice(trials, row, "max-params",
                       f"highest exact ({row[ACCURACY]:.2f}) with at most {max_params:,} parameters")
    if max_latency_ms <= 0:
        raise ExportError(f"--max-latency-ms {max_latency_ms}: expected a positive number of milliseconds")
    timed = exportable[exportable[LATENCY].notna()]
    if timed.empty:
        raise ExportError(f"{where}: no exportable trial recorded {LATENCY} (was the sweep run with "
                          f"measure_latency off?); the trials are:\n{table}")
    row = _best_within(timed, LATENCY, max_latency_ms, f"{where}: no exportable trial has {LATENCY} <= "
                       f"{max_latency_ms:g} ms (the fastest is trial {{trial}} at {{value:.2f}} ms)", table)
    return _choice(trials, row, "max-latency-ms",
                   f"highest exact ({row[ACCURACY]:.2f}) with {LATENCY} <= {max_latency_ms:g} ms ({row[LATENCY]:.2f})")


def _best_within(candidates, column: str, limit: float, refusal: str, table: str):
    """The highest-exact row with `column` <= `limit`; else ExportError(`refusal` naming the closest, the table)."""
    within = candidates[candidates[column] <= limit]
    if within.empty:
        closest = candidates.sort_values(column).iloc[0]
        message = refusal.format(trial=closest["trial_id"], value=float(closest[column]))
        raise ExportError(f"{message}; the trials are:\n{table}")
    return _best_exact(within)


def _choice(trials: SweepTrials, row, rule: str, reason: str) -> TrialChoice:
    record = trials.records.get(row["trial_id"], {})
    metrics = dict(record.get("metrics") or {}) or {
        key: value for key, value in row.items() if key in (ACCURACY, SIZE, LATENCY, "f1", "na_threshold")}
    number = row.get("number")
    log.info("export: trial %s chosen: %s", row["trial_id"], reason)
    return TrialChoice(
        trial_id=str(row["trial_id"]),
        number=None if _isnan(number) else int(number),
        status=str(row["status"]),
        baseline=bool(row["baseline"]),
        run_dir=Path(row["run_dir"]),
        model_dir=Path(row["model_dir"]),
        metrics=metrics,
        params=dict(record.get("params") or {}),
        rule=rule,
        reason=reason,
    )
