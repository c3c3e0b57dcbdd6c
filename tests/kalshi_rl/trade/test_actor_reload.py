"""Hot reload over the real registry NOTIFY path: swap, refusal, rollback, shadow."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from actor_support import flip_flop_model, multi_model, node, register, until

from core.dtypes import ACT_BUY_NO, ACT_SELL_NO, AS_SHADOW
from kalshi_rl.env.config import EnvConfig
from kalshi_rl.sim.config import SimConfig
from kalshi_rl.sim.server import SimExchange
from kalshi_rl.store import db
from kalshi_rl.trade.actor import ActorConfig
from kalshi_rl.trade.risk import RiskConfig
from kalshi_rl.trade.wiring import attach_trading
from kalshi_rl.train.run import env_identity

pytestmark = pytest.mark.slow


class TickCounter:
    """Counts the ticks the actor is due (tick_updates=1: every batch on a valid book)."""

    def __init__(self, books: object, slots: set[int]) -> None:
        self.books = books
        self.slots = slots
        self.due = 0

    def __call__(self, slots: np.ndarray) -> None:
        meta = self.books.meta  # type: ignore[attr-defined]
        self.due += sum(1 for s in set(slots.tolist()) & self.slots if meta[s]["valid"])


async def keep_driving(sim: SimExchange) -> None:
    while True:
        sim.advance(5)
        await asyncio.sleep(0.005)


async def test_deploy_swaps_within_a_second_no_tick_lost_incompatible_refused_rollback(
    pg_dsn: str, tmp_path: Path
) -> None:
    cfg = EnvConfig()
    v1 = await register(pg_dsn, tmp_path, "hot", flip_flop_model(cfg), cfg)
    acfg = ActorConfig(risk=RiskConfig(kill_file=str(tmp_path / "kill")))
    sim = SimExchange(SimConfig(n_markets=2, autostart=False, seed=5))
    async with sim, node(sim, pg_dsn, tmp_path) as nd:
        tr = await attach_trading(nd, "hot", acfg, account="r", poll_s=60.0)
        actor, reloader = tr.actor, tr.reloader
        assert reloader is not None and reloader.listening
        counter = TickCounter(nd.books, {int(s) for s in actor.slots})
        nd.add_book_listener(counter)
        at_start = actor.counts["decisions"]  # books already valid at start decide at once
        driver = asyncio.create_task(keep_driving(sim))
        try:
            await until(lambda: actor.counts["decisions"] > 20, "decisions on v1")
            v2 = await register(
                pg_dsn, tmp_path, "hot", flip_flop_model(cfg, ACT_BUY_NO, ACT_SELL_NO), cfg
            )
            t0 = time.monotonic()
            await until(lambda: actor.model.version == 2, "swap to v2", timeout=10)
            swap_s = time.monotonic() - t0
            assert swap_s < 1.0, f"swap took {swap_s:.3f} s"  # the bound
            assert actor.model.model_id == v2.id
            at_swap = actor.counts["decisions"]
            await until(lambda: actor.counts["decisions"] > at_swap + 20, "decisions on v2")

            # an incompatible version (MultiDiscrete actions) is refused; v2 keeps trading
            bad, bad_cfg = multi_model()
            await register(pg_dsn, tmp_path, "hot", bad, bad_cfg)
            await until(lambda: reloader.refused == 1, "refusal", timeout=10)
            assert actor.model.version == 2
            assert "action space" in actor.refusals[-1] and "keeps trading" in actor.refusals[-1]
            n = actor.counts["decisions"]
            await until(lambda: actor.counts["decisions"] > n + 10, "trading continues")

            # an observation layout that differs is refused too
            ident = env_identity(cfg)
            ident["features"] = list(reversed(ident["features"]))
            await register(pg_dsn, tmp_path, "hot", flip_flop_model(cfg), cfg, identity=ident)
            await until(lambda: reloader.refused == 2, "obs refusal", timeout=10)
            assert "observation config hash" in actor.refusals[-1]

            assert await actor.rollback() is None
            assert actor.model.version == 1
            n = actor.counts["decisions"]
            await until(lambda: actor.counts["decisions"] > n + 10, "decisions after rollback")
        finally:
            driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await driver
        decisions = actor.counts["decisions"]
        skipped = sum(v for k, v in actor.counts.items() if k.startswith("skip_"))
        assert skipped == 0
        assert decisions == at_start + counter.due  # no tick lost, across three swaps
    conn = await db.connect(pg_dsn)
    try:
        eps = await conn.fetch(
            "SELECT e.id, e.model_version, e.n_actions, count(a.step) AS n, max(a.step) AS top"
            " FROM trading_episodes e JOIN trading_actions a ON a.episode_id = e.id"
            " GROUP BY e.id ORDER BY e.id"
        )
    finally:
        await conn.close()
    assert [e["model_version"] for e in eps] == [1, 2, 1]
    assert sum(e["n"] for e in eps) == actor.counts["decisions"]  # incl. the stop's last batch
    assert all(e["n"] == e["top"] == e["n_actions"] for e in eps)  # steps 1..n, none missing
    assert v1.id != v2.id


async def test_shadow_candidate_decides_beside_live_without_trading(
    pg_dsn: str, tmp_path: Path
) -> None:
    cfg = EnvConfig()
    await register(pg_dsn, tmp_path, "sh", flip_flop_model(cfg), cfg)
    acfg = ActorConfig(risk=RiskConfig(kill_file=str(tmp_path / "kill")))
    sim = SimExchange(SimConfig(n_markets=2, autostart=False, seed=6))
    async with sim, node(sim, pg_dsn, tmp_path) as nd:
        tr = await attach_trading(nd, "sh", acfg, account="s", shadow_reload=True)
        actor = tr.actor
        driver = asyncio.create_task(keep_driving(sim))
        try:
            await until(lambda: actor.counts["decisions"] > 5, "decisions")
            await register(
                pg_dsn, tmp_path, "sh", flip_flop_model(cfg, ACT_BUY_NO, ACT_SELL_NO), cfg
            )
            await until(lambda: actor.shadow is not None, "shadow loaded", timeout=10)
            assert actor.model.version == 1 and actor.shadow is not None
            assert actor.shadow.version == 2
            await until(lambda: actor.counts["shadow_decisions"] > 20, "shadow decides")
        finally:
            driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await driver
        # the live account holds only YES (v1 buys YES); v2's NO trades stayed virtual
        pos = tr.paper.positions
        assert all(int(pos[int(s)]["position"]) >= 0 for s in actor.slots)
        shadow_positions = actor._shadow_pos["position"]
    conn = await db.connect(pg_dsn)
    try:
        rows = await conn.fetch(
            "SELECT a.position, a.filled, e.shadow FROM trading_actions a"
            " JOIN trading_episodes e ON e.id = a.episode_id WHERE a.status = $1",
            AS_SHADOW,
        )
        shadow_eps = await conn.fetch("SELECT * FROM trading_episodes WHERE shadow")
    finally:
        await conn.close()
    assert rows and all(r["shadow"] for r in rows)
    assert any(r["filled"] > 0 for r in rows)  # would-be fills on the live book
    assert any(r["position"] < 0 for r in rows) or (shadow_positions < 0).any()
    assert len(shadow_eps) == 1 and shadow_eps[0]["ended_at"] is not None
    assert shadow_eps[0]["end_value"] is not None  # its would-be P&L


async def test_fallbacks_checkpoint_rewritten_in_place_and_registry_poll(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Without a NOTIFY: a checkpoint rewritten on disk is reloaded (mtime), and while
    LISTEN is down the registry's deployed version is polled; a lost LISTEN connection is
    re-established and deployments are followed again.

    Every step waits for the state it needs (no assumption on which task runs first).
    """
    import os

    from kalshi_rl.store import db as store_db
    from kalshi_rl.trade.reload import Reloader

    cfg = EnvConfig()
    await register(pg_dsn, tmp_path, "fb", flip_flop_model(cfg), cfg)
    sim = SimExchange(SimConfig(n_markets=1, autostart=False, seed=9))
    async with sim, node(sim, pg_dsn, tmp_path) as nd:
        acfg = ActorConfig(risk=RiskConfig(kill_file=str(tmp_path / "kill")))
        tr = await attach_trading(nd, "fb", acfg, account="f", reload=False)
        actor = tr.actor
        pool = await store_db.create_pool(pg_dsn)
        # LISTEN down from the start: only the polls can see anything
        rel = Reloader(actor, pool, poll_s=0.05, listen=False)
        try:
            await rel.start()
            assert not rel.listening
            # 1. the running checkpoint rewritten in place (same version, new weights)
            path = Path(actor.model.path)
            flip_flop_model(cfg, ACT_BUY_NO, ACT_SELL_NO).save(path)
            os.utime(path, (time.time() + 5, time.time() + 5))
            before = actor.counts["swaps"]
            await until(lambda: actor.counts["swaps"] > before, "mtime reload", timeout=20)
            assert actor.model.version == 1
            # 2. a new version deployed while nobody listens: found by the registry poll
            await register(pg_dsn, tmp_path, "fb", flip_flop_model(cfg), cfg)
            await until(lambda: actor.model.version == 2, "registry poll", timeout=20)
            assert rel.notifications == 0 and rel.swaps >= 1  # the poll did it
        finally:
            await rel.close()
        # 3. a LISTEN connection lost (its backend terminated) comes back
        rel = Reloader(actor, pool, poll_s=0.05)
        try:
            await rel.start()
            assert rel.listening
            pid = rel._conn.get_server_pid()
            async with pool.acquire() as conn:
                await conn.execute("SELECT pg_terminate_backend($1)", pid)
            await until(lambda: rel.relistens >= 1 and rel.listening, "LISTEN again", timeout=20)
            assert rel._conn.get_server_pid() != pid
            await register(pg_dsn, tmp_path, "fb", flip_flop_model(cfg), cfg)
            await until(lambda: actor.model.version == 3, "deployment followed", timeout=20)
        finally:
            await rel.close()
            await pool.close()
