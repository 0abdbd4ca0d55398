"""Pareto maths and the feasibility rule: one implementation for search, schedulers, report and export.

What it does: non-dominated sorting, the Pareto mask, exact hypervolume (with the reference points this
package measures against and each point's exclusive contribution), NSGA-II crowding distance, and
whether a trial's metrics satisfy its constraints (`is_feasible` for one trial, `feasible_mask` for a
table of them). Values are rows of objective values with a direction per column ('max' or 'min').

Why our own code and not a library: the sets here are small (a rung's trials, a sweep's few hundred
students) and need mixed directions, NaN checks and duplicate handling in one place. Optuna's
`optuna._hypervolume` is private API that moves between releases; moocore and pymoo are extra
compiled dependencies for a few dozen lines of numpy; BoTorch pulls in torch-side machinery we only
want in the `botorch` searcher. `tests/test_pareto.py` checks ours against moocore (where installed)
and Optuna's hypervolume on random fronts.

What it must not know: models, data, Ray, searchers or configuration files. Constraints are anything
with `name`, `op` ('>=' or '<=') and `bound` (a `search.Constraint` or a mapping with those keys).

Example (CPU, instant):
    python -c "from tune_distill.pareto import hypervolume as h; print(h([[1, 2], [2, 1]], ['min', 'min'], [3, 3]))"
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

CONSTRAINT_OPS = (">=", "<=")


def _constraint_parts(constraint: Any) -> tuple[str, str, float]:
    if isinstance(constraint, Mapping):
        name, op, bound = constraint.get("name"), constraint.get("op"), constraint.get("bound")
    else:
        name, op, bound = constraint.name, constraint.op, constraint.bound
    if (not isinstance(name, str) or op not in CONSTRAINT_OPS or isinstance(bound, bool)
            or not isinstance(bound, (int, float))):
        raise ValueError(f"constraint {constraint!r}: expected a name, op '>=' or '<=' and a numeric bound")
    return name, op, float(bound)


def satisfies(value: Any, op: str, bound: float) -> bool:
    """The one feasibility rule: a finite value on the right side of the bound (missing/NaN fails)."""
    if value is None or isinstance(value, bool):
        return False
    try:
        value = float(value)
    except (TypeError, ValueError):
        return False
    if not math.isfinite(value):
        return False
    return value >= bound if op == ">=" else value <= bound


def is_feasible(metrics: Mapping[str, Any], constraints: Sequence[Any]) -> bool:
    """True when every constraint holds for one trial's metrics (a missing metric counts as violated)."""
    for constraint in constraints:
        name, op, bound = _constraint_parts(constraint)
        if not satisfies(metrics.get(name), op, bound):
            return False
    return True


def feasible_mask(frame: Any, constraints: Sequence[Any]) -> np.ndarray:
    """`is_feasible` for every row of a table (a pandas DataFrame): a boolean array, one per row."""
    ok = np.ones(len(frame), dtype=bool)
    for constraint in constraints:
        name, op, bound = _constraint_parts(constraint)
        values = frame[name].to_numpy(dtype=float) if name in frame else np.full(len(frame), np.nan)
        with np.errstate(invalid="ignore"):
            ok &= np.isfinite(values) & ((values >= bound) if op == ">=" else (values <= bound))
    return ok




def minimisation_form(values: Any, directions: Sequence[str]) -> np.ndarray:
    """Rows of objective values with 'max' columns negated, as a float (n, m) array."""
    array = np.asarray(values, dtype=float)
    if array.ndim == 1:
        array = array.reshape(-1, len(directions)) if array.size else array.reshape(0, len(directions))
    if array.ndim != 2 or array.shape[1] != len(directions):
        raise ValueError(f"values must be an (n, {len(directions)}) array, got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError("values contain NaN")
    signs = []
    for direction in directions:
        if direction in ("min", "minimize"):
            signs.append(1.0)
        elif direction in ("max", "maximize"):
            signs.append(-1.0)
        else:
            raise ValueError(f"direction must be 'min' or 'max', got {direction!r}")
    return array * np.array(signs)


def dominance_matrix(points: np.ndarray) -> np.ndarray:
    """dominates[i, j]: point i is no worse than j everywhere and better somewhere (minimisation)."""
    no_worse = (points[:, None, :] <= points[None, :, :]).all(axis=-1)
    better = (points[:, None, :] < points[None, :, :]).any(axis=-1)
    return no_worse & better


def non_dominated_sort(values: Any, directions: Sequence[str]) -> list[np.ndarray]:
    """Fronts of row indices: front 0 is the Pareto set, front 1 the Pareto set of the rest, ...

    Equal rows never dominate each other and land in the same front.
    """
    points = minimisation_form(values, directions)
    return fronts_of(dominance_matrix(points)) if len(points) else []


def fronts_of(dominates: np.ndarray) -> list[np.ndarray]:
    """Fronts of row indices peeled off a dominance relation (dominates[i, j]: i dominates j; acyclic):
    plain Pareto dominance (`dominance_matrix`) or another, e.g. the noise-aware one of sweep/ranking.py."""
    dominates = np.asarray(dominates, dtype=bool)
    remaining = np.ones(len(dominates), dtype=bool)
    fronts = []
    while remaining.any():
        current = np.flatnonzero(remaining & ~dominates[remaining].any(axis=0))
        if not current.size:
            raise ValueError("the dominance relation has a cycle")
        fronts.append(current)
        remaining[current] = False
    return fronts


def pareto_mask(values: Any, directions: Sequence[str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows (duplicates of a non-dominated row are all kept)."""
    points = minimisation_form(values, directions)
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    if points.shape[1] == 2:
        unique, inverse = np.unique(points, axis=0, return_inverse=True)  # sorted by f0, then f1
        best_before = np.minimum.accumulate(np.concatenate([[np.inf], unique[:-1, 1]]))
        return (unique[:, 1] < best_before)[inverse.reshape(-1)]
    mask = np.ones(len(points), dtype=bool)
    for start in range(0, len(points), 512):
        chunk = points[start:start + 512]
        no_worse = (points[:, None, :] <= chunk[None, :, :]).all(axis=-1)
        better = (points[:, None, :] < chunk[None, :, :]).any(axis=-1)
        mask[start:start + 512] = ~(no_worse & better).any(axis=0)
    return mask


def hypervolume(values: Any, directions: Sequence[str], reference_point: Sequence[float]) -> float:
    """Exact hypervolume dominated by `values` and bounded by `reference_point`.

    `reference_point` is in the same units and directions as the values (for a 'max' objective it is
    a lower bound). Points that do not strictly beat the reference in every objective add nothing.
    2-D by a sweep line, more objectives by slicing along the last one (fine for small sets).
    """
    points = minimisation_form(values, directions)
    reference = minimisation_form(np.asarray(reference_point, dtype=float).reshape(1, -1), directions)[0]
    points = points[(points < reference).all(axis=1)]
    if len(points) == 0:
        return 0.0
    points = points[pareto_mask(points, ["min"] * points.shape[1])]
    return float(_hypervolume_min(np.unique(points, axis=0), reference))


def _hypervolume_min(points: np.ndarray, reference: np.ndarray) -> float:
    m = points.shape[1]
    if len(points) == 0:
        return 0.0
    if m == 1:
        return float(reference[0] - points[:, 0].min())
    if m == 2:
        order = np.lexsort((points[:, 1], points[:, 0]))
        volume, level = 0.0, reference[1]
        for f0, f1 in points[order]:
            if f1 < level:
                volume += (reference[0] - f0) * (level - f1)
                level = f1
        return volume
    order = np.argsort(points[:, -1], kind="stable")
    ordered = points[order]
    volume = 0.0
    for i in range(len(ordered)):
        upper = ordered[i + 1, -1] if i + 1 < len(ordered) else reference[-1]
        thickness = upper - ordered[i, -1]
        if thickness > 0:
            slice_points = ordered[: i + 1, :-1]
            slice_points = slice_points[pareto_mask(slice_points, ["min"] * (m - 1))]
            volume += thickness * _hypervolume_min(slice_points, reference[:-1])
    return volume


def hypervolume_reference(values: Any, directions: Sequence[str],
                          floors: Sequence[float | None] | None = None) -> list[float]:
    """The reference point this package measures hypervolume against.

    Per objective: for 'max', its floor when one is given (a constraint's bound, e.g. the no-answer
    score), else the worst (smallest) value seen; for 'min', 1.1 x the largest value seen. So the
    least accurate point adds nothing unless a floor says otherwise, and the largest point still adds
    a sliver. Empty columns give 0.
    """
    array = np.asarray(values, dtype=float).reshape(-1, len(directions))
    floors = list(floors) if floors is not None else [None] * len(directions)
    reference = []
    for column, direction, floor in zip(array.T, directions, floors):
        finite = column[np.isfinite(column)]
        if direction == "max":
            reference.append(float(floor) if floor is not None else float(finite.min()) if len(finite) else 0.0)
        else:
            reference.append(float(finite.max()) * 1.1 if len(finite) else 0.0)
    return reference


def nadir_reference(values: Any, directions: Sequence[str], margin: float = 0.1) -> list[float]:
    """The set's worst value per objective pushed out by `margin` x the objective's range (scale-free).

    Used to rank a handful of points by hypervolume contribution: every point on the first front,
    the extremes included, owns a box, and an extreme's box is as wide as `margin` of the spread, so
    neither the most accurate nor the smallest point wins or loses by convention. Where all points
    agree on an objective the reference sits on them (that objective then separates nothing).
    """
    array = minimisation_form(np.asarray(values, dtype=float).reshape(-1, len(directions)), directions)
    if len(array) == 0:
        return [0.0] * len(directions)
    worst, best = array.max(axis=0), array.min(axis=0)
    reference = worst + margin * (worst - best)  # in minimisation form
    return [float(-r) if d == "max" else float(r) for r, d in zip(reference, directions)]


def hypervolume_contributions(values: Any, directions: Sequence[str], reference_point: Sequence[float]) -> np.ndarray:
    """Exclusive hypervolume of each row: how much the set's hypervolume drops without it.

    Dominated rows and duplicates of another row contribute 0 (the other copy still covers them).
    """
    array = np.asarray(values, dtype=float)
    total = hypervolume(array, directions, reference_point)
    everyone = np.arange(len(array))
    return np.array([total - hypervolume(array[everyone != i], directions, reference_point) for i in everyone])


def crowding_distance(values: Any, directions: Sequence[str]) -> np.ndarray:
    """NSGA-II crowding distance of each row within the given set (usually one front).

    Per objective, the gap between a row's two neighbours divided by the objective's range, summed;
    the extreme rows of every objective get infinity. Objectives where all rows agree add nothing.
    """
    points = minimisation_form(values, directions)
    n, m = points.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(points[:, j], kind="stable")
        column = points[order, j]
        spread = column[-1] - column[0]
        if spread <= 0:
            continue
        distance[order[0]] = distance[order[-1]] = np.inf
        distance[order[1:-1]] += (column[2:] - column[:-2]) / spread
    return distance
