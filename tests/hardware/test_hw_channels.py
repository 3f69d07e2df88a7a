"""Multi-qubit channels in the hardware layer: frames of each kind in the IR, channel
sequences compiled to one frame per channel, simultaneous readout, the envelope's limits per
channel kind, and single-qubit devices refusing channel sequences.

References written out here: the envs' channel semantics (``envs.protocol``: every channel
has its own timeline, ``VirtualZ(θ, frame=m)`` multiplies later samples of every channel at
mode m's frame by e^{+iθ}, ``Delay(channel=None)`` delays every channel).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hw_helpers import DT_S, RecordingBackend, default_caps, make_limits

from pulsecal.envs.protocol import Barrier, Delay, Measure, Play, PulseSequence, VirtualZ
from pulsecal.hardware import ir
from pulsecal.hardware.backend import Capabilities, validate_against
from pulsecal.hardware.device import BackendDevice
from pulsecal.hardware.journal import Journal
from pulsecal.hardware.ledger import ShotLedger
from pulsecal.hardware.safety import SafetyEnvelope, SafetyLimits

Q0 = ir.Frame("q0_drive", "q0_drive", 5.0e9)
Q1 = ir.Frame("q1_drive", "q1_drive", 4.8e9)
CR = ir.Frame("q0_q1_cr", "q0_drive", 4.8e9, kind="cr")
FLUX = ir.Frame("q1_flux", "q1_flux", 0.0, kind="flux")
CHANNELS = {"drive:q0": Q0, "drive:q1": Q1, "drive:q0@q1": CR, "flux:q1": FLUX}
FRAMES = (Q0, Q1, CR, FLUX)


def _two_qubit_sequence() -> PulseSequence:
    x = 0.3 * np.ones(8)
    return PulseSequence((
        Play(x + 0.1j, channel="drive:q0"),
        Play(0.2 * np.ones(4), channel="drive:q1"),
        VirtualZ(0.7, frame="q1"),
        Barrier(),
        Play(np.full(6, 0.25), channel="drive:q0@q1"),
        Delay(3e-9, channel="flux:q1"),
        Play(np.linspace(0.02, 0.1, 5), channel="flux:q1"),
        Delay(2e-9),
        Play(x, channel="drive:q1"),
        Measure(("q1", "q0")),
    ), name="cr-and-flux")


def _caps() -> Capabilities:
    return Capabilities(sample_time_s={f.port: DT_S for f in FRAMES}, frames=FRAMES, qubits=(0, 1),
                        drive_frames={0: "q0_drive", 1: "q1_drive"})


# -- frames --------------------------------------------------------------------------------


def test_frame_kinds_validate_and_keep_drive_frames_json_unchanged() -> None:
    assert Q0.to_dict() == {"name": "q0_drive", "port": "q0_drive", "frequency_hz": 5.0e9, "phase": 0.0}
    assert FLUX.to_dict()["kind"] == "flux" and CR.to_dict()["kind"] == "cr"
    for f in FRAMES:
        assert ir.Frame.from_dict(json.loads(json.dumps(f.to_dict()))) == f
    with pytest.raises(ValueError, match=r"Frame.kind='rf': allowed one of \('drive', 'cr', 'flux'\)"):
        ir.Frame("a", "a", 5e9, kind="rf")
    with pytest.raises(ValueError, match=r"Frame.frequency_hz/phase=\(1000000.0, 0.0\): allowed \(0, 0\) on a flux"):
        ir.Frame("f", "f", 1e6, kind="flux")


def test_single_qubit_program_hash_is_pinned() -> None:
    # Journals of single-qubit sessions key jobs by this hash: frames with kinds must not move
    # it. The value is the hash main computed before frames had kinds.
    seq = PulseSequence((Play(np.array([0.1, 0.2j])), VirtualZ(0.5), Delay(2e-9)), name="pin")
    p = ir.from_sequence(seq, Q0, DT_S, shots=100)
    assert p.content_hash() == "cf7458bf453db7dd9be9a7d65a4a28d2757cb4d636563fd9f7cae233d9e05ccd"


# -- compiling channel sequences -------------------------------------------------------------


def test_channel_sequence_compiles_to_one_frame_per_channel() -> None:
    p = ir.from_sequence(_two_qubit_sequence(), CHANNELS, DT_S, shots=50, acquire_duration_s=4e-9)
    assert [f.name for f in p.frames] == ["q0_drive", "q1_drive", "q0_q1_cr", "q1_flux"]
    # Measure order sets the qubits and the Acquire order (first = most significant bit).
    assert p.qubits == (1, 0)
    assert [ins.qubit for ins in p.instructions if isinstance(ins, ir.Acquire)] == [1, 0]
    # VirtualZ on q1 shifts q1's drive frame and the CR frame that plays at q1's frequency.
    shifts = [(ins.frame, ins.phase) for ins in p.instructions if isinstance(ins, ir.ShiftPhase)]
    assert shifts == [("q1_drive", 0.7), ("q0_q1_cr", 0.7)]
    q = ir.Program.from_json(p.to_json())
    assert q == p and q.content_hash() == p.content_hash()
    assert validate_against(p, _caps()) == []


def test_rendered_channels_follow_envs_timelines() -> None:
    seq = _two_qubit_sequence()
    p = ir.from_sequence(seq, CHANNELS, DT_S, shots=50, acquire_duration_s=4e-9)
    tr = ir.to_waveform_trace(p, DT_S)
    s = tr.samples
    # Written out from the envs semantics: q0 plays 8 samples from 0, q1 4 samples from 0;
    # the barrier aligns all four channels at 8; the CR tone (at q1's frame, VirtualZ 0.7)
    # plays 8..14; flux waits 3 samples then plays 11..16; Delay(None) adds 2 to all; q1's
    # second pulse (phase 0.7) starts where q1 stood (8 + 2 = 10).
    ph = np.exp(0.7j)
    np.testing.assert_allclose(s["q0_drive"][:8], 0.3 + 0.1j)
    np.testing.assert_allclose(s["q1_drive"][:4], 0.2)
    np.testing.assert_allclose(s["q0_q1_cr"][8:14], 0.25 * ph)
    np.testing.assert_allclose(s["q1_flux"][11:16], np.linspace(0.02, 0.1, 5))
    np.testing.assert_allclose(s["q1_drive"][10:18], 0.3 * ph)
    assert np.all(s["q1_flux"].imag == 0)
    # Both readouts start together, after the last channel ends (q1 at 18).
    assert tr.acquires == ((1, 18), (0, 18))
    assert tr.n_samples == 22


def test_single_acquire_timing_is_unchanged_and_a_block_ends_with_the_longest() -> None:
    one = ir.Program((ir.FramePlay("q0_drive", ir.Constant(4e-9, 0.1)), ir.Acquire(0, 6e-9)), (Q0,), 1, (0,))
    assert ir.to_waveform_trace(one, DT_S).n_samples == 10
    two = ir.Program((ir.FramePlay("q0_drive", ir.Constant(4e-9, 0.1)), ir.Acquire(0, 6e-9), ir.Acquire(1, 9e-9)),
                     (Q0,), 1, (0, 1))
    tr = ir.to_waveform_trace(two, DT_S)
    assert tr.acquires == ((0, 4), (1, 4)) and tr.n_samples == 13


@pytest.mark.parametrize(("seq", "match"), [
    (PulseSequence((Play(np.ones(2) * 0.1, channel="drive:q2"),)), r"ops\[0\].channel='drive:q2': allowed a channel of the map"),
    (PulseSequence((Play(np.ones(2) * 0.1),)), r"ops\[0\].channel=None: allowed a channel of the map"),
    (PulseSequence((Play(np.ones(2) * 0.1, channel="drive:q0"), VirtualZ(1.0))), r"ops\[1\].frame=None: allowed a mode"),
    (PulseSequence((Play(np.ones(2) * 0.1, channel="drive:q0"), Measure(("c7",)))), r"mode 'c7': allowed 'q<n>'"),
])
def test_bad_channel_sequences_name_the_field(seq: PulseSequence, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ir.from_sequence(seq, CHANNELS, DT_S)


def test_channel_map_kind_must_match_the_channel() -> None:
    with pytest.raises(ValueError, match=r"channels\['flux:q1'\].kind='drive': allowed 'flux'"):
        ir.from_sequence(_two_qubit_sequence(), {**CHANNELS, "flux:q1": ir.Frame("q1_flux", "q1_flux", 0.0)}, DT_S)


def test_flux_frames_refuse_phase_and_frequency_instructions() -> None:
    p = ir.Program((ir.ShiftPhase("q1_flux", 0.3), ir.FramePlay("q1_flux", ir.Constant(4e-9, 0.1)), ir.Acquire(1)),
                   (FLUX,), 1, (1,))
    with pytest.raises(ValueError, match=r"ShiftPhase on flux frame 'q1_flux': allowed only on drive and cr"):
        ir.to_waveform_trace(p, DT_S)


# -- the envelope per channel kind -----------------------------------------------------------


def _envelope(**changes: object) -> SafetyEnvelope:
    args: dict[str, object] = {"allowed_frames": FRAMES, "max_pulse_duration_s": 1e-6, "max_drive_energy_s": 1e-6}
    args.update(changes)
    return SafetyEnvelope(SafetyLimits(**args), _caps())  # type: ignore[arg-type]


def _one(frame: ir.Frame, samples: np.ndarray) -> ir.Program:
    return ir.Program((ir.FramePlay(frame.name, ir.Sampled(samples, DT_S)), ir.Acquire(0)), (frame,), 10, (0,))


def test_default_limits_are_per_kind_and_round_trip() -> None:
    lim = SafetyLimits(allowed_frames=FRAMES)
    assert (lim.max_amplitude, lim.max_cr_amplitude, lim.max_flux_amplitude) == (1.0, 0.5, 0.5)
    assert (lim.max_flux_slew_per_sample, lim.max_flux_energy_s) == (0.1, 1e-6)
    assert SafetyLimits.from_dict(json.loads(json.dumps(lim.to_dict()))) == lim
    with pytest.raises(ValueError, match=r"SafetyLimits.max_cr_amplitude=1.5: allowed \(0, 1\]"):
        SafetyLimits(allowed_frames=FRAMES, max_cr_amplitude=1.5)
    with pytest.raises(ValueError, match=r"SafetyLimits.max_flux_slew_per_sample=0: allowed a finite number > 0"):
        SafetyLimits(allowed_frames=FRAMES, max_flux_slew_per_sample=0)


def test_cr_amplitude_has_its_own_limit() -> None:
    env = _envelope(max_slew_per_sample=2.0)
    w = np.full(20, 0.6 + 0j)
    assert env.check(_one(Q0, w)) == []  # a drive frame may play 0.6
    v = env.check(_one(CR, w))
    assert [(x.limit, x.value, x.where) for x in v] == [("max_cr_amplitude", 0.6, "cr frame 'q0_q1_cr' sample 0")]
    assert "allowed <= 0.5" in str(v[0])


def test_flux_amplitude_slew_energy_and_realness() -> None:
    env = _envelope()
    ramp = np.concatenate([np.linspace(0.05, 0.3, 6), np.full(10, 0.3), np.linspace(0.3, 0.05, 6)])
    assert env.check(_one(FLUX, ramp + 0j)) == []
    # A step onto 0.3 from rest breaks the slew limit at the first sample (edges count).
    step = env.check(_one(FLUX, np.full(10, 0.3 + 0j)))
    assert [(x.limit, x.where) for x in step] == [("max_flux_slew_per_sample", "flux frame 'q1_flux' sample 0")]
    assert step[0].value == pytest.approx(0.3)
    high = [x.limit for x in env.check(_one(FLUX, np.concatenate([ramp, ramp + 0.25]) + 0j))]
    assert high == ["max_flux_amplitude", "max_flux_slew_per_sample"]
    long = _envelope(max_pulse_duration_s=20e-6).check(_one(FLUX, np.concatenate([ramp[:6], np.full(12000, 0.3), ramp[-6:]]) + 0j))
    assert [x.limit for x in long] == ["max_flux_energy_s"]
    assert long[0].value == pytest.approx(0.09 * 12000e-9 + 2 * float(np.sum(ramp[:6] ** 2)) * 1e-9)
    cplx = env.check(_one(FLUX, ramp * np.exp(0.1j)))
    assert [x.limit for x in cplx] == ["flux_real_samples"]
    assert cplx[0].value == pytest.approx(0.3 * math.sin(0.1))


def test_a_frame_declared_with_another_kind_is_refused() -> None:
    forged = ir.Frame("q1_flux", "q1_flux", 0.0)  # the flux line declared as a drive frame
    v = _envelope().check(_one(forged, np.full(10, 0.9 + 0j)))
    assert [(x.limit, x.value) for x in v] == [("allowed_frames.kind", "drive")]


def test_two_qubit_program_passes_the_envelope_and_the_shared_checks() -> None:
    p = ir.from_sequence(_two_qubit_sequence(), CHANNELS, DT_S, shots=50)
    assert _envelope().check(p) == []
    bad = [ir.Acquire(0), *p.instructions]
    v = validate_against(ir.Program(tuple(bad), p.frames, 50, p.qubits), _caps())
    assert [x.limit for x in v] == ["acquire"]


# -- single-qubit devices refuse channel sequences ----------------------------------------------


def test_backend_device_refuses_channel_sequences_before_anything_runs(tmp_path: Path) -> None:
    backend = RecordingBackend(default_caps())
    ledger = ShotLedger(None, fsync=False)
    journal = Journal(tmp_path / "journal.jsonl", fsync=False)
    dev = BackendDevice(backend, limits=make_limits(), ledger=ledger, journal=journal, session_id="s",
                        sleep=lambda _: None)
    ok = PulseSequence((Play(np.full(4, 0.1)),))
    multi = PulseSequence((Play(np.full(4, 0.1), channel="drive:q1"),), name="other qubit")
    with pytest.raises(ValueError, match=r"sequences\[1\] 'other qubit' addresses channels, frames, a Barrier "
                                         r"or a Measure: allowed single-qubit sequences only on this BackendDevice "
                                         r"\(qubit 0, frame 'q0_drive'\)"):
        dev.run([ok, multi], 10)
    assert backend.submitted == [] and ledger.used_shots == 0
    assert not journal.path.exists() or journal.path.read_text() == ""
    # from_sequence with one frame (what the replay device compiles with) refuses the same way.
    with pytest.raises(ValueError, match=r"names channels, frames, a Barrier or a Measure: allowed only with a "
                                         r"channel map"):
        ir.from_sequence(PulseSequence((Play(np.full(4, 0.1)), Measure(("q0",)))), Q0, DT_S)
