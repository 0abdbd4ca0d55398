"""Searcher states as data: the JSON that `Searcher.state()` writes and `restore_searcher` reads.

What it does: `encode_state` / `decode_state` turn a searcher's settings (name, seed, options, the
space, objectives and constraints) and what it has seen (trial ids, suggestions, outcomes, random
state) into bytes: a header line, then JSON. `space_to_data` / `space_from_data` and their siblings
for objectives and constraints carry the value objects. A restore rebuilds the searcher from its
settings with `make_searcher` and replays what it had seen into it (each searcher's `_load_state`),
so no library object is ever unpickled and a state saved under one Optuna release loads under the next.

Why JSON and not a pickle: a pickle of an Optuna study ties a saved sweep to one Optuna release (5.1
added a lock that cannot be pickled at all) and runs code when it is read; JSON is plain data that
any release can replay, and a resumed sweep reads it back from a bucket without trusting it to run.

What it must not know: any particular search algorithm or library; Ray; models.

Example (CPU, instant):
    python -c "from tune_distill.search.searchers.state import STATE_HEADER; print(STATE_HEADER)"
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, Sequence

from tune_distill.search.errors import SearcherError
from tune_distill.search.objectives import Constraint, Objective
from tune_distill.search.space import Param, SearchSpace

STATE_HEADER = b"tune_distill.search.state/2\n"
# The largest state read back: 480 trials of a 20-parameter space take about 1 MB.
MAX_STATE_BYTES = 256 * 1024 * 1024


def encode_state(data: Mapping[str, Any]) -> bytes:
    """The header line and `data` as JSON (finite numbers only: NaN and infinities are refused)."""
    try:
        text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise SearcherError(f"searcher state is not plain data ({error})") from None
    return STATE_HEADER + text.encode()


def decode_state(state: bytes, where: str = "searcher state") -> dict[str, Any]:
    """The data `encode_state` wrote; SearcherError naming `where` when it is anything else."""
    if not isinstance(state, (bytes, bytearray)) or not bytes(state).startswith(STATE_HEADER):
        raise SearcherError(f"{where}: not a searcher state written by tune_distill.search (missing header)")
    if len(state) > MAX_STATE_BYTES:
        raise SearcherError(f"{where}: {len(state)} bytes, more than the {MAX_STATE_BYTES} a state may have")
    try:
        data = json.loads(bytes(state)[len(STATE_HEADER):])
    except (ValueError, RecursionError) as error:
        raise SearcherError(f"{where}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise SearcherError(f"{where}: expected a JSON object, got {type(data).__name__}")
    missing = [key for key in ("searcher", "seed", "options", "space", "objectives", "constraints", "seen_ids")
               if key not in data]
    if missing:
        raise SearcherError(f"{where}: lacks {missing}")
    return data


def typed_field(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """data[key], checked to be of `kind`; SearcherError naming `where.key` otherwise."""
    if key not in data:
        raise SearcherError(f"{where}: lacks '{key}'")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise SearcherError(f"{where}.{key}: expected {names}, got {type(value).__name__}")
    return value


def space_to_data(space: SearchSpace) -> dict[str, Any]:
    """The space with its bounds resolved: enough to rebuild an equal SearchSpace."""
    params = [{"name": p.name, "type": p.type, "low": p.low, "high": p.high, "log": p.log,
               "choices": list(p.choices) if p.choices is not None else None, "step": p.step}
              for p in space.params]
    fixed = {key: list(value) if isinstance(value, tuple) else value for key, value in space.fixed.items()}
    return {"params": params, "derived": dict(space.derived), "fixed": fixed, "context": dict(space.context),
            "source": space.source}


def space_from_data(data: Any, where: str = "searcher state: space") -> SearchSpace:
    if not isinstance(data, Mapping):
        raise SearcherError(f"{where}: expected an object")
    params = []
    for index, spec in enumerate(typed_field(data, "params", list, where)):
        if not isinstance(spec, Mapping):
            raise SearcherError(f"{where}.params[{index}]: expected an object")
        values = dict(spec)
        if values.get("choices") is not None:
            values["choices"] = tuple(values["choices"])
        params.append(Param(**values))
    fixed = {key: tuple(value) if isinstance(value, list) else value
             for key, value in typed_field(data, "fixed", dict, where).items()}
    return SearchSpace(params=tuple(params), derived=typed_field(data, "derived", dict, where), fixed=fixed,
                       context=typed_field(data, "context", dict, where),
                       source=str(data.get("source", "search space")))


def objectives_to_data(objectives: Sequence[Objective]) -> list[dict[str, Any]]:
    return [{"name": o.name, "direction": o.direction} for o in objectives]


def constraints_to_data(constraints: Sequence[Constraint]) -> list[dict[str, Any]]:
    return [{"name": c.name, "op": c.op, "bound": c.bound} for c in constraints]


def objectives_from_data(data: Any) -> tuple[Objective, ...]:
    if not isinstance(data, list) or not all(isinstance(item, Mapping) for item in data):
        raise SearcherError("searcher state: objectives: expected a list of objects")
    return tuple(Objective(item.get("name"), item.get("direction")) for item in data)


def constraints_from_data(data: Any) -> tuple[Constraint, ...]:
    if not isinstance(data, list) or not all(isinstance(item, Mapping) for item in data):
        raise SearcherError("searcher state: constraints: expected a list of objects")
    return tuple(Constraint(item.get("name"), item.get("op"), item.get("bound")) for item in data)


def finite_list(values: Any, where: str) -> list[float]:
    """A list of finite numbers (observed values and violations), checked."""
    if not isinstance(values, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise SearcherError(f"{where}: expected a list of finite numbers, got {values!r}")
    return [float(v) for v in values]
