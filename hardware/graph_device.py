"""A lab backend as the device the calibration graph's experiments measure.

The graph's experiments (``pulsecal.agents.graph``) talk to a multi-qubit device:
``run(sequences, shots)`` with envs ``PulseSequence``s on channels ``drive:qN`` (and
``drive:qN@qM``, ``flux:qN``), ``qubits``, ``dt_s``, ``clock_s``, ``advance`` and, for the
frame a drive is played in, ``params.model.mode(q).frame_hz``. ``BackendGraphDevice`` gives
any ``hardware.backend.Backend`` (qibolab platforms, Braket/OpenPulse, the simulated
backends) that interface without changing the experiments' calls: each sequence is
compiled to an IR ``Program`` on the backend's frames (``ir.from_channel_sequence``),
checked against the backend and the safety envelope per frame, submitted exactly once
through the guard with its shots reserved in the job ledger and every event in the job
journal (``BackendDevice``), and the counts come back as the experiments expect them:
(B, 2^k) for k measured qubits, first measured qubit the most significant bit.

Durability is a group commit: one fsynced ``intent`` per batch before its first job, the
per-job records and reservations unsynced (``BackendDevice(batch_intent=True)``). Building
the device settles what an earlier process of the run left unfinished (``resume_jobs``):
jobs that may have run stay counted as ``orphaned``, jobs provably never sent are released,
and step numbers go on so no earlier job key is submitted again (docs/concurrency.md, "The
job journal and ledger after a crash").

Names: IR qubit n is the graph's ``q<n>``; its drive channel ``drive:q<n>`` plays on the
backend's drive frame of qubit n (``Capabilities.drive_frames``: ``q<n>_drive`` on
qibolab, ``q<n>_rf_frame`` on Braket's Rigetti devices); CR and flux frames named as
``hardware.replay.two_qubit.session_channels`` names them become ``drive:q<n>@q<m>`` and
``flux:q<n>``.

Device time. A backend has no clock of the graph's kind (a qibolab emulator takes a
second of CPU per job, a cloud queue hours), so the device clock here is the time the
jobs occupy the device: for each job shots × (repetition time + the program's duration),
the graph's own accounting (``agents.graph.experiments.common``). ``advance`` moves it on
(a backend with its own ``advance``, the simulated one, drifts along).

Single-shot IQ. ``run_iq`` gives the readout classification node the integrated IQ point
of every shot on a backend that has them (``submit_iq``: a qibolab platform of real
instruments, ``AcquisitionType.INTEGRATION`` with ``AveragingMode.SINGLESHOT``), through the
same envelope, ledger and journal as ``run``. What a backend cannot do is refused by name,
with the reason, and the rest of the graph goes on: qibolab's emulator answers
``INTEGRATION`` with the sampled state as I and Q = 0 (zero-width blobs at (0, 0) and
(1, 0), no readout noise; ``tests/hardware/test_graph_backends.py`` pins it), its ``dummy``
with uniform noise that does not depend on the state, and Braket's Rigetti devices return
bits only. On such a backend the readout the later nodes see is the platform's own
discrimination (docs/calibration_backends.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..envs.protocol import Barrier, Delay, Measure, Play, PulseSequence
from .backend import Backend, BackendError, Capabilities
from .device import BackendDevice, RetryPolicy, boot_id
from .ir import Frame, Program
from .journal import Journal
from .ledger import RELEASED, RESERVED, ShotLedger
from .replay.two_qubit import session_channels
from .safety import SafetyLimits

# The lab convention of agents.graph.experiment.REPETITION_TIME_S (hardware cannot import
# agents): several T1 between shots for the qubit to relax.
DEFAULT_REPETITION_TIME_S = 200e-6


def graph_channels(caps: Capabilities) -> dict[str, Frame]:
    """{envs channel: backend Frame}: ``drive:q<n>`` for every qubit with a drive frame,
    then the CR and flux frames ``session_channels`` recognises."""
    out: dict[str, Frame] = {}
    for q in caps.qubits:
        try:
            out[f"drive:q{q}"] = caps.drive_frame(q)
        except ValueError:
            continue  # a qubit without a drive frame of its own: nothing of the graph plays on it
    for channel, frame in session_channels(caps).items():
        out.setdefault(channel, frame)
    return out


def graph_limits(backend: Backend, **changes: Any) -> SafetyLimits:
    """The safety envelope of a graph run on ``backend``: only the frames of
    ``graph_channels``, |u| <= 1 on drives (the backend's own amplitude limit is checked
    by its ``validate``), pulses up to 1 µs, programs up to 500 µs (a T1 scan waits several
    T1), 2 µs of drive energy per frame, 10,000 shots per job; callers override any field."""
    frames = tuple(graph_channels(backend.capabilities()).values())
    args: dict[str, Any] = {"allowed_frames": frames, "max_amplitude": 1.0, "max_pulse_duration_s": 1e-6,
                            "max_program_duration_s": 500e-6, "max_drive_energy_s": 2e-6,
                            "max_shots_per_job": 10_000, "max_shots_per_day": 10_000_000}
    args.update(changes)
    return SafetyLimits(**args)


@dataclass(frozen=True)
class ResumedJobs:
    """What ``resume_jobs`` found in a run's job journal: the first step number no earlier
    process used, the reservations it restored, the jobs that may have run at the crash
    (counted), those provably never sent (released)."""

    next_step: int = 0
    restored: tuple[str, ...] = ()
    orphaned: tuple[str, ...] = ()
    released: tuple[str, ...] = ()


def resume_jobs(backend: Backend, ledger: ShotLedger, journal: Journal, session_id: str) -> ResumedJobs:
    """Settle the jobs earlier processes of this run left unfinished, before a (resumed) run
    submits anything (docs/concurrency.md, "The job journal and ledger after a crash").

    A job is in an earlier batch's fsynced ``intent``; its unsynced ``submitting`` record was
    written right before ``Backend.submit``. A job with neither ``completed`` nor ``failed``:

    - may have run if it has a ``submitting`` record, or if the intent was written in another
      boot of the machine (a power cut may have lost the unsynced records): it is counted
      (its reservation restored from the intent if the ledger lost it) and journaled once
      as ``orphaned``, with whether the backend still knows the key;
    - else it was never sent (the kill came before its ``submitting`` write): a reservation
      it has is released (``released``).

    A ``failed`` job (``find`` proved it never ran) whose release a power cut lost is released
    again. Step numbers go on after the largest one journaled, so no key of an earlier
    process is submitted again: the node that was running is re-run under new keys.
    """
    here = boot_id()
    intents: dict[str, dict[str, Any]] = {}
    sent: set[str] = set()
    settled: dict[str, str] = {}
    handled: set[str] = set()
    step = -1
    for r in journal.read():
        if r.get("session") != session_id:
            continue
        ev, key = r.get("event"), str(r.get("job_key", ""))
        if isinstance(r.get("step"), int):
            step = max(step, int(r["step"]))
        if ev == "intent":
            for job in r.get("jobs", []):
                intents[str(job["job_key"])] = {"step": r["step"], "index": job["index"], "shots": int(job["shots"]),
                                                "day": str(r["day"]), "same_boot": bool(here) and r.get("boot_id") == here}
        elif ev == "submitting":
            sent.add(key)
            intents.setdefault(key, {"step": r.get("step"), "index": r.get("index"), "shots": int(r["shots"]),
                                     "day": str(r.get("day") or ""), "same_boot": True})
        elif ev in ("completed", "failed"):
            settled[key] = str(ev)
        elif ev in ("orphaned", "released"):
            handled.add(key)
    restored: list[str] = []
    orphaned: list[str] = []
    released: list[str] = []
    for key, job in intents.items():
        e = ledger.entry(key)
        where = {"step": job["step"], "index": job["index"], "job_key": key, "shots": job["shots"]}
        if settled.get(key) == "completed":
            continue
        if settled.get(key) == "failed" or not (key in sent or not job["same_boot"]):
            if e is not None and e.state == RESERVED:
                ledger.release(key)
            if key not in handled and settled.get(key) != "failed":
                journal.append("released", session=session_id, **where,
                               reason="in an intent of this boot without a submitting record: never sent")
                released.append(key)
            continue
        if (e is None or e.state == RELEASED) and job["day"]:
            ledger.restore(key, job["shots"], job["day"])
            journal.append("restored", session=session_id, **where, day=job["day"],
                           reason="an intent without its ledger reservation (lost unsynced)")
            restored.append(key)
        if key not in handled:
            try:
                knows: bool | str = backend.find(key) is not None
            except BackendError as err:
                knows = f"find failed: {err}"
            journal.append("orphaned", session=session_id, **where, backend_knows=knows,
                           reason="intent without completed: may have run; counted, never submitted again")
            orphaned.append(key)
    return ResumedJobs(step + 1, tuple(restored), tuple(orphaned), tuple(released))


@dataclass(frozen=True)
class _Mode:
    frame_hz: float


class _Frames:
    """``model.mode(q).frame_hz``: the drive frame frequency of qubit ``q`` (the NCO setting
    the experiments play their drive offsets against, ``agents.graph.experiments.pulses``)."""

    def __init__(self, frames: Mapping[str, float]) -> None:
        self._frames = dict(frames)

    def mode(self, name: str) -> _Mode:
        if name not in self._frames:
            raise ValueError(f"mode {name!r}: allowed a qubit of the backend {sorted(self._frames)}")
        return _Mode(self._frames[name])


@dataclass(frozen=True)
class _Params:
    model: _Frames
    rep_time_s: float


class BackendGraphDevice:
    """A ``Backend`` behind the multi-qubit device interface of the calibration graph
    (module docstring).

    Args:
        backend: the target (submitted to only through ``BackendDevice``'s guard).
        ledger: the job ledger: every job's shots, reserved before submission.
        journal: the job journal (submitting, submitted, completed, refused, ...).
        session_id: names this run in the job keys.
        limits: the safety envelope (default ``graph_limits(backend)``).
        rep_time_s: the time one shot occupies the device besides its sequence, > 0.
        edges: the coupling map's edges as qubit-name pairs (``("q0", "q1")``); default none.
        retry, clock, sleep: as ``BackendDevice``'s.
    """

    def __init__(self, backend: Backend, *, ledger: ShotLedger, journal: Journal, session_id: str,
                 limits: SafetyLimits | None = None, rep_time_s: float = DEFAULT_REPETITION_TIME_S,
                 edges: Sequence[tuple[str, str]] = (), retry: RetryPolicy | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        if not (isinstance(rep_time_s, int | float) and math.isfinite(rep_time_s) and rep_time_s > 0):
            raise ValueError(f"BackendGraphDevice.rep_time_s={rep_time_s!r}: allowed a finite number > 0 s")
        caps = backend.capabilities()
        channels = graph_channels(caps)
        drives = {c.partition(":")[2]: f for c, f in channels.items() if c.startswith("drive:") and "@" not in c}
        if not drives:
            raise ValueError(f"backend {getattr(backend, 'name', type(backend).__name__)!r}: no qubit has a drive "
                             "frame (Capabilities.drive_frames): allowed a backend with drive frames")
        self.backend = backend
        self.limits = limits if limits is not None else graph_limits(backend)
        self.channels = channels
        self.qubits: tuple[str, ...] = tuple(drives)
        for a, b in edges:
            if a not in drives or b not in drives:
                raise ValueError(f"BackendGraphDevice.edges: ({a!r}, {b!r}): allowed qubits of {list(self.qubits)}")
        self.edges: tuple[tuple[str, str], ...] = tuple((str(a), str(b)) for a, b in edges)
        self.params = _Params(_Frames({q: f.frequency_hz for q, f in drives.items()}), float(rep_time_s))
        self.resumed_jobs = resume_jobs(backend, ledger, journal, session_id)
        self._device = BackendDevice(backend, limits=self.limits, ledger=ledger, journal=journal,
                                     session_id=session_id, frame=next(iter(drives.values())), retry=retry,
                                     clock=clock, sleep=sleep, channels=channels,
                                     start_step=self.resumed_jobs.next_step, batch_intent=True)
        self._clock_s = 0.0

    @property
    def dt_s(self) -> float:
        return self._device.dt_s

    @property
    def clock_s(self) -> float:
        """Device time the jobs have occupied (module docstring), plus ``advance``."""
        return self._clock_s

    @property
    def ledger(self) -> ShotLedger:
        return self._device.ledger

    def advance(self, duration_s: float) -> None:
        """Let ``duration_s`` of device time pass (a simulated backend drifts along)."""
        d = float(duration_s)
        if not (math.isfinite(d) and d >= 0):
            raise ValueError(f"duration_s={duration_s!r}: allowed finite >= 0 s")
        adv = getattr(self.backend, "advance", None)
        if callable(adv):
            adv(d)
        self._clock_s += d

    def compile_sequence(self, seq: PulseSequence, shots: int) -> Program:
        """The program ``run`` submits for ``seq`` (for offline checks of a node's programs)."""
        return self._device.compile_sequence(self._anchored(seq), shots)

    def run(self, sequences: Sequence[PulseSequence], shots: int) -> NDArray[np.int64]:
        """Counts (len(sequences), 2^k) of the k qubits each sequence measures; a batch the
        backend or the envelope refuses raises ``SafetyViolation`` before anything runs."""
        counts = self._device.run([self._anchored(s) for s in sequences], shots)
        rep = self.params.rep_time_s
        for s in sequences:
            self._clock_s += int(shots) * (rep + self._duration_s(s))
        return counts

    def run_iq(self, sequences: Sequence[PulseSequence], shots: int) -> NDArray[np.float64]:
        """Single-shot integrated IQ points (len(sequences), shots, k, 2) of the k qubits each
        sequence measures, through the same envelope, ledger and journal as ``run``
        (``BackendDevice.run_iq``). A backend that gives no IQ points to classify is refused
        by name, with its reason, before anything is journaled or counted."""
        reason = self.iq_refusal()
        if reason is not None:
            raise ValueError(f"BackendGraphDevice has no run_iq on backend {self._backend_name()!r}: {reason}")
        points = self._device.run_iq([self._anchored(s) for s in sequences], shots)
        rep = self.params.rep_time_s
        for s in sequences:
            self._clock_s += int(shots) * (rep + self._duration_s(s))
        return points

    def iq_refusal(self) -> str | None:
        """Why ``run_iq`` is refused on this backend (None: it runs): a backend without
        ``submit_iq`` (Braket's Rigetti devices return bits, the simulated backends counts),
        or one whose ``iq_refusal`` names a reason (qibolab's emulator and dummy)."""
        if not callable(getattr(self.backend, "submit_iq", None)):
            return "the backend returns discriminated counts only (no submit_iq): allowed a backend with single-shot IQ"
        why = getattr(self.backend, "iq_refusal", None)
        return why() if callable(why) else None

    def _backend_name(self) -> str:
        return str(getattr(self.backend, "name", type(self.backend).__name__))

    def _anchored(self, seq: PulseSequence) -> PulseSequence:
        # A bare measurement (the idle check) names no channel, and a program needs a frame
        # for its sample grid: a zero-length Barrier on the measured qubits' drives gives it
        # one without playing anything.
        if any(isinstance(op, Play | Delay | Barrier) for op in seq.ops):
            return seq
        measured = next((op.qubits for op in seq.ops if isinstance(op, Measure)), ())
        drives = tuple(f"drive:{q}" for q in measured if f"drive:{q}" in self.channels)
        if not drives:
            return seq
        return PulseSequence((Barrier(drives), *seq.ops), name=seq.name)

    def _duration_s(self, seq: PulseSequence) -> float:
        # The longest channel's plays and delays (the readout window is part of the
        # repetition time); a Barrier lines its channels up.
        dt = self.dt_s
        at: dict[str | None, float] = {}
        for op in seq.ops:
            if isinstance(op, Play):
                at[op.channel] = at.get(op.channel, 0.0) + op.waveform.size * dt
            elif isinstance(op, Delay):
                for c in (at if op.channel is None else (op.channel,)):
                    at[c] = at.get(c, 0.0) + op.duration_s
            elif isinstance(op, Barrier):
                names = op.channels or tuple(at)
                top = max((at.get(c, 0.0) for c in names), default=0.0)
                for c in names:
                    at[c] = top
        return max(at.values(), default=0.0)


__all__ = ["DEFAULT_REPETITION_TIME_S", "BackendGraphDevice", "ResumedJobs", "graph_channels", "graph_limits",
           "resume_jobs"]
