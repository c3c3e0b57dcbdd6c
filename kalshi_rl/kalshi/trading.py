"""An async Kalshi trading client: signed portfolio requests, decoded into typed records.

``async with TradingClient(base_url, credentials) as tc:`` then ``await tc.create_order(
ticker, "bid", count=500, price=420)``.  It speaks the V2 order API
(``/portfolio/events/orders``) and the portfolio reads; it works against Kalshi and
against the local exchange (kalshi_rl.sim), which is how the tests and the paper-vs-truth
bench drive the sim.

Units in and out are the project's integers: counts in hundredths of a contract, prices
in ticks of $0.001 on the YES scale (V2's single book: ``bid`` buys YES at ``price``,
``ask`` sells YES at ``price`` = buys NO at 1 - price), money in $0.0001.  A refused
request raises :class:`kalshi_rl.errors.KalshiApiError` (status, Kalshi's error code,
message); a batch returns an error object per item instead of raising.  Requests are
never retried: an order entry is not idempotent (resend with the same client_order_id
and let the exchange's 409 tell you it arrived).
"""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httpx
import orjson

from kalshi_rl.errors import KalshiApiError, ProtocolError
from kalshi_rl.kalshi.auth import Credentials
from kalshi_rl.kalshi.protocol import (
    DecodeError,
    format_count,
    format_price,
    parse_count,
    parse_price,
)
from kalshi_rl.kalshi.protocol import parse_money as protocol_parse_money

V2_ORDERS = "/portfolio/events/orders"
TIF_GTC = "good_till_canceled"
TIF_IOC = "immediate_or_cancel"
TIF_FOK = "fill_or_kill"


# --------------------------------------------------------------------------- records
class OrderAck(NamedTuple):
    """V2 create/amend/decrease answer (averages in money units per contract)."""

    order_id: str
    client_order_id: str
    status: str
    fill_count: int
    remaining_count: int
    average_fill_price: int | None  # money units ($0.0001) per contract, YES scale
    average_fee_paid: int | None
    ts_ms: int


class CancelAck(NamedTuple):
    """A cancel: the order id and the count removed from the book."""

    order_id: str
    reduced_by: int


class OrderInfo(NamedTuple):
    """Kalshi's order object (the fields a trader reads)."""

    order_id: str
    client_order_id: str
    ticker: str
    book_side: str  # "bid" | "ask"
    status: str  # resting | canceled | executed
    yes_price: int  # ticks
    initial_count: int
    fill_count: int
    remaining_count: int
    taker_fees: int  # money
    maker_fees: int
    queue_position: int | None  # count units ahead (the sim reports its exact truth)
    created_time: str


class FillRecord(NamedTuple):
    """One fill."""

    fill_id: str
    trade_id: str
    order_id: str
    ticker: str
    book_side: str
    yes_price: int
    qty: int  # count units (``count`` would shadow tuple.count)
    is_taker: bool
    fee: int  # money
    ts_ms: int


class MarketPosition(NamedTuple):
    """One market's position (signed count: + YES, - NO)."""

    ticker: str
    position: int
    market_exposure: int  # money
    realized_pnl: int
    fees_paid: int
    total_traded: int
    resting_orders_count: int


class Balance(NamedTuple):
    """Cash available and the value of positions (money units)."""

    balance: int
    portfolio_value: int


class SettlementRecord(NamedTuple):
    """One settled market."""

    ticker: str
    market_result: str
    yes_count: int
    no_count: int
    revenue: int  # money
    settled_time: str


# --------------------------------------------------------------------------- decoding
def parse_money(s: Any) -> int:
    """A dollar string (<= 4 decimals, sign allowed) -> money units ($0.0001), exactly."""
    try:
        return protocol_parse_money(s)
    except DecodeError as exc:
        raise ProtocolError(str(exc)) from exc


def _count(s: Any) -> int:
    try:
        return parse_count(s)
    except DecodeError as exc:
        raise ProtocolError(str(exc)) from exc


def _price(s: Any) -> int:
    try:
        return parse_price(s)
    except DecodeError as exc:
        raise ProtocolError(str(exc)) from exc


def _opt_money(v: Any) -> int | None:
    return None if v is None else parse_money(v)


def decode_ack(d: dict[str, Any]) -> OrderAck:
    """A V2 order answer."""
    return OrderAck(
        str(d["order_id"]),
        str(d.get("client_order_id") or ""),
        str(d.get("status", "")),
        _count(d["fill_count"]),
        _count(d["remaining_count"]),
        _opt_money(d.get("average_fill_price")),
        _opt_money(d.get("average_fee_paid")),
        int(d.get("ts_ms") or 0),
    )


def decode_order(d: dict[str, Any]) -> OrderInfo:
    """Kalshi's order object."""
    book_side = d.get("book_side")
    if book_side is None:  # legacy vocabulary: buying YES or selling NO is a bid
        book_side = "bid" if (d["side"] == "yes") == (d["action"] == "buy") else "ask"
    qp = d.get("queue_position_fp")
    return OrderInfo(
        str(d["order_id"]),
        str(d.get("client_order_id") or ""),
        str(d["ticker"]),
        str(book_side),
        str(d["status"]),
        _price(d["yes_price_dollars"]),
        _count(d["initial_count_fp"]),
        _count(d["fill_count_fp"]),
        _count(d["remaining_count_fp"]),
        parse_money(d.get("taker_fees_dollars", "0")),
        parse_money(d.get("maker_fees_dollars", "0")),
        None if qp is None else _count(qp),
        str(d.get("created_time") or ""),
    )


def decode_fill(d: dict[str, Any]) -> FillRecord:
    """Kalshi's fill object."""
    book_side = d.get("book_side")
    if book_side is None:
        book_side = "bid" if (d["side"] == "yes") == (d["action"] == "buy") else "ask"
    return FillRecord(
        str(d.get("fill_id") or d.get("trade_id")),
        str(d["trade_id"]),
        str(d["order_id"]),
        str(d.get("ticker") or d.get("market_ticker")),
        str(book_side),
        _price(d["yes_price_dollars"]),
        _count(d["count_fp"]),
        bool(d["is_taker"]),
        parse_money(d.get("fee_cost", "0")),
        int(d.get("ts_ms") or int(d.get("ts", 0)) * 1000),
    )


def decode_position(d: dict[str, Any]) -> MarketPosition:
    """Kalshi's market_position object."""
    return MarketPosition(
        str(d["ticker"]),
        _count(d["position_fp"]),
        parse_money(d["market_exposure_dollars"]),
        parse_money(d["realized_pnl_dollars"]),
        parse_money(d["fees_paid_dollars"]),
        parse_money(d.get("total_traded_dollars", "0")),
        int(d.get("resting_orders_count") or 0),
    )


def decode_settlement(d: dict[str, Any]) -> SettlementRecord:
    """Kalshi's settlement object."""
    rev = d.get("revenue_dollars")
    return SettlementRecord(
        str(d["ticker"]),
        str(d["market_result"]),
        _count(d["yes_count_fp"]),
        _count(d["no_count_fp"]),
        parse_money(rev) if rev is not None else int(d["revenue"]) * 100,
        str(d.get("settled_time") or ""),
    )


def _api_error(status: int, body: bytes) -> KalshiApiError:
    try:
        err = orjson.loads(body).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        err = {}
    if not isinstance(err, dict):
        err = {"code": "error", "message": str(err)}
    return KalshiApiError(status, str(err.get("code", "error")), str(err.get("message", "")))


# --------------------------------------------------------------------------- client
class TradingClient:
    """Signed portfolio requests against ``base_url`` (``.../trade-api/v2``).

    Args:
        base_url: REST v2 base URL (Kalshi's, or ``SimExchange.rest_url``).
        credentials: the API key that signs every request.
        timeout_s: per-request timeout.
    """

    def __init__(self, base_url: str, credentials: Credentials, *, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._base_path = urlsplit(self.base_url).path
        self.credentials = credentials
        self._client = httpx.AsyncClient(timeout=timeout_s)

    async def __aenter__(self) -> TradingClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.aclose()

    async def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, params: Any = None
    ) -> Any:
        """One signed request; the decoded JSON answer, or KalshiApiError."""
        headers = self.credentials.headers(method, self._base_path + path)
        content = None
        if body is not None:
            content = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        r = await self._client.request(
            method, self.base_url + path, content=content, params=params, headers=headers
        )
        if r.status_code >= 400:
            raise _api_error(r.status_code, r.content)
        return orjson.loads(r.content) if r.content else {}

    async def _pages(self, path: str, key: str, params: dict[str, Any]) -> list[Any]:
        out: list[Any] = []
        cursor = ""
        while True:
            q = {**params, "limit": 1000}
            if cursor:
                q["cursor"] = cursor
            d = await self.request("GET", path, params=q)
            out.extend(d.get(key) or [])
            cursor = d.get("cursor") or ""
            if not cursor:
                return out

    # ----------------------------------------------------------------- orders (V2)
    async def create_order(
        self,
        ticker: str,
        side: str,
        *,
        count: int,
        price: int,
        client_order_id: str | None = None,
        time_in_force: str = TIF_GTC,
        self_trade_prevention_type: str = "taker_at_cross",
        post_only: bool = False,
        reduce_only: bool = False,
        **extra: Any,
    ) -> OrderAck:
        """``POST /portfolio/events/orders``.

        Args:
            ticker: market.
            side: "bid" (buy YES) or "ask" (sell YES = buy NO at 1 - price).
            count: count units (hundredths of a contract).
            price: YES-scale limit, ticks.
            client_order_id: idempotency key (a fresh UUID when None).
            extra: other V2 fields (order_group_id, cancel_order_on_pause, ...).
        """
        body = self._order_body(
            ticker, side, count, price, client_order_id, time_in_force,
            self_trade_prevention_type, post_only, reduce_only, extra,
        )  # fmt: skip
        return decode_ack(await self.request("POST", V2_ORDERS, body))

    @staticmethod
    def _order_body(  # noqa: PLR0917 -- the V2 order's fields
        ticker: str,
        side: str,
        count: int,
        price: int,
        client_order_id: str | None,
        time_in_force: str,
        stp: str,
        post_only: bool,
        reduce_only: bool,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        return {
            "ticker": ticker,
            "side": side,
            "count": format_count(count),
            "price": format_price(price),
            "client_order_id": client_order_id or str(uuid.uuid4()),
            "time_in_force": time_in_force,
            "self_trade_prevention_type": stp,
            "post_only": post_only,
            "reduce_only": reduce_only,
            **extra,
        }

    async def cancel_order(self, order_id: str) -> CancelAck:
        """``DELETE /portfolio/events/orders/{id}``."""
        d = await self.request("DELETE", f"{V2_ORDERS}/{order_id}")
        return CancelAck(str(d.get("order_id", order_id)), _count(d.get("reduced_by", "0")))

    async def amend_order(
        self,
        order_id: str,
        *,
        ticker: str,
        side: str,
        price: int,
        count: int,
        updated_client_order_id: str | None = None,
    ) -> tuple[OrderAck, OrderAck]:
        """``POST .../{id}/amend``: new YES price and total count; (before, after)."""
        body: dict[str, Any] = {
            "ticker": ticker,
            "side": side,
            "price": format_price(price),
            "count": format_count(count),
        }
        if updated_client_order_id:
            body["updated_client_order_id"] = updated_client_order_id
        d = await self.request("POST", f"{V2_ORDERS}/{order_id}/amend", body)
        return decode_ack(d["old_order"]), decode_ack(d["order"])

    async def decrease_order(
        self, order_id: str, *, reduce_by: int | None = None, reduce_to: int | None = None
    ) -> OrderAck:
        """``POST .../{id}/decrease`` with reduce_by xor reduce_to (count units)."""
        body: dict[str, Any] = {}
        if reduce_by is not None:
            body["reduce_by"] = format_count(reduce_by)
        if reduce_to is not None:
            body["reduce_to"] = format_count(reduce_to)
        d = await self.request("POST", f"{V2_ORDERS}/{order_id}/decrease", body)
        return decode_ack(d["order"])

    async def batch_create_orders(
        self, orders: list[dict[str, Any]]
    ) -> list[OrderAck | KalshiApiError]:
        """``POST .../batched``; each item takes create_order's keyword arguments plus
        ``ticker`` and ``side``.  Returns one ack or error per order, in order."""
        bodies = [
            self._order_body(
                o["ticker"],
                o["side"],
                o["count"],
                o["price"],
                o.get("client_order_id"),
                o.get("time_in_force", TIF_GTC),
                o.get("self_trade_prevention_type", "taker_at_cross"),
                o.get("post_only", False),
                o.get("reduce_only", False),
                {},
            )
            for o in orders
        ]
        d = await self.request("POST", f"{V2_ORDERS}/batched", {"orders": bodies})
        return [_item(x, lambda y: decode_ack(y["order"])) for x in d["orders"]]

    async def batch_cancel_orders(self, order_ids: list[str]) -> list[CancelAck | KalshiApiError]:
        """``DELETE .../batched``; one cancel or error per id, in order."""
        d = await self.request("DELETE", f"{V2_ORDERS}/batched", {"ids": order_ids})
        return [
            _item(x, lambda y: CancelAck(str(y["order_id"]), _count(y.get("reduced_by", "0"))))
            for x in d["orders"]
        ]

    # ----------------------------------------------------------------- reads
    async def get_balance(self) -> Balance:
        """``GET /portfolio/balance``."""
        d = await self.request("GET", "/portfolio/balance")
        bal = d.get("balance_dollars")
        pv = d.get("portfolio_value_dollars")
        return Balance(
            parse_money(bal) if bal is not None else int(d["balance"]) * 100,
            parse_money(pv) if pv is not None else int(d.get("portfolio_value", 0)) * 100,
        )

    async def get_positions(self, ticker: str | None = None) -> list[MarketPosition]:
        """``GET /portfolio/positions`` (every page)."""
        params = {"ticker": ticker} if ticker else {}
        rows = await self._pages("/portfolio/positions", "market_positions", params)
        return [decode_position(r) for r in rows]

    async def get_fills(
        self, ticker: str | None = None, order_id: str | None = None
    ) -> list[FillRecord]:
        """``GET /portfolio/fills`` (every page, newest first)."""
        params = {k: v for k, v in (("ticker", ticker), ("order_id", order_id)) if v}
        return [decode_fill(r) for r in await self._pages("/portfolio/fills", "fills", params)]

    async def get_orders(
        self, ticker: str | None = None, status: str | None = None
    ) -> list[OrderInfo]:
        """``GET /portfolio/orders`` (every page, newest first)."""
        params = {k: v for k, v in (("ticker", ticker), ("status", status)) if v}
        return [decode_order(r) for r in await self._pages("/portfolio/orders", "orders", params)]

    async def get_order(self, order_id: str) -> OrderInfo:
        """``GET /portfolio/orders/{id}``."""
        return decode_order((await self.request("GET", f"/portfolio/orders/{order_id}"))["order"])

    async def get_queue_position(self, order_id: str) -> int:
        """``GET /portfolio/orders/{id}/queue_position``: count units ahead of the order."""
        d = await self.request("GET", f"/portfolio/orders/{order_id}/queue_position")
        return _count(d["queue_position_fp"])

    async def get_settlements(self) -> list[SettlementRecord]:
        """``GET /portfolio/settlements`` (every page)."""
        rows = await self._pages("/portfolio/settlements", "settlements", {})
        return [decode_settlement(r) for r in rows]


def _item(x: dict[str, Any], decode: Any) -> Any:
    """One batch item: the decoded result, or its error as a KalshiApiError."""
    err = x.get("error")
    if err:
        return KalshiApiError(400, str(err.get("code", "error")), str(err.get("message", "")))
    return decode(x)
