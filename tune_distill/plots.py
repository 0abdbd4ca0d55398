"""The report's pictures: frontier with standard errors, parameter importance, hypervolume over trials, learning curves.

What it does: each function writes one PNG (atomically, `files.atomic_path`). Optuna's matplotlib
visualisation draws where it has the picture: `importance.png` is
`optuna.visualization.matplotlib.plot_param_importances` (every objective, the evaluator named in
the title), `hypervolume.png` is `plot_hypervolume_history` (complete, feasible trials, in trial
order), `curves.png` is `plot_intermediate_values` (every trial's accuracy at each evaluation).
Drawn by hand, because Optuna lacks it: the frontier with each point's standard error as an error
bar (`plot_pareto_front` has no error bars, and no baseline or no-answer floor), and, on the
curves, the mark where each early-stopped trial was stopped and the step axis label.

What it must not know: Ray, how trials ran, the summary's figures (report.py computes them).

Example (CPU, seconds; a study and a results frame from report.py):
    tune-distill report --sweep sweeps/smoke     # writes these pictures into the sweep folder
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from tune_distill.files import atomic_path


@contextmanager
def _pyplot() -> Iterator[Any]:
    """matplotlib.pyplot on the Agg backend, with Optuna's 'experimental' warnings silenced."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield plt


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path


def plot_frontier(frame, pareto, path: str | Path, accuracy: str = "exact", size: str = "parameters",
                  floor: float | None = None, title: str = "") -> Path:
    """Size (millions of parameters) against accuracy: every trial, the Pareto front, the baseline, each
    point's standard error (`<accuracy>_se`) as a vertical bar where the evaluation reported one."""
    path = Path(path)
    with _pyplot() as plt:
        figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
        done = frame[frame["status"].isin(["complete", "stopped"])] if len(frame) else frame
        error = f"{accuracy}_se"
        if len(done) and accuracy in done and size in done:
            for status, marker, label in (("complete", "o", "trial"), ("stopped", "x", "stopped early")):
                rows = done[done["status"] == status]
                if len(rows):
                    axes.errorbar(rows[size] / 1e6, rows[accuracy], yerr=rows[error] if error in rows else None,
                                  fmt=marker, ms=4, c="0.6", ecolor="0.8", elinewidth=0.8, capsize=2, label=label)
            if len(pareto):
                axes.step(pareto[size] / 1e6, pareto[accuracy], where="post", c="tab:blue", lw=1.2)
                axes.errorbar(pareto[size] / 1e6, pareto[accuracy], yerr=pareto[error] if error in pareto else None,
                              fmt="o", ms=6, c="tab:blue", elinewidth=1.0, capsize=3, label="Pareto front", zorder=3)
            baseline = done[done["baseline"]]
            if len(baseline):
                axes.scatter(baseline[size] / 1e6, baseline[accuracy], s=140, marker="*", c="tab:red",
                             label="baseline", zorder=4)
        if floor is not None:
            axes.axhline(floor, ls="--", c="0.4", lw=0.8, label=f"no-answer floor {floor:.1f}")
        axes.set_xlabel("parameters (millions, embeddings included)")
        axes.set_ylabel(f"validation {accuracy}" + (" (bars: one standard error)" if error in done else ""))
        axes.set_title(title or "tune_distill frontier")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8, loc="lower right")
        return _save(figure, path)


def plot_importance(study: Any, objectives: Sequence[str], shown: Sequence[str], evaluator: Any,
                    evaluator_name: str, params: Sequence[str], path: str | Path) -> Path:
    """Optuna's parameter-importance bars (`plot_param_importances`) for the objectives `shown` (all of them in
    one picture, or the one objective; one on which every trial scored the same has nothing to show)."""
    from optuna.visualization.matplotlib import plot_param_importances

    with _pyplot():
        if list(shown) == list(objectives):
            axes = plot_param_importances(study, evaluator=evaluator, params=list(params))
        else:
            index = list(objectives).index(shown[0])
            axes = plot_param_importances(study, evaluator=evaluator, params=list(params),
                                          target=lambda trial: trial.values[index], target_name=shown[0])
        axes.set_title(f"Parameter importance\n{evaluator_name}", loc="left", fontsize=9)
        axes.figure.set_size_inches(8, max(3.0, 0.3 * len(params) * len(shown) + 1.5))
        return _save(axes.figure, Path(path))


def plot_hypervolume(study: Any, reference_point: Sequence[float], path: str | Path) -> Path:
    """Optuna's hypervolume over trials (`plot_hypervolume_history`) against the summary's reference point."""
    from optuna.visualization.matplotlib import plot_hypervolume_history

    with _pyplot():
        axes = plot_hypervolume_history(study, list(reference_point))
        axes.set_title("hypervolume of the complete, feasible trials so far")
        return _save(axes.figure, Path(path))


def plot_curves(study: Any, path: str | Path, metric: str = "exact") -> Path:
    """Every trial's `metric` at each evaluation (Optuna's `plot_intermediate_values`), with an 'x' by hand
    where a trial was stopped early."""
    from optuna.trial import TrialState
    from optuna.visualization.matplotlib import plot_intermediate_values

    with _pyplot():
        axes = plot_intermediate_values(study)
        stops = [(max(trial.intermediate_values), trial.intermediate_values[max(trial.intermediate_values)])
                 for trial in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
                 if trial.intermediate_values]
        legend = axes.get_legend()
        if legend is not None:
            legend.remove()  # one entry per trial: too many to read
        if stops:
            marks = axes.scatter([step for step, _ in stops], [value for _, value in stops], marker="x", s=60,
                                 c="black", zorder=5, label="stopped early here")
            axes.legend(handles=[marks], fontsize=8, loc="lower right")
        axes.set_xlabel("training step")
        axes.set_ylabel(f"validation {metric}")
        axes.set_title("learning curves (one line per trial)")
        axes.figure.set_size_inches(7, 4.5)
        return _save(axes.figure, Path(path))
