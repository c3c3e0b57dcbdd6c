"""Evaluation report: policies (trained agent and baselines) on held-out segments.

Each policy trades every eligible segment of the dataset exactly once, in order, with the
env's fills and fees (``KalshiVecEnv`` in SEQUENTIAL order, no reward shaping), so
rewards are the account's value changes in dollars.  Per policy:

* ``total_pnl``    -- sum of episode P&L, dollars, net of fees (settled or marked at the end)
* where it came from (from the env's episode records; exactly
  ``total_pnl == settlement + trading + mark - fees``):
  ``settlement``   -- payouts minus cost of the contracts held to a known result;
  ``trading``      -- realized P&L of closing trades, before fees;
  ``mark``         -- end-of-episode value of a position still open (what it could be sold
  for) minus its cost: the only part that is not cash;
  ``fees``         -- fees paid, dollars
* ``settled_episodes`` -- episodes whose market's result was known and paid out
* ``sharpe``       -- mean / std of per-episode P&L (not annualised; 0 if std is 0)
* ``max_drawdown`` -- largest peak-to-trough fall of the step-by-step equity curve, dollars
* ``win_rate``     -- share of episodes with P&L > 0
* ``trades``       -- executed orders; ``invalid`` -- masked actions chosen (ran as hold)

The oracle (``baselines.OraclePolicy``) knows each settled market's result: its P&L is
what perfect foresight makes under the same fills, fees and limits, i.e. how much there is
to learn.  Written as ``<out>/<name>.json`` and ``<out>/<name>.png`` (matplotlib Agg).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from core.dataset import Dataset
from core.dtypes import MONEY_SCALE
from kalshi_rl.env.config import EnvConfig, SegmentOrder
from kalshi_rl.env.vec import KalshiVecEnv
from kalshi_rl.train.baselines import Policy


@dataclass(frozen=True)
class PolicyReport:
    """Metrics of one policy over the evaluation segments (dollars where money)."""

    name: str
    total_pnl: float
    settlement: float
    trading: float
    mark: float
    fees: float
    sharpe: float
    max_drawdown: float
    win_rate: float
    trades: int
    invalid: int
    episodes: int
    settled_episodes: int
    steps: int
    pnl_units: int  # total P&L in money units (the split below adds up to it exactly)
    settlement_units: int
    trading_units: int
    mark_units: int
    fees_units: int


def settled_only(dataset: Dataset) -> Dataset:
    """The segments of ``dataset`` whose market's result is known (paid at their end)."""
    return dataset.subset(np.flatnonzero(dataset.seg_result >= 0))


def markdown_table(result: dict[str, Any]) -> str:
    """The report as a Markdown table (dollars), one row per policy."""
    head = (
        "| policy | total P&L | settlement | trading | end mark | fees | trades | win rate |"
        " Sharpe |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = [head]
    for name, r in result["policies"].items():
        rows.append(
            f"| {name} | {r['total_pnl']:+.2f} | {r['settlement']:+.2f} | {r['trading']:+.2f}"
            f" | {r['mark']:+.2f} | {r['fees']:.2f} | {r['trades']} | {r['win_rate']:.2f}"
            f" | {r['sharpe']:.2f} |"
        )
    return "\n".join(rows)


def eval_config(config: EnvConfig) -> EnvConfig:
    """``config`` made fit for evaluation: every segment once from its start, unshaped."""
    return config.replace(
        segment_order=SegmentOrder.SEQUENTIAL,
        random_start=False,
        max_episode_steps=0,
        reward_scale=1.0,
        inventory_penalty=0.0,
        trade_penalty=0.0,
    )


def max_drawdown(equity: np.ndarray) -> float:
    """Largest peak-to-trough fall of an equity curve (>= 0; curve starts at 0)."""
    if equity.size == 0:
        return 0.0
    curve = np.concatenate(([0.0], equity))
    return float(np.max(np.maximum.accumulate(curve) - curve))


def run_policy(
    dataset: Dataset, policy: Policy, config: EnvConfig, n_envs: int = 16, seed: int = 0
) -> tuple[PolicyReport, np.ndarray]:
    """Trade every eligible segment of ``dataset`` once with ``policy``.

    Returns:
        (report, equity curve in dollars over the concatenated steps, in segment order).
    """
    cfg = eval_config(config)
    venv = KalshiVecEnv(dataset, n_envs=1, config=cfg, seed=seed)
    n_eligible = venv.batch.eligible.size
    n = max(1, min(n_envs, n_eligible))
    if n != 1:
        venv = KalshiVecEnv(dataset, n_envs=n, config=cfg, seed=seed)
    bind = getattr(policy, "bind", None)
    if bind is not None:  # the oracle reads the envs' segments and their results
        bind(venv.batch, dataset)
    obs: np.ndarray = np.asarray(venv.reset())
    running: list[list[float]] = [[] for _ in range(n)]
    curves: dict[int, np.ndarray] = {}
    eps: dict[int, np.void] = {}
    while len(eps) < n_eligible:
        actions = policy.act(obs, venv.batch.masks)
        step_obs, rewards, dones, _ = venv.step(actions)
        obs = np.asarray(step_obs)
        for i in range(n):
            running[i].append(float(rewards[i]))
        for i in np.flatnonzero(dones).tolist():
            ep = venv.batch.episodes[i].copy()
            seg = int(ep["seg"])
            if seg not in eps:  # a wrapped cursor replays segments: keep the first run
                eps[seg] = ep
                curves[seg] = np.asarray(running[i])
            running[i] = []
    order = sorted(eps)
    pnl = np.array([eps[s]["pnl"] for s in order], dtype=np.float64) / MONEY_SCALE
    equity = np.cumsum(np.concatenate([curves[s] for s in order]))
    std = float(pnl.std(ddof=1)) if pnl.size > 1 else 0.0

    def units(field: str) -> int:
        return int(sum(int(eps[s][field]) for s in order))

    report = PolicyReport(
        name=policy.name,
        total_pnl=units("pnl") / MONEY_SCALE,
        settlement=units("settlement") / MONEY_SCALE,
        trading=units("trading") / MONEY_SCALE,
        mark=units("mark") / MONEY_SCALE,
        fees=units("fees") / MONEY_SCALE,
        sharpe=float(pnl.mean() / std) if std > 0 else 0.0,
        max_drawdown=max_drawdown(equity),
        win_rate=float((pnl > 0).mean()) if pnl.size else 0.0,
        trades=int(sum(int(eps[s]["trades"]) for s in order)),
        invalid=int(sum(int(eps[s]["n_invalid"]) for s in order)),
        episodes=len(order),
        settled_episodes=int(sum(int(eps[s]["settled"]) for s in order)),
        steps=int(equity.size),
        pnl_units=units("pnl"),
        settlement_units=units("settlement"),
        trading_units=units("trading"),
        mark_units=units("mark"),
        fees_units=units("fees"),
    )
    return report, equity


def evaluate(
    dataset: Dataset,
    policies: Sequence[Policy],
    config: EnvConfig,
    *,
    out_dir: Path | None = None,
    name: str = "evaluation",
    n_envs: int = 16,
    seed: int = 0,
) -> dict[str, Any]:
    """Run every policy on ``dataset``; optionally write ``<name>.json`` and ``<name>.png``.

    Returns:
        ``{"name", "segments", "policies": {policy: PolicyReport as dict}}``.
    """
    reports: dict[str, dict[str, Any]] = {}
    curves: dict[str, np.ndarray] = {}
    for pol in policies:
        rep, eq = run_policy(dataset, pol, config, n_envs=n_envs, seed=seed)
        reports[pol.name] = dataclasses.asdict(rep)
        curves[pol.name] = eq
    result: dict[str, Any] = {"name": name, "segments": dataset.n_segments, "policies": reports}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{name}.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        plot_report(result, curves, out_dir / f"{name}.png")
    return result


def plot_report(result: dict[str, Any], curves: dict[str, np.ndarray], path: Path) -> None:
    """Equity curves and a P&L/fees bar chart per policy, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for pname, eq in curves.items():
        ax1.plot(eq, label=pname, linewidth=1.2)
    ax1.set_title(f"Equity on held-out segments ({result['segments']} segments)")
    ax1.set_xlabel("evaluation step (segments concatenated)")
    ax1.set_ylabel("cumulative P&L ($, net of fees)")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    names = list(result["policies"])
    x = np.arange(len(names))
    width = 0.16
    parts = (
        ("total_pnl", "total P&L"),
        ("settlement", "settlement"),
        ("trading", "realized trading"),
        ("mark", "end mark"),
        ("fees", "fees (paid)"),
    )
    for k, (key, label) in enumerate(parts):
        vals = [result["policies"][n].get(key, 0.0) for n in names]
        if key == "fees":
            vals = [-v for v in vals]
        ax2.bar(x + (k - 2) * width, vals, width, label=label)
    ax2.set_xticks(x, names, rotation=20, fontsize=8)
    ax2.axhline(0, color="black", linewidth=0.8)
    ax2.set_title("Where the P&L came from ($)")
    ax2.legend(fontsize=8)
    fig.suptitle(result["name"])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
