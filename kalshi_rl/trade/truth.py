"""Paper fills against the truth: the same orders on the local exchange and on paper.

Two local exchanges (``kalshi_rl.sim``) run the same seeded market model in lockstep
(``advance`` by hand).  The *truth* exchange takes our orders through Kalshi's REST API
(``kalshi_rl.kalshi.trading.TradingClient``) and matches them with exact price-time
priority: its takers hit resting orders FIFO, so every fill there is what an exchange
would have given.  The *watched* exchange carries the same model without our orders; the
paper clients see it only through the real feed client (``kalshi_rl.kalshi.feed.Feed``
over loopback WebSockets into a ``BookSet``) -- exactly the situation of paper trading
on Kalshi, where our paper orders are not in the book.  ``FeedTee`` plays the live node:
it drains the feed's rings and calls the paper clients' hooks.

Used by ``bench/paper_vs_sim.py`` (the numbers in bench/README.md) and the loopback tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.book import BookSet
from core.dtypes import SIDE_NO, SIDE_YES
from kalshi_rl.config import FeedConfig
from kalshi_rl.errors import KalshiApiError
from kalshi_rl.kalshi import auth
from kalshi_rl.kalshi.feed import Feed, FeedRings
from kalshi_rl.kalshi.trading import TradingClient
from kalshi_rl.sim import SimConfig, SimExchange
from kalshi_rl.trade.paper import MarketInfo, PaperClient


class FeedTee:
    """Drains a feed's rings and hands the records to paper clients (the live node's job).

    Trades go first, then the changed books: a trade and the level decrease it caused
    arrive together, and the queue models count the trade once (``trade_since``).
    """

    def __init__(self, rings: FeedRings, clients: Sequence[PaperClient]) -> None:
        self.rings = rings
        self.clients = list(clients)
        self.n_deltas = 0
        self.n_trades = 0

    def pump(self) -> int:
        """One round; returns the fills it caused (all clients)."""
        trades = self.rings.trades.drain()
        slots: list[np.ndarray] = []
        for ring in self.rings.delta_shards:
            d = ring.drain()
            if d.shape[0]:
                slots.append(d["market"].astype(np.int64))
        snaps = self.rings.snapshots.drain()
        if snaps.shape[0]:
            slots.append(snaps["market"].astype(np.int64))
        self.rings.gaps.drain()
        changed = np.unique(np.concatenate(slots)) if slots else np.zeros(0, np.int64)
        self.n_trades += trades.shape[0]
        self.n_deltas += sum(s.shape[0] for s in slots)
        n = 0
        for c in self.clients:
            if trades.shape[0]:
                n += c.on_trades(trades)
            if changed.shape[0]:
                n += c.on_book_update(changed)
        return n


@dataclass
class Lockstep:
    """The truth exchange, the watched exchange, the feed on it and the paper clients."""

    truth: SimExchange
    watched: SimExchange
    feed: Feed
    books: BookSet
    tee: FeedTee
    trader: TradingClient
    clients: dict[str, PaperClient]

    def advance(self, steps: int) -> None:
        """Both exchanges generate ``steps`` model steps (the same events)."""
        self.truth.advance(steps)
        self.watched.advance(steps)

    def in_sync(self) -> bool:
        """The paper books equal the watched exchange's book in every market."""
        for t in self.watched.tickers:
            s = self.books.slots.get(t)
            if s is None or not self.books.valid(s):
                return False
            truth = self.watched.book(t)
            if self.books.levels(s, SIDE_YES) != truth["yes"]:
                return False
            if self.books.levels(s, SIDE_NO) != truth["no"]:
                return False
        return True

    async def sync(self, timeout: float = 20.0, *, pump: bool = True) -> None:
        """Wait until the feed delivered everything, then (``pump``) hand it to the clients."""
        end = time.monotonic() + timeout
        while not self.in_sync():
            if time.monotonic() > end:
                raise TimeoutError("the paper books did not catch up with the watched sim")
            await asyncio.sleep(0.002)
        await asyncio.sleep(0)  # let the feed finish staging this loop iteration
        if pump:
            self.tee.pump()

    async def truth_order(self, ticker: str, side: str, count: int, price: int, tif: str) -> Any:
        """Send an order to the truth exchange; a refusal is returned, not raised."""
        try:
            return await self.trader.create_order(
                ticker, side, count=count, price=price, time_in_force=tif
            )
        except KalshiApiError as exc:
            return exc


def market_infos(sim: SimExchange) -> list[MarketInfo]:
    """The paper clients' view of the sim's markets (tickers and tick grids)."""
    return [MarketInfo(s.ticker, s.structure) for s in sim.model.markets if s is not None]


@contextlib.asynccontextmanager
async def lockstep(
    clients: dict[str, Any], *, n_markets: int = 3, seed: int = 11, **sim_kw: Any
) -> AsyncIterator[Lockstep]:
    """Run a truth exchange and a watched exchange in lockstep with paper clients.

    Args:
        clients: name -> callable(books, markets) building a PaperClient.
        n_markets, seed, sim_kw: SimConfig of both exchanges (autostart is off).

    Yields:
        The running ``Lockstep`` (feed connected and in sync).
    """
    key = auth.generate_private_key_pem()
    creds = auth.Credentials.from_pem("truth-trader", key)
    cfg = SimConfig(
        autostart=False, n_markets=n_markets, seed=seed, start_ts_ms=1_700_000_000_000,
        public_key_pem=creds.public_pem(), **sim_kw,
    )  # fmt: skip
    async with SimExchange(cfg) as truth, SimExchange(cfg) as watched:
        books = BookSet(max(4, n_markets))
        rings = FeedRings.create(1 << 14)
        feed_creds = auth.Credentials.from_pem("paper-feed", key)
        feed = Feed(
            FeedConfig(ws_url=watched.ws_url, channels=("orderbook_delta", "trade")),
            books, rings, watched.tickers, credentials=feed_creds,
        )  # fmt: skip
        task = asyncio.create_task(feed.run())
        try:
            infos = market_infos(watched)
            built = {name: make(books, infos) for name, make in clients.items()}
            tee = FeedTee(rings, list(built.values()))
            async with TradingClient(truth.rest_url, creds) as trader:
                ls = Lockstep(truth, watched, feed, books, tee, trader, built)
                await ls.sync()
                yield ls
        finally:
            feed.stop()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)
