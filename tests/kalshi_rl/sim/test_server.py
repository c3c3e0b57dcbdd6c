"""The sim over real loopback WebSockets and HTTP (client: the `websockets` package)."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest
import websockets

from core.dtypes import PRICE_MAX
from kalshi_rl.errors import ConfigError
from kalshi_rl.kalshi import auth
from kalshi_rl.sim import ModelParams, SimConfig, SimExchange

# manual stepping: the tests decide when events happen
MANUAL = {"autostart": False, "n_markets": 4, "seed": 7, "start_ts_ms": 1_700_000_000_000}


def is_type(t: str) -> Any:
    return lambda m: m.get("type") == t


async def subscribed_book(
    sim: SimExchange, ws_client: Any, tickers: list[str], **extra: Any
) -> tuple[Any, list[dict[str, Any]]]:
    """Connect, subscribe orderbook_delta, return (client, [subscribed, snapshots...])."""
    c = await ws_client.open(sim.ws_url)
    await c.subscribe(["orderbook_delta"], tickers, **extra)
    msgs = [await c.recv() for _ in range(1 + len(tickers))]
    return c, msgs


async def drain_book(sim: SimExchange, c: Any, books: Any, conn: int, sid: int) -> list[dict]:
    """Receive until the client has every orderbook message the sim sent on (conn, sid)."""
    last = sim.sub_seq(conn, sid)
    got = []
    while not got or got[-1].get("seq") != last:
        m = await c.recv()
        if m.get("sid") == sid and m["type"].startswith("orderbook_"):
            books.apply(m)
            got.append(m)
    return got


# ----------------------------------------------------------------------------- auth


@pytest.fixture(scope="module")
def creds() -> auth.Credentials:
    return auth.Credentials.from_pem("key-1", auth.generate_private_key_pem())


async def test_auth_accepts_signed_handshake_and_rejects_bad(
    creds: auth.Credentials, ws_client: Any
) -> None:
    cfg = SimConfig(public_key_pem=creds.public_pem(), **MANUAL)
    async with SimExchange(cfg) as sim:
        c = await ws_client.open(sim.ws_url, creds.headers("GET", "/trade-api/ws/v2"))
        await c.cmd("list_subscriptions")
        assert (await c.recv())["type"] == "ok"
        await c.close()
        with pytest.raises(websockets.InvalidStatus) as exc:
            await websockets.connect(sim.ws_url)
        assert exc.value.response.status_code == 401
        other = auth.Credentials.from_pem("key-1", auth.generate_private_key_pem())
        with pytest.raises(websockets.InvalidStatus) as exc:
            await websockets.connect(
                sim.ws_url, additional_headers=other.headers("GET", "/trade-api/ws/v2")
            )
        assert exc.value.response.status_code == 401
        # signed for the wrong path
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(
                sim.ws_url, additional_headers=creds.headers("GET", "/trade-api/v2/markets")
            )
        # REST: same rule, path without query
        url = sim.rest_url + "/markets?limit=1"
        req = urllib.request.Request(url, headers=creds.headers("GET", "/trade-api/v2/markets"))
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(req).read())
        assert len(orjson.loads(body)["markets"]) == 1
        with pytest.raises(urllib.error.HTTPError) as herr:
            await asyncio.to_thread(lambda: urllib.request.urlopen(url).read())
        assert herr.value.code == 401
        assert sim.stats["auth_rejected"] == 4


# ----------------------------------------------------------------------------- stream


async def test_snapshots_then_contiguous_deltas_rebuild_the_sim_book(
    ws_client: Any, client_books: Any
) -> None:
    async with SimExchange(SimConfig(**MANUAL)) as sim:
        tickers = sim.tickers[:3]
        c, msgs = await subscribed_book(sim, ws_client, tickers)
        assert msgs[0] == {
            "id": 1,
            "type": "subscribed",
            "msg": {"channel": "orderbook_delta", "sid": 1},
        }
        snaps = msgs[1:]
        assert [m["type"] for m in snaps] == ["orderbook_snapshot"] * 3
        assert [m["msg"]["market_ticker"] for m in snaps] == tickers
        assert [m["seq"] for m in snaps] == [1, 2, 3]
        books = client_books()
        for m in snaps:
            books.apply(m)
        for _ in range(5):
            sim.advance(300)
        got = await drain_book(sim, c, books, conn=1, sid=1)
        assert len(got) > 100
        assert [m["seq"] for m in got] == list(range(4, 4 + len(got)))
        assert {m["type"] for m in got} == {"orderbook_delta"}
        assert {m["msg"]["market_ticker"] for m in got} == set(tickers)
        for t in tickers:
            assert books.book(t) == sim.book(t)
            assert books.books.valid(books.books.slot(t))
        # the log holds exactly what the client got, in order
        logged = [m for m in sim.sent_messages if m.sid == 1 and m.seq is not None]
        assert [m.seq for m in logged] == list(range(1, 4 + len(got)))
        assert [orjson.loads(m.payload) for m in logged[3:]] == got
        await c.close()


async def test_use_yes_price_sends_no_levels_on_yes_scale(
    ws_client: Any, client_books: Any
) -> None:
    async with SimExchange(SimConfig(**MANUAL)) as sim:
        t = sim.tickers[0]
        c, msgs = await subscribed_book(sim, ws_client, [t], use_yes_price=True)
        snap = msgs[1]["msg"]
        no_sent = [(round(float(p) * 1000), q) for p, q in snap["no_dollars_fp"]]
        best_no = sim.book(t)["no"][0][0]
        assert max(p for p, _ in no_sent) != best_no
        assert min(p for p, _ in no_sent) == PRICE_MAX - best_no  # best NO bid = YES ask
        books = client_books(use_yes_price=True)
        books.apply(msgs[1])
        sim.advance(500)
        await drain_book(sim, c, books, conn=1, sid=1)
        assert books.book(t) == sim.book(t)
        await c.close()


async def test_trade_ticker_and_lifecycle_channels(ws_client: Any) -> None:
    params = ModelParams(lifetime_ms=50, determine_delay_ms=5, settle_delay_ms=5)
    async with SimExchange(SimConfig(model=params, rate=1000, **MANUAL)) as sim:
        c = await ws_client.open(sim.ws_url)
        await c.subscribe(["trade", "ticker", "market_lifecycle_v2"], send_initial_snapshot=True)
        first = [await c.recv() for _ in range(3 + 4)]
        assert [m["type"] for m in first[:1]] == ["subscribed"]
        assert sum(m["type"] == "ticker" for m in first) == 4  # initial ticker per market
        sim.advance(2000)
        msgs = await c.recv_until(
            lambda m: (
                m["type"] == "market_lifecycle_v2"
                and m["msg"]["event_type"] == "settled"
                and m["msg"]["market_ticker"] == sim.tickers[-1]
            )
        )
        trades = [m for m in msgs if m["type"] == "trade"]
        assert trades
        t0 = trades[0]["msg"]
        assert set(t0) >= {
            "trade_id",
            "market_ticker",
            "yes_price_dollars",
            "no_price_dollars",
            "count_fp",
            "taker_side",
            "ts_ms",
        }
        assert (
            round(float(t0["yes_price_dollars"]) * 1000)
            + round(float(t0["no_price_dollars"]) * 1000)
        ) == PRICE_MAX
        assert all("seq" not in m for m in trades)
        life = [m["msg"] for m in msgs if m["type"] == "market_lifecycle_v2"]
        det = {m["market_ticker"]: m["result"] for m in life if m["event_type"] == "determined"}
        assert set(det) == set(sim.tickers)
        assert set(det.values()) <= {"yes", "no"}
        for t in sim.tickers:
            mk = orjson.loads(
                await asyncio.to_thread(
                    lambda t=t: urllib.request.urlopen(f"{sim.rest_url}/markets/{t}").read()
                )
            )
            assert mk["market"]["status"] == "finalized"
            assert mk["market"]["result"] == det[t]
            assert sim.book(t) == {"yes": [], "no": []}
        await c.close()


async def test_same_seed_same_stream(ws_client: Any) -> None:
    async def run(seed: int, batches: tuple[int, ...]) -> list[bytes]:
        async with SimExchange(SimConfig(**{**MANUAL, "seed": seed})) as sim:
            c, _ = await subscribed_book(sim, ws_client, sim.tickers)
            for n in batches:
                sim.advance(n)
            last = sim.sub_seq(1, 1)
            got = []
            while not got or orjson.loads(got[-1])["seq"] != last:
                got.append(await asyncio.wait_for(c.ws.recv(decode=False), 10))
            await c.close()
            assert got == [m.payload for m in sim.sent_messages][-len(got) :]
            return got

    a = await run(7, (557,))
    b = await run(7, (100, 7, 450))  # only the step count matters, not the batching
    assert a == b
    assert len(a) > 300
    assert await run(8, (557,)) != a


# ----------------------------------------------------------------------------- commands


async def test_update_subscription_paths(ws_client: Any, client_books: Any) -> None:
    async with SimExchange(SimConfig(**MANUAL)) as sim:
        a, b, d = sim.tickers[:3]
        c, msgs = await subscribed_book(sim, ws_client, [a])
        books = client_books()
        books.apply(msgs[1])
        # add_markets: ok ack, then a snapshot of the new market on the same sid
        await c.cmd(
            "update_subscription", {"sid": 1, "action": "add_markets", "market_tickers": [b]}
        )
        ok = await c.recv()
        assert ok["type"] == "ok" and ok["sid"] == 1 and ok["msg"]["market_tickers"] == [a, b]
        snap = await c.recv()
        assert snap["type"] == "orderbook_snapshot" and snap["seq"] == 2
        assert snap["msg"]["market_ticker"] == b
        books.apply(snap)
        # get_snapshot with sids:[x]: fresh snapshots, seq continues, sub unchanged
        sim.advance(200)
        await drain_book(sim, c, books, 1, 1)
        await c.cmd(
            "update_subscription", {"sids": [1], "action": "get_snapshot", "market_tickers": [a, b]}
        )
        ok = await c.recv()
        assert ok["type"] == "ok"
        s1, s2 = await c.recv(), await c.recv()
        assert (s1["type"], s2["type"]) == ("orderbook_snapshot", "orderbook_snapshot")
        assert s2["seq"] == s1["seq"] + 1 == sim.sub_seq(1, 1)
        books.apply(s1)
        books.apply(s2)
        assert books.book(a) == sim.book(a)
        # delete_markets: no more messages for a
        await c.cmd(
            "update_subscription", {"sid": 1, "action": "delete_markets", "market_ticker": a}
        )
        ok = await c.recv()
        assert ok["msg"]["market_tickers"] == [b]
        sim.advance(300)
        got = await drain_book(sim, c, books, 1, 1)
        assert got and {m["msg"]["market_ticker"] for m in got} == {b}
        assert books.book(b) == sim.book(b)
        # re-subscribe is idempotent: same sid, snapshot only for the new market
        await c.subscribe(["orderbook_delta"], [b, d])
        sub = await c.recv()
        assert sub["msg"] == {"channel": "orderbook_delta", "sid": 1}
        snap = await c.recv()
        assert snap["msg"]["market_ticker"] == d
        # list and unsubscribe
        await c.subscribe(["trade"])
        assert (await c.recv())["msg"] == {"channel": "trade", "sid": 2}
        await c.cmd("list_subscriptions")
        lst = await c.recv_until(lambda m: m["type"] == "ok")
        assert lst[-1]["msg"] == [
            {"channel": "orderbook_delta", "sid": 1},
            {"channel": "trade", "sid": 2},
        ]
        seq_before = sim.sub_seq(1, 1)
        await c.cmd("unsubscribe", {"sids": [1, 2]})
        acks = await c.recv_until(lambda m: m["type"] == "unsubscribed" and m["sid"] == 2)
        u1 = [m for m in acks if m["type"] == "unsubscribed"]
        assert [m["sid"] for m in u1] == [1, 2]
        assert u1[0]["seq"] == seq_before  # acks carry the last seq, consume none
        sim.advance(200)
        await c.cmd("list_subscriptions")
        m = await c.recv()  # nothing else was sent: no subs left
        assert m == {"id": m["id"], "type": "ok", "msg": []}
        await c.close()


@pytest.mark.parametrize(
    ("cmd", "code"),
    [
        ({"id": 1, "cmd": "subscribe"}, 2),
        ({"id": 1, "cmd": "subscribe", "params": {}}, 3),
        ({"id": 1, "cmd": "frobnicate", "params": {}}, 5),
        ({"id": 1, "cmd": "unsubscribe", "params": {"sids": [42]}}, 7),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": ["ticker_v2"]}}, 8),
        (
            {"id": 1, "cmd": "subscribe", "params": {"channels": ["trade"], "market_tickers": "X"}},
            11,
        ),
        (
            {
                "id": 1,
                "cmd": "subscribe",
                "params": {
                    "channels": ["orderbook_delta"],
                    "market_ticker": "SIMEV-000-M000",
                    "use_yes_price": "yes",
                },
            },
            11,
        ),
        (
            {
                "id": 1,
                "cmd": "update_subscription",
                "params": {"sids": [1, 2], "action": "get_snapshot", "market_tickers": ["A"]},
            },
            12,
        ),
        (
            {
                "id": 1,
                "cmd": "update_subscription",
                "params": {"sid": 1, "action": "rename", "market_tickers": ["A"]},
            },
            13,
        ),
        ({"id": 1, "cmd": "update_subscription", "params": {"sid": 1}}, 15),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"]}}, 14),
        (
            {
                "id": 1,
                "cmd": "subscribe",
                "params": {"channels": ["orderbook_delta"], "market_ticker": "NOPE"},
            },
            16,
        ),
    ],
)
async def test_error_codes(cmd: dict[str, Any], code: int, ws_client: Any) -> None:
    async with SimExchange(SimConfig(**MANUAL)) as sim:
        c = await ws_client.open(sim.ws_url)
        await c.send_raw(orjson.dumps(cmd).decode())
        m = await c.recv()
        assert m["type"] == "error" and m["id"] == 1 and m["msg"]["code"] == code
        assert isinstance(m["msg"]["msg"], str) and m["msg"]["msg"]
        await c.send_raw("{not json")
        m = await c.recv()
        assert m["type"] == "error" and m["msg"]["code"] == 1
        await c.close()


# ----------------------------------------------------------------------------- faults


async def test_inject_gap_skips_exactly_one_seq(ws_client: Any) -> None:
    async with SimExchange(SimConfig(**MANUAL)) as sim:
        c, _ = await subscribed_book(sim, ws_client, sim.tickers[:2])
        sim.advance(50)
        assert sim.inject_gap() == 1
        sim.advance(50)
        last = sim.sub_seq(1, 1)
        seqs = [m["seq"] for m in await c.recv_until(lambda m: m.get("seq") == last)]
        missing = sorted(set(range(3, last + 1)) - set(seqs))
        assert len(missing) == 1
        assert seqs == sorted(seqs)
        dropped = [m for m in sim.sent_messages if m.dropped]
        assert [m.seq for m in dropped] == missing
        await c.close()


async def test_gap_every_config_and_http_control(ws_client: Any) -> None:
    async with SimExchange(SimConfig(gap_every=10, **MANUAL)) as sim:
        c, _ = await subscribed_book(sim, ws_client, sim.tickers)
        sim.advance(200)
        last = sim.sub_seq(1, 1)
        seqs = {m["seq"] for m in await c.recv_until(lambda m: m.get("seq") == last)}
        assert {s for s in range(5, last + 1) if s not in seqs} == {
            s for s in range(5, last + 1) if s % 10 == 0
        }
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(sim.control_url + "/gap").read()
        )
        assert orjson.loads(body) == {"ok": True, "result": 1}
        status = orjson.loads(
            await asyncio.to_thread(
                lambda: urllib.request.urlopen(sim.control_url + "/status").read()
            )
        )
        assert status["result"]["connections"] == 1
        await c.close()


async def test_disconnect_all_drops_the_socket(ws_client: Any) -> None:
    async with SimExchange(SimConfig(**MANUAL)) as sim:
        c, _ = await subscribed_book(sim, ws_client, sim.tickers[:1])
        assert sim.disconnect_all() == 1
        with pytest.raises(websockets.ConnectionClosed):
            await c.recv()
        for _ in range(100):
            if not sim.connections:
                break
            await asyncio.sleep(0.01)
        assert sim.connections == []
        assert not sim.has_listeners()


@pytest.mark.parametrize("kind", ["non_json", "unknown_type", "off_grid", "missing_fields"])
async def test_send_garbage(kind: str, ws_client: Any) -> None:
    async with SimExchange(SimConfig(**MANUAL)) as sim:
        c, _ = await subscribed_book(sim, ws_client, sim.tickers[:1])
        book_before = sim.book(sim.tickers[0])
        assert sim.send_garbage(kind) == 1
        raw = await asyncio.wait_for(c.ws.recv(), 5)
        if kind == "non_json":
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(raw)
        else:
            m = orjson.loads(raw)
            if kind == "unknown_type":
                assert m["type"] == "mystery"
            else:
                assert m["type"] == "orderbook_delta" and m["seq"] == 2
                if kind == "off_grid":
                    assert m["msg"]["price_dollars"] == "0.0005"
                else:
                    assert "delta_fp" not in m["msg"]
        assert sim.book(sim.tickers[0]) == book_before
        await c.close()


async def test_sub_error_kills_the_sid_and_resubscribe_works(ws_client: Any) -> None:
    async with SimExchange(SimConfig(**MANUAL)) as sim:
        c, _ = await subscribed_book(sim, ws_client, sim.tickers[:2])
        assert sim.sub_error(17) == 1
        m = await c.recv()
        assert m == {"type": "error", "sid": 1, "msg": {"code": 17, "msg": "Internal error"}}
        sim.advance(100)
        await c.cmd("list_subscriptions")
        assert (await c.recv())["msg"] == []  # no deltas arrived for the dead sid
        await c.subscribe(["orderbook_delta"], sim.tickers[:2])
        sub = await c.recv()
        assert sub["msg"]["sid"] == 2
        with pytest.raises(ConfigError, match="10, 17 or 25"):
            sim.sub_error(3)


async def test_slow_reader_gets_error_25(ws_client: Any) -> None:
    async with SimExchange(SimConfig(slow_reader_bytes=1, **MANUAL)) as sim:
        c, _ = await subscribed_book(sim, ws_client, sim.tickers)
        sim.advance(40_000)  # far more than the socket buffers hold, client not reading
        assert sim.stats["overflows"] == 1
        assert not sim.has_listeners()
        msgs = await c.recv_until(is_type("error"), timeout=30)
        assert msgs[-1] == {
            "type": "error",
            "sid": 1,
            "msg": {"code": 25, "msg": "Subscription buffer overflow"},
        }
        await c.close()


async def test_stall_pauses_the_generator(ws_client: Any) -> None:
    cfg = SimConfig(**{**MANUAL, "autostart": True}, rate=5000)
    async with SimExchange(cfg) as sim:
        c, _ = await subscribed_book(sim, ws_client, sim.tickers)
        await c.recv()  # the generator runs
        sim.stall(60_000)  # advance() is synchronous: no batch is in flight here
        n = sim.stats["deltas"]
        await asyncio.sleep(0.3)
        assert sim.stats["deltas"] == n
        assert sim.stats["stalls"] == 1
        await c.close()


async def test_server_pings_with_heartbeat_body() -> None:
    async with SimExchange(SimConfig(ping_interval_s=0.1, **MANUAL)) as sim:
        got: list[bytes] = []
        async with websockets.connect(sim.ws_url) as ws:
            orig = ws.protocol.recv_frame  # record pings the sans-io protocol sees

            def spy(frame: Any) -> None:
                if frame.opcode.name == "PING":
                    got.append(bytes(frame.data))
                orig(frame)

            ws.protocol.recv_frame = spy
            await asyncio.sleep(0.5)
            assert ws.state.name == "OPEN"  # websockets answered with pongs
        assert got and set(got) == {b"heartbeat"}


# ----------------------------------------------------------------------------- REST


async def test_rest_markets_paging_and_orderbook() -> None:
    async with SimExchange(SimConfig(**{**MANUAL, "n_markets": 5})) as sim:

        def get(path: str) -> Any:
            return orjson.loads(urllib.request.urlopen(sim.rest_url + path).read())

        seen, cursor = [], ""
        while True:
            page = await asyncio.to_thread(get, f"/markets?limit=2&cursor={cursor}")
            assert len(page["markets"]) <= 2
            seen += [m["ticker"] for m in page["markets"]]
            cursor = page["cursor"]
            if not cursor:
                break
        assert seen == sim.tickers
        one = (await asyncio.to_thread(get, f"/markets?tickers={sim.tickers[1]}"))["markets"]
        assert [m["ticker"] for m in one] == [sim.tickers[1]]
        m = one[0]
        assert m["status"] == "active" and m["result"] == ""
        assert m["price_level_structure"] == "tapered_deci_cent"
        assert m["price_ranges"][0] == {"start": "0.0000", "end": "0.1000", "step": "0.0010"}
        assert (await asyncio.to_thread(get, "/markets?status=settled"))["markets"] == []
        assert (
            len(
                (await asyncio.to_thread(get, "/markets?status=open&mve_filter=exclude"))["markets"]
            )
            == 5
        )
        t = sim.tickers[0]
        ob = (await asyncio.to_thread(get, f"/markets/{t}/orderbook"))["orderbook_fp"]
        book = sim.book(t)
        assert ob["yes_dollars"] == [
            [f"{p / 1000:.4f}", f"{q / 100:.2f}"] for p, q in reversed(book["yes"])
        ]
        assert len(ob["no_dollars"]) == len(book["no"])
        st = await asyncio.to_thread(get, "/exchange/status")
        assert st == {"exchange_active": True, "trading_active": True}
        with pytest.raises(urllib.error.HTTPError) as exc:
            await asyncio.to_thread(get, "/markets/NOPE")
        assert exc.value.code == 404
        with pytest.raises(urllib.error.HTTPError) as exc:
            await asyncio.to_thread(get, "/markets?limit=0")
        assert exc.value.code == 400


# ----------------------------------------------------------------------------- blast


async def test_blast_sends_prebuilt_frames(ws_client: Any, client_books: Any) -> None:
    async with SimExchange(SimConfig(blast_frames=3000, **MANUAL)) as sim:
        c = await ws_client.open(sim.ws_url)
        await c.subscribe(["orderbook_delta"], sim.tickers)
        assert (await c.recv())["type"] == "subscribed"
        books = client_books()
        n = sim.stats["blast_prepared"]
        assert n >= 4 + 3000
        seqs = []
        for _ in range(n):
            m = await c.recv()
            books.apply(m)
            seqs.append(m["seq"])
        assert seqs == list(range(1, n + 1))
        for t in sim.tickers:
            assert books.book(t) == sim.book(t)
        for _ in range(200):
            if sim.blast_results:
                break
            await asyncio.sleep(0.01)
        r = sim.blast_results[0]
        assert r.frames == n and r.frames_per_s > 0
        await c.close()


# ----------------------------------------------------------------------------- subprocess


async def test_runs_as_a_subprocess(ws_client: Any, unused_tcp_port: int) -> None:
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kalshi_rl.sim",
        "--no-auth",
        "--port",
        str(unused_tcp_port),
        "--markets",
        "2",
        "--rate",
        "500",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert b"ws ws://127.0.0.1" in line
        c = await ws_client.open(f"ws://127.0.0.1:{unused_tcp_port}/trade-api/ws/v2")
        await c.subscribe(["orderbook_delta"], ["SIMEV-000-M000"])
        msgs = await c.recv_until(lambda m: m["type"] == "orderbook_delta")
        assert [m["type"] for m in msgs[:2]] == ["subscribed", "orderbook_snapshot"]
        await c.close()
    finally:
        proc.terminate()
        await proc.wait()


async def test_trigger_specs_and_fault_schedule(ws_client: Any) -> None:
    cfg = SimConfig(**MANUAL, faults=("gap", "garbage:unknown_type"), fault_every_s=0.05)
    async with SimExchange(cfg) as sim:
        c, _ = await subscribed_book(sim, ws_client, sim.tickers[:1])
        # the schedule fires gap, then garbage, in turn
        m = await c.recv(timeout=10)
        assert m["type"] == "mystery"
        assert sim.stats["dropped"] >= 1
        assert sim.trigger("stall:5") == 1 and sim.stats["stalls"] == 1
        assert sim.trigger("error:25") == 1
        m = await c.recv_until(is_type("error"))
        assert m[-1]["msg"]["code"] == 25
        assert sim.trigger("disconnect") == 1
        for bad in ("explode", "stall:soon", "error:3", "garbage:ascii_art"):
            with pytest.raises(ConfigError, match=r"fault|10, 17 or 25|garbage kind"):
                sim.trigger(bad)
    with pytest.raises(ConfigError, match="unknown fault"):
        SimConfig(faults=("explode",)).check()


async def test_client_that_never_pongs_is_dropped() -> None:
    import base64
    import os

    async with SimExchange(SimConfig(ping_interval_s=0.1, **MANUAL)) as sim:
        r, w = await asyncio.open_connection("127.0.0.1", sim.port)
        key = base64.b64encode(os.urandom(16)).decode()
        w.write(
            (
                f"GET /trade-api/ws/v2 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        assert b" 101 " in await r.readuntil(b"\r\n\r\n")
        received = b""
        while chunk := await asyncio.wait_for(r.read(4096), 10):  # never answer pings
            received += chunk
        assert received.startswith(b"\x89\x09heartbeat")  # a PING frame, body heartbeat
        w.close()
        assert sim.connections == []


async def test_reply_without_id_when_the_command_had_none(ws_client: Any) -> None:
    async with SimExchange(SimConfig(**MANUAL)) as sim:
        c = await ws_client.open(sim.ws_url)
        await c.send_raw('{"cmd": "subscribe", "params": {"channels": ["trade"]}}')
        assert await c.recv() == {"type": "subscribed", "msg": {"channel": "trade", "sid": 1}}
        await c.close()


def test_full_speed_batches_are_sized_to_the_time_budget() -> None:
    """At ``rate=0`` the next batch takes about ``max_batch_ms`` at the pace just measured,
    within 1..batch_steps, and grows at most 2x per batch."""
    from kalshi_rl.sim.server import _bounded_batch

    cfg = SimConfig(rate=0, batch_steps=2048, max_batch_ms=4.0)
    assert _bounded_batch(2048, 0.040, cfg) == 204  # 40 ms for 2048 steps: a tenth
    assert _bounded_batch(100, 0.001, cfg) == 200  # fast: doubles, not 400
    assert _bounded_batch(1500, 0.0001, cfg) == 2048  # capped at batch_steps
    assert _bounded_batch(1, 1.0, cfg) == 1  # never below one step
    assert _bounded_batch(64, 0.0, cfg) == 128  # no measurable time: grow
    with pytest.raises(ConfigError):
        SimConfig(max_batch_ms=0).check()
