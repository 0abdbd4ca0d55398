"""The findings corrected for the choice: each claim's figure on the sweep's held-apart articles beside validation.

A sweep with `held_apart.articles` (sweep/held_apart.py) chooses its students on the select part of the
validation file; confirm.py's `confirm_held_apart` re-scores the students the findings name (the baseline, the
Pareto set and the students of the claims "smaller at no loss" and "more accurate at about the same size") on
the held-apart articles into `<sweep>/held-apart/confirm.json`. This module reads that file as data (a sweep
folder may come from elsewhere: `read_confirmation` checks every field it uses, a bad file is one line naming
the file and the field) and gives the report (report.py) its `held_apart` section and, for each claim, the
figure on the held-apart articles next to the validation figure, judged by the same rule (claims.py: no loss,
gain >= -NO_LOSS_ERRORS judging errors; more accurate, gain > GAIN_ERRORS judging errors), e.g.
"on validation +0.30 +/- 1.45 (by paragraph); on 2 held-apart articles (130 questions) -0.50 +/- 1.80 (by
paragraph): holds". A claim's student that the file does not hold (the sweep went on since) says how to rerun.

What it must not know: models, scoring, Ray, how confirm.json was measured, plots.

Example (CPU, instant, on a sweep folder confirmed on its held-apart articles):
    python -c "from tune_distill.held_apart_report import read_confirmation as r; \
print(r('sweeps/smoke/held-apart/confirm.json')['questions'])"
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from tune_distill.claims import GAIN_ERRORS, NO_LOSS_ERRORS
from tune_distill.files import read_json_object

HELD_APART_DIR = "held-apart"  # <sweep>/held-apart/: confirm.json, confirm.csv, confirm.png
CONFIRM_FILE = "confirm.json"
# The claims whose student is re-scored on the held-apart articles, and each one's rule there.
CLAIM_RULES = {"smaller_at_no_loss": ("no loss", lambda gain, se: gain >= -NO_LOSS_ERRORS * se),
               "more_accurate_at_about_the_same_size": ("more accurate", lambda gain, se: gain > GAIN_ERRORS * se)}
SHARE_CLAIM = "share_smaller_and_at_least_as_accurate"


def rerun_command(sweep: str | Path) -> str:
    return f"tune-distill confirm --sweep {sweep} --held-apart"


def claim_trials(summary: Mapping[str, Any]) -> list[str]:
    """The trial ids the summary's findings name for the claims of CLAIM_RULES (the students to confirm beside the
    baseline and the Pareto set)."""
    findings = summary.get("findings") or {}
    named = [(findings.get(name) or {}).get("trial_id") for name in CLAIM_RULES]
    return list(dict.fromkeys(str(trial) for trial in named if isinstance(trial, (str, int))))


def _shown(value: Any) -> str:
    return json.dumps(value, default=str)[:60]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_confirmation(path: str | Path, error: type[Exception] = ValueError) -> dict[str, Any]:
    """confirm.json (confirm.py's) as this module reads it, checked: `questions` an integer, `accuracy` and `data`
    strings, `trials` a list of objects with a trial_id and role, `confirmation` an object whose `baseline` is null,
    an id or an object with a trial_id, whose `by_trial` maps ids to objects with numeric gain and judging_se, a
    judged_by string and an integer questions, whose `errors` is null or an object and `claims` an object. A file
    that breaks this is one line of `error` naming the file and the field."""
    result = read_json_object(path, "confirm.json", error)
    problems = []
    if isinstance(result.get("questions"), bool) or not isinstance(result.get("questions"), int):
        problems.append(f"questions: expected an integer, got {_shown(result.get('questions'))}")
    problems += [f"{key}: expected a string, got {_shown(result.get(key))}" for key in ("accuracy", "data")
                 if not isinstance(result.get(key), str)]
    trials = result.get("trials")
    if not isinstance(trials, list) or not all(isinstance(row, dict) and isinstance(row.get("trial_id"), (str, int))
                                               and isinstance(row.get("role"), str) for row in trials):
        problems.append(f"trials: expected a list of objects with trial_id and role, got {_shown(trials)}")
    split = result.get("confirmation")
    if not isinstance(split, dict):
        problems.append(f"confirmation: expected an object, got {_shown(split)}")
    else:
        problems += _split_problems(split)
    if problems:
        raise error(f"{path}: {problems[0]}")
    return result


def _split_problems(split: Mapping[str, Any]) -> list[str]:
    """What is wrong with confirm.json's `confirmation` block (empty: nothing)."""
    problems = []
    baseline = split.get("baseline")
    if baseline is not None and not isinstance(baseline, (str, int)) and not (
            isinstance(baseline, dict) and isinstance(baseline.get("trial_id"), (str, int))):
        problems.append(f"confirmation.baseline: expected null, a trial id or an object with a trial_id, got "
                        f"{_shown(baseline)}")
    by_trial = split.get("by_trial")
    if not isinstance(by_trial, dict):
        problems.append(f"confirmation.by_trial: expected an object, got {_shown(by_trial)}")
        by_trial = {}
    for trial, figures in by_trial.items():
        where = f"confirmation.by_trial.{trial}"
        if not isinstance(figures, dict):
            problems.append(f"{where}: expected an object, got {_shown(figures)}")
            continue
        problems += [f"{where}.{key}: expected a number, got {_shown(figures.get(key))}"
                     for key in ("gain", "judging_se") if not _number(figures.get(key))]
        if not isinstance(figures.get("judged_by"), str):
            problems.append(f"{where}.judged_by: expected a string, got {_shown(figures.get('judged_by'))}")
        if isinstance(figures.get("questions"), bool) or not isinstance(figures.get("questions"), int):
            problems.append(f"{where}.questions: expected an integer, got {_shown(figures.get('questions'))}")
    if split.get("errors") is not None and not isinstance(split.get("errors"), dict):
        problems.append(f"confirmation.errors: expected null or an object, got {_shown(split.get('errors'))}")
    if not isinstance(split.get("claims"), dict):
        problems.append(f"confirmation.claims: expected an object, got {_shown(split.get('claims'))}")
    return problems


def load(sweep: str | Path, settings: Mapping[str, Any], error: type[Exception] = ValueError) -> dict | None:
    """What the report needs of a sweep folder's held-apart confirmation: {path, confirmation (read_confirmation,
    or None when the sweep keeps articles apart but has not confirmed them yet), record (sweep.json's held_apart)};
    None for a sweep without either."""
    path = Path(sweep) / HELD_APART_DIR / CONFIRM_FILE
    record = settings.get("held_apart")
    if not path.is_file() and not record:
        return None
    return {"path": str(path), "sweep": str(sweep), "record": record if isinstance(record, dict) else None,
            "confirmation": read_confirmation(path, error) if path.is_file() else None}


def _level(judged_by: Any) -> str:
    return "per question" if judged_by in ("question", None) else f"by {judged_by}"


def _articles(held: Mapping[str, Any]) -> int | None:
    """How many articles were held apart: the confirmation's grouping, else sweep.json's record."""
    errors = (held["confirmation"]["confirmation"].get("errors") or {}) if held.get("confirmation") else {}
    if isinstance(errors.get("articles"), int):
        return errors["articles"]
    titles = ((held.get("record") or {}).get("held_apart") or {}).get("titles")
    return len(titles) if isinstance(titles, list) else None


def section(held: Mapping[str, Any], summary: Mapping[str, Any], accuracy: str) -> dict[str, Any]:
    """summary.json's `held_apart`: the split, the baseline and every confirmed student on the held-apart articles,
    and each claim's student there against validation (`claims`, also carried by the findings: with_figures)."""
    confirmation = held.get("confirmation")
    result: dict[str, Any] = {"file": held["path"], "articles": _articles(held)}
    if confirmation is None:
        result["statement"] = (f"the held-apart articles are not confirmed yet: run {rerun_command(held['sweep'])}")
        return result
    split = confirmation["confirmation"]
    base = (summary.get("baseline") or {}).get("trial_id")
    confirmed_base = split.get("baseline")
    confirmed_base = confirmed_base.get("trial_id") if isinstance(confirmed_base, dict) else confirmed_base
    errors = split.get("errors") or {}
    result.update(questions=confirmation["questions"], data=confirmation["data"], judged_by=errors.get("judged_by"),
                  why=errors.get("why"), warning=errors.get("warning"),
                  students=[{key: row.get(key) for key in ("trial_id", "role", f"validation_{accuracy}",
                                                           f"confirmation_{accuracy}", "confirmation_gain",
                                                           "confirmation_judging_se")}
                            for row in confirmation["trials"]],
                  deployment=((confirmation.get("deployment") or {}).get("confirmation") or {}).get("statement"))
    if str(confirmed_base) != str(base):
        result["claims"] = {}
        result["statement"] = (f"{held['path']} confirmed baseline {confirmed_base}, the report's is {base}: rerun "
                               f"{rerun_command(held['sweep'])}")
        return result
    result["claims"] = {name: _claim(name, (summary.get("findings") or {}).get(name) or {}, summary, accuracy, split,
                                     result, held) for name in CLAIM_RULES}
    share = (split.get("claims") or {}).get(SHARE_CLAIM) or {}
    result["claims"][SHARE_CLAIM] = {"value": share.get("value"), "statement": (
        f"on the held-apart articles, over the {len(confirmation['trials'])} confirmed students only (not every "
        f"trial): {share.get('statement', 'not judged')}")}
    result["statement"] = (f"{result['articles']} held-apart article(s), {result['questions']} questions, never seen "
                           f"by the choice; judged {_level(result['judged_by'])}")
    return result


def _claim(name: str, finding: Mapping[str, Any], summary: Mapping[str, Any], accuracy: str,
           split: Mapping[str, Any], result: Mapping[str, Any], held: Mapping[str, Any]) -> dict[str, Any]:
    """One claim's student on validation (the finding's figures) and on the held-apart articles, with the verdict
    there by the claim's rule."""
    trial = finding.get("trial_id")
    if trial is None:
        return {"statement": "no student named on validation"}
    rule, holds = CLAIM_RULES[name]
    validation = _validation_figures(finding, summary.get("baseline") or {}, accuracy)
    figures = (split.get("by_trial") or {}).get(str(trial))
    if figures is None:
        return {"trial_id": trial, "validation": validation, "statement": (
            f"trial {trial} was not confirmed on the held-apart articles (the sweep went on since?): rerun "
            f"{rerun_command(held['sweep'])}")}
    there = {"gain": figures["gain"], "judging_se": figures["judging_se"], "judged_by": figures["judged_by"],
             "questions": figures["questions"]}
    verdict = holds(there["gain"], there["judging_se"])
    return {"trial_id": trial, "rule": rule, "validation": validation, "held_apart": there, "holds": verdict,
            "statement": (f"on validation {_figure(validation)}; on {result['articles']} held-apart article(s) "
                          f"({there['questions']} questions) {_figure(there)}: "
                          f"{'holds' if verdict else 'does not hold'}")}


def _validation_figures(finding: Mapping[str, Any], base: Mapping[str, Any], accuracy: str) -> dict[str, Any]:
    """The claim's gain on validation with its judging error: the paired judgement where the findings have one,
    else the plain difference of the figures (no error)."""
    if _number(finding.get("gain")):
        return {"gain": finding["gain"], "judging_se": finding.get("judging_se"), "judged_by": finding.get("judged_by")}
    gain = finding.get("gain_over_baseline")
    if not _number(gain) and _number(finding.get(accuracy)) and _number(base.get(accuracy)):
        gain = finding[accuracy] - base[accuracy]
    return {"gain": gain if _number(gain) else None, "judging_se": None, "judged_by": None}


def _figure(figures: Mapping[str, Any]) -> str:
    """'+0.30 +/- 1.45 (by paragraph)', or '+0.30 (no paired error)'."""
    if not _number(figures.get("gain")):
        return "not measured"
    if not _number(figures.get("judging_se")):
        return f"{figures['gain']:+.2f} (no paired error)"
    return f"{figures['gain']:+.2f} +/- {figures['judging_se']:.2f} ({_level(figures.get('judged_by'))})"


def with_figures(findings: Mapping[str, Any], held: Mapping[str, Any]) -> dict[str, Any]:
    """The findings with each claim's held-apart figure beside its validation figure (`held_apart`), and a
    `held_apart` finding saying what was confirmed. A claim judged there is stated corrected for the choice first
    (its verdict on the held-apart articles, which did not choose the student: what new articles can test), then
    how it was chosen on validation; `held_apart_holds` is that verdict, `holds` stays validation's."""
    result = {name: dict(value) if isinstance(value, dict) else value for name, value in findings.items()}
    for name, claim in (held.get("claims") or {}).items():
        if name in result and isinstance(result[name], dict):
            result[name]["held_apart"] = claim
            chosen = result[name].get("statement", "")
            if "holds" in claim:
                result[name]["held_apart_holds"] = claim["holds"]
                verdict = "holds" if claim["holds"] else "does not hold"
                result[name]["statement"] = (f"corrected for the choice, {verdict} on the held-apart articles "
                                             f"({claim['statement']}); chosen on validation: {chosen}")
            else:
                result[name]["statement"] = f"{chosen}; {claim['statement']}"
    result["held_apart"] = {"statement": held.get("statement", ""), "file": held.get("file")}
    return result
