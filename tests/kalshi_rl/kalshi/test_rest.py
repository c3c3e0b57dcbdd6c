"""The REST client against a real loopback HTTP server that checks Kalshi signatures."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from kalshi_rl.errors import AuthError, ServerError
from kalshi_rl.kalshi import auth
from kalshi_rl.kalshi.rest import ExchangeStatus, KalshiRest

CREDS = auth.Credentials.from_pem("kid", auth.generate_private_key_pem())
TICKERS = [f"KX-{i:03d}" for i in range(7)]


class Handler(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, dict[str, list[str]]]]] = []
    fail_first_n = 0

    def log_message(self, *args: object) -> None:
        pass

    def reply(self, code: int, body: object) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        u = urlsplit(self.path)
        q = parse_qs(u.query)
        Handler.seen.append((u.path, q))
        h = self.headers
        if not auth.verify(
            CREDS.public_pem(),
            h.get(auth.HDR_TIMESTAMP, ""),
            "GET",
            u.path,
            h.get(auth.HDR_SIGNATURE, ""),
        ):
            self.reply(401, {"error": "bad signature"})
            return
        if Handler.fail_first_n:
            Handler.fail_first_n -= 1
            self.reply(429, {"error": "too many requests"})
            return
        if u.path == "/trade-api/v2/markets":
            start = int(q.get("cursor", ["0"])[0])
            lim = int(q["limit"][0])
            page = TICKERS[start : start + lim]
            nxt = start + lim
            self.reply(
                200,
                {
                    "markets": [{"ticker": t} for t in page],
                    "cursor": str(nxt) if nxt < len(TICKERS) else "",
                },
            )
        elif u.path.startswith("/trade-api/v2/markets/"):
            t = u.path.rsplit("/", 1)[1]
            if t in TICKERS:
                self.reply(200, {"market": {"ticker": t, "status": "open"}})
            else:
                self.reply(404, {"error": "not found"})
        elif u.path == "/trade-api/v2/exchange/status":
            self.reply(200, {"exchange_active": True, "trading_active": False})
        else:
            self.reply(404, {"error": "no route"})


@pytest.fixture
def base_url() -> Iterator[str]:
    Handler.seen = []
    Handler.fail_first_n = 0
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/trade-api/v2"
    finally:
        srv.shutdown()
        srv.server_close()


async def test_markets_paged_by_cursor_signed(base_url: str) -> None:
    async with KalshiRest(base_url, CREDS) as rest:
        assert await rest.open_tickers(limit=3) == TICKERS
    pages = [q for path, q in Handler.seen if path.endswith("/markets")]
    assert len(pages) == 3
    assert all(q["status"] == ["open"] and q["mve_filter"] == ["exclude"] for q in pages)
    assert [q.get("cursor") for q in pages] == [None, ["3"], ["6"]]


async def test_market_status_and_errors(base_url: str) -> None:
    async with KalshiRest(base_url, CREDS, max_retries=2) as rest:
        assert (await rest.market("KX-001"))["ticker"] == "KX-001"
        assert await rest.exchange_status() == ExchangeStatus(True, False)
        with pytest.raises(ServerError, match="404"):
            await rest.market("NOPE")
        Handler.fail_first_n = 1  # a 429 is retried
        assert await rest.exchange_status() == ExchangeStatus(True, False)
    wrong = auth.Credentials.from_pem("kid", auth.generate_private_key_pem())
    async with KalshiRest(base_url, wrong) as rest:
        with pytest.raises(AuthError, match="401"):
            await rest.exchange_status()
