"""``ActorControl``: the dashboard's handle on the node's paper-trading actor.

The actor (``kalshi_rl.trade.actor.Actor``) trades :class:`LoadedModel` objects; the
dashboard speaks registry ids.  This adapter turns ids into loaded models (off the event
loop), attaches trading to the node on the first start (``trade.wiring.attach_trading``),
and reads positions, resting orders with their queue estimates and the P&L split straight
from the actor's paper client.  It samples the P&L split once a second for the P&L chart.

P&L split (money units, since the account opened): settlement = payouts - cost of settled
contracts; realized = trading P&L of closed positions before fees; fees = trade + rounding
fees - rebates; open marks = total - the three (the open positions' liquidation value
against their cost).  total = account value - start cash, summed over the markets the
actor trades (each market's sub-account: its paper position's cash flows + the open
position's liquidation value); a market listed later adds 0 until it trades, and a
determined market's position is paid out by the paper client (``trade.wiring.PaperSettler``)
so its P&L moves from open marks to settlement.  ``pnl_history``'s last point is the
``pnl`` of the same response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from core.dtypes import ORD_RESTING, ORDER_BUY, SIDE_YES
from kalshi_rl import registry
from kalshi_rl.errors import KalshiRLError

log = logging.getLogger(__name__)


class ActorRefused(KalshiRLError):
    """The actor refused a model (incompatible observation/action spaces...)."""


class ActorControl:
    """The node's actor as ``kalshi_rl.web.node.ActorView`` (see the module docstring).

    Args:
        node: an entered ``LiveNode`` (books, pool, tickers, meta, actor).
        config: ``trade.actor.ActorConfig`` used when trading is attached.
        history_s: seconds of P&L samples kept for the chart.
    """

    def __init__(self, node: Any, config: Any = None, history_s: int = 3600) -> None:
        self.node = node
        self.config = config
        self.trading: Any = None
        self.history: deque[dict[str, int]] = deque(maxlen=history_s)
        self._sampler: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ ActorView
    @property
    def actor(self) -> Any:
        return None if self.trading is None else self.trading.actor

    @property
    def state(self) -> str:
        a = self.actor
        return "stopped" if a is None else a.state.name.lower()

    @property
    def generation(self) -> int:
        return 0 if self.trading is None else id(self.trading.actor)

    @property
    def model_id(self) -> int | None:
        a = self.actor
        return None if a is None else a.model.model_id

    async def _loaded(self, model_id: int) -> Any:
        from kalshi_rl.trade.reload import load_version

        async with self.node.pool.acquire() as conn:
            mv = await registry.get(conn, model_id)
        return await load_version(mv)

    async def start(self, model_id: int) -> None:
        """Trade ``model_id``: attach trading on first use, else swap and (re)start."""
        async with self._lock:
            if self.trading is None:
                from kalshi_rl.trade.actor import ActorConfig
                from kalshi_rl.trade.wiring import attach_trading

                self.trading = await attach_trading(
                    self.node, str(model_id), self.config or ActorConfig()
                )
                self._sampler = asyncio.create_task(self._sample(), name="actor-pnl-sampler")
                self.node.add_closer(self._stop_sampler)
                return
            if self.actor.model.model_id != model_id:
                await self._switch(model_id)
            await self.actor.start()

    async def stop(self) -> None:
        if self.actor is not None:
            await self.actor.stop()

    async def switch_model(self, model_id: int) -> None:
        async with self._lock:
            if self.actor is None:
                raise ActorRefused("no model is trading yet: start the actor first")
            await self._switch(model_id)

    async def _switch(self, model_id: int) -> None:
        loaded = await self._loaded(model_id)
        problem = await self.actor.switch_to(loaded)
        if problem:
            raise ActorRefused(problem)

    async def kill(self, reason: str) -> None:
        if self.actor is not None:
            self.actor.kill(reason)

    async def resume(self) -> None:
        """Release the kill switch and return to RUNNING (an operator's decision)."""
        if self.actor is not None:
            self.actor.release_kill()
            self.actor.resume()

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        if self.actor is None:
            return asyncio.Queue(1)  # nothing will come until trading is attached
        return self.actor.subscribe(maxsize=2000)

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        if self.actor is not None:  # the actor ignores a queue it never handed out
            self.actor.unsubscribe(queue)

    # ------------------------------------------------------------------ reads
    def pnl(self) -> dict[str, int]:
        """The P&L split now (see the module docstring)."""
        a = self.actor
        now = int(time.time() * 1000)
        if a is None:
            return {"ts_ms": now, "settlement": 0, "realized": 0, "open_marks": 0, "fees": 0,
                    "total": 0}  # fmt: skip
        pos = a.paper.positions
        idx = a.slots[a.slots < pos.shape[0]]
        p = pos[idx]
        settlement = int(p["settlement_pnl"].sum())
        fees = int(p["fees_paid"].sum())
        realized = int(p["realized_pnl"].sum()) - settlement + fees
        total = int(a.total_value()) - int(a.start_cash) * len(a.tickers)
        return {
            "ts_ms": now,
            "settlement": settlement,
            "realized": realized,
            "open_marks": total - settlement - realized + fees,
            "fees": fees,
            "total": total,
        }

    def _positions(self) -> list[dict[str, Any]]:
        a = self.actor
        pos = a.paper.positions
        out = []
        for i, t in enumerate(a.tickers):
            s = int(a.slots[i])
            if s >= pos.shape[0]:
                continue
            p = pos[s]
            if p["position"] == 0 and p["volume"] == 0:
                continue
            n = abs(int(p["position"]))
            out.append({
                "ticker": t,
                "position": int(p["position"]),
                # cost_basis is money ($0.0001) for n hundredths: ticks = money * 10 / n
                "avg_price": None if n == 0 else int(p["cost_basis"]) * 10 / n,
                "mark_value": int(a.market_value(i)) - int(a.start_cash),
                "realized": int(p["realized_pnl"]),
            })  # fmt: skip
        # open positions first (markets already settled or flat after it)
        out.sort(key=lambda r: r["position"] == 0)
        return out

    def _orders(self) -> list[dict[str, Any]]:
        """Resting orders with the paper engine's queue estimate (count ahead of each)."""
        a = self.actor
        rows = a.paper.orders_array()
        rows = rows[rows["status"] == ORD_RESTING]
        return [
            {
                "order_id": str(int(o["order_id"])),
                "ticker": a.books.ticker_of(int(o["market"])),
                "side": "yes" if int(o["side"]) == SIDE_YES else "no",
                "action": "buy" if int(o["action"]) == ORDER_BUY else "sell",
                "price": int(o["price"]),
                "remaining": int(o["remaining"]),
                "queue_ahead": int(o["queue_ahead"]),
            }
            for o in rows
        ]

    def fills(self, limit: int = 500) -> list[dict[str, Any]]:
        """The account's latest fills, newest first."""
        a = self.actor
        if a is None:
            return []
        f = a.paper.fills_array()[-limit:][::-1]
        return [
            {
                "ticker": a.books.ticker_of(int(r["market"])),
                "ts_ms": int(r["ts"]) // 1_000_000,
                "side": "yes" if int(r["side"]) == SIDE_YES else "no",
                "action": "buy" if int(r["action"]) == ORDER_BUY else "sell",
                "price": int(r["price"]),
                "count": int(r["count"]),
                "fee": int(r["fee"]),
                "is_taker": bool(r["is_taker"]),
            }
            for r in f
        ]

    def snapshot(self) -> dict[str, Any]:
        a = self.actor
        if a is None:
            return {}
        pnl = self.pnl()
        # the chart ends at the header: the samples, then this same "now" point (without it
        # the last sample is up to a second older, and a 10-lot's mark moves dollars in that)
        history = [p for p in self.history if p["ts_ms"] < pnl["ts_ms"]]
        history.append(pnl)
        return {
            "episode_id": a.episode_id or None,
            "halted_reason": a.risk.reason or None if a.state.name == "HALTED" else None,
            "cash": int(a.paper.cash),
            "positions": self._positions(),
            "orders": self._orders(),
            "fills": self.fills(),
            "pnl": pnl,
            "pnl_history": history,
            "n_actions": int(a.counts.get("decisions", 0)),
            "model_label": a.model.label,
        }

    async def _sample(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a sample must never end the loop
                self.history.append(self.pnl())
            await asyncio.sleep(1.0)

    async def _stop_sampler(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)
