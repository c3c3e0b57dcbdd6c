"""Test helpers of the training tests.

``make_sim_dataset``: datasets straight from the sim's market model, through the real
history builder.

The model's event stream (rolling listings) is laid out as the recorded tables would hold
it -- one empty snapshot per listing when it is created, its book deltas, its open/close
times and result as the ``markets`` table has them -- and handed to
``kalshi_rl.store.history.build_dataset``, the same replay that builds datasets from
PostgreSQL.  No sockets, no database: fast enough for unit tests of the evaluation.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from core.dataset import Dataset
from core.dtypes import (
    DELTA_DTYPE,
    EV_DELTA,
    EV_LIFECYCLE,
    GAP_DTYPE,
    LC_CREATED,
    LC_DETERMINED,
    NO_PRICE,
    RESULT_UNKNOWN,
    SNAPSHOT_LEVEL_DTYPE,
    TRADE_DTYPE,
)
from kalshi_rl.sim.listings import ListingSchedule, default_series
from kalshi_rl.sim.model import MarketModel, ModelParams
from kalshi_rl.store.history import HistoryQuery
from kalshi_rl.store.history.build import build_dataset
from kalshi_rl.store.history.load import RawHistory

T0 = 1_767_225_600_000


def sim_dataset(
    bias: float, markets: int = 60, seed: int = 1, cadence_ms: int = 1000, life_ms: int = 60_000
) -> Dataset:
    """A dataset of ``markets`` settled rolling markets planted with ``bias``."""
    series = tuple(replace(s, bias=bias) for s in default_series(4, lifetime_ms=life_ms))
    model = MarketModel(
        [], ModelParams(), seed=seed, ts0=T0, ms_per_step=12.0, schedule=ListingSchedule(series, T0)
    )
    parts = []
    done = 0
    while done < markets:
        ev = model.step(20_000)
        parts.append(ev)
        done += int(np.count_nonzero((ev["kind"] == EV_LIFECYCLE) & (ev["side"] == LC_DETERMINED)))
    ev = np.concatenate(parts)
    # which listing (serial) owns each event's slot
    owner = np.full(ev.shape[0], -1, dtype=np.int64)
    cur = np.full(len(model.markets), -1, dtype=np.int64)
    created = np.flatnonzero((ev["kind"] == EV_LIFECYCLE) & (ev["side"] == LC_CREATED))
    bounds = [*created.tolist(), ev.shape[0]]
    owner[: bounds[0]] = -1
    for k, lo in enumerate(created.tolist()):
        cur[ev["market"][lo]] = ev["qty"][lo]
        owner[lo : bounds[k + 1]] = cur[ev["market"][lo : bounds[k + 1]]]
    det = (ev["kind"] == EV_LIFECYCLE) & (ev["side"] == LC_DETERMINED)
    result = dict(zip(owner[det].tolist(), ev["price"][det].tolist(), strict=True))
    serials = sorted(result)[:markets]
    index = {s: i for i, s in enumerate(serials)}
    specs = [model.listed[s][1] for s in serials]

    keep_d = (ev["kind"] == EV_DELTA) & np.isin(owner, serials)
    d_ev = ev[keep_d]
    deltas = np.zeros(d_ev.shape[0], dtype=DELTA_DTYPE)
    deltas["rec_id"] = np.flatnonzero(keep_d) * 2 + 1
    deltas["exch_ts"] = d_ev["ts"]
    deltas["recv_ts"] = d_ev["ts"] * 1_000_000
    deltas["delta"] = d_ev["qty"]
    deltas["market"] = [index[s] for s in owner[keep_d].tolist()]
    deltas["sid"] = 1
    deltas["price"] = d_ev["price"]
    deltas["side"] = d_ev["side"]
    keep_c = created[np.isin(ev["qty"][created], serials)]
    snaps = np.zeros(keep_c.shape[0], dtype=SNAPSHOT_LEVEL_DTYPE)  # empty books at listing
    snaps["rec_id"] = keep_c * 2
    snaps["exch_ts"] = ev["ts"][keep_c]
    snaps["recv_ts"] = ev["ts"][keep_c] * 1_000_000
    snaps["market"] = [index[int(s)] for s in ev["qty"][keep_c].tolist()]
    snaps["sid"] = 1
    snaps["side"] = -1
    snaps["price"] = NO_PRICE
    order = np.argsort(np.concatenate([snaps["rec_id"], deltas["rec_id"]]), kind="stable")
    seq = np.empty(order.shape[0], dtype=np.int64)
    seq[order] = np.arange(1, order.shape[0] + 1)  # one sid, seq in stream order
    snaps["seq"] = seq[: snaps.shape[0]]
    deltas["seq"] = seq[snaps.shape[0] :]
    n = len(specs)
    raw = RawHistory(
        tickers=tuple(s.ticker for s in specs),
        market_ids=np.arange(1, n + 1, dtype=np.int32),
        open_ms=np.array([s.open_ts for s in specs], dtype=np.int64),
        close_ms=np.array([s.close_ts for s in specs], dtype=np.int64),
        result=np.array([result.get(s, RESULT_UNKNOWN) for s in serials], dtype=np.int8),
        snapshots=snaps,
        snap_session=np.ones(snaps.shape[0], dtype=np.int64),
        deltas=deltas,
        delta_session=np.ones(deltas.shape[0], dtype=np.int64),
        gaps=np.zeros(0, dtype=GAP_DTYPE),
        gap_session=np.zeros(0, dtype=np.int64),
        trades=np.zeros(0, dtype=TRADE_DTYPE),
        trade_session=np.zeros(0, dtype=np.int64),
        start_ms=T0,
        end_ms=int(ev["ts"][-1]) + 1,
    )
    ds, _info = build_dataset(raw, HistoryQuery(cadence_ms=cadence_ms, min_segment=10))
    return ds


@pytest.fixture(scope="session")
def make_sim_dataset() -> Any:
    """``sim_dataset`` (a function: bias, markets, seed, ... -> Dataset)."""
    return sim_dataset
