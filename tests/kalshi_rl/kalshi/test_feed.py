"""The feed against a tiny test-local Kalshi-speaking server over real loopback WebSockets.

The server (``MiniExchange``) keeps the true book per market as dicts, numbers its messages
per sid, and can drop a message, send garbage, kill a sid with error 25 or drop the socket.
Every test ends by checking the feed's books against the server's truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from core.book import BookSet
from core.dtypes import (
    GAP_REASON_DESYNC,
    GAP_REASON_DISCONNECT,
    GAP_REASON_END,
    GAP_REASON_SEQ,
    GAP_REASON_SUB_ERROR,
    GAP_REASON_UNSUBSCRIBED,
    SIDE_NO,
    SIDE_YES,
    ST_INVALID_BOOK,
    ST_OK,
)
from kalshi_rl.config import FeedConfig
from kalshi_rl.kalshi import auth
from kalshi_rl.kalshi import protocol as p
from kalshi_rl.kalshi.feed import Feed, FeedRings

WS_PATH = "/trade-api/ws/v2"


@dataclass
class Sub:
    sid: int
    channel: str
    tickers: set[str]
    seq: int = 0


@dataclass
class MiniExchange:
    """Just enough of Kalshi's WS v2 to exercise the client; books are {side: {px: qty}}."""

    public_pem: bytes | None = None
    books: dict[str, dict[int, dict[int, int]]] = field(default_factory=dict)
    subs: dict[int, Sub] = field(default_factory=dict)
    conn: ServerConnection | None = None
    next_sid: int = 0
    commands: list[dict[str, Any]] = field(default_factory=list)
    n_connections: int = 0
    refuse_get_snapshot: bool = False
    auth_failures: int = 0

    def book(self, ticker: str) -> dict[int, dict[int, int]]:
        return self.books.setdefault(
            ticker, {SIDE_YES: {400: 1000, 380: 500}, SIDE_NO: {550: 700, 500: 300}}
        )

    def levels(self, ticker: str, side: int) -> list[tuple[int, int]]:
        return sorted(self.book(ticker)[side].items(), reverse=True)

    async def send(self, obj: dict[str, Any] | bytes) -> None:
        assert self.conn is not None
        await self.conn.send(obj if isinstance(obj, bytes) else orjson.dumps(obj).decode())

    def ob_sub(self, ticker: str) -> Sub:
        for s in self.subs.values():
            if s.channel == p.CH_ORDERBOOK and ticker in s.tickers:
                return s
        raise KeyError(ticker)

    async def snapshot(self, sub: Sub, ticker: str) -> None:
        sub.seq += 1
        yes = self.levels(ticker, SIDE_YES)[::-1]
        no = self.levels(ticker, SIDE_NO)[::-1]
        await self.send(p.encode_snapshot(sub.sid, sub.seq, ticker, yes, no))

    async def delta(
        self, ticker: str, side: int, price: int, delta: int, *, drop: bool = False
    ) -> None:
        lv = self.book(ticker)[side]
        lv[price] = lv.get(price, 0) + delta
        assert lv[price] >= 0
        if lv[price] == 0:
            del lv[price]
        sub = self.ob_sub(ticker)
        sub.seq += 1
        if not drop:
            await self.send(
                p.encode_delta(
                    sub.sid, sub.seq, ticker, side=side, price=price, delta=delta, ts_ms=1
                )
            )

    async def handle(self, conn: ServerConnection) -> None:
        self.conn = conn
        self.n_connections += 1
        self.subs.clear()
        with contextlib.suppress(Exception):
            async for raw in conn:
                await self.on_command(orjson.loads(raw))

    async def on_command(self, c: dict[str, Any]) -> None:
        self.commands.append(c)
        cid, params = c["id"], c.get("params", {})
        if c["cmd"] == "subscribe":
            assert params["use_yes_price"] is False
            for ch in params["channels"]:
                self.next_sid += 1
                sub = Sub(self.next_sid, ch, set(params["market_tickers"]))
                self.subs[sub.sid] = sub
                await self.send(
                    {"id": cid, "type": "subscribed", "msg": {"channel": ch, "sid": sub.sid}}
                )
                if ch == p.CH_ORDERBOOK:
                    for t in params["market_tickers"]:
                        await self.snapshot(sub, t)
        elif c["cmd"] == "update_subscription":
            sub = self.subs[params["sids"][0]]
            tickers = params["market_tickers"]
            action = params["action"]
            if action == "get_snapshot" and self.refuse_get_snapshot:
                await self.send(
                    {"id": cid, "type": "error", "msg": {"code": 13, "msg": "unsupported action"}}
                )
                return
            if action == "add_markets":
                sub.tickers.update(tickers)
            elif action == "delete_markets":
                sub.tickers.difference_update(tickers)
            if sub.channel == p.CH_ORDERBOOK and action in ("add_markets", "get_snapshot"):
                for t in tickers:
                    await self.snapshot(sub, t)
            await self.send(
                {
                    "id": cid,
                    "type": "ok",
                    "sid": sub.sid,
                    "msg": {"market_tickers": sorted(sub.tickers)},
                }
            )
        elif c["cmd"] == "unsubscribe":
            for sid in params["sids"]:
                self.subs.pop(sid, None)
                await self.send({"id": cid, "sid": sid, "type": "unsubscribed"})


@pytest.fixture
async def exchange() -> AsyncIterator[tuple[MiniExchange, str]]:
    ex = MiniExchange()

    def check_auth(conn: ServerConnection, request: Any) -> Any:
        if ex.public_pem is None:
            return None
        h = request.headers
        ok = auth.verify(
            ex.public_pem,
            h.get(auth.HDR_TIMESTAMP, ""),
            "GET",
            request.path,
            h.get(auth.HDR_SIGNATURE, ""),
        )
        if not ok:
            ex.auth_failures += 1
            return conn.respond(401, "bad signature\n")
        return None

    async with serve(ex.handle, "127.0.0.1", 0, process_request=check_auth) as server:
        port = server.sockets[0].getsockname()[1]
        yield ex, f"ws://127.0.0.1:{port}{WS_PATH}"


async def until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition the feed reaches asynchronously (fails the test on timeout)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(feed: Feed) -> AsyncIterator[Feed]:
    task = asyncio.create_task(feed.run())
    try:
        yield feed
    finally:
        feed.stop()
        await asyncio.wait_for(task, 10)


def make_feed(
    url: str, tickers: list[str], shards: int = 1, **kw: Any
) -> tuple[Feed, BookSet, FeedRings]:
    books = BookSet(4)
    rings = FeedRings.create(1 << 12, delta_shards=shards)
    cfg = FeedConfig(ws_url=url, backoff_initial_s=0.01, backoff_max_s=0.05)
    return Feed(cfg, books, rings, tickers, **kw), books, rings


def books_match(ex: MiniExchange, books: BookSet, tickers: list[str]) -> bool:
    for t in tickers:
        s = books.slots.get(t)
        if s is None or not books.valid(s):
            return False
        for side in (SIDE_YES, SIDE_NO):
            if books.levels(s, side) != ex.levels(t, side):
                return False
    return True


def drain_all(rings: FeedRings) -> dict[str, np.ndarray]:
    out = {name: getattr(rings, name).drain() for name in ("snapshots", "trades", "gaps")}
    # deltas of every shard, back in rec_id order
    out["deltas"] = np.sort(np.concatenate([r.drain() for r in rings.delta_shards]), order="rec_id")
    return out


def rec_ids(d: dict[str, np.ndarray]) -> np.ndarray:
    ids = np.concatenate(
        [
            np.unique(d["snapshots"]["rec_id"]),
            d["deltas"]["rec_id"],
            d["trades"]["rec_id"],
            d["gaps"]["rec_id"],
        ]
    )
    return np.sort(ids)


async def test_subscribe_snapshot_deltas_and_signed_handshake(exchange) -> None:
    ex, url = exchange
    creds = auth.Credentials.from_pem("kid", auth.generate_private_key_pem())
    ex.public_pem = creds.public_pem()
    tickers = ["A", "B", "C"]
    feed, books, rings = make_feed(url, tickers, credentials=creds)
    async with running(feed):
        await until(lambda: books_match(ex, books, tickers))
        assert ex.auth_failures == 0
        await ex.delta("A", SIDE_YES, 400, -1000)  # best level removed
        await ex.delta("A", SIDE_YES, 410, 250)
        await ex.delta("B", SIDE_NO, 550, 199)
        await ex.delta("C", SIDE_NO, 560, 1)
        await until(lambda: feed.stats.deltas == 4)
        await until(lambda: books_match(ex, books, tickers))
        assert books.best(books.slots["A"]).yes_bid == 410
    d = drain_all(rings)
    assert d["deltas"]["status"].tolist() == [ST_OK] * 4
    assert d["deltas"][["price", "side", "delta"]].tolist() == [
        (400, SIDE_YES, -1000),
        (410, SIDE_YES, 250),
        (550, SIDE_NO, 199),
        (560, SIDE_NO, 1),
    ]
    # one session counter: every record id once, contiguous, in arrival order
    ids = rec_ids(d)
    assert ids.tolist() == list(range(1, len(ids) + 1))
    assert d["deltas"]["rec_id"].min() > d["snapshots"]["rec_id"].max()
    # a clean stop -> an end-of-recording row for every market, after everything else (not
    # a disconnect: the data has no hole, the recording ended)
    assert set(d["gaps"]["reason"].tolist()) == {GAP_REASON_END}
    assert sorted(books.ticker_of(m) for m in d["gaps"]["market"]) == tickers
    assert feed.stats.end_rows == 3 and feed.stats.gap_rows == 0 and feed.stats.gaps == 0
    assert feed.stats.latency_quantile_ns(0.99) > 0


async def test_bad_signature_is_rejected_and_retried(exchange) -> None:
    ex, url = exchange
    ex.public_pem = auth.Credentials.from_pem("k", auth.generate_private_key_pem()).public_pem()
    wrong = auth.Credentials.from_pem("k", auth.generate_private_key_pem())
    feed, _books, _ = make_feed(url, ["A"], credentials=wrong)
    async with running(feed):
        await until(lambda: ex.auth_failures >= 2)  # backoff loop keeps trying, re-signing
        assert not feed.connected and ex.n_connections == 0


async def test_seq_gap_invalidates_sid_and_resyncs(exchange) -> None:
    ex, url = exchange
    tickers = ["A", "B"]
    feed, books, rings = make_feed(url, tickers)
    async with running(feed):
        await until(lambda: books_match(ex, books, tickers))
        await ex.delta("A", SIDE_YES, 380, -500, drop=True)  # lost on the wire
        await ex.delta("B", SIDE_YES, 390, 100)  # reveals the gap
        await until(lambda: feed.stats.resyncs == 1)
        await until(lambda: books_match(ex, books, tickers))
        await ex.delta("A", SIDE_NO, 500, -300)
        await until(lambda: books_match(ex, books, tickers))
    d = drain_all(rings)
    gaps = d["gaps"][d["gaps"]["reason"] == GAP_REASON_SEQ]
    # every market on the sid gets a row, with the seq it expected and what came
    assert sorted(books.ticker_of(m) for m in gaps["market"]) == ["A", "B"]
    assert set(gaps["got_seq"] - gaps["expected_seq"]) == {1}
    # the delta that revealed the gap hit an invalid book: recorded, not applied
    revealing = d["deltas"][d["deltas"]["price"] == 390]
    assert revealing["status"].tolist() == [ST_INVALID_BOOK]
    assert revealing["rec_id"][0] > gaps["rec_id"].max()
    get_snaps = [c for c in ex.commands if c["cmd"] == "update_subscription"]
    assert get_snaps[0]["params"]["action"] == "get_snapshot"
    assert sorted(get_snaps[0]["params"]["market_tickers"]) == tickers


async def test_get_snapshot_refused_falls_back_to_resubscribe(exchange) -> None:
    ex, url = exchange
    ex.refuse_get_snapshot = True
    feed, books, _ = make_feed(url, ["A"])
    async with running(feed):
        await until(lambda: books_match(ex, books, ["A"]))
        await ex.delta("A", SIDE_YES, 380, -100, drop=True)
        await ex.delta("A", SIDE_YES, 380, -100)
        await until(lambda: feed.stats.resubscribes == 1)
        await until(lambda: books_match(ex, books, ["A"]))
        assert [c["cmd"] for c in ex.commands][-2:] == ["unsubscribe", "subscribe"]
        await ex.delta("A", SIDE_YES, 380, -100)
        await until(lambda: books_match(ex, books, ["A"]))


async def test_disconnect_reconnects_resubscribes(exchange) -> None:
    ex, url = exchange
    tickers = ["A", "B"]
    feed, books, rings = make_feed(url, tickers)
    async with running(feed):
        await until(lambda: books_match(ex, books, tickers))
        assert ex.conn is not None
        await ex.conn.close()
        await until(lambda: ex.n_connections == 2 and books_match(ex, books, tickers))
        await ex.delta("A", SIDE_YES, 400, -1)  # changed after the loss
        await until(lambda: books_match(ex, books, tickers))
        assert feed.stats.reconnects == 1
        d = drain_all(rings)
    reasons = d["gaps"]["reason"].tolist()
    assert reasons == [GAP_REASON_DISCONNECT] * 2  # the loss; the stop's end rows come later
    assert [c["cmd"] for c in ex.commands].count("subscribe") == 2


async def test_error_25_on_live_sid_resubscribes(exchange) -> None:
    ex, url = exchange
    feed, books, rings = make_feed(url, ["A"])
    async with running(feed):
        await until(lambda: books_match(ex, books, ["A"]))
        dead = ex.ob_sub("A")
        await ex.send(
            {
                "id": 0,
                "sid": dead.sid,
                "type": "error",
                "msg": {"code": 25, "msg": "subscription buffer overflow"},
            }
        )
        await until(lambda: feed.stats.resubscribes == 1)
        del ex.subs[dead.sid]
        await until(lambda: books_match(ex, books, ["A"]))
        await ex.delta("A", SIDE_NO, 550, -700)
        await until(lambda: books_match(ex, books, ["A"]))
    d = drain_all(rings)
    assert d["gaps"]["reason"].tolist()[0] == GAP_REASON_SUB_ERROR
    last = [c for c in ex.commands if c["cmd"] == "subscribe"][-1]
    assert last["params"]["channels"] == [p.CH_ORDERBOOK]


async def test_garbage_and_off_grid_are_counted_and_resynced(exchange) -> None:
    ex, url = exchange
    feed, books, rings = make_feed(url, ["A"])
    async with running(feed):
        await until(lambda: books_match(ex, books, ["A"]))
        await ex.send(b"not json at all")
        await ex.send({"type": "mystery", "sid": 1})
        # an off-grid delta that consumed a seq: the book missed an update
        sub = ex.ob_sub("A")
        sub.seq += 1
        await ex.send(
            {
                "type": "orderbook_delta",
                "sid": sub.sid,
                "seq": sub.seq,
                "msg": {
                    "market_ticker": "A",
                    "price_dollars": "0.4005",
                    "delta_fp": "1.00",
                    "side": "yes",
                    "ts_ms": 1,
                },
            }
        )
        await until(lambda: feed.stats.resyncs == 1)
        await until(lambda: books_match(ex, books, ["A"]))
        assert feed.stats.decode.errors == {"not_json": 1, "unknown_type": 1, "off_grid_price": 1}
        assert feed.stats.gaps == 1  # no false seq gap: the bad delta's seq was consumed
    d = drain_all(rings)
    assert d["gaps"]["reason"].tolist()[0] == GAP_REASON_DESYNC


async def test_add_and_remove_markets_at_run_time(exchange) -> None:
    ex, url = exchange
    feed, books, rings = make_feed(url, ["A"])
    async with running(feed):
        await until(lambda: books_match(ex, books, ["A"]))
        feed.add_markets(["B", "C", "D", "E"])  # grows the BookSet past its capacity of 4
        await until(lambda: books_match(ex, books, ["A", "B", "C", "D", "E"]))
        await ex.delta("E", SIDE_YES, 100, 5)
        await until(lambda: books_match(ex, books, ["E"]))
        feed.remove_markets(["B"])
        assert not books.valid(books.slots["B"])
        await until(lambda: "B" not in ex.ob_sub("A").tickers)
        assert sorted(ex.ob_sub("A").tickers) == ["A", "C", "D", "E"]
    d = drain_all(rings)
    unsub = d["gaps"][d["gaps"]["reason"] == GAP_REASON_UNSUBSCRIBED]
    assert [books.ticker_of(m) for m in unsub["market"]] == ["B"]


async def test_desync_negative_level_resyncs(exchange) -> None:
    ex, url = exchange
    feed, books, rings = make_feed(url, ["A"])
    async with running(feed):
        await until(lambda: books_match(ex, books, ["A"]))
        # the server's book disagrees with what it told us: a delta takes a level negative
        sub = ex.ob_sub("A")
        sub.seq += 1
        await ex.send(
            p.encode_delta(sub.sid, sub.seq, "A", side=SIDE_YES, price=200, delta=-5, ts_ms=1)
        )
        await until(lambda: feed.stats.desyncs == 1 and feed.stats.resyncs == 1)
        await until(lambda: books_match(ex, books, ["A"]))
    d = drain_all(rings)
    assert d["gaps"]["reason"].tolist()[0] == GAP_REASON_DESYNC


async def test_delta_shards_split_by_market_and_keep_every_record(exchange) -> None:
    ex, url = exchange
    tickers = ["A", "B", "C"]
    feed, books, rings = make_feed(url, tickers, shards=2)
    async with running(feed):
        await until(lambda: books_match(ex, books, tickers))
        for i in range(30):
            await ex.delta(tickers[i % 3], SIDE_YES, 100 + i, 1)
        await until(lambda: feed.stats.deltas == 30)
        await until(lambda: books_match(ex, books, tickers))
    parts = [r.drain() for r in rings.delta_shards]
    for k, part in enumerate(parts):
        assert part.shape[0] > 0
        assert set((part["market"] % 2).tolist()) == {k}
        assert np.all(np.diff(part["rec_id"]) > 0)  # arrival order within a shard
    merged = np.sort(np.concatenate(parts), order="rec_id")
    assert merged["price"].tolist() == [100 + i for i in range(30)]


async def test_stop_cuts_reconnect_backoff_short() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = FeedConfig(
        ws_url=f"ws://127.0.0.1:{port}{WS_PATH}", backoff_initial_s=60.0, backoff_max_s=60.0
    )
    feed = Feed(cfg, BookSet(4), FeedRings.create(1 << 10), ["A"])
    task = asyncio.create_task(feed.run())
    await until(lambda: feed.stats.connect_failures == 1)  # now sleeping ~30-60 s
    feed.stop()
    await asyncio.wait_for(task, 10)  # without the stop event this would hang for the backoff
    assert not feed.connected


async def test_server_pings_are_answered() -> None:
    ex = MiniExchange()
    # the server pings every 50 ms and drops us if a pong is 200 ms late
    async with serve(ex.handle, "127.0.0.1", 0, ping_interval=0.05, ping_timeout=0.2) as srv:
        port = srv.sockets[0].getsockname()[1]
        feed, books, _ = make_feed(f"ws://127.0.0.1:{port}{WS_PATH}", ["A"])
        async with running(feed):
            await until(lambda: books_match(ex, books, ["A"]))
            conns_before = ex.n_connections
            await asyncio.sleep(1.0)  # ~20 ping/pong rounds
            await ex.delta("A", SIDE_YES, 400, -1)
            await until(lambda: books_match(ex, books, ["A"]))
        assert conns_before == ex.n_connections == 1
        assert feed.stats.reconnects == 0
