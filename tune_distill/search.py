"""Search spaces, multi-objective searchers with constraints, and Pareto maths.

What it does:
  * `load_space` reads a search space from YAML (sampled parameters, derived keys, fixed keys) and
    `SearchSpace.resolve` turns one sample into a flat override dict such as
    {"distill.learning_rate": 3e-5, "student.hidden_size": 256}. Bounds may be small arithmetic
    expressions over the teacher's shape (`{teacher.hidden_size}`); derived keys may also use the
    sampled parameters. A tiny whitelisted evaluator computes them (never `eval`), so impossible
    combinations are excluded by construction: sample heads and a head width, derive the hidden size.
  * `make_searcher` builds a searcher: a small ask/tell object with three methods (`suggest`,
    `observe`, `state`). Names: optuna-tpe, optuna-gp, nsga2, random (Optuna samplers driven through
    ask/tell), parego (hyperopt TPE on random augmented-Chebyshev scalarisations) and botorch
    (qLogNEHVI); `replay` suggests a given list of samples (fixed-trial comparisons, re-runs).
    Every searcher takes several objectives, each maximised or minimised, and
    constraints such as exact >= 55.4 (given to Optuna through `Trial.set_constraint`, the Optuna 5
    API); several trials may be pending at once; `state()` bytes restore a searcher exactly.
  * `optimize` runs any searcher on a plain Python objective (benchmarks, tests).
  * `non_dominated_sort`, `pareto_mask`, `hypervolume` (its reference points and per-point
    contributions), `crowding_distance`: pure numpy.

What it must not know: distillation, models, data or Ray. Values are plain named numbers
(objectives and constraint metrics); parameter keys are opaque strings to it (whether
"student.hidden_size" is a real config key is checked by the caller with
`tune_distill.config.apply_overrides`).

Example (CPU, a few seconds): preview five resolved samples of a shipped space for a
6-layer/384-wide/12-head teacher:
    python -m tune_distill.search configs/space_rich.yaml --samples 5
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import json
import logging
import math
import pickle
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Protocol, Sequence

import numpy as np
import yaml

from tune_distill.config import read_yaml
from tune_distill.pareto import (  # noqa: F401  (re-exported while callers move to tune_distill.pareto)
    crowding_distance,
    hypervolume,
    hypervolume_contributions,
    hypervolume_reference,
    is_feasible,
    nadir_reference,
    non_dominated_sort,
    pareto_mask,
    satisfies,
)

logger = logging.getLogger(__name__)

Direction = Literal["max", "min"]
TrialStatus = Literal["complete", "failed", "pruned"]

# The searcher used when none is named. Chosen with bench/searchers.py (results in
# bench/results/searchers.csv): Optuna's GPSampler reaches 96.0 +- 0.6% of the best attainable
# hypervolume on Branin-Currin after 60 evaluations (10 seeds; target 95%), 99.7% on ZDT1, 94.2% on
# ZDT2 and 65.5% on DTLZ2 (where multivariate TPE does best, 70.8%), the best mean gain over random
# search of all searchers, with no extra dependency and ~10-30 s of CPU per 60-trial sweep.
DEFAULT_SEARCHER = "optuna-gp"

SEARCHER_NAMES = ("optuna-tpe", "optuna-gp", "parego", "nsga2", "random", "botorch", "replay")
# `replay` re-runs a given list of samples (option `trials`); it searches nothing, so the benchmarks skip it.
SEARCH_ALGORITHMS = tuple(name for name in SEARCHER_NAMES if name != "replay")

# Shape of the teacher that the shipped spaces are checked against and that the CLI previews with.
EXAMPLE_TEACHER_CONTEXT = {
    "teacher.num_hidden_layers": 6,
    "teacher.hidden_size": 384,
    "teacher.num_attention_heads": 12,
    "teacher.intermediate_size": 1536,
}


class SearchSpaceError(ValueError):
    """A search space that cannot be used; the message names the file (if any) and the key."""


class SearcherError(ValueError):
    """A searcher asked to do something impossible (unknown name, unknown trial, bad values)."""


# --------------------------------------------------------------------------------------------------
# Objectives and constraints
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Objective:
    """A metric to optimise, e.g. Objective("exact", "max")."""

    name: str
    direction: Direction

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SearcherError(f"objective name must be a non-empty string, got {self.name!r}")
        if self.direction not in ("max", "min"):
            raise SearcherError(f"objective {self.name!r}: direction must be 'max' or 'min', got {self.direction!r}")


@dataclass(frozen=True)
class Constraint:
    """A metric bound, e.g. Constraint("exact", ">=", 55.4); a trial is feasible when every one holds."""

    name: str
    op: Literal[">=", "<="]
    bound: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SearcherError(f"constraint name must be a non-empty string, got {self.name!r}")
        if self.op not in (">=", "<="):
            raise SearcherError(f"constraint {self.name!r}: op must be '>=' or '<=', got {self.op!r}")
        if isinstance(self.bound, bool) or not isinstance(self.bound, (int, float)) or not math.isfinite(self.bound):
            raise SearcherError(f"constraint {self.name!r}: bound must be a finite number, got {self.bound!r}")

    def violation(self, value: float) -> float:
        """How far `value` is on the wrong side of the bound: <= 0 when satisfied (Optuna's convention)."""
        return float(self.bound - value) if self.op == ">=" else float(value - self.bound)

    def satisfied(self, value: float) -> bool:
        return satisfies(value, self.op, self.bound)


# --------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------

_PARAM_TYPES = ("float", "int", "categorical")
_PARAM_FIELDS = ("type", "low", "high", "log", "choices", "step")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


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
            if not _is_number(value) or not math.isfinite(value):
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
            if not _is_number(self.step) or not self.step > 0:
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

    @property
    def is_aux(self) -> bool:
        return self.name.startswith("_")

    def contains(self, value: Any) -> bool:
        """Whether `value` is a value this parameter can take."""
        if self.type == "categorical":
            return self._choice_index(value) is not None
        if not _is_number(value):
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


# --------------------------------------------------------------------------------------------------
# The safe expression evaluator
# --------------------------------------------------------------------------------------------------

_REFERENCE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}")
_BINARY_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
}
_COMPARE_OPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}


def _round_half_up(value: float, ndigits: int | None = None) -> float | int:
    """round() that sends halves up (2.5 -> 3), unlike Python's round-half-to-even."""
    if ndigits is None:
        return int(math.floor(value + 0.5))
    scale = 10.0**ndigits
    return math.floor(value * scale + 0.5) / scale


_FUNCTIONS: dict[str, Callable[..., Any]] = {"min": min, "max": max, "round": _round_half_up, "int": int}


class _Expression:
    """An arithmetic expression over `{name}` references, checked at load time, evaluated safely.

    Allowed: numbers, quoted strings, {references}, + - * / // %, unary minus, min(), max(),
    round() (halves up), int() (truncates), comparisons and `a if condition else b`.
    Anything else (attribute access, other calls, bare names, **) is rejected when the space loads.
    """

    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where
        placeholders: dict[str, str] = {}

        def substitute(match: re.Match) -> str:
            name = match.group(1)
            return placeholders.setdefault(name, f"__ref{len(placeholders)}__")

        python_text = _REFERENCE.sub(substitute, text)
        if "{" in python_text or "}" in python_text:
            raise SearchSpaceError(f"{where}: malformed reference in {text!r}; write references as {{section.field}}")
        try:
            self._tree = ast.parse(python_text.strip(), mode="eval")
        except SyntaxError:
            raise SearchSpaceError(f"{where}: {text!r} is not a valid expression") from None
        self._names = {placeholder: name for name, placeholder in placeholders.items()}
        self._check(self._tree.body)

    @property
    def references(self) -> set[str]:
        return set(self._names.values())

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float, str)):
                raise SearchSpaceError(f"{self.where}: constant {node.value!r} is not allowed in {self.text!r}")
        elif isinstance(node, ast.Name):
            if node.id not in self._names:
                raise SearchSpaceError(
                    f"{self.where}: unknown name {node.id!r} in {self.text!r}; reference values as {{section.field}}"
                )
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY_OPS:
                raise SearchSpaceError(
                    f"{self.where}: operator {type(node.op).__name__} is not allowed in {self.text!r}"
                )
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                raise SearchSpaceError(
                    f"{self.where}: operator {type(node.op).__name__} is not allowed in {self.text!r}"
                )
            self._check(node.operand)
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords:
                raise SearchSpaceError(
                    f"{self.where}: only {', '.join(_FUNCTIONS)} may be called (positional arguments) in {self.text!r}"
                )
            if not node.args or any(isinstance(arg, ast.Starred) for arg in node.args):
                raise SearchSpaceError(f"{self.where}: {node.func.id}() needs plain arguments in {self.text!r}")
            for arg in node.args:
                self._check(arg)
        elif isinstance(node, ast.Compare):
            if any(type(op) not in _COMPARE_OPS for op in node.ops):
                raise SearchSpaceError(f"{self.where}: only == != < <= > >= comparisons are allowed in {self.text!r}")
            for child in (node.left, *node.comparators):
                self._check(child)
        elif isinstance(node, ast.IfExp):
            for child in (node.test, node.body, node.orelse):
                self._check(child)
        else:
            raise SearchSpaceError(f"{self.where}: {type(node).__name__} is not allowed in {self.text!r}")

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        try:
            return self._eval(self._tree.body, env)
        except SearchSpaceError:
            raise
        except Exception as error:  # ZeroDivisionError, TypeError (e.g. "a" * 1.5), ...
            values = {name: env.get(name) for name in sorted(self.references)}
            raise SearchSpaceError(f"{self.where}: {self.text!r} failed with {values}: {error}") from None

    def _eval(self, node: ast.AST, env: Mapping[str, Any]) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            name = self._names[node.id]
            if name not in env:
                raise SearchSpaceError(f"{self.where}: {{{name}}} has no value here")
            return env[name]
        if isinstance(node, ast.BinOp):
            return _BINARY_OPS[type(node.op)](self._eval(node.left, env), self._eval(node.right, env))
        if isinstance(node, ast.UnaryOp):
            operand = self._eval(node.operand, env)
            return -operand if isinstance(node.op, ast.USub) else +operand
        if isinstance(node, ast.Call):
            return _FUNCTIONS[node.func.id](*(self._eval(arg, env) for arg in node.args))
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, env)
            for op, comparator in zip(node.ops, node.comparators):
                right = self._eval(comparator, env)
                if not _COMPARE_OPS[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return self._eval(node.body if self._eval(node.test, env) else node.orelse, env)
        raise SearchSpaceError(f"{self.where}: cannot evaluate {type(node).__name__}")  # pragma: no cover


def _constant_or_expression(raw: Any, where: str, env: Mapping[str, Any]) -> Any:
    """A bound as written in YAML: a number, or an expression string over the context and fixed keys."""
    if _is_number(raw):
        return raw
    if isinstance(raw, str):
        try:
            return float(raw)  # PyYAML reads 1e-5 (no dot) as a string
        except ValueError:
            pass
        expression = _Expression(raw, where)
        unknown = expression.references - set(env)
        if unknown:
            raise SearchSpaceError(
                f"{where}: {raw!r} references {', '.join('{' + n + '}' for n in sorted(unknown))}, which is not a "
                f"context value or fixed key (known: {', '.join(sorted(env)) or 'none'}); bounds cannot depend on "
                "other parameters: sample a ratio and write a derived key instead"
            )
        return expression.evaluate(env)
    raise SearchSpaceError(f"{where}: expected a number or an expression string, got {raw!r}")


# --------------------------------------------------------------------------------------------------
# Search spaces
# --------------------------------------------------------------------------------------------------

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
    _compiled: tuple[tuple[str, _Expression], ...] = field(init=False, repr=False, compare=False)

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
        for key, value in self.fixed.items():
            if key.startswith("_"):
                raise SearchSpaceError(f"{where}: fixed.{key}: fixed keys cannot be auxiliary ('_') names")
        compiled = {}
        for key, text in self.derived.items():
            if _is_number(text):
                text = repr(text)
            if not isinstance(text, str):
                raise SearchSpaceError(f"{where}: derived.{key}: expected an expression string, got {text!r}")
            compiled[key] = _Expression(text, f"{where}: derived.{key}")
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
        env.update({name: _plain(sampled[name]) for name in self.names})
        for key, expression in self._compiled:
            env[key] = _plain(expression.evaluate(env))
        resolved: dict[str, Any] = {name: env[name] for name in self.names if not name.startswith("_")}
        resolved.update({key: env[key] for key, _ in self._compiled if not key.startswith("_")})
        resolved.update(self.fixed)
        return resolved

    def sample_uniform(self, rng: np.random.Generator) -> dict[str, Any]:
        """One sample drawn uniformly in the unit encoding (log-uniform for log parameters)."""
        return {p.name: p.from_unit(rng.random()) for p in self.params}

    def contains(self, sampled: Mapping[str, Any]) -> bool:
        return set(sampled) == set(self.names) and all(p.contains(sampled[p.name]) for p in self.params)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so resolved dicts are JSON- and YAML-friendly."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _derived_order(compiled: Mapping[str, _Expression], where: str) -> list[str]:
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
        if not _is_number(value):
            raise SearchSpaceError(f"{source}: context value {key!r} must be a number, got {value!r}")
    sections = {}
    for section in ("parameters", "derived", "fixed"):
        value = mapping.get(section) or {}
        if not isinstance(value, Mapping):
            raise SearchSpaceError(f"{source}: {section}: expected a mapping of key: value")
        sections[section] = dict(value)
    fixed = {key: (tuple(v) if isinstance(v, list) else v) for key, v in sections["fixed"].items()}
    bound_env = {**context, **{k: v for k, v in fixed.items() if _is_number(v)}}
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
                values[key] = _constant_or_expression(spec[key], f"{where}.{key}", bound_env)
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


# --------------------------------------------------------------------------------------------------
# Searchers
# --------------------------------------------------------------------------------------------------


class Searcher(Protocol):
    """Ask/tell interface shared by every searcher.

    suggest(trial_id) -> sampled parameters (feed them to `SearchSpace.resolve`), or None when the
        searcher has nothing more to propose. May be called again before earlier trials are observed.
    observe(trial_id, values, status) -> record a finished trial: `values` maps every objective and
        constraint metric name to a number; failed trials pass values=None and status="failed".
    state() -> bytes from which `restore_searcher` rebuilds the searcher, pending trials included,
        so that a resumed sweep continues exactly as the uninterrupted one would.
    """

    def suggest(self, trial_id: str) -> dict[str, Any] | None: ...

    def observe(
        self, trial_id: str, values: Mapping[str, float] | None, status: TrialStatus = "complete"
    ) -> None: ...

    def state(self) -> bytes: ...


_STATE_HEADER = b"tune_distill.search.state/1\n"


def restore_searcher(state: bytes) -> Searcher:
    """Rebuild a searcher from `Searcher.state()` bytes (trusted input: it is a pickle)."""
    if not isinstance(state, (bytes, bytearray)) or not bytes(state).startswith(_STATE_HEADER):
        raise SearcherError("not a searcher state written by tune_distill.search (missing header)")
    return pickle.loads(bytes(state)[len(_STATE_HEADER):])


@dataclass
class _Outcome:
    """A finished trial as the searchers see it: objective values (as given) and constraint violations."""

    status: TrialStatus
    objective_values: tuple[float, ...] | None = None
    violations: tuple[float, ...] | None = None


def _read_outcome(
    trial_id: str,
    values: Mapping[str, float] | None,
    status: str,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint],
) -> _Outcome:
    if status not in ("complete", "failed", "pruned"):
        raise SearcherError(f"trial {trial_id}: status must be complete, failed or pruned, got {status!r}")
    if status != "complete":
        return _Outcome(status)
    if values is None:
        logger.warning("trial %s: status 'complete' without values; recorded as failed", trial_id)
        return _Outcome("failed")
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
        return _Outcome("failed")
    return _Outcome(
        "complete",
        tuple(numbers[o.name] for o in objectives),
        tuple(c.violation(numbers[c.name]) for c in constraints),
    )


class _SearcherBase:
    """Bookkeeping shared by all searchers: trial ids, pending trials, state bytes."""

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

    def state(self) -> bytes:
        return _STATE_HEADER + pickle.dumps(self)


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


class _HistorySearcher(_SearcherBase):
    """Searchers that keep their own history: suggestions in the unit cube, outcomes by trial id."""

    def __init__(self, space, objectives, constraints, seed) -> None:
        super().__init__(space, objectives, constraints, seed)
        self._rng = np.random.default_rng(self.seed)
        self._pending: dict[str, dict[str, Any]] = {}
        self._completed: list[tuple[dict[str, Any], np.ndarray, np.ndarray]] = []  # params, minimised y, violations
        self._n_failed = 0
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
        outcome = _read_outcome(trial_id, values, status, self.objectives, self.constraints)
        params = self._pending.pop(trial_id)
        if outcome.status == "complete":
            signs = np.array([-1.0 if o.direction == "max" else 1.0 for o in self.objectives])
            self._completed.append(
                (params, signs * np.array(outcome.objective_values), np.array(outcome.violations, dtype=float))
            )
        else:
            self._n_failed += 1

    def _history_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit-cube X, minimised Y and violations V of the completed trials."""
        X = np.array([[p.to_unit(params[p.name]) for p in self.space.params] for params, _, _ in self._completed])
        Y = np.array([y for _, y, _ in self._completed])
        V = np.array([v for _, _, v in self._completed]).reshape(len(self._completed), len(self.constraints))
        return X.reshape(len(self._completed), len(self.space.params)), Y, V

    def _propose(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


class ReplaySearcher(_HistorySearcher):
    """Suggests a given list of samples in order, then nothing: not a search, a re-run.

    For comparisons that must hold the trials fixed (the same students with and without early
    stopping in bench/early_stopping.py) and for re-running chosen points of an earlier sweep (with
    another seed, say). `trials` is a list of samples as searchers suggest them (the
    `params` of a sweep's trials.jsonl); each is checked against the space when the searcher is built.
    Observations are recorded and change nothing.
    """

    def __init__(self, space, objectives, constraints, seed, trials: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(space, objectives, constraints, seed)
        if isinstance(trials, (str, bytes)) or not isinstance(trials, Sequence) or not trials:
            raise SearcherError("searcher 'replay': option 'trials' must be a non-empty list of samples, "
                                f"got {type(trials).__name__}")
        checked = []
        for index, sample in enumerate(trials):
            if not isinstance(sample, Mapping):
                raise SearcherError(f"searcher 'replay': trials[{index}] must be a mapping of parameter "
                                    f"values, got {type(sample).__name__}")
            missing = sorted(set(space.names) - set(sample))
            unknown = sorted(set(sample) - set(space.names))
            if missing or unknown:
                raise SearcherError(f"searcher 'replay': trials[{index}]: missing {missing}, unknown {unknown} "
                                    f"(the space samples {list(space.names)})")
            for param in space.params:
                if not param.contains(sample[param.name]):
                    raise SearcherError(f"searcher 'replay': trials[{index}].{param.name}: {sample[param.name]!r} "
                                        "is outside the space")
            checked.append(dict(sample))
        self._trials = checked

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._n_suggested >= len(self._trials):
            return None
        return super().suggest(trial_id)

    def _propose(self) -> dict[str, Any]:
        return dict(self._trials[self._n_suggested])


class ParEGOSearcher(_HistorySearcher):
    """hyperopt TPE on ParEGO scalarisations: a fresh random weight vector for every suggestion.

    Objectives are normalised to [0, 1] over the observed trials (all made minimised), then combined
    with the augmented Chebyshev function max_j(w_j f_j) + rho * sum_j(w_j f_j) (Knowles 2006); weight
    vectors are drawn uniformly from the simplex. Infeasible trials score 2 + rho + the sum of their
    normalised violations, so every feasible trial beats every infeasible one and less violation is
    better. Numeric parameters are modelled in the unit encoding (log-uniform for log parameters),
    categorical ones with hp.choice.
    """

    def __init__(
        self, space, objectives, constraints, seed, n_startup_trials: int = 10, rho: float = 0.05,
        n_ei_candidates: int = 24, gamma: float = 0.25,
    ) -> None:
        import hyperopt  # noqa: F401  (fail early with ImportError if missing)

        super().__init__(space, objectives, constraints, seed)
        self.n_startup_trials = int(n_startup_trials)
        self.rho = float(rho)
        self.n_ei_candidates = int(n_ei_candidates)
        self.gamma = float(gamma)
        self._domain = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_domain"] = None  # rebuilt on demand
        return state

    def _hyperopt_domain(self):
        from hyperopt import Domain, hp

        if self._domain is None:
            space = {
                p.name: hp.choice(p.name, list(range(len(p.choices)))) if p.type == "categorical"
                else hp.uniform(p.name, 0.0, 1.0)
                for p in self.space.params
            }
            logging.getLogger("hyperopt").setLevel(logging.WARNING)
            self._domain = Domain(lambda _: 0.0, space)
        return self._domain

    def _encode(self, params: Mapping[str, Any]) -> dict[str, float | int]:
        encoded = {}
        for p in self.space.params:
            if p.type == "categorical":
                encoded[p.name] = p._choice_index(params[p.name])
            else:
                encoded[p.name] = p.to_unit(params[p.name])
        return encoded

    def _scalarised_losses(self, weights: np.ndarray) -> np.ndarray:
        _, Y, V = self._history_arrays()
        return _parego_scores(Y, V, weights, self.rho)

    def _propose(self) -> dict[str, Any]:
        from hyperopt import JOB_STATE_DONE, STATUS_OK, Trials, tpe

        weights = self._rng.dirichlet(np.ones(len(self.objectives)))
        hyperopt_seed = int(self._rng.integers(2**31 - 1))
        trials = Trials()
        if self._completed:
            losses = self._scalarised_losses(weights)
            docs = []
            for tid, ((params, _, _), loss) in enumerate(zip(self._completed, losses)):
                vals = self._encode(params)
                misc = {
                    "tid": tid,
                    "cmd": ("domain_attachment", "FMinIter_Domain"),
                    "workdir": None,
                    "idxs": {name: [tid] for name in vals},
                    "vals": {name: [value] for name, value in vals.items()},
                }
                (doc,) = trials.new_trial_docs([tid], [None], [{"status": STATUS_OK, "loss": float(loss)}], [misc])
                doc["state"] = JOB_STATE_DONE
                docs.append(doc)
            trials.insert_trial_docs(docs)
            trials.refresh()
        (new_doc,) = tpe.suggest(
            [len(self._completed)],
            self._hyperopt_domain(),
            trials,
            hyperopt_seed,
            n_startup_jobs=self.n_startup_trials,
            n_EI_candidates=self.n_ei_candidates,
            gamma=self.gamma,
            verbose=False,
        )
        vals = {name: value[0] for name, value in new_doc["misc"]["vals"].items()}
        params = {}
        for p in self.space.params:
            value = vals[p.name]
            params[p.name] = p.choices[int(value)] if p.type == "categorical" else p.from_unit(float(value))
        return params


def _parego_scores(Y: np.ndarray, V: np.ndarray, weights: np.ndarray, rho: float) -> np.ndarray:
    """Augmented Chebyshev scores of minimised objectives Y (n x m); violations V (n x c) penalised."""
    low, high = Y.min(axis=0), Y.max(axis=0)
    normalised = (Y - low) / np.where(high > low, high - low, 1.0)
    weighted = normalised * weights
    scores = weighted.max(axis=1) + rho * weighted.sum(axis=1)
    if V.size:
        positive = np.clip(V, 0.0, None)
        scale = positive.max(axis=0)
        penalty = (positive / np.where(scale > 0, scale, 1.0)).sum(axis=1)
        infeasible = (V > 0).any(axis=1)
        scores = np.where(infeasible, 2.0 + rho + penalty, scores)
    return scores


class BoTorchSearcher(_HistorySearcher):
    """qLogNEHVI (BoTorch) with constraint models, over the unit-cube encoding of the space.

    One independent GP per objective and per constraint (SingleTaskGP, standardised outcomes);
    constraints enter the acquisition function as outcomes that must stay <= 0; pending trials are
    passed as X_pending. The hypervolume reference point is `reference_point` ({objective: value},
    e.g. the worst acceptable exact) when given, else the worst feasible observation minus 10% of
    the observed range. Discrete and categorical parameters are optimised as equal-width buckets of
    [0, 1] (a simple relaxation). Start-up points come from a scrambled Sobol sequence.
    """

    def __init__(
        self, space, objectives, constraints, seed, n_startup_trials: int | None = None, num_restarts: int = 8,
        raw_samples: int = 256, mc_samples: int = 128, maxiter: int = 100,
        reference_point: Mapping[str, float] | None = None,
    ) -> None:
        import botorch  # noqa: F401
        import torch

        super().__init__(space, objectives, constraints, seed)
        dimension = len(space.params)
        self.n_startup_trials = int(n_startup_trials if n_startup_trials is not None else max(5, 2 * (dimension + 1)))
        self.num_restarts = int(num_restarts)
        self.raw_samples = int(raw_samples)
        self.mc_samples = int(mc_samples)
        self.maxiter = int(maxiter)
        if reference_point is not None:
            missing = [o.name for o in self.objectives if o.name not in reference_point]
            if missing:
                raise SearcherError(f"botorch: reference_point lacks {missing}")
            reference_point = {name: float(value) for name, value in reference_point.items()}
        self.reference_point = reference_point
        engine = torch.quasirandom.SobolEngine(dimension=dimension, scramble=True, seed=self.seed)
        self._sobol = engine.draw(self.n_startup_trials, dtype=torch.float64).numpy()
        self._hyperparameters: dict[str, Any] | None = None

    def _propose(self) -> dict[str, Any]:
        if self._n_suggested < self.n_startup_trials:
            point = self._sobol[self._n_suggested]
        elif len(self._completed) < 2:
            point = self._rng.random(len(self.space.params))
        else:
            call_seed = int(self._rng.integers(2**31 - 1))
            try:
                point = self._optimise_acquisition(call_seed)
            except Exception as error:  # a failed GP fit must not end the sweep
                logger.warning(
                    "botorch: acquisition failed (%s: %s); suggesting a random point", type(error).__name__, error
                )
                point = self._rng.random(len(self.space.params))
        return {p.name: p.from_unit(u) for p, u in zip(self.space.params, point)}

    def _optimise_acquisition(self, call_seed: int) -> np.ndarray:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny matrices: one thread is faster and does not fight other work
        try:
            with torch.random.fork_rng(), warnings.catch_warnings():
                # Jitter and optimiser-restart warnings are routine on noise-free data; results are checked.
                warnings.simplefilter("ignore")
                torch.manual_seed(call_seed)
                return self._optimise_acquisition_seeded(call_seed)
        finally:
            torch.set_num_threads(threads)

    def _optimise_acquisition_seeded(self, call_seed: int) -> np.ndarray:
        import torch
        from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
        from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms.outcome import Standardize
        from botorch.optim import optimize_acqf
        from botorch.sampling import SobolQMCNormalSampler
        from gpytorch.mlls import ExactMarginalLogLikelihood

        X_np, Y_np, V_np = self._history_arrays()
        n_objectives = Y_np.shape[1]
        X = torch.tensor(X_np, dtype=torch.float64)
        # BoTorch maximises: negate the minimised objectives; constraint outcomes stay "<= 0 is feasible".
        outcomes = torch.tensor(np.concatenate([-Y_np, V_np], axis=1), dtype=torch.float64)
        model = SingleTaskGP(X, outcomes, outcome_transform=Standardize(m=outcomes.shape[-1]))
        if self._hyperparameters is not None:  # warm start from the previous fit: fewer L-BFGS steps
            model.load_state_dict(self._hyperparameters, strict=False)
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        self._hyperparameters = {
            key: value.detach().clone()
            for key, value in model.state_dict().items()
            if key.startswith(("covar_module.", "likelihood.", "mean_module."))
        }
        if self.reference_point is not None:
            signs = [1.0 if o.direction == "max" else -1.0 for o in self.objectives]
            reference = torch.tensor([sign * self.reference_point[o.name] for sign, o in zip(signs, self.objectives)])
        else:
            feasible = (outcomes[:, n_objectives:] <= 0).all(dim=-1)
            observed = outcomes[feasible, :n_objectives] if feasible.any() else outcomes[:, :n_objectives]
            reference = _reference_point(observed)
        pending = [[p.to_unit(params[p.name]) for p in self.space.params] for params in self._pending.values()]
        constraints = [(lambda Z, column=n_objectives + j: Z[..., column]) for j in range(V_np.shape[1])]
        acquisition = qLogNoisyExpectedHypervolumeImprovement(
            model=model,
            ref_point=reference.tolist(),
            X_baseline=X,
            sampler=SobolQMCNormalSampler(sample_shape=torch.Size([self.mc_samples]), seed=call_seed),
            objective=IdentityMCMultiOutputObjective(outcomes=list(range(n_objectives))),
            constraints=constraints or None,
            X_pending=torch.tensor(pending, dtype=torch.float64) if pending else None,
            prune_baseline=True,
        )
        dimension = X.shape[-1]
        bounds = torch.stack([torch.zeros(dimension), torch.ones(dimension)]).to(torch.float64)
        candidate, _ = optimize_acqf(
            acquisition,
            bounds=bounds,
            q=1,
            num_restarts=self.num_restarts,
            raw_samples=self.raw_samples,
            options={"batch_limit": 5, "maxiter": self.maxiter},
            retry_on_optimization_warning=False,
        )
        return candidate.detach().numpy().reshape(-1)


def _reference_point(observed):
    """Hypervolume reference for maximised outcomes: the worst observed values minus 10% of the range.

    Anchoring the reference at the observed front instead (BoTorch's infer_reference_point) leaves a
    box too small to improve when the front is one point or lies on a concave curve (ZDT2 stalled at
    its corner point (0, 1) for every seed); the worst observations keep the whole front worth
    improving. Optuna's samplers use the same "worst point" convention.
    """
    import torch

    spread = observed.max(dim=0).values - observed.min(dim=0).values
    worst = observed.min(dim=0).values
    spread = torch.where(spread > 0, spread, worst.abs().clamp_min(1e-6))
    return worst - 0.1 * spread


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
            sampler = _optuna_sampler(name, int(seed), dict(options))
            searcher = OptunaSearcher(space, objectives, constraints, seed, sampler, label=name)
    except TypeError as error:
        raise SearcherError(f"searcher {name!r}: bad option(s) {sorted(options)}: {error}") from None
    logger.debug("searcher %s (seed %d, options %s) over %s", name, seed, options, space.names)
    return searcher


def parse_searcher_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """'optuna-gp:n_startup_trials=8:deterministic_objective=true' -> ('optuna-gp', {...}); values read as YAML."""
    name, *settings = spec.split(":")
    options = {}
    for setting in settings:
        if "=" not in setting:
            raise SearcherError(f"searcher spec {spec!r}: expected name:key=value[:key=value...]")
        key, raw = setting.split("=", 1)
        options[key.strip()] = yaml.safe_load(raw)
    return name.strip(), options


# --------------------------------------------------------------------------------------------------
# Running a searcher on a Python function
# --------------------------------------------------------------------------------------------------


@dataclass
class TrialRecord:
    """One evaluated trial: what was sampled, what the objective saw, and what came back."""

    trial_id: str
    params: dict[str, Any]
    config: dict[str, Any]
    values: dict[str, float] | None
    status: TrialStatus
    feasible: bool | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def optimize(
    objective_fn: Callable[[dict[str, Any]], Mapping[str, float]],
    space: SearchSpace,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint] = (),
    searcher: str | Searcher = "optuna-tpe",
    n_trials: int = 60,
    seed: int = 0,
    batch_size: int = 1,
    **searcher_options: Any,
) -> list[TrialRecord]:
    """Run `searcher` for `n_trials` evaluations of `objective_fn(space.resolve(sample))`.

    `batch_size` trials are suggested before any of them is observed (as parallel workers would).
    An exception in `objective_fn`, a missing or non-finite metric: a failed trial, not an error.
    """
    if n_trials < 0 or batch_size < 1:
        raise SearcherError(f"need n_trials >= 0 and batch_size >= 1, got {n_trials} and {batch_size}")
    if isinstance(searcher, str):
        searcher = make_searcher(searcher, space, objectives, constraints, seed=seed, **searcher_options)
    elif searcher_options:
        raise SearcherError("searcher options apply only when the searcher is given by name")
    needed = [o.name for o in objectives] + [c.name for c in constraints if c.name not in {o.name for o in objectives}]
    records: list[TrialRecord] = []
    while len(records) < n_trials:
        batch = []
        for _ in range(min(batch_size, n_trials - len(records))):
            trial_id = f"trial_{len(records) + len(batch):04d}"
            params = searcher.suggest(trial_id)
            if params is None:
                break
            batch.append((trial_id, params))
        if not batch:
            logger.info("searcher has no more suggestions after %d trials", len(records))
            break
        finished = [_evaluate(objective_fn, space, trial_id, params, needed, constraints) for trial_id, params in batch]
        for record in finished:
            searcher.observe(record.trial_id, record.values if record.status == "complete" else None, record.status)
            records.append(record)
            logger.debug("%s %s %s %s", record.trial_id, record.status, record.values, record.params)
    n_failed = sum(r.status == "failed" for r in records)
    logger.info("optimize: %d trials, %d failed", len(records), n_failed)
    return records


def _evaluate(objective_fn, space, trial_id, params, needed, constraints) -> TrialRecord:
    config = space.resolve(params)
    try:
        raw = objective_fn(dict(config))
        values = {name: float(raw[name]) for name in needed}
        extra = {name: float(value) for name, value in raw.items() if name not in values and _is_number(value)}
        values.update(extra)
    except Exception as error:  # the objective failing is data, not a crash
        return TrialRecord(trial_id, params, config, None, "failed", error=f"{type(error).__name__}: {error}")
    if not all(math.isfinite(values[name]) for name in needed):
        return TrialRecord(trial_id, params, config, values, "failed", error="non-finite metric")
    return TrialRecord(trial_id, params, config, values, "complete", feasible=is_feasible(values, constraints))


# --------------------------------------------------------------------------------------------------
# CLI: preview a space
# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Load a search space and print resolved random samples.")
    parser.add_argument("space", help="search space YAML")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--context", action="append", default=[], metavar="KEY=NUMBER",
        help="teacher shape, e.g. teacher.hidden_size=768 (default: a 6-layer, 384-wide, 12-head teacher)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    context = dict(EXAMPLE_TEACHER_CONTEXT)
    for item in args.context:
        key, _, raw = item.partition("=")
        context[key.strip()] = yaml.safe_load(raw)
    try:
        space = load_space(args.space, context)
    except SearchSpaceError as error:
        sys.exit(f"error: {error}")
    rng = np.random.default_rng(args.seed)
    for _ in range(args.samples):
        print(json.dumps(space.resolve(space.sample_uniform(rng)), sort_keys=True))


if __name__ == "__main__":
    main()
