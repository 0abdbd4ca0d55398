"""Validation articles kept apart from the sweep's choice: the split (sweep/held_apart.py), the trials on the select
file, the confirmation of the findings' students there (confirm.confirm_held_apart) and the report's figures."""

from __future__ import annotations

import json
import logging
import types
from pathlib import Path

import pytest
from conftest import make_tiny_qa_model_dir, renamed_article, tiny_run_config, tiny_squad_dict
from sweep_world import ray_cluster_fixture, tiny_sweep, world_fixture  # noqa: F401  (fixtures world, ray_cluster)

from tune_distill.cli import main
from tune_distill.config import load_config
from tune_distill.confirm import after_sweep, confirm_held_apart
from tune_distill.data import load_examples, load_many
from tune_distill.held_apart_report import read_confirmation
from tune_distill.report import report_sweep
from tune_distill.run import run_distillation
from tune_distill.sweep.config import SweepConfigError, sweep_config_from_dict
from tune_distill.sweep.held_apart import (
    HELD_APART_FILE,
    SELECT_FILE,
    choose_titles,
    plan_split,
    split_record,
    write_split,
)

NO_SPACE = types.SimpleNamespace(names=(), derived={}, fixed={})
OBJECTIVES = [{"name": "exact", "direction": "max"}, {"name": "parameters", "direction": "min"}]


def _validation(path: Path, copies: int = 3) -> Path:
    """A validation file of 2 x `copies` articles (the tiny ones renamed), version kept."""
    norhaven, animals = tiny_squad_dict()["data"]
    articles = [renamed_article(article, f"v{number}-") for number in range(copies) for article in (norhaven, animals)]
    path.write_text(json.dumps({"version": "v2.0", "data": articles}))
    return path


def _config(val_file: Path, **held: int):
    return sweep_config_from_dict({"space": "space.yaml", "base": {"data.val_file": str(val_file)},
                                   "held_apart": held}, "test sweep")


def _titles(path: Path) -> list[str]:
    return [article["title"] for article in json.loads(path.read_text())["data"]]


def test_the_split_is_seeded_disjoint_complete_and_written_as_squad_files(tmp_path):
    source = _validation(tmp_path / "val.json")
    titles = _titles(source)
    config, split = plan_split(_config(source, articles=2, seed=3), NO_SPACE, tmp_path / "sweep")
    assert config.base["data.val_file"] == str(tmp_path / "sweep" / SELECT_FILE)  # every trial validates there
    assert not (tmp_path / "sweep").exists()  # planned, nothing written yet
    again = plan_split(_config(source, articles=2, seed=3), NO_SPACE, tmp_path / "other")[1]
    assert again.record["held_apart"]["titles"] == split.record["held_apart"]["titles"] == \
        [title for title in titles if title in choose_titles(titles, 2, 3)]  # the source's order
    assert len({tuple(choose_titles(titles, 2, seed)) for seed in range(10)}) > 1  # the seed chooses
    write_split(split, tmp_path / "sweep")
    select, held = tmp_path / "sweep" / SELECT_FILE, tmp_path / "sweep" / HELD_APART_FILE
    assert set(_titles(select)).isdisjoint(_titles(held)) and sorted(_titles(select) + _titles(held)) == sorted(titles)
    assert json.loads(held.read_text())["version"] == "v2.0" and len(_titles(held)) == 2
    questions = {side: len(load_examples(str(path))) for side, path in (("select", select), ("held_apart", held))}
    assert questions["select"] + questions["held_apart"] == len(load_examples(str(source)))
    record = split.record
    assert record["source"] == str(source) and record["seed"] == 3 and record["articles"] == 6
    assert {side: record[side]["questions"] for side in questions} == questions
    assert record["select"]["titles"] == _titles(select)
    assert split.examples == load_many([str(select)])  # what the no-answer score is computed from


def test_max_val_examples_applies_to_the_select_file(tmp_path):
    source = _validation(tmp_path / "val.json")
    raw = {"space": "space.yaml", "base": {"data.val_file": str(source), "data.max_val_examples": 5},
           "held_apart": {"articles": 2}}
    _, split = plan_split(sweep_config_from_dict(raw, "test"), NO_SPACE, tmp_path / "sweep")
    write_split(split, tmp_path / "sweep")
    assert split.examples == load_many([str(tmp_path / "sweep" / SELECT_FILE)], 5)
    assert split.record["select"]["validated_questions"] == 5 and split.record["max_val_examples"] == 5


def test_bad_settings_are_one_clear_error_naming_the_field(tmp_path):
    source = _validation(tmp_path / "val.json", copies=1)
    with pytest.raises(SweepConfigError, match=r"held_apart.articles: .*val.json has 2 article\(s\).*got 2"):
        plan_split(_config(source, articles=2), NO_SPACE, tmp_path / "sweep")
    with pytest.raises(SweepConfigError, match=r"held_apart.articles: must be an integer >= 0, got -1"):
        _config(source, articles=-1)
    with pytest.raises(SweepConfigError, match=r"held_apart.article: unknown key; known: articles, seed"):
        _config(source, article=1)
    with pytest.raises(SweepConfigError, match=r"held_apart.articles: base data.val_file hub:squad_v2:validation is "
                                               r"a hub split"):
        sweep_config_from_dict({"space": "s.yaml", "base": {"data.val_file": "hub:squad_v2:validation"},
                                "held_apart": {"articles": 1}}, "test")
    space = types.SimpleNamespace(names=(), derived={}, fixed={"data.max_val_examples": 3})
    with pytest.raises(SweepConfigError, match=r"held_apart.articles: the space sets data.max_val_examples"):
        plan_split(_config(source, articles=1), space, tmp_path / "sweep")
    assert plan_split(_config(source), NO_SPACE, tmp_path / "sweep")[1] is None  # off by default
    assert not (tmp_path / "sweep").exists()


def test_a_resumed_sweep_reuses_its_split_and_refuses_changed_files(tmp_path):
    source = _validation(tmp_path / "val.json")
    out = tmp_path / "sweep"
    config, split = plan_split(_config(source, articles=2, seed=1), NO_SPACE, out)
    write_split(split, out)
    (out / "sweep.json").write_text(json.dumps({"config": {}, **split_record(split)}))
    _validation(source, copies=2)  # the source changed since: the recorded split goes on (a warning)
    resumed_config, resumed = plan_split(config, NO_SPACE, out)  # the saved config: base val_file = select
    assert resumed.record == split.record and not resumed.texts and resumed.examples == split.examples
    assert resumed_config == config
    held = out / HELD_APART_FILE
    held.write_text(held.read_text().replace("v", "w", 1))
    with pytest.raises(SweepConfigError, match=r"validation-held-apart.json has changed since the sweep split it"):
        plan_split(config, NO_SPACE, out)
    held.unlink()
    with pytest.raises(SweepConfigError, match=r"validation-held-apart.json is missing"):
        plan_split(config, NO_SPACE, out)


def test_plan_sweep_gives_every_trial_the_select_file(world, tmp_path):
    from tune_distill.sweep.driver import no_answer_score, plan_sweep, prepare_sweep
    from tune_distill.sweep.plan import trial_run_config

    out = tmp_path / "sweep"
    prepared = plan_sweep(tiny_sweep(world, held_apart={"articles": 1, "seed": 0}), out)
    select = str(out / SELECT_FILE)
    assert prepared.config.base["data.val_file"] == select
    assert trial_run_config(prepared.config.base, {"student.num_hidden_layers": 1}, number=1).data.val_file == select
    assert prepared.held_apart.record["source"] == str(world["data"] / "val.json")
    prepare_sweep(tiny_sweep(world, held_apart={"articles": 1, "seed": 0}), out)  # writes the split, then features
    assert prepared.no_answer == no_answer_score(load_many([select]))
    assert len(_titles(out / HELD_APART_FILE)) == 1


@pytest.fixture(scope="module")
def held_sweep(tmp_path_factory):
    """A tiny sweep folder whose runs validated on the select file of a 6-article validation file, 2 held apart."""
    root = tmp_path_factory.mktemp("held_apart")
    teacher = make_tiny_qa_model_dir(root / "teacher", num_hidden_layers=2)
    norhaven = tiny_squad_dict()["data"][0]
    train = root / "train.json"
    train.write_text(json.dumps({"version": "v2.0", "data": [norhaven]}))
    folder = root / "sweep"
    config, split = plan_split(_config(_validation(root / "val.json"), articles=2, seed=0), NO_SPACE, folder)
    write_split(split, folder)
    records = []
    students = {"base0001": (True, ["student.init=teacher"]),
                "prun0002": (False, ["student.init=prune", "student.num_attention_heads=2",
                                     "student.intermediate_size=32"])}
    for number, (trial_id, (baseline, settings)) in enumerate(students.items()):
        run_dir = folder / "tune" / f"trial_{number:04d}_{trial_id}" / "run"
        run = tiny_run_config(teacher, train, config.base["data.val_file"], folder / "cache", *settings)
        metrics = run_distillation(run, run_dir, measure_latency=False)
        records.append({"trial_id": trial_id, "number": number, "status": "complete", "baseline": baseline,
                        "params": {"student.init": settings[0]}, "metrics": metrics, "run_dir": str(run_dir)})
    (folder / "trials.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    (folder / "sweep.json").write_text(json.dumps({"config": {"name": "tune"}, "objectives": OBJECTIVES,
                                                   "summary": {"interrupted": False}, **split_record(split)}))
    summary = report_sweep(folder)
    assert summary["held_apart"]["statement"].startswith("the held-apart articles are not confirmed yet: run "
                                                         f"tune-distill confirm --sweep {folder} --held-apart")
    return {"folder": folder, "split": split, "summary": summary}


def test_the_end_of_a_sweep_confirms_the_findings_students_on_the_held_apart_articles(held_sweep):
    folder, split = held_sweep["folder"], held_sweep["split"]
    summary = after_sweep(folder)
    result = json.loads((folder / "held-apart" / "confirm.json").read_text())
    assert Path(result["data"]) == folder / HELD_APART_FILE
    assert result["questions"] == split.record["held_apart"]["questions"]
    assert (folder / "held-apart" / "confirm.csv").is_file() and (folder / "held-apart" / "confirm.png").is_file()
    confirmed = {row["trial_id"]: row["role"] for row in result["trials"]}
    assert confirmed["base0001"] == "baseline" and "prun0002" in confirmed
    held = summary["held_apart"]
    assert held["articles"] == 2 and held["questions"] == result["questions"]
    assert json.loads((folder / "summary.json").read_text())["held_apart"] == held
    for name in ("smaller_at_no_loss", "more_accurate_at_about_the_same_size"):
        finding = summary["findings"][name]
        trial = finding.get("trial_id")
        if trial is None:
            continue
        claim = held["claims"][name]
        figures = result["confirmation"]["by_trial"][trial]
        assert claim["held_apart"]["gain"] == figures["gain"] and claim["trial_id"] == trial
        assert f"on 2 held-apart article(s) ({figures['questions']} questions) {figures['gain']:+.2f}" in \
            finding["statement"]
        assert "on validation " in finding["statement"] and finding["held_apart"]["holds"] in (True, False)
        # stated corrected for the choice first: the verdict new articles can test
        verdict = "holds" if finding["held_apart"]["holds"] else "does not hold"
        assert finding["statement"].startswith(f"corrected for the choice, {verdict} on the held-apart articles")
        assert finding["held_apart_holds"] is finding["held_apart"]["holds"]
    assert any(summary["findings"][name].get("trial_id") for name in held["claims"])  # at least one claim named


def test_report_rerun_and_the_confirm_command_show_the_held_apart_figures(held_sweep, capsys):
    folder = held_sweep["folder"]
    if not (folder / "held-apart" / "confirm.json").is_file():
        after_sweep(folder)
    capsys.readouterr()
    assert main(["report", "--sweep", str(folder)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["held_apart"]["articles"] == 2 and "held-apart article(s)" in json.dumps(printed["findings"])
    assert main(["confirm", "--sweep", str(folder), "--held-apart", "--device", "cpu"]) == 0
    assert "held-apart article(s)" in capsys.readouterr().out
    assert main(["confirm", "--sweep", str(folder), "--held-apart", "--data", "x.json"]) == 2
    assert "--held-apart: the split and the folder are the sweep's own" in capsys.readouterr().err


def test_a_bad_confirm_json_is_one_clear_error_line(held_sweep, tmp_path, capsys):
    folder = held_sweep["folder"]
    if not (folder / "held-apart" / "confirm.json").is_file():
        after_sweep(folder)
    path = folder / "held-apart" / "confirm.json"
    good = path.read_text()
    try:
        broken = json.loads(good)
        first = next(iter(broken["confirmation"]["by_trial"]))
        broken["confirmation"]["by_trial"][first]["gain"] = "lots"
        path.write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=rf"confirm.json: confirmation.by_trial.{first}.gain: expected a number"):
            read_confirmation(path)
        capsys.readouterr()
        assert main(["report", "--sweep", str(folder), "--out", str(tmp_path / "report")]) == 2
        errors = capsys.readouterr().err.strip().splitlines()
        assert len(errors) == 1 and errors[0].startswith(f"error: {path}: confirmation.by_trial.{first}.gain")
        path.write_text("[1, 2]")
        with pytest.raises(ValueError, match="confirm.json"):
            read_confirmation(path)
    finally:
        path.write_text(good)


def test_a_failing_confirmation_keeps_the_sweeps_records_and_says_how_to_rerun(held_sweep, caplog):
    folder = held_sweep["folder"]
    held = folder / HELD_APART_FILE
    original = held.read_bytes()
    before = {name: (folder / name).read_bytes() for name in ("trials.jsonl", "sweep.json")}
    try:
        held.write_bytes(original.replace(b"v2.0", b"v2.1", 1))
        with caplog.at_level(logging.WARNING, logger="tune_distill.confirm"):
            assert after_sweep(folder) is None
        assert f"Rerun it with: tune-distill confirm --sweep {folder} --held-apart" in caplog.text
        assert "has changed since the sweep split it" in caplog.text
        assert {name: (folder / name).read_bytes() for name in before} == before
        with pytest.raises(Exception, match="has changed since the sweep split it"):
            confirm_held_apart(folder)
    finally:
        held.write_bytes(original)


def test_a_sweep_through_the_command_confirms_its_held_apart_articles_at_the_end(world, ray_cluster, tmp_path,
                                                                                capsys):
    """`tune-distill sweep` on one local Ray: trials validate on the select file, then the findings' students are
    confirmed on the held-apart articles and summary.json carries them."""
    import dataclasses

    import yaml

    from tune_distill.records import read_trials
    from tune_distill.sweep.config import sweep_config_to_dict

    config = tiny_sweep(world, num_samples=2, held_apart={"articles": 2, "seed": 5})
    config = dataclasses.replace(config, base={**config.base, "data.val_file": str(_validation(tmp_path / "val.json"))},
                                 measure_latency=False)
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep_config_to_dict(config)))
    out = tmp_path / "sweep"
    assert main(["sweep", "--config", str(tmp_path / "sweep.yaml"), "--out", str(out)]) == 0
    records = read_trials(out)
    for record in records:
        assert load_config(Path(record["run_dir"]) / "config.yaml").data.val_file == str(out / SELECT_FILE)
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["config"]["base"]["data.val_file"] == str(out / SELECT_FILE)
    assert saved["held_apart"]["source"] == str(tmp_path / "val.json") and saved["held_apart"]["seed"] == 5
    assert len(saved["held_apart"]["held_apart"]["titles"]) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["held_apart"]["articles"] == 2 and (out / "held-apart" / "confirm.json").is_file()
    assert "held-apart article(s)" in capsys.readouterr().out
