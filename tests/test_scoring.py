"""tune_distill.scoring: the official SQuAD 2.0 metric rules, standard errors, the no-answer threshold."""

from __future__ import annotations

import logging

import pytest
from conftest import squad_example as example

from tune_distill import scoring
from tune_distill.data import SquadExample
from tune_distill.evaluate import NO_SPAN_NULL_ODDS  # what postprocess gives a question without any span
from tune_distill.scoring import (
    apply_threshold,
    best_threshold,
    compute_exact,
    compute_f1,
    evaluate_predictions,
    normalize_answer,
)


def test_apply_threshold():
    texts = {"a": "x", "b": "y", "c": ""}
    odds = {"a": -1.0, "b": 2.0, "c": NO_SPAN_NULL_ODDS}
    assert apply_threshold(texts, odds, 0.0) == {"a": "x", "b": "", "c": ""}
    assert apply_threshold(texts, odds, 2.0) == {"a": "x", "b": "y", "c": ""}  # equal odds: answered
    assert apply_threshold(texts, odds, -5.0) == {"a": "", "b": "", "c": ""}


# --------------------------------------------------------------------------------------------------
# The official metric rules
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, normalised",
    [
        ("The Cat", "cat"),  # case and article
        ("Hello, World!", "hello world"),  # punctuation
        ("U.S.-led (1990s)", "usled 1990s"),  # punctuation removed, not replaced by spaces
        ("an apple a day", "apple day"),  # all three articles
        ("theatre another Anthem", "theatre another anthem"),  # articles only as whole words
        ("  tabs\tand\nnew   lines ", "tabs and new lines"),  # whitespace collapsed
        ("the", ""),
        ("a.b", "ab"),  # punctuation goes before articles are looked for
        ("“quoted”", "“quoted”"),  # only string.punctuation (ASCII) is removed
    ],
)
def test_normalize_answer(raw, normalised):
    assert normalize_answer(raw) == normalised


def test_exact_and_f1_rules():
    assert compute_exact("The Cat", "cat.") == 1
    assert compute_exact("cat", "cats") == 0
    assert compute_exact("", "") == 1
    assert compute_exact("", "the") == 1  # both normalise to ""
    # F1 when one side is empty: 1 only if both are.
    assert compute_f1("", "") == 1
    assert compute_f1("", "a cat") == 0
    assert compute_f1("a cat", "") == 0
    assert compute_f1("the", "") == 1
    assert compute_f1("cat", "the") == 0
    # Partial overlaps, by hand.
    # gold cat sat on mat (4) vs pred cat on mat (3): 3 shared, P = 1, R = 3/4 -> 6/7.
    assert compute_f1("the cat sat on the mat", "cat on mat") == pytest.approx(6 / 7)
    # gold red blue green (3) vs blue green yellow orange (4): 2 shared, P = 1/2, R = 2/3 -> 4/7.
    assert compute_f1("red blue green", "blue green yellow orange") == pytest.approx(4 / 7)
    # Repeated tokens count with multiplicity: x x y vs x y y share one x and one y -> P = R = 2/3.
    assert compute_f1("x x y", "x y y") == pytest.approx(2 / 3)
    assert compute_f1("dog", "cat") == 0
    assert compute_f1("Cat!", "the cat") == 1


def test_scores_take_the_best_gold_answer_and_split_has_and_no_answer():
    context = "The bridge was built in 1802 by the king."
    examples = [
        example("bridge", context, ("1802", "in 1802")),
        example("king", context, ("the king",)),
        example("none", context),
        example("none-2", context),
    ]
    predictions = {"bridge": "built in 1802", "king": "King", "none": "", "none-2": "1802"}
    metrics = scoring.squad_v2_scores(examples, predictions)
    # bridge: exact 0; F1 max(vs 1802: P 1/3 R 1 -> 1/2, vs in 1802: P 2/3 R 1 -> 4/5) = 0.8. king: exact 1.
    # none: "" vs gold [""] -> 1 and 1. none-2: 0 and 0.
    assert metrics["total"] == 4
    assert metrics["exact"] == pytest.approx(50.0)
    assert metrics["f1"] == pytest.approx(100 * (0.8 + 1 + 1 + 0) / 4)
    assert metrics["HasAns_total"] == 2 and metrics["NoAns_total"] == 2
    assert metrics["HasAns_exact"] == pytest.approx(50.0)
    assert metrics["HasAns_f1"] == pytest.approx(90.0)
    assert metrics["NoAns_exact"] == pytest.approx(50.0) and metrics["NoAns_f1"] == pytest.approx(50.0)
    assert scoring.squad_v2_scores(examples, {**predictions, "bridge": "in 1802"})["HasAns_exact"] == 100.0


def test_standard_errors_of_the_scores():
    assert scoring.standard_error([1.0]) == 0.0 and scoring.standard_error([]) == 0.0
    assert scoring.standard_error([1.0, 1.0, 1.0]) == 0.0
    # 0, 0.5, 1: mean 0.5, sample variance (0.25 + 0 + 0.25) / 2 = 0.25, se = sqrt(0.25 / 3)
    assert scoring.standard_error([0.0, 0.5, 1.0]) == pytest.approx(100.0 * (0.25 / 3) ** 0.5)
    # through the scores: one answerable question right, one half right (F1 2/3 x ...), one unanswerable right
    examples = [example("a", "x y", ("x",)), example("b", "x y z", ("y z",)), example("n", "x y")]
    metrics = scoring.squad_v2_scores(examples, {"a": "x", "b": "z", "n": ""})
    assert metrics["HasAns_exact_se"] == pytest.approx(100.0 * 0.5)  # 1, 0: variance 0.5, /2 -> 0.25
    assert metrics["HasAns_f1_se"] == pytest.approx(scoring.standard_error([1.0, 2 / 3]))
    assert metrics["exact_se"] == pytest.approx(scoring.standard_error([1.0, 0.0, 1.0]))
    assert metrics["NoAns_exact_se"] == 0.0


def test_gold_answers_that_normalise_to_nothing_count_as_no_answer():
    gold_only_article = SquadExample("odd", "T", "the cat", "q?", ("the",), (0,), False)
    assert scoring.gold_answers(gold_only_article) == [""]
    metrics = scoring.squad_v2_scores([gold_only_article], {"odd": ""})
    assert metrics["exact"] == 100.0 and "HasAns_total" not in metrics and metrics["NoAns_total"] == 1


def test_breakdowns_are_omitted_when_empty_and_missing_predictions_are_wrong(caplog):
    answerable = [example("a", "x y", ("x",)), example("b", "x y", ("y",))]
    with caplog.at_level(logging.WARNING, logger="tune_distill.scoring"):
        metrics = scoring.squad_v2_scores(answerable, {"a": "x"})
    se = 100.0 * (0.5 / 2) ** 0.5  # scores 1 and 0: sample variance 0.5, two questions
    assert metrics == pytest.approx({
        "exact": 50.0, "f1": 50.0, "total": 2, "HasAns_exact": 50.0, "HasAns_f1": 50.0, "HasAns_total": 2,
        "exact_se": se, "f1_se": se, "HasAns_exact_se": se, "HasAns_f1_se": se,
    })
    assert "1 of 2 questions have no prediction" in caplog.text
    unanswerable = [example("n", "x y")]
    metrics = scoring.squad_v2_scores(unanswerable, {})  # missing is wrong, even where "" would be right
    assert metrics["exact"] == 0.0 and metrics["NoAns_total"] == 1 and "HasAns_total" not in metrics
    with pytest.raises(ValueError, match=r"not questions of the evaluated data.*'stray'"):
        scoring.squad_v2_scores(answerable, {"a": "x", "stray": "y"})


# --------------------------------------------------------------------------------------------------
# Threshold search
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def threshold_case():
    """Five questions; best span texts and null odds chosen so the exact- and F1-best thresholds differ.

    Sweep from "all no-answer" (score 2: B and E), switching in increasing null odds:
      A (-3) answerable, exact right      exact 3 (best)   F1 3   (best)
      B (-2) unanswerable, answered "x"   exact 2          F1 2
      C (-1) answerable, F1 8/9           exact 2          F1 2 + 8/9
      D ( 0) answerable, F1 8/9           exact 2          F1 3 + 7/9 (best)
      E ( 2) unanswerable, answered "y"   exact 1          F1 2 + 7/9
    """
    context = "one two three four five six"
    examples = [
        example("A", context, ("one",)),
        example("B", context),
        example("C", context, ("two three four five",)),
        example("D", context, ("three four five six",)),
        example("E", context),
    ]
    texts = {
        "A": "one",
        "B": "x",
        "C": "two three four five extra",  # 4 shared, P 4/5, R 1 -> F1 8/9
        "D": "three four five six extra",  # 8/9 likewise
        "E": "y",
    }
    odds = {"A": -3.0, "B": -2.0, "C": -1.0, "D": 0.0, "E": 2.0}
    return examples, texts, odds


def test_best_threshold_maximises_exact_and_reports_the_best_f1_threshold(threshold_case):
    examples, texts, odds = threshold_case
    assert best_threshold(examples, texts, odds) == -3.0
    assert scoring.best_f1_threshold(examples, texts, odds) == 0.0
    metrics = evaluate_predictions(examples, texts, odds, None)
    assert metrics["na_threshold"] == -3.0 and metrics["na_threshold_chosen_here"] is True
    assert metrics["exact"] == pytest.approx(60.0) and metrics["f1"] == pytest.approx(60.0)
    assert metrics["best_exact"] == pytest.approx(60.0) and metrics["best_exact_thresh"] == -3.0
    assert metrics["best_f1_thresh"] == 0.0
    assert metrics["best_f1"] == pytest.approx(100 * (1 + 0 + 8 / 9 + 8 / 9 + 1) / 5)
    # The reported best F1 is what applying its threshold gives.
    at_best_f1 = scoring.squad_v2_scores(examples, apply_threshold(texts, odds, 0.0))
    assert at_best_f1["f1"] == pytest.approx(metrics["best_f1"])
    # At threshold 0: A, B, C, D answered, E not.
    assert metrics["exact_at_0"] == pytest.approx(40.0)
    assert metrics["f1_at_0"] == pytest.approx(metrics["best_f1"])
    assert metrics["HasAns_exact_always_answer"] == pytest.approx(100 / 3)
    # always answering, A, C, D score exact 1, 0, 0 and F1 1, 8/9, 8/9
    assert metrics["HasAns_exact_always_answer_se"] == pytest.approx(scoring.standard_error([1.0, 0.0, 0.0]))
    assert metrics["HasAns_f1_always_answer_se"] == pytest.approx(scoring.standard_error([1.0, 8 / 9, 8 / 9]))


def test_a_given_threshold_is_applied_unchanged(threshold_case):
    examples, texts, odds = threshold_case
    metrics = evaluate_predictions(examples, texts, odds, 1.5)
    assert metrics["na_threshold"] == 1.5 and metrics["na_threshold_chosen_here"] is False
    assert metrics["exact"] == pytest.approx(40.0)  # A, B, C, D answered, E not
    assert metrics["best_exact_thresh"] == -3.0  # still reported, as information about this split


def test_threshold_when_answering_nothing_is_best_and_with_tied_odds():
    context = "one two"
    examples = [example("A", context, ("one",)), example("B", context), example("C", context)]
    texts = {"A": "two", "B": "x", "C": "y"}
    odds = {"A": -1.0, "B": 0.5, "C": 1.0}
    threshold = best_threshold(examples, texts, odds)
    assert threshold < -1.0  # below every null odds: answer nothing (the official script would say 0.0)
    assert set(apply_threshold(texts, odds, threshold).values()) == {""}
    # Tied odds switch together: A right and B wrong at the same odds gain nothing over answering nothing.
    texts, odds = {"A": "one", "B": "x", "C": "y"}, {"A": 0.5, "B": 0.5, "C": 1.0}
    threshold = best_threshold(examples, texts, odds)
    chosen = evaluate_predictions(examples, texts, odds, None)
    assert chosen["exact"] == pytest.approx(chosen["best_exact"])  # the reported best is reproducible
    assert threshold < 0.5
