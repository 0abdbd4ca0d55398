"""A trained run's post-training pruning family (prune/family.py): members are run folders of their own, recorded as
rows of a sweep (records.family_records) that the report, the study, confirm and evaluate take like any trial."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import make_tiny_qa_model_dir, renamed_article, tiny_run_config, tiny_squad_dict, write_squad
from sweep_world import ray_cluster_fixture, tiny_sweep, world_fixture  # noqa: F401  (fixtures world, ray_cluster)

from tune_distill import study as studies
from tune_distill.cli import main
from tune_distill.config import ConfigError, apply_overrides, load_config
from tune_distill.confirm import confirm
from tune_distill.evaluate import evaluate_model_dir
from tune_distill.prune.family import FAMILY_FILE, member_name, prune_family
from tune_distill.records import family_records, read_trials, resolve_run_dir, write_trials
from tune_distill.report import write_report
from tune_distill.run import run_distillation
from tune_distill.student import load_student

OBJECTIVES = [{"name": "f1", "direction": "max"}, {"name": "non_embedding_parameters", "direction": "min"}]
KEEP = (0.8, 0.6)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One trained tiny run inside a sweep-shaped folder, and its family at KEEP."""
    root = tmp_path_factory.mktemp("family")
    teacher = make_tiny_qa_model_dir(root / "teacher", num_hidden_layers=2)
    norhaven, animals = tiny_squad_dict()["data"]
    train, val = write_squad(root / "train.json", [norhaven]), write_squad(root / "val.json", [animals])
    run_dir = root / "sweep" / "tune" / "trial_0000_base0001" / "run"
    config = tiny_run_config(teacher, train, val, root / "cache", "prune.windows=8", "prune.tune_windows=8",
                             f"prune.keep={list(KEEP)}")
    metrics = run_distillation(config, run_dir, measure_latency=False)
    members = prune_family(config, run_dir)
    return {"root": root, "run_dir": run_dir, "config": config, "metrics": metrics, "members": members,
            "val": val, "train": train}


def test_each_share_is_a_member_run_folder_smaller_than_its_share(trained):
    run_dir, parent = trained["run_dir"], trained["metrics"]
    assert [member["name"] for member in trained["members"]] == ["keep80", "keep60"]
    for member in trained["members"]:
        folder, metrics = Path(member["run_dir"]), member["metrics"]
        assert folder == run_dir / "family" / member["name"]
        for name in ("config.yaml", "command.txt", "environment.json", "metrics.json", "per_question.json",
                     "prune.json", "model"):
            assert (folder / name).exists(), name
        # the share is of the parent's whole non-embedding count, as count_parameters counts the saved model
        assert metrics["non_embedding_parameters"] <= member["keep"] * parent["non_embedding_parameters"]
        assert metrics["prune_share"] == pytest.approx(metrics["non_embedding_parameters"]
                                                       / parent["non_embedding_parameters"], abs=1e-6)
        assert load_config(folder / "config.yaml").prune.keep == (member["keep"],)
        assert {"exact", "f1", "na_threshold", "HasAns_f1_always_answer"} <= set(metrics)
        heads = json.loads(metrics["prune_heads_per_layer"])
        assert len(heads) == 2 and all(1 <= count <= 4 for count in heads)
    family = json.loads((run_dir / FAMILY_FILE).read_text())
    assert [member["keep"] for member in family["members"]] == list(KEEP)


def test_a_member_scores_like_evaluate_on_its_saved_model_at_its_own_threshold(trained):
    member = trained["members"][1]
    expected = evaluate_model_dir(Path(member["run_dir"]) / "model", trained["val"], trained["root"] / "eval60",
                                  na_threshold=member["metrics"]["na_threshold"], max_seq_length=48, doc_stride=16,
                                  max_query_length=16, device="cpu")
    assert member["metrics"]["exact"] == pytest.approx(expected["exact"])
    assert member["metrics"]["f1"] == pytest.approx(expected["f1"])


def test_a_finished_member_is_kept_and_a_changed_setting_recomputes_it(trained):
    folder = Path(trained["members"][0]["run_dir"])
    before = (folder / "metrics.json").stat().st_mtime_ns
    prune_family(trained["config"], trained["run_dir"])
    assert (folder / "metrics.json").stat().st_mtime_ns == before
    changed = apply_overrides(trained["config"], {"prune.keep": [0.8], "prune.rearrange": False})
    (member,) = prune_family(changed, trained["run_dir"])
    assert (folder / "metrics.json").stat().st_mtime_ns != before
    assert member["metrics"]["prune_identity"]["rearrange"] is False
    prune_family(trained["config"], trained["run_dir"])  # back as the module's fixture made it


def test_recovery_fine_tuning_is_a_setting_that_changes_the_member(trained, tmp_path):
    config = apply_overrides(trained["config"], {"prune.keep": [0.6], "prune.recover_steps": 2})
    (member,) = prune_family(config, trained["run_dir"])
    assert member["metrics"]["prune_recover_steps"] == 2 and member["metrics"]["recover_seconds"] > 0
    assert not (Path(member["run_dir"]) / "checkpoint").exists()
    prune_family(trained["config"], trained["run_dir"])


def _sweep_records(trained) -> list[dict]:
    family = json.dumps([{"name": m["name"], "keep": m["keep"],
                          "metrics": {k: v for k, v in m["metrics"].items() if k != "prune_identity"}}
                         for m in trained["members"]])
    return [{"trial_id": "base0001", "number": 0, "kind": "baseline", "status": "complete", "baseline": True,
             "params": {}, "overrides": {"student.init": "teacher"},
             "metrics": {**trained["metrics"], "family": family}, "run_dir": str(trained["run_dir"])}]


def test_family_records_turn_members_into_rows_once(trained):
    records = family_records(_sweep_records(trained))
    assert [record["trial_id"] for record in records] == ["base0001", "base0001-keep80", "base0001-keep60"]
    parent, member = records[0], records[2]
    assert "family" not in parent["metrics"]
    assert member["kind"] == "family" and member["parent"] == "base0001" and member["baseline"] is False
    assert member["params"] == {"student.init": "teacher", "prune.keep": 0.6}
    assert member["run_dir"] == str(trained["run_dir"] / "family" / "keep60")
    assert family_records(records) == records  # read back from trials.jsonl: not expanded twice
    with pytest.raises(ValueError, match="metrics.family: expected a list"):
        family_records([{**_sweep_records(trained)[0], "metrics": {"family": "{}"}}])


def _sweep_folder(trained) -> tuple[Path, list[dict], dict]:
    """The trained run as a one-trial sweep folder with its members as rows: (folder, records, summary)."""
    folder = trained["root"] / "sweep"
    records = family_records(_sweep_records(trained))
    write_trials(folder, records)
    (folder / "sweep.json").write_text(json.dumps({"config": {"name": "tune"}, "objectives": OBJECTIVES}))
    return folder, records, write_report(read_trials(folder), folder, objectives=OBJECTIVES)


def test_members_are_rows_of_the_report_the_study_and_confirm(trained, tmp_path):
    folder, records, summary = _sweep_folder(trained)
    rows = list(csv.DictReader((folder / "results.csv").open()))
    assert {row["trial_id"] for row in rows} == {"base0001", "base0001-keep80", "base0001-keep60"}
    assert set(summary["pareto_trials"]) <= {row["trial_id"] for row in rows}
    assert "base0001-keep60" in summary["pareto_trials"]  # the smallest is always on the front
    # the study holds each member, its share as a parameter and its parent
    study = studies.load_or_build(None, records, OBJECTIVES)
    members = [trial for trial in study.trials if trial.user_attrs.get("kind") == "family"]
    assert sorted(trial.params["prune.keep"] for trial in members) == [0.6, 0.8]
    assert {trial.user_attrs["parent"] for trial in members} == {"base0001"}
    # a moved sweep folder still finds a member's run folder
    assert resolve_run_dir(folder, "base0001-keep60", "/elsewhere/run") == trained["run_dir"] / "family" / "keep60"
    # confirm re-scores members like trials
    test = write_squad(tmp_path / "test.json", [renamed_article(tiny_squad_dict()["data"][0], "t-")])
    result = confirm(str(folder), str(test), tmp_path / "confirm", device="cpu", every=True)
    assert {row["trial_id"] for row in result["trials"]} == {"base0001", "base0001-keep80", "base0001-keep60"}


def test_a_member_exports_and_answers_like_any_trial(trained, tmp_path):
    from tune_distill.export import choose_trial, export_trial

    _sweep_folder(trained)
    choice = choose_trial(trained["root"] / "sweep", trial_id="base0001-keep60")
    assert choice.model_dir == trained["run_dir"] / "family" / "keep60" / "model"
    record = export_trial(choice, tmp_path / "export", onnx=False, latency=False, verify_data=trained["val"])
    assert record["parameters"]["non_embedding_parameters"] == trained["members"][1]["metrics"][
        "non_embedding_parameters"]
    assert main(["answer", "--model", str(tmp_path / "export"), "--question", "q?", "--context", "a b c"]) == 0


def test_a_sweep_prunes_each_complete_trial_and_records_its_members(world, ray_cluster, tmp_path):
    """Through the driver on one local Ray: each trial's family is made in the trial and recorded as rows of
    trials.jsonl, the results and the study."""
    import dataclasses

    from tune_distill.records import read_trials
    from tune_distill.report import report_sweep
    from tune_distill.sweep.driver import run_sweep

    config = tiny_sweep(world, num_samples=2)
    config = dataclasses.replace(config, measure_latency=False, base={
        **config.base, "prune.keep": [0.7], "prune.windows": 4, "prune.tune_windows": 4})
    run_sweep(config, tmp_path / "sweep")
    records = read_trials(tmp_path / "sweep")
    trials = [record for record in records if record["kind"] != "family"]
    members = [record for record in records if record["kind"] == "family"]
    complete = [record for record in trials if record["status"] == "complete"]
    assert complete and sorted(m["parent"] for m in members) == sorted(str(r["trial_id"]) for r in complete)
    for member in members:
        assert Path(member["run_dir"], "model").is_dir() and member["metrics"]["prune_share"] <= 0.7
        assert member["params"]["prune.keep"] == 0.7 and "family" not in member["metrics"]
    summary = report_sweep(tmp_path / "sweep")
    assert summary["trials"] == len(records)
    saved = json.loads((tmp_path / "sweep" / "sweep.json").read_text())["summary"]  # trials counted apart from rows
    assert saved["trials"] == len(trials) and saved["family_members"] == len(members)
    assert saved["steps_trained"] == sum(record["metrics"]["step"] for record in trials)
    journal = studies.load_or_build(tmp_path / "sweep", records, config.objectives)
    assert len([t for t in journal.trials if t.user_attrs.get("kind") == "family"]) == len(members)
    assert not any("family" in t.user_attrs for t in journal.trials)  # recorded live without the members' JSON


def test_a_member_loads_like_any_student(trained):
    model = load_student(Path(trained["members"][1]["run_dir"]) / "model")
    heads = json.loads(trained["members"][1]["metrics"]["prune_heads_per_layer"])
    assert [layer.attention.self.num_attention_heads for layer in model.bert.encoder.layer] == heads


def test_the_prune_command(trained, capsys):
    assert main(["prune", "--run", str(trained["run_dir"]), "--keep", "0.8", "0.6"]) == 0
    out = capsys.readouterr().out
    assert f"{member_name(0.8)}: share" in out and "keep60: share" in out


@pytest.mark.parametrize("arguments, message", [
    (["--keep", "1.5"], "prune.keep: must be > 0 and < 1"),
    (["--keep", "0.5", "--set", "prune.by=tokens"], "prune.by: expected one of parameters, flops"),
    (["--keep", "0.5", "--set", "distill.seed=3"], "only prune.* settings"),
    (["--keep", "0.5", "0.5"], "each share once"),
])
def test_bad_prune_settings_are_one_clear_line(trained, capsys, arguments, message):
    assert main(["prune", "--run", str(trained["run_dir"]), *arguments]) != 0
    assert message in capsys.readouterr().err


def test_a_folder_that_is_not_a_run_is_refused(tmp_path, capsys):
    assert main(["prune", "--run", str(tmp_path), "--keep", "0.5"]) != 0
    assert "no config.yaml" in capsys.readouterr().err


def test_the_member_folder_name():
    assert [member_name(keep) for keep in (0.7, 0.65, 0.725, 0.5)] == ["keep70", "keep65", "keep725", "keep50"]
    with pytest.raises(ConfigError):
        load_config(None, ["prune.keep=[0]"])
