"""The real Hermitian operator basis the simulated device runs open systems in.

A channel preserves Hermiticity, so in the fast engine's Hermitian operator basis
(``fast.hermitian_basis``) it is a REAL matrix acting on real coordinates: a quarter of the
arithmetic of the complex column-stacking form. A frame change (``VirtualZ``) acts there as
2×2 rotations of the (symmetric, antisymmetric) coordinates of each level pair.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .fast import hermitian_basis
from .model import ComplexArray, FloatArray
from .sequence_kernels import outer_product


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
