"""What a student does deployed: how many questions it answers at its no-answer threshold, and a flag in words.

A student is scored at the no-answer threshold chosen for it on validation (scoring.best_threshold); a
threshold above most null odds answers almost nothing, and its exact then sits on the score of answering
"" everywhere (the no-answer exact: the unanswerable share). `deployed` gathers, for one student, the
threshold, exact / F1, HasAns and NoAns exact, and the share of all questions and of the answerable ones
it answers, and flags one that abstains (`abstains`): it answers fewer than ABSTAIN_SHARE % of the
questions, or its exact equals the no-answer exact within NO_ANSWER_ROUNDING (as good as abstaining
everywhere). `statement` says it in words a user reads, e.g. "answers 0 of 786 answerable questions at
its threshold: deployed, it abstains everywhere; its exact is the no-answer score".

Where the counts come from (`source`): evaluations since scoring.answer_rates record them
(`answered`, `HasAns_answered`, ...: "recorded"). Older records lack them; then they are derived as far as
the records allow: an unanswerable question scores exact 1 only without an answer, so NoAns_exact gives
how many of those were answered; an answerable question scored above 0 was answered, and with the run's
per_question.json one whose always-answer F1 is above 0 but scores 0 at the threshold was not, which
bounds the answerable ones answered ("at least" / "at most" where the bounds differ); without any of it
the rate is "not recorded".

Must not know: models, runs, sweeps, files (the caller passes a student's metrics and per-question scores).

Example (CPU, instant):
    python -c "from tune_distill.deployment import deployed; print(deployed({'exact': 55.44, 'f1': 55.44, \
'HasAns_exact': 0.0, 'HasAns_f1': 0.0, 'NoAns_exact': 100.0, 'HasAns_total': 786, 'NoAns_total': 978, \
'na_threshold': -1.97})['statement'])"
"""

from __future__ import annotations

import math
from typing import Any, Mapping

ABSTAIN_SHARE = 5.0  # flag a student answering fewer than this % of all questions at its threshold
NO_ANSWER_ROUNDING = 0.005  # an exact this close to the no-answer exact (equal at two decimals) is that score
FIGURES = ("na_threshold", "exact", "f1", "HasAns_exact", "NoAns_exact")
RULE = (f"a student abstains when it answers fewer than {ABSTAIN_SHARE:g}% of the questions at its no-answer "
        f"threshold, or when its exact is the no-answer exact (answering \"\" everywhere) within "
        f"{NO_ANSWER_ROUNDING:g}")


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        else None


def _figure(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def answered_counts(metrics: Mapping[str, Any],
                    per_question: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, Any]:
    """How many answerable and unanswerable questions a student answers at its threshold: exact counts (low ==
    high) where recorded, else the bounds its records allow (see the module docstring), with `source`."""
    has_total, no_total = _count(metrics.get("HasAns_total")), _count(metrics.get("NoAns_total"))
    if _count(metrics.get("answered")) is not None:
        has = _count(metrics.get("HasAns_answered")) or 0
        no = _count(metrics.get("NoAns_answered")) or 0
        return {"source": "recorded", "HasAns": (has, has), "NoAns": (no, no), "HasAns_total": has_total or 0,
                "NoAns_total": no_total or 0}
    no_exact, has_exact = _figure(metrics.get("NoAns_exact")), _figure(metrics.get("HasAns_exact"))
    if has_total is None or no_total is None or (no_total and no_exact is None) or (has_total and has_exact is None):
        return {"source": "not recorded"}
    no = no_total - round((no_exact or 0.0) * no_total / 100) if no_total else 0
    low = round((has_exact or 0.0) * has_total / 100)  # an exact match needs an answer
    if low == 0 and (_figure(metrics.get("HasAns_f1")) or 0.0) > 0:
        low = 1
    high, source = has_total, "derived from metrics"
    f1, always = (per_question or {}).get("HasAns_f1"), (per_question or {}).get("HasAns_f1_always_answer")
    if f1 and always and len(f1) == has_total:
        low = max(low, sum(score > 0 for score in f1.values()))
        high = has_total - sum(always.get(qid, 0.0) > 0 and score == 0 for qid, score in f1.items())
        source = "derived from per_question.json"
    return {"source": source, "HasAns": (low, high), "NoAns": (no, no), "HasAns_total": has_total,
            "NoAns_total": no_total}


def deployed(metrics: Mapping[str, Any], per_question: Mapping[str, Mapping[str, float]] | None = None, *,
             trial_id: str = "") -> dict[str, Any]:
    """One student's figures at its threshold (FIGURES), answer counts and rates, the no-answer exact, whether
    it abstains, and a `statement` in words."""
    result: dict[str, Any] = {name: _figure(metrics.get(name)) for name in FIGURES}
    result["HasAns_f1"] = _figure(metrics.get("HasAns_f1"))
    counts = answered_counts(metrics, per_question)
    result["source"] = counts["source"]
    if counts["source"] == "not recorded":
        result.update(abstains=None, statement=f"{_who(trial_id)}: its answer rate was not recorded (no HasAns / "
                                                "NoAns totals and exact in its metrics)")
        return result
    has_total, no_total = counts["HasAns_total"], counts["NoAns_total"]
    total = has_total + no_total
    (has_low, has_high), (no_answered, _) = counts["HasAns"], counts["NoAns"]
    exact_known = has_low == has_high
    result.update({
        "questions": total, "HasAns_total": has_total, "NoAns_total": no_total,
        "answered": has_low + no_answered if exact_known else None,
        "answer_rate": 100.0 * (has_low + no_answered) / total if exact_known and total else None,
        "HasAns_answered": has_low if exact_known else None,
        "HasAns_answer_rate": 100.0 * has_low / has_total if exact_known and has_total else None,
        "HasAns_answered_at_least": has_low, "HasAns_answered_at_most": has_high,
        "NoAns_answered": no_answered, "NoAns_answer_rate": 100.0 * no_answered / no_total if no_total else None,
        "no_answer_exact": _figure(metrics.get("no_answer_exact")) or (100.0 * no_total / total if total else 0.0)})
    few = total > 0 and 100.0 * (has_high + no_answered) / total < ABSTAIN_SHARE
    floor = result["exact"] is not None and abs(result["exact"] - result["no_answer_exact"]) <= NO_ANSWER_ROUNDING
    result["abstains"] = bool(few or floor)
    reasons = ((f"answers fewer than {ABSTAIN_SHARE:g}% of the questions", few),
               ("its exact is the no-answer exact", floor))
    result["abstains_because"] = [why for why, holds in reasons if holds]
    result["statement"] = _statement(result, trial_id, few, floor)
    return result


def _who(trial_id: str) -> str:
    return f"trial {trial_id}" if trial_id else "the student"


def _statement(figures: Mapping[str, Any], trial_id: str, few: bool, floor: bool) -> str:
    """'trial X answers 0 of 786 answerable questions (0.0%) and 0 of 978 unanswerable at its threshold -1.97:
    deployed, it abstains everywhere; its exact 55.44 is the no-answer score (55.44)'."""
    has_total, no_total = figures["HasAns_total"], figures["NoAns_total"]
    low, high = figures["HasAns_answered_at_least"], figures["HasAns_answered_at_most"]
    if low == high:
        answerable = f"{low:,} of {has_total:,} answerable questions ({100.0 * low / max(has_total, 1):.1f}%)"
    elif high == has_total:
        right = (f"at least {low:,}: those it gets right" if low else
                 f"none of them even partly right: HasAns F1 {figures.get('HasAns_f1') or 0.0:.2f}")
        answerable = f"an unrecorded number of the {has_total:,} answerable questions ({right})"
    else:
        answerable = f"between {low:,} and {high:,} of {has_total:,} answerable questions"
    threshold = figures["na_threshold"]
    text = (f"{_who(trial_id)} answers {answerable} and {figures['NoAns_answered']:,} of {no_total:,} unanswerable "
            f"at its threshold" + (f" {threshold:.2f}" if threshold is not None else ""))
    if figures["source"] != "recorded":
        text += f" ({figures['source']})"
    exact = figures["exact"]
    scores = (f"exact {exact:.2f}, F1 {figures['f1'] or 0.0:.2f}, HasAns exact {figures['HasAns_exact'] or 0.0:.2f}, "
              f"NoAns exact {figures['NoAns_exact'] or 0.0:.2f}") if exact is not None else "no exact recorded"
    if not (few or floor):
        return f"{text}; {scores}"
    nothing = high == 0 and figures["NoAns_answered"] == 0
    deployed_words = ("deployed, it abstains everywhere" if nothing else
                      f"deployed, it abstains almost everywhere (fewer than {ABSTAIN_SHARE:g}% of questions answered)"
                      if few else "deployed, it does no better than abstaining everywhere")
    if floor:
        deployed_words += f"; its exact {exact:.2f} is the no-answer score ({figures['no_answer_exact']:.2f})"
    return f"{text}: {deployed_words}; {scores}"


def frontier_statement(by_trial: Mapping[str, Mapping[str, Any]]) -> str:
    """One sentence over the frontier's students: which abstain (their statements), else that none does."""
    flagged = [f"{figures['statement']}" for figures in by_trial.values() if figures.get("abstains")]
    unknown = [trial for trial, figures in by_trial.items() if figures.get("abstains") is None]
    if flagged:
        text = (f"{len(flagged)} of the {len(by_trial)} students shown abstain at their threshold: "
                + "; ".join(flagged))
    else:
        text = f"none of the {len(by_trial) - len(unknown)} students with answer counts abstains at its threshold"
    if unknown:
        text += f" (answer rate not recorded for trial(s) {', '.join(unknown)})"
    return text
