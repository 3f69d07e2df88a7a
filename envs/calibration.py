"""The calibration task shared by the environments and the baselines.

One place decides how a DRAG gate is parametrised, which error-amplifying sequences are
run to learn about it, how their outcomes are read, and how shots are counted, so that an
RL agent and a textbook calibration spend the same shots on the same device:

- ``DragGate`` (fixed shape) + ``DragParams`` (amplitude, beta_s, detuning_hz, phase): the
  X gate is a lifted-Gaussian DRAG pulse (same formula as ``pulses.DragPulse``); SX is the
  half-area pulse with the same β and detuning. ``detuning_hz`` is a drive-frequency
  correction: a continuous frame ramp e^{−i2π·Δ·t} over the *whole sequence*, Delays
  included, realised as one waveform per gate plus ``VirtualZ(−2π·Δ·duration)`` after every
  Play and Delay, so it really cancels a qubit detuning Δ. Y, X̄ = X(−π), SY are the same
  Play framed by VirtualZ, so a sequence needs only two distinct waveforms (X and SX) and
  a device that caches propagators by waveform computes two per step.
- ``Probe``: one error-amplifying sequence whose ideal excited population is 1/2 and
  whose deviation from 1/2 is signed and grows with depth (see ``Probe`` for the three
  families: amplitude, DRAG, Ramsey).
- ``analyse``: side-effect free reading of measured populations into per-gate rotation
  error angles and an estimated infidelity (the measurement-only reward).
- ``CalibrationTask``: devices + gate + probes + shot counter. ``measure`` runs all probes
  on B devices in one batched call when they support it (``protocol.BatchedDevice``); ``true_metrics`` evaluates the
  gate on each device's hidden current truth (simulation only, for info/evaluation).
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import finite, require
from .physics import (
    Transmon,
    coherence_limit,
    gate_fidelity,
    leakage,
    leakage_superoperator,
    unitaries,
)
from .physics.calibration_kernels import (
    PER_SAMPLE,
    PLUS_CONST,
    RAMP,
    drag_factors,
    robust_phase_estimation,
    sine_signal,
    wrapped_frame_phases,
)
from .physics.fast import hermitian_basis
from .physics.metrics import gate_fidelities, superoperator_metrics_real
from .protocol import (
    BatchedDevice,
    Delay,
    Device,
    Play,
    PulseSequence,
    SimulatedTruth,
    VirtualZ,
    batched_class,
    run_on_devices,
    truth_class,
)
from .sequence_compiler import PlayOperators
from .sequence_template import DELAY, FRAME, PLAY, SequenceTemplate

FloatArray = NDArray[np.float64]
ComplexArray = NDArray[np.complex128]

TWO_PI = 2.0 * math.pi
PARAMETER_NAMES: tuple[str, ...] = ("amplitude", "beta_s", "detuning_hz", "phase")
ProbeKind = Literal["amplitude", "drag", "ramsey"]


# -- the gate ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DragParams:
    """Calibration parameters of a DRAG X gate (SX: half area, same β, detuning, phase).

    Attributes:
        amplitude: peak of the X pulse's I quadrature, full-scale units, in [−1, 1].
        beta_s: DRAG coefficient β in seconds (Q = β·dI/dt).
        detuning_hz: drive-frequency correction Δ in Hz (frame ramp over the whole sequence).
        phase: drive phase in rad (rotation axis in the XY plane).
    """

    amplitude: float
    beta_s: float
    detuning_hz: float = 0.0
    phase: float = 0.0

    def __post_init__(self) -> None:
        for name in PARAMETER_NAMES:
            finite(f"DragParams.{name}", getattr(self, name))
        require(abs(self.amplitude) <= 1.0, "DragParams.amplitude", self.amplitude, "[-1, 1]")

    def as_array(self) -> FloatArray:
        """(4,) in the order of ``PARAMETER_NAMES``."""
        return np.array(self.as_tuple())

    def as_tuple(self) -> tuple[float, float, float, float]:
        """The four values as Python floats, in the order of ``PARAMETER_NAMES``."""
        return (float(self.amplitude), float(self.beta_s), float(self.detuning_hz), float(self.phase))

    @classmethod
    def from_array(cls, values: ArrayLike) -> DragParams:
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        require(v.shape == (4,), "values", v.shape, "shape (4,) in PARAMETER_NAMES order")
        return cls(*(float(x) for x in v))


@dataclass(frozen=True)
class DragGate:
    """Fixed shape of the calibrated gates: lifted Gaussian of ``duration_s``, σ = ``sigma_s``.

    Attributes:
        duration_s: pulse length T in seconds (a whole number of device samples).
        sigma_s: Gaussian width in seconds; None means T/4.
        sx_area_fraction: SX area relative to X (0.5: the half-area pulse).
    """

    duration_s: float = 20e-9
    sigma_s: float | None = None
    sx_area_fraction: float = 0.5

    def __post_init__(self) -> None:
        require(finite("DragGate.duration_s", self.duration_s) > 0, "DragGate.duration_s",
                self.duration_s, "> 0 s")
        if self.sigma_s is not None:
            require(finite("DragGate.sigma_s", self.sigma_s) > 0, "DragGate.sigma_s",
                    self.sigma_s, "> 0 s or None")
        require(0 < finite("DragGate.sx_area_fraction", self.sx_area_fraction) <= 1,
                "DragGate.sx_area_fraction", self.sx_area_fraction, "(0, 1]")

    def n_samples(self, dt_s: float) -> int:
        n = round(self.duration_s / dt_s)
        if not (n >= 1 and abs(n * dt_s - self.duration_s) <= 1e-6 * self.duration_s):
            # (the message only when it fails: formatting it costs more than the check)
            require(False, "DragGate.duration_s", self.duration_s, f"a whole number of samples of dt_s={dt_s}")
        return n

    def envelope(self, dt_s: float) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Unit lifted Gaussian g, dg/dt (1/s) and the midpoint times t − T/2, each (S,).

        Same formula and sampling (interval midpoints) as ``pulses.DragPulse``; cached
        (read-only arrays), since every step of every copy needs it.
        """
        return _envelope(self, float(dt_s))

    def _envelope(self, dt_s: float) -> tuple[FloatArray, FloatArray, FloatArray]:
        n = self.n_samples(dt_s)
        t = (np.arange(n, dtype=np.float64) + 0.5) * dt_s
        half = 0.5 * n * dt_s
        sig = half / 2.0 if self.sigma_s is None else float(self.sigma_s)
        g0 = math.exp(-(half**2) / (2.0 * sig**2))
        x: FloatArray = t - half
        g = np.exp(-(x**2) / (2.0 * sig**2))
        env: FloatArray = (g - g0) / (1.0 - g0)
        deriv: FloatArray = (-x / sig**2) * g / (1.0 - g0)
        for arr in (env, deriv, x):
            arr.setflags(write=False)
        return env, deriv, x

    def waveforms(self, params: ArrayLike, dt_s: float, area_fraction: float = 1.0) -> ComplexArray:
        """Samples of the gate for a batch of parameter rows.

        The detuning ramp is referenced to the pulse centre (as ``DragPulse``), so the
        rotation axis stays at ``phase`` whatever the detuning.

        Args:
            params: (B, 4) rows in ``PARAMETER_NAMES`` order (or (4,)).
            area_fraction: 1 for X, ``sx_area_fraction`` for SX.
        Returns:
            (B, S) complex waveforms ((S,) for a 1-D ``params``); |u| is clipped to 1 in
            magnitude, as a saturating AWG would.
        """
        p = np.asarray(params, dtype=np.float64)
        single = p.ndim == 1
        w = self._waveforms(np.atleast_2d(p), dt_s, (area_fraction,))[:, 0]
        return w[0] if single else w

    def _waveforms(self, p: FloatArray, dt_s: float, fractions: tuple[float, ...]) -> ComplexArray:
        """(B, F, S): ``waveforms(p, dt_s, f)`` for each area fraction f of (B, 4) rows ``p``,
        sharing the envelope and the phase ramp.

        Bit for bit the array operations (amp·shape)·e^{i·rot}, shape = g + i·β·dg, rot =
        −2π·Δ·x + phase: a compiled loop forms amp·shape and i·rot exactly as NumPy does
        (plain IEEE, the real operand promoted to complex), the exponential and the complex
        product stay NumPy's (that product is fused, FMA, where the CPU has it)."""
        g, dg, x = self.envelope(dt_s)
        p = np.ascontiguousarray(p, dtype=np.float64)
        scaled = np.empty((p.shape[0], len(fractions), g.size), dtype=np.complex128)
        exponent = np.empty((p.shape[0], g.size), dtype=np.complex128)
        bound = drag_factors(p, g, dg, x, np.array(fractions, dtype=np.float64), scaled, exponent)
        w = scaled * np.exp(exponent)[:, None, :]
        # |w| is |amp·shape| times a unit phase factor, up to a few ulps of rounding; below
        # this bound no sample can exceed 1, so the clip (three array passes) is skipped.
        if not bound <= _NO_CLIP_BOUND:
            mag = np.abs(w)
            over = mag > 1.0
            if over.any():
                w = np.where(over, w / np.maximum(mag, 1.0), w)
        return w

    def area_s(self, dt_s: float) -> float:
        """Σ_k g_k·dt of the unit envelope (seconds)."""
        return float(np.sum(self.envelope(dt_s)[0])) * dt_s


# ``drag_factors``' bound on |amp·shape| under which ``DragGate._waveforms`` skips its clip:
# far enough below 1 that no rounding of the phase factor, the product or the modulus
# (each within a few ulps) can lift a sample above 1.
_NO_CLIP_BOUND = 1.0 - 1e-9


@functools.lru_cache(maxsize=64)
def _envelope(gate: DragGate, dt_s: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    return gate._envelope(dt_s)


def nominal_params(
    transmon: Transmon, gate: DragGate, amplitude_scale: float = 1.0
) -> DragParams:
    """Textbook X gate: π area on two levels, β = −1/(2·α_ang), Δ = the qubit's detuning.

    ``transmon`` is the model the device simulates (``SimulatedDevice.current_transmon()``
    already folds the amplitude scale into Ω_R); ``amplitude_scale`` multiplies Ω_R again
    for a bare ``DeviceParams.transmon``.
    """
    # A pure function of hashable frozen values with a frozen result: cached (every env
    # reset asks for it, mostly for the same preset model).
    return _nominal_params(transmon, gate, float(amplitude_scale))


@functools.lru_cache(maxsize=256)
def _nominal_params(transmon: Transmon, gate: DragGate, amplitude_scale: float) -> DragParams:
    amp = 1.0 / (2.0 * transmon.rabi_max_hz * amplitude_scale * gate.area_s(transmon.dt_s))
    beta = -1.0 / (2.0 * TWO_PI * transmon.anharmonicity_hz)
    return DragParams(min(amp, 1.0), beta, transmon.detuning_hz, 0.0)


def optimal_params(
    transmon: Transmon, gate: DragGate, amplitude_scale: float = 1.0, *, target: str = "X",
    area_fraction: float = 1.0,
) -> DragParams:
    """Parameters that cancel the hidden errors (simulation knowledge, never for an agent).

    Amplitude and β minimise the closed-system 1 − F (virtual Z) on this device's exact
    N-level model, by Nelder-Mead from ``nominal_params``. The detuning correction is set
    to the qubit's detuning: its job is the frame over a whole circuit (idle times
    included), which a single gate's fidelity barely sees; optimising it on one gate
    would trade a ~1e-6 gain inside the gate for a MHz frame error between gates.
    """
    from scipy.optimize import minimize

    if amplitude_scale != 1.0:
        transmon = transmon.replace(rabi_max_hz=transmon.rabi_max_hz * amplitude_scale)
    p0 = nominal_params(transmon, gate).as_array()


    scale = np.array([p0[0] * 0.01, abs(p0[1]) * 0.1 + 1e-12])

    def cost(z: FloatArray) -> float:
        p = p0.copy()
        p[:2] = p0[:2] + z * scale
        w = gate.waveforms(p, transmon.dt_s, area_fraction)
        u = unitaries(transmon, w[None])
        return float(np.log10(1.0 - gate_fidelity(u, target, kind="unitary", virtual_z=True)[0] + 1e-16))

    res = minimize(cost, np.zeros(2), method="Nelder-Mead",
                   options={"xatol": 1e-4, "fatol": 1e-5, "maxiter": 300})
    best = p0.copy()
    best[:2] = p0[:2] + res.x * scale
    return DragParams.from_array(best)


# -- error-amplifying probes -------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One error-amplifying sequence with ideal excited population 1/2.

    Families (X̄ = X with phase π, SY = SX with phase π/2, all through VirtualZ):

    - ``amplitude``, depth n (even): SX · X^n. An over-rotation ε per X turns by
      (n + 1/2)·π·ε past the equator: P1 = (1 + sin((n + ½)·π·ε))/2, signed.
    - ``drag``, depth n: SY · (X̄·X)^n. A DRAG (β) error tilts X and X̄ oppositely, so each
      pair rotates about Y by 2φ: P1 = (1 − sin(2nφ))/2 from the +X state, signed.
    - ``ramsey``, delay τ: SX · Delay(τ) · VirtualZ(π/2) · SX. A residual detuning
      δ − Δ precesses by 2π(δ − Δ)τ: P1 = (1 + sin(2π(δ − Δ)τ))/2, signed.

    ``gain`` maps the measured angle asin(2·P1 − 1) to a per-gate error angle (rad per
    gate) so that the estimated infidelity of a gate is angle²/6 (as for a small
    rotation error, 1 − F = (2/3)·sin²(θ/2)); for Ramsey the per-gate angle is the phase
    that the residual detuning accumulates over one gate duration.
    """

    kind: ProbeKind
    depth: int = 0
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        require(self.kind in ("amplitude", "drag", "ramsey"), "Probe.kind", self.kind,
                "'amplitude', 'drag' or 'ramsey'")
        if self.kind == "ramsey":
            require(finite("Probe.delay_s", self.delay_s) > 0, "Probe.delay_s", self.delay_s,
                    "> 0 s for a Ramsey probe")
        else:
            require(isinstance(self.depth, int | np.integer) and 0 <= self.depth <= 4096,
                    "Probe.depth", self.depth, "an integer in [0, 4096]")
            if self.kind == "amplitude":
                require(self.depth % 2 == 0, "Probe.depth", self.depth,
                        "even for an amplitude probe (SX·X^n must end on the equator)")

    @property
    def name(self) -> str:
        if self.kind == "ramsey":
            return f"ramsey_{self.delay_s * 1e9:g}ns"
        return f"{self.kind}_{self.depth}"

    def gain(self, gate_duration_s: float) -> float:
        """d(asin(2·P1 − 1)) / d(per-gate error angle)."""
        if self.kind == "amplitude":
            return self.depth + 0.5  # angle error per X is π·ε; SX adds half of it
        if self.kind == "drag":
            return 2.0 * self.depth
        return self.delay_s / gate_duration_s

    def n_plays(self) -> int:
        if self.kind == "amplitude":
            return 1 + self.depth
        if self.kind == "drag":
            return 1 + 2 * self.depth
        return 2

    def tokens(self, dt_s: float) -> tuple[tuple[str, Any], ...]:
        """The probe's layout, the one definition ``sequence`` and the task's
        ``SequenceTemplate`` are both built from: ``("play", X_SLOT | SX_SLOT)``,
        ``("delay", samples)`` and ``("frame", (const, ramp))`` for VirtualZ(const + ramp)
        with ramp None, ``"gate"`` (−2π·Δ·gate duration) or n (−2π·Δ·n·dt_s) and const None
        for a bare ramp (see ``_frame_phase``)."""
        x, sx = (PLAY, X_SLOT), (PLAY, SX_SLOT)
        ramp: tuple[str, Any] = (FRAME, (None, "gate"))  # frame advance over one gate
        toks: list[tuple[str, Any]]
        if self.kind == "amplitude":
            toks = [sx, *([ramp, x]) * self.depth]
        elif self.kind == "drag":
            # SY, then pairs X̄·X: the first X̄ undoes SY's frame (π/2), later ones X's (0).
            toks = [(FRAME, (math.pi / 2, None)), sx]
            if self.depth:
                tail = [(FRAME, (-math.pi, "gate")), x]
                toks += [(FRAME, (math.pi / 2, "gate")), x, *tail]
                toks += ([(FRAME, (math.pi, "gate")), x, *tail]) * (self.depth - 1)
        else:
            n = max(1, round(self.delay_s / dt_s))
            toks = [sx, ramp, (DELAY, n), (FRAME, (math.pi / 2, n)), sx]
        return tuple(toks)

    def sequence(self, x: Play, sx: Play, gate_s: float, detuning_hz: float, dt_s: float) -> PulseSequence:
        """The probe as a ``PulseSequence`` for one parameter set (X and SX plays given).

        Frames: a gate with axis phase φ is VirtualZ(φ)·Play·VirtualZ(−φ); after every Play
        and Delay the frame advances by −2π·Δ·duration (the detuning correction's ramp).
        Adjacent frame changes are merged, so a repeated block is one repeated pattern;
        a frame change of (wrapped) phase 0 is left out. The same layout as ``tokens``
        (tests hold the two to the bit), written with repeated patterns because the
        generic path builds it for every copy at every step.
        """
        adv = -TWO_PI * detuning_hz * gate_s  # frame advance over one gate
        vz: dict[float, VirtualZ] = {}

        def frame(phase: float) -> list[Any]:
            ph = _wrap(phase)
            if not ph:
                return []
            if ph not in vz:
                vz[ph] = VirtualZ(ph)
            return [vz[ph]]

        ops: list[Any]
        if self.kind == "amplitude":
            ops = [sx, *([*frame(adv), x]) * self.depth]
        elif self.kind == "drag":
            # SY, then pairs X̄·X: the first X̄ undoes SY's frame (π/2), later ones X's (0).
            ops = [*frame(math.pi / 2), sx]
            if self.depth:
                tail = [*frame(-math.pi + adv), x]
                ops += [*frame(math.pi / 2 + adv), x, *tail]
                ops += ([*frame(math.pi + adv), x, *tail]) * (self.depth - 1)
        else:
            n = max(1, round(self.delay_s / dt_s))
            ops = [sx, *frame(adv), Delay(n * dt_s),
                   *frame(-TWO_PI * detuning_hz * n * dt_s + math.pi / 2), sx]
        return PulseSequence(tuple(ops), name=self.name)


# Waveform slots of the probe layouts (``Probe.tokens``, ``CalibrationTask.template``).
X_SLOT, SX_SLOT = 0, 1


def _frame_phase(expr: tuple[float | None, Any], detuning_hz: Any, gate_s: float, dt_s: float) -> Any:
    """const + ramp of a ``Probe.tokens`` frame, for a float or an array of detunings
    (the same floating-point operations in the same order either way)."""
    const, ramp = expr
    if ramp is None:
        return const
    r = -TWO_PI * detuning_hz * gate_s if ramp == "gate" else -TWO_PI * detuning_hz * ramp * dt_s
    return r if const is None else const + r


def _frame_phases(exprs: tuple[Any, ...], detuning_hz: FloatArray, gate_s: float, dt_s: float) -> FloatArray:
    """(B, F) ``_wrap(_frame_phase(...))`` of every expression for (B,) detunings: the same
    operations on every element, in one compiled loop."""
    const, mult, form = _frame_form(exprs, gate_s)
    out = np.empty((detuning_hz.shape[0], len(exprs)))
    wrapped_frame_phases(np.ascontiguousarray(detuning_hz, dtype=np.float64), const, mult, form, dt_s, out)
    return out


@functools.lru_cache(maxsize=64)
def _frame_form(exprs: tuple[Any, ...], gate_s: float) -> tuple[FloatArray, FloatArray, NDArray[np.int64]]:
    """``_frame_phases``' view of the expressions (F,): constants, ramp factors (gate_s or
    n) and flags (``RAMP``, ``PER_SAMPLE``, ``PLUS_CONST``)."""
    const = np.array([0.0 if c is None else float(c) for c, _ in exprs])
    mult = np.array([0.0 if r is None else gate_s if r == "gate" else float(r) for _, r in exprs])
    form = np.array([0 if r is None else RAMP | (0 if r == "gate" else PER_SAMPLE)
                     | (0 if c is None else PLUS_CONST) for c, r in exprs], dtype=np.int64)
    out = (const, mult, form)
    for a in out:
        a.setflags(write=False)
    return out


def _wrap(phase: float) -> float:
    return float((phase + math.pi) % TWO_PI - math.pi)


# One step of a gate sequence: ("X" | "SX", axis phase in rad) or ("D", delay in seconds).
Step = tuple[str, float]


def gate_steps_sequence(steps: Sequence[Step], x: Play, sx: Play, gate_s: float, detuning_hz: float,
                        dt_s: float, name: str = "") -> PulseSequence:
    """A ``PulseSequence`` from gate steps, with frames merged into one VirtualZ per change.

    Args:
        steps: ("X", φ), ("SX", φ) or ("D", τ_s) in time order.
        x, sx: the Plays of the X and SX waveforms (reused objects: the device caches
            propagators by waveform and merges repeated identical operations).
        gate_s: duration of one gate (frame advance per Play).
        detuning_hz: drive-frequency correction Δ of the parameters that made x and sx; it
            advances the frame by −2π·Δ·duration after every Play and Delay.
        dt_s: sample time (a delay is a whole number of samples, at least one).
    """
    ops: list[Play | VirtualZ | Delay] = []
    ramp = 0.0  # frame the detuning correction has accumulated so far
    emitted = 0.0  # sum of VirtualZ phases already in ops
    vz: dict[float, VirtualZ] = {}
    for kind, value in steps:
        if kind == "D":
            n = max(1, round(value / dt_s))
            ops.append(Delay(n * dt_s))
            ramp -= TWO_PI * detuning_hz * n * dt_s
            continue
        want = _wrap(value + ramp - emitted)
        if want:
            ops.append(vz.setdefault(want, VirtualZ(want)))
            emitted += want
        ops.append(x if kind == "X" else sx)
        ramp -= TWO_PI * detuning_hz * gate_s
    return PulseSequence(tuple(ops), name=name)


def default_probes() -> tuple[Probe, ...]:
    """Two depths per family, about six times apart: the shallow one stays unambiguous
    over the default miscalibration (±5 % amplitude, ±50 % β, ±1 MHz) and predicts the
    deep one well enough to unwrap it; the deep one resolves what still matters near the
    coherence limit (~0.1 % amplitude, ~5 % β, ~20 kHz) with tens of shots. (A scripted
    fit through these probes reaches a median 1.4× the coherence limit with 960 shots on
    sampled devices, against 3× with depths four times apart; the slow test
    ``test_scripted_calibration_within_1000_shots`` keeps that honest.)"""
    return (
        Probe("amplitude", 4), Probe("amplitude", 24),
        Probe("drag", 2), Probe("drag", 12),
        Probe("ramsey", delay_s=0.1e-6), Probe("ramsey", delay_s=0.6e-6),
    )


@functools.lru_cache(maxsize=32)
def _probe_template(probes: tuple[Probe, ...], dt_s: float) -> tuple[SequenceTemplate, tuple[Any, ...]]:
    exprs: dict[Any, int] = {}
    seqs = []
    for pr in probes:
        seq = []
        for kind, a in pr.tokens(dt_s):
            seq.append((kind, exprs.setdefault(a, len(exprs)) if kind == FRAME else a))
        seqs.append(tuple(seq))
    template = SequenceTemplate(tuple(seqs), 2, len(exprs), tuple(pr.name for pr in probes))
    return template, tuple(exprs)


@dataclass(frozen=True)
class Analysis:
    """What the populations say. Shapes: angles (B, K), family_angle (B, 3), infidelity (B,)."""

    angles: FloatArray
    family_angle: FloatArray
    infidelity: FloatArray


FAMILIES: tuple[ProbeKind, ...] = ("amplitude", "drag", "ramsey")


@functools.lru_cache(maxsize=64)
def _analysis_ranks(kinds: tuple[str, ...], gains: tuple[float, ...]) -> tuple[
        tuple[NDArray[np.int64], NDArray[np.int64], FloatArray], ...]:
    """For ``analyse``: per depth rank r, the families that have an r-th probe, those
    probes' columns (each family's probes sorted by gain) and their weights gain²."""
    g = np.array(gains)
    per_fam = [sorted((k for k, kind in enumerate(kinds) if kind == fam), key=lambda k: g[k])
               for fam in FAMILIES]
    out = []
    for r in range(max((len(ks) for ks in per_fam), default=0)):
        fams = [j for j, ks in enumerate(per_fam) if len(ks) > r]
        cols = [per_fam[j][r] for j in fams]
        # gain² as the scalar power the per-family loop used (bit for bit)
        weights = np.array([g[k] ** 2 for k in cols])
        out.append((np.array(fams, dtype=np.int64), np.array(cols, dtype=np.int64), weights))
    return tuple(out)


def _rows(values: ArrayLike) -> FloatArray:
    """``np.atleast_2d(np.asarray(values, dtype=np.float64))``: a 2-D float64 array is
    returned as is, which is what those calls return for it, without their call cost
    (every env step passes its rows through several of these)."""
    if type(values) is np.ndarray and values.ndim == 2 and values.dtype == np.float64:
        return values
    return np.atleast_2d(np.asarray(values, dtype=np.float64))


def analyse(p1: ArrayLike, probes: Sequence[Probe], gate_duration_s: float) -> Analysis:
    """Read measured excited populations (B, K) into per-gate error angles.

    Per probe: θ = asin(clip(2·P1 − 1)) is the accumulated angle modulo the sine's
    ambiguity (θ or π − θ, plus 2πm). Per family, robust phase estimation: probes are
    taken from shallow to deep; each deeper probe's angle is unwrapped to the candidate
    closest to what the estimate so far predicts (gain × angle), and the estimate becomes
    the gain²-weighted mean (inverse variance under shot noise) of the unwrapped angles,
    which the deep probes dominate. Estimated infidelity: Σ_family angle²/6.
    NaN populations (probe not run) are ignored. Pure function, no shots.
    """
    p = _rows(p1)
    gains, (rank_fam, rank_col, rank_w) = _analysis_setup(tuple(probes), float(gate_duration_s))
    # The arcsine stays NumPy's; the plain-IEEE steps around it are compiled loops (on a
    # few rows, each array operation costs more to call than to compute).
    theta = np.arcsin(sine_signal(np.ascontiguousarray(p)))
    return Analysis(*robust_phase_estimation(theta, gains, rank_fam, rank_col, rank_w))


@functools.lru_cache(maxsize=64)
def _analysis_setup(probes: tuple[Probe, ...], gate_duration_s: float) -> tuple[
        FloatArray, tuple[NDArray[np.int64], NDArray[np.int64], FloatArray]]:
    """``analyse``'s per-probe-set constants (gains and ``_flat_ranks``), built once per
    probe set and gate duration instead of on every call (private: nobody writes them)."""
    gains = np.array([pr.gain(gate_duration_s) for pr in probes])
    return gains, _flat_ranks(tuple(pr.kind for pr in probes), tuple(gains.tolist()))


@functools.lru_cache(maxsize=64)
def _flat_ranks(kinds: tuple[str, ...], gains: tuple[float, ...]
                ) -> tuple[NDArray[np.int64], NDArray[np.int64], FloatArray]:
    """``_analysis_ranks`` as (R, F) arrays, padded with family −1."""
    ranks = _analysis_ranks(kinds, gains)
    n_fam = len(FAMILIES)
    fam = np.full((len(ranks), n_fam), -1, dtype=np.int64)
    col = np.zeros((len(ranks), n_fam), dtype=np.int64)
    w = np.zeros((len(ranks), n_fam))
    for r, (f, c, wt) in enumerate(ranks):
        fam[r, :f.size], col[r, :c.size], w[r, :wt.size] = f, c, wt
    return fam, col, w


# -- devices, shots and truth ------------------------------------------------------------------


def true_metrics_devices(
    devices: Sequence[Device], waveforms: ComplexArray, target: str | NDArray[np.complex128] = "X",
) -> dict[str, FloatArray] | None:
    """Truth of one played waveform per device, at each device's clock (simulation only).

    Uses ``SimulatedTruth.play_operators`` (exactly what the device applies for a Play,
    AWG distortion included) in one batched call. Fidelities are on the qubit subspace
    of the open (or closed, as the device simulates) system, with virtual Z and raw.

    Args:
        devices: B simulated devices (same levels, dt_s, open_system).
        waveforms: (B, S) waveforms as sent to the devices.
    Returns:
        dict of (B,) arrays: fidelity, fidelity_raw, leakage, coherence_limit; None when a
        device is not simulated (no truth on hardware).
    """
    truth = truth_class(devices)
    if truth is None:
        return None
    devs: list[SimulatedTruth] = list(devices)  # type: ignore[arg-type]
    ops = truth.play_operators(devs, waveforms)
    return _truth_of_operators(devs, ops, np.asarray(waveforms).shape[-1], target)


def _truth_of_operators(devs: list[SimulatedTruth], ops: ComplexArray, samples: int,
                        target: str | NDArray[np.complex128],
                        models: Sequence[Transmon] | None = None) -> dict[str, FloatArray]:
    """``true_metrics_devices`` from the operators (B, N², N²) or (B, N, N) each device
    applies for a Play of ``samples`` samples (``models``: each device's current model, if
    the caller has them)."""
    kind: Literal["unitary", "superoperator"] = "superoperator" if devs[0].open_system else "unitary"
    leak = leakage_superoperator(ops) if kind == "superoperator" else leakage(ops)
    tr = [d.current_transmon() for d in devs] if models is None else models
    fid, fid_raw = gate_fidelities(ops, target, kind=kind)
    return _truth_dict(fid, fid_raw, leak, samples * devs[0].dt_s, tr)


def _truth_dict(fid: ArrayLike, fid_raw: ArrayLike, leak: ArrayLike, duration_s: float,
                models: Sequence[Transmon]) -> dict[str, FloatArray]:
    t_s = float(duration_s)
    return {
        "fidelity": np.asarray(fid),
        "fidelity_raw": np.asarray(fid_raw),
        "leakage": np.asarray(leak),
        "coherence_limit": np.array([_coherence_limit(t_s, t.t1_s, t.t2_s) for t in models], dtype=np.float64),
    }


@functools.lru_cache(maxsize=4096)
def _coherence_limit(duration_s: float, t1_s: float, t2_s: float) -> float:
    """``coherence_limit`` of one (duration, T1, T2), cached: a device keeps its T1 and T2
    for many steps (and a preset for many resets). NumPy's element-wise exp gives each
    element the same bits alone as in a batch, so this equals the batched call."""
    return float(coherence_limit(duration_s, np.array([t1_s]), np.array([t2_s]))[0])


@dataclass
class CalibrationTask:
    """B devices, one DRAG gate, a probe set and the shots spent on each device.

    This is the one path by which both the environments and the baselines touch a
    device: ``measure`` runs every probe for the given parameters and counts the shots.

    Attributes:
        devices: B devices (``Device`` protocol; simulated devices share one physics call).
        gate: the fixed pulse shape.
        probes: sequences run by ``measure``.
        shots_used: (B,) cumulative shots per device.
    """

    devices: list[Device]
    gate: DragGate = field(default_factory=DragGate)
    probes: tuple[Probe, ...] = field(default_factory=default_probes)
    shots_used: NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        self.devices = list(self.devices)
        require(len(self.devices) >= 1, "devices", len(self.devices), "at least one device")
        self.shots_used = np.zeros(len(self.devices), dtype=np.int64)
        self._last_x: tuple[bytes, float, ComplexArray] | None = None
        self._last_ops: tuple[bytes, PlayOperators] | None = None

    @property
    def dt_s(self) -> float:
        return float(self.devices[0].dt_s)

    def waveforms(self, params: ArrayLike) -> tuple[ComplexArray, ComplexArray]:
        """X and SX waveforms, each (B, S), for (B, 4) parameter rows."""
        w = self._pair(_rows(params))
        return w[:, X_SLOT], w[:, SX_SLOT]

    def _pair(self, p: FloatArray) -> ComplexArray:
        """(B, 2, S): X and SX waveforms of (B, 4) rows, in their template slots."""
        dt_s = self.dt_s
        w = self.gate._waveforms(p, dt_s, (1.0, self.gate.sx_area_fraction))
        self._last_x = (p.tobytes(), dt_s, w[:, X_SLOT])
        return w

    def x_waveforms(self, params: ArrayLike) -> ComplexArray:
        """``waveforms(params)[0]``; the one of the last ``waveforms`` call (handed out
        once) when it was for the same rows (the env's truth after its measurement)."""
        p = _rows(params)
        last, self._last_x = self._last_x, None
        if last is not None and last[1] == self.dt_s and last[0] == p.tobytes():
            return last[2]
        return self.gate.waveforms(p, self.dt_s)

    def x_truth(self, params: ArrayLike, index: Sequence[int]) -> tuple[
            ComplexArray, dict[str, FloatArray] | None]:
        """X waveforms (B', S) for (B', 4) rows on devices ``index`` and their truth on
        each device now (``true_metrics_devices``; None off simulation).

        Right after a ``measure`` of the same rows on the same devices (the env's truth
        after its measurement) the X propagators that measurement applied are the truth
        as long as no device's model has changed since (no drift in between): they are
        used as they are, with no second physics call (one-shot, like ``x_waveforms``)."""
        p = _rows(params)
        w = self.x_waveforms(p)
        devs = [self.devices[int(i)] for i in index]
        last, self._last_ops = self._last_ops, None
        if (last is not None and last[0] == p.tobytes() and len(last[1].devices) == len(devs)
                and all(map(operator.is_, last[1].devices, devs)) and last[1].current()):
            plays = last[1]
            if plays.open_system:
                # Straight from the real forms the run loop used (no column stacking).
                fid, fid_raw, leak = superoperator_metrics_real(
                    plays.mats[:, plays.slots.index(X_SLOT)], hermitian_basis(plays.models[0].levels)[0], "X")
                return w, _truth_dict(fid, fid_raw, leak, w.shape[-1] * self.dt_s, plays.models)
            return w, _truth_of_operators(list(plays.devices), plays.operators(X_SLOT),
                                          w.shape[-1], "X", plays.models)
        return w, true_metrics_devices(devs, w, "X")

    def sequences(self, params: ArrayLike, probes: Sequence[Probe] | None = None) -> list[list[PulseSequence]]:
        """Probe sequences per device for (B, 4) parameter rows."""
        p = _rows(params)
        probes = self.probes if probes is None else tuple(probes)
        wx, wsx = self.waveforms(p)
        gate_s = self.gate.n_samples(self.dt_s) * self.dt_s
        out = []
        for b in range(p.shape[0]):
            x, sx = Play(wx[b], "X"), Play(wsx[b], "SX")
            out.append([pr.sequence(x, sx, gate_s, float(p[b, 2]), self.dt_s) for pr in probes])
        return out

    def template(self, probes: Sequence[Probe] | None = None) -> tuple[SequenceTemplate, tuple[Any, ...]]:
        """The probes as one ``SequenceTemplate`` (waveform slots X, SX) and the frame
        expression of each of its phase slots (see ``Probe.tokens``); built once per probe
        set."""
        probes = self.probes if probes is None else tuple(probes)
        return _probe_template(tuple(probes), self.dt_s)

    def template_inputs(self, params: ArrayLike, probes: Sequence[Probe] | None = None) -> tuple[
            SequenceTemplate, ComplexArray, FloatArray]:
        """(template, waveforms (B, 2, S), phases (B, F)) for (B, 4) parameter rows: what
        a ``BatchedDevice.run_template_operators`` needs to run exactly ``sequences(params, probes)``."""
        p = _rows(params)
        template, exprs = self.template(probes)
        waves = self._pair(p)
        dt_s = self.dt_s
        return template, waves, _frame_phases(exprs, p[:, 2], self.gate.n_samples(dt_s) * dt_s, dt_s)

    def _run_template(self, batched: type[BatchedDevice], devs: list[Any], p: FloatArray,
                      probes: tuple[Probe, ...], shots: list[int]) -> NDArray[np.int64]:
        """``run_on_devices(devs, self.sequences(p, probes), shots)`` on batched devices,
        from arrays, as one (B, K, 2) array (zeros where no shots): the same grouping by
        shot count, hence the same device calls. Keeps the X propagators of a call that ran
        every row in one group (``x_truth``)."""
        template, waves, phases = self.template_inputs(p, probes)
        out = np.zeros((len(devs), len(probes), 2), dtype=np.int64)
        groups: dict[int, list[int]] = {}
        if len(probes) > 0:
            for b, n in enumerate(shots):
                if n > 0:
                    groups.setdefault(int(n), []).append(b)
        for n, rows in groups.items():
            every = len(rows) == len(devs)
            counts, plays = batched.run_template_operators(
                devs if every else [devs[b] for b in rows], template,
                waves if every else waves[rows], phases if every else phases[rows], n)
            if every:
                out = counts
                if plays is not None and X_SLOT in plays.slots:
                    self._last_ops = (p.tobytes(), plays)
            else:
                out[rows] = counts
        return out

    def measure(
        self, params: ArrayLike | DragParams, shots: int | Sequence[int],
        index: Sequence[int] | None = None, probes: Sequence[Probe] | None = None,
    ) -> FloatArray:
        """Run the probes and return excited populations n1/shots, shape (B', K).

        Args:
            params: (B', 4) rows (or one ``DragParams`` for a single device), one per device
                in ``index`` (default: all devices).
            shots: shots per sequence, one int or one per selected device (0 skips it;
                its populations are NaN).
            index: which devices to run.
            probes: probe set (default ``self.probes``).
        """
        p = params.as_array()[None] if isinstance(params, DragParams) else _rows(params)
        idx = list(range(len(self.devices))) if index is None else [int(i) for i in index]
        if p.shape != (len(idx), 4):
            require(False, "params", p.shape, f"shape ({len(idx)}, 4)")
        n = [int(shots)] * len(idx) if isinstance(shots, int | np.integer) else [int(s) for s in shots]
        require(len(n) == len(idx) and (not n or min(n) >= 0), "shots", shots,
                "an int >= 0 or one per selected device")
        devs = [self.devices[i] for i in idx]
        probes = self.probes if probes is None else tuple(probes)
        self._last_ops = None
        counts: NDArray[np.int64] | list[NDArray[np.int64]]
        batched = batched_class(devs)
        if batched is not None:
            counts = self._run_template(batched, devs, p, probes, n)
        else:
            counts = run_on_devices(devs, self.sequences(p, probes), n)
        k = len(probes)
        shots_arr = np.asarray(n, dtype=np.int64)
        if idx and k and min(n) > 0:  # every device ran (the env's steps)
            c = counts if isinstance(counts, np.ndarray) else np.stack(counts)
            self._charge(idx, shots_arr * k)
            return c[:, :, 1] / shots_arr[:, None]  # type: ignore[no-any-return]
        out = np.full((len(idx), k), np.nan)
        ran = np.flatnonzero(shots_arr > 0)
        if ran.size and k:
            c = counts if isinstance(counts, np.ndarray) else np.stack(counts)
            out[ran] = c[ran, :, 1] / shots_arr[ran, None]
            self._charge([idx[j] for j in ran.tolist()], shots_arr[ran] * k)
        return out

    def _charge(self, idx: list[int], shots: NDArray[np.int64]) -> None:
        """shots_used[idx] += shots, a device that appears twice in ``idx`` charged twice."""
        rows = np.asarray(idx, dtype=np.int64)
        if len(set(idx)) == len(idx):
            self.shots_used[rows] += shots
        else:
            np.add.at(self.shots_used, rows, shots)

    def true_metrics(
        self, params: ArrayLike | DragParams, index: Sequence[int] | None = None,
        *, target: str = "X", open_system: bool = True,
    ) -> dict[str, FloatArray] | None:
        """Truth of the X gate (or SX with ``target="SX"``) on each selected device now.

        Returns None when a device is not simulated (no truth on hardware).
        """
        p = params.as_array()[None] if isinstance(params, DragParams) else _rows(params)
        idx = list(range(len(self.devices))) if index is None else [int(i) for i in index]
        frac = self.gate.sx_area_fraction if target == "SX" else 1.0
        w = self.gate.waveforms(p, self.dt_s, frac)
        return true_metrics_devices([self.devices[i] for i in idx], w, target)
