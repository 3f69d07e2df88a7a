"""Pulse sequences on named channels -> a schedule of driven and idle segments.

Every channel has its own timeline, as in OpenPulse: a ``Play`` starts where its channel's
previous operation ended, so plays on different channels run in parallel unless a
``Barrier`` (the listed channels, or all) aligns them. Times count whole AWG samples from
t = 0 of the sequence, which is also where the frames' clocks start.

- ``Play(w, channel=c)``: samples on channel c (``drive:*`` complex |u| <= 1, ``flux:*`` and
  ``coupler:*`` real offsets within the mode's ``flux.max_offset``), multiplied by the
  channel's accumulated frame phase e^{+iφ} (drive channels).
- ``VirtualZ(φ, frame=q)``: aligns every drive channel playing at q's frame (``drive:q`` and
  ``drive:x@q``), then adds φ to their phase; zero duration.
- ``Delay(T, channel=c)``: channel c idles for round(T/dt) samples; ``channel=None`` aligns
  every channel and then idles them all (the whole device waits T).
- ``Barrier(channels)``: the listed channels (all when empty) continue from the latest of them.
- ``Measure(qubits)``: last; without it every qubit is measured. Measurement starts when
  the last channel has finished.

On a device with one qubit, ``channel=None`` / ``frame=None`` mean that qubit's drive and
frame, so single-qubit sequences run unchanged. The compiled ``Schedule`` is a list of
segments covering [0, T): ``DrivenSegment`` (every channel that plays in the window as one
sample array over the window, zeros where it idles, with its absolute start time) and
``IdleSegment`` (nothing plays: propagated exactly as idle evolution in one step, however
long). Errors name the operation's index and field.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from .physics.coupled.model import parse_channel
from .physics.coupled.operators import OperatorModel
from .protocol import Barrier, Delay, Measure, Play, PulseSequence, VirtualZ

_SLACK = 1e-9


@dataclass(frozen=True, eq=False)
class DrivenSegment:
    """Samples [start, start + n_samples) with something playing.

    Attributes:
        start: first sample, counted from t = 0 of the sequence.
        n_samples: length S of the window.
        t0_s: start · dt_s, the absolute time the frames see.
        controls: channel -> (S,) samples (complex for drive channels, float offsets for
            flux channels), zeros where the channel idles inside the window.
        unphased: the same samples with every frame phase at 0, or None when no drive
            play in the window carries a phase (then they are ``controls``).
        drive_phases: (channel, e^{iφ}) of every drive play in the window with a non-zero
            sample, in play order: one entry per play, so a frame change between two plays
            of one window shows as two different factors.
    """

    start: int
    n_samples: int
    t0_s: float
    controls: dict[str, NDArray[np.generic]]
    unphased: dict[str, NDArray[np.generic]] | None = None
    drive_phases: tuple[tuple[str, complex], ...] = ()

    @property
    def raw_controls(self) -> dict[str, NDArray[np.generic]]:
        """The samples as played with every frame phase at 0 (``controls`` when no drive in
        the window carries a phase): what a device that factors frame phases out
        propagates."""
        return self.controls if self.unphased is None else self.unphased


@dataclass(frozen=True)
class IdleSegment:
    """Samples [start, start + n_samples) with nothing playing (free evolution)."""

    start: int
    n_samples: int
    t0_s: float
    duration_s: float


Segment = DrivenSegment | IdleSegment


@dataclass(frozen=True, eq=False)
class Schedule:
    """A compiled sequence.

    Attributes:
        segments: driven and idle segments in time order, covering [0, n_samples).
        measured: qubits measured at the end, in column order (first most significant).
        n_samples: total length in samples (0 for a sequence that only measures).
        dt_s: the sample time.
        played: channels that play at least one sample, in order of first use.
    """

    segments: tuple[Segment, ...]
    measured: tuple[str, ...]
    n_samples: int
    dt_s: float
    played: tuple[str, ...]

    @property
    def duration_s(self) -> float:
        return self.n_samples * self.dt_s


@dataclass(frozen=True)
class ChannelSet:
    """What a schedule is checked against: a device's channels, modes and qubits.

    Attributes:
        drives: drive channel names (complex samples, |u| <= 1).
        reals: real channel name -> largest |sample| (flux: the mode's ``flux.max_offset``).
        modes: mode names (the frames a ``VirtualZ`` may name).
        qubits: names of the modes that are qubits (what ``Measure`` may name), basis order.
        dt_s: the AWG sample time.
    """

    drives: tuple[str, ...]
    reals: Mapping[str, float]
    modes: tuple[str, ...]
    qubits: tuple[str, ...]
    dt_s: float

    @classmethod
    def of(cls, om: OperatorModel) -> ChannelSet:
        """The channels of an operator model (a compiled or bring-your-own model)."""
        return cls(tuple(om.drives), {n: r.max_abs for n, r in om.reals.items()}, om.names, qubit_names(om), om.dt_s)

    # Cached: a device compiles every sequence it runs against the same channel set.
    @functools.cached_property
    def all(self) -> tuple[str, ...]:
        return (*self.drives, *self.reals)

    @functools.cached_property
    def layout_key(self) -> tuple[object, ...]:
        """What a schedule's timing depends on of the channel set (not the flux limits,
        which only the samples are checked against): the key of its ``SchedulePlan``s."""
        return (self.drives, tuple(self.reals), self.modes, self.qubits, self.dt_s)

    @functools.cached_property
    def drives_at_frame(self) -> dict[str | None, tuple[str, ...]]:
        """Frame (mode name, or None outside the naming scheme) -> the drive channels playing at it."""
        out: dict[str | None, list[str]] = {}
        for c in self.drives:
            out.setdefault(_frame_of(c), []).append(c)
        return {f: tuple(cs) for f, cs in out.items()}


def channel_frame(name: str) -> str:
    """The mode whose frame a channel plays at (``drive:q0@q1`` -> ``q1``, ``flux:q1`` -> ``q1``)."""
    return parse_channel(name)[2]


def channel_modes(name: str) -> tuple[str, ...]:
    """The modes a channel acts on directly: its line and, if different, its frame."""
    _, line, frame = parse_channel(name)
    return (line,) if line == frame else (line, frame)


def qubit_names(om: OperatorModel) -> tuple[str, ...]:
    return tuple(n for n, q in zip(om.names, om.qubit_levels, strict=True) if q is not None)


def compile_schedule(sequence: PulseSequence, channels: ChannelSet | OperatorModel, *,
                     where: str = "sequence") -> Schedule:
    """``sequence`` on a device's channels -> its ``Schedule``; ValueError naming
    ``<where>.ops[i].<field>`` for anything the device cannot run.

    The timing of a sequence depends only on its structure (``SchedulePlan``), so that is
    planned once per structure and channel set and kept; each call fills in the samples and
    frame phases."""
    if not isinstance(sequence, PulseSequence):
        raise TypeError(f"{where} is {type(sequence).__name__}: allowed PulseSequence")
    cs = channels if isinstance(channels, ChannelSet) else ChannelSet.of(channels)
    return plan_schedule(sequence, cs, where).fill(sequence, cs, where)


def plan_schedule(sequence: PulseSequence, cs: ChannelSet, where: str = "sequence") -> SchedulePlan:
    """The ``SchedulePlan`` of ``sequence``'s structure on ``cs``, planned on first use."""
    key = (cs.layout_key, _structure_key(sequence))
    plan = _PLANS.get(key)
    if plan is None:
        plan = SchedulePlan(sequence, cs, where)
        if len(_PLANS) >= _PLAN_LIMIT:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


# Plans by (channel layout, sequence structure). A calibration env's probes take a few
# dozen structures (a pulse length knob changes a play's size); the limit only bounds a
# process that runs many different sequences.
_PLANS: dict[tuple[Any, ...], SchedulePlan] = {}
_PLAN_LIMIT = 4096


def _structure_key(sequence: PulseSequence) -> tuple[Any, ...]:
    """What a sequence's timing depends on: its operations without their samples and phases."""
    out: list[Any] = []
    for op in sequence.ops:
        t = type(op)
        if t is Play:
            out.append((op.channel, op.waveform.size))  # type: ignore[union-attr]
        elif t is VirtualZ:
            out.append(("Z", op.frame))  # type: ignore[union-attr]
        elif t is Delay:
            out.append(("D", op.duration_s, op.channel))  # type: ignore[union-attr]
        elif t is Barrier:
            out.append(("B", op.channels))  # type: ignore[union-attr]
        else:
            out.append(("M", op.qubits))  # type: ignore[union-attr]
    return tuple(out)


@dataclass(frozen=True)
class _PlannedPlay:
    """One ``Play`` of a planned sequence.

    Attributes:
        op: its index in the sequence's operations.
        channel: the resolved channel.
        start: its first sample.
        drive: whether the channel is a drive channel (complex samples with a frame phase).
        phase_ops: the indices of the ``VirtualZ`` operations whose phases the channel's
            frame has accumulated before this play, in order (the phase is their sum).
    """

    op: int
    channel: str
    start: int
    drive: bool
    phase_ops: tuple[int, ...]


class SchedulePlan:
    """A sequence's schedule apart from its numbers: where each play starts, the driven
    windows and idle gaps, which plays each window holds, and the frame changes each drive
    play's phase sums. Built by walking the operations once (the module docstring's
    timeline rules); ``fill`` builds the ``Schedule`` of any sequence of the same structure
    (``_structure_key``) from its samples and phases. Structural errors (channels, frames,
    measured qubits) are raised when planning, errors in the samples when filling."""

    def __init__(self, sequence: PulseSequence, cs: ChannelSet, where: str) -> None:
        dt = cs.dt_s
        qubits = cs.qubits
        only = qubits[0] if len(qubits) == 1 else None
        every = cs.all
        cursor = dict.fromkeys(every, 0)
        phase_ops: dict[str, tuple[int, ...]] = dict.fromkeys(cs.drives, ())
        at_frames = cs.drives_at_frame
        drives = set(cs.drives)
        plays: list[_PlannedPlay] = []
        sizes: list[int] = []
        measured: tuple[str, ...] = qubits

        def align(names: list[str] | tuple[str, ...]) -> None:
            if names:
                t = max(cursor[c] for c in names)
                for c in names:
                    cursor[c] = t

        for i, op in enumerate(sequence.ops):
            at = f"{where}.ops[{i}]"
            t = type(op)
            if t is Play:
                assert isinstance(op, Play)
                c = _resolve_channel(op.channel, cs, only, f"{at}.channel")
                plays.append(_PlannedPlay(i, c, cursor[c], c in drives, phase_ops.get(c, ())))
                sizes.append(op.waveform.size)
                cursor[c] += op.waveform.size
            elif t is VirtualZ:
                assert isinstance(op, VirtualZ)
                q = op.frame if op.frame is not None else only
                if q is None:
                    raise ValueError(f"{at}.frame=None: allowed a mode name on a device with {len(qubits)} "
                                     f"qubits, one of {list(cs.modes)}")
                if q not in cs.modes:
                    raise ValueError(f"{at}.frame={q!r} is not a mode of the device: allowed {list(cs.modes)}")
                at_frame = at_frames.get(q, ())
                align(at_frame)
                for c in at_frame:
                    phase_ops[c] += (i,)
            elif t is Delay:
                assert isinstance(op, Delay)
                n = round(op.duration_s / dt)
                if op.channel is None:
                    align(every)
                    for c in every:
                        cursor[c] += n
                else:
                    cursor[_resolve_channel(op.channel, cs, None, f"{at}.channel")] += n
            elif t is Barrier:
                assert isinstance(op, Barrier)
                align([_resolve_channel(c, cs, None, f"{at}.channels") for c in op.channels] or every)
            elif t is Measure:
                assert isinstance(op, Measure)
                for q in op.qubits:
                    if q not in qubits:
                        raise ValueError(f"{at}.qubits: {q!r} is not a qubit of the device: allowed {list(qubits)}")
                measured = op.qubits
            else:  # pragma: no cover - PulseSequence checks the operation types
                raise TypeError(f"{at} is {t.__name__}")
        total = max(cursor.values(), default=0)
        self.plays = tuple(plays)
        self.layout = _layout(plays, sizes, total, dt)
        self.measured = measured
        self.n_samples = total
        self.dt_s = dt
        self.played = tuple(dict.fromkeys(p.channel for p in plays))

    def values(self, sequence: PulseSequence, cs: ChannelSet, where: str = "sequence"
               ) -> list[tuple[NDArray[np.generic], complex | None, bool]]:
        """Per play of ``sequence`` (of this plan's structure), in ``plays`` order: (its
        samples without the frame phase, the phase factor e^{iφ} for a drive play or None,
        whether φ != 0, i.e. the samples as played are samples · e^{iφ}). Flux samples are
        checked here (real, within the channel's limit on ``cs``)."""
        ops = sequence.ops
        out: list[tuple[NDArray[np.generic], complex | None, bool]] = []
        for p in self.plays:
            w = ops[p.op].waveform  # type: ignore[union-attr]
            c = p.channel
            if p.drive:
                phase = 0.0
                for j in p.phase_ops:
                    phase += ops[j].phase  # type: ignore[union-attr]
                out.append((w, np.exp(1j * phase) if phase else 1.0 + 0.0j, bool(phase)))
                continue
            at = f"{where}.ops[{p.op}]"
            if w.imag.any():
                raise ValueError(f"{at}.waveform on {c!r} has complex samples: allowed real flux offsets")
            x = w.real.copy()
            limit = cs.reals[c]
            peak = float(np.abs(x).max())
            if peak > limit + _SLACK:
                s = int(np.argmax(np.abs(x)))
                raise ValueError(f"{at}.waveform[{s}] = {float(x[s])!r} on {c!r} is out of range: "
                                 f"allowed |sample| <= {limit:g} Φ0 (the mode's flux.max_offset)")
            out.append((x, None, False))
        return out

    def fill(self, sequence: PulseSequence, cs: ChannelSet, where: str = "sequence") -> Schedule:
        """The ``Schedule`` of ``sequence`` (of this plan's structure) on ``cs``."""
        vals = self.values(sequence, cs, where)
        out: list[Segment] = []
        for item in self.layout:
            if isinstance(item, IdleSegment):
                out.append(item)
            else:
                out.append(self.driven(item, vals))
        return Schedule(tuple(out), self.measured, self.n_samples, self.dt_s, self.played)

    def driven(self, window: tuple[int, int, tuple[int, ...]],
               vals: list[tuple[NDArray[np.generic], complex | None, bool]]) -> DrivenSegment:
        """The ``DrivenSegment`` of one driven window of ``layout`` from ``values``."""
        a, b, idx = window
        inside: list[tuple[str, int, NDArray[np.generic], NDArray[np.generic], complex | None]] = []
        for k in idx:
            p = self.plays[k]
            w, z, phased = vals[k]
            samples = cast(NDArray[np.complex128], w) * z if phased and z is not None else w
            inside.append((p.channel, p.start, samples, w, z))
        return _driven(a, b, self.dt_s, inside)


def _frame_of(channel: str) -> str | None:
    try:
        return channel_frame(channel)
    except ValueError:  # a bring-your-own channel outside the naming scheme has no frame to shift
        return None


def _resolve_channel(name: str | None, cs: ChannelSet, only: str | None, field: str) -> str:
    if name is None:
        if only is not None and f"drive:{only}" in cs.drives:
            return f"drive:{only}"
        raise ValueError(f"{field}=None: allowed a channel name on a multi-qubit device, one of {_allowed(cs.all)}")
    if name not in cs.reals and name not in cs.drives:
        raise ValueError(f"{field}={name!r} is not a channel of the device: allowed {_allowed(cs.all)}")
    return name


def _allowed(names: tuple[str, ...]) -> str:
    """The allowed names for a message: all of them, or the first few of a large device."""
    ordered = sorted(names)
    if len(ordered) <= 12:
        return str(ordered)
    return f"{ordered[:8]} … ({len(ordered)} channels)"


def _layout(plays: list[_PlannedPlay], sizes: list[int], total: int, dt: float
            ) -> tuple[IdleSegment | tuple[int, int, tuple[int, ...]], ...]:
    """Merge the plays' intervals into driven windows; the gaps (and the ends) are idle.
    Per window (first sample, end, indices of the plays that start in it); idle gaps as
    their ``IdleSegment`` (it holds no samples, so one object serves every fill).

    Overlapping plays share a window. A play that starts just as a window ends joins it if
    its channel already plays there (a flux line's distortion runs from rest at a window's
    start, so a flux pulse that goes on from another must stay in its window); otherwise it
    opens a window of its own, so that a drive at one frame followed by a drive at another
    stays piecewise constant for the engine (one exponential per sample, not substeps).
    """
    spans = sorted(((p.start, p.start + n, p.channel) for p, n in zip(plays, sizes, strict=True)),
                   key=lambda x: x[0])
    windows: list[list[int]] = []
    members: list[set[str]] = []
    for a, b, c in spans:
        if windows and (a < windows[-1][1] or (a == windows[-1][1] and c in members[-1])):
            windows[-1][1] = max(windows[-1][1], b)
            members[-1].add(c)
        else:
            windows.append([a, b])
            members.append({c})
    out: list[IdleSegment | tuple[int, int, tuple[int, ...]]] = []
    t = 0
    for a, b in windows:
        if a > t:
            out.append(IdleSegment(t, a - t, t * dt, (a - t) * dt))
        out.append((a, b, tuple(k for k, p in enumerate(plays) if a <= p.start < b)))
        t = b
    if total > t:
        out.append(IdleSegment(t, total - t, t * dt, (total - t) * dt))
    return tuple(out)


def _driven(a: int, b: int, dt: float,
            inside: list[tuple[str, int, NDArray[np.generic], NDArray[np.generic], complex | None]]
            ) -> DrivenSegment:
    """The window [a, b) from the plays that start in it: (channel, first sample, samples
    as played, samples without the frame phase, phase factor or None)."""
    controls: dict[str, NDArray[np.generic]] = {}
    for c, s, w, _, _ in inside:
        if c not in controls:
            controls[c] = np.zeros(b - a, dtype=w.dtype)
        controls[c][s - a:s - a + w.size] = w
    phases = tuple((c, z) for c, _, _, raw, z in inside if z is not None and raw.any())
    unphased: dict[str, NDArray[np.generic]] | None = None
    if any(z != 1.0 for _, z in phases):
        unphased = {}
        for c, s, _, raw, _ in inside:
            if c not in unphased:
                unphased[c] = np.zeros(b - a, dtype=raw.dtype)
            unphased[c][s - a:s - a + raw.size] = raw
    return DrivenSegment(a, b - a, a * dt, controls, unphased, phases)
