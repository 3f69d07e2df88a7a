"""Rabi amplitude: the π-pulse amplitude of the fixed-length gate, from a coarse prior.

The gate pulse (``pulses``: its length, β and frequency from the store) is played at
amplitudes from 0 to ``span``·prior (default 2.5×, so a prior off by up to 2× either way
still shows the first maximum), capped at the line's limit |u| = 1; P(1) is fitted with
b + a·(1 − cos(π·A/A_π))/2. Writes ``qN.pi_amplitude`` = A_π. A π pulse that needs
|u| > 1 is refused as ``out_of_spec`` with the amplitude it would need; no response is
``bad_data``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ....envs.drag import DragGate
from ..experiment import ExperimentResult
from . import common
from .common import weighted_fit  # by name: the seam where a flat scan is shown never to be fitted
from .pulses import DEFAULT_GATE, QubitPulses, program

X_LABEL = "pulse amplitude (full scale)"


@dataclass(frozen=True)
class Rabi(common.PointScan, common.QubitEstimate, name="rabi", title="Rabi", estimate="pi_amplitude"):
    """Settings: ``span`` (largest amplitude over the prior), ``points``/``shots_per_point``
    (full form), ``cheap_points``/``cheap_shots_per_point`` (check_data), ``tolerance``
    (relative |A_π − prior| in spec whatever its significance; beyond it the
    new and stored values are compared by ``common.agrees``), ``min_contrast``, ``max_chi2``, ``gate``."""

    span: float = 2.5
    points: int = 31
    shots_per_point: int = 100
    cheap_points: int = 11
    cheap_shots_per_point: int = 50
    tolerance: float = 0.02
    min_contrast: float = 0.3
    max_chi2: float = 4.0
    gate: DragGate = DEFAULT_GATE

    def __post_init__(self) -> None:
        n = "Rabi"
        common.check_float(n, "span", self.span, 1.05, 10.0)
        self._check_scan(n, 5, 1001)
        common.check_float(n, "tolerance", self.tolerance, 0.0, 1.0)
        common.check_acceptance(n, self)

    def scan(self, device: Any, pulses: QubitPulses, params: Mapping[str, float], cheap: bool) -> ExperimentResult:
        q = pulses.qubit
        prior = abs(pulses.pi_amplitude)
        if not prior > 0:
            raise ValueError(f"parameter {q}.pi_amplitude = {pulses.pi_amplitude!r}: allowed a non-zero prior")
        unit_peak = pulses.peak(1.0) / prior  # |u| per unit of amplitude (DRAG adds quadrature)
        a_max = min(self.span * prior, (1.0 - 1e-9) / unit_peak)
        points, shots = self._plan(cheap)
        amps = np.linspace(0.0, a_max, points)
        programs = [program(pulses).play(pulses.waveform(amplitude=float(a))) for a in amps]
        m = common.measure(device, programs, shots, params, q)
        flat = self.flat_scan(q, m, "no Rabi response", x=amps, x_label=X_LABEL)
        if flat is not None:
            return flat

        def model(x: np.ndarray, p: np.ndarray) -> np.ndarray:
            return np.asarray(p[2] + p[1] * 0.5 * (1.0 - np.cos(np.pi * x / p[0])))

        b0 = float(m.p1[0])
        starts = [[prior * s, float(np.ptp(m.p1)), b0] for s in (0.5, 0.7, 1.0, 1.4, 2.0)]
        fit = weighted_fit(model, amps, m.p1, m.sd, starts, [0.05 * prior, 0.0, -0.2], [20.0 * prior, 1.5, 1.2])
        a_pi, contrast = float(fit.values[0]), float(fit.values[1])
        se = float(fit.stderr[0])
        quality = {"chi2_red": fit.chi2_red, "pi_amplitude_stderr": se, "contrast": contrast}
        shared: dict[str, Any] = dict(quality=quality, x=amps, fit=fit.curve, x_label=X_LABEL)
        problem = common.fit_problem(fit, self.max_chi2)
        if problem is None and contrast < self.min_contrast:
            problem = f"no Rabi response: contrast {contrast:.3f} < min_contrast {self.min_contrast}"
        line_limit = 1.0 / unit_peak
        if problem is None and a_pi > line_limit:
            return common.result(self.name, q, "out_of_spec", m, message=(
                f"{q} π pulse needs amplitude {a_pi:.3f} (peak |u| {a_pi * unit_peak:.3f}): allowed |u| <= 1; "
                "use a longer gate or a stronger line"), **shared)
        if problem is None and a_pi > 0.97 * a_max:
            problem = f"A_π = {a_pi:.3f} at the edge of the scan (up to {a_max:.3f})"
        if problem is None and not se < 0.1 * a_pi:
            problem = f"A_π uncertainty {se:.3g} is over 10 % of A_π"
        if problem is not None:
            return self.bad_data(q, m, problem, shared, symptom=common.response_symptom(contrast, self.min_contrast))
        # The stored A_π is an estimate too (common.agrees): its own error enters the test.
        ok = common.agrees(a_pi - prior, se, common.stored_stderr(params, f"{q}.pi_amplitude"), self.tolerance * prior)
        return self.estimate(q, m, a_pi, se, ok=ok, shared=shared,
                             message=f"{q} π amplitude {a_pi:.4f} ± {se:.4f} (prior {prior:.4f})")
