"""A sweep started by the pre-split sweep.py resumes with the sweep package (issue 10, item 9).

fixtures/old_sweep/ holds two tiny pareto_sh sweeps of the old code, killed mid-sweep (trials 0000-0001
finished, 0002 interrupted with a checkpoint, 0003 not started; make_fixture.py there says how they were
made). They differ in how Tune's pickles name the sweep's classes: `by_value` ran
`python -m tune_distill.sweep` (the classes' code is in the pickles; their globals name
tune_distill.search and tune_distill.config), `by_reference` ran `tune-distill sweep` (the pickles name
tune_distill.sweep.ParetoSuccessiveHalving, SweepSearcher, ProgressLines, trial_name, trial_dirname).

The experiments record absolute paths (Tune's trial storage, sweep.json's base, the scheduler's state
file inside tuner.pkl), so they are restored where they were made, /tmp/tune-distill-old-sweep, with
the teacher and data rebuilt there (seeded, identical), as a user resumes a sweep in place after an
upgrade. A lock file keeps two test sessions from sharing that folder.

These folders were written before sweep folders were signed (tune_distill/signing.py): they hold no manifest.json,
so a resume refuses them unless told to trust them, which is what a user resuming their own old sweep after the
upgrade does (`--trust-folder`, here trust_folder=True), and their pickled searcher states are read only inside
signing.trusted_pickles.
"""

from __future__ import annotations

import fcntl
import importlib.util
import io
import json
import pickle
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from sweep_world import ray_cluster_fixture  # noqa: E402,F401  (fixture `ray_cluster`)

import tune_distill.sweep  # noqa: E402
from tune_distill.records import read_trials  # noqa: E402
from tune_distill.search import Objective  # noqa: E402
from tune_distill.signing import UntrustedFolder, trusted_pickles  # noqa: E402
from tune_distill.sweep import callbacks, schedulers, searcher, trial  # noqa: E402
from tune_distill.sweep.driver import run_sweep  # noqa: E402
from tune_distill.sweep.ranking import HypervolumeContribution  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "old_sweep"
VARIANTS = ("by_value", "by_reference")
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
_SEARCH_STATE_HEADER = b"tune_distill.search.state/1\n"
# What the old pickles name in tune_distill: every one must stay importable under that name.
PICKLED_NAMES = {
    "by_value": {
        ("tune_distill.config", "ConfigError"), ("tune_distill.search", "Constraint"),
        ("tune_distill.search", "Objective"), ("tune_distill.search", "OptunaSearcher"),
        ("tune_distill.search", "Param"), ("tune_distill.search", "SearchSpace"),
        ("tune_distill.search", "SearcherError"), ("tune_distill.search", "crowding_distance"),
        ("tune_distill.search", "hypervolume_contributions"), ("tune_distill.search", "is_feasible"),
        ("tune_distill.search", "nadir_reference"), ("tune_distill.search", "non_dominated_sort"),
        ("tune_distill.search", "restore_searcher"),
    },
    "by_reference": {
        ("tune_distill.search", "Constraint"), ("tune_distill.search", "Objective"),
        ("tune_distill.search", "OptunaSearcher"), ("tune_distill.search", "Param"),
        ("tune_distill.search", "SearchSpace"), ("tune_distill.sweep", "ParetoSuccessiveHalving"),
        ("tune_distill.sweep", "ProgressLines"), ("tune_distill.sweep", "SweepSearcher"),
        ("tune_distill.sweep", "trial_dirname"), ("tune_distill.sweep", "trial_name"),
    },
}


def _make_fixture_module():
    spec = importlib.util.spec_from_file_location("old_sweep_make_fixture", FIXTURES / "make_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE_FIXTURE = _make_fixture_module()
ROOT: Path = MAKE_FIXTURE.ROOT


@pytest.fixture(scope="module")
def old_sweeps():
    """ROOT rebuilt (world + both old sweep folders, as the old code left them); removed afterwards."""
    try:
        lock = open(f"{ROOT}.lock", "w")
    except OSError as error:
        pytest.skip(f"cannot use {ROOT}: {error}")
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        shutil.rmtree(ROOT, ignore_errors=True)
        MAKE_FIXTURE.write_world(ROOT)
        for variant in VARIANTS:
            with tarfile.open(FIXTURES / f"{variant}.tar.gz") as archive:
                # the "data" filter where this Python has it (3.11.4+, 3.12); the archive is our own fixture
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                archive.extractall(ROOT, **safe)
        yield {variant: ROOT / variant for variant in VARIANTS}
    finally:
        shutil.rmtree(ROOT, ignore_errors=True)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


class _Recording(pickle.Unpickler):
    """An unpickler that notes every tune_distill global it resolves."""

    def __init__(self, data: bytes, names: set):
        super().__init__(io.BytesIO(data))
        self.names = names

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("tune_distill"):
            self.names.add((module, name))
        return super().find_class(module, name)


def _load(data: bytes, names: set) -> Any:
    """Unpickle `data` and every pickle nested in it (searcher states, Tune's hex-encoded fields)."""
    loaded = _Recording(data, names).load()
    _nested(loaded, names, set())
    return loaded


def _nested(value: Any, names: set, seen: set) -> None:
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, (bytes, bytearray)) and bytes(value).startswith(_SEARCH_STATE_HEADER):
        _load(bytes(value)[len(_SEARCH_STATE_HEADER):], names)
    elif isinstance(value, (bytes, bytearray)) and value[:1] == b"\x80":
        _load(bytes(value), names)
    elif isinstance(value, dict):
        for item in value.values():
            _nested(item, names, seen)
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            _nested(item, names, seen)
    elif type(value).__module__.startswith(("tune_distill", "__main__")) and hasattr(value, "__dict__"):
        _nested(vars(value), names, seen)


def _experiment_state_pickles(tune_dir: Path) -> list[bytes]:
    """The pickles Tune keeps hex-encoded in experiment_state-*.json (trial storage, name creators, ...)."""
    text = next(tune_dir.glob("experiment_state-*.json")).read_text()
    return [bytes.fromhex(run) for run in re.findall(r"\b(80[0-5][0-9a-f]{7,})\b", text)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_old_pickles_load_and_restore_to_the_same_decisions(old_sweeps, variant):
    out = old_sweeps[variant]
    tune_dir = out / "tune"
    names: set = set()
    tuner = _load((tune_dir / "tuner.pkl").read_bytes(), names)
    _load(next(tune_dir.glob("searcher-state-*.pkl")).read_bytes(), names)
    for data in _experiment_state_pickles(tune_dir):
        _load(data, names)
    for path in tune_dir.glob("trial_*/params.pkl"):
        _load(path.read_bytes(), names)
    assert names == PICKLED_NAMES[variant]

    config = tuner["_tune_config"]
    scheduler, adapter, progress = config.scheduler, config.search_alg, tuner["_run_config"].callbacks[0]
    if variant == "by_reference":  # the package's classes, through the re-exports in tune_distill.sweep
        assert type(scheduler) is schedulers.ParetoSuccessiveHalving
        assert isinstance(scheduler.ranking, HypervolumeContribution) and scheduler.within_front == "hypervolume"
        assert type(adapter) is searcher.SweepSearcher and type(progress) is callbacks.ProgressLines
        for module, name in names:
            if module == "tune_distill.sweep":
                assert getattr(tune_distill.sweep, name) is getattr(
                    {"trial_name": trial, "trial_dirname": trial, "SweepSearcher": searcher,
                     "ProgressLines": callbacks}.get(name, schedulers), name)
    else:  # the old code itself, carried in the pickles
        assert type(scheduler).__module__ == "__main__" and type(scheduler).__name__ == "ParetoSuccessiveHalving"
    assert scheduler.state_path == str(out / "scheduler_state.json")

    # the searcher adapter, restored as Tune restores it, suggests what the old code's did. Its state is a pickle,
    # which this code reads only where its source is trusted, as a resume of a verified or trusted folder does (the
    # by_value adapter is the old code itself, carried in tuner.pkl: only the folder's signature guards against it)
    if variant == "by_reference":
        with pytest.raises(UntrustedFolder, match=r"searcher-state-.*\.pkl: a pickled searcher checkpoint"):
            adapter.restore_from_dir(str(tune_dir))
    with trusted_pickles("the repository's own fixture"):
        adapter.restore_from_dir(str(tune_dir))
    assert adapter.next_number == 3
    assert adapter.suggest("next") == EXPECTED[variant]["next_suggestion"]

    # the rung records the old scheduler wrote replay to the same decisions through the new one
    state = json.loads((out / "scheduler_state.json").read_text())
    replayed = schedulers.ParetoSuccessiveHalving(state["rungs"], [Objective(*pair) for pair in state["objectives"]],
                                                  state["reduction_factor"], within_front=state["within_front"])
    kinds = {path.parent.name.split("_")[-1]: json.loads(path.read_text())["kind"]
             for path in tune_dir.glob("trial_*/params.json")}
    decisions = []
    for rung in state["rungs"]:
        for trial_id, record in state["records"][str(rung)].items():
            result = {"step": record["step"], "total_steps": 30, "kind": kinds[trial_id],
                      **dict(zip(["exact", "parameters"], record["values"]))}
            assert replayed.on_result(trial_id, result) == record["decision"], (rung, trial_id)
            decisions.append(record["decision"])
    assert len(decisions) >= 4 and "STOP" in decisions
    assert (replayed.num_stopped, replayed.steps_saved) == (state["num_stopped"], state["steps_saved"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_an_old_sweep_resumes_and_every_trial_finishes_once(old_sweeps, ray_cluster, variant, caplog):
    out = old_sweeps[variant]
    before = json.loads((out / "scheduler_state.json").read_text())
    old_ids = {path.name.split("_")[1]: path.name.split("_")[2] for path in (out / "tune").glob("trial_*")}
    assert sorted(old_ids) == ["0000", "0001", "0002"]

    # written before sweep folders were signed: refused as it is, before anything in it is unpickled ...
    with pytest.raises(UntrustedFolder,
                       match=rf"--resume: {re.escape(str(out))} has no manifest\.json: .*--trust-folder"):
        run_sweep(None, out, resume=True)
    # ... and resumed when its owner says they trust it (from then on it is signed with their key)
    with caplog.at_level("INFO", logger="tune_distill"):
        records = run_sweep(None, out, resume=True, trust_folder=True)
    assert "resuming the sweep in" in caplog.text and "--trust-folder: " in caplog.text
    assert (out / "manifest.json").is_file()
    assert [r["number"] for r in records] == [0, 1, 2, 3]
    assert len({r["trial_id"] for r in records}) == 4
    assert [r["trial_id"] for r in records[:3]] == [old_ids[f"{n:04d}"] for n in range(3)]
    assert all(r["status"] in ("complete", "stopped") for r in records), [(r["status"], r["error"]) for r in records]
    assert records[0]["status"] == "complete" and records[0]["baseline"]
    assert records[1]["status"] == "stopped" and records[1]["steps_saved"] == 20  # decided by the old scheduler
    assert "resumes from Tune's checkpoint" in (Path(records[2]["run_dir"]) / "trial.log").read_text()
    assert records[3]["params"] == EXPECTED[variant]["next_suggestion"]["params"]  # the restored searcher's
    assert read_trials(out) == records

    after = json.loads((out / "scheduler_state.json").read_text())
    for rung, recorded in before["records"].items():  # the old decisions are kept, new ones added
        assert {k: v for k, v in after["records"][rung].items() if k in recorded} == recorded
    assert records[3]["trial_id"] in after["records"]["10"]
    saved = json.loads((out / "sweep.json").read_text())
    assert [run["resumed"] for run in saved["runs"]] == [True]
    assert not saved["summary"]["interrupted"] and sum(saved["summary"]["status_counts"].values()) == 4
