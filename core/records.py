"""Record helpers shared by the engine kernels (numba only, no project imports but dtypes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload
from numba.np.arrayobj import make_array

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


@intrinsic
def _borrow(typingctx, arr):
    # the array struct of ``arr`` with its meminfo and parent set to NULL (see ``borrow``)
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, sig, args):
        src = make_array(sig.args[0])(context, builder, value=args[0])
        dst = make_array(sig.return_type)(context, builder)
        dst.meminfo = cgutils.get_null_value(dst.meminfo.type)
        dst.parent = cgutils.get_null_value(dst.parent.type)
        dst.nitems = src.nitems
        dst.itemsize = src.itemsize
        dst.data = src.data
        dst.shape = src.shape
        dst.strides = src.strides
        return dst._getvalue()

    return arr(arr), codegen


# A view of ``arr`` that holds no reference (njit only; valid while ``arr`` lives).
#
# Numba counts the references of every array view it makes (``a[t]``, ``a[i:i+1]``) with
# an atomic increment and decrement, out of line.  In the env's step loop that counting
# was about 40% of the kernel's time.  Views of a borrowed array carry no reference, so
# the counting calls return at once.  Use it only on arguments of the kernel that calls
# it, for views that do not outlive the call (never return or store a borrowed array).
# Typed for mypy as what it is to its callers; calling it from Python raises (intrinsic).
borrow = cast("Callable[[np.ndarray], np.ndarray]", _borrow)
