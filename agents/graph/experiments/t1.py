"""T1: π pulse – delay – measure; P(1) = b + a·e^{−τ/T1}. Writes ``qN.t1_s``.

The delays run to ``max_delay_s`` (default 150 µs, 3–5 T1 of the presets); a decay not
resolved within them (T1 beyond the scan, no contrast) is ``bad_data``. A T1 significantly
below ``min_t1_s`` (default 5 µs: a sixth of the presets' design T1, below what their
drift's TLS telegraph reaches) is ``out_of_spec`` with the symptom ``coherence``: a T1
collapse is a fault of the qubit to report, not a value to calibrate the chain with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ....envs.drag import DragGate
from ..experiment import ExperimentResult
from . import common
from .pulses import DEFAULT_GATE, QubitPulses, program


@dataclass(frozen=True)
class T1(common.PointScan, common.QubitEstimate, name="t1", title="T1", estimate="t1_s"):
    """Settings: ``max_delay_s``, ``points``/``shots_per_point`` (full form),
    ``cheap_points``/``cheap_shots_per_point`` (check_data), ``tolerance`` (relative change
    of T1 from the stored value in spec whatever its significance; beyond it
    ``common.agrees`` decides), ``min_t1_s`` (a T1 significantly below it is
    ``out_of_spec``: a T1 collapse), ``min_contrast``, ``max_chi2``, ``gate``."""

    max_delay_s: float = 150e-6
    points: int = 31
    shots_per_point: int = 100
    cheap_points: int = 16
    cheap_shots_per_point: int = 50
    tolerance: float = 0.3
    min_t1_s: float = 5e-6
    min_contrast: float = 0.3
    max_chi2: float = 4.0
    gate: DragGate = DEFAULT_GATE

    def __post_init__(self) -> None:
        n = "T1"
        common.check_float(n, "max_delay_s", self.max_delay_s, 100e-9, 1.0)
        self._check_scan(n, 5, 2001)
        common.check_float(n, "tolerance", self.tolerance, 0.0, 10.0)
        common.check_float(n, "min_t1_s", self.min_t1_s, 0.0, 1.0)
        common.check_acceptance(n, self)

    def scan(self, device: Any, pulses: QubitPulses, params: Mapping[str, float], cheap: bool) -> ExperimentResult:
        q = pulses.qubit
        x = pulses.waveform()
        points, shots = self._plan(cheap)
        dt = pulses.dt_s
        delays = np.round(np.linspace(0.0, self.max_delay_s, points) / dt) * dt
        m = common.measure(device, [program(pulses).play(x).delay(float(t)) for t in delays], shots, params, q)

        def model(xx: np.ndarray, p: np.ndarray) -> np.ndarray:
            return np.asarray(p[2] + p[0] * np.exp(-xx / p[1]))

        b0 = float(m.p1[-1])
        starts = [[float(m.p1[0]) - b0, s * self.max_delay_s, b0] for s in (0.1, 0.3, 1.0)]
        fit = common.weighted_fit(model, delays, m.p1, m.sd, starts, [0.0, 0.005 * self.max_delay_s, -0.2],
                           [1.5, 100 * self.max_delay_s, 1.2])
        a, t1, _ = (float(v) for v in fit.values)
        se = float(fit.stderr[1])
        quality = {"chi2_red": fit.chi2_red, "t1_s_stderr": se, "contrast": a}
        shared: dict[str, Any] = dict(quality=quality, x=delays, fit=fit.curve, x_label="delay (s)")
        problem = common.fit_problem(fit, self.max_chi2)
        if problem is None and a < self.min_contrast:
            problem = f"no decay signal: contrast {a:.3f} < min_contrast {self.min_contrast}"
        if problem is None and not (t1 < self.max_delay_s and se < 0.3 * t1):
            problem = f"T1 = {t1:.3g} ± {se:.2g} s not resolved within delays up to {self.max_delay_s:.3g} s"
        if problem is None and not t1 > 1.5 * (delays[1] - delays[0]):
            problem = f"T1 = {t1:.3g} s shorter than the delay step allows to resolve"
        if problem is not None:
            symptom = "" if a >= self.min_contrast and fit.chi2_red <= self.max_chi2 and t1 >= self.max_delay_s \
                else common.COHERENCE
            return self.bad_data(q, m, problem, shared, symptom=symptom)
        if t1 + common.CONFIRM_Z * se < self.min_t1_s:
            # A T1 this short is a fault of the qubit (a TLS, a lossy defect), not a value to
            # calibrate with: recorded, and out of spec however often it is confirmed.
            return self.estimate(q, m, t1, se, ok=False, symptom=common.COHERENCE, shared=shared,
                                 message=f"{q} T1 {t1 * 1e6:.2f} ± {se * 1e6:.2f} µs below min_t1_s "
                                         f"{self.min_t1_s * 1e6:g} µs: T1 collapse")
        old = params.get(f"{q}.t1_s")
        se_old = common.stored_stderr(params, f"{q}.t1_s")
        ok = old is not None and common.agrees(t1 - float(old), se, se_old, self.tolerance * float(old))
        message = f"{q} T1 {t1 * 1e6:.1f} ± {se * 1e6:.1f} µs"
        symptom = ""
        if not ok and old is not None and se_old > 0 and t1 < float(old):
            # Below a T1 this run measured (a prior carries no stderr and says nothing about
            # the device's past): a fluctuating defect (a TLS moving into resonance) or a
            # lossy one, which fault isolation names if the chain still fails after it.
            symptom = common.T1_DROP
            message += f", down from {float(old) * 1e6:.1f} ± {se_old * 1e6:.1f} µs measured before: T1 drop"
        return self.estimate(q, m, t1, se, ok=ok, message=message, symptom=symptom, shared=shared)
