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

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100

# REST status of each model state, and the ?status= filter values that select it
_STATUS = {
    MS_OPEN: "active",
    MS_CLOSED: "closed",
    MS_DETERMINED: "determined",
    MS_SETTLED: "finalized",
}
_FILTER = {
    "open": {MS_OPEN},
    "closed": {MS_CLOSED, MS_DETERMINED},
    "settled": {MS_SETTLED},
    "unopened": set(),
    "paused": set(),
}


def _iso(ms: int) -> str | None:
    if ms <= 0 or ms >= 2**62:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _err(status: int, code: str, message: str) -> tuple[int, bytes]:
    return status, orjson.dumps({"error": {"code": code, "message": message}})


def market_json(x: SimMarkets, m: int) -> dict[str, Any]:
    """One market as Kalshi's REST ``market`` object (the fields the sim knows)."""
    spec = x.model.markets[m]
    mk = x.model.mk[m]
    yb, ya, _, _ = x.model.books.best(m)
    last = int(mk["last_price"])
    result = ""
    if int(mk["status"]) in (MS_DETERMINED, MS_SETTLED):
        result = "yes" if int(mk["result"]) == RESULT_YES else "no"
    out: dict[str, Any] = {
        "ticker": spec.ticker,
        "event_ticker": spec.event_ticker,
        "market_type": "binary",
        "title": spec.title,
        "status": _STATUS[int(mk["status"])],
        "open_time": _iso(x.open_ts_ms),
        "close_time": _iso(int(mk["close_ts"])),
        "price_level_structure": spec.structure.value,
        "price_ranges": price_ranges(spec.structure),
        "yes_bid_dollars": DOLLARS[yb] if yb >= 0 else None,
        "yes_ask_dollars": DOLLARS[ya] if ya >= 0 else None,
        "last_price_dollars": DOLLARS[last] if last != NO_PRICE else None,
        "volume_fp": count_fp(int(mk["volume"])),
        "result": result,
    }
    if result:
        out["settlement_value_dollars"] = DOLLARS[PRICE_MAX if result == "yes" else 0]
    return out


def _markets(x: SimMarkets, q: dict[str, list[str]]) -> tuple[int, bytes]:
    try:
        limit = int(q.get("limit", [str(DEFAULT_LIMIT)])[0])
        start = int(q.get("cursor", ["0"])[0] or "0")
    except ValueError:
        return _err(400, "invalid_parameters", "limit and cursor must be integers")
    if not 1 <= limit <= MAX_LIMIT or start < 0:
        return _err(400, "invalid_parameters", f"limit must be 1..{MAX_LIMIT}")
    slots = list(range(len(x.tickers)))
    if "tickers" in q:
        wanted = {t for v in q["tickers"] for t in v.split(",") if t}
        slots = [m for m in slots if x.tickers[m] in wanted]
    if "event_ticker" in q:
        ev = set(q["event_ticker"][0].split(","))
        slots = [m for m in slots if x.model.markets[m].event_ticker in ev]
    if "status" in q:
        allowed: set[int] = set()
        for v in q["status"][0].split(","):
            if v not in _FILTER:
                return _err(400, "invalid_parameters", f"unknown status {v!r}")
            allowed |= _FILTER[v]
        slots = [m for m in slots if int(x.model.mk[m]["status"]) in allowed]
    # mve_filter=exclude drops KXMVE* combos; the sim has none, "only" returns nothing
    if q.get("mve_filter", [""])[0] == "only":
        slots = []
    page = slots[start : start + limit]
    cursor = str(start + limit) if start + limit < len(slots) else ""
    return 200, orjson.dumps({"markets": [market_json(x, m) for m in page], "cursor": cursor})


def _orderbook(x: SimMarkets, m: int, q: dict[str, list[str]]) -> tuple[int, bytes]:
    try:
        depth = int(q.get("depth", ["0"])[0])
    except ValueError:
        return _err(400, "invalid_parameters", "depth must be an integer")
    out = {}
    for side, key in ((SIDE_YES, "yes_dollars"), (SIDE_NO, "no_dollars")):
        lv = x.model.books.levels(m, side)  # best first
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
        if m is None:
            return _err(404, "not_found", f"market {parts[1]} not found")
        if len(parts) == 2:
            return 200, orjson.dumps({"market": market_json(x, m)})
        if parts[2] == "orderbook":
            return _orderbook(x, m, q)
    return _err(404, "not_found", f"no route {path}")
