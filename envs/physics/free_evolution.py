"""Exact free evolution of the transmon: the zero-drive channel exp(L₀·T) for any duration.

The zero-drive Lindbladian conserves coherence order r − c, and each block of one order is
upper bidiagonal (T1 feeds ρ_{r+1,c+1} into ρ_{r,c}), so its exponential follows from a
small eigendecomposition per block: microseconds cost the same as nanoseconds. The closed
system evolves by diagonal phases.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .model import ComplexArray, Transmon, hamiltonians_rad_s, lindbladians


def coherence_order(levels: int, open_system: bool) -> NDArray[np.int64]:
    """Coherence order of each basis index: r − c for vec index r + c·N, or n for states."""
    if not open_system:
        return np.arange(levels)
    idx = np.arange(levels * levels)
    return idx % levels - idx // levels


def free_evolution(
    transmons: Sequence[Transmon], durations_s: ArrayLike, *, open_system: bool = True
) -> ComplexArray:
    """Exact zero-drive propagators exp(L₀·T) (or exp(−iH₀T)), one per row.

    Args:
        transmons: B models (same ``levels``).
        durations_s: (B,) durations T >= 0 in seconds.
        open_system: superoperators (column stacking) if True, else unitaries.
    Returns:
        (B, N², N²) superoperators or (B, N, N) diagonal unitaries.
    """
    ts = list(transmons)
    durs = np.asarray(durations_s, dtype=np.float64).reshape(-1)
    n = ts[0].levels
    zero = np.zeros(1, dtype=np.complex128)
    if not open_system:
        energies = np.stack([hamiltonians_rad_s(t, zero)[0].diagonal().real for t in ts])
        out = np.zeros((len(ts), n, n), dtype=np.complex128)
        out[:, np.arange(n), np.arange(n)] = np.exp(-1j * energies * durs[:, None])
        return out
    gens = np.stack([lindbladians(t, zero)[0] for t in ts])  # (B, N², N²)
    out = np.zeros_like(gens)
    order = coherence_order(n, True)
    cols = np.arange(n * n) // n
    for m in range(-(n - 1), n):
        # Indices with r − c = m, sorted by c: T1 couples each to the next one only.
        idx = np.flatnonzero(order == m)
        idx = idx[np.argsort(cols[idx], kind="stable")]
        block = gens[:, idx[:, None], idx[None, :]]
        if idx.size == 1:
            out[:, idx[0], idx[0]] = np.exp(block[:, 0, 0] * durs)
            continue
        # Coupled diagonal entries differ by >= 1/T1 in real part and couplings are
        # O(N/T1), so the eigenvectors are well conditioned for any physical T1, T2.
        lam, vec = np.linalg.eig(block)
        inv = np.linalg.inv(vec)
        exp_block = (vec * np.exp(lam * durs[:, None])[:, None, :]) @ inv
        out[:, idx[:, None], idx[None, :]] = exp_block
    return out
