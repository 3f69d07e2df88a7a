"""The only way to a backend's ``submit``: check, compile, re-check the artifact, count, seal.

``GuardedBackend.submit(program, shots, job_key)`` is the single call site of
``Backend.submit`` in the library. For every call it

1. validates the program against the backend (``Backend.validate``) and the safety envelope,
   including the per-day shot limit against the ledger;
2. compiles it, then checks the *artifact* it is about to hand over: its program must hold
   exactly what the checked program held (re-read, never the hash cached on the object),
   the trace it claims to play must pass the envelope's sample limits, and it must equal a
   fresh render of the program to within the backend's quantisation (``trace_tolerance``);
3. reserves the shots under ``job_key`` (idempotent) before submitting — first in the
   device's day ledger when there is one (``DeviceDayLedger``: the per-day limit summed over
   every session of the device, checked and charged under one file lock), then in the
   session's ledger — then calls the caller's ``before_send`` hook (the write-ahead
   ``submitting`` journal record);
4. seals the artifact with a ``Clearance`` for exactly this program hash, shot count and
   job key, which adapters verify with ``require_clearance`` before running anything.

A test in tests/hardware checks that no other module of the package calls ``.submit(``
on a backend.

Checked once per content. Each check reads the program's ``content_key`` (an exact image
of its fields, ``hardware.program``) afresh, at the point where it reads the program: when
``check`` starts, when the artifact comes back from ``compile``, and in the adapter's
``require_clearance``. Code outside the guard runs between these points (the backend's
``validate`` and ``compile``, the caller's ``before_send``), and a Program, immutable
through its constructors, can still be changed in place by forgery (``object.__setattr__``,
an array's writeable flag), so none of these reads is skipped. What is no longer repeated
is the work whose result is a function of the content alone: the JSON hash (memoised by
key), the envelope and ``validate`` verdict of a program that passed (a set of keys, so
only the shot limits are checked again), and, for a backend that declares
``reusable_artifacts``, the compiled and checked artifact (its payload and trace, sealed
for the program of the new job). A program changed after its check
reads as another key, and is checked, compiled and re-checked in full. docs/concurrency.md
("The guard's caches") states the invariant.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .backend import Artifact, Backend, Capabilities, JobHandle, Result, Violation
from .ir import Program, recompute_hash
from .ledger import DeviceDayLedger, ShotLedger, utc_day
from .program import ContentKey, content_key, hash_for_key
from .safety import SafetyEnvelope, SafetyLimits, SafetyViolation

_SEAL = object()  # only this module can mint a clearance that require_clearance accepts

# The checked artifacts one guard keeps hold at most this many trace samples over all their
# frames (2**22 complex samples: 64 MiB).
_MAX_CACHED_SAMPLES = 2**22


def _trace_samples(artifact: Artifact) -> int:
    return int(artifact.trace.n_samples) * max(1, len(artifact.trace.samples))


@dataclass(frozen=True)
class Clearance:
    """Proof that the guard checked this exact program hash for these shots and job key.

    ``content_key`` is the checked program's ``content_key`` (None when it had none), so
    ``require_clearance`` compares what the artifact's program holds now with what was
    checked without serialising it again."""

    program_hash: str
    shots: int
    job_key: str
    limits_hash: str
    seal: object
    content_key: ContentKey | None = None


def require_clearance(artifact: Artifact, shots: int, job_key: str) -> None:
    """Adapters call this first in ``submit``; raises SafetyViolation unless the guard
    cleared exactly this artifact for ``shots`` under ``job_key``."""
    c = getattr(artifact, "clearance", None)
    problems: list[Violation] = []
    if not isinstance(c, Clearance) or c.seal is not _SEAL:
        problems.append(Violation("clearance", c, "an artifact cleared by GuardedBackend"))
    else:
        try:
            # Re-read here, after the caller's before_send and anything else that ran since
            # the guard sealed it: the artifact's program must still be the one cleared.
            key = content_key(artifact.program)
            h = c.program_hash if key is not None and key == c.content_key else recompute_hash(artifact.program)
        except Exception as e:  # an artifact whose program cannot even be serialised
            h = f"unhashable: {e}"
        if h != c.program_hash or artifact.program_hash != c.program_hash:
            problems.append(Violation("clearance.program_hash", h, f"{c.program_hash!r}"))
        if shots != c.shots:
            problems.append(Violation("clearance.shots", shots, f"{c.shots}"))
        if job_key != c.job_key:
            problems.append(Violation("clearance.job_key", job_key, f"{c.job_key!r}"))
    if problems:
        raise SafetyViolation(problems)


class GuardedBackend:
    """A backend behind the safety envelope and the shot ledger.

    Args:
        backend: the target.
        limits: the device's safety limits.
        ledger: shot accounting (per-day limit and budget are enforced through it).
        clock: wall-clock seconds, used for the UTC day of the per-day count.
        trace_tolerance: largest |difference| allowed between the artifact's trace and a
            fresh render of its program (vendor amplitude quantisation; 2**-15 covers int16).
        device_ledger: the device's day ledger shared by all its sessions (None: the
            per-day limit counts this session's ledger only).
        scope: names this session in ``device_ledger`` (its folder); required with it.
        cache_size: how many programs' verdicts (and, on a backend with
            ``reusable_artifacts``, checked artifacts) are kept by content, >= 0; 0 checks
            and compiles every submission from scratch (module docstring).
    """

    def __init__(self, backend: Backend, limits: SafetyLimits, ledger: ShotLedger, *,
                 clock: Callable[[], float] = time.time, trace_tolerance: float = 2.0**-15,
                 device_ledger: DeviceDayLedger | None = None, scope: str = "", cache_size: int = 1024) -> None:
        if device_ledger is not None and (not isinstance(scope, str) or not scope):
            raise ValueError(f"GuardedBackend.scope={scope!r}: allowed a non-empty string with a device_ledger")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"GuardedBackend.cache_size={cache_size!r}: allowed an integer >= 0")
        self.backend = backend
        self.limits = limits
        self.ledger = ledger
        self.device_ledger = device_ledger
        self.scope = scope
        self._clock = clock
        self._caps: Capabilities = backend.capabilities()
        self.envelope = SafetyEnvelope(limits, self._caps)
        self._limits_hash = limits.content_hash()
        self._tol = float(trace_tolerance)
        # Keyed by content_key: the verdicts and artifacts depend on the content alone, given
        # this guard's fixed limits and backend (module docstring).
        self._cache_size = cache_size
        self._passed: OrderedDict[ContentKey, None] = OrderedDict()
        self._artifacts: OrderedDict[ContentKey, Artifact] = OrderedDict()
        self._artifact_samples = 0  # trace samples the cached artifacts hold, <= _MAX_CACHED_SAMPLES
        self._reuse_artifacts = bool(getattr(backend, "reusable_artifacts", False))

    def capabilities(self) -> Capabilities:
        return self._caps

    def today(self) -> str:
        return utc_day(self._clock())

    def shots_today(self, exclude: str | None = None) -> int:
        """Shots counted today against the per-day limit (the device's, over all its
        sessions, when there is a device ledger), without job ``exclude``."""
        today = self.today()
        if self.device_ledger is not None:
            used = self.device_ledger.shots_on(today)
            if exclude is not None:
                used -= self.device_ledger.counted(self.scope, exclude, today)
            return used
        used = self.ledger.shots_on(today)
        e = self.ledger.entry(exclude) if exclude is not None else None
        if e is not None and e.state != "released" and e.day == today:
            used -= e.shots
        return used

    def check(self, program: Program, shots: int | None = None, job_key: str | None = None) -> list[Violation]:
        """Everything that would refuse ``program``; changes nothing but the guard's record
        of contents that passed. A job key already counted does not count twice against
        the per-day limit."""
        return self._check(program, shots, job_key, content_key(program))

    def _check(self, program: Program, shots: int | None, job_key: str | None,
               key: ContentKey | None) -> list[Violation]:
        """``check`` given ``key = content_key(program)`` read just before."""
        n = program.shots if shots is None and isinstance(program, Program) else shots
        used = self.shots_today(job_key)
        if key is not None and key in self._passed:
            # This exact content passed validate and the envelope (key is not None only for
            # a Program); only the shot limits depend on more than the content.
            self._passed.move_to_end(key)
            v = [] if n == program.shots else [Violation("shots", n, f"the program's shots={program.shots}")]
            return v + self.envelope.check_shots(n, used)
        try:
            v = list(self.backend.validate(program))
        except Exception as ex:  # a validator that crashes refuses
            v = [Violation("backend.validate", f"{type(ex).__name__}: {ex}", "no exception")]
        if isinstance(program, Program) and n != program.shots:
            v.append(Violation("shots", n, f"the program's shots={program.shots}"))
        v += self.envelope.check(program, shots=n, shots_today=used)
        # Re-read: the verdict is recorded for the content the checks saw, not for content
        # a validator changed under them.
        if not v and key is not None and content_key(program) == key:
            self._remember(self._passed, key, None)
        return v

    def _remember(self, cache: OrderedDict[ContentKey, Any], key: ContentKey, value: Any) -> None:
        if self._cache_size == 0:
            return
        cache[key] = value
        if len(cache) > self._cache_size:
            cache.popitem(last=False)

    def submit(self, program: Program, shots: int, job_key: str, *,
               before_send: Callable[[], None] | None = None, durable_reservation: bool = True,
               iq: bool = False) -> JobHandle:
        """Check, compile, re-check the artifact, reserve shots, seal and submit.

        ``before_send`` is called after the shots are reserved and right before
        ``Backend.submit`` (``BackendDevice`` journals ``submitting`` there, so a reservation
        without that record provably never reached the backend). ``durable_reservation=False``
        leaves the session ledger's reservation unsynced: only for a caller whose
        ``before_send`` fsyncs a record that carries it (``ShotLedger.reserve``). ``iq=True``
        hands the cleared artifact to the backend's ``submit_iq`` (single-shot integrated
        IQ points instead of counts; the same checks, reservation and seal), refused with a
        SafetyViolation before anything is counted on a backend without one.

        Raises SafetyViolation (nothing submitted, nothing counted) on any violation, and
        whatever the backend's ``submit`` raises (shots stay reserved: the job may have run).
        """
        if not isinstance(job_key, str) or not job_key:
            raise SafetyViolation([Violation("job_key", job_key, "a non-empty string")])
        send = getattr(self.backend, "submit_iq", None) if iq else self.backend.submit
        if not callable(send):
            raise SafetyViolation([Violation("iq", type(self.backend).__name__, "a backend with submit_iq")])
        # The key is read once, before the check; nothing but the guard's own code runs
        # until the artifact's program is compared with it after compile.
        key = content_key(program)
        v = self._check(program, shots, job_key, key)
        if v:
            raise SafetyViolation(v)
        try:
            expected = hash_for_key(program, key)
        except Exception as e:  # the envelope refuses these already; fail closed regardless
            raise SafetyViolation([Violation("program_hash", f"{type(e).__name__}: {e}",
                                             "a serialisable program")]) from None
        artifact = self._cached_artifact(program, key)
        if artifact is None:
            artifact = self.backend.compile(program)
            v = self._check_artifact(artifact, program, expected, key)
            if v:
                raise SafetyViolation(v)
            if self._reuse_artifacts and key is not None:
                self._keep_artifact(key, artifact)
        day = self.today()
        if self.device_ledger is not None:
            self.device_ledger.reserve(self.scope, job_key, int(shots), day,
                                       max_shots_per_day=self.limits.max_shots_per_day)
        try:
            self.ledger.reserve(job_key, int(shots), day, max_shots_per_day=self.limits.max_shots_per_day,
                                durable=durable_reservation)
        except SafetyViolation:
            # The session refused it (its budget): the device charge is for nothing.
            entry = self.ledger.entry(job_key)
            if self.device_ledger is not None and (entry is None or entry.state == "released"):
                self.device_ledger.release(self.scope, job_key)
            raise
        sealed = replace(artifact, clearance=Clearance(expected, int(shots), job_key,
                                                        self._limits_hash, _SEAL, key))
        if before_send is not None:
            before_send()
        return send(sealed, int(shots), job_key)  # type: ignore[no-any-return]

    def _keep_artifact(self, key: ContentKey, artifact: Artifact) -> None:
        """Keep a checked artifact, the oldest dropped first beyond ``cache_size`` artifacts
        or ``_MAX_CACHED_SAMPLES`` trace samples (a T1 scan's trace is its whole duration)."""
        n = _trace_samples(artifact)
        if self._cache_size == 0 or n > _MAX_CACHED_SAMPLES or key in self._artifacts:
            return
        self._artifacts[key] = artifact
        self._artifact_samples += n
        while len(self._artifacts) > self._cache_size or self._artifact_samples > _MAX_CACHED_SAMPLES:
            _, old = self._artifacts.popitem(last=False)
            self._artifact_samples -= _trace_samples(old)

    def _cached_artifact(self, program: Program, key: ContentKey | None) -> Artifact | None:
        """The checked artifact of this content, if one is kept, holding ``program`` itself:
        ``program`` was read as ``key`` just now, while the program object the artifact was
        first built from belongs to an earlier caller, who may have changed it since."""
        if key is None or not self._reuse_artifacts:
            return None
        artifact = self._artifacts.get(key)
        if artifact is None:
            return None
        self._artifacts.move_to_end(key)
        return replace(artifact, program=program)

    def _check_artifact(self, artifact: Artifact, program: Program, expected: str,
                        key: ContentKey | None) -> list[Violation]:
        try:
            if not isinstance(artifact, Artifact):
                return [Violation("artifact_type", type(artifact).__name__, "an Artifact")]
            # Re-read after compile (the backend's code ran since the check): the artifact's
            # program must hold what was checked. Without a key, its JSON hash decides.
            same = key is not None and content_key(artifact.program) == key
            got = expected if same else recompute_hash(artifact.program)
            if got != expected or artifact.program_hash != expected:
                return [Violation("artifact.program_hash", got, f"{expected!r} (the checked program)")]
            v = self.envelope.check_trace(artifact.trace)
            if v:
                return v
            fresh = self._caps.render(program)
            if set(fresh.samples) != set(artifact.trace.samples) or fresh.n_samples != artifact.trace.n_samples:
                return [Violation("artifact.trace", f"{artifact.trace.n_samples} samples on "
                                  f"{sorted(artifact.trace.samples)}",
                                  f"{fresh.n_samples} samples on {sorted(fresh.samples)}")]
            for name, s in fresh.samples.items():
                diff = float(np.max(np.abs(np.asarray(artifact.trace.samples[name]) - s), initial=0.0))
                if not diff <= self._tol:
                    return [Violation("artifact.trace", diff, f"<= {self._tol!r} from the program's render",
                                      f"frame {name!r}")]
            return []
        except Exception as e:
            return [Violation("artifact", f"{type(e).__name__}: {e}", "an artifact the guard can check")]

    def find(self, job_key: str) -> JobHandle | None:
        return self.backend.find(job_key)

    def result(self, handle: JobHandle, timeout_s: float) -> Result:
        return self.backend.result(handle, timeout_s)

    def release(self, job_key: str) -> None:
        """Un-count a job the backend provably never received."""
        self.ledger.release(job_key)
        if self.device_ledger is not None:
            self.device_ledger.release(self.scope, job_key)

    def charge(self, job_key: str, shots: int, day: str, job_id: str = "") -> None:
        """Count shots that already ran (an orphaned execution) in the session's ledger and
        the device's."""
        self.ledger.charge(job_key, shots, day, job_id)
        if self.device_ledger is not None:
            self.device_ledger.charge(self.scope, job_key, shots, day)
