"""Rings -> PostgreSQL: the writer task of the live node.

The feed pushes records into ``core.ring.Ring``s and never awaits the database.  This
task drains each ring on a time or size trigger and writes the batch with one binary
COPY (``core.ring.encode_copy``).  Book slots are mapped to ``markets.id`` through
``ensure_markets`` (ids cached).

When PostgreSQL is down or slow (connection errors, timeouts) the feed keeps running and
the rings keep filling.  Once a ring is past ``spill_fraction`` of its capacity, holds
overflow records, or the database has been down for ``outage_spill_after_s``, the writer
drains it into segment files (``kalshi_rl.store.spill``).  When the database is back,
segments are replayed oldest first, each through a TEMP staging table and
``INSERT ... ON CONFLICT DO NOTHING`` in one transaction, and deleted only after that
transaction committed.  A batch whose COPY failed with an unknown outcome (connection lost
mid-statement) also goes the idempotent way.  So nothing accepted is lost and nothing is
written twice.  ``close()`` flushes everything, or leaves segments for the next start,
which replays them first (segments carry their session id).

Segments carry the identity of their database too (``db.database_id``): a writer replays
only segments of the database it is connected to, under the session id each carries, and
leaves any other segment on disk untouched (counted as ``segments_foreign``, logged), so a
spill directory used against another database can never leak rows into this one.  The
writer holds a lock on its spill directory until ``close()``: a second writer on the same
directory is refused with a StoreError.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
import numpy as np

from core.ring import COPY_TABLES, Ring, encode_copy
from kalshi_rl.errors import StoreError
from kalshi_rl.store.db import database_id, ensure_markets
from kalshi_rl.store.spill import Segment, SpillDir

log = logging.getLogger(__name__)

Connector = Callable[[], Awaitable[asyncpg.Connection]]

# Errors that mean "the database is unreachable or too slow", not "the data is wrong":
# sockets (OSError), our timeouts, a dead/closed connection (InterfaceError, class 08),
# and class 57 (admin shutdown, cannot connect now, crash shutdown, query canceled).
DB_DOWN_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    # a COPY cut off by a dying server leaves the protocol mid-operation ("cannot switch
    # to state ..."): the connection is unusable and the batch's outcome unknown
    asyncpg.exceptions.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)


@dataclass(frozen=True)
class WriterConfig:
    """Settings of the writer task.

    Attributes:
        flush_interval_s: drain every ring at least this often.
        flush_rows: drain early when any ring holds this many records.
        poll_s: how often the task checks the triggers.
        max_batch_rows: records per COPY statement.
        spill_fraction: while the DB is down, spill a ring once it is this full (0..1).
        outage_spill_after_s: while the DB is down this long, spill every ring each tick.
        reconnect_min_s: first reconnect delay after a failure (doubles up to the max).
        reconnect_max_s: longest delay between reconnect attempts.
        connect_timeout_s: give up one connection attempt after this long.
        copy_timeout_s: a COPY/INSERT slower than this counts as an outage.
    """

    flush_interval_s: float = 0.05
    flush_rows: int = 8192
    poll_s: float = 0.01
    max_batch_rows: int = 65_536
    spill_fraction: float = 0.5
    outage_spill_after_s: float = 2.0
    reconnect_min_s: float = 0.1
    reconnect_max_s: float = 5.0
    connect_timeout_s: float = 5.0
    copy_timeout_s: float = 30.0


class _Held(NamedTuple):
    """A drained batch not yet committed or spilled (its COPY failed)."""

    table: str
    recs: np.ndarray
    session_id: int


class Writer:
    """Drains rings into PostgreSQL with COPY; spills to segment files during outages.

    Args:
        connect: coroutine factory returning a new asyncpg connection (e.g.
            ``lambda: db.connect(dsn)``); called again after every outage.
        rings: table name (a key of ``core.ring.COPY_TABLES``) -> ring of its dtype.
        session_id: feed_sessions.id of the rows (the row must exist).
        ticker_of: book slot -> market ticker (slots must not be reused for another
            market within a session).
        spill_dir: directory for segment files; locked for this writer until ``close()``.
        config: trigger, spill and timeout settings.
        db_id: ``db.database_id`` of the database ``connect`` reaches; learned on the
            first connection when not given.  Every connection is checked against it.
            Pass it when the writer may have to spill before it ever connects: segments
            spilled while it is unknown name no database and are never replayed.
    """

    def __init__(
        self,
        connect: Connector,
        rings: Mapping[str, Ring],
        session_id: int,
        ticker_of: Callable[[int], str],
        *,
        spill_dir: Path,
        config: WriterConfig | None = None,
        db_id: str | None = None,
    ) -> None:
        for table, ring in rings.items():
            spec = COPY_TABLES.get(table)
            if spec is None:
                raise StoreError(f"writer: no COPY encoder for table {table!r}")
            if ring.dtype != spec.dtype:
                raise StoreError(f"writer: ring for {table} holds {ring.dtype}, not {spec.dtype}")
        self._connect = connect
        self.rings = dict(rings)
        self.session_id = int(session_id)
        self._ticker_of = ticker_of
        self.config = config or WriterConfig()
        self.db_id = db_id
        self.spill = SpillDir(spill_dir, exclusive=True)
        self._foreign: set[Path] = set()  # segments of another database: never replayed
        self._conn: asyncpg.Connection | None = None
        self._slot_ticker: dict[int, str] = {}
        self._ticker_id: dict[str, int] = {}
        self._held: list[_Held] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lock = asyncio.Lock()
        self._next_connect = 0.0
        self._backoff = self.config.reconnect_min_s
        self._down_since: float | None = time.monotonic()  # down until the first connect
        # metrics
        self.db_up = False
        self.outages = 0
        self.batches = 0
        self.rows_written = dict.fromkeys(self.rings, 0)  # tables of this writer's rings
        self.last_flush_ms = 0.0
        self.last_flush_rows = 0
        self.rows_spilled = 0
        self.rows_replayed = 0
        self.rows_rejected = 0
        self.segments_written = 0
        self.segments_replayed = 0
        self.segments_quarantined = 0
        self.segments_foreign = 0
        self.segments_pending = len(self.spill.pending())

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> asyncio.Task[None]:
        """Start the flush task on the running loop (replays leftover segments first)."""
        if self._task is not None:
            raise StoreError("writer already started")
        self._task = asyncio.create_task(self.run(), name="store-writer")
        return self._task

    async def run(self) -> None:
        """The flush loop; returns after ``close()`` asks it to stop."""
        cfg = self.config
        last = time.monotonic()
        await self.flush()
        while not self._stopping:
            await asyncio.sleep(cfg.poll_s)
            now = time.monotonic()
            if now - last >= cfg.flush_interval_s or any(
                len(r) >= cfg.flush_rows for r in self.rings.values()
            ):
                last = now
                await self.flush()

    async def close(self) -> None:
        """Stop the task and flush everything: to PostgreSQL, else to segment files."""
        self._stopping = True
        if self._task is not None:
            task, self._task = self._task, None
            try:
                await task  # returns after its current flush
            except Exception:
                # still flush what is buffered; the task's failure is logged with its trace
                log.exception("writer: flush task failed")
        try:
            await self.flush(final=True)
        finally:
            self.spill.close()  # the next writer may take the directory over
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(*DB_DOWN_ERRORS):
                await asyncio.wait_for(conn.close(), self.config.connect_timeout_s)

    # ------------------------------------------------------------------ one flush
    async def flush(self, *, final: bool = False) -> None:
        """One round: replay segments, write held batches and rings; spill when down.

        Args:
            final: shutdown round: connect now (ignoring backoff) and, if the database
                is unreachable, spill every record still in memory.
        """
        async with self._lock:  # one connection: rounds must not interleave
            await self._flush(final)

    async def _flush(self, final: bool) -> None:
        t0 = time.perf_counter()
        rows = 0
        if self._conn is None:
            await self._try_connect(force=final)
        if self._conn is not None:
            try:
                rows += await self._replay_segments()
                rows += await self._write_held()
                for table, ring in self.rings.items():
                    # bounded by what is there now, so a fast producer cannot pin us here
                    left = len(ring)
                    while left > 0:
                        recs = ring.drain(min(left, self.config.max_batch_rows))
                        left -= recs.shape[0]
                        rows += await self._write_live(table, recs)
            except DB_DOWN_ERRORS as exc:
                self._mark_down(exc)
        if self._conn is None:
            try:
                await self._spill_from_memory(final)
            except OSError as exc:
                # the disk fails too: what could not be written stays in memory (held)
                log.error("writer: spilling to %s failed: %s", self.spill.path, exc)
        if rows:
            self.last_flush_ms = (time.perf_counter() - t0) * 1e3
            self.last_flush_rows = rows

    # ------------------------------------------------------------------ connection state
    async def _try_connect(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now < self._next_connect:
            return
        try:
            conn = await asyncio.wait_for(self._connect(), self.config.connect_timeout_s)
            got = await asyncio.wait_for(database_id(conn), self.config.connect_timeout_s)
        except DB_DOWN_ERRORS as exc:
            self._next_connect = now + self._backoff
            self._backoff = min(self._backoff * 2, self.config.reconnect_max_s)
            log.debug("writer: connect failed (%s); next try in %.2fs", exc, self._backoff)
            return
        if self.db_id is None:
            self.db_id = got
        elif got != self.db_id:
            # the DSN now reaches another database: write nothing there, keep buffering
            conn.terminate()
            self._next_connect = now + self.config.reconnect_max_s
            log.error("writer: connected to database %s, expected %s; not writing", got,
                      self.db_id)  # fmt: skip
            return
        self._conn = conn
        self._backoff = self.config.reconnect_min_s
        if not self.db_up and self.outages:
            log.warning("writer: database back after %.1fs", self._down_for())
        self.db_up = True
        self._down_since = None

    def _mark_down(self, exc: BaseException) -> None:
        if self._conn is not None:
            self._conn.terminate()  # drop the socket; nothing on it is trusted any more
            self._conn = None
        if self.db_up:
            self.outages += 1
            self._down_since = time.monotonic()
            log.warning("writer: database unreachable (%s: %s); buffering",
                        type(exc).__name__, exc)  # fmt: skip
        self.db_up = False
        self._next_connect = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.config.reconnect_max_s)

    def _down_for(self) -> float:
        return 0.0 if self._down_since is None else time.monotonic() - self._down_since

    # ------------------------------------------------------------------ writing
    async def _write_live(self, table: str, recs: np.ndarray) -> int:
        """COPY a freshly drained batch straight into its table."""
        conn = self._conn
        assert conn is not None, "_write_live runs only while connected"
        try:
            ids = await self._market_ids(conn, self._tickers_for(recs))
            data = encode_copy(table, recs, self.session_id, ids)
            status = await conn.copy_to_table(
                table,
                source=memoryview(data),  # a plain bytes source is taken for a file path
                columns=list(COPY_TABLES[table].columns),
                format="binary",
                timeout=self.config.copy_timeout_s,
            )
        except DB_DOWN_ERRORS:
            # the COPY may or may not have committed: replay it idempotently later
            self._held.append(_Held(table, recs, self.session_id))
            raise
        except asyncpg.UniqueViolationError:
            # rows of this batch are already there (a replayed or repeated batch)
            return await self._write_or_reject(table, recs, self.session_id)
        except asyncpg.PostgresError as exc:
            await self._reject(table, recs, self.session_id, exc)
            return 0
        self.batches += 1
        n = _status_count(status)
        self.rows_written[table] = self.rows_written.get(table, 0) + n
        return n

    async def _write_held(self) -> int:
        rows = 0
        while self._held:
            h = self._held[0]
            rows += await self._write_or_reject(h.table, h.recs, h.session_id)
            self._held.pop(0)
        return rows

    async def _write_or_reject(self, table: str, recs: np.ndarray, session_id: int) -> int:
        try:
            return await self._write_idempotent(table, recs, session_id)
        except asyncpg.PostgresError as exc:
            if isinstance(exc, DB_DOWN_ERRORS):
                raise
            await self._reject(table, recs, session_id, exc)
            return 0

    async def _reject(
        self, table: str, recs: np.ndarray, session_id: int, exc: BaseException
    ) -> None:
        """PostgreSQL refuses these rows (not an outage): park them as a ``.bad`` segment."""
        log.error("writer: PostgreSQL rejects %d %s rows: %s", recs.shape[0], table, exc)
        path = await asyncio.to_thread(
            functools.partial(
                self.spill.write, table, recs, session_id, self._tickers_for(recs),
                db_id=self.db_id or "",
            )
        )  # fmt: skip
        await asyncio.to_thread(self.spill.quarantine, path)
        self.segments_quarantined += 1
        self.rows_rejected += recs.shape[0]

    async def _write_idempotent(
        self, table: str, recs: np.ndarray, session_id: int, tickers: dict[int, str] | None = None
    ) -> int:
        """Stage the batch in a TEMP table, then INSERT ... ON CONFLICT DO NOTHING.

        Returns:
            Rows actually inserted (duplicates of committed rows are skipped).
        """
        conn = self._conn
        assert conn is not None, "_write_idempotent runs only while connected"
        ids = await self._market_ids(conn, tickers or self._tickers_for(recs))
        data = encode_copy(table, recs, session_id, ids)
        cols = ", ".join(COPY_TABLES[table].columns)
        stage = f"_stage_{table}"
        timeout = self.config.copy_timeout_s
        async with conn.transaction():
            await conn.execute(
                f"CREATE TEMP TABLE {stage} (LIKE {table}) ON COMMIT DROP", timeout=timeout
            )
            await conn.copy_to_table(
                stage,
                source=memoryview(data),
                columns=list(COPY_TABLES[table].columns),
                format="binary",
                timeout=timeout,
            )
            status = await conn.execute(
                f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT DO NOTHING",
                timeout=timeout,
            )
        self.batches += 1
        n = _status_count(status)
        self.rows_written[table] = self.rows_written.get(table, 0) + n
        return n

    async def _replay_segments(self) -> int:
        rows = 0
        if self.segments_pending <= 0:
            return 0  # skip the directory listing on the common path
        for path in self.spill.pending():
            if path in self._foreign:
                continue
            try:
                seg: Segment = await asyncio.to_thread(self.spill.read, path)
            except StoreError as exc:
                log.error("writer: quarantining unreadable segment: %s", exc)
                await asyncio.to_thread(self.spill.quarantine, path)
                self.segments_quarantined += 1
                self.segments_pending -= 1
                continue
            if not seg.db_id or seg.db_id != self.db_id:
                # rows of another database (or of none known): never write them here
                log.error("writer: segment %s belongs to database %s, not %s: left in %s",
                          path.name, seg.db_id or "(unknown)", self.db_id,
                          self.spill.path)  # fmt: skip
                self._foreign.add(path)
                self.segments_foreign += 1
                self.segments_pending -= 1
                continue
            try:
                rows += await self._write_idempotent(
                    seg.table, seg.recs, seg.session_id, seg.tickers
                )
            except asyncpg.PostgresError as exc:
                if isinstance(exc, DB_DOWN_ERRORS):
                    raise
                # the server refuses these rows (not an outage): keep them aside, go on
                log.error("writer: PostgreSQL rejects segment %s: %s", path.name, exc)
                await asyncio.to_thread(self.spill.quarantine, path)
                self.segments_quarantined += 1
                self.segments_pending -= 1
                self.rows_rejected += seg.recs.shape[0]
                continue
            await asyncio.to_thread(self.spill.remove, path)  # only after the commit
            self.segments_pending -= 1
            self.segments_replayed += 1
            self.rows_replayed += seg.recs.shape[0]
        return rows

    # ------------------------------------------------------------------ spilling
    async def _spill_from_memory(self, final: bool) -> None:
        cfg = self.config
        long_outage = final or self._down_for() >= cfg.outage_spill_after_s
        if long_outage:
            while self._held:
                h = self._held[0]
                await self._spill(h.table, h.recs, h.session_id)
                self._held.pop(0)
        for table, ring in self.rings.items():
            if long_outage or ring.overflow_pending or ring.fill_fraction >= cfg.spill_fraction:
                while len(ring):
                    recs = ring.drain(cfg.max_batch_rows)
                    try:
                        await self._spill(table, recs, self.session_id)
                    except OSError:
                        # disk trouble too: keep the batch in memory, retried next round
                        self._held.append(_Held(table, recs, self.session_id))
                        raise

    async def _spill(self, table: str, recs: np.ndarray, session_id: int) -> None:
        tickers = self._tickers_for(recs)
        if self.db_id is None:
            log.error("writer: spilling %d %s rows before knowing the database: they will "
                      "not be replayed automatically", recs.shape[0], table)  # fmt: skip
        await asyncio.to_thread(
            functools.partial(
                self.spill.write, table, recs, session_id, tickers, db_id=self.db_id or ""
            )
        )
        self.segments_written += 1
        self.segments_pending += 1
        self.rows_spilled += recs.shape[0]

    # ------------------------------------------------------------------ markets
    def _tickers_for(self, recs: np.ndarray) -> dict[int, str]:
        out: dict[int, str] = {}
        for s in np.unique(recs["market"]).tolist():
            t = self._slot_ticker.get(s)
            if t is None:
                t = self._slot_ticker[s] = self._ticker_of(s)
            out[s] = t
        return out

    async def _market_ids(self, conn: asyncpg.Connection, tickers: dict[int, str]) -> np.ndarray:
        """slot -> markets.id array for the given slots (-1 elsewhere)."""
        missing = [t for t in set(tickers.values()) if t not in self._ticker_id]
        if missing:
            self._ticker_id.update(await ensure_markets(conn, missing))
        ids = np.full(max(tickers, default=-1) + 1, -1, dtype=np.int32)
        for slot, t in tickers.items():
            ids[slot] = self._ticker_id[t]
        return ids

    # ------------------------------------------------------------------ metrics
    def stats(self) -> dict[str, Any]:
        """Counters for the progress line and the dashboard (see docs/storage.md)."""
        return {
            "db_up": self.db_up,
            "down_for_s": round(self._down_for(), 3),
            "outages": self.outages,
            "batches": self.batches,
            "rows_written": dict(self.rows_written),
            "rows_written_total": sum(self.rows_written.values()),
            "last_flush_ms": round(self.last_flush_ms, 3),
            "last_flush_rows": self.last_flush_rows,
            "rows_spilled": self.rows_spilled,
            "rows_replayed": self.rows_replayed,
            "rows_rejected": self.rows_rejected,
            "rows_held": sum(h.recs.shape[0] for h in self._held),
            "segments_written": self.segments_written,
            "segments_replayed": self.segments_replayed,
            "segments_quarantined": self.segments_quarantined,
            "segments_foreign": self.segments_foreign,
            "segments_pending": self.segments_pending,
            "rings": {t: r.stats() for t, r in self.rings.items()},
        }


def _status_count(status: str) -> int:
    # "COPY 123" / "INSERT 0 123"
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError as exc:
        raise StoreError(f"unexpected command status {status!r}") from exc
