"""No AWS secret of the driver reaches a joined cluster's disks or APIs.

A one-node Ray cluster runs as a real `ray start --head` process in a temp dir of its own (with its
dashboard, which serves the State API, and a token of its own); its node has its own credentials in
its environment, as an instance role would give them. A `tune-distill sweep` driver, started with
fake keys in its environment, joins it through RAY_ADDRESS and runs one tiny trial with its
experiment in a moto bucket (s3://), the case where the driver forwards AWS settings to the workers.
Then every file under the cluster's temp dir (session logs of every process) and the job and
runtime-env details of the State API are read: the driver's secret key, session token and key id
are nowhere, while the non-secret setting that is forwarded (AWS_DEFAULT_REGION) is found in both,
so the places searched are the ones where Ray puts a job's runtime_env.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray")
boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from sweep_world import tiny_sweep, world_fixture  # noqa: E402,F401  (fixture `world`)
from test_multinode import _free_ports, _ray_start, kill_session  # noqa: E402
from test_s3 import s3_endpoint  # noqa: E402,F401,F811  (fixture: a moto server)

from tune_distill.records import read_trials  # noqa: E402
from tune_distill.sweep.config import sweep_config_to_dict  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kills the cluster's process session")

_STATE_PROBE = """
import os, ray
from ray.util.state import list_jobs, list_runtime_envs
ray.init(address=os.environ["RAY_ADDRESS"], configure_logging=False, log_to_driver=False)
print(repr(list_jobs(detail=True, raise_on_missing_output=False)))
print(repr(list_runtime_envs(detail=True, raise_on_missing_output=False)))
"""


@pytest.fixture
def cluster(tmp_path):
    """A head node with its dashboard, in a private temp dir; its environment holds the node's own credentials."""
    root = Path(tempfile.mkdtemp(prefix="td-security-", dir="/tmp"))  # short: unix socket paths
    temp_dir = root / "ray"
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AWS_", "RAY_"))}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONUNBUFFERED="1", AWS_EC2_METADATA_DISABLED="true", AWS_SHARED_CREDENTIALS_FILE=str(root / "none"),
               AWS_CONFIG_FILE=str(root / "none"), AWS_DEFAULT_REGION="us-east-1")
    node_env = {**env, "AWS_ACCESS_KEY_ID": "node-role-key", "AWS_SECRET_ACCESS_KEY": "node-role-secret"}
    ports = _free_ports(10)
    head = _ray_start([
        "--head", f"--port={ports[0]}", f"--temp-dir={temp_dir}", "--num-cpus=1", "--num-gpus=0",
        "--object-store-memory=100000000", "--disable-usage-stats", "--include-dashboard=true",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={ports[1]}", f"--ray-client-server-port={ports[2]}",
        f"--node-manager-port={ports[3]}", f"--object-manager-port={ports[4]}",
        f"--dashboard-agent-listen-port={ports[5]}", f"--dashboard-agent-grpc-port={ports[6]}",
        f"--runtime-env-agent-port={ports[7]}", f"--metrics-export-port={ports[8]}",
    ], node_env, tmp_path / "head.log")
    try:
        address_file = temp_dir / "ray_current_cluster"
        deadline = time.time() + 90
        while not address_file.is_file() or not address_file.read_text().strip():
            assert head.poll() is None and time.time() < deadline, (tmp_path / "head.log").read_text()[-3000:]
            time.sleep(0.2)
        yield {"address": address_file.read_text().strip(), "env": env, "temp_dir": temp_dir}
    finally:
        left = kill_session(head)
        shutil.rmtree(root, ignore_errors=True)
    assert not left, f"processes of the test cluster survived SIGKILL: {left}"


def test_the_drivers_aws_secrets_reach_no_log_file_and_no_job_detail_of_the_cluster(world, s3_endpoint, cluster,  # noqa: F811
                                                                                      tmp_path):
    bucket = f"security-{secrets.token_hex(5)}"
    boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="x", aws_secret_access_key="x",
                 region_name="us-east-1").create_bucket(Bucket=bucket)
    config = tiny_sweep(world, num_samples=1, max_concurrent=1, storage_path=f"s3://{bucket}/sweep",
                        storage_endpoint=s3_endpoint)
    config_path = tmp_path / "sweep.yaml"
    config_path.write_text(yaml.safe_dump(sweep_config_to_dict(config)))
    fake = {"AWS_ACCESS_KEY_ID": f"FAKEKEYID{secrets.token_hex(6).upper()}",
            "AWS_SECRET_ACCESS_KEY": f"FAKE-SECRET-{secrets.token_hex(12)}",
            "AWS_SESSION_TOKEN": f"FAKE-TOKEN-{secrets.token_hex(12)}"}
    driver_env = {**cluster["env"], **fake, "RAY_ADDRESS": cluster["address"]}
    driver = subprocess.run([sys.executable, "-m", "tune_distill", "sweep", "--config", str(config_path),
                             "--out", str(tmp_path / "out")], env=driver_env, capture_output=True, text=True,
                            timeout=600)
    assert driver.returncode == 0, driver.stdout[-2000:] + driver.stderr[-4000:]
    assert "joined the Ray cluster" in driver.stderr
    records = read_trials(tmp_path / "out")  # the trial reached the bucket with the node's own credentials
    assert [record["status"] for record in records] == ["complete"], [record["error"] for record in records]

    probe = subprocess.run([sys.executable, "-c", _STATE_PROBE], env={**cluster["env"],
                                                                       "RAY_ADDRESS": cluster["address"]},
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    details = probe.stdout
    logs = {path: path.read_bytes() for path in cluster["temp_dir"].rglob("*") if path.is_file()}
    assert any(b"runtime_env_agent" in path.name.encode() for path in logs)

    # the places searched do hold the job's runtime_env: its forwarded (non-secret) settings are there
    assert "AWS_DEFAULT_REGION" in details
    assert any(b"AWS_DEFAULT_REGION" in content for path, content in logs.items()
               if path.name.startswith("runtime_env_agent"))
    for name, secret in fake.items():
        assert secret not in details, f"{name} in the State API's job details"
        leaked = [str(path) for path, content in logs.items() if secret.encode() in content]
        assert not leaked, f"{name} written to {leaked}: " + "; ".join(
            _around(logs[Path(path)], secret.encode()) for path in leaked)


def _around(content: bytes, secret: bytes) -> str:
    at = content.index(secret)
    return content[max(0, at - 300): at + 100].decode(errors="replace")
