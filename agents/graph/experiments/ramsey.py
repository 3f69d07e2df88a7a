"""Ramsey: the fine qubit frequency and T2*.

X90 – delay τ – X90, the second pulse's axis advanced by 2π·δ·τ (an artificial detuning δ,
default 1 MHz), so P(1) oscillates at δ + (f_qubit − f_drive) and decays with T2*:
b + a·e^{−τ/T2*}·cos(2π·f·τ + φ). The frequency error is f − δ (the spectroscopy prior is
trusted to well within δ); writes ``qN.frequency_hz`` (prior + error) and ``qN.t2star_s``.
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
from .pulses import DEFAULT_GATE, QubitPulses, param, program

TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class Ramsey(common.QubitEstimate, name="ramsey", title="Ramsey", estimate="frequency_hz"):
    """Settings: ``max_delay_s`` and ``points``/``shots_per_point`` (full form; cheap form
    ``cheap_points``/``cheap_shots_per_point`` over the same delays), ``detuning_hz`` (the
    artificial detuning δ; the sampling must stay below Nyquist of δ + error),
    ``tolerance_hz`` (|error| still in spec), ``max_chi2``, ``gate``, ``require_t2star``
    (the full form fails as bad data when T2* is not resolved within its delays; False for
    a device whose T2* is beyond the delays one can afford to scan, where the node is then a
    frequency calibration and writes T2* only when resolved)."""

    max_delay_s: float = 20e-6
    points: int = 81
    shots_per_point: int = 100
    cheap_points: int = 33
    cheap_max_delay_s: float = 8e-6
    cheap_shots_per_point: int = 50
    detuning_hz: float = 1e6
    tolerance_hz: float = 20e3
    min_contrast: float = 0.2
    max_chi2: float = 4.0
    gate: DragGate = DEFAULT_GATE
    require_t2star: bool = True

    def __post_init__(self) -> None:
        n = "Ramsey"
        common.check_float(n, "max_delay_s", self.max_delay_s, 100e-9, 10e-3)
        common.check_float(n, "cheap_max_delay_s", self.cheap_max_delay_s, 100e-9, 10e-3)
        common.check_shot_plan(n, self, 9, 2001)
        common.check_float(n, "detuning_hz", self.detuning_hz, 1e3, 1e9)
        common.check_float(n, "tolerance_hz", self.tolerance_hz, 0.0, 1e9)
        common.check_acceptance(n, self)
        if not isinstance(self.require_t2star, bool):
            raise ValueError(f"Ramsey.require_t2star={self.require_t2star!r}: allowed true or false")
        for field, delay, pts in (("max_delay_s", self.max_delay_s, self.points),
                                  ("cheap_max_delay_s", self.cheap_max_delay_s, self.cheap_points)):
            step = delay / (pts - 1)
            if not self.detuning_hz * step < 0.35:
                raise ValueError(f"Ramsey.detuning_hz={self.detuning_hz!r}: allowed < 0.35/step = "
                                 f"{0.35 / step:.4g} Hz for {field}={delay} over {pts} points "
                                 "(below Nyquist, with margin for the frequency error)")

    @property
    def writes(self) -> tuple[str, ...]:
        return (*super().writes, "{t}.t2star_s")

    def _plan(self, cheap: bool) -> tuple[int, int, float]:
        if cheap:
            return self.cheap_points, self.cheap_shots_per_point, self.cheap_max_delay_s
        return self.points, self.shots_per_point, self.max_delay_s

    def shots(self, cheap: bool) -> int:
        points, shots, _ = self._plan(cheap)
        return points * shots

    def scan(self, device: Any, pulses: QubitPulses, params: Mapping[str, float], cheap: bool) -> ExperimentResult:
        q = pulses.qubit
        prior = param(params, q, "frequency_hz")
        x90 = pulses.waveform(0.5)
        points, shots, max_delay = self._plan(cheap)
        dt = pulses.dt_s
        delays = np.round(np.linspace(0.0, max_delay, points) / dt) * dt
        programs = [program(pulses).play(x90).delay(float(tau)).play(x90, TWO_PI * self.detuning_hz * float(tau))
                    for tau in delays]
        m = common.measure(device, programs, shots, params, q)
        # A qubit above the drive (error e > 0) lags the drive's frame by 2π·e·τ; the second
        # pulse's axis advanced by 2π·δ·τ then sits 2π(δ + e)τ away: P(1) = ½(1 + cos) at τ = 0
        # (two X90 are one π) and oscillates at δ + e.

        def model(x: np.ndarray, p: np.ndarray) -> np.ndarray:
            return np.asarray(p[4] + p[0] * np.exp(-x / p[2]) * np.cos(TWO_PI * p[1] * x + p[3]))

        y = m.p1 - float(np.mean(m.p1))
        spectrum = np.abs(np.fft.rfft(y, n=8 * points))
        fgrid = np.fft.rfftfreq(8 * points, d=float(delays[1] - delays[0]))
        f0 = float(fgrid[int(np.argmax(spectrum[1:])) + 1])
        amp0 = 0.5 * float(np.ptp(m.p1))
        starts = [[amp0, f, t2, 0.0, float(np.mean(m.p1))] for f in (f0, self.detuning_hz)
                  for t2 in (0.3 * max_delay, max_delay, 3 * max_delay)]
        fmax = 0.5 / float(delays[1] - delays[0])
        fit = common.weighted_fit(model, delays, m.p1, m.sd, starts,
                           [0.0, 0.0, 0.05 * max_delay, -math.pi, -0.2],
                           [1.0, fmax, 1e3 * max_delay, math.pi, 1.2])
        a, f, t2, _, _ = (float(v) for v in fit.values)
        se_f, se_t2 = float(fit.stderr[1]), float(fit.stderr[2])
        error = f - self.detuning_hz
        quality = {"chi2_red": fit.chi2_red, "frequency_hz_stderr": se_f, "t2star_s_stderr": se_t2,
                   "contrast": 2 * a, "frequency_error_hz": error}
        shared: dict[str, Any] = dict(quality=quality, x=delays, fit=fit.curve, x_label="delay (s)",
                      extra_data={"detuning_hz": self.detuning_hz, "prior_hz": prior})
        problem = common.fit_problem(fit, self.max_chi2)
        if problem is None and 2 * a < self.min_contrast:
            problem = f"no Ramsey fringes: contrast {2 * a:.3f} < min_contrast {self.min_contrast}"
        if problem is None and not (0.05 * self.detuning_hz < f < 0.9 * fmax):
            problem = (f"fringe frequency {f:.4g} Hz outside the range the artificial detuning "
                       f"{self.detuning_hz:.4g} Hz can disambiguate")
        if problem is None and not se_f < 0.2 * self.detuning_hz:
            problem = f"frequency uncertainty {se_f:.3g} Hz too large"
        t2_resolved = t2 < 20 * max_delay and se_t2 < t2
        # The check_data form checks the frequency; a T2* far beyond its short delays is
        # then no reason to distrust the fringes (the full form must resolve it).
        if problem is None and not t2_resolved and not cheap and self.require_t2star:
            problem = f"T2* = {t2:.3g} s not resolved within delays up to {max_delay:.3g} s"
        if problem is not None:
            return self.bad_data(q, m, problem, shared, symptom=common.COHERENCE)
        new = prior + error
        ok = common.agrees(error, se_f, common.stored_stderr(params, f"{q}.frequency_hz"), self.tolerance_hz)
        t2_values = {f"{q}.t2star_s": t2} if t2_resolved else {}
        t2_text = f"T2* {t2 * 1e6:.1f} ± {se_t2 * 1e6:.1f} µs" if t2_resolved else "T2* beyond the scan"
        return self.estimate(q, m, new, se_f, ok=ok, values=t2_values, shared=shared,
                             message=f"{q} frequency {new / 1e9:.7f} GHz ({error / 1e3:+.1f} ± {se_f / 1e3:.1f} kHz), "
                                     f"{t2_text}")
