"""``LiveNode``: the one async context that owns a live process's parts.

A live process (``collect``, ``trade``, ``up``, the dashboard's lifespan) is: market
discovery over REST, PostgreSQL migrated, one asyncpg pool, the ``feed_sessions`` row, a
shared ``core.book.BookSet`` (slot -> market id through ``books.ticker_of``), the feed's
record rings, the writers draining them, lifecycle updates and the picows feed.  This
module wires them once; nothing else does.  Callers take the parts from the node::

    async with LiveNode(cfg, feed_cfg, credentials=creds) as node:
        node.books, node.feed, node.writer, node.pool, node.session_id
        node.add_book_listener(paper.on_book_update)  # sync, called on every book batch
        node.add_sink(action_sink)                     # started now, closed before the pool
        await node.run(stop, on_tick=...)

Order on enter: REST metadata -> pool + migrations -> markets + session row -> books,
rings, writers (started) -> feed task; meanwhile a thread compiles (or loads from Numba's
cache) the record path's kernels (``kalshi_rl.live.warm``), awaited before the feed is
made, so no frame waits for a compile.  On exit (also on error or cancellation): the
books valid just before the stop are noted, the feed is stopped and awaited, sinks and
writers flushed and closed, pending lifecycle updates written, the session row closed
with the feed's counters, the pool closed.  ``session_id`` is known from enter on, so a
caller never has to guess it (``SELECT max(id)`` is not a session id).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from kalshi_rl.config import CollectorConfig, FeedConfig
from kalshi_rl.errors import KalshiRLError, StoreError
from kalshi_rl.live.session import (
    LifecycleUpdates,
    WriterGroup,
    close_session,
    create_session,
    meta_sink,
    upsert_market_meta,
)
from kalshi_rl.tasks import stop_tasks

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Something the node starts after its writers and closes before its pool."""

    def start(self) -> Any: ...

    async def close(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


def durability_lag_ms(rings: Any, now_ns: int | None = None) -> float:
    """How long the oldest record still in memory (not yet in PostgreSQL) has waited, ms.

    0 when every received record is durable.  Grows while the database is slow or down.
    """
    now = time.time_ns() if now_ns is None else now_ns
    oldest = [
        int(rec["recv_ts"])
        for ring in (*rings.delta_shards, rings.snapshots, rings.trades, rings.gaps)
        if (rec := ring.oldest()) is not None
    ]
    return max(0.0, (now - min(oldest)) / 1e6) if oldest else 0.0


class LiveNode:
    """Feed + shared books + rings + writers + pool + session row, as one async context.

    Args:
        cfg: what to record and where (markets, DSN, mode, ring size, writer shards).
        feed_cfg: the feed's settings (URL, channels, backoff).
        credentials: kalshi_rl.kalshi.auth.Credentials, or None (a local sim without auth).
        writer_config: kalshi_rl.store.writer.WriterConfig (default: its defaults).
        pool_size: connections of the shared pool (sessions, lifecycle, sinks, actor reads).
        record: False runs the node without recording: no session row, no writers (the
            feed's rings are drained and discarded, counted in ``discarded``) -- for
            ``kalshi-rl parity``, which replays a recorded session and must not record it
            a second time.

    Attributes (set on enter):
        dsn, pool, session_id, tickers, meta (REST market objects by ticker), books,
        rings, writer (WriterGroup), feed, lifecycle, actor (set by ``trade``; None else),
        books_valid_at_stop / feed_stats / writer_stats (set on exit).
    """

    def __init__(
        self,
        cfg: CollectorConfig,
        feed_cfg: FeedConfig,
        *,
        credentials: Any = None,
        writer_config: Any = None,
        pool_size: int = 4,
        record: bool = True,
    ) -> None:
        self.config = cfg
        self.record = record
        self.discarded = 0
        self.feed_config = feed_cfg
        self.credentials = credentials
        self.writer_config = writer_config
        self.pool_size = pool_size
        self.dsn = ""
        self.pool: Any = None
        self.session_id = 0
        self.db_id = ""  # db.database_id of the database we record into
        self.tickers: list[str] = list(cfg.tickers)
        self.meta: dict[str, dict[str, Any]] = {}
        self.books: Any = None
        self.rings: Any = None
        self.writer: WriterGroup = WriterGroup([])
        self.feed: Any = None
        self.lifecycle: LifecycleUpdates | None = None
        self.actor: Any = None
        self.started_at = 0.0
        self.books_valid_at_stop = 0
        self.feed_stats: dict[str, Any] = {}
        self.writer_stats: dict[str, Any] = {}
        self._feed_task: asyncio.Task[None] | None = None
        self._book_listeners: list[Callable[[np.ndarray], None]] = []
        self._trade_listeners: list[Callable[[np.ndarray], None]] = []
        self._sinks: list[Sink] = []
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._entered = False
        self._drain_task: asyncio.Task[None] | None = None
        self._warm_task: asyncio.Task[None] | None = None
        self._rest: Any = None
        self._follow_task: asyncio.Task[None] | None = None
        self.follower: Any = None
        self.markets_at_stop = 0
        self.follow_stats: dict[str, int] | None = None

    # ------------------------------------------------------------------ enter / exit
    async def __aenter__(self) -> LiveNode:
        if self._entered:
            raise KalshiRLError("a LiveNode is entered once")
        self._entered = True
        try:
            await self._open()
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _discover(self) -> list[dict[str, Any]]:
        """The markets to record at the start and their REST objects (metadata).

        With ``all_markets`` the REST client stays open: the market follower re-scans.
        """
        from kalshi_rl.kalshi.rest import KalshiRest

        cfg = self.config
        rest = KalshiRest(cfg.rest_url, self.credentials)
        try:
            if cfg.all_markets:
                meta = [m async for m in rest.iter_markets()]
                self.tickers = [m["ticker"] for m in meta]
                log.info("discovered %d open markets", len(self.tickers))
                self._rest = rest
                return meta
            try:
                return list(await rest.markets_by_ticker(self.tickers))
            except KalshiRLError as exc:  # metadata is a nicety; recording is the job
                log.warning("could not fetch market metadata: %s", exc)
                return []
        finally:
            if self._rest is None:
                await rest.aclose()

    async def _open(self) -> None:
        from core.book import BookSet
        from kalshi_rl.kalshi.feed import Feed, FeedRings
        from kalshi_rl.kalshi.follow import MarketFollower
        from kalshi_rl.kalshi.protocol import CH_LIFECYCLE
        from kalshi_rl.store import db
        from kalshi_rl.store.writer import Writer

        cfg = self.config
        # compile/load the record path's kernels while REST and PostgreSQL are set up, so
        # the first frames never wait for Numba (seconds on a cold cache)
        self._warm_task = asyncio.create_task(self._warm(), name="node-warm-kernels")
        meta = await self._discover()
        self.meta = {m["ticker"]: m for m in meta if isinstance(m.get("ticker"), str)}
        self.dsn = db.resolve_dsn(cfg.database_url)
        try:
            self.pool = await db.create_pool(self.dsn, min_size=1, max_size=self.pool_size)
        except OSError as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        async with self.pool.acquire() as conn:
            await db.migrate(conn)
            self.db_id = await db.database_id(conn)
            await db.ensure_markets(conn, self.tickers)
            if self.record:
                await upsert_market_meta(conn, meta)
                self.session_id = await create_session(
                    conn, self.feed_config.ws_url, cfg.mode, self.tickers
                )
        log.info(
            "feed session %d: %d markets from %s",
            self.session_id,
            len(self.tickers),
            self.feed_config.ws_url,
        )
        self.books = BookSet(max(16, len(self.tickers)))
        self.rings = FeedRings.create(cfg.ring_capacity, cfg.writer_shards)
        # one spill directory per database: segments of another database are never seen
        spill_root = Path(cfg.spill_dir) if cfg.spill_dir else db.default_data_dir() / "spill"
        spill_dir = spill_root / f"db-{self.db_id}"
        dsn = self.dsn

        def connect() -> Any:
            return db.connect(dsn)

        wcfg = self.writer_config
        # writer 0 takes every table; extra writers each COPY one more delta shard
        self.writer = WriterGroup([]) if not self.record else WriterGroup(
            [Writer(connect, self.rings.by_table(), self.session_id, self.books.ticker_of,
                    spill_dir=spill_dir, config=wcfg, db_id=self.db_id)]
            + [
                Writer(connect, {"orderbook_deltas": ring}, self.session_id,
                       self.books.ticker_of, spill_dir=spill_dir / f"shard{k}", config=wcfg,
                       db_id=self.db_id)
                for k, ring in enumerate(self.rings.delta_shards[1:], start=1)
            ]
        )  # fmt: skip
        self.lifecycle = LifecycleUpdates(self.pool)
        warm, self._warm_task = self._warm_task, None
        await warm  # before the feed connects: no first-use compile on the hot path
        self.feed = Feed(
            self.feed_config,
            self.books,
            self.rings,
            self.tickers,
            credentials=self.credentials,
            on_lifecycle=self.lifecycle.add,
            on_books=self._on_books,
            on_trade=self._on_trade,
            all_markets_channels=(CH_LIFECYCLE,) if cfg.all_markets else (),
        )
        if cfg.all_markets and self._rest is not None:
            # follow the market list: lifecycle events + REST re-scans
            self.follower = MarketFollower(
                self.feed, self._rest, meta_sink(self.pool), rescan_s=cfg.rescan_interval_s,
                next_callback=self.lifecycle.add,
            )  # fmt: skip
            self.feed.on_lifecycle = self.follower.on_lifecycle
        self.writer.start()
        if not self.record:
            self._drain_task = asyncio.create_task(self._discard(), name="node-discard")
        self._feed_task = asyncio.create_task(self.feed.run(), name="kalshi-feed")
        if self.follower is not None:
            self._follow_task = asyncio.create_task(self.follower.run(), name="market-follower")
        self.started_at = time.time()

    async def _warm(self) -> None:
        from kalshi_rl.live.warm import warm_live_kernels

        try:
            took = await asyncio.to_thread(warm_live_kernels)
        except Exception:  # the kernels then compile on first use; recording still works
            log.exception("live node: warming the record-path kernels failed")
            return
        log.info("record-path kernels ready in %.2f s (Numba compile/cache load)", took)

    async def _discard(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            for ring in (*self.rings.delta_shards, self.rings.snapshots, self.rings.trades,
                         self.rings.gaps):  # fmt: skip
                self.discarded += len(ring.drain())

    async def _close(self) -> None:
        if self._warm_task is not None:  # _open failed early: let the thread finish
            warm, self._warm_task = self._warm_task, None
            await asyncio.wait([warm])  # never raises; _warm logs its own errors
        await stop_tasks([self._drain_task])
        if self.feed is not None:
            self.books_valid_at_stop = self.feed.books_valid()  # stopping invalidates them
            self.markets_at_stop = len(self.feed.tickers)
        await stop_tasks([self._follow_task])
        if self.feed is not None:
            self.feed.stop()
        try:
            if self._feed_task is not None:
                task, self._feed_task = self._feed_task, None
                await asyncio.wait_for(task, 30)
        finally:
            for fn in reversed(self._closers):
                try:
                    await fn()
                except Exception:
                    log.exception("live node: a closer failed")
            for sink in reversed(self._sinks):
                try:
                    await sink.close()
                except Exception:
                    log.exception("live node: closing a sink failed")
            try:
                await self.writer.close()
            finally:
                await self._close_db()

    async def _close_db(self) -> None:
        if self.feed is not None:
            self.feed_stats = self.feed.stats.as_dict()
        self.writer_stats = self.writer.stats()
        if self.pool is None:
            return
        if self._rest is not None:
            rest, self._rest = self._rest, None
            with contextlib.suppress(Exception):
                await rest.aclose()
        try:
            if self.lifecycle is not None:
                await self.lifecycle.flush()
            if self.follower is not None:
                await self.follower.flush_meta()
                self.follow_stats = dataclasses.asdict(self.follower.stats)
            if self.session_id and self.feed is not None:
                await close_session(
                    self.pool, self.session_id, self.feed_stats, self.books_valid_at_stop
                )
        finally:
            pool, self.pool = self.pool, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), 10)

    # ------------------------------------------------------------------ hand-outs
    def add_book_listener(self, fn: Callable[[np.ndarray], None]) -> None:
        """Call ``fn(slots)`` after every batch of book changes (sync; must not block).

        ``slots`` is only valid during the call (it views the feed's staging array).
        Listeners run in registration order: register the paper client before the actor
        so resting orders see the book before the actor decides on it.
        """
        self._book_listeners.append(fn)

    def add_trade_listener(self, fn: Callable[[np.ndarray], None]) -> None:
        """Call ``fn(trade_records)`` for every public trade (sync; must not block)."""
        self._trade_listeners.append(fn)

    def add_sink(self, sink: Sink) -> None:
        """Start ``sink`` now and close it on exit (before the writers and the pool)."""
        sink.start()
        self._sinks.append(sink)

    def add_closer(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Await ``fn()`` on exit after the feed stopped, before sinks and writers close."""
        self._closers.append(fn)

    def _on_books(self, slots: np.ndarray) -> None:
        for fn in self._book_listeners:
            try:
                fn(slots)
            except Exception:  # a listener's bug must not take the feed down
                log.exception("book listener %r failed", fn)

    def _on_trade(self, recs: np.ndarray) -> None:
        for fn in self._trade_listeners:
            try:
                fn(recs)
            except Exception:
                log.exception("trade listener %r failed", fn)

    # ------------------------------------------------------------------ running
    @property
    def feed_task(self) -> asyncio.Task[None] | None:
        """The feed's task (done means the feed stopped or crashed)."""
        return self._feed_task

    async def run(
        self,
        stop: asyncio.Event,
        *,
        duration_s: float = 0.0,
        interval_s: float = 1.0,
        on_tick: Callable[[], Any] | None = None,
    ) -> None:
        """Tick every ``interval_s`` until ``stop`` is set, ``duration_s`` passed or the feed ends.

        Each tick calls ``on_tick()`` (awaited if it returns an awaitable) and writes pending
        lifecycle updates.  A crash of the feed task is raised here.
        """
        deadline = time.monotonic() + duration_s if duration_s > 0 else None
        interval = interval_s if interval_s > 0 else 1.0
        while not stop.is_set():
            timeout = interval
            if deadline is not None:
                timeout = min(timeout, max(deadline - time.monotonic(), 0.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout)
            if on_tick is not None:
                res = on_tick()
                if asyncio.iscoroutine(res):
                    await res
            if self.lifecycle is not None:
                await self.lifecycle.flush()
            task = self._feed_task
            if task is not None and task.done():
                task.result()  # surface a crash of the feed
                break
            if deadline is not None and time.monotonic() >= deadline:
                break

    def stats(self) -> dict[str, Any]:
        """What the dashboard shows about the node (plain JSON-able values)."""
        out: dict[str, Any] = {
            "session_id": self.session_id,
            "mode": self.config.mode,
            "ws_url": self.feed_config.ws_url,
            "markets": len(self.tickers),
            "started_at": self.started_at,
        }
        if self.feed is not None:
            out["books_valid"] = self.feed.books_valid()
            out["feed"] = self.feed.stats.as_dict()
            out["durability_lag_ms"] = durability_lag_ms(self.rings)
        out["writer"] = self.writer.stats()
        out["sinks"] = [s.stats() for s in self._sinks]
        if self.follower is not None:
            out["follow"] = dataclasses.asdict(self.follower.stats)
        if self.actor is not None:
            out["actor"] = self.actor.stats()
        return out
