"""Small synthetic book datasets for tests and benchmarks (random-walk Kalshi books).

Each segment is one market whose YES mid follows a mean-reverting random walk around a
per-segment anchor on a 1-cent grid; both bid ladders hold ``top_k`` levels one cent apart
with random sizes.  Features and mids come from ``core.features`` exactly as the history
loader computes them, so an env over this data runs the same code as over recorded data.
"""

from __future__ import annotations

import numpy as np

from core.dataset import Dataset
from core.dtypes import (
    DEFAULT_TOP_K,
    NO_PRICE,
    PRICE_MAX,
    RESULT_NO,
    RESULT_UNKNOWN,
    RESULT_YES,
)
from core.features import N_MARKET_FEATURES, market_features_batch, mids_batch


def random_walk_dataset(
    n_segments: int = 8,
    seg_len: int = 400,
    *,
    top_k: int = DEFAULT_TOP_K,
    seed: int = 0,
    tick: int = 10,
    kappa: float = 0.05,
    sigma: float = 8.0,
    settled_fraction: float = 0.5,
    signal: float = 25.0,
    signal_persistence: float = 0.9,
    signal_noise: float = 0.4,
) -> Dataset:
    """A dataset of ``n_segments`` segments of ``seg_len`` decision points each.

    Args:
        n_segments, seg_len: shape of the data (T = n_segments * seg_len).
        top_k: depth levels per side.
        seed: numpy seed; same seed -> identical arrays.
        tick: price grid in ticks (10 = $0.01).
        kappa: mean-reversion speed of the mid towards the segment's anchor per step.
        sigma: std of the mid's random step, ticks.
        settled_fraction: share of segments with a known result (YES with probability
            anchor/1000, so the anchor is the fair price); the rest are RESULT_UNKNOWN.
        signal: ticks of mid drift per step per unit of order-flow imbalance ``z`` (an
            AR(1) in [-1, 1] with ``signal_persistence``).  ``z`` shows in the best
            levels' sizes (imbalance_l1 feature), so an agent can learn to trade it;
            0 makes the walk unpredictable beyond mean reversion.
        signal_persistence: AR(1) coefficient of ``z``.
        signal_noise: std of the shocks of ``z``.

    Returns:
        a Dataset that passes core.dataset.validate.
    """
    rng = np.random.default_rng(seed)
    n_rows = n_segments * seg_len
    px = np.full((n_rows, 2, top_k), NO_PRICE, dtype=np.int16)
    qty = np.zeros((n_rows, 2, top_k), dtype=np.int64)
    ttc = np.zeros(n_rows, dtype=np.float32)
    reset = np.zeros(n_rows, dtype=np.uint8)
    seg_result = np.full(n_segments, RESULT_UNKNOWN, dtype=np.int8)
    lo, hi = 5 * tick, PRICE_MAX - 5 * tick
    for s in range(n_segments):
        r0 = s * seg_len
        reset[r0] = 1
        anchor = rng.uniform(250, 750)
        x = anchor + rng.normal(0, 60)
        noise = rng.normal(0.0, sigma, seg_len)
        shocks = rng.normal(0.0, signal_noise, seg_len)
        z = 0.0
        spreads = rng.integers(1, 4, seg_len) * tick
        sizes = rng.integers(1, 200, (seg_len, 2, top_k)) * 100
        for k in range(seg_len):
            z = min(max(signal_persistence * z + shocks[k], -0.95), 0.95)
            x = min(max(x + kappa * (anchor - x) + signal * z + noise[k], lo), hi)
            yes_bid = int(x - spreads[k] / 2) // tick * tick
            no_bid = PRICE_MAX - (yes_bid + int(spreads[k]))
            row = r0 + k
            # the flow shows up in the touch sizes: imbalance_l1 ~ z
            top = 100 * 100
            sizes[k, 0, 0] = int(top * (1 + z))
            sizes[k, 1, 0] = int(top * (1 - z))
            for j in range(top_k):
                if yes_bid - j * tick > 0:
                    px[row, 0, j] = yes_bid - j * tick
                    qty[row, 0, j] = sizes[k, 0, j]
                if no_bid - j * tick > 0:
                    px[row, 1, j] = no_bid - j * tick
                    qty[row, 1, j] = sizes[k, 1, j]
        ttc[r0 : r0 + seg_len] = np.linspace(1.0, 0.0, seg_len, dtype=np.float32)
        if rng.random() < settled_fraction:
            seg_result[s] = RESULT_YES if rng.random() < anchor / PRICE_MAX else RESULT_NO
    features = np.zeros((n_rows, N_MARKET_FEATURES), dtype=np.float32)
    market_features_batch(px, qty, ttc, reset, features)
    mid = np.zeros(n_rows, dtype=np.float64)
    mids_batch(px, qty, mid)
    starts = np.arange(n_segments, dtype=np.int64) * seg_len
    return Dataset(
        features=features,
        depth_px=px,
        depth_qty=qty,
        mid=mid,
        ts=1_700_000_000_000 + np.arange(n_rows, dtype=np.int64) * 1000,
        ttc=ttc,
        seg_start=starts,
        seg_end=starts + seg_len,
        seg_market=np.arange(n_segments, dtype=np.int32),
        seg_result=seg_result,
        markets=tuple(f"SYN-{seed}-{s}" for s in range(n_segments)),
        meta={
            "source": "synthetic",
            "seed": seed,
            "kappa": kappa,
            "sigma": sigma,
            "signal": signal,
        },
    )
