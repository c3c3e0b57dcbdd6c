"""KalshiVecEnv: SB3 VecEnv contract, auto-reset, seeding, n=1 equivalence with the env."""

from __future__ import annotations

import builtins
import socket

import numpy as np
import pytest
from stable_baselines3.common.vec_env import VecMonitor
from stable_baselines3.common.vec_env.util import obs_space_info  # noqa: F401 - import check

from core.dataset import Dataset
from core.dtypes import N_ACTIONS
from core.features import N_FEATURES
from kalshi_rl.env.batch import EnvBatch
from kalshi_rl.env.config import EnvConfig, SegmentOrder
from kalshi_rl.env.synthetic import random_walk_dataset
from kalshi_rl.env.vec import KalshiVecEnv, _seed_words
from kalshi_rl.errors import EnvError


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return random_walk_dataset(5, 60, seed=7)


def _random_actions(venv: KalshiVecEnv, rng: np.random.Generator) -> np.ndarray:
    masks = venv.action_masks()
    return np.array([rng.choice(np.flatnonzero(m)) for m in masks])


def test_reset_and_step_shapes(ds: Dataset) -> None:
    venv = KalshiVecEnv(ds, n_envs=4, seed=0)
    obs = venv.reset()
    assert obs.shape == (4, N_FEATURES) and obs.dtype == np.float32
    obs, rew, dones, infos = venv.step(np.zeros(4, dtype=np.int64))
    assert rew.shape == (4,) and dones.dtype == bool and len(infos) == 4


def test_auto_reset_gives_terminal_observation_and_episode(ds: Dataset) -> None:
    venv = KalshiVecEnv(ds, n_envs=3, seed=1)
    venv.reset()
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(200):
        obs, _rew, dones, infos = venv.step(_random_actions(venv, rng))
        for i in np.flatnonzero(dones):
            info = infos[i]
            term = info["terminal_observation"]
            assert term.shape == (N_FEATURES,)
            assert not np.array_equal(term, obs[i])  # next episode already started
            assert info["episode"]["l"] > 0
            assert info["episode"]["r"] == pytest.approx(info["pnl"], abs=1e-3)
            assert info["TimeLimit.truncated"] is False
            ended += 1
    assert ended >= 6


def test_truncation_flag_in_infos(ds: Dataset) -> None:
    venv = KalshiVecEnv(ds, n_envs=2, config=EnvConfig(max_episode_steps=5), seed=0)
    venv.reset()
    for _ in range(4):
        _, _, dones, _ = venv.step(np.zeros(2, dtype=np.int64))
        assert not dones.any()
    _, _, dones, infos = venv.step(np.zeros(2, dtype=np.int64))
    assert dones.all() and all(i["TimeLimit.truncated"] for i in infos)


def test_seeded_vec_rollouts_are_deterministic(ds: Dataset) -> None:
    def rollout(seed: int) -> tuple[np.ndarray, np.ndarray]:
        venv = KalshiVecEnv(ds, n_envs=8, config=EnvConfig(random_start=True), seed=seed)
        rng = np.random.default_rng(seed)
        obs_l, rew_l = [venv.reset()], []
        for _ in range(150):
            obs, rew, _, _ = venv.step(_random_actions(venv, rng))
            obs_l.append(obs)
            rew_l.append(rew)
        return np.array(obs_l), np.array(rew_l)

    a, b, c = rollout(3), rollout(3), rollout(4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_vec_seed_method_applies_at_next_reset(ds: Dataset) -> None:
    v1 = KalshiVecEnv(ds, n_envs=4, seed=None)
    v1.seed(42)
    v2 = KalshiVecEnv(ds, n_envs=4, seed=42)
    assert np.array_equal(v1.reset(), v2.reset())
    assert np.array_equal(v1.batch.state, v2.batch.state)


def test_each_env_is_the_n1_case_of_the_kernel(ds: Dataset) -> None:
    """Stepping 4 envs together == stepping each alone with the same seed and actions."""
    cfg = EnvConfig(random_start=True)
    venv = KalshiVecEnv(ds, n_envs=4, config=cfg, seed=9)
    venv.reset()
    words = _seed_words([9 + i for i in range(4)])
    singles = [EnvBatch(ds, cfg, 1) for _ in range(4)]
    for i, b in enumerate(singles):
        b.seed(words[i : i + 1])
        b.reset()
    rng = np.random.default_rng(1)
    for _ in range(120):
        acts = rng.integers(0, N_ACTIONS, 4)
        obs, rew, dones, _ = venv.step(acts)
        for i, b in enumerate(singles):
            b.step(acts[i : i + 1])
            assert np.array_equal(b.obs[0], obs[i])
            assert b.rewards[0] == rew[i]
            assert bool(b.terminated[0] | b.truncated[0]) == dones[i]


def test_env_method_and_get_attr(ds: Dataset) -> None:
    venv = KalshiVecEnv(ds, n_envs=3, seed=0)
    venv.reset()
    masks = venv.env_method("action_masks")
    assert len(masks) == 3 and masks[0].shape == (N_ACTIONS,)
    assert np.array_equal(np.stack(masks), venv.action_masks())
    assert venv.env_method("action_masks", indices=[1])[0].shape == (N_ACTIONS,)
    assert venv.get_attr("render_mode") == [None, None, None]
    assert venv.env_is_wrapped(VecMonitor) == [False, False, False]
    with pytest.raises(EnvError, match="no per-env method"):
        venv.env_method("explode")


def test_vec_monitor_wraps(ds: Dataset) -> None:
    venv = VecMonitor(KalshiVecEnv(ds, n_envs=2, seed=0))
    venv.reset()
    seen = 0
    for _ in range(130):
        _, _, dones, infos = venv.step(np.zeros(2, dtype=np.int64))
        seen += sum("episode" in infos[i] for i in np.flatnonzero(dones))
    assert seen >= 2


def test_sequential_order_visits_every_segment_once(ds: Dataset) -> None:
    venv = KalshiVecEnv(
        ds, n_envs=2, config=EnvConfig(segment_order=SegmentOrder.SEQUENTIAL), seed=0
    )
    venv.reset()
    segs = list(venv.batch.state["seg"])
    while len(segs) < ds.n_segments + 2:
        _, _, dones, _infos = venv.step(np.zeros(2, dtype=np.int64))
        segs.extend(int(venv.batch.state["seg"][i]) for i in np.flatnonzero(dones))
    assert segs[: ds.n_segments] == list(range(ds.n_segments))


def test_bad_action_shape_raises(ds: Dataset) -> None:
    venv = KalshiVecEnv(ds, n_envs=2, seed=0)
    venv.reset()
    with pytest.raises(EnvError, match="actions must be in"):
        venv.step(np.array([0, 9]))


def test_no_io_in_vec_step_loop(ds: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = KalshiVecEnv(ds, n_envs=16, seed=0)
    venv.reset()
    venv.step(np.ones(16, dtype=np.int64))

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("I/O attempted inside the vec env loop")

    monkeypatch.setattr(socket, "socket", forbidden)
    monkeypatch.setattr(builtins, "open", forbidden)
    rng = np.random.default_rng(0)
    venv.reset()
    for _ in range(300):
        venv.step(rng.integers(0, N_ACTIONS, 16))
    monkeypatch.undo()
