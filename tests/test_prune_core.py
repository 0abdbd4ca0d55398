"""Post-training pruning (tune_distill/prune): Fisher, budgets, mask search, rearrangement, physical pruning,
the whole pruning of one student, and the pruned student saved, loaded and exported."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from tune_distill.config import StudentConfig
from tune_distill.data import collate, load_features, model_inputs
from tune_distill.distill import distillation_loss
from tune_distill.importance import masked
from tune_distill.prune import apply_masks, budget, costs, measure_fisher, prune_model
from tune_distill.prune.budget import Costs
from tune_distill.prune.rearrange import objective, rearrange
from tune_distill.prune.search import search_mask
from tune_distill.student import (
    LAYER_SHAPES_KEY,
    QADropoutHead,
    build_student,
    count_parameters,
    layer_shapes,
    load_student,
    save_student,
)

HEAD_SIZE = 8  # tiny model: hidden 32, 4 heads of 8, intermediate 64
HEADS = np.array([[1, 0, 1, 1], [0, 1, 0, 0]], dtype=bool)  # layers keep 3 and 1 heads
NEURONS = np.zeros((2, 64), dtype=bool)
NEURONS[0, ::2] = True  # 32 neurons
NEURONS[1, [3, 7, 40]] = True  # 3 neurons


@pytest.fixture
def teacher(tiny_qa_model_dir):
    return AutoModelForQuestionAnswering.from_pretrained(str(tiny_qa_model_dir)).eval()


@pytest.fixture
def student(teacher):
    """A 2-layer student copied from teacher layers 0 and 2 (so it differs from the 4-layer teacher), with a
    QA-dropout head."""
    config = StudentConfig(num_hidden_layers=2, init="teacher", layer_selection="every_other", qa_dropout=0.1,
                           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return build_student(config, teacher.config, teacher).eval()


@pytest.fixture
def windows(tiny_qa_model_dir, tiny_squad_file):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_qa_model_dir))
    return load_features([str(tiny_squad_file)], tokenizer, kind="train", max_seq_length=48, doc_stride=16,
                         max_query_length=16, cache_dir=None)


def _batch(windows) -> dict[str, torch.Tensor]:
    return collate(model_inputs(windows), np.arange(len(windows)), 0)  # each (batch, seq_len)


def _logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        output = model.eval()(**batch)
    return torch.stack([output.start_logits, output.end_logits])  # (2, batch, seq_len)


# --------------------------------------------------------------------------------------------------
# The Fisher information
# --------------------------------------------------------------------------------------------------


def test_fisher_sums_each_windows_own_gradient_and_leaves_the_model_as_it_was(student, teacher, windows):
    student.train()
    student.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    flags = [parameter.requires_grad for parameter in student.parameters()]
    before = {name: tensor.clone() for name, tensor in student.state_dict().items()}
    fisher = measure_fisher(student, windows, teacher=teacher, windows=len(windows))
    assert student.training and [parameter.requires_grad for parameter in student.parameters()] == flags
    assert all(torch.equal(before[name], tensor) for name, tensor in student.state_dict().items())

    student.eval()  # the same sums, one window at a time
    columns = model_inputs(windows)
    heads, neurons = np.zeros((2, 4, 4)), np.zeros((2, 64, 64))
    for row in range(len(windows)):
        batch = collate(columns, [row], 0)
        with torch.no_grad():
            target = teacher(**batch)
        with masked(student, HEAD_SIZE) as (head_mask, neuron_mask):
            output = student(**batch)
            zeros = torch.zeros(1, dtype=torch.long)
            loss, _ = distillation_loss(output.start_logits, output.end_logits, target.start_logits,
                                        target.end_logits, zeros, zeros, batch["attention_mask"], 1.0, 1.0)
            head_grad, neuron_grad = (g.double().numpy() for g in torch.autograd.grad(loss, [head_mask, neuron_mask]))
        heads += np.einsum("lh,lg->lhg", head_grad, head_grad)
        neurons += np.einsum("li,lj->lij", neuron_grad, neuron_grad)
    assert fisher.windows == len(windows)
    np.testing.assert_allclose(np.stack(fisher.head_blocks), heads, rtol=1e-3, atol=1e-9)
    np.testing.assert_allclose(np.stack(fisher.neuron_blocks), neurons, rtol=1e-3, atol=1e-9)
    np.testing.assert_allclose(fisher.heads, np.diagonal(heads, axis1=1, axis2=2), rtol=1e-3, atol=1e-9)
    assert fisher.neurons.shape == (2, 64) and (fisher.heads > 0).all()


def test_fisher_of_a_student_whose_layers_differ_is_refused(student, teacher, windows):
    with pytest.raises(ValueError, match="layers all have the same shape"):
        measure_fisher(apply_masks(student, HEADS, NEURONS), windows, teacher=teacher, windows=4)


# --------------------------------------------------------------------------------------------------
# Costs and budgets
# --------------------------------------------------------------------------------------------------


def test_costs_by_parameters_are_exact_and_by_flops_follow_the_formula(student):
    price = costs(student, "parameters", 16)
    assert price.head == 4 * 32 * 8 + 3 * 8 and price.neuron == 2 * 32 + 1
    assert price.total == count_parameters(student)["non_embedding_parameters"]
    assert (price.heads, price.neurons) == (8, 128)
    flops = costs(student, "flops", 16)
    assert flops.head == 4 * 32 * 8 * 2 + 2 * 16 * 8 * 2 and flops.neuron == 2 * 32 * 2 and flops.fixed == 32 * 2 * 2
    assert flops.total == 8 * flops.head + 128 * flops.neuron + flops.fixed
    assert budget(price, 0.5) == 0.5 * price.total and budget(price, 1) == price.total


@pytest.mark.parametrize("keep", [0, -0.1, 1.5, float("nan"), "half", None])
def test_a_keep_share_outside_0_to_1_is_refused_naming_prune_keep(student, windows, keep):
    price = costs(student, "parameters", 16)
    with pytest.raises(ValueError, match="prune.keep"):
        budget(price, keep)
    with pytest.raises(ValueError, match="prune.keep"):
        prune_model(student, None, keep=keep, features=windows, seq_length=48)


def test_an_unknown_measure_is_refused(student):
    with pytest.raises(ValueError, match="prune.by: expected one of"):
        costs(student, "latency", 16)


# --------------------------------------------------------------------------------------------------
# The mask search
# --------------------------------------------------------------------------------------------------

# 2 layers of 2 heads (cost 10 each) and 4 neurons (cost 1 each), nothing fixed
HAND_COSTS = Costs("parameters", 1, head=10.0, neuron=1.0, fixed=0.0, total=48.0, heads=4, neurons=8)
HAND_NEURONS = np.array([[3.0, 2.0, 0.1, 0.1], [2.5, 0.2, 0.1, 0.1]])


def test_search_picks_the_number_of_heads_that_keeps_the_most_importance():
    # budget 33: 2 heads leave 13 for all 8 neurons (5 + 4 + 8.1 = 17.1); 3 heads leave 3 neurons, each layer's
    # best and then the next best (5 + 4 + 1 + 3 + 2.5 + 2 = 17.5); 4 heads leave 0 neurons (not allowed)
    heads, neurons = search_mask(np.array([[5.0, 1.0], [4.0, 0.5]]), HAND_NEURONS, HAND_COSTS, 33.0)
    assert heads.tolist() == [[True, True], [True, False]]
    assert neurons.tolist() == [[True, True, False, False], [True, False, False, False]]
    # the third head scoring less than the neurons it would displace: 2 heads and every neuron
    heads, neurons = search_mask(np.array([[5.0, 0.1], [4.0, 0.5]]), HAND_NEURONS, HAND_COSTS, 33.0)
    assert heads.tolist() == [[True, False], [True, False]] and neurons.all()


def test_every_layer_keeps_a_head_and_a_neuron_and_a_budget_too_small_for_that_is_refused():
    heads, neurons = search_mask(np.array([[5.0, 4.0], [1e-9, 0.0]]), np.array([[3, 2, 1, 1], [0, 0, 0, 1e-9]]),
                                 HAND_COSTS, 24.0)
    assert heads.sum(axis=1).tolist() == [1, 1] and neurons.sum(axis=1).min() >= 1
    assert neurons[1, 3] and heads[1, 0]  # the weak layer keeps its best
    with pytest.raises(ValueError, match=r"prune.keep=0.4562: .* smallest share possible is 0.4583"):
        search_mask(np.ones((2, 2)), np.ones((2, 4)), HAND_COSTS, 21.9)


@pytest.mark.parametrize("by", ["parameters", "flops"])
def test_search_stays_within_the_budget_on_random_scores(student, by):
    rng = np.random.default_rng(0)
    price = costs(student, by, 48)
    for keep in (0.2, 0.3, 0.5, 0.7, 0.9, 1.0):
        heads, neurons = search_mask(rng.random((2, 4)), rng.random((2, 64)), price, budget(price, keep))
        assert price.of(int(heads.sum()), int(neurons.sum())) <= keep * price.total
        assert heads.sum(axis=1).min() >= 1 and neurons.sum(axis=1).min() >= 1
    heads, neurons = search_mask(rng.random((2, 4)), rng.random((2, 64)), price, budget(price, 1.0))
    assert heads.all() and neurons.all()


# --------------------------------------------------------------------------------------------------
# Mask rearrangement
# --------------------------------------------------------------------------------------------------


def test_rearrangement_finds_a_better_mask_where_the_diagonal_misleads():
    # entries 0 and 1 score least alone, but pruning both costs their strong interaction: pruning 0 and 2 is best
    block = np.array([[1.0, 0.9, 0.0], [0.9, 1.1, 0.0], [0.0, 0.0, 1.5]])
    mask = np.array([[False, False, True]])
    better = rearrange(mask, [block])
    assert objective(mask, [block]) == pytest.approx(3.9)
    assert better.tolist() == [[False, True, False]] and objective(better, [block]) == pytest.approx(2.5)


def test_rearrangement_keeps_each_layers_count_and_never_raises_the_objective():
    rng = np.random.default_rng(1)
    for _ in range(20):
        gradients = rng.normal(size=(3, 30, 12))  # (layers, windows, entries)
        blocks = [g.T @ g for g in gradients]
        mask = rng.random((3, 12)) < rng.uniform(0.1, 0.9)
        mask[:, 0] = True
        result = rearrange(mask, blocks)
        assert (result.sum(axis=1) == mask.sum(axis=1)).all()
        assert objective(result, blocks) <= objective(mask, blocks) + 1e-9
        assert (mask == rearrange(mask, blocks, max_iterations=0)).all()


# --------------------------------------------------------------------------------------------------
# Physical pruning, saving, loading, export
# --------------------------------------------------------------------------------------------------


def test_pruned_layers_compute_what_the_masked_model_computes_and_cost_what_was_predicted(student, windows):
    pruned = apply_masks(student, HEADS, NEURONS)
    assert layer_shapes(pruned) == [{"heads": 3, "intermediate": 32}, {"heads": 1, "intermediate": 3}]
    assert getattr(pruned.config, LAYER_SHAPES_KEY) == layer_shapes(pruned)
    assert isinstance(pruned.qa_outputs, QADropoutHead)
    price = costs(student, "parameters", 48)
    assert count_parameters(pruned)["non_embedding_parameters"] == price.of(4, 35)
    assert layer_shapes(student)[1] == {"heads": 4, "intermediate": 64}  # the parent is untouched
    batch = _batch(windows)
    with masked(student, HEAD_SIZE) as (head_mask, neuron_mask), torch.no_grad():
        head_mask.copy_(torch.from_numpy(HEADS))
        neuron_mask.copy_(torch.from_numpy(NEURONS))
        expected = _logits(student, batch)
    assert torch.allclose(_logits(pruned, batch), expected, atol=1e-5)


def test_a_student_with_layers_of_their_own_shapes_saves_and_loads_exactly(student, windows, tmp_path):
    pruned = apply_masks(student, HEADS, NEURONS)
    save_student(pruned, tmp_path / "model")
    loaded = load_student(tmp_path / "model")
    assert layer_shapes(loaded) == layer_shapes(pruned) and isinstance(loaded.qa_outputs, QADropoutHead)
    assert torch.equal(_logits(loaded, _batch(windows)), _logits(pruned, _batch(windows)))
    assert count_parameters(loaded) == count_parameters(pruned)

    config = (tmp_path / "model" / "config.json").read_text()
    (tmp_path / "model" / "config.json").write_text(config.replace('"intermediate": 3', '"intermediate": 4'))
    with pytest.raises(ValueError, match="weights do not match the saved config"):
        load_student(tmp_path / "model")


def test_a_student_with_layers_of_their_own_shapes_exports_to_onnx(student, windows, tmp_path):
    pytest.importorskip("onnxruntime")
    from tune_distill.export import export_onnx, onnx_logits, onnx_session, pad_pruned_heads

    save_student(apply_masks(student, HEADS, NEURONS), tmp_path / "model")
    pruned = load_student(tmp_path / "model").eval()
    padded = pad_pruned_heads(pruned).eval()
    assert not hasattr(padded.config, LAYER_SHAPES_KEY) and layer_shapes(padded)[1] == layer_shapes(student)[1]
    batch = _batch(windows)
    expected = _logits(pruned, batch)
    assert torch.allclose(_logits(padded, batch), expected, atol=1e-5)
    start, end = onnx_logits(onnx_session(export_onnx(padded, tmp_path / "model.onnx")), batch)
    real = batch["attention_mask"].bool()  # (batch, seq_len)
    assert np.abs(start - expected[0].numpy())[real.numpy()].max() < 1e-4
    assert np.abs(end - expected[1].numpy())[real.numpy()].max() < 1e-4


# --------------------------------------------------------------------------------------------------
# The whole pruning
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def fisher(student, teacher, windows):
    return measure_fisher(student, windows, teacher=teacher, windows=len(windows))


def test_keeping_everything_changes_nothing(student, fisher, windows):
    batch = _batch(windows)
    whole = prune_model(student, fisher, keep=1.0, features=windows, seq_length=48, tune_windows=0)
    assert whole.heads_per_layer == [4, 4] and whole.neurons_per_layer == [64, 64] and whole.share == 1.0
    assert torch.equal(_logits(whole.model, batch), _logits(student, batch))
    tuned = prune_model(student, fisher, keep=1.0, features=windows, seq_length=48, tune_windows=len(windows))
    assert torch.allclose(_logits(tuned.model, batch), _logits(student, batch), atol=1e-4)


@pytest.mark.parametrize("by", ["parameters", "flops"])
@pytest.mark.parametrize("keep", [0.3, 0.6])
def test_a_pruned_member_reaches_its_share_and_leaves_the_parent_unchanged(student, fisher, windows, by, keep):
    before = {name: tensor.clone() for name, tensor in student.state_dict().items()}
    member = prune_model(student, fisher, keep=keep, by=by, features=windows, seq_length=48, tune_windows=8)
    assert all(torch.equal(before[name], tensor) for name, tensor in student.state_dict().items())
    assert member.share <= keep and member.share > keep - 0.1
    parent = count_parameters(student)["non_embedding_parameters"]
    counts = count_parameters(member.model)
    assert counts["non_embedding_parameters"] == member.non_embedding_parameters
    assert counts["parameters"] == member.parameters
    if by == "parameters":
        assert member.share == member.non_embedding_parameters / parent
    assert member.heads_per_layer == member.head_mask.sum(axis=1).tolist()
    assert member.neurons_per_layer == member.neuron_mask.sum(axis=1).tolist()
    assert min(member.heads_per_layer) >= 1 and min(member.neurons_per_layer) >= 1
    info = member.info
    assert info["objective_rearranged"] <= info["objective_searched"] + 1e-12
    assert len(info["scales"]) == 2 and info["tune_windows"] == 8


def _sublayer_error(pruned, full, windows) -> float:
    """Squared error of layer 0's attention and feed-forward outputs (before residual and LayerNorm) against the
    parent's, on real tokens."""
    outputs: dict[str, list[torch.Tensor]] = {"attention": [], "feed_forward": []}
    hooks = []
    for model in (pruned, full):
        layer = model.bert.encoder.layer[0]
        hooks.append(layer.attention.output.dense.register_forward_hook(
            lambda module, inputs, output: outputs["attention"].append(output)))
        hooks.append(layer.output.dense.register_forward_hook(
            lambda module, inputs, output: outputs["feed_forward"].append(output)))
    batch = _batch(windows)
    _logits(pruned, batch)
    _logits(full, batch)
    for hook in hooks:
        hook.remove()
    real = batch["attention_mask"].bool()  # (batch, seq_len)
    return sum(float((mine - theirs)[real].pow(2).sum()) for mine, theirs in outputs.values())


def test_mask_tuning_reconstructs_the_parent_better_than_the_plain_pruned_model(student, fisher, windows):
    plain = prune_model(student, fisher, keep=0.4, features=windows, seq_length=48, tune_windows=0)
    tuned = prune_model(student, fisher, keep=0.4, features=windows, seq_length=48, tune_windows=len(windows))
    assert (plain.head_mask == tuned.head_mask).all() and (plain.neuron_mask == tuned.neuron_mask).all()
    assert "scales" not in plain.info
    assert _sublayer_error(tuned.model, student, windows) < _sublayer_error(plain.model, student, windows)
