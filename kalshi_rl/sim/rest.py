"""The sim's REST endpoints (GET only), shaped like Kalshi's /trade-api/v2.

``handle`` gets the path below the prefix and the parsed query and returns (status, body).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from core.dtypes import (
    MS_CLOSED,
    MS_DETERMINED,
    MS_INITIALIZED,
    MS_OPEN,
    MS_SETTLED,
    NO_PRICE,
    PRICE_MAX,
    RESULT_YES,
    SIDE_NO,
    SIDE_YES,
)
from kalshi_rl.sim.grid import DOLLARS, count_fp, price_ranges
from kalshi_rl.sim.markets import SimMarkets
from kalshi_rl.sim.model import MarketState

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100

# REST status of each model state, and the ?status= filter values that select it
_STATUS = {
    MS_INITIALIZED: "initialized",
    MS_OPEN: "active",
    MS_CLOSED: "closed",
    MS_DETERMINED: "determined",
    MS_SETTLED: "finalized",
}
_FILTER = {
    "open": {MS_OPEN},
    "closed": {MS_CLOSED, MS_DETERMINED},
    "settled": {MS_SETTLED},
    "unopened": {MS_INITIALIZED},
    "paused": set(),
}


def _iso(ms: int) -> str | None:
    """Unix ms as an RFC 3339 time (Kalshi's REST form, ``2026-01-01T00:00:00Z``), with
    the milliseconds when there are any: truncated to the second, a close time would cut
    the data of the last second before close from a history that trusts it."""
    if ms <= 0 or ms >= 2**62:
        return None
    t = datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{t}.{ms % 1000:03d}Z" if ms % 1000 else f"{t}Z"


def _err(status: int, code: str, message: str) -> tuple[int, bytes]:
    return status, orjson.dumps({"error": {"code": code, "message": message}})


def market_json(x: SimMarkets, m: int) -> dict[str, Any]:
    """One live market (slot ``m``) as Kalshi's REST ``market`` object."""
    st = x.model.state(m)
    if st is None:
        raise KeyError(f"slot {m} holds no market")
    # the public book (maker liquidity plus resting user orders), as clients see it
    return state_json(st, x.books.best(m) if st.status == MS_OPEN else None)


def state_json(st: MarketState, best: tuple[int, int, int, int] | None) -> dict[str, Any]:
    """A market's state as Kalshi's REST ``market`` object (the fields the sim knows).

    Args:
        st: the market's state (live slot or retired).
        best: its best prices (yes bid, yes ask, no bid, no ask) while it trades, else None.
    """
    spec = st.spec
    yb, ya = (best[0], best[1]) if best is not None else (-1, -1)
    result = ""
    if st.status in (MS_DETERMINED, MS_SETTLED):
        result = "yes" if st.result == RESULT_YES else "no"
    out: dict[str, Any] = {
        "ticker": spec.ticker,
        "event_ticker": spec.event_ticker,
        "series_ticker": spec.series,
        "market_type": "binary",
        "title": spec.title,
        "status": _STATUS[st.status],
        "open_time": _iso(st.open_ts),
        "close_time": _iso(st.close_ts),
        "price_level_structure": spec.structure.value,
        "price_ranges": price_ranges(spec.structure),
        "yes_bid_dollars": DOLLARS[yb] if yb >= 0 else None,
        "yes_ask_dollars": DOLLARS[ya] if ya >= 0 else None,
        "last_price_dollars": DOLLARS[st.last_price] if st.last_price != NO_PRICE else None,
        "volume_fp": count_fp(st.volume),
        "result": result,
    }
    if result:
        out["settlement_value_dollars"] = DOLLARS[PRICE_MAX if result == "yes" else 0]
    return out


def _all_states(x: SimMarkets) -> list[tuple[MarketState, int]]:
    """(state, slot or -1) of every market REST knows: live slots, then retired ones."""
    out = []
    for m in range(len(x.tickers)):
        st = x.model.state(m)
        if st is not None:
            out.append((st, m))
    out.extend((st, -1) for st in reversed(x.model.retired.values()))
    return out


def _markets(x: SimMarkets, q: dict[str, list[str]]) -> tuple[int, bytes]:
    try:
        limit = int(q.get("limit", [str(DEFAULT_LIMIT)])[0])
        start = int(q.get("cursor", ["0"])[0] or "0")
    except ValueError:
        return _err(400, "invalid_parameters", "limit and cursor must be integers")
    if not 1 <= limit <= MAX_LIMIT or start < 0:
        return _err(400, "invalid_parameters", f"limit must be 1..{MAX_LIMIT}")
    rows = _all_states(x)
    if "tickers" in q:
        wanted = {t for v in q["tickers"] for t in v.split(",") if t}
        rows = [r for r in rows if r[0].spec.ticker in wanted]
    if "event_ticker" in q:
        ev = set(q["event_ticker"][0].split(","))
        rows = [r for r in rows if r[0].spec.event_ticker in ev]
    if "series_ticker" in q:
        rows = [r for r in rows if r[0].spec.series == q["series_ticker"][0]]
    if "status" in q:
        allowed: set[int] = set()
        for v in q["status"][0].split(","):
            if v not in _FILTER:
                return _err(400, "invalid_parameters", f"unknown status {v!r}")
            allowed |= _FILTER[v]
        rows = [r for r in rows if r[0].status in allowed]
    # mve_filter=exclude drops KXMVE* combos; the sim has none, "only" returns nothing
    if q.get("mve_filter", [""])[0] == "only":
        rows = []
    page = rows[start : start + limit]
    cursor = str(start + limit) if start + limit < len(rows) else ""
    body = [
        state_json(st, x.books.best(m) if m >= 0 and st.status == MS_OPEN else None)
        for st, m in page
    ]
    return 200, orjson.dumps({"markets": body, "cursor": cursor})


def _orderbook(x: SimMarkets, m: int, q: dict[str, list[str]]) -> tuple[int, bytes]:
    try:
        depth = int(q.get("depth", ["0"])[0])
    except ValueError:
        return _err(400, "invalid_parameters", "depth must be an integer")
    out = {}
    for side, key in ((SIDE_YES, "yes_dollars"), (SIDE_NO, "no_dollars")):
        lv = x.books.levels(m, side)  # best first
        if depth > 0:
            lv = lv[:depth]
        out[key] = [[DOLLARS[p], count_fp(c)] for p, c in reversed(lv)]  # ascending
    return 200, orjson.dumps({"orderbook_fp": out})


def handle(x: SimMarkets, path: str, q: dict[str, list[str]]) -> tuple[int, bytes]:
    """Answer one GET below /trade-api/v2.

    Args:
        x: the sim's markets.
        path: e.g. ``/markets`` or ``/markets/T/orderbook``.
        q: parsed query (``urllib.parse.parse_qs``).

    Returns:
        (HTTP status, JSON body).
    """
    parts = [p for p in path.split("/") if p]
    if parts == ["exchange", "status"]:
        return 200, orjson.dumps({"exchange_active": True, "trading_active": True})
    if parts == ["markets"]:
        return _markets(x, q)
    if len(parts) in (2, 3) and parts[0] == "markets":
        m = x.slot.get(parts[1])
        retired = x.model.retired.get(parts[1])
        if m is None and retired is not None and len(parts) == 2:
            return 200, orjson.dumps({"market": state_json(retired, None)})
        if m is None:
            return _err(404, "not_found", f"market {parts[1]} not found")
        if len(parts) == 2:
            return 200, orjson.dumps({"market": market_json(x, m)})
        if parts[2] == "orderbook":
            return _orderbook(x, m, q)
    return _err(404, "not_found", f"no route {path}")
