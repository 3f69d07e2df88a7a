"""Reading a verification's counts into a ``Verdict`` (side-effect free): the residual
angles' grid posteriors, the measured decay and the modelled leakage summed into 1 − F and
its 90 % interval, then the decision (``docs/verification.md``, "The model")."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import chi2

from .verification_checks import Check, _decay
from .verification_models import _decay_rate_draws, _decay_rate_pairs, detuning_weight, train_decay
from .verification_settings import FAMILIES, Reason, StatedCoherence, VerificationSettings
from .verification_verdict import Verdict, failed

FloatArray = NDArray[np.float64]


_GRID = 3000  # points per sign of the angle grid
_THETA0 = 1e-5  # rad: below this the prior on |θ| stops growing (no angle is exactly zero)


def _grid(half: float) -> tuple[FloatArray, FloatArray]:
    """Angles on (−half, half), geometrically dense near 0, and their prior mass.

    The prior is scale-invariant in the residual's size, density ∝ 1/(|θ| + θ0): a
    residual of 1e-3 rad is as likely a priori as one of 1e-2 rad. A flat prior would
    instead claim a coherent error of the size of the shot noise on every gate (its
    posterior of θ² cannot reach zero), which overstates 1 − F of a gate that is
    calibrated. The checks' likelihood decides wherever the data resolve θ."""
    pos = np.geomspace(1e-7, half, _GRID)
    grid = np.concatenate([-pos[::-1], [0.0], pos])
    width = np.gradient(grid)
    return grid, width / (np.abs(grid) + _THETA0)


def _loglik(theta: FloatArray, n1: FloatArray, n: FloatArray, m: float, amp: FloatArray,
            gain: FloatArray, sign: FloatArray, phase: FloatArray | None = None) -> FloatArray:
    """(G,) log-likelihood of a family's checks (K,) on a grid of per-gate angles (G,)."""
    arg = theta[:, None] * gain[None, :]
    p = m + (sign * amp)[None, :] * np.sin(arg if phase is None else arg + phase[None, :])
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray((n1 * np.log(p) + (n - n1) * np.log1p(-p)).sum(axis=1))


def _saturated(n1: FloatArray, n: FloatArray) -> float:
    f = np.clip(n1 / n, 1e-6, 1 - 1e-6)
    return float((n1 * np.log(f) + (n - n1) * np.log1p(-f)).sum())


_NOISE_POINTS = 32  # points of the detuning-noise grid (rms angle per gate)
_CONTRAST_FACTORS = np.linspace(0.8, 1.2, 5)  # the Ramsey checks' contrast over the readout checks'


def _detuning_with_noise(grid: FloatArray, prior: FloatArray, half: float, n1: FloatArray, n: FloatArray, m: float,
                         amp: FloatArray, gain: FloatArray, sign: FloatArray, phase: FloatArray,
                         rng: np.random.Generator, samples: int) -> tuple[FloatArray, FloatArray, FloatArray, float, float]:
    """Draws of the Ramsey family's mean angle θ and of the rms ε of a slow detuning noise
    (both per gate), the marginal posterior of θ on ``grid``, and the best (θ, log-likelihood).

    Run in several batches, a detuning that changes from batch to batch (quasi-static noise,
    slow drift) averages the Ramsey signal sin(g·(θ + ε)) over ε ~ N(0, s²):
    sin(g·θ)·exp(−(g·s)²/2), a contrast loss that grows with the delay; the gate's error
    from it is E[(θ + ε)²]/6 = (θ² + s²)/6, charged in full. The loss shows only with both
    quadratures (a sine one alone reads the midpoint at θ = 0 whatever the contrast): the
    checks' ``phase`` is 0 (SX·τ·SY) or π/2 (SX·τ·SX). Prior on s scale-invariant, as θ's."""
    sg = np.geomspace(1e-7, half, _NOISE_POINTS)
    prior_s = np.gradient(sg) / (sg + _THETA0)
    # The Ramsey signal's own contrast, a factor κ on the readout checks' one (their shot
    # noise, the SX pulses' error), marginalised with a flat prior: otherwise a cosine
    # quadrature above the readout contrast misfits and one below it reads as noise.
    wave = np.sin(grid[:, None] * gain[None, :] + phase[None, :])  # (G, K), the same for every (κ, s)
    scale = (_CONTRAST_FACTORS[:, None, None] * (sign * amp)[None, None, :]
             * np.exp(-0.5 * (gain[None, None, :] * sg[None, :, None]) ** 2))  # (κ, s, K)
    ll_k = np.empty((_CONTRAST_FACTORS.size, sg.size, grid.size))
    for i in range(_CONTRAST_FACTORS.size):
        for j in range(sg.size):
            p = np.clip(m + wave * scale[i, j][None, :], 1e-6, 1 - 1e-6)
            ll_k[i, j] = n1 @ np.log(p).T + (n - n1) @ np.log1p(-p).T
    top = float(ll_k.max())
    ll = top + np.log(np.exp(ll_k - top).mean(axis=0))
    _, i_t = np.unravel_index(int(np.argmax(ll)), ll.shape)
    post = prior_s[:, None] * prior[None, :] * np.exp(ll - top)
    post /= post.sum()
    cdf = np.cumsum(post.reshape(-1))
    idx = np.minimum(np.searchsorted(cdf, rng.random(samples)), cdf.size - 1)
    js, jt = np.divmod(idx, grid.size)
    return np.asarray(grid[jt]), np.asarray(sg[js]), post.sum(axis=0), float(grid[i_t]), top


def _joint_readout(low: tuple[float, float], high: tuple[float, float], mids: Sequence[tuple[float, float]]
                   ) -> tuple[float, float, FloatArray]:
    """Readout offset e0 and contrast C by weighted least squares from readings of e0
    (``low``), e0 + C (``high``) and e0 + C/2 (``mids``), each (value, variance); returns
    (e0, C, their 2×2 covariance).

    The midpoint readings pin e0 + C/2 to a few hundred shots, so C = 2·(midpoint − e0) and
    C = 2·(P1(X) − midpoint) become two readings of it and the better-read reference gets the
    weight (p(1|0) is usually the one nearer a pole, so read more precisely)."""
    rows = [(low[0], 0.0, low[1]), (high[0], 1.0, high[1])] + [(y, 0.5, v) for y, v in mids]
    x = np.array([[1.0, a] for _, a, _ in rows])
    w = np.array([1.0 / max(v, 1e-12) for _, _, v in rows])
    y = np.array([r[0] for r in rows])
    cov = np.linalg.inv(x.T @ (w[:, None] * x))
    beta = cov @ (x.T @ (w * y))
    return float(beta[0]), float(beta[1]), np.asarray(cov)


def analyse_checks(check_set: Sequence[Check], counts: ArrayLike, shots: Sequence[int],
                   stated: StatedCoherence, envelope: ArrayLike, dt_s: float,
                   settings: VerificationSettings | None = None,
                   leakage_per_gate: float | None = None) -> Verdict:
    """Read the counts (K, 2) of ``check_set`` (run with ``shots[k]`` shots each) into a
    ``Verdict``. ``envelope`` (S,) is the X pulse's envelope on the ``dt_s`` grid (its shape
    sets how the identity trains decay); ``leakage_per_gate`` the pulse's modelled leakage
    (``model_leakage``), added when ``settings.leakage_model``. Pure: no device,
    deterministic (fixed-seed Monte Carlo)."""
    envelope = np.asarray(envelope, dtype=np.float64)
    gate_s = envelope.size * dt_s
    s = VerificationSettings() if settings is None else settings
    c = np.asarray(counts, dtype=np.float64).reshape(len(check_set), 2)
    n = np.asarray(shots, dtype=np.float64)
    p1 = c[:, 1] / n
    by_name = {ch.name: k for k, ch in enumerate(check_set)}
    limit = stated.limit(gate_s)
    used = int(n.sum())
    k0, k1 = by_name["readout_0"], by_name["readout_1"]
    e0, p1x = float(p1[k0]), float(p1[k1])
    contrast = p1x - e0
    m = 0.5 * (e0 + p1x)
    summary: dict[str, float] = {"readout_p1_given_0": e0, "readout_p1_after_x": p1x,
                                 "contrast": contrast, "coherence_limit": limit,
                                 "readout_shots": float(min(n[k0], n[k1]))}
    if contrast < s.min_contrast:
        return failed(Reason.LOW_READOUT_CONTRAST, limit, "readout",
                      f"readout contrast {contrast:.3f} < min_contrast {s.min_contrast}", used, summary)

    # Residual angles: grid posteriors, flat prior over the shallowest check's range.
    rng = np.random.default_rng(20261206)
    total = np.full(s.samples, limit)
    contrib: dict[str, FloatArray] = {}
    deviance, dof = 0.0, 0
    edge_mass: dict[str, float] = {}
    mids: list[tuple[float, float]] = []  # (reading of e0 + C/2, its variance)
    for fam in FAMILIES:
        ks = [k for k, ch in enumerate(check_set) if ch.family == fam]
        gain = np.array([check_set[k].gain for k in ks])
        sign = np.array([check_set[k].sign for k in ks])
        amp = np.array([0.5 * contrast * _decay(check_set[k], stated) for k in ks])
        half = math.pi / (2.0 * float(gain.min()))
        grid, prior = _grid(half)
        if fam == "detuning" and s.detuning_noise:
            phase = np.array([check_set[k].phase for k in ks])
            draws, noise, post, best_angle, best_ll = _detuning_with_noise(grid, prior, half, c[ks, 1], n[ks], m,
                                                                          amp, gain, sign, phase, rng, s.samples)
            dof += len(ks) - 3  # θ, the noise and the contrast factor
            summary["detuning_noise_angle"] = float(np.median(noise))
            e = (draws**2 + noise**2) / 6.0
        else:
            ll = _loglik(grid, c[ks, 1], n[ks], m, amp, gain, sign)
            best = int(np.argmax(ll))
            best_angle, best_ll = float(grid[best]), float(ll[best])
            dof += len(ks) - 1
            post = prior * np.exp(ll - ll[best])
            post /= post.sum()
            cdf = np.cumsum(post)
            draws = grid[np.minimum(np.searchsorted(cdf, rng.random(s.samples)), grid.size - 1)]
            e = draws**2 / 6.0
        deviance += 2.0 * (_saturated(c[ks, 1], n[ks]) - best_ll)
        if fam == "detuning" and s.gate_detuning_error:
            e = e * detuning_weight(envelope)
        contrib[fam] = e
        total = total + e
        edge_mass[fam] = float(post[np.abs(grid) > 0.8 * half].sum())
        summary[f"{fam}_angle"] = best_angle
        summary[f"{fam}_error"] = float(np.median(e))
        if fam in ("amplitude", "drag"):
            # The shallowest check less its fitted sine term reads the midpoint e0 + C/2
            # (three gates: the decay there is negligible; ``_joint_readout``).
            j = int(np.argmin(gain))
            k = ks[j]
            mids.append((float(p1[k] - sign[j] * amp[j] * math.sin(gain[j] * best_angle)),
                         max(float(p1[k] * (1 - p1[k])), 1.0 / n[k]) / n[k]))
    # Identity trains: leakage (even + odd − 1, decay-free) and decay (odd's loss vs one X).
    ke = next(k for k, ch in enumerate(check_set) if ch.family == "train" and ch.name.startswith("train_even"))
    ko = next(k for k, ch in enumerate(check_set) if ch.family == "train" and ch.name.startswith("train_odd"))
    pe, po = float(p1[ke]), float(p1[ko])
    blocks = int(check_set[ke].name.rsplit("_", 1)[1])
    d_pred = train_decay(envelope, dt_s, stated, blocks)
    var = lambda p, k: max(p * (1 - p), 1.0 / n[k]) / n[k]  # noqa: E731  (floor: no zero variance)
    # The trains are read through the readout offset e0 and contrast C. By default those are
    # the two references (``reference_shots`` each) and Var(C) their sum; with
    # ``joint_contrast`` they are the joint least-squares estimate from every reading the
    # model fixes (``_joint_readout``), Var(C) and Var(2·e0 + C) from its covariance.
    var_c, var_sum = var(p1x, k1) + var(e0, k0), var(p1x, k1) + var(e0, k0)
    kqa = next((k for k, ch in enumerate(check_set) if ch.name.startswith("equator_a")), None)
    kqb = next((k for k, ch in enumerate(check_set) if ch.name.startswith("equator_b")), None)
    if s.joint_contrast:
        if kqa is not None and kqb is not None:
            # SY·…·SY and SY·…·SY† read (1 ± x_n)/2: their mean is the midpoint whatever
            # the decay (a T1-built z maps to the equator and reads 1/2 in both).
            mids.append((0.5 * float(p1[kqa] + p1[kqb]), 0.25 * (var(float(p1[kqa]), kqa) + var(float(p1[kqb]), kqb))))
        summary["reference_contrast_sd"] = math.sqrt(var_c)
        e0, contrast, cov = _joint_readout((e0, var(e0, k0)), (p1x, var(p1x, k1)), mids)
        p1x = e0 + contrast
        var_c, var_sum = float(cov[1, 1]), float(4 * cov[0, 0] + 4 * cov[0, 1] + cov[1, 1])
        summary.update(joint_readout_p1_given_0=e0, joint_contrast=contrast, joint_contrast_sd=math.sqrt(var_c))
    # Both trains see the decay (the even one as excitation left, the odd one as excitation
    # lost); their mean is the decay plus half the leakage, either of which fails a gate.
    d_obs = 0.5 * ((p1x - po) + (pe - e0)) / contrast
    z_decay = (d_obs - d_pred) * contrast / (0.5 * math.sqrt(var(po, ko) + var(pe, ke) + var_c))
    leak = (pe + po - e0 - p1x) / contrast
    z_leak = leak * contrast / math.sqrt(var(pe, ke) + var(po, ko) + var_sum)
    leak_per_gate = leak / (4 * blocks + 1)
    summary.update(train_blocks=float(blocks), train_p1_even=pe, train_p1_odd=po, decay_observed=d_obs,
                   decay_predicted=d_pred, decay_z=z_decay, leakage_per_gate=leak_per_gate, leakage_z=z_leak)
    upper_extra: FloatArray | None = None  # what ``credit_floor`` adds to the upper end's draws
    if s.measure_decay:
        # d_obs = 1/2 + (P_e − P_o)/(2C): the readout references enter only through C, with
        # weight (1 − 2·d_obs)², so the trains' shots are what sets the precision.
        sd_decay = 0.5 * math.sqrt(var(po, ko) + var(pe, ke)
                                   + (1.0 - 2.0 * d_obs) ** 2 * var_c) / contrast
        if kqa is not None and kqb is not None:
            pa, pb = float(p1[kqa]), float(p1[kqb])
            # Loss of the equator's coherence: (1 − x_n)/2 from P(SY) = (1 + x_n)/2 and
            # P(SY†) = (1 − x_n)/2, both read through the readout references.
            d_eq = 0.5 * ((p1x - pa) + (pb - e0)) / contrast
            sd_eq = 0.5 * math.sqrt(var(pa, kqa) + var(pb, kqb)
                                    + (1.0 - 2.0 * d_eq) ** 2 * var_c) / contrast
            r1, r2 = _decay_rate_pairs(envelope, dt_s, stated, blocks, (d_obs, sd_decay), (d_eq, sd_eq), rng,
                                       s.samples)
            summary.update(equator_decay_observed=d_eq, t2_rate_ratio=float(np.median(r2)))
            rate = r1
        else:
            rate = _decay_rate_draws(envelope, dt_s, stated, blocks, d_obs, sd_decay, rng, s.samples)
            r1 = r2 = rate
        # The gate's incoherent part at r × the stated rates: the limit of a gate r times as
        # long (an AWG tail lengthens it) or of a qubit r times as lossy (a TLS).
        incoherent = 0.5 - np.exp(-gate_s * r1 / stated.t1_s) / 6.0 - np.exp(-gate_s * r2 / stated.t2_s) / 3.0
        contrib["decay"] = incoherent - limit
        # With ``credit_floor`` the interval's upper end is taken at the rates floored at the
        # stated ones: a decay the trains read as slower than stated may be a better qubit
        # (the estimate and the lower end keep it) or a bias of a short train (a TLS, |2>
        # population), so the bound a gate passes on takes no credit below the lab's T1/T2.
        floored = (0.5 - np.exp(-gate_s * np.maximum(r1, 1.0) / stated.t1_s) / 6.0
                   - np.exp(-gate_s * np.maximum(r2, 1.0) / stated.t2_s) / 3.0 - limit)
        if s.decay_model_error:
            # The trains' rates become one gate's error by the Markov model (the gate decays at
            # r × the stated rates). A device that decays r > 1 times faster than stated is one
            # whose decay physics that model does not describe (a TLS, which the trains' echo
            # partly decouples; an AWG tail that idles): its excess over the limit is then
            # known to a factor r either way, a log-normal of width ln r. A device as stated or
            # slower (r <= 1) is inside the model: nothing is added, and a deficit stays as
            # measured (scaled, it could push 1 − F below zero).
            width = max(0.0, math.log(float(np.median(r1))), math.log(float(np.median(r2))))
            excess = contrib["decay"]
            factor = np.exp(width * rng.standard_normal(s.samples))
            contrib["decay"] = np.where(excess > 0, excess * factor, excess)
            floored = np.where(floored > 0, floored * factor, floored)
            summary["decay_model_error"] = width
        total = total + contrib["decay"]
        if s.credit_floor:
            upper_extra = floored - contrib["decay"]
        r_lo, r_med, r_hi = (float(x) for x in np.quantile(rate, [0.05, 0.5, 0.95]))
        summary.update(decay_rate_ratio=r_med, decay_rate_ratio_low=r_lo, decay_rate_ratio_high=r_hi)
    if s.leakage_model and leakage_per_gate is not None:
        # A model, not a measurement: its error (10–20 % against the simulated device's
        # leakage) enters the interval as a log-normal factor of 25 %.
        contrib["leakage"] = leakage_per_gate * np.exp(0.25 * rng.standard_normal(s.samples))
        total = total + contrib["leakage"]
        summary["leakage_model_per_gate"] = float(leakage_per_gate)
    lo, est, hi = (float(x) for x in np.quantile(total, [0.05, 0.5, 0.95]))
    top = total if upper_extra is None else total + upper_extra
    if upper_extra is not None:
        hi = max(hi, float(np.quantile(top, 0.95)))
        summary["high_measured_rates"] = float(np.quantile(total, 0.95))
    # The bound a gate passes on: the interval's upper end, or with ``pass_quantile`` a
    # higher quantile of the same posterior (the reported interval stays the 90 % one).
    bound = hi
    if s.pass_quantile != 0.95:
        bound = max(hi, float(np.quantile(top, s.pass_quantile)))
        summary["pass_bound"] = bound
    summary.update(estimate=est, low=lo, high=hi)
    interval = (lo, hi)
    if z_decay > s.z_alarm and d_obs > 1.25 * d_pred:
        return failed(Reason.DECAY_FASTER_THAN_COHERENCE, limit, "decay",
                      f"identity train of {4 * blocks + 1} gates lost {d_obs:.3f} of its population, the stated "
                      f"T1/T2 allow {d_pred:.3f} (z = {z_decay:.1f})", used, summary, est, interval)
    kt = by_name.get("t1_delay")
    if kt is not None:
        # X·τ: the excited population after X decays as exp(−τ/T1) on top of the readout
        # offset, so P1(τ) − p(1|0) = (P1(X) − p(1|0))·exp(−τ/T1) on a device as stated.
        tau = check_set[kt].duration_s
        keep = math.exp(-tau / stated.t1_s)
        pt = float(p1[kt])
        loss_pred, loss_obs = (p1x - e0) * (1.0 - keep), p1x - pt
        sd = math.sqrt(var(pt, kt) + keep**2 * var(p1x, k1) + (1.0 - keep) ** 2 * var(e0, k0))
        z_t1 = (loss_obs - loss_pred) / sd
        summary.update(t1_delay_s=tau, t1_p1=pt, t1_loss_observed=loss_obs, t1_loss_predicted=loss_pred, t1_z=z_t1)
        if z_t1 > s.z_alarm and loss_obs > 1.25 * loss_pred:
            return failed(Reason.DECAY_FASTER_THAN_COHERENCE, limit, "decay",
                          f"after X and {tau * 1e6:.3g} µs the population lost {loss_obs:.3f}, the stated T1 "
                          f"allows {loss_pred:.3f} (z = {z_t1:.1f})", used, summary, est, interval)
    if z_leak > s.z_alarm and leak_per_gate > 0.25 * limit:
        return failed(Reason.LEAKAGE, limit, "leakage",
                      f"leakage {leak_per_gate:.2g} per gate (z = {z_leak:.1f})", used, summary, est, interval)
    p_fit = float(chi2.sf(deviance, dof)) if dof > 0 else 1.0
    summary["fit_p_value"] = p_fit
    if p_fit < 1e-3:
        return failed(Reason.UNSTABLE_OR_TLS_LIKE, limit, "model",
                      f"the checks do not fit one residual per family (p = {p_fit:.1e})",
                      used, summary, est, interval)
    worst = max(contrib, key=lambda f: float(np.median(contrib[f])))
    if bound > s.threshold * limit:
        if worst == "leakage" and est > s.threshold * limit:
            return failed(Reason.LEAKAGE, limit, "leakage",
                          f"the pulse leaks {summary['leakage_model_per_gate']:.2g} per gate at the stated "
                          f"anharmonicity: 1−F at {est / limit:.2f}× the coherence limit", used, summary, est,
                          interval)
        if worst == "decay" and est > s.threshold * limit:
            return failed(Reason.DECAY_FASTER_THAN_COHERENCE, limit, "decay",
                          f"the identity trains decay {summary['decay_rate_ratio']:.2f}× as fast as the stated "
                          f"T1/T2 allow: 1−F at {est / limit:.2f}× the coherence limit", used, summary, est,
                          interval)
        if est > s.threshold * limit or edge_mass.get(worst, 0.0) > 0.5:
            reason = (Reason.FREQUENCY_OUT_OF_RANGE if worst == "detuning" and edge_mass[worst] > 0.5
                      else Reason.RESIDUAL_ERROR)
            return failed(reason, limit, worst,
                          f"{worst} residual puts 1−F at {est / limit:.2f}× the coherence limit", used,
                          summary, est, interval)
        return failed(Reason.BUDGET_TOO_SMALL, limit, "shots",
                      f"upper bound {bound / limit:.2f}× the limit > threshold {s.threshold}: too few "
                      f"shots to bound the error", used, summary, est, interval)
    limiting = "coherence" if float(np.median(contrib[worst])) < 0.1 * limit else worst
    return Verdict("calibrated", None, est, interval, limit, limiting, used, summary,
                   f"upper bound {bound / limit:.2f}× the coherence limit")
