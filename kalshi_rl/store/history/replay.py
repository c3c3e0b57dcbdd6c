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
    GAP_REASON_END,
    N_PRICES,
    N_SIDES,
    NO_PRICE,
    NO_SEQ,
    NO_TS,
    SEG_END_CLOSE,
    SEG_END_DATA,
    SEG_END_DESYNC,
    SEG_END_GAP,
    SEG_END_RECORDING,
    ST_INVALID_BOOK,
    ST_OK,
)
from core.records import borrow
from kalshi_rl.store.history.load import RawHistory

# Cadence modes of the replay kernel.
MODE_NONE = 0  # rebuild books only
MODE_UPDATES = 1
MODE_MS = 2

# Why a segment ended (the ``end_reason`` of :class:`SegmentInfo`, ``Dataset.seg_end_reason``).
END_DATA = SEG_END_DATA
END_GAP = SEG_END_GAP
END_DESYNC = SEG_END_DESYNC
END_CLOSE = SEG_END_CLOSE
END_RECORDING = SEG_END_RECORDING

# Replay counters (indices into the kernel's int64 counters array).
_C_SNAPSHOTS = 0
_C_SNAPSHOTS_BAD = 1
_C_DELTAS = 2
_C_DELTAS_BAD = 3
_C_DELTAS_SKIPPED = 4
_C_DELTAS_RECORDED_BAD = 5
_C_GAPS = 6
_C_SESSIONS = 7
_C_AFTER_CLOSE = 8
_N_COUNTERS = 9
COUNTER_NAMES = (
    "snapshots",
    "snapshots_bad",
    "deltas_applied",
    "deltas_desync",
    "deltas_skipped_invalid",
    "deltas_recorded_bad",
    "gaps",
    "sessions",
    "updates_after_close",
)

# Rows of the replay's per-market int64 scratch (one column per market).
_S_OPEN_SEG = 0  # the market's open segment, -1 for none
_S_SINCE = 1
_S_NEXT_GRID = 2
_S_RUN_CNT = 3
_S_RUN_TS = 4
_S_RUN_MK = 5
_N_SCRATCH = 6

_RUN_CAP = 512  # deltas applied per book_apply_deltas call at most (the work buffer)

_BIG = 2**62  # "no record": sorts after every (session, rec_id)

# Record kinds :func:`_next_kind` picks.
_K_NONE = 0
_K_SNAP = 1
_K_DELTA = 2
_K_GAP = 3


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


_Rows = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # px, qty, ts, segment
_Segs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # market, first, last, reason


@njit(cache=True, inline="always")
def _emit_row(  # noqa: PLR0917 -- njit helper over positional arrays
    rows: _Rows, n: int, qty: np.ndarray, best: np.ndarray, m: int, top_k: int, ts: int,
    s: int,
) -> tuple[_Rows, int]:  # fmt: skip
    """Append market ``m``'s book as decision point ``n`` (time ``ts``, segment ``s``).

    ``rows`` are the row buffers, doubled first when full.  Returns the (possibly
    reallocated) buffers and the new row count.
    """
    if n == rows[0].shape[0]:
        rows = _grow_rows(*rows)
    book_top_k(qty, best, m, top_k, rows[0][n], rows[1][n])
    rows[2][n] = ts
    rows[3][n] = s
    return rows, n + 1


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


@njit(cache=True, inline="always")
def _next_kind(  # noqa: PLR0917 -- njit helper over positional arrays
    snaps: np.ndarray, snap_sess: np.ndarray, deltas: np.ndarray, delta_sess: np.ndarray,
    gaps: np.ndarray, gap_sess: np.ndarray, i_s: int, i_d: int, i_g: int,
) -> tuple[int, Any, Any]:  # fmt: skip
    """The stream whose next record comes first: (kind _K_*, its session, its rec_id)."""
    kind = _K_NONE
    bs = np.int64(_BIG)
    br = np.int64(_BIG)
    if i_s < snaps.shape[0]:
        kind = _K_SNAP
        bs = snap_sess[i_s]
        br = snaps[i_s]["rec_id"]
    if i_d < deltas.shape[0] and _before(delta_sess[i_d], deltas[i_d]["rec_id"], bs, br):
        kind = _K_DELTA
        bs = delta_sess[i_d]
        br = deltas[i_d]["rec_id"]
    if i_g < gaps.shape[0] and _before(gap_sess[i_g], gaps[i_g]["rec_id"], bs, br):
        kind = _K_GAP
        bs = gap_sess[i_g]
        br = gaps[i_g]["rec_id"]
    return kind, bs, br


@njit(cache=True, inline="always")
def _on_gap(  # noqa: PLR0917 -- njit helper over positional arrays
    g: Any, meta: np.ndarray, open_seg: np.ndarray, segs: _Segs, close_ms: np.ndarray,
    counters: np.ndarray,
) -> None:  # fmt: skip
    """A feed_gaps row ``g``: a hole ends the segment, the end marker ends the recording.

    Either one at or after the market's close_time (receive clock) comes after the data
    reached close: the segment ends END_CLOSE.
    """
    counters[_C_GAPS] += 1
    m = g["market"]
    if m < 0 or m >= open_seg.shape[0]:
        return
    reason = END_RECORDING if g["reason"] == GAP_REASON_END else END_GAP
    c = close_ms[m]
    if c != NO_TS and open_seg[m] >= 0 and g["recv_ts"] // 1_000_000 >= c:
        reason = END_CLOSE
    _cut(meta, open_seg, segs[3], m, reason)


@njit(cache=True, inline="always")
def _emit_grid(  # noqa: PLR0917 -- njit helper over positional arrays
    rows: _Rows, n_rows: int, qty: np.ndarray, best: np.ndarray, m: int, top_k: int,
    upto: int, s: int, next_grid: np.ndarray, segs: _Segs, cadence: int,
) -> tuple[_Rows, int]:  # fmt: skip
    """MODE_MS: emit market ``m``'s book as of every grid point before ``upto``."""
    while next_grid[m] < upto:
        g = next_grid[m]
        rows, n_rows = _emit_row(rows, n_rows, qty, best, m, top_k, g, s)
        segs[2][s] = max(segs[2][s], g)
        next_grid[m] = g + cadence
    return rows, n_rows


@njit(cache=True, inline="always")
def _collect_run(  # noqa: PLR0917 -- njit helper over positional arrays
    deltas: np.ndarray, delta_sess: np.ndarray, i_d: int, sess: Any, ss: Any, sr: Any,
    gs: Any, gr: Any, open_seg: np.ndarray, since: np.ndarray, next_grid: np.ndarray,
    close_ms: np.ndarray, mode: int, cadence: int, work: np.ndarray, run_cnt: np.ndarray,
    run_ts: np.ndarray, run_mk: np.ndarray,
) -> tuple[int, int, int]:  # fmt: skip
    """Copy the run of deltas starting at ``i_d`` into ``work``.

    A run is this delta and the following ones up to (not including) the next snapshot
    (session ``ss``, rec_id ``sr``), gap (``gs``, ``gr``), session change, recorded bad
    status, due grid point (MODE_MS) or delta at/after its market's close, and up to
    (including) the next delta that may reach a cadence point (MODE_UPDATES) or has a bad
    side/price.  ``run_cnt``/``run_ts`` count, per market with an open segment, its
    deltas and their latest exchange time (``run_mk`` lists those markets), assuming every
    delta applies: when one does not, the run may end earlier than needed, never later.

    Returns:
        (deltas in the run, markets listed in ``run_mk``, index of the next delta).
    """
    n_m = open_seg.shape[0]
    nd = deltas.shape[0]
    wcap = work.shape[0]
    n_run = 0
    n_mk = 0
    j = i_d
    while j < nd and n_run < wcap:
        if j > i_d:
            r = deltas[j]["rec_id"]
            if (
                delta_sess[j] != sess
                or not _before(sess, r, ss, sr)
                or not _before(sess, r, gs, gr)
                or deltas[j]["status"] != ST_OK
            ):
                break
            mj = deltas[j]["market"]
            if 0 <= mj < n_m:
                tj = deltas[j]["exch_ts"]
                if close_ms[mj] != NO_TS and tj >= close_ms[mj]:
                    break
                if mode == MODE_MS and open_seg[mj] >= 0 and next_grid[mj] < tj:
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
    return n_run, n_mk, j


@njit(cache=True, inline="always")
def _apply_run(  # noqa: PLR0917 -- njit helper over positional arrays
    qty: np.ndarray, best: np.ndarray, meta: np.ndarray, open_seg: np.ndarray, segs: _Segs,
    since: np.ndarray, mode: int, run: np.ndarray, n_mk: int, run_cnt: np.ndarray,
    run_ts: np.ndarray, run_mk: np.ndarray, counters: np.ndarray,
) -> None:  # fmt: skip
    """Apply a collected run with one ``book_apply_deltas`` call and account for it.

    Every delta applied extends its segment; a desync (negative level, crossed book, bad
    side/price) ends it (END_DESYNC); deltas on invalid books are skipped.
    """
    n_m = open_seg.shape[0]
    n_run = run.shape[0]
    n_bad = book_apply_deltas(qty, best, meta, run)
    if n_bad == 0:
        # Every delta applied to a valid book (so one with an open segment).
        counters[_C_DELTAS] += n_run
        for q in range(n_mk):
            mq = run_mk[q]
            sq = open_seg[mq]
            segs[2][sq] = max(segs[2][sq], run_ts[mq])
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
                _cut(meta, open_seg, segs[3], mq, END_DESYNC)
                continue
            counters[_C_DELTAS] += 1
            if sq >= 0:
                segs[2][sq] = max(segs[2][sq], run[q]["exch_ts"])
                if mode == MODE_UPDATES:
                    since[mq] += 1
    for q in range(n_mk):
        run_cnt[run_mk[q]] = 0


@njit(cache=True, inline="always")
def _on_snapshot(  # noqa: PLR0917 -- njit helper over positional arrays
    rows: _Rows, n_rows: int, n_seg: int, qty: np.ndarray, best: np.ndarray,
    meta: np.ndarray, snap: np.ndarray, m: int, ts: int, open_seg: np.ndarray, segs: _Segs,
    since: np.ndarray, next_grid: np.ndarray, mode: int, cadence: int, top_k: int,
    counters: np.ndarray,
) -> tuple[_Rows, int, int]:  # fmt: skip
    """Apply one snapshot (its rows ``snap``): opens segment ``n_seg`` on an invalid book,
    else refreshes it (an update); a failed snapshot ends the segment (END_DESYNC).

    Returns:
        (row buffers, row count, segment count).
    """
    st = book_apply_snapshot(qty, best, meta, m, snap)
    counters[_C_SNAPSHOTS] += 1
    if st != ST_OK:
        counters[_C_SNAPSHOTS_BAD] += 1
        _cut(meta, open_seg, segs[3], m, END_DESYNC)
        return rows, n_rows, n_seg
    s = open_seg[m]
    if s < 0:
        s = n_seg
        open_seg[m] = s
        segs[0][s] = m
        segs[1][s] = ts
        segs[2][s] = ts
        segs[3][s] = END_DATA
        since[m] = 0
        if mode == MODE_MS:
            next_grid[m] = -((-ts) // cadence) * cadence  # ceil to the grid
        if mode == MODE_UPDATES:
            rows, n_rows = _emit_row(rows, n_rows, qty, best, m, top_k, ts, s)
        return rows, n_rows, n_seg + 1
    segs[2][s] = max(segs[2][s], ts)
    if mode == MODE_UPDATES:
        since[m] += 1
        if since[m] >= cadence:
            since[m] = 0
            rows, n_rows = _emit_row(rows, n_rows, qty, best, m, top_k, ts, s)
    return rows, n_rows, n_seg


@njit(cache=True, inline="always")
def _snapshot_end(snaps: np.ndarray, snap_sess: np.ndarray, i_s: int) -> int:
    """One past the last row of the snapshot starting at ``i_s`` (its rows share the key)."""
    bs = snap_sess[i_s]
    br = snaps[i_s]["rec_id"]
    j = i_s + 1
    while j < snaps.shape[0] and snap_sess[j] == bs and snaps[j]["rec_id"] == br:
        j += 1
    return j


@njit(cache=True, inline="always")
def _close(  # noqa: PLR0917 -- njit helper over positional arrays
    rows: _Rows, n_rows: int, qty: np.ndarray, best: np.ndarray, meta: np.ndarray, m: int,
    top_k: int, open_seg: np.ndarray, segs: _Segs, next_grid: np.ndarray, c: int, mode: int,
    cadence: int, counters: np.ndarray,
) -> tuple[_Rows, int]:  # fmt: skip
    """An update of market ``m`` at or after its close ``c``: the book as of every grid
    point before close (MODE_MS), then the segment ends (END_CLOSE); the update itself is
    not replayed."""
    s = open_seg[m]
    if mode == MODE_MS and s >= 0:
        rows, n_rows = _emit_grid(rows, n_rows, qty, best, m, top_k, c, s, next_grid, segs,
                                  cadence)  # fmt: skip
    _cut(meta, open_seg, segs[3], m, END_CLOSE)
    counters[_C_AFTER_CLOSE] += 1
    return rows, n_rows


@njit(cache=True)
def _replay(  # noqa: PLR0917 -- njit kernel over positional arrays
    snaps: np.ndarray,
    snap_sess: np.ndarray,
    deltas: np.ndarray,
    delta_sess: np.ndarray,
    gaps: np.ndarray,
    gap_sess: np.ndarray,
    qty: np.ndarray,
    best: np.ndarray,
    meta: np.ndarray,
    close_ms: np.ndarray,
    mode: int,
    cadence: int,
    top_k: int,
    row_cap: int,
    work: np.ndarray,
    segs: _Segs,
    scratch: np.ndarray,
    counters: np.ndarray,
):
    """Merge the three streams by (session, rec_id), replay them, emit decision points.

    Args:
        snaps, deltas, gaps: raw record arrays (``market`` = book slot), each sorted.
        snap_sess, delta_sess, gap_sess: int64 session id per record.
        qty, best, meta: book arrays with one slot per market (fresh, all invalid).
        close_ms: int64 [M] each market's close_time (unix ms, NO_TS = unknown): an update
            at or after it ends the market's segment (END_CLOSE) and is not replayed.
        mode: MODE_NONE / MODE_UPDATES / MODE_MS; cadence: N updates or T ms.
        top_k: depth levels per side to emit; row_cap: initial row buffer size.
        work: DELTA_DTYPE [>= 1] buffer a run of deltas is copied into and applied from
            (``book_apply_deltas`` writes its status into the records it applies; the
            caller's array keeps the status the live book recorded).
        segs: (seg_market int32, seg_first_ts int64, seg_last_ts int64, seg_reason int8),
            each [>= snapshot rows + 1], written.
        scratch: int64 [_N_SCRATCH, M] zeros, the per-market state of the loop.
        counters: int64 [_N_COUNTERS] zeros, written.

    Returns:
        (px int16 [R,2,K], qty int64 [R,2,K], ts int64 [R], row_seg int64 [R], n_rows,
        n_segs).  Row buffers are longer than n_rows.
    """
    # Every array the loop hands to its steps is borrowed (core.records.borrow): an array
    # passed to an inlined step, or a view of one, would otherwise be reference-counted
    # with atomic calls at each of the loop's hundreds of thousands of runs and rows.  The
    # arguments outlive the call; only the row buffers, which grow, are owned.
    snaps, snap_sess, deltas = borrow(snaps), borrow(snap_sess), borrow(deltas)
    delta_sess, gaps, gap_sess = borrow(delta_sess), borrow(gaps), borrow(gap_sess)
    qty, best, meta, close_ms = borrow(qty), borrow(best), borrow(meta), borrow(close_ms)
    work, counters = borrow(work), borrow(counters)
    segs = (borrow(segs[0]), borrow(segs[1]), borrow(segs[2]), borrow(segs[3]))
    scratch = borrow(scratch)
    n_m = qty.shape[0]
    ns = snaps.shape[0]
    ng = gaps.shape[0]
    n_seg = 0
    open_seg = scratch[_S_OPEN_SEG]
    open_seg[:] = -1
    since = scratch[_S_SINCE]  # updates since the last emitted row (MODE_UPDATES)
    next_grid = scratch[_S_NEXT_GRID]  # next grid point to emit (MODE_MS)
    cap = max(row_cap, 64)
    rows = (
        np.empty((cap, N_SIDES, top_k), dtype=np.int16),
        np.empty((cap, N_SIDES, top_k), dtype=np.int64),
        np.empty(cap, dtype=np.int64),
        np.empty(cap, dtype=np.int64),
    )
    n_rows = 0
    # Per-run scratch of _collect_run.
    run_cnt = scratch[_S_RUN_CNT]
    run_ts = scratch[_S_RUN_TS]
    run_mk = scratch[_S_RUN_MK]
    i_s = 0
    i_d = 0
    i_g = 0
    sess = np.int64(-_BIG)
    while True:
        kind, bs, _ = _next_kind(snaps, snap_sess, deltas, delta_sess, gaps, gap_sess, i_s,
                                  i_d, i_g)  # fmt: skip
        if kind == _K_NONE:
            break
        if bs != sess:
            # A new feed session knows nothing of the old books: cut everything.
            for m in range(n_m):
                _cut(meta, open_seg, segs[3], m, END_DATA)
            sess = bs
            counters[_C_SESSIONS] += 1
        if kind == _K_GAP:
            _on_gap(gaps[i_g], meta, open_seg, segs, close_ms, counters)
            i_g += 1
            continue
        # An update of market m at exchange time ts: a delta, or a snapshot (rows i_s:j).
        if kind == _K_DELTA:
            m = deltas[i_d]["market"]
            ts = deltas[i_d]["exch_ts"]
            j = i_d + 1
        else:
            m = snaps[i_s]["market"]
            ts = snaps[i_s]["exch_ts"]
            j = _snapshot_end(snaps, snap_sess, i_s)
        if m < 0 or m >= n_m or (close_ms[m] != NO_TS and ts >= close_ms[m]):
            if 0 <= m < n_m:
                rows, n_rows = _close(rows, n_rows, qty, best, meta, m, top_k, open_seg, segs,
                                      next_grid, close_ms[m], mode, cadence, counters)  # fmt: skip
            if kind == _K_DELTA:
                i_d = j
            else:
                i_s = j
            continue
        s = open_seg[m]
        if mode == MODE_MS and s >= 0 and next_grid[m] < ts:
            rows, n_rows = _emit_grid(rows, n_rows, qty, best, m, top_k, ts, s, next_grid, segs,
                                      cadence)  # fmt: skip
        if kind == _K_SNAP:
            rows, n_rows, n_seg = _on_snapshot(
                rows, n_rows, n_seg, qty, best, meta, snaps[i_s:j], m, ts, open_seg, segs,
                since, next_grid, mode, cadence, top_k, counters,
            )  # fmt: skip
            i_s = j
        elif deltas[i_d]["status"] != ST_OK:
            # The live book rejected it: the recorder saw a desync here.
            i_d = j
            counters[_C_DELTAS_RECORDED_BAD] += 1
            _cut(meta, open_seg, segs[3], m, END_DESYNC)
        else:
            ss = snap_sess[i_s] if i_s < ns else np.int64(_BIG)
            sr = snaps[i_s]["rec_id"] if i_s < ns else np.int64(_BIG)
            gs = gap_sess[i_g] if i_g < ng else np.int64(_BIG)
            gr = gaps[i_g]["rec_id"] if i_g < ng else np.int64(_BIG)
            n_run, n_mk, i_d = _collect_run(
                deltas, delta_sess, i_d, sess, ss, sr, gs, gr, open_seg, since, next_grid,
                close_ms, mode, cadence, work, run_cnt, run_ts, run_mk,
            )  # fmt: skip
            _apply_run(qty, best, meta, open_seg, segs, since, mode, work[:n_run], n_mk, run_cnt,
                       run_ts, run_mk, counters)  # fmt: skip
            # Only the run's last delta can reach a cadence point (the run ends there).
            m = work[n_run - 1]["market"]
            if mode == MODE_UPDATES and 0 <= m < n_m:
                s = open_seg[m]
                if s >= 0 and since[m] >= cadence:
                    since[m] = 0
                    ts = work[n_run - 1]["exch_ts"]
                    rows, n_rows = _emit_row(rows, n_rows, qty, best, m, top_k, ts, s)
    rpx, rqty, rts, rseg = rows
    return rpx, rqty, rts, rseg, n_rows, n_seg


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
    raw: RawHistory,
    mode: int,
    cadence: int,
    top_k: int,
    row_cap: int,
    *,
    run_cap: int = _RUN_CAP,
    close_ms: np.ndarray | None = None,
) -> tuple[Any, ...]:
    """Run :func:`_replay` on ``raw``; returns (qty, best, meta, *the kernel's outputs).

    ``close_ms`` (int64 [M], NO_TS = unknown) ends segments at each market's close; None
    replays everything (what the live books would hold).
    """
    qty, best, meta = _new_books(len(raw.tickers))
    if close_ms is None:
        close_ms = np.full(len(raw.tickers), NO_TS, dtype=np.int64)
    ns = raw.snapshots.shape[0]
    segs = (
        np.empty(ns + 1, dtype=np.int32),  # market
        np.empty(ns + 1, dtype=np.int64),  # first update ts
        np.empty(ns + 1, dtype=np.int64),  # last update (or emitted grid point) ts
        np.empty(ns + 1, dtype=np.int8),  # END_* reason
    )
    counters = np.zeros(_N_COUNTERS, dtype=np.int64)
    # The kernel writes each snapshot row's status: work on a copy, keep ``raw`` as loaded.
    rpx, rqty, rts, rseg, n_rows, n_seg = _replay(
        raw.snapshots.copy(),
        raw.snap_session,
        raw.deltas,
        raw.delta_session,
        raw.gaps,
        raw.gap_session,
        qty,
        best,
        meta,
        np.ascontiguousarray(close_ms, dtype=np.int64),
        mode,
        cadence,
        top_k,
        row_cap,
        np.zeros(max(run_cap, 1), dtype=DELTA_DTYPE),
        segs,
        np.zeros((_N_SCRATCH, qty.shape[0]), dtype=np.int64),
        counters,
    )
    return (qty, best, meta, rpx, rqty, rts, rseg, n_rows, *segs, n_seg, counters)


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
