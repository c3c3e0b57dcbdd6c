"""Recorded books from PostgreSQL straight into NumPy arrays, and the training dataset.

Three layers:

* :func:`load_raw` -- a time window of snapshots, deltas, gaps (and trades) of chosen
  markets as record arrays (``core.dtypes`` layouts, ``market`` = index into the returned
  tickers), sorted by (session_id, rec_id): the order the feed saw them.  Each stream is
  read with ``COPY (SELECT ...) TO STDOUT (FORMAT binary)``; every column is NOT NULL and
  fixed-width, so each row has the same byte layout, and one njit pass byte-swaps the
  values straight into the record array -- no per-row Python objects.
* :func:`rebuild_books` -- replays raw records through the ``core.book`` kernels and
  returns the final books (what a live BookSet fed the same messages would hold).
* :func:`load_history` / :func:`build_dataset` -- the same replay in one njit loop,
  emitting decision points at a cadence over clean segments, then ``core.features``.

Replay rules (one njit loop, :func:`_replay`), per market:

* a clean snapshot on an invalid book opens a segment; on a valid book it refreshes it;
* a delta is applied with ``book_apply_deltas`` (runs of them per call, cut wherever a
  decision point, snapshot, gap or recorded desync falls); a negative level, a crossed book, a bad
  price/side, or a delta whose recorded live ``status`` is not ST_OK invalidates the book
  and closes the segment (END_DESYNC); deltas on an invalid book are skipped;
* a ``feed_gaps`` row closes the segment (END_GAP) and invalidates the book;
* a new feed session closes every segment and invalidates every book (reason END_DATA);
* the end of the data closes every segment (reason END_DATA).

Segments are never stitched: data after a cut waits for the next snapshot.

Cadence: ``cadence_updates = N`` emits a decision point at the snapshot that opens a
segment and after every N further updates (snapshot refreshes count) of that market;
``cadence_ms = T`` emits the book as of every exchange-time grid point ``g`` (multiple of
``T``) inside a segment: the state after all updates with ``exch_ts <= g``.  A grid point
is emitted when the first update with ``exch_ts > g`` arrives, so the last grid points
after a segment's final update are not emitted (we do not know the book stayed put).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg
import numpy as np
from numba import njit

from core.book import book_apply_deltas, book_apply_snapshot, book_invalidate, book_top_k
from core.dataset import Dataset
from core.dtypes import (
    BOOK_META_DTYPE,
    COPY_HEADER,
    COPY_SIGNATURE,
    COPY_TRAILER,
    DEFAULT_TOP_K,
    DELTA_COPY_COLUMNS,
    DELTA_DTYPE,
    FEATURE_TOP_LEVELS,
    GAP_COPY_COLUMNS,
    GAP_DTYPE,
    N_PRICES,
    N_SIDES,
    NO_PRICE,
    NO_SEQ,
    NO_TS,
    RESULT_NO,
    RESULT_UNKNOWN,
    RESULT_YES,
    SNAPSHOT_COPY_COLUMNS,
    SNAPSHOT_LEVEL_DTYPE,
    ST_INVALID_BOOK,
    ST_OK,
    TRADE_COPY_COLUMNS,
    TRADE_DTYPE,
)
from core.features import MARKET_FEATURE_NAMES, N_MARKET_FEATURES, market_features_batch, mids_batch
from kalshi_rl.errors import ConfigError, DatasetError, StoreError

# Cadence modes of the replay kernel.
MODE_NONE = 0  # rebuild books only
MODE_UPDATES = 1
MODE_MS = 2

# Why a segment ended (the ``end_reason`` of :class:`SegmentInfo`).
END_DATA = 0  # end of the data or of the feed session
END_GAP = 1
END_DESYNC = 2

# Replay counters (indices into :attr:`ReplayStats`-producing int64 array).
_C_SNAPSHOTS = 0
_C_SNAPSHOTS_BAD = 1
_C_DELTAS = 2
_C_DELTAS_BAD = 3
_C_DELTAS_SKIPPED = 4
_C_DELTAS_RECORDED_BAD = 5
_C_GAPS = 6
_C_SESSIONS = 7
_N_COUNTERS = 8
COUNTER_NAMES = (
    "snapshots",
    "snapshots_bad",
    "deltas_applied",
    "deltas_desync",
    "deltas_skipped_invalid",
    "deltas_recorded_bad",
    "gaps",
    "sessions",
)

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_GAP_SLACK_NS = 600 * 10**9  # gaps carry only recv_ts; extra gaps outside data are harmless
_RUN_CAP = 512  # deltas applied per book_apply_deltas call at most (the work buffer)


# =========================================================================== raw records


class RawHistory(NamedTuple):
    """Raw records of a window, each stream sorted by (session, rec_id).

    Attributes:
        tickers: market tickers; record ``market`` fields index into it.
        market_ids: int32 [M] ``markets.id`` of each ticker.
        open_ms, close_ms: int64 [M] market open/close (unix ms), NO_TS when unknown.
        result: int8 [M] RESULT_YES / RESULT_NO / RESULT_UNKNOWN from ``markets.result``.
        snapshots: SNAPSHOT_LEVEL_DTYPE [n] (rows of one snapshot are adjacent).
        snap_session: int64 [n] feed session of each snapshot row.
        deltas: DELTA_DTYPE [n] (``status`` = status recorded by the live book).
        delta_session: int64 [n].
        gaps: GAP_DTYPE [n].
        gap_session: int64 [n].
        trades: TRADE_DTYPE [n] (empty unless requested).
        trade_session: int64 [n].
        start_ms, end_ms: the exchange-time window ``[start_ms, end_ms)`` that was loaded
            (int64 min/max when unbounded).
    """

    tickers: tuple[str, ...]
    market_ids: np.ndarray
    open_ms: np.ndarray
    close_ms: np.ndarray
    result: np.ndarray
    snapshots: np.ndarray
    snap_session: np.ndarray
    deltas: np.ndarray
    delta_session: np.ndarray
    gaps: np.ndarray
    gap_session: np.ndarray
    trades: np.ndarray
    trade_session: np.ndarray
    start_ms: int = _INT64_MIN
    end_ms: int = _INT64_MAX


# Record field each COPY column lands in, where it differs from the column name.
_COL_FIELD = {"session_id": "session", "market_id": "market"}
# A NULL trade_id cannot be decoded at a fixed width: read it as the all-zero uuid, which
# is what the recorder writes NULL for.
_COL_EXPR = {"trade_id": "coalesce(trade_id, '00000000-0000-0000-0000-000000000000'::uuid)"}


def _query_cols(layout: Sequence[tuple[str, int]]) -> tuple[tuple[str, int, str, str], ...]:
    """(sql expression, binary width, numpy big-endian type, record field) per column.

    ``layout`` is a table's ``*_COPY_COLUMNS`` of core.dtypes (what core.ring writes).
    A 16-byte uuid is read as two big-endian uint64 halves.
    """
    return tuple(
        (
            _COL_EXPR.get(name, name),
            width,
            ">u8,>u8" if width == 16 else f">i{width}",
            _COL_FIELD.get(name, name),
        )
        for name, width in layout
    )


# Binary COPY costs PostgreSQL a send-function call and a length word per value, so the
# delta stream packs (market_id, side, status, price) into one big-endian int8 server-side:
# bytes 0-3 market_id, 4 side, 5 status (their low bytes: the record fields are int8),
# 6-7 price.  Each part is then decoded like a column of its own (no length prefix).
# 3 fewer values per row: ~20% less COPY time, 12 bytes less per row on the wire.
_PACK_NAME = "market+side+status+price"
_PACKED_PARTS = {_PACK_NAME: (("market", 0, 4), ("side", 4, 1), ("status", 5, 1), ("price", 6, 2))}
_PACK_EXPR = (
    "(market_id::int8 << 32) | ((side::int8 & 255) << 24)"
    " | (((status::int4 & 255) << 16) | (price::int4 & 65535))::int8"
)


def _col_fields(name: str) -> tuple[str, ...]:
    """Record fields a column (or packed column) fills."""
    return tuple(p[0] for p in _PACKED_PARTS[name]) if name in _PACKED_PARTS else (name,)


def _pack_deltas(
    cols: tuple[tuple[str, int, str, str], ...],
) -> tuple[tuple[str, int, str, str], ...]:
    """The delta columns with market/side/status/price replaced by the packed column."""
    parts = set(_col_fields(_PACK_NAME))
    if not parts <= {c[3] for c in cols}:  # pragma: no cover - a layout change in core.dtypes
        raise StoreError(f"delta COPY columns lack {sorted(parts)}")
    out: list[tuple[str, int, str, str]] = []
    for c in cols:
        if c[3] == "market":
            out.append((_PACK_EXPR, 8, ">i8", _PACK_NAME))
        elif c[3] not in parts:
            out.append(c)
    return tuple(out)


_SNAP_COLS = _query_cols(SNAPSHOT_COPY_COLUMNS)
_DELTA_COLS = _pack_deltas(_query_cols(DELTA_COPY_COLUMNS))
# What the replay needs of a delta (``lean`` loads): 5 values of 42 bytes instead of 8 of 64.
_DELTA_COLS_LEAN = tuple(c for c in _DELTA_COLS if c[3] not in ("sid", "seq", "recv_ts"))
_GAP_COLS = _query_cols(GAP_COPY_COLUMNS)
_TRADE_COLS = _query_cols(TRADE_COPY_COLUMNS)


_K_COPY = 0  # byte-reverse the big-endian value into the record field (narrowing keeps low bytes)
_K_MARKET = 1  # markets.id -> index into the tickers, through a lookup table
_K_SESSION = 2  # to the separate session array


class _Layout(NamedTuple):
    """Where each value of a binary COPY row lies and where it goes in the record."""

    row_size: int
    len_off: np.ndarray  # int64 offsets of the int32 length prefixes within a row
    len_want: np.ndarray  # int64 their expected values (the column widths)
    src_off: np.ndarray  # int64 value offsets within a row
    src_w: np.ndarray  # int64 value widths on the wire
    dst_off: np.ndarray  # int64 field offsets in the record
    dst_w: np.ndarray  # int64 field widths in the record
    kind: np.ndarray  # int64 _K_*


def _layout(cols: Sequence[tuple[str, int, str, str]], dtype: np.dtype) -> _Layout:
    """Byte layout of one binary COPY row of fixed-width NOT NULL columns -> ``dtype``."""
    off = 2  # int16 field count
    lo, lw, so, sw, do, dw, kind = [], [], [], [], [], [], []
    for _, width, _, name in cols:
        lo.append(off)
        lw.append(width)
        off += 4
        # a 16-byte uuid lands in two big-endian uint64 halves <name>_hi / <name>_lo; a
        # packed column in its parts
        if name in _PACKED_PARTS:
            parts = list(_PACKED_PARTS[name])
        elif width == 16:
            parts = [(name + "_hi", 0, 8), (name + "_lo", 8, 8)]
        else:
            parts = [(name, 0, width)]
        for field, sub, w in parts:
            so.append(off + sub)
            sw.append(w)
            if field == "session":
                do.append(0)
                dw.append(8)
                kind.append(_K_SESSION)
                continue
            ftype, foff = dtype.fields[field][:2]  # type: ignore[index]
            do.append(foff)
            dw.append(ftype.itemsize)
            kind.append(_K_MARKET if field == "market" else _K_COPY)
        off += width
    a = np.array
    return _Layout(
        off,
        a(lo, np.int64),
        a(lw, np.int64),
        a(so, np.int64),
        a(sw, np.int64),
        a(do, np.int64),
        a(dw, np.int64),
        a(kind, np.int64),
    )


@njit(cache=True)
def _decode_into(  # noqa: PLR0917 -- njit kernel over positional arrays
    buf: np.ndarray,
    start: int,
    n: int,
    row_size: int,
    n_fields: int,
    len_off: np.ndarray,
    len_want: np.ndarray,
    src_off: np.ndarray,
    src_w: np.ndarray,
    dst_off: np.ndarray,
    dst_w: np.ndarray,
    kind: np.ndarray,
    lut: np.ndarray,
    out: np.ndarray,
    session: np.ndarray,
) -> int:
    """Big-endian fixed-layout COPY rows -> little-endian record fields, one pass.

    Args:
        buf: uint8 COPY buffer; start: offset of the first row; n: rows.
        row_size, n_fields, len_off, len_want, src_off, src_w, dst_off, dst_w, kind:
            from :func:`_layout`.
        lut: int32 markets.id -> ticker index (-1 unknown).
        out: uint8 [n, itemsize] view of the zeroed record array.
        session: int64 [n] receives the session ids.

    Returns:
        -1 when every row has the layout, else the index of the first row that does not
        (a NULL has length -1, a variable-width value another length).
    """
    nv = src_off.shape[0]
    for i in range(n):
        base = start + i * row_size
        if ((np.int64(buf[base]) << 8) | np.int64(buf[base + 1])) != n_fields:
            return i
        for c in range(len_off.shape[0]):
            o = base + len_off[c]
            ln = (
                (np.int64(buf[o]) << 24)
                | (np.int64(buf[o + 1]) << 16)
                | (np.int64(buf[o + 2]) << 8)
                | np.int64(buf[o + 3])
            )
            if ln != len_want[c]:
                return i
        for v in range(nv):
            o = base + src_off[v]
            w = src_w[v]
            k = kind[v]
            if k == _K_COPY:
                d = dst_off[v]
                for b in range(dst_w[v]):
                    out[i, d + b] = buf[o + w - 1 - b]
                continue
            x = np.int64(0)
            for b in range(w):
                x = (x << 8) | np.int64(buf[o + b])
            if k == _K_SESSION:
                session[i] = x
            else:
                idx = lut[x] if 0 <= x < lut.shape[0] else -1
                d = dst_off[v]
                for b in range(dst_w[v]):
                    out[i, d + b] = (idx >> (8 * b)) & 0xFF
    return -1


class CopyDecoder:
    """Decodes ``COPY ... (FORMAT binary)`` rows of fixed-width columns as chunks arrive.

    Decoding a batch while the server formats the next one overlaps our work with
    PostgreSQL's; no per-row Python objects are made.

    Args:
        cols: (expr, width, wire type, name) per column in SELECT order; ``name`` is a
            field of ``dtype``, or ``"session"`` (returned apart), ``"market"`` (mapped
            through ``lut``); a 16-byte column fills ``<name>_hi``/``<name>_lo``.
        dtype: the record dtype (fields not in ``cols`` stay 0).
        lut: int32 lookup markets.id -> market index (-1 unknown).
        batch_bytes: decode once this much is buffered.
    """

    def __init__(
        self,
        cols: Sequence[tuple[str, int, str, str]],
        dtype: np.dtype,
        lut: np.ndarray,
        batch_bytes: int = 1 << 22,
    ) -> None:
        self._cols = tuple(cols)
        self._lay = _layout(cols, dtype)
        self._dtype = dtype
        self._lut = lut.astype(np.int32, copy=False)
        self._batch = batch_bytes
        self._pending = bytearray()
        self._header = False
        self._rows = 0
        self._parts: list[np.ndarray] = []
        self._sessions: list[np.ndarray] = []

    async def sink(self, chunk: bytes) -> None:
        """``copy_from_query(output=...)`` callback."""
        self.feed(chunk)

    def feed(self, chunk: bytes) -> None:
        """Add COPY output; decodes whole rows once ``batch_bytes`` are buffered."""
        self._pending += chunk
        if len(self._pending) >= self._batch:
            self._drain(final=False)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """(records of ``dtype``, int64 session ids) of everything fed, in COPY order.

        Raises:
            StoreError: bad signature, truncated data, or a row that does not have the
                fixed layout (a NULL or a value of another width).
        """
        self._drain(final=True)
        if len(self._parts) == 1:
            return self._parts[0], self._sessions[0]
        if not self._parts:
            return np.zeros(0, dtype=self._dtype), np.zeros(0, dtype=np.int64)
        return _concat_records(self._parts), np.concatenate(self._sessions)

    def _drain(self, *, final: bool) -> None:
        buf = self._pending
        pos = 0
        head = len(COPY_HEADER)  # ends with the int32 length of a header extension
        trail = len(COPY_TRAILER)
        if not self._header:
            if len(buf) < head and not final:
                return
            if buf[: len(COPY_SIGNATURE)] != COPY_SIGNATURE or len(buf) < head + trail:
                raise StoreError("COPY output is not PostgreSQL binary format (bad signature)")
            pos = head + int.from_bytes(buf[head - 4 : head], "big")
            if len(buf) < pos:
                if final:
                    raise StoreError("COPY output ends inside its header")
                return
            self._header = True
        size = self._lay.row_size
        avail = len(buf) - pos
        if final:
            if avail < trail or buf[-trail:] != COPY_TRAILER or (avail - trail) % size:
                raise StoreError(
                    f"COPY output is not whole rows of {size} bytes + trailer"
                    f" ({avail} bytes after row {self._rows})"
                )
            avail -= trail
        n = avail // size
        if n or (final and not self._parts):
            self._decode(buf, pos, n)
        del buf[: pos + n * size]

    def _decode(self, buf: bytearray, pos: int, n: int) -> None:
        lay = self._lay
        out = np.zeros(n, dtype=self._dtype)
        session = np.zeros(n, dtype=np.int64)
        view = np.frombuffer(buf, dtype=np.uint8)
        bad = _decode_into(
            view,
            pos,
            n,
            lay.row_size,
            len(self._cols),
            lay.len_off,
            lay.len_want,
            lay.src_off,
            lay.src_w,
            lay.dst_off,
            lay.dst_w,
            lay.kind,
            self._lut,
            out.view(np.uint8).reshape(n, self._dtype.itemsize),
            session,
        )
        del view  # release the export so the bytearray can shrink
        if bad >= 0:
            raise StoreError(
                f"COPY row {self._rows + bad} does not have the fixed layout of "
                f"({', '.join(c[0] for c in self._cols)}): a NULL or a value of another width"
            )
        self._rows += n
        self._parts.append(out)
        self._sessions.append(session)


def _from_first_snapshots(
    recs: np.ndarray, sess: np.ndarray, snap_sess: np.ndarray, snap_rec: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The records at or after their session's first snapshot (``snap_sess`` sorted, unique)."""
    if snap_sess.size == 0:
        return recs[:0].copy(), sess[:0].copy()
    i = np.minimum(np.searchsorted(snap_sess, sess), snap_sess.size - 1)
    keep = (snap_sess[i] == sess) & (recs["rec_id"] >= snap_rec[i])
    if keep.all():
        return recs, sess
    n, size = recs.shape[0], recs.dtype.itemsize
    kept = recs.view(np.uint8).reshape(n, size)[keep]  # bytewise: keeps the zero padding
    return kept.reshape(-1).view(recs.dtype), sess[keep]


def _concat_records(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate record arrays byte for byte (np.concatenate leaves padding unset)."""
    dtype = parts[0].dtype
    n = sum(p.shape[0] for p in parts)
    out = np.zeros(n, dtype=dtype)
    flat = out.view(np.uint8).reshape(n, dtype.itemsize)
    i = 0
    for p in parts:
        flat[i : i + p.shape[0]] = p.view(np.uint8).reshape(p.shape[0], dtype.itemsize)
        i += p.shape[0]
    return out


def decode_copy_binary(
    buf: bytes,
    cols: Sequence[tuple[str, int, str, str]],
    dtype: np.dtype,
    lut: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode a whole ``COPY ... (FORMAT binary)`` buffer (see :class:`CopyDecoder`).

    Returns:
        (records of ``dtype``, int64 session ids), in COPY order.
    """
    dec = CopyDecoder(cols, dtype, lut)
    dec.feed(buf)
    return dec.finish()


async def _copy(
    conn: asyncpg.Connection,
    query: str,
    *,
    args: Sequence[Any],
    cols: Sequence[tuple[str, int, str, str]],
    dtype: np.dtype,
    lut: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Run one binary COPY and decode it while it streams; sort by (session, rec_id)."""
    dec = CopyDecoder(cols, dtype, lut)
    try:
        await conn.copy_from_query(query, *args, output=dec.sink, format="binary")
    except asyncpg.PostgresError as exc:
        raise StoreError(f"COPY of history failed: {exc}") from exc
    out, session = dec.finish()
    return _sorted(out, session, cols, dtype)


def _sort_key_order(session: np.ndarray, rec_id: np.ndarray) -> np.ndarray | None:
    """Permutation sorting by (session, rec_id), or None when already sorted (the usual)."""
    if session.size < 2:
        return None
    ds = np.diff(session)
    dr = np.diff(rec_id)
    if np.all((ds > 0) | ((ds == 0) & (dr >= 0))):
        return None
    return np.lexsort((rec_id, session))


def _to_ms(t: datetime | int | None, default: int) -> int:
    if t is None:
        return default
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ConfigError(f"datetime {t.isoformat()} has no timezone (use UTC)")
        return int(t.timestamp() * 1000)
    return int(t)


async def _markets(conn: asyncpg.Connection, tickers: Sequence[str] | None) -> list[asyncpg.Record]:
    q = (
        "SELECT id, ticker, result,"
        " (extract(epoch FROM open_time) * 1000)::bigint AS open_ms,"
        " (extract(epoch FROM close_time) * 1000)::bigint AS close_ms FROM markets"
    )
    if tickers is None:
        return list(await conn.fetch(q + " ORDER BY ticker"))
    rows = {r["ticker"]: r for r in await conn.fetch(q + " WHERE ticker = ANY($1)", list(tickers))}
    missing = [t for t in tickers if t not in rows]
    if missing:
        raise DatasetError(f"unknown market tickers: {', '.join(missing)}")
    if len(set(tickers)) != len(tickers):
        raise ConfigError("tickers contain duplicates")
    return [rows[t] for t in tickers]


def _select(table: str, cols: Sequence[tuple[str, int, str, str]], where: str) -> str:
    return f"SELECT {', '.join(c[0] for c in cols)} FROM {table} WHERE {where}"


async def load_raw(
    conn: asyncpg.Connection,
    tickers: Sequence[str] | None = None,
    start: datetime | int | None = None,
    end: datetime | int | None = None,
    *,
    with_trades: bool = False,
    lean: bool = False,
    replayable: bool = False,
    helper: asyncpg.Connection | None = None,
) -> RawHistory:
    """Raw snapshots, deltas, gaps (and trades) of a window, as record arrays.

    Args:
        conn: a connection.
        tickers: markets to load (in this order), None = every market in ``markets``.
        start, end: exchange-time window ``[start, end)`` as aware datetimes or unix ms;
            None = unbounded.  Gaps (which carry only a receive time) are loaded with a
            10-minute margin: a gap outside the data changes nothing.
        with_trades: also load ``trades``.
        lean: skip the delta columns the replay does not read (``sid`` -> -1, ``seq`` ->
            NO_SEQ, ``recv_ts`` -> NO_TS); :func:`load_history` uses it.
        replayable: load only the deltas the replay can apply: those of a feed session
            from its first loaded snapshot on (a session starts with every book invalid,
            and only a snapshot makes one valid), read through the primary key
            (session_id, rec_id) -- the delta table has no market index, so this is what
            keeps a one-market load from reading other sessions.  With an end bound, or
            when those key ranges span more than ``_PK_SHARE`` of the table (and no
            ``helper``), the window scan is cheaper: the others are dropped in NumPy.
            Datasets are the same;
            the replay's ``deltas`` and ``deltas_skipped_invalid`` counts cover only the
            loaded deltas.  :func:`load_history` uses it.
        helper: a second connection (idle, no transaction open) to read the second half
            of the delta key range in parallel, inside the same snapshot
            (``pg_export_snapshot`` + ``SET TRANSACTION SNAPSHOT``): PostgreSQL formats
            the two halves on two backends.  Only with ``replayable``, no ``end``, and
            when this function opens the transaction itself (``conn`` not in one);
            otherwise unused.

    Returns:
        A :class:`RawHistory`; ``market`` fields index ``tickers``.
    """
    kw: dict[str, Any] = {"with_trades": with_trades, "lean": lean, "replayable": replayable}
    if conn.is_in_transaction():
        return await _load_raw(conn, tickers, start, end, helper=None, **kw)
    # One snapshot for all streams, so a recorder writing meanwhile cannot make them disagree.
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute(_NO_PARALLEL)
        return await _load_raw(conn, tickers, start, end, helper=helper, **kw)


async def _load_raw(
    conn: asyncpg.Connection,
    tickers: Sequence[str] | None,
    start: datetime | int | None,
    end: datetime | int | None,
    *,
    with_trades: bool,
    lean: bool,
    replayable: bool,
    helper: asyncpg.Connection | None,
) -> RawHistory:
    mk = await _markets(conn, tickers)
    names = tuple(r["ticker"] for r in mk)
    ids = np.array([r["id"] for r in mk], dtype=np.int32)
    lo = _to_ms(start, _INT64_MIN)
    hi = _to_ms(end, _INT64_MAX)
    lo_ns = max(lo * 10**6 - _GAP_SLACK_NS, _INT64_MIN)
    hi_ns = min(hi * 10**6 + _GAP_SLACK_NS, _INT64_MAX)
    in_mk = "market_id = ANY($1::integer[])"
    id_list = ids.tolist()
    win = f"{in_mk} AND exch_ts >= $2 AND exch_ts < $3"
    lut = np.full(int(ids.max()) + 1 if ids.size else 1, -1, dtype=np.int32)
    lut[ids] = np.arange(ids.size, dtype=np.int32)
    win_args = (id_list, lo, hi)
    snaps, snap_sess = await _copy(
        conn,
        _select("orderbook_snapshots", _SNAP_COLS, win),
        args=win_args,
        cols=_SNAP_COLS,
        dtype=SNAPSHOT_LEVEL_DTYPE,
        lut=lut,
    )
    delta_cols = _DELTA_COLS_LEAN if lean else _DELTA_COLS
    # Per session, its first loaded snapshot row (snapshots are sorted).
    first = np.flatnonzero(np.diff(snap_sess, prepend=snap_sess[:1] - 1))
    use_ranges = replayable and hi == _INT64_MAX
    if use_ranges and first.size:
        # Every delta of a session from its first snapshot on is in the window: those key
        # ranges can be read through the primary key.  (With an end bound they would run
        # on past it, to the end of each session: the BRIN window scan below bounds it.)
        span = await _session_spans(conn, snap_sess[first], snaps["rec_id"][first])
        rows = await conn.fetchval(
            "SELECT reltuples FROM pg_class WHERE oid = 'orderbook_deltas'::regclass"
        )
        # A bitmap scan of the key ranges costs more per row than a sequential scan of
        # the table: past a share of it, one COPY is faster as the window scan.
        if helper is None and rows is not None and span.sum() > _PK_SHARE * rows > 0:
            use_ranges = False
    if use_ranges:
        ranges = [(snap_sess[first], snaps["rec_id"][first], np.full(first.size, _INT64_MAX))]
        if helper is not None and first.size:
            ranges = _split_ranges(*ranges[0], span)
        q = _select(_DELTA_RANGES, delta_cols, win)

        async def copy(c: asyncpg.Connection, r: _Ranges) -> tuple[np.ndarray, np.ndarray]:
            args = (*win_args, *_as_lists(r))
            return await _copy(c, q, args=args, cols=delta_cols, dtype=DELTA_DTYPE, lut=lut)

        if len(ranges) == 1 or helper is None:
            parts = [await copy(conn, ranges[0])]
        else:
            snap_id = await conn.fetchval("SELECT pg_export_snapshot()")
            if not _SNAPSHOT_ID.fullmatch(snap_id):  # pragma: no cover - server format
                raise StoreError(f"unexpected snapshot id {snap_id!r}")
            async with helper.transaction(isolation="repeatable_read", readonly=True):
                await helper.execute(f"SET TRANSACTION SNAPSHOT '{snap_id}'")
                await helper.execute(_NO_PARALLEL)
                parts = list(await asyncio.gather(copy(conn, ranges[0]), copy(helper, ranges[1])))
        if len(parts) == 1:
            deltas, delta_sess = parts[0]
        else:  # the ranges follow each other in key order: concatenating keeps the sort
            deltas = _concat_records([p[0] for p in parts])
            delta_sess = np.concatenate([p[1] for p in parts])
    else:
        deltas, delta_sess = await _copy(
            conn,
            _select("orderbook_deltas", delta_cols, win),
            args=win_args,
            cols=delta_cols,
            dtype=DELTA_DTYPE,
            lut=lut,
        )
        if replayable:
            deltas, delta_sess = _from_first_snapshots(
                deltas, delta_sess, snap_sess[first], snaps["rec_id"][first]
            )
    gap_where = f"{in_mk} AND recv_ts >= $2 AND recv_ts < $3"
    gaps, gap_sess = await _copy(
        conn,
        _select("feed_gaps", _GAP_COLS, gap_where),
        args=(id_list, lo_ns, hi_ns),
        cols=_GAP_COLS,
        dtype=GAP_DTYPE,
        lut=lut,
    )
    if with_trades:
        trades, trade_sess = await _copy(
            conn,
            _select("trades", _TRADE_COLS, win),
            args=win_args,
            cols=_TRADE_COLS,
            dtype=TRADE_DTYPE,
            lut=lut,
        )
    else:
        trades, trade_sess = np.zeros(0, TRADE_DTYPE), np.zeros(0, np.int64)
    return RawHistory(
        tickers=names,
        market_ids=ids,
        open_ms=np.array(
            [NO_TS if r["open_ms"] is None else r["open_ms"] for r in mk], dtype=np.int64
        ),
        close_ms=np.array(
            [NO_TS if r["close_ms"] is None else r["close_ms"] for r in mk], dtype=np.int64
        ),
        result=np.array([_result_code(r["result"]) for r in mk], dtype=np.int8),
        snapshots=snaps,
        snap_session=snap_sess,
        deltas=deltas,
        delta_session=delta_sess,
        gaps=gaps,
        gap_session=gap_sess,
        trades=trades,
        trade_session=trade_sess,
        start_ms=lo,
        end_ms=hi,
    )


# Deltas of given (session, [from, to)) rec_id ranges: the primary key serves it.
_DELTA_RANGES = (
    "orderbook_deltas JOIN unnest($4::bigint[], $5::bigint[], $6::bigint[]) AS f(s, r, e)"
    " ON session_id = f.s AND rec_id >= f.r AND rec_id < f.e"
)
_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f-]+")
# A parallel plan (Gather) returns rows in no particular order, which costs a lexsort;
# one backend per COPY streams them in heap order, which is key order for the recorder's
# appends.  Only inside the transaction load_raw opens itself.
_NO_PARALLEL = "SET LOCAL max_parallel_workers_per_gather = 0"
_MIN_SPLIT = 100_000  # rec_id span below which one COPY is cheaper than two
# Key ranges covering more than this share of the delta table are read by the window scan
# (one connection): bench/README.md, 1 M of 4.25 M rows was already slower by PK.
_PK_SHARE = 0.15

_Ranges = tuple[np.ndarray, np.ndarray, np.ndarray]  # sessions, rec_id from, rec_id to (excl.)


def _as_lists(r: _Ranges) -> tuple[list[int], list[int], list[int]]:
    return r[0].tolist(), r[1].tolist(), r[2].tolist()


async def _session_spans(conn: asyncpg.Connection, sess: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """int64 rec_id span per session from ``lo`` to its last delta (one PK descent each)."""
    rows = await conn.fetch(
        "SELECT (SELECT max(rec_id) FROM orderbook_deltas WHERE session_id = s) AS top"
        " FROM unnest($1::bigint[]) WITH ORDINALITY AS u(s, i) ORDER BY i",
        sess.tolist(),
    )
    top = np.array(
        [lo[i] - 1 if r["top"] is None else r["top"] for i, r in enumerate(rows)], np.int64
    )
    return np.maximum(top - lo + 1, 0)


def _split_ranges(
    sess: np.ndarray, lo: np.ndarray, hi: np.ndarray, span: np.ndarray
) -> list[_Ranges]:
    """Cut the (session, rec_id) key ranges into two halves of about equal rec_id span.

    The first half holds every key before the cut, so its rows precede the second half's.
    """
    total = int(span.sum())
    if total < _MIN_SPLIT:
        return [(sess, lo, hi)]
    cum = np.cumsum(span)
    k = int(np.searchsorted(cum, total // 2, side="right"))  # the session holding the cut
    k = min(k, sess.size - 1)
    cut = int(lo[k] + (total // 2 - (cum[k] - span[k])))
    first = (sess[: k + 1], lo[: k + 1], np.append(hi[:k], cut))
    second = (sess[k:], np.append(cut, lo[k + 1 :]), hi[k:])
    return [first, second]


def _result_code(result: str | None) -> int:
    if result == "yes":
        return RESULT_YES
    if result == "no":
        return RESULT_NO
    return RESULT_UNKNOWN


def _sorted(
    out: np.ndarray,
    session: np.ndarray,
    cols: Sequence[tuple[str, int, str, str]],
    dtype: np.dtype,
) -> tuple[np.ndarray, np.ndarray]:
    """Records sorted by (session, rec_id), defaults for fields the COPY did not carry."""
    order = _sort_key_order(session, out["rec_id"])
    if order is not None:
        # Fancy indexing leaves padding bytes unset: copy field by field into zeros so the
        # arrays stay byte-for-byte reproducible.
        ordered = np.zeros(out.shape[0], dtype=dtype)
        for name in dtype.names or ():
            ordered[name] = out[name][order]
        out = ordered
        session = session[order]
    loaded = {f for c in cols for f in _col_fields(c[3])}
    for name, missing in (("seq", NO_SEQ), ("recv_ts", NO_TS), ("sid", -1)):
        if name in (dtype.names or ()) and name not in loaded:
            out[name] = missing
    return out, session


# =========================================================================== replay kernel


@njit(cache=True)
def _grow_rows(
    px: np.ndarray, qty: np.ndarray, ts: np.ndarray, seg: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Double the decision-point buffers (amortised O(1) per row)."""
    n = px.shape[0]
    cap = max(2 * n, 64)
    px2 = np.empty((cap, px.shape[1], px.shape[2]), dtype=px.dtype)
    qty2 = np.empty((cap, qty.shape[1], qty.shape[2]), dtype=qty.dtype)
    ts2 = np.empty(cap, dtype=ts.dtype)
    seg2 = np.empty(cap, dtype=seg.dtype)
    px2[:n] = px
    qty2[:n] = qty
    ts2[:n] = ts
    seg2[:n] = seg
    return px2, qty2, ts2, seg2


@njit(cache=True)
def _before(s1: Any, r1: Any, s2: Any, r2: Any) -> bool:
    """(s1, r1) < (s2, r2): arrival order across streams."""
    return s1 < s2 or (s1 == s2 and r1 < r2)


@njit(cache=True, inline="always")
def _emit_row(  # noqa: PLR0917 -- njit helper over positional arrays
    rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    n_rows: int,
    qty: np.ndarray,
    best: np.ndarray,
    m: int,
    top_k: int,
    ts: int,
    s: int,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], int]:
    """Append market ``m``'s book as decision point ``n_rows`` (time ``ts``, segment ``s``).

    ``rows`` are the (px, qty, ts, seg) row buffers (see :func:`_replay`), doubled first
    when full.  Returns the (possibly reallocated) buffers and the new row count.
    """
    if n_rows == rows[0].shape[0]:
        rows = _grow_rows(*rows)
    book_top_k(qty, best, m, top_k, rows[0][n_rows], rows[1][n_rows])
    rows[2][n_rows] = ts
    rows[3][n_rows] = s
    return rows, n_rows + 1


@njit(cache=True, inline="always")
def _cut(
    meta: np.ndarray, open_seg: np.ndarray, seg_reason: np.ndarray, m: int, reason: int
) -> None:
    """Invalidate market ``m``'s book and close its open segment, if any, for ``reason``."""
    book_invalidate(meta, m)
    s = open_seg[m]
    if s >= 0:
        seg_reason[s] = reason
        open_seg[m] = -1


@njit(cache=True)
def _replay(  # noqa: C901, PLR0917 -- one flat njit loop, like the core/ kernels
    snaps: np.ndarray,
    snap_sess: np.ndarray,
    deltas: np.ndarray,
    delta_sess: np.ndarray,
    gaps: np.ndarray,
    gap_sess: np.ndarray,
    qty: np.ndarray,
    best: np.ndarray,
    meta: np.ndarray,
    mode: int,
    cadence: int,
    top_k: int,
    row_cap: int,
    work: np.ndarray,
):
    """Merge the three streams by (session, rec_id), replay them, emit decision points.

    Args:
        snaps, deltas, gaps: raw record arrays (``market`` = book slot), each sorted.
        snap_sess, delta_sess, gap_sess: int64 session id per record.
        qty, best, meta: book arrays with one slot per market (fresh, all invalid).
        mode: MODE_NONE / MODE_UPDATES / MODE_MS; cadence: N updates or T ms.
        top_k: depth levels per side to emit; row_cap: initial row buffer size.
        work: DELTA_DTYPE [>= 1] buffer a run of deltas is copied into and applied from
            (``book_apply_deltas`` writes its status into the records it applies; the
            caller's array keeps the status the live book recorded).

    Returns:
        (px int16 [R,2,K], qty int64 [R,2,K], ts int64 [R], row_seg int64 [R], n_rows,
        seg_market int32 [S], seg_first_ts, seg_last_ts int64 [S], seg_reason int8 [S],
        n_segs, counters int64 [_N_COUNTERS]).  Row buffers are longer than n_rows.
    """
    n_m = qty.shape[0]
    ns = snaps.shape[0]
    nd = deltas.shape[0]
    ng = gaps.shape[0]
    seg_cap = ns + 1
    seg_market = np.empty(seg_cap, dtype=np.int32)
    seg_first = np.empty(seg_cap, dtype=np.int64)
    seg_last = np.empty(seg_cap, dtype=np.int64)
    seg_reason = np.empty(seg_cap, dtype=np.int8)
    n_seg = 0
    open_seg = np.full(n_m, -1, dtype=np.int64)
    since = np.zeros(n_m, dtype=np.int64)  # updates since the last emitted row (MODE_UPDATES)
    next_grid = np.zeros(n_m, dtype=np.int64)  # next grid point to emit (MODE_MS)
    counters = np.zeros(_N_COUNTERS, dtype=np.int64)
    cap = max(row_cap, 64)
    rows = (  # decision-point buffers: px, qty, ts, segment
        np.empty((cap, N_SIDES, top_k), dtype=np.int16),
        np.empty((cap, N_SIDES, top_k), dtype=np.int64),
        np.empty(cap, dtype=np.int64),
        np.empty(cap, dtype=np.int64),
    )
    n_rows = 0
    # Per-run scratch (see the delta branch): updates counted per market, their latest
    # exchange time, and which markets the run touched.
    run_cnt = np.zeros(n_m, dtype=np.int64)
    run_ts = np.zeros(n_m, dtype=np.int64)
    run_mk = np.empty(n_m, dtype=np.int64)
    wcap = work.shape[0]
    i_s = 0
    i_d = 0
    i_g = 0
    cur_sess = np.int64(-(2**62))
    big = np.int64(2**62)
    while True:
        kind = 0
        bs = big
        br = big
        if i_s < ns:
            kind = 1
            bs = snap_sess[i_s]
            br = snaps[i_s]["rec_id"]
        if i_d < nd and _before(delta_sess[i_d], deltas[i_d]["rec_id"], bs, br):
            kind = 2
            bs = delta_sess[i_d]
            br = deltas[i_d]["rec_id"]
        if i_g < ng and _before(gap_sess[i_g], gaps[i_g]["rec_id"], bs, br):
            kind = 3
            bs = gap_sess[i_g]
            br = gaps[i_g]["rec_id"]
        if kind == 0:
            break
        if bs != cur_sess:
            # A new feed session knows nothing of the old books: cut everything.
            for m in range(n_m):
                _cut(meta, open_seg, seg_reason, m, END_DATA)
            cur_sess = bs
            counters[_C_SESSIONS] += 1

        if kind == 3:
            m = gaps[i_g]["market"]
            i_g += 1
            counters[_C_GAPS] += 1
            if 0 <= m < n_m:
                _cut(meta, open_seg, seg_reason, m, END_GAP)
            continue

        # An update of market m at exchange time ts: a delta, or a snapshot (rows i_s:j,
        # which share the rec_id).
        if kind == 2:
            m = deltas[i_d]["market"]
            ts = deltas[i_d]["exch_ts"]
        else:
            j = i_s + 1
            while j < ns and snap_sess[j] == bs and snaps[j]["rec_id"] == br:
                j += 1
            m = snaps[i_s]["market"]
            ts = snaps[i_s]["exch_ts"]
        if m < 0 or m >= n_m:
            if kind == 2:
                i_d += 1
            else:
                i_s = j
            continue
        s = open_seg[m]
        if mode == MODE_MS and s >= 0:
            # Emit the book as of every grid point this update lies beyond.
            while next_grid[m] < ts:
                g = next_grid[m]
                rows, n_rows = _emit_row(rows, n_rows, qty, best, m, top_k, g, s)
                seg_last[s] = max(seg_last[s], g)
                next_grid[m] = g + cadence

        if kind == 2:
            if deltas[i_d]["status"] != ST_OK:
                # The live book rejected it: the recorder saw a desync here.
                i_d += 1
                counters[_C_DELTAS_RECORDED_BAD] += 1
                _cut(meta, open_seg, seg_reason, m, END_DESYNC)
                continue
            # A run: this delta and the following ones up to (not including) the next
            # snapshot, gap, session change, recorded bad status or grid point (MODE_MS),
            # and up to (including) the next delta that may reach a cadence point
            # (MODE_UPDATES) or has a bad side/price; one book_apply_deltas call applies it.
            # The counts below assume every delta applies; when one does not, the run may
            # end earlier than needed, never later (a failure only lowers the counts).
            ss = big
            sr = big
            if i_s < ns:
                ss = snap_sess[i_s]
                sr = snaps[i_s]["rec_id"]
            gs = big
            gr = big
            if i_g < ng:
                gs = gap_sess[i_g]
                gr = gaps[i_g]["rec_id"]
            n_run = 0
            n_mk = 0
            j = i_d
            while j < nd and n_run < wcap:
                if j > i_d:
                    r = deltas[j]["rec_id"]
                    if (
                        delta_sess[j] != cur_sess
                        or not _before(cur_sess, r, ss, sr)
                        or not _before(cur_sess, r, gs, gr)
                        or deltas[j]["status"] != ST_OK
                    ):
                        break
                    mj = deltas[j]["market"]
                    if (
                        mode == MODE_MS
                        and 0 <= mj < n_m
                        and open_seg[mj] >= 0
                        and next_grid[mj] < deltas[j]["exch_ts"]
                    ):
                        break
                work[n_run] = deltas[j]
                n_run += 1
                j += 1
                mj = work[n_run - 1]["market"]
                if mj < 0 or mj >= n_m:
                    continue
                sd = work[n_run - 1]["side"]
                pr = work[n_run - 1]["price"]
                if sd < 0 or sd >= N_SIDES or pr < 0 or pr >= N_PRICES:
                    break  # handled as a desync right after the run
                if open_seg[mj] >= 0:
                    if run_cnt[mj] == 0:
                        run_mk[n_mk] = mj
                        n_mk += 1
                        run_ts[mj] = work[n_run - 1]["exch_ts"]
                    else:
                        run_ts[mj] = max(run_ts[mj], work[n_run - 1]["exch_ts"])
                    run_cnt[mj] += 1
                    if mode == MODE_UPDATES and since[mj] + run_cnt[mj] >= cadence:
                        break
            i_d = j
            run = work[:n_run]
            n_bad = book_apply_deltas(qty, best, meta, run)
            if n_bad == 0:
                # Every delta applied to a valid book (so one with an open segment).
                counters[_C_DELTAS] += n_run
                for q in range(n_mk):
                    mq = run_mk[q]
                    sq = open_seg[mq]
                    seg_last[sq] = max(seg_last[sq], run_ts[mq])
                    if mode == MODE_UPDATES:
                        since[mq] += run_cnt[mq]
            else:
                for q in range(n_run):
                    mq = run[q]["market"]
                    if mq < 0 or mq >= n_m:
                        continue
                    st = run[q]["status"]
                    if st == ST_INVALID_BOOK:
                        counters[_C_DELTAS_SKIPPED] += 1
                        continue
                    sq = open_seg[mq]
                    if st != ST_OK:
                        counters[_C_DELTAS_BAD] += 1
                        _cut(meta, open_seg, seg_reason, mq, END_DESYNC)
                        continue
                    counters[_C_DELTAS] += 1
                    if sq >= 0:
                        seg_last[sq] = max(seg_last[sq], run[q]["exch_ts"])
                        if mode == MODE_UPDATES:
                            since[mq] += 1
            for q in range(n_mk):
                run_cnt[run_mk[q]] = 0
            # Only the run's last delta can reach a cadence point (the run ends there).
            m = run[n_run - 1]["market"]
            if mode == MODE_UPDATES and 0 <= m < n_m:
                s = open_seg[m]
                if s >= 0 and since[m] >= cadence:
                    since[m] = 0
                    ts = run[n_run - 1]["exch_ts"]
                    rows, n_rows = _emit_row(rows, n_rows, qty, best, m, top_k, ts, s)
            continue

        # kind == 1: a snapshot.
        st = book_apply_snapshot(qty, best, meta, m, snaps[i_s:j])
        i_s = j
        counters[_C_SNAPSHOTS] += 1
        if st != ST_OK:
            counters[_C_SNAPSHOTS_BAD] += 1
            _cut(meta, open_seg, seg_reason, m, END_DESYNC)
            continue
        if s < 0:
            s = n_seg
            n_seg += 1
            open_seg[m] = s
            seg_market[s] = m
            seg_first[s] = ts
            seg_last[s] = ts
            seg_reason[s] = END_DATA
            since[m] = 0
            if mode == MODE_MS:
                next_grid[m] = -((-ts) // cadence) * cadence  # ceil to the grid
            if mode == MODE_UPDATES:
                rows, n_rows = _emit_row(rows, n_rows, qty, best, m, top_k, ts, s)
            continue
        # A snapshot refreshing a valid book: an update of segment s.
        seg_last[s] = max(seg_last[s], ts)
        if mode == MODE_UPDATES:
            since[m] += 1
            if since[m] >= cadence:
                since[m] = 0
                rows, n_rows = _emit_row(rows, n_rows, qty, best, m, top_k, ts, s)
    rpx, rqty, rts, rseg = rows
    return (
        rpx,
        rqty,
        rts,
        rseg,
        n_rows,
        seg_market,
        seg_first,
        seg_last,
        seg_reason,
        n_seg,
        counters,
    )


# =========================================================================== books


class Books(NamedTuple):
    """Final books of a replay, laid out like ``core.book.BookSet`` (slot = ticker index).

    Attributes:
        tickers: slot -> ticker.
        qty: int64 [M, 2, N_PRICES]; best: int32 [M, 2]; meta: BOOK_META_DTYPE [M].
        counters: replay counters by name (see :data:`COUNTER_NAMES`).
    """

    tickers: tuple[str, ...]
    qty: np.ndarray
    best: np.ndarray
    meta: np.ndarray
    counters: dict[str, int]


def _new_books(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    qty = np.zeros((max(n, 1), N_SIDES, N_PRICES), dtype=np.int64)
    best = np.full((max(n, 1), N_SIDES), NO_PRICE, dtype=np.int32)
    meta = np.zeros(max(n, 1), dtype=BOOK_META_DTYPE)
    meta["sid"] = -1
    meta["last_seq"] = NO_SEQ
    meta["last_exch_ts"] = NO_TS
    meta["last_recv_ts"] = NO_TS
    return qty, best, meta


def _run(
    raw: RawHistory, mode: int, cadence: int, top_k: int, row_cap: int, *, run_cap: int = _RUN_CAP
) -> tuple[Any, ...]:
    qty, best, meta = _new_books(len(raw.tickers))
    # The kernel writes each snapshot row's status: work on a copy, keep ``raw`` as loaded.
    out = _replay(
        raw.snapshots.copy(),
        raw.snap_session,
        raw.deltas,
        raw.delta_session,
        raw.gaps,
        raw.gap_session,
        qty,
        best,
        meta,
        mode,
        cadence,
        top_k,
        row_cap,
        np.zeros(max(run_cap, 1), dtype=DELTA_DTYPE),
    )
    return (qty, best, meta, *out)


def rebuild_books(raw: RawHistory) -> Books:
    """Replay every record of ``raw`` through ``core.book`` and return the final books.

    Gaps, recorded desyncs and feed-session changes invalidate books exactly as in
    :func:`build_dataset`; a book is valid at the end only if a clean snapshot followed
    its last invalidation.

    Args:
        raw: from :func:`load_raw`.

    Returns:
        :class:`Books` with one slot per ticker of ``raw``.
    """
    qty, best, meta, *rest = _run(raw, MODE_NONE, 1, 1, 0)
    n = len(raw.tickers)
    counters = rest[-1]
    return Books(
        tickers=raw.tickers,
        qty=qty[:n],
        best=best[:n],
        meta=meta[:n],
        counters={k: int(v) for k, v in zip(COUNTER_NAMES, counters, strict=True)},
    )


# =========================================================================== dataset


@dataclass(frozen=True)
class HistoryQuery:
    """What to load and how to cut it into decision points.

    Attributes:
        tickers: markets (None = all recorded markets).
        start, end: exchange-time window ``[start, end)``: aware datetimes or unix ms.
        cadence_updates: a decision point every N updates of a market (default 1).
        cadence_ms: or one every T ms of exchange time (exclusive with cadence_updates).
        top_k: depth levels per side kept (>= FEATURE_TOP_LEVELS).
        min_segment: segments with fewer decision points are dropped.
        close_tolerance_ms: a market's last segment "reaches close" (and gets
            ``markets.result``) when the window covers ``close_time``, no gap/desync cut
            it, and its last update is at most this long before ``close_time``.
    """

    tickers: tuple[str, ...] | None = None
    start: datetime | int | None = None
    end: datetime | int | None = None
    cadence_updates: int | None = None
    cadence_ms: int | None = None
    top_k: int = DEFAULT_TOP_K
    min_segment: int = 2
    close_tolerance_ms: int = 60_000

    def __post_init__(self) -> None:
        if self.tickers is not None:
            object.__setattr__(self, "tickers", tuple(self.tickers))
        if self.cadence_updates is not None and self.cadence_ms is not None:
            raise ConfigError("give cadence_updates or cadence_ms, not both")
        for name in ("cadence_updates", "cadence_ms"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be a positive int, got {v!r}")
        if not isinstance(self.top_k, int) or self.top_k < FEATURE_TOP_LEVELS:
            raise ConfigError(f"top_k must be an int >= {FEATURE_TOP_LEVELS}, got {self.top_k!r}")
        if not isinstance(self.min_segment, int) or self.min_segment < 1:
            raise ConfigError(f"min_segment must be a positive int, got {self.min_segment!r}")
        if self.close_tolerance_ms < 0:
            raise ConfigError("close_tolerance_ms must be >= 0")

    @property
    def mode(self) -> tuple[int, int]:
        """(replay mode, cadence) for the kernel."""
        if self.cadence_ms is not None:
            return MODE_MS, self.cadence_ms
        return MODE_UPDATES, self.cadence_updates or 1

    def as_meta(self) -> dict[str, Any]:
        """JSON-able form (datetimes as unix ms)."""
        d = asdict(self)
        d["tickers"] = None if self.tickers is None else list(self.tickers)
        d["start"] = None if self.start is None else _to_ms(self.start, 0)
        d["end"] = None if self.end is None else _to_ms(self.end, 0)
        d["cadence_updates"] = self.mode[1] if self.mode[0] == MODE_UPDATES else None
        return d


class SegmentInfo(NamedTuple):
    """Per-segment facts of a build, before dropping short segments (diagnostics/tests)."""

    market: np.ndarray  # int32 [S]
    first_ts: np.ndarray  # int64 [S] exchange ms of the opening snapshot
    last_ts: np.ndarray  # int64 [S] last update (or emitted grid point)
    end_reason: np.ndarray  # int8 [S] END_*
    rows: np.ndarray  # int64 [S] decision points emitted
    kept: np.ndarray  # bool [S] survived min_segment


def _ttc(ts: np.ndarray, c: np.ndarray, o: np.ndarray) -> np.ndarray:
    span = (c - o).astype(np.float64)
    frac = np.ones(ts.shape[0], dtype=np.float64)
    ok = span > 0
    frac[ok] = (c[ok] - ts[ok]) / span[ok]
    return np.clip(frac, 0.0, 1.0).astype(np.float32)


def _seg_results(
    raw: RawHistory, seg_market: np.ndarray, last_ts: np.ndarray, reason: np.ndarray, tol: int
) -> np.ndarray:
    """RESULT_* per segment: a market's last segment only, uncut, when the data reaches close."""
    out = np.full(seg_market.shape[0], RESULT_UNKNOWN, dtype=np.int8)
    if seg_market.size == 0:
        return out
    last_of = np.full(len(raw.tickers), -1, dtype=np.int64)
    last_of[seg_market] = np.arange(seg_market.size)  # later segments overwrite earlier
    for m, s in enumerate(last_of):
        close = raw.close_ms[m]
        if s < 0 or close == NO_TS or raw.result[m] == RESULT_UNKNOWN:
            continue
        # The window must cover the close, and the segment must run (uncut) up to it.
        if raw.end_ms >= close and reason[s] == END_DATA and last_ts[s] >= close - tol:
            out[s] = raw.result[m]
    return out


def build_dataset(raw: RawHistory, query: HistoryQuery) -> tuple[Dataset, SegmentInfo]:
    """Replay ``raw`` into decision points and market features.

    Args:
        raw: from :func:`load_raw`.
        query: cadence, depth, minimum segment length, close tolerance.

    Returns:
        (dataset, per-segment info before dropping).  Rows are grouped by segment in the
        order segments opened; ``ttc`` uses markets.open_time/close_time, else the
        segment's own span (open -> first update, close -> last update).
    """
    mode, cadence = query.mode
    k = query.top_k
    est = raw.snapshots.shape[0] + raw.deltas.shape[0] // cadence if mode == MODE_UPDATES else 0
    (
        _,
        _,
        _,
        rpx,
        rqty,
        rts,
        rseg,
        n_rows,
        seg_market,
        seg_first,
        seg_last,
        seg_reason,
        n_seg,
        counters,
    ) = _run(raw, mode, cadence, k, max(est, 1024))
    seg_market = seg_market[:n_seg]
    seg_first = seg_first[:n_seg]
    seg_last = seg_last[:n_seg]
    seg_reason = seg_reason[:n_seg]
    rseg = rseg[:n_rows]
    lengths = np.bincount(rseg, minlength=n_seg).astype(np.int64)
    kept = lengths >= query.min_segment
    seg_result = _seg_results(raw, seg_market, seg_last, seg_reason, query.close_tolerance_ms)

    # Rows were emitted interleaved across markets; group them by segment (stable keeps time).
    order = np.argsort(rseg, kind="stable")
    order = order[kept[rseg[order]]]
    row_seg = rseg[order]
    px = rpx[order]
    dq = rqty[order]
    ts = rts[order]
    keep_idx = np.flatnonzero(kept)
    kl = lengths[keep_idx]
    seg_end = np.cumsum(kl).astype(np.int64)
    seg_start = seg_end - kl

    mk = seg_market[row_seg]
    close = raw.close_ms[mk]
    opn = raw.open_ms[mk]
    has_close = close != NO_TS
    c = np.where(has_close, close, seg_last[row_seg])
    o = np.where(has_close & (opn != NO_TS), opn, seg_first[row_seg])
    ttc = _ttc(ts, c, o)
    reset = np.zeros(ts.shape[0], dtype=np.uint8)
    reset[seg_start] = 1
    feats = np.empty((ts.shape[0], N_MARKET_FEATURES), dtype=np.float32)
    market_features_batch(px, dq, ttc, reset, feats)
    mid = np.empty(ts.shape[0], dtype=np.float64)
    mids_batch(px, dq, mid)

    meta = {
        "source": "postgres",
        "query": query.as_meta(),
        "feature_names": list(MARKET_FEATURE_NAMES),
        "counts": {
            "snapshot_rows": int(raw.snapshots.shape[0]),
            "deltas": int(raw.deltas.shape[0]),
            "gaps": int(raw.gaps.shape[0]),
            "segments_total": int(n_seg),
            "segments_dropped": int(n_seg - keep_idx.size),
            **{k2: int(v) for k2, v in zip(COUNTER_NAMES, counters, strict=True)},
        },
    }
    ds = Dataset(
        features=feats,
        depth_px=px,
        depth_qty=dq,
        mid=mid,
        ts=ts,
        ttc=ttc,
        seg_start=seg_start,
        seg_end=seg_end,
        seg_market=seg_market[keep_idx].astype(np.int32),
        seg_result=seg_result[keep_idx],
        markets=raw.tickers,
        meta=meta,
    )
    info = SegmentInfo(seg_market, seg_first, seg_last, seg_reason, lengths, kept)
    return ds, info


async def load_history(
    conn: asyncpg.Connection, query: HistoryQuery, *, helper: asyncpg.Connection | None = None
) -> Dataset:
    """PostgreSQL -> :class:`core.dataset.Dataset` for ``query``.

    Args:
        conn: a connection.
        query: markets, window, cadence and segment rules.
        helper: optional second idle connection: the delta COPY is split across both
            (see :func:`load_raw`); ~25-30% faster for large loads on 2 cores.

    Returns:
        The dataset (possibly with 0 rows when the window holds no clean segment).
    """
    raw = await load_raw(
        conn, query.tickers, query.start, query.end, lean=True, replayable=True, helper=helper
    )
    ds, _ = build_dataset(raw, query)
    return ds
