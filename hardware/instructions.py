"""The IR's frames and instructions: what a ``Program`` is made of, each checked at
construction and written to and read from JSON (``to_dict`` / ``instruction_from_dict``).

Phases are in rad, frequencies in Hz, durations in s; the conventions they follow (the sign
of a phase shift, what a frequency change does to the envelope) are set out in
``pulsecal.hardware.ir``, which re-exports every name here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .waveforms import (
    Constant,
    Drag,
    Gaussian,
    Sampled,
    Waveform,
    fail_field,
    name_field,
    real_field,
    set_field,
    waveform_from_dict,
)

# -- frames -------------------------------------------------------------------------------


# What a frame drives, which decides its safety limits and what it may carry:
# "drive" a qubit's drive line at that qubit's frequency; "cr" a control qubit's drive line
# (its port) at a target qubit's frequency (cross-resonance); "flux" a baseband flux line
# (real samples, no carrier, no phase).
FRAME_KINDS = ("drive", "cr", "flux")


@dataclass(frozen=True)
class Frame:
    """A named frame on a port: carrier ``frequency_hz``, initial ``phase`` (rad) and
    ``kind`` (one of ``FRAME_KINDS``; a flux frame has frequency 0 and phase 0)."""

    name: str
    port: str
    frequency_hz: float
    phase: float = 0.0
    kind: str = "drive"

    def __post_init__(self) -> None:
        name_field("Frame", "name", self.name)
        name_field("Frame", "port", self.port)
        set_field(self, "frequency_hz", real_field("Frame", "frequency_hz", self.frequency_hz, nonnegative=True))
        set_field(self, "phase", real_field("Frame", "phase", self.phase))
        if self.kind not in FRAME_KINDS:
            fail_field("Frame", "kind", self.kind, f"one of {FRAME_KINDS}")
        if self.kind == "flux" and (self.frequency_hz != 0 or self.phase != 0):
            fail_field("Frame", "frequency_hz/phase", (self.frequency_hz, self.phase),
                       "(0, 0) on a flux frame (baseband, real samples)")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "port": self.port,
                             "frequency_hz": self.frequency_hz, "phase": self.phase}
        # Drive frames keep the form they had before frames had kinds, so every
        # single-qubit program and journal hashes as it always did.
        if self.kind != "drive":
            d["kind"] = self.kind
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Frame:
        return cls(str(d["name"]), str(d["port"]), float(d["frequency_hz"]), float(d["phase"]),
                   str(d.get("kind", "drive")))


# -- instructions ---------------------------------------------------------------------------


def _frames_tuple(owner: str, frames: object) -> tuple[str, ...]:
    if isinstance(frames, str) or not isinstance(frames, Iterable):
        fail_field(owner, "frames", frames, "a tuple of frame names (empty = all frames)")
    out: tuple[str, ...] = tuple(frames)  # type: ignore[arg-type]
    for f in out:
        name_field(owner, "frames[]", f)
    return out


@dataclass(frozen=True)
class FramePlay:
    """Play ``waveform`` on ``frame``."""

    frame: str
    waveform: Waveform
    op: ClassVar[str] = "play"

    def __post_init__(self) -> None:
        name_field("FramePlay", "frame", self.frame)
        if not isinstance(self.waveform, Gaussian | Drag | Constant | Sampled):
            fail_field("FramePlay", "waveform", type(self.waveform).__name__,
                  "Gaussian, Drag, Constant or Sampled")

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "frame": self.frame, "waveform": self.waveform.to_dict()}


@dataclass(frozen=True)
class ShiftPhase:
    """Multiply later samples of ``frame`` by e^{+i·phase} (= envs ``VirtualZ(phase)``)."""

    frame: str
    phase: float
    op: ClassVar[str] = "shift_phase"

    def __post_init__(self) -> None:
        name_field("ShiftPhase", "frame", self.frame)
        set_field(self, "phase", real_field("ShiftPhase", "phase", self.phase))

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "frame": self.frame, "phase": self.phase}


@dataclass(frozen=True)
class SetPhase:
    """Set the total phase of ``frame`` to ``phase`` at this instant."""

    frame: str
    phase: float
    op: ClassVar[str] = "set_phase"

    def __post_init__(self) -> None:
        name_field("SetPhase", "frame", self.frame)
        set_field(self, "phase", real_field("SetPhase", "phase", self.phase))

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "frame": self.frame, "phase": self.phase}


@dataclass(frozen=True)
class ShiftFrequency:
    """Shift the carrier of ``frame`` by ``frequency_hz``."""

    frame: str
    frequency_hz: float
    op: ClassVar[str] = "shift_frequency"

    def __post_init__(self) -> None:
        name_field("ShiftFrequency", "frame", self.frame)
        set_field(self, "frequency_hz", real_field("ShiftFrequency", "frequency_hz", self.frequency_hz))

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "frame": self.frame, "frequency_hz": self.frequency_hz}


@dataclass(frozen=True)
class SetFrequency:
    """Set the carrier of ``frame`` to ``frequency_hz``."""

    frame: str
    frequency_hz: float
    op: ClassVar[str] = "set_frequency"

    def __post_init__(self) -> None:
        name_field("SetFrequency", "frame", self.frame)
        set_field(self, "frequency_hz",
             real_field("SetFrequency", "frequency_hz", self.frequency_hz, nonnegative=True))

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "frame": self.frame, "frequency_hz": self.frequency_hz}


@dataclass(frozen=True)
class FrameDelay:
    """Idle ``duration_s`` on ``frames`` (all frames if empty); rounded to whole samples."""

    duration_s: float
    frames: tuple[str, ...] = ()
    op: ClassVar[str] = "delay"

    def __post_init__(self) -> None:
        set_field(self, "duration_s", real_field("FrameDelay", "duration_s", self.duration_s, nonnegative=True))
        set_field(self, "frames", _frames_tuple("FrameDelay", self.frames))

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "duration_s": self.duration_s, "frames": list(self.frames)}


@dataclass(frozen=True)
class FrameBarrier:
    """Align the time cursors of ``frames`` (all frames if empty)."""

    frames: tuple[str, ...] = ()
    op: ClassVar[str] = "barrier"

    def __post_init__(self) -> None:
        set_field(self, "frames", _frames_tuple("FrameBarrier", self.frames))

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "frames": list(self.frames)}


@dataclass(frozen=True)
class Acquire:
    """Measure ``qubit`` (Z basis) for ``duration_s`` after all frames (implicit barrier)."""

    qubit: int
    duration_s: float = 0.0
    op: ClassVar[str] = "acquire"

    def __post_init__(self) -> None:
        if isinstance(self.qubit, bool) or not isinstance(self.qubit, int | np.integer) \
                or self.qubit < 0:
            fail_field("Acquire", "qubit", self.qubit, "an integer >= 0")
        set_field(self, "qubit", int(self.qubit))
        set_field(self, "duration_s", real_field("Acquire", "duration_s", self.duration_s, nonnegative=True))

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "qubit": self.qubit, "duration_s": self.duration_s}


Instruction = FramePlay | ShiftPhase | SetPhase | ShiftFrequency | SetFrequency | FrameDelay | FrameBarrier | Acquire
INSTRUCTION_TYPES: tuple[type, ...] = (FramePlay, ShiftPhase, SetPhase, ShiftFrequency, SetFrequency,
                                       FrameDelay, FrameBarrier, Acquire)
_OPS: dict[str, type] = {c.op: c for c in INSTRUCTION_TYPES}  # type: ignore[attr-defined]


def instruction_from_dict(d: Mapping[str, Any]) -> Instruction:
    op = d.get("op")
    cls = _OPS.get(str(op))
    if cls is None:
        raise ValueError(f"instruction op={op!r}: allowed one of {sorted(_OPS)}")
    args = {k: v for k, v in d.items() if k != "op"}
    if cls is FramePlay:
        return FramePlay(str(args["frame"]), waveform_from_dict(args["waveform"]))
    if "frames" in args:
        args["frames"] = tuple(args["frames"])
    return cls(**args)  # type: ignore[no-any-return]
