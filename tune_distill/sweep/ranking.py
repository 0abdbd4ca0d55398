"""Rung-ranking rules: how Pareto successive halving orders the trials recorded at one rung.

What it does: a `RankingRule` orders a rung's trials by the fronts of the non-dominated sorting first,
then by the rule's `score` within the front of the trial being judged (larger first; a tie goes to
that trial, the newcomer). Three rules: `HypervolumeContribution` (each member's exclusive hypervolume
against the rung's nadir pushed out by a margin of each objective's spread), `SweepHypervolumeContribution`
(the same against the reference point the sweep's report measures hypervolume with) and
`CrowdingDistance` (NSGA-II). `RANKING_RULES` is the one place where a config name
(`scheduler.within_front`) maps to a rule; `ranking_rule(name)` builds it. The idea (a rule is a small
strategy object, not a string switch inside the scheduler) is Syne Tune's multi-objective priorities
(`MOPriority`). `BeyondError` is the noise-aware dominance relation (issue 15): B dominates A only when
B is better by more than z standard errors of the difference; `RankingRule.rank` sorts into fronts by
such a relation when given one, and leaves "yardstick" rows (the baseline) out of the competition.

What it must not know: Ray, schedulers, trials or files: it sees only rows of objective values and
their directions. The Pareto maths is `tune_distill.pareto`'s.

Example (CPU, instant):
    python -c "from tune_distill.sweep.ranking import ranking_rule as r; \
print(r('hypervolume').rank([[50.5, 10], [60, 1000], [55, 400]], ['max', 'min']))"
    python -c "from tune_distill.sweep.ranking import BeyondError; \
print(BeyondError(2).matrix([[32.07, 17], [32.08, 17]], [[1.4, float('nan')]] * 2, ['max', 'min']))"
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

from tune_distill.pareto import (
    crowding_distance,
    dominance_matrix,
    fronts_of,
    hypervolume_contributions,
    hypervolume_reference,
    minimisation_form,
    nadir_reference,
    non_dominated_sort,
)

# The hypervolume rule measures a front against the rung points' nadir pushed out by this share of each
# objective's spread (pareto.nadir_reference): an extreme point owns a box too.
RUNG_REFERENCE_MARGIN = 0.1


class RankingRule(ABC):
    """Orders a rung's trials: earlier fronts of the non-dominated sorting first, then `score` (larger first)."""

    name: str = ""

    @abstractmethod
    def score(self, front: np.ndarray, directions: Sequence[str], rung: np.ndarray) -> np.ndarray:
        """One number per row of `front` (a front with two or more members; `rung`: every point of the rung)."""

    def rank(self, values: Any, directions: Sequence[str], dominates: np.ndarray | None = None,
             yardsticks: Sequence[bool] | None = None) -> int:
        """Rank (0 = best) of the first row of `values` (the newcomer) among all rows; ties go to the newcomer.

        `dominates` (optional, n x n booleans, e.g. `BeyondError.matrix`) replaces plain Pareto dominance in
        the sorting into fronts; rows flagged in `yardsticks` (e.g. the baseline) dominate others in that
        sorting but neither compete within a front (they are left out of its scores) nor count ahead of the
        newcomer (they take no slot).
        """
        points = np.asarray(values, dtype=float)
        counted = np.ones(len(points), dtype=bool) if yardsticks is None else ~np.asarray(yardsticks, dtype=bool)
        counted[0] = True
        position = 0
        for front in non_dominated_sort(points, directions) if dominates is None else fronts_of(dominates):
            members = [index for index in front if counted[index]]
            if 0 not in members:
                position += len(members)
                continue
            if dominates is None:
                return position + self._ahead(points, members, directions)
            # a front of the given relation: its members in the plain order (plain fronts, then the score)
            for plain in non_dominated_sort(points[members], directions):
                subset = [members[index] for index in plain]
                if 0 in subset:
                    return position + self._ahead(points, subset, directions)
                position += len(subset)
        raise AssertionError("a point is missing from the fronts")  # pragma: no cover

    def _ahead(self, points: np.ndarray, members: list[int], directions: Sequence[str]) -> int:
        """How many of `members` (one front, row 0 among them) score strictly higher than row 0."""
        if len(members) == 1:
            return 0
        order = self.score(points[members], directions, points)
        mine = order[members.index(0)]
        return sum(1 for index, value in zip(members, order) if index != 0 and value > mine)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class HypervolumeContribution(RankingRule):
    """Exclusive hypervolume contribution of each member of the front, against the rung's pushed-out nadir.

    A point's box spans the gaps to its neighbours on the front, so a student that is smaller than its
    neighbour by little and less accurate by much ranks low, and one that opens a wide gap ranks high;
    an extreme of the front owns a box as deep as `margin` of the spread, not an automatic place.
    """

    name = "hypervolume"

    def __init__(self, margin: float = RUNG_REFERENCE_MARGIN):
        self.margin = float(margin)

    def score(self, front: np.ndarray, directions: Sequence[str], rung: np.ndarray) -> np.ndarray:
        return hypervolume_contributions(front, directions, nadir_reference(rung, directions, self.margin))

    def __repr__(self) -> str:
        return f"HypervolumeContribution(margin={self.margin})"


class SweepHypervolumeContribution(RankingRule):
    """Exclusive hypervolume contribution against the reference the sweep's report measures with.

    The reference is `pareto.hypervolume_reference` of the rung's points: the least accuracy seen and
    1.1 x the largest size. So a rung weighs a member as the sweep's final hypervolume will: the most
    accurate of the largest students owns a box a tenth of the largest size deep (not a tenth of the
    rung's spread of sizes, which is thin when every student is about the same size), and the least
    accurate owns none.
    """

    name = "sweep_hypervolume"

    def score(self, front: np.ndarray, directions: Sequence[str], rung: np.ndarray) -> np.ndarray:
        return hypervolume_contributions(front, directions, hypervolume_reference(rung, directions))


class CrowdingDistance(RankingRule):
    """NSGA-II crowding distance within the front: every extreme of the front ranks first."""

    name = "crowding"

    def score(self, front: np.ndarray, directions: Sequence[str], rung: np.ndarray) -> np.ndarray:
        return crowding_distance(front, directions)


class BeyondError:
    """Pareto dominance that needs more than measurement noise: the noise-aware rung rule's relation.

    B dominates A beyond error when B is no worse than A on every objective and better on at least one
    measured objective (one with standard errors, e.g. span F1 with its `_se`) by more than `z` standard
    errors of the difference, sqrt(se_A^2 + se_B^2). Objectives without standard errors (parameters)
    are exact. A pair where either side lacks the standard error of a measured objective is compared by
    plain dominance (the rule of old), and so is a set where no objective has standard errors.
    """

    name = "beyond_error"

    def __init__(self, z: float = 2.0):
        if not math.isfinite(z) or z < 0:
            raise ValueError(f"z must be a finite number >= 0, got {z}")
        self.z = float(z)

    def matrix(self, values: Any, errors: Any, directions: Sequence[str]) -> tuple[np.ndarray, int]:
        """(dominates[i, j]: row i dominates row j beyond error; pairs compared by plain dominance instead).

        `errors`: an array shaped like `values`, a standard error per value, NaN where none was reported.
        A column with no finite error anywhere is an exact objective.
        """
        low = minimisation_form(values, directions)
        errors = np.asarray(errors, dtype=float).reshape(low.shape)
        plain = dominance_matrix(low)
        no_worse = (low[:, None, :] <= low[None, :, :]).all(axis=-1)
        measured = np.isfinite(errors).any(axis=0)
        if not measured.any():
            return plain, len(low) * (len(low) - 1)
        gaps = low[None, :, measured] - low[:, None, measured]  # gaps[i, j, k]: how much i beats j on k
        known = np.isfinite(errors[:, measured])
        both = known[:, None, :] & known[None, :, :]
        squares = np.nan_to_num(errors[:, measured]) ** 2
        noise = np.sqrt(squares[:, None, :] + squares[None, :, :])  # the standard error of each difference
        beyond = no_worse & (gaps > self.z * noise).any(axis=-1)
        complete = both.all(axis=-1)
        np.fill_diagonal(complete, True)
        return np.where(complete, beyond, plain), int((~complete).sum())

    def __repr__(self) -> str:
        return f"BeyondError(z={self.z:g})"


# scheduler.within_front -> the rule it names (the one place where the names are read; new names go last)
RANKING_RULES: dict[str, type[RankingRule]] = {"hypervolume": HypervolumeContribution, "crowding": CrowdingDistance,
                                               "sweep_hypervolume": SweepHypervolumeContribution}


def ranking_rule(name: str) -> RankingRule:
    """The rule a config names; KeyError for an unknown name (the callers word the error)."""
    return RANKING_RULES[name]()
