"""The Kalshi WebSocket feed: picows frames -> core.book -> rings.

One ``Feed`` owns one socket, the subscriptions on it and the sequence checks; it updates a
``core.book.BookSet`` (passed in, shared read-only with the actor and the dashboard) and
pushes every record to ``FeedRings`` for the writer (kalshi_rl.store.writer).

Hot path (the frame callback, never awaits): decode -> seq check -> append the delta to a
staging buffer -> ONE ``book_apply_deltas`` call for all deltas staged in this event-loop
iteration (scheduled with ``loop.call_soon``; earlier when the stage fills) -> the same
records, each with its apply status, pushed to the delta ring in one batch.  Anything that
must be ordered against deltas (snapshot, gap, invalidation) flushes the stage first, so
the book and the database see one order: the ``rec_id`` order.

``rec_id`` comes from one per-session counter shared by snapshots, deltas, trades and gap
rows, in arrival order; it is the primary key in PostgreSQL and the replay order.

Resync policy (kalshi-protocol.md §1, §6):
* a seq jump on a sid invalidates every book on it (GAP_REASON_SEQ row per market) and asks
  ``update_subscription get_snapshot`` for those tickers; if the server refuses, the
  tickers are resubscribed on a fresh sid;
* an undecodable book message (off-grid price...) or a desync (negative level, crossed
  book) invalidates that market (GAP_REASON_DESYNC) and asks for its snapshot;
* error 10/17/25 on a live sid kills the sid: GAP_REASON_SUB_ERROR rows, resubscribe;
* a lost socket invalidates every book (GAP_REASON_DISCONNECT), then we reconnect with
  jittered exponential backoff, re-sign the handshake and resubscribe everything;
* a clean ``stop()`` is not a loss: it writes one GAP_REASON_END row per market (the
  recording ended here) so that history can tell the end of a recording from a hole.

Backoff: the delay starts at ``backoff_initial_s`` and doubles per attempt; a connection
that subscribed and received data resets it (a feed that is dropped every few thousand
messages must not end up waiting most of the time); the jittered delay is capped at
``backoff_max_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import numpy as np
from orjson import JSONDecodeError
from orjson import loads as _loads
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from core.book import BookSet
from core.dtypes import (
    DELTA_DTYPE,
    GAP_DTYPE,
    GAP_REASON_DESYNC,
    GAP_REASON_DISCONNECT,
    GAP_REASON_END,
    GAP_REASON_SEQ,
    GAP_REASON_SUB_ERROR,
    GAP_REASON_UNSUBSCRIBED,
    NO_SEQ,
    SNAPSHOT_LEVEL_DTYPE,
    ST_CROSSED,
    ST_NEGATIVE,
    ST_OK,
    TRADE_DTYPE,
)
from core.ring import Ring
from kalshi_rl.config import FeedConfig
from kalshi_rl.kalshi import protocol as p
from kalshi_rl.kalshi.auth import Credentials

log = logging.getLogger(__name__)

_fast_delta = p.fast_delta

# staged per delta, flat; rec_id is implied: staged deltas hold consecutive rec_ids
# because every other record kind flushes the stage before taking its own
_STAGE_FIELDS = ("exch_ts", "recv_ts", "seq", "delta", "market", "sid", "price", "side")
_N_STAGE_COLS = len(_STAGE_FIELDS)

# frame-to-book latency histogram: upper bucket edges in ns (1 us .. 10 s, then overflow)
LATENCY_EDGES_NS = np.array(
    [m * 10**e for e in range(3, 10) for m in (1, 2, 5)] + [10**10], dtype=np.int64
)


class FeedRings(NamedTuple):
    """The record rings the feed produces and the writer(s) drain.

    ``deltas`` may be split into several shards (``delta_shards``, shard = market slot
    modulo the shard count; ``deltas`` is shard 0) so that several writers COPY deltas in
    parallel: PostgreSQL's ingest of one COPY stream is the end-to-end bottleneck.  Order
    across shards needs no care: rec_id is the replay order.
    """

    deltas: Ring
    snapshots: Ring
    trades: Ring
    gaps: Ring
    delta_shards: tuple[Ring, ...]

    @classmethod
    def create(cls, capacity: int = 1 << 20, delta_shards: int = 1) -> FeedRings:
        """Rings of ``capacity`` records each (power of two); trades and gaps get less.

        Snapshot rows come in bursts (subscribe, resync) but are rare in steady state; a burst
        larger than the ring goes to the ring's overflow list (counted, never dropped), so
        the snapshot ring does not need to be larger than the delta ring (56 MB at 1<<20).

        Args:
            capacity: records per delta ring (each shard).
            delta_shards: number of delta rings (>= 1).
        """
        if delta_shards < 1:
            raise ValueError(f"delta_shards must be >= 1, got {delta_shards}")
        shards = tuple(Ring(DELTA_DTYPE, capacity) for _ in range(delta_shards))
        return cls(
            shards[0],
            Ring(SNAPSHOT_LEVEL_DTYPE, capacity),
            Ring(TRADE_DTYPE, max(capacity // 4, 1024)),
            Ring(GAP_DTYPE, max(capacity // 16, 1024)),
            shards,
        )

    def by_table(self) -> dict[str, Ring]:
        """PostgreSQL table -> ring for the main writer (delta shard 0 and the rest)."""
        return {
            "orderbook_deltas": self.deltas,
            "orderbook_snapshots": self.snapshots,
            "trades": self.trades,
            "feed_gaps": self.gaps,
        }

    def push_deltas(self, recs: np.ndarray) -> None:
        """Push applied delta records to their shard rings (order kept within a shard)."""
        k = len(self.delta_shards)
        if k == 1:
            self.deltas.push_batch(recs)
            return
        shard = recs["market"] % k
        for i, ring in enumerate(self.delta_shards):
            part = recs[shard == i]
            if part.shape[0]:
                ring.push_batch(part)


@dataclass
class FeedStats:
    """Counters of one feed (cumulative over reconnects)."""

    msgs: int = 0  # frames received (text), including rejected ones
    deltas: int = 0
    snapshots: int = 0
    trades: int = 0
    tickers: int = 0
    lifecycle: int = 0
    acks: int = 0
    server_errors: int = 0
    gaps: int = 0  # gap events (one per seq jump / disconnect / desync / sub error)
    gap_rows: int = 0  # GAP rows written for holes (one per affected market)
    end_rows: int = 0  # end-of-recording rows written at a clean stop (one per market)
    desyncs: int = 0  # deltas/snapshots that left a book negative or crossed
    resyncs: int = 0  # get_snapshot requests sent
    resubscribes: int = 0
    reconnects: int = 0  # connections established after the first one
    connect_attempts: int = 0
    connect_failures: int = 0  # attempts that never got a socket up
    connected: bool = False
    connected_s: float = 0.0  # time with the socket up (closed connections)
    backoff_s: float = 0.0  # time spent waiting to reconnect
    backoff_planned_s: float = 0.0  # the delays chosen (waits end early on stop)
    backoff_longest_s: float = 0.0  # the longest delay chosen
    decode: p.DecodeStats = field(default_factory=p.DecodeStats)
    latency_hist: np.ndarray = field(
        default_factory=lambda: np.zeros(len(LATENCY_EDGES_NS) + 1, dtype=np.int64)
    )
    _rate_t: float = field(default_factory=time.monotonic, repr=False)
    _rate_n: int = 0
    _up_since: float | None = field(default=None, repr=False)
    _run_since: float | None = field(default=None, repr=False)

    def uptime(self) -> float:
        """Fraction of the time since ``Feed.run()`` started with the socket up (0..1)."""
        if self._run_since is None:
            return 0.0
        now = time.monotonic()
        up = self.connected_s + (now - self._up_since if self._up_since is not None else 0.0)
        total = now - self._run_since
        return min(1.0, up / total) if total > 0 else 0.0

    @property
    def decode_errors(self) -> int:
        """Frames the decoder rejected (all reasons)."""
        return self.decode.total

    def latency_quantile_ns(self, q: float) -> int:
        """Upper edge (ns) of the histogram bucket holding quantile ``q``; 0 if no data."""
        total = int(self.latency_hist.sum())
        if total == 0:
            return 0
        idx = int(np.searchsorted(np.cumsum(self.latency_hist), q * total))
        return int(LATENCY_EDGES_NS[min(idx, len(LATENCY_EDGES_NS) - 1)])

    def rate(self) -> float:
        """Messages/s since the previous call."""
        now = time.monotonic()
        dt = now - self._rate_t
        r = (self.msgs - self._rate_n) / dt if dt > 0 else 0.0
        self._rate_t, self._rate_n = now, self.msgs
        return r

    def as_dict(self) -> dict[str, Any]:
        """Plain counters for a progress line / dashboard."""
        return {
            "msgs": self.msgs,
            "deltas": self.deltas,
            "snapshots": self.snapshots,
            "trades": self.trades,
            "tickers": self.tickers,
            "lifecycle": self.lifecycle,
            "gaps": self.gaps,
            "gap_rows": self.gap_rows,
            "desyncs": self.desyncs,
            "resyncs": self.resyncs,
            "resubscribes": self.resubscribes,
            "reconnects": self.reconnects,
            "connect_attempts": self.connect_attempts,
            "connect_failures": self.connect_failures,
            "end_rows": self.end_rows,
            "connected_s": round(self.connected_s, 3),
            "backoff_s": round(self.backoff_s, 3),
            "uptime": round(self.uptime(), 4),
            "server_errors": self.server_errors,
            "decode_errors": self.decode_errors,
            "decode_errors_by_reason": {
                str(getattr(k, "value", k)): v for k, v in self.decode.errors.items()
            },
            "connected": self.connected,
            "latency_p50_us": self.latency_quantile_ns(0.5) / 1e3,
            "latency_p99_us": self.latency_quantile_ns(0.99) / 1e3,
        }


class _Pending(NamedTuple):
    kind: str  # subscribe | get_snapshot | add_markets | delete_markets | unsubscribe
    sid: int
    tickers: tuple[str, ...]
    channels: tuple[str, ...]


class _Listener(WSListener):
    """picows listener: forwards to the Feed, never awaits."""

    def __init__(self, feed: Feed) -> None:
        super().__init__()
        self.feed = feed
        self._frag: bytearray | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.feed._on_connected(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        mt = frame.msg_type
        if mt is WSMsgType.TEXT or mt is WSMsgType.BINARY:
            if frame.fin:
                self.feed._on_payload(frame.get_payload_as_memoryview())
            else:
                self._frag = bytearray(frame.get_payload_as_memoryview())
        elif mt is WSMsgType.CONTINUATION:
            if self._frag is None:
                return
            self._frag += frame.get_payload_as_memoryview()
            if frame.fin:
                data, self._frag = bytes(self._frag), None
                self.feed._on_payload(data)
        elif mt is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.feed._on_disconnected()


class Feed:
    """A Kalshi WS v2 order-book feed for a set of markets.

    Args:
        config: FeedConfig (URL, channels, staging size, backoff, ping).
        books: the BookSet this feed owns for writing.
        rings: FeedRings the writer drains.
        tickers: markets to subscribe initially.
        credentials: signs the handshake; None for a local sim without auth.
        on_lifecycle: optional callback for market_lifecycle_v2 records (must not block).
        first_rec_id: the session's first rec_id (default 1).
        all_markets_channels: channels of ``config.channels`` to subscribe for EVERY
            market (no ticker list) instead of per ticker: ``("market_lifecycle_v2",)``
            makes the exchange announce markets we do not record yet (collect --all).
    """

    def __init__(
        self,
        config: FeedConfig,
        books: BookSet,
        rings: FeedRings,
        tickers: Iterable[str] = (),
        *,
        credentials: Credentials | None = None,
        on_lifecycle: Callable[[p.LifecycleMsg], None] | None = None,
        first_rec_id: int = 1,
        all_markets_channels: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.books = books
        self.rings = rings
        self.credentials = credentials
        self.on_lifecycle = on_lifecycle
        self.stats = FeedStats()
        self.tickers: dict[str, None] = dict.fromkeys(tickers)  # ordered set
        self._all_channels = tuple(c for c in config.channels if c in all_markets_channels)
        self._ticker_channels = tuple(c for c in config.channels if c not in self._all_channels)
        self._all_sids: set[int] = set()  # sids of the every-market subscriptions
        self._decoder = p.Decoder(self.stats.decode)
        self._rec_id = first_rec_id
        self._cmd_id = 0
        self._transport: WSTransport | None = None
        self._stopping = False
        self._ended = False  # the end-of-recording rows were written
        self._healthy = False  # this connection subscribed and received a snapshot
        self._connections = 0
        self._stop_evt = asyncio.Event()
        self._connected_evt = asyncio.Event()
        # subscription state of the current connection
        self._seq: dict[int, int] = {}  # sid -> last seq seen
        self._sid_channel: dict[int, str] = {}
        self._sid_tickers: dict[int, set[str]] = {}
        self._channel_sid: dict[str, int] = {}  # channel -> its (latest) sid
        self._pending: dict[int, _Pending] = {}
        # sids we abandoned (resubscribed elsewhere): their late messages must not touch
        # books that a newer sid now feeds
        self._dead_sids: set[int] = set()
        self._resync_due: dict[int, set[str]] = {}  # sid -> tickers to snapshot
        self._resync_scheduled = False
        # delta staging: a flat list of ints converted in one go at flush (per-row numpy
        # field assignment costs ~1 us/row; list.extend + one np.array ~0.2 us/row)
        self._stage: list[int] = []
        self._n_staged = 0
        self._stage_out = np.zeros(config.stage_capacity, dtype=DELTA_DTYPE)
        self._flush_scheduled = False
        self._stage_cap = config.stage_capacity
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws_path = urlsplit(config.ws_url).path or "/"

    # ------------------------------------------------------------------ public API
    @property
    def connected(self) -> bool:
        """True while the socket is up."""
        return self._transport is not None

    @property
    def next_rec_id(self) -> int:
        """The rec_id the next record will get."""
        return self._rec_id

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the socket is up (and subscriptions were sent)."""
        await asyncio.wait_for(self._connected_evt.wait(), timeout)

    def books_valid(self) -> int:
        """Books that may be served now."""
        n = self.books.n_markets
        return int(self.books.meta["valid"][:n].sum())

    def _call_soon(self, fn: Callable[[], None]) -> None:
        # frames only arrive inside run(), so the loop is set by then
        assert self._loop is not None, "Feed frames handled outside Feed.run()"
        self._loop.call_soon(fn)

    async def run(self) -> None:
        """Connect, subscribe and stream until ``stop()``; reconnect on any loss."""
        self._loop = asyncio.get_running_loop()
        self.stats._run_since = time.monotonic()
        delay = self.config.backoff_initial_s
        while not self._stopping:
            self._healthy = False
            self.stats.connect_attempts += 1
            n_conn = self._connections
            try:
                await self._connect_once()
            except asyncio.CancelledError:
                self._teardown()
                self._end_recording()
                raise
            except (TimeoutError, OSError) as exc:
                log.warning("feed connection to %s failed: %s", self.config.ws_url, exc)
            except Exception as exc:  # picows raises WSError/handshake errors of its own
                log.warning("feed connection to %s failed: %r", self.config.ws_url, exc)
            self._teardown()
            if self._connections == n_conn:
                self.stats.connect_failures += 1
            if self._stopping:
                break
            if self._healthy:  # it subscribed and received data: start over
                delay = self.config.backoff_initial_s
            sleep = min(delay * random.uniform(0.5, 1.5), self.config.backoff_max_s)
            self.stats.backoff_planned_s += sleep
            self.stats.backoff_longest_s = max(self.stats.backoff_longest_s, sleep)
            log.info("feed reconnecting in %.2fs", sleep)
            t0 = time.monotonic()
            with contextlib.suppress(TimeoutError):  # stop() cuts the backoff short
                await asyncio.wait_for(self._stop_evt.wait(), sleep)
            self.stats.backoff_s += time.monotonic() - t0
            delay = min(delay * 2, self.config.backoff_max_s)
        self._end_recording()

    def stop(self) -> None:
        """Stop streaming: disconnect and let ``run()`` return (flushes staged deltas)."""
        self._stopping = True
        self._stop_evt.set()
        if self._transport is not None:
            self._transport.disconnect()

    def disconnect(self) -> None:
        """Drop the socket now (``run()`` reconnects): for tests and operators."""
        if self._transport is not None:
            self._transport.disconnect()

    def add_markets(self, tickers: Sequence[str]) -> None:
        """Start recording ``tickers`` (update_subscription add_markets on every sid)."""
        new = [t for t in tickers if t not in self.tickers]
        self.tickers.update(dict.fromkeys(new))
        if not new or self._transport is None:
            return
        per_ticker = {c: sid for c, sid in self._channel_sid.items() if sid not in self._all_sids}
        if not per_ticker:
            self._subscribe(new, self._ticker_channels)
            return
        for channel, sid in per_ticker.items():
            for chunk in self._chunks(new):
                self._command(
                    p.encode_update_subscription(self._next_cmd(), sid, "add_markets", chunk),
                    _Pending("add_markets", sid, tuple(chunk), (channel,)),
                )
            if channel == p.CH_ORDERBOOK:
                self._sid_tickers.setdefault(sid, set()).update(new)

    def remove_markets(self, tickers: Sequence[str], *, done: bool = False) -> None:
        """Stop recording ``tickers``; their books are invalidated.

        Args:
            tickers: markets to drop.
            done: the markets are finished (determined/settled): their recording ends
                here (GAP_REASON_END rows, not a hole); else GAP_REASON_UNSUBSCRIBED.
        """
        gone = [t for t in tickers if t in self.tickers]
        for t in gone:
            del self.tickers[t]
        if not gone:
            return
        self._flush()
        if done:
            self._gap_rows(gone, GAP_REASON_END, NO_SEQ, NO_SEQ, -1, count=False)
            self.stats.end_rows += len(gone)
        else:
            self._gap_rows(gone, GAP_REASON_UNSUBSCRIBED, NO_SEQ, NO_SEQ, -1)
        if self._transport is None:
            return
        for channel, sid in list(self._channel_sid.items()):
            if sid in self._all_sids:
                continue
            for chunk in self._chunks(gone):
                self._command(
                    p.encode_update_subscription(self._next_cmd(), sid, "delete_markets", chunk),
                    _Pending("delete_markets", sid, tuple(chunk), (channel,)),
                )
            if channel == p.CH_ORDERBOOK:
                self._sid_tickers.get(sid, set()).difference_update(gone)

    def list_subscriptions(self) -> None:
        """Ask the server for its view of our subscriptions (answer logged at DEBUG)."""
        self._command(p.encode_list_subscriptions(self._next_cmd()), None)

    # ------------------------------------------------------------------ connection
    async def _connect_once(self) -> None:
        headers = (
            self.credentials.headers("GET", self._ws_path) if self.credentials is not None else None
        )
        transport, _ = await ws_connect(
            lambda: _Listener(self),
            self.config.ws_url,
            extra_headers=headers,
            websocket_handshake_timeout=self.config.handshake_timeout_s,
            enable_auto_ping=True,
            auto_ping_idle_timeout=self.config.ping_idle_s,
            auto_ping_reply_timeout=self.config.ping_reply_s,
            enable_auto_pong=True,
            max_frame_size=self.config.max_frame_bytes,
            read_buffer_init_size=1 << 20,
        )
        try:
            await transport.wait_disconnected()
        finally:
            if not transport.is_disconnected:
                transport.disconnect()

    def _on_connected(self, transport: WSTransport) -> None:
        if self._stopping:  # stop() came while the handshake was in flight
            transport.disconnect()
            return
        self._transport = transport
        self.stats.connected = True
        self.stats._up_since = time.monotonic()
        if self._connections:
            self.stats.reconnects += 1
        self._connections += 1
        log.info(
            "feed connected to %s; subscribing %d markets", self.config.ws_url, len(self.tickers)
        )
        if self._all_channels:
            self._subscribe_all(self._all_channels)
        if self.tickers:
            self._subscribe(list(self.tickers), self._ticker_channels)
        self._connected_evt.set()

    def _on_disconnected(self) -> None:
        if self._transport is None:
            return
        self._transport = None
        self.stats.connected = False
        if self.stats._up_since is not None:
            self.stats.connected_s += time.monotonic() - self.stats._up_since
            self.stats._up_since = None
        self._connected_evt.clear()
        self._flush()
        if self._stopping:
            self._end_recording()  # the recording ends here: not a hole
        elif self.books.n_markets:
            # every book is stale until its fresh snapshot on the next connection
            self.stats.gaps += 1
            self._gap_rows(
                [self.books.ticker_of(s) for s in range(self.books.n_markets)],
                GAP_REASON_DISCONNECT,
                NO_SEQ,
                NO_SEQ,
                -1,
            )
        self._seq.clear()
        self._sid_channel.clear()
        self._sid_tickers.clear()
        self._channel_sid.clear()
        self._pending.clear()
        self._resync_due.clear()
        self._dead_sids.clear()  # sids are per connection
        self._all_sids.clear()
        if self._stopping:
            log.info("feed closed %s", self.config.ws_url)
        else:
            log.warning("feed disconnected from %s", self.config.ws_url)

    def _end_recording(self) -> None:
        """Write the end-of-recording rows (GAP_REASON_END, one per market) once, at stop."""
        if self._ended or not self._stopping:
            return
        self._ended = True
        self._flush()
        # the markets recorded now (a dropped market's recording ended when it was dropped)
        tickers = [t for t in self.tickers if t in self.books.slots]
        if tickers:
            self._gap_rows(tickers, GAP_REASON_END, NO_SEQ, NO_SEQ, -1, count=False)
            self.stats.end_rows += len(tickers)

    def _teardown(self) -> None:
        if self._transport is not None:
            self._transport.disconnect()
            self._on_disconnected()
        self._flush()

    # ------------------------------------------------------------------ commands
    def _next_cmd(self) -> int:
        self._cmd_id += 1
        return self._cmd_id

    def _chunks(self, tickers: Sequence[str]) -> list[list[str]]:
        k = self.config.subscribe_chunk
        return [list(tickers[i : i + k]) for i in range(0, len(tickers), k)]

    def _command(self, payload: bytes, pending: _Pending | None) -> None:
        if self._transport is None:
            return
        if pending is not None:
            self._pending[self._cmd_id] = pending
        self._transport.send(WSMsgType.TEXT, payload)

    def _subscribe(self, tickers: Sequence[str], channels: Sequence[str]) -> None:
        for chunk in self._chunks(tickers):
            cid = self._next_cmd()
            self._command(
                p.encode_subscribe(cid, chunk, channels),
                _Pending("subscribe", -1, tuple(chunk), tuple(channels)),
            )

    def _subscribe_all(self, channels: Sequence[str]) -> None:
        cid = self._next_cmd()
        self._command(
            p.encode_subscribe_all(cid, channels),
            _Pending("subscribe_all", -1, (), tuple(channels)),
        )

    def _request_snapshots(self, sid: int, tickers: Iterable[str]) -> None:
        """Coalesce get_snapshot requests of one loop iteration per sid."""
        self._resync_due.setdefault(sid, set()).update(tickers)
        if not self._resync_scheduled and self._loop is not None:
            self._resync_scheduled = True
            self._loop.call_soon(self._send_resyncs)

    def _send_resyncs(self) -> None:
        self._resync_scheduled = False
        due, self._resync_due = self._resync_due, {}
        for sid, tickers in due.items():
            live = sorted(t for t in tickers if t in self.tickers)
            if not live or sid not in self._sid_channel:
                continue
            for chunk in self._chunks(live):
                self.stats.resyncs += 1
                self._command(
                    p.encode_update_subscription(self._next_cmd(), sid, "get_snapshot", chunk),
                    _Pending("get_snapshot", sid, tuple(chunk), (p.CH_ORDERBOOK,)),
                )

    def _resubscribe(self, sid: int, tickers: Sequence[str], channels: Sequence[str]) -> None:
        """Drop ``sid`` from our state and subscribe ``tickers`` again on a new sid."""
        self._forget_sid(sid)
        live = [t for t in tickers if t in self.tickers]
        if live:
            self.stats.resubscribes += 1
            self._subscribe(live, channels)

    def _forget_sid(self, sid: int) -> None:
        self._dead_sids.add(sid)
        self._all_sids.discard(sid)
        self._seq.pop(sid, None)
        ch = self._sid_channel.pop(sid, None)
        self._sid_tickers.pop(sid, None)
        if ch is not None and self._channel_sid.get(ch) == sid:
            del self._channel_sid[ch]

    # ------------------------------------------------------------------ frames
    def _on_payload(self, data: memoryview | bytes) -> None:
        recv_ns = time.time_ns()
        self.stats.msgs += 1
        try:
            d = _loads(data)
        except JSONDecodeError:
            self.stats.decode.count(p.Reason.NOT_JSON, data)
            return
        f = _fast_delta(d)
        if f is not None:
            # THE hot path, inlined (a method call per message costs ~5% here)
            sid, seq, ticker, side, px, n, ts = f
            if sid in self._dead_sids:
                return
            seqs = self._seq
            last = seqs.get(sid)
            if last is not None and seq != last + 1:
                self._on_seq_gap(sid, last + 1, seq, recv_ns)
            seqs[sid] = seq
            slot = self.books.slots.get(ticker)
            if slot is None:
                slot = self.books.slot(ticker)
            self._rec_id += 1
            self._stage.extend((ts, recv_ns, seq, n, slot, sid, px, side))
            self._n_staged += 1
            if self._n_staged >= self._stage_cap:
                self._flush()
            elif not self._flush_scheduled:
                self._flush_scheduled = True
                self._call_soon(self._flush)
            return
        rec = self._decoder.decode_obj(d, data)
        if rec is not None:
            self._dispatch(rec, recv_ns)

    def _dispatch(self, rec: p.Record, recv_ns: int) -> None:
        """Everything but the well-formed delta fast path."""
        cls = rec.__class__
        if cls is p.DeltaMsg:
            self._on_delta(rec, recv_ns)  # type: ignore[arg-type]
        elif cls is p.SnapshotMsg:
            self._on_snapshot(rec, recv_ns)  # type: ignore[arg-type]
        elif cls is p.TradeMsg:
            self._on_trade(rec, recv_ns)  # type: ignore[arg-type]
        elif cls is p.TickerMsg:
            self.stats.tickers += 1
        elif cls is p.LifecycleMsg:
            self.stats.lifecycle += 1
            if self.on_lifecycle is not None:
                self.on_lifecycle(rec)  # type: ignore[arg-type]
        elif cls is p.BadBookMsg:
            self._on_bad_book(rec, recv_ns)  # type: ignore[arg-type]
        else:
            self._on_control(rec)

    def _check_seq(self, sid: int, seq: int, recv_ns: int) -> None:
        last = self._seq.get(sid)
        if last is not None and seq != last + 1:
            self._on_seq_gap(sid, last + 1, seq, recv_ns)
        self._seq[sid] = seq

    def _on_delta(self, d: p.DeltaMsg, recv_ns: int) -> None:
        sid, seq = d.sid, d.seq
        if sid in self._dead_sids:
            return
        last = self._seq.get(sid)
        if last is not None and seq != last + 1:
            self._on_seq_gap(sid, last + 1, seq, recv_ns)
        self._seq[sid] = seq
        slot = self.books.slots.get(d.ticker)
        if slot is None:
            slot = self.books.slot(d.ticker)
        self._rec_id += 1
        self._stage.extend((d.ts_ms, recv_ns, seq, d.delta, slot, sid, d.price, d.side))
        self._n_staged += 1
        if self._n_staged >= self._stage_cap:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._call_soon(self._flush)

    def _flush(self) -> None:
        """Apply all staged deltas to the books in one kernel call and push them."""
        self._flush_scheduled = False
        n = self._n_staged
        if n == 0:
            return
        raw = np.array(self._stage, dtype=np.int64).reshape(n, _N_STAGE_COLS)
        self._stage.clear()
        out = self._stage_out[:n]
        out["rec_id"] = np.arange(self._rec_id - n, self._rec_id)
        for i, name in enumerate(_STAGE_FIELDS):
            out[name] = raw[:, i]
        self._n_staged = 0
        self.stats.deltas += n
        out["status"] = ST_OK
        n_bad = self.books.apply_deltas(out)
        done_ns = time.time_ns()
        self.rings.push_deltas(out)
        lat = done_ns - out["recv_ts"]
        self.stats.latency_hist += np.bincount(
            np.searchsorted(LATENCY_EDGES_NS, lat), minlength=len(self.stats.latency_hist)
        )[: len(self.stats.latency_hist)]
        if n_bad:
            st = out["status"]
            desync = np.flatnonzero((st == ST_NEGATIVE) | (st == ST_CROSSED))
            if desync.size:
                self._on_desync(out["market"][desync], out["sid"][desync])

    def _on_desync(self, slots: np.ndarray, sids: np.ndarray) -> None:
        self.stats.desyncs += int(slots.size)
        self.stats.gaps += 1
        seen: dict[int, int] = {}
        for s, sid in zip(slots.tolist(), sids.tolist(), strict=True):
            seen.setdefault(s, sid)
        tickers = [self.books.ticker_of(s) for s in seen]
        self._gap_rows(tickers, GAP_REASON_DESYNC, NO_SEQ, NO_SEQ, -1, flush=False)
        for s, sid in seen.items():
            self._request_snapshots(sid, [self.books.ticker_of(s)])

    def _on_snapshot(self, s: p.SnapshotMsg, recv_ns: int) -> None:
        if s.sid in self._dead_sids:
            return
        self._flush()
        self._check_seq(s.sid, s.seq, recv_ns)
        slot = self.books.slot(s.ticker)
        lv = s.levels
        lv["rec_id"] = self._rec_id
        self._rec_id += 1
        lv["market"] = slot
        lv["recv_ts"] = recv_ns
        st = self.books.apply_snapshot(slot, lv)
        lv["status"] = st
        self.stats.snapshots += 1
        self._healthy = True  # subscribed, and data arrived
        self.rings.snapshots.push_batch(lv)
        if st != ST_OK:
            self.stats.desyncs += 1
            self.stats.gaps += 1
            self._gap_rows([s.ticker], GAP_REASON_DESYNC, NO_SEQ, s.seq, s.sid, flush=False)
            self._request_snapshots(s.sid, [s.ticker])

    def _on_trade(self, t: p.TradeMsg, recv_ns: int) -> None:
        self._flush()  # keeps staged rec_ids consecutive (and trades in arrival order)
        rec = np.zeros(1, dtype=TRADE_DTYPE)
        r = rec[0]
        r["rec_id"] = self._rec_id
        self._rec_id += 1
        r["exch_ts"] = t.ts_ms
        r["recv_ts"] = recv_ns
        r["count"] = t.size
        r["trade_id_hi"] = t.trade_id_hi
        r["trade_id_lo"] = t.trade_id_lo
        r["market"] = self.books.slot(t.ticker)
        r["sid"] = t.sid
        r["seq"] = t.seq
        r["yes_price"] = t.yes_price
        r["taker_side"] = t.taker_side
        self.stats.trades += 1
        self.rings.trades.push_batch(rec)

    def _on_bad_book(self, b: p.BadBookMsg, recv_ns: int) -> None:
        """A book message we could not decode: the book missed an update -> resync it."""
        if b.sid in self._dead_sids:
            return
        self._flush()
        self._check_seq(b.sid, b.seq, recv_ns)
        self.stats.gaps += 1
        self._gap_rows([b.ticker], GAP_REASON_DESYNC, b.seq, b.seq, b.sid, flush=False)
        self._request_snapshots(b.sid, [b.ticker])

    def _on_seq_gap(self, sid: int, expected: int, got: int, recv_ns: int) -> None:
        self._flush()
        tickers = self._tickers_on_sid(sid)
        log.warning(
            "seq gap on sid %d: expected %d got %d; resyncing %d markets",
            sid,
            expected,
            got,
            len(tickers),
        )
        self.stats.gaps += 1
        self._gap_rows(tickers, GAP_REASON_SEQ, expected, got, sid, flush=False)
        self._request_snapshots(sid, tickers)

    def _tickers_on_sid(self, sid: int) -> list[str]:
        n = self.books.n_markets
        on_sid = {
            self.books.ticker_of(int(s)) for s in np.flatnonzero(self.books.meta["sid"][:n] == sid)
        }
        on_sid.update(self._sid_tickers.get(sid, ()))
        return sorted(on_sid)

    def _gap_rows(
        self,
        tickers: Sequence[str],
        reason: int,
        expected: int,
        got: int,
        sid: int,
        *,
        flush: bool = True,
        count: bool = True,
    ) -> None:
        """Invalidate ``tickers``' books and push one GAP row per market (in rec_id order).

        ``count`` = False leaves ``stats.gap_rows`` alone (end-of-recording rows).
        """
        if flush:
            self._flush()
        if not tickers:
            return
        slots = [self.books.slot(t) for t in tickers]
        rows = np.zeros(len(slots), dtype=GAP_DTYPE)
        rows["rec_id"] = np.arange(self._rec_id, self._rec_id + len(slots))
        self._rec_id += len(slots)
        rows["recv_ts"] = time.time_ns()
        rows["expected_seq"] = expected
        rows["got_seq"] = got
        rows["market"] = slots
        rows["sid"] = sid
        rows["reason"] = reason
        for s in slots:
            self.books.invalidate(s)
        if count:
            self.stats.gap_rows += len(slots)
        self.rings.gaps.push_batch(rows)

    # ------------------------------------------------------------------ control
    def _on_control(self, rec: p.Record) -> None:
        self.stats.acks += 1
        if isinstance(rec, p.SubscribedMsg):
            pend = self._pending.get(rec.id)
            self._sid_channel[rec.sid] = rec.channel
            self._channel_sid[rec.channel] = rec.sid
            if pend is not None and pend.kind == "subscribe_all":
                self._all_sids.add(rec.sid)
            elif pend is not None and rec.channel == p.CH_ORDERBOOK:
                self._sid_tickers.setdefault(rec.sid, set()).update(pend.tickers)
        elif isinstance(rec, p.OkMsg):
            self._pending.pop(rec.id, None)
            if rec.sid and rec.seq != NO_SEQ and rec.sid in self._seq:
                # acks may or may not consume a seq (UNCONFIRMED): accept the next one,
                # ignore a repeat, treat a jump as a gap
                last = self._seq[rec.sid]
                if rec.seq > last:
                    self._check_seq(rec.sid, rec.seq, time.time_ns())
            if rec.subscriptions:
                log.debug("subscriptions: %s", rec.subscriptions)
        elif isinstance(rec, p.UnsubscribedMsg):
            self._pending.pop(rec.id, None)
            self._forget_sid(rec.sid)
        elif isinstance(rec, p.ErrorMsg):
            self._on_server_error(rec)

    def _on_server_error(self, e: p.ErrorMsg) -> None:
        self.stats.server_errors += 1
        pend = self._pending.pop(e.id, None)
        log.warning("server error %d (%s) for command %d sid %d", e.code, e.msg, e.id, e.sid)
        if e.sid and e.code in p.RESUBSCRIBE_CODES and e.sid in self._sid_channel:
            channel = self._sid_channel[e.sid]
            if channel == p.CH_ORDERBOOK:
                tickers = self._tickers_on_sid(e.sid)
                self.stats.gaps += 1
                self._gap_rows(tickers, GAP_REASON_SUB_ERROR, NO_SEQ, NO_SEQ, e.sid)
            elif e.sid in self._all_sids:
                self._forget_sid(e.sid)
                self.stats.resubscribes += 1
                self._subscribe_all((channel,))
                return
            else:
                tickers = list(self.tickers)
            self._resubscribe(e.sid, tickers, (channel,))
        elif pend is not None and pend.kind == "get_snapshot":
            # server cannot snapshot in place: take a fresh sid for these tickers
            self._flush()
            sid_tickers = self._tickers_on_sid(pend.sid)
            self._command(p.encode_unsubscribe(self._next_cmd(), [pend.sid]), None)
            self._resubscribe(pend.sid, sid_tickers, (p.CH_ORDERBOOK,))
