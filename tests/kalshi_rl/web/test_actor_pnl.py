"""The Agent page's P&L: header and chart are one quantity, and it is the account's truth.

Rolling markets on the real sim (short-lived, determined fast), the live node following
them, the actor trading a buy-and-hold model on paper through ``ActorControl``, the app
served over loopback, PostgreSQL holding the paper logs.  Markets are listed, traded,
closed and determined while the actor runs; then the kill switch stops new positions and
every held position is left to settle.  The P&L the API serves must equal an account
rebuilt by hand from the ``paper_fills`` rows plus the payouts the markets' results give,
and the chart's last point must be the header's value in every response.  The Agent page
(ui/dist in headless Debian Chromium) shows every settlement with the payout the API reports.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "trade"))

from actor_support import flip_flop_model, recompute_from_fills, register, until

from core.dtypes import ACT_BUY_YES, ACT_HOLD
from kalshi_rl.commands.stack import live_stack
from kalshi_rl.env.config import EnvConfig
from kalshi_rl.sim import SimConfig
from kalshi_rl.sim.listings import default_series
from kalshi_rl.sim.model import ModelParams
from kalshi_rl.store import db
from kalshi_rl.trade.actor import ActorConfig
from kalshi_rl.trade.risk import RiskConfig
from kalshi_rl.web.config import WebConfig

pytestmark = pytest.mark.slow

FAST = ModelParams(determine_delay_ms=200, settle_delay_ms=300)
PAIR = 100  # money per count unit of a winning contract ($1 per contract)
ROOT = Path(__file__).resolve().parents[3]
UI_DIST = ROOT / "ui" / "dist"
CHROMIUM = os.environ.get("KALSHI_RL_CHROMIUM", "/usr/bin/chromium")


def _usd(m: int) -> str:
    """The dashboard's ``usd`` format: money units of $0.0001 as dollars, 2 decimals."""
    return f"{'-' if m < 0 else ''}${abs(m) / 10000:.2f}"


async def _check_settlements_page(url: str, settlements: list[dict[str, Any]]) -> None:
    """The Agent page's Settlements panel lists exactly the API's settlements (newest first),
    each with its result, and its payout in dollars as the API reports it."""
    from playwright.async_api import async_playwright

    want = [(s["ticker"], s["result"], _usd(s["payout"])) for s in settlements]
    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--headless", "--disable-gpu"]
        )
        try:
            page = await b.new_page(viewport={"width": 1440, "height": 900})
            await page.goto(f"{url}/#/agent")
            rows = page.locator("[data-testid=settlement-row]")
            await rows.nth(len(want) - 1).wait_for(timeout=15_000)
            got = []
            for i in range(await rows.count()):
                cells = await rows.nth(i).locator("td").all_inner_texts()
                got.append((cells[0], cells[1], cells[3]))
            assert got == want, (got, want)
            assert await page.locator("[data-testid=settlements-empty]").count() == 0
            shots = Path(os.environ.get("KALSHI_RL_ARTIFACTS", ROOT / "build" / "test-artifacts"))
            (shots / "ui").mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=shots / "ui" / "agent-settlements.png")
        finally:
            await b.close()


def _check_chart_ends_at_header(body: dict[str, Any]) -> None:
    hist = body["pnl_history"]
    assert hist, "no P&L history"
    assert hist[-1] == body["pnl"], (hist[-1], body["pnl"])
    ts = [p["ts_ms"] for p in hist]
    assert ts == sorted(ts)


async def _results(dsn: str, tickers: list[str]) -> dict[str, str | None]:
    conn = await db.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT ticker, result FROM markets WHERE ticker = ANY($1::text[])", tickers
        )
    finally:
        await conn.close()
    return {r["ticker"]: r["result"] for r in rows}


async def _count(dsn: str, table: str, account_id: int) -> int:
    conn = await db.connect(dsn)
    try:
        return int(
            await conn.fetchval(f"SELECT count(*) FROM {table} WHERE account_id=$1", account_id)
        )
    finally:
        await conn.close()


async def test_pnl_header_chart_and_truth_agree_across_listings_and_settlements(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve_app: Any
) -> None:
    monkeypatch.setenv("KALSHI_RL_DATA_DIR", str(tmp_path / "data"))
    cfg = EnvConfig()
    # flat: buy YES; holding: hold (to the market's determination)
    mv = await register(
        pg_dsn, tmp_path, "holder", flip_flop_model(cfg, ACT_BUY_YES, ACT_HOLD), cfg
    )
    scfg = SimConfig(
        series=default_series(2, lifetime_ms=4000, lead_ms=300), model=FAST, rate=2000,
        record_limit=0,
    )  # fmt: skip
    acfg = ActorConfig(risk=RiskConfig(kill_file=str(tmp_path / "trade.kill"), close_guard_s=0.5))
    assert (UI_DIST / "index.html").is_file(), "ui/dist is missing: run `make ui`"
    web = WebConfig(port=0, data_dir=tmp_path / "data", ui_dir=UI_DIST)
    async with (
        live_stack(
            pg_dsn,
            sim_config=scfg,
            actor_config=acfg,
            ring_capacity=1 << 14,
            spill_dir=str(tmp_path / "spill"),
        ) as st,  # fmt: skip
        serve_app(st.node, web, st.actor) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        r = await client.post("/rl/actor/start", json={"model_id": mv.id})
        assert r.status_code == 200, r.text
        paper = st.actor.trading.paper
        actor = st.actor.actor
        n_markets_at_start = len(actor.tickers)

        # positions held into determination are paid out; the header stays the chart's end
        loop = asyncio.get_running_loop()
        end = loop.time() + 120
        while paper.settlements_array().shape[0] < 3:
            if loop.time() > end:
                pytest.fail("no three paper settlements within 120 s")
            _check_chart_ends_at_header((await client.get("/rl/actor")).json())
            await asyncio.sleep(0.3)
        assert len(actor.tickers) > n_markets_at_start  # markets listed while trading

        # no new positions; every position left is held to its market's determination
        r = await client.post("/rl/actor/kill", json={"reason": "test: let everything settle"})
        assert r.status_code == 200, r.text
        await until(
            lambda: not paper.positions["position"].any(), "every paper position settled", 60
        )
        tickers = list(actor.tickers)
        account_id = st.actor.trading.account_id
        n_fills = paper.fills_array().shape[0]

        async def stored() -> bool:
            res = await _results(pg_dsn, tickers)
            return await _count(pg_dsn, "paper_fills", account_id) == n_fills and all(
                res.get(t) for t in traded
            )

        rec = await recompute_from_fills(pg_dsn, account_id, 0)
        traded = [t for t, p in rec.position.items() if p]
        deadline = loop.time() + 30
        while not await stored():
            if loop.time() > deadline:
                pytest.fail("fills or market results did not reach PostgreSQL")
            await asyncio.sleep(0.2)
            rec = await recompute_from_fills(pg_dsn, account_id, 0)
            traded = [t for t, p in rec.position.items() if p]
        assert rec.n_fills == n_fills and n_fills > 0
        results = await _results(pg_dsn, tickers)
        payouts = sum(
            abs(p) * PAIR
            for t, p in rec.position.items()
            if (p > 0 and results[t] == "yes") or (p < 0 and results[t] == "no")
        )
        truth = rec.cash + payouts  # start cash 0: cash flows of the fills + payouts

        body = (await client.get("/rl/actor")).json()
        _check_chart_ends_at_header(body)
        pnl = body["pnl"]
        assert pnl["total"] == truth, (pnl, rec, payouts)
        assert pnl["open_marks"] == 0  # nothing is open any more
        assert pnl["fees"] == rec.fees
        assert pnl["settlement"] + pnl["realized"] - pnl["fees"] == pnl["total"]
        assert pnl["settlement"] != 0 and len(traded) >= 3
        # the settlements go to PostgreSQL too
        want = paper.settlements_array().shape[0]
        deadline = loop.time() + 30
        while await _count(pg_dsn, "paper_settlements", account_id) != want:
            if loop.time() > deadline:
                pytest.fail("paper settlements did not reach PostgreSQL")
            await asyncio.sleep(0.2)

        # the Agent page shows those settlements, the payouts in dollars as the API has them
        settlements = (await client.get("/rl/actor")).json()["settlements"]
        assert len(settlements) == want and any(s["payout"] > 0 for s in settlements)
        assert sum(s["payout"] for s in settlements) == payouts
        await _check_settlements_page(url, settlements)
