"""Tests of tune_distill.search.space (parameters, search spaces, YAML checks) and .preview (the
`space` subcommand)."""

from __future__ import annotations

import argparse
import json
import math
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from tune_distill.config import RunConfig, apply_overrides
from tune_distill.search.errors import SearchSpaceError
from tune_distill.search.preview import add_arguments, command
from tune_distill.search.space import EXAMPLE_TEACHER_CONTEXT, Param, load_space

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# --------------------------------------------------------------------------------------------------
# Shipped spaces
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("space_name", ["space_reference.yaml", "space_rich.yaml", "space_smoke.yaml"])
def test_shipped_spaces_resolve_to_valid_configs(space_name):
    space = load_space(CONFIGS / space_name, EXAMPLE_TEACHER_CONTEXT)
    rng = np.random.default_rng(0)
    samples = [space.sample_uniform(rng) for _ in range(200)]
    samples += [{p.name: p.from_unit(u) for p in space.params} for u in (0.0, 1.0)]
    for sampled in samples:
        assert space.contains(sampled)
        overrides = space.resolve(sampled)
        assert not any(key.startswith("_") for key in overrides)
        config = apply_overrides(RunConfig(), overrides)
        student = config.student
        hidden = student.hidden_size or EXAMPLE_TEACHER_CONTEXT["teacher.hidden_size"]
        heads = student.num_attention_heads or EXAMPLE_TEACHER_CONTEXT["teacher.num_attention_heads"]
        assert 1 <= heads <= EXAMPLE_TEACHER_CONTEXT["teacher.num_attention_heads"]
        if student.init != "prune":
            assert hidden % heads == 0, overrides
        if student.init in ("teacher", "prune"):
            assert hidden == EXAMPLE_TEACHER_CONTEXT["teacher.hidden_size"], overrides
        if student.init == "teacher":
            assert heads == EXAMPLE_TEACHER_CONTEXT["teacher.num_attention_heads"], overrides


def test_reference_space_scales_with_the_teacher():
    big = load_space(CONFIGS / "space_reference.yaml", {**EXAMPLE_TEACHER_CONTEXT, "teacher.num_hidden_layers": 12})
    small = load_space(CONFIGS / "space_reference.yaml", EXAMPLE_TEACHER_CONTEXT)
    assert big.param("student.num_hidden_layers").high == 20
    assert small.param("student.num_hidden_layers").high == 10
    names = set(small.names)
    assert not {"distill.adam_beta1", "distill.adam_beta2", "distill.eval_batch_size"} & names
    assert small.fixed["student.init"] == "prune"


def test_rich_space_derives_widths():
    space = load_space(CONFIGS / "space_rich.yaml", EXAMPLE_TEACHER_CONTEXT)
    sampled = {p.name: p.from_unit(0.5) for p in space.params}
    sampled.update({"student.init": "random", "_heads": 6, "_head_dim": 16, "_ffn_ratio": 2.5})
    resolved = space.resolve(sampled)
    assert (resolved["student.hidden_size"], resolved["student.num_attention_heads"]) == (96, 6)
    assert resolved["student.intermediate_size"] == 240
    sampled["student.init"] = "prune"
    resolved = space.resolve(sampled)
    assert (resolved["student.hidden_size"], resolved["student.num_attention_heads"]) == (384, 6)
    assert resolved["student.intermediate_size"] == 1536


# --------------------------------------------------------------------------------------------------
# Checks when a space loads
# --------------------------------------------------------------------------------------------------


def _space(tmp_path: Path, text: str, context=None):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return load_space(path, context)


BAD_SPACES = [
    ("parameters: {a.b: {type: float, low: 0, high: 1}}\nsearch: {}\n", "unknown top-level key"),
    ("parameters: {a.b: {type: float, low: 0, high: 1, prior: flat}}\n", r"parameters\.a\.b: unknown field"),
    ("parameters: {a.b: {type: float, low: 2, high: 1}}\n", r"parameters\.a\.b: low \(2.0\) > high \(1.0\)"),
    ("parameters: {a.b: {type: float, low: 0, high: 1, log: true}}\n", r"parameters\.a\.b: a log-scaled"),
    ("parameters: {a.b: {type: categorical, choices: []}}\n", r"parameters\.a\.b: a categorical parameter needs"),
    ("parameters: {a.b: {type: int, low: 0, high: 1.5}}\n", r"parameters\.a\.b: 'high' of an int"),
    ("parameters: {a.b: {type: float, high: 1}}\n", r"parameters\.a\.b: a float parameter needs 'low'"),
    ("parameters: {a.b: {type: bool}}\n", r"parameters\.a\.b: type must be"),
    ("parameters: {a.b: {type: int, low: 1, high: '{teacher.depth}'}}\n", r"parameters\.a\.b\.high: .*teacher\.depth"),
    ("parameters: {a.b: {type: int, low: 1, high: 4}, c.d: {type: int, low: 1, high: '{a.b}'}}\n",
     r"parameters\.c\.d\.high: .*derived key instead"),
    ("parameters: {a.b: {type: float, low: 0, high: 1}}\nderived: {c.d: '{a.x} * 2'}\n",
     r"derived\.c\.d: unknown reference.*\{a\.x\}"),
    ("parameters: {a.b: {type: float, low: 0, high: 1}}\nderived: {c.d: '{c.e}', c.e: '{c.d}'}\n",
     r"derived\.c\.[de]: .*cycle"),
    ("parameters: {a.b: {type: float, low: 0, high: 1}}\nfixed: {a.b: 3}\n", r"fixed\.a\.b: already defined"),
    ("parameters: {a.b: {type: categorical, choices: [x, y]}}\nderived: {c.d: '{a.b} * 1.5'}\n",
     r"derived\.c\.d: .*failed"),
    ("parameters: {}\n", "at least one parameter"),
    ("parameters: {a.b: {type: float, low: 0, high: 1, step: 0.3}}\n", r"parameters\.a\.b: .*multiple of step"),
    ("parameters: [1, 2]\n", "parameters: expected a mapping"),
    ("parameters: {a.b: {type: float, low: 0, high: 1}\n", "not valid YAML"),
]


@pytest.mark.parametrize("text, message", BAD_SPACES)
def test_bad_space_files_name_the_file_and_key(tmp_path, text, message):
    with pytest.raises(SearchSpaceError, match=message) as error:
        _space(tmp_path, text, {"teacher.num_hidden_layers": 6})
    assert "space.yaml" in str(error.value)


def test_missing_space_file_and_missing_context(tmp_path):
    with pytest.raises(SearchSpaceError, match="not found"):
        load_space(tmp_path / "nope.yaml")
    with pytest.raises(SearchSpaceError, match=r"space_reference\.yaml: parameters\.student\.num_hidden_layers\.high"):
        load_space(CONFIGS / "space_reference.yaml")  # bounds need the teacher's shape


# --------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------


def test_param_unit_encoding_round_trips():
    params = [
        Param("f", "float", 1e-5, 1e-1, log=True),
        Param("s", "float", 0.0, 1.0, step=0.25),
        Param("i", "int", 4, 32),
        Param("l", "int", 8, 64, log=True),
        Param("t", "int", 8, 32, step=8),
        Param("c", "categorical", choices=("a", 1, True, None)),
    ]
    rng = np.random.default_rng(0)
    for p in params:
        for u in np.concatenate([[0.0, 1.0], rng.random(200)]):
            value = p.from_unit(u)
            assert p.contains(value), (p, value)
            assert p.from_unit(p.to_unit(value)) == value or math.isclose(p.from_unit(p.to_unit(value)), value)
    # every choice is reached, 1 and True told apart
    assert {repr(params[5].from_unit(u)) for u in np.linspace(0, 1, 41)} == {"'a'", "1", "True", "None"}
    assert params[5].contains(1) and not params[5].contains(2)


# --------------------------------------------------------------------------------------------------
# Previewing a space: tune-distill space, python -m tune_distill.search
# --------------------------------------------------------------------------------------------------


def _preview(argv: list[str]):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return command(parser.parse_args(argv))


def test_preview_prints_resolved_samples(capsys):
    resolved = _preview([str(CONFIGS / "space_rich.yaml"), "--samples", "4", "--seed", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == resolved and len(resolved) == 4
    space = load_space(CONFIGS / "space_rich.yaml", EXAMPLE_TEACHER_CONTEXT)
    rng = np.random.default_rng(1)
    assert resolved == [space.resolve(space.sample_uniform(rng)) for _ in range(4)]
    # --context changes the teacher's shape the bounds are computed from
    wide = _preview([str(CONFIGS / "space_reference.yaml"), "--samples", "50", "--context",
                     "teacher.num_hidden_layers=12"])
    assert max(sample["student.num_hidden_layers"] for sample in wide) > 10


def test_preview_raises_space_errors_for_the_command_line_to_report(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("parameters: {}\n")
    with pytest.raises(SearchSpaceError, match="at least one parameter"):
        _preview([str(path)])


def test_python_m_search_is_tune_distill_space(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["tune_distill.search", str(CONFIGS / "space_smoke.yaml"), "--samples", "2"])
    with pytest.raises(SystemExit) as done:
        runpy.run_module("tune_distill.search", run_name="__main__")
    assert done.value.code == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
