"""Settlement and time end to end: sim (markets close, determine, settle) -> collector ->
PostgreSQL -> history -> Parquet -> the Gymnasium env.  Real loopback WebSockets and a
real PostgreSQL throughout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.dtypes import (
    GAP_REASON_END,
    NO_TS,
    RESULT_NO,
    RESULT_UNKNOWN,
    RESULT_YES,
    SEG_END_CLOSE,
)
from kalshi_rl.commands.collect import CollectorResult, run_collector, stop_report
from kalshi_rl.config import CollectorConfig, FeedConfig
from kalshi_rl.env.config import EnvConfig, SegmentOrder
from kalshi_rl.env.trading import INFO_PNL, INFO_SETTLED, KalshiTradingEnv
from kalshi_rl.errors import DatasetError
from kalshi_rl.sim.config import SimConfig
from kalshi_rl.sim.model import ModelParams
from kalshi_rl.sim.server import SimExchange
from kalshi_rl.store import db
from kalshi_rl.store.history import HistoryQuery, load_history
from kalshi_rl.store.parquet import dataset_info, load_dataset, save_dataset

pytestmark = pytest.mark.slow

LIFETIME_MS = 24_000  # sim ms from start to close (the collector starts within half of it)


async def until(pred: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Wait for a state the collector reaches asynchronously; fail naming it on timeout."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            pytest.fail(f"timed out waiting for: {what}")
        await asyncio.sleep(0.02)


async def _record(dsn: str, spill: Path) -> tuple[CollectorResult, dict[str, int]]:
    """Record the sim until every market settled; returns the run and the sim's results."""
    model = ModelParams(lifetime_ms=LIFETIME_MS, determine_delay_ms=300, settle_delay_ms=300)
    sim_cfg = SimConfig(n_markets=4, autostart=False, seed=7, model=model)
    # The sim's clock starts at the wall clock when it is built and stands still until we
    # advance it, but the first snapshots carry their receive (wall) time: the collector
    # must be up within the markets' lifetime.  Build the model once first, so a cold
    # Numba cache compiles its kernels (seconds) before that clock starts, not after.
    SimExchange(sim_cfg)
    async with SimExchange(sim_cfg) as sim:
        stop = asyncio.Event()
        started = asyncio.Event()
        feeds: list[Any] = []

        def on_started(feed: Any, _writer: Any) -> None:
            feeds.append(feed)
            started.set()

        cfg = CollectorConfig(rest_url=sim.rest_url, tickers=tuple(sim.tickers),
                              database_url=dsn, mode="sim", ring_capacity=1 << 14,
                              progress_interval_s=0.2, spill_dir=str(spill))  # fmt: skip
        task = asyncio.create_task(
            run_collector(cfg, FeedConfig(ws_url=sim.ws_url), stop=stop, on_started=on_started)
        )
        await asyncio.wait_for(started.wait(), 30)

        # book and lifecycle channels come in one subscribe: all snapshots in = subscribed
        await until(lambda: feeds[0].books_valid() == 4, "the initial snapshots")
        if time.time() * 1000 >= sim.model.now_ms + LIFETIME_MS // 2:
            pytest.fail("the collector took over half the markets' lifetime to start")
        while not sim.model.all_settled():
            sim.advance(400)
            await asyncio.sleep(0.01)

        # The sim sent everything; determined + settled are each market's last frames.
        # Stop once the feed has them all, not after a fixed time (a loaded machine takes
        # longer to drain the socket); stopping writes what the 1 s tick has not yet.
        await until(lambda: feeds[0].stats.lifecycle >= 2 * 4, "the determined + settled events")
        stop.set()
        res = await asyncio.wait_for(task, 60)
        results = {t: int(sim.model.mk[i]["result"]) for i, t in enumerate(sim.tickers)}
    return res, results


@pytest.fixture
async def recorded(pg_dsn: str, tmp_path: Path):
    res, results = await _record(pg_dsn, tmp_path / "spill")
    return pg_dsn, res, results


async def test_recorded_closes_settle_and_time_stays_inside_the_session(
    recorded, tmp_path: Path
) -> None:
    dsn, res, results = recorded
    assert set(results.values()) <= {RESULT_YES, RESULT_NO}
    conn = await db.connect(dsn)
    try:
        gaps = await conn.fetch(
            "SELECT reason, count(*) AS n FROM feed_gaps WHERE session_id = $1 GROUP BY reason",
            res.session_id,
        )
        session = await conn.fetchrow("SELECT * FROM feed_sessions WHERE id = $1", res.session_id)
        lo, hi = await conn.fetchrow(
            "SELECT least(min(d.exch_ts), min(s.recv_ts) / 1000000),"
            " greatest(max(d.exch_ts), max(s.recv_ts) / 1000000)"
            " FROM orderbook_deltas d, orderbook_snapshots s"
            " WHERE d.session_id = $1 AND s.session_id = $1",
            res.session_id,
        )
        markets = await conn.fetch(
            "SELECT ticker, status, result,"
            " (extract(epoch FROM close_time) * 1000)::bigint AS close_ms FROM markets"
        )
        upd = await load_history(conn, HistoryQuery(cadence_updates=1, min_segment=2))
        grid = await load_history(conn, HistoryQuery(cadence_ms=1000, min_segment=2))
        with pytest.raises(DatasetError, match="row budget"):
            await load_history(conn, HistoryQuery(cadence_ms=1, max_rows=1000))
    finally:
        await conn.close()

    # The markets table learnt each close time (REST) and result (lifecycle events).
    close = {r["ticker"]: r["close_ms"] for r in markets}
    for r in markets:
        assert r["close_ms"] is not None and r["status"] == "settled"
        assert r["result"] == ("yes" if results[r["ticker"]] == RESULT_YES else "no")

    # A clean stop: one end-of-recording row per market, no disconnect rows (no hole).
    assert {r["reason"]: r["n"] for r in gaps} == {GAP_REASON_END: 4}
    assert session["n_gaps"] == 0 and session["n_gap_rows"] == 0
    assert session["n_end_rows"] == 4 and session["n_reconnects"] == 0
    assert session["books_valid_at_stop"] == 4 == res.books_valid
    assert session["rejects"] == {} and 0 < session["uptime"] <= 1
    report = stop_report(res)
    assert "books valid at stop 4/4" in report and "rejected frames 0" in report

    for ds in (upd, grid):
        # every market reached close: its final segment settles at the exchange's result
        info = dataset_info(ds)
        assert info["segments_settled"] == 4 == info["segments_closed"], info
        assert ds.seg_close_ts is not None and ds.seg_end_reason is not None
        for s in np.flatnonzero(ds.seg_result != RESULT_UNKNOWN):
            t = ds.markets[ds.seg_market[s]]
            assert int(ds.seg_result[s]) == results[t]
            assert ds.seg_end_reason[s] == SEG_END_CLOSE and ds.seg_close_ts[s] == close[t]
        # no decision point at or after close, none outside the recorded session, no -1
        for s in range(ds.n_segments):
            ts = ds.ts[ds.seg_start[s] : ds.seg_end[s]]
            assert ts.max() < ds.seg_close_ts[s] != NO_TS
        assert ds.ts.min() >= lo and ds.ts.max() <= hi
        assert ds.ttc.min() > 0.0 and ds.ttc.max() < 1.0  # from open/close times, not -1
    assert np.all(grid.ts % 1000 == 0) and grid.n_rows >= 4 * 8

    # Parquet keeps the close times and end reasons; `dataset info` reports settlements.
    back = load_dataset(save_dataset(upd, tmp_path / "ds"))
    for name in ("seg_result", "seg_close_ts", "seg_end_reason", "ts", "features"):
        assert getattr(back, name).tobytes() == getattr(upd, name).tobytes(), name
    assert dataset_info(back)["segments_settled"] == 4


async def test_episode_held_to_close_pays_the_settlement(recorded) -> None:
    dsn, _res, results = recorded
    conn = await db.connect(dsn)
    try:
        ds = await load_history(conn, HistoryQuery(cadence_updates=5, min_segment=2))
    finally:
        await conn.close()
    s = int(np.flatnonzero(ds.seg_result != RESULT_UNKNOWN)[0])
    one = ds.subset(np.array([s]))
    flipped = one._replace(seg_result=(1 - one.seg_result).astype(np.int8))

    def buy_and_hold(data) -> tuple[float, bool]:
        env = KalshiTradingEnv(data, EnvConfig(segment_order=SegmentOrder.SEQUENTIAL))
        env.reset(seed=0)
        action = 1  # buy one YES contract, then hold to the end of the segment (close)
        while True:
            _, _, term, trunc, info = env.step(action)
            action = 0
            if term or trunc:
                return float(info[INFO_PNL]), bool(info[INFO_SETTLED])

    pnl, settled = buy_and_hold(one)
    pnl_flipped, settled_flipped = buy_and_hold(flipped)
    assert settled and settled_flipped
    # Same fills, same fees; only the settlement differs: exactly $1 for one contract.
    won = int(one.seg_result[0]) == RESULT_YES
    assert results[one.markets[one.seg_market[0]]] == int(one.seg_result[0])
    assert round(pnl - pnl_flipped, 4) == (1.0 if won else -1.0)
