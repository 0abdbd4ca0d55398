"""Replay a fifo sweep's recorded learning curves with N workers in virtual time, through early-stopping rules.

bench/replay_schedulers.py feeds the recorded evaluations in the order they arrived in the recorded run
(two trials at a time). A sweep with 20 workers sees another order: its trials start together and reach a
rung in the order of their speed, and a stopped trial frees its worker for the next one. This bench
plays that sweep in virtual time, without training:

  * trials start in their recorded number order on `--workers` workers (20 by default);
  * a trial's evaluations come at the durations it was recorded with: the time between two of its
    recorded evaluations (their timestamps) is the time between them here; the time from its start to its
    first evaluation is not recorded, and is taken as the first evaluation's step times the per-step time of
    its second segment (bench/replay_moasha.py's `elapsed_times`, the same durations its --simulator uses);
  * events are processed in virtual-time order (ties: trial number); each result goes to the arm's scheduler,
    whose decision is applied at once: STOP frees the worker, and the next trial starts on it;
  * PAUSE (pareto_sh with fill=K, ParetoSuccessiveHalving's rung_fill): the trial waits at its checkpoint and
    holds its slot, as it does in a sweep, where Tune's max_concurrent_trials (a ConcurrencyLimiter) counts a
    paused trial as live; verdicts the scheduler reaches for waiting trials (`decided`) are applied at once (a
    kept one resumes exactly where it paused); when nothing else can reach a rung (`stuck_rungs`: every running
    trial past it, none queued that could start) the rung settles, as choose_trial_to_run does in a sweep.

Arms: `fifo`; any scheduler bench/replay_schedulers.py's `make` builds (`pareto_sh` = make_scheduler from
the default SchedulerSettings with the run's rungs; options after colons, e.g. `pareto_sh:fill=workers`,
the rung waiting for as many results as there are workers, or `fill=9`); `moasha` / `moasha:ranks`: Syne
Tune's MOASHA object (bench/replay_moasha.py's MOASHAReplay) fed the same virtual-time events.
Reduction factor: `--reduction-factor` (3, the default's).

Measures per run and arm (bench/measures.py, against the run's `curve_reference` as in replay_schedulers):
steps saved %, hypervolume lost % against fifo (with the same workers), and `t95`: the virtual time at which
the arm's running hypervolume (over the trials finished or stopped so far) first reaches 95% of fifo's final
hypervolume, and its ratio to fifo's own t95. Over several runs: means, and how many runs meet the target
(>= 40% fewer steps for <= 2% less hypervolume; `--target-steps`, `--target-loss`).

Input: any curves.jsonl that bench/curves.py reads (one evaluation per line: trial_id, number, kind,
timestamp, step, total_steps, final, metrics with `<metric>_se`), with a sweep.json beside it or given by
--sweep-json (objectives, constraints, rungs), so a simulated sweep is the same command on another file.

Must not know: how the curves were made, training, Ray beyond the schedulers' own objects, the Pareto maths
(bench/measures.py, tune_distill.pareto).

Commands (CPU; seconds per run; MOASHA needs syne-tune: --syne-path adds a venv's site-packages at the end
of sys.path, e.g. /work/venv-syne/lib/python3.11/site-packages):
  python bench/replay_workers.py results/archive/early-stopping-learners/fifo/curves.jsonl
  python bench/replay_workers.py CURVES... --workers 2 --arms fifo pareto_sh     # against replay_schedulers
  python bench/replay_workers.py CURVES... --arms fifo pareto_sh pareto_sh:fill=workers moasha \
      --syne-path /work/venv-syne/lib/python3.11/site-packages --json results/early-stopping-20-workers.json
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.curves import KEPT_FIELDS, as_records  # noqa: E402
from bench.measures import across_runs, arm_hypervolume, steps_of, usable_rows  # noqa: E402
from bench.replay_moasha import elapsed_times  # noqa: E402
from bench.replay_schedulers import curve_reference, load_run, run_name  # noqa: E402

ARMS = ("fifo", "pareto_sh", "pareto_sh:fill=workers", "moasha")
SHARE = 0.95  # the t95 threshold: this share of fifo's final hypervolume


def timelines(curves: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per trial, in number order: {trial_id, number, rows (by step), durations (seconds of each segment)}."""
    by_trial: dict[str, list[Mapping[str, Any]]] = {}
    for row in curves:
        by_trial.setdefault(str(row["trial_id"]), []).append(row)
    trials = []
    for trial_id, rows in by_trial.items():
        rows = sorted(rows, key=lambda row: row["step"])
        elapsed = elapsed_times(rows)
        durations = [elapsed[0]] + [b - a for a, b in zip(elapsed, elapsed[1:])]
        trials.append({"trial_id": trial_id, "number": int(rows[0].get("number") or 0), "rows": rows,
                       "durations": durations})
    return sorted(trials, key=lambda trial: (trial["number"], trial["trial_id"]))


def make_arm(name: str, run: Mapping[str, Any], workers: int, reduction_factor: float) -> Any:
    """The scheduler of arm `name` (None for fifo): see the module docstring."""
    if name == "fifo":
        return None
    if name.startswith("moasha"):
        from bench.replay_moasha import MOASHAReplay

        totals = [int(row["total_steps"]) for row in run["curves"] if row.get("total_steps")]
        max_t = max(totals) if totals else max(int(row["step"]) for row in run["curves"])
        return MOASHAReplay(name, run["objectives"], run["rungs"], max_t, reduction_factor)
    from bench.replay_schedulers import make
    from tune_distill.search import Objective

    ranked = [Objective(o["name"], o["direction"]) for o in run["objectives"]]
    return make(name.replace("fill=workers", f"fill={workers}"), run["rungs"], reduction_factor, ranked)


def _decide(scheduler: Any, trial_id: str, result: Mapping[str, Any], ray_trials: dict[str, Any]) -> str:
    if scheduler is None:
        return "CONTINUE"
    if hasattr(scheduler, "on_result"):
        return scheduler.on_result(trial_id, result)
    if trial_id not in ray_trials:  # a Ray scheduler (asha): trial objects, added before their first result
        ray_trials[trial_id] = SimpleNamespace(trial_id=trial_id)
        scheduler.on_trial_add(None, ray_trials[trial_id])
    return scheduler.on_trial_result(None, ray_trials[trial_id], dict(result))


def play(trials: Sequence[Mapping[str, Any]], scheduler: Any, workers: int) -> dict[str, Any]:
    """One arm in virtual time: {last: curves.replay's shape, ends: [(time, trial_id)] in order, makespan}."""
    by_id = {trial["trial_id"]: trial for trial in trials}
    queue, events, ray_trials = list(by_id), [], {}
    index: dict[str, int] = {}  # the next evaluation of each started trial
    last: dict[str, dict[str, Any]] = {}
    ends: list[tuple[float, str]] = []
    paused: set[str] = set()
    now, busy = 0.0, 0

    def advance(trial_id: str) -> None:  # run to its next evaluation, or end it
        nonlocal busy
        trial = by_id[trial_id]
        if index[trial_id] < len(trial["rows"]):
            heapq.heappush(events, (now + trial["durations"][index[trial_id]], trial["number"], trial_id))
        else:
            ends.append((now, trial_id))
            busy -= 1

    def verdict(trial_id: str, decision: str) -> None:
        nonlocal busy
        if decision == "STOP":
            last[trial_id]["stopped"] = True
            ends.append((now, trial_id))
            busy -= 1
        elif decision == "PAUSE":
            paused.add(trial_id)
        else:
            advance(trial_id)

    while True:
        while busy < workers and queue:
            trial_id = queue.pop(0)
            index[trial_id], busy = 0, busy + 1
            advance(trial_id)
        running = [last[t]["step"] if t in last else None for _, _, t in events]
        for rung in (scheduler.stuck_rungs(running, 0) if paused and hasattr(scheduler, "stuck_rungs") else []):
            scheduler.decided.update(scheduler.settle(rung))
        decided, scheduler_decided = (scheduler.decided, True) if paused else ({}, False)
        for trial_id, decision in list(decided.items()):  # verdicts on waiting trials, applied once
            paused.discard(trial_id)
            verdict(trial_id, decision)
        if scheduler_decided:
            decided.clear()
        if not events:
            if paused:
                raise RuntimeError(f"trials {sorted(paused)} wait at a rung that never settles")
            break
        now, _, trial_id = heapq.heappop(events)
        row = by_id[trial_id]["rows"][index[trial_id]]
        index[trial_id] += 1
        last[trial_id] = {**row, "stopped": False}
        result = {**row["metrics"], **{key: row.get(key) for key in KEPT_FIELDS}}
        verdict(trial_id, _decide(scheduler, trial_id, result, ray_trials))
    return {"last": last, "ends": ends, "makespan": now}


def time_to_share(played: Mapping[str, Any], run: Mapping[str, Any], target: float) -> float | None:
    """The first virtual time at which the hypervolume of the trials ended so far reaches `target` (None: never)."""
    names = [o["name"] for o in run["objectives"]]
    ended: dict[str, dict[str, Any]] = {}
    for time, trial_id in played["ends"]:
        ended[trial_id] = played["last"][trial_id]
        rows = usable_rows(as_records(ended), names, ("complete", "stopped"))
        value, _ = arm_hypervolume(rows, run["objectives"], run["constraints"], run["reference"])
        if value >= target:
            return time
    return None


def workers_table(source: Path, sweep_json: Path | None, arms: Sequence[str], workers: int,
                  reduction_factor: float = 3.0, rungs: Sequence[int] | None = None, target_steps: float = 40.0,
                  target_loss: float = 2.0) -> dict[str, Any]:
    """One run played through every arm with `workers` workers: the table, as --json writes it.

    Each row: scheduler (the arm), stopped, steps, steps_saved_pct, hypervolume, hypervolume_loss_pct,
    meets_target, t95 (virtual seconds; None: never reached), t95_ratio (to fifo's), makespan, stops."""
    run = dict(load_run(source, sweep_json, rungs))
    run["reference"] = curve_reference(run["curves"], run["objectives"], run["constraints"])
    names = [o["name"] for o in run["objectives"]]
    trials = timelines(run["curves"])
    played = {arm: play(trials, make_arm(arm, run, workers, reduction_factor), workers)
              for arm in ["fifo", *[arm for arm in arms if arm != "fifo"]]}
    measured = {}
    for arm, outcome in played.items():
        records = as_records(outcome["last"])
        value, _ = arm_hypervolume(usable_rows(records, names, ("complete", "stopped")), run["objectives"],
                                   run["constraints"], run["reference"])
        measured[arm] = (records, value)
    fifo_steps = sum(steps_of(r) for r in measured["fifo"][0])
    fifo_hv = measured["fifo"][1]
    fifo_t95 = time_to_share(played["fifo"], run, SHARE * fifo_hv)
    table = []
    for arm, (records, value) in measured.items():
        steps = sum(steps_of(r) for r in records)
        saved = 100.0 * (1 - steps / fifo_steps) if fifo_steps else None
        loss = 100.0 * (1 - value / fifo_hv) if fifo_hv > 0 else None
        t95 = time_to_share(played[arm], run, SHARE * fifo_hv)
        table.append({"scheduler": arm, "stopped": sum(r["status"] == "stopped" for r in records), "steps": steps,
                      "steps_saved_pct": saved, "hypervolume": value, "hypervolume_loss_pct": loss,
                      "meets_target": bool(saved is not None and loss is not None and saved >= target_steps
                                           and loss <= target_loss),
                      "t95": t95, "t95_ratio": t95 / fifo_t95 if t95 is not None and fifo_t95 else None,
                      "makespan": played[arm]["makespan"],
                      "stops": sorted((int(r["number"]), steps_of(r)) for r in records if r["status"] == "stopped")})
    return {"source": str(source), "run": run_name(source), "trials": len(trials), "workers": workers,
            "rungs": run["rungs"], "reduction_factor": reduction_factor, "objectives": run["objectives"],
            "constraints": run["constraints"], "standard_errors": run["standard_errors"],
            "reference_point": run["reference"], "table": table}


def summarise(runs: Sequence[Mapping[str, Any]], target_steps: float, target_loss: float) -> list[dict[str, Any]]:
    """bench/measures.across_runs per arm, plus the mean t95 ratio and how many runs reached fifo's 95% at all."""
    summary = across_runs(runs, target_steps, target_loss)
    for row in summary:
        ratios = [r["t95_ratio"] for run in runs for r in run["table"] if r["scheduler"] == row["scheduler"]]
        reached = [ratio for ratio in ratios if ratio is not None]
        row["t95_ratio"] = {"mean": sum(reached) / len(reached) if reached else None,
                            "min": min(reached, default=None), "max": max(reached, default=None)}
        row["reached_95"] = len(reached)
    return summary


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_run(run: Mapping[str, Any]) -> None:
    print(f"{run['source']}: {run['trials']} trials, {run['workers']} workers, rungs {run['rungs']}, rf "
          f"{run['reduction_factor']:g}; rung standard errors {run['standard_errors']}")
    print(f"{'arm':<26} {'stopped':>7} {'steps':>7} {'saved%':>7} {'hv_loss%':>8} {'t95':>9} {'t95/fifo':>8}  stops")
    for row in run["table"]:
        stops = " ".join(f"{n}@{s}" for n, s in row["stops"])
        print(f"{row['scheduler']:<26} {row['stopped']:>7} {row['steps']:>7} {_fmt(row['steps_saved_pct'], 1):>7} "
              f"{_fmt(row['hypervolume_loss_pct'], 2):>8} {_fmt(row['t95'], 0):>9} {_fmt(row['t95_ratio'], 2):>8}"
              f"  {stops}")


def print_summary(summary: Sequence[Mapping[str, Any]], runs: int, target_steps: float, target_loss: float) -> None:
    print(f"{runs} runs; target: >= {target_steps:g}% fewer steps for <= {target_loss:g}% less hypervolume")
    print(f"{'arm':<26} {'saved% mean [min, max]':>24} {'hv_loss% mean [min, max]':>26} {'t95/fifo mean':>13} "
          f"{'meets':>6}")
    for row in summary:
        saved, loss, ratio = row["steps_saved_pct"], row["hypervolume_loss_pct"], row["t95_ratio"]
        print(f"{row['scheduler']:<26} {saved['mean']:>8.1f} [{saved['min']:5.1f}, {saved['max']:5.1f}]"
              f" {loss['mean']:>10.2f} [{loss['min']:6.2f}, {loss['max']:6.2f}] {_fmt(ratio['mean'], 2):>9}"
              f" ({row['reached_95']}) {row['meets_target']:>2}/{row['runs']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="curves.jsonl files (or fifo sweep folders); several: replicates")
    parser.add_argument("--sweep-json", help="sweep.json with objectives, constraints and rungs (default: beside each)")
    parser.add_argument("--workers", type=int, default=20, help="trials running at once (default 20)")
    parser.add_argument("--arms", nargs="+", default=list(ARMS),
                        help=f"default: {' '.join(ARMS)}; any replay_schedulers scheduler name, fill=workers")
    parser.add_argument("--reduction-factor", type=float, default=3.0)
    parser.add_argument("--rungs", type=int, nargs="+", help="rungs (default: the sweep's, else every evaluation)")
    parser.add_argument("--syne-path", help="a site-packages folder holding syne_tune, appended to sys.path")
    parser.add_argument("--target-steps", type=float, default=40.0)
    parser.add_argument("--target-loss", type=float, default=2.0)
    parser.add_argument("--json", help="write every table and the summary here")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.syne_path:
        sys.path.append(args.syne_path)
    runs = []
    for source in args.sources:
        try:
            runs.append(workers_table(Path(source), Path(args.sweep_json) if args.sweep_json else None, args.arms,
                                      args.workers, args.reduction_factor, args.rungs, args.target_steps,
                                      args.target_loss))
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))
        print_run(runs[-1])
        print()
    summary = summarise(runs, args.target_steps, args.target_loss)
    print_summary(summary, len(runs), args.target_steps, args.target_loss)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "runs": runs, "summary": summary, "workers": args.workers,
            "target": {"steps_saved_pct": args.target_steps, "hypervolume_loss_pct": args.target_loss,
                       "t95_share": SHARE}, "command": " ".join(sys.argv)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
