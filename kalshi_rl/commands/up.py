"""`kalshi-rl up`: the main job — everything up against the local exchange.

Composition (one uvloop process for the live node, a separate process for training, as
ARCHITECTURE.md draws it):

1. PostgreSQL: ``DATABASE_URL`` or the embedded server; migrations applied.
2. The local exchange (``kalshi_rl.sim``) on 127.0.0.1 with RSA-PSS auth switched on and a
   key pair made for it under the data dir, so the collector signs exactly as for Kalshi.
3. The collector (``kalshi-rl collect``'s ``run_collector``) recording every market.
4. After ``--train-after`` seconds, in a child process: ``kalshi-rl dataset build`` over
   this session's history, then ``kalshi-rl train`` (PPO by default) which registers a model
   version and writes its evaluation report.  The live node keeps recording meanwhile.
5. Runs until Ctrl-C (or ``--duration``), then flushes everything and closes the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)


def _sim_keys(data_dir: Path) -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of the local exchange's API key, made once, mode 0600."""
    from kalshi_rl.kalshi.auth import Credentials, generate_private_key_pem

    key_path = data_dir / "sim-key.pem"
    if not key_path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        key_path.touch(mode=0o600)
        key_path.write_bytes(generate_private_key_pem())
    pem = key_path.read_bytes()
    return pem, Credentials.from_pem("local-sim", pem).public_pem()


async def _run_child(args: list[str], prefix: str) -> int:
    """Run ``kalshi-rl ARGS`` in a child process, echoing its output with a prefix."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kalshi_rl.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    try:
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line:
                typer.echo(f"[{prefix}] {line}")
        return await proc.wait()
    except asyncio.CancelledError:
        proc.terminate()
        with contextlib.suppress(ProcessLookupError):
            await proc.wait()
        raise


async def _train_pipeline(
    dsn: str, session_id: int, out_dir: Path, *, timesteps: int, algo: str, name: str
) -> None:
    """Build a dataset from what is recorded so far and train on it (child processes)."""
    ds_path = out_dir / f"session-{session_id}.parquet"
    env = ["--database-url", dsn]
    rc = await _run_child(
        ["dataset", "build", "--out", str(ds_path), "--cadence-updates", "5", *env], "dataset"
    )
    if rc != 0:
        typer.echo(f"[up] dataset build failed (exit {rc}); collector keeps running")
        return
    rc = await _run_child(
        [
            "train",
            "--dataset",
            str(ds_path),
            "--algo",
            algo,
            "--timesteps",
            str(timesteps),
            "--name",
            name,
            "--no-progress-bar",
            *env,
        ],
        "train",
    )
    typer.echo(f"[up] training {'finished' if rc == 0 else f'failed (exit {rc})'}")


async def _up(  # noqa: PLR0917
    markets: int,
    rate: float,
    seed: int,
    port: int,
    train_after: float,
    timesteps: int,
    algo: str,
    name: str,
    duration: float,
    database_url: str | None,
) -> None:
    from kalshi_rl.commands.collect import run_collector
    from kalshi_rl.config import CollectorConfig, FeedConfig
    from kalshi_rl.kalshi.auth import Credentials
    from kalshi_rl.sim.config import SimConfig
    from kalshi_rl.sim.server import SimExchange
    from kalshi_rl.store import db

    data_dir = db.default_data_dir()
    dsn = db.resolve_dsn(database_url)
    conn = await db.connect(dsn)
    try:
        applied = await db.migrate(conn)
    finally:
        await conn.close()
    typer.echo(f"[up] PostgreSQL ready ({len(applied)} migration(s) applied)")

    priv, pub = _sim_keys(data_dir)
    sim = SimExchange(
        SimConfig(
            port=port, n_markets=markets, rate=rate, seed=seed, public_key_pem=pub, record_limit=0
        )
    )
    await sim.start()
    typer.echo(f"[up] local exchange: ws {sim.ws_url}  rest {sim.rest_url}")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    cfg = CollectorConfig(
        rest_url=sim.rest_url,
        all_markets=True,
        duration_s=duration,
        database_url=dsn,
        mode="sim",
        progress_interval_s=2.0,
    )
    feed_cfg = FeedConfig.from_env(ws_url=sim.ws_url)
    creds = Credentials.from_pem("local-sim", priv)

    collector = asyncio.create_task(
        run_collector(
            cfg,
            feed_cfg,
            credentials=creds,
            stop=stop,
            echo=lambda line: typer.echo(f"[collect] {line}"),
        ),
        name="collector",
    )
    trainer: asyncio.Task[None] | None = None
    t0 = time.monotonic()
    try:
        while not collector.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(collector), 1.0)
            if trainer is None and train_after >= 0 and time.monotonic() - t0 >= train_after:
                session_id = await _current_session(dsn)
                trainer = asyncio.create_task(
                    _train_pipeline(
                        dsn,
                        session_id,
                        data_dir / "datasets",
                        timesteps=timesteps,
                        algo=algo,
                        name=name,
                    )
                )
        result = collector.result()
        typer.echo(
            f"[up] session {result.session_id}: {result.feed['msgs']} messages,"
            f" {result.writer['rows_written_total']} rows written, books valid at stop"
            f" {result.books_valid}/{len(result.tickers)}"
        )
    finally:
        stop.set()
        if trainer is not None and not trainer.done():
            typer.echo("[up] waiting for the training run to finish (Ctrl-C again to abort)")
            try:
                await trainer
            except asyncio.CancelledError:
                trainer.cancel()
        if not collector.done():
            await collector
        await sim.stop()


async def _current_session(dsn: str) -> int:
    from kalshi_rl.store import db

    conn = await db.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT max(id) FROM feed_sessions"))
    finally:
        await conn.close()


def up(  # noqa: PLR0917 -- typer maps CLI options to parameters
    markets: Annotated[int, typer.Option(help="Markets the local exchange lists.")] = 8,
    rate: Annotated[float, typer.Option(help="Book messages/s across all markets.")] = 400.0,
    seed: Annotated[int, typer.Option(help="Seed of the exchange's market model.")] = 1,
    port: Annotated[int, typer.Option(help="Local exchange port on 127.0.0.1.")] = 8765,
    train_after: Annotated[
        float, typer.Option(help="Seconds of recording before a training run (-1: never).")
    ] = 90.0,
    timesteps: Annotated[int, typer.Option(help="Env-steps of that training run.")] = 50_000,
    algo: Annotated[str, typer.Option(help="ppo or a2c.")] = "ppo",
    name: Annotated[str, typer.Option(help="Registry name of the model trained.")] = "up-demo",
    duration: Annotated[float, typer.Option(help="Stop after N seconds (0: Ctrl-C).")] = 0.0,
    database_url: Annotated[
        str | None,
        typer.Option(envvar="DATABASE_URL", help="PostgreSQL DSN; embedded server if unset."),
    ] = None,
) -> None:
    """Local exchange + collector into PostgreSQL + a training run on what was recorded."""
    import uvloop

    if algo not in ("ppo", "a2c"):
        raise typer.BadParameter(f"algo must be ppo or a2c, got {algo!r}")
    if log.getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("picows").setLevel(logging.WARNING)
    uvloop.run(
        _up(markets, rate, seed, port, train_after, timesteps, algo, name, duration, database_url)
    )


def register(app: typer.Typer) -> None:
    """Add ``up`` to the root CLI."""
    app.command("up")(up)
