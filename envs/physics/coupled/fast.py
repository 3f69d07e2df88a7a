"""Our coupled-model engine: block-diagonal, block-diagonal scaling-and-squaring.

Same contract and the same time discretisation as ``reference.py`` (docs/coupled_engine.md):
a common frame at f_ref (the one playing frame frequency when the model is ``shiftable``),
one exponential per sample when every playing drive sits at f_ref, else K commutator-free
Magnus (CF4) substeps per sample. Each exponential is of a generator that is a REAL linear
combination of a few fixed matrices,

    G = τ·A_static + Σ_r τ·x_r·A_r + Σ_c τ·(Re v_c·A_c,re + Im v_c·A_c,im),

with A_static = −iH_static (closed) or −i[H_static, ·] + D (open), A_r = −iO_r (or its
commutator), A_c,re = −i(R_c + R_c†), A_c,im = R_c − R_c†. So the engine prepares the A's
once per model and channel set and hands a kernel (B, T, J) real coefficients.

Speed comes from structure, found rather than assumed: the union of the A's structural
non-zeros is split into connected components, and the exponential of a block-diagonal
matrix is block-diagonal, so each block is propagated on its own (exactly, no truncation
of couplings). For a ``CoupledModel`` with no drive playing (flux pulses) the blocks are the
excitation-number manifolds (sizes ≤ 3 for 2 × 3 levels), and for superoperators the
coherence orders N_ket − N_bra (≤ 19). A bring-your-own model without structure is one
dense block. The kernel evaluates each exponential by a degree-16 Taylor series
(Paterson–Stockmeyer, 6 products) after shifting out the mean of the diagonal (an exact
scalar factor) and scaling so the 1-norm is ≤ 0.8 (truncation < 1.2e-16), then squares.
The smallest blocks (the excitation manifolds of flux pulses) run generated kernels
(``_lanes.py``) of the same algorithm whose every matrix entry is a vector over ``LANES``
pulses, so each scalar operation compiles to one SIMD instruction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from ..jit import jit
from ._lanes import CHAINS
from .controls import Pulse, as_operator_model, check_pulse
from .model import TWO_PI, ComplexArray, CoupledModel, FloatArray
from .operators import OperatorModel
from .reference import _CF4_A, _GAUSS, substeps, to_mode_frames

ModelArg = CoupledModel | OperatorModel

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


# ---------------------------------------------------------------------------------------
# Terms: the fixed matrices A_j of a model and channel set, and their blocks.
# ---------------------------------------------------------------------------------------


def _superop(om: OperatorModel, h: ComplexArray) -> ComplexArray:
    """−i[h, ·] as a column-stacking superoperator, (D², D²)."""
    eye = np.eye(om.dimension, dtype=np.complex128)
    out: ComplexArray = -1j * (np.kron(eye, h) - np.kron(h.T, eye))
    return out


def _terms(om: OperatorModel, f_ref: float, reals: tuple[str, ...], drives: tuple[str, ...],
           open_system: bool) -> ComplexArray:
    """(J, n, n) the generators A_j per unit coefficient, in the order static, reals, then
    (re, im) per drive; n = D closed, D² open."""
    key = f"fast:terms:{f_ref!r}:{reals}:{drives}:{open_system}"
    cached = om._cache.get(key)
    if cached is not None:
        return cached  # type: ignore[return-value]
    hs = [om.static_in_frame(f_ref)]
    hs += [om.reals[r].operator for r in reals]
    for c in drives:
        rr = om.drives[c].raising
        hs += [rr + rr.conj().T, 1j * (rr - rr.conj().T)]
    if open_system:
        mats = [_superop(om, h) for h in hs]
        mats[0] = mats[0] + om.dissipator()
    else:
        mats = [-1j * h for h in hs]
    out = np.ascontiguousarray(np.stack(mats))
    out.setflags(write=False)
    om._cache[key] = out
    return out


def blocks(mats: NDArray[np.complex128]) -> list[NDArray[np.intp]]:
    """Index sets of the connected components of the union of the matrices' non-zeros:
    every G = Σ c_j·A_j (and its exponential) is block-diagonal on them. mats: (..., n, n)."""
    pattern = np.any(mats.reshape(-1, *mats.shape[-2:]) != 0, axis=0)
    return _components(pattern)


def _components(pattern: NDArray[np.bool_]) -> list[NDArray[np.intp]]:
    n_comp, labels = connected_components(csr_matrix(pattern), directed=True, connection="weak")
    return [np.flatnonzero(labels == c) for c in range(n_comp)]


def _pattern(om: OperatorModel, f_ref: float, reals: tuple[str, ...], drives: tuple[str, ...],
             open_system: bool) -> NDArray[np.bool_]:
    """The union of the non-zeros of ``_terms`` (n, n), cached with them: a device calls the
    engine once per segment, and the pattern does not change while the model is the same."""
    key = f"fast:pattern:{f_ref!r}:{reals}:{drives}:{open_system}"
    cached = om._cache.get(key)
    if cached is None:
        cached = np.any(_terms(om, f_ref, reals, drives, open_system) != 0, axis=0)
        cached.setflags(write=False)
        om._cache[key] = cached
    return cached  # type: ignore[return-value]


def _mirror(om: OperatorModel, f_ref: float, reals: tuple[str, ...], drives: tuple[str, ...]) -> NDArray[np.intp] | None:
    """The permutation vec(ρ) -> vec(ρ†) of superoperator indices, when every Lindblad term
    A_j satisfies A[π i, π j] = conj(A[i, j]) (a Hermiticity-preserving generator, as every
    Lindblad generator with Hermitian Hamiltonians and real coefficients is); None if a term
    does not, to rounding. Checked on the terms themselves, once per model and channel set."""
    key = f"fast:mirror:{f_ref!r}:{reals}:{drives}"
    if key not in om._cache:
        d = om.dimension
        i = np.arange(d * d)
        perm = (i // d) + (i % d) * d
        terms = _terms(om, f_ref, reals, drives, True)
        scale = float(np.abs(terms).max())
        swapped = terms[:, perm[:, None], perm[None, :]]
        ok = bool(np.max(np.abs(swapped - terms.conj())) <= 1e-14 * scale)
        om._cache[key] = perm if ok else None
    return om._cache[key]  # type: ignore[return-value]


def _blocks_of(om: OperatorModel, f_ref: float, reals: tuple[str, ...], drives: tuple[str, ...],
               open_system: bool) -> list[NDArray[np.intp]]:
    """``blocks`` of one model's terms, cached with them."""
    key = f"fast:blocks:{f_ref!r}:{reals}:{drives}:{open_system}"
    cached = om._cache.get(key)
    if cached is None:
        cached = _components(_pattern(om, f_ref, reals, drives, open_system))
        om._cache[key] = cached
    return cached  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------
# Coefficients of each exponential.
# ---------------------------------------------------------------------------------------


def _coefficients(om: OperatorModel, pulse: Pulse, f_ref: float, n_sub: int,
                  reals: tuple[str, ...], drives: tuple[str, ...]) -> FloatArray:
    """(B, T, J) real coefficients; T = S (exact) or 2·K·S (CF4: two exponentials per substep)."""
    b, s, dt = pulse.batch, pulse.n_samples, om.dt_s
    n_terms = 1 + len(reals) + 2 * len(drives)
    k = np.arange(s)
    if n_sub == 1:
        tau = dt
        out = np.empty((b, s, n_terms))
        out[:, :, 0] = tau
        for i, r in enumerate(reals):
            out[:, :, 1 + i] = tau * pulse.reals[r]
        for i, c in enumerate(drives):
            t_mid = pulse.t0_s + (k + 0.5) * dt
            v = tau * pulse.drives[c] * np.exp(-1j * TWO_PI * (om.drives[c].frequency_hz - f_ref) * t_mid)
            out[:, :, 1 + len(reals) + 2 * i] = v.real
            out[:, :, 2 + len(reals) + 2 * i] = v.imag
        return out
    h = dt / n_sub
    # Times of the two Gauss points of substep j of sample k: (S, K).
    ts = pulse.t0_s + k[:, None] * dt + np.arange(n_sub)[None, :] * h
    t1, t2 = ts + _GAUSS[0] * h, ts + _GAUSS[1] * h
    out = np.empty((b, s, n_sub, 2, n_terms))
    out[..., 0] = h * (_CF4_A[0] + _CF4_A[1])
    for i, r in enumerate(reals):
        out[..., 1 + i] = (h * (_CF4_A[0] + _CF4_A[1]) * pulse.reals[r])[:, :, None, None]
    for i, c in enumerate(drives):
        w = -1j * TWO_PI * (om.drives[c].frequency_hz - f_ref)
        u = pulse.drives[c][:, :, None]
        v1, v2 = u * np.exp(w * t1), u * np.exp(w * t2)
        for e, (a1, a2) in enumerate(((_CF4_A[0], _CF4_A[1]), (_CF4_A[1], _CF4_A[0]))):
            v = h * (a1 * v1 + a2 * v2)
            out[:, :, :, e, 1 + len(reals) + 2 * i] = v.real
            out[:, :, :, e, 2 + len(reals) + 2 * i] = v.imag
    return out.reshape(b, s * n_sub * 2, n_terms)


def merge_runs(coef: FloatArray) -> FloatArray:
    """Each run of identical consecutive steps of a row as one step: (B, T, J) -> (B, T', J).

    Only for one exponential per sample (no substeps), where step t is exp(Σ_j c_tj·A_j):
    k equal steps multiply to exp(k·Σ_j c_j·A_j), exactly, and the kernels' scaling and
    squaring takes the k-fold norm in log2(k) more squarings instead of k − 1 more
    exponentials and products. Flat tops (flux plateaus, the square part of a CR tone) are
    such runs. Rows keep their own runs; a row with fewer runs than the longest is padded at
    the end with all-zero steps, whose exponential is the identity (exactly: the Taylor
    series of 0 is I, and I·acc = acc), so rows need not share a run structure. Returns
    ``coef`` itself when no row has a run.
    """
    b, n_t, n_terms = coef.shape
    if n_t < 2:
        return coef
    start = np.ones((b, n_t), dtype=bool)
    # One comparison per term (J is a handful): cheaper than a reduction over the last axis,
    # and a pulse without runs must cost next to nothing here.
    changed = start[:, 1:]
    changed[:] = coef[:, 1:, 0] != coef[:, :-1, 0]
    for j in range(1, n_terms):
        changed |= coef[:, 1:, j] != coef[:, :-1, j]
    n_runs = start.sum(axis=1)
    t_out = int(n_runs.max())
    if t_out == n_t:
        return coef
    # Every row's step 0 starts a run, so in row-major order the run starting at flat
    # position p ends where the next one starts.
    first = np.flatnonzero(start)
    length = np.diff(first, append=b * n_t).astype(np.float64)
    rows = first // n_t
    index = (np.cumsum(start, axis=1) - 1).reshape(-1)[first]  # the run's index within its row
    out = np.zeros((b, t_out, n_terms))
    out[rows, index] = coef.reshape(b * n_t, n_terms)[first] * length[:, None]
    return out


# ---------------------------------------------------------------------------------------
# Propagation.
# ---------------------------------------------------------------------------------------


def _playing(pulse: Pulse) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Real channels given and drive channels that play anything (silent drives add nothing
    and would break the excitation-number blocks)."""
    reals = tuple(r for r, x in pulse.reals.items() if np.any(x != 0))
    drives = tuple(c for c, u in pulse.drives.items() if np.any(u != 0))
    return reals, drives


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


def propagate(om: OperatorModel | Sequence[OperatorModel], pulse: Pulse, open_system: bool,
              max_phase_step: float = 0.05, support: NDArray[np.bool_] | None = None) -> ComplexArray:
    """Validated pulse -> (B, n, n) propagators in the modes' frames (n = D or D²).

    ``om`` is one model for every row, or one per row (same dims and channels). With
    ``support`` (n,), blocks not touching it are skipped (left zero): enough to propagate
    states whose non-zeros lie within ``support``."""
    rows = [om] if isinstance(om, OperatorModel) else list(om)
    reals, drives = _playing(pulse)
    plans = [substeps(r, pulse, max_phase_step) for r in rows]
    n_sub = max(k for _, k in plans)
    if len(rows) == 1:
        f_ref = plans[0][0]
        mats = _terms(rows[0], f_ref, reals, drives, open_system)[None]
        coef = _coefficients(rows[0], pulse, f_ref, n_sub, reals, drives)
        if n_sub == 1:
            coef = merge_runs(coef)
        mirror = _mirror(rows[0], f_ref, reals, drives) if open_system else None
        out = _chain(mats, coef, support, _blocks_of(rows[0], f_ref, reals, drives, open_system), mirror)
        return _to_mode_frames_in_place(rows[0], out, f_ref, pulse.t0_s, pulse.t0_s + pulse.n_samples * rows[0].dt_s)
    mats = np.stack([_terms(r, f, reals, drives, open_system) for r, (f, _) in zip(rows, plans, strict=True)])
    coef = np.concatenate([
        _coefficients(r, _row(pulse, b), f, n_sub, reals, drives)
        for b, (r, (f, _)) in enumerate(zip(rows, plans, strict=True))
    ])
    if n_sub == 1:
        coef = merge_runs(coef)
    patterns = [_pattern(r, f, reals, drives, open_system) for r, (f, _) in zip(rows, plans, strict=True)]
    union = patterns[0] if all(np.array_equal(p, patterns[0]) for p in patterns[1:]) else np.any(patterns, axis=0)
    mirrors = [_mirror(r, f, reals, drives) for r, (f, _) in zip(rows, plans, strict=True)] if open_system else [None]
    mirror = mirrors[0] if all(m is not None for m in mirrors) else None
    out = _chain(mats, coef, support, _components(union), mirror)
    t1 = pulse.t0_s + pulse.n_samples * rows[0].dt_s
    return np.stack([to_mode_frames(r, out[b], f, pulse.t0_s, t1)
                     for b, (r, (f, _)) in enumerate(zip(rows, plans, strict=True))])


def _to_mode_frames_in_place(om: OperatorModel, op: ComplexArray, f_ref: float, t0_s: float, t1_s: float
                             ) -> ComplexArray:
    """``reference.to_mode_frames`` on a (B, n, n) array this module owns: one (n, n) table of
    phases, multiplied in place (two (B, n, n) temporaries cost a third of a batched
    Lindblad measurement otherwise)."""
    m1: np.ndarray = om.frame_phases(f_ref, t1_s)
    m0: np.ndarray = om.frame_phases(f_ref, t0_s)
    if op.shape[-1] != om.dimension:
        m1, m0 = np.kron(m1.conj(), m1), np.kron(m0.conj(), m0)
    op *= m1[:, None] * m0.conj()[None, :]
    return op


# Vector steps (``evolve_vectors``): a Taylor series of degree <= _VEC_DEGREE on substeps of
# 1-norm <= _VEC_THETA; its remainder is below 2^25/25!·e² < 1.7e-17 relative, and its
# largest term is 2 times the vector's norm. The series stops early once two consecutive
# terms are below rounding (after ~22 terms). Substeps of norm 4 and degree 40 measured the
# same speed with larger intermediate terms.
_VEC_THETA = 2.0
_VEC_DEGREE = 24
# A batched m × m matrix product costs about this many times m matrix-vector products
# (numpy on one core, m = 19, batch 256: 660 µs against 56 µs).
_PRODUCT_IN_MATVECS = 0.6


def evolve_vectors(om: OperatorModel, pulse: Pulse, open_system: bool, vec: ComplexArray,
                   max_phase_step: float = 0.05) -> ComplexArray | None:
    """P·v for the pulse's propagators P (modes' frames), without building P: (B, n) -> (B, n).

    ``vec``: (B, n) vectors (n = D, or D² column-stacked density matrices), B the batch of
    the pulse or of the vectors (one of them may be 1). Only the blocks the vectors occupy
    are propagated. Each step applies exp(X) to the vectors by a truncated Taylor series on
    substeps (``_VEC_THETA``, ``_VEC_DEGREE``: the same accuracy as the matrix kernels) when
    that costs fewer operations than the step's matrix exponential (scaling and squaring,
    then one product with the vectors), which merged flat-top runs of many samples take. A
    block that the Hermiticity mirror maps onto itself runs in its real basis when the
    vectors are Hermitian there (density matrices are). Returns None for pulses with
    substeps (several frame frequencies): the caller builds the propagators instead."""
    reals, drives = _playing(pulse)
    f_ref, n_sub = substeps(om, pulse, max_phase_step)
    if n_sub != 1:
        return None
    mats = _terms(om, f_ref, reals, drives, open_system)
    coef = merge_runs(_coefficients(om, pulse, f_ref, 1, reals, drives))
    parts = _blocks_of(om, f_ref, reals, drives, open_system)
    mirror = _mirror(om, f_ref, reals, drives) if open_system else None
    t1 = pulse.t0_s + pulse.n_samples * om.dt_s
    m1: np.ndarray = om.frame_phases(f_ref, t1)
    m0: np.ndarray = om.frame_phases(f_ref, pulse.t0_s)
    if open_system:
        m1, m0 = np.kron(m1.conj(), m1), np.kron(m0.conj(), m0)
    b = max(vec.shape[0], coef.shape[0])
    w = np.broadcast_to(vec * m0.conj()[None, :], (b, vec.shape[1]))
    out = np.zeros((b, vec.shape[1]), dtype=np.complex128)
    for idx in parts:
        v = w[:, idx]
        if not np.any(v != 0):
            continue
        sub = mats[:, idx[:, None], idx[None, :]]
        t = None
        if mirror is not None and np.array_equal(np.sort(mirror[idx]), idx):
            t = _real_basis(np.searchsorted(idx, mirror[idx]))
            vt = v @ t.T
            if np.max(np.abs(vt.imag)) <= 1e-14 * max(float(np.max(np.abs(vt.real))), 1e-300):
                res = _vector_chain(np.ascontiguousarray((t @ sub @ t.conj().T).real), coef, vt.real)
                out[:, idx] = res @ t.conj()
                continue
        out[:, idx] = _vector_chain(sub, coef, v)
    out *= m1[None, :]
    return out


def _vector_chain(sub: Any, coef: FloatArray, v: Any) -> Any:
    """exp(G_{T−1})···exp(G_0)·v with G_t = Σ_j coef[:, t, j]·sub_j; sub (J, m, m), v (B, m)."""
    m = sub.shape[-1]
    diag = np.arange(m)
    eps = 2.0**-53
    v = np.array(v, dtype=np.result_type(sub, v))
    for t in range(coef.shape[1]):
        x = np.tensordot(coef[:, t, :], sub, axes=(1, 0))  # (Bc, m, m)
        mu = np.trace(x, axis1=1, axis2=2) / m
        x[:, diag, diag] -= mu[:, None]
        theta = float(np.abs(x).sum(axis=1).max())
        n_vec = max(1, math.ceil(theta / _VEC_THETA))
        squarings = max(0, math.ceil(math.log2(theta / _THETA_MAX))) if theta > _THETA_MAX else 0
        # Costs in matrix-vector products: substeps × the terms a substep of norm
        # _VEC_THETA takes (~22), against 6 products and the squarings of the matrix
        # exponential, then one product with the vectors.
        if n_vec * 22 <= _PRODUCT_IN_MATVECS * m * (6 + squarings) + 1:
            x /= n_vec
            for _ in range(n_vec):
                term = v
                acc = v.copy()
                small = 0
                for k in range(1, _VEC_DEGREE + 1):
                    term = np.matmul(x, term[..., None])[..., 0] / k
                    acc = acc + term
                    # Stop once two consecutive terms are below rounding (Al-Mohy & Higham).
                    small = small + 1 if np.max(np.abs(term)) <= eps * np.max(np.abs(acc)) else 0
                    if small == 2:
                        break
                v = acc
        else:
            x *= 0.5**squarings
            x2 = x @ x
            x3 = x2 @ x
            x4 = x2 @ x2
            c = _TAYLOR
            p = c[16] * x4
            for base in (12, 8, 4, 0):
                if base != 12:
                    p = x4 @ p
                p += c[base + 1] * x + c[base + 2] * x2 + c[base + 3] * x3
                p[:, diag, diag] += c[base]
            for _ in range(squarings):
                p = p @ p
            v = np.matmul(p, v[..., None])[..., 0]
        v = np.exp(mu)[:, None] * v
    return v


def _row(pulse: Pulse, b: int) -> Pulse:
    return Pulse({k: v[b:b + 1] for k, v in pulse.drives.items()},
                 {k: v[b:b + 1] for k, v in pulse.reals.items()}, 1, pulse.n_samples, pulse.t0_s)


def check_rows(model: ModelArg | Sequence[ModelArg], controls: Mapping[str, ArrayLike], t0_s: float
               ) -> tuple[OperatorModel | tuple[OperatorModel, ...], Pulse]:
    """One model or B of them (same dims, dt_s and channels) and the validated pulse."""
    if isinstance(model, CoupledModel | OperatorModel):
        om = as_operator_model(model)
        return om, check_pulse(om, controls, t0_s=t0_s)
    if not isinstance(model, Sequence) or isinstance(model, str | bytes) or not model:
        raise ValueError(f"model={type(model).__name__}: allowed a CoupledModel, an OperatorModel "
                         "or a non-empty sequence of them (one per pulse row)")
    rows = tuple(as_operator_model(m) for m in model)
    first = rows[0]
    for i, r in enumerate(rows):
        if r.dims != first.dims or r.dt_s != first.dt_s or r.channels != first.channels:
            raise ValueError(f"model[{i}] has dims {r.dims}, dt_s {r.dt_s}, channels {list(r.channels)}: "
                             f"every row must share model[0]'s dims {first.dims}, dt_s {first.dt_s} "
                             f"and channels {list(first.channels)}")
    pulses = [check_pulse(r, controls, t0_s=t0_s) for r in rows]
    batch = max(p.batch for p in pulses)
    if batch not in (1, len(rows)):
        raise ValueError(f"model is a sequence of {len(rows)} but the pulse has batch {batch}: "
                         "allowed a pulse of batch 1 or one row per model")
    # Each row's real channels go through that row's own distortion and transfer.
    reals = {k: np.concatenate([np.broadcast_to(p.reals[k], (1, p.n_samples)) if p.batch == 1
                                else p.reals[k][b:b + 1] for b, p in enumerate(pulses)])
             for k in pulses[0].reals}
    drives = {k: np.ascontiguousarray(np.broadcast_to(v, (len(rows), v.shape[1])))
              for k, v in pulses[0].drives.items()}
    return rows, Pulse(drives, reals, len(rows), pulses[0].n_samples, pulses[0].t0_s)


def unitaries(model: ModelArg | Sequence[ModelArg], controls: Mapping[str, ArrayLike], *,
              t0_s: float = 0.0, max_phase_step: float = 0.05) -> ComplexArray:
    """Pulse -> (B, D, D) unitaries in the modes' frames (closed system)."""
    om, pulse = check_rows(model, controls, t0_s)
    return propagate(om, pulse, False, max_phase_step)


def superoperators(model: ModelArg | Sequence[ModelArg], controls: Mapping[str, ArrayLike], *,
                   t0_s: float = 0.0, max_phase_step: float = 0.05) -> ComplexArray:
    """Pulse -> (B, D², D²) column-stacking superoperators in the modes' frames (Lindblad)."""
    om, pulse = check_rows(model, controls, t0_s)
    return propagate(om, pulse, True, max_phase_step)


def idle_propagator(om: OperatorModel, duration_s: float, open_system: bool, t0_s: float = 0.0
                    ) -> ComplexArray:
    """Free evolution for ``duration_s`` (any length, exact), (D, D) or (D², D²), modes' frames.

    The generator is constant, so this is one exponential: the static term's blocks, with
    the duration as the coefficient (the kernel scales and squares as far as needed)."""
    key = f"fast:idle:{duration_s!r}:{open_system}"
    base = om._cache.get(key)
    if base is None:
        mats = _terms(om, om.frame_hz, (), (), open_system)[:1]
        base = _chain(mats[None], np.full((1, 1, 1), float(duration_s)),
                      parts=_blocks_of(om, om.frame_hz, (), (), open_system),
                      mirror=_mirror(om, om.frame_hz, (), ()) if open_system else None)[0]
        base.setflags(write=False)
        if len([k for k in om._cache if k.startswith("fast:idle:")]) < 64:
            om._cache[key] = base
    return to_mode_frames(om, base, om.frame_hz, t0_s, t0_s + duration_s)  # type: ignore[arg-type]
