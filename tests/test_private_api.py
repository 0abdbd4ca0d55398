"""private_api.py: each private part of another library that tune_distill reaches still does what it is used for
with the libraries installed, each fails with PrivateApiChanged (naming it, the versions checked and installed,
what breaks) when it is missing, the callers warn rather than go on silently, and nothing else in tune_distill
reaches into another library's private parts.

Run it after upgrading Ray, Optuna, numpy or optuna-dashboard. Fast: no Ray cluster is started (a Tuner is built
and restored without one).
"""

from __future__ import annotations

import ast
import copy
import importlib
import io
import logging
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tune_distill import private_api
from tune_distill.private_api import (
    OPTUNA_CONSTRAINTS_ATTR,
    TOUCHES,
    PrivateApiChanged,
    constraints_system_attrs,
    dashboard_constraints_key,
    distribution_contains,
    installed,
    inventory,
    numpy_pickle_globals,
    optuna_compute_hypervolume,
    optuna_study_system_attrs,
    optuna_trial_handle,
    ray_address_file,
    ray_launcher_prepare_config,
    ray_launcher_validate_config,
    ray_token_auth_enabled,
    ray_tune_propagated_env,
    set_gp_local_searches,
    set_optuna_study_system_attrs,
    set_tune_env_propagation,
    tune_driver_staging_path,
    tuner_run_config,
    tuner_scheduler,
)

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tune_distill"
AWS_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def test_every_touch_is_a_function_here_and_in_the_inventory():
    lines = inventory().splitlines()
    assert len(lines) == len(TOUCHES)
    for name, touch in TOUCHES.items():
        assert callable(getattr(private_api, name)), name
        assert touch.checked and touch.breaks and touch.used_by
        assert any(line.startswith(f"{name}: {touch.reaches}") for line in lines)


def test_importing_it_loads_no_library():
    code = ("import sys, tune_distill.private_api; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'optuna', 'numpy', 'torch'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]", result.stdout


# --------------------------------------------------------------------------------------------------
# Ray
# --------------------------------------------------------------------------------------------------


def test_ray_token_auth_check_answers_a_bool():
    assert isinstance(ray_token_auth_enabled(), bool)


@pytest.fixture
def tune_env():
    """Ray Tune's propagated set, put back as it was after the test."""
    from ray.tune.execution import class_cache

    held = set(class_cache.ENV_VARS_TO_PROPAGATE)
    yield class_cache
    class_cache.ENV_VARS_TO_PROPAGATE.clear()
    class_cache.ENV_VARS_TO_PROPAGATE.update(held)


def test_tune_copies_the_aws_credentials_into_trial_actors_unless_told_not_to(tune_env, monkeypatch):
    # why the touch exists: Ray itself propagates the driver's AWS credentials
    assert set(AWS_SECRETS) <= ray_tune_propagated_env(), (
        "Ray Tune no longer copies the driver's AWS credentials into trial actors by itself: "
        "private_api.set_tune_env_propagation may no longer be needed")
    for name in AWS_SECRETS:
        monkeypatch.setenv(name, f"fake-{name}")
    made = []
    monkeypatch.setattr(tune_env.ray, "remote", lambda **options: made.append(options) or (lambda cls: cls))

    def runtime_env_of_a_new_trial_actor() -> dict:
        class Trainable:  # a new class each time: Ray caches actor classes
            pass

        tune_env._ActorClassCache().get(Trainable)
        return made[-1]["runtime_env"]["env_vars"]

    set_tune_env_propagation(AWS_SECRETS, False)
    assert not set(AWS_SECRETS) & set(runtime_env_of_a_new_trial_actor())
    set_tune_env_propagation(AWS_SECRETS, True)
    assert {name: f"fake-{name}" for name in AWS_SECRETS}.items() <= runtime_env_of_a_new_trial_actor().items()


@pytest.fixture(scope="module")
def restored_tuner(tmp_path_factory):
    """A Tuner written to tuner.pkl and restored from it, as `tune-distill sweep --resume` does (no Ray started)."""
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    def trainable(config):
        return None

    folder = tmp_path_factory.mktemp("tuner")
    tune.Tuner(trainable, tune_config=tune.TuneConfig(scheduler=FIFOScheduler()),
               run_config=tune.RunConfig(name="exp", storage_path=str(folder), callbacks=[tune.Callback()]))
    assert tune.Tuner.can_restore(str(folder / "exp"))
    return tune.Tuner.restore(str(folder / "exp"), trainable)


def test_a_restored_tuners_run_config_and_scheduler_are_reached(restored_tuner):
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    run_config = tuner_run_config(restored_tuner)
    assert isinstance(run_config, tune.RunConfig) and run_config.name == "exp"
    assert [type(callback) for callback in run_config.callbacks] == [tune.Callback]
    run_config.callbacks = [*run_config.callbacks, "added"]  # what the driver does: the Tuner's own object
    assert tuner_run_config(restored_tuner).callbacks[-1] == "added"
    assert isinstance(tuner_scheduler(restored_tuner), FIFOScheduler)


def test_tune_stages_a_trials_experiment_in_its_driver_staging_folder_and_saves_it_before_asking_callbacks(
        tmp_path, monkeypatch):
    """What sweep/manifest.py's CheckpointSigner relies on: the staging folder is reached through a trial, and Tune
    writes the experiment state and the searcher's there before it calls the callbacks' get_state."""
    import inspect

    from ray.train._internal import storage as ray_storage
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

    monkeypatch.setattr(ray_storage, "_get_ray_train_session_dir", lambda: str(tmp_path / "session" / "artifacts"))
    storage = ray_storage.StorageContext(storage_path=str(tmp_path / "storage"), experiment_dir_name="exp")
    path = tune_driver_staging_path(Trial("trainable", stub=True, storage=storage))
    assert path == storage.experiment_driver_staging_path
    assert path.startswith(str(tmp_path / "session" / "artifacts")) and path.endswith("/exp/driver_artifacts")
    saving = inspect.getsource(TuneController.save_to_dir)
    assert saving.index("json.dump(") < saving.index("_search_alg.save_to_dir") < \
        saving.index("_callbacks.save_to_dir"), "TuneController.save_to_dir saves in another order now"


def test_a_ray_client_tuner_has_none():
    client_tuner = SimpleNamespace(_remote_tuner=object())
    assert tuner_run_config(client_tuner) is None and tuner_scheduler(client_tuner) is None


def test_ray_launcher_validation_and_address_file():
    import yaml

    config = ray_launcher_prepare_config(yaml.safe_load((ROOT / "cluster" / "gpu.yaml").read_text()))
    ray_launcher_validate_config(config)
    with pytest.raises(Exception, match="bogus_field|Additional properties"):
        ray_launcher_validate_config({**config, "bogus_field": 1})
    assert Path(ray_address_file()).name == "ray_current_cluster"


# --------------------------------------------------------------------------------------------------
# Optuna, optuna-dashboard
# --------------------------------------------------------------------------------------------------


def test_distribution_contains_answers_inside_and_outside():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    floats, stepped = FloatDistribution(0.0, 1.0), FloatDistribution(0.0, 1.0, step=0.25)
    ints, odd = IntDistribution(1, 4), IntDistribution(1, 7, step=2)
    choices = CategoricalDistribution(["a", "b", None])
    assert distribution_contains(floats, 0.5) and distribution_contains(floats, 1)
    assert not distribution_contains(floats, 1.5) and not distribution_contains(floats, "x")
    assert distribution_contains(stepped, 0.75) and not distribution_contains(stepped, 0.3)
    assert distribution_contains(ints, 3) and not distribution_contains(ints, 5)
    assert distribution_contains(odd, 5) and not distribution_contains(odd, 4)
    assert distribution_contains(choices, "b") and distribution_contains(choices, None)
    assert not distribution_contains(choices, "c")


def test_constraints_layout_is_read_by_optuna_and_the_dashboard():
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    attrs = constraints_system_attrs([-1.0, 0.0])
    assert attrs == {"constraints": [-1.0, 0.0]} and dashboard_constraints_key() == OPTUNA_CONSTRAINTS_ATTR
    study = optuna.create_study(directions=["maximize", "minimize"])
    for values, violations in (([1.0, 1.0], [-1.0, 0.0]), ([2.0, 0.5], [0.5, -1.0])):  # the second dominates
        study.add_trial(create_trial(values=values, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                                     system_attrs=constraints_system_attrs(violations)))
    assert study.trials[0].constraints == {"0": -1.0, "1": 0.0}
    assert [trial.number for trial in study.best_trials] == [0]  # Optuna counts the second infeasible


def test_trial_handle_sets_a_constraint_and_tells_a_re_added_running_trial():
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    study = optuna.create_study(directions=["maximize", "minimize"])
    running = create_trial(state=TrialState.RUNNING, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)})
    with pytest.raises(ValueError, match="not stored in a study"):
        optuna_trial_handle(study, running)
    study.add_trial(running)
    handle = optuna_trial_handle(study, study.get_trials()[-1])
    assert isinstance(handle, optuna.trial.Trial) and handle.params == {"x": 0.5}
    handle.set_constraint("size", 1.0)
    study.tell(handle, [0.8, 3.0])
    told = study.get_trials()[-1]
    assert told.state == TrialState.COMPLETE and told.values == [0.8, 3.0] and told.constraints == {"size": 1.0}
    with pytest.raises(ValueError, match="COMPLETE, not RUNNING"):
        optuna_trial_handle(study, told)


def test_study_system_attrs_are_read_and_set():
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.NSGAIISampler(seed=0, population_size=2),
                                directions=["maximize", "minimize"])
    study.optimize(lambda trial: (trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)), n_trials=6)
    held = optuna_study_system_attrs(study)
    assert any(key.startswith("NSGAIISampler:parent:") for key in held), held  # its chosen parents
    fresh = optuna.create_study(directions=["maximize", "minimize"])
    set_optuna_study_system_attrs(fresh, {**held, "tune_distill:test": [1, "a"]})
    assert optuna_study_system_attrs(fresh) == {**held, "tune_distill:test": [1, "a"]}


def test_optuna_hypervolume():
    assert optuna_compute_hypervolume(np.array([[1.0, 2.0], [2.0, 1.0]]), np.array([3.0, 3.0])) == pytest.approx(3.0)


# --------------------------------------------------------------------------------------------------
# numpy
# --------------------------------------------------------------------------------------------------


def test_numpy_pickles_load_with_the_globals_allowed_and_not_without():
    state = {"keys": np.arange(5, dtype=np.uint32), "pos": np.int64(3), "gauss": np.float64(0.5),
             "f": np.float32(1.5), "flag": np.bool_(True)}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with pytest.raises(Exception, match="weights_only"):
        torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    with torch.serialization.safe_globals(numpy_pickle_globals()):
        loaded = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    assert np.array_equal(loaded["keys"], state["keys"]) and loaded["keys"].dtype == np.uint32
    assert {key: loaded[key] for key in state if key != "keys"} == {key: state[key] for key in state if key != "keys"}


# --------------------------------------------------------------------------------------------------
# A touch that has changed: a clear error, never a silent fallback
# --------------------------------------------------------------------------------------------------


def _frozen_running_trial():
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    study = optuna.create_study()
    study.add_trial(create_trial(state=TrialState.RUNNING, params={"x": 0.5},
                                 distributions={"x": FloatDistribution(0, 1)}))
    return study, study.get_trials()[-1]


def _without_trial_id():
    study, frozen = _frozen_running_trial()
    frozen = copy.copy(frozen)
    del frozen._trial_id
    return optuna_trial_handle(study, frozen)


def _float_distribution():
    from optuna.distributions import FloatDistribution

    return FloatDistribution(0, 1)


CHANGED = [  # (touch, module, attributes taken away (_CONSTRAINTS_KEY: renamed), the call that reaches it)
    ("ray_token_auth_enabled", "ray._private.authentication.authentication_utils", "is_token_auth_enabled",
     ray_token_auth_enabled),
    ("set_tune_env_propagation", "ray.tune.execution.class_cache", "ENV_VARS_TO_PROPAGATE",
     lambda: set_tune_env_propagation(AWS_SECRETS, False)),
    ("tuner_run_config", "ray.tune.impl.tuner_internal", "TunerInternal.get_run_config",
     lambda: tuner_run_config(SimpleNamespace(_local_tuner=SimpleNamespace()))),
    ("tuner_run_config", None, None, lambda: tuner_run_config(SimpleNamespace())),
    ("tuner_scheduler", None, None, lambda: tuner_scheduler(SimpleNamespace(_local_tuner=SimpleNamespace()))),
    ("tune_driver_staging_path", None, None, lambda: tune_driver_staging_path(SimpleNamespace())),
    ("distribution_contains", "optuna.distributions", "FloatDistribution._contains",
     lambda: distribution_contains(_float_distribution(), 0.5)),
    ("distribution_contains", "optuna.distributions", "FloatDistribution._contains,BaseDistribution._contains",
     lambda: distribution_contains(_float_distribution(), 0.5)),
    ("constraints_system_attrs", "optuna.study._constrained_optimization", "_CONSTRAINTS_KEY",
     lambda: constraints_system_attrs([1.0])),
    ("dashboard_constraints_key", "optuna_dashboard._serializer", "CONSTRAINTS_KEY", dashboard_constraints_key),
    ("optuna_trial_handle", None, None, _without_trial_id),
    ("optuna_study_system_attrs", None, None, lambda: optuna_study_system_attrs(SimpleNamespace(study_name="s"))),
    ("optuna_study_system_attrs", None, None,
     lambda: set_optuna_study_system_attrs(SimpleNamespace(study_name="s"), {"k": 1})),
    ("set_gp_local_searches", None, None, lambda: set_gp_local_searches(SimpleNamespace(), 3)),
    ("numpy_pickle_globals", "numpy._core.multiarray", "_reconstruct", numpy_pickle_globals),
    ("ray_launcher_prepare_config", "ray.autoscaler._private.util", "prepare_config",
     lambda: ray_launcher_prepare_config({})),
    ("ray_launcher_validate_config", "ray.autoscaler._private.util", "validate_config",
     lambda: ray_launcher_validate_config({})),
    ("ray_address_file", "ray._common.utils", "get_ray_address_file", ray_address_file),
    ("optuna_compute_hypervolume", "optuna._hypervolume", "compute_hypervolume",
     lambda: optuna_compute_hypervolume(np.ones((1, 2)), np.full(2, 2.0))),
]


@pytest.mark.parametrize("name, module, attribute, call", CHANGED,
                         ids=[f"{case[0]}-{case[2] or 'fake object'}" for case in CHANGED])
def test_a_changed_touch_fails_naming_it_the_versions_and_what_breaks(name, module, attribute, call, monkeypatch):
    monkeypatch.setattr(private_api, "_verified", set())
    for taken in attribute.split(",") if module is not None else ():
        owner = importlib.import_module(module)
        *path, taken = taken.split(".")
        for part in path:
            owner = getattr(owner, part)
        if taken == "_CONSTRAINTS_KEY":
            monkeypatch.setattr(owner, taken, "renamed")
        else:
            monkeypatch.delattr(owner, taken)
    touch = TOUCHES[name]
    with pytest.raises(PrivateApiChanged) as caught:
        call()
    message = str(caught.value)
    assert caught.value.touch is touch
    assert message.startswith(f"{touch.reaches}: ")
    assert f"checked against {touch.library} {', '.join(touch.checked)}" in message
    assert f"installed: {touch.library} {installed(touch.library)}" in message
    assert f"what breaks: {touch.breaks}" in message and f"({name})" in message


def test_callers_warn_when_a_touch_has_changed(monkeypatch, caplog, tmp_path):
    from tune_distill.sweep import connect, driver, experiment

    def changed(name):
        def raise_it(*args, **kwargs):
            raise PrivateApiChanged(name, "changed in this test")
        return raise_it

    for module, name in ((connect, "ray_token_auth_enabled"), (connect, "set_tune_env_propagation"),
                         (driver, "tuner_scheduler")):
        monkeypatch.setattr(module, name, changed(name))
    monkeypatch.setattr(experiment, "tuner_run_config", changed("tuner_run_config"))  # sweep.experiment.tuner_callbacks
    with caplog.at_level(logging.WARNING, logger="tune_distill.sweep"):
        assert connect._token_auth_enabled() is True  # the dashboard's token hint is shown
        connect._tune_forwards_credentials(False)
        driver._record_into(object(), recorder=None)
        driver._scheduler_state_here(object(), tmp_path)
    warned = [record.getMessage() for record in caplog.records
              if record.levelno == logging.WARNING and "changed in this test" in record.getMessage()]
    assert [TOUCHES[name].reaches for name in ("ray_token_auth_enabled", "set_tune_env_propagation",
                                              "tuner_run_config", "tuner_scheduler")] == \
        [message.split(": changed in this test")[0] for message in warned]


# --------------------------------------------------------------------------------------------------
# Nothing else reaches into another library's private parts
# --------------------------------------------------------------------------------------------------

# Libraries whose private parts count even when a name is not imported in the file (e.g. in a string).
KNOWN_FOREIGN = {"ray", "optuna", "optuna_dashboard", "numpy", "torch", "transformers", "tokenizers", "datasets",
                 "huggingface_hub", "safetensors", "hyperopt", "botorch", "gpytorch", "pyarrow", "pandas", "scipy",
                 "sklearn", "matplotlib", "yaml", "fsspec", "boto3", "botocore", "s3fs", "moocore", "syne_tune"}
# Modules without an underscore that are internal all the same (Ray marks no API public in them).
INTERNAL_MODULES = ("ray.tune.execution", "ray.tune.impl")
DOTTED = re.compile(r"^[A-Za-z_]\w*(\.\w+)+$")
# The standard library's documented functions whose names start with an underscore (public API all the same).
DOCUMENTED_STDLIB = {"os._exit", "sys._current_frames", "sys._getframe"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_module(module: str) -> bool:
    return any(_private(part) for part in module.split(".")) or \
        any(module == internal or module.startswith(f"{internal}.") for internal in INTERNAL_MODULES)


def _foreign(module: str) -> bool:
    top = module.split(".")[0]
    return top not in ("tune_distill", "__future__") and top not in sys.stdlib_module_names


def _trees() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(), str(path)) for path in sorted(PACKAGE.rglob("*.py"))}


def _our_private_names(trees) -> set[str]:
    """Private names tune_distill itself defines: functions, classes, variables, attributes it assigns."""
    names = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
    return {name for name in names if _private(name)}


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def foreign_private_touches(path: Path, tree: ast.Module, ours: set[str]) -> list[str]:
    """file:line: what, for each reach into another library's private parts in one module."""
    aliases: dict[str, str] = {}  # local name -> the foreign module it is
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _foreign(alias.name):
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and _foreign(node.module):
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    foreign_tops = KNOWN_FOREIGN | {module.split(".")[0] for module in aliases.values()}
    where = path.relative_to(ROOT)
    found = []

    def reach(node: ast.AST, base: ast.AST, name: str, text: str) -> None:
        if not _private(name) or f"{_root(base)}.{name}" in DOCUMENTED_STDLIB:
            return
        if _root(base) in aliases or name not in ours:
            found.append(f"{where}:{node.lineno}: {text}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _foreign(alias.name) and _private_module(alias.name):
                    found.append(f"{where}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and _foreign(node.module):
            for alias in node.names:
                if _private_module(f"{node.module}.{alias.name}"):
                    found.append(f"{where}:{node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Attribute):
            reach(node, node.value, node.attr, ast.unparse(node))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            reach(node, node.args[0], node.args[1].value, ast.unparse(node)[:100])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and DOTTED.match(node.value):
            if node.value.split(".")[0] in foreign_tops and _private_module(node.value):
                found.append(f"{where}:{node.lineno}: {node.value!r}")
    return found


def test_only_private_api_reaches_into_other_libraries_private_parts():
    trees = _trees()
    ours = _our_private_names(trees)
    found = [line for path, tree in trees.items() if path.name != "private_api.py" or path.parent != PACKAGE
             for line in foreign_private_touches(path, tree, ours)]
    assert not found, (
        "these reach into another library's private parts outside tune_distill/private_api.py: move each into a "
        "function there (what it reaches, why no public API does, the versions checked, PrivateApiChanged when it "
        "changes) and add its test to tests/test_private_api.py\n  " + "\n  ".join(found))


def test_the_scan_finds_what_it_should():
    code = '''
import numpy as np
import ray.tune as tune
from ray._private import worker
from ray.tune.execution import class_cache
from optuna.study._constrained_optimization import _CONSTRAINTS_KEY
from tune_distill.search.space import Param

def f(distribution, tuner, summary, value, param):
    distribution._contains(value)
    getattr(tuner, "_local_tuner", None)
    np._core.multiarray
    tune._private_thing
    importlib.import_module("ray._private.authentication")
    summary._study_id
    param._choice_index  # ours: Param defines it
    value.__class__
'''
    found = foreign_private_touches(ROOT / "x.py", ast.parse(code), ours={"_choice_index"})
    assert sorted(line.split(": ", 1)[1] for line in found) == sorted([
        "from ray._private import worker",
        "from ray.tune.execution import class_cache",
        "from optuna.study._constrained_optimization import _CONSTRAINTS_KEY",
        "distribution._contains",
        "getattr(tuner, '_local_tuner', None)",
        "np._core",
        "tune._private_thing",
        "'ray._private.authentication'",
        "summary._study_id",
    ])


def test_the_gp_searcher_runs_the_local_searches_it_is_given():
    """optuna-gp's `local_searches` option reaches Optuna's acquisition optimiser (default 3, measured in issue 22)."""
    from tune_distill.search.searchers.optuna import GP_LOCAL_SEARCHES, optuna_sampler

    assert optuna_sampler("optuna-gp", 0, {})._n_local_search == GP_LOCAL_SEARCHES
    assert optuna_sampler("optuna-gp", 0, {"local_searches": 7})._n_local_search == 7
