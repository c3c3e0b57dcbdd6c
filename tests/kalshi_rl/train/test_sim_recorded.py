"""Train on data RECORDED FROM THE SIM: sim -> collector -> PostgreSQL -> history ->
Parquet -> PPO -> registry.  Real loopback WebSockets and a real PostgreSQL throughout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kalshi_rl import registry
from kalshi_rl.commands.collect import run_collector
from kalshi_rl.config import CollectorConfig, FeedConfig
from kalshi_rl.sim.config import SimConfig
from kalshi_rl.sim.server import SimExchange
from kalshi_rl.store import db
from kalshi_rl.store.history import HistoryQuery, load_history
from kalshi_rl.store.parquet import save_dataset
from kalshi_rl.train.run import Args, train

pytestmark = pytest.mark.slow


async def until(pred: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Wait for a state the collector reaches asynchronously; fail naming it on timeout."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            pytest.fail(f"timed out waiting for: {what}")
        await asyncio.sleep(0.02)


async def _record(dsn: str, spill: Path, steps: int) -> tuple[str, ...]:
    """Run the sim with a collector attached for ``steps`` model steps; return the tickers."""
    sim_cfg = SimConfig(n_markets=4, autostart=False, seed=11)
    # build the model once first: a cold Numba cache compiles its kernels (seconds) here,
    # not after the timed sim's clock started (tests/kalshi_rl/store/test_history_sim.py)
    SimExchange(sim_cfg)
    async with SimExchange(sim_cfg) as sim:
        stop = asyncio.Event()
        feeds: list[Any] = []
        cfg = CollectorConfig(rest_url=sim.rest_url, tickers=tuple(sim.tickers),
                              database_url=dsn, mode="sim", ring_capacity=1 << 14,
                              progress_interval_s=0.0, spill_dir=str(spill))  # fmt: skip
        task = asyncio.create_task(
            run_collector(
                cfg,
                FeedConfig(ws_url=sim.ws_url),
                stop=stop,
                on_started=lambda feed, _writer: feeds.append(feed),
            )
        )
        await until(lambda: bool(feeds) or task.done(), "the collector to start", 30)
        if not feeds:
            await task  # raises what stopped the collector
            pytest.fail("the collector ended before it started")
        feed = feeds[0]
        await until(lambda: feed.books_valid() == 4, "the initial snapshots")
        sent0, got0 = sim.stats["deltas"], feed.stats.deltas
        for _ in range(steps // 200):
            sim.advance(200)
            await asyncio.sleep(0.02)
        # one subscription to every market: each delta the sim sent reaches this feed
        sent = sim.stats["deltas"] - sent0
        await until(lambda: feed.stats.deltas - got0 >= sent, f"all {sent} deltas received")
        stop.set()
        await asyncio.wait_for(task, 60)
        return tuple(sim.tickers)


async def test_ppo_on_dataset_recorded_from_sim(pg_dsn: str, tmp_path: Path) -> None:
    tickers = await _record(pg_dsn, tmp_path / "spill", 4000)
    conn = await db.connect(pg_dsn)
    try:
        n_deltas = await conn.fetchval("SELECT count(*) FROM orderbook_deltas")
        ds = await load_history(conn, HistoryQuery(cadence_updates=1, min_segment=20))
    finally:
        await conn.close()
    assert n_deltas > 1000
    assert set(ds.markets) == set(tickers) and ds.n_segments >= 2 and ds.n_rows > 500
    path = save_dataset(ds, tmp_path / "sim_dataset")

    args = Args(
        dataset=str(path), timesteps=4096, n_envs=16, n_steps=64, batch_size=256, n_epochs=2,
        eval_every=0, progress_every=2048, database_url=pg_dsn, eval_fraction=0.25,
        checkpoint_dir=tmp_path / "models", progress_bar=False, name="sim-ppo",
    )  # fmt: skip
    res = await asyncio.to_thread(train, args)

    conn = await db.connect(pg_dsn)
    try:
        mv = await registry.get(conn, res.model_id)
    finally:
        await conn.close()
    assert mv.status == registry.ModelStatus.READY
    assert set(mv.markets) == set(tickers)
    assert mv.data_window["rows"] == ds.n_rows
    assert mv.metrics["timesteps"] >= 4096
    assert res.report["policies"]["agent"]["episodes"] >= 1
    assert Path(str(mv.checkpoint_path)).exists()
