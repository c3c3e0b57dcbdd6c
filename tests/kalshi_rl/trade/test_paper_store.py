"""Paper accounts persist through rings -> writer -> PostgreSQL and rebuild after a restart.

Real PostgreSQL (``pg_dsn``), the real writer (COPY), no mocks.  The first client is
abandoned without any shutdown (as a killed process would be) once the writer reports its
rows durable; a fresh client rebuilt from the database must show the same account.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.book import BookSet
from core.dtypes import SIDE_YES, TAKER_NO
from kalshi_rl.store import db
from kalshi_rl.store.writer import Writer, WriterConfig
from kalshi_rl.trade.paper import MarketInfo, PaperClient, PaperConfig, PaperRings
from kalshi_rl.trade.paper_store import load_account, open_account

YES = [(400, 1000), (380, 500)]
NO = [(550, 700), (500, 300)]


def books_with(ph: Any, tickers: tuple[str, ...]) -> BookSet:
    books = BookSet(4)
    for t in tickers:
        ph.snapshot(books, books.slot(t), YES, NO)
    return books


def view(c: PaperClient) -> dict[str, Any]:
    """Everything a user can read of the account, minus clock-dependent fields."""
    positions = c.get_positions()["market_positions"]
    for p in positions:
        p.pop("last_updated_ts")
    bal = c.get_balance()
    bal.pop("updated_ts")
    per_market = {c.books.ticker_of(m): c.positions[m].tolist() for m in range(c.books.n_markets)}
    return {
        "balance": bal,
        "cash": c.cash,
        "positions": positions,
        "per_market": per_market,
        "orders": c.get_orders()["orders"],
        "fills": c.get_fills(limit=1000)["fills"],
        "settlements": c.get_settlements()["settlements"],
    }


async def trade_a_while(ph: Any, c: PaperClient, books: BookSet) -> None:
    t, u = books.slots["T"], books.slots["U"]
    await c.create_order(**ph.order(coid="t-take", count="8.00", price="0.5000"))
    rest = await c.create_order(**ph.order(coid="t-rest", count="6.00", price="0.4000"))
    c.on_trades(ph.trade(t, 400, TAKER_NO, 1300))  # 10 ahead, then 3 fill us
    await c.create_order(**ph.order(coid="t-gone", count="1.00", price="0.3000"))
    await c.cancel_order(c.get_orders(status="resting")["orders"][0]["order_id"])
    await c.amend_order(rest["order_id"], price="0.4100")
    await c.create_order(**ph.order(ticker="U", coid="u-no", side="ask", count="4.37",
                                    price="0.4000"))  # fmt: skip
    await c.create_order(
        **ph.order(ticker="U", coid="u-sell", side="bid", count="1.00", price="0.4500")
    )  # fmt: skip  (closes 1 NO)
    ph.delta(books, u, SIDE_YES, 400, -1000)
    c.on_book_update(np.array([u]))
    c.settle_market("U", "yes")
    assert c.positions[t]["position"] > 0 and c.get_orders(status="resting")["orders"]


async def test_kill_and_rebuild_gives_the_same_account(
    ph: Any, pg_dsn: str, tmp_path: Path
) -> None:
    conn = await db.connect(pg_dsn)
    try:
        cfg = PaperConfig(start_cash=500 * 10_000)
        acct, created = await open_account(conn, "paper-test", cfg.start_cash, cfg.to_json())
        assert created
        assert await open_account(conn, "paper-test", 1, {}) == (acct, False)

        books = books_with(ph, ("T", "U"))
        rings = PaperRings(1 << 8)
        c = PaperClient(books, cfg, markets=[MarketInfo("T"), MarketInfo("U")], rings=rings,
                        account_id=acct, clock=ph.Clock())  # fmt: skip

        async def connect() -> Any:
            return await db.connect(pg_dsn)

        w = Writer(connect, rings.by_table(), acct, books.ticker_of, spill_dir=tmp_path,
                   config=WriterConfig(flush_interval_s=0.01))  # fmt: skip
        task = w.start()
        await trade_a_while(ph, c, books)
        await ph_until(lambda: all(len(r) == 0 for r in rings.by_table().values()) and not
                       w.stats()["rows_held"])  # fmt: skip
        await w.flush()
        before = view(c)
        task.cancel()  # killed: no close(), no final flush
        del c

        books2 = books_with(ph, ("U", "T"))  # other slots than before
        c2 = PaperClient(books2, PaperConfig(start_cash=1), clock=ph.Clock())
        c2.restore(await load_account(conn, acct))
        after = view(c2)
        for key in before:
            if key == "orders":
                for a, b in zip(after[key], before[key], strict=True):
                    diff = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
                    assert not diff, diff
            assert after[key] == before[key], key

        # the rebuilt account trades on: its resting order still fills, ids keep counting
        n = c2.on_trades(ph.trade(books2.slots["T"], 390, TAKER_NO, 300))
        assert n == 1
        r = await c2.create_order(**ph.order(coid="after", count="1.00", price="0.3000"))
        assert int(r["order_id"].rsplit("-", 1)[1], 16) == len(before["orders"]) + 1
        count = await conn.fetchval("SELECT count(*) FROM paper_fills WHERE account_id = $1", acct)
        assert count == len(before["fills"])
    finally:
        await conn.close()


async def test_settlement_and_fill_rows_are_what_the_client_reported(
    ph: Any, pg_dsn: str, tmp_path: Path
) -> None:
    conn = await db.connect(pg_dsn)
    try:
        acct, _ = await open_account(conn, "rows", 10_000_000, {})
        books = books_with(ph, ("T", "U"))
        rings = PaperRings(1 << 6)  # small: the batch overflows into the ring's list
        c = PaperClient(books, PaperConfig(), markets=[MarketInfo("T"), MarketInfo("U")],
                        rings=rings, account_id=acct)  # fmt: skip
        for k in range(40):
            await c.create_order(**ph.order(coid=f"o{k}", count="0.10", price="0.5000",
                                            tif="immediate_or_cancel"))  # fmt: skip
        c.settle_market("T", "no")

        async def connect() -> Any:
            return await db.connect(pg_dsn)

        w = Writer(connect, rings.by_table(), acct, books.ticker_of, spill_dir=tmp_path)
        await w.flush()
        await w.close()
        fills = await conn.fetch(
            "SELECT order_id, count, price, fee, cash, is_taker FROM paper_fills"
            " WHERE account_id = $1 ORDER BY rec_id",
            acct,
        )
        mine = c.fills_array()
        assert [(r["order_id"], r["count"], r["price"], r["fee"], r["cash"]) for r in fills] == [
            (int(f["order_id"]), int(f["count"]), int(f["price"]), int(f["fee"]), int(f["cash"]))
            for f in mine
        ]
        s = await conn.fetchrow("SELECT * FROM paper_settlements WHERE account_id = $1", acct)
        assert s["position"] == 400 and s["payout"] == 0
        coids = await conn.fetch(
            "SELECT DISTINCT client_order_id FROM paper_orders WHERE account_id = $1", acct
        )
        assert {r["client_order_id"] for r in coids} == {f"o{k}" for k in range(40)}
    finally:
        await conn.close()


async def ph_until(pred: Any, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() >= end:  # a wait deadline, not a timing check
            pytest.fail("timed out waiting for the writer")
        await asyncio.sleep(0.01)


CHILD = r"""
import asyncio, sys, time
import numpy as np, orjson
from core.book import BookSet
from core.dtypes import SNAPSHOT_LEVEL_DTYPE, TRADE_DTYPE, TAKER_NO
from kalshi_rl.store import db
from kalshi_rl.store.writer import Writer, WriterConfig
from kalshi_rl.trade.paper import MarketInfo, PaperClient, PaperConfig, PaperRings

dsn, acct, spill, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

def snapshot(books, t):
    slot = books.slot(t)
    rows = [(0, 400, 1000), (0, 380, 500), (1, 550, 700), (1, 500, 300)]
    lv = np.zeros(len(rows), dtype=SNAPSHOT_LEVEL_DTYPE)
    lv["market"] = slot
    lv["side"], lv["price"], lv["qty"] = zip(*rows)
    assert books.apply_snapshot(slot, lv) == 0

async def main():
    books = BookSet(4)
    snapshot(books, "T")
    rings = PaperRings(1 << 8)
    c = PaperClient(books, PaperConfig(start_cash=300 * 10_000), markets=[MarketInfo("T")],
                    rings=rings, account_id=acct)
    async def connect():
        return await db.connect(dsn)
    w = Writer(connect, rings.by_table(), acct, books.ticker_of, spill_dir=spill,
               config=WriterConfig(flush_interval_s=0.01))
    w.start()
    base = {"ticker": "T", "time_in_force": "good_till_canceled"}
    c.create_order_now({**base, "client_order_id": "a", "side": "bid", "count": "6.37",
                        "price": "0.5000"})
    c.create_order_now({**base, "client_order_id": "b", "side": "bid", "count": "4.00",
                        "price": "0.4000"})
    tr = np.zeros(1, dtype=TRADE_DTYPE)
    tr["market"], tr["yes_price"], tr["taker_side"], tr["count"] = 0, 400, TAKER_NO, 1100
    c.on_trades(tr)
    c.create_order_now({**base, "client_order_id": "c", "side": "ask", "count": "2.50",
                        "price": "0.4000", "time_in_force": "immediate_or_cancel"})
    while any(len(r) for r in rings.by_table().values()) or w.stats()["rows_held"]:
        await asyncio.sleep(0.01)
    await w.flush()
    view = {"cash": c.cash, "pos": c.positions[0].tolist(), "orders": c.get_orders()["orders"],
            "fills": c.get_fills()["fills"], "balance": c.get_balance()["balance"]}
    open(out, "wb").write(orjson.dumps(view))
    print("READY", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.slow
async def test_sigkill_then_rebuild(ph: Any, pg_dsn: str, tmp_path: Path) -> None:
    """A real process is killed with SIGKILL once its rows are durable; a new one rebuilds."""
    import os
    import signal
    import sys

    import orjson

    conn = await db.connect(pg_dsn)
    try:
        acct, _ = await open_account(conn, "killed", 300 * 10_000, {})
        out = tmp_path / "view.json"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, pg_dsn, str(acct), str(tmp_path / "spill"), str(out),
            stdout=asyncio.subprocess.PIPE, env=dict(os.environ),
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 120)
            assert line.strip() == b"READY", line
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        before = orjson.loads(out.read_bytes())
        books = books_with(ph, ("T",))
        c = PaperClient(books, PaperConfig(), clock=ph.Clock())
        c.restore(await load_account(conn, acct))
        assert c.cash == before["cash"]
        assert list(c.positions[books.slots["T"]].tolist()) == before["pos"]
        assert c.get_balance()["balance"] == before["balance"]
        assert c.get_orders()["orders"] == before["orders"]
        assert c.get_fills()["fills"] == before["fills"]
        assert before["fills"] and any(o["status"] == "resting" for o in before["orders"])
    finally:
        await conn.close()
