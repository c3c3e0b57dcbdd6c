"""The wave-1 env step kernel (main @ 660b374), for bench/bench_env.py only.

Kept so the engine-backed env is timed beside the old path in one run: no liquidity
consumption, one fee rounding per order, no collateral, no latency, mid marks.  Not used
by the project; do not import it from kalshi_rl.

Original docstring: THE step kernel of the trading envs: N envs stepped in one Numba call.

``KalshiVecEnv`` calls it with all its envs; ``KalshiTradingEnv`` is the n=1 case of the
same call.  It reads only preloaded dataset arrays (no I/O) and the per-env state arrays,
and uses ``core.fills`` for fills, fees, netting, marking and settlement and
``core.features.account_features`` for the account half of the observation, so the env
sees exactly what the live actor sees.

Time convention: an episode covers rows ``t0 .. seg_end-1`` of one segment.  The agent
acts at rows ``t0 .. seg_end-2`` against the depth of that row; after the step at
``seg_end-2`` the env stands on the segment's last row, which ends the episode:
settlement at ``seg_result`` if known, else mark-to-market at that row's mid.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from core.account import account_value, apply_fill, settle
from core.dataset import Dataset
from core.dtypes import (
    ACT_BUY_NO,
    ACT_BUY_YES,
    ACT_HOLD,
    ACT_SELL_NO,
    ACT_SELL_YES,
    COUNT_SCALE,
    ENV_STATE_DTYPE,
    EPISODE_DTYPE,
    MONEY_SCALE,
    N_ACTIONS,
    NO_PRICE,
    ORDER_BUY,
    ORDER_SELL,
    POSITION_DTYPE,
    PRICE_MAX,
    PRICE_MIN,
    RESULT_NO,
    RESULT_YES,
    SIDE_NO,
    SIDE_YES,
)
from core.features import N_FEATURES, N_MARKET_FEATURES, account_features
from core.matching import taker_fill_fee
from kalshi_rl.env.batch import check_dataset
from kalshi_rl.env.config import ActionMode, EnvConfig
from kalshi_rl.errors import EnvError

# Segment orders (mirrors kalshi_rl.env.config.SegmentOrder; kernels take plain ints).
ORDER_RANDOM = 0
ORDER_SEQUENTIAL = 1

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@njit(cache=True)
def rng_next(state: np.ndarray, i: int) -> np.uint64:
    """xorshift64* step of env ``i``'s generator (``state`` is ENV_STATE_DTYPE [N]).

    Returns:
        the next 64-bit output; the state is advanced in place.
    """
    x = state[i]["rng"]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    state[i]["rng"] = x
    return x * np.uint64(2685821657736338717)


@njit(cache=True)
def rng_below(state: np.ndarray, i: int, n: int) -> int:
    """Uniform integer in [0, n) from env ``i``'s generator (n >= 1)."""
    # the top 53 bits as a float in [0, 1): bias is negligible for n << 2**53
    u = (rng_next(state, i) >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    k = int(u * n)
    return k if k < n else n - 1


@njit(cache=True)
def write_obs(features, mid, t, pos, i, start_cash, out):
    """Observation of env ``i`` at row ``t``: dataset features[t] ++ account features.

    Args:
        features: float32 [T, N_MARKET_FEATURES].
        mid: float64 [T] YES-scale mid ticks.
        pos: POSITION_DTYPE [N]; env ``i``'s record is used.
        out: float32 [N_FEATURES] row to fill.
    """
    for j in range(N_MARKET_FEATURES):
        out[j] = features[t, j]
    mark = account_value(pos[i : i + 1], mid[t]) - pos[i]["cash"]
    account_features(pos[i : i + 1], mark, start_cash, out[N_MARKET_FEATURES:])


@njit(cache=True)
def action_ok(px, position, action, size, max_position):
    """Whether ``action`` of ``size`` count units is allowed at a book with bids ``px``.

    Sells are reduce-only (sell YES needs a YES position, sell NO a NO position); buys must
    stay within ``max_position`` and need a level on the ladder they consume (buying YES
    takes NO bids, buying NO takes YES bids).

    Returns:
        True if the action can be sent.
    """
    if action == ACT_HOLD:
        return True
    if action == ACT_BUY_YES:
        return position + size <= max_position and px[SIDE_NO, 0] != NO_PRICE
    if action == ACT_SELL_YES:
        return position > 0 and px[SIDE_YES, 0] != NO_PRICE
    if action == ACT_BUY_NO:
        return position - size >= -max_position and px[SIDE_YES, 0] != NO_PRICE
    if action == ACT_SELL_NO:
        return position < 0 and px[SIDE_NO, 0] != NO_PRICE
    return False


@njit(cache=True)
def write_masks(depth_px, t, pos, i, size, max_position, out):
    """Action mask row of env ``i`` at row ``t`` (out: bool [N_ACTIONS])."""
    px = depth_px[t]
    position = pos[i]["position"]
    for a in range(N_ACTIONS):
        out[a] = action_ok(px, position, a, size, max_position)


@njit(cache=True)
def execute(depth_px, depth_qty, t, pos, i, action, size, slip, max_position, fee_round):
    """Send env ``i``'s taker order for ``action`` against the depth at row ``t``.

    The limit is the touch price moved ``slip`` ticks against us; the fill walks the
    opposite ladder up to it and the taker fee is rounded once over the order's levels
    (``core.fills.taker_fill_fee``); netting is ``core.fills.apply_fill``.

    Returns:
        (filled count units, fee money); (0, 0) for hold or an empty fill.
    """
    px = depth_px[t]
    qty = depth_qty[t]
    position = pos[i]["position"]
    if action == ACT_BUY_YES:
        side, order = SIDE_YES, ORDER_BUY
        count = min(size, max_position - position)
        limit = min(PRICE_MAX - px[SIDE_NO, 0] + slip, PRICE_MAX)
    elif action == ACT_SELL_YES:
        side, order = SIDE_YES, ORDER_SELL
        count = min(size, position)
        limit = max(px[SIDE_YES, 0] - slip, PRICE_MIN)
    elif action == ACT_BUY_NO:
        side, order = SIDE_NO, ORDER_BUY
        count = min(size, max_position + position)
        limit = min(PRICE_MAX - px[SIDE_YES, 0] + slip, PRICE_MAX)
    elif action == ACT_SELL_NO:
        side, order = SIDE_NO, ORDER_SELL
        count = min(size, -position)
        limit = max(px[SIDE_NO, 0] - slip, PRICE_MIN)
    else:
        return 0, 0
    if count <= 0:
        return 0, 0
    filled, notional, fee = taker_fill_fee(px, qty, side, order, count, limit, fee_round)
    if filled <= 0:
        return 0, 0
    apply_fill(pos[i : i + 1], side, order, filled, notional, fee)
    return filled, fee


@njit(cache=True)
def start_episode(
    state,
    pos,
    i,
    eligible,
    seg_start,
    seg_end,
    cursor,
    seg_order,
    random_start,
    start_frac,
    start_cash,
):
    """Put env ``i`` at the start of a new episode: pick a segment, flat account.

    Args:
        eligible: int64 [E] segments with at least 2 rows.
        cursor: int64 [1] shared next-segment index for SEQUENTIAL order.
    """
    n = eligible.shape[0]
    if seg_order == ORDER_SEQUENTIAL:
        s = eligible[cursor[0] % n]
        cursor[0] += 1
    else:
        s = eligible[rng_below(state, i, n)]
    t0 = seg_start[s]
    if random_start:
        span = int((seg_end[s] - 1 - seg_start[s]) * start_frac)
        if span > 1:
            t0 += rng_below(state, i, span)
    state[i]["seg"] = s
    state[i]["t"] = t0
    state[i]["steps"] = 0
    state[i]["ep_return"] = 0.0
    state[i]["n_invalid"] = 0
    p = pos[i]
    p["position"] = 0
    p["cost_basis"] = 0
    p["cash"] = start_cash
    p["realized_pnl"] = 0
    p["fees_paid"] = 0
    p["n_trades"] = 0
    p["volume"] = 0


@njit(cache=True)
def reset_envs(
    state,
    pos,
    eligible,
    seg_start,
    seg_end,
    cursor,
    seg_order,
    random_start,
    start_frac,
    start_cash,
    features,
    mid,
    depth_px,
    mask_size,
    max_position,
    obs,
    masks,
):
    """Start a new episode in every env and write first observations and masks."""
    for i in range(state.shape[0]):
        start_episode(
            state,
            pos,
            i,
            eligible,
            seg_start,
            seg_end,
            cursor,
            seg_order,
            random_start,
            start_frac,
            start_cash,
        )
        t = state[i]["t"]
        write_obs(features, mid, t, pos, i, start_cash, obs[i])
        write_masks(depth_px, t, pos, i, mask_size, max_position, masks[i])


@njit(cache=True)
def step_envs(
    actions,
    sizes,
    slips,
    state,
    pos,
    eligible,
    cursor,
    features,
    depth_px,
    depth_qty,
    mid,
    seg_start,
    seg_end,
    seg_result,
    seg_order,
    random_start,
    start_frac,
    start_cash,
    max_position,
    fee_round,
    reward_scale,
    inventory_penalty,
    trade_penalty,
    max_steps,
    mask_size,
    obs,
    rewards,
    terminated,
    truncated,
    term_obs,
    episodes,
    masks,
    invalid,
):
    """Step every env once; auto-reset the envs whose episode ended.

    Args:
        actions: int64 [N] ACT_* per env.
        sizes: int64 [N] order size per env (count units).
        slips: int64 [N] limit slippage per env (ticks).
        state: ENV_STATE_DTYPE [N]; pos: POSITION_DTYPE [N] (updated in place).
        eligible, cursor: see ``start_episode``.
        features, depth_px, depth_qty, mid, seg_start, seg_end, seg_result: the Dataset.
        reward_scale, inventory_penalty, trade_penalty: see EnvConfig.
        max_steps: truncate after this many steps (0 = never).
        mask_size: order size the returned masks are computed for.
        obs: float32 [N, N_FEATURES] out: next observation (first of the new episode for
            envs that ended); term_obs: same shape, the final observation of ended episodes.
        rewards: float32 [N] out; terminated, truncated, invalid: uint8 [N] out.
        episodes: EPISODE_DTYPE [N] out, valid where terminated or truncated.
        masks: bool [N, N_ACTIONS] out, for the returned observation.

    Returns:
        number of episodes that ended in this step, or -1 (nothing stepped) when an
        action is outside 0..N_ACTIONS-1.
    """
    for i in range(actions.shape[0]):
        if actions[i] < 0 or actions[i] >= N_ACTIONS:
            return -1
    n_done = 0
    for i in range(actions.shape[0]):
        t = state[i]["t"]
        yes_mid = mid[t]
        before = account_value(pos[i : i + 1], yes_mid)
        a = actions[i]
        size = sizes[i]
        bad = not action_ok(depth_px[t], pos[i]["position"], a, size, max_position)
        invalid[i] = bad
        filled = 0
        if bad:
            state[i]["n_invalid"] += 1
        elif a != ACT_HOLD:
            filled, _fee = execute(
                depth_px, depth_qty, t, pos, i, a, size, slips[i], max_position, fee_round
            )
        t += 1
        state[i]["t"] = t
        state[i]["steps"] += 1
        s = state[i]["seg"]
        is_term = t >= seg_end[s] - 1
        settled = False
        if is_term and seg_result[s] >= RESULT_NO:  # known: RESULT_NO or RESULT_YES
            settle(pos[i : i + 1], seg_result[s] == RESULT_YES)
            settled = True
        after = account_value(pos[i : i + 1], mid[t])
        r = (after - before) / MONEY_SCALE
        r -= inventory_penalty * abs(pos[i]["position"]) / COUNT_SCALE  # per contract held
        if filled > 0:
            r -= trade_penalty
        r *= reward_scale
        rewards[i] = r
        state[i]["ep_return"] += r
        is_trunc = (not is_term) and max_steps > 0 and state[i]["steps"] >= max_steps
        terminated[i] = is_term
        truncated[i] = is_trunc
        if is_term or is_trunc:
            n_done += 1
            write_obs(features, mid, t, pos, i, start_cash, term_obs[i])
            ep = episodes[i]
            ep["ret"] = state[i]["ep_return"]
            ep["length"] = state[i]["steps"]
            ep["pnl"] = after - start_cash
            ep["fees"] = pos[i]["fees_paid"]
            ep["trades"] = pos[i]["n_trades"]
            ep["n_invalid"] = state[i]["n_invalid"]
            ep["seg"] = s
            ep["settled"] = settled
            start_episode(
                state,
                pos,
                i,
                eligible,
                seg_start,
                seg_end,
                cursor,
                seg_order,
                random_start,
                start_frac,
                start_cash,
            )
            t = state[i]["t"]
        write_obs(features, mid, t, pos, i, start_cash, obs[i])
        write_masks(depth_px, t, pos, i, mask_size, max_position, masks[i])
    return n_done


# ----------------------------------------------------------------------------- batch


class LegacyEnvBatch:
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
        self.mid = np.ascontiguousarray(dataset.mid, dtype=np.float64)
        self.seg_start = np.ascontiguousarray(dataset.seg_start, dtype=np.int64)
        self.seg_end = np.ascontiguousarray(dataset.seg_end, dtype=np.int64)
        self.seg_result = np.ascontiguousarray(dataset.seg_result, dtype=np.int8)
        self.state = np.zeros(n, dtype=ENV_STATE_DTYPE)
        self.pos = np.zeros(n, dtype=POSITION_DTYPE)
        self.cursor = np.zeros(1, dtype=np.int64)
        self.obs = np.zeros((n, N_FEATURES), dtype=np.float32)
        self.term_obs = np.zeros((n, N_FEATURES), dtype=np.float32)
        self.rewards = np.zeros(n, dtype=np.float32)
        self.terminated = np.zeros(n, dtype=np.uint8)
        self.truncated = np.zeros(n, dtype=np.uint8)
        self.invalid = np.zeros(n, dtype=np.uint8)
        self.episodes = np.zeros(n, dtype=EPISODE_DTYPE)
        self.masks = np.ones((n, N_ACTIONS), dtype=np.bool_)
        self._actions = np.zeros(n, dtype=np.int64)
        self._sizes = np.full(n, config.order_size, dtype=np.int64)
        self._slips = np.full(n, config.slippage_ticks, dtype=np.int64)
        multi = config.action_mode == ActionMode.MULTI
        self._slip_choices = np.asarray(config.slippage_choices, dtype=np.int64)
        self._size_choices = np.asarray(config.size_choices, dtype=np.int64)
        self.mask_size = int(self._size_choices.min()) if multi else config.order_size
        self._ready = False

    def seed(self, seeds: np.ndarray) -> None:
        """Seed every env's generator (uint64 [n], zeros are replaced: xorshift needs != 0)."""
        seeds = np.asarray(seeds, dtype=np.uint64).reshape(self.n)
        self.state["rng"] = np.where(seeds == 0, np.uint64(0x9E3779B97F4A7C15), seeds)
        self.cursor[0] = 0

    def reset(self) -> np.ndarray:
        """Start a new episode in every env. Returns the observations [n, N_FEATURES]."""
        c = self.config
        reset_envs(
            self.state,
            self.pos,
            self.eligible,
            self.seg_start,
            self.seg_end,
            self.cursor,
            int(c.segment_order),
            c.random_start,
            c.start_fraction,
            c.start_cash,
            self.features,
            self.mid,
            self.depth_px,
            self.mask_size,
            c.max_position,
            self.obs,
            self.masks,
        )
        self._ready = True
        return self.obs

    def set_actions(self, actions: np.ndarray) -> None:
        """Decode ``actions`` ([n] ACT_* or [n, 3] in MULTI mode) into the kernel's inputs.

        Action kinds are range-checked by the kernel (``step``); MULTI indices here.

        Raises:
            EnvError: wrong shape or a MULTI index out of range.
        """
        a = actions if isinstance(actions, np.ndarray) else np.asarray(actions)
        try:
            if self.config.action_mode != ActionMode.MULTI:
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
        c = self.config
        n_done = step_envs(
            self._actions,
            self._sizes,
            self._slips,
            self.state,
            self.pos,
            self.eligible,
            self.cursor,
            self.features,
            self.depth_px,
            self.depth_qty,
            self.mid,
            self.seg_start,
            self.seg_end,
            self.seg_result,
            int(c.segment_order),
            c.random_start,
            c.start_fraction,
            c.start_cash,
            c.max_position,
            1,
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
            self.masks,
            self.invalid,
        )
        if n_done < 0:
            raise EnvError(f"actions must be in 0..{N_ACTIONS - 1}, got {self._actions}")
        return int(n_done)
