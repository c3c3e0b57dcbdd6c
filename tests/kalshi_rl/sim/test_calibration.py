"""The planted bias, measured: efficient at bias 0, Kalshi's published pattern at bias 1.

Fixed seeds and tolerances; the fair value (a martingale the outcome averages to) is the
yardstick, so a few hundred markets measure the bias without coin-flip noise.
"""

from __future__ import annotations

import itertools
import math

import pytest

from kalshi_rl.sim.calibration import Calibration, markdown, measure


@pytest.fixture(scope="module")
def runs() -> dict[float, Calibration]:
    return {b: measure(b, markets=160, seed=11) for b in (0.0, 1.0, 3.0)}


def _bucket(c: Calibration, lo: int) -> tuple[float, float]:
    row = next(b for b in c.buckets if b[0] == lo)
    return row[2], row[3]  # mean price, fair value


def test_bias_zero_prices_are_fair(runs: dict[float, Calibration]) -> None:
    c = runs[0.0]
    assert c.markets >= 160 and c.trades > 10_000
    for lo, _hi, price, fair, _won, n in c.buckets:
        if 35 <= lo < 985 and n > 200:  # away from the grid's floor and ceiling
            assert abs(price - fair) < 0.006, f"bucket {lo}: price {price:.3f} fair {fair:.3f}"
    # takers pay the spread and nothing else
    assert -0.012 < c.taker_excess < 0.0 < c.maker_excess < 0.012


def test_bias_one_matches_the_published_kalshi_figures(runs: dict[float, Calibration]) -> None:
    c = runs[1.0]
    assert 0.030 < c.win_5c < 0.050  # published: contracts at 5c win about 4.2%
    assert -0.016 < c.taker_excess < -0.006  # published: takers about -1.1%
    assert 0.006 < c.maker_excess < 0.016  # makers about +1.1%
    assert c.yes_1c_ev < -0.3  # YES at 1c loses (published about -41%)
    assert c.no_1c_ev > runs[0.0].no_1c_ev + 0.3  # NO at 1c gains on the efficient market
    # favourite-longshot: cheap YES wins less than its price, and so does dear YES
    for lo in (35, 100, 200):
        price, fair = _bucket(c, lo)
        assert fair < price - 0.005, f"YES at {price:.3f} is not overpriced ({fair:.3f})"
    for lo in (650, 800, 900):
        price, fair = _bucket(c, lo)
        assert fair < price - 0.005, f"YES at {price:.3f} is not overpriced ({fair:.3f})"


def test_more_bias_more_mispricing_and_a_wider_maker_taker_gap(
    runs: dict[float, Calibration],
) -> None:
    gaps = [runs[b].maker_excess - runs[b].taker_excess for b in (0.0, 1.0, 3.0)]
    assert gaps[0] < gaps[1] < gaps[2]
    assert gaps[2] > 0.07  # published: media / world events over 7%
    assert runs[3.0].win_5c < runs[1.0].win_5c < runs[0.0].win_5c


def test_prices_grow_more_accurate_as_close_approaches(runs: dict[float, Calibration]) -> None:
    for c in runs.values():
        brier = [b[2] for b in c.brier_by_ttc]  # from little life left to a lot
        assert len(brier) == 5
        assert all(a < b for a, b in itertools.pairwise(brier))
        assert brier[0] < 0.08 and brier[-1] > 0.15
    text = markdown(list(runs.values()))
    assert "maker - taker gap" in text and not any(math.isnan(c.win_5c) for c in runs.values())
