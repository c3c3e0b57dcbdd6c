"""Model (or replay) events through the exchange: pass through, or interpret against queues.

``ModelEvents.process`` takes a batch of SIM_EVENT_DTYPE events.  Markets without a
resting user order pass straight through (the public book is the maker's: deltas are
applied to it in one batch and fanned out); in a market with resting orders each event
is interpreted by the engine: a maker add (``maker_add``, which may cross a user), a
maker decrease (``maker_cancel``), a model trade (a delta followed by its trade in the
same step: ``sim_taker_event`` re-executes it FIFO), a replayed snapshot
(``resync_market``).  Lifecycle events take effect right after they are sent (close
cancels resting orders, settlement pays, a rolling listing retires the old position).
"""

from __future__ import annotations

import numpy as np

from core.dtypes import DELTA_DTYPE, EV_DELTA, EV_LIFECYCLE, EV_SNAPSHOT, EV_TRADE
from kalshi_rl.sim.matching import Engine


class ModelEvents:
    """Routes event batches into the engine (see the module docstring).

    Args:
        engine: the matching engine.
    """

    def __init__(self, engine: Engine) -> None:
        self.x = engine

    def process(self, ev: np.ndarray, flush: bool = True) -> None:
        """Route model (or replay) events through the exchange and send them.

        Markets without resting user orders pass straight through; in the others each
        event is interpreted against the queues (see the module docstring).  The maker's
        book (``model.books``) must be the state right after these events: a batch that
        touches a market with resting orders must be one model step (SimExchange.advance
        steps the model that way while ``busy()``).
        """
        x = self.x
        if ev.shape[0] == 0:
            return
        x.expire(int(ev["ts"][-1]))
        if not x.busy():
            self._passthrough_lc(ev)
            if flush:
                x.fanout.flush_all()
            return
        version = x.busy_version
        hot = self._hot(ev)
        i = 0
        n = ev.shape[0]
        while i < n:
            if not hot[i]:
                j = i + 1
                while j < n and not hot[j]:
                    j += 1
                self._passthrough_lc(ev[i:j])
                i = j
                continue
            i = self._event(ev, i)
            if version != x.busy_version:
                # a market gained or lost its last resting order inside the batch
                version = x.busy_version
                hot = self._hot(ev)
        if flush:
            x.fanout.flush_all()

    def _hot(self, ev: np.ndarray) -> np.ndarray:
        return self.x.busy_markets[ev["market"]]

    def touches_busy(self, ev: np.ndarray) -> bool:
        """True when some event of ``ev`` is in a market with a resting order."""
        return bool(self.x.busy_markets[ev["market"]].any()) if ev.shape[0] else False

    def _passthrough_lc(self, ev: np.ndarray) -> None:
        """Pass events through, applying each lifecycle event's effect right after it is
        sent (a settlement must book under the ticker the slot had before a reuse)."""
        x = self.x
        lc = np.flatnonzero(ev["kind"] == EV_LIFECYCLE)
        start = 0
        for k in lc.tolist():
            self._passthrough(ev[start : k + 1])
            x.lifecycle_effects(ev[k : k + 1])
            start = k + 1
        if start < ev.shape[0]:
            self._passthrough(ev[start:])

    def _passthrough(self, ev: np.ndarray) -> None:
        """Events of markets with no user orders: the public book is the maker's."""
        x = self.x
        d = ev[ev["kind"] == EV_DELTA]
        if d.shape[0]:
            recs = np.zeros(d.shape[0], dtype=DELTA_DTYPE)
            recs["market"] = d["market"]
            recs["side"] = d["side"]
            recs["price"] = d["price"]
            recs["delta"] = d["qty"]
            recs["exch_ts"] = d["ts"]
            x.mk.books.apply_deltas(recs)
        snaps = np.flatnonzero(ev["kind"] == EV_SNAPSHOT)
        for m in set(ev["market"][snaps].tolist()):
            x.mk.books.qty[m] = x.mk.model.books.qty[m]
            x.mk.books.best[m] = x.mk.model.books.best[m]
        x.fanout.dispatch(ev, flush=False)

    def _event(self, ev: np.ndarray, i: int) -> int:
        """Handle event i of a market with resting orders; returns the next index."""
        x = self.x
        e = ev[i]
        kind = int(e["kind"])
        m, side, price, qty, ts = (
            int(e["market"]), int(e["side"]), int(e["price"]), int(e["qty"]), int(e["ts"])
        )  # fmt: skip
        if kind == EV_DELTA:
            nxt = ev[i + 1] if i + 1 < ev.shape[0] else None
            if (
                nxt is not None
                and int(nxt["kind"]) == EV_TRADE
                and int(nxt["market"]) == m
                and int(nxt["group"]) == int(e["group"])
                and qty < 0
            ):
                x.sim_taker_event(m, side, price, -qty, ts)
                return i + 2
            if qty > 0:
                x.maker_add(m, side, price, qty, ts)
            else:
                x.maker_cancel(m, side, price, -qty, ts)
            return i + 1
        if kind == EV_SNAPSHOT:
            j = i
            while j + 1 < ev.shape[0] and int(ev[j + 1]["kind"]) == EV_SNAPSHOT:
                if int(ev[j + 1]["group"]) != int(e["group"]):
                    break
                j += 1
            x.resync_market(m, ts)
            x.fanout.dispatch(ev[i : j + 1], flush=False)
            return j + 1
        x.fanout.dispatch(ev[i : i + 1], flush=False)
        x.lifecycle_effects(ev[i : i + 1])
        return i + 1
