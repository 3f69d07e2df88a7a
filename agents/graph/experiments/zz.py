"""Static ZZ of a coupled pair: a Ramsey on one qubit with its neighbour in |0⟩ and in |1⟩.

The Ramsey of ``experiments.ramsey`` (X90 – τ – X90 with the second pulse's axis advanced
by 2π·δ·τ) on the pair's ``ramsey_on`` qubit, twice: after one pulse length of the
neighbour's line playing zeros (neighbour in |0⟩), and after the neighbour's calibrated π
pulse (neighbour in |1⟩); a barrier after either keeps the two timings identical. Each trace is
fitted to b + a·e^{−τ/T2*}·cos(2π·f·τ + φ); the static ZZ is ζ = f(|1⟩) − f(|0⟩) (the
measured qubit's frequency shift when its neighbour is excited, E11 − E10 − E01 + E00 in
Hz). Writes ``a-b.zz_hz``; ``in_spec`` while |ζ| ≤ ``max_zz_hz``, ``bad_data`` when a
trace shows no fringes or does not fit. Its check_data form is the same with fewer points
and shots.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ....envs.drag import DragGate
from ....envs.protocol import Barrier, Measure, Play, PulseSequence
from ..experiment import ExperimentResult, Status, target_name
from .common import (
    Fit,
    check_acceptance,
    check_float,
    check_int,
    check_shot_plan,
    fit_problem,
    measure,
    weighted_fit,
)
from .pair import QUBIT_READS
from .pulses import DEFAULT_GATE, QubitPulses, SequenceBuilder, param, program

TWO_PI = 2.0 * math.pi


class _WithNeighbour(SequenceBuilder):
    """A Ramsey program on one qubit after its neighbour's π pulse (or as many zeros)."""

    def __init__(self, base: SequenceBuilder, neighbour: str, pi: np.ndarray | None, n_samples: int) -> None:
        super().__init__(base.qubit, base.offset_hz, base.dt_s)
        self.neighbour, self.pi, self.n_samples = neighbour, pi, n_samples

    def sequence(self, name: str = "") -> PulseSequence:
        # With the neighbour in |0⟩ its line plays zeros for the π pulse's length rather than
        # idling: a device that simulates only the modes a sequence touches
        # (spectators="none") must hold the neighbour in both traces, else the |0⟩ trace is
        # the bare qubit and ζ picks up the coupling's dressing shift (~J²/Δ).
        wave = self.pi if self.pi is not None else np.zeros(self.n_samples, dtype=np.complex128)
        head = Play(wave, channel=f"drive:{self.neighbour}")
        return PulseSequence((head, Barrier(), *self._ops, Measure((self.qubit,))), name=name)

    @property
    def duration_s(self) -> float:
        return super().duration_s + self.n_samples * self.dt_s


@dataclass(frozen=True)
class StaticZZ:
    """Settings: ``ramsey_on`` (0: the pair's first qubit is measured, 1: its second),
    ``max_delay_s``, ``points``, ``shots_per_point`` (full form; ``cheap_points``,
    ``cheap_shots_per_point`` over the same delays), ``detuning_hz`` (the artificial
    detuning δ), ``max_zz_hz`` (|ζ| in spec), ``min_contrast``, ``max_chi2``, ``gate``."""

    ramsey_on: int = 0
    max_delay_s: float = 4e-6
    points: int = 41
    shots_per_point: int = 60
    cheap_points: int = 21
    cheap_shots_per_point: int = 40
    detuning_hz: float = 1e6
    max_zz_hz: float = 1e6
    min_contrast: float = 0.2
    max_chi2: float = 4.0
    gate: DragGate = DEFAULT_GATE

    def __post_init__(self) -> None:
        n = "StaticZZ"
        check_int(n, "ramsey_on", self.ramsey_on, 0, 1)
        check_float(n, "max_delay_s", self.max_delay_s, 100e-9, 10e-3)
        check_shot_plan(n, self, 9, 2001)
        check_float(n, "detuning_hz", self.detuning_hz, 1e3, 1e9)
        check_float(n, "max_zz_hz", self.max_zz_hz, 0.0, 1e9)
        check_acceptance(n, self)
        for field, pts in (("points", self.points), ("cheap_points", self.cheap_points)):
            step = self.max_delay_s / (pts - 1)
            if not self.detuning_hz * step < 0.35:
                raise ValueError(f"StaticZZ.detuning_hz={self.detuning_hz!r}: allowed < 0.35/step = "
                                 f"{0.35 / step:.4g} Hz for max_delay_s={self.max_delay_s} over {field}={pts} "
                                 "(below Nyquist, with margin for the ZZ and the frequency error)")

    @property
    def name(self) -> str:
        return "static_zz"

    @property
    def reads(self) -> tuple[str, ...]:
        return QUBIT_READS

    @property
    def writes(self) -> tuple[str, ...]:
        return ("{t}.zz_hz",)

    def shots(self, cheap: bool) -> int:
        return 2 * (self.cheap_points * self.cheap_shots_per_point if cheap else self.points * self.shots_per_point)

    def _fit(self, delays: np.ndarray, p1: np.ndarray, sd: np.ndarray) -> Fit:
        def model(x: np.ndarray, p: np.ndarray) -> np.ndarray:
            return np.asarray(p[4] + p[0] * np.exp(-x / p[2]) * np.cos(TWO_PI * p[1] * x + p[3]))

        step = float(delays[1] - delays[0])
        y = p1 - float(np.mean(p1))
        spectrum = np.abs(np.fft.rfft(y, n=8 * delays.size))
        f0 = float(np.fft.rfftfreq(8 * delays.size, d=step)[int(np.argmax(spectrum[1:])) + 1])
        amp0 = 0.5 * float(np.ptp(p1))
        t_max = float(delays[-1])
        starts = [[amp0, f, t2, 0.0, float(np.mean(p1))] for f in (f0, self.detuning_hz) for t2 in (t_max, 5 * t_max)]
        return weighted_fit(model, delays, p1, sd, starts, [0.0, 0.0, 0.05 * t_max, -math.pi, -0.2],
                            [1.0, 0.5 / step, 1e3 * t_max, math.pi, 1.2])

    def run(self, device: Any, target: str | tuple[str, ...], params: Mapping[str, float],
            rng: np.random.Generator, *, cheap: bool = False) -> ExperimentResult:
        if not (isinstance(target, tuple) and len(target) == 2):
            raise ValueError(f"{self.name}: target={target!r}: allowed a pair of qubit names ('q0', 'q1')")
        q, nb = (target[0], target[1]) if self.ramsey_on == 0 else (target[1], target[0])
        t = target_name(target)
        pulses = QubitPulses.from_params(device, q, params, gate=self.gate)
        nb_beta = param(params, nb, "drag_beta") if f"{nb}.drag_beta" in params else 0.0
        nb_pulses = QubitPulses(nb, 0.0, param(params, nb, "pi_amplitude"), nb_beta, pulses.dt_s, self.gate)
        pi = nb_pulses.waveform()
        x90 = pulses.waveform(0.5)
        points, shots = (self.cheap_points, self.cheap_shots_per_point) if cheap else (self.points,
                                                                                       self.shots_per_point)
        dt = pulses.dt_s
        delays = np.round(np.linspace(0.0, self.max_delay_s, points) / dt) * dt
        fits, ms = [], []
        for excited in (False, True):
            progs = []
            for tau in delays:
                base = program(pulses)
                prog = _WithNeighbour(base, nb, pi if excited else None, pi.size)
                prog.play(x90).delay(float(tau)).play(x90, TWO_PI * self.detuning_hz * float(tau))
                progs.append(prog)
            m = measure(device, progs, shots, params, q)
            ms.append(m)
            fits.append(self._fit(delays, m.p1, m.sd))
        f0, f1 = (float(f.values[1]) for f in fits)
        se0, se1 = (float(f.stderr[1]) for f in fits)
        zz = f1 - f0
        se = math.hypot(se0, se1)
        quality = {"zz_hz_stderr": se, "frequency_neighbour_0_hz": f0, "frequency_neighbour_1_hz": f1,
                   "chi2_red_0": fits[0].chi2_red, "chi2_red_1": fits[1].chi2_red}
        data = {"kind": "curve", "x": [float(x) for x in delays], "y": [float(v) for v in ms[0].p1],
                "y_err": [float(v) for v in ms[0].sd], "fit": [float(v) for v in fits[0].curve],
                "x_label": "delay (s)", "y_label": f"P(1) of {q}, {nb} in |0⟩",
                "y_neighbour_1": [float(v) for v in ms[1].p1], "fit_neighbour_1": [float(v) for v in fits[1].curve],
                "measured": q, "neighbour": nb}
        shots_used = ms[0].shots + ms[1].shots
        time_s = ms[0].device_time_s + ms[1].device_time_s
        problem = None
        for k, f in enumerate(fits):
            problem = problem or fit_problem(f, self.max_chi2)
            contrast = 2 * float(f.values[0])
            if problem is None and contrast < self.min_contrast:
                problem = f"no Ramsey fringes with {nb} in |{k}⟩: contrast {contrast:.3f} < {self.min_contrast}"
        if problem is None and not se < max(0.2 * self.detuning_hz, 1.0):
            problem = f"ZZ uncertainty {se:.3g} Hz too large"
        if problem is not None:
            return ExperimentResult(self.name, target, "bad_data", {}, quality, shots_used, time_s, data,
                                    f"{t} static ZZ: {problem}")
        status: Status = "in_spec" if abs(zz) <= self.max_zz_hz else "out_of_spec"
        return ExperimentResult(self.name, target, status, {f"{t}.zz_hz": zz}, quality, shots_used, time_s, data,
                                f"{t} static ZZ {zz / 1e3:+.1f} ± {se / 1e3:.1f} kHz (Ramsey on {q}; max "
                                f"{self.max_zz_hz / 1e3:g} kHz)")


__all__ = ["StaticZZ"]
