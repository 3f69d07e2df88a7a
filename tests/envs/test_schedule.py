"""Schedules: per-channel timelines (OpenPulse semantics), frames, segments, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from pulsecal.envs.multi_qubit_model import DeviceModel
from pulsecal.envs.physics.coupled import CoupledModel, Coupling, FluxTuning, Mode
from pulsecal.envs.protocol import Barrier, Delay, Measure, Play, PulseSequence, VirtualZ
from pulsecal.envs.schedule import DrivenSegment, IdleSegment, compile_schedule


@pytest.fixture(scope="module")
def channels():
    model = CoupledModel(
        (Mode("q0", 5.0e9), Mode("q1", 6.0e9, flux=FluxTuning(max_offset=0.3)),
         Mode("c01", 7.0e9, kind="coupler", rabi_max_hz=None, flux=FluxTuning())),
        (Coupling("q0", "q1", 5e6), Coupling("q0", "c01", 50e6), Coupling("q1", "c01", 50e6)),
    )
    return DeviceModel.from_coupled(model).channel_set()


def channels_of_pair():
    return DeviceModel((Mode("q0", 5e9), Mode("q1", 6e9, flux=FluxTuning(max_offset=0.3)))).channel_set()


def ones(n, x=0.1):
    return np.full(n, x, dtype=np.complex128)


def test_channels_run_in_parallel_until_a_barrier(channels):
    seq = PulseSequence((
        Play(ones(10), channel="drive:q0"),
        Play(ones(4, 0.2), channel="drive:q1"),  # starts at 0, beside q0's pulse
        Barrier(("drive:q0", "drive:q1")),
        Play(ones(3, 0.3), channel="drive:q1"),  # starts at 10, when q0's pulse ends
    ))
    s = compile_schedule(seq, channels)
    assert s.n_samples == 13
    (seg,) = s.segments  # drive:q1 already plays in the window its last pulse touches
    assert isinstance(seg, DrivenSegment) and (seg.start, seg.n_samples) == (0, 13)
    np.testing.assert_allclose(seg.controls["drive:q1"], [0.2] * 4 + [0.0] * 6 + [0.3] * 3)
    np.testing.assert_allclose(seg.controls["drive:q0"], [0.1] * 10 + [0.0] * 3)


def test_a_touching_play_on_another_channel_opens_a_window():
    seq = PulseSequence((Play(ones(4), channel="drive:q0"), Barrier(), Play(ones(3), channel="drive:q0@q1")))
    first, second = compile_schedule(seq, channels_of_pair()).segments
    assert (first.start, first.n_samples, set(first.controls)) == (0, 4, {"drive:q0"})
    assert (second.start, second.n_samples, set(second.controls)) == (4, 3, {"drive:q0@q1"})


def test_touching_flux_plays_share_a_window():
    # The flux line's distortion runs from rest at a window's start: a flux pulse that goes
    # on from another must stay in its window.
    cs = channels_of_pair()
    seq = PulseSequence((Play(np.full(3, 0.1), channel="flux:q1"), Play(np.full(2, 0.2), channel="flux:q1"),
                         Barrier(), Play(ones(2), channel="drive:q0")))
    segs = compile_schedule(seq, cs).segments
    assert [(g.start, g.n_samples) for g in segs] == [(0, 5), (5, 2)]
    np.testing.assert_allclose(segs[0].controls["flux:q1"], [0.1] * 3 + [0.2] * 2)


def test_delay_on_one_channel_and_on_all(channels):
    seq = PulseSequence((
        Play(ones(5), channel="drive:q0"),
        Delay(3e-9, channel="drive:q1"),
        Play(ones(2), channel="drive:q1"),  # starts at 3 (its own delay), overlaps q0's pulse
        Delay(20e-9),  # aligns everything at 5, then all idle 20 samples
        Play(ones(2), channel="drive:q1"),
    ))
    s = compile_schedule(seq, channels)
    kinds = [(type(g).__name__, g.start, g.n_samples) for g in s.segments]
    assert kinds == [("DrivenSegment", 0, 5), ("IdleSegment", 5, 20), ("DrivenSegment", 25, 2)]
    np.testing.assert_allclose(s.segments[0].controls["drive:q1"], [0, 0, 0, 0.1, 0.1])
    idle = s.segments[1]
    assert isinstance(idle, IdleSegment) and idle.duration_s == pytest.approx(20e-9)
    assert s.segments[2].t0_s == pytest.approx(25e-9)  # absolute time: the frames' clock


def test_barrier_without_channels_aligns_all_and_trailing_delay_is_idle(channels):
    seq = PulseSequence((
        Play(ones(7), channel="drive:q0"),
        Barrier(),
        Play(np.full(2, 0.2), channel="flux:q1"),
        Delay(1e-6, channel="drive:q1"),  # from 7 (the barrier), not after the flux pulse
        Measure(("q1",)),
    ))
    s = compile_schedule(seq, channels)
    assert [(g.start, g.n_samples) for g in s.segments] == [(0, 7), (7, 2), (9, 998)]
    assert s.segments[1].controls["flux:q1"].dtype == np.float64
    np.testing.assert_allclose(s.segments[1].controls["flux:q1"], [0.2, 0.2])
    assert s.measured == ("q1",) and s.played == ("drive:q0", "flux:q1")


def test_virtual_z_shifts_every_channel_at_its_frame_and_aligns_them(channels):
    seq = PulseSequence((
        Play(ones(6), channel="drive:q1"),
        VirtualZ(0.7, frame="q1"),
        Play(ones(2), channel="drive:q0@q1"),  # CR at q1's frame: after q1's pulse, phase-shifted
        Play(ones(2), channel="drive:q0"),  # q0's own frame: unshifted, starts at 0
    ))
    s = compile_schedule(seq, channels)
    first, second = s.segments
    assert (second.start, set(second.controls)) == (6, {"drive:q0@q1"})  # after q1's pulse
    np.testing.assert_allclose(second.controls["drive:q0@q1"], 0.1 * np.exp(0.7j))
    np.testing.assert_allclose(first.controls["drive:q0"], [0.1, 0.1, 0, 0, 0, 0])


def test_without_measure_every_qubit_is_measured_and_couplers_are_not(channels):
    s = compile_schedule(PulseSequence((Play(ones(1), channel="drive:q0"),)), channels)
    assert s.measured == ("q0", "q1")


def test_single_qubit_sequences_run_on_a_one_qubit_device():
    one = DeviceModel((Mode("q0", 5e9),)).channel_set()
    s = compile_schedule(PulseSequence((Play(ones(3)), VirtualZ(0.5), Play(ones(2)), Delay(4e-9))), one)
    seg = s.segments[0]
    np.testing.assert_allclose(seg.controls["drive:q0"], [0.1] * 3 + [0.1 * np.exp(0.5j)] * 2)
    assert s.measured == ("q0",) and s.n_samples == 9


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        ((Play(ones(2), channel="drive:q7"),), r"ops\[0\]\.channel='drive:q7' is not a channel"),
        ((Play(ones(2), channel="flux:q0"),), r"ops\[0\]\.channel='flux:q0' is not a channel"),
        ((Delay(1e-9), Play(np.full(3, 0.31), channel="flux:q1")), r"ops\[1\]\.waveform\[0\] = 0\.31.*max_offset"),
        ((Play(ones(2)),), r"ops\[0\]\.channel=None: allowed a channel name"),
        ((VirtualZ(0.1),), r"ops\[0\]\.frame=None"),
        ((VirtualZ(0.1, frame="q9"),), r"ops\[0\]\.frame='q9' is not a mode"),
        ((Barrier(("drive:q3",)),), r"ops\[0\]\.channels='drive:q3'"),
        ((Delay(1e-9, channel="coupler:q0"),), r"ops\[0\]\.channel='coupler:q0'"),
        ((Measure(("c01",)),), r"ops\[0\]\.qubits: 'c01' is not a qubit"),
    ],
)
def test_bad_operations_name_the_op_and_field(channels, ops, message):
    with pytest.raises(ValueError, match=message):
        compile_schedule(PulseSequence(ops), channels, where="seq")


def test_complex_flux_samples_are_refused():
    with pytest.raises(ValueError, match="complex samples"):
        Play(np.full(2, 0.1 + 0.1j), channel="flux:q1")
