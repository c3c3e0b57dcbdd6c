"""The README's main job, end to end: ``kalshi-rl up`` on a fresh data dir brings up the
embedded stack, trains a first model on generated history, deploys it and trades it on
paper, all visible in the dashboard (checked in Debian Chromium); Ctrl-C (SIGINT) then
stops everything cleanly with every buffer flushed."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path

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
        assert left > 0, f"no {pattern!r} within the budget:\n" + "\n".join(out[-60:])
        try:
            raw = await asyncio.wait_for(proc.stdout.readline(), left)
        except TimeoutError:
            raise AssertionError(
                f"no {pattern!r} within the budget:\n" + "\n".join(out[-60:])
            ) from None
        assert raw, f"kalshi-rl up exited before {pattern!r}:\n" + "\n".join(out[-60:])
        line = f"{time.monotonic() - T0[0]:6.1f}s {raw.decode(errors='replace').rstrip()}"
        out.append(line)
        if m := rx.search(line):
            return m


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
        "--markets", "4", "--rate", "200", "--timesteps", "4096", "--name", "smoke",
        "--database-url", pg_dsn,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    out: list[str] = []
    try:
        url = (await _read_until(proc, r"\[up\] dashboard: (http://\S+)/", out, deadline))[1]
        await _read_until(proc, r"\[up\] deployed smoke v1 .* trades it on paper", out, deadline)

        from playwright.async_api import async_playwright

        async with async_playwright() as p:
            b = await p.chromium.launch(executable_path=executable, args=args)
            page = await b.new_page(viewport={"width": 1440, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"{url}/#/agent")
            await page.locator("[data-testid=actor-state]", has_text="running").wait_for()
            assert "smoke v1" in await page.locator("[data-testid=actor-model]").inner_text()
            await page.locator("[data-testid=action-row]").first.wait_for(timeout=60_000)
            await page.locator("[data-testid=status-actor]", has_text="running").wait_for()
            await page.screenshot(path=artifacts / "up-agent.png")
            await b.close()
            assert errors == []
        took = time.monotonic() - t0
        assert took < BUDGET_S
        (artifacts / "up-log.txt").write_text(
            "\n".join(out) + f"\ntrading visible after {took:.0f} s\n"
        )

        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(proc.communicate(), 120)
        out += rest.decode(errors="replace").splitlines()
        assert proc.returncode == 0, "\n".join(out[-60:])
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = "\n".join(out)
    assert "[up] stopping: web, training, actor, then flushing every buffer" in text
    assert "books valid at stop 4/4" in text, text[-3000:]

    conn = await db.connect(pg_dsn)
    try:
        session = await conn.fetchrow("SELECT * FROM feed_sessions ORDER BY id DESC LIMIT 1")
        assert session["ended_at"] is not None and session["mode"] == "sim"
        n_deltas = await conn.fetchval(
            "SELECT count(*) FROM orderbook_deltas WHERE session_id = $1", session["id"]
        )
        assert n_deltas > 100 and n_deltas == session["n_deltas"]  # every delta flushed
        model = await conn.fetchrow("SELECT * FROM models WHERE name = 'smoke'")
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
