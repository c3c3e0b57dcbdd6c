"""Feed/collector settings: env parsing, validation, secret redaction."""

from __future__ import annotations

import pytest

from kalshi_rl.config import PROD_WS_URL, CollectorConfig, FeedConfig
from kalshi_rl.errors import ConfigError


def test_feed_config_from_env_and_overrides() -> None:
    env = {
        "KALSHI_RL_STAGE_CAPACITY": "512",
        "KALSHI_RL_CHANNELS": "orderbook_delta, trade",
        "KALSHI_RL_BACKOFF_MAX_S": "2.5",
    }
    cfg = FeedConfig.from_env(env, ws_url="ws://127.0.0.1:1/trade-api/ws/v2")
    assert cfg.stage_capacity == 512
    assert cfg.channels == ("orderbook_delta", "trade")
    assert cfg.backoff_max_s == 2.5
    assert cfg.ws_url.startswith("ws://127.0.0.1")
    assert FeedConfig.from_env({}).ws_url == PROD_WS_URL


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"KALSHI_RL_STAGE_CAPACITY": "many"}, "STAGE_CAPACITY"),
        ({"KALSHI_RL_WS_URL": "http://x"}, "ws://"),
        ({"KALSHI_RL_CHANNELS": "trade"}, "orderbook_delta"),
        ({"KALSHI_RL_BACKOFF_INITIAL_S": "0"}, "backoff"),
    ],
)
def test_feed_config_rejects(env: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        FeedConfig.from_env(env)


def test_collector_config_redacts_dsn_and_validates() -> None:
    cfg = CollectorConfig.from_env(
        {"KALSHI_RL_ALL_MARKETS": "true", "KALSHI_RL_WRITER_SHARDS": "2"},
        database_url="postgresql://u:hunter2@db/x",
    )
    assert cfg.all_markets and cfg.writer_shards == 2
    assert "hunter2" not in repr(cfg) and "redacted" in repr(cfg)
    assert cfg.database_url == "postgresql://u:hunter2@db/x"
    with pytest.raises(ConfigError, match="tickers or all_markets"):
        CollectorConfig()
    with pytest.raises(ConfigError, match="power of two"):
        CollectorConfig(tickers=("A",), ring_capacity=1000)
    with pytest.raises(ConfigError, match="mode"):
        CollectorConfig(tickers=("A",), mode="paper")
    with pytest.raises(ConfigError, match="boolean"):
        CollectorConfig.from_env({"KALSHI_RL_ALL_MARKETS": "maybe"})
