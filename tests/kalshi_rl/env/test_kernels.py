"""The env's observation is the live actor's observation, bit for bit.

Env path: dataset features (``market_features_batch`` over recorded levels) ++
``account_features``.  Live path: the same levels loaded into a ``core.book.BookSet`` and
``core.features.build_observation`` on it, the position valued by the engine
(``core.account.position_value``) over the live book's top levels.  Also checks the
kernel's RNG helpers.
"""

from __future__ import annotations

import numpy as np

from core.account import position_value
from core.book import BookSet, book_top_k
from core.dtypes import ENV_STATE_DTYPE, HIST_LEN, NO_PRICE, SNAPSHOT_LEVEL_DTYPE
from core.features import N_FEATURES, book_mid, build_observation, hist_push
from kalshi_rl.env import kernels
from kalshi_rl.env.config import EnvConfig, SegmentOrder
from kalshi_rl.env.synthetic import random_walk_dataset
from kalshi_rl.env.trading import KalshiTradingEnv


def _snapshot_levels(px: np.ndarray, qty: np.ndarray, slot: int) -> np.ndarray:
    rows = [
        (s, int(px[s, j]), int(qty[s, j]))
        for s in range(2)
        for j in range(px.shape[1])
        if px[s, j] != NO_PRICE
    ]
    levels = np.zeros(len(rows), dtype=SNAPSHOT_LEVEL_DTYPE)
    for i, (side, price, q) in enumerate(rows):
        levels[i]["side"], levels[i]["price"], levels[i]["qty"] = side, price, q
        levels[i]["market"], levels[i]["seq"] = slot, i + 1
    return levels


def test_env_observation_is_bit_identical_to_live_build_observation() -> None:
    ds = random_walk_dataset(2, 80, seed=21)
    cfg = EnvConfig(segment_order=SegmentOrder.SEQUENTIAL, max_position=300)
    env = KalshiTradingEnv(ds, cfg)
    obs, _ = env.reset(seed=0)
    books = BookSet(capacity=4)
    slot = books.slot("SYN")
    hist = np.zeros(HIST_LEN, dtype=np.float64)
    hist_n = 0
    live = np.zeros(N_FEATURES, dtype=np.float32)
    rng = np.random.default_rng(0)
    compared = 0
    trading = 0
    for _ in range(ds.seg_end[0] - 1):
        t = int(env._batch.state[0]["t"])
        books.apply_snapshot(slot, _snapshot_levels(ds.depth_px[t], ds.depth_qty[t], slot))
        hist_n = hist_push(hist, hist_n, book_mid(books.best, slot))
        pos = env._batch.pos[0:1].copy()
        lpx = np.empty((2, ds.top_k), dtype=np.int16)
        lqty = np.empty((2, ds.top_k), dtype=np.int64)
        book_top_k(books.qty, books.best, slot, ds.top_k, lpx, lqty)
        value = position_value(
            int(pos[0]["position"]), lpx, lqty, env._batch.liq[0:1], env._batch.fees,
            int(cfg.mark_mode),
        )  # fmt: skip
        build_observation(
            books.qty, books.best, slot, hist, hist_n, float(ds.ttc[t]), pos, value,
            cfg.start_cash, live,
        )  # fmt: skip
        assert np.array_equal(obs.view(np.uint32), live.view(np.uint32)), f"row {t}"
        compared += 1
        trading += pos[0]["position"] != 0
        obs, _, term, _, _ = env.step(rng.choice(np.flatnonzero(env.action_masks())))
        if term:
            break
    assert compared == ds.seg_end[0] - 1
    assert trading > 10  # the account half was exercised with open positions too


def test_rng_below_is_uniform_and_deterministic() -> None:
    state = np.zeros(2, dtype=ENV_STATE_DTYPE)
    state["rng"] = np.array([12345, 12345], dtype=np.uint64)
    a = [kernels.rng_below(state, 0, 7) for _ in range(7000)]
    b = [kernels.rng_below(state, 1, 7) for _ in range(7000)]
    assert a == b
    counts = np.bincount(a, minlength=7)
    assert counts.min() > 850 and counts.max() < 1150
