"""Routing of the sim's one port: WebSocket upgrade, REST, control; RSA-PSS auth.

picows parses each request head and calls ``Router.route``:

* ``GET /trade-api/ws/v2`` -> a WebSocket session (auth headers checked when a public
  key is set; 401 otherwise)
* ``GET /trade-api/v2/...`` -> the REST handler (same auth)
* ``GET /sim/control/<name>`` -> the control handler (bearer token when configured)
* anything else -> 404
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

Query = dict[str, list[str]]
HttpHandler = Callable[[str, Query], tuple[int, bytes]]


class Authenticator:
    """Kalshi's request signatures, checked against one public key (None = open).

    Args:
        public_key_pem: the RSA public key of the (single) API key the sim accepts.
    """

    def __init__(self, public_key_pem: bytes | None) -> None:
        self._key = auth.load_public_key(public_key_pem) if public_key_pem is not None else None

    @property
    def enabled(self) -> bool:
        """True when requests must be signed."""
        return self._key is not None

    def check(self, headers: Any, method: str, path: str) -> str | None:
        """None when the request is authorised, else the reason."""
        if self._key is None:
            return None
        key = headers.get(auth.HDR_KEY)
        ts = headers.get(auth.HDR_TIMESTAMP)
        sig = headers.get(auth.HDR_SIGNATURE)
        if not key or not ts or not sig:
            return "missing KALSHI-ACCESS-* headers"
        if not auth.verify(self._key, ts, method, path, sig):
            return "bad signature"
        return None


def auth_error_body(why: str) -> bytes:
    """Kalshi's 401 body."""
    return orjson.dumps({"error": {"code": "authentication_error", "message": why}})


def control_authorised(token: str | None, headers: Any) -> bool:
    """True when no token is configured (loopback) or the bearer token matches."""
    if not token:
        return True
    got = str(headers.get("Authorization") or "")
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
        new_session: Callable[[], WSListener],
        rest: HttpHandler,
        control: HttpHandler,
        stats: collections.Counter[str],
    ) -> None:
        self.auth = authenticator
        self.control_token = control_token
        self.new_session = new_session
        self.rest = rest
        self.control = control
        self.stats = stats

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
            return self.new_session()
        if path.startswith(REST_PREFIX):
            why = self.auth.check(request.headers, "GET", path)
            if why is not None:
                self.stats["auth_rejected"] += 1
                status, payload = 401, auth_error_body(why)
            else:
                status, payload = self.rest(path[len(REST_PREFIX) :], parse_qs(parts.query))
        elif path.startswith(CONTROL_PREFIX + "/"):
            if not control_authorised(self.control_token, request.headers):
                status = 401
                payload = orjson.dumps({"error": "control endpoint needs 'Authorization: Bearer'"})
            else:
                status, payload = self.control(
                    path[len(CONTROL_PREFIX) + 1 :], parse_qs(parts.query)
                )
        else:
            return None  # picows answers 404
        headers = {"Content-Type": "application/json"}
        if status == 200:
            resp = WSUpgradeResponse.create_ok_response(payload, headers)
        else:
            resp = WSUpgradeResponse.create_error_response(status, payload, headers)
        return WSUpgradeResponseWithListener(resp, None)
