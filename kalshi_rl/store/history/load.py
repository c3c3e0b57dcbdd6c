"""SQL loading: a time window of recorded streams from PostgreSQL as record arrays.

:func:`load_raw` reads snapshots, deltas, gaps (and trades) of chosen markets, each
stream with one binary COPY decoded as it streams (:mod:`.decode`), all inside one
REPEATABLE READ snapshot, sorted by (session_id, rec_id): the order the feed saw them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg
import numpy as np

from core.dtypes import (
    DELTA_DTYPE,
    GAP_DTYPE,
    NO_SEQ,
    NO_TS,
    RESULT_NO,
    RESULT_UNKNOWN,
    RESULT_YES,
    SNAPSHOT_LEVEL_DTYPE,
    TRADE_DTYPE,
)
from kalshi_rl.errors import ConfigError, DatasetError, StoreError
from kalshi_rl.store.history.decode import (
    _DELTA_COLS,
    _DELTA_COLS_LEAN,
    _GAP_COLS,
    _SNAP_COLS,
    _TRADE_COLS,
    CopyDecoder,
    _col_fields,
    _concat_records,
)

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_GAP_SLACK_NS = 600 * 10**9  # gaps carry only recv_ts; extra gaps outside data are harmless


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


def _ms_to_ns(ms: int) -> int:
    """Unix ms -> ns, clamped to int64 (the unbounded window ends stay unbounded)."""
    return max(min(ms * 1_000_000, _INT64_MAX), _INT64_MIN)


def _snapshot_times(snaps: np.ndarray) -> None:
    """Give every snapshot row without an exchange time (NO_TS) its receive time, in ms.

    Kalshi's snapshots carry no exchange time; without this the replay would open
    segments at ts -1 (a cadence grid from 1970, ttc 1.0 on every first row).
    """
    missing = snaps["exch_ts"] == NO_TS
    if missing.any():
        snaps["exch_ts"][missing] = snaps["recv_ts"][missing] // 1_000_000


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
    # A snapshot without exchange time (Kalshi sends none) takes its receive time: its rows
    # are selected by either clock and get exch_ts = recv_ts // 1e6 (see _snapshot_times).
    snap_win = (
        f"{in_mk} AND ((exch_ts >= $2 AND exch_ts < $3)"
        f" OR (exch_ts = {NO_TS} AND recv_ts >= $4 AND recv_ts < $5))"
    )
    snaps, snap_sess = await _copy(
        conn,
        _select("orderbook_snapshots", _SNAP_COLS, snap_win),
        args=(*win_args, _ms_to_ns(lo), _ms_to_ns(hi)),
        cols=_SNAP_COLS,
        dtype=SNAPSHOT_LEVEL_DTYPE,
        lut=lut,
    )
    _snapshot_times(snaps)
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
