"""Pages before there is anything to plot: the Agent page with no actor trading shows the
P&L chart's empty state (not an empty time axis over a made-up span of years), the
Settlements panel's empty state (no rows, no restore line: nothing was restored), and no
page logs a console error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kalshi_rl.commands.stack import LiveStack

pytestmark = pytest.mark.slow


async def test_empty_pnl_chart_shows_an_empty_state(
    ui_stack: tuple[LiveStack, str], browser: Any, artifacts: Path
) -> None:
    _stack, base = ui_stack
    page = await browser.new_page(viewport={"width": 1440, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(f"{base}/#/agent")
    await page.locator("[data-testid=actor-state]", has_text="stopped").wait_for()
    empty = page.locator("[data-testid=pnl-chart-empty]")
    await empty.wait_for()
    assert "no data yet" in await empty.inner_text()
    chart = page.locator("[data-testid=pnl-chart]")
    assert await chart.get_attribute("data-empty") == "1"
    # the uPlot canvas (and its axes) is not shown while there is nothing to plot
    assert not await chart.locator(".uplot").is_visible()
    await page.locator("[data-testid=settlements-empty]", has_text="No settlements").wait_for()
    assert await page.locator("[data-testid=settlement-row]").count() == 0
    assert await page.locator("[data-testid=restore-status]").count() == 0
    await page.screenshot(path=artifacts / "agent-empty.png")
    for route in ("markets", "training", "models", "data"):
        await page.goto(f"{base}/#/{route}")
        await page.locator("h2").first.wait_for()
    assert errors == [], errors
