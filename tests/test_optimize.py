"""Tests of tune_distill.search.optimize: running a searcher on a plain Python objective."""

from __future__ import annotations

import pytest

from tune_distill.search.errors import SearcherError
from tune_distill.search.objectives import Constraint, Objective
from tune_distill.search.optimize import optimize
from tune_distill.search.searchers import make_searcher
from tune_distill.search.space import Param, SearchSpace

SPACE = SearchSpace(params=(Param("k", "int", 0, 4),), derived={"double_k": "{k} * 2"})
OBJECTIVES = (Objective("loss", "min"), Objective("score", "max"))
CONSTRAINTS = (Constraint("size", "<=", 3.0),)


def test_optimize_records_objective_errors_as_failures():
    def objective(config):
        if config["k"] == 0:
            return {"loss": 1.0}  # metrics missing
        return {"loss": 1.0, "score": float("inf"), "size": 0.0}  # non-finite

    records = optimize(objective, SPACE, OBJECTIVES, CONSTRAINTS, searcher="random", n_trials=6)
    assert [r.status for r in records] == ["failed"] * 6
    assert all(r.error for r in records)


def test_optimize_records_resolved_configs_feasibility_and_extra_metrics():
    def objective(config):
        return {"loss": config["k"], "score": -config["k"], "size": config["double_k"], "note": "x", "seconds": 0.5}

    records = optimize(objective, SPACE, OBJECTIVES, CONSTRAINTS, searcher="random", n_trials=5, seed=2)
    for record in records:
        assert record.config == {"k": record.params["k"], "double_k": 2 * record.params["k"]}
        assert record.values["seconds"] == 0.5 and "note" not in record.values  # other numbers kept, text not
        assert record.feasible == (record.config["double_k"] <= 3)


def test_optimize_stops_when_the_searcher_runs_dry():
    trials = [{"k": 1}, {"k": 2}, {"k": 3}]
    records = optimize(lambda c: {"loss": 0.0, "score": 0.0, "size": 0.0}, SPACE, OBJECTIVES, CONSTRAINTS,
                       searcher="replay", n_trials=10, batch_size=2, trials=trials)
    assert [r.params for r in records] == trials


def test_optimize_argument_errors():
    with pytest.raises(SearcherError, match="batch_size >= 1"):
        optimize(dict, SPACE, OBJECTIVES, batch_size=0)
    searcher = make_searcher("random", SPACE, OBJECTIVES)
    with pytest.raises(SearcherError, match="only when the searcher is given by name"):
        optimize(dict, SPACE, OBJECTIVES, searcher=searcher, n_startup_trials=3)
