"""LiveNode against the real sim over loopback WebSockets and a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kalshi_rl.config import CollectorConfig, FeedConfig
from kalshi_rl.errors import StoreError
from kalshi_rl.live.node import LiveNode
from kalshi_rl.sim.config import SimConfig
from kalshi_rl.sim.server import SimExchange
from kalshi_rl.store import db


async def until(pred: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Wait for a condition; fail naming it on timeout."""
    end = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.01)


class CountingSink:
    """A sink that records its lifecycle (the node must start and close it)."""

    def __init__(self) -> None:
        self.started = 0
        self.closed = 0

    def start(self) -> None:
        self.started += 1

    async def close(self) -> None:
        self.closed += 1

    def stats(self) -> dict[str, Any]:
        return {"started": self.started, "closed": self.closed}


def node_config(sim: SimExchange, dsn: str, tmp: Path) -> CollectorConfig:
    return CollectorConfig(
        rest_url=sim.rest_url,
        tickers=tuple(sim.tickers),
        database_url=dsn,
        mode="sim",
        ring_capacity=1 << 12,
        progress_interval_s=0.0,
        spill_dir=str(tmp / "spill"),
    )


async def test_node_owns_session_books_writers_and_listeners(pg_dsn: str, tmp_path: Path) -> None:
    seen: list[int] = []
    sink = CountingSink()
    async with SimExchange(SimConfig(n_markets=3, autostart=False, seed=5)) as sim:
        node = LiveNode(node_config(sim, pg_dsn, tmp_path), FeedConfig(ws_url=sim.ws_url))
        async with node:
            assert node.session_id > 0
            node.add_book_listener(lambda slots: seen.extend(int(s) for s in slots))
            node.add_sink(sink)
            assert sink.started == 1
            row = await node.pool.fetchrow(
                "SELECT mode, markets, ended_at FROM feed_sessions WHERE id = $1",
                node.session_id,
            )
            assert row["mode"] == "sim" and sorted(row["markets"]) == sorted(sim.tickers)
            assert row["ended_at"] is None
            await until(lambda: node.feed.books_valid() == 3, "every book valid")
            sim.advance(300)
            await until(lambda: node.feed.stats.deltas > 0, "deltas applied")
            await until(lambda: node.writer.rows_written["orderbook_deltas"] > 0, "deltas written")
            st = node.stats()
            assert st["session_id"] == node.session_id and st["books_valid"] == 3
            assert st["sinks"] == [{"started": 1, "closed": 0}]
        assert sink.closed == 1 and node.pool is None
        assert node.books_valid_at_stop == 3
        # every book batch reached the listener: snapshots and delta flushes name their slots
        assert set(seen) == {node.books.slots[t] for t in sim.tickers}
        assert len(seen) >= node.feed_stats["deltas"] + node.feed_stats["snapshots"]
    conn = await db.connect(pg_dsn)
    try:
        row = await conn.fetchrow(
            "SELECT ended_at, n_deltas, n_snapshots FROM feed_sessions WHERE id = $1",
            node.session_id,
        )
        n_db = await conn.fetchval(
            "SELECT count(*) FROM orderbook_deltas WHERE session_id = $1", node.session_id
        )
    finally:
        await conn.close()
    assert row["ended_at"] is not None
    assert row["n_deltas"] == node.feed_stats["deltas"] == n_db > 0
    assert row["n_snapshots"] == node.feed_stats["snapshots"] >= 3


async def test_nodes_on_two_databases_share_a_spill_root(
    pg_dsn: str, pg_dsn_other: str, tmp_path: Path
) -> None:
    """One --spill-dir, two databases: each node spills in its own db-<id> directory."""
    async with SimExchange(SimConfig(n_markets=2, autostart=False, seed=6)) as sim:
        a = LiveNode(node_config(sim, pg_dsn, tmp_path), FeedConfig(ws_url=sim.ws_url))
        b = LiveNode(node_config(sim, pg_dsn_other, tmp_path), FeedConfig(ws_url=sim.ws_url))
        async with a, b:  # no lock clash: the directories differ
            assert a.db_id and b.db_id and a.db_id != b.db_id
            for nd in (a, b):
                assert nd.writer.writers[0].spill.path == tmp_path / "spill" / f"db-{nd.db_id}"


async def test_a_listener_that_raises_does_not_stop_the_feed(pg_dsn: str, tmp_path: Path) -> None:
    calls: list[int] = []

    def bad(slots: np.ndarray) -> None:
        calls.append(len(slots))
        raise RuntimeError("listener bug")

    async with (
        SimExchange(SimConfig(n_markets=2, autostart=False, seed=2)) as sim,
        LiveNode(node_config(sim, pg_dsn, tmp_path), FeedConfig(ws_url=sim.ws_url)) as node,
    ):
        node.add_book_listener(bad)
        await until(lambda: node.feed.books_valid() == 2, "books valid")
        sim.advance(100)
        await until(lambda: node.feed.stats.deltas >= 50, "deltas keep flowing")
        assert node.feed_task is not None and not node.feed_task.done()
    assert calls


async def test_node_without_database_fails_with_a_clear_error(tmp_path: Path) -> None:
    async with SimExchange(SimConfig(n_markets=1, autostart=False)) as sim:
        node = LiveNode(
            node_config(sim, "postgresql://nobody@127.0.0.1:1/none", tmp_path),
            FeedConfig(ws_url=sim.ws_url),
        )
        with pytest.raises(StoreError, match="cannot connect to PostgreSQL"):
            async with node:
                pass
        assert node.pool is None and node.feed is None
