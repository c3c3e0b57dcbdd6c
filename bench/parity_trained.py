"""Train/live parity with a trained PPO agent on the recorded PPO-experiment session.

``kalshi-rl parity`` (``kalshi_rl.trade.parity.run_parity``) replays one feed session
through the sim with the actor attached and compares it with the dataset and the env,
market by market.  The docs/training.md experiment recorded one session of ~1 200
markets (``collect --all``: the session's ``markets`` column lists only the first ones)
and trained agents on it that trade (they buy NO on the biased markets).  This script:

1. picks markets of that session: by default the test split of the experiment's dataset
   (``split_train_val_test`` with the ``Args`` defaults: the last 215 markets), or the
   first ``--limit`` of them;
2. copies their recorded rows (snapshots, deltas, trades: the same ``rec_id``s), the
   markets and the model registry into a new database on the same server (session
   ``--session`` listing exactly those markets; reused when it exists), so the replay
   serves only them;
3. runs ``run_parity`` on that session with each ``--model`` at ``--cadence`` and prints
   the report's summary (markets matched in full / total, decision points, fills, the
   first divergences).

    python bench/parity_trained.py --model ppo-bias-s0:4 --model ppo-bias-s2:3 --cadence 100
    python bench/parity_trained.py --model ppo-bias-s0:4 --cadence 1 --limit 8

Needs the experiment's PostgreSQL (``--pgdata``, default /tmp/ppo-P/rec/pgdata, or
DATABASE_URL).  docs/actor.md (Parity) and bench/README.md have the results.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path
from typing import Any


async def subset_db(dsn: str, session: int, tickers: list[str]) -> str:
    """The DSN of a database on the same server holding ``session``'s rows of ``tickers``
    only, as session ``session`` with exactly those markets (made once per ticker set).

    A separate database, not a second session in the same one: a dataset build reads
    every session's rows of a market in the time window.
    """
    import hashlib
    import io

    from kalshi_rl.store import db

    name = "parity_" + hashlib.sha1("\n".join(tickers).encode()).hexdigest()[:12]
    sub = dsn.replace("/postgres?", f"/{name}?", 1)
    if sub == dsn:
        raise SystemExit(f"cannot derive a database DSN from {dsn!r}")
    src = await db.connect(dsn)
    try:
        if await src.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return sub
        await src.execute(f"CREATE DATABASE {name}")
        dst = await db.connect(sub)
        try:
            await db.migrate(dst)
            ids = [
                r["id"]
                for r in await src.fetch(
                    "SELECT id FROM markets WHERE ticker = ANY($1::text[])", tickers
                )
            ]
            queries: list[tuple[str, str, tuple[Any, ...]]] = [
                ("markets", "SELECT * FROM markets ORDER BY id", ()),
                ("models", "SELECT * FROM models ORDER BY id", ()),
                (
                    "feed_sessions",
                    "SELECT * FROM feed_sessions WHERE id = $1",
                    (session,),
                ),
            ]
            rows_of = "WHERE session_id = $1 AND market_id = ANY($2::int[])"
            queries += [
                (t, f"SELECT * FROM {t} {rows_of}", (session, ids))
                for t in ("orderbook_snapshots", "orderbook_deltas", "trades")
            ]
            for table, q, args in queries:
                buf = io.BytesIO()
                await src.copy_from_query(q, *args, output=buf, format="binary")
                buf.seek(0)
                await dst.copy_to_table(table, source=buf, format="binary")
            await dst.execute(
                "UPDATE feed_sessions SET markets = $1::text[] WHERE id = $2", tickers, session
            )
            await dst.execute(
                "SELECT setval(pg_get_serial_sequence('models', 'id'),"
                " (SELECT max(id) FROM models))"
            )
        finally:
            await dst.close()
        return sub
    finally:
        await src.close()


def test_tickers(dataset: Path, val_fraction: float = 0.2, test_fraction: float = 0.2) -> list[str]:
    """The experiment's held-out markets, in time order (``Args`` defaults)."""
    from kalshi_rl.store.parquet import load_dataset
    from kalshi_rl.train.run import split_train_val_test

    sp = split_train_val_test(load_dataset(dataset), val_fraction, test_fraction)
    t = sp.test
    return [t.markets[int(t.seg_market[s])] for s in range(t.n_segments)]


def summary(rep: Any, seconds: float) -> str:
    fills = sum(m.paper_fills for m in rep.markets)
    trades = sum(m.env_trades for m in rep.markets)
    traded = sum(1 for m in rep.markets if m.env_trades or m.paper_fills)
    bad = [m for m in rep.markets if not m.matched]
    lines = [
        f"{rep.model} cadence {rep.cadence_updates}: markets matched in full"
        f" {rep.markets_matched} / {len(rep.markets)}; {rep.decision_points} decision points;"
        f" env trades {trades}, paper fills {fills} ({traded} markets traded);"
        f" same-ms decision points {sum(m.same_ms_rows for m in rep.markets)};"
        f" ttc-from-receipt rows {sum(m.ttc_from_receipt for m in rep.markets)};"
        f" env P&L ${sum(m.env_pnl for m in rep.markets) / 1e4:+.4f},"
        f" paper P&L ${sum(m.paper_pnl for m in rep.markets) / 1e4:+.4f};"
        f" {rep.events_replayed} events replayed in {seconds:.0f} s"
    ]
    if bad:
        lines.append(f"not matched: {', '.join(m.ticker for m in bad[:20])}")
        lines += [f"  {d}" for d in rep.divergences[:20]]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pgdata", type=Path, default=Path("/tmp/ppo-P/rec/pgdata"))
    ap.add_argument("--session", type=int, default=1, help="the recorded session")
    ap.add_argument("--dataset", type=Path, default=Path("/tmp/ppo-P/rec/dataset"))
    ap.add_argument("--model", action="append", required=True, help="NAME:VERSION")
    ap.add_argument("--cadence", type=int, default=100)
    ap.add_argument("--limit", type=int, default=0, help="the first N test markets (0: all)")
    ap.add_argument("--tail", type=int, default=0, help="the last N test markets (0: all)")
    ap.add_argument("--full-report", action="store_true", help="print the per-market table")
    a = ap.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    from kalshi_rl.store import db
    from kalshi_rl.trade.parity import run_parity

    dsn = os.environ.get("DATABASE_URL") or db.start_embedded(a.pgdata)
    tickers = test_tickers(a.dataset)
    if a.limit:
        tickers = tickers[: a.limit]
    if a.tail:
        tickers = tickers[-a.tail :]
    sub = asyncio.run(subset_db(dsn, a.session, tickers))
    print(f"{sub}: {len(tickers)} markets of session {a.session}", flush=True)
    for ref in a.model:
        t0 = time.perf_counter()
        rep = asyncio.run(run_parity(sub, a.session, ref, cadence=a.cadence))
        dt = time.perf_counter() - t0
        if a.full_report:
            print(rep.text())
        print(summary(rep, dt), flush=True)


if __name__ == "__main__":
    main()
