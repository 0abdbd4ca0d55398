"""What a student does deployed: the questions it answers at its threshold, and a flag when it answers (almost) none."""

from __future__ import annotations

import pandas as pd
import pytest

from tune_distill.data import load_examples
from tune_distill.deployment import deployed
from tune_distill.report import write_report
from tune_distill.scoring import evaluate_predictions

# the tiny file (conftest): 5 answerable questions, 2 unanswerable (q-airport, q-bird)
BEST = {"q-founded": "1721", "q-bridge": "the great bridge", "q-cathedral": "1899", "q-airport": "1802",
        "q-cat": "near the dog", "q-dog-year": "1999", "q-bird": "river"}
ODDS = {"q-founded": -2.0, "q-bridge": 0.5, "q-cathedral": 1.5, "q-airport": 3.0, "q-cat": -1.0,
        "q-dog-year": 2.0, "q-bird": 0.0}


def test_every_evaluation_reports_how_many_questions_get_an_answer_at_its_threshold(tiny_squad_file):
    examples = load_examples(str(tiny_squad_file))
    metrics = evaluate_predictions(examples, BEST, ODDS, na_threshold=1.0)  # answers where null odds <= 1.0
    assert metrics["answered"] == 4 and metrics["answer_rate"] == pytest.approx(400 / 7)  # founded, bridge, cat, bird
    assert metrics["HasAns_answered"] == 3 and metrics["HasAns_answer_rate"] == pytest.approx(60.0)
    assert metrics["NoAns_answered"] == 1 and metrics["NoAns_answer_rate"] == 50.0  # bird answered, airport not
    assert metrics["no_answer_exact"] == pytest.approx(200 / 7)  # answering "" everywhere: the 2 unanswerable right


def test_a_student_that_answers_nothing_is_flagged_in_words(tiny_squad_file):
    examples = load_examples(str(tiny_squad_file))
    metrics = evaluate_predictions(examples, BEST, ODDS, na_threshold=-10.0)  # every null odds above it: no answer
    figures = deployed(metrics, trial_id="s")
    assert figures["abstains"] and figures["source"] == "recorded" and figures["answer_rate"] == 0.0
    assert figures["exact"] == pytest.approx(figures["no_answer_exact"])
    assert figures["statement"] == (
        "trial s answers 0 of 5 answerable questions (0.0%) and 0 of 2 unanswerable at its threshold -10.00: "
        "deployed, it abstains everywhere; its exact 28.57 is the no-answer score (28.57); exact 28.57, F1 28.57, "
        "HasAns exact 0.00, NoAns exact 100.00")
    answering = deployed(evaluate_predictions(examples, BEST, ODDS, na_threshold=10.0), trial_id="a")
    assert not answering["abstains"] and answering["answer_rate"] == 100.0
    assert answering["statement"].startswith("trial a answers 5 of 5 answerable questions (100.0%) and 2 of 2")


def test_a_student_answering_under_five_percent_abstains_almost_everywhere():
    metrics = {"exact": 50.5, "f1": 50.6, "HasAns_exact": 1.0, "NoAns_exact": 100.0, "HasAns_total": 100,
               "NoAns_total": 100, "na_threshold": 2.0, "answered": 3, "HasAns_answered": 3, "NoAns_answered": 0}
    figures = deployed(metrics)
    assert figures["abstains"] and figures["answer_rate"] == 1.5
    assert "the student answers 3 of 100 answerable questions (3.0%) and 0 of 100 unanswerable at its threshold " \
           "2.00: deployed, it abstains almost everywhere (fewer than 5% of questions answered)" in figures["statement"]


def test_older_records_are_judged_as_far_as_their_figures_allow():
    # a record of the last CPU sweep (trial 3bb03c11): no answer counts, its exact the no-answer exact
    old = {"exact": 55.4421768707483, "f1": 55.4421768707483, "HasAns_exact": 0.0, "HasAns_f1": 0.0,
           "NoAns_exact": 100.0, "HasAns_total": 786, "NoAns_total": 978, "na_threshold": -1.97}
    figures = deployed(old, trial_id="3bb03c11")
    assert figures["source"] == "derived from metrics" and figures["abstains"] and figures["answer_rate"] is None
    assert figures["NoAns_answered"] == 0 and figures["HasAns_answered_at_most"] == 786
    assert figures["statement"].startswith(
        "trial 3bb03c11 answers an unrecorded number of the 786 answerable questions (none of them even partly right: "
        "HasAns F1 0.00) and 0 of 978 unanswerable at its threshold -1.97 (derived from metrics): deployed, it does "
        "no better than abstaining everywhere; its exact 55.44 is the no-answer score (55.44)")
    # per-question scores bound the answerable ones answered: scored > 0 was answered; F1 > 0 always answering
    # but 0 at the threshold was not; always-answer F1 0 leaves it open
    per_question = {"HasAns_f1": {"a": 0.5, "b": 0.0, "c": 0.0},
                    "HasAns_f1_always_answer": {"a": 0.5, "b": 1.0, "c": 0.0}}
    bounded = deployed({"exact": 60.0, "f1": 60.0, "HasAns_exact": 0.0, "HasAns_f1": 16.7, "NoAns_exact": 100.0,
                        "HasAns_total": 3, "NoAns_total": 2}, per_question)
    assert bounded["source"] == "derived from per_question.json"
    assert (bounded["HasAns_answered_at_least"], bounded["HasAns_answered_at_most"]) == (1, 2)
    assert "between 1 and 2 of 3 answerable questions" in bounded["statement"]
    unknown = deployed({"exact": 50.0})
    assert unknown["abstains"] is None and "answer rate was not recorded" in unknown["statement"]


def test_the_report_shows_every_frontier_point_deployed_and_names_one_that_abstains(tiny_squad_file, tmp_path):
    examples = load_examples(str(tiny_squad_file))
    answering = evaluate_predictions(examples, BEST, ODDS, na_threshold=10.0)
    silent = evaluate_predictions(examples, BEST, ODDS, na_threshold=-10.0)
    trials = [{"trial_id": trial, "number": number, "status": "complete", "baseline": number == 0,
               "params": {"student.num_hidden_layers": 3 - number},
               "metrics": {**metrics, "parameters": size}}
              for number, (trial, metrics, size) in enumerate([("base", answering, 100), ("quiet", silent, 50)])]
    summary = write_report(trials, tmp_path, objectives=[{"name": "exact", "direction": "max"},
                                                         {"name": "parameters", "direction": "min"}])
    deployment = summary["deployment"]
    assert set(deployment["by_trial"]) == {"base", "quiet"} and deployment["abstaining"] == ["quiet"]
    assert summary["findings"]["deployment"]["statement"].startswith(
        "1 of the 2 students shown abstain at their threshold: trial quiet answers 0 of 5 answerable questions")
    pareto = pd.read_csv(tmp_path / "pareto.csv").set_index("trial_id")
    assert pareto.loc["quiet", "answer_rate"] == 0.0 and bool(pareto.loc["quiet", "abstains"])
    assert pareto.loc["quiet", "answer_rate_source"] == "recorded"
