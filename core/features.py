"""THE observation kernel: market + account features, single (live) and batched (history).

Nothing else in the project builds observations.  The live actor, the env and the history
loader all call these kernels, and the batched path is bit-identical to the live path
(same inner kernel, same float64 arithmetic, no fastmath).

Inputs are top-of-book levels as ``core.book.book_top_k`` gives them: ``px`` int16 [2, K]
(bid prices per side, best first, each side on its own scale: YES bids on the YES scale,
NO bids on the NO scale, padded with ``NO_PRICE``) and ``qty`` int64 [2, K] (count units,
padded with 0).  Only the first ``FEATURE_TOP_LEVELS`` (5) levels are used, so K may be
larger (datasets keep ``DEFAULT_TOP_K``).

History: ``hist`` float64 [HIST_LEN] holds YES-scale mids (ticks) of past decision points,
``hist[0]`` the newest; ``hist_n`` is how many are valid.  Order per decision point:
**push, then compute** -- ``hist_n = hist_push(hist, hist_n, mid)`` with the current mid
(``mid_from_levels`` / ``book_mid``), then ``market_features_*``.  So ``hist[0]`` is the
current mid and ``hist[k]`` the mid ``k`` decision points back.

Mid (``mid_from_levels``): only a two-sided book has one, (yes_bid + (1000 - no_bid)) / 2;
otherwise it is NaN (NO_MID) -- never a made-up price.  ``hist_push`` of a NaN mid carries
the last real mid forward (or records nothing before the first one), so returns and
volatility only ever see real mids.  Features never carry NaN: a value that does not exist
is 0 and a flag (has_yes_bid, has_no_bid, two_sided) says so.

Market features (float32 [N_MARKET_FEATURES]; ``yb``/``nb`` best YES/NO bid in ticks, an
``qy_i``/``qn_i`` level-i quantity in contracts;
``D(x) = log1p(x) / 10``):

==  ==================  ==============================================================
 #  name                value
==  ==================  ==============================================================
 0  yes_bid             yb / 1000                       (0 when no YES bids: has_yes_bid = 0)
 1  yes_ask             (1000 - nb) / 1000              (0 when no NO bids: has_no_bid = 0)
 2  no_bid              nb / 1000                       (0 when no NO bids)
 3  no_ask              (1000 - yb) / 1000              (0 when no YES bids)
 4  spread              yes_ask - yes_bid  (== the NO spread); 0 unless two_sided
 5  mid                 mid / 1000; 0 unless two_sided
 6  microprice          (yb*qn_1 + (1000-nb)*qy_1) / (qy_1+qn_1) / 1000; 0 unless two_sided
 7  has_yes_bid         1 if the YES ladder has a level else 0
 8  has_no_bid          1 if the NO ladder has a level else 0
 9  two_sided           1 if both ladders have a level (a mid exists) else 0
10  yes_depth_1..5      D(qy_i) for the 5 best YES bids (0 when missing)
15  no_depth_1..5       D(qn_i) for the 5 best NO bids
20  yes_depth_total     D(sum of qy_1..5)
21  no_depth_total      D(sum of qn_1..5)
22  imbalance_l1        (qy_1 - qn_1) / (qy_1 + qn_1), 0 when both empty; in [-1, 1]
23  imbalance_top5      same over the sums of the top 5 levels
24  ret_1               (hist[0] - hist[1]) / 100   (mid change in $0.10 units; 0 if short)
25  ret_5               (hist[0] - hist[5]) / 100
26  ret_20              (hist[0] - hist[20]) / 100
27  volatility          population std of the hist_n-1 one-step mid changes / 10
                        ($0.01 units; 0 with fewer than 2 changes)
28  hist_fill           hist_n / HIST_LEN (how much history backs 24..27)
29  ttc                 time-to-close fraction, clipped to [0, 1] (1 open, 0 closing)
==  ==================  ==============================================================

Account features (float32 [N_ACCOUNT_FEATURES]; ``S`` = start_cash money, ``p`` = position
in contracts, ``V`` = the open position's value in money as the engine computes it
(``core.account.position_value``: what it could be sold for now by default, 0 when nothing
bids), so the observation never shows a made-up mark):

==  ==================  ==============================================================
 0  position            sign(p) * log1p(abs(p)) / 5   (+YES / -NO)
 1  avg_cost            cost_basis / abs(p) in dollars per contract (own side), 0 if flat
 2  upnl_per_contract   V / abs(p) in dollars - avg_cost, in [-1, 1], 0 if flat
 3  upnl                (V - cost_basis) / S
 4  cash                cash / S - 1   (``pos.cash`` is the balance, starting at S)
 5  value               (cash + V) / S - 1  (total return so far)
 6  fees                fees_paid / S
==  ==================  ==============================================================
"""

from __future__ import annotations

import numpy as np
from numba import njit

from core.account import first_record
from core.book import book_top_k
from core.dtypes import (
    COUNT_SCALE,
    DEPTH_LOG_SCALE,
    FEATURE_TOP_LEVELS,
    HIST_LEN,
    MONEY_SCALE,
    NO_MID,
    NO_PRICE,
    POS_LOG_SCALE,
    PRICE_MAX,
    RET_LAGS,
    RET_SCALE_TICKS,
    VOL_SCALE_TICKS,
)
from core.records import borrow

MARKET_FEATURE_NAMES: tuple[str, ...] = (
    "yes_bid",
    "yes_ask",
    "no_bid",
    "no_ask",
    "spread",
    "mid",
    "microprice",
    "has_yes_bid",
    "has_no_bid",
    "two_sided",
    *(f"yes_depth_{i + 1}" for i in range(FEATURE_TOP_LEVELS)),
    *(f"no_depth_{i + 1}" for i in range(FEATURE_TOP_LEVELS)),
    "yes_depth_total",
    "no_depth_total",
    "imbalance_l1",
    "imbalance_top5",
    "ret_1",
    "ret_5",
    "ret_20",
    "volatility",
    "hist_fill",
    "ttc",
)
ACCOUNT_FEATURE_NAMES: tuple[str, ...] = (
    "position",
    "avg_cost",
    "upnl_per_contract",
    "upnl",
    "cash",
    "value",
    "fees",
)
N_MARKET_FEATURES = len(MARKET_FEATURE_NAMES)  # 30
N_ACCOUNT_FEATURES = len(ACCOUNT_FEATURE_NAMES)  # 7
N_FEATURES = N_MARKET_FEATURES + N_ACCOUNT_FEATURES

# Feature indices the kernels write (kept next to the names so the table cannot drift).
F_YES_BID = MARKET_FEATURE_NAMES.index("yes_bid")
F_TWO_SIDED = MARKET_FEATURE_NAMES.index("two_sided")
F_YES_DEPTH = MARKET_FEATURE_NAMES.index("yes_depth_1")
F_NO_DEPTH = MARKET_FEATURE_NAMES.index("no_depth_1")
F_RET = MARKET_FEATURE_NAMES.index("ret_1")
F_VOL = MARKET_FEATURE_NAMES.index("volatility")

# Normalisation scales (DEPTH_LOG_SCALE, RET_LAGS, ...) live in core.dtypes; the names,
# counts and indices above stay here because they are derived from this module's table.
_LAG_1, _LAG_5, _LAG_20 = RET_LAGS

assert HIST_LEN > _LAG_20, "HIST_LEN must cover the longest return lag"
assert MARKET_FEATURE_NAMES.index("ttc") == N_MARKET_FEATURES - 1


@njit(cache=True, inline="always")
def _mid(yes_bid: int, no_bid: int) -> float:
    # One formula for both the levels path and the live best-price path: bit-identical mids.
    if NO_PRICE not in (yes_bid, no_bid):
        return (yes_bid + (PRICE_MAX - no_bid)) / 2.0
    return NO_MID


@njit(cache=True)
def mid_from_levels(px: np.ndarray, qty: np.ndarray) -> float:
    """YES-scale mid in ticks from top levels.

    Args:
        px: int16 [2, K] best-first bid prices per side (NO_PRICE padded).
        qty: int64 [2, K] matching quantities (unused; kept for a uniform signature).

    Returns:
        float64 mid in ticks of a two-sided book; NaN (NO_MID) when a side is empty.
    """
    return _mid(int(px[0, 0]), int(px[1, 0]))


@njit(cache=True)
def book_mid(best: np.ndarray, m: int) -> float:
    """YES-scale mid in ticks of live book slot ``m`` (same value as ``mid_from_levels``).

    Args:
        best: int32 [cap, 2] best bid per side (NO_PRICE when empty).
        m: book slot.

    Returns:
        float64 mid in ticks.
    """
    return _mid(int(best[m, 0]), int(best[m, 1]))


@njit(cache=True)
def mids_batch_kernel(px: np.ndarray, qty: np.ndarray, out: np.ndarray) -> None:
    """Mid per decision point.

    Args:
        px: int16 [T, 2, K]; qty: int64 [T, 2, K].
        out: float64 [T] filled with ``mid_from_levels`` of each row (NaN: not two-sided).
    """
    for t in range(px.shape[0]):
        out[t] = _mid(int(px[t, 0, 0]), int(px[t, 1, 0]))


@njit(cache=True)
def hist_push(hist: np.ndarray, n: int, mid: float) -> int:
    """Shift ``mid`` into the rolling history (``hist[0]`` newest).

    Args:
        hist: float64 [HIST_LEN] mids of past decision points, newest first.
        n: number of valid entries.
        mid: current YES-scale mid in ticks; NaN (no two-sided book) repeats the last real
            mid, or records nothing while there has been none.

    Returns:
        new count ``min(n + 1, HIST_LEN)`` (``n`` when nothing was recorded).
    """
    if np.isnan(mid):
        if n == 0:
            return 0
        mid = hist[0]
    for i in range(hist.shape[0] - 1, 0, -1):
        hist[i] = hist[i - 1]
    hist[0] = mid
    return min(n + 1, hist.shape[0])


@njit(cache=True, inline="always")
def _imbalance(a: float, b: float) -> float:
    s = a + b
    if s <= 0.0:
        return 0.0
    return (a - b) / s


@njit(cache=True, inline="always")
def _depth(q: float) -> float:
    return np.log1p(q / COUNT_SCALE) / DEPTH_LOG_SCALE


@njit(cache=True)
def market_features_from_levels(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    px: np.ndarray,
    qty: np.ndarray,
    hist: np.ndarray,
    hist_n: int,
    ttc_frac: float,
    out: np.ndarray,
) -> None:
    """The one inner kernel: market features from top levels and mid history.

    Args:
        px: int16 [2, K>=5] best-first bids per side, own scale, NO_PRICE padded.
        qty: int64 [2, K] count units, 0 padded.
        hist: float64 [HIST_LEN] mids newest first (current mid already pushed).
        hist_n: valid entries in ``hist``.
        ttc_frac: time-to-close fraction (clipped to [0, 1]).
        out: float32 [N_MARKET_FEATURES] written in place (see the module table).
    """
    yb = int(px[0, 0])
    nb = int(px[1, 0])
    has_y = yb != NO_PRICE
    has_n = nb != NO_PRICE
    two = has_y and has_n
    yb_t = float(yb) if has_y else 0.0
    nb_t = float(nb) if has_n else 0.0
    qy1 = float(qty[0, 0]) if has_y else 0.0
    qn1 = float(qty[1, 0]) if has_n else 0.0
    mid = 0.0
    micro = 0.0
    if two:
        mid = _mid(yb, nb)
        micro = mid
        if qy1 + qn1 > 0.0:
            # Microprice leans toward the thinner side: heavy bids push it toward the ask.
            micro = (yb_t * qn1 + (PRICE_MAX - nb_t) * qy1) / (qy1 + qn1)

    out[F_YES_BID] = yb_t / PRICE_MAX
    out[F_YES_BID + 1] = (PRICE_MAX - nb_t) / PRICE_MAX if has_n else 0.0
    out[F_YES_BID + 2] = nb_t / PRICE_MAX
    out[F_YES_BID + 3] = (PRICE_MAX - yb_t) / PRICE_MAX if has_y else 0.0
    out[F_YES_BID + 4] = (PRICE_MAX - nb_t - yb_t) / PRICE_MAX if two else 0.0
    out[F_YES_BID + 5] = mid / PRICE_MAX
    out[F_YES_BID + 6] = micro / PRICE_MAX
    out[F_YES_BID + 7] = 1.0 if has_y else 0.0
    out[F_YES_BID + 8] = 1.0 if has_n else 0.0
    out[F_TWO_SIDED] = 1.0 if two else 0.0

    tot_y = 0.0
    tot_n = 0.0
    for i in range(FEATURE_TOP_LEVELS):
        qy = float(qty[0, i]) if px[0, i] != NO_PRICE else 0.0
        qn = float(qty[1, i]) if px[1, i] != NO_PRICE else 0.0
        tot_y += qy
        tot_n += qn
        out[F_YES_DEPTH + i] = _depth(qy)
        out[F_NO_DEPTH + i] = _depth(qn)
    out[F_NO_DEPTH + FEATURE_TOP_LEVELS] = _depth(tot_y)
    out[F_NO_DEPTH + FEATURE_TOP_LEVELS + 1] = _depth(tot_n)
    out[F_NO_DEPTH + FEATURE_TOP_LEVELS + 2] = _imbalance(qy1, qn1)
    out[F_NO_DEPTH + FEATURE_TOP_LEVELS + 3] = _imbalance(tot_y, tot_n)

    out[F_RET] = (hist[0] - hist[_LAG_1]) / RET_SCALE_TICKS if hist_n > _LAG_1 else 0.0
    out[F_RET + 1] = (hist[0] - hist[_LAG_5]) / RET_SCALE_TICKS if hist_n > _LAG_5 else 0.0
    out[F_RET + 2] = (hist[0] - hist[_LAG_20]) / RET_SCALE_TICKS if hist_n > _LAG_20 else 0.0

    n_d = hist_n - 1
    vol = 0.0
    if n_d >= 2:
        mean = 0.0
        for i in range(n_d):
            mean += hist[i] - hist[i + 1]
        mean /= n_d
        ss = 0.0
        for i in range(n_d):
            d = hist[i] - hist[i + 1] - mean
            ss += d * d
        vol = np.sqrt(ss / n_d) / VOL_SCALE_TICKS
    out[F_VOL] = vol
    out[F_VOL + 1] = hist_n / HIST_LEN
    out[F_VOL + 2] = min(max(ttc_frac, 0.0), 1.0)


@njit(cache=True)
def market_features_live(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    qty: np.ndarray,
    best: np.ndarray,
    m: int,
    hist: np.ndarray,
    hist_n: int,
    ttc_frac: float,
    out: np.ndarray,
) -> None:
    """Market features of live book slot ``m`` (push the current mid into hist first).

    Args:
        qty: int64 [cap, 2, 1001] book ladders (core.book).
        best: int32 [cap, 2] best bids (core.book).
        m: book slot.
        hist, hist_n: the market's mid history, current mid already pushed.
        ttc_frac: time-to-close fraction.
        out: float32 [N_MARKET_FEATURES].
    """
    lpx = np.empty((2, FEATURE_TOP_LEVELS), dtype=np.int16)
    lqty = np.empty((2, FEATURE_TOP_LEVELS), dtype=np.int64)
    book_top_k(qty, best, m, FEATURE_TOP_LEVELS, lpx, lqty)
    market_features_from_levels(lpx, lqty, hist, hist_n, ttc_frac, out)


@njit(cache=True)
def market_features_batch_kernel(
    px: np.ndarray,
    qty: np.ndarray,
    ttc: np.ndarray,
    reset: np.ndarray,
    out: np.ndarray,
) -> None:
    """Market features for T decision points, keeping the mid history internally.

    Per row: clear the history if ``reset[t]``, push ``mid_from_levels``, then the inner
    kernel -- bit-identical to the live path stepped over the same levels.

    Args:
        px: int16 [T, 2, K>=5]; qty: int64 [T, 2, K].
        ttc: float32 [T] time-to-close fractions.
        reset: uint8 [T], 1 = first row of a segment (history cleared).
        out: float32 [T, N_MARKET_FEATURES].
    """
    px, qty, out = borrow(px), borrow(qty), borrow(out)  # row views without refcounts
    hist = np.zeros(HIST_LEN, dtype=np.float64)
    n = 0
    for t in range(px.shape[0]):
        if reset[t] != 0:
            n = 0
        n = hist_push(hist, n, _mid(int(px[t, 0, 0]), int(px[t, 1, 0])))
        market_features_from_levels(px[t], qty[t], hist, n, float(ttc[t]), out[t])


@njit(cache=True)
def account_features(
    pos: np.ndarray | np.void, mark_value: int, start_cash: int, out: np.ndarray
) -> None:
    """Account features of one position whose open contracts are worth ``mark_value``.

    Args:
        pos: POSITION_DTYPE record, or array whose row 0 is used.
        mark_value: money value of the open position (``core.account.position_value``).
        start_cash: money the episode started with (denominator of the relative features).
        out: float32 [N_ACCOUNT_FEATURES] (see the module table).
    """
    p = first_record(pos)
    s = float(max(start_cash, 1))
    position = p["position"]
    contracts = float(abs(position)) / COUNT_SCALE
    out[0] = np.sign(position) * np.log1p(contracts) / POS_LOG_SCALE
    if position != 0:
        avg_cost = p["cost_basis"] / contracts / MONEY_SCALE
        out[1] = avg_cost
        out[2] = mark_value / contracts / MONEY_SCALE - avg_cost
    else:
        out[1] = 0.0
        out[2] = 0.0
    out[3] = (mark_value - p["cost_basis"]) / s
    out[4] = p["cash"] / s - 1.0
    out[5] = (p["cash"] + mark_value) / s - 1.0
    out[6] = p["fees_paid"] / s


@njit(cache=True)
def observation_from_levels(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    px: np.ndarray,
    qty: np.ndarray,
    hist: np.ndarray,
    hist_n: int,
    ttc_frac: float,
    pos: np.ndarray | np.void,
    mark_value: int,
    start_cash: int,
    out: np.ndarray,
) -> None:
    """Full observation (market then account features) from top levels.

    Args:
        px, qty, hist, hist_n, ttc_frac: as ``market_features_from_levels``.
        pos: POSITION_DTYPE record or array (row 0); mark_value: money value of its open
            position (``core.account.position_value``); start_cash: money.
        out: float32 [N_FEATURES].
    """
    market_features_from_levels(px, qty, hist, hist_n, ttc_frac, out[:N_MARKET_FEATURES])
    account_features(pos, mark_value, start_cash, out[N_MARKET_FEATURES:])


@njit(cache=True)
def build_observation(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    qty: np.ndarray,
    best: np.ndarray,
    m: int,
    hist: np.ndarray,
    hist_n: int,
    ttc_frac: float,
    pos: np.ndarray | np.void,
    mark_value: int,
    start_cash: int,
    out: np.ndarray,
) -> None:
    """Full observation of live book slot ``m`` (push the current mid into hist first).

    Args:
        qty, best, m: live book arrays (core.book) and slot.
        hist, hist_n, ttc_frac: as ``market_features_live``.
        pos: POSITION_DTYPE record or array (row 0); mark_value: money value of its open
            position (``core.account.position_value`` over the same book); start_cash: money.
        out: float32 [N_FEATURES].
    """
    lpx = np.empty((2, FEATURE_TOP_LEVELS), dtype=np.int16)
    lqty = np.empty((2, FEATURE_TOP_LEVELS), dtype=np.int64)
    book_top_k(qty, best, m, FEATURE_TOP_LEVELS, lpx, lqty)
    observation_from_levels(lpx, lqty, hist, hist_n, ttc_frac, pos, mark_value, start_cash, out)


# =========================================================================== facade


def check_levels(px: np.ndarray, qty: np.ndarray) -> int:
    """Validate a [T, 2, K] depth pair for the feature kernels; return T.

    Raises:
        ValueError: naming the wrong dtype or shape (K must be >= FEATURE_TOP_LEVELS).
    """
    if not isinstance(px, np.ndarray) or px.dtype != np.int16 or px.ndim != 3:
        raise ValueError(f"px must be an int16 [T, 2, K] array, got {getattr(px, 'dtype', px)}")
    if px.shape[1] != 2 or px.shape[2] < FEATURE_TOP_LEVELS:
        raise ValueError(f"px must be [T, 2, K>={FEATURE_TOP_LEVELS}], got shape {px.shape}")
    if not isinstance(qty, np.ndarray) or qty.dtype != np.int64 or qty.shape != px.shape:
        raise ValueError(
            f"qty must be int64 with px's shape {px.shape}, got "
            f"{getattr(qty, 'dtype', qty)} {getattr(qty, 'shape', None)}"
        )
    return int(px.shape[0])


def market_features_batch(
    px: np.ndarray, qty: np.ndarray, ttc: np.ndarray, reset: np.ndarray, out: np.ndarray
) -> None:
    """Validating edge of ``market_features_batch_kernel`` (same arguments, same result).

    Raises:
        ValueError: a wrong dtype or shape (e.g. fewer than FEATURE_TOP_LEVELS depth levels,
            which the kernel would read past).
    """
    t_len = check_levels(px, qty)
    if ttc.shape != (t_len,) or reset.shape != (t_len,):
        raise ValueError(f"ttc and reset must be [T={t_len}], got {ttc.shape}, {reset.shape}")
    if out.dtype != np.float32 or out.shape != (t_len, N_MARKET_FEATURES):
        raise ValueError(
            f"out must be float32 [{t_len}, {N_MARKET_FEATURES}], got {out.dtype} {out.shape}"
        )
    market_features_batch_kernel(px, qty, ttc, reset, out)


def mids_batch(px: np.ndarray, qty: np.ndarray, out: np.ndarray) -> None:
    """Validating edge of ``mids_batch_kernel`` (NaN where the book is not two-sided).

    Raises:
        ValueError: a wrong dtype or shape.
    """
    if not isinstance(px, np.ndarray) or px.ndim != 3 or px.shape[1] != 2 or px.shape[2] < 1:
        raise ValueError(f"px must be [T, 2, K>=1], got {getattr(px, 'shape', px)}")
    if out.dtype != np.float64 or out.shape != (px.shape[0],):
        raise ValueError(f"out must be float64 [{px.shape[0]}], got {out.dtype} {out.shape}")
    mids_batch_kernel(px, qty, out)


def features_for_levels(
    px: np.ndarray, qty: np.ndarray, ttc: np.ndarray, reset: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and run ``market_features_batch`` + ``mids_batch`` (for datasets).

    Args:
        px: int16 [T, 2, K>=FEATURE_TOP_LEVELS]; qty: int64 [T, 2, K].
        ttc: float32 [T]; reset: uint8 [T] (row 0 is always treated as a reset).

    Returns:
        (features float32 [T, N_MARKET_FEATURES], mid float64 [T]).

    Raises:
        ValueError: on a wrong dtype or shape (named in the message).
    """
    t_len = check_levels(px, qty)
    ttc = np.ascontiguousarray(ttc, dtype=np.float32)
    reset = np.ascontiguousarray(reset, dtype=np.uint8).copy()
    if ttc.shape != (t_len,) or reset.shape != (t_len,):
        raise ValueError(f"ttc and reset must be [T={t_len}], got {ttc.shape}, {reset.shape}")
    if t_len:
        reset[0] = 1
    out = np.empty((t_len, N_MARKET_FEATURES), dtype=np.float32)
    mid = np.empty(t_len, dtype=np.float64)
    market_features_batch_kernel(px, qty, ttc, reset, out)
    mids_batch_kernel(px, qty, mid)
    return out, mid
