"""core.matching + core.account + core.liquidity: taker walks against an independent ledger.

Property tests (hypothesis): for any book and any stream of taker orders,

* position, cash and fees equal an independent recomputation from the fills (Kalshi's
  netting and fee rounding restated in Decimal dollars below, no engine code);
* cash never goes negative (the collateral rule) and ``cash - start == realized - basis``;
* fills respect the limit and the liquidity left after our own consumption, and over a
  stream of books a price never fills more than what stood there plus what arrived.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.account import liquidation_value, pnl_components, position_value, settle
from core.dtypes import (
    FILL_DTYPE,
    MARK_LIQUIDATION,
    MARK_MID,
    MEMBER_CENT,
    NO_PRICE,
    ORD_EXECUTED,
    ORDER_BUY,
    ORDER_DTYPE,
    ORDER_SELL,
    POSITION_DTYPE,
    SIDE_NO,
    SIDE_YES,
)
from core.fees import fee_schedule
from core.liquidity import consumed_at, liquidity_on_level, liquidity_refresh, new_liquidity
from core.matching import maker_fill, taker_match

K = 5
FEES = fee_schedule()
CENT = Decimal("0.01")


# ----------------------------------------------------------------- the independent ledger


class RefAccount:
    """Kalshi's rules in Decimal dollars: every order buys YES or buys NO (a sell of YES at p
    is a buy of NO at 1 - p); buying the side opposite to the held one redeems pairs at $1."""

    def __init__(self, cash: Decimal) -> None:
        self.cash = cash
        self.yes = Decimal(0)  # contracts, + YES / - NO
        self.fees = Decimal(0)  # net fees: trade + rounding - rebate

    def fill(self, side: int, action: int, count: int, price: int, acc: Decimal) -> Decimal:
        c = Decimal(count) / 100
        p = Decimal(price) / 1000
        buys_yes = (side == SIDE_YES) == (action == ORDER_BUY)
        q = p if action == ORDER_BUY else 1 - p  # price of the side bought
        held_opp = -self.yes if buys_yes else self.yes
        closed = min(c, held_opp) if held_opp > 0 else Decimal(0)
        revenue = closed - c * q
        fee = (Decimal("0.07") * c * p * (1 - p)).quantize(Decimal("0.0001"), ROUND_CEILING)
        bc = revenue - fee
        floored = bc.quantize(CENT, ROUND_FLOOR)
        acc += bc - floored
        rebate = Decimal(0)
        while acc > CENT:
            rebate += CENT
            acc -= CENT
        self.cash += floored + rebate
        self.fees += fee + (bc - floored) - rebate
        self.yes += c if buys_yes else -c
        return acc


# ----------------------------------------------------------------- strategies


@st.composite
def books(draw):
    """A non-crossed top-K book: YES bids < split <= 1000 - NO bids."""
    split = draw(st.integers(2, 998))
    ys = sorted(draw(st.lists(st.integers(1, split - 1), max_size=K, unique=True)), reverse=True)
    ns = sorted(draw(st.lists(st.integers(1, 999 - split), max_size=K, unique=True)), reverse=True)
    px = np.full((2, K), NO_PRICE, dtype=np.int16)
    qty = np.zeros((2, K), dtype=np.int64)
    for s, lv in ((SIDE_YES, ys), (SIDE_NO, ns)):
        for i, p in enumerate(lv):
            px[s, i] = p
            qty[s, i] = draw(st.integers(1, 5_000))
    return px, qty


orders_st = st.lists(
    st.tuples(
        st.sampled_from([SIDE_YES, SIDE_NO]),
        st.sampled_from([ORDER_BUY, ORDER_SELL]),
        st.integers(1, 8_000),  # count units
        st.integers(1, 999),  # limit
    ),
    min_size=1,
    max_size=10,
)


def new_order(side: int, action: int, count: int, limit: int) -> np.ndarray:
    o = np.zeros(1, dtype=ORDER_DTYPE)
    o["side"], o["action"], o["price"] = side, action, limit
    o["count"] = o["remaining"] = count
    return o


@settings(max_examples=250, deadline=None)
@given(book=books(), orders=orders_st, start=st.integers(0, 30_000))
def test_account_equals_independent_recomputation_and_cash_never_negative(book, orders, start):
    px, qty = book
    pos = np.zeros(1, dtype=POSITION_DTYPE)
    pos["cash"] = start
    liq = new_liquidity(1)
    ref = RefAccount(Decimal(start) / 10_000)
    fills = np.zeros(K, dtype=FILL_DTYPE)
    taken = {}
    for side, action, count, limit in orders:
        o = new_order(side, action, count, limit)
        n = taker_match(o, pos, px, qty, liq, FEES, 1, 0, fills)
        acc = Decimal(0)
        for f in fills[:n]:
            acc = ref.fill(side, action, int(f["count"]), int(f["price"]), acc)
            price = int(f["price"])
            # within the limit
            assert price <= limit if action == ORDER_BUY else price >= limit
            ladder = (1 - side) if action == ORDER_BUY else side
            lp = 1000 - price if action == ORDER_BUY else price
            taken[(ladder, lp)] = taken.get((ladder, lp), 0) + int(f["count"])
        assert int(o[0]["filled"]) == int(fills[:n]["count"].sum())
        assert int(pos[0]["cash"]) >= 0
        assert Decimal(int(pos[0]["cash"])) / 10_000 == ref.cash
        assert Decimal(int(pos[0]["position"])) / 100 == ref.yes
        p = pos[0]
        assert p["cash"] - start == p["realized_pnl"] - p["cost_basis"]
    # never more than the level showed, across all orders on this book
    for (ladder, lp), n_taken in taken.items():
        i = int(np.flatnonzero(px[ladder] == lp)[0])
        assert n_taken <= int(qty[ladder, i])
        assert consumed_at(liq, ladder, lp) == n_taken
    # fees: the engine's money fees == the ledger's net fees + the sub-money part the
    # buyer's floor took (revenue floored to money); both are exact here
    fills_total = Decimal(int(pos[0]["fees_paid"])) / 10_000
    assert abs(fills_total - ref.fees) < Decimal("0.0001") * len(orders) * K


@settings(max_examples=150, deadline=None)
@given(book=books(), orders=orders_st)
def test_whole_contract_amounts_make_fees_exact(book, orders):
    """With whole-contract counts and cent prices revenue is whole money: fees match exactly."""
    px, qty = book
    px = np.where(px == NO_PRICE, NO_PRICE, np.maximum(px // 10 * 10, 10)).astype(np.int16)
    qty = (qty // 100 + 1) * 100 * (px != NO_PRICE)
    for s in range(2):  # keep prices unique per side after snapping to cents
        seen = set()
        for i in range(K):
            if px[s, i] in seen:
                px[s, i:] = NO_PRICE
                qty[s, i:] = 0
                break
            seen.add(int(px[s, i]))
    pos = np.zeros(1, dtype=POSITION_DTYPE)
    pos["cash"] = 10**9
    liq = new_liquidity(1)
    ref = RefAccount(Decimal(10**9) / 10_000)
    fills = np.zeros(K, dtype=FILL_DTYPE)
    for side, action, count, limit in orders:
        o = new_order(side, action, (count // 100 + 1) * 100, limit)
        n = taker_match(o, pos, px, qty, liq, FEES, 100, 0, fills)
        acc = Decimal(0)
        for f in fills[:n]:
            assert int(f["count"]) % 100 == 0
            acc = ref.fill(side, action, int(f["count"]), int(f["price"]), acc)
    assert Decimal(int(pos[0]["fees_paid"])) / 10_000 == ref.fees
    assert Decimal(int(pos[0]["cash"])) / 10_000 == ref.cash


def test_collateral_cuts_the_fill_to_what_cash_covers() -> None:
    """$1 cannot buy 10,000 contracts: it buys what $1 covers with fees, and cash stays >= 0."""
    px = np.full((2, K), NO_PRICE, dtype=np.int16)
    qty = np.zeros((2, K), dtype=np.int64)
    px[SIDE_NO, 0], qty[SIDE_NO, 0] = 550, 1_000_000  # YES ask 45c x 10,000
    pos = np.zeros(1, dtype=POSITION_DTYPE)
    pos["cash"] = 10_000  # $1
    fills = np.zeros(K, dtype=FILL_DTYPE)
    liq = new_liquidity(1)
    for _ in range(5):
        o = new_order(SIDE_YES, ORDER_BUY, 1_000_000, 999)
        taker_match(o, pos, px, qty, liq, FEES, 1, 0, fills)
        assert int(pos[0]["cash"]) >= 0
    assert int(pos[0]["position"]) == 213  # 2.13 contracts: $0.9585 + fees -> $1.00
    assert int(pos[0]["cash"]) == 0


def test_consumption_persists_until_the_level_is_gone() -> None:
    px = np.full((2, K), NO_PRICE, dtype=np.int16)
    qty = np.zeros((2, K), dtype=np.int64)
    px[SIDE_NO, :2], qty[SIDE_NO, :2] = (550, 540), (300, 1000)
    pos = np.zeros(1, dtype=POSITION_DTYPE)
    pos["cash"] = 10**9
    liq = new_liquidity(1)
    fills = np.zeros(K, dtype=FILL_DTYPE)
    o = new_order(SIDE_YES, ORDER_BUY, 300, 450)  # YES @ 45c = NO bid 55c
    assert taker_match(o, pos, px, qty, liq, FEES, 1, 0, fills) == 1
    assert int(o[0]["status"]) == ORD_EXECUTED
    # the same recorded level again: nothing left for us
    o = new_order(SIDE_YES, ORDER_BUY, 300, 450)
    assert taker_match(o, pos, px, qty, liq, FEES, 1, 0, fills) == 0
    # it shrinks by 200 (others trade or cancel): that uses up 200 of our 300, still nothing
    # left; it grows by 400: the 400 that arrived
    qty[SIDE_NO, 0] = 100
    liquidity_refresh(px, qty, liq)
    assert (
        taker_match(new_order(SIDE_YES, ORDER_BUY, 300, 450), pos, px, qty, liq, FEES, 1, 0, fills)
        == 0
    )
    qty[SIDE_NO, 0] = 500
    liquidity_refresh(px, qty, liq)
    o = new_order(SIDE_YES, ORDER_BUY, 1000, 450)
    taker_match(o, pos, px, qty, liq, FEES, 1, 0, fills)
    assert int(o[0]["filled"]) == 400
    # the level disappears from the view: consumption forgotten, a new level is fresh
    px[SIDE_NO, 0], qty[SIDE_NO, 0] = 540, 1000
    px[SIDE_NO, 1], qty[SIDE_NO, 1] = NO_PRICE, 0
    liquidity_refresh(px, qty, liq)
    assert consumed_at(liq, SIDE_NO, 550) == 0
    # a live level change to 0 forgets too
    liq2 = new_liquidity(1)
    o = new_order(SIDE_YES, ORDER_BUY, 100, 460)
    taker_match(o, pos, px, qty, liq2, FEES, 1, 0, fills)
    assert consumed_at(liq2, SIDE_NO, 540) == 100
    liquidity_on_level(liq2, SIDE_NO, 540, 1200)  # 200 arrived
    assert consumed_at(liq2, SIDE_NO, 540) == 100
    liquidity_on_level(liq2, SIDE_NO, 540, 1160)  # 40 traded / cancelled
    assert consumed_at(liq2, SIDE_NO, 540) == 60
    liquidity_on_level(liq2, SIDE_NO, 540, 0)
    assert consumed_at(liq2, SIDE_NO, 540) == 0


@st.composite
def book_streams(draw):
    """Rows of one ladder (NO bids, at most K levels so the view covers the whole ladder)."""
    rows = []
    for _ in range(draw(st.integers(2, 25))):
        prices = sorted(
            draw(st.lists(st.integers(500, 520), max_size=K, unique=True)), reverse=True
        )
        rows.append({p: draw(st.integers(1, 400)) for p in prices})
    return rows


@settings(max_examples=150, deadline=None)
@given(book_streams())
def test_unlimited_buying_never_fills_more_than_arrived(rows):
    """Buy everything every row: fills at a price <= first quantity + later increases."""
    pos = np.zeros(1, dtype=POSITION_DTYPE)
    pos["cash"] = 10**12
    liq = new_liquidity(1)
    fills = np.zeros(K, dtype=FILL_DTYPE)
    filled: dict[int, int] = {}
    arrived: dict[int, int] = {}
    prev: dict[int, int] = {}
    for row in rows:
        px = np.full((2, K), NO_PRICE, dtype=np.int16)
        qty = np.zeros((2, K), dtype=np.int64)
        for i, (p, q) in enumerate(sorted(row.items(), reverse=True)):
            px[SIDE_NO, i], qty[SIDE_NO, i] = p, q
        for p, q in row.items():
            arrived[p] = arrived.get(p, 0) + max(q - prev.get(p, 0), 0)
        prev = dict(row)
        liquidity_refresh(px, qty, liq)
        o = new_order(SIDE_YES, ORDER_BUY, 10**9, 999)
        n = taker_match(o, pos, px, qty, liq, FEES, 1, 0, fills)
        for f in fills[:n]:
            p = 1000 - int(f["price"])
            filled[p] = filled.get(p, 0) + int(f["count"])
    for p, n_filled in filled.items():
        assert n_filled <= arrived[p], (p, n_filled, arrived[p])


def test_liquidation_value_walks_the_held_sides_bids() -> None:
    px = np.full((2, K), NO_PRICE, dtype=np.int16)
    qty = np.zeros((2, K), dtype=np.int64)
    liq = new_liquidity(1)
    # nothing bidding: worth nothing (never a made-up $0.50)
    assert liquidation_value(300, px, qty, liq, FEES) == 0
    assert position_value(300, px, qty, liq, FEES, MARK_MID) == 0
    # only NO bids left: a YES position is still worth nothing (not the YES ask)
    px[SIDE_NO, 0], qty[SIDE_NO, 0] = 600, 1000
    assert liquidation_value(300, px, qty, liq, FEES) == 0
    # YES bids 40c x 1 and 39c x 10: 3 YES sell 1 @ 40c ($0.40 - $0.0168 -> $0.38)
    # and 2 @ 39c ($0.78 - $0.0334 = $0.7466 -> $0.74)
    px[SIDE_YES, :2], qty[SIDE_YES, :2] = (400, 390), (100, 1000)
    assert liquidation_value(300, px, qty, liq, FEES) == 3800 + 7400
    # the mid option: two-sided mid (400 + 1000 - 600) / 2 = 400 -> 3 x $0.40
    assert position_value(300, px, qty, liq, FEES, MARK_MID) == 12_000
    assert position_value(300, px, qty, liq, FEES, MARK_LIQUIDATION) == 11_200
    # NO held sells into NO bids: 2 NO @ 60c: $1.20 - $0.0336 -> $1.16
    assert liquidation_value(-200, px, qty, liq, FEES) == 11_600


def test_pnl_components_add_up_and_settlement() -> None:
    px = np.full((2, K), NO_PRICE, dtype=np.int16)
    qty = np.zeros((2, K), dtype=np.int64)
    px[SIDE_NO, 0], qty[SIDE_NO, 0] = 550, 10_000
    px[SIDE_YES, 0], qty[SIDE_YES, 0] = 400, 10_000
    pos = np.zeros(1, dtype=POSITION_DTYPE)
    pos["cash"] = 1_000_000
    liq = new_liquidity(1)
    fills = np.zeros(K, dtype=FILL_DTYPE)
    taker_match(new_order(SIDE_YES, ORDER_BUY, 500, 450), pos, px, qty, liq, FEES, 1, 0, fills)
    taker_match(new_order(SIDE_YES, ORDER_SELL, 200, 400), pos, px, qty, liq, FEES, 1, 0, fills)
    value = position_value(int(pos[0]["position"]), px, qty, liq, FEES, MARK_LIQUIDATION)
    trading, settlement, mark, fees = pnl_components(pos, value)
    pnl = int(pos[0]["cash"]) + value - 1_000_000
    assert trading + settlement + mark - fees == pnl
    assert trading == 200 * (400 - 450) // 10 and settlement == 0
    settle(pos, True)
    trading, settlement, mark, fees = pnl_components(pos, 0)
    assert settlement == 300 * 100 - 300 * 450 // 10
    assert trading + settlement + mark - fees == int(pos[0]["cash"]) - 1_000_000


def test_maker_fill_charges_maker_fee_and_shares_the_accumulator() -> None:
    pos = np.zeros(1, dtype=POSITION_DTYPE)
    pos["cash"] = 100_000
    o = new_order(SIDE_YES, ORDER_BUY, 300, 55)  # rests at $0.055
    o["status"] = 0  # ORD_RESTING
    fill = np.zeros(1, dtype=FILL_DTYPE)
    assert maker_fill(o, pos, 100, FEES, 0, fill[0]) == 100
    # maker fee 0.0175 * 0.055 * 0.945 = $0.00090956 -> $0.0010; -$0.056 -> -$0.06
    assert int(fill[0]["trade_fee"]) == 10 and int(fill[0]["cash"]) == -600
    assert int(fill[0]["is_taker"]) == 0 and int(o[0]["rounding_acc"]) == 400
    no_maker = fee_schedule(maker_fees=False)
    assert maker_fill(o, pos, 100, no_maker, 0, fill[0]) == 100
    assert int(fill[0]["trade_fee"]) == 0
    assert int(pos[0]["cash"]) >= 0 and int(o[0]["filled"]) == 200
    assert int(FEES[0]["precision"]) == MEMBER_CENT
