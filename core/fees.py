"""Kalshi fees exactly as charged now (kalshi-protocol.md section 4, docs.kalshi.com fee_rounding).

Every fill has three fee components; net fee = trade fee + rounding fee - rebate:

1. trade fee = ``rate * C * P * (1 - P)`` dollars rounded **up** to $0.0001 (``trade_fee``);
   taker rate 0.07, maker rate 0.0175 where the series charges makers (0 otherwise).
2. balance change = revenue - trade fee, revenue signed (negative for a buyer); the balance
   moves by the balance change floored toward -inf to the member's precision ($0.01
   non-direct = MEMBER_CENT, $0.0001 direct = MEMBER_DIRECT); rounding fee = the difference.
3. a per-order accumulator sums the rounding fees of all that order's fills (taker and later
   maker fills alike); each time it exceeds $0.01 a whole-cent rebate is paid and the
   accumulator drops by $0.01 (``fill_balance``).

Units: money = $0.0001, notional = count unit x tick = $0.00001 (revenue and rounding fees
can be finer than money with fractional contracts at sub-penny prices).  Integer math only;
exact for count * 250_000 * 7 < 2**63 (count up to ~5e12 count units).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from core.dtypes import (
    FEE_DIVISOR,
    FEE_DTYPE,
    FEE_ROUND_CURRENT,
    MAKER_FEE_DEN,
    MAKER_FEE_NUM,
    MEMBER_CENT,
    NOTIONAL_DIVISOR,
    PRICE_MAX,
    REBATE_NOTIONAL,
    TAKER_FEE_DEN,
    TAKER_FEE_NUM,
)


@njit(cache=True, inline="always")
def ceil_div(a: int, b: int) -> int:
    """ceil(a / b) for integers, b > 0."""
    return -((-a) // b)


@njit(cache=True, inline="always")
def fee_from_raw(raw: int, num: int, den: int, round_units: int) -> int:
    """Fee of ``raw`` = sum of count * p * (1000 - p), rounded up to ``round_units`` money."""
    if raw <= 0 or num <= 0:
        return 0
    units = ceil_div(num * raw, den * FEE_DIVISOR * round_units)
    return units * round_units


@njit(cache=True, inline="always")
def trade_fee(count: int, price: int, num: int, den: int) -> int:
    """Kalshi trade fee of one fill, rounded up to $0.0001.

    Args:
        count: count units (hundredths of a contract), >= 0.
        price: ticks on either scale (P(1-P) is symmetric), 0..1000.
        num, den: fee rate as num/den (TAKER_FEE_NUM/DEN = 7/100, MAKER 7/400; num 0 = free).

    Returns:
        fee in money units ($0.0001).
    """
    return fee_from_raw(count * price * (PRICE_MAX - price), num, den, FEE_ROUND_CURRENT)


@njit(cache=True)
def fee(count: int, price: int, num: int, den: int, round_units: int) -> int:
    """Trade fee rounded up to a multiple of ``round_units`` money (FEE_ROUND_CENT: classic rule).

    Returns:
        fee in money units.
    """
    return fee_from_raw(count * price * (PRICE_MAX - price), num, den, round_units)


@njit(cache=True)
def taker_fee(count: int, price: int, round_units: int = FEE_ROUND_CURRENT) -> int:
    """Taker fee (7%) in money; see ``fee``."""
    return fee(count, price, TAKER_FEE_NUM, TAKER_FEE_DEN, round_units)


@njit(cache=True)
def maker_fee(count: int, price: int, round_units: int = FEE_ROUND_CURRENT) -> int:
    """Maker fee (1.75%) in money; see ``fee``."""
    return fee(count, price, MAKER_FEE_NUM, MAKER_FEE_DEN, round_units)


@njit(cache=True)
def order_fee(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    fill_px: np.ndarray, fill_qty: np.ndarray, n: int, num: int, den: int, round_units: int
) -> int:
    """Fee of one order filled at several prices, rounded once on the exact total (classic rule).

    Args:
        fill_px: prices of the fills (ticks), fill_qty: counts; first ``n`` are used.
        num, den, round_units: as ``fee``.

    Returns:
        fee in money units.
    """
    raw = 0
    for i in range(n):
        p = int(fill_px[i])
        raw += int(fill_qty[i]) * p * (PRICE_MAX - p)
    return fee_from_raw(raw, num, den, round_units)


@njit(cache=True, inline="always")
def fill_balance(
    revenue: int, fee_money: int, precision: int, acc: int
) -> tuple[int, int, int, int]:
    """Kalshi's balance change of one fill: floor to the member precision, accumulator, rebate.

    Args:
        revenue: notional units (1e-5 $), signed: + received, - paid (a buyer's is negative).
        fee_money: the fill's trade fee (``trade_fee``), money.
        precision: member balance precision, money (MEMBER_CENT = 100, MEMBER_DIRECT = 1).
        acc: the order's rounding accumulator before this fill, notional units.

    Returns:
        (cash change in money, rounding fee in notional units, rebate in money, new acc).
        The cash change is floor(revenue - fee) to the precision, plus the rebate.
    """
    bc = revenue - fee_money * NOTIONAL_DIVISOR
    step = precision * NOTIONAL_DIVISOR
    floored = (bc // step) * step  # Python/Numba // floors toward -inf
    rounding = bc - floored
    acc += rounding
    rebate = 0
    while acc > REBATE_NOTIONAL:
        rebate += REBATE_NOTIONAL
        acc -= REBATE_NOTIONAL
    return (floored + rebate) // NOTIONAL_DIVISOR, rounding, rebate // NOTIONAL_DIVISOR, acc


@njit(cache=True, inline="always")
def fee_bound(num: int, den: int) -> int:
    """An upper bound of a trade fee per count unit in notional units, for fast checks.

    rate * P(1-P) <= rate / 4 $/contract = num * 250 / den notional per count unit; the
    fill's round-up to money adds < 10 notional per fill (>= 1 count unit per fill).
    """
    return -((-num * 250) // den) + NOTIONAL_DIVISOR


@njit(cache=True, inline="always")
def max_debit(revenue: int, fee_money: int, precision: int) -> int:
    """Worst-case cash decrease of a fill (no rebate), money; <= 0 when the fill pays out.

    Args:
        revenue, fee_money, precision: as ``fill_balance``.
    """
    bc = revenue - fee_money * NOTIONAL_DIVISOR
    step = precision * NOTIONAL_DIVISOR
    return -((bc // step) * step) // NOTIONAL_DIVISOR


# =========================================================================== facade


def fee_schedule(
    *,
    maker_fees: bool = True,
    precision: int = MEMBER_CENT,
    taker: tuple[int, int] = (TAKER_FEE_NUM, TAKER_FEE_DEN),
    maker: tuple[int, int] = (MAKER_FEE_NUM, MAKER_FEE_DEN),
) -> np.ndarray:
    """A FEE_DTYPE [1] record of one market's fee schedule (validated).

    Args:
        maker_fees: the series charges makers (``quadratic_with_maker_fees``); False: 0.
        precision: member balance precision in money (MEMBER_CENT default, MEMBER_DIRECT).
        taker, maker: rates as (num, den).

    Raises:
        ValueError: a non-positive denominator, a negative rate or precision outside 1..100.
    """
    if taker[1] <= 0 or maker[1] <= 0 or taker[0] < 0 or maker[0] < 0:
        raise ValueError(f"fee rates must be num >= 0 / den > 0, got {taker}, {maker}")
    if precision not in (1, 10, 100):
        raise ValueError(f"precision must be 1 (direct), 10 or 100 (cent) money, got {precision}")
    out = np.zeros(1, dtype=FEE_DTYPE)
    out[0]["taker_num"], out[0]["taker_den"] = taker
    out[0]["maker_num"], out[0]["maker_den"] = maker if maker_fees else (0, 1)
    out[0]["precision"] = precision
    out[0]["taker_bound"] = fee_bound(*taker)
    out[0]["maker_bound"] = fee_bound(int(out[0]["maker_num"]), int(out[0]["maker_den"]))
    return out
