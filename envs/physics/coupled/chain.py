"""Time-ordered products of exponentials on the blocks of a coupled model's generator.

``fast.py`` turns a pulse into real coefficients of a few fixed matrices A_j; this module
multiplies out exp(Σ_j c_tj·A_j) over the steps t, block by block (the connected
components of the A's non-zeros), with the scheme of docs/coupled_engine.md: the mean of
the diagonal shifted out, scaling to 1-norm ≤ 0.8, a degree-16 Taylor series by
Paterson–Stockmeyer, squaring. Blocks of 2 and 3 states at batch ≥ ``_LANE_MIN_BATCH`` run
the SIMD-lane kernels of ``_lanes.py``, other small blocks the compiled loop
``_chain_kernel``, large ones batched BLAS (``_chain_blas``); a block that the Hermiticity
mirror maps onto itself runs in its real basis.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from ..jit import jit
from ._lanes import CHAINS
from .model import ComplexArray, FloatArray

# Taylor degree 16 with ||X||_1 <= 0.8: Σ_{k>16} 0.8^k/k! < 1.2e-16.
_THETA_MAX = 0.8
# Blocks larger than this run through BLAS (``_chain_blas``) rather than the compiled loop:
# measured 1.7× faster on the 10–19-state coherence-order blocks at batch 16 and above.
_DENSE_BLAS = 9
# Below this batch, blocks up to ``_DENSE_SMALL_BATCH`` states run the compiled loop after
# all: BLAS's ~16 calls per step cost more than they save on one or a few rows (a device
# propagates one pulse at a time; a 48-sample Lindblad flux pulse on 2 × 3 levels took
# 49 ms through BLAS and 19 ms through the loop at batch 1, 20 and 17 ms at batch 4).
_SMALL_BATCH = 8
_DENSE_SMALL_BATCH = 24
# The SIMD-lane kernels of 2- and 3-state blocks compute LANES pulses per pass, so a call
# with a few rows pays for LANES: at batch 1 (a device propagating one pulse) the scalar
# loop took 35 µs against 140 µs (2 states) and 80 against 295 µs (3 states) for 56 steps.
_LANE_MIN_BATCH = 4
_TAYLOR = np.array([1.0 / math.factorial(k) for k in range(17)])


# ---------------------------------------------------------------------------------------
# Kernel: time-ordered products of exponentials, one pulse at a time.
# ---------------------------------------------------------------------------------------


@jit(inline="always")
def _cmm(a: ComplexArray, b: ComplexArray, out: ComplexArray) -> None:
    """out = a @ b; out must not alias a or b."""
    n = a.shape[0]
    for i in range(n):
        for j in range(n):
            acc = 0j
            for k in range(n):
                acc += a[i, k] * b[k, j]
            out[i, j] = acc


@jit(inline="always")
def _poly_add(c: FloatArray, base: int, x: ComplexArray, x2: ComplexArray, x3: ComplexArray,
              out: ComplexArray) -> None:
    """out += c[base]·I + c[base+1]·X + c[base+2]·X² + c[base+3]·X³."""
    n = x.shape[0]
    c0, c1, c2, c3 = c[base], c[base + 1], c[base + 2], c[base + 3]
    for i in range(n):
        for j in range(n):
            out[i, j] += c1 * x[i, j] + c2 * x2[i, j] + c3 * x3[i, j]
        out[i, i] += c0


@jit
def _chain_kernel(a: ComplexArray, coef: FloatArray, taylor: FloatArray, out: ComplexArray) -> None:
    """out[b] = exp(G_{T−1}) ··· exp(G_0) with G_t = Σ_j coef[b, t, j]·A_j.

    Args:
        a: (R, J, n, n) the matrices A_j, shared (R = 1) or one set per row (R = B).
        coef: (B, T, J) real coefficients (time-ordered, step 0 first).
        taylor: (17,) 1/k!.
        out: (B, n, n) complex, written.
    """
    n_rows, n_terms, n = a.shape[0], a.shape[1], a.shape[2]
    nb, n_t = coef.shape[0], coef.shape[1]
    x = np.empty((n, n), dtype=np.complex128)
    x2 = np.empty_like(x)
    x3 = np.empty_like(x)
    x4 = np.empty_like(x)
    p = np.empty_like(x)
    tmp = np.empty_like(x)
    acc = np.empty_like(x)
    for b in range(nb):
        r = b if n_rows > 1 else 0
        acc[:] = 0.0
        for i in range(n):
            acc[i, i] = 1.0
        for t in range(n_t):
            x[:] = 0.0
            for jj in range(n_terms):
                c = coef[b, t, jj]
                if c == 0.0:
                    continue
                for i in range(n):
                    for j in range(n):
                        x[i, j] += c * a[r, jj, i, j]
            # Shift out the mean diagonal μ (exp(X) = e^μ·exp(X − μ)): it carries the
            # manifold's common detuning, often most of the norm.
            mu = 0j
            for i in range(n):
                mu += x[i, i]
            mu /= n
            for i in range(n):
                x[i, i] -= mu
            theta = 0.0
            for j in range(n):
                col = 0.0
                for i in range(n):
                    col += abs(x[i, j])
                theta = max(theta, col)
            s = 0
            while theta > _THETA_MAX:
                theta *= 0.5
                s += 1
            scale = 0.5**s
            for i in range(n):
                for j in range(n):
                    x[i, j] *= scale
            _cmm(x, x, x2)
            _cmm(x2, x, x3)
            _cmm(x2, x2, x4)
            # P = B3 + c16·X⁴, then P = B_i + X⁴·P for i = 2, 1, 0 (Paterson–Stockmeyer),
            # B_i = Σ_{m<4} c_{4i+m}·X^m: 6 products for degree 16.
            for i in range(n):
                for j in range(n):
                    p[i, j] = taylor[16] * x4[i, j]
            _poly_add(taylor, 12, x, x2, x3, p)
            for base in (8, 4, 0):
                _cmm(x4, p, tmp)
                _poly_add(taylor, base, x, x2, x3, tmp)
                p, tmp = tmp, p
            for _ in range(s):
                _cmm(p, p, tmp)
                p, tmp = tmp, p
            e_mu = np.exp(mu)
            _cmm(p, acc, tmp)
            for i in range(n):
                for j in range(n):
                    acc[i, j] = e_mu * tmp[i, j]
        out[b] = acc


def blocks(mats: NDArray[np.complex128]) -> list[NDArray[np.intp]]:
    """Index sets of the connected components of the union of the matrices' non-zeros:
    every G = Σ c_j·A_j (and its exponential) is block-diagonal on them. mats: (..., n, n)."""
    pattern = np.any(mats.reshape(-1, *mats.shape[-2:]) != 0, axis=0)
    return _components(pattern)


def _components(pattern: NDArray[np.bool_]) -> list[NDArray[np.intp]]:
    # Kept by pattern: every device of a preset has the same structure, and a new device
    # (an env's reset) would otherwise pay scipy's graph search again (~1 ms a model).
    key = (pattern.shape, np.packbits(pattern).tobytes())
    out = _COMPONENTS.get(key)
    if out is None:
        n_comp, labels = connected_components(csr_matrix(pattern), directed=True, connection="weak")
        out = [np.flatnonzero(labels == c) for c in range(n_comp)]
        for idx in out:
            idx.setflags(write=False)
        if len(_COMPONENTS) >= 256:
            _COMPONENTS.clear()
        _COMPONENTS[key] = out
    return list(out)


_COMPONENTS: dict[tuple[Any, ...], list[NDArray[np.intp]]] = {}


def _chain(mats: ComplexArray, coef: FloatArray, support: NDArray[np.bool_] | None = None,
           parts: list[NDArray[np.intp]] | None = None, mirror: NDArray[np.intp] | None = None) -> ComplexArray:
    """Block by block: (R, J, n, n) matrices, (B, T, J) coefficients -> (B, n, n).

    ``support`` (n,): only the blocks holding one of these indices are computed; the others
    are left zero (for a caller applying the result to vectors supported there). ``parts``:
    ``blocks(mats)`` when the caller has it cached. ``mirror`` (n,): a permutation π with
    A[π i, π j] = conj(A[i, j]) for every matrix (``_mirror``: superoperators of maps that
    preserve Hermiticity, vec(ρ) -> vec(ρ†)); the product then has the same symmetry, so of
    two blocks that π swaps only one is computed, and a block that π maps onto itself is
    propagated in the real basis where it is a real matrix (a quarter of the work)."""
    b = coef.shape[0]
    n = mats.shape[-1]
    out = np.zeros((b, n, n), dtype=np.complex128)
    done = np.zeros(n, dtype=bool)
    for idx in (blocks(mats) if parts is None else parts):
        if done[idx[0]]:
            continue  # filled as the mirror image of another block
        image = None if mirror is None else mirror[idx]
        if support is not None and not (np.any(support[idx]) or (image is not None and np.any(support[image]))):
            continue
        self_mirrored = image is not None and bool(np.all(np.sort(image) == idx))
        sub = mats[:, :, idx[:, None], idx[None, :]]
        pairing = np.searchsorted(idx, image) if self_mirrored and image is not None else None
        res = _block_chain(sub, coef, b, pairing)
        out[:, idx[:, None], idx[None, :]] = res
        if image is not None and not self_mirrored:
            out[:, image[:, None], image[None, :]] = res.conj()
            done[image] = True
    return out


def _block_chain(sub: ComplexArray, coef: FloatArray, b: int, pairing: NDArray[np.intp] | None = None
                 ) -> ComplexArray:
    """(R, J, m, m) matrices of one block -> (B, m, m) its time-ordered product. ``pairing``
    (m,): the mirror within a block that it maps onto itself (``_chain``), or None."""
    m = sub.shape[-1]
    if m == 1 and sub.shape[0] == 1:
        # A 1×1 block is a scalar exponential: no kernel needed.
        g = coef @ sub[0, :, 0, 0]
        return np.exp(g.sum(axis=1))[:, None, None]
    if m in CHAINS and b >= _LANE_MIN_BATCH:
        res = np.empty((b, m, m), dtype=np.complex128)
        flat = sub.reshape(*sub.shape[:2], m ** 2)
        CHAINS[m](np.ascontiguousarray(flat.real), np.ascontiguousarray(flat.imag),
                  np.ascontiguousarray(coef), _TAYLOR, res)
        return res
    if m > (_DENSE_SMALL_BATCH if b < _SMALL_BATCH else _DENSE_BLAS):
        if pairing is not None:
            t = _real_basis(pairing)
            real = np.ascontiguousarray((t @ sub @ t.conj().T).real)
            out: ComplexArray = t.conj().T @ _chain_blas(real, coef) @ t
            return out
        return _chain_blas(sub, coef)
    res = np.empty((b, m, m), dtype=np.complex128)
    _chain_kernel(np.ascontiguousarray(sub), np.ascontiguousarray(coef), _TAYLOR, res)
    return res


def _real_basis(pairing: NDArray[np.intp]) -> ComplexArray:
    """(m, m) unitary T with T·A·T† real for a block that the mirror maps onto itself.

    Within such a block the mirror pairs entries vec(ρ)_i, vec(ρ)_π(i) = ρ_rc, ρ_cr (and fixes
    the diagonal ρ_rr); in the coordinates (x_i + x_π(i))/√2 and (x_i − x_π(i))/(i√2), the
    real and imaginary parts of ρ_rc for a Hermitian ρ, a Hermiticity-preserving map is real."""
    m = pairing.size
    t = np.zeros((m, m), dtype=np.complex128)
    h = 1.0 / math.sqrt(2.0)
    for a in range(m):
        pa = int(pairing[a])
        if pa == a:
            t[a, a] = 1.0
        elif a < pa:
            t[a, a] = t[a, pa] = h
            t[pa, a], t[pa, pa] = -1j * h, 1j * h
    return t


def _chain_blas(mats: NDArray[np.complex128] | FloatArray, coef: FloatArray) -> ComplexArray:
    """``_chain_kernel`` for large blocks: the same Taylor scheme, each product one batched
    BLAS ``matmul`` over the rows (a compiled scalar triple loop loses to it beyond ~9)."""
    b, n_t = coef.shape[0], coef.shape[1]
    n = mats.shape[-1]
    eye = np.eye(n, dtype=mats.dtype)  # real matrices (a block in its real basis) stay real
    acc = np.broadcast_to(eye, (b, n, n)).copy()
    diag = np.arange(n)
    for t in range(n_t):
        if mats.shape[0] == 1:
            x = np.tensordot(coef[:, t, :], mats[0], axes=(1, 0))
        else:
            x = np.einsum("bj,bjkl->bkl", coef[:, t, :], mats)
        mu = np.trace(x, axis1=1, axis2=2) / n
        x[:, diag, diag] -= mu[:, None]
        theta = float(np.abs(x).sum(axis=1).max())
        s = max(0, math.ceil(math.log2(theta / _THETA_MAX))) if theta > _THETA_MAX else 0
        x *= 0.5**s
        x2 = x @ x
        x3 = x2 @ x
        x4 = x2 @ x2

        def add_block(p: Any, base: int, x: Any = x, x2: Any = x2, x3: Any = x3) -> None:
            # p += c0·I + c1·X + c2·X² + c3·X³ in place (the identity on the diagonal only).
            c = _TAYLOR
            p += c[base + 1] * x
            p += c[base + 2] * x2
            p += c[base + 3] * x3
            p[:, diag, diag] += c[base]

        p = _TAYLOR[16] * x4
        add_block(p, 12)
        for base in (8, 4, 0):
            p = x4 @ p
            add_block(p, base)
        for _ in range(s):
            p = p @ p
        acc = np.exp(mu)[:, None, None] * (p @ acc)
    return acc  # type: ignore[return-value]  # complex, or real for a block in its real basis
