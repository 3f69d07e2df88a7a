"""Fine amplitude: error amplification with an X90 followed by N π pulses.

Two reference points (no pulse, one π pulse) fix the readout offset and contrast. A π pulse of relative amplitude error ε rotates by π(1+ε); after X90 and N of them the
angle is θ = π/2·(1+ε₂) + N·π(1+ε) (ε₂: the X90's own error), so P(1) = b + a·sin²(θ/2)
zigzags about ½ with an amplitude that grows with N·ε. The fit finds ε (a grid over
±``max_error`` first: the zigzag aliases for large N·ε) and writes
``qN.pi_amplitude`` = A/(1+ε).
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
from .pulses import DEFAULT_GATE, QubitPulses, program


@dataclass(frozen=True)
class FineAmplitude(common.QubitEstimate, name="fine_amplitude", title="fine amplitude", estimate="pi_amplitude"):
    """Settings: ``max_pulses`` (N runs 0..max_pulses), ``shots_per_point`` (full form),
    ``cheap_max_pulses``/``cheap_shots_per_point`` (check_data), ``max_error`` (the |ε| the
    grid search covers), ``tolerance`` (|ε| in spec whatever its significance; beyond it ``common.agrees`` decides), ``max_chi2``, ``gate``."""

    max_pulses: int = 24
    shots_per_point: int = 200
    cheap_max_pulses: int = 10
    cheap_shots_per_point: int = 100
    max_error: float = 0.1
    tolerance: float = 0.002
    max_chi2: float = 4.0
    gate: DragGate = DEFAULT_GATE

    def __post_init__(self) -> None:
        n = "FineAmplitude"
        common.check_shot_plan(n, self, 2, 1000, points="max_pulses")
        common.check_float(n, "max_error", self.max_error, 1e-4, 0.5)
        common.check_float(n, "tolerance", self.tolerance, 0.0, 0.5)
        common.check_acceptance(n, self, contrast=False)

    def _plan(self, cheap: bool) -> tuple[int, int]:
        return (self.cheap_max_pulses, self.cheap_shots_per_point) if cheap else (
            self.max_pulses, self.shots_per_point)

    def shots(self, cheap: bool) -> int:
        n, shots = self._plan(cheap)
        return (n + 3) * shots

    def scan(self, device: Any, pulses: QubitPulses, params: Mapping[str, float], cheap: bool) -> ExperimentResult:
        q = pulses.qubit
        x, x90 = pulses.waveform(), pulses.waveform(0.5)
        n_max, shots = self._plan(cheap)
        ns = np.arange(n_max + 1, dtype=np.float64)
        # Two reference points first, no pulse and one π pulse, fix the offset and the
        # contrast: near ε = 0 the zigzag alone stays at ½ and says nothing about them.
        programs = [program(pulses), program(pulses).play(x)]
        for n in range(n_max + 1):
            prog = program(pulses).play(x90)
            for _ in range(n):
                prog.play(x)
            programs.append(prog)
        m = common.measure(device, programs, shots, params, q)

        x90s = np.r_[0.0, 0.0, np.ones(ns.size)]  # X90s in each program
        xs = np.r_[0.0, 1.0, ns]  # π pulses in each program

        def model(_: np.ndarray, p: np.ndarray) -> np.ndarray:
            theta = 0.5 * math.pi * (1.0 + p[1]) * x90s + xs * math.pi * (1.0 + p[0])
            return np.asarray(p[3] + p[2] * np.sin(0.5 * theta) ** 2)

        grid = np.linspace(-self.max_error, self.max_error, 41)
        starts = [[e, 0.0, 0.9, 0.05] for e in grid]
        fit = common.weighted_fit(model, xs, m.p1, m.sd, starts, [-1.5 * self.max_error, -0.5, 0.0, -0.2],
                           [1.5 * self.max_error, 0.5, 1.5, 1.2])
        eps = float(fit.values[0])
        se = float(fit.stderr[0])
        quality = {"chi2_red": fit.chi2_red, "amplitude_error": eps, "amplitude_error_stderr": se,
                   "x90_error": float(fit.values[1]), "contrast": float(fit.values[2])}
        shared: dict[str, Any] = dict(quality=quality, x=xs, fit=fit.curve, x_label="π pulses after X90",
                      extra_data={"references": ["no pulse", "one π pulse"]})
        problem = common.fit_problem(fit, self.max_chi2)
        if problem is None and fit.values[2] < 0.3:
            problem = f"contrast {fit.values[2]:.3f} < 0.3: no response"
        if problem is None and abs(eps) > self.max_error:
            problem = f"amplitude error {eps:+.3g} beyond the ±{self.max_error} the scan resolves"
        if problem is None and not se < 0.02:
            problem = f"amplitude-error uncertainty {se:.3g} too large"
        if problem is not None:
            return self.bad_data(q, m, problem, shared)
        new = pulses.pi_amplitude / (1.0 + eps)
        # ε is measured against the stored amplitude, itself an estimate (common.agrees).
        stored_se = common.stored_stderr(params, f"{q}.pi_amplitude") / abs(pulses.pi_amplitude)
        ok = common.agrees(eps, se, stored_se, self.tolerance)
        return self.estimate(q, m, new, abs(new) * se, ok=ok, shared=shared,
                             message=f"{q} π amplitude {new:.5f} (error {eps * 100:+.3f} ± {se * 100:.3f} %)")
