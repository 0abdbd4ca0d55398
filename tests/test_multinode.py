"""A sweep on a two-node Ray cluster that loses its worker node mid-sweep.

Both nodes run on this machine as real `ray start` processes (a head and a second node joined with
`ray start --address`), each with one CPU, so two concurrent one-CPU trials must use both. The sweep
driver joins the cluster through RAY_ADDRESS (the `tune-distill sweep` command in a subprocess) and
keeps its experiment in a folder both nodes see (storage_path). Once a trial has completed on the
worker node and another one there has saved a checkpoint, every process of the worker node is
killed (SIGKILL: a crashed machine); the sweep must go on, retry that trial on the head node from
its checkpoint (max_failures) and count every trial exactly once.

Isolation from other Rays on the machine: the cluster lives in its own temp dir (so the machine's
/tmp/ray/ray_current_cluster, which a plain `ray.init()` joins, is neither read nor written), on free
ports, with an authentication token of its own (a `ray.init("auto")` elsewhere, which scans the
machine's processes, may find it but is refused), and every process it starts runs in a session of
its own: teardown SIGKILLs those sessions, never `ray stop`; should pytest die first, the `ray start`
processes get SIGTERM (and stop their nodes) and the driver SIGKILL.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray")

from conftest import write_sweep_inputs  # noqa: E402

from tune_distill.private_api import ray_address_file  # noqa: E402
from tune_distill.records import read_trials  # noqa: E402

pytestmark = [
    pytest.mark.multinode,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the cluster's processes"),
]

STEPS = 300  # optimiser steps per trial (a few seconds: long enough for the kill to land mid-trial)
EVAL_EVERY = 50  # an evaluation (and a checkpoint reported to Tune) every 50 steps
NUM_SAMPLES = 5  # 2 at a time: the worker node gets a second trial even when it starts seconds late
# Fast node-death detection, for this cluster's processes only: the GCS marks a node dead after
# 3 missed health checks 500 ms apart (defaults: 5 x 3 s).
HEALTH_CHECKS = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500",
                 "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "0"}

SPACE = {
    "description": "tiny multinode test space",
    "parameters": {"distill.learning_rate": {"type": "float", "low": 1.0e-4, "high": 1.0e-3, "log": True}},
    "fixed": {
        "student.num_hidden_layers": 1,
        "student.init": "teacher",
        "distill.max_steps": STEPS,
        "distill.train_batch_size": 4,
        "data.max_seq_length": 64,
        "data.doc_stride": 24,
        "data.max_query_length": 16,
    },
}

# --------------------------------------------------------------------------------------------------
# The cluster's processes
# --------------------------------------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("", 0))
        sockets.append(sock)
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def session_processes(session_id: int) -> list[int]:
    """Live (not zombie) processes of a session: what one `ray start` started, Ray's workers included
    (raylets give each worker a process group of its own, but they stay in the session)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp session ...
        if int(fields[3]) == session_id and fields[0] not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def kill_session(process: subprocess.Popen, timeout: float = 30.0) -> list[int]:
    """SIGKILL every process of the session `process` leads; returns those still alive after `timeout`."""
    deadline = time.time() + timeout
    while True:
        pids = session_processes(process.pid)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if process.poll() is None:
            try:
                process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        if not pids or time.time() > deadline:
            return pids
        time.sleep(0.2)


def _die_with_pytest(sig: int):
    """preexec_fn: the child gets `sig` when this (pytest) process dies, even by SIGKILL (Linux prctl)."""

    def set_death_signal() -> None:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG

    return set_death_signal


def _popen(command: list[str], env: dict, log_path: Path, death_signal: int) -> subprocess.Popen:
    """A session leader (its session then holds every process it starts) logging to `log_path`."""
    with open(log_path, "w") as log_file:
        return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, preexec_fn=_die_with_pytest(death_signal))


def _ray_start(args: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    """`ray start --block ...`; should pytest die without its teardown, SIGTERM makes it stop its node."""
    return _popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--block", *args], env, log_path,
                  signal.SIGTERM)


_NODES_PROBE = """
import json, os, sys, time, ray
ray.init(address=os.environ["RAY_ADDRESS"], configure_logging=False, log_to_driver=False)
deadline = time.time() + float(sys.argv[1])
while True:
    nodes = {next(k for k in n["Resources"] if k.endswith("_node")): n["NodeID"] for n in ray.nodes()
             if n["Alive"] and any(k in n["Resources"] for k in ("head_node", "worker_node"))}
    if len(nodes) == 2 or time.time() > deadline:
        break
    time.sleep(0.5)
print(json.dumps(nodes))
"""


@pytest.fixture
def two_node_cluster(tmp_path):
    """A head and a second node, one CPU each, in a private temp dir; yields the address, env and node ids.

    The `ray start` outputs stay in tmp_path (head.log, worker.log); Ray's own temp dir is removed.
    """
    # a short root: Ray's unix sockets live under <temp dir>/session_*/sockets (107-character limit)
    root = Path(tempfile.mkdtemp(prefix="td-multinode-", dir="/tmp"))
    temp_dir = root / "ray"
    machine_address_file = Path(ray_address_file())  # /tmp/ray/ray_current_cluster: what `ray.init()` joins
    env = {key: value for key, value in os.environ.items()
           if key not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH") and not key.startswith("RAY_health_check")}
    env.update(HEALTH_CHECKS, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
               RAY_USAGE_STATS_ENABLED="0", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    ports = _free_ports(14)
    common = [f"--temp-dir={temp_dir}", "--num-cpus=1", "--num-gpus=0", "--object-store-memory=100000000",
              "--disable-usage-stats"]
    started: list[subprocess.Popen] = []
    began = time.time()
    try:
        head = _ray_start([
            "--head", f"--port={ports[0]}", '--resources={"head_node": 1}', *common,
            "--include-dashboard=false", "--dashboard-host=127.0.0.1", f"--dashboard-port={ports[1]}",
            f"--ray-client-server-port={ports[2]}", f"--node-manager-port={ports[3]}",
            f"--object-manager-port={ports[4]}", f"--dashboard-agent-listen-port={ports[5]}",
            f"--dashboard-agent-grpc-port={ports[6]}", f"--runtime-env-agent-port={ports[7]}",
            f"--metrics-export-port={ports[8]}",
        ], env, tmp_path / "head.log")
        started.append(head)
        address_file = temp_dir / "ray_current_cluster"  # `ray start` writes it into its own temp dir
        deadline = time.time() + 60
        while not address_file.is_file() or not address_file.read_text().strip():
            assert head.poll() is None and time.time() < deadline, (tmp_path / "head.log").read_text()[-3000:]
            time.sleep(0.2)
        address = address_file.read_text().strip()
        worker = _ray_start([
            f"--address={address}", '--resources={"worker_node": 1}', *common,
            f"--node-manager-port={ports[9]}", f"--object-manager-port={ports[10]}",
            f"--dashboard-agent-listen-port={ports[11]}", f"--dashboard-agent-grpc-port={ports[12]}",
            f"--runtime-env-agent-port={ports[13]}",
        ], env, tmp_path / "worker.log")
        started.append(worker)
        probe = subprocess.run([sys.executable, "-c", _NODES_PROBE, "60"], env={**env, "RAY_ADDRESS": address},
                               capture_output=True, text=True, timeout=120)
        nodes = json.loads(probe.stdout.strip().splitlines()[-1]) if probe.returncode == 0 else {}
        assert set(nodes) == {"head_node", "worker_node"}, (
            probe.stdout[-2000:] + probe.stderr[-3000:] + (tmp_path / "worker.log").read_text()[-2000:])
        yield {"address": address, "env": env, "head": head, "worker": worker,
               "head_node_id": nodes["head_node"], "worker_node_id": nodes["worker_node"],
               "up_seconds": time.time() - began}
    finally:
        left = {process.pid: kill_session(process) for process in reversed(started)}
        stray = [pid for entry in Path("/proc").iterdir() if entry.name.isdigit()
                 for pid in [int(entry.name)] if _cmdline_mentions(pid, str(root))]
        shutil.rmtree(root, ignore_errors=True)
    assert not any(left.values()), f"processes of the test cluster survived SIGKILL: {left}"
    assert not stray, f"processes naming the test cluster's temp dir outlived it: {stray}"
    machine_address = machine_address_file.read_text() if machine_address_file.exists() else ""
    assert address not in machine_address, f"{machine_address_file} names the test cluster"


def _cmdline_mentions(pid: int, text: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return text in cmdline and state not in ("Z", "X")


# --------------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------------


def _sweep_files(root: Path, storage: Path) -> Path:
    teacher, data = write_sweep_inputs(root)
    space = root / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    config = {
        "space": str(space),
        "base": {
            "data.train_files": [str(data / "train.json")],
            "data.val_file": str(data / "val.json"),
            "teacher.path": str(teacher),
            "distill.device": "cpu",
            "distill.seed": 100,
            "distill.eval_every_steps": EVAL_EVERY,
            "evaluate.latency_seq_length": 32,
            "evaluate.latency_batch_sizes": [1],
            "evaluate.latency_repeats": 1,
            "evaluate.latency_warmup": 0,
        },
        "searcher": {"name": "random", "seed": 0},
        "num_samples": NUM_SAMPLES,
        "max_concurrent": 2,
        "resources_per_trial": {"cpu": 1, "gpu": 0},
        "max_failures": 1,
        "scheduler": {"name": "fifo"},
        "storage_path": str(storage),
        "name": "tune",
    }
    path = root / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


_ON_NODE = re.compile(r"trial (\d{4}) on node ([0-9a-f]+),")


def _trial_nodes(experiment: Path) -> dict[Path, list[str]]:
    """trial folder -> the nodes its attempts ran on, in order (from the trial.log every attempt appends to)."""
    nodes = {}
    for trial_log in experiment.glob("trial_*/run/trial.log"):
        try:
            nodes[trial_log.parent.parent] = [m.group(2) for m in _ON_NODE.finditer(trial_log.read_text())]
        except OSError:
            continue
    return nodes


def _completed(driver_log: Path) -> set[str]:
    """Trial ids the driver has recorded as complete (ProgressLines writes one line per finished trial)."""
    return set(re.findall(r"trial \d{4} (\w+) complete ", driver_log.read_text()))


def _checkpoint_index(trial_dir: Path) -> int:
    """Highest index of the Tune checkpoints the trial has persisted to storage so far (-1: none)."""
    return max((int(p.name.split("_")[1]) for p in trial_dir.glob("checkpoint_*") if p.name.split("_")[1].isdigit()),
               default=-1)


def test_a_sweep_survives_losing_a_node_and_counts_every_trial_once(two_node_cluster, tmp_path):
    cluster = two_node_cluster
    head_id, worker_id = cluster["head_node_id"], cluster["worker_node_id"]
    storage = tmp_path / "shared-storage"  # one folder both nodes see: the experiment, checkpoints and run folders
    config_path = _sweep_files(tmp_path, storage)
    out = tmp_path / "sweep"
    experiment = storage / "tune"
    driver_log = tmp_path / "driver.log"
    env = {**cluster["env"], "RAY_ADDRESS": cluster["address"]}
    began = time.time()
    driver = _popen([sys.executable, "-m", "tune_distill", "sweep", "--config", str(config_path), "--out", str(out)],
                    env, driver_log, signal.SIGKILL)
    try:
        # Wait until a trial has completed on the worker node and another one running there has persisted
        # its second checkpoint (so Tune has registered the first), then kill the worker node.
        victim = None
        deadline = time.time() + 150
        while victim is None:
            assert driver.poll() is None, f"the sweep ended before the kill:\n{driver_log.read_text()[-5000:]}"
            assert time.time() < deadline, f"no worker-node trial to kill:\n{driver_log.read_text()[-5000:]}"
            on_worker = {folder: nodes for folder, nodes in _trial_nodes(experiment).items() if nodes == [worker_id]}
            completed = _completed(driver_log)
            done_on_worker = [f for f in on_worker if f.name.split("_")[-1] in completed]
            running = [f for f in on_worker if f.name.split("_")[-1] not in completed
                       and not (f / "run" / "metrics.json").exists() and _checkpoint_index(f) >= 1]
            if done_on_worker and running:
                victim = running[0]
            else:
                time.sleep(0.1)
        killed_at = time.time()
        left = kill_session(cluster["worker"])
        assert not left, left
        victim_steps_before_kill = [json.loads(line)["step"] for line in
                                    (victim / "run" / "history.jsonl").read_text().splitlines() if line.strip()]
        driver.wait(timeout=180)
    finally:
        if driver.poll() is None:
            kill_session(driver)
    text = driver_log.read_text()
    assert driver.returncode == 0, text[-6000:]
    finished = time.time()

    # every trial exactly once, all complete
    records = read_trials(out)
    assert [r["number"] for r in records] == list(range(NUM_SAMPLES)), text[-4000:]
    assert len({r["trial_id"] for r in records}) == NUM_SAMPLES
    assert all(r["status"] == "complete" for r in records), [(r["number"], r["status"], r["error"]) for r in records]
    assert all(r["metrics"]["step"] == STEPS and r["device"] == "cpu" for r in records)
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["summary"]["status_counts"] == {"complete": NUM_SAMPLES} and not saved["summary"]["interrupted"]
    assert saved["experiment_path"] == str(experiment)
    import pandas as pd

    results = pd.read_csv(out / "results.csv")
    assert sorted(results["trial_id"]) == sorted(r["trial_id"] for r in records)

    # trials ran on both nodes: one completed on the worker before it died, the rest on the head
    final_nodes = {r["trial_id"]: r["node_id"] for r in records}
    assert set(final_nodes.values()) == {head_id, worker_id}, final_nodes
    attempts = _trial_nodes(experiment)
    only_on_worker = [folder.name.split("_")[-1] for folder, nodes in attempts.items() if nodes == [worker_id]]
    assert only_on_worker and all(final_nodes[trial_id] == worker_id for trial_id in only_on_worker), attempts

    # the killed trial: retried once, on the head node, from its checkpoint
    victim_id = victim.name.split("_")[-1]
    record = next(r for r in records if r["trial_id"] == victim_id)
    others = [r for r in records if r["trial_id"] != victim_id]
    assert record["attempts"] == 2 and all(r["attempts"] == 1 for r in others), [(r["number"], r["attempts"])
                                                                                 for r in records]
    assert record["node_id"] == head_id
    assert attempts[victim] == [worker_id, head_id]
    trial_log = (victim / "run" / "trial.log").read_text()
    resumed = re.findall(r"resumes from Tune's checkpoint at step (\d+)", trial_log)
    assert len(resumed) == 1, trial_log
    resumed_step = int(resumed[0])
    # ... and run_distillation restarted from Tune's copy of the checkpoint in the shared storage
    restarted = re.findall(r"resumed from (\S+) at step (\d+) of (\d+)", trial_log)
    assert [(Path(path).parent, int(step), int(total)) for path, step, total in restarted] == [
        (victim, resumed_step, STEPS)], trial_log
    assert Path(restarted[0][0]).name.startswith("checkpoint_")
    assert EVAL_EVERY <= resumed_step <= max(victim_steps_before_kill) and resumed_step % EVAL_EVERY == 0, (
        resumed_step, victim_steps_before_kill)
    assert f"trial {record['number']:04d} {victim_id} raised (attempt 1); retrying" in text
    # its history counts every evaluation once: what the first attempt did up to the checkpoint, then the rest
    history = [json.loads(line)["step"] for line in (victim / "run" / "history.jsonl").read_text().splitlines()
               if line.strip()]
    assert history == list(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY)), history
    print(f"\nmultinode: cluster up in {cluster['up_seconds']:.1f}s; "
          f"worker node killed {killed_at - began:.1f}s into the sweep while trial "
          f"{record['number']:04d} was at step {max(victim_steps_before_kill)}; it resumed on the head node from "
          f"step {resumed_step}; sweep done {finished - began:.1f}s after start")
