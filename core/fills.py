"""Kalshi fees, taker fills, position netting and a resting-order queue model.

Shared by the env (history) and the paper client (live): nothing else computes a fill.
All prices, counts and money are integers (units in core.dtypes).

Fees (kalshi-protocol.md section 4): ``fee = round_up(rate * C * P * (1 - P))`` dollars,
C contracts, P price in dollars.  In our units the exact fee is
``num * count * price * (1000 - price) / (den * 10_000)`` money; it is rounded *up* to a
multiple of ``round_units`` money (FEE_ROUND_CURRENT = $0.0001, FEE_ROUND_CENT = $0.01).
Integer math only; exact for count * price * (1000 - price) * num < 2**63 (count up to
~5e12 count units at num = 7).  Multi-level fills are charged once per order on the exact
sum over levels (``taker_fill_fee``), which is the classic per-order rule.

Taker fills walk the opposite ladder of top-K bids (``core.book.book_top_k`` layout):
buying YES consumes NO bids at YES price ``1000 - no_bid``; buying NO consumes YES bids;
selling YES hits YES bids; selling NO hits NO bids.  ``limit_price`` and ``notional``
(sum of count_i * price_i, count units x ticks) are on the outcome side's scale.  Levels
are not consumed; the caller decides.

Positions (POSITION_DTYPE, Kalshi netting): ``position`` is signed count units, +YES / -NO.
Every fill is first rewritten as a *buy* of one side: selling YES at p == buying NO at
1000 - p (and the other way round).  A buy on the side opposite to the held one closes
held contracts first: each YES+NO pair is redeemed for $1 (PAYOUT), realising P&L against
the average cost; the rest opens/extends the position.  Conventions:

* money of a notional = notional / NOTIONAL_DIVISOR rounded against the trader: the buyer
  pays ``ceil``, the seller receives ``floor`` (the buy rewrite keeps exactly this).
* ``cash`` moves by -paid + pairs redeemed - fee.  ``cost_basis`` is the money paid for the
  open contracts (own side); a close removes ``cost_basis * closed // held`` (all of it on
  a full close), and the close/open split of a mixed fill's money is proportional to counts.
* ``realized_pnl`` is net of fees: each fee is subtracted when paid.

Resting orders (ORDER_DTYPE, paper trading; our order is *not* in the recorded book):
a buy of side s at p rests on ladder s at p; a sell of side s at p rests on the other
ladder at 1000 - p.  ``queue_ahead`` is the quantity ahead of us at our price.  Trades at
our price eat the queue first, then us; trades through our price, or the opposite side
crossing our price, fill us at our price.  Cancels shrink the queue; additions join
behind us.  Maker fee (``maker_fee``, FEE_ROUND_CURRENT) is accumulated in ``order.fees``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

from core.dtypes import (
    FEE_DIVISOR,
    FEE_ROUND_CURRENT,
    MAKER_FEE_DEN,
    MAKER_FEE_NUM,
    NO_PRICE,
    NOTIONAL_DIVISOR,
    ORD_EXECUTED,
    ORD_RESTING,
    ORDER_BUY,
    PAIR_MONEY_PER_COUNT,
    PRICE_MAX,
    SIDE_NO,
    SIDE_YES,
    TAKER_FEE_DEN,
    TAKER_FEE_NUM,
)

# =========================================================================== records


def first_record(arr: np.ndarray | np.void) -> np.void:
    """Row 0 of a structured array, or the record itself (resolved at compile time in njit).

    Lets kernels take ``pos`` / ``order`` as a length-1 array slice (``pos[i:i+1]``) or a
    record (``pos[i]``); both write through to the caller's array.
    """
    return arr if isinstance(arr, np.void) else arr[0]


@overload(first_record, inline="always")
def _first_record_ol(arr):
    if isinstance(arr, types.Array):
        return lambda arr: arr[0]
    if isinstance(arr, types.Record):
        return lambda arr: arr
    return None


# =========================================================================== fees


@njit(cache=True, inline="always")
def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


@njit(cache=True, inline="always")
def _fee_from_raw(raw: int, num: int, den: int, round_units: int) -> int:
    # raw = sum of count * p * (1000 - p); the fee is num * raw / (den * FEE_DIVISOR) money.
    if raw <= 0:
        return 0
    units = _ceil_div(num * raw, den * FEE_DIVISOR * round_units)
    return units * round_units


@njit(cache=True)
def fee(count: int, price: int, num: int, den: int, round_units: int) -> int:
    """Kalshi fee of one order, rounded up.

    Args:
        count: count units (hundredths of a contract), >= 0.
        price: ticks on either scale (P(1-P) is symmetric), 0..1000.
        num, den: fee rate as num/den (e.g. TAKER_FEE_NUM/TAKER_FEE_DEN = 7/100).
        round_units: money multiple to round up to (FEE_ROUND_CURRENT or FEE_ROUND_CENT).

    Returns:
        fee in money units ($0.0001).
    """
    return _fee_from_raw(count * price * (PRICE_MAX - price), num, den, round_units)


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
    """Fee of one order filled at several prices, rounded once on the exact total.

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
    return _fee_from_raw(raw, num, den, round_units)


# =========================================================================== taker fills


@njit(cache=True, inline="always")
def _other_side(side: int) -> int:
    return SIDE_NO if side == SIDE_YES else SIDE_YES


@njit(cache=True, inline="always")
def _level_take(  # noqa: PLR0917 -- njit helper over positional arrays/scalars
    px: np.ndarray, qty: np.ndarray, ladder: int, i: int, buy: bool, limit_price: int, left: int
) -> tuple[int, int]:
    # (price on the outcome side's scale, count taken) at level ``i`` of ``ladder``; a
    # count <= 0 ends the walk (nothing left to fill, ladder exhausted, or beyond the limit).
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
    """Walk the book for a taker order and write the per-level fills.

    Args:
        px: int16 [2, K] best-first bids per side (own scale, NO_PRICE padded).
        qty: int64 [2, K] count units.
        outcome_side: SIDE_YES / SIDE_NO, the outcome bought or sold.
        action: ORDER_BUY / ORDER_SELL.
        count: count units wanted (> 0).
        limit_price: worst acceptable price on the outcome side's scale (max for a buy,
            min for a sell).
        out_px: int16 [>=K] receives fill prices on the outcome side's scale.
        out_qty: int64 [>=K] receives fill counts.

    Returns:
        (filled_count, notional = sum(count_i * price_i), n_levels written).
    """
    buy = action == ORDER_BUY
    # Buys take liquidity from the other ladder; sells hit their own side's bids.
    ladder = _other_side(outcome_side) if buy else outcome_side
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
    px: np.ndarray,
    qty: np.ndarray,
    outcome_side: int,
    action: int,
    count: int,
    limit_price: int,
) -> tuple[int, int]:
    """Walk the book for a taker order (see ``taker_fill_levels``).

    Returns:
        (filled_count, notional) with notional = sum(count_i * price_i) on the outcome scale.
    """
    buy = action == ORDER_BUY
    ladder = _other_side(outcome_side) if buy else outcome_side
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
    round_units: int = FEE_ROUND_CURRENT,
) -> tuple[int, int, int]:
    """``taker_fill`` plus its taker fee (one rounding over all levels of the order).

    Returns:
        (filled_count, notional, fee money).
    """
    buy = action == ORDER_BUY
    ladder = _other_side(outcome_side) if buy else outcome_side
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
    return count - left, notional, _fee_from_raw(raw, TAKER_FEE_NUM, TAKER_FEE_DEN, round_units)


# =========================================================================== positions


@njit(cache=True)
def apply_fill(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    pos: np.ndarray | np.void, outcome_side: int, action: int, count: int, notional: int, fee: int
) -> None:
    """Book one fill into a position with Kalshi netting (see the module docstring).

    Args:
        pos: POSITION_DTYPE record, or array whose row 0 is updated.
        outcome_side: SIDE_YES / SIDE_NO traded.
        action: ORDER_BUY / ORDER_SELL.
        count: count units filled (> 0; 0 is a no-op).
        notional: sum(count_i * price_i) on the outcome side's scale.
        fee: money charged for the fill (>= 0).
    """
    if count <= 0:
        return
    p = first_record(pos)
    buy = action == ORDER_BUY
    if buy:
        paid = _ceil_div(notional, NOTIONAL_DIVISOR)
        bought = outcome_side
    else:
        # selling s at p == buying the other side at 1000 - p; the seller's floor becomes
        # exactly this buy's ceil because count * PAIR_MONEY_PER_COUNT is whole money.
        paid = count * PAIR_MONEY_PER_COUNT - notional // NOTIONAL_DIVISOR
        bought = _other_side(outcome_side)
    sign = 1 if bought == SIDE_YES else -1
    position = p["position"]
    held_opp = -position if sign > 0 else position  # contracts of the other side held
    closed = min(count, held_opp) if held_opp > 0 else 0

    if closed > 0:
        paid_close = paid * closed // count
        basis = p["cost_basis"]
        removed = basis if closed == held_opp else basis * closed // held_opp
        proceeds = closed * PAIR_MONEY_PER_COUNT - paid_close
        p["realized_pnl"] += proceeds - removed
        p["cost_basis"] = basis - removed + (paid - paid_close)
    else:
        p["cost_basis"] += paid
    p["position"] = position + sign * count
    p["cash"] += closed * PAIR_MONEY_PER_COUNT - paid - fee
    p["realized_pnl"] -= fee
    p["fees_paid"] += fee
    p["n_trades"] += 1
    p["volume"] += count


@njit(cache=True)
def account_value(pos: np.ndarray | np.void, yes_mid: float) -> int:
    """Cash plus the position marked at the mid (floored to money).

    Args:
        pos: POSITION_DTYPE record or array (row 0).
        yes_mid: YES-scale mid in ticks; NO is valued at 1000 - yes_mid.

    Returns:
        money units.
    """
    p = first_record(pos)
    position = p["position"]
    if position >= 0:
        mark = position * yes_mid
    else:
        mark = -position * (PRICE_MAX - yes_mid)
    return p["cash"] + int(np.floor(mark / NOTIONAL_DIVISOR))


@njit(cache=True)
def settle(pos: np.ndarray | np.void, result_yes: bool) -> int:
    """Settle a position: each winning contract pays $1, the position closes.

    Args:
        pos: POSITION_DTYPE record or array (row 0).
        result_yes: True if the market resolved YES.

    Returns:
        money paid out (added to cash; P&L realised against cost_basis).
    """
    p = first_record(pos)
    position = p["position"]
    won = (position > 0 and result_yes) or (position < 0 and not result_yes)
    paid = abs(position) * PAIR_MONEY_PER_COUNT if won else 0
    p["cash"] += paid
    p["realized_pnl"] += paid - p["cost_basis"]
    p["cost_basis"] = 0
    p["position"] = 0
    return paid


# =========================================================================== resting orders


@njit(cache=True, inline="always")
def _book_price(side: int, action: int, price: int) -> tuple[int, int]:
    # (ladder, price on that ladder's scale) where the order rests.
    if action == ORDER_BUY:
        return side, price
    return _other_side(side), PRICE_MAX - price


@njit(cache=True)
def _fill_resting(o: np.void, n: int) -> int:
    if n <= 0:
        return 0
    o["remaining"] -= n
    o["filled"] += n
    o["fees"] += maker_fee(n, int(o["price"]), FEE_ROUND_CURRENT)
    if o["remaining"] <= 0:
        o["status"] = ORD_EXECUTED
    return n


@njit(cache=True)
def resting_place(order: np.ndarray | np.void, level_qty_at_price: int) -> None:
    """Rest an order at the back of the queue at its price.

    Args:
        order: ORDER_DTYPE record or array (row 0) with count/price/side/action set.
        level_qty_at_price: quantity already bid at our price on our ladder (count units).
    """
    o = first_record(order)
    o["queue_ahead"] = max(level_qty_at_price, 0)
    o["remaining"] = o["count"] - o["filled"]
    o["status"] = ORD_RESTING if o["remaining"] > 0 else ORD_EXECUTED


@njit(cache=True)
def resting_on_trade(order: np.ndarray | np.void, trade_price: int, trade_count: int) -> int:
    """A trade hit the ladder our order rests on.

    Args:
        order: ORDER_DTYPE record or array (row 0), resting.
        trade_price: trade price on the *order's* scale (``order.price``'s side).
        trade_count: count units traded.

    Returns:
        count units filled now (0 if none); ``order.fees`` grows by the maker fee.
    """
    o = first_record(order)
    if o["status"] != ORD_RESTING or trade_count <= 0:
        return 0
    price = int(o["price"])
    buy = o["action"] == ORDER_BUY
    through = trade_price < price if buy else trade_price > price
    if through:
        # Anyone trading beyond our price would have hit us first.
        return _fill_resting(o, int(o["remaining"]))
    if trade_price != price:
        return 0
    eaten = min(trade_count, int(o["queue_ahead"]))
    o["queue_ahead"] -= eaten
    return _fill_resting(o, min(trade_count - eaten, int(o["remaining"])))


@njit(cache=True)
def resting_on_trade_yes(
    order: np.ndarray | np.void, yes_price: int, taker_side: int, count: int
) -> int:
    """``resting_on_trade`` from a Kalshi trade message (YES price, taker side).

    A taker buying YES consumes NO bids, a taker buying NO consumes YES bids; trades that
    consume the other ladder do not touch our order.

    Args:
        order: ORDER_DTYPE record or array (row 0).
        yes_price: trade price on the YES scale; taker_side: TAKER_YES / TAKER_NO.
        count: count units traded.

    Returns:
        count units filled now.
    """
    o = first_record(order)
    ladder, _ = _book_price(int(o["side"]), int(o["action"]), int(o["price"]))
    if taker_side == ladder:
        return 0
    ladder_px = yes_price if ladder == SIDE_YES else PRICE_MAX - yes_price
    order_px = ladder_px if o["action"] == ORDER_BUY else PRICE_MAX - ladder_px
    return resting_on_trade(order, order_px, count)


@njit(cache=True)
def resting_on_level(order: np.ndarray | np.void, new_level_qty: int) -> None:
    """Our price level changed to ``new_level_qty`` (others' orders only).

    Cancels can only remove quantity ahead of us (they shrink queue_ahead to at most the
    level); additions join behind us and leave queue_ahead unchanged.
    """
    o = first_record(order)
    o["queue_ahead"] = min(int(o["queue_ahead"]), max(new_level_qty, 0))


@njit(cache=True)
def resting_crossed(order: np.ndarray | np.void, opposite_best: int) -> int:
    """The opposite ladder's best bid moved through our price: fill all at our price.

    Args:
        order: ORDER_DTYPE record or array (row 0), resting.
        opposite_best: best bid of the ladder opposite to the one we rest on, on its own
            scale (NO_PRICE when empty).

    Returns:
        count units filled now (the whole remainder, or 0).
    """
    o = first_record(order)
    if o["status"] != ORD_RESTING or opposite_best == NO_PRICE:
        return 0
    _, our_px = _book_price(int(o["side"]), int(o["action"]), int(o["price"]))
    if our_px + opposite_best < PRICE_MAX:
        return 0
    return _fill_resting(o, int(o["remaining"]))
