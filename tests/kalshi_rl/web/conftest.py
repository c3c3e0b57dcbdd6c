"""A real node for the API tests: local exchange -> collector -> PostgreSQL, plus the app.

``stack`` runs the sim and the collector on the test's event loop; ``server`` serves
``create_app(stack.node)`` with uvicorn on that same loop over real loopback sockets (so
the app reads the very books the feed writes, as in production), and ``client`` is an
httpx client on it.  Litestar's AsyncTestClient is not used here: it runs the app on a
portal thread with its own event loop, where the node's pool and books do not live.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar

from kalshi_rl.commands.stack import LiveStack, live_stack
from kalshi_rl.web.app import create_app, serve
from kalshi_rl.web.config import WebConfig


async def until(pred: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
    """Wait for a condition; fail naming it on timeout."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def stack(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[LiveStack]:
    monkeypatch.setenv("KALSHI_RL_DATA_DIR", str(tmp_path / "data"))
    async with live_stack(
        pg_dsn, markets=3, rate=150.0, ring_capacity=1 << 14, spill_dir=str(tmp_path / "spill")
    ) as st:
        feed = st.node.feed
        assert feed is not None
        await until(lambda: feed.books_valid() == 3, "3 valid books")
        yield st


@pytest.fixture
def serve_app() -> Callable[..., Any]:
    """``serving(node, config, actor)``: an async context of (base URL, app)."""
    return serving


TRAIN = {
    "name": "webtest", "algorithm": "ppo", "timesteps": 2048, "seed": 3, "n_envs": 4,
    "dataset": "synthetic:6:160:1", "eval_every": 1024,
}  # fmt: skip


@pytest.fixture
def train_body() -> dict[str, Any]:
    """A small, valid training request (a few seconds of PPO on generated history)."""
    return dict(TRAIN)


async def wait_job(client: httpx.AsyncClient, job_id: int, timeout: float = 240) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        jobs = (await client.get("/rl/training/jobs")).json()
        job = next(j for j in jobs if j["job_id"] == job_id)
        if job["state"] not in ("building", "training"):
            return dict(job)
        await asyncio.sleep(0.5)
    raise AssertionError(f"training job {job_id} did not finish")


@pytest.fixture
def wait_training() -> Callable[..., Any]:
    """``await wait_training(client, job_id)``: the job once it is no longer running."""
    return wait_job


@pytest.fixture
def web_config(tmp_path: Path) -> WebConfig:
    return WebConfig(port=0, data_dir=tmp_path / "data", ui_dir=tmp_path / "no-ui")


@contextlib.asynccontextmanager
async def serving(
    node: Any, config: WebConfig, actor: Any = None
) -> AsyncIterator[tuple[str, Litestar]]:
    """(base URL, app) of ``create_app(node, config)`` served on this loop."""
    app = create_app(node, config, actor=actor)
    started = asyncio.Event()
    task = asyncio.create_task(serve(app, config, started))
    await asyncio.wait_for(started.wait(), 30)
    try:
        yield f"http://127.0.0.1:{app.state.bound_port}", app
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def server(stack: LiveStack, web_config: WebConfig) -> AsyncIterator[str]:
    """Base URL (http://127.0.0.1:PORT) of the app served over real sockets."""
    async with serving(stack.node, web_config, stack.actor) as (url, _):
        yield url


@pytest.fixture
async def client(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server, timeout=30) as c:
        yield c
