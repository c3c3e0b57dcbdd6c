"""A position in a market determined while the trader was down is settled on restart.

The real sim lists short-lived markets over loopback WebSockets; the actor trades them on a
paper account in a real PostgreSQL; the trader stops holding a position; the market closes
and is determined while nothing listens (no lifecycle event will ever reach the account);
the trader restarts, restores the account, looks the market up over REST
(``GET /markets/{ticker}``) and settles it.  Cash is checked against an independent
recomputation from the paper_fills rows plus the sim's results, and on the dashboard's
``/rl/actor`` (served over loopback on the restarted node), whose restore counters the
Agent page (ui/dist in headless Debian Chromium) shows in its restore line.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from actor_support import flip_flop_model, recompute_from_fills, register, until

from core.dtypes import MS_DETERMINED, MS_SETTLED, RESULT_YES
from kalshi_rl.config import CollectorConfig, FeedConfig
from kalshi_rl.env.config import EnvConfig
from kalshi_rl.live.node import LiveNode
from kalshi_rl.sim import SimConfig, SimExchange
from kalshi_rl.sim.listings import default_series
from kalshi_rl.sim.model import ModelParams
from kalshi_rl.store import db
from kalshi_rl.trade.actor import ActorConfig
from kalshi_rl.trade.risk import RiskConfig
from kalshi_rl.trade.wiring import PaperSettler, RestoreSettler, attach_trading
from kalshi_rl.web.actor import ActorControl
from kalshi_rl.web.app import create_app, serve
from kalshi_rl.web.config import WebConfig

pytestmark = pytest.mark.slow

FAST = ModelParams(determine_delay_ms=200, settle_delay_ms=300)
UI_DIST = Path(__file__).resolve().parents[3] / "ui" / "dist"
CHROMIUM = os.environ.get("KALSHI_RL_CHROMIUM", "/usr/bin/chromium")


def _result(sim: SimExchange, ticker: str) -> str | None:
    """'yes'/'no' once the sim has determined ``ticker`` (live slot or retired), else None."""
    states = [sim.model.state(m) for m in range(len(sim.tickers))]
    states += list(sim.model.retired.values())
    for st in states:
        if st is not None and st.spec.ticker == ticker and st.status in (MS_DETERMINED, MS_SETTLED):
            return "yes" if st.result == RESULT_YES else "no"
    return None


def _node(sim: SimExchange, dsn: str, tmp: Path) -> LiveNode:
    ccfg = CollectorConfig(
        rest_url=sim.rest_url, all_markets=True, database_url=dsn, mode="sim",
        ring_capacity=1 << 14, progress_interval_s=0.0, spill_dir=str(tmp / "spill"),
        rescan_interval_s=0.5,
    )  # fmt: skip
    return LiveNode(ccfg, FeedConfig(ws_url=sim.ws_url))


async def test_a_position_determined_while_down_is_settled_on_restart(
    pg_dsn: str, tmp_path: Path
) -> None:
    cfg = EnvConfig()
    await register(pg_dsn, tmp_path, "roll", flip_flop_model(cfg), cfg)
    series = default_series(2, lifetime_ms=4000, lead_ms=300)
    scfg = SimConfig(series=series, model=FAST, rate=2000, record_limit=0)
    acfg = ActorConfig(risk=RiskConfig(kill_file=str(tmp_path / "trade.kill"), close_guard_s=0.5))
    async with SimExchange(scfg) as sim:
        held: dict[str, int] = {}
        async with _node(sim, pg_dsn, tmp_path) as nd:
            tr = await attach_trading(nd, "roll", acfg, account="down")
            assert tr.restored is None  # a new account restores nothing

            def holds_open() -> bool:
                for t in tr.actor.tickers:
                    p = tr.actor.position(t)
                    if p and _result(sim, t) is None:
                        held[t] = p
                return bool(held)

            await until(holds_open, "a position in a market not determined yet", 120)
            # the kill switch freezes the account now (cancels resting orders, no more
            # decisions, and it holds through the restart: run 2 only restores and settles)
            tr.actor.kill("test: going down")
        # the trader is down: every market it held is determined meanwhile
        account_id, start = tr.account_id, tr.paper.config.start_cash
        positions = {t: tr.actor.position(t) for t in tr.actor.tickers}
        down = {t: p for t, p in positions.items() if p}  # live-settled markets hold 0
        assert set(held) <= set(down)
        await _failed_lookups_are_counted_and_retried(tr.paper, set(down))
        await until(lambda: all(_result(sim, t) for t in down), "the held markets determined", 60)
        results = {t: _result(sim, t) for t in down}

        async with _node(sim, pg_dsn, tmp_path) as nd2:
            tr2 = await attach_trading(nd2, "roll", acfg, account="down")
            rs = tr2.restored
            assert rs is not None and rs.stats["held"] >= len(down)
            await until(lambda: all(t not in rs.pending for t in down), "restored settled", 30)
            assert rs.stats["settled"] >= len(down) and rs.stats["failed"] == 0
            got = {s["ticker"]: s for s in tr2.paper.get_settlements()["settlements"]}
            for t in down:
                assert got[t]["market_result"] == results[t], t
                assert tr2.paper.positions[tr2.paper.books.slots[t]]["position"] == 0
            assert tr2.actor.state.name == "HALTED"  # the kill switch held: no trading
            final_cash = tr2.paper.cash
            shown = await _dashboard_actor(nd2, tr2, tmp_path)
    # the dashboard's /rl/actor: the cash, the restart's settlements, the restore counters
    assert shown["cash"] == final_cash
    by_ticker = {x["ticker"]: x for x in shown["settlements"]}
    for t, p in down.items():
        assert by_ticker[t]["result"] == results[t] and by_ticker[t]["position"] == p, t
    assert shown["restore"]["settled"] >= len(down) and shown["restore"]["failed"] == 0
    assert not set(down) & set(shown["restore"]["pending"])
    # independent: the fills' cash flows plus $1 per winning contract of every settled market
    rec = await recompute_from_fills(pg_dsn, account_id, start)
    conn = await db.connect(pg_dsn)
    try:
        rows = await conn.fetch(
            "SELECT m.ticker, s.payout FROM paper_settlements s"
            " JOIN markets m ON m.id = s.market_id WHERE s.account_id = $1",
            account_id,
        )
    finally:
        await conn.close()
    stored = {r["ticker"]: int(r["payout"]) for r in rows}
    assert set(down) <= set(stored)  # the restart's settlements reached PostgreSQL
    payout = 0
    for t in stored:
        res = _result(sim, t)
        p = rec.position.get(t, 0)
        won = p if res == "yes" else -p
        payout += max(won, 0) * 100  # count units (hundredths) x $0.01 = 100 money units
    for t, p in down.items():
        assert stored[t] == (max(p if results[t] == "yes" else -p, 0)) * 100, t
    assert final_cash == rec.cash + payout


async def _dashboard_actor(nd: LiveNode, trading: object, tmp: Path) -> dict[str, Any]:
    """GET /rl/actor of the dashboard app served over loopback on this node and trading."""
    control = ActorControl(nd)
    control.trading = trading
    assert (UI_DIST / "index.html").is_file(), "ui/dist is missing: run `make ui`"
    wcfg = WebConfig(port=0, data_dir=tmp / "data", ui_dir=UI_DIST)
    app = create_app(nd, wcfg, actor=control)
    started = asyncio.Event()
    task = asyncio.create_task(serve(app, wcfg, started))
    try:
        await asyncio.wait_for(started.wait(), 30)
        url = f"http://127.0.0.1:{app.state.bound_port}"
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            r = await client.get("/rl/actor")
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        await _check_restore_line(url, out["restore"])
        return out
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _check_restore_line(url: str, rs: dict[str, Any]) -> None:
    """The Agent page's restore line shows the API's restore counters."""
    from playwright.async_api import async_playwright

    want = (
        f"restored: {rs['held']} held, {rs['settled']} settled, {len(rs['pending'])} pending,"
        f" {rs['failed']} failed"
    ) + (f" ({', '.join(rs['pending'])})" if rs["pending"] else "")
    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--headless", "--disable-gpu"]
        )
        try:
            page = await b.new_page()
            await page.goto(f"{url}/#/agent")
            line = page.locator("[data-testid=restore-status]")
            await line.wait_for(timeout=15_000)
            assert (await line.inner_text()).strip() == want
        finally:
            await b.close()


async def _failed_lookups_are_counted_and_retried(paper: object, down: set[str]) -> None:
    """REST unreachable (nothing listens on the port): the lookups fail, are logged and
    counted, retried after ``retry_s``, and the markets stay pending, unsettled."""
    node = SimpleNamespace(
        config=SimpleNamespace(rest_url="http://127.0.0.1:9/trade-api/v2"), credentials=None
    )
    rs = RestoreSettler(node, paper, PaperSettler(paper), retry_s=0.05)
    assert set(rs.pending) == down
    await rs.start()
    try:
        await until(lambda: rs.stats["failed"] >= 2 * len(down), "two failed passes", 30)
    finally:
        await rs.close()
    assert set(rs.pending) == down and rs.stats["settled"] == 0
    assert rs.stats["lookups"] >= rs.stats["failed"]
