"""Replay a fifo sweep's recorded learning curves through early-stopping schedulers, without training.

A fifo sweep (no early stopping) records every evaluation of every trial. Training is deterministic
per trial (trial seed = base seed + trial number), so a sweep of the same students under a
scheduler sees exactly those results up to the step where the scheduler stops a trial; this is
what bench/early_stopping.py's `--trials replay` arms do for real, at the cost of training them
again. This script instead feeds the recorded results, in the order they arrived (their
timestamps), to the scheduler classes the sweep itself uses, and reports for each scheduler and
reduction factor the optimiser steps saved and the hypervolume lost against fifo, measured as
bench/early_stopping.py measures them (bench/measures.py: complete and stopped trials with their last metrics,
feasible ones), against one reference point per run: that of every recorded evaluation
(`curve_reference`), so rows of different schedulers, or of another bench on the same curves, compare.

Schedulers replayed (tune_distill.sweep, built by its make_scheduler):
  pareto_sh            ParetoSuccessiveHalving as the config's defaults build it (issue 15: dominance
                       beyond the rung results' standard errors, z = 2; the baseline a yardstick that
                       holds one kept slot; fronts ordered by hypervolume contribution against the
                       report's reference point);
  pareto_sh:plain      the rule before issue 15 (plain dominance, the baseline ranked as a competitor,
                       fronts ordered against the rung's nadir + 10% of the spread);
  pareto_sh:crowding   the default rule, fronts ordered by crowding distance;
  single               successive halving on the first objective alone with pareto_sh's bookkeeping
                       (same rungs, same quota rule; the plain rule);
  asha                 BaselineKeepingASHA (Ray's ASHA on the first objective), grace_period = the
                       first rung, max_t = the last.
pareto_sh and single take options after colons (`make`): plain | noise, z=X, hypervolume |
sweep_hypervolume | crowding, and the measuring knobs competitor | yardstick | reserved (how the
baseline counts), guard and fill=K (the rung waits for K results: ParetoSuccessiveHalving's rung_fill; in
fifo's recorded order a waiting trial is only decided later, see bench/replay_workers.py for its timing).
The baseline is never stopped, as in a sweep.

Rung standard errors: the sweep reports `<metric>_se` with every evaluation, and read_curves keeps them
from a sweep folder; curves saved before that lack them, and are given estimates
(`estimate_standard_errors`: the trial's final standard error as a share of the largest one a mean
of per-question scores in [0, 100] can have, carried to the rung's score; `--se-estimate`).

Limits: the arrival order is fifo's. In a real run a stopped trial frees its slot earlier, so later
trials reach the rungs sooner and may be judged against fewer records; asynchronous decisions can
then differ. Check against a real run: on results/archive/early-stopping-v3 the real pareto_sh arm and its
replay stop the same trials at the same rungs (54.2% fewer steps, 10.0% less hypervolume; the rule
before issue 15).

Input: a sweep folder (its Tune trial folders `tune/trial_*/result.json` hold the curves) or a
`curves.jsonl` written by --save-curves (one line per evaluation; small enough to keep in results/).

Commands (CPU, seconds):
  python bench/replay_schedulers.py results/archive/early-stopping-v3/fifo/curves.jsonl
  python bench/replay_schedulers.py sweeps/early-stopping-v3/fifo \
      --save-curves results/archive/early-stopping-v3/fifo/curves.jsonl
  python bench/replay_schedulers.py CURVES --rungs 40 80 --reduction-factors 2 3 --schedulers pareto_sh single asha
  python bench/replay_schedulers.py results/archive/early-stopping-teacher*/fifo/curves.jsonl
      # replicates: mean, range, and how many runs meet the target per scheduler
  python bench/replay_schedulers.py CURVES --reduction-factors 3 \
      --schedulers pareto_sh pareto_sh:plain pareto_sh:z=1 pareto_sh:yardstick   # the noise rule's choices
The JSON (--json) also holds `rows`: one per (run, scheduler, reduction factor) with run, scheduler,
reduction_factor, steps, steps_saved_pct, hypervolume, hypervolume_loss_pct, meets_target.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.curves import as_records, read_curves, replay  # noqa: E402
from bench.measures import across_runs, arm_hypervolume, common_reference, steps_of, usable_rows  # noqa: E402

SCHEDULERS = ("pareto_sh", "pareto_sh:plain", "pareto_sh:crowding", "single", "asha")


def scheduler_options(name: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(pareto_sh or single, SchedulerSettings changes, measuring knobs) of a scheduler name (see make)."""
    base, *options = name.split(":")
    if base not in ("pareto_sh", "single"):
        raise ValueError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)} (and options, see make)")
    changes: dict[str, Any] = {"rung_rule": "plain"} if base == "single" else {}  # halving as before issue 15
    knobs: dict[str, Any] = {}
    for option in options:
        if option in ("plain", "noise"):
            changes["rung_rule"] = "plain" if option == "plain" else "beyond_error"
        elif option in ("crowding", "hypervolume", "sweep_hypervolume"):
            changes["within_front"] = option
        elif option.startswith("z=") and option[2:].replace(".", "", 1).isdigit():
            changes["noise_z"] = float(option[2:])
        elif option.startswith("margin=") and option[7:].replace(".", "", 1).isdigit():
            knobs["margin"] = float(option[7:])
        elif option in ("competitor", "yardstick", "reserved"):
            knobs["baseline"] = option
        elif option == "guard":
            knobs["guard"] = True
        elif option.startswith("fill=") and option[5:].isdigit():
            knobs["rung_fill"] = int(option[5:])
        else:
            raise ValueError(f"scheduler {name!r}: unknown option {option!r}")
    if changes.get("rung_rule") == "plain":  # the rule before issue 15, with its order unless told otherwise
        changes.setdefault("within_front", "hypervolume")
    if knobs.get("guard") and changes.get("rung_rule") == "plain":
        raise ValueError(f"scheduler {name!r}: guard needs the noise rule")
    return base, changes, knobs


def make(name: str, rungs: Sequence[int], reduction_factor: float, objectives: Sequence[Any]):
    """The scheduler a sweep would build for `name` (through sweep.make_scheduler, the sweep's own factory).

    `name` is `asha`, or `pareto_sh` / `single` followed by options separated by colons: `plain` or
    `noise` (scheduler.rung_rule plain / beyond_error; default: the config's default), `z=X`
    (scheduler.noise_z), `crowding` (scheduler.within_front), and measuring knobs that are not
    settings: `slot` / `noslot` (the baseline takes a kept slot or not), `guard` (the plain order
    proposes the stops; only a trial dominated beyond error can be stopped) and `fill=K` (the scheduler's
    rung_fill: a rung waits for K results; not yet a config key).
    """
    import dataclasses

    from tune_distill.sweep.config import SchedulerSettings
    from tune_distill.sweep.schedulers import make_scheduler

    if name == "asha":  # the benchmark's asha arm: grace_period = first rung, max_t = last
        settings = SchedulerSettings(name="asha", grace_period=min(rungs), max_t=max(rungs),
                                     reduction_factor=reduction_factor)
        return make_scheduler(settings, objectives)
    base, changes, knobs = scheduler_options(name)
    settings = dataclasses.replace(SchedulerSettings(name="pareto_sh", rungs=tuple(rungs),
                                                     reduction_factor=reduction_factor), **changes)
    scheduler = make_scheduler(settings, objectives[:1] if base == "single" else objectives)
    for knob, value in knobs.items():
        setattr(scheduler.ranking if knob == "margin" else scheduler, knob, value)
    return scheduler


# Rung standard errors where the recorded curves lack them (curves saved before --save-curves kept `_se`):
# the standard error of a mean of n per-question scores in [0, 100] with mean f is at most
# sqrt(f (100 - f) / n) (reached when every score is 0 or 100; exact match is such a score). Each trial's
# recorded final standard error of span F1 is a share of that bound (0.60-0.87 over the 32 final records
# of early-stopping-es-fullval-s1 and early-stopping-learners, median POOLED_SHARE); a rung's standard
# error is estimated as that trial's share (or the median where the run recorded none) times the bound
# at the rung's score. `--se-estimate bound` uses the bound itself (share 1: wider errors, more ties).
POOLED_SHARE = 0.785
QUESTION_COUNTS = {"HasAns_": "HasAns_total", "NoAns_": "NoAns_total", "": "total"}
EXACT_OBJECTIVES = ("parameters", "non_embedding_parameters", "bytes_on_disk")


def _count_key(name: str) -> str:
    return next(key for prefix, key in QUESTION_COUNTS.items() if name.startswith(prefix))


def _bound(score: float, count: float) -> float:
    return math.sqrt(max(score, 0.0) * max(100.0 - score, 0.0) / count)


def estimate_standard_errors(curves: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]],
                             names: Sequence[str], mode: str = "trial") -> tuple[list[dict[str, Any]], str]:
    """The curves with `<name>_se` filled in where missing, for each measured (non-size) objective, and a note.

    `records`: the run's trials.jsonl (final metrics: the question counts, and the final standard errors
    the trials' own shares come from). `mode`: 'trial' (the trial's share of the bound, else POOLED_SHARE),
    'bound' (share 1), 'none' (nothing filled in: the scheduler falls back to plain dominance).
    """
    measured = [name for name in names if name not in EXACT_OBJECTIVES and not name.startswith("latency")]
    missing = [name for name in measured if any(f"{name}_se" not in row["metrics"] for row in curves)]
    if not missing:
        return [dict(row) for row in curves], "recorded"
    if mode == "none":
        return [dict(row) for row in curves], "none (not estimated)"
    finals = {str(record.get("trial_id")): record.get("metrics") or {} for record in records}
    estimated, shares_used = [], set()
    for row in curves:
        metrics = dict(row["metrics"])
        final = finals.get(str(row["trial_id"]), {})
        for name in missing:
            count = final.get(_count_key(name)) or next((m.get(_count_key(name)) for m in finals.values()
                                                         if m.get(_count_key(name))), None)
            score = metrics.get(name)
            if f"{name}_se" in metrics or not count or not isinstance(score, (int, float)):
                continue
            share = 1.0
            if mode == "trial":
                final_se, final_score = final.get(f"{name}_se"), final.get(name)
                share = (final_se / _bound(final_score, count) if final_se and final_score
                         and _bound(final_score, count) > 0 else POOLED_SHARE)
            shares_used.add("own" if mode == "trial" and share != POOLED_SHARE else "pooled" if mode == "trial"
                            else "bound")
            metrics[f"{name}_se"] = share * _bound(float(score), float(count))
        estimated.append({**row, "metrics": metrics})
    return estimated, f"estimated ({mode}: {', '.join(sorted(shares_used)) or 'no counts'})"


def curve_reference(curves: Sequence[Mapping[str, Any]], objectives: Sequence[Mapping[str, str]],
                    constraints: Sequence[Mapping[str, Any]]) -> list[float]:
    """The reference point over every recorded evaluation: the same for every scheduler replayed from these
    curves (any arm's trials end on one of them), so rows of different benches on one run compare."""
    records = [{"status": "complete", "metrics": row["metrics"]} for row in curves]
    return common_reference(usable_rows(records, [o["name"] for o in objectives], ("complete",)), objectives,
                            constraints)


def run_name(source: Path) -> str:
    """`results/X/fifo/curves.jsonl`, `sweeps/X/fifo` or `results/X/curves.jsonl` -> X."""
    parts = list(source.parts)
    if parts and parts[-1].endswith(".jsonl"):
        parts.pop()
    if parts and parts[-1] == "fifo":
        parts.pop()
    return parts[-1] if parts else str(source)


def load_run(source: Path, sweep_json: Path | None, rungs: Sequence[int] | None, se_estimate: str = "trial",
             save_curves: str | None = None) -> dict[str, Any]:
    """A recorded run as the replays take it: {objectives, constraints, rungs, curves (rung standard errors
    filled in, `estimate_standard_errors`), standard_errors (how)}. `sweep_json`: default next to the source;
    rungs: given, else the sweep's pareto_sh rungs, else every evaluation step short of the end."""
    folder = source if source.is_dir() else source.parent
    sweep_json = sweep_json or folder / "sweep.json"
    if not sweep_json.is_file():
        raise FileNotFoundError(f"{sweep_json}: not found (give --sweep-json)")
    saved = json.loads(sweep_json.read_text())
    objectives, constraints = saved["objectives"], saved["constraints"]
    names = [o["name"] for o in objectives]
    metric_names = sorted(set(names) | {c["name"] for c in constraints})
    rungs = list(rungs or saved["config"]["scheduler"].get("rungs") or [])
    curves = read_curves(source, metric_names)
    if not rungs:  # a fifo sweep without rungs in its config: every evaluation step short of the end
        rungs = sorted({int(row["step"]) for row in curves if not row.get("final")
                        and (row.get("total_steps") is None or row["step"] < row["total_steps"])})
    if not rungs:
        raise ValueError(f"{sweep_json}: the sweep has no pareto_sh rungs and its curves no evaluation before "
                         "the end; give --rungs")
    if save_curves:
        Path(save_curves).write_text("".join(json.dumps(row) + "\n" for row in curves))
    trials_path = folder / "trials.jsonl"
    records = ([json.loads(line) for line in trials_path.read_text().splitlines() if line.strip()]
               if trials_path.is_file() else [])
    curves, errors = estimate_standard_errors(curves, records, names, se_estimate)
    return {"objectives": objectives, "constraints": constraints, "rungs": rungs, "curves": curves,
            "standard_errors": errors}


def replay_table(source: Path, sweep_json: Path | None, rungs: Sequence[int] | None, factors: Sequence[float],
                 schedulers: Sequence[str], save_curves: str | None = None, se_estimate: str = "trial",
                 target_steps: float = 40.0, target_loss: float = 2.0) -> dict[str, Any]:
    """One fifo run replayed through every scheduler and reduction factor: the table, as --json writes it.

    Each table row: scheduler (the arm's label, 'name rf=3'), name, reduction_factor, stopped, steps,
    steps_saved_pct, hypervolume, hypervolume_loss_pct, meets_target, stops. The reference point is the
    one of every recorded evaluation (`curve_reference`).
    """
    from tune_distill.search import Objective

    run = load_run(source, sweep_json, rungs, se_estimate, save_curves)
    objectives, constraints, rungs, curves, errors = (run[key] for key in ("objectives", "constraints", "rungs",
                                                                            "curves", "standard_errors"))
    names = [o["name"] for o in objectives]
    fifo = {}
    for row in curves:
        fifo[str(row["trial_id"])] = {**row, "stopped": False}
    arms: dict[str, tuple[str, float | None, list[dict[str, Any]]]] = {"fifo": ("fifo", None, as_records(fifo))}
    ranked = [Objective(o["name"], o["direction"]) for o in objectives]
    for name in schedulers:
        for factor in factors:
            last = replay(curves, make(name, rungs, factor, ranked))
            arms[f"{name} rf={factor:g}"] = (name, factor, as_records(last))

    usable = {arm: usable_rows(records, names, ("complete", "stopped")) for arm, (_, _, records) in arms.items()}
    reference = curve_reference(curves, objectives, constraints)
    table = []
    fifo_steps = sum(steps_of(r) for r in arms["fifo"][2])
    fifo_hv, _ = arm_hypervolume(usable["fifo"], objectives, constraints, reference)
    for arm, (name, factor, records) in arms.items():
        steps = sum(steps_of(r) for r in records)
        value, _ = arm_hypervolume(usable[arm], objectives, constraints, reference)
        saved_pct = 100.0 * (1 - steps / fifo_steps) if fifo_steps else None
        loss = 100.0 * (1 - value / fifo_hv) if fifo_hv > 0 else None
        table.append({
            "scheduler": arm, "name": name, "reduction_factor": factor,
            "stopped": sum(r["status"] == "stopped" for r in records), "steps": steps,
            "steps_saved_pct": saved_pct, "hypervolume": value, "hypervolume_loss_pct": loss,
            "meets_target": bool(saved_pct is not None and loss is not None and saved_pct >= target_steps
                                 and loss <= target_loss),
            "stops": sorted((int(r["number"]), steps_of(r)) for r in records if r["status"] == "stopped"),
        })
    bound = clairvoyant(curves, rungs, objectives, constraints, reference, target_loss)
    return {"source": str(source), "run": run_name(source), "trials": len(fifo), "rungs": rungs,
            "objectives": objectives, "constraints": constraints, "standard_errors": errors,
            "reference_point": reference, "table": table, "clairvoyant": bound}


def clairvoyant(curves: Sequence[Mapping[str, Any]], rungs: Sequence[int], objectives: Sequence[Mapping[str, str]],
                constraints: Sequence[Mapping[str, Any]], reference: Sequence[float],
                target_loss: float) -> dict[str, Any]:
    """What a scheduler that knew the final results could save for at most `target_loss`% less hypervolume.

    Every search trial may stop at its first evaluation at or past each rung, or run to its end; the
    baseline runs to its end. Greedy: start with every search trial stopped at its first rung, then let
    the trial whose next stopping point adds the most hypervolume per extra step run on, until the loss
    is within the target. A bound on what rung decisions can reach (greedy, so not always the best).
    """

    names = [o["name"] for o in objectives]
    evaluations: dict[str, list[Mapping[str, Any]]] = {}
    for row in sorted(curves, key=lambda row: row["step"]):
        evaluations.setdefault(str(row["trial_id"]), []).append(row)
    options = {}
    for trial, rows in evaluations.items():
        stops = [next((row for row in rows if row["step"] >= rung), rows[-1]) for rung in sorted(rungs)]
        chain = [row for i, row in enumerate(stops) if row not in stops[:i]]
        chain = [] if rows[0].get("kind") == "baseline" else chain
        options[trial] = chain + ([rows[-1]] if not chain or chain[-1] is not rows[-1] else [])

    def measure(choice: Mapping[str, int]) -> tuple[int, float]:
        last = {trial: {**options[trial][index], "stopped": False} for trial, index in choice.items()}
        records = as_records(last)
        value, _ = arm_hypervolume(usable_rows(records, names, ("complete", "stopped")), objectives, constraints,
                                   reference)
        return sum(steps_of(r) for r in records), value

    full_steps, full = measure({trial: len(chain) - 1 for trial, chain in options.items()})
    choice = {trial: 0 for trial in options}
    steps, value = measure(choice)
    while full > 0 and 100.0 * (1 - value / full) > target_loss:
        best = None
        for trial, index in choice.items():
            for later in range(index + 1, len(options[trial])):
                trial_steps, trial_value = measure({**choice, trial: later})
                gain = (trial_value - value) / max(1, trial_steps - steps)
                if best is None or gain > best[0]:
                    best = (gain, trial, later, trial_steps, trial_value)
        if best is None:
            break
        _, trial, later, steps, value = best
        choice[trial] = later
    return {"steps": steps, "steps_saved_pct": 100.0 * (1 - steps / full_steps) if full_steps else None,
            "hypervolume_loss_pct": 100.0 * (1 - value / full) if full > 0 else None,
            "kept_past_first_rung": sorted((int(options[t][i]["number"]), int(options[t][i]["step"]))
                                           for t, i in choice.items() if i > 0)}


def flat_rows(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (run, scheduler, reduction factor), the keys another replay's rows share (to merge them)."""
    keys = ("steps", "steps_saved_pct", "hypervolume", "hypervolume_loss_pct", "meets_target")
    return [{"run": run["run"], "scheduler": row["name"], "reduction_factor": row["reduction_factor"],
             **{key: row[key] for key in keys}} for run in runs for row in run["table"]]


def print_table(run: Mapping[str, Any]) -> None:
    names = [o["name"] for o in run["objectives"]]
    print(f"{run['source']}: {run['trials']} trials, rungs {run['rungs']}, objectives {names}; reference point "
          f"{', '.join(f'{n} {v:.6g}' for n, v in zip(names, run['reference_point']))}; rung standard errors "
          f"{run['standard_errors']}")
    print(f"{'scheduler':<26} {'stopped':>7} {'steps':>6} {'saved%':>7} {'hv_loss%':>8}  stops (trial@step)")
    for row in run["table"]:
        saved_pct = "-" if row["steps_saved_pct"] is None else f"{row['steps_saved_pct']:.1f}"
        loss = "-" if row["hypervolume_loss_pct"] is None else f"{row['hypervolume_loss_pct']:.2f}"
        stops = " ".join(f"{n}@{s}" for n, s in row["stops"])
        print(f"{row['scheduler']:<26} {row['stopped']:>7} {row['steps']:>6} {saved_pct:>7} {loss:>8}  {stops}")
    bound = run.get("clairvoyant")
    if bound and bound["steps_saved_pct"] is not None:
        kept = " ".join(f"{n}@{s}" for n, s in bound["kept_past_first_rung"])
        print(f"{'clairvoyant (greedy)':<26} {'':>7} {bound['steps']:>6} {bound['steps_saved_pct']:>7.1f} "
              f"{bound['hypervolume_loss_pct']:>8.2f}  kept past the first rung: {kept}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="fifo sweep folders, or curves.jsonl files written by --save-curves "
                                                   "(several: replicates, summarised together)")
    parser.add_argument("--sweep-json", help="the sweep.json with objectives and constraints (default: next to "
                                             "each source)")
    parser.add_argument("--rungs", type=int, nargs="+", help="rungs (default: the sweep's pareto_sh rungs, else "
                                                             "every evaluation step short of the end)")
    parser.add_argument("--reduction-factors", type=float, nargs="+", default=[2.0, 3.0])
    parser.add_argument("--schedulers", nargs="+", default=list(SCHEDULERS),
                        help=f"default: {' '.join(SCHEDULERS)}; pareto_sh and single take options after colons "
                             "(plain, noise, z=X, crowding, slot, noslot, guard: see make)")
    parser.add_argument("--se-estimate", choices=("trial", "bound", "none"), default="trial",
                        help="rung standard errors where the curves lack them: the trial's share of the bound "
                             "(default), the bound, or none (the noise rule then falls back to plain dominance)")
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

    for name in args.schedulers:
        if name != "asha":
            try:
                scheduler_options(name)
            except ValueError as error:
                parser.error(str(error))
    runs = []
    for source in args.sources:
        try:
            runs.append(replay_table(Path(source), Path(args.sweep_json) if args.sweep_json else None, args.rungs,
                                     args.reduction_factors, args.schedulers, args.save_curves, args.se_estimate,
                                     args.target_steps, args.target_loss))
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))
        print_table(runs[-1])
        print()
    command = " ".join(sys.argv)
    if len(runs) == 1:
        output: dict[str, Any] = {**runs[0], "rows": flat_rows(runs), "command": command}
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
        output = {"runs": runs, "rows": flat_rows(runs), "summary": summary,
                  "target": {"steps_saved_pct": args.target_steps, "hypervolume_loss_pct": args.target_loss},
                  "command": command}
    if args.json:
        Path(args.json).write_text(json.dumps(output, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
