"""The paper client on live books from the real sim over loopback, against the sim's truth.

``kalshi_rl.trade.truth.lockstep``: a truth exchange takes the orders over REST (exact
price-time priority), a second exchange with the same seeded model is watched by the real
feed client (picows, loopback) into a BookSet the paper client reads in place.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from core.dtypes import NO_PRICE, SIDE_YES
from kalshi_rl.trade.paper import PaperClient, PaperConfig, QueueModel
from kalshi_rl.trade.truth import lockstep

pytestmark = pytest.mark.slow


def build(queue: QueueModel = QueueModel.CONSERVATIVE) -> Any:
    def make(books: Any, infos: Any) -> PaperClient:
        return PaperClient(books, PaperConfig(start_cash=10**9, queue_model=queue), markets=infos)

    return make


async def test_taker_fills_equal_the_exchanges_on_the_same_book() -> None:
    rng = random.Random(3)
    async with lockstep({"paper": build()}, n_markets=2, seed=5) as ls:
        paper = ls.clients["paper"]
        compared = 0
        for k in range(12):
            ls.advance(rng.randint(20, 60))  # the books re-converge after our last take
            await ls.sync()
            t = rng.choice(ls.watched.tickers)
            if ls.truth.book(t) != ls.watched.book(t):
                continue
            side = rng.choice(["bid", "ask"])
            yb, ya, _, _ = ls.books.best(ls.books.slots[t])
            touch = ya if side == "bid" else yb
            if touch == NO_PRICE:
                continue
            price = min(touch + 20, 990) if side == "bid" else max(touch - 20, 10)
            count = rng.choice([300, 1250, 8000, 40000])
            r = paper.create_order_now({
                "ticker": t, "client_order_id": f"k{k}", "side": side,
                "count": f"{count // 100}.{count % 100:02d}", "price": f"0.{price:03d}0",
                "time_in_force": "immediate_or_cancel",
            })  # fmt: skip
            truth = await ls.truth_order(t, side, count, price, "immediate_or_cancel")
            assert round(float(r["fill_count"]) * 100) == truth.fill_count
            if truth.fill_count:
                # V2 average price in dollars vs the client's money units per contract
                assert round(float(r["average_fill_price"]) * 10_000) == truth.average_fill_price
                compared += 1
        assert compared >= 5


async def test_resting_order_fills_from_the_public_trades_in_queue_order() -> None:
    async with lockstep({"paper": build()}, n_markets=1, seed=5) as ls:
        paper = ls.clients["paper"]
        t = ls.watched.tickers[0]
        slot = ls.books.slots[t]
        price, level = ls.watched.book(t)["yes"][0]
        r = paper.create_order_now({
            "ticker": t, "client_order_id": "rest", "side": "bid", "count": "5.00",
            "price": f"0.{price:03d}0", "time_in_force": "good_till_canceled",
        })  # fmt: skip
        assert r["status"] == "resting"
        # a taker sells YES: the whole level ahead of us, then 2 contracts more.  On the
        # watched exchange (no paper order there) the last 2 trade one level lower: paper
        # sees a trade through its price and fills 2, as the exchange would have (FIFO: we
        # stood right behind the level).
        assert ls.watched.take(t, "no", level + 200) == level + 200
        await ls.sync()
        o = paper.get_order(r["order_id"])["order"]
        assert (o["fill_count_fp"], o["status"]) == ("2.00", "resting")
        assert paper.positions[slot]["position"] == 200
        assert int(paper.books.best[slot, SIDE_YES]) < price  # the level is gone for real
