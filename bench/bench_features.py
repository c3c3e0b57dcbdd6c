"""Observation kernel: single (live, from Python) and batched vs NumPy/plain-Python.

Run:
    pytest bench/bench_features.py --benchmark-min-rounds=3 --benchmark-max-time=0.2
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.book import BookSet
from core.dtypes import (
    FEATURE_TOP_LEVELS,
    HIST_LEN,
    NO_PRICE,
    POSITION_DTYPE,
    SIDE_NO,
    SIDE_YES,
    SNAPSHOT_LEVEL_DTYPE,
)
from core.features import (
    N_FEATURES,
    N_MARKET_FEATURES,
    book_mid,
    build_observation,
    hist_push,
    market_features_batch,
    observation_from_levels,
)

K = 10
MARK = 7_000  # money value of the benchmark position (the engine computes it live)
START_CASH = 1_000_000


# ----------------------------------------------------------------- data


def random_levels(t_len: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """A drifting, never-crossed, two-sided book with 1..K levels per side."""
    rng = np.random.default_rng(seed)
    px = np.full((t_len, 2, K), NO_PRICE, dtype=np.int16)
    qty = np.zeros((t_len, 2, K), dtype=np.int64)
    mid = np.clip(500 + np.cumsum(rng.integers(-3, 4, t_len)), 50, 950)
    for t in range(t_len):
        for s in (SIDE_YES, SIDE_NO):
            top = (mid[t] - 5) if s == SIDE_YES else (1000 - mid[t] - 5)
            n = rng.integers(1, K + 1)
            p = top - np.arange(n) * rng.integers(1, 4)
            p = p[p >= 0]
            px[t, s, : p.size] = p
            qty[t, s, : p.size] = rng.integers(1, 100_000, p.size)
    return px, qty


def live_book() -> tuple[BookSet, int]:
    books = BookSet(capacity=4)
    slot = books.slot("BENCH")
    rows = np.zeros(2 * K, dtype=SNAPSHOT_LEVEL_DTYPE)
    for i in range(K):
        rows[i] = (0, 0, 0, 1, 1000 + 37 * i, slot, 1, 480 - 2 * i, SIDE_YES, 0)
        rows[K + i] = (0, 0, 0, 1, 900 + 53 * i, slot, 1, 500 - 3 * i, SIDE_NO, 0)
    books.apply_snapshot(slot, rows)
    return books, slot


def position() -> np.ndarray:
    pos = np.zeros(1, dtype=POSITION_DTYPE)
    pos["position"] = 1_500
    pos["cost_basis"] = 70_000
    pos["cash"] = START_CASH - 70_000
    pos["fees_paid"] = 1_234
    return pos


# ----------------------------------------------------------------- baselines


def py_observation(qty, best, m, hist, hist_n, ttc, pos, mark_value, start_cash) -> np.ndarray:
    """Plain Python + NumPy single observation (what one writes without Numba)."""
    lv: list[tuple[list[int], list[int]]] = []
    for s in (SIDE_YES, SIDE_NO):
        b = int(best[m, s])
        if b == NO_PRICE:
            lv.append(([], []))
            continue
        idx = np.flatnonzero(qty[m, s, : b + 1])[::-1][:FEATURE_TOP_LEVELS]
        lv.append((idx.tolist(), qty[m, s, idx].tolist()))
    (yp, yq), (np_, nq) = lv
    yb = yp[0] if yp else None
    nb = np_[0] if np_ else None
    two = yb is not None and nb is not None
    mid = (yb + 1000 - nb) / 2 if two else 0.0  # no made-up mid for a one-sided book
    ybt = yb or 0
    nbt = nb or 0
    qy1 = yq[0] if yq else 0
    qn1 = nq[0] if nq else 0
    micro = (ybt * qn1 + (1000 - nbt) * qy1) / (qy1 + qn1) if two and qy1 + qn1 else mid
    f = [ybt / 1000, (1000 - nbt) / 1000 if nq else 0.0, nbt / 1000]
    f += [(1000 - ybt) / 1000 if yq else 0.0, (1000 - nbt - ybt) / 1000 if two else 0.0]
    f += [mid / 1000, micro / 1000, float(bool(yq)), float(bool(nq)), float(two)]
    for q in (yq, nq):
        f += [math.log1p(x / 100) / 10 for x in q] + [0.0] * (FEATURE_TOP_LEVELS - len(q))
    ty, tn = sum(yq), sum(nq)
    f += [math.log1p(ty / 100) / 10, math.log1p(tn / 100) / 10]
    f += [
        (qy1 - qn1) / (qy1 + qn1) if qy1 + qn1 else 0.0,
        (ty - tn) / (ty + tn) if ty + tn else 0.0,
    ]
    f += [(hist[0] - hist[k]) / 100 if hist_n > k else 0.0 for k in (1, 5, 20)]
    d = -np.diff(hist[:hist_n])
    f += [float(d.std()) / 10 if d.size >= 2 else 0.0, hist_n / HIST_LEN, min(max(ttc, 0), 1)]
    p = pos[0]
    n_abs = abs(int(p["position"]))
    mark = float(mark_value)
    avg = p["cost_basis"] / (n_abs / 100) / 10_000 if n_abs else 0.0
    f += [math.copysign(math.log1p(n_abs / 100), p["position"]) / 5 if n_abs else 0.0, avg]
    f += [mark / (n_abs / 100) / 10_000 - avg if n_abs else 0.0]
    f += [(mark - p["cost_basis"]) / start_cash]
    f += [p["cash"] / start_cash - 1, (p["cash"] + mark) / start_cash - 1]
    f += [p["fees_paid"] / start_cash]
    return np.asarray(f, dtype=np.float32)


def numpy_batch(px: np.ndarray, qty: np.ndarray, ttc: np.ndarray) -> np.ndarray:
    """Vectorised NumPy market features for one segment (history never reset)."""
    t_len = px.shape[0]
    out = np.empty((t_len, N_MARKET_FEATURES), dtype=np.float64)
    top = px[:, :, :FEATURE_TOP_LEVELS]
    present = top != NO_PRICE
    q = np.where(present, qty[:, :, :FEATURE_TOP_LEVELS], 0).astype(np.float64)
    has_y, has_n = present[:, 0, 0], present[:, 1, 0]
    yb = np.where(has_y, px[:, 0, 0], 0).astype(np.float64)
    nb = np.where(has_n, px[:, 1, 0], 0).astype(np.float64)
    ya = 1000 - nb
    two = has_y & has_n
    assert two.all(), "this baseline handles two-sided books only (random_levels makes them)"
    mid = (yb + ya) / 2
    qy1, qn1 = q[:, 0, 0], q[:, 1, 0]
    both = has_y & has_n & (qy1 + qn1 > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        micro = np.where(both, (yb * qn1 + ya * qy1) / (qy1 + qn1), mid)
        tot = q.sum(axis=2)
        imb1 = np.where(qy1 + qn1 > 0, (qy1 - qn1) / (qy1 + qn1), 0.0)
        imb5 = np.where(tot.sum(1) > 0, (tot[:, 0] - tot[:, 1]) / tot.sum(1), 0.0)
    out_top = (
        np.stack(
            [yb, ya, nb, 1000 - yb, ya - yb, mid, micro, has_y * 1e3, has_n * 1e3, two * 1e3],
            axis=1,
        )
        / 1000
    )
    out[:, 0:10] = out_top
    out[:, 10:20] = np.log1p(q.reshape(t_len, -1) / 100) / 10
    out[:, 20:22] = np.log1p(tot / 100) / 10
    out[:, 22] = imb1
    out[:, 23] = imb5
    for j, k in enumerate((1, 5, 20)):
        r = np.zeros(t_len)
        r[k:] = (mid[k:] - mid[:-k]) / 100
        out[:, 24 + j] = r
    d = np.diff(mid, prepend=mid[0])  # d[t] = mid[t] - mid[t-1], d[0] unused
    c1 = np.concatenate([[0.0], np.cumsum(d[1:])])
    c2 = np.concatenate([[0.0], np.cumsum(d[1:] ** 2)])
    t = np.arange(t_len)
    n_d = np.minimum(t, HIST_LEN - 1)
    lo = t - n_d
    with np.errstate(invalid="ignore", divide="ignore"):
        m1 = (c1[t] - c1[lo]) / n_d
        var = (c2[t] - c2[lo]) / n_d - m1**2
    out[:, 27] = np.where(n_d >= 2, np.sqrt(np.maximum(var, 0)) / 10, 0.0)
    out[:, 28] = np.minimum(t + 1, HIST_LEN) / HIST_LEN
    out[:, 29] = np.clip(ttc, 0, 1)
    return out.astype(np.float32)


# ----------------------------------------------------------------- single observation


@pytest.fixture(scope="module")
def single_setup():
    books, slot = live_book()
    hist = np.zeros(HIST_LEN)
    n = 0
    for i in range(HIST_LEN):
        n = hist_push(hist, n, 470.0 + (i % 3))
    n = hist_push(hist, n, book_mid(books.best, slot))
    pos = position()
    out = np.zeros(N_FEATURES, dtype=np.float32)
    # warm the JIT and check the baseline computes the same observation
    build_observation(books.qty, books.best, slot, hist, n, 0.4, pos, MARK, START_CASH, out)
    ref = py_observation(books.qty, books.best, slot, hist, n, 0.4, pos, MARK, START_CASH)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    return books, slot, hist, n, pos, out


@pytest.mark.parametrize("impl", ["njit_live", "njit_levels", "python_numpy"])
def test_single_observation(benchmark, single_setup, impl):
    books, slot, hist, n, pos, out = single_setup
    benchmark.group = "single observation (from Python)"
    qty, best = books.qty, books.best.view(np.ndarray)
    if impl == "njit_live":
        benchmark(build_observation, qty, best, slot, hist, n, 0.4, pos, MARK, START_CASH, out)
    elif impl == "njit_levels":
        px, q = books.top_k(slot, FEATURE_TOP_LEVELS)
        benchmark(observation_from_levels, px, q, hist, n, 0.4, pos, MARK, START_CASH, out)
    else:
        benchmark(py_observation, qty, best, slot, hist, n, 0.4, pos, MARK, START_CASH)


# ----------------------------------------------------------------- batched


@pytest.fixture(scope="module")
def batch_data():
    px, qty = random_levels(100_000)
    ttc = np.linspace(1, 0, px.shape[0]).astype(np.float32)
    return px, qty, ttc


@pytest.mark.parametrize("t_len", [1_000, 10_000, 100_000])
@pytest.mark.parametrize("impl", ["njit_batch", "numpy_vectorised"])
def test_batch_observation(benchmark, batch_data, t_len, impl):
    px, qty, ttc = (a[:t_len] for a in batch_data)
    reset = np.zeros(t_len, dtype=np.uint8)
    reset[0] = 1
    out = np.empty((t_len, N_MARKET_FEATURES), dtype=np.float32)
    market_features_batch(px, qty, ttc, reset, out)  # warm the JIT
    np.testing.assert_allclose(numpy_batch(px, qty, ttc), out, rtol=1e-4, atol=1e-5)
    benchmark.group = f"batched market features T={t_len}"
    benchmark.extra_info["rows"] = t_len
    if impl == "njit_batch":
        benchmark(market_features_batch, px, qty, ttc, reset, out)
    else:
        benchmark(numpy_batch, px, qty, ttc)
