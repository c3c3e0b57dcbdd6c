"""`kalshi-rl collect`: record Kalshi order books into PostgreSQL (composition root).

Wires: DSN -> migrations -> feed_sessions row -> BookSet + FeedRings -> Writer (rings ->
COPY) -> Feed (picows on uvloop) -> a progress line every second.  SIGINT/SIGTERM (or
``--duration``) stops the feed, flushes the writer and closes the session row with counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from kalshi_rl.config import (
    PROD_REST_URL,
    PROD_WS_URL,
    CollectorConfig,
    FeedConfig,
)
from kalshi_rl.errors import KalshiRLError

log = logging.getLogger(__name__)


@dataclass
class CollectorResult:
    """What one collector run did."""

    session_id: int
    tickers: list[str]
    feed: dict[str, Any]
    writer: dict[str, Any]
    books_valid: int  # valid books just before the feed was stopped
    markets_at_stop: int = 0  # markets recorded when it stopped (collect --all follows)
    follow: dict[str, int] | None = None  # MarketFollower stats (collect --all)


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
    dsn: str, session_id: int, stats: dict[str, Any], books_valid: int | None = None
) -> bool:
    """Set ended_at and the counters of a session row. False if the DB is unreachable.

    ``stats`` is ``FeedStats.as_dict()``: n_gaps = gap events, n_gap_rows = their rows,
    n_reconnects = reconnections, rejects = decoder rejections by reason.
    """
    import asyncpg

    from kalshi_rl.store import db

    try:
        conn = await asyncio.wait_for(db.connect(dsn), 10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        log.error("could not close session %d (database unreachable: %s)", session_id, exc)
        return False
    try:
        await conn.execute(
            "UPDATE feed_sessions SET ended_at = now(), n_messages = $2, n_deltas = $3,"
            " n_snapshots = $4, n_trades = $5, n_gaps = $6, n_decode_errors = $7,"
            " n_reconnects = $8, n_gap_rows = $9, n_end_rows = $10, n_connect_failures = $11,"
            " n_desyncs = $12, rejects = $13, books_valid_at_stop = $14, uptime = $15"
            " WHERE id = $1",
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
            stats["decode_errors_by_reason"],
            books_valid,
            stats["uptime"],
        )
    finally:
        await conn.close()
    return True


def stop_report(res: CollectorResult) -> str:
    """The lines printed when ``collect`` stops: counts, books valid at stop, rejects."""
    f, w = res.feed, res.writer
    # markets recorded at stop: with --all the list moved (a result built elsewhere may
    # not know it: then the markets it started with)
    n_markets = res.markets_at_stop if res.markets_at_stop or res.follow else len(res.tickers)
    rejects = ", ".join(f"{k} {v}" for k, v in sorted(f["decode_errors_by_reason"].items()))
    return (
        f"session {res.session_id}: {f['msgs']} msgs, {f['deltas']} deltas,"
        f" {f['snapshots']} snapshots, {f['trades']} trades,"
        f" {w['rows_written_total']} rows written, {w['segments_pending']} segments pending\n"
        f"  books valid at stop {res.books_valid}/{n_markets}"
        f" | gaps {f['gaps']} ({f['gap_rows']} rows) | desyncs {f['desyncs']}"
        f" | reconnects {f['reconnects']} (failed attempts {f['connect_failures']},"
        f" uptime {100 * f['uptime']:.1f}%)\n"
        f"  rejected frames {f['decode_errors']}"
        + (f": {rejects}" if rejects else "")
        + (
            f"\n  markets followed: {res.follow['added']} added, {res.follow['dropped']} dropped,"
            f" {res.follow['rescans']} re-scans"
            if res.follow
            else ""
        )
    )


class WriterGroup:
    """The collector's writers seen as one: summed counters, closed together."""

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

    The feed callback only appends; ``flush`` (from the collector's 1 s tick) writes them
    with a short-lived connection and keeps them for the next tick if PostgreSQL is down.
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.pending: list[
            tuple[str, str | None, str | None, int | None, datetime | None, datetime | None]
        ] = []
        self.applied = 0

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

    async def flush(self) -> None:
        """Apply pending updates in arrival order; on a DB error keep them for later."""
        if not self.pending:
            return
        import asyncpg

        from kalshi_rl.store import db

        batch, self.pending = self.pending, []
        try:
            conn = await asyncio.wait_for(db.connect(self.dsn), 5)
            try:
                await conn.executemany(
                    "UPDATE markets SET status = coalesce($2, status),"
                    " result = coalesce($3, result),"
                    " settlement_value = coalesce($4, settlement_value),"
                    " open_time = coalesce($5, open_time), close_time = coalesce($6, close_time),"
                    " updated_at = now() WHERE ticker = $1",
                    batch,
                )
            finally:
                await conn.close()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("lifecycle updates postponed (database: %s)", exc)
            self.pending = batch + self.pending
            return
        self.applied += len(batch)


def durability_lag_ms(rings: Any, now_ns: int | None = None) -> float:
    """How long the oldest record still in memory (not yet in PostgreSQL) has waited, ms.

    0 when every received record is durable.  Grows while the database is slow or down.
    """
    now = time.time_ns() if now_ns is None else now_ns
    oldest = [
        int(rec["recv_ts"])
        for ring in (*rings.delta_shards, rings.snapshots, rings.trades, rings.gaps)
        if (rec := ring.oldest()) is not None
    ]
    return max(0.0, (now - min(oldest)) / 1e6) if oldest else 0.0


def progress_line(feed: Any, writer: Any, rate: float, follower: Any = None) -> str:
    """One human line: rate, books, markets followed, ring, rows, gaps, errors, latency,
    lag, DB state."""
    st = feed.stats
    w = writer.stats()
    ring = feed.rings.deltas
    fol = ""
    if follower is not None:
        fs = follower.stats
        fol = f" | markets {follower.n_markets} (+{fs.added} -{fs.dropped})"
    return (
        f"msgs/s {rate:9.0f} | books {feed.books_valid()}/{feed.books.n_markets} valid{fol}"
        f" | ring {100 * ring.fill_fraction:5.1f}% (ovf {ring.overflow_pending})"
        f" | rows {w['rows_written_total']}"
        f" | gaps {st.gaps} | decode_err {st.decode_errors}"
        f" | p99 {st.latency_quantile_ns(0.99) / 1e3:.0f}us"
        f" | lag {durability_lag_ms(feed.rings):.0f}ms"
        f" | db {'up' if w['db_up'] else 'DOWN'}"
        + (f" spilled {w['rows_spilled']}" if w["rows_spilled"] else "")
    )


async def run_collector(
    cfg: CollectorConfig,
    feed_cfg: FeedConfig,
    *,
    credentials: Any = None,
    stop: asyncio.Event | None = None,
    echo: Callable[[str], None] | None = None,
    on_started: Callable[[Any, Any], None] | None = None,
    writer_config: Any = None,
) -> CollectorResult:
    """Record until ``stop`` is set or ``cfg.duration_s`` passes.

    Args:
        cfg: what to record and where.
        feed_cfg: the feed's settings (URL, staging, backoff).
        credentials: kalshi_rl.kalshi.auth.Credentials, or None (sim without auth).
        stop: set it to end the run (signal handlers do).
        echo: receives a progress line every ``cfg.progress_interval_s``.
        on_started: called with (feed, writer) once both run (tests, harnesses).
        writer_config: kalshi_rl.store.writer.WriterConfig (default: its defaults).

    Returns:
        the session id and final counters.
    """
    from core.book import BookSet
    from kalshi_rl.kalshi.feed import Feed, FeedRings
    from kalshi_rl.kalshi.follow import MarketFollower
    from kalshi_rl.kalshi.protocol import CH_LIFECYCLE
    from kalshi_rl.kalshi.rest import KalshiRest
    from kalshi_rl.store import db
    from kalshi_rl.store.writer import Writer

    stop = stop or asyncio.Event()
    dsn = db.resolve_dsn(cfg.database_url)
    rest = KalshiRest(cfg.rest_url, credentials)
    try:
        tickers, meta = await _discover(cfg, rest)
    except BaseException:
        await rest.aclose()
        raise
    if not cfg.all_markets:
        await rest.aclose()  # only --all keeps re-scanning the market list
    conn = await db.connect(dsn)
    try:
        await db.migrate(conn)
        await db.ensure_markets(conn, tickers)
        await upsert_market_meta(conn, meta)
        session_id = await create_session(conn, feed_cfg.ws_url, cfg.mode, tickers)
    finally:
        await conn.close()
    log.info("feed session %d: %d markets from %s", session_id, len(tickers), feed_cfg.ws_url)

    books = BookSet(max(16, len(tickers)))
    rings = FeedRings.create(cfg.ring_capacity, cfg.writer_shards)
    spill_dir = Path(cfg.spill_dir) if cfg.spill_dir else db.default_data_dir() / "spill"

    def connect() -> Any:
        return db.connect(dsn)

    # writer 0 takes every table; extra writers each COPY one more delta shard in parallel
    writers = [
        Writer(connect, rings.by_table(), session_id, books.ticker_of, spill_dir=spill_dir,
               config=writer_config)
    ] + [
        Writer(connect, {"orderbook_deltas": ring}, session_id, books.ticker_of,
               spill_dir=spill_dir / f"shard{k}", config=writer_config)
        for k, ring in enumerate(rings.delta_shards[1:], start=1)
    ]  # fmt: skip
    writer = WriterGroup(writers)
    lifecycle = LifecycleUpdates(dsn)
    follow_ch = (CH_LIFECYCLE,) if cfg.all_markets else ()
    feed = Feed(feed_cfg, books, rings, tickers, credentials=credentials,
                on_lifecycle=lifecycle.add, all_markets_channels=follow_ch)  # fmt: skip
    follower = None
    if cfg.all_markets:  # follow the market list: lifecycle events + REST re-scans
        follower = MarketFollower(feed, rest, _meta_sink(dsn), rescan_s=cfg.rescan_interval_s,
                                  next_callback=lifecycle.add)  # fmt: skip
        feed.on_lifecycle = follower.on_lifecycle
    for w in writers:
        w.start()
    feed_task = asyncio.create_task(feed.run(), name="kalshi-feed")
    follow_task = asyncio.create_task(follower.run(), name="market-follower") if follower else None
    if on_started is not None:
        on_started(feed, writer)
    deadline = time.monotonic() + cfg.duration_s if cfg.duration_s > 0 else None
    interval = cfg.progress_interval_s if cfg.progress_interval_s > 0 else 1.0
    try:
        while not stop.is_set():
            timeout = interval
            if deadline is not None:
                timeout = min(timeout, max(deadline - time.monotonic(), 0.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout)
            if echo is not None and cfg.progress_interval_s > 0:
                echo(progress_line(feed, writer, feed.stats.rate(), follower))
            await lifecycle.flush()
            if feed_task.done():
                feed_task.result()  # surface a crash of the feed
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        valid_at_stop = feed.books_valid()  # stopping invalidates every book
        n_at_stop = len(feed.tickers)
        if follow_task is not None:
            follow_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow_task
        feed.stop()
        try:
            await asyncio.wait_for(feed_task, 30)
        finally:
            await writer.close()
            await rest.aclose()
    fstats = feed.stats.as_dict()
    await lifecycle.flush()
    if follower is not None:
        await follower.flush_meta()
    await close_session(dsn, session_id, fstats, valid_at_stop)
    return CollectorResult(
        session_id, tickers, fstats, writer.stats(), valid_at_stop, n_at_stop,
        None if follower is None else asdict(follower.stats),
    )  # fmt: skip


async def _discover(cfg: CollectorConfig, rest: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """The markets to record at the start and their REST objects (metadata)."""
    if cfg.all_markets:
        meta = [m async for m in rest.iter_markets()]
        log.info("discovered %d open markets", len(meta))
        return [m["ticker"] for m in meta], meta
    tickers = list(cfg.tickers)
    try:
        return tickers, await rest.markets_by_ticker(tickers)
    except KalshiRLError as exc:  # metadata is a nicety; recording is the job
        log.warning("could not fetch market metadata: %s", exc)
        return tickers, []


def _meta_sink(dsn: str) -> Callable[[list[dict[str, Any]]], Awaitable[None]]:
    """Upsert REST-shaped market objects into ``markets`` over a short-lived connection."""

    async def sink(batch: list[dict[str, Any]]) -> None:
        import asyncpg

        from kalshi_rl.store import db

        try:
            conn = await asyncio.wait_for(db.connect(dsn), 5)
            try:
                await upsert_market_meta(conn, batch)
            finally:
                await conn.close()
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise OSError(f"database: {exc}") from exc

    return sink


def register(app: typer.Typer) -> None:
    """Add ``collect`` to the root CLI."""

    @app.command()
    def collect(  # noqa: PLR0917 -- typer maps CLI options to parameters
        ws_url: str = typer.Option(PROD_WS_URL, "--ws-url", help="Kalshi WS v2 URL."),
        rest_url: str = typer.Option(PROD_REST_URL, "--rest-url", help="Kalshi REST v2 URL."),
        tickers: str = typer.Option("", "--tickers", help="Comma-separated market tickers."),
        all_markets: bool = typer.Option(False, "--all", help="Every open non-combo market."),
        duration: float = typer.Option(0.0, "--duration", help="Seconds to run (0 = forever)."),
        database_url: str | None = typer.Option(
            None, "--database-url", envvar="DATABASE_URL", help="PostgreSQL DSN (else embedded)."
        ),
        sim: bool = typer.Option(
            False, "--sim", help="Local sim: mode 'sim', credentials optional."
        ),
        spill_dir: str = typer.Option("", "--spill-dir", help="Segment files during outages."),
        writers: int = typer.Option(1, "--writers", help="Parallel COPY writers for deltas."),
    ) -> None:
        """Record order books, trades and gaps into PostgreSQL until Ctrl-C."""
        from kalshi_rl.errors import AuthError
        from kalshi_rl.kalshi.auth import Credentials

        local = sim or "127.0.0.1" in ws_url or "localhost" in ws_url
        try:
            cfg = CollectorConfig.from_env(
                rest_url=rest_url,
                tickers=tuple(t.strip() for t in tickers.split(",") if t.strip()),
                all_markets=all_markets,
                duration_s=duration,
                database_url=database_url,
                mode="sim" if local else ("demo" if "demo" in ws_url else "live"),
                spill_dir=spill_dir,
                writer_shards=writers,
            )
            feed_cfg = FeedConfig.from_env(ws_url=ws_url)
            try:
                creds: Credentials | None = Credentials.from_env()
            except AuthError:
                if not local:
                    raise
                creds = None
        except KalshiRLError as exc:
            raise typer.BadParameter(str(exc)) from exc

        async def main() -> CollectorResult:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            return await run_collector(cfg, feed_cfg, credentials=creds, stop=stop, echo=typer.echo)

        import uvloop

        res = uvloop.run(main())
        typer.echo(stop_report(res))
