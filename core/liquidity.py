"""Liquidity consumption: what our orders take from a book we are not in stays taken.

``liq`` is a LIQUIDITY_DTYPE [1] array (one per account and market: ``new_liquidity()``
or a length-1 slice ``liqs[i:i+1]``; not a bare record: Numba does not write a record's
nested arrays through to the caller when the record is passed alone).  It lists per
side up to CONSUMED_CAP prices with what we took there (``consumed_at``).  Available at a
level is ``qty - consumed``.  The consumption of a level is forgotten only when the book
shows the level gone (emptied); increases are new orders arriving behind and become available, but a
decrease never gives back what we took.  Why: the recorded book does not know our orders,
so a level we emptied still shows its old quantity; forgetting on any change would let a
policy take the same contracts twice.  With this rule a policy never fills more at a price
than the quantity that stood there plus what arrived later (tested).  Env: refresh from
each decision point's rows (``liquidity_refresh``); paper: per level change
(``liquidity_on_level``).  When a side's touched list is full, no new price is consumed
(the walk stops there: fewer fills, never more).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from core.dtypes import CONSUMED_CAP, LIQUIDITY_DTYPE, NO_PRICE


@njit(cache=True, inline="always")
def consumed_at(liq: np.ndarray, ladder: int, price: int) -> int:
    """What our orders took at (ladder, price) and the book still shows, count units."""
    r = liq[0]
    for j in range(r["n"][ladder]):
        if r["px"][ladder, j] == price:
            return int(r["qty"][ladder, j])
    return 0


@njit(cache=True, inline="always")
def best_available(px: np.ndarray, qty: np.ndarray, liq: np.ndarray, ladder: int) -> int:
    """Best bid price of ``ladder`` with quantity left after our consumption, or NO_PRICE."""
    r = liq[0]
    if r["n"][ladder] == 0:
        return int(px[ladder, 0])
    for i in range(px.shape[1]):
        lp = int(px[ladder, i])
        if lp == NO_PRICE:
            return NO_PRICE
        if int(qty[ladder, i]) - consumed_at(liq, ladder, lp) > 0:
            return lp
    return NO_PRICE


@njit(cache=True, inline="always")
def consume(liq: np.ndarray, ladder: int, price: int, count: int) -> bool:
    """Record ``count`` taken at (ladder, price).  False (nothing recorded) if the list is full."""
    r = liq[0]
    n = r["n"][ladder]
    for j in range(n):
        if r["px"][ladder, j] == price:
            r["qty"][ladder, j] += count
            return True
    if n >= CONSUMED_CAP:
        return False
    r["px"][ladder, n] = price
    r["qty"][ladder, n] = count
    r["n"][ladder] = n + 1
    return True


@njit(cache=True, inline="always")
def _forget(r, ladder, j):
    # swap-remove entry j of ``ladder``
    n = r["n"][ladder] - 1
    r["px"][ladder, j] = r["px"][ladder, n]
    r["qty"][ladder, j] = r["qty"][ladder, n]
    r["n"][ladder] = n


@njit(cache=True, inline="always")
def liquidity_refresh(px: np.ndarray, qty: np.ndarray, liq: np.ndarray) -> None:
    """Forget consumption at levels the book view shows gone (call once per new book row).

    A consumed price absent from the view is gone if the view covers it: the side has fewer
    than K levels, or the price is better than the worst level shown.  A price beyond the
    view's depth is unknown and keeps its consumption.
    """
    r = liq[0]
    k = px.shape[1]
    for ladder in range(2):
        worst = int(px[ladder, k - 1])
        j = 0
        while j < r["n"][ladder]:
            p = int(r["px"][ladder, j])
            found = False
            for i in range(k):
                lp = int(px[ladder, i])
                if lp == p:
                    found = int(qty[ladder, i]) > 0
                    break
                if lp == NO_PRICE or lp < p:
                    break
            if not found and (worst == NO_PRICE or p >= worst):
                _forget(r, ladder, j)
            else:
                j += 1


@njit(cache=True)
def liquidity_on_level(liq: np.ndarray, ladder: int, price: int, new_qty: int) -> None:
    """A live book level changed to ``new_qty``: forget our consumption there when it emptied."""
    if new_qty > 0:
        return
    r = liq[0]
    for j in range(r["n"][ladder]):
        if r["px"][ladder, j] == price:
            _forget(r, ladder, j)
            return


@njit(cache=True, inline="always")
def liquidity_clear(liq: np.ndarray) -> None:
    """Forget all consumption (new episode / new book)."""
    r = liq[0]
    r["n"][0] = 0
    r["n"][1] = 0


def new_liquidity(n: int = 1) -> np.ndarray:
    """LIQUIDITY_DTYPE [n], nothing consumed (one record per account and market)."""
    return np.zeros(n, dtype=LIQUIDITY_DTYPE)
