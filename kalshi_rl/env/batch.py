"""``EnvBatch``: the preloaded arrays and state of N envs behind one step kernel.

Both ``KalshiTradingEnv`` (N = 1) and ``KalshiVecEnv`` (N envs) are thin facades over it:
it validates the dataset and actions at the edge, owns every buffer the kernel writes, and
calls ``kernels.reset_envs`` / ``kernels.step_envs``.  No I/O after construction.
"""

from __future__ import annotations

import numpy as np

from core.dataset import Dataset, validate
from core.dtypes import (
    ENV_STATE_DTYPE,
    EPISODE_DTYPE,
    FILL_DTYPE,
    N_ACTIONS,
    ORDER_DTYPE,
    POSITION_DTYPE,
)
from core.features import N_FEATURES, N_MARKET_FEATURES
from core.fees import fee_schedule
from core.latency import latency_model
from core.liquidity import new_liquidity
from kalshi_rl.env import kernels
from kalshi_rl.env.config import ActionMode, EnvConfig
from kalshi_rl.errors import EnvError


def check_dataset(ds: Dataset) -> np.ndarray:
    """Validate ``ds`` for the envs; return the eligible segments (>= 2 rows).

    Raises:
        EnvError: naming what is wrong.
    """
    problems = validate(ds)
    if problems:
        raise EnvError("dataset is inconsistent: " + "; ".join(problems))
    if ds.features.ndim != 2 or ds.features.shape[1] != N_MARKET_FEATURES:
        raise EnvError(
            f"dataset features have shape {ds.features.shape}, expected [T, {N_MARKET_FEATURES}]"
        )
    if ds.top_k < 1:
        raise EnvError("dataset depth has no levels (K = 0)")
    if ds.ts.ndim != 1 or ds.ts.shape[0] != ds.n_rows:
        raise EnvError(f"dataset ts must be [T={ds.n_rows}], got {ds.ts.shape}")
    eligible = np.flatnonzero(ds.seg_end - ds.seg_start >= 2).astype(np.int64)
    if eligible.size == 0:
        raise EnvError(f"dataset has no segment with >= 2 rows ({ds.n_segments} segments)")
    return eligible


def monotone_ts(ds: Dataset) -> np.ndarray:
    """The decision times latency runs on: ``ds.ts`` made non-decreasing within each segment.

    Segments of different markets overlap in time (rows are grouped by segment), and a
    recorded snapshot carries its receive time (Kalshi's carry no exchange time), which can
    lie after the exchange times of the deltas that follow it; latency must never see time
    run backwards, so each row takes the latest time seen so far in its segment.
    """
    ts = np.ascontiguousarray(ds.ts, dtype=np.int64).copy()
    for a, b in zip(ds.seg_start.tolist(), ds.seg_end.tolist(), strict=True):
        ts[a:b] = np.maximum.accumulate(ts[a:b])
    return ts


class EnvBatch:
    """State and buffers of ``n`` envs over one dataset.

    Args:
        dataset: decision points (see core.dataset); arrays are used in place (read-only).
        config: the env settings.
        n: number of envs stepped together.
    """

    def __init__(self, dataset: Dataset, config: EnvConfig, n: int) -> None:
        if n < 1:
            raise EnvError(f"number of envs must be >= 1, got {n}")
        self.eligible = check_dataset(dataset)
        self.config = config
        self.n = n
        self.features = np.ascontiguousarray(dataset.features, dtype=np.float32)
        self.depth_px = np.ascontiguousarray(dataset.depth_px, dtype=np.int16)
        self.depth_qty = np.ascontiguousarray(dataset.depth_qty, dtype=np.int64)
        self.ts = monotone_ts(dataset)
        self.seg_start = np.ascontiguousarray(dataset.seg_start, dtype=np.int64)
        self.seg_end = np.ascontiguousarray(dataset.seg_end, dtype=np.int64)
        self.seg_result = np.ascontiguousarray(dataset.seg_result, dtype=np.int8)
        self.state = np.zeros(n, dtype=ENV_STATE_DTYPE)
        self.pos = np.zeros(n, dtype=POSITION_DTYPE)
        self.orders = np.zeros(n, dtype=ORDER_DTYPE)
        self.liq = new_liquidity(n)
        self.fees = fee_schedule(maker_fees=True, precision=config.member_precision)
        self.latency = latency_model(config.entry_latency_ms, config.ack_latency_ms)
        self._fills = np.zeros(max(self.depth_px.shape[2], 1), dtype=FILL_DTYPE)
        self.cursor = np.zeros(1, dtype=np.int64)
        self.obs = np.zeros((n, N_FEATURES), dtype=np.float32)
        self.term_obs = np.zeros((n, N_FEATURES), dtype=np.float32)
        self.rewards = np.zeros(n, dtype=np.float32)
        self.terminated = np.zeros(n, dtype=np.uint8)
        self.truncated = np.zeros(n, dtype=np.uint8)
        self.invalid = np.zeros(n, dtype=np.uint8)
        self.episodes = np.zeros(n, dtype=EPISODE_DTYPE)
        self._masks = np.ones((n, N_ACTIONS), dtype=np.bool_)
        self._masks_fresh = False
        self._actions = np.zeros(n, dtype=np.int64)
        self._sizes = np.full(n, config.order_size, dtype=np.int64)
        self._slips = np.full(n, config.slippage_ticks, dtype=np.int64)
        multi = config.action_mode == ActionMode.MULTI
        self._multi = multi
        self._slip_choices = np.asarray(config.slippage_choices, dtype=np.int64)
        self._size_choices = np.asarray(config.size_choices, dtype=np.int64)
        self.mask_size = int(self._size_choices.min()) if multi else config.order_size
        self._ready = False
        self._seeded = False  # seed() ran at least once
        self._started = False  # the kernel auto-started an episode nobody has reset into
        self._step_args = self._kernel_step_args()

    def _kernel_step_args(self) -> tuple[object, ...]:
        """``step_envs``'s arguments after the actions, built once (the config is frozen and
        every buffer is written in place): a step then pays no attribute lookups."""
        c = self.config
        return (
            self._sizes,
            self._slips,
            self.state,
            self.pos,
            self.orders,
            self.liq,
            self.eligible,
            self.cursor,
            self.features,
            self.depth_px,
            self.depth_qty,
            self.ts,
            self.seg_start,
            self.seg_end,
            self.seg_result,
            int(c.segment_order),
            c.random_start,
            c.start_fraction,
            c.start_cash,
            c.max_position,
            self.fees,
            self.latency,
            c.count_lot,
            int(c.mark_mode),
            c.reward_scale,
            c.inventory_penalty,
            c.trade_penalty,
            c.max_episode_steps,
            self.mask_size,
            self.obs,
            self.rewards,
            self.terminated,
            self.truncated,
            self.term_obs,
            self.episodes,
            self._masks,
            self.invalid,
            self._fills,
        )

    @property
    def masks(self) -> np.ndarray:
        """bool [n, N_ACTIONS]: valid actions at every env's current state (computed on demand)."""
        if not self._masks_fresh:
            kernels.masks_envs(
                self.state, self.pos, self.orders, self.liq, self.depth_px, self.depth_qty,
                self.ts, self.fees, self.mask_size, self.config.max_position, self._masks,
            )  # fmt: skip
            self._masks_fresh = True
        return self._masks

    def seed(self, seeds: np.ndarray, *, rewind: bool = True) -> None:
        """Seed every env's generator (uint64 [n], zeros are replaced: xorshift needs != 0).

        Args:
            rewind: also restart SEQUENTIAL order at the first segment (a new run); False
                keeps walking the segments where the last episode left off.
        """
        seeds = np.asarray(seeds, dtype=np.uint64).reshape(self.n)
        self.state["rng"] = np.where(seeds == 0, np.uint64(0x9E3779B97F4A7C15), seeds)
        if rewind:
            self.cursor[0] = 0

    def reset(self) -> np.ndarray:
        """Start a new episode in every env. Returns the observations [n, N_FEATURES]."""
        c = self.config
        kernels.reset_envs(
            self.state,
            self.pos,
            self.orders,
            self.liq,
            self.eligible,
            self.seg_start,
            self.seg_end,
            self.cursor,
            int(c.segment_order),
            c.random_start,
            c.start_fraction,
            c.start_cash,
            self.features,
            self.depth_px,
            self.depth_qty,
            self.fees,
            self.mask_size,
            c.max_position,
            self.obs,
            self._masks,
        )
        self._ready = True
        self._masks_fresh = False
        return self.obs

    def set_actions(self, actions: np.ndarray) -> None:
        """Decode ``actions`` ([n] ACT_* or [n, 3] in MULTI mode) into the kernel's inputs.

        Action kinds are range-checked by the kernel (``step``); MULTI indices here.

        Raises:
            EnvError: wrong shape or a MULTI index out of range.
        """
        a = actions if isinstance(actions, np.ndarray) else np.asarray(actions)
        try:
            if not self._multi:
                self._actions[:] = a.reshape(self.n)
                return
            a = a.reshape(self.n, 3)
        except ValueError as exc:
            raise EnvError(f"actions of shape {a.shape} do not fit {self.n} envs") from exc
        slip_i, size_i = a[:, 1], a[:, 2]
        if (slip_i < 0).any() or (slip_i >= self._slip_choices.size).any():
            raise EnvError(f"slippage index out of range: {slip_i}")
        if (size_i < 0).any() or (size_i >= self._size_choices.size).any():
            raise EnvError(f"size index out of range: {size_i}")
        self._slips[:] = self._slip_choices[slip_i]
        self._sizes[:] = self._size_choices[size_i]
        self._actions[:] = a[:, 0]

    def step(self, actions: np.ndarray) -> int:
        """Step all envs with ``actions``; buffers hold the results.

        Returns:
            number of episodes that ended.

        Raises:
            EnvError: an action out of range (no env was stepped).
        """
        assert self._ready, "step() called before reset(): call reset() first"
        self.set_actions(actions)
        n_done = kernels.step_envs(self._actions, *self._step_args)
        self._masks_fresh = False
        if n_done < 0:
            raise EnvError(f"actions must be in 0..{N_ACTIONS - 1}, got {self._actions}")
        return int(n_done)
