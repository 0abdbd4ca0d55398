"""Ship one student of a sweep: a plain Hugging Face QA model folder, an ONNX file, and the figures.

What it does:
  * `choose_trial` picks a trial from a sweep folder's records (`trials.jsonl` as the sweep wrote it,
    read with report.read_trials / report.results_frame, or `results.parquet` when only that is
    there; objectives and constraints from `sweep.json`). Only finished trials (complete or stopped
    early) whose run folder still holds a saved `model/` qualify. Rules: an explicit trial id;
    `smallest-at-baseline` (the smallest feasible Pareto student, on exact vs parameters, whose exact
    is at least the baseline trial's); `best-exact`; the best exact with at most N parameters; the
    best exact with a batch-1 latency (`latency_ms_b1`, as the sweep measured it) of at most X ms.
    Ties go to the smaller model. Every refusal names what was asked and lists the trials there are.
  * `export_trial` writes `out/`: `config.json`, `model.safetensors` and the tokenizer files, which
    `AutoModelForQuestionAnswering.from_pretrained(out)` / `AutoTokenizer.from_pretrained(out)` load
    as they are (vanilla BertForQuestionAnswering, no custom code). A pruned student (fewer heads
    than its width implies, `student.PRUNED_HEADS_KEY` in its config) cannot be written as a
    vanilla BertConfig, so its missing heads are put back as zeros: zero Q/K/V rows (weights and
    biases) and zero columns of the attention output projection. A zero head attends uniformly
    (all its scores are 0) to zero values and is projected by zero columns, so it adds exactly 0
    and the logits are the pruned student's up to float32 summation order (checked on a real batch
    against PADDING_TOLERANCE, recorded). Feed-forward pruning
    keeps one `intermediate_size` for every layer, which BertConfig expresses, so neurons need no
    padding. `tune_distill.json` records the no-answer threshold, validation metrics, tokenisation
    lengths, parameters (the true pruned count and the padded count on disk), and provenance (sweep
    folder, trial, resolved run config, training environment, git SHA, export time, version).
  * ONNX (`model.onnx`, on by default): torch.onnx's dynamo exporter at opset 18 with dynamic batch
    and sequence axes; inputs input_ids, attention_mask (and token_type_ids when the model takes
    them), outputs start_logits, end_logits. The legacy TorchScript exporter (dynamo=False) is not
    used: with transformers 5 its trace of the attention-mask code does not generalise (logit errors
    of 0.02-0.2 against PyTorch on other batches, measured on a tiny BERT with torch 2.13). The file is checked with onnx.checker and run with ONNX
    Runtime on the verification batch and on a single window; the largest absolute logit difference
    against PyTorch must stay within ONNX_TOLERANCE and is recorded.
  * Latency of PyTorch (evaluate.measure_latency) and ONNX Runtime (same random inputs, warm-up,
    median of repeats, same thread count) at batch 1 and 32 and a fixed sequence length; printed and
    recorded.

The verification batch is real questions: the first `verify_questions` of the run's validation
file (data.val_file of its config.yaml, or --verify-data), windowed exactly as evaluation windows are.

Must not know: Ray, the sweep module or searchers (it reads the sweep folder's files only), how
students were trained. It imports from config, data, teacher, student, evaluate, run (the git SHA) and report.

Example (CPU, under a minute on the smoke sweep's tiny students):
    tune-distill export --sweep sweeps/smoke --pick smallest-at-baseline --out exports/smoke-small \
        --latency-seq-length 96
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import math
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

import tune_distill
from tune_distill.config import ConfigError, read_yaml
from tune_distill.data import FeatureSet, SquadExample, features_to_table, load_examples, prepare_eval_features
from tune_distill.evaluate import measure_latency
from tune_distill.pareto import feasible_mask
from tune_distill.report import pareto_rows, read_trials, results_frame
from tune_distill.student import PRUNED_HEADS_KEY, count_parameters, load_student
from tune_distill.run import git_sha
from tune_distill.teacher import accepts_token_type_ids, collate, model_inputs

log = logging.getLogger(__name__)

EXPORT_INFO_FILE = "tune_distill.json"
EXPORT_FORMAT_VERSION = 1
ONNX_FILE = "model.onnx"
ONNX_OPSET = 18
ONNX_TOLERANCE = 1e-4  # max |logit difference| allowed between ONNX Runtime and PyTorch (fp32)
PADDING_TOLERANCE = 1e-4  # max |logit difference| padded export vs pruned student: zero heads add exactly 0, what
# remains is float32 summation order (2.9e-6 on a 6-layer, 384-wide MiniLM student; the tiny tests demand 1e-5)
PICK_RULES = ("smallest-at-baseline", "best-exact")
FINISHED = ("complete", "stopped")
ACCURACY, SIZE, LATENCY = "exact", "parameters", "latency_ms_b1"
DEFAULT_OBJECTIVES = ({"name": ACCURACY, "direction": "max"}, {"name": SIZE, "direction": "min"})
# Built-in questions for the verification batch when the run's validation file is not on this machine.
FALLBACK_QUESTIONS = (
    ("When was the bridge built?",
     "The old city was founded in 1721 near the north river. The great bridge was built in 1802 and it "
     "joined the two banks of the river. A railway reached the city in 1851."),
    ("Who founded the city?",
     "The old city was founded in 1721 by King Alric near the north river."),
    ("Where did the bird fly?", "The cat sat near the dog. The dog ran to the river in 1999."),
)
# Attention tensors that may be narrower in a pruned student than in the padded export, and the
# dimension that holds the heads (0: output rows of Q/K/V, 1: input columns of the output projection).
_HEAD_TENSORS = (
    (re.compile(r"\.attention\.self\.(query|key|value)\.(weight|bias)$"), 0),
    (re.compile(r"\.attention\.output\.dense\.weight$"), 1),
)


class ExportError(ValueError):
    """A sweep folder, trial choice or export that cannot go ahead; the message says which and why."""


# --------------------------------------------------------------------------------------------------
# Reading a sweep folder and choosing a trial
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialChoice:
    """The chosen trial, where its files are, and why it was chosen."""

    trial_id: str
    number: int | None
    status: str
    baseline: bool
    run_dir: Path
    model_dir: Path
    metrics: dict[str, Any]
    params: dict[str, Any]
    rule: str
    reason: str


@dataclass
class SweepTrials:
    """A sweep folder's trials: report's results frame plus the run/model folder of every row."""

    sweep_dir: Path
    frame: Any  # pandas.DataFrame, one row per trial (report.results_frame columns + run_dir, model_dir, model_problem)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # trial_id -> trials.jsonl record
    settings: dict[str, Any] = field(default_factory=dict)  # sweep.json (objectives, constraints, ...)


def _has_model(model_dir: Path) -> str | None:
    """None when `model_dir` holds a saved model (config.json + weights), else what is missing."""
    if not model_dir.is_dir():
        return f"no model folder {model_dir}"
    if not (model_dir / "config.json").is_file():
        return f"{model_dir} has no config.json"
    if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("*.bin")):
        return f"{model_dir} has no weights (*.safetensors)"
    return None


def resolve_run_dir(sweep_dir: Path, trial_id: str, run_dir: Any = None, checkpoint: Any = None) -> Path | None:
    """A trial's run folder: the recorded run_dir, else `run/` beside its recorded Tune checkpoint, else
    `<sweep>/*/trial_*_<trial_id>/run` (a sweep folder moved or copied elsewhere)."""
    candidates: list[Path] = []
    if isinstance(run_dir, str) and run_dir:
        candidates.append(Path(run_dir))
    if isinstance(checkpoint, str) and checkpoint and "://" not in checkpoint:
        candidates.append(Path(checkpoint).parent / "run")
    candidates += sorted(sweep_dir.glob(f"*/trial_*_{trial_id}/run"))
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


def read_sweep(sweep_dir: str | Path) -> SweepTrials:
    """The trials of a sweep folder (trials.jsonl, else results.parquet) with their model folders."""
    import pandas as pd

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ExportError(f"--sweep {sweep_dir}: not a folder (expected a sweep folder with trials.jsonl)")
    records: dict[str, dict[str, Any]] = {}
    if (sweep_dir / "trials.jsonl").is_file():
        trial_list = read_trials(sweep_dir)
        records = {str(record["trial_id"]): record for record in trial_list}
        frame = results_frame(trial_list)
    elif (sweep_dir / "results.parquet").is_file():
        frame = pd.read_parquet(sweep_dir / "results.parquet")
    else:
        raise ExportError(f"{sweep_dir}: no trials.jsonl or results.parquet (is it a sweep folder?)")
    if frame.empty:
        raise ExportError(f"{sweep_dir}: the sweep has no trials")
    for column in ("trial_id", "status"):
        if column not in frame:
            raise ExportError(f"{sweep_dir}: the trial records have no {column!r} field")
    frame = frame.copy()
    frame["trial_id"] = frame["trial_id"].astype(str)
    if "baseline" not in frame:
        frame["baseline"] = False
    for column in (ACCURACY, SIZE, LATENCY):
        frame[column] = pd.to_numeric(frame[column], errors="coerce") if column in frame else float("nan")
    run_dirs, model_dirs, problems = [], [], []
    for row in frame.itertuples(index=False):
        record = records.get(row.trial_id, {})
        run_dir = resolve_run_dir(sweep_dir, row.trial_id, record.get("run_dir"), getattr(row, "checkpoint", None))
        model_dir = run_dir / "model" if run_dir is not None else None
        if row.status not in FINISHED:
            problem = f"status {row.status}"
        elif run_dir is None:
            problem = "run folder not found"
        else:
            problem = _has_model(model_dir)
        if problem is None and (math.isnan(getattr(row, ACCURACY)) or math.isnan(getattr(row, SIZE))):
            problem = f"no {ACCURACY}/{SIZE} recorded"
        run_dirs.append(str(run_dir) if run_dir else None)
        model_dirs.append(str(model_dir) if model_dir else None)
        problems.append(problem)
    frame["run_dir"], frame["model_dir"], frame["model_problem"] = run_dirs, model_dirs, problems
    settings: dict[str, Any] = {}
    if (sweep_dir / "sweep.json").is_file():
        try:
            settings = json.loads((sweep_dir / "sweep.json").read_text())
        except json.JSONDecodeError as error:
            raise ExportError(f"{sweep_dir / 'sweep.json'}: not JSON ({error})") from None
    return SweepTrials(sweep_dir, frame, records, settings)


def trial_table(frame) -> str:
    """The trials as a short text table, for error messages and `--list`."""
    lines = [f"  {'trial_id':<12} {'#':>3} {'status':<10} {'exact':>7} {'parameters':>12} {'ms@b1':>8}  exportable"]
    for row in frame.sort_values("number" if "number" in frame else "trial_id").itertuples(index=False):
        number = getattr(row, "number", None)
        number_text = str(int(number)) if number is not None and not _isnan(number) else "-"
        exact, size, latency = getattr(row, ACCURACY), getattr(row, SIZE), getattr(row, LATENCY)
        lines.append(
            f"  {row.trial_id:<12} {number_text:>3} {str(row.status):<10} "
            f"{'-' if _isnan(exact) else f'{exact:.2f}':>7} {'-' if _isnan(size) else f'{int(size):,}':>12} "
            f"{'-' if _isnan(latency) else f'{latency:.2f}':>8}  "
            f"{'yes' if _isnan(row.model_problem) else 'no: ' + str(row.model_problem)}"
            f"{' (baseline)' if bool(row.baseline) else ''}"
        )
    return "\n".join(lines)


def _isnan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _best_exact(candidates):
    """The row with the highest exact; ties go to fewer parameters, then the lower trial number."""
    keys = [ACCURACY, SIZE] + (["number"] if "number" in candidates else [])
    return candidates.sort_values(keys, ascending=[False, True] + [True] * (len(keys) - 2)).iloc[0]


def choose_trial(sweep: str | Path | SweepTrials, *, trial_id: str | None = None, pick: str | None = None,
                 max_params: int | None = None, max_latency_ms: float | None = None) -> TrialChoice:
    """The trial to export under exactly one rule (see the module docstring); ExportError otherwise."""
    trials = sweep if isinstance(sweep, SweepTrials) else read_sweep(sweep)
    asked = {"--trial": trial_id, "--pick": pick, "--max-params": max_params, "--max-latency-ms": max_latency_ms}
    given = [name for name, value in asked.items() if value is not None]
    if len(given) != 1:
        raise ExportError("choose exactly one of --trial, --pick, --max-params, --max-latency-ms "
                          f"(got {given or 'none'})")
    frame = trials.frame
    exportable = frame[frame["model_problem"].isna()]  # None: nothing stops the export
    table = trial_table(frame)
    where = trials.sweep_dir

    if trial_id is not None:
        rows = frame[frame["trial_id"] == str(trial_id)]
        if rows.empty:
            raise ExportError(f"{where}: no trial {trial_id!r}; the trials are:\n{table}")
        row = rows.iloc[0]
        if not _isnan(row["model_problem"]):
            raise ExportError(f"{where}: trial {trial_id} cannot be exported ({row['model_problem']}); "
                              f"the trials are:\n{table}")
        return _choice(trials, row, "trial", f"asked for by id ({trial_id})")
    if exportable.empty:
        raise ExportError(f"{where}: no trial can be exported (none finished with a saved model); "
                          f"the trials are:\n{table}")

    if pick is not None:
        if pick not in PICK_RULES:
            raise ExportError(f"--pick {pick!r}: expected one of {', '.join(PICK_RULES)}")
        if pick == "best-exact":
            row = _best_exact(exportable)
            return _choice(trials, row, pick,
                           f"highest exact ({row[ACCURACY]:.2f}) of {len(exportable)} exportable trials")
        baselines = frame[frame["baseline"].astype(bool) & frame["status"].isin(FINISHED) & frame[ACCURACY].notna()]
        if baselines.empty:
            raise ExportError(f"{where}: --pick smallest-at-baseline needs a finished baseline trial (flagged "
                              f"'baseline') with an exact score; the trials are:\n{table}")
        complete = baselines[baselines["status"] == "complete"]
        base = (complete if len(complete) else baselines).iloc[0]
        base_exact = float(base[ACCURACY])
        constraints = list(trials.settings.get("constraints") or ())
        try:
            feasible = exportable[feasible_mask(exportable, constraints)]
        except ValueError as error:
            raise ExportError(f"sweep.json: {error}") from None
        front = pareto_rows(feasible, DEFAULT_OBJECTIVES) if len(feasible) else feasible
        at_least = front[front[ACCURACY] >= base_exact] if len(front) else front
        if at_least.empty:
            bounds = ", ".join(f"{c['name']} {c['op']} {c['bound']:.4g}" for c in constraints) or "none"
            raise ExportError(f"{where}: no exportable feasible student reaches the baseline's exact {base_exact:.2f} "
                              f"(trial {base['trial_id']}, {base['status']}; constraints: {bounds}); "
                              f"the trials are:\n{table}")
        row = at_least.sort_values([SIZE, ACCURACY], ascending=[True, False]).iloc[0]
        note = "" if base["status"] == "complete" else " (stopped early: its last intermediate exact)"
        return _choice(trials, row, pick, f"smallest feasible Pareto student with exact >= the baseline's "
                                          f"{base_exact:.2f} (trial {base['trial_id']}{note})")
    if max_params is not None:
        if max_params <= 0:
            raise ExportError(f"--max-params {max_params}: expected a positive parameter count")
        within = exportable[exportable[SIZE] <= max_params]
        if within.empty:
            smallest = exportable.sort_values(SIZE).iloc[0]
            raise ExportError(f"{where}: no exportable trial has at most {max_params:,} parameters (the smallest is "
                              f"trial {smallest['trial_id']} with {int(smallest[SIZE]):,}); the trials are:\n{table}")
        row = _best_exact(within)
        return _choice(trials, row, "max-params",
                       f"highest exact ({row[ACCURACY]:.2f}) with at most {max_params:,} parameters")
    if max_latency_ms <= 0:
        raise ExportError(f"--max-latency-ms {max_latency_ms}: expected a positive number of milliseconds")
    timed = exportable[exportable[LATENCY].notna()]
    if timed.empty:
        raise ExportError(f"{where}: no exportable trial recorded {LATENCY} (was the sweep run with "
                          f"measure_latency off?); the trials are:\n{table}")
    within = timed[timed[LATENCY] <= max_latency_ms]
    if within.empty:
        fastest = timed.sort_values(LATENCY).iloc[0]
        raise ExportError(f"{where}: no exportable trial has {LATENCY} <= {max_latency_ms:g} ms (the fastest is trial "
                          f"{fastest['trial_id']} at {fastest[LATENCY]:.2f} ms); the trials are:\n{table}")
    row = _best_exact(within)
    return _choice(trials, row, "max-latency-ms",
                   f"highest exact ({row[ACCURACY]:.2f}) with {LATENCY} <= {max_latency_ms:g} ms ({row[LATENCY]:.2f})")


def _choice(trials: SweepTrials, row, rule: str, reason: str) -> TrialChoice:
    record = trials.records.get(row["trial_id"], {})
    metrics = dict(record.get("metrics") or {}) or {
        key: value for key, value in row.items() if key in (ACCURACY, SIZE, LATENCY, "f1", "na_threshold")}
    number = row.get("number")
    log.info("export: trial %s chosen: %s", row["trial_id"], reason)
    return TrialChoice(
        trial_id=str(row["trial_id"]),
        number=None if _isnan(number) else int(number),
        status=str(row["status"]),
        baseline=bool(row["baseline"]),
        run_dir=Path(row["run_dir"]),
        model_dir=Path(row["model_dir"]),
        metrics=metrics,
        params=dict(record.get("params") or {}),
        rule=rule,
        reason=reason,
    )


# --------------------------------------------------------------------------------------------------
# Padding pruned heads back: a vanilla BertForQuestionAnswering with the same outputs
# --------------------------------------------------------------------------------------------------


def _head_dimension(name: str) -> int | None:
    for pattern, dim in _HEAD_TENSORS:
        if pattern.search(name):
            return dim
    return None


def pad_pruned_heads(student: torch.nn.Module):
    """A vanilla BertForQuestionAnswering equal to `student`, pruned heads put back as zeros.

    Kept heads take the first positions of each layer (as student.load_student lays them out); the
    rest get zero Q/K/V rows and biases and zero output-projection columns. Students without pruned
    heads come back as a plain copy. Any other shape difference is an error.
    """
    from transformers import BertForQuestionAnswering

    config = copy.deepcopy(student.config)
    if hasattr(config, PRUNED_HEADS_KEY):
        delattr(config, PRUNED_HEADS_KEY)
    config.architectures = ["BertForQuestionAnswering"]
    padded = BertForQuestionAnswering(config).eval()
    source = student.state_dict()
    target = padded.state_dict()
    state: dict[str, torch.Tensor] = {}
    for name, tensor in target.items():
        if name not in source:
            if "position_ids" in name:
                continue
            raise ExportError(f"padding heads: the student has no tensor {name!r}")
        value = source[name].detach()
        if value.shape != tensor.shape:
            dim = _head_dimension(name)
            if dim is None or value.dim() != tensor.dim() or value.shape[dim] > tensor.shape[dim] or any(
                    value.shape[d] != tensor.shape[d] for d in range(value.dim()) if d != dim):
                raise ExportError(f"padding heads: {name} has shape {tuple(value.shape)} in the student but "
                                  f"{tuple(tensor.shape)} in a vanilla BERT of its config; only attention heads "
                                  "can be padded")
            # (heads * head_size, hidden), (heads * head_size,) or (hidden, heads * head_size)
            zeros = torch.zeros_like(tensor)
            zeros.narrow(dim, 0, value.shape[dim]).copy_(value)
            value = zeros
        state[name] = value.clone()
    unexpected = [name for name in source if name not in target and "position_ids" not in name]
    if unexpected:
        raise ExportError(f"padding heads: student tensors with no place in a vanilla BERT: {unexpected[:5]}")
    padded.load_state_dict(state, strict=False)
    for module_name, module in padded.named_modules():  # the attention modules must use every head again
        if hasattr(module, "num_attention_heads") and hasattr(module, "attention_head_size"):
            if module.num_attention_heads != config.num_attention_heads:
                raise ExportError(f"padding heads: {module_name} has {module.num_attention_heads} heads, "
                                  f"expected {config.num_attention_heads}")
    return padded


def kept_heads_per_layer(model: torch.nn.Module) -> list[int]:
    """Heads each layer actually computes (from its query projection's width)."""
    head_size = model.config.hidden_size // model.config.num_attention_heads
    return [layer.attention.self.query.out_features // head_size for layer in model.bert.encoder.layer]


# --------------------------------------------------------------------------------------------------
# A real verification batch
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyBatch:
    inputs: dict[str, torch.Tensor]  # each (batch, seq_len)
    source: str
    questions: int


def verification_batch(tokenizer: Any, *, data_file: str | Path | None, questions: int, max_seq_length: int,
                       doc_stride: int, max_query_length: int, pad_token_id: int = 0) -> VerifyBatch:
    """Evaluation windows of real questions, padded into one batch (at most 32 windows)."""
    if data_file is not None and Path(data_file).is_file():
        examples = load_examples(str(data_file), max_examples=questions)
        source = str(data_file)
    else:
        if data_file is not None:
            log.warning("export: verification data %s not found; using %d built-in questions", data_file,
                        len(FALLBACK_QUESTIONS))
        examples = [SquadExample(f"builtin-{index}", "", context, question, (), (), True)
                    for index, (question, context) in enumerate(FALLBACK_QUESTIONS)]
        source = "built-in questions (tune_distill.export.FALLBACK_QUESTIONS)"
    features = prepare_eval_features(examples, tokenizer, max_seq_length, doc_stride, max_query_length)
    feature_set = FeatureSet(features_to_table(features), list(examples), fingerprint="", path=None)
    columns = model_inputs(feature_set)
    indices = np.arange(min(len(feature_set), 32))
    inputs = collate(columns, indices, pad_token_id)  # each (batch, seq_len)
    return VerifyBatch(inputs, source, len(examples))


@torch.inference_mode()
def torch_logits(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """Start and end logits of a QA model on one batch, float32 numpy.  # 2 x (batch, seq_len)"""
    model.eval()
    token_types = accepts_token_type_ids(model)
    feed = {name: tensor for name, tensor in inputs.items() if name != "token_type_ids" or token_types}
    output = model(**feed)
    return output.start_logits.float().numpy(), output.end_logits.float().numpy()


def _max_diff(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], mask: np.ndarray) -> float:
    """Largest |difference| of start and end logits over real (unpadded) tokens."""
    real = mask.astype(bool)  # (batch, seq_len)
    return float(max(np.abs(a[0] - b[0])[real].max(), np.abs(a[1] - b[1])[real].max()))


# --------------------------------------------------------------------------------------------------
# ONNX export, check and latency
# --------------------------------------------------------------------------------------------------


class _LogitsOnly(torch.nn.Module):
    """The QA model as a function of plain tensors returning (start_logits, end_logits)."""

    def __init__(self, model: torch.nn.Module, token_types: bool):
        super().__init__()
        self.model = model
        self.token_types = token_types

    def forward(self, input_ids, attention_mask, token_type_ids=None):  # (batch, seq_len) each
        extra = {"token_type_ids": token_type_ids} if self.token_types else {}
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return output.start_logits, output.end_logits  # (batch, seq_len), (batch, seq_len)


def onnx_input_names(model: torch.nn.Module) -> list[str]:
    return ["input_ids", "attention_mask"] + (["token_type_ids"] if accepts_token_type_ids(model) else [])


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's per-pass INFO lines and its known harmless warnings for one export."""
    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx", "torch.export")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*axis name.*")  # our names are kept (checked in tests)
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_onnx(model: torch.nn.Module, path: str | Path, opset: int = ONNX_OPSET) -> Path:
    """Write `model` (a HF QA model) to an ONNX file with dynamic batch and sequence axes."""
    import onnx

    path = Path(path)
    names = onnx_input_names(model)
    token_types = "token_type_ids" in names
    max_positions = int(getattr(model.config, "max_position_embeddings", 512))
    example = torch.randint(0, int(model.config.vocab_size), (2, min(16, max_positions)),
                            generator=torch.Generator().manual_seed(0))  # (batch, seq_len)
    args = (example, torch.ones_like(example)) + ((torch.zeros_like(example),) if token_types else ())
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq_len = torch.export.Dim("seq_len", min=1, max=max_positions)
    dynamic = {name: {0: batch, 1: seq_len} for name in names}
    wrapper = _LogitsOnly(model.eval(), token_types).eval()
    bytes_estimate = sum(p.numel() * p.element_size() for p in model.parameters())
    with _quiet_exporter():
        torch.onnx.export(wrapper, args, str(path), input_names=names, output_names=["start_logits", "end_logits"],
                          opset_version=opset, dynamo=True, dynamic_shapes=dynamic, verbose=False,
                          external_data=bytes_estimate > 1_800_000_000)  # one file below protobuf's 2 GB limit
    onnx.checker.check_model(str(path))
    return path


def onnx_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session with `threads` intra-op threads (default: torch's thread count)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def onnx_logits(session: Any, inputs: Mapping[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """Start and end logits from ONNX Runtime.  # 2 x (batch, seq_len)"""
    wanted = {item.name for item in session.get_inputs()}
    feed = {name: tensor.numpy().astype(np.int64) for name, tensor in inputs.items() if name in wanted}
    start, end = session.run(["start_logits", "end_logits"], feed)
    return start, end


def measure_onnx_latency(session: Any, *, vocab_size: int, seq_length: int, batch_sizes: Sequence[int] = (1, 32),
                         repeats: int = 10, warmup: int = 3) -> dict[str, Any]:
    """Median ONNX Runtime call time (ms) per batch size, on random ids drawn as evaluate.measure_latency draws them."""
    if repeats < 1:
        raise ValueError(f"latency repeats={repeats}: expected at least 1")
    wanted = {item.name for item in session.get_inputs()}
    generator = torch.Generator().manual_seed(0)
    result: dict[str, Any] = {}
    for batch_size in batch_sizes:
        input_ids = torch.randint(0, vocab_size, (batch_size, seq_length), generator=generator)  # (batch, seq_len)
        feed = {"input_ids": input_ids.numpy(), "attention_mask": np.ones_like(input_ids.numpy()),
                "token_type_ids": np.zeros_like(input_ids.numpy())}  # each (batch, seq_len)
        feed = {name: value for name, value in feed.items() if name in wanted}
        for _ in range(warmup):
            session.run(None, feed)
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            session.run(None, feed)
            timings.append(1000.0 * (time.perf_counter() - started))
        result[f"latency_ms_b{batch_size}"] = float(np.median(timings))
    return result


# --------------------------------------------------------------------------------------------------
# The export, end to end
# --------------------------------------------------------------------------------------------------


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ExportError(f"{path}: {what} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise ExportError(f"{path}: {what} should be a JSON object, got {type(value).__name__}")
    return value


def _tokenizer(choice: TrialChoice, run_config: Mapping[str, Any]):
    """The trial's tokenizer: saved with its model, else its teacher's."""
    from transformers import AutoTokenizer

    errors = []
    teacher = (run_config.get("teacher") or {}).get("path")
    for source in (choice.model_dir, teacher):
        if not source:
            continue
        try:
            return AutoTokenizer.from_pretrained(str(source))
        except (OSError, ValueError) as error:
            errors.append(f"{source}: {error}")
    raise ExportError(f"trial {choice.trial_id}: no tokenizer in {choice.model_dir} or its teacher "
                      f"({'; '.join(errors)})")


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"--out {out}: exists and is not empty; choose another folder or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    for stale in (ONNX_FILE, ONNX_FILE + ".data", EXPORT_INFO_FILE):
        (out / stale).unlink(missing_ok=True)


VALIDATION_KEYS = ("exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1",
                   "NoAns_total", "na_threshold", "exact_at_0", "f1_at_0", "best_f1", "best_f1_thresh", "val_questions",
                   "step", "total_steps")


def export_trial(choice: TrialChoice, out: str | Path, *, sweep_dir: str | Path | None = None, onnx: bool = True,
                 verify_data: str | Path | None = None, verify_questions: int = 16, latency: bool = True,
                 latency_seq_length: int | None = None, latency_batch_sizes: Sequence[int] = (1, 32),
                 latency_repeats: int = 10, latency_warmup: int = 3, overwrite: bool = False) -> dict[str, Any]:
    """Write the chosen trial as a vanilla HF QA model folder (+ ONNX), verify it, time it; return the record
    written to out/tune_distill.json."""
    from transformers import AutoModelForQuestionAnswering

    began = time.perf_counter()
    onnxruntime = _onnx_packages() if onnx else None  # before anything is written
    out = Path(out)
    run_config_path = choice.run_dir / "config.yaml"
    try:
        run_config = read_yaml(run_config_path, "run config") if run_config_path.is_file() else {}
    except ConfigError as error:
        raise ExportError(str(error)) from None
    if not isinstance(run_config, dict):
        raise ExportError(f"{run_config_path}: expected a mapping of config sections")
    if not run_config:
        log.warning("export: %s is missing; tokenisation lengths fall back to the defaults", run_config_path)
    data = run_config.get("data") or {}
    lengths = {"max_seq_length": int(data.get("max_seq_length", 384)), "doc_stride": int(data.get("doc_stride", 128)),
               "max_query_length": int(data.get("max_query_length", 64))}
    metrics = {**choice.metrics, **_read_json(choice.run_dir / "metrics.json", "metrics.json")}
    environment = _read_json(choice.run_dir / "environment.json", "environment.json")
    if "na_threshold" not in metrics:
        raise ExportError(f"trial {choice.trial_id}: no na_threshold in {choice.run_dir / 'metrics.json'} "
                          "or its trial record")
    _prepare_out(out, overwrite)

    student = load_student(choice.model_dir).eval()
    tokenizer = _tokenizer(choice, run_config)
    true_counts = count_parameters(student)
    kept = kept_heads_per_layer(student)
    padded = pad_pruned_heads(student)
    padded.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))

    exported = AutoModelForQuestionAnswering.from_pretrained(str(out)).eval()  # what users will load
    if getattr(exported.config, PRUNED_HEADS_KEY, None) is not None:
        raise ExportError(f"{out}/config.json still carries {PRUNED_HEADS_KEY}")
    pad_id = tokenizer.pad_token_id or 0
    batch = verification_batch(tokenizer, data_file=verify_data or data.get("val_file"), questions=verify_questions,
                               pad_token_id=pad_id, **lengths)
    mask = batch.inputs["attention_mask"].numpy()  # (batch, seq_len)
    student_logits = torch_logits(student, batch.inputs)
    exported_logits = torch_logits(exported, batch.inputs)
    padding_diff = _max_diff(student_logits, exported_logits, mask)
    if padding_diff > PADDING_TOLERANCE:
        raise ExportError(f"{out}: the exported model's logits differ from the student's by {padding_diff:.3g} "
                          f"(allowed {PADDING_TOLERANCE:g}); the export is wrong, not written as good")
    padded_counts = count_parameters(exported)
    shape = tuple(batch.inputs["input_ids"].shape)
    record: dict[str, Any] = {
        "format_version": EXPORT_FORMAT_VERSION,
        "na_threshold": float(metrics["na_threshold"]),
        "tokenization": lengths,
        "validation": {key: metrics[key] for key in VALIDATION_KEYS if key in metrics}
        | {"val_file": data.get("val_file")},
        "parameters": {
            "parameters": true_counts["parameters"],
            "non_embedding_parameters": true_counts["non_embedding_parameters"],
            "padded_parameters": padded_counts["parameters"],
            "padded_non_embedding_parameters": padded_counts["non_embedding_parameters"],
            "sweep_parameters": metrics.get("parameters"),
            "heads_per_layer_kept": kept,
            "heads_per_layer_on_disk": int(exported.config.num_attention_heads),
            "bytes_on_disk": sum(path.stat().st_size for path in out.glob("*.safetensors")),
        },
        "verification": {
            "data": batch.source,
            "questions": batch.questions,
            "batch_shape": list(shape),
            "padding_max_abs_diff": padding_diff,
            "padding_tolerance": PADDING_TOLERANCE,
        },
        "provenance": {
            "sweep_dir": str(Path(sweep_dir).resolve()) if sweep_dir else None,
            "trial_id": choice.trial_id,
            "trial_number": choice.number,
            "trial_status": choice.status,
            "baseline": choice.baseline,
            "rule": choice.rule,
            "reason": choice.reason,
            "params": choice.params,
            "run_dir": str(choice.run_dir),
            "model_dir": str(choice.model_dir),
            "run_config": run_config,
            "training_environment": environment,
            "git_sha": git_sha(),
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "tune_distill_version": tune_distill.__version__,
            "torch": torch.__version__,
        },
        "onnx": None,
        "latency": None,
    }
    session = None
    if onnx:
        export_began = time.perf_counter()
        path = export_onnx(exported, out / ONNX_FILE)
        session = onnx_session(path)
        diff = _max_diff(exported_logits, onnx_logits(session, batch.inputs), mask)
        single = {name: tensor[:1, : int(mask[0].sum())] for name, tensor in batch.inputs.items()}  # (1, len)
        diff = max(diff, _max_diff(torch_logits(exported, single), onnx_logits(session, single),
                                   single["attention_mask"].numpy()))
        record["onnx"] = {
            "file": ONNX_FILE,
            "opset": ONNX_OPSET,
            "exporter": "torch.onnx.export(dynamo=True)",
            "inputs": onnx_input_names(exported),
            "outputs": ["start_logits", "end_logits"],
            "dynamic_axes": {"0": "batch", "1": "seq_len"},
            "max_abs_diff": diff,
            "tolerance": ONNX_TOLERANCE,
            "checked_on": [list(shape), list(single["input_ids"].shape)],
            "bytes": sum(p.stat().st_size for p in out.glob(ONNX_FILE + "*")),
            "onnxruntime": onnxruntime.__version__,
            "export_seconds": time.perf_counter() - export_began,
        }
        if diff > ONNX_TOLERANCE:
            _write_record(out, record)
            raise ExportError(f"{out / ONNX_FILE}: ONNX Runtime logits differ from PyTorch by {diff:.3g} "
                              f"(allowed {ONNX_TOLERANCE:g}); recorded in {EXPORT_INFO_FILE}")
    if latency:
        evaluate_settings = run_config.get("evaluate") or {}
        seq_length = int(latency_seq_length or evaluate_settings.get("latency_seq_length", 384))
        seq_length = min(seq_length, int(exported.config.max_position_embeddings))
        settings = dict(seq_length=seq_length, batch_sizes=tuple(latency_batch_sizes), repeats=latency_repeats,
                        warmup=latency_warmup)
        pytorch = measure_latency(exported, device="cpu", precision="fp32", **settings)
        timing: dict[str, Any] = {
            "seq_length": seq_length, "repeats": latency_repeats, "warmup": latency_warmup, "statistic": "median",
            "device": pytorch.pop("latency_device"), "threads": pytorch.pop("latency_threads"),
            "inputs": "random token ids, no padding (evaluate.measure_latency)",
            "pytorch": {key: value for key, value in pytorch.items() if key.startswith("latency_ms_")},
        }
        if session is not None:
            timing["onnxruntime"] = measure_onnx_latency(session, vocab_size=int(exported.config.vocab_size),
                                                         **settings)
        record["latency"] = timing
    record["export_seconds"] = time.perf_counter() - began
    _write_record(out, record)
    log.info("export: trial %s -> %s in %.1fs", choice.trial_id, out, record["export_seconds"])
    return record


def _onnx_packages():
    """onnxruntime (for its version), after checking that every package the ONNX export needs is there."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401  (torch.onnx's dynamo exporter needs it)
    except ImportError as error:
        raise ExportError(f"--onnx needs the onnx, onnxruntime and onnxscript packages ({error}); install them "
                          "(pip install onnx onnxruntime onnxscript) or pass --no-onnx") from None
    return onnxruntime


def _write_record(out: Path, record: Mapping[str, Any]) -> None:
    (out / EXPORT_INFO_FILE).write_text(json.dumps(record, indent=1, default=str) + "\n")


def summary_lines(record: Mapping[str, Any], out: str | Path) -> list[str]:
    """What `tune-distill export` prints."""
    source, parameters = record["provenance"], record["parameters"]
    validation = record["validation"]
    lines = [
        f"exported trial {source['trial_id']} ({source['rule']}: {source['reason']}) -> {out}",
        f"  validation exact {validation.get('exact', float('nan')):.2f} f1 {validation.get('f1', float('nan')):.2f} "
        f"at na_threshold {record['na_threshold']:.4f}",
        f"  parameters {parameters['parameters']:,} (padded on disk: {parameters['padded_parameters']:,}; heads kept "
        f"per layer {parameters['heads_per_layer_kept']} of {parameters['heads_per_layer_on_disk']})",
        f"  padded vs student logits: max |diff| {record['verification']['padding_max_abs_diff']:.2e} "
        f"on {record['verification']['batch_shape']} windows of {record['verification']['data']}",
    ]
    if record.get("onnx"):
        onnx_record = record["onnx"]
        lines.append(f"  {onnx_record['file']}: ONNX Runtime vs PyTorch max |diff| {onnx_record['max_abs_diff']:.2e} "
                     f"(tolerance {onnx_record['tolerance']:g})")
    if record.get("latency"):
        timing = record["latency"]
        lines.append(f"  latency (median ms, seq {timing['seq_length']}, {timing['threads']} threads, "
                     f"{timing['device']}):")
        for runtime in ("pytorch", "onnxruntime"):
            if runtime in timing:
                figures = ", ".join(f"batch {key.removeprefix('latency_ms_b')} {value:.2f}"
                                    for key, value in timing[runtime].items())
                lines.append(f"    {runtime:<12} {figures}")
    return lines


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The export options (also `tune-distill export`'s)."""
    parser.add_argument("--sweep", required=True, help="sweep folder (trials.jsonl or results.parquet, sweep.json)")
    rule = parser.add_mutually_exclusive_group(required=True)
    rule.add_argument("--trial", help="export this trial id")
    rule.add_argument("--pick", choices=PICK_RULES, help="smallest-at-baseline: smallest feasible Pareto student with "
                      "exact >= the baseline's; best-exact: highest exact")
    rule.add_argument("--max-params", type=int, help="highest exact with at most N parameters")
    rule.add_argument("--max-latency-ms", type=float,
                      help="highest exact with latency_ms_b1 (as the sweep measured it) <= X")
    parser.add_argument("--out", required=True,
                        help="folder for the model, tokenizer, model.onnx and tune_distill.json")
    parser.add_argument("--onnx", action=argparse.BooleanOptionalAction, default=True, help="also write model.onnx")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    parser.add_argument("--verify-data", help="SQuAD 2.0 file for the verification batch (default: the run's val_file)")
    parser.add_argument("--verify-questions", type=int, default=16, help="questions in the verification batch")
    parser.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True,
                        help="time PyTorch and ONNX Runtime")
    parser.add_argument("--latency-seq-length", type=int, default=None,
                        help="tokens per timed input (default: the run's evaluate.latency_seq_length)")
    parser.add_argument("--latency-batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--latency-repeats", type=int, default=10)
    parser.add_argument("--latency-warmup", type=int, default=3)


def command(args: argparse.Namespace) -> dict[str, Any]:
    """Choose, export, verify and time as the parsed options say; print a summary and return the record."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # weight loading/saving bars would bury the summary
    trials = read_sweep(args.sweep)
    choice = choose_trial(trials, trial_id=args.trial, pick=args.pick, max_params=args.max_params,
                          max_latency_ms=args.max_latency_ms)
    record = export_trial(choice, args.out, sweep_dir=args.sweep, onnx=args.onnx, verify_data=args.verify_data,
                          verify_questions=args.verify_questions, latency=args.latency,
                          latency_seq_length=args.latency_seq_length, latency_batch_sizes=args.latency_batch_sizes,
                          latency_repeats=args.latency_repeats, latency_warmup=args.latency_warmup,
                          overwrite=args.overwrite)
    print("\n".join(summary_lines(record, args.out)))
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Export one student of a sweep as a Hugging Face QA model (+ ONNX).")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        command(args)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
