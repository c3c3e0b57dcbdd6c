"""The actor on rolling listings: markets listed after it started are traded too.

The real sim lists series of short-lived markets over loopback WebSockets; the live node
follows the market list (``MarketFollower``); the actor (``attach_trading``'s market sync)
adds each new market to the paper client and to its own per-market state, and trades it
with the same observation kernel and order rule.  A real PostgreSQL holds everything.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from actor_support import flip_flop_model, register, until

from core.dtypes import AS_SENT
from kalshi_rl.config import CollectorConfig, FeedConfig
from kalshi_rl.env.config import EnvConfig
from kalshi_rl.live.node import LiveNode
from kalshi_rl.sim import SimConfig, SimExchange
from kalshi_rl.sim.listings import default_series
from kalshi_rl.sim.model import ModelParams
from kalshi_rl.trade.actor import ActorConfig
from kalshi_rl.trade.risk import RiskConfig
from kalshi_rl.trade.wiring import attach_trading

pytestmark = pytest.mark.slow

FAST = ModelParams(determine_delay_ms=200, settle_delay_ms=300)


async def test_actor_trades_markets_listed_after_it_started(pg_dsn: str, tmp_path: Path) -> None:
    cfg = EnvConfig()
    await register(pg_dsn, tmp_path, "roll", flip_flop_model(cfg), cfg)
    series = default_series(2, lifetime_ms=4000, lead_ms=300)
    scfg = SimConfig(series=series, model=FAST, rate=2000, record_limit=0)
    acfg = ActorConfig(risk=RiskConfig(kill_file=str(tmp_path / "trade.kill"), close_guard_s=0.5))
    async with SimExchange(scfg) as sim:
        ccfg = CollectorConfig(
            rest_url=sim.rest_url, all_markets=True, database_url=pg_dsn, mode="sim",
            ring_capacity=1 << 14, progress_interval_s=0.0, spill_dir=str(tmp_path / "spill"),
            rescan_interval_s=0.5,
        )  # fmt: skip
        async with LiveNode(ccfg, FeedConfig(ws_url=sim.ws_url)) as nd:
            await nd.feed.wait_connected(10)
            tr = await attach_trading(nd, "roll", acfg, account="rolling")
            actor = tr.actor
            at_start = list(actor.tickers)
            q = actor.subscribe()
            sent: dict[str, int] = {}

            def later_sent() -> bool:
                while not q.empty():
                    msg: dict[str, Any] = q.get_nowait()
                    if msg["market"] not in at_start and msg["status"] == AS_SENT:
                        sent[msg["market"]] = sent.get(msg["market"], 0) + 1
                return len(sent) >= 2

            await until(later_sent, "orders on two markets listed after the actor started", 120)
            await asyncio.sleep(0)
            later = sorted(sent)
            # the actor's per-market state grew (its arrays follow its market list)
            assert len(actor.tickers) > len(at_start)
            n = len(actor.tickers)
            assert actor.hist.shape[0] == actor.slots.shape[0] == actor.closed.shape[0] == n
            for t in later:
                i = actor.index_of_ticker[t]
                assert int(actor.slots[i]) == nd.books.slots[t]
                assert actor.close_ms[i] > 0  # its close time came with its REST object
                # the order reached the paper client in that market
                assert tr.paper.get_orders(ticker=t)["orders"], t
            assert actor.counts["orders"] >= len(later)
    assert tr.actor.counts["decisions"] > 0
