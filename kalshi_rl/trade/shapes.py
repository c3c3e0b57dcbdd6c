"""Kalshi's JSON shapes for the paper client: REST portfolio objects and private WS messages.

Field names follow Kalshi's API reference and asyncapi (kalshi-protocol.md §3): dollar
amounts as ``*_dollars`` strings with 4 decimals, counts as ``*_fp`` strings with 2
decimals, times as ISO-8601 ``*_time`` strings and ``ts``/``ts_ms`` integers.  Everything
here formats integers in the project's units (core.dtypes); nothing computes a fill.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np

from core.dtypes import (
    MONEY_SCALE,
    ORD_CANCELED,
    ORD_EXECUTED,
    ORD_RESTING,
    ORDER_BUY,
    PRICE_MAX,
    SIDE_YES,
    STP_MAKER,
    TIF_FOK,
    TIF_GTC,
    TIF_IOC,
)
from kalshi_rl.kalshi.protocol import format_count, format_price

STATUS_NAMES = {ORD_RESTING: "resting", ORD_CANCELED: "canceled", ORD_EXECUTED: "executed"}
TIF_NAMES = {TIF_GTC: "good_till_canceled", TIF_IOC: "immediate_or_cancel", TIF_FOK: "fill_or_kill"}
TIF_BY_NAME = {v: k for k, v in TIF_NAMES.items()}
STP_NAMES = {0: "taker_at_cross", STP_MAKER: "maker"}
STP_BY_NAME = {v: k for k, v in STP_NAMES.items()}

# UUID namespaces: paper ids are deterministic UUIDs of (account, number), so a rebuilt
# account shows the same ids.
_ORDER_NS = 0x5041_5045_524F_0000  # "PAPERO"
_FILL_NS = 0x5041_5045_5246_0000  # "PAPERF"
_GROUP_NS = 0x5041_5045_5247_0000  # "PAPERG"


def paper_uuid(kind: str, account_id: int, n: int) -> str:
    """Deterministic UUID string of paper object number ``n`` ('order', 'fill', 'group')."""
    ns = {"order": _ORDER_NS, "fill": _FILL_NS, "group": _GROUP_NS}[kind]
    hi = (ns | (account_id & 0xFFFF)) & 0xFFFF_FFFF_FFFF_FFFF
    return str(uuid.UUID(int=(hi << 64) | (n & 0xFFFF_FFFF_FFFF_FFFF)))


def money_dollars(m: int) -> str:
    """Money units ($0.0001) as a 4-decimal dollar string (``-12345`` -> ``"-1.2345"``)."""
    sign = "-" if m < 0 else ""
    a = -m if m < 0 else m
    return f"{sign}{a // MONEY_SCALE}.{a % MONEY_SCALE:04d}"


def money_cents(m: int) -> int:
    """Money units as whole cents, rounded toward zero (Kalshi's integer ``balance``)."""
    return int(m / 100) if m < 0 else m // 100


def avg_price_dollars(notional: int, filled: int) -> str | None:
    """Average fill price (ticks) of ``notional`` (count x ticks) as a 4-decimal string."""
    if filled <= 0:
        return None
    # dollars = notional / filled / 1000, rounded half up to $0.0001
    q = (notional * 10 * 2 + filled) // (2 * filled)
    return money_dollars(int(q))


def iso_ns(ts_ns: int) -> str:
    """Nanoseconds since the epoch as Kalshi's ISO time (``2026-12-01T15:00:00.123Z``)."""
    dt = datetime.fromtimestamp(ts_ns / 1e9, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def yes_price(side: int, price: int) -> int:
    """The YES-scale price of an order/fill on ``side``'s scale."""
    return price if side == SIDE_YES else PRICE_MAX - price


def book_side(side: int, action: int) -> str:
    """V2 ``side``: "bid" (buys YES == sells NO) or "ask" (sells YES == buys NO)."""
    buys_yes = (side == SIDE_YES) == (action == ORDER_BUY)
    return "bid" if buys_yes else "ask"


def order_json(
    o: np.void,
    e: np.void,
    *,
    order_id: str,
    client_order_id: str,
    ticker: str,
    user_id: str,
    group: str | None,
) -> dict[str, Any]:
    """An ORDER_DTYPE record and its PAPER_ORDER_EXTRA_DTYPE row as Kalshi's REST ``order``.

    The same object is the body of the ``user_order`` message.  ``taker_fees_dollars`` /
    ``maker_fees_dollars`` are trade fees; ``fees_dollars`` is the net fee (trade fees plus
    Kalshi's rounding fees minus rebates) the balance paid.
    """
    side = int(o["side"])
    action = int(o["action"])
    yp = yes_price(side, int(o["price"]))
    bs = book_side(side, action)
    return {
        "order_id": order_id,
        "client_order_id": client_order_id,
        "user_id": user_id,
        "ticker": ticker,
        "status": STATUS_NAMES.get(int(o["status"]), "canceled"),
        "type": "limit",
        "side": "yes" if side == SIDE_YES else "no",
        "action": "buy" if action == ORDER_BUY else "sell",
        "book_side": bs,
        "outcome_side": "yes" if bs == "bid" else "no",
        "yes_price_dollars": format_price(yp),
        "no_price_dollars": format_price(PRICE_MAX - yp),
        "initial_count_fp": format_count(int(o["count"])),
        "fill_count_fp": format_count(int(o["filled"])),
        "remaining_count_fp": format_count(int(o["remaining"])),
        "taker_fees_dollars": money_dollars(int(o["taker_fees"])),
        "maker_fees_dollars": money_dollars(int(o["maker_fees"])),
        "fees_dollars": money_dollars(int(o["fees"])),
        "taker_fill_cost_dollars": money_dollars(int(e["taker_cost"])),
        "maker_fill_cost_dollars": money_dollars(int(e["maker_cost"])),
        "average_fill_price": avg_price_dollars(int(o["notional"]), int(o["filled"])),
        "time_in_force": TIF_NAMES[int(o["tif"])],
        "post_only": bool(o["post_only"]),
        "reduce_only": bool(o["reduce_only"]),
        "self_trade_prevention_type": STP_NAMES.get(int(e["stp"]), "taker_at_cross"),
        "order_group_id": group,
        "cancel_order_on_pause": bool(e["cancel_on_pause"]),
        "expiration_time": None,
        "created_time": iso_ns(int(e["created_ns"])),
        "last_update_time": iso_ns(int(e["updated_ns"])),
    }


def fill_json(
    f: np.void, *, fill_id: str, order_id: str, client_order_id: str, ticker: str
) -> dict[str, Any]:
    """One PAPER_FILL_DTYPE record as Kalshi's REST ``fill`` object (fee_cost = net fee)."""
    side = int(f["side"])
    action = int(f["action"])
    yp = yes_price(side, int(f["price"]))
    bs = book_side(side, action)
    return {
        "fill_id": fill_id,
        "trade_id": fill_id,
        "order_id": order_id,
        "client_order_id": client_order_id,
        "ticker": ticker,
        "market_ticker": ticker,
        "side": "yes" if side == SIDE_YES else "no",
        "action": "buy" if action == ORDER_BUY else "sell",
        "book_side": bs,
        "outcome_side": "yes" if bs == "bid" else "no",
        "count_fp": format_count(int(f["count"])),
        "yes_price_dollars": format_price(yp),
        "no_price_dollars": format_price(PRICE_MAX - yp),
        "is_taker": bool(f["is_taker"]),
        "fee_cost": money_dollars(int(f["fee"])),
        "created_time": iso_ns(int(f["ts"])),
        "ts": int(f["ts"]) // 1_000_000_000,
    }


def fill_msg(fill: dict[str, Any], post_position: int) -> dict[str, Any]:
    """The private WS ``fill`` message for a REST fill object."""
    msg = {
        "trade_id": fill["trade_id"],
        "order_id": fill["order_id"],
        "client_order_id": fill["client_order_id"],
        "market_ticker": fill["market_ticker"],
        "is_taker": fill["is_taker"],
        "side": fill["side"],
        "action": fill["action"],
        "yes_price_dollars": fill["yes_price_dollars"],
        "count_fp": fill["count_fp"],
        "fee_cost": fill["fee_cost"],
        "post_position_fp": format_count(post_position),
        "ts": fill["ts"],
    }
    return {"type": "fill", "sid": 0, "msg": msg}


def position_json(ticker: str, p: np.void, resting: int, ts_ns: int) -> dict[str, Any]:
    """One POSITION_DTYPE record as Kalshi's REST ``market_position`` object."""
    return {
        "ticker": ticker,
        "position_fp": format_count(int(p["position"])),
        "market_exposure_dollars": money_dollars(int(p["cost_basis"])),
        "realized_pnl_dollars": money_dollars(int(p["realized_pnl"])),
        "fees_paid_dollars": money_dollars(int(p["fees_paid"])),
        "resting_orders_count": resting,
        "last_updated_ts": iso_ns(ts_ns),
    }


def position_msg(ticker: str, p: np.void, user_id: str) -> dict[str, Any]:
    """The private WS ``market_position`` message (channel ``market_positions``)."""
    return {
        "type": "market_position",
        "sid": 0,
        "msg": {
            "user_id": user_id,
            "market_ticker": ticker,
            "position_fp": format_count(int(p["position"])),
            "position_cost_dollars": money_dollars(int(p["cost_basis"])),
            "realized_pnl_dollars": money_dollars(int(p["realized_pnl"])),
            "fees_paid_dollars": money_dollars(int(p["fees_paid"])),
            "volume_fp": format_count(int(p["volume"])),
        },
    }


def user_order_msg(order: dict[str, Any]) -> dict[str, Any]:
    """The private WS ``user_order`` message (channel ``user_orders``)."""
    return {"type": "user_order", "sid": 0, "msg": order}
