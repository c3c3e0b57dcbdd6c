"""The sim's HTTP front door over a raw loopback socket: keep-alive, pipelining, limits."""

from __future__ import annotations

import asyncio

import orjson

from kalshi_rl.sim import SimConfig, SimExchange

MANUAL = {"autostart": False, "n_markets": 2, "seed": 7}


async def _read_response(r: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.lower()] = v.strip()
    body = await asyncio.wait_for(r.readexactly(int(headers["content-length"])), 5)
    return status, headers, body


async def test_keep_alive_and_pipelined_requests() -> None:
    async with SimExchange(SimConfig(**MANUAL)) as sim:
        r, w = await asyncio.open_connection("127.0.0.1", sim.port)
        t = sim.tickers[0]
        req = (
            f"GET /trade-api/v2/markets/{t} HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /trade-api/v2/exchange/status HTTP/1.1\r\nHost: x\r\n\r\n"
        ).encode()
        w.write(req[:30])  # a head split across reads
        await w.drain()
        await asyncio.sleep(0.01)
        w.write(req[30:])
        st1, h1, b1 = await _read_response(r)
        st2, h2, b2 = await _read_response(r)
        assert (st1, st2) == (200, 200)
        assert orjson.loads(b1)["market"]["ticker"] == t
        assert orjson.loads(b2) == {"exchange_active": True, "trading_active": True}
        assert h1["connection"] == "keep-alive" and h2["connection"] == "keep-alive"
        # the same connection still answers
        w.write(b"GET /trade-api/v2/markets/NOPE HTTP/1.1\r\nHost: x\r\n\r\n")
        st3, _, b3 = await _read_response(r)
        assert st3 == 404 and orjson.loads(b3)["error"]["code"] == "not_found"
        w.close()


async def test_refusals_close_cleanly() -> None:
    async with SimExchange(SimConfig(**MANUAL)) as sim:
        cases = [
            (b"POST /trade-api/v2/markets HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 405, False),
            (b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411, True),
            (b"NONSENSE\r\n\r\n", 400, True),
            (b"POST /x HTTP/1.1\r\nContent-Length: 9999999\r\n\r\n", 413, True),
            (b"GET /elsewhere HTTP/1.1\r\n\r\n", 404, False),
            (b"GET /trade-api/v2/portfolio/balance HTTP/1.1\r\n\r\n", 401, False),
        ]
        for raw, status, closes in cases:
            r, w = await asyncio.open_connection("127.0.0.1", sim.port)
            w.write(raw)
            got, headers, body = await _read_response(r)
            assert got == status, raw
            assert "error" in orjson.loads(body)
            if closes:
                assert headers["connection"] == "close"
                assert await asyncio.wait_for(r.read(), 5) == b""
            w.close()
        # the exchange kept serving
        assert sim.stats["auth_rejected"] == 1
