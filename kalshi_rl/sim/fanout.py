"""Fan-out: a batch of generated events (SIM_EVENT_DTYPE) to every subscription that wants it.

Deltas get the subscription's next seq (and ``gap_every`` drops); trades go to ``trade``
and refresh ``ticker``; lifecycle events become ``market_lifecycle_v2`` messages.  After a
batch every session is flushed in one write and a slow reader gets Kalshi's error 25.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np
import orjson

from core.dtypes import EV_DELTA, EV_LIFECYCLE, EV_SNAPSHOT, EV_TRADE, LC_CREATED, SIDE_NO
from kalshi_rl.kalshi.protocol import CH_LIFECYCLE, CH_ORDERBOOK, CH_TICKER, CH_TRADE
from kalshi_rl.sim import wire
from kalshi_rl.sim.lifecycle import event_created_body, lifecycle_body, reuse_slot
from kalshi_rl.sim.subscriptions import Subscriptions


class Fanout:
    """Sends generated events through the subscription index.

    Args:
        hub: the subscriptions.
        seed: the run's seed (trade ids are derived from it).
        gap_every: drop every n-th orderbook message of each sid (0 = never).
        slow_reader_bytes: unsent backlog that kills a session's subscriptions.
    """

    def __init__(
        self, hub: Subscriptions, seed: int, gap_every: int, slow_reader_bytes: int
    ) -> None:
        self.hub = hub
        self.stats: collections.Counter[str] = hub.stats
        self.seed = seed
        self.gap_every = gap_every
        self.slow_reader_bytes = slow_reader_bytes
        self.n_trades = 0

    def dispatch(self, ev: np.ndarray, flush: bool = True) -> None:
        """Send a batch of events to every subscription that wants them (and flush)."""
        if ev.shape[0] == 0:
            return
        hub = self.hub
        ob = hub.index[CH_ORDERBOOK]
        kinds = ev["kind"].tolist()
        mkts = ev["market"].tolist()
        sides = ev["side"].tolist()
        prices = ev["price"].tolist()
        qtys = ev["qty"].tolist()
        tss = ev["ts"].tolist()
        groups = ev["group"].tolist()
        i = 0
        n = len(kinds)
        while i < n:
            k = kinds[i]
            m = mkts[i]
            if k == EV_DELTA:
                self.stats["deltas"] += 1
                if ob[m]:
                    self._delta(m, sides[i], prices[i], qtys[i], tss[i])
            elif k == EV_TRADE:
                self._trade(m, sides[i], prices[i], qtys[i], tss[i])
            elif k == EV_LIFECYCLE:
                self._lifecycle(m, sides[i], prices[i], qtys[i], tss[i])
            elif k == EV_SNAPSHOT:
                j = i
                while j + 1 < n and kinds[j + 1] == EV_SNAPSHOT and groups[j + 1] == groups[i]:
                    j += 1
                for sub in ob[m]:
                    hub.send_snapshot(sub, m)
                i = j
            i += 1
        if flush:
            self.flush_all()

    def send_delta(self, m: int, side: int, price: int, qty: int, ts: int) -> None:
        """Queue one orderbook_delta of market ``m`` (not flushed)."""
        self.stats["deltas"] += 1
        if self.hub.index[CH_ORDERBOOK][m]:
            self._delta(m, side, price, qty, ts)

    def send_trade(self, m: int, taker: int, yes_price: int, count: int, ts: int) -> str:
        """Queue one trade (and ticker refreshes); returns its trade_id."""
        return self._trade(m, taker, yes_price, count, ts)

    def flush_all(self) -> None:
        """Flush every session; a slow reader loses its subscriptions (error 25)."""
        for s in list(self.hub.sessions.values()):
            s.flush()
            if s.backlog() > self.slow_reader_bytes:
                self.hub.overflow(s)

    def _delta(self, m: int, side: int, price: int, qty: int, ts: int) -> None:
        hub = self.hub
        t = hub.markets.tickers[m]
        mid = hub.markets.market_ids[m]
        gap_every = self.gap_every
        body_by_scale: dict[bool, str] = {}
        for sub in hub.index[CH_ORDERBOOK][m]:
            uyp = sub.use_yes_price and side == SIDE_NO
            body = body_by_scale.get(uyp)
            if body is None:
                body = wire.delta_body(t, mid, side, price, qty, ts, uyp)
                body_by_scale[uyp] = body
            sub.seq += 1
            if gap_every and sub.seq % gap_every == 0:
                hub.drop(sub, "orderbook_delta", t)
                continue
            sub.session.queue(
                wire.book_message("orderbook_delta", sub.sid, sub.seq, body),
                sub.sid,
                sub.seq,
                "orderbook_delta",
                t,
            )

    def _trade(self, m: int, taker: int, yes_price: int, count: int, ts: int) -> str:
        self.n_trades += 1
        self.stats["trades"] += 1
        hub = self.hub
        t = hub.markets.tickers[m]
        subs = hub.index[CH_TRADE][m]
        tid = wire.trade_id(self.seed, self.n_trades)
        if subs:
            body = wire.trade_body(t, tid, yes_price, count, taker, ts)
            for sub in subs:
                sub.session.queue(
                    wire.unsequenced_message(CH_TRADE, sub.sid, body), sub.sid, None, CH_TRADE, t
                )
        for sub in hub.index[CH_TICKER][m]:
            hub.send_ticker(sub, m, ts)
        return tid

    def _lifecycle(self, m: int, event: int, result: int, serial: int, ts: int) -> None:
        self.stats[f"lifecycle_{event}"] += 1
        hub = self.hub
        if event == LC_CREATED:  # a rolling listing took slot m (kalshi_rl.sim.lifecycle)
            spec = reuse_slot(hub, m, serial)
            self._send_lifecycle(m, "event_lifecycle", event_created_body(spec))
        msg = lifecycle_body(hub.markets.model, hub.markets.tickers[m], m, event, result, ts)
        if msg is not None:
            self._send_lifecycle(m, CH_LIFECYCLE, msg)

    def _send_lifecycle(self, m: int, kind: str, msg: dict[str, Any]) -> None:
        subs = self.hub.index[CH_LIFECYCLE][m]
        if not subs:
            return
        t = self.hub.markets.tickers[m]
        body = orjson.dumps(msg).decode()
        for sub in subs:
            sub.session.queue(wire.unsequenced_message(kind, sub.sid, body), sub.sid, None, kind, t)
