"""The textbook ECR calibration (Sheldon et al., PRA 93, 060302 (2016)): CR Hamiltonian
tomography, phase and cancellation-tone corrections, the ZX(π/2) amplitude, fine amplitude
by repeated gates. Every measurement runs through ``Device.run`` and every shot is counted.

It does not fit the ``Baseline`` protocol (that one calibrates the four DRAG parameters
of a single-qubit ``CalibrationTask``), so it is a sibling: ``TwoQubitBaseline``, a
``name``, ``min_budget()`` and ``run(device, start, budget) -> ECRResult`` on one
two-qubit device. It is not in the single-qubit baseline registry (the evaluation suite
would hand it a ``CalibrationTask``). Analysis (``fit_cr_hamiltonian``) is side-effect
free and separate from the measurement and the update, as in qiskit-experiments.

Rates (rad/s) follow Sheldon's convention: with the control in |c⟩ (z_c = ±1) the target
feels H_c = ½·Σ_P (IP + z_c·ZP)·P, P ∈ {X, Y, Z}, so IP = (ω_P|0 + ω_P|1)/2 and
ZP = (ω_P|0 − ω_P|1)/2. The coefficient of Z⊗X in the Hamiltonian (ν_ZX of
docs/two_qubit_metrics.md) is ZX/2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import least_squares

from pulsecal.envs.cr_calibration_core import (
    HALF_ANGLE,
    ECRKnobs,
    ECRShape,
    bloch_from_counts,
    ecr_sequence,
    tomography_sequences,
)
from pulsecal.envs.protocol import Device

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class CRHamiltonian:
    """Fitted CR rates in rad/s (module docstring) and the fitted readout contrast.

    ``zx_se``, ``rate_se`` and ``phase_se`` are the standard errors of ``zx``, ``rate``
    and ``phase`` (``fit_cr_hamiltonian``); NaN when the fit's covariance is singular."""

    ix: float
    iy: float
    iz: float
    zx: float
    zy: float
    zz: float
    contrast: float
    zx_se: float = math.nan
    rate_se: float = math.nan
    phase_se: float = math.nan

    @property
    def rate(self) -> float:
        """|ZX + i·ZY| (rad/s): the conditional rate the amplitude update sets."""
        return math.hypot(self.zx, self.zy)

    @property
    def phase(self) -> float:
        """atan2(ZY, ZX) (rad): the CR phase error the phase update takes away."""
        return math.atan2(self.zy, self.zx)

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("ix", "iy", "iz", "zx", "zy", "zz")}


def bloch_trajectory(omega: FloatArray, tau_s: FloatArray) -> FloatArray:
    """(3,) rates (rad/s) of H = ½ ω·σ, (T,) times -> (T, 3) Bloch vectors from |0⟩ (+z)."""
    w = np.linalg.norm(omega)
    z = np.array([0.0, 0.0, 1.0])
    if w < 1e-9:
        return np.tile(z, (len(tau_s), 1))
    n = omega / w
    th = w * np.asarray(tau_s)[:, None]
    # Rodrigues: r = z cos θ + (n × z) sin θ + n (n·z)(1 − cos θ)
    return z * np.cos(th) + np.cross(n, z) * np.sin(th) + n * n[2] * (1 - np.cos(th))


def fit_cr_hamiltonian(tau_s: FloatArray, bloch: FloatArray, guess_zx: float = 0.0) -> CRHamiltonian:
    """Fit the six CR rates to target Bloch vectors vs effective CR duration.

    Args:
        tau_s: (T,) effective durations (envelope area / peak, s).
        bloch: (T, 2, 3) measured ⟨x⟩, ⟨y⟩, ⟨z⟩ for control |0⟩, |1⟩ (``bloch_from_counts``).
        guess_zx: a starting ZX (rad/s), e.g. from the spec sheet; its sign seeds the fit.
    """
    tau = np.asarray(tau_s, dtype=np.float64)
    b = np.asarray(bloch, dtype=np.float64)

    def model(p: FloatArray) -> FloatArray:
        w0 = p[0:3] + p[3:6]
        w1 = p[0:3] - p[3:6]
        return p[6] * np.stack([bloch_trajectory(w0, tau), bloch_trajectory(w1, tau)], axis=1)

    scale = 1.0 / max(float(tau.max()), 1e-12)
    p0 = np.array([0.0, 0.0, 0.0, guess_zx, 0.0, 0.0, 0.95])
    best = None
    for start_ix in (0.0, abs(guess_zx), -abs(guess_zx)):
        p0[0] = start_ix
        res = least_squares(lambda p: (model(p) - b).ravel(), p0.copy(),
                            x_scale=np.r_[[scale] * 6, 1.0])
        if best is None or res.cost < best.cost:
            best = res
    assert best is not None
    p = best.x
    zx_se, rate_se, phase_se = _rate_errors(best.jac, best.fun, p[3], p[4])
    return CRHamiltonian(p[0], p[1], p[2], p[3], p[4], p[5], p[6], zx_se, rate_se, phase_se)


def _rate_errors(jac: FloatArray, resid: FloatArray, zx: float, zy: float) -> tuple[float, float, float]:
    """Standard errors of ZX, |ZX + i·ZY| and atan2(ZY, ZX) from the fit's covariance.

    The Bloch components are means of binomial outcomes whose variance differs per point
    and the model is not exact at the gate's drive (non-perturbative terms, the edges), so
    the noise level is taken from the fit itself: cov = s²·(JᵀJ)⁻¹ with s² the residuals'
    sum of squares over the degrees of freedom (the reduced χ² at unit weights). Both
    derived quantities are first order in (ZX, ZY) (the delta method)."""
    dof = resid.size - jac.shape[1]
    if dof <= 0:
        return math.nan, math.nan, math.nan
    s2 = float(resid @ resid) / dof
    # Rates (rad/s) and the contrast differ by ~1e7 in scale: invert with unit columns.
    norm = np.linalg.norm(jac, axis=0)
    if not np.all(np.isfinite(jac)) or np.any(norm == 0):
        return math.nan, math.nan, math.nan
    js = jac / norm
    jtj = js.T @ js
    if np.linalg.cond(jtj) > 1e12:
        return math.nan, math.nan, math.nan
    c = s2 * (np.linalg.inv(jtj) / np.outer(norm, norm))[3:5, 3:5]
    r2 = zx * zx + zy * zy
    if r2 <= 0:
        return math.sqrt(max(c[0, 0], 0.0)), math.nan, math.nan
    g_rate = np.array([zx, zy]) / math.sqrt(r2)
    g_phase = np.array([-zy, zx]) / r2
    return (math.sqrt(max(c[0, 0], 0.0)), math.sqrt(max(float(g_rate @ c @ g_rate), 0.0)),
            math.sqrt(max(float(g_phase @ c @ g_phase), 0.0)))


VERDICTS = ("improved", "unresolved", "kept_start")


@dataclass(frozen=True)
class AcceptCheck:
    """The closing check of ``TextbookECR.accept_check``: the error-amplifying cost of the
    start and of the calibrated setting, each with its binomial standard error, and the
    verdict (one of ``VERDICTS``): "improved" when the calibrated cost is below the start's
    by more than ``z`` standard errors of the difference, "kept_start" when it is not
    below it at all (the result is then the start), "unresolved" in between (the
    calibrated setting is kept: better by its estimate, but within the noise)."""

    verdict: str
    cost_start: float
    cost_calibrated: float
    se_start: float
    se_calibrated: float
    shots: int


@dataclass(frozen=True)
class ECRResult:
    """What a two-qubit baseline returns.

    Attributes:
        knobs: the calibrated setting.
        shots_used: shots the device ran for it (all of them).
        hamiltonians: the CR fits of each tomography round, in order.
        history: the setting after each stage, (stage name, knobs).
        accept: the closing check's record (``TextbookECR.accept_check``), None without it.
    """

    knobs: ECRKnobs
    shots_used: int
    hamiltonians: tuple[CRHamiltonian, ...] = ()
    history: tuple[tuple[str, ECRKnobs], ...] = field(default_factory=tuple)
    accept: AcceptCheck | None = None


@runtime_checkable
class TwoQubitBaseline(Protocol):
    """A two-qubit gate calibration on one device (the sibling of ``Baseline``)."""

    @property
    def name(self) -> str: ...

    def min_budget(self) -> int: ...

    def run(self, device: Device, start: ECRKnobs, budget: int) -> ECRResult: ...


class _Counter:
    """``Device.run`` with the shots counted and the budget enforced."""

    def __init__(self, device: Device, budget: int) -> None:
        self.device, self.budget, self.used = device, budget, 0

    def run(self, seqs: Sequence[object], shots: int) -> NDArray[np.int64]:
        need = shots * len(seqs)
        if self.used + need > self.budget:
            raise RuntimeError(f"budget: {self.used} + {need} shots exceed budget={self.budget}")
        self.used += need
        return np.asarray(self.device.run(list(seqs), shots))  # type: ignore[arg-type]


@dataclass(frozen=True)
class TextbookECR:
    """CR Hamiltonian tomography → phase, cancellation tone and amplitude → fine amplitude.

    Each of ``rounds`` rounds runs the six tomography sequences at every length of
    ``lengths_samples`` (``shots`` each), fits the six rates and updates:

    1. CR phase −= atan2(ZY, ZX) (all of the conditional rate into ZX);
    2. cancellation tone −= (IX + i·IY)/(2π·Ω_t) rotated by the phase change (it drives the
       target directly at Rabi rate 2π·Ω_t·u about the axis of its phase);
    3. CR amplitude ×= (π/4)/(|ZX|·τ_half) (ZX linear in the amplitude at weak drive).

    Then the fine amplitude: ``fine_points`` amplitudes spaced ``fine_step`` (relative)
    around the result, RZX(π/2)^``fine_repeats`` (the ECR with the echo's π undone; a
    multiple of 4 is the identity up to a sign when ideal, and an amplitude error ε of the
    ZX angle leaves the target flipped with probability sin²(repeats·ε/2)) from |00⟩ and
    |10⟩; a parabola through the summed excited-target fraction picks the minimum (kept
    within the scanned range).

    Args:
        shape: the ECR pulse shape (as the env's).
        rabi_hz: the spec-sheet Rabi frequency at full scale of both lines.
        lengths_samples: CR lengths of the tomography, each in [8, 1000].
        shots: shots per sequence, >= 16.
        rounds: tomography rounds, >= 1.
        fine_points, fine_step, fine_repeats: the fine-amplitude scan (points >= 3 odd,
            0 < step <= 0.2, repeats a multiple of 4), ``fine_points = 0`` to skip it.
        rotary_turns: a rotary tone (Sundaresan et al., PRX Quantum 1, 020318 (2020)) added
            to the target tone after the tomography rounds, before the fine amplitude:
            along the CR drive's axis (negative: opposite to it), echoed with it, of an
            amplitude that turns the target ``rotary_turns`` times about that axis per
            half at the spec-sheet Rabi rate, in [−3, 3]; 0 (default) is none. The echo
            cancels the tone's IX by itself, but a drive that turns the target quickly
            averages away the errors of the tone's component across the CR axis (an IY
            left by the tomography's shot noise); −1 is the measured choice
            (docs/cr_calibration.md, "Error budget").
        prior_amp_rel, prior_phase_rad: shrink each tomography round's amplitude and phase
            update by its fit's uncertainty (``shrink``): the relative amplitude change u
            becomes u·σ_p²/(σ_p² + σ_u²) with σ_p = ``prior_amp_rel`` and σ_u its standard
            error from the fit's ``rate_se``, and the phase change likewise with
            ``prior_phase_rad`` and ``phase_se``. A fit that cannot give its error (NaN)
            moves nothing. None (default): the full update, no shrinkage; else > 0.
        accept_check: close with ``accept_repeats`` error-amplifying sequences (RZX(π/2)^R
            from |00⟩ and |10⟩, ``shots`` each) on the start and on the calibrated setting,
            and return the start unless the calibrated setting's cost is lower
            (``AcceptCheck``); its shots are in ``min_budget()``. Off by default.
        accept_repeats: the check's repetitions, each >= 2 and even (odd multiples of 2
            flip the target when ideal, multiples of 4 leave it). A ZX angle error δ per
            gate shows as sin²(R·δ/2): R = 4 alone is blind to δ = π/2 (a doubled
            amplitude), R = 2 and 4 together only to δ = π (a tripled one).
        accept_z: standard errors of the cost difference that make it "improved", > 0.
    """

    shape: ECRShape = field(default_factory=ECRShape)
    rabi_hz: float = 50e6
    lengths_samples: tuple[int, ...] = (40, 80, 120, 160)
    shots: int = 250
    rounds: int = 2
    fine_points: int = 5
    fine_step: float = 0.05
    fine_repeats: int = 8
    rotary_turns: float = 0.0
    prior_amp_rel: float | None = None
    prior_phase_rad: float | None = None
    accept_check: bool = False
    accept_repeats: tuple[int, ...] = (2, 4)
    accept_z: float = 2.0

    def __post_init__(self) -> None:
        if not all(isinstance(n, int) and 8 <= n <= 1000 for n in self.lengths_samples) or not self.lengths_samples:
            raise ValueError(f"TextbookECR.lengths_samples={self.lengths_samples!r} is out of range: "
                             "allowed integers in [8, 1000]")
        for name, ok, allowed in (
                ("shots", self.shots >= 16, ">= 16"), ("rounds", self.rounds >= 1, ">= 1"),
                ("fine_points", self.fine_points == 0 or (self.fine_points >= 3 and self.fine_points % 2 == 1),
                 "0 or an odd integer >= 3"),
                ("fine_step", 0 < self.fine_step <= 0.2, "(0, 0.2]"),
                ("fine_repeats", self.fine_repeats >= 4 and self.fine_repeats % 4 == 0, "a multiple of 4"),
                ("rotary_turns", math.isfinite(self.rotary_turns) and abs(self.rotary_turns) <= 3, "[-3, 3]"),
                ("rabi_hz", self.rabi_hz > 0, "> 0 Hz"),
                ("prior_amp_rel", self.prior_amp_rel is None or (math.isfinite(self.prior_amp_rel)
                                                                 and self.prior_amp_rel > 0), "None or > 0"),
                ("prior_phase_rad", self.prior_phase_rad is None or (math.isfinite(self.prior_phase_rad)
                                                                     and self.prior_phase_rad > 0), "None or > 0"),
                ("accept_repeats", bool(self.accept_repeats) and all(
                    isinstance(n, int) and n >= 2 and n % 2 == 0 for n in self.accept_repeats),
                 "a non-empty tuple of even integers >= 2"),
                ("accept_z", math.isfinite(self.accept_z) and self.accept_z > 0, "> 0")):
            if not ok:
                raise ValueError(f"TextbookECR.{name}={getattr(self, name)!r} is out of range: allowed {allowed}")

    @property
    def name(self) -> str:
        return "ecr_textbook"

    def min_budget(self) -> int:
        check = 2 * 2 * len(self.accept_repeats) if self.accept_check else 0
        return (self.rounds * 6 * len(self.lengths_samples) + 2 * self.fine_points + check) * self.shots

    def tomography(self, counter: _Counter, knobs: ECRKnobs, dt_s: float) -> tuple[FloatArray, FloatArray]:
        """(T,) effective durations and (T, 2, 3) Bloch vectors at ``lengths_samples``."""
        seqs = [s for n in self.lengths_samples
                for s in tomography_sequences(knobs, self.shape, self.rabi_hz, dt_s, n)]
        counts = counter.run(seqs, self.shots).reshape(len(self.lengths_samples), 6, -1)
        tau = np.array([self.shape.envelope(n).sum() * dt_s for n in self.lengths_samples])
        return tau, bloch_from_counts(counts)

    def run(self, device: Device, start: ECRKnobs, budget: int) -> ECRResult:
        if budget < self.min_budget():
            raise ValueError(f"budget={budget} is out of range: allowed >= min_budget() = {self.min_budget()}")
        counter = _Counter(device, budget)
        dt = device.dt_s
        k = start
        fits: list[CRHamiltonian] = []
        history: list[tuple[str, ECRKnobs]] = [("start", k)]
        tau_half = float(self.shape.envelope().sum()) * dt
        guess = HALF_ANGLE / tau_half  # the ZX a correctly set start would have
        for r in range(self.rounds):
            tau, bloch = self.tomography(counter, k, dt)
            h = fit_cr_hamiltonian(tau, bloch, guess if r == 0 else fits[-1].zx)
            fits.append(h)
            dphi = -h.phase
            if self.prior_phase_rad is not None:
                dphi *= shrink(self.prior_phase_rad, h.phase_se)
            zx = h.rate
            # The tone's effect (IX + i·IY) follows its own phase, not the CR's, but the CR's
            # own IX/IY turn with the CR phase: rotate the measured residual with it.
            cr_ixy = complex(h.ix, h.iy) - 2 * math.pi * self.rabi_hz * k.cancel_amp * np.exp(1j * k.cancel_phase_rad)
            tone = -cr_ixy * np.exp(1j * dphi) / (2 * math.pi * self.rabi_hz)
            if self.prior_amp_rel is None:
                amp = min(1.0, k.cr_amp * HALF_ANGLE / max(zx * tau_half, 1e-12))
            else:
                # u = ratio − 1; its error from the rate's, first order: σ_u = ratio·σ_rate/rate.
                ratio = HALF_ANGLE / max(zx * tau_half, 1e-12)
                ratio = 1.0 + (ratio - 1.0) * shrink(self.prior_amp_rel, ratio * h.rate_se / max(zx, 1e-12))
                amp = min(1.0, k.cr_amp * ratio)
            k = ECRKnobs(amp, _wrap(k.cr_phase_rad + dphi), min(1.0, abs(tone)), float(np.angle(tone)))
            history.append((f"tomography_{r}", k))
        if self.rotary_turns:
            u = self.rotary_turns / (self.rabi_hz * tau_half)
            tone = k.cancel_amp * np.exp(1j * k.cancel_phase_rad) + u * np.exp(1j * k.cr_phase_rad)
            k = ECRKnobs(k.cr_amp, k.cr_phase_rad, min(1.0, abs(tone)), float(np.angle(tone)))
            history.append(("rotary", k))
        if self.fine_points:
            k = self._fine_amplitude(counter, k, dt)
            history.append(("fine_amplitude", k))
        check = None
        if self.accept_check:
            check = self._accept(counter, start, k, dt)
            if check.verdict == "kept_start":
                k = start
            history.append(("accept_check", k))
        return ECRResult(k, counter.used, tuple(fits), tuple(history), check)

    def _amplified_cost(self, counts: NDArray[np.int64]) -> tuple[float, float]:
        """(2·len(accept_repeats), 4) counts of one setting -> its cost (the mean fraction of
        shots with the target in the wrong state) and the cost's binomial standard error."""
        c = np.asarray(counts, dtype=np.float64)
        excited = (c[:, 1] + c[:, 3]) / c.sum(-1)
        flips = np.repeat([(r // 2) % 2 == 1 for r in self.accept_repeats], 2)  # R = 2 mod 4: target flipped
        wrong = np.where(flips, 1.0 - excited, excited)
        # A zero count has no binomial spread: take at least one wrong shot's worth.
        p = np.clip(wrong, 1.0 / self.shots, 1.0 - 1.0 / self.shots)
        return float(wrong.mean()), float(math.sqrt(float((p * (1 - p)).sum()) / self.shots) / len(wrong))

    def _accept(self, counter: _Counter, start: ECRKnobs, k: ECRKnobs, dt: float) -> AcceptCheck:
        seqs = [ecr_sequence(kk, self.shape, self.rabi_hz, dt, r, c, undo_echo=True)
                for kk in (start, k) for r in self.accept_repeats for c in (False, True)]
        counts = counter.run(seqs, self.shots).reshape(2, 2 * len(self.accept_repeats), -1)
        (c0, s0), (c1, s1) = self._amplified_cost(counts[0]), self._amplified_cost(counts[1])
        if c1 >= c0:
            verdict = "kept_start"
        elif c0 - c1 > self.accept_z * math.hypot(s0, s1):
            verdict = "improved"
        else:
            verdict = "unresolved"
        return AcceptCheck(verdict, c0, c1, s0, s1, len(seqs) * self.shots)

    def _fine_amplitude(self, counter: _Counter, k: ECRKnobs, dt: float) -> ECRKnobs:
        m = self.fine_points // 2
        rel = self.fine_step * np.arange(-m, m + 1)
        seqs = []
        for x in rel:
            kk = ECRKnobs(min(1.0, k.cr_amp * (1 + x)), k.cr_phase_rad, k.cancel_amp, k.cancel_phase_rad)
            seqs += [ecr_sequence(kk, self.shape, self.rabi_hz, dt, self.fine_repeats, c, undo_echo=True)
                     for c in (False, True)]
        counts = counter.run(seqs, self.shots).reshape(len(rel), 2, 4).astype(np.float64)
        # Excited-target fraction (columns |01⟩, |11⟩), summed over both control states.
        cost = ((counts[..., 1] + counts[..., 3]) / counts.sum(-1)).sum(-1)
        a, b, _ = np.polyfit(rel, cost, 2)
        best = float(rel[np.argmin(cost)]) if a <= 0 else float(np.clip(-b / (2 * a), rel[0], rel[-1]))
        return ECRKnobs(min(1.0, k.cr_amp * (1 + best)), k.cr_phase_rad, k.cancel_amp, k.cancel_phase_rad)


def shrink(prior_sd: float, fit_se: float) -> float:
    """The factor σ_p²/(σ_p² + σ²) of a measured update u with standard error σ under a
    zero-mean Gaussian prior of width σ_p on the true update: the posterior mean of the
    update is u times it (James–Stein's shrinkage towards no change). A NaN or infinite σ
    gives 0: an update of unknown error is not made."""
    if not math.isfinite(fit_se):
        return 0.0
    return prior_sd * prior_sd / (prior_sd * prior_sd + fit_se * fit_se)


def _wrap(x: float) -> float:
    return float((x + math.pi) % (2 * math.pi) - math.pi)
