"""Post-training pruning of a trained student (Kwon et al., 2022, "A Fast Post-Training Pruning Framework for
Transformers", NeurIPS): no retraining, minutes on a CPU.

Modules, in the order a pruning runs:
    fisher     measure_fisher: the empirical Fisher of the head and neuron masks, from per-window gradients
    budget     costs, budget: what a head and a neuron cost (parameters or FLOPs) and what a keep share allows
    search     search_mask: the heads and neurons that keep the most Fisher score within the budget
    rearrange  rearrange: per layer, the same counts moved where the layer's full Fisher block says they cost less
    apply      apply_masks: a copy physically pruned, layers of their own shapes (student.load_student rebuilds it)
    core       prune_model: the steps above, then importance.mask_tuning; PrunedModel
    family     one trained run's pruned members, one per budget, scored like runs (the command)

Must not know (the modules above family): runs, trials, Ray, evaluation metrics, files other than a model's.

Example (CPU, a few minutes for a 3-layer hidden-384 student):
    from tune_distill.prune import measure_fisher, prune_model
    fisher = measure_fisher(student, features, teacher=teacher_logits, windows=256)
    member = prune_model(student, fisher, keep=0.5, features=features, seq_length=256)
"""

from tune_distill.prune.apply import apply_masks
from tune_distill.prune.budget import Costs, budget, costs
from tune_distill.prune.core import PrunedModel, prune_model
from tune_distill.prune.fisher import Fisher, measure_fisher

__all__ = ["Costs", "Fisher", "PrunedModel", "apply_masks", "budget", "costs", "measure_fisher", "prune_model"]
