"""Single-qubit Clifford randomized benchmarking of the calibrated pulses, with a verdict
against the coherence limit of the *measured* T1 and T2*.

Random sequences of m Cliffords plus their inverse, compiled by ``envs.rb`` (X, X90 and
free frame changes), are played with the qubit's pulses (``pulses.SequenceBuilder``), each twice:
ending in |0⟩, and with one more π pulse ending in |1⟩. The difference of their survivals
P(0) is A·p^m with no asymptote to fit: the readout's offset and the depolarised
population cancel exactly (the two-recovery-state form of RB), so no readout calibration
is needed. The error per gate is r = (1 − p)/2 / ``gates_per_clifford``. The coherence
limit is ``envs.physics.metrics.coherence_limit(T_gate, T1, T2*)`` from the stored
``qN.t1_s`` and ``qN.t2star_s`` (T2* ≤ T2, so the limit is if anything generous): the
result is ``in_spec`` when r − 2σ ≤ ``limit_factor``·limit, else ``out_of_spec`` with no
values (so the scheduler diagnoses the chain). Writes ``qN.gate_error`` when in spec
(uncertainty in ``quality["gate_error_stderr"]``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ....envs.drag import DragGate
from ....envs.physics.metrics import coherence_limit
from ....envs.rb import gates_per_clifford, sequence_steps
from ..experiment import ExperimentResult, Status
from . import common
from .pulses import DEFAULT_GATE, QubitPulses, param, program


@dataclass(frozen=True)
class RB1Q:
    """Settings: ``lengths`` (Clifford counts), ``sequences_per_length``,
    ``shots_per_sequence`` (full form); ``cheap_lengths``, ``cheap_sequences_per_length``,
    ``cheap_shots_per_sequence`` (check_data); ``limit_factor`` (the verdict's allowance
    over the coherence limit), ``max_chi2``, ``gate``."""

    lengths: tuple[int, ...] = (1, 100, 300, 1000, 2500)
    sequences_per_length: int = 5
    shots_per_sequence: int = 100
    cheap_lengths: tuple[int, ...] = (1, 1000)
    cheap_sequences_per_length: int = 2
    cheap_shots_per_sequence: int = 100
    limit_factor: float = 1.1
    max_chi2: float = 6.0
    gate: DragGate = DEFAULT_GATE

    def __post_init__(self) -> None:
        n = "RB1Q"
        for name in ("lengths", "cheap_lengths"):
            v = getattr(self, name)
            if not (isinstance(v, tuple) and len(v) >= 2 and len(set(v)) == len(v) and all(
                    isinstance(m, int) and not isinstance(m, bool) and 0 <= m <= 10000 for m in v)):
                raise ValueError(f"{n}.{name}={v!r}: allowed a tuple of at least two distinct integers in [0, 10000]")
        common.check_shot_plan(n, self, 1, 1000, points="sequences_per_length", shots="shots_per_sequence")
        common.check_float(n, "limit_factor", self.limit_factor, 1.0, 1e3)
        common.check_acceptance(n, self, contrast=False)

    @property
    def name(self) -> str:
        return "rb1q"

    @property
    def reads(self) -> tuple[str, ...]:
        return ("{t}.frequency_hz", "{t}.pi_amplitude", "{t}.t1_s", "{t}.t2star_s")

    @property
    def writes(self) -> tuple[str, ...]:
        return ("{t}.gate_error",)

    def _plan(self, cheap: bool) -> tuple[tuple[int, ...], int, int]:
        if cheap:
            return self.cheap_lengths, self.cheap_sequences_per_length, self.cheap_shots_per_sequence
        return self.lengths, self.sequences_per_length, self.shots_per_sequence

    def shots(self, cheap: bool) -> int:
        lengths, k, shots = self._plan(cheap)
        return 2 * len(lengths) * k * shots

    def run(self, device: Any, target: str | tuple[str, ...], params: Mapping[str, float],
            rng: np.random.Generator, *, cheap: bool = False) -> ExperimentResult:
        q = common.check_target(self.name, target, device)
        t1, t2 = param(params, q, "t1_s"), param(params, q, "t2star_s")
        if not (t1 > 0 and t2 > 0):
            raise ValueError(f"parameters {q}.t1_s = {t1!r}, {q}.t2star_s = {t2!r}: allowed > 0 s")
        pulses = QubitPulses.from_params(device, q, params, gate=self.gate)
        x, x90 = pulses.waveform(), pulses.waveform(0.5)
        lengths, k, shots = self._plan(cheap)
        programs = []
        for length in lengths:
            for _ in range(k):
                steps, _ = sequence_steps(rng.integers(0, 24, length).tolist())
                for extra in ((), (("X", 0.0),)):  # recover to |0⟩, then to |1⟩
                    prog = program(pulses)
                    for kind, phi in (*steps, *extra):
                        prog.play(x if kind == "X" else x90, phi)
                    programs.append(prog)
        # The difference of the two recoveries cancels the readout exactly, so the counts are
        # not readout-corrected: a stored confusion matrix that is not the counts' own (the
        # IQ classifier's, on a device whose counts come from another readout) would only
        # rescale A beyond its fit bound, never change p.
        raw = {k: v for k, v in params.items() if k not in (f"{q}.readout_p01", f"{q}.readout_p10")}
        m_all = common.measure(device, programs, shots, raw, q)
        survival = (1.0 - m_all.p1).reshape(len(lengths), k, 2)
        diff = survival[:, :, 0] - survival[:, :, 1]
        mean = diff.mean(axis=1)
        # The spread of random sequences adds to the shot noise: the standard error of each
        # length's mean, floored by the shot noise of all its shots.
        shot_var = (np.maximum(survival * (1 - survival), 0.25 / shots) / shots).sum(axis=2).mean(axis=1) / k
        spread = diff.std(axis=1, ddof=1) / math.sqrt(k) if k > 1 else np.zeros(len(lengths))
        sd = np.maximum(spread, np.sqrt(shot_var))
        m = common.ScanMeasurement(mean, sd, m_all.shots, m_all.device_time_s)
        ms = np.asarray(lengths, dtype=np.float64)

        def model(xx: np.ndarray, p: np.ndarray) -> np.ndarray:
            return np.asarray(p[0] * p[1] ** xx)

        starts = [[0.9, pp] for pp in (0.999, 0.99, 0.95)]
        fit = common.weighted_fit(model, ms, mean, sd, starts, [0.0, 0.5], [1.2, 1.0])
        p, se_p = float(fit.values[1]), float(fit.stderr[1])
        g = gates_per_clifford()
        r = (1.0 - p) / 2.0 / g
        se_r = se_p / 2.0 / g
        limit = float(coherence_limit(pulses.duration_s, t1, min(t2, 2 * t1)))
        quality = {"chi2_red": fit.chi2_red, "gate_error_stderr": se_r, "coherence_limit": limit,
                   "error_over_limit": r / limit, "error_per_clifford": r * g}
        shared: dict[str, Any] = dict(quality=quality, x=ms, fit=fit.curve, x_label="Cliffords m",
                                      y_label="P(0 | recover to 0) − P(0 | recover to 1)",
                                      extra_data={"survival_per_sequence": survival.tolist()})
        problem = common.fit_problem(fit, self.max_chi2)
        if problem is None and fit.values[0] < 0.4:
            problem = f"decay amplitude {fit.values[0]:.3f} < 0.4: no signal"
        if problem is None and not se_r < max(r, limit):
            problem = f"gate error {r:.3g} ± {se_r:.2g} not resolved by lengths up to {max(lengths)}"
        if problem is not None:
            return common.result(self.name, q, "bad_data", m, message=f"{q} RB: {problem}", **shared)
        status: Status = "in_spec" if r - 2 * se_r <= self.limit_factor * limit else "out_of_spec"
        # A gate error over the limit is a verdict on the chain, not a moved value to record
        # and confirm: without values the scheduler diagnoses the dependencies (T1, T2*,
        # the pulse) before the retry. The error stays in quality and the message.
        return common.result(self.name, q, status, m, values={f"{q}.gate_error": r} if status == "in_spec" else None,
                      message=(f"{q} 1Q gate error {r:.3g} ± {se_r:.2g} = {r / limit:.2f}× the coherence limit "
                               f"{limit:.3g} of T1 {t1 * 1e6:.1f} µs, T2* {t2 * 1e6:.1f} µs"), **shared)
