"""Bad input through the command line: every malformed input below exits non-zero with one line naming the
file, key or question id, no traceback, and no half-written output folder.

Each case is one `tune-distill` command line (cli.main, in this process: an exception escaping it would fail
the test as a traceback would) built from tiny inputs: the 4-layer 32-wide teacher and the 7-question SQuAD
file of conftest, a few broken model folders (a plain BertModel, a DistilBERT teacher, a tokenizer
bigger than its model's vocabulary), and hostile files such as a copied sweep folder or a download may hold: a
YAML alias bomb ("billion laughs"), a 46 MB context, JSON nested 100,000 deep. Those are refused with bounded work,
before anything expands, is tokenised or runs.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import torch
import yaml
from conftest import make_tiny_tokenizer, tiny_squad_dict, tiny_vocab

from tune_distill import cli

RUN = ["data.max_seq_length=48", "data.doc_stride=16", "data.max_query_length=16", "student.num_hidden_layers=2",
       "distill.max_steps=2", "distill.train_batch_size=4", "evaluate.latency_seq_length=32",
       "evaluate.latency_batch_sizes=[1]", "evaluate.latency_repeats=1", "evaluate.latency_warmup=0"]
SMALL = ["--max-seq-length", "48", "--doc-stride", "16", "--max-query-length", "16"]
# "Billion laughs": nine aliases of nine aliases, ten levels: 9**10 (3.5 billion) values once the aliases are copied out
ALIAS_BOMB = "\n".join(["parameters: {distill.learning_rate: {type: float, low: 1.0e-4, high: 1.0e-3}}",
                        "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]",
                        *(f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 10))]) + "\n"
DEEP = "[" * 100_000 + "]" * 100_000  # JSON nested deeper than Python's parser can go


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
    (root / "laughs-space.yaml").write_text(ALIAS_BOMB)
    (root / "big-space.yaml").write_text("# a comment line\n" * 20_000)  # 340 KB: more than a YAML file may have
    with open(root / "huge.txt", "wb") as huge:  # 46 MB of context, sparse: no disk and no time to write
        huge.truncate(46_000_000)
    (root / "deep.json").write_text('{"version": "v2.0", "data": ' + DEEP + "}")
    deep_sweep = root / "deep-sweep"  # a copied sweep folder whose second record is nested 100,000 deep
    deep_sweep.mkdir()
    (deep_sweep / "trials.jsonl").write_text(json.dumps({"trial_id": "t0", "status": "complete"}) + "\n" +
                                             json.dumps({"trial_id": "t1", "params": "@"}).replace('"@"', DEEP) + "\n")
    confirmable = root / "confirmable-sweep"  # enough of a sweep for confirm to reach its --data
    (confirmable / "runs" / "t0" / "model").mkdir(parents=True)
    (confirmable / "runs" / "t0" / "config.yaml").write_text("{}\n")
    (confirmable / "trials.jsonl").write_text(json.dumps({"trial_id": "t0", "status": "complete",
                                                          "run_dir": str(confirmable / "runs" / "t0")}) + "\n")
    (confirmable / "summary.json").write_text(json.dumps({"baseline": {"trial_id": "t0"}, "pareto_trials": []}))
    a_run = root / "a-run"  # a run folder as run.py writes it: no other command may write into it
    (a_run / "model").mkdir(parents=True)
    for name in ("config.yaml", "command.txt", "environment.json", "history.jsonl", "metrics.json",
                 "predictions.json", "null_odds.json"):
        (a_run / name).write_text(f"{name} of the run\n")
    return {"root": root, "teacher": teacher, "squad": squad, "plain": plain, "distilbert": distilbert,
            "mismatched": mismatched, "invisible": root / "invisible.json", "latin1": root / "latin1.txt",
            "file": root / "a-file", "corrupt": sweep_json, "a_run": a_run,
            "untouched": [sweep_json, deep_sweep, confirmable, a_run]}


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


def _bomb_sweep(inputs):
    """A sweep config whose search space is the alias bomb."""
    path = _sweep_file(inputs, "alias-bomb")
    (inputs["root"] / "alias-bomb-space.yaml").write_text(ALIAS_BOMB)
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
    ("space-alias-bomb", lambda i, o: ["space", str(i["root"] / "laughs-space.yaml")],
     r"laughs-space\.yaml: its YAML aliases \(\*name\) expand it to more than 262,144 values"),
    ("sweep-alias-bomb", lambda i, o: ["sweep", "--config", str(_bomb_sweep(i)), "--out", str(o)],
     r"alias-bomb-space\.yaml: its YAML aliases \(\*name\) expand it to more than 262,144 values"),
    ("space-too-big", lambda i, o: ["space", str(i["root"] / "big-space.yaml")],
     r"big-space\.yaml: search space file: 340,000 bytes, more than the 262,144 allowed"),
    ("answer-huge-context-file", lambda i, o: ["answer", "--model", str(i["teacher"]), "--question", "Where?",
                                               "--context-file", str(i["root"] / "huge.txt")],
     r"--context-file .*huge\.txt: 46,000,000 bytes, more than the 20,480,000 allowed \(max_windows=10000 x 2048\); "
     r"split the context or raise --max-windows"),
    ("answer-model-is-a-file", lambda i, o: ["answer", "--model", str(i["squad"]), "--question", "Where?",
                                             "--context", "Here."],
     r"--model .*squad\.json: a file, not a folder \(expected a Hugging Face QA model folder with config\.json\)"),
    ("report-deep-trials", lambda i, o: ["report", "--sweep", str(i["root"] / "deep-sweep")],
     r"deep-sweep/trials\.jsonl:2: JSON nested too deeply to read"),
    ("evaluate-deep-squad", lambda i, o: ["evaluate", "--model", str(i["teacher"]),
                                          "--data", str(i["root"] / "deep.json"), "--out", str(o), *SMALL],
     r"deep\.json: JSON nested too deeply to read"),
    ("confirm-data-folder", lambda i, o: ["confirm", "--sweep", str(i["root"] / "confirmable-sweep"),
                                          "--data", str(i["root"]), "--out", str(o), "--device", "cpu"],
     r"bad_input\d*: a folder, not a data file \(expected a SQuAD 2\.0 JSON file\)"),
    ("evaluate-into-a-run-folder", lambda i, o: ["evaluate", "--model", str(i["teacher"]), "--data", str(i["squad"]),
                                                 "--out", str(i["a_run"]), *SMALL],
     r"--out .*a-run: is a run folder \(.*a-run\), whose files are its own records; write to a new folder, outside "
     r"it$"),
    ("teacher-into-a-run-folder", lambda i, o: ["teacher", "--encoder", "scratch:hidden=32,layers=1,heads=4",
                                                "--out", str(i["a_run"] / "model"), "--set",
                                                f"data.val_file={i['squad']}", "--set",
                                                f"data.train_files=[{i['squad']}]"],
     r"--out .*a-run/model: is inside a run folder \(.*a-run\)"),
    ("confirm-into-a-run-folder", lambda i, o: ["confirm", "--sweep", str(i["root"] / "confirmable-sweep"),
                                                "--data", str(i["squad"]), "--out", str(i["a_run"]),
                                                "--device", "cpu"],
     r"--out .*a-run: is a run folder"),
    ("confirm-carve-into-folder", lambda i, o: ["confirm", "--sweep", str(i["root"] / "confirmable-sweep"),
                                                "--carve-from", str(i["squad"]), "--articles", "1",
                                                "--data", str(i["root"]), "--out", str(o), "--device", "cpu"],
     r"--data .*bad_input\d*: a folder, not a file \(expected the SQuAD 2\.0 JSON file to carve into\)"),
]


def _contents(folder):
    """Every path under `folder`, files with their bytes."""
    return {path: path.read_bytes() if path.is_file() else None for path in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("builder, pattern", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_exits_non_zero_with_one_named_line_and_writes_nothing(inputs, builder, pattern, tmp_path, capsys):
    if "cuda" in pattern and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "out"
    argv = builder(inputs, out)
    untouched_before = [_contents(p) for p in inputs["untouched"]]
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
    assert [_contents(p) for p in inputs["untouched"]] == untouched_before  # byte for byte
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



def test_an_alias_bomb_is_refused_before_its_aliases_are_expanded(tmp_path):
    """Every YAML file goes through config.read_yaml (configs, sweep configs, spaces, a resumed sweep's copied
    space): the node graph is counted as if copied out, without copying it, and refused at the bound."""
    from tune_distill.config import ConfigError, parse_override, read_yaml

    bomb = tmp_path / "space.yaml"
    bomb.write_text(ALIAS_BOMB)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"space\.yaml: its YAML aliases \(\*name\) expand it to more than 262,144"):
        read_yaml(bomb)
    assert time.perf_counter() - started < 2
    loop = tmp_path / "loop.yaml"
    loop.write_text("parameters: &p {distill.learning_rate: *p}\n")
    with pytest.raises(ConfigError, match=r"loop\.yaml: a YAML alias \(\*name\) refers to a collection it is inside"):
        read_yaml(loop)
    deep = tmp_path / "deep.yaml"
    deep.write_text("parameters: " + "[" * 2000 + "]" * 2000 + "\n")
    with pytest.raises(ConfigError, match=r"deep\.yaml: YAML nested too deeply to read"):
        read_yaml(deep)
    shared = tmp_path / "shared.yaml"  # aliases within the bound are YAML as usual
    shared.write_text("fixed: &f {distill.max_steps: 2}\nagain: *f\n")
    assert read_yaml(shared) == {"fixed": {"distill.max_steps": 2}, "again": {"distill.max_steps": 2}}
    # a --set value past the bounds is not expanded either: it stays the text it was
    flow = "[" + ", ".join(["&l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]",
                            *(f"&l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 10))]) + "]"
    assert parse_override(f"student.init={flow}") == ("student.init", flow)


def test_a_context_above_its_limit_is_refused_before_it_is_read_or_tokenised(inputs, monkeypatch, capsys):
    """`answer` refuses a --context-file by its size (a 46 MB file: nothing of it read) and a --context by its
    length, before the model is loaded or anything tokenised."""
    from tune_distill import answer as answer_module
    from tune_distill.data import DataError

    monkeypatch.setattr(answer_module, "ContextWindows", lambda *a, **k: pytest.fail("the context was tokenised"))
    monkeypatch.setattr(answer_module, "load_qa_model", lambda *a, **k: pytest.fail("the model was loaded"))
    started = time.perf_counter()
    status = cli.main(["answer", "--model", str(inputs["teacher"]), "--question", "Where?",
                       "--context-file", str(inputs["root"] / "huge.txt"), "--max-windows", "100"])
    assert time.perf_counter() - started < 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert status == 2 and len(errors) == 1
    assert re.search(r"huge\.txt: 46,000,000 bytes, more than the 204,800 allowed \(max_windows=100 x 2048\)",
                     errors[0])
    with pytest.raises(DataError, match=r"answer: the context of question 0 has 2,049 characters, more than the "
                                        r"2,048 allowed \(max_windows=1 x 2048\); split the context or raise"):
        answer_module.answer(inputs["teacher"], "Where?", "x" * 2049, max_windows=1)
