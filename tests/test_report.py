"""Report: results files, Pareto rows, summary figures against hand-checked trials."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tune_distill.records import read_trials
from tune_distill.report import write_report

OBJECTIVES = [{"name": "exact", "direction": "max"}, {"name": "parameters", "direction": "min"}]
CONSTRAINTS = [{"name": "exact", "op": ">=", "bound": 50.0}]


def _trial(number, exact, parameters, status="complete", baseline=False, **params):
    return {
        "trial_id": f"t{number}",
        "number": number,
        "status": status,
        "baseline": baseline,
        "params": params or {"student.num_hidden_layers": 2},
        "metrics": None if status == "failed" else {"exact": exact, "f1": exact + 5, "parameters": parameters},
        "error": "boom" if status == "failed" else None,
        "duration": 1.5,
        "checkpoint": f"/ckpt/t{number}",
    }


TRIALS = [
    _trial(0, 60.0, 100, baseline=True),  # baseline
    _trial(1, 60.5, 78),  # smaller and better: the smallest Pareto point at >= baseline exact is 78 (22% smaller)
    _trial(2, 63.5, 104),  # +3.5 exact within +5% size
    _trial(3, 64.0, 200),  # better but far bigger
    _trial(4, 49.0, 10),  # infeasible: under the floor
    _trial(5, 58.0, 120),  # dominated
    _trial(6, 0.0, 0, status="failed"),
    _trial(7, 55.0, 50, status="stopped"),
]


def test_summary_in_reference_terms(tmp_path):
    summary = write_report(TRIALS, tmp_path, objectives=OBJECTIVES, constraints=CONSTRAINTS)
    assert summary["trials"] == 8 and summary["failed"] == 1 and summary["stopped_early"] == 1
    assert summary["baseline"] == {"trial_id": "t0", "exact": 60.0, "parameters": 100}
    smallest = summary["smallest_at_baseline_accuracy"]
    assert smallest["trial_id"] == "t1" and smallest["smaller_than_baseline_pct"] == pytest.approx(22.0)
    best = summary["best_accuracy_within_baseline_size_plus_5pct"]
    assert best["trial_id"] == "t2" and best["gain_over_baseline"] == pytest.approx(3.5)
    # others done: t1..t5, t7 (6 trials); smaller or better: t1, t2, t3, t4, t7 -> 5/6
    assert summary["share_smaller_or_more_accurate"] == pytest.approx(5 / 6)
    assert set(summary["pareto_trials"]) == {"t7", "t1", "t2", "t3"}
    # hypervolume in (max exact, min params) with reference (50, 1.1 * 200 = 220), hand-computed staircase:
    # points (exact, params): t7 (55, 50), t1 (60.5, 78), t2 (63.5, 104), t3 (64, 200), t0 dominated by t1
    expected = ((220 - 50) * (55 - 50) + (220 - 78) * (60.5 - 55) + (220 - 104) * (63.5 - 60.5)
                + (220 - 200) * (64 - 63.5))
    assert summary["hypervolume"]["value"] == pytest.approx(expected)
    assert summary["hypervolume"]["reference_point"] == {"exact": 50.0, "parameters": pytest.approx(220.0)}


def test_summary_carries_the_standard_errors_the_evaluations_reported(tmp_path):
    trials = [dict(trial) for trial in TRIALS]
    for trial, error in zip(trials, (1.5, 1.2, 2.0, 1.0, 1.0, 1.0, None, 1.0)):
        if trial["metrics"] is not None:
            trial["metrics"] = {**trial["metrics"], "exact_se": error}
    summary = write_report(trials, tmp_path, objectives=OBJECTIVES, constraints=CONSTRAINTS)
    assert summary["baseline"] == {"trial_id": "t0", "exact": 60.0, "parameters": 100, "exact_se": 1.5}
    assert summary["smallest_at_baseline_accuracy"]["exact_se"] == 1.2
    best = summary["best_accuracy_within_baseline_size_plus_5pct"]
    assert best["exact_se"] == 2.0 and best["gain_over_baseline_se"] == pytest.approx(2.5)  # sqrt(2^2 + 1.5^2)


def test_results_files_are_written_and_readable(tmp_path):
    write_report(TRIALS, tmp_path, objectives=OBJECTIVES, constraints=CONSTRAINTS)
    for name in ("results.parquet", "results.csv", "pareto.csv", "frontier.png", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    frame = pd.read_parquet(tmp_path / "results.parquet")
    assert len(frame) == 8 and "param.student.num_hidden_layers" in frame
    assert frame.loc[frame.trial_id == "t6", "status"].item() == "failed"
    assert frame.loc[frame.trial_id == "t6", "error"].item() == "boom"
    pareto = pd.read_csv(tmp_path / "pareto.csv")
    assert list(pareto.parameters) == [50, 78, 104, 200]  # sorted by size
    assert (tmp_path / "frontier.png").read_bytes()[:4] == b"\x89PNG"


def test_no_baseline_still_reports(tmp_path):
    summary = write_report([_trial(1, 60.0, 80), _trial(2, 61.0, 90)], tmp_path, objectives=OBJECTIVES)
    assert summary["baseline"] is None and summary["pareto_trials"] == ["t1", "t2"]


def test_read_trials_keeps_last_record_and_rejects_garbage(tmp_path):
    path = tmp_path / "trials.jsonl"
    first = _trial(1, 10.0, 5, status="failed")
    second = _trial(1, 61.0, 5)
    path.write_text("\n".join(json.dumps(r) for r in (first, second, _trial(0, 60.0, 9))) + "\n")
    trials = read_trials(tmp_path)
    assert [t["trial_id"] for t in trials] == ["t0", "t1"] and trials[1]["status"] == "complete"
    path.write_text("{not json\n")
    with pytest.raises(ValueError, match="trials.jsonl:1"):
        read_trials(path)
    with pytest.raises(FileNotFoundError, match="trials.jsonl"):
        read_trials(tmp_path / "missing")


def test_report_command_rewrites_a_sweep_folder_with_its_own_objectives(tmp_path, capsys):
    from tune_distill import cli

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "trials.jsonl").write_text("".join(json.dumps(trial) + "\n" for trial in TRIALS))
    assert cli.main(["report", "--sweep", str(sweep)]) == 0  # no sweep.json: the default objectives, no constraints
    printed = json.loads(capsys.readouterr().out)
    assert printed["objectives"] == OBJECTIVES and printed["constraints"] == []
    assert printed == json.loads((sweep / "summary.json").read_text())
    assert printed["pareto_trials"] == write_report(TRIALS, tmp_path / "direct", objectives=OBJECTIVES)["pareto_trials"]
    (sweep / "sweep.json").write_text(json.dumps({"objectives": OBJECTIVES, "constraints": CONSTRAINTS}))
    assert cli.main(["report", "--sweep", str(sweep), "--out", str(tmp_path / "elsewhere")]) == 0
    elsewhere = json.loads((tmp_path / "elsewhere" / "summary.json").read_text())
    assert elsewhere["constraints"] == CONSTRAINTS and "t4" not in elsewhere["pareto_trials"]  # t4 is under the floor
    assert sorted(path.name for path in (tmp_path / "elsewhere").iterdir()) == sorted(  # no temporary files left
        ["results.parquet", "results.csv", "pareto.csv", "frontier.png", "importance.png", "hypervolume.png",
         "summary.json"])  # no curves.png: these records have no evaluation steps
    assert (sweep / "study.journal").is_file()  # in place: the sweep's Optuna study, for the dashboard


def _curve_trials(tmp_path):
    """TRIALS with varied shapes, each with a run folder whose history.jsonl holds its learning curve."""
    trials = []
    for index, trial in enumerate(TRIALS):
        trial = {**trial, "params": {"student.num_hidden_layers": 1 + index % 3, "distill.learning_rate": 1e-4 * index}}
        if trial["metrics"] is not None:
            run = tmp_path / f"run{index}"
            run.mkdir()
            last = 2 if trial["status"] == "stopped" else 4
            run.joinpath("history.jsonl").write_text("".join(
                json.dumps({"step": step, "exact": trial["metrics"]["exact"] * step / last}) + "\n"
                for step in range(1, last + 1)))
            trial.update(run_dir=str(run), metrics={**trial["metrics"], "step": last, "exact_se": 1.0})
        trials.append(trial)
    return trials


def test_pictures_importance_and_findings_are_written(tmp_path):
    summary = write_report(_curve_trials(tmp_path), tmp_path / "out", objectives=OBJECTIVES, constraints=CONSTRAINTS)
    for name in ("frontier.png", "importance.png", "hypervolume.png", "curves.png"):
        assert (tmp_path / "out" / name).read_bytes()[:4] == b"\x89PNG", name
        assert summary["files"][name].endswith(name)
    importance = summary["importance"]
    assert importance["evaluator"].startswith("fANOVA") and set(importance["by_objective"]) == {"exact", "parameters"}
    assert importance["params"] == ["distill.learning_rate", "student.num_hidden_layers"]
    findings = summary["findings"]
    assert findings["smaller_at_no_loss"]["trial_id"] == "t1"
    assert "22.0% smaller than the baseline" in findings["smaller_at_no_loss"]["statement"]
    assert findings["more_accurate_at_about_the_same_size"]["gain_over_baseline"] == pytest.approx(3.5)
    assert findings["share_smaller_and_at_least_as_accurate"]["value"] == pytest.approx(1 / 6)  # t1 of 6 others
    top = findings["most_important_parameters"]
    assert top["evaluator"] == importance["evaluator"] and set(top["by_objective"]) == {"exact", "parameters"}
    assert "most important parameters" in top["statement"]


def test_findings_say_so_when_no_student_beats_the_baseline(tmp_path):
    trials = [_trial(0, 60.0, 100, baseline=True), _trial(1, 55.0, 90), _trial(2, 50.0, 300)]
    findings = write_report(trials, tmp_path, objectives=OBJECTIVES)["findings"]
    assert findings["smaller_at_no_loss"] == {"statement": "no student smaller than the baseline reaches its exact "
                                                           "(60.00)"}
    assert "beats its exact" in findings["more_accurate_at_about_the_same_size"]["statement"]
    assert findings["share_smaller_and_at_least_as_accurate"]["value"] == 0.0


def test_a_tie_with_the_baseline_is_smaller_at_no_loss_not_more_accurate(tmp_path):
    trials = [_trial(0, 60.0, 100, baseline=True), _trial(1, 60.0, 98)]
    findings = write_report(trials, tmp_path, objectives=OBJECTIVES)["findings"]
    assert findings["smaller_at_no_loss"]["trial_id"] == "t1"
    assert "t1" not in findings["more_accurate_at_about_the_same_size"]["statement"]
    assert "beats its exact" in findings["more_accurate_at_about_the_same_size"]["statement"]


def test_frontier_draws_each_points_standard_error(tmp_path, monkeypatch):
    import matplotlib.axes

    drawn = []
    original = matplotlib.axes.Axes.errorbar
    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar",
                        lambda self, x, y, yerr=None, **kw: drawn.append(yerr) or original(self, x, y, yerr=yerr, **kw))
    write_report(_curve_trials(tmp_path), tmp_path / "out", objectives=OBJECTIVES, constraints=CONSTRAINTS)
    assert drawn and all(errors is not None and (errors == 1.0).all() for errors in drawn)


def test_findings_take_the_paired_judgement_where_the_summary_has_one():
    from tune_distill.report import findings

    base = {"trial_id": "base", "exact": 60.0, "parameters": 1000}
    smaller = {"trial_id": "s", "exact": 59.0, "parameters": 700, "smaller_than_baseline_pct": 30.0}
    summary = {"baseline": base, "smallest_at_baseline_accuracy": None,
               "best_accuracy_within_baseline_size_plus_5pct": None, "share_smaller_and_at_least_as_accurate": 0.0,
               "paired": {"claims": {
                   "smaller_at_no_loss": {"trial_id": "s", "holds": True, "gain": -1.0, "gain_se": 2.0,
                                          "statement": "holds: trial s ... (paired, 40 questions)"},
                   "more_accurate_at_about_the_same_size": {"holds": False, "statement": "not judged: no scores"}}}}
    result = findings(summary)
    claim = result["smaller_at_no_loss"]
    assert claim["judged_with"] == "paired" and claim["holds"] and claim["trial_id"] == smaller["trial_id"]
    assert claim["by_figures"].startswith("no student smaller than the baseline reaches")
    # a claim the paired block could not judge keeps the plain comparison of the figures
    assert "judged_with" not in result["more_accurate_at_about_the_same_size"]
    assert result["more_accurate_at_about_the_same_size"]["statement"].startswith("no student within")
