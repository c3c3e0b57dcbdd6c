"""SB3 callbacks of a training run, one job each, and the run's PostgreSQL recorder.

* ``ProgressCallback``  -- every ``every`` env-steps: throughput, episode stats, losses ->
  a ``ProgressSink`` (CleanRL-style metric names: ``charts/...``, ``losses/...``).
* ``EvalCallback``      -- every ``every`` env-steps and at the end: the agent on the
  validation segments (``train.evaluate``) -> ``eval/...`` metrics to the sink; with
  ``keep_best`` it remembers the policy of the best validation P&L (checkpoint selection).
* ``RunRecorder``       -- the sink writing ``training_runs`` / ``training_progress`` rows
  and ``NOTIFY kalshi_rl_training, '<json>'`` for the dashboard.

The trainer is a synchronous process (SB3 owns the loop), so the recorder runs its own
asyncio event loop and one connection for the run's life; it never runs inside the env step.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

import asyncpg
import numpy as np
import orjson
from stable_baselines3.common.callbacks import BaseCallback

from core.dataset import Dataset
from kalshi_rl.env.config import EnvConfig
from kalshi_rl.errors import StoreError
from kalshi_rl.store import db

NOTIFY_CHANNEL = "kalshi_rl_training"


class ProgressSink(Protocol):
    """Where progress metrics go (the DB recorder, or a list in tests)."""

    def write(self, timesteps: int, metrics: Mapping[str, float]) -> None:
        """Record the metrics reached at ``timesteps`` env-steps."""
        ...


class ListSink:
    """Keeps progress rows in memory (``rows``: list of (timesteps, metrics))."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, float]]] = []

    def write(self, timesteps: int, metrics: Mapping[str, float]) -> None:
        self.rows.append((timesteps, dict(metrics)))


class ProgressCallback(BaseCallback):
    """Report throughput, episode returns/P&L and the latest losses every ``every`` steps.

    Args:
        sink: receives ``(timesteps, metrics)``.
        every: env-steps between reports (checked at rollout ends).
    """

    def __init__(self, sink: ProgressSink, every: int = 10_000) -> None:
        super().__init__()
        self.sink = sink
        self.every = every
        self._last = 0
        self._t0 = 0.0
        self._steps0 = 0
        self._pnl: deque[float] = deque(maxlen=100)
        self._trades: deque[int] = deque(maxlen=100)

    def _on_training_start(self) -> None:
        self._t0 = time.perf_counter()
        self._steps0 = self._last = self.num_timesteps

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            if "pnl" in info:
                self._pnl.append(float(info["pnl"]))
                self._trades.append(int(info["trades"]))
        return True

    def _on_rollout_end(self) -> None:
        if self.num_timesteps - self._last >= self.every:
            self.report()

    def _on_training_end(self) -> None:
        if self.num_timesteps > self._last:
            self.report()

    def metrics(self) -> dict[str, float]:
        """The current metrics (see the module docstring for the prefixes)."""
        dt = max(time.perf_counter() - self._t0, 1e-9)
        out: dict[str, float] = {"charts/sps": (self.num_timesteps - self._steps0) / dt}
        buf = self.model.ep_info_buffer
        if buf:
            out["charts/episodic_return"] = float(np.mean([e["r"] for e in buf]))
            out["charts/episodic_length"] = float(np.mean([e["l"] for e in buf]))
        if self._pnl:
            out["charts/episode_pnl"] = float(np.mean(self._pnl))
            out["charts/episode_trades"] = float(np.mean(self._trades))
        for key, value in self.model.logger.name_to_value.items():
            if key.startswith("train/"):
                out["losses/" + key.removeprefix("train/")] = float(value)
        return out

    def report(self) -> None:
        """Send the metrics now."""
        self._last = self.num_timesteps
        self.sink.write(self.num_timesteps, self.metrics())


class EvalCallback(BaseCallback):
    """Evaluate the agent on held-out (validation) segments every ``every`` env-steps and
    once more when training ends.

    Args:
        dataset: held-out segments.
        config: env config (made unshaped/sequential by ``eval_config``).
        sink: receives ``eval/<metric>`` values.
        every: env-steps between evaluations (0: only the one at the end).
        keep_best: remember the policy weights of the evaluation with the highest total
            P&L (the first of equals); ``restore_best`` loads them back into the model.
    """

    def __init__(
        self,
        dataset: Dataset,
        config: EnvConfig,
        sink: ProgressSink,
        every: int,
        keep_best: bool = False,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.config = config
        self.sink = sink
        self.every = every
        self.keep_best = keep_best
        self._last = 0
        self.history: list[tuple[int, dict[str, float]]] = []
        self.best: tuple[int, float] | None = None  # (timesteps, total P&L) of the best
        self._best_state: dict[str, Any] | None = None

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.every > 0 and self.num_timesteps - self._last >= self.every:
            self._last = self.num_timesteps
            self.evaluate_now()

    def _on_training_end(self) -> None:
        if not self.history or self.history[-1][0] != self.num_timesteps:
            self.evaluate_now()  # the final policy is a candidate too

    def restore_best(self) -> tuple[int, float] | None:
        """Load the best evaluation's weights into the model (``keep_best`` only).

        Returns:
            (timesteps, total P&L) of the policy now in the model, or None if nothing was
            evaluated.
        """
        if self._best_state is not None:
            self.model.policy.load_state_dict(self._best_state)
        return self.best

    def evaluate_now(self) -> dict[str, float]:
        """Run the evaluation and send it to the sink. Returns the metrics."""
        from kalshi_rl.train.baselines import ModelPolicy
        from kalshi_rl.train.evaluate import run_policy

        rep, _ = run_policy(self.dataset, ModelPolicy(self.model), self.config)
        m = {
            "eval/total_pnl": rep.total_pnl,
            "eval/fees": rep.fees,
            "eval/sharpe": rep.sharpe,
            "eval/max_drawdown": rep.max_drawdown,
            "eval/win_rate": rep.win_rate,
            "eval/trades": float(rep.trades),
        }
        self.history.append((self.num_timesteps, m))
        if self.keep_best and (self.best is None or rep.total_pnl > self.best[1]):
            self.best = (self.num_timesteps, rep.total_pnl)
            # a copy: the optimiser updates the live tensors in place
            self._best_state = copy.deepcopy(self.model.policy.state_dict())
        self.sink.write(self.num_timesteps, m)
        return m


class RunRecorder:
    """One training run in PostgreSQL: its ``training_runs`` row, progress rows, NOTIFYs.

    Use ``RunRecorder.open(dsn)`` then ``start(...)``; ``write`` is the ProgressSink;
    ``finish`` closes the run; ``close`` the connection.  Each ``write`` upserts the row
    for (run, timesteps) (metrics merged) so progress and eval at one step share a row.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, conn: asyncpg.Connection) -> None:
        self.loop = loop
        self.conn = conn
        self.run_id: int | None = None
        self.model_id: int | None = None

    @classmethod
    def open(cls, dsn: str) -> RunRecorder:
        """Connect (own event loop) to ``dsn``."""
        loop = asyncio.new_event_loop()
        try:
            conn = loop.run_until_complete(db.connect(dsn))
        except (OSError, asyncpg.PostgresError) as exc:
            loop.close()
            raise StoreError(f"cannot connect to PostgreSQL for the training run: {exc}") from exc
        return cls(loop, conn)

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the recorder's loop (for registry calls on ``conn``)."""
        return self.loop.run_until_complete(coro)

    def start(
        self,
        *,
        algorithm: str,
        config: Mapping[str, Any],
        config_hash: str,
        dataset_path: str,
        total_timesteps: int,
        model_id: int | None,
    ) -> int:
        """Insert the ``training_runs`` row (status running). Returns its id."""
        self.model_id = model_id
        self.run_id = int(
            self.run(
                self.conn.fetchval(
                    "INSERT INTO training_runs (model_id, algorithm, config, config_hash,"
                    " dataset_path, total_timesteps) VALUES ($1, $2, $3, $4, $5, $6)"
                    " RETURNING id",
                    model_id,
                    algorithm,
                    dict(config),
                    config_hash,
                    dataset_path,
                    total_timesteps,
                )
            )
        )
        self._notify({"event": "started", "timesteps": 0})
        return self.run_id

    def write(self, timesteps: int, metrics: Mapping[str, float]) -> None:
        clean = {k: float(v) for k, v in metrics.items() if np.isfinite(v)}
        self.run(
            self.conn.execute(
                "INSERT INTO training_progress (run_id, timesteps, metrics) VALUES ($1, $2, $3)"
                " ON CONFLICT (run_id, timesteps) DO UPDATE"
                " SET metrics = training_progress.metrics || EXCLUDED.metrics, ts = now()",
                self.run_id,
                timesteps,
                clean,
            )
        )
        self._notify({"event": "progress", "timesteps": timesteps, "metrics": clean})

    def finish(self, status: str, error: str | None = None) -> None:
        """Close the run row: status finished | failed | stopped."""
        self.run(
            self.conn.execute(
                "UPDATE training_runs SET status = $2, ended_at = now(), error = $3 WHERE id = $1",
                self.run_id,
                status,
                error,
            )
        )
        self._notify({"event": status, "error": error})

    def _notify(self, body: dict[str, Any]) -> None:
        payload = orjson.dumps({"run_id": self.run_id, "model_id": self.model_id, **body})
        # NOTIFY payloads are capped at 8000 bytes; progress rows are far below it
        self.run(self.conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, payload.decode()))

    def close(self) -> None:
        """Close the connection and the loop."""
        try:
            self.run(self.conn.close())
        finally:
            self.loop.close()
