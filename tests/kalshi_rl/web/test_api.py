"""The /rl/* HTTP API against a real node (sim -> collector -> PostgreSQL)."""

from __future__ import annotations

import asyncio

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


async def test_the_live_session_shows_the_feeds_counters_while_it_records(
    client: httpx.AsyncClient, stack: LiveStack
) -> None:
    """The live session's row is completed when it closes; until then the list and the
    detail show the feed's counters (the Data page showed 0 messages for a live session)."""
    feed = stack.node.feed
    assert feed is not None
    loop = asyncio.get_running_loop()
    end = loop.time() + 30
    while True:  # the fixture waits for 3 valid books; deltas may not have come yet
        r = await client.get("/rl/sessions")
        assert r.status_code == 200, r.text
        live = [s for s in r.json() if s["live"]]
        assert [s["id"] for s in live] == [stack.node.session_id]
        s = live[0]
        if s["n_deltas"] > 0:
            break
        if loop.time() > end:
            pytest.fail(f"no deltas counted for the live session: {s}")
        await asyncio.sleep(0.1)
    assert s["n_messages"] > 0 and s["n_snapshots"] >= 3
    assert s["n_messages"] <= int(feed.stats.msgs)  # read before this line: not ahead
    d = (await client.get(f"/rl/sessions/{stack.node.session_id}")).json()
    assert d["session"]["live"] and d["session"]["n_messages"] >= s["n_messages"]
