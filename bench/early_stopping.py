"""Early stopping: training steps saved and hypervolume lost by pareto_sh and asha, against fifo.

Runs the same sweep (same preset and base overrides, same number of trials) once per scheduler, each
into its own sub-folder of --out with `tune_distill.sweep.run_sweep`:
  fifo       no early stopping (the reference); its searcher proposes the students,
  pareto_sh  Pareto successive halving on the sweep's objectives (intermediate accuracy, parameters),
  asha       Ray's ASHA on the first objective alone, at the same rungs and reduction factor.
With `--trials replay` (the default) the early-stopping arms re-run fifo's students, in fifo's
order and with fifo's trial seeds, through the `replay` searcher: the scheduler is then the only
difference between arms, and a hypervolume loss is damage done by stopping, not a different draw
of students. `--trials search` gives every arm the preset's searcher with the same seed instead
(the arms diverge after the first stop; see below).
For each arm it reports the optimiser steps actually trained (sum over trials of each trial's last
reported `step`), the trials stopped early, the wall time and the hypervolume of the arm's trials,
then prints a table and, on lines of their own, `steps_saved_pct_<arm>: X` and
`hypervolume_loss_pct_<arm>: Y` (relative to fifo: 100 x (1 - arm / fifo)), and a line saying
whether the issue's target (at least 40% fewer steps for at most 2% less hypervolume) is met.
Everything, per trial too, goes to --out/early_stopping.json; each arm's folder also gets the
usual report files (results.csv, pareto.csv, frontier.png, summary.json).

Commands (from the repository root; always under `nice` on the shared machine):
  smoke, offline, 1-2 minutes in all (tiny teacher and data: scores mean nothing, every student
  answers "no answer" everywhere, so hypervolumes are 0 and their losses undefined):
    nice python bench/early_stopping.py --preset smoke --num-samples 6 --out /tmp/es-smoke
  the real one (bench/configs/sweep_es.yaml: the cpu preset reduced to 120 optimiser steps of 16 per
  trial, validated on the whole val.json, objectives span F1 on answerable questions and
  parameters, rungs at 40 and 80 steps, reduction factor 3, 16 trials per arm; measured on an
  otherwise idle 2-core machine with the first 400 validation questions, as the presets had until
  the rung metric's standard error showed them too few: fifo 15 min, pareto_sh 7 min, asha 11 min,
  and with --preset es_teacher, whose students are larger, 25, 13 and 19 min; on the whole split
  es_teacher's fifo arm took 30-40 min and es's 19; --preset es_learners: only students that learn):
    nice python bench/early_stopping.py --preset es --out sweeps/early-stopping
  replicates (another searcher seed: other students), then their mean and spread:
    nice python bench/early_stopping.py --preset es --searcher-seed 1 --out sweeps/early-stopping-s1
    python bench/early_stopping.py --combine sweeps/early-stopping sweeps/early-stopping-s1
  continue an interrupted run (finished arms are kept, an interrupted one resumes):
    nice python bench/early_stopping.py --preset es --out sweeps/early-stopping --resume
The cpu preset itself (`--preset cpu`: 24 trials of 180 steps, rungs at 60 and 120) also works but
takes about three hours for the three arms.

What is measured, precisely:
  * Steps: a trial's last reported `step` (a stopped trial's rung evaluation, a completed trial's
    final step; 0 for a trial that failed before reporting). Steps redone after a retry are not
    counted. `steps_full` is what the same trials would have cost trained to the end (their
    `total_steps`), so `steps_saved_within_pct` is the scheduler's own saving on its own trials,
    apart from any difference in which trials the searcher proposed.
  * Hypervolume: as tune_distill.report.summarise computes it, i.e. over trials that completed
    AND trials stopped early, each with its last metrics (for a stopped trial, its last
    intermediate evaluation: that student exists, its checkpoint is kept, and it appears on the
    sweep's own frontier and in pareto.csv), keeping only those that meet the constraints
    (`exact >= no_answer`), but with ONE reference point common to all arms, so that the values
    compare: for a maximised objective the bound of a constraint on it (the no-answer floor for
    exact), else its minimum over all arms; for a minimised one 1.1 x its maximum over all arms'
    usable trials (report.summarise's rule, applied to the union of the arms instead of one sweep).
    `hypervolume_completed` is the same over completed trials only (stopped trials left out), and
    `hypervolume_own_reference` is the value report.summarise writes in the arm's summary.json.
  * Wall time: Tune's run time of the arm (`sweep.json`, summed over resumed runs) and the
    arm's time in this script (feature and teacher-logit preparation included; the caches live in
    --out/cache and are shared, so the first arm pays for them).

With --trials search, the searcher is seeded identically in every arm, but its suggestions diverge
once early stopping changes what it observes: a stopped trial reaches it as "pruned" (Optuna's
samplers then learn nothing from it), a completed one with its objectives; from the first
suggestion made after such a difference on, the arms propose different students. The hypervolume of
an arm is then that of the students its searcher found under its scheduler, which on a 16-trial
sweep mostly measures which students were drawn (the reason replay is the default).
`same_params_as_fifo` counts the trials whose parameters match fifo's trial of the same number.
Trials of the same number get the same training seed in every arm.

The rungs: the preset's scheduler settings (pareto_sh `rungs`, or `grace_period`/`max_t`, and
`reduction_factor`; --rungs and --reduction-factor override them) are used by pareto_sh; asha gets
grace_period = the first rung and max_t = the last, so that Ray's geometric rungs
(grace_period x reduction_factor^k) are the same steps when pareto_sh's rungs are geometric (a
warning says when they are not). Rungs should be multiples of distill.eval_every_steps: a decision
happens at the first evaluation at or past a rung.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.measures import arm_hypervolume, common_reference, steps_of, usable_rows  # noqa: E402

log = logging.getLogger("bench.early_stopping")

ARMS = ("fifo", "pareto_sh", "asha")
REFERENCE_ARM = "fifo"
RESULT_FILE = "early_stopping.json"
TARGET_STEPS_SAVED_PCT = 40.0
TARGET_HYPERVOLUME_LOSS_PCT = 2.0


# --------------------------------------------------------------------------------------------------
# The arms' sweep configurations
# --------------------------------------------------------------------------------------------------


def asha_rungs(grace_period: int, max_t: int, reduction_factor: float) -> list[float]:
    """The rungs Ray's ASHAScheduler (one bracket) builds.

    grace_period x rf^k for k < int(log(max_t / grace) / log(rf) + 1).
    """
    count = int(np.log(max_t / grace_period) / np.log(reduction_factor) + 1)
    return [grace_period * reduction_factor ** k for k in range(count)]


def replay_config(config: Any, fifo_records: Sequence[Mapping[str, Any]]) -> Any:
    """`config` with the `replay` searcher re-running fifo's searched students in trial-number order."""
    from tune_distill.sweep.config import SweepConfigError

    searched = sorted((r for r in fifo_records if r.get("kind") != "baseline"), key=lambda r: r["number"])
    samples = [r.get("params") for r in searched]
    if not samples or any(not isinstance(sample, Mapping) or not sample for sample in samples):
        raise SweepConfigError("--trials replay: the fifo arm has no searched trials with parameters to replay")
    searcher = dataclasses.replace(config.searcher, name="replay", options={"trials": [dict(s) for s in samples]})
    return dataclasses.replace(config, searcher=searcher)


def arm_configs(config: Any, arms: Sequence[str], rungs: Sequence[int] | None = None,
                reduction_factor: float | None = None) -> tuple[dict[str, Any], list[int]]:
    """One SweepConfig per arm (only the scheduler differs) and the rungs used."""
    from tune_distill.config import RunConfig, apply_overrides
    from tune_distill.sweep.config import SweepConfigError, check_sweep_config
    from tune_distill.sweep.schedulers import pareto_rungs

    settings = config.scheduler
    if reduction_factor is not None:
        settings = dataclasses.replace(settings, reduction_factor=float(reduction_factor))
    if rungs:
        settings = dataclasses.replace(settings, rungs=tuple(int(r) for r in rungs))
    if not settings.rungs and not (settings.grace_period and settings.max_t):
        raise SweepConfigError(f"scheduler {settings.name}: no rungs to compare trials at; give --rungs STEP ...")
    used = list(pareto_rungs(settings))
    if not used:
        raise SweepConfigError(f"scheduler: no rungs below max_t={settings.max_t}; give --rungs STEP ...")
    every = apply_overrides(RunConfig(), config.base).distill.eval_every_steps
    if every <= 0:
        log.warning("base distill.eval_every_steps is not set; unless the space fixes it, trials never evaluate "
                    "before the end and no early stopping can happen")
    else:
        odd = [rung for rung in used if rung % every]
        if odd:
            log.warning("rungs %s are not multiples of distill.eval_every_steps=%d: decisions happen at the first "
                        "evaluation past them", odd, every)
    configs = {}
    for arm in arms:
        if arm == "fifo":
            scheduler = dataclasses.replace(settings, name="fifo")
        elif arm == "pareto_sh":
            scheduler = dataclasses.replace(settings, name="pareto_sh", rungs=tuple(used))
        elif arm == "asha":
            scheduler = dataclasses.replace(settings, name="asha", rungs=(), grace_period=min(used), max_t=max(used))
            ray_rungs = asha_rungs(min(used), max(used), settings.reduction_factor)
            if [float(r) for r in used] != [float(r) for r in ray_rungs]:
                log.warning("asha's rungs %s differ from pareto_sh's %s (Ray's rungs are grace_period x "
                            "reduction_factor^k); the comparison is not at identical steps",
                            [round(r, 2) for r in ray_rungs], used)
        else:
            raise SweepConfigError(f"unknown arm {arm!r}; known: {', '.join(ARMS)}")
        configs[arm] = dataclasses.replace(config, scheduler=scheduler)
        check_sweep_config(configs[arm], f"arm {arm}")
    return configs, used


# --------------------------------------------------------------------------------------------------
# Measures (which trials count, hypervolume, steps: bench/measures.py, shared with the replays)
# --------------------------------------------------------------------------------------------------


def arm_measures(arm_dir: Path, records: Sequence[Mapping[str, Any]], saved: Mapping[str, Any],
                 seconds_here: float) -> dict[str, Any]:
    """Counts, steps and wall times of one arm (hypervolumes are added once every arm is known)."""
    counts: dict[str, int] = {}
    for record in records:
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    steps = sum(steps_of(record) for record in records)
    full = 0
    for record in records:
        total = (record.get("metrics") or {}).get("total_steps")
        full += int(total) if total else steps_of(record)
    runs = saved.get("runs") or []
    return {
        "folder": str(arm_dir),
        "scheduler": saved["config"]["scheduler"],
        "trials": len(records),
        "complete": counts.get("complete", 0),
        "stopped": counts.get("stopped", 0),
        "failed": counts.get("failed", 0),
        "unfinished": counts.get("unfinished", 0),
        "interrupted": bool((saved.get("summary") or {}).get("interrupted", True)),
        "steps_trained": steps,
        "steps_full": full,
        "steps_saved_within_pct": 100.0 * (1.0 - steps / full) if full else None,
        "tune_seconds": round(sum(float(run.get("wall_seconds") or 0.0) for run in runs), 1),
        "script_seconds": round(seconds_here, 1),
    }


def _relative_loss(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference <= 0:
        return None
    return 100.0 * (1.0 - value / reference)


# --------------------------------------------------------------------------------------------------
# Running the arms
# --------------------------------------------------------------------------------------------------


def _comparable(config: Any) -> dict[str, Any]:
    """A sweep config as a dict without what run_sweep rewrites (absolute paths in base, storage)."""
    from tune_distill.sweep.config import sweep_config_to_dict

    data = sweep_config_to_dict(config)
    data.pop("storage_path")
    data["base"] = {key: value for key, value in data["base"].items()
                    if key not in ("data.train_files", "data.val_file", "data.cache_dir", "teacher.path")}
    return data


def finished_arm(arm_dir: Path) -> bool:
    """Whether `arm_dir` holds a sweep that ran to the end (reused as it is)."""
    path = arm_dir / "sweep.json"
    if not path.is_file():
        return False
    summary = json.loads(path.read_text()).get("summary")
    return bool(summary) and not summary.get("interrupted", True)


def run_arm(arm: str, config: Any, arm_dir: Path, resume: bool) -> tuple[list[dict[str, Any]], float]:
    """Run (or reuse, or resume) one arm's sweep; returns its records and the seconds spent here."""
    from tune_distill import report
    from tune_distill.records import read_trials
    from tune_distill.sweep.config import SweepConfigError, sweep_config_from_dict
    from tune_distill.sweep.driver import run_sweep
    from tune_distill.sweep.storage import SWEEP_FILE

    began = time.perf_counter()
    saved_path = arm_dir / SWEEP_FILE
    if saved_path.is_file():
        if not resume:
            raise SweepConfigError(f"{arm_dir} already holds a sweep; give --resume to keep or continue it, or "
                                   "choose another --out")
        saved = json.loads(saved_path.read_text())
        stored = sweep_config_from_dict(saved["config"], str(saved_path))
        if _comparable(stored) != _comparable(config):
            log.warning("arm %s: the saved sweep in %s differs from the one asked for now; its saved settings are used",
                        arm, arm_dir)
        if finished_arm(arm_dir):
            log.info("arm %s: finished sweep found in %s; reused", arm, arm_dir)
            records = read_trials(arm_dir)
            return records, 0.0
        log.info("arm %s: resuming the interrupted sweep in %s", arm, arm_dir)
        records = run_sweep(None, arm_dir, resume=True)
    else:
        log.info("arm %s: %d trials, scheduler %s -> %s", arm, config.num_samples,
                 json.dumps(dataclasses.asdict(config.scheduler)), arm_dir)
        records = run_sweep(config, arm_dir)
    seconds = time.perf_counter() - began
    saved = json.loads(saved_path.read_text())
    report.write_report(read_trials(arm_dir), arm_dir, objectives=saved["objectives"],
                        constraints=saved["constraints"], title=f"early-stopping benchmark: {arm}")
    return records, seconds


def evaluate_arms(folders: Mapping[str, Path], seconds: Mapping[str, float]) -> dict[str, Any]:
    """The per-arm measures and the comparison with fifo, from the arms' folders."""
    from tune_distill import report
    from tune_distill.records import read_trials

    arms: dict[str, dict[str, Any]] = {}
    records: dict[str, list[dict[str, Any]]] = {}
    saved: dict[str, dict[str, Any]] = {}
    for arm, folder in folders.items():
        saved[arm] = json.loads((folder / "sweep.json").read_text())
        records[arm] = read_trials(folder)
        arms[arm] = arm_measures(folder, records[arm], saved[arm], seconds.get(arm, 0.0))

    first = next(iter(saved.values()))
    objectives, constraints = first["objectives"], first["constraints"]
    for arm, data in saved.items():
        if data["objectives"] != objectives or data["constraints"] != constraints:
            log.warning("arm %s has other objectives or constraints (%s, %s) than %s (%s, %s); its hypervolume "
                        "is computed with the first arm's", arm, data["objectives"], data["constraints"],
                        next(iter(saved)), objectives, constraints)
    names = [o["name"] for o in objectives]
    usable = {arm: usable_rows(records[arm], names, ("complete", "stopped")) for arm in records}
    reference = common_reference([row for rows in usable.values() for row in rows], objectives, constraints)
    fifo_params = {r["number"]: r.get("params") for r in records.get(REFERENCE_ARM, [])}
    for arm, measures in arms.items():
        value, count = arm_hypervolume(usable[arm], objectives, constraints, reference)
        completed = [row for row in usable[arm] if row["record"]["status"] == "complete"]
        value_completed, _ = arm_hypervolume(completed, objectives, constraints, reference)
        frame = report.results_frame(records[arm])
        own = report.summarise(frame, objectives, constraints, accuracy=names[0], size=names[-1]) if len(frame) else {}
        pareto = own.get("pareto_trials") or []
        measures.update({
            "hypervolume": value,
            "hypervolume_completed": value_completed,
            "hypervolume_own_reference": (own.get("hypervolume") or {}).get("value"),
            "feasible_points": count,
            "pareto_points": len(pareto),
            "pareto_points_stopped": sum(1 for r in records[arm]
                                         if r["trial_id"] in pareto and r["status"] == "stopped"),
            "same_params_as_fifo": (sum(1 for r in records[arm] if r["number"] in fifo_params
                                        and fifo_params[r["number"]] == r.get("params"))
                                    if REFERENCE_ARM in records else None),
            "trials_detail": [{
                "number": r["number"], "status": r["status"], "step": steps_of(r),
                "total_steps": (r.get("metrics") or {}).get("total_steps"),
                **{name: (r.get("metrics") or {}).get(name) for name in names},
                "params": r.get("params"),
            } for r in records[arm]],
        })

    comparison: dict[str, Any] = {}
    if REFERENCE_ARM in arms:
        fifo = arms[REFERENCE_ARM]
        for arm, measures in arms.items():
            if arm == REFERENCE_ARM:
                continue
            if measures["interrupted"] or fifo["interrupted"]:
                comparison[arm] = {"steps_saved_pct": None, "hypervolume_loss_pct": None,
                                   "hypervolume_completed_loss_pct": None, "tune_time_saved_pct": None,
                                   "meets_target": None, "unfinished": True}
                continue
            saved_pct = (100.0 * (1.0 - measures["steps_trained"] / fifo["steps_trained"])
                         if fifo["steps_trained"] else None)
            loss_pct = _relative_loss(measures["hypervolume"], fifo["hypervolume"])
            comparison[arm] = {
                "steps_saved_pct": saved_pct,
                "hypervolume_loss_pct": loss_pct,
                "hypervolume_completed_loss_pct": _relative_loss(measures["hypervolume_completed"],
                                                                 fifo["hypervolume_completed"]),
                "tune_time_saved_pct": (100.0 * (1.0 - measures["tune_seconds"] / fifo["tune_seconds"])
                                        if fifo["tune_seconds"] else None),
                # None when a measure is undefined (no steps or no hypervolume in fifo)
                "meets_target": (None if saved_pct is None or loss_pct is None else
                                 saved_pct >= TARGET_STEPS_SAVED_PCT and loss_pct <= TARGET_HYPERVOLUME_LOSS_PCT),
            }
    return {
        "objectives": objectives,
        "constraints": constraints,
        "no_answer": first.get("no_answer"),
        "reference_point": dict(zip(names, reference)),
        "hypervolume_counts": "complete and stopped trials (last metrics), feasible only, common reference point",
        "arms": arms,
        "comparison": comparison,
        "target": {"steps_saved_pct_at_least": TARGET_STEPS_SAVED_PCT,
                   "hypervolume_loss_pct_at_most": TARGET_HYPERVOLUME_LOSS_PCT},
    }


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def print_results(results: Mapping[str, Any]) -> None:
    arms, comparison = results["arms"], results["comparison"]
    reference = ", ".join(f"{k} {v:.6g}" for k, v in results["reference_point"].items())
    print(f"hypervolume: complete + stopped trials (last metrics), feasible; common reference point: {reference}")
    header = (f"{'arm':<10} {'trials':>6} {'done':>4} {'stop':>4} {'fail':>4} {'steps':>7} {'saved%':>6} "
              f"{'own%':>5} {'tune_min':>8} {'hypervolume':>12} {'hv_loss%':>8} {'hv_compl':>12} {'pareto':>6} "
              f"{'same':>4}")
    print(header)
    print("-" * len(header))
    for arm, m in arms.items():
        c = comparison.get(arm, {})
        print(f"{arm:<10} {m['trials']:>6} {m['complete']:>4} {m['stopped']:>4} {m['failed']:>4} "
              f"{m['steps_trained']:>7} {_fmt(c.get('steps_saved_pct')):>6} {_fmt(m['steps_saved_within_pct']):>5} "
              f"{m['tune_seconds'] / 60:>8.1f} {m['hypervolume']:>12.5g} "
              f"{_fmt(c.get('hypervolume_loss_pct'), '.2f'):>8} "
              f"{m['hypervolume_completed']:>12.5g} {m['pareto_points']:>6} "
              f"{_fmt(m['same_params_as_fifo'], 'd'):>4}")
    print("(saved%: steps fewer than fifo; own%: steps fewer than the arm's own trials trained to the end; "
          "hv_compl: completed trials only; same: trials with fifo's parameters)")
    for arm, c in comparison.items():
        # machine-readable lines: nan when undefined (unfinished arm, no steps or no hypervolume in fifo)
        for key in ("steps_saved_pct", "hypervolume_loss_pct"):
            print(f"{key}_{arm}: {'nan' if c[key] is None else format(c[key], '.2f')}")
    for arm, c in comparison.items():
        verdict = ("unknown (unfinished sweep)" if c.get("unfinished") else
                   "unknown (a measure is undefined)" if c["meets_target"] is None else
                   "yes" if c["meets_target"] else "no")
        print(f"target_met_{arm}: {verdict} (>= {TARGET_STEPS_SAVED_PCT:g}% fewer steps, "
              f"<= {TARGET_HYPERVOLUME_LOSS_PCT:g}% less hypervolume)")
    if REFERENCE_ARM in arms and arms[REFERENCE_ARM]["hypervolume"] <= 0:
        print("note: fifo's hypervolume is 0 (no feasible trial beats the reference point), so hypervolume losses "
              "are undefined")


def combine(folders: Sequence[Path]) -> dict[str, Any]:
    """Mean, standard deviation and per-replicate values of each arm's comparison with fifo."""
    replicates = []
    for folder in folders:
        path = folder / RESULT_FILE if folder.is_dir() else folder
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no {RESULT_FILE} (expected a folder written by this benchmark)")
        data = json.loads(path.read_text())
        replicates.append({"folder": str(folder), "searcher_seed": (data.get("searcher") or {}).get("seed"),
                           "trials_mode": data.get("trials_mode"), "comparison": data.get("comparison") or {}})
    arms: dict[str, dict[str, Any]] = {}
    for arm in sorted({arm for r in replicates for arm in r["comparison"]}):
        summary: dict[str, Any] = {}
        for key in ("steps_saved_pct", "hypervolume_loss_pct"):
            values = [r["comparison"][arm].get(key) for r in replicates if arm in r["comparison"]]
            numbers = [float(v) for v in values if v is not None]
            summary[key] = {"values": values, "mean": float(np.mean(numbers)) if numbers else None,
                            "std": float(np.std(numbers, ddof=1)) if len(numbers) > 1 else None}
        saved, loss = summary["steps_saved_pct"]["mean"], summary["hypervolume_loss_pct"]["mean"]
        summary["mean_meets_target"] = (None if saved is None or loss is None else
                                        saved >= TARGET_STEPS_SAVED_PCT and loss <= TARGET_HYPERVOLUME_LOSS_PCT)
        arms[arm] = summary
    return {"replicates": replicates, "arms": arms,
            "target": {"steps_saved_pct_at_least": TARGET_STEPS_SAVED_PCT,
                       "hypervolume_loss_pct_at_most": TARGET_HYPERVOLUME_LOSS_PCT}}


def print_combined(combined: Mapping[str, Any]) -> int:
    seeds = ", ".join(f"{r['folder']} (seed {r['searcher_seed']}, {r['trials_mode']})" for r in combined["replicates"])
    print(f"{len(combined['replicates'])} replicates: {seeds}")
    for arm, summary in combined["arms"].items():
        parts = []
        for key in ("steps_saved_pct", "hypervolume_loss_pct"):
            entry = summary[key]
            values = " ".join(_fmt(v, ".1f") for v in entry["values"])
            parts.append(f"{key} {_fmt(entry['mean'], '.2f')} +- {_fmt(entry['std'], '.2f')} [{values}]")
        verdict = {None: "unknown", True: "yes", False: "no"}[summary["mean_meets_target"]]
        print(f"{arm}: {'; '.join(parts)}; target met on the mean: {verdict}")
    print(json.dumps(combined, indent=1, default=str))
    return 0


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", default=None, help="bench/configs/ or configs/sweep_<NAME>.yaml (default es: "
                                                       "the reduced cpu preset; smoke for a quick offline check)")
    source.add_argument("--config", help="a sweep YAML file instead of a preset")
    parser.add_argument("--num-samples", type=int, help="trials per arm, the baseline included (default: the preset's)")
    parser.add_argument("--max-train-examples", type=int, help="base data.max_train_examples (training questions)")
    parser.add_argument("--max-val-examples", type=int, help="base data.max_val_examples (validation questions)")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS,
                        help="schedulers to run (default all; fifo is the reference of the comparison)")
    parser.add_argument("--rungs", type=int, nargs="+", help="rungs (optimiser steps) instead of the preset's")
    parser.add_argument("--reduction-factor", type=float, help="reduction factor instead of the preset's")
    parser.add_argument("--trials", choices=("replay", "search"), default="replay",
                        help="replay (default): the early-stopping arms re-run fifo's students, in order, with the "
                             "replay searcher, so the scheduler is the only difference; search: every arm runs the "
                             "preset's searcher with the same seed (the arms' students diverge after the first stop)")
    parser.add_argument("--searcher-seed", type=int,
                        help="seed of the preset's searcher (default: the preset's); replicates of the benchmark "
                             "differ by it")
    parser.add_argument("--combine", nargs="+", metavar="OUT",
                        help="run nothing: print the mean and spread of the comparisons recorded in these --out "
                             "folders (replicates, e.g. one per --searcher-seed)")
    parser.add_argument("--data", help="folder with train.json (+ train-extra.json) and val.json")
    parser.add_argument("--teacher", help="teacher model folder")
    parser.add_argument("--out", help="output folder, one sub-folder per arm (default sweeps/early-stopping-<preset>)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the finished arms in --out and continue an interrupted one")
    parser.add_argument("--ray-address", help="join this Ray cluster (default: RAY_ADDRESS, else start one here)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.num_samples is not None and args.num_samples < 1:
        parser.error("--num-samples must be >= 1")

    if args.combine:
        return print_combined(combine([Path(folder) for folder in args.combine]))

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("urllib3", "filelock", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from tune_distill.config import ConfigError
    from tune_distill.search import SearcherError
    from tune_distill.sweep.config import load_sweep_config, preset_path, with_overrides
    from tune_distill.sweep.driver import connect_ray

    preset = args.preset or ("es" if not args.config else None)
    name = preset or Path(args.config).stem
    out = Path(args.out or f"sweeps/early-stopping-{name}").expanduser().resolve()
    arms = [arm for arm in ARMS if arm in args.arms]
    began = time.perf_counter()
    try:
        config = load_sweep_config(preset_path(preset) if preset else Path(args.config))
        base: dict[str, Any] = {}
        if args.max_train_examples is not None:
            base["data.max_train_examples"] = args.max_train_examples
        if args.max_val_examples is not None:
            base["data.max_val_examples"] = args.max_val_examples
        if "data.cache_dir" not in config.base:
            base["data.cache_dir"] = str(out / "cache")  # features and teacher logits made once, for every arm
        config = with_overrides(config, base=base, data_dir=args.data, teacher=args.teacher,
                                num_samples=args.num_samples)
        if args.searcher_seed is not None:
            config = dataclasses.replace(config, searcher=dataclasses.replace(config.searcher, seed=args.searcher_seed))
        configs, rungs = arm_configs(config, arms, args.rungs, args.reduction_factor)
        if args.trials == "replay" and REFERENCE_ARM not in arms and not finished_arm(out / REFERENCE_ARM):
            raise ConfigError(f"--trials replay re-runs the students of the {REFERENCE_ARM} arm: run it too "
                              f"(--arms {REFERENCE_ARM} ...) or keep its finished folder in {out}")
        existing = [arm for arm in arms if (out / arm / "sweep.json").is_file()]
        if existing and not args.resume:
            raise ConfigError(f"{out} already holds the arms {', '.join(existing)}; give --resume to keep or continue "
                              "them, or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        log.info("early-stopping benchmark: %s, %d trials per arm, arms %s, rungs %s, reduction factor %g -> %s",
                 name, config.num_samples, arms, rungs, configs[arms[0]].scheduler.reduction_factor, out)
        started_ray, connected = False, False
        seconds: dict[str, float] = {}
        try:
            for arm in arms:
                if not connected and not finished_arm(out / arm):
                    started_ray, _ = connect_ray(args.ray_address)  # one Ray instance for all the arms
                    connected = True
                arm_config = configs[arm]
                if args.trials == "replay" and arm != REFERENCE_ARM:
                    from tune_distill.records import read_trials

                    arm_config = replay_config(arm_config, read_trials(out / REFERENCE_ARM))
                _, seconds[arm] = run_arm(arm, arm_config, out / arm, args.resume)
                if (json.loads((out / arm / "sweep.json").read_text()).get("summary") or {}).get("interrupted", True):
                    log.warning("arm %s was interrupted; the remaining arms are not started", arm)
                    break
        finally:
            if started_ray:
                import ray

                ray.shutdown()
    except (ConfigError, SearcherError, FileNotFoundError, ConnectionError) as error:
        log.error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        return 2

    previous = out / RESULT_FILE
    if previous.is_file():  # arms reused as they were keep the time this script spent on them then
        earlier = json.loads(previous.read_text()).get("arms", {})
        for arm, spent in seconds.items():
            if spent == 0.0 and arm in earlier:
                seconds[arm] = float(earlier[arm].get("script_seconds") or 0.0)
    results = evaluate_arms({arm: out / arm for arm in seconds}, seconds)
    results.update({
        "preset": name,
        "num_samples": config.num_samples,
        "rungs": rungs,
        "reduction_factor": configs[arms[0]].scheduler.reduction_factor,
        "base_overrides": base,
        "searcher": dataclasses.asdict(config.searcher),
        "trials_mode": args.trials,
        "seconds": round(time.perf_counter() - began, 1),
        "command": " ".join(sys.argv),
    })
    (out / RESULT_FILE).write_text(json.dumps(results, indent=1, default=str))
    print_results(results)
    print(f"results: {out / RESULT_FILE}")
    interrupted = [arm for arm, m in results["arms"].items() if m["interrupted"]] + \
        [arm for arm in arms if arm not in seconds]
    if interrupted:
        print(f"unfinished arms (interrupted or not started): {', '.join(interrupted)}; continue with --resume "
              f"--out {out}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
