"""Shared tiny fixtures: a character-level WordPiece tokenizer, SQuAD 2.0 files, a tiny QA model.

Everything is built here, offline, in milliseconds: no hub access (HF_HUB_OFFLINE is forced on).
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import shutil
import string
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Sweeps sign their folders with a key kept outside them (tune_distill/signing.py): the tests' key lives in a folder
# of this session (inherited by the sweep drivers the tests start), never in the real ~/.config.
if not os.environ.get("TUNE_DISTILL_TEST_KEYS"):  # once per session (this module may be imported twice)
    os.environ.pop("TUNE_DISTILL_SIGNING_KEY", None)
    os.environ["TUNE_DISTILL_TEST_KEYS"] = tempfile.mkdtemp(prefix="tune-distill-test-keys-")
    atexit.register(shutil.rmtree, os.environ["TUNE_DISTILL_TEST_KEYS"], True)
os.environ["TUNE_DISTILL_SIGNING_KEY_FILE"] = os.path.join(os.environ["TUNE_DISTILL_TEST_KEYS"], "signing.key")

TINY_WORDS = (
    "the what who when where which is was of in on at a an and to by for from it its "
    "river city king year built founded cat dog sat ran near old new north south"
).split()


def tiny_vocab() -> list[str]:
    """Special tokens, single characters (with ## continuations) and a few whole words."""
    chars = list(string.ascii_lowercase) + list(string.digits)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += chars + ["##" + c for c in chars] + list(".,?!'\"-():;")
    vocab += [w for w in TINY_WORDS if w not in vocab]
    return vocab


def make_tiny_tokenizer(directory: Path):
    from transformers import BertTokenizer

    tokenizer = BertTokenizer(vocab={token: index for index, token in enumerate(tiny_vocab())})
    tokenizer.save_pretrained(str(directory))
    return tokenizer


LONG_CONTEXT = (
    "The old city of Norhaven was founded in 1721 by King Alric near the north river. "
    "For many years the city was small. Farmers sold grain at the market on the south bank. "
    "The great bridge was built in 1802 and it joined the two banks of the river. "
    "Later a railway reached the city in 1851, and the population grew to forty thousand. "
    "The cathedral, begun in 1760, was finished only in 1899 after two fires."
)


def tiny_squad_dict() -> dict:
    """A SQuAD 2.0 file: answerable and unanswerable questions, one context needing several windows."""
    short_context = "The cat sat near the dog. The dog ran to the river in 1999."
    return {
        "version": "v2.0",
        "data": [
            {
                "title": "Norhaven",
                "paragraphs": [
                    {
                        "context": LONG_CONTEXT,
                        "qas": [
                            {
                                "id": "q-founded",
                                "question": "When was the city founded?",
                                "answers": [{"text": "1721", "answer_start": LONG_CONTEXT.index("1721")}],
                                "is_impossible": False,
                            },
                            {
                                "id": "q-bridge",
                                "question": "When was the bridge built?",
                                "answers": [
                                    {"text": "1802", "answer_start": LONG_CONTEXT.index("1802")},
                                    {"text": "in 1802", "answer_start": LONG_CONTEXT.index("in 1802")},
                                ],
                                "is_impossible": False,
                            },
                            {
                                "id": "q-cathedral",
                                "question": "When was the cathedral finished?",
                                "answers": [{"text": "1899", "answer_start": LONG_CONTEXT.index("1899")}],
                                "is_impossible": False,
                            },
                            {
                                "id": "q-airport",
                                "question": "When was the airport built?",
                                "answers": [],
                                "plausible_answers": [{"text": "1802", "answer_start": LONG_CONTEXT.index("1802")}],
                                "is_impossible": True,
                            },
                        ],
                    }
                ],
            },
            {
                "title": "Animals",
                "paragraphs": [
                    {
                        "context": short_context,
                        "qas": [
                            {
                                "id": "q-cat",
                                "question": "Where did the cat sit?",
                                "answers": [
                                    {"text": "near the dog", "answer_start": short_context.index("near the dog")}
                                ],
                                "is_impossible": False,
                            },
                            {
                                "id": "q-dog-year",
                                "question": "In which year did the dog run to the river?",
                                "answers": [{"text": "1999", "answer_start": short_context.index("1999")}],
                                "is_impossible": False,
                            },
                            {
                                "id": "q-bird",
                                "question": "Where did the bird fly?",
                                "answers": [],
                                "is_impossible": True,
                            },
                        ],
                    }
                ],
            },
        ],
    }


def squad_example(qid: str, context: str = "", answers: tuple[str, ...] = (), question: str = "q?"):
    """A hand-made SquadExample: answerable when `answers` are given (each found in `context`)."""
    from tune_distill.data import SquadExample

    starts = tuple(context.index(a) if a in context else 0 for a in answers)
    return SquadExample(qid, "T", context, question, tuple(answers), starts, not answers)


@pytest.fixture
def tiny_tokenizer_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "tokenizer"
    directory.mkdir()
    make_tiny_tokenizer(directory)
    return directory


@pytest.fixture
def tiny_tokenizer(tiny_tokenizer_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir))


@pytest.fixture
def tiny_squad_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_squad.json"
    path.write_text(json.dumps(tiny_squad_dict()))
    return path


def write_squad(path: Path, articles: list[dict]) -> Path:
    """A SQuAD 2.0 file of `articles` at `path`."""
    path.write_text(json.dumps({"version": "v2.0", "data": articles}))
    return path


def renamed_article(article: dict, prefix: str) -> dict:
    """The same article under another title with other question ids (a split no sweep saw)."""
    article = copy.deepcopy(article)
    article["title"] = f"{prefix}{article['title']}"
    for paragraph in article["paragraphs"]:
        for question in paragraph["qas"]:
            question["id"] = f"{prefix}{question['id']}"
    return article


def tiny_run_config(teacher: Path, train: Path, val: Path, cache_dir: Path, *settings: str):
    """A RunConfig for a tiny run of seconds (48-token windows, 2 layers, 2 steps of 4) with `settings` on top."""
    from tune_distill.config import load_config

    return load_config(None, [f"teacher.path={teacher}", f"data.train_files=[{train}]", f"data.val_file={val}",
                              f"data.cache_dir={cache_dir}", "data.max_seq_length=48", "data.doc_stride=16",
                              "data.max_query_length=16", "student.num_hidden_layers=2",
                              "student.hidden_dropout_prob=0.0", "distill.max_steps=2", "distill.train_batch_size=4",
                              *settings])


def make_tiny_qa_model_dir(directory: Path, num_hidden_layers: int = 2, seed: int = 0) -> Path:
    """A tiny BertForQuestionAnswering (hidden 32, 4 heads) with the tiny tokenizer, saved to `directory`."""
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    directory.mkdir(parents=True, exist_ok=True)
    make_tiny_tokenizer(directory)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tiny_vocab()),
        hidden_size=32,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertForQuestionAnswering(config).save_pretrained(str(directory))
    return directory


@pytest.fixture
def tiny_qa_model_dir(tmp_path: Path) -> Path:
    return make_tiny_qa_model_dir(tmp_path / "tiny_qa_model", num_hidden_layers=4)


def write_sweep_inputs(root: Path) -> tuple[Path, Path]:
    """A tiny 2-layer teacher and a data folder (train.json, val.json) under `root`, for tiny sweeps."""
    teacher = make_tiny_qa_model_dir(root / "teacher", num_hidden_layers=2)
    data = root / "data"
    data.mkdir()
    for name in ("train.json", "val.json"):
        (data / name).write_text(json.dumps(tiny_squad_dict()))
    return teacher, data


def write_replay_run(folder: Path, rows: list[dict]) -> Path:
    """A recorded fifo run for the replay benches: `rows` (one evaluation each) as curves.jsonl, and a sweep.json
    maximising f1, minimising parameters, with rungs at steps 2 and 4; returns the curves file."""
    curves = folder / "curves.jsonl"
    curves.write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "sweep.json").write_text(json.dumps({
        "objectives": [{"name": "f1", "direction": "max"}, {"name": "parameters", "direction": "min"}],
        "constraints": [], "config": {"scheduler": {"rungs": [2, 4]}}}))
    return curves
