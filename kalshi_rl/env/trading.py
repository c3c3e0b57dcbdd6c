"""``KalshiTradingEnv``: one agent trading one recorded Kalshi book, a Gymnasium env.

It is the n=1 case of the vectorised step kernel (``kalshi_rl.env.kernels``): same fills,
fees, rewards and observation as ``KalshiVecEnv`` and the live actor.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from core.dataset import Dataset
from core.dtypes import MONEY_SCALE, N_ACTIONS
from core.features import N_FEATURES
from kalshi_rl.env.batch import EnvBatch
from kalshi_rl.env.config import ActionMode, EnvConfig

# Keys of the ``info`` dict (constant; the only free-form dict of the env).
INFO_ACTION_MASK = "action_mask"
INFO_INVALID = "invalid_action"
INFO_PNL = "pnl"  # dollars, at episode end
INFO_FEES = "fees"  # dollars, at episode end
INFO_TRADES = "trades"  # at episode end
INFO_SETTLED = "settled"  # at episode end
INFO_N_INVALID = "n_invalid"  # at episode end
# P&L split at episode end, dollars: pnl == pnl_trading + pnl_settlement + pnl_mark - fees
INFO_PNL_TRADING = "pnl_trading"  # realized P&L of closing trades, before fees
INFO_PNL_SETTLEMENT = "pnl_settlement"  # payouts - cost basis of settled contracts
INFO_PNL_MARK = "pnl_mark"  # end value of the open position - its cost basis
INFO_N_UNFILLED = "n_unfilled"  # orders sent that filled nothing

OBS_BOUND = 1e6


def observation_space() -> spaces.Box:
    """Box float32 [N_FEATURES] (+-OBS_BOUND): market then account features (core.features)."""
    # finite bounds: features are O(1) by construction (docs/features.md); inf bounds make
    # checkers warn and buy nothing
    return spaces.Box(low=-OBS_BOUND, high=OBS_BOUND, shape=(N_FEATURES,), dtype=np.float32)


def action_space(config: EnvConfig) -> spaces.Space[Any]:
    """Discrete(5), or MultiDiscrete([5, n_slippages, n_sizes]) in ActionMode.MULTI."""
    if config.action_mode == ActionMode.MULTI:
        return spaces.MultiDiscrete(
            [N_ACTIONS, len(config.slippage_choices), len(config.size_choices)]
        )
    return spaces.Discrete(N_ACTIONS)


def episode_info(ep: np.void) -> dict[str, Any]:
    """The end-of-episode entries of ``info`` from an EPISODE_DTYPE record."""
    return {
        INFO_PNL: float(ep["pnl"]) / MONEY_SCALE,
        INFO_FEES: float(ep["fees"]) / MONEY_SCALE,
        INFO_TRADES: int(ep["trades"]),
        INFO_SETTLED: bool(ep["settled"]),
        INFO_N_INVALID: int(ep["n_invalid"]),
        INFO_PNL_TRADING: float(ep["trading"]) / MONEY_SCALE,
        INFO_PNL_SETTLEMENT: float(ep["settlement"]) / MONEY_SCALE,
        INFO_PNL_MARK: float(ep["mark"]) / MONEY_SCALE,
        INFO_N_UNFILLED: int(ep["n_unfilled"]),
    }


class KalshiTradingEnv(gym.Env[np.ndarray, Any]):
    """Trade one market's recorded book with taker orders.

    ## Action Space
    ``Discrete(5)`` (core.dtypes ACT_*): 0 hold, 1 buy YES, 2 sell YES, 3 buy NO, 4 sell NO,
    each an immediate-or-cancel taker order of ``config.order_size`` count units whose limit
    is the best price still available moved ``config.slippage_ticks`` against us; the order
    walks the opposite ladder of the dataset's top-K depth up to that limit (partial fills)
    through the core engine (docs/engine.md): what it takes stays taken until the recorded
    book shows the level gone, fees and balance rounding are Kalshi's, cash covers cost plus
    fees (never negative), the order arrives after ``config.entry_latency_ms`` and the next
    one can go only after the acknowledgement.  Sells are reduce-only, buys stay within
    ``config.max_position``.  ``action_masks()`` tells which actions are valid now; an
    invalid chosen action runs as hold and is counted (``info["invalid_action"]``,
    ``info["n_invalid"]`` at episode end).
    With ``config.action_mode = ActionMode.MULTI`` the space is
    ``MultiDiscrete([5, len(slippage_choices), len(size_choices)])``: action kind, index of
    the limit offset in ticks, index of the size (count units).  Masks are then computed
    for the smallest size.

    ## Observation
    ``Box(-1e6, 1e6, (N_FEATURES,), float32)``: the dataset's market features at the current
    decision point followed by ``core.features.account_features`` of the account (the same
    kernel as the live actor's ``build_observation``).

    ## Rewards
    Change of account value (cash + the open position valued by ``config.mark_mode``:
    by default what it could be sold for now, walking the held side's bids; nothing bidding
    is worth nothing) in dollars over the step, net of fees, times ``config.reward_scale``;
    optional shaping: minus ``inventory_penalty`` per contract held and ``trade_penalty``
    per step with a fill.  At the episode's end the position is settled at the segment's
    result when known, else valued at the last row; ``info`` splits the P&L into
    ``pnl_trading + pnl_settlement + pnl_mark - fees``.

    ## Episode End
    ``terminated`` at the end of the segment; ``truncated`` after ``config.max_episode_steps``
    steps when that is > 0.

    Args:
        dataset: preloaded decision points (no I/O happens in reset/step).
        config: env settings; defaults to ``EnvConfig()``.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's contract

    def __init__(self, dataset: Dataset, config: EnvConfig | None = None) -> None:
        self.config = config or EnvConfig()
        self._batch = EnvBatch(dataset, self.config, 1)
        self.observation_space = observation_space()
        self.action_space = action_space(self.config)
        self.render_mode = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        b = self._batch
        if seed is None and b._started:
            # the kernel already started the next episode when the last one ended: use it,
            # so SEQUENTIAL order does not skip a segment and RANDOM stays one stream
            b._started = False
            b._ready = True
            return b.obs[0].copy(), {INFO_ACTION_MASK: b.masks[0].copy()}
        b.seed(
            self.np_random.integers(1, 2**63, size=1, dtype=np.uint64),
            rewind=seed is not None or not b._seeded,
        )
        b._seeded = True
        b._started = False
        obs = b.reset()
        return obs[0].copy(), {INFO_ACTION_MASK: b.masks[0].copy()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        assert self._batch._ready, "step() called before reset(): call reset() first"
        b = self._batch
        b.step(np.asarray(action).reshape(1, -1))
        terminated = bool(b.terminated[0])
        truncated = bool(b.truncated[0])
        info: dict[str, Any] = {INFO_INVALID: bool(b.invalid[0])}
        if terminated or truncated:
            # the kernel already started the next episode; gymnasium shows the final state
            obs = b.term_obs[0].copy()
            info.update(episode_info(b.episodes[0]))
            b._ready = False
            b._started = True
        else:
            obs = b.obs[0].copy()
            info[INFO_ACTION_MASK] = b.masks[0].copy()
        return obs, float(b.rewards[0]), terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """bool [N_ACTIONS]: which actions are valid at the current state (sb3-contrib API)."""
        return self._batch.masks[0].copy()
