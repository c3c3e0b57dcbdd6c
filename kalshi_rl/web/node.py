"""What the web app reads from the live node, written down as Protocols.

The app runs inside the live node's process and event loop (ARCHITECTURE.md): it reads
the node's ``BookSet`` arrays in place on each request or stream tick and never copies
them into a second state.  It needs only the attributes below, so any object with them
works: ``kalshi_rl.live.node.LiveNode`` in production, and :class:`NodeHandle` where a
command wires a feed and writers itself.

Every attribute may be read at any time from the event loop; nothing here blocks.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import asyncpg

from core.book import BookSet


class ActorState(StrEnum):
    """The actor's state as the dashboard shows it (``none``: no actor in this node)."""

    RUNNING = "running"
    REDUCING = "reducing"
    HALTED = "halted"
    STOPPED = "stopped"
    NONE = "none"


@runtime_checkable
class FeedView(Protocol):
    """The feed: counters, connection state, valid books, the rings the writer drains."""

    stats: Any  # kalshi_rl.kalshi.feed.FeedStats
    rings: Any  # kalshi_rl.kalshi.feed.FeedRings

    @property
    def connected(self) -> bool: ...

    def books_valid(self) -> int: ...


class WriterView(Protocol):
    """The ring -> COPY writer(s): ``stats()`` as a dict (``db_up``, ``rows_written_total``...)."""

    def stats(self) -> dict[str, Any]: ...


class ActorView(Protocol):
    """The paper-trading actor as the dashboard drives it (see docs/web.md).

    ``subscribe()`` returns an ``asyncio.Queue`` of action dicts that the actor fills with
    ``put_nowait`` and never waits on (a full queue drops, counted, for that subscriber).
    """

    @property
    def state(self) -> Any: ...

    @property
    def model_id(self) -> int | None: ...

    @property
    def generation(self) -> int:
        """Changes when the actor behind the control changes (streams resubscribe)."""
        ...

    async def start(self, model_id: int) -> None: ...

    async def stop(self) -> None: ...

    async def switch_model(self, model_id: int) -> None: ...

    async def kill(self, reason: str) -> None: ...

    async def resume(self) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]: ...

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None: ...


class NodeView(Protocol):
    """Everything the app reads of the node: books, feed, writer, pool, session.

    ``kalshi_rl.live.node.LiveNode`` is one.  The actor is handed to ``create_app``
    separately as an :class:`ActorView` (``kalshi_rl.web.actor.ActorControl``).
    """

    books: BookSet
    pool: asyncpg.Pool
    dsn: str

    @property
    def feed(self) -> FeedView | None: ...

    @property
    def writer(self) -> WriterView | None: ...

    @property
    def session_id(self) -> int | None: ...


@dataclass
class NodeHandle:
    """A plain :class:`NodeView` (the OpenAPI dump and bench/ use one without a feed)."""

    books: BookSet
    pool: asyncpg.Pool
    dsn: str
    feed: FeedView | None = None
    writer: WriterView | None = None
    session_id: int | None = None


def ring_occupancy(feed: FeedView | None) -> float:
    """Fill fraction (0..1) of the fullest ring the writer drains; 0 without a feed."""
    if feed is None:
        return 0.0
    rings = feed.rings
    all_rings = (*rings.delta_shards, rings.snapshots, rings.trades, rings.gaps)
    return max((float(r.fill_fraction) for r in all_rings), default=0.0)


def durability_lag_ms(feed: FeedView | None, now_ns: int | None = None) -> float:
    """Age (ms) of the oldest received record not yet committed to PostgreSQL; 0 if none."""
    if feed is None:
        return 0.0
    rings = feed.rings
    now = time.time_ns() if now_ns is None else now_ns
    oldest = [
        int(rec["recv_ts"])
        for ring in (*rings.delta_shards, rings.snapshots, rings.trades, rings.gaps)
        if (rec := ring.oldest()) is not None
    ]
    return max(0.0, (now - min(oldest)) / 1e6) if oldest else 0.0


def actor_state(actor: ActorView | None) -> str:
    """The actor's state as a lower-case string ('none' without an actor)."""
    if actor is None:
        return ActorState.NONE.value
    st = actor.state
    return str(getattr(st, "value", st)).lower()
