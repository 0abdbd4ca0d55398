"""Paired statistics: per-question scores, the paired standard error of a gain, and the claims judged with it."""

from __future__ import annotations

import json
import math

import pytest

from tune_distill.claims import paired_claims, read_per_question, write_per_question
from tune_distill.config import load_config
from tune_distill.report import write_report
from tune_distill.run import run_distillation
from tune_distill.scoring import evaluate_predictions, paired_difference, per_question_scores, standard_error

IDS = ("q1", "q2", "q3", "q4")
SE_OF_TWO_ONES_IN_FOUR = 100 * math.sqrt(1 / 3) / 2  # differences [0, 1, 0, 1]: sd sqrt(1/3), / sqrt(4)


def _scores(*values: float) -> dict[str, float]:
    return dict(zip(IDS, values))


def test_the_paired_error_of_a_gain_is_the_spread_of_per_question_differences():
    student, baseline = _scores(1, 1, 0, 1), _scores(1, 0, 0, 0)
    difference = paired_difference(student, baseline)
    # differences 0, 1, 0, 1: mean 0.5, sample variance 1/3
    assert difference["gain"] == pytest.approx(50.0) and difference["questions"] == 4
    assert difference["gain_se"] == pytest.approx(SE_OF_TWO_ONES_IN_FOUR)  # 28.87
    # the independent-samples figure: both score lists have sd 0.5, so sqrt(25^2 + 25^2) = 35.36
    independent = math.hypot(standard_error(list(student.values())), standard_error(list(baseline.values())))
    assert independent == pytest.approx(35.355, abs=1e-3) and independent > difference["gain_se"]
    # every question gained alike: no spread in the differences, no error
    assert paired_difference(_scores(1, 1, 1, 1), _scores(0, 0, 0, 0))["gain_se"] == 0.0


def test_the_paired_bootstrap_interval_holds_the_gain_and_is_seeded():
    student, baseline = _scores(1, 1, 0, 1), _scores(1, 0, 0, 0)
    first = paired_difference(student, baseline, bootstrap=400, seed=3)
    assert first["gain_interval"] == paired_difference(student, baseline, bootstrap=400, seed=3)["gain_interval"]
    low, high = first["gain_interval"]
    assert 0.0 <= low < 50.0 < high <= 100.0 and first["gain_interval_level"] == 0.95
    # every difference 1: every resample has mean 1
    assert paired_difference(_scores(1, 1, 1, 1), _scores(0, 0, 0, 0), bootstrap=50)["gain_interval"] == [100, 100]


def test_scores_of_other_questions_cannot_be_paired():
    with pytest.raises(ValueError, match="differ in 2 question id"):
        paired_difference({"q1": 1.0, "q2": 0.0}, {"q1": 1.0, "q3": 0.0})


def test_per_question_scores_average_to_the_reported_metrics(tiny_squad_file):
    from tune_distill.data import load_examples

    examples = load_examples(str(tiny_squad_file))
    best = {"q-founded": "1721", "q-bridge": "the great bridge", "q-cathedral": "1899", "q-airport": "1802",
            "q-cat": "near the dog", "q-dog-year": "1999", "q-bird": "river"}
    odds = {"q-founded": -2.0, "q-bridge": 0.5, "q-cathedral": 1.5, "q-airport": 3.0, "q-cat": -1.0,
            "q-dog-year": 2.0, "q-bird": 0.0}
    metrics = evaluate_predictions(examples, best, odds, na_threshold=1.0)
    scores = per_question_scores(examples, best, odds, 1.0)
    assert set(scores) == {"exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1",
                           "HasAns_exact_always_answer", "HasAns_f1_always_answer"}
    for metric, values in scores.items():
        assert 100 * sum(values.values()) / len(values) == pytest.approx(metrics[metric]), metric
    assert len(scores["HasAns_f1"]) == 5 and len(scores["NoAns_exact"]) == 2


def _row(trial_id, size, values, *, pareto=False, baseline=False):
    scores = None if values is None else {"exact": _scores(*values)}
    exact = None if values is None else 100 * sum(values) / len(values)
    return {"trial_id": trial_id, "parameters": size, "exact": exact if exact is not None else 40.0,
            "pareto": pareto, "baseline": baseline, "scores": scores}


def test_claims_hold_only_within_their_paired_errors():
    rows = [
        _row("base", 100, (1, 0, 1, 0), baseline=True, pareto=True),
        _row("a", 70, (1, 0, 0, 0), pareto=True),  # gain -25, se 25: exactly one error below -> no loss
        _row("b", 50, (0, 0, 0, 0), pareto=True),  # gain -50, se 28.9: a loss
        _row("c", 104, (1, 1, 1, 1)),  # gain +50, se 28.9: not more than two errors (57.7)
        _row("d", 60, None),  # no per-question scores: left out, named
    ]
    result = paired_claims(rows, "exact", "parameters", bootstrap=0)
    assert result["baseline"] == {"trial_id": "base", "exact": 50.0, "parameters": 100.0, "questions": 4}
    assert result["by_trial"]["a"]["gain"] == -25.0 and result["by_trial"]["a"]["gain_se"] == 25.0
    assert result["unpaired"] == {"d": "no per-question exact scores"}
    claims = result["claims"]
    smaller = claims["smaller_at_no_loss"]
    assert smaller["holds"] and smaller["trial_id"] == "a"
    assert smaller["smaller_than_baseline_pct"] == pytest.approx(30.0)
    assert "+/- 25.00 (paired, 4 questions)" in smaller["statement"]
    better = claims["more_accurate_at_about_the_same_size"]
    assert better["trial_id"] == "c" and not better["holds"]
    assert better["gain_se"] == pytest.approx(SE_OF_TWO_ONES_IN_FOUR)
    assert better["statement"].startswith("does not hold")
    share = claims["share_smaller_and_at_least_as_accurate"]
    assert share["value"] == pytest.approx(1 / 3) and share["trials"] == 3  # a only, of a, b, c


def test_a_gain_beyond_two_paired_errors_is_claimed_and_a_loss_is_not():
    rows = [_row("base", 100, (0, 0, 0, 0), baseline=True), _row("e", 105, (1, 1, 1, 0)),  # +75, se 25
            _row("f", 80, (0, 0, 0, 0), pareto=False)]
    claims = paired_claims(rows, "exact", "parameters", bootstrap=0)["claims"]
    assert claims["more_accurate_at_about_the_same_size"]["holds"]
    assert claims["more_accurate_at_about_the_same_size"]["trial_id"] == "e"
    assert not claims["smaller_at_no_loss"]["holds"]  # f ties the baseline but is not on the Pareto front
    assert claims["share_smaller_and_at_least_as_accurate"]["value"] == 0.5
    loss = paired_claims([_row("base", 100, (1, 1, 1, 1), baseline=True), _row("g", 50, (0, 0, 0, 0), pareto=True)],
                         "exact", "parameters", bootstrap=0)["claims"]["smaller_at_no_loss"]
    assert not loss["holds"] and "the closest is trial g" in loss["statement"]
    unjudged = paired_claims([_row("base", 100, None, baseline=True)], "exact", "parameters")
    assert unjudged["claims"]["smaller_at_no_loss"]["statement"] == (
        "not judged: the baseline has no per-question exact scores")


def test_claims_on_non_embedding_parameters_report_the_total_beside_them():
    rows = [_row("base", 100, (1, 0, 1, 0), baseline=True), _row("a", 70, (1, 0, 1, 0), pareto=True)]
    for row, embeddings in zip(rows, (300, 300)):  # the same embeddings: the total shrinks by less
        row["non_embedding_parameters"], row["parameters"] = row["parameters"], row["parameters"] + embeddings
    result = paired_claims(rows, "exact", "non_embedding_parameters", bootstrap=0)
    assert result["baseline"]["parameters"] == 400
    smaller = result["claims"]["smaller_at_no_loss"]
    assert smaller["holds"] and smaller["smaller_than_baseline_pct"] == pytest.approx(30.0)
    assert smaller["parameters_smaller_than_baseline_pct"] == pytest.approx(7.5)  # 370 against 400
    assert "non_embedding_parameters 70 against 100 (+30.0% smaller), parameters 370 against 400 (+7.5% smaller)" \
        in smaller["statement"]


def test_the_report_summary_carries_the_paired_claims(tmp_path):
    trials = []
    for number, (size, values) in enumerate([(100, (1, 0, 1, 0)), (70, (1, 0, 0, 0)), (104, (1, 1, 1, 1))]):
        run_dir = tmp_path / f"run{number}"
        write_per_question(run_dir, {"exact": _scores(*values)}, step=10, na_threshold=0.0)
        trials.append({"trial_id": f"t{number}", "number": number, "status": "complete", "baseline": number == 0,
                       "params": {"student.num_hidden_layers": 3 - number},
                       "metrics": {"exact": 100 * sum(values) / 4, "parameters": size}, "run_dir": str(run_dir)})
    summary = write_report(trials, tmp_path / "report", objectives=[{"name": "exact", "direction": "max"},
                                                                     {"name": "parameters", "direction": "min"}])
    paired = summary["paired"]
    assert paired["claims"]["smaller_at_no_loss"]["trial_id"] == "t1"
    assert paired["by_trial"]["t2"]["gain"] == 50.0 and "gain_interval" in paired["by_trial"]["t2"]
    assert json.loads((tmp_path / "report" / "summary.json").read_text())["paired"]["baseline"]["trial_id"] == "t0"


def test_a_run_folder_keeps_the_per_question_scores_of_its_last_evaluation(tiny_qa_model_dir, tiny_squad_file,
                                                                           tmp_path):
    config = load_config(None, [f"teacher.path={tiny_qa_model_dir}", f"data.train_files=[{tiny_squad_file}]",
                                f"data.val_file={tiny_squad_file}", f"data.cache_dir={tmp_path / 'cache'}",
                                "data.max_seq_length=48", "data.doc_stride=16", "data.max_query_length=16",
                                "student.num_hidden_layers=2", "distill.max_steps=2", "distill.train_batch_size=4"])
    metrics = run_distillation(config, tmp_path / "run", measure_latency=False)
    scores = read_per_question(tmp_path / "run")
    assert 100 * sum(scores["f1"].values()) / 7 == pytest.approx(metrics["f1"])
    assert 100 * sum(scores["HasAns_f1_always_answer"].values()) / 5 == pytest.approx(
        metrics["HasAns_f1_always_answer"], abs=1e-3)
    stored = json.loads((tmp_path / "run" / "per_question.json").read_text())
    assert stored["step"] == 2 and stored["na_threshold"] == metrics["na_threshold"]
    assert read_per_question(tmp_path / "nowhere") is None


# Errors that count what a claim is about: questions grouped by paragraph and article.
# Two articles x two paragraphs x two questions; the student gains on both questions of paragraphs A1 and B1 and
# on none of A2 and B2: differences 1, 1, 0, 0 | 1, 1, 0, 0, mean 0.5.
GROUPED_IDS = ("a1-q1", "a1-q2", "a2-q1", "a2-q2", "b1-q1", "b1-q2", "b2-q1", "b2-q2")
GROUPED_GAINS = (1, 1, 0, 0, 1, 1, 0, 0)
PER_QUESTION_SE = 100 * math.sqrt(8 * 0.25 / 7) / math.sqrt(8)  # sd of the differences sqrt(2/7) / sqrt(8): 18.90
PARAGRAPH_SE = 100 * math.sqrt(4 / 3 * 4) / 8  # paragraph sums around the mean +1, -1, +1, -1: sqrt(4/3 x 4) / 8: 28.87


def _grouped_squad_file(path):
    """A SQuAD 2.0 file of 2 articles (A, B) x 2 paragraphs x 2 answerable questions, ids as GROUPED_IDS."""
    def paragraph(article, number):
        context = f"Paragraph {number} of article {article} names the river {article}{number}."
        return {"context": context, "qas": [
            {"id": f"{article.lower()}{number}-q{q}", "question": f"Which river {q}?", "is_impossible": False,
             "answers": [{"text": f"{article}{number}", "answer_start": context.index(f"{article}{number}.")}]}
            for q in (1, 2)]}

    path.write_text(json.dumps({"version": "v2.0", "data": [
        {"title": article, "paragraphs": [paragraph(article, 1), paragraph(article, 2)]} for article in ("A", "B")]}))
    return path


def test_the_clustered_error_sums_each_paragraphs_differences_before_their_spread(tmp_path):
    from tune_distill.claims import read_grouping
    from tune_distill.scoring import clustered_difference

    grouping = read_grouping(_grouped_squad_file(tmp_path / "grouped.json"))
    assert grouping.paragraph["a2-q1"] == grouping.paragraph["a2-q2"] == "A / paragraph 2"
    assert grouping.article["b1-q2"] == "B" and not grouping.missing
    student, baseline = dict(zip(GROUPED_IDS, GROUPED_GAINS)), dict.fromkeys(GROUPED_IDS, 0.0)
    per_question = paired_difference(student, baseline)
    by_paragraph = clustered_difference(student, baseline, grouping.paragraph)
    by_article = clustered_difference(student, baseline, grouping.article)
    assert per_question["gain"] == by_paragraph["gain"] == 50.0
    assert per_question["gain_se"] == pytest.approx(PER_QUESTION_SE)  # 18.90
    assert by_paragraph["gain_se"] == pytest.approx(PARAGRAPH_SE) and by_paragraph["groups"] == 4  # 28.87: wider
    assert by_article["gain_se"] == 0.0 and by_article["groups"] == 2  # each article gains 50: no spread between them
    # one question per group is the per-question error exactly
    alone = clustered_difference(student, baseline, {qid: qid for qid in GROUPED_IDS})
    assert alone["gain_se"] == pytest.approx(PER_QUESTION_SE)
    # the bootstrap over whole paragraphs draws paragraph gains of 100 or 0: its interval spans them, seeded
    interval = clustered_difference(student, baseline, grouping.paragraph, bootstrap=200, seed=1)["gain_interval"]
    assert 0.0 <= interval[0] < 50.0 < interval[1] <= 100.0
    with pytest.raises(ValueError, match="1 question id.s. belong to no group"):
        clustered_difference(student, baseline, {qid: "p" for qid in GROUPED_IDS[1:]})


def _grouped_rows():
    return [{"trial_id": "base", "baseline": True, "pareto": True, "exact": 0.0, "parameters": 100,
             "scores": {"exact": dict.fromkeys(GROUPED_IDS, 0.0)}},
            {"trial_id": "s", "baseline": False, "pareto": True, "exact": 50.0, "parameters": 100,
             "scores": {"exact": dict(zip(GROUPED_IDS, GROUPED_GAINS))}}]


def test_a_gain_beyond_two_errors_per_question_but_not_by_paragraph_is_not_claimed(tmp_path, monkeypatch):
    from tune_distill import claims
    from tune_distill.claims import read_grouping

    grouping = read_grouping(_grouped_squad_file(tmp_path / "grouped.json"))
    monkeypatch.setattr(claims, "PARAGRAPH_MIN", 4)  # the tiny split's 4 paragraphs are enough here
    result = paired_claims(_grouped_rows(), "exact", "parameters", bootstrap=0, grouping=grouping)
    assert result["errors"]["judged_by"] == "paragraph" and result["errors"]["warning"] is None
    assert result["errors"]["paragraphs"] == 4 and result["errors"]["articles"] == 2  # fewer than ARTICLE_MIN
    gain = result["by_trial"]["s"]
    assert gain["gain_se"] == pytest.approx(PER_QUESTION_SE)
    assert gain["gain_se_paragraph"] == pytest.approx(PARAGRAPH_SE)
    assert gain["judging_se"] == gain["gain_se_paragraph"] and gain["gain_se_article"] == 0.0
    better = result["claims"]["more_accurate_at_about_the_same_size"]
    # +50 exceeds 2 x 18.90 per question, not 2 x 28.87 by paragraph: the paragraph error judges
    assert not better["holds"] and better["statement"].endswith("not more than 2 standard errors by paragraph")
    assert "+/- 18.90 (paired, 8 questions), +/- 28.87 by paragraph (4 paragraphs), +/- 0.00 by article " \
           "(2 articles); judged by paragraph" in better["statement"]
    # with 2 articles enough, the article error judges instead; at 0 (both articles gained alike) it is no
    # evidence of an error below the per-question one, which then judges: +50 > 2 x 18.90
    monkeypatch.setattr(claims, "ARTICLE_MIN", 2)
    by_article = paired_claims(_grouped_rows(), "exact", "parameters", bootstrap=0, grouping=grouping)
    assert by_article["errors"]["judged_by"] == "article"
    assert by_article["by_trial"]["s"]["judging_se"] == pytest.approx(PER_QUESTION_SE)
    assert by_article["claims"]["more_accurate_at_about_the_same_size"]["holds"]


def test_without_a_grouping_the_claims_fall_back_to_per_question_errors_and_say_so(tmp_path, caplog):
    from tune_distill.claims import Grouping, read_grouping

    missing = read_grouping(tmp_path / "gone.json")
    assert missing.missing == f"the data file {tmp_path / 'gone.json'} is not here"
    for grouping, why in ((missing, "is not here"), (read_grouping(_grouped_squad_file(tmp_path / "g.json")),
                                                     "only 4 paragraphs in 2 article(s) (fewer than 20)")):
        caplog.clear()
        result = paired_claims(_grouped_rows(), "exact", "parameters", bootstrap=0, grouping=grouping)
        assert result["errors"]["judged_by"] == "question" and why in result["errors"]["warning"]
        assert "claims judged with per-question errors" in caplog.text
        better = result["claims"]["more_accurate_at_about_the_same_size"]
        assert better["holds"] and better["statement"].endswith("more than 2 standard errors per question")
    foreign = dict(zip(GROUPED_IDS, GROUPED_GAINS))  # scores of questions the data file does not hold
    rows = _grouped_rows()
    rows[0]["scores"] = {"exact": {f"x{qid}": 0.0 for qid in foreign}}
    rows[1]["scores"] = {"exact": {f"x{qid}": value for qid, value in foreign.items()}}
    grouping = Grouping("g.json", dict.fromkeys(GROUPED_IDS, "p"), dict.fromkeys(GROUPED_IDS, "a"))
    result = paired_claims(rows, "exact", "parameters", bootstrap=0, grouping=grouping)
    assert "8 of the 8 scored questions are not in g.json" in result["errors"]["warning"]


def test_the_report_groups_by_the_validation_file_the_baselines_run_folder_names(tmp_path, monkeypatch):
    from tune_distill import claims

    data = _grouped_squad_file(tmp_path / "val.json")
    monkeypatch.setattr(claims, "PARAGRAPH_MIN", 4)
    trials = []
    for number, values in enumerate([(0,) * 8, GROUPED_GAINS]):
        run_dir = tmp_path / f"run{number}"
        write_per_question(run_dir, {"exact": dict(zip(GROUPED_IDS, values))}, step=10, na_threshold=0.0)
        (run_dir / "config.yaml").write_text(f"data:\n  val_file: {data}\n")
        trials.append({"trial_id": f"t{number}", "number": number, "status": "complete", "baseline": number == 0,
                       "params": {"student.num_hidden_layers": 3}, "run_dir": str(run_dir),
                       "metrics": {"exact": 100 * sum(values) / 8, "parameters": 100 + number}})
    summary = write_report(trials, tmp_path / "report", objectives=[{"name": "exact", "direction": "max"},
                                                                     {"name": "parameters", "direction": "min"}])
    errors = summary["paired"]["errors"]
    assert errors["judged_by"] == "paragraph" and errors["grouping"] == str(data)
    assert summary["findings"]["errors"]["statement"].startswith("the claims are judged by the paired error by "
                                                                 "paragraph: 4 paragraphs in 2 article(s)")
    assert summary["findings"]["more_accurate_at_about_the_same_size"]["judged_by"] == "paragraph"
