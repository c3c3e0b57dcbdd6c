"""Kalshi's portfolio REST API on the local exchange (kalshi-protocol.md §3).

``Portfolio.handle(user, method, path, query, body)`` answers every ``/portfolio/...``
request of an authenticated user: V2 order entry (``/portfolio/events/orders``: create,
cancel, amend, decrease, batched), the legacy ``/portfolio/orders`` create/cancel/
decrease/batched, and the reads (balance, positions, fills, orders, settlements, queue
positions).  Responses and errors are shaped like Kalshi's (``{"error": {"code",
"message"}}``, 400/404/409); the JSON objects are built here and shared with the private
WebSocket channels (kalshi_rl.sim.private).  Sim-only: an order carries
``queue_position_fp``, its true place in the FIFO queue.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from core.dtypes import COUNT_SCALE, PRICE_MAX, SIDE_NO, SIDE_YES
from kalshi_rl.kalshi.protocol import (
    DecodeError,
    format_count,
    format_money,
    format_price,
    parse_count,
    parse_price,
)
from kalshi_rl.sim.accounts import E_PER_MONEY, Account, Position, Settlement
from kalshi_rl.sim.matching import (
    STP_MAKER,
    STP_TAKER,
    TIF_FOK,
    TIF_GTC,
    TIF_IOC,
    Engine,
    Fill,
    Order,
    Rejection,
)

TIFS = (TIF_GTC, TIF_IOC, TIF_FOK)
STPS = (STP_TAKER, STP_MAKER)
MAX_BATCH = 20
MAX_LIMIT = 1000

Reply = tuple[int, bytes]
Json = dict[str, Any]


# --------------------------------------------------------------------------- formatting
def iso(ms: int) -> str:
    """Unix ms as Kalshi's RFC 3339 time string."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


dollars_money = format_money
price_dollars = format_price


def dollars_e(e: int) -> str:
    """Notional units ($0.00001) as a dollar string, rounded half away from zero."""
    sign = -1 if e < 0 else 1
    money = (abs(e) + E_PER_MONEY // 2) // E_PER_MONEY
    return format_money(sign * money)


def avg_price(cost_e: int, count: int) -> str | None:
    """Average price per contract of ``count`` filled for ``cost_e`` (4 decimals)."""
    if count <= 0:
        return None
    # cost_e / count is ticks per count unit; dollars = ticks / 1000, shown with 4 dp
    tenth_ticks = (cost_e * 10 * 2 + count) // (2 * count)
    return f"{tenth_ticks // 10_000}.{tenth_ticks % 10_000:04d}"


def error(status: int, code: str, message: str) -> Reply:
    """Kalshi's error body."""
    return status, orjson.dumps({"error": {"code": code, "message": message, "service": "sim"}})


def _ok(obj: Any, status: int = 200) -> Reply:
    return status, orjson.dumps(obj)


class BadRequest(Exception):
    """A request body or parameter failed validation."""

    def __init__(self, message: str, code: str = "invalid_parameters") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- objects
def side_action(o: Order) -> tuple[str, str]:
    """(side, action) of the legacy vocabulary: bid = buy YES, ask = sell YES."""
    if o.legacy is not None:
        return o.legacy
    return ("yes", "buy") if o.side == SIDE_YES else ("yes", "sell")


def yes_price(o: Order) -> int:
    """The order's limit on the YES scale."""
    return o.price if o.side == SIDE_YES else PRICE_MAX - o.price


def order_json(x: Engine, o: Order) -> Json:
    """Kalshi's ``order`` object (plus the sim-only ``queue_position_fp``)."""
    side, action = side_action(o)
    yp = yes_price(o)
    return {
        "order_id": o.order_id,
        "user_id": o.user,
        "client_order_id": o.client_order_id,
        "ticker": x.mk.tickers[o.m],
        "side": side,
        "action": action,
        "book_side": "bid" if o.side == SIDE_YES else "ask",
        "outcome_side": "yes" if o.side == SIDE_YES else "no",
        "type": "limit",
        "status": o.status,
        "yes_price_dollars": price_dollars(yp),
        "no_price_dollars": price_dollars(PRICE_MAX - yp),
        "initial_count_fp": format_count(o.initial),
        "fill_count_fp": format_count(o.filled),
        "remaining_count_fp": format_count(o.remaining),
        "taker_fill_count_fp": format_count(o.taker_fill_count),
        "maker_fill_count_fp": format_count(o.maker_fill_count),
        "taker_fill_cost_dollars": dollars_e(o.taker_cost_e),
        "maker_fill_cost_dollars": dollars_e(o.maker_cost_e),
        "taker_fees_dollars": dollars_money(o.taker_fees),
        "maker_fees_dollars": dollars_money(o.maker_fees),
        "time_in_force": o.tif,
        "post_only": o.post_only,
        "reduce_only": o.reduce_only,
        "self_trade_prevention_type": o.stp,
        "order_group_id": o.order_group_id,
        "cancel_order_on_pause": o.cancel_on_pause,
        "created_time": iso(o.created_ms),
        "last_update_time": iso(o.updated_ms),
        "expiration_time": iso(o.expiration_ms) if o.expiration_ms else None,
        "queue_position_fp": format_count(x.queue_position(o)),
    }


def v2_order_json(o: Order) -> Json:
    """The V2 create/amend response: counts, averages on the YES-book scale, ts_ms."""
    cost_e = o.taker_cost_e + o.maker_cost_e
    if o.side == SIDE_NO:  # an ask's fills are NO buys: show them as YES sells
        cost_e = (o.taker_fill_count + o.maker_fill_count) * PRICE_MAX - cost_e
    fees = o.taker_fees + o.maker_fees
    return {
        "order_id": o.order_id,
        "client_order_id": o.client_order_id,
        "status": o.status,
        "fill_count": format_count(o.filled),
        "remaining_count": format_count(o.remaining),
        "average_fill_price": avg_price(cost_e, o.filled),
        "average_fee_paid": (avg_price(fees * E_PER_MONEY, o.filled) if o.filled else None),
        "ts_ms": o.updated_ms,
    }


def fill_json(x: Engine, f: Fill, post_position: int) -> Json:
    """Kalshi's ``fill`` object (REST) / the ``fill`` channel's msg."""
    o = f.order
    side, action = side_action(o)
    yp = f.price if o.side == SIDE_YES else PRICE_MAX - f.price
    return {
        "fill_id": f.fill_id,
        "trade_id": f.trade_id,
        "order_id": o.order_id,
        "client_order_id": o.client_order_id,
        "ticker": x.mk.tickers[o.m],
        "market_ticker": x.mk.tickers[o.m],
        "side": side,
        "action": action,
        "book_side": "bid" if o.side == SIDE_YES else "ask",
        "purchased_side": "yes" if o.side == SIDE_YES else "no",
        "count_fp": format_count(f.qty),
        "yes_price_dollars": price_dollars(yp),
        "no_price_dollars": price_dollars(PRICE_MAX - yp),
        "is_taker": f.is_taker,
        "fee_cost": dollars_money(f.fee),
        "post_position_fp": format_count(post_position),
        "created_time": iso(f.ts_ms),
        "ts": f.ts_ms // 1000,
        "ts_ms": f.ts_ms,
    }


def position_json(x: Engine, acc: Account, m: int, pos: Position) -> Json:
    """Kalshi's ``market_position`` object (REST)."""
    resting = sum(1 for o in x.orders.values() if o.resting and o.user == acc.user and o.m == m)
    return {
        "ticker": x.mk.tickers[m],
        "position_fp": format_count(pos.position),
        "market_exposure_dollars": dollars_e(pos.exposure_e()),
        "realized_pnl_dollars": dollars_e(pos.realized_e),
        "fees_paid_dollars": dollars_money(pos.fees_paid),
        "total_traded_dollars": dollars_e(pos.traded_e),
        "resting_orders_count": resting,
        "last_updated_ts": iso(pos.last_ts_ms) if pos.last_ts_ms else None,
    }


def position_msg(x: Engine, acc: Account, m: int) -> Json:
    """The ``market_positions`` channel's msg."""
    pos = acc.position(m)
    return {
        "market_ticker": x.mk.tickers[m],
        "position_fp": format_count(pos.position),
        "position_cost_dollars": dollars_e(pos.exposure_e()),
        "realized_pnl_dollars": dollars_e(pos.realized_e),
        "fees_paid_dollars": dollars_money(pos.fees_paid),
        "volume_fp": format_count(pos.volume),
        "ts_ms": x.mk.model.now_ms,
    }


def settlement_json(x: Engine, s: Settlement) -> Json:
    """Kalshi's ``settlement`` object."""
    spec = x.mk.model.spec_by_ticker(s.ticker)  # a rolling market's slot may be reused
    return {
        "ticker": s.ticker,
        "event_ticker": spec.event_ticker if spec is not None else "",
        "market_result": s.result,
        "yes_count_fp": format_count(s.yes_count),
        "no_count_fp": format_count(s.no_count),
        "yes_total_cost_dollars": dollars_e(s.yes_cost_e),
        "no_total_cost_dollars": dollars_e(s.no_cost_e),
        "revenue": s.revenue // 100,
        "revenue_dollars": dollars_money(s.revenue),
        "value": PRICE_MAX // 10 if s.result == "yes" else 0,
        "fee_cost": "0.0000",
        "settled_time": iso(s.ts_ms),
    }


# --------------------------------------------------------------------------- parsing
def _field(body: Json, name: str) -> Any:
    v = body.get(name)
    if v is None:
        raise BadRequest(f"{name} is required")
    return v


def _count(v: Any, name: str = "count") -> int:
    if isinstance(v, bool):
        raise BadRequest(f"{name} must be a number string")
    if isinstance(v, int):
        return v * COUNT_SCALE
    if not isinstance(v, str):
        raise BadRequest(f"{name} must be a fixed-point string")
    try:
        n = parse_count(v)
    except DecodeError as exc:
        raise BadRequest(f"{name} {v!r} is off the 0.01 contract grid", "invalid_order") from exc
    return n


def _price(v: Any, name: str = "price") -> int:
    if not isinstance(v, str):
        raise BadRequest(f"{name} must be a dollar string")
    try:
        return parse_price(v)
    except DecodeError as exc:
        raise BadRequest(f"{name} {v!r} is off the price grid", "invalid_price") from exc


def _bool(body: Json, name: str) -> bool:
    v = body.get(name, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise BadRequest(f"{name} must be a boolean")
    return v


def _choice(body: Json, name: str, valid: tuple[str, ...], default: str | None) -> str:
    v = body.get(name, default)
    if v is None:
        raise BadRequest(f"{name} is required")
    if v not in valid:
        raise BadRequest(f"{name} must be one of {', '.join(valid)}")
    return str(v)


def _body(raw: bytes) -> Json:
    if not raw:
        return {}
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("the body is not JSON") from exc
    if not isinstance(obj, dict):
        raise BadRequest("the body must be a JSON object")
    return obj


def _limit(q: dict[str, list[str]]) -> tuple[int, int]:
    try:
        limit = int(q.get("limit", ["100"])[0])
        start = int(q.get("cursor", ["0"])[0] or "0")
    except ValueError as exc:
        raise BadRequest("limit and cursor must be integers") from exc
    if not 1 <= limit <= MAX_LIMIT or start < 0:
        raise BadRequest(f"limit must be 1..{MAX_LIMIT}")
    return limit, start


def _page(items: list[Any], key: str, q: dict[str, list[str]]) -> Reply:
    limit, start = _limit(q)
    page = items[start : start + limit]
    cursor = str(start + limit) if start + limit < len(items) else ""
    return _ok({key: page, "cursor": cursor})


# --------------------------------------------------------------------------- the API
class Portfolio:
    """The portfolio endpoints over one Engine.

    Args:
        engine: the matching engine (accounts, orders, books).
    """

    def __init__(self, engine: Engine) -> None:
        self.x = engine

    def handle(
        self, user: str, method: str, path: str, q: dict[str, list[str]], raw: bytes
    ) -> Reply:
        """Answer one request below ``/trade-api/v2`` whose path starts ``/portfolio``."""
        parts = [p for p in path.split("/") if p][1:]
        try:
            return self._route(user, method, parts, q, raw)
        except BadRequest as exc:
            return error(400, exc.code, exc.message)
        except Rejection as exc:
            return error(exc.status, exc.code, exc.message)

    def _route(  # noqa: C901 -- a flat route table reads best
        self, user: str, method: str, parts: list[str], q: dict[str, list[str]], raw: bytes
    ) -> Reply:
        x = self.x
        if method == "GET":
            if parts == ["balance"]:
                return self._balance(user)
            if parts == ["positions"]:
                return self._positions(user, q)
            if parts == ["fills"]:
                return self._fills(user, q)
            if parts == ["settlements"]:
                acc = x.account(user)
                items = [settlement_json(x, s) for s in reversed(acc.settlements)]
                return _page(items, "settlements", q)
            if parts == ["orders"]:
                return self._orders(user, q)
            if parts == ["orders", "queue_positions"]:
                return self._queue_positions(user, q)
            if len(parts) == 2 and parts[0] == "orders":
                return _ok({"order": order_json(x, x._own(user, parts[1]))})
            if len(parts) == 3 and parts[0] == "orders" and parts[2] == "queue_position":
                o = x._own(user, parts[1])
                return _ok({"queue_position_fp": format_count(x.queue_position(o))})
            return error(404, "not_found", f"no route GET /portfolio/{'/'.join(parts)}")
        body = _body(raw)
        v2 = parts[:1] == ["events"]
        p = parts[1:] if v2 else parts
        if method == "POST" and p == ["orders"]:
            o = self._new_order(user, body, v2)
            x.submit(o)
            return _ok(v2_order_json(o) if v2 else {"order": order_json(x, o)}, 201)
        if p == ["orders", "batched"]:
            if method == "POST":
                return self._batch_create(user, body, v2)
            if method == "DELETE":
                return self._batch_cancel(user, body, v2)
        if method == "DELETE" and len(p) == 2 and p[0] == "orders":
            o, n = x.cancel(user, p[1])
            return _ok(self._cancel_json(o, n, v2))
        if method == "POST" and len(p) == 3 and p[0] == "orders" and p[2] == "decrease":
            by = body.get("reduce_by", body.get("reduce_by_fp"))
            to = body.get("reduce_to", body.get("reduce_to_fp"))
            o = x.decrease(
                user,
                p[1],
                None if by is None else _count(by, "reduce_by"),
                None if to is None else _count(to, "reduce_to"),
            )
            return _ok({"order": v2_order_json(o) if v2 else order_json(x, o)})
        if method == "POST" and len(p) == 3 and p[0] == "orders" and p[2] == "amend":
            return self._amend(user, p[1], body, v2)
        return error(404, "not_found", f"no route {method} /portfolio/{'/'.join(parts)}")

    # ----------------------------------------------------------------- reads
    def _balance(self, user: str) -> Reply:
        x = self.x
        acc = x.account(user)
        value = 0
        for m, pos in acc.positions.items():
            for side in (SIDE_YES, SIDE_NO):
                held = pos.held(side)
                best = int(x.mk.books.best[m, side])
                if held and best > 0:
                    value += held * best // E_PER_MONEY  # liquidation at the best bid
        return _ok(
            {
                "balance": acc.balance // 100,
                "balance_dollars": dollars_money(acc.balance),
                "portfolio_value": value // 100,
                "portfolio_value_dollars": dollars_money(value),
                "updated_ts": x.mk.model.now_ms // 1000,
            }
        )

    def _positions(self, user: str, q: dict[str, list[str]]) -> Reply:
        x = self.x
        acc = x.account(user)
        tickers = {t for v in q.get("ticker", []) for t in v.split(",") if t}
        events = {t for v in q.get("event_ticker", []) for t in v.split(",") if t}
        out = []
        for m in sorted(acc.positions):
            pos = acc.positions[m]
            if tickers and x.mk.tickers[m] not in tickers:
                continue
            spec = x.mk.model.markets[m]
            if events and (spec is None or spec.event_ticker not in events):
                continue
            if pos.position == 0 and pos.volume == 0:
                continue
            out.append(position_json(x, acc, m, pos))
        return _page(out, "market_positions", q)

    def _fills(self, user: str, q: dict[str, list[str]]) -> Reply:
        x = self.x
        acc = x.account(user)
        rows = list(reversed(acc.fills))
        if "ticker" in q:
            rows = [r for r in rows if x.mk.tickers[r[0].order.m] == q["ticker"][0]]
        if "order_id" in q:
            rows = [r for r in rows if r[0].order.order_id == q["order_id"][0]]
        limit, start = _limit(q)
        page = [fill_json(x, f, post) for f, post in rows[start : start + limit]]
        cursor = str(start + limit) if start + limit < len(rows) else ""
        return _ok({"fills": page, "cursor": cursor})

    def _orders(self, user: str, q: dict[str, list[str]]) -> Reply:
        x = self.x
        items = [o for o in x.orders.values() if o.user == user]
        if "ticker" in q:
            items = [o for o in items if x.mk.tickers[o.m] == q["ticker"][0]]
        if "status" in q:
            items = [o for o in items if o.status == q["status"][0]]
        items.sort(key=lambda o: o.created_ms, reverse=True)
        return _page([order_json(x, o) for o in items], "orders", q)

    def _queue_positions(self, user: str, q: dict[str, list[str]]) -> Reply:
        x = self.x
        tickers = {t for v in q.get("market_tickers", []) for t in v.split(",") if t}
        out = [
            {
                "order_id": o.order_id,
                "market_ticker": x.mk.tickers[o.m],
                "queue_position_fp": format_count(x.queue_position(o)),
            }
            for o in x.orders.values()
            if o.user == user and o.resting and (not tickers or x.mk.tickers[o.m] in tickers)
        ]
        return _ok({"queue_positions": out})

    # ----------------------------------------------------------------- order entry
    def _market(self, body: Json) -> int:
        t = _field(body, "ticker")
        m = self.x.mk.slot.get(t) if isinstance(t, str) else None
        if m is None:
            raise Rejection(404, "not_found", f"market {t} not found")
        return m

    def _new_order(self, user: str, body: Json, v2: bool) -> Order:
        x = self.x
        m = self._market(body)
        legacy: tuple[str, str] | None = None
        if v2:
            side_s = _choice(body, "side", ("bid", "ask"), None)
            count = _count(_field(body, "count"))
            yp = _price(_field(body, "price"))
            side = SIDE_YES if side_s == "bid" else SIDE_NO
            cid = _field(body, "client_order_id")
            tif = _choice(body, "time_in_force", TIFS, None)
            stp = _choice(body, "self_trade_prevention_type", STPS, None)
        else:
            side, yp, count, legacy = self._legacy_terms(body)
            cid = body.get("client_order_id") or ""
            tif = _choice(body, "time_in_force", TIFS, TIF_GTC)
            stp = _choice(body, "self_trade_prevention_type", STPS, STP_TAKER)
        if not isinstance(cid, str) or len(cid) > 64:
            raise BadRequest("client_order_id must be a string of at most 64 characters")
        price = yp if side == SIDE_YES else PRICE_MAX - yp
        group = body.get("order_group_id")
        return Order(
            order_id=x._new_id(),
            user=user,
            client_order_id=cid,
            m=m,
            side=side,
            price=price,
            initial=count,
            tif=tif,
            post_only=_bool(body, "post_only"),
            reduce_only=_bool(body, "reduce_only"),
            stp=stp,
            order_group_id=group if isinstance(group, str) else None,
            cancel_on_pause=_bool(body, "cancel_order_on_pause"),
            legacy=legacy,
        )

    def _legacy_terms(self, body: Json) -> tuple[int, int, int, tuple[str, str]]:
        """(book side, YES-scale price, count, (side, action)) of a legacy create body."""
        side = _choice(body, "side", ("yes", "no"), None)
        action = _choice(body, "action", ("buy", "sell"), None)
        if "count_fp" in body:
            count = _count(body["count_fp"], "count_fp")
        else:
            count = _count(_field(body, "count"))
        given = [k for k in ("yes_price", "no_price", "yes_price_dollars", "no_price_dollars")
                 if body.get(k) is not None]  # fmt: skip
        if len(given) != 1:
            raise BadRequest(
                "exactly one of yes_price, no_price, yes_price_dollars, or no_price_dollars"
                " should be provided",
                "invalid_order",
            )
        k = given[0]
        v = body[k]
        if k.endswith("_dollars"):
            p = _price(v, k)
        elif isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 99:
            p = v * 10
        else:
            raise BadRequest(f"{k} must be an integer number of cents 1..99", "invalid_price")
        yp = p if k.startswith("yes") else PRICE_MAX - p
        buys_yes = (side == "yes") == (action == "buy")
        return (SIDE_YES if buys_yes else SIDE_NO), yp, count, (side, action)

    def _cancel_json(self, o: Order, n: int, v2: bool) -> Json:
        if v2:
            return {
                "order_id": o.order_id,
                "client_order_id": o.client_order_id,
                "reduced_by": format_count(n),
                "ts_ms": o.updated_ms,
                "order": order_json(self.x, o),
            }
        return {"order": order_json(self.x, o), "reduced_by_fp": format_count(n)}

    def _amend(self, user: str, order_id: str, body: Json, v2: bool) -> Reply:
        x = self.x
        o = x._own(user, order_id)
        if v2:
            yp = _price(_field(body, "price"))
            count = _count(_field(body, "count"))
        else:
            terms = {"side": "yes", "action": "buy", **body}
            _, yp, count, _ = self._legacy_terms(terms)
        price = yp if o.side == SIDE_YES else PRICE_MAX - yp
        new_cid = body.get("updated_client_order_id")
        old, new = x.amend(
            user, order_id, price, count, new_cid if isinstance(new_cid, str) else None
        )
        if v2:
            return _ok({"old_order": v2_order_json(old), "order": v2_order_json(new)})
        return _ok({"old_order": order_json(x, old), "order": order_json(x, new)})

    def _batch_create(self, user: str, body: Json, v2: bool) -> Reply:
        orders = body.get("orders")
        if not isinstance(orders, list) or not orders:
            raise BadRequest("orders must be a non-empty list")
        if len(orders) > MAX_BATCH:
            raise BadRequest(f"at most {MAX_BATCH} orders per batch")
        out = []
        for item in orders:
            cid = item.get("client_order_id") if isinstance(item, dict) else None
            try:
                if not isinstance(item, dict):
                    raise BadRequest("each order must be an object")
                o = self._new_order(user, item, v2)
                self.x.submit(o)
                res = v2_order_json(o) if v2 else order_json(self.x, o)
                out.append({"client_order_id": cid, "order": res, "error": None})
            except BadRequest as exc:
                out.append({"client_order_id": cid, "order": None,
                            "error": {"code": exc.code, "message": exc.message}})  # fmt: skip
            except Rejection as exc:
                out.append({"client_order_id": cid, "order": None,
                            "error": {"code": exc.code, "message": exc.message}})  # fmt: skip
        return _ok({"orders": out}, 201)

    def _batch_cancel(self, user: str, body: Json, v2: bool) -> Reply:
        ids = body.get("ids")
        if ids is None and isinstance(body.get("orders"), list):
            ids = [o.get("order_id") for o in body["orders"] if isinstance(o, dict)]
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise BadRequest("ids must be a non-empty list of order ids")
        if len(ids) > MAX_BATCH:
            raise BadRequest(f"at most {MAX_BATCH} orders per batch")
        out = []
        for oid in ids:
            try:
                o, n = self.x.cancel(user, oid)
                res = self._cancel_json(o, n, v2)
                out.append({"order_id": oid, **res, "error": None})
            except Rejection as exc:
                out.append({"order_id": oid, "order": None,
                            "error": {"code": exc.code, "message": exc.message}})  # fmt: skip
        return _ok({"orders": out})
