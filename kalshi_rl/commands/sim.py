"""`kalshi-rl sim`: run the local Kalshi exchange (WebSocket + REST) on localhost."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from kalshi_rl.errors import ConfigError

log = logging.getLogger(__name__)

app = typer.Typer(
    help="Run the local Kalshi exchange (model or replay) on localhost.",
    invoke_without_command=True,
)


@app.callback()
def sim(
    *,
    host: Annotated[str, typer.Option(help="Bind address (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port for WS, REST and /sim/control.")] = 8765,
    markets: Annotated[
        int, typer.Option(help="Fixed markets instead of rolling series (0 = rolling).")
    ] = 0,
    series: Annotated[
        int, typer.Option(help="Rolling series: each lists a new market as the last closes.")
    ] = 4,
    series_spec: Annotated[
        list[str] | None,
        typer.Option(
            "--series-spec", help="A rolling series TICKER[:lifetime_ms[:bias[:structure]]]."
        ),
    ] = None,
    market_life: Annotated[
        int, typer.Option(help="Rolling markets: sim ms from open to close.")
    ] = 180_000,
    bias: Annotated[
        float | None,
        typer.Option(help="Planted mispricing of every series (0 = efficient; 1 = Kalshi-wide)."),
    ] = None,
    clock_speed: Annotated[
        float, typer.Option(help="Sim seconds per wall second (same stream, faster).")
    ] = 1.0,
    rate: Annotated[
        float, typer.Option(help="Total messages/s (0 = as fast as possible).")
    ] = 200.0,
    rate_per_market: Annotated[
        float | None, typer.Option(help="Messages/s per market (overrides --rate).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Model seed (same seed + config = same stream).")] = 1,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Accept unsigned clients.")] = False,
    public_key: Annotated[
        Path | None, typer.Option(help="PEM RSA public key the signatures must verify with.")
    ] = None,
    lifetime_ms: Annotated[
        int | None, typer.Option(help="Fixed markets close after this much sim time (ms).")
    ] = None,
    blast: Annotated[int, typer.Option(help="Blast mode: pre-encode this many delta frames.")] = 0,
    replay_session: Annotated[
        int | None, typer.Option(help="Replay this recorded feed_sessions.id.")
    ] = None,
    replay_speed: Annotated[
        float, typer.Option(help="Replay pace: 1.0 = recorded, 0 = max.")
    ] = 0.0,
    database_url: Annotated[
        str | None,
        typer.Option(envvar="DATABASE_URL", help="PostgreSQL DSN for --replay-session."),
    ] = None,
    ping_interval: Annotated[float, typer.Option(help="Server ping interval, s.")] = 10.0,
    gap_every: Annotated[
        int, typer.Option(help="Fault: drop every n-th book message per sid (0 = never).")
    ] = 0,
    faults: Annotated[
        str,
        typer.Option(
            help="Faults fired in turn, e.g. gap,disconnect,garbage:off_grid,stall:500,error:17."
        ),
    ] = "",
    fault_every: Annotated[float, typer.Option(help="Seconds between --faults (0 = off).")] = 0.0,
    control_token: Annotated[
        str | None,
        typer.Option(
            envvar="KALSHI_RL_SIM_CONTROL_TOKEN",
            help="Bearer token for /sim/control (required when --host is not loopback).",
        ),
    ] = None,
) -> None:
    """Serve ws://HOST:PORT/trade-api/ws/v2 and http://HOST:PORT/trade-api/v2 until Ctrl-C."""
    from dataclasses import replace

    import uvloop

    from kalshi_rl.sim.config import SimConfig
    from kalshi_rl.sim.listings import DEFAULT_BIAS, default_series, parse_series
    from kalshi_rl.sim.model import ModelParams
    from kalshi_rl.sim.server import SimExchange

    if not no_auth and public_key is None:
        raise typer.BadParameter("give --public-key PATH or --no-auth")
    pem = None if no_auth or public_key is None else public_key.read_bytes()
    dsn = None
    if replay_session is not None:
        from kalshi_rl.store import db

        dsn = db.resolve_dsn(database_url)
    rolling = None
    if markets <= 0 and replay_session is None:
        try:
            if series_spec:
                rolling = tuple(parse_series(x) for x in series_spec)
            else:
                rolling = default_series(series, lifetime_ms=market_life)
        except ConfigError as exc:
            raise typer.BadParameter(str(exc)) from exc
        if bias is not None:
            rolling = tuple(replace(x, bias=bias) for x in rolling)
    cfg = SimConfig(
        host=host,
        port=port,
        n_markets=max(markets, 1),
        series=rolling,
        clock_speed=clock_speed,
        rate=rate,
        rate_per_market=rate_per_market,
        seed=seed,
        public_key_pem=pem,
        model=ModelParams(lifetime_ms=lifetime_ms),
        blast_frames=blast,
        replay_session=replay_session,
        replay_dsn=dsn,
        replay_speed=replay_speed,
        ping_interval_s=ping_interval,
        gap_every=gap_every,
        faults=tuple(f for f in faults.split(",") if f),
        fault_every_s=fault_every,
        control_token=control_token,
        record_limit=0,  # a long-running server keeps no message log
    )
    try:
        cfg.check()
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc

    if log.getEffectiveLevel() > logging.DEBUG:
        # picows logs every accepted connection (each REST call) at INFO
        logging.getLogger("picows").setLevel(logging.WARNING)

    async def run() -> None:
        x = SimExchange(cfg)
        await x.start()
        typer.echo(f"sim: ws {x.ws_url}  rest {x.rest_url}  control {x.control_url}", err=True)
        if rolling:
            typer.echo(
                f"sim: {len(rolling)} rolling series, {market_life / 1000:g} s markets, bias"
                f" {bias if bias is not None else DEFAULT_BIAS:g} (planted: see docs/sim.md)",
                err=True,
            )
        try:
            await asyncio.Event().wait()
        finally:
            await x.stop()

    try:
        uvloop.run(run())
    except KeyboardInterrupt:
        log.info("sim stopped")
