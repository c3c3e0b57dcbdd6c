"""`kalshi-rl trade`'s process (run_trader) end to end: local sim, node, paper, actor."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from actor_support import flip_flop_model, register

from kalshi_rl.commands.trade import run_trader
from kalshi_rl.env.config import EnvConfig
from kalshi_rl.trade.actor import ActorConfig
from kalshi_rl.trade.risk import RiskConfig

pytestmark = pytest.mark.slow


async def test_trade_command_runs_against_a_local_sim(pg_dsn: str, tmp_path: Path) -> None:
    cfg = EnvConfig()
    await register(pg_dsn, tmp_path, "cli", flip_flop_model(cfg), cfg)
    lines: list[str] = []
    acfg = ActorConfig(risk=RiskConfig(kill_file=str(tmp_path / "kill")))
    stats = await asyncio.wait_for(
        run_trader(
            "cli", acfg, sim=True, sim_markets=2, duration=4.0, database_url=pg_dsn,
            echo=lines.append,
        ),
        60,
    )  # fmt: skip
    assert stats["model"] == "cli:v1" and stats["fast_path"]
    assert stats["counts"]["decisions"] > 0 and stats["counts"]["orders"] > 0
    assert lines and "decisions" in lines[-1]


async def test_trade_all_on_short_rolling_markets_scales_the_close_guard(
    pg_dsn: str, tmp_path: Path
) -> None:
    """``trade --all`` against a local exchange of 20 s rolling markets: the close guard is
    1/20 of the market life (1 s), the rule of ``kalshi-rl up``, so opening orders go out; an
    explicit ``--close-guard 60`` still wins, and then every opening order is refused."""
    from kalshi_rl.sim import SimConfig, SimExchange
    from kalshi_rl.sim.listings import default_series
    from kalshi_rl.trade.wiring import close_guard_for_life

    assert close_guard_for_life(180_000) == 9.0  # up's default markets
    assert close_guard_for_life(None) == close_guard_for_life(7 * 86_400_000) == 60.0
    cfg = EnvConfig()
    await register(pg_dsn, tmp_path, "cliroll", flip_flop_model(cfg), cfg)
    scfg = SimConfig(series=default_series(2, lifetime_ms=20_000, lead_ms=500), rate=400)
    async with SimExchange(scfg) as sim:
        runs = {}
        for guard in (None, 60.0):
            acfg = ActorConfig(risk=RiskConfig(kill_file=str(tmp_path / "kill")))
            runs[guard] = await asyncio.wait_for(
                run_trader(
                    "cliroll", acfg, all_markets=True, ws_url=sim.ws_url, rest_url=sim.rest_url,
                    duration=5.0, database_url=pg_dsn, account=f"roll-{guard}",
                    close_guard_s=guard,
                ),
                90,
            )  # fmt: skip
    auto, fixed = runs[None], runs[60.0]
    assert auto["close_guard_s"] == 1.0, auto["close_guard_s"]
    assert auto["counts"]["decisions"] > 0 and auto["counts"]["orders"] > 0
    assert fixed["close_guard_s"] == 60.0
    assert fixed["counts"]["decisions"] > 0 and fixed["counts"]["orders"] == 0
