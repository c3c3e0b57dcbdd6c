"""PaperClient: Kalshi V2 order semantics, errors, groups, events, settlement, latency."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import Any

import pytest

from core.dtypes import MONEY_SCALE, SIDE_NO, SIDE_YES, TAKER_NO, TAKER_YES
from kalshi_rl.errors import KalshiApiError, LiveTradingRefused
from kalshi_rl.sim.grid import PriceLevelStructure
from kalshi_rl.trade.paper import (
    LatencyModel,
    MarketInfo,
    MarketStatus,
    QueueModel,
    create_trading_client,
)

BOOK_YES = [(400, 1000), (380, 500)]  # YES bids: 10 @ 0.40, 5 @ 0.38
BOOK_NO = [(550, 700), (500, 300)]  # NO bids: 7 @ 0.55, 3 @ 0.50 -> YES asks 0.45, 0.50


def client(ph: Any, **kw: Any):
    c, books, clock = ph.make_client(**kw)
    ph.snapshot(books, books.slots["T"], BOOK_YES, BOOK_NO)
    return c, books, clock


async def api_error(coro: Any) -> KalshiApiError:
    with pytest.raises(KalshiApiError) as info:
        await coro
    return info.value


# ----------------------------------------------------------------------------- taker


async def test_taker_bid_walks_the_no_ladder_with_fees_per_fill(ph: Any) -> None:
    c, _, _ = client(ph)
    r = await c.create_order(**ph.order(count="12.00", price="0.5000", tif="immediate_or_cancel"))
    assert r["fill_count"] == "10.00"  # 7 @ 0.45 + 3 @ 0.50, nothing more under the limit
    assert r["remaining_count"] == "2.00"
    assert r["status"] == "canceled"
    assert r["average_fill_price"] == "0.4650"
    # Kalshi's worked rule: 7 @ 0.45 pays 3.15 + fee 0.1213 = 3.2713 -> 3.28 (rounding
    # 0.0087); 3 @ 0.50 pays 1.50 + 0.0525 -> 1.56 (0.0075); the order's accumulator passes
    # $0.01, so one cent comes back: 4.83 in all.
    assert ph.fee_money(700, 450) == 1213 and ph.fee_money(300, 500) == 525
    assert c.cash == 1000 * MONEY_SCALE - 48_300
    pos = c.get_positions()["market_positions"][0]
    assert pos["position_fp"] == "10.00"
    assert pos["fees_paid_dollars"] == "0.1800"  # 4.83 - 4.65 of contracts
    ref = ph.RefAccount(1000).replay(c.fills_array())
    assert ref.cash_money() == c.cash and ref.fees_money() == c.positions[0]["fees_paid"]
    fills = c.get_fills()["fills"]
    assert [(f["count_fp"], f["yes_price_dollars"], f["is_taker"]) for f in fills] == [
        ("3.00", "0.5000", True),
        ("7.00", "0.4500", True),
    ]


async def test_taker_ask_hits_yes_bids_and_closes_a_long_position(ph: Any) -> None:
    c, _, _ = client(ph)
    await c.create_order(**ph.order(coid="buy", count="5.00", price="0.4500"))
    assert c.get_positions()["market_positions"][0]["position_fp"] == "5.00"
    cash = c.cash
    r = await c.create_order(**ph.order(coid="sell", side="ask", count="5.00", price="0.4000"))
    assert r["fill_count"] == "5.00" and r["average_fill_price"] == "0.4000"
    pos = c.get_positions()["market_positions"][0]
    assert pos["position_fp"] == "0.00"
    # closing 5 YES: receive 5 x 0.40 = 2.00 less the 0.084 fee -> 1.916, floored to 1.91
    assert ph.fee_money(500, 400) == 840
    assert c.cash == cash + 19_100
    ref = ph.RefAccount(1000).replay(c.fills_array())
    assert ref.cash_money() == c.cash and ref.position[0] == 0


async def test_consumed_liquidity_stays_taken_until_the_level_empties(ph: Any) -> None:
    c, books, _ = client(ph)
    slot = books.slots["T"]

    async def take(coid: str) -> str:
        r = await c.create_order(
            **ph.order(coid=coid, count="7.00", price="0.4500", tif="immediate_or_cancel")
        )
        return str(r["fill_count"])

    assert await take("a") == "7.00"
    assert await take("b") == "0.00"  # the book still shows 7 @ 0.55 NO, but we took them
    # others took 2 of the 7 we had taken: the decrease uses up our consumption first
    # (core.liquidity, docs/engine.md), so the 5 left are still all ours
    ph.delta(books, slot, SIDE_NO, 550, -200)
    c.on_book_update([slot])
    assert await take("c") == "0.00"
    ph.delta(books, slot, SIDE_NO, 550, 400)  # 4 new contracts arrive behind
    c.on_book_update([slot])
    assert await take("d") == "4.00"  # 9 shown - the 5 still consumed
    ph.delta(books, slot, SIDE_NO, 550, -900)  # the level empties: the book caught up
    c.on_book_update([slot])
    ph.delta(books, slot, SIDE_NO, 550, 500)
    c.on_book_update([slot])
    assert await take("e") == "5.00"


async def test_fill_or_kill_fills_all_or_nothing(ph: Any) -> None:
    c, _, _ = client(ph)
    r = await c.create_order(
        **ph.order(coid="a", count="11.00", price="0.5000", tif="fill_or_kill")
    )
    assert r["fill_count"] == "0.00" and r["status"] == "canceled"
    assert c.cash == 1000 * MONEY_SCALE
    r = await c.create_order(
        **ph.order(coid="b", count="10.00", price="0.5000", tif="fill_or_kill")
    )
    assert r["fill_count"] == "10.00" and r["status"] == "executed"


# ----------------------------------------------------------------------------- resting


async def test_resting_bid_waits_behind_the_queue_then_fills_from_trades(ph: Any) -> None:
    c, books, _ = client(ph)
    slot = books.slots["T"]
    r = await c.create_order(**ph.order(count="4.00", price="0.4000"))  # joins 10 @ 0.40
    assert r["status"] == "resting"
    assert c.on_trades(ph.trade(slot, 400, TAKER_NO, 600)) == 0  # eats 6 of the 10 ahead
    assert c.on_trades(ph.trade(slot, 400, TAKER_NO, 600)) == 1  # 4 more ahead, then 2 to us
    o = c.get_order(r["order_id"])["order"]
    assert o["fill_count_fp"] == "2.00" and o["status"] == "resting"
    assert c.on_trades(ph.trade(slot, 410, TAKER_YES, 10_000)) == 0  # a YES buyer: other ladder
    assert c.on_trades(ph.trade(slot, 390, TAKER_NO, 500)) == 1  # through our price: filled
    o = c.get_order(r["order_id"])["order"]
    assert o["status"] == "executed" and o["fill_count_fp"] == "4.00"
    f = c.get_fills()["fills"][0]
    assert not f["is_taker"] and f["yes_price_dollars"] == "0.4000" and f["fee_cost"] == "0.0000"


async def test_maker_fees_only_where_the_series_charges_them(ph: Any) -> None:
    c, books, _ = ph.make_client(MarketInfo("T", maker_fees=True))
    slot = books.slots["T"]
    ph.snapshot(books, slot, BOOK_YES, BOOK_NO)
    await c.create_order(**ph.order(count="2.00", price="0.4000"))
    c.on_trades(ph.trade(slot, 390, TAKER_NO, 200))
    f = c.get_fills()["fills"][0]
    # maker trade fee 0.0175 x 2 x 0.4 x 0.6 = 0.0084; the balance moves by -0.8084 floored
    # to -0.81: the net fee is 0.01
    assert c.fills_array()[0]["trade_fee"] == ph.fee_money(200, 400, rate=Fraction(7, 400)) == 84
    assert f["fee_cost"] == "0.0100"
    ref = ph.RefAccount(1000, maker_rate=Fraction(7, 400)).replay(c.fills_array())
    assert ref.cash_money() == c.cash


async def test_cancels_ahead_shrink_the_conservative_queue_only_to_the_level(ph: Any) -> None:
    c, books, _ = client(ph, queue_model=QueueModel.CONSERVATIVE)
    slot = books.slots["T"]
    r = await c.create_order(**ph.order(count="1.00", price="0.4000"))
    ph.delta(books, slot, SIDE_YES, 400, -300)  # level 10 -> 7: at most 7 can be ahead
    c.on_book_update([slot])
    assert c.on_trades(ph.trade(slot, 400, TAKER_NO, 700)) == 0
    assert c.on_trades(ph.trade(slot, 400, TAKER_NO, 100)) == 1
    assert c.get_order(r["order_id"])["order"]["status"] == "executed"


async def test_probabilistic_queue_advances_faster_than_conservative(ph: Any) -> None:
    fills = {}
    for model in (QueueModel.CONSERVATIVE, QueueModel.PROB_POWER):
        c, books, _ = client(ph, queue_model=model)
        slot = books.slots["T"]
        await c.create_order(**ph.order(count="1.00", price="0.4000"))
        ph.delta(books, slot, SIDE_YES, 400, 500)  # 5 join behind us
        c.on_book_update([slot])
        ph.delta(books, slot, SIDE_YES, 400, -500)  # 5 cancel: who knows where
        c.on_book_update([slot])
        fills[model] = c.on_trades(ph.trade(slot, 400, TAKER_NO, 800))
    assert fills[QueueModel.CONSERVATIVE] == 0  # 10 still ahead of us
    assert fills[QueueModel.PROB_POWER] == 1  # some of the cancels were ahead


async def test_crossing_liquidity_fills_a_resting_order_as_maker(ph: Any) -> None:
    c, books, _ = client(ph)
    slot = books.slots["T"]
    r = await c.create_order(**ph.order(count="3.00", price="0.4200"))
    ph.delta(books, slot, SIDE_NO, 590, 200)  # a NO bid at 0.59 == YES ask 0.41 crosses our 0.42
    assert c.on_book_update([slot]) == 1
    o = c.get_order(r["order_id"])["order"]
    assert o["fill_count_fp"] == "2.00" and o["maker_fill_cost_dollars"] == "0.8400"


async def test_hooks_are_no_ops_without_resting_orders(ph: Any) -> None:
    c, books, _ = client(ph)
    slot = books.slots["T"]
    assert c.on_book_update([slot]) == 0
    assert c.on_trades(ph.trade(slot, 400, TAKER_NO, 100)) == 0


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("structure", "good", "bad"),
    [
        (PriceLevelStructure.LINEAR_CENT, "0.4500", "0.0550"),
        (PriceLevelStructure.TAPERED_DECI_CENT, "0.0550", "0.4550"),
        (PriceLevelStructure.DECI_CENT, "0.4550", "0.45501"),
    ],
)
async def test_prices_off_the_markets_tick_grid_are_refused(
    ph: Any, structure: PriceLevelStructure, good: str, bad: str
) -> None:
    c, books, _ = ph.make_client(MarketInfo("T", structure))
    ph.snapshot(books, books.slots["T"], [(300, 100)], [(300, 100)])
    r = await c.create_order(**ph.order(coid="good", price=good))
    assert r["status"] == "resting"
    e = await api_error(c.create_order(**ph.order(coid="bad", price=bad)))
    assert (e.status, e.code) == (400, "invalid_price")
    assert c.n_rejected == 1


@pytest.mark.parametrize("count", ["1.005", "0", "-1.00", "abc", "0.001"])
async def test_counts_off_the_grid_are_refused(ph: Any, count: str) -> None:
    c, _, _ = client(ph)
    e = await api_error(c.create_order(**ph.order(count=count)))
    assert (e.status, e.code) == (400, "invalid_count")


async def test_fractional_counts_trade(ph: Any) -> None:
    c, _, _ = client(ph)
    r = await c.create_order(**ph.order(count="0.37", price="0.4500"))
    assert r["fill_count"] == "0.37"


async def test_insufficient_balance(ph: Any) -> None:
    c, _, _ = client(ph, cash_dollars=2)
    e = await api_error(c.create_order(**ph.order(count="10.00", price="0.3000")))
    assert (e.status, e.code) == (400, "insufficient_balance")
    assert c.cash == 2 * MONEY_SCALE and c.get_orders()["orders"] == []
    r = await c.create_order(**ph.order(coid="ok", count="5.00", price="0.3000"))  # 1.50 + fee
    assert r["status"] == "resting"
    # the resting order holds its collateral: another 0.30 x 2 does not fit
    e = await api_error(c.create_order(**ph.order(coid="no", count="2.00", price="0.3000")))
    assert e.code == "insufficient_balance"


async def test_market_closed_and_paused(ph: Any) -> None:
    c, _, _ = client(ph)
    r = await c.create_order(**ph.order(coid="keep", price="0.3000"))
    await c.create_order(**ph.order(coid="pause", price="0.3000", cancel_order_on_pause=True))
    c.set_market_status("T", MarketStatus.INACTIVE)
    e = await api_error(c.create_order(**ph.order(coid="x")))
    assert (e.status, e.code) == (400, "market_inactive")
    assert [o["status"] for o in c.get_orders()["orders"]] == ["canceled", "resting"]
    await c.cancel_order(r["order_id"])  # cancels are allowed while paused
    c.set_market_status("T", MarketStatus.ACTIVE)
    again = await c.create_order(**ph.order(coid="late-pause", price="0.3000"))
    assert again["status"] == "resting"
    c.set_market_status("T", MarketStatus.INACTIVE)
    c.set_market_status("T", MarketStatus.ACTIVE)  # un-pausing cancels resting orders
    assert c.get_order(again["order_id"])["order"]["status"] == "canceled"
    c.set_market_status("T", MarketStatus.CLOSED)
    e = await api_error(c.create_order(**ph.order(coid="y")))
    assert (e.status, e.code) == (400, "market_closed")
    e = await api_error(c.cancel_order(r["order_id"]))
    assert e.code == "market_closed"


async def test_duplicate_client_order_id_is_409(ph: Any) -> None:
    c, _, _ = client(ph)
    await c.create_order(**ph.order(coid="same", price="0.3000"))
    e = await api_error(c.create_order(**ph.order(coid="same", price="0.3100")))
    assert (e.status, e.code) == (409, "order_already_exists")
    assert len(c.get_orders()["orders"]) == 1


async def test_unknown_order_market_and_group_are_404(ph: Any) -> None:
    c, _, _ = client(ph)
    for coro in (
        c.cancel_order("nope"),
        c.amend_order("nope", price="0.3000"),
        c.decrease_order("nope", reduce_by="1.00"),
        c.create_order(**ph.order(ticker="NOPE")),
        c.create_order(**ph.order(order_group_id="nope")),
    ):
        e = await api_error(coro)
        assert (e.status, e.code) == (404, "not_found"), e
    with pytest.raises(KalshiApiError):
        c.get_order("nope")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"side": "yes"}, "invalid_order"),
        ({"time_in_force": "gtc"}, "invalid_order"),
        ({"self_trade_prevention_type": "never"}, "invalid_order"),
        ({"post_only": "yes"}, "invalid_parameters"),
        ({"colour": "red"}, "invalid_parameters"),
        ({"price": 0.5}, "invalid_price"),
        ({"count": 3}, "invalid_count"),
        ({"client_order_id": ""}, "missing_parameters"),
        ({"price": None}, "missing_parameters"),
        ({"post_only": True, "time_in_force": "immediate_or_cancel"}, "invalid_order"),
        ({"expiration_time": 123}, "invalid_parameters"),
    ],
)
async def test_malformed_requests_are_400_never_a_crash(
    ph: Any, fields: dict[str, Any], code: str
) -> None:
    c, _, _ = client(ph)
    e = await api_error(c.create_order(**{**ph.order(), **fields}))
    assert (e.status, e.code) == (400, code)
    assert e.to_json()["error"]["code"] == code


async def test_post_only_cross_and_reduce_only(ph: Any) -> None:
    c, _, _ = client(ph)
    e = await api_error(c.create_order(**ph.order(price="0.4500", post_only=True)))
    assert (e.code, e.details) == ("invalid_order", "post only cross")
    e = await api_error(
        c.create_order(**ph.order(coid="r", side="ask", price="0.4000", reduce_only=True))
    )
    assert e.code == "invalid_order" and "reduce only" in e.details
    await c.create_order(**ph.order(coid="b", count="2.00", price="0.4500"))
    r = await c.create_order(
        **ph.order(coid="r2", side="ask", count="2.00", price="0.4000", reduce_only=True)
    )
    assert r["fill_count"] == "2.00"


async def test_invalid_book_is_503(ph: Any) -> None:
    c, books, _ = client(ph)
    books.invalidate(books.slots["T"])
    e = await api_error(c.create_order(**ph.order()))
    assert (e.status, e.code) == (503, "book_unavailable")


# ----------------------------------------------------------------------------- amend etc.


async def test_amend_decrease_cancel(ph: Any) -> None:
    c, _, _ = client(ph)
    r = await c.create_order(**ph.order(count="5.00", price="0.3000"))
    oid = r["order_id"]
    out = await c.amend_order(oid, ticker="T", side="bid", price="0.3200", count="6.00")
    assert out["old_order"]["yes_price_dollars"] == "0.3000"
    assert out["order"]["yes_price_dollars"] == "0.3200"
    assert out["order"]["remaining_count_fp"] == "6.00"
    out = await c.amend_order(oid, price="0.4500")  # now crosses: 6 of the 7 @ 0.45 fill
    assert out["order"]["fill_count_fp"] == "6.00" and out["order"]["status"] == "executed"
    r = await c.create_order(**ph.order(coid="d", count="5.00", price="0.3000"))
    d = await c.decrease_order(r["order_id"], reduce_by="2.00")
    assert d["order"]["remaining_count_fp"] == "3.00"
    d = await c.decrease_order(r["order_id"], reduce_to="1.00")
    assert d["order"]["remaining_count_fp"] == "1.00"
    e = await api_error(c.decrease_order(r["order_id"], reduce_by="1.00", reduce_to="0.50"))
    assert e.code == "invalid_parameters"
    x = await c.cancel_order(r["order_id"])
    assert x["reduced_by_fp"] == "1.00" and x["order"]["status"] == "canceled"
    e = await api_error(c.cancel_order(r["order_id"]))
    assert e.status == 404


async def test_refused_amend_leaves_the_order_resting(ph: Any) -> None:
    c, _, _ = client(ph, cash_dollars=3)
    r = await c.create_order(**ph.order(count="5.00", price="0.3000"))
    e = await api_error(c.amend_order(r["order_id"], count="50.00"))
    assert e.code == "insufficient_balance"
    o = c.get_order(r["order_id"])["order"]
    assert o["status"] == "resting" and o["remaining_count_fp"] == "5.00"


async def test_batches_report_errors_per_item(ph: Any) -> None:
    c, _, _ = client(ph)
    out = await c.batch_create_orders(
        [
            ph.order(coid="a", price="0.3000"),
            ph.order(coid="a", price="0.3000"),
            ph.order(coid="b", price="0.305"),
        ]
    )
    items = out["orders"]
    assert items[0]["error"] is None and items[0]["order"]["status"] == "resting"
    assert items[1]["error"]["code"] == "order_already_exists"
    assert items[2]["error"]["code"] == "invalid_price"
    out = await c.batch_cancel_orders([items[0]["order"]["order_id"], "nope"])
    assert out["orders"][0]["error"] is None and out["orders"][0]["reduced_by_fp"] == "1.00"
    assert out["orders"][1]["error"]["code"] == "not_found"
    e = await api_error(c.batch_create_orders([]))
    assert e.code == "invalid_parameters"


# ----------------------------------------------------------------------------- groups, STP


async def test_order_group_rolling_limit_triggers_and_resets(ph: Any) -> None:
    c, books, clock = client(ph)
    slot = books.slots["T"]
    gid = (await c.create_order_group("5.00"))["order_group_id"]
    await c.create_order(**ph.order(coid="a", count="3.00", price="0.4500", order_group_id=gid))
    clock.advance_s(16)  # the first 3 leave the 15 s window
    await c.create_order(**ph.order(coid="b", count="3.00", price="0.4500", order_group_id=gid))
    rest = await c.create_order(
        **ph.order(coid="c", count="5.00", price="0.4000", order_group_id=gid)
    )
    assert c.get_order_group(gid)["status"] == "active"
    c.on_trades(ph.trade(slot, 380, TAKER_NO, 300))  # through our 0.40: fills 3 of it
    assert c.get_order_group(gid)["status"] == "triggered"  # 3 + 3 > 5 within 15 s
    assert c.get_order(rest["order_id"])["order"]["status"] == "canceled"
    e = await api_error(c.create_order(**ph.order(coid="d", price="0.3000", order_group_id=gid)))
    assert e.code == "order_group_triggered"
    c.reset_order_group(gid)
    r = await c.create_order(**ph.order(coid="e", price="0.3000", order_group_id=gid))
    assert r["status"] == "resting"
    c.trigger_order_group(gid)
    assert c.get_order(r["order_id"])["order"]["status"] == "canceled"
    c.delete_order_group(gid)
    with pytest.raises(KalshiApiError):
        c.get_order_group(gid)


async def test_self_trade_prevention(ph: Any) -> None:
    c, _, _ = client(ph)
    own = await c.create_order(**ph.order(coid="own", side="ask", count="2.00", price="0.4400"))
    assert own["status"] == "resting"  # our ask at 0.44 is below the real YES ask 0.45
    # taker_at_cross: a bid at 0.50 may trade only strictly better than our own 0.44 ask,
    # i.e. nowhere; the remainder is canceled rather than rest crossed with ourselves
    r = await c.create_order(**ph.order(coid="t", count="2.00", price="0.5000"))
    assert r["fill_count"] == "0.00" and r["status"] == "canceled"
    assert c.get_order(own["order_id"])["order"]["status"] == "resting"
    r = await c.create_order(
        **ph.order(coid="m", count="2.00", price="0.5000", self_trade_prevention_type="maker")
    )
    assert c.get_order(own["order_id"])["order"]["status"] == "canceled"
    assert r["fill_count"] == "2.00"


# ----------------------------------------------------------------------------- events


async def test_private_channel_messages_in_kalshis_shapes(ph: Any) -> None:
    c, _, _ = client(ph)
    msgs: list[dict[str, Any]] = []
    c.subscribe(msgs.append)
    bad = c.subscribe(lambda m: 1 / 0)
    q = c.subscribe_queue(maxsize=2)
    await c.create_order(**ph.order(count="8.00", price="0.5000"))
    types = [m["type"] for m in msgs]
    assert types.count("fill") == 2 and "user_order" in types and "market_position" in types
    fill = next(m["msg"] for m in msgs if m["type"] == "fill")
    assert set(fill) >= {"trade_id", "order_id", "market_ticker", "is_taker", "side",
                         "yes_price_dollars", "count_fp", "fee_cost", "action", "ts"}  # fmt: skip
    pos = next(m["msg"] for m in reversed(msgs) if m["type"] == "market_position")
    assert pos["position_fp"] == "8.00" and pos["market_ticker"] == "T"
    uo = next(m["msg"] for m in reversed(msgs) if m["type"] == "user_order")
    assert uo["status"] == "executed" and uo["fill_count_fp"] == "8.00"
    assert c.n_callback_errors == len(msgs)  # the failing subscriber never hurt the others
    assert q.qsize() == 2 and c.n_events_dropped == len(msgs) - 2
    bad.close()
    n = c.n_callback_errors
    await c.create_order(**ph.order(coid="x", price="0.3000"))
    assert c.n_callback_errors == n


# ----------------------------------------------------------------------------- settlement


async def test_settlement_pays_winners_and_cancels_orders(ph: Any) -> None:
    c, _, _ = client(ph)
    await c.create_order(**ph.order(count="5.00", price="0.4500"))
    r = await c.create_order(**ph.order(coid="rest", price="0.3000"))
    cash = c.cash
    s = c.settle_market("T", "yes")
    assert s is not None and s["market_result"] == "yes" and s["revenue"] == 500
    assert c.cash == cash + 5 * MONEY_SCALE
    assert c.get_order(r["order_id"])["order"]["status"] == "canceled"
    assert c.get_settlements()["settlements"] == [s]
    assert c.get_positions()["market_positions"][0]["position_fp"] == "0.00"
    e = await api_error(c.create_order(**ph.order(coid="late")))
    assert e.code == "market_closed"


async def test_settlement_of_a_no_position(ph: Any) -> None:
    c, _, _ = client(ph)
    await c.create_order(**ph.order(side="ask", count="4.00", price="0.4000"))  # buys 4 NO at 0.60
    assert c.positions[0]["position"] == -400
    s = c.settle_market("T", "no")
    assert s is not None and s["no_count_fp"] == "4.00" and s["revenue"] == 400


# ----------------------------------------------------------------------------- modes, latency


def test_create_trading_client_paper_and_live(ph: Any) -> None:
    from core.book import BookSet

    assert create_trading_client("paper", BookSet(2)).get_balance()["balance"] == 100_000
    with pytest.raises(LiveTradingRefused, match="paper"):
        create_trading_client("live", BookSet(2))
    with pytest.raises(ValueError, match="unknown trading mode"):
        create_trading_client("demo", BookSet(2))


async def test_entry_latency_matches_against_the_book_at_arrival(ph: Any) -> None:
    c, books, _ = client(ph, latency=LatencyModel(entry_ms=(50, 50)))
    slot = books.slots["T"]
    task = asyncio.create_task(c.create_order(**ph.order(count="7.00", price="0.4500")))
    await asyncio.sleep(0)  # the order is on its way
    ph.delta(books, slot, SIDE_NO, 550, -700)  # the 0.45 offer is gone before it arrives
    r = await task
    assert r["fill_count"] == "0.00" and r["status"] == "resting"


def test_submit_takes_core_units_for_both_sides(ph: Any) -> None:
    c, _, _ = client(ph)
    r = c.submit("T", SIDE_NO, 0, 600, 300, tif=0)  # buy 3 NO at 0.60 == ask YES at 0.40
    assert r["fill_count"] == "3.00" and c.positions[0]["position"] == -300
    with pytest.raises(KalshiApiError):
        c.submit("T", SIDE_YES, 0, 455, 100)
    # snap: a buy's limit moves down to the grid, a sell's up; buying NO at 0.455 is
    # asking YES at 0.545 -> 0.55
    assert c.submit("T", SIDE_YES, 0, 455, 100, snap=True, tif=0)["fill_count"] == "1.00"
    r = c.submit("T", SIDE_NO, 0, 455, 100, snap=True)
    assert c.get_order(r["order_id"])["order"]["yes_price_dollars"] == "0.5500"


def test_clock_is_used_for_timestamps(ph: Any) -> None:
    clock = ph.Clock(1_800_000_000_000_000_000)
    c, books, _ = ph.make_client(clock=clock)
    ph.snapshot(books, books.slots["T"], BOOK_YES, BOOK_NO)
    r = c.submit("T", SIDE_YES, 0, 450, 100)
    assert r["ts_ms"] == 1_800_000_000_000
