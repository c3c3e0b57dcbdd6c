"""The collector's progress line: the durability lag it reports."""

from __future__ import annotations

import numpy as np

from core.dtypes import DELTA_DTYPE, TRADE_DTYPE
from kalshi_rl.commands.collect import durability_lag_ms
from kalshi_rl.kalshi.feed import FeedRings


def test_durability_lag_is_the_age_of_the_oldest_buffered_record() -> None:
    rings = FeedRings.create(1024)
    now = 1_700_000_000_000_000_000
    assert durability_lag_ms(rings, now) == 0.0  # nothing buffered: all durable

    deltas = np.zeros(3, DELTA_DTYPE)
    deltas["recv_ts"] = [now - 2_000_000_000, now - 1_000_000_000, now]
    rings.deltas.push_batch(deltas)
    trade = np.zeros(1, TRADE_DTYPE)
    trade["recv_ts"] = now - 5_000_000_000  # an older trade still waiting
    rings.trades.push_batch(trade)
    assert durability_lag_ms(rings, now) == 5000.0

    rings.trades.drain()  # the writer made the trade durable
    assert durability_lag_ms(rings, now) == 2000.0
    rings.deltas.drain()
    assert durability_lag_ms(rings, now) == 0.0
