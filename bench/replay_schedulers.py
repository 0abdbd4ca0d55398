"""Replay a fifo sweep's recorded learning curves through early-stopping schedulers, without training.

A fifo sweep (no early stopping) records every evaluation of every trial. Training is deterministic
per trial (trial seed = base seed + trial number), so a sweep of the same students under a
scheduler sees exactly those results up to the step where the scheduler stops a trial; this is
what bench/early_stopping.py's `--trials replay` arms do for real, at the cost of training them
again. This script instead feeds the recorded results, in the order they arrived (their
timestamps), to the scheduler classes the sweep itself uses, and reports for each scheduler and
reduction factor the optimiser steps saved and the hypervolume lost against fifo, measured as
bench/early_stopping.py measures them (complete and stopped trials with their last metrics,
feasible ones, one reference point for all rows).

Schedulers replayed (tune_distill.sweep):
  pareto_sh            ParetoSuccessiveHalving, fronts ordered by hypervolume contribution (default);
  pareto_sh:crowding   the same, fronts ordered by crowding distance;
  single               ParetoSuccessiveHalving on the first objective alone (successive halving on
                       accuracy with pareto_sh's bookkeeping: same rungs, same quota rule);
  asha                 BaselineKeepingASHA (Ray's ASHA on the first objective), grace_period = the
                       first rung, max_t = the last.
The baseline is never stopped, as in a sweep.

Limits: the arrival order is fifo's. In a real run a stopped trial frees its slot earlier, so later
trials reach the rungs sooner and may be judged against fewer records; asynchronous decisions can
then differ. Check against a real run: on results/early-stopping-v3 the real pareto_sh arm and its
replay stop the same trials at the same rungs (54.2% fewer steps, 10.0% less hypervolume).

Input: a sweep folder (its Tune trial folders `tune/trial_*/result.json` hold the curves) or a
`curves.jsonl` written by --save-curves (one line per evaluation; small enough to keep in results/).

Commands (CPU, seconds):
  python bench/replay_schedulers.py results/early-stopping-v3/fifo/curves.jsonl
  python bench/replay_schedulers.py sweeps/early-stopping-v3/fifo \
      --save-curves results/early-stopping-v3/fifo/curves.jsonl
  python bench/replay_schedulers.py CURVES --rungs 40 80 --reduction-factors 2 3 --schedulers pareto_sh single asha
  python bench/replay_schedulers.py results/early-stopping-teacher*/fifo/curves.jsonl   # replicates: mean, range,
                                                                # and how many runs meet the target per scheduler
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

SCHEDULERS = ("pareto_sh", "pareto_sh:crowding", "single", "asha")
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
                rows.append(row)
    for index, row in enumerate(rows):
        missing = [key for key in ("trial_id", "timestamp", "step", "metrics") if row.get(key) is None]
        if missing:
            raise ValueError(f"{source}: evaluation {index} lacks {missing}")
    return sorted(rows, key=lambda row: (row["timestamp"], str(row["trial_id"]), row["step"]))


def make(name: str, rungs: Sequence[int], reduction_factor: float, objectives: Sequence[Any]):
    """The scheduler a sweep would build for `name` (through sweep.make_scheduler, the sweep's own factory)."""
    from tune_distill.sweep.config import SchedulerSettings
    from tune_distill.sweep.schedulers import make_scheduler

    if name == "asha":  # the benchmark's asha arm: grace_period = first rung, max_t = last
        settings = SchedulerSettings(name="asha", grace_period=min(rungs), max_t=max(rungs),
                                     reduction_factor=reduction_factor)
        return make_scheduler(settings, objectives)
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}")
    within_front = "crowding" if name == "pareto_sh:crowding" else "hypervolume"
    settings = SchedulerSettings(name="pareto_sh", rungs=tuple(rungs), reduction_factor=reduction_factor,
                                 within_front=within_front)
    return make_scheduler(settings, objectives[:1] if name == "single" else objectives)


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


def replay_table(source: Path, sweep_json: Path | None, rungs: Sequence[int] | None, factors: Sequence[float],
                 schedulers: Sequence[str], save_curves: str | None = None) -> dict[str, Any]:
    """One fifo run replayed through every scheduler and reduction factor: the table, as --json writes it."""
    from bench.early_stopping import arm_hypervolume, common_reference, steps_of, usable_rows
    from tune_distill.search import Objective

    sweep_json = sweep_json or (source if source.is_dir() else source.parent) / "sweep.json"
    if not sweep_json.is_file():
        raise FileNotFoundError(f"{sweep_json}: not found (give --sweep-json)")
    saved = json.loads(sweep_json.read_text())
    objectives, constraints = saved["objectives"], saved["constraints"]
    names = [o["name"] for o in objectives]
    metric_names = sorted(set(names) | {c["name"] for c in constraints})
    rungs = list(rungs or saved["config"]["scheduler"].get("rungs") or [])
    if not rungs:
        raise ValueError(f"{sweep_json}: the sweep has no pareto_sh rungs; give --rungs")

    curves = read_curves(source, metric_names)
    if save_curves:
        Path(save_curves).write_text("".join(json.dumps(row) + "\n" for row in curves))
    fifo = {}
    for row in curves:
        fifo[str(row["trial_id"])] = {**row, "stopped": False}
    arms = {"fifo": as_records(fifo)}
    ranked = [Objective(o["name"], o["direction"]) for o in objectives]
    for name in schedulers:
        for factor in factors:
            arms[f"{name} rf={factor:g}"] = as_records(replay(curves, make(name, rungs, factor, ranked)))

    usable = {arm: usable_rows(records, names, ("complete", "stopped")) for arm, records in arms.items()}
    reference = common_reference([row for rows in usable.values() for row in rows], objectives, constraints)
    table = []
    fifo_steps = sum(steps_of(r) for r in arms["fifo"])
    fifo_hv, _ = arm_hypervolume(usable["fifo"], objectives, constraints, reference)
    for arm, records in arms.items():
        steps = sum(steps_of(r) for r in records)
        value, _ = arm_hypervolume(usable[arm], objectives, constraints, reference)
        table.append({
            "scheduler": arm, "stopped": sum(r["status"] == "stopped" for r in records), "steps": steps,
            "steps_saved_pct": 100.0 * (1 - steps / fifo_steps) if fifo_steps else None,
            "hypervolume": value,
            "hypervolume_loss_pct": 100.0 * (1 - value / fifo_hv) if fifo_hv > 0 else None,
            "stops": sorted((int(r["number"]), steps_of(r)) for r in records if r["status"] == "stopped"),
        })
    return {"source": str(source), "trials": len(fifo), "rungs": rungs, "objectives": objectives,
            "constraints": constraints, "reference_point": reference, "table": table}


def print_table(run: Mapping[str, Any]) -> None:
    names = [o["name"] for o in run["objectives"]]
    print(f"{run['source']}: {run['trials']} trials, rungs {run['rungs']}, objectives {names}; reference point "
          f"{', '.join(f'{n} {v:.6g}' for n, v in zip(names, run['reference_point']))}")
    print(f"{'scheduler':<26} {'stopped':>7} {'steps':>6} {'saved%':>7} {'hv_loss%':>8}  stops (trial@step)")
    for row in run["table"]:
        saved_pct = "-" if row["steps_saved_pct"] is None else f"{row['steps_saved_pct']:.1f}"
        loss = "-" if row["hypervolume_loss_pct"] is None else f"{row['hypervolume_loss_pct']:.2f}"
        stops = " ".join(f"{n}@{s}" for n, s in row["stops"])
        print(f"{row['scheduler']:<26} {row['stopped']:>7} {row['steps']:>6} {saved_pct:>7} {loss:>8}  {stops}")


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="fifo sweep folders, or curves.jsonl files written by --save-curves "
                                                   "(several: replicates, summarised together)")
    parser.add_argument("--sweep-json", help="the sweep.json with objectives and constraints (default: next to "
                                             "each source)")
    parser.add_argument("--rungs", type=int, nargs="+", help="rungs (default: the sweep's pareto_sh rungs)")
    parser.add_argument("--reduction-factors", type=float, nargs="+", default=[2.0, 3.0])
    parser.add_argument("--schedulers", nargs="+", default=list(SCHEDULERS), choices=SCHEDULERS)
    parser.add_argument("--save-curves", help="write the curves read from a sweep folder to this curves.jsonl "
                                              "(one source only)")
    parser.add_argument("--target-steps", type=float, default=40.0,
                        help="with several sources: the target's least share of steps saved, percent")
    parser.add_argument("--target-loss", type=float, default=2.0,
                        help="with several sources: the target's largest hypervolume loss, percent")
    parser.add_argument("--json", help="write the table as JSON here (several sources: every table and the summary)")
    args = parser.parse_args(argv)
    if args.save_curves and len(args.sources) > 1:
        parser.error("--save-curves takes one source")

    runs = []
    for source in args.sources:
        try:
            runs.append(replay_table(Path(source), Path(args.sweep_json) if args.sweep_json else None, args.rungs,
                                     args.reduction_factors, args.schedulers, args.save_curves))
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))
        print_table(runs[-1])
        print()
    command = " ".join(sys.argv)
    if len(runs) == 1:
        output: dict[str, Any] = {**runs[0], "command": command}
    else:
        summary = across_runs(runs, args.target_steps, args.target_loss)
        print(f"{len(runs)} runs; target: >= {args.target_steps:g}% fewer steps for <= {args.target_loss:g}% "
              "less hypervolume")
        print(f"{'scheduler':<26} {'saved% mean [min, max]':>24} {'hv_loss% mean [min, max]':>26} {'meets':>6}")
        for row in summary:
            saved, loss = row["steps_saved_pct"], row["hypervolume_loss_pct"]
            print(f"{row['scheduler']:<26} {saved['mean']:>8.1f} [{saved['min']:5.1f}, {saved['max']:5.1f}]"
                  f" {loss['mean']:>10.2f} [{loss['min']:6.2f}, {loss['max']:6.2f}]"
                  f" {row['meets_target']:>3}/{row['runs']}")
        output = {"runs": runs, "summary": summary, "target": {"steps_saved_pct": args.target_steps,
                                                              "hypervolume_loss_pct": args.target_loss},
                  "command": command}
    if args.json:
        Path(args.json).write_text(json.dumps(output, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
