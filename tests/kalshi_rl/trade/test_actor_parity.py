"""Parity: a recorded session replayed through the sim with the actor attached.

sim -> collector -> PostgreSQL (the recording); then ``run_parity``: the dataset of that
session, the replay with the actor (real WebSockets, real paper client, the env's
execution) and the env with the same model.  The live observations' market features must
be bit-identical to the dataset's at every decision point, the actions equal the env's,
and account features, fills and P&L equal the env's except where the env looks one row
ahead (same-millisecond rows, docs/actor.md).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from actor_support import flip_flop_model, imbalance_model, register, until

from kalshi_rl.commands.collect import run_collector
from kalshi_rl.config import CollectorConfig, FeedConfig
from kalshi_rl.env.config import EnvConfig
from kalshi_rl.sim.config import SimConfig
from kalshi_rl.sim.server import SimExchange
from kalshi_rl.store import db
from kalshi_rl.trade.parity import run_parity

pytestmark = pytest.mark.slow


async def record_session(dsn: str, tmp: Path, steps: int = 40) -> int:
    """Record a clean session of a 2-market sim; returns its feed_sessions id."""
    sim = SimExchange(SimConfig(n_markets=2, autostart=False, seed=21))
    async with sim:
        stop = asyncio.Event()
        feed_box: list[object] = []
        cfg = CollectorConfig(
            rest_url=sim.rest_url,
            tickers=tuple(sim.tickers),
            database_url=dsn,
            mode="sim",
            ring_capacity=1 << 14,
            progress_interval_s=0.0,
            spill_dir=str(tmp / "spill"),
        )
        task = asyncio.create_task(
            run_collector(
                cfg,
                FeedConfig(ws_url=sim.ws_url),
                stop=stop,
                on_started=lambda f, _w: feed_box.append(f),
            )
        )
        await until(lambda: bool(feed_box), "collector")
        feed = feed_box[0]
        await until(lambda: feed.books_valid() == 2, "books valid")  # type: ignore[attr-defined]
        for _ in range(steps):
            sim.advance(5)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        stop.set()
        res = await asyncio.wait_for(task, 60)
    return res.session_id


async def test_replayed_session_matches_dataset_and_env(pg_dsn: str, tmp_path: Path) -> None:
    session = await record_session(pg_dsn, tmp_path)
    # The sim's snapshots carry no exchange time: a segment's clock starts at the
    # snapshot's receipt.  The replay gives the actor the recording's receipt times
    # (``Actor.receipt_ms``), so time-to-close is compared bit for bit too (markets open
    # now, close in an hour: ttc moves within the session).
    conn = await db.connect(pg_dsn)
    try:
        await conn.execute(
            "UPDATE markets SET open_time = now() - interval '1 minute',"
            " close_time = now() + interval '1 hour'"
        )
    finally:
        await conn.close()
    # the env's latency model is the paper's: zero entry and ack latency, in exchange time
    cfg = EnvConfig(entry_latency_ms=(0, 0), ack_latency_ms=(0, 0))
    await register(pg_dsn, tmp_path, "book", imbalance_model(cfg), cfg)
    report = await run_parity(pg_dsn, session, "book", cadence=1)
    print(report.text())
    assert report.decision_points > 100
    for m in report.markets:
        assert m.dataset_rows == m.live_decisions == m.compared, m
        assert m.ttc_from_receipt == 0, m
    assert report.market_features_identical, report.text()  # ttc included
    assert report.actions_equal, report.text()  # a model of the book alone
    assert sum(m.paper_fills for m in report.markets) > 0  # it traded on both sides
    assert sum(m.env_trades for m in report.markets) > 0
    # account features, fills and P&L: equal in full, or bit-identical up to the first
    # row where the env executes an order at a later row of the same millisecond (it
    # knows the next row's time; live knows one book later) -- never an unexplained part
    _assert_account_parity(report)

    # a model that reads its own position: it trades on every other row, so its actions
    # follow the fills; they equal the env's up to the first lookahead row
    await register(pg_dsn, tmp_path, "pos", flip_flop_model(cfg), cfg)
    report2 = await run_parity(pg_dsn, session, "pos", cadence=1)
    print(report2.text())
    assert report2.market_features_identical, report2.text()
    assert all(m.dataset_rows == m.live_decisions for m in report2.markets)
    _assert_account_parity(report2)
    assert all(m.env_trades > 5 and m.paper_fills > 5 for m in report2.markets), report2.text()


def _assert_account_parity(report: object) -> None:
    from kalshi_rl.trade.parity import ParityReport

    assert isinstance(report, ParityReport)
    assert report.divergences_explained, report.text()
    for m in report.markets:
        if m.account_equal:
            assert m.first_account_divergence == -1
            assert m.env_trades == m.paper_fills and m.env_pnl == m.paper_pnl
        else:  # identical for a stretch with trades in it, then the lookahead row
            assert m.from_lookahead and m.first_account_divergence > 0, m
            assert m.same_ms_rows > 0, m


def test_time_to_close_is_the_datasets_formula() -> None:
    import numpy as np

    from kalshi_rl.store.history.build import _ttc
    from kalshi_rl.trade.decide import ttc_fraction

    rng = np.random.default_rng(3)
    o = rng.integers(1_700_000_000_000, 1_800_000_000_000, 500)
    c = o + rng.integers(1, 10**9, 500)
    ts = o + rng.integers(-(10**8), 2 * 10**9, 500)
    want = _ttc(ts, c, o)
    got = np.array([ttc_fraction(int(a), int(b), int(t)) for a, b, t in zip(o, c, ts, strict=True)])
    assert np.array_equal(want.astype(np.float64), got)
    assert ttc_fraction(-1, 5, 3) == 1.0 and ttc_fraction(5, 5, 3) == 1.0
