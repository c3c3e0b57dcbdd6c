"""The evaluation on a biased sim: the P&L split adds up, the oracle bounds every policy,
the bias-aware rule earns what the planted bias offers, an efficient market offers none."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from core.dataset import Dataset
from core.dtypes import ACT_BUY_NO, ACT_BUY_YES, ACT_HOLD
from kalshi_rl.env.config import EnvConfig
from kalshi_rl.train.baselines import (
    BiasAwarePolicy,
    OraclePolicy,
    RandomPolicy,
    baseline_policies,
    fair_from_quote,
    masked,
    reference_policies,
)
from kalshi_rl.train.evaluate import evaluate, markdown_table, settled_only


@pytest.fixture(scope="module")
def biased(make_sim_dataset: Any) -> Dataset:
    return make_sim_dataset(2.0, markets=48, seed=3)


@pytest.fixture(scope="module")
def report(biased: Dataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("eval")
    policies = [*baseline_policies(0), *reference_policies(2.0), FlipFlop()]
    return evaluate(biased, policies, EnvConfig(), out_dir=out, name="split")


class FlipFlop:
    """Buys YES, then NO (closing it), alternately: every kind of P&L component moves."""

    name = "flip_flop"

    def __init__(self) -> None:
        self.k = 0

    def act(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        self.k += 1
        a = ACT_BUY_YES if (self.k // 7) % 2 == 0 else ACT_BUY_NO
        if self.k % 3:
            a = ACT_HOLD
        return masked(np.full(obs.shape[0], a, dtype=np.int64), masks)


def test_biased_sim_dataset_settles_every_market(biased: Dataset) -> None:
    assert biased.n_segments == 48
    assert np.all(biased.seg_result >= 0)
    assert settled_only(biased).n_segments == 48


def test_components_add_up_to_the_total_exactly(report: dict[str, Any]) -> None:
    for name, r in report["policies"].items():
        parts = r["settlement_units"] + r["trading_units"] + r["mark_units"] - r["fees_units"]
        assert r["pnl_units"] == parts, name
        assert r["total_pnl"] == pytest.approx(r["pnl_units"] / 10_000)
        assert r["settled_episodes"] == r["episodes"] == 48
    hold = report["policies"]["hold"]
    assert hold["pnl_units"] == hold["fees_units"] == 0
    # every market settled, so nothing is left to mark; round trips and payouts both occur
    ff = report["policies"]["flip_flop"]
    assert ff["trading_units"] != 0 and ff["settlement_units"] != 0 and ff["fees_units"] > 0
    assert all(r["mark_units"] == 0 for r in report["policies"].values())
    assert "| oracle |" in markdown_table(report)


def test_oracle_bounds_every_policy(report: dict[str, Any]) -> None:
    pols = report["policies"]
    best = max(r["total_pnl"] for n, r in pols.items() if n != "oracle")
    assert pols["oracle"]["total_pnl"] > best
    assert pols["oracle"]["win_rate"] > 0.9  # a winner never offered below $1 earns 0


def test_bias_aware_rule_beats_random_and_hold(report: dict[str, Any]) -> None:
    pols = report["policies"]
    assert pols["bias_aware"]["total_pnl"] > 0 > pols["random"]["total_pnl"]
    assert pols["bias_aware"]["settlement"] > 0  # it earns by holding mispriced contracts


def test_on_an_efficient_market_the_rule_finds_nothing_to_do(make_sim_dataset: Any) -> None:
    fair = make_sim_dataset(0.0, markets=24, seed=5)
    res = evaluate(fair, [BiasAwarePolicy(0.0), RandomPolicy(1)], EnvConfig())
    assert res["policies"]["bias_aware"]["trades"] < 0.1 * res["policies"]["random"]["trades"]


def test_fair_from_quote_inverts_the_planted_distortion() -> None:
    q = np.array([0.05, 0.2, 0.5, 0.8, 0.95])
    assert np.allclose(fair_from_quote(q, 0.0, 0.058, 0.2), q)
    p = fair_from_quote(q, 2.0, 0.058, 0.2)
    assert np.all(p[[0, 1, 3, 4]] < q[[0, 1, 3, 4]])  # YES is overpriced on both sides
    assert p[2] == pytest.approx(0.5)


def test_oracle_needs_its_envs() -> None:
    with pytest.raises(RuntimeError, match="bind"):
        OraclePolicy().act(np.zeros((1, 37), dtype=np.float32), np.ones((1, 5), dtype=bool))
