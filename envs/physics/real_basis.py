"""The real Hermitian operator basis the simulated device runs open systems in.

A channel preserves Hermiticity, so in a Hermitian operator basis (``hermitian_basis``,
the one the fast engine computes in) it is a REAL matrix acting on real coordinates: a quarter of the
arithmetic of the complex column-stacking form. A frame change (``VirtualZ``) acts there as
2×2 rotations of the (symmetric, antisymmetric) coordinates of each level pair.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .model import ComplexArray, FloatArray
from .sequence_kernels import outer_product


@functools.lru_cache(maxsize=16)
def hermitian_basis(levels: int) -> tuple[ComplexArray, np.ndarray, np.ndarray, np.ndarray,
                                           np.ndarray]:
    """Orthonormal Hermitian operator basis, as the unitary map from real coordinates.

    Returns:
        w: (M, M) complex, column m = vec(G_m) in column stacking, M = N²; G_m are E_jj,
            (E_jk + E_kj)/√2 and (−iE_jk + iE_kj)/√2 for j < k. A superoperator S in column
            stacking and its real form R in this basis satisfy S = w·R·w†.
        rot_j, rot_k, rot_s, rot_a: (P,) pairs j < k with the basis indices of their
            symmetric and antisymmetric elements.
    """
    n = levels
    m_dim = n * n
    w = np.zeros((m_dim, m_dim), dtype=np.complex128)
    pairs: list[tuple[int, int, int, int]] = []
    col = 0
    for j in range(n):
        w[j + j * n, col] = 1.0
        col += 1
    h = 1.0 / math.sqrt(2.0)
    for j in range(n):
        for k in range(j + 1, n):
            w[j + k * n, col] = h
            w[k + j * n, col] = h
            w[j + k * n, col + 1] = -1j * h
            w[k + j * n, col + 1] = 1j * h
            pairs.append((j, k, col, col + 1))
            col += 2
    arr = np.array(pairs, dtype=np.int64).reshape(-1, 4)
    out = (w, arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy(), arr[:, 3].copy())
    for a in out:  # shared by every caller (cached), and metrics caches by the basis' identity
        a.setflags(write=False)
    return out


def from_hermitian_basis(real: FloatArray, basis: ComplexArray) -> ComplexArray:
    """(B, M, M) real-basis superoperators -> column stacking, S = w·R·w†.

    Every row of w has one or two non-zeros, so this is a gather rather than two matmuls.
    """
    order, coef = _gather(basis)
    left = (coef[None, :, 0, None] * real[:, order[:, 0], :]
            + coef[None, :, 1, None] * real[:, order[:, 1], :])
    cc = coef.conj()
    return cc[None, None, :, 0] * left[:, :, order[:, 0]] + cc[None, None, :, 1] * left[:, :, order[:, 1]]


# Gather indices by basis object (the callers pass the cached ``hermitian_basis`` arrays);
# each entry keeps its basis alive, so an id is never reused while it is cached.
_GATHER: dict[int, tuple[ComplexArray, np.ndarray, ComplexArray]] = {}


def _gather(basis: ComplexArray) -> tuple[np.ndarray, ComplexArray]:
    """The two non-zeros of each row of the basis: their columns (M, 2) and values (M, 2)
    (zero second value on the diagonal)."""
    hit = _GATHER.get(id(basis))
    if hit is not None and hit[0] is basis:
        return hit[1], hit[2]
    m_dim = basis.shape[0]
    order = np.argsort(-np.abs(basis), axis=1, kind="stable")[:, :2]
    coef = basis[np.arange(m_dim)[:, None], order]
    if len(_GATHER) >= 16:
        _GATHER.clear()
    _GATHER[id(basis)] = (basis, order, coef)
    return order, coef


@functools.lru_cache(maxsize=16)
def real_basis(levels: int) -> tuple[ComplexArray, NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """(w, sym, anti, order_gap): the Hermitian operator basis of the fast engine (w, M×M,
    column m = vec(G_m)); for each level pair j < k the indices of its symmetric and
    antisymmetric elements and k − j.

    A channel preserves Hermiticity, so in this basis it is a REAL matrix R = w†·S·w acting
    on the real coordinates x_m = Tr(G_m·ρ): a quarter of the arithmetic of the complex
    column-stacking form. G_0 = |0⟩⟨0|, so ρ₀₀ = x_0.
    """
    w, rot_j, rot_k, rot_s, rot_a = hermitian_basis(levels)
    return w, rot_s, rot_a, rot_k - rot_j


def to_real(s: ComplexArray, w: ComplexArray) -> FloatArray:
    """(B, M, M) column-stacking superoperators -> (B, M, M) real forms w†·S·w."""
    return np.ascontiguousarray((w.conj().T @ s @ w).real)


def frame_changes(phases: FloatArray, levels: int, open_system: bool) -> NDArray[Any]:
    """How a VirtualZ(φ) acts on the state held in the sequence's frame.

    With D(θ) = diag(e^{iθ·order}) (order = r − c of vec index r + c·N, or n for states),
    a Play at frame θ applies D(θ)·S·D(θ)† (see the module docstring). Holding the state as
    v' = D(θ)†·v instead, every Play applies S itself and VirtualZ(φ) multiplies v' by
    D(φ)†; a Delay commutes with D, and ρ₀₀ (order 0) is the same in both.

    Returns:
        closed: (F, N) complex factors e^{−iφn}; open: (3, F, G) real (c, s, −s) of the 2×2
        rotation blocks ((c, s), (−s, c)) of angle φ·gap for each distinct level gap
        (``pair_gaps``), acting on the (symmetric, antisymmetric) coordinates of each
        level pair j < k, where ρ_jk = (x_s − i·x_a)/√2 picks up e^{+iφ(k−j)}.
    """
    if not open_system:
        return np.exp(-1j * phases[:, None] * np.arange(levels)[None, :])
    gaps = pair_gaps(levels)[0]
    out = np.empty((3, phases.shape[0], gaps.shape[0]))
    cos, sin, neg_sin = out
    # One angle per distinct gap (pairs with equal gaps share it), NumPy's cos and sin;
    # −sin stored rather than negated in the run loop, where the negation would be folded
    # into a subtraction that fuses differently (other last bits).
    outer_product(phases, gaps, cos)
    np.sin(cos, out=sin)
    np.cos(cos, out=cos)
    np.negative(sin, out=neg_sin)
    return out


@functools.lru_cache(maxsize=16)
def pair_gaps(levels: int) -> tuple[FloatArray, NDArray[np.int64]]:
    """The distinct gaps k − j of the real basis' level pairs (as floats) and, per pair, the
    index of its gap among them: the columns of ``frame_changes``' blocks."""
    gaps, pair_gap = np.unique(real_basis(levels)[3], return_inverse=True)
    out = (gaps.astype(np.float64), pair_gap.astype(np.int64).reshape(-1))
    for a in out:
        a.setflags(write=False)
    return out
