"""numba decoration for the fast engine, with a fallback when the on-disk cache is unusable,
and the small inline helpers compiled loops across the package share.

Kept in its own module so the generated and hand-written kernel modules can share it
without importing ``fast.py`` (which imports them).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numba

# Pulses per SIMD block. Kernels index flat arrays as entry·LANES + lane with this
# compile-time constant, so LLVM sees unit-stride lanes and constant offsets between
# entries and vectorises the lane loops (16 doubles = two AVX-512 registers).
LANES = 16


def jit(fn: Callable[..., Any] | None = None, **extra: Any) -> Any:
    """``numba.njit(cache=True)``, or without the on-disk cache when it cannot be written.

    numba raises ``RuntimeError`` at decoration time when no cache location is writable
    (read-only install, no home directory); compiling on every start is slower, not wrong.
    """
    # 'contract' only lets LLVM fuse a*b+c into FMA: no reassociation, no NaN/inf tricks.
    opts: dict[str, Any] = {"fastmath": {"contract"}, "error_model": "numpy", **extra}

    def deco(f: Callable[..., Any]) -> Any:
        try:
            return numba.njit(cache=True, **opts)(f)
        except RuntimeError as exc:  # depends on the file system
            warnings.warn(f"numba cache unavailable ({exc}); compiling without it",
                          RuntimeWarning, stacklevel=3)
            return numba.njit(cache=False, **opts)(f)

    return deco if fn is None else deco(fn)


@jit(fastmath=False, inline="always")
def clip(x: float, lo: float, hi: float) -> float:
    """``np.clip``'s element rule for compiled loops: max then min, NaN passing through, a
    value equal to a bound giving the bound (the same number)."""
    m = x if (x != x or x > lo) else lo
    return m if (m != m or m < hi) else hi
