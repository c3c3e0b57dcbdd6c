"""Performance numbers of paper trading, from account-value series (integers in, out).

Definitions (docs/web.md): P&L = last account value - start cash; drawdown = the largest
fall of account value from a running peak; Sharpe = mean / std of the per-step value
changes times sqrt(steps) (a per-episode Sharpe, not annualised: episodes are hours);
win rate = the share of closed episodes whose P&L is > 0, or for a single episode the
share of its value-changing steps that gained.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kalshi_rl.web.schemas import PerformanceMetrics


def max_drawdown(values: np.ndarray) -> int:
    """Largest peak-to-trough fall of ``values`` (int64 money), 0 for < 2 points."""
    if values.size < 2:
        return 0
    peak = np.maximum.accumulate(values)
    return int((peak - values).max())


def sharpe(values: np.ndarray) -> float | None:
    """mean/std of the steps' value changes * sqrt(n); None when undefined."""
    if values.size < 3:
        return None
    d = np.diff(values.astype(np.float64))
    sd = float(d.std())
    if sd == 0.0:
        return None
    return float(d.mean() / sd * np.sqrt(d.size))


def step_win_rate(values: np.ndarray) -> float | None:
    """Share of value-changing steps that gained; None if no step changed the value."""
    if values.size < 2:
        return None
    d = np.diff(values)
    moved = int(np.count_nonzero(d))
    return None if moved == 0 else float(np.count_nonzero(d > 0) / moved)


def episode_metrics(
    ts_ms: Sequence[int], values: Sequence[int], start_cash: int, fees: int, max_points: int = 500
) -> PerformanceMetrics:
    """Metrics of one episode from its (ts, account value) series.

    Args:
        ts_ms: decision times (ms), ascending.
        values: account value at each (money units).
        start_cash: the episode's starting cash (money units).
        fees: fees paid (money units).
        max_points: the equity curve is thinned to at most this many points.
    """
    v = np.asarray(values, dtype=np.int64)
    t = np.asarray(ts_ms, dtype=np.int64)
    pnl = int(v[-1] - start_cash) if v.size else 0
    return PerformanceMetrics(
        episodes=1,
        steps=int(v.size),
        pnl=pnl,
        fees=int(fees),
        win_rate=step_win_rate(v),
        sharpe=sharpe(v),
        max_drawdown=max_drawdown(v),
        equity=_thin(t, v - start_cash, max_points),
    )


def combine(parts: Sequence[PerformanceMetrics], max_points: int = 500) -> PerformanceMetrics:
    """Metrics over several episodes: equity curves chained end to end (P&L adds up)."""
    if not parts:
        return PerformanceMetrics(
            episodes=0, steps=0, pnl=0, fees=0, win_rate=None, sharpe=None, max_drawdown=0,
            equity=[],
        )  # fmt: skip
    ts: list[int] = []
    eq: list[int] = []
    offset = 0
    for p in parts:
        for t, e in p.equity:
            ts.append(t)
            eq.append(e + offset)
        offset += p.pnl
    v = np.asarray(eq, dtype=np.int64)
    wins = sum(1 for p in parts if p.pnl > 0)
    return PerformanceMetrics(
        episodes=len(parts),
        steps=sum(p.steps for p in parts),
        pnl=sum(p.pnl for p in parts),
        fees=sum(p.fees for p in parts),
        win_rate=wins / len(parts) if len(parts) > 1 else parts[0].win_rate,
        sharpe=sharpe(v),
        max_drawdown=max_drawdown(v),
        equity=_thin(np.asarray(ts, dtype=np.int64), v, max_points),
    )


def _thin(t: np.ndarray, v: np.ndarray, max_points: int) -> list[tuple[int, int]]:
    if t.size > max_points:
        idx = np.unique(np.linspace(0, t.size - 1, max_points).astype(np.int64))
        t, v = t[idx], v[idx]
    return [(int(a), int(b)) for a, b in zip(t.tolist(), v.tolist(), strict=True)]
