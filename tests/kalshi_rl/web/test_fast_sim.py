"""The sim at full speed (``--rate 0``) in the dashboard's process: the dashboard stays
responsive.  The sim generates in bounded batches and yields between them, so the event
loop the node, the feed and the web server share keeps turning: WebSocket handshakes and
HTTP requests are answered while the sim runs flat out and the feed keeps up."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from kalshi_rl.commands.stack import live_stack
from kalshi_rl.sim.config import SimConfig
from kalshi_rl.sim.listings import default_series
from kalshi_rl.web.config import WebConfig

pytestmark = pytest.mark.slow


async def _deadline(coro: Any, what: str, timeout: float) -> Any:
    try:
        return await asyncio.wait_for(coro, timeout)
    except TimeoutError:
        pytest.fail(f"{what} did not complete in {timeout} s while the sim ran flat out")


async def test_dashboard_answers_while_the_sim_runs_flat_out(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve_app: Any
) -> None:
    monkeypatch.setenv("KALSHI_RL_DATA_DIR", str(tmp_path / "data"))
    # rolling markets of 10 sim minutes: the listings keep the follower and the feed busy
    # (lifecycle events, subscriptions) beside the book stream, as in ``up --rate 0``
    scfg = SimConfig(series=default_series(4, lifetime_ms=600_000), rate=0, record_limit=0)
    async with live_stack(
        pg_dsn, sim_config=scfg, ring_capacity=1 << 16, spill_dir=str(tmp_path / "spill")
    ) as st:
        web_cfg = WebConfig(port=0, data_dir=tmp_path / "data", ui_dir=tmp_path / "no-ui")
        async with serve_app(st.node, web_cfg, st.actor) as (url, _):
            feed = st.node.feed
            loop = asyncio.get_running_loop()
            end = loop.time() + 30
            while feed.stats.deltas < 20_000:  # the sim is running flat out
                if loop.time() > end:
                    pytest.fail(f"the fast sim sent too little: {feed.stats.as_dict()}")
                await asyncio.sleep(0.05)
            ws_url = url.replace("http", "ws")
            async with httpx.AsyncClient(base_url=url, timeout=30) as c:
                for i in range(5):
                    ws = await _deadline(
                        websockets.connect(ws_url + "/rl/ws/status", open_timeout=None),
                        f"WebSocket handshake {i}",
                        5.0,
                    )
                    msg = await _deadline(ws.recv(), f"first status message {i}", 5.0)
                    assert "feed" in str(msg)
                    await ws.close()
                    r = await _deadline(c.get("/rl/status"), f"GET /rl/status {i}", 5.0)
                    assert r.status_code == 200
            before = feed.stats.deltas
            await asyncio.sleep(0.5)
            assert feed.stats.deltas > before  # and the sim kept generating meanwhile
            assert feed.stats.gaps == 0, feed.stats.as_dict()
