"""``KalshiVecEnv``: N trading envs stepped by one Numba call, as an SB3 ``VecEnv``.

Same kernel as ``KalshiTradingEnv`` (which is its n=1 case).  Auto-resets as SB3 expects:
a finished env's final observation is in ``infos[i]["terminal_observation"]`` and the
returned observation is the first of its next episode; ``infos[i]["episode"]`` carries
``r`` (return), ``l`` (length) and ``t`` (seconds since construction) like ``Monitor``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from core.dataset import Dataset
from kalshi_rl.env.batch import EnvBatch
from kalshi_rl.env.config import EnvConfig
from kalshi_rl.env.trading import action_space, episode_info, observation_space
from kalshi_rl.errors import EnvError


def _seed_words(seeds: Sequence[int | None]) -> np.ndarray:
    """One uint64 generator seed per env from integer seeds (SeedSequence-mixed)."""
    out = np.empty(len(seeds), dtype=np.uint64)
    for i, s in enumerate(seeds):
        out[i] = np.random.SeedSequence(s).generate_state(1, np.uint64)[0]
    return out


class KalshiVecEnv(VecEnv):
    """``n_envs`` independent agents, each trading its own segment, in one kernel call.

    Args:
        dataset: preloaded decision points (used in place, no I/O in reset/step).
        n_envs: number of envs.
        config: env settings (see EnvConfig); defaults to ``EnvConfig()``.
        seed: base seed; env ``i`` uses ``seed + i`` (SB3 convention). ``VecEnv.seed``
            overrides it for the next reset.
    """

    def __init__(
        self,
        dataset: Dataset,
        n_envs: int = 64,
        config: EnvConfig | None = None,
        seed: int | None = 0,
    ) -> None:
        self.config = config or EnvConfig()
        self.batch = EnvBatch(dataset, self.config, n_envs)
        self.render_mode = None
        super().__init__(n_envs, observation_space(), action_space(self.config))
        if seed is not None:
            self.seed(seed)
        self._actions: np.ndarray | None = None
        self._t0 = time.perf_counter()
        self._reset_once = False

    # ------------------------------------------------------------------ VecEnv API
    def reset(self) -> np.ndarray:
        if self._seeds[0] is not None or not self._reset_once:
            # no seed given: fresh OS entropy (SeedSequence(None)), like gymnasium envs
            seeds = list(self._seeds)
            self.batch.seed(_seed_words(seeds))
        self._reset_seeds()
        self._reset_options()
        self._reset_once = True
        obs = self.batch.reset()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs.copy()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise EnvError("step_wait() called without step_async(actions)")
        b = self.batch
        n_done = b.step(self._actions)
        self._actions = None
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        dones = (b.terminated | b.truncated).astype(bool)
        if n_done:
            now = round(time.perf_counter() - self._t0, 6)
            for i in np.flatnonzero(dones):
                ep = b.episodes[i]
                info = infos[i]
                info["terminal_observation"] = b.term_obs[i].copy()
                info["TimeLimit.truncated"] = bool(b.truncated[i]) and not b.terminated[i]
                info["episode"] = {"r": float(ep["ret"]), "l": int(ep["length"]), "t": now}
                info.update(episode_info(ep))
        return b.obs.copy(), b.rewards.copy(), dones, infos

    def close(self) -> None:
        return None

    def action_masks(self) -> np.ndarray:
        """bool [n_envs, N_ACTIONS]: valid actions of every env at its current state."""
        return self.batch.masks.copy()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self, attr_name) for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise EnvError(f"KalshiVecEnv attributes are fixed; cannot set {attr_name!r}")

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        idx = list(self._indices(indices))
        if method_name == "action_masks":
            return [self.batch.masks[i].copy() for i in idx]
        raise EnvError(f"KalshiVecEnv has no per-env method {method_name!r}")

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper[Any, Any, Any, Any]], indices: VecEnvIndices = None
    ) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def _indices(self, indices: VecEnvIndices) -> Iterable[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return indices
