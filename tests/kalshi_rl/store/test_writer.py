"""kalshi_rl.store.writer against real PostgreSQL servers: normal path, outages, replays."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from core.dtypes import (
    DELTA_DTYPE,
    GAP_DTYPE,
    NO_PRICE,
    SIDE_NONE,
    SNAPSHOT_LEVEL_DTYPE,
    TRADE_DTYPE,
)
from core.ring import Ring
from kalshi_rl.errors import StoreError
from kalshi_rl.store import db
from kalshi_rl.store.spill import SpillDir
from kalshi_rl.store.writer import Connector, Writer, WriterConfig

TABLE_DTYPES = {
    "orderbook_deltas": DELTA_DTYPE,
    "orderbook_snapshots": SNAPSHOT_LEVEL_DTYPE,
    "trades": TRADE_DTYPE,
    "feed_gaps": GAP_DTYPE,
}
FAST = WriterConfig(
    flush_interval_s=0.02,
    poll_s=0.005,
    outage_spill_after_s=0.3,
    reconnect_min_s=0.05,
    reconnect_max_s=0.3,
    connect_timeout_s=3.0,
    copy_timeout_s=10.0,
)


def ticker_of(slot: int) -> str:
    return f"KXTEST-{slot}"


def records(table: str, start: int, n: int, n_markets: int = 3) -> np.ndarray:
    """n records of ``table``'s dtype with rec_ids start.. (unique per table and session)."""
    recs = np.zeros(n, TABLE_DTYPES[table])
    ids = np.arange(start, start + n)
    recs["rec_id"] = ids
    recs["market"] = ids % n_markets
    recs["sid"] = 1
    recs["recv_ts"] = 1_700_000_000_000_000_000 + ids
    if table == "orderbook_deltas":
        recs["delta"] = np.where(ids % 2, -ids, ids)
        recs["price"] = ids % 1001
        recs["seq"] = ids
    elif table == "orderbook_snapshots":
        recs["qty"] = ids + 1
        recs["price"] = ids % 1001
        recs["side"] = ids % 2
        marker = ids % 7 == 0  # empty-snapshot marker rows
        recs["side"][marker] = SIDE_NONE
        recs["price"][marker] = NO_PRICE
        recs["qty"][marker] = 0
    elif table == "trades":
        recs["trade_id_hi"] = ids + 1
        recs["trade_id_lo"] = ids * 3
        recs["count"] = ids * 100
        recs["yes_price"] = ids % 1001
    else:
        recs["expected_seq"] = ids
        recs["got_seq"] = ids + 5
        recs["reason"] = 1
    return recs


def make_rings(capacity: int = 1 << 14) -> dict[str, Ring]:
    return {t: Ring(dt, capacity) for t, dt in TABLE_DTYPES.items()}


def connector(dsn: str) -> Connector:
    return lambda: db.connect(dsn)


async def new_session(dsn: str) -> int:
    conn = await db.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "INSERT INTO feed_sessions (source, mode) VALUES ('test', 'sim') RETURNING id"
            )
        )
    finally:
        await conn.close()


async def rec_ids(dsn: str, table: str, session_id: int) -> list[int]:
    conn = await db.connect(dsn)
    try:
        rows = await conn.fetch(
            f"SELECT rec_id FROM {table} WHERE session_id = $1 ORDER BY rec_id", session_id
        )
        return [r["rec_id"] for r in rows]
    finally:
        await conn.close()


async def database_id(dsn: str) -> str:
    conn = await db.connect(dsn)
    try:
        return await db.database_id(conn)
    finally:
        await conn.close()


async def wait_until(pred: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def push_all(rings: dict[str, Ring], start: int, n: int) -> None:
    for table, ring in rings.items():
        ring.push_batch(records(table, start, n))


# --------------------------------------------------------------------------- normal path


async def test_end_to_end_every_table(pg_dsn: str, tmp_path: Path) -> None:
    session = await new_session(pg_dsn)
    rings = make_rings()
    w = Writer(connector(pg_dsn), rings, session, ticker_of, spill_dir=tmp_path, config=FAST)
    w.start()
    for k in range(5):
        push_all(rings, k * 200, 200)
        await asyncio.sleep(0.03)
    await wait_until(lambda: all(len(r) == 0 for r in rings.values()), "rings drained")
    await w.close()
    st = w.stats()
    assert st["db_up"] is True and st["outages"] == 0
    assert st["rows_written"] == dict.fromkeys(TABLE_DTYPES, 1000)
    assert st["batches"] >= 4 and st["rows_spilled"] == 0 and st["segments_pending"] == 0
    for table in TABLE_DTYPES:
        assert await rec_ids(pg_dsn, table, session) == list(range(1000)), table
    # content: markets mapped through ensure_markets, values as pushed
    conn = await db.connect(pg_dsn)
    try:
        row = await conn.fetchrow(
            "SELECT m.ticker, d.delta, d.price FROM orderbook_deltas d"
            " JOIN markets m ON m.id = d.market_id WHERE d.rec_id = 7"
        )
        assert tuple(row) == ("KXTEST-1", -7, 7)
        tid = await conn.fetchval("SELECT trade_id FROM trades WHERE rec_id = 5")
        assert tid == uuid.UUID(int=(6 << 64) | 15)
        marker = await conn.fetchrow(
            "SELECT side, price, qty FROM orderbook_snapshots WHERE rec_id = 14"
        )
        assert tuple(marker) == (-1, -1, 0)
    finally:
        await conn.close()


async def test_ring_overflow_path_reaches_the_database(pg_dsn: str, tmp_path: Path) -> None:
    session = await new_session(pg_dsn)
    rings = {"orderbook_deltas": Ring(DELTA_DTYPE, 64)}
    w = Writer(connector(pg_dsn), rings, session, ticker_of, spill_dir=tmp_path, config=FAST)
    for k in range(10):  # writer not running: the ring overflows into its Python list
        rings["orderbook_deltas"].push_batch(records("orderbook_deltas", k * 100, 100))
    assert rings["orderbook_deltas"].overflow == 1000 - 64
    await w.close()  # shutdown flush takes ring then overflow
    assert await rec_ids(pg_dsn, "orderbook_deltas", session) == list(range(1000))


async def test_duplicate_batch_takes_the_idempotent_path(pg_dsn: str, tmp_path: Path) -> None:
    session = await new_session(pg_dsn)
    rings = make_rings()
    w = Writer(connector(pg_dsn), rings, session, ticker_of, spill_dir=tmp_path, config=FAST)
    push_all(rings, 0, 100)
    await w.flush()
    # the same rows again plus new ones: COPY hits the primary key, the batch is staged
    push_all(rings, 50, 100)
    await w.flush()
    await w.close()
    for table in TABLE_DTYPES:
        assert await rec_ids(pg_dsn, table, session) == list(range(150)), table
    assert w.stats()["rows_written_total"] == 4 * 150


async def test_connection_killed_between_batches(pg_dsn: str, tmp_path: Path) -> None:
    session = await new_session(pg_dsn)
    rings = make_rings()
    w = Writer(connector(pg_dsn), rings, session, ticker_of, spill_dir=tmp_path, config=FAST)
    push_all(rings, 0, 100)
    await w.flush()
    assert w.db_up
    admin = await db.connect(pg_dsn)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert killed == 1
    finally:
        await admin.close()
    push_all(rings, 100, 100)
    await w.flush()  # COPY fails on the dead connection: outcome unknown, batch held
    st = w.stats()
    assert st["db_up"] is False and st["outages"] == 1 and st["rows_held"] > 0
    await asyncio.sleep(FAST.reconnect_max_s)
    await w.flush()  # reconnects, writes the held batch through the staging table
    assert w.db_up
    await w.close()
    for table in TABLE_DTYPES:
        assert await rec_ids(pg_dsn, table, session) == list(range(200)), table


async def test_writer_rejects_mismatched_ring(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="holds"):
        Writer(connector("postgresql://x@127.0.0.1:1/x"), {"trades": Ring(DELTA_DTYPE, 8)}, 1,
               ticker_of, spill_dir=tmp_path)  # fmt: skip
    with pytest.raises(StoreError, match="no COPY encoder"):
        Writer(connector("postgresql://x@127.0.0.1:1/x"), {"models": Ring(DELTA_DTYPE, 8)}, 1,
               ticker_of, spill_dir=tmp_path)  # fmt: skip


# --------------------------------------------------------------------------- replays


async def test_replay_twice_is_idempotent(pg_dsn: str, tmp_path: Path) -> None:
    session = await new_session(pg_dsn)
    spill = SpillDir(tmp_path / "spill")
    tick = {s: ticker_of(s) for s in range(3)}
    batch = records("orderbook_deltas", 0, 300)
    dbid = await database_id(pg_dsn)
    first = spill.write("orderbook_deltas", batch, session, tick, db_id=dbid)
    saved = first.read_bytes()
    spill.write("orderbook_deltas", batch[100:], session, tick, db_id=dbid)  # overlaps
    w = Writer(connector(pg_dsn), {}, session, ticker_of, spill_dir=spill.path, config=FAST)
    await w.flush()
    await w.close()
    assert spill.pending() == []
    assert w.stats()["rows_replayed"] == 500 and w.stats()["rows_written_total"] == 300
    # a crash between commit and delete leaves a segment whose rows are in: replay again
    first.write_bytes(saved)
    w2 = Writer(connector(pg_dsn), {}, session, ticker_of, spill_dir=spill.path, config=FAST)
    assert w2.stats()["segments_pending"] == 1
    await w2.close()
    assert spill.pending() == []
    assert w2.stats()["rows_replayed"] == 300 and w2.stats()["rows_written_total"] == 0
    assert await rec_ids(pg_dsn, "orderbook_deltas", session) == list(range(300))


async def test_shutdown_flush_and_spill_when_db_unreachable(pg_dsn: str, tmp_path: Path) -> None:
    session = await new_session(pg_dsn)
    spill_dir = tmp_path / "spill"
    # 1) database up: close() writes everything buffered, nothing is spilled
    rings = make_rings()
    w = Writer(connector(pg_dsn), rings, session, ticker_of, spill_dir=spill_dir, config=FAST)
    w.start()
    push_all(rings, 0, 500)
    await w.close()
    assert w.stats()["rows_spilled"] == 0
    # 2) database unreachable (nothing listens on port 1): close() leaves segments
    rings = make_rings()
    dead = Writer(connector("postgresql://kalshi@127.0.0.1:1/none"), rings, session, ticker_of,
                  spill_dir=spill_dir, config=FAST,
                  db_id=await database_id(pg_dsn))  # fmt: skip
    dead.start()
    push_all(rings, 500, 500)
    await dead.close()
    st = dead.stats()
    assert st["db_up"] is False and st["rows_spilled"] == 4 * 500
    assert st["segments_pending"] == len(SpillDir(spill_dir).pending()) >= 4
    assert all(len(r) == 0 for r in rings.values())
    # 3) the next start replays them first, under the session id they carry
    other = await new_session(pg_dsn)
    w3 = Writer(connector(pg_dsn), make_rings(), other, ticker_of, spill_dir=spill_dir,
                config=FAST)  # fmt: skip
    w3.start()
    await wait_until(lambda: w3.stats()["segments_pending"] == 0, "segments replayed")
    await w3.close()
    assert SpillDir(spill_dir).pending() == []
    for table in TABLE_DTYPES:
        assert await rec_ids(pg_dsn, table, session) == list(range(1000)), table
        assert await rec_ids(pg_dsn, table, other) == []


async def test_segments_replay_only_into_their_database(
    pg_dsn: str, pg_dsn_other: str, tmp_path: Path
) -> None:
    """A shared spill directory: A's leftovers never reach B; the next writer on A takes them."""
    spill_dir = tmp_path / "spill"
    id_a, id_b = await database_id(pg_dsn), await database_id(pg_dsn_other)
    assert id_a != id_b
    session_a, session_b = await new_session(pg_dsn), await new_session(pg_dsn_other)
    assert session_a == session_b  # fresh databases: the same session id, so no FK saves us
    # 1) a process on A finds A unreachable and exits leaving segments
    rings = make_rings()
    dead = Writer(connector("postgresql://kalshi@127.0.0.1:1/none"), rings, session_a,
                  ticker_of, spill_dir=spill_dir, config=FAST, db_id=id_a)  # fmt: skip
    push_all(rings, 0, 300)
    await dead.close()
    left = SpillDir(spill_dir).pending()
    assert len(left) >= 4 and dead.stats()["rows_spilled"] == 4 * 300
    # 2) a writer on B with the same directory writes its own rows, none of A's
    rings = make_rings()
    wb = Writer(connector(pg_dsn_other), rings, session_b, ticker_of, spill_dir=spill_dir,
                config=FAST)  # fmt: skip
    assert wb.stats()["segments_pending"] == len(left)
    wb.start()
    push_all(rings, 1000, 50)
    await wait_until(lambda: wb.stats()["rows_written_total"] == 4 * 50, "B's own rows")
    await wb.close()
    st = wb.stats()
    assert st["segments_foreign"] == len(left) and st["segments_pending"] == 0
    assert st["rows_replayed"] == 0 and st["segments_quarantined"] == 0
    assert SpillDir(spill_dir).pending() == left  # untouched, still A's
    for table in TABLE_DTYPES:
        assert await rec_ids(pg_dsn_other, table, session_b) == list(range(1000, 1050)), table
    # 3) the next writer on A (a later session) replays them under A's first session
    later = await new_session(pg_dsn)
    wa = Writer(connector(pg_dsn), make_rings(), later, ticker_of, spill_dir=spill_dir,
                config=FAST)  # fmt: skip
    wa.start()
    await wait_until(lambda: wa.stats()["segments_pending"] == 0, "A's segments replayed")
    await wa.close()
    assert wa.stats()["segments_foreign"] == 0 and wa.stats()["rows_replayed"] == 4 * 300
    assert SpillDir(spill_dir).pending() == []
    for table in TABLE_DTYPES:
        assert await rec_ids(pg_dsn, table, session_a) == list(range(300)), table
        assert await rec_ids(pg_dsn, table, later) == []


async def test_segment_without_a_database_is_not_replayed(pg_dsn: str, tmp_path: Path) -> None:
    session = await new_session(pg_dsn)
    spill = SpillDir(tmp_path)
    tick = {s: ticker_of(s) for s in range(3)}
    spill.write("orderbook_deltas", records("orderbook_deltas", 0, 10), session, tick, db_id="")
    w = Writer(connector(pg_dsn), {}, session, ticker_of, spill_dir=tmp_path, config=FAST)
    await w.close()
    assert w.stats()["segments_foreign"] == 1 and len(spill.pending()) == 1
    assert await rec_ids(pg_dsn, "orderbook_deltas", session) == []


async def test_second_writer_on_a_spill_dir_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    session = await new_session(pg_dsn)
    w = Writer(connector(pg_dsn), make_rings(), session, ticker_of, spill_dir=tmp_path,
               config=FAST)  # fmt: skip
    with pytest.raises(StoreError, match=r"spill directory .* is in use by another writer"):
        Writer(connector(pg_dsn), make_rings(), session, ticker_of, spill_dir=tmp_path,
               config=FAST)  # fmt: skip
    await w.close()
    w2 = Writer(connector(pg_dsn), make_rings(), session, ticker_of, spill_dir=tmp_path,
                config=FAST)  # fmt: skip
    await w2.close()


async def test_writer_refuses_a_connection_to_another_database(
    pg_dsn: str, pg_dsn_other: str, tmp_path: Path
) -> None:
    session = await new_session(pg_dsn)
    rings = make_rings()
    w = Writer(connector(pg_dsn_other), rings, session, ticker_of, spill_dir=tmp_path,
               config=FAST, db_id=await database_id(pg_dsn))  # fmt: skip
    push_all(rings, 0, 20)
    await w.close()
    assert w.stats()["db_up"] is False and w.stats()["rows_spilled"] == 4 * 20
    assert w.stats()["rows_written_total"] == 0


# --------------------------------------------------------------------------- outage


@pytest.mark.slow
async def test_database_outage_nothing_lost_nothing_twice(tmp_path: Path) -> None:
    pgdata = tmp_path / "pg"
    admin_dsn = await asyncio.to_thread(db.start_embedded, pgdata)
    try:
        conn = await db.connect(admin_dsn)
        try:
            await db.migrate(conn)
        finally:
            await conn.close()
        session = await new_session(admin_dsn)
        rings = make_rings()
        spill_dir = tmp_path / "spill"
        w = Writer(connector(admin_dsn), rings, session, ticker_of, spill_dir=spill_dir,
                   config=FAST)  # fmt: skip
        w.start()
        push_all(rings, 0, 300)
        await wait_until(lambda: w.stats()["rows_written_total"] == 4 * 300, "first rows")

        await asyncio.to_thread(db.stop_embedded, pgdata)
        n = 300
        for _ in range(10):  # the feed keeps going while the database is down
            push_all(rings, n, 100)
            n += 100
            await asyncio.sleep(0.05)
        await wait_until(lambda: w.stats()["segments_pending"] > 0, "spill segments")
        st = w.stats()
        assert st["db_up"] is False and st["outages"] == 1 and st["rows_spilled"] > 0
        assert list(spill_dir.glob("*.seg"))
        push_all(rings, n, 100)
        n += 100

        await asyncio.to_thread(db.start_embedded, pgdata)
        await wait_until(
            lambda: (
                w.db_up
                and w.stats()["segments_pending"] == 0
                and all(len(r) == 0 for r in rings.values())
            ),
            "replay after the outage",
        )
        push_all(rings, n, 100)
        n += 100
        await w.close()
        st = w.stats()
        assert st["rows_replayed"] == st["rows_spilled"] > 0
        assert not list(spill_dir.glob("*.seg"))
        for table in TABLE_DTYPES:
            ids = await rec_ids(admin_dsn, table, session)
            assert ids == list(range(n)), table  # every row, exactly once (rec_id is the PK)
    finally:
        await asyncio.to_thread(db.stop_embedded, pgdata)
        shutil.rmtree(pgdata, ignore_errors=True)
