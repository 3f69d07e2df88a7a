"""The CZ nodes of a flux-tunable pair: the chevron (coarse amplitude and length) and the
CZ calibration (conditional phase, leakage, fine amplitude, single-qubit phases).

Both run the textbook's steps (``agents.baselines.cz_textbook.CZTextbook``, one method per
step) on the pair through ``pair.PairDevice``: the same flux pulse (``CZPulse``: a flat top
with 5 ns raised-cosine ramps on the tunable qubit's flux line), the same probes and the
same analysis as the ``CZCalibration-v0`` env, with the pair's calibrated single-qubit
pulses. Parameters of pair ``a-b`` (docs/calibration_nodes.md):

| parameter | written by | meaning |
|---|---|---|
| ``a-b.cz_amplitude_phi0`` | chevron, cz | the flat top's flux offset (Φ0) |
| ``a-b.cz_length_s`` | chevron, cz | the pulse length, start of rise to end of fall (s) |
| ``a-b.cz_phase_a_rad``, ``a-b.cz_phase_b_rad`` | cz | virtual Z on a's and b's frame after the pulse |
| ``a-b.cz_estimated_error`` | cz | the check round's measured error estimate (phases, loss of |11⟩) |

**Chevron** (``CZChevron``). The CZ amplitude is unknown within the flux line's physical
range, so a coarse scan first: |11⟩ retention at one length over ``amplitude_range_phi0``
(the first swap dip from the idle bias is |11⟩↔|20⟩ of the tunable qubit, f_t = f_c − α_t;
a dip further out, |11⟩↔|02⟩ at f_t = f_c + α_c, is not the one). Then the textbook's
chevron (amplitude × length around that dip) and its length scan: the CZ length is where
|11⟩ returns after one full exchange. ``bad_data`` when no dip of ``min_dip`` is found or
the return lies at the edge of the length scan. Its check_data form: |11⟩ after the stored
pulse against |11⟩ with no pulse (in spec while it keeps ``min_retention`` of it).

**CZ calibration** (``CZCalibration``). From the stored amplitude and length: the
reference probes, the conditional phase against amplitude at the stored length (the π
amplitude and the slope), the textbook's leakage scan (|11⟩'s loss after three CZs, with
no idle and with the pair's own idle between them, over ±4 ns and then ±1 ns of the
length: the least-leaking length is kept), the fine amplitude by 3 and then 9 repeated
gates, the two single-qubit phases (coarse, then three- and nine-fold), and a check round. ``in_spec`` when the check's estimated error is at most
``max_estimated_error`` and its conditional phase within ``phase_tolerance_rad`` of π;
else ``out_of_spec`` with the values (the scheduler records them and calibrates again from
there). Its check_data form is the reference and one check round at the stored values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ....envs import cz_calibration_core as core
from ....envs.drag import DragGate
from ....envs.protocol import Play, PulseSequence
from ...baselines.cz_leakage_idles import (
    DETUNING_UNCERTAINTY_HZ,
    FIXED_IDLES_S,
    choose_leakage_idles,
    pair_detuning_hz,
)
from ...baselines.cz_textbook import CountedDevice, CZTextbook
from ..experiment import ExperimentResult, Status, target_name
from .common import check_float, check_int, repetition_time_s
from .pair import QUBIT_READS, PairDevice, PairRoles, cz_roles, is_tunable_pair
from .pulses import DEFAULT_GATE, param

FloatArray = NDArray[np.float64]


def _duration_s(seq: PulseSequence, dt_s: float) -> float:
    """An upper bound of a sequence's own duration: all its plays back to back."""
    return float(sum(op.waveform.size for op in seq.ops if isinstance(op, Play))) * dt_s


class _Timed:
    """The pair device with the graph's cost accounting: shots·(rep + duration) per sequence."""

    def __init__(self, pair: PairDevice, rep_s: float) -> None:
        self.pair, self.rep_s = pair, rep_s
        self.device_time_s = 0.0
        self.shots = 0

    def run(self, seqs: Sequence[PulseSequence], shots: int) -> NDArray[np.int64]:
        self.shots += int(shots) * len(seqs)
        self.device_time_s += float(sum(shots * (self.rep_s + _duration_s(s, self.pair.dt_s)) for s in seqs))
        return self.pair.run(seqs, shots)


def _setup(device: Any, target: object, params: Mapping[str, float], gate: DragGate
           ) -> tuple[tuple[str, str], PairRoles, _Timed, CountedDevice]:
    roles = cz_roles(device, target, params)
    assert isinstance(target, tuple)
    timed = _Timed(PairDevice(device, roles, params, gate), repetition_time_s(device))
    return (target[0], target[1]), roles, timed, CountedDevice(timed, 10**12)


# The repetitions of the textbook's rounds for a caller that does not choose them: the
# maintenance check (cz_check.MaintainedCZ) declares its correction as two phase rounds.
_ROUNDS_UNLESS_GIVEN: dict[str, Any] = {"fine_gates": (3,), "phase_gates": (1, 3)}


def _textbook(device: Any, **kw: Any) -> CZTextbook:
    return CZTextbook(pulse=core.CZPulse(dt_s=float(device.dt_s)), **{**_ROUNDS_UNLESS_GIVEN, **kw})


def _result(name: str, target: tuple[str, str], status: Status, timed: _Timed, values: Mapping[str, float],
            quality: Mapping[str, float], data: Mapping[str, Any], message: str) -> ExperimentResult:
    return ExperimentResult(name, target, status, dict(values), {k: float(v) for k, v in quality.items()},
                            timed.shots, timed.device_time_s, dict(data), message)


def _floats(x: Any) -> list[float]:
    return [float(v) for v in np.asarray(x, dtype=np.float64).reshape(-1)]


@dataclass(frozen=True)
class CZChevron:
    """Settings: ``amplitude_range_phi0`` (the coarse scan's flux range), ``coarse_points``,
    ``coarse_length_s``, ``coarse_shots`` (per point), ``min_dip`` (the smallest |11⟩ loss
    that counts as the resonance), the textbook chevron's ``chevron_amplitudes``,
    ``chevron_span_phi0``, ``chevron_lengths_s``, ``shots_chevron``, its length scan's
    ``length_scan_s`` (low, high, step) and ``shots_length``; the check_data form's
    ``cheap_shots`` and ``min_retention``; ``gate`` (the single-qubit pulse shape)."""

    amplitude_range_phi0: tuple[float, float] = (0.0, 0.3)
    coarse_points: int = 121
    coarse_length_s: float = 30e-9
    coarse_shots: int = 20
    min_dip: float = 0.3
    chevron_amplitudes: int = 11
    chevron_span_phi0: float = 0.015
    chevron_lengths_s: tuple[float, ...] = tuple(float(x) for x in np.arange(26, 70, 6) * 1e-9)
    shots_chevron: int = 50
    length_scan_s: tuple[float, float, float] = (28e-9, 70e-9, 2e-9)
    shots_length: int = 100
    cheap_shots: int = 200
    min_retention: float = 0.85
    gate: DragGate = DEFAULT_GATE

    def __post_init__(self) -> None:
        n = "CZChevron"
        lo, hi = self.amplitude_range_phi0
        check_float(n, "amplitude_range_phi0[0]", lo, 0.0, 0.5)
        check_float(n, "amplitude_range_phi0[1]", hi, lo + 1e-3, 0.5)
        check_int(n, "coarse_points", self.coarse_points, 5, 2001)
        check_float(n, "coarse_length_s", self.coarse_length_s, 4e-9, 1e-6)
        for k in ("coarse_shots", "shots_chevron", "shots_length", "cheap_shots"):
            check_int(n, k, getattr(self, k), 1, 10**6)
        check_float(n, "min_dip", self.min_dip, 0.01, 1.0)
        check_int(n, "chevron_amplitudes", self.chevron_amplitudes, 3, 201)
        check_float(n, "chevron_span_phi0", self.chevron_span_phi0, 1e-4, 0.2)
        if not (len(self.chevron_lengths_s) >= 2 and all(4e-9 <= float(t) <= 1e-6 for t in self.chevron_lengths_s)):
            raise ValueError(f"{n}.chevron_lengths_s={self.chevron_lengths_s!r}: allowed at least two lengths in "
                             "[4e-9, 1e-6] s")
        a, b, step = (float(x) for x in self.length_scan_s)
        if not (4e-9 <= a < b <= 1e-6 and 0 < step <= (b - a) / 3):
            raise ValueError(f"{n}.length_scan_s={self.length_scan_s!r}: allowed (low, high, step) with "
                             "4e-9 <= low < high <= 1e-6 s and at least three steps")
        check_float(n, "min_retention", self.min_retention, 0.0, 1.0)

    def applies_to(self, target: tuple[str, ...], channels: Sequence[str]) -> bool:
        """Only pairs with a flux line get a flux CZ (the graph builder asks)."""
        return is_tunable_pair(target, channels)

    @property
    def name(self) -> str:
        return "cz_chevron"

    @property
    def reads(self) -> tuple[str, ...]:
        return QUBIT_READS

    @property
    def writes(self) -> tuple[str, ...]:
        return ("{t}.cz_amplitude_phi0", "{t}.cz_length_s")

    def _amplitudes(self) -> FloatArray:
        return np.linspace(*self.amplitude_range_phi0, self.coarse_points)

    def shots(self, cheap: bool) -> int:
        if cheap:
            return 2 * self.cheap_shots
        n_len = len(np.arange(*self.length_scan_s))
        return (self.coarse_points * self.coarse_shots + self.chevron_amplitudes * len(self.chevron_lengths_s)
                * self.shots_chevron + n_len * self.shots_length)

    def run(self, device: Any, target: str | tuple[str, ...], params: Mapping[str, float],
            rng: np.random.Generator, *, cheap: bool = False) -> ExperimentResult:
        pair, roles, timed, dev = _setup(device, target, params, self.gate)
        tb = _textbook(device, chevron_amplitudes=self.chevron_amplitudes, chevron_span_phi0=self.chevron_span_phi0,
                       chevron_lengths_s=self.chevron_lengths_s, length_scan_s=self.length_scan_s,
                       shots_chevron=self.shots_chevron, shots_length=self.shots_length)
        t = target_name(pair)
        if cheap:
            return self._check(tb, dev, timed, pair, params)
        amps = self._amplitudes()
        p11 = dev.run("coarse", [tb._eleven(float(a), self.coarse_length_s) for a in amps], self.coarse_shots)[:, 3]
        smooth = np.convolve(np.pad(p11, 1, mode="edge"), np.ones(3) / 3, mode="valid")
        base = float(np.quantile(smooth, 0.9))
        dips = [k for k in range(len(amps)) if base - smooth[k] >= self.min_dip
                and smooth[k] <= smooth[max(k - 1, 0)] and smooth[k] <= smooth[min(k + 1, len(amps) - 1)]]
        coarse = {"coarse_amplitude_phi0": _floats(amps), "coarse_p11": _floats(p11),
                  "coarse_length_s": self.coarse_length_s}
        if not dips:
            return _result(self.name, pair, "bad_data", timed, {}, {"coarse_base": base,
                           "coarse_deepest_dip": base - float(smooth.min())},
                           {"kind": "curve", "x": _floats(amps), "y": _floats(p11), "x_label": "flux amplitude (Φ0)",
                            "y_label": "P(11)"},
                           f"{t} chevron: no |11⟩ dip of {self.min_dip} over {self.amplitude_range_phi0} Φ0 at "
                           f"{self.coarse_length_s * 1e9:.0f} ns (deepest {base - float(smooth.min()):.2f})")
        # The first dip from the idle bias: a local minimum of the smoothed trace, refined
        # over the dip's own neighbourhood.
        k = dips[0]
        amp_coarse = float(amps[k])
        chev = tb.chevron(dev, amp_coarse)
        ls = tb.length_scan(dev, chev.amplitude)
        depth = float(1.0 - chev.p11.min())
        quality = {"coarse_amplitude_phi0": amp_coarse, "chevron_dip": depth,
                   "length_p11_min": float(ls.p11.min()), "length_p11_return": float(np.interp(ls.length, ls.lengths,
                                                                                                ls.p11))}
        data = {"kind": "map", "x": _floats(chev.lengths * 1e9), "y": _floats(chev.amplitudes * 1e3),
                "z": chev.p11.tolist(), "x_label": "flux pulse length (ns)", "y_label": "flux amplitude (mΦ0)",
                "z_label": "P(11)", "marker": [ls.length * 1e9, chev.amplitude * 1e3],
                "length_scan_s": _floats(ls.lengths), "length_p11": _floats(ls.p11), **coarse,
                "control": roles.control, "tunable": roles.tunable}
        problem = None
        if depth < self.min_dip:
            problem = f"the chevron's deepest |11⟩ loss {depth:.2f} < min_dip {self.min_dip}"
        lo, hi = float(ls.lengths[0]), float(ls.lengths[-1])
        step = float(self.length_scan_s[2])
        if problem is None and not (lo + step <= ls.length <= hi - step):
            problem = (f"|11⟩ returns at {ls.length * 1e9:.1f} ns, at the edge of the length scan "
                       f"[{lo * 1e9:.0f}, {hi * 1e9:.0f}] ns")
        if problem is not None:
            return _result(self.name, pair, "bad_data", timed, {}, quality, data, f"{t} chevron: {problem}")
        values = {f"{t}.cz_amplitude_phi0": chev.amplitude, f"{t}.cz_length_s": ls.length}
        return _result(self.name, pair, "in_spec", timed, values, quality, data,
                       f"{t} chevron: |11⟩↔|20⟩ of {roles.tunable} at {chev.amplitude * 1e3:.2f} mΦ0 "
                       f"(dip {depth:.2f}), one exchange at {ls.length * 1e9:.1f} ns")

    def _check(self, tb: CZTextbook, dev: CountedDevice, timed: _Timed, pair: tuple[str, str],
               params: Mapping[str, float]) -> ExperimentResult:
        t = target_name(pair)
        amp, length = param(params, t, "cz_amplitude_phi0"), param(params, t, "cz_length_s")
        ref = core.reference_sequences(tb.pulse)[6]
        f = dev.run("check", [ref, tb._eleven(amp, length)], self.cheap_shots)[:, 3]
        keep = float(f[1] / max(f[0], 1e-9))
        status: Status = "in_spec" if keep >= self.min_retention else "out_of_spec"
        return _result(self.name, pair, status, timed, {}, {"retention": keep}, {
            "kind": "curve", "x": [0.0, 1.0], "y": _floats(f), "x_label": "CZ pulses", "y_label": "P(11)"},
            f"{t} chevron check: |11⟩ keeps {keep:.2f} of its population after the CZ pulse "
            f"(min {self.min_retention})")


@dataclass(frozen=True)
class CZCalibration:
    """Settings: the textbook's ``phase_amplitudes``, ``phase_span_phi0``,
    ``phase_lengths_offset_s``, ``shots_phase``, ``shots_leakage`` (the per-length leakage
    probes, with more than one phase length), ``leakage_scan_offsets_s``,
    ``leakage_fine_offsets_s``, ``leakage_delays_s``, ``shots_leakage_scan`` (the leakage
    scan; empty offsets: none), ``fine_gates``, ``phase_gates``, ``shots_round``,
    ``shots_reference`` (``CZTextbook``'s arguments of the same names); the verdict's
    ``max_estimated_error`` and ``phase_tolerance_rad``; ``gate`` (the single-qubit pulse
    shape).

    ``leakage_delays_s`` None (the default) chooses the scan's idles per pair
    (``cz_leakage_idles.choose_leakage_idles``) from its f02 − f11 at idle: the two stored
    frequencies and the tunable qubit's ``{q}.anharmonicity_hz`` if the store has one, else
    ``tunable_anharmonicity_hz`` (the spec sheet's), ± ``detuning_uncertainty_hz``. A fixed
    1 ns idle is blind on pairs where it turns the leaked state's phase by ~1/3 turn
    (ring_8's q7-q0)."""

    phase_amplitudes: int = 5
    phase_span_phi0: float = 0.003
    phase_lengths_offset_s: tuple[float, ...] = (0.0,)
    shots_phase: int = 60
    shots_leakage: int = 300
    leakage_scan_offsets_s: tuple[float, ...] = tuple(float(x) for x in np.arange(-4, 4.5, 1.0) * 1e-9)
    leakage_fine_offsets_s: tuple[float, ...] = (-1e-9, -0.5e-9, 0.0, 0.5e-9, 1e-9)
    leakage_delays_s: tuple[float, ...] | None = None
    # ring_8's and two_transmons_cz's tunable qubits are designed at −230 MHz; the held-out
    # sampler spreads α by ±15 MHz, which the uncertainty covers.
    tunable_anharmonicity_hz: float = -230e6
    detuning_uncertainty_hz: float = DETUNING_UNCERTAINTY_HZ
    shots_leakage_scan: int = 250
    # The node's plan is the textbook's full one (60 shots per phase probe). With 3 → 9 at
    # that plan (24,000 shots) no held-out device of 20 ended above 3.1× its limit; the
    # textbook's own default adds a one-gate round first for smaller budgets.
    fine_gates: tuple[int, ...] = (3, 9)
    phase_gates: tuple[int, ...] = (1, 3, 9)
    shots_round: int = 200
    shots_reference: int = 300
    max_estimated_error: float = 0.02
    phase_tolerance_rad: float = 0.3
    gate: DragGate = DEFAULT_GATE

    def __post_init__(self) -> None:
        n = "CZCalibration"
        check_int(n, "phase_amplitudes", self.phase_amplitudes, 3, 101)
        check_float(n, "phase_span_phi0", self.phase_span_phi0, 1e-5, 0.05)
        if not (len(self.phase_lengths_offset_s) >= 1 and all(abs(float(x)) <= 50e-9
                                                               for x in self.phase_lengths_offset_s)):
            raise ValueError(f"{n}.phase_lengths_offset_s={self.phase_lengths_offset_s!r}: allowed one or more "
                             "offsets within ±50e-9 s")
        for k in ("shots_phase", "shots_leakage", "shots_leakage_scan", "shots_round", "shots_reference"):
            check_int(n, k, getattr(self, k), 1, 10**6)
        try:  # the textbook checks the leakage scan's and the repetitions' settings
            CZTextbook(**self._textbook_args())
        except ValueError as exc:
            raise ValueError(f"{n}.{exc}") from None
        check_float(n, "max_estimated_error", self.max_estimated_error, 1e-5, 1.0)
        check_float(n, "phase_tolerance_rad", self.phase_tolerance_rad, 1e-3, math.pi)
        check_float(n, "tunable_anharmonicity_hz", self.tunable_anharmonicity_hz, -1e9, -50e6)
        check_float(n, "detuning_uncertainty_hz", self.detuning_uncertainty_hz, 0.0, 100e6)

    def applies_to(self, target: tuple[str, ...], channels: Sequence[str]) -> bool:
        """Only pairs with a flux line get a flux CZ (the graph builder asks)."""
        return is_tunable_pair(target, channels)

    @property
    def name(self) -> str:
        return "cz_calibration"

    @property
    def reads(self) -> tuple[str, ...]:
        return (*QUBIT_READS, "{t}.cz_amplitude_phi0", "{t}.cz_length_s")

    @property
    def writes(self) -> tuple[str, ...]:
        return ("{t}.cz_amplitude_phi0", "{t}.cz_length_s", "{t}.cz_phase_a_rad", "{t}.cz_phase_b_rad",
                "{t}.cz_estimated_error")

    def shots(self, cheap: bool) -> int:
        ref, rnd = 7 * self.shots_reference, 8 * self.shots_round
        if cheap:
            return ref + rnd
        n = len(self.phase_lengths_offset_s)
        scan = len(self.leakage_scan_offsets_s)
        if scan:
            scan += len(self.leakage_fine_offsets_s)
        idles = 2 if self.leakage_delays_s is None else len(self.leakage_delays_s)  # None: 0 and the pair's
        return (ref + n * (self.phase_amplitudes * 4 * self.shots_phase + (2 * self.shots_leakage if n > 1 else 0))
                + scan * idles * self.shots_leakage_scan
                + (len(self.fine_gates) + len(self.phase_gates) + 1) * rnd)

    def _textbook_args(self) -> dict[str, Any]:
        return {"phase_amplitudes": self.phase_amplitudes, "phase_span_phi0": self.phase_span_phi0,
                "phase_lengths_offset_s": self.phase_lengths_offset_s, "shots_phase": self.shots_phase,
                "shots_leakage": self.shots_leakage, "leakage_scan_offsets_s": self.leakage_scan_offsets_s,
                "leakage_fine_offsets_s": self.leakage_fine_offsets_s, "leakage_delays_s": self.leakage_delays_s,
                "shots_leakage_scan": self.shots_leakage_scan, "fine_gates": self.fine_gates,
                "phase_gates": self.phase_gates, "shots_round": self.shots_round,
                "shots_reference": self.shots_reference}

    def leakage_idles(self, roles: PairRoles, params: Mapping[str, float], dt_s: float) -> tuple[float, ...]:
        """The leakage scan's idles on the pair of ``roles`` (class docstring)."""
        if self.leakage_delays_s is not None:
            return tuple(self.leakage_delays_s)
        alpha = params.get(f"{roles.tunable}.anharmonicity_hz", self.tunable_anharmonicity_hz)
        det = pair_detuning_hz(param(params, roles.tunable, "frequency_hz"),
                               param(params, roles.control, "frequency_hz"), float(alpha))
        if abs(det) < max(2 * self.detuning_uncertainty_hz, 1e6) or abs(det) > 5e9:
            # |02⟩ next to |11⟩ at idle (or values no CZ pair has): no phase to choose from
            return FIXED_IDLES_S
        return choose_leakage_idles(det, dt_s, uncertainty_hz=self.detuning_uncertainty_hz)

    def run(self, device: Any, target: str | tuple[str, ...], params: Mapping[str, float],
            rng: np.random.Generator, *, cheap: bool = False) -> ExperimentResult:
        pair, roles, timed, dev = _setup(device, target, params, self.gate)
        t = target_name(pair)
        a, b = pair
        idles = self.leakage_idles(roles, params, float(device.dt_s))
        tb = _textbook(device, **{**self._textbook_args(), "leakage_delays_s": idles})
        amp, length = param(params, t, "cz_amplitude_phi0"), param(params, t, "cz_length_s")
        phase = {q: params.get(f"{t}.cz_phase_{k}_rad", 0.0) for q, k in ((a, "a"), (b, "b"))}
        # the textbook's knobs: amplitude, length, phase of the control (q0), of the tunable (q1)
        knobs = np.array([amp, length, phase[roles.control], phase[roles.tunable]], dtype=np.float64)
        tb.reference(dev)
        rows: tuple[tuple[float, float, float, float], ...] = ()
        scan = None
        if not cheap:
            cp = tb.conditional_phase(dev, amp, length)
            rows = cp.rows
            if not (math.isfinite(cp.slope) and cp.slope != 0):
                return _result(self.name, pair, "bad_data", timed, {}, {"slope": cp.slope}, {},
                               f"{t} CZ: the conditional phase does not move with the amplitude "
                               f"(slope {cp.slope:.3g} rad/Φ0)")
            length_kept = cp.length
            if self.leakage_scan_offsets_s:
                scan = tb.leakage_length(dev, cp.amplitude, cp.length)
                length_kept = scan.length
            knobs = np.array([cp.amplitude, length_kept, knobs[2], knobs[3]])
            knobs = tb.fine_amplitude(dev, knobs, cp.slope)
            knobs = tb.single_qubit_phases(dev, knobs)
        r = tb.check(dev, knobs)
        err = float(r.estimated_error[0])
        cond = float(r.conditional_phase[0])
        cond_off = abs(math.remainder(cond - math.pi, 2 * math.pi))
        ph = {roles.control: float(knobs[2]), roles.tunable: float(knobs[3])}
        values = {f"{t}.cz_amplitude_phi0": float(knobs[0]), f"{t}.cz_length_s": float(knobs[1]),
                  f"{t}.cz_phase_a_rad": ph[a], f"{t}.cz_phase_b_rad": ph[b], f"{t}.cz_estimated_error": err}
        eleven = r.eleven[0]
        quality = {"estimated_error": err, "conditional_phase_rad": cond,
                   "control_phase_rad": float(r.control_phase[0]), "target_phase_rad": float(r.target_phase[0]),
                   "p11_after_1": float(eleven[0, 3]), "p11_after_3": float(eleven[1, 3])}
        data: dict[str, Any] = {"control": roles.control, "tunable": roles.tunable,
                                "shots_by_step": [[n, s] for n, s in dev.nodes], "leakage_idles_s": list(idles)}
        if scan is not None:
            order = np.argsort(scan.lengths)
            data.update({"kind": "curve", "x": [float(scan.lengths[k]) * 1e9 for k in order],
                         "y": [float(scan.p11[k]) for k in order], "x_label": "CZ length tried (ns)",
                         "y_label": "|11⟩ after 3 CZs (least over the idles)",
                         "vlines": [{"x": float(knobs[1]) * 1e9, "label": "kept"}],
                         "pi_amplitude_phi0": [x[1] for x in rows], "phase_slope_rad_per_phi0": [x[2] for x in rows]})
        elif len(rows) > 1:
            data.update({"kind": "curve", "x": [x[0] * 1e9 for x in rows], "y": [x[3] for x in rows],
                         "x_label": "CZ length tried (ns)", "y_label": "leakage estimate at the π amplitude",
                         "vlines": [{"x": float(knobs[1]) * 1e9, "label": "kept"}],
                         "pi_amplitude_phi0": [x[1] for x in rows], "phase_slope_rad_per_phi0": [x[2] for x in rows]})
        status: Status = ("in_spec" if err <= self.max_estimated_error and cond_off <= self.phase_tolerance_rad
                          else "out_of_spec")
        form = "check" if cheap else "CZ"
        msg = (f"{t} {form}: estimated error {err:.3g} (max {self.max_estimated_error:g}), conditional phase "
               f"{cond:.3f} rad, {knobs[0] * 1e3:.2f} mΦ0 × {knobs[1] * 1e9:.1f} ns")
        if cheap:
            # the check_data form measures; it does not move the stored values
            return _result(self.name, pair, status, timed, {}, quality, data, msg)
        return _result(self.name, pair, status, timed, values, quality, data, msg)


__all__ = ["CZCalibration", "CZChevron"]
