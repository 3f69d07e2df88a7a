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

Multi-qubit devices address named channels (``Play.channel``, ``Delay.channel``), shift
per-mode frames (``VirtualZ.frame``), align channels with ``Barrier`` and measure a set of
qubits with a final ``Measure``; every channel has its own timeline, as in OpenPulse.

Counts are (n0, n1) per sequence on a single-qubit device: n1 counts "excited" outcomes (|1> and any higher
level, as a dispersive readout usually classifies them), including readout error.

Two optional extensions sit next to ``Device``; an environment uses them through the
functions here, never by asking which device it has:

- ``BatchedDevice``: many devices of one kind run in one call (the simulated device shares
  one physics call between them). ``run_on_devices`` and ``batched_class`` take that path
  when every device of a call supports it, and fall back to ``Device.run`` otherwise, so a
  batch of hardware devices runs the same sequences one device at a time.
- ``SimulatedTruth``: the truth behind the counts (the model simulated now and the
  propagator of a played waveform), which only a simulator has; for evaluation, never for
  an agent. ``truth_class`` says whether a batch has it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from .physics import Transmon
    from .sequence_template import SequenceTemplate


@dataclass(frozen=True, eq=False)
class Play:
    """Play sampled complex waveform ``waveform`` (shape (S,), |u| <= 1) on a channel.

    ``channel`` is ``None`` on a single-qubit device (its one drive), else a channel name
    of the device's model: ``drive:q0``, ``drive:q0@q1`` (cross-resonance: q0's line at
    q1's frame), ``flux:q1`` or ``coupler:c01`` (real samples, offsets in Φ0).
    """

    waveform: NDArray[np.complex128]
    label: str = ""
    channel: str | None = None

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
        if self.channel is not None:
            _check_channel_name(self.channel, "Play.channel")
            if not self.channel.startswith("drive:") and np.any(w.imag != 0):
                raise ValueError(f"Play.waveform on {self.channel!r} has complex samples: allowed real flux offsets")
        w.setflags(write=False)
        object.__setattr__(self, "waveform", w)

    @property
    def key(self) -> bytes:
        """Content key: identical waveforms share one simulated propagator."""
        return self.waveform.tobytes()


@dataclass(frozen=True)
class VirtualZ:
    """Frame change Rz(phase) = exp(−i·phase·n); zero duration.

    ``frame`` is ``None`` on a single-qubit device, else the mode (``q1``) whose frame
    shifts: every later sample of every channel playing at that frame is multiplied by
    exp(+i·phase) (``drive:q1`` and any ``drive:<x>@q1``), as a lab's frame update does.
    """

    phase: float
    frame: str | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.phase):
            raise ValueError(f"VirtualZ.phase={self.phase!r}: allowed a finite angle in rad")
        if self.frame is not None and not (isinstance(self.frame, str) and _MODE_NAME.match(self.frame)):
            raise ValueError(f"VirtualZ.frame={self.frame!r}: allowed a mode name like 'q1'")


@dataclass(frozen=True)
class Delay:
    """Idle for ``duration_s`` seconds (rounded to whole samples by the device).

    ``channel`` ``None`` delays every channel; a channel name delays that channel only.
    """

    duration_s: float
    channel: str | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.duration_s) and self.duration_s >= 0):
            raise ValueError(f"Delay.duration_s={self.duration_s!r}: allowed a finite value >= 0 s")
        if self.channel is not None:
            _check_channel_name(self.channel, "Delay.channel")


@dataclass(frozen=True)
class Barrier:
    """Align ``channels`` (all channels when empty): each starts its next operation when the
    latest of them has finished. Multi-qubit devices only; zero duration in itself."""

    channels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        chans = tuple(self.channels)
        for c in chans:
            _check_channel_name(c, "Barrier.channels")
        object.__setattr__(self, "channels", chans)


@dataclass(frozen=True)
class Measure:
    """Measure ``qubits`` (mode names) at the end of the sequence; counts then have
    2^len(qubits) columns, the first qubit the most significant bit. A sequence without a
    ``Measure`` measures every qubit of the device. Must be the last operation."""

    qubits: tuple[str, ...]

    def __post_init__(self) -> None:
        qs = tuple(self.qubits)
        if not qs or len(set(qs)) != len(qs) or not all(isinstance(q, str) and _MODE_NAME.match(q) for q in qs):
            raise ValueError(f"Measure.qubits={self.qubits!r}: allowed distinct mode names like ('q0', 'q1')")
        object.__setattr__(self, "qubits", qs)


_MODE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_CHANNEL_NAME = re.compile(r"^(drive:[A-Za-z][A-Za-z0-9_]*(@[A-Za-z][A-Za-z0-9_]*)?|(flux|coupler):[A-Za-z][A-Za-z0-9_]*)$")


def _check_channel_name(name: object, field_name: str) -> None:
    if not (isinstance(name, str) and _CHANNEL_NAME.match(name)):
        raise ValueError(
            f"{field_name}={name!r}: allowed 'drive:<mode>', 'drive:<mode>@<frame mode>', "
            "'flux:<mode>' or 'coupler:<mode>'"
        )


Operation = Play | VirtualZ | Delay | Barrier | Measure
_OP_TYPES = frozenset({Play, VirtualZ, Delay})
_ALL_OP_TYPES = frozenset({Play, VirtualZ, Delay, Barrier, Measure})


@dataclass(frozen=True)
class PulseSequence:
    """Operations applied in order from |0>, then one Z-basis measurement."""

    ops: tuple[Operation, ...]
    name: str = ""
    meta: dict[str, float] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        ops = tuple(self.ops)
        # Fast path on exact types (sequences are built every env step): no barrier or
        # measurement, or a multi-qubit sequence whose one measurement is last. Subclasses
        # and anything else take the per-element check, which names the offending position.
        types = set(map(type, ops))
        fast = _OP_TYPES.issuperset(types) or (_ALL_OP_TYPES.issuperset(types) and (
            Measure not in types or (type(ops[-1]) is Measure and sum(type(op) is Measure for op in ops) == 1)))
        if not fast:
            for i, op in enumerate(ops):
                if not isinstance(op, Play | VirtualZ | Delay | Barrier | Measure):
                    raise TypeError(
                        f"PulseSequence.ops[{i}] is {type(op).__name__}: allowed Play, VirtualZ, "
                        "Delay, Barrier, Measure"
                    )
                if isinstance(op, Measure) and i != len(ops) - 1:
                    raise ValueError(f"PulseSequence.ops[{i}] is a Measure before the end: allowed only last")
        object.__setattr__(self, "ops", ops)

    @property
    def is_single_qubit(self) -> bool:
        """True when no operation names a channel, frame or measured qubits: the sequence
        means the same on any single-qubit device, as every single-qubit env builds it."""
        for op in self.ops:
            t = type(op)
            if t is Barrier or t is Measure:
                return False
            if t is Play or t is Delay:
                if op.channel is not None:  # type: ignore[union-attr]
                    return False
            elif t is VirtualZ and op.frame is not None:  # type: ignore[union-attr]
                return False
        return True


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
        """Run every sequence ``shots`` times; return counts of shape (len(sequences), 2^k)
        for k measured qubits (first qubit the most significant bit): (len(sequences), 2),
        i.e. (n0, n1), on a single-qubit device."""
        ...

    def advance(self, duration_s: float) -> None:
        """Let ``duration_s`` seconds of device time pass without running anything of ours
        (users' workload between calibrations); drift goes on meanwhile."""
        ...


@runtime_checkable
class BatchedDevice(Device, Protocol):
    """Optional extension of ``Device``: devices of one kind run together in one call.

    The batched methods are static and take the devices: a class provides them for its own
    devices, and ``batched_class`` says whether every device of a call shares them.
    """

    @staticmethod
    def run_many(
        devices: Sequence[Any], sequences_per_device: Sequence[Sequence[PulseSequence]], shots: int
    ) -> list[NDArray[np.int64]]:
        """The same as ``devices[i].run(sequences_per_device[i], shots)`` for each i (same
        counts, generators and clocks), in one call: one (K_i, 2) count array per device."""
        ...

    @staticmethod
    def run_template_operators(
        devices: Sequence[Any], template: SequenceTemplate, waveforms: ArrayLike,
        phases: ArrayLike, shots: int,
    ) -> tuple[NDArray[np.int64], Any]:
        """``run_many`` of ``template.expand(waveforms[b], phases[b])`` on each device b, from
        the arrays (waveforms (B, W, S), phases (B, F)): (B, K, 2) counts, and the
        propagators applied for the played waveform slots (None if the device cannot tell or
        nothing was played)."""
        ...


@runtime_checkable
class SimulatedTruth(Device, Protocol):
    """Optional extension of a simulated ``Device``: the truth behind its counts.

    For evaluation only (an agent must never see it); hardware has no such thing.
    """

    @property
    def open_system(self) -> bool:
        """Whether ``play_operators`` gives superoperators (True) or unitaries (False)."""
        ...

    def current_transmon(self) -> Transmon:
        """The model the device simulates at its clock."""
        ...

    @staticmethod
    def play_operators(devices: Sequence[Any], waveforms: ArrayLike) -> NDArray[np.complex128]:
        """What each device applies for one ``Play`` of its row of ``waveforms`` (B, S), at
        its clock: (B, N², N²) superoperators or (B, N, N) unitaries."""
        ...


# Per device class: the function its batched (truth) methods share, or None. Checked once
# per class: a runtime protocol check costs far more than a dictionary lookup, and a batch
# is checked every environment step.
_BATCHED: dict[type, Any] = {}
_TRUTH: dict[type, Any] = {}


def _shared_method(devices: Sequence[Any], protocol: type, method: str, known: dict[type, Any]) -> Any:
    """The ``method`` every one of ``devices`` gets from its class, when all implement
    ``protocol`` and share that one function (one class, or subclasses that keep it)."""
    if not devices:
        return None
    shared = None
    for dev in devices:
        cls = type(dev)
        fn = known.get(cls, False)
        if fn is False:
            fn = known[cls] = getattr(cls, method) if isinstance(dev, protocol) else None
        if fn is None or (shared is not None and fn is not shared):
            return None
        shared = fn
    return shared


def batched_class(devices: Sequence[Device]) -> type[BatchedDevice] | None:
    """The class whose ``BatchedDevice`` methods run all of ``devices`` in one call, or None
    when some device lacks the extension or the devices are of kinds that cannot share a
    call (then run them with ``Device.run``, as ``run_on_devices`` does)."""
    if _shared_method(devices, BatchedDevice, "run_many", _BATCHED) is None:
        return None
    return type(devices[0])  # type: ignore[return-value]


def truth_class(devices: Sequence[Device]) -> type[SimulatedTruth] | None:
    """The class whose ``SimulatedTruth.play_operators`` serves all of ``devices``, or None
    when some device has no truth (hardware)."""
    if _shared_method(devices, SimulatedTruth, "play_operators", _TRUTH) is None:
        return None
    return type(devices[0])  # type: ignore[return-value]


def run_on_devices(
    devices: Sequence[Device], sequences: Sequence[Sequence[PulseSequence]], shots: Sequence[int]
) -> list[NDArray[np.int64]]:
    """Counts (K_b, 2) for each device b: one batched call per shot count when the devices
    support it (``batched_class``), else ``Device.run`` device by device.

    ``shots[b]`` is the per-sequence shot count of device b (the same for all its
    sequences). Devices with zero shots or no sequences are skipped (empty counts).
    """
    out: list[NDArray[np.int64]] = [np.zeros((len(s), 2), dtype=np.int64) for s in sequences]
    active = [b for b in range(len(devices)) if shots[b] > 0 and len(sequences[b]) > 0]
    if not active:
        return out
    batched = batched_class([devices[b] for b in active])
    if batched is not None:
        groups: dict[int, list[int]] = {}
        for b in active:
            groups.setdefault(int(shots[b]), []).append(b)
        for n, idx in groups.items():
            res = batched.run_many([devices[b] for b in idx], [sequences[b] for b in idx], n)
            for b, counts in zip(idx, res, strict=True):
                out[b] = np.asarray(counts, dtype=np.int64)
    else:
        for b in active:
            out[b] = np.asarray(devices[b].run(sequences[b], int(shots[b])), dtype=np.int64)
    return out
