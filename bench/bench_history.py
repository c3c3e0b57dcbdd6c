"""History load throughput: PostgreSQL -> NumPy record arrays (and -> Dataset).

Ours: ``COPY (SELECT ...) TO STDOUT (FORMAT binary)`` decoded by one njit pass per 4 MB
batch on a fixed row layout (kalshi_rl.store.history.load_raw), then the njit replay.
Baseline: the plain way -- ``conn.fetch`` of the same SELECT and a per-row Python loop
filling the same DELTA_DTYPE array (and, for the dataset, a dict-book replay).  Each
size's variants share a ``benchmark.group``.  Data: three markets, each in its own feed
session, one snapshot and N deltas each, made server-side with ``INSERT ... SELECT
generate_series(...)``.

Run (about 2-3 minutes, most of it inserting rows), see bench/README.md:
    pytest bench/bench_history.py -o python_files='bench_*.py' -p no:cacheprovider \
        --basetemp=/tmp/bench_history --benchmark-min-rounds=3 --benchmark-max-time=0.2 \
        --benchmark-columns=min,median,max,rounds

The ``build_dataset`` group needs no database (``-k build_dataset``): the replay and
features on an in-memory RawHistory, ours beside the wave-1 flat replay read from git.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import numpy as np
import pytest

from core.dtypes import (
    DELTA_DTYPE,
    GAP_DTYPE,
    NO_TS,
    RESULT_UNKNOWN,
    SNAPSHOT_LEVEL_DTYPE,
    TRADE_DTYPE,
)
from kalshi_rl.store import db
from kalshi_rl.store import history as h

SIZES = (250_000, 1_000_000, 3_000_000)
NAIVE_SIZES = (250_000, 1_000_000)  # the per-row baseline takes ~10 s per round at 3M
T0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory, loop: asyncio.AbstractEventLoop) -> Iterator[str]:
    server = os.environ.get("DATABASE_URL")
    pgdata: Path | None = None
    if not server:
        pgdata = Path(tmp_path_factory.mktemp("pg")) / "data"
        server = db.start_embedded(pgdata)
    name = "bench_" + uuid.uuid4().hex[:8]
    parts = urlsplit(server)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))

    async def setup() -> None:
        admin = await asyncpg.connect(server)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        conn = await db.connect(url)
        await db.migrate(conn)
        ids = await db.ensure_markets(conn, [f"B{n}" for n in SIZES])
        for n in SIZES:
            mid = ids[f"B{n}"]
            sess = await conn.fetchval(
                "INSERT INTO feed_sessions (source, mode) VALUES ('bench', 'sim') RETURNING id"
            )
            await conn.execute(
                "INSERT INTO orderbook_snapshots"
                " SELECT $1, 1, $2, 1, 1, s, 400, 1000, $3::bigint, 0"
                " FROM generate_series(0, 1) s",
                sess,
                mid,
                T0,
            )
            # Deltas never go negative and YES/NO bids stay below 450: the book stays valid.
            await conn.execute(
                "INSERT INTO orderbook_deltas SELECT $1, g, $2, 1, g, g % 2, 300 + (g * 7) % 150,"
                " 100 * (1 + g % 5), $3::bigint + g * 10, ($3::bigint + g * 10) * 1000000, 0"
                " FROM generate_series(2, $4 + 1) g",
                sess,
                mid,
                T0,
                n,
            )
        await conn.execute("VACUUM ANALYZE")
        await conn.close()

    loop.run_until_complete(setup())
    yield url

    async def drop() -> None:
        admin = await asyncpg.connect(server)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    loop.run_until_complete(drop())
    if pgdata is not None:
        db.stop_embedded(pgdata)


@pytest.fixture(scope="module")
def helper(dsn: str, loop: asyncio.AbstractEventLoop) -> Iterator[asyncpg.Connection]:
    c = loop.run_until_complete(db.connect(dsn))
    yield c
    loop.run_until_complete(c.close())


@pytest.fixture(scope="module")
def conn(dsn: str, loop: asyncio.AbstractEventLoop) -> Iterator[asyncpg.Connection]:
    c = loop.run_until_complete(db.connect(dsn))
    # warm the JIT (decoder is NumPy; replay and features are njit) on the small market
    raw = loop.run_until_complete(h.load_raw(c, [f"B{SIZES[0]}"]))
    h.build_dataset(raw, h.HistoryQuery(cadence_updates=10))
    yield c
    loop.run_until_complete(c.close())


_NAIVE_SQL = (
    "SELECT d.rec_id, d.exch_ts, d.recv_ts, d.seq, d.delta, d.sid, d.price, d.side, d.status"
    " FROM orderbook_deltas d JOIN markets m ON m.id = d.market_id WHERE m.ticker = $1"
    " ORDER BY d.session_id, d.rec_id"
)


async def _naive_load(conn: asyncpg.Connection, ticker: str) -> np.ndarray:
    rows = await conn.fetch(_NAIVE_SQL, ticker)
    out = np.zeros(len(rows), dtype=DELTA_DTYPE)
    for i, r in enumerate(rows):
        out[i] = (
            r["rec_id"],
            r["exch_ts"],
            r["recv_ts"],
            r["seq"],
            r["delta"],
            0,
            r["sid"],
            r["price"],
            r["side"],
            r["status"],
        )
    return out


def _naive_replay(deltas: np.ndarray, every: int) -> list[tuple[list[tuple[int, int]], ...]]:
    book: dict[int, dict[int, int]] = {0: {400: 1000}, 1: {400: 1000}}
    rows = []
    for i, (side, price, d) in enumerate(
        zip(
            deltas["side"].tolist(), deltas["price"].tolist(), deltas["delta"].tolist(), strict=True
        )
    ):
        lv = book[side]
        lv[price] = lv.get(price, 0) + d
        if (i + 1) % every == 0:
            rows.append(
                tuple(
                    sorted(((p, q) for p, q in book[s].items() if q > 0), reverse=True)[:10]
                    for s in (0, 1)
                )
            )
    return rows


def _rounds(n: int) -> int:
    return 3 if n >= 1_000_000 else 5


@pytest.mark.parametrize("n", SIZES)
def test_load_raw_ours(benchmark, conn, loop, n: int) -> None:
    benchmark.group = f"load_raw {n}"
    raw = benchmark.pedantic(
        lambda: loop.run_until_complete(h.load_raw(conn, [f"B{n}"])),
        rounds=_rounds(n),
        iterations=1,
        warmup_rounds=1,
    )
    assert raw.deltas.shape[0] == n
    benchmark.extra_info["deltas_per_s"] = n / benchmark.stats.stats.min


@pytest.mark.parametrize("n", NAIVE_SIZES)
def test_load_raw_naive(benchmark, conn, loop, n: int) -> None:
    benchmark.group = f"load_raw {n}"
    out = benchmark.pedantic(
        lambda: loop.run_until_complete(_naive_load(conn, f"B{n}")),
        rounds=3,
        iterations=1,
        warmup_rounds=0,
    )
    assert out.shape[0] == n
    benchmark.extra_info["deltas_per_s"] = n / benchmark.stats.stats.min


@pytest.mark.parametrize("n", SIZES)
def test_load_history_ours(benchmark, conn, loop, n: int) -> None:
    benchmark.group = f"load_history {n}"
    q = h.HistoryQuery(tickers=(f"B{n}",), cadence_updates=10, top_k=10)
    ds = benchmark.pedantic(
        lambda: loop.run_until_complete(h.load_history(conn, q)),
        rounds=_rounds(n),
        iterations=1,
        warmup_rounds=1,
    )
    assert ds.n_rows == 1 + n // 10 and ds.n_segments == 1
    benchmark.extra_info["deltas_per_s"] = n / benchmark.stats.stats.min


@pytest.mark.parametrize("n", SIZES)
def test_load_history_ours_2conn(benchmark, conn, helper, loop, n: int) -> None:
    """The delta COPY split in two key ranges over two connections (one snapshot)."""
    benchmark.group = f"load_history {n}"
    q = h.HistoryQuery(tickers=(f"B{n}",), cadence_updates=10, top_k=10)
    ds = benchmark.pedantic(
        lambda: loop.run_until_complete(h.load_history(conn, q, helper=helper)),
        rounds=_rounds(n),
        iterations=1,
        warmup_rounds=1,
    )
    assert ds.n_rows == 1 + n // 10 and ds.n_segments == 1
    benchmark.extra_info["deltas_per_s"] = n / benchmark.stats.stats.min


@pytest.mark.parametrize("n", SIZES)
def test_load_history_unpruned(benchmark, conn, loop, n: int) -> None:
    """The delta query as it was: market + window filter only (a scan of every session)."""
    benchmark.group = f"load_history {n}"
    q = h.HistoryQuery(tickers=(f"B{n}",), cadence_updates=10, top_k=10)

    def run() -> object:
        raw = loop.run_until_complete(h.load_raw(conn, q.tickers, lean=True))
        return h.build_dataset(raw, q)[0]

    ds = benchmark.pedantic(run, rounds=_rounds(n), iterations=1, warmup_rounds=1)
    assert ds.n_rows == 1 + n // 10 and ds.n_segments == 1
    benchmark.extra_info["deltas_per_s"] = n / benchmark.stats.stats.min


@pytest.mark.parametrize("n", NAIVE_SIZES[:1])
def test_load_history_naive(benchmark, conn, loop, n: int) -> None:
    benchmark.group = f"load_history {n}"

    def run() -> list:
        return _naive_replay(loop.run_until_complete(_naive_load(conn, f"B{n}")), 10)

    rows = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    assert len(rows) == n // 10
    benchmark.extra_info["deltas_per_s"] = n / benchmark.stats.stats.min


# ---------------------------------------------------------------------------- build_dataset
# The replay + features alone (no database), beside the wave-1 flat replay kernel: the
# single-file ``kalshi_rl/store/history.py`` of commit WAVE1_COMMIT, read from git and
# imported under another name.  Same in-memory RawHistory (three markets, each its own
# session, one snapshot and n deltas, the pattern of the database data above).
WAVE1_COMMIT = "660b374"
BUILD_SIZES = (1_000_000, 3_000_000)  # deltas over all three markets


@pytest.fixture(scope="module")
def wave1_history(tmp_path_factory: pytest.TempPathFactory) -> Any:
    repo = Path(__file__).resolve().parent.parent
    src = subprocess.run(
        ["git", "show", f"{WAVE1_COMMIT}:kalshi_rl/store/history.py"],
        cwd=repo, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if src.returncode != 0:
        raise RuntimeError(f"cannot read the wave-1 history module from git: {src.stderr}")
    path = Path(tmp_path_factory.mktemp("wave1")) / "wave1_history.py"
    path.write_text(src.stdout)
    spec = importlib.util.spec_from_file_location("wave1_history", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["wave1_history"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _memory_raw(mod: Any, n: int) -> Any:
    """``mod.RawHistory`` of 3 markets with n // 3 deltas each (books stay valid)."""
    m_n, per = 3, n // 3
    snaps = np.zeros(2 * m_n, dtype=SNAPSHOT_LEVEL_DTYPE)
    snaps["market"] = np.repeat(np.arange(m_n), 2)
    snaps["side"] = np.tile([0, 1], m_n)
    snaps["price"], snaps["qty"], snaps["exch_ts"], snaps["rec_id"] = 400, 1000, T0, 1
    deltas = np.zeros(per * m_n, dtype=DELTA_DTYPE)
    g = np.tile(np.arange(1, per + 1, dtype=np.int64), m_n)
    deltas["market"] = np.repeat(np.arange(m_n), per)
    deltas["rec_id"], deltas["seq"], deltas["side"] = g + 1, g, g % 2
    deltas["price"], deltas["delta"] = 300 + (g * 7) % 150, 100 * (1 + g % 5)
    deltas["exch_ts"] = T0 + g * 10
    deltas["recv_ts"] = deltas["exch_ts"] * 1_000_000
    fields = {
        "tickers": tuple(f"M{m}" for m in range(m_n)),
        "market_ids": np.arange(m_n, dtype=np.int32),
        "open_ms": np.full(m_n, NO_TS, dtype=np.int64),
        "close_ms": np.full(m_n, NO_TS, dtype=np.int64),
        "result": np.full(m_n, RESULT_UNKNOWN, dtype=np.int8),
        "snapshots": snaps,
        "snap_session": np.repeat(np.arange(1, m_n + 1, dtype=np.int64), 2),
        "deltas": deltas,
        "delta_session": np.repeat(np.arange(1, m_n + 1, dtype=np.int64), per),
        "gaps": np.zeros(0, dtype=GAP_DTYPE),
        "gap_session": np.zeros(0, dtype=np.int64),
        "trades": np.zeros(0, dtype=TRADE_DTYPE),
        "trade_session": np.zeros(0, dtype=np.int64),
    }
    return mod.RawHistory(**{k: v for k, v in fields.items() if k in mod.RawHistory._fields})


def _time_build(benchmark: Any, mod: Any, n: int) -> Any:
    benchmark.group = f"build_dataset {n}"
    raw = _memory_raw(mod, n)
    q = mod.HistoryQuery(cadence_updates=10, top_k=10)
    ds = benchmark.pedantic(
        lambda: mod.build_dataset(raw, q)[0], rounds=11, iterations=1, warmup_rounds=1
    )
    assert ds.n_rows == 3 * (1 + (n // 3) // 10) and ds.n_segments == 3
    benchmark.extra_info["deltas_per_s"] = n / benchmark.stats.stats.min
    return ds


@pytest.mark.parametrize("n", BUILD_SIZES)
def test_build_dataset_ours(benchmark: Any, wave1_history: Any, n: int) -> None:
    ds = _time_build(benchmark, h, n)
    # the same dataset as the wave-1 replay builds (clean data: no fix changes it)
    old = wave1_history.build_dataset(
        _memory_raw(wave1_history, n), wave1_history.HistoryQuery(cadence_updates=10, top_k=10)
    )[0]
    for f in ("features", "depth_px", "depth_qty", "mid", "ts", "ttc", "seg_start", "seg_end"):
        assert np.array_equal(getattr(ds, f), getattr(old, f), equal_nan=True), f


@pytest.mark.parametrize("n", BUILD_SIZES)
def test_build_dataset_wave1(benchmark: Any, wave1_history: Any, n: int) -> None:
    _time_build(benchmark, wave1_history, n)
