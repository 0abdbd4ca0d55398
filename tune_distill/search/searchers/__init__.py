"""Searchers: small ask/tell objects behind one protocol, and the factory that builds them by name.

What it does: `make_searcher(name, space, objectives, constraints, seed, **options)` builds one of
SEARCHER_NAMES: optuna-tpe, optuna-gp, nsga2, random (Optuna samplers, `optuna.py`), parego
(hyperopt TPE on random scalarisations, `parego.py`), botorch (qLogNEHVI, `botorch.py`) and replay
(a given list of samples, `replay.py`). Every searcher has `suggest`, `observe` and `state`
(`base.py`); `restore_searcher(state)` rebuilds one exactly from its state, plain data (`state.py`).
`parse_searcher_spec` reads 'name:key=value' strings; `searcher_available` says whether a name can run here.

What it must not know: Ray, models or data. The algorithm modules are imported here, but each one
imports its library (Optuna, hyperopt, BoTorch) only when its searcher is built.

Example (CPU, a few seconds):
    python -c "from tune_distill.search.searchers import available_searchers; print(available_searchers())"
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from tune_distill.files import parse_yaml
from tune_distill.search.errors import SearcherError
from tune_distill.search.objectives import Constraint, Objective
from tune_distill.search.searchers.base import PICKLED_STATE_HEADER, Searcher, TrialStatus, restore_pickled_searcher
from tune_distill.search.searchers.botorch import BoTorchSearcher
from tune_distill.search.searchers.optuna import OptunaSearcher
from tune_distill.search.searchers.parego import ParEGOSearcher
from tune_distill.search.searchers.replay import ReplaySearcher
from tune_distill.search.searchers.state import (
    constraints_from_data,
    decode_state,
    objectives_from_data,
    space_from_data,
    typed_field,
)
from tune_distill.search.space import SearchSpace

__all__ = [
    "DEFAULT_SEARCHER", "SEARCHER_NAMES", "SEARCH_ALGORITHMS", "BoTorchSearcher", "OptunaSearcher", "ParEGOSearcher",
    "ReplaySearcher", "Searcher", "TrialStatus", "available_searchers", "make_searcher", "parse_searcher_spec",
    "restore_searcher", "searcher_available",
]

logger = logging.getLogger(__name__)

# The searcher used when none is named. Chosen with bench/searchers.py (results in
# bench/results/searchers.csv): Optuna's GPSampler reaches 96.0 +- 0.6% of the best attainable
# hypervolume on Branin-Currin after 60 evaluations (10 seeds; target 95%), 99.7% on ZDT1, 94.2% on
# ZDT2 and 65.5% on DTLZ2 (where multivariate TPE does best, 70.8%), the best mean gain over random
# search of all searchers, with no extra dependency and ~10-30 s of CPU per 60-trial sweep.
DEFAULT_SEARCHER = "optuna-gp"

SEARCHER_NAMES = ("optuna-tpe", "optuna-gp", "parego", "nsga2", "random", "botorch", "replay")
# `replay` re-runs a given list of samples (option `trials`); it searches nothing, so the benchmarks skip it.
SEARCH_ALGORITHMS = tuple(name for name in SEARCHER_NAMES if name != "replay")


def searcher_available(name: str) -> bool:
    """Whether `make_searcher(name, ...)` can work here (botorch is an optional dependency)."""
    if name not in SEARCHER_NAMES:
        return False
    module = {"parego": "hyperopt", "botorch": "botorch"}.get(name, "optuna")
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def available_searchers() -> list[str]:
    """Search algorithms that can run here (not `replay`, which needs its list of samples)."""
    return [name for name in SEARCH_ALGORITHMS if searcher_available(name)]


def make_searcher(
    name: str,
    space: SearchSpace,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint] = (),
    seed: int = 0,
    **options: Any,
) -> Searcher:
    """Build the searcher called `name` (see SEARCHER_NAMES); `options` go to the underlying algorithm.

    Options: optuna-tpe/optuna-gp/nsga2/random take their Optuna sampler's keyword arguments
    (e.g. n_startup_trials, multivariate, population_size); parego takes n_startup_trials, rho,
    n_ei_candidates, gamma; botorch takes n_startup_trials, num_restarts, raw_samples, mc_samples,
    maxiter, reference_point; replay takes trials (the list of samples to suggest, in order).
    """
    if name not in SEARCHER_NAMES:
        raise SearcherError(f"unknown searcher {name!r}; known: {', '.join(SEARCHER_NAMES)}")
    if name == "botorch" and not searcher_available("botorch"):
        raise SearcherError("searcher 'botorch' needs the botorch package: pip install 'botorch>=0.12'")
    try:
        if name == "parego":
            searcher: Searcher = ParEGOSearcher(space, objectives, constraints, seed, **options)
        elif name == "replay":
            searcher = ReplaySearcher(space, objectives, constraints, seed, **options)
        elif name == "botorch":
            searcher = BoTorchSearcher(space, objectives, constraints, seed, **options)
        else:
            searcher = OptunaSearcher(space, objectives, constraints, seed, label=name, options=options)
    except TypeError as error:
        raise SearcherError(f"searcher {name!r}: bad option(s) {sorted(options)}: {error}") from None
    logger.debug("searcher %s (seed %d, options %s) over %s", name, seed, options, space.names)
    return searcher


def restore_searcher(state: bytes, where: str = "searcher state") -> Searcher:
    """Rebuild a searcher from `Searcher.state()` bytes: built afresh from the saved settings, then handed what
    it had seen. Pickled states of earlier versions (format 1) still load, as trusted input (a pickle runs code).

    Errors (SearcherError) name `where` and the field that is wrong."""
    if isinstance(state, (bytes, bytearray)) and bytes(state).startswith(PICKLED_STATE_HEADER):
        return restore_pickled_searcher(state)
    data = decode_state(state, where)
    name = typed_field(data, "searcher", str, where)
    if name not in SEARCHER_NAMES:
        raise SearcherError(f"{where}.searcher: unknown searcher {name!r}; known: {', '.join(SEARCHER_NAMES)}")
    seed = typed_field(data, "seed", int, where)
    options = typed_field(data, "options", dict, where)
    try:
        space = space_from_data(data["space"], f"{where}.space")
        objectives, constraints = objectives_from_data(data["objectives"]), constraints_from_data(data["constraints"])
    except (SearcherError, ValueError, TypeError) as error:
        raise SearcherError(f"{where}: {error}") from None
    searcher = make_searcher(name, space, objectives, constraints, seed, **options)
    searcher._load_settings_state(data)
    return searcher


def parse_searcher_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """'optuna-gp:n_startup_trials=8:deterministic_objective=true' -> ('optuna-gp', {...}); values read as YAML."""
    name, *settings = spec.split(":")
    options = {}
    for setting in settings:
        if "=" not in setting:
            raise SearcherError(f"searcher spec {spec!r}: expected name:key=value[:key=value...]")
        key, raw = setting.split("=", 1)
        options[key.strip()] = parse_yaml(raw, f"searcher spec {spec!r}: {key.strip()}", SearcherError)
    return name.strip(), options
