"""The WebSocket subscription protocol of the sim: sessions, sids, seq, commands.

``Subscriptions`` owns the connected ``Session``s and, per channel and market, the live
``Sub``s that receive it.  It answers ``subscribe`` / ``unsubscribe`` /
``update_subscription`` / ``list_subscriptions`` exactly as Kalshi does (error codes and
replies in kalshi-protocol.md §1) and builds the per-subscription messages (snapshot,
ticker) that the protocol itself sends.  Fan-out of generated events is
kalshi_rl.sim.fanout's job; fault injection and blast mode act on the objects here.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport

from core.dtypes import SIDE_NO, SIDE_YES
from kalshi_rl.kalshi.protocol import (
    ACCOUNT_CHANNELS,
    CH_LIFECYCLE,
    CH_ORDERBOOK,
    CH_TICKER,
    CH_TRADE,
    UPDATE_ACTIONS,
    KalshiErrorCode,
)
from kalshi_rl.sim import wire
from kalshi_rl.sim.markets import SimMarkets

# the public-data channels the sim serves, and every channel (the private ones need a user)
CHANNELS = (CH_ORDERBOOK, CH_TRADE, CH_TICKER, CH_LIFECYCLE)
ALL_CHANNELS = CHANNELS + ACCOUNT_CHANNELS
_COMMANDS = ("subscribe", "unsubscribe", "update_subscription")


class SentMessage(NamedTuple):
    """One message the sim wrote to a client (or dropped, for an injected gap)."""

    conn: int  # connection number (1, 2, ... in accept order)
    sid: int | None
    seq: int | None  # None for messages that carry no seq
    type: str
    ticker: str | None
    payload: bytes  # the JSON text (b"" for a dropped message)
    dropped: bool = False


class Sub:
    """One subscription (one channel) of one connection."""

    __slots__ = ("channel", "markets", "seq", "session", "sid", "use_yes_price")

    def __init__(
        self,
        session: Session,
        sid: int,
        channel: str,
        markets: set[int] | None,
        use_yes_price: bool,
    ) -> None:
        self.session = session
        self.sid = sid
        self.channel = channel
        self.markets = markets  # None = every market (public channels only)
        self.use_yes_price = use_yes_price
        self.seq = 0  # last seq used


class Session(WSListener):
    """One client connection: its subscriptions and its outgoing frame buffer."""

    def __init__(self, hub: Subscriptions, conn: int, user: str | None = None) -> None:
        super().__init__()
        self.hub = hub
        self.conn = conn
        self.user = user  # the API key id of the handshake (None = unauthenticated)
        self.transport: WSTransport | None = None
        self.subs: dict[int, Sub] = {}
        self.next_sid = 1
        self.out: list[bytes] = []
        self.paused = False
        self.resumed = asyncio.Event()
        self.resumed.set()
        self.blasting = False

    # ----------------------------------------------------------------- picows callbacks
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.hub.sessions[self.conn] = self

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.resumed.set()  # release a blast waiting for the socket to drain
        self.hub.drop_session(self)

    def send_user_specific_ping(self, transport: WSTransport) -> None:
        transport.send_ping(b"heartbeat")

    def pause_writing(self) -> None:
        self.paused = True
        self.resumed.clear()

    def resume_writing(self) -> None:
        self.paused = False
        self.resumed.set()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        mt = frame.msg_type
        if mt in (WSMsgType.TEXT, WSMsgType.BINARY):
            self.hub.handle_command(self, frame.get_payload_as_bytes())
            self.flush()
        elif mt == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    # ----------------------------------------------------------------- output
    def queue(
        self, payload: bytes, sid: int | None, seq: int | None, kind: str, ticker: str | None
    ) -> None:
        """Queue one message for the next flush (and log it)."""
        self.out.append(wire.frame(payload))
        if self.hub.recording:
            self.hub.sent_messages.append(SentMessage(self.conn, sid, seq, kind, ticker, payload))

    def flush(self) -> None:
        """Write every queued frame in one transport write."""
        if not self.out or self.transport is None:
            self.out.clear()
            return
        data = b"".join(self.out)
        self.out.clear()
        if not self.transport.is_disconnected:
            self.transport.underlying_transport.write(data)

    def backlog(self) -> int:
        """Bytes written but not yet taken by the socket."""
        if self.transport is None:
            return 0
        return int(self.transport.underlying_transport.get_write_buffer_size())


# A hook that may take over a fresh orderbook subscription (blast mode): True = taken,
# the hub then neither indexes it nor sends snapshots.
BookTakeover = Callable[[Session, Sub], bool]


class Subscriptions:
    """Connected sessions and the subscription index (see the module docstring).

    Args:
        markets: the sim's markets.
        stats: the sim's counters (commands, errors, drops are counted here).
        record_limit: how many sent messages ``sent_messages`` keeps (0 = none).
    """

    def __init__(
        self, markets: SimMarkets, stats: collections.Counter[str], record_limit: int
    ) -> None:
        self.stats = stats
        self.sessions: dict[int, Session] = {}
        self.n_conn = 0
        self.sent_messages: collections.deque[SentMessage] = collections.deque(
            maxlen=max(record_limit, 1)
        )
        self.recording = record_limit > 0
        self.book_takeover: BookTakeover | None = None
        # (user, private channel) -> its live subscriptions over all sessions
        self.private: dict[tuple[str, str], list[Sub]] = {}
        self.use_markets(markets)

    def use_markets(self, markets: SimMarkets) -> None:
        """Serve ``markets`` (rebuilds the index; only before any client subscribed)."""
        self.markets = markets
        # per channel, per market: the live subscriptions that receive it
        self.index: dict[str, list[list[Sub]]] = {
            c: [[] for _ in markets.tickers] for c in CHANNELS
        }

    def new_session(self, user: str | None = None) -> Session:
        """A listener for one accepted WebSocket connection of ``user``."""
        self.n_conn += 1
        return Session(self, self.n_conn, user)

    def private_subs(self, user: str, channel: str) -> list[Sub]:
        """The live subscriptions of ``user`` to a private channel."""
        return self.private.get((user, channel), [])

    def has_listeners(self) -> bool:
        """True when some client holds a subscription."""
        return any(s.subs for s in self.sessions.values())

    def backlogged(self, limit: int = 1 << 20) -> bool:
        """True when some client has more than ``limit`` bytes not yet taken by its socket."""
        return any(s.backlog() > limit for s in self.sessions.values())

    def live_book_subs(self, sid: int | None = None) -> list[Sub]:
        """Every orderbook subscription of every connection (or those with ``sid``)."""
        return [
            sub
            for s in self.sessions.values()
            for sub in s.subs.values()
            if sub.channel == CH_ORDERBOOK and (sid is None or sub.sid == sid)
        ]

    # ----------------------------------------------------------------- commands
    def handle_command(self, s: Session, raw: bytes) -> None:
        """Answer one client command frame (replies are queued on ``s``)."""
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.error(s, None, KalshiErrorCode.UNABLE_TO_PROCESS, text="Invalid JSON")
            return
        if not isinstance(obj, dict):
            self.error(s, None, KalshiErrorCode.UNABLE_TO_PROCESS)
            return
        cmd_id = obj.get("id")
        if cmd_id is not None and not isinstance(cmd_id, int):
            cmd_id = None
        cmd = obj.get("cmd")
        params = obj.get("params")
        self.stats[f"cmd_{cmd}"] += 1
        if cmd == "list_subscriptions":
            lst = [{"channel": sub.channel, "sid": sub.sid} for sub in s.subs.values()]
            self.reply(s, {"id": cmd_id, "type": "ok", "msg": lst})
            return
        if cmd not in _COMMANDS:
            self.error(s, cmd_id, KalshiErrorCode.UNKNOWN_COMMAND)
            return
        if not isinstance(params, dict):
            self.error(s, cmd_id, KalshiErrorCode.PARAMS_REQUIRED)
            return
        if cmd == "subscribe":
            self._subscribe(s, cmd_id, params)
        elif cmd == "unsubscribe":
            self._unsubscribe(s, cmd_id, params)
        else:
            self._update(s, cmd_id, params)

    def error(
        self,
        s: Session,
        cmd_id: int | None,
        code: int,
        sid: int | None = None,
        text: str | None = None,
    ) -> None:
        """Queue an ``error`` reply (``sid`` set for an error on a live subscription)."""
        self.stats[f"error_{int(code)}"] += 1
        s.queue(wire.error(cmd_id, int(code), sid, text), sid, None, "error", None)

    def reply(self, s: Session, obj: dict[str, Any]) -> None:
        """Queue a command response."""
        if obj.get("id") is None:
            obj.pop("id", None)  # a command sent without an id gets a reply without one
        s.queue(wire.response(obj), obj.get("sid"), None, str(obj["type"]), None)

    def _tickers_param(self, params: dict[str, Any]) -> list[int] | int | None:
        """Market slots named by market_ticker/market_tickers; None if absent, else an
        error code (int) when malformed/unknown."""
        names: list[Any] = []
        if "market_ticker" in params:
            names.append(params["market_ticker"])
        if "market_tickers" in params:
            lst = params["market_tickers"]
            if not isinstance(lst, list):
                return KalshiErrorCode.INVALID_PARAM
            names.extend(lst)
        if "market_ticker" not in params and "market_tickers" not in params:
            return None
        if not names or not all(isinstance(t, str) for t in names):
            return KalshiErrorCode.INVALID_PARAM if names else KalshiErrorCode.TICKER_REQUIRED
        slot = self.markets.slot
        slots = []
        for t in names:
            if t not in slot:
                return KalshiErrorCode.MARKET_NOT_FOUND
            slots.append(slot[t])
        return list(dict.fromkeys(slots))

    def _subscribe(self, s: Session, cmd_id: int | None, params: dict[str, Any]) -> None:
        channels = params.get("channels")
        if not channels:
            self.error(s, cmd_id, KalshiErrorCode.CHANNELS_REQUIRED)
            return
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            self.error(s, cmd_id, KalshiErrorCode.INVALID_PARAM)
            return
        unknown = [c for c in channels if c not in ALL_CHANNELS]
        if unknown:
            self.error(
                s, cmd_id, KalshiErrorCode.UNKNOWN_CHANNEL, text=f"Unknown channel {unknown[0]}"
            )
            return
        if s.user is None and any(c in ACCOUNT_CHANNELS for c in channels):
            self.error(s, cmd_id, KalshiErrorCode.AUTH_REQUIRED)
            return
        slots = self._tickers_param(params)
        if isinstance(slots, int):
            self.error(s, cmd_id, slots)
            return
        if slots is None and CH_ORDERBOOK in channels:
            self.error(s, cmd_id, KalshiErrorCode.TICKER_REQUIRED)
            return
        uyp = params.get("use_yes_price", False)
        snap = params.get("send_initial_snapshot", False)
        if not isinstance(uyp, bool) or not isinstance(snap, bool):
            self.error(s, cmd_id, KalshiErrorCode.INVALID_PARAM)
            return
        for ch in channels:
            existing = next((x for x in s.subs.values() if x.channel == ch), None)
            if existing is not None:
                # idempotent since 2025-10: a re-subscribe adds the tickers to the sub
                new = self._add_markets(existing, slots)
                self._subscribed(s, cmd_id, existing)
                self._after_add(existing, new, snap)
                continue
            sub = Sub(s, s.next_sid, ch, None if slots is None else set(slots), uyp)
            s.next_sid += 1
            s.subs[sub.sid] = sub
            self._subscribed(s, cmd_id, sub)
            if ch == CH_ORDERBOOK and self.book_takeover is not None and self.book_takeover(s, sub):
                continue
            added = list(range(len(self.markets))) if slots is None else slots
            self.index_add(sub, added)
            self._after_add(sub, added, snap)

    def _subscribed(self, s: Session, cmd_id: int | None, sub: Sub) -> None:
        self.reply(
            s, {"id": cmd_id, "type": "subscribed", "msg": {"channel": sub.channel, "sid": sub.sid}}
        )

    def _after_add(self, sub: Sub, added: Iterable[int], snap: bool) -> None:
        if sub.channel == CH_ORDERBOOK:
            for m in added:
                self.send_snapshot(sub, m)
        elif sub.channel == CH_TICKER and snap:
            for m in added:
                self.send_ticker(sub, m, self.markets.model.now_ms)

    def _add_markets(self, sub: Sub, slots: list[int] | None) -> list[int]:
        if sub.markets is None:
            return []
        wanted = list(range(len(self.markets))) if slots is None else slots
        new = [m for m in wanted if m not in sub.markets]
        if slots is None:
            sub.markets = None
        else:
            sub.markets.update(new)
        self.index_add(sub, new)
        return new

    def index_add(self, sub: Sub, slots: Iterable[int]) -> None:
        """Make ``sub`` receive its channel's messages of ``slots``."""
        if sub.channel in ACCOUNT_CHANNELS:
            # private subs are filtered by sub.markets when a message is sent
            assert sub.session.user is not None
            lst = self.private.setdefault((sub.session.user, sub.channel), [])
            if sub not in lst:
                lst.append(sub)
            return
        idx = self.index[sub.channel]
        for m in slots:
            if sub not in idx[m]:
                idx[m].append(sub)

    def index_remove(self, sub: Sub, slots: Iterable[int] | None = None) -> None:
        """Stop ``sub`` receiving messages of ``slots`` (None = every market)."""
        if sub.channel in ACCOUNT_CHANNELS:
            lst = self.private.get((sub.session.user or "", sub.channel), [])
            if slots is None and sub in lst:
                lst.remove(sub)
            return
        idx = self.index[sub.channel]
        for m in range(len(idx)) if slots is None else slots:
            if sub in idx[m]:
                idx[m].remove(sub)

    def _unsubscribe(self, s: Session, cmd_id: int | None, params: dict[str, Any]) -> None:
        sids = params.get("sids")
        if not sids:
            self.error(s, cmd_id, KalshiErrorCode.SIDS_REQUIRED)
            return
        if not isinstance(sids, list) or not all(isinstance(x, int) for x in sids):
            self.error(s, cmd_id, KalshiErrorCode.INVALID_PARAM)
            return
        for sid in sids:
            sub = s.subs.pop(sid, None)
            if sub is None:
                self.error(s, cmd_id, KalshiErrorCode.UNKNOWN_SID, sid=sid)
                continue
            self.index_remove(sub)
            self.reply(s, {"id": cmd_id, "sid": sid, "seq": sub.seq, "type": "unsubscribed"})

    def _update(self, s: Session, cmd_id: int | None, params: dict[str, Any]) -> None:
        action = params.get("action")
        if not action:
            self.error(s, cmd_id, KalshiErrorCode.ACTION_REQUIRED)
            return
        if action not in UPDATE_ACTIONS:
            self.error(s, cmd_id, KalshiErrorCode.UNSUPPORTED_ACTION)
            return
        sid = _one_sid(params)
        if sid is None:
            self.error(s, cmd_id, KalshiErrorCode.EXACTLY_ONE_SID)
            return
        sub = s.subs.get(sid) if isinstance(sid, int) else None
        if sub is None:
            self.error(
                s, cmd_id, KalshiErrorCode.UNKNOWN_SID, sid=sid if isinstance(sid, int) else None
            )
            return
        slots = self._tickers_param(params)
        if slots is None:
            self.error(s, cmd_id, KalshiErrorCode.TICKER_REQUIRED)
            return
        if isinstance(slots, int):
            self.error(s, cmd_id, slots)
            return
        if action == "add_markets":
            new = self._add_markets(sub, slots)
            self._ok(s, cmd_id, sub)
            self._after_add(sub, new, False)
        elif action == "delete_markets":
            if sub.markets is None:
                self.error(
                    s, cmd_id, KalshiErrorCode.INVALID_PARAM, text="subscription covers all markets"
                )
                return
            sub.markets.difference_update(slots)
            self.index_remove(sub, slots)
            self._ok(s, cmd_id, sub)
        else:
            self._get_snapshot(s, cmd_id, sub, slots)

    def _get_snapshot(self, s: Session, cmd_id: int | None, sub: Sub, slots: list[int]) -> None:
        if sub.channel != CH_ORDERBOOK:
            self.error(s, cmd_id, KalshiErrorCode.UNSUPPORTED_ACTION)
            return
        if sub.markets is not None and any(m not in sub.markets for m in slots):
            self.error(s, cmd_id, KalshiErrorCode.INVALID_PARAM, text="market not in subscription")
            return
        self._ok(s, cmd_id, sub)
        for m in slots:
            self.send_snapshot(sub, m)

    def _ok(self, s: Session, cmd_id: int | None, sub: Sub) -> None:
        tickers = self.markets.tickers
        markets = range(len(tickers)) if sub.markets is None else sorted(sub.markets)
        self.reply(
            s,
            {
                "id": cmd_id,
                "sid": sub.sid,
                "seq": sub.seq,
                "type": "ok",
                "msg": {"market_tickers": [tickers[m] for m in markets]},
            },
        )

    # ----------------------------------------------------------------- protocol messages
    def send_snapshot(self, sub: Sub, m: int) -> None:
        """Queue an orderbook_snapshot of market ``m`` on ``sub`` (takes the next seq)."""
        mk = self.markets
        b = mk.books
        body = wire.snapshot_body(
            mk.tickers[m],
            mk.market_ids[m],
            b.levels(m, SIDE_YES),
            b.levels(m, SIDE_NO),
            sub.use_yes_price,
        )
        sub.seq += 1
        sub.session.queue(
            wire.book_message("orderbook_snapshot", sub.sid, sub.seq, body),
            sub.sid,
            sub.seq,
            "orderbook_snapshot",
            mk.tickers[m],
        )

    def send_ticker(self, sub: Sub, m: int, ts: int) -> None:
        """Queue a ticker message of market ``m`` on ``sub``."""
        mk = self.markets
        b = mk.books
        yb, ya, nb, _ = b.best(m)
        body = wire.ticker_body(
            mk.tickers[m],
            mk.market_ids[m],
            int(mk.model.mk[m]["last_price"]),
            yb,
            ya,
            int(b.qty[m, SIDE_YES, yb]) if yb >= 0 else 0,
            int(b.qty[m, SIDE_NO, nb]) if nb >= 0 else 0,
            int(mk.model.mk[m]["volume"]),
            ts,
        )
        sub.session.queue(
            wire.unsequenced_message(CH_TICKER, sub.sid, body),
            sub.sid,
            None,
            CH_TICKER,
            mk.tickers[m],
        )

    def record(self, msg: SentMessage) -> None:
        """Log a message that was not queued (a dropped one)."""
        if self.recording:
            self.sent_messages.append(msg)

    def drop(self, sub: Sub, kind: str, ticker: str | None) -> None:
        """Count and log one message of ``sub`` that is deliberately not sent."""
        self.stats["dropped"] += 1
        self.record(SentMessage(sub.session.conn, sub.sid, sub.seq, kind, ticker, b"", True))

    def kill(self, sub: Sub, code: int) -> None:
        """End ``sub`` with an error ``code`` on its sid, as Kalshi does."""
        self.index_remove(sub)
        sub.session.subs.pop(sub.sid, None)
        self.error(sub.session, None, code, sid=sub.sid)

    def overflow(self, s: Session) -> None:
        """Kalshi's slow-reader rule: error 25 on every sid, the subscriptions are gone."""
        self.stats["overflows"] += 1
        for sub in list(s.subs.values()):
            self.kill(sub, KalshiErrorCode.BUFFER_OVERFLOW)
        s.flush()

    def drop_session(self, s: Session) -> None:
        """Forget a disconnected session and its subscriptions."""
        for sub in s.subs.values():
            self.index_remove(sub)
        s.subs.clear()
        self.sessions.pop(s.conn, None)


def _one_sid(params: dict[str, Any]) -> Any:
    """The sid of ``sid`` xor ``sids: [x]``; None unless exactly one is given."""
    sid = params.get("sid")
    sids = params.get("sids")
    if sid is not None and sids is not None:
        return None
    if sids is not None:
        return sids[0] if isinstance(sids, list) and len(sids) == 1 else None
    return sid
