"""`kalshi-rl parity`: does the actor see and do live what the env saw and did?

Replays a recorded feed session through the sim with the actor attached, builds the
dataset of the same session and runs the env with the same model; prints the report of
``kalshi_rl.trade.parity`` (exit 1 unless every market matches in full: observations,
actions, fills, fees and P&L).
"""

from __future__ import annotations

from typing import Annotated

import typer


def parity(
    session: Annotated[int, typer.Option(help="feed_sessions.id of the recording.")],
    model: Annotated[str, typer.Option(help="NAME, NAME:VERSION or id.")],
    cadence_updates: Annotated[int, typer.Option(help="Decision every N book updates.")] = 1,
    torch_only: Annotated[bool, typer.Option(help="Skip the Numba fast path.")] = False,
    database_url: Annotated[
        str | None, typer.Option(envvar="DATABASE_URL", help="PostgreSQL DSN (else embedded).")
    ] = None,
) -> None:
    """Replay SESSION with the actor on MODEL; compare with the dataset and the env."""
    import uvloop

    from kalshi_rl.errors import KalshiRLError
    from kalshi_rl.store import db
    from kalshi_rl.trade.parity import run_parity

    try:
        report = uvloop.run(
            run_parity(
                db.resolve_dsn(database_url),
                session,
                model,
                cadence=cadence_updates,
                fast=not torch_only,
            )
        )
    except KalshiRLError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(report.text())
    raise typer.Exit(0 if report.ok else 1)


def register(app: typer.Typer) -> None:
    """Add ``parity`` to the root CLI."""
    app.command("parity")(parity)
