"""Search spaces, objectives and constraints, searchers behind one ask/tell protocol, and `optimize`.

Modules (one concern each):
    errors       SearchSpaceError, SearcherError
    objectives   Objective, Constraint, DEFAULT_OBJECTIVES
    expression   the safe evaluator of bounds and derived keys
    space        Param, SearchSpace, parse_space, load_space, EXAMPLE_TEACHER_CONTEXT
    searchers/   the Searcher protocol, make_searcher and the searchers (optuna, parego, botorch, replay)
    optimize     TrialRecord, optimize: any searcher on a plain Python objective
    preview      the `space` subcommand: print resolved samples of a space
Pareto maths lives in `tune_distill.pareto`.

What it must not know: distillation, models, data or Ray. Values are plain named numbers
(objectives and constraint metrics); parameter keys are opaque strings.

Example (CPU, a few seconds): preview five resolved samples of a shipped space
    python -m tune_distill.search configs/space_rich.yaml --samples 5
"""

# Pareto maths moved to tune_distill.pareto; re-exported here while callers move there.
from tune_distill.pareto import (
    crowding_distance,
    hypervolume,
    hypervolume_contributions,
    hypervolume_reference,
    is_feasible,
    nadir_reference,
    non_dominated_sort,
    pareto_mask,
    satisfies,
)
from tune_distill.search.errors import SearcherError, SearchSpaceError
from tune_distill.search.expression import Expression
from tune_distill.search.objectives import DEFAULT_OBJECTIVES, Constraint, Direction, Objective
from tune_distill.search.optimize import TrialRecord, optimize
from tune_distill.search.searchers import (
    DEFAULT_SEARCHER,
    SEARCH_ALGORITHMS,
    SEARCHER_NAMES,
    Searcher,
    TrialStatus,
    available_searchers,
    make_searcher,
    parse_searcher_spec,
    restore_searcher,
    searcher_available,
)

# Saved searcher states and Ray's experiment checkpoints are pickles written when all of this was
# one module, tune_distill/search.py: they name classes as `tune_distill.search.<Class>`. Every class
# such a pickle can hold stays reachable under that old path, private ones included, so that old
# states still load (tests/test_searchers.py checks it). Do not remove these without a migration.
from tune_distill.search.searchers.base import HistorySearcher, Outcome, SearcherBase
from tune_distill.search.searchers.botorch import BoTorchSearcher
from tune_distill.search.searchers.optuna import OptunaSearcher
from tune_distill.search.searchers.parego import ParEGOSearcher
from tune_distill.search.searchers.replay import ReplaySearcher
from tune_distill.search.space import EXAMPLE_TEACHER_CONTEXT, Param, SearchSpace, load_space, parse_space

# The names those classes had when they were private (pickles name classes by the name they had then).
_Expression, _Outcome, _SearcherBase, _HistorySearcher = Expression, Outcome, SearcherBase, HistorySearcher

__all__ = [
    # errors, objectives, spaces
    "SearchSpaceError", "SearcherError", "Direction", "Objective", "Constraint", "DEFAULT_OBJECTIVES",
    "Param", "SearchSpace", "parse_space", "load_space", "EXAMPLE_TEACHER_CONTEXT",
    # searchers
    "DEFAULT_SEARCHER", "SEARCHER_NAMES", "SEARCH_ALGORITHMS", "Searcher", "TrialStatus", "make_searcher",
    "parse_searcher_spec", "searcher_available", "available_searchers", "restore_searcher",
    "OptunaSearcher", "ParEGOSearcher", "BoTorchSearcher", "ReplaySearcher",
    # running a searcher on a Python function
    "TrialRecord", "optimize",
    # kept for old pickles (see above)
    "_Expression", "_Outcome", "_SearcherBase", "_HistorySearcher",
    # Pareto maths, re-exported from tune_distill.pareto while callers move there
    "crowding_distance", "hypervolume", "hypervolume_contributions", "hypervolume_reference", "is_feasible",
    "nadir_reference", "non_dominated_sort", "pareto_mask", "satisfies",
]
