"""configs/space_prune.yaml: every sample is a student the teacher can be pruned into; the knobs reach small ones."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tune_distill.config import RunConfig, apply_overrides
from tune_distill.search.space import EXAMPLE_TEACHER_CONTEXT, load_space
from tune_distill.student import resolve_shape

SPACE = Path(__file__).resolve().parents[1] / "configs" / "space_prune.yaml"
TINY_TEACHER = {"teacher.num_hidden_layers": 2, "teacher.hidden_size": 32, "teacher.num_attention_heads": 4,
                "teacher.intermediate_size": 64}


@pytest.mark.parametrize("context", [EXAMPLE_TEACHER_CONTEXT, {**EXAMPLE_TEACHER_CONTEXT, **TINY_TEACHER}])
def test_every_sample_and_corner_is_a_shape_the_teacher_can_be_pruned_into(context):
    space = load_space(SPACE, context)
    teacher = SimpleNamespace(**{key.removeprefix("teacher."): value for key, value in context.items()})
    rng = np.random.default_rng(0)
    samples = [space.sample_uniform(rng) for _ in range(300)]
    samples += [{p.name: p.from_unit(u) for p in space.params} for u in (0.0, 1.0)]
    seen_prune = False
    for sampled in samples:
        config = apply_overrides(RunConfig(), space.resolve(sampled))
        shape = resolve_shape(config.student, teacher)  # raises on an impossible shape
        assert shape.intermediate_size % 64 == 0 or shape.intermediate_size == teacher.intermediate_size
        if config.student.init == "prune":
            seen_prune = True
            assert config.student.prune_score == "gradient"
    assert seen_prune


def test_the_kept_heads_and_feed_forward_share_reach_small_students():
    space = load_space(SPACE, EXAMPLE_TEACHER_CONTEXT)
    sampled = {p.name: p.from_unit(0.5) for p in space.params}
    sampled.update({"student.init": "prune", "_heads": 8, "_ffn_share": 0.5})
    resolved = space.resolve(sampled)
    assert (resolved["student.num_attention_heads"], resolved["student.intermediate_size"]) == (8, 768)
    sampled["_ffn_share"] = 0.1  # 153.6 neurons -> 2.4 blocks of 64 -> 128
    assert space.resolve(sampled)["student.intermediate_size"] == 128
    sampled["student.init"] = "teacher"  # a whole copy ignores the pruning knobs
    resolved = space.resolve(sampled)
    assert (resolved["student.num_attention_heads"], resolved["student.intermediate_size"]) == (12, 1536)
