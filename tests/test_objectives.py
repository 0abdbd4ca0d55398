"""Tests of tune_distill.search.objectives: objectives, constraints and the default objectives."""

from __future__ import annotations

import pytest

from tune_distill.search.errors import SearcherError
from tune_distill.search.objectives import DEFAULT_OBJECTIVES, Constraint, Objective


def test_constraint_violation_follows_optunas_convention():
    exact = Constraint("exact", ">=", 55.4)
    assert exact.violation(60.0) < 0 < exact.violation(50.0) and exact.violation(55.4) == 0
    assert Constraint("params", "<=", 10.0).violation(12.0) == 2.0
    # satisfied: the package's one feasibility rule (a missing or non-finite value never satisfies)
    assert exact.satisfied(55.4) and not exact.satisfied(55.3)
    assert not exact.satisfied(float("nan")) and not exact.satisfied(None)


def test_objectives_and_constraints_reject_bad_fields():
    with pytest.raises(SearcherError, match="direction"):
        Objective("exact", "maximize")
    with pytest.raises(SearcherError, match="op"):
        Constraint("exact", ">", 55.4)
    with pytest.raises(SearcherError, match="non-empty"):
        Objective("", "max")
    with pytest.raises(SearcherError, match="finite"):
        Constraint("exact", ">=", float("inf"))


def test_default_objectives_are_most_exact_for_fewest_parameters():
    assert DEFAULT_OBJECTIVES == (Objective("exact", "max"), Objective("parameters", "min"))
