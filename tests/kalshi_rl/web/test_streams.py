"""The /rl/ws/* streams over real loopback sockets against a live node."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from typing import Any

import httpx
import orjson
import pytest
import websockets

from kalshi_rl.commands.stack import LiveStack
from kalshi_rl.web.config import WebConfig
from kalshi_rl.web.streams import Client, Fanout

pytestmark = pytest.mark.slow


async def test_orderbook_snapshot_on_join_then_updates(server: str, stack: LiveStack) -> None:
    t = stack.sim.tickers[0]
    url = server.replace("http", "ws") + f"/rl/ws/orderbook?markets={t}&interval_ms=50"
    async with websockets.connect(url) as ws:
        first = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["type"] == "book" and first["ticker"] == t
        books = stack.node.books
        assert first["n_updates"] <= int(books.meta[books.slots[t]]["n_updates"])
        seen = [first["n_updates"]]
        while len(seen) < 5:
            msg = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            assert msg["ticker"] == t  # only what was asked for
            seen.append(msg["n_updates"])
        assert seen == sorted(seen) and seen[-1] > seen[0]  # the book changes, in order
        # resubscribe to every market: a snapshot of each arrives
        await ws.send(orjson.dumps({"markets": None}).decode())
        tickers: set[str] = set()
        while tickers != set(stack.sim.tickers):
            tickers.add(orjson.loads(await asyncio.wait_for(ws.recv(), 10))["ticker"])
        await ws.send("not json")
        while True:
            m = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            if m["type"] == "error":
                assert "JSON" in m["detail"]
                break


async def test_status_stream(server: str, stack: LiveStack) -> None:
    async with websockets.connect(server.replace("http", "ws") + "/rl/ws/status") as ws:
        a = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        b = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert a["type"] == b["type"] == "status"
        assert b["books_total"] == 3 and b["feed"]["msgs"] >= a["feed"]["msgs"]


async def test_a_client_that_never_reads_is_dropped_and_the_feed_goes_on(
    stack: LiveStack, web_config: WebConfig, serve_app: Any
) -> None:
    """A raw socket that sends the handshake and then never reads: the server's buffers
    fill, its queue fills (throttled), and it is closed (dropped as too slow, or when it
    stops answering pings); meanwhile the feed keeps applying updates."""
    cfg = dataclasses.replace(web_config, ws_ping_s=1.0)
    async with serve_app(stack.node, cfg) as (url, _), httpx.AsyncClient(base_url=url) as c:
        host, port = url.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(
            b"GET /rl/ws/orderbook?interval_ms=20 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        feed = stack.node.feed
        assert feed is not None

        async def gauge(name: str) -> float:
            text = (await c.get("/metrics")).text
            return float(next(x for x in text.splitlines() if x.startswith(name)).split()[-1])

        try:
            loop = asyncio.get_running_loop()
            end = loop.time() + 30
            while await gauge("kalshi_rl_ws_orderbook_clients") < 1:
                if loop.time() >= end:  # a wait deadline, not a timing check
                    pytest.fail("the raw client never joined")
                await asyncio.sleep(0.05)
            m0 = feed.stats.msgs
            while await gauge("kalshi_rl_ws_orderbook_clients") > 0:
                if loop.time() >= end:  # a wait deadline, not a timing check
                    pytest.fail("the stuck client was never dropped")
                await asyncio.sleep(0.2)
            assert feed.stats.msgs > m0  # the feed kept going the whole time
            assert feed.books_valid() == 3
        finally:
            sock.close()


def test_fanout_throttles_then_drops_a_full_client() -> None:
    fan = Fanout(queue_size=2, drop_after=3)
    slow = fan.join()
    fast = fan.join()
    for i in range(6):
        fan.publish(str(i))
        while not fast.queue.empty():
            fast.queue.get_nowait()
    assert slow.queue.qsize() == 2 and slow.throttled == 3 and slow.dropped
    assert slow not in fan.clients and fast in fan.clients and fast.frames == 6
    assert fan.dropped_clients == 1
    c = Client(asyncio.Queue(1))
    assert c.offer("a", 5) and not c.offer("b", 5) and c.full_ticks == 1
