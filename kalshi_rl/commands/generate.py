"""`kalshi-rl generate`: generated history from the local exchange's fast mode -> a dataset.

The local exchange runs ``--clock-speed`` times faster than real time with the real
collector recording it into PostgreSQL (its own feed session, mode 'sim') for ``--seconds``;
then those markets' recorded books become a Parquet dataset through the real history
builder.  With ``--rolling N`` the exchange lists N series of short-lived markets (the
planted bias of docs/sim.md) and the collector follows the listings.  The main job's first
training run starts from rolling history, so the first model has seen the same kind of
markets it will trade, in about a minute.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import typer

from kalshi_rl.errors import KalshiRLError

PREFIX = "GEN"  # generated markets never share tickers with a live recording


async def record_fast(
    dsn: str,
    out: Path,
    *,
    markets: int,
    seed: int,
    clock_speed: float,
    seconds: float,
    rolling: int = 0,
    lifetime_ms: int = 180_000,
) -> list[str]:
    """Record the local exchange in fast mode for ``seconds`` of wall time at ``clock_speed``.

    ``rolling`` > 0: that many rolling series of short-lived markets (``lifetime_ms`` each,
    the sim's planted bias), the collector following the market list as it lists them --
    the same kind of markets ``kalshi-rl up`` trades.  Else ``markets`` fixed markets.
    Every series or market is renamed ``GEN<ticker>``: the sim's clock runs ahead of real
    time, so without their own names they would collide with a live sim's markets.

    Returns:
        The tickers recorded (every market listed during the recording).
    """
    import dataclasses

    from kalshi_rl.commands.collect import run_collector
    from kalshi_rl.config import CollectorConfig, FeedConfig
    from kalshi_rl.sim.config import SimConfig
    from kalshi_rl.sim.listings import default_series
    from kalshi_rl.sim.model import default_markets
    from kalshi_rl.sim.server import SimExchange

    if rolling > 0:
        series = tuple(
            dataclasses.replace(s, ticker=PREFIX + s.ticker)
            for s in default_series(rolling, lifetime_ms=lifetime_ms)
        )
        cfg = SimConfig(
            series=series, rate=200.0, clock_speed=clock_speed, seed=seed, record_limit=0
        )
        what = f"{rolling} rolling series"
    else:
        specs = tuple(
            dataclasses.replace(m, ticker=PREFIX + m.ticker, event_ticker=PREFIX + m.event_ticker)
            for m in default_markets(markets, ("linear_cent", "tapered_deci_cent", "deci_cent"))
        )
        cfg = SimConfig(
            markets=specs, rate=200.0, clock_speed=clock_speed, seed=seed, record_limit=0
        )
        what = f"{markets} markets"
    async with SimExchange(cfg) as sim:
        stop = asyncio.Event()
        ccfg = CollectorConfig(
            rest_url=sim.rest_url, all_markets=True, database_url=dsn, mode="sim",
            ring_capacity=1 << 18, progress_interval_s=0.0, spill_dir=str(out / "spill"),
            rescan_interval_s=max(1.0, 60.0 / clock_speed),
        )  # fmt: skip
        task = asyncio.create_task(run_collector(ccfg, FeedConfig(ws_url=sim.ws_url), stop=stop))
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds and not task.done():
            await asyncio.sleep(0.5)
        stop.set()
        res = await asyncio.wait_for(task, 120)
        if rolling > 0:
            tickers = list(dict.fromkeys(spec.ticker for _, spec in sim.model.listed.values()))
        else:
            tickers = [m.ticker for m in specs]
        typer.echo(
            f"recorded session {res.session_id}: {what}, {len(tickers)} markets,"
            f" {res.feed['msgs']} messages,"
            f" {seconds * clock_speed / 60:.0f} sim minutes in {time.monotonic() - t0:.0f} s"
        )
        return tickers


async def build_dataset(dsn: str, tickers: list[str], out: Path, cadence_ms: int) -> Path:
    """Those markets' recorded books as a Parquet dataset (a point per ``cadence_ms``)."""
    from kalshi_rl.errors import DatasetError
    from kalshi_rl.store import db
    from kalshi_rl.store.history import HistoryQuery, load_history
    from kalshi_rl.store.parquet import save_dataset

    conn = await db.connect(dsn)
    try:
        ds = await load_history(
            conn, HistoryQuery(tickers=tuple(tickers), cadence_ms=cadence_ms, min_segment=20)
        )
    finally:
        await conn.close()
    if ds.n_rows == 0:
        raise DatasetError("the generated recording gave no decision points")
    return save_dataset(ds, out)


def generate(  # noqa: PLR0917 -- typer maps CLI options to parameters
    out: Annotated[Path, typer.Option(help="Dataset directory to write.")],
    markets: Annotated[int, typer.Option(help="Markets recorded.")] = 8,
    seconds: Annotated[float, typer.Option(help="Wall seconds of recording.")] = 20.0,
    clock_speed: Annotated[float, typer.Option(help="Sim seconds per wall second.")] = 40.0,
    seed: Annotated[int, typer.Option(help="Seed of the sim's market model.")] = 1,
    rolling: Annotated[
        int, typer.Option(help="Rolling series of short-lived markets (0: --markets fixed).")
    ] = 0,
    market_life: Annotated[
        int, typer.Option(help="Lifetime of each rolling market, sim ms.")
    ] = 180_000,
    cadence_ms: Annotated[int, typer.Option(help="Decision point every T ms (sim time).")] = 1000,
    database_url: Annotated[
        str | None,
        typer.Option(envvar="DATABASE_URL", help="PostgreSQL DSN; embedded server if unset."),
    ] = None,
) -> None:
    """Record the local exchange in fast mode and build a training dataset from it."""
    import uvloop

    from kalshi_rl.store import db

    if markets < 1 or clock_speed <= 0 or seconds <= 0 or rolling < 0 or market_life < 1000:
        raise typer.BadParameter(
            "markets must be >= 1, rolling >= 0, market-life >= 1000, clock-speed and seconds > 0"
        )

    async def run() -> Path:
        dsn = db.resolve_dsn(database_url)
        conn = await db.connect(dsn)
        try:
            await db.migrate(conn)
        finally:
            await conn.close()
        out.mkdir(parents=True, exist_ok=True)
        tickers = await record_fast(
            dsn, out, markets=markets, seed=seed, clock_speed=clock_speed, seconds=seconds,
            rolling=rolling, lifetime_ms=market_life,
        )  # fmt: skip
        return await build_dataset(dsn, tickers, out / "dataset", cadence_ms)

    try:
        path = uvloop.run(run())
    except KalshiRLError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add ``generate`` to the root CLI."""
    app.command("generate")(generate)
