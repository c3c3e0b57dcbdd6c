"""Rolling listings: the schedule, the model's slot reuse, and the wire over real sockets."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

import numpy as np
import orjson
import pytest

from core.dtypes import (
    EV_DELTA,
    EV_LIFECYCLE,
    LC_ACTIVATED,
    LC_CLOSED,
    LC_CREATED,
    LC_DETERMINED,
    LC_SETTLED,
    MS_SETTLED,
    RESULT_YES,
    SIDE_NO,
    SIDE_YES,
)
from kalshi_rl.errors import ConfigError
from kalshi_rl.sim import SimConfig, SimExchange
from kalshi_rl.sim.listings import ListingSchedule, SeriesSpec, default_series, parse_series
from kalshi_rl.sim.model import MarketModel, ModelParams

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
FAST = ModelParams(determine_delay_ms=200, settle_delay_ms=300)


def rolling(seed: int = 1, n: int = 3, life: int = 4000) -> MarketModel:
    return MarketModel(
        [],
        FAST,
        seed=seed,
        ts0=T0,
        ms_per_step=4.0,
        schedule=ListingSchedule(default_series(n, lifetime_ms=life, lead_ms=500), T0),
    )


def test_schedule_lists_each_series_back_to_back() -> None:
    sched = ListingSchedule(default_series(2, lifetime_ms=60_000, lead_ms=5000), T0)
    first = sched.due(T0)
    # the market of each series open at the start is listed at once
    assert [x.ticker for x in first] == ["SIMBTC-26JAN010001-T0", "SIMETH-26JAN01000030-T0"]
    assert [x.open_ts for x in first] == [T0, T0]
    assert [x.close_ts - T0 for x in first] == [60_000, 30_000]  # SIMETH is staggered
    assert sched.due(T0 + 24_999) == []
    nxt = sched.due(T0 + 25_000)  # SIMETH's next: opens at +30 s, created 5 s before
    assert [(x.ticker, x.open_ts - T0, x.close_ts - T0) for x in nxt] == [
        ("SIMETH-26JAN01000130-T0", 30_000, 90_000)
    ]
    assert [x.serial for x in first + nxt] == [0, 1, 2]
    assert sched.next_create_ts() == T0 + 55_000
    # lead + life + determine + settle spans 2 periods per series, plus one spare
    assert sched.slots_needed(1000, 1000) == 2 * 3
    assert parse_series("KXFOO:90000:0.5:deci_cent").bias == 0.5
    with pytest.raises(ConfigError, match="lifetime_ms"):
        ListingSchedule((SeriesSpec("X", "x", lifetime_ms=10),), T0)
    with pytest.raises(ConfigError, match="unique"):
        ListingSchedule((SeriesSpec("X", "x"), SeriesSpec("X", "y")), T0)


def test_markets_live_their_whole_life_in_reused_slots() -> None:
    m = rolling()
    n_slots = len(m.markets)
    ev = m.step(25_000)  # 100 s of sim time, 4 s markets
    assert m.n_listed > 3 * n_slots  # slots were reused many times
    lc = ev[ev["kind"] == EV_LIFECYCLE]
    created = lc[lc["side"] == LC_CREATED]
    assert created.shape[0] == m.n_listed
    assert np.array_equal(created["qty"], np.arange(m.n_listed))  # serials in order
    # follow each listing through its slot: created -> activated -> closed -> determined
    # -> settled, at its own times, before the slot is taken again
    seen = 0
    for slot in range(n_slots):
        mine = lc[lc["market"] == slot]
        kinds = mine["side"].tolist()
        starts = [i for i, k in enumerate(kinds) if k == LC_CREATED]
        ends = [*starts[1:], len(kinds)] if starts else []
        for a, b in zip(starts, ends, strict=True):
            life = kinds[a:b]
            if b < len(kinds):  # not the slot's current market: it lived its whole life
                assert life == [LC_CREATED, LC_ACTIVATED, LC_CLOSED, LC_DETERMINED, LC_SETTLED]
                ts = mine["ts"][a:b]
                assert np.all(np.diff(ts) >= 0)
                assert ts[3] - ts[2] == FAST.determine_delay_ms
                assert ts[4] - ts[3] == FAST.settle_delay_ms
                assert mine["price"][a + 3] in (0, 1)  # the result
                seen += 1
    assert seen > 2 * n_slots
    # deltas only while a market is open: nothing rests after close
    for slot in range(n_slots):
        if m.mk[slot]["status"] == MS_SETTLED:
            assert m.books.levels(slot, SIDE_YES) == [] and m.books.levels(slot, SIDE_NO) == []
    assert len(m.retired) == m.n_listed - sum(s is not None for s in m.markets)


def test_rolling_stream_does_not_depend_on_batching() -> None:
    a = rolling(seed=7)
    ev_a = a.step(12_000)
    b = rolling(seed=7)
    ev_b = np.concatenate([b.step(k) for k in (1, 333, 4000, 7666)])
    assert np.array_equal(ev_a, ev_b)
    assert [s.ticker if s else "" for s in a.markets] == [s.ticker if s else "" for s in b.markets]
    assert not np.array_equal(ev_a[:500], rolling(seed=8).step(12_000)[:500])


def test_results_follow_the_latent_outcome() -> None:
    m = rolling(seed=3, n=4, life=3000)
    ev = m.step(40_000)
    det = ev[(ev["kind"] == EV_LIFECYCLE) & (ev["side"] == LC_DETERMINED)]
    assert det.shape[0] > 40
    share = float(np.mean(det["price"] == RESULT_YES))
    assert 0.25 < share < 0.75  # open_spread keeps outcomes balanced around 50%
    assert np.count_nonzero(ev["kind"] == EV_DELTA) > 10_000


# ----------------------------------------------------------------------------- wire

MANUAL: dict[str, Any] = {"autostart": False, "record_limit": 0, "start_ts_ms": T0}


def _rest(sim: SimExchange, path: str) -> Any:
    return orjson.loads(urllib.request.urlopen(sim.rest_url + path).read())


async def test_lifecycle_messages_rest_status_and_slot_reuse(ws_client: Any) -> None:
    series = default_series(2, lifetime_ms=3000, lead_ms=400)
    # 2 sim ms per step: each advance(50) is 0.1 s, finer than every lifecycle stage
    cfg = SimConfig(series=series, model=FAST, rate=2000, step_ms=2.0, **MANUAL)
    async with SimExchange(cfg) as sim:
        n_slots = len(sim.tickers)
        life = await ws_client.open(sim.ws_url)
        await life.subscribe(["market_lifecycle_v2"])
        assert (await life.recv())["type"] == "subscribed"
        book = await ws_client.open(sim.ws_url)
        sim.advance(1)  # lists the markets open at the start
        msgs = await life.recv_until(lambda m: m["type"] == "market_lifecycle_v2")
        first = msgs[-1]["msg"]
        assert first["event_type"] == "created" and first["additional_metadata"]["title"]
        assert first["close_ts"] - first["open_ts"] == 3
        t = first["market_ticker"]
        await book.subscribe(["orderbook_delta"], [t])
        snap = await book.recv_until(lambda m: m["type"] == "orderbook_snapshot")
        assert snap[-1]["msg"]["market_ticker"] == t
        statuses = [(await asyncio.to_thread(_rest, sim, f"/markets/{t}"))["market"]["status"]]
        events: list[dict[str, Any]] = []
        while statuses[-1] != "finalized":
            sim.advance(50)
            await asyncio.sleep(0)
            st = await asyncio.to_thread(_rest, sim, f"/markets/{t}")
            if st["market"]["status"] != statuses[-1]:
                statuses.append(st["market"]["status"])
        assert statuses == ["active", "closed", "determined", "finalized"]
        while True:
            m = await life.recv()
            if m["type"] == "market_lifecycle_v2" and m["msg"]["market_ticker"] == t:
                events.append(m["msg"])
                if m["msg"]["event_type"] == "settled":
                    break
        assert [e["event_type"] for e in events] == ["determined", "settled"]
        final = (await asyncio.to_thread(_rest, sim, f"/markets/{t}"))["market"]
        assert final["result"] == events[0]["result"]
        assert final["settlement_value_dollars"] == (
            "1.0000" if final["result"] == "yes" else "0.0000"
        )
        # a later listing waits as initialized (REST filter "unopened") before it opens
        unopened: list[str] = []
        for _ in range(400):
            sim.advance(20)
            got = await asyncio.to_thread(_rest, sim, "/markets?status=unopened")
            unopened = [x["ticker"] for x in got["markets"]]
            if unopened:
                break
        assert unopened and all(x["status"] == "initialized" for x in got["markets"])
        # run until every slot has been reused: old tickers still answer from REST
        while sim.model.n_listed <= n_slots + 2:
            sim.advance(200)
            await asyncio.sleep(0)
        assert t not in sim.tickers
        old = (await asyncio.to_thread(_rest, sim, f"/markets/{t}"))["market"]
        assert old == final
        settled = await asyncio.to_thread(_rest, sim, "/markets?status=settled&limit=1000")
        assert t in {x["ticker"] for x in settled["markets"]}
        # the book subscription named the old ticker only: its slot's new market is not
        # sent to it (nothing for another ticker arrives)
        sim.advance(2000)
        await book.ws.ping()
        others = []
        while True:
            try:
                m = await book.recv(timeout=0.3)
            except TimeoutError:
                break
            if "market_ticker" in m.get("msg", {}):
                others.append(m["msg"]["market_ticker"])
        assert set(others) <= {t}
        await life.close()
        await book.close()


@pytest.mark.slow
async def test_fast_mode_generates_the_same_market_sooner(ws_client: Any) -> None:
    """``rate=0`` runs flat out while someone listens and keeps the reference pace's sim
    clock, so its stream is the one ``rate=200`` (REFERENCE_RATE) makes: an hour of it."""
    from kalshi_rl.sim.markets import SimMarkets

    series = default_series(3, lifetime_ms=180_000)
    cfg = SimConfig(series=series, model=FAST, rate=0, record_limit=0, start_ts_ms=T0)
    want_n = 60  # an hour of sim time: 3 series x 3 min markets
    async with SimExchange(cfg) as sim:
        c = await ws_client.open(sim.ws_url)
        await c.subscribe(["market_lifecycle_v2"])
        got: list[tuple[str, str]] = []
        while len(got) < want_n:
            m = await c.recv(timeout=30)
            if m["type"] == "market_lifecycle_v2" and m["msg"]["event_type"] == "determined":
                got.append((m["msg"]["market_ticker"], m["msg"]["result"]))
        sim_hours = (sim.model.now_ms - T0) / 3.6e6
        await c.close()
    assert sim_hours > 0.95
    # the same config at the reference rate, stepped directly: same markets, same results
    ref = SimMarkets([], SimConfig(series=series, model=FAST, rate=200.0, start_ts_ms=T0))
    assert ref.model.ms_per_step == pytest.approx(sim.model.ms_per_step)
    want: list[tuple[str, str]] = []
    names: dict[int, str] = {}
    while len(want) < want_n:
        ev = ref.model.step(10_000)
        for e in ev[ev["kind"] == EV_LIFECYCLE]:
            if e["side"] == LC_CREATED:
                names[int(e["market"])] = ref.model.listing(int(e["qty"]))[1].ticker
            elif e["side"] == LC_DETERMINED:
                res = "yes" if e["price"] == RESULT_YES else "no"
                want.append((names[int(e["market"])], res))
    assert got == want[:want_n]


async def _feed_until(pred: Any, what: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            pytest.fail(f"timed out waiting for: {what}")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("subscribe_first", [True, False])
async def test_markets_listed_at_start_get_a_valid_book(subscribe_first: bool) -> None:
    """The markets the sim lists at its own start (``k = -1``: they open at once with what
    is left of their life) keep a valid book over the project's real feed: no gaps, no
    desyncs, and the feed's book equals the sim's.  Before the fix their public book was
    copied from the maker's *after* the first batch's quotes and then got those quotes
    again (crossed: the feed resynced it in a loop), and a subscription made before the
    first step lost the market at its ``created`` event."""
    from core.book import BookSet
    from kalshi_rl.config import FeedConfig
    from kalshi_rl.kalshi.feed import Feed, FeedRings

    series = default_series(3, lifetime_ms=60_000, lead_ms=400)
    cfg = SimConfig(series=series, model=FAST, rate=2000, step_ms=2.0, **MANUAL)
    async with SimExchange(cfg) as sim:
        at_start = [t for t in sim.tickers if t]
        assert len(at_start) == 3  # one open market per series at the start
        if not subscribe_first:
            sim.advance(1)
        books = BookSet(8)
        feed = Feed(FeedConfig(ws_url=sim.ws_url), books, FeedRings.create(1 << 16), at_start)
        task = asyncio.create_task(feed.run())
        try:
            await _feed_until(
                lambda: feed.stats.snapshots >= len(at_start), "the snapshots of the markets"
            )
            for _ in range(20):  # 20 x 200 steps = 8 sim s: quotes, trades, requotes
                sim.advance(200)
                await asyncio.sleep(0.01)

            def same() -> bool:
                return all(
                    books.valid(books.slot(t))
                    and {"yes": books.levels(books.slot(t), SIDE_YES),
                         "no": books.levels(books.slot(t), SIDE_NO)} == sim.book(t)
                    for t in at_start
                )  # fmt: skip

            await _feed_until(same, "the feed's books to equal the sim's")
        finally:
            feed.stop()
            await asyncio.wait_for(task, 10)
    st = feed.stats
    assert st.deltas > 100, st.as_dict()
    assert st.gaps == 0 and st.desyncs == 0 and st.resyncs == 0, st.as_dict()
    for t in at_start:
        b = sim.book(t)
        assert b["yes"] and b["no"], (t, b)  # the makers quote both sides


async def test_rest_times_keep_milliseconds_and_the_clock_starts_on_a_second() -> None:
    """REST open/close times are RFC 3339 with the milliseconds when there are any (not
    truncated to the second); by default the sim's clock starts on a whole second, so its
    markets open and close on whole seconds, as Kalshi's do, and the lifecycle events'
    unix-second times are exact."""
    from datetime import datetime

    series = default_series(2, lifetime_ms=4000, lead_ms=400)
    odd = SimConfig(series=series, model=FAST, rate=2000, **{**MANUAL, "start_ts_ms": T0 + 517})
    async with SimExchange(odd) as sim:
        t = next(t for t in sim.tickers if t)
        m = (await asyncio.to_thread(_rest, sim, f"/markets/{t}"))["market"]
        close_ms = sim.model.spec_by_ticker(t).close_ts
        assert close_ms % 1000 == 517
        assert m["close_time"].endswith(".517Z"), m["close_time"]
        assert datetime.fromisoformat(m["close_time"]).timestamp() * 1000 == close_ms
        assert m["open_time"].endswith(".517Z")
    wall = SimConfig(series=series, model=FAST, rate=2000, autostart=False, record_limit=0)
    async with SimExchange(wall) as sim:
        assert sim.open_ts_ms % 1000 == 0
        for t in (t for t in sim.tickers if t):
            m = (await asyncio.to_thread(_rest, sim, f"/markets/{t}"))["market"]
            assert "." not in m["close_time"], m["close_time"]
            assert datetime.fromisoformat(m["close_time"]).timestamp() * 1000 == (
                sim.model.spec_by_ticker(t).close_ts
            )
