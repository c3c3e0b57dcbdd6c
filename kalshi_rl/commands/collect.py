"""`kalshi-rl collect`: record Kalshi order books into PostgreSQL (composition root).

The live process's parts (DSN -> migrations -> pool -> feed_sessions row -> BookSet +
FeedRings -> writers -> Feed) come from ``kalshi_rl.live.node.LiveNode``; this command adds
a progress line every second.  SIGINT/SIGTERM (or ``--duration``) stops the feed, flushes
the writers and closes the session row with counts.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer

from kalshi_rl.config import (
    PROD_REST_URL,
    PROD_WS_URL,
    CollectorConfig,
    FeedConfig,
)
from kalshi_rl.errors import KalshiRLError
from kalshi_rl.live.node import LiveNode, durability_lag_ms

__all__ = ["CollectorResult", "durability_lag_ms", "progress_line", "run_collector"]

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
    stop = stop or asyncio.Event()
    node = LiveNode(cfg, feed_cfg, credentials=credentials, writer_config=writer_config)
    async with node:
        if on_started is not None:
            on_started(node.feed, node.writer)

        def tick() -> None:
            if echo is not None and cfg.progress_interval_s > 0:
                echo(progress_line(node.feed, node.writer, node.feed.stats.rate(), node.follower))

        await node.run(
            stop, duration_s=cfg.duration_s, interval_s=cfg.progress_interval_s, on_tick=tick
        )
    return CollectorResult(
        node.session_id, node.tickers, node.feed_stats, node.writer_stats,
        node.books_valid_at_stop, node.markets_at_stop, node.follow_stats,
    )  # fmt: skip


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
