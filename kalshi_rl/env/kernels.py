"""THE step kernel of the trading envs: N envs stepped in one Numba call.

``KalshiVecEnv`` calls it with all its envs; ``KalshiTradingEnv`` is the n=1 case of the
same call.  It reads only preloaded dataset arrays (no I/O) and the per-env state arrays.
Every order, fill, fee, position and valuation rule is the core engine's (docs/engine.md):
``core.orders`` (action -> order, masks), ``core.matching`` (taker walk with liquidity
consumption and collateral), ``core.fees`` (Kalshi's fees and balance rounding),
``core.account`` (netting, settlement, liquidation value), ``core.latency``; the
observation is ``core.features``.  So the env trades exactly as the paper client does.

Time convention: an episode covers rows ``t0 .. seg_end-1`` of one segment.  The agent
acts at rows ``t0 .. seg_end-2``; after the step at ``seg_end-2`` the env stands on the
segment's last row, which ends the episode: settlement at ``seg_result`` if known, else
the open position is valued at the last row (liquidation value by default).

Latency, in decision-point time over the dataset's ``ts`` (ms): an order sent at row t
reaches the exchange at ``ts[t] + entry`` and executes against the last row whose ts is
not later (the book as it stood then); until then it is in flight.  No lookahead: the env
learns that the order arrived only at the first row whose ts IS later (as live, where the
next book's time is not known in advance), so the fill is booked there, against the row
before, and shows from that row's observation on.  With a cadence coarser than the
latency the order executes against row t and shows at row t + 1; when several rows share
a millisecond, it executes against the last of them and shows at the first row after.
A segment that ends with the order still in flight (no row later than its arrival)
executes it against the last row after that row's observation (live: the actor executes
it when it learns that the segment ended, ``Actor._flush_pending``).  The agent can send
the next order only once the outcome is acknowledged (``+ ack``): until then masks allow
only hold.

The last row's observation (``term_obs``) is what the agent would see there; the
segment's end (an order in flight executed, settlement) comes after it and counts in the
last reward and the episode's P&L.

Liquidity consumption: per env, what its orders took stays taken until the recorded book
shows the level gone (``core.matching``); it is forgotten at a new episode.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from core.account import pnl_components, position_value, reset_position, settle
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
from core.features import N_MARKET_FEATURES, account_features
from core.latency import latency_sample
from core.liquidity import best_available, liquidity_clear, liquidity_refresh
from core.matching import take_ladder, taker_match
from core.orders import action_to_order, collateral_need, write_action_masks
from core.records import borrow

# Segment orders (mirrors kalshi_rl.env.config.SegmentOrder; kernels take plain ints).
ORDER_RANDOM = 0
ORDER_SEQUENTIAL = 1

_NEVER = np.iinfo(np.int64).max


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
def rng_uniform(state: np.ndarray, i: int) -> float:
    """Uniform float in [0, 1) from env ``i``'s generator (top 53 bits)."""
    return (rng_next(state, i) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def rng_below(state: np.ndarray, i: int, n: int) -> int:
    """Uniform integer in [0, n) from env ``i``'s generator (n >= 1)."""
    # bias is negligible for n << 2**53
    k = int(rng_uniform(state, i) * n)
    return k if k < n else n - 1


@njit(cache=True, inline="always")
def write_obs(features, t, pos, i, mark_value, start_cash, out):  # noqa: PLR0917
    """Observation of env ``i`` at row ``t``: dataset features[t] ++ account features.

    Args:
        features: float32 [T, N_MARKET_FEATURES].
        pos: POSITION_DTYPE [N]; env ``i``'s record is used.
        mark_value: money value of env ``i``'s open position at row ``t``.
        out: float32 [N_FEATURES] row to fill.
    """
    for j in range(N_MARKET_FEATURES):
        out[j] = features[t, j]
    account_features(pos[i], mark_value, start_cash, out[N_MARKET_FEATURES:])


@njit(cache=True, inline="always")
def _value(pos, i, px, qty, liq, fees, mark_mode):  # noqa: PLR0917
    # (account value, open position value) of env i against one book row, money
    if pos[i]["position"] == 0:
        return pos[i]["cash"], 0
    v = position_value(pos[i]["position"], px, qty, liq, fees, mark_mode)
    return pos[i]["cash"] + v, v


@njit(cache=True)
def start_episode(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    state,
    pos,
    orders,
    liq,
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
    """Put env ``i`` at the start of a new episode: pick a segment, flat account, no orders.

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
    state[i]["value"] = start_cash
    state[i]["busy_until"] = 0
    state[i]["n_unfilled"] = 0
    reset_position(pos[i], start_cash)
    orders[i]["status"] = ORD_CANCELED
    orders[i]["order_id"] = 0
    liquidity_clear(liq[i : i + 1])


@njit(cache=True, inline="always")
def _execute(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    state,
    orders,
    pos,
    i,
    depth_px,
    depth_qty,
    ts,
    t,
    liq,
    fees,
    lot,
    fills,
):
    # the in-flight order of env i reaches the book of row t; IOC: the rest is cancelled;
    # the next order may go once the outcome is acknowledged
    n = taker_match(
        orders[i], pos[i], depth_px[t], depth_qty[t],
        liq[i : i + 1], fees, lot, ts[t], fills,
    )  # fmt: skip
    if orders[i]["remaining"] > 0:
        orders[i]["status"] = ORD_CANCELED
    state[i]["busy_until"] = orders[i]["ack_ts"]
    if orders[i]["filled"] == 0:
        state[i]["n_unfilled"] += 1
    return n


@njit(cache=True, inline="always")
def _act(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    a,
    size,
    slip,
    state,
    pos,
    orders,
    liq,
    i,
    t,
    depth_px,
    depth_qty,
    ts,
    max_position,
    fees,
    lat,
):
    # env i acts at row t; returns True when the action was not allowed (it runs as hold).
    # An order sent goes in flight; the step executes it at the first row later than its
    # arrival (``step_envs``): nothing is known to have arrived at the decision's own row.
    if a == ACT_HOLD:
        return False
    # the rules of the masks (core.orders action_check), for the size actually sent
    if orders[i]["status"] == ORD_PENDING or ts[t] < state[i]["busy_until"]:
        return True
    position = pos[i]["position"]
    if (a == ACT_BUY_YES and position + size > max_position) or (
        a == ACT_BUY_NO and position - size < -max_position
    ):
        return True
    px = depth_px[t]
    qty = depth_qty[t]
    lq = liq[i : i + 1]
    side, act, limit, count, reason = action_to_order(
        a, position, size, max_position, slip, px, qty, lq
    )
    if reason != REJ_NONE or count <= 0:
        return True
    if act == ORDER_BUY:
        touch = limit - slip
        if limit >= PRICE_MAX:  # the limit was capped: find the touch again
            touch = PRICE_MAX - best_available(px, qty, lq, take_ladder(side, act))
        if collateral_need(position, side, act, touch, count, fees) > pos[i]["cash"]:
            return True
    _send(state, orders, i, t, side, act, limit, count, ts, lat)
    state[i]["busy_until"] = _NEVER
    return False


@njit(cache=True, inline="always")
def _send(state, orders, i, t, side, act, limit, count, ts, lat):  # noqa: PLR0917
    # stamp env i's IOC order (side, act, limit, count) sent at row t with its latency
    o = orders[i]
    o["order_id"] += 1
    o["side"] = side
    o["action"] = act
    o["price"] = limit
    o["count"] = count
    o["remaining"] = count
    o["filled"] = 0
    o["notional"] = 0
    o["fees"] = 0
    o["taker_fees"] = 0
    o["maker_fees"] = 0
    o["rounding_acc"] = 0
    o["tif"] = TIF_IOC
    r = lat[0]
    u_e = rng_uniform(state, i) if r["entry_max_ms"] > r["entry_min_ms"] else 0.0
    u_a = rng_uniform(state, i) if r["ack_max_ms"] > r["ack_min_ms"] else 0.0
    entry, ack = latency_sample(lat, u_e, u_a)
    o["ts"] = ts[t]
    o["active_ts"] = ts[t] + entry
    o["ack_ts"] = ts[t] + entry + ack
    o["status"] = ORD_PENDING
    return True


@njit(cache=True, inline="always")
def _arrived(orders, i, ts, t):
    # env i's order in flight reached the exchange before row t's time: row t is the first
    # row later than its arrival, so it met the book of row t - 1 (the last not later)
    return orders[i]["status"] == ORD_PENDING and ts[t] > orders[i]["active_ts"]


@njit(cache=True)
def _segment_end(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    state,
    pos,
    orders,
    liq,
    i,
    t,
    s,
    features,
    depth_px,
    depth_qty,
    ts,
    seg_result,
    start_cash,
    fees,
    lot,
    mark_mode,
    term_obs,
    fills,
):
    # env i stands on its segment's last row t: the observation there, as the agent sees
    # it, then the segment ends (an order still in flight, settlement); returns settled
    lq = liq[i : i + 1]
    _, open_value = _value(pos, i, depth_px[t], depth_qty[t], lq, fees, mark_mode)
    write_obs(features, t, pos, i, open_value, start_cash, term_obs[i])
    if orders[i]["status"] == ORD_PENDING:
        # no row later than its arrival: it meets the last book (live: the actor executes
        # it when the segment ends, Actor._flush_pending)
        _execute(state, orders, pos, i, depth_px, depth_qty, ts, t, liq, fees, lot, fills)
    if seg_result[s] >= RESULT_NO:  # known: RESULT_NO or RESULT_YES
        settle(pos[i], seg_result[s] == RESULT_YES)
        return True
    return False


@njit(cache=True)
def reset_envs(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    state,
    pos,
    orders,
    liq,
    eligible,
    seg_start,
    seg_end,
    cursor,
    seg_order,
    random_start,
    start_frac,
    start_cash,
    features,
    depth_px,
    depth_qty,
    fees,
    mask_size,
    max_position,
    obs,
    masks,
):
    """Start a new episode in every env and write first observations (masks: masks_envs)."""
    state, pos, orders, liq, obs = (
        borrow(state),
        borrow(pos),
        borrow(orders),
        borrow(liq),
        borrow(obs),
    )
    for i in range(state.shape[0]):
        start_episode(
            state, pos, orders, liq, i, eligible, seg_start, seg_end,
            cursor, seg_order, random_start, start_frac, start_cash,
        )  # fmt: skip
        t = state[i]["t"]
        write_obs(features, t, pos, i, 0, start_cash, obs[i])


@njit(cache=True)
def step_envs(  # noqa: PLR0917 -- the one step kernel, positional by design
    actions,
    sizes,
    slips,
    state,
    pos,
    orders,
    liq,
    eligible,
    cursor,
    features,
    depth_px,
    depth_qty,
    ts,
    seg_start,
    seg_end,
    seg_result,
    seg_order,
    random_start,
    start_frac,
    start_cash,
    max_position,
    fees,
    lat,
    lot,
    mark_mode,
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
    fills,
):
    """Step every env once; auto-reset the envs whose episode ended.

    Args:
        actions: int64 [N] ACT_* per env.
        sizes: int64 [N] order size per env (count units).
        slips: int64 [N] limit slippage per env (ticks).
        state: ENV_STATE_DTYPE [N]; pos: POSITION_DTYPE [N]; orders: ORDER_DTYPE [N] (each
            env's last / in-flight order); liq: LIQUIDITY_DTYPE [N] liquidity consumption
            (core.liquidity, updated).
        eligible, cursor: see ``start_episode``.
        features, depth_px, depth_qty, ts, seg_start, seg_end, seg_result: the Dataset.
        fees: FEE_DTYPE [1]; lat: LATENCY_DTYPE [1]; lot: count granularity of fills;
            mark_mode: MARK_LIQUIDATION / MARK_MID (core.account.position_value).
        reward_scale, inventory_penalty, trade_penalty: see EnvConfig.
        max_steps: truncate after this many steps (0 = never).
        mask_size: order size the returned masks are computed for.
        obs: float32 [N, N_FEATURES] out: next observation (first of the new episode for
            envs that ended); term_obs: same shape, the final observation of ended episodes.
        rewards: float32 [N] out; terminated, truncated, invalid: uint8 [N] out.
        episodes: EPISODE_DTYPE [N] out, valid where terminated or truncated.
        masks, mask_size: unused here (``masks_envs`` computes masks on demand); kept so
            the signature is stable.
        fills: FILL_DTYPE [K] scratch.

    Returns:
        number of episodes that ended in this step, or -1 (nothing stepped) when an
        action is outside 0..N_ACTIONS-1.
    """
    for i in range(actions.shape[0]):
        if actions[i] < 0 or actions[i] >= N_ACTIONS:
            return -1
    # views of borrowed arrays are not reference-counted (core.records.borrow)
    state, pos, orders, liq = borrow(state), borrow(pos), borrow(orders), borrow(liq)
    features, depth_px, depth_qty = borrow(features), borrow(depth_px), borrow(depth_qty)
    obs, term_obs, episodes, fills = borrow(obs), borrow(term_obs), borrow(episodes), borrow(fills)
    n_done = 0
    for i in range(actions.shape[0]):
        t = state[i]["t"]
        s = state[i]["seg"]
        seg_last = seg_end[s] - 1
        before = state[i]["value"]
        trades_before = pos[i]["n_trades"]
        bad = actions[i] != ACT_HOLD and _act(
            actions[i], sizes[i], slips[i], state, pos, orders, liq, i,
            t, depth_px, depth_qty, ts, max_position, fees, lat,
        )  # fmt: skip
        invalid[i] = bad
        if bad:
            state[i]["n_invalid"] += 1
        t += 1
        state[i]["t"] = t
        state[i]["steps"] += 1
        if _arrived(orders, i, ts, t):
            # it met row t - 1's book, with that row's consumption (not yet refreshed to
            # row t); the fill shows from row t on, where live learns it too
            _execute(
                state, orders, pos, i, depth_px, depth_qty, ts, t - 1, liq,
                fees, lot, fills,
            )  # fmt: skip
        px = depth_px[t]  # one view per row: views cost reference counting
        qty = depth_qty[t]
        lq = liq[i : i + 1]  # a slice: the engine writes its nested arrays through
        if liq[i]["n"][0] + liq[i]["n"][1] > 0:
            liquidity_refresh(px, qty, lq)
        is_term = t >= seg_last
        settled = False
        if is_term:  # once per episode: out of line, the loop stays small
            settled = _segment_end(
                state, pos, orders, liq, i, t, s, features, depth_px, depth_qty, ts,
                seg_result, start_cash, fees, lot, mark_mode, term_obs, fills,
            )  # fmt: skip
        after, open_value = _value(pos, i, px, qty, lq, fees, mark_mode)
        state[i]["value"] = after
        r = (after - before) / MONEY_SCALE
        r -= inventory_penalty * abs(pos[i]["position"]) / COUNT_SCALE  # per contract held
        if pos[i]["n_trades"] > trades_before:
            r -= trade_penalty
        r *= reward_scale
        rewards[i] = r
        state[i]["ep_return"] += r
        is_trunc = (not is_term) and max_steps > 0 and state[i]["steps"] >= max_steps
        terminated[i] = is_term
        truncated[i] = is_trunc
        if is_term or is_trunc:
            n_done += 1
            if is_trunc:
                write_obs(features, t, pos, i, open_value, start_cash, term_obs[i])
            _write_episode(episodes[i], state, pos, i, after, open_value, start_cash, settled)
            start_episode(
                state, pos, orders, liq, i, eligible, seg_start,
                seg_end, cursor, seg_order, random_start, start_frac, start_cash,
            )  # fmt: skip
            t = state[i]["t"]
            open_value = 0
            px = depth_px[t]
            qty = depth_qty[t]
        write_obs(features, t, pos, i, open_value, start_cash, obs[i])
    return n_done


@njit(cache=True)
def masks_envs(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    state, pos, orders, liq, depth_px, depth_qty, ts, fees, mask_size, max_position, masks
):
    """Action masks of every env at its current row (bool [N, N_ACTIONS] out).

    Computed on demand (``EnvBatch.masks``): the step kernel checks only the chosen
    action, with the same rules (core.orders), so training without masks does not pay
    for them.
    """
    liq, depth_px, depth_qty = borrow(liq), borrow(depth_px), borrow(depth_qty)
    for i in range(state.shape[0]):
        t = state[i]["t"]
        busy = orders[i]["status"] == ORD_PENDING or ts[t] < state[i]["busy_until"]
        write_action_masks(
            pos[i]["position"], pos[i]["cash"], mask_size, max_position, depth_px[t],
            depth_qty[t], liq[i : i + 1], fees, busy, masks[i],
        )  # fmt: skip


@njit(cache=True, inline="always")
def _write_episode(ep, state, pos, i, after, open_value, start_cash, settled):  # noqa: PLR0917
    ep["ret"] = state[i]["ep_return"]
    ep["length"] = state[i]["steps"]
    ep["pnl"] = after - start_cash
    trading, settlement, mark, fees = pnl_components(pos[i], open_value)
    ep["fees"] = fees
    ep["trading"] = trading
    ep["settlement"] = settlement
    ep["mark"] = mark
    ep["trades"] = pos[i]["n_trades"]
    ep["n_invalid"] = state[i]["n_invalid"]
    ep["n_unfilled"] = state[i]["n_unfilled"]
    ep["seg"] = state[i]["seg"]
    ep["settled"] = settled
