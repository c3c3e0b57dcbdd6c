"""The sim's one TCP port: a small HTTP/1.1 server that hands WebSocket upgrades to picows.

picows parses a request head itself but accepts only ``GET`` without a body, and Kalshi's
portfolio API needs ``POST``/``DELETE`` with JSON bodies.  ``FrontDoor`` (one asyncio
protocol per connection) reads each request head; a ``GET`` carrying
``Upgrade: websocket`` is handed, bytes and all, to a picows ``WSProtocol`` (which then
owns the connection exactly as if picows had accepted it), anything else is answered here
with keep-alive and pipelining.  Limits: head <= 16 KiB, body <= 1 MiB, no chunked bodies
(411), malformed requests get 400 and the connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from picows import WSAutoPingStrategy, WSUpgradeRequest
from picows.picows import WSProtocol  # type: ignore[attr-defined]

log = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024
MAX_BODY = 1 << 20
_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


class Request(NamedTuple):
    """One parsed HTTP request (headers keyed by lower-case name)."""

    method: str
    path: str  # percent-decoded, no query
    raw_path: str  # as sent (what a Kalshi signature covers)
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


class Response(NamedTuple):
    """What a handler returns: status and JSON body bytes."""

    status: int
    body: bytes


HttpHandler = Callable[[Request], Response]


def json_response(status: int, obj: Any) -> Response:
    """A Response with ``obj`` as JSON."""
    return Response(status, orjson.dumps(obj))


class WsSettings(NamedTuple):
    """The picows knobs of upgraded connections (as ``ws_create_server`` takes them)."""

    listener_factory: Callable[[WSUpgradeRequest], Any]
    ping_interval_s: float
    pong_timeout_s: float
    handshake_timeout_s: float = 5.0
    max_frame_size: int = 10 * 1024 * 1024


def _ws_protocol(ws: WsSettings) -> Any:
    # the positional arguments of picows 2.3's WSProtocol, as picows.api.ws_create_server
    # builds it for a server-side connection
    return WSProtocol(
        None,
        None,
        False,
        ws.listener_factory,
        logging.getLogger("picows.server"),
        True,  # disconnect_on_exception
        ws.handshake_timeout_s,
        True,  # enable_auto_ping
        ws.ping_interval_s,
        min(ws.pong_timeout_s, ws.ping_interval_s),  # periodic mode: reply <= interval
        WSAutoPingStrategy.PING_PERIODICALLY,
        True,  # enable_auto_pong
        ws.max_frame_size,
        None,  # extra headers
        16 * 1024,
    )


class FrontDoor(asyncio.Protocol):
    """One accepted connection until it is either HTTP (served here) or a WebSocket."""

    def __init__(self, handler: HttpHandler, ws: WsSettings) -> None:
        self.handler = handler
        self.ws = ws
        self.transport: Any = None  # asyncio's or uvloop's TCP transport
        self.buf = bytearray()
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.buf += data
        while not self.closing:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self._fail(413, "request head too large")
                return
            if end > MAX_HEAD:
                self._fail(413, "request head too large")
                return
            if not self._one(end):
                return

    def _one(self, end: int) -> bool:
        """Handle the request whose head ends at ``end``; False = wait for more bytes."""
        head = bytes(self.buf[:end]).decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._fail(400, "malformed request line")
            return False
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                self._fail(400, "malformed header line")
                return False
            headers[name.lower()] = value.strip()
        if method == "GET" and headers.get("upgrade", "").lower() == "websocket":
            self._upgrade()
            return False
        if "transfer-encoding" in headers:
            self._fail(411, "chunked request bodies are not supported; send Content-Length")
            return False
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._fail(400, "bad Content-Length")
            return False
        if length < 0 or length > MAX_BODY:
            self._fail(413, "request body too large")
            return False
        start = end + 4
        if len(self.buf) < start + length:
            return False
        body = bytes(self.buf[start : start + length])
        del self.buf[: start + length]
        url = urlsplit(target)
        req = Request(method, unquote(url.path), url.path, parse_qs(url.query), headers, body)
        try:
            resp = self.handler(req)
        except Exception:  # an exchange answers 500 and keeps running
            log.exception("sim HTTP handler failed on %s %s", method, url.path)
            resp = json_response(500, {"error": {"code": "internal", "message": "internal"}})
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        self._write(resp, keep)
        return keep

    def _upgrade(self) -> None:
        """Give the connection, with every byte read so far, to a picows WSProtocol."""
        tr = self.transport
        assert tr is not None
        self.closing = True
        proto = _ws_protocol(self.ws)
        tr.set_protocol(proto)
        proto.connection_made(tr)
        data = bytes(self.buf)
        self.buf.clear()
        while data:
            mv = proto.get_buffer(len(data))
            n = min(len(mv), len(data))
            mv[:n] = data[:n]
            proto.buffer_updated(n)
            data = data[n:]

    def _write(self, resp: Response, keep: bool) -> None:
        tr = self.transport
        if tr is None or tr.is_closing():
            return
        head = (
            f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'Status')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(resp.body)}\r\n"
            f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
        )
        tr.write(head.encode("latin-1") + resp.body)
        if not keep:
            self.closing = True
            tr.close()

    def _fail(self, status: int, why: str) -> None:
        self._write(
            json_response(status, {"error": {"code": "bad_request", "message": why}}), False
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def create_server(
    handler: HttpHandler, ws: WsSettings, host: str, port: int
) -> asyncio.AbstractServer:
    """Listen on ``host:port``: HTTP requests go to ``handler``, upgrades to picows."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: FrontDoor(handler, ws), host, port)
