"""Tests of tune_distill.pareto: non-dominated sorting, the Pareto mask, hypervolume (checked by hand,
by counting cells, and against Optuna's and moocore's implementations), reference points,
contributions, crowding distance and the feasibility rule."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tune_distill.pareto import (
    crowding_distance,
    hypervolume,
    hypervolume_contributions,
    hypervolume_reference,
    is_feasible,
    nadir_reference,
    non_dominated_sort,
    pareto_mask,
)
from tune_distill.private_api import optuna_compute_hypervolume
from tune_distill.search.objectives import Constraint

POINTS_2D = np.array([[1, 4], [2, 2], [4, 1], [3, 3], [2, 2], [6, 0], [5, 0.5]], dtype=float)

# --------------------------------------------------------------------------------------------------
# Non-dominated sorting and the Pareto mask
# --------------------------------------------------------------------------------------------------


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


def _dominates(a, b, directions) -> bool:
    """The definition: a is no worse than b in every objective and strictly better in one."""
    no_worse = all(x >= y if d == "max" else x <= y for x, y, d in zip(a, b, directions))
    better = any(x > y if d == "max" else x < y for x, y, d in zip(a, b, directions))
    return no_worse and better


def _brute_force_fronts(values, directions) -> list[list[int]]:
    """Peel off the rows no remaining row dominates, again and again."""
    remaining, fronts = list(range(len(values))), []
    while remaining:
        front = [i for i in remaining if not any(_dominates(values[j], values[i], directions) for j in remaining)]
        fronts.append(front)
        remaining = [i for i in remaining if i not in front]
    return fronts


@pytest.mark.parametrize("directions", [["min", "max"], ["max", "max"], ["min", "max", "min"], ["max"] * 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sort_and_mask_match_the_definition(directions, seed):
    # Small integers: many ties and duplicates, the cases a fast implementation gets wrong.
    values = np.random.default_rng(seed).integers(0, 5, size=(40, len(directions))).astype(float)
    expected = _brute_force_fronts(values.tolist(), directions)
    assert [sorted(front.tolist()) for front in non_dominated_sort(values, directions)] == expected
    assert sorted(np.flatnonzero(pareto_mask(values, directions)).tolist()) == expected[0]


# --------------------------------------------------------------------------------------------------
# Hypervolume
# --------------------------------------------------------------------------------------------------


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


def _random_front(seed: int, directions: list[str]):
    """Random points (some dominated, some duplicated, some beyond the reference) and a reference."""
    rng = np.random.default_rng(seed)
    n = 40 if len(directions) == 2 else 25
    values = rng.normal(size=(n, len(directions))) * rng.uniform(0.5, 20, size=len(directions))
    values[: n // 4] = np.round(values[: n // 4])  # ties on a grid
    values[-3:] = values[:3]  # duplicates
    # A reference that a few points fail to beat in some objective.
    reference = [np.quantile(column, 0.9 if d == "min" else 0.1) for column, d in zip(values.T, directions)]
    return values, np.array(reference)


MIXED_DIRECTIONS = [["min", "min"], ["max", "min"], ["max", "max"], ["min", "max", "min"], ["max", "max", "min"]]


@pytest.mark.parametrize("directions", MIXED_DIRECTIONS)
@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_matches_optuna(directions, seed):
    values, reference = _random_front(seed, directions)
    signs = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    losses, loss_reference = values * signs, reference * signs  # Optuna minimises
    inside = (losses <= loss_reference).all(axis=1)  # Optuna refuses points beyond the reference
    assert 0 < inside.sum() < len(values)
    expected = optuna_compute_hypervolume(losses[inside], loss_reference)
    assert hypervolume(values, directions, reference) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("directions", MIXED_DIRECTIONS)
@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_matches_moocore(directions, seed):
    moocore = pytest.importorskip("moocore")
    values, reference = _random_front(seed, directions)
    expected = moocore.hypervolume(values, ref=reference, maximise=[d == "max" for d in directions])
    assert hypervolume(values, directions, reference) == pytest.approx(expected, rel=1e-9)


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


# --------------------------------------------------------------------------------------------------
# Crowding distance, input checks, feasibility
# --------------------------------------------------------------------------------------------------


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


def test_feasibility_of_search_constraints():
    exact = Constraint("exact", ">=", 55.4)
    assert is_feasible({"exact": 56.0}, [exact]) and not is_feasible({"exact": 50.0}, [exact])
    assert not is_feasible({}, [exact])
