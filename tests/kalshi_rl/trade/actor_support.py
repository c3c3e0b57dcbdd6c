"""Helpers of the actor tests: tiny SB3 models with set weights, registered; a running trader.

Imported by the actor tests through ``sys.path`` (the tests are not a package).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from stable_baselines3 import PPO

from core.dtypes import ACT_BUY_NO, ACT_BUY_YES, ACT_HOLD, ACT_SELL_NO, ACT_SELL_YES
from core.features import N_MARKET_FEATURES
from kalshi_rl import registry
from kalshi_rl.config import CollectorConfig, FeedConfig
from kalshi_rl.env.config import ActionMode, EnvConfig
from kalshi_rl.env.synthetic import random_walk_dataset
from kalshi_rl.env.vec import KalshiVecEnv
from kalshi_rl.live.node import LiveNode
from kalshi_rl.sim.server import SimExchange
from kalshi_rl.store import db
from kalshi_rl.train.run import env_identity

POS = N_MARKET_FEATURES  # index of the account feature "position"


def flip_flop_model(
    cfg: EnvConfig,
    buy: int = ACT_BUY_YES,
    sell: int = ACT_SELL_YES,
    hidden: tuple[int, ...] = (),
) -> Any:
    """A PPO whose deterministic action is ``buy`` when flat and ``sell`` when holding.

    The action head reads the position feature straight from the observation (no hidden
    layer): flat -> buy wins by 0.5; holding one contract (feature 0.139) -> sell wins.

    ``hidden`` (e.g. ``(64, 64)``, SB3's default ``MlpPolicy``): tanh layers of that width
    with SB3's own random initialisation, except that unit 0 of each carries the position
    feature on (``tanh(tanh(pos))`` keeps its sign); the head reads unit 0 with weights
    scaled to the carried value.  Every layer is computed in full, so the forward pass
    costs what a default-sized policy costs; the decision rule is the same.
    """
    venv = KalshiVecEnv(random_walk_dataset(2, 50, seed=1), n_envs=1, config=cfg, seed=1)
    model = PPO(
        "MlpPolicy", venv, n_steps=16, batch_size=16,
        policy_kwargs={"net_arch": list(hidden)}, device="cpu",
        **({"seed": 1} if hidden else {}),  # the hidden layers' init: the same every run
    )  # fmt: skip
    net = model.policy.action_net
    assert isinstance(net, torch.nn.Linear)
    pos_in, carried = POS, torch.tensor(0.139)
    with torch.no_grad():
        for layer in model.policy.mlp_extractor.policy_net:
            if isinstance(layer, torch.nn.Linear):
                layer.weight[0].zero_()
                layer.weight[0, pos_in] = 1.0
                layer.bias[0] = 0.0
                for w in layer.weight[1:]:
                    w[pos_in] = 0.0  # the other units do not see the position
                pos_in, carried = 0, torch.tanh(carried)
        scale = float(0.139 / carried)  # the head sees what the flat net would
        net.weight.zero_()
        net.bias.fill_(-5.0)
        net.bias[ACT_HOLD] = 0.0
        sign = 1.0 if buy in (ACT_BUY_YES, ACT_SELL_NO) else -1.0  # buying YES: pos > 0
        net.bias[buy] = 0.5
        net.weight[buy, pos_in] = -10.0 * sign * scale
        net.bias[sell] = 0.0
        net.weight[sell, pos_in] = 10.0 * sign * scale
    return model


def imbalance_model(cfg: EnvConfig) -> Any:
    """A PPO that reads only the book: buy YES on bid imbalance > 0.1, buy NO below -0.1.

    Its actions depend on market features alone, so live and env actions must agree
    wherever the observations' market part does, whatever the fills did.
    """
    from core.features import MARKET_FEATURE_NAMES

    imb = MARKET_FEATURE_NAMES.index("imbalance_l1")
    venv = KalshiVecEnv(random_walk_dataset(2, 50, seed=1), n_envs=1, config=cfg, seed=1)
    model = PPO(
        "MlpPolicy", venv, n_steps=16, batch_size=16, policy_kwargs={"net_arch": []}, device="cpu"
    )
    net = model.policy.action_net
    assert isinstance(net, torch.nn.Linear)
    with torch.no_grad():
        net.weight.zero_()
        net.bias.fill_(-5.0)
        net.bias[ACT_HOLD] = 1.0
        net.weight[ACT_BUY_YES, imb] = 10.0
        net.weight[ACT_BUY_NO, imb] = -10.0
    return model


def multi_model() -> tuple[Any, EnvConfig]:
    """A model with a MultiDiscrete action space (incompatible with a Discrete actor)."""
    cfg = EnvConfig(action_mode=ActionMode.MULTI)
    venv = KalshiVecEnv(random_walk_dataset(2, 50, seed=1), n_envs=1, config=cfg, seed=1)
    return (
        PPO(
            "MlpPolicy",
            venv,
            n_steps=16,
            batch_size=16,
            policy_kwargs={"net_arch": [8]},
            device="cpu",
        ),
        cfg,
    )


async def register(
    dsn: str,
    tmp: Path,
    name: str,
    model: Any,
    cfg: EnvConfig,
    *,
    deploy: bool = True,
    identity: dict[str, Any] | None = None,
) -> registry.ModelVersion:
    """Save ``model`` as the next version of ``name`` (ready, optionally deployed)."""
    conn = await db.connect(dsn)
    try:
        ident = identity or env_identity(cfg)
        mv = await registry.register(conn, name, "PPO", env_config=ident)
        path = tmp / f"{name}-v{mv.version}.zip"
        model.save(path)
        mv = await registry.update(conn, mv.id, checkpoint_path=path)
        mv = await registry.promote(conn, mv.id)
        if deploy:
            mv = await registry.deploy(conn, mv.id)
        return mv
    finally:
        await conn.close()


async def until(pred: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Wait for a condition; fail naming it on timeout."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.005)


def node_config(sim: SimExchange, dsn: str, tmp: Path) -> CollectorConfig:
    return CollectorConfig(
        rest_url=sim.rest_url,
        tickers=tuple(sim.tickers),
        database_url=dsn,
        mode="sim",
        ring_capacity=1 << 12,
        progress_interval_s=0.0,
        spill_dir=str(tmp / "spill"),
    )


def node(sim: SimExchange, dsn: str, tmp: Path) -> LiveNode:
    return LiveNode(node_config(sim, dsn, tmp), FeedConfig(ws_url=sim.ws_url))


async def drive(sim: SimExchange, n: int, steps: int = 20, pause: float = 0.01) -> None:
    """Advance the sim ``n`` times by ``steps`` model steps, letting the loop run between."""
    for _ in range(n):
        sim.advance(steps)
        await asyncio.sleep(pause)


@dataclass
class Recomputed:
    """An account rebuilt from paper_fills rows with plain Python (not the core kernels)."""

    position: dict[str, int]
    cash: int
    fees: int
    n_fills: int


async def recompute_from_fills(dsn: str, account_id: int, start_cash: int) -> Recomputed:
    """Kalshi netting by hand: YES and NO held separately, a YES+NO pair pays $1."""
    conn = await db.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT f.side, f.action, f.price, f.count, f.fee, m.ticker FROM paper_fills f"
            " JOIN markets m ON m.id = f.market_id WHERE f.account_id = $1 ORDER BY f.rec_id",
            account_id,
        )
    finally:
        await conn.close()
    yes: dict[str, int] = {}
    no: dict[str, int] = {}
    cash, fees = start_cash, 0
    for r in rows:
        t, c, p = r["ticker"], int(r["count"]), int(r["price"])
        side_yes, buy = r["side"] == 0, r["action"] == 0
        # selling one side at p is buying the other at 1000 - p; a bought contract that
        # meets a held one of the other side makes a pair, redeemed for $1
        bought_yes = side_yes == buy
        bought_notional = c * p if buy else c * (1000 - p)  # count units x ticks
        own, other = (yes, no) if bought_yes else (no, yes)
        pairs = min(c, other.get(t, 0))
        other[t] = other.get(t, 0) - pairs
        own[t] = own.get(t, 0) + c - pairs
        cash += (pairs * 1000 - bought_notional) // 10  # 10 notional units per money unit
        cash -= int(r["fee"])
        fees += int(r["fee"])
    pos = {t: yes.get(t, 0) - no.get(t, 0) for t in set(yes) | set(no)}
    return Recomputed(pos, cash, fees, len(rows))
