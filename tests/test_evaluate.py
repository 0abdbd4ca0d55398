"""tune_distill.evaluate: post-processing, predicted logits, a model folder end to end, size, latency.

The metrics and thresholds themselves are scoring.py's (tests/test_scoring.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import squad_example as example

from tune_distill import cli, data, evaluate, scoring
from tune_distill.config import EvaluateConfig
from tune_distill.evaluate import NO_SPAN_NULL_ODDS, postprocess

NON_CONTEXT = [-1, -1]


# --------------------------------------------------------------------------------------------------
# Post-processing on hand-written logits
# --------------------------------------------------------------------------------------------------

CONTEXT = "alpha beta gamma delta epsilon"
WORD_OFFSETS = [[0, 5], [6, 10], [11, 16], [17, 22], [23, 30]]  # alpha .. epsilon


def window(words: range) -> list[list[int]]:
    """[CLS] q [SEP] <context words> [SEP] offsets: 3 non-context tokens, the words, one more."""
    return [NON_CONTEXT, NON_CONTEXT, NON_CONTEXT] + [WORD_OFFSETS[i] for i in words] + [NON_CONTEXT]


def logits(length: int, peaks: dict[int, float], base: float = -10.0) -> np.ndarray:
    values = np.full(length, base, dtype=np.float32)
    for position, value in peaks.items():
        values[position] = value
    return values


def test_null_score_is_the_minimum_over_windows_and_best_span_the_maximum():
    examples = [example("q1", CONTEXT, ("gamma",))]
    # Window 0 holds alpha beta gamma (tokens 3, 4, 5); window 1 holds gamma delta epsilon (tokens 3, 4, 5).
    features = {"offset_mapping": [window(range(0, 3)), window(range(2, 5))], "example_index": [0, 0]}
    starts = [logits(7, {0: 4.0, 4: 3.0}), logits(7, {0: 1.0, 3: 5.0})]
    ends = [logits(7, {0: 4.0, 4: 3.0}), logits(7, {0: 0.5, 4: 4.0})]
    texts, odds = postprocess(examples, features, starts, ends)
    # Null: min(4 + 4, 1 + 0.5) = 1.5. Best span: window 1, gamma..delta = 5 + 4 = 9 (beats beta = 6).
    assert texts == {"q1": "gamma delta"}
    assert odds["q1"] == pytest.approx(1.5 - 9.0)


def test_spans_outside_the_context_or_reversed_or_too_long_are_ignored():
    examples = [example("q1", CONTEXT)]
    features = {"offset_mapping": [window(range(0, 5))], "example_index": [0]}
    # Highest start/end logits sit on question tokens (1, 2) and the final [SEP] (8): all ignored.
    # Reversed span (start 7 = epsilon, end 3 = alpha) ignored. The longest span alpha..epsilon (3..7) scores
    # 6 + 6 but is 5 tokens; with max_answer_length 2 the best is delta..epsilon (6..7) = 3 + 6 = 9.
    starts = [logits(9, {1: 50.0, 3: 6.0, 6: 3.0, 7: 8.0})]
    ends = [logits(9, {2: 50.0, 8: 40.0, 3: 2.5, 7: 6.0})]
    texts, _ = postprocess(examples, features, starts, ends, max_answer_length=30)
    assert texts["q1"] == "epsilon"  # 8 + 6 = 14: the best of all valid spans
    starts[0][7] = -10.0
    texts, odds = postprocess(examples, features, starts, ends, max_answer_length=30)
    assert texts["q1"] == "alpha beta gamma delta epsilon"  # 6 + 6
    texts, odds = postprocess(examples, features, starts, ends, max_answer_length=2)
    assert texts["q1"] == "delta epsilon"  # 3 + 6
    assert odds["q1"] == pytest.approx(-20.0 - 9.0)


def test_only_the_n_best_starts_and_ends_are_tried():
    examples = [example("q1", CONTEXT)]
    features = {"offset_mapping": [window(range(0, 5))], "example_index": [0]}
    # The top start (gamma, 5) lies after the top end (beta, 4): with n_best 1 there is no valid span.
    starts = [logits(9, {5: 9.0, 3: 8.0})]
    ends = [logits(9, {4: 9.0, 6: 1.0})]
    texts, odds = postprocess(examples, features, starts, ends, n_best_size=1)
    assert texts == {"q1": ""} and odds == {"q1": NO_SPAN_NULL_ODDS}
    texts, _ = postprocess(examples, features, starts, ends, n_best_size=2)
    assert texts["q1"] == "alpha beta"  # start 3 (8) + end 4 (9) beats gamma..delta (9 + 1)


def test_windows_of_several_questions_and_feature_sets_agree():
    examples = [example("q1", CONTEXT), example("q2", CONTEXT), example("q3", CONTEXT)]
    features = {
        "offset_mapping": [window(range(0, 2)), window(range(0, 5)), window(range(3, 5))],
        "example_index": [0, 1, 0],  # q3 has no window at all
        "input_ids": [[1] * 6, [1] * 9, [1] * 6],
    }
    starts = [logits(6, {0: 0.0, 3: 2.0}), logits(9, {0: 1.0, 5: 1.0}), logits(6, {0: -1.0, 4: 7.0})]
    ends = [logits(6, {0: 0.0, 3: 2.0}), logits(9, {0: 1.0, 5: 1.0}), logits(6, {0: -1.0, 4: 7.0})]
    texts, odds = postprocess(examples, features, starts, ends)
    assert texts == {"q1": "epsilon", "q2": "gamma", "q3": ""}
    assert odds == {"q1": pytest.approx(-2.0 - 14.0), "q2": pytest.approx(0.0), "q3": NO_SPAN_NULL_ODDS}
    table = data.features_to_table(features)
    feature_set = data.FeatureSet(table=table, examples=examples, fingerprint="x", path=None)
    assert postprocess(examples, feature_set, starts, ends) == (texts, odds)


def test_mismatched_logits_are_an_error():
    features = {"offset_mapping": [window(range(0, 2))], "example_index": [0]}
    with pytest.raises(ValueError, match="1 windows but 2 start"):
        postprocess([example("q1", CONTEXT)], features, [np.zeros(6)] * 2, [np.zeros(6)] * 2)
    with pytest.raises(ValueError, match="'q1' has 6 tokens but 5 start"):
        postprocess([example("q1", CONTEXT)], features, [np.zeros(5)], [np.zeros(5)])


# --------------------------------------------------------------------------------------------------
# A real (tiny) model end to end
# --------------------------------------------------------------------------------------------------

LENGTHS = dict(max_seq_length=64, doc_stride=16, max_query_length=12)


@pytest.fixture
def tiny_model(tiny_qa_model_dir):
    from transformers import AutoModelForQuestionAnswering

    return AutoModelForQuestionAnswering.from_pretrained(str(tiny_qa_model_dir))


def test_predict_logits_is_independent_of_batching_and_unpadded(tiny_model, tiny_squad_file, tiny_tokenizer):
    features = data.load_features(
        [str(tiny_squad_file)], tiny_tokenizer, kind="eval", cache_dir=None, max_examples=2, **LENGTHS
    )
    window_lengths = data.lengths(features)
    assert len(set(window_lengths.tolist())) > 1  # padding really happens in mixed batches
    starts_1, ends_1 = evaluate.predict_logits(tiny_model, features, batch_size=1, device="cpu")
    starts_7, ends_7 = evaluate.predict_logits(tiny_model, features, batch_size=7, device="cpu")
    assert [len(s) for s in starts_1] == window_lengths.tolist() == [len(e) for e in ends_7]
    assert all(s.dtype == np.float32 for s in starts_7)
    for a, b in zip(starts_1 + ends_1, starts_7 + ends_7):
        np.testing.assert_allclose(a, b, atol=1e-5)
    starts_bf16, _ = evaluate.predict_logits(tiny_model, features, batch_size=7, device="cpu", precision="bf16")
    assert starts_bf16[0].dtype == np.float32 and len(starts_bf16[0]) == window_lengths[0]
    assert not tiny_model.training


def test_evaluate_model_dir_writes_metrics_predictions_and_null_odds(tiny_qa_model_dir, tiny_squad_file, tmp_path):
    out = tmp_path / "eval"
    # Latency at 200 tokens is timed at the tiny model's 128 positions.
    latency_config = EvaluateConfig(
        latency_seq_length=200, latency_batch_sizes=(1, 3), latency_repeats=2, latency_warmup=1
    )
    metrics = evaluate.evaluate_model_dir(
        tiny_qa_model_dir, tiny_squad_file, out, batch_size=4, device="cpu", cache_dir=tmp_path / "cache",
        latency=True, latency_config=latency_config, **LENGTHS,
    )
    written = json.loads((out / "metrics.json").read_text())
    predictions = json.loads((out / "predictions.json").read_text())
    null_odds = json.loads((out / "null_odds.json").read_text())
    ids = ["q-founded", "q-bridge", "q-cathedral", "q-airport", "q-cat", "q-dog-year", "q-bird"]
    assert sorted(predictions) == sorted(ids) == sorted(null_odds)
    assert written["exact"] == pytest.approx(metrics["exact"]) and written["f1"] == pytest.approx(metrics["f1"])
    for key in ("exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1",
                "NoAns_total", "na_threshold", "exact_at_0", "f1_at_0", "best_f1_thresh", "parameters",
                "non_embedding_parameters", "bytes_on_disk", "latency_ms_b1", "latency_ms_b3"):
        assert key in written, key
    assert (written["total"], written["HasAns_total"], written["NoAns_total"]) == (7, 5, 2)
    assert 0 <= written["exact"] <= 100 and 0 <= written["f1"] <= 100
    assert written["latency_seq_length"] == 128  # capped at the tiny model's max_position_embeddings
    for qid, text in predictions.items():
        assert text == ("" if null_odds[qid] > written["na_threshold"] else text)
    # The predictions file reproduces the reported scores.
    examples = data.load_examples(str(tiny_squad_file))
    assert scoring.squad_v2_scores(examples, predictions)["exact"] == pytest.approx(written["exact"])

    # Another split: the threshold is given and applied unchanged (features now come from the cache).
    again = evaluate.evaluate_model_dir(
        tiny_qa_model_dir, tiny_squad_file, tmp_path / "eval-2", na_threshold=-123.0, batch_size=4, device="cpu",
        cache_dir=tmp_path / "cache", **LENGTHS,
    )
    assert again["na_threshold"] == -123.0 and again["na_threshold_chosen_here"] is False
    assert set(json.loads((tmp_path / "eval-2" / "predictions.json").read_text()).values()) == {""}


def test_command_line_entry_point(tiny_qa_model_dir, tiny_squad_file, tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli.main([
        "evaluate", "--model", str(tiny_qa_model_dir), "--data", str(tiny_squad_file), "--out", str(out),
        "--max-seq-length", "64", "--doc-stride", "16", "--max-query-length", "12", "--device", "cpu",
        "--na-threshold", "0", "--max-examples", "3",
    ]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["total"] == 3 and printed["na_threshold"] == 0.0
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "null_odds.json", "predictions.json"]


# --------------------------------------------------------------------------------------------------
# Size and latency
# --------------------------------------------------------------------------------------------------


def test_model_size(tiny_model, tiny_qa_model_dir):
    size = evaluate.model_size(tiny_model, tiny_qa_model_dir)
    all_parameters = {id(p): p.numel() for p in tiny_model.parameters()}
    assert size["parameters"] == sum(all_parameters.values())
    embeddings = sum(p.numel() for p in tiny_model.bert.embeddings.parameters())
    assert size["non_embedding_parameters"] == size["parameters"] - embeddings
    assert size["bytes_on_disk"] == (tiny_qa_model_dir / "model.safetensors").stat().st_size
    assert "bytes_on_disk" not in evaluate.model_size(tiny_model)


def test_measure_latency_returns_positive_medians(tiny_model):
    result = evaluate.measure_latency(tiny_model, seq_length=16, batch_sizes=(1, 2), repeats=2, warmup=1, device="cpu")
    assert result["latency_ms_b1"] > 0 and result["latency_ms_b2"] > 0
    assert result["latency_threads"] == torch.get_num_threads()
    assert result["latency_seq_length"] == 16 and result["latency_precision"] == "fp32"
    assert isinstance(result["latency_device"], str) and result["latency_device"]
    with pytest.raises(ValueError, match="max_position_embeddings=128"):
        evaluate.measure_latency(tiny_model, seq_length=129, device="cpu")
