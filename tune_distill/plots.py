"""The report's pictures: frontier with standard errors, parameter importance, hypervolume over trials, learning curves.

What it does: each function writes one PNG (atomically, `files.atomic_path`), saved with a tight
bounding box so that no label or legend is cut off. Optuna's matplotlib visualisation draws where
it has the picture: `hypervolume.png` is `plot_hypervolume_history` (complete, feasible trials, in
trial order), `curves.png` is `plot_intermediate_values` (every trial's accuracy at each
evaluation; its lines named by trial id in a legend beside the axes). Drawn by hand, because
Optuna lacks it: the frontier with each point's standard error as an error bar (`plot_pareto_front`
has no error bars, and no baseline or no-answer floor), the Pareto points and baseline labelled
with their trial ids; `importance.png` (Optuna's `plot_param_importances` with several objectives
names the rows in the last objective's order, so the other objectives' bars sit beside the wrong
parameters); on the curves, the mark where each early-stopped trial was stopped. Axis labels name
the column plotted: `size_label` says whether a size counts the embeddings. Point labels are placed
by `label_points` where they overlap no other label, marker or error bar (the confirm picture uses it too).

What it must not know: Ray, how trials ran, the summary's figures (report.py computes them).

Example (CPU, seconds; a study and a results frame from report.py):
    tune-distill report --sweep sweeps/smoke     # writes these pictures into the sweep folder
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from tune_distill.files import atomic_path

SIZE_LABELS = {  # a size column's axis label: what it counts, in millions
    "parameters": "parameters (millions, embeddings included)",
    "non_embedding_parameters": "non-embedding parameters (millions, embeddings excluded)",
}
FROZEN = "tune_distill_layout_frozen"  # set on a figure whose layout `freeze_layout` fixed


def size_label(size: str) -> str:
    """The axis label of a size column plotted in millions, e.g. 'non-embedding parameters (millions, ...)'."""
    return SIZE_LABELS.get(size, f"{size} (millions)")


@contextmanager
def open_pyplot() -> Iterator[Any]:
    """matplotlib.pyplot on the Agg backend, with Optuna's 'experimental' warnings silenced and the style
    Optuna sets (`plt.style.use("ggplot")`) undone afterwards, so that it does not leak into the next picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield plt


def save_figure(figure: Any, path: Path) -> Path:
    """Write `figure` to `path` as a PNG (atomically, no label cut off) and close it; return `path`."""
    if figure.get_layout_engine() is None and not getattr(figure, FROZEN, False):
        figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", bbox_inches="tight", pad_inches=0.1)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path


def freeze_layout(figure: Any) -> Any:
    """Lay the figure out once (its layout engine, e.g. constrained) and keep it so: labels placed after this
    (`label_points`) keep the pixel positions they were checked at. Returns the renderer."""
    figure.canvas.draw()
    figure.set_layout_engine("none")
    setattr(figure, FROZEN, True)
    return figure.canvas.get_renderer()


def label_points(axes: Any, points: Sequence[tuple[float, float, str, float]],
                 avoid: Sequence[tuple[float, float, float]] = (), fontsize: float = 7) -> list[Any]:
    """Write each point's label (x, y, text, error bar half-height) beside it, in the given order, at the first
    place that stays inside the axes, overlaps no label already written, no point and no error bar (`points`,
    and `avoid`: (x, y, error bar half-height) of points left unlabelled), and lies nearer its own point than
    any other: beside the point, else further up or down with a thin leader line to it, else where it overlaps
    least. Call after `freeze_layout`. Returns the annotations."""
    from matplotlib.transforms import Bbox

    figure = axes.figure
    renderer = figure.canvas.get_renderer()
    scale = figure.dpi / 72.0  # points to pixels
    radius = 5.0 * scale  # a marker's half-width, the baseline's star included
    area = axes.bbox

    def box(x: float, y: float, error: float = 0.0) -> Any:
        """The pixels a marker (and its error bar) cover."""
        (centre, low), (_, high), (_, middle) = axes.transData.transform([(x, y - error), (x, y + error), (x, y)])
        return Bbox([[centre - radius, min(low, middle - radius)], [centre + radius, max(high, middle + radius)]])

    taken = [box(x, y, error or 0.0) for x, y, _, error in points] + [box(x, y, error or 0.0) for x, y, error in avoid]
    centres = axes.transData.transform([(x, y) for x, y, *_ in [*points, *avoid]]) if taken else []
    step = fontsize * 1.25
    offsets = [(6, 1), (6, -1), (-6, 1), (-6, -1)]
    offsets += [(sign_x * across, sign_y * step * k) for k in range(1, 13) for across in (10, 30)
                for sign_y in (1, -1) for sign_x in (1, -1)]
    written = []
    for x, y, text, _ in points:
        probe = axes.text(0, 0, text, fontsize=fontsize, transform=None)
        width, height = probe.get_window_extent(renderer).size
        probe.remove()
        px, py = axes.transData.transform((x, y))
        best = None
        for dx, dy in offsets:
            left = px + dx * scale if dx > 0 else px + dx * scale - width
            bottom = py + dy * scale if dy > 0 else py + dy * scale - height
            candidate = Bbox.from_bounds(left, bottom, width, height)
            inside = area.x0 <= candidate.x0 and candidate.x1 <= area.x1 and area.y0 <= candidate.y0 \
                and candidate.y1 <= area.y1
            overlap = sum(_overlap(candidate, other) for other in taken)
            own = _distance(candidate, px, py)
            misleading = any(_distance(candidate, cx, cy) < own - 0.5 for cx, cy in centres)
            score = (not inside, overlap > 0, misleading, overlap)
            if best is None or score < best[0]:
                best = (score, dx, dy, candidate)
            if score == (False, False, False, 0):
                break
        _, dx, dy, candidate = best
        leader = dict(arrowstyle="-", color="0.4", lw=0.6, shrinkA=0, shrinkB=2) if abs(dy) > step / 2 else None
        written.append(axes.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                                     ha="left" if dx > 0 else "right", va="bottom" if dy > 0 else "top",
                                     arrowprops=leader, annotation_clip=False, zorder=5))
        taken.append(candidate)
    return written


def _distance(box: Any, x: float, y: float) -> float:
    """Pixels from a display box to a display point (0 inside it)."""
    return math.hypot(max(box.x0 - x, 0.0, x - box.x1), max(box.y0 - y, 0.0, y - box.y1))


def _overlap(one: Any, other: Any) -> float:
    """The area two display boxes share (0 when they only touch)."""
    width = min(one.x1, other.x1) - max(one.x0, other.x0)
    height = min(one.y1, other.y1) - max(one.y0, other.y0)
    return width * height if width > 0 and height > 0 else 0.0


def plot_frontier(frame, pareto, path: str | Path, accuracy: str = "exact", size: str = "parameters",
                  floor: float | None = None, title: str = "") -> Path:
    """`size` (millions; `size_label` says what it counts) against `accuracy`: every finished trial, the Pareto
    front (labelled with trial ids), the baseline, each point's standard error (`<accuracy>_se`) as a vertical bar
    where the evaluation reported one; a legend beside the axes for every marker."""
    path = Path(path)
    with open_pyplot() as plt:
        figure, axes = plt.subplots(figsize=(8.5, 4.8), dpi=120, layout="constrained")
        done = frame[frame["status"].isin(["complete", "stopped"])] if len(frame) else frame
        error = f"{accuracy}_se"
        bars = len(done) and error in done and done[error].notna().any()
        drawable = len(done) and accuracy in done and size in done
        labels: list[tuple[float, float, str, float]] = []
        if drawable:
            member = done["kind"].eq("family") if "kind" in done else done["status"].isna()
            for rows, marker, label in ((done[(done["status"] == "complete") & ~member], "o", "trial, complete"),
                                        (done[(done["status"] == "stopped") & ~member], "x", "trial, stopped early"),
                                        (done[member], "^", "pruned after training (family member)")):
                if len(rows):
                    axes.errorbar(rows[size] / 1e6, rows[accuracy], yerr=rows[error] if error in rows else None,
                                  fmt=marker, ms=4, c="0.6", ecolor="0.8", elinewidth=0.8, capsize=2, label=label)
            baseline = done[done["baseline"]] if "baseline" in done else done.iloc[0:0]
            if len(pareto):
                axes.step(pareto[size] / 1e6, pareto[accuracy], where="post", c="tab:blue", lw=1.2)
                axes.errorbar(pareto[size] / 1e6, pareto[accuracy], yerr=pareto[error] if error in pareto else None,
                              fmt="o", ms=6, c="tab:blue", elinewidth=1.0, capsize=3, zorder=3,
                              label="Pareto front (trial ids beside)")
            if len(baseline):
                axes.scatter(baseline[size] / 1e6, baseline[accuracy], s=110, marker="*", c="tab:red",
                             label="baseline (trial id beside)", zorder=4)
            for rows in (baseline, pareto):
                for _, row in rows.iterrows():
                    spread = float(row.get(error) or 0.0)
                    labels.append((float(row[size]) / 1e6, float(row[accuracy]), str(row["trial_id"]),
                                   spread if math.isfinite(spread) else 0.0))
        if floor is not None:
            axes.axhline(floor, ls="--", c="0.4", lw=0.8, label=f"constraint: {accuracy} >= {floor:.1f}")
        axes.set_xlabel(size_label(size))
        axes.set_ylabel(f"validation {accuracy}")
        members = int(done["kind"].eq("family").sum()) if drawable and "kind" in done else 0
        finished = (f"{len(done) - members} finished trials" + (f" and {members} pruned members" if members else "")
                    + f", {len(pareto)} on the Pareto front") if drawable else "no finished trials"
        axes.set_title(title or f"frontier: validation {accuracy} against size\n{finished}", fontsize=10)
        axes.grid(alpha=0.3)
        axes.margins(x=0.08, y=0.08)
        handles, names = axes.get_legend_handles_labels()
        if handles:
            order = sorted(range(len(names)), key=lambda i: (not names[i].startswith("Pareto"),
                                                             not names[i].startswith("baseline"), i))
            axes.legend([handles[i] for i in order], [names[i] for i in order], fontsize=8, loc="upper left",
                        bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, title_fontsize=8,
                        title="bars: one standard error" if bars else None)
        freeze_layout(figure)
        spreads = done[error] if error in done else [0.0] * len(done)
        others = [(float(x) / 1e6, float(y), float(e) if e == e else 0.0)  # NaN: no bar
                  for x, y, e in zip(done[size], done[accuracy], spreads)] if drawable else []
        label_points(axes, list(dict.fromkeys(labels)), avoid=others)
        return save_figure(figure, path)


def plot_importance(study: Any, objectives: Sequence[str], shown: Sequence[str], evaluator: Any,
                    evaluator_name: str, params: Sequence[str], path: str | Path) -> Path:
    """Each parameter's importance (`optuna.importance.get_param_importances` with `evaluator`, normalised: an
    objective's shares sum to 1) for the objectives `shown` (one on which every trial scored the same has nothing
    to show): one row per parameter, most important (summed over `shown`) at the top, a bar per objective beside
    its value, a legend naming each objective's colour."""
    from optuna.importance import get_param_importances

    shares = {name: get_param_importances(study, evaluator=evaluator, params=list(params),
                                          target=lambda trial, index=list(objectives).index(name): trial.values[index])
              for name in shown}
    rows = sorted(params, key=lambda param: sum(share.get(param, 0.0) for share in shares.values()))
    with open_pyplot() as plt:
        figure, axes = plt.subplots(figsize=(8, max(3.0, 0.3 * len(params) * len(shown) + 1.5)), dpi=100,
                                    layout="constrained")
        height = 0.8 / max(1, len(shown))
        largest = max([value for share in shares.values() for value in share.values()] or [1.0])
        for index, name in enumerate(shown):
            offset = ((len(shown) - 1) / 2 - index) * height  # the first objective on top within its row
            values = [shares[name].get(param, 0.0) for param in rows]
            positions = [row + offset for row in range(len(rows))]
            axes.barh(positions, values, height=height, color=f"C{index}", label=name)
            for position, value in zip(positions, values):
                axes.text(value + 0.01 * largest, position, f"{value:.2f}" if value >= 0.01 else "<0.01",
                          va="center", fontsize=7)
        axes.set_yticks(range(len(rows)), rows, fontsize=8)
        axes.set_xlim(0, largest * 1.15)
        axes.set_ylim(-0.6, len(rows) - 0.4)
        axes.set_xlabel("importance (each objective's shares sum to 1)")
        axes.set_ylabel("parameter")
        axes.set_title(f"parameter importance\n{evaluator_name}", loc="left", fontsize=9)
        axes.grid(axis="x", alpha=0.3)
        axes.legend(title="objective", fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                    borderaxespad=0.0)
        return save_figure(figure, Path(path))


def plot_hypervolume(study: Any, reference_point: Sequence[float], path: str | Path) -> Path:
    """Optuna's hypervolume over trials (`plot_hypervolume_history`) against the summary's reference point."""
    from optuna.visualization.matplotlib import plot_hypervolume_history

    with open_pyplot():
        axes = plot_hypervolume_history(study, list(reference_point))
        names = study.metric_names or [f"objective {index}" for index in range(len(reference_point))]
        point = ", ".join(f"{name} {value:,.0f}" if abs(value) >= 1000 else f"{name} {value:.4g}"
                          for name, value in zip(names, reference_point))
        axes.set_title(f"hypervolume of the complete, feasible trials so far\n(units: {' × '.join(names)};\n"
                       f"reference point: {point})", fontsize=9)
        axes.set_xlabel("trial number")
        axes.set_ylabel("hypervolume")
        axes.figure.set_size_inches(7, 4.5)
        return save_figure(axes.figure, Path(path))


def plot_curves(study: Any, path: str | Path, metric: str = "exact", most_named: int = 20) -> Path:
    """Every trial's `metric` at each evaluation (Optuna's `plot_intermediate_values`), with an 'x' by hand
    where a trial was stopped early, and a legend beside the axes: each line named by trial id (grey: a trial
    outside the constraints), or, past `most_named` lines, one colour for all with one legend entry."""
    from matplotlib.colors import same_color
    from matplotlib.lines import Line2D
    from optuna.trial import TrialState
    from optuna.visualization.matplotlib import plot_intermediate_values

    with open_pyplot():
        axes = plot_intermediate_values(study)
        stops = [(max(trial.intermediate_values), trial.intermediate_values[max(trial.intermediate_values)])
                 for trial in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
                 if trial.intermediate_values]
        legend = axes.get_legend()
        if legend is not None:
            legend.remove()
        by_number = {trial.number: trial for trial in study.get_trials(deepcopy=False)}
        lines = [line for line in axes.get_lines() if line.get_label().startswith("Trial")]
        grey = [line for line in lines if same_color(line.get_color(), "#CCCCCC")]  # Optuna's: infeasible trials
        handles = []
        for line in lines:
            number = int(line.get_label()[len("Trial"):])
            trial = by_number.get(number)
            name = trial.user_attrs.get("tune_trial_id") if trial is not None else None
            line.set_label(f"{name or 'trial'} (#{number})" + (", infeasible" if line in grey else ""))
            if len(lines) > most_named:
                line.set_color("0.8" if line in grey else "tab:blue")
        if len(lines) > most_named:
            handles.append(Line2D([], [], color="tab:blue", marker=".", alpha=0.7, label="trial (one line each)"))
            if grey:
                handles.append(Line2D([], [], color="0.8", marker=".", alpha=0.7, label="infeasible trial"))
        else:
            handles += lines
        if stops:
            handles.append(axes.scatter([step for step, _ in stops], [value for _, value in stops], marker="x", s=60,
                                        c="black", zorder=5, label="stopped early here"))
        if handles:
            axes.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                        title="trial id (number)" if len(lines) <= most_named else None, title_fontsize=7)
        axes.set_xlabel("training step")
        axes.set_ylabel(f"validation {metric}")
        axes.set_title("learning curves (one line per trial)")
        axes.figure.set_size_inches(8.5, 4.5)
        return save_figure(axes.figure, Path(path))
