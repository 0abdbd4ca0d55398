"""study.py: trial records as an Optuna study (states, objectives, constraints, curves, attributes), no trial
counted twice, parameter importance with the evaluator named."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

from tune_distill.study import (
    STUDY_FILE,
    TUNE_ID_ATTR,
    load_or_build,
    open_study,
    param_importances,
    record_trials,
    sync_study,
)

OBJECTIVES = [{"name": "exact", "direction": "max"}, {"name": "parameters", "direction": "min"}]
CONSTRAINTS = [{"name": "exact", "op": ">=", "bound": 50.0}]


def _record(number, status, exact=None, parameters=None, run_dir=None, **extra):
    metrics = None if status == "failed" else {"exact": exact, "f1": (exact or 0) + 5, "parameters": parameters,
                                               "step": 4 if status == "complete" else 2, "exact_se": 1.5}
    return {"trial_id": f"t{number}", "number": number, "kind": "search", "baseline": False, "status": status,
            "params": {"student.num_hidden_layers": 1 + number % 2, "distill.learning_rate": 1e-4 * (1 + number)},
            "overrides": {}, "metrics": metrics, "error": "RuntimeError: out of memory" if status == "failed" else None,
            "run_dir": run_dir, "checkpoint": None, **extra}


@pytest.fixture
def sweep(tmp_path):
    folder = tmp_path / "my-sweep"
    folder.mkdir()
    (folder / "sweep.json").write_text(json.dumps({"objectives": OBJECTIVES, "constraints": CONSTRAINTS}))
    run = folder / "tune" / "trial_0001_t1" / "run"  # run folders are read inside the sweep folder only
    run.mkdir(parents=True)
    (run / "history.jsonl").write_text("".join(json.dumps({"step": step, "exact": value}) + "\n"
                                               for step, value in ((1, 40.0), (2, 48.0))))
    baseline = {**_record(0, "complete", 60.0, 100), "kind": "baseline", "baseline": True, "params": {},
                "overrides": {"student.num_hidden_layers": 2, "distill.learning_rate": 2e-4, "student.init": "x"}}
    records = [baseline, _record(1, "stopped", 48.0, 80, run_dir=str(run)), _record(2, "failed"),
               _record(3, "complete", 45.0, 70), _record(4, "unfinished")]
    (folder / "trials.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    return folder


def _load(path):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    return optuna.load_study(study_name=None, storage=storage)


def test_records_become_trials_with_state_objectives_constraints_curve_and_attributes(sweep):
    study = _load(sync_study(sweep))
    assert study.study_name == "my-sweep" and study.metric_names == ["exact", "parameters"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    trials = {trial.user_attrs[TUNE_ID_ATTR]: trial for trial in study.trials}
    assert sorted(trials) == ["t0", "t1", "t2", "t3"]  # the unfinished one waits until it finishes
    assert [trials[key].state.name for key in ("t0", "t1", "t2", "t3")] == ["COMPLETE", "PRUNED", "FAIL", "COMPLETE"]
    assert trials["t0"].values == [60.0, 100] and trials["t3"].values == [45.0, 70]
    assert trials["t0"].system_attrs["constraints"] == [-10.0]  # exact >= 50: violation 50 - 60
    assert trials["t3"].system_attrs["constraints"] == [5.0]  # infeasible
    assert trials["t0"].params == {"student.num_hidden_layers": 2, "distill.learning_rate": 2e-4}  # its overrides
    stopped = trials["t1"]
    assert stopped.user_attrs["stopped_at_step"] == 2 and stopped.intermediate_values == {1: 40.0, 2: 48.0}
    assert stopped.user_attrs["run_dir"].endswith("trial_0001_t1/run") and stopped.user_attrs["exact_se"] == 1.5
    assert trials["t2"].user_attrs["error"] == "RuntimeError: out of memory" and trials["t2"].values is None


def test_adding_again_counts_nothing_twice_and_a_retried_failure_is_added(sweep):
    sync_study(sweep)
    sync_study(sweep)
    assert len(_load(sweep / STUDY_FILE).trials) == 4
    records = [json.loads(line) for line in (sweep / "trials.jsonl").read_text().splitlines()]
    records[2] = _record(2, "complete", 55.0, 60)  # the failed trial, retried on resume
    records[4] = _record(4, "complete", 52.0, 90)  # the unfinished one, finished
    sync_study(sweep, records)
    sync_study(sweep, records)
    trials = _load(sweep / STUDY_FILE).trials
    assert len(trials) == 6
    retried = [trial for trial in trials if trial.user_attrs[TUNE_ID_ATTR] == "t2"]
    assert [trial.state.name for trial in retried] == ["FAIL", "COMPLETE"]
    assert retried[1].user_attrs["retry_of"] == retried[0].number


def test_a_resumed_sweep_in_a_renamed_folder_continues_its_study(sweep, tmp_path):
    sync_study(sweep)
    moved = sweep.rename(tmp_path / "elsewhere")
    sync_study(moved)
    study = _load(moved / STUDY_FILE)
    assert study.study_name == "my-sweep" and len(study.trials) == 4


def test_the_report_study_adds_records_the_journal_lacks(sweep):
    records = [json.loads(line) for line in (sweep / "trials.jsonl").read_text().splitlines()]
    sync_study(sweep, records[:2])
    study = load_or_build(sweep, records, OBJECTIVES, CONSTRAINTS)
    assert sorted(trial.user_attrs[TUNE_ID_ATTR] for trial in study.trials) == ["t0", "t1", "t2", "t3"]
    assert len(_load(sweep / STUDY_FILE).trials) == 2  # the journal itself is left as it was


def test_importance_puts_first_the_parameter_that_alone_drives_a_maximised_objective():
    from optuna.distributions import FloatDistribution

    rng = np.random.default_rng(0)
    study = open_study(None, "toy", OBJECTIVES)
    distributions = {name: FloatDistribution(0.0, 1.0) for name in ("drives_exact", "noise", "drives_size")}
    records = []
    for number in range(40):
        params = {name: float(rng.uniform()) for name in distributions}
        records.append({"trial_id": f"t{number}", "number": number, "status": "complete", "params": params,
                        "metrics": {"exact": 50 + 30 * params["drives_exact"],
                                    "parameters": 1e6 * (1 + params["drives_size"])}})
    record_trials(study, records, distributions, OBJECTIVES)
    importance = param_importances(study, OBJECTIVES)
    assert importance["evaluator"].startswith("fANOVA") and importance["trials"] == 40
    assert next(iter(importance["by_objective"]["exact"])) == "drives_exact"
    assert importance["by_objective"]["exact"]["drives_exact"] > 0.8
    assert next(iter(importance["by_objective"]["parameters"])) == "drives_size"


def test_importance_says_why_it_has_nothing_to_rank():
    study = open_study(None, "empty", OBJECTIVES)
    assert "need 2" in param_importances(study, OBJECTIVES)["skipped"]
