"""The actor end to end: the real sim over loopback WebSockets, a real PostgreSQL.

sim -> LiveNode (feed, books, writers, session) -> paper client + actor -> rings ->
PostgreSQL.  Models are tiny SB3 PPOs with set weights (see actor_support.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from actor_support import (
    drive,
    flip_flop_model,
    node,
    recompute_from_fills,
    register,
    until,
)

from core.dtypes import AS_SENT, ORD_RESTING, ORDER_BUY, SIDE_YES, TIF_GTC
from kalshi_rl.env.config import EnvConfig
from kalshi_rl.sim.config import SimConfig
from kalshi_rl.sim.server import SimExchange
from kalshi_rl.store import db
from kalshi_rl.trade.actor import ActorConfig
from kalshi_rl.trade.risk import ActorState, RiskConfig
from kalshi_rl.trade.wiring import attach_trading

pytestmark = pytest.mark.slow


def actor_config(tmp: Path, **risk: object) -> ActorConfig:
    return ActorConfig(risk=RiskConfig(kill_file=str(tmp / "trade.kill"), **risk))  # type: ignore[arg-type]


async def test_actor_trades_and_the_account_equals_its_fills_and_survives_a_restart(
    pg_dsn: str, tmp_path: Path
) -> None:
    cfg = EnvConfig()
    mv = await register(pg_dsn, tmp_path, "flip", flip_flop_model(cfg), cfg)
    acfg = actor_config(tmp_path)
    async with SimExchange(SimConfig(n_markets=2, autostart=False, seed=3)) as sim:
        async with node(sim, pg_dsn, tmp_path) as nd:
            tr = await attach_trading(nd, "flip", acfg, account="acct")
            assert tr.actor.model.model_id == mv.id and tr.actor.model.fast
            assert nd.actor is tr.actor and tr.actor.state == ActorState.RUNNING
            await until(lambda: nd.feed.books_valid() == 2, "books valid")
            await drive(sim, 60)
            await until(lambda: tr.actor.counts["fills"] >= 6, "the actor trades")
        # the node is closed: the actor stopped, the paper logs are flushed
        positions = {t: tr.actor.position(t) for t in sim.tickers}
        n_fills = len(tr.paper.fills_array())
        decisions = tr.actor.counts["decisions"]
        episode, account_id = tr.actor.episode_id, tr.account_id
        start = tr.paper.config.start_cash
        # a restarted actor on the same account resumes with the same positions and cash
        async with node(sim, pg_dsn, tmp_path) as nd2:
            tr2 = await attach_trading(nd2, "flip", acfg, account="acct")
            assert tr2.account_id == account_id
            assert tr2.actor.resumed == positions  # before its first decision
            rebuilt = tr2.paper.fills_array()[:n_fills]
            before = tr.paper.fills_array()
            for name in ("order_id", "count", "price", "side", "action", "cash", "fee"):
                np.testing.assert_array_equal(rebuilt[name], before[name], err_msg=name)
            assert tr2.actor.episode_id != episode
        # the account after both runs (the restarted actor trades on from where it was)
        final = {t: tr2.actor.position(t) for t in sim.tickers}
        final_cash, final_fills = tr2.paper.cash, len(tr2.paper.fills_array())

    rec = await recompute_from_fills(pg_dsn, account_id, start)
    assert rec.n_fills == final_fills >= n_fills > 0
    assert {t: p for t, p in rec.position.items() if p} == {t: p for t, p in final.items() if p}
    assert rec.cash == final_cash
    assert rec.fees == int(tr2.paper.positions["fees_paid"].sum())
    conn = await db.connect(pg_dsn)
    try:
        n_rows = await conn.fetchval(
            "SELECT count(*) FROM trading_actions WHERE episode_id = $1", episode
        )
        steps = await conn.fetch(
            "SELECT step FROM trading_actions WHERE episode_id = $1 ORDER BY step", episode
        )
        filled = await conn.fetchval(
            "SELECT sum(filled) FROM trading_actions WHERE episode_id = $1 AND status = $2",
            episode,
            AS_SENT,
        )
        ep = await conn.fetchrow("SELECT * FROM trading_episodes WHERE id = $1", episode)
    finally:
        await conn.close()
    assert n_rows == decisions  # every decision is a row
    assert [r["step"] for r in steps] == list(range(1, decisions + 1))
    assert filled == sum(int(f["count"]) for f in tr.paper.fills_array())
    assert ep["ended_at"] is not None and ep["model_id"] == mv.id and ep["n_actions"] == decisions
    assert ep["account_id"] == account_id and not ep["shadow"]


async def test_kill_switch_cancels_halts_and_holds_after_a_restart(
    pg_dsn: str, tmp_path: Path
) -> None:
    cfg = EnvConfig()
    await register(pg_dsn, tmp_path, "flip", flip_flop_model(cfg), cfg)
    acfg = actor_config(tmp_path)
    async with SimExchange(SimConfig(n_markets=2, autostart=False, seed=4)) as sim:
        async with node(sim, pg_dsn, tmp_path) as nd:
            tr = await attach_trading(nd, "flip", acfg, account="k")
            await until(lambda: nd.feed.books_valid() == 2, "books valid")
            await drive(sim, 20)
            await until(lambda: tr.actor.counts["orders"] > 0, "orders before the kill")
            # a resting order (placed by hand) the kill must cancel
            t = sim.tickers[0]
            slot = nd.books.slots[t]
            bid = int(nd.books.best[slot, SIDE_YES])
            tr.paper.submit(t, SIDE_YES, ORDER_BUY, max(bid - 100, 10), 100, tif=TIF_GTC)
            assert tr.paper.get_orders(status="resting")["orders"]
            tr.actor.kill("test")
            assert tr.actor.state == ActorState.HALTED
            assert not tr.paper.get_orders(status="resting")["orders"]
            orders = tr.actor.counts["orders"]
            decisions = tr.actor.counts["decisions"]
            await drive(sim, 30)
            await until(lambda: tr.actor.counts["decisions"] > decisions, "decisions go on")
            assert tr.actor.counts["orders"] == orders  # ... but no order is sent
            assert tr.actor.risk.refused["HALTED"] > 0
            assert all(o["status"] != ORD_RESTING for o in tr.paper.get_orders()["orders"])
        async with node(sim, pg_dsn, tmp_path) as nd2:
            tr2 = await attach_trading(nd2, "flip", acfg, account="k")
            assert tr2.actor.state == ActorState.HALTED  # the sentinel survived the restart
            await until(lambda: nd2.feed.books_valid() == 2, "books valid")
            await drive(sim, 20)
            await until(lambda: tr2.actor.counts["decisions"] > 3, "decisions")
            assert tr2.actor.counts["orders"] == 0
            with pytest.raises(Exception, match="release it first"):
                tr2.actor.resume()
            assert tr2.actor.release_kill()
            tr2.actor.resume()
            await drive(sim, 20)
            await until(lambda: tr2.actor.counts["orders"] > 0, "trading again after release")
