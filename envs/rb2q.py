"""Two-qubit Clifford randomized benchmarking and interleaved RB on the simulated device.

What is measured: random sequences of m two-qubit Cliffords (``envs.clifford2q``) and the
Clifford that inverts them, compiled to the device's natives: single-qubit π and π/2
pulses (``SingleQubitNative``, the calibrated pulses a lab hands over: an explicit input,
so a miscalibrated single-qubit gate shows up in RB as it would in a lab), virtual Z frame
changes, and the entangler under test (CZ of a flux pair with its two frame updates, or
ECR of a cross-resonance pair). Both qubits are measured with the device's readout; the
survival P(|00⟩) against m is fitted to A·p^m + B (A, p, B free, weighted by the spread of
the random sequences), and

    EPC = 3/4·(1 − p)                       (error per Clifford, d = 4)
    r_gate = 3/4·(1 − p_int/p_ref)          (interleaved RB: the gate after each Clifford)
    E = min( 3/4·(|p_ref − p_int/p_ref| + (1 − p_ref)),
             (2·15·(1 − p_ref))/(16·p_ref) + 4·√(1 − p_ref)·√15/p_ref )

E is the systematic bound of Magesan et al., PRL 109, 080505 (2012), eq. (5), d = 4.

Speed: sequences are not simulated sample by sample. ``SimulatedMultiQubitDevice.
run_programs`` builds each native's process once on the device's model at the start of
the experiment (superoperators or unitaries of the fast coupled engine, all levels kept:
leakage is part of the process, nothing is projected onto the qubits) and composes them,
which is exact for the device held static: drift is sampled once at the experiment's start
and the clock advances by shots × rep_time per sequence afterwards, as for any ``run``.

Layering: envs only (numpy/scipy).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import least_squares

from . import clifford2q as c2
from ._validation import finite, require
from .multi_qubit_device import SimulatedMultiQubitDevice
from .multi_qubit_model import DeviceModel
from .physics.coupled import metrics
from .physics.coupled.operators import OperatorModel
from .protocol import Barrier, Device, Measure, Play, PulseSequence, VirtualZ
from .schedule import compile_schedule
from .verification import Reason, StatedCoherence, Verdict, failed

FloatArray = NDArray[np.float64]
ComplexArray = NDArray[np.complex128]

QUBITS: tuple[str, str] = ("q0", "q1")
D = 4  # two qubits
# Below this reference decay per Clifford the verdict fails without an interleaved estimate.
MIN_REFERENCE_P = 0.8


@dataclass(frozen=True)
class SingleQubitNative:
    """A calibrated single-qubit pulse on one qubit's own drive line: a Hann envelope with a
    DRAG quadrature, u(t) = a·(g(t) + i·drag_s·ġ(t)), g peaking at 1.

    Attributes:
        length_samples: samples of the pulse, in [4, 400].
        amplitude: a of the π pulse (fraction of full scale), in (0, 1].
        drag_s: the DRAG coefficient (s), |drag_s| <= 1e-8.
        sx_amplitude: a of the π/2 pulse; None: amplitude / 2.
    """

    length_samples: int = 20
    amplitude: float = 1.0
    drag_s: float = 0.0
    sx_amplitude: float | None = None

    def __post_init__(self) -> None:
        n = self.length_samples
        require(isinstance(n, int) and not isinstance(n, bool) and 4 <= n <= 400,
                "SingleQubitNative.length_samples", n, "an integer in [4, 400]")
        a = finite("SingleQubitNative.amplitude", self.amplitude)
        require(0 < a <= 1, "SingleQubitNative.amplitude", a, "(0, 1]")
        b = finite("SingleQubitNative.drag_s", self.drag_s)
        require(abs(b) <= 1e-8, "SingleQubitNative.drag_s", b, "[-1e-8, 1e-8] s")
        if self.sx_amplitude is not None:
            s = finite("SingleQubitNative.sx_amplitude", self.sx_amplitude)
            require(0 < s <= 1, "SingleQubitNative.sx_amplitude", s, "(0, 1] or None")

    def waveform(self, half: bool, dt_s: float) -> NDArray[np.complex128]:
        """(length_samples,) samples of the π (``half`` False) or π/2 pulse."""
        n = self.length_samples
        t = (np.arange(n) + 0.5) / n
        g = np.sin(np.pi * t) ** 2
        dg = np.pi * np.sin(2 * np.pi * t) / (n * dt_s)
        a = (self.sx_amplitude if self.sx_amplitude is not None else 0.5 * self.amplitude) if half else self.amplitude
        return np.asarray(a * (g + 1j * self.drag_s * dg), dtype=np.complex128)


def nominal_single_qubit(model: DeviceModel, qubit: str, length_samples: int = 20) -> SingleQubitNative:
    """The textbook pulse of a qubit from its spec sheet (Rabi rate, anharmonicity): the Hann
    area of a π rotation, a = 1/(Ω·n·dt), and first-order DRAG, drag_s = −1/(4π·α)."""
    m = model.mode(qubit)
    require(m.rabi_max_hz is not None, f"Mode({qubit!r}).rabi_max_hz", m.rabi_max_hz, "> 0 Hz (a drive line)")
    assert m.rabi_max_hz is not None
    amp = 1.0 / (m.rabi_max_hz * length_samples * model.dt_s)
    require(amp <= 1.0, "length_samples", length_samples,
            f">= {math.ceil(1.0 / (m.rabi_max_hz * model.dt_s))} (a π pulse fits full scale)")
    return SingleQubitNative(length_samples, amp, -1.0 / (4 * math.pi * m.anharmonicity_hz))


@dataclass(frozen=True)
class TwoQubitNatives:
    """The natives RB compiles to on the pair (q0, q1).

    Attributes:
        entangler: "CZ" or "ECR" (control q0): which ideal gate ``gate`` stands for.
        gate: the entangler's pulses (plays and barriers, no frame change, no measurement).
        gate_frames: frame changes played right after ``gate`` (a CZ's single-qubit phase
            corrections: VirtualZ on "q0" and "q1").
        single: the single-qubit pulses of q0 and q1.
    """

    entangler: c2.Entangler
    gate: PulseSequence
    single: tuple[SingleQubitNative, SingleQubitNative]
    gate_frames: tuple[VirtualZ, ...] = ()

    def __post_init__(self) -> None:
        require(self.entangler in c2.ENTANGLERS, "TwoQubitNatives.entangler", self.entangler,
                f"one of {list(c2.ENTANGLERS)}")
        require(isinstance(self.gate, PulseSequence), "TwoQubitNatives.gate", type(self.gate).__name__,
                "a PulseSequence")
        require(len(self.single) == 2 and all(isinstance(s, SingleQubitNative) for s in self.single),
                "TwoQubitNatives.single", self.single, "two SingleQubitNative (q0, q1)")
        for k, vz in enumerate(self.gate_frames):
            require(isinstance(vz, VirtualZ) and vz.frame in QUBITS, f"TwoQubitNatives.gate_frames[{k}]", vz,
                    f"a VirtualZ on one of {list(QUBITS)}")

    def pulses(self, dt_s: float) -> dict[str, PulseSequence]:
        """The device natives by name: x_q0, sx_q0, x_q1, sx_q1 and gate."""
        out = {"gate": self.gate}
        for q, s in zip(QUBITS, self.single, strict=True):
            out[f"x_{q}"] = PulseSequence((Play(s.waveform(False, dt_s), channel=f"drive:{q}"),))
            out[f"sx_{q}"] = PulseSequence((Play(s.waveform(True, dt_s), channel=f"drive:{q}"),))
        return out

    def duration_s(self, device: SimulatedMultiQubitDevice) -> float:
        """The gate's duration on ``device`` (its schedule)."""
        return compile_schedule(self.gate, device.params.channels, where="gate").duration_s


def program(ops: Sequence[c2.NativeOp], natives: TwoQubitNatives) -> list[str | VirtualZ]:
    """Native operations -> a device program (``run_programs``): R(θ, φ) on q is
    VZ(φ)·play·VZ(−φ) in time order, Rz(a) is VZ(−a) (a frame update of +φ rotates the
    qubit by −φ about z), the entangler is the gate and its frame changes. Consecutive
    frame changes of one frame are merged."""
    out: list[str | VirtualZ] = []
    pending = [0.0, 0.0]

    def flush(q: int) -> None:
        if pending[q] % (2 * math.pi):
            out.append(VirtualZ(float(pending[q]), frame=QUBITS[q]))
        pending[q] = 0.0

    for op in ops:
        if op.kind == "z":
            pending[op.qubit] -= op.angle
        elif op.kind == "entangler":
            flush(0)
            flush(1)
            out.append("gate")
            out += list(natives.gate_frames)
        else:
            pending[op.qubit] += op.angle
            flush(op.qubit)
            out.append(f"{op.kind}_{QUBITS[op.qubit]}")
            pending[op.qubit] -= op.angle
    # The frames left at the end rotate only phases, which a Z-basis readout does not see.
    return out


def rb_programs(rng: np.random.Generator, lengths: Sequence[int], n_random: int, natives: TwoQubitNatives,
                interleaved: bool) -> list[list[str | VirtualZ]]:
    """``n_random`` random sequences per length (length-major): m Cliffords (each followed by
    the entangler when ``interleaved``) and the inverting Clifford."""
    g = c2.clifford_group()
    comp = c2.compiled_group(natives.entangler)
    gate_idx = g.index(metrics.TARGETS_2Q[natives.entangler])
    gate_ops = (c2.NativeOp("entangler", -1),)
    out = []
    for m in lengths:
        for _ in range(n_random):
            idx = rng.integers(0, len(g), int(m))
            total = np.eye(D, dtype=np.complex128)
            ops: list[c2.NativeOp] = []
            for i in idx:
                total = g.unitaries[i] @ total
                ops += comp[i]
                if interleaved:
                    total = g.unitaries[gate_idx] @ total
                    ops += gate_ops
            ops += comp[g.index(total.conj().T)]
            out.append(program(ops, natives))
    return out


@dataclass(frozen=True)
class RBFit:
    """A fitted decay: survival = A·p^m + B.

    Attributes:
        lengths: (L,) Clifford counts m.
        survival: (L,) mean P(|00⟩) over the random sequences of each length.
        spread: (L,) standard error of that mean (sequence spread, floored by shot noise).
        p, p_sigma: the depolarising parameter and its 1σ from the fit's covariance.
        a, b: the fitted amplitude and offset.
    """

    lengths: tuple[int, ...]
    survival: tuple[float, ...]
    spread: tuple[float, ...]
    p: float
    p_sigma: float
    a: float
    b: float

    @property
    def epc(self) -> float:
        """Error per Clifford, 3/4·(1 − p)."""
        return 0.75 * (1.0 - self.p)


def fit_decay(lengths: Sequence[int], survival: ArrayLike, shots: int) -> RBFit:
    """Fit (L, n_random) survival fractions to A·p^m + B (A, p, B free)."""
    m = np.asarray(lengths, dtype=np.float64)
    mean, sd = _means(survival, shots)

    def resid(x: FloatArray) -> FloatArray:
        return np.asarray((x[0] * x[1] ** m + x[2] - mean) / sd)

    res = least_squares(resid, [0.7, 0.97, 0.25], bounds=([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]))
    cov = np.linalg.pinv(res.jac.T @ res.jac)
    sig = float(math.sqrt(max(cov[1, 1], 0.0)))
    return RBFit(tuple(int(x) for x in lengths), tuple(float(x) for x in mean), tuple(float(x) for x in sd),
                 float(res.x[1]), sig, float(res.x[0]), float(res.x[2]))


def _means(survival: ArrayLike, shots: int) -> tuple[FloatArray, FloatArray]:
    """(L,) means of (L, n_random) survival fractions and their standard errors (the
    sequences' spread, floored by the shot noise)."""
    s = np.asarray(survival, dtype=np.float64)
    mean = s.mean(axis=1)
    n = s.shape[1]
    shot_var = np.maximum(mean * (1 - mean), 0.25 / shots) / (shots * n)
    seq_var = s.var(axis=1, ddof=1) / n if n > 1 else np.zeros_like(mean)
    return mean, np.sqrt(np.maximum(seq_var, shot_var))


def fit_joint(lengths: Sequence[int], reference: ArrayLike, interleaved: ArrayLike, shots: int
              ) -> tuple[RBFit, RBFit, float]:
    """Fit both decays with a shared A and B (the same preparation, readout and depolarised
    limit; only p differs): (reference fit, interleaved fit, covariance of the two p).
    Sharing B is what pins it when the reference decays little over the lengths."""
    m = np.asarray(lengths, dtype=np.float64)
    y1, s1 = _means(reference, shots)
    y2, s2 = _means(interleaved, shots)

    def resid(x: FloatArray) -> FloatArray:
        a, b, p1, p2 = x
        return np.concatenate([(a * p1**m + b - y1) / s1, (a * p2**m + b - y2) / s2])

    res = least_squares(resid, [0.7, 0.25, 0.99, 0.98], bounds=([0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]))
    cov = np.linalg.pinv(res.jac.T @ res.jac)
    a, b, p1, p2 = (float(v) for v in res.x)
    ls = tuple(int(v) for v in lengths)
    f1 = RBFit(ls, tuple(map(float, y1)), tuple(map(float, s1)), p1, float(math.sqrt(max(cov[2, 2], 0.0))), a, b)
    f2 = RBFit(ls, tuple(map(float, y2)), tuple(map(float, s2)), p2, float(math.sqrt(max(cov[3, 3], 0.0))), a, b)
    return f1, f2, float(cov[2, 3])


def magesan_bound(p_ref: float, p_int: float) -> float:
    """Systematic bound E on the interleaved estimate (Magesan et al. 2012, eq. 5), d = 4."""
    d2 = D * D
    first = (D - 1) * (abs(p_ref - p_int / p_ref) + (1 - p_ref)) / D
    second = (2 * (d2 - 1) * (1 - p_ref)) / (p_ref * d2) + 4 * math.sqrt(max(1 - p_ref, 0.0)) * math.sqrt(d2 - 1) / p_ref
    return float(min(first, second))


@dataclass(frozen=True)
class IRBResult:
    """Interleaved RB of the entangler.

    Attributes:
        reference, interleaved: the two fits.
        gate_error: r = 3/4·(1 − p_int/p_ref).
        gate_error_sigma: its 1σ from the two fits' σ_p.
        systematic_bound: Magesan's E (``magesan_bound``).
        shots_used: shots of both experiments.
    """

    reference: RBFit
    interleaved: RBFit
    gate_error: float
    gate_error_sigma: float
    systematic_bound: float
    shots_used: int

    @property
    def interval(self) -> tuple[float, float]:
        """90 % statistical interval on ``gate_error`` (±1.645σ, the low end at 0)."""
        h = 1.645 * self.gate_error_sigma
        return max(0.0, self.gate_error - h), self.gate_error + h


@dataclass(frozen=True)
class RB2QSettings:
    """What two-qubit (interleaved) RB runs and how the verdict decides.

    Attributes:
        lengths: Clifford counts m (increasing, at least three, in [1, 500]).
        n_random: random sequences per length (>= 2: their spread weights the fit).
        shots: shots per sequence (>= 1).
        threshold: the verdict is ``calibrated`` when the 90 % upper bound on the gate error
            is at most threshold × the coherence limit (> 1).
        seed: seed of the random sequences (a fixed experiment), >= 0.
        stated: the claimed T1/T2 of q0 and q1 (the lab's figures); None: the device
            preset's spec sheet (never the simulated truth of the drawn device).
    """

    lengths: tuple[int, ...] = (1, 8, 32, 96, 256)
    n_random: int = 10
    shots: int = 100
    threshold: float = 2.0
    seed: int = 20261207
    stated: tuple[StatedCoherence, StatedCoherence] | None = None

    def __post_init__(self) -> None:
        ls = tuple(self.lengths)
        require(len(ls) >= 3 and all(isinstance(m, int) and 1 <= m <= 500 for m in ls) and list(ls) == sorted(set(ls)),
                "RB2QSettings.lengths", self.lengths, "at least three increasing integers in [1, 500]")
        object.__setattr__(self, "lengths", ls)
        for name, lo in (("n_random", 2), ("shots", 1)):
            v = getattr(self, name)
            require(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= 10**6, f"RB2QSettings.{name}", v,
                    f"an integer in [{lo}, 1e6]")
        require(finite("RB2QSettings.threshold", self.threshold) > 1, "RB2QSettings.threshold", self.threshold, "> 1")
        require(isinstance(self.seed, int) and self.seed >= 0, "RB2QSettings.seed", self.seed, "an integer >= 0")
        if self.stated is not None:
            require(len(self.stated) == 2 and all(isinstance(s, StatedCoherence) for s in self.stated),
                    "RB2QSettings.stated", self.stated, "None or two StatedCoherence (q0, q1)")

    @property
    def shots_per_experiment(self) -> int:
        """Shots of one RB experiment (reference or interleaved)."""
        return len(self.lengths) * self.n_random * self.shots

    @property
    def total_shots(self) -> int:
        """Shots of interleaved RB: reference and interleaved experiments."""
        return 2 * self.shots_per_experiment

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RB2QSettings:
        """Settings from a plain mapping (a config or an env option), unknown keys refused."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        require(not unknown, "verification", unknown, f"keys from {sorted(known)}")
        return cls(**dict(values))


def _survival(counts: NDArray[np.int64], shots: int, lengths: Sequence[int], n_random: int) -> FloatArray:
    return np.asarray(counts[:, 0] / shots, dtype=np.float64).reshape(len(lengths), n_random)


def run_rb(device: SimulatedMultiQubitDevice, natives: TwoQubitNatives, settings: RB2QSettings | None = None,
           rng: np.random.Generator | None = None) -> tuple[RBFit, int]:
    """Standard two-qubit RB on (q0, q1): (fit, shots used)."""
    s = RB2QSettings() if settings is None else settings
    r = np.random.default_rng(s.seed) if rng is None else rng
    progs = rb_programs(r, s.lengths, s.n_random, natives, interleaved=False)
    counts = device.run_programs(natives.pulses(device.dt_s), progs, QUBITS, s.shots)
    return fit_decay(s.lengths, _survival(counts, s.shots, s.lengths, s.n_random), s.shots), len(progs) * s.shots


def run_irb(device: SimulatedMultiQubitDevice, natives: TwoQubitNatives, settings: RB2QSettings | None = None,
            rng: np.random.Generator | None = None) -> IRBResult:
    """Interleaved RB of the entangler: reference and interleaved sequences in one device
    call (one set of native processes, one drift sample)."""
    s = RB2QSettings() if settings is None else settings
    r = np.random.default_rng(s.seed) if rng is None else rng
    ref = rb_programs(r, s.lengths, s.n_random, natives, interleaved=False)
    inter = rb_programs(r, s.lengths, s.n_random, natives, interleaved=True)
    counts = device.run_programs(natives.pulses(device.dt_s), ref + inter, QUBITS, s.shots)
    return _irb_result(np.asarray(counts), len(ref), s)


def program_sequence(program: Sequence[str | VirtualZ], natives: Mapping[str, PulseSequence]) -> PulseSequence:
    """One RB program as a plain pulse sequence any ``Device`` runs: each native's ops in
    turn with a barrier after it (the natives are sequential, as ``run_programs`` composes
    them), the frame changes where they stand, both qubits measured at the end."""
    ops: list[Any] = []
    for k, item in enumerate(program):
        if isinstance(item, VirtualZ):
            ops.append(item)
            continue
        native = natives.get(item)
        require(native is not None, f"program[{k}]", item, f"a VirtualZ or one of {sorted(natives)}")
        assert native is not None
        ops += [*native.ops, Barrier()]
    return PulseSequence((*ops, Measure(QUBITS)))


def run_irb_sequences(device: Device, natives: TwoQubitNatives, settings: RB2QSettings | None = None) -> IRBResult:
    """Interleaved RB as ``run_irb``, on any envs ``Device``: the programs become pulse
    sequences (``program_sequence``), all run in one ``Device.run`` call, so a journaled
    backend charges, checks and replays them like any other call. Every sample is played
    (no composed processes): the cost grows with the sequences' length."""
    s = RB2QSettings() if settings is None else settings
    r = np.random.default_rng(s.seed)
    ref = rb_programs(r, s.lengths, s.n_random, natives, interleaved=False)
    inter = rb_programs(r, s.lengths, s.n_random, natives, interleaved=True)
    pulses = natives.pulses(device.dt_s)
    counts = device.run([program_sequence(p, pulses) for p in ref + inter], s.shots)
    return _irb_result(np.asarray(counts), len(ref), s)


def _irb_result(counts: NDArray[np.int64], k: int, s: RB2QSettings) -> IRBResult:
    """Interleaved RB's fit from the counts of the ``k`` reference then the interleaved programs."""
    f_ref, f_int, c12 = fit_joint(s.lengths, _survival(counts[:k], s.shots, s.lengths, s.n_random),
                                  _survival(counts[k:], s.shots, s.lengths, s.n_random), s.shots)
    if f_ref.p > 0:
        # r = 3/4·(1 − p2/p1): gradient (3/4·p2/p1², −3/4/p1) on the fit's covariance.
        g1, g2 = 0.75 * f_int.p / f_ref.p**2, -0.75 / f_ref.p
        var = g1**2 * f_ref.p_sigma**2 + g2**2 * f_int.p_sigma**2 + 2 * g1 * g2 * c12
        err, sig = 0.75 * (1.0 - f_int.p / f_ref.p), math.sqrt(max(var, 0.0))
    else:
        err, sig = 0.75, math.inf
    return IRBResult(f_ref, f_int, float(err), float(sig), magesan_bound(f_ref.p, f_int.p), int(counts.shape[0] * s.shots))


def stated_of_preset(model: DeviceModel) -> tuple[StatedCoherence, StatedCoherence]:
    """The T1/T2 a spec sheet states for q0 and q1: the given model's (pass the preset's
    nominal model, not a drawn device's truth)."""
    out = []
    for q in QUBITS:
        m = model.mode(q)
        out.append(StatedCoherence(float(m.t1_s), float(min(m.t2_s, 2 * m.t1_s))))
    return out[0], out[1]


def coherence_limit(stated: Sequence[StatedCoherence], duration_s: float) -> float:
    """Coherence-limited 1 − F of a two-qubit gate of ``duration_s`` from stated T1/T2."""
    return float(metrics.coherence_limit_product(duration_s, [s.t1_s for s in stated], [s.t2_s for s in stated]))


def verdict_of(irb: IRBResult, limit: float, threshold: float) -> Verdict:
    """The calibrated / failed verdict of an interleaved-RB result against threshold × limit.

    Calibrated when the 90 % statistical upper bound is within threshold × limit; failed as
    ``RESIDUAL_ERROR`` when even the lower bound is above it, else ``BUDGET_TOO_SMALL``
    (the shots cannot decide). Magesan's systematic bound is reported, not decided on: on
    these gates it is set by the reference's own error and exceeds the gate error."""
    lo, hi = irb.interval
    bar = threshold * limit
    checks = {"p_ref": irb.reference.p, "p_ref_sigma": irb.reference.p_sigma, "p_int": irb.interleaved.p,
              "p_int_sigma": irb.interleaved.p_sigma, "epc_ref": irb.reference.epc,
              "gate_error_sigma": irb.gate_error_sigma, "systematic_bound": irb.systematic_bound,
              "threshold": bar}
    if irb.reference.p < MIN_REFERENCE_P or not math.isfinite(irb.gate_error_sigma):
        # Every reference Clifford holds 1.5 entanglers on average: a reference that has
        # decayed by the shortest lengths leaves nothing to interleave against.
        return failed(Reason.RESIDUAL_ERROR, limit, "reference",
                      f"reference RB decays with p = {irb.reference.p:.3g} < {MIN_REFERENCE_P} (error per Clifford "
                      f"{irb.reference.epc:.3g}): the natives are far from calibrated", irb.shots_used, checks)
    if hi <= bar:
        return Verdict("calibrated", None, irb.gate_error, (lo, hi), limit, "coherence" if irb.gate_error <= limit
                       else "residual", irb.shots_used, checks,
                       f"interleaved RB: upper bound {hi:.3g} <= {threshold:g} × coherence limit {limit:.3g}")
    if lo > bar:
        return failed(Reason.RESIDUAL_ERROR, limit, "residual",
                      f"interleaved RB: gate error {irb.gate_error:.3g}, lower bound {lo:.3g} > {threshold:g} × "
                      f"coherence limit {limit:.3g}", irb.shots_used, checks, irb.gate_error, (lo, hi))
    return failed(Reason.BUDGET_TOO_SMALL, limit, "shots",
                  f"interleaved RB: interval [{lo:.3g}, {hi:.3g}] straddles {threshold:g} × coherence limit "
                  f"{limit:.3g}: too few shots to decide", irb.shots_used, checks, irb.gate_error, (lo, hi))


def verify_entangler(device: SimulatedMultiQubitDevice, natives: TwoQubitNatives, settings: RB2QSettings,
                     stated: Sequence[StatedCoherence]) -> Verdict:
    """Interleaved RB of ``natives``' gate on ``device``, judged against the stated coherence."""
    limit = coherence_limit(stated, natives.duration_s(device))
    return verdict_of(run_irb(device, natives, settings), limit, settings.threshold)


def session_verdict(device: Device, entangler: c2.Entangler, gate_ops: Sequence[Any],
                    settings: RB2QSettings | Mapping[str, Any], spec: DeviceModel | OperatorModel,
                    channels: Any) -> Verdict:
    """``end_of_episode_verdict`` on any envs ``Device``, from the spec sheet alone (a lab
    session's verdict): interleaved RB as plain pulse sequences (``run_irb_sequences``),
    the single-qubit natives the textbook pulses of ``spec`` (the preset's nominal model),
    the coherence limit ``settings.stated`` or else the spec sheet's, the gate's duration
    from its schedule on ``channels`` (the preset's ``ChannelSet``)."""
    settings, natives, stated = _verdict_inputs(entangler, gate_ops, settings, spec, spec)
    duration = compile_schedule(natives.gate, channels, where="gate").duration_s
    return verdict_of(run_irb_sequences(device, natives, settings), coherence_limit(stated, duration),
                      settings.threshold)


def end_of_episode_verdict(device: SimulatedMultiQubitDevice, entangler: c2.Entangler, gate_ops: Sequence[Any],
                           settings: RB2QSettings | Mapping[str, Any], spec: DeviceModel | OperatorModel) -> Verdict:
    """An env's episode-end verdict on its final gate (``gate_ops``: its plays, barriers and
    trailing frame changes), by interleaved RB on the env's device.

    The single-qubit natives are the textbook pulses of the device's qubits
    (``nominal_single_qubit``, 20 samples); the coherence limit comes from
    ``settings.stated`` or else the spec sheet ``spec`` (the preset's nominal model), never
    from the drawn device's truth."""
    settings, natives, stated = _verdict_inputs(entangler, gate_ops, settings, spec, device.params.model)
    return verify_entangler(device, natives, settings, stated)


def _verdict_inputs(entangler: c2.Entangler, gate_ops: Sequence[Any], settings: RB2QSettings | Mapping[str, Any],
                    spec: DeviceModel | OperatorModel, natives_model: Any
                    ) -> tuple[RB2QSettings, TwoQubitNatives, tuple[StatedCoherence, StatedCoherence]]:
    """The settings, the natives (``gate_ops``' plays and trailing frame changes, the textbook
    single-qubit pulses of ``natives_model``) and the stated coherence (``settings.stated``
    or the spec sheet ``spec``'s) of a verdict."""
    if isinstance(settings, Mapping):
        settings = RB2QSettings.from_mapping(settings)
    require(isinstance(spec, DeviceModel), "spec", type(spec).__name__, "a DeviceModel (the preset's)")
    require(isinstance(natives_model, DeviceModel), "device.params.model", type(natives_model).__name__,
            "a DeviceModel")
    assert isinstance(spec, DeviceModel) and isinstance(natives_model, DeviceModel)
    plays = tuple(op for op in gate_ops if not isinstance(op, VirtualZ))
    frames = tuple(op for op in gate_ops if isinstance(op, VirtualZ))
    single = (nominal_single_qubit(natives_model, QUBITS[0]), nominal_single_qubit(natives_model, QUBITS[1]))
    natives = TwoQubitNatives(entangler, PulseSequence(plays), single, frames)
    stated = settings.stated if settings.stated is not None else stated_of_preset(spec)
    return settings, natives, stated


__all__ = [
    "IRBResult",
    "RB2QSettings",
    "RBFit",
    "SingleQubitNative",
    "TwoQubitNatives",
    "coherence_limit",
    "end_of_episode_verdict",
    "fit_decay",
    "fit_joint",
    "magesan_bound",
    "nominal_single_qubit",
    "program",
    "program_sequence",
    "rb_programs",
    "run_irb",
    "run_irb_sequences",
    "run_rb",
    "session_verdict",
    "stated_of_preset",
    "verdict_of",
    "verify_entangler",
]
