"""The sim's market model: latent outcomes, biased market makers, takers, lifecycle.

**What the market knows.**  A market that closes carries a latent score ``x`` (Brownian
motion in units of its lifetime: ``x`` moves by N(0, dt / lifetime) in ``dt``, plus rare
jumps of ``jump_scale`` * N(0, time left / lifetime)).  It resolves YES iff ``x > 0`` at
close, so the fair probability at time ``t`` is ``p = Phi(x / sqrt(time left / lifetime))``:
informative from the start and ever more accurate as close approaches (``p`` -> 0 or 1).
Fixed markets (``markets=``, the wave-1 mode) have a logit random walk instead (``vol`` per
step) and resolve YES with the probability they have at close.

**What the market quotes (the planted bias).**  Makers quote around a *distorted*
probability ``q``: with ``l = logit(p)`` and the series' bias knob ``b``,
``logit(q) = l * (1 - bias_longshot * b)`` for ``l < 0`` and ``l * (1 + bias_favorite * b)``
for ``l > 0``, and noise takers lean to YES (``taker_tilt * b``).  ``b = 0`` is an efficient
market (``q = p``).  ``b > 0`` plants Kalshi's published pattern: YES is overpriced, most
at the extremes -- YES longshots win less often than their price says (favourite-longshot
bias), NO longshots more often.  ``b = 1`` is calibrated to the public figures (docs/sim.md
has the table measured from this model).

**Flow.**  A maker quotes a bid ladder of ``levels`` grid prices on each side below ``q``:
YES bids strictly below ``q``, NO bids strictly below ``1 - q`` (never crossed, never
locked).  Each step picks one open market and does one of:

* trade (``p_trade``): an informed taker (``informed_frac``) buys YES when ``p`` is above
  the YES ask or sells YES (buys NO) when ``p`` is below the YES bid; otherwise a noise
  taker buys YES with probability ``yes_taker_frac``.  It takes up to its size from the
  opposite top level (one ``orderbook_delta`` + one ``trade``).
* requote (``p_requote``): the maker moves both ladders to the current ``q`` (the side
  moving down first, so the book is never crossed between messages).
* refresh (otherwise): one ladder level gets a new size (or is pulled, ``p_pull``).

**Lifecycle.**  A listed market (``MS_INITIALIZED``) opens at its open time with the
maker's ladders; at ``close_ts`` the maker pulls every level and the market closes;
``determine_delay_ms`` later the result is drawn from ``p`` at close (yes with probability
``p``), and ``settle_delay_ms`` after that it settles.  Rolling listings
(:mod:`kalshi_rl.sim.listings`) reuse settled slots for new markets.  Every random number
comes from seeded ``numpy.random.Generator`` streams (drawn in blocks, consumed by an njit
kernel), so a seed and config give the same event stream whatever the batch sizes.

The books live in a :class:`core.book.BookSet` (slot i = market i); the kernel reads the
ladder from it and applies every delta it emits through ``core.book.book_apply_delta``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from core.book import BookSet, book_apply_deltas
from core.dtypes import (
    DELTA_DTYPE,
    EV_DELTA,
    EV_FAIR,
    EV_LIFECYCLE,
    EV_TRADE,
    FAIR_SCALE,
    LC_ACTIVATED,
    LC_CLOSED,
    LC_CREATED,
    LC_DETERMINED,
    LC_SETTLED,
    MS_CLOSED,
    MS_DETERMINED,
    MS_FREE,
    MS_INITIALIZED,
    MS_OPEN,
    MS_SETTLED,
    NO_PRICE,
    PRICE_MAX,
    RESULT_NO,
    RESULT_UNKNOWN,
    RESULT_YES,
    SIDE_NO,
    SIDE_YES,
    SIM_BIAS_FAVORITE,
    SIM_BIAS_LONGSHOT,
    SIM_EVENT_DTYPE,
    SIM_LATENT_DTYPE,
    SIM_MARKET_DTYPE,
    SNAPSHOT_LEVEL_DTYPE,
    ST_OK,
)
from kalshi_rl.errors import ConfigError
from kalshi_rl.sim.grid import PriceLevelStructure, parse_structure, price_grid
from kalshi_rl.sim.listings import Listing, ListingSchedule

N_DRAWS = 10  # uniforms per step
N_NORMALS = 2  # normals per step
_NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class ModelParams:
    """Knobs of the market model (see the module docstring).

    Attributes:
        levels: ladder depth per side (grid prices).
        half_spread: grid steps between ``q`` and each side's best bid (>= 1).
        vol: logit random-walk std per step (markets that never close).
        jump_prob: probability of a jump per step of the market.
        jump_scale: std of a jump (logit units for markets that never close; for markets
            that close, in units of the remaining uncertainty).
        p_trade: probability a step is a trade.
        p_requote: probability a step is a requote (else a size refresh).
        informed_frac: share of takers that trade toward the fair probability ``p``.
        yes_taker_frac: probability a noise taker buys YES (else NO) in an efficient market.
        taker_tilt: added to ``yes_taker_frac`` per unit of the market's bias (max 0.95).
        mean_size: mean taker size in contracts (geometric-like).
        max_quote: maximum maker level size in contracts.
        p_pull: probability a refresh pulls the level (size 0).
        frac_prob: probability a size carries a fractional part (hundredths).
        lifetime_ms: sim ms from start to close of fixed markets (None: never close).
        determine_delay_ms: close -> determined.
        settle_delay_ms: determined -> settled.
        bias_longshot, bias_favorite: the planted mispricing per unit of a market's bias knob
            (see the module docstring; calibrated in docs/sim.md).
        quote_cap: largest |logit| the makers quote (0.25% .. 99.75% at 6.0).
        open_spread: std of a listed market's latent score at open (its fair
            probability at open is Phi(N(0, open_spread))).
        track: the maker requotes to ``q`` on every step of its market (False: only on
            requote steps, so takers can pick off stale quotes).
        emit_fair: after each trade emit an EV_FAIR event with the fair probability
            (calibration only; the server sends nothing for it).
    """

    levels: int = 8
    half_spread: int = 1
    vol: float = 0.02
    jump_prob: float = 0.001
    jump_scale: float = 1.0
    p_trade: float = 0.2
    p_requote: float = 0.3
    informed_frac: float = 0.1
    yes_taker_frac: float = 0.5
    taker_tilt: float = 0.15
    mean_size: float = 10.0
    max_quote: int = 500
    p_pull: float = 0.1
    frac_prob: float = 0.05
    lifetime_ms: int | None = None
    determine_delay_ms: int = 1000
    settle_delay_ms: int = 1000
    bias_longshot: float = SIM_BIAS_LONGSHOT
    bias_favorite: float = SIM_BIAS_FAVORITE
    quote_cap: float = 6.0
    open_spread: float = 0.7
    track: bool = True
    emit_fair: bool = False

    def check(self) -> None:
        """Raise ConfigError naming the first bad knob."""
        if not 1 <= self.levels <= 64:
            raise ConfigError(f"levels must be in 1..64, got {self.levels}")
        if self.half_spread < 1:
            raise ConfigError(f"half_spread must be >= 1 grid step, got {self.half_spread}")
        if not (self.p_trade >= 0 and self.p_requote >= 0 and self.p_trade + self.p_requote <= 1):
            raise ConfigError(f"p_trade + p_requote must be within 0..1: {self}")
        if self.max_quote < 1 or self.mean_size <= 0:
            raise ConfigError("max_quote and mean_size must be positive")
        if self.lifetime_ms is not None and self.lifetime_ms <= 0:
            raise ConfigError(f"lifetime_ms must be positive, got {self.lifetime_ms}")
        if not (0.0 <= self.informed_frac <= 1.0 and 0.0 <= self.yes_taker_frac <= 1.0):
            raise ConfigError("informed_frac and yes_taker_frac must be within 0..1")
        if self.determine_delay_ms < 0 or self.settle_delay_ms < 0:
            raise ConfigError("determine_delay_ms and settle_delay_ms must be >= 0")
        if self.quote_cap <= 0:
            raise ConfigError(f"quote_cap must be positive, got {self.quote_cap}")


def check_bias(bias: float, params: ModelParams) -> None:
    """Raise ConfigError when a bias knob would flip the price order (slope <= 0)."""
    if bias < 0 or 1.0 - params.bias_longshot * bias <= 0.05:
        raise ConfigError(f"bias must be >= 0 and keep prices monotone, got {bias}")


@dataclass(frozen=True)
class MarketSpec:
    """One simulated market.

    Attributes:
        ticker, event_ticker, title, structure: what REST reports.
        p0: fair YES probability at the start.
        bias: planted mispricing knob (0 = efficient; see the module docstring).
        series: series ticker ("" for a fixed market).
        open_ts, close_ts: unix ms (None: the model's start / ``lifetime_ms``).
        serial: listing number of a rolling market (-1 for a fixed market).
    """

    ticker: str
    event_ticker: str
    title: str
    structure: PriceLevelStructure = PriceLevelStructure.LINEAR_CENT
    p0: float = 0.5
    bias: float = 0.0
    series: str = ""
    open_ts: int | None = None
    close_ts: int | None = None
    serial: int = -1


class MarketState(NamedTuple):
    """What REST shows of one market (a live slot's now, or a retired market's last)."""

    spec: MarketSpec
    status: int  # MS_*
    result: int  # RESULT_*
    volume: int
    last_price: int
    open_ts: int
    close_ts: int


def default_markets(n: int, structures: tuple[str, ...] = ("linear_cent",)) -> list[MarketSpec]:
    """``n`` markets SIM-<i>, structures assigned round robin, p0 spread over 0.2..0.8."""
    if n < 1:
        raise ConfigError(f"need at least one market, got {n}")
    parsed = [parse_structure(s) for s in structures]
    out = []
    for i in range(n):
        event = f"SIMEV-{i // 4:03d}"
        out.append(
            MarketSpec(
                ticker=f"{event}-M{i:03d}",
                event_ticker=event,
                title=f"Simulated market {i}",
                structure=parsed[i % len(parsed)],
                p0=0.2 + 0.6 * ((i * 0.618034) % 1.0),
            )
        )
    return out


# =========================================================================== kernels


@njit(cache=True)
def _count_below(grid: np.ndarray, n: int, x: float) -> int:
    """Number of grid[:n] prices strictly below x (binary search)."""
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) // 2
        if grid[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _emit(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    out: np.ndarray, n: int, ts: int, step: int, m: int, kind: int, side: int, price: int, qty: int
) -> int:
    e = out[n]
    e["ts"] = ts
    e["qty"] = qty
    e["group"] = step
    e["market"] = m
    e["price"] = price
    e["kind"] = kind
    e["side"] = side
    return n + 1


@njit(cache=True)
def _delta(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    out: np.ndarray,
    n: int,
    qty: np.ndarray,
    best: np.ndarray,
    meta: np.ndarray,
    scr: np.ndarray,
    ts: int,
    step: int,
    m: int,
    side: int,
    price: int,
    d: int,
) -> int:
    r = scr[0]
    r["market"] = m
    r["side"] = side
    r["price"] = price
    r["delta"] = d
    r["seq"] = step
    r["exch_ts"] = ts
    r["recv_ts"] = ts
    book_apply_deltas(qty, best, meta, scr)
    return _emit(out, n, ts, step, m, EV_DELTA, side, price, d)


@njit(cache=True)
def _top_level(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    qty: np.ndarray, grid: np.ndarray, anchor: np.ndarray, m: int, side: int, levels: int
) -> int:
    """Price of the highest non-empty ladder level of ``side`` (NO_PRICE if none)."""
    a = anchor[m, side]
    if a < 0:
        return NO_PRICE
    for k in range(levels):
        gi = a - k
        if gi < 0:
            break
        p = grid[m, gi]
        if qty[m, side, p] > 0:
            return p
    return NO_PRICE


@njit(cache=True)
def _quote_size(u: float, k: int, max_quote: int, frac: bool) -> int:
    """A maker level size in count units, varying by level via a cheap hash of u."""
    # 32-bit integer hash (Wang/murmur finaliser) so neighbouring levels look unrelated
    h = (int(u * 2147483648.0) + k * 0x9E3779B9) & 0xFFFFFFFF
    h = ((h ^ (h >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    h = ((h ^ (h >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    h ^= h >> 16
    size = (1 + h % max_quote) * 100
    if frac:
        size -= 1 + h % 99
    return size


@njit(cache=True)
def _shift_side(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    out: np.ndarray,
    n: int,
    qty: np.ndarray,
    best: np.ndarray,
    meta: np.ndarray,
    scr: np.ndarray,
    grid: np.ndarray,
    anchor: np.ndarray,
    ts: int,
    step: int,
    m: int,
    side: int,
    new: int,
    levels: int,
    u: float,
    max_quote: int,
) -> int:
    """Move one ladder so its top is grid index ``new`` (-1 = pull it), emitting deltas.

    Levels both ladders share keep their size.  Removals of levels above the new top come
    first, so a ladder moving down never overlaps the opposite side's new top.
    """
    old = anchor[m, side]
    if old == new:
        return n
    # removals: old levels outside the new window, top first
    if old >= 0:
        for k in range(levels):
            gi = old - k
            if gi < 0:
                break
            if new < 0 or gi > new or gi <= new - levels:
                p = grid[m, gi]
                q = qty[m, side, p]
                if q > 0:
                    n = _delta(out, n, qty, best, meta, scr, ts, step, m, side, p, -q)
    # additions: new levels outside the old window, top first
    if new >= 0:
        for k in range(levels):
            gi = new - k
            if gi < 0:
                break
            if old < 0 or gi > old or gi <= old - levels:
                p = grid[m, gi]
                n = _delta(
                    out,
                    n,
                    qty,
                    best,
                    meta,
                    scr,
                    ts,
                    step,
                    m,
                    side,
                    p,
                    _quote_size(u, k, max_quote, False),
                )
    anchor[m, side] = new
    return n


@njit(cache=True)
def _requote(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    out: np.ndarray,
    n: int,
    qty: np.ndarray,
    best: np.ndarray,
    meta: np.ndarray,
    scr: np.ndarray,
    grid: np.ndarray,
    anchor: np.ndarray,
    mk: np.ndarray,
    ts: int,
    step: int,
    m: int,
    levels: int,
    half_spread: int,
    u: float,
    max_quote: int,
) -> int:
    p = 1.0 / (1.0 + math.exp(-mk[m]["logit"])) * PRICE_MAX
    gl = mk[m]["grid_len"]
    ty = _count_below(grid[m], gl, p) - half_spread
    tn = _count_below(grid[m], gl, PRICE_MAX - p) - half_spread
    ty = max(ty, -1)
    tn = max(tn, -1)
    # the side whose top goes down moves first: the book is never crossed in between
    if tn - anchor[m, SIDE_NO] < ty - anchor[m, SIDE_YES]:
        n = _shift_side(
            out,
            n,
            qty,
            best,
            meta,
            scr,
            grid,
            anchor,
            ts,
            step,
            m,
            SIDE_NO,
            tn,
            levels,
            u,
            max_quote,
        )
        n = _shift_side(
            out,
            n,
            qty,
            best,
            meta,
            scr,
            grid,
            anchor,
            ts,
            step,
            m,
            SIDE_YES,
            ty,
            levels,
            u,
            max_quote,
        )
    else:
        n = _shift_side(
            out,
            n,
            qty,
            best,
            meta,
            scr,
            grid,
            anchor,
            ts,
            step,
            m,
            SIDE_YES,
            ty,
            levels,
            u,
            max_quote,
        )
        n = _shift_side(
            out,
            n,
            qty,
            best,
            meta,
            scr,
            grid,
            anchor,
            ts,
            step,
            m,
            SIDE_NO,
            tn,
            levels,
            u,
            max_quote,
        )
    return n


@njit(cache=True)
def _fair_logit(x: float, sigma: float, tau: float) -> float:
    """log-odds of ``x + sigma * W(tau) > 0``; tau <= 0 is the outcome itself (+/-30)."""
    if tau <= 0.0:
        return 30.0 if x > 0.0 else -30.0
    z = x / (sigma * math.sqrt(tau))
    z = min(8.0, max(-8.0, z))
    p = 0.5 * math.erfc(-z / math.sqrt(2.0))
    p = min(max(p, 1e-15), 1.0 - 1e-15)
    return math.log(p / (1.0 - p))


@njit(cache=True)
def quote_logit(fair: float, bias: float, longshot: float, favorite: float, cap: float) -> float:
    """The makers' log-odds for fair log-odds ``fair`` under the planted ``bias``.

    ``fair * (1 - longshot * bias)`` below 50% (YES longshots quoted too high) and
    ``fair * (1 + favorite * bias)`` above (YES favourites quoted too high, i.e. NO
    longshots too cheap), clipped to +/- ``cap``.
    """
    if fair < 0.0:
        q = fair * (1.0 - longshot * bias)
    else:
        q = fair * (1.0 + favorite * bias)
    return min(cap, max(-cap, q))


@njit(cache=True)
def _probability(lat: np.ndarray, mk: np.ndarray, m: int) -> float:
    """Probability that market ``m`` resolves YES given its latent state now."""
    if lat[m]["sigma"] > 0.0:
        tau = float(mk[m]["close_ts"] - lat[m]["last_ts"])
        lg = _fair_logit(lat[m]["x"], lat[m]["sigma"], tau)
    else:
        lg = lat[m]["true_logit"]
    return 1.0 / (1.0 + math.exp(-lg))


@njit(cache=True)
def _trade(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    out: np.ndarray,
    n: int,
    qty: np.ndarray,
    best: np.ndarray,
    meta: np.ndarray,
    scr: np.ndarray,
    grid: np.ndarray,
    anchor: np.ndarray,
    mk: np.ndarray,
    lat: np.ndarray,
    ts: int,
    step: int,
    m: int,
    levels: int,
    u: np.ndarray,
    informed_frac: float,
    yes_taker_frac: float,
    taker_tilt: float,
    mean_size: float,
    frac_prob: float,
    emit_fair: bool,
) -> int:
    yb = _top_level(qty, grid, anchor, m, SIDE_YES, levels)
    nb = _top_level(qty, grid, anchor, m, SIDE_NO, levels)
    taker = -1
    if u[3] < informed_frac:
        p = 1.0 / (1.0 + math.exp(-lat[m]["true_logit"])) * PRICE_MAX
        if nb >= 0 and p > PRICE_MAX - nb:
            taker = SIDE_YES
        elif yb >= 0 and p < yb:
            taker = SIDE_NO
    if taker < 0:
        # noise takers lean to YES the more the market overprices it (the "optimism" the
        # published maker/taker returns show): they pay the planted bias
        yes_frac = min(0.95, yes_taker_frac + taker_tilt * lat[m]["bias"])
        taker = SIDE_YES if u[4] < yes_frac else SIDE_NO
    # a YES taker lifts the YES ask = takes the best NO bid, and vice versa
    hit = SIDE_NO if taker == SIDE_YES else SIDE_YES
    price = nb if hit == SIDE_NO else yb
    if price < 0:
        return n
    size = (1 + int(-math.log(1.0 - u[5]) * mean_size)) * 100
    if u[6] < frac_prob:
        size = max(1, int(size * u[7]))
    avail = qty[m, hit, price]
    take = min(size, avail)
    n = _delta(out, n, qty, best, meta, scr, ts, step, m, hit, price, -take)
    yes_price = price if hit == SIDE_YES else PRICE_MAX - price
    mk[m]["volume"] += take
    mk[m]["last_price"] = yes_price
    n = _emit(out, n, ts, step, m, EV_TRADE, taker, yes_price, take)
    if emit_fair:
        fair = 1.0 / (1.0 + math.exp(-lat[m]["true_logit"]))
        n = _emit(out, n, ts, step, m, EV_FAIR, 0, 0, int(fair * FAIR_SCALE))
    return n


@njit(cache=True)
def _refresh(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    out: np.ndarray,
    n: int,
    qty: np.ndarray,
    best: np.ndarray,
    meta: np.ndarray,
    scr: np.ndarray,
    grid: np.ndarray,
    anchor: np.ndarray,
    ts: int,
    step: int,
    m: int,
    levels: int,
    u: np.ndarray,
    max_quote: int,
    p_pull: float,
    frac_prob: float,
) -> int:
    side = SIDE_YES if u[3] < 0.5 else SIDE_NO
    a = anchor[m, side]
    gi = a - int(u[4] * levels)
    if a < 0 or gi < 0:
        return n
    p = grid[m, gi]
    new = 0
    if u[5] >= p_pull:
        new = _quote_size(u[6], 0, max_quote, u[7] < frac_prob)
    d = new - qty[m, side, p]
    if d == 0:
        return n
    return _delta(out, n, qty, best, meta, scr, ts, step, m, side, p, d)


@njit(cache=True)
def _pull_all(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    out: np.ndarray,
    n: int,
    qty: np.ndarray,
    best: np.ndarray,
    meta: np.ndarray,
    scr: np.ndarray,
    grid: np.ndarray,
    anchor: np.ndarray,
    ts: int,
    step: int,
    m: int,
    levels: int,
) -> int:
    for side in range(2):
        n = _shift_side(
            out, n, qty, best, meta, scr, grid, anchor, ts, step, m, side, -1, levels, 0.0, 1
        )
    return n


@njit(cache=True)
def _deadline(mk: np.ndarray, lat: np.ndarray, m: int) -> int:
    """Next lifecycle time of market ``m`` (_NEVER when nothing is due)."""
    st = mk[m]["status"]
    if st == MS_INITIALIZED:
        return lat[m]["open_ts"]
    if st == MS_OPEN:
        return mk[m]["close_ts"]
    if st == MS_CLOSED:
        return mk[m]["determine_ts"]
    if st == MS_DETERMINED:
        return mk[m]["settle_ts"]
    return _NEVER


@njit(cache=True)
def index_open(mk: np.ndarray, open_idx: np.ndarray, clock: np.ndarray) -> None:
    """Rebuild the list of open slots (``open_idx[:clock[3]]``)."""
    k = 0
    for m in range(mk.shape[0]):
        if mk[m]["status"] == MS_OPEN:
            open_idx[k] = m
            k += 1
    clock[3] = k


@njit(cache=True)
def _lifecycle(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    out: np.ndarray,
    n: int,
    qty: np.ndarray,
    best: np.ndarray,
    meta: np.ndarray,
    scr: np.ndarray,
    grid: np.ndarray,
    anchor: np.ndarray,
    mk: np.ndarray,
    lat: np.ndarray,
    open_idx: np.ndarray,
    clock: np.ndarray,
    ts: int,
    step: int,
    levels: int,
    half_spread: int,
    max_quote: int,
    longshot: float,
    favorite: float,
    cap: float,
) -> int:
    """Advance every market whose deadline passed; sets clock[2] (next deadline) and the
    open list.  Returns n."""
    nxt = _NEVER
    for m in range(mk.shape[0]):
        st = mk[m]["status"]
        if st == MS_INITIALIZED and ts >= lat[m]["open_ts"]:
            mk[m]["status"] = MS_OPEN
            lat[m]["last_ts"] = ts
            if lat[m]["sigma"] > 0.0:
                tau = float(mk[m]["close_ts"] - ts)
                lat[m]["true_logit"] = _fair_logit(lat[m]["x"], lat[m]["sigma"], tau)
            mk[m]["logit"] = quote_logit(
                lat[m]["true_logit"], lat[m]["bias"], longshot, favorite, cap
            )
            n = _requote(
                out,
                n,
                qty,
                best,
                meta,
                scr,
                grid,
                anchor,
                mk,
                ts,
                step,
                m,
                levels,
                half_spread,
                mk[m]["close_u"],
                max_quote,
            )
            n = _emit(out, n, ts, step, m, EV_LIFECYCLE, LC_ACTIVATED, RESULT_UNKNOWN, 0)
        elif st == MS_OPEN and ts >= mk[m]["close_ts"]:
            n = _pull_all(out, n, qty, best, meta, scr, grid, anchor, ts, step, m, levels)
            mk[m]["status"] = MS_CLOSED
            n = _emit(out, n, ts, step, m, EV_LIFECYCLE, LC_CLOSED, RESULT_UNKNOWN, 0)
        elif st == MS_CLOSED and ts >= mk[m]["determine_ts"]:
            res = RESULT_YES if mk[m]["close_u"] < _probability(lat, mk, m) else RESULT_NO
            mk[m]["result"] = res
            mk[m]["status"] = MS_DETERMINED
            n = _emit(out, n, ts, step, m, EV_LIFECYCLE, LC_DETERMINED, res, 0)
        elif st == MS_DETERMINED and ts >= mk[m]["settle_ts"]:
            mk[m]["status"] = MS_SETTLED
            n = _emit(out, n, ts, step, m, EV_LIFECYCLE, LC_SETTLED, mk[m]["result"], 0)
        nxt = min(nxt, _deadline(mk, lat, m))
    clock[2] = nxt
    index_open(mk, open_idx, clock)
    return n


@njit(cache=True)
def _move_latent(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    mk: np.ndarray,
    lat: np.ndarray,
    m: int,
    ts: int,
    z0: float,
    z1: float,
    jump: bool,
    vol: float,
    jump_scale: float,
    longshot: float,
    favorite: float,
    cap: float,
) -> None:
    """Move market ``m``'s latent state to ``ts`` and re-derive the quoted log-odds."""
    sigma = lat[m]["sigma"]
    if sigma > 0.0:
        dt = float(ts - lat[m]["last_ts"])
        x = lat[m]["x"]
        if dt > 0.0:
            x += sigma * math.sqrt(dt) * z0
            lat[m]["last_ts"] = ts
        tau = float(mk[m]["close_ts"] - ts)
        if jump and tau > 0.0:
            x += jump_scale * sigma * math.sqrt(tau) * z1
        lat[m]["x"] = x
        lg = _fair_logit(x, sigma, tau)
    else:
        lg = lat[m]["true_logit"] + vol * z0
        if jump:
            lg += jump_scale * z1
        lg = min(4.5, max(-4.5, lg))
    lat[m]["true_logit"] = lg
    mk[m]["logit"] = quote_logit(lg, lat[m]["bias"], longshot, favorite, cap)


@njit(cache=True)
def generate_steps(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    out: np.ndarray,
    uni: np.ndarray,
    nrm: np.ndarray,
    qty: np.ndarray,
    best: np.ndarray,
    meta: np.ndarray,
    scr: np.ndarray,
    grid: np.ndarray,
    anchor: np.ndarray,
    mk: np.ndarray,
    lat: np.ndarray,
    open_idx: np.ndarray,
    clock: np.ndarray,
    ts0: int,
    ms_per_step: float,
    levels: int,
    half_spread: int,
    vol: float,
    jump_prob: float,
    jump_scale: float,
    p_trade: float,
    p_requote: float,
    informed_frac: float,
    yes_taker_frac: float,
    taker_tilt: float,
    mean_size: float,
    max_quote: int,
    p_pull: float,
    frac_prob: float,
    longshot: float,
    favorite: float,
    cap: float,
    track: bool,
    emit_fair: bool,
) -> int:
    """Run ``uni.shape[0]`` model steps, appending events to ``out``.

    Args:
        out: SIM_EVENT_DTYPE buffer, large enough for every step (see MarketModel).
        uni, nrm: float64 [steps, N_DRAWS] uniforms and [steps, N_NORMALS] normals.
        qty, best, meta: the sim's BookSet arrays (slot == market index).
        scr: DELTA_DTYPE [1] scratch record for applying one delta.
        grid: int16 [markets, G] tick grid per market; anchor: int32 [markets, 2].
        mk: SIM_MARKET_DTYPE [markets]; lat: SIM_LATENT_DTYPE [markets].
        open_idx: int32 [markets], the open slots are ``open_idx[:clock[3]]``.
        clock: int64 [4] = (steps done, messages emitted, next lifecycle deadline, open
            markets).
        ts0, ms_per_step: events of step i carry ts = ts0 + i * ms_per_step.
        the rest: ModelParams fields (longshot, favorite, cap, track = bias_longshot,
            bias_favorite, quote_cap, track).

    Returns:
        Number of events written.
    """
    n = 0
    for i in range(uni.shape[0]):
        step = clock[0]
        ts = ts0 + int(step * ms_per_step)
        if ts >= clock[2]:
            n = _lifecycle(
                out,
                n,
                qty,
                best,
                meta,
                scr,
                grid,
                anchor,
                mk,
                lat,
                open_idx,
                clock,
                ts,
                step,
                levels,
                half_spread,
                max_quote,
                longshot,
                favorite,
                cap,
            )
        clock[0] = step + 1
        n_open = clock[3]
        if n_open == 0:
            continue
        u = uni[i]
        m = open_idx[min(int(u[0] * n_open), n_open - 1)]
        _move_latent(
            mk,
            lat,
            m,
            ts,
            nrm[i, 0],
            nrm[i, 1],
            u[1] < jump_prob,
            vol,
            jump_scale,
            longshot,
            favorite,
            cap,
        )
        if track:  # the maker follows q at once: no stale quote to pick off
            n = _requote(
                out,
                n,
                qty,
                best,
                meta,
                scr,
                grid,
                anchor,
                mk,
                ts,
                step,
                m,
                levels,
                half_spread,
                u[8],
                max_quote,
            )
        if u[2] < p_trade:
            n = _trade(
                out,
                n,
                qty,
                best,
                meta,
                scr,
                grid,
                anchor,
                mk,
                lat,
                ts,
                step,
                m,
                levels,
                u,
                informed_frac,
                yes_taker_frac,
                taker_tilt,
                mean_size,
                frac_prob,
                emit_fair,
            )
        elif u[2] < p_trade + p_requote:
            n = _requote(
                out,
                n,
                qty,
                best,
                meta,
                scr,
                grid,
                anchor,
                mk,
                ts,
                step,
                m,
                levels,
                half_spread,
                u[8],
                max_quote,
            )
        else:
            n = _refresh(
                out,
                n,
                qty,
                best,
                meta,
                scr,
                grid,
                anchor,
                ts,
                step,
                m,
                levels,
                u,
                max_quote,
                p_pull,
                frac_prob,
            )
    clock[1] += n
    return n


# =========================================================================== facade


def empty_book(books: BookSet, slot: int) -> None:
    """Make ``slot`` of ``books`` a valid book with no levels (a newly listed market)."""
    books.clear(slot)
    # the empty-snapshot marker row validates a book with no levels
    marker = np.zeros(1, dtype=SNAPSHOT_LEVEL_DTYPE)
    marker["side"] = -1
    marker["price"] = NO_PRICE
    marker["market"] = slot
    if books.apply_snapshot(slot, marker) != ST_OK:
        raise ConfigError(f"could not initialise the book of slot {slot}")


RETIRED_KEEP = 10_000  # retired markets REST still answers for
_LISTED_KEEP = 4096  # listing serial -> (slot, spec) kept for the dispatcher


@dataclass
class MarketModel:
    """The seeded market model over a BookSet (see the module docstring).

    Args:
        markets: fixed markets (slot i = markets[i]); empty with a ``schedule``.
        params: model knobs.
        seed: seed of the numpy Generators.
        ts0: sim clock start, unix ms.
        ms_per_step: sim ms per model step (the server sets it from the message rate).
        initial_quotes: start fixed markets with the makers' ladders (False: empty books).
        schedule: rolling listings (kalshi_rl.sim.listings); their markets take free slots.
        slots: book slots for rolling listings (None: what the schedule needs).
    """

    markets: list[MarketSpec | None]
    params: ModelParams = field(default_factory=ModelParams)
    seed: int = 1
    ts0: int = 0
    ms_per_step: float = 5.0
    initial_quotes: bool = True
    schedule: ListingSchedule | None = None
    slots: int | None = None

    def __post_init__(self) -> None:
        self.params.check()
        fixed = [m for m in self.markets if m is not None]
        if self.schedule is not None and fixed:
            raise ConfigError("give fixed markets or a listing schedule, not both")
        if self.schedule is None and not fixed:
            raise ConfigError("need at least one market or a listing schedule")
        if len({m.ticker for m in fixed}) != len(fixed):
            raise ConfigError("market tickers must be unique")
        for spec in fixed:
            check_bias(spec.bias, self.params)
        if self.schedule is not None:
            for s in self.schedule.series:
                check_bias(s.bias, self.params)
            need = self.schedule.slots_needed(
                self.params.determine_delay_ms, self.params.settle_delay_ms
            )
            nm = need if self.slots is None else self.slots
            if nm < need:
                raise ConfigError(f"the series need {need} book slots, got slots={nm}")
            self.markets = [None] * nm
        nm = len(self.markets)
        # one stream per use, so results do not depend on how steps are batched
        init_ss, uni_ss, nrm_ss, list_ss = np.random.SeedSequence(self.seed).spawn(4)
        self.rng = np.random.default_rng(init_ss)
        self._uni = np.random.default_rng(uni_ss)
        self._nrm = np.random.default_rng(nrm_ss)
        self._list_rng = np.random.default_rng(list_ss)
        self.books = BookSet(capacity=nm)
        for i, mspec in enumerate(self.markets):
            name = mspec.ticker if mspec is not None else f"slot-{i}"
            if self.books.slot(name) != i:
                raise ConfigError("BookSet slots must follow market order")
        grids = [price_grid(s) for s in PriceLevelStructure]
        self.grid = np.zeros((nm, max(len(g) for g in grids)), dtype=np.int16)
        self.mk = np.zeros(nm, dtype=SIM_MARKET_DTYPE)
        self.lat = np.zeros(nm, dtype=SIM_LATENT_DTYPE)
        self.mk["last_price"] = NO_PRICE
        self.mk["result"] = RESULT_UNKNOWN
        self.mk["close_ts"] = self.mk["determine_ts"] = self.mk["settle_ts"] = _NEVER
        self.mk["status"] = MS_FREE
        self.lat["series"] = -1
        self.anchor = np.full((nm, 2), -1, dtype=np.int32)
        self.open_idx = np.zeros(nm, dtype=np.int32)
        self._scr = np.zeros(1, dtype=DELTA_DTYPE)
        self.clock = np.array([0, 0, _NEVER, 0], dtype=np.int64)
        self.retired: OrderedDict[str, MarketState] = OrderedDict()
        self.listed: OrderedDict[int, tuple[int, MarketSpec]] = OrderedDict()
        self._pending: list[Listing] = []
        self.n_listed = 0
        self._first: np.ndarray | None = None
        self._init_fixed()
        self._init_books()
        self.clock[2] = min(int(_deadline(self.mk, self.lat, m)) for m in range(nm))
        index_open(self.mk, self.open_idx, self.clock)
        if self.schedule is not None:
            self._first = self._list_due()  # markets listed at ts0, returned by step()

    def _init_fixed(self) -> None:
        p = self.params
        for i, spec in enumerate(self.markets):
            if spec is None:
                continue
            self._set_grid(i, spec.structure)
            p0 = min(0.98, max(0.02, spec.p0))
            lg = math.log(p0 / (1 - p0))
            self.lat[i]["true_logit"] = lg
            self.lat[i]["bias"] = spec.bias
            self.lat[i]["open_ts"] = self.lat[i]["last_ts"] = self.ts0
            if p.lifetime_ms is not None:
                # fixed markets keep the logit random walk (sigma 0); rolling listings
                # carry the latent outcome that converges at close
                close = self.ts0 + p.lifetime_ms
                self.mk[i]["close_ts"] = close
                self.mk[i]["determine_ts"] = close + p.determine_delay_ms
                self.mk[i]["settle_ts"] = close + p.determine_delay_ms + p.settle_delay_ms
            self.mk[i]["logit"] = quote_logit(
                lg, spec.bias, p.bias_longshot, p.bias_favorite, p.quote_cap
            )
            self.mk[i]["status"] = MS_OPEN
        n_fixed = sum(1 for m in self.markets if m is not None)
        self.mk["close_u"][:n_fixed] = self.rng.random(n_fixed)

    def _set_grid(self, slot: int, structure: PriceLevelStructure) -> None:
        g = price_grid(structure)
        self.grid[slot, :] = 0
        self.grid[slot, : len(g)] = g
        self.mk[slot]["grid_len"] = len(g)

    def _empty_book(self, slot: int) -> None:
        empty_book(self.books, slot)
        self.anchor[slot] = -1

    def _init_books(self) -> None:
        """Empty valid books, then one requote per open market (not part of the stream)."""
        for i in range(len(self.markets)):
            self._empty_book(i)
        if not self.initial_quotes:
            return
        out = np.zeros(len(self.markets) * 4 * self.params.levels + 8, dtype=SIM_EVENT_DTYPE)
        p = self.params
        for i, spec in enumerate(self.markets):
            if spec is None:
                continue
            _requote(
                out,
                0,
                self.books.qty,
                self.books.best,
                self.books.meta,
                self._scr,
                self.grid,
                self.anchor,
                self.mk,
                self.ts0,
                -1,
                i,
                p.levels,
                p.half_spread,
                float(self.rng.random()),
                p.max_quote,
            )

    # ----------------------------------------------------------------- rolling listings
    def _free_slot(self) -> int | None:
        st = self.mk["status"]
        free = np.flatnonzero((st == MS_FREE) | (st == MS_SETTLED))
        return int(free[0]) if free.size else None

    def state(self, slot: int) -> MarketState | None:
        """REST view of the market in ``slot`` (None for a free slot)."""
        spec = self.markets[slot]
        if spec is None:
            return None
        r = self.mk[slot]
        return MarketState(
            spec,
            int(r["status"]),
            int(r["result"]),
            int(r["volume"]),
            int(r["last_price"]),
            int(self.lat[slot]["open_ts"]),
            int(r["close_ts"]),
        )

    def spec_by_ticker(self, ticker: str) -> MarketSpec | None:
        """The spec of a live or retired market (None if unknown)."""
        for spec in self.markets:
            if spec is not None and spec.ticker == ticker:
                return spec
        old = self.retired.get(ticker)
        return None if old is None else old.spec

    def _retire(self, slot: int) -> None:
        old = self.state(slot)
        if old is None:
            return
        self.retired[old.spec.ticker] = old
        while len(self.retired) > RETIRED_KEEP:
            self.retired.popitem(last=False)

    def list_market(self, slot: int, listing: Listing) -> MarketSpec:
        """Put ``listing`` into the free (or settled) ``slot``; returns its spec."""
        st = int(self.mk[slot]["status"])
        if st not in (MS_FREE, MS_SETTLED):
            raise ConfigError(f"slot {slot} is still in use (status {st})")
        self._retire(slot)
        p = self.params
        life = listing.close_ts - listing.open_ts
        spec = MarketSpec(
            ticker=listing.ticker,
            event_ticker=listing.event_ticker,
            title=listing.title,
            structure=listing.structure,
            bias=listing.bias,
            series=self.schedule.series[listing.series].ticker if self.schedule else "",
            open_ts=listing.open_ts,
            close_ts=listing.close_ts,
            serial=listing.serial,
        )
        z0 = float(self._list_rng.standard_normal()) * p.open_spread
        spec = replace(spec, p0=float(NormalDist().cdf(z0)))
        self.markets[slot] = spec
        self._set_grid(slot, listing.structure)
        r = self.mk[slot]
        r["close_u"] = float(self._list_rng.random())
        r["close_ts"] = listing.close_ts
        r["determine_ts"] = listing.close_ts + p.determine_delay_ms
        r["settle_ts"] = listing.close_ts + p.determine_delay_ms + p.settle_delay_ms
        r["volume"] = 0
        r["last_price"] = NO_PRICE
        r["result"] = RESULT_UNKNOWN
        r["status"] = MS_INITIALIZED
        la = self.lat[slot]
        la["x"] = z0
        la["sigma"] = 1.0 / math.sqrt(life)
        la["true_logit"] = _fair_logit(z0, 1.0 / math.sqrt(life), float(life))
        la["bias"] = listing.bias
        la["open_ts"] = la["last_ts"] = listing.open_ts
        la["series"] = listing.series
        r["logit"] = quote_logit(
            float(la["true_logit"]), listing.bias, p.bias_longshot, p.bias_favorite, p.quote_cap
        )
        self.books.clear(slot)
        self._empty_book(slot)
        self.clock[2] = min(int(self.clock[2]), listing.open_ts)
        self.listed[listing.serial] = (slot, spec)
        while len(self.listed) > _LISTED_KEEP:
            self.listed.popitem(last=False)
        self.n_listed += 1
        return spec

    def _list_due(self) -> np.ndarray:
        """List every market due now; returns their LC_CREATED events (qty = serial)."""
        if self.schedule is None:
            return np.zeros(0, dtype=SIM_EVENT_DTYPE)
        now = self.now_ms
        todo = self._pending + self.schedule.due(now)
        self._pending = []
        ev = np.zeros(len(todo), dtype=SIM_EVENT_DTYPE)
        n = 0
        for lst in todo:
            slot = self._free_slot()
            if slot is None:  # only with too few slots: wait for one to settle
                self._pending.append(lst)
                continue
            self.list_market(slot, lst)
            e = ev[n]
            e["ts"] = now
            e["qty"] = lst.serial
            e["group"] = int(self.clock[0])
            e["market"] = slot
            e["price"] = RESULT_UNKNOWN
            e["kind"] = EV_LIFECYCLE
            e["side"] = LC_CREATED
            n += 1
        return ev[:n]

    def _steps_until(self, ts: int) -> int:
        """Steps to run before the sim clock reaches ``ts``."""
        s = math.ceil((ts - self.ts0) / self.ms_per_step)
        return max(0, s - int(self.clock[0]))

    def listing(self, serial: int) -> tuple[int, MarketSpec]:
        """(slot, spec) of listing ``serial`` (recent listings only)."""
        return self.listed[serial]

    # ----------------------------------------------------------------- stepping
    def msgs_per_step(self, n_steps: int = 20_000) -> float:
        """Mean events per step, measured on a twin model (same knobs and seed; fixed
        markets that never close, or the same rolling listings).

        Used to turn a message rate into a step rate; deterministic for a config.
        """
        if self.schedule is not None:
            # rolling markets: the same listings at this model's ms_per_step (how much a
            # market moves per step, and so how much its maker requotes, depends on it)
            twin = MarketModel(
                [],
                self.params,
                seed=self.seed,
                ts0=self.ts0,
                ms_per_step=self.ms_per_step,
                schedule=ListingSchedule(self.schedule.series, self.ts0),
                slots=len(self.markets),
            )
        else:
            twin = MarketModel(
                list(self.markets),
                replace(self.params, lifetime_ms=None),
                seed=self.seed,
                ts0=self.ts0,
                ms_per_step=1.0,
            )
        return max(twin.step(n_steps).shape[0] / n_steps, 0.05)

    @property
    def max_events_per_step(self) -> int:
        """Upper bound of events one step can emit (plus a lifecycle sweep)."""
        return 8 * self.params.levels + 3

    def step(self, n_steps: int) -> np.ndarray:
        """Run ``n_steps`` steps; returns their events (SIM_EVENT_DTYPE, a new array).

        With a listing schedule, markets falling due are listed between steps (their
        LC_CREATED events come first, at the step they were listed).
        """
        if self.schedule is None:
            return self._run(n_steps)
        parts = []
        if self._first is not None:
            parts.append(self._first)
            self._first = None
        left = n_steps
        while left > 0:
            parts.append(self._list_due())
            k = min(left, max(1, self._steps_until(self.schedule.next_create_ts())))
            parts.append(self._run(k))
            left -= k
        return np.concatenate(parts)

    def _run(self, n_steps: int) -> np.ndarray:
        p = self.params
        uni = self._uni.random((n_steps, N_DRAWS))
        nrm = self._nrm.standard_normal((n_steps, N_NORMALS))
        cap = n_steps * self.max_events_per_step + len(self.markets) * (4 * p.levels + 4)
        out = np.empty(cap, dtype=SIM_EVENT_DTYPE)
        n = generate_steps(out, uni, nrm, *self.kernel_state(), *self.kernel_scalars())
        return out[:n].copy()

    def kernel_state(self) -> tuple[Any, ...]:
        """The array arguments of ``generate_steps`` after its draws (mutated in place)."""
        b = self.books
        return (
            b.qty,
            b.best,
            b.meta,
            self._scr,
            self.grid,
            self.anchor,
            self.mk,
            self.lat,
            self.open_idx,
            self.clock,
        )

    def kernel_scalars(self) -> tuple[Any, ...]:
        """The scalar arguments of ``generate_steps`` after its arrays (clock, then knobs)."""
        p = self.params
        return (
            self.ts0,
            self.ms_per_step,
            p.levels,
            p.half_spread,
            p.vol,
            p.jump_prob,
            p.jump_scale,
            p.p_trade,
            p.p_requote,
            p.informed_frac,
            p.yes_taker_frac,
            p.taker_tilt,
            p.mean_size,
            p.max_quote,
            p.p_pull,
            p.frac_prob,
            p.bias_longshot,
            p.bias_favorite,
            p.quote_cap,
            p.track,
            p.emit_fair,
        )

    @property
    def now_ms(self) -> int:
        """Sim clock: ts of the next step."""
        return self.ts0 + int(int(self.clock[0]) * self.ms_per_step)

    def all_settled(self) -> bool:
        """True when no market can emit anything any more (never with listings)."""
        if self.schedule is not None:
            return False
        st = self.mk["status"]
        return bool(np.all((st == MS_SETTLED) | (st == MS_FREE)))

    def probability(self, market: int) -> float:
        """Fair YES probability of a market given its latent state (at its last update)."""
        return float(_probability(self.lat, self.mk, market))

    def quoted_probability(self, market: int) -> float:
        """The makers' (biased) YES probability of a market."""
        return 1.0 / (1.0 + math.exp(-float(self.mk[market]["logit"])))
