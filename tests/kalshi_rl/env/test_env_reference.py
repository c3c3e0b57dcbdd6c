"""The fused step kernel == the straightforward composition of the core engine, bit for bit.

``kernels.step_envs`` fuses the env's rules into one Numba loop and is optimised for speed
(views taken once, borrowed references, on-demand masks).  ``ReferenceEnvs`` here is the
plain way to write the same env: a Python loop per env and step that calls the core
engine's public kernels one at a time (``core.orders``, ``core.matching``,
``core.liquidity``, ``core.account``, ``core.latency``, ``core.features``) and its own
pure-Python xorshift64* generator.  Both are fed the same seeds and actions, and after
every step every output (observation, reward, flags, terminal observation, episode record)
and every piece of state (env state, position, order, liquidity consumption) must be
equal.  A digest of each run is compared too, so a difference anywhere fails with the
first step where it appears.

Covered through configs: the default (constant latency, liquidation marks), sampled
latency with MID marks, random starts, truncation, shaping penalties, MULTI actions,
SEQUENTIAL order, whole-contract lots, direct-member precision, and a poor account
(collateral cuts).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from gymnasium.utils import seeding

from core.account import pnl_components, position_value, reset_position, settle
from core.dataset import Dataset
from core.dtypes import (
    ACT_BUY_NO,
    ACT_BUY_YES,
    ACT_HOLD,
    COUNT_SCALE,
    MONEY_SCALE,
    N_ACTIONS,
    ORD_CANCELED,
    ORD_PENDING,
    ORDER_BUY,
    PRICE_MAX,
    REJ_NONE,
    RESULT_NO,
    RESULT_YES,
    TIF_IOC,
)
from core.features import N_FEATURES, N_MARKET_FEATURES, account_features
from core.latency import latency_sample
from core.liquidity import best_available, liquidity_clear, liquidity_refresh
from core.matching import take_ladder, taker_match
from core.orders import action_to_order, collateral_need
from kalshi_rl.env.batch import EnvBatch
from kalshi_rl.env.config import ActionMode, EnvConfig, MarkMode, SegmentOrder
from kalshi_rl.env.synthetic import random_walk_dataset
from kalshi_rl.env.trading import KalshiTradingEnv
from kalshi_rl.env.vec import KalshiVecEnv, _seed_words

_M64 = (1 << 64) - 1
_NEVER = np.iinfo(np.int64).max


class _XorShift:
    """xorshift64* in Python integers (the env's documented generator)."""

    def __init__(self, word: int) -> None:
        self.x = int(word)

    def next(self) -> int:
        x = self.x
        x ^= x >> 12
        x ^= (x << 25) & _M64
        x ^= x >> 27
        self.x = x
        return (x * 2685821657736338717) & _M64

    def uniform(self) -> float:
        return (self.next() >> 11) * (1.0 / 9007199254740992.0)

    def below(self, n: int) -> int:
        k = int(self.uniform() * n)
        return k if k < n else n - 1


class ReferenceEnvs:
    """N envs stepped one at a time in Python over the core engine's public kernels.

    Same state layout as ``EnvBatch`` (so the two can be compared field by field) and the
    same buffers (``obs``, ``rewards``, ...), filled in the order the env documents.
    """

    def __init__(self, ds: Dataset, config: EnvConfig, words: np.ndarray) -> None:
        ref = EnvBatch(ds, config, len(words))  # only for its validated arrays and buffers
        self.b = ref
        self.c = config
        self.n = len(words)
        self.rng = [_XorShift(int(w) if int(w) != 0 else 0x9E3779B97F4A7C15) for w in words]
        self.cursor = 0

    # ------------------------------------------------------------------ episodes
    def _start(self, i: int) -> None:
        b, c = self.b, self.c
        n = b.eligible.shape[0]
        if c.segment_order == SegmentOrder.SEQUENTIAL:
            s = int(b.eligible[self.cursor % n])
            self.cursor += 1
        else:
            s = int(b.eligible[self.rng[i].below(n)])
        t0 = int(b.seg_start[s])
        if c.random_start:
            span = int((int(b.seg_end[s]) - 1 - int(b.seg_start[s])) * c.start_fraction)
            if span > 1:
                t0 += self.rng[i].below(span)
        st = b.state[i]
        st["seg"], st["t"], st["steps"], st["ep_return"], st["n_invalid"] = s, t0, 0, 0.0, 0
        st["value"], st["busy_until"], st["n_unfilled"] = c.start_cash, 0, 0
        reset_position(b.pos[i : i + 1], c.start_cash)
        b.orders[i]["status"] = ORD_CANCELED
        b.orders[i]["order_id"] = 0
        liquidity_clear(b.liq[i : i + 1])

    def _obs(self, i: int, t: int, mark: int, out: np.ndarray) -> None:
        out[:N_MARKET_FEATURES] = self.b.features[t]
        acc = np.zeros(N_FEATURES - N_MARKET_FEATURES, dtype=np.float32)
        account_features(self.b.pos[i : i + 1], mark, self.c.start_cash, acc)
        out[N_MARKET_FEATURES:] = acc

    def reset(self) -> np.ndarray:
        for i in range(self.n):
            self._start(i)
            self._obs(i, int(self.b.state[i]["t"]), 0, self.b.obs[i])
        self._sync_rng()
        return self.b.obs

    def _sync_rng(self) -> None:
        # the generators' words into the state records, to compare them with the kernel's
        self.b.state["rng"] = np.array([r.x for r in self.rng], dtype=np.uint64)

    # ------------------------------------------------------------------ orders
    def _arrived(self, i: int, t: int) -> bool:
        # row t is the first row later than the order's arrival (no lookahead: row t + 1's
        # time is not looked at)
        o = self.b.orders[i]
        return int(o["status"]) == ORD_PENDING and int(self.b.ts[t]) > int(o["active_ts"])

    def _execute(self, i: int, t: int) -> None:
        b = self.b
        taker_match(
            b.orders[i : i + 1], b.pos[i : i + 1], b.depth_px[t], b.depth_qty[t],
            b.liq[i : i + 1], b.fees, self.c.count_lot, int(b.ts[t]), b._fills,
        )  # fmt: skip
        o = b.orders[i]
        if o["remaining"] > 0:
            o["status"] = ORD_CANCELED
        b.state[i]["busy_until"] = o["ack_ts"]
        if o["filled"] == 0:
            b.state[i]["n_unfilled"] += 1

    def _send(self, i: int, t: int, side: int, act: int, limit: int, count: int) -> None:
        b = self.b
        o = b.orders[i]
        o["order_id"] += 1
        o["side"], o["action"], o["price"], o["count"], o["remaining"] = (
            side, act, limit, count, count,
        )  # fmt: skip
        for f in ("filled", "notional", "fees", "taker_fees", "maker_fees", "rounding_acc"):
            o[f] = 0
        o["tif"] = TIF_IOC
        r = b.latency[0]
        u_e = self.rng[i].uniform() if r["entry_max_ms"] > r["entry_min_ms"] else 0.0
        u_a = self.rng[i].uniform() if r["ack_max_ms"] > r["ack_min_ms"] else 0.0
        entry, ack = latency_sample(b.latency, u_e, u_a)
        ts = int(b.ts[t])
        o["ts"], o["active_ts"], o["ack_ts"] = ts, ts + entry, ts + entry + ack
        o["status"] = ORD_PENDING

    def _act(self, i: int, a: int, size: int, slip: int, t: int) -> bool:
        """True when the action was not allowed (it runs as hold)."""
        b, c = self.b, self.c
        if a == ACT_HOLD:
            return False
        if int(b.orders[i]["status"]) == ORD_PENDING or int(b.ts[t]) < int(
            b.state[i]["busy_until"]
        ):
            return True
        position = int(b.pos[i]["position"])
        if (a == ACT_BUY_YES and position + size > c.max_position) or (
            a == ACT_BUY_NO and position - size < -c.max_position
        ):
            return True
        px, qty, lq = b.depth_px[t], b.depth_qty[t], b.liq[i : i + 1]
        side, act, limit, count, reason = action_to_order(
            a, position, size, c.max_position, slip, px, qty, lq
        )
        if reason != REJ_NONE or count <= 0:
            return True
        if act == ORDER_BUY:
            touch = limit - slip
            if limit >= PRICE_MAX:
                touch = PRICE_MAX - best_available(px, qty, lq, take_ladder(side, act))
            if collateral_need(position, side, act, touch, count, b.fees) > b.pos[i]["cash"]:
                return True
        self._send(i, t, side, act, limit, count)
        b.state[i]["busy_until"] = _NEVER
        return False

    # ------------------------------------------------------------------ step
    def _value(self, i: int, t: int) -> tuple[int, int]:
        b = self.b
        p = b.pos[i]
        if p["position"] == 0:
            return int(p["cash"]), 0
        v = position_value(
            int(p["position"]), b.depth_px[t], b.depth_qty[t], b.liq[i : i + 1], b.fees,
            int(self.c.mark_mode),
        )  # fmt: skip
        return int(p["cash"]) + v, v

    def _episode(self, i: int, after: int, open_value: int, settled: bool) -> None:
        b = self.b
        ep, st, p = b.episodes[i], b.state[i], b.pos[i]
        ep["ret"], ep["length"], ep["pnl"] = st["ep_return"], st["steps"], after - self.c.start_cash
        trading, settlement, mark, fees = pnl_components(b.pos[i : i + 1], open_value)
        ep["fees"], ep["trading"], ep["settlement"], ep["mark"] = fees, trading, settlement, mark
        ep["trades"], ep["n_invalid"], ep["n_unfilled"] = (
            p["n_trades"], st["n_invalid"], st["n_unfilled"],
        )  # fmt: skip
        ep["seg"], ep["settled"] = st["seg"], settled

    def step(self, actions: np.ndarray, sizes: np.ndarray, slips: np.ndarray) -> int:
        b, c = self.b, self.c
        n_done = 0
        for i in range(self.n):
            st = b.state[i]
            t, s = int(st["t"]), int(st["seg"])
            seg_last = int(b.seg_end[s]) - 1
            before = int(st["value"])
            trades_before = int(b.pos[i]["n_trades"])
            bad = self._act(i, int(actions[i]), int(sizes[i]), int(slips[i]), t)
            b.invalid[i] = bad
            if bad:
                st["n_invalid"] += 1
            t += 1
            st["t"] = t
            st["steps"] += 1
            if self._arrived(i, t):  # it met the row before, shows from this row on
                self._execute(i, t - 1)
            if b.liq[i]["n"][0] + b.liq[i]["n"][1] > 0:
                liquidity_refresh(b.depth_px[t], b.depth_qty[t], b.liq[i : i + 1])
            is_term = t >= seg_last
            settled = False
            if is_term:
                # the last row's observation first; then the segment's end
                self._obs(i, t, self._value(i, t)[1], b.term_obs[i])
                if int(b.orders[i]["status"]) == ORD_PENDING:
                    self._execute(i, t)  # never arrived inside the data: the last book
                if int(b.seg_result[s]) >= RESULT_NO:
                    settle(b.pos[i : i + 1], int(b.seg_result[s]) == RESULT_YES)
                    settled = True
            after, open_value = self._value(i, t)
            st["value"] = after
            r = (after - before) / MONEY_SCALE
            r -= c.inventory_penalty * abs(int(b.pos[i]["position"])) / COUNT_SCALE
            if int(b.pos[i]["n_trades"]) > trades_before:
                r -= c.trade_penalty
            r *= c.reward_scale
            b.rewards[i] = r
            st["ep_return"] += r
            is_trunc = (
                (not is_term) and c.max_episode_steps > 0 and st["steps"] >= c.max_episode_steps
            )
            b.terminated[i], b.truncated[i] = is_term, is_trunc
            if is_term or is_trunc:
                n_done += 1
                if is_trunc:
                    self._obs(i, t, open_value, b.term_obs[i])
                self._episode(i, after, open_value, settled)
                self._start(i)
                t = int(st["t"])
                open_value = 0
            self._obs(i, t, open_value, b.obs[i])
        self._sync_rng()
        return n_done


# ---------------------------------------------------------------------------- helpers

_STATE = ("state", "pos", "orders", "liq")
_OUT = ("obs", "rewards", "terminated", "truncated", "invalid")


def _bytes(a: np.ndarray) -> bytes:
    # field by field: the padding bytes of aligned records hold no value
    if a.dtype.names is None:
        return a.tobytes()
    return b"".join(np.ascontiguousarray(a[f]).tobytes() for f in a.dtype.names)


def _compare(k: int, fast: EnvBatch, ref: EnvBatch, n_done: int, h: list) -> None:
    for name in _STATE + _OUT:
        a, b = getattr(fast, name), getattr(ref, name)
        assert _bytes(a) == _bytes(b), f"step {k}: {name} differs\n{a}\n{b}"
        h[0].update(_bytes(a))
        h[1].update(_bytes(b))
    done = np.flatnonzero(fast.terminated | fast.truncated)
    assert len(done) == n_done
    for name in ("term_obs", "episodes"):
        a, b = getattr(fast, name)[done], getattr(ref, name)[done]
        assert _bytes(a) == _bytes(b), f"step {k}: {name} of {done} differs\n{a}\n{b}"
        h[0].update(_bytes(a))
        h[1].update(_bytes(b))


def _actions(rng: np.random.Generator, n: int, cfg: EnvConfig) -> np.ndarray:
    # mostly orders (like the benchmark), some holds
    kinds = rng.choice(N_ACTIONS, size=n, p=[0.2, 0.25, 0.15, 0.25, 0.15])
    if cfg.action_mode != ActionMode.MULTI:
        return kinds
    slip = rng.integers(0, len(cfg.slippage_choices), n)
    size = rng.integers(0, len(cfg.size_choices), n)
    return np.stack([kinds, slip, size], axis=1)


CONFIGS = {
    "default": EnvConfig(),
    "sampled-latency-mid-marks": EnvConfig(
        entry_latency_ms=(0, 3500), ack_latency_ms=(10, 2900), mark_mode=MarkMode.MID
    ),
    "random-start-truncation-shaping": EnvConfig(
        random_start=True,
        max_episode_steps=37,
        inventory_penalty=0.01,
        trade_penalty=0.02,
        reward_scale=3.0,
    ),
    "multi-sequential-lots-direct": EnvConfig(
        action_mode=ActionMode.MULTI,
        segment_order=SegmentOrder.SEQUENTIAL,
        count_lot=100,
        member_precision=1,
        size_choices=(50, 100, 700),
        slippage_choices=(0, 30, 990),
    ),
    "poor-account-big-orders": EnvConfig(
        start_cash=30_000, order_size=900, max_position=2_000, slippage_ticks=60
    ),
}


@pytest.fixture(scope="module")
def ds() -> Dataset:
    # thin books (a few contracts a level) so orders walk levels and consume liquidity
    d = random_walk_dataset(6, 70, seed=5, top_k=5, settled_fraction=0.5)
    thin = np.where(d.depth_qty > 0, np.maximum(d.depth_qty // 40, 1), 0)
    return d._replace(depth_qty=thin)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_vec_env_equals_the_reference_composition(ds: Dataset, name: str) -> None:
    cfg = CONFIGS[name]
    n, steps = 7, 260
    venv = KalshiVecEnv(ds, n_envs=n, config=cfg, seed=11)
    ref = ReferenceEnvs(ds, cfg, _seed_words([11 + i for i in range(n)]))
    assert venv.reset().tobytes() == ref.reset().tobytes()
    rng = np.random.default_rng(3)
    h = [hashlib.sha256(), hashlib.sha256()]
    n_eps = n_fills = 0
    for k in range(steps):
        acts = _actions(rng, n, cfg)
        _obs, _rew, dones, _infos = venv.step(acts)
        fast = venv.batch
        n_done = ref.step(fast._actions, fast._sizes, fast._slips)
        _compare(k, fast, ref.b, n_done, h)
        n_eps += int(dones.sum())
        n_fills += int(fast.episodes["trades"][dones].sum())
    assert h[0].hexdigest() == h[1].hexdigest()
    # the run exercised what it claims to: episodes ended, orders filled
    assert n_eps >= n and n_fills > 0


def test_gymnasium_env_equals_the_reference_composition(ds: Dataset) -> None:
    cfg = CONFIGS["sampled-latency-mid-marks"]
    env = KalshiTradingEnv(ds, cfg)
    obs, _ = env.reset(seed=5)
    word = seeding.np_random(5)[0].integers(1, 2**63, size=1, dtype=np.uint64)
    ref = ReferenceEnvs(ds, cfg, word)
    assert obs.tobytes() == ref.reset()[0].tobytes()
    rng = np.random.default_rng(8)
    h = [hashlib.sha256(), hashlib.sha256()]
    ended = 0
    for k in range(400):
        a = int(_actions(rng, 1, cfg)[0])
        obs, rew, term, trunc, _info = env.step(a)
        fast = env._batch
        ref.step(fast._actions, fast._sizes, fast._slips)
        _compare(k, fast, ref.b, int(term or trunc), h)
        want = ref.b.term_obs[0] if (term or trunc) else ref.b.obs[0]
        assert obs.tobytes() == want.tobytes()
        assert np.float32(rew) == ref.b.rewards[0]
        if term or trunc:
            ended += 1
            obs, _ = env.reset()  # continues with the episode the kernel already started
            assert obs.tobytes() == ref.b.obs[0].tobytes()
    assert h[0].hexdigest() == h[1].hexdigest()
    assert ended >= 3
