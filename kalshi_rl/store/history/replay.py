"""The njit replay: recorded streams -> books -> decision points and segments.

See the package docstring for the rules.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numba import njit

from core.book import book_apply_deltas, book_apply_snapshot, book_invalidate, book_top_k
from core.dtypes import (
    BOOK_META_DTYPE,
    DELTA_DTYPE,
    N_PRICES,
    N_SIDES,
    NO_PRICE,
    NO_SEQ,
    NO_TS,
    ST_INVALID_BOOK,
    ST_OK,
)
from kalshi_rl.store.history.load import RawHistory

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

_RUN_CAP = 512  # deltas applied per book_apply_deltas call at most (the work buffer)


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
