"""Helpers of the paper-client tests (books, a fake clock, an independent fee) as fixture ``ph``.

Tests here are not a package (pytest's importlib mode), so the helpers reach them through
the ``ph`` fixture: ``ph.snapshot(...)``, ``ph.order(...)``.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from math import ceil
from types import ModuleType

import numpy as np
import pytest

from core.book import BookSet
from core.dtypes import DELTA_DTYPE, SIDE_NO, SIDE_YES, SNAPSHOT_LEVEL_DTYPE, TRADE_DTYPE
from kalshi_rl.trade.paper import MarketInfo, PaperClient, PaperConfig


class Clock:
    """A settable nanosecond clock."""

    def __init__(self, t: int = 1_800_000_000_000_000_000) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t

    def advance_s(self, s: float) -> None:
        self.t += int(s * 1e9)


def snapshot(
    books: BookSet, slot: int, yes: list[tuple[int, int]], no: list[tuple[int, int]]
) -> None:
    """Load a book: (price ticks, qty count units) per side, each on its own scale."""
    rows = [(SIDE_YES, p, q) for p, q in yes] + [(SIDE_NO, p, q) for p, q in no]
    lv = np.zeros(max(len(rows), 1), dtype=SNAPSHOT_LEVEL_DTYPE)
    lv["market"] = slot
    if rows:
        lv["side"], lv["price"], lv["qty"] = zip(*rows, strict=True)
    else:
        lv["side"] = -1
        lv["price"] = -1
    assert books.apply_snapshot(slot, lv) == 0


def delta(books: BookSet, slot: int, side: int, price: int, change: int) -> None:
    rec = np.zeros(1, dtype=DELTA_DTYPE)
    rec["market"], rec["side"], rec["price"], rec["delta"] = slot, side, price, change
    assert books.apply_deltas(rec) == 0, rec["status"]


def trade(slot: int, yes_price: int, taker_side: int, count: int) -> np.ndarray:
    rec = np.zeros(1, dtype=TRADE_DTYPE)
    rec["market"], rec["yes_price"], rec["taker_side"], rec["count"] = (
        slot, yes_price, taker_side, count,
    )  # fmt: skip
    return rec


def make_client(
    *markets: MarketInfo, cash_dollars: int = 1000, clock: Clock | None = None, **cfg: object
) -> tuple[PaperClient, BookSet, Clock]:
    books = BookSet(4)
    clock = clock or Clock()
    config = PaperConfig(start_cash=cash_dollars * 10_000, **cfg)  # type: ignore[arg-type]
    c = PaperClient(books, config, markets=markets or (MarketInfo("T"),), clock=clock)
    return c, books, clock


def fee_money(count: int, price: int, rate: Fraction = Fraction(7, 100)) -> int:
    """Kalshi's trade fee of one fill, rounded up to $0.0001, computed independently."""
    dollars = rate * Fraction(count, 100) * Fraction(price, 1000) * (1 - Fraction(price, 1000))
    return ceil(dollars * 10_000)


def order(
    ticker: str = "T",
    coid: str = "c1",
    side: str = "bid",
    count: str = "1.00",
    price: str = "0.5000",
    tif: str = "good_till_canceled",
    **kw: object,
) -> dict[str, object]:
    return {
        "ticker": ticker,
        "client_order_id": coid,
        "side": side,
        "count": count,
        "price": price,
        "time_in_force": tif,
        **kw,
    }


@pytest.fixture
def ph() -> ModuleType:
    """This module: the helpers above."""
    return sys.modules[__name__]
