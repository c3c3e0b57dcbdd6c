"""Fills and fees: njit kernels vs plain Python, side by side.

Run:
    pytest bench/bench_fills.py --benchmark-min-rounds=3 --benchmark-max-time=0.2
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

import numpy as np
import pytest

from core.dtypes import (
    FEE_ROUND_CURRENT,
    NO_PRICE,
    ORDER_BUY,
    PRICE_MAX,
    SIDE_NO,
    SIDE_YES,
    TAKER_FEE_DEN,
    TAKER_FEE_NUM,
)
from core.fills import order_fee, taker_fee, taker_fill, taker_fill_fee

# ----------------------------------------------------------------- baselines


def py_taker_fill(px, qty, outcome_side, action, count, limit_price) -> tuple[int, int]:
    """Plain-Python walk over the same arrays (the obvious implementation)."""
    buy = action == ORDER_BUY
    ladder = (SIDE_NO if outcome_side == SIDE_YES else SIDE_YES) if buy else outcome_side
    left = count
    notional = 0
    for lp, lq in zip(px[ladder].tolist(), qty[ladder].tolist(), strict=True):
        if left <= 0 or lp == NO_PRICE or lq <= 0:
            break
        price = PRICE_MAX - lp if buy else lp
        if (buy and price > limit_price) or (not buy and price < limit_price):
            break
        take = min(left, lq)
        notional += take * price
        left -= take
    return count - left, notional


def py_fee(count: int, price: int, round_units: int = FEE_ROUND_CURRENT) -> int:
    """Plain-Python integer fee."""
    raw = TAKER_FEE_NUM * count * price * (PRICE_MAX - price)
    return -(-raw // (TAKER_FEE_DEN * 10_000 * round_units)) * round_units


def decimal_fee(count: int, price: int) -> int:
    """Decimal reference fee (how one writes it straight from the fee schedule)."""
    c = Decimal(count) / 100
    p = Decimal(price) / 1000
    return int((Decimal("0.07") * c * p * (1 - p) * 10_000).to_integral_value(ROUND_CEILING))


def py_order_fee(pxs: list[int], qs: list[int]) -> int:
    raw = sum(q * p * (PRICE_MAX - p) for p, q in zip(pxs, qs, strict=True))
    return -(-TAKER_FEE_NUM * raw // (TAKER_FEE_DEN * 10_000))


# ----------------------------------------------------------------- taker fill


def ladder(k: int) -> tuple[np.ndarray, np.ndarray]:
    px = np.full((2, k), NO_PRICE, dtype=np.int16)
    qty = np.zeros((2, k), dtype=np.int64)
    px[SIDE_YES] = 480 - np.arange(k)
    px[SIDE_NO] = 500 - np.arange(k)
    qty[:] = 1_000
    return px, qty


@pytest.mark.parametrize("k", [1, 5, 10, 50])
@pytest.mark.parametrize("impl", ["njit", "njit_with_fee", "python"])
def test_taker_fill(benchmark, k, impl):
    px, qty = ladder(k)
    count = 1_000 * k  # consumes all k levels
    want = py_taker_fill(px, qty, SIDE_YES, ORDER_BUY, count, PRICE_MAX)
    assert taker_fill(px, qty, SIDE_YES, ORDER_BUY, count, PRICE_MAX) == want
    assert taker_fill_fee(px, qty, SIDE_YES, ORDER_BUY, count, PRICE_MAX)[:2] == want
    benchmark.group = f"taker fill walking {k} levels"
    fn = {"njit": taker_fill, "njit_with_fee": taker_fill_fee, "python": py_taker_fill}[impl]
    benchmark(fn, px, qty, SIDE_YES, ORDER_BUY, count, PRICE_MAX)


# ----------------------------------------------------------------- fees


@pytest.mark.parametrize("impl", ["njit", "python_int", "python_decimal"])
def test_single_fee(benchmark, impl):
    assert taker_fee(1_234, 417) == py_fee(1_234, 417) == decimal_fee(1_234, 417)
    benchmark.group = "one taker fee"
    fn = {"njit": taker_fee, "python_int": py_fee, "python_decimal": decimal_fee}[impl]
    benchmark(fn, 1_234, 417)


@pytest.mark.parametrize("n", [10, 1_000, 100_000])
@pytest.mark.parametrize("impl", ["njit", "python"])
def test_order_fee(benchmark, n, impl):
    rng = np.random.default_rng(3)
    pxs = rng.integers(1, 1000, n).astype(np.int16)
    qs = rng.integers(1, 10_000, n).astype(np.int64)
    args = (TAKER_FEE_NUM, TAKER_FEE_DEN, FEE_ROUND_CURRENT)
    assert order_fee(pxs, qs, n, *args) == py_order_fee(pxs.tolist(), qs.tolist())
    benchmark.group = f"order fee over {n} fills"
    if impl == "njit":
        benchmark(order_fee, pxs, qs, n, *args)
    else:
        # the Python way starts from the same NumPy arrays
        benchmark(lambda: py_order_fee(pxs.tolist(), qs.tolist()))
