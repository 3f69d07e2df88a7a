"""Our coupled-model engine: block-diagonal, lane-vectorised scaling-and-squaring.

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
scalar factor) and scaling so the 1-norm is ≤ 0.8 (truncation < 1.2e-16), then squares;
every matrix entry is a vector over ``LANES`` pulses, so each scalar operation compiles
to one SIMD instruction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from ..jit import jit
from .controls import Pulse, as_operator_model, check_pulse
from .model import TWO_PI, ComplexArray, CoupledModel, FloatArray
from .operators import OperatorModel
from .reference import _CF4_A, _GAUSS, substeps, to_mode_frames

ModelArg = CoupledModel | OperatorModel

#: Pulses per SIMD block (8 doubles = one AVX-512 register).
LANES = 8
# Taylor degree 16 with ||X||_1 <= 0.8: Σ_{k>16} 0.8^k/k! < 1.2e-16.
_THETA_MAX = 0.8
_TAYLOR = np.array([1.0 / math.factorial(k) for k in range(17)])


# ---------------------------------------------------------------------------------------
# Kernel: time-ordered products of exponentials on (n, n, LANES) real/imaginary arrays.
# ---------------------------------------------------------------------------------------


@jit
def _cmm(ar: FloatArray, ai: FloatArray, br: FloatArray, bi: FloatArray, outr: FloatArray,
         outi: FloatArray) -> None:
    """out = a @ b per lane (complex, split real/imaginary); out must not alias a or b."""
    n = ar.shape[0]
    for i in range(n):
        for j in range(n):
            for lane in range(LANES):
                outr[i, j, lane] = 0.0
                outi[i, j, lane] = 0.0
        for k in range(n):
            for j in range(n):
                for lane in range(LANES):
                    xr = ar[i, k, lane]
                    xi = ai[i, k, lane]
                    yr = br[k, j, lane]
                    yi = bi[k, j, lane]
                    outr[i, j, lane] += xr * yr - xi * yi
                    outi[i, j, lane] += xr * yi + xi * yr


@jit
def _poly(c: FloatArray, base: int, xr: FloatArray, xi: FloatArray, x2r: FloatArray,
          x2i: FloatArray, x3r: FloatArray, x3i: FloatArray, outr: FloatArray,
          outi: FloatArray) -> None:
    """out = c[base]·I + c[base+1]·X + c[base+2]·X² + c[base+3]·X³ (adds to out)."""
    n = xr.shape[0]
    c0, c1, c2, c3 = c[base], c[base + 1], c[base + 2], c[base + 3]
    for i in range(n):
        for j in range(n):
            d = c0 if i == j else 0.0
            for lane in range(LANES):
                outr[i, j, lane] += d + c1 * xr[i, j, lane] + c2 * x2r[i, j, lane] + c3 * x3r[i, j, lane]
                outi[i, j, lane] += c1 * xi[i, j, lane] + c2 * x2i[i, j, lane] + c3 * x3i[i, j, lane]


@jit
def _chain_kernel(a_re: FloatArray, a_im: FloatArray, coef: FloatArray, taylor: FloatArray,
                  out: ComplexArray) -> None:
    """out[b] = exp(G_{T−1}) ··· exp(G_0) with G_t = Σ_j coef[b, t, j]·A_j.

    Args:
        a_re, a_im: (R, J, n, n) the matrices A_j, shared (R = 1) or one set per row (R = B).
        coef: (B, T, J) real coefficients (time-ordered, step 0 first).
        taylor: (17,) 1/k!.
        out: (B, n, n) complex, written.
    """
    n_rows = a_re.shape[0]
    n_terms = a_re.shape[1]
    n = a_re.shape[2]
    nb_total = coef.shape[0]
    n_t = coef.shape[1]
    shp = (n, n, LANES)
    xr = np.empty(shp)
    xi = np.empty(shp)
    x2r = np.empty(shp)
    x2i = np.empty(shp)
    x3r = np.empty(shp)
    x3i = np.empty(shp)
    x4r = np.empty(shp)
    x4i = np.empty(shp)
    pr = np.empty(shp)
    pi = np.empty(shp)
    tr = np.empty(shp)
    ti = np.empty(shp)
    accr = np.empty(shp)
    acci = np.empty(shp)
    cl = np.zeros((n_terms, LANES))
    mur = np.zeros(LANES)
    mui = np.zeros(LANES)
    col = np.zeros(LANES)
    rows = np.zeros(LANES, dtype=np.int64)
    for start in range(0, nb_total, LANES):
        nb = min(LANES, nb_total - start)
        for lane in range(LANES):
            rows[lane] = start + lane if lane < nb else start
        for i in range(n):
            for j in range(n):
                for lane in range(LANES):
                    accr[i, j, lane] = 1.0 if i == j else 0.0
                    acci[i, j, lane] = 0.0
        for t in range(n_t):
            # Idle lanes (beyond the batch) get zero coefficients: they propagate I.
            for jj in range(n_terms):
                for lane in range(LANES):
                    cl[jj, lane] = coef[start + lane, t, jj] if lane < nb else 0.0
            for i in range(n):
                for j in range(n):
                    for lane in range(LANES):
                        xr[i, j, lane] = 0.0
                        xi[i, j, lane] = 0.0
            for jj in range(n_terms):
                if n_rows == 1:
                    for i in range(n):
                        for j in range(n):
                            vr = a_re[0, jj, i, j]
                            vi = a_im[0, jj, i, j]
                            if vr == 0.0 and vi == 0.0:
                                continue
                            for lane in range(LANES):
                                xr[i, j, lane] += vr * cl[jj, lane]
                                xi[i, j, lane] += vi * cl[jj, lane]
                else:
                    for i in range(n):
                        for j in range(n):
                            for lane in range(LANES):
                                r = rows[lane]
                                xr[i, j, lane] += a_re[r, jj, i, j] * cl[jj, lane]
                                xi[i, j, lane] += a_im[r, jj, i, j] * cl[jj, lane]
            # Shift out the mean diagonal μ (exp(X) = e^μ·exp(X − μ)): it carries the
            # manifold's common detuning, often most of the norm.
            for lane in range(LANES):
                mur[lane] = 0.0
                mui[lane] = 0.0
            for i in range(n):
                for lane in range(LANES):
                    mur[lane] += xr[i, i, lane]
                    mui[lane] += xi[i, i, lane]
            for lane in range(LANES):
                mur[lane] /= n
                mui[lane] /= n
            for i in range(n):
                for lane in range(LANES):
                    xr[i, i, lane] -= mur[lane]
                    xi[i, i, lane] -= mui[lane]
            theta = 0.0
            for j in range(n):
                for lane in range(LANES):
                    col[lane] = 0.0
                for i in range(n):
                    for lane in range(LANES):
                        col[lane] += math.sqrt(xr[i, j, lane] ** 2 + xi[i, j, lane] ** 2)
                for lane in range(LANES):
                    theta = max(theta, col[lane])
            s = 0
            while theta > _THETA_MAX:
                theta *= 0.5
                s += 1
            scale = 0.5**s
            for i in range(n):
                for j in range(n):
                    for lane in range(LANES):
                        xr[i, j, lane] *= scale
                        xi[i, j, lane] *= scale
            _cmm(xr, xi, xr, xi, x2r, x2i)
            _cmm(x2r, x2i, xr, xi, x3r, x3i)
            _cmm(x2r, x2i, x2r, x2i, x4r, x4i)
            # P = B3 + c16·X⁴, then P = B_i + X⁴·P for i = 2, 1, 0 (Paterson–Stockmeyer).
            for i in range(n):
                for j in range(n):
                    for lane in range(LANES):
                        pr[i, j, lane] = taylor[16] * x4r[i, j, lane]
                        pi[i, j, lane] = taylor[16] * x4i[i, j, lane]
            _poly(taylor, 12, xr, xi, x2r, x2i, x3r, x3i, pr, pi)
            for base in (8, 4, 0):
                _cmm(x4r, x4i, pr, pi, tr, ti)
                _poly(taylor, base, xr, xi, x2r, x2i, x3r, x3i, tr, ti)
                pr, tr = tr, pr
                pi, ti = ti, pi
            for _ in range(s):
                _cmm(pr, pi, pr, pi, tr, ti)
                pr, tr = tr, pr
                pi, ti = ti, pi
            for lane in range(LANES):
                m = math.exp(mur[lane])
                col[lane] = m * math.cos(mui[lane])
                mui[lane] = m * math.sin(mui[lane])
                mur[lane] = col[lane]
            for i in range(n):
                for j in range(n):
                    for lane in range(LANES):
                        vr = pr[i, j, lane]
                        vi = pi[i, j, lane]
                        pr[i, j, lane] = vr * mur[lane] - vi * mui[lane]
                        pi[i, j, lane] = vr * mui[lane] + vi * mur[lane]
            _cmm(pr, pi, accr, acci, tr, ti)
            accr, tr = tr, accr
            acci, ti = ti, acci
        for lane in range(nb):
            for i in range(n):
                for j in range(n):
                    out[start + lane, i, j] = accr[i, j, lane] + 1j * acci[i, j, lane]


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
    n_comp, labels = connected_components(csr_matrix(pattern), directed=True, connection="weak")
    return [np.flatnonzero(labels == c) for c in range(n_comp)]


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


# ---------------------------------------------------------------------------------------
# Propagation.
# ---------------------------------------------------------------------------------------


def _playing(pulse: Pulse) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Real channels given and drive channels that play anything (silent drives add nothing
    and would break the excitation-number blocks)."""
    reals = tuple(r for r, x in pulse.reals.items() if np.any(x != 0))
    drives = tuple(c for c, u in pulse.drives.items() if np.any(u != 0))
    return reals, drives


def _chain(mats: ComplexArray, coef: FloatArray) -> ComplexArray:
    """Block by block: (R, J, n, n) matrices, (B, T, J) coefficients -> (B, n, n)."""
    b = coef.shape[0]
    n = mats.shape[-1]
    out = np.zeros((b, n, n), dtype=np.complex128)
    for idx in blocks(mats):
        sub = mats[:, :, idx[:, None], idx[None, :]]
        if len(idx) == 1 and sub.shape[0] == 1:
            # A 1×1 block is a scalar exponential: no kernel needed.
            g = coef @ sub[0, :, 0, 0]
            out[:, idx[0], idx[0]] = np.exp(g.sum(axis=1))
            continue
        res = np.empty((b, len(idx), len(idx)), dtype=np.complex128)
        _chain_kernel(np.ascontiguousarray(sub.real), np.ascontiguousarray(sub.imag),
                      np.ascontiguousarray(coef), _TAYLOR, res)
        out[:, idx[:, None], idx[None, :]] = res
    return out


def propagate(om: OperatorModel | Sequence[OperatorModel], pulse: Pulse, open_system: bool,
              max_phase_step: float = 0.05) -> ComplexArray:
    """Validated pulse -> (B, n, n) propagators in the modes' frames (n = D or D²).

    ``om`` is one model for every row, or one per row (same dims and channels)."""
    rows = [om] if isinstance(om, OperatorModel) else list(om)
    reals, drives = _playing(pulse)
    plans = [substeps(r, pulse, max_phase_step) for r in rows]
    n_sub = max(k for _, k in plans)
    if len(rows) == 1:
        f_ref = plans[0][0]
        mats = _terms(rows[0], f_ref, reals, drives, open_system)[None]
        coef = _coefficients(rows[0], pulse, f_ref, n_sub, reals, drives)
        out = _chain(mats, coef)
        return to_mode_frames(rows[0], out, f_ref, pulse.t0_s, pulse.t0_s + pulse.n_samples * rows[0].dt_s)
    mats = np.stack([_terms(r, f, reals, drives, open_system) for r, (f, _) in zip(rows, plans, strict=True)])
    coef = np.concatenate([
        _coefficients(r, _row(pulse, b), f, n_sub, reals, drives)
        for b, (r, (f, _)) in enumerate(zip(rows, plans, strict=True))
    ])
    out = _chain(mats, coef)
    t1 = pulse.t0_s + pulse.n_samples * rows[0].dt_s
    return np.stack([to_mode_frames(r, out[b], f, pulse.t0_s, t1)
                     for b, (r, (f, _)) in enumerate(zip(rows, plans, strict=True))])


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
        base = _chain(mats[None], np.full((1, 1, 1), float(duration_s)))[0]
        base.setflags(write=False)
        if len([k for k in om._cache if k.startswith("fast:idle:")]) < 64:
            om._cache[key] = base
    return to_mode_frames(om, base, om.frame_hz, t0_s, t0_s + duration_s)  # type: ignore[arg-type]
