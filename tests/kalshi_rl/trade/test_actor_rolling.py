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
from kalshi_rl.trade.actor import Actor, ActorConfig
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
            # no wait for the feed or the follower: the actor may start before the node
            # follows any market (it then starts with none and picks them up as listed)
            tr = await attach_trading(nd, "roll", acfg, account="rolling")
            actor = tr.actor
            at_start = list(actor.tickers)
            listed_before = sim.model.n_listed  # listings made before the actor started
            q = actor.subscribe()
            sent: dict[str, int] = {}

            def listed_after_start(t: str) -> bool:
                spec = sim.model.spec_by_ticker(t)
                return spec is not None and spec.serial >= listed_before

            def later_sent() -> bool:
                while not q.empty():
                    msg: dict[str, Any] = q.get_nowait()
                    t = msg["market"]
                    if listed_after_start(t) and t not in at_start and msg["status"] == AS_SENT:
                        sent[t] = sent.get(t, 0) + 1
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


async def test_an_actor_following_listings_may_start_with_no_market(
    pg_dsn: str, tmp_path: Path
) -> None:
    """With ``follow`` the actor starts on an empty market list and trades what is added;
    without it (a fixed market list) an empty list is refused."""
    from core.book import BookSet
    from kalshi_rl.errors import ConfigError
    from kalshi_rl.trade.paper import MarketInfo, PaperClient
    from kalshi_rl.trade.reload import load_version

    cfg = EnvConfig()
    mv = await register(pg_dsn, tmp_path, "empty", flip_flop_model(cfg), cfg)
    loaded = await load_version(mv)
    books = BookSet(4)
    paper = PaperClient(books)
    acfg = ActorConfig(risk=RiskConfig(kill_file=str(tmp_path / "trade.kill")))
    with pytest.raises(ConfigError, match="at least one market"):
        Actor(books, paper, loaded, [], acfg)
    actor = Actor(books, paper, loaded, [], acfg, follow=True)
    await actor.start()
    try:
        assert actor.tickers == [] and actor.total_value() == 0
        assert actor.tick_all() == 0
        paper.add_market(MarketInfo("NEW-1"))
        assert actor.add_markets(["NEW-1"]) == ["NEW-1"]
        assert actor.tickers == ["NEW-1"] and actor.slots.shape == (1,)
        assert int(actor.slots[0]) == books.slot("NEW-1")
    finally:
        await actor.stop()
