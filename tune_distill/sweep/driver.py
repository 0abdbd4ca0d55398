"""The sweep driver: prepare once, start or join Ray, run (or resume) the Tuner, write the sweep's records.

What it does: `plan_sweep` checks everything that needs files (data, teacher, space, baseline,
scheduler against evaluation steps) and `build_search` makes the searcher and scheduler, both before
anything is written; `prepare_sweep_inputs` computes features and teacher logits once on the driver
(cached under data.cache_dir, which every trial reads); `connect_ray` (sweep/connect.py) joins a cluster
(RAY_ADDRESS) or starts a local Ray with its dashboard; `run_sweep` runs a fresh sweep or resumes an interrupted
one (finished trials kept, unfinished ones resumed from their checkpoints, the searcher's state
restored), logs a progress line per finished trial, and writes `trials.jsonl` (one line per trial)
and `sweep.json` (the resolved sweep and a summary) in the output folder. A resumed folder is verified first
(sweep/manifest.py: its signed manifest, before anything in it is unpickled; `trust_folder` resumes one that does
not verify), and every sweep keeps the folder signed as it writes it.

Output folder: `sweep.json`, `trials.jsonl`, `study.journal` (the Optuna study, written as trials finish by
callbacks.StudyRecorder; `make dashboard` serves it), `space.yaml` (the space, copied), `cache/` (features, teacher
logits), `scheduler_state.json` (pareto_sh), `.sweep.claim` (while a sweep runs in it), `manifest.json` (the signed
digests of the files a resume trusts: sweep/manifest.py, docs/signing.md) and, unless
`storage_path` points elsewhere, the Tune experiment `tune/` whose trial folders `trial_NNNN_<id>/` hold
Tune's checkpoints and the trial's run folder `run/`. A remote
`storage_path` (see sweep/storage.py) holds the experiment and copies of the sweep's files.

What it must not know: how a run trains or evaluates (run.py), how searchers model anything
(tune_distill.search), how results are reported or plotted (report.py reads `trials.jsonl`).

Example (CPU, a few minutes, from the repository root; the smoke preset reads data/squad2-sample and
.cache/smoke-teacher, or give --data DIR --teacher DIR):
    tune-distill sweep --preset smoke --out sweeps/smoke --num-samples 4
    tune-distill sweep --out sweeps/smoke --resume      # continue it after an interruption
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from tune_distill import remote
from tune_distill.config import RunConfig, apply_overrides
from tune_distill.files import read_json_object, write_json
from tune_distill.private_api import (
    PrivateApiChanged,
    tuner_scheduler,
)
from tune_distill.records import FAMILY_KIND, TRIALS_FILE, family_records, write_trials
from tune_distill.search import SearchSpace, make_searcher
from tune_distill.study import STUDY_FILE, dashboard_command, space_distributions, sync_study
from tune_distill.sweep.callbacks import ProgressLines, StudyRecorder
from tune_distill.sweep.config import (
    SweepConfig,
    SweepConfigError,
    resolve_constraints,
    sweep_config_from_dict,
    sweep_config_to_dict,
)
from tune_distill.sweep.connect import connect_ray
from tune_distill.sweep.diskspace import DiskFull, SpaceGuard, guard_sweep, no_space, no_space_message
from tune_distill.sweep.experiment import collect_trials, repair_missing_checkpoints, settle_snapshot, tuner_callbacks
from tune_distill.sweep.held_apart import Split, plan_split, split_record, write_split
from tune_distill.sweep.manifest import FolderSigner, fresh_signer, open_for_resume, watch
from tune_distill.sweep.plan import (
    absolute_base,
    baseline_overrides,
    load_sweep_space,
    no_answer_score,
    teacher_context,
)
from tune_distill.sweep.pruning import CheckpointPruner
from tune_distill.sweep.schedulers import make_scheduler, pareto_rungs, read_scheduler_state
from tune_distill.sweep.searcher import SUGGESTIONS_FILE, SweepSearcher
from tune_distill.sweep.simulated import simulated_cost, simulated_resources, sweep_simulation
from tune_distill.sweep.storage import (
    SCHEDULER_STATE_FILE,
    SPACE_FILE,
    SWEEP_FILE,
    SweepStorage,
    claim_folder,
    fetch_sweep,
    relocate_saved,
    sweep_storage,
    upload_sweep_files,
)
from tune_distill.sweep.trial import TrialContext, make_trainable, trial_dirname, trial_name

log = logging.getLogger(__name__)

@dataclass
class _Prepared:
    config: SweepConfig  # base with absolute paths
    space: SearchSpace
    context: dict
    constraints: tuple
    baseline: dict | None
    no_answer: float
    held_apart: Split | None = None  # validation articles kept apart (sweep/held_apart.py)


def prepare_sweep(config: SweepConfig, out_dir: Path) -> _Prepared:
    """Check everything, then tokenise and compute teacher logits once (cached under data.cache_dir)."""
    prepared = plan_sweep(config, out_dir)
    write_split(prepared.held_apart, out_dir)
    prepare_sweep_inputs(prepared)
    return prepared


def plan_sweep(config: SweepConfig, out_dir: Path) -> _Prepared:
    """Check everything that needs files (data, teacher, space, baseline, scheduler against evaluation steps) and
    resolve the constraints; reads the validation questions, writes nothing."""
    from transformers import AutoConfig

    from tune_distill.data import load_many

    base = absolute_base(config.base, out_dir)
    config = dataclasses.replace(config, base=base, space=str(Path(config.space).expanduser().resolve()))
    if config.simulate.enabled:  # kept absolute in sweep.json, as the space is
        config = dataclasses.replace(config, simulate=dataclasses.replace(
            config.simulate, surrogate=str(Path(config.simulate.surrogate).expanduser().resolve())))
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
        if shared.distill.eval_every_steps <= 0 and "distill.eval_every_steps" not in {*space.names, *space.derived}:
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
    config, held = plan_split(config, space, out_dir)  # every trial validates on the select file (held_apart.py)
    shared = apply_overrides(run_config, dict(space.fixed))
    no_answer = no_answer_score(held.examples if held else
                                load_many([shared.data.val_file], shared.data.max_val_examples))
    constraints = resolve_constraints(config.constraints, no_answer)
    log.info("no-answer score of the validation split: %.2f; constraints: %s", no_answer,
             ", ".join(f"{c.name} {c.op} {c.bound:.4g}" for c in constraints) or "none")
    return _Prepared(config, space, context, constraints, baseline, no_answer, held)


def prepare_sweep_inputs(prepared: _Prepared) -> None:
    """Tokenise and compute the teacher's logits once on the driver (cached under data.cache_dir)."""
    from tune_distill.run import prepare_inputs
    from tune_distill.runtime import resolve_device

    space = prepared.space
    shared = apply_overrides(apply_overrides(RunConfig(), prepared.config.base), dict(space.fixed))
    alpha_varies = "distill.alpha_ce" in space.names or "distill.alpha_ce" in space.derived
    needs_logits = alpha_varies or shared.distill.alpha_ce > 0

    device = resolve_device(shared.distill.device)
    began = time.perf_counter()
    log.info("preparing features%s once on the driver (%s) under %s", " and teacher logits" if needs_logits else "",
             device, shared.data.cache_dir)
    inputs = prepare_inputs(shared, device, teacher_logits_needed=needs_logits)
    log.info("inputs ready in %.1fs: %d train windows, %d validation questions", time.perf_counter() - began,
             len(inputs.train_features), len(inputs.val_features.examples))


def build_search(config: SweepConfig, prepared: _Prepared, out_dir: Path) -> tuple[Any, Any]:
    """The searcher (wrapped for Tune) and the scheduler of a fresh sweep: built before anything is written, so
    a bad option leaves no half-made sweep behind."""
    inner = make_searcher(config.searcher.name, prepared.space, config.objectives, prepared.constraints,
                          seed=config.searcher.seed, **config.searcher.options)
    searcher = SweepSearcher(inner, prepared.space, config.objectives, prepared.constraints, config.num_samples,
                             prepared.baseline, suggestions_log=str(out_dir / SUGGESTIONS_FILE))
    return searcher, make_scheduler(config.scheduler, config.objectives, str(out_dir / SCHEDULER_STATE_FILE))


def run_sweep(sweep_config: SweepConfig | None, out_dir: str | Path, *, resume: bool = False,
              ray_address: str | None = None, trust_folder: bool = False) -> list[dict[str, Any]]:
    """Run (or, with resume=True, continue) a sweep; returns one dict per trial and writes trials.jsonl.

    A fresh sweep needs an output folder without a sweep in it. Resuming reads the sweep's own
    `sweep.json` (the `sweep_config` argument may be None; a different one is ignored with a warning),
    keeps finished trials, resumes unfinished ones from their checkpoints, retries errored ones from
    theirs, and restores the searcher's state; every trial appears once in trials.jsonl. The folder is
    claimed for the whole call (storage.claim_folder: a second sweep on it is refused); a sweep folder
    copied or moved since it started resumes where it is now, from any working directory. A sweep
    that fails its checks before it starts leaves no folder behind. A sweep whose disk fills up stops resumably
    (sweep/diskspace.py: its records written, the experiment's last complete snapshot kept) and raises DiskFull,
    one line naming the folder and about how much space to free; once it is freed, resume=True finishes it.

    A folder to resume must prove that this user's sweeps wrote it (its signed manifest, sweep/manifest.py):
    otherwise it is refused (signing.UntrustedFolder, one line naming the file) before anything in it is
    unpickled, unless `trust_folder` (`--trust-folder`), which resumes it anyway, with a warning: its pickles run
    any code an author put in them, with this user's credentials.
    """
    out_dir = Path(out_dir).expanduser().resolve()
    existed = out_dir.exists()
    claim = claim_folder(out_dir)
    try:
        return _run_sweep(sweep_config, out_dir, resume=resume, ray_address=ray_address, trust_folder=trust_folder)
    except Exception as error:  # any write of ours (each atomic) that failed for lack of space ends in one line
        if isinstance(error, DiskFull) or not no_space(error):
            raise
        raise DiskFull(no_space_message(out_dir)) from None
    finally:
        claim.release()
        if not existed and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()


def _run_sweep(sweep_config: SweepConfig | None, out_dir: Path, *, resume: bool,
               ray_address: str | None, trust_folder: bool = False) -> list[dict[str, Any]]:
    """Prepare (config, storage, checks, inputs), start a fresh Tuner or restore one, run it, finish the records."""
    # sweeps started before issue 22 keep num_to_keep=1, which snapshots the experiment at every checkpoint
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    out_dir = Path(out_dir).expanduser().resolve()
    sweep_config, signer = (_saved_config(sweep_config, out_dir, trust_folder) if resume else
                            (_new_config(sweep_config, out_dir), fresh_signer(out_dir)))
    # a remote storage_path is checked before the features and teacher logits are computed
    location = sweep_storage(sweep_config, out_dir, fresh=not resume)
    if resume and location.local_experiment:
        settle_snapshot(location.local_experiment)  # a snapshot the disk filling up cut: its complete one back
    signer.use_storage(location)  # a resumed experiment is verified here, before anything unpickles it
    out_dir.mkdir(parents=True, exist_ok=True)

    prepared = plan_sweep(sweep_config, out_dir)
    config = dataclasses.replace(prepared.config, storage_path=location.uri, storage_endpoint=location.endpoint)
    search = None if resume else build_search(config, prepared, out_dir)  # before anything is written
    write_split(prepared.held_apart, out_dir)
    simulation = sweep_simulation(config, prepared.space.fixed, prepared.constraints)
    if simulation is None:
        prepare_sweep_inputs(prepared)
    forwarded = (*remote.WORKER_ENV, *(remote.CREDENTIAL_ENV if config.forward_aws_credentials else ()))
    started_ray, dashboard = connect_ray(ray_address, extra_env=forwarded if location.filesystem else (),
                                         **simulated_resources(config))
    try:
        if not resume:
            config = _start_record(config, prepared, location, out_dir, signer)
        trainable = _trainable(config, location, simulation)
        distributions = space_distributions(prepared.space)
        recorder = StudyRecorder(str(out_dir / STUDY_FILE), out_dir.name, distributions, config.objectives,
                                 prepared.constraints)
        print(f"Optuna dashboard (the search, live): make dashboard SWEEP={out_dir}\n"
              f"  or: {dashboard_command(out_dir / STUDY_FILE)}", file=sys.stderr, flush=True)
        began = time.perf_counter()
        # a resumed folder's legacy pickles may be read: it verified (or is trusted)
        with signer.unpickling(), _snapshot_period(config.snapshot_period_s):
            tuner = (_restored_tuner(trainable, recorder, location, out_dir) if resume else
                     _fresh_tuner(trainable, recorder, search, config, prepared, location))
            watch(tuner, signer, fresh=not resume)  # signed at every experiment checkpoint
            guard = SpaceGuard(str(out_dir), location.local_experiment, config.num_samples)
            guard_sweep(tuner, guard)  # stops the sweep, resumably, before the disk is full
            _fit(tuner, guard, location)
        records = family_records(collect_trials(location.experiment, location.filesystem))  # members as rows
        for record in records:
            record["checkpoint"] = location.uri_of(record["checkpoint"]) if record["checkpoint"] else None
    finally:
        signer.close()
        if started_ray:
            import ray

            ray.shutdown()
    _finish(records, config, location, out_dir, distributions, began=began, resume=resume, dashboard=dashboard,
            signer=signer, simulation=simulation)
    if guard.stopped:
        raise DiskFull(guard.message())
    return records


@contextlib.contextmanager
def _snapshot_period(seconds: float) -> Iterator[None]:
    """Tune's experiment snapshot period for this run (TUNE_GLOBAL_CHECKPOINT_S, read when the run starts: Tune has
    no setting for it); 0 leaves Tune's own. The environment is put back afterwards."""
    before = os.environ.get("TUNE_GLOBAL_CHECKPOINT_S")
    if seconds:
        os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = f"{seconds:g}"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TUNE_GLOBAL_CHECKPOINT_S", None)
        else:
            os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = before


def _fit(tuner: Any, guard: SpaceGuard, location: SweepStorage) -> None:
    """Tuner.fit, then the experiment's snapshot settled (experiment.settle_snapshot: where the disk filling up cut
    the final one, the last complete one is put back). After the guard stopped the sweep for lack of space, an
    error Ray raises (reading a trial's error file the full disk left empty) is the full disk's: the records are
    written from the experiment all the same."""
    try:
        tuner.fit()
    except Exception as failure:  # noqa: BLE001 - re-raised unless the guard had stopped the sweep
        if not guard.stopped:
            raise
        log.info("after the stop for lack of space, Tune raised %s: %s", type(failure).__name__, str(failure)[:200])
    if location.local_experiment:
        settle_snapshot(location.local_experiment)


def _saved_config(sweep_config: SweepConfig | None, out_dir: Path,
                  trust_folder: bool = False) -> tuple[SweepConfig, FolderSigner]:
    """A resumed sweep's own configuration, from its sweep.json (fetched from a remote storage_path when the local
    folder is gone; rewritten for the folder it is in now); one given now that differs is ignored with a warning.
    The folder's manifest and sweep.json, space.yaml are verified before sweep.json is used (manifest.py); with
    the signer that goes on signing the folder, which writes the relocated sweep.json once the experiment verified
    too (FolderSigner.use_storage)."""
    saved_path = out_dir / SWEEP_FILE
    if not saved_path.is_file() and sweep_config is not None and remote.is_remote(sweep_config.storage_path):
        fetch_sweep(out_dir, sweep_config.storage_path, sweep_config.storage_endpoint)  # the local folder is gone
    if not saved_path.is_file():
        raise SweepConfigError(f"--resume: {out_dir} holds no sweep ({SWEEP_FILE} missing)")
    saved = read_json_object(saved_path, "the sweep's record", SweepConfigError)  # data: nothing unpickled
    signer = open_for_resume(out_dir, trust_folder)
    saved = relocate_saved(saved, out_dir)

    def write_relocated() -> None:  # a folder refused is left as it was
        write_json(saved_path, saved)
        signer.sign_local((SWEEP_FILE,))

    signer.when_verified.append(write_relocated)
    stored = sweep_config_from_dict(saved["config"], str(saved_path))
    if sweep_config is not None and sweep_config_to_dict(sweep_config) != sweep_config_to_dict(stored):
        log.warning("resuming with the sweep's saved configuration (%s); the one given now is ignored", saved_path)
    return stored, signer


def _new_config(sweep_config: SweepConfig | None, out_dir: Path) -> SweepConfig:
    """A fresh sweep's configuration: it must be given, and the folder must not hold a sweep already."""
    if sweep_config is None:
        raise SweepConfigError("run_sweep: a sweep config is needed (or resume=True)")
    if (out_dir / SWEEP_FILE).exists():
        raise SweepConfigError(f"{out_dir} already holds a sweep; resume it (--resume) or choose another --out")
    return sweep_config


def _start_record(config: SweepConfig, prepared: _Prepared, location: SweepStorage, out_dir: Path,
                  signer: FolderSigner) -> SweepConfig:
    """A fresh sweep's space copied into its folder and its sweep.json written and signed (also to a remote
    storage_path: what a resume from the bucket needs); returns the config pointing at the copied space."""
    if Path(config.space) != out_dir / SPACE_FILE:  # the sweep keeps its space: it resumes from anywhere
        shutil.copyfile(config.space, out_dir / SPACE_FILE)
        config = dataclasses.replace(config, space=str(out_dir / SPACE_FILE))
    write_json(out_dir / SWEEP_FILE, {
        "config": sweep_config_to_dict(config),
        "out_dir": str(out_dir),
        "no_answer": prepared.no_answer,
        # resolved, in the form report.py reads: [{name, direction}], [{name, op, bound}]
        "objectives": [dataclasses.asdict(o) for o in config.objectives],
        "constraints": [dataclasses.asdict(c) for c in prepared.constraints],
        "teacher": prepared.context,
        "baseline": prepared.baseline,
        **split_record(prepared.held_apart),
        "experiment_path": location.uri_of(location.experiment),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    signer.sign_local((SWEEP_FILE, SPACE_FILE))
    signer.write()  # (uploaded next to a remote experiment)
    upload_sweep_files(location, out_dir, (SWEEP_FILE, SPACE_FILE))  # what a resume from the bucket needs
    return config


def _trainable(config: SweepConfig, location: SweepStorage, simulation: dict[str, Any] | None = None) -> Any:
    """What Tune runs for every trial (sweep/trial.py), with the sweep's resources per trial."""
    from ray import tune

    resources = {"cpu": config.resources_per_trial.cpu, "gpu": config.resources_per_trial.gpu}
    context = TrialContext(base=config.base, experiment_dir=location.local_experiment,
                           cpus=config.resources_per_trial.cpu, measure_latency=config.measure_latency,
                           timeout_s=config.trial_timeout_s, simulate=simulation)
    return tune.with_resources(make_trainable(context), resources)


def _restored_tuner(trainable: Any, recorder: StudyRecorder, location: SweepStorage, out_dir: Path) -> Any:
    """The interrupted sweep's Tuner, restored (unfinished and errored trials resumed), its scheduler and study
    callback pointed at this folder."""
    from ray import tune

    experiment_path = location.experiment
    if (out_dir / SCHEDULER_STATE_FILE).is_file():
        read_scheduler_state(out_dir / SCHEDULER_STATE_FILE)  # a damaged one: one line, before any trial runs
    if not tune.Tuner.can_restore(experiment_path, storage_filesystem=location.filesystem):
        raise SweepConfigError(f"--resume: no Tune experiment to restore at {location.uri_of(experiment_path)}")
    log.info("resuming the sweep in %s", location.uri_of(experiment_path))
    repair_missing_checkpoints(experiment_path, location.filesystem)
    tuner = tune.Tuner.restore(experiment_path, trainable, resume_unfinished=True, resume_errored=True,
                               storage_filesystem=location.filesystem)
    _scheduler_state_here(tuner, out_dir)
    _record_into(tuner, recorder)
    return tuner


def _fresh_tuner(trainable: Any, recorder: StudyRecorder, search: tuple[Any, Any], config: SweepConfig,
                 prepared: _Prepared, location: SweepStorage) -> Any:
    """A new Tuner: the sweep's searcher and scheduler, trial names, failures retried, one checkpoint kept."""
    from ray import tune

    searcher, scheduler = search
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=config.num_samples,
                                    max_concurrent_trials=config.max_concurrent, reuse_actors=True,
                                    trial_name_creator=trial_name, trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=config.name, storage_path=location.tune_path, storage_filesystem=location.filesystem,
            failure_config=tune.FailureConfig(max_failures=config.max_failures),
            # every checkpoint kept while a trial runs (num_to_keep would force an experiment snapshot and sync at
            # every trial checkpoint); the superseded ones of ended trials are removed (sweep/pruning.py)
            checkpoint_config=tune.CheckpointConfig(),
            sync_config=tune.SyncConfig(sync_artifacts=location.local_experiment is None),
            callbacks=[ProgressLines(config.objectives, prepared.constraints, config.num_samples), recorder,
                       CheckpointPruner()],
            verbose=0,
        ),
    )


def _finish(records: list[dict[str, Any]], config: SweepConfig, location: SweepStorage, out_dir: Path,
            distributions: Any, *, began: float, resume: bool, dashboard: Any, signer: FolderSigner,
            simulation: Mapping[str, Any] | None = None) -> None:
    """trials.jsonl, the study brought up to date, this run's summary in sweep.json (uploaded with the sweep's
    files), and a line saying whether the sweep is done or how to continue it."""
    write_trials(out_dir, records)
    try:  # trials the callback missed (a sweep older than the study); never lose a finished sweep over it
        sync_study(out_dir, records, distributions)
    except Exception as failure:  # noqa: BLE001 - the study is for watching; trials.jsonl is the record
        log.warning("the Optuna study %s could not be brought up to date (%s: %s); tune-distill report --sweep %s "
                    "retries", out_dir / STUDY_FILE, type(failure).__name__, failure, out_dir)
    summary = _summary(records, config, time.perf_counter() - began)
    if simulation is not None:
        summary["simulated"] = simulated_cost(records, simulation, config.resources_per_trial.gpu,
                                              summary["wall_seconds"])
        print("simulated sweep: " + json.dumps(summary["simulated"]), file=sys.stderr, flush=True)
    saved_path = out_dir / SWEEP_FILE
    saved = json.loads(saved_path.read_text())
    saved.setdefault("runs", []).append({"resumed": resume, "dashboard": dashboard, **summary})
    saved["summary"] = summary
    write_json(saved_path, saved)
    signer.close()  # sweep.json signed as it now is (the manifest is uploaded with the sweep's files)
    upload_sweep_files(location, out_dir)
    counts = ", ".join(f"{count} {status}" for status, count in summary["status_counts"].items())
    if summary["interrupted"]:
        log.warning("sweep interrupted with %d of %d trials finished (%s); continue it with --resume --out %s",
                    summary["finished"], config.num_samples, counts, out_dir)
    else:
        log.info("sweep done: %s -> %s", counts, out_dir / TRIALS_FILE)


def _record_into(tuner: Any, recorder: StudyRecorder) -> None:
    """A restored Tuner's study callback writes to this folder's study (the folder may have moved since);
    a sweep that started without one gets `recorder`. Tune has no public way to change a restored
    Tuner's callbacks: its run config is reached through private attributes (private_api.tuner_run_config).

    When those have changed, a WARNING says so and the sweep goes on: that is safe, the study is brought up
    to date from trials.jsonl when the sweep ends (sync_study), only not as trials finish."""
    run_config = tuner_callbacks(tuner, "the Optuna study is updated when the sweep ends, not as trials finish")
    if run_config is None:
        return
    callbacks = list(run_config.callbacks or [])
    held = [callback for callback in callbacks if isinstance(callback, StudyRecorder)]
    for callback in held:
        callback.retarget(recorder.study_path)
    if not held:
        run_config.callbacks = [*callbacks, recorder]


def _scheduler_state_here(tuner: Any, out_dir: Path) -> None:
    """A restored scheduler writes its state into this folder (tuner.pkl names the folder the sweep started in,
    which it may have left). Tune has no public way to reach a restored Tuner's scheduler: private attributes
    (private_api.tuner_scheduler).

    When those have changed, a WARNING says so and the sweep goes on: that is safe for a sweep resumed in the
    folder it started in (the common case, and the state path tuner.pkl names is then this one); one moved since
    keeps its rung records where it started, which the warning says."""
    try:
        scheduler = tuner_scheduler(tuner)
    except PrivateApiChanged as changed:
        log.warning("%s", changed)
        return
    if getattr(scheduler, "state_path", None):
        scheduler.state_path = str(out_dir / SCHEDULER_STATE_FILE)


def _summary(records: Sequence[Mapping[str, Any]], config: SweepConfig, seconds: float) -> dict[str, Any]:
    members = [record for record in records if record.get("kind") == FAMILY_KIND]  # rows, not trials: counted apart
    records = [record for record in records if record.get("kind") != FAMILY_KIND]
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
        "family_members": len(members),
        "wall_seconds": round(seconds, 1),
        "ended_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
