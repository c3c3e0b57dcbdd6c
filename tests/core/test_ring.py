"""core.ring: SPSC ring kernels, the Ring facade's overflow policy, COPY encoders."""

from __future__ import annotations

import uuid
from collections import deque

import asyncpg
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.dtypes import (
    COPY_HEADER,
    DELTA_DTYPE,
    GAP_DTYPE,
    NO_PRICE,
    RING_CTL_LEN,
    RING_HEAD,
    RING_OVERFLOW,
    RING_TAIL,
    SIDE_NO,
    SIDE_NONE,
    SIDE_YES,
    SNAPSHOT_LEVEL_DTYPE,
    TRADE_DTYPE,
)
from core.ring import (
    COPY_TABLES,
    Ring,
    encode_copy,
    encode_deltas,
    encode_gaps,
    encode_snapshots,
    encode_trades,
    ring_drain,
    ring_hwm,
    ring_occupancy,
    ring_push,
    ring_push_batch,
    table_for_dtype,
)
from kalshi_rl.store import db


def _deltas(start: int, n: int) -> np.ndarray:
    recs = np.zeros(n, dtype=DELTA_DTYPE)
    recs["rec_id"] = np.arange(start, start + n)
    recs["delta"] = -np.arange(start, start + n)
    recs["price"] = np.arange(start, start + n) % 1001
    return recs


# --------------------------------------------------------------------------- kernels


def test_kernels_push_drain_wrap_around() -> None:
    buf = np.zeros(8, dtype=DELTA_DTYPE)
    ctl = np.zeros(RING_CTL_LEN, dtype=np.int64)
    out = np.empty(8, dtype=DELTA_DTYPE)
    assert ring_push_batch(buf, ctl, _deltas(0, 6)) == 6
    assert ring_drain(buf, ctl, out, 5) == 5
    assert list(out["rec_id"][:5]) == [0, 1, 2, 3, 4]
    # 1 left, 7 free: 10 offered, 7 fit (wrapping past the end), 3 counted as overflow
    assert ring_push_batch(buf, ctl, _deltas(6, 10)) == 7
    assert ctl[RING_OVERFLOW] == 3
    assert ring_occupancy(ctl) == 8
    assert ring_hwm(ctl) == 8
    assert not ring_push(buf, ctl, _deltas(99, 1)[0])
    assert ctl[RING_OVERFLOW] == 4
    n = ring_drain(buf, ctl, out, 100)
    assert n == 8
    assert list(out["rec_id"]) == list(range(5, 13))
    assert list(out["delta"]) == [-i for i in range(5, 13)]
    assert ctl[RING_HEAD] - ctl[RING_TAIL] == 0
    assert ring_push(buf, ctl, _deltas(13, 1)[0])
    assert ring_drain(buf, ctl, out, 1) == 1
    assert out["rec_id"][0] == 13


def test_kernels_drain_bounded_by_out_length() -> None:
    buf = np.zeros(16, dtype=GAP_DTYPE)
    ctl = np.zeros(RING_CTL_LEN, dtype=np.int64)
    recs = np.zeros(10, dtype=GAP_DTYPE)
    recs["rec_id"] = np.arange(10)
    ring_push_batch(buf, ctl, recs)
    out = np.empty(4, dtype=GAP_DTYPE)
    assert ring_drain(buf, ctl, out, 100) == 4
    assert list(out["rec_id"]) == [0, 1, 2, 3]
    assert ring_occupancy(ctl) == 6


@pytest.mark.parametrize("dtype", [DELTA_DTYPE, SNAPSHOT_LEVEL_DTYPE, TRADE_DTYPE, GAP_DTYPE])
def test_every_record_dtype_round_trips(dtype: np.dtype) -> None:
    ring = Ring(dtype, 4)
    recs = np.zeros(6, dtype=dtype)
    recs["rec_id"] = np.arange(6) + 10**12
    ring.push_batch(recs)
    got = ring.drain()
    # compare field by field: padding bytes of aligned records carry no data
    for name in dtype.names or ():
        assert np.array_equal(got[name], recs[name]), name


def test_capacity_must_be_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        Ring(DELTA_DTYPE, 12)
    with pytest.raises(TypeError, match="structured"):
        Ring(np.dtype(np.int64), 8)


def test_dtype_mismatch_is_refused() -> None:
    ring = Ring(DELTA_DTYPE, 8)
    with pytest.raises(TypeError, match="dtype"):
        ring.push_batch(np.zeros(2, dtype=GAP_DTYPE))
    with pytest.raises(TypeError, match="dtype"):
        ring.push(np.zeros(1, dtype=GAP_DTYPE)[0])


# --------------------------------------------------------------------------- facade policy


def test_overflow_keeps_order_and_everything() -> None:
    ring = Ring(DELTA_DTYPE, 4)
    assert ring.push_batch(_deltas(0, 3)) == 3
    assert ring.push(_deltas(3, 1)[0])
    assert not ring.push(_deltas(4, 1)[0])  # full -> overflow list
    # overflow list non-empty: this fits nowhere in the ring anyway, but even after a
    # drain makes room, new pushes queue behind the overflow to keep arrival order
    assert ring.push_batch(_deltas(5, 2)) == 0
    assert ring.drain(2)["rec_id"].tolist() == [0, 1]
    assert ring.push_batch(_deltas(7, 1)) == 0
    st_ = ring.stats()
    assert st_["overflow"] == 4
    assert st_["overflow_pending"] == 4
    assert st_["overflow_bytes"] == 4 * DELTA_DTYPE.itemsize
    assert st_["len"] == 6 and st_["occupancy"] == 2 and st_["high_water"] == 4
    assert ring.drain()["rec_id"].tolist() == [2, 3, 4, 5, 6, 7]
    assert ring.pushed == 8 and ring.drained == 8 and len(ring) == 0
    # once the overflow list is empty, pushes use the ring array again
    assert ring.push_batch(_deltas(8, 2)) == 2
    assert ring.overflow_pending == 0


@settings(max_examples=200, deadline=None)
@given(
    capacity_log2=st.integers(0, 5),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("push"), st.integers(0, 1)),
            st.tuples(st.just("batch"), st.integers(0, 40)),
            st.tuples(st.just("drain"), st.one_of(st.none(), st.integers(0, 40))),
        ),
        max_size=60,
    ),
)
def test_random_interleavings_equal_a_deque(
    capacity_log2: int, ops: list[tuple[str, int | None]]
) -> None:
    cap = 1 << capacity_log2
    ring = Ring(DELTA_DTYPE, cap)
    model: deque[int] = deque()
    next_id = 0
    refused = 0
    for op, arg in ops:
        if op == "drain":
            got = ring.drain(arg)
            want = [
                model.popleft() for _ in range(min(len(model), len(model) if arg is None else arg))
            ]
            assert got["rec_id"].tolist() == want
            assert got["delta"].tolist() == [-i for i in want]
        else:
            n = 1 if op == "push" else int(arg or 0)
            recs = _deltas(next_id, n)
            free = cap - ring.occupancy if ring.overflow_pending == 0 else 0
            if op == "push" and n == 1:
                ok = ring.push(recs[0])
                assert ok == (free >= 1)
            else:
                assert ring.push_batch(recs) == min(n, free)
            refused += n - min(n, free)
            model.extend(range(next_id, next_id + n))
            next_id += n
        assert len(ring) == len(model)
        assert ring.overflow == refused
        assert 0 <= ring.occupancy <= cap
        assert ring.high_water <= cap
        assert ring.pushed - ring.drained == len(model)
    assert ring.drain()["rec_id"].tolist() == list(model)


# --------------------------------------------------------------------------- COPY encoders


async def _session(conn: asyncpg.Connection, tickers: list[str]) -> tuple[int, np.ndarray]:
    sid = await conn.fetchval(
        "INSERT INTO feed_sessions (source, mode) VALUES ('test', 'sim') RETURNING id"
    )
    ids = await db.ensure_markets(conn, tickers)
    return int(sid), np.array([ids[t] for t in tickers], dtype=np.int32)


async def _copy(conn: asyncpg.Connection, table: str, data: bytes) -> None:
    # asyncpg reads ``bytes`` as a file path; a memoryview goes as data
    await conn.copy_to_table(
        table, source=memoryview(data), columns=list(COPY_TABLES[table].columns), format="binary"
    )


def test_copy_header_and_empty_stream() -> None:
    data = encode_deltas(np.zeros(0, DELTA_DTYPE), 1, np.zeros(0, np.int32))
    assert data == COPY_HEADER + b"\xff\xff"
    assert COPY_HEADER.startswith(b"PGCOPY\n\xff\r\n\x00") and len(COPY_HEADER) == 19


def test_encoder_validates_at_the_edge() -> None:
    recs = np.zeros(3, DELTA_DTYPE)
    recs["market"] = [0, 1, 2]
    with pytest.raises(ValueError, match=r"slot 2 has no markets\.id"):
        encode_deltas(recs, 1, np.array([5, 6], np.int32))
    with pytest.raises(ValueError, match=r"slot 1 has no markets\.id"):
        encode_deltas(recs, 1, np.array([5, -1, 6], np.int32))
    with pytest.raises(TypeError, match="orderbook_deltas needs"):
        encode_copy("orderbook_deltas", np.zeros(1, GAP_DTYPE), 1, np.array([1], np.int32))
    assert table_for_dtype(TRADE_DTYPE) == "trades"
    with pytest.raises(TypeError, match="no COPY table"):
        table_for_dtype(np.dtype(np.int64))


async def test_copy_deltas_round_trip(pg_dsn: str) -> None:
    conn = await db.connect(pg_dsn)
    try:
        session, mids = await _session(conn, ["KX-A", "KX-B", "KX-C"])
        n = 500
        recs = np.zeros(n, DELTA_DTYPE)
        recs["rec_id"] = np.arange(n) * 3 + 2**40
        recs["market"] = np.arange(n) % 3
        recs["sid"] = 7
        recs["seq"] = np.arange(n) + 1
        recs["side"] = np.where(np.arange(n) % 2, SIDE_NO, SIDE_YES)
        recs["price"] = np.arange(n) % 1001
        recs["delta"] = (np.arange(n) - 250) * 12345  # negative and positive
        recs["exch_ts"] = 1_700_000_000_000 + np.arange(n)
        recs["recv_ts"] = 1_700_000_000_000_000_000 + np.arange(n)
        recs["status"] = np.arange(n) % 3
        await _copy(conn, "orderbook_deltas", encode_deltas(recs, session, mids))
        rows = await conn.fetch("SELECT * FROM orderbook_deltas ORDER BY rec_id")
        assert len(rows) == n
        for r, row in zip(recs, rows, strict=True):
            assert row["session_id"] == session
            assert row["market_id"] == mids[r["market"]]
            for col in ("rec_id", "sid", "seq", "side", "price", "delta", "exch_ts",
                        "recv_ts", "status"):  # fmt: skip
                assert row[col] == r[col], col
    finally:
        await conn.close()


async def test_copy_snapshots_round_trip_with_empty_marker(pg_dsn: str) -> None:
    conn = await db.connect(pg_dsn)
    try:
        session, mids = await _session(conn, ["KX-S"])
        recs = np.zeros(4, SNAPSHOT_LEVEL_DTYPE)
        recs["rec_id"] = [10, 10, 10, 11]
        recs["seq"] = [1, 1, 1, 2]
        recs["side"] = [SIDE_YES, SIDE_YES, SIDE_NO, SIDE_NONE]
        recs["price"] = [1, 999, 0, NO_PRICE]
        recs["qty"] = [100, 2**40, 1, 0]
        recs["exch_ts"] = 5
        recs["recv_ts"] = -1
        recs["sid"] = 3
        await _copy(conn, "orderbook_snapshots", encode_snapshots(recs, session, mids))
        rows = await conn.fetch(
            "SELECT rec_id, market_id, sid, seq, side, price, qty, exch_ts, recv_ts"
            " FROM orderbook_snapshots ORDER BY rec_id, side, price"
        )
        got = [tuple(r) for r in rows]
        want = sorted(
            (int(r["rec_id"]), int(mids[0]), 3, int(r["seq"]), int(r["side"]), int(r["price"]),
             int(r["qty"]), 5, -1)
            for r in recs
        )  # fmt: skip
        assert got == want
        assert (11, int(mids[0]), 3, 2, -1, -1, 0, 5, -1) in got
    finally:
        await conn.close()


async def test_copy_trades_round_trip_uuid(pg_dsn: str) -> None:
    conn = await db.connect(pg_dsn)
    try:
        session, mids = await _session(conn, ["KX-T1", "KX-T2"])
        ids = [uuid.uuid4() for _ in range(20)] + [uuid.UUID(int=2**128 - 1)]
        n = len(ids) + 1  # plus one row without a trade id
        recs = np.zeros(n, TRADE_DTYPE)
        recs["rec_id"] = np.arange(n)
        recs["market"] = np.arange(n) % 2
        for i, u in enumerate(ids):
            recs["trade_id_hi"][i] = u.int >> 64
            recs["trade_id_lo"][i] = u.int & (2**64 - 1)
        recs["sid"] = 4
        recs["yes_price"] = np.arange(n) * 40
        recs["count"] = np.arange(n) * 100 + 1
        recs["taker_side"] = np.arange(n) % 2
        recs["exch_ts"] = 17
        recs["recv_ts"] = 18
        await _copy(conn, "trades", encode_trades(recs, session, mids))
        rows = await conn.fetch("SELECT * FROM trades ORDER BY rec_id")
        assert [r["trade_id"] for r in rows] == [*ids, None]
        for r, row in zip(recs, rows, strict=True):
            assert row["market_id"] == mids[r["market"]]
            assert (row["yes_price"], row["count"], row["taker_side"]) == (
                r["yes_price"], r["count"], r["taker_side"])  # fmt: skip
            assert (row["sid"], row["exch_ts"], row["recv_ts"]) == (4, 17, 18)
    finally:
        await conn.close()


async def test_copy_gaps_round_trip(pg_dsn: str) -> None:
    conn = await db.connect(pg_dsn)
    try:
        session, mids = await _session(conn, ["KX-G1", "KX-G2"])
        recs = np.zeros(2, GAP_DTYPE)
        recs["rec_id"] = [5, 5]
        recs["market"] = [0, 1]
        recs["sid"] = [9, 9]
        recs["expected_seq"] = [100, 100]
        recs["got_seq"] = [-1, 2**62]
        recs["reason"] = [1, 4]
        recs["recv_ts"] = [123, 456]
        await _copy(conn, "feed_gaps", encode_gaps(recs, session, mids))
        rows = await conn.fetch(
            "SELECT session_id, rec_id, market_id, sid, expected_seq, got_seq, reason, recv_ts"
            " FROM feed_gaps ORDER BY market_id"
        )
        assert [tuple(r) for r in rows] == [
            (session, 5, int(mids[0]), 9, 100, -1, 1, 123),
            (session, 5, int(mids[1]), 9, 100, 2**62, 4, 456),
        ]
    finally:
        await conn.close()


def test_oldest_peeks_without_consuming() -> None:
    ring = Ring(DELTA_DTYPE, 4)
    assert ring.oldest() is None
    recs = np.zeros(6, DELTA_DTYPE)
    recs["rec_id"] = np.arange(6)
    ring.push_batch(recs)  # 4 in the ring, 2 in the overflow list
    assert int(ring.oldest()["rec_id"]) == 0
    assert len(ring) == 6  # peeking consumed nothing
    ring.drain(3)
    assert int(ring.oldest()["rec_id"]) == 3
    ring.drain(1)  # ring empty, overflow still holds 4 and 5
    assert int(ring.oldest()["rec_id"]) == 4
    ring.drain()
    assert ring.oldest() is None
