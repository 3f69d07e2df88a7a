"""Compiled loops of the calibration environments: DRAG waveforms, frame phases, the probe
analysis and the per-step bookkeeping.

Each loop does, element by element and in the same order, the NumPy array operations it
stands for: on arrays of a few numbers each (a few copies' parameters, a dozen probes) the
call overhead of two dozen NumPy operations outweighs their arithmetic many times over.
Plain IEEE arithmetic throughout (``fastmath`` off, so no FMA contraction): the results are
those of the array forms to the last bit, which keeps every environment reproducible
whichever path computes a step.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from .jit import clip, jit

FloatArray = NDArray[np.float64]
ComplexArray = NDArray[np.complex128]

TWO_PI = 2.0 * math.pi

# ``wrapped_frame_phases``' flags per expression: a ramp, a per-sample ramp (n·dt_s), a
# constant added.
RAMP, PER_SAMPLE, PLUS_CONST = 1, 2, 4


@jit(fastmath=False)
def drag_factors(p: FloatArray, g: FloatArray, dg: FloatArray, x: FloatArray, fractions: FloatArray,
                 scaled: ComplexArray, exponent: ComplexArray) -> float:
    """The two factors of DRAG waveforms: scaled = (f·amplitude)·(g + (1j·β)·dg) and
    exponent = 1j·(−2π·Δ·x + phase), each operation as NumPy's array form does it (a float
    times a complex is the float promoted to complex, zero imaginary part).

    Args:
        p: (B, 4) rows (amplitude, β in s, Δ in Hz, phase in rad).
        g, dg, x: (S,) unit envelope, its time derivative and the sample times.
        fractions: (F,) area fractions (1 for X, ``sx_area_fraction`` for SX).
        scaled: (B, F, S) written; exponent: (B, S) written.
    Returns:
        an upper bound of |scaled| (|re| + |im|; NaN if any entry is NaN).
    """
    bound = 0.0
    for b in range(p.shape[0]):
        beta = p[b, 1]
        jbr, jbi = 0.0 * beta - 1.0 * 0.0, 0.0 * 0.0 + 1.0 * beta  # 1j·β
        a = -TWO_PI * p[b, 2]
        for s in range(g.shape[0]):
            d = dg[s]
            tr, ti = jbr * d - jbi * 0.0, jbr * 0.0 + jbi * d  # (1j·β)·dg
            sr, si = g[s] + tr, 0.0 + ti  # g + ...
            for f in range(fractions.shape[0]):
                amp = fractions[f] * p[b, 0]
                re, im = amp * sr - 0.0 * si, amp * si + 0.0 * sr
                scaled[b, f, s] = complex(re, im)
                m = abs(re) + abs(im)
                if m != m or m > bound:  # a NaN, once taken, is never replaced
                    bound = m
            rot = a * x[s] + p[b, 3]
            exponent[b, s] = complex(0.0 * rot - 1.0 * 0.0, 0.0 * 0.0 + 1.0 * rot)
    return bound


@jit(fastmath=False)
def wrapped_frame_phases(detuning_hz: FloatArray, const: FloatArray, mult: FloatArray,
                         form: NDArray[np.int64], dt_s: float, out: FloatArray) -> None:
    """Frame phases of probe expressions for B detunings, wrapped into [−π, π).

    Per expression f (flags ``form[f]``: ``RAMP``, ``PER_SAMPLE``, ``PLUS_CONST``): −2π·Δ·mult
    (mult = gate_s) or −2π·Δ·mult·dt_s (mult = n samples), left to right, plus ``const[f]``;
    or the constant alone. The wrap is Python's float remainder, which is NumPy's too.

    Shapes: detuning_hz (B,); const, mult, form (F,); out (B, F) written.
    """
    for b in range(detuning_hz.shape[0]):
        a = -TWO_PI * detuning_hz[b]
        for f in range(const.shape[0]):
            fl = form[f]
            if fl & RAMP:
                r = a * mult[f]
                if fl & PER_SAMPLE:
                    r = r * dt_s
                if fl & PLUS_CONST:
                    r = const[f] + r
            else:
                r = const[f]
            out[b, f] = (r + math.pi) % TWO_PI - math.pi


@jit(fastmath=False)
def sine_signal(p: FloatArray) -> FloatArray:
    """clip(2·p − 1, −1, 1) of (B, K) populations, element by element as ``np.clip`` (NaN
    passes through): (B, K)."""
    out = np.empty_like(p)
    for b in range(p.shape[0]):
        for k in range(p.shape[1]):
            out[b, k] = clip(2.0 * p[b, k] - 1.0, -1.0, 1.0)
    return out


@jit(fastmath=False)
def robust_phase_estimation(theta: FloatArray, gains: FloatArray, rank_fam: NDArray[np.int64],
                            rank_col: NDArray[np.int64], rank_w: FloatArray,
                            ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Robust phase estimation of probe angles, row by row: all families advance together,
    rank by rank (shallowest probe of each first); each deeper probe is unwrapped to the
    branch nearest the prediction of the shallower ones, and a family's angle is the
    gain²-weighted mean of its unwrapped per-gate angles.

    Args:
        theta: (B, K) measured angles asin(2·P1 − 1) (NaN: probe not read).
        gains: (K,) angle per unit per-gate error of each probe.
        rank_fam, rank_col, rank_w: (R, F) per depth rank, the family (−1: none), the probe
            column and the weight of each entry (F = the number of families).
    Returns:
        angles (B, K) (θ/gain where no family reads the probe), family angles (B, F) and
        the estimated infidelity (B,) = Σ family angle² / 6.
    """
    n_b = theta.shape[0]
    n_r, n_f = rank_fam.shape
    ang = theta / gains
    fam = np.zeros((n_b, n_f))
    infid = np.zeros(n_b)
    num = np.zeros(n_f)
    den = np.zeros(n_f)
    for b in range(n_b):
        num[:] = 0.0
        den[:] = 0.0
        for r in range(n_r):
            for i in range(n_f):
                f = rank_fam[r, i]
                if f < 0:
                    continue
                k = rank_col[r, i]
                g = gains[k]
                nu = num[f]
                de = den[f]
                th = theta[b, k]
                ok = np.isfinite(th)
                estimate = nu / de if de > 0 else 0.0
                pred = g * estimate
                t = th if ok else 0.0
                m = np.rint((pred - t) / TWO_PI)
                c1 = t + TWO_PI * m
                m2 = np.rint((pred - (math.pi - t)) / TWO_PI)
                c2 = math.pi - t + TWO_PI * m2
                unwrapped = c1 if abs(c1 - pred) <= abs(c2 - pred) else c2
                if not de > 0:
                    unwrapped = t  # the shallowest probe is taken as is (no prediction yet)
                a_k = unwrapped / g
                ang[b, k] = a_k if ok else np.nan
                if ok:
                    num[f] = nu + rank_w[r, i] * a_k
                    den[f] = de + rank_w[r, i]
        s = 0.0
        for f in range(n_f):
            v = num[f] / den[f] if den[f] > 0 else 0.0
            fam[b, f] = v
            s += v * v
        infid[b] = s / 6.0
    return ang, fam, infid


@jit(fastmath=False)
def move_params(params: FloatArray, rows: NDArray[np.int64], delta_unit: FloatArray,
                param_index: NDArray[np.int64], max_step: FloatArray, window_step: FloatArray,
                start: FloatArray, unit: FloatArray) -> None:
    """params[i, c] += delta_unit[j, q] · max_step[c] · unit[i, c] with c = param_index[q],
    for i = rows[j] (distinct), then each parameter clipped to start ± window_step · unit
    and the amplitude to [−1, 1], in place (a calibration step of each row).

    Shapes: params, start, unit (N, 4); rows (n,); delta_unit (n, P); param_index (P,);
    max_step, window_step (4,).
    """
    for j in range(rows.shape[0]):
        i = rows[j]
        for q in range(param_index.shape[0]):
            c = param_index[q]
            params[i, c] += delta_unit[j, q] * (max_step[c] * unit[i, c])
        for c in range(params.shape[1]):
            lim = window_step[c] * unit[i, c]
            params[i, c] = clip(params[i, c], start[i, c] - lim, start[i, c] + lim)
        params[i, 0] = clip(params[i, 0], -1.0, 1.0)


@jit(fastmath=False)
def gate_step_outcome(rows: NDArray[np.int64], n_step: int, p1: FloatArray,
                      infidelity_estimate: FloatArray, params: FloatArray, start: FloatArray,
                      unit: FloatArray, max_step: FloatArray, param_index: NDArray[np.int64],
                      last_error: FloatArray, last_p1: FloatArray, shots_used: NDArray[np.int64],
                      step_shots: int, shot_budget: int, error_floor: float, cost: float,
                      low: FloatArray, high: FloatArray,
                      ) -> tuple[FloatArray, FloatArray, NDArray[np.bool_]]:
    """GateCalibration's observation (n, K + P + 1) clipped to [low, high], reward (n,) and
    terminated (n,) of copies ``rows`` (n,) (distinct; the first ``n_step`` stepped) from
    their probe readings p1 (n, K) and estimated infidelities ``infidelity_estimate`` (n,);
    stores those and p1 as the copies' last ones (``last_error`` (N,), ``last_p1`` (N, K)).

    ``params``, ``start``, ``unit``: (N, 4) per copy; ``max_step`` (4,); ``param_index``
    (P,) the calibrated parameters' columns; ``shots_used`` (N,); ``low``, ``high``
    (K + P + 1,) the observation bounds.
    """
    n, k = p1.shape
    obs = np.empty((n, k + param_index.shape[0] + 1))
    rew = np.zeros(n)
    term = np.empty(n, dtype=np.bool_)
    last = obs.shape[1] - 1
    for j in range(n):
        i = rows[j]
        if j < n_step:
            # Telescoping log-improvement: an episode's return is log10(E_0/E_T) minus the
            # shot cost, so shot noise only enters at the two ends. (libm's log10, as
            # math.log10: NumPy's rounds differently in the last bit.)
            rew[j] = (math.log10(last_error[i] + error_floor) - math.log10(infidelity_estimate[j] + error_floor)) - cost
        last_error[i] = infidelity_estimate[j]
        for q in range(k):
            last_p1[i, q] = p1[j, q]
            obs[j, q] = clip(p1[j, q], low[q], high[q])
        for q in range(param_index.shape[0]):
            c = param_index[q]
            norm = (params[i, c] - start[i, c]) / (max_step[c] * unit[i, c])  # normalised_params
            obs[j, k + q] = clip(norm, low[k + q], high[k + q])
        used = shots_used[i]
        term[j] = used + step_shots > shot_budget
        frac = used / shot_budget
        obs[j, last] = clip(frac if frac < 1.0 else 1.0, low[last], high[last])
    return obs, rew, term


@jit(fastmath=False)
def abs_peak(a: FloatArray) -> float:
    """``float(np.abs(a).max())`` of a (n,) array (n >= 1), NaN if any entry is NaN: one
    loop, without the temporary and reduction that outweigh a few actions' arithmetic."""
    peak = 0.0
    for x in a:
        m = abs(x)
        if m != m:
            return m
        if m > peak:
            peak = m
    return peak
