"""Evaluation report: every held-out segment once, metrics against hand-made curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from core.dataset import Dataset
from core.dtypes import ACT_BUY_YES, ACT_HOLD
from kalshi_rl.env.config import EnvConfig
from kalshi_rl.env.synthetic import random_walk_dataset
from kalshi_rl.train.baselines import HoldPolicy, baseline_policies, masked
from kalshi_rl.train.evaluate import evaluate, max_drawdown, run_policy


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return random_walk_dataset(7, 90, seed=4)


class BuyOncePolicy:
    """Buys one YES at the first step of every episode, then holds."""

    name = "buy_once"

    def act(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        flat = np.abs(obs[:, -7]) < 1e-12  # account feature "position" == 0
        return masked(np.where(flat, ACT_BUY_YES, ACT_HOLD), masks)


def test_max_drawdown() -> None:
    assert max_drawdown(np.array([1.0, 3.0, 2.0, -1.0, 0.5])) == pytest.approx(4.0)
    assert max_drawdown(np.array([-2.0, -1.0])) == pytest.approx(2.0)
    assert max_drawdown(np.array([])) == 0.0


def test_hold_has_zero_everything(ds: Dataset) -> None:
    rep, eq = run_policy(ds, HoldPolicy(), EnvConfig(), n_envs=3)
    assert rep.episodes == ds.n_segments
    assert rep.steps == int((ds.seg_end - ds.seg_start - 1).sum())
    assert rep.total_pnl == 0 and rep.trades == 0 and rep.max_drawdown == 0
    assert not eq.any()


def test_each_segment_traded_once_whatever_n_envs(ds: Dataset) -> None:
    a, ea = run_policy(ds, BuyOncePolicy(), EnvConfig(), n_envs=1)
    b, eb = run_policy(ds, BuyOncePolicy(), EnvConfig(), n_envs=4)
    assert a == b
    np.testing.assert_allclose(ea, eb)
    assert a.trades == ds.n_segments
    assert a.total_pnl == pytest.approx(float(ea[-1]), abs=1e-3)


def test_report_json_and_png(ds: Dataset, tmp_path: Path) -> None:
    res = evaluate(ds, baseline_policies(0), EnvConfig(), out_dir=tmp_path, name="r")
    saved = orjson.loads((tmp_path / "r.json").read_bytes())
    assert saved == res
    assert set(res["policies"]) == {"hold", "random", "cheaper_side", "mean_reversion"}
    for m in res["policies"].values():
        assert {"total_pnl", "fees", "sharpe", "max_drawdown", "win_rate", "trades"} <= set(m)
    assert res["policies"]["random"]["trades"] > 0
    assert res["policies"]["random"]["fees"] > 0
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluation_ignores_training_shaping(ds: Dataset) -> None:
    shaped = EnvConfig(inventory_penalty=0.5, trade_penalty=1.0, reward_scale=10.0)
    a, _ = run_policy(ds, BuyOncePolicy(), shaped)
    b, _ = run_policy(ds, BuyOncePolicy(), EnvConfig())
    assert a == b
