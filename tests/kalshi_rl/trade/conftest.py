"""Helpers of the paper-client tests (books, a fake clock, an independent fee) as fixture ``ph``.

Tests here are not a package (pytest's importlib mode), so the helpers reach them through
the ``ph`` fixture: ``ph.snapshot(...)``, ``ph.order(...)``.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from math import ceil, floor
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


@pytest.fixture(scope="session")
def ph() -> ModuleType:
    """This module: the helpers above."""
    return sys.modules[__name__]


class RefAccount:
    """An independent model of a Kalshi account, from fills (Fractions, not the engine).

    Kalshi's rules (kalshi-protocol.md section 4): the trade fee rate * C * P * (1 - P) is
    rounded up to $0.0001; the balance moves by (revenue - fee) floored to $0.01; the
    rounding fees of one order accumulate and every whole cent above $0.01 is rebated.
    A buy of the side opposite to the held one redeems YES+NO pairs for $1 each.
    """

    def __init__(self, cash_dollars: int, maker_rate: Fraction = Fraction(0)) -> None:
        self.cash = Fraction(cash_dollars)
        self.position: dict[int, int] = {}  # market -> count units, +YES / -NO
        self.fees = Fraction(0)
        self.acc: dict[int, Fraction] = {}
        self.maker_rate = maker_rate

    def fill(self, market: int, order_id: int, side: int, action: int, count: int,
             price: int, is_taker: bool) -> None:  # fmt: skip
        buy = action == 0
        bought = side if buy else 1 - side
        bprice = Fraction(price if buy else 1000 - price, 1000)
        pos = self.position.get(market, 0)
        held_opp = -pos if bought == SIDE_YES else pos
        closed = min(count, max(held_opp, 0))
        c = Fraction(count, 100)
        revenue = Fraction(closed, 100) - c * bprice
        rate = Fraction(7, 100) if is_taker else self.maker_rate
        p = Fraction(price, 1000)
        tfee = Fraction(ceil(rate * c * p * (1 - p) * 10_000), 10_000)
        bc = revenue - tfee
        floored = Fraction(floor(bc * 100), 100)
        acc = self.acc.get(order_id, Fraction(0)) + (bc - floored)
        rebate = Fraction(0)
        while acc > Fraction(1, 100):
            rebate += Fraction(1, 100)
            acc -= Fraction(1, 100)
        self.acc[order_id] = acc
        self.cash += floored + rebate
        # net fee = revenue - balance change; money has $0.0001 units, revenue can be finer
        # (fractional contracts at sub-penny prices): the engine books the floor of it
        self.fees += Fraction(floor((revenue - floored - rebate) * 10_000), 10_000)
        self.position[market] = pos + (count if bought == SIDE_YES else -count)

    def replay(self, fills: np.ndarray) -> RefAccount:
        for f in fills:
            self.fill(int(f["market"]), int(f["order_id"]), int(f["side"]), int(f["action"]),
                      int(f["count"]), int(f["price"]), bool(f["is_taker"]))  # fmt: skip
        return self

    def settle(self, market: int, yes: bool) -> None:
        pos = self.position.get(market, 0)
        if (pos > 0 and yes) or (pos < 0 and not yes):
            self.cash += Fraction(abs(pos), 100)
        self.position[market] = 0

    def cash_money(self) -> int:
        m = self.cash * 10_000
        assert m.denominator == 1, m
        return int(m)

    def fees_money(self) -> int:
        m = self.fees * 10_000
        assert m.denominator == 1, m
        return int(m)
