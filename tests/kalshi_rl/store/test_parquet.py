from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.dataset import Dataset
from core.dtypes import DATASET_VERSION, RESULT_UNKNOWN, RESULT_YES
from core.features import N_MARKET_FEATURES
from kalshi_rl.errors import DatasetError
from kalshi_rl.store import parquet as pqs


def _dataset(seed: int = 0, lengths: tuple[int, ...] = (5, 1, 7), k: int = 4) -> Dataset:
    rng = np.random.default_rng(seed)
    t = sum(lengths)
    ends = np.cumsum(lengths).astype(np.int64)
    feats = rng.standard_normal((t, N_MARKET_FEATURES)).astype(np.float32)
    feats[0, 0] = np.float32(1e-45)  # a subnormal survives too
    feats[0, 1] = -0.0
    return Dataset(
        features=feats,
        depth_px=rng.integers(-1, 1001, (t, 2, k)).astype(np.int16),
        depth_qty=rng.integers(0, 2**62, (t, 2, k)).astype(np.int64),
        mid=rng.uniform(0, 1000, t),
        ts=np.arange(t, dtype=np.int64) * 1000 + 1_700_000_000_000,
        ttc=rng.uniform(0, 1, t).astype(np.float32),
        seg_start=ends - np.array(lengths),
        seg_end=ends,
        seg_market=np.array([0, 1, 0], dtype=np.int32)[: len(lengths)],
        seg_result=np.array([RESULT_UNKNOWN, RESULT_YES, RESULT_UNKNOWN], dtype=np.int8)[
            : len(lengths)
        ],
        markets=("KX-A", "KX-B"),
        meta={"source": "test", "cadence_ms": 1000, "window": [1, 2]},
    )


def _assert_identical(a: Dataset, b: Dataset) -> None:
    for name in (
        "features",
        "depth_px",
        "depth_qty",
        "mid",
        "ts",
        "ttc",
        "seg_start",
        "seg_end",
        "seg_market",
        "seg_result",
    ):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), name  # bit-identical, incl. -0.0 and subnormals
    assert a.markets == b.markets and a.meta == b.meta


@pytest.mark.parametrize("name", ["ds", "ds.parquet"])
def test_round_trip_bit_identical(tmp_path: Path, name: str) -> None:
    ds = _dataset()
    out = pqs.save_dataset(ds, tmp_path / name)
    back = pqs.load_dataset(out)
    _assert_identical(ds, back)
    back.features[0, 0] = 5.0  # loaded arrays are writable copies
    assert (tmp_path / name).is_dir() == (name == "ds")


def test_round_trip_empty_and_subset(tmp_path: Path) -> None:
    ds = _dataset()
    empty = ds.subset(np.zeros(0, dtype=np.int64))
    _assert_identical(empty, pqs.load_dataset(pqs.save_dataset(empty, tmp_path / "e")))
    sub = ds.subset(np.array([2, 0]))
    _assert_identical(sub, pqs.load_dataset(pqs.save_dataset(sub, tmp_path / "s.parquet")))


def test_info_summarises(tmp_path: Path) -> None:
    info = pqs.dataset_info(_dataset())
    assert info["rows"] == 13 and info["segments"] == 3 and info["segments_settled"] == 1
    assert info["segment_rows_min"] == 1 and info["segment_rows_max"] == 7
    assert info["version"] == DATASET_VERSION


def test_inconsistent_dataset_not_saved(tmp_path: Path) -> None:
    bad = _dataset()._replace(seg_end=np.array([5, 6, 12], dtype=np.int64))
    with pytest.raises(DatasetError, match="do not tile"):
        pqs.save_dataset(bad, tmp_path / "x")


def test_corrupted_file_rejected(tmp_path: Path) -> None:
    p = pqs.save_dataset(_dataset(), tmp_path / "c.parquet")
    data = bytearray(p.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    p.write_bytes(bytes(data[: len(data) - 40]))  # truncated footer as well
    with pytest.raises(DatasetError, match="cannot read"):
        pqs.load_dataset(p)
    with pytest.raises(DatasetError, match="no dataset file"):
        pqs.load_dataset(tmp_path / "missing.parquet")


def test_foreign_parquet_and_wrong_version_rejected(tmp_path: Path) -> None:
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), plain)
    with pytest.raises(DatasetError, match="not a kalshi-rl dataset"):
        pqs.load_dataset(plain)
    d = pqs.save_dataset(_dataset(), tmp_path / "d")
    t = pq.read_table(d / pqs.ROWS_FILE)
    head = orjson.loads(t.schema.metadata[pqs.META_KEY])
    head["version"] = DATASET_VERSION + 1
    pq.write_table(t.replace_schema_metadata({pqs.META_KEY: orjson.dumps(head)}), d / pqs.ROWS_FILE)
    with pytest.raises(DatasetError, match=f"dataset version {DATASET_VERSION + 1}"):
        pqs.load_dataset(d)


def test_mismatched_segments_file_rejected(tmp_path: Path) -> None:
    a = pqs.save_dataset(_dataset(lengths=(5, 1, 7)), tmp_path / "a")
    b = pqs.save_dataset(_dataset(lengths=(2, 2, 2)), tmp_path / "b")
    (a / pqs.SEGMENTS_FILE).write_bytes((b / pqs.SEGMENTS_FILE).read_bytes())
    with pytest.raises(DatasetError, match="segments do not tile the rows contiguously"):
        pqs.load_dataset(a)


def test_wrong_column_types_listed(tmp_path: Path) -> None:
    d = pqs.save_dataset(_dataset(), tmp_path / "d")
    t = pq.read_table(d / pqs.ROWS_FILE)
    meta = t.schema.metadata
    t = t.set_column(t.column_names.index("ts"), "ts", t.column("ts").cast(pa.float64()))
    t = t.set_column(
        t.column_names.index("depth_px"),
        "depth_px",
        t.column("depth_px").cast(pa.list_(pa.int16(), 8)).cast(pa.list_(pa.int32(), 8)),
    )
    pq.write_table(t.replace_schema_metadata(meta), d / pqs.ROWS_FILE)
    with pytest.raises(DatasetError) as exc:
        pqs.load_dataset(d)
    assert "column ts is double, expected int64" in str(exc.value)
    assert "column depth_px holds int32, expected int16" in str(exc.value)


def test_row_count_mismatch_rejected(tmp_path: Path) -> None:
    d = pqs.save_dataset(_dataset(), tmp_path / "d")
    t = pq.read_table(d / pqs.ROWS_FILE)
    pq.write_table(t.slice(0, 10).replace_schema_metadata(t.schema.metadata), d / pqs.ROWS_FILE)
    with pytest.raises(DatasetError, match="10 rows, metadata says 13"):
        pqs.load_dataset(d)
