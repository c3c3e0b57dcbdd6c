"""The paper account's matching kernels: orders of one account against the shared live books.

``kalshi_rl.trade.paper.PaperClient`` keeps its whole state in arrays (PAPER_ORDER_DTYPE
orders, POSITION_DTYPE per market slot, liquidity-consumption ladders) and moves them only
through these kernels; Python validates requests, formats responses and does the I/O.
Fees, netting and settlement are ``core.fills``' kernels (the env books fills with the same
ones), so a fill here and a fill in the env change an account identically.

Conventions (core.fills): an order buys or sells ``side`` at ``price`` on ``side``'s scale.
It is first rewritten as a *buy* of ``bside`` at ``bprice`` (selling s at p == buying the
other side at 1000 - p).  A buy of ``bside`` takes liquidity from the other ladder
(``take`` ladder): a level at ladder price ``lp`` crosses when ``lp + bprice >= 1000``.
A resting order sits on ladder ``bside`` at ``bprice``; our orders are *not* in the books
we read (they are the exchange's books, not ours).

Liquidity consumption: what a paper taker takes from a level is remembered in
``consumed[m, ladder, p]`` together with the level's quantity at that moment
(``cons_seen``).  While the book still shows that quantity, only ``qty - consumed`` is
available; once the level changes, the recorded book has moved on and all of it counts
again.

Resting orders and queues: ``queue_ahead`` is the quantity ahead of us at our price.
Trades on our ladder at our price eat the queue first, then us; trades through our price
fill us (up to the trade's count).  Level decreases not explained by trades are cancels:
QUEUE_CONSERVATIVE lets them shrink the queue only down to the level
(``queue_ahead = min(queue_ahead, level)``); QUEUE_PROB splits each decrease ahead/behind
us with hftbacktest's power model: the share taken from ahead of us is
``f(front) / (f(back) + f(front))`` with ``f(x) = x**n``.  New liquidity on the opposite
ladder that crosses our price fills us as maker at our price (someone's order crossed ours).

Kernels never raise; they return REJ_* codes / counts.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from core.dtypes import (
    FEE_ROUND_CURRENT,
    NO_PRICE,
    NOTIONAL_DIVISOR,
    ORD_CANCELED,
    ORD_EXECUTED,
    ORD_RESTING,
    ORDER_BUY,
    PRICE_MAX,
    QUEUE_PROB,
    REJ_FOK_UNFILLED,
    REJ_INSUFFICIENT_BALANCE,
    REJ_OK,
    REJ_POST_ONLY_CROSS,
    REJ_REDUCE_ONLY,
    SIDE_NO,
    SIDE_YES,
    TIF_FOK,
    TIF_GTC,
)
from core.fills import apply_fill, maker_fee, settle, taker_fee

# slots of the int64 control array of a paper book
CTL_N_ACTIVE = 0  # resting orders listed in ``active``
CTL_LEN = 4


# =========================================================================== helpers


@njit(cache=True, inline="always")
def _other(side: int) -> int:
    return SIDE_NO if side == SIDE_YES else SIDE_YES


@njit(cache=True, inline="always")
def _as_buy(side: int, action: int, price: int) -> tuple[int, int]:
    # (bought side, price on its scale)
    if action == ORDER_BUY:
        return side, price
    return _other(side), PRICE_MAX - price


@njit(cache=True, inline="always")
def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


@njit(cache=True, inline="always")
def _avail(qty: np.ndarray, consumed: np.ndarray, cons_seen: np.ndarray, m: int, s: int, p: int):  # noqa: PLR0917 -- njit helper over positional arrays/scalars
    # quantity at (m, s, p) not yet taken by our own taker fills (see module docstring)
    q = qty[m, s, p]
    if q <= 0:
        return 0
    if consumed[m, s, p] > 0 and cons_seen[m, s, p] == q:
        return q - consumed[m, s, p]
    return q


@njit(cache=True, inline="always")
def _consume(qty, consumed, cons_seen, m: int, s: int, p: int, n: int) -> None:  # noqa: PLR0917 -- njit helper over positional arrays/scalars
    q = qty[m, s, p]
    if consumed[m, s, p] > 0 and cons_seen[m, s, p] == q:
        consumed[m, s, p] += n
    else:
        consumed[m, s, p] = n
        cons_seen[m, s, p] = q


@njit(cache=True)
def account_cash(pos: np.ndarray, start_cash: int) -> int:
    """Cash of the account: start cash plus every market's cash flow (money)."""
    total = start_cash
    for m in range(pos.shape[0]):
        total += pos[m]["cash"]
    return total


@njit(cache=True)
def account_reserved(orders: np.ndarray, active: np.ndarray, ctl: np.ndarray) -> int:
    """Collateral held by resting orders (money)."""
    total = 0
    for k in range(ctl[CTL_N_ACTIVE]):
        total += orders[active[k]]["reserve"]
    return total


@njit(cache=True)
def _committed_closes(orders, active, ctl, m: int, bside: int, skip: int) -> int:  # noqa: PLR0917 -- njit helper over positional arrays/scalars
    # remaining count of resting orders in market m that buy ``bside`` (they would close
    # the same held contracts as a new order buying ``bside``)
    total = 0
    for k in range(ctl[CTL_N_ACTIVE]):
        j = active[k]
        if j == skip:
            continue
        o = orders[j]
        if o["market"] != m:
            continue
        bs, _ = _as_buy(int(o["side"]), int(o["action"]), int(o["price"]))
        if bs == bside:
            total += o["remaining"]
    return total


@njit(cache=True)
def required_collateral(count: int, bprice: int, closable: int) -> int:
    """Money an order must be able to pay: the opening part at its limit plus the taker fee.

    Args:
        count: count units of the order.
        bprice: its price rewritten as a buy (ticks on the bought side's scale).
        closable: contracts of the other side it would close (those cost nothing net).

    Returns:
        money units.
    """
    opening = count - min(count, max(closable, 0))
    return _ceil_div(opening * bprice, NOTIONAL_DIVISOR) + taker_fee(
        count, bprice, FEE_ROUND_CURRENT
    )


@njit(cache=True)
def _write_fill(out, n_out: int, o, now: int, count: int, price: int, fee: int, taker: bool):  # noqa: PLR0917 -- njit helper over positional arrays/scalars
    f = out[n_out]
    f["rec_id"] = 0
    f["ts"] = now
    f["order_id"] = o["order_id"]
    f["count"] = count
    f["fee"] = fee
    f["market"] = o["market"]
    f["price"] = price
    f["side"] = o["side"]
    f["action"] = o["action"]
    f["is_taker"] = 1 if taker else 0
    return n_out + 1


@njit(cache=True)
def _book_fill(pos, o, count: int, price: int, fee: int, taker: bool) -> None:  # noqa: PLR0917 -- njit helper over positional arrays/scalars
    # one fill of order ``o`` at ``price`` (its own scale) into its market's position
    m = o["market"]
    before = pos[m]["cash"]
    apply_fill(pos[m : m + 1], int(o["side"]), int(o["action"]), count, count * price, fee)
    paid = before - pos[m]["cash"] - fee  # money paid (>0) or received (<0) for contracts
    old_rem = o["remaining"]
    o["filled"] += count
    o["remaining"] = old_rem - count
    o["notional"] += count * price
    if taker:
        o["taker_fees"] += fee
        o["taker_cost"] += paid
    else:
        o["maker_fees"] += fee
        o["maker_cost"] += paid
    if old_rem > 0:
        o["reserve"] = o["reserve"] * o["remaining"] // old_rem
    if o["remaining"] <= 0:
        o["status"] = ORD_EXECUTED
        o["reserve"] = 0


# =========================================================================== taker


@njit(cache=True)
def paper_submit(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    orders: np.ndarray,
    i: int,
    active: np.ndarray,
    ctl: np.ndarray,
    pos: np.ndarray,
    qty: np.ndarray,
    best: np.ndarray,
    consumed: np.ndarray,
    cons_seen: np.ndarray,
    start_cash: int,
    min_lp: int,
    now: int,
    out: np.ndarray,
) -> tuple[int, int]:
    """Check, match and (GTC) rest order ``i``; its fields are set, status ORD_RESTING.

    Order of checks, as Kalshi applies them: post_only cross, reduce_only, collateral
    (cash - reserved >= opening cost at the limit + taker fee), fill_or_kill fillable.
    Then the taker walk over the opposite ladder (best first, down to the limit, skipping
    liquidity we already consumed), one fill per level; then a GTC remainder rests at the
    back of the queue, an IOC/FOK remainder is canceled.

    Args:
        orders: PAPER_ORDER_DTYPE [>i]; ``orders[i]`` is the new order.
        i: its index.
        active, ctl: the resting-order list and control array of the book.
        pos: POSITION_DTYPE [capacity] per market slot.
        qty, best: the shared BookSet arrays (read only).
        consumed, cons_seen: int64 [capacity, 2, N_PRICES] consumption ladders.
        start_cash: the account's starting cash (money).
        min_lp: self-trade guard: lowest take-ladder price the walk may reach (-1: none);
            levels below it would trade against our own resting order.
        now: timestamp (ns) written into fills.
        out: PAPER_FILL_DTYPE [>= N_PRICES] receives the fills.

    Returns:
        (REJ_* code, fills written).  On a rejection nothing changed except the order's
        status (ORD_CANCELED).
    """
    o = orders[i]
    m = int(o["market"])
    bside, bprice = _as_buy(int(o["side"]), int(o["action"]), int(o["price"]))
    take = _other(bside)
    count = int(o["remaining"])
    top = int(best[m, take])
    if o["post_only"] != 0 and top != NO_PRICE and top + bprice >= PRICE_MAX:
        o["status"] = ORD_CANCELED
        return REJ_POST_ONLY_CROSS, 0
    position = pos[m]["position"]
    held_opp = -position if bside == SIDE_YES else position
    closable = max(held_opp - _committed_closes(orders, active, ctl, m, bside, i), 0)
    if o["reduce_only"] != 0 and count > closable:
        o["status"] = ORD_CANCELED
        return REJ_REDUCE_ONLY, 0
    need = required_collateral(count, bprice, closable)
    free = account_cash(pos, start_cash) - account_reserved(orders, active, ctl)
    if need > free:
        o["status"] = ORD_CANCELED
        return REJ_INSUFFICIENT_BALANCE, 0
    lo = max(PRICE_MAX - bprice, min_lp, 0)
    if o["tif"] == TIF_FOK:
        can = 0
        for lp in range(top, lo - 1, -1):
            can += _avail(qty, consumed, cons_seen, m, take, lp)
        if can < count:
            o["status"] = ORD_CANCELED
            return REJ_FOK_UNFILLED, 0
    o["reserve"] = need
    buy = o["action"] == ORDER_BUY
    n_out = 0
    lp = top
    while lp >= lo and o["remaining"] > 0 and n_out < out.shape[0]:
        a = _avail(qty, consumed, cons_seen, m, take, lp)
        if a > 0:
            n = min(a, int(o["remaining"]))
            px = PRICE_MAX - lp if buy else lp  # on the order's own scale
            fee = taker_fee(n, px, FEE_ROUND_CURRENT)
            _consume(qty, consumed, cons_seen, m, take, lp, n)
            _book_fill(pos, o, n, px, fee, True)
            n_out = _write_fill(out, n_out, o, now, n, px, fee, True)
        lp -= 1
    if o["remaining"] > 0:
        if o["tif"] == TIF_GTC and min_lp <= PRICE_MAX - bprice:
            o["status"] = ORD_RESTING
            level = int(qty[m, bside, bprice])
            o["queue_ahead"] = level
            o["level_seen"] = level
            active[ctl[CTL_N_ACTIVE]] = i
            ctl[CTL_N_ACTIVE] += 1
        else:
            o["status"] = ORD_CANCELED
            o["reserve"] = 0
    return REJ_OK, n_out


# =========================================================================== resting


@njit(cache=True)
def _prob_ahead(front: float, back: float, power: float) -> float:
    # share of a level decrease taken from ahead of us: 1 - f(back) / (f(back) + f(front))
    # (hftbacktest's power probability queue function)
    fb = back**power
    ff = front**power
    if fb + ff <= 0.0:
        return 0.5
    return ff / (fb + ff)


@njit(cache=True)
def _queue_on_level(o, level: int, model: int, power: float) -> None:
    seen = int(o["level_seen"])
    if level < seen:
        if model == QUEUE_PROB:
            chg = seen - level
            front = float(o["queue_ahead"])
            back = float(max(seen - o["queue_ahead"], 0))
            p = _prob_ahead(front, back, power)
            est = front - p * chg
            behind_left = back - (1.0 - p) * chg
            if behind_left < 0.0:
                est += behind_left  # more left than stood behind us: the rest was ahead
            o["queue_ahead"] = max(int(np.floor(est)), 0)
        o["queue_ahead"] = min(int(o["queue_ahead"]), level)
    o["level_seen"] = level


@njit(cache=True)
def _compact(orders, active, ctl) -> None:
    k = 0
    for r in range(ctl[CTL_N_ACTIVE]):
        j = active[r]
        if orders[j]["status"] == ORD_RESTING:
            active[k] = j
            k += 1
    ctl[CTL_N_ACTIVE] = k


@njit(cache=True)
def paper_on_book(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    orders: np.ndarray,
    active: np.ndarray,
    ctl: np.ndarray,
    pos: np.ndarray,
    qty: np.ndarray,
    best: np.ndarray,
    consumed: np.ndarray,
    cons_seen: np.ndarray,
    slots: np.ndarray,
    dirty: np.ndarray,
    maker_fees: np.ndarray,
    queue_model: int,
    power: float,
    now: int,
    out: np.ndarray,
) -> int:
    """Resting orders in the changed markets react to their books (after the feed applied).

    Per resting order in ``slots``: opposite liquidity crossing our price fills us as maker
    at our price (and is consumed); then the queue model sees our level's new quantity.

    Args:
        orders, active, ctl, pos, qty, best, consumed, cons_seen: as ``paper_submit``.
        slots: int [n] book slots whose books changed.
        dirty: uint8 [capacity] scratch, all 0 (left all 0).
        maker_fees: uint8 [capacity], 1 where the market charges maker fees.
        queue_model: QUEUE_CONSERVATIVE / QUEUE_PROB.
        power: exponent of the QUEUE_PROB power model.
        now: timestamp (ns) written into fills.
        out: PAPER_FILL_DTYPE buffer.

    Returns:
        Fills written to ``out`` (stops early when ``out`` is full; call again).
    """
    for k in range(slots.shape[0]):
        s = slots[k]
        if 0 <= s < dirty.shape[0]:
            dirty[s] = 1
    n_out = 0
    for r in range(ctl[CTL_N_ACTIVE]):
        o = orders[active[r]]
        m = int(o["market"])
        if dirty[m] == 0 or o["status"] != ORD_RESTING:
            continue
        bside, bprice = _as_buy(int(o["side"]), int(o["action"]), int(o["price"]))
        take = _other(bside)
        px = int(o["price"])
        lp = int(best[m, take])
        while lp >= PRICE_MAX - bprice and o["remaining"] > 0 and n_out < out.shape[0]:
            a = _avail(qty, consumed, cons_seen, m, take, lp)
            if a > 0:
                n = min(a, int(o["remaining"]))
                fee = maker_fee(n, px, FEE_ROUND_CURRENT) if maker_fees[m] else 0
                _consume(qty, consumed, cons_seen, m, take, lp, n)
                _book_fill(pos, o, n, px, fee, False)
                n_out = _write_fill(out, n_out, o, now, n, px, fee, False)
            lp -= 1
        if o["status"] == ORD_RESTING:
            _queue_on_level(o, int(qty[m, bside, bprice]), queue_model, power)
    for k in range(slots.shape[0]):
        s = slots[k]
        if 0 <= s < dirty.shape[0]:
            dirty[s] = 0
    _compact(orders, active, ctl)
    return n_out


@njit(cache=True)
def paper_on_trades(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    orders: np.ndarray,
    active: np.ndarray,
    ctl: np.ndarray,
    pos: np.ndarray,
    trades: np.ndarray,
    maker_fees: np.ndarray,
    now: int,
    out: np.ndarray,
) -> int:
    """Public trades hit the ladders our resting orders sit on.

    A taker buying YES consumes NO bids (and the other way round).  On our ladder a trade
    at our price eats ``queue_ahead`` first, then fills us; a trade through our price fills
    us up to its count.  What our orders take from one trade is not offered to our later
    orders (placement order).

    Args:
        orders, active, ctl, pos: as ``paper_submit``.
        trades: TRADE_DTYPE [n] (``market`` = book slot, ``yes_price``, ``taker_side``).
        maker_fees: uint8 [capacity], 1 where the market charges maker fees.
        now: timestamp (ns) written into fills.
        out: PAPER_FILL_DTYPE buffer.

    Returns:
        Fills written to ``out``.
    """
    n_out = 0
    for t in range(trades.shape[0]):
        tr = trades[t]
        m = int(tr["market"])
        ladder = _other(int(tr["taker_side"]))  # the ladder the taker consumed
        tp = int(tr["yes_price"]) if ladder == SIDE_YES else PRICE_MAX - int(tr["yes_price"])
        left = int(tr["count"])
        for r in range(ctl[CTL_N_ACTIVE]):
            if left <= 0 or n_out >= out.shape[0]:
                break
            o = orders[active[r]]
            if o["market"] != m or o["status"] != ORD_RESTING:
                continue
            bside, bprice = _as_buy(int(o["side"]), int(o["action"]), int(o["price"]))
            if bside != ladder or tp > bprice:
                continue
            n = 0
            if tp < bprice:
                n = min(left, int(o["remaining"]))
            else:
                eaten = min(left, int(o["queue_ahead"]))
                o["queue_ahead"] -= eaten
                o["level_seen"] = max(int(o["level_seen"]) - eaten, 0)
                n = min(left - eaten, int(o["remaining"]))
            if n > 0:
                px = int(o["price"])
                fee = maker_fee(n, px, FEE_ROUND_CURRENT) if maker_fees[m] else 0
                _book_fill(pos, o, n, px, fee, False)
                n_out = _write_fill(out, n_out, o, now, n, px, fee, False)
                left -= n
    _compact(orders, active, ctl)
    return n_out


# =========================================================================== cancel, settle


@njit(cache=True)
def paper_cancel(orders: np.ndarray, i: int, active: np.ndarray, ctl: np.ndarray) -> int:
    """Cancel order ``i`` if it rests; returns the count units canceled (0 if none)."""
    o = orders[i]
    if o["status"] != ORD_RESTING:
        return 0
    n = int(o["remaining"])
    o["status"] = ORD_CANCELED
    o["reserve"] = 0
    _compact(orders, active, ctl)
    return n


@njit(cache=True)
def paper_decrease(orders: np.ndarray, i: int, active: np.ndarray, ctl: np.ndarray, by: int) -> int:
    """Reduce resting order ``i``'s remaining count by ``by`` (0 < by); its queue place stays.

    Returns:
        The new remaining count (0: the order is canceled).
    """
    o = orders[i]
    if o["status"] != ORD_RESTING:
        return 0
    old = int(o["remaining"])
    new = max(old - by, 0)
    o["count"] -= old - new
    o["remaining"] = new
    o["reserve"] = o["reserve"] * new // old if old > 0 else 0
    if new == 0:
        o["status"] = ORD_CANCELED
        _compact(orders, active, ctl)
    return new


@njit(cache=True)
def paper_settle(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    orders: np.ndarray, active: np.ndarray, ctl: np.ndarray, pos: np.ndarray, m: int, yes: bool
) -> tuple[int, int, int]:
    """Determine market ``m``: cancel its resting orders, pay out the position.

    Returns:
        (position before, cost basis before, payout money).
    """
    for r in range(ctl[CTL_N_ACTIVE]):
        o = orders[active[r]]
        if o["market"] == m and o["status"] == ORD_RESTING:
            o["status"] = ORD_CANCELED
            o["reserve"] = 0
    _compact(orders, active, ctl)
    position = int(pos[m]["position"])
    basis = int(pos[m]["cost_basis"])
    paid = settle(pos[m : m + 1], yes)
    return position, basis, paid


@njit(cache=True)
def paper_replay_fills(pos: np.ndarray, fills: np.ndarray) -> None:
    """Book persisted fills into positions, in order (account rebuild after a restart).

    The same ``apply_fill`` call with the same arguments as the live path, so the rebuilt
    positions, cash and fees equal the live ones exactly.

    Args:
        pos: POSITION_DTYPE [capacity], market slots as in ``fills['market']``.
        fills: PAPER_FILL_DTYPE [n].
    """
    for k in range(fills.shape[0]):
        f = fills[k]
        m = f["market"]
        px = int(f["price"])
        n = int(f["count"])
        apply_fill(pos[m : m + 1], int(f["side"]), int(f["action"]), n, n * px, int(f["fee"]))
