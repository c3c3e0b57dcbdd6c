"""The sim's market model: determinism, grid, never-crossed books, lifecycle."""

from __future__ import annotations

import numpy as np
import pytest

from core.dtypes import (
    EV_DELTA,
    EV_LIFECYCLE,
    EV_TRADE,
    LC_CLOSED,
    LC_DETERMINED,
    LC_SETTLED,
    MS_SETTLED,
    RESULT_YES,
    SIDE_NO,
    SIDE_YES,
    ST_OK,
)
from kalshi_rl.errors import ConfigError
from kalshi_rl.sim.grid import PriceLevelStructure, count_fp, dollars, price_grid
from kalshi_rl.sim.model import MarketModel, ModelParams, default_markets

STRUCTS = ("linear_cent", "tapered_deci_cent", "deci_cent")


def make(seed: int = 3, **params: object) -> MarketModel:
    return MarketModel(
        default_markets(6, STRUCTS), ModelParams(**params), seed=seed, ts0=1000, ms_per_step=0.5
    )


def test_grids_and_encoders() -> None:
    lin = price_grid(PriceLevelStructure.LINEAR_CENT)
    assert lin[0] == 10 and lin[-1] == 990 and np.all(np.diff(lin) == 10)
    tap = price_grid(PriceLevelStructure.TAPERED_DECI_CENT)
    assert tap[:3].tolist() == [1, 2, 3] and 105 not in tap and 110 in tap and 995 in tap
    assert len(price_grid(PriceLevelStructure.DECI_CENT)) == 999
    assert dollars(80) == "0.0800" and dollars(1000) == "1.0000" and dollars(5) == "0.0050"
    assert count_fp(30000) == "300.00" and count_fp(-5401) == "-54.01" and count_fp(7) == "0.07"


def test_same_seed_same_events_whatever_the_batching() -> None:
    a = make()
    ev_a = a.step(30_000)
    b = make()
    ev_b = np.concatenate([b.step(n) for n in (1, 999, 9000, 20_000)])
    assert np.array_equal(ev_a, ev_b)
    assert np.array_equal(a.books.qty, b.books.qty)
    assert not np.array_equal(ev_a[:1000], make(seed=4).step(30_000)[:1000])


def test_books_stay_valid_uncrossed_on_grid() -> None:
    m = make()
    ev = m.step(50_000)
    d = ev[ev["kind"] == EV_DELTA]
    assert d.shape[0] > 10_000
    for i, spec in enumerate(m.markets):
        grid = set(price_grid(spec.structure).tolist())
        prices = set(d["price"][d["market"] == i].tolist())
        assert prices <= grid, f"{spec.ticker}: off-grid prices {sorted(prices - grid)[:5]}"
        assert m.books.valid(i) and m.books.check(i) == ST_OK
        best = m.books.best(i)
        assert best.yes_bid >= 0 and best.no_bid >= 0
        assert best.yes_bid < best.yes_ask  # never crossed or locked
        assert len(m.books.levels(i, SIDE_YES)) <= m.params.levels
        assert len(m.books.levels(i, SIDE_NO)) <= m.params.levels
    assert np.all(m.books.meta["status"] == ST_OK)
    # mostly whole contracts, some fractional
    frac = np.count_nonzero(d["qty"] % 100)
    assert 0 < frac < d.shape[0] // 4
    t = ev[ev["kind"] == EV_TRADE]
    assert t.shape[0] > 1000
    assert set(np.unique(t["side"]).tolist()) == {SIDE_YES, SIDE_NO}
    assert np.all(t["qty"] > 0)


def test_trades_consume_the_level_they_hit() -> None:
    m = make()
    ev = m.step(5000)
    idx = np.flatnonzero(ev["kind"] == EV_TRADE)
    assert idx.shape[0] > 50
    for i in idx:
        trade, delta = ev[i], ev[i - 1]
        assert delta["kind"] == EV_DELTA and delta["qty"] == -trade["qty"]
        # a YES taker takes a NO bid at 1 - yes_price, and vice versa
        hit = SIDE_NO if trade["side"] == SIDE_YES else SIDE_YES
        assert delta["side"] == hit
        yes_price = delta["price"] if hit == SIDE_YES else 1000 - delta["price"]
        assert trade["price"] == yes_price


def test_lifecycle_closes_determines_settles() -> None:
    m = make(lifetime_ms=2000, determine_delay_ms=100, settle_delay_ms=100)
    ev = m.step(10_000)  # 5000 sim ms
    assert m.all_settled()
    assert np.all(m.mk["status"] == MS_SETTLED)
    lc = ev[ev["kind"] == EV_LIFECYCLE]
    for i in range(len(m.markets)):
        mine = lc[lc["market"] == i]
        assert mine["side"].tolist() == [LC_CLOSED, LC_DETERMINED, LC_SETTLED]
        assert mine["ts"].tolist() == [3000, 3100, 3200]
        result = int(m.mk[i]["result"])
        assert mine["price"][1] == result
        # the result is drawn from the latent probability at close
        assert (result == RESULT_YES) == (m.mk[i]["close_u"] < m.probability(i))
        assert m.books.levels(i, SIDE_YES) == [] and m.books.levels(i, SIDE_NO) == []
    after = ev[ev["ts"] > 3000]
    assert set(after["kind"].tolist()) == {EV_LIFECYCLE}
    assert m.step(100).shape[0] == 0


def test_bad_params_raise() -> None:
    with pytest.raises(ConfigError, match="levels"):
        make(levels=0)
    with pytest.raises(ConfigError, match="p_trade"):
        make(p_trade=0.8, p_requote=0.5)
    with pytest.raises(ConfigError, match="price_level_structure"):
        default_markets(2, ("quarter_cent",))
