"""Dataset building: a replay's decision points -> :class:`core.dataset.Dataset`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg
import numpy as np

from core.dataset import Dataset
from core.dtypes import DEFAULT_TOP_K, FEATURE_TOP_LEVELS, NO_TS, RESULT_UNKNOWN
from core.features import MARKET_FEATURE_NAMES, N_MARKET_FEATURES, market_features_batch, mids_batch
from kalshi_rl.errors import ConfigError, DatasetError
from kalshi_rl.store.history.load import RawHistory, _to_ms, load_raw
from kalshi_rl.store.history.replay import (
    COUNTER_NAMES,
    END_CLOSE,
    END_DATA,
    END_RECORDING,
    MODE_MS,
    MODE_UPDATES,
    _run,
)


@dataclass(frozen=True)
class HistoryQuery:
    """What to load and how to cut it into decision points.

    Attributes:
        tickers: markets (None = all recorded markets).
        start, end: exchange-time window ``[start, end)``: aware datetimes or unix ms.
        cadence_updates: a decision point every N updates of a market (default 1).
        cadence_ms: or one every T ms of exchange time (exclusive with cadence_updates).
        top_k: depth levels per side kept (>= FEATURE_TOP_LEVELS).
        min_segment: segments with fewer decision points are dropped.
        close_tolerance_ms: a segment settles at ``markets.result`` when it ends at the
            market's close (an update, gap or end marker at/after ``close_time``), or --
            for recordings without an event at close -- when it is the market's last, the
            data ended there (no hole), the window covers ``close_time`` and its last
            update is at most this long before it.
        max_rows: refuse (DatasetError) a build whose decision points could exceed this
            many rows (an upper bound computed before allocating anything).
    """

    tickers: tuple[str, ...] | None = None
    start: datetime | int | None = None
    end: datetime | int | None = None
    cadence_updates: int | None = None
    cadence_ms: int | None = None
    top_k: int = DEFAULT_TOP_K
    min_segment: int = 2
    close_tolerance_ms: int = 60_000
    max_rows: int = 5_000_000

    def __post_init__(self) -> None:
        if self.tickers is not None:
            object.__setattr__(self, "tickers", tuple(self.tickers))
        if self.cadence_updates is not None and self.cadence_ms is not None:
            raise ConfigError("give cadence_updates or cadence_ms, not both")
        for name in ("cadence_updates", "cadence_ms"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be a positive int, got {v!r}")
        if not isinstance(self.top_k, int) or self.top_k < FEATURE_TOP_LEVELS:
            raise ConfigError(f"top_k must be an int >= {FEATURE_TOP_LEVELS}, got {self.top_k!r}")
        if not isinstance(self.min_segment, int) or self.min_segment < 1:
            raise ConfigError(f"min_segment must be a positive int, got {self.min_segment!r}")
        if self.close_tolerance_ms < 0:
            raise ConfigError("close_tolerance_ms must be >= 0")
        if not isinstance(self.max_rows, int) or self.max_rows < 1:
            raise ConfigError(f"max_rows must be a positive int, got {self.max_rows!r}")

    @property
    def mode(self) -> tuple[int, int]:
        """(replay mode, cadence) for the kernel."""
        if self.cadence_ms is not None:
            return MODE_MS, self.cadence_ms
        return MODE_UPDATES, self.cadence_updates or 1

    def as_meta(self) -> dict[str, Any]:
        """JSON-able form (datetimes as unix ms)."""
        d = asdict(self)
        d["tickers"] = None if self.tickers is None else list(self.tickers)
        d["start"] = None if self.start is None else _to_ms(self.start, 0)
        d["end"] = None if self.end is None else _to_ms(self.end, 0)
        d["cadence_updates"] = self.mode[1] if self.mode[0] == MODE_UPDATES else None
        return d


class SegmentInfo(NamedTuple):
    """Per-segment facts of a build, before dropping short segments (diagnostics/tests)."""

    market: np.ndarray  # int32 [S]
    first_ts: np.ndarray  # int64 [S] exchange ms of the opening snapshot
    last_ts: np.ndarray  # int64 [S] last update (or emitted grid point)
    end_reason: np.ndarray  # int8 [S] END_*
    rows: np.ndarray  # int64 [S] decision points emitted
    kept: np.ndarray  # bool [S] survived min_segment


def _ttc(ts: np.ndarray, c: np.ndarray, o: np.ndarray) -> np.ndarray:
    span = (c - o).astype(np.float64)
    frac = np.ones(ts.shape[0], dtype=np.float64)
    ok = span > 0
    frac[ok] = (c[ok] - ts[ok]) / span[ok]
    return np.clip(frac, 0.0, 1.0).astype(np.float32)


def _seg_results(
    raw: RawHistory, seg_market: np.ndarray, last_ts: np.ndarray, reason: np.ndarray, tol: int
) -> np.ndarray:
    """RESULT_* per segment: known for the segments whose data reaches the market's close.

    A segment that ended at close (END_CLOSE) reached it; so did a market's last segment
    when the data ended there without a hole (END_DATA, END_RECORDING), the window covers
    the close and its last update lies within ``tol`` ms of it.
    """
    out = np.full(seg_market.shape[0], RESULT_UNKNOWN, dtype=np.int8)
    if seg_market.size == 0:
        return out
    result = raw.result[seg_market]
    close = raw.close_ms[seg_market]
    known = (result != RESULT_UNKNOWN) & (close != NO_TS)
    at_close = known & (reason == END_CLOSE)
    last_of = np.full(len(raw.tickers), -1, dtype=np.int64)
    last_of[seg_market] = np.arange(seg_market.size)  # later segments overwrite earlier
    is_last = last_of[seg_market] == np.arange(seg_market.size)
    ended = (reason == END_DATA) | (reason == END_RECORDING)
    near = known & is_last & ended & (raw.end_ms >= close) & (last_ts >= close - tol)
    settled = at_close | near
    out[settled] = result[settled]
    return out


def _known_times(ts: np.ndarray, seg_start: np.ndarray, seg_end: np.ndarray) -> None:
    """Make ``ts`` non-decreasing within each segment (in place): a row's book is known
    no earlier than the rows before it.

    Exchange times need not follow arrival order exactly: a snapshot stamped with its
    receive time (Kalshi's carry none) lies a network latency after the exchange time of
    the deltas that follow it.  The env's latency model runs on ``ts``.
    """
    for a, b in zip(seg_start.tolist(), seg_end.tolist(), strict=True):
        seg = ts[a:b]
        if b - a > 1 and np.any(seg[1:] < seg[:-1]):
            np.maximum.accumulate(seg, out=seg)


def _max_rows(raw: RawHistory, mode: int, cadence: int) -> int:
    """An upper bound of the decision points a build emits (before allocating them)."""
    if mode == MODE_UPDATES:
        return int(raw.snapshots.shape[0] + raw.deltas.shape[0] // cadence + 1)
    # MODE_MS: per market, its grid over the span of its updates (cut at close), plus one
    # extra point per segment (a reopened segment starts a grid of its own).
    n = len(raw.tickers)
    lo = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    for recs in (raw.snapshots, raw.deltas):
        m = recs["market"].astype(np.int64)
        ok = (m >= 0) & (m < n)
        np.minimum.at(lo, m[ok], recs["exch_ts"][ok])
        np.maximum.at(hi, m[ok], recs["exch_ts"][ok])
    close = raw.close_ms
    hi = np.where((close != NO_TS) & (hi > close), close, hi)
    span = np.maximum(hi - lo, 0)[lo <= hi]
    grid = (span.astype(np.float64) // cadence + 1).sum()
    return int(min(grid + raw.snapshots.shape[0], 2**62))


def _row_bytes(top_k: int) -> int:
    """Peak bytes per decision point while building (row buffers, grouped copy, features)."""
    depth = 2 * top_k * (2 + 8)  # px int16 + qty int64 per level and side
    return 2 * (depth + 16) + 4 * N_MARKET_FEATURES + 8 + 4 + 8


def _check_budget(raw: RawHistory, query: HistoryQuery) -> int:
    """The row-count bound of a build; DatasetError when it exceeds ``query.max_rows``."""
    mode, cadence = query.mode
    bound = _max_rows(raw, mode, cadence)
    if bound > query.max_rows:
        what = f"--cadence-ms {cadence}" if mode == MODE_MS else f"--cadence-updates {cadence}"
        gb = bound * _row_bytes(query.top_k) / 1e9
        raise DatasetError(
            f"{what} could make up to {bound:,} decision points (about {gb:,.1f} GB), more"
            f" than the row budget of {query.max_rows:,}: use a coarser cadence, a shorter"
            " window or fewer markets, or raise the budget (--max-rows)"
        )
    return bound


def build_dataset(raw: RawHistory, query: HistoryQuery) -> tuple[Dataset, SegmentInfo]:
    """Replay ``raw`` into decision points and market features.

    Args:
        raw: from :func:`load_raw`.
        query: cadence, depth, minimum segment length, close tolerance.

    Returns:
        (dataset, per-segment info before dropping).  Rows are grouped by segment in the
        order segments opened; none lies at or after its market's close_time.  ``ttc``
        uses markets.open_time/close_time, else the segment's own span (open -> first
        update, close -> last update).

    Raises:
        DatasetError: the build could exceed ``query.max_rows`` decision points.
    """
    mode, cadence = query.mode
    k = query.top_k
    bound = _check_budget(raw, query)
    # initial row buffers (they double when full): the bound is tight for update cadences
    est = bound if mode == MODE_UPDATES else min(bound, 1 << 16)
    (
        _,
        _,
        _,
        rpx,
        rqty,
        rts,
        rseg,
        n_rows,
        seg_market,
        seg_first,
        seg_last,
        seg_reason,
        n_seg,
        counters,
    ) = _run(raw, mode, cadence, k, max(est, 1024), close_ms=raw.close_ms)
    seg_market = seg_market[:n_seg]
    seg_first = seg_first[:n_seg]
    seg_last = seg_last[:n_seg]
    seg_reason = seg_reason[:n_seg]
    rseg = rseg[:n_rows]
    lengths = np.bincount(rseg, minlength=n_seg).astype(np.int64)
    kept = lengths >= query.min_segment
    seg_result = _seg_results(raw, seg_market, seg_last, seg_reason, query.close_tolerance_ms)

    # Rows were emitted interleaved across markets; group them by segment (stable keeps time).
    order = np.argsort(rseg, kind="stable")
    order = order[kept[rseg[order]]]
    row_seg = rseg[order]
    px = rpx[order]
    dq = rqty[order]
    ts = rts[order]
    keep_idx = np.flatnonzero(kept)
    kl = lengths[keep_idx]
    seg_end = np.cumsum(kl).astype(np.int64)
    seg_start = seg_end - kl
    _known_times(ts, seg_start, seg_end)

    mk = seg_market[row_seg]
    close = raw.close_ms[mk]
    opn = raw.open_ms[mk]
    has_close = close != NO_TS
    c = np.where(has_close, close, seg_last[row_seg])
    o = np.where(has_close & (opn != NO_TS), opn, seg_first[row_seg])
    ttc = _ttc(ts, c, o)
    reset = np.zeros(ts.shape[0], dtype=np.uint8)
    reset[seg_start] = 1
    feats = np.empty((ts.shape[0], N_MARKET_FEATURES), dtype=np.float32)
    market_features_batch(px, dq, ttc, reset, feats)
    mid = np.empty(ts.shape[0], dtype=np.float64)
    mids_batch(px, dq, mid)

    meta = {
        "source": "postgres",
        "query": query.as_meta(),
        "feature_names": list(MARKET_FEATURE_NAMES),
        "counts": {
            "snapshot_rows": int(raw.snapshots.shape[0]),
            "deltas": int(raw.deltas.shape[0]),
            "gaps": int(raw.gaps.shape[0]),
            "segments_total": int(n_seg),
            "segments_dropped": int(n_seg - keep_idx.size),
            **{k2: int(v) for k2, v in zip(COUNTER_NAMES, counters, strict=True)},
        },
    }
    ds = Dataset(
        features=feats,
        depth_px=px,
        depth_qty=dq,
        mid=mid,
        ts=ts,
        ttc=ttc,
        seg_start=seg_start,
        seg_end=seg_end,
        seg_market=seg_market[keep_idx].astype(np.int32),
        seg_result=seg_result[keep_idx],
        markets=raw.tickers,
        meta=meta,
        seg_close_ts=raw.close_ms[seg_market[keep_idx]].astype(np.int64),
        seg_end_reason=seg_reason[keep_idx].astype(np.int8),
    )
    info = SegmentInfo(seg_market, seg_first, seg_last, seg_reason, lengths, kept)
    return ds, info


async def load_history(
    conn: asyncpg.Connection, query: HistoryQuery, *, helper: asyncpg.Connection | None = None
) -> Dataset:
    """PostgreSQL -> :class:`core.dataset.Dataset` for ``query``.

    Args:
        conn: a connection.
        query: markets, window, cadence and segment rules.
        helper: optional second idle connection: the delta COPY is split across both
            (see :func:`load_raw`); ~25-30% faster for large loads on 2 cores.

    Returns:
        The dataset (possibly with 0 rows when the window holds no clean segment).
    """
    raw = await load_raw(
        conn, query.tickers, query.start, query.end, lean=True, replayable=True, helper=helper
    )
    ds, _ = build_dataset(raw, query)
    return ds
