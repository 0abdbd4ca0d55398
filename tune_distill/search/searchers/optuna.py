"""Optuna's samplers (TPE, GP, NSGA-II, random) driven through ask/tell behind the Searcher protocol.

What it does: `OptunaSearcher` keeps an in-memory Optuna study, asks it for each suggestion, and tells
it each outcome, constraints included the Optuna 5 way (`Trial.set_constraint`); `_optuna_sampler`
builds the sampler for the names optuna-tpe, optuna-gp, nsga2 and random with this package's defaults.

What it must not know: Ray, models, or how other searchers work. This module is called `optuna`
inside `tune_distill.search.searchers`; it imports the Optuna package absolutely (`import optuna`
is the top-level package), and the factory never refers to a bare `optuna` name.

Example (CPU, a few seconds):
    python -c "from tune_distill.search.searchers.optuna import _optuna_sampler as s; print(s('optuna-tpe', 0, {}))"
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

from tune_distill.search.errors import SearcherError
from tune_distill.search.searchers.base import TrialStatus, _read_outcome, _SearcherBase
from tune_distill.search.space import Param, _plain


@contextlib.contextmanager
def _optuna_quiet() -> Iterator[None]:
    """Silence Optuna's per-trial INFO lines while we drive it; restore the caller's verbosity."""
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def _optuna_distribution(param: Param):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if param.type == "categorical":
        return CategoricalDistribution(param.choices)
    if param.type == "int":
        return IntDistribution(param.low, param.high, log=param.log, step=param.step or 1)
    return FloatDistribution(param.low, param.high, log=param.log, step=param.step)


class OptunaSearcher(_SearcherBase):
    """Any Optuna sampler driven through ask/tell on an in-memory study.

    Constraints are given to Optuna the Optuna 5 way: `trial.set_constraint(name, violation)` before
    `study.tell`, where violation <= 0 means satisfied; TPE, GP and NSGA-II samplers read them back
    through `FrozenTrial.constraints` (the deprecated `constraints_func` argument is not used).
    """

    def __init__(self, space, objectives, constraints, seed, sampler, label: str) -> None:
        import optuna

        super().__init__(space, objectives, constraints, seed)
        self.label = label
        self._distributions = {p.name: _optuna_distribution(p) for p in space.params}
        with _optuna_quiet():
            self._study = optuna.create_study(
                directions=["maximize" if o.direction == "max" else "minimize" for o in self.objectives],
                sampler=sampler,
            )
        self._pending: dict[str, Any] = {}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        self._register(trial_id)
        with _optuna_quiet():
            trial = self._study.ask(self._distributions)
        self._pending[trial_id] = trial
        return {name: _plain(trial.params[name]) for name in self._distributions}

    def observe(self, trial_id: str, values: Mapping[str, float] | None, status: TrialStatus = "complete") -> None:
        from optuna.trial import TrialState

        if trial_id not in self._pending:
            raise SearcherError(f"{self.label}: trial {trial_id!r} is not pending (never suggested, or observed twice)")
        outcome = _read_outcome(trial_id, values, status, self.objectives, self.constraints)
        trial = self._pending.pop(trial_id)
        with _optuna_quiet():
            if outcome.status == "complete":
                for constraint, violation in zip(self.constraints, outcome.violations):
                    trial.set_constraint(constraint.name, violation)
                self._study.tell(trial, list(outcome.objective_values))
            elif outcome.status == "pruned":
                self._study.tell(trial, state=TrialState.PRUNED)
            else:
                self._study.tell(trial, state=TrialState.FAIL)


def _optuna_sampler(name: str, seed: int, options: dict[str, Any]):
    import optuna

    if name == "optuna-tpe":
        settings = {"n_startup_trials": 10, "multivariate": True}
        settings.update(options)
        return optuna.samplers.TPESampler(seed=seed, **settings)
    if name == "optuna-gp":
        settings = {"n_startup_trials": 10}
        settings.update(options)
        return optuna.samplers.GPSampler(seed=seed, **settings)
    if name == "nsga2":
        settings = {"population_size": 10}
        settings.update(options)
        return optuna.samplers.NSGAIISampler(seed=seed, **settings)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed, **options)
    raise AssertionError(name)  # pragma: no cover
