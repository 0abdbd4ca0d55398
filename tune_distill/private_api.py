"""Every place tune_distill reaches into another library's private parts, each checked against named versions.

What it does: one small function per touch (a private module, attribute, storage layout or mutable
setting of Ray, Optuna, numpy, optuna-dashboard), each saying what it reaches, why no public API does
the job and the versions it was checked against (`TOUCHES`). When the thing reached is missing or has
changed, the function raises `PrivateApiChanged`, naming the touch, the versions checked, the version
installed and what breaks: never a silent fallback. A caller at run time may catch it and log a
WARNING with its message where going on is safe; each such caller says why it is. `inventory()` lists
the touches and flags a library whose installed version is not among those checked. Everything else
in tune_distill uses public APIs only (tests/test_private_api.py scans for it, and checks each touch
against the installed libraries: run it after any upgrade).

Touches used by the tests only (Ray's cluster-launcher validation, Ray's address file, Optuna's
hypervolume) live here too, so that an upgrade that moves them fails with the same message.

What it must not know: what the callers do with what they get; nothing is imported at module level
but the standard library (Ray, Optuna, numpy are imported inside the functions that need them, so
importing this module loads none of them).

Example (CPU, instant):
    python -c "from tune_distill.private_api import inventory; print(inventory())"
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any, Iterable, Sequence


@dataclass(frozen=True)
class Touch:
    """One private thing of another library that tune_distill reaches."""

    reaches: str  # the private thing, as a dotted path
    library: str  # the distribution that owns it (its installed version is looked up by this name)
    checked: tuple[str, ...]  # the versions it was checked against
    breaks: str  # what stops working when it changes
    used_by: str  # who calls the function here


TOUCHES: dict[str, Touch] = {
    "ray_token_auth_enabled": Touch(
        "ray._private.authentication.authentication_utils.is_token_auth_enabled", "ray", ("2.60.0",),
        "the sweep cannot tell whether the local Ray dashboard asks for a token, so it shows the token hint anyway",
        "sweep/connect.py connect_ray"),
    "set_tune_env_propagation": Touch(
        "ray.tune.execution.class_cache.ENV_VARS_TO_PROPAGATE (a module-level set Ray Tune reads when it creates "
        "each trial actor)", "ray", ("2.60.0",),
        "AWS credentials set on the driver may be copied into every trial actor's runtime_env, which Ray logs on the "
        "node that runs it, or not be forwarded when the sweep option forward_aws_credentials asks for it",
        "sweep/connect.py connect_ray"),
    "tuner_run_config": Touch(
        "ray.tune.Tuner._local_tuner (TunerInternal).get_run_config()", "ray", ("2.60.0",),
        "a resumed sweep's Optuna study is updated when the sweep ends, not as trials finish",
        "sweep/driver.py _record_into (on --resume)"),
    "tuner_scheduler": Touch(
        "ray.tune.Tuner._local_tuner._tune_config.scheduler", "ray", ("2.60.0",),
        "a resumed pareto_sh scheduler keeps its rung records in the folder tuner.pkl names (the one the sweep "
        "started in), not in the sweep folder, should the folder have moved",
        "sweep/driver.py _scheduler_state_here (on --resume)"),
    "tune_driver_staging_path": Touch(
        "ray.tune.experiment.Trial.storage.experiment_driver_staging_path (ray.train._internal.storage."
        "StorageContext: the folder where Tune's driver writes the experiment state, the searcher's and the trials' "
        "driver files before syncing them to the experiment), and the order of TuneController.save_to_dir (the "
        "experiment state and the searcher's state written before the callbacks' get_state is called)", "ray",
        ("2.60.0",),
        "the sweep folder is signed when the sweep ends, not at every experiment checkpoint: a driver killed "
        "mid-sweep leaves a folder that resumes only with --trust-folder",
        "sweep/manifest.py CheckpointSigner"),
    "distribution_contains": Touch(
        "optuna.distributions.BaseDistribution._contains", "optuna", ("5.0.0", "5.1.0"),
        "trial records cannot be added to the sweep's Optuna study (study.journal, the report's importances)",
        "study.py study_trial"),
    "constraints_system_attrs": Touch(
        "Optuna's constraints storage layout: trial system attribute 'constraints' holding a list of violations "
        "(optuna.study._constrained_optimization._CONSTRAINTS_KEY, read by FrozenTrial.constraints)",
        "optuna", ("5.0.0", "5.1.0"),
        "the constraints of the sweep's trials would not reach Optuna's samplers, analysis and the dashboard",
        "study.py study_trial"),
    "dashboard_constraints_key": Touch(
        "optuna_dashboard._serializer.CONSTRAINTS_KEY (the system attribute the dashboard shows constraints from)",
        "optuna-dashboard", ("0.21.0",),
        "the Optuna dashboard would show no constraints for the sweep's trials",
        "tests/test_private_api.py (why study.py writes the list layout)"),
    "optuna_trial_handle": Touch(
        "optuna.trial.FrozenTrial._trial_id (passed to optuna.trial.Trial(study, trial_id))", "optuna",
        ("5.0.0", "5.1.0"),
        "the Optuna searchers cannot set constraints on, or tell, a trial re-added to their study on restore",
        "search/searchers/optuna.py"),
    "optuna_study_system_attrs": Touch(
        "optuna.study.Study._storage.get_study_system_attrs / set_study_system_attr with Study._study_id",
        "optuna", ("5.0.0", "5.1.0"),
        "the NSGA-II searcher's saved state lacks the parent populations it had chosen (Optuna caches them in the "
        "study's system attributes), so a restored nsga2 searcher may suggest other points than the original",
        "search/searchers/optuna.py (state and restore)"),
    "numpy_pickle_globals": Touch(
        "numpy._core.multiarray._reconstruct and .scalar (numpy.core.multiarray in numpy 1)", "numpy", ("2.4.6",),
        "a checkpoint of the previous format (numpy's RNG state pickled as an array) cannot be loaded",
        "checkpoint.py load_checkpoint"),
    "ray_launcher_prepare_config": Touch(
        "ray.autoscaler._private.util.prepare_config", "ray", ("2.60.0",),
        "tests/test_cluster.py cannot check cluster/gpu.yaml against Ray's own defaults", "tests/test_cluster.py"),
    "ray_launcher_validate_config": Touch(
        "ray.autoscaler._private.util.validate_config", "ray", ("2.60.0",),
        "tests/test_cluster.py cannot check cluster/gpu.yaml against Ray's own schema", "tests/test_cluster.py"),
    "ray_address_file": Touch(
        "ray._common.utils.get_ray_address_file", "ray", ("2.60.0",),
        "tests/test_multinode.py cannot keep its cluster out of the file `ray.init()` joins on this machine",
        "tests/test_multinode.py"),
    "set_gp_local_searches": Touch(
        "optuna.samplers.GPSampler._n_local_search (how many local searches optimise the acquisition function)",
        "optuna", ("5.0.0", "5.1.0"),
        "the optuna-gp searcher's `local_searches` option: each suggestion runs Optuna's default 10 local searches, "
        "about 5x slower at 100 trials with 20 running (issue 22), too slow for 20 workers",
        "search/searchers/optuna.py optuna_sampler"),
    "optuna_compute_hypervolume": Touch(
        "optuna._hypervolume.compute_hypervolume", "optuna", ("5.0.0", "5.1.0"),
        "tests/test_pareto.py cannot check tune_distill.pareto's hypervolume against Optuna's",
        "tests/test_pareto.py"),
}


class PrivateApiChanged(RuntimeError):
    """A private part of another library that tune_distill reaches is missing or has changed."""

    def __init__(self, name: str, problem: str):
        touch = TOUCHES[name]
        self.touch = touch
        super().__init__(
            f"{touch.reaches}: {problem}. tune_distill reaches this private API of {touch.library} (checked against "
            f"{touch.library} {', '.join(touch.checked)}; installed: {touch.library} {installed(touch.library)}); "
            f"what breaks: {touch.breaks}. See tune_distill/private_api.py ({name}) and run "
            f"tests/test_private_api.py")


def installed(library: str) -> str:
    """The installed version of `library` (a distribution name), or 'not installed'."""
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def inventory() -> str:
    """One line per touch: the function, what it reaches, checked versions, installed version (flagged if new)."""
    lines = []
    for name, touch in TOUCHES.items():
        version = installed(touch.library)
        flag = "" if version in touch.checked else "  <- not checked with this version: run tests/test_private_api.py"
        lines.append(f"{name}: {touch.reaches} [{touch.library} checked {', '.join(touch.checked)}; installed "
                     f"{version}] used by {touch.used_by}{flag}")
    return "\n".join(lines)


# --- Ray --------------------------------------------------------------------------------------------------


def ray_token_auth_enabled() -> bool:
    """Whether this Ray process uses token authentication (RAY_AUTH_MODE=token).

    Ray has no public way to ask (the mode is Ray's C++ config; `ray.init` and the dashboard read it through
    this private helper). Checked against ray 2.60.0.
    """
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled
    except ImportError as error:
        raise PrivateApiChanged("ray_token_auth_enabled", f"cannot be imported ({error})") from None
    enabled = is_token_auth_enabled()
    if not isinstance(enabled, bool):
        raise PrivateApiChanged("ray_token_auth_enabled", f"returned {type(enabled).__name__}, not a bool")
    return enabled


_RAY_TUNE_ENV: frozenset[str] | None = None  # Ray Tune's own set, as first seen here


def _tune_env_set() -> set[str]:
    """ray.tune.execution.class_cache.ENV_VARS_TO_PROPAGATE, the set itself."""
    try:
        from ray.tune.execution import class_cache
    except ImportError as error:
        raise PrivateApiChanged("set_tune_env_propagation", f"cannot be imported ({error})") from None
    propagated = getattr(class_cache, "ENV_VARS_TO_PROPAGATE", None)
    if not isinstance(propagated, set):
        raise PrivateApiChanged("set_tune_env_propagation", f"is a {type(propagated).__name__}, not a set")
    global _RAY_TUNE_ENV
    if _RAY_TUNE_ENV is None:
        _RAY_TUNE_ENV = frozenset(propagated)  # before any change made here
    return propagated


def ray_tune_propagated_env() -> frozenset[str]:
    """The environment variables Ray Tune itself copies from the driver into every trial actor's runtime_env, as
    Ray set them (before `set_tune_env_propagation` changed anything). Ray 2.60.0 includes AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_SECURITY_TOKEN and AWS_SESSION_TOKEN."""
    _tune_env_set()
    assert _RAY_TUNE_ENV is not None
    return _RAY_TUNE_ENV


def set_tune_env_propagation(names: Iterable[str], enabled: bool) -> None:
    """Make Ray Tune copy (`enabled`) or not copy the driver's `names` into every trial actor's runtime_env.

    Ray Tune reads the module-level set ray.tune.execution.class_cache.ENV_VARS_TO_PROPAGATE each time it
    creates a trial actor and has no setting for it: the set is edited in place (this process only).
    Checked against ray 2.60.0.
    """
    propagated = _tune_env_set()
    if enabled:
        propagated.update(names)
    else:
        propagated.difference_update(names)


def _tuner_internal(tuner: Any, name: str) -> Any | None:
    """A Tuner's TunerInternal (None for a Tuner driven through Ray Client: its state lives in a remote actor)."""
    held = vars(tuner)
    if held.get("_local_tuner") is None and held.get("_remote_tuner") is not None:
        return None
    internal = held.get("_local_tuner")
    if internal is None:
        raise PrivateApiChanged(name, f"{type(tuner).__name__} has no _local_tuner")
    return internal


def tuner_run_config(tuner: Any) -> Any | None:
    """The RunConfig a (restored) ray.tune.Tuner will run with, the object itself (changing its callbacks changes
    the run's); None for a Tuner driven through Ray Client.

    Tune has no public way to change a restored Tuner's callbacks (Tuner.restore takes none). Checked against
    ray 2.60.0.
    """
    internal = _tuner_internal(tuner, "tuner_run_config")
    if internal is None:
        return None
    get_run_config = getattr(internal, "get_run_config", None)
    if not callable(get_run_config):
        raise PrivateApiChanged("tuner_run_config", f"{type(internal).__name__} has no get_run_config()")
    run_config = get_run_config()
    from ray.tune import RunConfig

    if not isinstance(run_config, RunConfig):
        raise PrivateApiChanged("tuner_run_config", f"returned a {type(run_config).__name__}, not a ray.tune.RunConfig")
    return run_config


def tuner_scheduler(tuner: Any) -> Any | None:
    """The trial scheduler a (restored) ray.tune.Tuner will run with (None through Ray Client, or when it has none).

    Tune has no public way to reach a restored Tuner's scheduler (it comes back from tuner.pkl). Checked against
    ray 2.60.0.
    """
    internal = _tuner_internal(tuner, "tuner_scheduler")
    if internal is None:
        return None
    tune_config = vars(internal).get("_tune_config")
    from ray.tune import TuneConfig

    if not isinstance(tune_config, TuneConfig):
        raise PrivateApiChanged("tuner_scheduler", f"{type(internal).__name__}._tune_config is a "
                                f"{type(tune_config).__name__}, not a ray.tune.TuneConfig")
    return tune_config.scheduler


def tune_driver_staging_path(trial: Any) -> str:
    """The local folder where Tune's driver stages the experiment of `trial` (a ray.tune.experiment.Trial) before
    syncing it to the experiment folder (local or remote): experiment_state-*.json, the searcher's state, the
    trials' driver files (error.pkl, params.pkl, result.json).

    Tune has no public way to say where it writes them, nor a hook after it has (a Callback's get_state is
    called by TuneController.save_to_dir after the experiment and searcher states are written there, which is
    what sweep/manifest.py signs). Checked against ray 2.60.0.
    """
    storage = vars(trial).get("storage") if hasattr(trial, "__dict__") else None
    path = getattr(storage, "experiment_driver_staging_path", None)
    if not isinstance(path, str) or not path:
        raise PrivateApiChanged("tune_driver_staging_path", f"{type(trial).__name__}.storage has no "
                                "experiment_driver_staging_path")
    return path


def ray_launcher_prepare_config(config: dict) -> dict:
    """`config` (a cluster-launcher YAML, loaded) merged with Ray's defaults for its provider, as `ray up` does
    (no cloud call). Ray has no public way to validate a launcher file offline. Tests only; ray 2.60.0."""
    try:
        from ray.autoscaler._private.util import prepare_config
    except ImportError as error:
        raise PrivateApiChanged("ray_launcher_prepare_config", f"cannot be imported ({error})") from None
    return prepare_config(config)


def ray_launcher_validate_config(config: dict) -> None:
    """Ray's own schema check of a prepared launcher config (raises jsonschema.ValidationError or ValueError).
    Tests only; ray 2.60.0."""
    try:
        from ray.autoscaler._private.util import validate_config
    except ImportError as error:
        raise PrivateApiChanged("ray_launcher_validate_config", f"cannot be imported ({error})") from None
    validate_config(config)


def ray_address_file(temp_dir: str | None = None) -> str:
    """The file naming the cluster a bare `ray.init()` joins on this machine (/tmp/ray/ray_current_cluster in
    Ray 2.60.0). Ray has no public way to say where it is. Tests only."""
    try:
        from ray._common.utils import get_ray_address_file
    except ImportError as error:
        raise PrivateApiChanged("ray_address_file", f"cannot be imported ({error})") from None
    return str(get_ray_address_file(temp_dir))


# --- Optuna -----------------------------------------------------------------------------------------------

OPTUNA_CONSTRAINTS_ATTR = "constraints"  # optuna.study._constrained_optimization._CONSTRAINTS_KEY in 5.0 and 5.1
_verified: set[str] = set()  # the layout checks that passed in this process


def distribution_contains(distribution: Any, value: Any) -> bool:
    """Whether `value` (external form) lies in the Optuna distribution: the check Optuna's create_trial applies
    to every parameter (which raises for the whole trial rather than saying which parameter is outside).

    Optuna has no public `contains`. Checked against optuna 5.0.0 and 5.1.0.
    """
    try:
        internal = distribution.to_internal_repr(value)
    except (ValueError, TypeError):
        return False  # not even of the distribution's kind (public API: nothing private here)
    contains = getattr(type(distribution), "_contains", None)
    if not callable(contains):
        raise PrivateApiChanged("distribution_contains", f"{type(distribution).__name__} has no _contains")
    try:
        inside = contains(distribution, internal)
    except NotImplementedError:
        raise PrivateApiChanged("distribution_contains",
                                f"{type(distribution).__name__}._contains is not implemented") from None
    if not isinstance(inside, bool):
        raise PrivateApiChanged("distribution_contains", f"returned {type(inside).__name__}, not a bool")
    return inside


def constraints_system_attrs(violations: Sequence[float]) -> dict[str, list[float]]:
    """The system attributes that give an Optuna trial these constraint violations (<= 0: satisfied), in the
    list layout under 'constraints'.

    Optuna's public `create_trial(constraints={name: value})` writes one 'constraints:<name>' attribute per
    constraint instead; Optuna reads both, but optuna-dashboard 0.21 shows only the list (see
    `dashboard_constraints_key`) and the studies written so far hold the list (mixing the two would give a trial
    each constraint twice). Checked against optuna 5.0.0 and 5.1.0: the layout is verified once per process
    through the public FrozenTrial.constraints.
    """
    if "constraints" not in _verified:
        from optuna.trial import TrialState, create_trial

        expected = {"0": 1.5, "1": -2.0}
        probe = create_trial(state=TrialState.FAIL, system_attrs={OPTUNA_CONSTRAINTS_ATTR: list(expected.values())})
        if probe.constraints != expected:
            raise PrivateApiChanged("constraints_system_attrs", f"FrozenTrial.constraints reads a list under "
                                    f"{OPTUNA_CONSTRAINTS_ATTR!r} as {probe.constraints!r}, not {expected!r}")
        _verified.add("constraints")
    return {OPTUNA_CONSTRAINTS_ATTR: [float(violation) for violation in violations]}


def dashboard_constraints_key() -> str:
    """The system attribute optuna-dashboard shows a trial's constraints from (a list of violations). Checked
    against optuna-dashboard 0.21.0; used by the tests, to keep `constraints_system_attrs` in step."""
    try:
        from optuna_dashboard import _serializer
    except ImportError as error:
        raise PrivateApiChanged("dashboard_constraints_key", f"cannot be imported ({error})") from None
    key = getattr(_serializer, "CONSTRAINTS_KEY", None)
    if not isinstance(key, str):
        raise PrivateApiChanged("dashboard_constraints_key", "optuna_dashboard._serializer has no CONSTRAINTS_KEY")
    return key


def optuna_trial_handle(study: Any, frozen_trial: Any) -> Any:
    """A live optuna.trial.Trial for `frozen_trial`, a RUNNING trial of `study` (e.g. one re-added with
    `study.add_trial(create_trial(state=TrialState.RUNNING, ...))` and read back from `study.get_trials()`),
    so that `set_constraint` and `study.tell` can be called on it.

    Optuna makes live trials only through `study.ask()` (a new trial); a trial's storage id is the private
    FrozenTrial._trial_id. Building the Trial calls the sampler's `before_trial`, as `ask` does. Checked against
    optuna 5.0.0 and 5.1.0.
    """
    import optuna
    from optuna.trial import TrialState

    if frozen_trial.state != TrialState.RUNNING:
        raise ValueError(f"trial {frozen_trial.number} is {frozen_trial.state.name}, not RUNNING: it cannot be told")
    trial_id = vars(frozen_trial).get("_trial_id")
    if not isinstance(trial_id, int):
        raise PrivateApiChanged("optuna_trial_handle", f"FrozenTrial has no integer _trial_id (got {trial_id!r})")
    if trial_id < 0:
        raise ValueError("the trial is not stored in a study (create_trial's trials get an id when added: read it "
                         "back with study.get_trials())")
    try:
        handle = optuna.trial.Trial(study, trial_id)
    except TypeError as error:
        raise PrivateApiChanged("optuna_trial_handle", f"optuna.trial.Trial(study, trial_id) fails ({error})") from None
    if handle.number != frozen_trial.number:
        raise ValueError(f"trial {frozen_trial.number} is not a trial of study {study.study_name!r}")
    return handle


def optuna_study_system_attrs(study: Any) -> dict[str, Any]:
    """The study-level system attributes of `study` (NSGA-II keeps its chosen parent populations there).

    Optuna 5 has no public reader of a study's system attributes (Study.system_attrs was removed); its
    storage has one, reached through the private Study._storage and Study._study_id. Checked against optuna
    5.0.0 and 5.1.0.
    """
    storage, study_id = vars(study).get("_storage"), vars(study).get("_study_id")
    if not hasattr(storage, "get_study_system_attrs") or not isinstance(study_id, int):
        raise PrivateApiChanged("optuna_study_system_attrs", "Study has no _storage with get_study_system_attrs, or "
                                "no integer _study_id")
    return dict(storage.get_study_system_attrs(study_id))


def set_optuna_study_system_attrs(study: Any, attrs: dict[str, Any]) -> None:
    """Set study-level system attributes of `study` (a restored searcher's study gets the original's back).
    Private for the reasons `optuna_study_system_attrs` gives; checked against optuna 5.0.0 and 5.1.0."""
    storage, study_id = vars(study).get("_storage"), vars(study).get("_study_id")
    if not hasattr(storage, "set_study_system_attr") or not isinstance(study_id, int):
        raise PrivateApiChanged("optuna_study_system_attrs", "Study has no _storage with set_study_system_attr, or "
                                "no integer _study_id")
    for key, value in attrs.items():
        storage.set_study_system_attr(study_id, key, value)


def optuna_compute_hypervolume(losses: Any, reference: Any) -> float:
    """Optuna's hypervolume of `losses` (minimised, every point dominating `reference`). Optuna has no public
    hypervolume. Tests only (tune_distill.pareto is checked against it); optuna 5.0.0 and 5.1.0."""
    try:
        from optuna._hypervolume import compute_hypervolume
    except ImportError as error:
        raise PrivateApiChanged("optuna_compute_hypervolume", f"cannot be imported ({error})") from None
    return float(compute_hypervolume(losses, reference))


# --- numpy ------------------------------------------------------------------------------------------------


def set_gp_local_searches(sampler: Any, count: int) -> None:
    """Set how many local searches a GPSampler runs to optimise its acquisition function (Optuna's default: 10).

    No public argument does it. Optuna's acquisition optimiser starts one local search (L-BFGS-B on the continuous
    parameters, line searches on each discrete one) from the best past point, one from the best of 2,048
    quasi-random points and the rest from points drawn among those; with many integer parameters the line searches
    dominate a suggestion's time. Checked against optuna 5.0.0 and 5.1.0.
    """
    current = getattr(sampler, "_n_local_search", None)
    if isinstance(current, bool) or not isinstance(current, int):
        raise PrivateApiChanged("set_gp_local_searches",
                                f"{type(sampler).__name__} has no integer _n_local_search (found {current!r})")
    sampler._n_local_search = int(count)


def numpy_pickle_globals() -> list[Any]:
    """What numpy's pickle of an array or scalar names besides tensors: its reconstructors (private: the names
    written into every pickle), ndarray, dtype and the dtype classes of the RNG state (uint32, int64, float32,
    float64, bool); for torch.serialization.safe_globals. Checked against numpy 2.4.6 (numpy 1 keeps them in
    numpy.core.multiarray).
    """
    import numpy as np

    try:
        from numpy._core import multiarray  # numpy 2
    except ImportError:
        try:
            from numpy.core import multiarray  # numpy 1
        except ImportError as error:
            raise PrivateApiChanged("numpy_pickle_globals", f"no numpy._core.multiarray ({error})") from None
    reconstruct, scalar = getattr(multiarray, "_reconstruct", None), getattr(multiarray, "scalar", None)
    if not callable(reconstruct) or not callable(scalar):
        raise PrivateApiChanged("numpy_pickle_globals", f"{multiarray.__name__} lacks _reconstruct or scalar")
    if np.zeros(1).__reduce__()[0] is not reconstruct:
        raise PrivateApiChanged("numpy_pickle_globals", "numpy's arrays no longer pickle through "
                                f"{multiarray.__name__}._reconstruct")
    dtypes = [type(np.dtype(name)) for name in ("uint32", "int64", "float32", "float64", "bool")]
    return [reconstruct, scalar, np.ndarray, np.dtype, *dtypes]
