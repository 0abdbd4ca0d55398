"""Replay a fifo sweep's recorded learning curves through Syne Tune's MOASHA, beside our schedulers' replays.

The peer comparison of issue 15: the same recorded evaluations that bench/replay_schedulers.py feeds
to our schedulers are fed, in the same order (their timestamps), to Syne Tune's own MOASHA scheduler
object (`syne_tune.optimizer.schedulers.multiobjective.MOASHA`: its on_trial_add / on_trial_result /
on_trial_complete decide; nothing of its rung rule is rewritten here). Why its API first, and its
simulator backend only as a check (--simulator, arms NAME@sim: Syne Tune's Tuner with a
UserBlackboxBackend over a tabulated blackbox of exactly these curves, the sweep's max_concurrent
workers, durations from the recorded timestamps): the simulator reorders arrivals (a stopped trial frees
its worker, later trials start sooner, and even its fifo run need not reproduce Ray's order, which the
table's `simulator` line reports), which replay_schedulers does not do; driving the scheduler in fifo's
recorded order gives both sides identical inputs, so a difference in the table is a difference of rule.

Arms (each at every reduction factor):
  moasha               MOASHA with its default priority (NonDominatedPriority: nondominated_sort, whose
                       result is an ORDER of the trials, read by the bracket as one priority per trial);
  moasha:ranks         the same order turned into one rank per trial (the one-line fix; see results/archive/moasha.md);
  moasha:ranks+enet    also the epsilon-net inside each front read as the ranks it returns, not as an order.
Same setting as the sweep: objectives from the run's sweep.json (a maximised one is negated, as MOASHA
minimises every metric), the run's rungs (MOASHA's geometric rungs grace x rf^k are replaced by them:
for rf 2 they coincide, 40 and 80; for rf 3 MOASHA alone would have only 40 below max_t 120), max_t =
the trials' total steps. The baseline is reported to MOASHA (it sits in the rungs, as in our
schedulers, where it is ranked but never stopped) and a STOP for it is ignored.
Accounting: bench/curves.py's records (as_records) and bench/measures.py's measures (steps_of,
usable_rows, common_reference, arm_hypervolume), one reference point per run over the union of every
arm's usable trials: fifo, MOASHA's arms, and our schedulers' arms rebuilt from the run's
replay.json (bench/replay_schedulers.py's --json, beside fifo/ or beside the curves; its `stops`), whose
figures are recomputed against that point and checked against the file.

Must not know: Ray, torch, our schedulers' code (their replay comes from replay.json), or anything of
Syne Tune beyond the MOASHA object and its priority functions. Needs syne-tune (a venv of its own:
`python -m venv /work/venv-syne && /work/venv-syne/bin/pip install syne-tune numpy pyyaml pandas`;
--simulator also needs huggingface_hub, which syne_tune.blackbox_repository imports; nothing is downloaded).

Commands (CPU, seconds; from the repository root):
  PYTHONPATH=. /work/venv-syne/bin/python bench/replay_moasha.py \
      results/archive/early-stopping-learners/fifo/curves.jsonl
  PYTHONPATH=. nice -n 19 /work/venv-syne/bin/python bench/replay_moasha.py --simulator \
      results/archive/early-stopping-*/fifo/curves.jsonl --json results/archive/replay-moasha.json \
      --markdown /tmp/tables.md
  (results/archive/moasha.md gives the exact command with its --group summaries)
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.curves import as_records, read_curves, replay  # noqa: E402
from bench.measures import across_runs, arm_hypervolume, common_reference, steps_of, usable_rows  # noqa: E402

PRIORITIES = ("moasha", "moasha:ranks", "moasha:ranks+enet")
TARGET_STEPS, TARGET_LOSS = 40.0, 2.0


# --------------------------------------------------------------------------------------------------
# MOASHA's priorities: its default, and the two readings fixed
# --------------------------------------------------------------------------------------------------


def ranks_of(order: Sequence[int]) -> np.ndarray:
    """The rank of each item (position in `order`), for an order listing item indices best-first."""
    ranks = np.empty(len(order), dtype=int)
    ranks[np.asarray(order, dtype=int)] = np.arange(len(order))
    return ranks


def make_priority(name: str):
    """The MOPriority object MOASHA is given for arm `name` (None for its own default)."""
    from syne_tune.optimizer.schedulers.multiobjective.multiobjective_priority import NonDominatedPriority
    from syne_tune.optimizer.schedulers.multiobjective.non_dominated_priority import (
        compute_epsilon_net,
        pareto_efficient,
    )

    class RankedNonDominated(NonDominatedPriority):
        """NonDominatedPriority whose order is handed to the bracket as one rank per trial."""

        def priority_unsafe(self, objectives: np.ndarray) -> np.ndarray:
            return ranks_of(super().priority_unsafe(objectives))

    class RankedFrontsEpsilonNet(NonDominatedPriority):
        """Ranks per trial, fronts first, each front in the order its epsilon-net chose."""

        def priority_unsafe(self, objectives: np.ndarray) -> np.ndarray:
            remaining, order = np.arange(len(objectives)), []
            while remaining.size:
                front_mask = pareto_efficient(objectives[remaining])
                front = remaining[front_mask]
                order.extend(front[np.argsort(compute_epsilon_net(objectives[front], dim=self.dim))].tolist())
                remaining = remaining[~front_mask]
            return ranks_of(order)

    if name == "moasha":
        return None
    if name == "moasha:ranks":
        return RankedNonDominated()
    if name == "moasha:ranks+enet":
        return RankedFrontsEpsilonNet()
    raise ValueError(f"unknown MOASHA arm {name!r}; known: {', '.join(PRIORITIES)}")


class MOASHAReplay:
    """Syne Tune's MOASHA behind replay_schedulers' `on_result(trial_id, result)` interface."""

    def __init__(self, priority: str, objectives: Sequence[Mapping[str, str]], rungs: Sequence[int], max_t: int,
                 reduction_factor: float):
        from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

        self.objectives = list(objectives)
        self.scheduler = MOASHA(config_space={}, metrics=[o["name"] for o in self.objectives], do_minimize=True,
                                time_attr="step", max_t=int(max_t), grace_period=int(min(rungs)),
                                reduction_factor=float(reduction_factor), brackets=1,
                                multiobjective_priority=make_priority(priority))
        for bracket in self.scheduler.brackets:  # the run's rungs, highest first as the bracket keeps them
            bracket.rungs = [(int(rung), {}) for rung in sorted(set(rungs), reverse=True)]
        self.trials: dict[str, Any] = {}
        self.decisions: list[dict[str, Any]] = []

    def rung_values(self, trial_id: int, step: int) -> list[list[float]]:
        """The values already recorded at the rung this result will be judged at (the bracket's own choice of
        rung: the highest one reached and not yet recorded for the trial); [] if none or no rung."""
        for milestone, recorded in self.scheduler.trial_info[trial_id].rungs:
            if step >= milestone and trial_id not in recorded:
                return [list(values.values()) for values in recorded.values()]
        return []

    def on_result(self, trial_id: str, result: Mapping[str, Any]) -> str:
        from syne_tune.backend.trial_status import Trial
        from syne_tune.optimizer.scheduler import SchedulerDecision

        if trial_id not in self.trials:
            self.trials[trial_id] = Trial(trial_id=len(self.trials), config={}, creation_time=datetime.now())
            self.scheduler.on_trial_add(self.trials[trial_id])
        trial = self.trials[trial_id]
        reported = {"step": int(result["step"])}
        for objective in self.objectives:  # MOASHA minimises every metric
            value = float(result[objective["name"]])
            reported[objective["name"]] = -value if objective["direction"] == "max" else value
        total = result.get("total_steps")
        if result.get("final") or reported["step"] >= self.scheduler.max_t or (total and reported["step"] >= total):
            self.scheduler.on_trial_complete(trial, reported)  # done: nothing to decide
            return SchedulerDecision.CONTINUE
        seen = self.rung_values(trial.trial_id, reported["step"])
        decision = self.scheduler.on_trial_result(trial, reported)
        protected = decision == SchedulerDecision.STOP and result.get("kind") == "baseline"
        record = {"number": result.get("number"), "step": reported["step"], "decision": decision,
                  "protected": protected}
        if seen:  # what the same rung would say if the order were read as ranks; is the trial non-dominated there
            from syne_tune.optimizer.schedulers.multiobjective.non_dominated_priority import (
                nondominated_sort,
                pareto_efficient,
            )

            values = np.array(seen + [[reported[o["name"]] for o in self.objectives]], dtype=float)
            rank = ranks_of(nondominated_sort(values, dim=0))[-1]
            keep = rank / len(values) <= 1 / self.scheduler.reduction_factor  # the bracket's own threshold
            record["rank_decision"] = SchedulerDecision.CONTINUE if keep else SchedulerDecision.STOP
            record["non_dominated"] = bool(pareto_efficient(values)[-1])
            newcomer, peers = values[-1], values[:-1]
            record["dominates_all"] = bool(np.all(np.all(newcomer <= peers, axis=1) & np.any(newcomer < peers, axis=1)))
        self.decisions.append(record)
        return SchedulerDecision.CONTINUE if protected else decision


# --------------------------------------------------------------------------------------------------
# The same curves through Syne Tune's simulator backend (a tabulated blackbox, simulated workers)
# --------------------------------------------------------------------------------------------------


def elapsed_times(rows: Sequence[Mapping[str, Any]]) -> list[float]:
    """Cumulative seconds at each of one trial's evaluations (sorted by step) from their timestamps; the first
    segment, whose start is not recorded, is taken as long per step as the second (or 1 s per step alone)."""
    steps = [float(row["step"]) for row in rows]
    stamps = [float(row["timestamp"]) for row in rows]
    rate = (stamps[1] - stamps[0]) / (steps[1] - steps[0]) if len(rows) > 1 and steps[1] > steps[0] else 1.0
    elapsed = [max(rate, 1e-3) * steps[0]]
    for index in range(1, len(rows)):
        elapsed.append(elapsed[-1] + max(stamps[index] - stamps[index - 1], 1e-3))
    return elapsed


def simulate(curves: Sequence[Mapping[str, Any]], priority: str | None, objectives: Sequence[Mapping[str, str]],
             rungs: Sequence[int], max_t: int, reduction_factor: float, n_workers: int) -> dict[str, Any]:
    """Replay through Syne Tune's Tuner and UserBlackboxBackend: the trials are proposed in number order, each
    trial's results come from the table of its recorded evaluations at their recorded durations, `n_workers` run
    at once. `priority` None: no early stopping (every result CONTINUE: the check of the simulated order).
    Returns {"last": curves.replay's shape, "order": [(number, step) in arrival order]}."""
    import contextlib
    import io
    import logging
    import os
    import tempfile

    import pandas as pd
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend
    from syne_tune.config_space import choice, randint
    from syne_tune.optimizer.scheduler import SchedulerDecision, TrialSuggestion
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

    by_number: dict[int, list[Mapping[str, Any]]] = {}
    for row in curves:
        by_number.setdefault(int(row["number"]), []).append(row)
    numbers = sorted(by_number)
    steps = sorted({int(row["step"]) for row in curves})
    names = [f"min:{o['name']}" for o in objectives]
    table = np.zeros((len(numbers), 1, len(steps), len(names) + 1))
    for index, number in enumerate(numbers):
        rows = sorted(by_number[number], key=lambda row: row["step"])
        if [int(row["step"]) for row in rows] != steps:
            raise ValueError(f"trial {number}: evaluated at {[row['step'] for row in rows]}, not at every {steps}")
        for column, objective in enumerate(objectives):
            sign = -1.0 if objective["direction"] == "max" else 1.0
            table[index, 0, :, column] = [sign * float(row["metrics"][objective["name"]]) for row in rows]
        table[index, 0, :, -1] = elapsed_times(rows)
    blackbox = BlackboxTabular(
        # two columns: with one, the table's lookup (.loc[(n,)] on a plain index) fails under pandas 3
        hyperparameters=pd.DataFrame({"trial": numbers, "copy": 0}), configuration_space={"trial": choice(numbers),
                                                                                          "copy": 0},
        fidelity_space={"step": randint(1, max(max_t, max(steps)))}, objectives_evaluations=table,
        fidelity_values=np.array(steps), objectives_names=[*names, "elapsed_time"])
    kinds = {number: by_number[number][0].get("kind") for number in numbers}
    arrivals: list[tuple[int, int]] = []
    decided: dict[int, tuple[int, bool]] = {}

    class Replayed(MOASHA):
        """MOASHA proposing the recorded trials in order; the baseline's STOP ignored; everything seen kept."""

        def __init__(self):
            super().__init__(config_space={"trial": choice(numbers)}, metrics=names, do_minimize=True,
                             time_attr="step", max_t=int(max_t), grace_period=int(min(rungs)),
                             reduction_factor=float(reduction_factor), brackets=1,
                             multiobjective_priority=make_priority(priority) if priority else None)
            for bracket in self.brackets:
                bracket.rungs = [(int(rung), {}) for rung in sorted(set(rungs), reverse=True)]
            self.queue, self.number_of = list(numbers), {}

        def suggest(self):
            return TrialSuggestion.start_suggestion({"trial": self.queue.pop(0), "copy": 0}) if self.queue else None

        def on_trial_add(self, trial):
            super().on_trial_add(trial)
            self.number_of[trial.trial_id] = int(trial.config["trial"])

        def on_trial_result(self, trial, result):
            number, step = self.number_of[trial.trial_id], int(result["step"])
            arrivals.append((number, step))
            if priority is None or step >= max_t:
                decision = SchedulerDecision.CONTINUE if step < max_t else SchedulerDecision.STOP
            else:
                decision = super().on_trial_result(trial, result)
                if decision == SchedulerDecision.STOP and kinds[number] == "baseline":
                    decision = SchedulerDecision.CONTINUE
            decided[number] = (step, decision == SchedulerDecision.STOP and step < max_t)
            return decision

    backend = UserBlackboxBackend(blackbox=blackbox, elapsed_time_attr="elapsed_time", seed=0)
    quiet = logging.getLogger("syne_tune")
    level, previous = quiet.level, os.environ.get("SYNETUNE_FOLDER")
    with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(io.StringIO()):  # its progress prints
        os.environ["SYNETUNE_FOLDER"] = folder
        quiet.setLevel(logging.WARNING)
        try:
            Tuner(trial_backend=backend, scheduler=Replayed(), n_workers=int(n_workers), sleep_time=0,
                  stop_criterion=StoppingCriterion(max_num_trials_finished=len(numbers)),
                  callbacks=[SimulatorCallback()], save_tuner=False, results_update_interval=1e9,
                  print_update_interval=1e9, tuner_name="replay-moasha", suffix_tuner_name=False).run()
        finally:
            quiet.setLevel(level)
            if previous is None:
                os.environ.pop("SYNETUNE_FOLDER", None)
            else:
                os.environ["SYNETUNE_FOLDER"] = previous
    last = {}
    for number, (step, stopped) in decided.items():
        row = next(row for row in by_number[number] if int(row["step"]) == step)
        last[str(row["trial_id"])] = {**row, "stopped": stopped}
    return {"last": last, "order": arrivals}


# --------------------------------------------------------------------------------------------------
# One run: the arms and their accounting
# --------------------------------------------------------------------------------------------------


def records_from_stops(curves: Sequence[Mapping[str, Any]], stops: Sequence[Sequence[int]]) -> list[dict]:
    """A replayed arm's records rebuilt from its (trial number, step) stops: the stopped trial's evaluation at
    that step, every other trial's last one (what curves.replay leaves)."""
    stop_at = {int(number): int(step) for number, step in stops}
    last: dict[str, dict[str, Any]] = {}
    for row in curves:
        trial_id, number = str(row["trial_id"]), int(row["number"])
        if number in stop_at and row["step"] > stop_at[number]:
            continue
        last[trial_id] = {**row, "stopped": number in stop_at and row["step"] == stop_at[number]}
    return as_records(last)


def account(arms: Mapping[str, Sequence[Mapping[str, Any]]], objectives: Sequence[Mapping[str, str]],
            constraints: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[dict[str, Any]]]:
    """(reference point, one row per arm): steps and hypervolume against fifo, as replay_schedulers.replay_table."""
    names = [o["name"] for o in objectives]
    usable = {arm: usable_rows(records, names, ("complete", "stopped")) for arm, records in arms.items()}
    reference = common_reference([row for rows in usable.values() for row in rows], objectives, constraints)
    fifo_steps = sum(steps_of(r) for r in arms["fifo"])
    fifo_hv, _ = arm_hypervolume(usable["fifo"], objectives, constraints, reference)
    table = []
    for arm, records in arms.items():
        steps = sum(steps_of(r) for r in records)
        value, _ = arm_hypervolume(usable[arm], objectives, constraints, reference)
        saved = 100.0 * (1 - steps / fifo_steps) if fifo_steps else None
        loss = 100.0 * (1 - value / fifo_hv) if fifo_hv > 0 else None
        scheduler, _, factor = arm.partition(" rf=")
        table.append({
            "scheduler": scheduler, "reduction_factor": float(factor) if factor else None,
            "stopped": sum(r["status"] == "stopped" for r in records), "steps": steps, "steps_saved_pct": saved,
            "hypervolume": value, "hypervolume_loss_pct": loss,
            "meets_target": saved is not None and loss is not None and saved >= TARGET_STEPS and loss <= TARGET_LOSS,
            "stops": sorted((int(r["number"]), steps_of(r)) for r in records if r["status"] == "stopped"),
        })
    return reference, table


def run_name(source: Path) -> str:
    """results/archive/early-stopping-v3/fifo/curves.jsonl -> early-stopping-v3."""
    parts = source.resolve().parts
    for index in range(len(parts) - 1, 0, -1):
        if parts[index] == "fifo":
            return parts[index - 1]
    return source.parent.name if source.is_file() else source.name


def rung_peers(order: Sequence[tuple[int, int]], rungs: Sequence[int]) -> dict[tuple[int, int], frozenset[int]]:
    """For each (trial, rung) in an arrival order: the trials that reached that rung before it."""
    peers, seen = {}, {rung: set() for rung in rungs}
    for number, step in order:
        if step in seen:
            peers[(number, step)] = frozenset(seen[step])
            seen[step].add(number)
    return peers


def moasha_table(source: Path, factors: Sequence[float], priorities: Sequence[str],
                 rungs: Sequence[int] | None = None, simulator: bool = False) -> dict[str, Any]:
    """One fifo run replayed through MOASHA's arms, beside our arms from its replay.json."""
    folder = source if source.is_dir() else source.parent
    sweep_json = folder / "sweep.json"
    if not sweep_json.is_file():
        raise FileNotFoundError(f"{sweep_json}: not found")
    saved = json.loads(sweep_json.read_text())
    objectives, constraints = saved["objectives"], saved["constraints"]
    metric_names = sorted({o["name"] for o in objectives} | {c["name"] for c in constraints})
    rungs = sorted(int(r) for r in (rungs or saved["config"]["scheduler"].get("rungs") or []))
    if not rungs:
        raise ValueError(f"{sweep_json}: the sweep has no rungs; give --rungs")
    curves = read_curves(source, metric_names)
    totals = {int(row["total_steps"]) for row in curves if row.get("total_steps")}
    max_t = max(totals) if totals else max(int(row["step"]) for row in curves)

    fifo = {str(row["trial_id"]): {**row, "stopped": False} for row in curves}
    arms: dict[str, list[dict[str, Any]]] = {"fifo": as_records(fifo)}
    decisions: dict[str, list[dict[str, Any]]] = {}
    for name in priorities:
        for factor in factors:
            scheduler = MOASHAReplay(name, objectives, rungs, max_t, factor)
            arms[f"{name} rf={factor:g}"] = as_records(replay(curves, scheduler))
            decisions[f"{name} rf={factor:g}"] = scheduler.decisions
    simulated: dict[str, Any] = {}
    if simulator:
        n_workers = int(saved["config"].get("max_concurrent") or 1)
        try:
            check = simulate(curves, None, objectives, rungs, max_t, factors[0], n_workers)
        except ValueError as error:  # e.g. a trial that failed part-way has no full row in the table
            simulated = {"n_workers": n_workers, "skipped": str(error)}
        else:
            recorded = [(int(row["number"]), int(row["step"])) for row in curves]
            simulated = {"n_workers": n_workers, "fifo_order_matches": check["order"] == recorded,
                         "fifo_rung_peers_match": rung_peers(check["order"], rungs) == rung_peers(recorded, rungs)}
            for name in priorities:
                for factor in factors:
                    result = simulate(curves, name, objectives, rungs, max_t, factor, n_workers)
                    arms[f"{name}@sim rf={factor:g}"] = as_records(result["last"])

    ours: dict[str, Any] = {}
    replay_json = (folder.parent if folder.name == "fifo" else folder) / "replay.json"
    if replay_json.is_file():
        theirs = json.loads(replay_json.read_text())
        numbers = {int(row["number"]) for row in curves}
        same_run = theirs.get("rungs") == rungs and theirs.get("trials", len(fifo)) == len(fifo) and all(
            "stops" in row and {int(n) for n, _ in row["stops"]} <= numbers for row in theirs["table"])
        if same_run:
            ours = {row["scheduler"]: row for row in theirs["table"] if row["scheduler"] != "fifo"}
            for arm, row in ours.items():
                arms[arm] = records_from_stops(curves, row["stops"])
    reference, table = account(arms, objectives, constraints)
    for row in table:
        arm = row["scheduler"] + (f" rf={row['reduction_factor']:g}" if row["reduction_factor"] else "")
        row["source"] = ("replay.json" if arm in ours else "syne_tune" if arm in decisions
                         else "syne_tune simulator" if "@sim" in arm else "curves")
        if arm in ours:  # the same accounting must give the file's figures (up to the reference point)
            row["matches_replay_json"] = bool(row["steps"] == ours[arm]["steps"] and np.isclose(
                row["hypervolume_loss_pct"], ours[arm]["hypervolume_loss_pct"], atol=1e-9))
        if arm in decisions:
            made = decisions[arm]
            row["baseline_stops_ignored"] = sum(d["protected"] for d in made)
            row["decisions_unlike_ranks"] = sum("rank_decision" in d and d["rank_decision"] != d["decision"]
                                                for d in made)
            row["rung_decisions"] = sum("rank_decision" in d for d in made)
            row["stopped_ranks_keep"] = sum(d.get("rank_decision") == "CONTINUE" and d["decision"] == "STOP"
                                            for d in made)
            row["non_dominated_stopped"] = sum(d.get("non_dominated", False) and d["decision"] == "STOP"
                                               for d in made)
            row["dominant_stopped"] = sum(d.get("dominates_all", False) and d["decision"] == "STOP" for d in made)
    return {"run": run_name(source), "source": str(source), "trials": len(fifo), "rungs": rungs, "max_t": max_t,
            "objectives": objectives, "constraints": constraints, "reference_point": reference,
            "replay_json": str(replay_json) if ours else None, "simulator": simulated or None, "table": table}


def print_run(run: Mapping[str, Any]) -> None:
    print(f"{run['run']}: {run['trials']} trials, rungs {run['rungs']}, max_t {run['max_t']}, reference point "
          f"{run['reference_point']}, our arms from {run['replay_json'] or '-'}")
    if (run.get("simulator") or {}).get("skipped"):
        print(f"simulator: skipped ({run['simulator']['skipped']})")
    elif run.get("simulator"):
        print(f"simulator: {run['simulator']['n_workers']} workers; fifo simulated: arrival order as recorded "
              f"{run['simulator']['fifo_order_matches']}, same peers at every rung "
              f"{run['simulator']['fifo_rung_peers_match']}")
    print(f"{'scheduler':<26} {'rf':>3} {'stopped':>7} {'steps':>6} {'saved%':>7} {'hv_loss%':>8} {'meets':>5}  stops")
    for row in run["table"]:
        factor = "-" if row["reduction_factor"] is None else f"{row['reduction_factor']:g}"
        check = "" if row.get("matches_replay_json", True) else "  (differs from replay.json)"
        if "decisions_unlike_ranks" in row:
            check += (f"  [of {row['rung_decisions']} rung decisions: unlike ranks {row['decisions_unlike_ranks']} "
                      f"(stopped where ranks keep {row['stopped_ranks_keep']}), "
                      f"non-dominated stopped {row['non_dominated_stopped']}, dominating all stopped "
                      f"{row['dominant_stopped']}; baseline stops ignored {row['baseline_stops_ignored']}]")
        stops = " ".join(f"{n}@{s}" for n, s in row["stops"])
        print(f"{row['scheduler']:<26} {factor:>3} {row['stopped']:>7} {row['steps']:>6} "
              f"{row['steps_saved_pct']:>7.1f} {row['hypervolume_loss_pct']:>8.2f} {str(row['meets_target']):>5}  "
              f"{stops}{check}")


def summarise(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """measures.across_runs over the arms every run has."""
    def arm(row: Mapping[str, Any]) -> str:
        return row["scheduler"] + (f" rf={row['reduction_factor']:g}" if row["reduction_factor"] else "")

    common = [arm(row) for row in runs[0]["table"] if all(arm(row) in {arm(r) for r in run["table"]} for run in runs)]
    tables = [{"table": [{**row, "scheduler": arm(row)} for row in run["table"] if arm(row) in common]}
              for run in runs]
    return across_runs(tables, TARGET_STEPS, TARGET_LOSS)


def markdown(runs: Sequence[Mapping[str, Any]], summaries: Mapping[str, Any]) -> str:
    """The note's tables: per reduction factor, every arm on every run (steps saved % / hypervolume loss %, a star
    where the target is met), then each group's summary."""
    names = [run["run"].removeprefix("early-stopping-") or run["run"] for run in runs]
    arms = list(dict.fromkeys((row["scheduler"], row["reduction_factor"]) for run in runs for row in run["table"]))
    lines = []
    for factor in sorted({f for _, f in arms if f is not None}):
        lines += [f"reduction factor {factor:g} (cells: steps saved % / hypervolume loss %, * = target met)", "",
                  "| scheduler | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for scheduler, arm_factor in arms:
            if arm_factor != factor:
                continue
            cells = []
            for run in runs:
                row = next((r for r in run["table"] if (r["scheduler"], r["reduction_factor"]) == (scheduler, factor)),
                           None)
                cells.append("-" if row is None else f"{row['steps_saved_pct']:.1f} / {row['hypervolume_loss_pct']:.2f}"
                             + (" *" if row["meets_target"] else ""))
            lines.append(f"| {scheduler} | " + " | ".join(cells) + " |")
        lines.append("")
    for group, summary in summaries.items():
        lines += [f"{group} ({len(summary['runs'])} runs: {', '.join(summary['runs'])})", "",
                  "| arm | steps saved % mean [min, max] | hypervolume loss % mean [min, max] | meets target |",
                  "|---|---|---|---|"]
        for row in summary["summary"]:
            saved, loss = row["steps_saved_pct"], row["hypervolume_loss_pct"]
            lines.append(f"| {row['scheduler']} | {saved['mean']:.1f} [{saved['min']:.1f}, {saved['max']:.1f}] | "
                         f"{loss['mean']:.2f} [{loss['min']:.2f}, {loss['max']:.2f}] | "
                         f"{row['meets_target']}/{row['runs']} |")
        lines.append("")
    return "\n".join(lines)


def compact_json(value: Any, indent: str = "") -> str:
    """JSON with one line per list item of dicts and per short value (a readable, diffable file)."""
    if isinstance(value, dict) and len(json.dumps(value)) > 120:
        inner = indent + " "
        items = [f"{inner}{json.dumps(key)}: {compact_json(item, inner)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        inner = indent + " "
        return "[\n" + ",\n".join(inner + json.dumps(item) for item in value) + "\n" + indent + "]"
    return json.dumps(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="fifo curves.jsonl files (or sweep folders), with sweep.json "
                                                   "beside them and optionally replay.json one folder up")
    parser.add_argument("--reduction-factors", type=float, nargs="+", default=[2.0, 3.0])
    parser.add_argument("--priorities", nargs="+", default=list(PRIORITIES), choices=PRIORITIES)
    parser.add_argument("--rungs", type=int, nargs="+", help="rungs (default: each run's sweep.json rungs)")
    parser.add_argument("--simulator", action="store_true",
                        help="also run every MOASHA arm through Syne Tune's simulator backend (arms NAME@sim): "
                             "a tabulated blackbox of the curves, the sweep's max_concurrent workers, the recorded "
                             "durations; stopped trials free their worker, so the arrival order then differs")
    parser.add_argument("--group", action="append", default=[], metavar="NAME=RUN,RUN",
                        help="also summarise these runs together (run names as printed)")
    parser.add_argument("--json", help="write every run's table, the rows and the summaries here")
    parser.add_argument("--markdown", help="write the tables as markdown here (results/archive/moasha.md quotes them)")
    args = parser.parse_args(argv)

    runs = []
    for source in args.sources:
        try:
            runs.append(moasha_table(Path(source), args.reduction_factors, args.priorities, args.rungs,
                                     args.simulator))
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))
        print_run(runs[-1])
        print()
    groups = {"all": [run["run"] for run in runs]}
    for spec in args.group:
        name, _, members = spec.partition("=")
        groups[name] = [m for m in members.split(",") if m]
    summaries = {}
    for name, members in groups.items():
        chosen = [run for run in runs if run["run"] in members]
        if len(chosen) < 2:
            continue
        summaries[name] = {"runs": [run["run"] for run in chosen], "summary": summarise(chosen)}
        print(f"{name}: {len(chosen)} runs; target: >= {TARGET_STEPS:g}% fewer steps for <= {TARGET_LOSS:g}% "
              "less hypervolume")
        print(f"{'scheduler':<26} {'saved% mean [min, max]':>24} {'hv_loss% mean [min, max]':>26} {'meets':>6}")
        for row in summaries[name]["summary"]:
            saved, loss = row["steps_saved_pct"], row["hypervolume_loss_pct"]
            print(f"{row['scheduler']:<26} {saved['mean']:>8.1f} [{saved['min']:5.1f}, {saved['max']:5.1f}]"
                  f" {loss['mean']:>10.2f} [{loss['min']:6.2f}, {loss['max']:6.2f}]"
                  f" {row['meets_target']:>3}/{row['runs']}")
        print()
    if args.json:
        from importlib.metadata import version

        first = ("scheduler", "reduction_factor", "steps", "steps_saved_pct", "hypervolume", "hypervolume_loss_pct",
                 "meets_target")
        rows = [{"run": run["run"], **{key: row[key] for key in first}, **row} for run in runs for row in run["table"]]
        output = {"command": " ".join(sys.argv), "syne_tune": version("syne-tune"),
                  "target": {"steps_saved_pct": TARGET_STEPS, "hypervolume_loss_pct": TARGET_LOSS},
                  "runs": [{key: value for key, value in run.items() if key != "table"} for run in runs],
                  "summaries": summaries, "rows": rows}
        Path(args.json).write_text(compact_json(output))
    if args.markdown:
        Path(args.markdown).write_text(markdown(runs, summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
