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
