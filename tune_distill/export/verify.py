"""A real verification batch, and the logits an export is checked with.

The verification batch is real questions: the first `questions` of the run's validation file
(data.val_file of its config.yaml, or --verify-data), windowed exactly as evaluation windows are;
when that file is not on this machine, a few built-in questions (FALLBACK_QUESTIONS).
`torch_logits` runs a QA model on one batch; `max_diff` compares two models' logits over real tokens.

Must not know: sweeps, trial choice, ONNX files, training.

Example (CPU, seconds):
    python -c "from transformers import AutoTokenizer; from tune_distill.export import verification_batch; \
t = AutoTokenizer.from_pretrained('../shared/models/teacher-minilm-l6-squad2'); \
print(verification_batch(t, data_file=None, questions=3, max_seq_length=64, doc_stride=16, max_query_length=16).source)"
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from tune_distill.data import (
    FeatureSet,
    SquadExample,
    collate,
    features_to_table,
    load_examples,
    model_inputs,
    prepare_eval_features,
)
from tune_distill.runtime import accepts_token_type_ids

log = logging.getLogger(__name__)

# Built-in questions for the verification batch when the run's validation file is not on this machine.
FALLBACK_QUESTIONS = (
    ("When was the bridge built?",
     "The old city was founded in 1721 near the north river. The great bridge was built in 1802 and it "
     "joined the two banks of the river. A railway reached the city in 1851."),
    ("Who founded the city?",
     "The old city was founded in 1721 by King Alric near the north river."),
    ("Where did the bird fly?", "The cat sat near the dog. The dog ran to the river in 1999."),
)


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


def max_diff(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], mask: np.ndarray) -> float:
    """Largest |difference| of start and end logits over real (unpadded) tokens."""
    real = mask.astype(bool)  # (batch, seq_len)
    return float(max(np.abs(a[0] - b[0])[real].max(), np.abs(a[1] - b[1])[real].max()))
