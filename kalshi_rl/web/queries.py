"""SQL reads of the API, each returning the typed bodies of ``schemas``.

Every function takes a connection the caller acquired from the node's pool for this
request or stream tick only.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from core.dtypes import (
    ACT_BUY_NO,
    ACT_BUY_YES,
    ACT_HOLD,
    ACT_SELL_NO,
    ACT_SELL_YES,
    ACTION_STATUS_NAMES,
    GAP_REASON_END,
)
from kalshi_rl import registry
from kalshi_rl.web import perf
from kalshi_rl.web.schemas import (
    ActionOut,
    EpisodeOut,
    MarketCoverage,
    ModelMetrics,
    ModelOut,
    PerformanceMetrics,
    ProgressPoint,
    SessionOut,
    Trade,
    TrainingRunOut,
)

ACTION_NAMES = {
    ACT_HOLD: "hold",
    ACT_BUY_YES: "buy_yes",
    ACT_SELL_YES: "sell_yes",
    ACT_BUY_NO: "buy_no",
    ACT_SELL_NO: "sell_no",
}
NOTES_KEY = "notes"  # a version's free-text notes live in its metrics under this key


def _json(v: Any) -> dict[str, Any]:
    if v is None:
        return {}
    if isinstance(v, str):
        out: dict[str, Any] = orjson.loads(v)
        return out
    return dict(v)


def model_out(mv: registry.ModelVersion) -> ModelOut:
    """A registry row as the API shows it (notes taken out of the metrics)."""
    metrics = dict(mv.metrics)
    notes = metrics.pop(NOTES_KEY, "")
    return ModelOut(
        id=mv.id,
        name=mv.name,
        version=mv.version,
        algorithm=mv.algorithm,
        markets=list(mv.markets),
        parent_id=mv.parent_id,
        checkpoint_path=mv.checkpoint_path,
        hyperparams=mv.hyperparams,
        env_config=mv.env_config,
        config_hash=mv.config_hash,
        data_window=mv.data_window,
        metrics=metrics,
        notes=str(notes),
        status=mv.status.value,
        git_commit=mv.git_commit,
        created_at=mv.created_at,
        updated_at=mv.updated_at,
    )


# ------------------------------------------------------------------ markets


async def market_meta(conn: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    """ticker -> (id, status, title, open_time, close_time) of every market."""
    rows = await conn.fetch("SELECT id, ticker, status, title, open_time, close_time FROM markets")
    return {r["ticker"]: r for r in rows}


async def last_trades(
    conn: asyncpg.Connection, session_id: int | None
) -> dict[int, tuple[int, int]]:
    """market_id -> (yes_price, exch_ts ms) of each market's last recorded trade."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (market_id) market_id, yes_price, exch_ts FROM trades"
        " WHERE ($1::bigint IS NULL OR session_id = $1) ORDER BY market_id, exch_ts DESC",
        session_id,
    )
    return {r["market_id"]: (r["yes_price"], r["exch_ts"]) for r in rows}


async def trade_tape(
    conn: asyncpg.Connection, market_id: int, session_id: int | None, limit: int = 50
) -> list[Trade]:
    """The market's latest trades, newest first."""
    rows = await conn.fetch(
        "SELECT exch_ts, yes_price, count, taker_side FROM trades WHERE market_id = $1"
        " AND ($2::bigint IS NULL OR session_id = $2) ORDER BY exch_ts DESC, rec_id DESC"
        " LIMIT $3",
        market_id,
        session_id,
        limit,
    )
    return [
        Trade(
            ts_ms=r["exch_ts"],
            yes_price=r["yes_price"],
            count=r["count"],
            taker_side="yes" if r["taker_side"] == 0 else "no",
        )
        for r in rows
    ]


# ------------------------------------------------------------------ episodes & metrics

_EP_COLS = (
    "id, model_id, mode, markets, status, started_at, ended_at, start_cash, end_value,"
    " fees_paid, n_actions"
)


def _episode(r: asyncpg.Record) -> EpisodeOut:
    return EpisodeOut(
        id=r["id"],
        model_id=r["model_id"],
        mode=r["mode"],
        markets=list(r["markets"]),
        status=r["status"],
        started_at=r["started_at"],
        ended_at=r["ended_at"],
        start_cash=r["start_cash"],
        end_value=r["end_value"],
        fees_paid=r["fees_paid"],
        n_actions=r["n_actions"],
    )


async def list_episodes(
    conn: asyncpg.Connection, model_id: int | None, limit: int, offset: int
) -> list[EpisodeOut]:
    rows = await conn.fetch(
        f"SELECT {_EP_COLS} FROM trading_episodes WHERE ($1::bigint IS NULL OR model_id = $1)"
        " ORDER BY id DESC LIMIT $2 OFFSET $3",
        model_id,
        limit,
        offset,
    )
    return [_episode(r) for r in rows]


async def get_episode(conn: asyncpg.Connection, episode_id: int) -> EpisodeOut | None:
    r = await conn.fetchrow(f"SELECT {_EP_COLS} FROM trading_episodes WHERE id = $1", episode_id)
    return None if r is None else _episode(r)


async def episode_actions(
    conn: asyncpg.Connection, episode_id: int, limit: int, offset: int
) -> list[ActionOut]:
    rows = await conn.fetch(
        "SELECT a.step, m.ticker, a.ts, a.action, a.status, a.price, a.count, a.filled, a.fee,"
        " a.position, a.account_value, a.probs FROM trading_actions a"
        " LEFT JOIN markets m ON m.id = a.market_id"
        " WHERE a.episode_id = $1 ORDER BY a.step DESC LIMIT $2 OFFSET $3",
        episode_id,
        limit,
        offset,
    )
    return [
        ActionOut(
            step=r["step"],
            ticker=r["ticker"],
            ts_ns=r["ts"],
            action=r["action"],
            action_name=ACTION_NAMES.get(r["action"], str(r["action"])),
            status=_status_name(r["status"]),
            price=None if r["price"] < 0 else r["price"],
            count=r["count"],
            filled=r["filled"],
            fee=r["fee"],
            position=r["position"],
            account_value=r["account_value"],
            probs=[float(x) for x in r["probs"] or ()],
        )
        for r in rows
    ]


def _status_name(code: int) -> str:
    return ACTION_STATUS_NAMES[code] if 0 <= code < len(ACTION_STATUS_NAMES) else str(code)


async def episode_performance(conn: asyncpg.Connection, ep: EpisodeOut) -> PerformanceMetrics:
    """Metrics of one episode from its decisions.

    Each decision records its market's sub-account value; the account's value after step k
    is the sum over markets of their latest value (a market not yet decided on counts at
    its start, ``start_cash / n_markets``).
    """
    rows = await conn.fetch(
        "SELECT ts, market_id, account_value, fee FROM trading_actions WHERE episode_id = $1"
        " ORDER BY step",
        ep.id,
    )
    n = max(len(ep.markets), 1)
    per = ep.start_cash // n
    last: dict[int, int] = {}
    total = per * n
    ts: list[int] = []
    vals: list[int] = []
    fees = 0
    for r in rows:
        m = r["market_id"]
        total += int(r["account_value"]) - last.get(m, per)
        last[m] = int(r["account_value"])
        fees += int(r["fee"])
        ts.append(int(r["ts"]) // 1_000_000)
        vals.append(total)
    if ep.end_value is not None and ep.ended_at is not None:
        ts.append(int(ep.ended_at.timestamp() * 1000))
        vals.append(ep.end_value)
    return perf.episode_metrics(ts, vals, ep.start_cash, ep.fees_paid or fees)


async def model_performance(conn: asyncpg.Connection, model_id: int) -> PerformanceMetrics:
    eps = await list_episodes(conn, model_id, 1000, 0)
    parts = [await episode_performance(conn, e) for e in reversed(eps)]
    return perf.combine(parts)


async def model_metrics(conn: asyncpg.Connection, model_id: int) -> ModelMetrics:
    mv = await registry.get(conn, model_id)
    ev = mv.metrics.get("eval")
    return ModelMetrics(
        model_id=mv.id,
        name=mv.name,
        version=mv.version,
        paper=await model_performance(conn, model_id),
        evaluation=ev if isinstance(ev, dict) else {},
    )


# ------------------------------------------------------------------ training

_RUN_SQL = (
    "SELECT r.id, r.model_id, m.name AS model_name, m.version AS model_version, r.algorithm,"
    " r.status, r.total_timesteps, r.started_at, r.ended_at, r.error,"
    " coalesce(p.timesteps, 0) AS timesteps, p.metrics AS last_metrics"
    " FROM training_runs r LEFT JOIN models m ON m.id = r.model_id"
    " LEFT JOIN LATERAL (SELECT timesteps, metrics FROM training_progress"
    "   WHERE run_id = r.id ORDER BY timesteps DESC LIMIT 1) p ON true"
)


def _run(r: asyncpg.Record, job_id: int | None) -> TrainingRunOut:
    return TrainingRunOut(
        id=r["id"],
        model_id=r["model_id"],
        model_name=r["model_name"],
        model_version=r["model_version"],
        algorithm=r["algorithm"],
        status=r["status"],
        total_timesteps=r["total_timesteps"],
        timesteps=r["timesteps"],
        started_at=r["started_at"],
        ended_at=r["ended_at"],
        error=r["error"],
        last_metrics={k: float(v) for k, v in _json(r["last_metrics"]).items()},
        job_id=job_id,
    )


async def list_runs(
    conn: asyncpg.Connection, status: str | None, limit: int
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            _RUN_SQL + " WHERE ($1::text IS NULL OR r.status = $1) ORDER BY r.id DESC LIMIT $2",
            status,
            limit,
        )
    )


async def get_run(conn: asyncpg.Connection, run_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(_RUN_SQL + " WHERE r.id = $1", run_id)
    return row


def run_out(r: asyncpg.Record, job_id: int | None) -> TrainingRunOut:
    return _run(r, job_id)


async def run_progress(conn: asyncpg.Connection, run_id: int) -> list[ProgressPoint]:
    rows = await conn.fetch(
        "SELECT timesteps, ts, metrics FROM training_progress WHERE run_id = $1 ORDER BY timesteps",
        run_id,
    )
    return [
        ProgressPoint(
            timesteps=r["timesteps"],
            ts=r["ts"],
            metrics={k: float(v) for k, v in _json(r["metrics"]).items()},
        )
        for r in rows
    ]


# ------------------------------------------------------------------ recording sessions

_SESSION_COLS = (
    "id, started_at, ended_at, source, mode, cardinality(markets) AS n_markets,"
    " extract(epoch FROM coalesce(ended_at, now()) - started_at)::float8 AS duration_s,"
    " n_messages, n_deltas, n_snapshots, n_trades, n_gaps, n_decode_errors, n_reconnects"
)


def session_out(r: asyncpg.Record, live_id: int | None, feed: Any = None) -> SessionOut:
    """One session row; the live one (``live_id``) with the feed's counters from memory
    (``feed``: the node's feed; its row's counters are written when the session closes)."""
    live = r["id"] == live_id
    if live and feed is not None:
        st = feed.stats
        counts = {
            "n_messages": int(st.msgs), "n_deltas": int(st.deltas),
            "n_snapshots": int(st.snapshots), "n_trades": int(st.trades),
            "n_gaps": int(st.gaps), "n_decode_errors": int(st.decode_errors),
            "n_reconnects": int(st.reconnects),
        }  # fmt: skip
        n_markets = max(int(r["n_markets"] or 0), len(getattr(feed, "tickers", ())))
        return SessionOut(
            id=r["id"], started_at=r["started_at"], ended_at=r["ended_at"], source=r["source"],
            mode=r["mode"], n_markets=n_markets, duration_s=float(r["duration_s"]), live=True,
            **counts,
        )  # fmt: skip
    return SessionOut(
        id=r["id"],
        started_at=r["started_at"],
        ended_at=r["ended_at"],
        source=r["source"],
        mode=r["mode"],
        n_markets=r["n_markets"],
        duration_s=float(r["duration_s"]),
        n_messages=r["n_messages"],
        n_deltas=r["n_deltas"],
        n_snapshots=r["n_snapshots"],
        n_trades=r["n_trades"],
        n_gaps=r["n_gaps"],
        n_decode_errors=r["n_decode_errors"],
        n_reconnects=r["n_reconnects"],
        live=live,
    )


async def list_sessions(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT {_SESSION_COLS} FROM feed_sessions ORDER BY id DESC LIMIT $1", limit
        )
    )


async def get_session(conn: asyncpg.Connection, session_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {_SESSION_COLS} FROM feed_sessions WHERE id = $1", session_id
    )
    return row


async def session_rows(conn: asyncpg.Connection, session_id: int) -> dict[str, int]:
    """Rows stored per recorded-feed table for one session (counted, not the counters)."""
    out: dict[str, int] = {}
    for table in ("orderbook_deltas", "orderbook_snapshots", "trades", "feed_gaps"):
        out[table] = int(
            await conn.fetchval(f"SELECT count(*) FROM {table} WHERE session_id = $1", session_id)
        )
    return out


async def session_coverage(conn: asyncpg.Connection, session_id: int) -> list[MarketCoverage]:
    """Per market: rows, gaps, and how long its book was invalid (gap -> next snapshot).

    Time invalid sums, over the market's gap rows, the wait from the gap to the next
    snapshot of that market (to the session's end if none came).  A market's end-of-
    recording row (GAP_REASON_END: determined, or the session closed) is no gap: it is
    not counted, and the time after it is not "invalid".
    """
    rows = await conn.fetch(
        """
        WITH d AS (SELECT market_id, count(*) n, min(exch_ts) t0, max(exch_ts) t1
                   FROM orderbook_deltas WHERE session_id = $1 GROUP BY market_id),
             s AS (SELECT market_id, count(DISTINCT rec_id) n FROM orderbook_snapshots
                   WHERE session_id = $1 GROUP BY market_id),
             t AS (SELECT market_id, count(*) n FROM trades WHERE session_id = $1
                   GROUP BY market_id),
             g AS (SELECT gp.market_id, count(*) n,
                          sum(coalesce(nx.recv_ts, end_ns.v) - gp.recv_ts) AS invalid_ns
                   FROM feed_gaps gp
                   CROSS JOIN (SELECT greatest(
                       (SELECT max(recv_ts) FROM orderbook_deltas WHERE session_id = $1),
                       (SELECT max(recv_ts) FROM feed_gaps WHERE session_id = $1)) AS v) end_ns
                   LEFT JOIN LATERAL (SELECT min(sn.recv_ts) AS recv_ts
                       FROM orderbook_snapshots sn WHERE sn.session_id = $1
                       AND sn.market_id = gp.market_id AND sn.recv_ts > gp.recv_ts) nx ON true
                   WHERE gp.session_id = $1 AND gp.reason <> $2 GROUP BY gp.market_id),
             ids AS (SELECT market_id FROM d UNION SELECT market_id FROM s
                     UNION SELECT market_id FROM g)
        SELECT m.ticker, coalesce(d.n, 0) deltas, coalesce(s.n, 0) snapshots,
               coalesce(t.n, 0) trades, coalesce(g.n, 0) gaps,
               coalesce(g.invalid_ns, 0)::float8 / 1e9 AS invalid_s, d.t0, d.t1
        FROM ids JOIN markets m ON m.id = ids.market_id
        LEFT JOIN d USING (market_id) LEFT JOIN s USING (market_id)
        LEFT JOIN t USING (market_id) LEFT JOIN g USING (market_id)
        ORDER BY m.ticker
        """,
        session_id,
        GAP_REASON_END,
    )
    return [
        MarketCoverage(
            ticker=r["ticker"],
            deltas=r["deltas"],
            snapshots=r["snapshots"],
            trades=r["trades"],
            gaps=r["gaps"],
            time_invalid_s=max(0.0, float(r["invalid_s"])),
            first_ms=r["t0"],
            last_ms=r["t1"],
        )
        for r in rows
    ]
