"""`kalshi-rl dataset ...`: build a training dataset from recorded books, inspect one."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import orjson
import typer

from core.dataset import Dataset
from core.dtypes import DEFAULT_TOP_K
from kalshi_rl.errors import ConfigError, DatasetError, StoreError

app = typer.Typer(
    help="Training datasets: build from PostgreSQL into Parquet, inspect.", no_args_is_help=True
)

_OUT = typer.Option(..., "--out", help="Directory, or a single *.parquet file.")
_TICKERS = typer.Option(None, "--tickers", help="Markets (repeat or comma-separate); all if unset.")
_START = typer.Option(None, help="Window start: ISO time (UTC if no zone) or unix ms.")
_END = typer.Option(None, help="Window end (exclusive): ISO time or unix ms.")
_CAD_UPD = typer.Option(None, "--cadence-updates", help="A decision point every N updates.")
_CAD_MS = typer.Option(None, "--cadence-ms", help="Or one every T ms of exchange time.")
_TOP_K = typer.Option(DEFAULT_TOP_K, "--top-k", help="Depth levels per side kept.")
_MIN_SEG = typer.Option(2, "--min-segment", help="Drop segments with fewer decision points.")
_MAX_ROWS = typer.Option(
    5_000_000, "--max-rows", min=1, help="Refuse builds that could exceed this many rows."
)
_DB = typer.Option(
    None, "--database-url", envvar="DATABASE_URL", help="PostgreSQL DSN; embedded server if unset."
)


def parse_time(value: str | None) -> int | None:
    """Unix ms from ``"1700000000000"`` or an ISO 8601 time (naive = UTC)."""
    if value is None:
        return None
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        t = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"time {value!r} is neither unix ms nor ISO 8601") from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def _tickers(values: list[str] | None) -> tuple[str, ...] | None:
    if not values:
        return None
    return tuple(t.strip() for v in values for t in v.split(",") if t.strip())


@app.command()
def build(  # noqa: PLR0917 -- typer maps each CLI option to a parameter
    out: Path = _OUT,
    tickers: list[str] | None = _TICKERS,
    start: str | None = _START,
    end: str | None = _END,
    cadence_updates: int | None = _CAD_UPD,
    cadence_ms: int | None = _CAD_MS,
    top_k: int = _TOP_K,
    min_segment: int = _MIN_SEG,
    max_rows: int = _MAX_ROWS,
    database_url: str | None = _DB,
    connections: int = typer.Option(
        2, "--connections", min=1, max=2, help="COPY the deltas over 1 or 2 connections."
    ),
) -> None:
    """Load recorded books, cut clean segments, write decision points as Parquet."""
    from kalshi_rl.store import db
    from kalshi_rl.store.history import HistoryQuery, load_history
    from kalshi_rl.store.parquet import dataset_info, save_dataset

    try:
        query = HistoryQuery(
            tickers=_tickers(tickers),
            start=parse_time(start),
            end=parse_time(end),
            cadence_updates=cadence_updates,
            cadence_ms=cadence_ms,
            top_k=top_k,
            min_segment=min_segment,
            max_rows=max_rows,
        )

        async def run() -> Dataset:
            dsn = db.resolve_dsn(database_url)
            conn = await db.connect(dsn)
            helper = await db.connect(dsn) if connections > 1 else None
            try:
                return await load_history(conn, query, helper=helper)
            finally:
                if helper is not None:
                    await helper.close()
                await conn.close()

        ds = asyncio.run(run())
        if ds.n_rows == 0:
            raise DatasetError("no decision points in that window (no clean segment)")
        path = save_dataset(ds, out)
    except (ConfigError, DatasetError, StoreError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    info = dataset_info(ds)
    typer.echo(
        f"wrote {path}: {info['rows']} rows, {info['segments']} segments"
        f" ({info['segments_settled']} settled), {info['markets']} markets"
    )


@app.command()
def info(path: Path, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Validate a dataset and print its summary."""
    from kalshi_rl.store.parquet import dataset_info, load_dataset

    try:
        summary = dataset_info(load_dataset(path))
    except DatasetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
        return
    for key, value in summary.items():
        if key != "meta":
            typer.echo(f"{key:22s} {value}")
    query = summary["meta"].get("query")
    if query:
        typer.echo(f"{'query':22s} {orjson.dumps(query).decode()}")
