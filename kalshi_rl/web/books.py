"""Read the live books in place: market summaries and ladders from the node's BookSet.

Readers re-read ``books.qty``/``best``/``meta`` on every call (the BookSet replaces its
arrays when it grows) and never copy more than the levels they answer with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from core.book import BookSet
from core.dtypes import NO_PRICE, PRICE_MAX, SIDE_NO, SIDE_YES
from kalshi_rl.web.schemas import Level, MarketSummary

LADDER_LEVELS = 25  # levels per side sent to the dashboard
DEPTH_LEVELS = 5  # levels summed for the summary's depth columns


@dataclass
class MarketInfo:
    """What the database knows about the markets (refreshed by the app every few s)."""

    meta: dict[str, Any] = field(default_factory=dict)  # ticker -> markets row
    last_trade: dict[int, tuple[int, int]] = field(default_factory=dict)  # id -> (px, ms)
    refreshed: float = 0.0


def _px(v: int) -> int | None:
    return None if v == NO_PRICE else int(v)


def spread_mid(yes_bid: int, no_bid: int) -> tuple[int | None, float | None]:
    """(yes ask - yes bid, mid) in ticks from the two best bids; None where one side is empty."""
    if NO_PRICE in (yes_bid, no_bid):
        return None, None
    ask = PRICE_MAX - no_bid
    return ask - yes_bid, (ask + yes_bid) / 2.0


def summary(books: BookSet, slot: int, info: MarketInfo, now: float | None = None) -> MarketSummary:
    """One market's row of the markets list."""
    ticker = books.ticker_of(slot)
    best = books.best
    yb = int(best[slot, SIDE_YES])
    nb = int(best[slot, SIDE_NO])
    m = books.meta[slot]
    row = info.meta.get(ticker)
    close = row["close_time"] if row is not None else None
    now = time.time() if now is None else now
    last = info.last_trade.get(row["id"]) if row is not None else None
    spread, mid = spread_mid(yb, nb)
    recv = int(m["last_recv_ts"])
    return MarketSummary(
        ticker=ticker,
        slot=slot,
        status=None if row is None else row["status"],
        title=None if row is None else row["title"],
        valid=bool(m["valid"]),
        yes_bid=_px(yb),
        yes_ask=None if nb == NO_PRICE else PRICE_MAX - nb,
        no_bid=_px(nb),
        no_ask=None if yb == NO_PRICE else PRICE_MAX - yb,
        spread=spread,
        mid=mid,
        yes_depth=books.depth(slot, SIDE_YES, DEPTH_LEVELS),
        no_depth=books.depth(slot, SIDE_NO, DEPTH_LEVELS),
        last_trade_price=None if last is None else int(last[0]),
        last_trade_ms=None if last is None else int(last[1]),
        close_time=close,
        seconds_to_close=None if close is None else close.timestamp() - now,
        n_updates=int(m["n_updates"]),
        last_update_ms=None if recv <= 0 else recv // 1_000_000,
    )


DONE_STATUSES = frozenset({"closed", "determined", "settled", "finalized", "amended", "disputed"})
NOT_OPEN_STATUSES = frozenset({"initialized", "unopened"})


@dataclass
class BookHealth:
    """The node's books by state, for the status bar (``classify_books``).

    ``valid``: may be served.  ``invalid``: should be valid and is not -- the feed follows
    the market, it is open and had a book, and a gap, desync or disconnect invalidated it
    (until the resync snapshot).  ``waiting``: the market is not open yet, or its first
    snapshot has not arrived.  ``closed``: closed, determined or no longer followed by the
    feed (its recording ended).  Only ``invalid`` makes the node degraded.
    """

    valid: int = 0
    invalid: list[str] = field(default_factory=list)
    waiting: int = 0
    closed: int = 0


def _epoch(v: Any) -> float | None:
    return v.timestamp() if isinstance(v, datetime) else None


def classify_books(
    books: BookSet, followed: Any, info: MarketInfo, now: float | None = None
) -> BookHealth:
    """Sort every book of ``books`` into valid / invalid / waiting / closed (see BookHealth).

    Args:
        books: the node's BookSet (read in place).
        followed: tickers the feed follows now (a container), or None: every book.
        info: market rows (status, open/close times) from the database.
        now: unix seconds (default now).
    """
    now = time.time() if now is None else now
    n = books.n_markets
    meta = books.meta[:n]
    out = BookHealth()
    for s in range(n):
        if meta[s]["valid"]:
            out.valid += 1
            continue
        t = books.ticker_of(s)
        row = info.meta.get(t)
        status = None if row is None else row["status"]
        opens = None if row is None else _epoch(row["open_time"])
        closes = None if row is None else _epoch(row["close_time"])
        gone = followed is not None and t not in followed  # the feed dropped it
        if gone or status in DONE_STATUSES or (closes is not None and closes <= now):
            out.closed += 1
        elif opens > now if opens is not None else status in NOT_OPEN_STATUSES:
            out.waiting += 1  # listed, not open yet (the times win over a stale status)
        elif int(meta[s]["n_snapshots"]) == 0:
            out.waiting += 1  # subscribed, first snapshot not here yet
        else:
            out.invalid.append(t)
    return out


def levels(books: BookSet, slot: int, side: int, n: int = LADDER_LEVELS) -> list[Level]:
    """The ``n`` best bid levels of one side, best (highest) first."""
    best = int(books.best[slot, side])
    if best < 0:
        return []
    row = books.qty[slot, side, : best + 1]
    px = np.flatnonzero(row)[::-1][:n]
    return [Level(p, q) for p, q in zip(px.tolist(), row[px].tolist(), strict=True)]


def book_frame(books: BookSet, slot: int, n: int = LADDER_LEVELS) -> dict[str, Any]:
    """The orderbook stream's message for one market (JSON-able; see docs/web.md)."""
    m = books.meta[slot]
    yb = int(books.best[slot, SIDE_YES])
    nb = int(books.best[slot, SIDE_NO])
    spread, mid = spread_mid(yb, nb)
    return {
        "type": "book",
        "ticker": books.ticker_of(slot),
        "valid": bool(m["valid"]),
        "seq": int(m["last_seq"]),
        "n_updates": int(m["n_updates"]),
        "recv_ts_ns": int(m["last_recv_ts"]),
        "yes": [(lv.price, lv.qty) for lv in levels(books, slot, SIDE_YES, n)],
        "no": [(lv.price, lv.qty) for lv in levels(books, slot, SIDE_NO, n)],
        "yes_bid": _px(yb),
        "yes_ask": None if nb == NO_PRICE else PRICE_MAX - nb,
        "spread": spread,
        "mid": mid,
        "server_ts_ms": int(datetime.now(UTC).timestamp() * 1000),
    }
