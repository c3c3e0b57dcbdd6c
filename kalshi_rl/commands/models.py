"""`kalshi-rl models ...`: list, inspect and move model versions through their lifecycle.

A model reference is a ``models.id`` (``17``), ``name:version`` (``ppo-btc:3``) or a bare
name (its latest version).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import orjson
import typer

from kalshi_rl import registry as reg
from kalshi_rl.errors import RegistryError
from kalshi_rl.store import db

app = typer.Typer(
    help="Model registry: list, show, promote, deploy, archive, lineage.", no_args_is_help=True
)

T = TypeVar("T")
_NAME_OPT = typer.Option(None, help="Only this model name.")
_STATUS_OPT = typer.Option(None, help="Only this status.")
_DB_OPT = typer.Option(
    None, "--database-url", envvar="DATABASE_URL", help="PostgreSQL DSN; embedded server if unset."
)


def _run(database_url: str | None, fn: Callable[..., Awaitable[T]]) -> T:
    async def go() -> T:
        conn = await db.connect(db.resolve_dsn(database_url))
        try:
            return await fn(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(go())
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def _line(m: reg.ModelVersion) -> str:
    return (
        f"{m.id:>6}  {m.name}:{m.version:<4} {m.status.value:<9} {m.algorithm:<6} "
        f"{m.config_hash[:12]}  parent={m.parent_id or '-'}  {m.checkpoint_path or ''}"
    )


@app.command("list")
def list_(
    name: str | None = _NAME_OPT,
    status: reg.ModelStatus | None = _STATUS_OPT,
    database_url: str | None = _DB_OPT,
) -> None:
    """List model versions (id, name:version, status, algorithm, config hash, parent)."""
    rows = _run(database_url, lambda c: reg.list_models(c, name, status))
    for m in rows:
        typer.echo(_line(m))
    if not rows:
        typer.echo("no models")


@app.command()
def show(ref: str, database_url: str | None = _DB_OPT) -> None:
    """Print one version as JSON."""
    m = _run(database_url, lambda c: reg.resolve(c, ref))
    typer.echo(orjson.dumps(m.as_json(), option=orjson.OPT_INDENT_2).decode())


def _transition(ref: str, database_url: str | None, status: reg.ModelStatus) -> None:
    async def go(conn: asyncpg.Connection) -> reg.ModelVersion:
        m = await reg.resolve(conn, ref)
        return await reg.set_status(conn, m.id, status)

    typer.echo(_line(_run(database_url, go)))


@app.command()
def promote(ref: str, database_url: str | None = _DB_OPT) -> None:
    """Mark a version ready (after training; also un-deploys or restores from archive)."""
    _transition(ref, database_url, reg.ModelStatus.READY)


@app.command()
def deploy(ref: str, database_url: str | None = _DB_OPT) -> None:
    """Deploy a ready version; the previously deployed one of its name goes back to ready."""
    _transition(ref, database_url, reg.ModelStatus.DEPLOYED)


@app.command()
def archive(ref: str, database_url: str | None = _DB_OPT) -> None:
    """Archive a version."""
    _transition(ref, database_url, reg.ModelStatus.ARCHIVED)


@app.command()
def lineage(ref: str, database_url: str | None = _DB_OPT) -> None:
    """Show a version's ancestors (nearest first) and descendants."""

    async def go(
        conn: asyncpg.Connection,
    ) -> tuple[reg.ModelVersion, list[reg.ModelVersion], list[reg.ModelVersion]]:
        m = await reg.resolve(conn, ref)
        up = await reg.ancestors(conn, m.id)
        down = await reg.descendants(conn, m.id)
        return m, up, down

    m, up, down = _run(database_url, go)
    typer.echo("ancestors:")
    for a in up:
        typer.echo("  " + _line(a))
    typer.echo("this:\n  " + _line(m))
    typer.echo("descendants:")
    for d in down:
        typer.echo("  " + _line(d))
