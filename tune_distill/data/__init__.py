"""SQuAD 2.0 questions in, tokenised windows out, cached on disk with Arrow, batched for models.

Modules, in the order data flows:
    squad     SquadExample, DataError: read and strictly check SQuAD 2.0 files (or hub:squad_v2:<split>)
    windows   questions -> unpadded train/eval windows (prepare_train_features, prepare_eval_features)
    features  FeatureSet, fingerprints and the Arrow cache (load_features); `tune-distill features`
    batching  PackedColumn, bucketed/sorted batch order, dynamic padding, collate -> model inputs

Every name is re-exported here, so callers import from `tune_distill.data`.

Must not know: models, devices, teachers, students, training or metrics. It imports only the
`files` and `progress` utilities from the project.

Example (CPU, about a minute):
    nice tune-distill features --data ../shared/data/squad2/val.json \
        --tokenizer ../shared/models/teacher-minilm-l6-squad2 --kind eval \
        --max-seq-length 256 --doc-stride 96 --cache-dir /tmp/td-cache
"""

from tune_distill.data.batching import (
    PAD_MULTIPLE,
    RUN_PAD_MULTIPLE,
    PackedColumn,
    bucketed_batches,
    collate,
    model_inputs,
    pad_rows,
    pad_widths,
    padded_width,
    sorted_batches,
)
from tune_distill.data.features import (
    FORMAT_VERSION,
    FeatureSet,
    features_fingerprint,
    features_to_table,
    file_fingerprint,
    lengths,
    load_features,
    tokenizer_fingerprint,
)
from tune_distill.data.squad import HUB_PREFIX, DataError, SquadExample, load_examples, load_many
from tune_distill.data.windows import (
    EVAL_COLUMNS,
    NON_CONTEXT_OFFSET,
    TRAIN_COLUMNS,
    prepare_eval_features,
    prepare_train_features,
)

__all__ = [
    "EVAL_COLUMNS", "FORMAT_VERSION", "HUB_PREFIX", "NON_CONTEXT_OFFSET", "PAD_MULTIPLE", "RUN_PAD_MULTIPLE",
    "TRAIN_COLUMNS",
    "DataError", "FeatureSet", "PackedColumn", "SquadExample",
    "bucketed_batches", "collate", "features_fingerprint", "features_to_table", "file_fingerprint", "lengths",
    "load_examples", "load_features", "load_many", "model_inputs", "pad_rows", "pad_widths", "padded_width",
    "prepare_eval_features",
    "prepare_train_features", "sorted_batches", "tokenizer_fingerprint",
]
