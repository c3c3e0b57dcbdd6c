"""The app's runtime state: node, config, launcher, hubs, cached market info.

One instance per app, built by ``create_app`` and reached by handlers as the ``web``
dependency; nothing here builds its own pools or clients.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from litestar.di import NamedDependency

from kalshi_rl.web import queries
from kalshi_rl.web.books import MarketInfo, classify_books
from kalshi_rl.web.config import WebConfig
from kalshi_rl.web.node import (
    ActorView,
    NodeView,
    actor_state,
    durability_lag_ms,
    ring_occupancy,
)
from kalshi_rl.web.schemas import FeedStatus, Status
from kalshi_rl.web.streams import ActionsHub, Fanout, OrderbookHub, TrainingHub
from kalshi_rl.web.training import TrainingLauncher

log = logging.getLogger(__name__)


@dataclass
class WebState:
    node: NodeView
    config: WebConfig
    launcher: TrainingLauncher
    orderbook: OrderbookHub
    status_fanout: Fanout
    actions_fanout: Fanout
    training_fanout: Fanout
    actions: ActionsHub
    training: TrainingHub
    actor: ActorView | None = None
    mode: str = "sim"
    info: MarketInfo = field(default_factory=MarketInfo)
    started: float = field(default_factory=time.time)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _rate_t: float = field(default_factory=time.monotonic)
    _rate_n: int = 0
    _rate: float = 0.0

    def feed_rate(self) -> float:
        """Messages/s of the feed, over at least the last second (own window, not the feed's)."""
        feed = self.node.feed
        if feed is None:
            return 0.0
        now = time.monotonic()
        if now - self._rate_t >= 1.0:
            n = int(feed.stats.msgs)
            self._rate = (n - self._rate_n) / (now - self._rate_t)
            self._rate_t, self._rate_n = now, n
        return self._rate

    def status(self) -> Status:
        """The node at a glance (no database round trip: every number is in memory)."""
        node = self.node
        feed = node.feed
        wstats = node.writer.stats() if node.writer is not None else {}
        db_up = bool(wstats.get("db_up", True))
        books_total = node.books.n_markets
        books = classify_books(node.books, getattr(feed, "tickers", None), self.info)
        books_valid = feed.books_valid() if feed is not None else 0
        reasons: list[str] = []
        fs: FeedStatus | None = None
        if feed is not None:
            st = feed.stats
            fs = FeedStatus(
                connected=bool(feed.connected),
                msgs=int(st.msgs),
                msgs_per_s=round(self.feed_rate(), 1),
                deltas=int(st.deltas),
                snapshots=int(st.snapshots),
                trades=int(st.trades),
                gaps=int(st.gaps),
                decode_errors=int(st.decode_errors),
                reconnects=int(st.reconnects),
                latency_p99_us=float(st.latency_quantile_ns(0.99)) / 1e3,
            )
            if not feed.connected:
                reasons.append("feed disconnected")
        else:
            reasons.append("no feed")
        if not db_up:
            reasons.append("database down")
        if books.invalid:  # not-yet-open, awaiting-first-book and closed books do not count
            names = ", ".join(books.invalid[:3]) + (" ..." if len(books.invalid) > 3 else "")
            reasons.append(
                f"{len(books.invalid)} book(s) invalid, awaiting a resync after a gap,"
                f" desync or disconnect: {names}"
            )
        health = "ok" if not reasons else ("down" if feed is None or not db_up else "degraded")
        actor = self.actor
        return Status(
            health=health,  # type: ignore[arg-type]
            reasons=reasons,
            mode=self.mode,
            uptime_s=round(time.time() - self.started, 1),
            session_id=node.session_id,
            feed=fs,
            books_valid=books_valid,
            books_total=books_total,
            books_invalid=len(books.invalid),
            books_waiting=books.waiting,
            books_closed=books.closed,
            ring_occupancy=ring_occupancy(feed),
            db_up=db_up,
            db_lag_ms=round(durability_lag_ms(feed), 1),
            rows_written=int(wstats.get("rows_written_total", 0)),
            actor_state=actor_state(actor),
            actor_model_id=None if actor is None else actor.model_id,
            training_running=self.launcher.running,
            server_time_ms=int(time.time() * 1000),
        )

    async def refresh_info(self) -> None:
        """Reload market metadata and last trades (one pooled connection, this call only)."""
        try:
            async with self.node.pool.acquire() as conn:
                self.info.meta = await queries.market_meta(conn)
                self.info.last_trade = await queries.last_trades(conn, self.node.session_id)
            self.info.refreshed = time.monotonic()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("market info not refreshed (database: %s)", exc)

    async def info_loop(self) -> None:
        while True:
            await self.refresh_info()
            await asyncio.sleep(self.config.info_refresh_s)

    async def status_loop(self) -> None:
        from kalshi_rl.web.streams import dumps

        while True:
            await asyncio.sleep(self.config.status_interval_s)
            if self.status_fanout.clients:
                import msgspec

                self.status_fanout.publish(
                    dumps({"type": "status", **msgspec.to_builtins(self.status())})
                )


Web = NamedDependency[WebState]  # handler parameter ``web``: the app state
Conn = NamedDependency[asyncpg.Connection]  # ``conn``: a pooled connection for one request
