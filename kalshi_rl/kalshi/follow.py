"""Follow the exchange's market list: record markets as they are listed, drop them once
determined (``collect --all``).

Two sources, so a missed event is repaired within one re-scan:

* ``market_lifecycle_v2`` events (the feed subscribes that channel for every market):
  ``created``/``activated`` add the market to the feed at once (its book arrives with the
  subscription's snapshot; the event's open/close times go to the metadata sink),
  ``determined``/``settled`` drop it (``Feed.remove_markets(done=True)``: its recording
  ends with an end-of-recording row, not a hole; the data reached close before);
* a REST re-scan every ``rescan_s``: unopened and open markets not followed yet are
  added; followed markets no longer unopened/open are looked up and dropped once they are
  determined, settled or finalized.  Every market object seen goes to the sink, which
  keeps the ``markets`` table (close time, status, result) up to date.

The lifecycle callback never blocks: it changes the feed's subscriptions (sends commands)
and queues metadata; :meth:`MarketFollower.run` does the REST and sink I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.dtypes import NO_TS
from kalshi_rl.errors import KalshiRLError
from kalshi_rl.kalshi import protocol as p

log = logging.getLogger(__name__)

# market_lifecycle_v2 event types (kalshi-protocol.md §5)
ADD_EVENTS = frozenset({"created", "activated"})
DROP_EVENTS = frozenset({"determined", "settled"})
# REST statuses after which a market's book never changes again
DONE_STATUSES = frozenset({"determined", "settled", "finalized", "amended", "disputed"})
# REST ?status= filters of the markets worth recording
LIVE_FILTERS = ("unopened", "open")

MetaSink = Callable[[list[dict[str, Any]]], Awaitable[None]]


@dataclass
class FollowStats:
    """What the follower did (cumulative)."""

    added: int = 0  # markets added after the start
    dropped: int = 0
    rescans: int = 0
    rescan_errors: int = 0
    events: int = 0  # lifecycle events seen


class MarketFollower:
    """Keeps a feed's market list equal to the exchange's listed, undetermined markets.

    Args:
        feed: the Feed (``add_markets``/``remove_markets``/``tickers``).
        rest: a KalshiRest (``iter_markets``, ``markets_by_ticker``).
        on_meta: async sink for REST-shaped market objects (ticker, status, open_time,
            close_time, result, ...); e.g. an upsert into ``markets``.
        rescan_s: REST re-scan period (<= 0: lifecycle events only).
        next_callback: a lifecycle callback to chain (e.g. the DB status updater).
    """

    def __init__(
        self,
        feed: Any,
        rest: Any,
        on_meta: MetaSink | None = None,
        *,
        rescan_s: float = 60.0,
        next_callback: Callable[[p.LifecycleMsg], None] | None = None,
    ) -> None:
        self.feed = feed
        self.rest = rest
        self.on_meta = on_meta
        self.rescan_s = rescan_s
        self.next_callback = next_callback
        self.stats = FollowStats()
        self._meta: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        # markets seen determined: never added again (a re-scan's listing can be older
        # than the event that dropped them)
        self._done: set[str] = set()

    @property
    def n_markets(self) -> int:
        """Markets followed now."""
        return len(self.feed.tickers)

    def on_lifecycle(self, ev: p.LifecycleMsg) -> None:
        """Feed callback (never blocks): add or drop the market the event is about."""
        self.stats.events += 1
        t = ev.ticker
        if t and ev.event_type in ADD_EVENTS:
            self._add([t])
            meta: dict[str, Any] = {"ticker": t, "status": _EVENT_STATUS[ev.event_type]}
            if ev.open_ts_ms != NO_TS:
                meta["open_time"] = _iso(ev.open_ts_ms)
            if ev.close_ts_ms != NO_TS:
                meta["close_time"] = _iso(ev.close_ts_ms)
            self._meta.append(meta)
            self._wake.set()
        elif t and ev.event_type == "close_date_updated" and ev.close_ts_ms != NO_TS:
            self._meta.append({"ticker": t, "close_time": _iso(ev.close_ts_ms)})
            self._wake.set()
        elif t and ev.event_type in DROP_EVENTS:
            self._drop([t])
        if self.next_callback is not None:
            self.next_callback(ev)

    def _add(self, tickers: list[str]) -> None:
        new = [t for t in tickers if t not in self.feed.tickers and t not in self._done]
        if new:
            self.feed.add_markets(new)
            self.stats.added += len(new)
            log.info("following %d new market(s): %s", len(new), ", ".join(new[:5]))

    def _drop(self, tickers: list[str]) -> None:
        self._done.update(tickers)
        gone = [t for t in tickers if t in self.feed.tickers]
        if gone:
            self.feed.remove_markets(gone, done=True)
            self.stats.dropped += len(gone)
            log.info("dropped %d determined market(s): %s", len(gone), ", ".join(gone[:5]))

    async def rescan(self) -> None:
        """One REST pass: add listed markets we miss, drop followed ones that are done."""
        listed: list[dict[str, Any]] = []
        for status in LIVE_FILTERS:
            listed += [m async for m in self.rest.iter_markets(status=status)]
        live = {m["ticker"] for m in listed if isinstance(m.get("ticker"), str)}
        missing = [t for t in self.feed.tickers if t not in live]
        others = await self.rest.markets_by_ticker(missing) if missing else []
        self._add(sorted(live))
        self._drop([m["ticker"] for m in others if m.get("status") in DONE_STATUSES])
        self._meta += listed + others
        self.stats.rescans += 1

    async def flush_meta(self) -> None:
        """Hand queued market metadata to the sink (kept for the next try on failure)."""
        if not self._meta or self.on_meta is None:
            self._meta.clear()
            return
        batch, self._meta = self._meta, []
        try:
            await self.on_meta(batch)
        except (OSError, TimeoutError, KalshiRLError) as exc:
            log.warning("market metadata postponed: %s", exc)
            self._meta = batch + self._meta

    async def run(self) -> None:
        """Re-scan every ``rescan_s`` and flush metadata as events queue it; until cancelled."""
        loop = asyncio.get_running_loop()
        next_scan = loop.time() + self.rescan_s
        while True:
            timeout = max(next_scan - loop.time(), 0.0) if self.rescan_s > 0 else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            if self.rescan_s > 0 and loop.time() >= next_scan:
                next_scan = loop.time() + self.rescan_s
                try:
                    await self.rescan()
                except KalshiRLError as exc:  # REST down: the events still work
                    self.stats.rescan_errors += 1
                    log.warning("market re-scan failed: %s", exc)
            await self.flush_meta()


_EVENT_STATUS = {"created": "initialized", "activated": "active"}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()
