"""3-level kernels of the fast engine, written so numba vectorises across pulses.

Matrices live in flat arrays, entry e of lane l at e·LANES + l, and every hot loop is a
lane loop over straight-line code: LLVM then turns each scalar operation into one SIMD
instruction over LANES pulses. The algorithm is the one described in ``fast.py``;
``fast.py`` holds the general-N kernels these must agree with.
"""

from __future__ import annotations

import math

import numpy as np

from ._fast_mm9 import SPARSITY, mm9, mm9_horner, mm9_ls, mm9_rs
from .jit import LANES, jit

__all__ = ["SPARSITY", "THETA_MAX", "closed_kernel", "open_kernel"]
from .model import ComplexArray, FloatArray

# Taylor coefficients of cos X = Σ_k C_k (X²)^k and sin X = X·Σ_k S_k (X²)^k, degree 16.
_C = tuple((-1.0) ** k / math.factorial(2 * k) for k in range(9))
_S = tuple((-1.0) ** k / math.factorial(2 * k + 1) for k in range(8))
C0, C1, C2, C3, C4, C5, C6, C7, C8 = _C
S0, S1, S2, S3, S4, S5, S6, S7 = _S
# Taylor degree 16: Σ_{k>16} θ^k/k! < 1.2e-16 for θ <= 0.8 (1-norm of the scaled matrix).
THETA_MAX = 0.8
# The open kernel's exp: degree 20, Σ_{k>20} θ^k/k! < 1.2e-16 for θ <= 1.5.
OPEN_THETA_MAX = 1.5
# An array, not a tuple: numba indexes a global tuple at a run-time index (the Horner
# blocks) through a jump table per access, an array by one load.
_IF = np.array([1.0 / math.factorial(k) for k in range(21)])


# Symmetric 3×3 matrices as 6-tuples (m00, m01, m02, m11, m12, m22). Every matrix here is
# a polynomial in one symmetric X, so all of them commute and every product is symmetric.


@jit(inline="always")
def _smul(a, b):  # type: ignore[no-untyped-def]
    a00, a01, a02, a11, a12, a22 = a
    b00, b01, b02, b11, b12, b22 = b
    return (
        a00 * b00 + a01 * b01 + a02 * b02,
        a00 * b01 + a01 * b11 + a02 * b12,
        a00 * b02 + a01 * b12 + a02 * b22,
        a01 * b01 + a11 * b11 + a12 * b12,
        a01 * b02 + a11 * b12 + a12 * b22,
        a02 * b02 + a12 * b12 + a22 * b22,
    )


@jit(inline="always")
def _poly(c0, c1, c2, p1, p2, add):  # type: ignore[no-untyped-def]
    """c0·I + c1·p1 + c2·p2 + add."""
    return (
        c0 + c1 * p1[0] + c2 * p2[0] + add[0],
        c1 * p1[1] + c2 * p2[1] + add[1],
        c1 * p1[2] + c2 * p2[2] + add[2],
        c0 + c1 * p1[3] + c2 * p2[3] + add[3],
        c1 * p1[4] + c2 * p2[4] + add[4],
        c0 + c1 * p1[5] + c2 * p2[5] + add[5],
    )


_ZERO6 = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@jit
def closed_kernel(diag: FloatArray, coup: FloatArray, mu: FloatArray, wr: FloatArray,
                  wi: FloatArray, out: ComplexArray) -> None:
    """3-level unitaries; same arguments as ``fast._closed_kernel`` (N = 3)."""
    nb_total, n_s = wr.shape
    par = np.zeros(5 * LANES)  # d0, d1, d2, c0, c1 per lane
    amp = np.zeros(LANES)
    ph_r = np.ones(LANES)
    ph_i = np.zeros(LANES)
    cs = np.zeros(12 * LANES)  # cos X then sin X, 6 entries each
    acc = np.zeros(18 * LANES)  # Re then Im of the 3×3 accumulated unitary, row-major
    for start in range(0, nb_total, LANES):
        nl = min(LANES, nb_total - start)
        for lane in range(nl):
            par[0 * LANES + lane] = diag[start + lane, 0]
            par[1 * LANES + lane] = diag[start + lane, 1]
            par[2 * LANES + lane] = diag[start + lane, 2]
            par[3 * LANES + lane] = coup[start + lane, 0]
            par[4 * LANES + lane] = coup[start + lane, 1]
        for e in range(18):
            for lane in range(nl):
                acc[e * LANES + lane] = 1.0 if e in (0, 4, 8) else 0.0
        for k in range(n_s):
            theta = 0.0
            for lane in range(nl):
                ur = wr[start + lane, k]
                ui = wi[start + lane, k]
                m = math.hypot(ur, ui)
                amp[lane] = m
                ph_r[lane] = ur / m if m > 0.0 else 1.0
                ph_i[lane] = ui / m if m > 0.0 else 0.0
                e0 = par[3 * LANES + lane] * m
                e1 = par[4 * LANES + lane] * m
                row = max(abs(par[0 * LANES + lane]) + e0,
                          abs(par[1 * LANES + lane]) + e0 + e1,
                          abs(par[2 * LANES + lane]) + e1)
                theta = max(theta, row)
            n_sq = 0
            while theta > THETA_MAX:
                theta *= 0.5
                n_sq += 1
            sc = 0.5**n_sq
            for lane in range(nl):
                m = amp[lane] * sc
                x = (par[0 * LANES + lane] * sc, par[3 * LANES + lane] * m, 0.0,
                     par[1 * LANES + lane] * sc, par[4 * LANES + lane] * m,
                     par[2 * LANES + lane] * sc)
                # Paterson–Stockmeyer in B = X², blocks of three powers.
                b1 = _smul(x, x)
                b2 = _smul(b1, b1)
                b3 = _smul(b2, b1)
                q = _poly(C6, C7, C8, b1, b2, _ZERO6)
                q = _poly(C3, C4, C5, b1, b2, _smul(b3, q))
                c = _poly(C0, C1, C2, b1, b2, _smul(b3, q))
                q = _poly(S6, S7, 0.0, b1, b2, _ZERO6)
                q = _poly(S3, S4, S5, b1, b2, _smul(b3, q))
                q = _poly(S0, S1, S2, b1, b2, _smul(b3, q))
                s = _smul(x, q)
                for e in range(6):
                    cs[e * LANES + lane] = c[e]
                    cs[(6 + e) * LANES + lane] = s[e]
            for _ in range(n_sq):
                # cos 2X = 2cos²X − I, sin 2X = 2·sin X·cos X.
                for lane in range(nl):
                    c = (cs[0 * LANES + lane], cs[1 * LANES + lane], cs[2 * LANES + lane],
                         cs[3 * LANES + lane], cs[4 * LANES + lane], cs[5 * LANES + lane])
                    s = (cs[6 * LANES + lane], cs[7 * LANES + lane], cs[8 * LANES + lane],
                         cs[9 * LANES + lane], cs[10 * LANES + lane], cs[11 * LANES + lane])
                    c2 = _smul(c, c)
                    s2 = _smul(s, c)
                    for e in range(6):
                        cs[e * LANES + lane] = 2.0 * c2[e] - (1.0 if e in (0, 3, 5) else 0.0)
                        cs[(6 + e) * LANES + lane] = 2.0 * s2[e]
            for lane in range(nl):
                # acc ← P·(C − iS)·P†·acc with P = diag(1, p, p²), p = u/|u|.
                p = complex(ph_r[lane], ph_i[lane])
                p2 = p * p
                pc = p.conjugate()
                p2c = p2.conjugate()
                c00 = cs[0 * LANES + lane]
                c01 = cs[1 * LANES + lane]
                c02 = cs[2 * LANES + lane]
                c11 = cs[3 * LANES + lane]
                c12 = cs[4 * LANES + lane]
                c22 = cs[5 * LANES + lane]
                e00 = complex(c00, -cs[6 * LANES + lane])
                e01 = complex(c01, -cs[7 * LANES + lane])
                e02 = complex(c02, -cs[8 * LANES + lane])
                e11 = complex(c11, -cs[9 * LANES + lane])
                e12 = complex(c12, -cs[10 * LANES + lane])
                e22 = complex(c22, -cs[11 * LANES + lane])
                for j in range(3):
                    y0 = complex(acc[j * LANES + lane], acc[(9 + j) * LANES + lane])
                    y1 = pc * complex(acc[(3 + j) * LANES + lane], acc[(12 + j) * LANES + lane])
                    y2 = p2c * complex(acc[(6 + j) * LANES + lane], acc[(15 + j) * LANES + lane])
                    z0 = e00 * y0 + e01 * y1 + e02 * y2
                    z1 = p * (e01 * y0 + e11 * y1 + e12 * y2)
                    z2 = p2 * (e02 * y0 + e12 * y1 + e22 * y2)
                    acc[j * LANES + lane] = z0.real
                    acc[(9 + j) * LANES + lane] = z0.imag
                    acc[(3 + j) * LANES + lane] = z1.real
                    acc[(12 + j) * LANES + lane] = z1.imag
                    acc[(6 + j) * LANES + lane] = z2.real
                    acc[(15 + j) * LANES + lane] = z2.imag
        for lane in range(nl):
            g = -mu[start + lane] * n_s
            gph = complex(math.cos(g), math.sin(g))
            for i in range(3):
                for j in range(3):
                    e = i * 3 + j
                    out[start + lane, i, j] = gph * complex(acc[e * LANES + lane],
                                                            acc[(9 + e) * LANES + lane])


@jit
def _max_col_norm(m: FloatArray, colmax: FloatArray, nl: int) -> float:
    """Largest 1-norm (max column sum of |entries|) over lanes < nl of 9×9 flat matrices;
    ``colmax`` is (LANES,) scratch."""
    # Column sums over all lanes (a constant trip count LLVM vectorises), the largest per
    # lane by compare and select (what max does); lanes >= nl stay out of the final reduction.
    for lane in range(LANES):
        colmax[lane] = 0.0
    for col in range(9):
        for lane in range(LANES):
            colsum = abs(m[col * LANES + lane])
            for row in range(1, 9):
                colsum += abs(m[(row * 9 + col) * LANES + lane])
            colmax[lane] = colsum if colsum > colmax[lane] else colmax[lane]
    best = 0.0
    for lane in range(nl):
        best = colmax[lane] if colmax[lane] > best else best
    return best


@jit
def _ps_blocks(blocks: FloatArray, q: FloatArray, cf: FloatArray, x: FloatArray,
               x2: FloatArray, x3: FloatArray, x4: FloatArray, x5: FloatArray) -> None:
    """The Paterson–Stockmeyer blocks of a degree-20 polynomial in X, one pass over X..X⁵.

    blocks: (3, 81·LANES) written, blocks[b] = Σ_{1<=j<5} cf[b, j]·X^j (cf[b, 0]·I is
    added by the Horner step); q: (81·LANES,) written, the Horner start
    Σ_{j<5} cf[3, j]·X^j + cf[3, 5]·X⁵; cf: (4, 6) coefficients.

    Every entry is summed in the order j = 1, 2, ..., 5, then the identity, the rounding
    order the env trajectories are recorded with (``tests/envs/trajectory_check.py``).
    The powers are read once for all four blocks."""
    b01, b02, b03, b04 = cf[0, 1], cf[0, 2], cf[0, 3], cf[0, 4]
    b11, b12, b13, b14 = cf[1, 1], cf[1, 2], cf[1, 3], cf[1, 4]
    b21, b22, b23, b24 = cf[2, 1], cf[2, 2], cf[2, 3], cf[2, 4]
    b31, b32, b33, b34, b35 = cf[3, 1], cf[3, 2], cf[3, 3], cf[3, 4], cf[3, 5]
    # One flat loop over every entry and lane (LLVM vectorises it; a loop per entry over
    # 16 lanes it leaves scalar), then the identity on the diagonal.
    for i in range(81 * LANES):
        p1 = x[i]
        p2 = x2[i]
        p3 = x3[i]
        p4 = x4[i]
        blocks[0, i] = b01 * p1 + b02 * p2 + b03 * p3 + b04 * p4
        blocks[1, i] = b11 * p1 + b12 * p2 + b13 * p3 + b14 * p4
        blocks[2, i] = b21 * p1 + b22 * p2 + b23 * p3 + b24 * p4
        q[i] = b31 * p1 + b32 * p2 + b33 * p3 + b34 * p4 + b35 * x5[i]
    c0 = cf[3, 0]
    for e in range(0, 81, 10):
        for lane in range(LANES):
            q[e * LANES + lane] += c0


@jit
def open_kernel(gidx: np.ndarray, l0: FloatArray, l1: FloatArray, mu: FloatArray,
                rot_j: np.ndarray, rot_k: np.ndarray, rot_s: np.ndarray, rot_a: np.ndarray,
                wr: FloatArray, wi: FloatArray, inv_fact: FloatArray, out: FloatArray,
                sparse: bool = False) -> None:
    """3-level superoperators in the Hermitian basis; same arguments as ``fast._open_kernel``,
    plus ``sparse``: every generator L0 + u·L1 lies in ``SPARSITY`` (the products with X
    skip its structural zeros)."""
    nb_total, n_s = wr.shape
    n_pairs = rot_j.shape[0]
    size = 81 * LANES
    lc0 = np.zeros(size)
    lc1 = np.zeros(size)
    x = np.zeros(size)
    x2 = np.zeros(size)
    x3 = np.zeros(size)
    x4 = np.zeros(size)
    x5 = np.zeros(size)
    colmax = np.zeros(LANES)
    q = np.zeros(size)
    blocks = np.zeros((3, size))
    cf = np.zeros((4, 6))
    tmp = np.zeros(size)
    acc = np.zeros(size)
    nxt = np.zeros(size)
    amp = np.zeros(LANES)
    pr = np.ones((3, LANES))
    pi = np.zeros((3, LANES))
    cosv = np.zeros((n_pairs, LANES))
    sinv = np.zeros((n_pairs, LANES))
    prev_c = np.ones((n_pairs, LANES))
    prev_s = np.zeros((n_pairs, LANES))
    rel_c = np.zeros(LANES)
    rel_s = np.zeros(LANES)
    log_gain = np.zeros(LANES)
    for start in range(0, nb_total, LANES):
        nl = min(LANES, nb_total - start)
        for lane in range(nl):
            g = gidx[start + lane]
            log_gain[lane] = mu[g] * n_s
            for e in range(81):
                lc0[e * LANES + lane] = l0[g, e // 9, e % 9]
                lc1[e * LANES + lane] = l1[g, e // 9, e % 9]
        # The products run over all LANES; idle lanes (>= nl) hold X = 0, so their exp is
        # I, acc stays I, and no denormal or overflow from a stale pulse can slow them.
        for lane in range(nl, LANES):
            for e in range(81):
                x[e * LANES + lane] = 0.0
        for e in range(81):
            for lane in range(LANES):
                acc[e * LANES + lane] = 1.0 if e % 10 == 0 else 0.0
        for pidx in range(n_pairs):
            for lane in range(nl):
                prev_c[pidx, lane] = 1.0
                prev_s[pidx, lane] = 0.0
        for k in range(n_s):
            for lane in range(nl):
                ur = wr[start + lane, k]
                ui = wi[start + lane, k]
                m = math.hypot(ur, ui)
                amp[lane] = m
                pr[1, lane] = ur / m if m > 0.0 else 1.0
                pi[1, lane] = ui / m if m > 0.0 else 0.0
                pr[2, lane] = pr[1, lane] * pr[1, lane] - pi[1, lane] * pi[1, lane]
                pi[2, lane] = 2.0 * pr[1, lane] * pi[1, lane]
            for pidx in range(n_pairs):
                jj = rot_j[pidx]
                kk = rot_k[pidx]
                for lane in range(nl):
                    cosv[pidx, lane] = pr[jj, lane] * pr[kk, lane] + pi[jj, lane] * pi[kk, lane]
                    sinv[pidx, lane] = pi[jj, lane] * pr[kk, lane] - pr[jj, lane] * pi[kk, lane]
            for e in range(81):
                for lane in range(nl):
                    x[e * LANES + lane] = lc0[e * LANES + lane] + amp[lane] * lc1[e * LANES + lane]
            # Powers of the unscaled generator X; the scaling 2^−s goes into the Taylor
            # coefficients instead (exact: powers of two). Every power but X² is the one
            # below times X, so the products skip X's structural zeros.
            if sparse:
                mm9_ls(x, x, x2)
                mm9_rs(x2, x, x3)
                mm9_rs(x3, x, x4)
                mm9_rs(x4, x, x5)
            else:
                mm9(x, x, x2)
                mm9(x2, x, x3)
                mm9(x3, x, x4)
                mm9(x4, x, x5)
            # Al-Mohy–Higham bound: the Taylor remainder from degree 21 on is at most
            # Σ_{k>20} α^k/k! with α = max(‖X³‖^{1/3}, ‖X⁴‖^{1/4}) <= ‖X‖ (21 >= 3·2).
            n3 = _max_col_norm(x3, colmax, nl)
            n4 = _max_col_norm(x4, colmax, nl)
            theta = max(n3 ** (1.0 / 3.0), math.sqrt(math.sqrt(n4)))
            n_sq = 0
            while theta > OPEN_THETA_MAX:
                theta *= 0.5
                n_sq += 1
            s1 = 0.5**n_sq
            s2 = s1 * s1
            s3 = s2 * s1
            s4 = s2 * s2
            s5 = s4 * s1
            # exp(s1·X) = Σ_i (s1·X)^{5i}·(Σ_{j<5} (s1·X)^j/(5i+j)!), degree 20, Horner in
            # (s1·X)⁵ (Paterson–Stockmeyer): 3 full products.
            for blk in range(4):
                b = 5 * blk
                cf[blk, 0] = _IF[b]
                cf[blk, 1] = _IF[b + 1] * s1
                cf[blk, 2] = _IF[b + 2] * s2
                cf[blk, 3] = _IF[b + 3] * s3
                cf[blk, 4] = _IF[b + 4] * s4
            cf[3, 5] = _IF[20] * s5
            _ps_blocks(blocks, q, cf, x, x2, x3, x4, x5)
            for blk in range(2, -1, -1):
                mm9_horner(x5, q, tmp, s5, blocks[blk], cf[blk, 0])
                q, tmp = tmp, q
            for _ in range(n_sq):
                mm9(q, q, tmp)
                q, tmp = tmp, q
            # acc ← R·E·R⁻¹·acc with R the pair rotations, kept in the frame of the last
            # sample: acc holds R_k⁻¹·(product so far), so between two samples only the
            # relative rotation R_k⁻¹·R_{k−1} is applied, and R_K once at the end.
            for pidx in range(n_pairs):
                si = rot_s[pidx]
                ai = rot_a[pidx]
                for lane in range(nl):
                    c_now = cosv[pidx, lane]
                    s_now = sinv[pidx, lane]
                    c_prev = prev_c[pidx, lane]
                    s_prev = prev_s[pidx, lane]
                    rel_c[lane] = c_now * c_prev + s_now * s_prev
                    rel_s[lane] = s_now * c_prev - c_now * s_prev
                    prev_c[pidx, lane] = c_now
                    prev_s[pidx, lane] = s_now
                for j in range(9):
                    for lane in range(nl):
                        xs = acc[(si * 9 + j) * LANES + lane]
                        xa = acc[(ai * 9 + j) * LANES + lane]
                        cv = rel_c[lane]
                        sv = rel_s[lane]
                        acc[(si * 9 + j) * LANES + lane] = cv * xs - sv * xa
                        acc[(ai * 9 + j) * LANES + lane] = sv * xs + cv * xa
            mm9(q, acc, nxt)
            acc, nxt = nxt, acc
        for pidx in range(n_pairs):
            si = rot_s[pidx]
            ai = rot_a[pidx]
            for j in range(9):
                for lane in range(nl):
                    xs = acc[(si * 9 + j) * LANES + lane]
                    xa = acc[(ai * 9 + j) * LANES + lane]
                    cv = prev_c[pidx, lane]
                    sv = prev_s[pidx, lane]
                    acc[(si * 9 + j) * LANES + lane] = cv * xs + sv * xa
                    acc[(ai * 9 + j) * LANES + lane] = -sv * xs + cv * xa
        for lane in range(nl):
            gain = math.exp(log_gain[lane])
            for e in range(81):
                out[start + lane, e // 9, e % 9] = gain * acc[e * LANES + lane]
