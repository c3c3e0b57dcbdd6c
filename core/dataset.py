"""The in-memory layout of a training dataset: decision points over clean book segments.

Produced by ``kalshi_rl.store.history`` (PostgreSQL -> arrays, or Parquet), consumed by
``kalshi_rl.env`` (no I/O in reset/step).  Lives in core because both sides share it and
neither may import the other.

Time axis ``T`` = decision points, concatenated over segments.  A segment is a maximal run
of one market's data with a valid book (no gap, no desync inside); segments are never
stitched.  Segment ``s`` covers rows ``seg_start[s] <= t < seg_end[s]``.

No decision point lies at or after its market's close time (Kalshi refuses orders then):
a segment that reached close ends at its last row before close, and settles at
``seg_result`` when the exchange's result is known.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Dataset(NamedTuple):
    """Decision points of recorded books.

    Attributes:
        features: float32 [T, N_MARKET_FEATURES] from ``core.features.market_features_batch``.
        depth_px: int16 [T, 2, K] best-first bid prices per side (own scale), NO_PRICE padded.
        depth_qty: int64 [T, 2, K] quantities (count units) matching ``depth_px``.
        mid: float64 [T] YES-scale mid in ticks (``core.features.mid_from_levels``).
        ts: int64 [T] exchange time of the decision point (unix ms).
        ttc: float32 [T] time-to-close fraction in [0, 1] (1 = just opened, 0 = closing).
        seg_start: int64 [S] first row of each segment.
        seg_end: int64 [S] one past the last row of each segment.
        seg_market: int32 [S] index into ``markets``.
        seg_result: int8 [S] RESULT_YES / RESULT_NO when the segment's data runs up to
            the market's close and the exchange's result is known (settlement applies at
            the segment's end), else RESULT_UNKNOWN.
        markets: tuple of tickers.
        meta: free-form provenance (window, cadence, source, config hash); JSON-able.
        seg_close_ts: int64 [S] close time of the segment's market (unix ms, NO_TS when
            unknown); None when the producer does not know close times (synthetic data).
        seg_end_reason: int8 [S] why the segment ended (``SEG_END_*`` of core.dtypes:
            data end, gap, desync, close, recording end); None when not known.
    """

    features: np.ndarray
    depth_px: np.ndarray
    depth_qty: np.ndarray
    mid: np.ndarray
    ts: np.ndarray
    ttc: np.ndarray
    seg_start: np.ndarray
    seg_end: np.ndarray
    seg_market: np.ndarray
    seg_result: np.ndarray
    markets: tuple[str, ...]
    meta: dict
    seg_close_ts: np.ndarray | None = None
    seg_end_reason: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        return int(self.features.shape[0])

    @property
    def n_segments(self) -> int:
        return int(self.seg_start.shape[0])

    @property
    def top_k(self) -> int:
        return int(self.depth_px.shape[2])

    def subset(self, segments: np.ndarray) -> Dataset:
        """A dataset of only ``segments`` (indices), rows renumbered (e.g. a held-out split)."""
        segments = np.asarray(segments, dtype=np.int64)
        rows = [np.arange(self.seg_start[s], self.seg_end[s]) for s in segments]
        idx = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        lengths = self.seg_end[segments] - self.seg_start[segments]
        ends = np.cumsum(lengths).astype(np.int64)
        return Dataset(
            features=self.features[idx],
            depth_px=self.depth_px[idx],
            depth_qty=self.depth_qty[idx],
            mid=self.mid[idx],
            ts=self.ts[idx],
            ttc=self.ttc[idx],
            seg_start=ends - lengths,
            seg_end=ends,
            seg_market=self.seg_market[segments],
            seg_result=self.seg_result[segments],
            markets=self.markets,
            meta=dict(self.meta),
            seg_close_ts=None if self.seg_close_ts is None else self.seg_close_ts[segments],
            seg_end_reason=None if self.seg_end_reason is None else self.seg_end_reason[segments],
        )


def validate(ds: Dataset) -> list[str]:
    """Return a list of problems (empty when the dataset is consistent)."""
    problems: list[str] = []
    t = ds.features.shape[0]
    for name in ("depth_px", "depth_qty", "mid", "ts", "ttc"):
        arr = getattr(ds, name)
        if arr.shape[0] != t:
            problems.append(f"{name} has {arr.shape[0]} rows, features has {t}")
    if ds.depth_px.ndim != 3 or ds.depth_px.shape[1] != 2:
        problems.append(f"depth_px must be [T, 2, K], got {ds.depth_px.shape}")
    if ds.depth_qty.shape != ds.depth_px.shape:
        problems.append("depth_qty shape differs from depth_px")
    s = ds.seg_start.shape[0]
    for name in ("seg_end", "seg_market", "seg_result", "seg_close_ts", "seg_end_reason"):
        if getattr(ds, name) is not None and getattr(ds, name).shape[0] != s:
            problems.append(f"{name} has {getattr(ds, name).shape[0]} entries, expected {s}")
    if s and not problems:
        if np.any(ds.seg_end <= ds.seg_start):
            problems.append("a segment is empty")
        if (
            ds.seg_start[0] != 0
            or ds.seg_end[-1] != t
            or np.any(ds.seg_start[1:] != ds.seg_end[:-1])
        ):
            problems.append("segments do not tile the rows contiguously")
        if np.any(ds.seg_market < 0) or np.any(ds.seg_market >= len(ds.markets)):
            problems.append("seg_market index out of range")
        if ds.seg_close_ts is not None:
            problems += _after_close(ds.ts, ds.seg_start, ds.seg_end, ds.seg_close_ts)
    if t and not np.all(np.isfinite(ds.features)):
        problems.append("features contain NaN/inf")
    return problems


def _after_close(
    ts: np.ndarray, seg_start: np.ndarray, seg_end: np.ndarray, close: np.ndarray
) -> list[str]:
    """A problem when some decision point lies at or after its market's close."""
    known = close >= 0
    if not known.any():
        return []
    last = ts[seg_end[known] - 1]  # rows of a segment are in time order
    n = int(np.count_nonzero(last >= close[known]))
    return [f"{n} segments have decision points at or after close"] if n else []
