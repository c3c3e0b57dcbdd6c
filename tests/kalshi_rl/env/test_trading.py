"""KalshiTradingEnv: Gymnasium/SB3 contracts, accounting against hand-computed books."""

from __future__ import annotations

import builtins
import socket

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from core.dataset import Dataset
from core.dtypes import (
    ACT_BUY_NO,
    ACT_BUY_YES,
    ACT_HOLD,
    ACT_SELL_NO,
    ACT_SELL_YES,
    MONEY_SCALE,
    NO_PRICE,
    RESULT_UNKNOWN,
    RESULT_YES,
)
from core.features import N_FEATURES, N_MARKET_FEATURES, features_for_levels
from kalshi_rl.env.config import ActionMode, EnvConfig, SegmentOrder
from kalshi_rl.env.synthetic import random_walk_dataset
from kalshi_rl.env.trading import KalshiTradingEnv
from kalshi_rl.errors import EnvError


def flat_book_dataset(n_rows: int = 4, result: int = RESULT_YES, k: int = 5) -> Dataset:
    """One segment of a constant book: YES bid 40c x 5, NO bid 55c x 3 (YES ask 45c).

    Built through the validating facade (``features_for_levels``); rows 1 s apart.
    """
    px = np.full((n_rows, 2, k), NO_PRICE, dtype=np.int16)
    qty = np.zeros((n_rows, 2, k), dtype=np.int64)
    px[:, 0, 0], qty[:, 0, 0] = 400, 500
    px[:, 0, 1], qty[:, 0, 1] = 390, 1000
    px[:, 1, 0], qty[:, 1, 0] = 550, 300
    px[:, 1, 1], qty[:, 1, 1] = 540, 1000
    ttc = np.linspace(1, 0, n_rows).astype(np.float32)
    reset = np.zeros(n_rows, dtype=np.uint8)
    feats, mid = features_for_levels(px, qty, ttc, reset)
    return Dataset(
        features=feats,
        depth_px=px,
        depth_qty=qty,
        mid=mid,
        ts=1_700_000_000_000 + np.arange(n_rows, dtype=np.int64) * 1000,
        ttc=ttc,
        seg_start=np.array([0]),
        seg_end=np.array([n_rows]),
        seg_market=np.array([0], dtype=np.int32),
        seg_result=np.array([result], dtype=np.int8),
        markets=("FLAT",),
        meta={},
    )


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return random_walk_dataset(6, 120, seed=3)


def test_gymnasium_check_env(ds: Dataset) -> None:
    gym_check_env(KalshiTradingEnv(ds), skip_render_check=True)


def test_sb3_check_env(ds: Dataset) -> None:
    sb3_check_env(KalshiTradingEnv(ds), warn=True)


def test_multi_action_mode_passes_checks(ds: Dataset) -> None:
    env = KalshiTradingEnv(ds, EnvConfig(action_mode=ActionMode.MULTI))
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=True)
    assert tuple(env.action_space.nvec) == (5, 3, 2)


def test_step_before_reset_asserts(ds: Dataset) -> None:
    env = KalshiTradingEnv(ds)
    with pytest.raises(AssertionError, match="before reset"):
        env.step(ACT_HOLD)


def test_action_out_of_range_raises(ds: Dataset) -> None:
    env = KalshiTradingEnv(ds)
    env.reset(seed=0)
    with pytest.raises(EnvError, match="actions must be in"):
        env.step(7)


def test_buy_yes_then_settle_yes_matches_ledger() -> None:
    """Buy 1 YES at the 45c ask, hold to the end, market settles YES: +$1 - 45c - fees.

    Money as Kalshi books it (Decimal reference): trade fee 0.07*0.45*0.55 = $0.017325 ->
    $0.0174, balance change -$0.4674 floored to -$0.47.  The reward marks the YES contract
    at what it could be sold for: 1 @ 40c bid, fee $0.0168, $0.3832 -> $0.38.
    """
    env = KalshiTradingEnv(flat_book_dataset(4, RESULT_YES), EnvConfig(slippage_ticks=0))
    _obs, info = env.reset(seed=0)
    assert info["action_mask"].tolist() == [True, True, False, True, False]
    total = 0.0
    _, r, term, trunc, info = env.step(ACT_BUY_YES)
    paid = -4700  # -$0.45 - $0.0174 = -$0.4674 -> floored to the cent: -$0.47
    sell_now = 3800  # $0.40 - $0.0168 = $0.3832 -> $0.38
    assert r == pytest.approx((paid + sell_now) / MONEY_SCALE, abs=1e-6)
    total += r
    assert env.action_masks().tolist() == [True, True, True, True, False]
    for _ in range(2):
        _, r, term, trunc, info = env.step(ACT_HOLD)
        total += r
    assert term and not trunc
    expected_pnl = (MONEY_SCALE + paid) / MONEY_SCALE
    assert info["pnl"] == pytest.approx(expected_pnl)
    assert info["settled"] and info["trades"] == 1
    assert info["fees"] == pytest.approx((4700 - 4500) / MONEY_SCALE)  # 174 trade + 26 rounding
    assert info["pnl_settlement"] == pytest.approx((MONEY_SCALE - 4500) / MONEY_SCALE)
    assert info["pnl_trading"] == 0.0 and info["pnl_mark"] == 0.0
    assert total == pytest.approx(expected_pnl, abs=1e-5)


def test_buy_no_unknown_result_is_valued_at_its_sale_price() -> None:
    env = KalshiTradingEnv(flat_book_dataset(3, RESULT_UNKNOWN), EnvConfig(slippage_ticks=0))
    env.reset(seed=0)
    env.step(ACT_BUY_NO)  # NO ask = 1000 - 400 = 60c
    _, _, term, _, info = env.step(ACT_HOLD)
    assert term and not info["settled"]
    paid = -6200  # fee 0.07*0.6*0.4 = $0.0168: -$0.6168 -> -$0.62
    sale = 5300  # into the 55c NO bid, fee $0.017325 -> $0.0174: $0.5326 -> $0.53
    assert info["pnl"] == pytest.approx((paid + sale) / MONEY_SCALE)
    parts = info["pnl_trading"] + info["pnl_settlement"] + info["pnl_mark"] - info["fees"]
    assert parts == pytest.approx(info["pnl"], abs=1e-9)
    assert info["pnl_mark"] == pytest.approx((5300 - 6000) / MONEY_SCALE)


def test_sell_is_reduce_only_and_invalid_runs_as_hold() -> None:
    env = KalshiTradingEnv(flat_book_dataset(5), EnvConfig())
    env.reset(seed=0)
    obs0 = env.action_masks()
    assert not obs0[ACT_SELL_YES] and not obs0[ACT_SELL_NO]
    _, r, _, _, info = env.step(ACT_SELL_YES)
    assert info["invalid_action"] and r == 0.0
    env.step(ACT_BUY_YES)
    _, _, _, _, info = env.step(ACT_SELL_YES)  # closes the YES position at the 40c bid
    assert not info["invalid_action"]
    _, _, term, _, info = env.step(ACT_HOLD)
    assert term
    assert info["n_invalid"] == 1 and info["trades"] == 2


def test_position_limit_masks_buys() -> None:
    env = KalshiTradingEnv(flat_book_dataset(6), EnvConfig(max_position=200))
    env.reset(seed=0)
    env.step(ACT_BUY_YES)
    env.step(ACT_BUY_YES)
    mask = env.action_masks()
    assert not mask[ACT_BUY_YES] and mask[ACT_BUY_NO] and mask[ACT_SELL_YES]
    _, _, _, _, info = env.step(ACT_BUY_YES)
    assert info["invalid_action"]


def test_partial_fill_within_slippage_limit() -> None:
    """Size 5 contracts, NO ladder 3 @ 55c and 10 @ 54c: limit 0 ticks fills only 3."""
    env = KalshiTradingEnv(flat_book_dataset(3), EnvConfig(order_size=500, slippage_ticks=0))
    env.reset(seed=0)
    env.step(ACT_BUY_YES)
    assert env._batch.pos[0]["position"] == 300
    env2 = KalshiTradingEnv(flat_book_dataset(3), EnvConfig(order_size=500, slippage_ticks=10))
    env2.reset(seed=0)
    env2.step(ACT_BUY_YES)
    assert env2._batch.pos[0]["position"] == 500


def test_episode_return_equals_pnl_without_shaping(ds: Dataset) -> None:
    env = KalshiTradingEnv(ds)
    rng = np.random.default_rng(0)
    env.reset(seed=5)
    total, ends = 0.0, 0
    for _ in range(2000):
        a = rng.choice(np.flatnonzero(env.action_masks()))
        _, r, term, trunc, info = env.step(a)
        total += r
        if term or trunc:
            assert total == pytest.approx(info["pnl"], abs=1e-3)
            total, ends = 0.0, ends + 1
            env.reset()
    assert ends >= 10


def test_shaping_penalties_lower_reward() -> None:
    base = KalshiTradingEnv(flat_book_dataset(4), EnvConfig())
    shaped = KalshiTradingEnv(
        flat_book_dataset(4), EnvConfig(inventory_penalty=0.01, trade_penalty=0.02)
    )
    base.reset(seed=0)
    shaped.reset(seed=0)
    _, r0, *_ = base.step(ACT_BUY_YES)
    _, r1, *_ = shaped.step(ACT_BUY_YES)
    assert r1 == pytest.approx(r0 - 0.01 - 0.02, abs=1e-6)


def test_truncation_at_max_episode_steps(ds: Dataset) -> None:
    env = KalshiTradingEnv(ds, EnvConfig(max_episode_steps=7))
    env.reset(seed=1)
    for k in range(7):
        _, _, term, trunc, _ = env.step(ACT_HOLD)
        assert not term
        assert trunc == (k == 6)


def test_seeded_rollouts_are_deterministic(ds: Dataset) -> None:
    cfg = EnvConfig(random_start=True)

    def rollout(seed: int) -> tuple[np.ndarray, np.ndarray]:
        env = KalshiTradingEnv(ds, cfg)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        out_obs, out_r = [obs], []
        for _ in range(500):
            obs, r, term, trunc, _ = env.step(rng.choice(np.flatnonzero(env.action_masks())))
            out_obs.append(obs)
            out_r.append(r)
            if term or trunc:
                obs, _ = env.reset()
        return np.array(out_obs), np.array(out_r)

    a, b, c = rollout(11), rollout(11), rollout(12)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_sequential_order_walks_segments(ds: Dataset) -> None:
    env = KalshiTradingEnv(ds, EnvConfig(segment_order=SegmentOrder.SEQUENTIAL))
    env.reset(seed=0)
    assert env._batch.state[0]["seg"] == 0
    assert env._batch.state[0]["t"] == ds.seg_start[0]


def test_no_io_during_reset_and_step(ds: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    env = KalshiTradingEnv(ds)
    env.reset(seed=0)
    env.step(ACT_BUY_YES)  # JIT compiled and cached before the guard

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("I/O attempted inside the env loop")

    monkeypatch.setattr(socket, "socket", forbidden)
    monkeypatch.setattr(builtins, "open", forbidden)
    for _ in range(3):
        env.reset()
        for _ in range(300):
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            if term or trunc:
                break
    monkeypatch.undo()


def test_observation_shape_and_dtype(ds: Dataset) -> None:
    env = KalshiTradingEnv(ds)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (N_FEATURES,) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs[:N_MARKET_FEATURES], ds.features[env._batch.state[0]["t"]])


def test_dataset_without_usable_segment_is_refused() -> None:
    d = flat_book_dataset(1)
    with pytest.raises(EnvError, match=">= 2 rows"):
        KalshiTradingEnv(d)


def test_config_validation() -> None:
    with pytest.raises(EnvError, match="order_size"):
        EnvConfig(order_size=0)
