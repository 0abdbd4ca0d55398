"""tune_distill.files: the one atomic-write helper and the JSON-object reader."""

from __future__ import annotations

import os
import stat

import pytest

from tune_distill.files import (
    atomic_path,
    check_not_a_run_folder,
    output_folder,
    read_json_object,
    write_atomically,
    write_json,
)


def test_a_write_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "deep" / "record.json"
    write_json(target, {"a": 1})
    write_atomically(target, "second\n")
    assert target.read_text() == "second\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["record.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "record.json"
    write_json(target, {"kept": True})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("killed mid-write")
    assert read_json_object(target) == {"kept": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_written_files_get_the_mode_a_plain_open_would_give(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic = write_atomically(tmp_path / "atomic.txt", "x")
    assert stat.S_IMODE(os.stat(atomic).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)


def test_read_json_object_names_the_file_and_what_was_expected(tmp_path):
    broken = tmp_path / "metrics.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=r"metrics.json: metrics is not valid JSON"):
        read_json_object(broken, "metrics")
    broken.write_text("[1, 2]")
    with pytest.raises(KeyError, match=r"metrics.json: metrics should be a JSON object, got list"):
        read_json_object(broken, "metrics", KeyError)


# --- output folders: never inside a run's folders, nothing left when the command fails ----------------------------


def _run_folder(folder):
    """A run folder as run.py writes it (the files that mark one, and a few of its records)."""
    (folder / "model").mkdir(parents=True)
    for name in ("config.yaml", "command.txt", "environment.json", "history.jsonl", "metrics.json",
                 "predictions.json", "null_odds.json"):
        (folder / name).write_text(f"{name} of the run\n")
    return folder


@pytest.mark.parametrize("target, kind", [("tune/trial/run", "is a run folder"),
                                          ("tune/trial/run/model", "is inside a run folder"),
                                          ("tune/trial/run/new/deeper", "is inside a run folder"),
                                          ("tune/trial", "is a Tune trial folder"),
                                          ("tune/x", "is inside a Tune experiment"), (".", "is a sweep folder")])
def test_an_output_folder_in_a_runs_folders_is_refused_naming_it(tmp_path, target, kind):
    sweep = tmp_path / "sweep"
    _run_folder(sweep / "tune" / "trial" / "run")
    (sweep / "sweep.json").write_text("{}")
    (sweep / "tune" / "experiment_state-2026.json").write_text("{}")
    for name in ("params.json", "result.json"):
        (sweep / "tune" / "trial" / name).write_text("{}")
    with pytest.raises(ValueError, match=f"^--out .*: {kind} \\(.*\\), whose files are its own records; write to a "
                                         "new folder, (outside it|e\\.g\\. .*evaluations)$"):
        check_not_a_run_folder(sweep / target)
    assert check_not_a_run_folder(sweep / "confirm") == sweep / "confirm"  # a new folder in a sweep folder is fine
    assert check_not_a_run_folder(tmp_path / "elsewhere") == tmp_path / "elsewhere"


def test_a_link_or_dots_into_a_run_folder_is_refused_too(tmp_path):
    run = _run_folder(tmp_path / "runs" / "r1")
    (tmp_path / "link").symlink_to(run)
    for path in (tmp_path / "link", tmp_path / "runs" / "other" / ".." / "r1"):
        with pytest.raises(ValueError, match="is a run folder"):
            check_not_a_run_folder(path)


def test_a_teachers_export_or_evaluation_folder_is_not_a_run_folder(tmp_path):
    teacher = tmp_path / "teacher"  # run.make_teacher: the run header, the model files, teacher_metrics.json
    teacher.mkdir()
    for name in ("config.yaml", "command.txt", "environment.json", "config.json", "teacher_metrics.json"):
        (teacher / name).write_text("{}")
    check_not_a_run_folder(teacher)
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    for name in ("metrics.json", "predictions.json", "null_odds.json"):
        (evaluation / name).write_text("{}")
    check_not_a_run_folder(evaluation)


def test_a_failed_command_leaves_no_output_folder_it_made_and_no_file_it_added(tmp_path):
    out = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError):
        with output_folder(out) as folder:
            write_json(folder / "half.json", {"a": 1})
            raise RuntimeError("failed half-way")
    assert not (tmp_path / "new").exists()  # the folders above it that it made too
    kept = tmp_path / "kept"
    kept.mkdir()
    write_json(kept / "mine.json", {"mine": True})
    with pytest.raises(KeyboardInterrupt):
        with output_folder(kept) as folder:
            write_json(folder / "mine.json", {"mine": "replaced whole"})
            (folder / "sub").mkdir()
            write_json(folder / "sub" / "added.json", {})
            raise KeyboardInterrupt
    assert sorted(p.name for p in kept.iterdir()) == ["mine.json"]
    with output_folder(out) as folder:
        write_json(folder / "done.json", {})
    assert (out / "done.json").is_file()
