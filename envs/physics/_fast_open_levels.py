"""The fast engine's open-system kernel for 2, 4, 5 and 6 levels.

The algorithm of the 3-level open kernel (``_fast_n3.open_kernel``): the generator in the
real Hermitian basis at real drive, exp by a degree-20 Taylor polynomial evaluated by
Paterson–Stockmeyer in X⁵ with the Al-Mohy–Higham bound choosing the squarings, the
drive phase applied as 2×2 rotations of the accumulated process, kept in the frame of
the last sample. The matrix products are the generated ones of ``_fast_levels.py``
(dense, and with X's structural zeros skipped in the powers of X), so every hot loop is
a loop over SIMD lanes.
"""

from __future__ import annotations

import math

import numpy as np

from ._fast_levels import (
    mm4,
    mm4_horner,
    mm4_xs,
    mm16,
    mm16_horner,
    mm16_xs,
    mm25,
    mm25_horner,
    mm25_xs,
    mm36,
    mm36_horner,
    mm36_xs,
)
from ._fast_n3 import OPEN_THETA_MAX
from .jit import LANES, jit
from .model import FloatArray

LEVELS = (2, 4, 5, 6)
# 1/k!, k <= 20 (an array: indexed at run time).
_IF = np.array([1.0 / math.factorial(k) for k in range(21)])


@jit
def _mm(m: int, a: FloatArray, b: FloatArray, out: FloatArray) -> None:
    """out = a @ b, m×m, every lane (the generated product of that size)."""
    if m == 16:
        mm16(a, b, out)
    elif m == 25:
        mm25(a, b, out)
    elif m == 36:
        mm36(a, b, out)
    else:
        mm4(a, b, out)


@jit
def _mm_x(m: int, sparse: bool, x: FloatArray, b: FloatArray, out: FloatArray) -> None:
    """out = X @ b, reading only X's structural non-zeros when ``sparse``."""
    if not sparse:
        _mm(m, x, b, out)
    elif m == 16:
        mm16_xs(x, b, out)
    elif m == 25:
        mm25_xs(x, b, out)
    elif m == 36:
        mm36_xs(x, b, out)
    else:
        mm4_xs(x, b, out)


@jit
def _mm_horner(m: int, a: FloatArray, b: FloatArray, out: FloatArray, cf: float,
               add: FloatArray, c0: float) -> None:
    """out = add + cf·(a @ b) + c0·I, m×m, every lane."""
    if m == 16:
        mm16_horner(a, b, out, cf, add, c0)
    elif m == 25:
        mm25_horner(a, b, out, cf, add, c0)
    elif m == 36:
        mm36_horner(a, b, out, cf, add, c0)
    else:
        mm4_horner(a, b, out, cf, add, c0)


@jit
def _max_col_norm(m: int, a: FloatArray, sums: FloatArray, nl: int) -> float:
    """Largest 1-norm (max column sum of |entries|) over lanes < nl of m×m flat matrices;
    ``sums`` is (LANES,) scratch."""
    best = 0.0
    for col in range(m):
        for lane in range(LANES):
            sums[lane] = 0.0
        for row in range(m):
            base = (row * m + col) * LANES
            for lane in range(LANES):
                sums[lane] += abs(a[base + lane])
        for lane in range(nl):
            best = sums[lane] if sums[lane] > best else best
    return best


@jit(inline="always")
def _sample_phases(wr: FloatArray, wi: FloatArray, start: int, k: int, nl: int, n_lev: int,
                   n_pairs: int, rot_j: np.ndarray, rot_k: np.ndarray, amp: FloatArray,
                   pr: FloatArray, pi: FloatArray, cosv: FloatArray, sinv: FloatArray) -> None:
    """Sample k of the block's pulses as amplitude |u| (``amp``) and phase p = u/|u|: its
    powers p^j (``pr``/``pi``, row 0 left at 1) and each rotated pair's cos/sin. The rotation
    of pair (j, k) under P·ρ·P† is e^{iφ(j−k)} = p^j·conj(p^k). Idle lanes play u = 0."""
    for lane in range(LANES):
        if lane < nl:
            ur = wr[start + lane, k]
            ui = wi[start + lane, k]
        else:
            ur = 0.0
            ui = 0.0
        mg = math.hypot(ur, ui)
        amp[lane] = mg
        pr[1, lane] = ur / mg if mg > 0.0 else 1.0
        pi[1, lane] = ui / mg if mg > 0.0 else 0.0
    for j in range(2, n_lev):
        for lane in range(LANES):
            a_r = pr[j - 1, lane] * pr[1, lane] - pi[j - 1, lane] * pi[1, lane]
            a_i = pr[j - 1, lane] * pi[1, lane] + pi[j - 1, lane] * pr[1, lane]
            pr[j, lane] = a_r
            pi[j, lane] = a_i
    for pidx in range(n_pairs):
        jj = rot_j[pidx]
        kk = rot_k[pidx]
        for lane in range(LANES):
            cosv[pidx, lane] = pr[jj, lane] * pr[kk, lane] + pi[jj, lane] * pi[kk, lane]
            sinv[pidx, lane] = pi[jj, lane] * pr[kk, lane] - pr[jj, lane] * pi[kk, lane]


@jit(inline="always")
def _rotate_step(m: int, n_pairs: int, rot_s: np.ndarray, rot_a: np.ndarray, cosv: FloatArray,
                 sinv: FloatArray, prev_c: FloatArray, prev_s: FloatArray, rel_c: FloatArray,
                 rel_s: FloatArray, acc: FloatArray) -> None:
    """Rotate acc by the relative rotation between this sample's pair rotations (cos/sin in
    ``cosv``/``sinv``) and the last sample's (``prev_c``/``prev_s``, then set to this
    sample's). Keeping acc in the frame of the last sample needs only this per sample, and
    ``_rotate_out`` once at the end."""
    for pidx in range(n_pairs):
        si = rot_s[pidx]
        ai = rot_a[pidx]
        for lane in range(LANES):
            c_now = cosv[pidx, lane]
            s_now = sinv[pidx, lane]
            c_prev = prev_c[pidx, lane]
            s_prev = prev_s[pidx, lane]
            rel_c[lane] = c_now * c_prev + s_now * s_prev
            rel_s[lane] = s_now * c_prev - c_now * s_prev
            prev_c[pidx, lane] = c_now
            prev_s[pidx, lane] = s_now
        for j in range(m):
            bs = (si * m + j) * LANES
            ba = (ai * m + j) * LANES
            for lane in range(LANES):
                xs = acc[bs + lane]
                xa = acc[ba + lane]
                acc[bs + lane] = rel_c[lane] * xs - rel_s[lane] * xa
                acc[ba + lane] = rel_s[lane] * xs + rel_c[lane] * xa


@jit(inline="always")
def _rotate_out(m: int, n_pairs: int, rot_s: np.ndarray, rot_a: np.ndarray, prev_c: FloatArray,
                prev_s: FloatArray, acc: FloatArray) -> None:
    """Rotate acc out of the last sample's frame (``_rotate_step``)."""
    for pidx in range(n_pairs):
        si = rot_s[pidx]
        ai = rot_a[pidx]
        for j in range(m):
            bs = (si * m + j) * LANES
            ba = (ai * m + j) * LANES
            for lane in range(LANES):
                xs = acc[bs + lane]
                xa = acc[ba + lane]
                acc[bs + lane] = prev_c[pidx, lane] * xs + prev_s[pidx, lane] * xa
                acc[ba + lane] = -prev_s[pidx, lane] * xs + prev_c[pidx, lane] * xa


@jit
def open_kernel(gidx: np.ndarray, l0: FloatArray, l1: FloatArray, mu: FloatArray,
                rot_j: np.ndarray, rot_k: np.ndarray, rot_s: np.ndarray, rot_a: np.ndarray,
                wr: FloatArray, wi: FloatArray, out: FloatArray, sparse: bool) -> None:
    """Superoperators in the Hermitian basis for N in ``LEVELS``; the arguments of
    ``fast._open_kernel`` (without ``inv_fact``), plus ``sparse``: every generator
    L0 + u·L1 lies in the generated products' sparsity pattern of X for this N."""
    nb_total, n_s = wr.shape
    m = l0.shape[1]
    n_pairs = rot_j.shape[0]
    n_lev = 1
    for pidx in range(n_pairs):
        n_lev = max(n_lev, rot_k[pidx] + 1)
    size = m * m * LANES
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
    pr = np.ones((n_lev, LANES))
    pi = np.zeros((n_lev, LANES))
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
            for e in range(m * m):
                lc0[e * LANES + lane] = l0[g, e // m, e % m]
                lc1[e * LANES + lane] = l1[g, e // m, e % m]
        # Products run over all LANES; idle lanes (>= nl) hold X = 0, so their exp is I
        # and no stale pulse can feed denormals or overflow into them.
        for lane in range(nl, LANES):
            for e in range(m * m):
                lc0[e * LANES + lane] = 0.0
                lc1[e * LANES + lane] = 0.0
        for e in range(m * m):
            for lane in range(LANES):
                acc[e * LANES + lane] = 1.0 if e % (m + 1) == 0 else 0.0
        for pidx in range(n_pairs):
            for lane in range(LANES):
                prev_c[pidx, lane] = 1.0
                prev_s[pidx, lane] = 0.0
        for k in range(n_s):
            _sample_phases(wr, wi, start, k, nl, n_lev, n_pairs, rot_j, rot_k, amp, pr, pi, cosv, sinv)
            for e in range(m * m):
                for lane in range(LANES):
                    x[e * LANES + lane] = lc0[e * LANES + lane] + amp[lane] * lc1[e * LANES + lane]
            # Powers of the unscaled X; the scaling 2^−s goes into the Taylor coefficients
            # (exact: powers of two). Powers of X commute, so each is X times the last and
            # the products read X's structural non-zeros only.
            _mm_x(m, sparse, x, x, x2)
            _mm_x(m, sparse, x, x2, x3)
            _mm_x(m, sparse, x, x3, x4)
            _mm_x(m, sparse, x, x4, x5)
            # Al-Mohy–Higham: the remainder from degree 21 on is at most Σ_{k>20} α^k/k!
            # with α = max(‖X³‖^{1/3}, ‖X⁴‖^{1/4}) <= ‖X‖.
            n3 = _max_col_norm(m, x3, colmax, nl)
            n4 = _max_col_norm(m, x4, colmax, nl)
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
            # exp(s1·X) = Σ_i (s1·X)^{5i}·(Σ_{j<5} (s1·X)^j/(5i+j)!), Horner in (s1·X)⁵.
            for blk in range(4):
                b = 5 * blk
                cf[blk, 0] = _IF[b]
                cf[blk, 1] = _IF[b + 1] * s1
                cf[blk, 2] = _IF[b + 2] * s2
                cf[blk, 3] = _IF[b + 3] * s3
                cf[blk, 4] = _IF[b + 4] * s4
            cf[3, 5] = _IF[20] * s5
            for blk in range(3):
                c1 = cf[blk, 1]
                c2 = cf[blk, 2]
                c3 = cf[blk, 3]
                c4 = cf[blk, 4]
                for i in range(size):
                    blocks[blk, i] = c1 * x[i] + c2 * x2[i] + c3 * x3[i] + c4 * x4[i]
            c1 = cf[3, 1]
            c2 = cf[3, 2]
            c3 = cf[3, 3]
            c4 = cf[3, 4]
            c5 = cf[3, 5]
            for i in range(size):
                q[i] = c1 * x[i] + c2 * x2[i] + c3 * x3[i] + c4 * x4[i] + c5 * x5[i]
            c0 = cf[3, 0]
            for d in range(m):
                for lane in range(LANES):
                    q[d * (m + 1) * LANES + lane] += c0
            for blk in range(2, -1, -1):
                _mm_horner(m, x5, q, tmp, s5, blocks[blk], cf[blk, 0])
                q, tmp = tmp, q
            for _ in range(n_sq):
                _mm(m, q, q, tmp)
                q, tmp = tmp, q
            # acc ← R·E·R⁻¹·acc, R the pair rotations, kept in the frame of the last
            # sample: only the relative rotation R_k⁻¹·R_{k−1} between samples, R_K at the end.
            _rotate_step(m, n_pairs, rot_s, rot_a, cosv, sinv, prev_c, prev_s, rel_c, rel_s, acc)
            _mm(m, q, acc, nxt)
            acc, nxt = nxt, acc
        _rotate_out(m, n_pairs, rot_s, rot_a, prev_c, prev_s, acc)
        for lane in range(nl):
            gain = math.exp(log_gain[lane])
            for e in range(m * m):
                out[start + lane, e // m, e % m] = gain * acc[e * LANES + lane]


@jit
def to_column_stacking(real: FloatArray, order: np.ndarray, coef: np.ndarray,
                       out: np.ndarray) -> None:
    """(B, M, M) real-basis superoperators -> (B, M, M) complex column stacking, S = w·R·w†,
    from the two non-zeros of each row of w (``real_basis._gather``: columns ``order``
    (M, 2), values ``coef`` (M, 2)). One pass, no temporaries: numpy's gather builds ten
    (B, M, M) arrays and took a fifth of the 4-level open time."""
    nb, m, _ = real.shape
    for b in range(nb):
        for r in range(m):
            r0 = order[r, 0]
            r1 = order[r, 1]
            cr0 = coef[r, 0]
            cr1 = coef[r, 1]
            for s in range(m):
                s0 = order[s, 0]
                s1 = order[s, 1]
                left0 = cr0 * real[b, r0, s0] + cr1 * real[b, r1, s0]
                left1 = cr0 * real[b, r0, s1] + cr1 * real[b, r1, s1]
                out[b, r, s] = coef[s, 0].conjugate() * left0 + coef[s, 1].conjugate() * left1


@jit
def _cheb_sum(c: FloatArray, cheb: FloatArray, q: FloatArray) -> None:
    """q[e·LANES + l] = Σ_t c[e, t]·cheb[t, l]: one model's table (mm, K), K a multiple of
    4, at every lane's T_t. Blocks of 4 entries × 4 terms keep 16 multiply-adds per lane
    between loads and stores of q, in one lane loop."""
    mm, n_terms = c.shape
    e_end = mm - mm % 4
    for e0 in range(0, e_end, 4):
        o0 = e0 * LANES
        for lane in range(LANES):
            q[o0 + lane] = 0.0
            q[o0 + LANES + lane] = 0.0
            q[o0 + 2 * LANES + lane] = 0.0
            q[o0 + 3 * LANES + lane] = 0.0
        for t in range(0, n_terms, 4):
            c00 = c[e0, t]
            c01 = c[e0, t + 1]
            c02 = c[e0, t + 2]
            c03 = c[e0, t + 3]
            c10 = c[e0 + 1, t]
            c11 = c[e0 + 1, t + 1]
            c12 = c[e0 + 1, t + 2]
            c13 = c[e0 + 1, t + 3]
            c20 = c[e0 + 2, t]
            c21 = c[e0 + 2, t + 1]
            c22 = c[e0 + 2, t + 2]
            c23 = c[e0 + 2, t + 3]
            c30 = c[e0 + 3, t]
            c31 = c[e0 + 3, t + 1]
            c32 = c[e0 + 3, t + 2]
            c33 = c[e0 + 3, t + 3]
            for lane in range(LANES):
                h0 = cheb[t, lane]
                h1 = cheb[t + 1, lane]
                h2 = cheb[t + 2, lane]
                h3 = cheb[t + 3, lane]
                q[o0 + lane] += c00 * h0 + c01 * h1 + c02 * h2 + c03 * h3
                q[o0 + LANES + lane] += c10 * h0 + c11 * h1 + c12 * h2 + c13 * h3
                q[o0 + 2 * LANES + lane] += c20 * h0 + c21 * h1 + c22 * h2 + c23 * h3
                q[o0 + 3 * LANES + lane] += c30 * h0 + c31 * h1 + c32 * h2 + c33 * h3
    for e in range(e_end, mm):
        o = e * LANES
        for lane in range(LANES):
            q[o + lane] = 0.0
        for t in range(0, n_terms, 4):
            c0 = c[e, t]
            c1 = c[e, t + 1]
            c2 = c[e, t + 2]
            c3 = c[e, t + 3]
            for lane in range(LANES):
                q[o + lane] += (c0 * cheb[t, lane] + c1 * cheb[t + 1, lane]
                                + c2 * cheb[t + 2, lane] + c3 * cheb[t + 3, lane])


@jit
def _cheb_sum_lanes(ltab: FloatArray, cheb: FloatArray, q: FloatArray) -> None:
    """``_cheb_sum`` with each lane's own table: ltab[(e·K + t)·LANES + l], K a multiple
    of 4 (``cheb`` is (K, LANES))."""
    n_terms = cheb.shape[0]
    mm = q.shape[0] // LANES
    for e in range(mm):
        o = e * LANES
        base = e * n_terms * LANES
        for lane in range(LANES):
            q[o + lane] = 0.0
        for t in range(0, n_terms, 4):
            b = base + t * LANES
            for lane in range(LANES):
                q[o + lane] += (ltab[b + lane] * cheb[t, lane]
                                + ltab[b + LANES + lane] * cheb[t + 1, lane]
                                + ltab[b + 2 * LANES + lane] * cheb[t + 2, lane]
                                + ltab[b + 3 * LANES + lane] * cheb[t + 3, lane])


@jit
def table_kernel(gidx: np.ndarray, tab: FloatArray, a_lo: float, a_hi: float, mu: FloatArray,
                 rot_j: np.ndarray, rot_k: np.ndarray, rot_s: np.ndarray, rot_a: np.ndarray,
                 wr: FloatArray, wi: FloatArray, out: FloatArray) -> None:
    """``open_kernel`` with each sample's exp(L0 + a·L1) read from a Chebyshev table in
    the drive amplitude a = |u| instead of a Taylor polynomial (``_fast_open_table``).

    ``tab`` (G, M·M, K), K a multiple of 4: model g's coefficients entry by entry,
    E_g(a)[i, j] = Σ_k tab[g, i·M + j, k]·T_k(x), x = (2a − a_lo − a_hi)/(a_hi − a_lo),
    valid for a in [a_lo, a_hi]; the other arguments as ``open_kernel``. One sample costs K·M² multiply-adds for E plus the product that
    accumulates the process, against about 8 M×M products for the Taylor polynomial."""
    nb_total, n_s = wr.shape
    n_terms = tab.shape[2]
    mm = tab.shape[1]
    m = out.shape[1]
    n_pairs = rot_j.shape[0]
    n_lev = 1
    for pidx in range(n_pairs):
        n_lev = max(n_lev, rot_k[pidx] + 1)
    size = mm * LANES
    # A block whose pulses share one model reads its table directly. A mixed block copies
    # each lane's coefficients, entry-major so that one entry's K terms are contiguous:
    # ltab[(e·K + k)·LANES + lane], refilled only for lanes whose model changes.
    ltab = np.zeros(mm * n_terms * LANES)
    lane_g = np.full(LANES, -1, dtype=np.int64)
    cheb = np.zeros((n_terms, LANES))
    q = np.zeros(size)
    acc = np.zeros(size)
    nxt = np.zeros(size)
    amp = np.zeros(LANES)
    pr = np.ones((n_lev, LANES))
    pi = np.zeros((n_lev, LANES))
    cosv = np.zeros((n_pairs, LANES))
    sinv = np.zeros((n_pairs, LANES))
    prev_c = np.ones((n_pairs, LANES))
    prev_s = np.zeros((n_pairs, LANES))
    rel_c = np.zeros(LANES)
    rel_s = np.zeros(LANES)
    log_gain = np.zeros(LANES)
    x_scale = 2.0 / (a_hi - a_lo)
    x_shift = (a_hi + a_lo) / (a_hi - a_lo)
    for start in range(0, nb_total, LANES):
        nl = min(LANES, nb_total - start)
        g0 = gidx[start]
        one_model = True
        for lane in range(nl):
            g = gidx[start + lane]
            log_gain[lane] = mu[g] * n_s
            one_model = one_model and g == g0
        tg = tab[g0]
        for lane in range(nl if not one_model else 0):
            g = gidx[start + lane]
            if lane_g[lane] != g:
                lane_g[lane] = g
                for e in range(mm):
                    for k in range(n_terms):
                        ltab[(e * n_terms + k) * LANES + lane] = tab[g, e, k]
        for e in range(mm):
            for lane in range(LANES):
                acc[e * LANES + lane] = 1.0 if e % (m + 1) == 0 else 0.0
        for pidx in range(n_pairs):
            for lane in range(LANES):
                prev_c[pidx, lane] = 1.0
                prev_s[pidx, lane] = 0.0
        for k in range(n_s):
            _sample_phases(wr, wi, start, k, nl, n_lev, n_pairs, rot_j, rot_k, amp, pr, pi, cosv, sinv)
            # T_k(x) by the three-term recurrence, stable for |x| <= 1. Idle lanes have
            # a = 0 and x at the interval's edge or inside: their E is finite, never used.
            for lane in range(LANES):
                xv = amp[lane] * x_scale - x_shift
                cheb[0, lane] = 1.0
                if n_terms > 1:
                    cheb[1, lane] = xv
            for t in range(2, n_terms):
                for lane in range(LANES):
                    xv = amp[lane] * x_scale - x_shift
                    cheb[t, lane] = 2.0 * xv * cheb[t - 1, lane] - cheb[t - 2, lane]
            if one_model:
                _cheb_sum(tg, cheb, q)
            else:
                _cheb_sum_lanes(ltab, cheb, q)
            # acc ← R·E·R⁻¹·acc in the frame of the last sample, as in ``open_kernel``.
            _rotate_step(m, n_pairs, rot_s, rot_a, cosv, sinv, prev_c, prev_s, rel_c, rel_s, acc)
            _mm(m, q, acc, nxt)
            acc, nxt = nxt, acc
        _rotate_out(m, n_pairs, rot_s, rot_a, prev_c, prev_s, acc)
        for lane in range(nl):
            gain = math.exp(log_gain[lane])
            for e in range(mm):
                out[start + lane, e // m, e % m] = gain * acc[e * LANES + lane]
