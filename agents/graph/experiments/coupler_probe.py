"""Coupler probe: a cheap static-ZZ phase that says whether the exchange coupling is there at all
(the fitted static ZZ of the two-qubit chain is ``experiments.zz``; this one runs right after T1
so a coupler stuck off is named before the pair's single-qubit chains are finished).

Two coupled transmons shift each other's frequency by ζ when the other is excited (the
|11⟩ level repelled by |02⟩ and |20⟩; to second order in J, ζ = 2J²(α_a + α_b)/((Δ + α_a)
(α_b − Δ))). ζ ∝ J², so a coupler stuck off (J ≈ 0) shows none.

The probe is a Ramsey phase on the first qubit of the pair: X90 – τ – X90 about the axis
φ ∈ {0, π/2}, once with the second qubit in |0⟩ and once after a π pulse on it (played
with the first X90). P(1) = ½ + ½·C·cos(θ + φ) with C the fringe contrast (two X90 about
one axis are a π pulse: P(1) = 1 at θ = 0), so θ = atan2(½ − P(π/2), P(0) − ½) from the
two quadratures, and ζ = (θ₁ − θ₀)/(2πτ) wrapped into ±1/(2τ) (its sign is a convention;
the qubit's own frequency error cancels in the difference). Four sequences only: a
two-qubit sequence costs seconds of simulation (both modes, 600 MHz apart, in their
frames), so fitted Ramsey curves (~50 sequences) are out of reach of a bring-up's wall
time; the one delay ``delay_s`` (1 µs) keeps |2πζτ| < π for |ζ| up to 500 kHz.

A |ζ| significantly below ``min_zz_hz`` (|ζ| + z·σ < min, ``common.CONFIRM_Z``) is
``out_of_spec`` with the symptom ``no_coupling``: the coupler is off. Anything else is
``in_spec`` (a ζ consistent with a working coupler) and writes ``qA-qB.zz_probe_hz`` with its
standard error. The default min_zz_hz of 35 kHz is set against ``ring_8``: this probe
measures ζ ≈ −74 kHz on q2-q3 at the design J, ~47 kHz at the held-out sampler's J −20 %;
σ_ζ ≈ 5.6 kHz at 2000 shots per sequence, so z·σ ≈ 20 kHz: a coupler off (ζ = 0) is told
unless its estimate is off by 2.7σ, a working one is called off only beyond ~5σ.

It reads both qubits' ``frequency_hz`` and ``pi_amplitude`` (per qubit, so the pair's
declared ``reads`` stay empty; a missing one is refused by name when it runs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ....envs.drag import DragGate
from ....envs.protocol import Play, PulseSequence
from ..experiment import ExperimentResult, target_name
from .common import CONFIRM_Z, DISTORTED, check_float, check_int, measure, result
from .pulses import DEFAULT_GATE, QubitPulses, SequenceBuilder, program

NO_COUPLING = "no_coupling"


class _WithControl:
    """A Ramsey program on the probe qubit with the control's π pulse played at t = 0 (in
    parallel with the probe's first X90: channels run in parallel)."""

    def __init__(self, probe: SequenceBuilder, control_channel: str, control_pulse: np.ndarray | None) -> None:
        self.probe = probe
        self.channel = control_channel
        self.pulse = control_pulse

    @property
    def duration_s(self) -> float:
        return self.probe.duration_s

    def sequence(self, name: str = "") -> PulseSequence:
        s = self.probe.sequence(name)
        if self.pulse is None:
            return s
        return PulseSequence((Play(self.pulse, channel=self.channel), *s.ops), name=name)


@dataclass(frozen=True)
class CouplerProbe:
    """Settings: ``delay_s`` (τ), ``shots`` per sequence (four sequences; the cheap form
    ``cheap_shots``), ``min_zz_hz`` (the smallest |ζ| of a working coupler), ``min_contrast``
    (the Ramsey contrast below which the phase is not measured), ``gate``."""

    delay_s: float = 1e-6
    shots_per_sequence: int = 2000
    cheap_shots_per_sequence: int = 1000
    min_zz_hz: float = 35e3
    min_contrast: float = 0.3
    gate: DragGate = DEFAULT_GATE

    def __post_init__(self) -> None:
        n = "CouplerProbe"
        check_float(n, "delay_s", self.delay_s, 50e-9, 100e-6)
        check_int(n, "shots_per_sequence", self.shots_per_sequence, 1, 10**7)
        check_int(n, "cheap_shots_per_sequence", self.cheap_shots_per_sequence, 1, 10**7)
        check_float(n, "min_zz_hz", self.min_zz_hz, 0.0, 0.5 / self.delay_s)
        check_float(n, "min_contrast", self.min_contrast, 0.0, 1.0)

    @property
    def name(self) -> str:
        return "coupler_probe"

    @property
    def reads(self) -> tuple[str, ...]:
        return ()

    @property
    def writes(self) -> tuple[str, ...]:
        return ("{t}.zz_probe_hz", "{t}.zz_probe_hz_stderr")

    def shots(self, cheap: bool) -> int:
        return 4 * (self.cheap_shots_per_sequence if cheap else self.shots_per_sequence)

    def run(self, device: Any, target: str | tuple[str, ...], params: Mapping[str, float],
            rng: np.random.Generator, *, cheap: bool = False) -> ExperimentResult:
        if isinstance(target, str) or len(target) != 2:
            raise ValueError(f"{self.name}: target={target!r}: allowed a pair ('q1', 'q2')")
        a, b = target
        pa = QubitPulses.from_params(device, a, params, gate=self.gate)
        pb = QubitPulses.from_params(device, b, params, gate=self.gate)
        x90, xb = pa.waveform(0.5), pb.waveform()
        shots = self.cheap_shots_per_sequence if cheap else self.shots_per_sequence
        programs: list[Any] = []
        for control in (None, xb):
            for phi in (0.0, 0.5 * math.pi):
                prog = program(pa).play(x90).delay(self.delay_s).play(x90, phi)
                programs.append(_WithControl(prog, f"drive:{b}", control))
        m = measure(device, programs, shots, params, a)
        p, sd = m.p1, m.sd
        # P(1 | φ) = ½ + ½·C·cos(θ + φ): (x, y) = ½C(cos θ, sin θ) per control.
        xs = np.array([p[0] - 0.5, p[2] - 0.5])
        ys = np.array([0.5 - p[1], 0.5 - p[3]])
        theta = np.arctan2(ys, xs)
        radius = np.hypot(xs, ys)
        # σ of an angle from two independent quadratures of σ_x, σ_y at radius r
        se_theta = np.hypot(np.array([sd[0], sd[2]]) * np.sin(theta), np.array([sd[1], sd[3]]) * np.cos(theta)) \
            / np.maximum(radius, 1e-9)
        dtheta = math.remainder(float(theta[1] - theta[0]), 2 * math.pi)
        zz = dtheta / (2 * math.pi * self.delay_s)
        se = float(np.hypot(*se_theta)) / (2 * math.pi * self.delay_s)
        name = target_name(target)
        contrast = 2 * float(np.min(radius))
        quality = {"zz_probe_hz_stderr": se, "contrast": contrast, "phase_control0_rad": float(theta[0]),
                   "phase_control1_rad": float(theta[1])}
        common: dict[str, Any] = dict(quality=quality, x=[0, 1, 2, 3], x_label=f"{b} in |0⟩ (φ 0, π/2), in |1⟩ "
                                      "(φ 0, π/2)", y_label=f"P(1) of {a}")
        if contrast < self.min_contrast:
            return result(self.name, name, "bad_data", m, symptom=DISTORTED,
                          message=f"{name} static ZZ: Ramsey contrast {contrast:.3f} of {a} < min_contrast "
                                  f"{self.min_contrast}: the phase is not measured", **common)
        values = {f"{name}.zz_probe_hz": zz, f"{name}.zz_probe_hz_stderr": se}
        if abs(zz) + CONFIRM_Z * se < self.min_zz_hz:
            return result(self.name, name, "out_of_spec", m, values=values, symptom=NO_COUPLING,
                          message=f"{name}: no ZZ: |ζ| = {abs(zz) / 1e3:.1f} ± {se / 1e3:.1f} kHz below min_zz_hz "
                                  f"{self.min_zz_hz / 1e3:g} kHz: coupler off", **common)
        return result(self.name, name, "in_spec", m, values=values,
                      message=f"{name} static ZZ {zz / 1e3:+.1f} ± {se / 1e3:.1f} kHz", **common)


__all__ = ["NO_COUPLING", "CouplerProbe"]
