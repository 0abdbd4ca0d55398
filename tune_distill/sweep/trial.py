"""The trainable: what one Ray trial runs, and how trials are named.

What it does: `make_trainable(context)` is the function Tune runs for every trial (named
`tune_distill_trial`, a closure over a `TrialContext`); `run_trial` rebuilds the trial's RunConfig
from the base overrides plus the searcher's resolved parameters (the `--set` syntax of config.py),
derives its seed (base seed + trial number), calls `run.run_distillation` with the run folder inside
the trial folder, reports every evaluation to Tune with the checkpoint, resumes from
`tune.get_checkpoint()`, and reports the final metrics (`final: True`) with node id and device. With
a fractional GPU share the trial's CUDA allocator is bounded to that share (runtime.bound_gpu_memory);
a CUDA out-of-memory error becomes `TrialOutOfMemory` ("CUDA out of memory at batch N (GPU share X)"),
recorded as a failure and not retried at a smaller batch: the batch is a searched setting. An
exception is written to the run folder's `trial_error.json` before Tune sees it. `Deadline` is the
sweep's `trial_timeout_s`: checked after every optimiser step and every evaluation (the clean path), it
raises `TrialTimeout` ("trial N timed out after T s at step S (trial_timeout_s = L)", T the true elapsed
time), a failure like any other. An attempt that hangs inside a step, in data loading or in an evaluation
never reaches that check: `Watchdog`, a thread of the trial's process, waits until the limit plus a grace
(`hard_stop_grace`), then (`end_hung_attempt`) writes the same TrialTimeout to trial_error.json with the
hung thread's stack, and raises `TrialHung` in the actor's main thread, where Tune waits for the trial's
results (the trial function runs in a thread of its own, which may be stuck in C code where no exception
reaches it): Tune records a failure the usual way (retried from its checkpoint up to max_failures, then
failed; trials.jsonl takes the error line from trial_error.json) and stops the actor, hung thread and all.
A process still alive a grace later is ended (`os._exit`). Killing the actor first would be simpler, but
Ray Tune 2.60 may then leave the trial RUNNING in its saved experiment state (the actor's death handled
before the task's failure), and a sweep's records are read from that state. `trial_dirname` /
`trial_name` name trial folders `trial_NNNN_<id>` so they sort by number.

What it must not know: how a run trains or evaluates (run.py does), the searcher, the scheduler.
Ray is imported inside `run_trial` and its steps only (on the worker).

Example (CPU, a minute; runs trials through this module):
    tune-distill sweep --preset smoke --out sweeps/smoke --num-samples 2
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import shlex
import shutil
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from tune_distill.config import RunConfig
from tune_distill.files import write_json
from tune_distill.records import FAMILY_METRIC
from tune_distill.sweep.plan import trial_run_config

log = logging.getLogger(__name__)

TRIAL_LOG = "trial.log"
TRIAL_ERROR_FILE = "trial_error.json"


class TrialOutOfMemory(RuntimeError):
    """A trial ran out of GPU memory; the message names its batch size and GPU share."""


def out_of_memory(error: BaseException, batch_size: int, gpu_share: float) -> TrialOutOfMemory | None:
    """The TrialOutOfMemory to report for `error`, when it is a CUDA out-of-memory error (else None)."""
    from tune_distill.runtime import is_out_of_memory

    if not is_out_of_memory(error):
        return None
    first_line = (str(error).strip().splitlines() or [""])[0]
    return TrialOutOfMemory(f"CUDA out of memory at batch {batch_size} (GPU share {gpu_share:g}): {first_line}")


@dataclass(frozen=True)
class TrialContext:
    """What every trial needs besides its own overrides (pickled to the workers)."""

    base: dict
    experiment_dir: str | None  # local experiment folder (run folders go inside its trial folders), or None
    cpus: float
    measure_latency: bool
    timeout_s: float = 0.0  # trial_timeout_s: limit of one attempt (0 = none)
    simulate: dict | None = None  # a simulated sweep's settings (sweep/simulated.py), resolved; None = train


class TrialTimeout(Exception):
    """An attempt of a trial ran past the sweep's trial_timeout_s."""


class TrialHung(TrialTimeout):
    """The watchdog's TrialTimeout, raised in the thread where Tune waits for the results of an attempt that hangs
    (see end_hung_attempt). An exception raised into another thread is given as a class: `message` is set first."""

    message = ""

    def __init__(self, *args: Any):
        super().__init__(*(args or (TrialHung.message,)))


class Deadline:
    """`trial_timeout_s` for one attempt of a trial: calling it after a step notes the step reached and raises
    TrialTimeout once past the limit (then `tripped` is set)."""

    def __init__(self, seconds: float, number: int, clock: Callable[[], float] = time.monotonic):
        self.seconds, self.number, self.clock = seconds, number, clock
        self.start = clock()
        self.end = self.start + seconds if seconds > 0 else math.inf
        self.step = 0  # the last step reached (optimiser step or evaluation)
        self.tripped = False

    def __call__(self, step: int) -> None:
        self.step = step
        if self.clock() > self.end:
            self.tripped = True
            raise self.expired()

    def expired(self) -> TrialTimeout:
        """The TrialTimeout of this attempt now: the true elapsed time, the step reached, the limit."""
        elapsed = self.clock() - self.start
        return TrialTimeout(f"trial {self.number:04d} timed out after {elapsed:.1f} s at step {self.step} "
                            f"(trial_timeout_s = {self.seconds:g})")


def hard_stop_grace(seconds: float) -> float:
    """How long past trial_timeout_s the watchdog leaves the between-steps check to end an attempt cleanly: a tenth
    of the limit, between 1 and 30 s."""
    return min(30.0, max(1.0, seconds / 10))


class Watchdog:
    """Calls `on_expiry(deadline.expired(), guarded thread)` once the deadline is past by `grace_s` and the guarded
    block (entered by the thread that runs the attempt) has neither ended nor raised at the deadline's check.

    `on_expiry` runs in the watchdog's thread under a lock that leaving the block also takes: it never runs after
    the block has ended. A deadline without a limit starts no thread.
    """

    def __init__(self, deadline: Deadline, on_expiry: Callable[[TrialTimeout, threading.Thread], None],
                 grace_s: float | None = None):
        self.deadline, self.on_expiry = deadline, on_expiry
        self.grace_s = hard_stop_grace(deadline.seconds) if grace_s is None else grace_s
        self.guarded = threading.current_thread()
        self._done = threading.Event()
        self._lock = threading.Lock()

    def __enter__(self) -> Watchdog:
        self.guarded = threading.current_thread()
        if math.isfinite(self.deadline.end):
            threading.Thread(target=self._watch, name=f"trial-{self.deadline.number:04d}-watchdog",
                             daemon=True).start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        with self._lock:
            self._done.set()

    def _watch(self) -> None:
        if self._done.wait(max(0.0, self.deadline.end + self.grace_s - self.deadline.clock())):
            return
        with self._lock:
            if self._done.is_set() or self.deadline.tripped or not self.guarded.is_alive():
                return  # ended, or the between-steps check raised: the clean path ends the attempt
            self.on_expiry(self.deadline.expired(), self.guarded)


def _json_scalars(metrics: Mapping[str, Any]) -> dict[str, Any]:
    clean = {}
    for key, value in metrics.items():
        if key.startswith("_"):
            continue
        if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
            value = value.item()
        if value is None or isinstance(value, (bool, int, float, str)):
            clean[key] = value
    return clean


def _device_name(config: RunConfig) -> str:
    from tune_distill.runtime import resolve_device

    device = resolve_device(config.distill.device)
    if device.type == "cuda":
        import torch

        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _total_steps(config: RunConfig, metrics: Mapping[str, Any]) -> int | None:
    """The run's total optimiser steps, from an evaluation's step and epoch (epoch = step / steps per epoch)."""
    if config.distill.max_steps:
        return config.distill.max_steps
    step, epoch = metrics.get("step"), metrics.get("epoch")
    if not step or not epoch:
        return None
    per_epoch = max(1, round(step / epoch))
    return max(1, math.ceil(config.distill.num_train_epochs * per_epoch))


def run_trial(config: Mapping[str, Any], context: TrialContext) -> None:
    """Body of one Ray trial: one `run_distillation` call, every evaluation reported to Tune."""
    import ray
    from ray import tune

    number = int(config["number"])
    run_config = trial_run_config(context.base, config["overrides"], number, context.cpus)
    trial_dir = Path(tune.get_context().get_trial_dir())
    run_dir = (Path(context.experiment_dir) / trial_dir.name if context.experiment_dir else trial_dir) / "run"
    deadline = Deadline(context.timeout_s, number)
    node_id = ray.get_runtime_context().get_node_id()
    gpu_share = float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))
    device = _device_name(run_config)
    identity = {"number": number, "kind": config.get("kind", "search"), "node_id": node_id, "device": device,
                "seed": run_config.distill.seed, "run_dir": str(run_dir), "started_at": time.time()}
    checkpoint = _usable_checkpoint(tune.get_checkpoint(), run_dir)
    end = functools.partial(end_hung_attempt, run_dir=run_dir, identity=identity,
                            grace_s=hard_stop_grace(context.timeout_s))
    with _trial_log(run_dir), Watchdog(deadline, end):
        try:
            _prepare_worker(run_config, number, gpu_share, node_id, device, config["overrides"])
            metrics = _train(run_config, run_dir, checkpoint, number, deadline, context,
                             report=_reporter(run_config, run_dir, identity, deadline),
                             command=_rerun_command(run_dir, context, config["overrides"], run_config))
            final = _json_scalars(metrics)
            family = _family(run_config, run_dir, context)
            if family is not None:
                final[FAMILY_METRIC] = family
            final.update(identity, final=True, status="complete", finished_at=time.time())
            final.setdefault("total_steps", _total_steps(run_config, final))
            tune.report(final, checkpoint=tune.Checkpoint.from_directory(str(run_dir / "checkpoint")))
        except Exception as failure:
            error = _record_failure(failure, run_config, gpu_share, identity, run_dir)
            if error is failure:
                raise
            raise error from failure


def _usable_checkpoint(checkpoint: Any, run_dir: Path) -> Any:
    """Tune's checkpoint of this trial, or None to start over (it was emptied by repair_missing_checkpoints, or
    there is none); starting over clears what an earlier attempt left in the run folder."""
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            if not (Path(directory) / "step.json").is_file():
                checkpoint = None  # emptied by repair_missing_checkpoints: start over
    if checkpoint is None and run_dir.exists():
        shutil.rmtree(run_dir)  # an attempt that never reported a checkpoint: start clean
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / TRIAL_ERROR_FILE).unlink(missing_ok=True)  # from an earlier attempt
    return checkpoint


@contextlib.contextmanager
def _trial_log(run_dir: Path) -> Iterator[None]:
    """The package's INFO log also goes to the run folder's trial.log while the trial runs."""
    handler = logging.FileHandler(run_dir / TRIAL_LOG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    package_logger = logging.getLogger("tune_distill")
    previous_level = package_logger.level
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)
        handler.close()


def _prepare_worker(run_config: RunConfig, number: int, gpu_share: float, node_id: str, device: str,
                    overrides: Mapping[str, Any]) -> None:
    """Quiet the weight-loading bars, bound the CUDA allocator to the trial's GPU share, log what runs where."""
    from transformers.utils import logging as transformers_logging

    from tune_distill.runtime import bound_gpu_memory, resolve_device

    transformers_logging.disable_progress_bar()  # weight-loading bars from every trial flood the driver's console
    bound = bound_gpu_memory(gpu_share, resolve_device(run_config.distill.device))
    if bound is not None:
        log.info("trial %04d: GPU share %g, CUDA allocator bounded to %.3f of the GPU", number, gpu_share, bound)
    log.info("trial %04d on node %s, device %s, seed %d, overrides %s", number, node_id, device,
             run_config.distill.seed, json.dumps(overrides, sort_keys=True))


def _reporter(run_config: RunConfig, run_dir: Path, identity: Mapping[str, Any],
              deadline: Deadline) -> Callable[[Mapping[str, Any]], None]:
    """run_distillation's callback: every evaluation but the last reported to Tune with the run's checkpoint."""
    from ray import tune

    def report(metrics: Mapping[str, Any]) -> None:
        deadline(int(metrics.get("step", 0)))
        values = _json_scalars(metrics)
        total = _total_steps(run_config, values)
        if total is not None and values.get("step", 0) >= total:
            return  # the last evaluation: the final report (with the same scores) follows at once
        values.update(identity, total_steps=total, final=False, status="running")
        tune.report(values, checkpoint=tune.Checkpoint.from_directory(str(run_dir / "checkpoint")))

    return report


def _rerun_command(run_dir: Path, context: TrialContext, overrides: Mapping[str, Any],
                   run_config: RunConfig) -> list[str]:
    """command.txt: the command that reruns this trial outside the sweep."""
    command = ["tune-distill", "distill", "--out", shlex.quote(str(run_dir))]
    settings = {**context.base, **overrides, "distill.seed": run_config.distill.seed}
    for key, value in sorted(settings.items()):
        text = json.dumps(list(value)) if isinstance(value, (list, tuple)) else str(value)
        command += ["--set", shlex.quote(f"{key}={text}")]
    return command


def _train(run_config: RunConfig, run_dir: Path, checkpoint: Any, number: int, deadline: Deadline,
           context: TrialContext, *, report: Callable[[Mapping[str, Any]], None],
           command: list[str]) -> dict[str, Any]:
    """run_distillation from Tune's checkpoint when there is one, else from the start; its final metrics (a
    simulated sweep's trial: sweep/simulated.py's run_simulated, the same way)."""
    from tune_distill.run import run_distillation

    if context.simulate is not None:
        return _simulate(run_config, run_dir, checkpoint, context.simulate, report, deadline)
    kwargs = dict(callback=report, measure_latency=context.measure_latency, command=command, on_step=deadline)
    if checkpoint is None:
        return run_distillation(run_config, run_dir, resume=False, **kwargs)
    with checkpoint.as_directory() as directory:
        step = json.loads((Path(directory) / "step.json").read_text())["step"]
        log.info("trial %04d resumes from Tune's checkpoint at step %d", number, step)
        return run_distillation(run_config, run_dir, resume=True, resume_from=directory, **kwargs)


def _family(run_config: RunConfig, run_dir: Path, context: TrialContext) -> str | None:
    """The trained student's post-training pruning family when the trial's prune.keep asks for one
    (prune/family.py): its members as JSON text, which records.family_records turns into rows; None when not."""
    if not run_config.prune.keep or context.simulate is not None:
        return None
    from tune_distill.prune.family import prune_family

    members = prune_family(run_config, run_dir, measure_latency=context.measure_latency)
    return json.dumps([{"name": m["name"], "keep": m["keep"], "metrics": _json_scalars(m["metrics"])}
                       for m in members])


def _simulate(run_config: RunConfig, run_dir: Path, checkpoint: Any, settings: Mapping[str, Any],
              report: Callable[[Mapping[str, Any]], None], deadline: Deadline) -> dict[str, Any]:
    """A simulated trial's run, from Tune's checkpoint when there is one."""
    from tune_distill.sweep.simulated import run_simulated

    if checkpoint is None:
        return run_simulated(run_config, run_dir, settings, callback=report, on_step=deadline)
    with checkpoint.as_directory() as directory:
        return run_simulated(run_config, run_dir, settings, resume_from=directory, callback=report, on_step=deadline)


def _record_failure(failure: Exception, run_config: RunConfig, gpu_share: float, identity: Mapping[str, Any],
                    run_dir: Path) -> Exception:
    """Write trial_error.json and free cached GPU memory; returns the error to raise (TrialOutOfMemory for a CUDA
    out-of-memory error, else `failure` itself)."""
    error = out_of_memory(failure, run_config.distill.train_batch_size, gpu_share) or failure
    _write_error(run_dir, identity, error, traceback.format_exc())
    log.error("trial %04d failed: %s: %s", identity["number"], type(error).__name__, error)
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - best effort only
        pass
    return error


def _write_error(run_dir: Path, identity: Mapping[str, Any], error: BaseException, trace: str) -> None:
    """trial_error.json: the trial's identity, the error in one line and where it was raised (or hung)."""
    write_json(run_dir / TRIAL_ERROR_FILE, {**identity, "error": f"{type(error).__name__}: {error}",
                                            "traceback": trace})


def end_hung_attempt(timeout: TrialTimeout, hung: threading.Thread, *, run_dir: Path, identity: Mapping[str, Any],
                     grace_s: float, exit_process: Callable[[int], Any] = os._exit) -> None:
    """The watchdog's action for an attempt that hangs: write `timeout` to trial_error.json (with the hung thread's
    stack) and trial.log, then end the attempt.

    Tune runs the trial function in a thread of its actor and waits for its results in the actor's main thread:
    `TrialHung` is raised there, so that Tune records a failure of the trial the usual way (retried up to
    max_failures) and stops the actor, which ends the hung thread with it. A process still alive `grace_s` later
    (or one whose hung thread is the main thread) is ended at once (`exit_process`, os._exit: the one way out of a
    step stuck in C code; Tune then sees its actor die)."""
    try:
        _record_hang(timeout, hung, run_dir, identity)
        main = threading.main_thread()
        if hung is not main and main.is_alive() and _raise_in(main, TrialHung, str(timeout)):
            time.sleep(grace_s)
            log.error("trial %04d: its worker process is still running %g s later; it is ended", identity["number"],
                      grace_s)
        for handler in logging.getLogger("tune_distill").handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        exit_process(1)


def _record_hang(timeout: TrialTimeout, hung: threading.Thread, run_dir: Path, identity: Mapping[str, Any]) -> None:
    """trial_error.json and trial.log: the timeout, and where the attempt hung."""
    frame = sys._current_frames().get(hung.ident or -1)
    trace = "".join(traceback.format_stack(frame)) if frame is not None else ""
    _write_error(run_dir, identity, timeout, f"hung here when the watchdog ended the attempt:\n{trace}")
    log.error("trial %04d failed: %s: %s", identity["number"], type(timeout).__name__, timeout)


def _raise_in(thread: threading.Thread, error: type[TrialHung], message: str) -> bool:
    """Raise `error(message)` in `thread` at its next Python instruction (CPython's PyThreadState_SetAsyncExc, which
    takes a class: the message is set on it first); whether the thread was found."""
    import ctypes

    error.message = message
    if thread.ident is None:
        return False
    return ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(error)) == 1


def make_trainable(context: TrialContext) -> Callable[[dict], None]:
    """The function trainable Tune runs for every trial (a closure over `context`)."""

    def tune_distill_trial(config: dict) -> None:
        run_trial(config, context)

    return tune_distill_trial


def trial_dirname(trial: Any) -> str:
    """trial_0003_<id>: trial folders sort by number."""
    return f"trial_{int(trial.config.get('number', 0)):04d}_{trial.trial_id}"


def trial_name(trial: Any) -> str:
    return f"trial_{int(trial.config.get('number', 0)):04d}"
