"""Replay a recorded feed session from PostgreSQL through the sim's WebSocket.

Rows of ``orderbook_snapshots`` / ``orderbook_deltas`` / ``trades`` of one session are
merged by ``rec_id`` (the recorder's arrival order) into SIM_EVENT_DTYPE events.  Each
market's first snapshot (before any of its deltas) becomes the sim's starting book, so
a subscriber's initial ``orderbook_snapshot`` is the recorded one; every later event is
applied to the sim's BookSet and sent in order.  Sequence numbers are the sim's own (per
sid, contiguous): the recorded sid/seq belonged to the recording connection.

Playback starts when the first client subscribes.  ``speed`` 1.0 keeps the recorded
``exch_ts`` spacing, 2.0 twice as fast, 0 as fast as the clients take it.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Protocol

import numpy as np

from core.dtypes import (
    DELTA_DTYPE,
    EV_DELTA,
    EV_SNAPSHOT,
    EV_TRADE,
    SIM_EVENT_DTYPE,
    SNAPSHOT_LEVEL_DTYPE,
)
from kalshi_rl.errors import ConfigError, StoreError
from kalshi_rl.sim.config import SimConfig
from kalshi_rl.sim.grid import PriceLevelStructure, parse_structure
from kalshi_rl.sim.markets import SimMarkets
from kalshi_rl.sim.model import MarketSpec
from kalshi_rl.store import db


class ReplayHost(Protocol):
    """What a replay drives: the exchange's markets, pacing signals and send loop."""

    config: SimConfig
    stats: collections.Counter[str]

    @property
    def markets(self) -> SimMarkets: ...

    def use_markets(self, markets: list[MarketSpec], quote: bool = True) -> None: ...

    def has_listeners(self) -> bool: ...

    def backlogged(self, limit: int = 1 << 20) -> bool: ...

    def advance(self, n_steps: int) -> int: ...


_SQL = f"""
SELECT rec_id, market_id, kind, side, price, qty, exch_ts FROM (
  SELECT rec_id, market_id, {EV_SNAPSHOT} AS kind, side, price, qty, exch_ts
    FROM orderbook_snapshots WHERE session_id = $1
  UNION ALL
  SELECT rec_id, market_id, {EV_DELTA}, side, price, delta, exch_ts
    FROM orderbook_deltas WHERE session_id = $1
  UNION ALL
  SELECT rec_id, market_id, {EV_TRADE}, taker_side, yes_price, count, exch_ts
    FROM trades WHERE session_id = $1
) r ORDER BY rec_id, side, price
"""


async def load_session(dsn: str, session_id: int) -> tuple[list[MarketSpec], np.ndarray]:
    """Markets (in markets.id order) and events of one recorded session.

    Returns:
        (specs, events) with ``events['market']`` indexing ``specs`` and ``group`` the
        rec_id (rows of one snapshot share it).
    """
    try:
        conn = await db.connect(dsn)
    except OSError as exc:
        raise StoreError(f"cannot connect to {dsn!r} for replay: {exc}") from exc
    try:
        rows = await conn.fetch(_SQL, session_id)
        ids = sorted({r["market_id"] for r in rows})
        mrows = await conn.fetch(
            "SELECT id, ticker, event_ticker, title, price_level_structure FROM markets"
            " WHERE id = ANY($1::int[]) ORDER BY id",
            ids,
        )
    finally:
        await conn.close()
    if not rows:
        raise ConfigError(f"feed session {session_id} has no recorded rows")
    specs = []
    for r in mrows:
        structure = (
            parse_structure(r["price_level_structure"])
            if r["price_level_structure"]
            else PriceLevelStructure.DECI_CENT
        )
        specs.append(
            MarketSpec(
                r["ticker"], r["event_ticker"] or r["ticker"], r["title"] or r["ticker"], structure
            )
        )
    slot = {mid: i for i, mid in enumerate(ids)}
    ev = np.zeros(len(rows), dtype=SIM_EVENT_DTYPE)
    ev["group"] = [r["rec_id"] for r in rows]
    ev["market"] = [slot[r["market_id"]] for r in rows]
    ev["kind"] = [r["kind"] for r in rows]
    ev["side"] = [r["side"] for r in rows]
    ev["price"] = [r["price"] for r in rows]
    ev["qty"] = [r["qty"] for r in rows]
    ev["ts"] = [r["exch_ts"] for r in rows]
    return specs, ev


def _snapshot_levels(ev: np.ndarray, m: int) -> np.ndarray:
    lv = np.zeros(ev.shape[0], dtype=SNAPSHOT_LEVEL_DTYPE)
    lv["market"] = m
    lv["side"] = ev["side"]
    lv["price"] = ev["price"]
    lv["qty"] = ev["qty"]
    lv["exch_ts"] = ev["ts"]
    return lv


class ReplaySource:
    """Feeds recorded events to a SimExchange (see the module docstring)."""

    def __init__(self, x: ReplayHost, events: np.ndarray, speed: float) -> None:
        self.x = x
        self.speed = speed
        self.events = self._take_initial_snapshots(events)
        self.pos = 0
        self.done = False

    @classmethod
    async def load(cls, x: ReplayHost, dsn: str, session_id: int) -> ReplaySource:
        """Load a session and switch the exchange's markets to the recorded ones."""
        specs, ev = await load_session(dsn, session_id)
        x.use_markets(specs, quote=False)  # the book is the recorded one, no maker ladders
        return cls(x, ev, x.config.replay_speed)

    def _take_initial_snapshots(self, ev: np.ndarray) -> np.ndarray:
        """Apply each market's leading snapshot to the book; return the rest."""
        books = self.x.markets.model.books
        seen: set[int] = set()
        keep = np.ones(ev.shape[0], dtype=bool)
        i = 0
        n = ev.shape[0]
        while i < n:
            m = int(ev[i]["market"])
            j = i + 1
            if ev[i]["kind"] == EV_SNAPSHOT:
                while j < n and ev[j]["kind"] == EV_SNAPSHOT and ev[j]["group"] == ev[i]["group"]:
                    j += 1
                if m not in seen:
                    books.apply_snapshot(m, _snapshot_levels(ev[i:j], m))
                    keep[i:j] = False
            seen.add(m)
            i = j
        return ev[keep]

    def next_events(self, max_events: int) -> np.ndarray:
        """The next events (at most ``max_events``, cut after a snapshot), applied to the
        sim's book; the caller dispatches them."""
        ev = self.events
        start = self.pos
        end = min(ev.shape[0], start + max(1, max_events))
        snaps = np.flatnonzero(ev["kind"][start:end] == EV_SNAPSHOT)
        if snaps.shape[0]:
            first = start + int(snaps[0])
            g = ev[first]["group"]
            end = first + 1
            while end < ev.shape[0] and ev[end]["kind"] == EV_SNAPSHOT and ev[end]["group"] == g:
                end += 1
        chunk = ev[start:end]
        self.pos = end
        self._apply(chunk)
        if self.pos >= ev.shape[0]:
            self.done = True
        return chunk

    def _apply(self, chunk: np.ndarray) -> None:
        books = self.x.markets.model.books
        is_delta = chunk["kind"] == EV_DELTA
        if is_delta.any():
            d = chunk[is_delta]
            recs = np.zeros(d.shape[0], dtype=DELTA_DTYPE)
            recs["market"] = d["market"]
            recs["side"] = d["side"]
            recs["price"] = d["price"]
            recs["delta"] = d["qty"]
            recs["exch_ts"] = d["ts"]
            books.apply_deltas(recs)
        snap = np.flatnonzero(chunk["kind"] == EV_SNAPSHOT)
        if snap.shape[0]:
            # next_events cuts a chunk right after its snapshot, so applying the deltas
            # first and the snapshot last matches the recorded order
            m = int(chunk[snap[0]]["market"])
            books.apply_snapshot(m, _snapshot_levels(chunk[snap], m))

    async def run(self) -> None:
        """Play back once someone subscribes; pace by exch_ts unless speed is 0."""
        x = self.x
        loop = asyncio.get_running_loop()
        while not x.has_listeners():
            await asyncio.sleep(0.005)
        t_wall0 = loop.time()
        ts0 = int(self.events[0]["ts"]) if self.events.shape[0] else 0
        while not self.done and self.events.shape[0]:
            if self.speed > 0:
                due_at = t_wall0 + (int(self.events[self.pos]["ts"]) - ts0) / 1000 / self.speed
                wait = due_at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                ts_now = ts0 + (loop.time() - t_wall0) * 1000 * self.speed
                n = int(np.searchsorted(self.events["ts"][self.pos :], ts_now, side="right"))
                x.advance(max(1, n))
            else:
                if x.backlogged():
                    await asyncio.sleep(0.001)
                    continue
                x.advance(x.config.batch_steps)
            await asyncio.sleep(0)
        x.stats["replay_done"] = 1
