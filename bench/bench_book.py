"""core.book latency: ours next to the plain-Python / NumPy way, in the same run.

Run (short, the machine is shared):
    pytest bench/bench_book.py --benchmark-min-rounds=3 --benchmark-max-time=0.2 \
        --benchmark-columns=min,median,rounds --benchmark-sort=name -p no:cacheprovider

Groups pair ours with the baseline:
* ``deltas-<n>``: apply n deltas over 100 markets, batched (``book_apply_deltas``) vs a
  dict-per-side Python book doing the same checks (negative, crossed, best upkeep).
* ``best-batch-<n>``: best prices of n markets, ``book_best_many`` vs a per-market
  ``np.nonzero(qty[m, side])`` max scan.
* ``best-single``: one market from Python: ``book_best`` / ``BookSet.best(slot)`` vs the
  same nonzero scan.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.book import BookSet, book_apply_deltas, book_best, book_best_many
from core.dtypes import (
    DELTA_DTYPE,
    NO_PRICE,
    PRICE_MAX,
    SIDE_NO,
    SIDE_YES,
    SNAPSHOT_LEVEL_DTYPE,
    ST_CROSSED,
    ST_INVALID_BOOK,
    ST_NEGATIVE,
    ST_OK,
)

N_MARKETS = 100
# YES bids in 300..399 and NO bids in 500..599 never cross (399 + 599 < PRICE_MAX).
BANDS = {SIDE_YES: (300, 400), SIDE_NO: (500, 600)}


def build_books(n_markets: int, seed: int = 7) -> tuple[BookSet, list[dict[int, int]]]:
    """A BookSet with 20 levels per side per market; returns it and the levels as dicts."""
    rng = np.random.default_rng(seed)
    books = BookSet(capacity=n_markets)
    ladders: list[dict[int, int]] = []
    for i in range(n_markets):
        m = books.slot(f"KXBENCH-{i}")
        rows = np.zeros(40, dtype=SNAPSHOT_LEVEL_DTYPE)
        rows["market"] = m
        rows["seq"] = 1
        for side, (lo, hi) in BANDS.items():
            px = rng.choice(np.arange(lo, hi), size=20, replace=False)
            sl = slice(20 * side, 20 * side + 20)
            rows["side"][sl] = side
            rows["price"][sl] = px
            rows["qty"][sl] = rng.integers(1, 500, size=20) * 100
        assert books.apply_snapshot(m, rows) == ST_OK
        for side in (SIDE_YES, SIDE_NO):
            ladders.append(
                {int(p): int(books.qty[m, side, p]) for p in np.flatnonzero(books.qty[m, side])}
            )
    return books, ladders


def make_stream(n: int, ladders: list[dict[int, int]], seed: int = 11) -> np.ndarray:
    """n valid deltas (adds, partial and full cancels, often at the best) over all markets."""
    rng = np.random.default_rng(seed)
    state = [dict(d) for d in ladders]
    recs = np.zeros(n, dtype=DELTA_DTYPE)
    ms = rng.integers(0, len(ladders) // 2, size=n)
    sides = rng.integers(0, 2, size=n)
    u = rng.random(size=n)
    for i in range(n):
        m, side = int(ms[i]), int(sides[i])
        lad = state[2 * m + side]
        lo, hi = BANDS[side]
        if u[i] < 0.5 or not lad:
            p = int(rng.integers(lo, hi))
            d = int(rng.integers(1, 200)) * 100
        else:
            # cancels hit the top of the book most, as in real markets
            p = max(lad) if u[i] < 0.7 else int(rng.choice(list(lad)))
            d = -lad[p] if u[i] < 0.85 else -int(rng.integers(0, lad[p] + 1))
        new = lad.get(p, 0) + d
        if new:
            lad[p] = new
        else:
            lad.pop(p, None)
        recs[i]["market"] = m
        recs[i]["side"] = side
        recs[i]["price"] = p
        recs[i]["delta"] = d
        recs[i]["seq"] = i + 2
    return recs


class DictBook:
    """The plain-Python way: per market two dicts price -> qty, a cached best, same checks."""

    def __init__(self, ladders: list[dict[int, int]]) -> None:
        self.lad = [dict(d) for d in ladders]
        self.best = [max(d) if d else NO_PRICE for d in self.lad]
        self.valid = [True] * (len(ladders) // 2)
        self.last_seq = [0] * (len(ladders) // 2)

    def apply(self, rows: list[tuple[int, int, int, int, int]]) -> int:
        n_bad = 0
        lad, best, valid, last_seq = self.lad, self.best, self.valid, self.last_seq
        for m, side, p, d, seq in rows:
            if not valid[m]:
                n_bad += 1
                continue
            k = 2 * m + side
            book = lad[k]
            new = book.get(p, 0) + d
            if new < 0:
                valid[m] = False
                n_bad += 1
                continue
            if new:
                book[p] = new
                if p > best[k]:
                    best[k] = p
            else:
                book.pop(p, None)
                if p == best[k]:
                    best[k] = max(book) if book else NO_PRICE
            last_seq[m] = seq
            by, bn = best[2 * m], best[2 * m + 1]
            if by >= 0 and bn >= 0 and by + bn >= PRICE_MAX:
                valid[m] = False
                n_bad += 1
        return n_bad


def as_rows(recs: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    cols = [recs[f].tolist() for f in ("market", "side", "price", "delta", "seq")]
    return list(zip(*cols, strict=True))


@pytest.fixture(scope="module")
def base():
    books, ladders = build_books(N_MARKETS)
    return books, ladders


@pytest.mark.parametrize("n", [1_000, 10_000, 100_000])
def test_deltas_numba(benchmark, base, n):
    books, ladders = base
    recs0 = make_stream(n, ladders)
    qty0, best0, meta0 = books.qty.copy(), np.asarray(books.best).copy(), books.meta.copy()

    def setup():
        qty, best, meta = qty0.copy(), best0.copy(), meta0.copy()
        return (qty, best, meta, recs0.copy()), {}

    book_apply_deltas(*setup()[0])  # warm the JIT
    benchmark.group = f"deltas-{n}"
    benchmark.extra_info["n_deltas"] = n
    n_bad = benchmark.pedantic(book_apply_deltas, setup=setup, rounds=20, iterations=1)
    assert n_bad == 0  # the stream is valid: every delta applied


@pytest.mark.parametrize("n", [1_000, 10_000, 100_000])
def test_deltas_python_dict(benchmark, base, n):
    _, ladders = base
    rows = as_rows(make_stream(n, ladders))

    def setup():
        return (DictBook(ladders), rows), {}

    benchmark.group = f"deltas-{n}"
    benchmark.extra_info["n_deltas"] = n
    n_bad = benchmark.pedantic(DictBook.apply, setup=setup, rounds=3, iterations=1)
    assert n_bad == 0


def test_stream_statuses_are_ok(base):
    """The bench stream exercises the valid path only (no early-out shortcuts)."""
    books, ladders = base
    recs = make_stream(10_000, ladders)
    qty, best, meta = books.qty.copy(), np.asarray(books.best).copy(), books.meta.copy()
    book_apply_deltas(qty, best, meta, recs)
    counts = np.bincount(recs["status"], minlength=8)
    assert counts[ST_OK] == len(recs)
    assert counts[[ST_NEGATIVE, ST_CROSSED, ST_INVALID_BOOK]].sum() == 0


# --------------------------------------------------------------------------- best prices


def naive_best(qty: np.ndarray, m: int) -> tuple[int, int, int, int]:
    nz_y = np.nonzero(qty[m, SIDE_YES])[0]
    nz_n = np.nonzero(qty[m, SIDE_NO])[0]
    yb = int(nz_y.max()) if nz_y.size else NO_PRICE
    nb = int(nz_n.max()) if nz_n.size else NO_PRICE
    return (
        yb,
        PRICE_MAX - nb if nb >= 0 else NO_PRICE,
        nb,
        PRICE_MAX - yb if yb >= 0 else NO_PRICE,
    )


@pytest.fixture(scope="module", params=[100, 1_000])
def many(request):
    books, _ = build_books(request.param, seed=3)
    return books


def test_best_batch_numba(benchmark, many):
    n = many.n_markets
    slots = np.arange(n, dtype=np.int64)
    out = np.zeros((n, 4), dtype=np.int64)
    best = np.asarray(many.best)
    book_best_many(best, slots, out)
    benchmark.group = f"best-batch-{n}"
    benchmark(book_best_many, best, slots, out)
    assert tuple(out[n - 1].tolist()) == naive_best(many.qty, n - 1)


def test_best_batch_numpy_nonzero(benchmark, many):
    n = many.n_markets
    qty = many.qty

    def run():
        return [naive_best(qty, m) for m in range(n)]

    benchmark.group = f"best-batch-{n}"
    res = benchmark(run)
    assert res[0] == tuple(many.best(0))


@pytest.fixture(scope="module")
def one(base):
    return base[0]


def test_best_single_kernel(benchmark, one):
    best = np.asarray(one.best)
    book_best(best, 5)
    benchmark.group = "best-single"
    assert benchmark(book_best, best, 5) == naive_best(one.qty, 5)


def test_best_single_facade(benchmark, one):
    one.best(5)
    benchmark.group = "best-single"
    assert tuple(benchmark(one.best, 5)) == naive_best(one.qty, 5)


def test_best_single_numpy_nonzero(benchmark, one):
    benchmark.group = "best-single"
    assert benchmark(naive_best, one.qty, 5) == tuple(one.best(5))
