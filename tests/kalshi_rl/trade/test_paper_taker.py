"""PaperClient.submit_taker (the actor's one-kernel order entry) equals submit.

Two clients on two identical books get the same random order sequence, one through
``submit`` (the V2-shaped Python path), the other through ``submit_taker``: orders, fills,
positions, ring records (paper_orders / paper_fills rows), rejections and the V2 JSON of
orders and fills must be identical -- with resting orders of our own in the book (the
self-trade guard), persistence rings on and off, and the cases that make ``submit_taker``
hand over to Python (event subscribers, a client order id taken by a given one).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from core.book import BookSet
from core.dtypes import ORDER_BUY, ORDER_SELL, SIDE_NO, SIDE_YES, TIF_FOK, TIF_GTC, TIF_IOC
from kalshi_rl.errors import KalshiApiError
from kalshi_rl.sim.grid import PriceLevelStructure
from kalshi_rl.trade.paper import MarketInfo, MarketStatus, PaperClient, PaperConfig, PaperRings

MARKETS = (
    MarketInfo("A"),
    MarketInfo("B", PriceLevelStructure.DECI_CENT),
    MarketInfo("C", PriceLevelStructure.TAPERED_DECI_CENT),
)


class Clock:
    """A settable clock (both clients read the same time at each step)."""

    def __init__(self) -> None:
        self.t = 1_800_000_000_000_000_000

    def __call__(self) -> int:
        return self.t


def build(rings: bool, cash: int, clock: Clock) -> tuple[PaperClient, BookSet]:
    books = BookSet(4)
    paper = PaperClient(
        books,
        PaperConfig(start_cash=cash),
        markets=MARKETS,
        rings=PaperRings(1 << 10) if rings else None,
        clock=clock,
    )
    return paper, books


def load_book(books: BookSet, rng: np.random.Generator, ph: Any) -> None:
    for t in ("A", "B", "C"):
        mid = int(rng.integers(200, 800))
        yes = [(mid - 10 * k - 10, int(rng.integers(1, 40)) * 50) for k in range(6)]
        no = [(1000 - mid - 10 * k - 10, int(rng.integers(1, 40)) * 50) for k in range(6)]
        ph.snapshot(books, books.slots[t], yes, no)


def outcome(fn: Any, *args: Any, **kw: Any) -> tuple[str, Any]:
    try:
        r = fn(*args, **kw)
    except KalshiApiError as exc:
        return "error", (exc.status, exc.code, str(exc))
    return "ok", r


def rows(a: np.ndarray) -> list[tuple[Any, ...]]:
    """Records as plain values (padding bytes between fields may differ)."""
    return [tuple(x.tolist() if isinstance(x, np.ndarray) else x for x in r) for r in a.tolist()]


def state(p: PaperClient) -> dict[str, Any]:
    out = {
        "orders": rows(p.orders_array()),
        "fills": rows(p.fills_array()),
        "positions": rows(p.positions),
        "cash": p.cash,
        "rejected": p.n_rejected,
        "orders_json": p.get_orders(),
        "fills_json": p.get_fills(limit=1000),
        "balance": p.get_balance()["balance"],
    }
    if p.rings is not None:
        out["ring_orders"] = rows(p.rings.orders.drain())
        out["ring_fills"] = rows(p.rings.fills.drain())
    return out


def random_order(rng: np.random.Generator) -> tuple[str, int, int, int, int, int]:
    t = ("A", "B", "C")[int(rng.integers(0, 3))]
    side = SIDE_YES if rng.random() < 0.5 else SIDE_NO
    action = ORDER_BUY if rng.random() < 0.6 else ORDER_SELL
    price = int(rng.integers(-5, 1006)) if rng.random() < 0.1 else 10 * int(rng.integers(15, 85))
    count = int(rng.integers(1, 30)) * 25 if rng.random() > 0.03 else 0
    tif = TIF_FOK if rng.random() < 0.15 else TIF_IOC
    return t, side, action, price, count, tif


@pytest.mark.parametrize("rings", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_submit_taker_equals_submit(ph: Any, rings: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    clock = Clock()
    ref, books_r = build(rings, 3_000 * 10_000, clock)
    fast, books_f = build(rings, 3_000 * 10_000, clock)
    load_book(books_r, np.random.default_rng(seed), ph)
    load_book(books_f, np.random.default_rng(seed), ph)
    fast_used = 0
    errors: set[str] = set()
    for step in range(400):
        clock.t += 1_000_003
        kind = rng.random()
        if kind < 0.08:  # a resting order of ours (both clients, the Python path)
            t, side, action, price, count, _ = random_order(rng)
            a = outcome(ref.submit, t, side, action, price, count, tif=TIF_GTC)
            b = outcome(fast.submit, t, side, action, price, count, tif=TIF_GTC)
            assert a == b, step
        elif kind < 0.11:  # the book changes (liquidity memory, resting orders)
            for bk, pc in ((books_r, ref), (books_f, fast)):
                r2 = np.random.default_rng(step)
                load_book(bk, r2, ph)
                pc.on_book_update(np.arange(3))
        elif kind < 0.12:  # a market pauses or comes back; one book turns invalid
            t = ("A", "B", "C")[step % 3]
            st = MarketStatus.INACTIVE if step % 2 else MarketStatus.ACTIVE
            ref.set_market_status(t, st)
            fast.set_market_status(t, st)
        elif kind < 0.125:
            books_r.invalidate(books_r.slots["C"])
            books_f.invalidate(books_f.slots["C"])
        else:
            t, side, action, price, count, tif = random_order(rng)
            a = outcome(ref.submit, t, side, action, price, count, tif=tif)
            slot = books_f.slots[t]
            b = outcome(fast.submit_taker, slot, side, action, price, count, tif=tif)
            assert a[0] == b[0], (step, a, b)
            if a[0] == "error":
                assert a[1] == b[1], step
                errors.add(a[1][1])
            else:
                i, filled, fee = b[1]
                assert a[1] == fast._create_response(i), step
                assert (filled, fee) == (
                    int(fast._orders[i]["filled"]),
                    int(fast._orders[i]["fees"]),
                )
                fast_used += 1
    assert fast_used > 150, (fast_used, errors)
    assert {"invalid_price", "invalid_count", "market_inactive"} <= errors, errors
    assert state(ref) == state(fast)
    assert int(fast.fills_array().shape[0]) > 50  # it traded


def test_submit_taker_hands_over_to_python_when_python_must_act(ph: Any) -> None:
    clock = Clock()
    ref, books_r = build(True, 1_000 * 10_000, clock)
    fast, books_f = build(True, 1_000 * 10_000, clock)
    for bk in (books_r, books_f):
        load_book(bk, np.random.default_rng(5), ph)
    seen: list[list[dict[str, Any]]] = [[], []]
    ref.subscribe(seen[0].append)
    fast.subscribe(seen[1].append)
    # a given client order id equal to the default id of the next order
    ref.submit("A", SIDE_YES, ORDER_BUY, 100, 100, tif=TIF_GTC, client_order_id="paper-0-3")
    fast.submit("A", SIDE_YES, ORDER_BUY, 100, 100, tif=TIF_GTC, client_order_id="paper-0-3")
    assert fast.taker_prepare(books_f.slots["A"]) is None  # subscribers: Python
    for k in range(4):
        clock.t += 1_000_000
        a = outcome(ref.submit, "A", SIDE_YES, ORDER_BUY, 900, 100, tif=TIF_IOC)
        b = outcome(fast.submit_taker, books_f.slots["A"], SIDE_YES, ORDER_BUY, 900, 100)
        assert a[0] == b[0], k
        if a[0] == "error":
            assert a[1] == b[1] and a[1][0] == 409  # the default id is taken
    assert seen[0] == seen[1] and seen[0]
    assert state(ref) == state(fast)
