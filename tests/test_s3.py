"""Sweeps on an S3-compatible bucket: a moto server stands in for S3.

The server is the one CI started (TUNE_DISTILL_TEST_S3_ENDPOINT, see .ci/run) or, when that is not set,
one this module starts on a free port of 127.0.0.1 and stops at the end. The tiny sweeps of
tests/sweep_world.py (its `world` and `tiny_sweep`) run with storage_path s3://<bucket>/<prefix>:
checkpoints and results land in the bucket, results.parquet reads from it, a killed driver resumes
from it, and a missing bucket or refused / missing credentials are SweepConfigErrors before any work.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray")
boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from sweep_world import tiny_sweep, world_fixture  # noqa: E402,F401  (fixture `world`)

from tune_distill import cli, remote  # noqa: E402
from tune_distill.records import read_trials  # noqa: E402
from tune_distill.sweep.config import SweepConfigError, sweep_config_to_dict  # noqa: E402
from tune_distill.sweep.driver import run_sweep  # noqa: E402

ENDPOINT_ENV = "TUNE_DISTILL_TEST_S3_ENDPOINT"
SECRET = "tune-distill-test-secret"
RESULT_FILES = ("sweep.json", "trials.jsonl", "results.parquet", "results.csv", "pareto.csv", "summary.json",
                "frontier.png")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(endpoint: str, process: subprocess.Popen | None, log_path: Path | None, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=2).read()
            return
        except OSError:
            if process is not None and process.poll() is not None:
                pytest.fail(f"moto server exited ({process.returncode}): {log_path.read_text()[-2000:]}")
            if time.time() > deadline:
                pytest.fail(f"moto server at {endpoint} did not answer within {seconds} s")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """http://127.0.0.1:<port> of a moto server: CI's, else one started here for the module."""
    endpoint = os.environ.get(ENDPOINT_ENV)
    if endpoint:
        _wait_for(endpoint, None, None)
        yield endpoint
        return
    port = _free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_for(endpoint, process, log_path)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def aws_env(s3_endpoint, tmp_path_factory):
    """Test credentials (moto accepts any) for this process and the Ray workers started after it; no
    endpoint variable (each test says how it gives the endpoint) and no credentials files of the machine."""
    nowhere = tmp_path_factory.mktemp("aws") / "absent"
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
        patch.setenv("AWS_CONFIG_FILE", str(nowhere))
        yield s3_endpoint


@pytest.fixture(scope="module")
def s3(aws_env):
    return boto3.client("s3", endpoint_url=aws_env)


@pytest.fixture
def bucket(s3):
    name = f"sweeps-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def ray_s3(aws_env):
    """One local Ray for the module, started after the credentials are set (its workers inherit them)."""
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False,
                       log_to_driver=False)
    yield context.address_info["address"]
    ray.shutdown()


def keys(s3, bucket: str, prefix: str = "") -> list[str]:
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found += [item["Key"] for item in page.get("Contents", [])]
    return found


def write_config(config, path: Path) -> Path:
    path.write_text(yaml.safe_dump(sweep_config_to_dict(config)))
    return path


# --------------------------------------------------------------------------------------------------
# A sweep on S3, read back from the bucket, resumed from the bucket alone
# --------------------------------------------------------------------------------------------------


def test_a_sweep_on_s3_keeps_checkpoints_and_results_in_the_bucket(world, aws_env, ray_s3, s3, bucket, tmp_path,
                                                                  capsys):
    import pyarrow.parquet as pq

    endpoint = aws_env
    uri = f"s3://{bucket}/smoke"
    config = tiny_sweep(world, num_samples=3, storage_path=uri, storage_endpoint=endpoint)
    config_path = write_config(config, tmp_path / "sweep.yaml")
    out = tmp_path / "sweep"
    assert cli.main(["sweep", "--config", str(config_path), "--out", str(out)]) == 0
    records = read_trials(out)
    assert [r["number"] for r in records] == [0, 1, 2]
    assert all(r["status"] == "complete" for r in records), [(r["status"], r["error"]) for r in records]
    assert not (out / "tune").exists()  # the experiment is in the bucket, not in the output folder

    stored = keys(s3, bucket, "smoke/")
    assert any(key.startswith("smoke/tune/experiment_state") for key in stored), stored
    for record in records:
        assert record["checkpoint"].startswith(f"s3://{bucket}/smoke/tune/trial_{record['number']:04d}_")
        checkpoint_key = record["checkpoint"][len(f"s3://{bucket}/"):]
        assert f"{checkpoint_key}/step.json" in stored, (checkpoint_key, stored)
    for name in RESULT_FILES:
        assert f"smoke/{name}" in stored, name
    assert not [key for key in stored if "write_test" in key]  # the storage probe cleaned up
    # Tune pickles the filesystem (endpoint, region) into the bucket, never the credentials
    assert "smoke/tune/tuner.pkl" in stored
    for key in [k for k in stored if k.startswith("smoke/tune/") and k.count("/") == 2]:
        assert SECRET.encode() not in s3.get_object(Bucket=bucket, Key=key)["Body"].read(), key

    # results.parquet straight from the bucket, the same table as the local one
    filesystem = remote.s3_filesystem(endpoint)
    table = pq.read_table(f"{bucket}/smoke/results.parquet", filesystem=filesystem).to_pandas()
    assert sorted(table["trial_id"]) == sorted(r["trial_id"] for r in records)
    assert table.equals(pq.read_table(out / "results.parquet").to_pandas())
    remote_sweep = json.loads(s3.get_object(Bucket=bucket, Key="smoke/sweep.json")["Body"].read())
    assert remote_sweep == json.loads((out / "sweep.json").read_text())
    assert remote_sweep["config"]["storage_path"] == uri and remote_sweep["config"]["storage_endpoint"] == endpoint
    assert remote_sweep["experiment_path"] == f"{uri}/tune" and remote_sweep["summary"]["trials"] == 3
    remote_trials = s3.get_object(Bucket=bucket, Key="smoke/trials.jsonl")["Body"].read().decode()
    assert remote_trials == (out / "trials.jsonl").read_text()

    # a fresh sweep may not reuse the storage path (checked before any features are computed)
    with pytest.raises(SweepConfigError, match=rf"storage_path {uri} already holds a sweep"):
        run_sweep(config, tmp_path / "again")
    assert not (tmp_path / "again").exists()

    # the local folder is gone: --resume --storage-path reads the sweep from the bucket (nothing left to run)
    shutil.rmtree(out)
    capsys.readouterr()
    assert cli.main(["sweep", "--resume", "--out", str(out), "--storage-path", uri,
                     "--storage-endpoint", endpoint]) == 0
    counts = next(json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"out"'))
    assert counts["complete"] == 3 and not counts["interrupted"]
    resumed = read_trials(out)
    assert [(r["trial_id"], r["status"], r["metrics"]["exact"]) for r in resumed] == \
        [(r["trial_id"], r["status"], r["metrics"]["exact"]) for r in records]
    assert [run["resumed"] for run in json.loads((out / "sweep.json").read_text())["runs"]] == [False, True]


def test_a_killed_driver_resumes_from_the_bucket_and_counts_every_trial_once(world, aws_env, ray_s3, s3, bucket,
                                                                             tmp_path, caplog):
    # as test_sweep's local kill test, with the experiment in the bucket and the endpoint from
    # AWS_ENDPOINT_URL (the driver's environment; the sweep records it for the resume)
    from ray.tune import ExperimentAnalysis

    endpoint = aws_env
    config = tiny_sweep(world, num_samples=3, max_concurrent=1, storage_path=f"s3://{bucket}/resume",
                        base={**tiny_sweep(world).base, "distill.eval_every_steps": 10},
                        space_overrides={"fixed": {"distill.max_steps": 30}}, snapshot_period_s=0.5)
    config_path = write_config(config, tmp_path / "sweep.yaml")
    out = tmp_path / "sweep"
    env = dict(os.environ, RAY_ADDRESS=ray_s3, PYTHONUNBUFFERED="1", AWS_ENDPOINT_URL=endpoint)
    log_path = tmp_path / "driver.log"
    filesystem = remote.s3_filesystem(endpoint)

    def interrupted_with_checkpoint() -> list:
        """Unfinished trials with a checkpoint in the bucket's snapshot of the experiment (synced in the background)."""
        if not [key for key in keys(s3, bucket, "resume/tune/trial_0001_") if "/checkpoint_" in key]:
            return []
        try:
            trials = ExperimentAnalysis(f"{bucket}/resume/tune", storage_filesystem=filesystem).trials
        except Exception:  # no snapshot uploaded yet
            return []
        return [t for t in trials if t.status != "TERMINATED" and t.checkpoint]

    with open(log_path, "w") as driver_log:
        driver = subprocess.Popen([sys.executable, "-m", "tune_distill.sweep", "--config", str(config_path),
                                   "--out", str(out)], stdout=driver_log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 180
        try:
            while time.time() < deadline and driver.poll() is None and not interrupted_with_checkpoint():
                time.sleep(0.1)
        finally:
            driver.send_signal(signal.SIGKILL)
            driver.wait(timeout=30)
    interrupted = interrupted_with_checkpoint()
    assert interrupted, "no trial was interrupted with a checkpoint: " + log_path.read_text()[-3000:]
    saved = json.loads((out / "sweep.json").read_text())
    assert "summary" not in saved  # it really died mid-sweep
    assert saved["config"]["storage_endpoint"] == endpoint
    assert "resume/sweep.json" in keys(s3, bucket, "resume/")  # copied at the start

    # Tune's delete-then-snapshot race, in the bucket: the recorded checkpoints of the unfinished trials
    # vanish and a newer one appears (objects are copied, then deleted: S3 has no rename)
    for trial in interrupted:
        recorded = trial.checkpoint.path[len(bucket) + 1:]
        newer = recorded.rsplit("/", 1)[0] + "/checkpoint_000099"
        for key in keys(s3, bucket, recorded + "/"):
            s3.copy_object(Bucket=bucket, Key=newer + key[len(recorded):], CopySource={"Bucket": bucket, "Key": key})
            s3.delete_object(Bucket=bucket, Key=key)

    # what `make sweep RESUME=1 OUT=...` runs; no endpoint variable here: the sweep's own record is used
    with caplog.at_level("INFO", logger="tune_distill"):
        assert cli.main(["sweep", "--out", str(out), "--resume"]) == 0
    assert "was deleted after the last snapshot" in caplog.text
    records = read_trials(out)
    assert [r["number"] for r in records] == [0, 1, 2]
    assert len({r["trial_id"] for r in records}) == 3
    assert all(r["status"] == "complete" for r in records), [(r["status"], r["error"]) for r in records]
    assert all(r["metrics"]["step"] == 30 for r in records)
    for trial in interrupted:
        record = next(r for r in records if r["trial_id"] == trial.trial_id)
        assert "resumes from Tune's checkpoint" in (Path(record["run_dir"]) / "trial.log").read_text()
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["summary"]["status_counts"] == {"complete": 3}
    assert [run["resumed"] for run in saved["runs"]] == [True]
    assert s3.get_object(Bucket=bucket, Key="resume/trials.jsonl")["Body"].read().decode() == \
        (out / "trials.jsonl").read_text()


class _Marker:
    """Unpickling this makes the folder `marker`: what a crafted pickle in the bucket would do, harmlessly."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_crafted_pickle_in_the_bucket_is_refused_after_the_fetch_and_runs_nothing(world, aws_env, ray_s3, s3,
                                                                                   bucket, tmp_path, capsys):
    # whoever can write to the bucket cannot make a resume from it run code: what is fetched, and the experiment
    # in the bucket, are checked against the sweep's signed manifest (tune_distill/signing.py) before any use
    endpoint, uri, out = aws_env, f"s3://{bucket}/handed", tmp_path / "sweep"
    records = run_sweep(tiny_sweep(world, num_samples=1, storage_path=uri, storage_endpoint=endpoint), out)
    assert [r["status"] for r in records] == ["complete"]
    assert "handed/manifest.json" in keys(s3, bucket, "handed/")
    marker = tmp_path / "marker"
    s3.put_object(Bucket=bucket, Key="handed/tune/tuner.pkl", Body=pickle.dumps(_Marker(marker)))
    shutil.rmtree(out)  # resumed from the bucket alone
    capsys.readouterr()
    assert cli.main(["sweep", "--resume", "--out", str(out), "--storage-path", uri,
                     "--storage-endpoint", endpoint]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: --resume: {uri}/tune/tuner.pkl changed since this "
                                                     "sweep last signed its folder"), errors
    assert "--trust-folder" in errors[0] and not marker.exists()


# --------------------------------------------------------------------------------------------------
# Errors before any work: settings, a missing bucket, refused or missing credentials
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"storage_path": "s3://b/p", "storage_endpoint": "ftp://host:21"},
         r"storage_endpoint: expected http\(s\)://host\[:port\], got 'ftp://host:21'"),
        ({"storage_path": "/tmp/sweeps", "storage_endpoint": "http://127.0.0.1:9000"},
         r"storage_endpoint: only used with an s3:// storage_path"),
        ({"storage_path": "s3:///prefix"}, r"storage_path: expected s3://bucket/prefix, got 's3:///prefix'"),
        ({"storage_path": "s3://b/p?endpoint_override=x"}, r"storage_path: expected s3://bucket/prefix without"),
    ],
)
def test_storage_settings_are_checked_with_the_config(world, changes, message):
    with pytest.raises(SweepConfigError, match=message):
        tiny_sweep(world, **changes)


def test_a_missing_bucket_or_endpoint_fails_before_any_work(world, aws_env, tmp_path):
    out = tmp_path / "sweep"
    with pytest.raises(SweepConfigError, match=r"storage_path s3://no-such-bucket-tune-distill/x: bucket "
                                               r"'no-such-bucket-tune-distill' does not exist at http://127"):
        run_sweep(tiny_sweep(world, storage_path="s3://no-such-bucket-tune-distill/x", storage_endpoint=aws_env), out)
    unused = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(SweepConfigError, match=rf"cannot reach the storage endpoint {unused}"):
        run_sweep(tiny_sweep(world, storage_path="s3://any/x", storage_endpoint=unused), out)
    assert not out.exists()  # no features, no teacher logits, no sweep.json


@pytest.fixture
def moto_checks_credentials(aws_env, bucket):
    """Moto enforces request signatures (keys of its IAM users only) until the test ends."""
    endpoint = aws_env

    def set_free_requests(count: str) -> None:
        request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=count.encode(), method="POST",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request, timeout=10).read()

    set_free_requests("0")
    try:
        yield bucket
    finally:
        set_free_requests("inf")


def test_refused_or_missing_credentials_fail_before_any_work(world, aws_env, moto_checks_credentials, tmp_path,
                                                              monkeypatch):
    uri = f"s3://{moto_checks_credentials}/x"
    out = tmp_path / "sweep"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAREALKEY00000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    with pytest.raises(SweepConfigError, match=rf"storage_path {uri}: access refused at {aws_env} .*"
                                               r"AWS_ACCESS_KEY_ID \(AKIA\.\.\.\) and AWS_SECRET_ACCESS_KEY from the "
                                               r"environment were used; check them") as refused:
        run_sweep(tiny_sweep(world, storage_path=uri, storage_endpoint=aws_env), out)
    assert "not-a-real-secret" not in str(refused.value)
    # no credentials anywhere (environment, files): pyarrow sends unsigned requests, which are refused
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(SweepConfigError, match=rf"storage_path {uri}: .*no AWS credentials were found: set "
                                               r"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        run_sweep(tiny_sweep(world, storage_path=uri, storage_endpoint=aws_env), out)
    assert not out.exists()
