"""What one compilation records for a device that factors frame phases out: each driven
window's samples without frame phases (``DrivenSegment.unphased``) and the phase factor
of each drive play in it (``drive_phases``)."""

from __future__ import annotations

import numpy as np

from pulsecal.envs.multi_qubit_model import DeviceModel
from pulsecal.envs.physics.coupled import FluxTuning, Mode
from pulsecal.envs.protocol import Barrier, Measure, Play, PulseSequence, VirtualZ
from pulsecal.envs.schedule import DrivenSegment, compile_schedule

CS = DeviceModel((Mode("q0", 5e9), Mode("q1", 6e9, flux=FluxTuning(max_offset=0.3)))).channel_set()
W = np.linspace(0.1, 0.5, 8).astype(np.complex128)
M = Measure(("q0", "q1"))


def only_window(*ops: object) -> DrivenSegment:
    (seg,) = [s for s in compile_schedule(PulseSequence((*ops, M)), CS).segments if isinstance(s, DrivenSegment)]
    return seg


def test_no_phase_no_copy() -> None:
    seg = only_window(Play(W, channel="drive:q0"), Play(W / 2, channel="flux:q1"))
    assert seg.unphased is None and seg.raw_controls is seg.controls
    assert seg.drive_phases == (("drive:q0", 1.0 + 0.0j),)  # the flux play has no frame phase


def test_one_phase_over_the_window() -> None:
    seg = only_window(VirtualZ(0.3, frame="q0"), Play(W, channel="drive:q0"), Play(W[:4], channel="drive:q0"))
    z = np.exp(0.3j)
    assert [c for c, _ in seg.drive_phases] == ["drive:q0", "drive:q0"]
    assert all(f == z for _, f in seg.drive_phases)
    np.testing.assert_array_equal(seg.raw_controls["drive:q0"], np.concatenate([W, W[:4]]))
    np.testing.assert_array_equal(seg.controls["drive:q0"], np.concatenate([W, W[:4]]) * z)


def test_a_frame_change_inside_a_window_gives_two_factors() -> None:
    # Plays on one channel back to back share a window; the VirtualZ between them turns the second.
    seg = only_window(Play(W, channel="drive:q0"), VirtualZ(0.5, frame="q0"), Play(W, channel="drive:q0"))
    (c0, z0), (c1, z1) = seg.drive_phases
    assert c0 == c1 == "drive:q0" and z0 == 1.0 and z1 == np.exp(0.5j)
    np.testing.assert_array_equal(seg.raw_controls["drive:q0"], np.concatenate([W, W]))


def test_a_silent_drive_play_has_no_factor() -> None:
    seg = only_window(VirtualZ(0.2, frame="q1"), Play(np.zeros(8, dtype=np.complex128), channel="drive:q1"),
                      Play(W, channel="drive:q0"), Barrier())
    assert seg.drive_phases == (("drive:q0", 1.0 + 0.0j),)
