"""A small pulse-program IR in SI units, its JSON form, and the one place that renders it.

Every hardware path goes through this module (its waveforms live in
``pulsecal.hardware.waveforms``, its frames and instructions in
``pulsecal.hardware.instructions``, all re-exported here): the environments'
``PulseSequence`` is compiled to a ``Program`` (``from_sequence``), programs are hashed
for idempotent job keys and journals (``Program.content_hash``: sha256 over canonical
JSON, never pickle), and ``to_waveform_trace`` renders a program to complex samples on a
device grid. That renderer is the single place for resampling, padding to the device
granularity and frame tracking, so the safety envelope, the simulated backend and every
vendor adapter see the same samples.

Conventions (the trace is what the envs call ``u``, the coefficient of a† in
H/ħ = 2π·δ·n + π·α·n(n−1) + π·Ω_R·(u·a† + u*·a), in the frame rotating at the frame's
declared ``frequency_hz``):

- ``ShiftPhase(θ)`` multiplies every later sample of that frame by e^{+iθ}; this is
  exactly the envs' ``VirtualZ(θ)`` = Rz(θ) = exp(−iθ·n), so ``from_sequence`` maps
  ``VirtualZ(θ)`` to ``ShiftPhase(+θ)``. ``SetPhase(p)`` makes the frame's total phase p
  at that instant.
- ``SetFrequency``/``ShiftFrequency`` move the drive to f; relative to the declared
  frequency f0 the envelope then turns as e^{−i·2π(f−f0)·t} (t is program time at the
  sample's mid-point), i.e. the detuning δ = f_qubit − f_drive drops by f − f0, as in
  ``pulsecal.envs.pulses``. The phase is continuous across frequency changes, as on
  OpenPulse frames.
- Parametric waveforms are sampled at bin mid-points t_k = (k + ½)·dt; Drag is
  u = I + i·β·dI/dt (β in seconds, PHYSICS.md), then rotated by e^{i·angle}.

Multi-qubit programs: every envs channel is one frame of a kind (``Frame.kind``): ``drive``
(a qubit's line at its frequency), ``cr`` (a control qubit's line at a target's frequency)
or ``flux`` (a baseband line: real samples, no phase or frequency instruction). Consecutive
``Acquire`` instructions at the end are one simultaneous readout. ``from_sequence`` with a
channel map compiles channel sequences (docs/lab_channels.md).

Per-vendor mapping of the phase convention (adapters must apply it; verify on a new
device with a Ramsey sign check, because mixer wiring can flip it):

- Braket / OpenPulse: emit ``shift_phase(frame, +θ)``. Qiskit-pulse lineage implements
  its rz(θ) = exp(−iθZ/2) = our Rz(−θ) as a phase shift of −θ, so the sign agrees with ours.
- qibolab 0.2: emit ``VirtualZ(phase=−θ)`` (``QibolabBackend(virtual_z_sign=-1)``): its
  emulator multiplies later waveforms by e^{−iφ} for ``VirtualZ(φ)``, confirmed by a Ramsey
  sign test against the emulator. Its own gate compiler reads the sign the other way, so the
  sign is a per-platform setting to check once with the same Ramsey test.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pulsecal.envs.protocol import Barrier as SeqBarrier
from pulsecal.envs.protocol import Delay as SeqDelay
from pulsecal.envs.protocol import Measure as SeqMeasure
from pulsecal.envs.protocol import Play as SeqPlay
from pulsecal.envs.protocol import PulseSequence
from pulsecal.envs.protocol import VirtualZ as SeqVirtualZ

# The frames and instructions are part of the IR: re-exported so ``ir.Play`` etc. name them.
from .instructions import FRAME_KINDS as FRAME_KINDS
from .instructions import INSTRUCTION_TYPES as INSTRUCTION_TYPES
from .instructions import Acquire as Acquire
from .instructions import Barrier as Barrier
from .instructions import Delay as Delay
from .instructions import Frame as Frame
from .instructions import Instruction as Instruction
from .instructions import Play as Play
from .instructions import SetFrequency as SetFrequency
from .instructions import SetPhase as SetPhase
from .instructions import ShiftFrequency as ShiftFrequency
from .instructions import ShiftPhase as ShiftPhase
from .instructions import instruction_from_dict as instruction_from_dict

# The waveforms are part of the IR: re-exported so ``ir.Gaussian`` etc. name them.
from .waveforms import GRID_TOLERANCE as GRID_TOLERANCE
from .waveforms import WAVEFORM_KINDS as WAVEFORM_KINDS
from .waveforms import ComplexArray as ComplexArray
from .waveforms import Constant as Constant
from .waveforms import Drag as Drag
from .waveforms import Gaussian as Gaussian
from .waveforms import Sampled as Sampled
from .waveforms import Waveform as Waveform
from .waveforms import fail_field, real_field, set_field
from .waveforms import resample as resample
from .waveforms import waveform_from_dict as waveform_from_dict

IR_FORMAT = "pulsecal.ir/1"
# Renderer refuses programs longer than this unless told otherwise: protects memory from
# a policy that asks for a Delay of 1e30 s before any limit is even looked at.
DEFAULT_MAX_TOTAL_SAMPLES = 1 << 24

class ProgramTooLong(ValueError):
    """The program (or one waveform or delay in it) exceeds the renderer's sample budget."""


# -- programs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Program:
    """Instructions over declared ``frames``, run ``shots`` times on ``qubits``."""

    instructions: tuple[Instruction, ...]
    frames: tuple[Frame, ...]
    shots: int
    qubits: tuple[int, ...] = (0,)
    name: str = ""
    _hash: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        instructions = tuple(self.instructions)
        for i, ins in enumerate(instructions):
            if not isinstance(ins, INSTRUCTION_TYPES):
                fail_field("Program", f"instructions[{i}]", type(ins).__name__,
                      "Play, ShiftPhase, SetPhase, ShiftFrequency, SetFrequency, Delay, "
                      "Barrier or Acquire")
        frames = tuple(self.frames)
        names = [f.name for f in frames if isinstance(f, Frame)]
        if len(names) != len(frames):
            fail_field("Program", "frames", frames, "a tuple of Frame")
        if len(set(names)) != len(names):
            fail_field("Program", "frames", names, "unique frame names")
        if isinstance(self.shots, bool) or not isinstance(self.shots, int | np.integer) \
                or self.shots < 1:
            fail_field("Program", "shots", self.shots, "an integer >= 1")
        qubits = tuple(int(q) for q in self.qubits)
        if not qubits or len(set(qubits)) != len(qubits) or min(qubits) < 0:
            fail_field("Program", "qubits", self.qubits, "a non-empty tuple of distinct integers >= 0")
        declared = set(names)
        for i, ins in enumerate(instructions):
            used: tuple[str, ...] = ()
            if isinstance(ins, Play | ShiftPhase | SetPhase | ShiftFrequency | SetFrequency):
                used = (ins.frame,)
            elif isinstance(ins, Delay | Barrier):
                used = ins.frames
            elif isinstance(ins, Acquire) and ins.qubit not in qubits:
                fail_field("Program", f"instructions[{i}].qubit", ins.qubit, f"one of {qubits}")
            for f in used:
                if f not in declared:
                    fail_field("Program", f"instructions[{i}].frame", f, f"a declared frame {sorted(declared)}")
        if not isinstance(self.name, str):
            fail_field("Program", "name", self.name, "a string")
        set_field(self, "instructions", instructions)
        set_field(self, "frames", frames)
        set_field(self, "shots", int(self.shots))
        set_field(self, "qubits", qubits)

    def frame(self, name: str) -> Frame:
        for f in self.frames:
            if f.name == name:
                return f
        raise KeyError(f"frame {name!r} is not declared: declared {[f.name for f in self.frames]}")

    def to_dict(self) -> dict[str, Any]:
        return {"format": IR_FORMAT, "name": self.name, "shots": self.shots,
                "qubits": list(self.qubits), "frames": [f.to_dict() for f in self.frames],
                "instructions": [ins.to_dict() for ins in self.instructions]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Program:
        if d.get("format") != IR_FORMAT:
            raise ValueError(f"Program format={d.get('format')!r}: allowed {IR_FORMAT!r}")
        return cls(instructions=tuple(instruction_from_dict(x) for x in d["instructions"]),
                   frames=tuple(Frame.from_dict(x) for x in d["frames"]),
                   shots=int(d["shots"]), qubits=tuple(int(q) for q in d["qubits"]),
                   name=str(d.get("name", "")))

    def to_json(self) -> str:
        return canonical_json(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Program:
        return cls.from_dict(json.loads(text))

    def content_hash(self) -> str:
        """sha256 hex over the canonical JSON: stable across processes and versions of
        Python (floats are written with repr, which round-trips exactly)."""
        if not self._hash:
            set_field(self, "_hash", hashlib.sha256(self.to_json().encode()).hexdigest())
        return self._hash

    def with_shots(self, shots: int) -> Program:
        return Program(self.instructions, self.frames, shots, self.qubits, self.name)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def recompute_hash(program: Program) -> str:
    """The content hash computed afresh (ignores the cached value, which a forged or
    mutated object could carry)."""
    return hashlib.sha256(program.to_json().encode()).hexdigest()


# -- compiler from the envs' sequences -----------------------------------------------------------


def default_drive_frame(qubit: int = 0, frequency_hz: float = 0.0) -> Frame:
    return Frame(f"q{qubit}_drive", f"q{qubit}_drive", frequency_hz)


def from_sequence(seq: PulseSequence, frame: Frame | Mapping[str, Frame], dt_s: float, *,
                  shots: int = 1, qubit: int = 0, acquire_duration_s: float = 0.0,
                  qubit_index: Mapping[str, int] | None = None) -> Program:
    """Compile an envs ``PulseSequence`` to a ``Program``.

    Single-qubit (``frame`` a ``Frame``): ``Play(w)`` → ``Play(frame, Sampled(w, dt_s))``;
    ``VirtualZ(θ)`` → ``ShiftPhase(frame, +θ)`` (same convention, see module docstring);
    ``Delay(d)`` → ``Delay(d, (frame,))``; the sequence's final measurement →
    ``Acquire(qubit, acquire_duration_s)``. The sequence must name no channel.

    Channels (``frame`` a map {envs channel name: Frame}, e.g. ``{"drive:q0": ..,
    "drive:q0@q1": .., "flux:q1": ..}``): see ``from_channel_sequence``.
    """
    if not isinstance(seq, PulseSequence):
        raise TypeError(f"from_sequence(seq={type(seq).__name__}): allowed a PulseSequence")
    dt_s = real_field("from_sequence", "dt_s", dt_s, positive=True)
    if not isinstance(frame, Frame):
        return from_channel_sequence(seq, frame, dt_s, shots=shots,
                                     acquire_duration_s=acquire_duration_s,
                                     qubit_index=qubit_index)
    if not seq.is_single_qubit:
        raise ValueError(f"from_sequence: sequence {seq.name!r} names channels, frames, a Barrier "
                         "or a Measure: allowed only with a channel map {channel: Frame}, not one "
                         f"frame ({frame.name!r})")
    out: list[Instruction] = []
    for op in seq.ops:
        if isinstance(op, SeqPlay):
            out.append(Play(frame.name, Sampled(op.waveform, dt_s)))
        elif isinstance(op, SeqVirtualZ):
            out.append(ShiftPhase(frame.name, op.phase))
        elif isinstance(op, SeqDelay):
            out.append(Delay(op.duration_s, (frame.name,)))
        else:  # PulseSequence validates its ops; this is for objects mutated after the fact
            raise TypeError(f"PulseSequence op {type(op).__name__}: allowed Play, VirtualZ, Delay")
    out.append(Acquire(qubit, acquire_duration_s))
    return Program(tuple(out), (frame,), shots, (qubit,), seq.name)


_CHANNEL = re.compile(r"^(drive|flux|coupler):([A-Za-z][A-Za-z0-9_]*)(?:@([A-Za-z][A-Za-z0-9_]*))?$")
_QUBIT_MODE = re.compile(r"^q(\d+)$")


def channel_parts(channel: str) -> tuple[str, str, str]:
    """(kind, mode, frame mode) of an envs channel name: ``drive:q0`` → ("drive", "q0", "q0"),
    ``drive:q0@q1`` → ("drive", "q0", "q1"), ``flux:q1`` → ("flux", "q1", "")."""
    m = _CHANNEL.match(channel) if isinstance(channel, str) else None
    if m is None or (m.group(3) and m.group(1) != "drive"):
        raise ValueError(f"channel={channel!r}: allowed 'drive:<mode>', 'drive:<mode>@<frame mode>', "
                         "'flux:<mode>' or 'coupler:<mode>'")
    kind, mode, at = m.group(1), m.group(2), m.group(3)
    if kind == "drive":
        return kind, mode, at or mode
    return kind, mode, ""


def channel_frame_kind(channel: str) -> str:
    """The IR frame kind an envs channel plays on: drive, cr (drive at another mode's
    frame) or flux (flux and coupler lines)."""
    kind, mode, at = channel_parts(channel)
    if kind != "drive":
        return "flux"
    return "drive" if at == mode else "cr"


def from_channel_sequence(seq: PulseSequence, channels: Mapping[str, Frame], dt_s: float, *,
                          shots: int = 1, acquire_duration_s: float = 0.0,
                          qubit_index: Mapping[str, int] | None = None) -> Program:
    """Compile a multi-channel envs ``PulseSequence`` to a ``Program``, one frame per channel.

    ``channels`` maps each envs channel the sequence uses to its IR frame, whose kind must
    match the channel's (``drive:q0`` → drive, ``drive:q0@q1`` → cr, ``flux:q1`` and
    ``coupler:c01`` → flux). ``qubit_index`` maps measured mode names to hardware qubit
    indices (default: ``q<n>`` → n).

    - ``Play(w, channel=c)`` → ``Play(frame(c), Sampled(w, dt_s))``; flux samples are real.
    - ``VirtualZ(θ, frame=m)`` → ``ShiftPhase(+θ)`` on every declared drive/cr frame at mode
      m's frequency (``drive:m`` and every ``drive:<x>@m``), as the envs define it.
    - ``Delay(d, channel=c)`` → ``Delay(d, (frame(c),))``; ``channel=None`` delays all.
    - ``Barrier(channels)`` → ``Barrier`` of their frames (empty: all frames).
    - ``Measure(qubits)`` (or, without one, every ``q<n>`` mode the channels name) →
      one ``Acquire`` per qubit, in order, at the end: simultaneous readout, first qubit
      the most significant bit of the counts.

    The program declares the frames of the channels the sequence names, in the map's order,
    and ``qubits`` = the measured qubits in measurement order, then the other qubits driven.
    """
    if not isinstance(seq, PulseSequence):
        raise TypeError(f"from_channel_sequence(seq={type(seq).__name__}): allowed a PulseSequence")
    dt_s = real_field("from_channel_sequence", "dt_s", dt_s, positive=True)
    if not isinstance(channels, Mapping) or not channels:
        fail_field("from_channel_sequence", "channels", channels, "a non-empty map {channel: Frame}")
    chan_mode: dict[str, str] = {}  # channel -> the mode whose frame it plays at ("" for flux)
    for c, f in channels.items():
        at = channel_parts(c)[2]
        if not isinstance(f, Frame):
            fail_field("from_channel_sequence", f"channels[{c!r}]", f, "a Frame")
        if f.kind != channel_frame_kind(c):
            fail_field("from_channel_sequence", f"channels[{c!r}].kind", f.kind,
                       f"{channel_frame_kind(c)!r} for this channel")
        chan_mode[c] = at
    modes = {channel_parts(c)[1] for c in channels} | {m for m in chan_mode.values() if m}

    def frame_of(c: str | None, where: str) -> str:
        if c is None or c not in channels:
            raise ValueError(f"{where}={c!r}: allowed a channel of the map {sorted(channels)}")
        used.add(c)
        return channels[c].name

    def hw_qubit(mode: str) -> int:
        if qubit_index is not None:
            if mode not in qubit_index:
                raise ValueError(f"Measure.qubits: mode {mode!r}: allowed one of {sorted(qubit_index)}")
            return int(qubit_index[mode])
        m = _QUBIT_MODE.match(mode)
        if m is None:
            raise ValueError(f"Measure.qubits: mode {mode!r}: allowed 'q<n>' (or pass qubit_index)")
        return int(m.group(1))

    used: set[str] = set()
    body: list[Instruction] = []
    measured: tuple[str, ...] | None = None
    for i, op in enumerate(seq.ops):
        where = f"PulseSequence.ops[{i}]"
        if isinstance(op, SeqPlay):
            name = frame_of(op.channel, f"{where}.channel")
            body.append(Play(name, Sampled(op.waveform, dt_s)))
        elif isinstance(op, SeqVirtualZ):
            if op.frame is None or op.frame not in modes:
                raise ValueError(f"{where}.frame={op.frame!r}: allowed a mode of the channel map "
                                 f"{sorted(modes)}")
            for c in channels:
                if chan_mode[c] == op.frame:
                    used.add(c)
                    body.append(ShiftPhase(channels[c].name, op.phase))
        elif isinstance(op, SeqDelay):
            on: tuple[str, ...] = () if op.channel is None else (frame_of(op.channel, f"{where}.channel"),)
            body.append(Delay(op.duration_s, on))
        elif isinstance(op, SeqBarrier):
            body.append(Barrier(tuple(frame_of(c, f"{where}.channels[]") for c in op.channels)))
        elif isinstance(op, SeqMeasure):
            measured = op.qubits
        else:
            raise TypeError(f"{where} is {type(op).__name__}: allowed Play, VirtualZ, Delay, Barrier, Measure")
    if measured is None:
        measured = tuple(sorted((m for m in modes if _QUBIT_MODE.match(m)), key=lambda m: int(m[1:])))
        if not measured:
            raise ValueError(f"PulseSequence {seq.name!r} has no Measure and its channels name no "
                             "'q<n>' mode: allowed a Measure(qubits)")
    if not used:
        raise ValueError(f"PulseSequence {seq.name!r} uses no channel of the map {sorted(channels)}")
    measured_hw = [hw_qubit(m) for m in measured]
    driven_hw = sorted({hw_qubit(channel_parts(c)[1]) for c in used
                        if _QUBIT_MODE.match(channel_parts(c)[1]) or
                        (qubit_index is not None and channel_parts(c)[1] in qubit_index)})
    qubits = tuple(measured_hw) + tuple(q for q in driven_hw if q not in measured_hw)
    body += [Acquire(q, acquire_duration_s) for q in measured_hw]
    frames = tuple(channels[c] for c in channels if c in used)
    return Program(tuple(body), frames, shots, qubits, seq.name)


# -- the renderer ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PlaySpan:
    """Where a ``Play`` landed: samples [start, stop) of ``frame`` (stop includes padding)."""

    frame: str
    start: int
    stop: int
    index: int


@dataclass(frozen=True, eq=False)
class WaveformTrace:
    """A program rendered on a ``dt_s`` grid.

    ``samples[frame]``: (T,) complex, all frames padded with zeros to the program length T;
    ``plays``: one span per Play; ``acquires``: (qubit, start sample) in order.
    """

    dt_s: float
    samples: Mapping[str, ComplexArray]
    plays: tuple[PlaySpan, ...]
    acquires: tuple[tuple[int, int], ...]
    n_samples: int

    @property
    def duration_s(self) -> float:
        return self.n_samples * self.dt_s


def _samples_for(wf: object, dt_s: float, max_samples: int) -> ComplexArray:
    # Checks are repeated here on purpose: the safety envelope renders through this
    # function, and must not trust validation done by constructors of a possibly forged
    # object.
    if isinstance(wf, Sampled):
        src = np.asarray(wf.samples)
        sdt = float(wf.dt_s)
        if src.ndim != 1 or src.size == 0 or not (math.isfinite(sdt) and sdt > 0):
            raise ValueError(f"Sampled waveform with {src.size} samples and dt_s={sdt!r}: "
                             "allowed >= 1 samples and a finite dt_s > 0")
        n = math.ceil(src.size * sdt / dt_s - GRID_TOLERANCE)
        if n > max_samples:
            raise ProgramTooLong(f"waveform of {n} samples: allowed <= {max_samples}")
        return resample(src, sdt, dt_s)
    if isinstance(wf, Gaussian | Drag | Constant):
        d = float(wf.duration_s)
        if not (math.isfinite(d) and d > 0):
            raise ValueError(f"{type(wf).__name__}.duration_s={d!r}: allowed finite > 0")
        if d / dt_s > max_samples:
            raise ProgramTooLong(f"{type(wf).__name__}.duration_s={d!r}: allowed <= "
                                 f"{max_samples} samples")
        return wf.samples(dt_s)
    raise TypeError(f"waveform {type(wf).__name__}: allowed Gaussian, Drag, Constant, Sampled")


def _round_up(n: int, granularity: int, min_samples: int) -> int:
    n = max(n, min_samples)
    return -(-n // granularity) * granularity


def to_waveform_trace(program: Program, dt_s: float, *, granularity: int = 1,
                      min_samples: int = 1,
                      max_total_samples: int = DEFAULT_MAX_TOTAL_SAMPLES) -> WaveformTrace:
    """Render ``program`` on a grid of ``dt_s``: resample waveforms (area-preserving), pad
    every Play and Delay with zeros up to a multiple of ``granularity`` samples (Plays to at
    least ``min_samples``), and apply frame phase and frequency tracking.

    Raises ValueError on anything it cannot render faithfully (off-grid parametric
    durations, non-finite values, unknown frames, more than ``max_total_samples``).
    """
    if not (math.isfinite(dt_s) and dt_s > 0):
        raise ValueError(f"dt_s={dt_s!r}: allowed finite > 0")
    if granularity < 1 or min_samples < 1:
        raise ValueError(f"granularity={granularity}, min_samples={min_samples}: allowed >= 1")
    frames = {f.name: f for f in program.frames}
    if not frames:
        raise ValueError("Program.frames is empty: allowed at least one frame")
    ref_hz = {}
    for name, f in frames.items():
        if not (math.isfinite(f.frequency_hz) and math.isfinite(f.phase)):
            raise ValueError(f"frame {name!r} frequency_hz={f.frequency_hz!r} "
                             f"phase={f.phase!r}: allowed finite")
        ref_hz[name] = float(f.frequency_hz)
    cursor = dict.fromkeys(frames, 0)
    phase = {n: float(f.phase) for n, f in frames.items()}  # offset φ
    freq = dict(ref_hz)
    k_change = dict.fromkeys(frames, 0)  # sample where the frequency last changed
    psi_change = dict.fromkeys(frames, 0.0)  # detuning phase accumulated up to k_change
    chunks: list[tuple[str, int, ComplexArray]] = []
    plays: list[PlaySpan] = []
    acquires: list[tuple[int, int]] = []

    def psi(name: str, k: int) -> float:
        return psi_change[name] - 2 * math.pi * (freq[name] - ref_hz[name]) * (k - k_change[name]) * dt_s

    def check_frame(name: object) -> str:
        if not isinstance(name, str) or name not in frames:
            raise ValueError(f"frame {name!r}: allowed a declared frame {sorted(frames)}")
        return name

    def check_carrier(ins: Instruction) -> str:
        name = check_frame(getattr(ins, "frame", None))
        if getattr(frames[name], "kind", "drive") == "flux":
            # A flux line is baseband: a phase or carrier on it would make its real samples
            # complex, which no flux DAC plays.
            raise ValueError(f"{type(ins).__name__} on flux frame {name!r}: allowed only on "
                             "drive and cr frames")
        return name

    def finite(v: object, what: str) -> float:
        x = float(v)  # type: ignore[arg-type]
        if not math.isfinite(x):
            raise ValueError(f"{what}={v!r}: allowed finite")
        return x

    def advance(name: str, n: int) -> None:
        cursor[name] += n
        if cursor[name] > max_total_samples:
            raise ProgramTooLong(f"program longer than {max_total_samples} samples of {dt_s!r} s")

    def set_freq(name: str, f_hz: float) -> None:
        k = cursor[name]
        psi_change[name] = psi(name, k)
        k_change[name] = k
        freq[name] = f_hz

    prev: object = None
    acq_start = 0
    for idx, ins in enumerate(program.instructions):
        if isinstance(ins, Play):
            name = check_frame(ins.frame)
            w = _samples_for(ins.waveform, dt_s, max_total_samples)
            k0 = cursor[name]
            n = _round_up(w.size, granularity, min_samples)
            advance(name, n)
            if freq[name] == ref_hz[name]:
                rot = np.exp(1j * (phase[name] + psi(name, k0)))
            else:
                ks = np.arange(k0, k0 + w.size)
                rot = np.exp(1j * (phase[name] + psi_change[name]
                                   - 2 * math.pi * (freq[name] - ref_hz[name])
                                   * (ks + 0.5 - k_change[name]) * dt_s))
            chunks.append((name, k0, w * rot))
            plays.append(PlaySpan(name, k0, k0 + n, idx))
        elif isinstance(ins, ShiftPhase):
            name = check_carrier(ins)
            phase[name] += finite(ins.phase, "ShiftPhase.phase")
        elif isinstance(ins, SetPhase):
            name = check_carrier(ins)
            phase[name] = finite(ins.phase, "SetPhase.phase") - psi(name, cursor[name])
        elif isinstance(ins, ShiftFrequency):
            name = check_carrier(ins)
            set_freq(name, freq[name] + finite(ins.frequency_hz, "ShiftFrequency.frequency_hz"))
        elif isinstance(ins, SetFrequency):
            name = check_carrier(ins)
            set_freq(name, finite(ins.frequency_hz, "SetFrequency.frequency_hz"))
        elif isinstance(ins, Delay):
            d = finite(ins.duration_s, "Delay.duration_s")
            if d < 0:
                raise ValueError(f"Delay.duration_s={d!r}: allowed >= 0")
            if d / dt_s > max_total_samples:
                raise ProgramTooLong(f"Delay.duration_s={d!r}: allowed <= "
                                     f"{max_total_samples} samples")
            n = round(d / dt_s)
            n = _round_up(n, granularity, 1) if n > 0 else 0
            for name in (ins.frames or tuple(frames)):
                advance(check_frame(name), n)
        elif isinstance(ins, Barrier):
            names = [check_frame(x) for x in (ins.frames or tuple(frames))]
            top = max(cursor[x] for x in names)
            for x in names:
                cursor[x] = top
        elif isinstance(ins, Acquire):
            d = finite(ins.duration_s, "Acquire.duration_s")
            if d < 0:
                raise ValueError(f"Acquire.duration_s={d!r}: allowed >= 0")
            if d / dt_s > max_total_samples:
                raise ProgramTooLong(f"Acquire.duration_s={d!r}: allowed <= "
                                     f"{max_total_samples} samples")
            # Consecutive Acquires are one simultaneous readout: each starts where the first
            # did (after every frame), and the block ends with the longest.
            top = acq_start if isinstance(prev, Acquire) else max(cursor.values())
            acq_start = top
            acquires.append((int(ins.qubit), top))
            n = round(d / dt_s)
            end = max(cursor.values()) if isinstance(prev, Acquire) else top
            for x in frames:
                cursor[x] = top
                advance(x, n)
                cursor[x] = max(cursor[x], end)
        else:
            raise TypeError(f"instruction {type(ins).__name__}: allowed {[c.__name__ for c in INSTRUCTION_TYPES]}")
        prev = ins

    total = max(cursor.values())
    samples = {name: np.zeros(total, dtype=np.complex128) for name in frames}
    for name, k0, w in chunks:
        samples[name][k0:k0 + w.size] = w
    for arr in samples.values():
        arr.setflags(write=False)
    return WaveformTrace(dt_s, samples, tuple(plays), tuple(acquires), total)


def sequence_trace(seq: PulseSequence, dt_s: float) -> ComplexArray:
    """The drive samples the envs' convention implies for ``seq`` (reference for tests and
    for the simulated backend): cumulative VirtualZ phases applied, Delays as zeros."""
    parts: list[ComplexArray] = []
    phase = 0.0
    for op in seq.ops:
        if isinstance(op, SeqPlay):
            parts.append(np.asarray(op.waveform) * np.exp(1j * phase))
        elif isinstance(op, SeqVirtualZ):
            phase += op.phase
        elif isinstance(op, SeqDelay):
            parts.append(np.zeros(round(op.duration_s / dt_s), dtype=np.complex128))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.complex128)


def trace_to_sequence(samples: Sequence[complex] | ComplexArray, dt_s: float,
                      name: str = "") -> PulseSequence:
    """Samples → an envs ``PulseSequence`` (zero runs become Delays, the rest Plays), so a
    rendered trace can run on any ``Device``; phases are already baked into the samples."""
    w = np.asarray(samples, dtype=np.complex128).reshape(-1)
    ops: list[SeqPlay | SeqDelay] = []
    if w.size:
        nz = w != 0
        edges = np.flatnonzero(np.diff(nz.astype(np.int8))) + 1
        bounds = [0, *edges.tolist(), w.size]
        for a, b in itertools.pairwise(bounds):
            if nz[a]:
                ops.append(SeqPlay(w[a:b].copy()))
            else:
                ops.append(SeqDelay((b - a) * dt_s))
    return PulseSequence(tuple(ops), name=name)
