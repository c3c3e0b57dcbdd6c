"""End to end: the local exchange (kalshi_rl.sim) -> collector (feed + writer) -> PostgreSQL.

Real loopback WebSockets, a real PostgreSQL, the real sim with its fault knobs.  After a
run with dropped messages (seq gaps), garbage frames, a killed subscription and dropped
connections we check three books agree for every market: the feed's books in memory, the
books rebuilt from the database (snapshots + deltas + gaps replayed by rec_id through
core.book) and the sim's own books; and that every delta the sim put on the wire is in the
database, once, in order.  A second test stops and restarts PostgreSQL mid-run.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest

from core.book import BookSet
from core.dtypes import (
    DELTA_DTYPE,
    GAP_REASON_DESYNC,
    GAP_REASON_DISCONNECT,
    GAP_REASON_SEQ,
    GAP_REASON_SUB_ERROR,
    PRICE_MAX,
    RESULT_YES,
    SIDE_NO,
    SIDE_YES,
    SNAPSHOT_LEVEL_DTYPE,
)
from kalshi_rl.commands.collect import CollectorResult, run_collector
from kalshi_rl.config import CollectorConfig, FeedConfig
from kalshi_rl.kalshi import auth
from kalshi_rl.kalshi import protocol as p
from kalshi_rl.kalshi.feed import Feed
from kalshi_rl.sim.config import SimConfig
from kalshi_rl.sim.model import ModelParams
from kalshi_rl.sim.server import SimExchange
from kalshi_rl.store import db

pytestmark = pytest.mark.slow


async def until(pred: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait for an asynchronous condition; fail naming it on timeout."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.01)


class Run:
    """A collector running in the background against a sim."""

    def __init__(
        self,
        sim: SimExchange,
        dsn: str,
        spill: Path,
        writer_shards: int = 1,
        credentials: auth.Credentials | None = None,
    ) -> None:
        self.sim = sim
        self.stop = asyncio.Event()
        self.feed: Feed | None = None
        self.writer: Any = None
        cfg = CollectorConfig(
            rest_url=sim.rest_url,
            tickers=tuple(sim.tickers),
            database_url=dsn,
            mode="sim",
            ring_capacity=1 << 14,
            progress_interval_s=0.0,
            spill_dir=str(spill),
            writer_shards=writer_shards,
        )
        fcfg = FeedConfig(ws_url=sim.ws_url, backoff_initial_s=0.02, backoff_max_s=0.2)

        def started(feed: Feed, writer: Any) -> None:
            self.feed, self.writer = feed, writer

        self.task = asyncio.create_task(
            run_collector(cfg, fcfg, credentials=credentials, stop=self.stop, on_started=started)
        )

    async def started(self) -> Feed:
        await until(lambda: self.feed is not None or self.task.done(), "collector start")
        if self.task.done():
            self.task.result()
        assert self.feed is not None
        return self.feed

    def in_sync(self) -> bool:
        """Every book valid and equal to the sim's."""
        feed = self.feed
        assert feed is not None
        books = feed.books
        for t in self.sim.tickers:
            s = books.slots.get(t)
            if s is None or not books.valid(s):
                return False
            truth = self.sim.book(t)
            if books.levels(s, SIDE_YES) != truth["yes"] or books.levels(s, SIDE_NO) != truth["no"]:
                return False
        return True

    async def synced(self, what: str) -> None:
        await until(self.in_sync, what)

    async def finish(self) -> CollectorResult:
        self.stop.set()
        return await asyncio.wait_for(self.task, 60)


async def replay_from_db(
    dsn: str, session_id: int, before_rec_id: int | None = None
) -> tuple[BookSet, dict[str, Any]]:
    """Rebuild every book from the database alone, in rec_id order, through core.book."""
    conn = await asyncpg.connect(dsn)
    try:
        snaps = await conn.fetch(
            "SELECT s.rec_id, m.ticker, s.sid, s.seq, s.side, s.price, s.qty FROM"
            " orderbook_snapshots s JOIN markets m ON m.id = s.market_id WHERE session_id = $1"
            " ORDER BY rec_id, side, price",
            session_id,
        )
        deltas = await conn.fetch(
            "SELECT d.rec_id, m.ticker, d.sid, d.seq, d.side, d.price, d.delta, d.status FROM"
            " orderbook_deltas d JOIN markets m ON m.id = d.market_id WHERE session_id = $1"
            " ORDER BY rec_id",
            session_id,
        )
        gaps = await conn.fetch(
            "SELECT g.rec_id, m.ticker, g.reason FROM feed_gaps g JOIN markets m"
            " ON m.id = g.market_id WHERE session_id = $1 ORDER BY rec_id",
            session_id,
        )
    finally:
        await conn.close()
    events: list[tuple[int, str, Any]] = []
    by_snap: dict[int, list[Any]] = {}
    for r in snaps:
        by_snap.setdefault(r["rec_id"], []).append(r)
    events += [(rid, "snap", rows) for rid, rows in by_snap.items()]
    events += [(r["rec_id"], "delta", r) for r in deltas]
    events += [(r["rec_id"], "gap", r) for r in gaps]
    events.sort(key=lambda e: e[0])
    ids = [e[0] for e in events]
    assert len(ids) == len(set(ids)), "a rec_id is used twice"
    if before_rec_id is not None:
        events = [e for e in events if e[0] < before_rec_id]
        deltas = [r for r in deltas if r["rec_id"] < before_rec_id]
    books = BookSet(4)
    statuses: list[int] = []
    for _, kind, obj in events:
        if kind == "snap":
            slot = books.slot(obj[0]["ticker"])
            lv = np.zeros(len(obj), dtype=SNAPSHOT_LEVEL_DTYPE)
            for i, r in enumerate(obj):
                lv[i] = (
                    r["rec_id"],
                    0,
                    0,
                    r["seq"],
                    r["qty"],
                    slot,
                    r["sid"],
                    r["price"],
                    r["side"],
                    0,
                )
            books.apply_snapshot(slot, lv)
        elif kind == "delta":
            rec = np.zeros(1, dtype=DELTA_DTYPE)
            rec[0] = (
                obj["rec_id"],
                0,
                0,
                obj["seq"],
                obj["delta"],
                books.slot(obj["ticker"]),
                obj["sid"],
                obj["price"],
                obj["side"],
                0,
            )
            books.apply_deltas(rec)
            statuses.append(int(rec[0]["status"]))
        else:
            books.invalidate(books.slot(obj["ticker"]))
    info = {
        "deltas": deltas,
        "db_statuses": [r["status"] for r in deltas],
        "replay_statuses": statuses,
        "gap_reasons": [r["reason"] for r in gaps],
        "n_events": len(events),
    }
    return books, info


def sent_deltas(sim: SimExchange) -> list[tuple[int, int, str, int, int, int]]:
    """Deltas the sim put on the wire (not dropped, not garbage), in send order."""
    dec = p.Decoder()
    out = []
    for m in sim.sent_messages:
        if m.type != "orderbook_delta" or m.dropped:
            continue
        d = dec.decode(m.payload)
        assert isinstance(d, p.DeltaMsg)
        out.append((d.sid, d.seq, d.ticker, d.side, d.price, d.delta))
    return out


async def test_faults_books_match_sim_and_database(pg_dsn: str, tmp_path: Path) -> None:
    # the sim checks our RSA-PSS signature on every handshake (reconnects re-sign)
    creds = auth.Credentials.from_pem("test-key", auth.generate_private_key_pem())
    cfg = SimConfig(
        n_markets=6, autostart=False, seed=7, ping_interval_s=1.0,
        public_key_pem=creds.public_pem(),
    )  # fmt: skip
    async with SimExchange(cfg) as sim:
        # two delta writers COPY in parallel: the DB order must not matter, rec_id rules
        run = Run(sim, pg_dsn, tmp_path / "spill", writer_shards=2, credentials=creds)
        feed = await run.started()
        await run.synced("initial snapshots")

        sim.advance(300)
        await run.synced("steady stream")

        assert sim.inject_gap() == 1  # a dropped message: seq jumps on the sid
        sim.advance(200)
        await run.synced("resync after a seq gap")
        assert feed.stats.resyncs >= 1

        for kind in ("non_json", "unknown_type", "off_grid", "missing_fields"):
            sim.send_garbage(kind)
        sim.advance(200)
        await run.synced("after garbage frames")
        assert feed.stats.decode.errors == {
            "not_json": 1,
            "unknown_type": 1,
            "off_grid_price": 1,
            "missing_field": 1,
        }

        assert sim.sub_error(25) == 1  # slow-reader kill: resubscribe on a new sid
        await until(lambda: feed.stats.resubscribes == 1, "resubscribe after error 25")
        await run.synced("after error 25")
        sim.advance(200)
        await run.synced("stream on the new sid")

        assert sim.disconnect_all() == 1
        await until(lambda: feed.stats.reconnects == 1, "reconnect")
        await run.synced("after reconnect")
        sim.advance(300)
        await run.synced("stream after reconnect")

        # the state to compare: stopping the feed adds DISCONNECT rows after this id
        cut = feed.next_rec_id
        live = {
            t: (
                feed.books.levels(feed.books.slots[t], SIDE_YES),
                feed.books.levels(feed.books.slots[t], SIDE_NO),
            )
            for t in sim.tickers
        }
        truth = {t: (sim.book(t)["yes"], sim.book(t)["no"]) for t in sim.tickers}
        res = await run.finish()

    assert live == truth
    assert res.writer["rows_written"]["orderbook_deltas"] == feed.stats.deltas
    assert res.writer["segments_pending"] == 0

    # the database alone, replayed up to the cut, gives the same valid books
    rebuilt, info = await replay_from_db(pg_dsn, res.session_id, before_rec_id=cut)
    for t in sim.tickers:
        s = rebuilt.slots[t]
        assert rebuilt.valid(s), t
        assert (rebuilt.levels(s, SIDE_YES), rebuilt.levels(s, SIDE_NO)) == live[t], t
    assert info["db_statuses"] == info["replay_statuses"]  # same kernel, same verdicts
    assert {GAP_REASON_SEQ, GAP_REASON_DESYNC, GAP_REASON_SUB_ERROR, GAP_REASON_DISCONNECT} <= set(
        info["gap_reasons"]
    )

    # ... and replayed to the end it equals the feed's final memory (all invalid after stop)
    full, _ = await replay_from_db(pg_dsn, res.session_id)
    for t in sim.tickers:
        a, b = feed.books.slots[t], full.slots[t]
        assert np.array_equal(feed.books.qty[a], full.qty[b]), t
        assert feed.books.valid(a) is full.valid(b) is False, t

    # every delta the sim sent is in the database, once, in the order it was sent
    db_deltas = [
        (r["sid"], r["seq"], r["ticker"], r["side"], r["price"], r["delta"]) for r in info["deltas"]
    ]
    assert db_deltas == sent_deltas(sim)
    conn = await asyncpg.connect(pg_dsn)
    try:
        row = await conn.fetchrow("SELECT * FROM feed_sessions WHERE id = $1", res.session_id)
    finally:
        await conn.close()
    assert row["ended_at"] is not None and row["mode"] == "sim"
    assert row["n_deltas"] == len(db_deltas) and row["n_reconnects"] == 1
    assert row["n_decode_errors"] == 4


async def test_database_restart_mid_run_loses_nothing(tmp_path: Path) -> None:
    pgdata = tmp_path / "pg"
    dsn = await asyncio.to_thread(db.start_embedded, pgdata)
    try:
        cfg = SimConfig(n_markets=4, autostart=False, seed=3)
        async with SimExchange(cfg) as sim:
            run = Run(sim, dsn, tmp_path / "spill")
            await run.started()
            await run.synced("initial snapshots")

            async def pump(seconds: float) -> None:
                """Keep the exchange streaming (the feed must never wait for the DB)."""
                loop = asyncio.get_running_loop()
                end = loop.time() + seconds
                while loop.time() < end:
                    sim.advance(10)
                    await asyncio.sleep(0.01)

            await pump(0.5)
            await until(
                lambda: run.writer.stats()["rows_written"]["orderbook_deltas"] > 0,
                "first deltas written",
            )
            stopping = asyncio.create_task(asyncio.to_thread(db.stop_embedded, pgdata))
            await pump(0.5)
            assert await stopping
            # down for longer than the writer's outage threshold: rings spill to segments
            await pump(3.0)
            await until(lambda: run.writer.stats()["segments_written"] > 0, "spill segments")
            assert not run.writer.stats()["db_up"]
            starting = asyncio.create_task(asyncio.to_thread(db.start_embedded, pgdata))
            await pump(0.5)
            await starting
            await pump(0.5)
            await until(
                lambda: run.writer.stats()["db_up"] and run.writer.stats()["segments_pending"] == 0,
                "segments replayed",
            )
            await run.synced("books after the outage")
            res = await run.finish()
        assert res.writer["rows_spilled"] > 0
        assert res.writer["rows_replayed"] == res.writer["rows_spilled"]
        assert res.writer["outages"] >= 1
        _, info = await replay_from_db(dsn, res.session_id)
        db_deltas = [
            (r["sid"], r["seq"], r["ticker"], r["side"], r["price"], r["delta"])
            for r in info["deltas"]
        ]
        sent = sent_deltas(sim)
        assert len(sent) > 1000
        assert db_deltas == sent  # nothing lost, nothing twice, in order
        assert info["db_statuses"] == info["replay_statuses"]
    finally:
        await asyncio.to_thread(db.stop_embedded, pgdata)
        shutil.rmtree(pgdata, ignore_errors=True)


async def test_market_metadata_and_lifecycle_reach_markets_table(
    pg_dsn: str, tmp_path: Path
) -> None:
    model = ModelParams(lifetime_ms=300, determine_delay_ms=50, settle_delay_ms=50)
    cfg = SimConfig(n_markets=3, autostart=False, seed=5, model=model)
    async with SimExchange(cfg) as sim:
        run = Run(sim, pg_dsn, tmp_path / "spill")
        feed = await run.started()
        await run.synced("initial snapshots")
        while not sim.model.all_settled():
            sim.advance(50)
            await asyncio.sleep(0.001)
        # determined + settled per market
        await until(lambda: feed.stats.lifecycle >= 2 * len(sim.tickers), "lifecycle events")
        results = {t: sim.model.mk[i]["result"] for i, t in enumerate(sim.tickers)}
        await run.finish()
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = {r["ticker"]: r for r in await conn.fetch("SELECT * FROM markets")}
    finally:
        await conn.close()
    assert set(rows) == set(sim.tickers)
    for t in sim.tickers:
        r = rows[t]
        # from REST at start: metadata; from the WS lifecycle channel: the outcome
        assert r["title"] and r["event_ticker"] and r["price_level_structure"]
        assert r["close_time"] is not None
        assert r["status"] == "settled"
        want = "yes" if int(results[t]) == RESULT_YES else "no"
        assert r["result"] == want
        assert r["settlement_value"] == (PRICE_MAX if want == "yes" else 0)
