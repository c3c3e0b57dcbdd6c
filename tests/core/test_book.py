"""core.book against a plain-Python reference book, plus examples a trader would recognise."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numba import njit
from sortedcontainers import SortedDict

from core.book import (
    BestPrices,
    BookSet,
    book_apply_deltas,
    book_apply_snapshot,
    book_best,
    book_best_many,
    book_check,
    book_depth,
    book_top_k,
)
from core.dtypes import (
    DELTA_DTYPE,
    N_SIDES,
    NO_PRICE,
    NO_SEQ,
    NO_TS,
    PRICE_MAX,
    PRICE_MIN,
    SIDE_NO,
    SIDE_NONE,
    SIDE_YES,
    SNAPSHOT_LEVEL_DTYPE,
    ST_BAD_BEST,
    ST_BAD_MARKET,
    ST_BAD_PRICE,
    ST_BAD_SIDE,
    ST_CROSSED,
    ST_INVALID_BOOK,
    ST_NEGATIVE,
    ST_OK,
)

# --------------------------------------------------------------------------- helpers


def snapshot_rows(m: int, rows: list[tuple[int, int, int]], seq: int = 1, sid: int = 1):
    """SNAPSHOT_LEVEL_DTYPE rows (side, price, qty) for slot m; [] -> the empty marker."""
    if not rows:
        rows = [(SIDE_NONE, NO_PRICE, 0)]
    lv = np.zeros(len(rows), dtype=SNAPSHOT_LEVEL_DTYPE)
    lv["market"] = m
    lv["sid"] = sid
    lv["seq"] = seq
    lv["exch_ts"] = 1_700_000_000_000 + seq
    lv["recv_ts"] = 1_700_000_000_000_000_000 + seq
    lv["rec_id"] = seq
    for i, (side, price, qty) in enumerate(rows):
        lv[i]["side"] = side
        lv[i]["price"] = price
        lv[i]["qty"] = qty
    return lv


def delta_recs(rows: list[tuple[int, int, int, int]], seq0: int = 100):
    """DELTA_DTYPE records (market, side, price, delta), seq counting up from seq0."""
    recs = np.zeros(len(rows), dtype=DELTA_DTYPE)
    for i, (m, side, price, delta) in enumerate(rows):
        recs[i]["market"] = m
        recs[i]["side"] = side
        recs[i]["price"] = price
        recs[i]["delta"] = delta
        recs[i]["seq"] = seq0 + i
        recs[i]["exch_ts"] = 1_700_000_000_000 + seq0 + i
        recs[i]["recv_ts"] = 1_700_000_000_000_000_000 + seq0 + i
        recs[i]["rec_id"] = seq0 + i
    recs["status"] = -99  # the kernel must overwrite every status
    return recs


@dataclass
class RefBook:
    """The reference: one market, both bid ladders as SortedDict price -> qty (> 0)."""

    sides: tuple[SortedDict, SortedDict] = field(
        default_factory=lambda: (SortedDict(), SortedDict())
    )
    valid: bool = False
    status: int = ST_OK
    sid: int = -1
    last_seq: int = NO_SEQ
    last_exch_ts: int = NO_TS
    last_recv_ts: int = NO_TS
    n_updates: int = 0
    n_snapshots: int = 0

    def best(self, side: int) -> int:
        ladder = self.sides[side]
        return int(ladder.peekitem(-1)[0]) if ladder else NO_PRICE

    def crossed(self) -> bool:
        by, bn = self.best(SIDE_YES), self.best(SIDE_NO)
        return by >= 0 and bn >= 0 and by + bn >= PRICE_MAX

    def top(self, side: int, k: int) -> list[tuple[int, int]]:
        return list(reversed(self.sides[side].items()))[:k]


class RefBookSet:
    """Plain-Python model of every rule core.book documents."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.books = [RefBook() for _ in range(capacity)]

    def snapshot(self, m: int, rows: np.ndarray) -> tuple[int, list[int]]:
        b = self.books[m]
        b.sides[0].clear()
        b.sides[1].clear()
        overall = ST_OK
        row_st = []
        for row in rows:
            side, price, qty = int(row["side"]), int(row["price"]), int(row["qty"])
            if side == SIDE_NONE and qty == 0:
                s = ST_OK
            elif side not in (SIDE_YES, SIDE_NO):
                s = ST_BAD_SIDE
            elif not PRICE_MIN <= price <= PRICE_MAX:
                s = ST_BAD_PRICE
            elif qty <= 0:
                s = ST_NEGATIVE
            else:
                s = ST_OK
                b.sides[side][price] = qty  # duplicates: last wins
            row_st.append(s)
            if s != ST_OK and overall == ST_OK:
                overall = s
        if overall == ST_OK and b.crossed():
            overall = ST_CROSSED
        if overall != ST_OK:
            row_st = [s if s != ST_OK else overall for s in row_st]
            b.status = overall
        b.valid = overall == ST_OK
        b.sid = int(rows[0]["sid"])
        b.last_seq = int(rows[0]["seq"])
        b.last_exch_ts = int(rows[0]["exch_ts"])
        b.last_recv_ts = int(rows[0]["recv_ts"])
        b.n_updates += 1
        b.n_snapshots += 1
        return overall, row_st

    def delta(self, rec) -> int:
        m, side, price, delta = (int(rec[f]) for f in ("market", "side", "price", "delta"))
        if not 0 <= m < self.capacity:
            return ST_BAD_MARKET
        b = self.books[m]
        if not b.valid:
            return ST_INVALID_BOOK
        if side not in (SIDE_YES, SIDE_NO):
            b.status = ST_BAD_SIDE
            return ST_BAD_SIDE
        if not PRICE_MIN <= price <= PRICE_MAX:
            b.status = ST_BAD_PRICE
            return ST_BAD_PRICE
        new = b.sides[side].get(price, 0) + delta
        if new < 0:
            b.valid = False
            b.status = ST_NEGATIVE
            return ST_NEGATIVE
        if new == 0:
            b.sides[side].pop(price, None)
        else:
            b.sides[side][price] = new
        b.last_seq = int(rec["seq"])
        b.last_exch_ts = int(rec["exch_ts"])
        b.last_recv_ts = int(rec["recv_ts"])
        b.n_updates += 1
        if b.crossed():
            b.valid = False
            b.status = ST_CROSSED
            return ST_CROSSED
        return ST_OK

    def invalidate_sid(self, sid: int) -> int:
        n = 0
        for b in self.books:
            if b.valid and b.sid == sid:
                b.valid = False
                n += 1
        return n


def assert_same(books: BookSet, ref: RefBookSet) -> None:
    """Every observable of every slot agrees with the reference."""
    assert books.capacity == ref.capacity
    for m, rb in enumerate(ref.books):
        meta = books.meta[m]
        assert bool(meta["valid"]) == rb.valid, m
        assert int(meta["status"]) == rb.status, m
        assert int(meta["sid"]) == rb.sid
        assert int(meta["last_seq"]) == rb.last_seq
        assert int(meta["last_exch_ts"]) == rb.last_exch_ts
        assert int(meta["last_recv_ts"]) == rb.last_recv_ts
        assert int(meta["n_updates"]) == rb.n_updates
        assert int(meta["n_snapshots"]) == rb.n_snapshots
        for side in (SIDE_YES, SIDE_NO):
            row = books.qty[m, side]
            px = np.flatnonzero(row)
            assert {int(p): int(row[p]) for p in px} == dict(rb.sides[side]), (m, side)
            assert int(books.best[m, side]) == rb.best(side), (m, side)
            for n in (1, 2, 3, 50):
                want = sum(q for _, q in rb.top(side, n))
                assert book_depth(books.qty, books.best, m, side, n) == want
        by, bn = rb.best(SIDE_YES), rb.best(SIDE_NO)
        assert books.best(m) == BestPrices(
            by,
            PRICE_MAX - bn if bn >= 0 else NO_PRICE,
            bn,
            PRICE_MAX - by if by >= 0 else NO_PRICE,
        )
        assert book_best(books.best, m) == tuple(books.best(m))  # kernel == facade
        k = 3
        out_px = np.full((N_SIDES, k + 1), 7, dtype=np.int16)  # wider than k: padded too
        out_qty = np.full((N_SIDES, k + 1), 7, dtype=np.int64)
        book_top_k(books.qty, books.best, m, k, out_px, out_qty)
        for side in (SIDE_YES, SIDE_NO):
            top = rb.top(side, k)
            pad = k + 1 - len(top)
            assert out_px[side].tolist() == [p for p, _ in top] + [NO_PRICE] * pad
            assert out_qty[side].tolist() == [q for _, q in top] + [0] * pad
        # The ladders never hold a negative level or a stale best, valid or not.
        assert book_check(books.qty, books.best, m) == (ST_CROSSED if rb.crossed() else ST_OK)


# --------------------------------------------------------------------------- strategies

# Mostly low prices so books cross only sometimes (YES 400 + NO 600 = PRICE_MAX locks);
# grid edges included.
GOOD_PRICES = [0, 1, 2, 100, 250, 399, 400, 401, 450, 499] * 4 + [500, 599, 600, 601, 999, 1000]
BAD_PRICES = [-1, 1001, -32768, 32767]
BAD_SIDES = [SIDE_NONE, 2, 127, -128]
N_ALLOC = 3  # tickers allocated; the BookSet starts at capacity 1 and doubles to 4
UNALLOCATED = 3  # exists in the arrays, never snapshotted: always invalid
OUT_OF_RANGE = [-1, 4, 1_000_000, np.iinfo(np.int32).min]

good_price = st.sampled_from(GOOD_PRICES)
good_side = st.sampled_from([SIDE_YES, SIDE_NO])
good_qty = st.sampled_from([1, 100, 250, 5_000])
clean_rows = st.lists(st.tuples(good_side, good_price, good_qty), max_size=6)
# a dirty snapshot: any mix of good and bad rows
dirty_row = st.tuples(
    st.sampled_from([SIDE_YES, SIDE_NO, *BAD_SIDES]),
    st.sampled_from(GOOD_PRICES[:10] + BAD_PRICES),
    st.sampled_from([1, 100, 0, -5]),
)
dirty_rows = st.lists(dirty_row, min_size=1, max_size=6)
DELTA_KINDS = ["add"] * 10 + ["cancel"] * 6 + ["partial"] * 5 + ["over", "blind", "bad"]


def draw_delta(data, ref: RefBookSet) -> tuple[int, int, int, int]:
    """One (market, side, price, delta), aimed at the reference's current levels."""
    kind = data.draw(st.sampled_from(DELTA_KINDS))
    live = [m for m in range(N_ALLOC) if ref.books[m].valid]
    # mostly valid books: deltas on invalid ones are a single, boring status
    if live and data.draw(st.integers(0, 9)) > 0:
        m = data.draw(st.sampled_from(live))
    else:
        m = data.draw(st.integers(0, N_ALLOC - 1))
    side = data.draw(good_side)
    levels = list(ref.books[m].sides[side].items())
    if kind in ("cancel", "partial", "over") and levels:
        price, qty = data.draw(st.sampled_from(levels))
        if kind == "cancel":
            return m, side, price, -qty
        if kind == "partial":
            return m, side, price, -data.draw(st.integers(0, qty))
        return m, side, price, -qty - 1  # desync: more than rests there
    if kind == "blind":  # a decrement at any price, often an empty level
        return m, side, data.draw(good_price), -data.draw(st.integers(1, 300))
    if kind == "bad":
        which = data.draw(st.sampled_from(["market", "unallocated", "side", "price"]))
        delta = data.draw(st.integers(-5, 5))
        if which == "market":
            return data.draw(st.sampled_from(OUT_OF_RANGE)), side, 1, delta
        if which == "unallocated":
            return UNALLOCATED, side, 1, delta
        if which == "side":
            return m, data.draw(st.sampled_from(BAD_SIDES)), 1, delta
        return m, side, data.draw(st.sampled_from(BAD_PRICES)), delta
    return m, side, data.draw(good_price), data.draw(good_qty)


@given(st.data())
def test_matches_reference_on_random_streams(data):
    books = BookSet(capacity=1)
    slots = [books.slot(f"KX-{i}") for i in range(N_ALLOC)]
    assert slots == [0, 1, 2]
    ref = RefBookSet(books.capacity)
    seq = 1
    # start like a subscription: one snapshot per market, then a random stream
    first = [("snap", m) for m in range(N_ALLOC)]
    n_steps = data.draw(st.integers(1, 25))
    for step in range(N_ALLOC + n_steps):
        if step < N_ALLOC:
            op, m = first[step]
        else:
            op = data.draw(st.sampled_from(["snap"] * 2 + ["dirty"] + ["deltas"] * 7 + ["gap"]))
            m = data.draw(st.integers(0, N_ALLOC - 1))
        if op in ("snap", "dirty"):
            rows = data.draw(clean_rows if op == "snap" else dirty_rows)
            lv = snapshot_rows(m, rows, seq=seq, sid=data.draw(st.sampled_from([1, 2])))
            seq += 1
            want_snap, want_rows = ref.snapshot(m, lv)
            assert books.apply_snapshot(m, lv) == want_snap
            assert lv["status"].tolist() == want_rows
        elif op == "deltas":
            rows = []
            want: list[int] = []
            for _ in range(data.draw(st.integers(1, 12))):
                row = draw_delta(data, ref)
                rows.append(row)
                want.append(ref.delta(delta_recs([row], seq0=seq + len(rows) - 1)[0]))
            recs = delta_recs(rows, seq0=seq)
            seq += len(recs)
            n_bad = books.apply_deltas(recs)
            assert recs["status"].tolist() == want
            assert n_bad == sum(s != ST_OK for s in want)
        else:
            sid = data.draw(st.sampled_from([1, 2, 3]))
            assert books.invalidate_sid(sid) == ref.invalidate_sid(sid)
        assert_same(books, ref)
    assert not books.qty[UNALLOCATED].any()
    assert (books.best[UNALLOCATED] == NO_PRICE).all()


@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 300), st.integers(1, 10_000)), max_size=40)
)
def test_growth_keeps_contents(levels):
    """Slots allocated after a doubling see the same books as before it."""
    books = BookSet(capacity=1)
    a = books.slot("A")
    rows = [(s, p, q) for s, p, q in levels]  # p <= 300 on both sides: never crossed
    assert books.apply_snapshot(a, snapshot_rows(a, rows)) == ST_OK
    before_qty = books.qty[a].copy()
    before_best = books.best[a].copy()
    before_meta = books.meta[a].copy()
    for i in range(9):
        books.slot(f"B{i}")
    assert books.capacity == 16
    assert books.n_markets == 10
    assert (books.qty[a] == before_qty).all()
    assert (books.best[a] == before_best).all()
    assert books.meta[a] == before_meta
    assert books.slot("A") == a
    assert books.ticker_of(a) == "A"
    # new slots start empty and invalid
    for i in range(1, 10):
        assert not books.valid(i)
        assert books.best(i) == BestPrices(NO_PRICE, NO_PRICE, NO_PRICE, NO_PRICE)
        assert int(books.meta[i]["last_seq"]) == NO_SEQ
        assert int(books.meta[i]["sid"]) == -1


# --------------------------------------------------------------------------- examples


def make_book(rows, ticker="KXFED-26DEC-T3.00"):
    books = BookSet(capacity=4)
    m = books.slot(ticker)
    assert books.apply_snapshot(m, snapshot_rows(m, rows)) == ST_OK
    return books, m


def test_yes_ask_is_one_minus_best_no_bid():
    # YES bids at $0.40 and $0.42, NO bid at $0.55: the YES ask is $1 - $0.55 = $0.45.
    books, m = make_book([(SIDE_YES, 400, 30_000), (SIDE_YES, 420, 10_000), (SIDE_NO, 550, 2_000)])
    assert books.best(m) == BestPrices(yes_bid=420, yes_ask=450, no_bid=550, no_ask=580)
    assert books.best_of(m) == books.best(m)
    assert book_best(books.best, m) == (420, 450, 550, 580)
    assert books.valid(m)
    assert books.levels(m, SIDE_YES) == [(420, 10_000), (400, 30_000)]
    assert books.levels(m, SIDE_NO) == [(550, 2_000)]


def test_removing_the_best_level_moves_best_down():
    books, m = make_book([(SIDE_YES, 300, 500), (SIDE_YES, 420, 1_000), (SIDE_NO, 550, 200)])
    recs = delta_recs([(m, SIDE_YES, 420, -1_000)])
    assert books.apply_deltas(recs) == 0
    assert recs["status"][0] == ST_OK
    assert books.best(m).yes_bid == 300
    assert books.best(m).no_ask == PRICE_MAX - 300
    # taking the last YES level leaves the side empty: no bid, no NO ask
    books.apply_deltas(delta_recs([(m, SIDE_YES, 300, -500)]))
    assert books.best(m) == BestPrices(NO_PRICE, 450, 550, NO_PRICE)
    assert books.levels(m, SIDE_YES) == []
    assert books.valid(m)


def test_new_higher_bid_raises_best_and_partial_cancel_keeps_it():
    books, m = make_book([(SIDE_YES, 420, 1_000)])
    books.apply_deltas(delta_recs([(m, SIDE_YES, 430, 100), (m, SIDE_YES, 430, -50)]))
    assert books.best(m).yes_bid == 430
    assert books.levels(m, SIDE_YES) == [(430, 50), (420, 1_000)]
    assert books.meta[m]["n_updates"] == 3  # snapshot + 2 deltas
    assert books.meta[m]["last_seq"] == 101


def test_negative_level_invalidates_until_next_snapshot():
    books, m = make_book([(SIDE_YES, 420, 1_000), (SIDE_NO, 550, 200)])
    recs = delta_recs([(m, SIDE_NO, 550, -201), (m, SIDE_YES, 420, 5)])
    assert books.apply_deltas(recs) == 2
    assert recs["status"].tolist() == [ST_NEGATIVE, ST_INVALID_BOOK]
    assert not books.valid(m)
    assert books.status(m) == ST_NEGATIVE  # the cause, not the rejection that followed
    assert books.levels(m, SIDE_NO) == [(550, 200)]  # neither delta was applied
    assert books.apply_snapshot(m, snapshot_rows(m, [(SIDE_NO, 560, 10)], seq=9)) == ST_OK
    assert books.valid(m)
    assert books.best(m) == BestPrices(NO_PRICE, 440, 560, NO_PRICE)


def test_locked_book_from_a_delta_is_crossed():
    books, m = make_book([(SIDE_YES, 420, 1_000), (SIDE_NO, 550, 200)])
    # a YES bid at 0.45 meets the YES ask 0.45 (NO bid 0.55): locked counts as crossed
    recs = delta_recs([(m, SIDE_YES, 450, 10)])
    assert books.apply_deltas(recs) == 1
    assert recs["status"][0] == ST_CROSSED
    assert not books.valid(m)
    assert books.best(m).yes_bid == 450  # applied, then the book was condemned
    assert books.check(m) == ST_CROSSED


def test_crossed_snapshot_is_rejected_and_every_row_says_so():
    books = BookSet()
    m = books.slot("X")
    lv = snapshot_rows(m, [(SIDE_YES, 600, 1), (SIDE_NO, 500, 1)])
    assert books.apply_snapshot(m, lv) == ST_CROSSED
    assert lv["status"].tolist() == [ST_CROSSED, ST_CROSSED]
    assert not books.valid(m)


def test_bad_snapshot_row_keeps_its_own_status():
    books = BookSet()
    m = books.slot("X")
    lv = snapshot_rows(m, [(SIDE_YES, 400, 10), (SIDE_NO, 1001, 5), (SIDE_NO, 300, 0)])
    assert books.apply_snapshot(m, lv) == ST_BAD_PRICE
    assert lv["status"].tolist() == [ST_BAD_PRICE, ST_BAD_PRICE, ST_NEGATIVE]
    assert not books.valid(m)
    assert books.levels(m, SIDE_YES) == [(400, 10)]  # good rows kept for inspection
    assert books.check(m) == ST_OK


def test_empty_snapshot_marker_gives_a_valid_empty_book():
    books, m = make_book([(SIDE_YES, 420, 1_000)])
    assert books.apply_snapshot(m, snapshot_rows(m, [], seq=7)) == ST_OK
    assert books.valid(m)
    assert books.best(m) == BestPrices(NO_PRICE, NO_PRICE, NO_PRICE, NO_PRICE)
    px, qty = books.top_k(m, 2)
    assert px.tolist() == [[NO_PRICE, NO_PRICE], [NO_PRICE, NO_PRICE]]
    assert qty.tolist() == [[0, 0], [0, 0]]
    assert books.meta[m]["n_snapshots"] == 2
    assert books.meta[m]["last_seq"] == 7


def test_duplicate_snapshot_rows_last_wins():
    books, m = make_book([(SIDE_YES, 420, 1_000), (SIDE_YES, 420, 300)])
    assert books.levels(m, SIDE_YES) == [(420, 300)]


def test_deltas_to_unknown_markets_report_and_do_not_crash():
    books, m = make_book([(SIDE_YES, 420, 1_000)])
    big = np.iinfo(np.int32).max
    recs = delta_recs(
        [(-1, SIDE_YES, 1, 1), (big, SIDE_YES, 1, 1), (3, SIDE_YES, 1, 1), (m, 2, 1, 1)]
    )
    assert books.apply_deltas(recs) == 4
    assert recs["status"].tolist() == [ST_BAD_MARKET, ST_BAD_MARKET, ST_INVALID_BOOK, ST_BAD_SIDE]
    assert books.valid(m)  # a malformed record alone does not condemn the book
    assert books.status(m) == ST_BAD_SIDE


def test_top_k_and_depth_walk_down_from_best():
    rows = [(SIDE_YES, p, 100 * (i + 1)) for i, p in enumerate([100, 250, 251, 400])]
    books, m = make_book([*rows, (SIDE_NO, 10, 7)])
    px, qty = books.top_k(m, 3)
    assert px.dtype == np.int16
    assert qty.dtype == np.int64
    assert px.tolist() == [[400, 251, 250], [10, NO_PRICE, NO_PRICE]]
    assert qty.tolist() == [[400, 300, 200], [7, 0, 0]]
    assert books.depth(m, SIDE_YES, 2) == 700
    assert books.depth(m, SIDE_YES, 10) == 1_000
    assert books.depth(m, SIDE_NO, 10) == 7


def test_invalidate_sid_marks_only_valid_books_of_that_sid():
    books = BookSet()
    a, b, c = books.slot("A"), books.slot("B"), books.slot("C")
    books.apply_snapshot(a, snapshot_rows(a, [], sid=5))
    books.apply_snapshot(b, snapshot_rows(b, [], sid=5))
    books.apply_snapshot(c, snapshot_rows(c, [], sid=6))
    books.invalidate(b)
    assert books.invalidate_sid(5) == 1  # b was already invalid
    assert [books.valid(s) for s in (a, b, c)] == [False, False, True]
    assert books.invalidate_sid(5) == 0


def test_clear_empties_and_invalidates():
    books, m = make_book([(SIDE_YES, 420, 1_000), (SIDE_NO, 100, 5)])
    books.clear(m)
    assert not books.valid(m)
    assert books.levels(m, SIDE_YES) == []
    assert books.best(m) == BestPrices(NO_PRICE, NO_PRICE, NO_PRICE, NO_PRICE)
    assert books.check(m) == ST_OK


def test_book_check_finds_corruption():
    books, m = make_book([(SIDE_YES, 420, 1_000)])
    books.best[m, SIDE_YES] = 419
    assert books.check(m) == ST_BAD_BEST
    books.best[m, SIDE_YES] = 420
    books.qty[m, SIDE_NO, 3] = -1
    assert books.check(m) == ST_NEGATIVE
    assert book_check(books.qty, books.best, 99) == ST_BAD_MARKET


def test_best_many_matches_single_queries():
    books = BookSet()
    for i in range(5):
        s = books.slot(f"M{i}")
        books.apply_snapshot(s, snapshot_rows(s, [(SIDE_YES, 100 + i, 1), (SIDE_NO, 200 * i, 1)]))
    slots = np.array([4, 0, 2, -1, 77], dtype=np.int64)
    out = np.zeros((5, 4), dtype=np.int64)
    book_best_many(books.best, slots, out)
    for row, s in zip(out, slots, strict=True):
        assert tuple(row.tolist()) == book_best(books.best, int(s))
    assert out[3].tolist() == [NO_PRICE] * 4


@njit
def _replay(qty, best, meta, levels, recs, k, out_px, out_qty):
    """A caller in njit code, as the history replayer uses the kernels."""
    book_apply_snapshot(qty, best, meta, 0, levels)
    n_bad = 0
    for i in range(recs.shape[0]):
        n_bad += book_apply_deltas(qty, best, meta, recs[i : i + 1])
        book_top_k(qty, best, 0, k, out_px[i], out_qty[i])
    return n_bad


def test_kernels_compose_inside_njit():
    books = BookSet(capacity=1)
    m = books.slot("A")
    recs = delta_recs([(m, SIDE_YES, 500, 10), (m, SIDE_YES, 500, -10), (m, SIDE_NO, 9, -1)])
    out_px = np.zeros((3, 2, 2), dtype=np.int16)
    out_qty = np.zeros((3, 2, 2), dtype=np.int64)
    lv = snapshot_rows(m, [(SIDE_YES, 420, 1)])
    n_bad = _replay(books.qty, books.best, books.meta, lv, recs, 2, out_px, out_qty)
    assert n_bad == 1
    assert recs["status"].tolist() == [ST_OK, ST_OK, ST_NEGATIVE]
    assert out_px[0, SIDE_YES].tolist() == [500, 420]
    assert out_px[1, SIDE_YES].tolist() == [420, NO_PRICE]


# --------------------------------------------------------------------------- edge checks


def test_facade_rejects_bad_arguments_with_messages():
    books = BookSet()
    m = books.slot("A")
    with pytest.raises(ValueError, match="capacity"):
        BookSet(capacity=0)
    with pytest.raises(ValueError, match="ticker"):
        books.slot("")
    with pytest.raises(ValueError, match="not allocated"):
        books.ticker_of(1)
    with pytest.raises(ValueError, match="not allocated"):
        books.apply_snapshot(5, snapshot_rows(5, []))
    with pytest.raises(ValueError, match="passed for slot"):
        books.apply_snapshot(m, snapshot_rows(m + 1, []))
    with pytest.raises(ValueError, match="at least one row"):
        books.apply_snapshot(m, np.zeros(0, dtype=SNAPSHOT_LEVEL_DTYPE))
    with pytest.raises(ValueError, match="DELTA_DTYPE"):
        books.apply_deltas(np.zeros(3, dtype=SNAPSHOT_LEVEL_DTYPE))
    with pytest.raises(ValueError, match="1-D"):
        books.apply_deltas(np.zeros((2, 2), dtype=DELTA_DTYPE))
    ro = np.zeros(2, dtype=DELTA_DTYPE)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        books.apply_deltas(ro)
    with pytest.raises(ValueError, match="k must be"):
        books.top_k(m, 0)
    with pytest.raises(ValueError, match="side must be"):
        books.levels(m, 2)
    with pytest.raises(ValueError, match="out of range"):
        books.best(books.capacity)
