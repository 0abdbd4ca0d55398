"""Progress lines and the Optuna study: what the sweep tells people as trials finish.

What it does: `ProgressLines` (a Ray Tune callback) logs, for every trial that completes, stops or
fails, its number and id, status, objectives (and exact and size), feasibility, a digest of its
sampled parameters and the running best feasible value of the first objective; `params_digest`
shortens parameters ('layers=2 lr=3.2e-04 ...'), `_short` formats a metric; how a trial ended
(complete, stopped, failed) is records.trial_status, the words of trials.jsonl. `StudyRecorder` (another
callback) keeps each trial's accuracy at every evaluation and, when the trial completes, stops or
fails, adds it to the sweep's Optuna study (`study.journal`, see tune_distill/study.py), which the
Optuna dashboard shows live.

What it must not know: how trials run or are chosen; the feasibility rule is `pareto.is_feasible`.

Example (CPU, a minute; its lines appear in the sweep's log):
    tune-distill sweep --preset smoke --out sweeps/smoke --num-samples 3
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from ray.tune import Callback as RayCallback

from tune_distill.pareto import is_feasible
from tune_distill.records import trial_status
from tune_distill.search import Constraint, Objective

log = logging.getLogger(__name__)


def params_digest(params: Mapping[str, Any], width: int = 90) -> str:
    """'layers=2 lr=3.2e-04 alpha_ce=0.51 ...' from the sampled parameters (short names)."""
    short = {"num_hidden_layers": "layers", "learning_rate": "lr", "num_attention_heads": "heads",
             "hidden_size": "hidden", "intermediate_size": "ffn"}
    parts = []
    # student shape first, then training knobs, auxiliary '_' values last
    for key in sorted(params, key=lambda k: (k.startswith("_"), not k.startswith("student."), k)):
        name = key.rsplit(".", 1)[-1]
        name = short.get(name, name)
        value = params[key]
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        parts.append(f"{name}={text}")
    line = " ".join(parts) or "baseline"
    return line if len(line) <= width else line[: width - 3] + "..."


def _short(name: str, value: Any) -> str:
    """A metric for a progress line: counts in millions, scores with two decimals, '-' when absent."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return f"{value / 1e6:.2f}M" if name.endswith("parameters") else f"{value:.2f}"


class ProgressLines(RayCallback):
    """One log line per finished trial: id, status, objectives (and exact, parameters), params digest, running best."""

    def __init__(self, objectives: Sequence[Objective], constraints: Sequence[Constraint], num_samples: int):
        self.objectives = tuple(objectives)
        self.constraints = tuple(constraints)
        self.num_samples = num_samples

    def _line(self, trials: Sequence[Any], trial: Any, errored: bool) -> None:
        result = trial.last_result or {}
        number = int(trial.config.get("number", -1))
        status = trial_status(result, errored)
        first = self.objectives[0]
        best = None
        for other in trials:
            other_result = other.last_result or {}
            if other.status == "ERROR" or not other_result.get("final") or first.name not in other_result:
                continue
            if not is_feasible(other_result, self.constraints):
                continue
            value = other_result[first.name]
            if best is None or (value > best[0] if first.direction == "max" else value < best[0]):
                best = (value, int(other.config.get("number", -1)))
        finished = sum(1 for t in trials if t is trial or t.status in ("TERMINATED", "ERROR"))
        shown = [o.name for o in self.objectives]
        shown += [name for name in ("exact", "parameters") if name not in shown]
        values = " ".join(f"{name} {_short(name, result.get(name))}" for name in shown)
        feasible = "" if status != "complete" else (" feasible" if is_feasible(result, self.constraints)
                                                     else " infeasible")
        log.info(
            "trial %04d %s %-8s %s%s | %s | best %s %s [%d/%d finished]",
            number, trial.trial_id, status, values, feasible,
            params_digest(trial.config.get("params") or {}), first.name,
            f"{best[0]:.4g} (trial {best[1]:04d})" if best else "none feasible yet", finished, self.num_samples,
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trials, trial, errored=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trials, trial, errored=True)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        log.warning("trial %04d %s raised (attempt %d); retrying", int(trial.config.get("number", -1)),
                    trial.trial_id, trial.num_failures)


class StudyRecorder(RayCallback):
    """Adds every trial that completes, stops or fails to the sweep's Optuna study, as it happens.

    The learning curve comes from the results the trial reported (so it works when the run folder
    is on another node). A failure to write is logged, never raised: the study is for watching.
    """

    def __init__(self, study_path: str, study_name: str, distributions: Mapping[str, Any],
                 objectives: Sequence[Objective], constraints: Sequence[Constraint]):
        self.study_path = str(study_path)
        self.study_name = study_name
        self.distributions = dict(distributions)
        self.objectives = tuple(objectives)
        self.constraints = tuple(constraints)
        self.metric = next((o.name for o in self.objectives if o.direction == "max"), self.objectives[0].name)
        self.curves: dict[str, dict[int, float]] = {}
        self._study: Any = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with the Tuner (resume): without the open study, which is reopened on first use."""
        return {**self.__dict__, "_study": None}

    def retarget(self, study_path: str) -> None:
        """Write to `study_path` from now on (a resumed sweep whose folder moved)."""
        self.study_path, self._study = str(study_path), None

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: Mapping[str, Any], **info: Any) -> None:
        value, step = result.get(self.metric), result.get("step")
        if isinstance(value, (int, float)) and step is not None:
            self.curves.setdefault(trial.trial_id, {})[int(step)] = float(value)

    def _add(self, trial: Any, errored: bool) -> None:
        from tune_distill.study import record_trials
        from tune_distill.sweep.experiment import trial_record

        try:
            if self._study is None:
                from tune_distill.study import open_study

                self._study = open_study(self.study_path, self.study_name, self.objectives)
            record = trial_record(trial, None)
            record["status"] = trial_status(trial.last_result or {}, errored)  # Tune may not have set its status yet
            record_trials(self._study, [record], self.distributions, self.objectives, self.constraints, self.curves)
        except Exception as failure:  # noqa: BLE001 - the study must never stop the sweep
            log.warning("trial %s: not added to the Optuna study (%s: %s)", trial.trial_id, type(failure).__name__,
                        failure)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._add(trial, errored=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._add(trial, errored=True)
