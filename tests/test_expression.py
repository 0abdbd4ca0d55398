"""Tests of tune_distill.search.expression: the whitelisted evaluator behind bounds and derived keys."""

from __future__ import annotations

import pytest
import yaml

from tune_distill.search.errors import SearchSpaceError
from tune_distill.search.expression import _constant_or_expression, _Expression, _round_half_up
from tune_distill.search.space import parse_space


def _space(text: str):
    return parse_space(yaml.safe_load(text), source="space.yaml")


def test_expressions_round_half_up_and_stay_safe():
    space = _space("""
parameters:
  _a: {type: int, low: 1, high: 3}
derived:
  x.rounded: "round({_a} * 2.5)"
  x.picked: "max(1, {_a} - 2) if {_a} >= 2 else -{_a}"
  x.chained: "{x.rounded} // 2 + {x.picked} % 2"
""")
    assert space.resolve({"_a": 1}) == {"x.rounded": 3, "x.picked": -1, "x.chained": 2}
    for text in ["__import__('os')", "{_a}.real", "open('f')", "{_a} ** 99", "[1, 2]", "lambda: 1"]:
        with pytest.raises(SearchSpaceError, match="x.bad"):
            _space(f'parameters: {{_a: {{type: int, low: 1, high: 3}}}}\nderived: {{x.bad: "{text}"}}\n')


def test_expression_references_and_evaluation():
    expression = _Expression("{teacher.hidden_size} // {_heads} if {_heads} > 0 else 0", "where")
    assert expression.references == {"teacher.hidden_size", "_heads"}
    assert expression.evaluate({"teacher.hidden_size": 384, "_heads": 6}) == 64
    with pytest.raises(SearchSpaceError, match=r"where: \{_heads\} has no value"):
        expression.evaluate({"teacher.hidden_size": 384})
    with pytest.raises(SearchSpaceError, match="failed with"):
        _Expression("{a} / {b}", "where").evaluate({"a": 1, "b": 0})
    with pytest.raises(SearchSpaceError, match="malformed reference"):
        _Expression("{a-b} + 1", "where")


def test_round_half_up():
    assert [_round_half_up(x) for x in (0.5, 1.5, 2.5, -0.5)] == [1, 2, 3, 0]
    assert _round_half_up(0.125, 2) == pytest.approx(0.13)


def test_bounds_are_numbers_or_expressions_over_known_values():
    env = {"teacher.num_hidden_layers": 6}
    assert _constant_or_expression(3, "low", env) == 3
    assert _constant_or_expression("1e-5", "low", env) == 1e-5  # PyYAML reads 1e-5 as a string
    assert _constant_or_expression("{teacher.num_hidden_layers} * 2", "high", env) == 12
    with pytest.raises(SearchSpaceError, match=r"high: .*\{student\.x\}.*derived key instead"):
        _constant_or_expression("{student.x}", "high", env)
    with pytest.raises(SearchSpaceError, match="expected a number or an expression"):
        _constant_or_expression([1], "high", env)
