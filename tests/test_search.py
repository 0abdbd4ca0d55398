"""Tests of tune_distill.search: one contract test over every searcher, Pareto maths, space loading."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from tune_distill.config import RunConfig, apply_overrides
from tune_distill.search import (
    DEFAULT_SEARCHER,
    EXAMPLE_TEACHER_CONTEXT,
    SEARCHER_NAMES,
    Constraint,
    Objective,
    Param,
    SearcherError,
    SearchSpace,
    SearchSpaceError,
    crowding_distance,
    hypervolume,
    hypervolume_contributions,
    hypervolume_reference,
    is_feasible,
    load_space,
    make_searcher,
    nadir_reference,
    non_dominated_sort,
    optimize,
    parse_searcher_spec,
    pareto_mask,
    available_searchers,
    restore_searcher,
    searcher_available,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# --------------------------------------------------------------------------------------------------
# The searcher contract
# --------------------------------------------------------------------------------------------------

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


@pytest.mark.parametrize("name", searcher_params())
def test_searcher_contract(name):
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


@pytest.mark.parametrize("name", searcher_params())
def test_searcher_statuses_and_bad_calls(name):
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


def test_make_searcher_errors():
    with pytest.raises(SearcherError, match="unknown searcher 'cma'"):
        make_searcher("cma", TOY_SPACE, TOY_OBJECTIVES)
    with pytest.raises(SearcherError, match="bad option"):
        make_searcher("parego", TOY_SPACE, TOY_OBJECTIVES, n_startup=3)
    with pytest.raises(SearcherError, match="direction"):
        Objective("exact", "maximize")
    with pytest.raises(SearcherError, match="op"):
        Constraint("exact", ">", 55.4)
    with pytest.raises(SearcherError, match="not a searcher state"):
        restore_searcher(b"junk")
    assert DEFAULT_SEARCHER in SEARCHER_NAMES
    assert parse_searcher_spec("optuna-gp:n_startup_trials=8:deterministic_objective=true") == (
        "optuna-gp", {"n_startup_trials": 8, "deterministic_objective": True}
    )


def test_constraints_and_feasibility():
    exact = Constraint("exact", ">=", 55.4)
    assert exact.violation(60.0) < 0 < exact.violation(50.0) and exact.violation(55.4) == 0
    assert Constraint("params", "<=", 10.0).violation(12.0) == 2.0
    assert is_feasible({"exact": 56.0}, [exact]) and not is_feasible({"exact": 50.0}, [exact])
    assert not is_feasible({}, [exact])


def test_optuna_receives_constraints_through_set_constraint():
    searcher = make_searcher("optuna-tpe", TOY_SPACE, TOY_OBJECTIVES, TOY_CONSTRAINTS, seed=0)
    searcher.suggest("a")
    searcher.observe("a", {"loss": 0.5, "score": -0.1, "size": 4.0})
    (trial,) = searcher._study.trials
    assert trial.constraints == {"size": 1.0}  # 4 <= 3 is violated by 1
    assert trial.values == [0.5, -0.1]


def test_parego_scores_rank_feasible_before_infeasible():
    from tune_distill.search import _parego_scores

    Y = np.array([[0.0, 10.0], [5.0, 5.0], [10.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    V = np.array([[-1.0], [-1.0], [0.0], [2.0], [1.0]])  # the last two violate the constraint
    scores = _parego_scores(Y, V, np.array([0.5, 0.5]), rho=0.05)
    # Normalised to [0, 1]: (0, 1) -> 0.5 + 0.025, (0.5, 0.5) -> 0.25 + 0.025, (1, 0) -> 0.525.
    assert scores[:3] == pytest.approx([0.525, 0.275, 0.525])
    assert scores[3] == pytest.approx(2.05 + 1.0) and scores[4] == pytest.approx(2.05 + 0.5)
    assert _parego_scores(Y, V, np.array([1.0, 0.0]), rho=0.0)[:3] == pytest.approx([0.0, 0.5, 1.0])


def test_optimize_records_objective_errors_as_failures():
    def objective(config):
        if config["k"] == 0:
            return {"loss": 1.0}  # metrics missing
        return {"loss": 1.0, "score": float("inf"), "size": 0.0}  # non-finite

    records = optimize(objective, TOY_SPACE, TOY_OBJECTIVES, TOY_CONSTRAINTS, searcher="random", n_trials=6)
    assert [r.status for r in records] == ["failed"] * 6
    assert all(r.error for r in records)


# --------------------------------------------------------------------------------------------------
# Pareto maths
# --------------------------------------------------------------------------------------------------

POINTS_2D = np.array([[1, 4], [2, 2], [4, 1], [3, 3], [2, 2], [6, 0], [5, 0.5]], dtype=float)


def test_non_dominated_sort_and_mask_2d():
    fronts = non_dominated_sort(POINTS_2D, ["min", "min"])
    # (6, 0) and (5, 0.5) are non-dominated (nothing beats their second objective); duplicates share a front.
    assert [sorted(f.tolist()) for f in fronts] == [[0, 1, 2, 4, 5, 6], [3]]
    assert pareto_mask(POINTS_2D, ["min", "min"]).tolist() == [True, True, True, False, True, True, True]
    flipped = POINTS_2D * np.array([1, -1])
    assert [sorted(f.tolist()) for f in non_dominated_sort(flipped, ["min", "max"])] == [[0, 1, 2, 4, 5, 6], [3]]
    # Maximising both: only (2, 2) and its duplicate are beaten (by (3, 3)).
    assert [sorted(f.tolist()) for f in non_dominated_sort(POINTS_2D, ["max", "max"])] == [[0, 2, 3, 5, 6], [1, 4]]
    assert non_dominated_sort(np.zeros((0, 2)), ["min", "min"]) == []


def test_hypervolume_2d_hand_checked():
    # Boxes of (1,4), (2,2), (4,1) up to (5,5): 4 + 9 + 4 - (3 + 3 + 1) + 1 = 11 by inclusion-exclusion.
    # (3,3) is dominated, the duplicate adds nothing, (6,0) lies outside, (5,0.5) touches the boundary.
    assert hypervolume(POINTS_2D, ["min", "min"], [5, 5]) == pytest.approx(11.0)
    assert hypervolume(POINTS_2D * np.array([1, -1]), ["min", "max"], [5, -5]) == pytest.approx(11.0)
    assert hypervolume(-POINTS_2D, ["max", "max"], [-5, -5]) == pytest.approx(11.0)
    assert hypervolume([[6.0, 6.0]], ["min", "min"], [5, 5]) == 0.0
    assert hypervolume(np.zeros((0, 2)), ["min", "min"], [1, 1]) == 0.0
    assert hypervolume([[0.5]], ["min"], [2.0]) == pytest.approx(1.5)


def test_hypervolume_3d_hand_checked():
    # Three unit-thick slabs (1,0,0), (0,1,0), (0,0,1) up to (2,2,2): 3*4 - 3*2 + 1 = 7.
    slabs = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    assert hypervolume(slabs, ["min"] * 3, [2, 2, 2]) == pytest.approx(7.0)
    # (0,0,0.5) and (0.5,0.5,0) up to (1,1,1): 0.5 + 0.25 - 0.125.
    pair = np.array([[0, 0, 0.5], [0.5, 0.5, 0], [0.5, 0.5, 0], [1.5, 0, 0]])
    assert hypervolume(pair, ["min"] * 3, [1, 1, 1]) == pytest.approx(0.625)
    mixed = pair * np.array([1, -1, 1])
    assert hypervolume(mixed, ["min", "max", "min"], [1, -1, 1]) == pytest.approx(0.625)


def test_hypervolume_reference_and_contributions_hand_checked():
    # (exact, size): maximise exact, minimise size
    points = [[60.0, 10.0], [55.0, 4.0], [50.0, 2.0], [52.0, 8.0]]
    directions = ["max", "min"]
    # worst exact (50) for 'max', 1.1 x the largest size for 'min'; a floor replaces the worst value
    assert hypervolume_reference(points, directions) == pytest.approx([50.0, 11.0])
    assert hypervolume_reference(points, directions, [55.4, None]) == pytest.approx([55.4, 11.0])
    assert hypervolume_reference(np.zeros((0, 2)), directions) == [0.0, 0.0]
    # Against (50, 11) the staircase is 60@10 and 55@4 ((50,2) sits on the reference, (52,8) is
    # dominated): (60-50)*(11-10) + (55-50)*(10-4) = 40. Without (60,10): (55-50)*(11-4) = 35, so 5.
    # Without (55,4): (60-50)*(11-10) + (52-50)*(10-8) = 14, so 26.
    contributions = hypervolume_contributions(points, directions, [50.0, 11.0])
    assert hypervolume(points, directions, [50.0, 11.0]) == pytest.approx(40.0)
    assert contributions == pytest.approx([5.0, 26.0, 0.0, 0.0])
    assert hypervolume_contributions([[1.0, 1.0], [1.0, 1.0]], ["min", "min"], [2, 2]) == pytest.approx([0, 0])
    # nadir + 10% of the spread, per objective, in each objective's direction; no spread, no margin
    assert nadir_reference(points, directions) == pytest.approx([49.0, 10.8])
    assert nadir_reference([[3.0, 1.0], [3.0, 2.0]], ["max", "max"], margin=0.5) == pytest.approx([3.0, 0.5])
    assert nadir_reference(np.zeros((0, 2)), directions) == [0.0, 0.0]


@pytest.mark.parametrize("n_objectives", [2, 3, 4])
def test_hypervolume_matches_cell_counting(n_objectives):
    # Integer points on a small grid: the exact volume is the number of unit cells whose lower corner
    # is weakly dominated by some point.
    rng = np.random.default_rng(n_objectives)
    points = rng.integers(0, 5, size=(7, n_objectives)).astype(float)
    reference = np.full(n_objectives, 5.0)
    cells = np.array(list(itertools.product(range(5), repeat=n_objectives)), dtype=float)
    covered = (points[None, :, :] <= cells[:, None, :]).all(axis=-1).any(axis=1)
    assert hypervolume(points, ["min"] * n_objectives, reference) == pytest.approx(covered.sum())


def test_pareto_mask_nd_matches_sort():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 4, size=(60, 3)).astype(float)
    directions = ["min", "max", "min"]
    mask = pareto_mask(values, directions)
    assert sorted(np.flatnonzero(mask).tolist()) == sorted(non_dominated_sort(values, directions)[0].tolist())
    two = values[:, :2]
    assert sorted(np.flatnonzero(pareto_mask(two, ["min", "max"])).tolist()) == sorted(
        non_dominated_sort(two, ["min", "max"])[0].tolist()
    )


def test_crowding_distance():
    front = np.array([[0.0, 4.0], [1.0, 2.0], [3.0, 1.0], [4.0, 0.0]])
    distance = crowding_distance(front, ["min", "min"])
    assert np.isinf(distance[[0, 3]]).all()
    assert distance[1] == pytest.approx((3 - 0) / 4 + (4 - 1) / 4)
    assert distance[2] == pytest.approx((4 - 1) / 4 + (2 - 0) / 4)
    assert np.isinf(crowding_distance(front[:2], ["min", "min"])).all()


def test_pareto_input_errors():
    with pytest.raises(ValueError, match="direction"):
        pareto_mask([[1, 2]], ["min", "up"])
    with pytest.raises(ValueError, match="shape"):
        hypervolume([[1, 2, 3]], ["min", "min"], [4, 4])
    with pytest.raises(ValueError, match="NaN"):
        non_dominated_sort([[1, float("nan")]], ["min", "min"])


# --------------------------------------------------------------------------------------------------
# Search spaces
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("space_name", ["space_reference.yaml", "space_rich.yaml", "space_smoke.yaml"])
def test_shipped_spaces_resolve_to_valid_configs(space_name):
    space = load_space(CONFIGS / space_name, EXAMPLE_TEACHER_CONTEXT)
    rng = np.random.default_rng(0)
    samples = [space.sample_uniform(rng) for _ in range(200)]
    samples += [{p.name: p.from_unit(u) for p in space.params} for u in (0.0, 1.0)]
    for sampled in samples:
        assert space.contains(sampled)
        overrides = space.resolve(sampled)
        assert not any(key.startswith("_") for key in overrides)
        config = apply_overrides(RunConfig(), overrides)
        student = config.student
        hidden = student.hidden_size or EXAMPLE_TEACHER_CONTEXT["teacher.hidden_size"]
        heads = student.num_attention_heads or EXAMPLE_TEACHER_CONTEXT["teacher.num_attention_heads"]
        assert 1 <= heads <= EXAMPLE_TEACHER_CONTEXT["teacher.num_attention_heads"]
        if student.init != "prune":
            assert hidden % heads == 0, overrides
        if student.init in ("teacher", "prune"):
            assert hidden == EXAMPLE_TEACHER_CONTEXT["teacher.hidden_size"], overrides
        if student.init == "teacher":
            assert heads == EXAMPLE_TEACHER_CONTEXT["teacher.num_attention_heads"], overrides


def test_reference_space_scales_with_the_teacher():
    big = load_space(CONFIGS / "space_reference.yaml", {**EXAMPLE_TEACHER_CONTEXT, "teacher.num_hidden_layers": 12})
    small = load_space(CONFIGS / "space_reference.yaml", EXAMPLE_TEACHER_CONTEXT)
    assert big.param("student.num_hidden_layers").high == 20
    assert small.param("student.num_hidden_layers").high == 10
    names = set(small.names)
    assert not {"distill.adam_beta1", "distill.adam_beta2", "distill.eval_batch_size"} & names
    assert small.fixed["student.init"] == "prune"


def test_rich_space_derives_widths():
    space = load_space(CONFIGS / "space_rich.yaml", EXAMPLE_TEACHER_CONTEXT)
    sampled = {p.name: p.from_unit(0.5) for p in space.params}
    sampled.update({"student.init": "random", "_heads": 6, "_head_dim": 16, "_ffn_ratio": 2.5})
    resolved = space.resolve(sampled)
    assert (resolved["student.hidden_size"], resolved["student.num_attention_heads"]) == (96, 6)
    assert resolved["student.intermediate_size"] == 240
    sampled["student.init"] = "prune"
    resolved = space.resolve(sampled)
    assert (resolved["student.hidden_size"], resolved["student.num_attention_heads"]) == (384, 6)
    assert resolved["student.intermediate_size"] == 1536


def test_expressions_round_half_up_and_stay_safe(tmp_path):
    space = _space(tmp_path, """
parameters:
  _a: {type: int, low: 1, high: 3}
derived:
  x.rounded: "round({_a} * 2.5)"
  x.picked: "max(1, {_a} - 2) if {_a} >= 2 else -{_a}"
  x.chained: "{x.rounded} // 2 + {x.picked} % 2"
""")
    assert space.resolve({"_a": 1}) == {"x.rounded": 3, "x.picked": -1, "x.chained": 2}
    for text in ["__import__('os')", "{_a}.real", "open('f')", "{_a} ** 99", "[1, 2]", "lambda: 1"]:
        with pytest.raises(SearchSpaceError, match="x.bad"):
            _space(tmp_path, f'parameters: {{_a: {{type: int, low: 1, high: 3}}}}\nderived: {{x.bad: "{text}"}}\n')


def _space(tmp_path: Path, text: str, context=None):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return load_space(path, context)


BAD_SPACES = [
    ("parameters: {a.b: {type: float, low: 0, high: 1}}\nsearch: {}\n", "unknown top-level key"),
    ("parameters: {a.b: {type: float, low: 0, high: 1, prior: flat}}\n", r"parameters\.a\.b: unknown field"),
    ("parameters: {a.b: {type: float, low: 2, high: 1}}\n", r"parameters\.a\.b: low \(2.0\) > high \(1.0\)"),
    ("parameters: {a.b: {type: float, low: 0, high: 1, log: true}}\n", r"parameters\.a\.b: a log-scaled"),
    ("parameters: {a.b: {type: categorical, choices: []}}\n", r"parameters\.a\.b: a categorical parameter needs"),
    ("parameters: {a.b: {type: int, low: 0, high: 1.5}}\n", r"parameters\.a\.b: 'high' of an int"),
    ("parameters: {a.b: {type: float, high: 1}}\n", r"parameters\.a\.b: a float parameter needs 'low'"),
    ("parameters: {a.b: {type: bool}}\n", r"parameters\.a\.b: type must be"),
    ("parameters: {a.b: {type: int, low: 1, high: '{teacher.depth}'}}\n", r"parameters\.a\.b\.high: .*teacher\.depth"),
    ("parameters: {a.b: {type: int, low: 1, high: 4}, c.d: {type: int, low: 1, high: '{a.b}'}}\n",
     r"parameters\.c\.d\.high: .*derived key instead"),
    ("parameters: {a.b: {type: float, low: 0, high: 1}}\nderived: {c.d: '{a.x} * 2'}\n",
     r"derived\.c\.d: unknown reference.*\{a\.x\}"),
    ("parameters: {a.b: {type: float, low: 0, high: 1}}\nderived: {c.d: '{c.e}', c.e: '{c.d}'}\n",
     r"derived\.c\.[de]: .*cycle"),
    ("parameters: {a.b: {type: float, low: 0, high: 1}}\nfixed: {a.b: 3}\n", r"fixed\.a\.b: already defined"),
    ("parameters: {a.b: {type: categorical, choices: [x, y]}}\nderived: {c.d: '{a.b} * 1.5'}\n",
     r"derived\.c\.d: .*failed"),
    ("parameters: {}\n", "at least one parameter"),
    ("parameters: {a.b: {type: float, low: 0, high: 1, step: 0.3}}\n", r"parameters\.a\.b: .*multiple of step"),
    ("parameters: [1, 2]\n", "parameters: expected a mapping"),
    ("parameters: {a.b: {type: float, low: 0, high: 1}\n", "not valid YAML"),
]


@pytest.mark.parametrize("text, message", BAD_SPACES)
def test_bad_space_files_name_the_file_and_key(tmp_path, text, message):
    with pytest.raises(SearchSpaceError, match=message) as error:
        _space(tmp_path, text, {"teacher.num_hidden_layers": 6})
    assert "space.yaml" in str(error.value)


def test_missing_space_file_and_missing_context(tmp_path):
    with pytest.raises(SearchSpaceError, match="not found"):
        load_space(tmp_path / "nope.yaml")
    with pytest.raises(SearchSpaceError, match=r"space_reference\.yaml: parameters\.student\.num_hidden_layers\.high"):
        load_space(CONFIGS / "space_reference.yaml")  # bounds need the teacher's shape


def test_param_unit_encoding_round_trips():
    params = [
        Param("f", "float", 1e-5, 1e-1, log=True),
        Param("s", "float", 0.0, 1.0, step=0.25),
        Param("i", "int", 4, 32),
        Param("l", "int", 8, 64, log=True),
        Param("t", "int", 8, 32, step=8),
        Param("c", "categorical", choices=("a", 1, True, None)),
    ]
    rng = np.random.default_rng(0)
    for p in params:
        for u in np.concatenate([[0.0, 1.0], rng.random(200)]):
            value = p.from_unit(u)
            assert p.contains(value), (p, value)
            assert p.from_unit(p.to_unit(value)) == value or math.isclose(p.from_unit(p.to_unit(value)), value)
    assert {params[5].from_unit(u) for u in np.linspace(0, 1, 41)} == {"a", 1, True, None}
    assert params[5].contains(1) and not params[5].contains(2)
