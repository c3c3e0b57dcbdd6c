"""The sim's markets: the model (books, market state), tickers, ids and slots.

One ``SimMarkets`` is what every part of the sim reads: the subscription protocol and
REST (tickers, books), fault injection, blast mode, replay.  It imports nothing of the
rest of the sim, so none of those modules import each other through it.
"""

from __future__ import annotations

import time

import numpy as np

from core.book import BookSet
from core.dtypes import SIDE_NO, SIDE_YES
from kalshi_rl.errors import ConfigError
from kalshi_rl.sim import wire
from kalshi_rl.sim.config import SimConfig
from kalshi_rl.sim.listings import ListingSchedule
from kalshi_rl.sim.model import MarketModel, MarketSpec, default_markets


def compile_model(config: SimConfig, quote: bool = True) -> None:
    """Run the model's kernels once on a throwaway one-market model.

    Numba compiles them on first use (about 12 s on a cold cache).  A sim whose clock
    starts at the wall clock calls this first, so its clock does not start ~12 s behind.
    """
    MarketModel(
        list[MarketSpec | None](default_markets(1)),
        config.model,
        seed=config.seed,
        ts0=0,
        initial_quotes=quote,
    ).step(4)


class SimMarkets:
    """The model, the public book and the per-market names of one run (slot i = ``specs[i]``).

    With ``config.series`` the markets are rolling listings: slots start empty (ticker
    ``""``) and are renamed as listings take them (kalshi_rl.sim.lifecycle.reuse_slot).

    Args:
        specs: the fixed market specs (ignored with ``config.series``).
        config: the SimConfig (seed, clock start, rate, model knobs).
        quote: start with the model's maker ladders (False: empty books, for replay).
    """

    def __init__(self, specs: list[MarketSpec], config: SimConfig, quote: bool = True) -> None:
        if config.start_ts_ms is None:
            compile_model(config, quote)  # before the clock is read, not after
        # the clock starts on a whole second (as Kalshi's market times are): rolling markets
        # then open and close on whole seconds too, which the lifecycle events' unix-second
        # open_ts / close_ts carry exactly
        ts0 = config.start_ts_ms
        if ts0 is None:
            ts0 = int(time.time()) * 1000
        schedule = None
        if config.series is not None:
            schedule = ListingSchedule(config.series, ts0)
            specs = []
        self.model = MarketModel(
            list(specs),
            config.model,
            seed=config.seed,
            ts0=ts0,
            ms_per_step=1.0,
            initial_quotes=quote,
            schedule=schedule,
            slots=config.slots,
        )
        # rate messages make one sim second (config.ms_per_step); clock_speed paces the wall
        n = len(config.series) if config.series is not None else len(specs)
        self.msgs_per_step = 1.0
        if quote:
            # rolling markets emit more per step the more sim time a step covers: iterate
            rounds = 3 if config.series is not None and config.step_ms is None else 1
            self.model.ms_per_step = config.ms_per_step(4.0, n)
            for _ in range(rounds):
                self.msgs_per_step = self.model.msgs_per_step()
                self.model.ms_per_step = config.ms_per_step(self.msgs_per_step, n)
        else:
            self.model.ms_per_step = 1.0
        self.tickers = ["" if m is None else m.ticker for m in self.model.markets]
        self.market_ids = [wire.market_id(t) for t in self.tickers]
        self.slot = {t: i for i, t in enumerate(self.tickers) if t}
        self.open_ts_ms = ts0
        # the public book: the model's maker liquidity plus the users' resting orders
        # (kalshi_rl.sim.matching keeps it); what clients see over WS and REST
        self.books = BookSet(capacity=max(len(self.tickers), 1))
        for i, t in enumerate(self.tickers):
            self.books.slot(t or f"slot-{i}")  # rolling slots: names change, slots stay
        self.sync_public()

    def sync_public(self) -> None:
        """Make the public book equal the model's (no user orders rest anywhere)."""
        src = self.model.books
        np.copyto(self.books.qty, src.qty)
        np.copyto(self.books.best, src.best)
        np.copyto(self.books.meta, src.meta)

    def rename(self, m: int, ticker: str) -> None:
        """Slot ``m`` now holds ``ticker`` (a rolling listing reused it)."""
        old = self.tickers[m]
        if old and self.slot.get(old) == m:
            del self.slot[old]
        self.tickers[m] = ticker
        self.market_ids[m] = wire.market_id(ticker)
        self.slot[ticker] = m

    def __len__(self) -> int:
        return len(self.tickers)

    def market(self, ticker: str) -> int:
        """The slot of ``ticker``; ConfigError if the sim has no such market."""
        m = self.slot.get(ticker)
        if m is None:
            raise ConfigError(f"unknown market {ticker!r}")
        return m

    def book(self, ticker: str) -> dict[str, list[tuple[int, int]]]:
        """The sim's own book: ``{"yes": [(price, qty)...], "no": [...]}``, best first,
        each side on its own scale (ticks, count units)."""
        m = self.market(ticker)
        b = self.books
        return {"yes": b.levels(m, SIDE_YES), "no": b.levels(m, SIDE_NO)}
