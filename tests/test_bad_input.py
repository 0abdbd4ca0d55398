"""Bad input through the command line: every malformed input below exits non-zero with one line naming the
file, key or question id, no traceback, and no half-written output folder.

Each case is one `tune-distill` command line (cli.main, in this process: an exception escaping it would fail
the test as a traceback would) built from tiny inputs: the 4-layer 32-wide teacher and the 7-question SQuAD
file of conftest, and a few broken model folders (a plain BertModel, a DistilBERT teacher, a tokenizer
bigger than its model's vocabulary).
"""

from __future__ import annotations

import json
import re

import pytest
import torch
import yaml
from conftest import make_tiny_tokenizer, tiny_squad_dict, tiny_vocab

from tune_distill import cli

RUN = ["data.max_seq_length=48", "data.doc_stride=16", "data.max_query_length=16", "student.num_hidden_layers=2",
       "distill.max_steps=2", "distill.train_batch_size=4", "evaluate.latency_seq_length=32",
       "evaluate.latency_batch_sizes=[1]", "evaluate.latency_repeats=1", "evaluate.latency_warmup=0"]
SMALL = ["--max-seq-length", "48", "--doc-stride", "16", "--max-query-length", "16"]


def _tiny_config(**sizes):
    from transformers import BertConfig

    return BertConfig(**{"vocab_size": len(tiny_vocab()), "hidden_size": 32, "num_hidden_layers": 2,
                         "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 128, **sizes})


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The tiny teacher and data, and the broken folders the cases point at."""
    from conftest import make_tiny_qa_model_dir
    from transformers import BertForQuestionAnswering, BertModel, DistilBertConfig, DistilBertForQuestionAnswering

    root = tmp_path_factory.mktemp("bad_input")
    teacher = make_tiny_qa_model_dir(root / "teacher")
    squad = root / "squad.json"
    squad.write_text(json.dumps(tiny_squad_dict()))
    plain = root / "plain-bert"  # an encoder without a question-answering head
    make_tiny_tokenizer(plain)
    BertModel(_tiny_config()).save_pretrained(str(plain))
    distilbert = root / "distilbert"
    make_tiny_tokenizer(distilbert)
    DistilBertForQuestionAnswering(DistilBertConfig(vocab_size=len(tiny_vocab()), dim=32, n_layers=2, n_heads=4,
                                                    hidden_dim=64, max_position_embeddings=128)
                                   ).save_pretrained(str(distilbert))
    mismatched = root / "mismatched"  # its tokenizer makes ids its embeddings do not have
    make_tiny_tokenizer(mismatched)
    torch.manual_seed(0)
    BertForQuestionAnswering(_tiny_config(vocab_size=20)).save_pretrained(str(mismatched))
    empty = tiny_squad_dict()  # an answerable question whose context has no tokens for the tokenizer
    empty["data"][0]["paragraphs"].append({"context": "\u200b\u200b", "qas": [{
        "id": "q-invisible", "question": "What is there?", "answers": [{"text": "\u200b", "answer_start": 0}],
        "is_impossible": False}]})
    (root / "invisible.json").write_text(json.dumps(empty))
    (root / "latin1.txt").write_bytes("Caf\u00e9 near the river.".encode("latin-1"))
    (root / "a-file").write_text("not a folder")
    sweep_json = root / "corrupt-sweep"
    sweep_json.mkdir()
    (sweep_json / "sweep.json").write_text('{"config": {"space": ')
    return {"root": root, "teacher": teacher, "squad": squad, "plain": plain, "distilbert": distilbert,
            "mismatched": mismatched, "invisible": root / "invisible.json", "latin1": root / "latin1.txt",
            "file": root / "a-file", "corrupt": sweep_json}


def _distill(inputs, out, *changes, teacher=None, data=None):
    data = data or inputs["squad"]
    sets = [f"teacher.path={teacher or inputs['teacher']}", f"data.train_files=[{data}]", f"data.val_file={data}",
            f"data.cache_dir={inputs['root'] / 'cache'}", *RUN, *changes]
    return ["distill", "--out", str(out), *[part for change in sets for part in ("--set", change)]]


def _sweep_file(inputs, name, **changes):
    space = inputs["root"] / f"{name}-space.yaml"
    space.write_text(yaml.safe_dump({"parameters": {"distill.learning_rate": {"type": "float", "low": 1e-4,
                                                                              "high": 1e-3, "log": True}},
                                     "fixed": {"student.num_hidden_layers": 1}, **changes.pop("space", {})}))
    config = {"space": str(space), "num_samples": 2, "base": {
        "teacher.path": str(inputs["teacher"]), "data.train_files": [str(inputs["squad"])],
        "data.val_file": str(inputs["squad"]), "distill.device": "cpu"}, **changes}
    path = inputs["root"] / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# (case id, argv builder (inputs, out) -> argv, pattern of the error line)
CASES = [
    ("teacher-batch-size", lambda i, o: _distill(i, o, "teacher.batch_size=-1"), r"teacher\.batch_size: must be >= 1"),
    ("train-batch-size", lambda i, o: _distill(i, o, "distill.train_batch_size=0"),
     r"distill\.train_batch_size: must be >= 1, got 0"),
    ("max-steps", lambda i, o: _distill(i, o, "distill.max_steps=-3"), r"distill\.max_steps: must be >= 0, got -3"),
    ("infinite-epochs", lambda i, o: _distill(i, o, "distill.num_train_epochs=.inf"),
     r"distill\.num_train_epochs: must be a finite number, got inf"),
    ("seed", lambda i, o: _distill(i, o, "distill.seed=-1"), r"distill\.seed: must be >= 0, got -1"),
    ("latency-batch-size", lambda i, o: _distill(i, o, "evaluate.latency_batch_sizes=[0]"),
     r"evaluate\.latency_batch_sizes: must be >= 1, got 0"),
    ("nan-learning-rate", lambda i, o: _distill(i, o, "distill.learning_rate=.nan"),
     r"distill\.learning_rate: must be a finite number, got nan"),
    ("cuda-without-gpu", lambda i, o: _distill(i, o, "distill.device=cuda"),
     r"distill\.device: device 'cuda': torch sees no CUDA GPU"),
    ("out-under-a-file", lambda i, o: _distill(i, i["file"] / "run"), r"--out .*a-file/run: .*a-file is a file"),
    ("teacher-out-under-a-file", lambda i, o: ["teacher", "--encoder", "scratch:hidden=32,layers=1,heads=4",
                                               "--out", str(i["file"] / "run"), "--set", f"data.val_file={i['squad']}",
                                               "--set", f"data.train_files=[{i['squad']}]"],
     r"--out .*a-file/run: .*a-file is a file"),
    ("teacher-not-qa", lambda i, o: _distill(i, o, teacher=i["plain"]),
     r"teacher\.path .*plain-bert: not a question-answering model: config\.json lists architectures \['BertModel'\]"),
    ("distilbert-teacher", lambda i, o: _distill(i, o, teacher=i["distilbert"]),
     r"teacher\.path .*distilbert: a distilbert model; students are built from BERT-architecture teachers"),
    ("vocabulary-mismatch", lambda i, o: _distill(i, o, teacher=i["mismatched"]),
     r"teacher\.path .*mismatched: its tokenizer has \d+ tokens but the model's vocab_size is 20"),
    ("context-without-tokens", lambda i, o: _distill(i, o, data=i["invisible"]),
     r"question q-invisible: marked answerable, but its context .* has no tokens"),
    ("nan-loss", lambda i, o: _distill(i, o, "distill.learning_rate=1e30", "distill.alpha_ce=0"),
     r"training diverged: the loss became nan at step \d+; lower distill\.learning_rate"),
    ("evaluate-batch-size", lambda i, o: ["evaluate", "--model", str(i["teacher"]), "--data", str(i["squad"]),
                                          "--out", str(o), "--batch-size", "-1", *SMALL],
     r"--batch-size: must be >= 1, got -1"),
    ("evaluate-threshold", lambda i, o: ["evaluate", "--model", str(i["teacher"]), "--data", str(i["squad"]),
                                         "--out", str(o), "--na-threshold", "nan", *SMALL],
     r"--na-threshold: must be a finite number, got nan"),
    ("evaluate-not-qa", lambda i, o: ["evaluate", "--model", str(i["plain"]), "--data", str(i["squad"]),
                                      "--out", str(o), *SMALL],
     r"--model .*plain-bert: not a question-answering model"),
    ("evaluate-cuda", lambda i, o: ["evaluate", "--model", str(i["teacher"]), "--data", str(i["squad"]),
                                    "--out", str(o), "--device", "cuda", *SMALL],
     r"device 'cuda': torch sees no CUDA GPU"),
    ("answer-not-qa", lambda i, o: ["answer", "--model", str(i["plain"]), "--question", "Where?", "--context", "Here."],
     r"--model .*plain-bert: not a question-answering model"),
    ("answer-not-utf8", lambda i, o: ["answer", "--model", str(i["teacher"]), "--question", "Where?",
                                      "--context-file", str(i["latin1"])],
     r"--context-file .*latin1\.txt: not UTF-8 text \(byte 3"),
    ("answer-batch-size", lambda i, o: ["answer", "--model", str(i["teacher"]), "--question", "Where?",
                                        "--context", "Here.", "--batch-size", "0"], r"--batch-size: must be >= 1"),
    ("sweep-nan-reduction-factor", lambda i, o: ["sweep", "--config", str(_sweep_file(
        i, "nan-rf", scheduler={"name": "pareto_sh", "rungs": [2], "reduction_factor": float("nan")})),
        "--out", str(o)],
     r"nan-rf\.yaml: scheduler\.reduction_factor: must be a finite number, got nan"),
    ("sweep-nan-cpu", lambda i, o: ["sweep", "--config", str(_sweep_file(
        i, "nan-cpu", resources_per_trial={"cpu": float("nan")})), "--out", str(o)],
     r"nan-cpu\.yaml: resources_per_trial\.cpu: must be a finite number, got nan"),
    ("sweep-string-bomb", lambda i, o: ["sweep", "--config", str(_sweep_file(
        i, "bomb", space={"derived": {"distill.warmup_steps": "'x' * 100000 * 100000"}})), "--out", str(o)],
     r"derived\.distill\.warmup_steps: string repetition and formatting"),
    ("sweep-corrupt-record", lambda i, o: ["sweep", "--resume", "--out", str(i["corrupt"])],
     r"corrupt-sweep/sweep\.json: the sweep's record is not valid JSON"),
]


@pytest.mark.parametrize("builder, pattern", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_exits_non_zero_with_one_named_line_and_writes_nothing(inputs, builder, pattern, tmp_path, capsys):
    if "cuda" in pattern and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "out"
    argv = builder(inputs, out)
    corrupt_before = sorted(p.name for p in inputs["corrupt"].iterdir())
    status = cli.main(argv)
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert status != 0, captured.out[-2000:] + captured.err[-2000:]
    assert "Traceback" not in captured.err + captured.out
    assert len(errors) == 1 and re.search(pattern, errors[0]), captured.err[-3000:]
    if argv[0] == "distill" and "training diverged" in pattern:
        # the run stopped mid-training: its header says what was tried, but no results pretend it finished
        assert not (out / "metrics.json").exists() and not (out / "model").exists()
    else:
        assert not out.exists(), sorted(str(p) for p in out.rglob("*"))
    assert sorted(p.name for p in inputs["corrupt"].iterdir()) == corrupt_before
    assert not (inputs["file"].parent / "run").exists()


def test_a_pruned_runs_model_folder_is_evaluated(tmp_path, capsys):
    """`evaluate` reads a run's model/ with pruned heads (student.load_student), as `answer` does."""
    from conftest import make_tiny_qa_model_dir

    from tune_distill.config import StudentConfig
    from tune_distill.student import build_student, save_student
    from tune_distill.teacher import load_teacher

    teacher_dir = make_tiny_qa_model_dir(tmp_path / "teacher")
    teacher, tokenizer = load_teacher(str(teacher_dir))
    student = build_student(StudentConfig(num_hidden_layers=1, init="prune", num_attention_heads=2),
                            teacher.config, teacher)
    model_dir = save_student(student, tmp_path / "run" / "model", tokenizer)
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps(tiny_squad_dict()))
    out = tmp_path / "eval"
    assert cli.main(["evaluate", "--model", str(model_dir), "--data", str(squad), "--out", str(out), *SMALL]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["parameters"] == sum(p.numel() for p in student.parameters())
    assert "error" not in capsys.readouterr().err

