"""The guard's caches by content (``hardware.guard``, "Checked once per content"): they
save the repeated work on a program that did not change, and a program changed in any way
after its check is checked again and refused, whatever the caches hold.

Programs are changed the way a forger would (``object.__setattr__``, an array's writeable
flag flipped back), so the hash cached on the object stays stale.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hw_helpers import DRIVE, DT_S, RecordingBackend, default_caps, make_limits

from pulsecal.hardware.backend import Artifact, Violation
from pulsecal.hardware.guard import GuardedBackend
from pulsecal.hardware.ir import (
    Acquire,
    Constant,
    FramePlay,
    Program,
    Sampled,
    ShiftPhase,
    recompute_hash,
)
from pulsecal.hardware.ledger import ShotLedger
from pulsecal.hardware.program import content_key
from pulsecal.hardware.safety import SafetyViolation

LIMITS = make_limits()
CAPS = default_caps()


class CountingBackend(RecordingBackend):
    """Records submissions, counts validate and compile calls, optionally reusable."""

    def __init__(self, *, reusable: bool, on_compile: Callable[[Program], None] | None = None) -> None:
        super().__init__(CAPS)
        self.reusable_artifacts = reusable
        self.validated = 0
        self.compiled = 0
        self._on_compile = on_compile

    def validate(self, program: Program) -> list[Violation]:
        self.validated += 1
        return super().validate(program)

    def compile(self, program: Program) -> Artifact:
        self.compiled += 1
        if self._on_compile is not None:
            self._on_compile(program)
        return super().compile(program)


def _sampled(amplitude: float = 0.1) -> Program:
    w = amplitude * np.sin(np.pi * (np.arange(40) + 0.5) / 40)
    return Program((FramePlay("q0_drive", Sampled(w, DT_S)), Acquire(0)), (DRIVE,), 100)


def _overwrite(samples: np.ndarray, value: float) -> None:
    """Change a read-only waveform in place, as a forger can (the array owns its data)."""
    samples.setflags(write=True)
    samples[:] = value


def _guard(backend: CountingBackend, tmp_path: Path) -> tuple[GuardedBackend, ShotLedger]:
    ledger = ShotLedger(tmp_path / "ledger.json")
    return GuardedBackend(backend, LIMITS, ledger), ledger


@pytest.mark.parametrize("reusable", [True, False])
def test_a_program_changed_after_its_check_is_refused(tmp_path: Path, reusable: bool) -> None:
    backend = CountingBackend(reusable=reusable)
    guard, ledger = _guard(backend, tmp_path)
    p = _sampled()
    stale_hash = p.content_hash()
    guard.submit(p, 100, "a")
    assert guard.check(p, 100, "a2") == []  # cached: the content passed
    _overwrite(p.instructions[0].waveform.samples, 0.95)  # a step from 0 to 0.95: slew
    assert p.content_hash() == stale_hash  # the object's own cache did not notice
    with pytest.raises(SafetyViolation, match="max_slew_per_sample"):
        guard.submit(p, 100, "b")
    assert [k for _, _, k in backend.submitted] == ["a"]
    assert ledger.entry("b") is None
    # A field replaced through object.__setattr__ is caught the same way.
    q = Program((FramePlay("q0_drive", Constant(4e-9, 0.1)), Acquire(0)), (DRIVE,), 100)
    guard.submit(q, 100, "c")
    object.__setattr__(q.instructions[0].waveform, "amplitude", 1.5)
    with pytest.raises(SafetyViolation, match="max_amplitude"):
        guard.submit(q, 100, "d")
    assert [k for _, _, k in backend.submitted] == ["a", "c"]


def test_a_program_changed_between_the_seal_and_the_backend_is_refused(tmp_path: Path) -> None:
    backend = CountingBackend(reusable=True)
    guard, ledger = _guard(backend, tmp_path)
    p = _sampled()
    guard.submit(p, 100, "a")  # sealed for p itself, and kept by content
    samples = p.instructions[0].waveform.samples
    with pytest.raises(SafetyViolation, match=r"clearance\.program_hash"):
        guard.submit(p, 100, "b", before_send=lambda: _overwrite(samples, 0.95))
    assert [k for _, _, k in backend.submitted] == ["a"]
    # p now reads as other content: checked in full and refused.
    compiled = backend.compiled
    with pytest.raises(SafetyViolation, match="max_slew_per_sample"):
        guard.submit(p, 100, "c")
    assert ledger.entry("c") is None
    # The checked content in a new object reuses the artifact built from p, sealed for the
    # new object: what the adapter re-reads is the program of this job, not the changed p.
    fresh = _sampled()
    guard.submit(fresh, 100, "d")
    assert backend.compiled == compiled
    assert backend.submitted[-1][0].program is fresh


def test_a_compile_that_changes_the_program_is_refused(tmp_path: Path) -> None:
    def louder(program: Program) -> None:
        wf = program.instructions[0].waveform
        if isinstance(wf, Sampled):
            _overwrite(wf.samples, 0.95)

    backend = CountingBackend(reusable=True, on_compile=louder)
    guard, _ = _guard(backend, tmp_path)
    with pytest.raises(SafetyViolation, match=r"artifact\.program_hash"):
        guard.submit(_sampled(), 100, "a")
    assert backend.submitted == []


def test_a_validator_that_changes_the_program_leaves_no_verdict(tmp_path: Path) -> None:
    """The verdict is kept only for content that was still there after the checks."""

    class Mutating(CountingBackend):
        def validate(self, program: Program) -> list[Violation]:
            v = super().validate(program)
            wf = program.instructions[0].waveform
            if isinstance(wf, Constant) and wf.amplitude > 0.5:
                object.__setattr__(wf, "amplitude", 0.1)  # hide the loud pulse from the envelope
            return v

    backend = Mutating(reusable=True)
    guard, _ = _guard(backend, tmp_path)
    loud = Program((FramePlay("q0_drive", Constant(4e-9, 0.1)), Acquire(0)), (DRIVE,), 100)
    object.__setattr__(loud.instructions[0].waveform, "amplitude", 0.9)
    assert guard.check(loud, 100, "a") == []  # the envelope saw 0.1
    object.__setattr__(loud.instructions[0].waveform, "amplitude", 0.9)
    before = backend.validated
    guard.check(loud, 100, "b")
    assert backend.validated == before + 1  # checked again, not a cache hit


def test_unchanged_content_is_checked_and_compiled_once(tmp_path: Path) -> None:
    backend = CountingBackend(reusable=True)
    guard, _ = _guard(backend, tmp_path)
    for i in range(3):
        guard.submit(_sampled(), 100, f"k{i}")  # a new object of the same content each time
    assert (backend.validated, backend.compiled) == (1, 1)
    sealed = [a for a, _, _ in backend.submitted]
    assert len({id(a.payload) for a in sealed}) == 1
    assert [a.clearance.job_key for a in sealed if a.clearance is not None] == ["k0", "k1", "k2"]
    guard.submit(_sampled(0.2), 100, "other")
    assert (backend.validated, backend.compiled) == (2, 2)
    # Shot limits are checked on every submission, cached content or not.
    with pytest.raises(SafetyViolation, match="max_shots_per_job"):
        guard.submit(_sampled().with_shots(6000), 6000, "big")
    with pytest.raises(SafetyViolation, match="shots"):
        guard.submit(_sampled(), 101, "mismatch")


def test_a_backend_without_reusable_artifacts_compiles_every_job(tmp_path: Path) -> None:
    backend = CountingBackend(reusable=False)
    guard, _ = _guard(backend, tmp_path)
    for i in range(3):
        guard.submit(_sampled(), 100, f"k{i}")
    assert (backend.validated, backend.compiled) == (1, 3)
    off = CountingBackend(reusable=True)
    g0 = GuardedBackend(off, LIMITS, ShotLedger(tmp_path / "l0.json"), cache_size=0)
    for i in range(2):
        g0.submit(_sampled(), 100, f"k{i}")
    assert (off.validated, off.compiled) == (2, 2)
    with pytest.raises(ValueError, match="cache_size=-1"):
        GuardedBackend(off, LIMITS, ShotLedger(), cache_size=-1)


def test_content_key_is_exact_and_refuses_what_it_cannot_read() -> None:
    a = Program((ShiftPhase("q0_drive", 0.0), Acquire(0)), (DRIVE,), 100)
    b = Program((ShiftPhase("q0_drive", -0.0), Acquire(0)), (DRIVE,), 100)
    assert a.to_json() != b.to_json()
    assert content_key(a) != content_key(b)
    assert recompute_hash(b) == hashlib.sha256(b.to_json().encode()).hexdigest()
    assert content_key(_sampled()) == content_key(_sampled())
    assert content_key(_sampled()) != content_key(_sampled(0.1 + 1e-16))

    class LoudPlay(FramePlay):
        pass

    sub = Program((LoudPlay("q0_drive", Constant(4e-9, 0.1)), Acquire(0)), (DRIVE,), 100)
    assert content_key(sub) is None
    shadow = Program((FramePlay("q0_drive", Constant(4e-9, 0.1)), Acquire(0)), (DRIVE,), 100)
    honest_key = content_key(shadow)
    fake: Any = lambda: {}  # noqa: E731 - a to_dict shadowing the class's on one instance
    object.__setattr__(shadow.instructions[0], "to_dict", fake)
    assert content_key(shadow) is None
    assert honest_key is not None


def test_programs_without_a_key_are_checked_every_time(tmp_path: Path) -> None:
    class OtherPlay(FramePlay):
        pass

    backend = CountingBackend(reusable=True)
    guard, _ = _guard(backend, tmp_path)
    for i in range(2):
        p = Program((OtherPlay("q0_drive", Constant(4e-9, 0.1)), Acquire(0)), (DRIVE,), 100)
        guard.submit(p, 100, f"k{i}")
    assert (backend.validated, backend.compiled) == (2, 2)


def test_the_artifact_cache_is_bounded_by_trace_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pulsecal.hardware import guard as guard_module

    backend = CountingBackend(reusable=True)
    guard, _ = _guard(backend, tmp_path)
    n = guard_module._trace_samples(backend.compile(_sampled()))
    backend.compiled = 0
    monkeypatch.setattr(guard_module, "_MAX_CACHED_SAMPLES", n)  # room for one artifact
    guard.submit(_sampled(), 100, "a")
    guard.submit(_sampled(0.2), 100, "b")  # pushes the first one out
    guard.submit(_sampled(0.2), 100, "c")
    assert backend.compiled == 2
    guard.submit(_sampled(), 100, "d")
    assert backend.compiled == 3
    assert guard._artifact_samples == n
