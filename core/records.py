"""Record helpers shared by the engine kernels (numba only, no project imports but dtypes)."""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

from core.dtypes import SIDE_NO, SIDE_YES


def first_record(arr: np.ndarray | np.void) -> np.void:
    """Row 0 of a structured array, or the record itself (resolved at compile time in njit).

    Lets kernels take ``pos`` / ``order`` as a length-1 array slice (``pos[i:i+1]``) or a
    record (``pos[i]``); both write through to the caller's array.
    """
    return arr if isinstance(arr, np.void) else arr[0]


@overload(first_record, inline="always")
def _first_record_ol(arr):
    if isinstance(arr, types.Array):
        return lambda arr: arr[0]
    if isinstance(arr, types.Record):
        return lambda arr: arr
    return None


@njit(cache=True, inline="always")
def other_side(side: int) -> int:
    """SIDE_NO for SIDE_YES and the other way round."""
    return SIDE_NO if side == SIDE_YES else SIDE_YES
