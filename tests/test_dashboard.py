"""`make dashboard`: the Optuna dashboard serves a real tiny sweep's study; its HTTP API lists every trial with both
objectives and the constraint, and (where Chromium is installed) the page renders the study and its Pareto front.
It is read-only and local: a write (DELETE, POST, PUT) gets 405 and leaves the study as it was, a foreign Host
header (DNS rebinding) gets 403, the reads the page makes still work, and it follows the journal as it grows.
The Ray dashboard's URL comes with how to authenticate, never with the token.

One tiny sweep (3 trials, a few optimiser steps each, on the module's local Ray) writes the study as
trials finish; `tune-distill dashboard` runs as a subprocess on a free port of 127.0.0.1, as `make dashboard` runs
it. The read-only and Host checks need no sweep: a two-objective study written with Optuna in tmp_path, called
in-process through WSGI, plus one served over HTTP.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("optuna_dashboard")

from sweep_world import ray_cluster_fixture, tiny_sweep, world_fixture  # noqa: E402,F401  (fixtures)

from tune_distill.study import STUDY_FILE, dashboard_command  # noqa: E402
from tune_distill.sweep.driver import run_sweep  # noqa: E402

CHROMIUM = next((path for path in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if path and shutil.os.path.exists(path)), None)


@pytest.fixture(scope="module")
def swept(world, ray_cluster, tmp_path_factory):
    """A finished tiny sweep (3 trials, the default constraint exact >= the no-answer score) and its records."""
    out = tmp_path_factory.mktemp("dashboard") / "tiny-sweep"
    records = run_sweep(tiny_sweep(world, num_samples=3), out)
    return out, records


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def _served(study_path: Path):
    """`dashboard_command` (what the sweep prints, `make dashboard` runs) on a free port; its URL while it runs."""
    port = _free_port()
    command = dashboard_command(study_path, port).split()
    assert command[:2] == ["tune-distill", "dashboard"] and command[-2:] == ["--port", str(port)]
    server = subprocess.Popen([sys.executable, "-m", "tune_distill", *command[1:]],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):  # until it answers (it exits on a bad journal: then fail with its output)
            if server.poll() is not None:
                pytest.fail(f"the dashboard exited: {server.stdout.read().decode()[-2000:]}")
            try:
                _get(f"{url}/api/meta")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def dashboard(swept):
    """The dashboard on the sweep's study.journal, bound to 127.0.0.1 (what `make dashboard` runs); its URL."""
    out, _ = swept
    with _served(out / STUDY_FILE) as url:
        yield url


def test_the_sweep_writes_its_study_as_trials_finish_and_nothing_twice(swept):
    import optuna

    from tune_distill.study import sync_study

    out, records = swept

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / STUDY_FILE)))
    study = optuna.load_study(study_name="tiny-sweep", storage=storage)
    assert sorted(t.user_attrs["tune_trial_id"] for t in study.trials) == sorted(r["trial_id"] for r in records)
    assert all(t.intermediate_values for t in study.trials if t.state.name != "FAIL")  # curves from reported results
    sync_study(out, records)  # what the report does: nothing new
    assert len(optuna.load_study(study_name="tiny-sweep", storage=storage).trials) == len(records)


def test_resuming_the_sweep_continues_its_study_without_counting_a_trial_twice(swept):
    import optuna

    out, records = swept
    assert [r["trial_id"] for r in run_sweep(None, out, resume=True)] == [r["trial_id"] for r in records]
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / STUDY_FILE)))
    assert [summary.study_name for summary in storage.get_all_studies()] == ["tiny-sweep"]
    study = optuna.load_study(study_name="tiny-sweep", storage=storage)
    assert sorted(t.user_attrs["tune_trial_id"] for t in study.trials) == sorted(r["trial_id"] for r in records)


def test_the_dashboard_api_lists_every_trial_with_both_objectives_and_the_constraint(swept, dashboard):
    out, records = swept
    studies = _get(f"{dashboard}/api/studies")["study_summaries"]
    assert [study["study_name"] for study in studies] == ["tiny-sweep"]
    detail = _get(f"{dashboard}/api/studies/{studies[0]['study_id']}")
    assert detail["name"] == "tiny-sweep" and detail["directions"] == ["maximize", "minimize"]
    assert detail["objective_names"] == ["exact", "parameters"]
    trials = {next(a["value"] for a in trial["user_attrs"] if a["key"] == "tune_trial_id"): trial
              for trial in detail["trials"]}
    assert sorted(trials) == sorted(record["trial_id"] for record in records)
    bound = json.loads((out / "sweep.json").read_text())["constraints"][0]["bound"]
    for record in records:
        trial = trials[record["trial_id"]]
        assert trial["state"] == {"complete": "Complete", "stopped": "Pruned"}[record["status"]]
        assert trial["values"] == pytest.approx([record["metrics"]["exact"], record["metrics"]["parameters"]])
        assert trial["constraints"] == pytest.approx([bound - record["metrics"]["exact"]])


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_the_dashboard_page_renders_the_study_and_its_pareto_front(swept, dashboard):
    study_id = _get(f"{dashboard}/api/studies")["study_summaries"][0]["study_id"]
    page = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--virtual-time-budget=20000", "--dump-dom", f"{dashboard}/dashboard/studies/{study_id}"],
        capture_output=True, text=True, timeout=180).stdout
    assert "tiny-sweep" in page
    pareto = page[page.index("Pareto Front"):]
    pareto = pareto[:pareto.index("History")] if "History" in pareto else pareto  # the Pareto-front card
    assert "exact" in pareto and "parameters" in pareto and "main-svg" in pareto  # its pickers and a Plotly chart


def test_the_ray_dashboard_url_comes_with_how_to_authenticate_and_never_the_token(monkeypatch, capsys, caplog):
    from types import SimpleNamespace

    from tune_distill.sweep import connect, driver

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **options: SimpleNamespace(dashboard_url="127.0.0.1:8265"))
    monkeypatch.setattr(connect, "_token_auth_enabled", lambda: True)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret-token-never-printed")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with caplog.at_level("INFO", logger="tune_distill"):
        assert driver.connect_ray() == (True, "http://127.0.0.1:8265")
    printed = capsys.readouterr().err
    assert "Ray dashboard: http://127.0.0.1:8265" in printed
    assert "ray get-auth-token" in printed and "~/.ray/auth_token" in printed and "ray get-auth-token" in caplog.text
    assert "secret-token-never-printed" not in printed + caplog.text


# --------------------------------------------------------------------------------------------------
# Read-only and local: no sweep needed, a two-objective study written with Optuna in tmp_path
# --------------------------------------------------------------------------------------------------

PORT = 8080
HOST = f"127.0.0.1:{PORT}"


def _write_study(path: Path, trials: int = 4) -> Path:
    """A two-objective study ("tiny": exact up, parameters down) of `trials` trials in the journal `path`."""
    import optuna

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    study = optuna.create_study(study_name="tiny", directions=["maximize", "minimize"], storage=storage,
                                load_if_exists=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["exact", "parameters"])
    study.optimize(lambda trial: (trial.suggest_float("lr", 1e-4, 1e-2, log=True), trial.suggest_int("layers", 1, 6)),
                   n_trials=trials)
    return path


@pytest.fixture
def journal(tmp_path):
    return _write_study(tmp_path / STUDY_FILE)


def _call(app, method: str, path: str, host: str | None = HOST, body: bytes = b""):
    """One request to a WSGI app in-process: (status code, headers, body)."""
    import io

    environ = {"REQUEST_METHOD": method, "PATH_INFO": path.partition("?")[0], "QUERY_STRING": path.partition("?")[2],
               "HTTP_ACCEPT_ENCODING": "gzip", "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
               "CONTENT_TYPE": "application/json", "HTTP_HOST": host or ""}
    setup_testing_defaults(environ)
    if host is None:
        del environ["HTTP_HOST"]
    answer = {}
    content = b"".join(app(environ, lambda status, headers, exc_info=None: answer.update(status=status,
                                                                                            headers=dict(headers))))
    return int(answer["status"].split()[0]), answer["headers"], content


def _trials(journal: Path) -> int:
    import optuna

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    return len(optuna.load_study(study_name="tiny", storage=storage).trials)


def test_a_delete_of_the_study_is_refused_and_the_study_stays_whole(journal):
    from tune_distill.dashboard import dashboard_app

    app, before = dashboard_app(journal.parent, PORT), journal.read_bytes()
    status, headers, body = _call(app, "DELETE", "/api/studies/0", body=b'{"remove_associated_artifacts": false}')
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert body.decode().count("\n") == 1 and "DELETE refused: the dashboard is read-only" in body.decode()
    assert journal.read_bytes() == before and _trials(journal) == 4
    status, _, body = _call(app, "GET", "/api/studies")
    assert status == 200 and [s["study_name"] for s in json.loads(body)["study_summaries"]] == ["tiny"]


@pytest.mark.parametrize("method, path", [
    ("POST", "/api/studies"), ("POST", "/api/studies/0/rename"), ("PUT", "/api/studies/0/note"),
    ("POST", "/api/trials/0/tell"), ("POST", "/api/trials/0/user-attrs"), ("PUT", "/api/studies/0/0/note"),
    ("POST", "/api/studies/0/preference"), ("DELETE", "/api/artifacts/0/x"), ("PATCH", "/api/studies/0"),
    ("OPTIONS", "/api/studies")])
def test_every_write_is_refused_with_405_and_writes_nothing(journal, method, path):
    from tune_distill.dashboard import dashboard_app

    app, before = dashboard_app(journal, PORT), journal.read_bytes()
    status, _, body = _call(app, method, path, body=json.dumps({"study_name": "x", "directions": ["minimize"],
                                                                "values": [1.0], "user_attrs": {}}).encode())
    assert status == 405 and body.decode().startswith(f"{method} refused: the dashboard is read-only")
    assert journal.read_bytes() == before


@pytest.mark.parametrize("host", ["evil.example:8080", "evil.example", "127.0.0.1.evil.example:8080", "127.0.0.1",
                                  "localhost:8081", "0.0.0.0:8080", "", None])
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_foreign_host_is_refused_with_403_naming_it_and_dns_rebinding(journal, host, method):
    from tune_distill.dashboard import dashboard_app

    status, _, body = _call(dashboard_app(journal, PORT), method, "/api/studies/0", host=host)
    assert status == 403 and body.decode().count("\n") == 1
    assert (repr(host) if host else "(none)") in body.decode() and "DNS rebinding" in body.decode()
    assert "127.0.0.1:8080" in body.decode() and "localhost:8080" in body.decode()


@pytest.mark.parametrize("host", [HOST, f"localhost:{PORT}", f"LocalHost:{PORT}", f"[::1]:{PORT}"])
def test_the_reads_the_page_makes_still_work_under_its_own_names(journal, host):
    from tune_distill.dashboard import dashboard_app

    app, before = dashboard_app(journal.parent, PORT), journal.read_bytes()
    assert json.loads(_call(app, "GET", "/api/meta", host)[2])["llm_is_available"] is False  # no POSTing features
    detail = json.loads(_call(app, "GET", "/api/studies/0?after=0", host)[2])
    assert detail["name"] == "tiny" and detail["objective_names"] == ["exact", "parameters"]
    assert len(detail["trials"]) == 4 and detail["best_trials"]  # the Pareto front
    assert len(json.loads(_call(app, "GET", "/api/studies/0?after=3", host)[2])["trials"]) == 1  # the page's polling
    importances = json.loads(_call(app, "GET", "/api/studies/0/param_importances", host)[2])["param_importances"]
    assert len(importances) == 2
    status, headers, csv = _call(app, "GET", "/csv/0", host)
    assert status == 200 and csv.decode().startswith("Number,State,exact,parameters")
    for page in ("/", "/dashboard", "/dashboard/studies/0"):
        assert _call(app, "GET", page, host)[0] in (200, 302)
    assert _call(app, "GET", "/dashboard/studies/0", host)[2].startswith(b"<!DOCTYPE html>")
    status, headers, body = _call(app, "HEAD", "/static/bundle.js", host)
    assert status == 200 and int(headers["Content-Length"]) > 0 and body == b""
    assert journal.read_bytes() == before


def test_it_follows_the_journal_as_the_sweep_writes_it(journal):
    from tune_distill.dashboard import dashboard_app

    app = dashboard_app(journal.parent, PORT)
    assert len(json.loads(_call(app, "GET", "/api/studies/0")[2])["trials"]) == 4
    _write_study(journal, trials=2)  # the sweep records two more trials
    deadline = time.monotonic() + 30  # optuna-dashboard keeps a study's trials for 2 s before reading them again
    while len(json.loads(_call(app, "GET", "/api/studies/0")[2])["trials"]) != 6:
        assert time.monotonic() < deadline, "the dashboard did not show the two new trials"
        time.sleep(0.5)


def test_its_storage_cannot_write_the_journal_even_past_the_guard(journal):
    from tune_distill.dashboard import ReadOnlyStudy, read_only_storage

    storage, before = read_only_storage(journal), journal.read_bytes()
    for write in (lambda: storage.delete_study(0), lambda: storage.create_new_study([]),
                  lambda: storage.set_study_user_attr(0, "note", "x"), lambda: storage.create_new_trial(0)):
        with pytest.raises(ReadOnlyStudy, match="read-only"):
            write()
    assert journal.read_bytes() == before and sorted(p.name for p in journal.parent.iterdir()) == [STUDY_FILE]


def test_a_missing_or_bad_journal_and_another_host_fail_in_one_line_before_serving(tmp_path, capsys):
    from tune_distill import cli
    from tune_distill.dashboard import journal_path, read_only_storage, serve

    with pytest.raises(FileNotFoundError, match=f"{tmp_path / STUDY_FILE}: no study journal.*report --sweep"):
        journal_path(tmp_path)
    assert not (tmp_path / STUDY_FILE).exists()  # not created, as Optuna's file backend would
    assert cli.main(["dashboard", "--sweep", str(tmp_path), "--port", "0"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{tmp_path / STUDY_FILE}: no study journal" in error
    (tmp_path / STUDY_FILE).write_text("not json\n{}\n")
    with pytest.raises(ValueError, match=f"{tmp_path / STUDY_FILE}: not an Optuna journal"):
        read_only_storage(tmp_path / STUDY_FILE)
    with pytest.raises(ValueError, match=r"--host 0\.0\.0\.0: the dashboard binds 127\.0\.0\.1 only.*ssh -L"):
        serve(tmp_path, PORT, host="0.0.0.0")


def test_served_over_http_a_delete_and_a_foreign_host_are_refused_and_reads_work(journal):
    with _served(journal) as url:
        port = url.rsplit(":", 1)[1]
        assert [s["study_name"] for s in _get(f"{url}/api/studies")["study_summaries"]] == ["tiny"]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(f"{url}/api/studies/0", method="DELETE"), timeout=10)
        assert refused.value.code == 405 and b"read-only" in refused.value.read()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(f"{url}/api/studies", headers={
                "Host": f"evil.example:{port}"}), timeout=10)
        assert refused.value.code == 403 and f"'evil.example:{port}'" in refused.value.read().decode()
        assert len(_get(f"{url}/api/studies/0")["trials"]) == 4
    assert _trials(journal) == 4
