"""The sim's fault-control endpoint: loopback by default, a bearer token when exposed."""

from __future__ import annotations

import httpx
import pytest

from kalshi_rl.errors import ConfigError
from kalshi_rl.sim.config import SimConfig
from kalshi_rl.sim.server import SimExchange


def test_non_loopback_host_requires_a_control_token() -> None:
    with pytest.raises(ConfigError, match="control token"):
        SimConfig(host="0.0.0.0").check()
    SimConfig(host="0.0.0.0", control_token="t0k").check()  # accepted with a token
    SimConfig(host="127.0.0.1").check()
    SimConfig(host="localhost").check()


async def test_control_endpoint_checks_the_bearer_token() -> None:
    cfg = SimConfig(n_markets=2, autostart=False, control_token="s3cret-token")
    async with SimExchange(cfg) as sim, httpx.AsyncClient() as client:
        r = await client.get(sim.control_url + "/status")
        assert r.status_code == 401
        assert "Bearer" in r.json()["error"]
        r = await client.get(sim.control_url + "/status", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        r = await client.get(
            sim.control_url + "/status", headers={"Authorization": "Bearer s3cret-token"}
        )
        assert r.status_code == 200
        assert "s3cret-token" not in repr(cfg)  # secrets stay out of reprs and logs
