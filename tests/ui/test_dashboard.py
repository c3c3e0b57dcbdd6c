"""The dashboard in a real browser, with the sim feeding and the actor trading: a book on
the page changes, actions appear (with an expandable observation), a training run started
from the form shows progress, deploying its model from the Models page switches the actor,
and the kill switch halts it.  No console errors.  Screenshots are kept as artifacts."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from kalshi_rl.commands.stack import LiveStack

pytestmark = pytest.mark.slow

FIRST = {
    "name": "ui-first", "algorithm": "ppo", "timesteps": 1024, "seed": 1, "n_envs": 4,
    "dataset": "synthetic:6:160:1", "eval_every": 512,
}  # fmt: skip


async def _train_via_api(c: httpx.AsyncClient) -> int:
    job = (await c.post("/rl/training", json=FIRST)).json()
    loop = asyncio.get_running_loop()
    end = loop.time() + 240
    while loop.time() < end:
        jobs = {j["job_id"]: j for j in (await c.get("/rl/training/jobs")).json()}
        state = jobs[job["job_id"]]["state"]
        if state not in ("building", "training"):
            assert state == "finished", jobs[job["job_id"]]["log_tail"]
            break
        await asyncio.sleep(0.5)
    models = (await c.get("/rl/models", params={"name": "ui-first"})).json()
    return int(models[-1]["id"])


async def _int_text(page: Any, sel: str) -> int:
    return int(re.sub(r"[^0-9]", "", await page.locator(sel).inner_text()) or 0)


async def test_dashboard_end_to_end(
    ui_stack: tuple[LiveStack, str], browser: Any, artifacts: Path
) -> None:
    stack, base = ui_stack
    shots = artifacts
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        first_id = await _train_via_api(c)
        r = await c.post("/rl/actor/start", json={"model_id": first_id})
        assert r.status_code == 200, r.text

    page = await browser.new_page(viewport={"width": 1440, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    # Markets: the list, then one market whose book changes on the page
    await page.goto(f"{base}/#/markets")
    await page.locator("[data-testid=market-row]").first.wait_for()
    assert await page.locator("[data-testid=market-row]").count() == 3
    await page.screenshot(path=shots / "markets.png")
    await page.locator("[data-testid=market-row]").first.click()
    await page.locator("[data-testid=ladder-yes] tbody tr").first.wait_for()
    u0 = await _int_text(page, "[data-testid=book-updates]")
    await page.wait_for_function(
        "u0 => Number(document.querySelector('[data-testid=book-updates]').innerText) > u0",
        arg=u0, timeout=20_000,
    )  # fmt: skip
    await page.wait_for_timeout(1500)  # a few points on the mid chart
    await page.screenshot(path=shots / "market.png")

    # Agent: running, actions stream in, a row expands into its named observation
    await page.goto(f"{base}/#/agent")
    await page.locator("[data-testid=actor-state]", has_text="running").wait_for()
    assert "ui-first v1" in await page.locator("[data-testid=actor-model]").inner_text()
    await page.locator("[data-testid=action-row]").nth(2).wait_for(timeout=30_000)
    await page.locator("[data-testid=action-row]").first.click()
    obs = page.locator("[data-testid=observation]")
    await obs.wait_for()
    assert "spread" in await obs.inner_text()  # feature names, not bare indices
    await page.screenshot(path=shots / "agent.png")

    # Training: start a run from the form; its progress shows up, then it finishes
    await page.goto(f"{base}/#/training")
    await page.fill("[data-testid=train-name]", "ui-trained")
    await page.fill("[data-testid=train-timesteps]", "2048")
    await page.fill("[data-testid=train-dataset]", "synthetic:6:160:2")
    await page.click("[data-testid=train-start]")
    await page.locator("[data-testid=train-msg]", has_text="started").wait_for()
    row = page.locator("[data-testid=run-row]", has_text="ui-trained")
    await row.wait_for(timeout=60_000)
    await row.locator(".pill", has_text="finished").wait_for(timeout=180_000)
    assert "2048/2048" in await row.locator("[data-testid=run-progress]").inner_text()
    await row.click()
    # (a chart with no points yet shows its empty state instead of a canvas)
    await page.locator("[data-testid=train-curves] .uplot:visible").first.wait_for()
    await page.screenshot(path=shots / "training.png")

    # Models: deploy the new model from the page -> the actor switches to it
    await page.goto(f"{base}/#/models")
    mrow = page.locator("[data-testid=model-row]", has_text="ui-trained")
    await mrow.wait_for()
    await mrow.locator("button", has_text="deploy").click()
    await page.locator("[data-testid=models-msg]", has_text="deploy").wait_for()
    await mrow.locator(".pill", has_text="deployed").wait_for()
    await page.screenshot(path=shots / "models.png")
    await page.goto(f"{base}/#/agent")
    await page.locator("[data-testid=actor-model]", has_text="ui-trained v1").wait_for()
    assert stack.actor.actor.model.name == "ui-trained"

    # the kill switch halts it, visibly and in the actor itself
    await page.click("[data-testid=kill-switch]")
    await page.locator("[data-testid=actor-state]", has_text="halted").wait_for()
    await page.locator("[data-testid=status-actor]", has_text="halted").wait_for()
    assert stack.actor.state == "halted"
    await page.screenshot(path=shots / "agent-halted.png")

    await page.goto(f"{base}/#/data")
    await page.locator("[data-testid=session-row]").first.wait_for()
    await page.locator("[data-testid=session-detail]").wait_for()
    await page.screenshot(path=shots / "data.png")
    assert errors == [], errors
