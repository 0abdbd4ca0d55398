"""Search spaces: sampled parameters, keys derived from them, fixed keys, read from YAML.

What it does: `Param` is one sampled parameter (a float or int range, optionally log-scaled or
stepped, or a choice) with the unit-interval encoding the non-Optuna searchers model in;
`SearchSpace.resolve` turns one sample into a flat override dict such as
{"distill.learning_rate": 3e-5, "student.hidden_size": 256}; `parse_space`/`load_space` build a space
from YAML and check it (unknown keys, bad bounds, derived-key cycles, a few corner samples resolved),
naming the file and key in every error. Bounds may be expressions over the teacher's shape
(`{teacher.hidden_size}`); derived keys may also use the sampled parameters, so impossible
combinations are excluded by construction: sample heads and a head width, derive the hidden size.

What it must not know: searchers, objectives, distillation or Ray. Parameter keys are opaque strings
(whether "student.hidden_size" is a real config key is checked by the caller with
`tune_distill.config.apply_overrides`).

Example (CPU, a few seconds): preview five resolved samples of a shipped space
    python -m tune_distill.search configs/space_rich.yaml --samples 5
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np

from tune_distill.config import read_yaml
from tune_distill.search.errors import SearcherError, SearchSpaceError
from tune_distill.search.expression import Expression, constant_or_expression, is_number

# Shape of the teacher that the shipped spaces are checked against and that the CLI previews with.
EXAMPLE_TEACHER_CONTEXT = {
    "teacher.num_hidden_layers": 6,
    "teacher.hidden_size": 384,
    "teacher.num_attention_heads": 12,
    "teacher.intermediate_size": 1536,
}


_PARAM_TYPES = ("float", "int", "categorical")
_PARAM_FIELDS = ("type", "low", "high", "log", "choices", "step")


@dataclass(frozen=True)
class Param:
    """One sampled parameter: a float or int range (optionally log-scaled or stepped) or a choice.

    Names are config keys ("distill.learning_rate") or auxiliary values that start with "_"
    ("_head_dim"): aux values exist only to build derived keys and are dropped by `resolve`.
    """

    name: str
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None
    step: float | None = None

    def __post_init__(self) -> None:
        where = self.name
        if self.type not in _PARAM_TYPES:
            raise SearchSpaceError(f"{where}: type must be one of {', '.join(_PARAM_TYPES)}, got {self.type!r}")
        if not isinstance(self.log, bool):
            raise SearchSpaceError(f"{where}: log must be true or false, got {self.log!r}")
        if self.type == "categorical":
            self._check_categorical(where)
        else:
            self._check_range(where)

    def _check_categorical(self, where: str) -> None:
        for name in ("low", "high", "step"):
            if getattr(self, name) is not None:
                raise SearchSpaceError(f"{where}: '{name}' does not apply to a categorical parameter")
        if self.log:
            raise SearchSpaceError(f"{where}: 'log' does not apply to a categorical parameter")
        if not isinstance(self.choices, tuple) or len(self.choices) == 0:
            raise SearchSpaceError(f"{where}: a categorical parameter needs a non-empty list of choices")
        for choice in self.choices:
            if choice is not None and not isinstance(choice, (bool, int, float, str)):
                raise SearchSpaceError(f"{where}: choices must be numbers, strings, booleans or null, got {choice!r}")
        keys = [(type(choice), choice) for choice in self.choices]
        if len(set(keys)) != len(keys):
            raise SearchSpaceError(f"{where}: choices contain duplicates: {list(self.choices)!r}")

    def _check_range(self, where: str) -> None:
        if self.choices is not None:
            raise SearchSpaceError(f"{where}: 'choices' applies only to categorical parameters")
        for name in ("low", "high"):
            value = getattr(self, name)
            if value is None:
                raise SearchSpaceError(f"{where}: a {self.type} parameter needs '{name}'")
            if not is_number(value) or not math.isfinite(value):
                raise SearchSpaceError(f"{where}: '{name}' must be a finite number, got {value!r}")
            if self.type == "int" and float(value) != int(value):
                raise SearchSpaceError(f"{where}: '{name}' of an int parameter must be a whole number, got {value!r}")
        # Store canonical Python numbers (YAML may hand us 3.0 for an int bound, numpy may hand np.float64).
        cast = int if self.type == "int" else float
        object.__setattr__(self, "low", cast(self.low))
        object.__setattr__(self, "high", cast(self.high))
        if self.low > self.high:
            raise SearchSpaceError(f"{where}: low ({self.low}) > high ({self.high})")
        if self.log and self.low <= 0:
            raise SearchSpaceError(f"{where}: a log-scaled parameter needs low > 0, got low={self.low}")
        if self.step is not None:
            if not is_number(self.step) or not self.step > 0:
                raise SearchSpaceError(f"{where}: 'step' must be a positive number, got {self.step!r}")
            if self.log:
                raise SearchSpaceError(f"{where}: 'step' and 'log' cannot be combined")
            if self.type == "int":
                if float(self.step) != int(self.step):
                    raise SearchSpaceError(f"{where}: 'step' of an int parameter must be a whole number")
                object.__setattr__(self, "step", int(self.step))
                if (self.high - self.low) % self.step:
                    raise SearchSpaceError(
                        f"{where}: high - low ({self.high - self.low}) is not a multiple of step ({self.step})"
                    )
            else:
                object.__setattr__(self, "step", float(self.step))
                n_steps = (self.high - self.low) / self.step
                if abs(n_steps - round(n_steps)) > 1e-8 * max(1.0, n_steps):
                    raise SearchSpaceError(
                        f"{where}: high - low ({self.high - self.low}) is not a multiple of step ({self.step})"
                    )

    # -- membership and the unit-interval encoding used by the non-Optuna searchers ----------------

    def contains(self, value: Any) -> bool:
        """Whether `value` is a value this parameter can take."""
        if self.type == "categorical":
            return self._choice_index(value) is not None
        if not is_number(value):
            return False
        if self.type == "int" and float(value) != int(value):
            return False
        if not (self.low <= value <= self.high):
            return False
        if self.step is not None:
            n_steps = (value - self.low) / self.step
            return abs(n_steps - round(n_steps)) <= 1e-6
        return True

    def _choice_index(self, value: Any) -> int | None:
        for index, choice in enumerate(self.choices or ()):
            if choice == value and isinstance(value, bool) == isinstance(choice, bool):
                return index
        return None

    def _n_grid(self) -> int:
        """Number of values of a stepped or linear int parameter."""
        step = self.step or 1
        return int(round((self.high - self.low) / step)) + 1

    def _log_int_edges(self) -> tuple[float, float]:
        return math.log(self.low - 0.5), math.log(self.high + 0.5)

    def from_unit(self, u: float) -> Any:
        """Map u in [0, 1] to a value: linear or log for ranges, equal-width buckets for discrete values."""
        u = min(max(float(u), 0.0), 1.0)
        if self.type == "categorical":
            return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]
        if self.type == "int" and self.log:
            lo, hi = self._log_int_edges()
            return int(min(max(round(math.exp(lo + u * (hi - lo))), self.low), self.high))
        if self.type == "int" or self.step is not None:
            n = self._n_grid()
            index = min(int(u * n), n - 1)
            value = self.low + index * (self.step or 1)
            return int(value) if self.type == "int" else min(float(value), self.high)
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return float(min(max(math.exp(lo + u * (hi - lo)), self.low), self.high))
        return float(self.low + u * (self.high - self.low))

    def to_unit(self, value: Any) -> float:
        """Inverse of `from_unit` (discrete values map to the middle of their bucket)."""
        if self.type == "categorical":
            index = self._choice_index(value)
            if index is None:
                raise SearcherError(f"{self.name}: {value!r} is not one of {list(self.choices)!r}")
            return (index + 0.5) / len(self.choices)
        if self.type == "int" and self.log:
            lo, hi = self._log_int_edges()
            return (math.log(value) - lo) / (hi - lo)
        if self.type == "int" or self.step is not None:
            n = self._n_grid()
            index = int(round((value - self.low) / (self.step or 1)))
            return (index + 0.5) / n
        if self.high == self.low:
            return 0.5
        if self.log:
            return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low)


_TOP_LEVEL_KEYS = ("parameters", "derived", "fixed", "description")
_KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class SearchSpace:
    """Sampled parameters, keys derived from them, and fixed keys.

    `derived` maps a key to an expression string over `{context}`, `{parameter}`, `{fixed}` and other
    derived keys; `context` holds outside numbers such as the teacher's shape.
    """

    params: tuple[Param, ...]
    derived: Mapping[str, str] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)
    source: str = "search space"
    _compiled: tuple[tuple[str, Expression], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "derived", dict(self.derived))
        object.__setattr__(self, "fixed", dict(self.fixed))
        object.__setattr__(self, "context", dict(self.context))
        where = self.source
        if not self.params:
            raise SearchSpaceError(f"{where}: parameters: a search space needs at least one parameter")
        seen: dict[str, str] = {}
        for section, keys in (
            ("parameters", [p.name for p in self.params]),
            ("derived", list(self.derived)),
            ("fixed", list(self.fixed)),
        ):
            for key in keys:
                if not isinstance(key, str) or not _KEY_PATTERN.match(key):
                    raise SearchSpaceError(
                        f"{where}: {section}.{key}: keys are names like section.field (e.g. distill.learning_rate) "
                        "or auxiliary names starting with '_' (e.g. _head_dim)"
                    )
                if key in seen:
                    raise SearchSpaceError(f"{where}: {section}.{key}: already defined in {seen[key]}")
                if key in self.context:
                    raise SearchSpaceError(f"{where}: {section}.{key}: clashes with the context value of that name")
                seen[key] = section
        for key in self.fixed:
            if key.startswith("_"):
                raise SearchSpaceError(f"{where}: fixed.{key}: fixed keys cannot be auxiliary ('_') names")
        compiled = {}
        for key, text in self.derived.items():
            if is_number(text):
                text = repr(text)
            if not isinstance(text, str):
                raise SearchSpaceError(f"{where}: derived.{key}: expected an expression string, got {text!r}")
            compiled[key] = Expression(text, f"{where}: derived.{key}")
        known = set(self.context) | {p.name for p in self.params} | set(self.fixed) | set(self.derived)
        for key, expression in compiled.items():
            unknown = expression.references - known
            if unknown:
                raise SearchSpaceError(
                    f"{where}: derived.{key}: unknown reference(s) "
                    f"{', '.join('{' + n + '}' for n in sorted(unknown))}; known: {', '.join(sorted(known))}"
                )
        object.__setattr__(self, "_compiled", tuple((key, compiled[key]) for key in _derived_order(compiled, where)))

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the sampled parameters, in order."""
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"{self.source}: no parameter {name!r}")

    def resolve(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """Sampled values + derived + fixed -> the full override dict (auxiliary '_' names dropped)."""
        missing = [name for name in self.names if name not in sampled]
        extra = [name for name in sampled if name not in self.names]
        if missing or extra:
            raise SearchSpaceError(
                f"{self.source}: sample does not match the space "
                f"(missing: {missing or 'none'}, unknown: {extra or 'none'})"
            )
        env: dict[str, Any] = {**self.context, **self.fixed}
        env.update({name: plain(sampled[name]) for name in self.names})
        for key, expression in self._compiled:
            env[key] = plain(expression.evaluate(env))
        resolved: dict[str, Any] = {name: env[name] for name in self.names if not name.startswith("_")}
        resolved.update({key: env[key] for key, _ in self._compiled if not key.startswith("_")})
        resolved.update(self.fixed)
        return resolved

    def sample_uniform(self, rng: np.random.Generator) -> dict[str, Any]:
        """One sample drawn uniformly in the unit encoding (log-uniform for log parameters)."""
        return {p.name: p.from_unit(rng.random()) for p in self.params}

    def contains(self, sampled: Mapping[str, Any]) -> bool:
        return set(sampled) == set(self.names) and all(p.contains(sampled[p.name]) for p in self.params)


def plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so resolved dicts are JSON- and YAML-friendly."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _derived_order(compiled: Mapping[str, Expression], where: str) -> list[str]:
    """Derived keys in an order where each comes after the derived keys it references."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(key: str, chain: list[str]) -> None:
        if state.get(key) == "done":
            return
        if state.get(key) == "visiting":
            cycle = " -> ".join(chain[chain.index(key):] + [key])
            raise SearchSpaceError(f"{where}: derived.{key}: derived keys reference each other in a cycle: {cycle}")
        state[key] = "visiting"
        for reference in sorted(compiled[key].references):
            if reference in compiled:
                visit(reference, chain + [key])
        state[key] = "done"
        order.append(key)

    for key in compiled:
        visit(key, [])
    return order


def parse_space(
    mapping: Mapping[str, Any], context: Mapping[str, float] | None = None, source: str = "search space"
) -> SearchSpace:
    """Build a SearchSpace from the YAML structure (see `load_space`); errors name `source` and the key."""
    if not isinstance(mapping, Mapping):
        raise SearchSpaceError(f"{source}: expected a mapping with keys {', '.join(_TOP_LEVEL_KEYS[:3])}")
    unknown = [key for key in mapping if key not in _TOP_LEVEL_KEYS]
    if unknown:
        raise SearchSpaceError(f"{source}: unknown top-level key(s) {unknown}; known: {', '.join(_TOP_LEVEL_KEYS)}")
    context = dict(context or {})
    for key, value in context.items():
        if not is_number(value):
            raise SearchSpaceError(f"{source}: context value {key!r} must be a number, got {value!r}")
    sections = {}
    for section in ("parameters", "derived", "fixed"):
        value = mapping.get(section) or {}
        if not isinstance(value, Mapping):
            raise SearchSpaceError(f"{source}: {section}: expected a mapping of key: value")
        sections[section] = dict(value)
    fixed = {key: (tuple(v) if isinstance(v, list) else v) for key, v in sections["fixed"].items()}
    bound_env = {**context, **{k: v for k, v in fixed.items() if is_number(v)}}
    params = []
    for name, spec in sections["parameters"].items():
        where = f"{source}: parameters.{name}"
        if not isinstance(spec, Mapping):
            raise SearchSpaceError(f"{where}: expected a mapping with {', '.join(_PARAM_FIELDS)}")
        bad_fields = [key for key in spec if key not in _PARAM_FIELDS]
        if bad_fields:
            raise SearchSpaceError(f"{where}: unknown field(s) {bad_fields}; known: {', '.join(_PARAM_FIELDS)}")
        if "type" not in spec:
            raise SearchSpaceError(f"{where}: missing 'type' ({', '.join(_PARAM_TYPES)})")
        values: dict[str, Any] = {"name": name, "type": spec["type"], "log": spec.get("log", False)}
        for key in ("low", "high", "step"):
            if spec.get(key) is not None:
                values[key] = constant_or_expression(spec[key], f"{where}.{key}", bound_env)
        if "choices" in spec:
            choices = spec["choices"]
            if not isinstance(choices, (list, tuple)):
                raise SearchSpaceError(f"{where}.choices: expected a list, got {choices!r}")
            values["choices"] = tuple(choices)
        try:
            params.append(Param(**values))
        except SearchSpaceError as error:
            raise SearchSpaceError(f"{source}: parameters.{error}") from None
    space = SearchSpace(
        params=tuple(params), derived=sections["derived"], fixed=fixed, context=context, source=source
    )
    _check_corners(space)
    return space


def _check_corners(space: SearchSpace) -> None:
    """Resolve a few extreme samples so that type errors in derived keys show up when the space loads."""
    for u in (0.0, 1.0, 0.5):
        space.resolve({p.name: p.from_unit(u) for p in space.params})
    for p in space.params:
        for choice in p.choices or ():
            sample = {q.name: q.from_unit(0.5) for q in space.params}
            sample[p.name] = choice
            space.resolve(sample)


def load_space(path: str | Path, context: Mapping[str, float] | None = None) -> SearchSpace:
    """Read a search space from YAML.

    Format:
        parameters:   # sampled; names are config keys or auxiliary '_names'
          distill.learning_rate: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
          student.num_hidden_layers: {type: int, low: 1, high: "{teacher.num_hidden_layers}"}
          _head_dim: {type: int, low: 16, high: 64, step: 16}
          student.init: {type: categorical, choices: [teacher, random]}
        derived:      # expressions over context, parameters, fixed and other derived keys
          student.hidden_size: "{student.num_attention_heads} * {_head_dim}"
        fixed:
          distill.num_train_epochs: 3
        description: free text (optional)

    Bounds may reference the context (e.g. the teacher's shape) and numeric fixed keys, never other
    parameters (write a derived key instead), so the space seen by the searchers is static.
    """
    path = Path(path)
    mapping = read_yaml(path, "search space file", SearchSpaceError)
    return parse_space(mapping, context, source=str(path))
