"""Tests of tune_distill.search.searchers: one contract every searcher keeps, each searcher's own
promises, and that states saved before the package split (class paths `tune_distill.search.<Class>`)
still load."""

from __future__ import annotations

import base64
import json
import pickle
import pickletools
import zlib
from pathlib import Path

import numpy as np
import optuna
import pytest

import tune_distill.pareto
import tune_distill.search
from tune_distill.search import (
    DEFAULT_SEARCHER,
    SEARCHER_NAMES,
    Constraint,
    Objective,
    Param,
    SearcherError,
    SearchSpace,
    TrialRecord,
    available_searchers,
    make_searcher,
    optimize,
    parse_searcher_spec,
    restore_searcher,
    searcher_available,
)
from tune_distill.search.expression import Expression
from tune_distill.search.searchers.base import PICKLED_STATE_HEADER, Outcome
from tune_distill.search.searchers.parego import _parego_scores
from tune_distill.search.searchers.state import STATE_HEADER
from tune_distill.signing import UntrustedFolder, trusted_pickles

FIXTURES = Path(__file__).resolve().parent / "fixtures"

TOY_SPACE = SearchSpace(
    params=(
        Param("x", "float", 0.0, 1.0),
        Param("_rate", "float", 1e-3, 1e-1, log=True),
        Param("k", "int", 0, 4),
        Param("c", "categorical", choices=("a", "b")),
    ),
    derived={"rate_percent": "{_rate} * 100"},
    fixed={"tag": "toy"},
)
TOY_OBJECTIVES = (Objective("loss", "min"), Objective("score", "max"))
TOY_CONSTRAINTS = (Constraint("size", "<=", 3.0),)

# Small model settings so that the model-based searchers leave their start-up phase within 12 trials
# (start-up counts completed trials for the Optuna samplers and parego, suggestions for botorch; a
# third of the trials fail) and stay fast: optuna-gp models trials 10 and 11, one pending while the
# other is suggested, with the save/restore in between.
FAST_OPTIONS = {
    "optuna-tpe": {"n_startup_trials": 4},
    "optuna-gp": {"n_startup_trials": 7},
    "parego": {"n_startup_trials": 4},
    "nsga2": {"population_size": 4},
    "random": {},
    "botorch": {"n_startup_trials": 6, "num_restarts": 1, "raw_samples": 16, "mc_samples": 16, "maxiter": 15},
    # replay: twelve fixed samples of the toy space (what the contract's runs suggest, in order)
    "replay": {"trials": [TOY_SPACE.sample_uniform(np.random.default_rng(i)) for i in range(12)]},
}


class FlakyObjective:
    """Two objectives and a constraint metric; every third call raises."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, config: dict) -> dict:
        self.calls += 1
        if self.calls % 3 == 0:
            raise RuntimeError("simulated crash")
        assert config["tag"] == "toy" and "_rate" not in config
        x, k = config["x"], config["k"]
        return {
            "loss": x + 0.1 * k + 0.001 * config["rate_percent"],
            "score": -((1 - x) ** 2) - 0.2 * (config["c"] == "b"),
            "size": float(k),
        }


def searcher_params():
    marks = {"botorch": pytest.mark.skipif(not searcher_available("botorch"), reason="botorch is not installed")}
    return [pytest.param(name, marks=marks.get(name, ())) for name in SEARCHER_NAMES]


# --------------------------------------------------------------------------------------------------
# The contract
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", searcher_params())
def test_searcher_contract(name):
    """Every searcher: suggests inside the space, survives failures, handles pending trials and
    constraints, restores exactly from its state bytes, and refuses impossible calls."""
    _runs_and_restores_exactly(name)
    _reads_statuses_and_refuses_bad_calls(name)


def _runs_and_restores_exactly(name: str) -> None:
    n_trials, batch_size, seed = 12, 2, 3
    records = optimize(
        FlakyObjective(), TOY_SPACE, TOY_OBJECTIVES, TOY_CONSTRAINTS,
        searcher=name, n_trials=n_trials, seed=seed, batch_size=batch_size, **FAST_OPTIONS[name],
    )

    # One record per trial; every third evaluation failed and did not stop the search.
    assert [r.trial_id for r in records] == [f"trial_{i:04d}" for i in range(n_trials)]
    assert [r.status for r in records] == ["complete", "complete", "failed"] * 4
    for record in records:
        assert TOY_SPACE.contains(record.params), record.params
        assert record.config == TOY_SPACE.resolve(record.params)
        if record.status == "failed":
            assert record.values is None and "simulated crash" in record.error
        else:
            assert record.feasible == (record.values["size"] <= 3)

    # Same seed, same observations, two trials pending at a time, and the searcher saved and restored
    # while trial 10 is pending (after the models took over): the very suggestions of the run above.
    searcher = make_searcher(name, TOY_SPACE, TOY_OBJECTIVES, TOY_CONSTRAINTS, seed=seed, **FAST_OPTIONS[name])
    objective = FlakyObjective()
    replayed = []
    for start in range(0, n_trials, batch_size):
        batch = []
        for index in range(start, start + batch_size):
            trial_id = f"trial_{index:04d}"
            batch.append((trial_id, searcher.suggest(trial_id)))
            if index == 10:
                state = searcher.state()
                assert isinstance(state, bytes)
                _assert_plain_data(state)
                searcher = restore_searcher(state)
        for trial_id, params in batch:
            replayed.append(params)
            try:
                values = objective(TOY_SPACE.resolve(params))
            except RuntimeError:
                searcher.observe(trial_id, None, "failed")
            else:
                searcher.observe(trial_id, values)
    assert replayed == [r.params for r in records]


def _assert_plain_data(state: bytes) -> None:
    """A state is a header line and JSON: settings and what was seen, no pickled object anywhere."""
    assert state.startswith(STATE_HEADER)
    data = json.loads(state[len(STATE_HEADER):])
    assert {"searcher", "seed", "options", "space", "objectives", "constraints", "seen_ids"} <= set(data)
    assert b"\x80" not in state  # no pickle protocol marker


def _reads_statuses_and_refuses_bad_calls(name: str) -> None:
    searcher = make_searcher(name, TOY_SPACE, TOY_OBJECTIVES, TOY_CONSTRAINTS, seed=0, **FAST_OPTIONS[name])
    first, second, third, fourth = (searcher.suggest(f"t{i}") for i in range(4))
    searcher.observe("t0", {"loss": 1.0, "score": -1.0, "size": 2.0})
    searcher.observe("t1", None, "pruned")
    searcher.observe("t2", {"loss": float("nan"), "score": 0.0, "size": 0.0})  # non-finite: counted as failed
    with pytest.raises(SearcherError, match="lack"):
        searcher.observe("t3", {"loss": 1.0})
    searcher.observe("t3", None, "failed")
    with pytest.raises(SearcherError, match="not pending"):
        searcher.observe("t3", None, "failed")
    with pytest.raises(SearcherError, match="already suggested"):
        searcher.suggest("t0")
    assert TOY_SPACE.contains(searcher.suggest("t4"))


# --------------------------------------------------------------------------------------------------
# The factory and each searcher's own promises
# --------------------------------------------------------------------------------------------------


def test_make_searcher_errors():
    with pytest.raises(SearcherError, match="unknown searcher 'cma'"):
        make_searcher("cma", TOY_SPACE, TOY_OBJECTIVES)
    with pytest.raises(SearcherError, match="bad option"):
        make_searcher("parego", TOY_SPACE, TOY_OBJECTIVES, n_startup=3)
    with pytest.raises(SearcherError, match="not a searcher state"):
        restore_searcher(b"junk")
    assert DEFAULT_SEARCHER in SEARCHER_NAMES
    assert parse_searcher_spec("optuna-gp:n_startup_trials=8:deterministic_objective=true") == (
        "optuna-gp", {"n_startup_trials": 8, "deterministic_objective": True}
    )


def test_replay_suggests_its_list_in_order_then_nothing():
    samples = FAST_OPTIONS["replay"]["trials"][:3]
    searcher = make_searcher("replay", TOY_SPACE, TOY_OBJECTIVES, trials=samples)
    assert [searcher.suggest(f"t{i}") for i in range(3)] == samples
    searcher.observe("t0", {"loss": 1.0, "score": 0.0, "size": 1.0})  # observations change nothing
    assert searcher.suggest("t3") is None
    assert "replay" not in available_searchers()  # benchmarks compare search algorithms only
    with pytest.raises(SearcherError, match="non-empty list"):
        make_searcher("replay", TOY_SPACE, TOY_OBJECTIVES)
    with pytest.raises(SearcherError, match=r"trials\[1\]: missing \['x'\], unknown \['y'\]"):
        make_searcher("replay", TOY_SPACE, TOY_OBJECTIVES,
                      trials=[samples[0], {**{k: v for k, v in samples[1].items() if k != "x"}, "y": 0}])
    with pytest.raises(SearcherError, match=r"trials\[0\]\.k: 9 is outside the space"):
        make_searcher("replay", TOY_SPACE, TOY_OBJECTIVES, trials=[{**samples[0], "k": 9}])


def test_optuna_receives_constraints_through_set_constraint():
    searcher = make_searcher("optuna-tpe", TOY_SPACE, TOY_OBJECTIVES, TOY_CONSTRAINTS, seed=0)
    searcher.suggest("a")
    searcher.observe("a", {"loss": 0.5, "score": -0.1, "size": 4.0})
    (trial,) = searcher._study.trials
    assert trial.constraints == {"size": 1.0}  # 4 <= 3 is violated by 1
    assert trial.values == [0.5, -0.1]


def test_parego_scores_rank_feasible_before_infeasible():
    Y = np.array([[0.0, 10.0], [5.0, 5.0], [10.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    V = np.array([[-1.0], [-1.0], [0.0], [2.0], [1.0]])  # the last two violate the constraint
    scores = _parego_scores(Y, V, np.array([0.5, 0.5]), rho=0.05)
    # Normalised to [0, 1]: (0, 1) -> 0.5 + 0.025, (0.5, 0.5) -> 0.25 + 0.025, (1, 0) -> 0.525.
    assert scores[:3] == pytest.approx([0.525, 0.275, 0.525])
    assert scores[3] == pytest.approx(2.05 + 1.0) and scores[4] == pytest.approx(2.05 + 0.5)
    assert _parego_scores(Y, V, np.array([1.0, 0.0]), rho=0.0)[:3] == pytest.approx([0.0, 0.5, 1.0])


# --------------------------------------------------------------------------------------------------
# Compatibility with the single module tune_distill/search.py (before the package split)
# --------------------------------------------------------------------------------------------------

# What other code imports from tune_distill.search (sweep, report, export, tests, benchmarks).
OLD_IMPORTS = [
    "DEFAULT_SEARCHER", "EXAMPLE_TEACHER_CONTEXT", "SEARCHER_NAMES", "Constraint", "Objective", "Param",
    "SearchSpace", "SearchSpaceError", "SearcherError", "available_searchers", "load_space", "make_searcher",
    "optimize", "parse_searcher_spec", "parse_space", "restore_searcher", "searcher_available",
]
PARETO_NAMES = [
    "crowding_distance", "hypervolume", "hypervolume_contributions", "hypervolume_reference", "is_feasible",
    "nadir_reference", "non_dominated_sort", "pareto_mask", "satisfies",
]


def test_old_import_paths_still_work():
    for name in OLD_IMPORTS:
        assert hasattr(tune_distill.search, name), name
    for name in PARETO_NAMES:  # moved to tune_distill.pareto, re-exported while callers move
        assert getattr(tune_distill.search, name) is getattr(tune_distill.pareto, name)


def _as_single_module_pickle(data: bytes) -> bytes:
    """The same protocol-2 pickle with every `tune_distill.search.<module>` class path rewritten to
    `tune_distill.search`, as the single-module code wrote them (a GLOBAL opcode is 'c' followed by
    'module\\nname\\n')."""
    out, copied = bytearray(), 0
    for opcode, argument, position in pickletools.genops(data):
        if opcode.name == "GLOBAL" and argument.startswith("tune_distill.search."):
            module, name = argument.split(" ")
            out += data[copied:position] + b"ctune_distill.search\n" + name.encode() + b"\n"
            copied = position + len(f"c{module}\n{name}\n")
    return bytes(out + data[copied:])


def _old_class_paths(data: bytes) -> set[str]:
    return {argument for opcode, argument, _ in pickletools.genops(data)
            if opcode.name == "GLOBAL" and argument.startswith("tune_distill.")}


def test_value_objects_pickled_under_old_paths_load_as_the_new_classes():
    expression = Expression("{a} * 2", "where")
    objects = [TOY_OBJECTIVES[0], TOY_CONSTRAINTS[0], TOY_SPACE.params[1], TOY_SPACE, expression,
               Outcome("complete", (1.0, 2.0), (-1.0,)), TrialRecord("t0", {"k": 1}, {"k": 1}, None, "failed"),
               SearcherError("bad searcher"), tune_distill.search.SearchSpaceError("bad space")]
    old = _as_single_module_pickle(pickle.dumps(objects, protocol=2))
    assert _old_class_paths(old) >= {"tune_distill.search Objective", "tune_distill.search SearchSpace",
                                     "tune_distill.search Expression", "tune_distill.search Outcome"}
    assert all(path.startswith("tune_distill.search ") for path in _old_class_paths(old))
    loaded = pickle.loads(old)
    assert [type(value) for value in loaded] == [type(value) for value in objects]
    assert loaded[:4] == objects[:4] and loaded[5:7] == objects[5:7]
    assert loaded[3].resolve(TOY_SPACE.sample_uniform(np.random.default_rng(0))) == TOY_SPACE.resolve(
        TOY_SPACE.sample_uniform(np.random.default_rng(0)))
    assert loaded[4].evaluate({"a": 3}) == 6 and str(loaded[7]) == "bad searcher"


@pytest.mark.parametrize("name", searcher_params())
def test_searchers_pickled_under_old_paths_restore_and_continue_the_same(name):
    searcher = make_searcher(name, TOY_SPACE, TOY_OBJECTIVES, TOY_CONSTRAINTS, seed=1, **FAST_OPTIONS[name])
    objective = FlakyObjective()
    for index in range(6):
        params = searcher.suggest(f"t{index}")
        try:
            searcher.observe(f"t{index}", objective(TOY_SPACE.resolve(params)))
        except RuntimeError:
            searcher.observe(f"t{index}", None, "failed")
    searcher.suggest("t6")  # pending when saved
    old = _as_single_module_pickle(pickle.dumps(searcher, protocol=2))
    assert f"tune_distill.search {type(searcher).__name__}" in _old_class_paths(old)
    with pytest.raises(UntrustedFolder, match="a pickled searcher state .* is read only while resuming a sweep folder"):
        restore_searcher(PICKLED_STATE_HEADER + old)  # a pickle runs code: refused unless its source is trusted
    with trusted_pickles("this test's own pickle"):  # as a resume of a verified (or trusted) sweep folder reads it
        restored = restore_searcher(PICKLED_STATE_HEADER + old)
    assert type(restored) is type(searcher)
    restored.observe("t6", None, "failed")
    searcher.observe("t6", None, "failed")
    assert restored.suggest("t7") == searcher.suggest("t7")
    assert "tune_distill.search " not in str(_old_class_paths(pickle.dumps(restored, protocol=2)))


def _old_states():
    with open(FIXTURES / "search_old_states.json") as handle:
        return json.load(handle)


@pytest.mark.parametrize("name", sorted(_old_states()["states"]))
def test_states_saved_by_the_single_module_code_restore(name):
    """tests/fixtures/search_old_states.json: states the pre-split code saved with trial 4 pending,
    and the suggestion it made next (see tests/fixtures/search_old_states.py)."""
    fixture = _old_states()
    if int(np.__version__.split(".")[0]) != int(fixture["numpy"].split(".")[0]):
        pytest.skip(f"states pickled with numpy {fixture['numpy']}, not loadable by numpy {np.__version__}")
    if name not in ("parego", "replay") and optuna.__version__.split(".")[:2] != fixture["optuna"].split(".")[:2]:
        pytest.skip(f"Optuna {fixture['optuna']} pickled this study; Optuna's pickles do not cross versions")
    saved = fixture["states"][name]
    state = zlib.decompress(base64.b64decode(saved["state"]))
    names = {argument for _, argument, _ in pickletools.genops(state[len(PICKLED_STATE_HEADER):])
             if isinstance(argument, str)}
    assert "tune_distill.search" in names and "tune_distill.search.searchers.base" not in names  # old class paths
    with trusted_pickles("the repository's own fixture"):  # a pickle: read only from a trusted source
        searcher = restore_searcher(state)
    assert type(searcher).__module__.startswith("tune_distill.search.searchers.")
    assert searcher.space.resolve(saved["pending"]) == TOY_SPACE.resolve(saved["pending"])
    n = fixture["n_observed"]
    assert searcher.suggest(f"trial_{n + 1:04d}") == saved["next"]
    searcher.observe(f"trial_{n:04d}", None, "failed")  # the trial pending when it was saved


# --------------------------------------------------------------------------------------------------
# States as data (format 2): readable under another Optuna release, refused with a clear error when bad
# --------------------------------------------------------------------------------------------------


def _data_states():
    with open(FIXTURES / "search_data_states.json") as handle:
        return json.load(handle)


@pytest.mark.parametrize("name", sorted(_data_states()["states"]))
def test_data_states_restore_under_this_optuna(name):
    """tests/fixtures/search_data_states.json: states saved as data with trial 6 pending (see
    tests/fixtures/search_data_states.py). Under the Optuna release that saved them, the restored searcher
    suggests exactly what the original did; under another release (an upgrade), they still load and the
    searcher goes on inside the space."""
    fixture = _data_states()
    saved = fixture["states"][name]
    searcher = restore_searcher(saved["state"].encode())
    n = fixture["n_observed"]
    suggestion = searcher.suggest(f"trial_{n + 1:04d}")
    same_release = optuna.__version__ == fixture["optuna"] or name in ("parego", "replay")
    if same_release and int(np.__version__.split(".")[0]) == int(fixture["numpy"].split(".")[0]):
        assert suggestion == saved["next"]
    assert TOY_SPACE.contains(suggestion)
    searcher.observe(f"trial_{n:04d}", {"loss": 0.5, "score": -0.5, "size": 1.0})  # pending when it was saved
    searcher.observe(f"trial_{n + 1:04d}", None, "failed")
    again = restore_searcher(searcher.state())
    assert again.suggest("after") == searcher.suggest("after")


def test_bad_states_are_refused_naming_the_field():
    state = make_searcher("parego", TOY_SPACE, TOY_OBJECTIVES, TOY_CONSTRAINTS, seed=0).state()
    data = json.loads(state[len(STATE_HEADER):])

    def encoded(**changes):
        return STATE_HEADER + json.dumps({**data, **changes}).encode()

    with pytest.raises(SearcherError, match="not valid JSON"):
        restore_searcher(STATE_HEADER + b"{not json")
    with pytest.raises(SearcherError, match=r"lacks \['seen_ids'\]"):
        restore_searcher(STATE_HEADER + json.dumps({k: v for k, v in data.items() if k != "seen_ids"}).encode())
    with pytest.raises(SearcherError, match="unknown searcher 'cma'"):
        restore_searcher(encoded(searcher="cma"))
    with pytest.raises(SearcherError, match=r"searcher state\.seed: expected int, got str"):
        restore_searcher(encoded(seed="3"))
    with pytest.raises(SearcherError, match=r"pending\[0\]\.params: .* is not a sample of the space"):
        restore_searcher(encoded(pending=[{"trial_id": "t0", "params": {"x": 5.0}}]))
    optuna_state = make_searcher("random", TOY_SPACE, TOY_OBJECTIVES, seed=0)
    optuna_state.suggest("t0")
    data = json.loads(optuna_state.state()[len(STATE_HEADER):])
    data["trials"][0]["status"] = "lost"
    with pytest.raises(SearcherError, match=r"trials\[0\]\.status: expected running, complete, pruned or failed"):
        restore_searcher(STATE_HEADER + json.dumps(data).encode())


def test_optuna_searchers_pickle_as_their_state_data():
    """Ray keeps the search algorithm in tuner.pkl: an Optuna searcher pickles as its state data (no Optuna
    object inside, so any Optuna release can pickle it, NSGA-II's lock included) and unpickles to the same."""
    searcher = make_searcher("nsga2", TOY_SPACE, TOY_OBJECTIVES, TOY_CONSTRAINTS, seed=2, population_size=4)
    for index in range(5):
        searcher.suggest(f"t{index}")
        searcher.observe(f"t{index}", {"loss": index / 5, "score": -index / 5, "size": float(index % 4)})
    searcher.suggest("t5")
    pickled = pickle.dumps(searcher)
    assert b"optuna" not in pickled.replace(b"tune_distill.search.searchers.optuna", b"")
    copy = pickle.loads(pickled)
    copy.observe("t5", None, "failed")
    searcher.observe("t5", None, "failed")
    assert copy.suggest("t6") == searcher.suggest("t6")
