"""Run a simulated sweep at the scale users run one and measure the sweep's own costs (issue 22).

What it does: starts an S3 stand-in (moto's server, in this process, behind a counter of the requests and bytes it
receives), runs `tune-distill sweep --preset simulate` (the real driver, searcher, scheduler, records, study and
storage on trials that do no training: tune_distill/sweep/simulated.py) with its storage in that bucket, and
measures while it runs:
- the driver process's CPU seconds and peak memory (/proc, sampled each second);
- every file the driver writes under the sweep folder and Tune's local staging folder (inotify: each close after
  writing and each rename into place counts as one write), with its size, so a file rewritten in time that grows
  with the number of trials shows;
- the requests and bytes sent to storage;
- optionally, the driver killed (SIGKILL) once it has suggested trial `--kill-at`, then `--resume`d: the time until
  the resumed sweep suggests its next trial, and whether every trial is counted once.
Then it reads the sweep's records and writes one JSON (--json): the wall-clock against the theoretical minimum
(the sum of the trials' simulated times at the time scale / max_concurrent), suggestion latency (p50/p95 around
50, 200 and 480 trials, from suggestions.jsonl), the time free slots wait for a trial (each trial's end matched to
the next start, as Tune's concurrency limit frees slots), the optuna-dashboard API's latency on the finished study,
and the counts above.

What it must not know: how the driver works inside (only its files, its process and the bucket).

Commands (CPU; minutes, the machine otherwise idle):
    python bench/sweep_scale.py --out /tmp/scale --json results/sim-seed-scale/seed-scale.json
    python bench/sweep_scale.py --out /tmp/scale-kill --kill-at 300 --json results/sim-seed-scale/resume.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "scale"
IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE, IN_ISDIR = 0x8, 0x80, 0x100, 0x40000000
# files only ever appended to (the sweep's and Tune's logs): their bytes written are their growth, not their size
APPENDED = ("study.journal", "suggestions.jsonl", "result.json", "progress.csv", "history.jsonl", ".vm", "trial.log")


class CountingApp:
    """WSGI middleware: requests by method and bytes received (request bodies) and sent by the S3 stand-in."""

    def __init__(self, app: Any):
        self.app, self.lock = app, threading.Lock()
        self.requests: dict[str, int] = {}
        self.received = self.sent = 0

    def __call__(self, environ: dict, start_response: Any) -> Any:
        with self.lock:
            method = environ.get("REQUEST_METHOD", "?")
            self.requests[method] = self.requests.get(method, 0) + 1
        from werkzeug.wsgi import get_input_stream

        body_in = get_input_stream(environ).read()  # chunked uploads carry no Content-Length: count what arrives
        with self.lock:
            self.received += len(body_in)
        import io

        environ["wsgi.input"] = io.BytesIO(body_in)
        environ["CONTENT_LENGTH"] = str(len(body_in))
        body = self.app(environ, start_response)
        chunks = list(body)
        with self.lock:
            self.sent += sum(len(chunk) for chunk in chunks)
        return chunks


def start_s3() -> tuple[str, CountingApp]:
    """An S3 stand-in (moto) on a free local port, counting what it receives; returns (endpoint, counter)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    counter = CountingApp(DomainDispatcherApplication(create_backend_app))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = make_server("127.0.0.1", port, counter, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{port}"
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                 aws_secret_access_key="bench").create_bucket(Bucket=BUCKET)
    return endpoint, counter


class Writes:
    """inotify on folder trees (new subfolders added as they appear): every file written (closed after writing, or
    renamed into place), with the time, path and size."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK)
        self.paths: dict[int, Path] = {}
        self.watched: set[Path] = set()
        self.lock = threading.Lock()
        self.events: list[tuple[float, str, int]] = []
        self.stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def watch(self, folder: Path) -> None:
        with self.lock:
            for directory in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
                if directory not in self.watched:
                    wd = self.libc.inotify_add_watch(self.fd, str(directory).encode(),
                                                     IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE)
                    if wd >= 0:
                        self.paths[wd] = directory
                        self.watched.add(directory)

    def _loop(self) -> None:
        while not self.stop.is_set():
            length = os.read(self.fd, 1 << 20) if self._ready() else b""
            offset = 0
            while offset < len(length):
                wd, mask, _, size = struct.unpack_from("iIII", length, offset)
                name = length[offset + 16: offset + 16 + size].rstrip(b"\0").decode(errors="replace")
                offset += 16 + size
                folder = self.paths.get(wd)
                if folder is None:
                    continue
                path = folder / name
                if mask & IN_ISDIR and mask & IN_CREATE:
                    self.watch(path)
                elif mask & (IN_CLOSE_WRITE | IN_MOVED_TO):
                    try:
                        self.events.append((time.time(), str(path), path.stat().st_size))
                    except OSError:
                        pass

    def _ready(self) -> bool:
        import select

        return bool(select.select([self.fd], [], [], 0.2)[0])


def sample_process(pid: int, out: dict[str, float], stop: threading.Event) -> None:
    """The process's CPU seconds (user + system) and peak resident memory, every second, until `stop`."""
    tick = os.sysconf("SC_CLK_TCK")
    while not stop.is_set():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out["cpu_seconds"] = (int(fields[11]) + int(fields[12])) / tick
            rss = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
            out["peak_rss_mb"] = max(out.get("peak_rss_mb", 0.0), int(rss.group(1)) / 1024 if rss else 0.0)
        except (OSError, IndexError, ValueError):
            return
        stop.wait(1.0)


def run_driver(args: argparse.Namespace, env: dict, resume: bool, writes: Writes) -> dict[str, Any]:
    """One driver process (fresh or --resume) to its end, or to its kill at --kill-at; its measures."""
    command = [sys.executable, "-m", "tune_distill", "sweep", "--out", str(args.out)]
    if resume:
        command += ["--resume"]
    else:
        command += [*_source(args), "--num-samples", str(args.num_samples), "--time-scale",
                    str(args.time_scale), "--storage-path", f"s3://{BUCKET}/sweep", "--storage-endpoint",
                    env["AWS_ENDPOINT_URL_S3"]]
    log = open(args.out.parent / f"{args.out.name}-{'resume' if resume else 'driver'}.log", "w")
    began = time.time()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    measured: dict[str, Any] = {"command": " ".join(command[1:]), "started": began}
    stop = threading.Event()
    threading.Thread(target=sample_process, args=(process.pid, measured, stop), daemon=True).start()
    seen = _lines(args.out / "suggestions.jsonl")
    try:
        _follow(args, process, measured, writes, resume, seen)
    finally:  # never leave a driver running behind a failed bench
        if process.poll() is None:
            process.kill()
            process.wait()
        stop.set()
    measured.update(returncode=process.returncode, wall_s=round(time.time() - began, 1))
    return measured


def _follow(args: argparse.Namespace, process: subprocess.Popen, measured: dict[str, Any], writes: Writes,
            resume: bool, seen: int) -> None:
    """Watch the driver until it ends: new folders to watch, the resumed driver's first suggestion, the kill."""
    suggestions = args.out / "suggestions.jsonl"
    measured["killed"] = False
    while process.poll() is None:
        time.sleep(0.5)
        for folder in (args.out, *Path("/tmp/ray").glob("session_*/artifacts")):
            if folder.is_dir() and folder not in writes.watched:
                writes.watch(folder)
        lines = _lines(suggestions)
        if resume and "first_suggestion_s" not in measured and lines > seen:
            measured["first_suggestion_s"] = round(time.time() - measured["started"], 2)
        if not resume and args.kill_at and _last_number(suggestions) >= args.kill_at and not measured["killed"]:
            process.send_signal(signal.SIGKILL)
            measured["killed"] = True
            measured["killed_after_s"] = round(time.time() - measured["started"], 1)


def _source(args: argparse.Namespace) -> list[str]:
    """--preset NAME, or with --searcher a copy of the preset with that searcher (written beside --out)."""
    if args.config_file:
        return ["--config", str(args.config_file)]
    if not args.searcher:
        return ["--preset", args.preset]
    import yaml

    sys.path.insert(0, str(ROOT))
    from tune_distill.sweep.config import preset_path

    preset = yaml.safe_load(preset_path(args.preset).read_text())
    preset["searcher"] = {"name": args.searcher, "seed": 0}
    copy = args.out.parent / f"{args.out.name}-{args.preset}-{args.searcher}.yaml"
    copy.write_text(yaml.safe_dump(preset, sort_keys=False))
    return ["--config", str(copy)]


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


def _last_number(path: Path) -> int:
    lines = path.read_text().splitlines() if path.is_file() else []
    return json.loads(lines[-1])["number"] if lines else -1


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {"n": len(ordered), "p50": round(statistics.median(ordered), 3),
            "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3), "max": round(ordered[-1], 3)}


def suggestion_latency(out: Path) -> dict[str, Any]:
    """p50/p95 of the searcher's time per suggestion around 50, 200 and 480 suggestions (+-10 numbers)."""
    rows = [json.loads(line) for line in (out / "suggestions.jsonl").read_text().splitlines() if line.strip()]
    windows = {}
    for at in (50, 200, 480):
        windows[str(at)] = percentiles([r["seconds"] for r in rows if abs(r["number"] - at) <= 10])
    return {"windows": windows, "all": percentiles([r["seconds"] for r in rows]),
            "numbers_suggested_twice": sorted({r["number"] for r in rows if sum(x["number"] == r["number"]
                                                                                 for x in rows) > 1})}


def slot_waits(records: list[dict]) -> dict[str, Any]:
    """How long a slot freed by a trial's end waits for the next trial to start: ends and starts in time order, each
    start after the first slots' filling taking the oldest freed slot (from the trials' start times and Tune's total
    time of each; a trial resumed after a kill counts from its last start)."""
    from collections import deque

    spans = [(r["started_at"], r["started_at"] + (r["duration"] or 0.0)) for r in records if r.get("started_at")]
    events = sorted([(end, 0) for _, end in spans] + [(start, 1) for start, _ in spans])
    free: deque[float] = deque()
    waits = []
    for moment, is_start in events:
        if not is_start:
            free.append(moment)
        elif free:
            waits.append(moment - free.popleft())
    return percentiles(waits)


def writes_table(events: list[tuple[float, str, int]], out: Path, began: float, ended: float) -> list[dict]:
    """Per kind of file (digits and trial ids folded): writes, bytes written (a rewritten file's size at each write,
    an appended file's growth), largest size, and the bytes written in the first and last third of the run (equal:
    rewritten in time that does not grow with the trials)."""
    kinds: dict[str, dict[str, Any]] = {}
    third = (ended - began) / 3
    last_size: dict[str, int] = {}
    for moment, path, size in events:
        if Path(path).name.endswith(APPENDED):  # appended: what was written is what the file grew by
            size, last_size[path] = max(0, size - last_size.get(path, 0)), size
        name = re.sub(r"trial_\d+_[0-9a-f]+", "trial_N", path)
        name = re.sub(r"/tmp/ray/session_[^/]+/artifacts/[^/]+", "<tune staging>", name)
        name = name.replace(str(out), "<sweep>")
        name = re.sub(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}", "<time>", name)
        name = re.sub(r"\d+", "N", name)
        row = kinds.setdefault(name, {"file": name, "writes": 0, "bytes": 0, "largest": 0, "first_third": 0,
                                      "last_third": 0})
        row["writes"] += 1
        row["bytes"] += size
        row["largest"] = max(row["largest"], size)
        if moment < began + third:
            row["first_third"] += size
        elif moment > ended - third:
            row["last_third"] += size
    return sorted(kinds.values(), key=lambda row: -row["bytes"])


def dashboard_latency(out: Path) -> dict[str, Any]:
    """The read-only dashboard's API (tune-distill dashboard) on the finished study: seconds per request."""
    from werkzeug.test import Client

    sys.path.insert(0, str(ROOT))
    from tune_distill.dashboard import dashboard_app

    client = Client(dashboard_app(out, 8080))
    headers = {"Host": "127.0.0.1:8080"}
    timings: dict[str, list[float]] = {"/api/studies": [], "/api/studies/0": []}
    for _ in range(5):
        for path in timings:
            began = time.perf_counter()
            response = client.get(path, headers=headers)
            timings[path].append(time.perf_counter() - began)
            if response.status_code != 200:
                raise RuntimeError(f"dashboard {path}: HTTP {response.status_code}")
    return {path: percentiles(values) for path, values in timings.items()}


def analyse(args: argparse.Namespace, runs: list[dict], writes: Writes, counter: CountingApp) -> dict[str, Any]:
    saved = json.loads((args.out / "sweep.json").read_text())
    config = saved["config"]
    records = [json.loads(line) for line in (args.out / "trials.jsonl").read_text().splitlines() if line.strip()]
    scale, slots = float(config["simulate"]["time_scale"]), int(config["max_concurrent"])
    simulated = sum(float(r["metrics"].get("simulated_seconds") or 0.0) for r in records)
    minimum = simulated / scale / slots
    fit = sum(run["wall_seconds"] for run in saved["runs"])
    numbers = [r["number"] for r in records]
    if len(runs) > 1:  # the resumed driver: until its first trial (re)started
        starts = [r["started_at"] for r in records if (r.get("started_at") or 0) > runs[1]["started"]]
        runs[1]["first_trial_start_s"] = round(min(starts) - runs[1]["started"], 1) if starts else None
    return {
        "trials": len(records), "status_counts": saved["summary"]["status_counts"],
        "numbers_missing": sorted(set(range(args.num_samples)) - set(numbers)),
        "numbers_recorded_twice": sorted({n for n in numbers if numbers.count(n) > 1}),
        "attempts_over_one": sorted(r["number"] for r in records if (r.get("attempts") or 1) > 1),
        "theoretical_minimum_s": round(minimum, 1), "fit_wall_s": round(fit, 1),
        "overhead_pct": round(100 * (fit - minimum) / minimum, 1),
        "command_wall_s": round(sum(run["wall_s"] for run in runs), 1),
        "suggestions": suggestion_latency(args.out), "slot_wait_s": slot_waits(records),
        "driver": [{k: run.get(k) for k in ("cpu_seconds", "peak_rss_mb", "wall_s", "killed", "killed_after_s",
                                            "first_trial_start_s", "first_suggestion_s", "returncode", "command")}
                   for run in runs],
        "storage": {"requests": dict(counter.requests), "bytes_received": counter.received,
                    "bytes_sent": counter.sent},
        "writes": writes_table(writes.events, args.out, runs[0]["started"], time.time())[:25],
        "dashboard_s": dashboard_latency(args.out),
        "simulated": saved["summary"].get("simulated"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the sweep folder (must not exist)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--preset", default="simulate")
    parser.add_argument("--config-file", help="a sweep config (a simulated one) instead of the preset")
    parser.add_argument("--searcher", help="the preset with this searcher instead of its own (e.g. optuna-tpe)")
    parser.add_argument("--num-samples", type=int, default=480)
    parser.add_argument("--time-scale", type=float, default=6.0)
    parser.add_argument("--kill-at", type=int, default=0, help="SIGKILL the driver once it suggested this trial, "
                                                               "then resume it")
    args = parser.parse_args()
    args.out = args.out.resolve()
    endpoint, counter = start_s3()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL_S3": endpoint, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    writes = Writes()
    runs = [run_driver(args, env, False, writes)]
    if runs[0]["killed"]:
        time.sleep(5)  # the killed driver's local Ray (gcs, raylet, its workers) goes down with it
        runs.append(run_driver(args, env, True, writes))
    figures = analyse(args, runs, writes, counter)
    figures = {"command": "python bench/sweep_scale.py " + " ".join(sys.argv[1:]), "endpoint": endpoint, **figures}
    text = json.dumps(figures, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
