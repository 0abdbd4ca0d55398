"""The sweep driver: prepare once, start or join Ray, run (or resume) the Tuner, write the sweep's records.

What it does: `prepare_sweep` checks everything that needs files (data, teacher, space, baseline,
scheduler against evaluation steps) and computes features and teacher logits once on the driver
(cached under data.cache_dir, which every trial reads); `connect_ray` joins a cluster (RAY_ADDRESS)
or starts a local Ray with its dashboard; `run_sweep` runs a fresh sweep or resumes an interrupted
one (finished trials kept, unfinished ones resumed from their checkpoints, the searcher's state
restored), logs a progress line per finished trial, and writes `trials.jsonl` (one line per trial)
and `sweep.json` (the resolved sweep and a summary) in the output folder.

Output folder: `sweep.json`, `trials.jsonl`, `cache/` (features, teacher logits), `scheduler_state.json`
(pareto_sh) and, unless `storage_path` points elsewhere, the Tune experiment `tune/` whose trial
folders `trial_NNNN_<id>/` hold Tune's checkpoints and the trial's run folder `run/`. A remote
`storage_path` (see sweep/storage.py) holds the experiment and copies of the sweep's files.

What it must not know: how a run trains or evaluates (run.py), how searchers model anything
(tune_distill.search), how results are reported or plotted (report.py reads `trials.jsonl`).

Example (CPU, a few minutes, from the repository root; the smoke preset reads data/squad2-sample and
.cache/smoke-teacher, or give --data DIR --teacher DIR):
    tune-distill sweep --preset smoke --out sweeps/smoke --num-samples 4
    tune-distill sweep --out sweeps/smoke --resume      # continue it after an interruption
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from tune_distill import storage as storage_io
from tune_distill.config import RunConfig, apply_overrides
from tune_distill.files import write_json
from tune_distill.search import SearchSpace, make_searcher
from tune_distill.sweep.callbacks import ProgressLines
from tune_distill.sweep.config import (
    SweepConfig,
    SweepConfigError,
    resolve_constraints,
    sweep_config_from_dict,
    sweep_config_to_dict,
)
from tune_distill.sweep.plan import absolute_base, baseline_overrides, load_sweep_space, teacher_context
from tune_distill.sweep.records import _write_trials, collect_trials, repair_missing_checkpoints
from tune_distill.sweep.schedulers import make_scheduler, pareto_rungs
from tune_distill.sweep.searcher import SweepSearcher
from tune_distill.sweep.storage import (
    SCHEDULER_STATE_FILE,
    SWEEP_FILE,
    TRIALS_FILE,
    fetch_sweep,
    sweep_storage,
    upload_sweep_files,
)
from tune_distill.sweep.trial import TrialContext, make_trainable, trial_dirname, trial_name

log = logging.getLogger(__name__)

# Environment variables a joined cluster's workers need to behave like the driver (offline hub, quiet tokenizers).
PROPAGATED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "TOKENIZERS_PARALLELISM")


def connect_ray(address: str | None = None, num_cpus: int | None = None,
                extra_env: Sequence[str] = ()) -> tuple[bool, str | None]:
    """Join the cluster at `address` (or RAY_ADDRESS), else start a local Ray with its dashboard on 127.0.0.1.

    A joined cluster's workers get PROPAGATED_ENV and `extra_env` (those set here) through the job's
    runtime_env; a local Ray's workers inherit this process's environment. Returns (whether we started
    Ray here and must shut it down, the dashboard URL if any). An already initialised Ray (e.g. in
    tests) is used as it is.
    """
    import ray

    if ray.is_initialized():
        return False, None
    address = address or os.environ.get("RAY_ADDRESS") or None
    env_vars = {name: os.environ[name] for name in (*PROPAGATED_ENV, *extra_env) if name in os.environ}
    runtime_env = {"env_vars": env_vars} if env_vars else None
    if address:
        try:
            context = ray.init(address=address, runtime_env=runtime_env)
        except ConnectionError as error:
            raise ConnectionError(
                f"{error}. If the cluster uses token authentication (the default for clusters Ray starts), set "
                "RAY_AUTH_MODE=token and provide its token (~/.ray/auth_token or RAY_AUTH_TOKEN)"
            ) from error
        log.info("joined the Ray cluster at %s", address)
    else:
        # address="local": a new instance here, never a cluster someone else `ray start`ed on this machine
        try:
            context = ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1")
        except Exception as error:  # missing dashboard packages, port trouble, ...
            log.warning("the Ray dashboard could not start (%s: %s); running without it", type(error).__name__, error)
            ray.shutdown()
            context = ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
    url = getattr(context, "dashboard_url", None) or None
    if url:
        url = url if "://" in url else f"http://{url}"
        log.info("Ray dashboard: %s", url)
        print(f"Ray dashboard: {url}", file=sys.stderr, flush=True)
    return not address, url


def no_answer_score(examples: Sequence[Any]) -> float:
    """Exact (= F1) of answering "no answer" everywhere: 100 x the share of unanswerable questions."""
    if not examples:
        raise SweepConfigError("data.val_file: no validation questions")
    return 100.0 * sum(bool(example.is_impossible) for example in examples) / len(examples)


@dataclass
class _Prepared:
    config: SweepConfig  # base with absolute paths
    space: SearchSpace
    context: dict
    constraints: tuple
    baseline: dict | None
    no_answer: float


def prepare_sweep(config: SweepConfig, out_dir: Path) -> _Prepared:
    """Check everything, then tokenise and compute teacher logits once (cached under data.cache_dir)."""
    from transformers import AutoConfig

    from tune_distill.run import prepare_inputs
    from tune_distill.runtime import resolve_device

    base = absolute_base(config.base, out_dir)
    config = dataclasses.replace(config, base=base)
    run_config = apply_overrides(RunConfig(), base)
    teacher_path = run_config.teacher.path
    if not Path(teacher_path).exists() and teacher_path.startswith("/"):
        raise SweepConfigError(f"base.teacher.path: {teacher_path} does not exist (use --teacher DIR)")
    for path in [*run_config.data.train_files, run_config.data.val_file]:
        if not path.startswith("hub:") and not Path(path).is_file():
            raise SweepConfigError(f"base.data: {path} does not exist (use --data DIR)")
    try:
        teacher_config = AutoConfig.from_pretrained(teacher_path)
    except (OSError, ValueError) as error:
        raise SweepConfigError(f"base.teacher.path: cannot read the teacher's config from {teacher_path}: "
                               f"{error}") from None
    context = teacher_context(teacher_config)
    space = load_sweep_space(config, context)
    baseline = baseline_overrides(space, context, config.baseline_settings) if config.baseline else None
    if config.scheduler.name != "fifo":
        shared = apply_overrides(run_config, dict(space.fixed))
        if shared.distill.eval_every_steps <= 0 and "distill.eval_every_steps" not in space.names:
            raise SweepConfigError(f"scheduler {config.scheduler.name}: trials must evaluate during training; set "
                                   "base distill.eval_every_steps (the rungs should be multiples of it)")
        every = shared.distill.eval_every_steps
        if every > 0 and config.scheduler.name == "pareto_sh":
            odd = [rung for rung in pareto_rungs(config.scheduler) if rung % every]
            if odd:
                log.warning("pareto_sh rungs %s are not multiples of distill.eval_every_steps=%d: decisions happen at "
                            "the first evaluation past them", odd, every)

    varying = sorted(key for key in [*space.names, *space.derived] if key.startswith(("data.", "teacher.")))
    if varying:
        log.warning("the space varies %s: trials build their own caches (written atomically) on first use", varying)
    shared = apply_overrides(run_config, dict(space.fixed))
    alpha_varies = "distill.alpha_ce" in space.names or "distill.alpha_ce" in space.derived
    needs_logits = alpha_varies or shared.distill.alpha_ce > 0

    device = resolve_device(shared.distill.device)
    began = time.perf_counter()
    log.info("preparing features%s once on the driver (%s) under %s", " and teacher logits" if needs_logits else "",
             device, shared.data.cache_dir)
    inputs = prepare_inputs(shared, device, teacher_logits_needed=needs_logits)
    log.info("inputs ready in %.1fs: %d train windows, %d validation questions", time.perf_counter() - began,
             len(inputs.train_features), len(inputs.val_features.examples))
    no_answer = no_answer_score(inputs.val_features.examples)
    constraints = resolve_constraints(config.constraints, no_answer)
    log.info("no-answer score of the validation split: %.2f; constraints: %s", no_answer,
             ", ".join(f"{c.name} {c.op} {c.bound:.4g}" for c in constraints) or "none")
    return _Prepared(config, space, context, constraints, baseline, no_answer)


def run_sweep(sweep_config: SweepConfig | None, out_dir: str | Path, *, resume: bool = False,
              ray_address: str | None = None) -> list[dict[str, Any]]:
    """Run (or, with resume=True, continue) a sweep; returns one dict per trial and writes trials.jsonl.

    A fresh sweep needs an output folder without a sweep in it. Resuming reads the sweep's own
    `sweep.json` (the `sweep_config` argument may be None; a different one is ignored with a warning),
    keeps finished trials, resumes unfinished ones from their checkpoints, retries errored ones from
    theirs, and restores the searcher's state; every trial appears once in trials.jsonl.
    """
    from ray import tune

    # num_to_keep=1 makes Tune snapshot the experiment at every checkpoint (what resume needs); not a problem.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    out_dir = Path(out_dir).expanduser().resolve()
    saved_path = out_dir / SWEEP_FILE
    if resume:
        if not saved_path.is_file() and sweep_config is not None and storage_io.is_remote(sweep_config.storage_path):
            fetch_sweep(out_dir, sweep_config.storage_path, sweep_config.storage_endpoint)  # the local folder is gone
        if not saved_path.is_file():
            raise SweepConfigError(f"--resume: {out_dir} holds no sweep ({SWEEP_FILE} missing)")
        saved = json.loads(saved_path.read_text())
        stored = sweep_config_from_dict(saved["config"], str(saved_path))
        if sweep_config is not None and sweep_config_to_dict(sweep_config) != sweep_config_to_dict(stored):
            log.warning("resuming with the sweep's saved configuration (%s); the one given now is ignored", saved_path)
        sweep_config = stored
    else:
        if sweep_config is None:
            raise SweepConfigError("run_sweep: a sweep config is needed (or resume=True)")
        if saved_path.exists():
            raise SweepConfigError(f"{out_dir} already holds a sweep; resume it (--resume) or choose another --out")
    # a remote storage_path is checked before the features and teacher logits are computed
    location = sweep_storage(sweep_config, out_dir, fresh=not resume)
    out_dir.mkdir(parents=True, exist_ok=True)

    prepared = prepare_sweep(sweep_config, out_dir)
    storage, experiment_path, local_experiment = location.tune_path, location.experiment, location.local_experiment
    config = dataclasses.replace(prepared.config, storage_path=location.uri, storage_endpoint=location.endpoint)
    started_ray, dashboard = connect_ray(ray_address, extra_env=storage_io.WORKER_ENV if location.filesystem else ())
    try:
        if not resume:
            write_json(saved_path, {
                "config": sweep_config_to_dict(config),
                "no_answer": prepared.no_answer,
                # resolved, in the form report.py reads: [{name, direction}], [{name, op, bound}]
                "objectives": [dataclasses.asdict(o) for o in config.objectives],
                "constraints": [dataclasses.asdict(c) for c in prepared.constraints],
                "teacher": prepared.context,
                "baseline": prepared.baseline,
                "experiment_path": location.uri_of(experiment_path),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            })
            upload_sweep_files(location, out_dir, (SWEEP_FILE,))  # what a resume from the bucket alone needs
        resources = {"cpu": config.resources_per_trial.cpu, "gpu": config.resources_per_trial.gpu}
        context = TrialContext(base=config.base, experiment_dir=local_experiment, cpus=config.resources_per_trial.cpu,
                               measure_latency=config.measure_latency)
        trainable = tune.with_resources(make_trainable(context), resources)
        began = time.perf_counter()
        if resume:
            if not tune.Tuner.can_restore(experiment_path, storage_filesystem=location.filesystem):
                raise SweepConfigError(f"--resume: no Tune experiment to restore at {location.uri_of(experiment_path)}")
            log.info("resuming the sweep in %s", location.uri_of(experiment_path))
            repair_missing_checkpoints(experiment_path, location.filesystem)
            tuner = tune.Tuner.restore(experiment_path, trainable, resume_unfinished=True, resume_errored=True,
                                       storage_filesystem=location.filesystem)
        else:
            inner = make_searcher(config.searcher.name, prepared.space, config.objectives, prepared.constraints,
                                  seed=config.searcher.seed, **config.searcher.options)
            searcher = SweepSearcher(inner, prepared.space, config.objectives, prepared.constraints,
                                     config.num_samples, prepared.baseline)
            scheduler = make_scheduler(config.scheduler, config.objectives, str(out_dir / SCHEDULER_STATE_FILE))
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=config.num_samples,
                                            max_concurrent_trials=config.max_concurrent, reuse_actors=True,
                                            trial_name_creator=trial_name, trial_dirname_creator=trial_dirname),
                run_config=tune.RunConfig(
                    name=config.name, storage_path=storage, storage_filesystem=location.filesystem,
                    failure_config=tune.FailureConfig(max_failures=config.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    sync_config=tune.SyncConfig(sync_artifacts=local_experiment is None),
                    callbacks=[ProgressLines(config.objectives, prepared.constraints, config.num_samples)],
                    verbose=0,
                ),
            )
        tuner.fit()
        records = collect_trials(experiment_path, location.filesystem)
        for record in records:
            record["checkpoint"] = location.uri_of(record["checkpoint"]) if record["checkpoint"] else None
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    _write_trials(out_dir, records)
    summary = _summary(records, config, time.perf_counter() - began)
    saved = json.loads(saved_path.read_text())
    saved.setdefault("runs", []).append({"resumed": resume, "dashboard": dashboard, **summary})
    saved["summary"] = summary
    write_json(saved_path, saved)
    upload_sweep_files(location, out_dir)
    counts = ", ".join(f"{count} {status}" for status, count in summary["status_counts"].items())
    if summary["interrupted"]:
        log.warning("sweep interrupted with %d of %d trials finished (%s); continue it with --resume --out %s",
                    summary["finished"], config.num_samples, counts, out_dir)
    else:
        log.info("sweep done: %s -> %s", counts, out_dir / TRIALS_FILE)
    return records


def _summary(records: Sequence[Mapping[str, Any]], config: SweepConfig, seconds: float) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for record in records:
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    finished = sum(record["status"] != "unfinished" for record in records)
    return {
        "trials": len(records),
        "finished": finished,
        # trials left unfinished, or fewer created than planned (the search package's searchers never run dry)
        "interrupted": bool(counts.get("unfinished")) or len(records) < config.num_samples,
        "status_counts": counts,
        "steps_saved": sum(record["steps_saved"] or 0 for record in records),
        "steps_trained": sum(int(record["metrics"].get("step") or 0) for record in records),
        "wall_seconds": round(seconds, 1),
        "ended_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
