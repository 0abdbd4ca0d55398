"""tune_distill.data.batching: packed columns, the epoch's batch order, dynamic padding, model inputs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from tune_distill.data import (
    PAD_MULTIPLE,
    PackedColumn,
    bucketed_batches,
    collate,
    load_features,
    model_inputs,
    pad_rows,
    sorted_batches,
)

ROWS = [[5, 6, 7], [8], [9, 10, 11, 12, 13], [14, 15]]


def packed(rows) -> PackedColumn:
    return PackedColumn.from_arrow(pa.chunked_array([pa.array(rows[:2]), pa.array(rows[2:])]))  # two chunks


def test_packed_column_rows_and_lengths():
    column = packed(ROWS)
    assert len(column) == 4 and column.lengths.tolist() == [3, 1, 5, 2]
    assert [column.row(i).tolist() for i in range(4)] == ROWS


def test_pad_rows_pads_to_the_longest_chosen_row_or_a_given_length():
    column = packed(ROWS)
    padded = pad_rows(column, [1, 3], 0, torch.long)  # (2, 2): row 3 is the longest of these two
    assert padded.tolist() == [[8, 0], [14, 15]] and padded.dtype == torch.long
    wide = pad_rows(column, [0], -1.0, torch.float32, length=6)  # (1, 6)
    assert wide.tolist() == [[5.0, 6.0, 7.0, -1.0, -1.0, -1.0]] and wide.dtype == torch.float32


def test_batch_order_is_a_pure_function_of_seed_and_epoch():
    lengths = np.random.default_rng(0).integers(5, 300, size=203)
    first = bucketed_batches(lengths, 8, seed=3, epoch=1, bucket_batches=4)
    again = bucketed_batches(lengths, 8, seed=3, epoch=1, bucket_batches=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again)) and len(first) == len(again) == 26
    assert sorted(np.concatenate(first).tolist()) == list(range(203))  # every row once
    other_epoch = bucketed_batches(lengths, 8, seed=3, epoch=2, bucket_batches=4)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other_epoch))
    plain = bucketed_batches(lengths, 8, seed=3, epoch=1, bucketing=False)
    spread = lambda batches: np.mean([np.ptp(lengths[b]) for b in batches])  # noqa: E731
    assert spread(first) < spread(plain) / 2  # bucketing groups windows of similar length
    dropped = bucketed_batches(lengths, 8, seed=3, epoch=1, drop_last=True)
    assert len(dropped) == 25 and all(len(batch) == 8 for batch in dropped)
    with pytest.raises(ValueError, match="batch_size"):
        bucketed_batches(lengths, 0, seed=0, epoch=0)


def test_sorted_batches_run_short_rows_first():
    batches = sorted_batches([5, 1, 4, 2, 3], 2)
    assert [batch.tolist() for batch in batches] == [[1, 3], [4, 2], [0]]


def test_collate_rounds_the_width_up_to_pad_multiple(tiny_squad_file, tiny_tokenizer):
    features = load_features([str(tiny_squad_file)], tiny_tokenizer, kind="eval", max_seq_length=64, doc_stride=16,
                             max_query_length=12, cache_dir=None)
    columns = model_inputs(features)
    assert set(columns) == {"input_ids", "token_type_ids", "attention_mask"}
    batch = collate(columns, [0, 1], pad_token_id=0)
    longest = int(columns["input_ids"].lengths[[0, 1]].max())
    width = batch["input_ids"].shape[1]
    assert width % PAD_MULTIPLE == 0 and longest <= width < longest + PAD_MULTIPLE
    assert all(tensor.shape == (2, width) for tensor in batch.values())
    assert batch["attention_mask"].sum(dim=1).tolist() == columns["input_ids"].lengths[[0, 1]].tolist()
    assert collate(columns, [0], pad_token_id=0, length=70)["input_ids"].shape == (1, 70)
