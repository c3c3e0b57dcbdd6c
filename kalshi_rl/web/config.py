"""Settings of the web app (env vars ``KALSHI_RL_WEB_*``), frozen, read once."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kalshi_rl.errors import ConfigError

_UI_DIST = Path(__file__).resolve().parents[2] / "ui" / "dist"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class WebConfig:
    """How the dashboard binds and streams.

    Attributes:
        host: bind address; anything but loopback requires ``token`` for control routes.
        port: TCP port (0: any free one).
        token: bearer token for POST/PUT/DELETE when exposed (never in repr or logs).
        ui_dir: the built UI (``ui/dist``); not served if missing.
        ws_tick_s: orderbook hub tick.
        ws_default_interval_s: a client's book-frame interval unless it asks otherwise.
        status_interval_s: /rl/ws/status period.
        info_refresh_s: market metadata / last-trade refresh period.
        data_dir: where training jobs write datasets built from sessions.
        ws_ping_s: WebSocket ping interval and pong timeout (a peer that stops answering
            is closed after about twice this).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = field(default=None, repr=False)
    ui_dir: Path = _UI_DIST
    ws_tick_s: float = 0.02
    ws_default_interval_s: float = 0.25
    status_interval_s: float = 1.0
    info_refresh_s: float = 2.0
    data_dir: Path | None = None
    ws_ping_s: float = 20.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"web port {self.port} out of range 0..65535")
        if self.token is not None and len(self.token) < 16:
            raise ConfigError("the web token must be at least 16 characters")

    @property
    def exposed(self) -> bool:
        """Bound to something other than loopback: control routes need the token."""
        return not is_loopback(self.host)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> WebConfig:
        """Read ``KALSHI_RL_WEB_HOST/PORT/TOKEN`` then apply non-None overrides."""
        e = os.environ if env is None else env
        kw: dict[str, object] = {}
        if "KALSHI_RL_WEB_HOST" in e:
            kw["host"] = e["KALSHI_RL_WEB_HOST"]
        if "KALSHI_RL_WEB_PORT" in e:
            try:
                kw["port"] = int(e["KALSHI_RL_WEB_PORT"])
            except ValueError as exc:
                raise ConfigError(f"KALSHI_RL_WEB_PORT: {exc}") from exc
        if e.get("KALSHI_RL_WEB_TOKEN"):
            kw["token"] = e["KALSHI_RL_WEB_TOKEN"]
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)  # type: ignore[arg-type]
