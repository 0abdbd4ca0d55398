"""Tests of tune_distill.search.expression: the whitelisted evaluator behind bounds and derived keys."""

from __future__ import annotations

import pytest
import yaml

from tune_distill.search.errors import SearchSpaceError
from tune_distill.search.expression import Expression, _round_half_up, constant_or_expression
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
    expression = Expression("{teacher.hidden_size} // {_heads} if {_heads} > 0 else 0", "where")
    assert expression.references == {"teacher.hidden_size", "_heads"}
    assert expression.evaluate({"teacher.hidden_size": 384, "_heads": 6}) == 64
    with pytest.raises(SearchSpaceError, match=r"where: \{_heads\} has no value"):
        expression.evaluate({"teacher.hidden_size": 384})
    with pytest.raises(SearchSpaceError, match="failed with"):
        Expression("{a} / {b}", "where").evaluate({"a": 1, "b": 0})
    with pytest.raises(SearchSpaceError, match="malformed reference"):
        Expression("{a-b} + 1", "where")


def test_round_half_up():
    assert [_round_half_up(x) for x in (0.5, 1.5, 2.5, -0.5)] == [1, 2, 3, 0]
    assert _round_half_up(0.125, 2) == pytest.approx(0.13)


def test_bounds_are_numbers_or_expressions_over_known_values():
    env = {"teacher.num_hidden_layers": 6}
    assert constant_or_expression(3, "low", env) == 3
    assert constant_or_expression("1e-5", "low", env) == 1e-5  # PyYAML reads 1e-5 as a string
    assert constant_or_expression("{teacher.num_hidden_layers} * 2", "high", env) == 12
    with pytest.raises(SearchSpaceError, match=r"high: .*\{student\.x\}.*derived key instead"):
        constant_or_expression("{student.x}", "high", env)
    with pytest.raises(SearchSpaceError, match="expected a number or an expression"):
        constant_or_expression([1], "high", env)


def test_strings_are_neither_repeated_nor_formatted_and_only_joined_up_to_a_bound():
    for text in ["'x' * 100000 * 100000", "100000 * 'x'", "'%s%s' % (1, 2)", "'%d' % 1"]:
        with pytest.raises(SearchSpaceError, match=r"where: string repetition and formatting"):
            Expression(text, "where")
    # through references, the same operations fail when evaluated, before anything is built
    with pytest.raises(SearchSpaceError, match=r"where: .* failed with .*: Mult needs two numbers"):
        Expression("{s} * {n}", "where").evaluate({"s": "x", "n": 10**9})
    with pytest.raises(SearchSpaceError, match=r"where: .* failed with .*: Mod needs two numbers"):
        Expression("{s} % {n}", "where").evaluate({"s": "%s", "n": 1})
    assert Expression("{s} + '-b'", "where").evaluate({"s": "a"}) == "a-b"
    joined = " + ".join(["{s}"] * 48)
    with pytest.raises(SearchSpaceError, match=r"where: .* makes a string of 1001 characters; at most 1000"):
        Expression(joined, "where").evaluate({"s": "x" * 21})


def test_numbers_are_finite_and_bounded():
    with pytest.raises(SearchSpaceError, match=r"where: .* makes the number 1e\+16; numbers must be finite"):
        Expression("{a} * {a} * {a} * {a}", "where").evaluate({"a": 10**4})
    with pytest.raises(SearchSpaceError, match=r"where: .* makes the number inf"):
        Expression("{a} / {b}", "where").evaluate({"a": 1e15, "b": 1e-320})
    with pytest.raises(SearchSpaceError, match=r"where: .* makes the number"):
        Expression("1000000000000000000", "where")
    assert Expression("{a} * {a}", "where").evaluate({"a": 10**7}) == 10**14


def test_deep_or_long_expressions_are_search_space_errors_not_recursion_errors():
    with pytest.raises(SearchSpaceError, match=r"where: .* nested too deeply \(at most 50 levels\)"):
        Expression("-" * 500 + "1", "where")
    with pytest.raises(SearchSpaceError, match=r"where: .*nested too deeply|where: .*not a valid expression"):
        Expression("(" * 990 + "1" + ")" * 990, "where")
    with pytest.raises(SearchSpaceError, match=r"where: expression of 2001 characters; at most 2000"):
        Expression("1" + " " * 2000, "where")
    assert Expression(" + ".join(["{a}"] * 40), "where").evaluate({"a": 1}) == 40
