"""Typed request and response bodies of the /rl/* API (msgspec Structs).

Litestar validates request bodies against these (a bad body answers 400 with the field
and the reason) and derives the OpenAPI schema from them, which ``ui/src/api/schema.ts``
is generated from.  Units as everywhere: prices in ticks of $0.001 (YES scale unless a
field says no_), counts in hundredths of a contract, money in units of $0.0001; fields
ending ``_usd`` are display floats derived from those integers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

ModelName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
PositiveId = Annotated[int, Meta(ge=1, le=2**62)]


class ErrorBody(Struct, kw_only=True):
    """Every 4xx/5xx answer: ``status_code``, ``detail`` (the reason), optional ``extra``."""

    status_code: int
    detail: str
    extra: Any = None


# ------------------------------------------------------------------ status


class FeedStatus(Struct, kw_only=True):
    connected: bool
    msgs: int
    msgs_per_s: float
    deltas: int
    snapshots: int
    trades: int
    gaps: int
    decode_errors: int
    reconnects: int
    latency_p99_us: float


class Status(Struct, kw_only=True):
    """The node at a glance (the status bar)."""

    health: Literal["ok", "degraded", "down"]
    reasons: list[str]
    mode: str
    uptime_s: float
    session_id: int | None
    feed: FeedStatus | None
    books_valid: int
    books_total: int
    books_invalid: int  # should be valid and are not (gap/desync/disconnect, before resync)
    books_waiting: int  # not open yet, or first snapshot not arrived
    books_closed: int  # closed, determined, or no longer followed by the feed
    ring_occupancy: float
    db_up: bool
    db_lag_ms: float
    rows_written: int
    actor_state: str
    actor_model_id: int | None
    training_running: int
    server_time_ms: int


class FeatureNames(Struct, kw_only=True):
    """Names of the observation's entries: the market features then the account ones."""

    market: list[str]
    account: list[str]


# ------------------------------------------------------------------ markets


class Level(Struct, array_like=True):
    """One ladder level: (price ticks on the side's own scale, qty in hundredths)."""

    price: int
    qty: int


class MarketSummary(Struct, kw_only=True):
    ticker: str
    slot: int
    status: str | None
    title: str | None
    valid: bool
    yes_bid: int | None
    yes_ask: int | None
    no_bid: int | None
    no_ask: int | None
    spread: int | None
    mid: float | None
    yes_depth: int
    no_depth: int
    last_trade_price: int | None
    last_trade_ms: int | None
    close_time: datetime | None
    seconds_to_close: float | None
    n_updates: int
    last_update_ms: int | None


class Trade(Struct, kw_only=True):
    ts_ms: int
    yes_price: int
    count: int
    taker_side: Literal["yes", "no"]


class RestingOrder(Struct, kw_only=True):
    """One of the agent's resting orders, with its queue estimate (count ahead of it)."""

    order_id: str
    ticker: str
    side: Literal["yes", "no"]
    action: Literal["buy", "sell"]
    price: int  # on the side's own scale
    remaining: int
    queue_ahead: int | None


class Fill(Struct, kw_only=True):
    ts_ms: int
    side: Literal["yes", "no"]
    action: Literal["buy", "sell"]
    price: int
    count: int
    fee: int
    is_taker: bool


class Ladder(Struct, kw_only=True):
    """One market's book: both bid ladders (best first) and what the agent has there."""

    ticker: str
    valid: bool
    seq: int
    recv_ts_ns: int
    yes: list[Level]
    no: list[Level]
    yes_bid: int | None
    yes_ask: int | None
    spread: int | None
    mid: float | None
    trades: list[Trade]
    orders: list[RestingOrder]
    fills: list[Fill]


# ------------------------------------------------------------------ models


class ModelOut(Struct, kw_only=True):
    id: int
    name: str
    version: int
    algorithm: str
    markets: list[str]
    parent_id: int | None
    checkpoint_path: str | None
    hyperparams: dict[str, Any]
    env_config: dict[str, Any]
    config_hash: str
    data_window: dict[str, Any]
    metrics: dict[str, Any]
    notes: str
    status: str
    git_commit: str | None
    created_at: datetime
    updated_at: datetime


class ModelCreate(Struct, kw_only=True, forbid_unknown_fields=True):
    """Register an existing SB3 checkpoint as the next version of ``name`` (status ready)."""

    name: ModelName
    algorithm: Annotated[str, Meta(pattern=r"^(PPO|A2C|ppo|a2c)$")]
    checkpoint_path: Annotated[str, Meta(min_length=1, max_length=4096)]
    parent_id: PositiveId | None = None
    markets: list[Annotated[str, Meta(min_length=1, max_length=128)]] = []
    notes: Annotated[str, Meta(max_length=4000)] = ""


class ModelUpdate(Struct, kw_only=True, forbid_unknown_fields=True):
    """Change a version's status (registry transitions) and/or its notes."""

    status: Literal["ready", "deployed", "archived", "failed"] | None = None
    notes: Annotated[str, Meta(max_length=4000)] | None = None


class Lineage(Struct, kw_only=True):
    model: ModelOut
    ancestors: list[ModelOut]
    descendants: list[ModelOut]


class DeployResult(Struct, kw_only=True):
    model: ModelOut
    demoted_id: int | None
    actor_switched: bool


# ------------------------------------------------------------------ episodes, metrics


class EpisodeOut(Struct, kw_only=True):
    id: int
    model_id: int | None
    mode: str
    markets: list[str]
    status: str
    started_at: datetime
    ended_at: datetime | None
    start_cash: int
    end_value: int | None
    fees_paid: int
    n_actions: int


class ActionOut(Struct, kw_only=True):
    """One decision of the actor (trading_actions row)."""

    step: int
    ticker: str | None
    ts_ns: int
    action: int
    action_name: str
    status: str
    price: int | None
    count: int
    filled: int
    fee: int
    position: int
    account_value: int  # the market's sub-account value after the decision
    probs: list[float]


class EpisodeDetail(Struct, kw_only=True):
    episode: EpisodeOut
    actions: list[ActionOut]
    metrics: PerformanceMetrics


class PerformanceMetrics(Struct, kw_only=True):
    """Paper-trading performance over episodes (money in $0.0001 units)."""

    episodes: int
    steps: int
    pnl: int
    fees: int
    win_rate: float | None
    sharpe: float | None
    max_drawdown: int
    equity: list[tuple[int, int]]  # (ts_ms, account value - start cash)


class ModelMetrics(Struct, kw_only=True):
    model_id: int
    name: str
    version: int
    paper: PerformanceMetrics
    evaluation: dict[str, Any]


class Compare(Struct, kw_only=True):
    models: list[ModelMetrics]
    metric_names: list[str]


# ------------------------------------------------------------------ training


class TrainingStart(Struct, kw_only=True, forbid_unknown_fields=True):
    """Start a training run in a separate process.

    Data: exactly one of ``dataset`` (a Parquet path, ``synthetic:SEGMENTS:LENGTH:SEED`` for a
    random walk, ``sim:MARKETS:SECONDS:SEED`` for generated history: the local exchange
    recorded in fast mode first, or ``rolling:SERIES:SECONDS:SEED``: the same with rolling
    series of short-lived markets) or ``session_id`` (a recorded session, optionally cut to
    ``start_ms``..``end_ms``; a dataset is built from it first).
    """

    name: ModelName
    algorithm: Literal["ppo", "a2c"] = "ppo"
    timesteps: Annotated[int, Meta(ge=256, le=100_000_000)] = 50_000
    seed: Annotated[int, Meta(ge=0, le=2**31 - 1)] = 0
    n_envs: Annotated[int, Meta(ge=1, le=1024)] = 16
    dataset: Annotated[str, Meta(min_length=1, max_length=4096)] | None = None
    session_id: PositiveId | None = None
    start_ms: Annotated[int, Meta(ge=0)] | None = None
    end_ms: Annotated[int, Meta(ge=0)] | None = None
    parent_id: PositiveId | None = None
    eval_every: Annotated[int, Meta(ge=0, le=100_000_000)] = 10_000


class TrainingJob(Struct, kw_only=True):
    """A training process this node started."""

    job_id: int
    pid: int | None
    name: str
    state: Literal["building", "training", "finished", "failed", "stopped"]
    run_id: int | None
    exit_code: int | None
    started_at: datetime
    log_tail: list[str]


class TrainingRunOut(Struct, kw_only=True):
    id: int
    model_id: int | None
    model_name: str | None
    model_version: int | None
    algorithm: str
    status: str
    total_timesteps: int
    timesteps: int
    started_at: datetime
    ended_at: datetime | None
    error: str | None
    last_metrics: dict[str, float]
    job_id: int | None


class ProgressPoint(Struct, kw_only=True):
    timesteps: int
    ts: datetime
    metrics: dict[str, float]


class TrainingRunDetail(Struct, kw_only=True):
    run: TrainingRunOut
    progress: list[ProgressPoint]


# ------------------------------------------------------------------ actor


class ActorStart(Struct, kw_only=True, forbid_unknown_fields=True):
    model_id: PositiveId


class ActorKill(Struct, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, Meta(max_length=500)] = "kill switch (dashboard)"


class ActorMode(Struct, kw_only=True, forbid_unknown_fields=True):
    mode: Literal["paper", "live"]


class Position(Struct, kw_only=True):
    ticker: str
    position: int  # hundredths, + YES / - NO
    avg_price: float | None
    mark_value: int
    realized: int


class PnlPoint(Struct, kw_only=True):
    ts_ms: int
    settlement: int
    realized: int
    open_marks: int
    fees: int
    total: int


class ActorOut(Struct, kw_only=True):
    """The actor: state, model, positions, P&L split (money in $0.0001 units)."""

    available: bool
    state: str
    mode: str
    model_id: int | None
    model_name: str | None
    model_version: int | None
    episode_id: int | None
    halted_reason: str | None
    cash: int
    positions: list[Position]
    pnl: PnlPoint | None
    pnl_history: list[PnlPoint]
    n_actions: int
    orders: list[RestingOrder]


# ------------------------------------------------------------------ recording sessions


class MarketCoverage(Struct, kw_only=True):
    ticker: str
    deltas: int
    snapshots: int
    trades: int
    gaps: int
    time_invalid_s: float
    first_ms: int | None
    last_ms: int | None


class SessionOut(Struct, kw_only=True):
    id: int
    started_at: datetime
    ended_at: datetime | None
    source: str
    mode: str
    n_markets: int
    duration_s: float
    n_messages: int
    n_deltas: int
    n_snapshots: int
    n_trades: int
    n_gaps: int
    n_decode_errors: int
    n_reconnects: int
    live: bool


class SessionDetail(Struct, kw_only=True):
    session: SessionOut
    rows: dict[str, int]
    durability_lag_ms: float | None
    markets: list[MarketCoverage]


def to_builtins(obj: Any) -> Any:
    """A Struct (or list of them) as JSON-able builtins (for WebSocket frames)."""
    return msgspec.to_builtins(obj)
