"""Resuming a run is safe: no code runs from a checkpoint, a kill at any moment leaves something to resume
from, a full disk says so, and history.jsonl holds every evaluation once (issue 14, items 3, 11, 12).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_distill import CONFIG, _student, setup  # noqa: F401  (fixture `setup`)

from tune_distill import checkpoint
from tune_distill.checkpoint import CheckpointError, load_checkpoint, reconcile_history, save_checkpoint
from tune_distill.distill import train


class Killed(Exception):
    pass


def _kill_at(step):
    def callback(record):
        if record["step"] == step:
            raise Killed

    return callback


def _steps_evaluated(log):
    def evaluator(model, step):
        log.append(step)
        return {"exact": float(step)}

    return evaluator


def _dead_pid() -> int:
    """The id of a process that has ended."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def _history(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "history.jsonl").read_text().splitlines()]


class _Payload:
    """Unpickling this writes a marker file: what a crafted state.pt would do with weights_only=False."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


# --- item 3: no code runs from a checkpoint -----------------------------------------------------------


def test_a_crafted_checkpoint_is_refused_and_runs_no_code(setup, tmp_path):  # noqa: F811
    _, _, features, logits = setup
    out, marker = tmp_path / "run", tmp_path / "marker"
    (out / "checkpoint").mkdir(parents=True)
    torch.save({"step": 3, "model": _Payload(marker)}, out / "checkpoint" / "state.pt")
    (out / "checkpoint" / "step.json").write_text(json.dumps({"step": 3}))
    with pytest.raises(CheckpointError, match=r"state\.pt cannot be loaded safely.*--no-resume"):
        train(_student(setup), features, CONFIG, teacher=logits, out_dir=out)
    with pytest.raises(CheckpointError):
        load_checkpoint(out / "checkpoint")
    assert not marker.exists()


def test_rng_states_are_plain_tensors_and_restore_exactly():
    import random

    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    state = checkpoint.rng_state()
    expected = (random.random(), np.random.rand(), float(torch.rand(1)))
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    checkpoint.set_rng_state(state)
    assert (random.random(), np.random.rand(), float(torch.rand(1))) == expected
    leaves = [state["python"]["state"], state["numpy"]["keys"], state["torch"]]
    assert all(isinstance(leaf, torch.Tensor) for leaf in leaves)


def test_a_checkpoint_of_the_previous_format_still_resumes_exactly(setup, tmp_path):  # noqa: F811
    """Format 1 pickled numpy's RNG state as an array: numpy arrays (and nothing else) are allowed for it."""
    _, _, features, logits = setup
    whole = _student(setup)
    train(whole, features, CONFIG, teacher=logits, out_dir=tmp_path / "whole")
    out = tmp_path / "old"
    with pytest.raises(Killed):
        train(_student(setup), features, CONFIG, teacher=logits, out_dir=out, callback=_kill_at(6))
    state_path = out / "checkpoint" / "state.pt"
    state = torch.load(state_path, weights_only=True)
    rng = state["rng"]
    state["rng"] = {  # as the previous code saved it: random.getstate() and np.random.get_state() themselves
        "python": (rng["python"]["version"], tuple(rng["python"]["state"].tolist()), rng["python"]["gauss"]),
        "numpy": ("MT19937", rng["numpy"]["keys"].numpy().astype(np.uint32), rng["numpy"]["pos"],
                  rng["numpy"]["has_gauss"], rng["numpy"]["cached_gaussian"]),
        "torch": rng["torch"],
    }
    state["history"] = json.loads(state.pop("history_json"))
    del state["format"]
    torch.save(state, state_path)
    (out / "checkpoint" / "step.json").write_text(json.dumps({"step": 6}))
    resumed = _student(setup)
    result = train(resumed, features, CONFIG, teacher=logits, out_dir=out)
    assert result.step == 9 and [r["step"] for r in result.history] == [3, 6, 9]
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


# --- item 11: the swap, stale temporaries, a full disk ------------------------------------------------


def test_a_kill_between_the_swap_renames_resumes_from_the_previous_checkpoint(setup, tmp_path):  # noqa: F811
    _, _, features, logits = setup
    whole = _student(setup)
    train(whole, features, CONFIG, teacher=logits, out_dir=tmp_path / "whole")
    out = tmp_path / "killed"
    with pytest.raises(Killed):
        train(_student(setup), features, CONFIG, teacher=logits, out_dir=out, callback=_kill_at(6))
    # the state a kill between `checkpoint -> .checkpoint.old<pid>` and `.checkpoint.tmp<pid> -> checkpoint` leaves
    dead = _dead_pid()
    os.replace(out / "checkpoint", out / f".checkpoint.old{dead}")
    (out / f".checkpoint.tmp{dead}").mkdir()
    (out / f".checkpoint.tmp{dead}" / "state.pt").write_bytes(b"half written")
    live = out / f".checkpoint.tmp{os.getppid()}"  # a live process's staging folder is not touched
    live.mkdir()

    evaluated = []
    resumed = _student(setup)
    result = train(resumed, features, CONFIG, teacher=logits, out_dir=out, evaluator=_steps_evaluated(evaluated))
    assert evaluated == [9]  # resumed at step 6, not from scratch
    assert result.step == 9 and [r["step"] for r in result.history] == [3, 6, 9]
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert sorted(path.name for path in out.glob(".checkpoint*")) == [live.name]


def test_a_full_disk_names_the_folder_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, {"step": 1, "weights": torch.ones(2)}, 1)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match=f"cannot write the checkpoint in {tmp_path}: no space left"):
        save_checkpoint(tmp_path, {"step": 2, "weights": torch.zeros(2)}, 2)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "checkpoint")["step"] == 1
    assert [path.name for path in tmp_path.iterdir()] == ["checkpoint"]  # no staging folder left behind


# --- item 12: history.jsonl after a kill --------------------------------------------------------------


def test_a_resumed_run_writes_each_evaluation_once_even_after_a_torn_line(setup, tmp_path, caplog):  # noqa: F811
    _, _, features, logits = setup
    config = dataclasses.replace(CONFIG, max_steps=12, checkpoint_every_steps=6)
    out = tmp_path / "run"
    with pytest.raises(Killed):  # killed after the evaluation at step 9, before a checkpoint (the last is step 6)
        train(_student(setup), features, config, teacher=logits, out_dir=out, callback=_kill_at(9))
    assert _history(out) == [3, 6, 9]
    with open(out / "history.jsonl", "a") as handle:
        handle.write('{"step": 12, "train_lo')  # a line torn by a kill
    with caplog.at_level("WARNING", logger="tune_distill"):
        result = train(_student(setup), features, config, teacher=logits, out_dir=out)
    assert "torn line" in caplog.text
    assert result.step == 12 and _history(out) == [3, 6, 9, 12]


def test_reconcile_history_keeps_complete_lines_up_to_the_step(tmp_path):
    lines = [json.dumps({"step": step}) + "\n" for step in (2, 4, 6)]
    (tmp_path / "history.jsonl").write_text("".join(lines) + '{"step": 8')
    assert [r["step"] for r in reconcile_history(tmp_path, 4)] == [2, 4]
    assert _history(tmp_path) == [2, 4]
    assert reconcile_history(tmp_path, 0) == [] and (tmp_path / "history.jsonl").read_text() == ""
