"""tune_distill.files: the one atomic-write helper and the JSON-object reader."""

from __future__ import annotations

import os
import stat

import pytest

from tune_distill.files import atomic_path, read_json_object, write_atomically, write_json


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
