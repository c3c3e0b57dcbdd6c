"""The /rl/* HTTP API against a real node (sim -> collector -> PostgreSQL)."""

from __future__ import annotations

import httpx
import pytest

from kalshi_rl.commands.stack import LiveStack

pytestmark = pytest.mark.slow


async def test_status_reports_the_live_node(client: httpx.AsyncClient, stack: LiveStack) -> None:
    r = await client.get("/rl/status")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["books_total"] == 3
    assert body["books_valid"] == 3
    assert body["feed"]["connected"] is True
    assert body["session_id"] == stack.node.session_id
    assert body["actor_state"] == "stopped"  # an actor control, no model trading yet
    assert 0.0 <= body["ring_occupancy"] <= 1.0


async def test_markets_list_and_ladder_match_the_books(
    client: httpx.AsyncClient, stack: LiveStack
) -> None:
    r = await client.get("/rl/markets")
    assert r.status_code == 200, r.text
    rows = r.json()
    assert sorted(m["ticker"] for m in rows) == sorted(stack.sim.tickers)
    books = stack.node.books
    t = rows[0]["ticker"]
    r = await client.get(f"/rl/markets/{t}")
    assert r.status_code == 200, r.text
    lad = r.json()
    slot = books.slots[t]
    # the ladder is the feed's book, read in place (best first)
    assert [tuple(lv) for lv in lad["yes"]] == books.levels(slot, 0)[: len(lad["yes"])]
    assert lad["valid"] is True
    r = await client.get("/rl/markets/NOPE")
    assert r.status_code == 404
    assert "NOPE" in r.json()["detail"]
