"""core.policy: the Numba forward pass equals SB3's deterministic action and probabilities.

Tiny SB3 models are trained for a few hundred steps on the synthetic dataset env; the
observations are the ones the env produced while a random agent traded (recorded
observations, account features included).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, PPO

from core.dtypes import POLICY_ACT_TANH, POLICY_BAD_OBS, POLICY_OK
from core.features import N_FEATURES
from core.policy import FastPolicy, mlp_params
from kalshi_rl.env.config import ActionMode, EnvConfig
from kalshi_rl.env.synthetic import random_walk_dataset
from kalshi_rl.env.trading import KalshiTradingEnv
from kalshi_rl.env.vec import KalshiVecEnv
from kalshi_rl.errors import PolicyError
from kalshi_rl.trade.policy import TorchPolicy, export_mlp


def recorded_observations(cfg: EnvConfig, n: int = 400, seed: int = 3) -> np.ndarray:
    env = KalshiTradingEnv(random_walk_dataset(4, 150, seed=seed), cfg)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out = []
    for _ in range(n):
        out.append(obs)
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            obs, _ = env.reset()
    return np.asarray(out, dtype=np.float32)


def tiny(algo: Any, cfg: EnvConfig, **policy_kwargs: Any) -> Any:
    venv = KalshiVecEnv(random_walk_dataset(4, 150, seed=1), n_envs=4, config=cfg, seed=1)
    model = algo("MlpPolicy", venv, n_steps=32, seed=1, device="cpu", policy_kwargs=policy_kwargs)
    model.learn(256)
    return model


def torch_probs(model: Any, obs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        t, _ = model.policy.obs_to_tensor(obs)
        dist = model.policy.get_distribution(t).distribution
        parts = dist if isinstance(dist, list) else [dist]
        return np.concatenate([d.probs.numpy() for d in parts], axis=-1)


@pytest.mark.parametrize(
    ("algo", "mode", "kwargs"),
    [
        (PPO, ActionMode.DISCRETE, {"net_arch": [32, 32]}),
        (A2C, ActionMode.MULTI, {"net_arch": [16], "activation_fn": torch.nn.ReLU}),
        (PPO, ActionMode.DISCRETE, {"net_arch": []}),  # action head straight on the obs
    ],
)
def test_fast_path_equals_sb3_on_recorded_observations(
    algo: Any, mode: ActionMode, kwargs: dict[str, Any]
) -> None:
    cfg = EnvConfig(action_mode=mode)
    model = tiny(algo, cfg, **kwargs)
    obs = recorded_observations(cfg)
    fast = FastPolicy(export_mlp(model))
    want, _ = model.predict(obs, deterministic=True)
    want = np.asarray(want).reshape(len(obs), -1)
    probs = torch_probs(model, obs)
    for i, o in enumerate(obs):
        assert fast.decide(o) == POLICY_OK
        np.testing.assert_array_equal(fast.actions, want[i], err_msg=f"observation {i}")
        np.testing.assert_allclose(fast.probs, probs[i], rtol=1e-5, atol=1e-6)
    acts, pr, status = fast.decide_batch(obs)  # the batched kernel agrees with the single one
    assert np.all(status == POLICY_OK)
    np.testing.assert_array_equal(acts, want)
    np.testing.assert_allclose(pr, probs, rtol=1e-5, atol=1e-6)
    # the comparison is not trivial: the network's output depends on the observation
    assert np.ptp(probs, axis=0).max() > 1e-3


def test_torch_fallback_is_model_predict() -> None:
    cfg = EnvConfig()
    model = tiny(PPO, cfg, net_arch=[8])
    tp = TorchPolicy(model)
    obs = recorded_observations(cfg, n=50)
    for o in obs:
        assert tp.decide(o) == POLICY_OK
        a, _ = model.predict(o, deterministic=True)
        assert tp.actions[0] == int(a)
        np.testing.assert_allclose(tp.probs, torch_probs(model, o[None])[0], rtol=1e-6)
    bad = obs[0].copy()
    bad[3] = np.inf
    assert tp.decide(bad) == POLICY_BAD_OBS


def test_uncovered_architecture_is_refused_with_its_reason() -> None:
    model = tiny(PPO, EnvConfig(), net_arch=[8], activation_fn=torch.nn.ELU)
    with pytest.raises(PolicyError, match="ELU"):
        export_mlp(model)


def test_non_finite_observation_decides_nothing() -> None:
    rng = np.random.default_rng(0)
    p = mlp_params(
        [
            (rng.normal(size=(4, N_FEATURES)), rng.normal(size=4)),
            (rng.normal(size=(5, 4)), np.zeros(5)),
        ],
        POLICY_ACT_TANH,
        [5],
    )
    fast = FastPolicy(p)
    obs = rng.normal(size=N_FEATURES).astype(np.float32)
    assert fast.decide(obs) == POLICY_OK
    before = fast.actions.copy(), fast.probs.copy()
    obs[7] = np.nan
    assert fast.decide(obs) == POLICY_BAD_OBS
    np.testing.assert_array_equal(fast.actions, before[0])
    np.testing.assert_array_equal(fast.probs, before[1])
    with pytest.raises(ValueError, match="shape"):
        fast.decide(obs[:-1])


def test_hand_set_weights_give_the_expected_action() -> None:
    # one linear head that scores action k by obs[k]: argmax picks the largest input
    w = np.zeros((5, N_FEATURES))
    for k in range(5):
        w[k, k] = 1.0
    fast = FastPolicy(mlp_params([(w, np.zeros(5))], POLICY_ACT_TANH, [5]))
    obs = np.zeros(N_FEATURES, dtype=np.float32)
    obs[3] = 2.0
    assert fast.decide(obs) == POLICY_OK
    assert fast.actions[0] == 3
    e = np.exp(np.array([0, 0, 0, 2.0, 0]) - 2.0)
    np.testing.assert_allclose(fast.probs, e / e.sum())


@pytest.mark.parametrize(
    ("layers", "heads", "match"),
    [
        ([], [5], "at least"),
        ([(np.zeros((4, 3)), np.zeros(3))], [4], "b \\[out\\]"),
        ([(np.zeros((4, 3)), np.zeros(4)), (np.zeros((5, 5)), np.zeros(5))], [5], "takes 5"),
        ([(np.zeros((4, 3)), np.zeros(4))], [3], "sum to 4"),
        ([(np.full((4, 3), np.nan), np.zeros(4))], [4], "non-finite"),
    ],
)
def test_bad_weights_are_refused(layers: Any, heads: list[int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        mlp_params(layers, POLICY_ACT_TANH, heads)
