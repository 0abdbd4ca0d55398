"""A sweep folder is untrusted input: `report`, `confirm` and `export` read it as data.

Each finding replayed: a copied folder whose sweep.json names a capture endpoint gets nothing sent there;
torn last lines of study.journal and trials.jsonl are dropped with one warning and the next append starts on
a clean line; bad sweep.json, summary.json, scheduler_state.json, journal lines and infinite metrics are one
line naming the file and field, written before anything else is; a copy reads its own run folders only; and
`--carve-from` never replaces a carve record.
"""

from __future__ import annotations

import copy
import http.server
import json
import logging
import threading
from pathlib import Path

import pytest
from conftest import tiny_squad_dict

from tune_distill import cli
from tune_distill.records import read_sweep_settings, read_trials, resolve_run_dir, run_roots
from tune_distill.study import STUDY_FILE, check_journal

OBJECTIVES = [{"name": "exact", "direction": "max"}, {"name": "parameters", "direction": "min"}]


def _trial(number, exact, parameters, status="complete", baseline=False, **extra):
    return {"trial_id": f"t{number}", "number": number, "status": status, "baseline": baseline,
            "params": {"student.num_hidden_layers": 1 + number % 3, "distill.learning_rate": 1e-4 * (1 + number)},
            "metrics": {"exact": exact, "f1": exact + 5, "parameters": parameters}, "error": None, "duration": 1.0,
            **extra}


TRIALS = [_trial(0, 60.0, 100, baseline=True), _trial(1, 61.0, 80), _trial(2, 63.0, 104), _trial(3, 58.0, 120)]


def _sweep(folder: Path, trials=TRIALS, settings: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trials.jsonl").write_text("".join(json.dumps(trial) + "\n" for trial in trials))
    (folder / "sweep.json").write_text(json.dumps({"objectives": OBJECTIVES, "constraints": [],
                                                   "config": {"name": "tune"}, **(settings or {})}))
    return folder


def _one_error_line(capsys) -> str:
    """The command's stderr, which must be exactly one line starting 'error: ' (no traceback)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


# --- the capture endpoint -----------------------------------------------------------------------------------------

class _Capture(http.server.BaseHTTPRequestHandler):
    """Answers every request 200 (an S3 stand-in that accepts anything) and records it."""

    seen: list[tuple[str, str, str]] = []

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        type(self).seen.append((self.command, self.path, self.headers.get("Authorization", "")))
        self.send_response(200)
        self.send_header("ETag", '"0"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def capture(monkeypatch):
    """http://127.0.0.1:<port> of a server that records every request; the list of requests."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUSERSOWNKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    _Capture.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Capture.seen
    server.shutdown()
    server.server_close()


def test_report_on_a_copy_sends_nothing_to_the_storage_its_sweep_json_names(tmp_path, capture, capsys, caplog):
    endpoint, seen = capture
    copy_ = _sweep(tmp_path / "copy", settings={"config": {"name": "tune", "storage_path": "s3://attacker/loot",
                                                           "storage_endpoint": endpoint}})
    with caplog.at_level(logging.INFO, logger="tune_distill"):
        assert cli.main(["report", "--sweep", str(copy_)]) == 0
    assert seen == []  # not one request: the folder's own storage settings are data, never a destination
    assert "nothing was copied there" in caplog.text
    assert (copy_ / "summary.json").is_file()

    # given on the command line, the location is used (and only then)
    assert cli.main(["report", "--sweep", str(copy_), "--storage-path", "s3://mine/results",
                     "--storage-endpoint", endpoint]) == 0
    puts = [path for method, path, _ in seen if method == "PUT"]
    assert "/mine/results/summary.json" in puts and "/mine/results/trials.jsonl" in puts
    assert not any("attacker" in path for _, path, _ in seen)
    capsys.readouterr()
    assert cli.main(["report", "--sweep", str(copy_), "--storage-endpoint", endpoint]) == 2
    assert "--storage-endpoint: only used with --storage-path" in _one_error_line(capsys)


# --- torn last lines ----------------------------------------------------------------------------------------------

def test_a_torn_journal_line_is_dropped_once_and_every_later_report_works(tmp_path, capsys, caplog):
    sweep = _sweep(tmp_path / "sweep")
    assert cli.main(["report", "--sweep", str(sweep)]) == 0
    journal = sweep / STUDY_FILE
    whole = journal.read_bytes()
    with open(journal, "ab") as handle:  # a kill -9 (or a full disk) in the middle of an append
        handle.write(b'{"op_code":4,"worker_id":"w","study_id":0,"datetime_st')
    with caplog.at_level(logging.WARNING, logger="tune_distill"):
        assert cli.main(["report", "--sweep", str(sweep)]) == 0
    torn = [record for record in caplog.records if "torn" in record.getMessage()]
    assert len(torn) == 1 and str(journal) in torn[0].getMessage()
    repaired = journal.read_bytes()  # cut back: the next append (opening the study writes one) starts clean
    assert repaired.startswith(whole) and repaired.endswith(b"\n") and check_journal(journal)  # whole lines only
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tune_distill"):
        assert cli.main(["report", "--sweep", str(sweep)]) == 0  # (before: a JSON error naming no file)
        assert cli.main(["report", "--sweep", str(sweep)]) == 0
    assert "torn" not in caplog.text
    assert check_journal(journal) > len(whole.splitlines()) and journal.read_bytes().endswith(b"\n")
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["importance"]["trials"] == 4  # the study still holds every trial, once


def test_a_torn_last_line_of_trials_jsonl_is_dropped_with_a_warning(tmp_path, caplog):
    sweep = _sweep(tmp_path / "sweep")
    with open(sweep / "trials.jsonl", "a") as handle:
        handle.write('{"trial_id": "t4", "number": 4, "sta')
    with caplog.at_level(logging.WARNING, logger="tune_distill"):
        records = read_trials(sweep)
    assert [record["trial_id"] for record in records] == ["t0", "t1", "t2", "t3"]
    assert f"{sweep / 'trials.jsonl'}:5: dropped a torn last line" in caplog.text
    (sweep / "trials.jsonl").write_text((sweep / "trials.jsonl").read_text() + "\n{not json\n")
    with pytest.raises(ValueError, match=r"trials\.jsonl:5: not valid JSON"):  # not the last line: damage, refused
        read_trials(sweep)


# --- one line naming the file and the field -----------------------------------------------------------------------

@pytest.mark.parametrize("settings, pattern", [
    ("{not json", r"sweep\.json: the sweep's record is not valid JSON"),
    ({"objectives": "exact"}, r"sweep\.json: objectives: expected a non-empty list of \{name, direction\} objects, "
                              r"got string \"exact\""),
    ({"objectives": [{"name": "exact", "direction": "up"}]},
     r"sweep\.json: objectives\[0\]\.direction: expected 'max' or 'min', got string \"up\""),
    ({"constraints": [{"name": "exact", "op": ">=", "bound": "high"}]},
     r"sweep\.json: constraints\[0\]\.bound: expected a finite number"),
    ({"config": {"storage_path": 7}}, r"sweep\.json: config\.storage_path: expected a string, got number 7"),
])
def test_a_malformed_sweep_json_is_one_line_naming_the_file_and_field(tmp_path, capsys, settings, pattern):
    sweep = _sweep(tmp_path / "sweep")
    (sweep / "sweep.json").write_text(settings if isinstance(settings, str) else json.dumps(settings))
    for command in (["report", "--sweep", str(sweep)], ["export", "--sweep", str(sweep), "--list"]):
        assert cli.main(command) == 2
        line = _one_error_line(capsys)
        assert str(sweep / "sweep.json") in line
        assert __import__("re").search(pattern, line), line
    assert not (sweep / "results.csv").exists() and not (sweep / STUDY_FILE).exists()  # nothing written


@pytest.mark.parametrize("line, pattern", [
    ('{"trial_id": "t9", "status": "done"}', r"trials\.jsonl:5: status: expected one of complete, stopped, failed, "
                                             r"unfinished, got string \"done\""),
    ('{"trial_id": "t9", "status": "complete", "metrics": [1, 2]}', r"trials\.jsonl:5: metrics: expected an object"),
    ('{"trial_id": ["t9"]}', r"trials\.jsonl:5: trial_id: expected a string or an integer, got list"),
])
def test_a_malformed_record_is_one_line_naming_the_line_and_field(tmp_path, capsys, line, pattern):
    sweep = _sweep(tmp_path / "sweep")
    (sweep / "trials.jsonl").write_text((sweep / "trials.jsonl").read_text() + line + "\n")
    assert cli.main(["report", "--sweep", str(sweep)]) == 2
    assert __import__("re").search(pattern, _one_error_line(capsys))


def test_an_infinite_metric_is_read_as_missing_before_anything_is_written(tmp_path, caplog):
    sweep = _sweep(tmp_path / "sweep")
    text = (sweep / "trials.jsonl").read_text().replace('"exact": 63.0', '"exact": Infinity')
    (sweep / "trials.jsonl").write_text(text)
    with caplog.at_level(logging.WARNING, logger="tune_distill"):
        assert cli.main(["report", "--sweep", str(sweep)]) == 0
    assert "not finite numbers (NaN or infinite) and are read as missing: line 3 trial t2 exact" in caplog.text
    summary = json.loads((sweep / "summary.json").read_text())
    assert "t2" not in summary["pareto_trials"] and summary["pareto_trials"]


def test_a_report_that_fails_writes_none_of_its_files(tmp_path, monkeypatch):
    from tune_distill import report

    sweep = _sweep(tmp_path / "sweep")

    def fail(*args, **kwargs):
        raise ValueError("the findings could not be stated")

    monkeypatch.setattr(report, "findings", fail)
    with pytest.raises(ValueError, match="could not be stated"):
        report.write_report(read_trials(sweep), tmp_path / "out", objectives=OBJECTIVES)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("line, pattern", [
    ('{"op_code": 99, "worker_id": "w"}', r"study\.journal: Optuna cannot replay this study journal"),
    ('{"op_code": 4, "worker_id": "w"', r"study\.journal:\d+: not a JSON line"),
    ('["op_code", 4]', r"study\.journal:\d+: not an Optuna journal operation"),
])
def test_a_damaged_journal_is_one_line_naming_the_file(tmp_path, capsys, line, pattern):
    sweep = _sweep(tmp_path / "sweep")
    assert cli.main(["report", "--sweep", str(sweep)]) == 0
    with open(sweep / STUDY_FILE, "a") as handle:
        handle.write(line + "\n")
    capsys.readouterr()
    assert cli.main(["report", "--sweep", str(sweep)]) == 2
    error = _one_error_line(capsys)
    assert __import__("re").search(pattern, error) and "rebuilds the study from trials.jsonl" in error, error


def test_a_malformed_summary_or_scheduler_state_is_one_line_naming_the_file(tmp_path):
    from tune_distill.confirm import ConfirmError
    from tune_distill.report import read_summary

    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"objectives": OBJECTIVES, "baseline": "t0"}))
    with pytest.raises(ConfirmError, match=r"summary\.json: baseline: expected null or an object with a trial_id"):
        read_summary(path, ConfirmError)
    path.write_text(json.dumps({"objectives": OBJECTIVES, "pareto_trials": "t1"}))
    with pytest.raises(ValueError, match=r"summary\.json: pareto_trials: expected a list of trial ids"):
        read_summary(path)

    pytest.importorskip("ray")
    from tune_distill.sweep.config import SweepConfigError
    from tune_distill.sweep.schedulers import read_scheduler_state

    state = tmp_path / "scheduler_state.json"
    state.write_text(json.dumps({"records": {"2": {"t1": {"values": [50.0, "big"], "decision": "STOP", "step": 2}}}}))
    with pytest.raises(SweepConfigError, match=r"scheduler_state\.json: records\.2\.t1\.values: expected a list of 2 "
                                               r"finite numbers"):
        read_scheduler_state(state, 2)
    state.write_text("[1, 2")
    with pytest.raises(SweepConfigError, match=r"scheduler_state\.json: the pareto_sh scheduler's state is not valid"):
        read_scheduler_state(state, 2)


# --- a copy reads its own run folders -----------------------------------------------------------------------------

def test_a_copy_never_reads_the_originals_run_folders(tmp_path, capsys):
    original = tmp_path / "original"
    trials = []
    for trial in TRIALS:
        run = original / "tune" / f"trial_{trial['number']:04d}_{trial['trial_id']}" / "run"
        (run / "model").mkdir(parents=True)
        trials.append({**trial, "run_dir": str(run)})
    _sweep(original, trials, {"out_dir": str(original), "experiment_path": str(original / "tune")})
    copied = tmp_path / "copy"
    copied.mkdir()
    for name in ("trials.jsonl", "sweep.json"):
        (copied / name).write_bytes((original / name).read_bytes())
    settings = read_sweep_settings(copied)
    roots = run_roots(copied, settings)
    assert roots == (copied.resolve(),)
    assert resolve_run_dir(copied, "t1", trials[1]["run_dir"], None, roots) is None  # not the original's
    (copied / "tune" / "trial_0001_t1" / "run").mkdir(parents=True)
    (copied / "tune" / "trial_0002_t2").mkdir(parents=True)
    (copied / "tune" / "trial_0002_t2" / "run").symlink_to(original / "tune" / "trial_0002_t2" / "run")
    assert resolve_run_dir(copied, "t1", trials[1]["run_dir"], None, roots) == copied / "tune" / "trial_0001_t1" / "run"
    assert resolve_run_dir(copied, "t2", trials[2]["run_dir"], None, roots) is None  # a link out of the copy
    assert cli.main(["export", "--sweep", str(copied), "--list"]) == 0
    table = capsys.readouterr().out
    assert str(original) not in table and "run folder not found" in table
    # a sweep whose local storage_path was outside its folder reads the experiment there
    outside = {"out_dir": str(tmp_path / "elsewhere"), "experiment_path": str(original / "tune")}
    assert run_roots(copied, outside) == (copied.resolve(), (original / "tune").resolve())


# --- --carve-from -------------------------------------------------------------------------------------------------

def test_carve_never_replaces_a_carve_record(tmp_path):
    from tune_distill.config import load_config
    from tune_distill.confirm import ConfirmError, carve

    norhaven, animals = tiny_squad_dict()["data"]
    unseen = copy.deepcopy(norhaven)
    unseen["title"] = "unseen " + unseen["title"]
    for paragraph in unseen["paragraphs"]:
        for question in paragraph["qas"]:
            question["id"] = "u-" + question["id"]
    files = {}
    for name, articles in (("train", [norhaven]), ("val", [animals]), ("source", [norhaven, animals, unseen])):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps({"version": "v2.0", "data": articles}))
    config = load_config(None, [f"data.train_files=[{files['train']}]", f"data.val_file={files['val']}"])
    out = tmp_path / "carved.json"
    first = carve(config, str(files["source"]), 1, out)
    assert first["titles"] == [unseen["title"]]
    assert carve(config, str(files["source"]), 1, out) == first  # a rerun writes the same files
    record = Path(str(out) + ".carve.json")
    foreign = json.dumps({"from": "someone else's file", "titles": ["x"]})
    record.write_text(foreign)
    out.unlink()
    with pytest.raises(ConfirmError, match=r"carved\.json\.carve\.json exists and says otherwise"):
        carve(config, str(files["source"]), 1, out)
    assert record.read_text() == foreign and not out.exists()  # neither replaced nor written
