"""The local stack of the main job: exchange + collector + pool, seen as one node.

``local_node(...)`` starts the local exchange (or uses a given WS/REST URL), runs the
collector (``run_collector``) against it, opens the pool the dashboard borrows from, and
yields a :class:`kalshi_rl.web.node.NodeHandle` over the collector's books, feed and
writers.  Leaving the context stops the feed, flushes every writer and closes the session
row, then the pool and the exchange.  ``kalshi-rl up``, the web tests and bench/ use it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from kalshi_rl.web.node import NodeHandle


@dataclass
class LocalStack:
    """What ``local_node`` runs (the node, plus the parts a caller may poke at)."""

    node: NodeHandle
    sim: Any
    collector: asyncio.Task[Any]
    stop: asyncio.Event
    result: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def local_node(  # noqa: PLR0917
    dsn: str,
    *,
    markets: int = 8,
    rate: float = 400.0,
    seed: int = 1,
    port: int = 0,
    sim_config: Any = None,
    credentials: Any = None,
    echo: Callable[[str], None] | None = None,
    progress_interval_s: float = 0.0,
    ring_capacity: int | None = None,
    start_timeout_s: float = 60.0,
) -> AsyncIterator[LocalStack]:
    """Exchange + collector + pool as one node (see the module docstring).

    Args:
        dsn: PostgreSQL DSN (migrated by the collector).
        markets, rate, seed, port: the local exchange's knobs (``sim_config`` overrides).
        credentials: signs the handshake (the exchange checks them when it has a key).
        echo: receives the collector's progress line every ``progress_interval_s``.
        ring_capacity: records per collector ring (default the collector's).
        start_timeout_s: how long to wait for the feed to come up.
    """
    from kalshi_rl.commands.collect import run_collector
    from kalshi_rl.config import CollectorConfig, FeedConfig
    from kalshi_rl.sim.config import SimConfig
    from kalshi_rl.sim.server import SimExchange
    from kalshi_rl.store import db

    cfg_sim = sim_config or SimConfig(
        port=port, n_markets=markets, rate=rate, seed=seed, record_limit=0
    )
    sim = SimExchange(cfg_sim)
    await sim.start()
    stop = asyncio.Event()
    got: dict[str, Any] = {}
    kw: dict[str, Any] = {}
    if ring_capacity is not None:
        kw["ring_capacity"] = ring_capacity
    cfg = CollectorConfig(
        rest_url=sim.rest_url, all_markets=True, database_url=dsn, mode="sim",
        progress_interval_s=progress_interval_s, **kw,
    )  # fmt: skip
    feed_cfg = FeedConfig.from_env(ws_url=sim.ws_url)

    def started(feed: Any, writer: Any) -> None:
        got["feed"], got["writer"] = feed, writer

    collector = asyncio.create_task(
        run_collector(cfg, feed_cfg, credentials=credentials, stop=stop, echo=echo,
                      on_started=started),
        name="collector",
    )  # fmt: skip
    pool = None
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + start_timeout_s
        while "feed" not in got:
            if collector.done():
                collector.result()
                raise RuntimeError("the collector ended before it started")
            if loop.time() > end:
                raise TimeoutError("the collector did not start in time")
            await asyncio.sleep(0.02)
        feed = got["feed"]
        await feed.wait_connected(start_timeout_s)
        pool = await db.create_pool(dsn, min_size=1, max_size=6)
        async with pool.acquire() as conn:
            session_id = int(await conn.fetchval("SELECT max(id) FROM feed_sessions"))
        node = NodeHandle(
            books=feed.books, pool=pool, dsn=dsn, feed=feed, writer=got["writer"],
            session_id=session_id, mode="sim",
        )  # fmt: skip
        stack = LocalStack(node=node, sim=sim, collector=collector, stop=stop)
        yield stack
    finally:
        stop.set()
        try:
            res = await asyncio.wait_for(collector, 60)
            if "stack" in locals():
                stack.result = res
        finally:
            if pool is not None:
                await pool.close()
            await sim.stop()
