"""Calling compiled Numba kernels from Python without the per-call type dispatch.

A Numba dispatcher works out every argument's type on each call (~50-100 ns per array,
more for record arrays and ndarray subclasses, ~15 ns per int): with the actor's ~50
step arguments that is a few us of a ~12 us decision.  ``FastCall`` pays it once.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class FastCall:
    """Calls one compiled overload of an njit kernel directly, skipping type dispatch.

    The first call goes through the dispatcher (compiling if needed) and keeps the
    overload for the arguments' types; later calls enter it directly.  The caller must
    pass arguments of the same types every time -- except argument ``key_arg`` (if given),
    an array whose type may vary between calls: one overload is kept per (dtype, strides)
    of it (the kernel must only read it).  ``reset`` resolves again.

    Args:
        kernel: an ``@njit`` dispatcher.
        key_arg: index of the one argument whose array type may vary (None: none).
    """

    def __init__(self, kernel: Any, key_arg: int | None = None) -> None:
        self.kernel = kernel
        self.key_arg = key_arg
        self._entry: Any = None
        self._by_key: dict[tuple[int, tuple[int, ...]], Any] = {}

    @property
    def entry(self) -> Any:
        """The resolved overload's entry point (call it with the same argument types), or
        None before the first call / after ``reset`` (then call this object)."""
        return self._entry

    def prepare(self, *args: Any) -> None:
        """Compile (or load from Numba's cache) the overload for these arguments' types and
        keep its entry, without calling the kernel (warm-up off the hot path)."""
        sig = tuple(self.kernel.typeof_pyval(a) for a in args)
        self.kernel.compile(sig)
        entry = self.kernel.overloads[sig].entry_point
        if self.key_arg is None:
            self._entry = entry
        else:
            a: np.ndarray = args[self.key_arg]
            self._by_key[(a.dtype.num, a.strides)] = entry

    def reset(self) -> None:
        """Resolve the overload again on the next call."""
        self._entry = None
        self._by_key.clear()

    def __call__(self, *args: Any) -> Any:
        if self.key_arg is None:
            entry = self._entry
            if entry is not None:
                return entry(*args)
            out = self.kernel(*args)
            self._entry = self._resolve(args)
            return out
        a: np.ndarray = args[self.key_arg]
        key = (a.dtype.num, a.strides)  # dtype, ndim and layout (numba's array type)
        entry = self._by_key.get(key)
        if entry is not None:
            return entry(*args)
        out = self.kernel(*args)
        self._by_key[key] = self._resolve(args)
        return out

    def _resolve(self, args: tuple[Any, ...]) -> Any:
        # the overload compiled for exactly these argument types; when there is none (e.g.
        # a call that left defaulted arguments out), calls keep going through the dispatcher
        sig = tuple(self.kernel.typeof_pyval(a) for a in args)
        cres = self.kernel.overloads.get(sig)
        return self.kernel if cres is None else cres.entry_point
