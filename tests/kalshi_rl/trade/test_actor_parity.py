"""Parity: a recorded session replayed through the sim with the actor attached.

sim -> collector -> PostgreSQL (the recording); then ``run_parity``: the dataset of that
session, the replay with the actor (real WebSockets, real paper client, the env's
execution) and the env with the same model.  The live observations' market features must
be bit-identical to the dataset's at every decision point, and observations with the
account features, actions, fills, fees and P&L equal the env's on every market: neither
the env nor the actor looks ahead at the next book's time (docs/engine.md), so there is no
tolerated divergence; a market that does not match in full fails the test.
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
    """Record a clean session of a 2-market sim; returns its feed_sessions id.

    The sim's clock starts a minute after the wall clock, 2 ms per model step: its
    snapshots carry no exchange time (a segment's clock starts at the snapshot's receipt
    and runs forward), so the deltas' exchange times must be later than that receipt for
    the session's time to move; each step's deltas share one millisecond (the case where
    an env that read the next row's time would part from live).
    """
    import time

    sim = SimExchange(
        SimConfig(
            n_markets=2, autostart=False, seed=21, step_ms=2.0,
            start_ts_ms=int(time.time() * 1000) + 60_000,
        )
    )  # fmt: skip
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
    # the paper client executes at once: zero entry and ack latency, in exchange time
    cfg = EnvConfig(entry_latency_ms=(0, 0), ack_latency_ms=(0, 0))
    await register(pg_dsn, tmp_path, "book", imbalance_model(cfg), cfg)
    report = await run_parity(pg_dsn, session, "book", cadence=1)
    print(report.text())
    assert report.decision_points > 100
    _assert_full_parity(report)
    assert sum(m.paper_fills for m in report.markets) > 0  # it traded

    # a model that reads its own position (it trades on every other row its masks allow,
    # so its actions follow the fills), with entry and ack latency (orders in flight over
    # several rows, masked until the ack), in full too
    cfg2 = EnvConfig(entry_latency_ms=(3, 3), ack_latency_ms=(2, 2))
    await register(pg_dsn, tmp_path, "pos", flip_flop_model(cfg2), cfg2)
    report2 = await run_parity(pg_dsn, session, "pos", cadence=1)
    print(report2.text())
    _assert_full_parity(report2)
    assert all(m.env_trades > 5 and m.paper_fills > 5 for m in report2.markets), report2.text()

    # a decision every 3 book updates (the books in between are decision points neither
    # in the dataset nor live; orders in flight still cross several rows) -- in full too
    report3 = await run_parity(pg_dsn, session, "pos", cadence=3)
    print(report3.text())
    _assert_full_parity(report3)
    assert all(m.paper_fills > 2 for m in report3.markets), report3.text()


async def test_trained_ppo_agent_matches_in_full(pg_dsn: str, tmp_path: Path) -> None:
    """A PPO agent trained (briefly, with SB3's default MLP and the shipped EnvConfig:
    50 ms entry latency, Kalshi fees) on the recorded session itself: its actions depend
    nonlinearly on every feature, account features included, and its orders stay in
    flight over many rows (the sim's time moves 2 ms per step).  The markets close
    before the recording ends and settle at a result, as the PPO experiment's do.
    bench/parity_trained.py runs the experiment's agents on 215 recorded markets."""
    from stable_baselines3 import PPO

    from kalshi_rl.env.vec import KalshiVecEnv
    from kalshi_rl.trade.parity import build_session_dataset

    session = await record_session(pg_dsn, tmp_path, steps=30)
    conn = await db.connect(pg_dsn)
    try:
        # each market closes within the recording (at its 80th percentile of delta times)
        # and is determined (yes / no): the dataset ends the segment at the first update at
        # or after the close and settles at the result; live, the actor must not decide
        # after the close, and the paper settles at the result
        await conn.execute(
            "UPDATE markets m SET open_time = now() - interval '1 minute',"
            " close_time = to_timestamp((SELECT percentile_disc(0.8) WITHIN GROUP"
            " (ORDER BY d.exch_ts) FROM orderbook_deltas d WHERE d.market_id = m.id) / 1000.0),"
            " result = CASE WHEN m.id % 2 = 0 THEN 'yes' ELSE 'no' END"
        )
        after_close = await conn.fetch(
            "SELECT count(*) AS n FROM orderbook_deltas d JOIN markets m ON m.id = d.market_id"
            " WHERE d.exch_ts >= (extract(epoch FROM m.close_time) * 1000)::bigint"
            " GROUP BY m.id"
        )
    finally:
        await conn.close()
    assert len(after_close) == 2 and all(r["n"] > 5 for r in after_close)  # books after close
    ds, _ = await build_session_dataset(pg_dsn, session, 1)
    assert list(ds.seg_result) in ([0, 1], [1, 0])  # both settle at their result
    cfg = EnvConfig()
    assert cfg.entry_latency_ms == (50, 50)
    venv = KalshiVecEnv(ds, n_envs=4, config=cfg, seed=0)
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, seed=0, device="cpu")
    model.learn(256)
    await register(pg_dsn, tmp_path, "trained", model, cfg)
    report = await run_parity(pg_dsn, session, "trained", cadence=1)
    print(report.text())
    _assert_full_parity(report)
    assert all(m.paper_fills > 0 for m in report.markets), report.text()


def _assert_full_parity(report: object) -> None:
    """Every market matches in full; the session has the rows a lookahead would part at."""
    from kalshi_rl.trade.parity import ParityReport

    assert isinstance(report, ParityReport)
    assert len(report.markets) == 2
    for m in report.markets:
        assert m.dataset_rows == m.live_decisions == m.compared, m
        assert m.ttc_from_receipt == 0, m
        # rows that share their millisecond with the next one, and rows that do not
        assert 0 < m.same_ms_rows < m.dataset_rows - 1, m
    assert report.market_features_identical, report.text()  # ttc included
    assert report.observations_identical, report.text()  # account features too
    assert report.actions_equal, report.text()
    assert report.fills_equal, report.text()
    assert report.pnl_equal, report.text()  # and fees
    assert report.markets_matched == len(report.markets), report.text()
    assert report.ok, report.text()
    assert sum(m.env_trades for m in report.markets) > 0


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
