"""Optuna's samplers (TPE, GP, NSGA-II, random) driven through ask/tell behind the Searcher protocol.

What it does: `OptunaSearcher` keeps an in-memory Optuna study, asks it for each suggestion (with a
sampler seeded for that suggestion), and tells it each outcome, constraints included the Optuna 5 way
(`Trial.set_constraint`); its state is the study's trials as data, replayed into a new study on
restore. `optuna_sampler` builds the sampler for the names optuna-tpe, optuna-gp, nsga2 and random
with this package's defaults.

What it must not know: Ray, models, or how other searchers work. This module is called `optuna`
inside `tune_distill.search.searchers`; it imports the Optuna package absolutely (`import optuna`
is the top-level package), and the factory never refers to a bare `optuna` name.

Example (CPU, a few seconds):
    python -c "from tune_distill.search.searchers.optuna import optuna_sampler as s; print(s('optuna-tpe', 0, {}))"
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from tune_distill.private_api import (
    optuna_study_system_attrs,
    optuna_trial_handle,
    set_gp_local_searches,
    set_optuna_study_system_attrs,
)
from tune_distill.search.errors import SearcherError
from tune_distill.search.searchers.base import SearcherBase, TrialStatus, read_outcome
from tune_distill.search.searchers.state import (
    constraints_from_data,
    decode_state,
    finite_list,
    objectives_from_data,
    space_from_data,
    typed_field,
)
from tune_distill.search.space import Param, plain

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _optuna_quiet() -> Iterator[None]:
    """Silence Optuna's per-trial INFO lines while we drive it, and its warnings that a sampler is experimental
    or a restored constraint is already set; restore the caller's verbosity."""
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message="The constraint value is ignored")
            yield
    finally:
        optuna.logging.set_verbosity(previous)


def optuna_distribution(param: Param):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if param.type == "categorical":
        return CategoricalDistribution(param.choices)
    if param.type == "int":
        return IntDistribution(param.low, param.high, log=param.log, step=param.step or 1)
    return FloatDistribution(param.low, param.high, log=param.log, step=param.step)


class OptunaSearcher(SearcherBase):
    """Any Optuna sampler driven through ask/tell on an in-memory study.

    Each suggestion asks the study with a sampler built afresh for it, seeded with a seed derived from
    the searcher's seed and the suggestion's number (`suggestion_seed`): what it suggests depends only
    on the trials in the study and that seed, never on state hidden inside a sampler object. So the
    searcher's state is plain data (the trials, their outcomes and system attributes), and a restored
    searcher, its trials added back to a new study, suggests exactly what the original would have.
    The price: a GP sampler fits its kernel from scratch at each suggestion instead of from the last
    fit (Optuna caches that inside the sampler).

    Constraints are given to Optuna the Optuna 5 way: `trial.set_constraint(name, violation)` before
    `study.tell`, where violation <= 0 means satisfied; TPE, GP and NSGA-II samplers read them back
    through `FrozenTrial.constraints` (the deprecated `constraints_func` argument is not used).
    """

    def __init__(self, space, objectives, constraints, seed, label: str, options: Mapping[str, Any] | None = None,
                 ) -> None:
        import optuna

        super().__init__(space, objectives, constraints, seed)
        self.name = self.label = label
        self._options = dict(options or {})
        optuna_sampler(label, self.seed, self._options)  # bad options fail here, not at the first suggestion
        self._distributions = {p.name: optuna_distribution(p) for p in space.params}
        with _optuna_quiet():
            self._study = optuna.create_study(
                directions=["maximize" if o.direction == "max" else "minimize" for o in self.objectives],
                sampler=optuna_sampler(label, self.seed, self._options),
            )
        self._trial_ids: list[str] = []  # by trial number
        self._pending: dict[str, int] = {}  # trial id -> trial number
        self._legacy_sampler: Any = None  # the sampler of a searcher pickled by an earlier version

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (Ray keeps the search algorithm in tuner.pkl) as its state data: no Optuna object inside."""
        return {"tune_distill_state": self.state()}

    def __setstate__(self, pickled: dict[str, Any]) -> None:
        if "tune_distill_state" in pickled:
            data = decode_state(pickled["tune_distill_state"], "pickled Optuna searcher")
            OptunaSearcher.__init__(
                self, space_from_data(data["space"]), objectives_from_data(data["objectives"]),
                constraints_from_data(data["constraints"]), typed_field(data, "seed", int, "pickled Optuna searcher"),
                label=typed_field(data, "searcher", str, "pickled Optuna searcher"), options=data["options"])
            self._load_settings_state(data)
        else:
            self.__dict__.update(pickled)
            self._migrate_pickled()

    def _migrate_pickled(self) -> None:
        """A searcher pickled by an earlier version (its study and sampler inside): it keeps suggesting with its
        pickled sampler, as the version that saved it would have; its next saved state is data, after which
        suggestions come from samplers seeded per suggestion with this searcher's default options."""
        logger.warning("%s: a searcher pickled by an earlier tune_distill; it continues with its pickled sampler",
                       self.label)
        self.name = self.label
        self._options = {}
        self._legacy_sampler = self._study.sampler
        trials = self._study.get_trials(deepcopy=False)
        numbers = {trial_id: trial.number for trial_id, trial in self._pending.items()}
        by_number = {number: trial_id for trial_id, number in numbers.items()}
        self._trial_ids = [by_number.get(trial.number, f"#{trial.number}") for trial in trials]
        self._pending = numbers

    def options(self) -> dict[str, Any]:
        return dict(self._options)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        self._register(trial_id)
        number = len(self._trial_ids)
        self._study.sampler = self._legacy_sampler or optuna_sampler(self.label, suggestion_seed(self.seed, number),
                                                                      self._options)
        with _optuna_quiet():
            trial = self._study.ask(self._distributions)
        if trial.number != number:  # pragma: no cover - the study is ours alone
            raise SearcherError(f"{self.label}: Optuna numbered trial {trial_id!r} {trial.number}, expected {number}")
        self._trial_ids.append(trial_id)
        self._pending[trial_id] = number
        return {name: plain(trial.params[name]) for name in self._distributions}

    def observe(self, trial_id: str, values: Mapping[str, float] | None, status: TrialStatus = "complete") -> None:
        if trial_id not in self._pending:
            raise SearcherError(f"{self.label}: trial {trial_id!r} is not pending (never suggested, or observed twice)")
        outcome = read_outcome(trial_id, values, status, self.objectives, self.constraints)
        number = self._pending.pop(trial_id)
        violations = dict(zip((c.name for c in self.constraints), outcome.violations or ()))
        self._tell(number, outcome.status, outcome.objective_values, violations)

    def _tell(self, number: int, status: str, values: Sequence[float] | None, violations: Mapping[str, float]) -> None:
        """Finish running trial `number` in the study: constraints first, then the values or the state."""
        from optuna.trial import TrialState

        trial = optuna_trial_handle(self._study, self._study.get_trials(deepcopy=False)[number])
        with _optuna_quiet():
            if status == "complete":
                for name, violation in violations.items():
                    trial.set_constraint(name, violation)
                self._study.tell(trial, list(values))
            else:
                self._study.tell(trial, state=TrialState.PRUNED if status == "pruned" else TrialState.FAIL)

    def _dump_state(self) -> dict[str, Any]:
        """Every trial in number order: id, status, parameters, values, constraint violations, system attributes."""
        trials = []
        for trial_id, frozen in zip(self._trial_ids, self._study.get_trials(deepcopy=False)):
            trials.append({
                "trial_id": trial_id, "status": _STATUS_OF_STATE[frozen.state.name],
                "params": {name: plain(value) for name, value in frozen.params.items()},
                "values": list(frozen.values) if frozen.values is not None else None,
                "constraints": dict(frozen.constraints or {}) if frozen.state.name == "COMPLETE" else None,
                "system_attrs": dict(frozen.system_attrs),
            })
        return {"trials": trials, "study_system_attrs": optuna_study_system_attrs(self._study)}

    def _load_state(self, data: Mapping[str, Any]) -> None:
        """Add the saved trials back in order: each as a running trial, then finished as it was."""
        from optuna.trial import TrialState, create_trial

        where = f"searcher state ({self.label})"
        if self._trial_ids:
            raise SearcherError(f"{where}: can only be loaded into a fresh searcher")
        set_optuna_study_system_attrs(self._study, dict(typed_field(data, "study_system_attrs", dict, where)))
        for index, item in enumerate(typed_field(data, "trials", list, where)):
            label = f"{where}.trials[{index}]"
            if not isinstance(item, Mapping):
                raise SearcherError(f"{label}: expected an object")
            trial_id = typed_field(item, "trial_id", str, label)
            status = typed_field(item, "status", str, label)
            if status not in ("running", "complete", "pruned", "failed"):
                raise SearcherError(f"{label}.status: expected running, complete, pruned or failed, got {status!r}")
            params = typed_field(item, "params", dict, label)
            if not self.space.contains(params):
                raise SearcherError(f"{label}.params: {params!r} is not a sample of the space")
            values = finite_list(item.get("values"), f"{label}.values") if status == "complete" else None
            if values is not None and len(values) != len(self.objectives):
                raise SearcherError(f"{label}.values: {len(values)} values for {len(self.objectives)} objectives")
            constraints = typed_field(item, "constraints", dict, label) if status == "complete" else {}
            with _optuna_quiet():
                self._study.add_trial(create_trial(
                    state=TrialState.RUNNING, params=dict(params), distributions=self._distributions,
                    system_attrs=dict(typed_field(item, "system_attrs", dict, label))))
            self._trial_ids.append(trial_id)
            if status == "running":
                self._pending[trial_id] = index
            else:
                self._tell(index, status, values, constraints)
        self._study.sampler = optuna_sampler(self.label, suggestion_seed(self.seed, len(self._trial_ids)),
                                              self._options)


_STATUS_OF_STATE = {"RUNNING": "running", "COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed",
                    "WAITING": "running"}


# Local searches of the GP's acquisition optimiser per suggestion (Optuna's default is 10). Measured on the paper
# space (15 parameters, 5 of them integers; two objectives, one constraint) with 20 running trials, one suggestion
# on an idle core: 7.7 s with 10 against 1.5 s with 3 at 100 trials, 7.3 s against 2.2 s at 200, 14.2 s against
# 8.0 s at 480 (the rest is the GP fits); bench/searchers.py's quality figures with 3 are in issue 22's note.
GP_LOCAL_SEARCHES = 3


def suggestion_seed(seed: int, number: int) -> int:
    """The sampler seed of suggestion `number` of a searcher seeded `seed` (numpy's SeedSequence: independent
    streams for every (seed, number) pair)."""
    return int(np.random.SeedSequence([int(seed), int(number)]).generate_state(1)[0])


def optuna_sampler(name: str, seed: int, options: Mapping[str, Any]):
    """The Optuna sampler called `name`, seeded `seed`, with this package's defaults under `options`."""
    import optuna

    with _optuna_quiet():
        return _build_sampler(optuna, name, seed, dict(options))


def _build_sampler(optuna: Any, name: str, seed: int, options: dict[str, Any]):

    if name == "optuna-tpe":
        settings = {"n_startup_trials": 10, "multivariate": True}
        settings.update(options)
        return optuna.samplers.TPESampler(seed=seed, **settings)
    if name == "optuna-gp":
        settings = {"n_startup_trials": 10}
        settings.update(options)
        local_searches = settings.pop("local_searches", GP_LOCAL_SEARCHES)
        if isinstance(local_searches, bool) or not isinstance(local_searches, int) or local_searches < 1:
            raise SearcherError(f"optuna-gp: option local_searches must be an integer >= 1, got {local_searches!r}")
        sampler = optuna.samplers.GPSampler(seed=seed, **settings)
        set_gp_local_searches(sampler, local_searches)
        return sampler
    if name == "nsga2":
        settings = {"population_size": 10}
        settings.update(options)
        return optuna.samplers.NSGAIISampler(seed=seed, **settings)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed, **options)
    raise AssertionError(name)  # pragma: no cover
