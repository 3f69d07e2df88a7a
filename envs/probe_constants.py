"""The model constants of GateCalibration-v1's estimator, measured on our physics engine.

GateCalibration-v1 reads each twin probe into a parameter error with two kinds of constant
that depend on the gate's shape and length, not on the device it runs on: the DRAG slope
(per-gate DRAG angle per second of β error) and three first-order cross-talk couplings
between the probe families (see ``GateCalibrationV1Config``, whose defaults are those of
the 20 ns lifted Gaussian). :func:`measure_probe_constants` measures them for any gate:
noise-free twin readings (exact excited populations, no readout error, closed system) at
the optimal parameters of a reference device, moved by ± a small step in one parameter,
differentiated by central differences, so a new gate length or device class gets its
constants from one call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validation import require
from .drag import DragGate, optimal_params
from .gate_calibration_v1 import twin_sequence
from .physics import Transmon
from .physics.calibration_kernels import TWO_PI
from .protocol import Play
from .simulated_device import DeviceParams, SimulatedDevice


@dataclass(frozen=True)
class ProbeConstants:
    """Constants of ``GateCalibrationV1Config`` for one gate shape and device class.

    Attributes:
        drag_slope_per_s: per-gate DRAG angle (rad) per second of β error.
        couplings: amplitude ε read per Hz of detuning error, β error (s) read per Hz of
            detuning error, Ramsey detuning error (Hz) read per second of β error.
    """

    drag_slope_per_s: float
    couplings: tuple[float, float, float]

    def as_kwargs(self) -> dict[str, object]:
        """The ``GateCalibrationV1Config`` keyword arguments."""
        return {"drag_slope_per_s": self.drag_slope_per_s, "couplings": self.couplings}


def measure_probe_constants(
    device: Transmon | DeviceParams,
    gate: DragGate,
    *,
    amplitude_depth: int = 4,
    drag_depth: int = 2,
    ramsey_delay_s: float = 0.4e-6,
    beta_step_rel: float = 0.05,
    detuning_step_hz: float = 20e3,
) -> ProbeConstants:
    """DRAG slope and probe couplings of ``gate`` on ``device``, by central differences.

    Readings are those of ``GateCalibrationV1Core._measure`` at contrast 1: for a twin
    pair s = P+ − P− (exact populations of the closed system, no readout error), the
    amplitude probe SX·X^n reads ε = asin(s)/(n·π), the DRAG probe SY·(X̄X)^n the per-gate
    angle φ = asin(s)/(2n), the Ramsey probe the detuning error −asin(s)/(2π(τ + T)).
    Around the optimal parameters (``calibration.optimal_params``; detuning = the qubit's)::

        drag_slope_per_s = dφ/dβ
        couplings = (dε/dΔ, (dφ/dΔ)/drag_slope_per_s, d(Ramsey error)/dβ)

    The amplitude and DRAG couplings are per gate, the same at every depth; the Ramsey
    one is a phase offset of the SX pulses read as a detuning, so it scales as
    1/(τ + T): the default τ = 0.4 µs is a middle level of the v1 Ramsey ladder (where
    the config's 20 ns defaults hold); pick the level the estimator leans on most.

    Args:
        device: the reference device (a bare ``Transmon`` or ``DeviceParams``; its
            amplitude scale is folded in, readout error and T1/T2 are ignored).
        gate: the gate shape and length (a whole number of the device's samples).
        amplitude_depth, drag_depth, ramsey_delay_s: probe levels (X^n depth, X̄X pairs, s).
        beta_step_rel: β step, relative to |β*|, in (0, 1).
        detuning_step_hz: detuning step (Hz), > 0.
    Returns:
        ``ProbeConstants``.
    """
    require(isinstance(device, Transmon | DeviceParams), "device", device, "a Transmon or DeviceParams")
    params = device if isinstance(device, DeviceParams) else DeviceParams(transmon=device)
    require(isinstance(amplitude_depth, int) and amplitude_depth >= 2 and amplitude_depth % 2 == 0,
            "amplitude_depth", amplitude_depth, "an even int >= 2")
    require(isinstance(drag_depth, int) and drag_depth >= 1, "drag_depth", drag_depth, "an int >= 1")
    require(math.isfinite(ramsey_delay_s) and 0 < ramsey_delay_s <= 1e-3, "ramsey_delay_s",
            ramsey_delay_s, "(0, 1e-3] s")
    require(math.isfinite(beta_step_rel) and 0 < beta_step_rel < 1, "beta_step_rel", beta_step_rel, "(0, 1)")
    require(math.isfinite(detuning_step_hz) and detuning_step_hz > 0, "detuning_step_hz", detuning_step_hz,
            "> 0 Hz")
    # Closed system and perfect readout: the constants belong to the pulse, not to noise.
    params = params.replace(p1_given_0=0.0, p0_given_1=0.0)
    dev = SimulatedDevice(params, rng=np.random.default_rng(0), open_system=False)
    transmon = dev.current_transmon()
    dt = dev.dt_s
    gate_s = gate.n_samples(dt) * dt
    best = optimal_params(transmon, gate).as_array()

    def readings(p: np.ndarray) -> np.ndarray:
        """(ε, φ, Ramsey detuning error) read at parameters ``p`` (4,)."""
        x = Play(gate.waveforms(p, dt), "X")
        sx = Play(gate.waveforms(p, dt, gate.sx_area_fraction), "SX")
        levels = (float(amplitude_depth), float(drag_depth), float(ramsey_delay_s))
        seqs = [twin_sequence(f, s, levels[f], x, sx, gate_s, float(p[2]), dt)
                for f in range(3) for s in (1, -1)]
        pr = dev.excited_probabilities(seqs)
        phase = np.arcsin(np.clip(pr[0::2] - pr[1::2], -1.0, 1.0))
        return np.array([phase[0] / (amplitude_depth * math.pi), phase[1] / (2.0 * drag_depth),
                         -phase[2] / (TWO_PI * (ramsey_delay_s + gate_s))])

    def moved(index: int, step: float) -> tuple[np.ndarray, np.ndarray]:
        up, down = best.copy(), best.copy()
        up[index] += step
        down[index] -= step
        return readings(up), readings(down)

    h_beta = beta_step_rel * abs(best[1])
    require(h_beta > 0, "device", device, "a device with a nonzero optimal β (anharmonicity < 0)")
    up, down = moved(1, h_beta)
    d_beta = (up - down) / (2.0 * h_beta)
    slope = float(d_beta[1])
    up, down = moved(2, detuning_step_hz)
    d_det = (up - down) / (2.0 * detuning_step_hz)
    couplings = (float(d_det[0]), float(d_det[1] / slope), float(d_beta[2]))
    return ProbeConstants(slope, couplings)
