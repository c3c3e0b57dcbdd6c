"""core.features: documented values, empty books, live vs batched bit-identity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.account import liquidation_value
from core.book import BookSet
from core.dtypes import (
    HIST_LEN,
    NO_PRICE,
    POSITION_DTYPE,
    SIDE_NO,
    SIDE_NONE,
    SIDE_YES,
    SNAPSHOT_LEVEL_DTYPE,
)
from core.features import (
    ACCOUNT_FEATURE_NAMES,
    MARKET_FEATURE_NAMES,
    N_ACCOUNT_FEATURES,
    N_FEATURES,
    N_MARKET_FEATURES,
    account_features,
    book_mid,
    build_observation,
    features_for_levels,
    hist_push,
    market_features_batch,
    market_features_from_levels,
    market_features_live,
    mid_from_levels,
    mids_batch,
    observation_from_levels,
)
from core.fees import fee_schedule
from core.liquidity import new_liquidity

K = 10


def levels(yes: list[tuple[int, int]], no: list[tuple[int, int]], k: int = K):
    """Top-k arrays (best first) from (price, qty) lists."""
    px = np.full((2, k), NO_PRICE, dtype=np.int16)
    qty = np.zeros((2, k), dtype=np.int64)
    for s, lv in ((SIDE_YES, yes), (SIDE_NO, no)):
        for i, (p, q) in enumerate(sorted(lv, reverse=True)[:k]):
            px[s, i] = p
            qty[s, i] = q
    return px, qty


def feats(px, qty, hist=None, hist_n=0, ttc=0.5):
    out = np.full(N_MARKET_FEATURES, np.nan, dtype=np.float32)
    h = np.zeros(HIST_LEN) if hist is None else hist
    market_features_from_levels(px, qty, h, hist_n, ttc, out)
    return dict(zip(MARKET_FEATURE_NAMES, out.tolist(), strict=True)), out


def snapshot_rows(slot: int, yes, no) -> np.ndarray:
    rows = [(SIDE_YES, p, q) for p, q in yes] + [(SIDE_NO, p, q) for p, q in no]
    if not rows:
        rows = [(SIDE_NONE, NO_PRICE, 0)]
    arr = np.zeros(len(rows), dtype=SNAPSHOT_LEVEL_DTYPE)
    for i, (s, p, q) in enumerate(rows):
        arr[i]["side"] = s
        arr[i]["price"] = p
        arr[i]["qty"] = q
        arr[i]["market"] = slot
    return arr


def test_constants_consistent():
    assert len(MARKET_FEATURE_NAMES) == N_MARKET_FEATURES
    assert len(ACCOUNT_FEATURE_NAMES) == N_ACCOUNT_FEATURES
    assert N_FEATURES == N_MARKET_FEATURES + N_ACCOUNT_FEATURES
    assert len(set(MARKET_FEATURE_NAMES + ACCOUNT_FEATURE_NAMES)) == N_FEATURES


def test_hand_made_book_documented_values():
    # YES bids 450 x 10c, 440 x 20c, 430 x 3c; NO bids 520 x 5c, 510 x 1c.
    px, qty = levels([(450, 1000), (440, 2000), (430, 300)], [(520, 500), (510, 100)])
    f, _ = feats(px, qty, ttc=0.25)
    approx = pytest.approx
    assert f["yes_bid"] == approx(0.45)
    assert f["yes_ask"] == approx(0.48)
    assert f["no_bid"] == approx(0.52)
    assert f["no_ask"] == approx(0.55)
    assert f["spread"] == approx(0.03)
    assert f["mid"] == approx(0.465)
    # (450 * 5 + 480 * 10) / 15 = 470
    assert f["microprice"] == approx(0.47)
    assert f["has_yes_bid"] == 1.0 and f["has_no_bid"] == 1.0
    assert f["yes_depth_1"] == approx(math.log1p(10) / 10)
    assert f["yes_depth_2"] == approx(math.log1p(20) / 10)
    assert f["yes_depth_3"] == approx(math.log1p(3) / 10)
    assert f["yes_depth_4"] == 0.0 and f["yes_depth_5"] == 0.0
    assert f["no_depth_1"] == approx(math.log1p(5) / 10)
    assert f["no_depth_2"] == approx(math.log1p(1) / 10)
    assert f["yes_depth_total"] == approx(math.log1p(33) / 10)
    assert f["no_depth_total"] == approx(math.log1p(6) / 10)
    assert f["imbalance_l1"] == approx((10 - 5) / 15)
    assert f["imbalance_top5"] == approx((33 - 6) / 39)
    assert f["ret_1"] == 0.0 and f["ret_5"] == 0.0 and f["ret_20"] == 0.0
    assert f["volatility"] == 0.0
    assert f["hist_fill"] == 0.0
    assert f["ttc"] == 0.25


def test_only_top_five_levels_count():
    yes = [(400 - i, 100) for i in range(8)]
    px, qty = levels(yes, [(500, 100)])
    f, _ = feats(px, qty)
    assert f["yes_depth_total"] == pytest.approx(math.log1p(5) / 10)


@pytest.mark.parametrize(
    ("yes", "no", "expect"),
    [
        (
            [],
            [],
            {"yes_bid": 0.0, "yes_ask": 0.0, "no_ask": 0.0, "spread": 0.0, "has_yes_bid": 0.0},
        ),
        ([(300, 100)], [], {"yes_ask": 0.0, "no_ask": 0.7, "has_no_bid": 0.0}),
        ([], [(600, 100)], {"yes_bid": 0.0, "yes_ask": 0.4, "imbalance_top5": -1.0}),
    ],
)
def test_empty_and_one_sided_books_say_so_instead_of_inventing_a_price(yes, no, expect):
    """No made-up mid (no 500 for an empty book, no YES ask as mid): 0 plus a flag."""
    px, qty = levels(yes, no)
    assert math.isnan(mid_from_levels(px, qty))
    h = np.zeros(HIST_LEN)
    n = hist_push(h, 0, mid_from_levels(px, qty))
    assert n == 0  # nothing real to remember yet
    f, out = feats(px, qty, h, n, ttc=1.5)
    assert np.all(np.isfinite(out))
    assert f["mid"] == 0.0 and f["microprice"] == 0.0 and f["spread"] == 0.0
    assert f["two_sided"] == 0.0
    assert f["ttc"] == 1.0  # clipped
    for name, v in expect.items():
        assert f[name] == pytest.approx(v), name


def test_history_carries_the_last_real_mid_over_one_sided_rows():
    h = np.zeros(HIST_LEN)
    n = hist_push(h, 0, 450.0)
    n = hist_push(h, n, float("nan"))  # book went one-sided: no new price, time goes on
    assert n == 2 and h[0] == 450.0 and h[1] == 450.0
    n = hist_push(h, n, 470.0)
    assert h[0] == 470.0 and n == 3


def test_hist_push_shifts_and_caps():
    h = np.zeros(HIST_LEN)
    n = 0
    for i in range(HIST_LEN + 5):
        n = hist_push(h, n, float(i))
    assert n == HIST_LEN
    assert h[0] == HIST_LEN + 4
    assert h[HIST_LEN - 1] == 5.0
    assert np.all(np.diff(h) == -1.0)


def test_returns_and_volatility_from_history():
    px, qty = levels([(500, 100)], [(400, 100)])  # mid 550
    h = np.zeros(HIST_LEN)
    n = 0
    mids = [500.0 + 2.0 * i + (3.0 if i % 2 else 0.0) for i in range(25)] + [550.0]
    for m in mids:
        n = hist_push(h, n, m)
    f, _ = feats(px, qty, h, n)
    assert f["ret_1"] == pytest.approx((550 - mids[-2]) / 100)
    assert f["ret_5"] == pytest.approx((550 - mids[-6]) / 100)
    assert f["ret_20"] == pytest.approx((550 - mids[-21]) / 100)
    diffs = np.diff(np.array(mids))
    assert f["volatility"] == pytest.approx(np.std(diffs) / 10, rel=1e-6)
    assert f["hist_fill"] == pytest.approx(len(mids) / HIST_LEN)
    # Not enough history: the lagged return is 0, not garbage.
    f2, _ = feats(px, qty, h, 5)
    assert f2["ret_5"] == 0.0 and f2["ret_1"] != 0.0


def test_account_features_hand_ledger():
    pos = np.zeros(1, dtype=POSITION_DTYPE)
    pos["position"] = 1000  # 10 YES
    pos["cost_basis"] = 40_000  # $4 -> $0.40 each
    pos["cash"] = 958_320
    pos["fees_paid"] = 1_680
    out = np.zeros(N_ACCOUNT_FEATURES, dtype=np.float32)
    account_features(pos, 45_000, 1_000_000, out)  # worth $4.50 now
    f = dict(zip(ACCOUNT_FEATURE_NAMES, out.tolist(), strict=True))
    assert f["position"] == pytest.approx(math.log1p(10) / 5)
    assert f["avg_cost"] == pytest.approx(0.40)
    assert f["upnl_per_contract"] == pytest.approx(0.05)
    assert f["upnl"] == pytest.approx(5_000 / 1e6)
    assert f["cash"] == pytest.approx(958_320 / 1e6 - 1)
    assert f["value"] == pytest.approx((958_320 + 45_000) / 1e6 - 1)
    assert f["fees"] == pytest.approx(0.00168)

    pos["position"] = -1000  # 10 NO at $0.55, worth $5.50 now
    pos["cost_basis"] = 55_000
    account_features(pos, 55_000, 1_000_000, out)
    f = dict(zip(ACCOUNT_FEATURE_NAMES, out.tolist(), strict=True))
    assert f["position"] == pytest.approx(-math.log1p(10) / 5)
    assert f["avg_cost"] == pytest.approx(0.55)
    assert f["upnl_per_contract"] == pytest.approx(0.0, abs=1e-7)

    flat = np.zeros(1, dtype=POSITION_DTYPE)
    account_features(flat, 0, 0, out)  # start_cash 0 must not divide by zero
    assert np.all(np.isfinite(out))


def test_observation_from_levels_concatenates():
    px, qty = levels([(450, 1000)], [(520, 500)])
    h = np.zeros(HIST_LEN)
    n = hist_push(h, 0, mid_from_levels(px, qty))
    pos = np.zeros(1, dtype=POSITION_DTYPE)
    pos["cash"] = 500_000
    obs = np.zeros(N_FEATURES, dtype=np.float32)
    pos["position"] = 200
    observation_from_levels(px, qty, h, n, 0.5, pos, 8_700, 500_000, obs)
    _, mkt = feats(px, qty, h, n)
    acc = np.zeros(N_ACCOUNT_FEATURES, dtype=np.float32)
    account_features(pos, 8_700, 500_000, acc)
    assert obs.tobytes() == np.concatenate([mkt, acc]).tobytes()


# ----------------------------------------------------------------- live vs batched


@st.composite
def book_seq(draw):
    t = draw(st.integers(1, 60))
    steps = []
    for _ in range(t):
        split = draw(st.integers(1, 999))
        # YES bids <= split - 1, NO bids <= 999 - split: never crossed or locked.
        ys = draw(st.lists(st.integers(0, split - 1), max_size=8, unique=True))
        ns = draw(st.lists(st.integers(0, 999 - split), max_size=8, unique=True))
        q = st.integers(1, 10**8)
        yes = [(p, draw(q)) for p in ys]
        no = [(p, draw(q)) for p in ns]
        reset = draw(st.integers(0, 9)) == 0
        ttc = draw(st.floats(-0.5, 1.5, allow_nan=False, width=32))
        steps.append((yes, no, reset, ttc))
    return steps


@settings(max_examples=60, deadline=None)
@given(book_seq())
def test_batched_bit_identical_to_live(steps):
    books = BookSet(capacity=2)
    books.slot("OTHER")
    slot = books.slot("MKT")
    t_len = len(steps)
    px = np.empty((t_len, 2, K), dtype=np.int16)
    qty = np.empty((t_len, 2, K), dtype=np.int64)
    ttc = np.array([s[3] for s in steps], dtype=np.float32)
    reset = np.array([s[2] for s in steps], dtype=np.uint8)
    reset[0] = 1
    live = np.empty((t_len, N_MARKET_FEATURES), dtype=np.float32)
    obs_live = np.empty((t_len, N_FEATURES), dtype=np.float32)
    obs_lv = np.empty((t_len, N_FEATURES), dtype=np.float32)
    pos = np.zeros(1, dtype=POSITION_DTYPE)
    pos["position"] = -700
    pos["cost_basis"] = 30_000
    pos["cash"] = 90_000
    hist = np.zeros(HIST_LEN)
    n = 0
    fees = fee_schedule()
    no_consumption = new_liquidity(1)
    for t, (yes, no, _, _) in enumerate(steps):
        books.apply_snapshot(slot, snapshot_rows(slot, yes, no))
        px[t], qty[t] = books.top_k(slot, K)
        if reset[t]:
            n = 0
        # live order: push the current mid, then compute
        n = hist_push(hist, n, book_mid(books.best, slot))
        market_features_live(books.qty, books.best, slot, hist, n, float(ttc[t]), live[t])
        value = liquidation_value(-700, px[t], qty[t], no_consumption, fees)
        build_observation(
            books.qty, books.best, slot, hist, n, float(ttc[t]), pos, value, 100_000,
            obs_live[t],
        )  # fmt: skip
        observation_from_levels(
            px[t], qty[t], hist, n, float(ttc[t]), pos, value, 100_000, obs_lv[t]
        )

    out = np.empty((t_len, N_MARKET_FEATURES), dtype=np.float32)
    market_features_batch(px, qty, ttc, reset, out)
    assert np.all(np.isfinite(out))
    assert out.tobytes() == live.tobytes()
    assert obs_live.tobytes() == obs_lv.tobytes()
    assert obs_live[:, :N_MARKET_FEATURES].tobytes() == live.tobytes()

    mids = np.empty(t_len)
    mids_batch(px, qty, mids)
    live_mids = np.array([mid_from_levels(px[t], qty[t]) for t in range(t_len)])
    assert live_mids.tobytes() == mids.tobytes()  # NaN where not two-sided, bit for bit


def test_batch_reset_clears_history():
    px1, q1 = levels([(400, 100)], [(500, 100)])
    px2, q2 = levels([(600, 100)], [(300, 100)])
    px = np.stack([px1, px2, px2])
    qty = np.stack([q1, q2, q2])
    out = np.empty((3, N_MARKET_FEATURES), dtype=np.float32)
    ttc = np.ones(3, dtype=np.float32)
    market_features_batch(px, qty, ttc, np.array([1, 0, 0], dtype=np.uint8), out)
    r1 = MARKET_FEATURE_NAMES.index("ret_1")
    assert out[1, r1] == pytest.approx((650 - 450) / 100)
    market_features_batch(px, qty, ttc, np.array([1, 1, 0], dtype=np.uint8), out)
    assert out[1, r1] == 0.0
    assert out[2, r1] == 0.0  # 650 -> 650 within the new segment
    hf = MARKET_FEATURE_NAMES.index("hist_fill")
    assert out[2, hf] == pytest.approx(2 / HIST_LEN)


def test_features_for_levels_validates_and_matches_kernel():
    px1, q1 = levels([(400, 100)], [(500, 100)])
    px = np.stack([px1, px1])
    qty = np.stack([q1, q1])
    feats_out, mid = features_for_levels(px, qty, np.ones(2), np.zeros(2))
    ref = np.empty((2, N_MARKET_FEATURES), dtype=np.float32)
    market_features_batch(px, qty, np.ones(2, np.float32), np.array([1, 0], np.uint8), ref)
    assert feats_out.tobytes() == ref.tobytes()
    assert mid.tolist() == [450.0, 450.0]
    with pytest.raises(ValueError, match="K>=5"):
        features_for_levels(px[:, :, :3], qty[:, :, :3], np.ones(2), np.zeros(2))
    with pytest.raises(ValueError, match="int16"):
        features_for_levels(px.astype(np.int64), qty, np.ones(2), np.zeros(2))
    with pytest.raises(ValueError, match="qty"):
        features_for_levels(px, qty.astype(np.int32), np.ones(2), np.zeros(2))
    with pytest.raises(ValueError, match="ttc and reset"):
        features_for_levels(px, qty, np.ones(3), np.zeros(2))
