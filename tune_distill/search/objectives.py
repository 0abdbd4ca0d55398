"""What a search optimises: objectives (a metric and a direction) and constraints (a metric bound).

What it does: `Objective("exact", "max")`, `Constraint("exact", ">=", 55.4)` with its violation in
Optuna's convention (<= 0 is satisfied), and `DEFAULT_OBJECTIVES`, the objectives a sweep, its report
and its export use when none are named (most exact answers, fewest parameters).

What it must not know: searchers, search spaces, Ray or models. Whether a value satisfies a bound is
decided by `tune_distill.pareto.satisfies`, the package's one feasibility rule.

Example (CPU, instant):
    python -c "from tune_distill.search.objectives import Constraint as C; print(C('exact', '>=', 55.4).violation(50))"
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from tune_distill.pareto import satisfies
from tune_distill.search.errors import SearcherError

Direction = Literal["max", "min"]


@dataclass(frozen=True)
class Objective:
    """A metric to optimise, e.g. Objective("exact", "max")."""

    name: str
    direction: Direction

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SearcherError(f"objective name must be a non-empty string, got {self.name!r}")
        if self.direction not in ("max", "min"):
            raise SearcherError(f"objective {self.name!r}: direction must be 'max' or 'min', got {self.direction!r}")


# The objectives used when none are given: most exact answers for the fewest parameters.
DEFAULT_OBJECTIVES = (Objective("exact", "max"), Objective("parameters", "min"))


@dataclass(frozen=True)
class Constraint:
    """A metric bound, e.g. Constraint("exact", ">=", 55.4); a trial is feasible when every one holds."""

    name: str
    op: Literal[">=", "<="]
    bound: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SearcherError(f"constraint name must be a non-empty string, got {self.name!r}")
        if self.op not in (">=", "<="):
            raise SearcherError(f"constraint {self.name!r}: op must be '>=' or '<=', got {self.op!r}")
        if isinstance(self.bound, bool) or not isinstance(self.bound, (int, float)) or not math.isfinite(self.bound):
            raise SearcherError(f"constraint {self.name!r}: bound must be a finite number, got {self.bound!r}")

    def violation(self, value: float) -> float:
        """How far `value` is on the wrong side of the bound: <= 0 when satisfied (Optuna's convention)."""
        return float(self.bound - value) if self.op == ">=" else float(value - self.bound)

    def satisfied(self, value: float) -> bool:
        return satisfies(value, self.op, self.bound)
