"""HTTP handlers of /rl/*: one Controller per area, thin over ``queries`` and the node.

Handlers get the app state (``web``) and, when they touch PostgreSQL, a connection
(``conn``) borrowed from the node's pool for this request only.
"""

from __future__ import annotations

import contextlib
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import asyncpg
from litestar import Controller, MediaType, Response, get, post, put
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromQuery, JSONBody, Parameter
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_409_CONFLICT,
    HTTP_501_NOT_IMPLEMENTED,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from kalshi_rl import registry
from kalshi_rl.web import books as bookview
from kalshi_rl.web import queries
from kalshi_rl.web.node import ActorView, actor_state
from kalshi_rl.web.schemas import (
    ActorKill,
    ActorMode,
    ActorOut,
    ActorStart,
    Compare,
    DeployResult,
    EpisodeDetail,
    EpisodeOut,
    FeatureNames,
    Fill,
    Ladder,
    Lineage,
    MarketSummary,
    ModelCreate,
    ModelMetrics,
    ModelOut,
    ModelUpdate,
    PerformanceMetrics,
    PnlPoint,
    Position,
    RestingOrder,
    SessionDetail,
    SessionOut,
    Status,
    TrainingJob,
    TrainingRunDetail,
    TrainingRunOut,
    TrainingStart,
)
from kalshi_rl.web.state import Conn, Web

Limit = Annotated[int, Parameter(ge=1, le=1000)]
Offset = Annotated[int, Parameter(ge=0, le=10**9)]
Id = Annotated[int, Parameter(ge=1, le=2**62)]


def conflict(detail: str) -> HTTPException:
    return HTTPException(status_code=HTTP_409_CONFLICT, detail=detail)


def unavailable(detail: str) -> HTTPException:
    return HTTPException(status_code=HTTP_503_SERVICE_UNAVAILABLE, detail=detail)


# ------------------------------------------------------------------ status


class StatusController(Controller):
    path = "/rl/status"
    tags = ["status"]  # noqa: RUF012

    @get("/", summary="Health, feed, books, ring, DB lag, actor")
    async def status(self, web: Web) -> Status:
        return web.status()


@get("/rl/features", tags=["status"], summary="Observation feature names, in kernel order")
async def features() -> FeatureNames:
    from core.features import ACCOUNT_FEATURE_NAMES, MARKET_FEATURE_NAMES

    return FeatureNames(market=list(MARKET_FEATURE_NAMES), account=list(ACCOUNT_FEATURE_NAMES))


# ------------------------------------------------------------------ markets


class MarketsController(Controller):
    path = "/rl/markets"
    tags = ["markets"]  # noqa: RUF012

    @get("/", summary="Every market with its status and book summary")
    async def list_markets(
        self, web: Web, valid: FromQuery[bool | None] = None, status: FromQuery[str | None] = None
    ) -> list[MarketSummary]:
        books = web.node.books
        out = [bookview.summary(books, s, web.info) for s in range(books.n_markets)]
        if valid is not None:
            out = [m for m in out if m.valid == valid]
        if status is not None:
            out = [m for m in out if m.status == status]
        return out

    @get("/{ticker:str}", summary="One market's ladders, trade tape and the agent's orders")
    async def ladder(
        self,
        web: Web,
        conn: Conn,
        ticker: Annotated[str, Parameter(max_length=128)],
        levels: Annotated[int, Parameter(ge=1, le=1001)] = bookview.LADDER_LEVELS,
    ) -> Ladder:
        books = web.node.books
        slot = books.slots.get(ticker)
        if slot is None:
            raise NotFoundException(detail=f"no market {ticker!r} in this node's books")
        frame = bookview.book_frame(books, slot, levels)
        row = web.info.meta.get(ticker)
        trades = (
            [] if row is None else await queries.trade_tape(conn, row["id"], web.node.session_id)
        )
        snap = _actor_snapshot(web.actor)
        orders = [o for o in _orders_of(snap) if o.ticker == ticker]
        fills = [
            Fill(
                ts_ms=_int(f.get("ts_ms")),
                side="no" if f.get("side") == "no" else "yes",
                action="sell" if f.get("action") == "sell" else "buy",
                price=_int(f.get("price")),
                count=_int(f.get("count")),
                fee=_int(f.get("fee")),
                is_taker=bool(f.get("is_taker")),
            )
            for f in snap.get("fills", [])
            if isinstance(f, dict) and f.get("ticker") == ticker
        ]
        return Ladder(
            ticker=ticker,
            valid=frame["valid"],
            seq=frame["seq"],
            recv_ts_ns=frame["recv_ts_ns"],
            yes=bookview.levels(books, slot, 0, levels),
            no=bookview.levels(books, slot, 1, levels),
            yes_bid=frame["yes_bid"],
            yes_ask=frame["yes_ask"],
            spread=frame["spread"],
            mid=frame["mid"],
            trades=trades,
            orders=orders,
            fills=fills,
        )


def _actor_snapshot(actor: ActorView | None) -> dict[str, Any]:
    if actor is None:
        return {}
    snap = actor.snapshot()
    return snap if isinstance(snap, dict) else {}


def _orders_of(snap: dict[str, Any]) -> list[RestingOrder]:
    return [
        RestingOrder(
            order_id=str(o.get("order_id") or o.get("client_order_id")),
            ticker=str(o.get("ticker", "")),
            side="no" if o.get("side") in ("no", 1) else "yes",
            action="sell" if o.get("action") in ("sell", 1) else "buy",
            price=_int(o.get("price")),
            remaining=_int(o.get("remaining")),
            queue_ahead=None if o.get("queue_ahead") is None else _int(o.get("queue_ahead")),
        )
        for o in snap.get("orders", [])
        if isinstance(o, dict)
    ]


# ------------------------------------------------------------------ models


class ModelsController(Controller):
    path = "/rl/models"
    tags = ["models"]  # noqa: RUF012

    @get("/", summary="Model versions (filters: name, status, algorithm)")
    async def list_models(
        self,
        conn: Conn,
        name: Annotated[str | None, Parameter(max_length=128)] = None,
        status: FromQuery[registry.ModelStatus | None] = None,
        algorithm: Annotated[str | None, Parameter(max_length=32)] = None,
    ) -> list[ModelOut]:
        rows = await registry.list_models(conn, name, status)
        if algorithm is not None:
            rows = [r for r in rows if r.algorithm.lower() == algorithm.lower()]
        return [queries.model_out(r) for r in rows]

    @get("/{model_id:int}", summary="One model version")
    async def detail(self, conn: Conn, model_id: Id) -> ModelOut:
        return queries.model_out(await registry.get(conn, model_id))

    @post("/", summary="Register an existing checkpoint as a new version", status_code=201)
    async def create(self, conn: Conn, data: JSONBody[ModelCreate]) -> ModelOut:
        path = Path(data.checkpoint_path)
        try:
            ok = path.is_file() and zipfile.is_zipfile(path)
        except OSError:  # e.g. a name too long for the file system
            ok = False
        if not ok:
            raise HTTPException(
                status_code=400, detail=f"checkpoint_path {str(path)!r} is not an SB3 zip file"
            )
        meta: dict[str, Any] = {}
        with contextlib.suppress(registry.RegistryError):  # a plain SB3 zip: no provenance
            meta = registry.read_embedded_metadata(path)
        env_config = meta.get("config", {}).get("identity", {}) if meta else {}
        mv = await registry.register(
            conn,
            data.name,
            data.algorithm.upper(),
            env_config=env_config,
            markets=data.markets,
            parent_id=data.parent_id,
            checkpoint_path=path,
            data_window=meta.get("data_window"),
            metrics={**meta.get("metrics", {}), queries.NOTES_KEY: data.notes},
            git_commit=meta.get("git_commit"),
        )
        mv = await registry.promote(conn, mv.id)
        return queries.model_out(mv)

    @put("/{model_id:int}", summary="Change status (registry transitions) and/or notes")
    async def update(self, web: Web, conn: Conn, model_id: Id,
                     data: JSONBody[ModelUpdate]) -> ModelOut:  # fmt: skip
        mv = await registry.get(conn, model_id)
        if data.notes is not None:
            mv = await registry.update(conn, model_id, metrics={queries.NOTES_KEY: data.notes})
        if data.status is not None and data.status != mv.status.value:
            if data.status == "deployed":
                return (await _deploy(web, conn, model_id)).model
            mv = await registry.set_status(conn, model_id, data.status)
        return queries.model_out(mv)

    @post("/{model_id:int}/deploy", summary="Deploy; the actor switches to it", status_code=200)
    async def deploy(self, web: Web, conn: Conn, model_id: Id) -> DeployResult:
        return await _deploy(web, conn, model_id)

    @post("/{model_id:int}/archive", summary="Archive a version", status_code=200)
    async def archive(self, conn: Conn, model_id: Id) -> ModelOut:
        return queries.model_out(await registry.archive(conn, model_id))

    @post(
        "/{model_id:int}/rollback",
        summary="Deploy the previous ready version of this model's name",
        status_code=200,
    )
    async def rollback(self, web: Web, conn: Conn, model_id: Id) -> DeployResult:
        mv = await registry.get(conn, model_id)
        current = await registry.deployed(conn, mv.name)
        below = current.version if current is not None else mv.version
        candidates = [
            m
            for m in await registry.list_models(conn, mv.name, registry.ModelStatus.READY)
            if m.version < below and m.checkpoint_path
        ]
        if not candidates:
            raise conflict(f"{mv.name} has no ready version older than v{below} to roll back to")
        return await _deploy(web, conn, candidates[-1].id)

    @get("/{model_id:int}/lineage", summary="Ancestors and descendants")
    async def lineage(self, conn: Conn, model_id: Id) -> Lineage:
        mv = await registry.get(conn, model_id)
        return Lineage(
            model=queries.model_out(mv),
            ancestors=[queries.model_out(m) for m in await registry.ancestors(conn, model_id)],
            descendants=[queries.model_out(m) for m in await registry.descendants(conn, model_id)],
        )

    @get("/{model_id:int}/metrics", summary="Paper P&L, fees, win rate, Sharpe, drawdown")
    async def metrics(self, conn: Conn, model_id: Id) -> ModelMetrics:
        return await queries.model_metrics(conn, model_id)


async def _deploy(web: Web, conn: Conn, model_id: Id) -> DeployResult:
    mv = await registry.get(conn, model_id)
    if not mv.checkpoint_path:
        raise conflict(f"{mv.name} v{mv.version} has no checkpoint to deploy")
    before = await registry.deployed(conn, mv.name)
    if mv.status is not registry.ModelStatus.DEPLOYED:
        mv = await registry.deploy(conn, model_id)
    switched = False
    actor = web.actor
    if actor is not None and actor.model_id != mv.id and actor_state(actor) != "halted":
        if actor_state(actor) in ("stopped", "none"):
            await actor.start(mv.id)
        else:
            await actor.switch_model(mv.id)
        switched = True
    demoted = before.id if before is not None and before.id != mv.id else None
    return DeployResult(model=queries.model_out(mv), demoted_id=demoted, actor_switched=switched)


class CompareController(Controller):
    path = "/rl/compare"
    tags = ["models"]  # noqa: RUF012

    @get("/", summary="Models side by side: evaluation tables and paper equity curves")
    async def compare(
        self,
        conn: Conn,
        ids: Annotated[list[int], Parameter(min_items=1, max_items=12)],
    ) -> Compare:
        out = [await queries.model_metrics(conn, i) for i in dict.fromkeys(ids)]
        names: dict[str, None] = {}
        for m in out:
            agent = m.evaluation.get("agent")
            if isinstance(agent, dict):
                names.update(dict.fromkeys(agent))
        return Compare(models=out, metric_names=list(names))


# ------------------------------------------------------------------ episodes


class EpisodesController(Controller):
    path = "/rl/episodes"
    tags = ["episodes"]  # noqa: RUF012

    @get("/", summary="Paper-trading episodes, newest first")
    async def list_episodes(
        self,
        conn: Conn,
        model_id: Annotated[int | None, Parameter(ge=1, le=2**62)] = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> list[EpisodeOut]:
        return await queries.list_episodes(conn, model_id, limit, offset)

    @get("/{episode_id:int}", summary="One episode with its actions (newest first)")
    async def detail(
        self, conn: Conn, episode_id: Id, limit: Limit = 500, offset: Offset = 0
    ) -> EpisodeDetail:
        ep = await queries.get_episode(conn, episode_id)
        if ep is None:
            raise NotFoundException(detail=f"no episode {episode_id}")
        return EpisodeDetail(
            episode=ep,
            actions=await queries.episode_actions(conn, episode_id, limit, offset),
            metrics=await queries.episode_performance(conn, ep),
        )

    @get("/{episode_id:int}/metrics", summary="P&L, fees, win rate, Sharpe, drawdown")
    async def metrics(self, conn: Conn, episode_id: Id) -> PerformanceMetrics:
        ep = await queries.get_episode(conn, episode_id)
        if ep is None:
            raise NotFoundException(detail=f"no episode {episode_id}")
        return await queries.episode_performance(conn, ep)


# ------------------------------------------------------------------ training


class TrainingController(Controller):
    path = "/rl/training"
    tags = ["training"]  # noqa: RUF012

    @post("/", summary="Start a training run in a separate process", status_code=202)
    async def start(self, web: Web, conn: Conn, data: JSONBody[TrainingStart]) -> TrainingJob:
        if (data.dataset is None) == (data.session_id is None):
            raise HTTPException(status_code=400, detail="give exactly one of dataset, session_id")
        if data.dataset is not None:
            _check_dataset(data.dataset)
        if data.session_id is not None and (
            await conn.fetchval("SELECT 1 FROM feed_sessions WHERE id = $1", data.session_id)
            is None
        ):
            raise NotFoundException(detail=f"no recording session {data.session_id}")
        if data.start_ms is not None and data.end_ms is not None and data.end_ms <= data.start_ms:
            raise HTTPException(status_code=400, detail="end_ms must be after start_ms")
        if data.parent_id is not None:
            await registry.get(conn, data.parent_id)  # 404 when unknown
        return web.launcher.start(data).view()

    @get("/", summary="Training runs with their latest progress")
    async def runs(
        self, web: Web, conn: Conn, status: FromQuery[str | None] = None,
        limit: Limit = 50,
    ) -> list[TrainingRunOut]:  # fmt: skip
        rows = await queries.list_runs(conn, status, limit)
        _match_jobs(web, rows)
        return [queries.run_out(r, _job_id(web, r["id"])) for r in rows]

    @get("/jobs", summary="Training processes this node started")
    async def jobs(self, web: Web, conn: Conn) -> list[TrainingJob]:
        _match_jobs(web, await queries.list_runs(conn, None, 200))
        return [j.view() for j in web.launcher.jobs.values()]

    @get("/{run_id:int}", summary="One run with its progress curve")
    async def run(self, web: Web, conn: Conn, run_id: Id) -> TrainingRunDetail:
        row = await queries.get_run(conn, run_id)
        if row is None:
            raise NotFoundException(detail=f"no training run {run_id}")
        return TrainingRunDetail(
            run=queries.run_out(row, _job_id(web, run_id)),
            progress=await queries.run_progress(conn, run_id),
        )

    @post("/{run_id:int}/stop", summary="Stop a run this node started", status_code=202)
    async def stop(self, web: Web, conn: Conn, run_id: Id) -> TrainingJob:
        _match_jobs(web, await queries.list_runs(conn, None, 200))
        job = web.launcher.job_for_run(run_id)
        if job is None:
            if await queries.get_run(conn, run_id) is None:
                raise NotFoundException(detail=f"no training run {run_id}")
            raise conflict(f"training run {run_id} was not started by this node")
        if not web.launcher.stop(job):
            raise conflict(f"training run {run_id} is not running ({job.state})")
        return job.view()

    @post("/jobs/{job_id:int}/stop", summary="Stop a job (also before its run row exists)",
          status_code=202)  # fmt: skip
    async def stop_job(self, web: Web, job_id: Id) -> TrainingJob:
        job = web.launcher.jobs.get(job_id)
        if job is None:
            raise NotFoundException(detail=f"no training job {job_id}")
        if not web.launcher.stop(job):
            raise conflict(f"training job {job_id} is not running ({job.state})")
        return job.view()


def _check_dataset(spec: str) -> None:
    """400 unless ``spec`` is ``synthetic:S:L:SEED``, ``sim:MARKETS:SECONDS:SEED``,
    ``rolling:SERIES:SECONDS:SEED`` or a Parquet file / dir of them."""
    if spec.startswith("sim:"):
        parts = spec.removeprefix("sim:").split(":")
        ok = len(parts) == 3 and all(p.isdigit() for p in parts)
        if not ok or not (1 <= int(parts[0]) <= 64 and 1 <= int(parts[1]) <= 3600):
            raise HTTPException(
                status_code=400,
                detail=f"dataset {spec!r}: sim:MARKETS(1-64):SECONDS(1-3600):SEED",
            )
        return
    if spec.startswith("rolling:"):
        parts = spec.removeprefix("rolling:").split(":")
        ok = len(parts) == 3 and all(p.isdigit() for p in parts)
        if not ok or not (1 <= int(parts[0]) <= 8 and 1 <= int(parts[1]) <= 3600):
            raise HTTPException(
                status_code=400,
                detail=f"dataset {spec!r}: rolling:SERIES(1-8):SECONDS(1-3600):SEED",
            )
        return
    if spec.startswith("synthetic:"):
        parts = spec.removeprefix("synthetic:").split(":")
        if len(parts) != 3 or not all(p.isdigit() and 0 < int(p) <= 10**7 for p in parts):
            raise HTTPException(status_code=400, detail=f"dataset {spec!r}: synthetic:S:L:SEED")
        return
    try:
        p = Path(spec)
        ok = (p.is_file() and p.suffix == ".parquet") or (p.is_dir() and any(p.glob("*.parquet")))
    except OSError:
        ok = False
    if not ok:
        raise HTTPException(
            status_code=400, detail=f"dataset {spec!r} not found (no Parquet there)"
        )


def _match_jobs(web: Web, rows: list[asyncpg.Record]) -> None:
    """Tie each job to the run its child created: same model name, started after the job."""
    for job in web.launcher.jobs.values():
        if job.run_id is not None or job.state == "building":
            continue
        for r in sorted(rows, key=lambda r: r["id"]):
            if (
                r["model_name"] == job.name
                and r["started_at"] >= job.started_at - timedelta(seconds=2)
                and web.launcher.job_for_run(r["id"]) is None
            ):
                job.run_id = r["id"]
                break


def _job_id(web: Web, run_id: int) -> int | None:
    job = web.launcher.job_for_run(run_id)
    return None if job is None else job.job_id


# ------------------------------------------------------------------ actor


def _need_actor(web: Web) -> ActorView:
    if web.actor is None:
        raise conflict("this node runs no actor")
    return web.actor


def _int(v: Any, default: int = 0) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _pnl(p: Any) -> PnlPoint | None:
    if not isinstance(p, dict):
        return None
    s, r, o, f = (_int(p.get(k)) for k in ("settlement", "realized", "open_marks", "fees"))
    return PnlPoint(
        ts_ms=_int(p.get("ts_ms")), settlement=s, realized=r, open_marks=o, fees=f,
        total=_int(p.get("total"), s + r + o - f),
    )  # fmt: skip


async def actor_out(web: Web, conn: asyncpg.Connection | None) -> ActorOut:
    actor = web.actor
    if actor is None:
        return ActorOut(
            available=False, state="none", mode="paper", model_id=None, model_name=None,
            model_version=None, episode_id=None, halted_reason=None, cash=0, positions=[],
            pnl=None, pnl_history=[], n_actions=0, orders=[],
        )  # fmt: skip
    snap = _actor_snapshot(actor)
    name = version = None
    if actor.model_id is not None and conn is not None:
        try:
            mv = await registry.get(conn, actor.model_id)
            name, version = mv.name, mv.version
        except registry.RegistryError:
            pass
    positions = [
        Position(
            ticker=str(p.get("ticker")),
            position=_int(p.get("position")),
            avg_price=None if p.get("avg_price") is None else float(p["avg_price"]),
            mark_value=_int(p.get("mark_value")),
            realized=_int(p.get("realized")),
        )
        for p in snap.get("positions", [])
        if isinstance(p, dict)
    ]
    orders = _orders_of(snap)
    history = [q for p in snap.get("pnl_history", []) if (q := _pnl(p)) is not None]
    return ActorOut(
        available=True,
        state=actor_state(actor),
        mode="paper",
        model_id=actor.model_id,
        model_name=name,
        model_version=version,
        episode_id=snap.get("episode_id"),
        halted_reason=snap.get("halted_reason"),
        cash=_int(snap.get("cash")),
        positions=positions,
        pnl=_pnl(snap.get("pnl")),
        pnl_history=history[-2000:],
        n_actions=_int(snap.get("n_actions")),
        orders=orders,
    )


class ActorController(Controller):
    path = "/rl/actor"
    tags = ["actor"]  # noqa: RUF012

    @get("/", summary="State, model, positions, P&L split, resting orders")
    async def get_actor(self, web: Web, conn: Conn) -> ActorOut:
        return await actor_out(web, conn)

    @post("/start", summary="Start trading a model (paper)", status_code=200)
    async def start(self, web: Web, conn: Conn, data: JSONBody[ActorStart]) -> ActorOut:
        actor = _need_actor(web)
        mv = await registry.get(conn, data.model_id)
        if not mv.checkpoint_path:
            raise conflict(f"{mv.name} v{mv.version} has no checkpoint")
        await actor.start(mv.id)
        return await actor_out(web, conn)

    @post("/stop", summary="Stop trading (cancel orders, keep positions)", status_code=200)
    async def stop(self, web: Web, conn: Conn) -> ActorOut:
        await _need_actor(web).stop()
        return await actor_out(web, conn)

    @post("/switch", summary="Switch to another model without stopping", status_code=200)
    async def switch(self, web: Web, conn: Conn, data: JSONBody[ActorStart]) -> ActorOut:
        actor = _need_actor(web)
        mv = await registry.get(conn, data.model_id)
        if not mv.checkpoint_path:
            raise conflict(f"{mv.name} v{mv.version} has no checkpoint")
        await actor.switch_model(mv.id)
        return await actor_out(web, conn)

    @post("/kill", summary="Kill switch: cancel everything and halt", status_code=200)
    async def kill(self, web: Web, conn: Conn, data: JSONBody[ActorKill]) -> ActorOut:
        await _need_actor(web).kill(data.reason)
        return await actor_out(web, conn)

    @post("/resume", summary="Release the kill switch and resume trading", status_code=200)
    async def resume(self, web: Web, conn: Conn) -> ActorOut:
        await _need_actor(web).resume()
        return await actor_out(web, conn)

    @post("/mode", summary="Trading mode: 'paper' only ('live' answers 501)", status_code=200)
    async def set_mode(self, web: Web, conn: Conn, data: JSONBody[ActorMode]) -> ActorOut:
        if data.mode == "live":
            raise HTTPException(
                status_code=HTTP_501_NOT_IMPLEMENTED,
                detail="live trading is not implemented: this system trades on paper only",
            )
        return await actor_out(web, conn)


# ------------------------------------------------------------------ recording sessions


class SessionsController(Controller):
    path = "/rl/sessions"
    tags = ["data"]  # noqa: RUF012

    @get("/", summary="Recording sessions, newest first")
    async def list_sessions(self, web: Web, conn: Conn, limit: Limit = 50) -> list[SessionOut]:
        return [
            queries.session_out(r, web.node.session_id, web.node.feed)
            for r in await queries.list_sessions(conn, limit)
        ]

    @get("/{session_id:int}", summary="Coverage per market, gaps, time invalid, rows, lag")
    async def detail(self, web: Web, conn: Conn, session_id: Id) -> SessionDetail:
        row = await queries.get_session(conn, session_id)
        if row is None:
            raise NotFoundException(detail=f"no recording session {session_id}")
        live = session_id == web.node.session_id
        return SessionDetail(
            session=queries.session_out(row, web.node.session_id, web.node.feed),
            rows=await queries.session_rows(conn, session_id),
            durability_lag_ms=web.status().db_lag_ms if live else None,
            markets=await queries.session_coverage(conn, session_id),
        )


# ------------------------------------------------------------------ prometheus


@get("/metrics", media_type=MediaType.TEXT, tags=["status"], summary="Prometheus metrics",
     status_code=HTTP_200_OK)  # fmt: skip
async def prometheus(web: Web) -> Response[bytes]:
    from kalshi_rl.web.prom import exposition

    body, ctype = exposition(web)
    return Response(body, media_type=ctype)


HANDLERS = [
    StatusController,
    features,
    MarketsController,
    ModelsController,
    CompareController,
    EpisodesController,
    TrainingController,
    ActorController,
    SessionsController,
    prometheus,
]
