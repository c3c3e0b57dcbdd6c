"""The /rl/ws/* streams: fan-out hubs that never let a client slow the node.

Every hub produces frames on its own schedule and hands each client its frame with
``Queue.put_nowait``; one sender task per socket drains that client's queue.  A client
whose queue is full is *throttled* (it misses this tick and gets the newest state on a
later one: book frames are full top-of-book states, so nothing is lost but staleness) and
*dropped* (closed with 1013) after ``drop_after`` consecutive full ticks.  The feed never
sees any of it: the orderbook hub reads the BookSet arrays on its own tick instead of being
called from the feed's callback.

Streams hold no database connection: the training hub's one LISTEN connection belongs to
the app, and a join's initial snapshot borrows a pooled connection for that query only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from core.dtypes import ACTION_STATUS_NAMES
from kalshi_rl.web.books import book_frame
from kalshi_rl.web.node import ActorView, NodeView
from kalshi_rl.web.queries import ACTION_NAMES

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 1013  # "try again later": the client could not keep up


@dataclass(eq=False)
class Client:
    """One subscriber: its queue and (for the orderbook) what it wants and has seen."""

    queue: asyncio.Queue[str]
    markets: frozenset[str] | None = None  # None: every market
    interval_s: float = 0.25
    next_due: float = 0.0
    sent: dict[int, int] = field(default_factory=dict)  # slot -> n_updates last queued
    full_ticks: int = 0
    frames: int = 0
    throttled: int = 0
    dropped: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, frame: str, drop_after: int) -> bool:
        """Queue ``frame`` without waiting. False when the queue is full (throttled)."""
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.throttled += 1
            self.full_ticks += 1
            if self.full_ticks >= drop_after and not self.dropped:
                self.dropped = True
                self.closed.set()
            return False
        self.full_ticks = 0
        self.frames += 1
        return True


class Fanout:
    """A set of clients receiving the same frames (status, actions, training)."""

    def __init__(self, queue_size: int = 256, drop_after: int = 64) -> None:
        self.queue_size = queue_size
        self.drop_after = drop_after
        self.clients: set[Client] = set()
        self.published = 0
        self.dropped_clients = 0

    def join(self) -> Client:
        c = Client(asyncio.Queue(self.queue_size))
        self.clients.add(c)
        return c

    def leave(self, c: Client) -> None:
        self.clients.discard(c)

    def publish(self, frame: str) -> None:
        """Offer ``frame`` to every client (never waits)."""
        self.published += 1
        for c in tuple(self.clients):
            if not c.offer(frame, self.drop_after) and c.dropped:
                self.dropped_clients += 1
                self.clients.discard(c)


def dumps(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()


class OrderbookHub:
    """Per-market book frames for each client at its own rate, read from the BookSet.

    Args:
        node: the live node (its ``books`` are read in place every tick).
        tick_s: how often the hub looks for changed books.
        queue_size: frames a client may have queued before it is throttled.
        drop_after: consecutive throttled ticks before a client is dropped.
        min_interval_s: the fastest per-client rate a client may ask for.
        share_encoding: encode a changed market once per tick for every client (False:
            once per client, the naive way; bench/bench_web.py compares them).
    """

    def __init__(
        self,
        node: NodeView,
        *,
        tick_s: float = 0.02,
        queue_size: int = 128,
        drop_after: int = 250,
        min_interval_s: float = 0.02,
        share_encoding: bool = True,
    ) -> None:
        self.node = node
        self.share_encoding = share_encoding
        self.tick_s = tick_s
        self.queue_size = queue_size
        self.drop_after = drop_after
        self.min_interval_s = min_interval_s
        self.clients: set[Client] = set()
        self.ticks = 0
        self.frames = 0
        self.encoded = 0
        self.dropped_clients = 0
        self.tick_busy_s = 0.0

    def join(self, markets: frozenset[str] | None, interval_s: float) -> Client:
        c = Client(
            asyncio.Queue(self.queue_size),
            markets=markets,
            interval_s=max(self.min_interval_s, interval_s),
        )
        self.clients.add(c)
        return c

    def leave(self, c: Client) -> None:
        self.clients.discard(c)

    def snapshot(self, c: Client) -> None:
        """Queue the current state of every market the client follows (on join/resubscribe)."""
        c.sent.clear()
        self._serve(c, {}, force=True)

    def _slots(self, c: Client) -> list[int]:
        books = self.node.books
        if c.markets is None:
            return list(range(books.n_markets))
        return [s for t in c.markets if (s := books.slots.get(t)) is not None]

    def _serve(self, c: Client, cache: dict[int, str], force: bool = False) -> None:
        meta = self.node.books.meta
        for slot in self._slots(c):
            nu = int(meta[slot]["n_updates"])
            if not force and c.sent.get(slot) == nu:
                continue
            frame = cache.get(slot) if self.share_encoding else None
            if frame is None:
                frame = dumps(book_frame(self.node.books, slot))
                cache[slot] = frame
                self.encoded += 1
            if not c.offer(frame, self.drop_after):
                return  # throttled: the rest waits for a later tick, newest state then
            c.sent[slot] = nu
            self.frames += 1

    def tick(self, now: float | None = None) -> None:
        """One pass: queue a frame of every changed book to every due client."""
        t0 = time.perf_counter()
        now = time.monotonic() if now is None else now
        cache: dict[int, str] = {}  # one encoding per changed market per tick
        for c in tuple(self.clients):
            if now < c.next_due:
                continue
            c.next_due = now + c.interval_s
            self._serve(c, cache)
            if c.dropped:
                self.dropped_clients += 1
                self.clients.discard(c)
        self.ticks += 1
        self.tick_busy_s += time.perf_counter() - t0

    async def run(self) -> None:
        """Tick until cancelled."""
        while True:
            await asyncio.sleep(self.tick_s)
            if self.clients:
                try:
                    self.tick()
                except Exception:  # a bad tick must not end the stream for everyone
                    log.exception("orderbook hub tick failed")

    def stats(self) -> dict[str, Any]:
        return {
            "clients": len(self.clients),
            "ticks": self.ticks,
            "frames": self.frames,
            "encoded": self.encoded,
            "dropped_clients": self.dropped_clients,
            "throttled": sum(c.throttled for c in self.clients),
            "tick_busy_s": self.tick_busy_s,
        }


class ActionsHub:
    """Fans the actor's action records out to /rl/ws/actions clients.

    It subscribes once to whichever actor the node has (the actor may come and go) and
    republishes each record as a JSON frame.
    """

    def __init__(
        self, actor: Callable[[], ActorView | None], fanout: Fanout, poll_s: float = 0.5
    ) -> None:
        self.actor = actor
        self.fanout = fanout
        self.poll_s = poll_s
        self.forwarded = 0
        self.recent: list[str] = []  # the last frames, replayed to a joining client
        self.keep = 50

    def _push(self, rec: dict[str, Any]) -> None:
        name = ACTION_NAMES.get(rec.get("action", -1), str(rec.get("action")))
        status = rec.get("status")
        extra = {
            "ticker": rec.get("ticker", rec.get("market")),
            "action_name": name,
            "status_name": ACTION_STATUS_NAMES[status]
            if isinstance(status, int) and 0 <= status < len(ACTION_STATUS_NAMES)
            else status,
        }
        frame = dumps({"type": "action", **rec, **extra})
        self.recent.append(frame)
        if len(self.recent) > self.keep:
            del self.recent[: len(self.recent) - self.keep]
        self.forwarded += 1
        self.fanout.publish(frame)

    async def run(self) -> None:
        while True:
            actor = self.actor()
            if actor is None:
                await asyncio.sleep(self.poll_s)
                continue
            gen = actor.generation
            q = actor.subscribe()
            try:
                # resubscribe when the node's actor object changes (trading attached later)
                while self.actor() is actor and actor.generation == gen:
                    try:
                        rec = await asyncio.wait_for(q.get(), self.poll_s)
                    except TimeoutError:
                        continue
                    self._push(rec)
            finally:
                actor.unsubscribe(q)


class TrainingHub:
    """LISTEN ``kalshi_rl_training`` on one connection of the app; fan the payloads out."""

    CHANNEL = "kalshi_rl_training"
    MODELS_CHANNEL = "kalshi_rl_models"

    def __init__(
        self,
        connect: Callable[[], Any],
        fanout: Fanout,
        on_models: Callable[[dict[str, Any]], Any] | None = None,
        retry_s: float = 2.0,
    ) -> None:
        self.connect = connect
        self.fanout = fanout
        self.on_models = on_models
        self.retry_s = retry_s
        self.notifications = 0
        self.listening = False

    def _on_training(self, _c: Any, _pid: int, _ch: str, payload: str) -> None:
        self.notifications += 1
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.warning("ignored a malformed %s payload", self.CHANNEL)
            return
        self.fanout.publish(dumps({"type": "training", **body}))

    def _on_models(self, _c: Any, _pid: int, _ch: str, payload: str) -> None:
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        self.fanout.publish(dumps({"type": "model", **body}))
        if self.on_models is not None:
            self.on_models(body)

    async def run(self) -> None:
        """Listen until cancelled; reconnect after a database outage."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self.connect()
                await conn.add_listener(self.CHANNEL, self._on_training)
                await conn.add_listener(self.MODELS_CHANNEL, self._on_models)
                self.listening = True
                while not conn.is_closed():
                    await asyncio.sleep(self.retry_s)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("training stream LISTEN lost (%s); retrying", exc)
            finally:
                self.listening = False
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(self.retry_s)


async def pump(ws: Any, client: Client) -> None:
    """Send a client's queued frames until it leaves or is dropped."""
    get: asyncio.Task[str] | None = None
    closed = asyncio.create_task(client.closed.wait())
    try:
        while True:
            get = asyncio.create_task(client.queue.get())
            done, _ = await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
            if closed in done:
                if client.dropped:
                    await ws.close(code=CLOSE_TOO_SLOW, reason="too slow: dropped")
                return
            await ws.send_text(get.result())
    finally:
        for t in (get, closed):
            if t is not None and not t.done():
                t.cancel()
