"""Error-amplifying probe sequences of a DRAG gate, as pulse sequences and as one template.

A ``Probe``'s ideal excited population is 1/2 and its deviation from 1/2 is signed and
grows with depth (three families: amplitude, DRAG, Ramsey). The drive-frequency correction
``detuning_hz`` is a continuous frame ramp e^{−i2π·Δ·t} over the *whole sequence*, Delays
included, realised as one waveform per gate plus ``VirtualZ(−2π·Δ·duration)`` after every
Play and Delay, so it really cancels a qubit detuning Δ. Y, X̄ = X(−π), SY are the same
Play framed by VirtualZ, so a sequence needs only two distinct waveforms (X and SX) and a
device that caches propagators by waveform computes two per step.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ._validation import finite, require
from .physics.calibration_kernels import (
    PER_SAMPLE,
    PLUS_CONST,
    RAMP,
    TWO_PI,
    wrapped_frame_phases,
)
from .protocol import (
    Delay,
    Play,
    PulseSequence,
    VirtualZ,
)
from .sequence_template import DELAY, FRAME, PLAY, SequenceTemplate

FloatArray = NDArray[np.float64]
ComplexArray = NDArray[np.complex128]

ProbeKind = Literal["amplitude", "drag", "ramsey"]
FAMILIES: tuple[ProbeKind, ...] = ("amplitude", "drag", "ramsey")

# Waveform slots of the probe layouts (``Probe.tokens``, ``CalibrationTask.template``).
X_SLOT, SX_SLOT = 0, 1

# One step of a gate sequence: ("X" | "SX", axis phase in rad) or ("D", delay in seconds).
Step = tuple[str, float]


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
            ph = wrap_phase(phase)
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


def _frame_phase(expr: tuple[float | None, Any], detuning_hz: Any, gate_s: float, dt_s: float) -> Any:
    """const + ramp of a ``Probe.tokens`` frame, for a float or an array of detunings
    (the same floating-point operations in the same order either way)."""
    const, ramp = expr
    if ramp is None:
        return const
    r = -TWO_PI * detuning_hz * gate_s if ramp == "gate" else -TWO_PI * detuning_hz * ramp * dt_s
    return r if const is None else const + r


def frame_phases(exprs: tuple[Any, ...], detuning_hz: FloatArray, gate_s: float, dt_s: float) -> FloatArray:
    """(B, F) ``wrap_phase(_frame_phase(...))`` of every expression for (B,) detunings: the same
    operations on every element, in one compiled loop."""
    const, mult, form = _frame_form(exprs, gate_s)
    out = np.empty((detuning_hz.shape[0], len(exprs)))
    wrapped_frame_phases(np.ascontiguousarray(detuning_hz, dtype=np.float64), const, mult, form, dt_s, out)
    return out


@functools.lru_cache(maxsize=64)
def _frame_form(exprs: tuple[Any, ...], gate_s: float) -> tuple[FloatArray, FloatArray, NDArray[np.int64]]:
    """``frame_phases``' view of the expressions (F,): constants, ramp factors (gate_s or
    n) and flags (``RAMP``, ``PER_SAMPLE``, ``PLUS_CONST``)."""
    const = np.array([0.0 if c is None else float(c) for c, _ in exprs])
    mult = np.array([0.0 if r is None else gate_s if r == "gate" else float(r) for _, r in exprs])
    form = np.array([0 if r is None else RAMP | (0 if r == "gate" else PER_SAMPLE)
                     | (0 if c is None else PLUS_CONST) for c, r in exprs], dtype=np.int64)
    out = (const, mult, form)
    for a in out:
        a.setflags(write=False)
    return out


def wrap_phase(phase: float) -> float:
    return float((phase + math.pi) % TWO_PI - math.pi)


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
        want = wrap_phase(value + ramp - emitted)
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
def probe_template(probes: tuple[Probe, ...], dt_s: float) -> tuple[SequenceTemplate, tuple[Any, ...]]:
    exprs: dict[Any, int] = {}
    seqs = []
    for pr in probes:
        seq = []
        for kind, a in pr.tokens(dt_s):
            seq.append((kind, exprs.setdefault(a, len(exprs)) if kind == FRAME else a))
        seqs.append(tuple(seq))
    template = SequenceTemplate(tuple(seqs), 2, len(exprs), tuple(pr.name for pr in probes))
    return template, tuple(exprs)
