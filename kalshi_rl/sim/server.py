"""The local exchange: Kalshi WS v2 + REST on one picows port, fed by the model or a replay.

``async with SimExchange(SimConfig(...)) as sim:`` starts it on 127.0.0.1 (port 0 = a free
port) and exposes ``sim.ws_url``, ``sim.rest_url``, the sim's own books (``sim.book``),
fault knobs and the ``sent_messages`` log.  One picows server answers:

* ``GET /trade-api/ws/v2`` -> WebSocket (auth headers checked when a public key is set)
* ``GET /trade-api/v2/...`` -> REST (see kalshi_rl.sim.rest)
* ``GET /sim/control/<fault>`` -> fault triggers for other processes (see docs/sim.md)

Outgoing frames are built here (unmasked server frames) and written in one
``transport.write`` per client per batch; picows handles reads, pings and closes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import logging
import time
from collections.abc import Iterable
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import numpy as np
import orjson
from picows import (
    WSAutoPingStrategy,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from core.dtypes import (
    EV_DELTA,
    EV_LIFECYCLE,
    EV_SNAPSHOT,
    EV_TRADE,
    LC_DETERMINED,
    LC_SETTLED,
    PRICE_MAX,
    RESULT_YES,
    SIDE_NO,
    SIDE_YES,
)
from kalshi_rl.errors import ConfigError
from kalshi_rl.kalshi import auth
from kalshi_rl.sim import rest, wire
from kalshi_rl.sim.config import CONTROL_PREFIX, REST_PREFIX, WS_PATH, SimConfig
from kalshi_rl.sim.grid import DOLLARS
from kalshi_rl.sim.model import MarketModel, MarketSpec, default_markets

log = logging.getLogger(__name__)

CHANNEL_BOOK = "orderbook_delta"
CHANNEL_TRADE = "trade"
CHANNEL_TICKER = "ticker"
CHANNEL_LIFECYCLE = "market_lifecycle_v2"
CHANNELS = (CHANNEL_BOOK, CHANNEL_TRADE, CHANNEL_TICKER, CHANNEL_LIFECYCLE)

GARBAGE_KINDS = ("non_json", "unknown_type", "off_grid", "missing_fields")


class SentMessage(NamedTuple):
    """One message the sim wrote to a client (or dropped, for an injected gap)."""

    conn: int  # connection number (1, 2, ... in accept order)
    sid: int | None
    seq: int | None  # None for messages that carry no seq
    type: str
    ticker: str | None
    payload: bytes  # the JSON text (b"" for a dropped message)
    dropped: bool = False


class BlastResult(NamedTuple):
    """What a blast achieved: frames and bytes written, wall time, rates."""

    frames: int
    bytes: int
    seconds: float
    frames_per_s: float
    mbytes_per_s: float


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
    """One client connection: command handling and its outgoing frame buffer."""

    def __init__(self, exchange: SimExchange, conn: int) -> None:
        super().__init__()
        self.x = exchange
        self.conn = conn
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
        self.x._sessions[self.conn] = self

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.resumed.set()  # release a blast waiting for the socket to drain
        self.x._drop_session(self)

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
            self.x._handle_command(self, frame.get_payload_as_bytes())
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
        if self.x.recording:
            self.x.sent_messages.append(SentMessage(self.conn, sid, seq, kind, ticker, payload))

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


class SimExchange:
    """A local Kalshi exchange (see the module docstring).

    Args:
        config: the SimConfig.
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.config.check()
        self._public_key = (
            auth.load_public_key(self.config.public_key_pem)
            if self.config.public_key_pem is not None
            else None
        )
        self._sessions: dict[int, Session] = {}
        self._n_conn = 0
        self._server: asyncio.AbstractServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._fault_task: asyncio.Task[None] | None = None
        self._blasts: set[asyncio.Task[None]] = set()
        self._stall_until = 0.0
        self._n_trades = 0
        self.sent_messages: collections.deque[SentMessage] = collections.deque(
            maxlen=max(self.config.record_limit, 1)
        )
        self.recording = self.config.record_limit > 0
        self.stats: collections.Counter[str] = collections.Counter()
        self.blast_results: list[BlastResult] = []
        self._blast_frames: list[bytes] = []
        self._replay: Any = None
        self._build_model()

    def _build_model(self) -> None:
        cfg = self.config
        markets = (
            list(cfg.markets) if cfg.markets else default_markets(cfg.n_markets, cfg.structures)
        )
        self.use_markets(markets, quote=cfg.replay_session is None)

    def use_markets(self, markets: list[MarketSpec], quote: bool = True) -> None:
        """(Re)build the model, books and indexes for ``markets`` (before any client).

        Args:
            markets: the market specs; slot i = markets[i].
            quote: start with the model's maker ladders (False: empty books, for replay).
        """
        if self._sessions:
            raise ConfigError("markets can only change before clients connect")
        cfg = self.config
        ts0 = cfg.start_ts_ms if cfg.start_ts_ms is not None else int(time.time() * 1000)
        rate = cfg.total_rate(len(markets))
        self.model = MarketModel(
            markets, cfg.model, seed=cfg.seed, ts0=ts0, ms_per_step=1.0, initial_quotes=quote
        )
        self.msgs_per_step = self.model.msgs_per_step() if quote else 1.0
        # the sim clock follows the wall clock at the configured rate (1 ms/step if unlimited)
        self.model.ms_per_step = 1000.0 * self.msgs_per_step / rate if rate > 0 else 1.0
        self.tickers = [m.ticker for m in markets]
        self.market_ids = [wire.market_id(t) for t in self.tickers]
        self.slot = {t: i for i, t in enumerate(self.tickers)}
        self.open_ts_ms = ts0
        # per channel, per market: the live subscriptions that receive it
        self._index: dict[str, list[list[Sub]]] = {c: [[] for _ in self.tickers] for c in CHANNELS}

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Listen and (unless autostart is off) start generating."""
        cfg = self.config
        if cfg.replay_session is not None:
            from kalshi_rl.sim.replay import ReplaySource

            self._replay = await ReplaySource.load(self, cfg.replay_dsn or "", cfg.replay_session)
        if cfg.blast_frames > 0:
            self._prepare_blast(cfg.blast_frames)
        self._server = await ws_create_server(
            self._route,
            cfg.host,
            cfg.port,
            enable_auto_ping=True,
            auto_ping_idle_timeout=cfg.ping_interval_s,
            # picows (periodic mode) requires reply timeout <= interval
            auto_ping_reply_timeout=min(cfg.pong_timeout_s, cfg.ping_interval_s),
            auto_ping_strategy=WSAutoPingStrategy.PING_PERIODICALLY,
            websocket_handshake_timeout=5,
        )
        # in blast mode the model is frozen after pre-generation: the sim's book must stay
        # the state a client reaches after the blast
        if cfg.autostart and cfg.blast_frames == 0:
            self._task = asyncio.create_task(self._run(), name="sim-generator")
        if cfg.faults and cfg.fault_every_s > 0:
            self._fault_task = asyncio.create_task(self._fault_schedule(), name="sim-faults")

    async def stop(self) -> None:
        """Stop generating, disconnect clients and close the port."""
        for task in (self._task, self._fault_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._fault_task = None
        for task in list(self._blasts):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.disconnect_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SimExchange:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Start and run until cancelled."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._server is None:
            raise ConfigError("the sim is not started")
        sockets = getattr(self._server, "sockets", None) or []
        return int(sockets[0].getsockname()[1])

    @property
    def ws_url(self) -> str:
        """``ws://host:port/trade-api/ws/v2``."""
        return f"ws://{self.config.host}:{self.port}{WS_PATH}"

    @property
    def rest_url(self) -> str:
        """``http://host:port/trade-api/v2`` (REST base)."""
        return f"http://{self.config.host}:{self.port}{REST_PREFIX}"

    @property
    def control_url(self) -> str:
        """``http://host:port/sim/control`` (fault triggers)."""
        return f"http://{self.config.host}:{self.port}{CONTROL_PREFIX}"

    # ----------------------------------------------------------------- routing / auth
    def check_auth(self, headers: Any, method: str, path: str) -> str | None:
        """None when the request is authorised, else the reason."""
        if self._public_key is None:
            return None
        key = headers.get(auth.HDR_KEY)
        ts = headers.get(auth.HDR_TIMESTAMP)
        sig = headers.get(auth.HDR_SIGNATURE)
        if not key or not ts or not sig:
            return "missing KALSHI-ACCESS-* headers"
        if not auth.verify(self._public_key, ts, method, path, sig):
            return "bad signature"
        return None

    def _control_authorised(self, headers: Any) -> bool:
        """True when no token is configured (loopback) or the bearer token matches."""
        token = self.config.control_token
        if not token:
            return True
        got = str(headers.get("Authorization") or "")
        return hmac.compare_digest(got.encode(), f"Bearer {token}".encode())

    def _route(self, request: WSUpgradeRequest) -> Any:
        target = request.path.decode("latin-1")
        parts = urlsplit(target)
        path = parts.path
        if path == WS_PATH:
            why = self.check_auth(request.headers, "GET", path)
            if why is not None:
                self.stats["auth_rejected"] += 1
                body = orjson.dumps({"error": {"code": "authentication_error", "message": why}})
                return WSUpgradeResponseWithListener(
                    WSUpgradeResponse.create_error_response(401, body), None
                )
            self._n_conn += 1
            return Session(self, self._n_conn)
        if path.startswith(REST_PREFIX):
            why = self.check_auth(request.headers, "GET", path)
            if why is not None:
                self.stats["auth_rejected"] += 1
                body = orjson.dumps({"error": {"code": "authentication_error", "message": why}})
                status, payload = 401, body
            else:
                status, payload = rest.handle(self, path[len(REST_PREFIX) :], parse_qs(parts.query))
        elif path.startswith(CONTROL_PREFIX + "/"):
            if not self._control_authorised(request.headers):
                status = 401
                payload = orjson.dumps({"error": "control endpoint needs 'Authorization: Bearer'"})
            else:
                name = path[len(CONTROL_PREFIX) + 1 :]
                status, payload = self._control(name, parse_qs(parts.query))
        else:
            return None  # picows answers 404
        headers = {"Content-Type": "application/json"}
        if status == 200:
            resp = WSUpgradeResponse.create_ok_response(payload, headers)
        else:
            resp = WSUpgradeResponse.create_error_response(status, payload, headers)
        return WSUpgradeResponseWithListener(resp, None)

    # ----------------------------------------------------------------- commands
    def _handle_command(self, s: Session, raw: bytes) -> None:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._err(s, None, wire.ERR_UNABLE, text="Invalid JSON")
            return
        if not isinstance(obj, dict):
            self._err(s, None, wire.ERR_UNABLE)
            return
        cmd_id = obj.get("id")
        if cmd_id is not None and not isinstance(cmd_id, int):
            cmd_id = None
        cmd = obj.get("cmd")
        params = obj.get("params")
        self.stats[f"cmd_{cmd}"] += 1
        if cmd == "list_subscriptions":
            lst = [{"channel": sub.channel, "sid": sub.sid} for sub in s.subs.values()]
            self._reply(s, {"id": cmd_id, "type": "ok", "msg": lst})
            return
        if cmd not in ("subscribe", "unsubscribe", "update_subscription"):
            self._err(s, cmd_id, wire.ERR_UNKNOWN_COMMAND)
            return
        if not isinstance(params, dict):
            self._err(s, cmd_id, wire.ERR_PARAMS_REQUIRED)
            return
        if cmd == "subscribe":
            self._subscribe(s, cmd_id, params)
        elif cmd == "unsubscribe":
            self._unsubscribe(s, cmd_id, params)
        else:
            self._update(s, cmd_id, params)

    def _err(
        self,
        s: Session,
        cmd_id: int | None,
        code: int,
        sid: int | None = None,
        text: str | None = None,
    ) -> None:
        self.stats[f"error_{code}"] += 1
        s.queue(wire.error(cmd_id, code, sid, text), sid, None, "error", None)

    def _reply(self, s: Session, obj: dict[str, Any]) -> None:
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
                return wire.ERR_INVALID_PARAM
            names.extend(lst)
        if "market_ticker" not in params and "market_tickers" not in params:
            return None
        if not names or not all(isinstance(t, str) for t in names):
            return wire.ERR_INVALID_PARAM if names else wire.ERR_TICKER_REQUIRED
        slots = []
        for t in names:
            if t not in self.slot:
                return wire.ERR_MARKET_NOT_FOUND
            slots.append(self.slot[t])
        return list(dict.fromkeys(slots))

    def _subscribe(self, s: Session, cmd_id: int | None, params: dict[str, Any]) -> None:
        channels = params.get("channels")
        if not channels:
            self._err(s, cmd_id, wire.ERR_CHANNELS_REQUIRED)
            return
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            self._err(s, cmd_id, wire.ERR_INVALID_PARAM)
            return
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:
            self._err(s, cmd_id, wire.ERR_UNKNOWN_CHANNEL, text=f"Unknown channel {unknown[0]}")
            return
        slots = self._tickers_param(params)
        if isinstance(slots, int):
            self._err(s, cmd_id, slots)
            return
        if slots is None and CHANNEL_BOOK in channels:
            self._err(s, cmd_id, wire.ERR_TICKER_REQUIRED)
            return
        uyp = params.get("use_yes_price", False)
        snap = params.get("send_initial_snapshot", False)
        if not isinstance(uyp, bool) or not isinstance(snap, bool):
            self._err(s, cmd_id, wire.ERR_INVALID_PARAM)
            return
        for ch in channels:
            existing = next((x for x in s.subs.values() if x.channel == ch), None)
            if existing is not None:
                # idempotent since 2025-10: a re-subscribe adds the tickers to the sub
                new = self._add_markets(existing, slots)
                self._reply(
                    s,
                    {
                        "id": cmd_id,
                        "type": "subscribed",
                        "msg": {"channel": ch, "sid": existing.sid},
                    },
                )
                self._after_add(existing, new, snap)
                continue
            sub = Sub(s, s.next_sid, ch, None if slots is None else set(slots), uyp)
            s.next_sid += 1
            s.subs[sub.sid] = sub
            self._reply(
                s, {"id": cmd_id, "type": "subscribed", "msg": {"channel": ch, "sid": sub.sid}}
            )
            if ch == CHANNEL_BOOK and self._blast_frames and not s.blasting:
                s.blasting = True
                task = asyncio.get_running_loop().create_task(self._blast(s, sub))
                self._blasts.add(task)  # keep a reference until it ends
                task.add_done_callback(self._blasts.discard)
                continue
            added = list(range(len(self.tickers))) if slots is None else slots
            self._index_add(sub, added)
            self._after_add(sub, added, snap)

    def _after_add(self, sub: Sub, added: Iterable[int], snap: bool) -> None:
        if sub.channel == CHANNEL_BOOK:
            for m in added:
                self._send_snapshot(sub, m)
        elif sub.channel == CHANNEL_TICKER and snap:
            for m in added:
                self._send_ticker(sub, m, self.model.now_ms)

    def _add_markets(self, sub: Sub, slots: list[int] | None) -> list[int]:
        if sub.markets is None:
            return []
        wanted = list(range(len(self.tickers))) if slots is None else slots
        new = [m for m in wanted if m not in sub.markets]
        if slots is None:
            sub.markets = None
        else:
            sub.markets.update(new)
        self._index_add(sub, new)
        return new

    def _index_add(self, sub: Sub, slots: Iterable[int]) -> None:
        idx = self._index[sub.channel]
        for m in slots:
            if sub not in idx[m]:
                idx[m].append(sub)

    def _index_remove(self, sub: Sub, slots: Iterable[int] | None = None) -> None:
        idx = self._index[sub.channel]
        for m in range(len(idx)) if slots is None else slots:
            if sub in idx[m]:
                idx[m].remove(sub)

    def _unsubscribe(self, s: Session, cmd_id: int | None, params: dict[str, Any]) -> None:
        sids = params.get("sids")
        if not sids:
            self._err(s, cmd_id, wire.ERR_SIDS_REQUIRED)
            return
        if not isinstance(sids, list) or not all(isinstance(x, int) for x in sids):
            self._err(s, cmd_id, wire.ERR_INVALID_PARAM)
            return
        for sid in sids:
            sub = s.subs.pop(sid, None)
            if sub is None:
                self._err(s, cmd_id, wire.ERR_UNKNOWN_SID, sid=sid)
                continue
            self._index_remove(sub)
            self._reply(s, {"id": cmd_id, "sid": sid, "seq": sub.seq, "type": "unsubscribed"})

    def _update(self, s: Session, cmd_id: int | None, params: dict[str, Any]) -> None:
        action = params.get("action")
        if not action:
            self._err(s, cmd_id, wire.ERR_ACTION_REQUIRED)
            return
        if action not in ("add_markets", "delete_markets", "get_snapshot"):
            self._err(s, cmd_id, wire.ERR_UNSUPPORTED_ACTION)
            return
        sid = _one_sid(params)
        if sid is None:
            self._err(s, cmd_id, wire.ERR_ONE_SID)
            return
        sub = s.subs.get(sid) if isinstance(sid, int) else None
        if sub is None:
            self._err(s, cmd_id, wire.ERR_UNKNOWN_SID, sid=sid if isinstance(sid, int) else None)
            return
        slots = self._tickers_param(params)
        if slots is None:
            self._err(s, cmd_id, wire.ERR_TICKER_REQUIRED)
            return
        if isinstance(slots, int):
            self._err(s, cmd_id, slots)
            return
        if action == "add_markets":
            new = self._add_markets(sub, slots)
            self._ok(s, cmd_id, sub)
            self._after_add(sub, new, False)
        elif action == "delete_markets":
            if sub.markets is None:
                self._err(s, cmd_id, wire.ERR_INVALID_PARAM, text="subscription covers all markets")
                return
            sub.markets.difference_update(slots)
            self._index_remove(sub, slots)
            self._ok(s, cmd_id, sub)
        else:
            if sub.channel != CHANNEL_BOOK:
                self._err(s, cmd_id, wire.ERR_UNSUPPORTED_ACTION)
                return
            if sub.markets is not None and any(m not in sub.markets for m in slots):
                self._err(s, cmd_id, wire.ERR_INVALID_PARAM, text="market not in subscription")
                return
            self._ok(s, cmd_id, sub)
            for m in slots:
                self._send_snapshot(sub, m)

    def _ok(self, s: Session, cmd_id: int | None, sub: Sub) -> None:
        markets = range(len(self.tickers)) if sub.markets is None else sorted(sub.markets)
        self._reply(
            s,
            {
                "id": cmd_id,
                "sid": sub.sid,
                "seq": sub.seq,
                "type": "ok",
                "msg": {"market_tickers": [self.tickers[m] for m in markets]},
            },
        )

    # ----------------------------------------------------------------- messages
    def _send_snapshot(self, sub: Sub, m: int) -> None:
        b = self.model.books
        body = wire.snapshot_body(
            self.tickers[m],
            self.market_ids[m],
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
            self.tickers[m],
        )

    def _send_ticker(self, sub: Sub, m: int, ts: int) -> None:
        b = self.model.books
        yb, ya, nb, _ = b.best(m)
        body = wire.ticker_body(
            self.tickers[m],
            self.market_ids[m],
            int(self.model.mk[m]["last_price"]),
            yb,
            ya,
            int(b.qty[m, SIDE_YES, yb]) if yb >= 0 else 0,
            int(b.qty[m, SIDE_NO, nb]) if nb >= 0 else 0,
            int(self.model.mk[m]["volume"]),
            ts,
        )
        sub.session.queue(
            wire.unsequenced_message("ticker", sub.sid, body),
            sub.sid,
            None,
            "ticker",
            self.tickers[m],
        )

    def _record(self, msg: SentMessage) -> None:
        if self.recording:
            self.sent_messages.append(msg)

    def dispatch(self, ev: np.ndarray) -> None:
        """Send a batch of events to every subscription that wants them."""
        if ev.shape[0] == 0:
            return
        ob = self._index[CHANNEL_BOOK]
        kinds = ev["kind"].tolist()
        mkts = ev["market"].tolist()
        sides = ev["side"].tolist()
        prices = ev["price"].tolist()
        qtys = ev["qty"].tolist()
        tss = ev["ts"].tolist()
        groups = ev["group"].tolist()
        gap_every = self.config.gap_every
        i = 0
        n = len(kinds)
        while i < n:
            k = kinds[i]
            m = mkts[i]
            if k == EV_DELTA:
                self.stats["deltas"] += 1
                subs = ob[m]
                if subs:
                    t = self.tickers[m]
                    side = sides[i]
                    body_by_scale: dict[bool, str] = {}
                    for sub in subs:
                        uyp = sub.use_yes_price and side == SIDE_NO
                        body = body_by_scale.get(uyp)
                        if body is None:
                            body = wire.delta_body(
                                t, self.market_ids[m], side, prices[i], qtys[i], tss[i], uyp
                            )
                            body_by_scale[uyp] = body
                        sub.seq += 1
                        if gap_every and sub.seq % gap_every == 0:
                            self._drop(sub, "orderbook_delta", t)
                            continue
                        sub.session.queue(
                            wire.book_message("orderbook_delta", sub.sid, sub.seq, body),
                            sub.sid,
                            sub.seq,
                            "orderbook_delta",
                            t,
                        )
            elif k == EV_TRADE:
                self._dispatch_trade(m, sides[i], prices[i], qtys[i], tss[i])
            elif k == EV_LIFECYCLE:
                self._dispatch_lifecycle(m, sides[i], prices[i], tss[i])
            elif k == EV_SNAPSHOT:
                j = i
                while j + 1 < n and kinds[j + 1] == EV_SNAPSHOT and groups[j + 1] == groups[i]:
                    j += 1
                for sub in ob[m]:
                    self._send_snapshot(sub, m)
                i = j
            i += 1
        for s in list(self._sessions.values()):
            s.flush()
            if s.backlog() > self.config.slow_reader_bytes:
                self._overflow(s)

    def _dispatch_trade(self, m: int, taker: int, yes_price: int, count: int, ts: int) -> None:
        self._n_trades += 1
        self.stats["trades"] += 1
        subs = self._index[CHANNEL_TRADE][m]
        if subs:
            body = wire.trade_body(
                self.tickers[m],
                wire.trade_id(self.config.seed, self._n_trades),
                yes_price,
                count,
                taker,
                ts,
            )
            for sub in subs:
                sub.session.queue(
                    wire.unsequenced_message("trade", sub.sid, body),
                    sub.sid,
                    None,
                    "trade",
                    self.tickers[m],
                )
        for sub in self._index[CHANNEL_TICKER][m]:
            self._send_ticker(sub, m, ts)

    def _dispatch_lifecycle(self, m: int, event: int, result: int, ts: int) -> None:
        self.stats[f"lifecycle_{event}"] += 1
        subs = self._index[CHANNEL_LIFECYCLE][m]
        if not subs:
            return
        t = self.tickers[m]
        if event == LC_DETERMINED:
            res = "yes" if result == RESULT_YES else "no"
            msg: dict[str, Any] = {
                "market_ticker": t,
                "event_type": "determined",
                "result": res,
                "determination_ts": ts // 1000,
                "settlement_value": DOLLARS[PRICE_MAX if result == RESULT_YES else 0],
            }
        elif event == LC_SETTLED:
            msg = {"market_ticker": t, "event_type": "settled", "settled_ts": ts // 1000}
        else:
            return  # close_time passing has no WS event of its own
        body = orjson.dumps(msg).decode()
        for sub in subs:
            sub.session.queue(
                wire.unsequenced_message("market_lifecycle_v2", sub.sid, body),
                sub.sid,
                None,
                "market_lifecycle_v2",
                t,
            )

    def _drop(self, sub: Sub, kind: str, ticker: str | None) -> None:
        self.stats["dropped"] += 1
        self._record(SentMessage(sub.session.conn, sub.sid, sub.seq, kind, ticker, b"", True))

    def _overflow(self, s: Session) -> None:
        """Kalshi's slow-reader rule: error 25 on every sid, the subscriptions are gone."""
        self.stats["overflows"] += 1
        for sid, sub in list(s.subs.items()):
            self._index_remove(sub)
            del s.subs[sid]
            self._err(s, None, wire.ERR_BUFFER_OVERFLOW, sid=sid)
        s.flush()

    def _drop_session(self, s: Session) -> None:
        for sub in s.subs.values():
            self._index_remove(sub)
        s.subs.clear()
        self._sessions.pop(s.conn, None)

    # ----------------------------------------------------------------- generation
    def advance(self, n_steps: int) -> int:
        """Generate ``n_steps`` model steps (or replay events) and send them now.

        Returns:
            Number of events generated.
        """
        if self._replay is not None:
            ev = self._replay.next_events(n_steps)
        else:
            ev = self.model.step(n_steps)
        self.dispatch(ev)
        return int(ev.shape[0])

    def has_listeners(self) -> bool:
        """True when some client holds a subscription."""
        return any(s.subs for s in self._sessions.values())

    def backlogged(self, limit: int = 1 << 20) -> bool:
        """True when some client has more than ``limit`` bytes not yet taken by its socket."""
        return any(s.backlog() > limit for s in self._sessions.values())

    async def _run(self) -> None:
        """Generate at the configured rate (or flat out while someone listens)."""
        if self._replay is not None:
            await self._replay.run()
            return
        cfg = self.config
        loop = asyncio.get_running_loop()
        rate = cfg.total_rate(len(self.tickers))
        t0 = loop.time()
        emitted = 0
        while True:
            now = loop.time()
            if now < self._stall_until:
                await asyncio.sleep(self._stall_until - now)
                # the stalled interval is skipped, not replayed as a burst
                t0 += loop.time() - now
                continue
            if self.model.all_settled():
                await asyncio.sleep(0.05)
                continue
            if rate > 0:
                deficit = (now - t0) * rate - emitted
                if deficit < 1:
                    await asyncio.sleep(max(0.001, min(0.02, (1 - deficit) / rate)))
                    continue
                if deficit > 10 * cfg.batch_steps * self.msgs_per_step:
                    # fell far behind (slow loop, debugger): skip ahead instead of bursting
                    emitted += int(deficit) - cfg.batch_steps
                    continue
                n = max(1, min(cfg.batch_steps, int(deficit / self.msgs_per_step)))
            else:
                if not self.has_listeners() or self.backlogged():
                    await asyncio.sleep(0.001)
                    continue
                n = cfg.batch_steps
            emitted += self.advance(n)
            await asyncio.sleep(0)

    # ----------------------------------------------------------------- Python API
    def book(self, ticker: str) -> dict[str, list[tuple[int, int]]]:
        """The sim's own book: ``{"yes": [(price, qty)...], "no": [...]}``, best first,
        each side on its own scale (ticks, count units)."""
        m = self._market(ticker)
        b = self.model.books
        return {"yes": b.levels(m, SIDE_YES), "no": b.levels(m, SIDE_NO)}

    def _market(self, ticker: str) -> int:
        m = self.slot.get(ticker)
        if m is None:
            raise ConfigError(f"unknown market {ticker!r}")
        return m

    def _live_book_subs(self, sid: int | None = None) -> list[Sub]:
        return [
            sub
            for s in self._sessions.values()
            for sub in s.subs.values()
            if sub.channel == CHANNEL_BOOK and (sid is None or sub.sid == sid)
        ]

    def inject_gap(self, sid: int | None = None) -> int:
        """Drop the next orderbook message of every orderbook sid (or one sid): the seq
        jumps by one.  Returns how many subscriptions were hit."""
        subs = self._live_book_subs(sid)
        for sub in subs:
            sub.seq += 1  # consumed, never sent: a gap of exactly one
            self._drop(sub, "orderbook_delta", None)
        return len(subs)

    def disconnect_all(self) -> int:
        """Drop every client connection (no close handshake). Returns how many."""
        n = 0
        for s in list(self._sessions.values()):
            if s.transport is not None and not s.transport.is_disconnected:
                s.transport.disconnect(graceful=False)
                n += 1
        self.stats["disconnects"] += n
        return n

    def send_garbage(self, kind: str = "non_json") -> int:
        """Send one bad message to every client with an orderbook sub.

        Kinds: ``non_json``; ``unknown_type``; ``off_grid`` (an orderbook_delta priced
        $0.0005, which no grid allows); ``missing_fields`` (an orderbook_delta without
        ``delta_fp``).  The two delta kinds take the sid's next seq (so they are not a
        gap) and are NOT applied to the sim's book.  Returns messages sent.
        """
        if kind not in GARBAGE_KINDS:
            raise ConfigError(f"unknown garbage kind {kind!r} (valid: {GARBAGE_KINDS})")
        n = 0
        for sub in self._live_book_subs():
            t = self.tickers[next(iter(sub.markets))] if sub.markets else self.tickers[0]
            if kind == "non_json":
                payload = b"\x00{not json"
            elif kind == "unknown_type":
                payload = orjson.dumps({"type": "mystery", "sid": sub.sid, "msg": {}})
            else:
                sub.seq += 1
                msg: dict[str, Any] = {
                    "market_ticker": t,
                    "price_dollars": "0.0005",
                    "delta_fp": "1.00",
                    "side": "yes",
                    "ts_ms": 0,
                }
                if kind == "missing_fields":
                    msg["price_dollars"] = "0.5000"
                    del msg["delta_fp"]
                payload = orjson.dumps(
                    {"type": "orderbook_delta", "sid": sub.sid, "seq": sub.seq, "msg": msg}
                )
            sub.session.queue(payload, sub.sid, sub.seq, "garbage_" + kind, t)
            sub.session.flush()
            n += 1
        self.stats["garbage"] += n
        return n

    def stall(self, ms: int) -> None:
        """Send nothing for ``ms`` milliseconds (the generator pauses; pings continue)."""
        self._stall_until = asyncio.get_running_loop().time() + ms / 1000.0
        self.stats["stalls"] += 1

    def sub_error(self, code: int = wire.ERR_INTERNAL, sid: int | None = None) -> int:
        """Kill live orderbook subscriptions with error ``code`` (10, 17 or 25) on their
        sid, as Kalshi does; a correct client resubscribes.  Returns subs killed."""
        if code not in (wire.ERR_CHANNEL_ERROR, wire.ERR_INTERNAL, wire.ERR_BUFFER_OVERFLOW):
            raise ConfigError(f"sub_error code must be 10, 17 or 25, got {code}")
        subs = self._live_book_subs(sid)
        for sub in subs:
            self._index_remove(sub)
            sub.session.subs.pop(sub.sid, None)
            self._err(sub.session, None, code, sid=sub.sid)
            sub.session.flush()
        return len(subs)

    def sub_seq(self, conn: int, sid: int) -> int:
        """Last seq used on a sid of a connection."""
        return self._sessions[conn].subs[sid].seq

    @property
    def connections(self) -> list[int]:
        """Connection numbers of the connected clients."""
        return sorted(self._sessions)

    def trigger(self, spec: str) -> int:
        """Run one fault given as text: ``gap``, ``disconnect``, ``garbage[:kind]``,
        ``stall[:ms]``, ``error[:code]`` (the schedule and CLI use this form).

        Returns:
            What the fault hit (subscriptions, connections or messages).
        """
        name, _, arg = spec.partition(":")
        try:
            if name == "gap":
                return self.inject_gap(int(arg) if arg else None)
            if name == "disconnect":
                return self.disconnect_all()
            if name == "garbage":
                return self.send_garbage(arg or "non_json")
            if name == "stall":
                self.stall(int(arg) if arg else 1000)
                return 1
            if name == "error":
                return self.sub_error(int(arg) if arg else wire.ERR_INTERNAL)
        except ValueError as exc:
            raise ConfigError(f"bad fault argument in {spec!r}: {exc}") from exc
        raise ConfigError(
            f"unknown fault {spec!r} (gap, disconnect, garbage:KIND, stall:MS, error:CODE)"
        )

    def _control(self, name: str, q: dict[str, list[str]]) -> tuple[int, bytes]:
        """HTTP control endpoint: /sim/control/{gap,disconnect,garbage,stall,error,status}."""

        def arg(key: str) -> int | None:
            v = q.get(key)
            return int(v[0]) if v else None

        try:
            if name == "status":
                res: Any = {
                    "connections": len(self._sessions),
                    "stats": dict(self.stats),
                    "blast": [r._asdict() for r in self.blast_results],
                }
            elif name == "gap":
                res = self.inject_gap(arg("sid"))
            elif name == "error":
                res = self.sub_error(arg("code") or wire.ERR_INTERNAL, arg("sid"))
            elif name in ("disconnect", "garbage", "stall"):
                extra = {"garbage": q.get("kind", [""])[0], "stall": q.get("ms", [""])[0]}
                val = extra.get(name, "")
                res = self.trigger(f"{name}:{val}" if val else name)
            else:
                return 404, orjson.dumps({"error": f"unknown control {name!r}"})
        except (ConfigError, ValueError) as exc:
            return 400, orjson.dumps({"error": str(exc)})
        return 200, orjson.dumps({"ok": True, "result": res})

    async def _fault_schedule(self) -> None:
        """Fire ``config.faults`` in turn, one every ``config.fault_every_s`` seconds."""
        faults = self.config.faults
        i = 0
        while True:
            await asyncio.sleep(self.config.fault_every_s)
            if not self.has_listeners() and faults[i % len(faults)] != "disconnect":
                continue
            spec = faults[i % len(faults)]
            i += 1
            log.info("scheduled fault %s hit %d", spec, self.trigger(spec))

    # ----------------------------------------------------------------- blast mode
    def _prepare_blast(self, n_frames: int) -> None:
        """Pre-encode snapshots (sid 1, seq 1..M) and at least ``n_frames`` delta frames
        (whole model batches, so the sim's book ends where the client's will)."""
        b = self.model.books
        frames = []
        seq = 0
        for m, t in enumerate(self.tickers):
            seq += 1
            body = wire.snapshot_body(
                t, self.market_ids[m], b.levels(m, SIDE_YES), b.levels(m, SIDE_NO), False
            )
            frames.append(wire.frame(wire.book_message("orderbook_snapshot", 1, seq, body)))
        n = 0
        while n < n_frames:
            ev = self.model.step(self.config.batch_steps)
            # keep the whole batch: its deltas are already in the sim's book
            ev = ev[ev["kind"] == EV_DELTA]
            for t_i, side, price, qty, ts in zip(
                ev["market"].tolist(),
                ev["side"].tolist(),
                ev["price"].tolist(),
                ev["qty"].tolist(),
                ev["ts"].tolist(),
                strict=True,
            ):
                seq += 1
                body = wire.delta_body(
                    self.tickers[t_i], self.market_ids[t_i], side, price, qty, ts, False
                )
                frames.append(wire.frame(wire.book_message("orderbook_delta", 1, seq, body)))
            n += ev.shape[0]
        self._blast_frames = frames
        self.stats["blast_prepared"] = len(frames)

    async def _blast(self, s: Session, sub: Sub) -> None:
        """Write the pre-encoded frames as fast as the socket takes them."""
        if sub.sid != 1 or sub.markets is None or len(sub.markets) != len(self.tickers):
            self._err(
                s,
                None,
                wire.ERR_INVALID_PARAM,
                sid=sub.sid,
                text="blast mode needs sid 1 subscribed to every market",
            )
            s.flush()
            return
        s.flush()
        tr = s.transport
        if tr is None:
            return
        raw = tr.underlying_transport
        frames = self._blast_frames
        chunk = 4096
        nbytes = 0
        t0 = time.perf_counter()
        for i in range(0, len(frames), chunk):
            if tr.is_disconnected:
                return
            data = b"".join(frames[i : i + chunk])
            nbytes += len(data)
            raw.write(data)
            if s.paused:
                await s.resumed.wait()
        while raw.get_write_buffer_size() > 0 and not tr.is_disconnected:
            await asyncio.sleep(0.0005)
        dt = time.perf_counter() - t0
        sub.seq = len(frames)
        self.blast_results.append(
            BlastResult(len(frames), nbytes, dt, len(frames) / dt, nbytes / dt / 1e6)
        )
        log.info(
            "blast: %d frames, %.1f MB in %.3f s = %.0f frames/s",
            len(frames),
            nbytes / 1e6,
            dt,
            len(frames) / dt,
        )


def _one_sid(params: dict[str, Any]) -> Any:
    """The sid of ``sid`` xor ``sids: [x]``; None unless exactly one is given."""
    sid = params.get("sid")
    sids = params.get("sids")
    if sid is not None and sids is not None:
        return None
    if sids is not None:
        return sids[0] if isinstance(sids, list) and len(sids) == 1 else None
    return sid
