"""``collect --all`` follows the market list of the rolling sim: markets listed after the
start are recorded from their opening, determined ones are dropped, and every market that
closed while recorded settles in the dataset.  Real loopback sockets, real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.dtypes import (
    GAP_REASON_END,
    MS_DETERMINED,
    MS_SETTLED,
    RESULT_UNKNOWN,
    RESULT_YES,
    SEG_END_CLOSE,
)
from kalshi_rl.commands.collect import run_collector, stop_report
from kalshi_rl.config import CollectorConfig, FeedConfig
from kalshi_rl.sim import SimConfig, SimExchange
from kalshi_rl.sim.listings import default_series
from kalshi_rl.sim.model import ModelParams
from kalshi_rl.store import db
from kalshi_rl.store.history import HistoryQuery, load_history

pytestmark = pytest.mark.slow

FAST = ModelParams(determine_delay_ms=200, settle_delay_ms=300)


async def test_collect_all_follows_rolling_listings(pg_dsn: str, tmp_path: Path) -> None:
    series = default_series(2, lifetime_ms=2000, lead_ms=300)
    # The sim runs in real time from a whole second, so its clock is the wall clock (the
    # collector stamps snapshots with receive time) and every open/close time is a whole
    # second, as REST publishes them (Kalshi's are whole minutes).
    # Build the sim once first: on a cold Numba cache its model compiles for seconds, which
    # must not pass between t0 and the sim's start (its clock would lag the wall clock).
    SimExchange(SimConfig(series=series, model=FAST, rate=2000, record_limit=0))
    t0 = (time.time_ns() // 10**9 + 1) * 1000
    await asyncio.sleep(max(t0 / 1000 - time.time(), 0))
    cfg = SimConfig(series=series, model=FAST, rate=2000, record_limit=0, start_ts_ms=t0)
    lines: list[str] = []
    async with SimExchange(cfg) as sim:
        stop = asyncio.Event()
        parts: dict[str, Any] = {}
        ccfg = CollectorConfig(
            rest_url=sim.rest_url, all_markets=True, database_url=pg_dsn, mode="sim",
            ring_capacity=1 << 14, progress_interval_s=0.2, spill_dir=str(tmp_path / "spill"),
            rescan_interval_s=0.3,
        )  # fmt: skip
        task = asyncio.create_task(
            run_collector(
                ccfg,
                FeedConfig(ws_url=sim.ws_url),
                stop=stop,
                echo=lines.append,
                on_started=lambda feed, writer: parts.update(feed=feed, writer=writer),
            )
        )
        while "feed" not in parts:
            await asyncio.sleep(0.01)
        feed = parts["feed"]
        await feed.wait_connected(10)
        at_start = set(feed.tickers)
        first = set(sim.tickers)  # each series' first market: listed with the sim
        results: dict[str, int] = {}
        loop = asyncio.get_running_loop()
        end = loop.time() + 60
        # run until 5 markets are determined (the first of each series started with it)
        while len(results) < 5 and loop.time() < end:
            await asyncio.sleep(0.05)
            for t, r in _results(sim).items():
                results.setdefault(t, r)
        # the last determined events reach the collector: it drops those markets (a loaded
        # machine takes longer than any fixed wait)
        while set(results) & set(feed.tickers):
            if loop.time() > end:
                pytest.fail(
                    f"determined markets still recorded: {set(results) & set(feed.tickers)}"
                )
            await asyncio.sleep(0.05)
        following = set(feed.tickers)
        stop.set()
        res = await asyncio.wait_for(task, 60)
    assert len(results) >= 5, results
    follow = res.follow
    assert follow is not None
    # the markets listed after the collector started (not those open at the sim's start)
    later = {t for t in results if t not in at_start and t not in first}
    assert len(later) >= 2, (results, first)
    assert follow["added"] >= len(later) and follow["dropped"] >= len(results)
    assert not (set(results) & following)  # determined markets are not recorded any more
    assert any("markets " in ln and "(+" in ln for ln in lines)
    assert "markets followed:" in stop_report(res)

    conn = await db.connect(pg_dsn)
    try:
        per_market = {
            r["ticker"]: r
            for r in await conn.fetch(
                "SELECT m.ticker, m.close_time, m.result, count(d.*) AS n,"
                " (SELECT count(*) FROM feed_gaps g WHERE g.market_id = m.id AND g.reason = $1)"
                " AS ends FROM markets m LEFT JOIN orderbook_deltas d ON d.market_id = m.id"
                " GROUP BY m.id",
                GAP_REASON_END,
            )
        }
        ds = await load_history(conn, HistoryQuery(cadence_updates=1, min_segment=2))
    finally:
        await conn.close()
    for t in later:  # recorded from the listing on, with its close time and result
        row = per_market[t]
        assert row["n"] > 0 and row["close_time"] is not None, t
        assert row["result"] == ("yes" if results[t] == RESULT_YES else "no"), t
        assert row["ends"] == 1, t  # its recording ended once: when it was determined
    settled = {
        ds.markets[ds.seg_market[s]]: int(ds.seg_result[s])
        for s in np.flatnonzero(ds.seg_result != RESULT_UNKNOWN)
    }
    assert ds.seg_end_reason is not None
    assert set(later) <= set(settled)
    for t, r in settled.items():
        assert r == results[t]
    closed = ds.seg_end_reason[ds.seg_result != RESULT_UNKNOWN]
    assert np.all(closed == SEG_END_CLOSE)


def _results(sim: SimExchange) -> dict[str, int]:
    """Ticker -> result of every market the sim has determined (live slots and retired)."""
    states = [sim.model.state(m) for m in range(len(sim.tickers))]
    states += list(sim.model.retired.values())
    return {
        st.spec.ticker: st.result
        for st in states
        if st is not None and st.status in (MS_DETERMINED, MS_SETTLED)
    }
