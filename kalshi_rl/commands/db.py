"""`kalshi-rl db ...`: migrations and the embedded server."""

from __future__ import annotations

import asyncio

import typer

from kalshi_rl.store import db

app = typer.Typer(
    help="PostgreSQL: migrate, status, url, stop the embedded server.", no_args_is_help=True
)


@app.command()
def migrate(
    database_url: str | None = typer.Option(
        None, envvar="DATABASE_URL", help="PostgreSQL DSN; embedded server if unset."
    ),
) -> None:
    """Apply pending migrations from sql/ (idempotent)."""

    async def run() -> list[str]:
        conn = await db.connect(db.resolve_dsn(database_url))
        try:
            return await db.migrate(conn)
        finally:
            await conn.close()

    applied = asyncio.run(run())
    typer.echo(f"applied {len(applied)} migration(s): {', '.join(applied) or '-'}")


@app.command()
def status(
    database_url: str | None = typer.Option(None, envvar="DATABASE_URL"),
) -> None:
    """Show the schema version and row counts of the main tables."""

    async def run() -> None:
        conn = await db.connect(db.resolve_dsn(database_url))
        try:
            ver = await db.schema_version(conn)
            typer.echo(f"schema version {ver} (latest {len(db.migration_files())})")
            if ver:
                for t in (
                    "markets",
                    "feed_sessions",
                    "orderbook_snapshots",
                    "orderbook_deltas",
                    "trades",
                    "feed_gaps",
                    "models",
                    "training_runs",
                ):
                    n = await conn.fetchval(f"SELECT count(*) FROM {t}")
                    typer.echo(f"  {t:22s} {n}")
        finally:
            await conn.close()

    asyncio.run(run())


@app.command()
def url(database_url: str | None = typer.Option(None, envvar="DATABASE_URL")) -> None:
    """Print the DSN in use (starting the embedded server if needed)."""
    typer.echo(db.resolve_dsn(database_url))


@app.command()
def stop() -> None:
    """Stop the embedded PostgreSQL server (no-op with DATABASE_URL)."""
    stopped = db.stop_embedded(db.default_data_dir() / "pg")
    typer.echo("stopped" if stopped else "not running")
