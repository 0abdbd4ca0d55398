"""SQuAD 2.0 scoring: the official exact / F1, standard errors, and the no-answer threshold. Pure functions.

Given each question's best answer text and its null odds (evaluate.postprocess), a no-answer
threshold decides between that text and "" (`apply_threshold`: "" when null_odds > threshold).
`squad_v2_scores` computes the official SQuAD 2.0 figures overall and for answerable (HasAns) and
unanswerable (NoAns) questions, each with its standard error. `best_threshold` is the official
find_best_thresh sweep maximising EXACT (the threshold chosen on the validation split, given
unchanged for any other split); `best_f1_threshold` maximises F1 instead and is reported as
best_f1_thresh. `evaluate_predictions` gathers all of it for one set of predictions.
`per_question_scores` keeps each question's score under every metric, and `paired_difference` turns
two models' per-question scores on the same questions into a gain with its paired standard error
(and optionally a paired bootstrap interval). Questions of one paragraph (or article) are not
independent: `clustered_difference` gives the same gain with a cluster-robust error over groups of
questions (and optionally a bootstrap over whole groups). `answer_rates` says how many questions a
model answers at its threshold (what it does deployed; 0 answered scores the no-answer exact).

Must not know: models, logits, windows, devices, how a model was built or trained, Ray, searchers.
It imports only SquadExample from `data`.

Example (CPU, instant):
    python -c "from tune_distill.scoring import compute_f1; print(compute_f1('the great bridge', 'bridge'))"
"""

from __future__ import annotations

import collections
import logging
import math
import re
import string
from typing import Any, Mapping, Sequence

from tune_distill.data import SquadExample

logger = logging.getLogger(__name__)

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation, drop the articles a/an/the, collapse whitespace (official order)."""
    text = text.lower()
    text = "".join(character for character in text if character not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _answer_tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def compute_exact(gold: str, prediction: str) -> int:
    """1 if the normalised answers are equal, else 0."""
    return int(normalize_answer(gold) == normalize_answer(prediction))


def compute_f1(gold: str, prediction: str) -> float:
    """Token F1 of the normalised answers; when either is empty, 1 if both are, else 0."""
    gold_tokens = _answer_tokens(gold)
    predicted_tokens = _answer_tokens(prediction)
    if not gold_tokens or not predicted_tokens:
        return float(gold_tokens == predicted_tokens)
    shared = sum((collections.Counter(gold_tokens) & collections.Counter(predicted_tokens)).values())
    if shared == 0:
        return 0.0
    precision = shared / len(predicted_tokens)
    recall = shared / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def gold_answers(example: SquadExample) -> list[str]:
    """Gold texts that survive normalisation; [""] for an unanswerable question (official rule)."""
    answers = [text for text in example.answer_texts if normalize_answer(text)]
    return answers or [""]


def _raw_scores(
    examples: Sequence[SquadExample], predictions: Mapping[str, str]
) -> tuple[dict[str, float], dict[str, float]]:
    """Per-question exact and F1 (max over gold answers); a missing prediction scores 0."""
    known_ids = {example.id for example in examples}
    unknown = [qid for qid in predictions if qid not in known_ids]
    if unknown:
        raise ValueError(
            f"{len(unknown)} prediction id(s) are not questions of the evaluated data, e.g. {unknown[:3]}"
        )
    exact: dict[str, float] = {}
    f1: dict[str, float] = {}
    missing = 0
    for example in examples:
        if example.id not in predictions:
            missing += 1
            exact[example.id] = 0.0
            f1[example.id] = 0.0
            continue
        prediction = predictions[example.id]
        golds = gold_answers(example)
        exact[example.id] = float(max(compute_exact(gold, prediction) for gold in golds))
        f1[example.id] = max(compute_f1(gold, prediction) for gold in golds)
    if missing:
        logger.warning("metrics: %d of %d questions have no prediction; counted as wrong", missing, len(examples))
    return exact, f1


def standard_error(scores: Sequence[float]) -> float:
    """Standard error (percentage points) of the mean of per-question scores in [0, 1].

    sample standard deviation / sqrt(n): how far the score of these n questions may lie from the
    model's score on the population they were drawn from. Questions are treated as independent; those
    of one paragraph are not quite, so it likely understates the error. 0.0 for fewer than two questions.
    """
    n = len(scores)
    if n < 2:
        return 0.0
    mean = sum(scores) / n
    variance = sum((score - mean) ** 2 for score in scores) / (n - 1)
    return 100.0 * math.sqrt(variance / n)


def paired_difference(scores: Mapping[str, float], baseline: Mapping[str, float], *, bootstrap: int = 0,
                      level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """The gain of `scores` over `baseline` on the same questions (per-question scores in [0, 1], by id).

    gain: mean of the per-question differences, in percentage points (= the difference of the two
    scores); gain_se: their sample standard deviation / sqrt(n), the paired standard error: a question's
    difficulty moves both scores alike and cancels in the difference, so it is usually well below the
    independent sqrt(se_a^2 + se_b^2). With `bootstrap` > 0, also the percentile interval (`level`) of
    the mean difference over that many resamples of the questions (seeded). Both sides must score the
    same question ids.
    """
    _, differences = _paired_values(scores, baseline)
    n = len(differences)
    result: dict[str, Any] = {"gain": 100.0 * sum(differences) / n if n else 0.0,
                              "gain_se": standard_error(differences), "questions": n}
    if bootstrap > 0 and n:
        import random

        generator = random.Random(seed)
        means = sorted(sum(generator.choices(differences, k=n)) / n for _ in range(bootstrap))
        result["gain_interval"] = [100.0 * value for value in _percentiles(means, level)]
        result["gain_interval_level"] = level
    return result


def _paired_values(scores: Mapping[str, float], baseline: Mapping[str, float]) -> tuple[list[str], list[float]]:
    """Sorted question ids and the per-question differences; both sides must score the same ids."""
    if set(scores) != set(baseline):
        only = len(set(scores) ^ set(baseline))
        raise ValueError(f"paired difference: the two score sets differ in {only} question id(s); "
                         "paired errors need the same questions")
    ids = sorted(scores)
    return ids, [scores[qid] - baseline[qid] for qid in ids]


def clustered_difference(scores: Mapping[str, float], baseline: Mapping[str, float], clusters: Mapping[str, str], *,
                         bootstrap: int = 0, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """The gain of `scores` over `baseline` with a cluster-robust standard error, questions grouped by `clusters`
    (question id -> its group, e.g. its paragraph or article).

    Questions that share a paragraph share its difficulty and wording, so their differences move together and
    the per-question error (paired_difference) understates how far the gain may lie from that on new text. Here
    the differences' deviations from their mean are summed per group, T_g, and
    gain_se = 100 x sqrt(G / (G - 1) x sum_g T_g^2) / n (G groups, n questions; the cluster-robust "sandwich"
    error with its small-sample factor G / (G - 1)). With one question per group it is the per-question paired
    error exactly; with fewer than two groups it is 0.0 (nothing to estimate it from). With `bootstrap` > 0, also
    the percentile interval (`level`) of the gain over that many resamples of whole groups with replacement
    (seeded; a resample's gain: its differences' sum / its question count).
    """
    ids, differences = _paired_values(scores, baseline)
    unknown = [qid for qid in ids if qid not in clusters]
    if unknown:
        raise ValueError(f"clustered difference: {len(unknown)} question id(s) belong to no group, e.g. {unknown[:3]}")
    n = len(differences)
    mean = sum(differences) / n if n else 0.0
    totals: dict[str, float] = collections.defaultdict(float)
    counts: dict[str, int] = collections.defaultdict(int)
    for qid, difference in zip(ids, differences):
        totals[clusters[qid]] += difference - mean
        counts[clusters[qid]] += 1
    groups = len(totals)
    spread = groups / (groups - 1) * sum(total ** 2 for total in totals.values()) if groups > 1 else 0.0
    result: dict[str, Any] = {"gain": 100.0 * mean, "gain_se": 100.0 * math.sqrt(spread) / n if n else 0.0,
                              "questions": n, "groups": groups}
    if bootstrap > 0 and groups:
        import random

        generator = random.Random(seed)
        sums = [(totals[key] + mean * counts[key], counts[key]) for key in sorted(totals)]  # (sum, count) per group
        means = sorted(sum(s for s, _ in drawn) / sum(c for _, c in drawn)
                       for drawn in (generator.choices(sums, k=groups) for _ in range(bootstrap)))
        result["gain_interval"] = [100.0 * value for value in _percentiles(means, level)]
        result["gain_interval_level"] = level
    return result


def _percentiles(ordered: Sequence[float], level: float) -> tuple[float, float]:
    """The (low, high) percentile interval at `level` of sorted resampled values."""
    count, tail = len(ordered), (1.0 - level) / 2
    return (ordered[min(count - 1, int(math.floor(tail * count)))],
            ordered[min(count - 1, int(math.ceil((1.0 - tail) * count)) - 1)])


def answer_rates(examples: Sequence[SquadExample], predictions: Mapping[str, str]) -> dict[str, Any]:
    """How many questions get an answer (a non-empty prediction), overall and among the answerable (HasAns) and
    unanswerable (NoAns) ones, as counts and percentages, with `no_answer_exact`: the exact of answering "" to
    every question (100 x the unanswerable share), which a model that answers nothing scores."""
    answerable = {example.id for example in examples if gold_answers(example) != [""]}
    answered = {example.id for example in examples if predictions.get(example.id)}
    total = len(examples)
    result: dict[str, Any] = {"answered": len(answered), "answer_rate": 100.0 * len(answered) / total if total else 0.0,
                              "no_answer_exact": 100.0 * (total - len(answerable)) / total if total else 0.0}
    for prefix, chosen in (("HasAns_", answerable), ("NoAns_", {example.id for example in examples} - answerable)):
        if chosen:
            result[f"{prefix}answered"] = len(answered & chosen)
            result[f"{prefix}answer_rate"] = 100.0 * len(answered & chosen) / len(chosen)
    return result


def per_question_scores(examples: Sequence[SquadExample], best_texts: Mapping[str, str],
                        null_odds: Mapping[str, float], threshold: float) -> dict[str, dict[str, float]]:
    """Each question's score in [0, 1] under every metric `evaluate_predictions` reports as a mean, by id.

    exact / f1 (at `threshold`, all questions), HasAns_* / NoAns_* (their questions only) and
    HasAns_exact_always_answer / HasAns_f1_always_answer: 100 x the mean of a metric's entries is the
    metric. The input of `paired_difference`.
    """
    exact, f1 = _raw_scores(examples, apply_threshold(best_texts, null_odds, threshold))
    always_exact, always_f1 = _raw_scores(examples, dict(best_texts))
    answerable = {example.id for example in examples if gold_answers(example) != [""]}
    result = {"exact": exact, "f1": f1}
    for prefix, chosen in (("HasAns_", answerable), ("NoAns_", {e.id for e in examples} - answerable)):
        if chosen:
            result[f"{prefix}exact"] = {qid: exact[qid] for qid in exact if qid in chosen}
            result[f"{prefix}f1"] = {qid: f1[qid] for qid in f1 if qid in chosen}
    if answerable:
        result["HasAns_exact_always_answer"] = {qid: always_exact[qid] for qid in answerable}
        result["HasAns_f1_always_answer"] = {qid: always_f1[qid] for qid in answerable}
    return result


def apply_threshold(best_texts: Mapping[str, str], null_odds: Mapping[str, float], threshold: float) -> dict[str, str]:
    """Final predictions: "" (no answer) where null_odds > threshold, the best span text otherwise."""
    return {qid: ("" if null_odds[qid] > threshold else text) for qid, text in best_texts.items()}


def squad_v2_scores(examples: Sequence[SquadExample], predictions: Mapping[str, str]) -> dict[str, Any]:
    """Official SQuAD 2.0 exact and F1 (percent) overall and for answerable (HasAns) / unanswerable (NoAns).

    Each figure comes with its standard error (`exact_se`, `f1_se`, `HasAns_f1_se`, ...; see
    `standard_error`), so that two students' scores on the same questions can be told apart from noise.
    """
    if not examples:
        raise ValueError("squad_v2_scores: no questions to score")
    exact, f1 = _raw_scores(examples, predictions)

    def summary(ids: list[str], prefix: str = "") -> dict[str, Any]:
        exact_scores = [exact[qid] for qid in ids]
        f1_scores = [f1[qid] for qid in ids]
        return {
            f"{prefix}exact": 100.0 * sum(exact_scores) / len(ids),
            f"{prefix}f1": 100.0 * sum(f1_scores) / len(ids),
            f"{prefix}total": len(ids),
            f"{prefix}exact_se": standard_error(exact_scores),
            f"{prefix}f1_se": standard_error(f1_scores),
        }

    metrics = summary([example.id for example in examples])
    answerable = [example.id for example in examples if gold_answers(example) != [""]]
    unanswerable = [example.id for example in examples if gold_answers(example) == [""]]
    if answerable:
        metrics.update(summary(answerable, "HasAns_"))
    if unanswerable:
        metrics.update(summary(unanswerable, "NoAns_"))
    return metrics


def _threshold_sweep(
    examples: Sequence[SquadExample],
    best_texts: Mapping[str, str],
    null_odds: Mapping[str, float],
    per_question: Mapping[str, float],
) -> tuple[float, float]:
    """(best score in percent, threshold) of the official find_best_thresh sweep.

    Start with every question answered "" (score = number of unanswerable ones); then, in increasing
    null odds, switch questions to their best span: an answerable one gains its span's score, an
    unanswerable one loses 1 if the span is non-empty. The best running score wins (the first, i.e.
    lowest, threshold on ties). Two deliberate differences from the official script: questions with
    equal null odds switch together (a threshold cannot separate them), and when answering nothing
    is best the threshold returned lies below every null odds (the official script returns 0.0).
    """
    ids = [example.id for example in examples]
    missing = [qid for qid in ids if qid not in null_odds or qid not in best_texts]
    if missing:
        raise ValueError(f"threshold search: {len(missing)} question(s) have no null odds / text, e.g. {missing[:3]}")
    has_answer = {example.id: gold_answers(example) != [""] for example in examples}
    score = float(sum(not has_answer[qid] for qid in ids))
    best_score = score
    ordered = sorted(ids, key=lambda qid: null_odds[qid])
    best_thresh = float(null_odds[ordered[0]]) - 1.0 if ordered else 0.0
    for position, qid in enumerate(ordered):
        if has_answer[qid]:
            score += per_question[qid]
        elif best_texts[qid]:
            score -= 1.0
        next_is_tied = position + 1 < len(ordered) and null_odds[ordered[position + 1]] == null_odds[qid]
        if not next_is_tied and score > best_score:
            best_score = score
            best_thresh = float(null_odds[qid])
    return 100.0 * best_score / max(len(ids), 1), best_thresh


def best_threshold(
    examples: Sequence[SquadExample], best_texts: Mapping[str, str], null_odds: Mapping[str, float]
) -> float:
    """The no-answer threshold maximising EXACT on these questions (official find_best_thresh sweep)."""
    exact, _ = _raw_scores(examples, best_texts)
    return _threshold_sweep(examples, best_texts, null_odds, exact)[1]


def best_f1_threshold(
    examples: Sequence[SquadExample], best_texts: Mapping[str, str], null_odds: Mapping[str, float]
) -> float:
    """The no-answer threshold maximising F1 on these questions (same sweep, F1 per question)."""
    _, f1 = _raw_scores(examples, best_texts)
    return _threshold_sweep(examples, best_texts, null_odds, f1)[1]


def evaluate_predictions(
    examples: Sequence[SquadExample],
    best_texts: Mapping[str, str],
    null_odds: Mapping[str, float],
    na_threshold: float | None,
) -> dict[str, Any]:
    """Metrics at a no-answer threshold: chosen here (max exact) when None, else applied unchanged.

    Also reports exact/F1 at threshold 0 (exact_at_0, f1_at_0), the F1-maximising threshold of these
    questions (best_f1_thresh, with best_f1), HasAns scores when always answering, and how many questions
    get an answer at the threshold (`answer_rates`: answered, answer_rate, HasAns_/NoAns_ ones, no_answer_exact).
    """
    exact_per_question, f1_per_question = _raw_scores(examples, best_texts)
    best_exact, exact_thresh = _threshold_sweep(examples, best_texts, null_odds, exact_per_question)
    best_f1, f1_thresh = _threshold_sweep(examples, best_texts, null_odds, f1_per_question)
    chosen = na_threshold is None
    threshold = exact_thresh if chosen else float(na_threshold)
    predictions = apply_threshold(best_texts, null_odds, threshold)
    metrics = squad_v2_scores(examples, predictions)
    metrics.update(answer_rates(examples, predictions))  # what the model does deployed at this threshold
    at_zero = squad_v2_scores(examples, apply_threshold(best_texts, null_odds, 0.0))
    always_answer = squad_v2_scores(examples, dict(best_texts))
    metrics.update(
        {
            "na_threshold": threshold,
            "na_threshold_chosen_here": chosen,
            "exact_at_0": at_zero["exact"],
            "f1_at_0": at_zero["f1"],
            "best_exact": best_exact,
            "best_exact_thresh": exact_thresh,
            "best_f1": best_f1,
            "best_f1_thresh": f1_thresh,
        }
    )
    if "HasAns_total" in always_answer:
        metrics["HasAns_exact_always_answer"] = always_answer["HasAns_exact"]
        metrics["HasAns_f1_always_answer"] = always_answer["HasAns_f1"]
        metrics["HasAns_exact_always_answer_se"] = always_answer["HasAns_exact_se"]
        metrics["HasAns_f1_always_answer_se"] = always_answer["HasAns_f1_se"]
    return metrics
