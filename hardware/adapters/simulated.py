"""The simulated device behind the full hardware path, with injected faults.

``SimulatedBackend`` wraps any envs ``Device`` (normally ``SimulatedDevice``) as a
``Backend``: programs are rendered by the shared renderer, the trace is played on the
device, and the faults a cloud or lab stack shows can be injected at configurable rates
from a seeded generator — transient submit errors, lost acknowledgements (the job ran but
the caller never heard), result timeouts, late deliveries, partial results and duplicated
(stale) deliveries. It keeps its own count of executed shots and of every execution per
job key, so tests can hold the ledger and the "never double-submit" promise against it.

``SimulatedMultiQubitBackend`` is the same for a ``SimulatedMultiQubitDevice``: one frame
per device channel (``channel_frame_name``), the rendered trace played back as a channel
sequence, counts over the bitstrings of the measured qubits, the same faults.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from pulsecal.envs.protocol import Barrier, Delay, Device, Measure, Play, PulseSequence

from .. import backend, ir
from ..guard import require_clearance


@dataclass(frozen=True)
class FaultRates:
    """Probabilities of each injected fault, per call.

    Attributes:
        submit_error: ``submit`` fails before the job reaches the backend.
        lost_response: the job runs but ``submit``'s answer is lost (raises JobTimeout).
        find_error: ``find`` fails transiently.
        late_delivery: a job's result becomes ready only after 1..``late_polls_max`` polls
            (each of which times out).
        result_timeout: one ``result`` call times out although the job is done.
        partial_result: one ``result`` call returns fewer shots than were run.
        duplicate_delivery: one ``result`` call returns an earlier job's result again.
        late_polls_max: see ``late_delivery``.
    """

    submit_error: float = 0.0
    lost_response: float = 0.0
    find_error: float = 0.0
    late_delivery: float = 0.0
    result_timeout: float = 0.0
    partial_result: float = 0.0
    duplicate_delivery: float = 0.0
    late_polls_max: int = 3

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "late_polls_max":
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise ValueError(f"FaultRates.late_polls_max={v!r}: allowed an integer >= 1")
            elif not (isinstance(v, int | float) and math.isfinite(v) and 0 <= v <= 1):
                raise ValueError(f"FaultRates.{f.name}={v!r}: allowed a probability in [0, 1]")

    @classmethod
    def uniform(cls, rate: float) -> FaultRates:
        """Every fault at the same ``rate``."""
        return cls(rate, rate, rate, rate, rate, rate, rate)


@dataclass
class _Job:
    job_id: str
    job_key: str
    shots: int
    counts: dict[str, int]  # outcome bitstring -> count, every outcome of the readout listed
    polls_left: int
    delivered: bool = False


@dataclass
class _Stats:
    submit_calls: int = 0
    executions: int = 0
    idempotent_hits: int = 0
    faults: dict[str, int] = field(default_factory=dict)


class SimulatedBackend:
    """A ``Device`` as a ``Backend``, with fault injection.

    Args:
        device: the envs device to run on (its ``dt_s`` is the backend's grid).
        rng: generator for fault injection only (shot noise is the device's own).
        faults: fault rates (default: none).
        frame: the drive frame (default ``q{qubit}_drive`` at 0 Hz).
        qubit: the device's qubit index.
        granularity, min_samples, max_samples, max_shots: capabilities to advertise.
        idempotent_submit: a second ``submit`` with a known job key returns the first job
            (as a vendor with idempotency keys would); False runs it again, which lets
            tests prove the caller never double-submits.
    """

    name = "simulated"

    def __init__(self, device: Device, *, rng: np.random.Generator, faults: FaultRates | None = None,
                 frame: ir.Frame | None = None, qubit: int = 0, granularity: int = 1,
                 min_samples: int = 1, max_samples: int = 16384, max_shots: int = 100_000,
                 idempotent_submit: bool = True) -> None:
        if not isinstance(device, Device):
            raise TypeError(f"device is {type(device).__name__}: allowed an envs Device")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng is {type(rng).__name__}: allowed numpy.random.Generator")
        self.device = device
        self._rng = rng
        self.faults = faults if faults is not None else FaultRates()
        self.frame = frame if frame is not None else ir.default_drive_frame(qubit)
        self.qubit = qubit
        self.idempotent_submit = idempotent_submit
        self._caps = backend.Capabilities(
            sample_time_s={self.frame.port: device.dt_s}, frames=(self.frame,), qubits=(qubit,),
            granularity=granularity, min_samples=min_samples, max_samples=max_samples,
            native_waveforms=frozenset({"gaussian", "drag", "constant", "sampled"}),
            max_shots=max_shots)
        self._jobs: dict[str, _Job] = {}
        self._by_key: dict[str, str] = {}
        self._delivered: list[str] = []
        self.stats = _Stats()
        self.executed_shots = 0
        self.executions_per_key: dict[str, int] = {}

    # -- Device pass-through (BackendDevice uses these when present) ---------------------

    @property
    def clock_s(self) -> float:
        return self.device.clock_s

    def advance(self, duration_s: float) -> None:
        self.device.advance(duration_s)

    def transmon_model(self, qubit: int = 0) -> Any:
        """The hidden device's transmon now (the textbook start of a session); None for a
        device without one or a qubit other than 0 (this backend has one qubit)."""
        current = getattr(self.device, "current_transmon", None)
        return current() if qubit == 0 and callable(current) else None

    # -- Backend ---------------------------------------------------------------------------

    def capabilities(self) -> backend.Capabilities:
        return self._caps

    def validate(self, program: ir.Program) -> list[backend.Violation]:
        return backend.validate_against(program, self._caps)

    def compile(self, program: ir.Program) -> backend.Artifact:
        trace = self._caps.render(program)
        stop = trace.acquires[-1][1] if trace.acquires else trace.n_samples
        drive = np.asarray(trace.samples[self.frame.name])[:stop]
        payload: PulseSequence = ir.trace_to_sequence(drive, trace.dt_s, name=program.name)
        return backend.Artifact(program, ir.recompute_hash(program), trace, payload)

    def submit(self, artifact: backend.Artifact, shots: int, job_key: str) -> backend.JobHandle:
        self.stats.submit_calls += 1
        require_clearance(artifact, shots, job_key)
        if self._fault("submit_error"):
            raise backend.TransientBackendError(f"injected: submit of {job_key[:12]} failed before queuing")
        if self.idempotent_submit and job_key in self._by_key:
            self.stats.idempotent_hits += 1
            return backend.JobHandle(self._by_key[job_key], job_key)
        counts = np.asarray(self.device.run([artifact.payload], shots))[0]
        job_id = f"sim-{len(self._jobs):06d}"
        late = self._fault("late_delivery")
        polls = int(self._rng.integers(1, self.faults.late_polls_max + 1)) if late else 0
        width = max(1, (len(counts) - 1).bit_length())
        outcomes = {format(k, f"0{width}b"): int(c) for k, c in enumerate(counts)}
        self._jobs[job_id] = _Job(job_id, job_key, shots, outcomes, polls)
        self._by_key[job_key] = job_id
        self.stats.executions += 1
        self.executed_shots += shots
        self.executions_per_key[job_key] = self.executions_per_key.get(job_key, 0) + 1
        if self._fault("lost_response"):
            raise backend.JobTimeout(f"injected: acknowledgement of {job_key[:12]} lost (job {job_id} ran)")
        return backend.JobHandle(job_id, job_key)

    def find(self, job_key: str) -> backend.JobHandle | None:
        if self._fault("find_error"):
            raise backend.TransientBackendError(f"injected: lookup of {job_key[:12]} failed")
        job_id = self._by_key.get(job_key)
        return None if job_id is None else backend.JobHandle(job_id, job_key)

    def result(self, handle: backend.JobHandle, timeout_s: float) -> backend.Result:
        job = self._jobs.get(handle.job_id)
        if job is None or job.job_key != handle.job_key:
            raise backend.BackendError(f"unknown job {handle.job_id!r} for key {handle.job_key[:12]}")
        if job.polls_left > 0:
            job.polls_left -= 1
            raise backend.JobTimeout(f"injected: job {job.job_id} still running after {timeout_s} s")
        if self._fault("result_timeout"):
            raise backend.JobTimeout(f"injected: result of {job.job_id} timed out")
        if self._delivered and self._fault("duplicate_delivery"):
            old = self._jobs[self._delivered[int(self._rng.integers(len(self._delivered)))]]
            return self._result_of(old)
        if self._fault("partial_result"):
            # A strict subset of the shots, as a stream cut short would deliver.
            names = list(job.counts)
            m = int(self._rng.integers(0, job.shots))
            if len(names) == 2:  # the single-qubit draw, as it always was
                n0, n1 = job.counts[names[0]], job.counts[names[1]]
                k1 = int(self._rng.hypergeometric(n1, n0, m)) if m > 0 else 0
                kept = [m - k1, k1]
            else:
                kept = [int(k) for k in self._rng.multivariate_hypergeometric(
                    [job.counts[n] for n in names], m)]
            return backend.Result(dict(zip(names, kept, strict=True)), {"job_id": job.job_id, "job_key": job.job_key,
                                                                "shots": job.shots, "partial": True})
        if not job.delivered:
            job.delivered = True
            self._delivered.append(job.job_id)
        return self._result_of(job)

    # -- internals ------------------------------------------------------------------------

    def _result_of(self, job: _Job) -> backend.Result:
        return backend.Result(dict(job.counts),
                      {"job_id": job.job_id, "job_key": job.job_key, "shots": job.shots,
                       "partial": False})

    def _fault(self, name: str) -> bool:
        p = float(getattr(self.faults, name))
        if p <= 0.0:
            return False
        hit = bool(self._rng.random() < p)
        if hit:
            self.stats.faults[name] = self.stats.faults.get(name, 0) + 1
        return hit


def channel_frame_name(channel: str) -> str:
    """The frame name of an envs channel on the simulated and the qibolab backends:
    ``drive:q0`` -> ``q0_drive``, ``drive:q0@q1`` -> ``q0_q1_cr``, ``flux:q1`` ->
    ``q1_flux`` (a coupler's ``coupler:c01`` -> ``c01_flux``)."""
    kind, mode, at = ir.channel_parts(channel)
    if kind != "drive":
        return f"{mode}_flux"
    return f"{mode}_drive" if at == mode else f"{mode}_{at}_cr"


def channel_frames(channels: Any, names: Any) -> dict[str, ir.Frame]:
    """{envs channel: Frame} of ``names`` (envs channels) among the backend frames
    ``channels`` (an iterable of Frame), matched by ``channel_frame_name``; a channel
    without its frame is refused naming both."""
    by_name = {f.name: f for f in channels}
    out: dict[str, ir.Frame] = {}
    for c in names:
        name = channel_frame_name(c)
        if name not in by_name:
            raise ValueError(f"channel {c!r}: the backend has no frame {name!r}: allowed one of {sorted(by_name)}")
        out[c] = by_name[name]
    return out


class SimulatedMultiQubitBackend(SimulatedBackend):
    """A ``SimulatedMultiQubitDevice`` (or any envs device with its ``params.channels``
    and ``qubits``) as a ``Backend``, with the fault injection of ``SimulatedBackend``.

    Frames: one per device channel, named by ``channel_frame_name``, at 0 Hz (the device
    plays its channels in the frames of their modes); the drive and cr frames of a mode
    share its drive port. Qubits: ``q<n>`` is backend qubit n. A program's trace is played
    back as a channel sequence (every frame's plays at their samples, a barrier, the
    measurement in the program's order), so a program compiled from an envs sequence
    gives the device's outcome distribution of that sequence, and a program from
    elsewhere (a vendor text lifted to the IR) runs on the same physics.
    """

    name = "simulated_multi_qubit"

    def __init__(self, device: Any, *, rng: np.random.Generator, faults: FaultRates | None = None,
                 granularity: int = 1, min_samples: int = 1, max_samples: int = 16384, max_shots: int = 100_000,
                 idempotent_submit: bool = True) -> None:
        chans = device.params.channels
        qubits = tuple(device.qubits)
        frames: list[ir.Frame] = []
        self.frame_channels: dict[str, str] = {}
        for c in (*chans.drives, *chans.reals):
            kind = ir.channel_frame_kind(c)
            mode = ir.channel_parts(c)[1]
            port = f"{mode}_drive" if kind != "flux" else f"{mode}_flux"
            f = ir.Frame(channel_frame_name(c), port, 0.0, kind=kind)
            frames.append(f)
            self.frame_channels[f.name] = c
        index = []
        for q in qubits:
            if not (q.startswith("q") and q[1:].isdigit()):
                raise ValueError(f"device qubit {q!r}: allowed 'q<n>' modes on this backend")
            index.append(int(q[1:]))
        super().__init__(device, rng=rng, faults=faults, frame=frames[0], qubit=index[0], granularity=granularity,
                         min_samples=min_samples, max_samples=max_samples, max_shots=max_shots,
                         idempotent_submit=idempotent_submit)
        ports = {f.port for f in frames}
        drive = {n: f"q{n}_drive" for n in index if f"q{n}_drive" in self.frame_channels}
        self._caps = dataclasses.replace(self._caps, sample_time_s=dict.fromkeys(ports, device.dt_s),
                                         frames=tuple(frames), qubits=tuple(index), drive_frames=drive)

    def transmon_model(self, qubit: int = 0) -> Any:
        return None  # coupled modes: no single transmon to start a single-qubit session from

    def compile(self, program: ir.Program) -> backend.Artifact:
        trace = self._caps.render(program)
        return backend.Artifact(program, ir.recompute_hash(program), trace, self.trace_sequence(trace, program.name))

    def trace_sequence(self, trace: ir.WaveformTrace, name: str = "") -> PulseSequence:
        """The channel sequence that plays ``trace`` (frames of this backend) on the device."""
        ops: list[Any] = []
        for frame in trace.samples:
            channel = self.frame_channels.get(frame)
            if channel is None:
                raise ValueError(f"frame {frame!r}: allowed one of {sorted(self.frame_channels)}")
            samples = np.asarray(trace.samples[frame])
            cursor = 0
            for span in sorted((p for p in trace.plays if p.frame == frame), key=lambda p: p.start):
                if span.start > cursor:
                    ops.append(Delay((span.start - cursor) * trace.dt_s, channel=channel))
                w = samples[span.start:span.stop]
                ops.append(Play(w.real.copy() if ir.channel_frame_kind(channel) == "flux" else w.copy(),
                                channel=channel))
                cursor = span.stop
        ops.append(Barrier())
        ops.append(Measure(tuple(f"q{q}" for q, _ in trace.acquires)))
        return PulseSequence(tuple(ops), name=name)


def simulated_multi_qubit_backend(preset: str = "two_transmons_cz", seed: int = 0, fault_rate: float = 0.0,
                                  open_system: bool = True, idempotent_submit: bool = True) -> SimulatedMultiQubitBackend:
    """The ``configs/backend/simulated_multi_qubit.yaml`` factory: the multi-qubit preset's
    device (``envs.multi_qubit_presets``; its drift and readout) behind a
    ``SimulatedMultiQubitBackend``, every fault of ``FaultRates`` at ``fault_rate``. The
    device's draws come from ``seed``, the faults' from ``seed + 1``."""
    from pulsecal.envs.multi_qubit_presets import get_multi_qubit_preset

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r}: allowed an integer >= 0")
    try:
        spec = get_multi_qubit_preset(preset)
    except ValueError as err:
        raise ValueError(f"preset={preset!r}: {err}") from None
    dev = spec.make(np.random.default_rng(seed), open_system=bool(open_system))
    if isinstance(fault_rate, bool) or not isinstance(fault_rate, int | float) or not 0 <= fault_rate <= 1:
        raise ValueError(f"fault_rate={fault_rate!r}: allowed a probability in [0, 1]")
    faults = FaultRates.uniform(float(fault_rate))
    return SimulatedMultiQubitBackend(dev, rng=np.random.default_rng(seed + 1), faults=faults,
                                      idempotent_submit=idempotent_submit)
