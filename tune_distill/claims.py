"""The sweep's claims against the baseline, each judged with a paired standard error.

Every student of a sweep is scored on the same questions, so its gain over the baseline has a paired
standard error (scoring.paired_difference: the spread of the per-question differences / sqrt(n)),
far below the independent-samples figure when both models find the same questions hard. A run
folder keeps the per-question scores of its last evaluation in `per_question.json`
(`write_per_question`, written by run.py at every evaluation, so a trial stopped early keeps those of
the result it last reported). `paired_claims` states the three claims of the reference experiment
and says for each whether it holds within that error:

- smaller at no loss: the smallest Pareto student smaller than the baseline whose gain is at least
  minus one paired standard error (not less accurate by more than one error);
- more accurate at about the same size: the best student within the baseline's size + 5% whose gain
  exceeds two paired standard errors;
- share smaller and at least as accurate: the share of the other students smaller than the baseline
  with a gain of at least minus one paired standard error.

Students without per-question scores (run folders written before they were kept, or lost) are listed
as `unpaired` and left out of the claims. `paired_summary` reads them for a report (report.py);
confirm.py gives the scores it measured on another split.

Must not know: models, training, Ray, how the scores were measured, plots.

Example (CPU, instant, on a sweep folder whose runs kept per_question.json):
    python -c "import json; from tune_distill import claims, records; s = json.load(open('sweeps/cpu/summary.json')); \
print(claims.paired_summary(records.read_trials('sweeps/cpu'), s, 'exact', 'parameters')['claims'])"
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from tune_distill.files import write_json
from tune_distill.scoring import paired_difference

PER_QUESTION_FILE = "per_question.json"
SIZE_SLACK = 0.05  # "about the same size": within the baseline's size + 5% (as report.SIZE_SLACK)
NO_LOSS_ERRORS = 1.0  # "no loss": the gain is at least minus this many paired standard errors
GAIN_ERRORS = 2.0  # "more accurate": the gain exceeds this many paired standard errors
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


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def paired_claims(rows: Sequence[Mapping[str, Any]], accuracy: str, size: str, *, bootstrap: int = BOOTSTRAP,
                  slack: float = SIZE_SLACK) -> dict[str, Any]:
    """The claims of `rows` against their baseline row, with paired errors.

    Each row: trial_id, baseline (bool), pareto (bool), `accuracy` and `size` values, and `scores`
    (metric -> id -> score, or None). Returns {metric, baseline, by_trial, unpaired, claims}.
    """
    rows = [row for row in rows if _number(row.get(accuracy)) is not None and _number(row.get(size)) is not None]
    base = next((row for row in rows if row.get("baseline")), None)
    result: dict[str, Any] = {"metric": accuracy, "size": size, "rule": (
        f"no loss: gain >= -{NO_LOSS_ERRORS:g} paired standard error; more accurate: gain > {GAIN_ERRORS:g} paired "
        f"standard errors; about the same size: within the baseline's {size} + {100 * slack:.0f}%")}
    base_scores = (base.get("scores") or {}).get(accuracy) if base else None
    if base is None or base_scores is None:
        reason = "no baseline" if base is None else f"the baseline has no per-question {accuracy} scores"
        result.update(baseline=base["trial_id"] if base else None, by_trial={},
                      unpaired=[row["trial_id"] for row in rows if row is not base],
                      claims={name: {"holds": False, "statement": f"not judged: {reason}"} for name in CLAIMS})
        return result
    paired, unpaired = _paired_differences(rows, base, base_scores, accuracy, size, bootstrap)
    result.update(baseline={"trial_id": base["trial_id"], accuracy: float(base[accuracy]), size: float(base[size]),
                            **{name: base[name] for name in SIZES if name != size and _number(base.get(name))},
                            "questions": len(base_scores)},
                  by_trial={row["trial_id"]: difference for row, difference in paired}, unpaired=unpaired)
    words = _Words(base, accuracy, size)
    result["claims"] = {"smaller_at_no_loss": _smaller_at_no_loss(paired, words),
                        "more_accurate_at_about_the_same_size": _more_accurate(paired, words, slack),
                        "share_smaller_and_at_least_as_accurate": _share_smaller(paired, words)}
    return result


Paired = list[tuple[Mapping[str, Any], dict[str, Any]]]  # (row, its paired difference from the baseline)


def _paired_differences(rows: Sequence[Mapping[str, Any]], base: Mapping[str, Any], base_scores: Mapping[str, float],
                        accuracy: str, size: str, bootstrap: int) -> tuple[Paired, dict[str, str]]:
    """Each other row's paired difference from the baseline (gain, its error, how much smaller), and the rows
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


def _no_loss(difference: Mapping[str, Any]) -> bool:
    return difference["gain"] >= -NO_LOSS_ERRORS * difference["gain_se"]


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
                f"questions), {size} {difference[size]:,.0f} against {self.base_size:,.0f} "
                f"({difference['smaller_than_baseline_pct']:+.1f}% smaller){others}")


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
            f"{NO_LOSS_ERRORS:g} paired standard error")}
    closest = max(smaller_pareto, key=lambda item: item[1]["gain"] / max(item[1]["gain_se"], 1e-12), default=None)
    return {"holds": False, "statement": (
        f"does not hold: no Pareto student smaller than the baseline is within {NO_LOSS_ERRORS:g} paired "
        "standard error of its accuracy" + (f"; the closest is {words(closest[0]['trial_id'], closest[1])}"
                                           if closest else ""))}


def _more_accurate(paired: Paired, words: _Words, slack: float) -> dict[str, Any]:
    """The best student within the baseline's size + slack, and whether its gain exceeds GAIN_ERRORS."""
    within = [(row, d) for row, d in paired if d[words.size] <= words.base_size * (1 + slack)]
    if not within:
        return {"holds": False, "statement": (
            f"does not hold: no paired student within the baseline's size + {100 * slack:.0f}%")}
    row, difference = max(within, key=lambda item: (item[1]["gain"], -item[1][words.size]))
    holds = difference["gain"] > GAIN_ERRORS * difference["gain_se"]
    return {"trial_id": row["trial_id"], **difference, "holds": holds, "statement": (
        f"{'holds' if holds else 'does not hold'}: the best within the baseline's size + {100 * slack:.0f}% "
        f"is {words(row['trial_id'], difference)}; the gain is "
        f"{'more' if holds else 'not more'} than {GAIN_ERRORS:g} paired standard errors")}


def _share_smaller(paired: Paired, words: _Words) -> dict[str, Any]:
    """The share of the paired students smaller than the baseline and within NO_LOSS_ERRORS of its accuracy."""
    if not paired:
        return {"value": None, "statement": "no other paired students"}
    share = sum(d[words.size] < words.base_size and _no_loss(d) for _, d in paired) / len(paired)
    return {"value": share, "trials": len(paired), "statement": (
        f"{100 * share:.0f}% of the {len(paired)} other students with per-question scores are smaller than the "
        f"baseline and at least as accurate within {NO_LOSS_ERRORS:g} paired standard error")}


def paired_summary(trials: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], accuracy: str, size: str, *,
                   run_dir: Callable[[Mapping[str, Any]], Any] | None = None,
                   bootstrap: int = BOOTSTRAP) -> dict[str, Any]:
    """`paired_claims` of a sweep's finished trials (records as trials.jsonl holds them) and its report summary.

    `run_dir(record)`: the trial's run folder (default: the record's run_dir).
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
                     **{name: metrics.get(name) for name in (size, *SIZES)}, "scores": read_per_question(folder)})
    return paired_claims(rows, accuracy, size, bootstrap=bootstrap)
