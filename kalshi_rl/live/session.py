"""What a live node writes about itself: the session row, market metadata, lifecycle.

Pieces the node owns and ``collect``/``trade``/``up`` used to wire inline: the
``feed_sessions`` row (opened before the first record, closed with the feed's counters),
REST market metadata upserted into ``markets``, ``market_lifecycle_v2`` status/result
updates batched off the hot path, and the writers of the feed rings seen as one.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

# Errors meaning "PostgreSQL is unreachable or went away", not "the statement is wrong".
DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


async def create_session(conn: Any, source: str, mode: str, tickers: list[str]) -> int:
    """Insert a feed_sessions row; returns its id."""
    import kalshi_rl

    return int(
        await conn.fetchval(
            "INSERT INTO feed_sessions (source, mode, markets, host, version)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id",
            source,
            mode,
            tickers,
            socket.gethostname(),
            getattr(kalshi_rl, "__version__", None),
        )
    )


async def close_session(
    pool: asyncpg.Pool, session_id: int, stats: dict[str, Any], books_valid: int | None = None
) -> bool:
    """Set ended_at and the counters of a session row. False if the DB is unreachable.

    ``stats`` is ``FeedStats.as_dict()``: n_gaps = gap events, n_gap_rows = their rows,
    n_reconnects = reconnections, rejects = decoder rejections by reason (sql/002).
    """
    for attempt in (1, 2):  # a pooled connection may have died with a server restart
        try:
            async with asyncio.timeout(10):
                await pool.execute(
                    "UPDATE feed_sessions SET ended_at = now(), n_messages = $2,"
                    " n_deltas = $3, n_snapshots = $4, n_trades = $5, n_gaps = $6,"
                    " n_decode_errors = $7, n_reconnects = $8, n_gap_rows = $9,"
                    " n_end_rows = $10, n_connect_failures = $11, n_desyncs = $12,"
                    " rejects = $13, books_valid_at_stop = $14, uptime = $15 WHERE id = $1",
                    session_id,
                    stats["msgs"],
                    stats["deltas"],
                    stats["snapshots"],
                    stats["trades"],
                    stats["gaps"],
                    stats["decode_errors"],
                    stats["reconnects"],
                    stats["gap_rows"],
                    stats["end_rows"],
                    stats["connect_failures"],
                    stats["desyncs"],
                    {str(k): int(v) for k, v in stats["decode_errors_by_reason"].items()},
                    books_valid,
                    stats["uptime"],
                )
            return True
        except DB_ERRORS as exc:
            if attempt == 2:
                log.error("could not close session %d (database: %s)", session_id, exc)
    return False


class WriterGroup:
    """The node's writers seen as one: summed counters, closed together."""

    def __init__(self, writers: list[Any]) -> None:
        self.writers = writers

    @property
    def rows_written(self) -> dict[str, int]:
        """Rows committed per table, over all writers."""
        out: dict[str, int] = {}
        for w in self.writers:
            for t, n in w.rows_written.items():
                out[t] = out.get(t, 0) + n
        return out

    def stats(self) -> dict[str, Any]:
        """Writer stats with numbers summed, ``db_up`` true only if every writer is up."""
        merged: dict[str, Any] = {}
        for st in (w.stats() for w in self.writers):
            for k, v in st.items():
                if k == "rings":
                    merged.setdefault(k, []).append(v)
                elif k == "db_up":
                    merged[k] = merged.get(k, True) and v
                elif k == "rows_written":
                    acc = merged.setdefault(k, {})
                    for t, n in v.items():
                        acc[t] = acc.get(t, 0) + n
                elif isinstance(v, int | float) and not isinstance(v, bool):
                    merged[k] = merged.get(k, 0) + v
                else:
                    merged[k] = v
        return merged

    def start(self) -> None:
        """Start every writer's flush task."""
        for w in self.writers:
            w.start()

    async def close(self) -> None:
        """Flush and close every writer (all are attempted)."""
        results = await asyncio.gather(*(w.close() for w in self.writers), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r


# market_lifecycle_v2 event_type -> markets.status (REST vocabulary, kalshi-protocol.md §5)
_LIFECYCLE_STATUS = {
    "created": "initialized",
    "activated": "active",
    "deactivated": "inactive",
    "determined": "determined",
    "settled": "settled",
}


def _ts(v: Any) -> datetime | None:
    if not isinstance(v, str) or not v:
        return None
    try:
        return datetime.fromisoformat(v)
    except ValueError:
        return None


def _ms_time(ms: int) -> datetime | None:
    """Unix ms -> aware datetime; None for NO_TS (-1)."""
    return None if ms < 0 else datetime.fromtimestamp(ms / 1000, UTC)


def _settlement_ticks(m: dict[str, Any]) -> int | None:
    from kalshi_rl.kalshi import protocol

    v = m.get("settlement_value_dollars")
    if not isinstance(v, str):
        return None
    try:
        return protocol.parse_price(v)
    except protocol.DecodeError:
        return None


async def upsert_market_meta(conn: Any, markets: list[dict[str, Any]]) -> int:
    """Write REST market objects' metadata into ``markets`` (insert or update by ticker)."""
    rows = [
        (
            m["ticker"],
            m.get("event_ticker"),
            m.get("series_ticker"),
            m.get("title"),
            m.get("status"),
            _ts(m.get("open_time")),
            _ts(m.get("close_time")),
            m.get("result") or None,
            _settlement_ticks(m),
            m.get("price_level_structure"),
        )
        for m in markets
        if isinstance(m.get("ticker"), str)
    ]
    if rows:
        await conn.executemany(
            "INSERT INTO markets (ticker, event_ticker, series_ticker, title, status, open_time,"
            " close_time, result, settlement_value, price_level_structure)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            " ON CONFLICT (ticker) DO UPDATE SET"
            " event_ticker = coalesce(EXCLUDED.event_ticker, markets.event_ticker),"
            " series_ticker = coalesce(EXCLUDED.series_ticker, markets.series_ticker),"
            " title = coalesce(EXCLUDED.title, markets.title),"
            " status = coalesce(EXCLUDED.status, markets.status),"
            " open_time = coalesce(EXCLUDED.open_time, markets.open_time),"
            " close_time = coalesce(EXCLUDED.close_time, markets.close_time),"
            " result = coalesce(EXCLUDED.result, markets.result),"
            " settlement_value = coalesce(EXCLUDED.settlement_value, markets.settlement_value),"
            " price_level_structure ="
            " coalesce(EXCLUDED.price_level_structure, markets.price_level_structure),"
            " updated_at = now()",
            rows,
        )
    return len(rows)


class LifecycleUpdates:
    """market_lifecycle_v2 events -> ``markets`` status/result, batched off the hot path.

    The feed callback only appends; ``flush`` (from the node's 1 s tick) writes them over
    the node's pool and keeps them for the next tick if PostgreSQL is down.  ``listeners``
    get every event too (the actor stops trading a market that closed), synchronously.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.pending: list[
            tuple[str, str | None, str | None, int | None, datetime | None, datetime | None]
        ] = []
        self.applied = 0
        self.listeners: list[Any] = []

    def add(self, ev: Any) -> None:
        """Feed callback (never blocks)."""
        status = _LIFECYCLE_STATUS.get(ev.event_type)
        result = ev.result or None
        value = ev.settlement_value if ev.settlement_value >= 0 else None
        # created / close_date_updated carry the market's times (close may move earlier)
        opn = _ms_time(getattr(ev, "open_ts_ms", -1))
        close = _ms_time(getattr(ev, "close_ts_ms", -1))
        if any(v is not None for v in (status, result, value, opn, close)):
            self.pending.append((ev.ticker, status, result, value, opn, close))
        for fn in self.listeners:
            fn(ev)

    async def flush(self) -> None:
        """Apply pending updates in arrival order; on a DB error keep them for later."""
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        try:
            async with asyncio.timeout(5):
                await self.pool.executemany(
                    "UPDATE markets SET status = coalesce($2, status),"
                    " result = coalesce($3, result),"
                    " settlement_value = coalesce($4, settlement_value),"
                    " open_time = coalesce($5, open_time), close_time = coalesce($6, close_time),"
                    " updated_at = now() WHERE ticker = $1",
                    batch,
                )
        except DB_ERRORS as exc:
            log.warning("lifecycle updates postponed (database: %s)", exc)
            self.pending = batch + self.pending
            return
        self.applied += len(batch)


def meta_sink(pool: asyncpg.Pool) -> Any:
    """Upsert REST-shaped market objects into ``markets`` over the pool (MarketFollower)."""

    async def sink(batch: list[dict[str, Any]]) -> None:
        try:
            async with asyncio.timeout(5), pool.acquire() as conn:
                await upsert_market_meta(conn, batch)
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise OSError(f"database: {exc}") from exc

    return sink
