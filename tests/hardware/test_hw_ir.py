"""IR: validation, JSON round trip, stable hashing, and the renderer against closed forms.

The reference for sequence → IR → trace is the envs convention written out directly
(``ir.sequence_trace``: cumulative VirtualZ phases multiply later samples by e^{+iθ},
Delays are zeros); the Drag reference is the envs' own ``DragPulse``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hw_helpers import DRIVE, DT_S

from pulsecal.envs.protocol import Delay as SeqDelay
from pulsecal.envs.protocol import Play as SeqPlay
from pulsecal.envs.protocol import PulseSequence, VirtualZ
from pulsecal.envs.pulses import DragPulse
from pulsecal.hardware import ir


def _program() -> ir.Program:
    ro = ir.Frame("q0_ro", "q0_ro", 7.1e9, 0.25)
    ins = (
        ir.FramePlay("q0_drive", ir.Drag(20e-9, 5e-9, 0.4, 0.3e-9, angle=0.1, zero_at_edges=True)),
        ir.ShiftPhase("q0_drive", 1.25),
        ir.FramePlay("q0_drive", ir.Gaussian(16e-9, 4e-9, -0.3)),
        ir.FrameDelay(8e-9, ("q0_drive",)),
        ir.ShiftFrequency("q0_drive", 1e6),
        ir.FramePlay("q0_drive", ir.Constant(4e-9, 0.2, angle=-0.5)),
        ir.SetFrequency("q0_drive", 5.0e9),
        ir.SetPhase("q0_drive", 0.0),
        ir.FramePlay("q0_drive", ir.Sampled(np.array([0.1, 0.2j, -0.1 + 0.05j]), DT_S)),
        ir.FrameBarrier(),
        ir.FramePlay("q0_ro", ir.Constant(10e-9, 0.1)),
        ir.Acquire(0, 100e-9),
    )
    return ir.Program(ins, (DRIVE, ro), shots=1000, qubits=(0,), name="demo")


def _random_sequence(rng: np.random.Generator) -> PulseSequence:
    ops: list[SeqPlay | VirtualZ | SeqDelay] = []
    for _ in range(int(rng.integers(1, 8))):
        kind = rng.integers(3)
        if kind == 0:
            n = int(rng.integers(1, 40))
            w = rng.normal(size=n) + 1j * rng.normal(size=n)
            ops.append(SeqPlay(w / max(1.0, float(np.abs(w).max()))))
        elif kind == 1:
            ops.append(VirtualZ(float(rng.uniform(-10, 10))))
        else:
            ops.append(SeqDelay(int(rng.integers(0, 30)) * DT_S))
    return PulseSequence(tuple(ops), name="random")


def test_json_round_trip_and_equality() -> None:
    p = _program()
    q = ir.Program.from_json(p.to_json())
    assert q == p
    assert q.to_json() == p.to_json()
    assert q.content_hash() == p.content_hash()
    # Plain JSON, no NaN tokens, no pickle: a fresh json parser reads it.
    assert json.loads(p.to_json())["format"] == "pulsecal.ir/1"


def test_hash_is_content_addressed() -> None:
    p = _program()
    assert p.content_hash() == _program().content_hash()
    assert len(p.content_hash()) == 64
    assert p.with_shots(1001).content_hash() != p.content_hash()
    changed = ir.Program((*p.instructions[:-1], ir.Acquire(0, 101e-9)), p.frames, p.shots)
    assert changed.content_hash() != p.content_hash()
    # Pin the canonical form: a silent change of the JSON would change every job key.
    tiny = ir.Program((ir.FramePlay("q0_drive", ir.Sampled(np.array([0.5]), 1e-9)), ir.Acquire(0)),
                   (ir.Frame("q0_drive", "q0_drive", 0.0),), shots=1)
    assert tiny.to_json() == (
        '{"format":"pulsecal.ir/1","frames":[{"frequency_hz":0.0,"name":"q0_drive","phase":0.0,'
        '"port":"q0_drive"}],"instructions":[{"frame":"q0_drive","op":"play","waveform":'
        '{"dt_s":1e-09,"im":[0.0],"kind":"sampled","re":[0.5]}},{"duration_s":0.0,"op":"acquire",'
        '"qubit":0}],"name":"","qubits":[0],"shots":1}'
    )
    assert tiny.content_hash() == "fb68fc513958706e7861af5bf88144c3583439b131396790507c75d9e4ca4d51"


@pytest.mark.parametrize(
    ("make", "field", "allowed"),
    [
        (lambda: ir.Gaussian(float("nan"), 1e-9, 0.1), "Gaussian.duration_s", "finite"),
        (lambda: ir.Gaussian(-1e-9, 1e-9, 0.1), "Gaussian.duration_s", "> 0"),
        (lambda: ir.Drag(20e-9, 5e-9, 0.1, float("inf")), "Drag.beta_s", "finite"),
        (lambda: ir.Constant(4e-9, True), "Constant.amplitude", "real number"),
        (lambda: ir.Sampled(np.array([1.0, np.nan]), 1e-9), "Sampled.samples", "finite"),
        (lambda: ir.Sampled(np.array([]), 1e-9), "Sampled.samples", "at least one"),
        (lambda: ir.FrameDelay(-1.0), "FrameDelay.duration_s", ">= 0"),
        (lambda: ir.Frame("", "p", 1.0), "Frame.name", "non-empty"),
        (lambda: ir.Program((ir.FramePlay("nope", ir.Constant(1e-9, 0.1)),), (DRIVE,), 1), "frame", "declared"),
        (lambda: ir.Program((), (DRIVE,), 0), "Program.shots", ">= 1"),
        (lambda: ir.Program((), (DRIVE, DRIVE), 1), "Program.frames", "unique"),
    ],
)
def test_validation_names_field_value_and_range(make, field: str, allowed: str) -> None:
    with pytest.raises(ValueError, match=field) as e:
        make()
    assert "allowed" in str(e.value) and allowed in str(e.value)


def test_unknown_kinds_are_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="kind='square'"):
        ir.Program.from_dict({**_program().to_dict(), "instructions": [
            {"op": "play", "frame": "q0_drive", "waveform": {"kind": "square"}}]})
    with pytest.raises(ValueError, match="op='eval'"):
        ir.Program.from_dict({**_program().to_dict(), "instructions": [{"op": "eval"}]})


def test_sequence_to_ir_to_trace_equals_original_waveforms() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        seq = _random_sequence(rng)
        prog = ir.from_sequence(seq, DRIVE, DT_S, shots=10)
        trace = ir.to_waveform_trace(prog, DT_S)
        expected = ir.sequence_trace(seq, DT_S)
        got = trace.samples[DRIVE.name]
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
        assert trace.acquires == ((0, expected.size),)


def test_virtual_z_is_a_positive_shift_phase() -> None:
    w = np.full(4, 0.5 + 0j)
    seq = PulseSequence((SeqPlay(w), VirtualZ(0.3), SeqPlay(w), VirtualZ(-1.0), SeqPlay(w)))
    prog = ir.from_sequence(seq, DRIVE, DT_S)
    shifts = [ins for ins in prog.instructions if isinstance(ins, ir.ShiftPhase)]
    assert [s.phase for s in shifts] == [0.3, -1.0]
    s = ir.to_waveform_trace(prog, DT_S).samples[DRIVE.name]
    np.testing.assert_allclose(s[4:8], 0.5 * np.exp(0.3j), atol=1e-15)
    np.testing.assert_allclose(s[8:], 0.5 * np.exp(-0.7j), atol=1e-15)


def test_trace_to_sequence_round_trip_runs_the_same_samples() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        seq = _random_sequence(rng)
        samples = ir.sequence_trace(seq, DT_S)
        back = ir.trace_to_sequence(samples, DT_S)
        np.testing.assert_array_equal(ir.sequence_trace(back, DT_S), samples)


def test_drag_matches_envs_drag_pulse() -> None:
    ref = DragPulse(amplitude=0.7, duration_s=24e-9, beta_s=0.27e-9, phase=0.4).waveform(DT_S)
    ours = ir.Drag(24e-9, 6e-9, 0.7, 0.27e-9, angle=0.4, zero_at_edges=True).samples(DT_S)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-14)


def test_frequency_tracking_matches_envs_detuning_convention() -> None:
    # envs: a pulse with detuning Δ is u·e^{−i2πΔ(t − T/2)} (mid-point samples). A frame
    # moved by Δ at t = 0 gives u·e^{−i2πΔt}: the same up to the constant e^{−i2πΔT/2}.
    delta, dur = 3e6, 24e-9
    ref = DragPulse(amplitude=0.5, duration_s=dur, beta_s=0.2e-9, detuning_hz=delta).waveform(DT_S)
    prog = ir.Program((ir.ShiftFrequency("q0_drive", delta),
                    ir.FramePlay("q0_drive", ir.Drag(dur, dur / 4, 0.5, 0.2e-9, zero_at_edges=True)),
                    ir.Acquire(0)), (DRIVE,), 1)
    got = ir.to_waveform_trace(prog, DT_S).samples[DRIVE.name]
    np.testing.assert_allclose(got, ref * np.exp(-1j * math.pi * delta * dur), atol=1e-13)


def test_frequency_phase_is_continuous_and_set_phase_is_absolute() -> None:
    delta = 5e6
    c = ir.Constant(4e-9, 0.5)
    prog = ir.Program((ir.ShiftFrequency("q0_drive", delta), ir.FrameDelay(10e-9), ir.FramePlay("q0_drive", c),
                    ir.SetFrequency("q0_drive", DRIVE.frequency_hz), ir.FramePlay("q0_drive", c),
                    ir.SetPhase("q0_drive", 0.2), ir.FramePlay("q0_drive", c), ir.Acquire(0)), (DRIVE,), 1)
    s = ir.to_waveform_trace(prog, DT_S).samples[DRIVE.name]
    t_mid = (np.arange(10, 14) + 0.5) * DT_S
    np.testing.assert_allclose(s[10:14], 0.5 * np.exp(-2j * math.pi * delta * t_mid), atol=1e-14)
    # Back on the reference frequency, the phase accumulated up to t = 14 ns stays.
    np.testing.assert_allclose(s[14:18], 0.5 * np.exp(-2j * math.pi * delta * 14e-9), atol=1e-14)
    np.testing.assert_allclose(s[18:22], 0.5 * np.exp(0.2j), atol=1e-14)


def test_resample_preserves_area_and_is_identity_on_the_same_grid() -> None:
    rng = np.random.default_rng(1)
    w = rng.normal(size=37) + 1j * rng.normal(size=37)
    np.testing.assert_array_equal(ir.resample(w, 1e-9, 1e-9), w)
    for dst in (0.5e-9, 0.8e-9, 1.25e-9, 4e-9 / 3):
        r = ir.resample(w, 1e-9, dst)
        assert r.size == math.ceil(37e-9 / dst - 1e-6)
        assert abs(r.sum() * dst - w.sum() * 1e-9) < 1e-20
    prog = ir.Program((ir.FramePlay("q0_drive", ir.Sampled(w / 10, 0.5e-9)), ir.Acquire(0)), (DRIVE,), 1)
    assert ir.to_waveform_trace(prog, DT_S).n_samples == 19


def test_granularity_and_minimum_length_pad_with_zeros() -> None:
    prog = ir.Program((ir.FramePlay("q0_drive", ir.Constant(5e-9, 0.1)), ir.FrameDelay(3e-9),
                    ir.FramePlay("q0_drive", ir.Constant(1e-9, 0.2)), ir.Acquire(0)), (DRIVE,), 1)
    t = ir.to_waveform_trace(prog, DT_S, granularity=4, min_samples=8)
    s = t.samples[DRIVE.name]
    assert [(p.start, p.stop) for p in t.plays] == [(0, 8), (12, 20)]
    np.testing.assert_array_equal(s[:5], 0.1)
    np.testing.assert_array_equal(s[5:12], 0)
    assert s[12] == 0.2 and not np.any(s[13:20])


def test_off_grid_parametric_and_overlong_programs_are_refused() -> None:
    prog = ir.Program((ir.FramePlay("q0_drive", ir.Constant(2.5e-9, 0.1)), ir.Acquire(0)), (DRIVE,), 1)
    with pytest.raises(ValueError, match="whole number"):
        ir.to_waveform_trace(prog, DT_S)
    long = ir.Program((ir.FrameDelay(1e30), ir.Acquire(0)), (DRIVE,), 1)
    with pytest.raises(ir.ProgramTooLong):
        ir.to_waveform_trace(long, DT_S)


def test_barrier_aligns_frames() -> None:
    ro = ir.Frame("q0_ro", "q0_ro", 7e9)
    prog = ir.Program((ir.FramePlay("q0_drive", ir.Constant(6e-9, 0.1)), ir.FrameBarrier(),
                    ir.FramePlay("q0_ro", ir.Constant(2e-9, 0.3)), ir.Acquire(0)), (DRIVE, ro), 1)
    t = ir.to_waveform_trace(prog, DT_S)
    assert t.plays[1].start == 6 and t.n_samples == 8 and t.acquires == ((0, 8),)
