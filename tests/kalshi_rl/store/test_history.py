"""History loading against a plain-Python replay (dict books) of the same rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import numpy as np
import pytest

from core.dataset import validate
from core.dtypes import (
    GAP_REASON_END,
    HIST_LEN,
    NO_PRICE,
    PRICE_MAX,
    RESULT_NO,
    RESULT_UNKNOWN,
    RESULT_YES,
    SIDE_NO,
    SIDE_NONE,
    SIDE_YES,
    TRADE_DTYPE,
)
from core.features import MARKET_FEATURE_NAMES
from kalshi_rl.errors import ConfigError, DatasetError, StoreError
from kalshi_rl.store import db
from kalshi_rl.store import history as h
from kalshi_rl.store.history import load as hl
from kalshi_rl.store.history import replay as hr

T0 = 1_700_000_000_000  # ms
F_MID = MARKET_FEATURE_NAMES.index("mid")
F_TTC = MARKET_FEATURE_NAMES.index("ttc")
F_FILL = MARKET_FEATURE_NAMES.index("hist_fill")


# --------------------------------------------------------------------------- recorded data


@dataclass
class Recording:
    """Events as the recorder writes them: (session, rec_id, kind, market, payload)."""

    tickers: list[str]
    events: list[tuple] = field(default_factory=list)
    rec: dict[int, int] = field(default_factory=dict)

    def _next(self, sess: int) -> int:
        self.rec[sess] = self.rec.get(sess, 0) + 1
        return self.rec[sess]

    def snap(
        self, sess: int, m: int, ts: int, yes: list, no: list, *, exch_time: bool = True
    ) -> None:
        """A snapshot at ``ts``; ``exch_time=False``: stored like Kalshi's, exch_ts -1."""
        levels = [(SIDE_YES, p, q) for p, q in yes] + [(SIDE_NO, p, q) for p, q in no]
        if not levels:
            levels = [(SIDE_NONE, NO_PRICE, 0)]
        self.events.append((sess, self._next(sess), "snap", m, (ts, levels, exch_time)))

    def delta(
        self, sess: int, m: int, ts: int, side: int, price: int, d: int, status: int = 0
    ) -> None:
        self.events.append((sess, self._next(sess), "delta", m, (ts, side, price, d, status)))

    def gap(self, sess: int, ms: list[int], ts: int, reason: int = 1) -> None:
        rec = self._next(sess)
        for m in ms:
            self.events.append((sess, rec, "gap", m, (ts, reason)))


async def _store(
    conn: asyncpg.Connection, rec: Recording, sessions: dict[int, int], market_rows: dict[str, dict]
) -> dict[str, int]:
    ids = await db.ensure_markets(conn, rec.tickers)
    for t, kw in market_rows.items():
        await conn.execute(
            "UPDATE markets SET open_time = $2, close_time = $3, result = $4 WHERE ticker = $1",
            t,
            kw.get("open"),
            kw.get("close"),
            kw.get("result"),
        )
    snaps, deltas, gaps = [], [], []
    for sess, r, kind, m, p in rec.events:
        mid = ids[rec.tickers[m]]
        sid = sessions[sess]
        if kind == "snap":
            ts, levels, exch_time = p
            for side, price, q in levels:
                ex = ts if exch_time else -1
                snaps.append((sid, r, mid, 1, r, side, price, q, ex, ts * 10**6 + 5))
        elif kind == "delta":
            ts, side, price, d, status = p
            deltas.append((sid, r, mid, 1, r, side, price, d, ts, ts * 10**6 + 5, status))
        else:
            gaps.append((sid, r, mid, 1, r, r + 3, p[1], p[0] * 10**6 + 7))
    # Insert out of key order: the loader must not rely on physical order.
    await conn.copy_records_to_table(
        "orderbook_snapshots",
        records=snaps[::-1],
        columns=[
            "session_id",
            "rec_id",
            "market_id",
            "sid",
            "seq",
            "side",
            "price",
            "qty",
            "exch_ts",
            "recv_ts",
        ],
    )
    await conn.copy_records_to_table(
        "orderbook_deltas",
        records=deltas[::-1],
        columns=[
            "session_id",
            "rec_id",
            "market_id",
            "sid",
            "seq",
            "side",
            "price",
            "delta",
            "exch_ts",
            "recv_ts",
            "status",
        ],
    )
    await conn.copy_records_to_table(
        "feed_gaps",
        records=gaps,
        columns=[
            "session_id",
            "rec_id",
            "market_id",
            "sid",
            "expected_seq",
            "got_seq",
            "reason",
            "recv_ts",
        ],
    )
    return ids


async def _sessions(conn: asyncpg.Connection, n: int) -> dict[int, int]:
    out = {}
    for i in range(1, n + 1):
        out[i] = await conn.fetchval(
            "INSERT INTO feed_sessions (source, mode) VALUES ('test', 'sim') RETURNING id"
        )
    return out


# --------------------------------------------------------------------------- reference


def _top(book: dict, k: int) -> tuple[list, list]:
    px, qty = [], []
    for side in (SIDE_YES, SIDE_NO):
        lv = sorted(((p, q) for p, q in book[side].items() if q > 0), reverse=True)[:k]
        px.append([p for p, _ in lv] + [NO_PRICE] * (k - len(lv)))
        qty.append([q for _, q in lv] + [0] * (k - len(lv)))
    return px, qty


def _crossed(book: dict) -> bool:
    y = [p for p, q in book[SIDE_YES].items() if q > 0]
    n = [p for p, q in book[SIDE_NO].items() if q > 0]
    return bool(y and n and max(y) + max(n) >= PRICE_MAX)


def reference(
    rec: Recording,
    n_markets: int,
    mode: str,
    cadence: int,
    k: int,
    lo: int = -(2**62),
    hi: int = 2**62,
    close_ms: dict[int, int] | None = None,
) -> tuple[list[dict], list[dict]]:
    """Plain-Python replay: (segments with rows, final books).

    ``close_ms``: market -> close time; an update at or after it ends the segment
    (END_CLOSE, grid points before close first) and is not replayed.
    """
    closes = close_ms or {}
    books = [{SIDE_YES: {}, SIDE_NO: {}} for _ in range(n_markets)]
    valid = [False] * n_markets
    open_seg: list[dict | None] = [None] * n_markets
    since = [0] * n_markets
    grid = [0] * n_markets
    segs: list[dict] = []
    cur = None
    events = sorted(rec.events, key=lambda e: (e[0], e[1]))

    def close(m: int, reason: int) -> None:
        if open_seg[m] is not None:
            open_seg[m]["reason"] = reason
            open_seg[m] = None

    def emit(m: int, ts: int) -> None:
        px, q = _top(books[m], k)
        open_seg[m]["rows"].append((px, q, ts))
        open_seg[m]["last"] = max(open_seg[m]["last"], ts)

    for sess, _r, kind, m, p in events:
        if kind != "gap" and not lo <= p[0] < hi:
            continue
        if sess != cur:
            for mm in range(n_markets):
                close(mm, h.END_DATA)
                valid[mm] = False
            cur = sess
        if kind == "gap":
            valid[m] = False
            after = m in closes and open_seg[m] is not None and p[0] >= closes[m]
            end = h.END_RECORDING if p[1] == GAP_REASON_END else h.END_GAP
            close(m, h.END_CLOSE if after else end)
            continue
        ts = p[0]
        seg = open_seg[m]
        if m in closes and ts >= closes[m]:
            if mode == "ms" and seg is not None:
                while grid[m] < closes[m]:
                    emit(m, grid[m])
                    grid[m] += cadence
            valid[m] = False
            close(m, h.END_CLOSE)
            continue
        if mode == "ms" and seg is not None:
            while grid[m] < ts:
                emit(m, grid[m])
                grid[m] += cadence
        if kind == "snap":
            levels = p[1]
            new = {SIDE_YES: {}, SIDE_NO: {}}
            ok = True
            for side, price, q in levels:
                if side == SIDE_NONE and q == 0:
                    continue
                if q <= 0:
                    ok = False
                    continue
                new[side][price] = q
            books[m] = new
            ok = ok and not _crossed(new)
            valid[m] = ok
            if not ok:
                close(m, h.END_DESYNC)
                continue
            if seg is None:
                seg = {"market": m, "rows": [], "reason": h.END_DATA, "first": ts, "last": ts}
                segs.append(seg)
                open_seg[m] = seg
                since[m] = 0
                grid[m] = -((-ts) // cadence) * cadence
                if mode == "updates":
                    emit(m, ts)
                continue
        else:
            _, side, price, d, status = p
            if status != 0:
                valid[m] = False
                close(m, h.END_DESYNC)
                continue
            if not valid[m]:
                continue
            newq = books[m][side].get(price, 0) + d
            if newq < 0:
                valid[m] = False
                close(m, h.END_DESYNC)
                continue
            books[m][side][price] = newq
            if _crossed(books[m]):
                valid[m] = False
                close(m, h.END_DESYNC)
                continue
        seg["last"] = max(seg["last"], ts)
        if mode == "updates":
            since[m] += 1
            if since[m] >= cadence:
                since[m] = 0
                emit(m, ts)
    finals = [{"valid": valid[m], "book": books[m]} for m in range(n_markets)]
    return segs, finals


def _check_against_reference(ds, segs: list[dict], min_segment: int, k: int) -> None:
    kept = [s for s in segs if len(s["rows"]) >= min_segment]
    assert ds.n_segments == len(kept)
    for i, s in enumerate(kept):
        a, b = int(ds.seg_start[i]), int(ds.seg_end[i])
        assert b - a == len(s["rows"])
        assert int(ds.seg_market[i]) == s["market"]
        exp_px = np.array([r[0] for r in s["rows"]], dtype=np.int16).reshape(-1, 2, k)
        exp_q = np.array([r[1] for r in s["rows"]], dtype=np.int64).reshape(-1, 2, k)
        exp_ts = np.array([r[2] for r in s["rows"]], dtype=np.int64)
        np.testing.assert_array_equal(ds.depth_px[a:b], exp_px)
        np.testing.assert_array_equal(ds.depth_qty[a:b], exp_q)
        np.testing.assert_array_equal(ds.ts[a:b], exp_ts)
    # mid: both sides -> (yb + 1000 - nb)/2, else none (NaN; the feature 0, two_sided 0)
    yb = ds.depth_px[:, 0, 0].astype(np.float64)
    nb = ds.depth_px[:, 1, 0].astype(np.float64)
    two = (yb >= 0) & (nb >= 0)
    exp_mid = np.where(two, (yb + PRICE_MAX - nb) / 2, np.nan)
    np.testing.assert_array_equal(ds.mid, exp_mid)
    exp_f = np.where(two, exp_mid / PRICE_MAX, 0.0).astype(np.float32)
    np.testing.assert_array_equal(ds.features[:, F_MID], exp_f)
    np.testing.assert_array_equal(ds.features[:, F_TTC], ds.ttc)
    # the mid history restarts at every segment start (with the first real mid, if any)
    exp_fill = np.where(two[ds.seg_start], 1 / HIST_LEN, 0.0).astype(np.float32)
    np.testing.assert_array_equal(ds.features[ds.seg_start, F_FILL], exp_fill)
    assert validate(ds) == []


# --------------------------------------------------------------------------- scenario


SCENARIO_CLOSE = {0: T0 + 100_000, 2: T0 + 100_000}  # A and C (market index -> close ms)


def _scenario() -> tuple[Recording, dict[str, dict]]:
    """A: open/close known, result yes; B: nothing known; C: result no, data stops early."""
    r = Recording(["A", "B", "C"])
    t = T0 + 1000
    r.snap(1, 0, t, [(400, 1000), (390, 500)], [(550, 700), (540, 100)])
    r.snap(1, 1, t, [], [])
    r.snap(1, 2, t, [(100, 300)], [(800, 300)])
    for i in range(12):  # A and B move, C twice
        t += 250
        r.delta(1, 0, t, SIDE_YES, 400 - (i % 3), 100 * (i + 1))
        r.delta(1, 1, t, SIDE_NO, 300 + i, 50)
        if i in (3, 7):
            r.delta(1, 2, t, SIDE_YES, 101, 10)
    r.gap(1, [0], t + 1)
    t += 250
    r.delta(1, 0, t, SIDE_YES, 401, 999)  # after the gap: skipped until a snapshot
    t += 250
    r.snap(1, 0, t, [(410, 10)], [(500, 20)])
    for _ in range(5):
        t += 250
        r.delta(1, 0, t, SIDE_NO, 500, 5)
    r.delta(1, 1, t, SIDE_NO, 303, -51)  # B goes negative: desync
    r.delta(1, 1, t + 10, SIDE_NO, 304, 5)  # skipped
    t += 250
    r.snap(1, 1, t, [(200, 1)], [])
    r.delta(1, 1, t + 100, SIDE_YES, 200, 7)
    r.delta(1, 1, t + 200, SIDE_YES, 201, 7)
    r.delta(1, 0, t + 300, SIDE_YES, 410, 1, status=1)  # recorded live desync on A
    r.snap(1, 0, t + 400, [(420, 5)], [(500, 5)])
    r.delta(1, 0, t + 500, SIDE_NO, 590, 1)  # 420 + 590 >= 1000: crossed -> desync
    # session 2: a fresh snapshot; A runs up to its close
    t = T0 + 40_000
    r.snap(2, 0, t, [(450, 100)], [(500, 100)])
    r.snap(2, 1, t, [(300, 1)], [(600, 1)])
    for i in range(20):
        t += 3_000
        r.delta(2, 0, t, SIDE_YES, 451 + i, 3)
        r.delta(2, 1, t, SIDE_YES, 301, 1)
    markets = {
        "A": {
            "open": datetime.fromtimestamp(T0 / 1000, UTC),
            "close": datetime.fromtimestamp((T0 + 100_000) / 1000, UTC),
            "result": "yes",
        },
        "C": {"close": datetime.fromtimestamp((T0 + 100_000) / 1000, UTC), "result": "no"},
    }
    return r, markets


@pytest.fixture
async def scenario(pg_dsn: str):
    conn = await db.connect(pg_dsn)
    rec, markets = _scenario()
    await _store(conn, rec, await _sessions(conn, 2), markets)
    try:
        yield conn, rec
    finally:
        await conn.close()


async def test_load_raw_arrays(scenario) -> None:
    conn, rec = scenario
    raw = await h.load_raw(conn, ["C", "A"])
    assert raw.tickers == ("C", "A")
    n_snap_rows = sum(
        len(p[1]) for s, _, kind, m, p in rec.events if kind == "snap" and m in (0, 2)
    )
    assert raw.snapshots.shape[0] == n_snap_rows
    assert set(raw.snapshots["market"].tolist()) == {0, 1}
    assert set(raw.deltas["market"].tolist()) == {0, 1}
    key = raw.delta_session * 10**9 + raw.deltas["rec_id"]
    assert np.all(np.diff(key) > 0)  # sorted by (session, rec_id) although stored reversed
    assert raw.gaps.shape[0] == 1 and raw.gaps["market"][0] == 1
    assert raw.result.tolist() == [RESULT_NO, RESULT_YES]
    assert raw.close_ms.tolist() == [T0 + 100_000, T0 + 100_000]
    assert raw.open_ms[0] == -1 and raw.open_ms[1] == T0
    first = raw.deltas[raw.deltas["market"] == 1][0]
    assert (first["side"], first["price"], first["delta"], first["exch_ts"]) == (
        SIDE_YES,
        400,
        100,
        T0 + 1250,
    )
    assert first["recv_ts"] == (T0 + 1250) * 10**6 + 5
    every = await h.load_raw(conn)
    assert every.tickers == ("A", "B", "C")
    async with conn.transaction():  # inside the caller's transaction: no nested snapshot
        inner = await h.load_raw(conn)
    assert inner.deltas.tobytes() == every.deltas.tobytes()
    with pytest.raises(DatasetError, match="unknown market tickers: NOPE"):
        await h.load_raw(conn, ["A", "NOPE"])


async def test_rebuild_books_matches_reference(scenario) -> None:
    conn, rec = scenario
    raw = await h.load_raw(conn)
    books = h.rebuild_books(raw)
    _, finals = reference(rec, 3, "none", 1, 1)
    for m in range(3):
        assert bool(books.meta["valid"][m]) == finals[m]["valid"], m
        if finals[m]["valid"]:
            for side in (SIDE_YES, SIDE_NO):
                exp = np.zeros(PRICE_MAX + 1, dtype=np.int64)
                for p, q in finals[m]["book"][side].items():
                    exp[p] = q
                np.testing.assert_array_equal(books.qty[m, side], exp)

    assert books.counters["gaps"] == 1 and books.counters["sessions"] == 2
    assert books.counters["deltas_recorded_bad"] == 1
    assert books.counters["deltas_desync"] == 2  # B negative, A crossed
    assert books.counters["deltas_skipped_invalid"] == 2


@pytest.mark.parametrize(
    ("mode", "cadence"), [("updates", 1), ("updates", 3), ("ms", 1000), ("ms", 700)]
)
async def test_decision_points_match_reference(scenario, mode: str, cadence: int) -> None:
    conn, rec = scenario
    kw = {"cadence_updates": cadence} if mode == "updates" else {"cadence_ms": cadence}
    q = h.HistoryQuery(top_k=5, min_segment=1, **kw)
    raw = await h.load_raw(conn)
    ds, info = h.build_dataset(raw, q)
    segs, _ = reference(rec, 3, mode, cadence, 5, close_ms=SCENARIO_CLOSE)
    _check_against_reference(ds, [s for s in segs if s["rows"]], 1, 5)
    assert ds.markets == ("A", "B", "C")
    # every segment of the reference, incl. empty ones, with its end reason
    assert info.end_reason.tolist() == [s["reason"] for s in segs]
    assert info.rows.tolist() == [len(s["rows"]) for s in segs]


async def test_gap_and_desync_cut_segments(scenario) -> None:
    conn, _ = scenario
    ds, info = h.build_dataset(await h.load_raw(conn), h.HistoryQuery(min_segment=1))
    a = [i for i in range(info.market.size) if info.market[i] == 0]
    # A: session-1 start (gap), after-gap snapshot (recorded desync), re-snapshot (crossed),
    # session 2 (its last update is at close: the segment ends there)
    assert [int(info.end_reason[i]) for i in a] == [
        h.END_GAP,
        h.END_DESYNC,
        h.END_DESYNC,
        h.END_CLOSE,
    ]
    gap_ts = T0 + 1000 + 12 * 250 + 1
    first_a = a[0]
    assert info.last_ts[first_a] < gap_ts
    # no segment contains rows on both sides of the gap
    for s in range(ds.n_segments):
        rows = ds.ts[ds.seg_start[s] : ds.seg_end[s]]
        if ds.seg_market[s] == 0:
            assert rows.max() < gap_ts or rows.min() > gap_ts
    assert ds.meta["counts"]["gaps"] == 1


async def test_settlement_only_when_data_reaches_close(scenario) -> None:
    conn, _ = scenario
    ds, _info = h.build_dataset(await h.load_raw(conn), h.HistoryQuery(min_segment=1))
    res = {(int(ds.seg_market[s]), s): int(ds.seg_result[s]) for s in range(ds.n_segments)}
    a_segs = sorted(s for (m, s) in res if m == 0)
    assert [res[(0, s)] for s in a_segs] == [RESULT_UNKNOWN] * (len(a_segs) - 1) + [RESULT_YES]
    assert all(r == RESULT_UNKNOWN for (m, _), r in res.items() if m != 0)  # B: none, C: early
    # A's last update is at T0+100_000: with zero tolerance it still reaches close ...
    ds0, _ = h.build_dataset(
        await h.load_raw(conn), h.HistoryQuery(min_segment=1, close_tolerance_ms=0)
    )
    assert int(ds0.seg_result[ds0.seg_market == 0][-1]) == RESULT_YES
    # ... but a window ending before close does not settle it
    dsw = await h.load_history(conn, h.HistoryQuery(min_segment=1, end=T0 + 90_000))
    assert np.all(dsw.seg_result == RESULT_UNKNOWN)


async def test_ttc_from_market_times_or_segment_span(scenario) -> None:
    conn, _ = scenario
    ds, _ = h.build_dataset(await h.load_raw(conn), h.HistoryQuery(min_segment=1))
    a = np.flatnonzero(ds.seg_market == 0)
    for s in a:
        sl = slice(ds.seg_start[s], ds.seg_end[s])
        exp = np.clip((T0 + 100_000 - ds.ts[sl]) / 100_000, 0, 1).astype(np.float32)
        np.testing.assert_array_equal(ds.ttc[sl], exp)
    for s in np.flatnonzero(ds.seg_market == 1):  # B: segment span, 1 -> 0
        sl = slice(ds.seg_start[s], ds.seg_end[s])
        ts = ds.ts[sl]
        if ts[-1] > ts[0]:
            assert ds.ttc[sl][0] == 1.0 and ds.ttc[sl][-1] == 0.0
            assert np.all(np.diff(ds.ttc[sl]) <= 0)


async def test_window_and_min_segment(scenario) -> None:
    conn, rec = scenario
    lo, hi = T0 + 2000, T0 + 60_000
    q = h.HistoryQuery(start=datetime.fromtimestamp(lo / 1000, UTC), end=hi, min_segment=3, top_k=6)
    ds = await h.load_history(conn, q)
    segs, _ = reference(rec, 3, "updates", 1, 6, lo, hi)
    _check_against_reference(ds, segs, 3, 6)
    assert ds.meta["counts"]["segments_dropped"] == sum(1 for s in segs if len(s["rows"]) < 3)
    assert ds.meta["query"]["start"] == lo and ds.meta["query"]["end"] == hi
    assert ds.ts.min() >= lo and ds.ts.max() < hi


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_streams_match_reference(pg_dsn: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_m = 4
    rec = Recording([f"M{i}" for i in range(n_m)])
    t = T0
    for sess in (1, 2, 3):
        for m in range(n_m):
            if rng.random() < 0.8:
                rec.snap(sess, m, t, *_rand_book(rng))
        for _ in range(400):
            t += int(rng.integers(0, 300))
            m = int(rng.integers(n_m))
            u = rng.random()
            if u < 0.015:
                rec.gap(sess, sorted({m, int(rng.integers(n_m))}), t)
            elif u < 0.04:
                rec.snap(sess, m, t, *_rand_book(rng))
            elif u < 0.05:
                rec.delta(sess, m, t, SIDE_YES, 350, -(10**9))  # negative
            elif u < 0.055:
                rec.delta(sess, m, t, SIDE_YES, 900, 5)  # crosses a NO bid >= 100
            elif u < 0.06:
                rec.delta(sess, m, t, SIDE_NO, 400, 5, status=2)
            else:
                side = int(rng.integers(2))
                price = int(rng.integers(300, 480))
                rec.delta(sess, m, t, side, price, int(rng.integers(1, 500)))
                if rng.random() < 0.5:  # and take some of it away again
                    rec.delta(sess, m, t, side, price, -1)
        t += 5000
    conn = await db.connect(pg_dsn)
    try:
        # M1 closes in the middle of session 2: nothing of it after that is replayed
        close = sorted(e[4][0] for e in rec.events if e[0] == 2)[200]
        closes = {"M1": {"close": datetime.fromtimestamp(close / 1000, UTC), "result": "no"}}
        await _store(conn, rec, await _sessions(conn, 3), closes)
        raw = await h.load_raw(conn)
        for mode, cad in (("updates", 1), ("updates", 4), ("ms", 250)):
            kw = {"cadence_updates": cad} if mode == "updates" else {"cadence_ms": cad}
            ds, _ = h.build_dataset(raw, h.HistoryQuery(top_k=7, min_segment=2, **kw))
            segs, _ = reference(rec, n_m, mode, cad, 7, close_ms={1: close})
            _check_against_reference(ds, segs, 2, 7)
        books = h.rebuild_books(raw)
        _, finals = reference(rec, n_m, "none", 1, 1)
        assert books.meta["valid"].astype(bool).tolist() == [f["valid"] for f in finals]
    finally:
        await conn.close()


def _rand_book(rng) -> tuple[list, list]:
    if rng.random() < 0.1:
        return [], []
    yes = {int(p): int(rng.integers(1, 10_000)) for p in rng.integers(300, 480, 6)}
    no = {int(p): int(rng.integers(1, 10_000)) for p in rng.integers(300, 480, 6)}
    return list(yes.items()), list(no.items())


def test_query_validation() -> None:
    with pytest.raises(ConfigError, match="not both"):
        h.HistoryQuery(cadence_updates=1, cadence_ms=100)
    with pytest.raises(ConfigError, match="cadence_ms must be a positive int"):
        h.HistoryQuery(cadence_ms=0)
    with pytest.raises(ConfigError, match="top_k must be an int >= 5"):
        h.HistoryQuery(top_k=3)
    with pytest.raises(ConfigError, match="min_segment"):
        h.HistoryQuery(min_segment=0)
    with pytest.raises(ConfigError, match="no timezone"):
        hl._to_ms(datetime(2026, 1, 1), 0)
    assert h.HistoryQuery().mode == (h.MODE_UPDATES, 1)
    assert h.HistoryQuery(cadence_ms=500).mode == (h.MODE_MS, 500)


def test_decode_copy_binary_rejects_bad_buffers() -> None:
    cols = (("a", 8, ">i8", "a"), ("m", 4, ">i4", "market"), ("s", 2, ">i2", "side"))
    dt = np.dtype([("a", np.int64), ("market", np.int32), ("side", np.int8)])
    lut = np.array([-1, -1, -1, 0], dtype=np.int32)
    header = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8

    def row(a: int, m: int, side: int, len_a: int = 8) -> bytes:
        return (
            (3).to_bytes(2, "big")
            + len_a.to_bytes(4, "big", signed=True)
            + a.to_bytes(8, "big", signed=True)
            + (4).to_bytes(4, "big")
            + m.to_bytes(4, "big")
            + (2).to_bytes(4, "big")
            + side.to_bytes(2, "big", signed=True)
        )

    out, sess = h.decode_copy_binary(
        header + row(42, 3, -1) + row(-(2**40), 9, 1) + b"\xff\xff", cols, dt, lut
    )
    assert out["a"].tolist() == [42, -(2**40)]
    assert out["market"].tolist() == [0, -1]  # id 9 is not in the lookup
    assert out["side"].tolist() == [-1, 1]
    assert sess.tolist() == [0, 0]
    with pytest.raises(StoreError, match="bad signature"):
        h.decode_copy_binary(b"garbage" * 5, cols, dt, lut)
    with pytest.raises(StoreError, match="not whole rows"):
        h.decode_copy_binary(header + row(1, 3, 0)[:-1] + b"\xff\xff", cols, dt, lut)
    with pytest.raises(StoreError, match="COPY row 1 does not have the fixed layout"):
        h.decode_copy_binary(
            header + row(1, 3, 0) + row(0, 3, 0, len_a=-1) + b"\xff\xff", cols, dt, lut
        )


def test_copy_decoder_carries_rows_across_chunks() -> None:
    cols = (("a", 8, ">i8", "a"), ("s", 2, ">i2", "side"))
    dt = np.dtype([("a", np.int64), ("side", np.int8)])
    lut = np.zeros(1, dtype=np.int32)
    rows = b"".join(
        (2).to_bytes(2, "big")
        + (8).to_bytes(4, "big")
        + (i * 7919).to_bytes(8, "big")
        + (2).to_bytes(4, "big")
        + (i % 3 - 1).to_bytes(2, "big", signed=True)
        for i in range(50)
    )
    buf = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 4 + (3).to_bytes(4, "big") + b"ext" + rows
    buf += b"\xff\xff"
    whole, _ = h.decode_copy_binary(buf, cols, dt, lut)
    assert whole["a"].tolist() == [i * 7919 for i in range(50)]
    assert whole["side"].tolist() == [i % 3 - 1 for i in range(50)]
    rng = np.random.default_rng(0)
    dec = h.CopyDecoder(cols, dt, lut, batch_bytes=30)
    pos = 0
    while pos < len(buf):
        step = int(rng.integers(1, 40))
        dec.feed(buf[pos : pos + step])
        pos += step
    parts, _ = dec.finish()
    assert parts.tobytes() == whole.tobytes()
    bad = h.CopyDecoder(cols, dt, lut, batch_bytes=30)
    broken = bytearray(buf)
    start = 19 + 3 + 40 * 20  # header + extension + 40 rows of 20 bytes
    broken[start + 2 : start + 6] = (4).to_bytes(4, "big")  # row 40: column a claims 4 bytes
    with pytest.raises(StoreError, match="COPY row 40 does not"):
        for i in range(0, len(broken), 16):
            bad.feed(bytes(broken[i : i + 16]))
        bad.finish()


async def test_empty_window_gives_empty_dataset(scenario) -> None:
    conn, _ = scenario
    ds = await h.load_history(conn, h.HistoryQuery(start=0, end=1))
    assert ds.n_rows == 0 and ds.n_segments == 0 and validate(ds) == []
    assert ds.features.shape == (0, len(MARKET_FEATURE_NAMES))


async def test_trades_loaded_on_request(scenario) -> None:
    import uuid

    conn, _ = scenario
    ids = await db.ensure_markets(conn, ["A", "B"])
    sess = await conn.fetchval("SELECT min(id) FROM feed_sessions")
    tid = uuid.UUID("0123456789abcdef0011223344556677")
    await conn.executemany(
        "INSERT INTO trades (session_id, rec_id, market_id, trade_id, sid, yes_price, count,"
        " taker_side, exch_ts, recv_ts) VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8, $9)",
        [
            (sess, 1000, ids["B"], tid, 420, 250, 1, T0 + 5, 7),
            (sess, 999, ids["A"], None, 610, 100, 0, T0 + 4, 6),
        ],
    )
    raw = await h.load_raw(conn, ["A", "B"], with_trades=True)
    tr = raw.trades
    assert tr["market"].tolist() == [0, 1] and tr["rec_id"].tolist() == [999, 1000]
    assert tr["yes_price"].tolist() == [610, 420] and tr["count"].tolist() == [100, 250]
    assert tr["taker_side"].tolist() == [0, 1] and tr["exch_ts"].tolist() == [T0 + 4, T0 + 5]
    assert (int(tr["trade_id_hi"][1]), int(tr["trade_id_lo"][1])) == (
        0x0123456789ABCDEF,
        0x0011223344556677,
    )
    assert tr["trade_id_hi"][0] == 0 and tr["seq"][0] == -1
    assert (await h.load_raw(conn, ["A"])).trades.shape[0] == 0


@pytest.fixture
async def scenario_dsn(pg_dsn: str) -> str:
    conn = await db.connect(pg_dsn)
    try:
        rec, markets = _scenario()
        await _store(conn, rec, await _sessions(conn, 2), markets)
    finally:
        await conn.close()
    return pg_dsn


def test_cli_build_and_info(scenario_dsn: str, tmp_path) -> None:
    from typer.testing import CliRunner

    from kalshi_rl.commands.dataset import app, parse_time
    from kalshi_rl.store.parquet import load_dataset

    runner = CliRunner()
    out = tmp_path / "ds"
    res = runner.invoke(
        app,
        [
            "build",
            "--out",
            str(out),
            "--tickers",
            "A,B",
            "--cadence-ms",
            "500",
            "--top-k",
            "5",
            "--min-segment",
            "1",
            "--end",
            "2023-11-14T22:15:00",
            "--database-url",
            scenario_dsn,
        ],
    )
    assert res.exit_code == 0, res.output
    assert "segments" in res.output
    ds = load_dataset(out)
    assert ds.markets == ("A", "B") and ds.top_k == 5
    assert ds.meta["query"]["cadence_ms"] == 500
    assert ds.meta["query"]["end"] == parse_time("2023-11-14T22:15:00+00:00")
    assert np.all(ds.ts % 500 == 0)
    res = runner.invoke(app, ["info", str(out)])
    assert res.exit_code == 0 and f"rows                   {ds.n_rows}" in res.output
    res = runner.invoke(app, ["info", str(tmp_path / "none.parquet")])
    assert res.exit_code == 1 and "no dataset file" in res.output
    res = runner.invoke(
        app,
        [
            "build",
            "--out",
            str(tmp_path / "x"),
            "--start",
            "0",
            "--end",
            "1",
            "--database-url",
            scenario_dsn,
        ],
    )
    assert res.exit_code == 1 and "no decision points" in res.output
    res = runner.invoke(
        app,
        [
            "build",
            "--out",
            str(tmp_path / "x"),
            "--cadence-ms",
            "5",
            "--cadence-updates",
            "2",
            "--database-url",
            scenario_dsn,
        ],
    )
    assert res.exit_code == 1 and "not both" in res.output
    # a grid that would not fit the row budget is refused before anything is allocated
    res = runner.invoke(
        app,
        ["build", "--out", str(tmp_path / "x"), "--cadence-ms", "1", "--max-rows", "10000",
         "--database-url", scenario_dsn],
    )  # fmt: skip
    assert res.exit_code == 1 and "row budget of 10,000" in res.output, res.output
    assert not (tmp_path / "x").exists()
    # A's last segment reached its close: 1 settled
    res = runner.invoke(
        app,
        ["build", "--out", str(tmp_path / "y"), "--min-segment", "1", "--database-url",
         scenario_dsn],
    )  # fmt: skip
    assert res.exit_code == 0 and "(1 settled)" in res.output, res.output
    res = runner.invoke(app, ["info", str(tmp_path / "y")])
    assert "segments_settled       1" in res.output and "segments_closed        1" in res.output


async def test_lean_load_skips_only_unused_columns(scenario) -> None:
    conn, _ = scenario
    full = await h.load_raw(conn)
    lean = await h.load_raw(conn, lean=True)
    same = [n for n in full.deltas.dtype.names if n not in ("sid", "seq", "recv_ts")]
    for n in same:
        np.testing.assert_array_equal(lean.deltas[n], full.deltas[n])
    assert np.all(lean.deltas["seq"] == -1) and np.all(lean.deltas["recv_ts"] == -1)
    assert np.all(lean.deltas["sid"] == -1) and np.all(full.deltas["sid"] == 1)
    q = h.HistoryQuery(cadence_ms=300, min_segment=1)
    a, _ = h.build_dataset(full, q)
    b = await h.load_history(conn, q)
    for n in (
        "features",
        "depth_px",
        "depth_qty",
        "mid",
        "ts",
        "ttc",
        "seg_start",
        "seg_end",
        "seg_market",
        "seg_result",
    ):
        assert getattr(a, n).tobytes() == getattr(b, n).tobytes(), n


# --------------------------------------------------------------------------- runs, pruning


def _random_raw(rng: np.random.Generator, n_m: int = 3, n_ev: int = 3000) -> h.RawHistory:
    """In-memory raw streams with every kind of trouble the replay handles."""
    from core.dtypes import DELTA_DTYPE, GAP_DTYPE, SNAPSHOT_LEVEL_DTYPE

    snaps, snap_sess, deltas, delta_sess, gaps, gap_sess = [], [], [], [], [], []
    t = T0
    for sess in (1, 2):
        for rec in range(1, n_ev + 1):
            t += int(rng.integers(0, 40))
            m = int(rng.integers(n_m))
            u = rng.random()
            if u < 0.02:
                for side in (SIDE_YES, SIDE_NO):
                    for p in rng.choice(np.arange(300, 480), 4, replace=False):
                        snaps.append((rec, t, 0, 0, int(rng.integers(1, 1000)), m, 1, p, side, 0))
                        snap_sess.append(sess)
            elif u < 0.025:
                gaps.append((rec, t * 10**6, 0, 0, m, 1, 0))
                gap_sess.append(sess)
            else:
                side, price, d, st = int(rng.integers(2)), int(rng.integers(300, 480)), 0, 0
                d = int(rng.integers(1, 50)) if rng.random() < 0.97 else -int(rng.integers(1, 5))
                v = rng.random()
                if v < 0.002:
                    side = 3  # bad side
                elif v < 0.004:
                    price = 2000  # bad price
                elif v < 0.006:
                    m = n_m + 2  # unknown market slot
                elif v < 0.008:
                    st = 2  # the live book saw a desync
                elif v < 0.01:
                    price, side = 900, SIDE_YES  # crosses
                deltas.append((rec, t, t * 10**6, rec, d, m, 1, price, side, st))
                delta_sess.append(sess)
    return h.RawHistory(
        tickers=tuple(f"M{i}" for i in range(n_m)),
        market_ids=np.arange(1, n_m + 1, dtype=np.int32),
        open_ms=np.full(n_m, -1, np.int64),
        close_ms=np.full(n_m, -1, np.int64),
        result=np.full(n_m, RESULT_UNKNOWN, np.int8),
        snapshots=np.array(snaps, dtype=SNAPSHOT_LEVEL_DTYPE),
        snap_session=np.array(snap_sess, np.int64),
        deltas=np.array(deltas, dtype=DELTA_DTYPE),
        delta_session=np.array(delta_sess, np.int64),
        gaps=np.array(gaps, dtype=GAP_DTYPE),
        gap_session=np.array(gap_sess, np.int64),
        trades=np.zeros(0, TRADE_DTYPE),
        trade_session=np.zeros(0, np.int64),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delta_runs_match_one_at_a_time(seed: int) -> None:
    """Applying runs of deltas per kernel call == one call per delta, in every mode."""
    raw = _random_raw(np.random.default_rng(seed))
    before = raw.deltas.copy()
    # market 0 closes late in the second session: its updates after that are not replayed
    close = np.array([T0 + 100_000, -1, -1], np.int64)
    for mode, cad in ((h.MODE_NONE, 1), (h.MODE_UPDATES, 1), (h.MODE_UPDATES, 7), (h.MODE_MS, 50)):
        one = hr._run(raw, mode, cad, 5, 16, run_cap=1, close_ms=close)
        runs = hr._run(raw, mode, cad, 5, 16, close_ms=close)
        # books, rows [:n_rows], segments [:n_seg], counters
        assert one[7] == runs[7] and one[12] == runs[12]
        for i, n in ((0, None), (1, None), (2, None), (3, 7), (4, 7), (5, 7), (6, 7)):
            np.testing.assert_array_equal(
                one[i][: one[n] if n else None], runs[i][: runs[n] if n else None]
            )
        for i in (8, 9, 10, 11):
            np.testing.assert_array_equal(one[i][: one[12]], runs[i][: runs[12]])
        np.testing.assert_array_equal(one[13], runs[13])
        counters = dict(zip(h.COUNTER_NAMES, runs[-1].tolist(), strict=True))
        # the stream exercises every path of the delta branch
        del counters["snapshots_bad"]
        assert min(counters.values()) > 0, counters
        assert counters["deltas_applied"] > 10 * counters["deltas_desync"], counters
    for name in before.dtype.names or ():  # the recorded statuses are kept
        np.testing.assert_array_equal(raw.deltas[name], before[name], name)


async def test_replayable_load_skips_only_unappliable_deltas(pg_dsn: str, monkeypatch) -> None:
    rec = Recording(["A", "B"])
    t = T0
    for sess in (1, 2, 3):
        rec.delta(sess, 0, t, SIDE_YES, 400, 5)  # before any snapshot of the session
        if sess != 3:  # session 3 has no snapshot at all
            rec.snap(sess, 0, t + 1, [(400, 10)], [(300, 10)])
        for i in range(40):
            rec.delta(sess, i % 2, t + 2 + i, SIDE_NO, 300 + i % 7, 3)
        rec.snap(sess, 1, t + 50, [(410, 10)], [(310, 10)])
        for i in range(40):
            rec.delta(sess, i % 2, t + 60 + i, SIDE_YES, 400 + i % 7, 2)
        t += 1000
    conn = await db.connect(pg_dsn)
    helper = await db.connect(pg_dsn)
    try:
        await _store(conn, rec, await _sessions(conn, 3), {})
        full = await h.load_raw(conn, lean=True)
        rep = await h.load_raw(conn, lean=True, replayable=True)
        first: dict[int, int] = {}
        for s, r in zip(full.snap_session.tolist(), full.snapshots["rec_id"].tolist(), strict=True):
            first.setdefault(s, r)
        keys = zip(full.delta_session.tolist(), full.deltas["rec_id"].tolist(), strict=True)
        keep = np.array([s in first and r >= first[s] for s, r in keys])
        assert 0 < keep.sum() < keep.size
        for name in full.deltas.dtype.names or ():
            np.testing.assert_array_equal(rep.deltas[name], full.deltas[name][keep], name)
        np.testing.assert_array_equal(rep.delta_session, full.delta_session[keep])
        # with an end bound, or ranges covering much of the table, the same deltas are cut
        # out of the window scan instead
        ended = await h.load_raw(conn, lean=True, replayable=True, end=T0 + 10**6)
        await conn.execute("ANALYZE orderbook_deltas")
        monkeypatch.setattr(hl, "_PK_SHARE", 1e-9)
        masked = []
        cut = hl._from_first_snapshots
        monkeypatch.setattr(hl, "_from_first_snapshots", lambda *a: masked.append(1) or cut(*a))
        scanned = await h.load_raw(conn, lean=True, replayable=True)
        monkeypatch.undo()
        assert masked == [1]
        for other in (ended, scanned):
            assert other.deltas.tobytes() == rep.deltas.tobytes()
            np.testing.assert_array_equal(other.delta_session, rep.delta_session)
        q = h.HistoryQuery(cadence_updates=3, min_segment=1)
        a, _ = h.build_dataset(full, q)
        b = await h.load_history(conn, q)
        # the same split over two connections, forced at this small size
        monkeypatch.setattr(hl, "_MIN_SPLIT", 0)
        two = await h.load_raw(conn, lean=True, replayable=True, helper=helper)
        c = await h.load_history(conn, q, helper=helper)
        assert not helper.is_in_transaction()
    finally:
        await helper.close()
        await conn.close()
    assert two.deltas.tobytes() == rep.deltas.tobytes()
    np.testing.assert_array_equal(two.delta_session, rep.delta_session)
    for n in ("features", "depth_px", "depth_qty", "mid", "ts", "ttc", "seg_start", "seg_end"):
        assert getattr(a, n).tobytes() == getattr(b, n).tobytes() == getattr(c, n).tobytes(), n
    assert a.n_rows > 0
    counts_a, counts_b = a.meta["counts"], b.meta["counts"]
    assert counts_b["deltas"] == int(keep.sum()) and counts_a["deltas"] == keep.size
    assert counts_a["deltas_applied"] == counts_b["deltas_applied"]


async def test_split_ranges_cut_in_key_order(pg_dsn: str) -> None:
    conn = await db.connect(pg_dsn)
    try:
        rec = Recording(["A"])
        for sess in (1, 2):
            rec.snap(sess, 0, T0, [(400, 10)], [])
            for i in range(100 * sess):
                rec.delta(sess, 0, T0 + i, SIDE_YES, 400, 1)
        sessions = await _sessions(conn, 2)
        await _store(conn, rec, sessions, {})
        s = np.array([sessions[1], sessions[2]], np.int64)
        lo = np.array([1, 1], np.int64)
        hi = np.full(2, 2**63 - 1, np.int64)
        span = await hl._session_spans(conn, s, lo)
    finally:
        await conn.close()
    assert span.tolist() == [101, 201]
    assert len(hl._split_ranges(s, lo, hi, span)) == 1  # 302 keys < _MIN_SPLIT
    h_min, hl._MIN_SPLIT = hl._MIN_SPLIT, 0
    try:
        first, second = hl._split_ranges(s, lo, hi, span)
    finally:
        hl._MIN_SPLIT = h_min
    # 302 keys, cut after 151: all of session 1 (101) and 50 of session 2 go first
    assert first[0].tolist() == [sessions[1], sessions[2]] and second[0].tolist() == [sessions[2]]
    assert first[2].tolist() == [2**63 - 1, 51] and second[1].tolist() == [51]


# --------------------------------------------------------------------------- time, ends


async def test_snapshot_without_exchange_time_takes_receive_time(pg_dsn: str) -> None:
    rec = Recording(["A"])
    rec.snap(1, 0, T0 + 1000, [(400, 10)], [(500, 10)], exch_time=False)
    for i in range(1, 30):
        rec.delta(1, 0, T0 + 1000 + 100 * i, SIDE_YES, 400, 1)
    conn = await db.connect(pg_dsn)
    try:
        await _store(conn, rec, await _sessions(conn, 1), {})
        # the window bound selects the snapshot by its receive time (exch_ts is -1)
        raw = await h.load_raw(conn, start=T0 + 500, end=T0 + 10_000)
        upd = await h.load_history(conn, h.HistoryQuery(min_segment=1, start=T0 + 500))
        grid = await h.load_history(conn, h.HistoryQuery(min_segment=1, cadence_ms=1000))
        empty = await h.load_history(conn, h.HistoryQuery(min_segment=1, start=T0 + 1001))
    finally:
        await conn.close()
    assert raw.snapshots["exch_ts"].tolist() == [T0 + 1000, T0 + 1000]  # recv_ts // 1e6
    assert upd.n_segments == 1 and int(upd.ts[0]) == T0 + 1000 and upd.ts.min() > 0
    assert float(upd.ttc[0]) == 1.0 and float(upd.ttc[-1]) == 0.0  # the segment's own span
    # the grid starts at the snapshot, not in 1970
    assert grid.ts.tolist() == [T0 + 1000, T0 + 2000, T0 + 3000]
    assert empty.n_rows == 0  # no snapshot in that window: nothing replayable


async def test_end_of_recording_is_not_a_hole(pg_dsn: str) -> None:
    """The same data, ended by the collector's end marker or by a disconnect gap: only the
    first reaches close (within the tolerance) and settles."""
    out = {}
    for reason in (GAP_REASON_END, 2):
        rec = Recording(["A"])
        rec.snap(1, 0, T0, [(400, 10)], [(500, 10)])
        for i in range(1, 50):
            rec.delta(1, 0, T0 + 1000 * i, SIDE_YES, 400, 1)
        rec.gap(1, [0], T0 + 49_500, reason=reason)
        markets = {
            "A": {
                "open": datetime.fromtimestamp(T0 / 1000, UTC),
                "close": datetime.fromtimestamp((T0 + 60_000) / 1000, UTC),
                "result": "no",
            }
        }
        conn = await db.connect(pg_dsn)
        try:
            await conn.execute("TRUNCATE orderbook_snapshots, orderbook_deltas, feed_gaps")
            await _store(conn, rec, await _sessions(conn, 1), markets)
            out[reason] = h.build_dataset(
                await h.load_raw(conn), h.HistoryQuery(min_segment=1, end=T0 + 120_000)
            )
        finally:
            await conn.close()
    (ended, ended_info), (holed, holed_info) = out[GAP_REASON_END], out[2]
    assert ended_info.end_reason.tolist() == [h.END_RECORDING]
    assert holed_info.end_reason.tolist() == [h.END_GAP]
    assert ended.seg_result.tolist() == [RESULT_NO] and holed.seg_result.tolist() == [-1]
    assert ended.ts.tobytes() == holed.ts.tobytes()  # same rows, only the end differs
    assert ended.seg_end_reason is not None and ended.seg_end_reason.tolist() == [4]


def test_parquet_without_close_columns_loads_as_unknown(tmp_path) -> None:
    """Files written before seg_close_ts/seg_end_reason existed load with None there."""
    from kalshi_rl.env.synthetic import random_walk_dataset
    from kalshi_rl.store.parquet import dataset_info, load_dataset, save_dataset

    ds = random_walk_dataset(n_segments=3, seg_len=20, seed=1)
    assert ds.seg_close_ts is None
    for name in ("old", "old.parquet"):
        back = load_dataset(save_dataset(ds, tmp_path / name))
        assert back.seg_close_ts is None and back.seg_end_reason is None
        assert dataset_info(back)["segments_closed"] is None
    with_close = ds._replace(
        seg_close_ts=np.full(3, -1, np.int64), seg_end_reason=np.zeros(3, np.int8)
    )
    back = load_dataset(save_dataset(with_close, tmp_path / "new.parquet"))
    assert back.seg_close_ts.tolist() == [-1] * 3 and back.seg_end_reason.tolist() == [0] * 3
