"""sweep/callbacks.py: the progress line of a finished trial."""

from __future__ import annotations

from tune_distill.search import Constraint, Objective


def test_progress_line_shows_the_objectives_exact_and_size(caplog):
    from types import SimpleNamespace

    from tune_distill.sweep.callbacks import ProgressLines

    objectives = (Objective("HasAns_f1_always_answer", "max"), Objective("parameters", "min"))
    lines = ProgressLines(objectives, (Constraint("exact", ">=", 50.0),), num_samples=4)
    done = SimpleNamespace(trial_id="aa", status="TERMINATED", config={"number": 1, "params": {"lr": 0.1}},
                           last_result={"final": True, "HasAns_f1_always_answer": 31.25, "exact": 52.0,
                                        "parameters": 2_500_000})
    running = SimpleNamespace(trial_id="bb", status="RUNNING", config={"number": 2}, last_result={})
    with caplog.at_level("INFO", logger="tune_distill.sweep"):
        lines.on_trial_complete(0, [done, running], done)
    message = caplog.records[-1].getMessage()
    assert "trial 0001 aa complete HasAns_f1_always_answer 31.25 parameters 2.50M exact 52.00 feasible" in message
    assert "best HasAns_f1_always_answer 31.25 (trial 0001) [1/4 finished]" in message
