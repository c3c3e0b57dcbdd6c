"""Paper accounts in PostgreSQL: the account row, and reading an account back after a restart.

Writing is the live node's ordinary writer (``kalshi_rl.store.writer.Writer``) draining the
client's ``PaperRings`` into paper_orders / paper_fills / paper_settlements with COPY, the
account id standing in for the session id (sql/003_paper.sql).  ``load_account`` reads the
logs back; ``PaperClient.restore`` replays them through the same core kernels, so the
rebuilt balance and positions equal the ones before the restart.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import asyncpg
import numpy as np
import orjson

from core.dtypes import PAPER_FILL_DTYPE, PAPER_SETTLEMENT_DTYPE
from kalshi_rl.errors import StoreError

# the columns of the current state of an order (its row with the highest rec_id)
_ORDER_COLS = (
    "order_id", "market_id", "client_order_id", "order_group", "side", "action", "price",
    "count", "filled", "remaining", "tif", "status", "flags", "notional", "fees", "taker_fees",
    "maker_fees", "rounding_acc", "ts", "rec_id",
)  # fmt: skip


class SavedAccount(NamedTuple):
    """One paper account as stored: what ``PaperClient.restore`` needs.

    ``fills['market']`` and ``settlements['market']`` hold markets.id here (the client maps
    them to its book slots through ``tickers``).
    """

    account_id: int
    name: str
    start_cash: int
    config: dict[str, Any]
    tickers: dict[int, str]  # markets.id -> ticker
    orders: list[dict[str, Any]]  # current state per order, by order_id
    created_ts: dict[int, int]  # order_id -> ts of its first row
    fills: np.ndarray  # PAPER_FILL_DTYPE, rec_id order
    settlements: np.ndarray  # PAPER_SETTLEMENT_DTYPE, rec_id order
    max_rec_id: int


async def open_account(
    conn: asyncpg.Connection, name: str, start_cash: int, config: dict[str, Any]
) -> tuple[int, bool]:
    """The id of account ``name``, creating it when missing.

    Returns:
        (account id, True if it was created now).
    """
    row = await conn.fetchrow(
        "INSERT INTO paper_accounts (name, start_cash, config) VALUES ($1, $2, $3::jsonb)"
        " ON CONFLICT (name) DO NOTHING RETURNING id",
        name,
        int(start_cash),
        orjson.dumps(config).decode(),
    )
    if row is not None:
        return int(row["id"]), True
    found = await conn.fetchval("SELECT id FROM paper_accounts WHERE name = $1", name)
    if found is None:
        raise StoreError(f"paper account {name!r} vanished while being opened")
    return int(found), False


async def load_account(conn: asyncpg.Connection, account_id: int) -> SavedAccount:
    """Read account ``account_id``'s orders, fills and settlements.

    Raises:
        StoreError: unknown account.
    """
    acc = await conn.fetchrow(
        "SELECT id, name, start_cash, config FROM paper_accounts WHERE id = $1", account_id
    )
    if acc is None:
        raise StoreError(f"no paper account with id {account_id}")
    cols = ", ".join(_ORDER_COLS)
    orders = await conn.fetch(
        f"SELECT DISTINCT ON (order_id) {cols} FROM paper_orders WHERE account_id = $1"
        " ORDER BY order_id, rec_id DESC",
        account_id,
    )
    first = await conn.fetch(
        "SELECT order_id, min(ts) AS ts FROM paper_orders WHERE account_id = $1 GROUP BY order_id",
        account_id,
    )
    fills = await conn.fetch(
        "SELECT rec_id, ts, order_id, count, fee, trade_fee, rounding_fee, rebate, cash,"
        " market_id, price, side, action, is_taker"
        " FROM paper_fills WHERE account_id = $1 ORDER BY rec_id",
        account_id,
    )
    settles = await conn.fetch(
        "SELECT rec_id, ts, position, cost_basis, payout, market_id, result"
        " FROM paper_settlements WHERE account_id = $1 ORDER BY rec_id",
        account_id,
    )
    ids = {r["market_id"] for r in orders} | {r["market_id"] for r in fills}
    ids |= {r["market_id"] for r in settles}
    tickers = {
        int(r["id"]): str(r["ticker"])
        for r in await conn.fetch("SELECT id, ticker FROM markets WHERE id = ANY($1)", list(ids))
    }
    fill_arr = np.zeros(len(fills), dtype=PAPER_FILL_DTYPE)
    for k, r in enumerate(fills):
        f = fill_arr[k]
        f["rec_id"], f["ts"], f["order_id"] = r["rec_id"], r["ts"], r["order_id"]
        f["count"], f["fee"], f["market"] = r["count"], r["fee"], r["market_id"]
        f["trade_fee"], f["rounding_fee"] = r["trade_fee"], r["rounding_fee"]
        f["rebate"], f["cash"] = r["rebate"], r["cash"]
        f["price"], f["side"], f["action"] = r["price"], r["side"], r["action"]
        f["is_taker"] = 1 if r["is_taker"] else 0
    set_arr = np.zeros(len(settles), dtype=PAPER_SETTLEMENT_DTYPE)
    for k, r in enumerate(settles):
        s = set_arr[k]
        s["rec_id"], s["ts"], s["position"] = r["rec_id"], r["ts"], r["position"]
        s["cost_basis"], s["payout"] = r["cost_basis"], r["payout"]
        s["market"], s["result"] = r["market_id"], r["result"]
    recs = [int(r["rec_id"]) for r in orders] + fill_arr["rec_id"].tolist()
    recs += set_arr["rec_id"].tolist()
    max_order_rec = await conn.fetchval(
        "SELECT coalesce(max(rec_id), 0) FROM paper_orders WHERE account_id = $1", account_id
    )
    return SavedAccount(
        account_id=int(acc["id"]),
        name=str(acc["name"]),
        start_cash=int(acc["start_cash"]),
        config=orjson.loads(acc["config"]) if isinstance(acc["config"], str) else acc["config"],
        tickers=tickers,
        orders=[dict(r) for r in orders],
        created_ts={int(r["order_id"]): int(r["ts"]) for r in first},
        fills=fill_arr,
        settlements=set_arr,
        max_rec_id=max([int(max_order_rec), *recs], default=0),
    )
