"""sweep/plan.py: the baseline, trial configs and seeds (and the constraints and no-answer score that judge them)."""

from __future__ import annotations

import pytest
from sweep_world import TINY_SPACE, world_fixture  # noqa: F401  (fixture `world`)

from tune_distill.search import Constraint, parse_space
from tune_distill.sweep.config import SweepConfigError, resolve_constraints
from tune_distill.sweep.driver import no_answer_score
from tune_distill.sweep.plan import baseline_overrides, trial_run_config


def test_constraints_baseline_and_seed(world):
    assert resolve_constraints(["exact >= no_answer", "latency_ms_b1 <= 20"], 55.4) == (
        Constraint("exact", ">=", 55.4), Constraint("latency_ms_b1", "<=", 20.0))

    class Question:
        def __init__(self, impossible):
            self.is_impossible = impossible

    assert no_answer_score([Question(True), Question(False), Question(True), Question(False)]) == 50.0
    space = parse_space(TINY_SPACE, {"teacher.num_hidden_layers": 6})
    baseline = baseline_overrides(space, {"teacher.num_hidden_layers": 6})
    assert baseline["student.num_hidden_layers"] == 3 and baseline["student.init"] == "teacher"
    assert baseline["distill.max_steps"] == 2  # trains like every other trial
    assert "distill.learning_rate" not in baseline  # the default recipe unless baseline_settings say otherwise
    tuned = baseline_overrides(space, {"teacher.num_hidden_layers": 6}, {"distill.learning_rate": 2e-4})
    assert tuned["distill.learning_rate"] == 2e-4 and tuned["student.num_hidden_layers"] == 3
    for settings, message in [({"student.num_hidden_layers": 2}, "the baseline's shape is fixed"),
                              ({"distill.max_steps": 5}, "fixed by the space"),
                              ({"distill.learning_rat": 1e-4}, "distill.learning_rat: unknown field")]:
        with pytest.raises(SweepConfigError, match=message):
            baseline_overrides(space, {"teacher.num_hidden_layers": 6}, settings)
    config = trial_run_config({"distill.seed": 7}, {"student.num_hidden_layers": 1}, number=5, cpus=2)
    assert config.distill.seed == 12 and config.distill.num_threads == 2 and config.student.num_hidden_layers == 1
