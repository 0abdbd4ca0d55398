"""The `replay` searcher: suggests a given list of samples in order, then nothing.

What it does: `ReplaySearcher` checks each sample against the space when it is built, hands them out
one per suggestion, and records observations without acting on them (fixed-trial comparisons,
re-runs of chosen points of an earlier sweep).

What it must not know: any search algorithm, Ray or models.

Example (CPU, instant):
    python -c "from tune_distill.search.searchers.replay import ReplaySearcher; print(ReplaySearcher.__doc__)"
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from tune_distill.search.errors import SearcherError
from tune_distill.search.searchers.base import HistorySearcher


class ReplaySearcher(HistorySearcher):
    """Suggests a given list of samples in order, then nothing: not a search, a re-run.

    For comparisons that must hold the trials fixed (the same students with and without early
    stopping in bench/early_stopping.py) and for re-running chosen points of an earlier sweep (with
    another seed, say). `trials` is a list of samples as searchers suggest them (the
    `params` of a sweep's trials.jsonl); each is checked against the space when the searcher is built.
    Observations are recorded and change nothing.
    """

    name = "replay"

    def __init__(self, space, objectives, constraints, seed, trials: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(space, objectives, constraints, seed)
        if isinstance(trials, (str, bytes)) or not isinstance(trials, Sequence) or not trials:
            raise SearcherError("searcher 'replay': option 'trials' must be a non-empty list of samples, "
                                f"got {type(trials).__name__}")
        checked = []
        for index, sample in enumerate(trials):
            if not isinstance(sample, Mapping):
                raise SearcherError(f"searcher 'replay': trials[{index}] must be a mapping of parameter "
                                    f"values, got {type(sample).__name__}")
            missing = sorted(set(space.names) - set(sample))
            unknown = sorted(set(sample) - set(space.names))
            if missing or unknown:
                raise SearcherError(f"searcher 'replay': trials[{index}]: missing {missing}, unknown {unknown} "
                                    f"(the space samples {list(space.names)})")
            for param in space.params:
                if not param.contains(sample[param.name]):
                    raise SearcherError(f"searcher 'replay': trials[{index}].{param.name}: {sample[param.name]!r} "
                                        "is outside the space")
            checked.append(dict(sample))
        self._trials = checked

    def options(self) -> dict[str, Any]:
        return {"trials": [dict(sample) for sample in self._trials]}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._n_suggested >= len(self._trials):
            return None
        return super().suggest(trial_id)

    def _propose(self) -> dict[str, Any]:
        return dict(self._trials[self._n_suggested])
