"""kalshi_rl.store.spill: segment files round trip, order, damage detection."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import orjson
import pytest

from core.dtypes import DELTA_DTYPE, TRADE_DTYPE
from kalshi_rl.errors import StoreError
from kalshi_rl.store.spill import _U32, MAGIC, SpillDir


def _deltas(n: int, start: int = 0) -> np.ndarray:
    recs = np.zeros(n, DELTA_DTYPE)
    recs["rec_id"] = np.arange(start, start + n)
    recs["market"] = np.arange(n) % 3
    recs["delta"] = -7
    return recs


def test_write_read_round_trip_in_order(tmp_path: Path) -> None:
    sd = SpillDir(tmp_path)
    tick = {0: "A", 1: "B", 2: "C", 9: "unused"}
    p1 = sd.write("orderbook_deltas", _deltas(5), 42, tick, db_id="D")
    trades = np.zeros(2, TRADE_DTYPE)
    trades["trade_id_hi"] = 2**64 - 1
    p2 = sd.write("trades", trades, 43, {0: "A"}, db_id="D")
    assert sd.pending() == [p1, p2]
    assert p1.name == "000000000001-orderbook_deltas.seg"
    s1 = sd.read(p1)
    assert (s1.table, s1.session_id, s1.number) == ("orderbook_deltas", 42, 1)
    assert s1.db_id == "D"
    assert s1.tickers == {0: "A", 1: "B", 2: "C"}  # only the slots in the batch
    assert s1.recs["rec_id"].tolist() == [0, 1, 2, 3, 4]
    assert s1.recs["delta"].tolist() == [-7] * 5
    s2 = sd.read(p2)
    assert s2.recs["trade_id_hi"].tolist() == [2**64 - 1] * 2
    assert sd.pending_bytes() == p1.stat().st_size + p2.stat().st_size
    sd.remove(p1)
    assert sd.pending() == [p2]


def test_numbers_never_reused_across_reopen(tmp_path: Path) -> None:
    sd = SpillDir(tmp_path)
    a = sd.write("orderbook_deltas", _deltas(1), 1, {0: "A"}, db_id="D")
    b = sd.write("orderbook_deltas", _deltas(1), 1, {0: "A"}, db_id="D")
    sd.quarantine(b)
    (tmp_path / "000000000009-orderbook_deltas.tmp").write_bytes(b"torn")
    sd2 = SpillDir(tmp_path)
    assert not list(tmp_path.glob("*.tmp"))  # torn writes are removed on open
    c = sd2.write("orderbook_deltas", _deltas(1), 1, {0: "A"}, db_id="D")
    assert sd2.pending() == [a, c]
    assert c.name.startswith("000000000003-")


def test_damaged_segment_is_refused(tmp_path: Path) -> None:
    sd = SpillDir(tmp_path)
    p = sd.write("orderbook_deltas", _deltas(4), 1, {0: "A", 1: "B", 2: "C"}, db_id="D")
    data = bytearray(p.read_bytes())
    data[-10] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="CRC"):
        sd.read(p)
    p.write_bytes(b"nonsense")
    with pytest.raises(StoreError, match="not a segment"):
        sd.read(p)


def test_write_validates(tmp_path: Path) -> None:
    sd = SpillDir(tmp_path)
    with pytest.raises(StoreError, match="no ticker for book slots \\[1, 2\\]"):
        sd.write("orderbook_deltas", _deltas(3), 1, {0: "A"}, db_id="D")
    with pytest.raises(StoreError, match="needs"):
        sd.write("trades", _deltas(3), 1, {0: "A"}, db_id="D")
    with pytest.raises(StoreError, match="unknown table"):
        sd.write("nope", _deltas(3), 1, {0: "A"}, db_id="D")
    assert sd.pending() == []


def test_version_1_segment_reads_without_a_database(tmp_path: Path) -> None:
    sd = SpillDir(tmp_path)
    p = sd.write("orderbook_deltas", _deltas(2), 7, {0: "A", 1: "B"}, db_id="D")
    data = p.read_bytes()
    (hlen,) = _U32.unpack_from(data, len(MAGIC))
    start = len(MAGIC) + 4
    header = orjson.loads(data[start : start + hlen])
    del header["db_id"]
    header["version"] = 1
    new = orjson.dumps(header)
    body = MAGIC + _U32.pack(len(new)) + new + data[start + hlen : -4]
    p.write_bytes(body + _U32.pack(zlib.crc32(body)))
    seg = sd.read(p)
    assert (seg.db_id, seg.session_id, seg.recs.shape[0]) == (None, 7, 2)


def test_one_writer_per_directory(tmp_path: Path) -> None:
    first = SpillDir(tmp_path, exclusive=True)
    with pytest.raises(StoreError, match=r"in use by another writer \(pid \d+\); only one writer"):
        SpillDir(tmp_path, exclusive=True)
    SpillDir(tmp_path).pending()  # looking without the lock is fine
    first.close()
    first.close()  # twice is harmless
    second = SpillDir(tmp_path, exclusive=True)  # released: the next writer takes over
    del second  # dropped without close(): the lock goes with it
    SpillDir(tmp_path, exclusive=True).close()
