"""Kalshi WebSocket v2: frame bytes -> typed records, and command encoders.

Decoding is strict (see /work/shared/kalshi-protocol.md §1-2): dollar strings become integer
ticks of $0.001 and ``*_fp`` counts integer hundredths EXACTLY, by integer arithmetic on the
decimal string; values off the grid are rejected.  Results are memoised per string (a
market's prices and usual sizes repeat endlessly), so the hot path is one dict lookup per
field.  Nothing here raises into the feed: ``Decoder.decode`` returns ``None`` (or a
``BadBookMsg`` when sid/seq survived) and counts the reason in ``DecodeStats``.

If the live exchange changes a field name, the edit belongs in this file only.
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import orjson

from core.dtypes import (
    COUNT_SCALE,
    NO_PRICE,
    NO_SEQ,
    NO_TS,
    PRICE_MAX,
    PRICE_SCALE,
    SIDE_NO,
    SIDE_NONE,
    SIDE_YES,
    SNAPSHOT_LEVEL_DTYPE,
    ST_OK,
    TAKER_NO,
    TAKER_YES,
)

log = logging.getLogger(__name__)

CH_ORDERBOOK = "orderbook_delta"
CH_TRADE = "trade"
CH_TICKER = "ticker"
CH_LIFECYCLE = "market_lifecycle_v2"
DEFAULT_CHANNELS: tuple[str, ...] = (CH_ORDERBOOK, CH_TRADE, CH_TICKER, CH_LIFECYCLE)
# private channels of a trading account (messages: fill, user_order, market_position)
CH_FILL = "fill"
CH_USER_ORDERS = "user_orders"
CH_POSITIONS = "market_positions"
ACCOUNT_CHANNELS: tuple[str, ...] = (CH_FILL, CH_USER_ORDERS, CH_POSITIONS)
# update_subscription actions
UPDATE_ACTIONS: tuple[str, ...] = ("add_markets", "delete_markets", "get_snapshot")


class KalshiErrorCode(enum.IntEnum):
    """Server ``error`` codes of the WebSocket API (protocol doc §1)."""

    UNABLE_TO_PROCESS = 1
    PARAMS_REQUIRED = 2
    CHANNELS_REQUIRED = 3
    SIDS_REQUIRED = 4
    UNKNOWN_COMMAND = 5
    ALREADY_SUBSCRIBED = 6
    UNKNOWN_SID = 7
    UNKNOWN_CHANNEL = 8
    AUTH_REQUIRED = 9
    CHANNEL_ERROR = 10
    INVALID_PARAM = 11
    EXACTLY_ONE_SID = 12
    UNSUPPORTED_ACTION = 13
    TICKER_REQUIRED = 14
    ACTION_REQUIRED = 15
    MARKET_NOT_FOUND = 16
    INTERNAL = 17
    COMMAND_TIMEOUT = 18
    SHARD_19 = 19
    SHARD_20 = 20
    SHARD_21 = 21
    SHARD_22 = 22
    MATCH_IDS_REQUIRED = 23
    INDEX_IDS_REQUIRED = 24
    BUFFER_OVERFLOW = 25
    MARKET_LIMIT = 26
    TOO_MANY_REQUESTS = 27


# The ``msg`` text Kalshi sends with each code (what a server writes; clients match codes).
ERROR_TEXT: dict[int, str] = {
    KalshiErrorCode.UNABLE_TO_PROCESS: "Unable to process message",
    KalshiErrorCode.PARAMS_REQUIRED: "Params required",
    KalshiErrorCode.CHANNELS_REQUIRED: "Channels required",
    KalshiErrorCode.SIDS_REQUIRED: "Sids required",
    KalshiErrorCode.UNKNOWN_COMMAND: "Unknown command",
    KalshiErrorCode.ALREADY_SUBSCRIBED: "Already subscribed",
    KalshiErrorCode.UNKNOWN_SID: "Unknown subscription ID",
    KalshiErrorCode.UNKNOWN_CHANNEL: "Unknown channel name",
    KalshiErrorCode.AUTH_REQUIRED: "Authentication required",
    KalshiErrorCode.CHANNEL_ERROR: "Channel error",
    KalshiErrorCode.INVALID_PARAM: "Invalid parameter",
    KalshiErrorCode.EXACTLY_ONE_SID: "Exactly one subscription ID is required",
    KalshiErrorCode.UNSUPPORTED_ACTION: "Action not supported",
    KalshiErrorCode.TICKER_REQUIRED: "Market ticker required",
    KalshiErrorCode.ACTION_REQUIRED: "Action required",
    KalshiErrorCode.MARKET_NOT_FOUND: "Market not found",
    KalshiErrorCode.INTERNAL: "Internal error",
    KalshiErrorCode.COMMAND_TIMEOUT: "Command timeout",
    KalshiErrorCode.BUFFER_OVERFLOW: "Subscription buffer overflow",
    KalshiErrorCode.MARKET_LIMIT: "Subscription market limit reached",
    KalshiErrorCode.TOO_MANY_REQUESTS: "Too many requests",
}

# Codes that, on a live sid, mean the subscription is dead: resubscribe.
RESUBSCRIBE_CODES = frozenset(
    {KalshiErrorCode.CHANNEL_ERROR, KalshiErrorCode.INTERNAL, KalshiErrorCode.BUFFER_OVERFLOW}
)


class Reason(enum.StrEnum):
    """Why a frame was rejected (DecodeStats keys)."""

    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    BAD_FIELD = "bad_field"  # wrong JSON type, unknown side, malformed number
    OFF_GRID_PRICE = "off_grid_price"  # finer than $0.001 or outside 0..1
    BAD_COUNT = "bad_count"  # more than 2 decimals, or malformed
    BAD_UUID = "bad_uuid"


# --------------------------------------------------------------------------- records
class DeltaMsg(NamedTuple):
    """``orderbook_delta``: a signed change of one level (price on ``side``'s scale)."""

    sid: int
    seq: int
    ticker: str
    side: int
    price: int
    delta: int
    ts_ms: int


class SnapshotMsg(NamedTuple):
    """``orderbook_snapshot``: ``levels`` rows carry side/price/qty/sid/seq/exch_ts; the
    feed fills market, rec_id and recv_ts.  An empty book is one SIDE_NONE marker row."""

    sid: int
    seq: int
    ticker: str
    levels: np.ndarray
    ts_ms: int


class TradeMsg(NamedTuple):
    """``trade``: one execution; ``yes_price`` in ticks on the YES scale."""

    sid: int
    seq: int
    ticker: str
    yes_price: int
    size: int  # count units (``count`` would shadow tuple.count)
    taker_side: int
    trade_id_hi: int
    trade_id_lo: int
    ts_ms: int


class TickerMsg(NamedTuple):
    """``ticker``: top-of-book summary (ticks / count units; NO_PRICE where absent)."""

    sid: int
    ticker: str
    price: int
    yes_bid: int
    yes_ask: int
    ts_ms: int


class LifecycleMsg(NamedTuple):
    """``market_lifecycle_v2`` (and its ``event_lifecycle`` sibling): a status change.

    ``result`` is 'yes'/'no'/'scalar' or '' ; ``settlement_value`` ticks or NO_PRICE;
    ``open_ts_ms``/``close_ts_ms``: the market's open/close time (``created``,
    ``close_date_updated``: Kalshi sends unix seconds) in unix ms, NO_TS when absent."""

    sid: int
    ticker: str
    event_type: str
    result: str
    settlement_value: int
    ts_ms: int
    open_ts_ms: int = NO_TS
    close_ts_ms: int = NO_TS


class SubscribedMsg(NamedTuple):
    """Ack of ``subscribe``: one per channel, each with its own sid."""

    id: int
    sid: int
    channel: str


class UnsubscribedMsg(NamedTuple):
    """Ack of ``unsubscribe`` for one sid."""

    id: int
    sid: int
    seq: int


class OkMsg(NamedTuple):
    """``ok``: ack of update_subscription (tickers now in the sub) or list_subscriptions."""

    id: int
    sid: int
    seq: int
    market_tickers: tuple[str, ...]
    subscriptions: tuple[tuple[str, int], ...]  # (channel, sid) for list_subscriptions


class ErrorMsg(NamedTuple):
    """``error``: the server refused a command or killed a subscription (``sid`` > 0)."""

    id: int
    sid: int
    code: int
    msg: str


class BadBookMsg(NamedTuple):
    """An orderbook message whose envelope (sid/seq/ticker) parsed but whose body did not.

    The feed must still advance the sid's seq and resync ``ticker``: the book missed it."""

    sid: int
    seq: int
    ticker: str
    reason: str


Record = (
    DeltaMsg
    | SnapshotMsg
    | TradeMsg
    | TickerMsg
    | LifecycleMsg
    | SubscribedMsg
    | UnsubscribedMsg
    | OkMsg
    | ErrorMsg
    | BadBookMsg
)


class DecodeError(ValueError):
    """Internal: a field failed validation (caught inside Decoder; never escapes)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


# --------------------------------------------------------------------------- numbers
_MAX_COUNT_CACHE = 1 << 16
_PRICE_CACHE: dict[str, int] = {}
_COUNT_CACHE: dict[str, int] = {}


def _digits(s: str) -> bool:
    # str.isdigit() accepts '²' and int() accepts '1_0' / ' 1': be strict
    return bool(s) and s.isascii() and s.isdigit()


def parse_price(s: str) -> int:
    """Dollar string -> ticks of $0.001, exactly.

    Args:
        s: e.g. ``"0.960"``, ``"0.0800"``, ``"1"``, ``"0.5"`` (at most 6 decimals).

    Returns:
        ticks in PRICE_MIN..PRICE_MAX.

    Raises:
        DecodeError: OFF_GRID_PRICE (finer than $0.001 or outside [0, 1]) or BAD_FIELD.
    """
    v = _PRICE_CACHE.get(s)
    if v is not None:
        return v
    if not isinstance(s, str):
        raise DecodeError(Reason.BAD_FIELD, f"price {s!r} is not a string")
    whole, dot, frac = s.partition(".")
    if not _digits(whole) or (dot and not _digits(frac)) or len(frac) > 6 or len(whole) > 1:
        raise DecodeError(Reason.BAD_FIELD, f"malformed price {s!r}")
    head, tail = frac[:3], frac[3:]
    if tail.strip("0"):
        raise DecodeError(Reason.OFF_GRID_PRICE, f"price {s!r} is finer than $0.001")
    ticks = int(whole) * PRICE_SCALE + (int(head.ljust(3, "0")) if head else 0)
    if ticks > PRICE_MAX:
        raise DecodeError(Reason.OFF_GRID_PRICE, f"price {s!r} is above $1")
    # valid price strings are few (<= 1001 values x a handful of spellings): cache all
    _PRICE_CACHE[s] = ticks
    return ticks


def parse_count(s: str) -> int:
    """Fixed-point count string -> hundredths of a contract, exactly (sign allowed).

    Args:
        s: e.g. ``"300.00"``, ``"-54.00"``, ``"1.5"``, ``"7"``.

    Returns:
        signed count units.

    Raises:
        DecodeError: BAD_COUNT (non-zero digits past 2 decimals, malformed) or BAD_FIELD.
    """
    v = _COUNT_CACHE.get(s)
    if v is not None:
        return v
    if not isinstance(s, str):
        raise DecodeError(Reason.BAD_FIELD, f"count {s!r} is not a string")
    body = s[1:] if s[:1] in ("-", "+") else s
    whole, dot, frac = body.partition(".")
    if not _digits(whole) or (dot and not _digits(frac)) or len(whole) > 15:
        raise DecodeError(Reason.BAD_COUNT, f"malformed count {s!r}")
    head, tail = frac[:2], frac[2:]
    if tail.strip("0"):
        raise DecodeError(Reason.BAD_COUNT, f"count {s!r} has more than 2 decimals")
    n = int(whole) * COUNT_SCALE + (int(head.ljust(2, "0")) if head else 0)
    if s[0] == "-":
        n = -n
    if len(_COUNT_CACHE) < _MAX_COUNT_CACHE:
        _COUNT_CACHE[s] = n
    return n


def format_price(ticks: int) -> str:
    """Ticks -> Kalshi dollar string with 4 decimals (``960`` -> ``"0.9600"``)."""
    return f"{ticks // PRICE_SCALE}.{ticks % PRICE_SCALE:03d}0"


def format_count(n: int) -> str:
    """Count units -> ``*_fp`` string with 2 decimals (``-5400`` -> ``"-54.00"``)."""
    sign = "-" if n < 0 else ""
    a = abs(n)
    return f"{sign}{a // COUNT_SCALE}.{a % COUNT_SCALE:02d}"


def format_money(money: int) -> str:
    """Money units ($0.0001) -> Kalshi's 4-decimal ``*_dollars`` string (sign kept)."""
    sign = "-" if money < 0 else ""
    a = abs(money)
    return f"{sign}{a // 10_000}.{a % 10_000:04d}"


def parse_money(s: str) -> int:
    """A ``*_dollars`` amount string (<= 4 decimals, sign allowed) -> money units, exactly.

    Raises:
        DecodeError: BAD_FIELD when it is not such a string.
    """
    if not isinstance(s, str):
        raise DecodeError(Reason.BAD_FIELD, f"money {s!r} is not a string")
    body = s[1:] if s[:1] in ("-", "+") else s
    whole, dot, frac = body.partition(".")
    if not _digits(whole) or (dot and not _digits(frac)) or frac[4:].strip("0"):
        raise DecodeError(Reason.BAD_FIELD, f"money {s!r} is not dollars with <= 4 decimals")
    v = int(whole) * 10_000 + (int(frac[:4].ljust(4, "0")) if frac else 0)
    return -v if s[0] == "-" else v


def uuid_halves(s: str) -> tuple[int, int]:
    """A UUID string -> (hi, lo) unsigned 64-bit halves, big-endian as TRADE_DTYPE stores."""
    try:
        v = uuid.UUID(s).int
    except (ValueError, TypeError, AttributeError) as exc:
        raise DecodeError(Reason.BAD_UUID, f"trade_id {s!r} is not a UUID") from exc
    return v >> 64, v & 0xFFFF_FFFF_FFFF_FFFF


def _side(s: Any) -> int:
    if s == "yes":
        return SIDE_YES
    if s == "no":
        return SIDE_NO
    raise DecodeError(Reason.BAD_FIELD, f"side {s!r} is not 'yes'/'no'")


def _int(v: Any, name: str) -> int:
    # bool is an int subclass; a JSON true is not a seq
    if type(v) is not int:
        raise DecodeError(Reason.BAD_FIELD, f"{name} {v!r} is not an integer")
    return v


# --------------------------------------------------------------------------- stats
@dataclass
class DecodeStats:
    """Rejected frames by reason, plus a rate-limited log of samples."""

    errors: dict[str, int] = field(default_factory=dict)
    log_interval_s: float = 5.0
    _last_log: float = field(default=0.0, repr=False)
    _suppressed: int = field(default=0, repr=False)

    @property
    def total(self) -> int:
        """All rejected frames."""
        return sum(self.errors.values())

    def count(self, reason: str, sample: bytes | memoryview | str, detail: str = "") -> None:
        """Count one rejection; log a truncated sample at most once per ``log_interval_s``."""
        self.errors[reason] = self.errors.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._last_log >= self.log_interval_s:
            # a memoryview is only valid during the frame callback: copy the sample now
            raw = (
                sample
                if isinstance(sample, str)
                else bytes(sample[:200]).decode("utf-8", "replace")
            )
            log.warning(
                "rejected frame (%s%s), %d similar suppressed: %s",
                reason,
                f": {detail}" if detail else "",
                self._suppressed,
                raw[:200],
            )
            self._last_log = now
            self._suppressed = 0
        else:
            self._suppressed += 1


# --------------------------------------------------------------------------- hot path
_SIDES = {"yes": SIDE_YES, "no": SIDE_NO}

DeltaFields = tuple[int, int, str, int, int, int, int]


def fast_delta(d: Any) -> DeltaFields | None:
    """The fields of a well-formed ``orderbook_delta`` dict, or None for anything else.

    The feed's hot path: no exceptions raised, no records built; prices and counts come
    from the memo tables only, which hold nothing but strings that passed the strict
    parsers.  None means "not sure": hand the frame to ``Decoder.decode_obj`` for the
    full, counted verdict (which also memoises a new valid string for next time).

    Returns:
        (sid, seq, ticker, side, price ticks, delta count units, ts_ms) or None.
    """
    try:
        if d["type"] != "orderbook_delta":
            return None
        m = d["msg"]
        sid = d["sid"]
        seq = d["seq"]
        ticker = m["market_ticker"]
        side = _SIDES.get(m["side"])
        px = _PRICE_CACHE.get(m["price_dollars"])
        n = _COUNT_CACHE.get(m["delta_fp"])
        ts = m["ts_ms"]
    except (KeyError, TypeError):
        return None
    if (
        side is None
        or px is None
        or n is None
        or type(sid) is not int
        or type(seq) is not int
        or type(ts) is not int
        or type(ticker) is not str
    ):
        return None
    return sid, seq, ticker, side, px, n, ts


# --------------------------------------------------------------------------- decoder
class Decoder:
    """Frame bytes -> one record (or None). Stateless apart from its DecodeStats."""

    def __init__(self, stats: DecodeStats | None = None) -> None:
        self.stats = stats if stats is not None else DecodeStats()
        self._slow: dict[str, Callable[[dict[str, Any]], Record]] = {
            "orderbook_snapshot": self._snapshot,
            "trade": self._trade,
            "ticker": self._ticker,
            "market_lifecycle_v2": self._lifecycle,
            "event_lifecycle": self._lifecycle,
            "subscribed": self._subscribed,
            "unsubscribed": self._unsubscribed,
            "ok": self._ok,
            "error": self._error,
        }

    def decode(self, frame: bytes | memoryview | str) -> Record | None:
        """Decode one text frame.

        Args:
            frame: the frame payload (bytes, a memoryview valid for this call, or str).

        Returns:
            a record, a BadBookMsg (body invalid, envelope usable), or None (counted).
        """
        try:
            d = orjson.loads(frame)
        except orjson.JSONDecodeError:
            self.stats.count(Reason.NOT_JSON, frame)
            return None
        return self.decode_obj(d, frame)

    def decode_obj(self, d: Any, frame: bytes | memoryview | str) -> Record | None:
        """Like ``decode`` for a frame already parsed into ``d`` (``frame`` for log samples)."""
        try:
            typ = d["type"]
            if typ == "orderbook_delta":
                m = d["msg"]
                ts = m.get("ts_ms")
                ticker = m["market_ticker"]
                if type(ticker) is not str:
                    raise DecodeError(Reason.BAD_FIELD, f"market_ticker {ticker!r}")
                return DeltaMsg(
                    _int(d["sid"], "sid"),
                    _int(d["seq"], "seq"),
                    ticker,
                    _side(m["side"]),
                    parse_price(m["price_dollars"]),
                    parse_count(m["delta_fp"]),
                    NO_TS if ts is None else _int(ts, "ts_ms"),
                )
            fn = self._slow.get(typ)
            if fn is None:
                self.stats.count(Reason.UNKNOWN_TYPE, frame, str(typ)[:40])
                return None
            rec: Record = fn(d)
            return rec
        except DecodeError as exc:
            return self._reject(d, exc.reason, frame, str(exc))
        except KeyError as exc:
            return self._reject(d, Reason.MISSING_FIELD, frame, str(exc))
        except (TypeError, AttributeError, ValueError) as exc:
            reason = Reason.NOT_OBJECT if not isinstance(d, dict) else Reason.BAD_FIELD
            return self._reject(d, reason, frame, str(exc))

    def _reject(
        self, d: Any, reason: Reason, frame: bytes | memoryview | str, detail: str
    ) -> Record | None:
        self.stats.count(reason, frame, detail)
        if not isinstance(d, dict) or d.get("type") not in (
            "orderbook_delta",
            "orderbook_snapshot",
        ):
            return None
        sid, seq, m = d.get("sid"), d.get("seq"), d.get("msg")
        ticker = m.get("market_ticker") if isinstance(m, dict) else None
        if type(sid) is int and type(seq) is int and isinstance(ticker, str):
            return BadBookMsg(sid, seq, ticker, str(reason))
        return None

    def _snapshot(self, d: dict[str, Any]) -> SnapshotMsg:
        sid, seq = _int(d["sid"], "sid"), _int(d["seq"], "seq")
        m = d["msg"]
        ticker = m["market_ticker"]
        if not isinstance(ticker, str):
            raise DecodeError(Reason.BAD_FIELD, "market_ticker is not a string")
        ts = m.get("ts_ms")
        ts_ms = NO_TS if ts is None else _int(ts, "ts_ms")
        sides: list[int] = []
        prices: list[int] = []
        qtys: list[int] = []
        for key, side in (("yes_dollars_fp", SIDE_YES), ("no_dollars_fp", SIDE_NO)):
            for px, qty in m.get(key) or ():
                sides.append(side)
                prices.append(parse_price(px))
                qtys.append(parse_count(qty))
        n = len(sides)
        levels = np.zeros(max(n, 1), dtype=SNAPSHOT_LEVEL_DTYPE)
        if n:
            levels["side"] = sides
            levels["price"] = prices
            levels["qty"] = qtys
        else:
            levels["side"] = SIDE_NONE
            levels["price"] = NO_PRICE
        levels["sid"] = sid
        levels["seq"] = seq
        levels["exch_ts"] = ts_ms
        levels["status"] = ST_OK
        return SnapshotMsg(sid, seq, ticker, levels, ts_ms)

    def _trade(self, d: dict[str, Any]) -> TradeMsg:
        m = d["msg"]
        hi, lo = uuid_halves(m["trade_id"])
        taker = m["taker_side"]
        if taker == "yes":
            ts = TAKER_YES
        elif taker == "no":
            ts = TAKER_NO
        else:
            raise DecodeError(Reason.BAD_FIELD, f"taker_side {taker!r}")
        seq = d.get("seq")
        return TradeMsg(
            _int(d["sid"], "sid"),
            NO_SEQ if seq is None else _int(seq, "seq"),
            m["market_ticker"],
            parse_price(m["yes_price_dollars"]),
            parse_count(m["count_fp"]),
            ts,
            hi,
            lo,
            _int(m["ts_ms"], "ts_ms"),
        )

    def _ticker(self, d: dict[str, Any]) -> TickerMsg:
        m = d["msg"]

        def px(key: str) -> int:
            v = m.get(key)
            return NO_PRICE if v is None else parse_price(v)

        ts = m.get("ts_ms")
        return TickerMsg(
            _int(d["sid"], "sid"),
            m["market_ticker"],
            px("price_dollars"),
            px("yes_bid_dollars"),
            px("yes_ask_dollars"),
            NO_TS if ts is None else _int(ts, "ts_ms"),
        )

    def _lifecycle(self, d: dict[str, Any]) -> LifecycleMsg:
        m = d["msg"]
        sv = m.get("settlement_value_dollars", m.get("settlement_value"))
        value = NO_PRICE
        if isinstance(sv, str):
            value = parse_price(sv)
        elif type(sv) is int and 0 <= sv <= 100:  # legacy cents integer
            value = sv * (PRICE_SCALE // 100)
        ts = m.get("ts_ms")
        opn, close = m.get("open_ts"), m.get("close_ts")
        return LifecycleMsg(
            _int(d.get("sid", 0), "sid"),
            m.get("market_ticker") or m.get("event_ticker") or "",
            str(m.get("event_type", d["type"])),
            str(m.get("result") or ""),
            value,
            NO_TS if ts is None else _int(ts, "ts_ms"),
            NO_TS if opn is None else _int(opn, "open_ts") * 1000,
            NO_TS if close is None else _int(close, "close_ts") * 1000,
        )

    def _subscribed(self, d: dict[str, Any]) -> SubscribedMsg:
        m = d["msg"]
        return SubscribedMsg(_int(d.get("id", 0), "id"), _int(m["sid"], "sid"), str(m["channel"]))

    def _unsubscribed(self, d: dict[str, Any]) -> UnsubscribedMsg:
        seq = d.get("seq")
        return UnsubscribedMsg(
            _int(d.get("id", 0), "id"),
            _int(d["sid"], "sid"),
            NO_SEQ if seq is None else _int(seq, "seq"),
        )

    def _ok(self, d: dict[str, Any]) -> OkMsg:
        m = d.get("msg")
        tickers: tuple[str, ...] = ()
        subs: tuple[tuple[str, int], ...] = ()
        if isinstance(m, dict):
            tickers = tuple(m.get("market_tickers") or ())
        elif isinstance(m, list):
            subs = tuple((str(s["channel"]), _int(s["sid"], "sid")) for s in m)
        seq = d.get("seq")
        return OkMsg(
            _int(d.get("id", 0), "id"),
            _int(d.get("sid", 0), "sid"),
            NO_SEQ if seq is None else _int(seq, "seq"),
            tickers,
            subs,
        )

    def _error(self, d: dict[str, Any]) -> ErrorMsg:
        m = d["msg"]
        return ErrorMsg(
            _int(d.get("id", 0), "id"),
            _int(d.get("sid", m.get("sid", 0)), "sid"),
            _int(m["code"], "code"),
            str(m.get("msg", "")),
        )


# --------------------------------------------------------------------------- encoders
def _cmd(cmd_id: int, cmd: str, params: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {"id": cmd_id, "cmd": cmd}
    if params is not None:
        body["params"] = params
    return orjson.dumps(body)


def encode_subscribe(
    cmd_id: int,
    tickers: Sequence[str],
    channels: Iterable[str] = DEFAULT_CHANNELS,
) -> bytes:
    """``subscribe`` to ``channels`` for ``tickers``.

    ``use_yes_price`` is pinned to false: NO levels arrive on the NO scale, which is how
    core.book stores them (Kalshi says the default will flip; we never rely on it).
    """
    return _cmd(
        cmd_id,
        "subscribe",
        {"channels": list(channels), "market_tickers": list(tickers), "use_yes_price": False},
    )


def encode_subscribe_all(cmd_id: int, channels: Iterable[str]) -> bytes:
    """``subscribe`` to ``channels`` for every market (no ticker list): e.g.
    ``market_lifecycle_v2``, whose events announce markets we do not know yet."""
    return _cmd(cmd_id, "subscribe", {"channels": list(channels)})


def encode_unsubscribe(cmd_id: int, sids: Sequence[int]) -> bytes:
    """``unsubscribe`` the given sids."""
    return _cmd(cmd_id, "unsubscribe", {"sids": list(sids)})


def encode_update_subscription(cmd_id: int, sid: int, action: str, tickers: Sequence[str]) -> bytes:
    """``update_subscription`` on one sid: action add_markets | delete_markets | get_snapshot."""
    if action not in UPDATE_ACTIONS:
        raise ValueError(f"update_subscription action {action!r} is not supported")
    return _cmd(
        cmd_id,
        "update_subscription",
        {"sids": [sid], "action": action, "market_tickers": list(tickers)},
    )


def encode_list_subscriptions(cmd_id: int) -> bytes:
    """``list_subscriptions`` (no params)."""
    return _cmd(cmd_id, "list_subscriptions")


# Server-side encoders for the same wire format (tests and load harnesses build frames
# with these so both ends agree on one spelling).
def encode_delta(
    sid: int, seq: int, ticker: str, *, side: int, price: int, delta: int, ts_ms: int
) -> bytes:
    """An ``orderbook_delta`` frame (price on ``side``'s scale, ticks; delta count units)."""
    return orjson.dumps(
        {
            "type": "orderbook_delta",
            "sid": sid,
            "seq": seq,
            "msg": {
                "market_ticker": ticker,
                "price_dollars": format_price(price),
                "delta_fp": format_count(delta),
                "side": "yes" if side == SIDE_YES else "no",
                "ts_ms": ts_ms,
            },
        }
    )


def encode_snapshot(
    sid: int,
    seq: int,
    ticker: str,
    yes: Sequence[tuple[int, int]],
    no: Sequence[tuple[int, int]],
) -> bytes:
    """An ``orderbook_snapshot`` frame from (price ticks, qty) levels; empty sides omitted."""
    msg: dict[str, Any] = {"market_ticker": ticker}
    if yes:
        msg["yes_dollars_fp"] = [[format_price(p), format_count(q)] for p, q in yes]
    if no:
        msg["no_dollars_fp"] = [[format_price(p), format_count(q)] for p, q in no]
    return orjson.dumps({"type": "orderbook_snapshot", "sid": sid, "seq": seq, "msg": msg})
