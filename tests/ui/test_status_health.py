"""The status bar in normal running of rolling markets says "ok"; a broken book says why.

Rolling series of short-lived markets on the real sim: markets are listed before they open,
close, are determined and dropped by the feed while the node runs.  None of those books is
"invalid" -- they are waiting (not open yet, first book not here) or closed -- so a healthy
node shows ``ok`` in the API and in the browser.  A book of an open, followed market that
had its snapshot and is then invalidated (the state a sequence gap leaves until the resync
snapshot) makes the node ``degraded``, with the market named in the reason.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kalshi_rl.commands.stack import LiveStack, live_stack
from kalshi_rl.sim import SimConfig
from kalshi_rl.sim.listings import default_series
from kalshi_rl.sim.model import ModelParams
from kalshi_rl.web.app import create_app, serve
from kalshi_rl.web.config import WebConfig

pytestmark = pytest.mark.slow

UI_DIST = Path(__file__).resolve().parents[2] / "ui" / "dist"


@pytest.fixture
async def rolling_stack(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[LiveStack, str]]:
    monkeypatch.setenv("KALSHI_RL_DATA_DIR", str(tmp_path / "data"))
    scfg = SimConfig(
        series=default_series(2, lifetime_ms=9000, lead_ms=3000),
        model=ModelParams(determine_delay_ms=200, settle_delay_ms=300),
        rate=400, record_limit=0,
    )  # fmt: skip
    async with live_stack(
        pg_dsn, sim_config=scfg, ring_capacity=1 << 14, spill_dir=str(tmp_path / "spill")
    ) as st:
        cfg = WebConfig(
            port=0, data_dir=tmp_path / "data", ui_dir=UI_DIST, info_refresh_s=0.5
        )  # fmt: skip
        app = create_app(st.node, cfg, actor=st.actor)
        started = asyncio.Event()
        task = asyncio.create_task(serve(app, cfg, started))
        await asyncio.wait_for(started.wait(), 30)
        try:
            yield st, f"http://127.0.0.1:{app.state.bound_port}"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _status_until(client: httpx.AsyncClient, pred: Any, what: str, timeout: float) -> dict:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        st = (await client.get("/rl/status")).json()
        if pred(st):
            return dict(st)
        if loop.time() > end:
            pytest.fail(f"timed out waiting for: {what} (last status {st})")
        await asyncio.sleep(0.2)


async def test_status_ok_through_listings_and_closes_degraded_on_a_broken_book(
    rolling_stack: tuple[LiveStack, str], browser: Any, artifacts: Path
) -> None:
    st, base = rolling_stack
    node = st.node
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        # markets listed, opened, closed and dropped by the feed: their books are not valid
        first = await _status_until(
            client,
            lambda s: s["books_closed"] >= 2 and s["books_total"] > s["books_valid"],
            "two markets closed and dropped while the node runs",
            90,
        )
        assert first["books_invalid"] == 0, first
        assert first["health"] == "ok", first
        # ... and for a while of normal running (new listings, closes) it stays ok
        for _ in range(15):
            s = (await client.get("/rl/status")).json()
            assert s["health"] == "ok" and s["books_invalid"] == 0, s
            assert s["books_valid"] + s["books_waiting"] + s["books_closed"] == s["books_total"]
            await asyncio.sleep(0.2)

        # the markets that ended have an end-of-recording row, which is not a gap
        sid = node.session_id
        cov = (await client.get(f"/rl/sessions/{sid}")).json()["markets"]
        ended = [m for m in cov if m["ticker"] not in node.feed.tickers and m["snapshots"]]
        assert len(ended) >= 2, cov
        assert all(m["gaps"] == 0 and m["time_invalid_s"] == 0 for m in ended), ended

        page = await browser.new_page(viewport={"width": 1440, "height": 900})
        await page.goto(f"{base}/#/markets")
        bar = page.locator("[data-testid=status-bar]")
        await bar.locator(".pill.ok", has_text="ok").wait_for(timeout=15_000)
        assert await page.locator("[data-testid=status-books-invalid]").count() == 0
        # the feed's p99 is a histogram bucket's bound, shown as one in readable units
        feed_text = await page.locator("[data-testid=status-feed]").inner_text()
        assert re.search(r"p99 ≤\d+ (µs|ms)", feed_text), feed_text
        await page.screenshot(path=artifacts / "status-ok-rolling.png")

        # an open, followed market whose book had its snapshot and is then invalidated
        # (what a sequence gap leaves until the resync snapshot) is invalid: degraded
        followed = node.feed.tickers
        markets = (await client.get("/rl/markets")).json()
        target = next(
            (
                m["ticker"]
                for m in markets
                if m["valid"] and m["ticker"] in followed and (m["seconds_to_close"] or 0) > 5
            ),
            None,
        )
        if target is None:
            pytest.fail("no open market with more than 5 s to its close")
        node.books.invalidate(node.books.slots[target])
        bad = await _status_until(
            client, lambda s: s["health"] == "degraded", "degraded after the invalidation", 5
        )
        assert bad["books_invalid"] == 1, bad
        assert any(target in r and "invalid" in r for r in bad["reasons"]), bad["reasons"]
        await bar.locator(".pill.degraded", has_text="degraded").wait_for(timeout=10_000)
        invalid = page.locator("[data-testid=status-books-invalid]")
        await invalid.wait_for(timeout=10_000)
        assert "1 invalid" in await invalid.inner_text()
        await page.screenshot(path=artifacts / "status-degraded-book.png")
