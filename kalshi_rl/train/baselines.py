"""Rule-based policies to compare trained agents against (vectorised over envs).

Every policy maps a batch of observations [N, N_FEATURES] and action masks [N, 5] to
actions [N] (core.dtypes ACT_*); an action the mask forbids becomes hold.  They read the
observation by feature name (core.features tables), so they see exactly what agents see.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from core.dtypes import ACT_BUY_NO, ACT_BUY_YES, ACT_HOLD, ACT_SELL_NO, ACT_SELL_YES
from core.features import ACCOUNT_FEATURE_NAMES, MARKET_FEATURE_NAMES, N_MARKET_FEATURES

_YES_ASK = MARKET_FEATURE_NAMES.index("yes_ask")
_NO_ASK = MARKET_FEATURE_NAMES.index("no_ask")
_RET_20 = MARKET_FEATURE_NAMES.index("ret_20")
_POSITION = N_MARKET_FEATURES + ACCOUNT_FEATURE_NAMES.index("position")


class Policy(Protocol):
    """Anything that picks actions for a batch of envs."""

    name: str

    def act(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Actions int64 [N] for observations [N, F] and masks bool [N, 5]."""
        ...


def masked(actions: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``actions`` with every action the mask forbids replaced by hold."""
    ok = masks[np.arange(actions.shape[0]), actions]
    return np.where(ok, actions, ACT_HOLD).astype(np.int64)


class HoldPolicy:
    """Never trade (P&L 0: the floor every agent must beat)."""

    name = "hold"

    def act(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        return np.full(obs.shape[0], ACT_HOLD, dtype=np.int64)


class RandomPolicy:
    """Uniform over the valid actions (seeded)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        # pick the argmax of masked uniform noise: uniform over the allowed actions
        noise = self._rng.random(masks.shape)
        return np.argmax(np.where(masks, noise, -1.0), axis=1).astype(np.int64)


class CheaperSidePolicy:
    """Always buy the side with the lower ask (YES if tied) until the position limit."""

    name = "cheaper_side"

    def act(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        a = np.where(obs[:, _YES_ASK] <= obs[:, _NO_ASK], ACT_BUY_YES, ACT_BUY_NO)
        return masked(a, masks)


class MeanReversionPolicy:
    """Fade 20-step mid moves; close a position once the move has reverted.

    Args:
        threshold: |ret_20| (feature units: $0.10) that opens a position; 0.3 = 3 cents.
    """

    name = "mean_reversion"

    def __init__(self, threshold: float = 0.3) -> None:
        self.threshold = threshold

    def act(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        ret = obs[:, _RET_20]
        pos = obs[:, _POSITION]
        a = np.full(obs.shape[0], ACT_HOLD, dtype=np.int64)
        a[ret < -self.threshold] = ACT_BUY_YES  # fell: expect a rise
        a[ret > self.threshold] = ACT_BUY_NO  # rose: expect a fall
        a[(pos > 0) & (ret > 0)] = ACT_SELL_YES
        a[(pos < 0) & (ret < 0)] = ACT_SELL_NO
        return masked(a, masks)


class ModelPolicy:
    """A trained SB3 model (deterministic actions by default), masked like the rules.

    Args:
        model: an SB3 algorithm with ``predict``.
        name: label in reports.
    """

    def __init__(self, model: Any, name: str = "agent", deterministic: bool = True) -> None:
        self.model = model
        self.name = name
        self.deterministic = deterministic

    def act(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        actions, _ = self.model.predict(obs, deterministic=self.deterministic)
        return np.asarray(actions, dtype=np.int64).reshape(obs.shape[0])


def baseline_policies(seed: int = 0) -> list[Policy]:
    """The standard comparison set: hold, random, cheaper side, mean reversion."""
    return [HoldPolicy(), RandomPolicy(seed), CheaperSidePolicy(), MeanReversionPolicy()]
