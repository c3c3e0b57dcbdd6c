"""Measure the sim's pricing against outcomes: the planted bias, made visible.

Runs the market model (rolling listings, no sockets) for a number of settled markets and
scores every trade against its market's result:

* win rate of YES by the YES price a trade printed at (price buckets): an efficient market
  (bias 0) wins at its price; a biased one (bias > 0) shows the favourite-longshot pattern;
* expected value of *buying* YES at 1c and NO at 1c (the extreme longshots);
* takers' and makers' excess return: P&L per dollar paid (contract-weighted, before fees),
  the taker on the side it bought, the maker on the other side;
* Brier score of the quoted price by how much of the market's life is left (prices grow
  more accurate as close approaches).

``python bench/sim_calibration.py`` prints the table docs/sim.md shows.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from core.dtypes import (
    EV_FAIR,
    EV_LIFECYCLE,
    EV_TRADE,
    FAIR_SCALE,
    LC_CREATED,
    LC_DETERMINED,
    PRICE_MAX,
    RESULT_YES,
    SIDE_YES,
)
from kalshi_rl.sim.listings import ListingSchedule, default_series
from kalshi_rl.sim.model import MarketModel, ModelParams

# YES price buckets in ticks [lo, hi): the tails at 1c resolution, the middle in tens
BUCKETS: tuple[tuple[int, int], ...] = (
    (1, 15),
    (15, 35),
    (35, 65),
    (65, 100),
    (100, 200),
    (200, 350),
    (350, 500),
    (500, 650),
    (650, 800),
    (800, 900),
    (900, 935),
    (935, 965),
    (965, 985),
    (985, 1000),
)
ONE_CENT = 10  # ticks
TTC_EDGES: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)  # share of the market's life left


@dataclass(frozen=True)
class Calibration:
    """What ``measure`` found (fractions, not percent)."""

    bias: float
    markets: int
    trades: int
    # lo, hi (ticks), mean YES price, fair YES value, realized YES win rate, trades
    buckets: list[tuple[int, int, float, float, float, int]]
    yes_1c_ev: float  # EV per dollar of buying YES at 1c
    no_1c_ev: float  # EV per dollar of buying NO at 1c
    win_5c: float  # fair YES value of trades printed at 5c
    taker_excess: float
    maker_excess: float
    brier_by_ttc: list[tuple[float, float, float]]  # ttc lo, hi, Brier score of the price
    yes_share: float  # share of markets that resolved YES


class Trades(NamedTuple):
    """Every trade of the determined listings of a run, one entry per trade."""

    price: np.ndarray  # YES price, ticks
    qty: np.ndarray  # count units
    taker: np.ndarray  # SIDE_* the taker bought
    won: np.ndarray  # bool: the market resolved YES
    fair: np.ndarray  # fair YES probability right after the trade (nan without EV_FAIR)
    left: np.ndarray  # share of the market's life left, [0, 1]


def trades_with_results(ev: np.ndarray, model: MarketModel) -> Trades:
    """Every trade of listings that were determined, with its outcome (and fair value when
    the model ran with ``emit_fair``)."""
    life_serial = np.full(len(model.markets), -1, dtype=np.int64)
    kinds = ev["kind"]
    is_lc = kinds == EV_LIFECYCLE
    # the listing serial that owns each event's slot at that event
    owner = np.full(ev.shape[0], -1, dtype=np.int64)
    created = np.flatnonzero(is_lc & (ev["side"] == LC_CREATED))
    starts = np.append(created, ev.shape[0])
    slots = ev["market"]
    for k in range(created.shape[0] + 1):
        lo = 0 if k == 0 else starts[k - 1]
        hi = starts[k]
        if k > 0:
            c = ev[lo]
            life_serial[c["market"]] = c["qty"]
        owner[lo:hi] = life_serial[slots[lo:hi]]
    det = is_lc & (ev["side"] == LC_DETERMINED)
    result = dict(zip(owner[det].tolist(), (ev["price"][det] == RESULT_YES).tolist(), strict=True))
    tr = np.flatnonzero((kinds == EV_TRADE) & np.isin(owner, list(result)))
    won = np.array([result[s] for s in owner[tr].tolist()], dtype=bool)
    specs = {s: sp for s, (_slot, sp) in model.listed.items()}
    open_ts = np.array([specs[s].open_ts or 0 for s in owner[tr].tolist()], dtype=np.float64)
    close_ts = np.array([specs[s].close_ts or 0 for s in owner[tr].tolist()], dtype=np.float64)
    left = np.clip((close_ts - ev["ts"][tr]) / np.maximum(close_ts - open_ts, 1.0), 0.0, 1.0)
    t = ev[tr]
    fair = np.full(tr.shape[0], np.nan)
    nxt = np.minimum(tr + 1, ev.shape[0] - 1)
    has = ev["kind"][nxt] == EV_FAIR
    fair[has] = ev["qty"][nxt][has] / FAIR_SCALE
    return Trades(
        t["price"].astype(np.int64), t["qty"].astype(np.int64), t["side"], won, fair, left
    )


def measure(
    bias: float,
    markets: int = 800,
    seed: int = 1,
    params: ModelParams | None = None,
    n_series: int = 8,
) -> Calibration:
    """Run the model until ``markets`` markets were determined and score their trades.

    Args:
        bias: the bias knob of every series.
        markets: how many determined markets to score (at least).
        seed: model seed.
        params: model knobs (default ModelParams()).
        n_series: concurrent series (each step picks one open market).
    """
    p = replace(params or ModelParams(), emit_fair=True)
    series = tuple(replace(s, bias=bias) for s in default_series(n_series, lifetime_ms=60_000))
    model = MarketModel(
        [], p, seed=seed, ts0=0, ms_per_step=10.0, schedule=ListingSchedule(series, 0)
    )
    parts = []
    done = 0
    while done < markets:
        ev = model.step(100_000)
        parts.append(ev)
        done += int(np.count_nonzero((ev["kind"] == EV_LIFECYCLE) & (ev["side"] == LC_DETERMINED)))
    ev = np.concatenate(parts)
    out = _score(bias, done, trades_with_results(ev, model))
    det = ev[(ev["kind"] == EV_LIFECYCLE) & (ev["side"] == LC_DETERMINED)]
    return replace(out, yes_share=float(np.mean(det["price"] == RESULT_YES)))


def _score(bias: float, n_markets: int, t: Trades) -> Calibration:
    w = t.qty.astype(np.float64)
    yes_p = t.price / PRICE_MAX
    # the fair value is what the outcome averages to (a martingale): scoring against it
    # measures the planted bias without the noise of a few hundred coin flips
    won = t.won.astype(np.float64)
    fair = np.where(np.isnan(t.fair), won, t.fair)
    buckets = []
    for lo, hi in BUCKETS:
        sel = (t.price >= lo) & (t.price < hi)
        if np.any(sel):
            ws = w[sel]
            buckets.append(
                (
                    lo,
                    hi,
                    float(np.average(yes_p[sel], weights=ws)),
                    float(np.average(fair[sel], weights=ws)),
                    float(np.average(won[sel], weights=ws)),
                    int(np.count_nonzero(sel)),
                )
            )
    # a YES taker paid the YES price; a NO taker paid 1 - YES price
    yes_t = t.taker == SIDE_YES
    cost = np.where(yes_t, yes_p, 1.0 - yes_p)
    value = np.where(yes_t, fair, 1.0 - fair)
    taker_ex = float(np.sum(w * (value - cost)) / np.sum(w * cost))
    maker_ex = float(np.sum(w * ((1.0 - value) - (1.0 - cost))) / np.sum(w * (1.0 - cost)))
    cheap_yes = t.price == ONE_CENT
    cheap_no = t.price == PRICE_MAX - ONE_CENT
    five = t.price == 5 * ONE_CENT
    yes_1c = _ev(fair[cheap_yes], yes_p[cheap_yes], w[cheap_yes])
    no_1c = _ev(1.0 - fair[cheap_no], 1.0 - yes_p[cheap_no], w[cheap_no])
    brier: list[tuple[float, float, float]] = []
    for tlo, thi in itertools.pairwise(TTC_EDGES):
        sel = (t.left >= tlo) & (t.left < thi) if thi < 1.0 else (t.left >= tlo)
        if np.any(sel):
            brier.append(
                (tlo, thi, float(np.average((yes_p[sel] - won[sel]) ** 2, weights=w[sel])))
            )
    return Calibration(
        bias=bias,
        markets=n_markets,
        trades=int(t.price.shape[0]),
        buckets=buckets,
        yes_1c_ev=yes_1c,
        win_5c=float(np.average(fair[five], weights=w[five])) if np.any(five) else float("nan"),
        no_1c_ev=no_1c,
        taker_excess=taker_ex,
        maker_excess=maker_ex,
        brier_by_ttc=brier,
        yes_share=float("nan"),
    )


def _ev(value: np.ndarray, cost: np.ndarray, w: np.ndarray) -> float:
    """Expected value per dollar of buying at ``cost`` what is worth ``value``."""
    if value.size == 0:
        return float("nan")
    return float(np.sum(w * (value - cost)) / np.sum(w * cost))


def markdown(results: list[Calibration]) -> str:
    """The calibration tables (one column per bias) as Markdown.

    Bucket cells: mean YES price of the trades / their mean fair value (what they win on
    average) / the share that actually won.  Excess returns and EVs use the fair value.
    """
    lines = [
        "| YES price bucket | "
        + " | ".join(f"bias {c.bias:g}: price / fair / won" for c in results)
        + " |"
    ]
    lines.append("|---|" + "---|" * len(results))
    for i, (lo, hi) in enumerate(BUCKETS):
        cells = []
        for c in results:
            hit = next((b for b in c.buckets if b[0] == lo), None)
            cells.append("-" if hit is None else f"{hit[2]:.3f} / {hit[3]:.3f} / {hit[4]:.3f}")
        lines.append(f"| {lo / 10:g}-{hi / 10:g}c | " + " | ".join(cells) + " |")
        del i
    lines.append("")
    lines.append("| measure | " + " | ".join(f"bias {c.bias:g}" for c in results) + " |")
    lines.append("|---|" + "---|" * len(results))

    def row(name: str, vals: list[str]) -> None:
        lines.append(f"| {name} | " + " | ".join(vals) + " |")

    row("markets / trades", [f"{c.markets} / {c.trades}" for c in results])
    row("YES at 5c wins", [f"{100 * c.win_5c:.2f}%" for c in results])
    row("EV of buying YES at 1c", [f"{100 * c.yes_1c_ev:+.1f}%" for c in results])
    row("EV of buying NO at 1c", [f"{100 * c.no_1c_ev:+.1f}%" for c in results])
    row("taker excess return", [f"{100 * c.taker_excess:+.2f}%" for c in results])
    row("maker excess return", [f"{100 * c.maker_excess:+.2f}%" for c in results])
    row(
        "maker - taker gap",
        [f"{100 * (c.maker_excess - c.taker_excess):.2f} pp" for c in results],
    )
    for k in range(len(TTC_EDGES) - 1):
        vals = []
        for c in results:
            b = c.brier_by_ttc[k] if k < len(c.brier_by_ttc) else None
            vals.append("-" if b is None else f"{b[2]:.3f}")
        row(f"Brier, {TTC_EDGES[k]:g}-{TTC_EDGES[k + 1]:g} of life left", vals)
    row("share resolved YES", [f"{c.yes_share:.2f}" for c in results])
    return "\n".join(lines)
