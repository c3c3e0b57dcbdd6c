"""Browser tests: the built UI (ui/dist) in headless Debian Chromium against a live node.

Chromium is Debian's (/usr/bin/chromium; ``.ci/run`` installs it with apt-get when it is
missing); Playwright only drives it (never ``playwright install``).  Screenshots go to
``$KALSHI_RL_ARTIFACTS`` (default ``build/test-artifacts``) under ``ui/``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kalshi_rl.commands.stack import LiveStack, live_stack
from kalshi_rl.web.app import create_app, serve
from kalshi_rl.web.config import WebConfig

ROOT = Path(__file__).resolve().parents[2]
UI_DIST = ROOT / "ui" / "dist"
CHROMIUM = os.environ.get("KALSHI_RL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


def artifacts_dir() -> Path:
    d = Path(os.environ.get("KALSHI_RL_ARTIFACTS", ROOT / "build" / "test-artifacts")) / "ui"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go (kept by CI as test artifacts)."""
    return artifacts_dir()


@pytest.fixture
def chromium() -> tuple[str, list[str]]:
    """(executable, args) of Debian's Chromium, with the UI built."""
    assert (UI_DIST / "index.html").is_file(), (
        "ui/dist is missing: run `cd ui && npm ci && npm run build` (make test does)"
    )
    assert Path(CHROMIUM).is_file(), f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return CHROMIUM, CHROMIUM_ARGS


@pytest.fixture
async def ui_stack(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[LiveStack, str]]:
    """A live node on the local exchange with the dashboard served from ui/dist."""
    assert (UI_DIST / "index.html").is_file(), (
        "ui/dist is missing: run `cd ui && npm ci && npm run build` (make test does)"
    )
    assert Path(CHROMIUM).is_file(), f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    monkeypatch.setenv("KALSHI_RL_DATA_DIR", str(tmp_path / "data"))
    async with live_stack(
        pg_dsn, markets=3, rate=120.0, ring_capacity=1 << 14, spill_dir=str(tmp_path / "spill")
    ) as st:
        cfg = WebConfig(port=0, data_dir=tmp_path / "data", ui_dir=UI_DIST)
        app = create_app(st.node, cfg, actor=st.actor)
        started = asyncio.Event()
        task = asyncio.create_task(serve(app, cfg, started))
        await asyncio.wait_for(started.wait(), 30)
        try:
            yield st, f"http://127.0.0.1:{app.state.bound_port}"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def browser(chromium: tuple[str, list[str]]) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=chromium[0], args=chromium[1])
        try:
            yield b
        finally:
            await b.close()
