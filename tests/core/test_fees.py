"""core.fees: Kalshi's trade fee, balance rounding and per-order accumulator, exactly.

The reference below restates docs.kalshi.com getting_started/fee_rounding in Decimal dollars
(no project code): trade fee = rate * C * P * (1 - P) rounded up to $0.0001; the balance moves
by (revenue - trade fee) floored toward -inf to the member precision; the difference is the
rounding fee; a per-order accumulator of rounding fees pays a whole-cent rebate each time it
exceeds $0.01.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.dtypes import (
    MAKER_FEE_DEN,
    MAKER_FEE_NUM,
    MEMBER_CENT,
    MEMBER_DIRECT,
    TAKER_FEE_DEN,
    TAKER_FEE_NUM,
)
from core.fees import fee_bound, fee_schedule, fill_balance, max_debit, trade_fee

TAKER = Decimal("0.07")
MAKER = Decimal("0.0175")
CENT = Decimal("0.01")


def ref_trade_fee(contracts: Decimal, price: Decimal, rate: Decimal) -> Decimal:
    return (rate * contracts * price * (1 - price)).quantize(Decimal("0.0001"), ROUND_CEILING)


def ref_fill(
    revenue: Decimal, fee: Decimal, acc: Decimal, precision: Decimal
) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    bc = revenue - fee
    floored = bc.quantize(precision, ROUND_FLOOR)
    rounding = bc - floored
    acc += rounding
    rebate = Decimal(0)
    while acc > CENT:
        rebate += CENT
        acc -= CENT
    return floored + rebate, rounding, rebate, acc


def buy_fills(fills: list[tuple[int, int]], precision: int = MEMBER_CENT, maker: bool = False):
    """Engine: (cash changes, net fees) in money of one order's buy fills [(count, price)]."""
    num, den = (MAKER_FEE_NUM, MAKER_FEE_DEN) if maker else (TAKER_FEE_NUM, TAKER_FEE_DEN)
    acc = 0
    cash, fees = [], []
    for count, price in fills:
        tf = trade_fee(count, price, num, den)
        c, rounding, rebate, acc = fill_balance(-count * price, tf, precision, acc)
        cash.append(c)
        fees.append(tf * 10 + rounding - rebate * 10)  # notional units
    return cash, fees


def test_kalshi_example_subpenny_three_one_lot_fills() -> None:
    """Buy 3 contracts at $0.055 in three 1-lot fills (docs.kalshi.com fee_rounding).

    Each fill: trade fee 0.07 * 0.055 * 0.945 = $0.00363825 -> $0.0037; balance change
    -$0.0587 floored to -$0.06, rounding fee $0.0013; the accumulator reaches $0.0039 and
    pays no rebate.  Total -$0.18, the same as one 3-lot fill (fee $0.0110, -$0.176 -> -$0.18).
    """
    cash, fees = buy_fills([(100, 55)] * 3)
    assert cash == [-600, -600, -600]
    assert fees == [500, 500, 500]  # $0.0037 + $0.0013 each, notional units
    one, one_fee = buy_fills([(300, 55)])
    assert one == [-1800] and one_fee == [1500]  # $0.0110 + $0.0040
    assert trade_fee(100, 55, TAKER_FEE_NUM, TAKER_FEE_DEN) == 37
    assert trade_fee(300, 55, TAKER_FEE_NUM, TAKER_FEE_DEN) == 110


def test_accumulator_rebates_whole_cents_across_fills() -> None:
    """Ten 0.1-contract fills at $0.50: each pays $0.0018 fee and a $0.0082 rounding fee;
    the rebates bring the order's total to exactly what one 1-contract fill costs ($0.52)."""
    cash, _ = buy_fills([(10, 500)] * 10)
    assert cash[0] == -600  # -$0.05 - $0.0018 = -$0.0518 -> -$0.06
    assert cash[1] == -500  # acc $0.0164 > $0.01: one cent back
    one, _ = buy_fills([(100, 500)])
    assert one == [-5200]  # -$0.5175 -> -$0.52
    assert sum(cash) == one[0]


def test_direct_member_precision() -> None:
    cash, fees = buy_fills([(100, 55)] * 3, precision=MEMBER_DIRECT)
    assert cash == [-587, -587, -587]  # -$0.0587 is already whole $0.0001
    assert fees == [370, 370, 370]


def test_sell_revenue_rounds_down_and_no_fee_below_zero() -> None:
    tf = trade_fee(100, 400, TAKER_FEE_NUM, TAKER_FEE_DEN)  # $0.0168
    cash, rounding, rebate, acc = fill_balance(100 * 400, tf, MEMBER_CENT, 0)
    assert (cash, rounding, rebate, acc) == (3800, 320, 0, 320)  # $0.3832 -> $0.38
    assert max_debit(100 * 400, tf, MEMBER_CENT) == -3800
    assert trade_fee(0, 400, 7, 100) == 0 and trade_fee(100, 0, 7, 100) == 0
    assert trade_fee(100, 400, 0, 1) == 0  # a series without maker fees


def test_fee_schedule_and_bound() -> None:
    f = fee_schedule()
    assert int(f[0]["taker_num"]) == 7 and int(f[0]["precision"]) == MEMBER_CENT
    assert int(f[0]["maker_num"]) == 7 and int(fee_schedule(maker_fees=False)[0]["maker_num"]) == 0
    assert int(f[0]["taker_bound"]) == fee_bound(7, 100) == 28
    with pytest.raises(ValueError, match="precision"):
        fee_schedule(precision=3)
    with pytest.raises(ValueError, match="fee rates"):
        fee_schedule(taker=(7, 0))


@settings(max_examples=300, deadline=None)
@given(
    fills=st.lists(
        st.tuples(st.integers(1, 50_000), st.integers(1, 999), st.booleans(), st.booleans()),
        min_size=1,
        max_size=12,
    ),
    direct=st.booleans(),
)
def test_fills_match_the_decimal_reference(fills, direct) -> None:
    """Any order's fills (taker or maker, buy or sell, fractional counts, sub-penny prices)."""
    precision = MEMBER_DIRECT if direct else MEMBER_CENT
    ref_prec = Decimal("0.0001") if direct else CENT
    acc, ref_acc = 0, Decimal(0)
    total, ref_total = 0, Decimal(0)
    for count, price, buy, maker in fills:
        num, den, rate = (
            (MAKER_FEE_NUM, MAKER_FEE_DEN, MAKER)
            if maker
            else (TAKER_FEE_NUM, TAKER_FEE_DEN, TAKER)
        )
        c, p = Decimal(count) / 100, Decimal(price) / 1000
        tf = trade_fee(count, price, num, den)
        ref_tf = ref_trade_fee(c, p, rate)
        assert Decimal(tf) / 10_000 == ref_tf
        rev = -count * price if buy else count * price
        cash, rounding, rebate, acc = fill_balance(rev, tf, precision, acc)
        r_cash, r_round, r_rebate, ref_acc = ref_fill(
            (-c * p if buy else c * p), ref_tf, ref_acc, ref_prec
        )
        assert Decimal(cash) / 10_000 == r_cash
        assert Decimal(rounding) / 100_000 == r_round
        assert Decimal(rebate) / 10_000 == r_rebate
        assert Decimal(acc) / 100_000 == ref_acc
        total += cash
        ref_total += r_cash
    assert Decimal(total) / 10_000 == ref_total


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5_000), st.integers(1, 999)), min_size=1, max_size=20))
def test_order_net_fee_never_negative(fills) -> None:
    cash, fees = buy_fills(fills)
    assert sum(fees) >= 0
    paid = sum(c * p for c, p in fills)  # notional
    assert -sum(cash) * 10 == paid + sum(fees)
    assert np.cumsum(fees).min() >= 0
