"""Order rules shared by the env, the paper client and the actor: action -> order, validity.

Every check returns a REJ_* reason code (core.dtypes); REJ_NONE means the order may go.

* ``action_to_order``: the discrete action space (ACT_*) -> one IOC taker order
  (side, action, limit, count).  Buys are capped at ``max_position``; sells are reduce-only
  (sell YES needs YES held, sell NO needs NO held) and capped at what is held; the limit is
  the best price still available after our consumption moved ``slip`` ticks against us.
* ``collateral_need``: Kalshi's collateral rule -- the cash an order can cost at its limit
  (the opening part at the limit price plus the taker trade fee, floored balance change as
  Kalshi books it; contracts that close a held position pay out and need nothing).
* ``order_check``: a client order (paper trading) against the grid, the market state,
  reduce_only, post_only and collateral.
* ``action_check`` / ``write_action_masks``: the same rules per action for masks.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from core.account import closing_count, fill_revenue
from core.dtypes import (
    ACT_BUY_NO,
    ACT_BUY_YES,
    ACT_HOLD,
    ACT_SELL_NO,
    ACT_SELL_YES,
    N_ACTIONS,
    NO_PRICE,
    NOTIONAL_DIVISOR,
    ORDER_BUY,
    ORDER_SELL,
    PRICE_MAX,
    PRICE_MIN,
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
    SIDE_NO,
    SIDE_YES,
)
from core.fees import max_debit, trade_fee
from core.matching import best_available, ladder_to_order_price, take_ladder
from core.queue import rest_level


@njit(cache=True, inline="always")
def action_to_order(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    action: int,
    position: int,
    size: int,
    max_position: int,
    slip: int,
    px: np.ndarray,
    qty: np.ndarray,
    liq: np.ndarray,
) -> tuple[int, int, int, int, int]:
    """The env/actor rule from an ACT_* action to one IOC taker order.

    Args:
        action: ACT_*; position: signed count units held; size: wanted count units.
        max_position: largest |position| allowed (count units).
        slip: the limit is the touch moved this many ticks against us.
        px, qty: int16/int64 [2, K] book view; liq: LIQUIDITY_DTYPE [1] (core.liquidity).

    Returns:
        (side, order_action, limit price on the side's scale, count, reject).  ``count`` is
        0 for hold and whenever ``reject`` is not REJ_NONE.
    """
    if action == ACT_HOLD:
        return SIDE_YES, ORDER_BUY, NO_PRICE, 0, REJ_NONE
    if action == ACT_BUY_YES:
        side, act, count = SIDE_YES, ORDER_BUY, min(size, max_position - position)
    elif action == ACT_BUY_NO:
        side, act, count = SIDE_NO, ORDER_BUY, min(size, max_position + position)
    elif action == ACT_SELL_YES:
        side, act, count = SIDE_YES, ORDER_SELL, min(size, position)
    elif action == ACT_SELL_NO:
        side, act, count = SIDE_NO, ORDER_SELL, min(size, -position)
    else:
        return SIDE_YES, ORDER_BUY, NO_PRICE, 0, REJ_BAD_ACTION
    if count <= 0:
        reason = REJ_POSITION_LIMIT if act == ORDER_BUY else REJ_NOTHING_HELD
        return side, act, NO_PRICE, 0, reason
    best = best_available(px, qty, liq, take_ladder(side, act))
    if best == NO_PRICE:
        return side, act, NO_PRICE, 0, REJ_NO_LIQUIDITY
    touch = ladder_to_order_price(side, act, best)
    if act == ORDER_BUY:
        limit = min(touch + slip, PRICE_MAX)
    else:
        limit = max(touch - slip, PRICE_MIN)
    return side, act, limit, count, REJ_NONE


@njit(cache=True)
def collateral_need(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    position: int, side: int, action: int, price: int, count: int, fees: np.ndarray
) -> int:
    """Cash an order of ``count`` at ``price`` can cost, money (<= 0: it pays out).

    Kalshi: cash must cover cost plus fees.  Priced at the limit with the taker rate (the
    dearer one) and Kalshi's floored balance change, before any rebate.
    """
    f = fees[0]
    closed = closing_count(position, side, action, count)
    rev = fill_revenue(side, action, count, count * price, closed)
    return max_debit(rev, trade_fee(count, price, f["taker_num"], f["taker_den"]), f["precision"])


@njit(cache=True)
def order_check(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    side: int,
    action: int,
    price: int,
    count: int,
    tick: int,
    lot: int,
    post_only: bool,
    reduce_only: bool,
    market_open: bool,
    position: int,
    cash: int,
    px: np.ndarray,
    qty: np.ndarray,
    liq: np.ndarray,
    fees: np.ndarray,
) -> int:
    """Validity of a client limit order (paper trading), as Kalshi checks it.

    Args:
        side, action, price (limit, side's scale), count: the order.
        tick: price grid step in ticks (10 = $0.01); lot: count grid (100 = whole contracts).
        post_only, reduce_only: Kalshi's flags; market_open: the market accepts orders.
        position, cash: the account (count units, money).
        px, qty, liq: book view and our consumption; fees: FEE_DTYPE [1].

    Returns:
        REJ_NONE or the first failing REJ_* reason, in the order: market closed, price grid,
        count grid, reduce-only, post-only cross, collateral.  A reduce-only order must
        close held contracts (callers clip its count to ``closing_count``).
    """
    if not market_open:
        return REJ_MARKET_CLOSED
    if price <= PRICE_MIN or price >= PRICE_MAX or price % tick != 0:
        return REJ_BAD_PRICE
    if count <= 0 or count % lot != 0:
        return REJ_BAD_COUNT
    closed = closing_count(position, side, action, count)
    if reduce_only and closed < count:
        return REJ_REDUCE_ONLY
    if post_only:
        ladder, our = rest_level(side, action, price)
        opp = best_available(px, qty, liq, 1 - ladder)
        if opp != NO_PRICE and our + opp >= PRICE_MAX:
            return REJ_POST_ONLY_CROSS
    if collateral_need(position, side, action, price, count, fees) > cash:
        return REJ_INSUFFICIENT_BALANCE
    return REJ_NONE


@njit(cache=True)
def action_check(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    action: int,
    position: int,
    cash: int,
    size: int,
    max_position: int,
    px: np.ndarray,
    qty: np.ndarray,
    liq: np.ndarray,
    fees: np.ndarray,
) -> int:
    """Why ``action`` of ``size`` cannot be sent now (REJ_NONE: it can).

    The rules of ``action_to_order`` (position limit, reduce-only sells, liquidity) plus
    collateral: a buy must be affordable at the touch for the whole order.
    """
    if action < 0 or action >= N_ACTIONS:
        return REJ_BAD_ACTION
    if (action == ACT_BUY_YES and position + size > max_position) or (
        action == ACT_BUY_NO and position - size < -max_position
    ):
        return REJ_POSITION_LIMIT
    side, act, touch, count, reason = action_to_order(
        action, position, size, max_position, 0, px, qty, liq
    )
    if reason != REJ_NONE or count == 0:
        return reason
    if act == ORDER_BUY and collateral_need(position, side, act, touch, count, fees) > cash:
        return REJ_INSUFFICIENT_BALANCE
    return REJ_NONE


@njit(cache=True, inline="always")
def _buy_affordable(  # noqa: PLR0917 -- njit helper over positional scalars
    position: int, cash: int, side: int, price: int, count: int, fees: np.ndarray
) -> bool:
    # fast bound first: $1 + the largest possible fee and rounding per count unit
    f = fees[0]
    bound = count * (PRICE_MAX + f["taker_bound"])
    if cash * NOTIONAL_DIVISOR >= bound + 2 * f["precision"] * NOTIONAL_DIVISOR:
        return True
    return collateral_need(position, side, ORDER_BUY, price, count, fees) <= cash


@njit(cache=True, inline="always")
def write_action_masks(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    position: int,
    cash: int,
    size: int,
    max_position: int,
    px: np.ndarray,
    qty: np.ndarray,
    liq: np.ndarray,
    fees: np.ndarray,
    busy: bool,
    out: np.ndarray,
) -> None:
    """Action mask (bool [N_ACTIONS]): ``action_check(...) == REJ_NONE``; only hold when busy.

    Same rules as ``action_check`` (tested equal), computed with one scan per ladder.

    Args:
        busy: an earlier order is in flight or not yet acknowledged (REJ_IN_FLIGHT).
    """
    out[ACT_HOLD] = True
    if busy:
        for a in range(1, N_ACTIONS):
            out[a] = False
        return
    yb = best_available(px, qty, liq, SIDE_YES)
    nb = best_available(px, qty, liq, SIDE_NO)
    out[ACT_BUY_YES] = (
        position + size <= max_position
        and nb != NO_PRICE
        and _buy_affordable(position, cash, SIDE_YES, PRICE_MAX - nb, size, fees)
    )
    out[ACT_SELL_YES] = position > 0 and yb != NO_PRICE
    out[ACT_BUY_NO] = (
        position - size >= -max_position
        and yb != NO_PRICE
        and _buy_affordable(position, cash, SIDE_NO, PRICE_MAX - yb, size, fees)
    )
    out[ACT_SELL_NO] = position < 0 and nb != NO_PRICE
