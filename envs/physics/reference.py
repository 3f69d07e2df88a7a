"""Plain NumPy/SciPy implementation of the propagators: slow, obvious, exact.

It is the readable statement of what the fast engine must reproduce: per-sample
Hamiltonians diagonalised with ``eigh`` (closed system) or Lindbladians exponentiated
with SciPy's Padé ``expm`` (open system), multiplied in time order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.linalg import expm

from .model import ComplexArray, Transmon, hamiltonians_rad_s, lindbladians


def _time_ordered_product(steps: ComplexArray) -> ComplexArray:
    """(B, S, D, D) per-sample propagators -> (B, D, D) product, sample 0 acting first."""
    out = steps[:, 0].copy()
    for k in range(1, steps.shape[1]):
        out = steps[:, k] @ out
    return out


def per_row(
    fn: Callable[[Transmon, ComplexArray], ComplexArray],
) -> Callable[[Transmon | Sequence[Transmon], ComplexArray], ComplexArray]:
    """Lift ``fn(t, w)`` to a tuple of Transmons, one per row, by grouping equal rows."""

    def wrapped(t: Transmon | Sequence[Transmon], w: ComplexArray) -> ComplexArray:
        if isinstance(t, Transmon):
            return fn(t, w)
        groups: dict[Transmon, list[int]] = {}
        for i, row in enumerate(t):
            groups.setdefault(row, []).append(i)
        parts = {row: fn(row, w[idx]) for row, idx in groups.items()}
        first = next(iter(parts.values()))
        out = np.empty((w.shape[0], *first.shape[1:]), dtype=np.complex128)
        for row, idx in groups.items():
            out[idx] = parts[row]
        return out

    wrapped.__doc__ = fn.__doc__
    wrapped.__name__ = fn.__name__
    return wrapped


@per_row
def unitaries(t: Transmon, w: ComplexArray) -> ComplexArray:
    """(B, S) waveforms -> (B, N, N) unitaries via per-sample eigendecomposition."""
    h = hamiltonians_rad_s(t, w)
    evals, evecs = np.linalg.eigh(h)
    phases = np.exp(-1j * evals * t.dt_s)
    steps = (evecs * phases[..., None, :]) @ np.swapaxes(evecs.conj(), -1, -2)
    return _time_ordered_product(steps)


@per_row
def superoperators(t: Transmon, w: ComplexArray) -> ComplexArray:
    """(B, S) waveforms -> (B, N², N²) superoperators via per-sample Padé expm."""
    gens = lindbladians(t, w) * t.dt_s
    steps = expm(gens)
    return _time_ordered_product(steps)
