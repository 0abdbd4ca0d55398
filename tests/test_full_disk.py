"""A full disk during a sweep: the sweep stops with one line naming the folder and the space needed, nothing
written is cut, and `--resume` after freeing space finishes every trial once.

The disk is filled by injection (no mount needed): ENOSPC from a write, or a free-space figure of 0 where the
sweep's SpaceGuard reads it. The unit tests are instant; one tiny sweep (tests/sweep_world.py) is stopped and
resumed through the command line (about two minutes).
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ray = pytest.importorskip("ray")

from sweep_world import ray_cluster_fixture, tiny_sweep, world_fixture  # noqa: E402,F401  (fixtures)

from tune_distill import cli  # noqa: E402
from tune_distill.records import read_trials  # noqa: E402
from tune_distill.study import check_journal, journal_backend, open_study  # noqa: E402
from tune_distill.sweep import diskspace  # noqa: E402
from tune_distill.sweep.config import SweepConfigError, sweep_config_to_dict  # noqa: E402
from tune_distill.sweep.diskspace import DiskFull, SpaceGuard  # noqa: E402
from tune_distill.sweep.driver import run_sweep  # noqa: E402
from tune_distill.sweep.experiment import keep_snapshot, settle_snapshot  # noqa: E402

OBJECTIVES = [{"name": "exact", "direction": "max"}, {"name": "parameters", "direction": "min"}]


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


# --- the study journal --------------------------------------------------------------------------------------------

def test_a_journal_append_cut_by_a_full_disk_leaves_whole_lines(tmp_path, monkeypatch):
    path = tmp_path / "study.journal"
    study = open_study(path, "s", OBJECTIVES)
    before = path.read_bytes()
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", _full_disk)  # the bytes reached the file, then the disk was full
    with pytest.raises(OSError, match="No space left"):
        study.set_user_attr("note", "x" * 1000)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert path.read_bytes() == before  # cut back off: no partial line
    journal_backend(path).append_logs([{"op_code": 2, "worker_id": "w", "study_id": 0, "user_attr": {"a": 1}}])
    assert check_journal(path) == len(before.splitlines()) + 1
    assert open_study(path, "s", OBJECTIVES).user_attrs == {"a": 1}  # replays: the next append started clean


# --- the experiment's snapshot ------------------------------------------------------------------------------------

def _snapshot(experiment: Path, run: str, trials: int) -> dict[str, bytes]:
    files = {f"experiment_state-{run}.json": json.dumps({"trial_data": [[str(i), {}] for i in range(trials)]}).encode(),
             f"search_gen_state-{run}.json": pickle.dumps({"counter": trials}),
             f"searcher-state-{run}.pkl": json.dumps({"format": "x", "next_number": trials}).encode()}
    experiment.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (experiment / name).write_bytes(data)
    return files


def test_a_final_snapshot_cut_by_a_full_disk_gives_way_to_the_kept_complete_one(tmp_path):
    experiment = tmp_path / "tune"
    complete = _snapshot(experiment, "2026-01-01_00-00-00", 3)
    kept = keep_snapshot(experiment)  # the guard, stopping the sweep
    assert sorted(path.name for path in kept) == sorted(f".complete-{name}" for name in complete)
    (experiment / "experiment_state-2026-01-01_00-00-00.json").write_bytes(b'{"trial_data": [["0", {')  # cut
    (experiment / "searcher-state-2026-01-01_00-00-00.pkl").write_bytes(b"")
    for trial, data in (("trial_0001_a", b""), ("trial_0002_b", b"\x80 a real error")):
        (experiment / trial).mkdir()
        (experiment / trial / "error.pkl").write_bytes(data)  # Tune created the first one on the full disk
    assert settle_snapshot(experiment) == "restored"
    assert {name: (experiment / name).read_bytes() for name in complete} == complete
    assert not list(experiment.glob(".complete-*"))
    assert [path.parent.name for path in experiment.glob("trial_*/error.pkl")] == ["trial_0002_b"]


def test_a_whole_final_snapshot_is_kept_and_the_copy_dropped(tmp_path):
    experiment = tmp_path / "tune"
    _snapshot(experiment, "2026-01-01_00-00-00", 3)
    keep_snapshot(experiment)
    final = _snapshot(experiment, "2026-01-01_00-00-00", 4)  # Tune's final snapshot, written whole
    assert settle_snapshot(experiment) is None
    assert {name: (experiment / name).read_bytes() for name in final} == final
    assert not list(experiment.glob(".complete-*"))


def test_a_cut_snapshot_falls_back_to_an_earlier_run_or_is_one_line(tmp_path):
    experiment = tmp_path / "tune"
    earlier = _snapshot(experiment, "2026-01-01_00-00-00", 3)
    _snapshot(experiment, "2026-01-02_00-00-00", 5)
    (experiment / "experiment_state-2026-01-02_00-00-00.json").write_bytes(b"{" * 10)  # cut at 10 bytes
    assert settle_snapshot(experiment) == "earlier"
    assert {name: (experiment / name).read_bytes() for name in earlier} == earlier
    assert sorted(path.name for path in experiment.iterdir() if "2026-01-02" in path.name) == [
        ".cut-experiment_state-2026-01-02_00-00-00.json", ".cut-search_gen_state-2026-01-02_00-00-00.json",
        ".cut-searcher-state-2026-01-02_00-00-00.pkl"]
    for name in earlier:
        (experiment / name).unlink()
    _snapshot(experiment, "2026-01-03_00-00-00", 2)
    (experiment / "experiment_state-2026-01-03_00-00-00.json").write_bytes(b'{"trial_')
    with pytest.raises(SweepConfigError, match=r"experiment_state-2026-01-03_00-00-00\.json: cut short .* this sweep "
                                               r"cannot be resumed"):
        settle_snapshot(experiment)


# --- the guard ----------------------------------------------------------------------------------------------------

def test_the_guard_stops_the_sweep_through_tunes_own_signal_and_keeps_the_snapshot(tmp_path, monkeypatch):
    experiment = tmp_path / "sweep" / "tune"
    _snapshot(experiment, "2026-01-01_00-00-00", 2)
    (experiment / "trial_0000_a").mkdir()
    (experiment / "trial_0000_a" / "weights").write_bytes(b"w" * 3_000_000)
    guard = SpaceGuard(str(tmp_path / "sweep"), str(experiment), num_samples=4)
    trials = [SimpleNamespace(trial_id="a", status="TERMINATED", path=str(experiment / "trial_0000_a")),
              SimpleNamespace(trial_id="b", status="RUNNING", path=str(experiment / "trial_0001_b"))]
    guard.on_trial_complete(0, trials, trials[0])
    assert guard.trial_bytes == 3_000_000
    guard.check(trials)
    assert guard.stopped is None  # plenty of room here
    monkeypatch.setattr(diskspace, "free_bytes", lambda folder: 500_000)
    signals = []
    previous = signal.signal(signal.SIGUSR1, lambda number, frame: signals.append(number))  # as Tune's run loop
    try:
        guard.check(trials)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert signals == [signal.SIGUSR1] and "0.5 MB free" in guard.stopped
    assert list(experiment.glob(".complete-experiment_state-*"))  # kept aside before the final snapshot
    message = guard.message()
    assert "\n" not in message and str(tmp_path / "sweep") in message
    assert "free about 10 MB there" in message  # 3 trials left x 3 MB, two snapshots, 1 MiB margin, less 0.5 MB free
    assert "--resume" in message
    guard = SpaceGuard(str(tmp_path / "sweep"), None, num_samples=4)
    previous = signal.signal(signal.SIGUSR1, signal.SIG_DFL)  # an earlier sweep in this process may have left Tune's
    try:
        with pytest.raises(DiskFull, match="no space left on the disk of"):  # no Tune handler: it raises instead
            guard.check(trials)
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_any_write_of_the_driver_failing_for_lack_of_space_ends_in_one_line(tmp_path, monkeypatch):
    from tune_distill.sweep import driver

    def fails(*args, **kwargs):
        try:
            _full_disk()
        except OSError as error:
            raise RuntimeError("Ray wrapped it") from error

    monkeypatch.setattr(driver, "_run_sweep", fails)
    with pytest.raises(DiskFull) as raised:
        driver.run_sweep(None, tmp_path / "sweep", resume=True)
    assert str(raised.value).startswith(f"no space left on the disk of {tmp_path / 'sweep'}")
    assert "\n" not in str(raised.value)


def test_the_sweep_command_ends_a_full_disk_in_one_line_with_its_own_status(tmp_path, monkeypatch, capsys):
    from tune_distill.sweep import cli as sweep_cli

    def stops(*args, **kwargs):
        raise DiskFull(diskspace.no_space_message(tmp_path))

    monkeypatch.setattr(sweep_cli, "run_sweep", stops)
    (tmp_path / "sweep.json").write_text("{}")
    assert cli.main(["sweep", "--resume", "--out", str(tmp_path)]) == 3  # and no report is written on a full disk
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: no space left on the disk of {tmp_path}"), lines
    assert not (tmp_path / "summary.json").exists()


# --- a tiny sweep stopped by a full disk, then resumed --------------------------------------------------------------

def test_a_sweep_on_a_full_disk_stops_in_one_line_and_resumes_every_trial_once(world, ray_cluster, tmp_path,
                                                                                monkeypatch):
    config = tiny_sweep(world, num_samples=4, max_concurrent=1, base={**tiny_sweep(world).base,
                                                                      "distill.eval_every_steps": 10},
                        space_overrides={"fixed": {"distill.max_steps": 30}})
    config_path = tmp_path / "sweep.yaml"
    config_path.write_text(yaml.safe_dump(sweep_config_to_dict(config)))
    out = tmp_path / "sweep"
    real_free = diskspace.free_bytes

    def filling(folder):  # the disk is full once trial 0001 has written a checkpoint
        return 0 if list(out.glob("tune/trial_0001_*/checkpoint_*")) else real_free(folder)

    monkeypatch.setattr(diskspace, "free_bytes", filling)
    monkeypatch.setattr(diskspace, "CHECK_EVERY_S", 0.1)
    with pytest.raises(DiskFull) as stopped:
        run_sweep(config, out)
    message = str(stopped.value)
    assert "\n" not in message and message.startswith(f"no space left on the disk of {out.resolve()} (0.0 MB free)")
    assert "free about" in message and "--resume" in message
    first = {record["trial_id"]: record for record in read_trials(out)}
    assert sum(record["status"] == "complete" for record in first.values()) < 4
    assert not list((out / "tune").glob(".complete-*"))  # the snapshot was settled

    monkeypatch.setattr(diskspace, "free_bytes", real_free)  # space freed
    assert cli.main(["sweep", "--resume", "--out", str(out)]) == 0
    records = read_trials(out)
    assert [record["number"] for record in records] == [0, 1, 2, 3]  # every trial once
    assert len({record["trial_id"] for record in records}) == 4
    assert all(record["status"] == "complete" for record in records), [(r["status"], r["error"]) for r in records]
    for record in records:  # the trials finished before the stop were not run again
        if first.get(record["trial_id"], {}).get("status") == "complete":
            assert record["finished_at"] == first[record["trial_id"]]["finished_at"]
    assert json.loads((out / "summary.json").read_text())["trials"] == 4
