"""The sim's market model: latent probabilities, market makers, takers, lifecycle.

Per market a latent YES probability ``p = sigmoid(logit)`` follows a logit random walk
(``vol`` per step) with Poisson jumps (``jump_prob`` per step, size ``jump_scale``*N(0,1)).
A market maker quotes a bid ladder of ``levels`` grid prices on each side below ``p``:
YES bids strictly below ``p``, NO bids strictly below ``1 - p`` (so best YES + best NO <
$1: never crossed, never locked).  Each step picks one open market and does one of:

* trade (``p_trade``): an informed taker (``informed_frac``) buys YES when ``p`` is above
  the YES ask or sells YES (buys NO) when ``p`` is below the YES bid; otherwise a noise
  taker picks a side at random.  It takes up to its size from the opposite top level
  (one ``orderbook_delta`` + one ``trade``).
* requote (``p_requote``): the maker moves both ladders to the current ``p`` (the side
  moving down first, so the book is never crossed between messages).
* refresh (otherwise): one ladder level gets a new size (or is pulled, ``p_pull``).

At ``close_ts`` the maker pulls every level and the market closes; ``determine_delay_ms``
later the result is drawn from ``p`` at close (yes with probability ``p``), and
``settle_delay_ms`` after that it settles.  Every random number comes from one seeded
``numpy.random.Generator`` (drawn in blocks, consumed by an njit kernel), so a seed and
config give the same event stream whatever the batch sizes.

The books live in a :class:`core.book.BookSet` (slot i = market i); the kernel reads the
ladder from it and applies every delta it emits through ``core.book.book_apply_delta``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numba import njit

from core.book import BookSet, book_apply_deltas
from core.dtypes import (
    DELTA_DTYPE,
    EV_DELTA,
    EV_LIFECYCLE,
    EV_TRADE,
    LC_CLOSED,
    LC_DETERMINED,
    LC_SETTLED,
    MS_CLOSED,
    MS_DETERMINED,
    MS_OPEN,
    MS_SETTLED,
    NO_PRICE,
    PRICE_MAX,
    RESULT_NO,
    RESULT_UNKNOWN,
    RESULT_YES,
    SIDE_NO,
    SIDE_YES,
    SIM_EVENT_DTYPE,
    SIM_MARKET_DTYPE,
    SNAPSHOT_LEVEL_DTYPE,
    ST_OK,
)
from kalshi_rl.errors import ConfigError
from kalshi_rl.sim.grid import PriceLevelStructure, parse_structure, price_grid

N_DRAWS = 10  # uniforms per step
N_NORMALS = 2  # normals per step
_NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class ModelParams:
    """Knobs of the market model (see the module docstring).

    Attributes:
        levels: ladder depth per side (grid prices).
        half_spread: grid steps between ``p`` and each side's best bid (>= 1).
        vol: logit random-walk std per step of the market.
        jump_prob: probability of a jump per step of the market.
        jump_scale: std of a jump in logit units.
        p_trade: probability a step is a trade.
        p_requote: probability a step is a requote (else a size refresh).
        informed_frac: share of takers that trade toward the latent probability.
        mean_size: mean taker size in contracts (geometric-like).
        max_quote: maximum maker level size in contracts.
        p_pull: probability a refresh pulls the level (size 0).
        frac_prob: probability a size carries a fractional part (hundredths).
        lifetime_ms: sim ms from start to close (None: markets never close).
        determine_delay_ms: close -> determined.
        settle_delay_ms: determined -> settled.
    """

    levels: int = 8
    half_spread: int = 1
    vol: float = 0.02
    jump_prob: float = 0.001
    jump_scale: float = 1.0
    p_trade: float = 0.2
    p_requote: float = 0.3
    informed_frac: float = 0.3
    mean_size: float = 10.0
    max_quote: int = 500
    p_pull: float = 0.1
    frac_prob: float = 0.05
    lifetime_ms: int | None = None
    determine_delay_ms: int = 1000
    settle_delay_ms: int = 1000

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


@dataclass(frozen=True)
class MarketSpec:
    """One simulated market."""

    ticker: str
    event_ticker: str
    title: str
    structure: PriceLevelStructure = PriceLevelStructure.LINEAR_CENT
    p0: float = 0.5


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
    ts: int,
    step: int,
    m: int,
    levels: int,
    u: np.ndarray,
    informed_frac: float,
    mean_size: float,
    frac_prob: float,
) -> int:
    yb = _top_level(qty, grid, anchor, m, SIDE_YES, levels)
    nb = _top_level(qty, grid, anchor, m, SIDE_NO, levels)
    taker = -1
    if u[3] < informed_frac:
        p = 1.0 / (1.0 + math.exp(-mk[m]["logit"])) * PRICE_MAX
        if nb >= 0 and p > PRICE_MAX - nb:
            taker = SIDE_YES
        elif yb >= 0 and p < yb:
            taker = SIDE_NO
    if taker < 0:
        taker = SIDE_YES if u[4] < 0.5 else SIDE_NO
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
    return _emit(out, n, ts, step, m, EV_TRADE, taker, yes_price, take)


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
    ts: int,
    step: int,
    levels: int,
) -> tuple[int, int]:
    """Advance every market whose deadline passed; returns (n, next deadline)."""
    nxt = _NEVER
    for m in range(mk.shape[0]):
        st = mk[m]["status"]
        if st == MS_OPEN and ts >= mk[m]["close_ts"]:
            for side in range(2):
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
                    side,
                    -1,
                    levels,
                    0.0,
                    1,
                )
            mk[m]["status"] = MS_CLOSED
            n = _emit(out, n, ts, step, m, EV_LIFECYCLE, LC_CLOSED, RESULT_UNKNOWN, 0)
        elif st == MS_CLOSED and ts >= mk[m]["determine_ts"]:
            p = 1.0 / (1.0 + math.exp(-mk[m]["logit"]))
            res = RESULT_YES if mk[m]["close_u"] < p else RESULT_NO
            mk[m]["result"] = res
            mk[m]["status"] = MS_DETERMINED
            n = _emit(out, n, ts, step, m, EV_LIFECYCLE, LC_DETERMINED, res, 0)
        elif st == MS_DETERMINED and ts >= mk[m]["settle_ts"]:
            mk[m]["status"] = MS_SETTLED
            n = _emit(out, n, ts, step, m, EV_LIFECYCLE, LC_SETTLED, mk[m]["result"], 0)
        st = mk[m]["status"]
        if st == MS_OPEN:
            nxt = min(nxt, mk[m]["close_ts"])
        elif st == MS_CLOSED:
            nxt = min(nxt, mk[m]["determine_ts"])
        elif st == MS_DETERMINED:
            nxt = min(nxt, mk[m]["settle_ts"])
    return n, nxt


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
    mean_size: float,
    max_quote: int,
    p_pull: float,
    frac_prob: float,
) -> int:
    """Run ``uni.shape[0]`` model steps, appending events to ``out``.

    Args:
        out: SIM_EVENT_DTYPE buffer, large enough for every step (see MarketModel).
        uni, nrm: float64 [steps, N_DRAWS] uniforms and [steps, N_NORMALS] normals.
        qty, best, meta: the sim's BookSet arrays (slot == market index).
        scr: DELTA_DTYPE [1] scratch record for applying one delta.
        grid: int16 [markets, G] tick grid per market; anchor: int32 [markets, 2].
        mk: SIM_MARKET_DTYPE [markets].
        clock: int64 [3] = (steps done, messages emitted, next lifecycle deadline).
        ts0, ms_per_step: events of step i carry ts = ts0 + i * ms_per_step.
        the rest: ModelParams fields.

    Returns:
        Number of events written.
    """
    n = 0
    n_mk = mk.shape[0]
    for i in range(uni.shape[0]):
        step = clock[0]
        ts = ts0 + int(step * ms_per_step)
        if ts >= clock[2]:
            n, clock[2] = _lifecycle(
                out, n, qty, best, meta, scr, grid, anchor, mk, ts, step, levels
            )
        u = uni[i]
        m = min(int(u[0] * n_mk), n_mk - 1)
        clock[0] = step + 1
        if mk[m]["status"] != MS_OPEN:
            continue
        lg = mk[m]["logit"] + vol * nrm[i, 0]
        if u[1] < jump_prob:
            lg += jump_scale * nrm[i, 1]
        mk[m]["logit"] = min(4.5, max(-4.5, lg))
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
                ts,
                step,
                m,
                levels,
                u,
                informed_frac,
                mean_size,
                frac_prob,
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


@dataclass
class MarketModel:
    """The seeded market model over a BookSet (see the module docstring).

    Args:
        markets: the markets (slot i = markets[i]).
        params: model knobs.
        seed: seed of the numpy Generator.
        ts0: sim clock start, unix ms.
        ms_per_step: sim ms per model step (the server sets it from the message rate).
        initial_quotes: start with the makers' ladders (False: empty books).
    """

    markets: list[MarketSpec]
    params: ModelParams = field(default_factory=ModelParams)
    seed: int = 1
    ts0: int = 0
    ms_per_step: float = 5.0
    initial_quotes: bool = True

    def __post_init__(self) -> None:
        self.params.check()
        if len({m.ticker for m in self.markets}) != len(self.markets):
            raise ConfigError("market tickers must be unique")
        nm = len(self.markets)
        # one stream per use, so results do not depend on how steps are batched
        init_ss, uni_ss, nrm_ss = np.random.SeedSequence(self.seed).spawn(3)
        self.rng = np.random.default_rng(init_ss)
        self._uni = np.random.default_rng(uni_ss)
        self._nrm = np.random.default_rng(nrm_ss)
        self.books = BookSet(capacity=nm)
        for i, spec in enumerate(self.markets):
            if self.books.slot(spec.ticker) != i:
                raise ConfigError("BookSet slots must follow market order")
        grids = [price_grid(s.structure) for s in self.markets]
        self.grid = np.zeros((nm, max(len(g) for g in grids)), dtype=np.int16)
        self.mk = np.zeros(nm, dtype=SIM_MARKET_DTYPE)
        for i, (g, spec) in enumerate(zip(grids, self.markets, strict=True)):
            self.grid[i, : len(g)] = g
            self.mk[i]["grid_len"] = len(g)
            p0 = min(0.98, max(0.02, spec.p0))
            self.mk[i]["logit"] = math.log(p0 / (1 - p0))
        self.mk["close_u"] = self.rng.random(nm)
        self.mk["last_price"] = NO_PRICE
        self.mk["result"] = RESULT_UNKNOWN
        self.mk["status"] = MS_OPEN
        life = self.params.lifetime_ms
        if life is None:
            self.mk["close_ts"] = self.mk["determine_ts"] = self.mk["settle_ts"] = _NEVER
        else:
            self.mk["close_ts"] = self.ts0 + life
            self.mk["determine_ts"] = self.ts0 + life + self.params.determine_delay_ms
            self.mk["settle_ts"] = (
                self.ts0 + life + self.params.determine_delay_ms + self.params.settle_delay_ms
            )
        self.anchor = np.full((nm, 2), -1, dtype=np.int32)
        self._scr = np.zeros(1, dtype=DELTA_DTYPE)
        self.clock = np.array([0, 0, int(self.mk["close_ts"].min())], dtype=np.int64)
        self._init_books()

    def _init_books(self) -> None:
        """Empty valid books, then one requote per market (not part of the stream)."""
        # the empty-snapshot marker row validates a book with no levels
        for i in range(len(self.markets)):
            marker = np.zeros(1, dtype=SNAPSHOT_LEVEL_DTYPE)
            marker["side"] = -1
            marker["price"] = NO_PRICE
            marker["market"] = i
            if self.books.apply_snapshot(i, marker) != ST_OK:
                raise ConfigError(f"could not initialise the book of {self.markets[i].ticker}")
        if not self.initial_quotes:
            return
        out = np.zeros(len(self.markets) * 4 * self.params.levels + 8, dtype=SIM_EVENT_DTYPE)
        p = self.params
        for i in range(len(self.markets)):
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

    def msgs_per_step(self, n_steps: int = 20_000) -> float:
        """Mean events per step, measured on a twin model (same markets, params, seed).

        Used to turn a message rate into a step rate; deterministic for a config.
        """
        twin = MarketModel(
            self.markets,
            replace(self.params, lifetime_ms=None),
            seed=self.seed,
            ts0=self.ts0,
            ms_per_step=1.0,
        )
        return max(twin.step(n_steps).shape[0] / n_steps, 0.05)

    @property
    def max_events_per_step(self) -> int:
        """Upper bound of events one step can emit (plus a lifecycle sweep)."""
        return 4 * self.params.levels + 2

    def step(self, n_steps: int) -> np.ndarray:
        """Run ``n_steps`` steps; returns their events (SIM_EVENT_DTYPE, a new array)."""
        p = self.params
        uni = self._uni.random((n_steps, N_DRAWS))
        nrm = self._nrm.standard_normal((n_steps, N_NORMALS))
        cap = n_steps * self.max_events_per_step + len(self.markets) * (2 * p.levels + 4)
        out = np.empty(cap, dtype=SIM_EVENT_DTYPE)
        b = self.books
        n = generate_steps(
            out,
            uni,
            nrm,
            b.qty,
            b.best,
            b.meta,
            self._scr,
            self.grid,
            self.anchor,
            self.mk,
            self.clock,
            *self.kernel_scalars(),
        )
        return out[:n].copy()

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
            p.mean_size,
            p.max_quote,
            p.p_pull,
            p.frac_prob,
        )

    @property
    def now_ms(self) -> int:
        """Sim clock: ts of the next step."""
        return self.ts0 + int(int(self.clock[0]) * self.ms_per_step)

    def all_settled(self) -> bool:
        """True when no market can emit anything any more."""
        return bool(np.all(self.mk["status"] == MS_SETTLED))

    def probability(self, market: int) -> float:
        """Latent YES probability of a market."""
        return 1.0 / (1.0 + math.exp(-float(self.mk[market]["logit"])))
