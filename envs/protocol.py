"""What an environment may talk to: pulse sequences in, counts out.

This is the seam between environments and whatever executes pulses. The simulated
device (``pulsecal.envs.device``) implements it with physics, drift and shot noise; the
hardware layer (``pulsecal.hardware``) implements it over real backends behind a safety
envelope, a shot ledger and a job journal. An environment never knows which one it has.

A sequence is a tuple of operations applied in order to the qubit starting in |0>,
followed by one measurement in the computational basis:

- ``Play(waveform)``: complex samples u with |u| <= 1 on the device's ``dt_s`` grid;
  the drive is I + iQ, so Q drives about Y.
- ``VirtualZ(phase)``: a frame change, i.e. Rz(phase) = exp(−i·phase·n) on the
  transmon. It costs no time; on the device it multiplies the waveforms of every later
  ``Play`` by exp(+i·phase) (exactly equivalent, since a Z before a Z-basis
  measurement is invisible).
- ``Delay(duration_s)``: free evolution (detuning, T1, T2) for a whole number of samples.

Counts are (n0, n1) per sequence: n1 counts "excited" outcomes (|1> and any higher
level, as a dispersive readout usually classifies them), including readout error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, eq=False)
class Play:
    """Play sampled complex waveform ``waveform`` (shape (S,), |u| <= 1) on the drive."""

    waveform: NDArray[np.complex128]
    label: str = ""

    def __post_init__(self) -> None:
        w = np.asarray(self.waveform, dtype=np.complex128).reshape(-1)
        if w.size == 0:
            raise ValueError("Play.waveform is empty: allowed at least one sample")
        # One pass checks both limits (environments build these every step): a NaN makes the
        # comparison false and an inf makes the peak infinite, so neither slips through.
        peak = float(np.abs(w).max())
        if not peak <= 1.0 + 1e-9:
            if not np.all(np.isfinite(w)):
                raise ValueError("Play.waveform has NaN/inf samples: allowed finite |u| <= 1")
            raise ValueError(f"Play.waveform peak |u| = {peak:.6g}: allowed |u| <= 1")
        w.setflags(write=False)
        object.__setattr__(self, "waveform", w)

    @property
    def key(self) -> bytes:
        """Content key: identical waveforms share one simulated propagator."""
        return self.waveform.tobytes()


@dataclass(frozen=True)
class VirtualZ:
    """Frame change Rz(phase) = exp(−i·phase·n); zero duration."""

    phase: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.phase):
            raise ValueError(f"VirtualZ.phase={self.phase!r}: allowed a finite angle in rad")


@dataclass(frozen=True)
class Delay:
    """Idle for ``duration_s`` seconds (rounded to whole samples by the device)."""

    duration_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.duration_s) and self.duration_s >= 0):
            raise ValueError(f"Delay.duration_s={self.duration_s!r}: allowed a finite value >= 0 s")


Operation = Play | VirtualZ | Delay
_OP_TYPES = frozenset({Play, VirtualZ, Delay})


@dataclass(frozen=True)
class PulseSequence:
    """Operations applied in order from |0>, then one Z-basis measurement."""

    ops: tuple[Operation, ...]
    name: str = ""
    meta: dict[str, float] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        ops = tuple(self.ops)
        # Fast path on exact types (sequences are built every env step); subclasses and
        # anything else take the per-element check, which names the offending position.
        if not _OP_TYPES.issuperset(map(type, ops)):
            for i, op in enumerate(ops):
                if not isinstance(op, Play | VirtualZ | Delay):
                    raise TypeError(
                        f"PulseSequence.ops[{i}] is {type(op).__name__}: allowed Play, VirtualZ, Delay"
                    )
        object.__setattr__(self, "ops", ops)


@runtime_checkable
class Device(Protocol):
    """Runs pulse sequences for some shots and returns counts; keeps a clock.

    ``dt_s`` is the sample time every ``Play`` waveform is expressed on.
    """

    @property
    def dt_s(self) -> float: ...

    @property
    def clock_s(self) -> float:
        """Device (wall-clock) time in seconds since the device was created or reset."""
        ...

    def run(self, sequences: Sequence[PulseSequence], shots: int) -> NDArray[np.int64]:
        """Run every sequence ``shots`` times; return counts of shape (len(sequences), 2)."""
        ...

    def advance(self, duration_s: float) -> None:
        """Let ``duration_s`` seconds of device time pass without running anything of ours
        (users' workload between calibrations); drift goes on meanwhile."""
        ...
