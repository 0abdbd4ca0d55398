"""The safe expression evaluator behind search-space bounds and derived keys.

What it does: `Expression("{student.num_attention_heads} * {_head_dim}", where)` parses a small
arithmetic expression over `{name}` references once, rejects anything outside a whitelist when the
space loads (never `eval`), and evaluates it against a mapping of values; `constant_or_expression`
reads a YAML bound (a number or such an expression over the context and fixed keys).

What it must not know: search spaces, searchers, configuration keys or files. References are
opaque names; the caller supplies their values.

Example (CPU, instant):
    python -c "from tune_distill.search.expression import Expression as E; \\
print(E('round({a} * 2.5)', 'x').evaluate({'a': 1}))"
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any, Callable, Mapping

import numpy as np

from tune_distill.search.errors import SearchSpaceError


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


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
# Resource bounds: an expression is a line of a YAML file, its values are layer counts, widths and rates.
MAX_TEXT = 2000  # characters of an expression
MAX_DEPTH = 50  # nesting of its syntax tree
MAX_STRING = 1000  # characters of any string it holds or makes
MAX_MAGNITUDE = 10**15  # largest absolute number it may make (far above any width, count or step)


class Expression:
    """An arithmetic expression over `{name}` references, checked at load time, evaluated safely.

    Allowed: numbers, quoted strings, {references}, + - * / // % on numbers (+ also joins two strings),
    unary minus, min(), max(), round() (halves up), int() (truncates), comparisons and
    `a if condition else b`. Anything else (attribute access, other calls, bare names, **) is rejected
    when the space loads; string repetition and %-formatting, numbers beyond MAX_MAGNITUDE (or not
    finite), strings longer than MAX_STRING and trees deeper than MAX_DEPTH are errors too.
    """

    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where
        placeholders: dict[str, str] = {}

        def substitute(match: re.Match) -> str:
            name = match.group(1)
            return placeholders.setdefault(name, f"__ref{len(placeholders)}__")

        if len(text) > MAX_TEXT:
            raise SearchSpaceError(f"{where}: expression of {len(text)} characters; at most {MAX_TEXT} allowed")
        python_text = _REFERENCE.sub(substitute, text)
        if "{" in python_text or "}" in python_text:
            raise SearchSpaceError(f"{where}: malformed reference in {text!r}; write references as {{section.field}}")
        try:
            self._tree = ast.parse(python_text.strip(), mode="eval")
        except SyntaxError:
            raise SearchSpaceError(f"{where}: {text!r} is not a valid expression") from None
        except (RecursionError, MemoryError):
            raise SearchSpaceError(f"{where}: {text!r} is nested too deeply (at most {MAX_DEPTH} levels)") from None
        self._names = {placeholder: name for name, placeholder in placeholders.items()}
        self._check(self._tree.body)

    @property
    def references(self) -> set[str]:
        return set(self._names.values())

    def _check(self, node: ast.AST, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            raise SearchSpaceError(f"{self.where}: {self.text!r} is nested too deeply (at most {MAX_DEPTH} levels)")
        check = lambda child: self._check(child, depth + 1)  # noqa: E731
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float, str)):
                raise SearchSpaceError(f"{self.where}: constant {node.value!r} is not allowed in {self.text!r}")
            self._bounded(node.value)
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
            texts = [isinstance(side, ast.Constant) and isinstance(side.value, str) for side in (node.left, node.right)]
            if any(texts) and not isinstance(node.op, ast.Add):
                raise SearchSpaceError(f"{self.where}: string repetition and formatting ({type(node.op).__name__} "
                                       f"on a string) are not allowed in {self.text!r}")
            check(node.left)
            check(node.right)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                raise SearchSpaceError(
                    f"{self.where}: operator {type(node.op).__name__} is not allowed in {self.text!r}"
                )
            check(node.operand)
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords:
                raise SearchSpaceError(
                    f"{self.where}: only {', '.join(_FUNCTIONS)} may be called (positional arguments) in {self.text!r}"
                )
            if not node.args or any(isinstance(arg, ast.Starred) for arg in node.args):
                raise SearchSpaceError(f"{self.where}: {node.func.id}() needs plain arguments in {self.text!r}")
            for arg in node.args:
                check(arg)
        elif isinstance(node, ast.Compare):
            if any(type(op) not in _COMPARE_OPS for op in node.ops):
                raise SearchSpaceError(f"{self.where}: only == != < <= > >= comparisons are allowed in {self.text!r}")
            for child in (node.left, *node.comparators):
                check(child)
        elif isinstance(node, ast.IfExp):
            for child in (node.test, node.body, node.orelse):
                check(child)
        else:
            raise SearchSpaceError(f"{self.where}: {type(node).__name__} is not allowed in {self.text!r}")

    def _bounded(self, value: Any) -> Any:
        """`value` if within the resource bounds, else a SearchSpaceError naming the expression."""
        if isinstance(value, str) and len(value) > MAX_STRING:
            raise SearchSpaceError(f"{self.where}: {self.text!r} makes a string of {len(value)} characters; at most "
                                   f"{MAX_STRING} allowed")
        if is_number(value) and not (math.isfinite(value) and abs(value) <= MAX_MAGNITUDE):
            raise SearchSpaceError(f"{self.where}: {self.text!r} makes the number {value:.6g}; numbers must be finite "
                                   f"and at most {MAX_MAGNITUDE:.0e} in size")
        return value

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        try:
            return self._eval(self._tree.body, env)
        except SearchSpaceError:
            raise
        except RecursionError:
            raise SearchSpaceError(f"{self.where}: {self.text!r} is nested too deeply to evaluate") from None
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
            return self._bounded(env[name])
        if isinstance(node, ast.BinOp):
            left, right = self._eval(node.left, env), self._eval(node.right, env)
            strings = isinstance(left, str) and isinstance(right, str) and isinstance(node.op, ast.Add)
            if not strings and not (is_number(left) and is_number(right)):
                raise TypeError(f"{type(node.op).__name__} needs two numbers (or + two strings), got "
                                f"{str(left)[:50]!r} and {str(right)[:50]!r}")  # evaluate() names the expression
            if strings and len(left) + len(right) > MAX_STRING:
                return self._bounded(left + right[: MAX_STRING + 1 - len(left)])  # the error, without building it
            return self._bounded(_BINARY_OPS[type(node.op)](left, right))
        if isinstance(node, ast.UnaryOp):
            operand = self._eval(node.operand, env)
            return self._bounded(-operand if isinstance(node.op, ast.USub) else +operand)
        if isinstance(node, ast.Call):
            return self._bounded(_FUNCTIONS[node.func.id](*(self._eval(arg, env) for arg in node.args)))
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


def constant_or_expression(raw: Any, where: str, env: Mapping[str, Any]) -> Any:
    """A bound as written in YAML: a number, or an expression string over the context and fixed keys."""
    if is_number(raw):
        return raw
    if isinstance(raw, str):
        try:
            return float(raw)  # PyYAML reads 1e-5 (no dot) as a string
        except ValueError:
            pass
        expression = Expression(raw, where)
        unknown = expression.references - set(env)
        if unknown:
            raise SearchSpaceError(
                f"{where}: {raw!r} references {', '.join('{' + n + '}' for n in sorted(unknown))}, which is not a "
                f"context value or fixed key (known: {', '.join(sorted(env)) or 'none'}); bounds cannot depend on "
                "other parameters: sample a ratio and write a derived key instead"
            )
        return expression.evaluate(env)
    raise SearchSpaceError(f"{where}: expected a number or an expression string, got {raw!r}")


# The names these classes had when they were private: pickles written then name them so.
_Expression = Expression
