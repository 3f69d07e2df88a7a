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
pulses, so each scalar operation compiles to one SIMD instruction. Those block products
live in ``chain.py``; this module prepares the matrices and coefficients, finds the flat
tops, and moves states without building propagators (``evolve_vectors``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

# The block kernels, importable from here as before they moved to their own module.
from .chain import (  # noqa: F401
    _DENSE_BLAS,
    _DENSE_SMALL_BATCH,
    _LANE_MIN_BATCH,
    _SMALL_BATCH,
    _TAYLOR,
    _THETA_MAX,
    _block_chain,
    _chain,
    _chain_blas,
    _chain_kernel,
    _components,
    _real_basis,
    blocks,
)
from .controls import Pulse, as_operator_model, check_pulse
from .model import TWO_PI, ComplexArray, CoupledModel, FloatArray
from .operators import OperatorModel
from .reference import _CF4_A, _GAUSS, substeps, to_mode_frames

ModelArg = CoupledModel | OperatorModel

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
    reals = tuple(r for r, x in pulse.reals.items() if x.any())
    drives = tuple(c for c, u in pulse.drives.items() if u.any())
    return reals, drives


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
