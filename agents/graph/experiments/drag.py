"""DRAG: the β that cancels the gate's phase error.

Two textbook forms, over a sweep of β around the stored ``qN.drag_beta`` (0 when absent):

- ``method="pair"`` (coarse, default): Reed's X·Y90 vs Y·X90. Ideal pulses leave both at
  P(1) = ½; a phase error ∝ (β − β*) moves them apart in opposite directions, so their
  difference is a line through zero at β*. Wide capture range (±1.5 ns), but the
  crossing also moves with an amplitude error: run it after a fine amplitude.
- ``method="train"`` (fine): the pseudo-identity train (X·X̄)^n. Amplitude errors cancel
  within each pair, the phase error does not, so P(1) = b + a·sin²(π·n·(β − β*)/T) has
  its minimum at β*, with n times the sensitivity; the sweep must stay within half a
  period (±0.2 ns for n = 6 on the presets), so it refines a pair result.

Writes ``qN.drag_beta`` = β* (seconds: Q = β·dI/dt). A crossing or minimum outside the
sweep, or no β dependence, is ``bad_data``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ....envs.drag import DragGate
from ..experiment import ExperimentResult
from . import common
from .pulses import DEFAULT_GATE, QubitPulses, program


@dataclass(frozen=True)
class DragCalibration(common.PointScan, common.QubitEstimate, title="DRAG", estimate="drag_beta"):
    """Settings: ``span_s`` (half-width of the β sweep around the stored β),
    ``points``/``shots_per_point`` (full form; two sequences per point),
    ``cheap_points``/``cheap_shots_per_point``, ``tolerance_s`` (|β* − stored| in spec
    whatever its significance; beyond it ``common.agrees`` decides), ``min_slope`` (|d(P_A − P_B)/dβ| per ns below which β is not determined),
    ``max_chi2``, ``gate``; ``method`` ("pair" or "train") and ``repetitions`` (n of the
    train; the train's ``min_slope`` is its smallest fitted a·(n/T)² curvature scale)."""

    method: Literal["pair", "train"] = "pair"
    repetitions: int = 6
    span_s: float = 1.5e-9
    points: int = 21
    shots_per_point: int = 100
    cheap_points: int = 5
    cheap_shots_per_point: int = 100
    tolerance_s: float = 0.05e-9
    min_slope: float = 0.02
    max_chi2: float = 4.0
    gate: DragGate = DEFAULT_GATE

    def __post_init__(self) -> None:
        n = "DragCalibration"
        if self.method not in ("pair", "train"):
            raise ValueError(f"DragCalibration.method={self.method!r}: allowed 'pair' or 'train'")
        common.check_int(n, "repetitions", self.repetitions, 1, 200)
        common.check_float(n, "span_s", self.span_s, 1e-12, 1e-6)
        self._check_scan(n, 3, 1001)
        common.check_float(n, "tolerance_s", self.tolerance_s, 0.0, 1e-6)
        common.check_float(n, "min_slope", self.min_slope, 0.0, 10.0)
        common.check_acceptance(n, self, contrast=False)

    @classmethod
    def train(cls, **settings: Any) -> DragCalibration:
        """The fine form: the (X·X̄)^6 train over ±0.2 ns with 200 shots per point."""
        defaults: dict[str, Any] = {"method": "train", "span_s": 0.2e-9, "shots_per_point": 200}
        return cls(**{**defaults, **settings})

    @property
    def name(self) -> str:
        return "drag" if self.method == "pair" else "drag_train"

    def shots(self, cheap: bool) -> int:
        # The pair form measures two sequences per point.
        points, shots = self._plan(cheap)
        return (2 if self.method == "pair" else 1) * points * shots

    def scan(self, device: Any, base: QubitPulses, params: Mapping[str, float], cheap: bool) -> ExperimentResult:
        q = base.qubit
        points, shots = self._plan(cheap)
        betas = base.drag_beta_s + np.linspace(-self.span_s, self.span_s, points)
        programs = []
        for b in betas:
            p = QubitPulses(q, base.offset_hz, base.pi_amplitude, float(b), base.dt_s, base.gate)
            if p.peak(1.0) > 1.0:
                raise ValueError(f"DragCalibration.span_s={self.span_s!r}: β = {b:.3g} s makes a pulse of peak "
                                 f"{p.peak(1.0):.3f}: allowed |u| <= 1 (narrow the sweep)")
            x, x90 = p.waveform(), p.waveform(0.5)
            if self.method == "train":
                prog = program(p)
                for _ in range(self.repetitions):
                    prog.play(x).play(x, math.pi)  # X, then X̄
                programs.append(prog)
                continue
            programs.append(program(p).play(x).play(x90, math.pi / 2))  # X, then Y90
            programs.append(program(p).play(x, math.pi / 2).play(x90))  # Y, then X90
        if self.method == "train":
            return self._train(q, base.drag_beta_s, common.stored_stderr(params, f"{q}.drag_beta"), betas,
                               common.measure(device, programs, shots, params, q))
        m_all = common.measure(device, programs, shots, params, q)
        pa, pb = m_all.p1[0::2], m_all.p1[1::2]
        diff = pa - pb
        sd = np.hypot(m_all.sd[0::2], m_all.sd[1::2])
        m = common.ScanMeasurement(diff, sd, m_all.shots, m_all.device_time_s)
        xs = (betas - base.drag_beta_s) / 1e-9  # ns about the stored β, for a well-scaled fit

        def model(x: np.ndarray, p: np.ndarray) -> np.ndarray:
            return np.asarray(p[0] * (x - p[1]))

        fit = common.weighted_fit(model, xs, diff, sd, [[-0.2, 0.0], [0.2, 0.0]], [-10.0, -1e3], [10.0, 1e3])
        slope, zero = float(fit.values[0]), float(fit.values[1])
        beta = base.drag_beta_s + zero * 1e-9
        se = float(fit.stderr[1]) * 1e-9
        quality = {"chi2_red": fit.chi2_red, "drag_beta_stderr": se, "slope_per_ns": slope}
        shared: dict[str, Any] = dict(quality=quality, x=betas, fit=fit.curve, x_label="DRAG β (s)",
                      y_label="P(1 | X·Y90) − P(1 | Y·X90)",
                      extra_data={"y_a": [float(v) for v in pa], "y_b": [float(v) for v in pb]})
        problem = common.fit_problem(fit, self.max_chi2)
        if problem is None and abs(slope) < self.min_slope:
            problem = f"no β dependence: slope {slope:.3g} per ns < min_slope {self.min_slope}"
        if problem is None and abs(zero) > self.span_s / 1e-9:
            problem = f"β* = {beta:.3g} s outside the sweep ±{self.span_s:.2g} s around {base.drag_beta_s:.3g} s"
        if problem is None and not se < 0.25 * self.span_s:
            problem = f"β uncertainty {se:.3g} s too large"
        if problem is not None:
            return self.bad_data(q, m, problem, shared)
        stored_se = common.stored_stderr(params, f"{q}.drag_beta")
        ok = common.agrees(beta - base.drag_beta_s, se, stored_se, self.tolerance_s)
        return self.estimate(q, m, beta, se, ok=ok, shared=shared,
                             message=f"{q} DRAG β {beta * 1e9:.4f} ± {se * 1e9:.4f} ns")

    def _train(self, q: str, stored: float, stored_se: float, betas: np.ndarray,
               m: common.ScanMeasurement) -> ExperimentResult:
        xs = (betas - stored) / 1e-9  # ns about the stored β
        n = self.repetitions

        def model(x: np.ndarray, p: np.ndarray) -> np.ndarray:
            return np.asarray(p[3] + p[2] * np.sin(math.pi * n * (x - p[0]) / p[1]) ** 2)

        span = self.span_s / 1e-9
        x_min = float(xs[int(np.argmin(m.p1))])
        lo_y = float(np.min(m.p1))
        starts = [[x0, period, 1.0, lo_y] for x0 in (x_min, 0.0) for period in (3.0, 6.0, 12.0)]
        fit = common.weighted_fit(model, xs, m.p1, m.sd, starts, [-2 * span, 0.5, 0.0, -0.2],
                                  [2 * span, 100.0, 1.5, 1.2])
        zero, period, a = float(fit.values[0]), float(fit.values[1]), float(fit.values[2])
        beta = stored + zero * 1e-9
        se = float(fit.stderr[0]) * 1e-9
        curvature = a * (math.pi * n / period) ** 2  # P(1) per ns² about the minimum
        quality = {"chi2_red": fit.chi2_red, "drag_beta_stderr": se, "curvature_per_ns2": curvature}
        shared: dict[str, Any] = dict(quality=quality, x=betas, fit=fit.curve, x_label="DRAG β (s)",
                                      y_label=f"P(1) after (X·X̄)^{n}")
        problem = common.fit_problem(fit, self.max_chi2)
        if problem is None and curvature < self.min_slope:
            problem = f"no β dependence: curvature {curvature:.3g} per ns² < {self.min_slope}"
        if problem is None and abs(zero) > 0.9 * span:
            problem = f"β* = {beta:.3g} s at the edge of the sweep ±{self.span_s:.2g} s around {stored:.3g} s"
        if problem is None and not se < 0.25 * self.span_s:
            problem = f"β uncertainty {se:.3g} s too large"
        if problem is not None:
            return self.bad_data(q, m, problem, shared)
        ok = common.agrees(beta - stored, se, stored_se, self.tolerance_s)
        return self.estimate(q, m, beta, se, ok=ok, shared=shared,
                             message=f"{q} DRAG β {beta * 1e9:.4f} ± {se * 1e9:.4f} ns (pseudo-identity train)")
