"""qibolab adapter: IR → qibolab sequence mapping, dummy-platform plumbing, and physics on
qibolab's own EMULATOR (a third-party lab-frame Lindblad simulation).

The emulator platform ships in hardware/data/qibolab_platforms/pulsecal_emulator:
one 3-level transmon, f_q = 5 GHz, α = −300 MHz, T1 = 60 µs, T2 = 50 µs, a 1 GSa/s drive
with rabi_frequency = 50 MHz (amplitude 1 → 50 MHz Rabi rate). The emulator draws shots
from NumPy's global generator, so the emulator tests pin and restore its state.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qibolab")

from hw_helpers import numpy_global_seed, shipped_qibolab_backend

from pulsecal.envs.physics import superoperators
from pulsecal.hardware import ir
from pulsecal.hardware.adapters.qibolab import QibolabBackend, emulator_transmon
from pulsecal.hardware.backend import BackendError
from pulsecal.hardware.guard import GuardedBackend
from pulsecal.hardware.ledger import ShotLedger
from pulsecal.hardware.package_data import emulator_platforms_dir
from pulsecal.hardware.safety import SafetyLimits, SafetyViolation

PLATFORMS = emulator_platforms_dir()
RABI_HZ = 50e6
DT = 1e-9


@pytest.fixture(scope="module")
def emulator() -> Iterator[QibolabBackend]:
    with shipped_qibolab_backend("pulsecal_emulator") as backend:
        yield backend


@pytest.fixture(scope="module")
def dummy() -> QibolabBackend:
    return QibolabBackend("dummy")


@pytest.fixture
def seeded_numpy() -> Iterator[None]:
    with numpy_global_seed(20261101):  # reproducible emulator counts
        yield


def _guarded(backend: QibolabBackend) -> GuardedBackend:
    caps = backend.capabilities()
    limits = SafetyLimits(allowed_frames=caps.frames, max_amplitude=1.0, max_pulse_duration_s=1e-6,
                          max_program_duration_s=10e-6, max_drive_energy_s=1e-6)
    return GuardedBackend(backend, limits, ShotLedger(None, fsync=False))


def _run(backend: QibolabBackend, program: ir.Program, key: str) -> dict[str, int]:
    g = _guarded(backend)
    handle = g.submit(program, program.shots, key)
    return dict(g.result(handle, timeout_s=10.0).counts)


def _gaussian_pi_amplitude(duration_s: float, sigma_s: float, fraction: float = 1.0) -> float:
    """Amplitude whose sampled Gaussian has area fraction/(2·Ω_R) (a π pulse at fraction 1)."""
    unit = ir.Gaussian(duration_s, sigma_s, 1.0).samples(DT)
    return fraction / (2 * RABI_HZ * float(np.sum(unit.real)) * DT)


# -- capabilities are read from the platform ------------------------------------------------------


def test_capabilities_come_from_the_platform(emulator: QibolabBackend) -> None:
    caps = emulator.capabilities()
    p = emulator.platform
    assert caps.sample_time_s == {"0/drive": pytest.approx(1.0 / (p.sampling_rate * 1e9))}
    (frame,) = caps.frames
    assert frame.port == "0/drive"
    assert frame.frequency_hz == p.config("0/drive").frequency == 5e9
    assert caps.amplitude_limit == 1.0 and caps.qubits == (0,)
    assert QibolabBackend(p, max_amplitude=0.5).capabilities().amplitude_limit == 0.5


def test_emulator_physics_in_our_units(emulator: QibolabBackend) -> None:
    t = emulator_transmon(emulator.platform)
    assert (t.levels, t.anharmonicity_hz, t.rabi_max_hz, t.detuning_hz) == (3, -300e6, 50e6, 0.0)
    assert t.t1_s == pytest.approx(60e-6) and t.t2_s == pytest.approx(50e-6)
    assert t.dt_s == pytest.approx(DT)


def test_missing_extra_message_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from pulsecal.hardware.adapters import qibolab as adapter

    real = builtins.__import__

    def fake(name: str, *a: object, **k: object) -> object:
        if name == "qibolab":
            raise ImportError("no qibolab")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"pulsecal\[qibolab\]"):
        adapter._import_qibolab()


# -- IR → qibolab mapping -------------------------------------------------------------------------


def _compiled(backend: QibolabBackend, *ins: ir.Instruction, frame: ir.Frame | None = None):
    f = frame or backend.capabilities().frames[0]
    prog = ir.Program((*ins, ir.Acquire(0)), (f,), 10)
    art = backend.compile(prog)
    drive = [p for ch, p in art.payload.sequence if ch == f.port and type(p).__name__ != "Align"]
    return art, drive


@pytest.mark.parametrize("wf", [
    ir.Gaussian(40e-9, 10e-9, 0.4),
    ir.Drag(20e-9, 5e-9, -0.3, 0.27e-9),
    ir.Constant(12e-9, 0.2),
    ir.Gaussian(16e-9, 4e-9, 0.5, zero_at_edges=True),
    ir.Sampled(np.array([0.1, 0.2 + 0.1j, -0.3j, 0.05]), DT),
    ir.Sampled(np.linspace(0, 0.5, 10) + 0.1j, 0.5e-9),  # resampled to the 1 ns grid
])
def test_play_envelopes_are_the_ir_samples(emulator: QibolabBackend, wf: ir.Waveform) -> None:
    f = emulator.capabilities().frames[0]
    _, drive = _compiled(emulator, ir.FramePlay(f.name, wf))
    (pulse,) = drive
    env = pulse.envelopes(emulator.platform.sampling_rate)
    got = env[0] + 1j * env[1]
    want = emulator.capabilities().render(ir.Program((ir.FramePlay(f.name, wf), ir.Acquire(0)), (f,), 1))
    np.testing.assert_allclose(got, want.samples[f.name][: got.size], atol=1e-12)
    assert pulse.duration == pytest.approx(got.size * DT / 1e-9)  # qibolab durations in ns


def test_native_shapes_are_parametric(emulator: QibolabBackend) -> None:
    f = emulator.capabilities().frames[0]
    _, (g, d, c) = _compiled(emulator, ir.FramePlay(f.name, ir.Gaussian(40e-9, 10e-9, 0.4)),
                             ir.FramePlay(f.name, ir.Drag(20e-9, 5e-9, 0.3, 0.27e-9)),
                             ir.FramePlay(f.name, ir.Constant(8e-9, 0.1)))
    assert (g.envelope.kind, g.envelope.rel_sigma) == ("gaussian", 0.25)
    # qibolab's DRAG β is in samples: β_s / dt_s.
    assert (d.envelope.kind, d.envelope.beta) == ("drag", pytest.approx(0.27))
    assert c.envelope.kind == "rectangular"


def test_virtual_z_sign_and_angle(emulator: QibolabBackend) -> None:
    f = emulator.capabilities().frames[0]
    _, drive = _compiled(emulator, ir.ShiftPhase(f.name, 0.7),
                         ir.FramePlay(f.name, ir.Gaussian(20e-9, 5e-9, 0.2, angle=0.4)),
                         ir.SetPhase(f.name, 1.0))
    vz1, pulse, vz2 = drive
    assert vz1.phase == pytest.approx(-0.7)  # emulator-measured convention, see the Ramsey test
    assert pulse.relative_phase == pytest.approx(-0.4)
    assert vz2.phase == pytest.approx(-(1.0 - 0.7))  # SetPhase becomes the difference
    flipped = QibolabBackend(emulator.platform, virtual_z_sign=+1)
    _, (vz,) = _compiled(flipped, ir.ShiftPhase(f.name, 0.7))
    assert vz.phase == pytest.approx(0.7)


def test_delays_barriers_padding_and_readout_order(emulator: QibolabBackend) -> None:
    padded = QibolabBackend(emulator.platform, granularity=4, min_samples=8)
    f = padded.capabilities().frames[0]
    art, drive = _compiled(padded, ir.FramePlay(f.name, ir.Sampled(np.full(5, 0.1), DT)),
                           ir.FrameDelay(6.4e-9), ir.FramePlay(f.name, ir.Constant(12e-9, 0.1)))
    kinds = [(type(p).__name__, getattr(p, "duration", None)) for p in drive]
    assert kinds[:4] == [("Pulse", 5.0), ("Delay", 3.0), ("Delay", 8.0), ("Pulse", 12.0)]
    # Total drive time equals the shared renderer's length up to the readout.
    assert sum(d for k, d in kinds if d is not None) == art.trace.n_samples
    names = [type(p).__name__ for _, p in art.payload.sequence]
    assert names[-1] == "Readout" and "Align" in names  # readout piped after the drive


def test_frequency_before_first_play_is_a_job_update(emulator: QibolabBackend) -> None:
    f = emulator.capabilities().frames[0]
    art, _ = _compiled(emulator, ir.ShiftFrequency(f.name, -2e6),
                       ir.FramePlay(f.name, ir.Constant(8e-9, 0.1)))
    assert art.payload.updates == ({"0/drive": {"frequency": 5e9 - 2e6}},)
    later = ir.Program((ir.FramePlay(f.name, ir.Constant(8e-9, 0.1)), ir.SetFrequency(f.name, 5.001e9),
                        ir.Acquire(0)), (f,), 10)
    (v,) = emulator.validate(later)
    assert v.limit == "frequency_change" and v.where == "instructions[1]"
    with pytest.raises(BackendError, match="frequency_change"):
        emulator.compile(later)


def test_unknown_frame_and_amplitude_are_violations(emulator: QibolabBackend) -> None:
    f = emulator.capabilities().frames[0]
    alien = ir.Frame("q7_drive", "7/drive", 5e9)
    v = emulator.validate(ir.Program((ir.FramePlay(alien.name, ir.Constant(8e-9, 0.1)), ir.Acquire(0)),
                                     (alien,), 10))
    assert [x.limit for x in v] == ["frame"]
    low = QibolabBackend(emulator.platform, max_amplitude=0.3)
    v = low.validate(ir.Program((ir.FramePlay(f.name, ir.Constant(8e-9, 0.5)), ir.Acquire(0)), (f,), 10))
    assert [x.limit for x in v] == ["amplitude"]


# -- dummy platform: plumbing ----------------------------------------------------------------------


def test_dummy_platform_plumbing(dummy: QibolabBackend) -> None:
    caps = dummy.capabilities()
    # A drive frame per qubit first, then the flux lines the dummy platform also has.
    assert [f.name for f in caps.frames] == [f"q{i}_drive" for i in range(5)] + [f"q{i}_flux" for i in range(5)]
    assert {f.kind for f in caps.frames[5:]} == {"flux"} and caps.qubits == tuple(range(5))
    f = caps.frames[2]
    prog = ir.Program((ir.FramePlay(f.name, ir.Drag(40e-9, 10e-9, 0.3, 0.2e-9)), ir.Acquire(2)), (f,), 64, (2,))
    g = _guarded(dummy)
    h = g.submit(prog, 64, "dummy-job")
    res = g.result(h, timeout_s=1.0)
    assert sum(res.counts.values()) == 64 and set(res.counts) == {"0", "1"}
    assert res.metadata["job_id"] == h.job_id
    assert dummy.find("dummy-job") == h
    assert g.submit(prog, 64, "dummy-job") == h  # same key: not run twice


def test_submit_refuses_uncleared_artifacts(dummy: QibolabBackend) -> None:
    f = dummy.capabilities().frames[0]
    art = dummy.compile(ir.Program((ir.FramePlay(f.name, ir.Constant(8e-9, 0.1)), ir.Acquire(0)), (f,), 8))
    with pytest.raises(SafetyViolation, match="clearance"):
        dummy.submit(art, 8, "no-guard")


# -- emulator physics --------------------------------------------------------------------------------


def _pi_program(frame: ir.Frame, fraction: float, shots: int) -> ir.Program:
    amp = _gaussian_pi_amplitude(40e-9, 10e-9, fraction)
    return ir.Program((ir.FramePlay(frame.name, ir.Gaussian(40e-9, 10e-9, amp)), ir.Acquire(0)),
                      (frame,), shots)


def test_emulator_pi_pulse_amplitude_is_resolved(emulator: QibolabBackend, seeded_numpy) -> None:
    f = emulator.capabilities().frames[0]
    right = _run(emulator, _pi_program(f, 1.0, 200), "pi-right")
    wrong = _run(emulator, _pi_program(f, 0.7, 200), "pi-wrong")
    # Expected excited populations: ≈0.99 (T1/T2 during 40 ns) and sin²(0.7·π/2) ≈ 0.79.
    assert right["1"] >= 185
    assert 125 <= wrong["1"] <= 185
    assert right["1"] - wrong["1"] >= 25  # > 5 standard deviations of 200-shot noise


def _open_system_p1(transmon, samples: np.ndarray) -> float:
    s = superoperators(transmon, samples)
    rho0 = np.zeros(transmon.levels**2, dtype=np.complex128)
    rho0[0] = 1.0
    rho = (s @ rho0).reshape(transmon.levels, transmon.levels, order="F")
    return float(1.0 - rho[0, 0].real)


@pytest.mark.parametrize("sign", [-1, +1])
def test_emulator_ramsey_fixes_the_virtual_z_sign(emulator: QibolabBackend, seeded_numpy,
                                                  sign: int) -> None:
    """X90 · delay τ at detuning δ · ShiftPhase(±2πδτ) · X90. With δ = qubit − drive, free
    precession is our Rz(2πδτ); ShiftPhase(−2πδτ) undoes it (P1 ≈ 1), +2πδτ doubles it."""
    f = emulator.capabilities().frames[0]
    delta_hz, tau_s = 4e6, 40e-9
    x90 = ir.Gaussian(20e-9, 5e-9, _gaussian_pi_amplitude(20e-9, 5e-9, 0.5))
    theta = sign * 2 * math.pi * delta_hz * tau_s
    prog = ir.Program((ir.ShiftFrequency(f.name, -delta_hz), ir.FramePlay(f.name, x90), ir.FrameDelay(tau_s),
                       ir.ShiftPhase(f.name, theta), ir.FramePlay(f.name, x90), ir.Acquire(0)), (f,), 300)
    counts = _run(emulator, prog, f"ramsey{sign}")
    model = emulator_transmon(emulator.platform).replace(detuning_hz=delta_hz)
    seq_samples = np.concatenate([x90.samples(DT), np.zeros(40), x90.samples(DT) * np.exp(1j * theta)])
    predicted = _open_system_p1(model, seq_samples)
    assert predicted == pytest.approx(0.90 if sign < 0 else 0.055, abs=0.02)
    assert counts["1"] / 300 == pytest.approx(predicted, abs=0.09)


@pytest.mark.slow
def test_emulator_rabi_amplitude_sweep_matches_our_model(emulator: QibolabBackend, seeded_numpy) -> None:
    """Excited population vs amplitude on the emulator against our open-system model."""
    f = emulator.capabilities().frames[0]
    model = emulator_transmon(emulator.platform)
    for k, fraction in enumerate(np.linspace(0.2, 1.6, 8)):
        prog = _pi_program(f, float(fraction), 400)
        counts = _run(emulator, prog, f"rabi{k}")
        predicted = _open_system_p1(model, prog.instructions[0].waveform.samples(DT))
        assert counts["1"] / 400 == pytest.approx(predicted, abs=0.08)


def test_backend_device_runs_env_sequences_on_the_emulator(emulator: QibolabBackend, seeded_numpy,
                                                           tmp_path: Path) -> None:
    """The envs ``Device`` seam end to end: PulseSequence → BackendDevice → emulator → counts."""
    from pulsecal.envs.protocol import Play, PulseSequence, VirtualZ
    from pulsecal.hardware.device import BackendDevice
    from pulsecal.hardware.journal import Journal

    caps = emulator.capabilities()
    limits = SafetyLimits(allowed_frames=caps.frames, max_amplitude=1.0, max_pulse_duration_s=1e-6,
                          max_program_duration_s=10e-6, max_drive_energy_s=1e-6)
    dev = BackendDevice(emulator, limits=limits, ledger=ShotLedger(None, fsync=False),
                        journal=Journal(tmp_path / "journal.jsonl"), session_id="emu")
    pi = ir.Gaussian(40e-9, 10e-9, _gaussian_pi_amplitude(40e-9, 10e-9)).samples(DT)
    counts = dev.run([PulseSequence((Play(pi),)), PulseSequence((Play(pi / 2), VirtualZ(math.pi),
                                                                 Play(pi / 2)))], shots=100)
    assert counts.shape == (2, 2) and counts.sum(axis=1).tolist() == [100, 100]
    assert counts[0, 1] >= 90 and counts[1, 1] <= 10  # X, then X/2 · Z · X/2 = identity
