"""The compiler from the envs' ``PulseSequence`` to IR ``Program``s: one frame for a
single-qubit sequence, or one frame per envs channel for a multi-channel one.

The phase and channel conventions it maps are written down in ``pulsecal.hardware.ir``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pulsecal.envs.protocol import Barrier as SeqBarrier
from pulsecal.envs.protocol import Delay as SeqDelay
from pulsecal.envs.protocol import Measure as SeqMeasure
from pulsecal.envs.protocol import Play as SeqPlay
from pulsecal.envs.protocol import PulseSequence
from pulsecal.envs.protocol import VirtualZ as SeqVirtualZ

from .instructions import (
    Acquire,
    Frame,
    FrameBarrier,
    FrameDelay,
    FramePlay,
    Instruction,
    ShiftPhase,
)
from .program import Program
from .waveforms import Sampled, fail_field, real_field


def default_drive_frame(qubit: int = 0, frequency_hz: float = 0.0) -> Frame:
    return Frame(f"q{qubit}_drive", f"q{qubit}_drive", frequency_hz)


def from_sequence(seq: PulseSequence, frame: Frame | Mapping[str, Frame], dt_s: float, *,
                  shots: int = 1, qubit: int = 0, acquire_duration_s: float = 0.0,
                  qubit_index: Mapping[str, int] | None = None) -> Program:
    """Compile an envs ``PulseSequence`` to a ``Program``.

    Single-qubit (``frame`` a ``Frame``): ``Play(w)`` → ``FramePlay(frame, Sampled(w, dt_s))``;
    ``VirtualZ(θ)`` → ``ShiftPhase(frame, +θ)`` (same convention, see module docstring);
    ``Delay(d)`` → ``FrameDelay(d, (frame,))``; the sequence's final measurement →
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
            out.append(FramePlay(frame.name, Sampled(op.waveform, dt_s)))
        elif isinstance(op, SeqVirtualZ):
            out.append(ShiftPhase(frame.name, op.phase))
        elif isinstance(op, SeqDelay):
            out.append(FrameDelay(op.duration_s, (frame.name,)))
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

    - ``Play(w, channel=c)`` → ``FramePlay(frame(c), Sampled(w, dt_s))``; flux samples are real.
    - ``VirtualZ(θ, frame=m)`` → ``ShiftPhase(+θ)`` on every declared drive/cr frame at mode
      m's frequency (``drive:m`` and every ``drive:<x>@m``), as the envs define it.
    - ``Delay(d, channel=c)`` → ``FrameDelay(d, (frame(c),))``; ``channel=None`` delays all.
    - ``Barrier(channels)`` → ``FrameBarrier`` of their frames (empty: all frames).
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
            body.append(FramePlay(name, Sampled(op.waveform, dt_s)))
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
            body.append(FrameDelay(op.duration_s, on))
        elif isinstance(op, SeqBarrier):
            body.append(FrameBarrier(tuple(frame_of(c, f"{where}.channels[]") for c in op.channels)))
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
