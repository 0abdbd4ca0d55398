"""The sweep's claims against the baseline, each judged with a paired standard error (by paragraph or article).

Every student of a sweep is scored on the same questions, so its gain over the baseline has a paired
standard error (scoring.paired_difference: the spread of the per-question differences / sqrt(n)),
far below the independent-samples figure when both models find the same questions hard. A run
folder keeps the per-question scores of its last evaluation in `per_question.json`
(`write_per_question`, written by run.py at every evaluation, so a trial stopped early keeps those of
the result it last reported). `paired_claims` states the three claims of the reference experiment
and says for each whether it holds within the judging error (below):

- smaller at no loss: the smallest Pareto student smaller than the baseline whose gain is at least
  minus one standard error (not less accurate by more than one error);
- more accurate at about the same size: the best student within the baseline's size + 5% whose gain
  exceeds two standard errors;
- share smaller and at least as accurate: the share of the other students smaller than the baseline
  with a gain of at least minus one standard error.

Which error judges them. Questions that share a paragraph (or an article) are not independent: a gain measured
per question moves far more from one set of articles to another than its per-question error says. So beside
the per-question paired error each gain gets cluster-robust ones (scoring.clustered_difference) with the
questions grouped by paragraph and by article, read from the data file the scores were measured on
(`read_grouping`: articles -> paragraphs -> qas), and the claims are judged by one of them (`judging_level`):
by article where the split has at least ARTICLE_MIN articles, else by paragraph where it has at least
PARAGRAPH_MIN paragraphs; the judging error is never below the per-question one. Where the grouping is unknown
(no data file named, the file missing, ids not in it) or the split too small, they fall back to the per-
question error and say so: `errors.warning` in the result, the statements ("judged per question") and a logged
warning, never silently. Every statement names the error that judged it.

Students without per-question scores (run folders written before they were kept, or lost) are listed
as `unpaired` and left out of the claims. `paired_summary` reads them for a report (report.py), grouped by the
validation file the baseline's run folder names (its config.yaml); confirm.py gives the scores it measured
on another split and that split's grouping.

Must not know: models, training, Ray, how the scores were measured, plots.

Example (CPU, seconds, on a sweep folder whose runs kept per_question.json):
    python -c "import json; from tune_distill import claims, records; s = json.load(open('sweeps/cpu/summary.json')); \
print(claims.paired_summary(records.read_trials('sweeps/cpu'), s, 'exact', 'parameters')['claims'])"
    python -c "from tune_distill.claims import read_grouping, judging_level as j; g = \
read_grouping('../shared/data/squad2/val.json'); print(j(g, sorted(g.paragraph)))"
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from tune_distill.config import ConfigError, load_config
from tune_distill.data import load_examples
from tune_distill.files import write_json
from tune_distill.scoring import clustered_difference, paired_difference

log = logging.getLogger(__name__)

PER_QUESTION_FILE = "per_question.json"
SIZE_SLACK = 0.05  # "about the same size": within the baseline's size + 5% (as report.SIZE_SLACK)
NO_LOSS_ERRORS = 1.0  # "no loss": the gain is at least minus this many standard errors (of the judging level)
GAIN_ERRORS = 2.0  # "more accurate": the gain exceeds this many standard errors (of the judging level)
# The level whose error judges the claims: by article where the questions come from at least ARTICLE_MIN articles
# (a cluster-robust error needs enough groups to estimate a spread from: with 5 articles it rests on 4 degrees of
# freedom), else by paragraph where they come from at least PARAGRAPH_MIN paragraphs, else per question (warned).
ARTICLE_MIN = 20
PARAGRAPH_MIN = 20
BOOTSTRAP = 1000  # resamples of the paired bootstrap interval (95%)
# Sizes every claim reports beside the sweep's size objective, when the rows carry them: the total, and
# the non-embedding parameters (what pruning changes and compute scales with).
SIZES = ("parameters", "non_embedding_parameters")
# The claims `paired_claims` judges, in the order it states them.
CLAIMS = ("smaller_at_no_loss", "more_accurate_at_about_the_same_size", "share_smaller_and_at_least_as_accurate")


def write_per_question(run_dir: str | Path, scores: Mapping[str, Mapping[str, float]], **extra: Any) -> Path:
    """Write `scores` (metric -> question id -> score in [0, 1]) and `extra` (step, threshold) to a run folder."""
    ids = sorted({qid for values in scores.values() for qid in values})
    payload = {**extra, "ids": ids,
               "scores": {metric: [round(values[qid], 6) if qid in values else None for qid in ids]
                          for metric, values in scores.items()}}
    return write_json(Path(run_dir) / PER_QUESTION_FILE, payload, indent=None)


def read_per_question(run_dir: str | Path | None) -> dict[str, dict[str, float]] | None:
    """metric -> question id -> score from a run folder's per_question.json; None when it has none."""
    if not run_dir:
        return None
    path = Path(run_dir) / PER_QUESTION_FILE
    if not path.is_file():
        return None
    payload = json.loads(path.read_text())
    ids = payload["ids"]
    return {metric: {qid: value for qid, value in zip(ids, values) if value is not None}
            for metric, values in payload["scores"].items()}


@dataclasses.dataclass(frozen=True)
class Grouping:
    """The paragraph and the article of every question of a split (question id -> a key naming each), read from
    its data file (`source`); `missing` says why there is none (then both mappings are empty)."""

    source: str
    paragraph: Mapping[str, str]
    article: Mapping[str, str]
    missing: str = ""

    @classmethod
    def unavailable(cls, source: str, why: str) -> "Grouping":
        return cls(str(source), {}, {}, why)


def read_grouping(data_file: str | Path | None) -> Grouping:
    """Which paragraph and article each question of a SQuAD 2.0 file belongs to (articles -> paragraphs -> qas).

    A paragraph is an article's title with the paragraph's context (data.load_examples checks every field and
    names the question of a bad one); an article is its title. No file named, a hub split or a missing file give
    a Grouping whose `missing` says so (the claims then fall back to per-question errors and say why).
    """
    if not data_file:
        return Grouping.unavailable("", "no data file named for the scores")
    if str(data_file).startswith("hub:"):
        return Grouping.unavailable(str(data_file), f"{data_file} is a hub split (not read for grouping)")
    if not Path(data_file).is_file():
        return Grouping.unavailable(str(data_file), f"the data file {data_file} is not here")
    paragraph: dict[str, str] = {}
    article: dict[str, str] = {}
    numbers: dict[tuple[str, str], int] = {}  # (title, context) -> the paragraph's number in its article
    per_title: dict[str, int] = {}
    for example in load_examples(str(data_file)):
        key = (example.title, example.context)
        if key not in numbers:
            per_title[example.title] = numbers[key] = per_title.get(example.title, 0) + 1
        paragraph[example.id] = f"{example.title} / paragraph {numbers[key]}"
        article[example.id] = example.title
    return Grouping(str(data_file), paragraph, article)


def judging_level(grouping: Grouping | None, ids: Sequence[str], *, article_min: int | None = None,
                  paragraph_min: int | None = None) -> tuple[str, str]:
    """('article', 'paragraph' or 'question', why): the level whose error judges claims over the questions `ids`.

    By article where they come from at least `article_min` (default ARTICLE_MIN) articles, else by paragraph
    where they come from at least `paragraph_min` (default PARAGRAPH_MIN) paragraphs, else per question; per
    question too where the grouping is unknown or does not cover every id (the why then says so, for the warning)."""
    article_min = ARTICLE_MIN if article_min is None else article_min
    paragraph_min = PARAGRAPH_MIN if paragraph_min is None else paragraph_min
    if grouping is None:
        return "question", "no grouping of the questions by paragraph was given"
    if grouping.missing:
        return "question", grouping.missing
    unknown = [qid for qid in ids if qid not in grouping.paragraph]
    if unknown:
        return "question", (f"{len(unknown)} of the {len(ids)} scored questions are not in {grouping.source} "
                            f"(e.g. {unknown[0]}): scores and data file disagree")
    articles = len({grouping.article[qid] for qid in ids})
    paragraphs = len({grouping.paragraph[qid] for qid in ids})
    if articles >= article_min:
        return "article", f"{articles} articles (at least {article_min}: judged by article)"
    if paragraphs >= paragraph_min:
        return "paragraph", (f"{paragraphs} paragraphs in {articles} article(s) (fewer than {article_min} articles: "
                             "judged by paragraph)")
    return "question", (f"only {paragraphs} paragraphs in {articles} article(s) (fewer than {paragraph_min}): too "
                        "few groups for a cluster-robust error")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def paired_claims(rows: Sequence[Mapping[str, Any]], accuracy: str, size: str, *, bootstrap: int = BOOTSTRAP,
                  slack: float = SIZE_SLACK, grouping: Grouping | None = None) -> dict[str, Any]:
    """The claims of `rows` against their baseline row, with paired errors per question and by paragraph / article.

    Each row: trial_id, baseline (bool), pareto (bool), `accuracy` and `size` values, and `scores`
    (metric -> id -> score, or None). `grouping`: the paragraph and article of each question (read_grouping of
    the split the scores were measured on); without it the claims are judged per question, and say so.
    Returns {metric, size, rule, errors, baseline, by_trial, unpaired, claims}.
    """
    rows = [row for row in rows if _number(row.get(accuracy)) is not None and _number(row.get(size)) is not None]
    base = next((row for row in rows if row.get("baseline")), None)
    result: dict[str, Any] = {"metric": accuracy, "size": size}
    base_scores = (base.get("scores") or {}).get(accuracy) if base else None
    if base is None or base_scores is None:
        reason = "no baseline" if base is None else f"the baseline has no per-question {accuracy} scores"
        result.update(rule=_rule(size, slack, "question"), errors=None, baseline=base["trial_id"] if base else None,
                      by_trial={}, unpaired=[row["trial_id"] for row in rows if row is not base],
                      claims={name: {"holds": False, "statement": f"not judged: {reason}"} for name in CLAIMS})
        return result
    errors = _errors(grouping, sorted(base_scores))
    paired, unpaired = _paired_differences(rows, base, base_scores, accuracy, size, bootstrap, grouping,
                                           errors["judged_by"])
    result.update(rule=_rule(size, slack, errors["judged_by"]), errors=errors,
                  baseline={"trial_id": base["trial_id"], accuracy: float(base[accuracy]), size: float(base[size]),
                            **{name: base[name] for name in SIZES if name != size and _number(base.get(name))},
                            "questions": len(base_scores)},
                  by_trial={row["trial_id"]: difference for row, difference in paired}, unpaired=unpaired)
    words = _Words(base, accuracy, size)
    result["claims"] = {"smaller_at_no_loss": _smaller_at_no_loss(paired, words),
                        "more_accurate_at_about_the_same_size": _more_accurate(paired, words, slack),
                        "share_smaller_and_at_least_as_accurate": _share_smaller(paired, words)}
    return result


def _rule(size: str, slack: float, level: str) -> str:
    return (f"no loss: gain >= -{NO_LOSS_ERRORS:g} standard error; more accurate: gain > {GAIN_ERRORS:g} standard "
            f"errors; the error {_LEVEL_WORDS[level]} (by article with at least {ARTICLE_MIN} articles, else by "
            f"paragraph with at least {PARAGRAPH_MIN} paragraphs, else per question; never below the per-question "
            f"error); about the same size: within "
            f"the baseline's {size} + {100 * slack:.0f}%")


_LEVEL_WORDS = {"question": "per question (paired)", "paragraph": "by paragraph (paired, cluster-robust)",
                "article": "by article (paired, cluster-robust)"}


def _errors(grouping: Grouping | None, ids: Sequence[str]) -> dict[str, Any]:
    """Which error judges the claims over the baseline's questions `ids`, why, and a warning where that is the
    per-question one for want of a grouping (also logged)."""
    level, why = judging_level(grouping, ids)
    covered = grouping is not None and not grouping.missing and all(qid in grouping.paragraph for qid in ids)
    result: dict[str, Any] = {
        "judged_by": level, "why": why, "grouping": grouping.source if grouping else None,
        "articles": len({grouping.article[qid] for qid in ids}) if covered else None,
        "paragraphs": len({grouping.paragraph[qid] for qid in ids}) if covered else None, "warning": None}
    if level == "question":
        result["warning"] = (f"claims judged with per-question errors, which understate how far a gain moves on new "
                             f"articles: {why}")
        log.warning("claims: %s", result["warning"])
    return result


Paired = list[tuple[Mapping[str, Any], dict[str, Any]]]  # (row, its paired difference from the baseline)


def _paired_differences(rows: Sequence[Mapping[str, Any]], base: Mapping[str, Any], base_scores: Mapping[str, float],
                        accuracy: str, size: str, bootstrap: int, grouping: Grouping | None,
                        level: str) -> tuple[Paired, dict[str, str]]:
    """Each other row's paired difference from the baseline (gain, its errors, how much smaller), and the rows
    that cannot be paired with why."""
    base_size = float(base[size])
    paired: Paired = []
    unpaired: dict[str, str] = {}
    for row in rows:
        if row is base:
            continue
        scores = (row.get("scores") or {}).get(accuracy)
        if scores is None:
            unpaired[row["trial_id"]] = f"no per-question {accuracy} scores"
            continue
        try:
            difference = paired_difference(scores, base_scores, bootstrap=bootstrap)
            difference.update(_clustered(scores, base_scores, grouping, level, bootstrap))
            difference["judging_se"] = _judging_se(difference)
        except ValueError as error:
            unpaired[row["trial_id"]] = str(error)
            continue
        difference.update({accuracy: float(row[accuracy]), size: float(row[size]),
                           "smaller_than_baseline_pct": 100.0 * (1.0 - float(row[size]) / base_size)})
        for name in SIZES:
            if name != size and _number(row.get(name)) and _number(base.get(name)):
                difference.update({name: float(row[name]),
                                   f"{name}_smaller_than_baseline_pct": 100.0 * (1.0 - float(row[name]) / base[name])})
        paired.append((row, difference))
    return paired, unpaired


def _clustered(scores: Mapping[str, float], base_scores: Mapping[str, float], grouping: Grouping | None, level: str,
               bootstrap: int) -> dict[str, Any]:
    """The gain's cluster-robust errors by paragraph and by article (where the grouping covers the questions),
    the level that judges it (`judged_by`), its error (`judging_se`) and, at that level, the bootstrap interval
    over whole groups (`judging_interval`; per question: the paired bootstrap's)."""
    result: dict[str, Any] = {"judged_by": level}
    if level != "question" and grouping is not None:
        for name, clusters in (("paragraph", grouping.paragraph), ("article", grouping.article)):
            clustered = clustered_difference(scores, base_scores, clusters,
                                             bootstrap=bootstrap if name == level else 0)
            result[f"gain_se_{name}"], result[f"{name}s"] = clustered["gain_se"], clustered["groups"]
            if name == level and "gain_interval" in clustered:
                result["judging_interval"] = clustered["gain_interval"]
    return result


def _judging_se(difference: Mapping[str, Any]) -> float:
    """The error that judges a claim: the judging level's, never below the per-question paired gain_se (a
    clustered estimate under it is noise in that estimate, not questions more independent than independent)."""
    level = difference.get("judged_by", "question")
    return difference["gain_se"] if level == "question" else max(difference["gain_se"], difference[f"gain_se_{level}"])


def _no_loss(difference: Mapping[str, Any]) -> bool:
    return difference["gain"] >= -NO_LOSS_ERRORS * _judging_se(difference)


@dataclasses.dataclass(frozen=True)
class _Words:
    """How a claim's statement describes a student against the baseline."""

    base: Mapping[str, Any]
    accuracy: str
    size: str

    @property
    def base_size(self) -> float:
        return float(self.base[self.size])

    def __call__(self, trial_id: str, difference: Mapping[str, Any]) -> str:
        accuracy, size, base = self.accuracy, self.size, self.base
        others = "".join(f", {name} {difference[name]:,.0f} against {base[name]:,.0f} "
                         f"({difference[f'{name}_smaller_than_baseline_pct']:+.1f}% smaller)"
                         for name in SIZES if f"{name}_smaller_than_baseline_pct" in difference)
        return (f"trial {trial_id}: {accuracy} {difference[accuracy]:.2f} against {float(base[accuracy]):.2f}, gain "
                f"{difference['gain']:+.2f} +/- {difference['gain_se']:.2f} (paired, {difference['questions']} "
                f"questions){_clustered_words(difference)}, {size} {difference[size]:,.0f} against "
                f"{self.base_size:,.0f} ({difference['smaller_than_baseline_pct']:+.1f}% smaller){others}")


def _clustered_words(difference: Mapping[str, Any]) -> str:
    """', +/- 1.60 by paragraph (174), +/- 2.41 by article (5); judged by paragraph' (or '; judged per question')."""
    errors = "".join(f", +/- {difference[f'gain_se_{name}']:.2f} by {name} ({difference[f'{name}s']} {name}s)"
                     for name in ("paragraph", "article") if f"gain_se_{name}" in difference)
    level = difference.get("judged_by", "question")
    return f"{errors}; judged {'per question' if level == 'question' else f'by {level}'}"


def _error_words(difference: Mapping[str, Any], count: float) -> str:
    """'1 standard error by paragraph' / '2 standard errors per question': the error that judged a claim."""
    level = difference.get("judged_by", "question")
    return (f"{count:g} standard error{'' if count == 1 else 's'} "
            f"{'per question' if level == 'question' else f'by {level}'}")


def _smaller_at_no_loss(paired: Paired, words: _Words) -> dict[str, Any]:
    """The smallest Pareto student smaller than the baseline within NO_LOSS_ERRORS of its accuracy."""
    size, base_size = words.size, words.base_size
    smaller_pareto = [(row, d) for row, d in paired if row.get("pareto") and d[size] < base_size]
    holding = sorted([(row, d) for row, d in smaller_pareto if _no_loss(d)], key=lambda item: (item[1][size],
                                                                                               -item[1]["gain"]))
    if holding:
        row, difference = holding[0]
        return {"trial_id": row["trial_id"], **difference, "holds": True, "statement": (
            f"holds: {words(row['trial_id'], difference)}; not less accurate by more than "
            f"{_error_words(difference, NO_LOSS_ERRORS)}")}
    closest = max(smaller_pareto, key=lambda item: item[1]["gain"] / max(item[1]["judging_se"], 1e-12), default=None)
    return {"holds": False, "statement": (
        f"does not hold: no Pareto student smaller than the baseline is within {NO_LOSS_ERRORS:g} standard error "
        "of its accuracy" + (f"; the closest is {words(closest[0]['trial_id'], closest[1])}" if closest else ""))}


def _more_accurate(paired: Paired, words: _Words, slack: float) -> dict[str, Any]:
    """The best student within the baseline's size + slack, and whether its gain exceeds GAIN_ERRORS."""
    within = [(row, d) for row, d in paired if d[words.size] <= words.base_size * (1 + slack)]
    if not within:
        return {"holds": False, "statement": (
            f"does not hold: no paired student within the baseline's size + {100 * slack:.0f}%")}
    row, difference = max(within, key=lambda item: (item[1]["gain"], -item[1][words.size]))
    holds = difference["gain"] > GAIN_ERRORS * difference["judging_se"]
    return {"trial_id": row["trial_id"], **difference, "holds": holds, "statement": (
        f"{'holds' if holds else 'does not hold'}: the best within the baseline's size + {100 * slack:.0f}% "
        f"is {words(row['trial_id'], difference)}; the gain is "
        f"{'more' if holds else 'not more'} than {_error_words(difference, GAIN_ERRORS)}")}


def _share_smaller(paired: Paired, words: _Words) -> dict[str, Any]:
    """The share of the paired students smaller than the baseline and within NO_LOSS_ERRORS of its accuracy."""
    if not paired:
        return {"value": None, "statement": "no other paired students"}
    share = sum(d[words.size] < words.base_size and _no_loss(d) for _, d in paired) / len(paired)
    return {"value": share, "trials": len(paired), "statement": (
        f"{100 * share:.0f}% of the {len(paired)} other students with per-question scores are smaller than the "
        f"baseline and at least as accurate within {_error_words(paired[0][1], NO_LOSS_ERRORS)}")}


def paired_summary(trials: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], accuracy: str, size: str, *,
                   run_dir: Callable[[Mapping[str, Any]], Any] | None = None, bootstrap: int = BOOTSTRAP,
                   grouping: Grouping | None = None) -> dict[str, Any]:
    """`paired_claims` of a sweep's finished trials (records as trials.jsonl holds them) and its report summary.

    `run_dir(record)`: the trial's run folder (default: the record's run_dir). `grouping`: default, that of the
    validation file the baseline's run folder names (`run_grouping`).
    """
    pareto = set(summary.get("pareto_trials") or ())
    base = (summary.get("baseline") or {}).get("trial_id")
    rows = []
    for record in trials:
        if record.get("status") not in ("complete", "stopped"):
            continue
        metrics = record.get("metrics") or {}
        folder = run_dir(record) if run_dir is not None else record.get("run_dir")
        rows.append({"trial_id": str(record["trial_id"]), "baseline": str(record["trial_id"]) == base,
                     "pareto": record["trial_id"] in pareto, accuracy: metrics.get(accuracy),
                     **{name: metrics.get(name) for name in (size, *SIZES)}, "scores": read_per_question(folder),
                     "folder": folder})
    if grouping is None:
        grouping = run_grouping(next((row["folder"] for row in rows if row["baseline"]), None))
    return paired_claims(rows, accuracy, size, bootstrap=bootstrap, grouping=grouping)


def run_grouping(run_dir: str | Path | None) -> Grouping:
    """The grouping (read_grouping) of the validation file a run folder's config.yaml names (data.val_file), where
    the run was scored; unavailable, saying why, where the folder or its config is not here."""
    config_file = Path(run_dir) / "config.yaml" if run_dir else None
    if config_file is None or not config_file.is_file():
        return Grouping.unavailable("", f"no run folder config.yaml names the baseline's validation file "
                                        f"({config_file or 'no run folder'})")
    try:
        val_file = load_config(config_file).data.val_file
    except ConfigError as error:
        return Grouping.unavailable(str(config_file), f"{config_file}: {error}")
    return read_grouping(val_file)
