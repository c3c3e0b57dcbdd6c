"""The env on the core engine: honest fills, collateral, latency, marks, P&L split, order."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from core.dataset import Dataset
from core.dtypes import (
    ACT_BUY_NO,
    ACT_BUY_YES,
    ACT_HOLD,
    COUNT_SCALE,
    MONEY_SCALE,
    NO_PRICE,
    RESULT_UNKNOWN,
    SIDE_NO,
)
from core.features import MARKET_FEATURE_NAMES, N_MARKET_FEATURES, features_for_levels
from kalshi_rl.env.batch import EnvBatch
from kalshi_rl.env.config import ActionMode, EnvConfig, MarkMode, SegmentOrder
from kalshi_rl.env.synthetic import random_walk_dataset
from kalshi_rl.env.trading import KalshiTradingEnv
from kalshi_rl.env.vec import KalshiVecEnv

K = 5
BIG = 10**6 * COUNT_SCALE  # a million contracts


def rows_dataset(px: np.ndarray, qty: np.ndarray, ts_step: int = 1000, result=RESULT_UNKNOWN):
    t = px.shape[0]
    ttc = np.linspace(1, 0, t).astype(np.float32)
    feats, mid = features_for_levels(px, qty, ttc, np.zeros(t, dtype=np.uint8))
    return Dataset(
        features=feats,
        depth_px=px,
        depth_qty=qty,
        mid=mid,
        ts=1_700_000_000_000 + np.arange(t, dtype=np.int64) * ts_step,
        ttc=ttc,
        seg_start=np.array([0]),
        seg_end=np.array([t]),
        seg_market=np.array([0], dtype=np.int32),
        seg_result=np.array([result], dtype=np.int8),
        markets=("ROWS",),
        meta={},
    )


def arrived_no_liquidity(ds: Dataset, a: int, b: int) -> int:
    """Quantity of NO bids that ever stood in the view over rows a..b-1: the first row's
    levels plus every later increase at a price (absent = 0)."""
    total, prev = 0, {}
    for t in range(a, b):
        cur = {
            int(p): int(q)
            for p, q in zip(ds.depth_px[t, SIDE_NO], ds.depth_qty[t, SIDE_NO], strict=True)
            if p != NO_PRICE
        }
        total += sum(max(q - prev.get(p, 0), 0) for p, q in cur.items())
        prev = cur
    return total


def test_unlimited_buying_fills_no_more_than_the_liquidity_that_arrived() -> None:
    ds = random_walk_dataset(1, 300, seed=4, top_k=K)
    cfg = EnvConfig(order_size=BIG, max_position=10**15, start_cash=10**15, slippage_ticks=1000)
    env = KalshiTradingEnv(ds, cfg)
    env.reset(seed=0)
    for _ in range(ds.n_rows - 2):
        env.step(ACT_BUY_YES)
    bought = int(env._batch.pos[0]["position"])
    arrived = arrived_no_liquidity(ds, 0, ds.n_rows - 1)
    assert 0 < bought <= arrived
    assert bought > arrived // 2  # and it does take what arrives
    # the wave-1 kernel (no consumption) fills every row's whole ladder again
    sys.path.insert(0, str(Path(__file__).parents[3] / "bench"))
    from legacy_env import LegacyEnvBatch

    old = LegacyEnvBatch(ds, cfg, 1)
    old.seed(np.ones(1, dtype=np.uint64))
    old.reset()
    for _ in range(ds.n_rows - 2):
        old.step(np.array([ACT_BUY_YES]))
    assert int(old.pos[0]["position"]) > arrived  # it fills more than ever stood there


def test_cash_never_goes_negative_from_one_dollar() -> None:
    """$1 and orders of 10,000 contracts (masks are for the smallest size): the engine cuts
    every fill to what cash covers; the account never goes below zero."""
    ds = random_walk_dataset(2, 120, seed=5, top_k=K)
    cfg = EnvConfig(
        start_cash=MONEY_SCALE,
        max_position=BIG,
        action_mode=ActionMode.MULTI,
        size_choices=(COUNT_SCALE, 10_000 * COUNT_SCALE),
    )
    env = KalshiTradingEnv(ds, cfg)
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    low = []
    for _ in range(400):
        a = int(rng.choice([ACT_BUY_YES, ACT_BUY_NO, 2, 4, ACT_HOLD]))
        _, _, term, trunc, info = env.step(np.array([a, 0, 1]))
        low.append(int(env._batch.pos[0]["cash"]))
        if term or trunc:
            assert info["pnl"] >= -1.0
            env.reset()
    assert min(low) >= 0


def test_cheap_side_at_close_earns_nothing_on_an_empty_final_book() -> None:
    """#11: the sim pulls its ladders at close.  'At ttc = 0 buy whichever side is under
    $0.50' used to earn money against a made-up $0.50 mark; now it cannot."""
    t = 12
    px = np.full((t, 2, K), NO_PRICE, dtype=np.int16)
    qty = np.zeros((t, 2, K), dtype=np.int64)
    px[:8, 0, 0], qty[:8, 0, 0] = 300, 10_000  # YES bid 30c -> NO ask 70c
    px[:8, 1, 0], qty[:8, 1, 0] = 600, 10_000  # NO bid 60c -> YES ask 40c
    # rows 8..11: only a YES bid at 2c (NO ask 98c), then nothing at all
    px[8:10, 0, 0], qty[8:10, 0, 0] = 20, 10_000
    ds = rows_dataset(px, qty)
    f_ya = MARKET_FEATURE_NAMES.index("yes_ask")
    f_na = MARKET_FEATURE_NAMES.index("no_ask")
    f_ttc = MARKET_FEATURE_NAMES.index("ttc")
    for mode in (MarkMode.LIQUIDATION, MarkMode.MID):
        env = KalshiTradingEnv(ds, EnvConfig(mark_mode=mode, order_size=500))
        obs, _ = env.reset(seed=0)
        total = 0.0
        while True:
            a = ACT_HOLD
            if obs[f_ttc] < 0.35:  # "at close": buy the side whose ask is under 50c
                if 0 < obs[f_ya] < 0.5:
                    a = ACT_BUY_YES
                elif 0 < obs[f_na] < 0.5:
                    a = ACT_BUY_NO
            obs, r, term, _, info = env.step(a)
            total += r
            if term:
                break
        assert info["pnl"] <= 0.0, mode
        assert info["pnl"] == pytest.approx(total, abs=1e-6)


def test_sequential_order_visits_every_segment_once_per_pass() -> None:
    ds = random_walk_dataset(5, 20, seed=2, top_k=K)
    env = KalshiTradingEnv(ds, EnvConfig(segment_order=SegmentOrder.SEQUENTIAL))
    seen = []
    env.reset(seed=0)
    for _ in range(2 * ds.n_segments):
        seen.append(int(env._batch.state[0]["seg"]))
        while True:
            _, _, term, trunc, _ = env.step(ACT_HOLD)
            if term or trunc:
                break
        env.reset()
    assert seen == list(range(5)) * 2
    env.reset(seed=0)  # an explicit seed starts a new pass
    assert int(env._batch.state[0]["seg"]) == 0


def test_latency_executes_against_the_book_when_the_order_arrives() -> None:
    """Rows 10 ms apart, 50 ms entry: an order sent at row 0 (0 ms) arrives at 50 ms and
    fills at row 5's ask (the last book not later); the env learns it only at row 6 (60 ms,
    the first row later than the arrival: no lookahead at row 6's time from row 5), where
    the fill shows; until it is acknowledged (+30 ms = 80 ms, row 8) only hold is allowed."""
    t = 12
    px = np.full((t, 2, K), NO_PRICE, dtype=np.int16)
    qty = np.zeros((t, 2, K), dtype=np.int64)
    px[:, 0, 0], qty[:, 0, 0] = 400, 10_000
    px[:, 1, 0], qty[:, 1, 0] = 550, 10_000  # YES ask 45c ...
    px[3:, 1, 0] = 500  # ... 50c from row 3 on
    px[6:, 1, 0] = 480  # ... 52c from row 6 on (after the arrival)
    ds = rows_dataset(px, qty, ts_step=10)
    cfg = EnvConfig(entry_latency_ms=(50, 50), ack_latency_ms=(30, 30), slippage_ticks=100)
    env = KalshiTradingEnv(ds, cfg)
    obs, _ = env.reset(seed=0)
    flat = obs[N_MARKET_FEATURES:].copy()
    env.step(ACT_BUY_YES)  # row 0, arrives at +50 ms = row 5
    for k in range(1, 6):  # rows 1..5: in flight, not known to have arrived
        assert env.action_masks().tolist() == [True, False, False, False, False], k
        assert int(env._batch.pos[0]["position"]) == 0, k
        obs, _r, _term, _trunc, _info = env.step(ACT_HOLD)
    # row 6: the fill shows, at row 5's price
    assert int(env._batch.state[0]["t"]) == 6
    assert int(env._batch.pos[0]["position"]) == 100
    assert int(env._batch.orders[0]["notional"]) == 100 * 500  # row 5's price, not row 6's
    assert int(env._batch.orders[0]["ack_ts"]) == int(ds.ts[0]) + 80
    assert not np.array_equal(obs[N_MARKET_FEATURES:], flat)  # the account features moved
    assert not env.action_masks()[ACT_BUY_YES]  # row 6 (60 ms): not acknowledged yet
    env.step(ACT_HOLD)  # row 7 (70 ms)
    assert not env.action_masks()[ACT_BUY_YES]
    env.step(ACT_HOLD)  # row 8 (80 ms): acknowledged
    assert env.action_masks()[ACT_BUY_YES]


def test_same_millisecond_rows_fill_at_the_last_and_show_after_it() -> None:
    """Zero latency, rows 0-2 at 0 ms, row 3 at 1 ms: an order sent at row 0 meets row 2's
    book (the last not later than its arrival) and shows only at row 3; an order still in
    flight when the segment ends meets the last book, after the last observation."""
    t = 6
    px = np.full((t, 2, K), NO_PRICE, dtype=np.int16)
    qty = np.zeros((t, 2, K), dtype=np.int64)
    px[:, 0, 0], qty[:, 0, 0] = 400, 10_000
    px[:, 1, 0], qty[:, 1, 0] = 550, 10_000
    px[2, 1, 0] = 530  # row 2's YES ask: 47c
    px[5, 1, 0] = 520  # the last row's: 48c
    ds = rows_dataset(px, qty, ts_step=10)
    ds = ds._replace(ts=np.array([0, 0, 0, 1, 2, 2], dtype=np.int64))
    cfg = EnvConfig(entry_latency_ms=(0, 0), ack_latency_ms=(0, 0), slippage_ticks=100)
    env = KalshiTradingEnv(ds, cfg)
    env.reset(seed=0)
    env.step(ACT_BUY_YES)  # row 0
    assert int(env._batch.pos[0]["position"]) == 0  # row 1: same ms, not known yet
    assert env.action_masks().tolist() == [True, False, False, False, False]
    env.step(ACT_HOLD)
    assert int(env._batch.pos[0]["position"]) == 0  # row 2: still the same ms
    env.step(ACT_HOLD)
    assert int(env._batch.pos[0]["position"]) == 100  # row 3 (1 ms): it arrived
    assert int(env._batch.orders[0]["notional"]) == 100 * 470  # at row 2's book
    assert env.action_masks()[ACT_BUY_YES]  # acknowledged (zero ack latency)
    held, _r, _term, _trunc, _info = env.step(ACT_HOLD)  # row 4 (2 ms); the last: 5 (2 ms)
    obs, _r, term, _trunc, info = env.step(ACT_BUY_YES)  # in flight at the segment's end
    assert term
    # the last observation shows one contract (as live sees it at that row) ...
    assert obs[N_MARKET_FEATURES] == held[N_MARKET_FEATURES]
    assert info["trades"] == 2  # ... then the order met the last book: 2 contracts held
    assert int(env._batch.orders[0]["notional"]) == 100 * 480  # the last row's YES ask


def test_pnl_components_add_up_in_every_episode() -> None:
    ds = random_walk_dataset(6, 80, seed=9, top_k=K)
    venv = KalshiVecEnv(ds, n_envs=8, config=EnvConfig(random_start=True), seed=3)
    venv.reset()
    rng = np.random.default_rng(1)
    ended = 0
    for _ in range(400):
        masks = venv.action_masks()
        acts = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        _, _, dones, infos = venv.step(acts)
        for i in np.flatnonzero(dones):
            info = infos[i]
            parts = info["pnl_trading"] + info["pnl_settlement"] + info["pnl_mark"] - info["fees"]
            assert parts == pytest.approx(info["pnl"], abs=1e-9)
            assert info["episode"]["r"] == pytest.approx(info["pnl"], abs=1e-3)
            ended += 1
    assert ended >= 20
    ep = venv.batch.episodes
    assert np.all(ep["trading"] + ep["settlement"] + ep["mark"] - ep["fees"] == ep["pnl"])


def test_masks_equal_the_order_rules() -> None:
    """write_action_masks (one scan per ladder) == action_check per action, on env states."""
    from core.orders import action_check

    ds = random_walk_dataset(3, 60, seed=11, top_k=K)
    b = EnvBatch(ds, EnvConfig(start_cash=20 * MONEY_SCALE), 4)
    b.seed(np.arange(1, 5, dtype=np.uint64))
    b.reset()
    rng = np.random.default_rng(2)
    for _ in range(150):
        b.step(rng.integers(0, 5, 4))
        for i in range(4):
            t = int(b.state[i]["t"])
            busy = int(b.orders[i]["status"]) == 3 or ds.ts[t] < b.state[i]["busy_until"]
            for a in range(1, 5):
                ok = action_check(
                    a, int(b.pos[i]["position"]), int(b.pos[i]["cash"]), b.mask_size,
                    b.config.max_position, b.depth_px[t], b.depth_qty[t], b.liq[i : i + 1],
                    b.fees,
                ) == 0  # fmt: skip
                assert bool(b.masks[i, a]) == (ok and not busy)
