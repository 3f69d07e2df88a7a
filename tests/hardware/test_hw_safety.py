"""The safety envelope and the guard: refusals name the limit and the value, and nothing
that breaks a limit ever reaches ``Backend.submit``.

The property tests throw >= 100,000 random programs at ``GuardedBackend.submit`` with a
recording backend: bulk programs from a seeded numpy generator (cheap, so the count is
high) and hypothesis examples for edge cases (NaN, ±inf, huge and tiny floats). A third of
the programs are *forged* — built with ``object.__new__`` so that constructor validation
never ran, as a mutated or hostile object would be. Every artifact that reached the
backend is re-checked by ``reference_violations``, written independently of the envelope
in plain numpy over a JSON round trip of the program.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hw_helpers import DRIVE, DT_S, FakeClock, RecordingBackend, default_caps, make_limits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pulsecal.hardware import ir
from pulsecal.hardware.backend import Artifact, Capabilities
from pulsecal.hardware.guard import GuardedBackend, require_clearance
from pulsecal.hardware.ledger import ShotLedger
from pulsecal.hardware.safety import SafetyEnvelope, SafetyLimits, SafetyViolation

# Policies emit NaN/inf on purpose here; numpy's warnings about them are expected noise.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

LIMITS = make_limits(max_shots_per_day=40_000_000)
CAPS = default_caps()


def _prog(*ins: Any, frames: tuple[ir.Frame, ...] = (DRIVE,), shots: int = 100) -> ir.Program:
    return ir.Program((*ins, ir.Acquire(0)), frames, shots)


# -- refusals name the limit and the value ------------------------------------------------


@pytest.mark.parametrize(
    ("program", "limit", "value_text"),
    [
        (_prog(ir.FramePlay("q0_drive", ir.Gaussian(40e-9, 8e-9, 0.9))), "max_amplitude", "0.89"),
        (_prog(ir.FramePlay("q0_drive", ir.Sampled(np.array([0.0, 0.6, 0.0]), DT_S))), "max_slew_per_sample", "0.6"),
        (_prog(ir.FramePlay("q0_drive", ir.Gaussian(300e-9, 60e-9, 0.3))), "max_pulse_duration_s", "3.00000"),
        (_prog(ir.FrameDelay(3e-6)), "max_program_duration_s", "3e-06"),
        (_prog(*[ir.FramePlay("q0_drive", ir.Drag(200e-9, 80e-9, 0.75, 0.0)) for _ in range(2)]),
         "max_drive_energy_s", "1.4"),
        (_prog(shots=6000), "max_shots_per_job", "6000"),
        (_prog(frames=(ir.Frame("q1_drive", "q1_drive", 5e9),)), "allowed_frames", "q1_drive"),
        (_prog(ir.ShiftFrequency("q0_drive", 30e6)), "max_frequency_offset_hz", "5030000000.0"),
        (_prog(ir.SetFrequency("q0_drive", 4.9e9)), "max_frequency_offset_hz", "4900000000.0"),
    ],
)
def test_refusals_name_limit_and_value(program: ir.Program, limit: str, value_text: str) -> None:
    env = SafetyEnvelope(LIMITS, CAPS)
    violations = env.check(program)
    assert [v.limit for v in violations] == [limit]
    with pytest.raises(SafetyViolation) as e:
        env.enforce(program)
    assert limit in str(e.value) and value_text in str(e.value) and "allowed" in str(e.value)


def test_per_day_limit_counts_what_was_used_today() -> None:
    env = SafetyEnvelope(make_limits(max_shots_per_day=1000), CAPS)
    p = _prog(shots=300)
    assert env.check(p, shots_today=700) == []
    [v] = env.check(p, shots_today=701)
    assert v.limit == "max_shots_per_day" and v.value == 1001


def test_guard_refuses_a_batch_that_would_break_the_day(tmp_path: Path) -> None:
    clock = FakeClock()
    backend = RecordingBackend(CAPS)
    guard = GuardedBackend(backend, make_limits(max_shots_per_day=1000), ShotLedger(tmp_path / "l.json"),
                           clock=clock)
    p = _prog(ir.FramePlay("q0_drive", ir.Constant(4e-9, 0.1)), shots=400)
    guard.submit(p, 400, "a")
    guard.submit(p, 400, "a")  # the same key does not count twice
    guard.submit(p, 400, "b")
    with pytest.raises(SafetyViolation, match="max_shots_per_day=1200"):
        guard.submit(p, 400, "c")
    clock.now_s += 86_400  # a new UTC day
    guard.submit(p, 400, "c")
    assert [k for _, _, k in backend.submitted] == ["a", "a", "b", "c"]
    assert ShotLedger(tmp_path / "l.json").used_shots == 1200


def test_adapters_refuse_artifacts_the_guard_did_not_clear() -> None:
    p = _prog(ir.FramePlay("q0_drive", ir.Constant(4e-9, 0.1)))
    backend = RecordingBackend(CAPS)
    art = backend.compile(p)
    with pytest.raises(SafetyViolation, match="clearance"):
        backend.submit(art, 100, "k")
    guard = GuardedBackend(backend, LIMITS, ShotLedger())
    guard.submit(p, 100, "k")
    sealed = backend.submitted[0][0]
    with pytest.raises(SafetyViolation, match=r"clearance\.shots"):
        require_clearance(sealed, 101, "k")
    with pytest.raises(SafetyViolation, match=r"clearance\.job_key"):
        require_clearance(sealed, 100, "other")
    # Swapping the program under a valid clearance is caught by the recomputed hash.
    evil = _prog(ir.FramePlay("q0_drive", ir.Constant(4e-9, 0.1)), shots=100)
    object.__setattr__(evil.instructions[0].waveform, "amplitude", 1.0)
    swapped = Artifact(evil, sealed.program_hash, sealed.trace, None, sealed.clearance)
    with pytest.raises(SafetyViolation, match=r"clearance\.program_hash"):
        require_clearance(swapped, 100, "k")


def test_a_forged_zero_amplitude_pulse_with_an_invalid_sigma_is_refused() -> None:
    """Its samples are all zero, so no sample limit sees it; the JSON the journal and the
    backend read back would not load (found by the hypothesis test below)."""
    wf = _forge(ir.Drag, duration_s=4e-9, sigma_s=-1.0, amplitude=0.0, beta_s=0.0, angle=0.0, zero_at_edges=False)
    program = _prog(ir.FramePlay("q0_drive", wf), shots=100)
    violations = SafetyEnvelope(LIMITS, CAPS).check(program)
    assert [v.limit for v in violations] == ["valid_parameters"]
    assert "sigma_s=-1.0" in violations[0].value
    backend = RecordingBackend(CAPS)
    with pytest.raises(SafetyViolation, match=r"valid_parameters"):
        GuardedBackend(backend, LIMITS, ShotLedger()).submit(program, 100, "k")
    assert backend.submitted == []
    # The same pulse built through its constructor is refused there, naming the field.
    with pytest.raises(ValueError, match=r"Drag\.sigma_s=-1\.0"):
        ir.Drag(4e-9, -1.0, 0.0, 0.0)


class LyingBackend(RecordingBackend):
    """Compiles to a trace louder than the program it was given."""

    def compile(self, program: ir.Program) -> Artifact:
        art = super().compile(program)
        loud = {k: v * 1.5 for k, v in art.trace.samples.items()}
        trace = type(art.trace)(art.trace.dt_s, loud, art.trace.plays, art.trace.acquires, art.trace.n_samples)
        return Artifact(art.program, art.program_hash, trace, None)


def test_guard_checks_the_artifact_not_only_the_program() -> None:
    backend = LyingBackend(CAPS)
    guard = GuardedBackend(backend, LIMITS, ShotLedger())
    with pytest.raises(SafetyViolation, match=r"max_amplitude|artifact\.trace"):
        guard.submit(_prog(ir.FramePlay("q0_drive", ir.Gaussian(40e-9, 8e-9, 0.7, zero_at_edges=True))), 100, "k")
    with pytest.raises(SafetyViolation, match=r"artifact\.trace"):
        guard.submit(_prog(ir.FramePlay("q0_drive", ir.Gaussian(40e-9, 8e-9, 0.1, zero_at_edges=True))), 100, "k2")
    assert backend.submitted == []


def test_only_the_guard_calls_backend_submit() -> None:
    """Structural half of the no-bypass guarantee: in the package, ``.submit(`` on a
    backend appears only in guard.py (adapters define ``def submit``; BackendDevice calls
    ``self.guard.submit``)."""
    root = Path(__file__).resolve().parents[2] / "hardware"
    offenders = []
    for path in root.rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if ".submit(" in code and "def submit" not in code and "self.guard.submit(" not in code:
                if path.name != "guard.py":
                    offenders.append(f"{path.relative_to(root)}:{n}: {line.strip()}")
    assert offenders == []


# -- property tests: nothing that breaks a limit reaches submit ------------------------------


def reference_violations(artifact: Artifact, shots: int, limits: SafetyLimits, caps: Capabilities) -> list[str]:
    """Independent re-check of what reached the backend (plain numpy, no envelope code)."""
    out = []
    program = ir.Program.from_json(artifact.program.to_json())  # drop any forged state
    if ir.recompute_hash(program) != artifact.program_hash:
        out.append("hash")
    if not 1 <= shots <= limits.max_shots_per_job or shots != program.shots:
        out.append("shots")
    allowed = {f.name: f for f in limits.allowed_frames}
    freq = {}
    for f in program.frames:
        a = allowed.get(f.name)
        if a is None or a.port != f.port or abs(f.frequency_hz - a.frequency_hz) > limits.max_frequency_offset_hz:
            out.append("frame")
            return out
        freq[f.name] = f.frequency_hz
    for ins in program.instructions:
        if isinstance(ins, ir.ShiftFrequency):
            freq[ins.frame] += ins.frequency_hz
        elif isinstance(ins, ir.SetFrequency):
            freq[ins.frame] = ins.frequency_hz
        else:
            continue
        if not abs(freq[ins.frame] - allowed[ins.frame].frequency_hz) <= limits.max_frequency_offset_hz:
            out.append("frequency")
    for trace in (artifact.trace, ir.to_waveform_trace(program, DT_S)):
        if trace.n_samples * DT_S > limits.max_program_duration_s * (1 + 1e-9):
            out.append("program_duration")
        for span in trace.plays:
            if (span.stop - span.start) * DT_S > limits.max_pulse_duration_s * (1 + 1e-9):
                out.append("pulse_duration")
        for s in trace.samples.values():
            s = np.asarray(s)
            if not np.all(np.isfinite(s)):
                out.append("finite")
                continue
            if s.size and np.abs(s).max() > limits.max_amplitude:
                out.append("amplitude")
            padded = np.concatenate([[0], s, [0]])
            if np.abs(np.diff(padded)).max() > limits.max_slew_per_sample:
                out.append("slew")
            if np.sum(np.abs(s) ** 2) * DT_S > limits.max_drive_energy_s:
                out.append("energy")
    return out


_NASTY = np.array([np.nan, np.inf, -np.inf, 1e308, -1e308, 1e-308, 0.0, -0.0, 1e30, 2.0, 1.0 + 1e-12])
_FRAMES = (DRIVE, DRIVE, DRIVE, DRIVE, ir.Frame("q0_drive", "q0_drive", 5.03e9),
           ir.Frame("q0_drive", "q1_drive", 5e9), ir.Frame("q9_drive", "q0_drive", 5e9))


def _policy_float(rng: np.random.Generator, scale: float) -> float:
    """A policy output mapped to physical units: mostly sane, sometimes garbage."""
    r = rng.random()
    if r < 0.08:
        return float(_NASTY[rng.integers(_NASTY.size)])
    if r < 0.15:
        return float(rng.normal() * scale * 1e3)
    return float(rng.uniform(-1, 1) * scale)


def _forge(cls: type, **fields: Any) -> Any:
    obj = object.__new__(cls)
    for k, v in fields.items():
        object.__setattr__(obj, k, v)
    return obj


def _random_waveform(rng: np.random.Generator, forge: bool) -> Any:
    kind = rng.integers(4)
    dur = float(rng.integers(1, 260)) * DT_S if rng.random() < 0.9 else _policy_float(rng, 1e-7)
    amp = _policy_float(rng, 1.0)
    if kind == 0:
        n = int(rng.integers(1, 120))
        w = (rng.uniform(-1, 1, n) + 1j * rng.uniform(-1, 1, n)) * abs(amp) / math.sqrt(2)
        if rng.random() < 0.3:  # smooth it so that slew passes sometimes
            w = w.mean() * np.sin(np.pi * (np.arange(n) + 0.5) / n)
        if rng.random() < 0.05:
            w[rng.integers(n)] = complex(_policy_float(rng, 1.0), _policy_float(rng, 1.0))
        dt = DT_S if rng.random() < 0.8 else DT_S * float(rng.choice([0.5, 0.8, 2.0, 1.0 + 1e-9]))
        if forge:
            arr = np.asarray(w, dtype=np.complex128)
            return _forge(ir.Sampled, samples=arr, dt_s=dt)
        return ir.Sampled(w, dt)
    sigma = abs(_policy_float(rng, dur / 2)) + (0.0 if rng.random() < 0.05 else 1e-12)
    angle = _policy_float(rng, math.pi)
    if kind == 1:
        f = {"duration_s": dur, "sigma_s": sigma, "amplitude": amp, "angle": angle, "zero_at_edges": bool(rng.random() < 0.5)}
        return _forge(ir.Gaussian, **f) if forge else ir.Gaussian(**f)
    if kind == 2:
        f = {"duration_s": dur, "sigma_s": sigma, "amplitude": amp, "beta_s": _policy_float(rng, 1e-9),
             "angle": angle, "zero_at_edges": bool(rng.random() < 0.5)}
        return _forge(ir.Drag, **f) if forge else ir.Drag(**f)
    f = {"duration_s": dur, "amplitude": amp * 0.3, "angle": angle}
    return _forge(ir.Constant, **f) if forge else ir.Constant(**f)


def random_program(rng: np.random.Generator) -> ir.Program | None:
    """A random program, or None when the IR constructors refused it (that is a refusal too)."""
    forge = bool(rng.random() < 1 / 3)
    frame = _FRAMES[int(rng.integers(len(_FRAMES)))]
    name = frame.name
    ins: list[Any] = []
    try:
        for _ in range(int(rng.integers(1, 6))):
            r = rng.random()
            if r < 0.55:
                wf = _random_waveform(rng, forge)
                ins.append(_forge(ir.FramePlay, frame=name, waveform=wf) if forge else ir.FramePlay(name, wf))
            elif r < 0.7:
                ph = _policy_float(rng, 10.0)
                ins.append(_forge(ir.ShiftPhase, frame=name, phase=ph) if forge else ir.ShiftPhase(name, ph))
            elif r < 0.75:
                ph = _policy_float(rng, 10.0)
                ins.append(_forge(ir.SetPhase, frame=name, phase=ph) if forge else ir.SetPhase(name, ph))
            elif r < 0.82:
                df = _policy_float(rng, 30e6)
                ins.append(_forge(ir.ShiftFrequency, frame=name, frequency_hz=df) if forge
                           else ir.ShiftFrequency(name, df))
            elif r < 0.85:
                f = 5e9 + _policy_float(rng, 30e6)
                ins.append(_forge(ir.SetFrequency, frame=name, frequency_hz=f) if forge else ir.SetFrequency(name, f))
            else:
                d = abs(_policy_float(rng, 1e-6)) if rng.random() < 0.9 else _policy_float(rng, 1e-6)
                ins.append(_forge(ir.FrameDelay, duration_s=d, frames=()) if forge else ir.FrameDelay(d))
        ins.append(ir.Acquire(0, float(rng.integers(0, 3)) * 1e-7))
        shots = int(rng.choice([1, 100, 1000, 5000, 5001, 10**9])) if rng.random() < 0.9 else int(rng.integers(-5, 3))
        if forge:
            return _forge(ir.Program, instructions=tuple(ins), frames=(frame,), shots=shots, qubits=(0,),
                          name="forged", _hash="")
        return ir.Program(tuple(ins), (frame,), shots)
    except (ValueError, TypeError):
        return None


def _throw(programs: list[ir.Program | None], guard: GuardedBackend, start_key: int) -> tuple[int, int]:
    refused = accepted = 0
    for i, p in enumerate(programs):
        if p is None:
            refused += 1
            continue
        shots = p.shots
        if i % 7 == 0:  # a caller passing a shot count that disagrees with the program
            shots = shots + 1
        try:
            guard.submit(p, shots, f"job-{start_key + i}")
            accepted += 1
        except SafetyViolation:
            refused += 1
    return refused, accepted


def _assert_nothing_bad_submitted(backend: RecordingBackend, limits: SafetyLimits) -> None:
    bad = []
    for art, shots, key in backend.submitted:
        v = reference_violations(art, shots, limits, CAPS)
        if v:
            bad.append((key, v))
    assert bad == []
    assert sum(s for _, s, _ in backend.submitted) <= limits.max_shots_per_day


def test_100k_random_programs_never_reach_submit_when_unsafe() -> None:
    rng = np.random.default_rng(20240611)
    backend = RecordingBackend(CAPS)
    # A per-day limit the stream runs into, so the ledger path is exercised too.
    limits = make_limits(max_shots_per_day=10_000_000)
    guard = GuardedBackend(backend, limits, ShotLedger(), clock=FakeClock())
    n = 100_000
    programs = [random_program(rng) for _ in range(n)]
    refused, accepted = _throw(programs, guard, 0)
    assert refused + accepted == n
    assert accepted == len(backend.submitted)
    # Not vacuous: plenty got through, plenty were refused, and the day filled up.
    assert accepted > 5_000 and refused > 20_000
    assert guard.ledger.shots_on(guard.today()) > 9_000_000
    _assert_nothing_bad_submitted(backend, limits)


floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2.0, max_value=2.0),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.8, 0.80000001, 1e-300, 1e300, math.nan, math.inf]),
)
durations = st.one_of(st.integers(1, 300).map(lambda k: k * DT_S), floats)


@st.composite
def hyp_programs(draw: st.DrawFn) -> ir.Program | None:
    forge = draw(st.booleans())
    ins: list[Any] = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 6))
        if kind == 0:
            f = {"duration_s": draw(durations), "sigma_s": draw(floats), "amplitude": draw(floats),
                 "beta_s": draw(floats), "angle": draw(floats), "zero_at_edges": draw(st.booleans())}
            wf: Any = _forge(ir.Drag, **f) if forge else f
        elif kind == 1:
            f = {"duration_s": draw(durations), "amplitude": draw(floats), "angle": draw(floats)}
            wf = _forge(ir.Constant, **f) if forge else f
        elif kind == 2:
            vals = draw(st.lists(st.tuples(floats, floats), min_size=1, max_size=40))
            arr = np.array([complex(a, b) for a, b in vals])
            wf = _forge(ir.Sampled, samples=arr, dt_s=DT_S) if forge else {"samples": arr}
        else:
            wf = None
        try:
            if kind == 0 and not forge:
                wf = ir.Drag(**wf)
            elif kind == 1 and not forge:
                wf = ir.Constant(**wf)
            elif kind == 2 and not forge:
                wf = ir.Sampled(wf["samples"], DT_S)
            if wf is not None:
                ins.append(_forge(ir.FramePlay, frame="q0_drive", waveform=wf) if forge else ir.FramePlay("q0_drive", wf))
            elif kind == 3:
                v = draw(floats)
                ins.append(_forge(ir.ShiftFrequency, frame="q0_drive", frequency_hz=v) if forge
                           else ir.ShiftFrequency("q0_drive", v))
            elif kind == 4:
                v = draw(floats)
                ins.append(_forge(ir.FrameDelay, duration_s=v, frames=()) if forge else ir.FrameDelay(v))
            else:
                v = draw(floats)
                ins.append(_forge(ir.ShiftPhase, frame="q0_drive", phase=v) if forge else ir.ShiftPhase("q0_drive", v))
        except (ValueError, TypeError):
            return None
    shots = draw(st.one_of(st.integers(-2, 6000), st.just(10**12)))
    ins.append(ir.Acquire(0))
    if forge:
        return _forge(ir.Program, instructions=tuple(ins), frames=(DRIVE,), shots=shots, qubits=(0,),
                      name="", _hash="")
    try:
        return ir.Program(tuple(ins), (DRIVE,), shots)
    except ValueError:
        return None


_HYP_BACKEND = RecordingBackend(CAPS)
_HYP_GUARD = GuardedBackend(_HYP_BACKEND, LIMITS, ShotLedger(), clock=FakeClock())


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(hyp_programs(), min_size=1, max_size=6))
def test_hypothesis_edge_cases_never_reach_submit(programs: list[ir.Program | None]) -> None:
    before = len(_HYP_BACKEND.submitted)
    _throw(programs, _HYP_GUARD, 10**9 + before * 100 + len(programs))
    for art, shots, key in _HYP_BACKEND.submitted[before:]:
        assert reference_violations(art, shots, LIMITS, CAPS) == [], key


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(hyp_programs())
def test_envelope_check_never_raises(program: ir.Program | None) -> None:
    if program is not None:
        v = SafetyEnvelope(LIMITS, CAPS).check(program)
        assert all(x.limit and x.allowed for x in v)
