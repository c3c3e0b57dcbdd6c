"""Frozen, typed settings, read once at an entry point (env vars ``KALSHI_RL_*``).

A plain module of dataclasses: each component owns one settings class with a ``from_env``
constructor; the composition root (``kalshi_rl.cli`` commands) builds it and passes it in.
Secrets never appear in a repr.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kalshi_rl.errors import ConfigError

# Production endpoints (kalshi-protocol.md §1, §3).
PROD_WS_URL = "wss://external-api-ws.kalshi.com/trade-api/ws/v2"
PROD_REST_URL = "https://external-api.kalshi.com/trade-api/v2"
DEMO_WS_URL = "wss://external-api-ws.demo.kalshi.co/trade-api/ws/v2"
DEMO_REST_URL = "https://external-api.demo.kalshi.co/trade-api/v2"

_PREFIX = "KALSHI_RL_"


def _env_value(env: Mapping[str, str], name: str, default: Any) -> Any:
    raw = env.get(_PREFIX + name.upper())
    if raw is None:
        return default
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError("expected a boolean")
            return raw.lower() in ("1", "true", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            return tuple(t.strip() for t in raw.split(",") if t.strip())
    except ValueError as exc:
        raise ConfigError(f"{_PREFIX}{name.upper()}={raw!r}: {exc}") from exc
    return raw


def _from_env(cls: Any, env: Mapping[str, str] | None, overrides: dict[str, Any]) -> Any:
    e = os.environ if env is None else env
    kw = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        kw[f.name] = _env_value(e, f.name, default)
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**kw)


@dataclass(frozen=True)
class FeedConfig:
    """The WebSocket feed (kalshi_rl.kalshi.feed).

    Attributes:
        ws_url: Kalshi WS v2 URL (or a local sim's).
        channels: channels subscribed for every market.
        stage_capacity: deltas staged before a forced flush into the book (records); the
            staging array is otherwise flushed once per event-loop iteration.
        subscribe_chunk: tickers per subscribe/update_subscription command.
        backoff_initial_s / backoff_max_s: reconnect delay starts here and doubles per
            attempt, +-50% jitter, the jittered delay capped at the max; it starts over
            after a connection that subscribed and received data.
        ping_idle_s / ping_reply_s: we ping after this long without data and drop the
            connection if no pong arrives in ``ping_reply_s`` (Kalshi pings us every 10 s;
            replies to its pings are automatic).
        handshake_timeout_s: WebSocket upgrade timeout.
        max_frame_bytes: larger frames disconnect (protects memory).
    """

    ws_url: str = PROD_WS_URL
    channels: tuple[str, ...] = ("orderbook_delta", "trade", "ticker", "market_lifecycle_v2")
    stage_capacity: int = 2048
    subscribe_chunk: int = 500
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 30.0
    ping_idle_s: float = 20.0
    ping_reply_s: float = 10.0
    handshake_timeout_s: float = 10.0
    max_frame_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        if not self.ws_url.startswith(("ws://", "wss://")):
            raise ConfigError(f"ws_url {self.ws_url!r} must start with ws:// or wss://")
        if self.stage_capacity < 1 or self.subscribe_chunk < 1:
            raise ConfigError("stage_capacity and subscribe_chunk must be >= 1")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ConfigError("need 0 < backoff_initial_s <= backoff_max_s")
        if "orderbook_delta" not in self.channels:
            raise ConfigError("channels must include orderbook_delta")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> FeedConfig:
        """KALSHI_RL_<FIELD> env vars over defaults, then non-None ``overrides``."""
        cfg: FeedConfig = _from_env(cls, env, overrides)
        return cfg


@dataclass(frozen=True)
class CollectorConfig:
    """``kalshi-rl collect``: what to record and where.

    Attributes:
        rest_url: Kalshi REST v2 base URL (markets discovery).
        tickers: markets to record; empty with ``all_markets`` = every open market.
        all_markets: discover every open non-combo market via REST.
        duration_s: stop after this many seconds (0 = until SIGINT/SIGTERM).
        database_url: PostgreSQL DSN (secret: may hold a password); None = DATABASE_URL or
            the embedded server.
        mode: feed_sessions.mode: live | demo | sim.
        ring_capacity: records per ring (power of two).
        progress_interval_s: progress line period (0 = off).
        spill_dir: where the writer spills segment files while PostgreSQL is down.
        writer_shards: parallel COPY writers for orderbook_deltas (1 is plenty for live
            Kalshi rates; more helps only when PostgreSQL ingest is the bottleneck).
        rescan_interval_s: with ``all_markets``, the REST re-scan of the market list that
            backs up the lifecycle events (kalshi_rl.kalshi.follow); <= 0 = events only.
    """

    rest_url: str = PROD_REST_URL
    tickers: tuple[str, ...] = ()
    all_markets: bool = False
    duration_s: float = 0.0
    database_url: str | None = field(default=None, repr=False)
    mode: str = "live"
    ring_capacity: int = 1 << 20
    progress_interval_s: float = 1.0
    spill_dir: str = ""
    writer_shards: int = 1
    rescan_interval_s: float = 60.0

    def __post_init__(self) -> None:
        if self.writer_shards < 1:
            raise ConfigError(f"writer_shards must be >= 1, got {self.writer_shards}")
        if self.mode not in ("live", "demo", "sim"):
            raise ConfigError(f"mode {self.mode!r} must be live, demo or sim")
        if self.ring_capacity < 1 or self.ring_capacity & (self.ring_capacity - 1):
            raise ConfigError(f"ring_capacity {self.ring_capacity} must be a power of two")
        if not self.tickers and not self.all_markets:
            raise ConfigError("give tickers or all_markets=True")

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr
        )
        db = "<redacted>" if self.database_url else None
        return f"CollectorConfig({shown}, database_url={db})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> CollectorConfig:
        """KALSHI_RL_<FIELD> env vars over defaults, then non-None ``overrides``."""
        cfg: CollectorConfig = _from_env(cls, env, overrides)
        return cfg
