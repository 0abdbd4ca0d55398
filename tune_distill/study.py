"""A sweep's search history as an Optuna study: what the Optuna dashboard and Optuna's analysis tools read.

What it does: turns trial records (the dicts of `trials.jsonl`, see records.py) into Optuna
trials and adds them to a study: the objectives as values (directions from the sweep's
objectives), the constraints' violations in the `constraints` system attribute Optuna's samplers
and the dashboard read (<= 0: satisfied), the state (complete -> COMPLETE, stopped early ->
PRUNED, with the values measured at the stop, failed -> FAIL with the error), the accuracy
objective at every evaluation as intermediate values (the learning curve), and the Tune trial id,
trial number, kind, run folder and every metric as user attributes. `record_trials` skips a
record whose Tune trial id the study already holds (unless the earlier one failed and this one
did not: a retry), so adding the same records again, or a resumed sweep's, counts nothing twice.

One study, written by this module, for every searcher (the Optuna-driven ones keep their own
in-memory study for sampling; this one is the record): `study.journal` in the sweep folder, an
Optuna JournalStorage over a JournalFileBackend. A journal rather than SQLite: it is one
append-only text file (a copy taken while the sweep writes it is a valid prefix, which is what
is uploaded next to a remote experiment), needs no database schema that Optuna versions migrate,
and the dashboard (`tune-distill dashboard`, dashboard.py: read-only) follows it as it grows.

The journal survives faults and is checked as data (`journal_storage`): a torn last line (the writer was
killed, or the disk filled, while appending) is cut off with a WARNING before this module appends (under
Optuna's lock file), and is skipped with a WARNING when it only reads; its appends (`journal_backend`) write
whole lines only: an append that fails (a full disk) is cut back off, so the next one starts on a clean line.
A line that is not a JSON operation, or a journal Optuna cannot replay (an operation it does not know), is one
ValueError naming the file (and line); the study is derived data, rebuilt from trials.jsonl when the journal is
moved aside.

What it must not know: Ray, how trials ran or were chosen, the report's tables.

Example (CPU, seconds; any sweep folder with trials.jsonl; then the dashboard on it):
    python -c "from tune_distill.study import sync_study; print(sync_study('sweeps/smoke'))"
    tune-distill dashboard --sweep sweeps/smoke --port 8080
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from tune_distill.private_api import constraints_system_attrs, distribution_contains
from tune_distill.records import (
    FAMILY_KIND,
    FAMILY_METRIC,
    read_sweep_settings,
    read_trials,
    resolve_run_dir,
    run_roots,
    torn_line,
)

log = logging.getLogger(__name__)

STUDY_FILE = "study.journal"
TUNE_ID_ATTR = "tune_trial_id"
_STATES = {"complete": "COMPLETE", "stopped": "PRUNED", "failed": "FAIL"}


def plain(item: Any) -> dict[str, Any]:
    """An Objective / Constraint (dataclass) or a mapping, as a plain dict."""
    return dict(item) if isinstance(item, Mapping) else dict(vars(item))


def dashboard_command(study_path: str | Path, port: int = 8080) -> str:
    """The command that serves `study_path` (a sweep's study.journal, or its folder) in the Optuna dashboard,
    read-only and on 127.0.0.1 only (dashboard.py)."""
    path = Path(study_path)
    return f"tune-distill dashboard --sweep {path.parent if path.name == STUDY_FILE else path} --port {port}"


def space_distributions(space: Any) -> dict[str, Any]:
    """Optuna distributions of a search space's sampled parameters (search.space.Param)."""
    from tune_distill.search.searchers.optuna import optuna_distribution

    return {param.name: optuna_distribution(param) for param in space.params}


def observed_distributions(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Distributions spanning the parameter values the records hold: for sweeps whose space is not at hand."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    values: dict[str, list[Any]] = {}
    for record in records:
        for name, value in (record.get("params") or {}).items():
            values.setdefault(name, []).append(value)
    distributions = {}
    for name, seen in sorted(values.items()):
        numbers = [value for value in seen if isinstance(value, (int, float)) and not isinstance(value, bool)]
        if len(numbers) == len(seen) and all(isinstance(value, int) for value in numbers):
            distributions[name] = IntDistribution(min(numbers), max(numbers))
        elif len(numbers) == len(seen):
            distributions[name] = FloatDistribution(float(min(numbers)), float(max(numbers)))
        else:
            choices = []
            for value in seen:
                value = json.dumps(value) if isinstance(value, (list, dict)) else value
                if value not in choices:
                    choices.append(value)
            distributions[name] = CategoricalDistribution(choices)
    return distributions


def read_curve(run_dir: str | None, metric: str) -> dict[int, float]:
    """{step: metric} from a run folder's history.jsonl ({} when the folder is not readable from here)."""
    path = Path(run_dir) / "history.jsonl" if run_dir and "://" not in str(run_dir) else None
    curve: dict[int, float] = {}
    if path is None or not path.is_file():
        return curve
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        value = entry.get(metric)
        if isinstance(value, (int, float)) and math.isfinite(value) and entry.get("step") is not None:
            curve[int(entry["step"])] = float(value)
    return curve


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _member_distribution(record: Mapping[str, Any], name: str) -> Any:
    """The distribution of a pruning-family member's `prune.keep` (a share: 0 to 1); None for anything else."""
    from optuna.distributions import FloatDistribution

    return FloatDistribution(0.0, 1.0) if record.get("kind") == FAMILY_KIND and name == "prune.keep" else None


def study_trial(record: Mapping[str, Any], distributions: Mapping[str, Any], objectives: Sequence[Any],
                constraints: Sequence[Any] = (), curve: Mapping[int, float] | None = None):
    """One trial record as an Optuna FrozenTrial (None for an unfinished trial: it is added when it finishes).

    Parameters outside `distributions` (or outside their range, e.g. the baseline's fixed shape) are
    left out; the baseline's sampled keys come from its overrides. A complete trial without every
    objective becomes FAIL, saying so.
    """
    from optuna.trial import TrialState, create_trial

    from tune_distill.search.objectives import Constraint

    status = record.get("status")
    if status not in _STATES:
        return None
    objectives = [plain(o) for o in objectives]
    metrics = dict(record.get("metrics") or {})
    state = TrialState[_STATES[status]]
    error = record.get("error")
    values = [metrics.get(o["name"]) for o in objectives]
    if state != TrialState.FAIL and not all(_finite(value) for value in values):
        missing = [o["name"] for o, value in zip(objectives, values) if not _finite(value)]
        state, error = TrialState.FAIL, f"no value for {', '.join(missing)}"
    chosen = {**(record.get("overrides") or {}), **(record.get("params") or {})} if record.get("baseline") \
        else dict(record.get("params") or {})
    params, used = {}, {}
    for name, value in chosen.items():
        distribution = distributions.get(name) or _member_distribution(record, name)
        if distribution is None:
            continue
        value = json.dumps(value) if isinstance(value, (list, dict)) else value
        if distribution_contains(distribution, value):
            params[name], used[name] = value, distribution
    accuracy = next((o["name"] for o in objectives if o.get("direction") == "max"), objectives[0]["name"])
    steps = dict(curve or {})
    if _finite(metrics.get(accuracy)) and metrics.get("step") is not None:
        steps.setdefault(int(metrics["step"]), float(metrics[accuracy]))
    attrs: dict[str, Any] = {
        TUNE_ID_ATTR: str(record["trial_id"]), "number": record.get("number"), "kind": record.get("kind"),
        "status": status, "run_dir": record.get("run_dir"), "checkpoint": record.get("checkpoint"),
        "intermediate_metric": accuracy,
    }
    if record.get("parent"):
        attrs["parent"] = str(record["parent"])  # a pruning-family member's trial
    if error:
        attrs["error"] = str(error)
    if status == "stopped" and metrics.get("step") is not None:
        attrs["stopped_at_step"] = int(metrics["step"])
    for name, value in metrics.items():
        if name == FAMILY_METRIC:
            continue  # a trial's pruning family (JSON text): its members are trials of their own (family_records)
        if isinstance(value, (int, float, str, bool)) and (not isinstance(value, float) or math.isfinite(value)):
            attrs.setdefault(f"metric.{name}" if name in attrs else name, value)
    system_attrs = {}
    judged = [Constraint(**plain(constraint)) for constraint in constraints]
    if judged and state != TrialState.FAIL and all(_finite(metrics.get(c.name)) for c in judged):
        # (a trial without a constrained metric gets none: Optuna's samplers then count it infeasible)
        system_attrs.update(constraints_system_attrs([c.violation(float(metrics[c.name])) for c in judged]))
    return create_trial(
        state=state, values=None if state == TrialState.FAIL else [float(v) for v in values],
        params=params, distributions=used, user_attrs=attrs, system_attrs=system_attrs,
        intermediate_values=steps,
    )


def open_study(path: str | Path | None, name: str, objectives: Sequence[Any]):
    """The study `name` in the journal file `path` (created if new; None: in memory), directions and metric
    names from `objectives`. A journal holding one study under another name (a sweep resumed into a
    folder of another name) continues that one."""
    import warnings

    import optuna

    storage = None
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        storage = journal_storage(path, repair=True)
        held = [summary.study_name for summary in storage.get_all_studies()]
        name = held[0] if len(held) == 1 and name not in held else name
    objectives = [plain(o) for o in objectives]
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True,
                                    directions=["maximize" if o["direction"] == "max" else "minimize"
                                                for o in objectives])
    finally:
        optuna.logging.set_verbosity(previous)
    names = [o["name"] for o in objectives]
    if study.metric_names != names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)
    return study


def record_trials(study: Any, records: Sequence[Mapping[str, Any]], distributions: Mapping[str, Any],
                  objectives: Sequence[Any], constraints: Sequence[Any] = (),
                  curves: Mapping[str, Mapping[int, float]] | None = None) -> int:
    """Add the finished records the study does not hold yet (keyed by Tune trial id); return how many.

    A record whose trial the study holds already is skipped, unless the one held failed and this one
    did not (a failed trial retried on resume): that one is added, with `retry_of` naming the failure.
    `curves`: {trial_id: {step: accuracy}} reported as trials ran; the run folders' history.jsonl fill in.
    """
    from optuna.trial import TrialState

    held: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        key = trial.user_attrs.get(TUNE_ID_ATTR)
        if key is not None and (key not in held or held[key].state == TrialState.FAIL):
            held[key] = trial
    accuracy = next((plain(o)["name"] for o in objectives if plain(o).get("direction") == "max"),
                    plain(objectives[0])["name"])
    added = 0
    for record in records:
        key = str(record["trial_id"])
        earlier = held.get(key)
        if earlier is not None and (earlier.state != TrialState.FAIL or record.get("status") == "failed"):
            continue
        curve = {**read_curve(record.get("run_dir"), accuracy), **dict((curves or {}).get(key) or {})}
        trial = study_trial(record, distributions, objectives, constraints, curve)
        if trial is None:
            continue
        if earlier is not None:
            trial.set_user_attr("retry_of", earlier.number)
        study.add_trial(trial)
        held[key] = trial
        added += 1
    return added


def sync_study(sweep: str | Path, records: Sequence[Mapping[str, Any]] | None = None,
               distributions: Mapping[str, Any] | None = None) -> Path:
    """Bring a sweep folder's study.journal up to date with its trials.jsonl (records: given, or read from there).

    Objectives, constraints and the study's name come from the folder's sweep.json; parameter
    distributions from the study's own trials where it has some, else from the values recorded.
    Returns the journal's path.
    """
    from tune_distill.search.objectives import DEFAULT_OBJECTIVES

    sweep = Path(sweep)
    settings = read_sweep_settings(sweep)
    objectives = settings.get("objectives") or [plain(o) for o in DEFAULT_OBJECTIVES]
    records = located_records(sweep, read_trials(sweep), settings) if records is None else records
    study = open_study(sweep / STUDY_FILE, sweep.resolve().name, objectives)
    if distributions is None:
        distributions = {**observed_distributions(records), **held_distributions(study)}
    added = record_trials(study, records, distributions, objectives, settings.get("constraints") or ())
    log.info("study %r: %d trials added -> %s", study.study_name, added, sweep / STUDY_FILE)
    return sweep / STUDY_FILE


def held_distributions(study: Any) -> dict[str, Any]:
    """The distributions the study's trials already use (so that new trials match them)."""
    distributions: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, distribution in trial.distributions.items():
            distributions.setdefault(name, distribution)
    return distributions


def load_or_build(sweep: str | Path | None, records: Sequence[Mapping[str, Any]], objectives: Sequence[Any],
                  constraints: Sequence[Any] = ()):
    """An in-memory study for analysis: the sweep's study.journal trials (if any), plus records it lacks."""
    study = open_study(None, "report", objectives)
    journal = Path(sweep) / STUDY_FILE if sweep is not None else None
    if journal is not None and journal.is_file():
        storage = journal_storage(journal, repair=False)
        summaries = storage.get_all_studies()
        if summaries:
            study_id = storage.get_study_id_from_name(summaries[0].study_name)
            study.add_trials(storage.get_all_trials(study_id, deepcopy=False))
    distributions = {**observed_distributions(records), **held_distributions(study)}
    record_trials(study, records, distributions, objectives, constraints)
    return study


def located_records(sweep: str | Path, records: Sequence[Mapping[str, Any]],
                    settings: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """`records` with each run_dir where its run folder is inside the sweep folder read (records.resolve_run_dir;
    None when it is not there), so that the learning curves of a copied folder are its own."""
    roots = run_roots(sweep, settings)
    located = []
    for record in records:
        run_dir = resolve_run_dir(Path(sweep), str(record["trial_id"]), record.get("run_dir"), record.get("checkpoint"),
                                  roots)
        located.append({**record, "run_dir": str(run_dir) if run_dir else None})
    return located


def journal_storage(path: str | Path, *, repair: bool) -> Any:
    """An Optuna JournalStorage over the journal file `path`, checked first (`check_journal`). `repair`: a torn last
    line is cut off (this process appends next; journal_backend), else it is only skipped. ValueError, one line
    naming the file, when Optuna cannot replay it."""
    from optuna.storages import JournalStorage

    path = Path(path)
    if repair and path.is_file():
        repair_journal(path)
    if path.is_file():
        check_journal(path, warn_torn=not repair)
    try:
        return JournalStorage(journal_backend(path))
    except OSError as error:
        raise ValueError(f"{path}: cannot read the study journal ({error.strerror or error})") from None
    except (ValueError, KeyError, TypeError, AttributeError, AssertionError) as error:
        raise ValueError(f"{path}: Optuna cannot replay this study journal ({type(error).__name__}: "
                         f"{str(error)[:200] or 'an operation it does not know'}); {JOURNAL_ADVICE}") from None


JOURNAL_ADVICE = "move it aside: `tune-distill report --sweep FOLDER` rebuilds the study from trials.jsonl"


def check_journal(path: str | Path, warn_torn: bool = True) -> int:
    """Check that every whole line of a journal is one Optuna operation (a JSON object with an integer op_code);
    one ValueError naming `file:line` otherwise. A torn last line is left to Optuna's reader (it skips a line
    without its newline), with a WARNING when `warn_torn`. Returns the number of operations."""
    path = Path(path)
    with open(path, "rb") as handle:
        lines = handle.read().split(b"\n")
    for number, raw in enumerate(lines[:-1], 1):
        try:
            operation = json.loads(raw)
        except (ValueError, RecursionError) as error:
            raise ValueError(f"{path}:{number}: not a JSON line ({str(error)[:100]}): the study journal is damaged; "
                             f"{JOURNAL_ADVICE}") from None
        code = operation.get("op_code") if isinstance(operation, dict) else None
        if not isinstance(code, int) or isinstance(code, bool):
            raise ValueError(f"{path}:{number}: not an Optuna journal operation (expected an object with an integer "
                             f"op_code); {JOURNAL_ADVICE}")
    if lines[-1] and warn_torn:
        log.warning("%s:%d: a torn last line (cut while it was written) is skipped", path, len(lines))
    return len(lines) - 1


def repair_journal(path: str | Path) -> bool:
    """Cut a torn last line off a journal (the text after its last newline that is not JSON: its writer was
    killed, or the disk filled) with a WARNING, so that the next append starts on a clean line; a whole last
    line that lost only its newline gets it back. Done under the journal's Optuna lock file. Returns whether
    the file changed."""
    from optuna.storages.journal import JournalFileSymlinkLock

    path = Path(path)
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        start, tail = _last_piece(path)
        if not tail:
            return False
        if torn_line(tail.decode("utf-8", errors="replace")):
            os.truncate(path, start)
            log.warning("%s: dropped a torn last line of %d bytes (cut while it was written: the writer was killed "
                        "or the disk filled)", path, len(tail))
        else:
            with open(path, "ab") as handle:
                handle.write(b"\n")
        return True
    finally:
        lock.release()


def _last_piece(path: Path, chunk: int = 1 << 16) -> tuple[int, bytes]:
    """(offset, bytes) of the text after a file's last newline (b'' when it ends with one), read from its end."""
    with open(path, "rb") as handle:
        size = position = handle.seek(0, os.SEEK_END)
        start = 0
        while position > 0:
            step = min(chunk, position)
            position -= step
            handle.seek(position)
            found = handle.read(step).rfind(b"\n")
            if found >= 0:
                start = position + found + 1
                break
        handle.seek(start)
        return start, handle.read(size - start)


def journal_backend(path: str | Path) -> Any:
    """Optuna's file backend for a journal, appending whole lines only: an append that fails (a full disk) is cut
    back off before the error goes on, so the file stays a journal of whole lines."""
    from optuna.storages.journal import BaseJournalBackend, JournalFileBackend, JournalFileSymlinkLock

    class WholeLineJournal(BaseJournalBackend):
        """JournalFileBackend's reads; its appends, undone when they fail."""

        def __init__(self, file_path: str) -> None:
            self.file_path = file_path
            self.lock = JournalFileSymlinkLock(file_path)
            self.file = JournalFileBackend(file_path, lock_obj=self.lock)

        def read_logs(self, log_number_from: int) -> Any:
            return self.file.read_logs(log_number_from)

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            lines = "".join(json.dumps(entry, separators=(",", ":")) + "\n" for entry in logs).encode("utf-8")
            append_whole(self.file_path, lines, self.lock)

    return WholeLineJournal(str(path))


def append_whole(path: str | Path, data: bytes, lock: Any) -> None:
    """Append `data` (whole lines) to `path` under `lock`, flushed to disk; when the write fails (OSError: a full
    disk) the file is cut back to its size before, and the error goes on."""
    lock.acquire()
    try:
        size = os.path.getsize(path)
        try:
            with open(path, "ab") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            os.truncate(path, size)
            raise
    finally:
        lock.release()


IMPORTANCE_EVALUATOR = "fANOVA (optuna.importance.FanovaImportanceEvaluator, seed 0)"


def importance_evaluator(seed: int = 0):
    """The evaluator the report uses: fANOVA, which splits the variance of a target over the parameters, so a
    maximised objective needs no sign change (Optuna 5.0's default, PED-ANOVA, would treat it as minimised)."""
    from optuna.importance import FanovaImportanceEvaluator

    return FanovaImportanceEvaluator(seed=seed)


def importance_params(study: Any) -> list[str]:
    """Parameters every complete searched trial has (the baseline's fixed shape leaves some out: it is not counted)."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    complete = [trial for trial in complete if trial.user_attrs.get("kind") != FAMILY_KIND]
    searched = [trial for trial in complete if trial.user_attrs.get("kind") != "baseline"] or complete
    if not searched:
        return []
    return sorted(set.intersection(*(set(trial.params) for trial in searched)))


def param_importances(study: Any, objectives: Sequence[Any], seed: int = 0) -> dict[str, Any]:
    """{evaluator, trials, params, by_objective: {objective: {param: share, ...} most important first}}.

    Computed over the complete trials that have every parameter in `importance_params` (stopped
    trials were measured at another budget), pruning-family members left out (their size is their budget's,
    not their parameters'); `skipped` says why when there is nothing to compute.
    """
    import optuna
    from optuna.importance import get_param_importances
    from optuna.trial import TrialState

    params = importance_params(study)
    used = [trial for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if set(params) <= set(trial.params) and trial.user_attrs.get("kind") != FAMILY_KIND]
    if len(used) < len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))):
        directions = study.directions
        study = optuna.create_study(directions=directions)
        study.add_trials(used)
    result: dict[str, Any] = {"evaluator": IMPORTANCE_EVALUATOR, "trials": len(used), "params": params,
                              "by_objective": {}}
    if len(used) < 2 or not params:
        result["skipped"] = f"{len(used)} complete trials with {len(params)} common parameters: need 2 and 1"
        return result
    for index, objective in enumerate(objectives):
        name = plain(objective)["name"]
        targets = [trial.values[index] for trial in used]
        if max(targets) == min(targets):
            result["by_objective"][name] = {param: 0.0 for param in params}
            result.setdefault("constant", []).append(name)  # every trial scored the same: nothing to explain
            continue
        shares = get_param_importances(study, evaluator=importance_evaluator(seed), params=params,
                                       target=lambda trial, index=index: trial.values[index])
        result["by_objective"][name] = {param: float(share) for param, share in shares.items()}
    return result
