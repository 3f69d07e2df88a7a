"""Qubit spectroscopy: find the 0–1 frequency from a coarse prior (±20 MHz).

A long weak Gaussian drive (default 200 ns, σ = 50 ns, about a 0.6·π rotation at the prior
π amplitude) is played at drive frequencies stepped by 1 MHz across a window around
``qN.frequency_hz``: ±28 MHz by default, a ±20 MHz prior plus two power-broadened
linewidths, since a line within two widths of the window's edge is refused. P(1) against
the drive frequency is a line of width ≈ 1/(2√2·π·σ) ≈ 2.3 MHz, fitted with a Gaussian.
Writes ``qN.frequency_hz`` (absolute; later pulses apply it relative to the frame,
``pulses``). With the amplitude prior off by up to 2× the rotation lies between 0.3π and
1.2π: a line of height ≥ 0.2 that is flattened at most near 1.2π, never split into the dip
of a 2π rotation, and symmetric about resonance either way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ....envs.drag import DragGate
from ..experiment import ExperimentResult
from . import common
from .common import weighted_fit  # by name: the seam where a flat scan is shown never to be fitted
from .pulses import DEFAULT_GATE, QubitPulses, SequenceBuilder, frame_hz, param

X_LABEL = "drive frequency − prior (Hz)"


@dataclass(frozen=True)
class Spectroscopy(common.PointScan, common.QubitEstimate, name="spectroscopy", title="spectroscopy",
                   estimate="frequency_hz"):
    """Settings (all validated; errors name the field and the allowed range):

    window_hz: half-width of the scanned window around the prior frequency.
    points, shots_per_point: the full form; cheap_points, cheap_shots_per_point: check_data.
    duration_s: the drive pulse (σ = duration/4); rotation: its nominal angle in units of π.
    tolerance_hz: |new − prior| up to which the prior counts as in spec.
    min_contrast: smallest line height that counts as a line; max_chi2: fit acceptance.
    """

    window_hz: float = 28e6
    points: int = 57
    shots_per_point: int = 100
    cheap_points: int = 29
    cheap_shots_per_point: int = 50
    duration_s: float = 200e-9
    rotation: float = 0.6
    tolerance_hz: float = 1e6
    min_contrast: float = 0.1
    max_chi2: float = 4.0
    gate: DragGate = DEFAULT_GATE

    def __post_init__(self) -> None:
        n = "Spectroscopy"
        common.check_float(n, "window_hz", self.window_hz, 1e5, 500e6)
        self._check_scan(n, 7, 1001)
        common.check_float(n, "duration_s", self.duration_s, 10e-9, 100e-6)
        common.check_float(n, "rotation", self.rotation, 0.05, 1.0)
        common.check_float(n, "tolerance_hz", self.tolerance_hz, 0.0, 1e9)
        common.check_acceptance(n, self)

    def scan(self, device: Any, base: QubitPulses, params: Mapping[str, float], cheap: bool) -> ExperimentResult:
        q = base.qubit
        prior = param(params, q, "frequency_hz")
        frame = frame_hz(device, q, params)
        probe = DragGate(duration_s=self.duration_s)
        dt = float(device.dt_s)
        # Equal rotation angle: amplitude scales with the gate's area over the probe's.
        amp = self.rotation * base.pi_amplitude * self.gate.area_s(dt) / probe.area_s(dt)
        if not 0 < abs(amp) <= 1:
            raise ValueError(f"parameter {q}.pi_amplitude = {base.pi_amplitude!r} makes a spectroscopy "
                             f"drive of peak {amp:.3g}: allowed 0 < |u| <= 1")
        points, shots = self._plan(cheap)
        freqs = prior + np.linspace(-self.window_hz, self.window_hz, points)
        programs = []
        for f in freqs:
            pulse = QubitPulses(q, float(f - frame), amp, 0.0, dt, probe)
            programs.append(SequenceBuilder(q, pulse.offset_hz, dt).play(pulse.waveform()))
        m = common.measure(device, programs, shots, params, q)
        x = freqs - prior
        flat = self.flat_scan(q, m, "no line", x=x, x_label=X_LABEL, extra_data={"prior_hz": prior})
        if flat is not None:
            return flat
        width0 = 1.0 / (2.0 * math.sqrt(2.0) * math.pi * probe.duration_s / 4.0)

        def model(xx: np.ndarray, p: np.ndarray) -> np.ndarray:
            return np.asarray(p[3] + p[2] * np.exp(-0.5 * ((xx - p[0]) / p[1]) ** 2))

        lo_b, hi_b = float(np.min(m.p1)), float(np.max(m.p1))
        peak = float(x[int(np.argmax(m.p1))])
        starts = [[peak, width0, hi_b - lo_b, lo_b], [peak, 2 * width0, hi_b - lo_b, lo_b], [0.0, width0, 0.5, lo_b]]
        fit = weighted_fit(model, x, m.p1, m.sd, starts,
                           [-self.window_hz, 0.1 * width0, 0.0, -0.2], [self.window_hz, 20 * width0, 1.5, 1.2])
        x0, w, height = (float(v) for v in fit.values[:3])
        se = float(fit.stderr[0])
        quality = {"chi2_red": fit.chi2_red, "frequency_hz_stderr": se, "linewidth_hz": abs(w),
                   "contrast": height}
        problem = common.fit_problem(fit, self.max_chi2)
        if problem is None and height < self.min_contrast:
            problem = f"no line: height {height:.3f} < min_contrast {self.min_contrast}"
        if problem is None and abs(x0) > self.window_hz - 2.0 * abs(w):
            problem = f"the line at {x0 / 1e6:+.2f} MHz is at the edge of the ±{self.window_hz / 1e6:g} MHz window"
        if problem is None and not se < abs(w):
            problem = f"frequency uncertainty {se:.3g} Hz exceeds the linewidth"
        shared: dict[str, Any] = dict(quality=quality, x=x, fit=fit.curve, x_label=X_LABEL,
                      extra_data={"prior_hz": prior})
        if problem is not None:
            return self.bad_data(q, m, problem, shared, symptom=common.response_symptom(height, self.min_contrast))
        new = prior + x0
        ok = common.agrees(x0, se, common.stored_stderr(params, f"{q}.frequency_hz"), self.tolerance_hz)
        return self.estimate(q, m, new, se, ok=ok, shared=shared,
                             message=f"{q} frequency {new / 1e9:.6f} GHz "
                                     f"({x0 / 1e6:+.3f} ± {se / 1e6:.3f} MHz from prior)")
