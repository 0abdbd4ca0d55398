"""`make dashboard`: optuna-dashboard serves a real tiny sweep's study; its HTTP API lists every trial with both
objectives and the constraint, and (where Chromium is installed) the page renders the study and its Pareto front.
The Ray dashboard's URL comes with how to authenticate, never with the token.

One tiny sweep (3 trials, a few optimiser steps each, on the module's local Ray) writes the study as
trials finish; optuna-dashboard runs as a subprocess on a free port of 127.0.0.1, as `make dashboard` runs it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

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


@pytest.fixture(scope="module")
def dashboard(swept):
    """optuna-dashboard on the sweep's study.journal, bound to 127.0.0.1 (what `make dashboard` runs); its URL."""
    out, _ = swept
    port = _free_port()
    command = dashboard_command(out / STUDY_FILE, port).split()
    assert command[0] == "optuna-dashboard" and command[-4:] == ["--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen([sys.executable, "-m", "optuna_dashboard._cli", *command[1:]],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # until it answers (it exits on a bad storage: then fail with its output)
            if server.poll() is not None:
                pytest.fail(f"optuna-dashboard exited: {server.stdout.read().decode()[-2000:]}")
            try:
                _get(f"{url}/api/meta")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


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

    from tune_distill.sweep import driver

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **options: SimpleNamespace(dashboard_url="127.0.0.1:8265"))
    monkeypatch.setattr(driver, "_token_auth_enabled", lambda: True)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret-token-never-printed")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with caplog.at_level("INFO", logger="tune_distill"):
        assert driver.connect_ray() == (True, "http://127.0.0.1:8265")
    printed = capsys.readouterr().err
    assert "Ray dashboard: http://127.0.0.1:8265" in printed
    assert "ray get-auth-token" in printed and "~/.ray/auth_token" in printed and "ray get-auth-token" in caplog.text
    assert "secret-token-never-printed" not in printed + caplog.text
