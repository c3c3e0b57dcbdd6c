"""Kalshi WebSocket v2 messages as bytes, the way the exchange writes them.

Hot messages (snapshot, delta, trade, ticker) are assembled from precomputed strings:
one ``msg`` body per event, then a short per-subscription prefix with ``sid``/``seq``.
``frame`` prepends the server-side (unmasked) WebSocket header so a whole batch can be
written to the socket in one call.  The vocabulary (channels, error codes and texts,
price/count spelling) is kalshi.protocol's; this module only assembles bytes fast.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from core.dtypes import PRICE_MAX, SIDE_NO, SIDE_YES
from kalshi_rl.kalshi.protocol import ERROR_TEXT
from kalshi_rl.sim.grid import DOLLARS, count_fp

SIDE_NAMES = {SIDE_YES: "yes", SIDE_NO: "no"}


def frame(payload: bytes) -> bytes:
    """A complete unmasked server TEXT frame (FIN set) carrying ``payload``."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


def market_id(ticker: str) -> str:
    """A stable UUID string for a ticker (Kalshi's ``market_id``)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "kalshi-rl-sim/" + ticker))


def trade_id(seed: int, n: int) -> str:
    """Deterministic UUID of the n-th trade of a run."""
    return str(uuid.UUID(int=((seed & 0xFFFFFFFF) << 96) | (n & ((1 << 96) - 1)), version=4))


def no_price(price: int, use_yes_price: bool) -> int:
    """A NO-side price as sent: NO scale, or YES scale (1 - p) when use_yes_price."""
    return PRICE_MAX - price if use_yes_price else price


def levels_json(levels: Sequence[tuple[int, int]]) -> str:
    """``[[price_dollars, count_fp], ...]`` ascending by the price as sent."""
    return "[" + ",".join(f'["{DOLLARS[p]}","{count_fp(q)}"]' for p, q in levels) + "]"


def snapshot_body(
    ticker: str,
    mid: str,
    yes: Sequence[tuple[int, int]],
    no: Sequence[tuple[int, int]],
    use_yes_price: bool,
) -> str:
    """``msg`` of an orderbook_snapshot; side arrays are absent when empty.

    Args:
        yes, no: (price, qty) levels on each side's own scale, any order.
        use_yes_price: send NO levels on the YES scale.
    """
    parts = [f'"market_ticker":"{ticker}","market_id":"{mid}"']
    if yes:
        parts.append('"yes_dollars_fp":' + levels_json(sorted(yes)))
    if no:
        conv = sorted((no_price(p, use_yes_price), q) for p, q in no)
        parts.append('"no_dollars_fp":' + levels_json(conv))
    return "{" + ",".join(parts) + "}"


def delta_body(  # noqa: PLR0917 -- hot-path encoders take positional args
    ticker: str, mid: str, side: int, price: int, delta: int, ts_ms: int, use_yes_price: bool
) -> str:
    """``msg`` of an orderbook_delta (price on the side's scale, or YES scale for NO)."""
    p = no_price(price, use_yes_price) if side == SIDE_NO else price
    return (
        f'{{"market_ticker":"{ticker}","market_id":"{mid}","price_dollars":"{DOLLARS[p]}",'
        f'"delta_fp":"{count_fp(delta)}","side":"{SIDE_NAMES[side]}","ts_ms":{ts_ms}}}'
    )


def book_message(kind: str, sid: int, seq: int, body: str) -> bytes:
    """An orderbook_snapshot / orderbook_delta message with its sid and seq."""
    return f'{{"type":"{kind}","sid":{sid},"seq":{seq},"msg":{body}}}'.encode()


def unsequenced_message(kind: str, sid: int, body: str) -> bytes:
    """A trade / ticker / market_lifecycle_v2 message (these carry no seq)."""
    return f'{{"type":"{kind}","sid":{sid},"msg":{body}}}'.encode()


def trade_body(  # noqa: PLR0917 -- hot-path encoders take positional args
    ticker: str, tid: str, yes_price: int, count: int, taker_side: int, ts_ms: int
) -> str:
    """``msg`` of a trade."""
    return (
        f'{{"trade_id":"{tid}","market_ticker":"{ticker}",'
        f'"yes_price_dollars":"{DOLLARS[yes_price]}",'
        f'"no_price_dollars":"{DOLLARS[PRICE_MAX - yes_price]}","count_fp":"{count_fp(count)}",'
        f'"taker_side":"{SIDE_NAMES[taker_side]}","ts":{ts_ms // 1000},"ts_ms":{ts_ms}}}'
    )


def ticker_body(  # noqa: PLR0917 -- hot-path encoders take positional args
    ticker: str,
    mid: str,
    price: int,
    yes_bid: int,
    yes_ask: int,
    bid_size: int,
    ask_size: int,
    volume: int,
    ts_ms: int,
) -> str:
    """``msg`` of a ticker update (prices in ticks; -1 = none, sent as null)."""

    def d(p: int) -> str:
        return f'"{DOLLARS[p]}"' if p >= 0 else "null"

    return (
        f'{{"market_ticker":"{ticker}","market_id":"{mid}","price_dollars":{d(price)},'
        f'"yes_bid_dollars":{d(yes_bid)},"yes_ask_dollars":{d(yes_ask)},'
        f'"yes_bid_size_fp":"{count_fp(bid_size)}","yes_ask_size_fp":"{count_fp(ask_size)}",'
        f'"volume_fp":"{count_fp(volume)}","ts":{ts_ms // 1000},"ts_ms":{ts_ms}}}'
    )


def response(obj: dict[str, Any]) -> bytes:
    """Any command response as JSON bytes."""
    return orjson.dumps(obj)


def error(cmd_id: int | None, code: int, sid: int | None = None, text: str | None = None) -> bytes:
    """An ``error`` response (``sid`` set for an error on a live subscription)."""
    obj: dict[str, Any] = {"type": "error"}
    if cmd_id is not None:
        obj["id"] = cmd_id
    if sid is not None:
        obj["sid"] = sid
    obj["msg"] = {"code": code, "msg": text or ERROR_TEXT.get(code, "error")}
    return orjson.dumps(obj)
