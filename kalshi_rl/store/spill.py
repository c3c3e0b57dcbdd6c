"""Segment files: where the writer parks records while PostgreSQL is unreachable.

A spill directory holds append-only segment files named ``<number>-<table>.seg`` with a
zero-padded number that only grows, so sorting the names gives the order they were
written in.  One file is one drained batch of one table:

    b"KRLSEG1\\n"                  magic, 8 bytes
    uint32 little-endian           length H of the JSON header
    H bytes of JSON                {"version", "table", "db_id", "session_id", "n",
                                    "itemsize", "dtype", "tickers": {slot: ticker},
                                    "created_ns"}
    n * itemsize bytes             the raw records (the table's core.dtypes record dtype)
    uint32 little-endian           CRC-32 of everything above

The header carries the database identity (``kalshi_rl.store.db.database_id``), the session
id and the slot -> ticker map of the slots in the batch, so a later process can encode the
rows without the live BookSet, and replays a segment only into the database it came from
(version 1 segments have no database identity and are never replayed automatically).  A
file is written to a ``.tmp`` name, fsynced, renamed and the directory fsynced: a crash
leaves either a whole segment or a ``.tmp`` file that ``SpillDir`` deletes on open.  The
writer deletes a segment only after its rows committed.

Only one writer may use a spill directory at a time: ``SpillDir(path, exclusive=True)``
takes an ``flock`` on ``<path>/.lock`` (released by ``close()`` or when the process dies)
and raises ``StoreError`` if another writer holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import struct
import time
import weakref
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import orjson

from core.ring import COPY_TABLES
from kalshi_rl.errors import StoreError

MAGIC = b"KRLSEG1\n"
VERSION = 2
_READABLE_VERSIONS = (1, 2)
LOCK_NAME = ".lock"
SUFFIX = ".seg"
_NAME_RE = re.compile(r"^(\d{12})-([a-z_]+)\.seg$")
_ANY_RE = re.compile(r"^(\d{12})-[a-z_]+\.(seg|bad)$")
_U32 = struct.Struct("<I")


class Segment(NamedTuple):
    """One segment file read back."""

    path: Path
    number: int
    table: str
    db_id: str | None  # database identity; None in a version 1 segment
    session_id: int
    recs: np.ndarray  # records of COPY_TABLES[table].dtype
    tickers: dict[int, str]  # book slot -> market ticker for every slot in ``recs``


class SpillDir:
    """A directory of segment files (see the module docstring for the format).

    Args:
        path: the directory; created if missing.  Stale ``.tmp`` files are removed.
        exclusive: lock the directory for this writer (StoreError if another holds it);
            ``close()`` releases it.
    """

    def __init__(self, path: Path, *, exclusive: bool = False) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = self._lock() if exclusive else None
        if self._lock_fd is not None:  # a writer dropped without close() still unlocks
            self._unlock_at_gc = weakref.finalize(self, os.close, self._lock_fd)
        for tmp in self.path.glob("*.tmp"):
            tmp.unlink()  # a write that never reached its rename: its rows are still owned
            # by whoever wrote it (it had not been told the spill succeeded)
        # quarantined ``.bad`` files keep their number too, so a number is never reused
        numbers = [int(m.group(1)) for p in self.path.iterdir() if (m := _ANY_RE.match(p.name))]
        self._next = max(numbers, default=0) + 1

    def _lock(self) -> int:
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreError(
                f"spill directory {self.path} is in use by another writer (pid {holder}); "
                "only one writer may use a spill directory at a time: give this one its "
                "own spill directory"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def close(self) -> None:
        """Release the directory lock (if this object holds it); safe to call twice."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            self._unlock_at_gc.detach()
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def write(
        self,
        table: str,
        recs: np.ndarray,
        session_id: int,
        tickers: dict[int, str],
        *,
        db_id: str,
    ) -> Path:
        """Write one segment durably (fsync file and directory).

        Args:
            table: a key of core.ring.COPY_TABLES.
            recs: records of that table's dtype.
            session_id: feed_sessions.id the rows belong to.
            db_id: identity of the database the rows belong to (``db.database_id``).
            tickers: slot -> ticker for (at least) every slot in ``recs['market']``.

        Returns:
            The path of the new segment.
        """
        spec = COPY_TABLES.get(table)
        if spec is None:
            raise StoreError(f"spill: unknown table {table!r}")
        if recs.dtype != spec.dtype:
            raise StoreError(f"spill: {table} needs {spec.dtype} records, got {recs.dtype}")
        slots = {int(s) for s in np.unique(recs["market"])}
        missing = slots - tickers.keys()
        if missing:
            raise StoreError(f"spill: no ticker for book slots {sorted(missing)}")
        header = orjson.dumps(
            {
                "version": VERSION,
                "table": table,
                "db_id": db_id,
                "session_id": int(session_id),
                "n": int(recs.shape[0]),
                "itemsize": spec.dtype.itemsize,
                "dtype": str(spec.dtype.descr),
                "tickers": {str(s): tickers[s] for s in sorted(slots)},
                "created_ns": time.time_ns(),
            }
        )
        body = MAGIC + _U32.pack(len(header)) + header + np.ascontiguousarray(recs).tobytes()
        data = body + _U32.pack(zlib.crc32(body))
        number = self._next
        self._next += 1
        final = self.path / f"{number:012d}-{table}{SUFFIX}"
        tmp = final.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        self._fsync_dir()
        return final

    def pending(self) -> list[Path]:
        """Segment files on disk, oldest first."""
        return sorted(p for p in self.path.iterdir() if _NAME_RE.match(p.name))

    def pending_bytes(self) -> int:
        """Total size of the pending segment files."""
        return sum(p.stat().st_size for p in self.pending())

    def read(self, path: Path) -> Segment:
        """Read and verify one segment (raises StoreError if it is damaged)."""
        data = path.read_bytes()
        if len(data) < len(MAGIC) + 8 or not data.startswith(MAGIC):
            raise StoreError(f"spill segment {path} is not a segment file")
        body, crc = data[:-4], _U32.unpack(data[-4:])[0]
        if zlib.crc32(body) != crc:
            raise StoreError(f"spill segment {path} fails its CRC check")
        (hlen,) = _U32.unpack_from(body, len(MAGIC))
        start = len(MAGIC) + 4
        header = orjson.loads(body[start : start + hlen])
        if header.get("version") not in _READABLE_VERSIONS:
            raise StoreError(f"spill segment {path} has version {header.get('version')}")
        table = header["table"]
        spec = COPY_TABLES.get(table)
        if spec is None or header["itemsize"] != spec.dtype.itemsize:
            raise StoreError(f"spill segment {path}: table {table!r} / record size mismatch")
        raw = body[start + hlen :]
        if len(raw) != header["n"] * spec.dtype.itemsize:
            raise StoreError(f"spill segment {path}: {len(raw)} record bytes, expected "
                             f"{header['n']} x {spec.dtype.itemsize}")  # fmt: skip
        recs = np.frombuffer(raw, dtype=spec.dtype).copy()
        return Segment(
            path=path,
            number=_number(path),
            table=table,
            db_id=header.get("db_id"),
            session_id=int(header["session_id"]),
            recs=recs,
            tickers={int(k): v for k, v in header["tickers"].items()},
        )

    def remove(self, path: Path) -> None:
        """Delete a segment whose rows are committed."""
        path.unlink()
        self._fsync_dir()

    def quarantine(self, path: Path) -> Path:
        """Move a segment PostgreSQL refuses (not a connection problem) out of the queue."""
        bad = path.with_suffix(".bad")
        os.replace(path, bad)
        self._fsync_dir()
        return bad

    def _fsync_dir(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _number(path: Path) -> int:
    m = _NAME_RE.match(path.name)
    if m is None:  # pending() only yields matching names
        raise StoreError(f"not a segment file name: {path.name}")
    return int(m.group(1))
