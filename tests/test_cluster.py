"""The cluster configurations in cluster/: Ray's own validation of the AWS launcher file, our invariants
on it and on the KubeRay file (the head runs no trials, one GPU per worker, pinned installs, one bucket
and one region to edit), the sweep commands their headers, the README and docs/cluster.md document (`make
sweep ... STORAGE=$TUNE_DISTILL_STORAGE/paper`, `tune-distill sweep ... --storage-path ...`: what they run and
that the sweep accepts it), and the walk-through in docs/cluster.md that uses them.

Offline and fast: nothing here talks to AWS or Kubernetes (Ray's validation reads its own defaults
and a JSON schema; the fetch step of the KubeRay pods is run against file:// URIs; the documented
commands go through `make -n` and the sweep's argument parser and config checks, never to a bucket).
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import ray
import yaml

from tune_distill.private_api import ray_launcher_prepare_config, ray_launcher_validate_config

ROOT = Path(__file__).resolve().parent.parent
GPU_YAML = ROOT / "cluster" / "gpu.yaml"
KUBERAY_YAML = ROOT / "cluster" / "kuberay.yaml"
BUCKET = "YOUR-BUCKET"
# GPUs of the instance types a worker may reasonably use; a listed type must match its declared GPUs.
GPUS_PER_INSTANCE = {"g4dn.xlarge": 1, "g4dn.2xlarge": 1, "g5.xlarge": 1, "g5.2xlarge": 1, "g6.xlarge": 1,
                     "g6e.xlarge": 1, "p3.2xlarge": 1, "g4dn.12xlarge": 4, "g5.12xlarge": 4, "p3.8xlarge": 4}
# The sweep commands a header or docs/cluster.md documents (up to a closing quote, backtick or the line's end).
MAKE_SWEEP = re.compile(r"make sweep [^'`\n]*")
CLI_SWEEP = re.compile(r"tune-distill sweep [^'`\n]*")


def torch_pin() -> str:
    """The torch pin of the Makefile (what `make env`, and so `make sweep`/`make test`, install)."""
    match = re.search(r"^TORCH_VERSION :?= *([0-9][\w.]*)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, "Makefile pins no torch version"
    return f"torch=={match.group(1)}"


def ray_pin() -> str:
    return f"'ray[default,tune]=={ray.__version__}'"


def header(path: Path) -> str:
    """The comment block a file opens with."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


def code(path: Path) -> str:
    """The file without its whole-line comments."""
    return "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))


def edits(text: str) -> list[str]:
    """The numbered edits a header asks for: `#   1. bucket: ...` -> bucket."""
    return re.findall(r"^#\s+\d+\.\s+(\w+):", text, flags=re.MULTILINE)


def buckets(text: str) -> list[str]:
    return re.findall(r"s3://([^/\s'\"]+)", text) + re.findall(r"arn:aws:s3:::([^/\s'\"]+)", text)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def prepared(config: dict) -> dict:
    """What `ray up` validates: the config merged with Ray's AWS defaults (no AWS call is made)."""
    return ray_launcher_prepare_config(copy.deepcopy(config))


def python_on_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose `python` is this interpreter.

    A wrapper script, not a symlink: a virtual environment's interpreter finds its `pyvenv.cfg` next to
    the path it was started from, so a symlink in another folder would run without the venv's packages.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "python"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    wrapper.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


# --------------------------------------------------------------------------------------------------
# cluster/gpu.yaml (the Ray cluster launcher on AWS)
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpu_config() -> dict:
    return load(GPU_YAML)


def worker_types(config: dict) -> dict[str, dict]:
    return {name: spec for name, spec in config["available_node_types"].items() if name != config["head_node_type"]}


def test_gpu_config_passes_rays_validation(gpu_config):
    ray_launcher_validate_config(prepared(gpu_config))


@pytest.mark.parametrize("mutate", [
    pytest.param(lambda c: c.update(bogus_field=1), id="unknown top-level field"),
    pytest.param(lambda c: c["available_node_types"]["gpu"].update(gpus=1), id="unknown node-type field"),
    pytest.param(lambda c: c["available_node_types"]["gpu"]["resources"].update(CPU=0.5), id="fractional resource"),
    pytest.param(lambda c: c["available_node_types"]["gpu"]["resources"].update(GPU=-1), id="negative resource"),
    pytest.param(lambda c: c.update(head_node_type="nowhere"), id="head type not declared"),
    pytest.param(lambda c: c["available_node_types"]["gpu"].update(min_workers=50), id="min workers over max"),
])
def test_rays_validation_rejects_a_broken_config(gpu_config, mutate):
    import jsonschema

    broken = copy.deepcopy(gpu_config)
    mutate(broken)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        ray_launcher_validate_config(prepared(broken))


def test_head_runs_no_trials_and_keeps_its_dashboard_local(gpu_config):
    config = prepared(gpu_config)
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "Tune would place trials on the head"
    assert not head["resources"].get("GPU")
    assert head["max_workers"] == 0
    start = " ".join(config["head_start_ray_commands"])
    assert "ray start --head" in start
    assert "--dashboard-host=127.0.0.1" in start
    assert "--dashboard-host=0.0.0.0" not in start


def test_workers_have_one_gpu_each(gpu_config):
    workers = worker_types(gpu_config)
    assert workers and any(spec.get("max_workers", 0) > 0 for spec in workers.values())
    for name, spec in workers.items():
        assert spec["resources"].get("GPU") == 1, f"{name}: one GPU per node"
        instance = spec["node_config"]["InstanceType"]
        if instance in GPUS_PER_INSTANCE:
            assert GPUS_PER_INSTANCE[instance] == spec["resources"]["GPU"], f"{name}: {instance}"
        assert spec["node_config"].get("IamInstanceProfile"), f"{name}: workers write the bucket too"
    spot = [spec for spec in workers.values() if "InstanceMarketOptions" in spec["node_config"]]
    assert spot and all(s["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot" for s in spot)


def test_a_paper_trial_fits_a_worker_and_the_cluster_holds_its_concurrency(gpu_config):
    from tune_distill.sweep.config import load_sweep_config

    paper = load_sweep_config(ROOT / "configs" / "sweep_paper.yaml")
    need = paper.resources_per_trial
    capacity = 0
    for name, spec in worker_types(gpu_config).items():
        have = spec["resources"]
        assert need.cpu <= have["CPU"] and need.gpu <= have["GPU"], f"{name}: a paper trial does not fit"
        per_node = min(int(have["CPU"] // need.cpu), int(have["GPU"] // need.gpu) if need.gpu else 10**6)
        capacity = max(capacity, per_node * spec.get("max_workers", 0))
    assert min(capacity, gpu_config["max_workers"]) >= paper.max_concurrent


def test_the_documented_paper_preset_stops_trials_early_within_its_budget():
    """`make sweep PRESET=paper` (the README's cluster sweep) runs pareto_sh; every trial, whatever its searched
    batch size, evaluates at or past the rung before its last step, after the same data (its first epoch)."""
    import math

    from tune_distill.search import EXAMPLE_TEACHER_CONTEXT
    from tune_distill.sweep.config import load_sweep_config, preset_path
    from tune_distill.sweep.plan import load_sweep_space
    from tune_distill.sweep.schedulers import pareto_rungs

    assert "make sweep PRESET=paper" in (ROOT / "README.md").read_text()
    paper = load_sweep_config(preset_path("paper"))
    assert paper.scheduler.name == "pareto_sh"
    rungs = pareto_rungs(paper.scheduler)
    assert rungs
    space = load_sweep_space(paper, EXAMPLE_TEACHER_CONTEXT)
    (batch,) = [p for p in space.params if p.name == "distill.train_batch_size"]
    one_sample = {p.name: p.low for p in space.params}
    windows = space.resolve({**one_sample, batch.name: 1})["distill.eval_every_steps"]  # one epoch at batch 1
    ranked_after = set()
    for size in range(int(batch.low), int(batch.high) + 1):
        overrides = space.resolve({**one_sample, batch.name: size})
        total = math.ceil(overrides["distill.num_train_epochs"] * math.ceil(windows / size))
        evaluations = range(overrides["distill.eval_every_steps"], total + 1, overrides["distill.eval_every_steps"])
        for rung in rungs:
            first = min(step for step in evaluations if step >= rung)  # where the trial is ranked at this rung
            assert rung <= first < total, (size, rung, first, total)  # within the budget, before the end
            ranked_after.add((rung, round(first * size / windows)))
    assert ranked_after == {(rung, 1) for rung in rungs}  # every batch size ranked after one epoch


def test_setup_installs_the_project_with_torch_and_ray_pinned(gpu_config):
    config = prepared(gpu_config)
    for kind in ("head_setup_commands", "worker_setup_commands"):
        commands = config[kind]
        assert any(ray_pin() in c and torch_pin() in c and "-e ~/tune_distill" in c for c in commands), kind
    assert any("boto3" in c for c in config["head_setup_commands"]), "the head's autoscaler needs boto3"
    mounts = config["file_mounts"]
    for remote in ("pyproject.toml", "README.md", "Makefile", "tune_distill", "configs", "data"):
        assert mounts.get(f"~/tune_distill/{remote}") == f"./{remote}"
    for remote, local in mounts.items():
        if not local.startswith(("..", "~")):
            assert (ROOT / local).exists(), f"file_mounts {remote}: {local} is not in the repository"
    assert mounts.get("~/shared") == "../shared", "the presets read ../shared/... from ~/tune_distill"


RAY_PORTS = (6379, 8265, 10001, 8076, 8077)  # GCS, dashboard, client server, object manager, node manager


def test_every_ray_process_requires_the_clusters_token(gpu_config):
    config = prepared(gpu_config)
    # the token is made on the user's machine and copied to every node, never kept in the repository
    assert config["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"
    assert not (ROOT / ".ray").exists()
    setup = config["setup_commands"]
    assert any("chmod 600 ~/.ray/auth_token" in c for c in setup), "the token file is the user's alone"
    assert any("export RAY_AUTH_MODE=token" in c and ".bashrc" in c for c in setup), \
        "drivers and `ray` commands in node shells (the sweep) must use the token too"
    for kind in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config[kind] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token ray start" in c for c in starts), kind
    assert "ray get-auth-token --generate" in header(GPU_YAML)
    assert "ray get-auth-token --generate" in (ROOT / "Makefile").read_text(), "make cluster-up makes the token"


def test_no_ray_port_is_open_to_the_world(gpu_config):
    group = gpu_config["provider"].get("security_group")
    assert group and group.get("GroupName"), "the cluster names its own security group"
    for rule in group.get("IpPermissions", []):
        world = [r for r in rule.get("IpRanges", []) if r.get("CidrIp") == "0.0.0.0/0"] + \
                [r for r in rule.get("Ipv6Ranges", []) if r.get("CidrIpv6") == "::/0"]
        if not world:
            continue
        assert rule.get("IpProtocol") == "tcp" and rule["FromPort"] == rule["ToPort"] == 22, \
            f"only SSH may be reached from anywhere, got {rule}"
        assert not any(rule["FromPort"] <= port <= rule["ToPort"] for port in RAY_PORTS)


def test_workers_get_the_bucket_only_and_the_head_the_rest(gpu_config):
    config = prepared(gpu_config)
    head = config["available_node_types"][config["head_node_type"]]["node_config"]["IamInstanceProfile"]["Name"]
    workers = {spec["node_config"]["IamInstanceProfile"]["Name"] for spec in worker_types(config).values()}
    assert workers == {"tune-distill-worker"} and head == "tune-distill-head"
    section = cluster_doc()
    bucket_statements = re.search(r"bucket='(.*?)'", section, re.DOTALL).group(1)
    actions = re.findall(r'"Action":\[?([^\]}]*)', bucket_statements)
    assert actions and set(re.findall(r'"(\w+):', " ".join(actions))) == {"s3"}, "the bucket statements grant S3 only"
    worker_policy = re.search(r"--role-name tune-distill-worker --policy-name \S+ --policy-document \\\s*(\S+)",
                              section).group(1)
    assert worker_policy == '"{\\"Version\\":\\"2012-10-17\\",\\"Statement\\":$bucket}"', worker_policy
    assert '\\"iam:PassRole\\",\\"Resource\\":\\"arn:aws:iam::*:role/tune-distill-worker\\"' in section, \
        "the head may pass the worker role only"
    assert "AmazonEC2FullAccess" not in section


def test_header_names_the_bucket_and_the_region_as_the_only_edits(gpu_config):
    text = header(GPU_YAML)
    assert edits(text) == ["bucket", "region"]
    assert BUCKET in text and "provider.region" in text
    for command in ("ray up", "ray dashboard", "ray down", "http://127.0.0.1:8265"):
        assert command in text


def test_one_bucket_line_and_one_region_line(gpu_config):
    body = code(GPU_YAML)
    assert buckets(body) == [BUCKET], "the bucket is named once, in the TUNE_DISTILL_STORAGE line"
    assert f"TUNE_DISTILL_STORAGE=s3://{BUCKET}/" in body
    assert set(buckets(GPU_YAML.read_text())) == {BUCKET}
    region = gpu_config["provider"]["region"]
    assert body.count(region) == 1 and "availability_zone" not in gpu_config["provider"]


def launcher_storage(config: dict) -> str:
    """The value of TUNE_DISTILL_STORAGE that setup_commands export on every node."""
    values = re.findall(r"export TUNE_DISTILL_STORAGE=(\S+?)'", " ".join(config["setup_commands"]))
    assert len(values) == 1, "setup_commands export TUNE_DISTILL_STORAGE once"
    return values[0]


def cluster_doc() -> str:
    """docs/cluster.md, the cluster walk-through the README links to."""
    text = (ROOT / "docs" / "cluster.md").read_text()
    assert text.startswith("# Running on a cluster\n"), "docs/cluster.md is not the cluster walk-through"
    return text


def readme_cluster_section() -> str:
    """The README's short "Going to a cluster" section (it links docs/cluster.md for the rest)."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## Going to a cluster\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert match, "README.md has no 'Going to a cluster' section"
    return match.group(1)


def sweep_parser() -> argparse.ArgumentParser:
    from tune_distill.sweep.cli import add_arguments

    parser = argparse.ArgumentParser(prog="tune-distill sweep", exit_on_error=False)
    add_arguments(parser)
    return parser


@pytest.fixture
def no_storage_access(monkeypatch):
    """Fail the test if anything opens or probes a storage location (a bucket) or a socket."""
    import socket

    from tune_distill import remote

    def refuse(*args, **kwargs):
        raise AssertionError(f"network or storage access: {args!r}")

    for name in ("open_location", "s3_filesystem", "probe", "exists", "upload_files", "download_file"):
        monkeypatch.setattr(remote, name, refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def make_sweep(command: str, storage: str, tmp_path: Path) -> tuple[list[str], list[str], str]:
    """A documented `make sweep ...` command, with $TUNE_DISTILL_STORAGE set to `storage`: (the tune-distill
    command `make -n` prints, the command and RAY_ADDRESS a stand-in tune-distill actually receives).

    The Makefile's environment is stood in for: BIN is a folder whose `tune-distill` records its arguments,
    and ENV_READY a stamp newer than pyproject.toml, so make neither creates nor checks a virtual environment.
    """
    words = shlex.split(command.replace("$TUNE_DISTILL_STORAGE", storage))
    assert words[:2] == ["make", "sweep"], command
    # make's own variables, if this shell happens to set them, must not leak into the command
    ignored = ("RAY_ADDRESS", "MAKEFLAGS", "MAKELEVEL", "PRESET", "DATA", "TEACHER", "OUT", "RESUME", "STORAGE",
               "STORAGE_ENDPOINT", "VIRTUAL_ENV", "VENV", "TORCH")
    env = {key: value for key, value in os.environ.items() if key not in ignored}
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir(exist_ok=True)
    ready = tmp_path / "env-ready"
    ready.touch()
    stand_ins = [f"BIN={bin_dir}", f"ENV_READY={ready}", "TEACHER=" + str(tmp_path / "teacher")] \
        if "PRESET=smoke" in command or "PRESET" not in command else [f"BIN={bin_dir}", f"ENV_READY={ready}"]
    printed = subprocess.run(["make", "-n", *words[1:], *stand_ins], cwd=ROOT, env=env, check=True,
                             capture_output=True, text=True).stdout
    argv = shlex.split(printed.replace("\\\n", " "))
    assert argv and argv[0] == f"{bin_dir}/tune-distill", printed
    argv[0] = "tune-distill"
    # the real run, with a tune-distill that records what it gets (make exports command-line variables)
    record = tmp_path / "tune-distill.args"
    fake = bin_dir / "tune-distill"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$RAY_ADDRESS" "$@" > {shlex.quote(str(record))}\n')
    fake.chmod(0o755)
    subprocess.run(["make", "-s", *words[1:], *stand_ins], cwd=ROOT, env=env, check=True, capture_output=True)
    ray_address, *received = record.read_text().splitlines()
    return argv, ["tune-distill", *received], ray_address


def accepted_by_the_sweep(argv: list[str]):
    """Parse `tune-distill sweep` options as the CLI does and apply them to the preset (no storage access)."""
    from tune_distill.sweep.config import load_sweep_config, preset_path, with_overrides

    args = sweep_parser().parse_args(argv)
    assert args.preset, argv
    return with_overrides(load_sweep_config(ROOT / preset_path(args.preset)), storage_path=args.storage_path,
                          storage_endpoint=args.storage_endpoint)


def test_documented_make_sweep_runs_the_paper_preset_on_the_bucket(gpu_config, tmp_path, no_storage_access):
    from tune_distill.sweep.config import load_sweep_config, sweep_config_to_dict

    storage = launcher_storage(gpu_config)
    assert storage == f"s3://{BUCKET}/sweeps"
    commands = (MAKE_SWEEP.findall(header(GPU_YAML)) + MAKE_SWEEP.findall(cluster_doc())
                + MAKE_SWEEP.findall(readme_cluster_section()))
    assert len(MAKE_SWEEP.findall(header(GPU_YAML))) == 1, "the header documents one sweep command"
    assert commands[0].strip() == "make sweep PRESET=paper RAY_ADDRESS=auto STORAGE=$TUNE_DISTILL_STORAGE/paper"
    paper = load_sweep_config(ROOT / "configs" / "sweep_paper.yaml")
    for command in commands:
        argv, received, ray_address = make_sweep(command, storage, tmp_path)
        assert argv[:2] == ["tune-distill", "sweep"], argv
        printed = " ".join(argv)
        assert "--preset paper" in printed and f"--storage-path {storage}/paper" in printed, (command, printed)
        assert received == argv, "make -n and the real run disagree"
        if "RAY_ADDRESS=auto" in command:
            assert ray_address == "auto", "RAY_ADDRESS on make's command line must reach the sweep"
        config = accepted_by_the_sweep(argv[2:])
        assert config.storage_path == f"s3://{BUCKET}/sweeps/paper" and config.storage_endpoint == ""
        assert sweep_config_to_dict(config) == {**sweep_config_to_dict(paper), "storage_path": config.storage_path}


def test_make_sweep_passes_storage_options_only_when_set(tmp_path):
    argv, _, _ = make_sweep("make sweep PRESET=paper", "unused", tmp_path)
    assert argv == ["tune-distill", "sweep", "--preset", "paper"]
    argv, received, _ = make_sweep("make sweep PRESET=cpu OUT=sweeps/x RESUME=1 STORAGE=s3://b/p "
                                   "STORAGE_ENDPOINT=http://127.0.0.1:9000", "unused", tmp_path)
    assert argv == received
    assert received[2:] == ["--preset", "cpu", "--out", "sweeps/x", "--resume", "--storage-path", "s3://b/p",
                        "--storage-endpoint", "http://127.0.0.1:9000"]


def test_a_bad_storage_location_is_refused_without_storage_access(no_storage_access):
    from tune_distill.sweep.config import SweepConfigError

    for argv in (["--preset", "paper", "--storage-path", "s3://"],
                 ["--preset", "paper", "--storage-path", "/tmp/x", "--storage-endpoint", "http://127.0.0.1:9000"],
                 ["--preset", "paper", "--storage-path", "s3://b/p", "--storage-endpoint", "ftp://host"]):
        with pytest.raises(SweepConfigError, match="storage_"):
            accepted_by_the_sweep(argv)


# --------------------------------------------------------------------------------------------------
# cluster/kuberay.yaml (a RayCluster for the KubeRay operator)
# --------------------------------------------------------------------------------------------------


def _gpu_limit(container: dict) -> object:
    return (container.get("resources") or {}).get("limits", {}).get("nvidia.com/gpu")


def kuberay_problems(doc: dict, ray_version: str) -> list[str]:
    """What is wrong with a RayCluster document for our use (empty: nothing)."""
    problems = []
    if doc.get("apiVersion") != "ray.io/v1":
        problems.append(f"apiVersion {doc.get('apiVersion')!r}, expected ray.io/v1")
    if doc.get("kind") != "RayCluster":
        problems.append(f"kind {doc.get('kind')!r}, expected RayCluster")
    if not (doc.get("metadata") or {}).get("name"):
        problems.append("metadata.name missing")
    spec = doc.get("spec") or {}
    if str(spec.get("rayVersion")) != ray_version:
        problems.append(f"spec.rayVersion {spec.get('rayVersion')!r} is not the installed Ray {ray_version}")

    def check_template(where: str, template: object) -> dict:
        containers = ((template or {}).get("spec") or {}).get("containers") if isinstance(template, dict) else None
        if not containers:
            problems.append(f"{where}.template.spec.containers missing")
            return {}
        first = containers[0]
        for key in ("name", "image"):
            if not first.get(key):
                problems.append(f"{where}.template.spec.containers[0].{key} missing")
        image = str(first.get("image", ""))
        if image and not image.split(":")[-1].startswith(ray_version):
            problems.append(f"{where}: image {image} is not Ray {ray_version}")
        return first

    head = spec.get("headGroupSpec")
    if not isinstance(head, dict):
        problems.append("spec.headGroupSpec missing")
    else:
        params = head.get("rayStartParams")
        if not isinstance(params, dict):
            problems.append("headGroupSpec.rayStartParams missing")
        elif str(params.get("num-cpus")) != "0":
            problems.append("headGroupSpec.rayStartParams.num-cpus must be '0' (no trials on the head)")
        container = check_template("headGroupSpec", head.get("template"))
        if _gpu_limit(container) or (isinstance(params, dict) and str(params.get("num-gpus", "0")) != "0"):
            problems.append("headGroupSpec asks for a GPU")

    groups = spec.get("workerGroupSpecs")
    if not isinstance(groups, list) or not groups:
        problems.append("spec.workerGroupSpecs missing")
        groups = []
    for index, group in enumerate(groups):
        where = f"workerGroupSpecs[{index}]"
        if not group.get("groupName"):
            problems.append(f"{where}.groupName missing")
        counts = {key: group.get(key) for key in ("replicas", "minReplicas", "maxReplicas")}
        for key, value in counts.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                problems.append(f"{where}.{key} must be a non-negative integer, got {value!r}")
        if all(isinstance(v, int) and not isinstance(v, bool) for v in counts.values()):
            if not counts["minReplicas"] <= counts["replicas"] <= counts["maxReplicas"]:
                problems.append(f"{where}: needs minReplicas <= replicas <= maxReplicas, got {counts}")
        if not isinstance(group.get("rayStartParams"), dict):
            problems.append(f"{where}.rayStartParams missing")
        container = check_template(where, group.get("template"))
        if container and str(_gpu_limit(container)) != "1":
            problems.append(f"{where}: limits nvidia.com/gpu must be 1, got {_gpu_limit(container)!r}")
    return problems


@pytest.fixture(scope="module")
def kuberay() -> dict:
    return load(KUBERAY_YAML)


def test_kuberay_cluster_is_well_formed(kuberay):
    assert kuberay_problems(kuberay, ray.__version__) == []


_DELETE = object()
_WORKER = ("spec", "workerGroupSpecs", 0)
_WORKER_LIMITS = (*_WORKER, "template", "spec", "containers", 0, "resources", "limits")
_HEAD = ("spec", "headGroupSpec")
_HEAD_CONTAINER = (*_HEAD, "template", "spec", "containers", 0)


def _set(path: tuple, value: object):
    """A mutation: set (or, with _DELETE, remove) the value at `path` (keys and list indices)."""
    def mutate(doc: dict) -> None:
        *parents, last = path
        node = doc
        for part in parents:
            node = node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return mutate


@pytest.mark.parametrize("mutate, message", [
    pytest.param(_set((*_WORKER, "minReplicas"), 30), "minReplicas <= replicas <= maxReplicas", id="min over max"),
    pytest.param(_set((*_WORKER, "replicas"), 21), "minReplicas <= replicas <= maxReplicas", id="replicas over max"),
    pytest.param(_set((*_WORKER, "maxReplicas"), "20"), "maxReplicas must be", id="max as a string"),
    pytest.param(_set((*_WORKER, "groupName"), _DELETE), "groupName missing", id="no group name"),
    pytest.param(_set((*_WORKER, "rayStartParams"), _DELETE), "rayStartParams missing", id="no worker params"),
    pytest.param(_set((*_WORKER_LIMITS, "nvidia.com/gpu"), 2), "nvidia.com/gpu must be 1", id="two gpus"),
    pytest.param(_set((*_WORKER_LIMITS, "nvidia.com/gpu"), _DELETE), "nvidia.com/gpu must be 1", id="no gpu"),
    pytest.param(_set((*_HEAD, "rayStartParams", "num-cpus"), _DELETE), "num-cpus", id="head offers cpus"),
    pytest.param(_set((*_HEAD_CONTAINER, "resources", "limits", "nvidia.com/gpu"), 1), "asks for a GPU",
                 id="head with a gpu"),
    pytest.param(_set((*_HEAD_CONTAINER, "image"), "rayproject/ray:2.9.0-py311"), "is not Ray",
                 id="head image of another ray"),
    pytest.param(_set(("spec", "rayVersion"), "2.9.0"), "rayVersion", id="other ray version"),
    pytest.param(_set(("apiVersion",), "ray.io/v1alpha1"), "apiVersion", id="old api version"),
    pytest.param(_set(("spec", "workerGroupSpecs"), []), "workerGroupSpecs missing", id="no workers"),
])
def test_kuberay_checker_rejects_a_broken_cluster(kuberay, mutate, message):
    broken = copy.deepcopy(kuberay)
    mutate(broken)
    problems = kuberay_problems(broken, ray.__version__)
    assert any(message in problem for problem in problems), problems


def test_kuberay_pods_install_pinned_and_share_one_bucket(kuberay):
    spec = kuberay["spec"]
    containers = [spec["headGroupSpec"]["template"]["spec"]["containers"][0]]
    containers += [group["template"]["spec"]["containers"][0] for group in spec["workerGroupSpecs"]]
    for container in containers:
        script = " ".join(container["args"])
        assert ray_pin() in script and torch_pin() in script and "-e ~/tune_distill" in script
        assert "ray start" not in script, "KubeRay would then not add its own start command"
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert env["TUNE_DISTILL_STORAGE"] == f"s3://{BUCKET}/sweeps"
        assert env["TUNE_DISTILL_CODE"] == f"s3://{BUCKET}/code"
        assert env["AWS_DEFAULT_REGION"]
    assert spec["headGroupSpec"]["rayStartParams"].get("dashboard-host") == "127.0.0.1"
    assert edits(header(KUBERAY_YAML)) == ["bucket", "region"]
    assert set(buckets(KUBERAY_YAML.read_text())) == {BUCKET}
    assert buckets(code(KUBERAY_YAML)) == [BUCKET, BUCKET], "the bucket is named once per variable"


def test_kuberay_ray_requires_a_token_and_only_its_own_pods_reach_it(kuberay):
    spec = kuberay["spec"]
    containers = [spec["headGroupSpec"]["template"]["spec"]["containers"][0]]
    containers += [group["template"]["spec"]["containers"][0] for group in spec["workerGroupSpecs"]]
    for container in containers:
        env = {item["name"]: item for item in container["env"]}
        assert env["RAY_AUTH_MODE"].get("value") == "token", container["name"]
        secret = env["RAY_AUTH_TOKEN"].get("valueFrom", {}).get("secretKeyRef", {})
        assert secret.get("name") == "tune-distill-ray-token" and secret.get("key") == "auth_token", \
            "the token comes from a Secret, never a literal value in the file"
        assert "value" not in env["RAY_AUTH_TOKEN"]
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(env), \
            "pods get AWS credentials from their service account (IRSA / Pod Identity), not keys"
    assert "kubectl create secret generic tune-distill-ray-token" in header(KUBERAY_YAML)
    policy = load(ROOT / "cluster" / "kuberay-network-policy.yaml")
    assert policy["kind"] == "NetworkPolicy" and policy["spec"]["policyTypes"] == ["Ingress"]
    own_pods = {"ray.io/cluster": kuberay["metadata"]["name"]}
    assert policy["spec"]["podSelector"]["matchLabels"] == own_pods
    sources = [source for rule in policy["spec"]["ingress"] for source in rule["from"]]
    assert sources == [{"podSelector": {"matchLabels": own_pods}}], "nothing but the cluster's own pods"
    assert "kuberay-network-policy.yaml" in header(KUBERAY_YAML)


def test_kuberay_pods_fetch_code_and_data(kuberay, tmp_path):
    """The pods' fetch step (pyarrow copy_files, then tar) against a file:// 'bucket'."""
    script = kuberay["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["args"][0]
    fetch = script.split(" && pip install", 1)[0]
    bucket = tmp_path / "bucket" / "code"
    (bucket / "shared" / "models").mkdir(parents=True)
    (bucket / "shared" / "models" / "weights.bin").write_bytes(b"\0\1")
    with tarfile.open(bucket / "tune_distill.tar.gz", "w:gz") as archive:
        archive.add(ROOT / "pyproject.toml", arcname="pyproject.toml")
    home = tmp_path / "home"
    home.mkdir()
    env = {**python_on_path(tmp_path), "HOME": str(home), "TUNE_DISTILL_CODE": bucket.as_uri()}
    subprocess.run(["bash", "-c", fetch], env=env, check=True, cwd=home)
    assert (home / "tune_distill" / "pyproject.toml").read_bytes() == (ROOT / "pyproject.toml").read_bytes()
    assert (home / "shared" / "models" / "weights.bin").read_bytes() == b"\0\1"


def test_documented_kuberay_sweep_runs_the_paper_preset_on_the_bucket(kuberay, no_storage_access):
    head = kuberay["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in head["env"]}
    commands = CLI_SWEEP.findall(header(KUBERAY_YAML)) + CLI_SWEEP.findall(cluster_doc())
    assert len(commands) >= 2, "the header and docs/cluster.md each document the KubeRay sweep"
    for command in commands:
        argv = shlex.split(command.replace("$TUNE_DISTILL_STORAGE", env["TUNE_DISTILL_STORAGE"]))
        assert argv[:2] == ["tune-distill", "sweep"]
        assert "--preset paper" in " ".join(argv), command
        config = accepted_by_the_sweep(argv[2:])
        assert config.storage_path == f"s3://{BUCKET}/sweeps/paper", command


def test_no_cluster_writes_a_preset_of_its_own(gpu_config, kuberay):
    """The storage is a sweep option now: nothing generates configs/sweep_*.yaml on a node."""
    for text in (GPU_YAML.read_text(), KUBERAY_YAML.read_text(), cluster_doc()):
        assert "paper_s3" not in text and "yaml.safe_dump" not in text
    assert not (ROOT / "configs" / "sweep_paper_s3.yaml").exists()


# --------------------------------------------------------------------------------------------------
# docs/cluster.md and the README
# --------------------------------------------------------------------------------------------------


def test_docs_walk_through_the_cluster():
    section = cluster_doc()
    for step in ("ray up cluster/gpu.yaml", "ray dashboard cluster/gpu.yaml", "http://127.0.0.1:8265",
                 "make sweep PRESET=paper RAY_ADDRESS=auto STORAGE=$TUNE_DISTILL_STORAGE/paper",
                 "ray down cluster/gpu.yaml",
                 "kubectl apply -f cluster/kuberay.yaml", "tune-distill-head", "tune-distill-worker"):
        assert step in section, step
    assert set(buckets(section)) == {BUCKET}


def test_readme_goes_to_the_cluster_in_a_few_lines_and_links_the_rest():
    section = readme_cluster_section()
    for step in ("make cluster-up", "ray attach cluster/gpu.yaml",
                 "make sweep PRESET=paper RAY_ADDRESS=auto STORAGE=$TUNE_DISTILL_STORAGE/paper",
                 "(docs/cluster.md)"):
        assert step in section, step
