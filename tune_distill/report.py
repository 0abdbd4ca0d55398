"""Sweep results for people: results table, Pareto set, frontier picture, summary in the reference terms.

Input: the sweep's trial records (`trials.jsonl`, records.py's format and reader: one JSON object per trial
with `trial_id`, `number`, `status`, `params`, `metrics`, `error`, `duration`, `checkpoint`, ...), read as data:
a sweep folder may come from elsewhere, so every file is checked before anything is written (records.py for
trials.jsonl and sweep.json, study.py for study.journal, `read_summary` for summary.json) and a bad one is one
line naming the file and field. Output, in the sweep folder (and copied to a storage location, e.g.
s3://bucket/prefix, only when one is given: `--storage-path` / `--storage-endpoint` on the command line, or by
the sweep that just ran with it; never the `storage_path` a sweep folder's own sweep.json names):

- `results.parquet` and `results.csv`: every trial, parameters (`param.<key>`), metrics, status,
  duration, checkpoint.
- `pareto.csv`: the completed, feasible trials on the Pareto front of the objectives, each with what it does
  deployed at its threshold: `answer_rate` (% of all questions answered), `HasAns_answer_rate`,
  `NoAns_answer_rate` (blank where the records cannot give it), `answer_rate_source` and `abstains`.
- the pictures (plots.py): `frontier.png` (parameters against exact: every trial with its standard
  error, the Pareto points, the baseline, the no-answer floor), `importance.png`, `hypervolume.png`,
  `curves.png` (learning curves, early stops marked), each where there is something to draw.
- `summary.json`: the reference experiment's figures, computed from the rows above: the smallest
  Pareto student at or above the baseline's exact and how much smaller it is; the best exact within
  the baseline's size + 5% and by how much it beats the baseline; the share of trials smaller or
  more accurate than the baseline; the hypervolume (with the reference point it used). Where the
  evaluations reported standard errors (`exact_se`, ...), each compared student carries its own and
  the gain over the baseline one too, so that a gain inside the noise reads as such. `importance`:
  each parameter's importance for each objective (fANOVA, study.py); `paired`: the claims judged with
  paired errors per question and by paragraph / article (claims.py; `paired.errors` says which judged);
  `deployment`: the baseline and every Pareto student at its threshold (answer rates, HasAns / NoAns
  exact, exact, F1) and which of them abstain (deployment.py); `findings`: the reference experiment's
  three findings stated in words for this sweep, which error judged them, and the abstaining students
  (see `findings`); `held_apart`, for a sweep that kept validation articles apart from its choice: the students
  the findings name re-scored there (`held-apart/confirm.json`, confirm.py's confirm_held_apart), and each
  claim's figure on them beside its validation figure, in the findings too (held_apart_report.py).

The learning curves and importance come from the sweep's Optuna study (study.py): its `study.journal`
where the sweep wrote one, completed from the records; `tune-distill report` on a sweep folder also
brings that journal up to date (so `make dashboard` works on sweeps older than it).

Must not know: Ray, searchers' internals, how trials were trained. It reads records (and the study) only, so it
can be re-run on any sweep folder: `tune-distill report --sweep DIR`.

Example (CPU, seconds, on a finished smoke sweep; the second also copies the results to a bucket):
    tune-distill report --sweep sweeps/smoke
    tune-distill report --sweep sweeps/smoke --storage-path s3://bucket/sweeps/smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from tune_distill import claims, held_apart_report, remote
from tune_distill import study as studies
from tune_distill.deployment import RULE as DEPLOYMENT_RULE
from tune_distill.deployment import deployed, frontier_statement
from tune_distill.files import atomic_path, read_json_object, write_atomically
from tune_distill.pareto import feasible_mask, hypervolume, hypervolume_reference, pareto_mask
from tune_distill.plots import plot_curves, plot_frontier, plot_hypervolume, plot_importance
from tune_distill.records import check_objectives, read_sweep_settings, read_trials
from tune_distill.search.objectives import DEFAULT_OBJECTIVES

log = logging.getLogger(__name__)

SIZE_SLACK = 0.05  # "a small size increase": within the baseline's size + 5%
PICTURES = ("frontier.png", "importance.png", "hypervolume.png", "curves.png")
REPORT_FILES = ("results.parquet", "results.csv", "pareto.csv", *PICTURES, "summary.json")
TOP_PARAMETERS = 3  # the findings name this many most important parameters per objective


def results_frame(trials: Sequence[Mapping[str, Any]]):
    """One row per trial: identity, status, duration, checkpoint, `param.*` and metric columns."""
    import pandas as pd

    rows = []
    for trial in trials:
        row: dict[str, Any] = {
            "trial_id": trial.get("trial_id"),
            "number": trial.get("number"),
            "status": trial.get("status"),
            "baseline": bool(trial.get("baseline", False)),
            "kind": trial.get("kind"),
            "parent": trial.get("parent"),  # a pruning-family member's trial (records.family_records)
            "duration_s": trial.get("duration"),
            "checkpoint": trial.get("checkpoint"),
            "node_id": trial.get("node_id"),
            "device": trial.get("device"),
            "error": trial.get("error"),
        }
        for key, value in (trial.get("params") or {}).items():
            row[f"param.{key}"] = value if not isinstance(value, (list, dict)) else json.dumps(value)
        for key, value in (trial.get("metrics") or {}).items():
            if isinstance(value, (int, float, str, bool)) or value is None:
                row[key] = value
        rows.append(row)
    return pd.DataFrame(rows)


def pareto_rows(frame, objectives: Sequence[Mapping[str, str]], constraints: Sequence[Mapping[str, Any]] = ()):
    """Completed (or stopped), feasible rows on the Pareto front of `objectives`, sorted by the last objective."""
    names = [o["name"] for o in objectives]
    usable = frame["status"].isin(["complete", "stopped"]).to_numpy().copy()
    for name in names:
        usable &= frame[name].notna().to_numpy() if name in frame else np.zeros(len(frame), dtype=bool)
    usable &= feasible_mask(frame, constraints)
    candidates = frame[usable]
    if candidates.empty:
        return candidates
    mask = pareto_mask(candidates[names].to_numpy(dtype=float), [o["direction"] for o in objectives])
    return candidates[mask].sort_values(names[::-1])


def _standard_error(row, accuracy: str) -> dict[str, float]:
    """{accuracy_se: value} when the evaluation reported the accuracy's standard error, else {}."""
    column = f"{accuracy}_se"
    value = row.get(column)
    return {column: float(value)} if value is not None and np.isfinite(value) else {}


def summarise(frame, objectives: Sequence[Mapping[str, str]], constraints: Sequence[Mapping[str, Any]] = (),
              accuracy: str = "exact", size: str = "parameters") -> dict[str, Any]:
    """The reference experiment's figures for this sweep, each traceable to a trial id."""
    done = frame[frame["status"].isin(["complete", "stopped"]) & frame[accuracy].notna() & frame[size].notna()] \
        if accuracy in frame and size in frame else frame.iloc[0:0]
    summary: dict[str, Any] = {
        "trials": int(len(frame)),
        "completed": int((frame["status"] == "complete").sum()) if len(frame) else 0,
        "stopped_early": int((frame["status"] == "stopped").sum()) if len(frame) else 0,
        "failed": int((frame["status"] == "failed").sum()) if len(frame) else 0,
        "objectives": list(objectives),
        "constraints": list(constraints),
    }
    pareto = pareto_rows(frame, objectives, constraints)
    summary["pareto_trials"] = pareto["trial_id"].tolist() if len(pareto) else []
    baseline = done[done["baseline"] & (done["status"] == "complete")]
    if baseline.empty:
        summary["baseline"] = None
        log.warning("report: no completed baseline trial; baseline comparisons are omitted")
    else:
        base = baseline.iloc[0]
        base_accuracy, base_size = float(base[accuracy]), float(base[size])
        summary["baseline"] = {"trial_id": base["trial_id"], accuracy: base_accuracy, size: int(base_size),
                               **_standard_error(base, accuracy)}
        others = done[done["trial_id"] != base["trial_id"]]
        at_least = pareto[pareto[accuracy] >= base_accuracy] if len(pareto) else pareto
        if len(at_least):
            smallest = at_least.sort_values([size, accuracy], ascending=[True, False]).iloc[0]
            summary["smallest_at_baseline_accuracy"] = {
                "trial_id": smallest["trial_id"], accuracy: float(smallest[accuracy]), size: int(smallest[size]),
                "smaller_than_baseline_pct": 100.0 * (1.0 - float(smallest[size]) / base_size),
                **_standard_error(smallest, accuracy),
            }
        within = done[done[size] <= base_size * (1 + SIZE_SLACK)]
        if len(within):
            best = within.sort_values([accuracy, size], ascending=[False, True]).iloc[0]
            summary["best_accuracy_within_baseline_size_plus_5pct"] = {
                "trial_id": best["trial_id"], accuracy: float(best[accuracy]), size: int(best[size]),
                "gain_over_baseline": float(best[accuracy]) - base_accuracy,
                **_standard_error(best, accuracy),
            }
            errors = [_standard_error(row, accuracy).get(f"{accuracy}_se") for row in (best, base)]
            if None not in errors and best["trial_id"] != base["trial_id"]:
                # as if the two evaluations were independent; they share their questions, whose difficulty
                # moves both scores alike, so the gain's real standard error is usually smaller
                summary["best_accuracy_within_baseline_size_plus_5pct"]["gain_over_baseline_se"] = \
                    math.sqrt(errors[0] ** 2 + errors[1] ** 2)
        if len(others):
            smaller = others[size] < base_size
            better = others[accuracy] > base_accuracy
            summary["share_smaller_or_more_accurate"] = float((smaller | better).mean())
            at_least_as_accurate = others[accuracy] >= base_accuracy
            summary["share_smaller_and_at_least_as_accurate"] = float((smaller & at_least_as_accurate).mean())
    if len(done):
        directions = [o["direction"] for o in objectives]
        names = [o["name"] for o in objectives]
        feasible = done[feasible_mask(done, constraints)]
        floors = [next((float(c["bound"]) for c in constraints if c["name"] == name), None) for name in names]
        reference = hypervolume_reference(done[names].to_numpy(dtype=float), directions, floors)
        summary["hypervolume"] = {
            "value": hypervolume(feasible[names].to_numpy(dtype=float), directions, reference)
            if len(feasible) else 0.0,
            "reference_point": dict(zip(names, reference)),
        }
    return summary


def write_report(trials: Sequence[Mapping[str, Any]], out_dir: str | Path, *,
                 objectives: Sequence[Mapping[str, str]] | None = None,
                 constraints: Sequence[Mapping[str, Any]] = (), title: str = "", study: Any = None,
                 held_apart: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write results.parquet/.csv, pareto.csv, the pictures (PICTURES) and summary.json; return the summary.

    Everything is computed before the first file is written (a failure writes nothing); each file is replaced
    atomically (`files`). `objectives` default to search.objectives.DEFAULT_OBJECTIVES. `study`: the sweep's
    Optuna study (learning curves, importance); default: one built from `trials`. `held_apart`: the sweep's
    held-apart confirmation (held_apart_report.load): summary.json's `held_apart` and each claim's figure there.
    """
    out_dir = Path(out_dir)
    if objectives is None:
        objectives = [dataclasses.asdict(objective) for objective in DEFAULT_OBJECTIVES]
    objectives = [dict(o) for o in objectives]
    constraints = [dict(c) for c in constraints]
    frame = results_frame(trials)
    pareto = pareto_rows(frame, objectives, constraints) if len(frame) else frame
    accuracy = next((o["name"] for o in objectives if o["direction"] == "max"), "exact")
    size = next((o["name"] for o in objectives if o["direction"] == "min"), "parameters")
    floor = next((float(c["bound"]) for c in constraints if c["name"] == accuracy and c["op"] == ">="), None)
    summary = summarise(frame, objectives, constraints, accuracy=accuracy, size=size)
    if study is None:
        study = studies.load_or_build(None, trials, objectives, constraints)
    summary["importance"] = studies.param_importances(study, objectives)
    summary["paired"] = claims.paired_summary(trials, summary, accuracy, size)  # claims judged with paired errors
    summary["deployment"] = deployment_summary(trials, summary)
    summary["findings"] = findings(summary, accuracy, size)
    if held_apart is not None:  # the claims on the articles the sweep kept apart from its choice
        summary["held_apart"] = held_apart_report.section(held_apart, summary, accuracy)
        summary["findings"] = held_apart_report.with_figures(summary["findings"], summary["held_apart"])
    pareto = with_deployment(pareto, summary["deployment"])
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "results.parquet") as temporary:
        frame.to_parquet(temporary, index=False)
    with atomic_path(out_dir / "results.csv") as temporary:
        frame.to_csv(temporary, index=False)
    with atomic_path(out_dir / "pareto.csv") as temporary:
        pareto.to_csv(temporary, index=False)
    plot_frontier(frame, pareto, out_dir / "frontier.png", accuracy=accuracy, size=size, floor=floor, title=title)
    _pictures(study, summary, objectives, out_dir, accuracy)
    summary["files"] = {name: str(out_dir / name) for name in
                        ("results.parquet", "results.csv", "pareto.csv", *PICTURES, "trials.jsonl")
                        if name == "trials.jsonl" or (out_dir / name).exists()}
    text = json.dumps(summary, indent=2, default=_json_default)
    write_atomically(out_dir / "summary.json", text)
    log.info("report: %d trials, %d on the Pareto front -> %s", len(frame), len(pareto), out_dir)
    return json.loads(text)


def deployment_summary(trials: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> dict[str, Any]:
    """What the baseline and every Pareto student does deployed at its threshold (deployment.deployed: answer
    rates, HasAns / NoAns exact, exact and F1, whether it abstains), from its metrics and, where its run folder
    kept one, its per_question.json."""
    by_id = {str(record.get("trial_id")): record for record in trials}
    shown = [str(trial) for trial in ([(summary.get("baseline") or {}).get("trial_id")]
                                      + list(summary.get("pareto_trials") or ())) if trial is not None]
    by_trial = {}
    for trial in dict.fromkeys(shown):
        record = by_id.get(trial)
        if record is not None:
            by_trial[trial] = deployed(record.get("metrics") or {}, claims.read_per_question(record.get("run_dir")),
                                       trial_id=trial)
    return {"rule": DEPLOYMENT_RULE, "by_trial": by_trial,
            "abstaining": [trial for trial, figures in by_trial.items() if figures.get("abstains")],
            "statement": frontier_statement(by_trial)}


DEPLOYED_COLUMNS = ("answer_rate", "HasAns_answer_rate", "NoAns_answer_rate")


def with_deployment(pareto, deployment: Mapping[str, Any]):
    """The Pareto rows with their answer rates (where the records lack them, as far as deployment_summary could
    derive them), where those came from (`answer_rate_source`) and whether the student abstains."""
    if not len(pareto):
        return pareto
    pareto = pareto.copy()
    by_trial = deployment.get("by_trial") or {}
    figures = [by_trial.get(str(trial), {}) for trial in pareto["trial_id"]]
    for column in DEPLOYED_COLUMNS:
        derived = [row.get(column) for row in figures]
        pareto[column] = pareto[column].where(pareto[column].notna(), derived) if column in pareto else derived
    pareto["answer_rate_source"] = [row.get("source", "not recorded") for row in figures]
    pareto["abstains"] = [row.get("abstains") for row in figures]
    return pareto


def _pictures(study: Any, summary: Mapping[str, Any], objectives: Sequence[Mapping[str, str]], out_dir: Path,
              accuracy: str) -> None:
    """importance.png, hypervolume.png and curves.png, each where there is something to draw (else removed,
    so that a stale one does not outlive its data)."""
    importance = summary["importance"]
    drawable = {
        "importance.png": len(importance["by_objective"]) > len(importance.get("constant", ())),
        "hypervolume.png": "hypervolume" in summary and any(trial.state.name == "COMPLETE" for trial in study.trials),
        "curves.png": any(trial.intermediate_values for trial in study.trials),
    }
    for name, wanted in drawable.items():
        if not wanted:
            (out_dir / name).unlink(missing_ok=True)
        elif name == "importance.png":
            shown = [o["name"] for o in objectives if o["name"] not in importance.get("constant", ())]
            plot_importance(study, [o["name"] for o in objectives], shown, studies.importance_evaluator(),
                            studies.IMPORTANCE_EVALUATOR, importance["params"], out_dir / name)
        elif name == "hypervolume.png":
            reference = summary["hypervolume"]["reference_point"]
            plot_hypervolume(study, [reference[o["name"]] for o in objectives], out_dir / name)
        else:
            plot_curves(study, out_dir / name, metric=accuracy)


def findings(summary: Mapping[str, Any], accuracy: str = "exact", size: str = "parameters") -> dict[str, Any]:
    """The reference experiment's three findings, stated for this sweep from the summary's figures.

    1. smaller at no loss: the smallest Pareto student at or above the baseline's accuracy;
    2. more accurate at about the same size: the best accuracy within the baseline's size + 5%, and
       the share of other trials smaller and at least as accurate as the baseline;
    3. the most important parameters for each objective (TOP_PARAMETERS of them, with the evaluator).
    Beside them, `errors`: which paired error judged the claims (per question, by paragraph or by article) and
    why, with a warning where it fell back to per question; `deployment`: the frontier students that abstain at
    their threshold, in words (deployment.frontier_statement).
    Each entry has a `statement` in words; a figure the sweep cannot give says why instead. Where the
    summary's `paired` block judged a claim with paired standard errors (claims.py), that judgement is
    the finding (`judged_with: paired`) and the plain comparison of the figures stays as `by_figures`.
    """
    base = summary.get("baseline")
    result: dict[str, Any] = {}
    if base is None:
        reason = "no completed baseline trial to compare with"
        result["smaller_at_no_loss"] = {"statement": reason}
        result["more_accurate_at_about_the_same_size"] = {"statement": reason}
        result["share_smaller_and_at_least_as_accurate"] = {"statement": reason}
    else:
        smallest = summary.get("smallest_at_baseline_accuracy")
        if smallest and smallest["trial_id"] == base["trial_id"]:
            smallest = None  # the baseline itself: no student is smaller at no loss
        best = summary.get("best_accuracy_within_baseline_size_plus_5pct")
        if best and (best["trial_id"] == base["trial_id"] or best["gain_over_baseline"] <= 0):
            best = None  # the baseline itself, or a tie: no student is more accurate
        result["smaller_at_no_loss"] = {**smallest, "statement": (
            f"trial {smallest['trial_id']} is {smallest['smaller_than_baseline_pct']:.1f}% smaller than the "
            f"baseline ({smallest[size]:,} against {base[size]:,} {size}) at {accuracy} {smallest[accuracy]:.2f} "
            f"(baseline {base[accuracy]:.2f})" + _noise(smallest, base, accuracy))} if smallest else {
            "statement": f"no student smaller than the baseline reaches its {accuracy} ({base[accuracy]:.2f})"}
        result["more_accurate_at_about_the_same_size"] = {**best, "statement": (
            f"trial {best['trial_id']} scores {accuracy} {best[accuracy]:.2f}, {best['gain_over_baseline']:+.2f} "
            f"over the baseline, at {best[size]:,} {size} (baseline {base[size]:,}, within +{100 * SIZE_SLACK:.0f}%)"
            + (f"; the gain's standard error is about {best['gain_over_baseline_se']:.2f}"
               if "gain_over_baseline_se" in best else ""))} if best else {
            "statement": f"no student within the baseline's size + {100 * SIZE_SLACK:.0f}% beats its {accuracy} "
                         f"({base[accuracy]:.2f})"}
        share = summary.get("share_smaller_and_at_least_as_accurate")
        result["share_smaller_and_at_least_as_accurate"] = {"value": share, "statement": (
            f"{100 * share:.0f}% of the other finished trials are smaller than the baseline and at least as "
            f"accurate") if share is not None else "no other finished trials"}
    for name, claim in ((summary.get("paired") or {}).get("claims") or {}).items():
        if name in result and not str(claim.get("statement", "")).startswith("not judged"):
            result[name] = {**claim, "judged_with": "paired", "by_figures": result[name]["statement"]}
    errors = (summary.get("paired") or {}).get("errors")
    if errors:
        level = "per question" if errors["judged_by"] == "question" else f"by {errors['judged_by']}"
        result["errors"] = {**errors, "statement": f"the claims are judged by the paired error {level}: "
                            f"{errors['why']}" + (f"; warning: {errors['warning']}" if errors.get("warning") else "")}
    if summary.get("deployment"):
        deployment = summary["deployment"]
        result["deployment"] = {"abstaining": deployment["abstaining"], "statement": deployment["statement"]}
    importance = summary.get("importance") or {}
    top = {name: [param for param, share in sorted(shares.items(), key=lambda item: -item[1])[:TOP_PARAMETERS]
                  if share > 0]
           for name, shares in (importance.get("by_objective") or {}).items()
           if name not in importance.get("constant", ())}
    words = "; ".join([f"{name}: {', '.join(params)}" for name, params in top.items()]
                      + [f"{name}: none (every trial scored the same)" for name in importance.get("constant", ())])
    result["most_important_parameters"] = {
        "evaluator": importance.get("evaluator"), "by_objective": top,
        "statement": (f"most important parameters ({importance.get('evaluator')}, {importance.get('trials')} "
                      f"complete trials): {words}") if top else
        (importance.get("skipped") or f"every trial scored the same on {', '.join(importance.get('constant', []))}"),
    }
    return result


def _noise(row: Mapping[str, Any], base: Mapping[str, Any], accuracy: str) -> str:
    """'; standard errors 1.20 and 1.50' when both evaluations reported one."""
    key = f"{accuracy}_se"
    return f"; standard errors {row[key]:.2f} and {base[key]:.2f}" if key in row and key in base else ""


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return str(value)


def report_sweep(sweep: str | Path, out: str | Path | None = None, *, storage_path: str = "",
                 storage_endpoint: str = "") -> dict[str, Any]:
    """(Re)write a sweep folder's results files from its trials.jsonl and sweep.json; return the summary.

    Written into `out` (default: the sweep folder); when written into the sweep folder itself and a
    `storage_path` is given (the user's: a command-line option, or the sweep that just ran with it), also
    copied there. The storage_path the folder's own sweep.json names is never used: the folder may come from
    elsewhere, and its sweep.json could name anyone's endpoint.
    """
    sweep = Path(sweep)
    settings = read_sweep_settings(sweep)
    records = studies.located_records(sweep, read_trials(sweep), settings)
    in_place = out is None or Path(out).resolve() == sweep.resolve()
    if in_place:
        studies.sync_study(sweep, records)  # the dashboard's study, for sweeps that started without one
    objectives = settings.get("objectives") or [dataclasses.asdict(o) for o in DEFAULT_OBJECTIVES]
    constraints = settings.get("constraints") or ()
    study = studies.load_or_build(sweep, records, objectives, constraints)
    held_apart = held_apart_report.load(sweep, settings)  # <sweep>/held-apart/confirm.json, read as data
    summary = write_report(records, out or sweep, objectives=objectives, constraints=constraints, study=study,
                           held_apart=held_apart)
    named = str((settings.get("config") or {}).get("storage_path") or "")
    if in_place and storage_path:
        copy_to_storage(sweep, {"storage_path": storage_path, "storage_endpoint": storage_endpoint})
    elif in_place and remote.is_remote(named):
        log.info("report: %s names storage_path %s; nothing was copied there (give --storage-path to copy the "
                 "results to a storage location)", sweep / "sweep.json", named)
    return summary


def read_summary(path: str | Path, error: type[Exception] = ValueError) -> dict[str, Any]:
    """A summary.json (write_report's) as its readers use it, checked: `objectives` (records.check_objectives),
    `baseline` null or an object with a trial_id, `pareto_trials` a list of trial ids. A file that breaks this
    is one line of `error` naming the file and the field."""
    summary = read_json_object(path, "summary.json", error)
    try:
        if summary.get("objectives") is not None:
            summary["objectives"] = check_objectives(summary["objectives"], str(path))
        baseline = summary.get("baseline")
        if baseline is not None and (not isinstance(baseline, dict) or not isinstance(baseline.get("trial_id"),
                                                                                      (str, int))):
            raise ValueError(f"{path}: baseline: expected null or an object with a trial_id, got "
                             f"{json.dumps(baseline)[:60]}")
        pareto = summary.get("pareto_trials")
        if pareto is not None and (not isinstance(pareto, list)
                                   or not all(isinstance(item, (str, int)) for item in pareto)):
            raise ValueError(f"{path}: pareto_trials: expected a list of trial ids, got {json.dumps(pareto)[:60]}")
    except ValueError as problem:
        raise error(str(problem)) from None
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `tune-distill report`."""
    parser.add_argument("--sweep", required=True, help="sweep folder (holds trials.jsonl and sweep.json)")
    parser.add_argument("--out", help="where to write (default: the sweep folder)")
    parser.add_argument("--storage-path", default="", metavar="URI",
                        help="also copy the results files (and trials.jsonl, study.journal) there, e.g. "
                             "s3://bucket/sweeps/cpu (default: nowhere; the storage_path in the folder's sweep.json "
                             "is not used)")
    parser.add_argument("--storage-endpoint", default="", metavar="URL",
                        help="S3-compatible endpoint for --storage-path (default: AWS_ENDPOINT_URL_S3 or "
                             "AWS_ENDPOINT_URL, else AWS)")


def command(args: argparse.Namespace) -> dict[str, Any]:
    """Write the results files as the parsed options say; print and return the summary."""
    if args.storage_endpoint and not args.storage_path:
        raise ValueError("--storage-endpoint: only used with --storage-path")
    if args.storage_path:
        remote.check_location(args.storage_path, args.storage_endpoint, ValueError, "--storage-path")
    summary = report_sweep(args.sweep, args.out, storage_path=args.storage_path,
                           storage_endpoint=args.storage_endpoint)
    print(json.dumps(summary, indent=2))
    return summary


def copy_to_storage(sweep: Path, config: Mapping[str, Any]) -> list[str]:
    """Copy the results files (and trials.jsonl, study.journal) to `config`'s remote storage_path (with its
    storage_endpoint), if it is one: the caller's, never a sweep folder's own sweep.json.

    Returns the URIs written. A failure is logged, not raised: the files are in the sweep folder.
    """
    uri = str(config.get("storage_path") or "").rstrip("/")
    if not remote.is_remote(uri):
        return []
    endpoint = str(config.get("storage_endpoint") or "")
    try:
        filesystem, path = remote.open_location(uri, endpoint)
        names = [name for name in (*REPORT_FILES, "trials.jsonl", "study.journal") if (sweep / name).exists()]
        written = remote.upload_files(sweep, names, filesystem, path)
    except (OSError, ValueError) as failure:
        log.error("report: could not copy the results to %s (%s); they are in %s", uri,
                  remote.explain(failure, uri, remote.resolve_endpoint(endpoint)), sweep)
        return []
    uris = [f"{uri.split('://', 1)[0]}://{target}" for target in written]
    log.info("report: results copied to %s", uri)
    return uris

