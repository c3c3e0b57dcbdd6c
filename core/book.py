"""The L2 book set: every market's two bid ladders in one dense array, updated in Numba.

Layout (owned by a :class:`BookSet`, shared read-only by the feed's readers):

* ``qty``  int64 ``[capacity, N_SIDES, N_PRICES]`` -- resting bid quantity (count units)
  at each tick.  ``qty[m, SIDE_YES, p]`` = YES bids at YES price ``p``;
  ``qty[m, SIDE_NO, p]`` = NO bids at NO price ``p`` (each side on its own scale).
* ``best`` int32 ``[capacity, N_SIDES]`` -- cached best (highest) bid tick per side,
  ``NO_PRICE`` when the side is empty.
* ``meta`` ``BOOK_META_DTYPE [capacity]`` -- validity, last status, sid, last seq/ts and
  counters.

Asks are derived, never stored: YES ask = ``PRICE_MAX - best NO bid``, NO ask =
``PRICE_MAX - best YES bid``.

Kernels are ``@njit(cache=True)`` free functions (callable from other njit code), never
raise and return ``ST_*`` status codes.  :class:`BookSet` is the thin Python facade that
allocates slots, validates arguments and raises ``ValueError`` with a message.

Semantics the kernels share (mirrored by the reference book in tests/core/test_book.py):

* A book is served only while ``meta.valid == 1``: set by a clean snapshot, cleared by a
  negative level, a crossed/locked book (``best_yes + best_no >= PRICE_MAX``), a failed
  snapshot, :func:`book_invalidate` or :func:`book_invalidate_sid`.
* Deltas on an invalid book are not applied (``ST_INVALID_BOOK``); a fresh snapshot
  revalidates it.
* ``meta.status`` keeps the last non-OK status that hit the book (``ST_INVALID_BOOK``
  rejections are not recorded, so the cause of the invalidation stays visible).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numba import njit

from core.dtypes import (
    BOOK_META_DTYPE,
    DEFAULT_BOOK_CAPACITY,
    DELTA_DTYPE,
    N_PRICES,
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

# =========================================================================== kernels


@njit(cache=True)
def _is_crossed(best: np.ndarray, m: int) -> bool:
    """True when both sides are present and best YES bid + best NO bid >= PRICE_MAX."""
    by = best[m, SIDE_YES]
    bn = best[m, SIDE_NO]
    return by >= 0 and bn >= 0 and by + bn >= PRICE_MAX


@njit(cache=True)
def book_clear(qty: np.ndarray, best: np.ndarray, meta: np.ndarray, m: int) -> None:
    """Empty market ``m``'s ladders and mark it invalid (meta counters are kept).

    Args:
        qty, best, meta: the book set arrays.
        m: book slot; out of range is a no-op.
    """
    if m < 0 or m >= qty.shape[0]:
        return
    qty[m, :, :] = 0
    best[m, SIDE_YES] = NO_PRICE
    best[m, SIDE_NO] = NO_PRICE
    meta[m]["valid"] = 0


@njit(cache=True)
def book_apply_snapshot(
    qty: np.ndarray, best: np.ndarray, meta: np.ndarray, m: int, levels: np.ndarray
) -> int:
    """Replace market ``m``'s book by one snapshot.

    Rows with ``side == SIDE_NONE`` and ``qty == 0`` are empty-snapshot markers and load
    nothing.  Duplicate rows for one (side, price) are treated as *set*: the last row wins.
    Bad rows are skipped and make the snapshot fail; good rows are still loaded so the
    rejected book can be inspected, but the book stays invalid until the next clean
    snapshot.  Each row's ``status`` receives its own error, or else the snapshot's status.

    Args:
        qty, best, meta: the book set arrays.
        m: book slot the snapshot is for (the rows' ``market`` field is not read).
        levels: SNAPSHOT_LEVEL_DTYPE [n], all rows of one snapshot (sid/seq/ts from row 0).

    Returns:
        ST_OK (book valid), the first row error (ST_BAD_SIDE, ST_BAD_PRICE, ST_NEGATIVE for
        qty <= 0), ST_CROSSED when the loaded book is crossed/locked, or ST_BAD_MARKET when
        ``m`` is out of range (nothing touched).
    """
    if m < 0 or m >= qty.shape[0]:
        return ST_BAD_MARKET
    book_clear(qty, best, meta, m)
    n = levels.shape[0]
    st = ST_OK
    by = NO_PRICE
    bn = NO_PRICE
    for i in range(n):
        side = levels[i]["side"]
        p = levels[i]["price"]
        q = levels[i]["qty"]
        row = ST_OK
        if side == SIDE_NONE and q == 0:
            row = ST_OK  # empty-snapshot marker
        elif side < SIDE_YES or side > SIDE_NO:  # SIDE_YES..SIDE_NO are 0..1
            row = ST_BAD_SIDE
        elif p < PRICE_MIN or p > PRICE_MAX:
            row = ST_BAD_PRICE
        elif q <= 0:
            row = ST_NEGATIVE
        else:
            qty[m, side, p] = q
            if side == SIDE_YES:
                by = max(by, p)
            else:
                bn = max(bn, p)
        levels[i]["status"] = row
        if row != ST_OK and st == ST_OK:
            st = row
    best[m, SIDE_YES] = by
    best[m, SIDE_NO] = bn
    if st == ST_OK and _is_crossed(best, m):
        st = ST_CROSSED
    if st != ST_OK:
        for i in range(n):
            if levels[i]["status"] == ST_OK:
                levels[i]["status"] = st
        meta[m]["status"] = st
    meta[m]["valid"] = 1 if st == ST_OK else 0
    if n > 0:
        meta[m]["sid"] = levels[0]["sid"]
        meta[m]["last_seq"] = levels[0]["seq"]
        meta[m]["last_exch_ts"] = levels[0]["exch_ts"]
        meta[m]["last_recv_ts"] = levels[0]["recv_ts"]
    meta[m]["n_updates"] += 1
    meta[m]["n_snapshots"] += 1
    return st


@njit(cache=True)
def book_apply_deltas(qty: np.ndarray, best: np.ndarray, meta: np.ndarray, recs: np.ndarray) -> int:
    """Apply a batch of signed level changes spanning many markets, in order.

    Per record (``recs['status']`` receives the code):

    * ST_BAD_MARKET -- ``market`` outside 0..capacity-1: skipped.
    * ST_INVALID_BOOK -- the book is invalid: not applied.
    * ST_BAD_SIDE / ST_BAD_PRICE -- not applied; the book stays as it was.
    * ST_NEGATIVE -- the level would go below 0 (desync): not applied, book invalidated.
    * ST_CROSSED -- applied, then best YES + best NO >= PRICE_MAX: book invalidated.
    * ST_OK -- applied.

    Applied records (ST_OK, ST_CROSSED) set meta last_seq/last_exch_ts/last_recv_ts and
    count in n_updates.  To apply one delta from njit code pass ``recs[i : i + 1]``.

    Args:
        qty, best, meta: the book set arrays.
        recs: DELTA_DTYPE [n]; ``recs['market']`` is the book slot, ``price`` is on the
            scale of ``side``, ``delta`` is in count units.

    Returns:
        Number of records whose status is not ST_OK.
    """
    # One flat loop on purpose: a call to a helper kernel per record costs ~30 ns in
    # array reference counting, more than the whole update (bench/README.md).
    n_markets = qty.shape[0]
    n_bad = 0
    for i in range(recs.shape[0]):
        r = recs[i]
        m = r["market"]
        side = r["side"]
        price = r["price"]
        if m < 0 or m >= n_markets:
            st = ST_BAD_MARKET
        elif meta[m]["valid"] == 0:
            st = ST_INVALID_BOOK
        elif side < SIDE_YES or side > SIDE_NO:  # SIDE_YES..SIDE_NO are 0..1
            st = ST_BAD_SIDE
            meta[m]["status"] = st
        elif price < PRICE_MIN or price > PRICE_MAX:
            st = ST_BAD_PRICE
            meta[m]["status"] = st
        else:
            new = qty[m, side, price] + r["delta"]
            if new < 0:
                st = ST_NEGATIVE
                meta[m]["valid"] = 0
                meta[m]["status"] = st
            else:
                st = ST_OK
                qty[m, side, price] = new
                if new > 0:
                    best[m, side] = max(best[m, side], price)
                elif price == best[m, side]:
                    # Only the best level emptied: the next best is below it.
                    p = price - 1
                    while p >= PRICE_MIN and qty[m, side, p] == 0:
                        p -= 1
                    best[m, side] = p if p >= PRICE_MIN else NO_PRICE
                meta[m]["last_seq"] = r["seq"]
                meta[m]["last_exch_ts"] = r["exch_ts"]
                meta[m]["last_recv_ts"] = r["recv_ts"]
                meta[m]["n_updates"] += 1
                by = best[m, SIDE_YES]
                bn = best[m, SIDE_NO]
                if by >= 0 and bn >= 0 and by + bn >= PRICE_MAX:
                    st = ST_CROSSED
                    meta[m]["valid"] = 0
                    meta[m]["status"] = st
        r["status"] = st
        if st != ST_OK:
            n_bad += 1
    return n_bad


@njit(cache=True)
def book_best(best: np.ndarray, m: int) -> tuple[int, int, int, int]:
    """Best prices of market ``m``.

    Args:
        best: the book set's best array.
        m: book slot (out of range -> all NO_PRICE).

    Returns:
        (yes_bid, yes_ask, no_bid, no_ask) in ticks, each NO_PRICE when absent;
        yes_ask = PRICE_MAX - no_bid, no_ask = PRICE_MAX - yes_bid.
    """
    if m < 0 or m >= best.shape[0]:
        return NO_PRICE, NO_PRICE, NO_PRICE, NO_PRICE
    yb = int(best[m, SIDE_YES])
    nb = int(best[m, SIDE_NO])
    ya = PRICE_MAX - nb if nb >= 0 else NO_PRICE
    na = PRICE_MAX - yb if yb >= 0 else NO_PRICE
    return yb, ya, nb, na


@njit(cache=True)
def book_best_many(best: np.ndarray, slots: np.ndarray, out: np.ndarray) -> None:
    """:func:`book_best` for many markets at once.

    Args:
        best: the book set's best array.
        slots: int [n] book slots.
        out: int [n, 4] receives (yes_bid, yes_ask, no_bid, no_ask) per slot.
    """
    # Inlined rather than calling book_best: a kernel call per market costs more than
    # the lookup itself.
    n_markets = best.shape[0]
    for i in range(slots.shape[0]):
        m = slots[i]
        yb = NO_PRICE
        nb = NO_PRICE
        if 0 <= m < n_markets:
            yb = best[m, SIDE_YES]
            nb = best[m, SIDE_NO]
        out[i, 0] = yb
        out[i, 1] = PRICE_MAX - nb if nb >= 0 else NO_PRICE
        out[i, 2] = nb
        out[i, 3] = PRICE_MAX - yb if yb >= 0 else NO_PRICE


@njit(cache=True)
def book_top_k(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    qty: np.ndarray,
    best: np.ndarray,
    m: int,
    k: int,
    out_px: np.ndarray,
    out_qty: np.ndarray,
) -> None:
    """The ``k`` best bid levels per side, best first, scanning down from the cached best.

    Args:
        qty, best: the book set arrays.
        m: book slot (out of range -> all padding).
        k: levels wanted per side (capped at ``out_px.shape[1]``).
        out_px: int16 [2, >=k] receives prices on each side's own scale, NO_PRICE padded
            (the whole row is written, also beyond ``k``).
        out_qty: int64 [2, >=k] receives quantities, 0 padded.
    """
    width = out_px.shape[1]
    kk = min(k, width)
    for s in range(N_SIDES):
        j = 0
        if 0 <= m < qty.shape[0]:
            row = qty[m, s]
            p = best[m, s]
            while p >= PRICE_MIN and j < kk:
                if p >= PRICE_MIN + 7 and (
                    row[p] | row[p - 1] | row[p - 2] | row[p - 3]
                    | row[p - 4] | row[p - 5] | row[p - 6] | row[p - 7]
                ) == 0:  # fmt: skip
                    p -= 8  # eight empty levels at once (sparse ladders: ~2.4x faster)
                    continue
                q = row[p]
                if q > 0:
                    out_px[s, j] = p
                    out_qty[s, j] = q
                    j += 1
                p -= 1
        while j < width:
            out_px[s, j] = NO_PRICE
            out_qty[s, j] = 0
            j += 1


@njit(cache=True)
def book_depth(qty: np.ndarray, best: np.ndarray, m: int, side: int, n_levels: int) -> int:
    """Total quantity (count units) in the ``n_levels`` best bid levels of one side.

    Args:
        qty, best: the book set arrays.
        m: book slot (out of range -> 0).
        side: SIDE_YES / SIDE_NO (anything else -> 0).
        n_levels: number of non-empty levels to sum, from the best down.

    Returns:
        The summed quantity.
    """
    if m < 0 or m >= qty.shape[0] or side < SIDE_YES or side > SIDE_NO:
        return 0
    total = 0
    j = 0
    p = best[m, side]
    while p >= PRICE_MIN and j < n_levels:
        q = qty[m, side, p]
        if q > 0:
            total += q
            j += 1
        p -= 1
    return total


@njit(cache=True)
def book_check(qty: np.ndarray, best: np.ndarray, m: int) -> int:
    """Full validation of market ``m``'s ladders (tests, and after a resync).

    Args:
        qty, best: the book set arrays.
        m: book slot.

    Returns:
        ST_BAD_MARKET (m out of range), ST_NEGATIVE (a level < 0), ST_BAD_BEST (the best
        cache differs from the highest positive level), ST_CROSSED, else ST_OK.  The meta
        valid flag is neither read nor changed.
    """
    if m < 0 or m >= qty.shape[0]:
        return ST_BAD_MARKET
    for s in range(N_SIDES):
        # branch-free min and last-positive-index reductions (they vectorize: ~4x faster
        # than returning at the first negative level; the result is the same)
        row = qty[m, s]
        low = 0
        top = NO_PRICE
        for p in range(N_PRICES):
            q = row[p]
            low = min(low, q)
            top = max(top, p if q > 0 else NO_PRICE)
        if low < 0:
            return ST_NEGATIVE
        if best[m, s] != top:
            return ST_BAD_BEST
    if _is_crossed(best, m):
        return ST_CROSSED
    return ST_OK


@njit(cache=True)
def book_invalidate(meta: np.ndarray, m: int) -> None:
    """Mark market ``m``'s book invalid (out of range is a no-op).

    Args:
        meta: the book set's meta array.
        m: book slot.
    """
    if 0 <= m < meta.shape[0]:
        meta[m]["valid"] = 0


@njit(cache=True)
def book_invalidate_sid(meta: np.ndarray, sid: int) -> int:
    """Mark every valid book fed by subscription ``sid`` invalid (a seq gap on the sid).

    Args:
        meta: the book set's meta array.
        sid: subscription id.

    Returns:
        How many books were valid and are now invalid.
    """
    n = 0
    for m in range(meta.shape[0]):
        if meta[m]["valid"] != 0 and meta[m]["sid"] == sid:
            meta[m]["valid"] = 0
            n += 1
    return n


# =========================================================================== facade


class BestPrices(NamedTuple):
    """Best prices of one market in ticks; NO_PRICE (-1) where absent."""

    yes_bid: int
    yes_ask: int
    no_bid: int
    no_ask: int


class BestArray(np.ndarray):
    """The ``best`` int32 [capacity, N_SIDES] array, also callable as ``best(slot)``.

    Kernels receive it as a plain int32 array (Numba types ndarray subclasses as arrays);
    Python readers may call ``books.best(slot)`` for a :class:`BestPrices`.  Only the
    range 0..capacity-1 is checked here (unallocated slots read as all NO_PRICE).
    """

    def __call__(self, slot: int) -> BestPrices:
        if not isinstance(slot, int | np.integer) or not 0 <= slot < self.shape[0]:
            raise ValueError(f"slot {slot!r} out of range 0..{self.shape[0] - 1}")
        # Plain Python on purpose: a kernel dispatch from Python costs ~200 ns, more than
        # these two reads (same rule as book_best; tests hold them equal).
        yb = self.item(slot, SIDE_YES)
        nb = self.item(slot, SIDE_NO)
        return _new_best(
            BestPrices,
            (
                yb,
                PRICE_MAX - nb if nb >= 0 else NO_PRICE,
                nb,
                PRICE_MAX - yb if yb >= 0 else NO_PRICE,
            ),
        )


_new_best = tuple.__new__  # skips NamedTuple.__new__'s argument parsing (~150 ns)


def _new_arrays(capacity: int) -> tuple[np.ndarray, BestArray, np.ndarray]:
    qty = np.zeros((capacity, N_SIDES, N_PRICES), dtype=np.int64)
    best = np.full((capacity, N_SIDES), NO_PRICE, dtype=np.int32).view(BestArray)
    meta = np.zeros(capacity, dtype=BOOK_META_DTYPE)
    meta["sid"] = -1
    meta["last_seq"] = NO_SEQ
    meta["last_exch_ts"] = NO_TS
    meta["last_recv_ts"] = NO_TS
    return qty, best, meta


_DELTA_ITEMSIZE = DELTA_DTYPE.itemsize
# book_apply_deltas's compiled overload for the BookSet's arrays and contiguous writable
# DELTA_DTYPE records (``BookSet.apply_deltas``; Numba's per-call type dispatch of four
# arrays costs more than applying one delta)
_DELTAS_ENTRY: dict[int, Any] = {}


def _check_records(arr: np.ndarray, dtype: np.dtype, what: str) -> None:
    if not isinstance(arr, np.ndarray) or arr.dtype != dtype:
        got = getattr(arr, "dtype", type(arr).__name__)
        raise ValueError(f"{what} must be a numpy array of {what} dtype, got {got}")
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    if not arr.flags.writeable:
        raise ValueError(f"{what} must be writable: the kernel writes each row's status")


class BookSet:
    """L2 books of many markets in one dense array, one slot per ticker.

    ``qty``, ``best`` and ``meta`` are plain attributes shared read-only with readers;
    ``best`` is a :class:`BestArray`, so ``books.best(slot)`` gives a :class:`BestPrices`.
    :meth:`slot` grows the arrays by doubling when full, which *replaces* them: readers
    must re-read ``books.qty`` / ``books.best`` / ``books.meta`` on every tick instead of
    caching the arrays (slots and contents survive growth).

    Args:
        capacity: initial number of market slots (>= 1).
    """

    def __init__(self, capacity: int = DEFAULT_BOOK_CAPACITY) -> None:
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive int, got {capacity!r}")
        self.qty, self.best, self.meta = _new_arrays(capacity)
        self._best_src: np.ndarray | None = None  # self.best, and its plain-ndarray view
        self._best_plain = self.best.view(np.ndarray)
        # ticker -> slot.  Read it freely; allocate only through slot().
        self.slots: dict[str, int] = {}
        self._tickers: list[str] = []

    # ----------------------------------------------------------------- slots
    @property
    def capacity(self) -> int:
        """Number of allocated array rows (>= n_markets)."""
        return int(self.qty.shape[0])

    @property
    def n_markets(self) -> int:
        """Number of tickers with a slot; slots are 0..n_markets-1."""
        return len(self._tickers)

    def slot(self, ticker: str) -> int:
        """The slot of ``ticker``, allocating the next one (and growing) for a new ticker.

        Args:
            ticker: market ticker (non-empty).

        Returns:
            The book slot.
        """
        found = self.slots.get(ticker)
        if found is not None:
            return found
        if not isinstance(ticker, str) or not ticker:
            raise ValueError(f"ticker must be a non-empty str, got {ticker!r}")
        s = len(self._tickers)
        if s >= self.capacity:
            self._grow(2 * self.capacity)
        self._tickers.append(ticker)
        self.slots[ticker] = s
        return s

    def ticker_of(self, slot: int) -> str:
        """The ticker that owns ``slot``."""
        self._check_slot(slot)
        return self._tickers[slot]

    def _grow(self, capacity: int) -> None:
        qty, best, meta = _new_arrays(capacity)
        n = self.capacity
        qty[:n] = self.qty
        best[:n] = self.best
        meta[:n] = self.meta
        self.qty, self.best, self.meta = qty, best, meta

    def _check_slot(self, slot: int) -> None:
        if not isinstance(slot, int | np.integer) or not 0 <= slot < self.n_markets:
            raise ValueError(f"slot {slot!r} is not allocated (n_markets={self.n_markets})")

    # ----------------------------------------------------------------- updates
    def apply_snapshot(self, slot: int, levels: np.ndarray) -> int:
        """Replace one market's book by a snapshot (see :func:`book_apply_snapshot`).

        Args:
            slot: book slot.
            levels: SNAPSHOT_LEVEL_DTYPE [n >= 1] rows of one snapshot, all with
                ``market == slot`` (an empty book is one SIDE_NONE marker row).

        Returns:
            The snapshot's ST_* status (ST_OK -> book valid).
        """
        self._check_slot(slot)
        _check_records(levels, SNAPSHOT_LEVEL_DTYPE, "SNAPSHOT_LEVEL_DTYPE levels")
        if levels.shape[0] == 0:
            raise ValueError("a snapshot needs at least one row (SIDE_NONE marker if empty)")
        if np.any(levels["market"] != slot):
            bad = np.unique(levels["market"][levels["market"] != slot])
            raise ValueError(f"snapshot rows for markets {bad.tolist()} passed for slot {slot}")
        return int(book_apply_snapshot(self.qty, self.best, self.meta, int(slot), levels))

    def apply_deltas(self, recs: np.ndarray) -> int:
        """Apply deltas over many markets in order (see :func:`book_apply_deltas`).

        Bad markets/sides/prices are reported in ``recs['status']``, not raised.

        Args:
            recs: DELTA_DTYPE [n], writable.

        Returns:
            Number of records whose status is not ST_OK.
        """
        _check_records(recs, DELTA_DTYPE, "DELTA_DTYPE recs")
        best = self.best
        if best is not self._best_src:  # a plain ndarray: Numba types a subclass slowly
            self._best_src, self._best_plain = best, best.view(np.ndarray)
        if recs.strides[0] == _DELTA_ITEMSIZE:  # the usual contiguous records
            entry = _DELTAS_ENTRY.get(0)
            if entry is not None:  # the compiled overload, without per-call type dispatch
                return int(entry(self.qty, self._best_plain, self.meta, recs))
            n = int(book_apply_deltas(self.qty, self._best_plain, self.meta, recs))
            sig = tuple(
                book_apply_deltas.typeof_pyval(a)
                for a in (self.qty, self._best_plain, self.meta, recs)
            )
            cres: Any = book_apply_deltas.overloads.get(sig)
            if cres is not None:
                _DELTAS_ENTRY[0] = cres.entry_point
            return n
        return int(book_apply_deltas(self.qty, self._best_plain, self.meta, recs))

    def invalidate(self, slot: int) -> None:
        """Mark one book invalid until its next clean snapshot."""
        self._check_slot(slot)
        book_invalidate(self.meta, int(slot))

    def invalidate_sid(self, sid: int) -> int:
        """Mark every valid book fed by ``sid`` invalid; returns how many."""
        return int(book_invalidate_sid(self.meta, int(sid)))

    def clear(self, slot: int) -> None:
        """Empty one book and mark it invalid."""
        self._check_slot(slot)
        book_clear(self.qty, self.best, self.meta, int(slot))

    # ----------------------------------------------------------------- reads
    def valid(self, slot: int) -> bool:
        """True when the book may be served (clean snapshot, no desync/gap since)."""
        self._check_slot(slot)
        return bool(self.meta[slot]["valid"])

    def status(self, slot: int) -> int:
        """Last non-OK ST_* status that hit the book (ST_OK if none)."""
        self._check_slot(slot)
        return int(self.meta[slot]["status"])

    def check(self, slot: int) -> int:
        """Full ladder validation (see :func:`book_check`)."""
        self._check_slot(slot)
        return int(book_check(self.qty, self.best, int(slot)))

    def best_of(self, slot: int) -> BestPrices:
        """Best (yes_bid, yes_ask, no_bid, no_ask) of one allocated market.

        Same as ``books.best(slot)`` (see :class:`BestArray`) but also rejects slots not
        allocated to a ticker.
        """
        self._check_slot(slot)
        return self.best(slot)

    def top_k(self, slot: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best bid levels per side.

        Returns:
            (px int16 [2, k], qty int64 [2, k]); row SIDE_YES / SIDE_NO, best first, each
            side on its own price scale, padded with NO_PRICE / 0.
        """
        self._check_slot(slot)
        if not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        px = np.empty((N_SIDES, int(k)), dtype=np.int16)
        q = np.empty((N_SIDES, int(k)), dtype=np.int64)
        book_top_k(self.qty, self.best, int(slot), int(k), px, q)
        return px, q

    def depth(self, slot: int, side: int, n_levels: int) -> int:
        """Total quantity in the ``n_levels`` best levels of ``side``."""
        self._check_slot(slot)
        _check_side(side)
        return int(book_depth(self.qty, self.best, int(slot), int(side), int(n_levels)))

    def levels(self, slot: int, side: int) -> list[tuple[int, int]]:
        """Every non-empty level of one side as (price, qty), best (highest) first."""
        self._check_slot(slot)
        _check_side(side)
        row = self.qty[slot, side]
        px = np.flatnonzero(row)[::-1]
        return [(int(p), int(row[p])) for p in px]


def _check_side(side: int) -> None:
    if side not in (SIDE_YES, SIDE_NO):
        raise ValueError(f"side must be SIDE_YES ({SIDE_YES}) or SIDE_NO ({SIDE_NO}), got {side!r}")
