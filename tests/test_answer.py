"""answer: spans and "no answer" from a tiny model whose logits are forced onto known tokens.

The forced model: every layer's output projections are zero (each layer then only re-normalises its
input), position and segment embeddings are zero, and every word embedding is zero except two
orthogonal unit-variance vectors: one for the target word, one for [CLS]. The QA head reads those two
directions, so start = end logit = TARGET on the target word, NULL on [CLS] and 0 everywhere else:
the best span is the target word (score 2 x TARGET) against a null score of 2 x NULL.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import LONG_CONTEXT, make_tiny_qa_model_dir

from tune_distill import cli
from tune_distill.answer import answer, describe
from tune_distill.data import DataError
from tune_distill.export import EXPORT_INFO_FILE

TARGET, NULL = 5.0, 2.0
SHORT = "The cat sat near the dog. The dog ran to the river in 1999."
NO_RIVER = "The cat sat near the dog in 1999."
SHARED_TEACHER = Path(__file__).resolve().parents[2] / "shared" / "models" / "teacher-minilm-l6-squad2"


def forced_model_dir(directory: Path, target: str = "river") -> Path:
    from transformers import AutoTokenizer, BertForQuestionAnswering

    make_tiny_qa_model_dir(directory, num_hidden_layers=2)
    model = BertForQuestionAnswering.from_pretrained(str(directory)).eval()
    vocab = AutoTokenizer.from_pretrained(str(directory)).get_vocab()
    hidden = model.config.hidden_size
    along_target = torch.tensor([1.0, -1.0] * (hidden // 2))  # (hidden,) mean 0, variance 1: LayerNorm keeps it
    along_null = torch.tensor([1.0] * (hidden // 2) + [-1.0] * (hidden // 2))  # (hidden,) orthogonal to the first
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            for linear in (layer.attention.output.dense, layer.output.dense):
                linear.weight.zero_()
                linear.bias.zero_()
        embeddings = model.bert.embeddings
        for table in (embeddings.word_embeddings, embeddings.position_embeddings, embeddings.token_type_embeddings):
            table.weight.zero_()
        embeddings.word_embeddings.weight[vocab[target]] = along_target
        embeddings.word_embeddings.weight[vocab["[CLS]"]] = along_null
        head = (TARGET * along_target + NULL * along_null) / hidden  # (hidden,)
        model.qa_outputs.weight.copy_(torch.stack([head, head]))  # (2, hidden): start, end
        model.qa_outputs.bias.zero_()
    model.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="module")
def forced(tmp_path_factory) -> Path:
    return forced_model_dir(tmp_path_factory.mktemp("forced") / "model")


def test_the_forced_word_is_the_answer_and_null_wins_without_it(forced):
    results = answer(forced, ["Where did the dog run?", "When did the cat sit?"], [SHORT, NO_RIVER])
    found, missing = results
    assert found["answer"] == "river" and not found["no_answer"]
    assert found["score"] == pytest.approx(2 * TARGET, abs=1e-3)
    assert found["null_score"] == pytest.approx(2 * NULL, abs=1e-3)
    assert found["null_odds"] == pytest.approx(2 * NULL - 2 * TARGET, abs=1e-3)
    assert found["threshold"] == 0.0 and found["threshold_source"] == "default"
    assert missing["answer"] == "" and missing["no_answer"]
    assert missing["score"] == pytest.approx(0.0, abs=1e-3)
    assert missing["null_odds"] == pytest.approx(2 * NULL, abs=1e-3)
    assert "A: river" in describe(found)
    assert "A: no answer" in describe(missing) and "null score" in describe(missing)


def test_long_contexts_are_split_into_windows_like_evaluation(forced):
    [result] = answer(forced, "Which river?", LONG_CONTEXT, max_seq_length=48, doc_stride=16, max_query_length=16)
    assert result["windows"] > 2 and result["answer"] == "river"
    [whole] = answer(forced, "Which river?", LONG_CONTEXT, max_seq_length=128, doc_stride=32, max_query_length=16)
    assert whole["windows"] < result["windows"] and whole["null_odds"] == pytest.approx(result["null_odds"], abs=1e-3)


def test_thresholds_given_or_saved_with_an_export(forced, tmp_path):
    assert answer(forced, "Where?", SHORT, threshold=-7.0)[0]["no_answer"]  # null odds -6 > -7
    assert answer(forced, "Where?", NO_RIVER, threshold=5.0)[0]["answer"] != ""  # null odds 4 <= 5: best span
    saved = forced_model_dir(tmp_path / "saved")
    (saved / EXPORT_INFO_FILE).write_text(json.dumps(
        {"na_threshold": -7.0, "tokenization": {"max_seq_length": 48, "doc_stride": 16, "max_query_length": 16}}))
    [result] = answer(saved, "Which river?", LONG_CONTEXT)
    assert result["no_answer"] and result["threshold"] == -7.0
    assert result["threshold_source"] == str(saved / EXPORT_INFO_FILE) and result["windows"] > 2
    assert answer(saved, "Which river?", LONG_CONTEXT, threshold=0.0)[0]["answer"] == "river"


def test_bad_input_is_named(forced, tmp_path):
    with pytest.raises(ValueError, match="question 1 is empty"):
        answer(forced, ["Where?", "  "], SHORT)
    with pytest.raises(ValueError, match="2 questions but 3 contexts"):
        answer(forced, ["a?", "b?"], [SHORT, SHORT, SHORT])
    with pytest.raises(ValueError, match="the context of question 0 is empty"):
        answer(forced, "Where?", "")
    with pytest.raises(DataError, match="max_seq_length=512 exceeds .* max_position_embeddings=128"):
        answer(forced, "Where?", SHORT, max_seq_length=512)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        answer(tmp_path, "Where?", SHORT)
    bad = forced_model_dir(tmp_path / "bad")
    (bad / EXPORT_INFO_FILE).write_text(json.dumps({"na_threshold": "high"}))
    with pytest.raises(ValueError, match="'na_threshold' must be a finite number"):
        answer(bad, "Where?", SHORT)


def test_cli_answer(forced, tmp_path, capsys):
    assert cli.main(["answer", "--model", str(forced), "--question", "Where did the dog run?", "--context", SHORT]) == 0
    printed = capsys.readouterr().out
    assert "Q: Where did the dog run?" in printed and "A: river  (score 10" in printed
    context_file = tmp_path / "context.txt"
    context_file.write_text(NO_RIVER, encoding="utf-8")
    assert cli.main(["answer", "--model", str(forced), "--question", "Where?", "--question", "When?",
                     "--context-file", str(context_file), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["answer"] for r in results] == ["", ""] and all(r["no_answer"] for r in results)
    assert cli.main(["answer", "--model", str(tmp_path / "nowhere"), "--question", "Q?", "--context", "C"]) == 2
    assert "no config.json" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_TEACHER.is_dir(), reason="needs ../shared/models/teacher-minilm-l6-squad2")
def test_the_shared_teacher_answers_and_abstains():
    context = ("The old city of Norhaven was founded in 1721 by King Alric near the north river. The great bridge "
               "was built in 1802 and it joined the two banks of the river.")
    bridge, founder, airport = answer(SHARED_TEACHER, ["When was the bridge built?", "Who founded the city?",
                                                       "When was the airport built?"], context)
    assert bridge["answer"] == "1802" and founder["answer"] == "King Alric"
    assert airport["no_answer"]


def test_a_long_context_is_tokenised_once_and_its_windows_run_a_batch_at_a_time(forced, monkeypatch):
    """Questions about one long context: the context goes through the tokenizer once, and no more than
    --batch-size windows exist as model inputs at any moment (the rest are kept as logits and offsets only)."""
    from transformers import AutoTokenizer

    from tune_distill import answer as answer_module

    context = " ".join([SHORT] * 30)  # ~500 tokens: ~20 windows of 48 tokens per question
    questions = [f"Where did the dog run {index}?" for index in range(3)]
    tokenizer = AutoTokenizer.from_pretrained(str(forced))
    calls = {"context": 0}
    real_call = type(tokenizer).__call__

    def counting(self, text, *args, **kwargs):  # times the context is tokenised, alone or in (question, context) pairs
        for part in (text, *args[:1], kwargs.get("text_pair")):
            calls["context"] += part.count(context) if isinstance(part, list) else part == context
        return real_call(self, text, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), "__call__", counting)
    sizes = []
    real_table = answer_module.features_to_table
    monkeypatch.setattr(answer_module, "features_to_table", lambda columns, *args, **kwargs:
                        sizes.append(len(columns["input_ids"])) or real_table(columns, *args, **kwargs))
    results = answer(forced, questions, context, max_seq_length=48, doc_stride=16, max_query_length=16, batch_size=8,
                     tokenizer=tokenizer)
    assert calls["context"] == 1
    assert max(sizes) <= 8 and sum(sizes) == sum(r["windows"] for r in results)
    assert all(r["windows"] > 15 and r["answer"] == "river" for r in results), [r["windows"] for r in results]
    # the same answers, scores and window counts as a context small enough for one window set each
    few = answer(forced, questions[:2], context, max_seq_length=48, doc_stride=16, max_query_length=16, batch_size=512,
                 tokenizer=tokenizer)
    assert [(r["score"], r["null_odds"], r["windows"]) for r in few] == \
        [(r["score"], r["null_odds"], r["windows"]) for r in results[:2]]


def test_too_many_windows_is_a_named_error_before_any_inference(forced, monkeypatch):
    from tune_distill import answer as answer_module

    monkeypatch.setattr(answer_module, "predict_logits", lambda *a, **k: pytest.fail("inference ran"))
    with pytest.raises(DataError, match=r"answer: question 0: its context makes \d+ windows of 48 tokens, more than "
                                        r"max_windows=10; split the context or raise --max-windows"):
        answer(forced, "Where?", " ".join([SHORT] * 30), max_seq_length=48, doc_stride=16, max_query_length=16,
               max_windows=10)
