"""COPY binary decoding: ``COPY (SELECT ...) TO STDOUT (FORMAT binary)`` -> record arrays.

Every column the history reads is NOT NULL and fixed-width, so each row has the same byte
layout; one njit pass per batch byte-swaps the values straight into a ``core.dtypes``
record array (mapping ``markets.id`` to the ticker index) -- no per-row Python objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numba import njit

from core.dtypes import (
    COPY_HEADER,
    COPY_SIGNATURE,
    COPY_TRAILER,
    DELTA_COPY_COLUMNS,
    GAP_COPY_COLUMNS,
    SNAPSHOT_COPY_COLUMNS,
    TRADE_COPY_COLUMNS,
)
from kalshi_rl.errors import StoreError

# Record field each COPY column lands in, where it differs from the column name.
_COL_FIELD = {"session_id": "session", "market_id": "market"}
# A NULL trade_id cannot be decoded at a fixed width: read it as the all-zero uuid, which
# is what the recorder writes NULL for.
_COL_EXPR = {"trade_id": "coalesce(trade_id, '00000000-0000-0000-0000-000000000000'::uuid)"}


def _query_cols(layout: Sequence[tuple[str, int]]) -> tuple[tuple[str, int, str, str], ...]:
    """(sql expression, binary width, numpy big-endian type, record field) per column.

    ``layout`` is a table's ``*_COPY_COLUMNS`` of core.dtypes (what core.ring writes).
    A 16-byte uuid is read as two big-endian uint64 halves.
    """
    return tuple(
        (
            _COL_EXPR.get(name, name),
            width,
            ">u8,>u8" if width == 16 else f">i{width}",
            _COL_FIELD.get(name, name),
        )
        for name, width in layout
    )


# Binary COPY costs PostgreSQL a send-function call and a length word per value, so the
# delta stream packs (market_id, side, status, price) into one big-endian int8 server-side:
# bytes 0-3 market_id, 4 side, 5 status (their low bytes: the record fields are int8),
# 6-7 price.  Each part is then decoded like a column of its own (no length prefix).
# 3 fewer values per row: ~20% less COPY time, 12 bytes less per row on the wire.
_PACK_NAME = "market+side+status+price"
_PACKED_PARTS = {_PACK_NAME: (("market", 0, 4), ("side", 4, 1), ("status", 5, 1), ("price", 6, 2))}
_PACK_EXPR = (
    "(market_id::int8 << 32) | ((side::int8 & 255) << 24)"
    " | (((status::int4 & 255) << 16) | (price::int4 & 65535))::int8"
)


def _col_fields(name: str) -> tuple[str, ...]:
    """Record fields a column (or packed column) fills."""
    return tuple(p[0] for p in _PACKED_PARTS[name]) if name in _PACKED_PARTS else (name,)


def _pack_deltas(
    cols: tuple[tuple[str, int, str, str], ...],
) -> tuple[tuple[str, int, str, str], ...]:
    """The delta columns with market/side/status/price replaced by the packed column."""
    parts = set(_col_fields(_PACK_NAME))
    if not parts <= {c[3] for c in cols}:  # pragma: no cover - a layout change in core.dtypes
        raise StoreError(f"delta COPY columns lack {sorted(parts)}")
    out: list[tuple[str, int, str, str]] = []
    for c in cols:
        if c[3] == "market":
            out.append((_PACK_EXPR, 8, ">i8", _PACK_NAME))
        elif c[3] not in parts:
            out.append(c)
    return tuple(out)


_SNAP_COLS = _query_cols(SNAPSHOT_COPY_COLUMNS)
_DELTA_COLS = _pack_deltas(_query_cols(DELTA_COPY_COLUMNS))
# What the replay needs of a delta (``lean`` loads): 5 values of 42 bytes instead of 8 of 64.
_DELTA_COLS_LEAN = tuple(c for c in _DELTA_COLS if c[3] not in ("sid", "seq", "recv_ts"))
_GAP_COLS = _query_cols(GAP_COPY_COLUMNS)
_TRADE_COLS = _query_cols(TRADE_COPY_COLUMNS)


_K_COPY = 0  # byte-reverse the big-endian value into the record field (narrowing keeps low bytes)
_K_MARKET = 1  # markets.id -> index into the tickers, through a lookup table
_K_SESSION = 2  # to the separate session array


class _Layout(NamedTuple):
    """Where each value of a binary COPY row lies and where it goes in the record."""

    row_size: int
    len_off: np.ndarray  # int64 offsets of the int32 length prefixes within a row
    len_want: np.ndarray  # int64 their expected values (the column widths)
    src_off: np.ndarray  # int64 value offsets within a row
    src_w: np.ndarray  # int64 value widths on the wire
    dst_off: np.ndarray  # int64 field offsets in the record
    dst_w: np.ndarray  # int64 field widths in the record
    kind: np.ndarray  # int64 _K_*


def _layout(cols: Sequence[tuple[str, int, str, str]], dtype: np.dtype) -> _Layout:
    """Byte layout of one binary COPY row of fixed-width NOT NULL columns -> ``dtype``."""
    off = 2  # int16 field count
    lo, lw, so, sw, do, dw, kind = [], [], [], [], [], [], []
    for _, width, _, name in cols:
        lo.append(off)
        lw.append(width)
        off += 4
        # a 16-byte uuid lands in two big-endian uint64 halves <name>_hi / <name>_lo; a
        # packed column in its parts
        if name in _PACKED_PARTS:
            parts = list(_PACKED_PARTS[name])
        elif width == 16:
            parts = [(name + "_hi", 0, 8), (name + "_lo", 8, 8)]
        else:
            parts = [(name, 0, width)]
        for field, sub, w in parts:
            so.append(off + sub)
            sw.append(w)
            if field == "session":
                do.append(0)
                dw.append(8)
                kind.append(_K_SESSION)
                continue
            ftype, foff = dtype.fields[field][:2]  # type: ignore[index]
            do.append(foff)
            dw.append(ftype.itemsize)
            kind.append(_K_MARKET if field == "market" else _K_COPY)
        off += width
    a = np.array
    return _Layout(
        off,
        a(lo, np.int64),
        a(lw, np.int64),
        a(so, np.int64),
        a(sw, np.int64),
        a(do, np.int64),
        a(dw, np.int64),
        a(kind, np.int64),
    )


@njit(cache=True)
def _decode_into(  # noqa: PLR0917 -- njit kernel over positional arrays
    buf: np.ndarray,
    start: int,
    n: int,
    row_size: int,
    n_fields: int,
    len_off: np.ndarray,
    len_want: np.ndarray,
    src_off: np.ndarray,
    src_w: np.ndarray,
    dst_off: np.ndarray,
    dst_w: np.ndarray,
    kind: np.ndarray,
    lut: np.ndarray,
    out: np.ndarray,
    session: np.ndarray,
) -> int:
    """Big-endian fixed-layout COPY rows -> little-endian record fields, one pass.

    Args:
        buf: uint8 COPY buffer; start: offset of the first row; n: rows.
        row_size, n_fields, len_off, len_want, src_off, src_w, dst_off, dst_w, kind:
            from :func:`_layout`.
        lut: int32 markets.id -> ticker index (-1 unknown).
        out: uint8 [n, itemsize] view of the zeroed record array.
        session: int64 [n] receives the session ids.

    Returns:
        -1 when every row has the layout, else the index of the first row that does not
        (a NULL has length -1, a variable-width value another length).
    """
    nv = src_off.shape[0]
    for i in range(n):
        base = start + i * row_size
        if ((np.int64(buf[base]) << 8) | np.int64(buf[base + 1])) != n_fields:
            return i
        for c in range(len_off.shape[0]):
            o = base + len_off[c]
            ln = (
                (np.int64(buf[o]) << 24)
                | (np.int64(buf[o + 1]) << 16)
                | (np.int64(buf[o + 2]) << 8)
                | np.int64(buf[o + 3])
            )
            if ln != len_want[c]:
                return i
        for v in range(nv):
            o = base + src_off[v]
            w = src_w[v]
            k = kind[v]
            if k == _K_COPY:
                d = dst_off[v]
                for b in range(dst_w[v]):
                    out[i, d + b] = buf[o + w - 1 - b]
                continue
            x = np.int64(0)
            for b in range(w):
                x = (x << 8) | np.int64(buf[o + b])
            if k == _K_SESSION:
                session[i] = x
            else:
                idx = lut[x] if 0 <= x < lut.shape[0] else -1
                d = dst_off[v]
                for b in range(dst_w[v]):
                    out[i, d + b] = (idx >> (8 * b)) & 0xFF
    return -1


class CopyDecoder:
    """Decodes ``COPY ... (FORMAT binary)`` rows of fixed-width columns as chunks arrive.

    Decoding a batch while the server formats the next one overlaps our work with
    PostgreSQL's; no per-row Python objects are made.

    Args:
        cols: (expr, width, wire type, name) per column in SELECT order; ``name`` is a
            field of ``dtype``, or ``"session"`` (returned apart), ``"market"`` (mapped
            through ``lut``); a 16-byte column fills ``<name>_hi``/``<name>_lo``.
        dtype: the record dtype (fields not in ``cols`` stay 0).
        lut: int32 lookup markets.id -> market index (-1 unknown).
        batch_bytes: decode once this much is buffered.
    """

    def __init__(
        self,
        cols: Sequence[tuple[str, int, str, str]],
        dtype: np.dtype,
        lut: np.ndarray,
        batch_bytes: int = 1 << 22,
    ) -> None:
        self._cols = tuple(cols)
        self._lay = _layout(cols, dtype)
        self._dtype = dtype
        self._lut = lut.astype(np.int32, copy=False)
        self._batch = batch_bytes
        self._pending = bytearray()
        self._header = False
        self._rows = 0
        self._parts: list[np.ndarray] = []
        self._sessions: list[np.ndarray] = []

    async def sink(self, chunk: bytes) -> None:
        """``copy_from_query(output=...)`` callback."""
        self.feed(chunk)

    def feed(self, chunk: bytes) -> None:
        """Add COPY output; decodes whole rows once ``batch_bytes`` are buffered."""
        self._pending += chunk
        if len(self._pending) >= self._batch:
            self._drain(final=False)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """(records of ``dtype``, int64 session ids) of everything fed, in COPY order.

        Raises:
            StoreError: bad signature, truncated data, or a row that does not have the
                fixed layout (a NULL or a value of another width).
        """
        self._drain(final=True)
        if len(self._parts) == 1:
            return self._parts[0], self._sessions[0]
        if not self._parts:
            return np.zeros(0, dtype=self._dtype), np.zeros(0, dtype=np.int64)
        return _concat_records(self._parts), np.concatenate(self._sessions)

    def _drain(self, *, final: bool) -> None:
        buf = self._pending
        pos = 0
        head = len(COPY_HEADER)  # ends with the int32 length of a header extension
        trail = len(COPY_TRAILER)
        if not self._header:
            if len(buf) < head and not final:
                return
            if buf[: len(COPY_SIGNATURE)] != COPY_SIGNATURE or len(buf) < head + trail:
                raise StoreError("COPY output is not PostgreSQL binary format (bad signature)")
            pos = head + int.from_bytes(buf[head - 4 : head], "big")
            if len(buf) < pos:
                if final:
                    raise StoreError("COPY output ends inside its header")
                return
            self._header = True
        size = self._lay.row_size
        avail = len(buf) - pos
        if final:
            if avail < trail or buf[-trail:] != COPY_TRAILER or (avail - trail) % size:
                raise StoreError(
                    f"COPY output is not whole rows of {size} bytes + trailer"
                    f" ({avail} bytes after row {self._rows})"
                )
            avail -= trail
        n = avail // size
        if n or (final and not self._parts):
            self._decode(buf, pos, n)
        del buf[: pos + n * size]

    def _decode(self, buf: bytearray, pos: int, n: int) -> None:
        lay = self._lay
        out = np.zeros(n, dtype=self._dtype)
        session = np.zeros(n, dtype=np.int64)
        view = np.frombuffer(buf, dtype=np.uint8)
        bad = _decode_into(
            view,
            pos,
            n,
            lay.row_size,
            len(self._cols),
            lay.len_off,
            lay.len_want,
            lay.src_off,
            lay.src_w,
            lay.dst_off,
            lay.dst_w,
            lay.kind,
            self._lut,
            out.view(np.uint8).reshape(n, self._dtype.itemsize),
            session,
        )
        del view  # release the export so the bytearray can shrink
        if bad >= 0:
            raise StoreError(
                f"COPY row {self._rows + bad} does not have the fixed layout of "
                f"({', '.join(c[0] for c in self._cols)}): a NULL or a value of another width"
            )
        self._rows += n
        self._parts.append(out)
        self._sessions.append(session)


def _concat_records(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate record arrays byte for byte (np.concatenate leaves padding unset)."""
    dtype = parts[0].dtype
    n = sum(p.shape[0] for p in parts)
    out = np.zeros(n, dtype=dtype)
    flat = out.view(np.uint8).reshape(n, dtype.itemsize)
    i = 0
    for p in parts:
        flat[i : i + p.shape[0]] = p.view(np.uint8).reshape(p.shape[0], dtype.itemsize)
        i += p.shape[0]
    return out


def decode_copy_binary(
    buf: bytes,
    cols: Sequence[tuple[str, int, str, str]],
    dtype: np.dtype,
    lut: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode a whole ``COPY ... (FORMAT binary)`` buffer (see :class:`CopyDecoder`).

    Returns:
        (records of ``dtype``, int64 session ids), in COPY order.
    """
    dec = CopyDecoder(cols, dtype, lut)
    dec.feed(buf)
    return dec.finish()
