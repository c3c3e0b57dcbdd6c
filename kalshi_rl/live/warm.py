"""Compile (or load from Numba's cache) the feed's and writers' kernels before recording.

The njit kernels of the record path -- ``core.ring`` push/drain, the ``copy_rows_*`` COPY
encoders and ``core.book``'s apply kernels -- compile on first use.  On a cold Numba cache
(a fresh install, CI) that first use costs seconds and would happen on the event loop
while the first frames arrive: frames stamped late, subscriptions to short-lived markets
sent after the markets are gone.  ``warm_live_kernels`` calls each of them once on tiny
scratch arrays with the very types the feed and the writers pass, so their first real
call finds a compiled signature.  ``LiveNode`` runs it (in a thread) before the feed
connects.

``warm_trading_kernels`` does the same for the trading path: the paper client's kernels
(resting orders reacting to book updates and trades, both slot-array kinds the feed
passes), the paper logs' rings and COPY encoders, the actor's decision kernels and its
record ring, and the valuation the dashboard's P&L reads.  It warms them through their
public entry points -- a throwaway paper client and actor on a one-market BookSet with
the model that will trade -- so the kernels' argument lists may change freely.
``trade.wiring.attach_trading`` runs it (in a thread) before the actor's listeners are on
the node.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from core.book import BookSet
from core.dtypes import DELTA_DTYPE, GAP_DTYPE, SIDE_NONE, SNAPSHOT_LEVEL_DTYPE, TRADE_DTYPE
from core.ring import Ring, encode_copy

if TYPE_CHECKING:
    from kalshi_rl.trade.actor import ActorConfig
    from kalshi_rl.trade.paper_types import PaperConfig
    from kalshi_rl.trade.reload import LoadedModel

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


def _book(books: BookSet, ticker: str) -> int:
    """A market with a two-sided book (YES bids 0.40-0.44, NO bids 0.50-0.54)."""
    from core.dtypes import SIDE_NO, SIDE_YES

    slot = books.slot(ticker)
    levels = np.zeros(10, dtype=SNAPSHOT_LEVEL_DTYPE)
    levels["market"] = slot
    levels["side"][:5] = SIDE_YES
    levels["side"][5:] = SIDE_NO
    levels["price"][:5] = np.arange(400, 450, 10)
    levels["price"][5:] = np.arange(500, 550, 10)
    levels["qty"] = 1000
    books.apply_snapshot(slot, levels)
    return slot


def warm_trading_kernels(
    model: LoadedModel, config: ActorConfig, paper_config: PaperConfig | None = None
) -> float:
    """Run the trading path once on scratch objects; returns the seconds it took.

    Args:
        model: the model that will trade (its policy's arrays give the kernels' types).
        config: the actor's settings (its kill file is not touched: a scratch one is used).
        paper_config: the paper account's settings.

    Touches no shared state (own books, paper client, actor, rings).  Safe in a thread.
    """
    import itertools
    import tempfile
    from pathlib import Path

    from core.dtypes import DECISION_DTYPE
    from kalshi_rl.trade.actor import Actor
    from kalshi_rl.trade.paper import MarketInfo, PaperClient, PaperRings

    t0 = time.perf_counter()
    books = BookSet(2)
    slot = _book(books, "warm-up")
    rings = PaperRings(64)
    ticks = itertools.count(time.time_ns(), 1_000_000_000)  # 1 s a reading: latencies pass
    paper = PaperClient(
        books, paper_config, markets=[MarketInfo("warm-up")], rings=rings,
        clock=lambda: next(ticks),
    )  # fmt: skip
    # a resting order far from the touch: book updates and trades walk the ladders
    paper.create_order_now({
        "ticker": "warm-up", "client_order_id": "warm-up", "side": "bid", "count": "1.00",
        "price": "0.0100", "time_in_force": "good_till_canceled",
    })  # fmt: skip
    deltas = np.zeros(2, dtype=DELTA_DTYPE)
    deltas["market"] = slot
    deltas["side"] = 0
    deltas["price"] = 400
    deltas["delta"] = 1
    books.apply_deltas(deltas[:1])
    deltas["delta"] = 0
    trades = np.zeros(1, dtype=TRADE_DTYPE)
    trades["market"] = slot
    trades["yes_price"] = 400
    trades["count"] = 100

    def poke() -> None:
        # both slot-array kinds the feed passes: a batch's field view, one snapshot's slot
        # (the paper client watches only once an order rests, possibly after its latency)
        paper.on_book_update(deltas["market"])  # strided (a 1-row view would be contiguous)
        paper.on_book_update(np.array([slot], dtype=np.int32))
        paper.on_trades(trades)

    poke()
    with tempfile.TemporaryDirectory() as tmp:
        risk = dataclasses.replace(config.risk, kill_file=str(Path(tmp) / "kill"))
        actor = Actor(books, paper, model, ["warm-up"], dataclasses.replace(config, risk=risk))
        for _ in range(3):  # flat, then (if it bought) holding: both order paths
            actor.decide(0, time.time_ns())
            poke()
        actor.total_value()  # the valuation the dashboard's P&L reads
        decisions = Ring(DECISION_DTYPE, 4)
        decisions.push_batch(np.zeros(1, dtype=DECISION_DTYPE))
        decisions.drain()  # the action sink's drain (the actor's own ring is in use above)
        actor.ring.drain()
    paper.settle_market("warm-up", "yes")  # paper_settle
    market_ids = np.ones(1, dtype=np.int32)
    for table, ring in rings.by_table().items():
        ring.push_batch(np.zeros(1, dtype=ring.buf.dtype))
        encode_copy(table, ring.drain(), 1, market_ids)  # ring_drain + copy_rows_<table>
    return time.perf_counter() - t0
