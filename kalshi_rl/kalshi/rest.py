"""A minimal async Kalshi REST v2 client: market discovery and exchange status.

Every request is signed (kalshi_rl.kalshi.auth) when credentials are given; the signed
path is the URL path from the host root without the query.  The caller owns the client's
life (``async with KalshiRest(...) as rest``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

import httpx

from kalshi_rl.errors import AuthError, ServerError
from kalshi_rl.kalshi.auth import Credentials

log = logging.getLogger(__name__)


class ExchangeStatus(NamedTuple):
    """``GET /exchange/status``."""

    exchange_active: bool
    trading_active: bool


class KalshiRest:
    """Signed GETs against ``base_url`` (e.g. ``https://external-api.kalshi.com/trade-api/v2``).

    Args:
        base_url: REST v2 base URL.
        credentials: signs each request; None for a local sim without auth.
        timeout_s: per-request timeout.
        max_retries: retries on 429/5xx/transport errors (exponential backoff).
    """

    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None = None,
        *,
        timeout_s: float = 10.0,
        max_retries: int = 3,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._base_path = urlsplit(self.base_url).path
        self.credentials = credentials
        self.max_retries = max_retries
        self._client = httpx.AsyncClient(timeout=timeout_s)

    async def __aenter__(self) -> KalshiRest:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.aclose()

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """Signed GET of ``base_url + path``; returns the decoded JSON body.

        Raises:
            AuthError: 401/403.
            ServerError: other non-2xx answers after retries.
        """
        url = self.base_url + path
        delay = 0.5
        for attempt in range(self.max_retries + 1):
            headers = (
                self.credentials.headers("GET", self._base_path + path)
                if self.credentials is not None
                else None
            )
            try:
                resp = await self._client.get(url, params=params, headers=headers)
            except httpx.TransportError as exc:
                if attempt == self.max_retries:
                    raise ServerError(f"GET {url} failed: {exc}") from exc
                log.warning("GET %s failed (%s); retrying", url, exc)
            else:
                if resp.status_code in (401, 403):
                    raise AuthError(f"GET {url}: {resp.status_code} {resp.text[:200]}")
                if resp.status_code < 300:
                    return resp.json()
                retryable = resp.status_code == 429 or resp.status_code >= 500
                if not retryable or attempt == self.max_retries:
                    raise ServerError(f"GET {url}: {resp.status_code} {resp.text[:200]}")
                log.warning("GET %s: %d; retrying", url, resp.status_code)
            await asyncio.sleep(delay)
            delay *= 2
        raise ServerError(f"GET {url}: retries exhausted")  # pragma: no cover - loop returns

    async def iter_markets(
        self, *, status: str | None = "open", limit: int = 1000, **filters: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Every market matching the filters, following ``cursor`` pages.

        Combo/MVE markets are excluded (``mve_filter=exclude``) unless a filter overrides it;
        ``status=None`` sends no status filter.
        """
        params: dict[str, Any] = {"limit": limit, "mve_filter": "exclude"}
        if status is not None:
            params["status"] = status
        params.update(filters)
        while True:
            body = await self.get("/markets", params)
            for m in body.get("markets") or ():
                yield m
            cursor = body.get("cursor")
            if not cursor:
                return
            params["cursor"] = cursor

    async def open_tickers(self, **filters: Any) -> list[str]:
        """Tickers of every open non-combo market."""
        return [m["ticker"] async for m in self.iter_markets(**filters)]

    async def markets_by_ticker(self, tickers: list[str], chunk: int = 100) -> list[dict[str, Any]]:
        """Market objects of ``tickers`` (any status), ``chunk`` tickers per request."""
        out: list[dict[str, Any]] = []
        for i in range(0, len(tickers), chunk):
            part = ",".join(tickers[i : i + chunk])
            out += [m async for m in self.iter_markets(status=None, tickers=part)]
        return out

    async def market(self, ticker: str) -> dict[str, Any]:
        """``GET /markets/{ticker}`` -> the market object."""
        body = await self.get(f"/markets/{quote(ticker, safe='')}")
        m: dict[str, Any] = body["market"]
        return m

    async def exchange_status(self) -> ExchangeStatus:
        """``GET /exchange/status``."""
        body = await self.get("/exchange/status")
        return ExchangeStatus(bool(body["exchange_active"]), bool(body["trading_active"]))
