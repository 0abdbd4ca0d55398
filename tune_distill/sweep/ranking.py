"""Rung-ranking rules: how Pareto successive halving orders the trials recorded at one rung.

What it does: a `RankingRule` orders a rung's trials by the fronts of the non-dominated sorting first,
then by the rule's `score` within the front of the trial being judged (larger first; a tie goes to
that trial, the newcomer). Two rules: `HypervolumeContribution` (each member's exclusive hypervolume
against the rung's nadir pushed out by a margin of each objective's spread) and `CrowdingDistance`
(NSGA-II). `RANKING_RULES` is the one place where a config name (`scheduler.within_front`) maps to a
rule; `ranking_rule(name)` builds it. The idea (a rule is a small strategy object, not a string
switch inside the scheduler) is Syne Tune's multi-objective priorities (`MOPriority`).

What it must not know: Ray, schedulers, trials or files: it sees only rows of objective values and
their directions. The Pareto maths is `tune_distill.pareto`'s.

Example (CPU, instant):
    python -c "from tune_distill.sweep.ranking import ranking_rule as r; \
print(r('hypervolume').rank([[50.5, 10], [60, 1000], [55, 400]], ['max', 'min']))"
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

from tune_distill.pareto import crowding_distance, hypervolume_contributions, nadir_reference, non_dominated_sort

# The hypervolume rule measures a front against the rung points' nadir pushed out by this share of each
# objective's spread (pareto.nadir_reference): an extreme point owns a box too.
RUNG_REFERENCE_MARGIN = 0.1


class RankingRule(ABC):
    """Orders a rung's trials: earlier fronts of the non-dominated sorting first, then `score` (larger first)."""

    name: str = ""

    @abstractmethod
    def score(self, front: np.ndarray, directions: Sequence[str], rung: np.ndarray) -> np.ndarray:
        """One number per row of `front` (a front with two or more members; `rung`: every point of the rung)."""

    def rank(self, values: Any, directions: Sequence[str]) -> int:
        """Rank (0 = best) of the first row of `values` (the newcomer) among all rows; ties go to the newcomer."""
        points = np.asarray(values, dtype=float)
        position = 0
        for front in non_dominated_sort(points, directions):
            members = list(front)
            if 0 in members:
                order = np.array([np.inf]) if len(members) == 1 else self.score(points[members], directions, points)
                mine = order[members.index(0)]
                ahead = sum(1 for index, value in zip(members, order) if index != 0 and value > mine)
                return position + ahead
            position += len(members)
        raise AssertionError("a point is missing from the fronts")  # pragma: no cover

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


class CrowdingDistance(RankingRule):
    """NSGA-II crowding distance within the front: every extreme of the front ranks first."""

    name = "crowding"

    def score(self, front: np.ndarray, directions: Sequence[str], rung: np.ndarray) -> np.ndarray:
        return crowding_distance(front, directions)


# scheduler.within_front -> the rule it names (the one place where the names are read)
RANKING_RULES: dict[str, type[RankingRule]] = {"hypervolume": HypervolumeContribution, "crowding": CrowdingDistance}


def ranking_rule(name: str) -> RankingRule:
    """The rule a config names; KeyError for an unknown name (the callers word the error)."""
    return RANKING_RULES[name]()
