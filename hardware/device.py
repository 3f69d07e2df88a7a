"""``BackendDevice``: any ``Backend`` as an envs ``Device``, safely and exactly once.

An environment calls ``run(sequences, shots)``; this class compiles each sequence to a
``Program``, checks the whole batch (backend validation and the safety envelope, per-day
shots and budget included) before anything runs, then submits one job per sequence through
the ``GuardedBackend`` (the only path to ``Backend.submit``) and collects the counts.

Exactly-once: every job has an idempotency key, sha256(session, step, index, program hash),
so the same request in a resumed session gets the same key. A retry after any failure
first asks the backend whether the key already reached it (``find``) and only submits if
it did not; result polling retries timeouts, discards deliveries that belong to another job
and partial deliveries. Backoff is exponential through an injectable ``sleep``. Every
event — submitting, submitted, recovered, retry, partial, discarded, completed, refused, failed, lost —
is appended to the journal; shots are counted in the ledger before submission.

Write-ahead order of one submit attempt: the ledger reservation, then the ``submitting``
journal record, then ``Backend.submit``, then ``submitted``. So after a crash a reservation
without a ``submitting`` record provably never reached the backend, and a ``submitting``
record means the job may have run (for in-process backends, possibly with no other trace).
Records carry ``process`` when the caller tags its process (``process=``), so a resumed
session can tell which earlier process may have run a job.

What is fsynced: the write-ahead records (``submitting``, and ``failed`` and ``lost``, which
decide what a resume counts) before the call goes on; every other record is written unsynced
and becomes durable with the next fsynced record of the journal (``Journal.append(..., durable=False)``).
A lost unsynced record leaves a job looking in flight (``submitting`` without ``completed``),
which a resume treats as possibly run: counted, asked for by ``find``, never silently
submitted again. With ``batch_intent`` (the calibration graph on a backend) the write-ahead
record is one fsynced ``intent`` per ``run`` call naming every job of the batch, and the
per-job ``submitting`` records are unsynced (docs/concurrency.md, "The job journal and ledger
after a crash").
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pulsecal.envs.protocol import PulseSequence

from .backend import Backend, BackendError, JobHandle, TransientBackendError, Violation
from .guard import GuardedBackend
from .instructions import Acquire
from .ir import Frame, Program, from_sequence
from .journal import Journal
from .ledger import RELEASED, DeviceDayLedger, ShotLedger
from .safety import SafetyLimits, SafetyViolation


class JobLost(BackendError):
    """A job's outcome could not be established; its shots stay counted in the ledger."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try.

    Attributes:
        max_submit_attempts: submit (or find-then-submit) attempts per job.
        max_result_polls: ``result`` calls per job before it is declared lost.
        result_timeout_s: timeout passed to every ``result`` call.
        base_delay_s, multiplier, max_delay_s: backoff delay_s(k) = min(base·multiplier^k, max).
    """

    max_submit_attempts: int = 6
    max_result_polls: int = 30
    result_timeout_s: float = 60.0
    base_delay_s: float = 0.5
    multiplier: float = 2.0
    max_delay_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_submit_attempts", "max_result_polls"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"RetryPolicy.{name}={v!r}: allowed an integer >= 1")
        for name in ("result_timeout_s", "base_delay_s", "max_delay_s"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ValueError(f"RetryPolicy.{name}={v!r}: allowed a finite number >= 0")
        if not (math.isfinite(self.multiplier) and self.multiplier >= 1):
            raise ValueError(f"RetryPolicy.multiplier={self.multiplier!r}: allowed >= 1")

    def delay_s(self, attempt: int) -> float:
        return float(min(self.base_delay_s * self.multiplier**attempt, self.max_delay_s))


class BackendDevice:
    """A ``Backend`` behind the envs ``Device`` protocol, the safety envelope, a shot ledger
    and a journal.

    Args:
        backend: the target (never called for ``submit`` except through the guard).
        limits: the device's safety limits.
        ledger: shot accounting, shared across sessions on the same device.
        journal: the append-only job journal.
        session_id: names this session in job keys (reuse it to resume a session).
        frame: the drive frame sequences are played on (default: ``qubit``'s drive frame,
            ``Capabilities.drive_frame``).
        qubit: the driven and measured qubit (an index of ``Capabilities.qubits``).
        acquire_duration_s: duration of the final measurement, in seconds.
        retry: retry and backoff policy.
        clock: wall-clock seconds (UTC day of the per-day count; device clock fallback).
        sleep: how to wait between retries (inject a fake in tests).
        start_step: first step number (a resumed session continues its numbering).
        process: a tag journaled with every record (``process``) naming the process that
            wrote it; None journals none.
        before_submit: called as ``before_submit(job_key, shots, step, index)`` before every
            submit attempt (not before a ``find`` that recovers the job): a resumed session
            charges, write-ahead, the executions of this key that died with earlier
            processes (``replay.run_session``).
        device_ledger, scope: the device's day ledger shared by all its sessions and this
            session's name in it (``GuardedBackend``): the per-day limit then bounds the
            shots of every session of the device together.
        channels: a multi-qubit device: the map {envs channel: Frame} channel sequences
            compile with (``ir.from_sequence``); ``run`` then returns (B, 2^k) counts of
            the k measured qubits, columns in bitstring order (the first measured qubit the
            most significant bit), as ``SimulatedMultiQubitDevice.run``. None: the
            single-qubit device on ``frame``.
        qubit_index: with ``channels``, envs mode names -> backend qubit indices (default
            ``q<n>`` -> n).
        batch_intent: group commit. Before the first job of a ``run`` call, one fsynced
            ``intent`` record names every job of the batch (key, shots, UTC day, this boot's
            id); it is the durable copy of their ledger reservations and of their
            ``submitting`` records, which are then written unsynced: one fsync per batch
            instead of three per job. Only for a caller that settles the jobs of earlier
            intents before its first job (``graph_device.resume_jobs``); no device ledger.
    """

    def __init__(self, backend: Backend, *, limits: SafetyLimits, ledger: ShotLedger,
                 journal: Journal, session_id: str, frame: Frame | None = None, qubit: int = 0,
                 acquire_duration_s: float = 0.0, retry: RetryPolicy | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, start_step: int = 0,
                 process: int | str | None = None,
                 before_submit: Callable[[str, int, int, int], None] | None = None,
                 device_ledger: DeviceDayLedger | None = None, scope: str = "",
                 channels: Mapping[str, Frame] | None = None,
                 qubit_index: Mapping[str, int] | None = None, batch_intent: bool = False) -> None:
        if not isinstance(session_id, str) or not session_id:
            raise ValueError(f"BackendDevice.session_id={session_id!r}: allowed a non-empty string")
        if batch_intent and (device_ledger is not None or before_submit is not None):
            # The device ledger's reservation must be durable on its own (its sync on resume
            # releases what the session ledger does not count), and the replay's orphan
            # accounting reads per-job submitting records as fsynced.
            raise ValueError("BackendDevice.batch_intent=True: allowed only without a device_ledger and "
                             "before_submit")
        self._batch_intent = bool(batch_intent)
        self.guard = GuardedBackend(backend, limits, ledger, clock=clock, device_ledger=device_ledger,
                                    scope=scope)
        self._backend = backend
        caps = self.guard.capabilities()
        self.frame = frame if frame is not None else caps.drive_frame(qubit)
        self._dt_s = float(caps.sample_time_s[self.frame.port])
        self.qubit = qubit
        self.acquire_duration_s = acquire_duration_s
        self.session_id = session_id
        self.retry = retry if retry is not None else RetryPolicy()
        self.journal = journal
        self.ledger = ledger
        self._clock = clock
        self._sleep = sleep
        self._t0 = clock()
        self._step = int(start_step)
        self.process = process
        self._before_submit = before_submit
        self.channels = None if channels is None else dict(channels)
        self.qubit_index = None if qubit_index is None else dict(qubit_index)
        if self.channels is not None:
            dts = {float(caps.sample_time_s.get(f.port, math.nan)) for f in self.channels.values()}
            if len(dts) != 1 or not all(math.isfinite(d) for d in dts):
                raise ValueError(f"BackendDevice.channels: ports of {sorted(self.channels)} have sample times "
                                 f"{sorted(dts)}: allowed one sample time the backend advertises")
            self._dt_s = dts.pop()

    # -- Device protocol ----------------------------------------------------------------

    @property
    def dt_s(self) -> float:
        return self._dt_s

    @property
    def clock_s(self) -> float:
        clock = getattr(self._backend, "clock_s", None)
        if isinstance(clock, int | float):
            return float(clock)
        return float(self._clock() - self._t0)

    def advance(self, duration_s: float) -> None:
        """Let device time pass: a simulated backend advances its clock, hardware waits."""
        d = float(duration_s)
        if not (math.isfinite(d) and d >= 0):
            raise ValueError(f"duration_s={duration_s!r}: allowed finite >= 0 s")
        adv = getattr(self._backend, "advance", None)
        if callable(adv):
            adv(d)
        else:
            self._sleep(d)

    def compile_sequence(self, seq: PulseSequence, shots: int) -> Program:
        """The program ``run`` submits for ``seq``."""
        if self.channels is not None:
            return from_sequence(seq, self.channels, self._dt_s, shots=shots,
                                 acquire_duration_s=self.acquire_duration_s, qubit_index=self.qubit_index)
        return from_sequence(seq, self.frame, self._dt_s, shots=shots, qubit=self.qubit,
                             acquire_duration_s=self.acquire_duration_s)

    def run(self, sequences: Sequence[PulseSequence], shots: int) -> NDArray[np.int64]:
        """Run every sequence ``shots`` times; (len(sequences), 2) counts (n0, n1), or with
        ``channels`` (len(sequences), 2^k) counts of the k measured qubits.

        Raises SafetyViolation (nothing submitted) if any sequence of the batch is refused.
        """
        return self._run(sequences, shots, iq=False)  # type: ignore[return-value]

    def run_iq(self, sequences: Sequence[PulseSequence], shots: int) -> NDArray[np.float64]:
        """Run every sequence ``shots`` times on a backend with ``submit_iq``; the single-shot
        integrated IQ points, (len(sequences), shots, k, 2) for the k measured qubits in
        Measure order. The same envelope, ledger, journal and exactly-once path as ``run``;
        the ``completed`` record carries the points (``iq``) instead of counts."""
        return self._run(sequences, shots, iq=True)  # type: ignore[return-value]

    def _run(self, sequences: Sequence[PulseSequence], shots: int, *, iq: bool) -> NDArray[Any]:
        for i, s in enumerate(sequences):
            if self.channels is None and isinstance(s, PulseSequence) and not s.is_single_qubit:
                # Refused before the step is counted: nothing was journaled or charged.
                raise ValueError(f"sequences[{i}] {s.name!r} addresses channels, frames, a Barrier or a "
                                 f"Measure: allowed single-qubit sequences only on this BackendDevice "
                                 f"(qubit {self.qubit}, frame {self.frame.name!r})")
        step = self._step
        self._step += 1
        programs = [self.compile_sequence(s, shots) for s in sequences]
        widths = {measured_bits(p) for p in programs}
        if len(widths) > 1:
            # Refused before the step is counted: nothing was journaled or charged.
            raise ValueError(f"sequences measure {sorted(widths)} qubits: allowed the same number in every "
                             "sequence of a call")
        keys = [self.job_key(p, step, i) for i, p in enumerate(programs)]
        self._check_batch(programs, keys, shots, step)
        if self._batch_intent:
            self._intent(programs, keys, shots, step, iq)
        handles = [self._submit(p, k, shots, step, i, iq) for i, (p, k) in enumerate(zip(programs, keys, strict=True))]
        width = widths.pop() if widths else 1
        if iq:
            return np.stack([self._collect_iq(p, h, shots, step, i) for i, (p, h) in
                             enumerate(zip(programs, handles, strict=True))]) if programs else np.zeros((0, shots, width, 2))
        out = np.zeros((len(programs), 2**width), dtype=np.int64)
        for i, (p, h) in enumerate(zip(programs, handles, strict=True)):
            out[i] = self._collect(p, h, shots, step, i)
        return out

    # -- job keys and checks --------------------------------------------------------------

    def job_key(self, program: Program, step: int, index: int) -> str:
        text = f"{self.session_id}\x00{step}\x00{index}\x00{program.content_hash()}"
        return hashlib.sha256(text.encode()).hexdigest()

    def _counted(self, key: str) -> bool:
        e = self.ledger.entry(key)
        return e is not None and e.state != RELEASED

    def _check_batch(self, programs: list[Program], keys: list[str], shots: int, step: int) -> None:
        refusals: list[Violation] = []
        for i, (p, k) in enumerate(zip(programs, keys, strict=True)):
            v = self.guard.check(p, shots, k)
            if v:
                self._log("refused", p, k, step, i, violations=[x.to_dict() for x in v])
                refusals += [Violation(x.limit, x.value, x.allowed, f"sequence {i}: {x.where}".rstrip(": "))
                             for x in v]
        if not refusals:
            # Each job alone may fit under the day's limit while the batch does not.
            new = shots * sum(not self._counted(k) for k in keys)
            today = self.guard.shots_today()
            lim = self.guard.limits.max_shots_per_day
            if today + new > lim:
                refusals.append(Violation("max_shots_per_day", today + new, f"<= {lim} shots per UTC day",
                                          f"batch of {len(keys)}"))
            budget = self.ledger.budget_shots
            if budget is not None and self.ledger.used_shots + new > budget:
                refusals.append(Violation("shot_budget", self.ledger.used_shots + new, f"<= {budget} shots",
                                          f"batch of {len(keys)}"))
            if refusals:
                for i, (p, k) in enumerate(zip(programs, keys, strict=True)):
                    self._log("refused", p, k, step, i, violations=[x.to_dict() for x in refusals])
        if refusals:
            raise SafetyViolation(refusals)

    def _intent(self, programs: list[Program], keys: list[str], shots: int, step: int, iq: bool) -> None:
        """The batch's one fsynced write-ahead record (``batch_intent``)."""
        jobs = [{"index": i, "job_key": k, "shots": int(shots), "program_hash": p.content_hash()}
                for i, (p, k) in enumerate(zip(programs, keys, strict=True))]
        fields: dict[str, Any] = {"process": self.process} if self.process is not None else {}
        if iq:
            fields["acquisition"] = "iq"
        self.journal.append("intent", session=self.session_id, step=step, day=self.guard.today(),
                            boot_id=boot_id(), jobs=jobs, **fields)

    # -- exactly-once submission -----------------------------------------------------------

    def _submit(self, program: Program, key: str, shots: int, step: int, index: int, iq: bool = False) -> JobHandle:
        ask_first = self._counted(key)  # a resumed session may already have sent this key
        for attempt in range(self.retry.max_submit_attempts):
            try:
                if ask_first:
                    h = self.guard.find(key)
                    if h is not None:
                        self._log("recovered", program, key, step, index, job_id=h.job_id)
                        return h
                if self._before_submit is not None:
                    self._before_submit(key, shots, step, index)
                mode = {"acquisition": "iq"} if iq else {}
                h = self.guard.submit(program, shots, key, before_send=functools.partial(
                    self._log, "submitting", program, key, step, index, shots=shots, attempt=attempt, **mode),
                    durable_reservation=not self._batch_intent, iq=iq)
                self._log("submitted", program, key, step, index, job_id=h.job_id, shots=shots)
                return h
            except SafetyViolation as e:
                self._log("refused", program, key, step, index,
                          violations=[x.to_dict() for x in e.violations])
                raise
            except TransientBackendError as e:
                # The job may have reached the backend: never submit again before asking.
                ask_first = True
                self._log("retry", program, key, step, index, phase="submit", attempt=attempt,
                          error=f"{type(e).__name__}: {e}")
                self._sleep(self.retry.delay_s(attempt))
            except BackendError as e:
                self._give_up(program, key, step, index, f"{type(e).__name__}: {e}")
                raise
        self._give_up(program, key, step, index, "out of submit attempts")
        raise JobLost(f"job {key[:12]} (step {step}, sequence {index}): out of submit attempts")

    def _give_up(self, program: Program, key: str, step: int, index: int, why: str) -> None:
        """Release the shots only if the backend provably never got the job."""
        try:
            h = self.guard.find(key)
        except BackendError as e:
            self._log("lost", program, key, step, index, error=f"{why}; find failed: {e}")
            return
        if h is None:
            if self._counted(key):
                self.guard.release(key)
            self._log("failed", program, key, step, index, error=why)
        else:
            self._log("lost", program, key, step, index, job_id=h.job_id, error=why)

    def _deliveries(self, program: Program, h: JobHandle, step: int, index: int, what: str) -> Iterator[tuple[int, Any]]:
        """This job's deliveries, one per result poll: a transient error is retried after the
        policy's delay and a delivery for another job id is journaled and skipped. The caller
        returns on a complete delivery and continues past a partial one (after ``_partial``);
        out of polls, the job is lost and its shots stay counted."""
        for poll in range(self.retry.max_result_polls):
            try:
                r = self.guard.result(h, self.retry.result_timeout_s)
            except TransientBackendError as e:
                self._log("retry", program, h.job_key, step, index, phase="result", attempt=poll,
                          job_id=h.job_id, error=f"{type(e).__name__}: {e}")
                self._sleep(self.retry.delay_s(min(poll, 8)))
                continue
            got_id = r.metadata.get("job_id", h.job_id)
            if got_id != h.job_id:
                self._log("discarded", program, h.job_key, step, index, job_id=h.job_id,
                          delivered_job_id=got_id)
                continue
            yield poll, r
        self._log("lost", program, h.job_key, step, index, job_id=h.job_id, error="out of result polls")
        raise JobLost(f"job {h.job_id} (key {h.job_key[:12]}): no complete {what} after "
                      f"{self.retry.max_result_polls} polls; its shots stay counted")

    def _partial(self, program: Program, h: JobHandle, step: int, index: int, poll: int, **fields: Any) -> None:
        self._log("partial", program, h.job_key, step, index, job_id=h.job_id, **fields)
        self._sleep(self.retry.delay_s(min(poll, 8)))

    def _collect(self, program: Program, h: JobHandle, shots: int, step: int, index: int) -> tuple[int, ...]:
        width = measured_bits(program) if self.channels is not None else 1
        outcomes = [format(k, f"0{width}b") for k in range(2**width)]
        for poll, r in self._deliveries(program, h, step, index, "result"):
            counts = {str(k): int(v) for k, v in r.counts.items()}
            if set(counts) - set(outcomes):
                raise BackendError(f"job {h.job_id}: outcomes {sorted(counts)}, allowed {outcomes}")
            row = tuple(counts.get(o, 0) for o in outcomes)
            if sum(row) != shots or r.metadata.get("partial", False):
                self._partial(program, h, step, index, poll, counts=counts, shots=shots)
                continue
            self.ledger.confirm(h.job_key, h.job_id)
            self._log("completed", program, h.job_key, step, index, job_id=h.job_id, counts=counts,
                      status="done")
            return row
        raise AssertionError("unreachable: _deliveries raises JobLost when out of polls")

    def _collect_iq(self, program: Program, h: JobHandle, shots: int, step: int, index: int) -> NDArray[np.float64]:
        """The IQ points of one job, collected as ``_collect`` collects counts."""
        width = measured_bits(program) if self.channels is not None else 1
        for poll, r in self._deliveries(program, h, step, index, "IQ result"):
            points = np.asarray(r.metadata.get("iq", np.zeros((0, width, 2))), dtype=np.float64)
            if points.shape != (shots, width, 2) or r.metadata.get("partial", False):
                self._partial(program, h, step, index, poll, iq_shape=list(points.shape), shots=shots)
                continue
            if not np.isfinite(points).all():
                raise BackendError(f"job {h.job_id}: IQ points not all finite: allowed finite I and Q")
            self.ledger.confirm(h.job_key, h.job_id)
            self._log("completed", program, h.job_key, step, index, job_id=h.job_id, iq=points, status="done")
            return points
        raise AssertionError("unreachable: _deliveries raises JobLost when out of polls")

    def _log(self, event: str, program: Program, key: str, step: int, index: int, **fields: Any) -> None:
        if self.process is not None:
            fields["process"] = self.process
        durable = event in DURABLE_EVENTS and not (self._batch_intent and event == "submitting")
        self.journal.append(event, durable=durable, session=self.session_id, step=step, index=index, job_key=key,
                            program_hash=program.content_hash(), **fields)


# The records a resume decides on, fsynced before the job goes on (module docstring): the
# per-job write-ahead record (unsynced under batch_intent, whose intent record is fsynced
# instead), and the two that settle a job's shots without a result.
DURABLE_EVENTS = frozenset({"submitting", "failed", "lost"})


@functools.cache
def boot_id() -> str:
    """This boot of the machine (Linux's random boot id; "" where there is none). A journal
    record written in the same boot as its reader was not lost to a power cut, fsynced or not."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def measured_bits(program: Program) -> int:
    """How many qubits ``program`` reads out (its Acquires: one simultaneous readout)."""
    return sum(isinstance(ins, Acquire) for ins in program.instructions)
