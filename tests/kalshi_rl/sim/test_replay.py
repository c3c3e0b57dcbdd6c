"""Replay a recorded session from a real PostgreSQL through the sim's WebSocket."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kalshi_rl.sim import SimConfig, SimExchange
from kalshi_rl.store import db

T0 = 1_760_000_000_000


async def record_session(dsn: str) -> int:
    """A tiny recorded session: 2 markets, snapshots (one empty), deltas, trades, a resync."""
    conn = await db.connect(dsn)
    try:
        ids = await db.ensure_markets(conn, ["REC-A", "REC-B"])
        await conn.execute("UPDATE markets SET price_level_structure = 'linear_cent'")
        sess = await conn.fetchval(
            "INSERT INTO feed_sessions (source, mode) VALUES ('ws://x', 'live') RETURNING id"
        )
        a, b = ids["REC-A"], ids["REC-B"]
        snaps = [  # rec_id, market, side, price, qty, exch_ts
            (1, a, 0, 400, 1000, T0),
            (1, a, 0, 390, 550, T0),
            (1, a, 1, 580, 700, T0),
            (2, b, -1, -1, 0, T0),
            (9, a, 0, 410, 100, T0 + 90),
            (9, a, 1, 570, 250, T0 + 90),  # mid-stream resync
        ]
        deltas = [  # rec_id, market, side, price, delta, exch_ts
            (3, a, 0, 400, -300, T0 + 10),
            (4, b, 1, 300, 1250, T0 + 20),
            (6, a, 1, 580, 25, T0 + 40),
            (7, b, 0, 650, 75, T0 + 50),
            (10, a, 0, 410, 5, T0 + 100),
            (11, b, 1, 300, -1250, T0 + 110),
        ]
        trades = [(5, a, 400, 300, 1, T0 + 30), (8, b, 650, 50, 0, T0 + 60)]
        await conn.executemany(
            "INSERT INTO orderbook_snapshots (session_id, rec_id, market_id, sid, seq, side,"
            " price, qty, exch_ts, recv_ts) VALUES ($1,$2,$3,1,1,$4,$5,$6,$7,0)",
            [(sess, *r) for r in snaps],
        )
        await conn.executemany(
            "INSERT INTO orderbook_deltas (session_id, rec_id, market_id, sid, seq, side, price,"
            " delta, exch_ts, recv_ts) VALUES ($1,$2,$3,1,$2,$4,$5,$6,$7,0)",
            [(sess, *r) for r in deltas],
        )
        await conn.executemany(
            "INSERT INTO trades (session_id, rec_id, market_id, sid, yes_price, count,"
            " taker_side, exch_ts, recv_ts) VALUES ($1,$2,$3,2,$4,$5,$6,$7,0)",
            [(sess, *r) for r in trades],
        )
        return int(sess)
    finally:
        await conn.close()


def short(m: dict[str, Any]) -> tuple[Any, ...]:
    b = m["msg"]
    if m["type"] == "orderbook_snapshot":
        return (
            "snap",
            m["seq"],
            b["market_ticker"],
            b.get("yes_dollars_fp"),
            b.get("no_dollars_fp"),
        )
    if m["type"] == "orderbook_delta":
        return (
            "delta",
            m["seq"],
            b["market_ticker"],
            b["side"],
            b["price_dollars"],
            b["delta_fp"],
            b["ts_ms"],
        )
    return (
        "trade",
        b["market_ticker"],
        b["yes_price_dollars"],
        b["count_fp"],
        b["taker_side"],
        b["ts_ms"],
    )


EXPECTED = [
    ("snap", 1, "REC-A", [["0.3900", "5.50"], ["0.4000", "10.00"]], [["0.5800", "7.00"]]),
    ("snap", 2, "REC-B", None, None),
    ("delta", 3, "REC-A", "yes", "0.4000", "-3.00", T0 + 10),
    ("delta", 4, "REC-B", "no", "0.3000", "12.50", T0 + 20),
    ("trade", "REC-A", "0.4000", "3.00", "no", T0 + 30),
    ("delta", 5, "REC-A", "no", "0.5800", "0.25", T0 + 40),
    ("delta", 6, "REC-B", "yes", "0.6500", "0.75", T0 + 50),
    ("trade", "REC-B", "0.6500", "0.50", "yes", T0 + 60),
    ("snap", 7, "REC-A", [["0.4100", "1.00"]], [["0.5700", "2.50"]]),
    ("delta", 8, "REC-A", "yes", "0.4100", "0.05", T0 + 100),
    ("delta", 9, "REC-B", "no", "0.3000", "-12.50", T0 + 110),
]


@pytest.mark.parametrize("speed", [0.0, 1.0])
async def test_replay_reproduces_the_recorded_stream(
    pg_dsn: str, speed: float, ws_client: Any, client_books: Any
) -> None:
    sess = await record_session(pg_dsn)
    cfg = SimConfig(replay_session=sess, replay_dsn=pg_dsn, replay_speed=speed)
    async with SimExchange(cfg) as sim:
        assert sim.tickers == ["REC-A", "REC-B"]
        assert sim.book("REC-A") == {"yes": [(400, 1000), (390, 550)], "no": [(580, 700)]}
        c = await ws_client.open(sim.ws_url)
        await c.subscribe(["orderbook_delta", "trade"], ["REC-A", "REC-B"])
        msgs = await c.recv_until(lambda m: m.get("seq") == 9)
        got = [short(m) for m in msgs if m["type"] != "subscribed"]
        assert got == EXPECTED
        books = client_books()
        for m in msgs:
            if m["type"].startswith("orderbook_"):
                books.apply(m)
        assert books.book("REC-A") == sim.book("REC-A") == {"yes": [(410, 105)], "no": [(570, 250)]}
        assert books.book("REC-B") == sim.book("REC-B") == {"yes": [(650, 75)], "no": []}
        for _ in range(100):
            if sim.stats["replay_done"]:
                break
            await asyncio.sleep(0.01)
        assert sim.stats["replay_done"] == 1
        await c.close()


@pytest.mark.slow
async def test_replay_of_a_collector_recording(
    pg_dsn: str, tmp_path: Any, ws_client: Any, client_books: Any
) -> None:
    """sim -> collector (with a seq gap and its resync) -> PostgreSQL -> replay -> client:
    the replayed books end where the original sim's books ended."""
    from kalshi_rl.commands.collect import run_collector
    from kalshi_rl.config import CollectorConfig, FeedConfig

    async with SimExchange(SimConfig(n_markets=4, autostart=False, seed=11)) as sim:
        stop, started = asyncio.Event(), asyncio.Event()
        cfg = CollectorConfig(
            rest_url=sim.rest_url,
            tickers=tuple(sim.tickers),
            database_url=pg_dsn,
            mode="sim",
            ring_capacity=1 << 14,
            progress_interval_s=0.0,
            spill_dir=str(tmp_path / "spill"),
        )
        task = asyncio.create_task(
            run_collector(
                cfg, FeedConfig(ws_url=sim.ws_url), stop=stop, on_started=lambda *_: started.set()
            )
        )
        await asyncio.wait_for(started.wait(), 30)
        for _ in range(100):  # initial snapshots recorded
            if sim.has_listeners() and not sim.backlogged(0):
                break
            await asyncio.sleep(0.02)
        for _ in range(5):
            sim.advance(200)
            await asyncio.sleep(0.02)
        sim.inject_gap()
        sim.advance(200)
        await asyncio.sleep(0.5)  # the collector resyncs with fresh snapshots
        sim.advance(200)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(task, 60)
        truth = {t: sim.book(t) for t in sim.tickers}
    conn = await db.connect(pg_dsn)
    try:
        sess = await conn.fetchval("SELECT max(id) FROM feed_sessions")
        n_deltas = await conn.fetchval("SELECT count(*) FROM orderbook_deltas")
        n_snaps = await conn.fetchval("SELECT count(DISTINCT rec_id) FROM orderbook_snapshots")
    finally:
        await conn.close()
    assert n_deltas > 1000 and n_snaps > 4  # initial snapshots + the resync
    async with SimExchange(SimConfig(replay_session=sess, replay_dsn=pg_dsn)) as rs:
        c = await ws_client.open(rs.ws_url)
        await c.subscribe(["orderbook_delta"], rs.tickers)
        books = client_books()
        while not rs.stats["replay_done"] or rs.backlogged(0):
            await asyncio.sleep(0.01)
        last = rs.sub_seq(1, 1)
        for m in await c.recv_until(lambda m: m.get("seq") == last):
            if m["type"].startswith("orderbook_"):
                books.apply(m)
        for t, book in truth.items():
            assert books.book(t) == rs.book(t) == book
        await c.close()


async def test_orders_rest_through_a_replay(pg_dsn: str) -> None:
    """A user order on a replayed book: recorded maker changes never touch it, a recorded
    resync snapshot keeps it in the public book, and every queue stays consistent."""
    from kalshi_rl.sim.matching import Order

    sess = await record_session(pg_dsn)
    cfg = SimConfig(replay_session=sess, replay_dsn=pg_dsn, autostart=False)
    async with SimExchange(cfg) as sim:
        x = sim.engine
        o = x.submit(Order("o1", "alice", "", 0, 0, 400, 200))  # behind the 10.00 maker
        assert o.status == "resting" and x.queue_position(o) == 1000
        assert sim.book("REC-A")["yes"][0] == (400, 1200)
        while not sim._replay.done:  # step the replay to its end
            sim.advance(1)
            assert x.check_invariants() == []
        assert (o.status, o.remaining) == ("resting", 200)  # recorded trades fill no one
        assert x.queue_position(o) == 0  # the resync snapshot has no maker at 400
        assert sim.book("REC-A") == {"yes": [(410, 105), (400, 200)], "no": [(570, 250)]}
