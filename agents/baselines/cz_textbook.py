"""The textbook CZ calibration, as a lab's node sequence runs it (qibocal / QUAlibrate).

Nodes, in order, every measurement through the device's ``run`` and every shot counted:

0. **reference**: the probes without the gate; their phases (what the preparation and
   analysis pulses and the readout contribute) are subtracted from every Ramsey reading
   after it, and their |11⟩ fraction is the reference of the loss of |11⟩.
1. **chevron**: |11⟩ retention over flux amplitude × pulse length, around the start's
   amplitude; the amplitude whose swap to |02⟩ is deepest is the resonance.
2. **length**: a finer length scan at that amplitude; the CZ length is where |11⟩ comes
   back after its first dip (one full |11⟩↔|02⟩ cycle).
3. **conditional phase**: target Ramsey with the control in |0⟩ and |1⟩ over a few
   amplitudes at the CZ length (``phase_lengths_offset_s``: one length by default); a
   line through the unwrapped phases gives the amplitude where the conditional phase is
   π (and its slope). With several lengths, the |11⟩ probes (1 and 3 CZs) at each one's π
   amplitude pick the least-leaking length (the sequence before ``leakage_length``).
4. **leakage**: |11⟩'s loss after three CZs over lengths within ±4 ns of the CZ length
   at 1 ns steps, each read with no idle and with an idle between the gates (chosen from the
   pair's f02 − f11 when known: ``cz_leakage_idles``; else 1 ns); then a second
   pass at 0.5 ns steps within ±1 ns of the first pass's best; the vertex of a parabola
   through the least loss is the CZ length. This is the knob that dominates the excess
   error at a fixed budget (docs/cz_calibration.md, "Where the textbook's excess came
   from"), so it gets the most shots after the phase rounds.
5. **fine amplitude**: probe rounds with every Ramsey applying the gate 1, 3 and then 9
   times, so the per-gate error of the conditional phase is read 3- and 9-fold; the
   amplitude moves by the phase error over the slope of node 3 after each. The one-gate
   round keeps the three-gate one within its ±π/3 when node 3's line is noisy (at 12,000
   shots a 3 → 9 start aliased on 2 of 24 held-out devices).
6. **single-qubit phases**: one probe round, then one with three and one with nine gates
   (each step's residual must stay within ±π/N for the next: at 12,000 shots a 1 → 9
   step aliased on 2 of 20 held-out devices); the virtual Zs
   cancel the measured residual phase of each qubit (after the amplitude is final, since
   q1's dynamic phase follows the amplitude steeply).
7. **check**: a last probe round at the final parameters (its estimated error is reported).

It is not behind the ``Baseline`` protocol: that protocol calibrates a DRAG
``CalibrationTask`` from (B, 4) DRAG parameters. ``CZBaseline`` is the sibling protocol
for a two-qubit device and the CZ's four knobs (``cz_calibration_core.PARAMETER_NAMES``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pulsecal.envs import cz_calibration_core as core
from pulsecal.envs.protocol import Barrier, Delay, PulseSequence

from . import cz_leakage_idles as idles

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class CZCalibrationResult:
    """What a CZ baseline hands back.

    Attributes:
        params: (4,) final amplitude (Φ0), length (s), phase q0, phase q1 (rad).
        shots_used: every shot the baseline ran on the device.
        estimated_error: the final check round's ``cz_calibration_core.estimated_error``.
        nodes: (node name, shots) in run order.
        pulse: the flux pulse the params belong to, when the method chose its shape settings
            from measurements (the adiabatic shape's map); None: the method's own ``pulse``.
    """

    params: FloatArray
    shots_used: int
    estimated_error: float
    nodes: tuple[tuple[str, int], ...] = field(default_factory=tuple)
    pulse: core.CZPulse | None = None


# The largest flux amplitude the textbook scans to (the presets' flux.max_offset).
MAX_AMPLITUDE_PHI0 = 0.3
# The adiabatic sequence's repetitions: its measured table (docs/cz_calibration.md,
# "Adiabatic CZ") is with these; the flat top's nine-gate rounds were not tried on it.
ADIABATIC_FINE_GATES, ADIABATIC_PHASE_GATES = (3,), (1, 3)


@dataclass(frozen=True)
class ChevronScan:
    """Node 1's data: amplitudes (A,), lengths (L,), |11⟩ fraction (A, L), the resonance."""

    amplitudes: FloatArray
    lengths: FloatArray
    p11: FloatArray
    amplitude: float


@dataclass(frozen=True)
class LengthScan:
    """Node 2's data: lengths (N,), |11⟩ fraction (N,), the CZ length."""

    lengths: FloatArray
    p11: FloatArray
    length: float


@dataclass(frozen=True)
class PhaseScan:
    """Nodes 3 and 4: the kept π amplitude, length, the phase slope (rad/Φ0), its leakage
    estimate, and per length tried (length, π amplitude, slope, leakage estimate)."""

    amplitude: float
    length: float
    slope: float
    leakage: float
    rows: tuple[tuple[float, float, float, float], ...]


@runtime_checkable
class CZBaseline(Protocol):
    """A CZ calibration method: like ``Baseline``, for a two-qubit device."""

    @property
    def name(self) -> str: ...

    def min_budget(self) -> int: ...

    def run(self, device: Any, start: ArrayLike, budget: int,
            rng: np.random.Generator | None = None) -> CZCalibrationResult: ...


class CountedDevice:
    """The device with a shot count and a budget that refuses to be overspent; ``nodes``
    lists (node, shots) in run order."""

    def __init__(self, device: Any, budget: int) -> None:
        self.device, self.budget, self.used = device, budget, 0
        self.nodes: list[tuple[str, int]] = []

    def run(self, node: str, seqs: list[PulseSequence], shots: int) -> FloatArray:
        need = shots * len(seqs)
        if self.used + need > self.budget:
            raise ValueError(f"budget={self.budget} is out of range: node {node!r} needs {self.used + need} "
                             f"shots in all: allowed a budget >= the baseline's min_budget()")
        counts = np.asarray(self.device.run(seqs, shots), dtype=np.float64)
        self.used += need
        if self.nodes and self.nodes[-1][0] == node:
            self.nodes[-1] = (node, self.nodes[-1][1] + need)
        else:
            self.nodes.append((node, need))
        return counts / shots


class CZTextbook:
    """The textbook CZ node sequence (module docstring).

    Args:
        chevron_amplitudes: amplitude points of the chevron, spread over ±chevron_span_phi0.
        chevron_lengths_s: the chevron's lengths.
        length_scan_s: the length scan's (low, high, step).
        phase_span_phi0: half-width of the conditional-phase amplitude scan.
        shots_*: shots per sequence of each node.
        pulse: the gate's flux pulse; its ``shape`` selects the node sequence. "flat_top":
            the sequence above. "adiabatic" (docs/cz_calibration.md, "Adiabatic CZ"): the
            chevron and length scan (with a flat top of ``pulse.ramp_s`` ramps) measure the
            resonance Φ_r and the exchange rate g; the adiabatic pulse's map takes those
            (and ``pulse.tuning_hz``, a spectroscopy number); its length is
            ``adiabatic_gl`` / g and its λ_2 ``adiabatic_lambda_2`` (a point of the shape's
            leakage valley in (g·length, λ_2), found on the nominal and three held-out
            devices with the map as this sequence measures it); then the conditional
            phase at that one length, fine amplitude, phases and check.
        adiabatic_gl: g·length of the adiabatic pulse, in [0.3, 1.0].
        adiabatic_lambda_2: λ_2 of the adiabatic pulse, in [-1, 1].
        ramp_overhead_s: the flat top's exchange period is 1/(2g) plus this (its ramps
            exchange little; 7.7 ns for 5 ns ramps on the nominal preset), in [0, 20] ns.
        shots_exchange: shots per length of the exchange-rate scan (adiabatic only).
        leakage_scan_offsets_s: node 4's lengths, offsets from the CZ length within ±10 ns
            (empty: no leakage scan, the length of node 3 is kept).
        leakage_fine_offsets_s: node 4's second pass, offsets from the first pass's best
            within ±5 ns (empty: one pass).
        leakage_delays_s: idles between node 4's three gates, each in [0, 20] ns; a length's
            loss is the largest over them (``leakage_length``). None: 0 and the idle
            ``cz_leakage_idles.choose_leakage_idles`` picks for ``pair_detuning_hz``, or
            (0, 1 ns) without it (``cz_leakage_idles.FIXED_IDLES_S``).
        pair_detuning_hz: the pair's f02 − f11 at idle, from its known frequencies
            (``cz_leakage_idles.pair_detuning_hz``), ± ``pair_detuning_uncertainty_hz``;
            None: not known.
        shots_leakage_scan: shots per sequence of node 4.
        fine_gates: gates per Ramsey of node 5's rounds, in order, each in [1, 25].
        phase_gates: gates per Ramsey of node 6's rounds, in order, each in [1, 25]; the first
            should be 1 (a phase read through N gates is known modulo 2π/N only).
    """

    name = "cz_textbook"

    def __init__(self, *, chevron_amplitudes: int = 11, chevron_span_phi0: float = 0.015,
                 chevron_lengths_s: tuple[float, ...] = tuple(np.arange(26, 70, 6) * 1e-9),
                 length_scan_s: tuple[float, float, float] = (28e-9, 70e-9, 2e-9),
                 phase_amplitudes: int = 5, phase_span_phi0: float = 0.003,
                 phase_lengths_offset_s: tuple[float, ...] = (0.0,),
                 shots_chevron: int = 50, shots_length: int = 100, shots_phase: int = 60,
                 shots_leakage: int = 300, shots_round: int = 200, shots_reference: int = 300, pulse: core.CZPulse | None = None,
                 adiabatic_gl: float = 0.545, adiabatic_lambda_2: float = 0.378, ramp_overhead_s: float = 7.7e-9,
                 shots_exchange: int = 100,
                 leakage_scan_offsets_s: tuple[float, ...] = tuple(np.arange(-4, 4.5, 1.0) * 1e-9),
                 leakage_fine_offsets_s: tuple[float, ...] = (-1e-9, -0.5e-9, 0.0, 0.5e-9, 1e-9),
                 shots_leakage_scan: int = 250, leakage_delays_s: tuple[float, ...] | None = None,
                 pair_detuning_hz: float | None = None,
                 pair_detuning_uncertainty_hz: float = idles.DETUNING_UNCERTAINTY_HZ,
                 fine_gates: tuple[int, ...] = (1, 3, 9), phase_gates: tuple[int, ...] = (1, 3, 9)) -> None:
        self.chevron_amplitudes, self.chevron_span = chevron_amplitudes, chevron_span_phi0
        self.chevron_lengths = tuple(float(x) for x in chevron_lengths_s)
        self.length_scan_s = length_scan_s
        self.phase_amplitudes, self.phase_span = phase_amplitudes, phase_span_phi0
        self.phase_lengths = phase_lengths_offset_s
        self.shots = {"chevron": shots_chevron, "length": shots_length, "phase": shots_phase,
                      "leakage": shots_leakage, "round": shots_round, "reference": shots_reference}
        self.pulse = pulse if pulse is not None else core.CZPulse()
        # The chevron and the length scan always use the flat top: the adiabatic shape
        # needs their results (the resonance and g) before it can be built.
        self.scan_pulse = dataclasses.replace(self.pulse, shape="flat_top")
        gl, lam2, over = (float(x) for x in (adiabatic_gl, adiabatic_lambda_2, ramp_overhead_s))
        if not (math.isfinite(gl) and 0.3 <= gl <= 1.0):
            raise ValueError(f"adiabatic_gl={adiabatic_gl!r} is out of range: allowed [0.3, 1.0]")
        if not (math.isfinite(lam2) and -1.0 <= lam2 <= 1.0):
            raise ValueError(f"adiabatic_lambda_2={adiabatic_lambda_2!r} is out of range: allowed [-1, 1]")
        if not (math.isfinite(over) and 0.0 <= over <= 20e-9):
            raise ValueError(f"ramp_overhead_s={ramp_overhead_s!r} is out of range: allowed [0, 20e-9] s")
        if not (isinstance(shots_exchange, int) and shots_exchange >= 1):
            raise ValueError(f"shots_exchange={shots_exchange!r} is out of range: allowed an integer >= 1")
        self.adiabatic_gl, self.adiabatic_lambda_2, self.ramp_overhead_s = gl, lam2, over
        self.shots["exchange"] = shots_exchange
        offs = tuple(float(x) for x in leakage_scan_offsets_s)
        if not all(math.isfinite(x) and abs(x) <= 10e-9 for x in offs):
            raise ValueError(f"leakage_scan_offsets_s={leakage_scan_offsets_s!r} is out of range: allowed "
                             "offsets within ±10e-9 s (empty: no leakage scan)")
        if not (isinstance(shots_leakage_scan, int) and shots_leakage_scan >= 1):
            raise ValueError(f"shots_leakage_scan={shots_leakage_scan!r} is out of range: allowed an integer >= 1")
        for key, g in (("fine_gates", fine_gates), ("phase_gates", phase_gates)):
            if not g or not all(isinstance(x, int) and 1 <= x <= 25 for x in g):
                raise ValueError(f"{key}={g!r} is out of range: allowed a non-empty list of integers in [1, 25]")
        self.leakage_scan_offsets = offs
        fine = tuple(float(x) for x in leakage_fine_offsets_s)
        if not all(math.isfinite(x) and abs(x) <= 5e-9 for x in fine):
            raise ValueError(f"leakage_fine_offsets_s={leakage_fine_offsets_s!r} is out of range: allowed "
                             "offsets within ±5e-9 s (empty: no second pass)")
        self.leakage_fine_offsets = fine
        if leakage_delays_s is None:
            leakage_delays_s = idles.FIXED_IDLES_S if pair_detuning_hz is None else idles.choose_leakage_idles(
                pair_detuning_hz, self.pulse.dt_s, uncertainty_hz=pair_detuning_uncertainty_hz)
        delays = tuple(float(x) for x in leakage_delays_s)
        if not delays or not all(math.isfinite(x) and 0.0 <= x <= 20e-9 for x in delays):
            raise ValueError(f"leakage_delays_s={leakage_delays_s!r} is out of range: allowed a non-empty list "
                             "of delays in [0, 20e-9] s")
        self.leakage_delays = delays
        self.shots["leakage_scan"] = shots_leakage_scan
        self.fine_gates, self.phase_gates = tuple(fine_gates), tuple(phase_gates)
        self._offsets = np.zeros((1, 4))

    @property
    def adiabatic(self) -> bool:
        return self.pulse.shape == "adiabatic"

    def min_budget(self) -> int:
        s = self.shots
        n_len = len(np.arange(*self.length_scan_s))
        if self.adiabatic:
            return (self.chevron_amplitudes * len(self.chevron_lengths) * s["chevron"] + n_len * s["exchange"]
                    + self.phase_amplitudes * 4 * s["phase"] + 4 * 8 * s["round"] + 7 * s["reference"])
        n_cp = len(self.phase_lengths)
        rounds = len(self.fine_gates) + len(self.phase_gates) + 1
        return (self.chevron_amplitudes * len(self.chevron_lengths) * s["chevron"] + n_len * s["length"]
                + n_cp * (self.phase_amplitudes * 4 * s["phase"] + (2 * s["leakage"] if n_cp > 1 else 0))
                + (len(self.leakage_scan_offsets) + (len(self.leakage_fine_offsets) if self.leakage_scan_offsets
                                                     else 0)) * len(self.leakage_delays) * s["leakage_scan"]
                + rounds * 8 * s["round"]
                + 7 * s["reference"])

    def _eleven(self, amp: float, length: float, n: int = 1, pulse: core.CZPulse | None = None) -> PulseSequence:
        p = self.pulse if pulse is None else pulse
        return core.probe_sequences(p, np.array([amp, length, 0.0, 0.0]), repeats=3)[6 if n == 1 else 7]

    def run(self, device: Any, start: ArrayLike, budget: int,
            rng: np.random.Generator | None = None) -> CZCalibrationResult:
        """Calibrate ``device`` from ``start`` (4,) with at most ``budget`` shots
        (deterministic: ``rng`` is unused)."""
        p0 = np.asarray(start, dtype=np.float64)
        if p0.shape != (4,) or not np.all(np.isfinite(p0)):
            raise ValueError(f"start={start!r} is out of range: allowed 4 finite numbers {core.PARAMETER_NAMES}")
        if budget < self.min_budget():
            raise ValueError(f"budget={budget} is out of range: allowed >= min_budget() = {self.min_budget()}")
        dev = CountedDevice(device, int(budget))
        if self.adiabatic:
            return self._run_adiabatic(dev, p0)
        self.reference(dev)
        amp_r = self.chevron(dev, float(p0[0])).amplitude
        length_cz = self.length_scan(dev, amp_r).length
        cp = self.conditional_phase(dev, amp_r, length_cz)
        length = (self.leakage_length(dev, cp.amplitude, cp.length).length if self.leakage_scan_offsets
                  else cp.length)
        params = np.array([cp.amplitude, length, p0[2], p0[3]])
        params = self.fine_amplitude(dev, params, cp.slope)
        params = self.single_qubit_phases(dev, params)
        r = self.check(dev, params)
        return CZCalibrationResult(params, dev.used, float(r.estimated_error[0]), tuple(dev.nodes))

    def _run_adiabatic(self, dev: CountedDevice, p0: FloatArray) -> CZCalibrationResult:
        self.reference(dev)
        amp_r = self.chevron(dev, float(p0[0])).amplitude
        g = self.exchange_rate(dev, amp_r)
        gate = self.adiabatic_pulse(amp_r, g)
        length = self.adiabatic_gl / g
        cp = self.adiabatic_phase(dev, gate, length)
        # The rounds below play self.pulse: from here on it is the gate just built.
        self.pulse = gate
        params = np.array([cp.amplitude, length, p0[2], p0[3]])
        params = self.fine_amplitude(dev, params, cp.slope, ADIABATIC_FINE_GATES)
        params = self.single_qubit_phases(dev, params, ADIABATIC_PHASE_GATES)
        r = self.check(dev, params)
        return CZCalibrationResult(params, dev.used, float(r.estimated_error[0]), tuple(dev.nodes), gate)

    # -- the nodes, one method each (the calibration graph runs them as separate nodes) --

    def reference(self, dev: CountedDevice) -> FloatArray:
        """0. The probes without the gate: (1, 4) offsets, kept for the later nodes."""
        s = self.shots["reference"]
        f = dev.run("reference", core.reference_sequences(self.pulse), s)
        self._offsets = core.reference_offsets(np.rint(f * s).astype(np.int64)[None])
        return self._offsets

    def chevron(self, dev: CountedDevice, amplitude: float) -> ChevronScan:
        """1. |11⟩ retention over amplitude × length around ``amplitude``; the resonance."""
        amps = np.clip(amplitude + np.linspace(-self.chevron_span, self.chevron_span, self.chevron_amplitudes),
                       0.0, MAX_AMPLITUDE_PHI0)
        seqs = [self._eleven(a, t, pulse=self.scan_pulse) for a in amps for t in self.chevron_lengths]
        p11 = dev.run("chevron", seqs, self.shots["chevron"])[:, 3].reshape(len(amps), -1)
        dip = 1.0 - p11.min(axis=1)
        return ChevronScan(amps, np.asarray(self.chevron_lengths), p11, _peak(amps, dip))

    def length_scan(self, dev: CountedDevice, amplitude: float) -> LengthScan:
        """2. A finer length scan at the resonance: where |11⟩ comes back after its dip."""
        lengths = np.arange(*self.length_scan_s)
        p11_t = dev.run("length", [self._eleven(amplitude, t, pulse=self.scan_pulse) for t in lengths],
                        self.shots["length"])[:, 3]
        smooth = np.convolve(np.pad(p11_t, 1, mode="edge"), np.ones(3) / 3, mode="valid")
        return LengthScan(lengths, p11_t, float(_peak(lengths, smooth, _first_return(smooth))))

    def conditional_phase(self, dev: CountedDevice, amp_r: float, length_cz: float) -> PhaseScan:
        """3. The conditional phase vs amplitude at a few lengths; 4. leakage at each one's
        π point; the length of least leakage is kept (needs ``reference`` first)."""
        s = self.shots
        best: tuple[float, float, float, float] | None = None  # (leak, amp, length, slope)
        rows: list[tuple[float, float, float, float]] = []
        for dl in self.phase_lengths:
            length = length_cz + dl
            a_scan = np.clip(amp_r + np.linspace(-self.phase_span, self.phase_span, self.phase_amplitudes), 0,
                             MAX_AMPLITUDE_PHI0)
            seqs = [q for a in a_scan
                    for q in core.probe_sequences(self.pulse, np.array([a, length, 0.0, 0.0]))[:4]]
            f = dev.run("conditional_phase", seqs, s["phase"]).reshape(len(a_scan), 4, 4)
            p_t = f[:, :, 1] + f[:, :, 3]
            ref = self._offsets[0, 1] - self._offsets[0, 0]
            cond = np.unwrap(core.ramsey_phase(p_t[:, 2], p_t[:, 3]) - core.ramsey_phase(p_t[:, 0], p_t[:, 1]) - ref)
            slope, icpt = np.polyfit(a_scan, cond, 1)
            # The π crossing nearest the scan's centre (cond is known modulo 2π).
            mid = icpt + slope * amp_r
            target = math.pi + 2 * math.pi * round((mid - math.pi) / (2 * math.pi))
            a_pi = float(np.clip((target - icpt) / slope if slope != 0 else amp_r,
                                 amp_r - 2 * self.phase_span, amp_r + 2 * self.phase_span))
            if len(self.phase_lengths) == 1:
                # one length: nothing to choose, so no leakage probe (``leakage_length`` follows)
                leak = math.nan
            else:
                e = dev.run("leakage", [self._eleven(a_pi, length, 1), self._eleven(a_pi, length, 3)],
                            s["leakage"])
                leak = float(core.estimated_error(0.0, math.pi, 0.0, e[0, 3], e[1, 3], 3, self._offsets[0, 3]))
            rows.append((float(length), a_pi, float(slope), leak))
            if best is None or leak < best[0] or math.isnan(leak):
                best = (leak, a_pi, length, float(slope))
        assert best is not None
        leak, amp, length, slope = best
        return PhaseScan(amp, float(length), slope, leak, tuple(rows))

    def exchange_rate(self, dev: CountedDevice, amplitude: float) -> float:
        """The |11⟩–|02⟩ coupling g (Hz) at the resonance ``amplitude``: |11⟩ after flat tops
        of the length scan's lengths, fitted by ``_fit_exchange``."""
        lengths = np.arange(*self.length_scan_s)
        p11 = dev.run("exchange", [self._eleven(amplitude, t, pulse=self.scan_pulse) for t in lengths],
                      self.shots["exchange"])[:, 3]
        return self._fit_exchange(lengths, p11)

    def _fit_exchange(self, lengths: FloatArray, p11: FloatArray) -> float:
        """g (Hz) of A − B·sin²(2πg·(t − ramp_overhead_s)) fitted to |11⟩ after flat tops of
        ``lengths`` (a grid over g, linear least squares in A and B). The fit uses the whole
        trace, so a noisy point or a second return cannot move g the way a single maximum
        would."""
        grid = np.arange(4e6, 30e6, 0.02e6)
        x = np.sin(2 * np.pi * grid[:, None] * np.maximum(lengths[None, :] - self.ramp_overhead_s, 0.0)) ** 2
        best, g_best = math.inf, float(core.NOMINAL_COUPLING_HZ)
        for g, row in zip(grid, x, strict=True):
            a = np.stack([np.ones_like(row), -row], axis=1)
            coef, *_ = np.linalg.lstsq(a, p11, rcond=None)
            res = float(np.sum((a @ coef - p11) ** 2))
            if coef[1] > 0 and res < best:
                best, g_best = res, float(g)
        return g_best

    def adiabatic_pulse(self, resonance_phi0: float, coupling_hz: float) -> core.CZPulse:
        """The adiabatic gate pulse for a measured resonance and coupling (``self.pulse``'s
        tuning_hz, ramps and sample time)."""
        return dataclasses.replace(self.pulse, shape="adiabatic", resonance_phi0=float(resonance_phi0),
                                   coupling_hz=float(coupling_hz), lambda_2=self.adiabatic_lambda_2)

    def adiabatic_phase(self, dev: CountedDevice, pulse: core.CZPulse, length: float) -> PhaseScan:
        """The conditional phase of the adiabatic ``pulse`` at ``length`` over amplitudes
        around the shape's own prediction of π (``CZPulse.phase_estimate``); a line
        through the unwrapped phases gives the π amplitude and the slope (needs
        ``reference`` first)."""
        a0 = _model_pi_amplitude(pulse, length)
        a_scan = np.clip(a0 + np.linspace(-self.phase_span, self.phase_span, self.phase_amplitudes), 0,
                         MAX_AMPLITUDE_PHI0)
        seqs = [q for a in a_scan for q in core.probe_sequences(pulse, np.array([a, length, 0.0, 0.0]))[:4]]
        f = dev.run("conditional_phase", seqs, self.shots["phase"]).reshape(len(a_scan), 4, 4)
        p_t = f[:, :, 1] + f[:, :, 3]
        ref = self._offsets[0, 1] - self._offsets[0, 0]
        cond = np.unwrap(core.ramsey_phase(p_t[:, 2], p_t[:, 3]) - core.ramsey_phase(p_t[:, 0], p_t[:, 1]) - ref)
        slope, icpt = np.polyfit(a_scan, cond, 1)
        mid = icpt + slope * a0
        target = math.pi + 2 * math.pi * round((mid - math.pi) / (2 * math.pi))
        a_pi = float(np.clip((target - icpt) / slope if slope != 0 else a0,
                             a0 - 2 * self.phase_span, a0 + 2 * self.phase_span))
        return PhaseScan(a_pi, float(length), float(slope), math.nan, ((float(length), a_pi, float(slope), math.nan),))

    def leakage_length(self, dev: CountedDevice, amplitude: float, length: float) -> LengthScan:
        """4. Leakage minimisation over the length, by |11⟩'s loss after three CZs at
        ``amplitude`` and the lengths ``length`` + ``leakage_scan_offsets_s``.

        Three gates add the leak amplitudes of the gates coherently, with the phase that
        |02⟩ gains on |11⟩ between them. On a whole-sample grid that phase is the same at
        every length, and on some devices it cancels the sum (held-out 7: no loss at any
        length while L1 is 1e-2). Each length is therefore read with ``leakage_delays_s``
        idles between the gates, and the loss is the largest. A fixed second idle is blind
        on pairs where it turns that phase by a multiple of 1/3 turn (1 ns on ring_8's
        q7-q0, f02 − f11 = 0.31 GHz), so given the pair's f02 − f11 it is chosen from it
        (``cz_leakage_idles``). A third idle, at the same total shots, measured no better
        on 24 held-out devices (docs/cz_calibration.md). The kept length is the vertex of a
        parabola through the least loss and its neighbours."""
        scan = self._leakage_pass(dev, amplitude, length, self.leakage_scan_offsets)
        if not self.leakage_fine_offsets:
            return scan
        fine = self._leakage_pass(dev, amplitude, scan.length, self.leakage_fine_offsets)
        return LengthScan(np.concatenate([scan.lengths, fine.lengths]), np.concatenate([scan.p11, fine.p11]),
                          fine.length)

    def _leakage_pass(self, dev: CountedDevice, amplitude: float, length: float,
                      offsets: tuple[float, ...]) -> LengthScan:
        lengths = np.clip(length + np.asarray(offsets), 20e-9, 80e-9)
        seqs = [self._eleven_delayed(amplitude, float(t), 3, d) for t in lengths for d in self.leakage_delays]
        p11 = dev.run("leakage", seqs, self.shots["leakage_scan"])[:, 3].reshape(len(lengths), -1)
        worst = p11.min(axis=1)
        return LengthScan(lengths, worst, _vertex(lengths, worst))

    def _eleven_delayed(self, amp: float, length: float, n: int, delay_s: float) -> PulseSequence:
        """|11⟩ after ``n`` CZs with an idle of ``delay_s`` between consecutive ones."""
        ref = core.reference_sequences(self.pulse)[6].ops  # X(q0)·X(q1), measure
        prep, meas = ref[:-1], ref[-1]
        gate = core.probe_sequences(self.pulse, np.array([amp, length, 0.0, 0.0]), repeats=3)[6].ops[len(prep):-1]
        body: list[Any] = []
        for j in range(n):
            body += gate
            if delay_s > 0 and j < n - 1:
                body += [Delay(delay_s), Barrier()]
        return PulseSequence((*prep, *body, meas))

    def fine_amplitude(self, dev: CountedDevice, params: FloatArray, slope: float,
                       gates: tuple[int, ...] | None = None) -> FloatArray:
        """5. Fine amplitude by repeated gates, ``fine_gates`` of them per Ramsey in turn
        (1, 3, then 9): the conditional phase's error grows N-fold while the readout's and the
        reference's noise do not, and each step's residual must stay within ±π/N for the
        next. The conditional phase does not depend on the virtual Zs, so it comes first:
        the single-qubit phases follow the amplitude. ``gates``: instead of ``fine_gates``."""
        params = np.array(params, dtype=np.float64)
        last: tuple[float, float] | None = None
        for n in self.fine_gates if gates is None else gates:
            r = self._round(dev, "fine_amplitude", params, n)
            err = float(np.angle(np.exp(1j * (r.conditional_phase[0] * n - n * math.pi)))) / n
            if not (slope != 0 and math.isfinite(slope)):
                continue
            if last is not None and params[0] != last[0]:
                # The secant of the last two rounds: node 3's line spans ±phase_span, over
                # which the phase is not linear, and its slope can be ~2× below the local one
                # (held-out 11: 470 against ~800 rad/Φ0), so each step overshoots and the
                # next round aliases. Only a steeper secant (up to 3×) is taken: a too-steep
                # slope undershoots, which the next round corrects, while a noisy shallow one
                # (a one-gate reading 0.1 rad off) overshoots.
                secant = (err - last[1]) / (params[0] - last[0])
                if 1 < secant / slope <= 3:
                    slope = secant
            last = (float(params[0]), err)
            params[0] = float(np.clip(params[0] - err / slope, 0.0, MAX_AMPLITUDE_PHI0))
        return params

    def single_qubit_phases(self, dev: CountedDevice, params: FloatArray,
                            gates: tuple[int, ...] | None = None) -> FloatArray:
        """6. Single-qubit phases: coarse with one gate, then with ``phase_gates`` gates for
        the fine part (a per-gate phase read through N gates is known modulo 2π/N only, and
        its shot noise is N-fold smaller). ``gates``: instead of ``phase_gates``."""
        params = np.array(params, dtype=np.float64)
        for n in self.phase_gates if gates is None else gates:
            r = self._round(dev, "single_qubit_phases" if n == 1 else "fine_phases", params, n)
            params[2] -= r.control_phase[0] / core.VZ_SIGN
            params[3] -= r.target_phase[0] / core.VZ_SIGN
        params[2:] = np.angle(np.exp(1j * params[2:]))
        return params

    def check(self, dev: CountedDevice, params: FloatArray) -> core.CZReadings:
        """7. A last probe round at the final parameters."""
        return self._round(dev, "check", params, 1)

    def _round(self, dev: CountedDevice, node: str, params: FloatArray, gates: int) -> core.CZReadings:
        seqs = core.probe_sequences(self.pulse, params, repeats=3, gates=gates)
        f = dev.run(node, seqs, self.shots["round"])
        counts = np.rint(f * self.shots["round"]).astype(np.int64)
        return core.analyse(counts[None], gates=gates, repeats=3, offsets=self._offsets)


def _model_pi_amplitude(pulse: core.CZPulse, length: float) -> float:
    """The amplitude whose ``phase_estimate`` is π (the first crossing on a grid up to the
    flux range, refined by bisection); the resonance if none."""
    amps = np.linspace(0.2 * pulse.resonance_phi0, min(MAX_AMPLITUDE_PHI0, 1.5 * pulse.resonance_phi0), 81)
    ph = np.array([pulse.phase_estimate(float(a), length) for a in amps]) - math.pi
    k = np.flatnonzero((ph[:-1] < 0) & (ph[1:] >= 0))
    if k.size == 0:
        return float(pulse.resonance_phi0)
    lo, hi = float(amps[k[0]]), float(amps[k[0] + 1])
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if pulse.phase_estimate(mid, length) < math.pi else (lo, mid)
    return 0.5 * (lo + hi)


def _first_return(y: FloatArray) -> int:
    """Index of |11⟩'s first return in a smoothed length scan: the highest point of the
    first run of points in the upper half of the trace's range that follows a point in its
    lower half (the first dip, which may lie before the scan's start: then the trace starts
    low). A later, deeper second dip must not be taken for the first one: the maximum after
    it is the scan's edge, two exchange cycles long (held-out devices with g ≳ 12 MHz)."""
    mid = 0.5 * (float(y.min()) + float(y.max()))
    low = np.flatnonzero(y < mid)
    if low.size == 0:
        return int(np.argmax(y))
    high = np.flatnonzero((y >= mid) & (np.arange(len(y)) > low[0]))
    if high.size == 0:
        return int(np.argmax(y))
    j0 = int(high[0])
    after = np.flatnonzero((y < mid) & (np.arange(len(y)) > j0))
    j1 = int(after[0]) if after.size else len(y)
    return j0 + int(np.argmax(y[j0:j1]))


def _vertex(x: FloatArray, y: FloatArray) -> float:
    """x at the maximum of y, refined by a least-squares parabola through the maximum and up
    to two points on either side (the vertex kept within them); x at the maximum if the
    parabola does not open downwards."""
    k = int(np.argmax(y))
    lo, hi = max(0, k - 2), min(len(x), k + 3)
    if hi - lo >= 3:
        c2, c1, _ = np.polyfit(x[lo:hi], y[lo:hi], 2)
        if c2 < 0:
            return float(np.clip(-c1 / (2 * c2), x[lo], x[hi - 1]))
    return float(x[k])


def _peak(x: FloatArray, y: FloatArray, k: int | None = None) -> float:
    """x at the maximum of y (index k, default argmax), refined by a parabola through it and
    its neighbours (kept within them)."""
    k = int(np.argmax(y)) if k is None else k
    if 0 < k < len(x) - 1:
        y0, y1, y2 = y[k - 1], y[k], y[k + 1]
        den = y0 - 2 * y1 + y2
        if den < 0:
            off = 0.5 * (y0 - y2) / den
            return float(x[k] + np.clip(off, -1, 1) * (x[k + 1] - x[k]))
    return float(x[k])


__all__ = ["MAX_AMPLITUDE_PHI0", "CZBaseline", "CZCalibrationResult", "CZTextbook", "ChevronScan", "CountedDevice",
           "LengthScan", "PhaseScan"]
