"""The paper account's batch kernels: one account's orders against the shared live books.

``kalshi_rl.trade.paper.PaperClient`` keeps its state in arrays -- orders as the engine's
ORDER_DTYPE plus a PAPER_ORDER_EXTRA_DTYPE row each, one POSITION_DTYPE per book slot, the
engine's liquidity state (one LIQUIDITY_DTYPE record ``liq[m]`` per slot) and one FEE_DTYPE
per slot -- and moves them only through these kernels.  They are orchestration: every rule
is the engine's (``core.orders.order_check`` / ``collateral_need``, ``core.matching.taker_match`` /
``maker_fill``, ``core.liquidity``, ``core.queue``, ``core.account``),
the same kernels the env uses, so the env and the paper client fill alike.

What is specific to one multi-market account:

* Cash is shared by all markets: ``pos[m]['cash']`` holds market m's cash flow and the
  account's cash is ``start_cash + sum(pos['cash'])``.  An engine call that checks cash
  sees the account's *free* cash (cash minus what resting orders hold) in ``pos[m]`` for
  the duration of the call (``_with_free_cash``).
* Resting orders hold collateral (``extra['reserve']``, ``collateral_need`` at placement,
  shrinking with the remaining count), and held contracts already promised to resting
  closing orders cannot be promised again (``effective_position``).
* The book view is the live BookSet's top ``px.shape[1]`` levels (``core.book.book_top_k``).
* Trades through a resting order's price fill it up to the trade's count, and one trade
  is not handed to two of our orders (placement order).

Kernels never raise; they return REJ_* codes / counts.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from core.account import book_fill, settle
from core.book import book_top_k
from core.dtypes import (
    COUNT_SCALE,
    NO_PRICE,
    ORD_CANCELED,
    ORD_EXECUTED,
    ORD_RESTING,
    ORDER_BUY,
    POE_CREATED,
    POE_FILLED,
    PRICE_MAX,
    REJ_NONE,
    SIDE_YES,
    TIF_FOK,
    TIF_GTC,
)
from core.liquidity import best_available, consume, consumed_at, liquidity_on_level
from core.matching import ladder_to_order_price, maker_fill, take_ladder, taker_match
from core.orders import collateral_need, order_check
from core.queue import queue_join, queue_on_level, queue_on_trade_yes, rest_level, resting_crossed
from core.records import other_side
from core.ring import ring_push_batch

# slots of the int64 control array of a paper book
CTL_N_ACTIVE = 0  # resting orders listed in ``active``
CTL_WATCH = 1  # set by paper_on_book: book updates can still matter (needs_book_updates)
CTL_LEN = 4
VIEW_LEVELS = 64  # depth per side of the book view a taker walk sees
MAX_ORDER_COUNT = 1_000_000_000 * COUNT_SCALE  # a sanity bound on one order (count units)

# ``paper_taker_submit`` refusals that are not engine REJ_* codes (those are >= 0)
TAKER_NO_BOOK = -1  # the market's book is not valid (not served by the feed)
TAKER_OFF_GRID = -2  # the limit is off the market's tick grid (or outside 1..999)
TAKER_BAD_COUNT = -3  # count outside 1..MAX_ORDER_COUNT
TAKER_I = 8  # position of the new order's index in ``paper_taker_submit``'s arguments
TAKER_POS = 4  # ... and of the account's positions
TAKER_LIQ = 5  # ... and of its liquidity state per slot


# =========================================================================== account


@njit(cache=True)
def account_cash(pos: np.ndarray, start_cash: int) -> int:
    """Cash of the account: start cash plus every market's cash flow (money)."""
    total = start_cash
    for m in range(pos.shape[0]):
        total += pos[m]["cash"]
    return total


@njit(cache=True)
def account_reserved(extra: np.ndarray, active: np.ndarray, ctl: np.ndarray) -> int:
    """Collateral held by resting orders (money)."""
    total = 0
    for k in range(ctl[CTL_N_ACTIVE]):
        total += extra[active[k]]["reserve"]
    return total


@njit(cache=True)
def effective_position(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    orders: np.ndarray, active: np.ndarray, ctl: np.ndarray, pos: np.ndarray, m: int, skip: int
) -> int:
    """Market ``m``'s position less what resting orders (but ``skip``) would already close.

    A held YES contract promised to a resting sell cannot also make a second sell free.
    """
    p = int(pos[m]["position"])
    for k in range(ctl[CTL_N_ACTIVE]):
        j = active[k]
        o = orders[j]
        if j == skip or o["market"] != m or o["status"] != ORD_RESTING:
            continue
        rem = int(o["remaining"])
        buys_yes = (o["side"] == SIDE_YES) == (o["action"] == ORDER_BUY)
        if buys_yes and p < 0:
            p += min(rem, -p)
        elif not buys_yes and p > 0:
            p -= min(rem, p)
    return p


@njit(cache=True)
def needs_book_updates(liq: np.ndarray, ctl: np.ndarray) -> bool:
    """True when a book change can matter: something rests or something is consumed."""
    if ctl[CTL_N_ACTIVE] > 0:
        return True
    for m in range(liq.shape[0]):  # noqa: SIM110 -- a plain loop compiles in njit
        if liq[m]["n"][0] + liq[m]["n"][1] > 0:
            return True
    return False


@njit(cache=True, inline="always")
def _set_free_cash(pos: np.ndarray, m: int, free: int) -> int:
    # let the engine see the account's free cash in pos[m]; returns what to restore
    saved = pos[m]["cash"]
    pos[m]["cash"] = free
    return saved


@njit(cache=True, inline="always")
def _restore_cash(pos: np.ndarray, m: int, free: int, saved: int) -> None:
    pos[m]["cash"] = saved + (pos[m]["cash"] - free)


@njit(cache=True, inline="always")
def _shrink_reserve(extra: np.ndarray, j: int, old_rem: int, new_rem: int) -> None:
    if new_rem <= 0 or old_rem <= 0:
        extra[j]["reserve"] = 0
    else:
        extra[j]["reserve"] = extra[j]["reserve"] * new_rem // old_rem


@njit(cache=True)
def _compact(orders: np.ndarray, active: np.ndarray, ctl: np.ndarray) -> None:
    k = 0
    for r in range(ctl[CTL_N_ACTIVE]):
        j = active[r]
        if orders[j]["status"] == ORD_RESTING:
            active[k] = j
            k += 1
    ctl[CTL_N_ACTIVE] = k


# =========================================================================== taker


@njit(cache=True)
def paper_submit(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    orders: np.ndarray,
    extra: np.ndarray,
    i: int,
    active: np.ndarray,
    ctl: np.ndarray,
    pos: np.ndarray,
    qty: np.ndarray,
    best: np.ndarray,
    liq: np.ndarray,
    fees: np.ndarray,
    start_cash: int,
    min_lp: int,
    ts_ms: int,
    px: np.ndarray,
    vq: np.ndarray,
    fills: np.ndarray,
) -> tuple[int, int]:
    """Check, match and (GTC) rest order ``i`` (side/action/price/count/remaining/tif set).

    ``core.orders.order_check`` (reduce-only, post-only cross, collateral against the free
    cash; grid and market state are checked by the caller), then fill-or-kill's all-or-
    nothing test, then ``core.matching.taker_match`` over the book view, then a GTC
    remainder joins the back of its level (``core.queue.queue_join``) holding its
    collateral; an IOC/FOK remainder is canceled.

    Args:
        orders, extra: ORDER_DTYPE / PAPER_ORDER_EXTRA_DTYPE arrays; ``i`` the new order.
        active, ctl: resting-order list and control array.
        pos: POSITION_DTYPE [cap]; qty, best: the BookSet arrays (read only).
        liq: LIQUIDITY_DTYPE [cap], the liquidity state per slot; fees: FEE_DTYPE [cap].
        start_cash: the account's starting cash, money.
        min_lp: self-trade guard: lowest take-ladder price the walk may reach (-1: none).
        ts_ms: fill timestamp (ms).
        px, vq: int16/int64 [2, K] scratch for the book view.
        fills: FILL_DTYPE [>= K] receives the fills.

    Returns:
        (REJ_* code, fills written).  On a rejection nothing changed but the order's status
        (ORD_CANCELED).
    """
    book_top_k(qty, best, int(orders[i]["market"]), px.shape[1], px, vq)
    return paper_submit_on(
        orders, extra, i, active, ctl, pos, qty, liq, fees, start_cash, min_lp, ts_ms, px, vq,
        fills,
    )  # fmt: skip


@njit(cache=True)
def paper_submit_on(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    orders: np.ndarray,
    extra: np.ndarray,
    i: int,
    active: np.ndarray,
    ctl: np.ndarray,
    pos: np.ndarray,
    qty: np.ndarray,
    liq: np.ndarray,
    fees: np.ndarray,
    start_cash: int,
    min_lp: int,
    ts_ms: int,
    px: np.ndarray,
    vq: np.ndarray,
    fills: np.ndarray,
) -> tuple[int, int]:
    """``paper_submit`` against the book view ``px``/``vq`` as given (not read here).

    The view may be an earlier book than the live one (an order executing at the book it
    arrived on, as the env executes it); ``qty`` (the live book) only places a GTC
    remainder in its queue.
    """
    o = orders[i]
    m = int(o["market"])
    side = int(o["side"])
    action = int(o["action"])
    count = int(o["remaining"])
    free = account_cash(pos, start_cash) - account_reserved(extra, active, ctl)
    eff = effective_position(orders, active, ctl, pos, m, i)
    rej = order_check(
        side, action, int(o["price"]), count, 1, 1, o["post_only"] != 0, o["reduce_only"] != 0,
        True, eff, free, px, vq, liq[m : m + 1], fees[m : m + 1],
    )  # fmt: skip
    if rej != REJ_NONE:
        o["status"] = ORD_CANCELED
        return rej, 0
    limit = int(o["price"])
    if min_lp >= 0:  # trade only strictly better than our own resting order
        walk = min(limit, PRICE_MAX - min_lp) if action == ORDER_BUY else max(limit, min_lp)
    else:
        walk = limit
    if o["tif"] == TIF_FOK:
        ladder = take_ladder(side, action)
        can = 0
        for k in range(px.shape[1]):
            lp = int(px[ladder, k])
            if lp == NO_PRICE:
                break
            price = ladder_to_order_price(side, action, lp)
            if (action == ORDER_BUY and price > walk) or (action != ORDER_BUY and price < walk):
                break
            can += max(int(vq[ladder, k]) - consumed_at(liq[m : m + 1], ladder, lp), 0)
        if can < count:
            o["status"] = ORD_CANCELED
            return REJ_NONE, 0
    o["price"] = walk
    saved = _set_free_cash(pos, m, free)
    n = taker_match(
        orders[i : i + 1], pos[m : m + 1], px, vq, liq[m : m + 1], fees[m : m + 1], 1, ts_ms,
        fills,
    )  # fmt: skip
    _restore_cash(pos, m, free, saved)
    o["price"] = limit
    rem = int(o["remaining"])
    if rem <= 0:
        o["status"] = ORD_EXECUTED
        extra[i]["reserve"] = 0
    elif o["tif"] == TIF_GTC and walk == limit:
        ladder, our = rest_level(side, action, limit)
        queue_join(orders[i : i + 1], int(qty[m, ladder, our]))
        need = collateral_need(eff, side, action, limit, rem, fees[m : m + 1])
        extra[i]["reserve"] = max(need, 0)
        active[ctl[CTL_N_ACTIVE]] = i
        ctl[CTL_N_ACTIVE] += 1
    else:
        o["status"] = ORD_CANCELED
        extra[i]["reserve"] = 0
    return REJ_NONE, n


# =========================================================================== resting


@njit(cache=True)
def _maker(  # noqa: PLR0917 -- njit helper over positional arrays/scalars
    orders, extra, j, active, ctl, pos, fees, start_cash, count, ts_ms, fill_out
) -> int:
    # fill ``count`` of resting order j (engine's maker_fill) against the account's free cash
    o = orders[j]
    m = int(o["market"])
    old = int(o["remaining"])
    free = account_cash(pos, start_cash) - account_reserved(extra, active, ctl)
    free += extra[j]["reserve"]  # this order's own collateral is there to pay for it
    saved = _set_free_cash(pos, m, free)
    c = maker_fill(orders[j : j + 1], pos[m : m + 1], count, fees[m : m + 1], ts_ms, fill_out)
    _restore_cash(pos, m, free, saved)
    if c > 0:
        _shrink_reserve(extra, j, old, int(o["remaining"]))
    return c


@njit(cache=True)
def _forget_emptied(qty: np.ndarray, liq: np.ndarray, m: int) -> None:
    # the engine's live rule: consumption at a level is forgotten once the level emptied
    for ladder in range(2):
        k = int(liq[m]["n"][ladder])
        for t in range(k - 1, -1, -1):
            if t >= liq[m]["n"][ladder]:
                continue
            p = int(liq[m]["px"][ladder, t])
            liquidity_on_level(liq[m : m + 1], ladder, p, int(qty[m, ladder, p]))


@njit(cache=True)
def paper_on_book(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    orders: np.ndarray,
    extra: np.ndarray,
    active: np.ndarray,
    ctl: np.ndarray,
    pos: np.ndarray,
    qty: np.ndarray,
    best: np.ndarray,
    liq: np.ndarray,
    fees: np.ndarray,
    qm: np.ndarray,
    start_cash: int,
    slots: np.ndarray,
    dirty: np.ndarray,
    ts_ms: int,
    px: np.ndarray,
    vq: np.ndarray,
    fills: np.ndarray,
) -> int:
    """The books of ``slots`` changed (the feed applied deltas/snapshots): react.

    Per changed market: consumption at emptied levels is forgotten; each resting order
    first fills as maker against opposite liquidity that now crosses its price
    (``core.queue.resting_crossed``; the crossing quantity is consumed), then its queue
    sees its level's new quantity (``core.queue.queue_on_level``).

    Args:
        as ``paper_submit``; qm: QUEUE_MODEL_DTYPE [1]; slots: int [n] changed book slots
        (repeats fine); dirty: uint8 [cap] scratch, all 0 (left all 0).

    Returns:
        Fills written to ``fills`` (stops when it is full; call again); ``ctl[CTL_WATCH]``
        says whether later book updates can still matter.
    """
    for k in range(slots.shape[0]):
        s = slots[k]
        if 0 <= s < dirty.shape[0] and dirty[s] == 0:
            dirty[s] = 1
            if liq[s]["n"][0] + liq[s]["n"][1] > 0:
                _forget_emptied(qty, liq, s)
    n = 0
    view_of = -1
    for r in range(ctl[CTL_N_ACTIVE]):
        j = active[r]
        o = orders[j]
        m = int(o["market"])
        if dirty[m] == 0 or o["status"] != ORD_RESTING:
            continue
        ladder, our = rest_level(int(o["side"]), int(o["action"]), int(o["price"]))
        opp = other_side(ladder)
        want = 0
        top = int(best[m, opp])
        if top != NO_PRICE and top + our >= PRICE_MAX:  # the book shows a cross: look closer
            if view_of != m:
                book_top_k(qty, best, m, px.shape[1], px, vq)
                view_of = m
            want = resting_crossed(orders[j : j + 1], best_available(px, vq, liq[m : m + 1], opp))
        for k in range(px.shape[1]):
            lp = int(px[opp, k])
            if want <= 0 or lp == NO_PRICE or lp + our < PRICE_MAX or n >= fills.shape[0]:
                break
            avail = int(vq[opp, k]) - consumed_at(liq[m : m + 1], opp, lp)
            if avail <= 0:
                continue
            c = _maker(orders, extra, j, active, ctl, pos, fees, start_cash,
                       min(avail, want), ts_ms, fills[n])  # fmt: skip
            if c <= 0:
                break
            consume(liq[m : m + 1], opp, lp, c)
            want -= c
            n += 1
        if o["status"] == ORD_RESTING:
            queue_on_level(orders[j : j + 1], qm, int(qty[m, ladder, our]))
    for k in range(slots.shape[0]):
        s = slots[k]
        if 0 <= s < dirty.shape[0]:
            dirty[s] = 0
    _compact(orders, active, ctl)
    ctl[CTL_WATCH] = needs_book_updates(liq, ctl)
    return n


@njit(cache=True)
def paper_on_trades(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    orders: np.ndarray,
    extra: np.ndarray,
    active: np.ndarray,
    ctl: np.ndarray,
    pos: np.ndarray,
    fees: np.ndarray,
    qm: np.ndarray,
    start_cash: int,
    trades: np.ndarray,
    ts_ms: int,
    fills: np.ndarray,
) -> int:
    """Public trades hit the ladders our resting orders sit on (``core.queue``).

    Args:
        as ``paper_submit``; trades: TRADE_DTYPE [n] (``market`` = book slot).

    Returns:
        Fills written to ``fills``.
    """
    n = 0
    for t in range(trades.shape[0]):
        tr = trades[t]
        m = int(tr["market"])
        left = int(tr["count"])
        for r in range(ctl[CTL_N_ACTIVE]):
            if left <= 0 or n >= fills.shape[0]:
                break
            j = active[r]
            o = orders[j]
            if o["market"] != m or o["status"] != ORD_RESTING:
                continue
            want = queue_on_trade_yes(
                orders[j : j + 1], qm, int(tr["yes_price"]), int(tr["taker_side"]), left
            )
            want = min(want, left)  # a trade fills us by at most its own count
            if want <= 0:
                continue
            c = _maker(orders, extra, j, active, ctl, pos, fees, start_cash, want, ts_ms,
                       fills[n])  # fmt: skip
            if c > 0:
                left -= c
                n += 1
    _compact(orders, active, ctl)
    return n


# =========================================================================== cancel, settle


@njit(cache=True)
def paper_cancel(
    orders: np.ndarray, extra: np.ndarray, i: int, active: np.ndarray, ctl: np.ndarray
) -> int:
    """Cancel order ``i`` if it rests; returns the count units canceled (0 if none)."""
    o = orders[i]
    if o["status"] != ORD_RESTING:
        return 0
    n = int(o["remaining"])
    o["status"] = ORD_CANCELED
    extra[i]["reserve"] = 0
    _compact(orders, active, ctl)
    return n


@njit(cache=True)
def paper_decrease(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    orders: np.ndarray, extra: np.ndarray, i: int, active: np.ndarray, ctl: np.ndarray, by: int
) -> int:
    """Reduce resting order ``i``'s remaining count by ``by`` (> 0); its queue place stays.

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
    _shrink_reserve(extra, i, old, new)
    if new == 0:
        o["status"] = ORD_CANCELED
        _compact(orders, active, ctl)
    return new


@njit(cache=True)
def paper_settle(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    orders: np.ndarray,
    extra: np.ndarray,
    active: np.ndarray,
    ctl: np.ndarray,
    pos: np.ndarray,
    m: int,
    yes: bool,
) -> tuple[int, int, int]:
    """Determine market ``m``: cancel its resting orders, pay out (``core.account.settle``).

    Returns:
        (position before, cost basis before, payout money).
    """
    for r in range(ctl[CTL_N_ACTIVE]):
        j = active[r]
        if orders[j]["market"] == m and orders[j]["status"] == ORD_RESTING:
            orders[j]["status"] = ORD_CANCELED
            extra[j]["reserve"] = 0
    _compact(orders, active, ctl)
    position = int(pos[m]["position"])
    basis = int(pos[m]["cost_basis"])
    paid = settle(pos[m : m + 1], yes)
    return position, basis, paid


@njit(cache=True)
def paper_replay_fills(pos: np.ndarray, fills: np.ndarray) -> None:
    """Book persisted fills into positions, in order (account rebuild after a restart).

    ``core.account.book_fill`` with the arguments ``core.matching.record_fill`` used live
    (count, count * price, the exact cash change), so positions, cash and fees come back
    exactly.

    Args:
        pos: POSITION_DTYPE [cap], slots as in ``fills['market']``.
        fills: PAPER_FILL_DTYPE [n].
    """
    for k in range(fills.shape[0]):
        f = fills[k]
        m = f["market"]
        c = int(f["count"])
        book_fill(pos[m : m + 1], int(f["side"]), int(f["action"]), c, c * int(f["price"]),
                   int(f["cash"]))  # fmt: skip


# =========================================================================== records


@njit(cache=True)
def paper_init_order(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    orders: np.ndarray,
    extra: np.ndarray,
    i: int,
    now_ns: int,
    market: int,
    side: int,
    action: int,
    price: int,
    count: int,
    tif: int,
    flags: int,
    group: int,
) -> None:
    """Write a new order ``i`` (all fields, one call): ORD_RESTING until the engine says.

    Args:
        flags: bit 0 post_only, 1 reduce_only, 2 stp maker, 3 cancel_order_on_pause.
    """
    o = orders[i]
    e = extra[i]
    o["order_id"] = i + 1  # ids are dense from 1 (a rejected order gives its id back)
    o["ts"] = now_ns // 1_000_000
    o["count"] = count
    o["remaining"] = count
    o["filled"] = 0
    o["notional"] = 0
    o["fees"] = 0
    o["taker_fees"] = 0
    o["maker_fees"] = 0
    o["rounding_acc"] = 0
    o["queue_ahead"] = 0
    o["level_qty"] = 0
    o["trade_since"] = 0
    o["active_ts"] = o["ts"]
    o["ack_ts"] = o["ts"]
    o["market"] = market
    o["price"] = price
    o["side"] = side
    o["action"] = action
    o["tif"] = tif
    o["status"] = ORD_RESTING
    o["post_only"] = flags & 1
    o["reduce_only"] = (flags >> 1) & 1
    o["reject"] = 0
    e["group"] = group
    e["created_ns"] = now_ns
    e["updated_ns"] = now_ns
    e["reserve"] = 0
    e["taker_cost"] = 0
    e["maker_cost"] = 0
    e["stp"] = (flags >> 2) & 1
    e["cancel_on_pause"] = (flags >> 3) & 1


@njit(cache=True)
def paper_record_fills(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    src: np.ndarray, n: int, dst: np.ndarray, off: int, rec0: int, now_ns: int, extra: np.ndarray
) -> None:
    """Engine fills ``src[:n]`` (FILL_DTYPE) -> PAPER_FILL_DTYPE ``dst[off:off+n]``.

    rec_ids ``rec0..``, wall-clock ``now_ns``; each order's taker/maker cost (money of its
    contracts, count * price) grows in ``extra``.
    """
    for k in range(n):
        f = src[k]
        d = dst[off + k]
        d["rec_id"] = rec0 + k
        d["ts"] = now_ns
        d["order_id"] = f["order_id"]
        d["count"] = f["count"]
        d["fee"] = f["fee"]
        d["trade_fee"] = f["trade_fee"]
        d["rounding_fee"] = f["rounding_fee"]
        d["rebate"] = f["rebate"]
        d["cash"] = f["cash"]
        d["market"] = f["market"]
        d["price"] = f["price"]
        d["side"] = f["side"]
        d["action"] = f["action"]
        d["is_taker"] = f["is_taker"]
        j = int(f["order_id"]) - 1
        cost = int(f["count"]) * int(f["price"]) // 10
        if f["is_taker"]:
            extra[j]["taker_cost"] += cost
        else:
            extra[j]["maker_cost"] += cost


@njit(cache=True)
def paper_order_record(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    orders: np.ndarray,
    extra: np.ndarray,
    i: int,
    out: np.ndarray,
    rec_id: int,
    now_ns: int,
    event: int,
    coid: np.ndarray,
) -> None:
    """Order ``i``'s state as a PAPER_ORDER_EVENT_DTYPE record ``out[0]`` (a paper_orders row).

    Args:
        coid: uint8 bytes of its client_order_id (<= COID_MAX).
    """
    o = orders[i]
    e = extra[i]
    e["updated_ns"] = now_ns
    r = out[0]
    r["rec_id"] = rec_id
    r["ts"] = now_ns
    r["order_id"] = o["order_id"]
    r["group"] = e["group"]
    r["count"] = o["count"]
    r["remaining"] = o["remaining"]
    r["filled"] = o["filled"]
    r["notional"] = o["notional"]
    r["fees"] = o["fees"]
    r["taker_fees"] = o["taker_fees"]
    r["maker_fees"] = o["maker_fees"]
    r["rounding_acc"] = o["rounding_acc"]
    r["market"] = o["market"]
    r["price"] = o["price"]
    r["side"] = o["side"]
    r["action"] = o["action"]
    r["tif"] = o["tif"]
    r["status"] = o["status"]
    r["event"] = event
    r["flags"] = o["post_only"] | (o["reduce_only"] << 1) | (e["stp"] << 2)
    r["flags"] |= e["cancel_on_pause"] << 3
    n = coid.shape[0]
    r["coid_len"] = n
    for k in range(n):
        r["coid"][k] = coid[k]
    for k in range(n, r["coid"].shape[0]):  # no bytes of an earlier record left behind
        r["coid"][k] = 0


# =========================================================================== typed taker entry


@njit(cache=True)
def taker_self_trade_guard(orders: np.ndarray, active: np.ndarray, ctl: np.ndarray, i: int) -> int:
    """Lowest take-ladder price order ``i`` may reach without trading with our own orders.

    ``taker_at_cross`` self-trade prevention: the walk stops strictly before the best of
    our resting orders on the ladder it takes from.  Returns -1 when nothing of ours crosses.
    """
    o = orders[i]
    m = o["market"]
    ladder, our = rest_level(int(o["side"]), int(o["action"]), int(o["price"]))
    guard = -1
    for k in range(ctl[CTL_N_ACTIVE]):
        j = active[k]
        r = orders[j]
        if j == i or r["market"] != m or r["status"] != ORD_RESTING:
            continue
        rl, rp = rest_level(int(r["side"]), int(r["action"]), int(r["price"]))
        if rl == ladder or rp + our < PRICE_MAX:
            continue  # same ladder, or does not cross
        guard = max(guard, rp + 1)
    return guard


@njit(cache=True)
def _coid_default(prefix: np.ndarray, n: int, out: np.ndarray) -> int:
    # ``prefix`` + decimal ``n`` into out (the default client_order_id); returns its length
    k = prefix.shape[0]
    out[:k] = prefix
    digits = 1
    t = n
    while t >= 10:
        t //= 10
        digits += 1
    for d in range(digits - 1, -1, -1):
        out[k + d] = 48 + n % 10
        n //= 10
    return k + digits


@njit(cache=True)
def paper_taker_submit(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    orders: np.ndarray,
    extra: np.ndarray,
    active: np.ndarray,
    ctl: np.ndarray,
    pos: np.ndarray,
    liq: np.ndarray,
    fees: np.ndarray,
    grid: np.ndarray,
    i: int,
    start_cash: int,
    now_ns: int,
    px: np.ndarray,
    vq: np.ndarray,
    fill_out: np.ndarray,
    hist: np.ndarray,
    n_hist: int,
    rec0: int,
    coid_prefix: np.ndarray,
    coid: np.ndarray,
    events: np.ndarray,
    rings_on: bool,
    ord_buf: np.ndarray,
    ord_ctl: np.ndarray,
    fill_buf: np.ndarray,
    fill_ctl: np.ndarray,
    qty: np.ndarray,
    best: np.ndarray,
    meta: np.ndarray,
    slot: int,
    side: int,
    action: int,
    price: int,
    count: int,
    tif: int,
) -> tuple[int, int, int, int, int]:
    """A typed taker order in one call: what ``PaperClient.submit`` does, without Python.

    Checks the limit is on the grid, the count in range and the book served, writes order ``i``
    (``paper_init_order``: no flags, no group, ``taker_at_cross``), runs it through
    ``paper_submit`` with the self-trade guard, books the fills into the history
    (``paper_record_fills``) and, when ``rings_on``, writes the order's events (FILLED if it
    filled, then CREATED -- the order the Python path emits them in) and pushes fills and
    events into the rings (the caller checked they have room and no overflow backlog).

    Args:
        orders ... fees: the client's arrays (as ``paper_submit``); grid: bool [1001]
            valid YES prices of the market; i: the new order's index.
        start_cash: the account's start cash; now_ns: the client's wall clock.
        px, vq, fill_out: scratch (as ``paper_submit``).
        hist, n_hist: PAPER_FILL_DTYPE fill history and its length (room for ``px``'s
            levels more); rec0: the next rec_id.
        coid_prefix: uint8 bytes of ``paper-<account>-``; coid: uint8 [COID_MAX] scratch.
        events: PAPER_ORDER_EVENT_DTYPE [2] out (the order's events, when ``rings_on``).
        ord_buf, ord_ctl, fill_buf, fill_ctl: the order-event and fill rings.
        qty, best, meta: the BookSet's arrays (``meta['valid']``); slot, side, action,
            price, count, tif: the order.

    The arguments up to ``fill_ctl`` are ``PaperClient.taker_prepare``'s tuple.

    Returns:
        (code, fills, rec_ids used, order's filled count, order's fees): code REJ_NONE,
        an engine REJ_* (the order is to be forgotten), or TAKER_* (nothing written).
    """
    yp = price if side == SIDE_YES else PRICE_MAX - price
    if yp <= 0 or yp >= PRICE_MAX or not grid[yp]:
        return TAKER_OFF_GRID, 0, 0, 0, 0
    if count <= 0 or count > MAX_ORDER_COUNT:
        return TAKER_BAD_COUNT, 0, 0, 0, 0
    if meta[slot]["valid"] == 0:
        return TAKER_NO_BOOK, 0, 0, 0, 0
    paper_init_order(orders, extra, i, now_ns, slot, side, action, price, count, tif, 0, -1)
    guard = taker_self_trade_guard(orders, active, ctl, i)
    rej, n = paper_submit(
        orders, extra, i, active, ctl, pos, qty, best, liq, fees, start_cash, guard,
        now_ns // 1_000_000, px, vq, fill_out,
    )  # fmt: skip
    if rej != REJ_NONE:
        return rej, 0, 0, 0, 0
    rec = rec0
    if n:
        paper_record_fills(fill_out, n, hist, n_hist, rec, now_ns, extra)
        rec += n
    if not rings_on:
        extra[i]["updated_ns"] = now_ns
        return REJ_NONE, n, rec - rec0, orders[i]["filled"], orders[i]["fees"]
    k = _coid_default(coid_prefix, i + 1, coid)
    ne = 0
    if n:
        paper_order_record(orders, extra, i, events[0:1], rec, now_ns, POE_FILLED, coid[:k])
        rec += 1
        ne = 1
    paper_order_record(orders, extra, i, events[ne : ne + 1], rec, now_ns, POE_CREATED, coid[:k])
    rec += 1
    ne += 1
    if n:
        ring_push_batch(fill_buf, fill_ctl, hist[n_hist : n_hist + n])
    ring_push_batch(ord_buf, ord_ctl, events[:ne])
    return REJ_NONE, n, rec - rec0, orders[i]["filled"], orders[i]["fees"]
