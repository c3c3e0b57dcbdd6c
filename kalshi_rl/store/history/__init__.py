"""Recorded books from PostgreSQL straight into NumPy arrays, and the training dataset.

Three layers:

* :func:`load_raw` -- a time window of snapshots, deltas, gaps (and trades) of chosen
  markets as record arrays (``core.dtypes`` layouts, ``market`` = index into the returned
  tickers), sorted by (session_id, rec_id): the order the feed saw them.  Each stream is
  read with ``COPY (SELECT ...) TO STDOUT (FORMAT binary)``; every column is NOT NULL and
  fixed-width, so each row has the same byte layout, and one njit pass byte-swaps the
  values straight into the record array -- no per-row Python objects.
* :func:`rebuild_books` -- replays raw records through the ``core.book`` kernels and
  returns the final books (what a live BookSet fed the same messages would hold).
* :func:`load_history` / :func:`build_dataset` -- the same replay in one njit loop,
  emitting decision points at a cadence over clean segments, then ``core.features``.

Replay rules (one njit loop, :func:`_replay`), per market:

* a clean snapshot on an invalid book opens a segment; on a valid book it refreshes it;
* a delta is applied with ``book_apply_deltas`` (runs of them per call, cut wherever a
  decision point, snapshot, gap or recorded desync falls); a negative level, a crossed book, a bad
  price/side, or a delta whose recorded live ``status`` is not ST_OK invalidates the book
  and closes the segment (END_DESYNC); deltas on an invalid book are skipped;
* a ``feed_gaps`` row closes the segment (END_GAP) and invalidates the book;
* a new feed session closes every segment and invalidates every book (reason END_DATA);
* the end of the data closes every segment (reason END_DATA).

Segments are never stitched: data after a cut waits for the next snapshot.

Cadence: ``cadence_updates = N`` emits a decision point at the snapshot that opens a
segment and after every N further updates (snapshot refreshes count) of that market;
``cadence_ms = T`` emits the book as of every exchange-time grid point ``g`` (multiple of
``T``) inside a segment: the state after all updates with ``exch_ts <= g``.  A grid point
is emitted when the first update with ``exch_ts > g`` arrives, so the last grid points
after a segment's final update are not emitted (we do not know the book stayed put).
"""

from kalshi_rl.store.history.build import (
    HistoryQuery,
    SegmentInfo,
    build_dataset,
    load_history,
)
from kalshi_rl.store.history.decode import CopyDecoder, decode_copy_binary
from kalshi_rl.store.history.load import RawHistory, load_raw
from kalshi_rl.store.history.replay import (
    COUNTER_NAMES,
    END_CLOSE,
    END_DATA,
    END_DESYNC,
    END_GAP,
    END_RECORDING,
    MODE_MS,
    MODE_NONE,
    MODE_UPDATES,
    Books,
    rebuild_books,
)

__all__ = [
    "COUNTER_NAMES",
    "END_CLOSE",
    "END_DATA",
    "END_DESYNC",
    "END_GAP",
    "END_RECORDING",
    "MODE_MS",
    "MODE_NONE",
    "MODE_UPDATES",
    "Books",
    "CopyDecoder",
    "HistoryQuery",
    "RawHistory",
    "SegmentInfo",
    "build_dataset",
    "decode_copy_binary",
    "load_history",
    "load_raw",
    "rebuild_books",
]
