"""Baseline rules: masks respected, decisions from the named features."""

from __future__ import annotations

import numpy as np

from core.dtypes import ACT_BUY_NO, ACT_BUY_YES, ACT_HOLD, ACT_SELL_NO, ACT_SELL_YES
from core.features import (
    ACCOUNT_FEATURE_NAMES,
    MARKET_FEATURE_NAMES,
    N_FEATURES,
    N_MARKET_FEATURES,
)
from kalshi_rl.train.baselines import (
    CheaperSidePolicy,
    HoldPolicy,
    MeanReversionPolicy,
    RandomPolicy,
)

ALL = np.ones((1, 5), dtype=bool)


def _obs(**values: float) -> np.ndarray:
    obs = np.zeros((1, N_FEATURES), dtype=np.float32)
    for k, v in values.items():
        if k in MARKET_FEATURE_NAMES:
            obs[0, MARKET_FEATURE_NAMES.index(k)] = v
        else:
            obs[0, N_MARKET_FEATURES + ACCOUNT_FEATURE_NAMES.index(k)] = v
    return obs


def test_hold() -> None:
    assert HoldPolicy().act(np.zeros((3, N_FEATURES)), np.ones((3, 5), bool)).tolist() == [0] * 3


def test_random_only_valid_and_covers_them() -> None:
    masks = np.tile(np.array([True, True, False, True, False]), (2000, 1))
    a = RandomPolicy(1).act(np.zeros((2000, N_FEATURES)), masks)
    assert set(a.tolist()) == {ACT_HOLD, ACT_BUY_YES, ACT_BUY_NO}
    assert np.bincount(a, minlength=5)[[0, 1, 3]].min() > 550


def test_cheaper_side() -> None:
    p = CheaperSidePolicy()
    assert p.act(_obs(yes_ask=0.30, no_ask=0.72), ALL)[0] == ACT_BUY_YES
    assert p.act(_obs(yes_ask=0.80, no_ask=0.21), ALL)[0] == ACT_BUY_NO
    no_buy_no = np.array([[True, True, True, False, True]])
    assert p.act(_obs(yes_ask=0.80, no_ask=0.21), no_buy_no)[0] == ACT_HOLD


def test_mean_reversion() -> None:
    p = MeanReversionPolicy(threshold=0.3)
    assert p.act(_obs(ret_20=-0.5), ALL)[0] == ACT_BUY_YES
    assert p.act(_obs(ret_20=0.5), ALL)[0] == ACT_BUY_NO
    assert p.act(_obs(ret_20=0.1), ALL)[0] == ACT_HOLD
    assert p.act(_obs(ret_20=0.1, position=0.2), ALL)[0] == ACT_SELL_YES
    assert p.act(_obs(ret_20=-0.1, position=-0.2), ALL)[0] == ACT_SELL_NO
