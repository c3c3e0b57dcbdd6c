"""Matching against a recorded (or live) book we are not part of: taker walks and maker fills.

Book view: top-K bids per side as ``core.book.book_top_k`` gives them: ``px`` int16 [2, K]
best first on each side's own scale (NO_PRICE padded), ``qty`` int64 [2, K].  Buying YES
consumes NO bids at YES price ``1000 - no_bid``; buying NO consumes YES bids; selling YES hits
YES bids; selling NO hits NO bids.

Liquidity consumption: ``core.liquidity`` (what our orders take stays taken).

Taker orders (``taker_match``): walk the opposite ladder up to the limit, partial fills, one
fill per level (the recorded book shows levels, not the orders in them), each fill charged
the taker trade fee and Kalshi's balance rounding with the order's accumulator
(core.fees), booked with netting (core.account), capped by collateral: a fill never makes
cash negative (the last level is cut to what cash covers, rebates not counted).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from core.account import book_fill, closing_count, fill_revenue
from core.dtypes import (
    NO_PRICE,
    NOTIONAL_DIVISOR,
    ORD_EXECUTED,
    ORD_RESTING,
    ORDER_BUY,
    PRICE_MAX,
    TAKER_FEE_DEN,
    TAKER_FEE_NUM,
)
from core.fees import fee_from_raw, fill_balance, max_debit, trade_fee
from core.liquidity import (
    best_available,
    consume,
    consumed_at,
    liquidity_clear,
    liquidity_on_level,
    liquidity_refresh,
)
from core.records import first_record, other_side

# =========================================================================== ladders


@njit(cache=True, inline="always")
def take_ladder(outcome_side: int, action: int) -> int:
    """The ladder a taker order consumes: buys take the other side's bids, sells their own."""
    return other_side(outcome_side) if action == ORDER_BUY else outcome_side


@njit(cache=True, inline="always")
def ladder_to_order_price(outcome_side: int, action: int, ladder_price: int) -> int:
    """A taken level's price on the outcome side's scale."""
    return PRICE_MAX - ladder_price if action == ORDER_BUY else ladder_price


# =========================================================================== taker orders


@njit(cache=True, inline="always")
def affordable_count(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    cash: int,
    position: int,
    outcome_side: int,
    action: int,
    price: int,
    count: int,
    fee_num: int,
    fee_den: int,
    fee_bound_notional: int,
    precision: int,
    lot: int,
) -> int:
    """Largest multiple of ``lot`` <= ``count`` whose fill at ``price`` cash covers.

    A fill is covered when its worst-case balance change (trade fee, floor to the member
    precision, no rebate) leaves cash >= 0.  Closing contracts pays out, so those are free.
    ``fee_bound_notional`` is ``core.fees.fee_bound`` of the rate (FEE_DTYPE carries it).
    """
    # fast bound: the price plus the largest possible fee and rounding per count unit
    unit = price if action == ORDER_BUY else PRICE_MAX - price  # a sell may open the other side
    bound = count * (unit + fee_bound_notional) + 2 * precision * NOTIONAL_DIVISOR
    if cash * NOTIONAL_DIVISOR >= bound:
        return count
    closed = closing_count(position, outcome_side, action, count)
    rev = fill_revenue(outcome_side, action, count, count * price, closed)
    if max_debit(rev, trade_fee(count, price, fee_num, fee_den), precision) <= cash:
        return count
    lo = 0
    hi = count // lot
    while hi - lo > 1:
        mid = (lo + hi) // 2
        c = mid * lot
        closed = closing_count(position, outcome_side, action, c)
        rev = fill_revenue(outcome_side, action, c, c * price, closed)
        if max_debit(rev, trade_fee(c, price, fee_num, fee_den), precision) <= cash:
            lo = mid
        else:
            hi = mid
    return lo * lot


@njit(cache=True, inline="always")
def record_fill(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    order: np.ndarray | np.void,
    pos: np.ndarray | np.void,
    count: int,
    price: int,
    fees: np.ndarray,
    is_taker: bool,
    ts: int,
    fill_out: np.ndarray | np.void,
) -> int:
    """Charge and book one fill of ``order`` (taker or maker) at ``price`` (order's scale).

    Trade fee (taker or maker rate of ``fees``), Kalshi's balance rounding with the order's
    accumulator, netting into ``pos``; the order's filled/remaining/notional/fees/status and
    the FILL_DTYPE record ``fill_out`` are written.

    Returns:
        the fill's cash change, money.
    """
    o = first_record(order)
    f = fees[0]
    side = int(o["side"])
    action = int(o["action"])
    num = f["taker_num"] if is_taker else f["maker_num"]
    den = f["taker_den"] if is_taker else f["maker_den"]
    tf = trade_fee(count, price, num, den)
    p = first_record(pos)
    closed = closing_count(p["position"], side, action, count)
    rev = fill_revenue(side, action, count, count * price, closed)
    cash, rounding, rebate, acc = fill_balance(rev, tf, f["precision"], o["rounding_acc"])
    net = book_fill(pos, side, action, count, count * price, cash)
    o["rounding_acc"] = acc
    o["filled"] += count
    o["remaining"] -= count
    o["notional"] += count * price
    o["fees"] += net
    if is_taker:
        o["taker_fees"] += tf
    else:
        o["maker_fees"] += tf
    if o["remaining"] <= 0:
        o["status"] = ORD_EXECUTED
    r = first_record(fill_out)
    r["order_id"] = o["order_id"]
    r["ts"] = ts
    r["count"] = count
    r["fee"] = net
    r["trade_fee"] = tf
    r["rounding_fee"] = rounding
    r["rebate"] = rebate
    r["cash"] = cash
    r["market"] = o["market"]
    r["price"] = price
    r["side"] = side
    r["action"] = action
    r["is_taker"] = is_taker
    return cash


@njit(cache=True, inline="always")
def taker_match(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    order: np.ndarray | np.void,
    pos: np.ndarray | np.void,
    px: np.ndarray,
    qty: np.ndarray,
    liq: np.ndarray,
    fees: np.ndarray,
    lot: int,
    ts: int,
    fills: np.ndarray,
) -> int:
    """Execute ``order``'s taker part against the book view, consuming what it takes.

    Args:
        order: ORDER_DTYPE record/array(row 0): side, action, price (limit, outcome scale),
            remaining > 0 are read; filled/remaining/notional/fees/rounding_acc/status written.
        pos: POSITION_DTYPE record/array(row 0), updated (cash never goes negative).
        px, qty: int16/int64 [2, K] the book view; liq: LIQUIDITY_DTYPE [1] of this account in
            this market (core.liquidity), updated.
        fees: FEE_DTYPE [1].
        lot: count granularity (1 = fractional contracts allowed, 100 = whole contracts).
        ts: fill timestamp (ms).
        fills: FILL_DTYPE [>=1] receives one record per level filled.

    Returns:
        number of fills written (0: nothing within the limit, no liquidity or no cash).
        The order's status is ORD_EXECUTED when nothing remains; else it is left as is (the
        caller cancels an IOC remainder or rests a GTC one).
    """
    o = first_record(order)
    p = first_record(pos)
    f = fees[0]
    side = int(o["side"])
    action = int(o["action"])
    limit = int(o["price"])
    ladder = take_ladder(side, action)
    buy = action == ORDER_BUY
    n = 0
    for i in range(px.shape[1]):
        left = int(o["remaining"])
        if left <= 0 or n >= fills.shape[0]:
            break
        lp = int(px[ladder, i])
        if lp == NO_PRICE:
            break
        price = ladder_to_order_price(side, action, lp)
        if (buy and price > limit) or (not buy and price < limit):
            break
        avail = int(qty[ladder, i]) - consumed_at(liq, ladder, lp)
        take = (min(left, avail) // lot) * lot
        if take <= 0:
            continue
        take = affordable_count(
            p["cash"], p["position"], side, action, price, take,
            f["taker_num"], f["taker_den"], f["taker_bound"], f["precision"], lot,
        )  # fmt: skip
        if take <= 0:
            break
        if not consume(liq, ladder, lp, take, int(qty[ladder, i])):
            break
        record_fill(order, pos, take, price, fees, True, ts, fills[n])
        n += 1
    return n


@njit(cache=True)
def maker_fill(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    order: np.ndarray | np.void,
    pos: np.ndarray | np.void,
    count: int,
    fees: np.ndarray,
    ts: int,
    fill_out: np.ndarray | np.void,
) -> int:
    """Fill ``count`` of a resting order at its price (maker fee), capped by cash.

    Args:
        order: ORDER_DTYPE resting order; pos: its account; fees: FEE_DTYPE [1].
        count: count units the queue model says are filled now (core.queue).
        fill_out: FILL_DTYPE record written when something fills.

    Returns:
        count units filled (0 if none or cash covers none; collateral is re-checked here
        because a paper account's cash can move while the order rests).
    """
    o = first_record(order)
    if o["status"] != ORD_RESTING or count <= 0:
        return 0
    p = first_record(pos)
    f = fees[0]
    c = min(count, int(o["remaining"]))
    c = affordable_count(
        p["cash"], p["position"], int(o["side"]), int(o["action"]), int(o["price"]), c,
        f["maker_num"], f["maker_den"], f["maker_bound"], f["precision"], 1,
    )  # fmt: skip
    if c <= 0:
        return 0
    record_fill(order, pos, c, int(o["price"]), fees, False, ts, fill_out)
    return c


# =========================================================================== plain walks


@njit(cache=True, inline="always")
def _level_take(  # noqa: PLR0917 -- njit helper over positional arrays/scalars
    px: np.ndarray, qty: np.ndarray, ladder: int, i: int, buy: bool, limit_price: int, left: int
) -> tuple[int, int]:
    lp = int(px[ladder, i])
    lq = int(qty[ladder, i])
    if lp == NO_PRICE or lq <= 0:
        return 0, 0
    price = PRICE_MAX - lp if buy else lp
    if (buy and price > limit_price) or (not buy and price < limit_price):
        return 0, 0
    return price, min(left, lq)


@njit(cache=True)
def taker_fill_levels(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    px: np.ndarray,
    qty: np.ndarray,
    outcome_side: int,
    action: int,
    count: int,
    limit_price: int,
    out_px: np.ndarray,
    out_qty: np.ndarray,
) -> tuple[int, int, int]:
    """Walk the book for a taker order without consuming it; write per-level fills.

    Returns:
        (filled_count, notional = sum(count_i * price_i), n levels written).
    """
    buy = action == ORDER_BUY
    ladder = take_ladder(outcome_side, action)
    left = count
    notional = 0
    n = 0
    for i in range(px.shape[1]):
        price, take = _level_take(px, qty, ladder, i, buy, limit_price, left)
        if take <= 0:
            break
        out_px[n] = price
        out_qty[n] = take
        n += 1
        notional += take * price
        left -= take
    return count - left, notional, n


@njit(cache=True)
def taker_fill(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    px: np.ndarray, qty: np.ndarray, outcome_side: int, action: int, count: int, limit_price: int
) -> tuple[int, int]:
    """Walk the book without consuming it. Returns (filled_count, notional)."""
    buy = action == ORDER_BUY
    ladder = take_ladder(outcome_side, action)
    left = count
    notional = 0
    for i in range(px.shape[1]):
        price, take = _level_take(px, qty, ladder, i, buy, limit_price, left)
        if take <= 0:
            break
        notional += take * price
        left -= take
    return count - left, notional


@njit(cache=True)
def taker_fill_fee(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    px: np.ndarray,
    qty: np.ndarray,
    outcome_side: int,
    action: int,
    count: int,
    limit_price: int,
    round_units: int = 1,
) -> tuple[int, int, int]:
    """``taker_fill`` plus a taker fee rounded once over all levels (the classic per-order rule).

    Returns:
        (filled_count, notional, fee money).
    """
    buy = action == ORDER_BUY
    ladder = take_ladder(outcome_side, action)
    left = count
    notional = 0
    raw = 0
    for i in range(px.shape[1]):
        price, take = _level_take(px, qty, ladder, i, buy, limit_price, left)
        if take <= 0:
            break
        notional += take * price
        raw += take * price * (PRICE_MAX - price)
        left -= take
    return count - left, notional, fee_from_raw(raw, TAKER_FEE_NUM, TAKER_FEE_DEN, round_units)


__all__ = [
    "affordable_count",
    "best_available",
    "consume",
    "consumed_at",
    "ladder_to_order_price",
    "liquidity_clear",
    "liquidity_on_level",
    "liquidity_refresh",
    "maker_fill",
    "record_fill",
    "take_ladder",
    "taker_fill",
    "taker_fill_fee",
    "taker_fill_levels",
    "taker_match",
]
