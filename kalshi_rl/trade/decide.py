"""The actor's per-decision kernel: book checks, mid history, observation, depth, hash.

One njit call per decision does everything between "a book changed" and "ask the
policy", so the hot path pays one Python->Numba transition, not ten:

1. the book must be served (``meta.valid``), fresh (``now - last_recv_ts <= max_age``)
   and well-formed (``core.book.book_check``: no negative level, best cache right, not
   crossed); otherwise a DS_* skip code is returned and nothing else happens (the mid
   history is not touched, so a skipped book leaves no trace in later observations);
2. the top-K depth the order rule walks and the position is valued over
   (``core.book.book_top_k``), and the open position's value
   (``core.account.position_value``: liquidation value by default, as the env marks it);
3. the market's current mid is pushed into its rolling history (``core.features``: push,
   then compute) -- after ``reset`` (a new clean segment) the history starts empty, as
   the dataset's does at a segment's first row;
4. ``core.features.build_observation`` -- THE observation kernel, the same as training's;
5. a 64-bit FNV-1a hash of the observation's bytes (stored with every action record).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit
from numba.core import types
from numba.experimental import structref

from core.account import position_value
from core.book import book_check, book_top_k
from core.dtypes import (
    ACT_HOLD,
    ACTION_PROBS_MAX,
    AS_HOLD,
    AS_MASKED,
    AS_REJECTED,
    AS_RISK,
    AS_SENT,
    NO_PRICE,
    NO_TS,
    ORDER_BUY,
    POLICY_OK,
    PRICE_MAX,
    REJ_NONE,
    SIDE_YES,
    ST_OK,
    TIF_IOC,
)
from core.features import book_mid, build_observation, hist_push
from core.orders import action_to_order
from core.paper_book import paper_taker_submit
from core.policy import policy_decide
from core.ring import RING_HEAD, ring_push

# Decision skip codes (the actor counts each).
DS_OK = 0
DS_INVALID = 1  # the feed marked the book invalid (gap, desync, not yet snapshotted)
DS_STALE = 2  # no update for longer than the staleness limit
DS_MALFORMED = 3  # book_check failed (negative level, bad best cache, crossed)
DS_NAMES = ("ok", "invalid", "stale", "malformed")

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@njit(cache=True)
def obs_hash64(obs: np.ndarray) -> np.int64:
    """FNV-1a over the float32 observation's bytes (as int64, for a bigint column)."""
    words = obs.view(np.uint32)
    h = _FNV_OFFSET
    for i in range(words.shape[0]):
        w = np.uint64(words[i])
        for _ in range(4):
            h ^= w & np.uint64(0xFF)
            h *= _FNV_PRIME
            w >>= np.uint64(8)
    return np.int64(h)


@njit(cache=True)
def prepare_decision(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    qty: np.ndarray,
    best: np.ndarray,
    meta: np.ndarray,
    slot: int,
    now_ns: int,
    max_age_ns: int,
    hist: np.ndarray,
    hist_n: np.ndarray,
    i: int,
    reset: bool,
    ttc: float,
    pos: np.ndarray,
    start_cash: int,
    consumed: np.ndarray,
    fees: np.ndarray,
    mark_mode: int,
    obs: np.ndarray,
    depth_px: np.ndarray,
    depth_qty: np.ndarray,
) -> tuple[int, float, int, np.int64]:
    """Steps 1-5 of the module docstring for book ``slot`` / actor market ``i``.

    Args:
        qty, best, meta: the live BookSet arrays (read in place).
        slot: book slot; now_ns: local time (ns); max_age_ns: staleness limit (0 = none).
        hist: float64 [n, HIST_LEN] mid histories; hist_n: int64 [n] their fill counts.
        i: the market's row in ``hist``; reset: start a new history first.
        ttc: time-to-close fraction of this decision (float32-rounded, as datasets store it).
        pos: POSITION_DTYPE [1] the market's account (the account features' input).
        start_cash: money the market's account started with.
        consumed: LIQUIDITY_DTYPE [1] what our orders took in this market (core.liquidity).
        fees: FEE_DTYPE [1]; mark_mode: MARK_LIQUIDATION / MARK_MID.
        obs: float32 [N_FEATURES] out; depth_px/depth_qty: int16/int64 [2, K] out.

    Returns:
        (DS_* code, mid in ticks (NaN: not two-sided), open position value in money,
        observation hash); only DS_OK writes the outputs.
    """
    m = meta[slot]
    if m["valid"] == 0:
        return DS_INVALID, 0.0, 0, np.int64(0)
    if max_age_ns > 0 and now_ns - m["last_recv_ts"] > max_age_ns:
        return DS_STALE, 0.0, 0, np.int64(0)
    if book_check(qty, best, slot) != ST_OK:
        return DS_MALFORMED, 0.0, 0, np.int64(0)
    book_top_k(qty, best, slot, depth_px.shape[1], depth_px, depth_qty)
    value = position_value(pos[0]["position"], depth_px, depth_qty, consumed, fees, mark_mode)
    if reset:
        hist_n[i] = 0
    mid = book_mid(best, slot)
    n = hist_push(hist[i], hist_n[i], mid)
    hist_n[i] = n
    build_observation(qty, best, slot, hist[i], n, ttc, pos, value, start_cash, obs)
    return DS_OK, mid, value, obs_hash64(obs)


def ttc_fraction(open_ms: int, close_ms: int, ts_ms: int) -> float:
    """Time-to-close fraction as datasets compute it (float64 -> float32 -> float).

    ``1.0`` when the span is unknown or empty (the live actor cannot know a segment's
    future end, so markets without open/close times get 1, see docs/actor.md).
    """
    span = close_ms - open_ms
    if open_ms < 0 or close_ms < 0 or span <= 0:
        return 1.0
    frac = min(max((close_ms - ts_ms) / float(span), 0.0), 1.0)
    return float(np.float32(frac))


# =========================================================================== one decision, fused
# The actor's hot path in as few Python->Numba transitions as possible: ``decide_observe``
# (time, sub-account, observation), the policy, ``decide_order`` (the order rule), then the
# risk gate, the paper client's taker kernel and ``finish_record`` (the decision record
# completed and pushed into the action ring) -- fused into ``tick`` below; the torch
# fallback runs the same kernels in two ``tick`` calls around ``model.predict``, so both
# paths share every step but the policy.

# ``decide_*`` outcomes besides the DS_* skips (``out`` holds the order when DO_ORDER)
DO_BAD_OBS = 10  # the policy refused a non-finite observation
DO_HOLD = 11  # the policy held
DO_MASKED = 12  # the action maps to no valid order here (the env's rule)
DO_ORDER = 13  # an order to pass through the risk gate: out = side, action, limit, count

# ``out`` int64 scratch of the decide kernels
OUT_EXCH_TS = 0  # exchange time of the decision (ms; running max over the segment)
OUT_FROM_RECEIPT = 1  # that time is a snapshot's receipt time
OUT_SIDE = 2
OUT_ACTION = 3
OUT_LIMIT = 4
OUT_COUNT = 5
OUT_POSITION = 6  # the market's position before the order
OUT_HASH = 7  # observation hash

# ``finish_record`` header slots
HDR_EPISODE = 0
HDR_STEP = 1
HDR_TS = 2
HDR_EXCH_TS = 3
HDR_HASH = 4
HDR_VERSION = 5
HDR_STATUS = 6
HDR_COUNT = 7
HDR_FILLED = 8
HDR_FEE = 9
HDR_RISK = 10
HDR_REJECT = 11
HDR_LATENCY = 12
HDR_LEN = 13

# ``rules`` int64 array of the order rule (``OrderRules.packed``)
RULE_MULTI = 0
RULE_ORDER_SIZE = 1
RULE_SLIPPAGE = 2
RULE_MAX_POSITION = 3
RULE_MARK_MODE = 4
RULE_LEN = 5


@njit(cache=True, inline="always")
def _ttc_fraction(open_ms: int, close_ms: int, ts_ms: int) -> float:
    # ttc_fraction in njit: the same float64 division and float32 rounding
    span = close_ms - open_ms
    if open_ms < 0 or close_ms < 0 or span <= 0:
        return 1.0
    frac = min(max((close_ms - ts_ms) / float(span), 0.0), 1.0)
    return float(np.float32(frac))


@njit(cache=True)
def decide_observe(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    qty: np.ndarray,
    best: np.ndarray,
    meta: np.ndarray,
    slot: int,
    now_ns: int,
    max_age_ns: int,
    hist: np.ndarray,
    hist_n: np.ndarray,
    i: int,
    pending_reset: np.ndarray,
    seg_ts_max: np.ndarray,
    seg_ts_receipt: np.ndarray,
    seg_first_ms: np.ndarray,
    open_ms: np.ndarray,
    close_ms: np.ndarray,
    paper_pos: np.ndarray,
    acct: np.ndarray,
    start_cash: int,
    consumed: np.ndarray,
    fees: np.ndarray,
    mark_mode: int,
    obs: np.ndarray,
    depth_px: np.ndarray,
    depth_qty: np.ndarray,
    out: np.ndarray,
    recv_ms: int = NO_TS,
) -> int:
    """The decision's time, its market's sub-account and ``prepare_decision``.

    The book's time is its exchange time (a snapshot without one: its receipt, ms), run
    forward within the segment (running maximum, as datasets do; ``reset`` restarts it);
    time-to-close comes from the market's open (else the segment's first time) and close.
    The sub-account is the paper client's position record of ``slot`` with ``start_cash``
    added to its cash flow.

    Args:
        qty, best, meta: the BookSet arrays; slot: book slot; now_ns, max_age_ns: as
            ``prepare_decision``.
        hist, hist_n, i: mid histories and the market's row.
        pending_reset, seg_ts_max, seg_ts_receipt, seg_first_ms, open_ms, close_ms: the
            actor's per-market arrays (updated for market ``i``).
        paper_pos: the paper client's POSITION_DTYPE per slot; acct: POSITION_DTYPE [1] out.
        start_cash, consumed, fees, mark_mode, obs, depth_px, depth_qty: as
            ``prepare_decision``.
        out: int64 [OUT_LEN] out (OUT_EXCH_TS, OUT_FROM_RECEIPT, OUT_HASH).
        recv_ms: the receipt time (ms) to take for a book without exchange time instead of
            its own (a replay: the recording's); NO_TS = its own.

    Returns:
        DS_OK or the DS_* skip code.
    """
    reset = pending_reset[i]
    m = meta[slot]
    exch_ts = m["last_exch_ts"]
    receipt = exch_ts == NO_TS
    if receipt:  # a snapshot without exchange time: its receipt, as datasets do
        exch_ts = m["last_recv_ts"] // 1_000_000 if recv_ms == NO_TS else recv_ms
    if reset or exch_ts > seg_ts_max[i]:
        seg_ts_max[i] = exch_ts
        seg_ts_receipt[i] = receipt
    exch_ts = seg_ts_max[i]
    if reset:
        seg_first_ms[i] = exch_ts
    o_ms = open_ms[i] if open_ms[i] != NO_TS else seg_first_ms[i]
    ttc = _ttc_fraction(o_ms, close_ms[i], exch_ts)
    out[OUT_EXCH_TS] = exch_ts
    out[OUT_FROM_RECEIPT] = seg_ts_receipt[i]
    fill_account(paper_pos, slot, start_cash, acct)
    st, _mid, _value, h = prepare_decision(
        qty, best, meta, slot, now_ns, max_age_ns, hist, hist_n, i, reset, ttc, acct,
        start_cash, consumed, fees, mark_mode, obs, depth_px, depth_qty,
    )  # fmt: skip
    if st != DS_OK:
        return st
    pending_reset[i] = False
    out[OUT_HASH] = h
    return DS_OK


@njit(cache=True, inline="always")
def fill_account(paper_pos: np.ndarray, slot: int, start_cash: int, acct: np.ndarray) -> None:
    """``acct[0]`` = the paper position record of ``slot`` (zeros if none) + start_cash."""
    if slot < paper_pos.shape[0]:
        acct[0] = paper_pos[slot]
    else:
        a = acct[0]
        a["position"] = 0
        a["cost_basis"] = 0
        a["cash"] = 0
        a["realized_pnl"] = 0
        a["fees_paid"] = 0
        a["n_trades"] = 0
        a["volume"] = 0
        a["settlement_pnl"] = 0
    acct[0]["cash"] += start_cash


@njit(cache=True)
def on_grid(grid: np.ndarray, side: int, act: int, limit: int) -> int:
    """``limit`` moved onto the YES-price ``grid``, never more aggressive (NO_PRICE: none)."""
    step = -1 if act == ORDER_BUY else 1  # a buy may only pay less, a sell get more
    p = limit
    while 0 < p < PRICE_MAX:
        if grid[p if side == SIDE_YES else PRICE_MAX - p]:
            return p
        p += step
    return NO_PRICE


@njit(cache=True)
def decide_order(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    actions: np.ndarray,
    probs: np.ndarray,
    rules: np.ndarray,
    slip_choices: np.ndarray,
    size_choices: np.ndarray,
    grid: np.ndarray,
    has_grid: bool,
    acct: np.ndarray,
    consumed: np.ndarray,
    depth_px: np.ndarray,
    depth_qty: np.ndarray,
    rec: np.ndarray,
    out: np.ndarray,
) -> int:
    """The policy's action -> the decision record's action part and the order to send.

    ``core.orders.action_to_order`` (the env's rule), then the limit onto the market's
    grid.  Writes ``rec[0]``'s probabilities, action, size/slippage indexes and order
    fields (count/filled/fee zero, reject, risk OK).

    Args:
        actions: int64 [D] the policy's action dims; probs: float64 its probabilities.
        rules: int64 [RULE_LEN]; slip_choices, size_choices: int64 (MULTI actions).
        grid, has_grid: the market's valid YES prices (has_grid False: any price).
        acct: the sub-account (its position); consumed, depth_px, depth_qty: as decided on.
        rec: DECISION_DTYPE [1]; out: int64 [OUT_LEN] (OUT_SIDE.. OUT_POSITION out).

    Returns:
        DO_HOLD, DO_MASKED or DO_ORDER.
    """
    r = rec[0]
    n_probs = min(probs.shape[0], ACTION_PROBS_MAX)
    for k in range(ACTION_PROBS_MAX):
        r["probs"][k] = probs[k] if k < n_probs else 0.0
    r["n_probs"] = n_probs
    action = actions[0]
    if rules[RULE_MULTI]:
        si = actions[1]
        zi = actions[2]
        size = size_choices[zi]
        slip = slip_choices[si]
    else:
        si = -1
        zi = -1
        size = rules[RULE_ORDER_SIZE]
        slip = rules[RULE_SLIPPAGE]
    r["action"] = action
    r["size_idx"] = zi
    r["slip_idx"] = si
    r["count"] = 0
    r["filled"] = 0
    r["fee"] = 0
    r["price"] = NO_PRICE
    r["side"] = -1
    r["order_action"] = -1
    r["reject"] = REJ_NONE
    r["risk"] = 0
    if action == ACT_HOLD:
        return DO_HOLD
    position = acct[0]["position"]
    side, act, limit, count, reject = action_to_order(
        action, position, size, rules[RULE_MAX_POSITION], slip, depth_px, depth_qty, consumed
    )
    if reject == REJ_NONE and count > 0 and has_grid:
        limit = on_grid(grid, side, act, limit)
    r["side"] = side
    r["order_action"] = act
    r["price"] = limit
    if reject != REJ_NONE or count <= 0 or limit == NO_PRICE:
        r["reject"] = reject
        return DO_MASKED
    out[OUT_SIDE] = side
    out[OUT_ACTION] = act
    out[OUT_LIMIT] = limit
    out[OUT_COUNT] = count
    out[OUT_POSITION] = position
    return DO_ORDER


@njit(cache=True)
def finish_record(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    rec: np.ndarray,
    paper_pos: np.ndarray,
    slot: int,
    acct: np.ndarray,
    start_cash: int,
    consumed: np.ndarray,
    fees: np.ndarray,
    mark_mode: int,
    depth_px: np.ndarray,
    depth_qty: np.ndarray,
    header: np.ndarray,
    ring_buf: np.ndarray,
    ring_ctl: np.ndarray,
    push: bool,
) -> bool:
    """Complete the decision record after the paper client answered; push it to the ring.

    The sub-account is read again (after the fills); its value is the env's valuation over
    the depth the decision read.

    Args:
        rec: DECISION_DTYPE [1]; paper_pos, slot, acct, start_cash: as ``decide_observe``.
        consumed, fees, mark_mode, depth_px, depth_qty: the valuation's inputs.
        header: int64 [HDR_LEN]: episode, step, ts, exch_ts, obs hash, model version,
            status, count, filled, fee, risk, reject (if not 0), latency_ns.
        ring_buf, ring_ctl: the action ring; push: push into it (False: the caller does).

    Returns:
        True when pushed.
    """
    fill_account(paper_pos, slot, start_cash, acct)
    r = rec[0]
    r["episode_id"] = header[HDR_EPISODE]
    r["step"] = header[HDR_STEP]
    r["ts"] = header[HDR_TS]
    r["exch_ts"] = header[HDR_EXCH_TS]
    r["obs_hash"] = header[HDR_HASH]
    r["market"] = slot
    r["model_version"] = header[HDR_VERSION]
    r["status"] = header[HDR_STATUS]
    if header[HDR_STATUS] == AS_SENT or header[HDR_STATUS] == AS_REJECTED:
        r["count"] = header[HDR_COUNT]
        r["filled"] = header[HDR_FILLED]
        r["fee"] = header[HDR_FEE]
    if (
        header[HDR_STATUS] == AS_RISK
        or header[HDR_STATUS] == AS_SENT
        or (header[HDR_STATUS] == AS_REJECTED)
    ):
        r["risk"] = header[HDR_RISK]
    if header[HDR_REJECT] != 0:
        r["reject"] = header[HDR_REJECT]
    r["position"] = acct[0]["position"]
    r["cash"] = acct[0]["cash"]
    v = position_value(acct[0]["position"], depth_px, depth_qty, consumed, fees, mark_mode)
    r["value"] = acct[0]["cash"] + v
    r["latency_ns"] = header[HDR_LATENCY]
    if push:
        return ring_push(ring_buf, ring_ctl, r)
    return False


# =========================================================================== risk gate
# ``RiskGate``'s per-order check as a kernel (the gate calls it too, so the fused step and
# the Python path share one rule).  ``limits`` float64 [LIM_LEN]; the order-rate window is
# an int64 ring of send times (ns) with ``sent_ctl`` = (head, tail) counters.
LIM_MAX_POSITION = 0
LIM_MAX_EXPOSURE = 1
LIM_MAX_ORDERS_PER_S = 2
LIM_CLOSE_GUARD_S = 3
LIM_LEN = 4
RISK_RUNNING = 0  # ActorState values (kalshi_rl.trade.risk)
RISK_REDUCING = 1
RISK_HALTED = 2
# RiskReason values (kalshi_rl.trade.risk)
RR_OK = 0
RR_HALTED = 1
RR_REDUCING = 2
RR_POSITION_LIMIT = 3
RR_EXPOSURE_LIMIT = 4
RR_ORDER_RATE = 5
RR_CLOSE_GUARD = 6


@njit(cache=True)
def reduces_position(position: int, side: int, action: int, count: int) -> bool:
    """True when the order only shrinks |position| (never flips or opens)."""
    up = (side == SIDE_YES) == (action == ORDER_BUY)
    if up:
        return position < 0 and count <= -position
    return position > 0 and count <= position


@njit(cache=True)
def risk_check(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    state: int,
    limits: np.ndarray,
    sent: np.ndarray,
    sent_ctl: np.ndarray,
    position: int,
    side: int,
    action: int,
    count: int,
    exposure: int,
    order_cost: int,
    seconds_to_close: float,
    now_ns: int,
) -> tuple[int, int]:
    """(count that may be sent, RR_* reason); see ``RiskGate.check``.

    ``seconds_to_close`` NaN = unknown.  An order that passes is entered into the rate
    window (``sent`` must hold ceil(max_orders_per_s) + 1 times).
    """
    reducing = reduces_position(position, side, action, count)
    if state >= RISK_HALTED:
        return 0, RR_HALTED
    if state == RISK_REDUCING and not reducing:
        return 0, RR_REDUCING
    if not reducing:
        if not np.isnan(seconds_to_close) and seconds_to_close <= limits[LIM_CLOSE_GUARD_S]:
            return 0, RR_CLOSE_GUARD
        cap = int(limits[LIM_MAX_POSITION])
        if cap:
            up = (side == SIDE_YES) == (action == ORDER_BUY)
            room = cap - position if up else cap + position
            if room <= 0:
                return 0, RR_POSITION_LIMIT
            count = min(count, room)
        max_exp = int(limits[LIM_MAX_EXPOSURE])
        if max_exp and exposure + order_cost > max_exp:
            return 0, RR_EXPOSURE_LIMIT
    rate = limits[LIM_MAX_ORDERS_PER_S]
    if rate > 0:
        n = sent.shape[0]
        while sent_ctl[0] > sent_ctl[1] and now_ns - sent[sent_ctl[1] % n] >= 1_000_000_000:
            sent_ctl[1] += 1
        if sent_ctl[0] - sent_ctl[1] >= rate:
            return 0, RR_ORDER_RATE
        sent[sent_ctl[0] % n] = now_ns
        sent_ctl[0] += 1
    return count, RR_OK


# =========================================================================== the whole step
# ``tick`` (below) = ``decide_observe`` + policy + ``decide_order`` + risk gate (``_act``:
# + ``core.paper_book.paper_taker_submit`` + ``finish_record``) in one call; with a torch
# policy the same kernels run in two calls around it.
# Outcomes: a DS_* skip, DO_BAD_OBS, STEP_DONE + AS_* (recorded and pushed, unless the
# ring had a backlog: ``out[OUT_PUSHED]`` 0), or STEP_SLOW (the order passed the risk gate
# but the paper client needs Python: ``submit_taker`` then ``finish_record``).
STEP_DONE = 20
STEP_SLOW = 40
OUT_RISK = 8  # RiskReason of the gate
OUT_ALLOWED = 9  # count the gate let through
OUT_PAPER = 10  # the paper kernel's code
OUT_N_FILLS = 11
OUT_RECS = 12  # rec_ids the paper kernel used
OUT_FILLED = 13
OUT_FEE = 14
OUT_PUSHED = 15
OUT_RING_AT = 16  # where in the action ring the record went (``tick``, when pushed)
OUT_LEN = 17


@njit(cache=True, inline="always")
def _exposure(pos: np.ndarray, slots: np.ndarray) -> int:
    total = 0
    for k in range(slots.shape[0]):
        s = slots[k]
        if s < pos.shape[0]:
            total += pos[s]["cost_basis"]
    return total


@njit(cache=True, inline="always")
def _act(  # noqa: PLR0917 -- njit helper over positional arrays/scalars
    st,
    i,
    slot,
    now_ns,
    closed,
    close_ms,
    slots,
    risk_state,
    limits,
    sent,
    sent_ctl,
    paper,
    paper_ok,
    qty,
    best,
    meta,
    acct,
    start_cash,
    consumed,
    fees,
    mark_mode,
    depth_px,
    depth_qty,
    header,
    ring_buf,
    ring_ctl,
    push,
    rec,
    out,
):
    # risk gate + paper + record, after decide_order's outcome ``st``
    status = AS_HOLD
    if st == DO_MASKED:
        status = AS_MASKED
    elif st == DO_ORDER:
        side = out[OUT_SIDE]
        act = out[OUT_ACTION]
        limit = out[OUT_LIMIT]
        count = out[OUT_COUNT]
        exch_ts = out[OUT_EXCH_TS]
        secs = np.nan
        if closed[i]:
            secs = 0.0  # the market closed: only reducing orders
        elif close_ms[i] != NO_TS:
            secs = (close_ms[i] - exch_ts) / 1000.0
        cost = count * (limit if act == ORDER_BUY else PRICE_MAX - limit) // 10
        exposure = _exposure(paper[4], slots) if limits[LIM_MAX_EXPOSURE] else 0
        allowed, why = risk_check(
            risk_state, limits, sent, sent_ctl, out[OUT_POSITION], side, act, count, exposure,
            cost, secs, now_ns,
        )  # fmt: skip
        out[OUT_RISK] = why
        out[OUT_ALLOWED] = allowed
        header[HDR_RISK] = why
        if allowed <= 0:
            status = AS_RISK
        elif not paper_ok:
            return STEP_SLOW
        else:
            header[HDR_COUNT] = allowed
            code, n, used, filled, fee = paper_taker_submit(
                paper[0], paper[1], paper[2], paper[3], paper[4], paper[5], paper[6],
                paper[7], paper[8], paper[9], paper[10], paper[11], paper[12], paper[13],
                paper[14], paper[15], paper[16], paper[17], paper[18], paper[19], paper[20],
                paper[21], paper[22], paper[23], paper[24],
                qty, best, meta, slot, side, act, limit, allowed, TIF_IOC,
            )  # fmt: skip
            out[OUT_PAPER] = code
            out[OUT_N_FILLS] = n
            out[OUT_RECS] = used
            out[OUT_FILLED] = filled
            out[OUT_FEE] = fee
            if code != REJ_NONE:
                status = AS_REJECTED
                header[HDR_REJECT] = -1
            else:
                status = AS_SENT
                header[HDR_FILLED] = filled
                header[HDR_FEE] = fee
    header[HDR_STATUS] = status
    header[HDR_EXCH_TS] = out[OUT_EXCH_TS]
    header[HDR_HASH] = out[OUT_HASH]
    header[HDR_TS] = now_ns
    pushed = finish_record(
        rec, paper[4], slot, acct, start_cash, consumed, fees, mark_mode, depth_px, depth_qty,
        header, ring_buf, ring_ctl, push,
    )  # fmt: skip
    out[OUT_PUSHED] = pushed
    return STEP_DONE + status


# =========================================================================== the actor's tick
# The book listener's whole per-market work in one kernel entry whose state is one
# ``StepCtx`` (a Numba structref holding every array the step reads or writes): passing
# ~60 arrays costs ~50 ns each to unbox on every call (~3 us a decision) and touches every
# array object (cold after something else ran); one structref costs ~0.1 us.  The kernel
# runs the tick test of ``Actor._tick`` (a book that turned invalid ends the segment; the
# update that makes it valid opens one; else every ``tick_updates`` updates), then the
# decision (the kernels above: observation, policy, order rule, risk gate, the paper
# client's taker kernel, the record), and counts (``ctx.counts``, ``C_*``).
C_DECISIONS = 0
C_ORDERS = 1
C_FILLS = 2
C_HELD = 3
C_MASKED = 4
C_RISK_REFUSED = 5
C_REJECTED = 6
C_COALESCED = 7
C_BAD_OBS = 8
C_SWAPS = 9
C_SHADOW = 10
C_STREAM_DROPPED = 11
C_RING_OVERFLOW = 12
C_DROPPED_AT_END = 13
C_SKIP_INVALID = 14  # C_SKIP_INVALID + DS_* - 1 for each skip code
C_SKIP_STALE = 15
C_SKIP_MALFORMED = 16
COUNT_NAMES = (
    "decisions", "orders", "fills", "held", "masked", "risk_refused", "rejected",
    "coalesced_updates", "bad_obs", "swaps", "shadow_decisions", "stream_dropped",
    "ring_overflow", "dropped_at_end", "skip_invalid", "skip_stale", "skip_malformed",
)  # fmt: skip
C_LEN = len(COUNT_NAMES)

# ``tick`` phases (PH_TICK or-ed in: the tick test first) and its outcomes besides the step's
PH_FAST = 0  # the whole step with the Numba policy
PH_OBSERVE = 1  # the observation (a torch policy decides next; DS_OK: ask it)
PH_AFTER = 2  # the rest of the step after the torch policy
PH_TICK = 4  # run the tick test first (the book listener; not interval ticks)
TICK_IDLE = 30  # not due: nothing done
TICK_SEG_END = 31  # the book turned invalid: the market's segment ended (nothing decided)

STEP_CTX_FIELDS = (
    # the BookSet (best as a plain ndarray)
    "qty", "best", "meta",
    # the actor's per-market arrays (views of its first len(tickers) rows)
    "hist", "hist_n", "pending_reset", "seg_ts_max", "seg_ts_receipt", "seg_first_ms",
    "open_ms", "close_ms", "closed", "slots", "last_updates", "in_segment",
    "last_decision_ns", "grids", "has_grid",
    # the decision's scratch, counters
    "acct", "obs", "depth_px", "depth_qty", "out", "rec", "header", "counts",
    # the policy (a torch policy: its actions/probs, the rest placeholders)
    "params", "layer_in", "layer_out", "layer_off", "act", "heads", "actions", "probs",
    "logits", "buf_a", "buf_b",
    # the order rule, the risk gate, the action ring
    "rules", "slip_choices", "size_choices", "fees", "limits", "sent", "sent_ctl",
    "ring_buf", "ring_ctl",
    # the paper client (``paper_taker_submit``'s arrays; p_grids: its grid per market)
    "p_orders", "p_extra", "p_active", "p_ctl", "p_pos", "p_liq", "p_fees", "p_grids",
    "p_start_cash", "p_px", "p_vq", "p_fill_out", "p_hist", "p_coid_prefix", "p_coid",
    "p_events", "p_rings_on", "p_ord_buf", "p_ord_ctl", "p_fill_buf", "p_fill_ctl",
    # settings
    "max_age_ns", "start_cash", "tick_updates",
)  # fmt: skip


@structref.register
class StepCtxType(types.StructRef):
    """Numba type of ``StepCtx``."""

    def preprocess_fields(self, fields: Any) -> Any:
        return tuple((name, types.unliteral(t)) for name, t in fields)


class StepCtx(structref.StructRefProxy):
    """The actor tick's state (``STEP_CTX_FIELDS``); built by ``Actor._ctx_build``."""


structref.define_proxy(StepCtx, StepCtxType, list(STEP_CTX_FIELDS))


@njit(cache=True)
def new_step_ctx(  # noqa: PLR0917 -- the fields, positionally (STEP_CTX_FIELDS)
    qty, best, meta, hist, hist_n, pending_reset, seg_ts_max, seg_ts_receipt, seg_first_ms,
    open_ms, close_ms, closed, slots, last_updates, in_segment, last_decision_ns, grids,
    has_grid, acct, obs, depth_px, depth_qty, out, rec, header, counts, params, layer_in,
    layer_out, layer_off, act, heads, actions, probs, logits, buf_a, buf_b, rules,
    slip_choices, size_choices, fees, limits, sent, sent_ctl, ring_buf, ring_ctl, p_orders,
    p_extra, p_active, p_ctl, p_pos, p_liq, p_fees, p_grids, p_start_cash, p_px, p_vq,
    p_fill_out, p_hist, p_coid_prefix, p_coid, p_events, p_rings_on, p_ord_buf, p_ord_ctl,
    p_fill_buf, p_fill_ctl, max_age_ns, start_cash, tick_updates,
):  # fmt: skip
    """A ``StepCtx`` (compiled once and cached: the proxy's own constructor is not)."""
    return StepCtx(
        qty, best, meta, hist, hist_n, pending_reset, seg_ts_max, seg_ts_receipt, seg_first_ms,
        open_ms, close_ms, closed, slots, last_updates, in_segment, last_decision_ns, grids,
        has_grid, acct, obs, depth_px, depth_qty, out, rec, header, counts, params, layer_in,
        layer_out, layer_off, act, heads, actions, probs, logits, buf_a, buf_b, rules,
        slip_choices, size_choices, fees, limits, sent, sent_ctl, ring_buf, ring_ctl, p_orders,
        p_extra, p_active, p_ctl, p_pos, p_liq, p_fees, p_grids, p_start_cash, p_px, p_vq,
        p_fill_out, p_hist, p_coid_prefix, p_coid, p_events, p_rings_on, p_ord_buf, p_ord_ctl,
        p_fill_buf, p_fill_ctl, max_age_ns, start_cash, tick_updates,
    )  # fmt: skip


@njit(cache=True, inline="always")
def _tick_due(c, i, s):
    # Actor._tick's test for market i (book slot s): TICK_* or -1 (decide now)
    m = c.meta[s]
    if m["valid"] == 0:
        if c.in_segment[i]:
            c.in_segment[i] = False
            c.pending_reset[i] = True
            return TICK_SEG_END
        return TICK_IDLE
    n = m["n_updates"]
    if not c.in_segment[i]:  # the update that opened a new clean segment
        c.in_segment[i] = True
        c.last_updates[i] = n
        return -1
    last = c.last_updates[i]
    if c.tick_updates and n - last >= c.tick_updates:
        c.counts[C_COALESCED] += n - last - c.tick_updates
        c.last_updates[i] = n
        return -1
    return TICK_IDLE


@njit(cache=True, inline="always")
def _count_status(c, status):
    # Actor._count for a step the kernel completed
    counts = c.counts
    counts[C_DECISIONS] += 1
    if status == AS_SENT:
        counts[C_ORDERS] += 1
        if c.header[HDR_FILLED]:
            counts[C_FILLS] += 1
    elif status == AS_HOLD:
        counts[C_HELD] += 1
    elif status == AS_MASKED:
        counts[C_MASKED] += 1
    elif status == AS_RISK:
        counts[C_RISK_REFUSED] += 1
    elif status == AS_REJECTED:
        counts[C_REJECTED] += 1


@njit(cache=True)
def tick(  # noqa: PLR0917 -- the call's scalars, positionally
    c,
    phase,
    i,
    slot,
    now_ns,
    episode,
    step,
    version,
    risk_state,
    paper_ok,
    push,
    p_i,
    p_now_ns,
    p_n_hist,
    p_rec0,
):
    """Market ``i`` (book ``slot``) changed: the tick test, then the decision (``phase``).

    Args:
        c: the StepCtx; phase: PH_FAST / PH_OBSERVE / PH_AFTER, or-ed with PH_TICK to run
            the tick test first; now_ns: the decision's clock.
        episode, step, version: the record's header (step: this decision's number).
        risk_state: the gate's state; paper_ok: the paper kernel may run (else STEP_SLOW);
        push: push the record into the ring.
        p_i, p_now_ns, p_n_hist, p_rec0: the paper client's next order index, clock,
        fill-history length and next rec_id (``paper_taker_submit``'s scalars).

    Returns:
        TICK_IDLE / TICK_SEG_END (nothing decided), a DS_* skip (counted), DO_BAD_OBS
        (counted), DS_OK after PH_OBSERVE (ask the policy, then PH_AFTER), STEP_SLOW (the
        paper client needs Python; not counted) or STEP_DONE + AS_* (counted).
    """
    if phase & PH_TICK:
        due = _tick_due(c, i, slot)
        if due >= 0:
            return due
        phase -= PH_TICK
    liq = c.p_liq[slot : slot + 1]
    mark_mode = c.rules[RULE_MARK_MODE]
    if phase != PH_AFTER:
        st = decide_observe(
            c.qty, c.best, c.meta, slot, now_ns, c.max_age_ns, c.hist, c.hist_n, i,
            c.pending_reset, c.seg_ts_max, c.seg_ts_receipt, c.seg_first_ms, c.open_ms,
            c.close_ms, c.p_pos, c.acct, c.start_cash, liq, c.fees, mark_mode, c.obs,
            c.depth_px, c.depth_qty, c.out,
        )  # fmt: skip
        if st != DS_OK:
            c.counts[C_SKIP_INVALID + st - 1] += 1
            return st
        c.last_decision_ns[i] = now_ns
        if phase == PH_OBSERVE:
            return DS_OK
        pst = policy_decide(
            c.params, c.layer_in, c.layer_out, c.layer_off, c.act, c.heads, c.obs, c.actions,
            c.probs, c.logits, c.buf_a, c.buf_b,
        )  # fmt: skip
        if pst != POLICY_OK:
            c.counts[C_BAD_OBS] += 1
            return DO_BAD_OBS
    hdr = c.header
    for k in range(HDR_COUNT, HDR_REJECT + 1):
        hdr[k] = 0
    hdr[HDR_EPISODE] = episode
    hdr[HDR_STEP] = step
    hdr[HDR_VERSION] = version
    st = decide_order(
        c.actions, c.probs, c.rules, c.slip_choices, c.size_choices, c.grids[i], c.has_grid[i],
        c.acct, liq, c.depth_px, c.depth_qty, c.rec, c.out,
    )  # fmt: skip
    p_grid = c.p_grids[i]
    paper = (
        c.p_orders, c.p_extra, c.p_active, c.p_ctl, c.p_pos, c.p_liq, c.p_fees, p_grid, p_i,
        c.p_start_cash, p_now_ns, c.p_px, c.p_vq, c.p_fill_out, c.p_hist, p_n_hist, p_rec0,
        c.p_coid_prefix, c.p_coid, c.p_events, c.p_rings_on, c.p_ord_buf, c.p_ord_ctl,
        c.p_fill_buf, c.p_fill_ctl,
    )  # fmt: skip
    res = _act(
        st, i, slot, now_ns, c.closed, c.close_ms, c.slots, risk_state, c.limits, c.sent,
        c.sent_ctl, paper, paper_ok, c.qty, c.best, c.meta, c.acct, c.start_cash, liq, c.fees,
        mark_mode, c.depth_px, c.depth_qty, hdr, c.ring_buf, c.ring_ctl, push, c.rec, c.out,
    )  # fmt: skip
    if res != STEP_SLOW:
        _count_status(c, res - STEP_DONE)
        c.out[OUT_RING_AT] = (c.ring_ctl[RING_HEAD] - 1) & (c.ring_buf.shape[0] - 1)
    return res
