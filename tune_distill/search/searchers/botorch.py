"""The `botorch` searcher: qLogNEHVI with constraint models over the unit-cube encoding of the space.

What it does: `BoTorchSearcher` suggests scrambled Sobol points first, then fits one GP per
objective and per constraint and maximises BoTorch's qLogNoisyExpectedHypervolumeImprovement, with
pending trials as X_pending; a failed fit falls back to a random point so a sweep never stops.

What it must not know: Optuna, hyperopt, Ray or models. BoTorch and torch are optional and imported
only when a BoTorch searcher is built. This module is called `botorch` inside
`tune_distill.search.searchers`; its `import botorch` reaches the top-level package (absolute imports).

Example (CPU, about a minute, needs `pip install 'botorch>=0.12'`):
    python bench/searchers.py --searchers botorch --problems branin-currin --seeds 1 --out /tmp/bo.json
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Mapping

import numpy as np

from tune_distill.search.errors import SearcherError
from tune_distill.search.searchers.base import HistorySearcher

logger = logging.getLogger(__name__)


class BoTorchSearcher(HistorySearcher):
    """qLogNEHVI (BoTorch) with constraint models, over the unit-cube encoding of the space.

    One independent GP per objective and per constraint (SingleTaskGP, standardised outcomes);
    constraints enter the acquisition function as outcomes that must stay <= 0; pending trials are
    passed as X_pending. The hypervolume reference point is `reference_point` ({objective: value},
    e.g. the worst acceptable exact) when given, else the worst feasible observation minus 10% of
    the observed range. Discrete and categorical parameters are optimised as equal-width buckets of
    [0, 1] (a simple relaxation). Start-up points come from a scrambled Sobol sequence.
    """

    name = "botorch"

    def __init__(
        self, space, objectives, constraints, seed, n_startup_trials: int | None = None, num_restarts: int = 8,
        raw_samples: int = 256, mc_samples: int = 128, maxiter: int = 100,
        reference_point: Mapping[str, float] | None = None,
    ) -> None:
        import botorch  # noqa: F401
        import torch

        super().__init__(space, objectives, constraints, seed)
        dimension = len(space.params)
        self.n_startup_trials = int(n_startup_trials if n_startup_trials is not None else max(5, 2 * (dimension + 1)))
        self.num_restarts = int(num_restarts)
        self.raw_samples = int(raw_samples)
        self.mc_samples = int(mc_samples)
        self.maxiter = int(maxiter)
        if reference_point is not None:
            missing = [o.name for o in self.objectives if o.name not in reference_point]
            if missing:
                raise SearcherError(f"botorch: reference_point lacks {missing}")
            reference_point = {name: float(value) for name, value in reference_point.items()}
        self.reference_point = reference_point
        engine = torch.quasirandom.SobolEngine(dimension=dimension, scramble=True, seed=self.seed)
        self._sobol = engine.draw(self.n_startup_trials, dtype=torch.float64).numpy()
        self._hyperparameters: dict[str, Any] | None = None

    def options(self) -> dict[str, Any]:
        return {"n_startup_trials": self.n_startup_trials, "num_restarts": self.num_restarts,
                "raw_samples": self.raw_samples, "mc_samples": self.mc_samples, "maxiter": self.maxiter,
                "reference_point": self.reference_point}

    def _dump_state(self) -> dict[str, Any]:
        """The history, and the last fit's GP hyperparameters (the next fit starts from them) as numbers."""
        hyperparameters = None
        if self._hyperparameters is not None:
            hyperparameters = {key: {"dtype": str(value.dtype).removeprefix("torch."), "values": value.tolist()}
                               for key, value in self._hyperparameters.items()}
        return {**super()._dump_state(), "hyperparameters": hyperparameters}

    def _load_state(self, data: Mapping[str, Any]) -> None:
        import torch

        super()._load_state(data)
        saved = data.get("hyperparameters")
        if saved is None:
            self._hyperparameters = None
            return
        if not isinstance(saved, Mapping):
            raise SearcherError("searcher state (botorch).hyperparameters: expected an object or null")
        self._hyperparameters = {}
        for key, item in saved.items():
            dtype = getattr(torch, str(item.get("dtype")) if isinstance(item, Mapping) else "", None)
            if not isinstance(dtype, torch.dtype):
                raise SearcherError(f"searcher state (botorch).hyperparameters.{key}: expected {{dtype, values}}")
            self._hyperparameters[key] = torch.tensor(item.get("values"), dtype=dtype)

    def _propose(self) -> dict[str, Any]:
        if self._n_suggested < self.n_startup_trials:
            point = self._sobol[self._n_suggested]
        elif len(self._completed) < 2:
            point = self._rng.random(len(self.space.params))
        else:
            call_seed = int(self._rng.integers(2**31 - 1))
            try:
                point = self._optimise_acquisition(call_seed)
            except Exception as error:  # a failed GP fit must not end the sweep
                logger.warning(
                    "botorch: acquisition failed (%s: %s); suggesting a random point", type(error).__name__, error
                )
                point = self._rng.random(len(self.space.params))
        return {p.name: p.from_unit(u) for p, u in zip(self.space.params, point)}

    def _optimise_acquisition(self, call_seed: int) -> np.ndarray:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny matrices: one thread is faster and does not fight other work
        try:
            with torch.random.fork_rng(), warnings.catch_warnings():
                # Jitter and optimiser-restart warnings are routine on noise-free data; results are checked.
                warnings.simplefilter("ignore")
                torch.manual_seed(call_seed)
                return self._optimise_acquisition_seeded(call_seed)
        finally:
            torch.set_num_threads(threads)

    def _optimise_acquisition_seeded(self, call_seed: int) -> np.ndarray:
        import torch
        from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
        from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms.outcome import Standardize
        from botorch.optim import optimize_acqf
        from botorch.sampling import SobolQMCNormalSampler
        from gpytorch.mlls import ExactMarginalLogLikelihood

        X_np, Y_np, V_np = self._history_arrays()
        n_objectives = Y_np.shape[1]
        X = torch.tensor(X_np, dtype=torch.float64)
        # BoTorch maximises: negate the minimised objectives; constraint outcomes stay "<= 0 is feasible".
        outcomes = torch.tensor(np.concatenate([-Y_np, V_np], axis=1), dtype=torch.float64)
        model = SingleTaskGP(X, outcomes, outcome_transform=Standardize(m=outcomes.shape[-1]))
        if self._hyperparameters is not None:  # warm start from the previous fit: fewer L-BFGS steps
            model.load_state_dict(self._hyperparameters, strict=False)
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        self._hyperparameters = {
            key: value.detach().clone()
            for key, value in model.state_dict().items()
            if key.startswith(("covar_module.", "likelihood.", "mean_module."))
        }
        if self.reference_point is not None:
            signs = [1.0 if o.direction == "max" else -1.0 for o in self.objectives]
            reference = torch.tensor([sign * self.reference_point[o.name] for sign, o in zip(signs, self.objectives)])
        else:
            feasible = (outcomes[:, n_objectives:] <= 0).all(dim=-1)
            observed = outcomes[feasible, :n_objectives] if feasible.any() else outcomes[:, :n_objectives]
            reference = _reference_point(observed)
        pending = [[p.to_unit(params[p.name]) for p in self.space.params] for params in self._pending.values()]
        constraints = [(lambda Z, column=n_objectives + j: Z[..., column]) for j in range(V_np.shape[1])]
        acquisition = qLogNoisyExpectedHypervolumeImprovement(
            model=model,
            ref_point=reference.tolist(),
            X_baseline=X,
            sampler=SobolQMCNormalSampler(sample_shape=torch.Size([self.mc_samples]), seed=call_seed),
            objective=IdentityMCMultiOutputObjective(outcomes=list(range(n_objectives))),
            constraints=constraints or None,
            X_pending=torch.tensor(pending, dtype=torch.float64) if pending else None,
            prune_baseline=True,
        )
        dimension = X.shape[-1]
        bounds = torch.stack([torch.zeros(dimension), torch.ones(dimension)]).to(torch.float64)
        candidate, _ = optimize_acqf(
            acquisition,
            bounds=bounds,
            q=1,
            num_restarts=self.num_restarts,
            raw_samples=self.raw_samples,
            options={"batch_limit": 5, "maxiter": self.maxiter},
            retry_on_optimization_warning=False,
        )
        return candidate.detach().numpy().reshape(-1)


def _reference_point(observed):
    """Hypervolume reference for maximised outcomes: the worst observed values minus 10% of the range.

    Anchoring the reference at the observed front instead (BoTorch's infer_reference_point) leaves a
    box too small to improve when the front is one point or lies on a concave curve (ZDT2 stalled at
    its corner point (0, 1) for every seed); the worst observations keep the whole front worth
    improving. Optuna's samplers use the same "worst point" convention.
    """
    import torch

    spread = observed.max(dim=0).values - observed.min(dim=0).values
    worst = observed.min(dim=0).values
    spread = torch.where(spread > 0, spread, worst.abs().clamp_min(1e-6))
    return worst - 0.1 * spread
