"""A sweep's folder is safe to start, share, limit and move (issue 14, items 7-10).

Checks before writes (a bad searcher option leaves no folder), one sweep per folder (an atomic claim), a
per-trial time limit, and a sweep folder copied elsewhere that resumes from another working directory
without writing into the original. Tiny sweeps: 1-2 trials of 2 steps on the module's one local Ray.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray")

from sweep_world import ray_cluster_fixture, tiny_sweep, world_fixture  # noqa: E402,F401  (fixtures)

from tune_distill.search import SearcherError  # noqa: E402
from tune_distill.signing import UntrustedFolder  # noqa: E402
from tune_distill.sweep.config import SweepConfigError  # noqa: E402
from tune_distill.sweep.driver import run_sweep  # noqa: E402
from tune_distill.sweep.storage import CLAIM_FILE, claim_folder, sweep_storage  # noqa: E402
from tune_distill.sweep.trial import Deadline, TrialTimeout  # noqa: E402


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folder`, files with their size and modification time."""
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns) if path.is_file() else None
            for path in folder.rglob("*")}


# --- item 8: one sweep per folder ---------------------------------------------------------------------


def test_a_second_claim_on_a_folder_is_refused_until_the_first_is_released(tmp_path):
    out = tmp_path / "sweep"
    first = claim_folder(out)
    holder = json.loads((out / CLAIM_FILE).read_text())
    assert holder["pid"] == os.getpid() and holder["host"]
    with pytest.raises(SweepConfigError, match=f"in use by another sweep \\(process {os.getpid()} on "):
        claim_folder(out)
    first.release()
    assert not (out / CLAIM_FILE).exists()
    claim_folder(out).release()


def test_two_processes_cannot_both_claim_a_folder_and_a_dead_ones_claim_is_taken_over(tmp_path, caplog):
    out = tmp_path / "sweep"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys; from pathlib import Path; from tune_distill.sweep.storage import claim_folder; "
        f"claim_folder(Path({str(out)!r})); print('claimed', flush=True); sys.stdin.read()")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        with pytest.raises(SweepConfigError, match=f"process {holder.pid} on .*remove {out / CLAIM_FILE}"):
            claim_folder(out)
    finally:
        holder.kill()  # killed: its claim stays behind
        holder.wait()
    assert json.loads((out / CLAIM_FILE).read_text())["pid"] == holder.pid
    with caplog.at_level("WARNING", logger="tune_distill"):
        claim = claim_folder(out)
    assert "no longer running" in caplog.text
    assert json.loads((out / CLAIM_FILE).read_text())["pid"] == os.getpid()
    claim.release()


def test_a_fresh_sweep_refuses_a_local_storage_path_that_holds_an_experiment(world, tmp_path):
    storage = tmp_path / "storage"
    (storage / "tune" / "trial_0000_x").mkdir(parents=True)
    config = tiny_sweep(world, storage_path=str(storage))
    with pytest.raises(SweepConfigError, match=f"storage_path {storage} already holds a Tune experiment"):
        sweep_storage(config, tmp_path / "sweep", fresh=True)
    assert sweep_storage(config, tmp_path / "sweep", fresh=False).experiment == str(storage / "tune")


# --- item 10: the per-trial time limit ----------------------------------------------------------------


def test_a_deadline_raises_trial_timeout_once_past_its_limit():
    now = [100.0]
    deadline = Deadline(30, 7, clock=lambda: now[0])
    deadline(1)
    now[0] = 130.5
    with pytest.raises(TrialTimeout, match=r"^trial 0007 timed out after 30.5 s at step 4 \(trial_timeout_s = 30\)$"):
        deadline(4)
    now[0] = 1e12
    Deadline(0, 7, clock=lambda: now[0])(5)  # 0: no limit


def test_a_negative_trial_timeout_is_a_config_error(world):
    with pytest.raises(SweepConfigError, match="trial_timeout_s: must be a number of seconds >= 0"):
        tiny_sweep(world, trial_timeout_s=-1)


# --- item 7: checks before writes ----------------------------------------------------------------------


def test_a_bad_searcher_option_leaves_no_folder_and_a_rerun_works(world, ray_cluster, tmp_path):
    out = tmp_path / "sweep"
    bad = tiny_sweep(world, num_samples=1, searcher={"name": "optuna-tpe", "seed": 0, "options": {"no_such": 1}})
    with pytest.raises(SearcherError, match="bad option.*no_such"):
        run_sweep(bad, out)
    assert not out.exists()
    records = run_sweep(tiny_sweep(world, num_samples=1), out)
    assert [r["status"] for r in records] == ["complete"]


# --- items 9 and 10: a timed-out sweep, copied elsewhere, resumed from another directory ------------------


def test_a_copied_sweep_resumes_from_another_directory_and_leaves_the_original_alone(world, ray_cluster, tmp_path,
                                                                                      monkeypatch):
    # the sweep is started from the world's folder with a relative space path and a limit no trial can meet
    monkeypatch.chdir(world["root"])
    config = dataclasses.replace(
        tiny_sweep(world, num_samples=2, trial_timeout_s=1e-9,
                   scheduler={"name": "pareto_sh", "rungs": [1], "reduction_factor": 2}),
        space=Path(world["space"]).name)
    original = tmp_path / "original"
    records = run_sweep(config, original)
    assert [r["status"] for r in records] == ["failed", "failed"]
    # ended at its first step's check, or by the watchdog a second later when setting up takes longer
    assert all(re.search(r"timed out after [\d.]+ s at step \d+ \(trial_timeout_s = 1e-09\)$", r["error"])
               for r in records), [r["error"] for r in records]

    copy = tmp_path / "moved" / "copy"
    shutil.copytree(original, copy)
    saved = json.loads((copy / "sweep.json").read_text())
    saved["config"]["trial_timeout_s"] = 0  # the limit lifted in the copy: the failed trials run again there
    (copy / "sweep.json").write_text(json.dumps(saved))
    before = _files(original)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    # sweep.json was edited by hand: it no longer matches the folder's signature (tune_distill/signing.py), so its
    # owner resumes it saying they trust it (--trust-folder), as the refusal tells them to
    with pytest.raises(UntrustedFolder, match=r"sweep\.json changed since this sweep last signed its folder.*"
                                              r"--trust-folder"):
        run_sweep(None, copy, resume=True)
    records = run_sweep(None, copy, resume=True, trust_folder=True)
    # pareto_sh may stop one of the two at its rung (step 1 of 2); none fails
    assert all(r["status"] in ("complete", "stopped") for r in records), [(r["status"], r["error"]) for r in records]
    for record in records:
        assert Path(record["run_dir"]).is_relative_to(copy), record["run_dir"]
        assert (Path(record["run_dir"]) / "history.jsonl").is_file()
    assert _files(original) == before  # nothing written in the original
    resumed = json.loads((copy / "sweep.json").read_text())
    assert resumed["out_dir"] == str(copy) and resumed["config"]["space"] == str(copy / "space.yaml")
    assert resumed["config"]["base"]["data.cache_dir"] == str(copy / "cache")
    assert yaml.safe_load((copy / "space.yaml").read_text()) == yaml.safe_load(Path(world["space"]).read_text())
    assert json.loads((copy / "scheduler_state.json").read_text())["records"]["1"]
    assert not (copy / CLAIM_FILE).exists()
