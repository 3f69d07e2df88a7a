"""The one renderer of the IR: a ``Program`` on a device's sample grid, with resampling,
padding to the device granularity and frame phase and frequency tracking, so the safety
envelope, the simulated backend and every vendor adapter see the same samples; and the
envs' reference trace of a ``PulseSequence`` and its way back to one.

The conventions it applies are written down in ``pulsecal.hardware.ir``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pulsecal.envs.protocol import Delay as SeqDelay
from pulsecal.envs.protocol import Play as SeqPlay
from pulsecal.envs.protocol import PulseSequence
from pulsecal.envs.protocol import VirtualZ as SeqVirtualZ

from .instructions import (
    INSTRUCTION_TYPES,
    Acquire,
    FrameBarrier,
    FrameDelay,
    FramePlay,
    Instruction,
    SetFrequency,
    SetPhase,
    ShiftFrequency,
    ShiftPhase,
)
from .program import Program
from .waveforms import GRID_TOLERANCE, ComplexArray, Constant, Drag, Gaussian, Sampled, resample

# Renderer refuses programs longer than this unless told otherwise: protects memory from
# a policy that asks for a FrameDelay of 1e30 s before any limit is even looked at.
DEFAULT_MAX_TOTAL_SAMPLES = 1 << 24


class ProgramTooLong(ValueError):
    """The program (or one waveform or delay in it) exceeds the renderer's sample budget."""


@dataclass(frozen=True, eq=False)
class PlaySpan:
    """Where a ``FramePlay`` landed: samples [start, stop) of ``frame`` (stop includes padding)."""

    frame: str
    start: int
    stop: int
    index: int


@dataclass(frozen=True, eq=False)
class WaveformTrace:
    """A program rendered on a ``dt_s`` grid.

    ``samples[frame]``: (T,) complex, all frames padded with zeros to the program length T;
    ``plays``: one span per FramePlay; ``acquires``: (qubit, start sample) in order.
    """

    dt_s: float
    samples: Mapping[str, ComplexArray]
    plays: tuple[PlaySpan, ...]
    acquires: tuple[tuple[int, int], ...]
    n_samples: int

    @property
    def duration_s(self) -> float:
        return self.n_samples * self.dt_s


def waveform_samples(wf: object, dt_s: float, max_samples: int) -> ComplexArray:
    """One waveform's samples on the ``dt_s`` grid (Sampled ones resampled), before any
    frame rotation or padding; at most ``max_samples`` of them (else ``ProgramTooLong``)."""
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
    every FramePlay and FrameDelay with zeros up to a multiple of ``granularity`` samples (Plays to at
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

    def duration_samples(v: object, what: str) -> int:
        d = finite(v, what)
        if d < 0:
            raise ValueError(f"{what}={d!r}: allowed >= 0")
        if d / dt_s > max_total_samples:
            raise ProgramTooLong(f"{what}={d!r}: allowed <= {max_total_samples} samples")
        return round(d / dt_s)

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
        if isinstance(ins, FramePlay):
            name = check_frame(ins.frame)
            w = waveform_samples(ins.waveform, dt_s, max_total_samples)
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
        elif isinstance(ins, FrameDelay):
            n = duration_samples(ins.duration_s, "FrameDelay.duration_s")
            n = _round_up(n, granularity, 1) if n > 0 else 0
            for name in (ins.frames or tuple(frames)):
                advance(check_frame(name), n)
        elif isinstance(ins, FrameBarrier):
            names = [check_frame(x) for x in (ins.frames or tuple(frames))]
            top = max(cursor[x] for x in names)
            for x in names:
                cursor[x] = top
        elif isinstance(ins, Acquire):
            n = duration_samples(ins.duration_s, "Acquire.duration_s")
            # Consecutive Acquires are one simultaneous readout: each starts where the first
            # did (after every frame), and the block ends with the longest.
            top = acq_start if isinstance(prev, Acquire) else max(cursor.values())
            acq_start = top
            acquires.append((int(ins.qubit), top))
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
