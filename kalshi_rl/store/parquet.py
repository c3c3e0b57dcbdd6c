"""Save and load a :class:`core.dataset.Dataset` as Parquet, bit-identically.

Two layouts, chosen by the path:

* a directory (any path not ending in ``.parquet``): ``rows.parquet`` (one row per
  decision point) and ``segments.parquet`` (one row per segment);
* a single ``*.parquet`` file: the rows table, with the segment arrays in its schema
  metadata (JSON lists of integers, so still exact).

Rows columns: ``features`` fixed_size_list<float32>[F], ``depth_px``
fixed_size_list<int16>[2*K] (side-major: YES levels then NO levels), ``depth_qty``
fixed_size_list<int64>[2*K], ``mid`` float64, ``ts`` int64, ``ttc`` float32.
Segments columns: ``seg_start``/``seg_end`` int64, ``seg_market`` int32, ``seg_result`` int8,
and when the dataset has them ``seg_close_ts`` int64 and ``seg_end_reason`` int8 (files
without them load with None there).
The rows schema metadata key ``kalshi_rl.dataset`` holds JSON: ``version``
(DATASET_VERSION), ``markets``, ``meta``, ``top_k``, ``n_features``, ``n_rows``,
``n_segments``.  Loading checks all of it and :func:`core.dataset.validate`, and raises
:class:`~kalshi_rl.errors.DatasetError` listing the problems.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from core.dataset import Dataset, validate
from core.dtypes import (
    DATASET_VERSION,
    SEG_END_CLOSE,
    SEG_END_DATA,
    SEG_END_DESYNC,
    SEG_END_GAP,
    SEG_END_RECORDING,
)
from kalshi_rl.errors import DatasetError

META_KEY = b"kalshi_rl.dataset"
SEGMENTS_KEY = b"kalshi_rl.segments"
ROWS_FILE = "rows.parquet"
SEGMENTS_FILE = "segments.parquet"

_SEG_COLUMNS = (
    ("seg_start", np.int64),
    ("seg_end", np.int64),
    ("seg_market", np.int32),
    ("seg_result", np.int8),
)
# Optional segment columns: written when the dataset has them, None when a file lacks them.
_SEG_OPTIONAL = (("seg_close_ts", np.int64), ("seg_end_reason", np.int8))
_ROW_SCALARS = (("mid", np.float64), ("ts", np.int64), ("ttc", np.float32))


def _seg_columns(ds: Dataset) -> tuple[tuple[str, Any], ...]:
    """The segment columns ``ds`` has (the required ones and its optional ones)."""
    return _SEG_COLUMNS + tuple(c for c in _SEG_OPTIONAL if getattr(ds, c[0]) is not None)


def _fixed_list(arr: np.ndarray, width: int) -> pa.FixedSizeListArray:
    flat = np.ascontiguousarray(arr).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), width)


def _rows_table(ds: Dataset, extra_meta: dict[bytes, bytes]) -> pa.Table:
    t, f = ds.features.shape
    k = ds.top_k
    head = {
        "version": DATASET_VERSION,
        "markets": list(ds.markets),
        "meta": ds.meta,
        "top_k": k,
        "n_features": f,
        "n_rows": t,
        "n_segments": ds.n_segments,
    }
    cols = {
        "features": _fixed_list(ds.features.astype(np.float32, copy=False), f),
        "depth_px": _fixed_list(ds.depth_px.astype(np.int16, copy=False), 2 * k),
        "depth_qty": _fixed_list(ds.depth_qty.astype(np.int64, copy=False), 2 * k),
    }
    for name, dt in _ROW_SCALARS:
        cols[name] = pa.array(np.ascontiguousarray(getattr(ds, name), dtype=dt))
    meta = {META_KEY: orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY), **extra_meta}
    return pa.table(cols).replace_schema_metadata(meta)


def _segments_table(ds: Dataset) -> pa.Table:
    return pa.table(
        {
            name: pa.array(np.ascontiguousarray(getattr(ds, name), dtype=dt))
            for name, dt in _seg_columns(ds)
        }
    )


def save_dataset(ds: Dataset, path: str | Path) -> Path:
    """Write ``ds`` to ``path`` (a directory, or one ``*.parquet`` file).

    Args:
        ds: a dataset that passes :func:`core.dataset.validate`.
        path: target; a ``.parquet`` suffix selects the single-file layout.

    Returns:
        The path written.
    """
    problems = validate(ds)
    if problems:
        raise DatasetError("refusing to save an inconsistent dataset: " + "; ".join(problems))
    path = Path(path)
    if path.suffix == ".parquet":
        segs = {name: np.asarray(getattr(ds, name)).tolist() for name, _ in _seg_columns(ds)}
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_rows_table(ds, {SEGMENTS_KEY: orjson.dumps(segs)}), path)
        return path
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(_rows_table(ds, {}), path / ROWS_FILE)
    pq.write_table(_segments_table(ds), path / SEGMENTS_FILE)
    return path


def _read(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except FileNotFoundError as exc:
        raise DatasetError(f"no dataset file at {path}") from exc
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"cannot read {path} as Parquet: {exc}") from exc


def _fixed_to_numpy(
    table: pa.Table, name: str, width: int, dtype: Any, problems: list[str]
) -> np.ndarray:
    col = table.column(name)
    typ = col.type
    if not pa.types.is_fixed_size_list(typ) or typ.list_size != width:
        problems.append(f"column {name} is {typ}, expected fixed_size_list[{width}]")
        return np.zeros((0, width), dtype=dtype)
    if typ.value_type != pa.from_numpy_dtype(np.dtype(dtype)):
        problems.append(f"column {name} holds {typ.value_type}, expected {np.dtype(dtype)}")
        return np.zeros((0, width), dtype=dtype)
    arr = col.combine_chunks()
    # flatten() honours slice offsets; copy so the arrays are writable and own their memory.
    flat = arr.flatten().to_numpy(zero_copy_only=False)
    return np.array(flat, dtype=dtype).reshape(len(arr), width)


def _scalar(table: pa.Table, name: str, dtype: Any, problems: list[str]) -> np.ndarray:
    if name not in table.column_names:
        problems.append(f"missing column {name}")
        return np.zeros(0, dtype=dtype)
    col = table.column(name)
    if col.type != pa.from_numpy_dtype(np.dtype(dtype)):
        problems.append(f"column {name} is {col.type}, expected {np.dtype(dtype)}")
        return np.zeros(0, dtype=dtype)
    if col.null_count:
        problems.append(f"column {name} has {col.null_count} nulls")
    return np.array(col.to_numpy(), dtype=dtype)


def _header(table: pa.Table, path: Path) -> dict[str, Any]:
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise DatasetError(f"{path} is not a kalshi-rl dataset (no {META_KEY.decode()} metadata)")
    try:
        head: dict[str, Any] = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DatasetError(f"{path}: dataset metadata is not JSON: {exc}") from exc
    if head.get("version") != DATASET_VERSION:
        raise DatasetError(
            f"{path}: dataset version {head.get('version')!r}, this code reads {DATASET_VERSION}"
        )
    missing = [
        k
        for k in ("markets", "meta", "top_k", "n_features", "n_rows", "n_segments")
        if k not in head
    ]
    if missing:
        raise DatasetError(f"{path}: dataset metadata lacks {', '.join(missing)}")
    return head


def _segments(path: Path, rows: pa.Table, problems: list[str]) -> dict[str, np.ndarray | None]:
    if path.is_dir():
        seg_table = _read(path / SEGMENTS_FILE)
        out: dict[str, np.ndarray | None] = {
            name: _scalar(seg_table, name, dt, problems) for name, dt in _SEG_COLUMNS
        }
        for name, dt in _SEG_OPTIONAL:
            has = name in seg_table.column_names
            out[name] = _scalar(seg_table, name, dt, problems) if has else None
        return out
    raw = (rows.schema.metadata or {}).get(SEGMENTS_KEY)
    if raw is None:
        raise DatasetError(f"{path}: no {SEGMENTS_KEY.decode()} metadata")
    try:
        segs = orjson.loads(raw)
        out = {name: np.array(segs[name], dtype=dt) for name, dt in _SEG_COLUMNS}
        for name, dt in _SEG_OPTIONAL:
            out[name] = np.array(segs[name], dtype=dt) if name in segs else None
        return out
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: bad segment metadata: {exc}") from exc


def load_dataset(path: str | Path) -> Dataset:
    """Read a dataset written by :func:`save_dataset`.

    Args:
        path: the directory or ``*.parquet`` file.

    Returns:
        The dataset, arrays bit-identical to the saved ones (writable copies).

    Raises:
        DatasetError: unreadable file, unknown version, wrong column types/sizes, or any
            problem :func:`core.dataset.validate` finds (all listed in the message).
    """
    path = Path(path)
    rows = _read(path / ROWS_FILE if path.is_dir() else path)
    head = _header(rows, path)
    problems: list[str] = []
    for name in ("features", "depth_px", "depth_qty"):
        if name not in rows.column_names:
            raise DatasetError(f"{path}: missing column {name}")
    k = int(head["top_k"])
    features = _fixed_to_numpy(rows, "features", int(head["n_features"]), np.float32, problems)
    depth_px = _fixed_to_numpy(rows, "depth_px", 2 * k, np.int16, problems)
    depth_qty = _fixed_to_numpy(rows, "depth_qty", 2 * k, np.int64, problems)
    scalars = {name: _scalar(rows, name, dt, problems) for name, dt in _ROW_SCALARS}
    segs = _segments(path, rows, problems)
    seg_start = segs["seg_start"]
    assert seg_start is not None  # a required column (a problem is listed when missing)
    if rows.num_rows != head["n_rows"]:
        problems.append(f"{rows.num_rows} rows, metadata says {head['n_rows']}")
    if seg_start.shape[0] != head["n_segments"]:
        problems.append(f"{seg_start.shape[0]} segments, metadata says {head['n_segments']}")
    if problems:
        raise DatasetError(f"{path}: " + "; ".join(problems))
    ds = Dataset(
        features=features,
        depth_px=depth_px.reshape(-1, 2, k),
        depth_qty=depth_qty.reshape(-1, 2, k),
        mid=scalars["mid"],
        ts=scalars["ts"],
        ttc=scalars["ttc"],
        seg_start=seg_start,
        seg_end=_required(segs, "seg_end"),
        seg_market=_required(segs, "seg_market"),
        seg_result=_required(segs, "seg_result"),
        markets=tuple(str(m) for m in head["markets"]),
        meta=dict(head["meta"]),
        seg_close_ts=segs["seg_close_ts"],
        seg_end_reason=segs["seg_end_reason"],
    )
    problems = validate(ds)
    if problems:
        raise DatasetError(f"{path}: inconsistent dataset: " + "; ".join(problems))
    return ds


def _required(segs: dict[str, np.ndarray | None], name: str) -> np.ndarray:
    arr = segs[name]
    assert arr is not None, name  # required columns are always filled (maybe empty)
    return arr


def _end_reasons(ds: Dataset) -> dict[str, int] | None:
    if ds.seg_end_reason is None:
        return None
    return {
        name: int(np.count_nonzero(ds.seg_end_reason == code)) for code, name in _END_NAMES.items()
    }


_END_NAMES = {
    SEG_END_DATA: "data",
    SEG_END_GAP: "gap",
    SEG_END_DESYNC: "desync",
    SEG_END_CLOSE: "close",
    SEG_END_RECORDING: "recording",
}


def dataset_info(ds: Dataset) -> dict[str, Any]:
    """A JSON-able summary: sizes, markets, segment lengths, results, time span, meta."""
    lengths = ds.seg_end - ds.seg_start
    return {
        "version": DATASET_VERSION,
        "rows": ds.n_rows,
        "segments": ds.n_segments,
        "markets": len(ds.markets),
        "top_k": ds.top_k,
        "n_features": int(ds.features.shape[1]) if ds.features.ndim == 2 else 0,
        "segment_rows_min": int(lengths.min()) if lengths.size else 0,
        "segment_rows_median": float(np.median(lengths)) if lengths.size else 0.0,
        "segment_rows_max": int(lengths.max()) if lengths.size else 0,
        "segments_settled": int(np.count_nonzero(ds.seg_result >= 0)),
        "segments_closed": (
            None
            if ds.seg_end_reason is None
            else int(np.count_nonzero(ds.seg_end_reason == SEG_END_CLOSE))
        ),
        "segment_ends": _end_reasons(ds),
        "ts_first": int(ds.ts.min()) if ds.n_rows else None,
        "ts_last": int(ds.ts.max()) if ds.n_rows else None,
        "meta": ds.meta,
    }
