"""Two-qubit interleaved RB of the calibrated CZ: the check of a pair's chain, with its verdict.

``envs.rb2q.run_irb`` on the pair through ``pair.PairDevice``: random two-qubit Cliffords
compiled to the pair's calibrated single-qubit pulses, virtual Zs and the stored CZ (the
flux pulse of ``a-b.cz_amplitude_phi0`` × ``a-b.cz_length_s`` and its two frame updates),
reference and interleaved sequences in one device call. The verdict is
``envs.rb2q.verdict_of`` against the pair's two-qubit coherence limit for the gate's
duration (flux pulse and its settling samples), computed from the *measured* T1 and T2* of
both qubits (``qN.t1_s``, ``qN.t2star_s``; T2* ≤ T2, so the limit is if anything
generous): ``calibrated`` (the 90 % upper bound of the interleaved error within
``threshold`` × the limit) is ``in_spec`` and writes ``a-b.cz_gate_error``; ``failed`` is
``out_of_spec`` with no values (the scheduler then diagnoses the CZ nodes it depends on),
or ``bad_data`` when the shots cannot decide or the reference has decayed. Its check_data
form is the same experiment with ``cheap_n_random`` sequences per length.

An undecided result (the 90 % interval straddles ``threshold`` × the limit) carries the
symptom ``undecided``, and ``escalate`` gives the node's retry more random sequences: as
many as the interval needs to clear the threshold at the estimate seen (the interval's
half-width scales as 1/√n_random), at least twice as many, at most ``max_n_random`` (the
node's shot cap). A retry that still cannot decide says so, with its interval and shots.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ....envs import cz_calibration_core as core
from ....envs import rb2q
from ....envs.drag import DragGate
from ....envs.protocol import Barrier, Play, PulseSequence, VirtualZ
from ....envs.verification import Reason, StatedCoherence
from ..experiment import ExperimentResult, Status, target_name
from .common import UNDECIDED, check_float, check_int, repetition_time_s
from .pair import QUBIT_READS, PairDevice, cz_roles, is_tunable_pair
from .pulses import DEFAULT_GATE, param


@dataclass(frozen=True)
class RB2Q:
    """Settings: ``lengths`` (Clifford counts), ``n_random`` (sequences per length; the
    check_data form ``cheap_n_random``), ``shots_per_sequence``, ``threshold`` (the
    verdict's allowance over the coherence limit), ``seed`` of the random sequences
    (None: the node's generator), ``gate`` (the single-qubit pulse shape),
    ``max_n_random`` (the most sequences per length a retry of an undecided result may
    run: the node's shot cap, 2·len(lengths)·max_n_random·shots_per_sequence)."""

    # Reference decays by ~1 % per Clifford on the presets: the lengths span 1/(1 − p).
    lengths: tuple[int, ...] = (1, 8, 24, 64, 128)
    n_random: int = 20
    cheap_n_random: int = 4
    # 40,000 shots: σ ≈ 0.6e-3 on a CZ near 2.6e-3, enough to decide at 2× the limit
    # for an error up to ~1.6× (the 90 % bound is the error + 1.645σ).
    shots_per_sequence: int = 200
    threshold: float = 2.0
    seed: int | None = None
    gate: DragGate = DEFAULT_GATE
    # 3× the sequences: the interval 0.58× as wide, 120,000 shots (24 s at 200 µs).
    max_n_random: int = 60

    def __post_init__(self) -> None:
        n = "RB2Q"
        ls = tuple(self.lengths)
        if not (len(ls) >= 3 and all(isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= 500 for m in ls)
                and list(ls) == sorted(set(ls))):
            raise ValueError(f"{n}.lengths={self.lengths!r}: allowed at least three increasing integers in [1, 500]")
        object.__setattr__(self, "lengths", ls)
        check_int(n, "n_random", self.n_random, 2, 1000)
        check_int(n, "cheap_n_random", self.cheap_n_random, 2, 1000)
        check_int(n, "shots_per_sequence", self.shots_per_sequence, 1, 10**6)
        check_float(n, "threshold", self.threshold, 1.0 + 1e-9, 1e3)
        check_int(n, "max_n_random", self.max_n_random, self.n_random, 1000)
        if self.seed is not None:
            check_int(n, "seed", self.seed, 0, 2**63 - 1)

    def applies_to(self, target: tuple[str, ...], channels: Sequence[str]) -> bool:
        """Only pairs with a flux line get a flux CZ (the graph builder asks)."""
        return is_tunable_pair(target, channels)

    @property
    def name(self) -> str:
        return "rb2q"

    @property
    def reads(self) -> tuple[str, ...]:
        return (*QUBIT_READS, "{a}.t1_s", "{a}.t2star_s", "{b}.t1_s", "{b}.t2star_s", "{t}.cz_amplitude_phi0",
                "{t}.cz_length_s", "{t}.cz_phase_a_rad", "{t}.cz_phase_b_rad")

    @property
    def writes(self) -> tuple[str, ...]:
        return ("{t}.cz_gate_error",)

    def shots(self, cheap: bool) -> int:
        return 2 * len(self.lengths) * (self.cheap_n_random if cheap else self.n_random) * self.shots_per_sequence

    def escalate(self, previous: ExperimentResult) -> RB2Q | None:
        """The settings of a retry after ``previous`` (module docstring): more random
        sequences when it could not decide, None when more would not help (it decided, or
        failed for another reason) or the plan is at ``max_n_random``."""
        q = previous.quality
        if (previous.data or {}).get("symptom") != UNDECIDED or self.n_random >= self.max_n_random:
            return None
        bar = self.threshold * float(q["coherence_limit"])
        distance = abs(float(q["gate_error"]) - bar)
        half_width = 1.645 * float(q["gate_error_sigma"])
        need = self.n_random * (half_width / distance) ** 2 if distance > 0 else math.inf
        # 20 % beyond what the estimate seen asks for: the retry's estimate moves too.
        n = min(self.max_n_random, max(2 * self.n_random, math.ceil(1.2 * need) if math.isfinite(need) else
                                       self.max_n_random))
        return replace(self, n_random=int(n))

    def run(self, device: Any, target: str | tuple[str, ...], params: Mapping[str, float],
            rng: np.random.Generator, *, cheap: bool = False) -> ExperimentResult:
        roles = cz_roles(device, target, params)
        assert isinstance(target, tuple)
        a, b = target[0], target[1]
        t = target_name(target)
        pulse = core.CZPulse(dt_s=float(device.dt_s))
        amp, length = param(params, t, "cz_amplitude_phi0"), param(params, t, "cz_length_s")
        phase = {a: param(params, t, "cz_phase_a_rad"), b: param(params, t, "cz_phase_b_rad")}
        wave = pulse.waveform(amp, length)
        # In the CZ code's names: the flux pulse on q1 (the tunable qubit), then the frames.
        gate = PulseSequence((Barrier(), Play(wave.astype(np.complex128), channel=core.FLUX_CHANNEL), Barrier()))
        frames = (VirtualZ(phase[roles.control], frame=core.CONTROL), VirtualZ(phase[roles.tunable], frame=core.TARGET))
        nominal = rb2q.SingleQubitNative()  # replaced by the calibrated pulses in PairDevice
        natives = rb2q.TwoQubitNatives("CZ", gate, (nominal, nominal), frames)
        pair = PairDevice(device, roles, params, self.gate)
        n_random = self.cheap_n_random if cheap else self.n_random
        settings = rb2q.RB2QSettings(lengths=self.lengths, n_random=n_random, shots=self.shots_per_sequence,
                                     threshold=self.threshold,
                                     seed=int(self.seed if self.seed is not None else rng.integers(0, 2**31)))
        stated = []
        for q in (roles.control, roles.tunable):
            t1, t2 = param(params, q, "t1_s"), param(params, q, "t2star_s")
            if not (t1 > 0 and t2 > 0):
                raise ValueError(f"parameters {q}.t1_s = {t1!r}, {q}.t2star_s = {t2!r}: allowed > 0 s")
            stated.append(StatedCoherence(t1, min(t2, 2 * t1)))
        duration = wave.size * pulse.dt_s
        limit = rb2q.coherence_limit(stated, duration)
        irb = rb2q.run_irb(pair, natives, settings)  # type: ignore[arg-type]
        verdict = rb2q.verdict_of(irb, limit, self.threshold)
        # Every sequence holds the single-qubit pulses and, interleaved, the CZs: their
        # own durations are below a percent of the repetition time and not counted.
        rep = repetition_time_s(device)
        lo, hi = irb.interval
        quality = {"gate_error": irb.gate_error, "gate_error_sigma": irb.gate_error_sigma, "coherence_limit": limit,
                   "error_over_limit": irb.gate_error / limit, "upper_90": hi, "lower_90": lo,
                   "p_ref": irb.reference.p, "p_int": irb.interleaved.p, "epc_ref": irb.reference.epc,
                   "systematic_bound": irb.systematic_bound, "duration_s": duration}
        ms = [float(m) for m in self.lengths]
        m_arr = np.asarray(ms)
        ref_fit = irb.reference.a * irb.reference.p ** m_arr + irb.reference.b
        int_fit = irb.interleaved.a * irb.interleaved.p ** m_arr + irb.interleaved.b
        data = {"kind": "curve", "x": ms, "y": list(irb.interleaved.survival), "y_err": list(irb.interleaved.spread),
                "fit": [float(v) for v in int_fit], "x_label": "Cliffords m (interleaved with the CZ)",
                "y_label": "P(00)", "reference": list(irb.reference.survival),
                "reference_err": list(irb.reference.spread), "reference_fit": [float(v) for v in ref_fit],
                "verdict": verdict.status, "reason": None if verdict.reason is None else str(verdict.reason)}
        status: Status
        values: dict[str, float] = {}
        detail = verdict.detail
        if verdict.status == "calibrated":
            status = "in_spec"
            values = {f"{t}.cz_gate_error": irb.gate_error}
        elif verdict.reason == Reason.RESIDUAL_ERROR and irb.reference.p >= rb2q.MIN_REFERENCE_P:
            status = "out_of_spec"
        else:
            status = "bad_data"
            if verdict.reason == Reason.BUDGET_TOO_SMALL:
                data["symptom"] = UNDECIDED
                cap = ("at the cap max_n_random" if n_random >= self.max_n_random
                       else f"max_n_random {self.max_n_random}")
                detail = f"{detail} after {int(irb.shots_used)} shots ({n_random} sequences per length, {cap})"
        return ExperimentResult(
            self.name, target, status, values, quality, int(irb.shots_used), int(irb.shots_used) * rep, data,
            f"{t} interleaved RB: CZ error {irb.gate_error:.3g} ± {irb.gate_error_sigma:.2g} = "
            f"{irb.gate_error / limit:.2f}× the coherence limit {limit:.3g}: {verdict.status} ({detail})")


__all__ = ["RB2Q"]
