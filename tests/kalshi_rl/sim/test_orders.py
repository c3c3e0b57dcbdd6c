"""The sim takes orders: portfolio REST + private channels over real loopback HTTP/WS, signed.

Prices in these tests are ticks of $0.001 (YES scale unless said), counts are hundredths.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import Any

import httpx
import pytest

from core.dtypes import PRICE_MAX
from kalshi_rl.errors import KalshiApiError
from kalshi_rl.kalshi import auth
from kalshi_rl.kalshi.trading import TradingClient
from kalshi_rl.sim import ModelParams, SimConfig, SimExchange
from kalshi_rl.sim.accounts import AccountsConfig, fill_money, reserve_for

MANUAL = {"autostart": False, "n_markets": 2, "seed": 7, "start_ts_ms": 1_700_000_000_000}
C = 100  # one contract in count units


@pytest.fixture(scope="module")
def key_pem() -> bytes:
    return auth.generate_private_key_pem()


def creds(key_pem: bytes, key_id: str) -> auth.Credentials:
    return auth.Credentials.from_pem(key_id, key_pem)


def sim_cfg(key_pem: bytes, **extra: Any) -> SimConfig:
    pub = creds(key_pem, "x").public_pem()
    return SimConfig(public_key_pem=pub, **{**MANUAL, **extra})


def kalshi_fee(count: int, price: int, rate: Fraction = Fraction(7, 100)) -> Fraction:
    """Kalshi's trade fee in dollars, recomputed independently: round up to $0.0001."""
    c = Fraction(count, 100)
    p = Fraction(price, 1000)
    raw = rate * c * p * (1 - p)
    return Fraction(-((-raw * 10_000) // 1), 10_000)


def cash_change(revenue: Fraction, fee: Fraction) -> Fraction:
    """The balance change of one fill floored to a cent (no accumulator rebate yet)."""
    bc = revenue - fee
    return Fraction((bc * 100) // 1, 100)


async def ws_signed(sim: SimExchange, ws_client: Any, c: auth.Credentials) -> Any:
    return await ws_client.open(sim.ws_url, headers=c.headers("GET", "/trade-api/ws/v2"))


async def private_sub(client: Any, channels: list[str]) -> list[dict[str, Any]]:
    await client.subscribe(channels)
    return [await client.recv() for _ in channels]


def best_yes(sim: SimExchange, t: str) -> tuple[int, int]:
    return sim.book(t)["yes"][0]


def best_no(sim: SimExchange, t: str) -> tuple[int, int]:
    return sim.book(t)["no"][0]


# ----------------------------------------------------------------------------- FIFO


async def test_two_users_at_one_price_fill_in_arrival_order(key_pem: bytes) -> None:
    async with SimExchange(sim_cfg(key_pem)) as sim:
        t = sim.tickers[0]
        p, maker_q = best_yes(sim, t)
        async with (
            TradingClient(sim.rest_url, creds(key_pem, "alice")) as alice,
            TradingClient(sim.rest_url, creds(key_pem, "bob")) as bob,
        ):
            a = await alice.create_order(t, "bid", count=5 * C, price=p)
            b = await bob.create_order(t, "bid", count=5 * C, price=p)
            assert (a.status, b.status) == ("resting", "resting")
            assert await alice.get_queue_position(a.order_id) == maker_q
            assert await bob.get_queue_position(b.order_id) == maker_q + 5 * C
            # the public book shows the users' quantity at p
            assert best_yes(sim, t) == (p, maker_q + 10 * C)
            # a sim taker sells YES through the whole maker lot, alice, and 2 of bob's 5
            assert sim.take(t, "no", maker_q + 7 * C) == maker_q + 7 * C
            oa, ob = await alice.get_order(a.order_id), await bob.get_order(b.order_id)
            assert (oa.status, oa.fill_count, oa.remaining_count) == ("executed", 5 * C, 0)
            assert (ob.status, ob.fill_count, ob.remaining_count) == ("resting", 2 * C, 3 * C)
            assert await bob.get_queue_position(b.order_id) == 0
            assert best_yes(sim, t) == (p, 3 * C)
            fa = await alice.get_fills()
            assert [(f.qty, f.yes_price, f.is_taker, f.fee) for f in fa] == [(5 * C, p, False, 0)]
            pos = {x.ticker: x.position for x in await bob.get_positions()}
            assert pos == {t: 2 * C}
        assert sim.engine.check_invariants() == []


async def test_public_feed_carries_resting_orders(
    key_pem: bytes, ws_client: Any, client_books: Any
) -> None:
    async with SimExchange(sim_cfg(key_pem)) as sim:
        t = sim.tickers[0]
        c = await ws_signed(sim, ws_client, creds(key_pem, "viewer"))
        await c.subscribe(["orderbook_delta"], [t])
        books = client_books()
        for m in [await c.recv(), await c.recv()]:
            if m["type"].startswith("orderbook_"):
                books.apply(m)
        yb, _ = best_yes(sim, t)
        nb, _ = best_no(sim, t)
        inside = yb + 10  # a better YES bid than the maker's (linear_cent grid)
        assert inside + nb < PRICE_MAX
        async with TradingClient(sim.rest_url, creds(key_pem, "alice")) as alice:
            o = await alice.create_order(t, "bid", count=3 * C, price=inside)
            m = await c.recv()
            books.apply(m)
            assert (
                m["msg"]["price_dollars"] == f"0.{inside:03d}0" and m["msg"]["delta_fp"] == "3.00"
            )
            sim.advance(300)  # model deltas around the resting order keep the feed consistent
            last = sim.sub_seq(1, 1)
            while True:
                m = await c.recv()
                if m["type"].startswith("orderbook_"):
                    books.apply(m)
                    if m["seq"] == last:
                        break
            assert books.book(t) == sim.book(t)
            # the level shows the maker's quantity plus what is left of alice's order
            left = (await alice.get_order(o.order_id)).remaining_count
            maker = int(sim.model.books.qty[0, 0, inside])
            assert dict(sim.book(t)["yes"]).get(inside, 0) == maker + left
            path = f"/trade-api/v2/markets/{t}/orderbook"
            h = creds(key_pem, "v").headers("GET", path)
            url = f"{sim.rest_url}/markets/{t}/orderbook"
            rest = (await asyncio.to_thread(httpx.get, url, headers=h)).json()
            levels = {px: qty for px, qty in rest["orderbook_fp"]["yes_dollars"]}
            assert (
                levels.get(f"0.{inside:03d}0") == f"{(maker + left) // C}.{(maker + left) % C:02d}"
            )
            if left == 0:
                return
            await alice.cancel_order(o.order_id)
            m = await c.recv()
            assert m["msg"]["delta_fp"] == f"-{left // C}.{left % C:02d}"
        assert sim.engine.check_invariants() == []
        await c.close()


async def test_model_takers_fill_resting_orders_in_fifo_order(key_pem: bytes) -> None:
    """The model's own takers (not sim.take) reach alice only after the maker lot ahead of
    her, and bob (behind alice) only after alice is done."""
    async with SimExchange(sim_cfg(key_pem, n_markets=1)) as sim:
        t = sim.tickers[0]
        x = sim.engine
        p, maker_q = best_yes(sim, t)
        async with (
            TradingClient(sim.rest_url, creds(key_pem, "alice")) as alice,
            TradingClient(sim.rest_url, creds(key_pem, "bob")) as bob,
        ):
            a = await alice.create_order(t, "bid", count=C, price=p)
            b = await bob.create_order(t, "bid", count=C, price=p)
            seen: list[tuple[str, int]] = []  # (who filled, queue position just before)
            qa, qb = maker_q, maker_q + C
            for _ in range(4000):
                sim.advance(5)
                oa, ob = x.orders[a.order_id], x.orders[b.order_id]
                if oa.filled and not any(w == "alice" for w, _ in seen):
                    seen.append(("alice", qa))
                if ob.filled and not any(w == "bob" for w, _ in seen):
                    seen.append(("bob", qb))
                    assert oa.remaining == 0, "bob filled while alice still rested ahead"
                    break
                if not oa.resting and not oa.filled:
                    break  # the level was requoted away before a taker came
                qa, qb = x.queue_position(oa), x.queue_position(ob)
                assert qa <= maker_q and qb <= maker_q + C  # a queue only moves forward
            assert [w for w, _ in seen] == ["alice", "bob"]
            # each was first filled from the front of the queue (nothing left ahead)
            assert x.check_invariants() == []
            fills = {f.order_id: f for f in await alice.get_fills()}
            assert fills[a.order_id].is_taker is False
        assert x.stats["fills"] >= 2


# ----------------------------------------------------------------------------- takers, fees


async def test_taker_walks_levels_and_pays_kalshi_fees(key_pem: bytes) -> None:
    async with SimExchange(sim_cfg(key_pem)) as sim:
        t = sim.tickers[0]
        no_levels = sim.book(t)["no"][:2]  # a YES buyer takes the NO bids, best first
        (q1, n1), (q2, _) = no_levels
        want = n1 + 2 * C
        limit = PRICE_MAX - q2
        async with TradingClient(sim.rest_url, creds(key_pem, "alice")) as alice:
            before = (await alice.get_balance()).balance
            ack = await alice.create_order(
                t, "bid", count=want, price=limit, time_in_force="immediate_or_cancel"
            )
            assert (ack.status, ack.fill_count, ack.remaining_count) == ("executed", want, 0)
            fills = sorted(await alice.get_fills(), key=lambda f: -f.qty if f.qty == n1 else 0)
            got = sorted((f.yes_price, f.qty, f.is_taker) for f in fills)
            assert got == sorted([(PRICE_MAX - q1, n1, True), (PRICE_MAX - q2, 2 * C, True)])
            # cash moved by exactly Kalshi's fee rule, recomputed here
            expect = Fraction(0)
            acc = Fraction(0)
            for yp, qty in ((PRICE_MAX - q1, n1), (PRICE_MAX - q2, 2 * C)):
                fee = kalshi_fee(qty, yp)
                bc = -Fraction(qty * yp, 100_000) - fee
                moved = cash_change(-Fraction(qty * yp, 100_000), fee)
                acc += bc - moved
                expect += moved
                assert next(f.fee for f in fills if f.yes_price == yp) == int(fee * 10_000)
            while acc > Fraction(1, 100):  # a whole cent back each time it exceeds $0.01
                acc -= Fraction(1, 100)
                expect += Fraction(1, 100)
            after = (await alice.get_balance()).balance
            assert Fraction(after - before, 10_000) == expect
            pos = await alice.get_positions()
            assert [(p.ticker, p.position) for p in pos] == [(t, want)]
        assert sim.book(t)["no"][0][0] == q2
        assert sim.engine.check_invariants() == []


async def test_user_against_user_and_netting(key_pem: bytes) -> None:
    async with SimExchange(sim_cfg(key_pem)) as sim:
        t = sim.tickers[0]
        yb, _ = best_yes(sim, t)
        nb, _ = best_no(sim, t)
        mid = yb + 10
        assert mid + nb < PRICE_MAX
        async with (
            TradingClient(sim.rest_url, creds(key_pem, "alice")) as alice,
            TradingClient(sim.rest_url, creds(key_pem, "bob")) as bob,
        ):
            # bob asks (sells YES) inside the spread, alice lifts it
            ask = await bob.create_order(t, "ask", count=4 * C, price=mid)
            assert ask.status == "resting"
            lift = await alice.create_order(t, "bid", count=4 * C, price=mid)
            assert (lift.status, lift.fill_count) == ("executed", 4 * C)
            assert lift.average_fill_price == mid * 10
            assert [(p.position) for p in await alice.get_positions()] == [4 * C]
            assert [(p.position) for p in await bob.get_positions()] == [-4 * C]
            bf = await bob.get_fills()
            assert [(f.is_taker, f.fee, f.book_side) for f in bf] == [(False, 0, "ask")]
            # alice sells back 4 to a new bob bid: her YES nets against it (pairs redeem)
            bal0 = (await alice.get_balance()).balance
            await bob.create_order(t, "bid", count=4 * C, price=mid)
            s = await alice.create_order(t, "ask", count=4 * C, price=mid)
            assert s.fill_count == 4 * C
            assert [(p.position) for p in await alice.get_positions()] == [0]
            bal1 = (await alice.get_balance()).balance
            fee = kalshi_fee(4 * C, mid)
            assert Fraction(bal1 - bal0, 10_000) == cash_change(Fraction(4 * mid, 1000), fee)
            ap = (await alice.get_positions())[0]
            # bought and sold at mid: no realized P&L (fees are reported apart)
            assert ap.realized_pnl == 0
            assert ap.fees_paid == int((kalshi_fee(4 * C, mid) * 2) * 10_000)


# ----------------------------------------------------------------------------- order ops


async def test_cancel_decrease_amend_and_queue_priority(key_pem: bytes) -> None:
    async with SimExchange(sim_cfg(key_pem)) as sim:
        t = sim.tickers[0]
        p, maker_q = best_yes(sim, t)
        async with (
            TradingClient(sim.rest_url, creds(key_pem, "alice")) as alice,
            TradingClient(sim.rest_url, creds(key_pem, "bob")) as bob,
        ):
            a = await alice.create_order(t, "bid", count=6 * C, price=p)
            b = await bob.create_order(t, "bid", count=2 * C, price=p)
            # decrease keeps priority
            d = await alice.decrease_order(a.order_id, reduce_by=2 * C)
            assert d.remaining_count == 4 * C
            assert await alice.get_queue_position(a.order_id) == maker_q
            assert await bob.get_queue_position(b.order_id) == maker_q + 4 * C
            d = await alice.decrease_order(a.order_id, reduce_to=3 * C)
            assert d.remaining_count == 3 * C
            # amend to a smaller count at the same price keeps priority
            _, new = await alice.amend_order(a.order_id, ticker=t, side="bid", price=p, count=2 * C)
            assert new.remaining_count == 2 * C
            assert await alice.get_queue_position(a.order_id) == maker_q
            # a larger count loses it: alice goes behind bob
            _, new = await alice.amend_order(a.order_id, ticker=t, side="bid", price=p, count=5 * C)
            assert new.remaining_count == 5 * C
            assert await alice.get_queue_position(a.order_id) == maker_q + 2 * C
            # a new price moves it (and to the back of that level)
            lower = p - 10
            _, new = await alice.amend_order(
                a.order_id, ticker=t, side="bid", price=lower, count=5 * C
            )
            lower_maker = dict(sim.book(t)["yes"]).get(lower, 0) - 5 * C
            assert await alice.get_queue_position(a.order_id) == lower_maker
            assert (await alice.get_order(a.order_id)).yes_price == lower
            # cancel, and a second cancel is refused
            ca = await alice.cancel_order(a.order_id)
            assert ca.reduced_by == 5 * C
            with pytest.raises(KalshiApiError) as e:
                await alice.cancel_order(a.order_id)
            assert e.value.status == 400
            # bob's order is bob's: alice cannot see or cancel it
            with pytest.raises(KalshiApiError) as e:
                await alice.cancel_order(b.order_id)
            assert (e.value.status, e.value.code) == (404, "not_found")
            with pytest.raises(KalshiApiError) as e:
                await alice.decrease_order(b.order_id, reduce_by=C)
            assert e.value.status == 404
            # a decrease to zero cancels
            await bob.decrease_order(b.order_id, reduce_to=0)
            assert (await bob.get_order(b.order_id)).status == "canceled"
        assert sim.engine.check_invariants() == []
        assert sim.book(t)["yes"][0] == (p, maker_q)


async def test_time_in_force_and_post_only(key_pem: bytes) -> None:
    async with SimExchange(sim_cfg(key_pem)) as sim:
        t = sim.tickers[0]
        q1, n1 = best_no(sim, t)
        ask_yes = PRICE_MAX - q1
        async with TradingClient(sim.rest_url, creds(key_pem, "alice")) as alice:
            # IOC: fills what crosses at the limit, the rest is cancelled (not rested)
            ioc = await alice.create_order(t, "bid", count=n1 + 5 * C, price=ask_yes,
                                           time_in_force="immediate_or_cancel")  # fmt: skip
            assert (ioc.status, ioc.fill_count, ioc.remaining_count) == ("canceled", n1, 0)
            q2, n2 = best_no(sim, t)
            # FOK larger than the level: nothing fills
            fok = await alice.create_order(t, "bid", count=n2 + C, price=PRICE_MAX - q2,
                                           time_in_force="fill_or_kill")  # fmt: skip
            assert (fok.status, fok.fill_count) == ("canceled", 0)
            assert best_no(sim, t) == (q2, n2)
            fok = await alice.create_order(t, "bid", count=n2, price=PRICE_MAX - q2,
                                           time_in_force="fill_or_kill")  # fmt: skip
            assert (fok.status, fok.fill_count) == ("executed", n2)
            # post_only that would cross is refused; one that does not, rests
            q3, _ = best_no(sim, t)
            with pytest.raises(KalshiApiError) as e:
                await alice.create_order(t, "bid", count=C, price=PRICE_MAX - q3, post_only=True)
            assert e.value.status == 400
            ok = await alice.create_order(
                t, "bid", count=C, price=PRICE_MAX - q3 - 10, post_only=True
            )
            assert ok.status == "resting"


async def test_self_trade_prevention(key_pem: bytes) -> None:
    async with SimExchange(sim_cfg(key_pem)) as sim:
        t = sim.tickers[0]
        yb, _ = best_yes(sim, t)
        nb, _ = best_no(sim, t)
        px = yb + 10  # inside the maker's spread: only alice's own orders are there
        assert px + nb < PRICE_MAX
        async with TradingClient(sim.rest_url, creds(key_pem, "alice")) as alice:
            mine = await alice.create_order(t, "ask", count=2 * C, price=px)
            hit = await alice.create_order(t, "bid", count=2 * C, price=px)
            # taker_at_cross: the taker is cancelled, the resting order stays
            assert (hit.status, hit.fill_count) == ("canceled", 0)
            assert (await alice.get_order(mine.order_id)).status == "resting"
            hit = await alice.create_order(t, "bid", count=2 * C, price=px,
                                           self_trade_prevention_type="maker")  # fmt: skip
            assert (await alice.get_order(mine.order_id)).status == "canceled"
            assert hit.status == "resting" and hit.fill_count == 0
        assert sim.engine.check_invariants() == []


async def test_batches_and_legacy_orders(key_pem: bytes) -> None:
    async with SimExchange(sim_cfg(key_pem)) as sim:
        t = sim.tickers[0]
        p, _ = best_yes(sim, t)
        c = creds(key_pem, "alice")
        async with TradingClient(sim.rest_url, c) as alice:
            res = await alice.batch_create_orders([
                {"ticker": t, "side": "bid", "count": C, "price": p - 10},
                {"ticker": t, "side": "bid", "count": C, "price": p - 5},  # off the cent grid
                {"ticker": "NOPE", "side": "bid", "count": C, "price": p},
            ])  # fmt: skip
            assert res[0].status == "resting"  # type: ignore[union-attr]
            assert isinstance(res[1], KalshiApiError) and res[1].code == "invalid_price"
            assert isinstance(res[2], KalshiApiError) and res[2].code == "not_found"
            ok = res[0]
            assert not isinstance(ok, KalshiApiError)
            out = await alice.batch_cancel_orders([ok.order_id, "missing"])
            assert not isinstance(out[0], KalshiApiError) and out[0].reduced_by == C
            assert isinstance(out[1], KalshiApiError)
            # legacy create: buy NO at 100 - p cents is a YES ask at p cents
            body = {"ticker": t, "side": "no", "action": "buy", "count": 2,
                    "no_price": (PRICE_MAX - p - 20) // 10, "client_order_id": "leg-1"}  # fmt: skip
            d = await alice.request("POST", "/portfolio/orders", body)
            o = d["order"]
            assert (o["side"], o["action"], o["book_side"]) == ("no", "buy", "ask")
            assert o["yes_price_dollars"] == f"0.{p + 20:03d}0" and o["status"] == "resting"
            d = await alice.request("DELETE", f"/portfolio/orders/{o['order_id']}")
            assert d["order"]["status"] == "canceled" and d["reduced_by_fp"] == "2.00"


# ----------------------------------------------------------------------------- errors


async def test_kalshi_errors(key_pem: bytes) -> None:
    cfg = sim_cfg(key_pem, structures=("linear_cent",))
    async with SimExchange(cfg, AccountsConfig(starting_balance=10_000)) as sim:  # $1
        t = sim.tickers[0]
        p, _ = best_yes(sim, t)
        async with TradingClient(sim.rest_url, creds(key_pem, "alice")) as alice:

            async def err(**kw: Any) -> KalshiApiError:
                with pytest.raises(KalshiApiError) as e:
                    await alice.create_order(t, "bid", **{"count": C, "price": p - 10, **kw})
                return e.value

            e = await err(count=50 * C)  # $1 cannot buy 50 contracts
            assert (e.status, e.code) == (400, "insufficient_balance")
            e = await err(price=p - 15)  # $0.005 is off a linear_cent market's grid
            assert (e.status, e.code) == (400, "invalid_price")
            ok = await alice.create_order(t, "bid", count=C, price=10, client_order_id="dup")
            assert ok.status == "resting"
            e = await err(price=20, client_order_id="dup")
            assert (e.status, e.code) == (409, "order_already_exists")
            raw = {"ticker": t, "side": "bid", "count": "1.005", "price": "0.0100",
                   "client_order_id": "x", "time_in_force": "good_till_canceled",
                   "self_trade_prevention_type": "taker_at_cross"}  # fmt: skip
            for patch, code in (
                ({"count": "1.005"}, "invalid_order"),
                ({"count": "1", "price": "0.01001"}, "invalid_price"),
                ({"count": "1", "side": "buy"}, "invalid_parameters"),
                ({"count": "1", "time_in_force": None}, "invalid_parameters"),
            ):
                with pytest.raises(KalshiApiError) as ei:
                    await alice.request("POST", "/portfolio/events/orders", {**raw, **patch})
                assert (ei.value.status, ei.value.code) == (400, code), patch
            with pytest.raises(KalshiApiError) as ei:
                await alice.get_order("no-such-order")
            assert ei.value.status == 404
            assert (await alice.get_balance()).balance >= 0
        # unsigned and badly signed requests are refused
        r = await asyncio.to_thread(httpx.get, sim.rest_url + "/portfolio/balance")
        assert r.status_code == 401 and r.json()["error"]["code"] == "authentication_error"
        h = creds(key_pem, "alice").headers("GET", "/trade-api/v2/portfolio/positions")
        r = await asyncio.to_thread(httpx.get, sim.rest_url + "/portfolio/balance", headers=h)
        assert r.status_code == 401
        other = auth.Credentials.from_pem("alice", auth.generate_private_key_pem())
        async with TradingClient(sim.rest_url, other) as mallory:
            with pytest.raises(KalshiApiError) as ei:
                await mallory.get_balance()
            assert ei.value.status == 401


async def test_market_closed_cancels_resting_and_settlement_pays(
    key_pem: bytes, ws_client: Any
) -> None:
    params = ModelParams(lifetime_ms=2_000, determine_delay_ms=500, settle_delay_ms=500)
    async with SimExchange(sim_cfg(key_pem, model=params, rate=2000.0)) as sim:
        t = sim.tickers[0]
        c = creds(key_pem, "alice")
        ws = await ws_signed(sim, ws_client, c)
        await private_sub(ws, ["user_orders", "market_positions"])
        q1, n1 = best_no(sim, t)
        async with TradingClient(sim.rest_url, c) as alice:
            buy = await alice.create_order(t, "bid", count=min(n1, 3 * C), price=PRICE_MAX - q1)
            held = buy.fill_count
            assert held > 0
            rest = await alice.create_order(t, "bid", count=C, price=10)
            bal0 = (await alice.get_balance()).balance
            while not sim.model.all_settled():
                sim.advance(500)
            o = await alice.get_order(rest.order_id)
            assert o.status == "canceled"  # cancelled at close
            with pytest.raises(KalshiApiError) as e:
                await alice.create_order(t, "bid", count=C, price=10)
            assert e.value.code == "market_closed"
            st = await alice.get_settlements()
            result_yes = int(sim.model.mk[0]["result"]) == 1
            assert [(s.ticker, s.market_result, s.yes_count) for s in st] == [
                (t, "yes" if result_yes else "no", held)
            ]
            payout = held * PRICE_MAX // 10 if result_yes else 0
            assert st[0].revenue == payout
            bal1 = (await alice.get_balance()).balance
            # the payout, and the cancelled order's collateral back
            assert bal1 == bal0 + payout + reserve_for(C, C, 10)
            assert [p.position for p in await alice.get_positions()] == [0]
        msgs = []
        while True:
            try:
                msgs.append(await ws.recv(timeout=1))
            except TimeoutError:
                break
        canceled = [
            m for m in msgs if m["type"] == "user_order" and m["msg"]["status"] == "canceled"
        ]
        assert [m["msg"]["order_id"] for m in canceled] == [rest.order_id]
        assert any(
            m["type"] == "market_position" and m["msg"]["position_fp"] == "0.00" for m in msgs
        )
        await ws.close()


# ----------------------------------------------------------------------------- private WS


async def test_private_channels(key_pem: bytes, ws_client: Any) -> None:
    async with SimExchange(sim_cfg(key_pem)) as sim:
        t = sim.tickers[0]
        ca, cb = creds(key_pem, "alice"), creds(key_pem, "bob")
        wa = await ws_signed(sim, ws_client, ca)
        wb = await ws_signed(sim, ws_client, cb)
        acks = await private_sub(wa, ["fill", "user_orders", "market_positions"])
        assert [m["msg"]["channel"] for m in acks] == ["fill", "user_orders", "market_positions"]
        await private_sub(wb, ["fill"])
        p, maker_q = best_yes(sim, t)
        async with TradingClient(sim.rest_url, ca) as alice:
            o = await alice.create_order(t, "bid", count=2 * C, price=p, client_order_id="c-1")
            m = await wa.recv()
            assert m["type"] == "user_order" and m["sid"] == acks[1]["msg"]["sid"]
            assert m["msg"]["order_id"] == o.order_id and m["msg"]["status"] == "resting"
            assert m["msg"]["client_order_id"] == "c-1" and m["msg"]["remaining_count_fp"] == "2.00"
            sim.take(t, "no", maker_q + C)
            got = {}
            while len(got) < 3:
                m = await wa.recv()
                got[m["type"]] = m
            f = got["fill"]["msg"]
            assert (f["order_id"], f["market_ticker"], f["count_fp"], f["is_taker"]) == (
                o.order_id, t, "1.00", False,
            )  # fmt: skip
            assert f["yes_price_dollars"] == f"0.{p:03d}0" and f["side"] == "yes"
            assert f["action"] == "buy" and f["fee_cost"] == "0.0000"
            assert f["trade_id"] and f["post_position_fp"] == "1.00"
            mp = got["market_position"]["msg"]
            assert (mp["market_ticker"], mp["position_fp"]) == (t, "1.00")
            assert mp["position_cost_dollars"] == f"0.{p:03d}0"  # 1 contract at p
            assert got["user_order"]["msg"]["fill_count_fp"] == "1.00"
        # bob saw none of alice's private messages
        with pytest.raises(TimeoutError):
            await wb.recv(timeout=0.3)
        await wa.close()
        await wb.close()


async def test_private_channels_need_a_user(ws_client: Any) -> None:
    async with SimExchange(SimConfig(**MANUAL)) as sim:
        c = await ws_client.open(sim.ws_url)
        await c.subscribe(["fill"])
        m = await c.recv()
        assert m["type"] == "error" and m["msg"]["code"] == 9
        await c.close()


# ----------------------------------------------------------------------------- properties


async def test_random_order_stream_against_the_model_keeps_every_invariant(key_pem: bytes) -> None:
    """Orders from three users interleaved with model steps: queues agree with the books,
    nobody fills ahead of an earlier order at its level, cash never goes negative, and
    positions equal the sum of the fills."""
    import numpy as np

    rng = np.random.default_rng(3)
    async with SimExchange(
        sim_cfg(key_pem, n_markets=2), AccountsConfig(starting_balance=200_000)
    ) as sim:
        x = sim.engine
        violations: list[str] = []
        orig = x.listener
        assert orig is not None

        def on_fill(f: Any) -> None:
            o = f.order
            if not f.is_taker:
                q = x.levels.get((o.m, o.side, o.price))
                # everything ahead of a filled maker at its level must already be gone
                for e in q or ():
                    if e is o:
                        break
                    if e.qty > 0:
                        violations.append(f"{o.order_id} filled with {e.qty} ahead of it")
            orig.on_fill(f)

        x.listener = orig._replace(on_fill=on_fill)
        users = [creds(key_pem, u) for u in ("u1", "u2", "u3")]
        clients = [TradingClient(sim.rest_url, c) for c in users]
        for step in range(120):
            cl = clients[int(rng.integers(3))]
            m = int(rng.integers(2))
            t = sim.tickers[m]
            book = sim.book(t)
            side = "bid" if rng.random() < 0.5 else "ask"
            ref = book["yes"][0][0] if book["yes"] else 500
            price = int(np.clip(ref + 10 * int(rng.integers(-3, 4)), 10, 990))
            if sim.model.markets[m].structure.value == "linear_cent":
                price -= price % 10
            try:
                await cl.create_order(t, side, count=int(rng.integers(1, 8)) * C, price=price)
            except KalshiApiError as e:
                assert e.code in ("insufficient_balance", "invalid_price", "order_already_exists")
            if step % 3 == 0:
                sim.advance(int(rng.integers(50, 400)))
            if step % 7 == 0:
                resting = [o for o in x.orders.values() if o.resting]
                if resting:
                    o = resting[int(rng.integers(len(resting)))]
                    await clients[("u1", "u2", "u3").index(o.user)].cancel_order(o.order_id)
            assert x.check_invariants() == []
        assert not violations
        assert x.stats["fills"] > 20
        for c, cl in zip(users, clients, strict=True):
            fills = await cl.get_fills()
            per: dict[str, int] = {}
            for f in fills:
                per[f.ticker] = per.get(f.ticker, 0) + (f.qty if f.book_side == "bid" else -f.qty)
            pos = {p.ticker: p.position for p in await cl.get_positions()}
            assert {k: v for k, v in per.items() if v} == {k: v for k, v in pos.items() if v}, (
                c.key_id
            )
            assert x.accounts[c.key_id].cash >= 0
            await cl.aclose()


def test_fee_rounding_matches_kalshis_worked_example() -> None:
    """Three 1-lot buys at $0.055 cost what one 3-lot buy does (kalshi-protocol.md §4)."""
    cfg = AccountsConfig()
    acc = 0
    total = 0
    for _ in range(3):
        r = fill_money(-1 * C * 55, C, 55, is_taker=True, acc_e=acc, config=cfg)
        acc = r.acc_e
        total += r.cash_change
    one = fill_money(-3 * C * 55, 3 * C, 55, is_taker=True, acc_e=0, config=cfg)
    assert total == one.cash_change == -1800  # $0.18
    # a direct member pays to the $0.0001
    d = fill_money(-3 * C * 55, 3 * C, 55, is_taker=True, acc_e=0,
                   config=AccountsConfig(member_precision=1))  # fmt: skip
    assert d.cash_change == -(1650 + 110)


async def test_closing_a_position_needs_no_collateral(key_pem: bytes) -> None:
    async with SimExchange(sim_cfg(key_pem)) as sim:
        t = sim.tickers[0]
        q1, n1 = best_no(sim, t)
        async with TradingClient(sim.rest_url, creds(key_pem, "alice")) as alice:
            buy = await alice.create_order(t, "bid", count=min(n1, 5 * C), price=PRICE_MAX - q1)
            held = buy.fill_count
            sim.engine.account("alice").cash = 0  # spent everything else
            assert (await alice.get_balance()).balance == 0
            with pytest.raises(KalshiApiError) as e:  # opening more needs cash
                await alice.create_order(t, "bid", count=C, price=10)
            assert e.value.code == "insufficient_balance"
            # selling what she holds (YES ask) needs none; reduce_only beyond it is refused
            with pytest.raises(KalshiApiError) as e:
                await alice.create_order(t, "ask", count=held + C, price=990, reduce_only=True)
            assert e.value.code == "invalid_order"
            yb, _ = best_yes(sim, t)
            sell = await alice.create_order(t, "ask", count=held, price=yb, reduce_only=True)
            assert sell.fill_count > 0
            acc = sim.engine.account("alice")
            assert acc.cash > 0 and acc.balance >= 0
            left = sum(p.position for p in await alice.get_positions())
            assert left == held - sell.fill_count
        assert sim.engine.check_invariants() == []


async def test_users_with_their_own_keys(key_pem: bytes) -> None:
    """add_user: a key id checked against its own key, with its own starting balance."""
    own_pem = auth.generate_private_key_pem()
    carol = auth.Credentials.from_pem("carol", own_pem)
    async with SimExchange(sim_cfg(key_pem)) as sim:
        sim.add_user("carol", carol.public_pem(), balance=123_4500)
        async with TradingClient(sim.rest_url, carol) as c:
            assert (await c.get_balance()).balance == 123_4500
        # the sim's default key can no longer sign for carol
        async with TradingClient(sim.rest_url, creds(key_pem, "carol")) as fake:
            with pytest.raises(KalshiApiError) as e:
                await fake.get_balance()
            assert e.value.status == 401


async def test_rolling_markets_keep_positions_per_ticker(key_pem: bytes) -> None:
    """A rolling listing settles and its slot is reused: the old position stays under its
    ticker (settled, realized), orders and fills keep their ticker, the new market trades."""
    from kalshi_rl.sim.listings import default_series

    series = default_series(1, lifetime_ms=3000, lead_ms=400)
    fast = ModelParams(determine_delay_ms=200, settle_delay_ms=300)
    async with SimExchange(sim_cfg(key_pem, series=series, model=fast, rate=2000.0)) as sim:
        sim.advance(1)  # lists the first market
        m = next(i for i, t in enumerate(sim.tickers) if t)
        first = sim.tickers[m]
        async with TradingClient(sim.rest_url, creds(key_pem, "alice")) as alice:
            q1, n1 = best_no(sim, first)
            buy = await alice.create_order(first, "bid", count=min(n1, 2 * C), price=PRICE_MAX - q1)
            assert buy.fill_count > 0
            for _ in range(2000):
                sim.advance(50)
                if sim.tickers[m] not in ("", first):
                    break
            second = sim.tickers[m]
            assert second not in ("", first), "the slot was not reused"
            pos = {p.ticker: p for p in await alice.get_positions()}
            assert pos[first].position == 0  # settled
            assert [s.ticker for s in await alice.get_settlements()] == [first]
            assert [f.ticker for f in await alice.get_fills()] == [first]
            assert (await alice.get_order(buy.order_id)).ticker == first
            for _ in range(200):  # the new market opens and gets quotes
                if sim.book(second)["no"]:
                    break
                sim.advance(20)
            q2, _ = best_no(sim, second)
            buy2 = await alice.create_order(second, "bid", count=C, price=PRICE_MAX - q2)
            assert buy2.fill_count == C
            pos = {p.ticker: p.position for p in await alice.get_positions()}
            assert pos == {first: 0, second: C}
        assert sim.engine.check_invariants() == []


async def test_own_deltas_carry_the_client_order_id(key_pem: bytes, ws_client: Any) -> None:
    async with SimExchange(sim_cfg(key_pem)) as sim:
        t = sim.tickers[0]
        ca = creds(key_pem, "alice")
        mine = await ws_signed(sim, ws_client, ca)
        other = await ws_signed(sim, ws_client, creds(key_pem, "bob"))
        for c in (mine, other):
            await c.subscribe(["orderbook_delta"], [t])
            await c.recv_until(lambda m: m["type"] == "orderbook_snapshot")
        yb, _ = best_yes(sim, t)
        async with TradingClient(sim.rest_url, ca) as alice:
            o = await alice.create_order(t, "bid", count=C, price=yb - 10, client_order_id="me-1")
            await alice.cancel_order(o.order_id)
        a = [await mine.recv(), await mine.recv()]
        b = [await other.recv(), await other.recv()]
        assert [m["msg"].get("client_order_id") for m in a] == ["me-1", "me-1"]
        assert [m["msg"]["delta_fp"] for m in a] == ["1.00", "-1.00"]
        assert all("client_order_id" not in m["msg"] for m in b)
        assert [m["seq"] for m in a] == [m["seq"] for m in b]  # same stream otherwise
        await mine.close()
        await other.close()


async def test_order_groups_trigger_on_their_rolling_limit(key_pem: bytes) -> None:
    async with SimExchange(sim_cfg(key_pem)) as sim:
        t = sim.tickers[0]
        p, maker_q = best_yes(sim, t)
        async with TradingClient(sim.rest_url, creds(key_pem, "alice")) as alice:
            d = await alice.request(
                "POST", "/portfolio/order_groups/create", {"contracts_limit": 3}
            )
            gid = d["order_group_id"]
            a = await alice.create_order(t, "bid", count=2 * C, price=p, order_group_id=gid)
            b = await alice.create_order(t, "bid", count=3 * C, price=p - 10, order_group_id=gid)
            g = await alice.request("GET", f"/portfolio/order_groups/{gid}")
            assert sorted(g["orders"]) == sorted([a.order_id, b.order_id])
            assert g["contracts_limit_fp"] == "3.00" and g["status"] == "active"
            sim.take(t, "no", maker_q + 2 * C)  # fills a: 2 contracts, not over 3
            assert (await alice.get_order(b.order_id)).status == "resting"
            sim.take(t, "no", dict(sim.book(t)["yes"])[p - 10] - 3 * C + C)  # 1 more of b: 3
            assert (await alice.get_order(b.order_id)).status == "resting"  # 3 is not > 3
            sim.take(t, "no", C)  # 4 > 3: triggered, b's rest is cancelled
            ob = await alice.get_order(b.order_id)
            assert (ob.status, ob.fill_count) == ("canceled", 2 * C)
            g = await alice.request("GET", f"/portfolio/order_groups/{gid}")
            assert g["status"] == "triggered" and g["orders"] == []
            with pytest.raises(KalshiApiError) as e:
                await alice.create_order(t, "bid", count=C, price=10, order_group_id=gid)
            assert e.value.code == "order_group_triggered"
            await alice.reset_order_group(gid)
            c = await alice.create_order(t, "bid", count=C, price=10, order_group_id=gid)
            assert c.status == "resting"
            await alice.request("PUT", f"/portfolio/order_groups/{gid}/trigger")
            assert (await alice.get_order(c.order_id)).status == "canceled"
            await alice.delete_order_group(gid)
            with pytest.raises(KalshiApiError) as e:
                await alice.request("GET", f"/portfolio/order_groups/{gid}")
            assert e.value.status == 404
        # the window rolls: fills older than 15 s no longer count
        grp = sim.engine.create_group("bob", 100)
        grp.window.append((1_000, 100))
        assert grp.volume(1_000 + 14_999) == 100 and grp.volume(1_000 + 15_000) == 0
        assert sim.engine.check_invariants() == []


async def test_orders_expire_on_the_sim_clock(key_pem: bytes) -> None:
    async with SimExchange(sim_cfg(key_pem, rate=2000.0)) as sim:
        t = sim.tickers[0]
        now_s = sim.model.now_ms // 1000
        async with TradingClient(sim.rest_url, creds(key_pem, "alice")) as alice:
            o = await alice.create_order(t, "bid", count=C, price=10, expiration_time=now_s + 2)
            keep = await alice.create_order(t, "bid", count=C, price=10)
            while sim.model.now_ms < (now_s + 3) * 1000:
                sim.advance(200)
            assert (await alice.get_order(o.order_id)).status == "canceled"
            assert (await alice.get_order(keep.order_id)).status == "resting"
            past = await alice.create_order(t, "bid", count=C, price=10, expiration_time=now_s)
            assert past.status == "canceled"  # an expiry in the past never rests
            with pytest.raises(KalshiApiError):
                await alice.create_order(t, "bid", count=C, price=10, expiration_time="soon")
        assert sim.engine.check_invariants() == []


async def test_positions_stay_with_their_market_when_a_rolling_slot_is_reused(
    key_pem: bytes,
) -> None:
    """Accounts keep a rolling market's position under that market, not its book slot:
    after the market settles and a new listing takes the slot, ``/portfolio/positions``
    shows the settled position under the old ticker, the new market starts flat, and a
    trade in the new market opens a position of its own."""
    from kalshi_rl.sim.listings import default_series

    series = default_series(1, lifetime_ms=3000, lead_ms=0)
    params = ModelParams(determine_delay_ms=200, settle_delay_ms=200)
    cfg = sim_cfg(key_pem, series=series, model=params, rate=2000.0, step_ms=2.0, n_markets=1)
    async with SimExchange(cfg) as sim:
        sim.advance(1)  # lists and opens the first market
        a = next(t for t in sim.tickers if t)
        slot = sim.slot[a]
        c = creds(key_pem, "alice")
        async with TradingClient(sim.rest_url, c) as alice:
            q, n = best_no(sim, a)
            buy = await alice.create_order(a, "bid", count=min(n, 2 * C), price=PRICE_MAX - q)
            assert buy.fill_count > 0
            while sim.tickers[slot] == a:  # a settles, then a new listing takes its slot
                sim.advance(100)
            b = sim.tickers[slot]
            assert b and b != a
            pos = {p.ticker: p for p in await alice.get_positions()}
            assert set(pos) == {a}, pos
            assert pos[a].position == 0 and pos[a].total_traded > 0  # settled, kept
            assert [p.ticker for p in await alice.get_positions(ticker=b)] == []
            for _ in range(50):  # until the new market opens and quotes
                if sim.book(b)["no"]:
                    break
                sim.advance(20)
            q, n = best_no(sim, b)
            buy = await alice.create_order(b, "bid", count=min(n, C), price=PRICE_MAX - q)
            assert buy.fill_count > 0
            pos = {p.ticker: p for p in await alice.get_positions()}
            assert set(pos) == {a, b}
            assert pos[b].position == buy.fill_count and pos[a].position == 0
            fills = await alice.get_fills()
            assert {f.ticker for f in fills} == {a, b}
