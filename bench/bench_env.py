"""Env throughput: the Numba ``KalshiVecEnv`` vs SB3 ``DummyVecEnv`` over plain-Python envs.

Same synthetic data, same random actions, no policy.  Groups pair ours with the baselines
per ``n_envs``:

* ``numba_vec``      -- KalshiVecEnv: all envs in one kernel call, on the core engine
  (liquidity consumption, Kalshi fees + balance rounding, collateral, latency, liquidation
  marks).
* ``numba_vec_wave1`` -- the same VecEnv over the wave-1 step kernel (``legacy_env.py``:
  no consumption, one fee rounding per order, no collateral/latency, mid marks): the cost
  of the engine, measured beside it in one run.
* ``dummy_gym_env``  -- DummyVecEnv over KalshiTradingEnv (n=1 kernel per env per step).
* ``dummy_python``   -- DummyVecEnv over ``PlainPythonEnv`` (fills/fees/accounting in plain
  Python over the same arrays: the way an env is usually first written).

Run: ``pytest bench/bench_env.py --benchmark-min-rounds=3 --benchmark-max-time=0.2``
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv

from core.dataset import Dataset
from core.features import N_FEATURES, N_MARKET_FEATURES
from kalshi_rl.env.synthetic import random_walk_dataset
from kalshi_rl.env.trading import KalshiTradingEnv
from kalshi_rl.env.vec import KalshiVecEnv

try:  # bench/ is not a package; pytest's importlib mode does not put it on sys.path
    from legacy_env import LegacyEnvBatch
except ImportError:  # pragma: no cover - run from the repo root
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from legacy_env import LegacyEnvBatch

STEPS = 64  # vec steps per timed call


class PlainPythonEnv(gym.Env[np.ndarray, int]):
    """A straightforward Python env with the same actions/rewards (baseline only)."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self.observation_space = spaces.Box(-1e6, 1e6, (N_FEATURES,), np.float32)
        self.action_space = spaces.Discrete(5)
        self.size, self.slip, self.max_pos, self.start_cash = 100, 20, 1000, 10_000_000

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.seg = int(self.np_random.integers(self.ds.n_segments))
        self.t = int(self.ds.seg_start[self.seg])
        self.position, self.cash, self.fees = 0, self.start_cash, 0
        return self._obs(), {}

    def _value(self) -> float:
        m = float(self.ds.mid[self.t])
        mark = self.position * m if self.position >= 0 else -self.position * (1000 - m)
        return self.cash + mark / 10

    def _obs(self) -> np.ndarray:
        obs = np.zeros(N_FEATURES, dtype=np.float32)
        obs[:N_MARKET_FEATURES] = self.ds.features[self.t]
        obs[N_MARKET_FEATURES] = self.position / 1000
        obs[N_MARKET_FEATURES + 1] = self.cash / self.start_cash - 1
        return obs

    def _fill(self, ladder: int, buy: bool, count: int, limit: int) -> tuple[int, int, int]:
        px, qty = self.ds.depth_px[self.t], self.ds.depth_qty[self.t]
        left, notional, raw = count, 0, 0
        for i in range(px.shape[1]):
            lp = int(px[ladder, i])
            if left <= 0 or lp < 0:
                break
            price = 1000 - lp if buy else lp
            if (buy and price > limit) or (not buy and price < limit):
                break
            take = min(left, int(qty[ladder, i]))
            notional += take * price
            raw += take * price * (1000 - price)
            left -= take
        fee = -(-raw * 7 // (100 * 100_000 * 10)) if raw else 0
        return count - left, notional, fee

    def step(self, action: int) -> Any:
        before = self._value()
        px = self.ds.depth_px[self.t]
        a = int(action)
        if a == 1 and px[1, 0] >= 0 and self.position + self.size <= self.max_pos:
            f, n, fee = self._fill(1, True, self.size, 1000 - int(px[1, 0]) + self.slip)
            self.position += f
            self.cash -= -(-n // 10) + fee
        elif a == 2 and self.position > 0 and px[0, 0] >= 0:
            f, n, fee = self._fill(0, False, min(self.size, self.position), int(px[0, 0]) - 20)
            self.position -= f
            self.cash += n // 10 - fee
        elif a == 3 and px[0, 0] >= 0 and self.position - self.size >= -self.max_pos:
            f, n, fee = self._fill(0, True, self.size, 1000 - int(px[0, 0]) + self.slip)
            self.position -= f
            self.cash -= -(-n // 10) + fee
        elif a == 4 and self.position < 0 and px[1, 0] >= 0:
            f, n, fee = self._fill(1, False, min(self.size, -self.position), int(px[1, 0]) - 20)
            self.position += f
            self.cash += n // 10 - fee
        self.t += 1
        term = self.t >= self.ds.seg_end[self.seg] - 1
        reward = (self._value() - before) / 10_000
        return self._obs(), reward, term, False, {}


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return random_walk_dataset(16, 500, seed=0)


def _run(venv: Any, actions: np.ndarray) -> None:
    for k in range(STEPS):
        venv.step(actions[k])


def _actions(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 5, (STEPS, n))


@pytest.mark.parametrize("n_envs", [1, 8, 64])
def test_numba_vec(benchmark: Any, ds: Dataset, n_envs: int) -> None:
    benchmark.group = f"env-steps n_envs={n_envs}"
    venv = KalshiVecEnv(ds, n_envs=n_envs, seed=0)
    _time_steps(benchmark, venv, n_envs)


@pytest.mark.parametrize("n_envs", [1, 8, 64])
def test_numba_vec_wave1(benchmark: Any, ds: Dataset, n_envs: int) -> None:
    benchmark.group = f"env-steps n_envs={n_envs}"
    venv = KalshiVecEnv(ds, n_envs=n_envs, seed=0)
    old = LegacyEnvBatch(ds, venv.config, n_envs)
    old.seed(np.arange(1, n_envs + 1, dtype=np.uint64))
    venv.batch = old  # type: ignore[assignment]  # same VecEnv facade, wave-1 kernel
    _time_steps(benchmark, venv, n_envs)


def _time_steps(benchmark: Any, venv: Any, n_envs: int) -> None:
    """Warm up (JIT, caches), then time STEPS vec steps of pre-drawn actions."""
    venv.reset()
    acts = _actions(n_envs)
    _run(venv, acts)
    benchmark(_run, venv, acts)
    benchmark.extra_info["env_steps_per_s"] = STEPS * n_envs / benchmark.stats.stats.mean


@pytest.mark.parametrize("n_envs", [1, 8, 64])
def test_dummy_gym_env(benchmark: Any, ds: Dataset, n_envs: int) -> None:
    benchmark.group = f"env-steps n_envs={n_envs}"
    venv = DummyVecEnv([lambda: KalshiTradingEnv(ds) for _ in range(n_envs)])
    venv.seed(0)
    _time_steps(benchmark, venv, n_envs)


@pytest.mark.parametrize("n_envs", [1, 8, 64])
def test_dummy_python(benchmark: Any, ds: Dataset, n_envs: int) -> None:
    benchmark.group = f"env-steps n_envs={n_envs}"
    venv = DummyVecEnv([lambda: PlainPythonEnv(ds) for _ in range(n_envs)])
    venv.seed(0)
    _time_steps(benchmark, venv, n_envs)
