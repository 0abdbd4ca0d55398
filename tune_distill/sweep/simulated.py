"""A simulated trial: what a trial would report, at the time it would report it, without training.

What it does: `run_simulated(run, run_dir, settings, ...)` stands in for run.run_distillation inside a sweep's
trial (sweep/trial.py `_train`, when the sweep's `simulate.enabled` is set). It resolves the student's shape
and parameter counts from the trial's config (student.shape_parameters: the figures a built student would
give), the run's length (distill.max_steps, or num_train_epochs x ceil(simulate.train_windows / batch)) and its
evaluation steps (every distill.eval_every_steps and the last), then for each evaluation waits the time the
steps and the evaluation take on the simulated device (simulate/timing.py, divided by simulate.time_scale),
writes a checkpoint (`checkpoint/step.json`), and passes the surrogate's evaluation (simulate/surrogate.py,
drawn from the trial's seed) to `callback` as a real run does. Everything else of the trial is the real
thing: Tune's reports and checkpoints, the searcher, the scheduler, the records, the study, storage, the
timeout watchdog (`on_step` is called at least once a second). A trial resumed from its checkpoint goes on
from that step and reports what it would have. The run folder holds simulation.json (the settings, shape,
sizes, step and evaluation seconds), history.jsonl and metrics.json.

What it must not know: Ray (trial.py reports), searchers, schedulers, how the surrogate was fitted.

Example (CPU, a minute; the paper preset's 480 trials, simulated):
    tune-distill sweep --preset simulate --out sweeps/simulate --num-samples 40 --max-concurrent 20
"""

from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from tune_distill.config import RunConfig
from tune_distill.files import write_json
from tune_distill.simulate.surrogate import Surrogate, features
from tune_distill.simulate.timing import evaluation_seconds, step_seconds
from tune_distill.student import resolve_shape, shape_parameters

SIMULATION_FILE = "simulation.json"
TICK_S = 1.0  # the longest wait between two calls of on_step (the trial's deadline check)


@functools.lru_cache(maxsize=4)
def load_surrogate(path: str) -> Surrogate:
    """The surrogate file, read once per worker process."""
    return Surrogate.from_json(path)


@functools.lru_cache(maxsize=4)
def _teacher_config(path: str) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path)


def plan_run(run: RunConfig, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The simulated run's shape, sizes, length, evaluation steps and timings (real seconds after time_scale)."""
    teacher = _teacher_config(run.teacher.path)
    shape = resolve_shape(run.student, teacher)
    sizes = shape_parameters(shape, teacher)
    distill = run.distill
    per_epoch = max(1, math.ceil(int(settings["train_windows"]) / distill.train_batch_size))
    total = distill.max_steps or max(1, math.ceil(distill.num_train_epochs * per_epoch))
    every = distill.eval_every_steps
    points = [*range(every, total, every), total] if every > 0 else [total]
    device, scale = settings["device"], float(settings["time_scale"])
    step_s = step_seconds(device, shape.num_hidden_layers, sizes["non_embedding_parameters"],
                          distill.train_batch_size, run.data.max_seq_length)
    eval_s = evaluation_seconds(device, shape.num_hidden_layers, sizes["non_embedding_parameters"],
                                int(settings["val_windows"]), distill.eval_batch_size, run.data.max_seq_length)
    return {"shape": {"num_hidden_layers": shape.num_hidden_layers, "num_attention_heads": shape.num_attention_heads,
                      "intermediate_size": shape.intermediate_size, "hidden_size": shape.hidden_size},
            "sizes": sizes, "steps_per_epoch": per_epoch, "total_steps": total, "evaluations": points,
            "step_seconds": step_s, "evaluation_seconds": eval_s, "device": device, "time_scale": scale,
            "simulated_seconds": total * step_s + len(points) * eval_s,
            "features": features(run, teacher, total)}


def run_simulated(run: RunConfig, run_dir: str | Path, settings: Mapping[str, Any], *, resume_from: str | None = None,
                  callback: Callable[[Mapping[str, Any]], None] | None = None,
                  on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Report the surrogate's evaluations of this run at the simulated times; returns the final metrics."""
    run_dir = Path(run_dir)
    plan = plan_run(run, settings)
    write_json(run_dir / SIMULATION_FILE, {"settings": dict(settings), **plan})
    surrogate = load_surrogate(str(settings["surrogate"]))
    start = json.loads((Path(resume_from) / "step.json").read_text())["step"] if resume_from else 0
    scale, metrics, step = plan["time_scale"], {}, start
    for point in plan["evaluations"]:
        if point <= start:
            continue
        _wait((point - step) * plan["step_seconds"] / scale + plan["evaluation_seconds"] / scale, step, on_step)
        step = point
        values = surrogate.evaluations(plan["features"], [point / plan["total_steps"]], run.distill.seed,
                                       float(settings.get("noise", 0.0)))[0]
        metrics = {"step": point, "epoch": point / plan["steps_per_epoch"], **values, **plan["sizes"],
                   "simulated_seconds": point * plan["step_seconds"]
                   + (plan["evaluations"].index(point) + 1) * plan["evaluation_seconds"]}
        write_json(run_dir / "checkpoint" / "step.json", {"step": point})
        with open(run_dir / "history.jsonl", "a") as history:
            history.write(json.dumps(metrics) + "\n")
        if callback is not None:
            callback(metrics)
    if not metrics:  # resumed after its last evaluation: report it again
        final = plan["evaluations"][-1]
        metrics = {"step": final, "epoch": final / plan["steps_per_epoch"], **plan["sizes"],
                   **surrogate.evaluations(plan["features"], [1.0], run.distill.seed,
                                           float(settings.get("noise", 0.0)))[0],
                   "simulated_seconds": plan["simulated_seconds"]}
    write_json(run_dir / "metrics.json", metrics)
    return metrics


def _wait(seconds: float, step: int, on_step: Callable[[int], None] | None) -> None:
    """Sleep `seconds`, calling on_step(step) at least every TICK_S (the trial's deadline check)."""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(TICK_S, left))
        if on_step is not None:
            on_step(step)


SIZE_METRICS = ("parameters", "non_embedding_parameters")  # what shape_parameters gives; the rest is the surrogate's


def simulation_settings(simulate: Any, objectives: Any, constraints: Any, train_files: Any, val_file: str,
                        max_val_examples: int = 0, max_train_examples: int = 0) -> dict[str, Any]:
    """A simulated sweep's settings as its trials get them: the surrogate checked against what the sweep measures
    (every objective and constraint metric but the sizes must be one it gives), window counts filled in (0: one per
    question of the training / validation files). Errors name the setting."""
    from dataclasses import asdict

    from tune_distill.data import load_many
    from tune_distill.sweep.config import SweepConfigError

    path = Path(simulate.surrogate)
    try:
        surrogate = load_surrogate(str(path))
    except (OSError, ValueError) as error:
        raise SweepConfigError(f"simulate.surrogate: {error}") from None
    needed = {o.name for o in objectives} | {c.name for c in constraints}
    missing = sorted(needed - set(SIZE_METRICS) - set(surrogate.metrics))
    if missing:
        raise SweepConfigError(f"simulate.surrogate: {path} gives {list(surrogate.metrics)} (and sizes); the sweep "
                               f"also measures {missing}: fit one on sweeps that recorded them (tune-distill "
                               "simulate-fit) or change the objectives")
    settings = asdict(simulate)
    if not settings["train_windows"]:
        settings["train_windows"] = len(load_many(list(train_files), max_train_examples))
    if not settings["val_windows"]:
        settings["val_windows"] = len(load_many([val_file], max_val_examples))
    return settings


def simulated_cost(records: Any, settings: Mapping[str, Any], gpus_per_trial: float, wall_seconds: float
                   ) -> dict[str, Any]:
    """What the simulated sweep says a real one would cost: trials by status, GPU-hours (each trial's simulated
    seconds to its last report x its GPUs), wall-clock (real seconds x time_scale), steps and the steps early
    stopping saved."""
    scale = float(settings["time_scale"])
    seconds = [float(r["metrics"].get("simulated_seconds") or 0.0) for r in records]
    statuses: dict[str, int] = {}
    for record in records:
        statuses[record["status"]] = statuses.get(record["status"], 0) + 1
    trained = sum(int(r["metrics"].get("step") or 0) for r in records)
    saved = sum(int(r.get("steps_saved") or 0) for r in records)
    return {"device": settings["device"], "time_scale": scale, "trials": len(records), "status_counts": statuses,
            "gpu_hours": round(sum(seconds) * gpus_per_trial / 3600, 2),
            "trial_hours": round(sum(seconds) / 3600, 2),
            "wall_hours": round(wall_seconds * scale / 3600, 2), "wall_seconds_here": round(wall_seconds, 1),
            "steps_trained": trained, "steps_saved_by_early_stopping": saved,
            "steps_saved_pct": round(100 * saved / max(1, trained + saved), 1)}


def sweep_simulation(config: Any, fixed: Mapping[str, Any], constraints: Any) -> dict[str, Any] | None:
    """A sweep's simulation settings as its trials get them (`simulation_settings` on the sweep's base run config and
    fixed keys), or None for a real sweep."""
    import logging

    if not config.simulate.enabled:
        return None
    from tune_distill.config import apply_overrides

    run = apply_overrides(apply_overrides(RunConfig(), config.base), dict(fixed))
    logging.getLogger(__name__).info(
        "simulated sweep: trials report %s's curves at the pace of a %s, %g simulated seconds per second",
        config.simulate.surrogate, config.simulate.device, config.simulate.time_scale)
    return simulation_settings(config.simulate, config.objectives, constraints, run.data.train_files,
                               run.data.val_file, run.data.max_val_examples, run.data.max_train_examples)


def simulated_resources(config: Any) -> dict[str, int]:
    """The logical resources of a Ray started here for a simulated sweep: room for max_concurrent trials (none for a
    real sweep: Ray counts the machine's)."""
    if not config.simulate.enabled:
        return {}
    per_trial = config.resources_per_trial
    gpus = config.simulate.gpus or math.ceil(config.max_concurrent * per_trial.gpu)
    return {"num_cpus": max(1, math.ceil(config.max_concurrent * per_trial.cpu)), "num_gpus": gpus}
