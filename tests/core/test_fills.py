"""core.fills (wave-1 names): fees vs a Decimal reference, taker walks, netting ledger."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.dtypes import (
    FEE_ROUND_CENT,
    FEE_ROUND_CURRENT,
    MAKER_FEE_DEN,
    MAKER_FEE_NUM,
    NO_PRICE,
    ORDER_BUY,
    ORDER_SELL,
    POSITION_DTYPE,
    SIDE_NO,
    SIDE_YES,
    TAKER_FEE_DEN,
    TAKER_FEE_NUM,
)
from core.fills import (
    account_value,
    apply_fill,
    fee,
    maker_fee,
    order_fee,
    settle,
    taker_fee,
    taker_fill,
    taker_fill_fee,
    taker_fill_levels,
)

K = 5


def ref_fee(count: int, price: int, rate: Decimal, round_units: int) -> int:
    """Decimal reference: round_up(rate * C * P * (1 - P)) dollars to round_units money."""
    c = Decimal(count) / 100
    p = Decimal(price) / 1000
    money = rate * c * p * (1 - p) * 10_000
    return int((money / round_units).to_integral_value(rounding=ROUND_CEILING)) * round_units


def book(yes: list[tuple[int, int]], no: list[tuple[int, int]]):
    px = np.full((2, K), NO_PRICE, dtype=np.int16)
    qty = np.zeros((2, K), dtype=np.int64)
    for s, lv in ((SIDE_YES, yes), (SIDE_NO, no)):
        for i, (p, q) in enumerate(lv):
            px[s, i] = p
            qty[s, i] = q
    return px, qty


# ----------------------------------------------------------------- fees


def test_fee_doc_example():
    # 10 contracts @ $0.50 taker: $0.175 -> $0.18 classic, $0.1750 current.
    assert taker_fee(1000, 500, FEE_ROUND_CENT) == 1800
    assert taker_fee(1000, 500, FEE_ROUND_CURRENT) == 1750
    assert taker_fee(1000, 500) == 1750


def test_fee_edges():
    assert taker_fee(0, 500) == 0
    assert taker_fee(1000, 0) == 0
    assert taker_fee(1000, 1000) == 0
    # 1 hundredth of a contract at $0.01: 0.07 * 0.01 * 0.01 * 0.99 = $0.00000693 -> $0.0001
    assert taker_fee(1, 10) == 1
    assert taker_fee(1, 10, FEE_ROUND_CENT) == 100
    # maker 1.75%: 100 contracts @ $0.30 -> 0.0175*100*0.21 = $0.3675
    assert maker_fee(10_000, 300) == 3675
    assert maker_fee(10_000, 300, FEE_ROUND_CENT) == 3700


@given(
    count=st.integers(0, 10**9),
    price=st.integers(0, 1000),
    maker=st.booleans(),
    round_units=st.sampled_from([FEE_ROUND_CURRENT, FEE_ROUND_CENT, 10]),
)
def test_fee_matches_decimal_reference(count, price, maker, round_units):
    num, den = (MAKER_FEE_NUM, MAKER_FEE_DEN) if maker else (TAKER_FEE_NUM, TAKER_FEE_DEN)
    rate = Decimal(num) / Decimal(den)
    assert fee(count, price, num, den, round_units) == ref_fee(count, price, rate, round_units)


def test_order_fee_rounds_once_on_total():
    pxs = np.array([400, 410], dtype=np.int16)
    qs = np.array([100, 150], dtype=np.int64)
    exact = Decimal("0.07") * (
        Decimal(1) * Decimal("0.4") * Decimal("0.6")
        + Decimal("1.5") * Decimal("0.41") * Decimal("0.59")
    )
    want = int((exact * 10_000).to_integral_value(rounding=ROUND_CEILING))
    assert order_fee(pxs, qs, 2, TAKER_FEE_NUM, TAKER_FEE_DEN, FEE_ROUND_CURRENT) == want
    assert order_fee(pxs, qs, 0, TAKER_FEE_NUM, TAKER_FEE_DEN, FEE_ROUND_CURRENT) == 0


# ----------------------------------------------------------------- taker fills

# YES bids 450 x 1, 440 x 2; NO bids 520 x 1.5, 510 x 3 (YES asks 480, 490).
PX, QTY = book([(450, 100), (440, 200)], [(520, 150), (510, 300)])


@pytest.mark.parametrize(
    ("side", "action", "count", "limit", "filled", "notional"),
    [
        # buy YES walks NO bids: 150 @ 480, then 100 @ 490
        (SIDE_YES, ORDER_BUY, 250, 1000, 250, 150 * 480 + 100 * 490),
        # limit stops after the first level
        (SIDE_YES, ORDER_BUY, 250, 485, 150, 150 * 480),
        # more than the book: partial fill of everything
        (SIDE_YES, ORDER_BUY, 1000, 1000, 450, 150 * 480 + 300 * 490),
        # limit below the best ask: nothing
        (SIDE_YES, ORDER_BUY, 100, 479, 0, 0),
        # buy NO walks YES bids: NO prices 550, 560
        (SIDE_NO, ORDER_BUY, 200, 1000, 200, 100 * 550 + 100 * 560),
        # sell YES hits YES bids: 450 then 440, limit 440 allows both
        (SIDE_YES, ORDER_SELL, 250, 440, 250, 100 * 450 + 150 * 440),
        (SIDE_YES, ORDER_SELL, 250, 445, 100, 100 * 450),
        # sell NO hits NO bids
        (SIDE_NO, ORDER_SELL, 200, 0, 200, 150 * 520 + 50 * 510),
    ],
)
def test_taker_fill_walks(side, action, count, limit, filled, notional):
    assert taker_fill(PX, QTY, side, action, count, limit) == (filled, notional)
    out_px = np.zeros(K, dtype=np.int16)
    out_q = np.zeros(K, dtype=np.int64)
    f, n_not, n = taker_fill_levels(PX, QTY, side, action, count, limit, out_px, out_q)
    assert (f, n_not) == (filled, notional)
    assert int(out_q[:n].sum()) == filled
    assert int((out_q[:n] * out_px[:n].astype(np.int64)).sum()) == notional
    f3, n3, fee3 = taker_fill_fee(PX, QTY, side, action, count, limit)
    assert (f3, n3) == (filled, notional)
    assert fee3 == order_fee(out_px, out_q, n, TAKER_FEE_NUM, TAKER_FEE_DEN, FEE_ROUND_CURRENT)


def test_taker_fill_empty_side():
    px, qty = book([(450, 100)], [])
    assert taker_fill(px, qty, SIDE_YES, ORDER_BUY, 100, 1000) == (0, 0)
    assert taker_fill(px, qty, SIDE_NO, ORDER_SELL, 100, 0) == (0, 0)
    assert taker_fill(px, qty, SIDE_NO, ORDER_BUY, 100, 1000) == (100, 100 * 550)
    assert taker_fill_fee(px, qty, SIDE_YES, ORDER_BUY, 100, 1000) == (0, 0, 0)


def test_taker_fill_does_not_consume_levels():
    before = QTY.copy()
    taker_fill(PX, QTY, SIDE_YES, ORDER_BUY, 1000, 1000)
    assert np.array_equal(QTY, before)


# ----------------------------------------------------------------- positions


def new_pos(cash: int = 1_000_000) -> np.ndarray:
    pos = np.zeros(1, dtype=POSITION_DTYPE)
    pos["cash"] = cash
    return pos


def row(pos: np.ndarray) -> dict[str, int]:
    return {k: int(pos[0][k]) for k in POSITION_DTYPE.names or ()}


def test_netting_ledger_buy_yes_buy_no_settle():
    pos = new_pos()
    # 1) buy 10 YES @ $0.40: pays $4.00, taker fee 0.07*10*0.24 = $0.168
    f1 = taker_fee(1000, 400)
    assert f1 == 1680
    apply_fill(pos, SIDE_YES, ORDER_BUY, 1000, 1000 * 400, f1)
    assert row(pos) == {
        "position": 1000,
        "cost_basis": 40_000,
        "cash": 1_000_000 - 40_000 - 1680,
        "realized_pnl": -1680,
        "fees_paid": 1680,
        "n_trades": 1,
        "volume": 1000,
        "settlement_pnl": 0,
    }
    assert account_value(pos, 450.0) == 958_320 + 45_000

    # 2) buy 15 NO @ $0.55 ($8.25): 10 close the YES as pairs ($10 redeemed), 5 NO remain.
    f2 = taker_fee(1500, 550)
    assert f2 == 2599  # 0.07 * 15 * 0.2475 = $0.259875 -> $0.2599
    apply_fill(pos, SIDE_NO, ORDER_BUY, 1500, 1500 * 550, f2)
    # closing 10 NO bought for $5.50 against YES that cost $4.00: +$0.50 realised
    assert row(pos) == {
        "position": -500,
        "cost_basis": 27_500,
        "cash": 958_320 - 82_500 + 100_000 - 2599,
        "realized_pnl": -1680 + 5_000 - 2599,
        "fees_paid": 1680 + 2599,
        "n_trades": 2,
        "volume": 2500,
        "settlement_pnl": 0,
    }
    # 5 NO marked at 1000 - 450 = 550
    assert account_value(pos, 450.0) == 973_221 + 27_500

    # 3) settles NO: 5 NO pay $5
    assert settle(pos, False) == 50_000
    r = row(pos)
    assert r["position"] == 0 and r["cost_basis"] == 0
    assert r["cash"] == 1_023_221
    assert r["realized_pnl"] == r["cash"] - 1_000_000  # all P&L realised, net of fees


def test_sell_reduces_and_flips():
    pos = new_pos(0)
    apply_fill(pos, SIDE_YES, ORDER_BUY, 300, 300 * 333, 0)  # 3 YES, 99_900/10 -> 9990
    assert row(pos)["cost_basis"] == 9_990
    # sell 1 YES @ $0.50: +$0.50; removes a third of the basis (3330)
    apply_fill(pos, SIDE_YES, ORDER_SELL, 100, 100 * 500, 0)
    r = row(pos)
    assert (r["position"], r["cost_basis"], r["cash"], r["realized_pnl"]) == (
        200,
        6_660,
        -9_990 + 5_000,
        5_000 - 3_330,
    )
    # sell 5 YES @ $0.30 while holding 2: closes 2 (+$0.60), then 3 NO opened at $0.70
    apply_fill(pos, SIDE_YES, ORDER_SELL, 500, 500 * 300, 0)
    r = row(pos)
    assert r["position"] == -300
    assert r["cost_basis"] == 21_000
    assert r["cash"] == -9_990 + 5_000 + 15_000 - 30_000  # +$1.50 sold, -$3 collateral
    assert r["realized_pnl"] == 1_670 + (6_000 - 6_660)
    # settle YES: the NO lose
    assert settle(pos, True) == 0
    assert row(pos)["realized_pnl"] == row(pos)["cash"]


def test_rounding_against_trader():
    pos = new_pos(0)
    apply_fill(pos, SIDE_YES, ORDER_BUY, 1, 333, 0)  # 33.3 money -> pays 34
    assert row(pos)["cash"] == -34
    apply_fill(pos, SIDE_YES, ORDER_SELL, 1, 337, 0)  # 33.7 money -> receives 33
    assert row(pos)["cash"] == -1
    assert row(pos)["position"] == 0 and row(pos)["realized_pnl"] == -1


def test_sell_no_equals_buy_yes():
    a = new_pos()
    b = new_pos()
    apply_fill(a, SIDE_NO, ORDER_SELL, 700, 700 * 620, 11)
    apply_fill(b, SIDE_YES, ORDER_BUY, 700, 700 * 380, 11)
    assert row(a) == row(b)


@given(
    st.lists(
        st.tuples(
            st.sampled_from([SIDE_YES, SIDE_NO]),
            st.sampled_from([ORDER_BUY, ORDER_SELL]),
            st.integers(1, 5_000),
            st.integers(1, 999),
        ),
        min_size=1,
        max_size=30,
    ),
    st.booleans(),
)
def test_settled_pnl_equals_cash_change(fills, result_yes):
    pos = new_pos(0)
    for side, action, count, price in fills:
        apply_fill(pos, side, action, count, count * price, taker_fee(count, price))
    settle(pos, result_yes)
    r = row(pos)
    assert r["position"] == 0
    # after settlement everything is realised: the ledger must balance to the cent unit
    assert r["realized_pnl"] == r["cash"]


def test_kernels_accept_records_and_write_through():
    many = np.zeros(3, dtype=POSITION_DTYPE)
    apply_fill(many[1], SIDE_YES, ORDER_BUY, 100, 100 * 400, 7)  # a record
    apply_fill(many[2:3], SIDE_YES, ORDER_BUY, 100, 100 * 400, 7)  # a length-1 slice
    assert many[0]["position"] == 0
    assert row(many[1:2]) == row(many[2:3])
    assert row(many[1:2])["cash"] == -4_007
    assert account_value(many[1], 500.0) == -4_007 + 5_000
    assert settle(many[1], True) == 10_000
    assert int(many[1]["position"]) == 0 and int(many[2]["position"]) == 100
