"""The model-based optimum of the two-qubit gates' knobs (evaluation-only reference).

``ModelOptimumCZ`` / ``ModelOptimumECR`` know the device: they optimise the knobs of the
measured methods (``blackbox_2q``, the textbooks) on the *true* gate fidelity
(``envs/physics/coupled/metrics.py``, through the device's truth methods) with scipy, from
the nominal start, at no shots. That is the knob-space optimum of the same pulse family,
the floor a knob calibrator can reach; it is not a GRAPE over free waveforms
(docs/two_qubit_baselines.md). They share the black boxes' knob ranges and units, so the
floor is taken over the same space the searches explore.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from pulsecal.envs import cr_calibration_core as cr
from pulsecal.envs import cz_calibration_core as cz
from pulsecal.envs.physics.coupled import metrics as m2
from pulsecal.envs.protocol import PulseSequence

from .blackbox_2q import (
    CZ_AMPLITUDE_RANGE_PHI0,
    CZ_LENGTH_RANGE_S,
    CZ_UNITS,
    ECR_UNITS,
    FloatArray,
    _check_int,
    signed_ecr_knobs,
)
from .cz_textbook import CZCalibrationResult
from .ecr_textbook import ECRResult


def cz_true_error(device: Any, pulse: cz.CZPulse, amplitude_phi0: float, length_s: float) -> tuple[float, FloatArray]:
    """1 − F (virtual Z) of the CZ flux pulse on the device's truth and the knob phases
    (phase_q0, phase_q1) that realise the best local Zs (evaluation only)."""
    from pulsecal.envs.protocol import Play

    seq = PulseSequence((Play(pulse.waveform(amplitude_phi0, length_s).astype(np.complex128),
                              channel=cz.FLUX_CHANNEL),))
    names, op = device.schedule_propagator(seq)
    model = device.current_model().restrict(names, {})
    kind: m2.OpKind = "superoperator" if device.open_system else "unitary"
    g = m2.gate_fidelity(model, op, "CZ", kind=kind, virtual_z=True)
    # A CZ is diagonal, so the local Zs before it commute to after it; the knobs' frame
    # updates add VZ_SIGN·φ on level 1.
    qubits = [q for q in names if q in (cz.CONTROL, cz.TARGET)]
    total = np.asarray(g.phases_after) + np.asarray(g.phases_before)
    phases = np.array([total[qubits.index(q)] for q in (cz.CONTROL, cz.TARGET)]) / cz.VZ_SIGN
    return 1.0 - float(g.fidelity), np.angle(np.exp(1j * phases))


@dataclass(frozen=True)
class ModelOptimumCZ:
    """The CZ's knob-space optimum on the device's true fidelity (knows the device; 0 shots).

    A coarse grid over amplitude × length around ``start`` finds the exchange resonance
    (the true cost is flat far from it), Nelder-Mead refines it, and the phases are the
    best local virtual Zs of the gate found.

    Attributes:
        grid_amplitude_phi0: half-width of the grid's amplitudes; grid_length_s: (low, high).
        grid_points: points per grid axis, >= 2.
        maxfev: Nelder-Mead's evaluations, >= 1.
        pulse: the flux pulse's shape. An adiabatic pulse gets the device's true map
            (``cz_calibration_core.true_adiabatic_pulse``) and the optimum is also taken
            over its λ_2 (the family's third parameter), from the shape's design point
            (``_run_adiabatic``); the result's ``pulse`` is the one found.
    """

    grid_amplitude_phi0: float = 0.012
    grid_length_s: tuple[float, float] = (36e-9, 76e-9)
    grid_points: int = 9
    maxfev: int = 120
    pulse: cz.CZPulse = field(default_factory=cz.CZPulse)

    name = "model_optimum"

    def run(self, device: Any, start: ArrayLike) -> CZCalibrationResult:
        if self.pulse.shape != "adiabatic":
            return self._run(device, start, self.pulse)
        return self._run_adiabatic(device, cz.true_adiabatic_pulse(device, self.pulse))

    def _run_adiabatic(self, device: Any, base: cz.CZPulse) -> CZCalibrationResult:
        """Nelder-Mead over (amplitude, length, λ_2) from the shape's design point: length
        ``adiabatic_gl``/g at ``base.lambda_2`` and the amplitude the shape's own model puts
        at a conditional phase of π. The family's leakage valley is too narrow for the flat
        top's coarse grid to land in."""
        from scipy.optimize import minimize

        from .cz_textbook import CZTextbook, _model_pi_amplitude

        length0 = CZTextbook().adiabatic_gl / base.coupling_hz
        x0 = np.array([_model_pi_amplitude(base, length0), length0, base.lambda_2])
        unit = np.array([3e-4, 1e-9, 0.03])

        def pulse_of(z: FloatArray) -> tuple[cz.CZPulse, float, float]:
            x = x0 + z * unit
            a = float(np.clip(x[0], *CZ_AMPLITUDE_RANGE_PHI0))
            t = float(np.clip(x[1], *CZ_LENGTH_RANGE_S))
            return dataclasses.replace(base, lambda_2=float(np.clip(x[2], -1.0, 1.0))), a, t

        def cost(z: FloatArray) -> float:
            p, a, t = pulse_of(z)
            return math.log10(cz_true_error(device, p, a, t)[0] + 1e-9)

        res = minimize(cost, np.zeros(3), method="Nelder-Mead",
                       options={"maxfev": self.maxfev, "initial_simplex": np.vstack([np.zeros(3), np.eye(3)]),
                                "xatol": 1e-3, "fatol": 1e-5})
        p, a, t = pulse_of(res.x)
        err, phases = cz_true_error(device, p, a, t)
        return CZCalibrationResult(np.array([a, t, *phases]), 0, err, (("truth", 0),), p)

    def _run(self, device: Any, start: ArrayLike, pulse: cz.CZPulse) -> CZCalibrationResult:
        from scipy.optimize import minimize

        p0 = np.asarray(start, dtype=np.float64)
        amps = p0[0] + np.linspace(-self.grid_amplitude_phi0, self.grid_amplitude_phi0, self.grid_points)
        lengths = np.linspace(*self.grid_length_s, self.grid_points)

        def cost(x: FloatArray) -> float:
            a = float(np.clip(x[0], *CZ_AMPLITUDE_RANGE_PHI0))
            t = float(np.clip(x[1], *CZ_LENGTH_RANGE_S))
            return math.log10(cz_true_error(device, pulse, a, t)[0] + 1e-9)

        grid = [(cost(np.array([a, t])), a, t) for a in amps for t in lengths]
        _, a0, t0 = min(grid)
        unit = np.array([CZ_UNITS[0], CZ_UNITS[1]])
        res = minimize(lambda z: cost(np.array([a0, t0]) + z * unit), np.zeros(2), method="Nelder-Mead",
                       options={"maxfev": self.maxfev, "initial_simplex": [[0, 0], [0.25, 0], [0, 0.25]],
                                "xatol": 1e-4, "fatol": 1e-5})
        a, t = np.array([a0, t0]) + res.x * unit
        a, t = float(np.clip(a, *CZ_AMPLITUDE_RANGE_PHI0)), float(np.clip(t, *CZ_LENGTH_RANGE_S))
        err, phases = cz_true_error(device, pulse, a, t)
        return CZCalibrationResult(np.array([a, t, *phases]), 0, err, (("truth", 0),), pulse)


@dataclass(frozen=True)
class ModelOptimumECR:
    """The ECR's knob-space optimum on the device's true fidelity (knows the device; 0 shots).

    Nelder-Mead from ``start`` (the nominal knobs) on log10(1 − F) of ``ecr_truth``, in the
    env's start-spread units, restarted ``restarts`` times from its last point (a fresh
    simplex escapes a collapsed one). With ``phase_starts`` = n > 1 the same search runs
    from n CR phases, start + 2π·j/n, and the best end point is kept: the ECR's 1 − F
    has several basins in the CR phase (the two signs of ZX, and the phase that best
    absorbs the echo pulses' own errors), and a local search from the nominal phase does
    not always find the deepest (docs/cr_calibration.md, "Error budget"). Each phase
    start is combined with each of ``rotary_starts``: a tone along the CR axis added to
    the start's, in target turns per half as ``TextbookECR.rotary_turns`` (a rotary
    tone is a separate basin too).

    Attributes:
        maxfev: Nelder-Mead's evaluations per start, >= 1.
        restarts: extra starts from the best point, >= 0.
        phase_starts: CR phases to start from, >= 1 (1: only ``start``'s).
        rotary_starts: rotary tones to start from (turns per half, each in [−3, 3]).
        shape, rabi_hz: as the measured methods'.
    """

    maxfev: int = 150
    restarts: int = 1
    shape: cr.ECRShape = field(default_factory=cr.ECRShape)
    rabi_hz: float = 50e6
    phase_starts: int = 1
    rotary_starts: tuple[float, ...] = (0.0,)

    name = "model_optimum"

    def __post_init__(self) -> None:
        _check_int("ModelOptimumECR.maxfev", self.maxfev, 1)
        _check_int("ModelOptimumECR.restarts", self.restarts, 0)
        _check_int("ModelOptimumECR.phase_starts", self.phase_starts, 1)
        r = tuple(self.rotary_starts)
        if not r or not all(math.isfinite(x) and abs(x) <= 3 for x in r):
            raise ValueError(f"ModelOptimumECR.rotary_starts={self.rotary_starts!r} is out of range: "
                             "allowed a non-empty tuple of turns in [-3, 3]")

    def run(self, device: Any, start: cr.ECRKnobs) -> ECRResult:
        best: tuple[float, cr.ECRKnobs] | None = None
        area_s = float(self.shape.envelope().sum()) * float(device.dt_s)
        for j in range(self.phase_starts):
            phase = start.cr_phase_rad + 2 * math.pi * j / self.phase_starts
            for turns in self.rotary_starts:
                tone = (start.cancel_amp * np.exp(1j * start.cancel_phase_rad)
                        + turns / (self.rabi_hz * area_s) * np.exp(1j * phase))
                s = cr.ECRKnobs(start.cr_amp, phase, min(1.0, abs(tone)), float(np.angle(tone)))
                k, c = self._local(device, s)
                if best is None or c < best[0]:
                    best = (c, k)
        assert best is not None
        return ECRResult(best[1], 0, (), (("start", start), ("truth", best[1])))

    def _local(self, device: Any, start: cr.ECRKnobs) -> tuple[cr.ECRKnobs, float]:
        """The local search from ``start``: (knobs, log10(1 − F + 1e-9) there)."""
        from scipy.optimize import minimize

        x0 = start.as_array()
        unit = np.asarray(ECR_UNITS) * np.array([max(start.cr_amp, 1e-3), 1.0, 1.0, 1.0])

        def cost(z: FloatArray) -> float:
            k = signed_ecr_knobs(x0 + z * unit)
            return math.log10(cr.ecr_truth(device, k, self.shape, self.rabi_hz).infidelity + 1e-9)

        z = np.zeros(4)
        for _ in range(1 + self.restarts):
            simplex = np.vstack([z, z + 0.3 * np.eye(4)])
            z = np.asarray(minimize(cost, z, method="Nelder-Mead",
                                    options={"maxfev": self.maxfev, "initial_simplex": simplex,
                                             "xatol": 1e-4, "fatol": 1e-5}).x)
        return signed_ecr_knobs(x0 + z * unit), cost(z)


__all__ = ["ModelOptimumCZ", "ModelOptimumECR", "cz_true_error"]
