"""How windows become batches: packed columns, length-bucketed batch order, dynamic padding.

Each column is packed as one flat array plus row offsets (`PackedColumn`); `bucketed_batches` gives
an epoch's batch order as a pure function of (seed, epoch), grouping windows of similar length;
`sorted_batches` orders inference batches by length; `pad_rows` pads a batch only to its own
longest row, and `collate` makes the model inputs of a batch (width rounded up to PAD_MULTIPLE, or to
the smallest of a run's fixed set of widths, `pad_widths`: multiples of 64 up to the longest window, so
a run sees a handful of shapes and a GPU sets up its kernels and autocast casts for each only once).

Must not know: models, devices, teachers, students, training or metrics.

Example (CPU, instant):
    python -c "from tune_distill.data import bucketed_batches; print(bucketed_batches([5, 3, 9], 2, seed=0, epoch=0))"
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from tune_distill.data.features import FeatureSet

PAD_MULTIPLE = 8  # batch widths are rounded up to this: fewer distinct shapes (allocator reuse, kernels)
RUN_PAD_MULTIPLE = 64  # default step of a run's fixed widths (distill.pad_multiple): 6 shapes at 384 tokens


@dataclass(frozen=True)
class PackedColumn:
    """A list<int> column as one flat array and row offsets (row i = values[offsets[i]:offsets[i+1]])."""

    values: np.ndarray  # (total_tokens,)
    offsets: np.ndarray  # (rows + 1,)

    @classmethod
    def from_arrow(cls, column) -> "PackedColumn":
        if hasattr(column, "combine_chunks"):
            column = column.combine_chunks()
        offsets = column.offsets.to_numpy().astype(np.int64)
        values = column.flatten().to_numpy(zero_copy_only=False)
        return cls(values=values, offsets=offsets - offsets[0])

    @property
    def lengths(self) -> np.ndarray:  # (rows,)
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, index: int) -> np.ndarray:
        return self.values[self.offsets[index] : self.offsets[index + 1]]


def pad_rows(column: PackedColumn, indices: Sequence[int], pad_value: int | float, dtype: torch.dtype,
             length: int | None = None) -> torch.Tensor:
    """Rows `indices` right-padded to the longest of them (or to `length`).  # (batch, seq_len)"""
    lengths = column.lengths[np.asarray(indices)]
    width = int(lengths.max()) if length is None else length
    out = np.full((len(indices), width), pad_value, dtype=column.values.dtype)  # (batch, width)
    for out_row, (index, row_length) in enumerate(zip(indices, lengths)):
        start = column.offsets[index]
        out[out_row, :row_length] = column.values[start : start + row_length]
    return torch.from_numpy(out).to(dtype)


def bucketed_batches(lengths: Sequence[int] | np.ndarray, batch_size: int, *, seed: int, epoch: int,
                     bucket_batches: int = 50, bucketing: bool = True, drop_last: bool = False) -> list[np.ndarray]:
    """The epoch's batches of row indices, a pure function of (lengths, batch_size, seed, epoch).

    With bucketing: shuffle, cut into groups of `bucket_batches` batches, sort each group by length,
    split into batches and shuffle the batch order (so lengths are similar within a batch but the
    order of batches stays random). Without: plain shuffled batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lengths = np.asarray(lengths)
    generator = np.random.default_rng([seed, epoch])
    order = generator.permutation(len(lengths))
    if bucketing:
        group = batch_size * bucket_batches
        chunks = []
        for start in range(0, len(order), group):
            chunk = order[start : start + group]
            chunks.append(chunk[np.argsort(lengths[chunk], kind="stable")])
        order = np.concatenate(chunks) if chunks else order
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if bucketing:
        batches = [batches[index] for index in generator.permutation(len(batches))]
    return batches


def sorted_batches(lengths: Sequence[int] | np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Inference batches: rows sorted by length (least padding); callers restore the original order."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def model_inputs(features: FeatureSet) -> dict[str, PackedColumn]:
    """The packed model-input columns of a feature set."""
    return {name: PackedColumn.from_arrow(features.table.column(name))
            for name in ("input_ids", "token_type_ids", "attention_mask")}


def pad_widths(lengths: Sequence[int] | np.ndarray, multiple: int = RUN_PAD_MULTIPLE) -> tuple[int, ...]:
    """A run's fixed set of batch widths: multiples of `multiple` below its longest row, then that row's
    length rounded up to PAD_MULTIPLE. multiple=8 is plain rounding to 8 (up to 48 widths at 384 tokens);
    64 gives 6 (64, 128, ..., 384). Padding is masked, so the width changes speed, not results (up to
    float rounding)."""
    if multiple < 1:
        raise ValueError(f"distill.pad_multiple: must be >= 1, got {multiple}")
    top = -(-int(np.max(lengths, initial=1)) // PAD_MULTIPLE) * PAD_MULTIPLE
    return (*range(multiple, top, multiple), top)


def padded_width(longest: int, widths: Sequence[int]) -> int:
    """The smallest of the sorted `widths` that holds `longest` tokens."""
    if longest > widths[-1]:
        raise ValueError(f"a row of {longest} tokens is longer than the widest pad width {widths[-1]}")
    return widths[bisect.bisect_left(widths, longest)]


def collate(columns: dict[str, PackedColumn], indices, pad_token_id: int, length: int | None = None,
            widths: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """Model inputs for rows `indices`, padded to `length`; else to the smallest of `widths` (sorted, from
    `pad_widths`) that holds the longest row; else to the longest row rounded up to PAD_MULTIPLE."""
    if length is None:
        longest = int(columns["input_ids"].lengths[np.asarray(indices)].max())
        length = -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE if widths is None else padded_width(longest, widths)
    return {
        "input_ids": pad_rows(columns["input_ids"], indices, pad_token_id, torch.long, length),  # (batch, seq_len)
        "token_type_ids": pad_rows(columns["token_type_ids"], indices, 0, torch.long, length),  # (batch, seq_len)
        "attention_mask": pad_rows(columns["attention_mask"], indices, 0, torch.long, length),  # (batch, seq_len)
    }
