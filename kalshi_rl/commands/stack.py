"""The live stack of the main job: (local exchange) + LiveNode + actor control + dashboard.

``live_stack(...)`` starts the local exchange unless a WS/REST URL is given, enters a
``kalshi_rl.live.node.LiveNode`` on it (feed, books, rings, writers, pool, session row),
runs the node's tick loop (lifecycle updates, optional progress line) as a task, and
yields a :class:`LiveStack` with an :class:`~kalshi_rl.web.actor.ActorControl` over the
node.  Leaving the context stops the tick loop, then the node flushes every writer and
sink and closes the session row, then the exchange stops.  ``kalshi-rl up``, the web tests
and bench/ all use it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from kalshi_rl.web.actor import ActorControl


@dataclass
class LiveStack:
    """What ``live_stack`` runs."""

    node: Any  # kalshi_rl.live.node.LiveNode
    sim: Any  # kalshi_rl.sim.server.SimExchange, or None against a real exchange
    actor: ActorControl
    stop: asyncio.Event
    ticker: asyncio.Task[None]


@contextlib.asynccontextmanager
async def live_stack(
    dsn: str,
    *,
    markets: int = 8,
    rate: float = 400.0,
    seed: int = 1,
    port: int = 0,
    sim_config: Any = None,
    ws_url: str | None = None,
    rest_url: str | None = None,
    mode: str = "sim",
    credentials: Any = None,
    actor_config: Any = None,
    echo: Callable[[str], None] | None = None,
    progress_interval_s: float = 0.0,
    ring_capacity: int | None = None,
    spill_dir: str = "",
    start_timeout_s: float = 60.0,
) -> AsyncIterator[LiveStack]:
    """Exchange + node + actor control (see the module docstring).

    Args:
        dsn: PostgreSQL DSN (the node migrates it).
        markets, rate, seed, port: the local exchange's knobs (``sim_config`` overrides).
        ws_url, rest_url: record this exchange instead of starting the local one.
        mode: feed_sessions.mode ('sim', 'live', 'demo').
        credentials: signs the feed's handshake and REST calls.
        actor_config: ``trade.actor.ActorConfig`` for trading started later.
        echo: receives the collector's progress line every ``progress_interval_s``.
        ring_capacity: records per feed ring (default the collector's).
        start_timeout_s: how long to wait for the feed's socket.
    """
    from kalshi_rl.commands.collect import progress_line
    from kalshi_rl.config import CollectorConfig, FeedConfig
    from kalshi_rl.live.node import LiveNode

    sim = None
    if ws_url is None:
        from kalshi_rl.sim.config import SimConfig
        from kalshi_rl.sim.server import SimExchange

        sim = SimExchange(
            sim_config
            or SimConfig(port=port, n_markets=markets, rate=rate, seed=seed, record_limit=0)
        )
        await sim.start()
        ws_url, rest_url = sim.ws_url, sim.rest_url
    try:
        kw: dict[str, Any] = {} if ring_capacity is None else {"ring_capacity": ring_capacity}
        cfg = CollectorConfig(
            rest_url=rest_url or "",
            all_markets=True,
            database_url=dsn,
            mode=mode,
            progress_interval_s=progress_interval_s,
            spill_dir=spill_dir,
            # the local exchange is re-scanned often: its rolling markets listed before the
            # node subscribed open without an event the follower sees (Kalshi: the default)
            rescan_interval_s=2.0 if sim is not None else 60.0,
            **kw,
        )
        feed_cfg = FeedConfig.from_env(ws_url=ws_url)
        async with LiveNode(cfg, feed_cfg, credentials=credentials, pool_size=8) as node:
            await node.feed.wait_connected(start_timeout_s)
            stop = asyncio.Event()

            def tick() -> None:
                if echo is not None:
                    echo(progress_line(node.feed, node.writer, node.feed.stats.rate()))

            ticker = asyncio.create_task(
                node.run(stop, interval_s=progress_interval_s or 1.0, on_tick=tick),
                name="node-tick",
            )
            stack = LiveStack(node, sim, ActorControl(node, actor_config), stop, ticker)
            try:
                yield stack
            finally:
                stop.set()
                await asyncio.gather(ticker, return_exceptions=True)
    finally:
        if sim is not None:
            await sim.stop()
