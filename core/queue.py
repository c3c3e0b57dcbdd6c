"""Resting limit orders in a book that does not contain them: where are we in the queue?

Our paper order is not in the recorded/live book we watch.  A buy of side s at p rests on
ladder s at p; a sell of side s at p rests on the other ladder at 1000 - p (``rest_level``).
ORDER_DTYPE keeps the queue state: ``queue_ahead`` (count units ahead of us), ``level_qty``
(others' quantity at our level when last seen) and ``trade_since`` (traded at our level since
that update, so a level decrease caused by trades is not counted twice).

One interface, the model chosen once (QUEUE_MODEL_DTYPE record from ``queue_model``):

* ``queue_join(order, level_qty)``            -- we join the back of the level.
* ``queue_on_trade(order, qm, price, count)``  -- a trade hit our ladder; returns the count
  that fills us now: trades at our price eat the queue ahead first, trades through our price
  fill all of us.
* ``queue_on_level(order, qm, new_qty)``       -- others' quantity at our level changed.
* ``queue_set_ahead(order, ahead)``            -- the exchange told us our position (FIFO).

Models (kind):

* QUEUE_CONSERVATIVE: the queue ahead shrinks only by trades at our price (and can never
  exceed the level).  Never fills earlier than the true FIFO queue would.
* QUEUE_PROB_POWER / QUEUE_PROB_LOG: a level decrease not explained by trades is split
  ahead/behind us: the share ahead is f(front) / (f(front) + f(back)), f(x) = x ** power or
  log(1 + x), as hftbacktest's probabilistic queue models; the part of the decrease larger
  than what stands behind must have been ahead.  The estimate is rounded up (more ahead).
* QUEUE_FIFO_EXACT: position from the exchange (``queue_set_ahead``, e.g. Kalshi's queue
  position endpoint or the sim's FIFO book); between updates it moves like the conservative
  model.

Fills themselves (fees, netting, collateral) are ``core.matching.maker_fill``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from core.account import first_record, other_side
from core.dtypes import (
    NO_PRICE,
    ORD_RESTING,
    ORDER_BUY,
    PRICE_MAX,
    QUEUE_CONSERVATIVE,
    QUEUE_FIFO_EXACT,
    QUEUE_MODEL_DTYPE,
    QUEUE_PROB_LOG,
    QUEUE_PROB_POWER,
    SIDE_YES,
)


@njit(cache=True, inline="always")
def rest_level(side: int, action: int, price: int) -> tuple[int, int]:
    """(ladder, price on that ladder's scale) where an order rests."""
    if action == ORDER_BUY:
        return side, price
    return other_side(side), PRICE_MAX - price


@njit(cache=True)
def queue_join(order: np.ndarray | np.void, level_qty: int) -> None:
    """Rest ``order`` at the back of its level (``level_qty`` = others' quantity there now)."""
    o = first_record(order)
    q = max(level_qty, 0)
    o["queue_ahead"] = q
    o["level_qty"] = q
    o["trade_since"] = 0
    o["status"] = ORD_RESTING if o["remaining"] > 0 else o["status"]


@njit(cache=True)
def queue_set_ahead(order: np.ndarray | np.void, ahead: int) -> None:
    """Set the exact queue position the exchange reported (QUEUE_FIFO_EXACT)."""
    o = first_record(order)
    o["queue_ahead"] = max(ahead, 0)


@njit(cache=True)
def queue_on_trade(
    order: np.ndarray | np.void, qm: np.ndarray, trade_price: int, count: int
) -> int:
    """A trade consumed the ladder our order rests on.

    Args:
        order: resting ORDER_DTYPE record/array(row 0).
        qm: QUEUE_MODEL_DTYPE [1] (every model treats trades alike).
        trade_price: on our *ladder's* scale; count: count units traded.

    Returns:
        count units that fill us now (not yet booked: ``core.matching.maker_fill``).
    """
    o = first_record(order)
    if o["status"] != ORD_RESTING or count <= 0:
        return 0
    _, our = rest_level(int(o["side"]), int(o["action"]), int(o["price"]))
    if trade_price < our:
        # a seller went below our bid: anyone trading beyond our price would have hit us first
        return int(o["remaining"])
    if trade_price != our:
        return 0
    eaten = min(count, int(o["queue_ahead"]))
    o["queue_ahead"] -= eaten
    o["trade_since"] += count
    return min(count - eaten, int(o["remaining"]))


@njit(cache=True)
def queue_on_trade_yes(
    order: np.ndarray | np.void, qm: np.ndarray, yes_price: int, taker_side: int, count: int
) -> int:
    """``queue_on_trade`` from a Kalshi trade message (YES price, taker side).

    A taker buying YES consumes NO bids, a taker buying NO consumes YES bids; a trade on the
    other ladder does not touch our order (returns 0).
    """
    o = first_record(order)
    ladder, _ = rest_level(int(o["side"]), int(o["action"]), int(o["price"]))
    if taker_side == ladder:
        return 0
    ladder_px = yes_price if ladder == SIDE_YES else PRICE_MAX - yes_price
    return queue_on_trade(order, qm, ladder_px, count)


@njit(cache=True, inline="always")
def _f(x: float, kind: int, power: float) -> float:
    if kind == QUEUE_PROB_LOG:
        return np.log1p(x)
    return x**power


@njit(cache=True)
def queue_on_level(order: np.ndarray | np.void, qm: np.ndarray, new_qty: int) -> None:
    """Others' quantity at our level is now ``new_qty``; update the queue ahead per the model."""
    o = first_record(order)
    new_qty = max(new_qty, 0)
    prev = int(o["level_qty"])
    traded = int(o["trade_since"])
    o["level_qty"] = new_qty
    o["trade_since"] = 0
    front = int(o["queue_ahead"])
    kind = int(qm[0]["kind"])
    chg = prev - new_qty - traded  # decrease not explained by trades
    if kind in (QUEUE_CONSERVATIVE, QUEUE_FIFO_EXACT) or chg <= 0:
        o["queue_ahead"] = min(front, new_qty)
        return
    back = max(prev - traded - front, 0)
    ff = _f(float(front), kind, qm[0]["power"])
    fb = _f(float(back), kind, qm[0]["power"])
    share = 1.0 if ff + fb <= 0.0 else ff / (ff + fb)
    ahead_cut = share * chg + max((1.0 - share) * chg - back, 0.0)
    est = int(np.ceil(front - ahead_cut - 1e-9))
    o["queue_ahead"] = min(max(est, 0), new_qty)


@njit(cache=True)
def resting_crossed(order: np.ndarray | np.void, opposite_best: int) -> int:
    """The other ladder's best bid reached our price (``our + opposite_best >= 1000``).

    Args:
        opposite_best: best bid of the ladder opposite to ours, own scale (NO_PRICE: none).

    Returns:
        count units that fill now (the whole remainder, at our price), or 0.
    """
    o = first_record(order)
    if o["status"] != ORD_RESTING or opposite_best == NO_PRICE:
        return 0
    _, our = rest_level(int(o["side"]), int(o["action"]), int(o["price"]))
    if our + opposite_best < PRICE_MAX:
        return 0
    return int(o["remaining"])


# =========================================================================== facade


def queue_model(kind: int = QUEUE_CONSERVATIVE, power: float = 2.0) -> np.ndarray:
    """A QUEUE_MODEL_DTYPE [1] record (validated): QUEUE_* kind and the power of PROB_POWER.

    Raises:
        ValueError: unknown kind or power <= 0.
    """
    if kind not in (QUEUE_CONSERVATIVE, QUEUE_PROB_POWER, QUEUE_PROB_LOG, QUEUE_FIFO_EXACT):
        raise ValueError(f"unknown queue model kind {kind}")
    if power <= 0:
        raise ValueError(f"queue model power must be > 0, got {power}")
    out = np.zeros(1, dtype=QUEUE_MODEL_DTYPE)
    out[0]["kind"] = kind
    out[0]["power"] = power
    return out
