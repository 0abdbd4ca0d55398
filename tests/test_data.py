"""tune_distill.data: loading and checking SQuAD 2.0 files, windows and labels, the feature cache, its command."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import LONG_CONTEXT, make_tiny_tokenizer, tiny_squad_dict

from tune_distill import cli, data
from tune_distill.data import DataError
from tune_distill.data import features as features_module

# Small windows so that the tiny (character-level) tokenizer splits the long context many times.
LENGTHS = dict(max_seq_length=64, doc_stride=16, max_query_length=12)


def write_squad(path: Path, document) -> Path:
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return path


def context_token_positions(offsets) -> list[int]:
    return [i for i, (start, end) in enumerate(offsets) if start >= 0]


def context_offsets(offsets) -> list[list[int]]:
    return [offsets[i] for i in context_token_positions(offsets)]


@pytest.fixture
def tiny_examples(tiny_squad_file):
    return data.load_examples(str(tiny_squad_file))


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def test_load_examples_reads_every_field(tiny_examples):
    by_id = {example.id: example for example in tiny_examples}
    assert list(by_id) == ["q-founded", "q-bridge", "q-cathedral", "q-airport", "q-cat", "q-dog-year", "q-bird"]
    bridge = by_id["q-bridge"]
    assert bridge.title == "Norhaven" and bridge.context == LONG_CONTEXT
    assert bridge.answer_texts == ("1802", "in 1802")
    assert bridge.answer_starts == (LONG_CONTEXT.index("1802"), LONG_CONTEXT.index("in 1802"))
    assert not bridge.is_impossible
    airport = by_id["q-airport"]  # plausible_answers are not answers
    assert airport.is_impossible and airport.answer_texts == () and airport.answer_starts == ()


def test_max_examples_keeps_the_first_questions(tiny_squad_file, tmp_path):
    assert [e.id for e in data.load_examples(str(tiny_squad_file), max_examples=2)] == ["q-founded", "q-bridge"]
    other = tiny_squad_dict()
    for article in other["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                qa["id"] = "other-" + qa["id"]
    other_file = write_squad(tmp_path / "other.json", other)
    examples = data.load_many([str(tiny_squad_file), str(other_file)], max_examples=9)
    assert [e.id for e in examples][-2:] == ["other-q-founded", "other-q-bridge"]
    assert len(data.load_many([str(tiny_squad_file), str(other_file)])) == 14


def _mutated(mutate) -> dict:
    document = tiny_squad_dict()
    mutate(document)
    return document


def _qa(document, question_id):
    for article in document["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                if qa["id"] == question_id:
                    return qa
    raise KeyError(question_id)


BAD_DOCUMENTS = {
    "missing question": (
        lambda d: _qa(d, "q-cat").pop("question"),
        ["q-cat", "'question'", "missing field"],
    ),
    "missing answers": (
        lambda d: _qa(d, "q-bridge").pop("answers"),
        ["q-bridge", "'answers'"],
    ),
    "missing is_impossible": (
        lambda d: _qa(d, "q-bird").pop("is_impossible"),
        ["q-bird", "'is_impossible'"],
    ),
    "missing answer_start": (
        lambda d: _qa(d, "q-founded")["answers"][0].pop("answer_start"),
        ["q-founded", "answer 0", "'answer_start'"],
    ),
    "missing context": (
        lambda d: d["data"][1]["paragraphs"][0].pop("context"),
        ["article 1", "paragraph 0", "'context'"],
    ),
    "missing id": (
        lambda d: d["data"][1]["paragraphs"][0]["qas"][1].pop("id"),
        ["article 1", "question 1", "'id'"],
    ),
    "answer_start as text": (
        lambda d: _qa(d, "q-cat")["answers"][0].update(answer_start="4"),
        ["q-cat", "'answer_start' must be int"],
    ),
    "wrong answer_start": (
        lambda d: _qa(d, "q-founded")["answers"][0].update(answer_start=3),
        ["q-founded", "answer_start=3", "'1721'"],
    ),
    "negative answer_start": (
        lambda d: _qa(d, "q-dog-year")["answers"][0].update(answer_start=-4),
        ["q-dog-year", "answer_start=-4"],
    ),
    "duplicate id in one file": (
        lambda d: _qa(d, "q-bird").update(id="q-cat"),
        ["q-cat", "duplicate question id"],
    ),
    "impossible with answers": (
        lambda d: _qa(d, "q-cat").update(is_impossible=True),
        ["q-cat", "is_impossible is true", "expected none"],
    ),
    "answerable without answers": (
        lambda d: _qa(d, "q-bird").update(is_impossible="no"),
        ["q-bird", "'is_impossible' must be bool"],
    ),
    "possible without answers": (
        lambda d: _qa(d, "q-bird").update(is_impossible=False),
        ["q-bird", "is_impossible is false", "at least one answer"],
    ),
    "no questions": (
        lambda d: d.update(data=[]),
        ["no questions found"],
    ),
    "no data field": (
        lambda d: d.pop("data"),
        ["top level", "'data'"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_DOCUMENTS))
def test_bad_documents_name_file_question_and_problem(case, tmp_path):
    mutate, expected_parts = BAD_DOCUMENTS[case]
    path = write_squad(tmp_path / "bad.json", _mutated(mutate))
    with pytest.raises(DataError) as caught:
        data.load_examples(str(path))
    message = str(caught.value)
    assert str(path) in message
    for part in expected_parts:
        assert part in message, f"{part!r} not in {message!r}"


def test_missing_file_and_invalid_json(tmp_path):
    with pytest.raises(DataError, match=r"nowhere\.json: data file not found"):
        data.load_examples(str(tmp_path / "nowhere.json"))
    broken = write_squad(tmp_path / "broken.json", '{"version": "v2.0", "data": [')
    with pytest.raises(DataError, match=r"broken\.json: not valid JSON"):
        data.load_examples(str(broken))
    empty_file = write_squad(tmp_path / "empty.json", "")
    with pytest.raises(DataError, match=r"empty\.json: not valid JSON"):
        data.load_examples(str(empty_file))
    no_questions = write_squad(
        tmp_path / "no_qas.json", {"data": [{"title": "T", "paragraphs": [{"context": "c", "qas": []}]}]}
    )
    with pytest.raises(DataError, match=r"no_qas\.json: no questions found"):
        data.load_examples(str(no_questions))


def test_duplicate_ids_across_files(tiny_squad_file, tmp_path, tiny_tokenizer):
    second = write_squad(tmp_path / "second.json", tiny_squad_dict())
    with pytest.raises(DataError) as caught:
        data.load_many([str(tiny_squad_file), str(second)])
    message = str(caught.value)
    assert "q-founded" in message and "duplicate question id" in message
    assert str(second) in message and str(tiny_squad_file) in message
    with pytest.raises(DataError, match="duplicate question id"):
        data.load_features(
            [str(tiny_squad_file), str(second)], tiny_tokenizer, kind="train", cache_dir=None, **LENGTHS
        )


def test_bad_hub_source_is_a_clear_error():
    with pytest.raises(DataError, match="hub:<dataset>:<split>"):
        data.load_examples("hub:squad_v2")
    with pytest.raises(DataError, match="only the squad_v2 dataset"):
        data.load_examples("hub:squad:train")


# --------------------------------------------------------------------------------------------------
# Windows and labels
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def train_and_eval(tiny_examples, tiny_tokenizer):
    train = data.prepare_train_features(tiny_examples, tiny_tokenizer, **LENGTHS)
    evaluation = data.prepare_eval_features(tiny_examples, tiny_tokenizer, **LENGTHS)
    return train, evaluation


def test_train_and_eval_windows_are_the_same_unpadded_windows(train_and_eval):
    train, evaluation = train_and_eval
    assert set(train) == {
        "input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions", "example_index"
    }
    assert set(evaluation) == {"input_ids", "token_type_ids", "attention_mask", "offset_mapping", "example_index"}
    assert train["input_ids"] == evaluation["input_ids"]
    assert train["example_index"] == evaluation["example_index"]
    columns = ("input_ids", "token_type_ids", "attention_mask", "offset_mapping")
    for ids, types, mask, offsets in zip(*(evaluation[name] for name in columns)):
        assert len(ids) == len(types) == len(mask) == len(offsets) <= LENGTHS["max_seq_length"]
        assert set(mask) == {1}  # unpadded
        assert ids[0] == 2 and ids[-1] == 3  # [CLS] ... [SEP]
        # Only context tokens (token type 1, except the final [SEP]) carry offsets.
        context = context_token_positions(offsets)
        assert context == [i for i, t in enumerate(types) if t == 1][:-1]
        assert offsets[0] == [-1, -1]


def test_labels_round_trip_to_the_answer_text(train_and_eval, tiny_examples):
    train, evaluation = train_and_eval
    labelled = 0
    for window, (start, end) in enumerate(zip(train["start_positions"], train["end_positions"])):
        example = tiny_examples[train["example_index"][window]]
        if start == 0:
            assert end == 0
            continue
        labelled += 1
        offsets = evaluation["offset_mapping"][window]
        assert start <= end
        assert offsets[start][0] >= 0 and offsets[end][0] >= 0
        assert example.context[offsets[start][0] : offsets[end][1]] == example.answer_texts[0]
    # Every answerable question is labelled in at least one window.
    answerable = {i for i, e in enumerate(tiny_examples) if not e.is_impossible}
    labelled_examples = {train["example_index"][w] for w, s in enumerate(train["start_positions"]) if s}
    assert labelled_examples == answerable
    assert labelled >= len(answerable)


def test_long_context_gives_overlapping_windows(train_and_eval, tiny_examples, tiny_tokenizer):
    _, evaluation = train_and_eval
    founded = [e.id for e in tiny_examples].index("q-founded")
    windows = [w for w, i in enumerate(evaluation["example_index"]) if i == founded]
    assert len(windows) >= 3
    stride = LENGTHS["doc_stride"]
    covered_until = 0
    for previous, following in zip(windows, windows[1:]):
        previous_offsets = context_offsets(evaluation["offset_mapping"][previous])
        following_offsets = context_offsets(evaluation["offset_mapping"][following])
        assert previous_offsets[-stride:] == following_offsets[:stride]  # exactly doc_stride tokens shared
        assert following_offsets[-1][1] > previous_offsets[-1][1]  # and the window moves on
        covered_until = following_offsets[-1][1]
    assert covered_until == len(LONG_CONTEXT)  # the last window reaches the end of the context


def test_cls_label_outside_the_window_and_for_unanswerable(train_and_eval, tiny_examples):
    train, evaluation = train_and_eval
    ids = [e.id for e in tiny_examples]
    labels_of = lambda qid: [  # noqa: E731
        (train["start_positions"][w], train["end_positions"][w])
        for w, i in enumerate(train["example_index"])
        if i == ids.index(qid)
    ]
    assert set(labels_of("q-airport")) == {(0, 0)}
    assert set(labels_of("q-bird")) == {(0, 0)}
    founded = labels_of("q-founded")
    assert founded[0] != (0, 0)  # 1721 is near the start of the context
    assert all(label == (0, 0) for label in founded[2:])  # ... and far from the later windows
    # A window that holds the answer only partly is labelled [CLS] too.
    cathedral = ids.index("q-cathedral")
    answer_start = LONG_CONTEXT.index("1899")
    for window, example_index in enumerate(train["example_index"]):
        if example_index != cathedral:
            continue
        spans = context_offsets(evaluation["offset_mapping"][window])
        fully_inside = spans[0][0] <= answer_start and spans[-1][1] >= answer_start + 4
        assert (train["start_positions"][window] != 0) == fully_inside


def test_questions_are_truncated_to_max_query_length(tiny_tokenizer):
    context = "The dog ran to the river in 1999."
    long_question = "Which dog ran to the old river near the north city in the year 1999?"
    example = data.SquadExample("q-long", "T", context, long_question, ("1999",), (context.index("1999"),), False)
    full_question_ids = tiny_tokenizer(long_question, add_special_tokens=False)["input_ids"]
    assert len(full_question_ids) > 7
    for max_query_length in (1, 7):
        features = data.prepare_train_features([example], tiny_tokenizer, 64, 8, max_query_length)
        ids = features["input_ids"][0]
        question_ids = ids[1 : ids.index(3)]  # between [CLS] and the first [SEP]
        assert question_ids == full_question_ids[:max_query_length]
        start, end = features["start_positions"][0], features["end_positions"][0]
        assert tiny_tokenizer.decode(ids[start : end + 1]).replace(" ", "") == "1999"
    # A short question is untouched (leading whitespace is dropped, as in HF's example).
    short = data.SquadExample("q-short", "T", context, "   who ran?", ("The dog",), (0,), False)
    ids = data.prepare_eval_features([short], tiny_tokenizer, 64, 8, 12)["input_ids"][0]
    assert ids[1 : ids.index(3)] == tiny_tokenizer("who ran?", add_special_tokens=False)["input_ids"]


def test_tokenizer_and_length_checks(tiny_examples, tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    left = AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir), padding_side="left")
    with pytest.raises(DataError, match="padding_side is 'left'"):
        data.prepare_train_features(tiny_examples, left, **LENGTHS)
    right = AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir))
    with pytest.raises(DataError, match="doc_stride=49"):
        data.prepare_eval_features(tiny_examples, right, max_seq_length=64, doc_stride=49, max_query_length=12)


# --------------------------------------------------------------------------------------------------
# Fingerprints and the cache
# --------------------------------------------------------------------------------------------------


def load(sources, tokenizer, cache_dir, kind="eval", **overrides):
    lengths = {**LENGTHS, **overrides}
    return data.load_features([str(s) for s in sources], tokenizer, kind=kind, cache_dir=cache_dir, **lengths)


def test_feature_set_table_matches_prepared_features(tiny_squad_file, tiny_examples, tiny_tokenizer, tmp_path):
    for kind, prepare in (("train", data.prepare_train_features), ("eval", data.prepare_eval_features)):
        expected = prepare(tiny_examples, tiny_tokenizer, **LENGTHS)
        feature_set = load([tiny_squad_file], tiny_tokenizer, tmp_path / "cache", kind=kind)
        assert len(feature_set) == len(expected["input_ids"])
        assert set(feature_set.table.column_names) == set(expected)
        for name, values in expected.items():
            assert feature_set.column(name) == values, name
        assert [a.tolist() for a in feature_set.arrays("input_ids")] == expected["input_ids"]
        assert data.lengths(feature_set).tolist() == [len(ids) for ids in expected["input_ids"]]
        assert data.lengths(expected).tolist() == data.lengths(feature_set).tolist()
        assert feature_set.numpy("example_index").tolist() == expected["example_index"]
        assert [e.id for e in feature_set.examples] == [e.id for e in tiny_examples]
    offsets = feature_set.arrays("offset_mapping")
    assert offsets[0].shape == (len(expected["input_ids"][0]), 2)


def test_second_call_reads_the_cache(tiny_squad_file, tiny_tokenizer, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    first = load([tiny_squad_file], tiny_tokenizer, cache)
    assert first.path is not None and first.path.is_file() and first.path.parent == cache
    assert [p.name for p in cache.iterdir()] == [first.path.name]  # no temporary file left behind

    def no_tokenising(*args, **kwargs):
        raise AssertionError("tokenised although the cache holds these features")

    monkeypatch.setattr(features_module, "prepare_eval_features", no_tokenising)
    monkeypatch.setattr(features_module, "prepare_train_features", no_tokenising)
    with caplog.at_level(logging.INFO, logger="tune_distill.data"):
        second = load([tiny_squad_file], tiny_tokenizer, cache)
    assert f"features: cache hit {first.path}" in caplog.text
    assert second.path == first.path and second.fingerprint == first.fingerprint
    assert second.table.equals(first.table)
    with pytest.raises(AssertionError, match="tokenised"):
        load([tiny_squad_file], tiny_tokenizer, cache, kind="train")


def test_unreadable_cache_is_rebuilt(tiny_squad_file, tiny_tokenizer, tmp_path, caplog):
    first = load([tiny_squad_file], tiny_tokenizer, tmp_path)
    expected = first.column("input_ids")
    # Unlink first: writing into a memory-mapped file in place would pull the pages from under `first`.
    first.path.unlink()
    first.path.write_bytes(b"not an arrow file")
    with caplog.at_level(logging.WARNING, logger="tune_distill.data"):
        again = load([tiny_squad_file], tiny_tokenizer, tmp_path)
    assert "unreadable cache" in caplog.text
    assert again.column("input_ids") == expected


def test_cache_key_follows_data_lengths_kind_and_tokenizer(tiny_squad_file, tiny_tokenizer, tmp_path):
    cache = tmp_path / "cache"
    base = load([tiny_squad_file], tiny_tokenizer, cache).fingerprint
    assert load([tiny_squad_file], tiny_tokenizer, cache).fingerprint == base
    keys = {
        load([tiny_squad_file], tiny_tokenizer, cache, max_seq_length=72).fingerprint,
        load([tiny_squad_file], tiny_tokenizer, cache, doc_stride=8).fingerprint,
        load([tiny_squad_file], tiny_tokenizer, cache, max_query_length=10).fingerprint,
        load([tiny_squad_file], tiny_tokenizer, cache, kind="train").fingerprint,
        data.load_features(
            [str(tiny_squad_file)], tiny_tokenizer, kind="eval", cache_dir=cache, max_examples=3, **LENGTHS
        ).fingerprint,
    }
    assert base not in keys and len(keys) == 5

    # Same questions, different bytes (a changed context) -> a different key and different features.
    changed = tiny_squad_dict()
    changed["data"][1]["paragraphs"][0]["context"] += " The end."
    write_squad(tiny_squad_file, changed)
    changed_set = load([tiny_squad_file], tiny_tokenizer, cache)
    assert changed_set.fingerprint != base
    assert changed_set.examples[-1].context.endswith("The end.")

    # Another vocabulary -> another tokenizer fingerprint and cache key.
    from transformers import BertTokenizer

    vocab = {token: index for index, token in enumerate(list(tiny_tokenizer.get_vocab()) + ["cathedral"])}
    other_tokenizer = BertTokenizer(vocab=vocab)
    assert data.tokenizer_fingerprint(other_tokenizer) != data.tokenizer_fingerprint(tiny_tokenizer)
    assert load([tiny_squad_file], other_tokenizer, cache).fingerprint != changed_set.fingerprint


def test_tokenizer_fingerprint_is_stable(tiny_tokenizer_dir, tiny_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    before = data.tokenizer_fingerprint(tiny_tokenizer)
    tiny_tokenizer(["a question"], ["a context"], truncation="only_second", max_length=20, stride=4,
                   return_overflowing_tokens=True)
    assert data.tokenizer_fingerprint(tiny_tokenizer) == before  # truncation state left by calls is ignored
    assert data.tokenizer_fingerprint(AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir))) == before
    copy_dir = tmp_path / "copy"
    make_tiny_tokenizer(copy_dir)
    assert data.tokenizer_fingerprint(AutoTokenizer.from_pretrained(str(copy_dir))) == before
    left = AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir), padding_side="left")
    assert data.tokenizer_fingerprint(left) != before


def test_file_fingerprint_is_the_content_sha256(tmp_path):
    import hashlib

    path = write_squad(tmp_path / "x.json", '{"data": []}')
    assert data.file_fingerprint(path) == hashlib.sha256(b'{"data": []}').hexdigest()
    with pytest.raises(DataError, match="not found"):
        data.file_fingerprint(tmp_path / "missing.json")


def test_no_cache_dir_means_no_files(tiny_squad_file, tiny_tokenizer, tmp_path):
    feature_set = load([tiny_squad_file], tiny_tokenizer, None)
    assert feature_set.path is None and len(feature_set) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["tiny_squad.json", "tokenizer"])


# --------------------------------------------------------------------------------------------------
# tune-distill features
# --------------------------------------------------------------------------------------------------


def test_features_command_checks_and_caches(tiny_squad_file, tiny_tokenizer_dir, tmp_path, caplog):
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="tune_distill.data"):
        status = cli.main(["features", "--data", str(tiny_squad_file), "--tokenizer", str(tiny_tokenizer_dir),
                           "--kind", "train", "--max-seq-length", "64", "--doc-stride", "16",
                           "--max-query-length", "12", "--cache-dir", str(cache)])
    assert status == 0
    assert "data: 7 questions (2 unanswerable)" in caplog.text
    assert [path.name.startswith("features-train-") for path in cache.iterdir()] == [True]
    bad = write_squad(tmp_path / "bad.json", "{not json")
    assert cli.main(["features", "--data", str(bad), "--tokenizer", str(tiny_tokenizer_dir)]) == 2


def test_python_m_tune_distill_data_is_the_features_command():
    result = subprocess.run([sys.executable, "-m", "tune_distill.data", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "tune-distill features" in result.stdout and "--tokenizer" in result.stdout


@pytest.mark.parametrize("lengths", [(48, 16, 16), (64, 24, 16), (384, 128, 64), (40, 1, 8)])
def test_context_windows_are_the_eval_windows_with_the_context_tokenised_once(tiny_tokenizer, lengths):
    from tune_distill.data.windows import ContextWindows

    context = LONG_CONTEXT * 3
    windows = ContextWindows(context, tiny_tokenizer, *lengths)
    for question in ["When was the city founded?", "   what " * 30, "x"]:
        example = data.SquadExample("q", "", context, question, (), (), False)
        expected = data.prepare_eval_features([example], tiny_tokenizer, *lengths)
        made = list(windows.windows(question))
        assert windows.count(question) == len(made) == len(expected["input_ids"]) > 0
        for name in ("input_ids", "token_type_ids", "attention_mask", "offset_mapping"):
            assert [window[name] for window in made] == expected[name], name
