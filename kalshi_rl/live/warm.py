"""Compile (or load from Numba's cache) the feed's and writers' kernels before recording.

The njit kernels of the record path -- ``core.ring`` push/drain, the ``copy_rows_*`` COPY
encoders and ``core.book``'s apply kernels -- compile on first use.  On a cold Numba cache
(a fresh install, CI) that first use costs seconds and would happen on the event loop
while the first frames arrive: frames stamped late, subscriptions to short-lived markets
sent after the markets are gone.  ``warm_live_kernels`` calls each of them once on tiny
scratch arrays with the very types the feed and the writers pass, so their first real
call finds a compiled signature.  ``LiveNode`` runs it (in a thread) before the feed
connects.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from core.book import BookSet
from core.dtypes import DELTA_DTYPE, GAP_DTYPE, SIDE_NONE, SNAPSHOT_LEVEL_DTYPE, TRADE_DTYPE
from core.ring import Ring, encode_copy

log = logging.getLogger(__name__)

# the tables a LiveNode's feed fills and its writers COPY (kalshi_rl.kalshi.feed.FeedRings)
LIVE_TABLES: dict[str, np.dtype] = {
    "orderbook_deltas": DELTA_DTYPE,
    "orderbook_snapshots": SNAPSHOT_LEVEL_DTYPE,
    "trades": TRADE_DTYPE,
    "feed_gaps": GAP_DTYPE,
}


def warm_live_kernels() -> float:
    """Call every record-path kernel once on scratch data; returns the seconds it took.

    Touches no shared state (own rings, own books).  Safe to run in a worker thread.
    """
    t0 = time.perf_counter()
    market_ids = np.ones(1, dtype=np.int32)
    for table, dtype in LIVE_TABLES.items():
        ring = Ring(dtype, 4)
        recs = np.zeros(1, dtype=dtype)
        ring.push_batch(recs)  # ring_push_batch
        ring.oldest()  # ring_occupancy
        encode_copy(table, ring.drain(), 1, market_ids)  # ring_drain + copy_rows_<table>
    books = BookSet(1)
    slot = books.slot("warm-up")
    levels = np.zeros(1, dtype=SNAPSHOT_LEVEL_DTYPE)
    levels["market"] = slot
    levels["side"] = SIDE_NONE
    books.apply_snapshot(slot, levels)  # book_apply_snapshot
    deltas = np.zeros(2, dtype=DELTA_DTYPE)
    deltas["market"] = slot
    books.apply_deltas(deltas[:1])  # book_apply_deltas (a slice, as the feed passes)
    books.invalidate(slot)  # book_invalidate
    return time.perf_counter() - t0
