"""`tune-distill confirm`: a tiny sweep's baseline and Pareto students re-scored on a split it never saw."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from conftest import make_tiny_qa_model_dir, renamed_article, tiny_run_config, tiny_squad_dict, write_squad

from tune_distill import confirm as confirm_module
from tune_distill.cli import main
from tune_distill.config import load_config
from tune_distill.confirm import ConfirmError, confirm, fetch_remote_sweep
from tune_distill.evaluate import evaluate_model_dir
from tune_distill.report import write_report
from tune_distill.run import run_distillation

OBJECTIVES = [{"name": "exact", "direction": "max"}, {"name": "parameters", "direction": "min"}]
STUDENTS = {  # trial id -> (baseline, student settings)
    "base0001": (True, ["student.init=teacher"]),
    "prun0002": (False, ["student.init=prune", "student.num_attention_heads=2", "student.intermediate_size=32"]),
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("confirm")
    teacher = make_tiny_qa_model_dir(root / "teacher", num_hidden_layers=2)
    norhaven, animals = tiny_squad_dict()["data"]
    data = {"train": write_squad(root / "train.json", [norhaven]), "val": write_squad(root / "val.json", [animals]),
            "test": write_squad(root / "test.json", [renamed_article(norhaven, "t-"), renamed_article(animals, "t-")])}
    folder = root / "sweep"
    records = []
    for number, (trial_id, (baseline, settings)) in enumerate(STUDENTS.items()):
        run_dir = folder / "tune" / f"trial_{number:04d}_{trial_id}" / "run"
        config = tiny_run_config(teacher, data["train"], data["val"], root / "cache", *settings)
        metrics = run_distillation(config, run_dir, measure_latency=False)
        records.append({"trial_id": trial_id, "number": number, "status": "complete", "baseline": baseline,
                        "params": {"student.init": settings[0]}, "metrics": metrics, "run_dir": str(run_dir)})
    (folder / "trials.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    (folder / "sweep.json").write_text(json.dumps({"config": {"name": "tune"}}))
    summary = write_report(records, folder, objectives=OBJECTIVES)
    return {"folder": folder, "data": data, "summary": summary, "records": records, "root": root}


def test_confirm_rescores_baseline_and_pareto_students_at_their_validation_thresholds(sweep, tmp_path):
    out = tmp_path / "confirm"
    result = confirm(str(sweep["folder"]), str(sweep["data"]["test"]), out, device="cpu")
    rows = list(csv.DictReader((out / "confirm.csv").open()))
    roles = {row["trial_id"]: row["role"] for row in rows}
    assert roles["base0001"] == "baseline" and set(roles) >= set(sweep["summary"]["pareto_trials"])
    assert (out / "confirm.png").stat().st_size > 0 and result["questions"] == 7
    base_record = sweep["records"][0]
    threshold = base_record["metrics"]["na_threshold"]
    # the baseline scored as `tune-distill evaluate` scores it with its validation threshold given unchanged
    expected = evaluate_model_dir(Path(base_record["run_dir"]) / "model", sweep["data"]["test"], tmp_path / "eval",
                                  na_threshold=threshold, max_seq_length=48, doc_stride=16, max_query_length=16,
                                  device="cpu")
    base_row = next(row for row in result["trials"] if row["trial_id"] == "base0001")
    assert base_row["confirmation_exact"] == pytest.approx(expected["exact"])
    assert base_row["na_threshold"] == threshold
    stored = json.loads((out / "trials" / "base0001" / "metrics.json").read_text())
    assert stored["na_threshold_chosen_here"] is False
    # claims on both splits, with paired errors from the per-question scores
    for split in ("validation", "confirmation"):
        assert result[split]["baseline"]["trial_id"] == "base0001"
        assert set(result[split]["claims"]) == {"smaller_at_no_loss", "more_accurate_at_about_the_same_size",
                                                "share_smaller_and_at_least_as_accurate"}
    assert result["confirmation"]["baseline"]["questions"] == 7
    pruned = result["confirmation"]["by_trial"]["prun0002"]
    assert "gain_se" in pruned and pruned["questions"] == 7
    assert result["validation"]["by_trial"]["prun0002"]["questions"] == 3  # val.json: the run's own per_question.json
    assert roles["prun0002"] == "pareto" and result["validation"]["unpaired"] == {}
    assert json.loads((out / "confirm.json").read_text())["confirmation"]["by_trial"]["prun0002"] == pruned
    # the tiny split has too few paragraphs for a clustered error: judged per question, and it says so
    assert result["confirmation"]["errors"]["judged_by"] == "question"
    assert "only 2 paragraphs in 2 article(s)" in result["confirmation"]["errors"]["warning"]
    assert "judged per question" in result["confirmation"]["claims"]["smaller_at_no_loss"]["statement"]
    # what each student does deployed at its validation threshold, on both splits
    for split in ("validation", "confirmation"):
        deployment = result["deployment"][split]
        assert set(deployment["by_trial"]) == set(roles) and isinstance(deployment["statement"], str)
        assert deployment["abstaining"] == [trial for trial, figures in deployment["by_trial"].items()
                                            if figures["abstains"]]
    assert base_row["confirmation_answer_rate"] == pytest.approx(100 * expected["answered"] / 7)
    assert base_row["confirmation_abstains"] == result["deployment"]["confirmation"]["by_trial"]["base0001"]["abstains"]


def test_a_split_sharing_articles_or_questions_with_the_sweep_is_refused(sweep, tmp_path, capsys):
    with pytest.raises(ConfirmError, match=r"shares 1 article title\(s\) and 3 question id\(s\) with the sweep's "
                                           r"validation data"):
        confirm(str(sweep["folder"]), str(sweep["data"]["val"]), tmp_path / "out", device="cpu")
    norhaven = tiny_squad_dict()["data"][0]
    mixed = write_squad(tmp_path / "mixed.json", [renamed_article(norhaven, "x-"), norhaven])
    assert main(["confirm", "--sweep", str(sweep["folder"]), "--data", str(mixed), "--out",
                 str(tmp_path / "cli")]) == 2
    assert "shares 1 article title(s) and 4 question id(s) with the sweep's training data" in capsys.readouterr().err
    with pytest.raises(ConfirmError, match="--trial nope: no such trial"):
        confirm(str(sweep["folder"]), str(sweep["data"]["test"]), tmp_path / "out", trials=["nope"])
    assert not (tmp_path / "out").exists() and not (tmp_path / "cli").exists()


def _files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_evaluate_into_a_sweeps_run_folder_is_refused_and_its_files_stay_as_they_were(sweep, capsys):
    """The finding: `evaluate --out <sweep>/tune/<trial>/run` replaced the run's metrics.json, predictions and null
    odds with the teacher's, and confirm and export then used them (exit 0)."""
    run_dir = Path(sweep["records"][0]["run_dir"])
    before = _files(sweep["folder"])
    for out in (run_dir, run_dir / "model", sweep["folder"]):
        assert main(["evaluate", "--model", str(sweep["root"] / "teacher"), "--data", str(sweep["data"]["val"]),
                     "--out", str(out), "--max-seq-length", "48", "--doc-stride", "16", "--max-query-length", "16",
                     "--device", "cpu"]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and errors[0].startswith(f"error: --out {out}: is ") and \
            "whose files are its own records; write to a new folder" in errors[0], errors
    assert _files(sweep["folder"]) == before
    with pytest.raises(ConfirmError, match=f"--out {run_dir}: is a run folder"):
        confirm(str(sweep["folder"]), str(sweep["data"]["test"]), run_dir, device="cpu")
    assert _files(sweep["folder"]) == before


def test_a_confirm_that_fails_half_way_leaves_no_output_folder(sweep, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise ConfirmError("confirm.png: the figure could not be drawn")

    monkeypatch.setattr(confirm_module, "_frontier", fail)  # after every student was scored and written
    with pytest.raises(ConfirmError, match="the figure could not be drawn"):
        confirm(str(sweep["folder"]), str(sweep["data"]["test"]), tmp_path / "new" / "confirm", device="cpu")
    assert not (tmp_path / "new").exists()


def test_confirm_works_from_the_sweeps_remote_storage(sweep, tmp_path, monkeypatch):
    """The storage_path layout (sweep files at the top, runs under <name>/trial_*_<id>/run) on a local pyarrow
    file system standing in for S3."""
    import pyarrow.fs as pafs

    remote = tmp_path / "bucket" / "prefix"
    remote.mkdir(parents=True)
    for name in ("sweep.json", "trials.jsonl", "summary.json"):
        shutil.copy(sweep["folder"] / name, remote / name)
    shutil.copytree(sweep["folder"] / "tune", remote / "tune")
    moved = [json.loads(line) for line in (remote / "trials.jsonl").read_text().splitlines()]
    for record in moved:
        record["run_dir"] = f"/worker/elsewhere/{record['trial_id']}/run"  # where the trial ran, not here
    (remote / "trials.jsonl").write_text("".join(json.dumps(record) + "\n" for record in moved))
    local = fetch_remote_sweep(pafs.LocalFileSystem(), str(remote), tmp_path / "copy", ["prun0002"])
    assert (local / "runs" / "prun0002" / "model" / "model.safetensors").is_file()
    assert not (local / "runs" / "base0001").exists()

    monkeypatch.setattr(confirm_module.remote, "open_location",
                        lambda uri, endpoint, error: (pafs.LocalFileSystem(), str(remote)))
    result = confirm("s3://bucket/prefix", str(sweep["data"]["test"]), tmp_path / "out", device="cpu")
    assert {row["trial_id"] for row in result["trials"]} >= {"base0001"}
    assert (tmp_path / "out" / "sweep" / "runs" / "base0001" / "per_question.json").is_file()


def test_carve_takes_the_last_articles_no_question_of_which_the_sweep_used(sweep, tmp_path):
    norhaven, animals = tiny_squad_dict()["data"]
    partly = renamed_article(animals, "p-")
    partly["paragraphs"][0]["qas"][0]["id"] = animals["paragraphs"][0]["qas"][0]["id"]  # one validation question
    articles = [renamed_article(norhaven, "a-"), norhaven, renamed_article(animals, "b-"), partly]
    source = write_squad(tmp_path / "train-more.json", articles)
    config = load_config(Path(sweep["records"][0]["run_dir"]) / "config.yaml")
    carved = confirm_module.carve(config, str(source), 1, tmp_path / "test.json")
    assert carved["titles"] == [f"b-{animals['title']}"]  # the last unused one: `partly` shares a question id
    written = json.loads((tmp_path / "test.json").read_text())
    assert [article["title"] for article in written["data"]] == carved["titles"]
    assert carved["questions"] == sum(len(p["qas"]) for p in animals["paragraphs"])
    assert json.loads((tmp_path / "test.json.carve.json").read_text())["titles"] == carved["titles"]
    assert confirm_module.carve(config, str(source), 2, tmp_path / "two.json")["titles"] == \
        [f"a-{norhaven['title']}", f"b-{animals['title']}"]  # file order kept
    with pytest.raises(ConfirmError, match=r"only 2 of its 4 articles are unused .* asked for 3"):
        confirm_module.carve(config, str(source), 3, tmp_path / "three.json")
    assert confirm_module.carve(config, str(source), 1, tmp_path / "test.json")["titles"] == carved["titles"]  # rerun
    with pytest.raises(ConfirmError, match=r"test.json: exists with other questions"):
        confirm_module.carve(config, str(source), 2, tmp_path / "test.json")  # never overwrites another split


def test_confirm_on_carved_articles_with_every_trial(sweep, tmp_path, capsys):
    norhaven, animals = tiny_squad_dict()["data"]
    source = write_squad(tmp_path / "train-more.json", [norhaven, renamed_article(animals, "c-")])
    data = tmp_path / "carved.json"
    assert main(["confirm", "--sweep", str(sweep["folder"]), "--carve-from", str(source), "--articles", "1",
                 "--data", str(data), "--out", str(tmp_path / "out"), "--all-trials"]) == 0
    assert f"carved 1 articles ({sum(len(p['qas']) for p in animals['paragraphs'])} questions)" in \
        capsys.readouterr().out
    result = json.loads((tmp_path / "out" / "confirm.json").read_text())
    assert result["carved"]["titles"] == [f"c-{animals['title']}"]
    assert {row["trial_id"] for row in result["trials"]} == set(STUDENTS)
    # every size the claims know is reported beside the size objective
    assert "non_embedding_parameters_smaller_than_baseline_pct" in result["confirmation"]["by_trial"]["prun0002"]


def test_every_finished_trial_is_chosen_with_all_trials(sweep):
    summary = {"baseline": {"trial_id": "base0001"}, "pareto_trials": []}
    assert [role for _, role in confirm_module._choose(sweep["records"], summary, [])] == ["baseline"]
    chosen = confirm_module._choose(sweep["records"], summary, [], every=True)
    assert [(record["trial_id"], role) for record, role in chosen] == [("base0001", "baseline"), ("prun0002", "asked")]
