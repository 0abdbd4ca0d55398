"""Ship one student of a sweep: a plain Hugging Face QA model folder, an ONNX file, and the figures.

Modules, in the order an export runs:
    choose    read a sweep folder's trials, pick one under exactly one rule (TrialChoice, trial_table)
    pad       a pruned student's missing heads put back as zeros: a vanilla BertForQuestionAnswering
    verify    a real verification batch, torch logits, the largest logit difference over real tokens
    onnx      model.onnx (dynamo exporter, opset 18, dynamic axes), its check, ONNX Runtime logits and latency
    bundle    export_trial: the folder, the checks, the timings, tune_distill.json (EXPORT_INFO_FILE)
    commands  `tune-distill export` (add_arguments, command), `--list` included
    errors    ExportError
Every public name is re-exported here, so callers import from `tune_distill.export`.

Must not know: Ray, the sweep module or searchers (it reads the sweep folder's files only), how
students were trained. It imports from config, data, runtime, evaluate, student, run (the git SHA),
records, report, pareto and search.objectives.

Example (CPU, under a minute on the smoke sweep's tiny students):
    tune-distill export --sweep sweeps/smoke --pick smallest-at-baseline --out exports/smoke-small \
        --latency-seq-length 96
"""

from tune_distill.export.bundle import (
    EXPORT_FORMAT_VERSION,
    EXPORT_INFO_FILE,
    VALIDATION_KEYS,
    export_trial,
    summary_lines,
)
from tune_distill.export.choose import (
    ACCURACY,
    FINISHED,
    LATENCY,
    PICK_RULES,
    SIZE,
    SweepTrials,
    TrialChoice,
    choose_trial,
    read_sweep,
    trial_table,
)
from tune_distill.export.commands import add_arguments, command
from tune_distill.export.errors import ExportError
from tune_distill.export.onnx import (
    ONNX_FILE,
    ONNX_OPSET,
    ONNX_TOLERANCE,
    export_onnx,
    measure_onnx_latency,
    onnx_input_names,
    onnx_logits,
    onnx_packages,
    onnx_session,
)
from tune_distill.export.pad import PADDING_TOLERANCE, kept_heads_per_layer, pad_pruned_heads
from tune_distill.export.verify import FALLBACK_QUESTIONS, VerifyBatch, max_diff, torch_logits, verification_batch

__all__ = [
    "ACCURACY", "EXPORT_FORMAT_VERSION", "EXPORT_INFO_FILE", "FALLBACK_QUESTIONS", "FINISHED", "LATENCY", "ONNX_FILE",
    "ONNX_OPSET", "ONNX_TOLERANCE", "PADDING_TOLERANCE", "PICK_RULES", "SIZE", "VALIDATION_KEYS",
    "ExportError", "SweepTrials", "TrialChoice", "VerifyBatch",
    "add_arguments", "choose_trial", "command", "export_onnx", "export_trial", "kept_heads_per_layer", "max_diff",
    "measure_onnx_latency", "onnx_input_names", "onnx_logits", "onnx_packages", "onnx_session", "pad_pruned_heads",
    "read_sweep", "summary_lines", "torch_logits", "trial_table", "verification_batch",
]
