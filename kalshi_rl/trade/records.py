"""Where the actor's decisions and episodes go: the action ring -> trading_actions.

The actor only pushes DECISION_DTYPE records to its ring (never awaits the database).
:class:`ActionSink` is the task that drains it and COPYs the rows, mapping book slots to
``markets.id``; while PostgreSQL is down it keeps the drained batches (bounded, counted)
and retries, so nothing is lost short of the bound.  :class:`EpisodeStore` opens and
closes ``trading_episodes`` rows; the actor awaits it only on control paths (start,
model switch, stop), never per decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import asyncpg
import numpy as np
import orjson

from core.ring import Ring
from kalshi_rl.live.session import DB_ERRORS
from kalshi_rl.store.db import ensure_markets

log = logging.getLogger(__name__)

ACTION_COLUMNS = (
    "episode_id", "step", "market_id", "ts", "exch_ts", "latency_ns", "obs_hash",
    "model_version", "action", "slip_idx", "size_idx", "status", "side", "order_action",
    "price", "count", "filled", "fee", "reject", "risk", "position", "cash",
    "account_value", "probs",
)  # fmt: skip


class ActionSink:
    """Drains an actor's ring into ``trading_actions`` every ``interval_s``.

    Args:
        ring: the actor's DECISION_DTYPE ring.
        pool: the live node's asyncpg pool.
        ticker_of: book slot -> ticker (``BookSet.ticker_of``).
        interval_s: flush period.
        max_pending: records kept while the database is down (older ones beyond are
            dropped and counted in ``dropped``).
    """

    def __init__(
        self,
        ring: Ring,
        pool: asyncpg.Pool,
        ticker_of: Callable[[int], str],
        *,
        interval_s: float = 0.1,
        max_pending: int = 1 << 20,
    ) -> None:
        self.ring = ring
        self.pool = pool
        self.ticker_of = ticker_of
        self.interval_s = interval_s
        self.max_pending = max_pending
        self._pending: list[np.ndarray] = []
        self._ids: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self.rows_written = 0
        self.dropped = 0
        self.failures = 0
        self.db_up = True

    def start(self) -> asyncio.Task[None]:
        """Start the flush task."""
        self._task = asyncio.create_task(self._run(), name="action-sink")
        return self._task

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            if not self._stopping:
                await self.flush()

    async def close(self) -> None:
        """Stop the task and write what is left (one last attempt).

        The task is woken, not cancelled: a flush in progress finishes.  Cancelling it
        inside its COPY, after PostgreSQL had taken the rows, left the batch pending, and
        the last flush wrote it again (refused by the primary key: the batch was lost).
        """
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def flush(self) -> int:
        """Drain the ring and write every pending batch; returns rows written."""
        recs = self.ring.drain()
        if recs.shape[0]:
            self._pending.append(recs)
        if not self._pending:
            return 0
        batch = np.concatenate(self._pending)
        if batch.shape[0] > self.max_pending:
            self.dropped += batch.shape[0] - self.max_pending
            batch = batch[-self.max_pending :]
        self._pending = [batch]
        try:
            async with asyncio.timeout(10):
                async with self.pool.acquire() as conn:
                    rows = await self._rows(conn, batch)
                    await conn.copy_records_to_table(
                        "trading_actions", records=rows, columns=ACTION_COLUMNS
                    )
        except DB_ERRORS as exc:
            self.failures += 1
            if self.db_up:
                log.warning("action sink: %d records wait for PostgreSQL (%s)", len(batch), exc)
            self.db_up = False
            return 0
        self._pending = []
        self.db_up = True
        self.rows_written += batch.shape[0]
        return int(batch.shape[0])

    async def _rows(self, conn: Any, recs: np.ndarray) -> list[tuple[Any, ...]]:
        slots = {int(s) for s in np.unique(recs["market"])}
        missing = {s: self.ticker_of(s) for s in slots if s not in self._ids}
        if missing:
            ids = await ensure_markets(conn, list(missing.values()))
            for s, t in missing.items():
                self._ids[s] = ids[t]
        cols = {n: recs[n].tolist() for n in recs.dtype.names or () if n != "probs"}
        probs = recs["probs"]
        n_probs = recs["n_probs"].tolist()
        return [
            (
                cols["episode_id"][k], cols["step"][k], self._ids[cols["market"][k]],
                cols["ts"][k], cols["exch_ts"][k], cols["latency_ns"][k], cols["obs_hash"][k],
                cols["model_version"][k], cols["action"][k], cols["slip_idx"][k],
                cols["size_idx"][k], cols["status"][k], cols["side"][k],
                cols["order_action"][k], cols["price"][k], cols["count"][k],
                cols["filled"][k], cols["fee"][k], cols["reject"][k], cols["risk"][k],
                cols["position"][k], cols["cash"][k], cols["value"][k],
                probs[k, : n_probs[k]].tolist(),
            )
            for k in range(recs.shape[0])
        ]  # fmt: skip

    def stats(self) -> dict[str, Any]:
        """Rows written, pending, dropped, failures, DB state."""
        return {
            "sink": "trading_actions",
            "rows_written": self.rows_written,
            "pending": int(sum(b.shape[0] for b in self._pending)) + len(self.ring),
            "dropped": self.dropped,
            "failures": self.failures,
            "db_up": self.db_up,
        }


class EpisodeStore:
    """``trading_episodes`` rows over the node's pool.

    Args:
        pool: asyncpg pool.
        session_id: the live node's feed_sessions.id (recorded with each episode).
        account_id: the paper account traded (None: unknown).
        config: JSON-able actor settings stored with each episode.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        session_id: int | None = None,
        account_id: int | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.pool = pool
        self.session_id = session_id
        self.account_id = account_id
        self.config = dict(config or {})

    async def open_episode(
        self, model: Any, markets: Sequence[str], start_cash: int, shadow: bool
    ) -> int:
        """Insert a running episode; returns its id."""
        return int(
            await self.pool.fetchval(
                "INSERT INTO trading_episodes (model_id, markets, start_cash, model_name,"
                " model_version, session_id, account_id, shadow, config)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb) RETURNING id",
                model.model_id,
                list(markets),
                start_cash * len(markets),
                model.name,
                model.version,
                self.session_id,
                None if shadow else self.account_id,
                shadow,
                orjson.dumps(self.config).decode(),
            )
        )

    async def close_episode(self, episode_id: int, summary: Mapping[str, Any]) -> None:
        """Set ended_at, end value, fees, action count, status (logged if the DB is down)."""
        try:
            await self.pool.execute(
                "UPDATE trading_episodes SET ended_at = now(), end_value = $2, fees_paid = $3,"
                " n_actions = $4, status = $5, summary = $6::text::jsonb WHERE id = $1",
                episode_id,
                int(summary["end_value"]),
                int(summary["fees_paid"]),
                int(summary["n_actions"]),
                str(summary["status"]),
                orjson.dumps(dict(summary)).decode(),
            )
        except DB_ERRORS as exc:
            log.error("could not close episode %d: %s", episode_id, exc)
