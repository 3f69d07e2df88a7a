"""The ``Backend`` protocol every pulse-level target implements, and what it exchanges.

A backend says what it can do (``Capabilities``), checks a program against that without
side effects (``validate``), turns it into a vendor artifact (``compile``), runs it
(``submit``, keyed by an idempotency ``job_key``) and hands back counts (``result``).
Library code never calls ``submit`` directly: ``pulsecal.hardware.guard.GuardedBackend``
is the only caller, and adapters refuse artifacts it did not clear
(``guard.require_clearance``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .ir import (
    DEFAULT_MAX_TOTAL_SAMPLES,
    GRID_TOLERANCE,
    Acquire,
    Constant,
    Drag,
    Frame,
    FramePlay,
    Gaussian,
    Program,
    Sampled,
    WaveformTrace,
    to_waveform_trace,
)
from .program_render import waveform_samples

if TYPE_CHECKING:
    from .guard import Clearance


class BackendError(RuntimeError):
    """A backend failure that retrying will not fix (rejected program, auth, ...)."""


class TransientBackendError(BackendError):
    """A failure worth retrying: network error, queue hiccup, lost response."""


class JobTimeout(TransientBackendError):
    """The job's result did not arrive within ``timeout_s``; the job may still complete."""


@dataclass(frozen=True)
class Violation:
    """One broken rule: ``limit`` (the rule's name), the offending ``value``, what is
    ``allowed``, and ``where`` in the program."""

    limit: str
    value: Any
    allowed: str
    where: str = ""

    def __str__(self) -> str:
        at = f"{self.where}: " if self.where else ""
        return f"{at}{self.limit}={self.value!r}, allowed {self.allowed}"

    def to_dict(self) -> dict[str, str]:
        return {"limit": self.limit, "value": repr(self.value), "allowed": self.allowed,
                "where": self.where}


@dataclass(frozen=True)
class Capabilities:
    """What a backend accepts.

    Attributes:
        sample_time_s: AWG sample time per port name, in seconds.
        frames: frames the backend exposes (name, port, nominal frequency).
        qubits: addressable qubits.
        granularity: waveform and delay lengths are padded to a multiple of this many samples.
        min_samples: shortest waveform in samples (shorter ones are zero-padded).
        max_samples: longest waveform in samples.
        amplitude_limit: largest |u| the backend plays (full scale is 1).
        native_waveforms: waveform kinds sent parametrically; others are sent sampled.
        max_shots: most shots per job.
        drive_frames: the drive frame of each qubit, by frame name (qubit -> name), for
            backends with several qubits; empty: a backend with one frame drives every
            qubit it lists through it (``drive_frame``).
    """

    sample_time_s: Mapping[str, float]
    frames: tuple[Frame, ...]
    qubits: tuple[int, ...] = (0,)
    granularity: int = 1
    min_samples: int = 1
    max_samples: int = 16384
    amplitude_limit: float = 1.0
    native_waveforms: frozenset[str] = frozenset({"sampled"})
    max_shots: int = 100_000
    drive_frames: Mapping[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        st = dict(self.sample_time_s)
        if not st:
            raise ValueError("Capabilities.sample_time_s={}: allowed at least one port")
        for port, dt in st.items():
            if not (isinstance(dt, int | float) and math.isfinite(dt) and dt > 0):
                raise ValueError(f"Capabilities.sample_time_s[{port!r}]={dt!r}: allowed finite > 0 s")
        object.__setattr__(self, "sample_time_s", st)
        object.__setattr__(self, "frames", tuple(self.frames))
        for f in self.frames:
            if f.port not in st:
                raise ValueError(f"Capabilities.frames[{f.name!r}].port={f.port!r}: allowed a "
                                 f"port with a sample time {sorted(st)}")
        for name, lo in (("granularity", 1), ("min_samples", 1), ("max_samples", 1), ("max_shots", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"Capabilities.{name}={v!r}: allowed an integer >= {lo}")
        if self.max_samples < self.min_samples:
            raise ValueError(f"Capabilities.max_samples={self.max_samples}: allowed >= "
                             f"min_samples={self.min_samples}")
        if not (math.isfinite(self.amplitude_limit) and 0 < self.amplitude_limit <= 1):
            raise ValueError(f"Capabilities.amplitude_limit={self.amplitude_limit!r}: allowed (0, 1]")
        object.__setattr__(self, "native_waveforms", frozenset(self.native_waveforms))
        drive = dict(self.drive_frames)
        names = {f.name for f in self.frames}
        for q, name in drive.items():
            if q not in self.qubits:
                raise ValueError(f"Capabilities.drive_frames[{q!r}]: allowed a qubit of {self.qubits}")
            if name not in names:
                raise ValueError(f"Capabilities.drive_frames[{q!r}]={name!r}: allowed a frame of {sorted(names)}")
        object.__setattr__(self, "drive_frames", drive)

    def drive_frame(self, qubit: int) -> Frame:
        """The frame that drives ``qubit`` (a calibration session of that qubit plays on it)."""
        if isinstance(qubit, bool) or not isinstance(qubit, int) or qubit not in self.qubits:
            raise ValueError(f"qubit={qubit!r}: allowed one of the backend's qubits {self.qubits}")
        name = self.drive_frames.get(qubit)
        if name is not None:
            return self.frame(name)
        if len(self.frames) == 1:
            return self.frames[0]
        raise ValueError(f"qubit={qubit!r}: the backend lists {len(self.frames)} frames "
                         f"{[f.name for f in self.frames]} and no drive frame for this qubit "
                         "(Capabilities.drive_frames)")

    def frame(self, name: str) -> Frame:
        for f in self.frames:
            if f.name == name:
                return f
        raise KeyError(f"frame {name!r}: allowed one of {[f.name for f in self.frames]}")

    def dt_s_for(self, program: Program) -> float:
        """The one sample time of the ports ``program`` uses (mixing grids is not supported)."""
        dts = {self.sample_time_s.get(f.port, math.nan) for f in program.frames}
        if len(dts) != 1 or not all(math.isfinite(x) for x in dts):
            raise ValueError(f"program ports {[f.port for f in program.frames]} have sample "
                             f"times {sorted(dts)}: allowed ports of one grid in {self.sample_time_s}")
        return dts.pop()

    def render(self, program: Program) -> WaveformTrace:
        """The program on this backend's grid (granularity and minimum length applied)."""
        return to_waveform_trace(program, self.dt_s_for(program), granularity=self.granularity,
                                 min_samples=self.min_samples,
                                 max_total_samples=max(DEFAULT_MAX_TOTAL_SAMPLES, self.max_samples))


def validate_against(program: Program, caps: Capabilities) -> list[Violation]:
    """Pure check of ``program`` against ``caps``; the shared part of every ``validate``."""
    out: list[Violation] = []
    if not isinstance(program, Program):
        return [Violation("program_type", type(program).__name__, "a pulsecal.hardware.ir.Program")]
    if not 1 <= program.shots <= caps.max_shots:
        out.append(Violation("shots", program.shots, f"1..{caps.max_shots}"))
    for q in program.qubits:
        if q not in caps.qubits:
            out.append(Violation("qubit", q, f"one of {caps.qubits}"))
    known = {f.name: f for f in caps.frames}
    for f in program.frames:
        k = known.get(f.name)
        if k is None:
            out.append(Violation("frame", f.name, f"one of {sorted(known)}"))
        elif k.port != f.port:
            out.append(Violation("frame_port", f.port, f"{k.port!r}", where=f"frame {f.name!r}"))
    if out:
        return out
    try:
        dt_s = caps.dt_s_for(program)
    except ValueError as e:
        return [Violation("sample_grid", str(e), "one sample time per program")]
    # A multi-qubit program ends in one Acquire per measured qubit (one simultaneous readout,
    # ``ir.to_waveform_trace``); a single-qubit one in exactly one.
    acquires = [i for i, ins in enumerate(program.instructions) if isinstance(ins, Acquire)]
    n_ins = len(program.instructions)
    measured = [program.instructions[i].qubit for i in acquires]  # type: ignore[union-attr]
    if not acquires or acquires != list(range(n_ins - len(acquires), n_ins)) \
            or len(set(measured)) != len(measured):
        out.append(Violation("acquire", f"Acquire at {acquires} of {n_ins} (qubits {measured})",
                             "one Acquire per measured qubit, all at the end"))
    for i, ins in enumerate(program.instructions):
        if not isinstance(ins, FramePlay):
            continue
        wf = ins.waveform
        where = f"instructions[{i}]"
        if isinstance(wf, Gaussian | Drag | Constant):
            n_float = wf.duration_s / dt_s
            if abs(n_float - round(n_float)) > GRID_TOLERANCE * max(1.0, n_float):
                out.append(Violation("duration_grid", wf.duration_s,
                                     f"a whole number of samples of {dt_s!r} s", where))
                continue
            n = round(n_float)
        elif isinstance(wf, Sampled):
            n = math.ceil(wf.samples.size * wf.dt_s / dt_s - GRID_TOLERANCE)
        else:
            out.append(Violation("waveform", type(wf).__name__, "a known waveform", where))
            continue
        if n > caps.max_samples:
            out.append(Violation("samples", n, f"<= {caps.max_samples}", where))
    if out:
        return out
    # Peak |u| per FramePlay: frame phases and frequencies only rotate samples, so the waveform's
    # own samples decide the amplitude and the full trace need not be rendered here.
    for i, ins in enumerate(program.instructions):
        if not isinstance(ins, FramePlay):
            continue
        try:
            with np.errstate(all="ignore"):  # non-finite samples are reported, not warned
                w = waveform_samples(ins.waveform, dt_s, caps.max_samples)
        except (ValueError, TypeError) as e:
            out.append(Violation("renderable", str(e), "a waveform the renderer accepts",
                                 f"instructions[{i}]"))
            continue
        peak = float(np.max(np.abs(w)))
        if not peak <= caps.amplitude_limit * (1 + 1e-12):
            out.append(Violation("amplitude", peak, f"<= {caps.amplitude_limit}", f"instructions[{i}]"))
    return out


@dataclass(frozen=True, eq=False)
class Artifact:
    """A compiled program: the ``program`` it came from, its ``program_hash``, the ``trace``
    the backend will actually play (after any vendor quantisation) and the vendor
    ``payload``. ``clearance`` is set only by the guard."""

    program: Program
    program_hash: str
    trace: WaveformTrace
    payload: Any
    clearance: Clearance | None = None


@dataclass(frozen=True)
class JobHandle:
    """A submitted job: the backend's ``job_id`` and our idempotency ``job_key``."""

    job_id: str
    job_key: str


@dataclass(frozen=True)
class Result:
    """Outcome counts by bitstring (``{"0": n0, "1": n1}`` for one qubit) and metadata;
    ``metadata["job_id"]`` names the job the counts belong to."""

    counts: Mapping[str, int]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def shots(self) -> int:
        return int(sum(self.counts.values()))


@runtime_checkable
class Backend(Protocol):
    """A pulse-level target. ``validate`` must be pure; ``submit`` must only execute
    artifacts cleared by the guard and should be idempotent on ``job_key`` where the vendor
    allows it; ``find`` answers "did a job with this key reach you?" so a retry after a
    lost response never double-submits.

    Optional: ``reusable_artifacts = True`` declares that ``compile`` is a function of the
    program's content alone for the backend object's life and that ``submit`` leaves an
    artifact's payload as it found it, so the guard may hand the same checked artifact,
    sealed anew, to later jobs of the same content (``hardware.guard``)."""

    name: str

    def capabilities(self) -> Capabilities: ...

    def validate(self, program: Program) -> list[Violation]: ...

    def compile(self, program: Program) -> Artifact: ...

    def submit(self, artifact: Artifact, shots: int, job_key: str) -> JobHandle: ...

    def find(self, job_key: str) -> JobHandle | None: ...

    def result(self, handle: JobHandle, timeout_s: float) -> Result: ...
