"""``create_app(node)``: the dashboard's Litestar app, wired in one place.

Handlers (``routes.HANDLERS`` + the streams below), the lifespan (hub tasks started and
cancelled, training children stopped), dependencies (``web``: the app state; ``conn``: a
pooled connection per request), exception handlers (registry -> 404/409, our errors ->
400, database unreachable -> 503, every body ``{"status_code", "detail"}``), the control
guard (POST/PUT/DELETE need the bearer token when bound off loopback), OpenAPI at
``/rl/schema``, and the built UI at ``/``.

The app runs on the live node's event loop: ``serve(app, config)`` runs uvicorn as a task
of that loop, so handlers read the node's books in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import orjson
from litestar import Litestar, Request, Response, WebSocket, websocket
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import (
    NotAuthorizedException,
    WebSocketDisconnect,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.params import Parameter
from litestar.static_files import create_static_files_router

from kalshi_rl.errors import KalshiRLError, RegistryError
from kalshi_rl.web.config import WebConfig
from kalshi_rl.web.node import ActorView, NodeView
from kalshi_rl.web.routes import HANDLERS, actor_out
from kalshi_rl.web.state import Web, WebState
from kalshi_rl.web.streams import (
    ActionsHub,
    Fanout,
    OrderbookHub,
    TrainingHub,
    dumps,
    pump,
)
from kalshi_rl.web.training import TrainingLauncher

log = logging.getLogger(__name__)

CONTROL_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})


# ------------------------------------------------------------------ guard, errors


def control_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """POST/PUT/DELETE need ``Authorization: Bearer <token>`` when the bind is exposed."""
    web: WebState = connection.app.state.web
    if connection.scope["type"] != "http" or not web.config.exposed:
        return
    if connection.scope.get("method", "GET") not in CONTROL_METHODS:
        return
    token = web.config.token
    got = connection.headers.get("authorization", "")
    if token is None or not hmac.compare_digest(got.encode(), f"Bearer {token}".encode()):
        raise NotAuthorizedException(
            detail="control routes need 'Authorization: Bearer <token>' on an exposed bind"
        )


def _error(status: int, detail: str) -> Response[dict[str, Any]]:
    return Response({"status_code": status, "detail": detail}, status_code=status)


def _registry_error(_: Request[Any, Any, Any], exc: RegistryError) -> Response[dict[str, Any]]:
    msg = str(exc)
    return _error(404 if msg.startswith("no model") else 409, msg)


def _our_error(_: Request[Any, Any, Any], exc: KalshiRLError) -> Response[dict[str, Any]]:
    return _error(400, str(exc))


def _db_error(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.warning("request failed on the database: %s", exc)
    return _error(503, f"database unavailable: {type(exc).__name__}")


def _data_error(_: Request[Any, Any, Any], exc: asyncpg.DataError) -> Response[dict[str, Any]]:
    return _error(400, f"bad value: {exc}")


# ------------------------------------------------------------------ dependencies


def _provide_web(state: State) -> WebState:
    web: WebState = state.web
    return web


async def _provide_conn(state: State) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection for this request only (released when the response is sent)."""
    web: WebState = state.web
    async with web.node.pool.acquire() as conn:
        yield conn


# ------------------------------------------------------------------ streams


@websocket("/rl/ws/orderbook")
async def ws_orderbook(
    socket: WebSocket[Any, Any, Any],
    web: Web,
    markets: Annotated[str | None, Parameter(max_length=10_000)] = None,
    interval_ms: Annotated[int | None, Parameter(ge=10, le=60_000)] = None,
) -> None:
    """Book frames of the markets asked for (comma list; all if absent), each market at
    most once per ``interval_ms``; the current state of each on join.  The client may send
    ``{"markets": [...] | null, "interval_ms": N}`` to change its subscription."""
    await socket.accept()
    hub = web.orderbook
    interval = (interval_ms or web.config.ws_default_interval_s * 1000) / 1000
    wanted = _markets(markets)
    client = hub.join(wanted, interval)
    hub.snapshot(client)
    reader = asyncio.create_task(_book_commands(socket, hub, client))
    try:
        await _pump_until_gone(socket, client, reader)
    finally:
        hub.leave(client)


def _markets(raw: str | None) -> frozenset[str] | None:
    if raw is None or raw.strip() in ("", "*"):
        return None
    return frozenset(t.strip() for t in raw.split(",") if t.strip())


async def _book_commands(socket: WebSocket[Any, Any, Any], hub: OrderbookHub, client: Any) -> None:
    while True:
        raw = await socket.receive_text()
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await socket.send_text(dumps({"type": "error", "detail": "messages must be JSON"}))
            continue
        if not isinstance(msg, dict):
            await socket.send_text(dumps({"type": "error", "detail": "expected an object"}))
            continue
        if "markets" in msg:
            m = msg["markets"]
            if m is not None and not (isinstance(m, list) and all(isinstance(t, str) for t in m)):
                await socket.send_text(dumps({"type": "error", "detail": "markets: list or null"}))
                continue
            client.markets = None if m is None else frozenset(m)
        if "interval_ms" in msg:
            iv = msg["interval_ms"]
            if not isinstance(iv, int) or not 10 <= iv <= 60_000:
                await socket.send_text(dumps({"type": "error", "detail": "interval_ms: 10..60000"}))
                continue
            client.interval_s = max(hub.min_interval_s, iv / 1000)
        hub.snapshot(client)


async def _drain_incoming(socket: WebSocket[Any, Any, Any]) -> None:
    """Read (and ignore) what a client sends on a server->client stream; ends on close."""
    while True:
        await socket.receive_data(mode="text")


async def _pump_until_gone(
    socket: WebSocket[Any, Any, Any], client: Any, reader: asyncio.Task[Any]
) -> None:
    sender = asyncio.create_task(pump(socket, client))
    try:
        done, _ = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            exc = t.exception()
            if exc is not None and not isinstance(exc, WebSocketDisconnect | RuntimeError):
                raise exc
    finally:
        for t in (sender, reader):
            t.cancel()
        await asyncio.gather(sender, reader, return_exceptions=True)


async def _fanout_stream(socket: WebSocket[Any, Any, Any], fan: Fanout, first: list[str]) -> None:
    await socket.accept()
    client = fan.join()
    for frame in first:
        client.offer(frame, fan.drop_after)
    reader = asyncio.create_task(_drain_incoming(socket))
    try:
        await _pump_until_gone(socket, client, reader)
    finally:
        fan.leave(client)


@websocket("/rl/ws/status")
async def ws_status(socket: WebSocket[Any, Any, Any], web: Web) -> None:
    """The status bar: one status frame now and every ``status_interval_s``."""
    import msgspec

    first = dumps({"type": "status", **msgspec.to_builtins(web.status())})
    await _fanout_stream(socket, web.status_fanout, [first])


@websocket("/rl/ws/actions")
async def ws_actions(socket: WebSocket[Any, Any, Any], web: Web) -> None:
    """The actor's action records as they happen (the last 50 replayed on join)."""
    import msgspec

    async with web.node.pool.acquire() as conn:
        actor = msgspec.to_builtins(await actor_out(web, conn))
    first = [dumps({"type": "actor", **actor}), *web.actions.recent]
    await _fanout_stream(socket, web.actions_fanout, first)


@websocket("/rl/ws/training")
async def ws_training(socket: WebSocket[Any, Any, Any], web: Web) -> None:
    """Training progress and model status changes (NOTIFY payloads), runs list on join."""
    import msgspec

    from kalshi_rl.web import queries

    async with web.node.pool.acquire() as conn:
        rows = await queries.list_runs(conn, None, 20)
    runs = [msgspec.to_builtins(queries.run_out(r, None)) for r in rows]
    await _fanout_stream(socket, web.training_fanout, [dumps({"type": "runs", "runs": runs})])


# ------------------------------------------------------------------ the app


def create_app(
    node: NodeView,
    config: WebConfig | None = None,
    *,
    actor: ActorView | None = None,
    mode: str | None = None,
    launcher: TrainingLauncher | None = None,
    debug: bool = False,
) -> Litestar:
    """The dashboard app over ``node``.

    Args:
        node: the live node (books, feed, writer, pool, session; see web/node.py).
        config: bind, token, UI dir, stream rates (default ``WebConfig()``).
        actor: the node's actor control (``web.actor.ActorControl``); None: no trading.
        mode: what the node records ('sim', 'live', 'demo'; default ``node.config.mode``).
        launcher: starts training processes (default one writing under the data dir).
        debug: Litestar debug mode (tracebacks in 500 bodies; tests only).

    Returns:
        The Litestar app; serve it with :func:`serve` on the node's loop.
    """
    cfg = config or WebConfig()
    if cfg.exposed and cfg.token is None:
        log.warning("web bound to %s without a token: every control route answers 401", cfg.host)
    if launcher is None:
        from kalshi_rl.store.db import default_data_dir

        launcher = TrainingLauncher(node.dsn, cfg.data_dir or default_data_dir())
    status_fan, actions_fan, training_fan = Fanout(), Fanout(), Fanout()
    web = WebState(
        node=node,
        config=cfg,
        launcher=launcher,
        orderbook=OrderbookHub(node, tick_s=cfg.ws_tick_s),
        status_fanout=status_fan,
        actions_fanout=actions_fan,
        training_fanout=training_fan,
        actions=ActionsHub(lambda: web.actor, actions_fan),
        training=TrainingHub(lambda: asyncpg.connect(node.dsn), training_fan),
        actor=actor,
        mode=mode or str(getattr(getattr(node, "config", None), "mode", "sim")),
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await web.refresh_info()
        web.tasks = [
            asyncio.create_task(web.orderbook.run(), name="web-orderbook"),
            asyncio.create_task(web.actions.run(), name="web-actions"),
            asyncio.create_task(web.training.run(), name="web-training-listen"),
            asyncio.create_task(web.info_loop(), name="web-market-info"),
            asyncio.create_task(web.status_loop(), name="web-status"),
        ]
        try:
            yield
        finally:
            for t in web.tasks:
                t.cancel()
            await asyncio.gather(*web.tasks, return_exceptions=True)
            await web.launcher.close()

    handlers: list[Any] = [*HANDLERS, ws_orderbook, ws_status, ws_actions, ws_training]
    ui_dir = Path(cfg.ui_dir)
    if (ui_dir / "index.html").is_file():
        handlers.append(create_static_files_router(path="/", directories=[ui_dir], html_mode=True))

    import kalshi_rl

    app = Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        dependencies={
            "web": Provide(_provide_web, sync_to_thread=False),
            "conn": Provide(_provide_conn),
        },
        exception_handlers={
            RegistryError: _registry_error,
            KalshiRLError: _our_error,
            asyncpg.DataError: _data_error,
            asyncpg.PostgresConnectionError: _db_error,
            asyncpg.InterfaceError: _db_error,
            OSError: _db_error,
        },
        guards=[control_guard],
        openapi_config=OpenAPIConfig(
            title="kalshi-rl dashboard API",
            version=getattr(kalshi_rl, "__version__", "0"),
            path="/rl/schema",
            use_handler_docstrings=True,
        ),
        debug=debug,
    )
    app.state.web = web
    return app


async def serve(app: Litestar, config: WebConfig, started: asyncio.Event | None = None) -> None:
    """Run ``app`` with uvicorn on the current event loop until cancelled.

    Args:
        app: from :func:`create_app`.
        config: host and port (port 0 picks a free one; read it from ``bound_port``).
        started: set once the socket listens.
    """
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level="warning",
            lifespan="on",
            ws_ping_interval=config.ws_ping_s,
            ws_ping_timeout=config.ws_ping_s,
            loop="none",
        )
    )
    # the node owns SIGINT/SIGTERM (a clean, flushed stop); uvicorn must not take them
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                return
            await asyncio.sleep(0.02)
        app.state.bound_port = server.servers[0].sockets[0].getsockname()[1]
        if started is not None:
            started.set()
        # shielded: cancelling serve() must stop uvicorn gracefully (lifespan shutdown runs),
        # not cancel it mid-request
        await asyncio.shield(task)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), 10)
