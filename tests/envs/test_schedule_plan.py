"""Schedule plans: one plan per structure, filled per call, the same segments as a fresh walk."""

from __future__ import annotations

import numpy as np
import pytest

from pulsecal.envs import schedule
from pulsecal.envs.multi_qubit_model import DeviceModel
from pulsecal.envs.physics.coupled import FluxTuning, Mode
from pulsecal.envs.protocol import Barrier, Measure, Play, PulseSequence, VirtualZ
from pulsecal.envs.schedule import DrivenSegment, SchedulePlan, compile_schedule, plan_schedule

CS = DeviceModel((Mode("q0", 5e9), Mode("q1", 6e9, flux=FluxTuning(max_offset=0.3)))).channel_set()


def probe(amp: float, phase: float) -> PulseSequence:
    return PulseSequence((Play(np.full(8, 0.2, dtype=np.complex128), channel="drive:q1"), Barrier(),
                          Play(np.full(12, amp, dtype=np.complex128), channel="flux:q1"), Barrier(),
                          VirtualZ(phase, frame="q1"), Play(np.full(8, 0.2, dtype=np.complex128), channel="drive:q1"),
                          Measure(("q0", "q1"))))


def test_one_plan_per_structure_and_its_fill_equals_a_fresh_walk():
    a, b = probe(0.1, 0.3), probe(0.2, -1.1)
    assert plan_schedule(a, CS) is plan_schedule(b, CS)  # same structure, other numbers
    assert plan_schedule(a, CS) is not plan_schedule(PulseSequence(a.ops[:-1]), CS)
    for seq in (a, b):
        got = plan_schedule(seq, CS).fill(seq, CS)
        fresh = SchedulePlan(seq, CS, "sequence").fill(seq, CS)
        assert len(got.segments) == len(fresh.segments) == 3
        for g, f in zip(got.segments, fresh.segments, strict=True):
            assert isinstance(g, DrivenSegment) and isinstance(f, DrivenSegment)
            assert (g.start, g.n_samples, g.drive_phases) == (f.start, f.n_samples, f.drive_phases)
            for c in f.controls:
                assert g.controls[c].tobytes() == f.controls[c].tobytes()
    last = compile_schedule(b, CS).segments[-1]
    assert isinstance(last, DrivenSegment)
    np.testing.assert_allclose(last.controls["drive:q1"], 0.2 * np.exp(-1.1j))


def test_a_planned_structure_still_checks_the_samples_on_fill():
    schedule._PLANS.clear()
    compile_schedule(probe(0.1, 0.0), CS)
    with pytest.raises(ValueError, match=r"seq\.ops\[2\]\.waveform\[0\] = 0\.5 on 'flux:q1' is out of range"):
        compile_schedule(probe(0.5, 0.0), CS, where="seq")
