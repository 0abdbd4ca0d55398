"""Learning curves for settings no one trained, fitted to the curves real sweeps recorded.

What it does: `fit_surrogate(folders)` reads recorded sweeps (each folder: curves.jsonl, every evaluation of
every trial; trials.jsonl, each trial's overrides; sweep.json, the teacher's shape) and fits, for every accuracy
metric all of them recorded (`<metric>` with `<metric>_se`):
- where a trial ends: its final score minus its sweep's baseline's, a ridge regression on the trial's settings
  (`features`: log learning rate and its square, temperature, alpha_ce, log weight decay, mean dropout, warm-up
  as a share of the run, size and depth as shares of the teacher's), plus the residual spread, which a new
  trial draws from (real trials of the same settings differ by seed);
- how it gets there: the recorded curves themselves. A new trial borrows the shape (each evaluation's distance
  below the final score, by share of the run) and the measured standard errors of one of the three recorded
  trials nearest to it in the standardised settings;
- the noise: each evaluation reports its measured standard error (`<metric>_se`, what the schedulers' noise rule
  reads). Its value is the borrowed curve, which holds the noise of a real evaluation: in a sweep every trial is
  scored on the same questions, so what differs between trials is paired noise, smaller than the standard error
  of one mean (exact: 0.26 points between trials of the recorded runs against a standard error of 1.18). A
  fresh draw at the full standard error per evaluation (`noise=1`) models a new question set at every
  evaluation instead: it is there to test a rule's robustness, not the default.
`Surrogate.evaluations(features, progress, seed)` gives those evaluations; everything is drawn from `seed`
(the trial's seed) and the evaluation's step, so a trial resumed from a checkpoint reports what it would have.
Settings outside the recorded range are clipped to it: the surrogate does not extrapolate, so a sweep over a
wider space (the paper preset's learning rates) sees the recorded edge's scores there.
`Surrogate.to_json` / `from_json` keep a fitted surrogate as data (configs/simulate/surrogate.json, with the
command and sources that made it); `tune-distill simulate-fit` (cli) remakes it.

What it must not know: Ray, the sweep, searchers, schedulers, how the recorded runs trained.

Example (CPU, a second; the recorded runs in results/):
    python -m tune_distill simulate-fit results/archive/cpu-v5 results/archive/sweep-cpu-prune --out /tmp/surrogate.json
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import numpy as np

from tune_distill.config import RunConfig, apply_overrides
from tune_distill.files import parse_json, read_json_object
from tune_distill.records import SWEEP_FILE, read_trials
from tune_distill.student import ResolvedShape, resolve_shape, shape_parameters

CURVES_FILE = "curves.jsonl"
FEATURES = ("log_learning_rate", "log_learning_rate_squared", "temperature", "alpha_ce", "log_weight_decay",
            "dropout", "warmup_share", "size_share", "depth_share")
NEIGHBOURS = 3  # a new trial borrows the curve shape of one of this many nearest recorded trials
RIDGE = 1.0  # ridge penalty on the standardised features (the intercept is not penalised)
FORMAT = 1


def teacher_namespace(teacher: Mapping[str, Any]) -> SimpleNamespace:
    """The teacher shape a sweep.json records (`teacher.num_hidden_layers`, ...) as a config object."""
    return SimpleNamespace(**{key.removeprefix("teacher."): value for key, value in teacher.items()},
                           vocab_size=0, max_position_embeddings=0, type_vocab_size=0)


def features(run: RunConfig, teacher: Any, total_steps: int) -> tuple[float, ...]:
    """The settings the surrogate reads from a resolved run config (FEATURES, in order)."""
    shape = resolve_shape(run.student, teacher)
    head_size = teacher.hidden_size // teacher.num_attention_heads
    whole = ResolvedShape(teacher.num_hidden_layers, teacher.hidden_size, teacher.num_attention_heads,
                          teacher.intermediate_size, head_size, ())
    size = shape_parameters(shape, teacher)["non_embedding_parameters"]
    teacher_size = shape_parameters(whole, teacher)["non_embedding_parameters"]
    distill = run.distill
    warmup = distill.warmup_ratio if distill.warmup_ratio > 0 else distill.warmup_steps / max(1, total_steps)
    log_rate = math.log10(distill.learning_rate)
    dropout = (run.student.hidden_dropout_prob + run.student.attention_probs_dropout_prob
               + run.student.qa_dropout) / 3
    return (log_rate, log_rate ** 2, distill.temperature, distill.alpha_ce,
            math.log10(max(distill.weight_decay, 1e-8)), dropout, min(1.0, warmup), size / teacher_size,
            shape.num_hidden_layers / teacher.num_hidden_layers)


@dataclass(frozen=True)
class Surrogate:
    """A fitted surrogate (see the module's docstring); plain data, saved as JSON."""

    metrics: tuple[str, ...]
    baseline: dict[str, float]  # the recorded baselines' final score per metric (median over the sources)
    low: tuple[float, ...]  # the recorded range of each feature (new settings are clipped to it)
    high: tuple[float, ...]
    mean: tuple[float, ...]  # standardisation of the features
    scale: tuple[float, ...]
    coefficients: dict[str, tuple[float, ...]]  # per metric: intercept, then one per feature
    residual_sd: dict[str, float]
    shapes: tuple[dict[str, Any], ...]  # recorded trials: features, progress, per metric offsets and errors
    sources: tuple[str, ...]
    fit_quality: dict[str, dict[str, float]]  # per metric: n, residual sd, spread of the finals, R^2

    def standardise(self, values: Sequence[float]) -> np.ndarray:
        clipped = np.clip(np.asarray(values, dtype=float), self.low, self.high)
        return (clipped - np.asarray(self.mean)) / np.asarray(self.scale)

    def evaluations(self, values: Sequence[float], progress: Sequence[float], seed: int,
                    noise: float = 0.0) -> list[dict[str, float]]:
        """One dict per share of the run in `progress` (0 < p <= 1): `<metric>` and `<metric>_se` for every metric;
        `noise` scales a fresh normal draw at each evaluation's standard error (0: the recorded curves' own)."""
        z = self.standardise(values)
        trial = np.random.default_rng([seed, 0])
        finals = {m: self.baseline[m] + float(np.dot(self.coefficients[m], np.concatenate([[1.0], z])))
                  + trial.normal(0.0, self.residual_sd[m]) for m in self.metrics}
        donor = self._donor(z, trial)
        noise_scale, out = float(noise), []
        for p in progress:
            noise = np.random.default_rng([seed, 1, int(round(p * 1_000_000))])
            row = {}
            for metric in self.metrics:
                offset, error = _at(donor, metric, float(p))
                row[metric] = finals[metric] + offset + noise.normal(0.0, error) * noise_scale
                row[f"{metric}_se"] = error
            out.append(row)
        return out

    def _donor(self, z: np.ndarray, rng: np.random.Generator) -> Mapping[str, Any]:
        recorded = np.array([self.standardise(shape["features"]) for shape in self.shapes])
        order = np.argsort(np.linalg.norm(recorded - z, axis=1), kind="stable")[:NEIGHBOURS]
        return self.shapes[int(order[rng.integers(len(order))])]

    def to_json(self, **provenance: Any) -> str:
        return json.dumps({"format": FORMAT, **provenance, "surrogate": asdict(self)}, indent=1)

    @classmethod
    def from_json(cls, path: str | Path) -> Surrogate:
        """A surrogate saved by `to_json`; a file of another kind is a ValueError naming it and the field."""
        data = read_json_object(path, "simulation surrogate")
        body = data.get("surrogate")
        if data.get("format") != FORMAT or not isinstance(body, dict):
            raise ValueError(f"{path}: not a surrogate of format {FORMAT} (expected 'format' and 'surrogate' fields; "
                             "tune-distill simulate-fit writes one)")
        fields = set(cls.__dataclass_fields__)
        if set(body) != fields:
            raise ValueError(f"{path}: surrogate fields {sorted(set(body) ^ fields)} missing or unknown")
        tuples = {key: tuple(body[key]) for key in ("metrics", "low", "high", "mean", "scale", "shapes", "sources")}
        coefficients = {m: tuple(c) for m, c in body["coefficients"].items()}
        return cls(**{**body, **tuples, "coefficients": coefficients})


def _at(donor: Mapping[str, Any], metric: str, p: float) -> tuple[float, float]:
    """The donor's distance below its final score and its standard error at share `p` of the run: linear between
    its evaluations; before the first one, the distance grows in proportion to the share not yet trained."""
    grid = donor["progress"]
    offsets, errors = donor["offsets"][metric], donor["errors"][metric]
    if p <= grid[0]:
        first_gap = offsets[0] if offsets[0] < 0 else -abs(donor["spread"][metric])
        return offsets[0] + first_gap * (grid[0] - p) / grid[0], errors[0]
    return float(np.interp(p, grid, offsets)), float(np.interp(p, grid, errors))


def read_recorded(folder: Path, metrics: Sequence[str] | None = None) -> tuple[list[dict[str, Any]], set[str]]:
    """The trials of one recorded sweep folder with their curves: [{kind, features, progress, values, errors}]
    and the accuracy metrics its curves recorded (every one but sizes and standard errors)."""
    settings = read_json_object(folder / SWEEP_FILE, "the sweep's record")
    teacher = teacher_namespace(settings["teacher"])
    base = settings["config"]["base"]
    curves: dict[str, list[dict[str, Any]]] = {}
    for number, line in enumerate((folder / CURVES_FILE).read_text().splitlines(), 1):
        if line.strip():
            row = parse_json(line, f"{folder / CURVES_FILE}:{number}")
            curves.setdefault(str(row["trial_id"]), []).append(row)
    finals = read_trials(folder)
    recorded = {name for rows in curves.values() for row in rows for name, value in row["metrics"].items()
                if isinstance(value, float) and "parameters" not in name and not name.endswith("_se")}
    trials = []
    for record in finals:
        rows = sorted(curves.get(str(record["trial_id"]), []), key=lambda row: row["step"])
        if record["status"] != "complete" or not rows:
            continue
        total = int(rows[-1]["total_steps"] or rows[-1]["step"])
        run = apply_overrides(RunConfig(), {**base, **record["overrides"]})
        trials.append({
            "kind": record.get("kind") or ("baseline" if record.get("baseline") else "search"),
            "features": features(run, teacher, total),
            "progress": [row["step"] / total for row in rows],
            "values": {m: [row["metrics"].get(m) for row in rows] for m in (metrics or recorded)},
            # an evaluation's own standard error, else the trial's final one (curves recorded before evaluations
            # reported them), else none: the trial then serves the regression but lends no curve
            "errors": {m: [row["metrics"].get(f"{m}_se", record["metrics"].get(f"{m}_se")) for row in rows]
                       for m in (metrics or recorded)},
        })
    return trials, recorded


def fit_surrogate(folders: Sequence[str | Path], metrics: Sequence[str] | None = None) -> Surrogate:
    """Fit a surrogate to the recorded sweep folders (see the module's docstring)."""
    sources = [Path(folder) for folder in folders]
    read = [read_recorded(folder) for folder in sources]
    common = sorted(set.intersection(*(found for _, found in read))) if read else []
    metrics = list(metrics or common)
    if not metrics or not set(metrics) <= set(common):
        raise ValueError(f"simulate-fit: the folders' curves all record {common}; "
                         f"asked for {metrics or 'any'}")
    runs = [[trial for trial in trials if all(None not in trial["values"][m] for m in metrics)] for trials, _ in read]
    donors = [trial for trials in runs for trial in trials if all(None not in trial["errors"][m] for m in metrics)]
    if not donors:
        raise ValueError("simulate-fit: no recorded trial has standard errors for "
                         f"{metrics} (in its curves or its final metrics)")
    matrix = np.array([trial["features"] for trials in runs for trial in trials])
    if len(matrix) < len(FEATURES) + 2:
        raise ValueError(f"simulate-fit: {len(matrix)} complete recorded trials; at least {len(FEATURES) + 2} needed")
    mean, scale = matrix.mean(axis=0), matrix.std(axis=0)
    scale[scale == 0] = 1.0
    design = np.hstack([np.ones((len(matrix), 1)), (matrix - mean) / scale])
    baseline, coefficients, residual_sd, quality = {}, {}, {}, {}
    for metric in metrics:
        target, levels = _offsets(runs, metric)
        penalty = RIDGE * np.eye(design.shape[1])
        penalty[0, 0] = 0.0
        beta = np.linalg.solve(design.T @ design + penalty, design.T @ target)
        residual = target - design @ beta
        dof = max(1, len(target) - design.shape[1])
        baseline[metric] = float(np.median(levels))
        coefficients[metric] = tuple(float(b) for b in beta)
        residual_sd[metric] = float(math.sqrt(residual @ residual / dof))
        quality[metric] = {"trials": len(target), "finals_sd": float(target.std()), "residual_sd": residual_sd[metric],
                           "r_squared": float(1 - residual.var() / max(target.var(), 1e-12))}
    shapes = tuple(_shape(trial, metrics) for trial in donors)
    return Surrogate(tuple(metrics), baseline, tuple(matrix.min(axis=0)), tuple(matrix.max(axis=0)), tuple(mean),
                     tuple(scale), coefficients, residual_sd, shapes, tuple(str(s) for s in sources), quality)


def _offsets(runs: Sequence[Sequence[Mapping[str, Any]]], metric: str) -> tuple[np.ndarray, list[float]]:
    """Each trial's final score minus its run's baseline's (the median trial's where a run has no baseline), and
    the runs' baseline levels."""
    target, levels = [], []
    for trials in runs:
        if not trials:
            continue
        finals = [trial["values"][metric][-1] for trial in trials]
        baselines = [trial["values"][metric][-1] for trial in trials if trial["kind"] == "baseline"]
        level = baselines[0] if baselines else float(np.median(finals))
        levels.append(level)
        target.extend(final - level for final in finals)
    return np.array(target), levels


def _shape(trial: Mapping[str, Any], metrics: Sequence[str]) -> dict[str, Any]:
    """A recorded trial as the surrogate keeps it: settings, shares of the run, and per metric each evaluation's
    distance below the final score, its standard error, and the spread of the curve (for shares before the first
    evaluation)."""
    offsets = {m: [v - trial["values"][m][-1] for v in trial["values"][m]] for m in metrics}
    spread = {m: float(max(trial["values"][m]) - min(trial["values"][m])) for m in metrics}
    return {"features": list(trial["features"]), "progress": list(trial["progress"]), "offsets": offsets,
            "errors": {m: list(trial["errors"][m]) for m in metrics}, "spread": spread}


def add_arguments(parser: Any) -> None:
    """The options of `tune-distill simulate-fit`."""
    parser.add_argument("folders", nargs="+", help="recorded sweep folders (curves.jsonl, trials.jsonl, sweep.json)")
    parser.add_argument("--out", required=True, help="the surrogate file to write (JSON)")
    parser.add_argument("--metric", action="append", default=[],
                        help="an accuracy metric to model (default: every one all the folders' curves record)")


def command(args: Any) -> dict[str, Any]:
    """Fit a surrogate to the folders and write it with the command and sources; print its fit per metric."""
    import shlex
    import sys

    from tune_distill.files import write_atomically

    surrogate = fit_surrogate(args.folders, args.metric or None)
    made = "tune-distill simulate-fit " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    write_atomically(args.out, surrogate.to_json(command=made))
    summary = {"out": args.out, "metrics": list(surrogate.metrics), "donor_curves": len(surrogate.shapes),
               "fit": surrogate.fit_quality}
    print(json.dumps(summary, indent=1))
    return summary
