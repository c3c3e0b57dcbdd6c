"""The paper client's order path and hooks, next to the naive way, in the same run.

Run (short, the machine is shared):
    pytest bench/bench_paper.py --benchmark-min-rounds=3 --benchmark-max-time=0.2 \
        --benchmark-columns=min,median,rounds --benchmark-sort=name -p no:cacheprovider

Groups pair ours with a baseline:
* ``taker-order-<k>``: one V2 IOC order (dict in, Kalshi response dict out) walking k
  levels: ``PaperClient.create_order_now`` (validation, core engine, records) vs a plain
  Python paper client doing the same walk, Kalshi fees with the rounding rule and netting
  in Python ints over the same BookSet.
* ``book-update-<n>``: ``on_book_update`` with n resting orders over 10 markets, every book
  changed: one batched kernel call vs a Python loop calling the engine's per-order kernels
  (``core.queue.queue_on_level``) once per order.
* ``idle-hook``: ``on_book_update`` while nothing rests and nothing is consumed (the live
  node calls it after every delta batch).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from core.book import BookSet
from core.dtypes import (
    ORD_RESTING,
    PRICE_MAX,
    SIDE_NO,
    SIDE_YES,
    SNAPSHOT_LEVEL_DTYPE,
)
from core.queue import queue_model, queue_on_level, rest_level
from kalshi_rl.trade.paper import MarketInfo, PaperClient, PaperConfig

N_MARKETS = 10


def deep_books(n_markets: int = N_MARKETS, levels: int = 40, qty: int = 10**9) -> BookSet:
    """YES bids 0.01..0.40 and NO bids 0.01..0.40 (asks 0.60..0.99), ``qty`` each."""
    books = BookSet(16)
    for m in range(n_markets):
        slot = books.slot(f"M{m}")
        rows = [(SIDE_YES, 400 - 10 * k) for k in range(levels)]
        rows += [(SIDE_NO, 400 - 10 * k) for k in range(levels)]
        lv = np.zeros(len(rows), dtype=SNAPSHOT_LEVEL_DTYPE)
        lv["market"] = slot
        lv["side"], lv["price"] = zip(*rows, strict=True)
        lv["qty"] = qty
        assert books.apply_snapshot(slot, lv) == 0
    return books


def client(books: BookSet) -> PaperClient:
    infos = [MarketInfo(f"M{m}") for m in range(N_MARKETS)]
    return PaperClient(books, PaperConfig(start_cash=10**15), markets=infos)


class NaivePaper:
    """The obvious pure-Python paper client: dict account, walk the ladder, Kalshi fees."""

    def __init__(self, books: BookSet, cash: int) -> None:
        self.books = books
        self.cash = cash
        self.pos: dict[str, int] = {}
        self.n = 0

    def create_order(self, req: dict[str, Any]) -> dict[str, Any]:
        t = req["ticker"]
        slot = self.books.slots[t]
        price = round(float(req["price"]) * 1000)
        count = round(float(req["count"]) * 100)
        bid = req["side"] == "bid"
        ladder = SIDE_NO if bid else SIDE_YES
        row = self.books.qty[slot, ladder]
        left, notional, acc, fills = count, 0, 0, 0
        for lp in range(int(self.books.best[slot, ladder]), -1, -1):
            q = int(row[lp])
            if q <= 0:
                continue
            px = PRICE_MAX - lp if bid else lp
            if (bid and px > price) or (not bid and px < price) or left <= 0:
                break
            n = min(q, left)
            fee = -(-7 * n * px * (PRICE_MAX - px) // (100 * 10_000))  # money, rounded up
            rev = (-n * px if bid else n * px) - fee * 10  # 1e-5 $
            floored = (rev // 1000) * 1000
            acc += rev - floored
            rebate = 0
            while acc > 1000:
                rebate += 1000
                acc -= 1000
            self.cash += (floored + rebate) // 10
            notional += n * px
            left -= n
            fills += 1
        filled = count - left
        self.pos[t] = self.pos.get(t, 0) + (filled if bid else -filled)
        self.n += 1
        return {
            "order_id": str(self.n),
            "client_order_id": req["client_order_id"],
            "fill_count": f"{filled // 100}.{filled % 100:02d}",
            "remaining_count": f"{left // 100}.{left % 100:02d}",
            "average_fill_price": f"{notional / max(filled, 1) / 1000:.4f}",
        }


@pytest.mark.parametrize("k", [1, 5, 20])
@pytest.mark.parametrize("impl", ["ours", "naive"])
def test_taker_order(benchmark: Any, k: int, impl: str) -> None:
    books = deep_books(qty=1000)  # 10 contracts per level: k levels for 10 * k contracts
    c = client(books) if impl == "ours" else NaivePaper(books, 10**15)
    n = [0]

    def one() -> None:
        n[0] += 1
        req = {"ticker": "M0", "client_order_id": f"o{n[0]}", "side": "bid",
               "count": f"{10 * k}.00", "price": "0.9900",
               "time_in_force": "immediate_or_cancel"}  # fmt: skip
        if impl == "ours":
            c._liq[:] = 0  # type: ignore[union-attr]  # each order sees the full book again
            c.create_order_now(req)  # type: ignore[union-attr]
        else:
            c.create_order(req)  # type: ignore[union-attr]

    one()  # warm the JIT
    benchmark.group = f"taker-order-{k}"
    benchmark(one)


def resting_client(n_orders: int) -> tuple[PaperClient, BookSet]:
    books = deep_books()
    c = client(books)
    for j in range(n_orders):
        m = j % N_MARKETS
        c.submit(f"M{m}", SIDE_YES, 0, 300 - 10 * (j // N_MARKETS % 10), 100)
    return c, books


@pytest.mark.parametrize("n", [10, 100, 1000])
@pytest.mark.parametrize("impl", ["ours", "naive"])
def test_book_update(benchmark: Any, n: int, impl: str) -> None:
    c, books = resting_client(n)
    slots = np.arange(N_MARKETS, dtype=np.int64)
    qm = queue_model()
    orders = c._orders

    def naive() -> None:
        for j in range(c._n):
            o = orders[j : j + 1]
            if o[0]["status"] != ORD_RESTING:
                continue
            ladder, our = rest_level(int(o[0]["side"]), int(o[0]["action"]), int(o[0]["price"]))
            queue_on_level(o, qm, int(books.qty[int(o[0]["market"]), ladder, our]))

    fn = (lambda: c.on_book_update(slots)) if impl == "ours" else naive
    fn()
    benchmark.group = f"book-update-{n}"
    benchmark(fn)


def test_idle_hook(benchmark: Any) -> None:
    c = client(deep_books())
    slots = np.arange(N_MARKETS, dtype=np.int64)
    benchmark.group = "idle-hook"
    assert benchmark(c.on_book_update, slots) == 0
