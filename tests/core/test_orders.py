"""core.orders + core.latency: action -> order, reason codes of client orders, latency draws."""

from __future__ import annotations

import numpy as np
import pytest

from core.dtypes import (
    ACT_BUY_NO,
    ACT_BUY_YES,
    ACT_HOLD,
    ACT_SELL_NO,
    ACT_SELL_YES,
    FILL_DTYPE,
    NO_PRICE,
    ORD_PENDING,
    ORDER_BUY,
    ORDER_DTYPE,
    ORDER_SELL,
    POSITION_DTYPE,
    REJ_BAD_ACTION,
    REJ_BAD_COUNT,
    REJ_BAD_PRICE,
    REJ_INSUFFICIENT_BALANCE,
    REJ_MARKET_CLOSED,
    REJ_NO_LIQUIDITY,
    REJ_NONE,
    REJ_NOTHING_HELD,
    REJ_POSITION_LIMIT,
    REJ_POST_ONLY_CROSS,
    REJ_REDUCE_ONLY,
    REJECT_NAMES,
    SIDE_NO,
    SIDE_YES,
)
from core.fees import fee_schedule
from core.latency import latency_model, latency_sample, order_send
from core.liquidity import new_liquidity
from core.matching import taker_match
from core.orders import action_check, action_to_order, collateral_need, order_check

K = 5
FEES = fee_schedule()


def book() -> tuple[np.ndarray, np.ndarray]:
    """YES bid 40c x 5, NO bid 55c x 3 (YES ask 45c), NO bid 54c x 10."""
    px = np.full((2, K), NO_PRICE, dtype=np.int16)
    qty = np.zeros((2, K), dtype=np.int64)
    px[SIDE_YES, 0], qty[SIDE_YES, 0] = 400, 500
    px[SIDE_NO, :2], qty[SIDE_NO, :2] = (550, 540), (300, 1000)
    return px, qty


def test_action_to_order_rules() -> None:
    px, qty = book()
    liq = new_liquidity()
    assert action_to_order(ACT_HOLD, 0, 100, 1000, 0, px, qty, liq)[3] == 0
    assert action_to_order(ACT_BUY_YES, 0, 100, 1000, 20, px, qty, liq) == (
        SIDE_YES, ORDER_BUY, 470, 100, REJ_NONE,
    )  # fmt: skip
    assert action_to_order(ACT_BUY_NO, 0, 100, 1000, 0, px, qty, liq)[2] == 600
    assert action_to_order(ACT_SELL_YES, 0, 100, 1000, 0, px, qty, liq)[4] == REJ_NOTHING_HELD
    assert action_to_order(ACT_SELL_YES, 50, 100, 1000, 10, px, qty, liq) == (
        SIDE_YES, ORDER_SELL, 390, 50, REJ_NONE,
    )  # fmt: skip  # reduce-only: capped at what is held
    assert action_to_order(ACT_BUY_YES, 1000, 100, 1000, 0, px, qty, liq)[4] == REJ_POSITION_LIMIT
    assert action_to_order(ACT_SELL_NO, -100, 100, 1000, 0, px, qty, liq)[2] == 550
    assert action_to_order(9, 0, 100, 1000, 0, px, qty, liq)[4] == REJ_BAD_ACTION
    empty = np.full((2, K), NO_PRICE, dtype=np.int16)
    assert action_to_order(ACT_BUY_YES, 0, 100, 1000, 0, empty, qty, liq)[4] == REJ_NO_LIQUIDITY


def test_the_touch_moves_once_our_orders_took_it() -> None:
    px, qty = book()
    liq = new_liquidity()
    o = np.zeros(1, dtype=ORDER_DTYPE)
    o["side"], o["action"], o["price"], o["count"], o["remaining"] = SIDE_YES, 0, 450, 300, 300
    acct = np.zeros(1, dtype=POSITION_DTYPE)
    acct["cash"] = 10**9
    taker_match(o, acct, px, qty, liq, FEES, 1, 0, np.zeros(K, dtype=FILL_DTYPE))
    # the 55c NO bid is taken: the YES ask is now 46c
    assert action_to_order(ACT_BUY_YES, 300, 100, 1000, 0, px, qty, liq)[2] == 460


def test_order_check_reason_codes() -> None:
    px, qty = book()
    liq = new_liquidity()

    def check(side=SIDE_YES, action=ORDER_BUY, price=400, count=100, *, tick=10, lot=100,
              post=False, reduce=False, open_=True, position=0, cash=10**6):  # fmt: skip
        return order_check(
            side, action, price, count, tick, lot, post, reduce, open_, position, cash,
            px, qty, liq, FEES,
        )  # fmt: skip

    assert check() == REJ_NONE
    assert check(open_=False) == REJ_MARKET_CLOSED
    assert check(price=405) == REJ_BAD_PRICE  # off the 1-cent grid
    assert check(price=405, tick=1) == REJ_NONE  # a deci-cent market
    assert check(price=0) == REJ_BAD_PRICE and check(price=1000) == REJ_BAD_PRICE
    assert check(count=150) == REJ_BAD_COUNT  # fractional on a whole-contract market
    assert check(count=150, lot=1) == REJ_NONE
    assert check(count=0) == REJ_BAD_COUNT
    assert check(reduce=True) == REJ_REDUCE_ONLY  # nothing held to reduce
    assert check(side=SIDE_NO, reduce=True, position=100) == REJ_NONE  # closes YES
    assert check(post=True, price=450) == REJ_POST_ONLY_CROSS  # YES ask is 45c
    assert check(post=True, price=440) == REJ_NONE
    assert check(action=ORDER_SELL, post=True, price=400, position=100) == REJ_POST_ONLY_CROSS
    assert check(cash=4_000) == REJ_INSUFFICIENT_BALANCE  # $0.40 + fee > $0.40
    need = collateral_need(0, SIDE_YES, ORDER_BUY, 400, 100, FEES)
    assert need == 4_200  # $0.40 + $0.0168 -> floored to -$0.42
    assert check(cash=need) == REJ_NONE
    assert collateral_need(100, SIDE_YES, ORDER_SELL, 400, 100, FEES) < 0  # a sale pays
    assert set(REJECT_NAMES) >= {REJ_NONE, REJ_INSUFFICIENT_BALANCE, REJ_POST_ONLY_CROSS}


def test_action_check_collateral() -> None:
    px, qty = book()
    liq = new_liquidity()
    assert action_check(ACT_BUY_YES, 0, 10**6, 100, 1000, px, qty, liq, FEES) == REJ_NONE
    assert action_check(ACT_BUY_YES, 0, 100, 100, 1000, px, qty, liq, FEES) == (
        REJ_INSUFFICIENT_BALANCE
    )
    # closing a held NO position pays out: no cash needed
    assert action_check(ACT_BUY_YES, -100, 0, 100, 1000, px, qty, liq, FEES) == REJ_NONE


def test_latency_model() -> None:
    const = latency_model((40, 40), (20, 20))
    assert latency_sample(const, 0.3, 0.9) == (40, 20)
    ranged = latency_model((10, 100), (10, 100))
    draws = [latency_sample(ranged, u, u) for u in np.linspace(0, 0.999999, 1000)]
    assert min(d[0] for d in draws) == 10 and max(d[0] for d in draws) == 100
    o = np.zeros(1, dtype=ORDER_DTYPE)
    order_send(o, 1_000, 40, 20)
    assert (int(o[0]["active_ts"]), int(o[0]["ack_ts"]), int(o[0]["status"])) == (
        1_040, 1_060, ORD_PENDING,
    )  # fmt: skip
    with pytest.raises(ValueError, match="entry latency"):
        latency_model((50, 10))
