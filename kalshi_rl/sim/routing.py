"""Routing of the sim's one port: WebSocket upgrade, REST, control; RSA-PSS auth.

kalshi_rl.sim.http reads each request; a WebSocket upgrade goes to picows, which calls
``Router.route``, every other request goes to ``Router.handle_http``:

* ``GET /trade-api/ws/v2`` -> a WebSocket session of the key id that signed it (auth
  headers checked when a public key is set; 401 otherwise)
* ``/trade-api/v2/portfolio/...`` (any method) -> the portfolio API of the signing user
  (a key id is required even when signatures are not checked)
* ``GET /trade-api/v2/...`` -> the market-data REST handler (same auth)
* ``GET /sim/control/<name>`` -> the control handler (bearer token when configured)
* anything else -> 404 (405 for a method a path does not take)
"""

from __future__ import annotations

import collections
import hmac
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from picows import WSListener, WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener

from kalshi_rl.kalshi import auth
from kalshi_rl.sim.config import CONTROL_PREFIX, REST_PREFIX, WS_PATH
from kalshi_rl.sim.http import Request, Response

Query = dict[str, list[str]]
HttpHandler = Callable[[str, Query], tuple[int, bytes]]
PortfolioHandler = Callable[[str, str, str, Query, bytes], tuple[int, bytes]]


def _header(headers: Any, name: str) -> str | None:
    # picows' CIMultiDict is case-insensitive; our HTTP parser keys headers lower-case
    v = headers.get(name)
    if v is None:
        v = headers.get(name.lower())
    return None if v is None else str(v)


class Authenticator:
    """Kalshi's request signatures.  A key id registered with ``add_key`` is checked
    against its own public key; any other key id against the sim's default key.  With
    no key at all, nothing is checked (the key id header, if any, still names the user).

    Args:
        public_key_pem: the default RSA public key (None = signatures not checked).
    """

    def __init__(self, public_key_pem: bytes | None) -> None:
        self._key = auth.load_public_key(public_key_pem) if public_key_pem is not None else None
        self._keys: dict[str, Any] = {}

    @property
    def enabled(self) -> bool:
        """True when requests must be signed."""
        return self._key is not None or bool(self._keys)

    def add_key(self, key_id: str, public_key_pem: bytes) -> None:
        """Accept ``key_id`` signed by its own key (a separate trading account)."""
        self._keys[key_id] = auth.load_public_key(public_key_pem)

    def user(self, headers: Any) -> str | None:
        """The key id a request names (not verified)."""
        return _header(headers, auth.HDR_KEY) or None

    def check(self, headers: Any, method: str, path: str) -> str | None:
        """None when the request is authorised, else the reason."""
        if not self.enabled:
            return None
        key = _header(headers, auth.HDR_KEY)
        ts = _header(headers, auth.HDR_TIMESTAMP)
        sig = _header(headers, auth.HDR_SIGNATURE)
        if not key or not ts or not sig:
            return "missing KALSHI-ACCESS-* headers"
        pub = self._keys.get(key, self._key)
        if pub is None:
            return f"unknown API key id {key!r}"
        if not auth.verify(pub, ts, method, path, sig):
            return "bad signature"
        return None


def auth_error_body(why: str) -> bytes:
    """Kalshi's 401 body."""
    return orjson.dumps({"error": {"code": "authentication_error", "message": why}})


def control_authorised(token: str | None, headers: Any) -> bool:
    """True when no token is configured (loopback) or the bearer token matches."""
    if not token:
        return True
    got = _header(headers, "Authorization") or ""
    return hmac.compare_digest(got.encode(), f"Bearer {token}".encode())


class Router:
    """The picows listener factory of the sim (see the module docstring).

    Args:
        authenticator: request signature checks.
        control_token: bearer token of /sim/control (None = open, loopback only).
        new_session: makes the listener of an accepted WebSocket.
        rest: answers a REST GET (path below the prefix, query).
        control: answers a control request (name, query).
        stats: counters (``auth_rejected``).
    """

    def __init__(
        self,
        authenticator: Authenticator,
        *,
        control_token: str | None,
        new_session: Callable[[str | None], WSListener],
        rest: HttpHandler,
        control: HttpHandler,
        portfolio: PortfolioHandler,
        stats: collections.Counter[str],
    ) -> None:
        self.auth = authenticator
        self.control_token = control_token
        self.new_session = new_session
        self.rest = rest
        self.control = control
        self.portfolio = portfolio
        self.stats = stats

    def handle_http(self, req: Request) -> Response:
        """Answer one plain HTTP request (see the module docstring)."""
        path = req.path
        if path.startswith(REST_PREFIX + "/portfolio"):
            why = self.auth.check(req.headers, req.method, req.raw_path)
            user = self.auth.user(req.headers)
            if why is None and user is None:
                why = "portfolio requests need a KALSHI-ACCESS-KEY"
            if why is not None:
                self.stats["auth_rejected"] += 1
                return Response(401, auth_error_body(why))
            assert user is not None
            self.stats["portfolio_requests"] += 1
            return Response(
                *self.portfolio(user, req.method, path[len(REST_PREFIX) :], req.query, req.body)
            )
        if path.startswith(REST_PREFIX) or path.startswith(CONTROL_PREFIX + "/"):
            if req.method != "GET":
                err = {"code": "method_not_allowed", "message": f"{req.method} {path}"}
                return Response(405, orjson.dumps({"error": err}))
            return Response(*self._get(path, req.query, req.headers))
        return Response(404, orjson.dumps({"error": {"code": "not_found", "message": path}}))

    def _get(self, path: str, q: Query, headers: Any) -> tuple[int, bytes]:
        if path.startswith(REST_PREFIX):
            why = self.auth.check(headers, "GET", path)
            if why is not None:
                self.stats["auth_rejected"] += 1
                return 401, auth_error_body(why)
            return self.rest(path[len(REST_PREFIX) :], q)
        if not control_authorised(self.control_token, headers):
            return 401, orjson.dumps({"error": "control endpoint needs 'Authorization: Bearer'"})
        return self.control(path[len(CONTROL_PREFIX) + 1 :], q)

    def route(self, request: WSUpgradeRequest) -> Any:
        """picows' listener factory: a session, a finished HTTP response, or None (404)."""
        target = request.path.decode("latin-1")
        parts = urlsplit(target)
        path = parts.path
        if path == WS_PATH:
            why = self.auth.check(request.headers, "GET", path)
            if why is not None:
                self.stats["auth_rejected"] += 1
                return WSUpgradeResponseWithListener(
                    WSUpgradeResponse.create_error_response(401, auth_error_body(why)), None
                )
            return self.new_session(self.auth.user(request.headers))
        if path.startswith(REST_PREFIX) or path.startswith(CONTROL_PREFIX + "/"):
            # a GET that also asked for an upgrade: answer it like plain HTTP
            status, payload = self._get(path, parse_qs(parts.query), request.headers)
        else:
            return None  # picows answers 404
        headers = {"Content-Type": "application/json"}
        if status == 200:
            resp = WSUpgradeResponse.create_ok_response(payload, headers)
        else:
            resp = WSUpgradeResponse.create_error_response(status, payload, headers)
        return WSUpgradeResponseWithListener(resp, None)
