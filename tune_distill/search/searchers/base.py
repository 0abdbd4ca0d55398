"""What every searcher shares: the ask/tell protocol, outcome reading, bookkeeping and saved states.

What it does: `Searcher` is the three-method protocol (suggest, observe, state); `read_outcome`
turns what a trial reported into objective values and constraint violations (or a failure);
`SearcherBase` keeps trial ids and writes its state as data (state.py: its settings, then what
each searcher adds in `_dump_state`); `HistorySearcher` is the base of the searchers that keep their
own history in the unit-cube encoding (replay, parego, botorch). `restore_pickled_searcher` reads the
pickled states (`PICKLED_STATE_HEADER`) that earlier versions wrote, and only inside
tune_distill.signing.trusted_pickles (a resume whose sweep folder verified, or that the user trusted).

What it must not know: any particular algorithm or library (Optuna, hyperopt, BoTorch), Ray or
models. The old state header's text is kept from the single-module days so that saved states still load.

Example (CPU, a few seconds):
    python -c "from tune_distill.search.searchers.base import PICKLED_STATE_HEADER; print(PICKLED_STATE_HEADER)"
"""

from __future__ import annotations

import logging
import math
import pickle
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Protocol, Sequence

import numpy as np

from tune_distill.search.errors import SearcherError
from tune_distill.search.objectives import Constraint, Objective
from tune_distill.search.searchers.state import (
    constraints_to_data,
    encode_state,
    finite_list,
    objectives_to_data,
    space_to_data,
    typed_field,
)
from tune_distill.search.space import SearchSpace
from tune_distill.signing import require_trusted_pickle

logger = logging.getLogger(__name__)

TrialStatus = Literal["complete", "failed", "pruned"]


class Searcher(Protocol):
    """Ask/tell interface shared by every searcher.

    suggest(trial_id) -> sampled parameters (feed them to `SearchSpace.resolve`), or None when the
        searcher has nothing more to propose. May be called again before earlier trials are observed.
    observe(trial_id, values, status) -> record a finished trial: `values` maps every objective and
        constraint metric name to a number; failed trials pass values=None and status="failed".
    state() -> bytes from which `restore_searcher` rebuilds the searcher, pending trials included,
        so that a resumed sweep continues exactly as the uninterrupted one would: a header line and
        JSON data (settings, trials seen, random state), never a pickle.
    """

    def suggest(self, trial_id: str) -> dict[str, Any] | None: ...

    def observe(
        self, trial_id: str, values: Mapping[str, float] | None, status: TrialStatus = "complete"
    ) -> None: ...

    def state(self) -> bytes: ...


# The header of the pickled states written before states became data (format 1).
PICKLED_STATE_HEADER = b"tune_distill.search.state/1\n"


def restore_pickled_searcher(state: bytes) -> Searcher:
    """Rebuild a searcher from a format-1 state (a pickle: trusted input only, it can run code when read).

    Kept so that sweeps saved by earlier versions resume; Optuna's pickles load only under the Optuna
    release that wrote them. Refused (signing.UntrustedFolder) outside signing.trusted_pickles."""
    if not isinstance(state, (bytes, bytearray)) or not bytes(state).startswith(PICKLED_STATE_HEADER):
        raise SearcherError("not a searcher state written by tune_distill.search (missing header)")
    require_trusted_pickle("a pickled searcher state (format 1, written by an earlier tune_distill)")
    logger.warning("reading a pickled searcher state written by an earlier tune_distill (trusted input only)")
    return pickle.loads(bytes(state)[len(PICKLED_STATE_HEADER):])


@dataclass
class Outcome:
    """A finished trial as the searchers see it: objective values (as given) and constraint violations."""

    status: TrialStatus
    objective_values: tuple[float, ...] | None = None
    violations: tuple[float, ...] | None = None


def read_outcome(
    trial_id: str,
    values: Mapping[str, float] | None,
    status: str,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint],
) -> Outcome:
    if status not in ("complete", "failed", "pruned"):
        raise SearcherError(f"trial {trial_id}: status must be complete, failed or pruned, got {status!r}")
    if status != "complete":
        return Outcome(status)
    if values is None:
        logger.warning("trial %s: status 'complete' without values; recorded as failed", trial_id)
        return Outcome("failed")
    names = [o.name for o in objectives] + [c.name for c in constraints]
    missing = [name for name in names if name not in values]
    if missing:
        raise SearcherError(f"trial {trial_id}: values lack {missing}; got {sorted(values)}")
    numbers = {}
    for name in names:
        try:
            numbers[name] = float(values[name])
        except (TypeError, ValueError):
            raise SearcherError(f"trial {trial_id}: value of {name!r} is not a number: {values[name]!r}") from None
    if not all(math.isfinite(v) for v in numbers.values()):
        logger.warning("trial %s: non-finite values %s; recorded as failed", trial_id, numbers)
        return Outcome("failed")
    return Outcome(
        "complete",
        tuple(numbers[o.name] for o in objectives),
        tuple(c.violation(numbers[c.name]) for c in constraints),
    )


class SearcherBase:
    """Bookkeeping shared by all searchers: trial ids, pending trials, state as data.

    Subclasses set `name` (their `make_searcher` name), return their `make_searcher` options from
    `options()`, and add what they have seen in `_dump_state` / `_load_state`; `restore_searcher`
    builds a fresh searcher from the settings and hands it the rest.
    """

    name = "searcher"

    def __init__(
        self, space: SearchSpace, objectives: Sequence[Objective], constraints: Sequence[Constraint], seed: int
    ) -> None:
        if not objectives:
            raise SearcherError("at least one objective is needed")
        if len({o.name for o in objectives}) != len(objectives):
            raise SearcherError(f"objective names must be distinct: {[o.name for o in objectives]}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise SearcherError(f"seed must be an integer, got {seed!r}")
        self.space = space
        self.objectives = tuple(objectives)
        self.constraints = tuple(constraints)
        self.seed = int(seed)
        self._seen_ids: set[str] = set()

    def _register(self, trial_id: str) -> None:
        if trial_id in self._seen_ids:
            raise SearcherError(f"trial id {trial_id!r} was already suggested")
        self._seen_ids.add(trial_id)

    def options(self) -> dict[str, Any]:
        """The keyword options that `make_searcher(self.name, ...)` takes to build this searcher again."""
        return {}

    def state(self) -> bytes:
        settings = {
            "searcher": self.name, "seed": self.seed, "options": self.options(),
            "space": space_to_data(self.space), "objectives": objectives_to_data(self.objectives),
            "constraints": constraints_to_data(self.constraints), "seen_ids": sorted(self._seen_ids),
        }
        return encode_state({**settings, **self._dump_state()})

    def _load_settings_state(self, data: Mapping[str, Any]) -> None:
        """What `restore_searcher` hands a freshly built searcher: the ids it had seen, then its own state."""
        seen = typed_field(data, "seen_ids", list, "searcher state")
        if not all(isinstance(trial_id, str) for trial_id in seen):
            raise SearcherError("searcher state.seen_ids: expected a list of trial ids (strings)")
        self._seen_ids = set(seen)
        self._load_state(data)

    def _dump_state(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load_state(self, data: Mapping[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class HistorySearcher(SearcherBase):
    """Searchers that keep their own history: suggestions in the unit cube, outcomes by trial id."""

    def __init__(self, space, objectives, constraints, seed) -> None:
        super().__init__(space, objectives, constraints, seed)
        self._rng = np.random.default_rng(self.seed)
        self._pending: dict[str, dict[str, Any]] = {}
        self._completed: list[tuple[dict[str, Any], np.ndarray, np.ndarray]] = []  # params, minimised y, violations
        self._n_suggested = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        self._register(trial_id)
        params = self._propose()
        self._n_suggested += 1
        self._pending[trial_id] = params
        return dict(params)

    def observe(self, trial_id: str, values: Mapping[str, float] | None, status: TrialStatus = "complete") -> None:
        if trial_id not in self._pending:
            raise SearcherError(f"{type(self).__name__}: trial {trial_id!r} is not pending")
        outcome = read_outcome(trial_id, values, status, self.objectives, self.constraints)
        params = self._pending.pop(trial_id)
        if outcome.status == "complete":
            signs = np.array([-1.0 if o.direction == "max" else 1.0 for o in self.objectives])
            self._completed.append(
                (params, signs * np.array(outcome.objective_values), np.array(outcome.violations, dtype=float))
            )

    def _dump_state(self) -> dict[str, Any]:
        return {
            "rng": self._rng.bit_generator.state,
            "n_suggested": self._n_suggested,
            "pending": [{"trial_id": trial_id, "params": params} for trial_id, params in self._pending.items()],
            "completed": [{"params": params, "minimised": y.tolist(), "violations": v.tolist()}
                          for params, y, v in self._completed],
        }

    def _load_state(self, data: Mapping[str, Any]) -> None:
        where = f"searcher state ({self.name})"
        rng = typed_field(data, "rng", dict, where)
        try:
            self._rng.bit_generator.state = rng
        except (TypeError, ValueError, KeyError) as error:
            kind = type(self._rng.bit_generator).__name__
            raise SearcherError(f"{where}.rng: not a {kind} state ({error})") from None
        self._n_suggested = typed_field(data, "n_suggested", int, where)
        self._pending = {}
        for index, item in enumerate(typed_field(data, "pending", list, where)):
            label = f"{where}.pending[{index}]"
            if not isinstance(item, Mapping):
                raise SearcherError(f"{label}: expected an object")
            self._pending[typed_field(item, "trial_id", str, label)] = self._checked_params(item, label)
        self._completed = []
        for index, item in enumerate(typed_field(data, "completed", list, where)):
            label = f"{where}.completed[{index}]"
            if not isinstance(item, Mapping):
                raise SearcherError(f"{label}: expected an object")
            y = finite_list(item.get("minimised"), f"{label}.minimised")
            v = finite_list(item.get("violations"), f"{label}.violations")
            if len(y) != len(self.objectives) or len(v) != len(self.constraints):
                raise SearcherError(f"{label}: {len(y)} values and {len(v)} violations for {len(self.objectives)} "
                                    f"objectives and {len(self.constraints)} constraints")
            self._completed.append((self._checked_params(item, label), np.array(y), np.array(v, dtype=float)))

    def _checked_params(self, item: Mapping[str, Any], where: str) -> dict[str, Any]:
        params = typed_field(item, "params", dict, where)
        if not self.space.contains(params):
            raise SearcherError(f"{where}.params: {params!r} is not a sample of the space")
        return dict(params)

    def _history_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit-cube X, minimised Y and violations V of the completed trials."""
        X = np.array([[p.to_unit(params[p.name]) for p in self.space.params] for params, _, _ in self._completed])
        Y = np.array([y for _, y, _ in self._completed])
        V = np.array([v for _, _, v in self._completed]).reshape(len(self._completed), len(self.constraints))
        return X.reshape(len(self._completed), len(self.space.params)), Y, V

    def _propose(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


# The names these classes had when they were private: pickles written then name them so.
_Outcome = Outcome
_SearcherBase = SearcherBase
_HistorySearcher = HistorySearcher
