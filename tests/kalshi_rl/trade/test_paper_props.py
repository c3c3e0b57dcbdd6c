"""Property tests of the paper account: it always equals an independent recomputation.

Random books, random order streams (bids/asks, IOC/GTC/FOK, fractional counts), public
trades, book changes and cancels against one PaperClient.  After every step:

* cash, positions and fees equal ``RefAccount`` (conftest: Kalshi's rules in Fractions)
  replayed over the fills the client reported;
* cash and the free balance are never negative;
* no order fills more than its count, and the fills of an order sum to its filled count.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
from hypothesis import event, given
from hypothesis import strategies as st

from core.dtypes import DELTA_DTYPE, ORD_RESTING, PRICE_MAX, SIDE_NO, SIDE_YES
from kalshi_rl.errors import KalshiApiError
from kalshi_rl.trade.paper import MarketInfo, QueueModel
from kalshi_rl.trade.paper_store import SavedAccount

PRICES = list(range(10, 1000, 10))


@st.composite
def books(draw: Any) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Two non-crossing bid ladders (YES on the YES scale, NO on the NO scale)."""
    split = draw(st.integers(20, 980).map(lambda p: p - p % 10))  # best YES bid < split
    yes_px = draw(st.lists(st.sampled_from([p for p in PRICES if p < split]), max_size=4,
                           unique=True))  # fmt: skip
    no_px = draw(st.lists(st.sampled_from([p for p in PRICES if p <= PRICE_MAX - split]),
                          max_size=4, unique=True))  # fmt: skip
    qty = st.integers(1, 3000)
    return [(p, draw(qty)) for p in yes_px], [(p, draw(qty)) for p in no_px]


step = st.one_of(
    st.tuples(
        st.just("order"),
        st.sampled_from(["bid", "ask"]),
        st.sampled_from(PRICES),
        st.integers(1, 2500),
        st.sampled_from(["good_till_canceled", "immediate_or_cancel", "fill_or_kill"]),
    ),
    st.tuples(
        st.just("trade"),
        st.sampled_from(PRICES),
        st.sampled_from([SIDE_YES, SIDE_NO]),
        st.integers(1, 2000),
    ),
    st.tuples(
        st.just("delta"),
        st.sampled_from([SIDE_YES, SIDE_NO]),
        st.sampled_from(PRICES),
        st.integers(-2000, 2000),
    ),
    st.tuples(st.just("cancel"), st.integers(0, 5)),
)


def apply_delta(books_: Any, slot: int, side: int, price: int, change: int) -> bool:
    """Apply a level change if it keeps the book valid (no negative level, not crossed)."""
    qty = int(books_.qty[slot, side, price])
    if qty + change < 0 or change == 0:
        return False
    other = 1 - side
    best_other = int(books_.best[slot, other])
    if qty + change > 0 and best_other >= 0 and price + best_other >= PRICE_MAX:
        return False
    rec = np.zeros(1, dtype=DELTA_DTYPE)
    rec["market"], rec["side"], rec["price"], rec["delta"] = slot, side, price, change
    assert books_.apply_deltas(rec) == 0
    return True


def check(ph: Any, c: Any, cash_dollars: int) -> None:
    fills = c.fills_array()
    ref = ph.RefAccount(cash_dollars).replay(fills)
    assert c.cash == ref.cash_money()
    assert c.cash >= 0
    assert c.get_balance()["balance"] >= 0
    slot = c.books.slots["T"]
    assert int(c.positions[slot]["position"]) == ref.position.get(slot, 0)
    assert int(c.positions[slot]["fees_paid"]) == ref.fees_money()
    orders = c.orders_array()
    for o in orders:
        mine = fills[fills["order_id"] == o["order_id"]]
        assert int(mine["count"].sum()) == int(o["filled"]) <= int(o["count"])
        assert int(o["filled"]) + int(o["remaining"]) == int(o["count"])


@given(
    book=books(),
    steps=st.lists(step, min_size=1, max_size=25),
    cash=st.integers(1, 60),
    queue=st.sampled_from(list(QueueModel)),
)
def test_account_equals_an_independent_recomputation(
    ph: Any, book: Any, steps: list[Any], cash: int, queue: QueueModel
) -> None:
    c, bs, _ = ph.make_client(MarketInfo("T"), cash_dollars=cash, queue_model=queue)
    slot = bs.slots["T"]
    ph.snapshot(bs, slot, *book)
    n = 0
    for s in steps:
        if s[0] == "order":
            _, side, price, count, tif = s
            n += 1
            try:
                c.create_order_now(ph.order(coid=f"o{n}", side=side, count=ph_count(count),
                                            price=f"0.{price:03d}0", tif=tif))  # fmt: skip
            except KalshiApiError as exc:
                assert exc.code in ("insufficient_balance", "invalid_order"), exc
        elif s[0] == "trade":
            _, yes_price, taker, count = s
            c.on_trades(ph.trade(slot, yes_price, taker, count))
        elif s[0] == "delta":
            _, side, price, change = s
            if apply_delta(bs, slot, side, price, change):
                c.on_book_update(np.array([slot]))
        else:
            resting = c.get_orders(status="resting")["orders"]
            if resting:
                c.cancel_order_now(resting[s[1] % len(resting)]["order_id"])
        check(ph, c, cash)
    fills = c.fills_array()
    event(f"taker fills: {bool(fills['is_taker'].sum())}")
    event(f"maker fills: {bool((fills['is_taker'] == 0).sum())}")
    event(f"rounding rebates: {bool(fills['rebate'].sum())}")


def ph_count(n: int) -> str:
    return f"{n // 100}.{n % 100:02d}"


@given(book=books(), steps=st.lists(step, min_size=1, max_size=15), yes=st.booleans())
def test_settlement_and_rebuild_match_the_reference(
    ph: Any, book: Any, steps: list[Any], yes: bool
) -> None:
    c, bs, _ = ph.make_client(MarketInfo("T"), cash_dollars=40)
    slot = bs.slots["T"]
    ph.snapshot(bs, slot, *book)
    for k, s in enumerate(steps):
        if s[0] == "order":
            _, side, price, count, tif = s
            with contextlib.suppress(KalshiApiError):
                c.create_order_now(ph.order(coid=f"o{k}", side=side, count=ph_count(count),
                                            price=f"0.{price:03d}0", tif=tif))  # fmt: skip
        elif s[0] == "trade":
            c.on_trades(ph.trade(slot, s[1], s[2], s[3]))
    ref = ph.RefAccount(40).replay(c.fills_array())
    c.settle_market("T", "yes" if yes else "no")
    ref.settle(slot, yes)
    assert c.cash == ref.cash_money() >= 0
    assert all(o["status"] != ORD_RESTING for o in c.orders_array())
    # a rebuild from the same records (market ids as PostgreSQL returns them) matches
    saved = SavedAccount(
        account_id=0, name="x", start_cash=40 * 10_000, config={}, tickers={7: "T"},
        orders=[], created_ts={}, fills=_as_market(c.fills_array(), 7),
        settlements=_as_market(c.settlements_array(), 7), max_rec_id=0,
    )  # fmt: skip
    c2, _, _ = ph.make_client(MarketInfo("T"), cash_dollars=1)
    c2.restore(saved)
    assert c2.cash == c.cash
    assert c2.positions[slot].tolist() == c.positions[slot].tolist()


def _as_market(recs: np.ndarray, market_id: int) -> np.ndarray:
    out = recs.copy()
    out["market"] = market_id
    return out
