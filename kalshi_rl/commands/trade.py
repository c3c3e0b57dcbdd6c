"""`kalshi-rl trade`: a deployed model trading on paper on the live books (composition root).

``kalshi-rl trade --model NAME[:VERSION] --markets A,B | --all [--sim | --ws-url URL]``
runs one process: the live node (feed + books + writers + session, kalshi_rl.live) and on
it the paper client and the actor (kalshi_rl.trade.wiring).  ``--sim`` starts a local
exchange in the same process (no credentials needed).  Execution is paper only: ``--mode
live`` is refused here, in ``ActorConfig`` and in ``create_trading_client``.

``kalshi-rl trade kill [--reason R]`` engages the kill switch (a sentinel file the actor
polls; it survives restarts); ``kalshi-rl trade kill --release`` removes it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated, Any

import typer

from kalshi_rl.config import PROD_REST_URL, PROD_WS_URL

log = logging.getLogger(__name__)

app = typer.Typer(
    help="Paper-trade a deployed model on the live books (kill switch: `trade kill`).",
    no_args_is_help=False,
    invoke_without_command=True,
)

MONEY_PER_DOLLAR = 10_000
COUNT_PER_CONTRACT = 100


def _refuse_live_cli(mode: str) -> None:
    from kalshi_rl.errors import ConfigError, LiveTradingRefused
    from kalshi_rl.trade.actor import refuse_live

    try:
        refuse_live(mode)
    except (LiveTradingRefused, ConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.callback()
def trade(  # noqa: PLR0917 -- typer maps CLI options to parameters
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="NAME (deployed version) or NAME:VERSION.")] = "",
    markets: Annotated[str, typer.Option(help="Comma-separated tickers.")] = "",
    all_markets: Annotated[bool, typer.Option("--all", help="Every open market.")] = False,
    sim: Annotated[bool, typer.Option(help="Run a local exchange in this process.")] = False,
    sim_markets: Annotated[int, typer.Option(help="Markets of the local exchange.")] = 4,
    ws_url: Annotated[str, typer.Option(help="Kalshi WS v2 URL (market data).")] = PROD_WS_URL,
    rest_url: Annotated[str, typer.Option(help="Kalshi REST v2 URL.")] = PROD_REST_URL,
    mode: Annotated[str, typer.Option(help="Execution: paper ('live' is refused).")] = "paper",
    account: Annotated[str, typer.Option(help="Paper account name.")] = "default",
    tick_updates: Annotated[int, typer.Option(help="Decide every N book updates.")] = 1,
    tick_interval: Annotated[float, typer.Option(help="Also decide every S seconds.")] = 0.0,
    staleness: Annotated[float, typer.Option(help="Skip books older than S seconds.")] = 30.0,
    max_position: Annotated[float, typer.Option(help="Contracts per market (0 off).")] = 0.0,
    max_exposure: Annotated[float, typer.Option(help="Dollars at risk in total (0 off).")] = 0.0,
    max_orders_per_s: Annotated[float, typer.Option(help="Order rate cap (0 off).")] = 0.0,
    daily_loss: Annotated[float, typer.Option(help="Dollars lost today -> HALTED.")] = 0.0,
    max_drawdown: Annotated[float, typer.Option(help="Dollars off the peak -> REDUCING.")] = 0.0,
    close_guard: Annotated[
        float | None,
        typer.Option(
            help="No new positions N s before close (default: 1/20 of the markets' life, at"
            " most 60 s; 60 s when the life is unknown)."
        ),
    ] = None,
    flatten_on_halt: Annotated[bool, typer.Option(help="Close positions when HALTED.")] = False,
    shadow: Annotated[bool, typer.Option(help="New deployments run in shadow.")] = False,
    torch_only: Annotated[bool, typer.Option(help="Skip the Numba fast path.")] = False,
    duration: Annotated[float, typer.Option(help="Stop after S seconds (0: Ctrl-C).")] = 0.0,
    kill_file: Annotated[str, typer.Option(help="Kill-switch sentinel path.")] = "",
    database_url: Annotated[
        str | None, typer.Option(envvar="DATABASE_URL", help="PostgreSQL DSN (else embedded).")
    ] = None,
) -> None:
    """Trade ``--model`` on paper on the live books of ``--markets`` / ``--all``."""
    if ctx.invoked_subcommand is not None:
        return
    _refuse_live_cli(mode)
    if not model:
        raise typer.BadParameter("--model NAME[:VERSION] is required")
    if not sim and not markets and not all_markets:
        raise typer.BadParameter("give --markets A,B or --all (or --sim)")
    from kalshi_rl.errors import KalshiRLError
    from kalshi_rl.trade.actor import ActorConfig
    from kalshi_rl.trade.risk import RiskConfig

    try:
        risk = RiskConfig(
            max_position=round(max_position * COUNT_PER_CONTRACT),
            max_exposure=round(max_exposure * MONEY_PER_DOLLAR),
            max_orders_per_s=max_orders_per_s,
            daily_loss_limit=round(daily_loss * MONEY_PER_DOLLAR),
            max_drawdown=round(max_drawdown * MONEY_PER_DOLLAR),
            close_guard_s=60.0 if close_guard is None else close_guard,
            flatten_on_halt=flatten_on_halt,
            kill_file=kill_file or None,
        )
        acfg = ActorConfig(
            mode=mode,
            tick_updates=tick_updates,
            tick_interval_s=tick_interval,
            max_staleness_s=staleness,
            risk=risk,
        )
    except KalshiRLError as exc:
        raise typer.BadParameter(str(exc)) from exc
    tickers = tuple(t.strip() for t in markets.split(",") if t.strip())

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_trader(
            model, acfg, tickers=tickers, all_markets=all_markets, sim=sim,
            sim_markets=sim_markets, ws_url=ws_url, rest_url=rest_url, account=account,
            shadow=shadow, fast=not torch_only, duration=duration, database_url=database_url,
            stop=stop, echo=typer.echo, close_guard_s=close_guard,
        )  # fmt: skip

    import uvloop

    try:
        uvloop.run(main())
    except KalshiRLError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


async def run_trader(
    model: str,
    acfg: Any,
    *,
    tickers: tuple[str, ...] = (),
    all_markets: bool = False,
    sim: bool = False,
    sim_markets: int = 4,
    ws_url: str = PROD_WS_URL,
    rest_url: str = PROD_REST_URL,
    account: str = "default",
    shadow: bool = False,
    fast: bool = True,
    duration: float = 0.0,
    database_url: str | None = None,
    stop: asyncio.Event | None = None,
    echo: Any = None,
    close_guard_s: float | None = None,
) -> dict[str, Any]:
    """The ``trade`` process; returns the actor's final stats.

    ``close_guard_s`` None: the close guard follows the markets' life as in ``kalshi-rl
    up`` (``trade.wiring.close_guard_for_life`` over the longest open -> close span of the
    markets the node knows at start; 60 s when unknown); a number overrides ``acfg``'s.
    """
    import dataclasses

    from kalshi_rl.config import CollectorConfig, FeedConfig
    from kalshi_rl.errors import AuthError
    from kalshi_rl.kalshi.auth import Credentials
    from kalshi_rl.live.node import LiveNode
    from kalshi_rl.trade.wiring import attach_trading, close_guard_for_life, market_life_ms

    stop = stop or asyncio.Event()
    exchange = None
    if sim:
        from kalshi_rl.sim.config import SimConfig
        from kalshi_rl.sim.server import SimExchange

        exchange = SimExchange(SimConfig(n_markets=sim_markets, record_limit=0))
        await exchange.start()
        ws_url, rest_url = exchange.ws_url, exchange.rest_url
        if not tickers:
            all_markets = True
    local = sim or "127.0.0.1" in ws_url or "localhost" in ws_url
    try:
        creds: Credentials | None = Credentials.from_env()
    except AuthError:
        if not local:
            raise
        creds = None
    cfg = CollectorConfig.from_env(
        rest_url=rest_url,
        tickers=tickers,
        all_markets=all_markets,
        duration_s=duration,
        database_url=database_url,
        mode="sim" if local else ("demo" if "demo" in ws_url else "live"),
        progress_interval_s=2.0,
    )
    try:
        async with LiveNode(cfg, FeedConfig.from_env(ws_url=ws_url), credentials=creds) as node:
            if close_guard_s is None:
                life = market_life_ms(node.meta)
                close_guard_s = close_guard_for_life(life)
                log.info(
                    "close guard %.1f s (market life %s)",
                    close_guard_s, "unknown" if life is None else f"{life / 1000:.0f} s",
                )  # fmt: skip
            acfg = dataclasses.replace(
                acfg, risk=dataclasses.replace(acfg.risk, close_guard_s=close_guard_s)
            )
            trading = await attach_trading(
                node, model, acfg, account=account, shadow_reload=shadow, fast=fast
            )
            actor = trading.actor

            def tick() -> None:
                if echo is None:
                    return
                st = actor.stats()
                c = st["counts"]
                echo(
                    f"{st['state']} {st['model']} | books {node.feed.books_valid()}/"
                    f"{len(node.tickers)} | decisions {c['decisions']} orders {c['orders']}"
                    f" fills {c['fills']} | skipped {c['skip_invalid']}/{c['skip_stale']}/"
                    f"{c['skip_malformed']} | value ${st['value'] / MONEY_PER_DOLLAR:,.2f}"
                    f" | p99 {st['latency_us']['p99']:.0f}us"
                )

            await node.run(stop, duration_s=duration, interval_s=2.0, on_tick=tick)
            return {**actor.stats(), "close_guard_s": close_guard_s}
    finally:
        if exchange is not None:
            await exchange.stop()


@app.command()
def kill(
    reason: Annotated[str, typer.Option(help="Why (kept in the sentinel).")] = "operator",
    release: Annotated[bool, typer.Option(help="Remove the sentinel instead.")] = False,
    kill_file: Annotated[str, typer.Option(help="Kill-switch sentinel path.")] = "",
) -> None:
    """Engage (or --release) the kill switch: running actors cancel and halt."""
    from kalshi_rl.trade.risk import KillSwitch

    ks = KillSwitch(kill_file or None)
    if release:
        typer.echo(f"kill switch {'released' if ks.release() else 'was not engaged'}: {ks.path}")
        return
    ks.engage(reason)
    typer.echo(f"kill switch engaged: {ks.path} (release with `kalshi-rl trade kill --release`)")


def register(root: typer.Typer) -> None:
    """Add ``trade`` to the root CLI."""
    root.add_typer(app, name="trade")
