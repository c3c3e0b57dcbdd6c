"""core.records: first_record and borrow (views without reference counting)."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from core.dtypes import LIQUIDITY_DTYPE, POSITION_DTYPE
from core.liquidity import consume, consumed_at
from core.records import borrow, first_record


@njit(cache=True)
def _row_sums_and_bump(a: np.ndarray, out: np.ndarray) -> None:
    b = borrow(a)
    o = borrow(out)
    for t in range(b.shape[0]):
        row = b[t]  # a view of a borrowed array
        o[t] = row.sum()
        row[0] += 1  # writes through to ``a``


@njit(cache=True)
def _consume_in_slices(liq: np.ndarray) -> int:
    lq = borrow(liq)
    for i in range(lq.shape[0]):
        consume(lq[i : i + 1], 0, 500 + i, 100 + i, 1000)
    total = 0
    for i in range(lq.shape[0]):
        total += consumed_at(lq[i : i + 1], 0, 500 + i)
    return total


def test_views_of_a_borrowed_array_read_and_write_through() -> None:
    a = np.arange(12, dtype=np.int64).reshape(4, 3)
    want = a.sum(axis=1)
    out = np.zeros(4, dtype=np.int64)
    _row_sums_and_bump(a, out)
    assert np.array_equal(out, want)
    assert np.array_equal(a[:, 0], np.array([1, 4, 7, 10]))


def test_structured_slices_of_a_borrowed_array_write_nested_fields() -> None:
    liq = np.zeros(3, dtype=LIQUIDITY_DTYPE)
    assert _consume_in_slices(liq) == 100 + 101 + 102
    assert liq["n"][:, 0].tolist() == [1, 1, 1]
    assert liq["qty"][:, 0, 0].tolist() == [100, 101, 102]


def test_borrow_is_refused_outside_njit() -> None:
    with pytest.raises(NotImplementedError):
        borrow(np.zeros(3))


def test_first_record_of_array_and_record() -> None:
    pos = np.zeros(2, dtype=POSITION_DTYPE)
    assert first_record(pos[1:2]) == pos[1]
    assert first_record(pos[1]) == pos[1]
