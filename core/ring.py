"""Single-producer/single-consumer ring buffers of structured records, and COPY encoders.

Storage of one ring is two arrays: ``buf``, a record array (any dtype of core.dtypes) whose
capacity is a power of two, and ``ctl``, an int64 control array indexed by the ``RING_*``
constants of core.dtypes.  ``head`` and ``tail`` are counters that only grow; the slot of
counter ``c`` is ``c & (capacity - 1)`` and the occupancy is ``head - tail``.  The producer
writes records first and then ``head``; the consumer reads records first and then ``tail``;
neither ever writes the other's counter, so one producer and one consumer need no lock.

The njit kernels (``ring_push``, ``ring_push_batch``, ``ring_drain``, ``ring_occupancy``,
``ring_hwm``) can be called from other kernels.  ``Ring`` is the Python facade with the
ring-full policy: records the array refuses are kept, in order, in a Python-side overflow
list, so nothing accepted is ever dropped (see ``Ring.push_batch``).

The second half of this module turns drained batches into PostgreSQL binary COPY streams
for the tables of sql/001_init.sql (``encode_deltas``, ``encode_snapshots``,
``encode_trades``, ``encode_gaps``).  The per-row byte assembly is an njit kernel writing
big-endian fields into one preallocated uint8 buffer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from core.dtypes import (
    COPY_HEADER,
    COPY_NULL_LENGTH,
    COPY_TRAILER,
    DELTA_COPY_COLUMNS,
    DELTA_DTYPE,
    GAP_COPY_COLUMNS,
    GAP_DTYPE,
    PAPER_FILL_COPY_COLUMNS,
    PAPER_FILL_DTYPE,
    PAPER_ORDER_COPY_COLUMNS,
    PAPER_ORDER_EVENT_DTYPE,
    PAPER_SETTLEMENT_COPY_COLUMNS,
    PAPER_SETTLEMENT_DTYPE,
    RING_CTL_LEN,
    RING_DRAINED,
    RING_HEAD,
    RING_HWM,
    RING_OVERFLOW,
    RING_PUSHED,
    RING_TAIL,
    SNAPSHOT_COPY_COLUMNS,
    SNAPSHOT_LEVEL_DTYPE,
    TRADE_COPY_COLUMNS,
    TRADE_DTYPE,
)

# =========================================================================== ring kernels


@njit(cache=True)
def ring_push(buf: np.ndarray, ctl: np.ndarray, rec: Any) -> bool:
    """Push one record.

    Args:
        buf: record array, power-of-two length.
        ctl: int64 control array of the ring.
        rec: one record of ``buf``'s dtype.

    Returns:
        True if pushed; False if the ring was full (counted in ``ctl[RING_OVERFLOW]``).
    """
    cap = buf.shape[0]
    head = ctl[RING_HEAD]
    occ = head - ctl[RING_TAIL]
    if occ >= cap:
        ctl[RING_OVERFLOW] += 1
        return False
    buf[head & (cap - 1)] = rec
    occ += 1
    ctl[RING_HWM] = max(ctl[RING_HWM], occ)
    ctl[RING_PUSHED] += 1
    ctl[RING_HEAD] = head + 1  # publish last: the consumer trusts every slot below head
    return True


@njit(cache=True)
def ring_push_batch(buf: np.ndarray, ctl: np.ndarray, recs: np.ndarray) -> int:
    """Push as many of ``recs`` as fit, in order.

    Args:
        buf: record array, power-of-two length.
        ctl: int64 control array of the ring.
        recs: records of ``buf``'s dtype.

    Returns:
        How many were pushed (a prefix of ``recs``); the rest is added to
        ``ctl[RING_OVERFLOW]``.
    """
    cap = buf.shape[0]
    mask = cap - 1
    head = ctl[RING_HEAD]
    free = cap - (head - ctl[RING_TAIL])
    n = recs.shape[0]
    if n > free:
        ctl[RING_OVERFLOW] += n - free
        n = free
    for j in range(n):
        buf[(head + j) & mask] = recs[j]
    occ = head + n - ctl[RING_TAIL]
    ctl[RING_HWM] = max(ctl[RING_HWM], occ)
    ctl[RING_PUSHED] += n
    ctl[RING_HEAD] = head + n
    return n


@njit(cache=True)
def ring_drain(buf: np.ndarray, ctl: np.ndarray, out: np.ndarray, max_n: int) -> int:
    """Copy up to ``max_n`` oldest records into ``out[0:n]`` and release them.

    Args:
        buf: record array, power-of-two length.
        ctl: int64 control array of the ring.
        out: record array of the same dtype, receives the records oldest first.
        max_n: upper bound on records to take (also bounded by ``len(out)``).

    Returns:
        n, the number of records copied.
    """
    mask = buf.shape[0] - 1
    tail = ctl[RING_TAIL]
    n = ctl[RING_HEAD] - tail
    n = min(n, max_n, out.shape[0])
    n = max(n, 0)
    for j in range(n):
        out[j] = buf[(tail + j) & mask]
    ctl[RING_DRAINED] += n
    ctl[RING_TAIL] = tail + n  # release last: the producer may reuse the slots after this
    return n


@njit(cache=True)
def ring_occupancy(ctl: np.ndarray) -> int:
    """Records currently in the ring array."""
    return ctl[RING_HEAD] - ctl[RING_TAIL]


@njit(cache=True)
def ring_hwm(ctl: np.ndarray) -> int:
    """Highest occupancy the ring array has reached."""
    return ctl[RING_HWM]


# =========================================================================== facade


class Ring:
    """A ring of records of one dtype with a no-loss overflow policy.

    Ring-full policy: ``push``/``push_batch`` put records into the ring array while it has
    room.  Records it refuses go, as numpy copies, into a Python-side overflow list; while
    that list is non-empty every new push goes to it too, so arrival order is preserved.
    ``drain`` takes from the ring array first, then from the overflow list.  The overflow is
    an emergency path (the writer drains far faster than a feed fills), and it is visible:
    ``overflow`` counts every record that took it, ``overflow_pending``/``overflow_bytes``
    say what is held there now.

    One producer and one consumer (e.g. the feed callback and the writer task on the same
    event loop).  The overflow list is touched by both sides, so the facade assumes both
    run in one thread; across threads use the kernels alone.  Kernels may push into
    ``ring.buf``/``ring.ctl`` directly only while the overflow list is empty
    (``ring.overflow_pending == 0``), or order would break.

    Args:
        dtype: the record dtype (from core.dtypes).
        capacity: number of records in the ring array; a power of two.
    """

    def __init__(self, dtype: np.dtype, capacity: int) -> None:
        dtype = np.dtype(dtype)
        if dtype.names is None:
            raise TypeError(f"Ring needs a structured dtype, got {dtype}")
        if capacity < 1 or capacity & (capacity - 1):
            raise ValueError(f"Ring capacity must be a power of two >= 1, got {capacity}")
        self.dtype = dtype
        self.capacity = int(capacity)
        self.buf = np.zeros(capacity, dtype=dtype)
        self.ctl = np.zeros(RING_CTL_LEN, dtype=np.int64)
        self._spill: list[np.ndarray] = []  # overflow list, oldest first
        self._spill_n = 0
        self._spill_total = 0

    # ------------------------------------------------------------------ producer
    def push(self, rec: np.void | np.ndarray) -> bool:
        """Push one record (a ``np.void`` of the ring's dtype or a length-1 array).

        Returns:
            True if it went into the ring array, False if it went to the overflow list.
        """
        if isinstance(rec, np.ndarray):
            return self.push_batch(rec.reshape(-1)) == 1
        if rec.dtype != self.dtype:
            raise TypeError(f"record dtype {rec.dtype} != ring dtype {self.dtype}")
        if not self._spill and ring_push(self.buf, self.ctl, rec):
            return True
        if self._spill:
            self.ctl[RING_OVERFLOW] += 1  # the kernel counted it if it refused; we did not
        self._to_overflow(np.array([rec], dtype=self.dtype))
        return False

    def push_batch(self, recs: np.ndarray) -> int:
        """Push records in order.

        Returns:
            How many went into the ring array; the rest (``len(recs) - n``) went to the
            overflow list.  Nothing is dropped.
        """
        if recs.dtype != self.dtype:
            raise TypeError(f"records dtype {recs.dtype} != ring dtype {self.dtype}")
        if recs.ndim != 1:
            raise ValueError(f"records must be 1-D, got shape {recs.shape}")
        n_total = recs.shape[0]
        if n_total == 0:
            return 0
        if self._spill:
            self.ctl[RING_OVERFLOW] += n_total
            self._to_overflow(recs.copy())
            return 0
        n = ring_push_batch(self.buf, self.ctl, np.ascontiguousarray(recs))
        if n < n_total:
            self._to_overflow(recs[n:].copy())
        return int(n)

    def _to_overflow(self, recs: np.ndarray) -> None:
        self._spill.append(recs)
        self._spill_n += recs.shape[0]
        self._spill_total += recs.shape[0]

    # ------------------------------------------------------------------ consumer
    def drain(self, max_n: int | None = None) -> np.ndarray:
        """Take up to ``max_n`` oldest records (all when None), ring array first.

        Returns:
            A new array (a copy) of the records, oldest first.
        """
        want = len(self) if max_n is None else min(int(max_n), len(self))
        out = np.empty(max(want, 0), dtype=self.dtype)
        if want <= 0:
            return out
        n = int(ring_drain(self.buf, self.ctl, out, want))
        while n < want and self._spill:
            head = self._spill[0]
            k = min(want - n, head.shape[0])
            out[n : n + k] = head[:k]
            if k == head.shape[0]:
                self._spill.pop(0)
            else:
                self._spill[0] = head[k:]
            self._spill_n -= k
            self.ctl[RING_DRAINED] += k
            n += k
        return out

    # ------------------------------------------------------------------ metrics
    def oldest(self) -> np.void | None:
        """The oldest record not yet drained (ring first, then overflow), or None.

        A read-only peek for metrics (e.g. how long the oldest buffered record has waited
        to become durable); the consumer's position is not moved.
        """
        if ring_occupancy(self.ctl) > 0:
            return self.buf[self.ctl[RING_TAIL] & (self.capacity - 1)]
        if self._spill:
            return self._spill[0][0]
        return None

    def __len__(self) -> int:
        return self.occupancy + self._spill_n

    @property
    def occupancy(self) -> int:
        """Records in the ring array now."""
        return int(self.ctl[RING_HEAD] - self.ctl[RING_TAIL])

    @property
    def high_water(self) -> int:
        """Highest occupancy of the ring array so far."""
        return int(self.ctl[RING_HWM])

    @property
    def overflow(self) -> int:
        """Records that took the overflow path so far (cumulative)."""
        return int(self.ctl[RING_OVERFLOW])

    @property
    def overflow_pending(self) -> int:
        """Records held in the overflow list now."""
        return self._spill_n

    @property
    def overflow_bytes(self) -> int:
        """Bytes held in the overflow list now."""
        return self._spill_n * self.dtype.itemsize

    @property
    def pushed(self) -> int:
        """Records accepted so far (ring array + overflow list)."""
        return int(self.ctl[RING_PUSHED]) + self._spill_total

    @property
    def drained(self) -> int:
        """Records handed out by ``drain`` so far."""
        return int(self.ctl[RING_DRAINED])

    @property
    def fill_fraction(self) -> float:
        """Occupancy of the ring array as a fraction of capacity (1.0 = full)."""
        return self.occupancy / self.capacity

    def stats(self) -> dict[str, int]:
        """Counters for progress lines and the dashboard."""
        return {
            "capacity": self.capacity,
            "len": len(self),
            "occupancy": self.occupancy,
            "high_water": self.high_water,
            "overflow": self.overflow,
            "overflow_pending": self.overflow_pending,
            "overflow_bytes": self.overflow_bytes,
            "pushed": self.pushed,
            "drained": self.drained,
        }

    def __repr__(self) -> str:
        return (
            f"Ring({self.dtype.descr!r:.40}..., capacity={self.capacity}, len={len(self)}, "
            f"overflow_pending={self._spill_n})"
        )


# =========================================================================== COPY BINARY

# Field counts of the row kernels, derived from the column layouts in core.dtypes.
_N_DELTA_COLS = len(DELTA_COPY_COLUMNS)
_N_SNAPSHOT_COLS = len(SNAPSHOT_COPY_COLUMNS)
_N_TRADE_COLS = len(TRADE_COPY_COLUMNS)
_N_GAP_COLS = len(GAP_COPY_COLUMNS)
_N_PAPER_FILL_COLS = len(PAPER_FILL_COPY_COLUMNS)
_N_PAPER_ORDER_COLS = len(PAPER_ORDER_COPY_COLUMNS)
_N_PAPER_SETTLE_COLS = len(PAPER_SETTLEMENT_COPY_COLUMNS)


@njit(cache=True, inline="always")
def _put_be(buf: np.ndarray, pos: int, value: int | np.integer[Any], nbytes: int) -> int:
    # big-endian two's complement of the low ``nbytes`` bytes of ``value``
    v = np.int64(value)
    for k in range(nbytes - 1, -1, -1):
        buf[pos + k] = np.uint8(v & 0xFF)
        v >>= 8
    return pos + nbytes


@njit(cache=True, inline="always")
def _put_field(buf: np.ndarray, pos: int, value: int | np.integer[Any], nbytes: int) -> int:
    pos = _put_be(buf, pos, nbytes, 4)
    return _put_be(buf, pos, value, nbytes)


@njit(cache=True, inline="always")
def _put_row_key(  # noqa: PLR0917 -- njit helper over positional scalars
    buf: np.ndarray, pos: int, n_fields: int, session_id: int, r: Any, market_ids: np.ndarray
) -> int:
    # Every table's row starts with its field count, session_id, rec_id and market_id.
    pos = _put_be(buf, pos, n_fields, 2)
    pos = _put_field(buf, pos, session_id, 8)
    pos = _put_field(buf, pos, r.rec_id, 8)
    return _put_field(buf, pos, market_ids[r.market], 4)


@njit(cache=True, inline="always")
def _put_level(buf: np.ndarray, pos: int, r: Any, qty: int | np.integer[Any]) -> int:
    # The book-level columns deltas and snapshots share (``qty`` is delta or qty).
    pos = _put_field(buf, pos, r.sid, 4)
    pos = _put_field(buf, pos, r.seq, 8)
    pos = _put_field(buf, pos, r.side, 2)
    pos = _put_field(buf, pos, r.price, 2)
    pos = _put_field(buf, pos, qty, 8)
    pos = _put_field(buf, pos, r.exch_ts, 8)
    return _put_field(buf, pos, r.recv_ts, 8)


@njit(cache=True)
def copy_rows_deltas(
    recs: np.ndarray, session_id: int, market_ids: np.ndarray, buf: np.ndarray, pos: int
) -> int:
    """Write orderbook_deltas COPY rows for ``recs`` into ``buf`` from ``pos``.

    Args:
        recs: DELTA_DTYPE records; every ``market`` a valid index of ``market_ids``.
        session_id: feed_sessions.id of the rows.
        market_ids: int32, book slot -> markets.id.
        buf: uint8 buffer with room for ``len(recs) * row size`` bytes after ``pos``.
        pos: where the first row starts.

    Returns:
        Position after the last row.
    """
    for i in range(recs.shape[0]):
        r = recs[i]
        pos = _put_row_key(buf, pos, _N_DELTA_COLS, session_id, r, market_ids)
        pos = _put_level(buf, pos, r, r.delta)
        pos = _put_field(buf, pos, r.status, 2)
    return pos


@njit(cache=True)
def copy_rows_snapshots(
    recs: np.ndarray, session_id: int, market_ids: np.ndarray, buf: np.ndarray, pos: int
) -> int:
    """Write orderbook_snapshots COPY rows (see ``copy_rows_deltas`` for the arguments).

    Returns:
        Position after the last row.
    """
    for i in range(recs.shape[0]):
        r = recs[i]
        pos = _put_row_key(buf, pos, _N_SNAPSHOT_COLS, session_id, r, market_ids)
        pos = _put_level(buf, pos, r, r.qty)
    return pos


@njit(cache=True)
def copy_rows_trades(
    recs: np.ndarray, session_id: int, market_ids: np.ndarray, buf: np.ndarray, pos: int
) -> int:
    """Write trades COPY rows (see ``copy_rows_deltas``); an all-zero trade id is NULL.

    Returns:
        Position after the last row.
    """
    for i in range(recs.shape[0]):
        r = recs[i]
        pos = _put_row_key(buf, pos, _N_TRADE_COLS, session_id, r, market_ids)
        hi = r.trade_id_hi
        lo = r.trade_id_lo
        if hi == 0 and lo == 0:
            pos = _put_be(buf, pos, COPY_NULL_LENGTH, 4)
        else:
            pos = _put_be(buf, pos, 16, 4)
            # uint64 -> int64 keeps the bit pattern, which is all _put_be looks at
            pos = _put_be(buf, pos, np.int64(hi), 8)
            pos = _put_be(buf, pos, np.int64(lo), 8)
        pos = _put_field(buf, pos, r.sid, 4)
        pos = _put_field(buf, pos, r.yes_price, 2)
        pos = _put_field(buf, pos, r.count, 8)
        pos = _put_field(buf, pos, r.taker_side, 2)
        pos = _put_field(buf, pos, r.exch_ts, 8)
        pos = _put_field(buf, pos, r.recv_ts, 8)
    return pos


@njit(cache=True)
def copy_rows_gaps(
    recs: np.ndarray, session_id: int, market_ids: np.ndarray, buf: np.ndarray, pos: int
) -> int:
    """Write feed_gaps COPY rows (see ``copy_rows_deltas`` for the arguments).

    Returns:
        Position after the last row.
    """
    for i in range(recs.shape[0]):
        r = recs[i]
        pos = _put_row_key(buf, pos, _N_GAP_COLS, session_id, r, market_ids)
        pos = _put_field(buf, pos, r.sid, 4)
        pos = _put_field(buf, pos, r.expected_seq, 8)
        pos = _put_field(buf, pos, r.got_seq, 8)
        pos = _put_field(buf, pos, r.reason, 2)
        pos = _put_field(buf, pos, r.recv_ts, 8)
    return pos


@njit(cache=True)
def copy_rows_paper_fills(
    recs: np.ndarray, account_id: int, market_ids: np.ndarray, buf: np.ndarray, pos: int
) -> int:
    """Write paper_fills COPY rows (sql/003_paper.sql; arguments as ``copy_rows_deltas``).

    Returns:
        Position after the last row.
    """
    for i in range(recs.shape[0]):
        r = recs[i]
        pos = _put_row_key(buf, pos, _N_PAPER_FILL_COLS, account_id, r, market_ids)
        pos = _put_field(buf, pos, r.order_id, 8)
        pos = _put_field(buf, pos, r.side, 2)
        pos = _put_field(buf, pos, r.action, 2)
        pos = _put_field(buf, pos, r.price, 2)
        pos = _put_field(buf, pos, r.count, 8)
        pos = _put_field(buf, pos, r.fee, 8)
        pos = _put_field(buf, pos, r.trade_fee, 8)
        pos = _put_field(buf, pos, r.rounding_fee, 8)
        pos = _put_field(buf, pos, r.rebate, 8)
        pos = _put_field(buf, pos, r.cash, 8)
        pos = _put_field(buf, pos, r.is_taker, 1)
        pos = _put_field(buf, pos, r.ts, 8)
    return pos


@njit(cache=True)
def copy_rows_paper_orders(
    recs: np.ndarray, account_id: int, market_ids: np.ndarray, buf: np.ndarray, pos: int
) -> int:
    """Write paper_orders COPY rows (arguments as ``copy_rows_deltas``).

    Returns:
        Position after the last row (``client_order_id`` is ``coid_len`` bytes of text).
    """
    for i in range(recs.shape[0]):
        r = recs[i]
        pos = _put_row_key(buf, pos, _N_PAPER_ORDER_COLS, account_id, r, market_ids)
        pos = _put_field(buf, pos, r.order_id, 8)
        n = int(r.coid_len)
        pos = _put_be(buf, pos, n, 4)
        for k in range(n):
            buf[pos + k] = r.coid[k]
        pos += n
        pos = _put_field(buf, pos, r.group, 8)
        pos = _put_field(buf, pos, r.event, 2)
        pos = _put_field(buf, pos, r.side, 2)
        pos = _put_field(buf, pos, r.action, 2)
        pos = _put_field(buf, pos, r.price, 2)
        pos = _put_field(buf, pos, r.count, 8)
        pos = _put_field(buf, pos, r.filled, 8)
        pos = _put_field(buf, pos, r.remaining, 8)
        pos = _put_field(buf, pos, r.tif, 2)
        pos = _put_field(buf, pos, r.status, 2)
        pos = _put_field(buf, pos, r.flags, 2)
        pos = _put_field(buf, pos, r.notional, 8)
        pos = _put_field(buf, pos, r.fees, 8)
        pos = _put_field(buf, pos, r.taker_fees, 8)
        pos = _put_field(buf, pos, r.maker_fees, 8)
        pos = _put_field(buf, pos, r.rounding_acc, 8)
        pos = _put_field(buf, pos, r.ts, 8)
    return pos


@njit(cache=True)
def copy_rows_paper_settlements(
    recs: np.ndarray, account_id: int, market_ids: np.ndarray, buf: np.ndarray, pos: int
) -> int:
    """Write paper_settlements COPY rows (arguments as ``copy_rows_deltas``).

    Returns:
        Position after the last row.
    """
    for i in range(recs.shape[0]):
        r = recs[i]
        pos = _put_row_key(buf, pos, _N_PAPER_SETTLE_COLS, account_id, r, market_ids)
        pos = _put_field(buf, pos, r.result, 2)
        pos = _put_field(buf, pos, r.position, 8)
        pos = _put_field(buf, pos, r.cost_basis, 8)
        pos = _put_field(buf, pos, r.payout, 8)
        pos = _put_field(buf, pos, r.ts, 8)
    return pos


class CopyTable:
    """How one record dtype maps to one table: name, columns, row kernel, row size.

    ``columns`` are the column names of ``layout`` (core.dtypes ``*_COPY_COLUMNS``);
    ``row_size`` is the bytes of one row with every value present (a NULL is shorter).
    """

    __slots__ = ("columns", "dtype", "kernel", "row_size", "table")

    def __init__(
        self, table: str, dtype: np.dtype, layout: tuple[tuple[str, int], ...], kernel: Any
    ) -> None:
        self.table = table
        self.dtype = dtype
        self.columns = tuple(name for name, _ in layout)
        self.kernel = kernel
        # int16 field count, then per column an int32 length and the value
        self.row_size = 2 + sum(4 + width for _, width in layout)


COPY_TABLES: dict[str, CopyTable] = {
    "orderbook_deltas": CopyTable(
        "orderbook_deltas", DELTA_DTYPE, DELTA_COPY_COLUMNS, copy_rows_deltas
    ),
    "orderbook_snapshots": CopyTable(
        "orderbook_snapshots", SNAPSHOT_LEVEL_DTYPE, SNAPSHOT_COPY_COLUMNS, copy_rows_snapshots
    ),
    "trades": CopyTable("trades", TRADE_DTYPE, TRADE_COPY_COLUMNS, copy_rows_trades),
    "feed_gaps": CopyTable("feed_gaps", GAP_DTYPE, GAP_COPY_COLUMNS, copy_rows_gaps),
    # paper accounts (sql/003_paper.sql): ``session_id`` of the writer is the account id
    "paper_fills": CopyTable(
        "paper_fills", PAPER_FILL_DTYPE, PAPER_FILL_COPY_COLUMNS, copy_rows_paper_fills
    ),
    "paper_orders": CopyTable(
        "paper_orders", PAPER_ORDER_EVENT_DTYPE, PAPER_ORDER_COPY_COLUMNS, copy_rows_paper_orders
    ),
    "paper_settlements": CopyTable(
        "paper_settlements",
        PAPER_SETTLEMENT_DTYPE,
        PAPER_SETTLEMENT_COPY_COLUMNS,
        copy_rows_paper_settlements,
    ),
}


def table_for_dtype(dtype: np.dtype) -> str:
    """The table a record dtype is written to (raises TypeError for others)."""
    for name, spec in COPY_TABLES.items():
        if spec.dtype == dtype:
            return name
    raise TypeError(f"no COPY table for record dtype {dtype}")


def encode_copy(table: str, recs: np.ndarray, session_id: int, market_ids: np.ndarray) -> bytes:
    """Encode records as one complete PostgreSQL binary COPY stream for ``table``.

    Args:
        table: one of ``COPY_TABLES``.
        recs: records of the table's dtype.
        session_id: feed_sessions.id written into every row.
        market_ids: int32 array, book slot (``recs['market']``) -> markets.id.

    Returns:
        Header + rows + trailer.  Pass it to asyncpg as ``memoryview(data)``:
        ``copy_to_table(table, source=memoryview(data), columns=..., format='binary')``
        (asyncpg treats a plain ``bytes`` source as a file path).

    Raises:
        KeyError: unknown table.  TypeError: wrong dtype.  ValueError: a slot without a
        markets.id (out of range or negative in ``market_ids``).
    """
    spec = COPY_TABLES[table]
    if recs.dtype != spec.dtype:
        raise TypeError(f"{table} needs {spec.dtype} records, got {recs.dtype}")
    market_ids = np.ascontiguousarray(market_ids, dtype=np.int32)
    n = recs.shape[0]
    if n:
        slots = recs["market"]
        bad = (slots < 0) | (slots >= market_ids.shape[0])
        if not bad.any():
            bad = market_ids[slots] < 0
        if bad.any():
            raise ValueError(
                f"{table}: book slot {int(slots[np.argmax(bad)])} has no markets.id "
                f"({int(bad.sum())} of {n} rows)"
            )
    head = len(COPY_HEADER)
    buf = np.empty(head + n * spec.row_size + len(COPY_TRAILER), dtype=np.uint8)
    buf[:head] = np.frombuffer(COPY_HEADER, dtype=np.uint8)
    pos = int(spec.kernel(np.ascontiguousarray(recs), int(session_id), market_ids, buf, head))
    end = pos + len(COPY_TRAILER)
    buf[pos:end] = np.frombuffer(COPY_TRAILER, dtype=np.uint8)
    return buf[:end].tobytes()


def encode_deltas(recs: np.ndarray, session_id: int, market_ids: np.ndarray) -> bytes:
    """Binary COPY stream of DELTA_DTYPE records for orderbook_deltas."""
    return encode_copy("orderbook_deltas", recs, session_id, market_ids)


def encode_snapshots(recs: np.ndarray, session_id: int, market_ids: np.ndarray) -> bytes:
    """Binary COPY stream of SNAPSHOT_LEVEL_DTYPE records for orderbook_snapshots."""
    return encode_copy("orderbook_snapshots", recs, session_id, market_ids)


def encode_trades(recs: np.ndarray, session_id: int, market_ids: np.ndarray) -> bytes:
    """Binary COPY stream of TRADE_DTYPE records for trades (all-zero trade id -> NULL)."""
    return encode_copy("trades", recs, session_id, market_ids)


def encode_gaps(recs: np.ndarray, session_id: int, market_ids: np.ndarray) -> bytes:
    """Binary COPY stream of GAP_DTYPE records for feed_gaps (``GAP_COPY_COLUMNS``)."""
    return encode_copy("feed_gaps", recs, session_id, market_ids)
