"""The matching engine under random operation sequences (hypothesis), no sockets.

Every sequence of submits, cancels, decreases, amends, sim takers and model steps must
keep: queues == books (maker lots == the maker's book, public - maker == resting
orders), cash >= 0, every account's position == the sum of its fills, fills never ahead
of the queue, reserved collateral == the sum over resting orders, and order counts
consistent (filled + remaining <= initial; terminal orders have nothing remaining).
"""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
from hypothesis import given

from core.dtypes import PRICE_MAX, SIDE_NO, SIDE_YES
from kalshi_rl.sim import AccountsConfig, SimConfig, SimExchange
from kalshi_rl.sim.orders import Order, Rejection

USERS = ("a", "b", "c")

submit = st.tuples(
    st.just("submit"),
    st.sampled_from(USERS),
    st.sampled_from([SIDE_YES, SIDE_NO]),
    st.integers(0, 6),  # grid steps above the side's best bid (>= 3 usually crosses)
    st.integers(1, 9),  # contracts
    st.sampled_from(["good_till_canceled", "immediate_or_cancel", "fill_or_kill"]),
    st.sampled_from(["taker_at_cross", "maker"]),
    st.sampled_from([False, False, False, True]),  # post_only
)
op = st.one_of(
    submit,
    submit,
    submit,
    submit,
    st.tuples(st.just("cancel"), st.integers(0, 50)),
    st.tuples(st.just("decrease"), st.integers(0, 50), st.integers(1, 5)),
    st.tuples(st.just("amend"), st.integers(0, 50), st.integers(-2, 2), st.integers(1, 9)),
    st.tuples(st.just("take"), st.sampled_from(["yes", "no"]), st.integers(1, 40)),
    st.tuples(st.just("step"), st.integers(1, 60)),
)


def _check(sim: SimExchange, fills: list[Any], bad: list[str]) -> None:
    x = sim.engine
    assert x.check_invariants() == []
    assert not bad, bad
    for acc in x.accounts.values():
        held = sum(o.reserve for o in x.orders.values() if o.resting and o.user == acc.user)
        assert acc.reserved == held, acc.user
        pos: dict[int, int] = {}
        for f in fills:
            if f.order.user == acc.user:
                d = f.qty if f.order.side == SIDE_YES else -f.qty
                pos[f.order.m] = pos.get(f.order.m, 0) + d
        for m, p in acc.positions.items():
            assert p.position == pos.get(m, 0), (acc.user, m)
    for o in x.orders.values():
        assert o.filled + o.remaining <= o.initial
        if o.status != "resting":
            assert o.remaining == 0 and not o.resting


@given(st.lists(op, min_size=10, max_size=60), st.integers(0, 3))
def test_random_operations_keep_every_invariant(ops: list[tuple[Any, ...]], seed: int) -> None:
    cfg = SimConfig(autostart=False, n_markets=1, seed=seed, record_limit=0,
                    structures=("linear_cent",))  # fmt: skip
    sim = SimExchange(cfg, AccountsConfig(starting_balance=5_000 * 100))  # $50 each
    x = sim.engine
    fills: list[Any] = []
    bad: list[str] = []
    orig = x.listener
    assert orig is not None

    def on_fill(f: Any) -> None:
        fills.append(f)
        o = f.order
        if not f.is_taker:
            for e in x.levels.get((o.m, o.side, o.price)) or ():
                if e is o:
                    break
                if e.qty > 0:
                    bad.append(f"{o.order_id} filled with {e.qty} ahead")
        orig.on_fill(f)

    x.listener = orig._replace(on_fill=on_fill)
    ids: list[str] = []
    for item in ops:
        kind = item[0]
        try:
            if kind == "submit":
                _, user, side, steps, n, tif, stp, post = item
                best = int(sim.markets.books.best[0, side])
                px = min(max((best if best > 0 else 500) + 10 * steps, 10), PRICE_MAX - 10)
                o = Order(x.new_id(), user, "", 0, side, px, n * 100, tif=tif, stp=stp,
                          post_only=post)  # fmt: skip
                x.submit(o)
                ids.append(o.order_id)
            elif kind in ("cancel", "decrease", "amend") and ids:
                o = x.orders[ids[item[1] % len(ids)]]
                if kind == "cancel":
                    x.cancel(o.user, o.order_id)
                elif kind == "decrease":
                    x.decrease(o.user, o.order_id, item[2] * 100, None)
                else:
                    px = min(max(o.price + 10 * item[2], 10), PRICE_MAX - 10)
                    x.amend(o.user, o.order_id, px, o.filled + item[3] * 100, None)
            elif kind == "take":
                sim.take(sim.tickers[0], item[1], item[2] * 100)
            elif kind == "step":
                sim.advance(item[1])
        except Rejection as exc:
            assert exc.status in (400, 404, 409), exc.message
        _check(sim, fills, bad)
