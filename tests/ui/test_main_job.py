"""The README's main job, end to end: ``kalshi-rl up`` on a fresh data dir brings up the
embedded stack and the local exchange's rolling markets (its default), trains a first model
on generated rolling history, deploys it and trades it on paper -- also on markets listed
after the actor started -- all visible in the dashboard (checked in Debian Chromium);
Ctrl-C (SIGINT) then stops everything cleanly with every buffer flushed."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kalshi_rl.store import db

pytestmark = pytest.mark.slow

BUDGET_S = 300  # the floor: up -> a deployed model trading on paper in < 5 min
T0 = [0.0]


async def _read_until(proc: asyncio.subprocess.Process, pattern: str, out: list[str],
                      deadline: float) -> re.Match[str]:  # fmt: skip
    assert proc.stdout is not None
    rx = re.compile(pattern)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no {pattern!r} within the budget:\n" + "\n".join(out[-60:]))
        try:
            raw = await asyncio.wait_for(proc.stdout.readline(), left)
        except TimeoutError:
            pytest.fail(f"no {pattern!r} within the budget:\n" + "\n".join(out[-60:]))
        assert raw, f"kalshi-rl up exited before {pattern!r}:\n" + "\n".join(out[-60:])
        line = f"{time.monotonic() - T0[0]:6.1f}s {raw.decode(errors='replace').rstrip()}"
        out.append(line)
        if m := rx.search(line):
            return m


async def _drain(proc: asyncio.subprocess.Process, out: list[str]) -> None:
    """Read the process's output to its end."""
    assert proc.stdout is not None
    async for raw in proc.stdout:
        out.append(f"{time.monotonic() - T0[0]:6.1f}s {raw.decode(errors='replace').rstrip()}")


async def _get_json(url: str) -> Any:
    import httpx

    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.get(url)
        r.raise_for_status()
        return r.json()


async def _wait_for_order_row(page: Any, before: set[str], deadline: float, out: list[str]) -> str:
    """The ticker of an action row that sent an order on a market not in ``before``."""
    while time.monotonic() < deadline:
        rows = await page.eval_on_selector_all(
            "[data-testid=action-row]",
            "rows => rows.map(r => [r.cells[1].innerText, r.cells[8].innerText])",
        )
        for ticker, status in rows:
            if ticker not in before and status.startswith(("sent", "filled")):
                return str(ticker)
        await asyncio.sleep(0.5)
    pytest.fail(
        f"no order on a market listed after the actor started (known: {sorted(before)}):\n"
        + "\n".join(out[-60:])
    )


async def test_up_trains_deploys_trades_and_stops_cleanly(
    pg_dsn: str, tmp_path: Path, chromium: tuple[str, list[str]], artifacts: Path
) -> None:
    executable, args = chromium
    env = dict(os.environ, KALSHI_RL_DATA_DIR=str(tmp_path / "data"))
    for k in ("DATABASE_URL", "KALSHI_API_KEY_ID", "KALSHI_PRIVATE_KEY", "KALSHI_PRIVATE_KEY_PATH"):
        env.pop(k, None)
    t0 = T0[0] = time.monotonic()
    deadline = t0 + BUDGET_S
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kalshi_rl.cli", "up", "--port", "0", "--web-port", "0",
        # the defaults (4 rolling series, the first run's data and steps) but a shorter
        # market life: a new market is listed every 7.5 s instead of every 45 s, so the
        # actor meets many markets listed after it started within the budget
        "--market-life", "30000", "--rate", "200", "--name", "smoke",
        "--database-url", pg_dsn,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    out: list[str] = []
    try:
        url = (await _read_until(proc, r"\[up\] dashboard: (http://\S+)/", out, deadline))[1]
        # v1, or a later version when v1 learned to hold (``up`` then trains again)
        deployed = await _read_until(
            proc, r"\[up\] deployed smoke v(\d+) .* trades it on paper", out, deadline
        )
        version = int(deployed[1])
        # every market the node has seen by now (the actor started just before that line)
        before = {m["ticker"] for m in await _get_json(f"{url}/rl/markets")}
        # keep reading its output: a full pipe would block the process
        drain = asyncio.create_task(_drain(proc, out))

        from playwright.async_api import async_playwright

        async with async_playwright() as p:
            b = await p.chromium.launch(executable_path=executable, args=args)
            page = await b.new_page(viewport={"width": 1440, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"{url}/#/agent")
            await page.locator("[data-testid=actor-state]", has_text="running").wait_for()
            model = await page.locator("[data-testid=actor-model]").inner_text()
            assert f"smoke v{version}" in model, model
            await page.locator("[data-testid=status-actor]", has_text="running").wait_for()
            # an order on a market listed after the actor started, in the action feed
            later = await _wait_for_order_row(page, before, deadline, out)
            await page.screenshot(path=artifacts / "up-agent.png")
            await b.close()
            assert errors == [], errors
        took = time.monotonic() - t0
        (artifacts / "up-log.txt").write_text(
            "\n".join(out) + f"\ntrading on {later} (listed after the actor started)"
            f" visible after {took:.0f} s\n"
        )

        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(drain, 120)
        assert await proc.wait() == 0, "\n".join(out[-60:])
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = "\n".join(out)
    assert "[up] stopping: web, training, actor, then flushing every buffer" in text
    stop = re.search(r"books valid at stop (\d+)/(\d+)", text)
    assert stop is not None and 1 <= int(stop[1]) <= int(stop[2]), text[-3000:]

    conn = await db.connect(pg_dsn)
    try:
        session = await conn.fetchrow("SELECT * FROM feed_sessions ORDER BY id DESC LIMIT 1")
        assert session["ended_at"] is not None and session["mode"] == "sim"
        n_deltas = await conn.fetchval(
            "SELECT count(*) FROM orderbook_deltas WHERE session_id = $1", session["id"]
        )
        assert n_deltas > 100 and n_deltas == session["n_deltas"]  # every delta flushed
        model = await conn.fetchrow(
            "SELECT * FROM models WHERE name = 'smoke' AND version = $1", version
        )
        assert model["status"] == "deployed" and Path(model["checkpoint_path"]).exists()
        ep = await conn.fetchrow("SELECT * FROM trading_episodes WHERE model_id = $1", model["id"])
        assert ep["mode"] == "paper" and ep["ended_at"] is not None  # closed on shutdown
        n_actions = await conn.fetchval(
            "SELECT count(*) FROM trading_actions WHERE episode_id = $1", ep["id"]
        )
        assert n_actions > 0 and n_actions == ep["n_actions"]  # every decision flushed
    finally:
        await conn.close()
    key = tmp_path / "data" / "sim-key.pem"
    assert key.stat().st_mode & 0o077 == 0
