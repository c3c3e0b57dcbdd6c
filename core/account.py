"""Account rules: Kalshi YES/NO netting, cash, settlement payouts, honest valuation.

POSITION_DTYPE (one agent, one market).  ``position`` is signed count units, +YES / -NO.
Every fill is first rewritten as a *buy* of one side: selling YES at p == buying NO at
1000 - p (and the other way round).  A buy on the side opposite to the held one closes held
contracts first: each YES+NO pair is redeemed for $1, realising P&L against the average cost;
the rest opens/extends the position.

Money of a fill: ``book_fill`` takes the exact cash change of the fill (core.fees.fill_balance:
Kalshi's floored balance change plus rebate).  The position's books use the buyer's
``paid = ceil(bought notional / 10)`` for the contracts, so the fill's net fee in money is
``fee = (closed * $0.01/count - paid) - cash``: trade fee + rounding - rebate (+ the sub-money
part of the notional the floor took).  Then, with cash starting at S::

    cash - S == realized_pnl - cost_basis          (always)
    pnl == trading + settlement + mark - fees      (``pnl_components``)

Valuation (#11, honest marks): ``liquidation_value`` is what the open position could be sold
for now: walk the held side's bids (YES held -> YES bids, NO held -> NO bids) for the position
size, net of taker fees and balance rounding; nothing bidding is worth nothing.
``position_value`` adds the MARK_MID option: the two-sided mid, falling back to the
liquidation value when the book is not two-sided (never a made-up mid).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from core.dtypes import (
    MARK_MID,
    NO_PRICE,
    NOTIONAL_DIVISOR,
    ORDER_BUY,
    PAIR_MONEY_PER_COUNT,
    PRICE_MAX,
    SIDE_NO,
    SIDE_YES,
)
from core.fees import ceil_div, fill_balance, trade_fee
from core.liquidity import consumed_at
from core.records import first_record, other_side

# =========================================================================== fills


@njit(cache=True, inline="always")
def bought_side(outcome_side: int, action: int) -> int:
    """The side a fill buys after the sell -> buy rewrite (selling YES buys NO)."""
    return outcome_side if action == ORDER_BUY else other_side(outcome_side)


@njit(cache=True, inline="always")
def closing_count(position: int, outcome_side: int, action: int, count: int) -> int:
    """Count units of a fill that close held contracts (the rest opens or extends)."""
    b = bought_side(outcome_side, action)
    held_opp = -position if b == SIDE_YES else position
    return min(count, held_opp) if held_opp > 0 else 0


@njit(cache=True, inline="always")
def fill_revenue(outcome_side: int, action: int, count: int, notional: int, closed: int) -> int:
    """Revenue of a fill in notional units (1e-5 $): + received, - paid.

    Args:
        outcome_side, action: what was traded (ORDER_BUY / ORDER_SELL of SIDE_*).
        count: count units filled; notional: sum(count_i * price_i) on the outcome's scale.
        closed: count units of it that close held contracts (``closing_count``).

    Kalshi nets: a buy of the side opposite to the held one redeems pairs for $1, so a sell of
    held YES at p receives count * p (the same number as buying NO at 1 - p and redeeming).
    """
    if action == ORDER_BUY:
        bought_notional = notional
    else:
        bought_notional = count * PRICE_MAX - notional
    return closed * PRICE_MAX - bought_notional


@njit(cache=True, inline="always")
def book_fill(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    pos: np.ndarray | np.void, outcome_side: int, action: int, count: int, notional: int, cash: int
) -> int:
    """Book one fill into a position with Kalshi netting and an exact cash change.

    Args:
        pos: POSITION_DTYPE record, or array whose row 0 is updated.
        outcome_side: SIDE_YES / SIDE_NO traded; action: ORDER_BUY / ORDER_SELL.
        count: count units filled (> 0; 0 is a no-op).
        notional: sum(count_i * price_i) on the outcome side's scale.
        cash: the fill's balance change, money (``core.fees.fill_balance``).

    Returns:
        the fill's net fee in money (see the module docstring).
    """
    if count <= 0:
        return 0
    p = first_record(pos)
    bought = bought_side(outcome_side, action)
    bought_notional = notional if action == ORDER_BUY else count * PRICE_MAX - notional
    paid = ceil_div(bought_notional, NOTIONAL_DIVISOR)
    sign = 1 if bought == SIDE_YES else -1
    position = p["position"]
    held_opp = -position if sign > 0 else position
    closed = min(count, held_opp) if held_opp > 0 else 0
    fee_money = closed * PAIR_MONEY_PER_COUNT - paid - cash
    if closed > 0:
        paid_close = paid * closed // count
        basis = p["cost_basis"]
        removed = basis if closed == held_opp else basis * closed // held_opp
        p["realized_pnl"] += closed * PAIR_MONEY_PER_COUNT - paid_close - removed
        p["cost_basis"] = basis - removed + (paid - paid_close)
    else:
        p["cost_basis"] += paid
    p["position"] = position + sign * count
    p["cash"] += cash
    p["realized_pnl"] -= fee_money
    p["fees_paid"] += fee_money
    p["n_trades"] += 1
    p["volume"] += count
    return fee_money


@njit(cache=True)
def apply_fill(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    pos: np.ndarray | np.void, outcome_side: int, action: int, count: int, notional: int, fee: int
) -> None:
    """Book a fill charged a plain ``fee`` (no balance rounding): cash = floor(revenue) - fee.

    The pre-engine rule, kept for callers that compute their own fee; the engine books
    fills with ``book_fill`` and Kalshi's balance rounding.
    """
    if count <= 0:
        return
    p = first_record(pos)
    closed = closing_count(p["position"], outcome_side, action, count)
    revenue = fill_revenue(outcome_side, action, count, notional, closed)
    book_fill(pos, outcome_side, action, count, notional, revenue // NOTIONAL_DIVISOR - fee)


@njit(cache=True)
def settle(pos: np.ndarray | np.void, result_yes: bool) -> int:
    """Settle a position on determination: each winning contract pays $1, the position closes.

    Args:
        pos: POSITION_DTYPE record or array (row 0).
        result_yes: True if the market resolved YES.

    Returns:
        money paid out (added to cash; P&L realised against cost_basis, also counted in
        ``settlement_pnl``).  No settlement fee (Kalshi charges none).
    """
    p = first_record(pos)
    position = p["position"]
    won = (position > 0 and result_yes) or (position < 0 and not result_yes)
    paid = abs(position) * PAIR_MONEY_PER_COUNT if won else 0
    pnl = paid - p["cost_basis"]
    p["cash"] += paid
    p["realized_pnl"] += pnl
    p["settlement_pnl"] += pnl
    p["cost_basis"] = 0
    p["position"] = 0
    return paid


@njit(cache=True)
def reset_position(pos: np.ndarray | np.void, cash: int) -> None:
    """Flat account holding ``cash`` money (every other field 0)."""
    p = first_record(pos)
    p["position"] = 0
    p["cost_basis"] = 0
    p["cash"] = cash
    p["realized_pnl"] = 0
    p["fees_paid"] = 0
    p["n_trades"] = 0
    p["volume"] = 0
    p["settlement_pnl"] = 0


# =========================================================================== valuation


@njit(cache=True, inline="always")
def liquidation_value(
    position: int, px: np.ndarray, qty: np.ndarray, liq: np.ndarray, fees: np.ndarray
) -> int:
    """What an open position could be sold for now, money (0 when flat or nothing bids).

    Walks the held side's bids best first (YES held sells into YES bids, NO into NO bids),
    what our own orders consumed excluded, each level one taker fill charged its trade fee
    and floored to the member precision (no rebate counted: conservative).  Levels beyond
    the given top-K are not seen and so are worth nothing.

    Args:
        position: signed count units (+YES / -NO).
        px: int16 [2, K] best-first bids per side (own scale, NO_PRICE padded).
        qty: int64 [2, K] count units.
        liq: LIQUIDITY_DTYPE [1], what our orders took (core.liquidity).
        fees: FEE_DTYPE [1] (taker rate and member precision are used).
    """
    if position == 0:
        return 0
    side = SIDE_YES if position > 0 else SIDE_NO
    left = abs(position)
    f = fees[0]
    value = 0
    for i in range(px.shape[1]):
        lp = int(px[side, i])
        if lp == NO_PRICE or left <= 0:
            break
        avail = int(qty[side, i]) - consumed_at(liq, side, lp)
        if avail <= 0:
            continue
        take = min(left, avail)
        tf = trade_fee(take, lp, f["taker_num"], f["taker_den"])
        cash, _r, _rb, _acc = fill_balance(take * lp, tf, f["precision"], 0)
        value += cash
        left -= take
    return max(value, 0)


@njit(cache=True, inline="always")
def two_sided_mid(px: np.ndarray) -> float:
    """YES-scale mid of two-sided top levels, NaN when either side is empty."""
    yb = int(px[SIDE_YES, 0])
    nb = int(px[SIDE_NO, 0])
    if NO_PRICE in (yb, nb):
        return np.nan
    return (yb + (PRICE_MAX - nb)) / 2.0


@njit(cache=True, inline="always")
def position_value(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    position: int,
    px: np.ndarray,
    qty: np.ndarray,
    liq: np.ndarray,
    fees: np.ndarray,
    mark_mode: int,
) -> int:
    """Value of the open position, money: MARK_LIQUIDATION (default) or MARK_MID.

    MARK_MID values contracts at the two-sided mid (YES at mid, NO at 1000 - mid, floored);
    when the book is not two-sided there is no mid and the liquidation value is used.
    """
    if position == 0:
        return 0
    if mark_mode == MARK_MID:
        mid = two_sided_mid(px)
        if not np.isnan(mid):
            mark_px = mid if position > 0 else PRICE_MAX - mid
            return int(np.floor(abs(position) * mark_px / NOTIONAL_DIVISOR))
    return liquidation_value(position, px, qty, liq, fees)


@njit(cache=True)
def account_value(pos: np.ndarray | np.void, yes_mid: float) -> int:
    """Cash plus the position marked at ``yes_mid`` (floored; NaN mid marks it at 0).

    Pre-engine helper; the env values with ``position_value``.
    """
    p = first_record(pos)
    position = p["position"]
    if np.isnan(yes_mid) or position == 0:
        return p["cash"]
    mark = position * yes_mid if position >= 0 else -position * (PRICE_MAX - yes_mid)
    return p["cash"] + int(np.floor(mark / NOTIONAL_DIVISOR))


@njit(cache=True)
def pnl_components(pos: np.ndarray | np.void, value: int) -> tuple[int, int, int, int]:
    """(trading, settlement, mark, fees) money with pnl == trading + settlement + mark - fees.

    Args:
        pos: POSITION_DTYPE record or array (row 0), started flat.
        value: current value of its open position (``position_value``), money.

    trading = realized P&L of closing trades before fees; settlement = payouts - cost basis
    of settled contracts; mark = value - cost basis of the open position; fees = net fees.
    """
    p = first_record(pos)
    fees = p["fees_paid"]
    settlement = p["settlement_pnl"]
    trading = p["realized_pnl"] - settlement + fees
    return trading, settlement, value - p["cost_basis"], fees
