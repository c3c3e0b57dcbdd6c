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

import numpy as np
from numba import njit

from core.account import position_value
from core.book import book_check, book_top_k
from core.dtypes import ST_OK
from core.features import book_mid, build_observation, hist_push

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
