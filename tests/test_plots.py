"""The pictures people read: axis labels name what is plotted, nothing is cut off or printed over itself, a legend
entry for every colour and marker, and importance bars beside the parameter they belong to (Agg, seconds)."""

from __future__ import annotations

import itertools
import warnings

import pandas as pd
import pytest
from matplotlib.text import Text

from tune_distill import plots  # its pictures draw on the Agg backend


@pytest.fixture
def drawn(monkeypatch):
    """Each figure the plots save, with the display boxes of its texts measured just before it is saved."""
    figures = []
    original = plots.save_figure

    def measure(figure, path):
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        boxes = {}
        texts = [figure._suptitle] + [text for axes in figure.axes for text in
                                      (axes.title, axes._left_title, axes._right_title, axes.xaxis.label,
                                       axes.yaxis.label)]
        for text in texts:
            if text is not None and text.get_visible() and text.get_text():
                boxes[f"text {text.get_text()!r}"] = text.get_window_extent(renderer)
        for number, legend in enumerate([*figure.legends, *(axes.get_legend() for axes in figure.axes)]):
            if legend is not None:
                boxes[f"legend {number}"] = legend.get_window_extent(renderer)
        labels = {}
        for number, axes in enumerate(figure.axes):
            for note in axes.texts:
                if hasattr(note, "xyann"):  # a point label (Annotation): its text's box, not its leader line
                    labels[(number, note.get_text())] = (Text.get_window_extent(note, renderer),
                                                         axes.transData.transform(note.xy), axes.bbox.frozen())
        figures.append({"figure": figure, "boxes": boxes, "labels": labels, "area": figure.bbox.frozen()})
        return original(figure, path)

    monkeypatch.setattr(plots, "save_figure", measure)
    return figures


def assert_readable(picture):
    """No title, axis label or legend outside the figure (cut off) or over another; no point label over another
    label or over another labelled point, and each inside its axes."""
    area = picture["area"]
    for name, box in picture["boxes"].items():
        assert area.x0 - 1 <= box.x0 and box.x1 <= area.x1 + 1 and area.y0 - 1 <= box.y0 and box.y1 <= area.y1 + 1, \
            f"{name} is cut off: {box} outside {area}"
    for (one, first), (other, second) in itertools.combinations(picture["boxes"].items(), 2):
        assert plots._overlap(first, second) == 0, f"{one} is printed over {other}"
    labels = picture["labels"]
    for (key, (box, _, _)), (other, (second, _, _)) in itertools.permutations(labels.items(), 2):
        if key[0] == other[0]:
            assert plots._overlap(box, second) == 0, f"label {key[1]} is printed over label {other[1]}"
    for key, (box, _, axes_box) in labels.items():
        assert axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1 and axes_box.y0 <= box.y0 and box.y1 <= axes_box.y1
        for other, (_, (x, y), _) in labels.items():
            if other[0] == key[0] and other != key:
                assert not (box.x0 < x < box.x1 and box.y0 < y < box.y1), f"label {key[1]} covers point {other[1]}"


def _frame(size="parameters"):
    """Finished trials, crowded at one size as real sweeps are (several students share the baseline's shape)."""
    rows = [("base", "complete", True, 5_324_162, 48.0), ("p1", "complete", False, 3_552_194, 48.3),
            ("p2", "complete", False, 3_847_586, 49.5), ("p3", "complete", False, 5_324_162, 51.1),
            ("o1", "complete", False, 5_324_162, 50.6), ("o2", "complete", False, 5_324_162, 50.59),
            ("o3", "stopped", False, 4_290_338, 40.3), ("o4", "failed", False, None, None)]
    frame = pd.DataFrame([{"trial_id": trial, "status": status, "baseline": baseline, size: value,
                           "exact": accuracy, "exact_se": 1.5} for trial, status, baseline, value, accuracy in rows])
    return frame, frame[frame["trial_id"].isin(["p1", "p2", "p3"])].sort_values(size)


@pytest.mark.parametrize("size", ["parameters", "non_embedding_parameters"])
def test_frontier_names_the_plotted_size_and_keeps_everything_readable(tmp_path, drawn, size):
    frame, pareto = _frame(size)
    plots.plot_frontier(frame, pareto, tmp_path / "frontier.png", accuracy="exact", size=size, floor=40.0)
    assert (tmp_path / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    picture = drawn[-1]
    axes = picture["figure"].axes[0]
    assert axes.get_xlabel() == plots.size_label(size)
    assert ("embeddings excluded" if size == "non_embedding_parameters" else "embeddings included") in axes.get_xlabel()
    assert "exact" in axes.get_ylabel()
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    for entry in ("Pareto front", "baseline", "trial, complete", "trial, stopped early", "constraint: exact >= 40.0"):
        assert any(name.startswith(entry) for name in legend), (entry, legend)
    assert {key[1] for key in picture["labels"]} == {"base", "p1", "p2", "p3"}  # the baseline and the Pareto points
    assert_readable(picture)


def test_labels_of_a_crowded_column_do_not_overlap(tmp_path, drawn):
    with plots.open_pyplot() as plt:
        figure, axes = plt.subplots(figsize=(5, 3.5), dpi=100, layout="constrained")
        points = [(1.0, 50 + 0.05 * index, f"trial{index:02d}", 0.5) for index in range(8)]
        points += [(1.05, 50.1, "neighbour", 0.3), (2.0, 40.0, "far", 0.0)]
        axes.errorbar([x for x, *_ in points], [y for _, y, *_ in points], yerr=[e for *_, e in points], fmt="o")
        axes.margins(x=0.15, y=0.1)
        plots.freeze_layout(figure)
        written = plots.label_points(axes, points)
        assert [note.get_text() for note in written] == [text for _, _, text, _ in points]
        plots.save_figure(figure, tmp_path / "crowded.png")
    assert_readable(drawn[-1])


def _confirm_rows():
    rows = []
    for trial, role, size, validation, confirmation in (
            ("4812e13e", "baseline", 5_324_162, 48.05, 55.2), ("265c4ade", "pareto", 3_552_194, 48.3, 50.0),
            ("cf1b69ea", "pareto", 3_847_586, 49.5, 53.8), ("04f27a67", "pareto", 5_324_162, 51.1, 56.0),
            ("275f6871", "asked", 5_324_162, 50.64, 54.9), ("792532a8", "asked", 5_324_162, 50.59, 56.4),
            ("9f73341d", "asked", 3_552_194, 47.1, 50.7), ("00860950", "asked", 3_699_746, 48.3, 51.9)):
        gain = None if role == "baseline" else 1.2
        rows.append({"trial_id": trial, "role": role, "non_embedding_parameters": size,
                     "validation_HasAns_f1": validation, "confirmation_HasAns_f1": confirmation,
                     "validation_gain_se": gain, "confirmation_gain_se": gain})
    return rows


def test_confirm_picture_has_separate_titles_apart_labels_and_a_legend_per_role(tmp_path, drawn):
    from tune_distill.confirm import ROLES, _frontier

    _frontier(_confirm_rows(), "HasAns_f1", "non_embedding_parameters", tmp_path / "confirm.png")
    assert (tmp_path / "confirm.png").read_bytes()[:4] == b"\x89PNG"
    picture = drawn[-1]
    figure = picture["figure"]
    assert figure._suptitle is not None and "HasAns_f1" in figure._suptitle.get_text()
    assert [axes.get_title() for axes in figure.axes][0].startswith("validation")
    assert all(axes.get_xlabel() == plots.size_label("non_embedding_parameters") for axes in figure.axes)
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == [entry for _, _, entry in ROLES.values()]  # one entry per colour (role), in role order
    assert len(picture["labels"]) == 2 * len(_confirm_rows())  # every trial labelled on both panels
    assert_readable(picture)


def _study(trials=16, pruned=False):
    """Two objectives: the first depends on `a` only, the second on `b` only (so their importances differ)."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    study = optuna.create_study(directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["exact", "parameters"])
    distributions = {"a": FloatDistribution(0, 1), "b": FloatDistribution(0, 1), "c": FloatDistribution(0, 1)}
    for number in range(trials):
        a, b, c = (number * 0.37) % 1, (number * 0.61) % 1, (number * 0.13) % 1
        stopped = pruned and number == trials - 1
        study.add_trial(create_trial(
            params={"a": a, "b": b, "c": c}, distributions=distributions, values=None if stopped else [a, b],
            state=TrialState.PRUNED if stopped else TrialState.COMPLETE,
            intermediate_values={10: a / 2, 20: a}, user_attrs={"tune_trial_id": f"id{number:02d}"}))
    return study


def test_importance_bars_sit_beside_their_own_parameter(tmp_path, drawn):
    from optuna.importance import FanovaImportanceEvaluator

    study = _study()
    plots.plot_importance(study, ["exact", "parameters"], ["exact", "parameters"], FanovaImportanceEvaluator(seed=0),
                          "fANOVA", ["a", "b", "c"], tmp_path / "importance.png")
    picture = drawn[-1]
    axes = picture["figure"].axes[0]
    rows = {round(tick): label.get_text() for tick, label in zip(axes.get_yticks(), axes.get_yticklabels())}
    bars = {container.get_label(): {rows[round(patch.get_y() + patch.get_height() / 2)]: patch.get_width()
                                    for patch in container.patches} for container in axes.containers}
    assert set(bars) == {"exact", "parameters"}
    assert bars["exact"]["a"] > 0.5 > bars["exact"]["b"]  # Optuna's own picture put these beside the wrong rows
    assert bars["parameters"]["b"] > 0.5 > bars["parameters"]["a"]
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["exact", "parameters"]
    assert_readable(picture)


def test_curves_and_hypervolume_name_their_lines_and_axes(tmp_path, drawn):
    study = _study(trials=6, pruned=True)
    plots.plot_curves(study, tmp_path / "curves.png", metric="exact")
    curves = drawn[-1]
    legend = [text.get_text() for text in curves["figure"].axes[0].get_legend().get_texts()]
    assert legend == [f"id{number:02d} (#{number})" for number in range(6)] + ["stopped early here"]
    assert_readable(curves)
    plots.plot_curves(study, tmp_path / "curves.png", metric="exact", most_named=3)  # too many: one entry for all
    legend = [text.get_text() for text in drawn[-1]["figure"].axes[0].get_legend().get_texts()]
    assert legend == ["trial (one line each)", "stopped early here"]
    plots.plot_hypervolume(study, [0.0, 1.1], tmp_path / "hypervolume.png")
    hypervolume = drawn[-1]
    axes = hypervolume["figure"].axes[0]
    assert "reference point: exact 0, parameters 1.1" in axes.get_title() and axes.get_xlabel() == "trial number"
    assert_readable(hypervolume)
