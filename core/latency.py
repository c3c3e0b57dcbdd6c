"""Order latency: entry (client -> exchange) and acknowledgement (exchange -> client) delays.

A LATENCY_DTYPE record holds uniform ranges in ms; min == max is a constant delay.  The
caller draws the uniforms (the env from its per-env xorshift generator, the paper client
from its numpy Generator), so the model is a pure function and runs alike everywhere.

Timeline of an order sent at ``ts`` (exchange-clock ms):
``active_ts = ts + entry`` -- the exchange sees it, it matches against the book as it
stands then; ``ack_ts = active_ts + ack`` -- the client learns the outcome and may act on
it.  The env does this in decision-point time over the dataset's ``ts`` column
(kalshi_rl.env.kernels); the paper client on its wall clock.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from core.account import first_record
from core.dtypes import LATENCY_DTYPE, ORD_PENDING


@njit(cache=True, inline="always")
def _draw(lo: int, hi: int, u: float) -> int:
    if hi <= lo:
        return lo
    k = lo + int(u * (hi - lo + 1))
    return k if k <= hi else hi


@njit(cache=True)
def latency_sample(lat: np.ndarray, u_entry: float, u_ack: float) -> tuple[int, int]:
    """(entry_ms, ack_ms) for one order.

    Args:
        lat: LATENCY_DTYPE [1].
        u_entry, u_ack: uniforms in [0, 1).
    """
    r = lat[0]
    return (
        _draw(r["entry_min_ms"], r["entry_max_ms"], u_entry),
        _draw(r["ack_min_ms"], r["ack_max_ms"], u_ack),
    )


@njit(cache=True)
def order_send(order: np.ndarray | np.void, ts: int, entry_ms: int, ack_ms: int) -> None:
    """Stamp an order sent at ``ts``: ORD_PENDING until ``active_ts``; outcome at ``ack_ts``."""
    o = first_record(order)
    o["ts"] = ts
    o["active_ts"] = ts + entry_ms
    o["ack_ts"] = ts + entry_ms + ack_ms
    o["status"] = ORD_PENDING


def latency_model(
    entry_ms: tuple[int, int] = (50, 50), ack_ms: tuple[int, int] = (50, 50)
) -> np.ndarray:
    """A LATENCY_DTYPE [1] record from (min, max) ms ranges (validated).

    Raises:
        ValueError: a negative delay or min > max.
    """
    for name, (lo, hi) in (("entry", entry_ms), ("ack", ack_ms)):
        if lo < 0 or hi < lo:
            raise ValueError(f"{name} latency must be 0 <= min <= max ms, got ({lo}, {hi})")
    out = np.zeros(1, dtype=LATENCY_DTYPE)
    out[0]["entry_min_ms"], out[0]["entry_max_ms"] = entry_ms
    out[0]["ack_min_ms"], out[0]["ack_max_ms"] = ack_ms
    return out
