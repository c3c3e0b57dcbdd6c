"""Liquidity consumption: what our orders take from a book we are not in stays taken.

``liq`` is a LIQUIDITY_DTYPE [1] array (one per account and market: ``new_liquidity()``
or a length-1 slice ``liqs[i:i+1]``; not a bare record: Numba does not write a record's
nested arrays through to the caller when the record is passed alone).  It lists per side
up to CONSUMED_CAP prices with what we took there (``consumed_at``) and the level's
quantity when last seen.  Available at a level is ``qty - consumed``.

The rule: what we took stays taken until the book shows the level change.  The book we
watch does not contain our orders, so after we take 100 of a 100-lot level it still
shows 100.  When it later shows less, others traded or cancelled there: that decrease
first uses up our consumption (the real level would be empty already); an increase is new
orders arriving, available to us.  A level that disappears (inside the view) forgets our
consumption.  So a policy never fills more at a price than what stood there plus what
arrived later: fills <= first quantity + sum of increases (property-tested), and it is
never starved by a level that merely churns.  Env: ``liquidity_refresh`` once per
decision-point row; paper: ``liquidity_on_level`` per level change.  When a side's list
is full, no new price is consumed (the walk stops there: fewer fills, never more).
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
def consume(liq: np.ndarray, ladder: int, price: int, count: int, level_qty: int = -1) -> bool:
    """Record ``count`` taken at (ladder, price) whose level shows ``level_qty`` now.

    ``level_qty`` < 0 (not given): taken as ``count`` -- conservative, only a decrease below
    what we took then uses our consumption up.

    Returns:
        False (nothing recorded) if the side's list is full.
    """
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
    r["seen"][ladder, n] = level_qty if level_qty >= 0 else count
    r["n"][ladder] = n + 1
    return True


@njit(cache=True, inline="always")
def _forget(r, ladder, j):
    # swap-remove entry j of ``ladder``
    n = r["n"][ladder] - 1
    r["px"][ladder, j] = r["px"][ladder, n]
    r["qty"][ladder, j] = r["qty"][ladder, n]
    r["seen"][ladder, j] = r["seen"][ladder, n]
    r["n"][ladder] = n


@njit(cache=True, inline="always")
def _level_now(r, ladder, j, q):
    # the level of entry j shows q now: a decrease uses up consumption; True = forget it
    d = int(r["seen"][ladder, j]) - q
    r["seen"][ladder, j] = q
    if d > 0:
        r["qty"][ladder, j] = max(int(r["qty"][ladder, j]) - d, 0)
    return q <= 0 or r["qty"][ladder, j] <= 0


@njit(cache=True, inline="always")
def liquidity_refresh(px: np.ndarray, qty: np.ndarray, liq: np.ndarray) -> None:
    """Update consumption from a new book view (call once per new book row).

    A consumed price absent from the view is gone (quantity 0) if the view covers it: the
    side has fewer than K levels, or the price is better than the worst level shown; a
    price beyond the view's depth is unknown and keeps its state.
    """
    r = liq[0]
    k = px.shape[1]
    for ladder in range(2):
        worst = int(px[ladder, k - 1])
        j = 0
        while j < r["n"][ladder]:
            p = int(r["px"][ladder, j])
            q = -1
            for i in range(k):
                lp = int(px[ladder, i])
                if lp == p:
                    q = int(qty[ladder, i])
                    break
                if lp == NO_PRICE or lp < p:
                    break
            if q < 0 and (worst == NO_PRICE or p >= worst):
                q = 0
            if q >= 0 and _level_now(r, ladder, j, q):
                _forget(r, ladder, j)
            else:
                j += 1


@njit(cache=True)
def liquidity_on_level(liq: np.ndarray, ladder: int, price: int, new_qty: int) -> None:
    """A live book level now shows ``new_qty``: a decrease uses up our consumption there."""
    r = liq[0]
    for j in range(r["n"][ladder]):
        if r["px"][ladder, j] == price:
            if _level_now(r, ladder, j, new_qty):
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
