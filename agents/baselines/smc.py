"""Adaptive Bayesian calibration: a particle filter over the gate's errors, probes chosen
by expected information gain.

A sequential Monte Carlo (SMC) estimator in the spirit of Granade et al. (NJP 14, 103013,
2012): N particles per device over five unknowns,

    u_a   relative amplitude error of the start (a_opt = a_start·(1 + u_a)),
    u_b   β error in β scales (β_opt = β_start + u_b·scale, scale = max(|β_start|, floor)),
    u_d   detuning error in Hz (Δ_opt = Δ_start + u_d),
    p10, p01   readout assignment errors (a lab measures them; here they are learnt),

with uniform priors over ``prior_range`` (what a lab's last calibration may be off by).
The likelihood of each probe's counts comes from a **device-agnostic model** of the
probes, not from the simulated device: every gate is an ideal qubit rotation by
π·a/a_opt (X) or half of it (SX) about the axis (cos φ, sin φ, η), tilted out of the
plane by η = ``drag_tilt``·(β − β_opt)/scale (the first-order effect of a DRAG error,
which makes the X̄X pairs rotate about Y), in a frame that precesses at the residual
detuning Δ − Δ_opt during every gate and delay; the readout applies p10 and p01. It
knows the gate duration and sample time (to time the sequences) and nothing else of the
device: no anharmonicity, Rabi rate, T1 or T2 (decoherence and leakage are what the
model lacks; its posterior then is narrower than it should be, and that is its bias).

Each update runs one probe — a sign-flipped pair of sequences (so the pair's difference
is readout-offset free) at the current posterior mean, ``shots_per_probe`` shots split
over the two — on all devices in lockstep (one device call per update). The probe is
chosen per device among the candidates (amplitude SX(±)·X^n, DRAG
SY(±)·(X̄X)^n, Ramsey SX·D(τ)·SX(ψ) at two phases) by the expected information gain of
its counts in its Gaussian approximation, Σ ½·log(1 + K·Var_w[p]/E_w[p(1−p)]) over the
pair's sequences (p the predicted probability of "1" per particle, K the shots). The
X^n/X^(n+1) pair (``amplitude_cos``) is in the model but not a default candidate: it is
even in the amplitude error, so early on it splits the posterior into mirror modes. A
candidate whose period the posterior does not resolve (the posterior σ of its
parameter above a quarter period) is not offered, which keeps deep probes from
splitting the particles over aliased branches. The choice is per device: devices that
chose the same probe share one device call.

After each update the weights are renormalised; when the effective sample size falls
below ``resample_threshold``·N the particles are resampled with Liu–West kernel
smoothing (a = ``liu_west_a``). The final parameters are the posterior mean.
Numpy over particles × devices (wall time per device: see docs/baselines.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pulsecal.envs.calibration import CalibrationTask

from .common import CalibrationResult, FloatArray, check_budget, device_starts, require, run_steps
from .sequences import Step, amplitude_steps, drag_steps, ramsey_steps

from .protocol import register_baseline  # isort: skip

# -- the probe model: unit quaternions (w, x, y, z) <-> SU(2) w·I − i(xσx + yσy + zσz) ----------


def _qmul(a: FloatArray, b: FloatArray) -> FloatArray:
    """Hamilton product a⊗b over the last axis (4,): the rotation b then a."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def _rot(axis: FloatArray, angle: FloatArray) -> FloatArray:
    """Rotation by ``angle`` (...) about unit ``axis`` (..., 3)."""
    h = 0.5 * angle
    return np.concatenate([np.cos(h)[..., None], np.sin(h)[..., None] * axis], axis=-1)


def _rz(angle: FloatArray) -> FloatArray:
    z = np.zeros_like(angle)
    return np.stack([np.cos(0.5 * angle), z, z, np.sin(0.5 * angle)], axis=-1)


def _qpow(q: FloatArray, n: int) -> FloatArray:
    """q^n of unit quaternions: the same axis, n times the angle."""
    w = np.clip(q[..., 0], -1.0, 1.0)
    alpha = np.arccos(w)
    s = np.sin(alpha)
    axis = np.where(np.abs(s)[..., None] > 1e-12, q[..., 1:] / np.where(np.abs(s) > 1e-12, s, 1.0)[..., None], 0.0)
    return np.concatenate([np.cos(n * alpha)[..., None], np.sin(n * alpha)[..., None] * axis], axis=-1)


@dataclass(frozen=True)
class _Probe:
    """One candidate: a pair of sequences and which parameter fixes its period."""

    kind: str  # "amplitude", "amplitude_cos", "drag", "ramsey"
    value: float  # depth, pairs or delay (s)
    phase: float = 0.0  # Ramsey analysis phase

    def steps(self) -> tuple[list[Step], list[Step]]:
        n = int(self.value)
        if self.kind == "amplitude":
            return amplitude_steps(n, 1), amplitude_steps(n, -1)
        if self.kind == "amplitude_cos":
            return [("X", 0.0)] * n, [("X", 0.0)] * (n + 1)
        if self.kind == "drag":
            return drag_steps(n, 1), drag_steps(n, -1)
        return ramsey_steps(self.value, self.phase), ramsey_steps(self.value, self.phase + math.pi)


def _model_p1(steps: Sequence[Step], eps: FloatArray, eta: FloatArray, resid_hz: FloatArray,
              gate_s: float, dt_s: float) -> FloatArray:
    """P("1") of ``steps`` from |0> under the ideal rotation model (module docstring).

    ``eps`` (...): relative over-rotation, ``eta`` (...): axis tilt, ``resid_hz`` (...):
    residual detuning. Runs of identical X gates are taken as one power (a closed form).
    """
    q = np.zeros((*eps.shape, 4))
    q[..., 0] = 1.0
    half_gate = _rz(2 * math.pi * resid_hz * 0.5 * gate_s)
    cache: dict[tuple[str, float], FloatArray] = {}

    def gate(kind: str, phi: float) -> FloatArray:
        key = (kind, phi)
        if key not in cache:
            ax = np.stack([np.full_like(eta, math.cos(phi)), np.full_like(eta, math.sin(phi)), eta], axis=-1)
            ax = ax / np.linalg.norm(ax, axis=-1, keepdims=True)
            angle = (math.pi if kind == "X" else 0.5 * math.pi) * (1.0 + eps)
            cache[key] = _qmul(half_gate, _qmul(_rot(ax, angle), half_gate))
        return cache[key]

    i = 0
    while i < len(steps):
        kind, value = steps[i]
        if kind == "D":
            q = _qmul(_rz(2 * math.pi * resid_hz * max(1, round(value / dt_s)) * dt_s), q)
            i += 1
            continue
        j = i
        while j < len(steps) and steps[j] == steps[i]:
            j += 1
        # Repeated pairs (X̄X)^n: one power of the pair.
        if (kind == "X" and j == i + 1 and i + 1 < len(steps) and steps[i + 1][0] == "X"):
            pair = (steps[i], steps[i + 1])
            k = i
            while k + 1 < len(steps) and (steps[k], steps[k + 1]) == pair:
                k += 2
            reps = (k - i) // 2
            if reps > 1:
                u = _qmul(gate(*steps[i + 1]), gate(*steps[i]))
                q = _qmul(_qpow(u, reps), q)
                i = k
                continue
        g = gate(kind, float(value))
        q = _qmul(_qpow(g, j - i) if j - i > 1 else g, q)
        i = j
    return np.asarray(q[..., 1] ** 2 + q[..., 2] ** 2)


@register_baseline("smc")
@dataclass(frozen=True)
class SMCCalibration:
    """Sequential Monte Carlo over amplitude, β and detuning errors (module docstring).

    Attributes:
        particles: particles per device, in [100, 100000].
        shots_per_probe: shots of one probe (both sequences of its pair), even, in [2, 1000].
        prior_range: half-widths of the uniform prior of (relative amplitude, β in
            scales, detuning Hz), each > 0.
        readout_range: upper ends of the uniform priors of p10 and p01, in (0, 0.5).
        amplitude_depths, drag_depths: candidate X^n (even) and X̄X pair counts.
        ramsey_delays_s: candidate Ramsey delays in s.
        drag_tilt: axis tilt per β scale of β error (model constant), nonzero.
        beta_floor_s: smallest β scale in s, > 0.
        liu_west_a: Liu–West shrinkage a, in (0.5, 1).
        resample_threshold: resample when ESS < this × particles, in (0, 1].
        name: the method's name in results tables.
    """

    particles: int = 500
    shots_per_probe: int = 20
    prior_range: tuple[float, float, float] = (0.2, 1.2, 3.5e6)
    readout_range: tuple[float, float] = (0.12, 0.25)
    amplitude_depths: tuple[int, ...] = (2, 4, 8, 16, 32, 64)
    drag_depths: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    ramsey_delays_s: tuple[float, ...] = (0.05e-6, 0.2e-6, 0.8e-6, 1.6e-6)
    drag_tilt: float = 0.067
    beta_floor_s: float = 0.25e-9
    liu_west_a: float = 0.98
    resample_threshold: float = 0.5
    name: str = "smc"

    def __post_init__(self) -> None:
        require(isinstance(self.particles, int) and 100 <= self.particles <= 100000, "particles", self.particles,
                "an int in [100, 100000]")
        require(isinstance(self.shots_per_probe, int) and 2 <= self.shots_per_probe <= 1000
                and self.shots_per_probe % 2 == 0, "shots_per_probe", self.shots_per_probe,
                "an even int in [2, 1000]")
        pr = tuple(float(x) for x in self.prior_range)
        require(len(pr) == 3 and all(math.isfinite(x) and x > 0 for x in pr), "prior_range", self.prior_range,
                "3 half-widths > 0 (relative amplitude, β scales, Hz)")
        object.__setattr__(self, "prior_range", pr)
        rr = tuple(float(x) for x in self.readout_range)
        require(len(rr) == 2 and all(0 < x < 0.5 for x in rr), "readout_range", self.readout_range,
                "2 values in (0, 0.5)")
        object.__setattr__(self, "readout_range", rr)
        for name in ("amplitude_depths", "drag_depths"):
            v = tuple(getattr(self, name))
            require(len(v) >= 1 and all(isinstance(x, int) and 1 <= x <= 1024 for x in v), name, v,
                    "one or more ints in [1, 1024]")
            object.__setattr__(self, name, v)
        require(all(x % 2 == 0 for x in self.amplitude_depths), "amplitude_depths", self.amplitude_depths,
                "even depths")
        d = tuple(float(x) for x in self.ramsey_delays_s)
        require(len(d) >= 1 and all(0 < x <= 1e-4 for x in d), "ramsey_delays_s", self.ramsey_delays_s,
                "one or more delays in (0, 1e-4] s")
        object.__setattr__(self, "ramsey_delays_s", d)
        require(math.isfinite(self.drag_tilt) and self.drag_tilt != 0, "drag_tilt", self.drag_tilt,
                "a finite nonzero tilt per β scale")
        require(self.beta_floor_s > 0, "beta_floor_s", self.beta_floor_s, "> 0 s")
        require(0.5 < self.liu_west_a < 1, "liu_west_a", self.liu_west_a, "(0.5, 1)")
        require(0 < self.resample_threshold <= 1, "resample_threshold", self.resample_threshold, "(0, 1]")

    def min_budget(self) -> int:
        """One probe per family at least."""
        return 3 * self.shots_per_probe

    def _candidates(self) -> list[_Probe]:
        out = [_Probe("amplitude", n) for n in self.amplitude_depths]
        out += [_Probe("drag", n) for n in self.drag_depths]
        out += [_Probe("ramsey", t, ph) for t in self.ramsey_delays_s for ph in (0.0, 0.5 * math.pi)]
        return out

    def run(
        self, task: CalibrationTask, start: ArrayLike, budget: int, rng: np.random.Generator | None = None,
        index: Sequence[int] | None = None,
    ) -> CalibrationResult:
        """Calibrate devices ``index`` of ``task`` from ``start`` within ``budget`` shots each;
        ``rng`` draws the particles and the resampling (default: a fixed seed)."""
        budget = check_budget("budget", budget, self.min_budget())
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng is {type(rng).__name__}: allowed a numpy.random.Generator or None")
        gen = rng if rng is not None else np.random.default_rng(0)
        idx, p0 = device_starts(task, start, index)
        nb, n = len(idx), self.particles
        dt = task.dt_s
        gate_s = task.gate.n_samples(dt) * dt
        scale = np.maximum(np.abs(p0[:, 1]), self.beta_floor_s)
        lo = np.array([-self.prior_range[0], -self.prior_range[1], -self.prior_range[2], 0.0, 0.0])
        hi = np.array([*self.prior_range, *self.readout_range])
        x = lo + (hi - lo) * gen.random((nb, n, 5))  # (B, N, 5) particles
        logw = np.zeros((nb, n))
        cands = self._candidates()
        used0 = task.shots_used[idx].copy()
        trace: list[list[tuple[int, FloatArray]]] = [[] for _ in idx]
        half = self.shots_per_probe // 2
        n_updates = budget // self.shots_per_probe

        def params_of(mean: FloatArray) -> FloatArray:
            p = p0.copy()
            p[:, 0] = np.clip(p0[:, 0] * (1.0 + mean[:, 0]), -1.0, 1.0)
            p[:, 1] = p0[:, 1] + mean[:, 1] * scale
            p[:, 2] = p0[:, 2] + mean[:, 2]
            return p

        def predict(probe: _Probe, p: FloatArray, xs: FloatArray,
                    sel: NDArray[np.intp] | None = None) -> tuple[FloatArray, FloatArray]:
            """Predicted P("1") of the probe's two sequences, (b, N) each, for devices
            ``sel`` (default all) at their parameters p (b, 4) and particles xs (b, N, 5)."""
            s0 = p0 if sel is None else p0[sel]
            sc = (scale if sel is None else scale[sel])[:, None]
            a_opt = s0[:, 0:1] * (1.0 + xs[..., 0])
            eps = p[:, 0:1] / a_opt - 1.0
            eta = self.drag_tilt * (p[:, 1:2] - (s0[:, 1:2] + xs[..., 1] * sc)) / sc
            resid = p[:, 2:3] - (s0[:, 2:3] + xs[..., 2])  # frame minus qubit
            ro = 1.0 - xs[..., 3] - xs[..., 4]
            s1, s2 = probe.steps()
            return (xs[..., 3] + ro * _model_p1(s1, eps, eta, resid, gate_s, dt),
                    xs[..., 3] + ro * _model_p1(s2, eps, eta, resid, gate_s, dt))

        for _ in range(n_updates):
            w = np.exp(logw - logw.max(axis=1, keepdims=True))
            w /= w.sum(axis=1, keepdims=True)
            mean = np.einsum("bn,bnk->bk", w, x)
            sd = np.sqrt(np.maximum(np.einsum("bn,bnk->bk", w, (x - mean[:, None, :]) ** 2), 0.0))
            p = params_of(mean)
            # Expected information gain of each candidate, per device (Gaussian approximation).
            gains = np.full((nb, len(cands)), -np.inf)
            for c, pr in enumerate(cands):
                resolved = self._resolved(pr, sd, p0, scale, gate_s)
                if not resolved.any():
                    continue
                g = np.zeros(nb)
                for q in predict(pr, p, x):
                    m = np.sum(w * q, axis=1)
                    var = np.sum(w * (q - m[:, None]) ** 2, axis=1)
                    noise = np.maximum(np.sum(w * q * (1 - q), axis=1), 1e-6)
                    g += 0.5 * np.log1p(half * var / noise)
                gains[:, c] = np.where(resolved, g, -np.inf)
            choice = np.argmax(gains, axis=1)
            rows = np.repeat(p[:, None, :], 2, axis=1)
            # Devices run their own probe: run_steps takes one step list per sequence for all
            # devices, so group devices by their chosen probe (one device call per group).
            counts = np.zeros((nb, 2))
            for c in np.unique(choice):
                sel = np.flatnonzero(choice == c)
                s1, s2 = cands[c].steps()
                counts[sel] = run_steps(task, [idx[b] for b in sel], rows[sel], [s1, s2], half) * half
            for c in np.unique(choice):
                sel = np.flatnonzero(choice == c)
                q1, q2 = predict(cands[c], p[sel], x[sel], sel)
                for q, k in ((q1, counts[sel, 0]), (q2, counts[sel, 1])):
                    q = np.clip(q, 1e-9, 1 - 1e-9)
                    logw[sel] += k[:, None] * np.log(q) + (half - k[:, None]) * np.log1p(-q)
            x, logw = self._resample(x, logw, gen, lo, hi)
            for b, i in enumerate(idx):
                trace[b].append((int(task.shots_used[i] - used0[b]), p[b].copy()))
        w = np.exp(logw - logw.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        final = params_of(np.einsum("bn,bnk->bk", w, x))
        used = (task.shots_used[idx] - used0).astype(np.int64)
        for b in range(nb):
            trace[b].append((int(used[b]), final[b].copy()))
        return CalibrationResult(final, used, trace)

    def _resolved(self, probe: _Probe, sd: FloatArray, p0: FloatArray, scale: FloatArray,
                  gate_s: float) -> FloatArray:
        """(B,) devices whose posterior σ of the probe's parameter is within a quarter of its
        period (so the probe's outcome is not aliased over the particles)."""
        if probe.kind in ("amplitude", "amplitude_cos"):
            return np.asarray(sd[:, 0] <= 0.25 / probe.value)
        if probe.kind == "drag":
            # pair angle ≈ 2·π·tilt per β scale: a period is 2π / that per pair
            per = abs(2 * math.pi * self.drag_tilt) * probe.value
            return np.asarray(sd[:, 1] * per <= 0.5 * math.pi)
        tau = probe.value + gate_s
        return np.asarray(sd[:, 2] <= 0.25 / tau)

    def _resample(self, x: FloatArray, logw: FloatArray, gen: np.random.Generator, lo: FloatArray,
                  hi: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Liu–West resampling of the devices whose ESS fell below the threshold."""
        n = x.shape[1]
        w = np.exp(logw - logw.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        ess = 1.0 / np.sum(w**2, axis=1)
        a = self.liu_west_a
        h = math.sqrt(1.0 - a * a)
        for b in np.flatnonzero(ess < self.resample_threshold * n):
            mean = w[b] @ x[b]
            cov = np.cov(x[b].T, aweights=w[b]) + 1e-30 * np.eye(5)
            pick = gen.choice(n, size=n, p=w[b])
            mu = a * x[b, pick] + (1 - a) * mean
            try:
                chol = np.linalg.cholesky(cov + 1e-12 * np.diag(np.diag(cov) + 1e-30))
            except np.linalg.LinAlgError:
                chol = np.diag(np.sqrt(np.maximum(np.diag(cov), 0.0)))
            x[b] = np.clip(mu + h * gen.standard_normal((n, 5)) @ chol.T, lo, hi)
            logw[b] = 0.0
        return x, logw
