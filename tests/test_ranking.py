"""sweep/ranking.py: dominance beyond measured error, fronts of a relation, yardsticks, the sweep-reference order.

Rows are (span F1, parameters) with directions max, min; standard errors are given per value (NaN: none
reported, as for a parameter count). The numbers of the first tests are trial 7 and the baseline of
results/archive/early-stopping-learners at step 40.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tune_distill.sweep.ranking import (
    BeyondError,
    HypervolumeContribution,
    SweepHypervolumeContribution,
    fronts_of,
)

NAN = math.nan
DIRECTIONS = ["max", "min"]


def test_a_tie_within_error_is_not_dominated_but_a_gap_beyond_it_is():
    # baseline 32.072 +/- 1.41 and trial 7 32.068 +/- 1.44 at the same size: plain dominance says the
    # baseline dominates trial 7; 0.004 points against a difference's standard error of 2.0 is a tie
    values = [[32.068, 17242754], [32.072, 17242754], [15.31, 17242754]]
    errors = [[1.44, NAN], [1.41, NAN], [1.08, NAN]]
    dominates, plain_pairs = BeyondError(z=2).matrix(values, errors, DIRECTIONS)
    assert plain_pairs == 0
    assert not dominates[1, 0] and not dominates[0, 1]
    # 17 points below at the same size: beyond 2 x sqrt(1.41^2 + 1.08^2) = 3.6, so dominated by both
    assert dominates[0, 2] and dominates[1, 2] and not dominates[2].any()
    # z = 0: any difference on the measured objective counts, as plain dominance would say
    assert BeyondError(z=0).matrix(values, errors, DIRECTIONS)[0][1, 0]


def test_beyond_error_needs_no_worse_on_exact_objectives_and_a_gap_on_a_measured_one():
    errors = [[1.0, NAN], [1.0, NAN]]
    # far more accurate but one parameter larger: not no worse everywhere, so not dominated
    assert not BeyondError(2).matrix([[40, 101], [20, 100]], errors, DIRECTIONS)[0][0, 1]
    # smaller (exact) and as accurate within error: a smaller size alone does not dominate beyond error
    assert not BeyondError(2).matrix([[20.5, 90], [20, 100]], errors, DIRECTIONS)[0][0, 1]
    # a gap just under z standard errors of the difference (2 x sqrt(2)) is a tie, just over it is not
    gap = 2 * math.sqrt(2)
    assert not BeyondError(2).matrix([[20 + gap - 1e-6, 100], [20, 100]], errors, DIRECTIONS)[0][0, 1]
    assert BeyondError(2).matrix([[20 + gap + 1e-6, 100], [20, 100]], errors, DIRECTIONS)[0][0, 1]


def test_pairs_without_standard_errors_fall_back_to_plain_dominance():
    values = [[32.068, 17], [32.072, 17], [31.0, 17]]
    # row 1 reported no standard error: its pairs are compared plainly (and counted, both ways)
    dominates, plain_pairs = BeyondError(2).matrix(values, [[1.4, NAN], [NAN, NAN], [1.4, NAN]], DIRECTIONS)
    assert plain_pairs == 4
    assert dominates[1, 0] and dominates[1, 2]  # plain: 32.072 > 32.068 at the same size
    assert not dominates[0, 2]  # both measured: 1.07 points is a tie
    # no standard error anywhere: the plain relation for every pair
    dominates, plain_pairs = BeyondError(2).matrix(values, np.full((3, 2), NAN), DIRECTIONS)
    assert plain_pairs == 6 and dominates[1, 0] and dominates[0, 2]
    with pytest.raises(ValueError, match="z must be"):
        BeyondError(-1)


def test_fronts_are_peeled_off_any_acyclic_relation():
    dominates = np.array([[False, True, True], [False, False, True], [False, False, False]])
    assert [list(front) for front in fronts_of(dominates)] == [[0], [1], [2]]
    assert [list(front) for front in fronts_of(np.zeros((3, 3), dtype=bool))] == [[0, 1, 2]]
    with pytest.raises(ValueError, match="cycle"):
        fronts_of(np.array([[False, True], [True, False]]))


def test_a_front_of_ties_keeps_the_plain_order_inside_it():
    rule = HypervolumeContribution()
    # newcomer (row 0) is tied within error with row 1, which is plainly better at the same size; row 2 is
    # far below both. By the tie relation rows 0 and 1 share the first front, and inside it the plain
    # order puts row 1 first: the newcomer ranks second, ahead of row 2.
    values = [[30.0, 100], [31.0, 100], [10.0, 100]]
    dominates, _ = BeyondError(2).matrix(values, [[1.0, NAN]] * 3, DIRECTIONS)
    assert rule.rank(values, DIRECTIONS, dominates) == 1
    assert rule.rank([values[2], values[0], values[1]], DIRECTIONS) == 2  # the far one is last either way


def test_a_yardstick_dominates_but_is_neither_ranked_nor_scored():
    rule = SweepHypervolumeContribution()
    # the baseline (row 1) is plainly ahead of the newcomer at the same size: plainly, the newcomer is
    # on the second front behind it (rank 2: the baseline and the small trial ahead)
    values = [[32.068, 17242754], [32.072, 17242754], [27.2, 16504034]]
    assert rule.rank(values, DIRECTIONS) == 2
    # as a yardstick the baseline still dominates (plain fronts) but takes no place: the newcomer is second
    assert rule.rank(values, DIRECTIONS, yardsticks=[False, True, False]) == 1
    # with the tie relation the newcomer shares the first front and, the baseline left out of the
    # scores, owns the deepest box: first
    dominates, _ = BeyondError(2).matrix(values, [[1.44, NAN], [1.41, NAN], [1.32, NAN]], DIRECTIONS)
    assert rule.rank(values, DIRECTIONS, dominates, [False, True, False]) == 0


def test_the_sweep_reference_gives_the_most_accurate_largest_student_its_box():
    # students of about one size (16.5M-17.2M): against the rung's nadir + 10% of the size spread the
    # largest, most accurate one owns a thin box and ranks last of the front; against the report's
    # reference (1.1 x the largest size) it owns the deepest box, as it will in the final hypervolume
    newcomer, others = [32.07, 17242754], [[27.2, 16504034], [16.28, 16356290], [11.35, 15913058]]
    values = [newcomer, *others]
    assert HypervolumeContribution().rank(values, DIRECTIONS) == 3
    assert SweepHypervolumeContribution().rank(values, DIRECTIONS) == 0
