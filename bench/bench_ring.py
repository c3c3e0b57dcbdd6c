"""Ring push+drain and COPY encoding vs the plain-Python ways, side by side.

Run:
    pytest bench/bench_ring.py --benchmark-min-rounds=3 --benchmark-max-time=0.2

Each benchmark moves (or encodes) ``n`` DELTA_DTYPE records; ``extra_info["rec_per_s"]``
is n / median.  The JIT is warmed and every baseline's output is checked against ours
before timing.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Any

import numpy as np
import pytest

from core.dtypes import COPY_HEADER, DELTA_DTYPE, RING_CTL_LEN
from core.ring import Ring, encode_deltas, ring_drain, ring_push_batch

SIZES = [1_000, 10_000, 100_000]
SESSION = 7


def deltas(n: int) -> np.ndarray:
    rng = np.random.default_rng(n)
    recs = np.zeros(n, DELTA_DTYPE)
    recs["rec_id"] = np.arange(n)
    recs["exch_ts"] = 1_700_000_000_000 + np.arange(n)
    recs["recv_ts"] = 1_700_000_000_000_000_000 + np.arange(n)
    recs["seq"] = np.arange(n) + 1
    recs["delta"] = rng.integers(-10_000, 10_000, n)
    recs["market"] = rng.integers(0, 64, n)
    recs["sid"] = 3
    recs["price"] = rng.integers(0, 1001, n)
    recs["side"] = rng.integers(0, 2, n)
    return recs


MARKET_IDS = np.arange(100, 164, dtype=np.int32)


def _rate(benchmark: Any, n: int) -> None:
    benchmark.extra_info["rec_per_s"] = n / benchmark.stats.stats.median


# ----------------------------------------------------------------------- push + drain


@pytest.mark.parametrize("n", SIZES)
def test_ring_facade_push_drain(benchmark: Any, n: int) -> None:
    benchmark.group = f"ring push+drain n={n}"
    recs = deltas(n)
    ring = Ring(DELTA_DTYPE, 1 << 17)

    def run() -> np.ndarray:
        ring.push_batch(recs)
        return ring.drain()

    assert np.array_equal(run()["rec_id"], recs["rec_id"])
    benchmark(run)
    _rate(benchmark, n)


@pytest.mark.parametrize("n", SIZES)
def test_ring_kernels_push_drain(benchmark: Any, n: int) -> None:
    benchmark.group = f"ring push+drain n={n}"
    recs = deltas(n)
    buf = np.zeros(1 << 17, DELTA_DTYPE)
    ctl = np.zeros(RING_CTL_LEN, np.int64)
    out = np.empty(n, DELTA_DTYPE)

    def run() -> int:
        ring_push_batch(buf, ctl, recs)
        return ring_drain(buf, ctl, out, n)

    assert run() == n and np.array_equal(out["delta"], recs["delta"])
    benchmark(run)
    _rate(benchmark, n)


@pytest.mark.parametrize("n", SIZES)
def test_deque_of_tuples_push_drain(benchmark: Any, n: int) -> None:
    benchmark.group = f"ring push+drain n={n}"
    rows = deltas(n).tolist()  # tuples, built outside the timing (favours the baseline)
    dq: deque[tuple[int, ...]] = deque()

    def run() -> list[tuple[int, ...]]:
        dq.extend(rows)
        return [dq.popleft() for _ in range(len(dq))]

    assert run() == rows
    benchmark(run)
    _rate(benchmark, n)


@pytest.mark.parametrize("n", SIZES)
def test_list_push_drain(benchmark: Any, n: int) -> None:
    benchmark.group = f"ring push+drain n={n}"
    rows = deltas(n).tolist()
    lst: list[tuple[int, ...]] = []

    def run() -> list[tuple[int, ...]]:
        lst.extend(rows)  # the cheapest Python queue: batch swap on drain
        out = lst[:]
        lst.clear()
        return out

    assert run() == rows
    benchmark(run)
    _rate(benchmark, n)


# ----------------------------------------------------------------------- COPY encoding

_ROW = struct.Struct(
    ">h" + "iq" + "iq" + "ii" + "ii" + "iq" + "ih" + "ih" + "iq" + "iq" + "iq" + "ih"
)


def struct_encode(rows: list[tuple[int, ...]], session_id: int, market_ids: np.ndarray) -> bytes:
    """The plain-Python way: one struct.pack per row (rows are DELTA_DTYPE tuples)."""
    ids = market_ids.tolist()
    parts = [COPY_HEADER]
    pack = _ROW.pack
    for rec_id, exch_ts, recv_ts, seq, delta, market, sid, price, side, status in rows:
        parts.append(
            pack(11, 8, session_id, 8, rec_id, 4, ids[market], 4, sid, 8, seq,
                 2, side, 2, price, 8, delta, 8, exch_ts, 8, recv_ts, 2, status)
        )  # fmt: skip
    parts.append(b"\xff\xff")
    return b"".join(parts)


@pytest.mark.parametrize("n", SIZES)
def test_copy_encode_njit(benchmark: Any, n: int) -> None:
    benchmark.group = f"COPY encode deltas n={n}"
    recs = deltas(n)
    assert encode_deltas(recs, SESSION, MARKET_IDS) == struct_encode(
        recs.tolist(), SESSION, MARKET_IDS
    )
    benchmark(encode_deltas, recs, SESSION, MARKET_IDS)
    _rate(benchmark, n)


@pytest.mark.parametrize("n", SIZES)
def test_copy_encode_struct_pack(benchmark: Any, n: int) -> None:
    benchmark.group = f"COPY encode deltas n={n}"
    recs = deltas(n)

    def run() -> bytes:
        # the records arrive as a drained array either way: converting is part of the cost
        return struct_encode(recs.tolist(), SESSION, MARKET_IDS)

    benchmark(run)
    _rate(benchmark, n)
