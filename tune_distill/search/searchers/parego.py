"""The `parego` searcher: hyperopt's TPE on random augmented-Chebyshev scalarisations (ParEGO).

What it does: for every suggestion, draws a weight vector from the simplex, scores the completed
trials with `_parego_scores` (normalised objectives; infeasible trials rank after every feasible one)
and lets hyperopt's TPE propose the next point in the unit encoding of the space.

What it must not know: Optuna, BoTorch, Ray or models; hyperopt is imported only when a ParEGO
searcher is built.

Example (CPU, a few seconds):
    python -c "import numpy as np; from tune_distill.search.searchers.parego import _parego_scores; \\
print(_parego_scores(np.array([[0., 1.], [1., 0.]]), np.zeros((2, 0)), np.array([.5, .5]), 0.05))"
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from tune_distill.search.searchers.base import HistorySearcher


class ParEGOSearcher(HistorySearcher):
    """hyperopt TPE on ParEGO scalarisations: a fresh random weight vector for every suggestion.

    Objectives are normalised to [0, 1] over the observed trials (all made minimised), then combined
    with the augmented Chebyshev function max_j(w_j f_j) + rho * sum_j(w_j f_j) (Knowles 2006); weight
    vectors are drawn uniformly from the simplex. Infeasible trials score 2 + rho + the sum of their
    normalised violations, so every feasible trial beats every infeasible one and less violation is
    better. Numeric parameters are modelled in the unit encoding (log-uniform for log parameters),
    categorical ones with hp.choice.
    """

    name = "parego"

    def __init__(
        self, space, objectives, constraints, seed, n_startup_trials: int = 10, rho: float = 0.05,
        n_ei_candidates: int = 24, gamma: float = 0.25,
    ) -> None:
        import hyperopt  # noqa: F401  (fail early with ImportError if missing)

        super().__init__(space, objectives, constraints, seed)
        self.n_startup_trials = int(n_startup_trials)
        self.rho = float(rho)
        self.n_ei_candidates = int(n_ei_candidates)
        self.gamma = float(gamma)
        self._domain = None

    def options(self) -> dict[str, Any]:
        return {"n_startup_trials": self.n_startup_trials, "rho": self.rho, "n_ei_candidates": self.n_ei_candidates,
                "gamma": self.gamma}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_domain"] = None  # rebuilt on demand
        return state

    def _hyperopt_domain(self):
        from hyperopt import Domain, hp

        if self._domain is None:
            space = {
                p.name: hp.choice(p.name, list(range(len(p.choices)))) if p.type == "categorical"
                else hp.uniform(p.name, 0.0, 1.0)
                for p in self.space.params
            }
            logging.getLogger("hyperopt").setLevel(logging.WARNING)
            self._domain = Domain(lambda _: 0.0, space)
        return self._domain

    def _encode(self, params: Mapping[str, Any]) -> dict[str, float | int]:
        encoded = {}
        for p in self.space.params:
            if p.type == "categorical":
                encoded[p.name] = p._choice_index(params[p.name])
            else:
                encoded[p.name] = p.to_unit(params[p.name])
        return encoded

    def _scalarised_losses(self, weights: np.ndarray) -> np.ndarray:
        _, Y, V = self._history_arrays()
        return _parego_scores(Y, V, weights, self.rho)

    def _propose(self) -> dict[str, Any]:
        from hyperopt import JOB_STATE_DONE, STATUS_OK, Trials, tpe

        weights = self._rng.dirichlet(np.ones(len(self.objectives)))
        hyperopt_seed = int(self._rng.integers(2**31 - 1))
        trials = Trials()
        if self._completed:
            losses = self._scalarised_losses(weights)
            docs = []
            for tid, ((params, _, _), loss) in enumerate(zip(self._completed, losses)):
                vals = self._encode(params)
                misc = {
                    "tid": tid,
                    "cmd": ("domain_attachment", "FMinIter_Domain"),
                    "workdir": None,
                    "idxs": {name: [tid] for name in vals},
                    "vals": {name: [value] for name, value in vals.items()},
                }
                (doc,) = trials.new_trial_docs([tid], [None], [{"status": STATUS_OK, "loss": float(loss)}], [misc])
                doc["state"] = JOB_STATE_DONE
                docs.append(doc)
            trials.insert_trial_docs(docs)
            trials.refresh()
        (new_doc,) = tpe.suggest(
            [len(self._completed)],
            self._hyperopt_domain(),
            trials,
            hyperopt_seed,
            n_startup_jobs=self.n_startup_trials,
            n_EI_candidates=self.n_ei_candidates,
            gamma=self.gamma,
            verbose=False,
        )
        vals = {name: value[0] for name, value in new_doc["misc"]["vals"].items()}
        params = {}
        for p in self.space.params:
            value = vals[p.name]
            params[p.name] = p.choices[int(value)] if p.type == "categorical" else p.from_unit(float(value))
        return params


def _parego_scores(Y: np.ndarray, V: np.ndarray, weights: np.ndarray, rho: float) -> np.ndarray:
    """Augmented Chebyshev scores of minimised objectives Y (n x m); violations V (n x c) penalised."""
    low, high = Y.min(axis=0), Y.max(axis=0)
    normalised = (Y - low) / np.where(high > low, high - low, 1.0)
    weighted = normalised * weights
    scores = weighted.max(axis=1) + rho * weighted.sum(axis=1)
    if V.size:
        positive = np.clip(V, 0.0, None)
        scale = positive.max(axis=0)
        penalty = (positive / np.where(scale > 0, scale, 1.0)).sum(axis=1)
        infeasible = (V > 0).any(axis=1)
        scores = np.where(infeasible, 2.0 + rho + penalty, scores)
    return scores
