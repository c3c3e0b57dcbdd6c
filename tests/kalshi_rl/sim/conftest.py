"""Test helpers for the sim: a tiny websockets-based Kalshi client and a book applier.

Deliberately independent of kalshi_rl.kalshi (the real client is tested against the sim
elsewhere): it decodes with Decimal and applies to a core.book.BookSet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import numpy as np
import orjson
import pytest
import websockets

from core.book import BookSet
from core.dtypes import DELTA_DTYPE, PRICE_MAX, SIDE_NO, SIDE_YES, SNAPSHOT_LEVEL_DTYPE


def ticks(s: str) -> int:
    d = Decimal(s) * 1000
    assert d == d.to_integral_value(), f"price {s} is off the $0.001 grid"
    return int(d)


def units(s: str) -> int:
    d = Decimal(s) * 100
    assert d == d.to_integral_value(), f"count {s} has more than 2 decimals"
    return int(d)


class ClientBooks:
    """Applies received orderbook_snapshot/orderbook_delta messages to a BookSet."""

    def __init__(self, use_yes_price: bool = False) -> None:
        self.books = BookSet(capacity=4)
        self.use_yes_price = use_yes_price

    def _no(self, p: int) -> int:
        return PRICE_MAX - p if self.use_yes_price else p

    def apply(self, m: dict[str, Any]) -> None:
        body = m["msg"]
        slot = self.books.slot(body["market_ticker"])
        if m["type"] == "orderbook_snapshot":
            rows = [(SIDE_YES, ticks(p), units(q)) for p, q in body.get("yes_dollars_fp", [])]
            rows += [
                (SIDE_NO, self._no(ticks(p)), units(q)) for p, q in body.get("no_dollars_fp", [])
            ]
            lv = np.zeros(max(1, len(rows)), dtype=SNAPSHOT_LEVEL_DTYPE)
            lv["market"] = slot
            lv["seq"] = m["seq"]
            if rows:
                lv["side"], lv["price"], lv["qty"] = zip(*rows, strict=True)
            else:
                lv["side"] = -1
                lv["price"] = -1
            assert self.books.apply_snapshot(slot, lv) == 0
        elif m["type"] == "orderbook_delta":
            side = SIDE_YES if body["side"] == "yes" else SIDE_NO
            p = ticks(body["price_dollars"])
            rec = np.zeros(1, dtype=DELTA_DTYPE)
            rec["market"] = slot
            rec["side"] = side
            rec["price"] = p if side == SIDE_YES else self._no(p)
            rec["delta"] = units(body["delta_fp"])
            rec["seq"] = m["seq"]
            assert self.books.apply_deltas(rec) == 0, f"delta rejected: {m} -> {rec['status']}"

    def book(self, ticker: str) -> dict[str, list[tuple[int, int]]]:
        slot = self.books.slot(ticker)
        return {"yes": self.books.levels(slot, SIDE_YES), "no": self.books.levels(slot, SIDE_NO)}


class WsClient:
    """A minimal Kalshi WS client over the `websockets` package."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 1

    @classmethod
    async def open(cls, url: str, headers: dict[str, str] | None = None) -> WsClient:
        ws = await websockets.connect(url, additional_headers=headers, max_size=None)
        return cls(ws)

    async def close(self) -> None:
        await self.ws.close()

    async def cmd(self, cmd: str, params: dict[str, Any] | None = None) -> int:
        cid = self.next_id
        self.next_id += 1
        obj: dict[str, Any] = {"id": cid, "cmd": cmd}
        if params is not None:
            obj["params"] = params
        await self.ws.send(orjson.dumps(obj).decode())
        return cid

    async def send_raw(self, text: str) -> None:
        await self.ws.send(text)

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        return orjson.loads(raw)

    async def recv_until(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Messages up to and including the first one matching ``pred``."""
        out = []
        while True:
            m = await self.recv(timeout)
            out.append(m)
            if pred(m):
                return out

    async def subscribe(
        self, channels: list[str], tickers: list[str] | None = None, **extra: Any
    ) -> int:
        params: dict[str, Any] = {"channels": channels, **extra}
        if tickers is not None:
            params["market_tickers"] = tickers
        return await self.cmd("subscribe", params)


@pytest.fixture
def ws_client() -> type[WsClient]:
    return WsClient


@pytest.fixture
def client_books() -> type[ClientBooks]:
    return ClientBooks
