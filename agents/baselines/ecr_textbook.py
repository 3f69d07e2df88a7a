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
    """Fitted CR rates in rad/s (module docstring) and the fitted readout contrast."""

    ix: float
    iy: float
    iz: float
    zx: float
    zy: float
    zz: float
    contrast: float

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
    return CRHamiltonian(p[0], p[1], p[2], p[3], p[4], p[5], p[6])


@dataclass(frozen=True)
class ECRResult:
    """What a two-qubit baseline returns.

    Attributes:
        knobs: the calibrated setting.
        shots_used: shots the device ran for it (all of them).
        hamiltonians: the CR fits of each tomography round, in order.
        history: the setting after each stage, (stage name, knobs).
    """

    knobs: ECRKnobs
    shots_used: int
    hamiltonians: tuple[CRHamiltonian, ...] = ()
    history: tuple[tuple[str, ECRKnobs], ...] = field(default_factory=tuple)


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
                ("rabi_hz", self.rabi_hz > 0, "> 0 Hz")):
            if not ok:
                raise ValueError(f"TextbookECR.{name}={getattr(self, name)!r} is out of range: allowed {allowed}")

    @property
    def name(self) -> str:
        return "ecr_textbook"

    def min_budget(self) -> int:
        return (self.rounds * 6 * len(self.lengths_samples) + 2 * self.fine_points) * self.shots

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
            dphi = -math.atan2(h.zy, h.zx)
            zx = math.hypot(h.zx, h.zy)
            # The tone's effect (IX + i·IY) follows its own phase, not the CR's, but the CR's
            # own IX/IY turn with the CR phase: rotate the measured residual with it.
            cr_ixy = complex(h.ix, h.iy) - 2 * math.pi * self.rabi_hz * k.cancel_amp * np.exp(1j * k.cancel_phase_rad)
            tone = -cr_ixy * np.exp(1j * dphi) / (2 * math.pi * self.rabi_hz)
            amp = min(1.0, k.cr_amp * HALF_ANGLE / max(zx * tau_half, 1e-12))
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
        return ECRResult(k, counter.used, tuple(fits), tuple(history))

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


def _wrap(x: float) -> float:
    return float((x + math.pi) % (2 * math.pi) - math.pi)
