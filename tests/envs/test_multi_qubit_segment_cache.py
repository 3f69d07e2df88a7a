"""The device's segment cache: every segment propagator built once per truth and content,
then moved to its start time and frame phase by a diagonal Q·P·Q†, must give what the
engine gives on the segment as it is (the unfactored path, ``_propagate_segments`` without
operators)."""

from __future__ import annotations

import numpy as np
import pytest

import pulsecal.envs.multi_qubit_device as mqd
from pulsecal.envs import cz_calibration_core as cz
from pulsecal.envs.drift import RandomWalk
from pulsecal.envs.multi_qubit_drift import ModeDrift, MultiQubitDrift
from pulsecal.envs.multi_qubit_presets import get_multi_qubit_preset, make_multi_qubit_device
from pulsecal.envs.protocol import Barrier, Delay, Measure, Play, PulseSequence, VirtualZ

W = 0.3 * np.exp(1j * np.linspace(0.0, 1.0, 20))
BOTH = Measure(("q0", "q1"))


def _sequences(flux: bool) -> list[PulseSequence]:
    seqs = [
        # frame changes between plays, a delay, the same pulse at several times and phases
        PulseSequence((Play(W, channel="drive:q0"), VirtualZ(0.7, frame="q0"), Play(W, channel="drive:q0"),
                       Delay(33e-9), VirtualZ(-0.2, frame="q1"), Play(W, channel="drive:q1"), Barrier(),
                       VirtualZ(1.1, frame="q0"), Play(0.5 * W, channel="drive:q0"), BOTH)),
        # a frame change inside one window of one channel: propagated as it is
        PulseSequence((Play(W, channel="drive:q1"), VirtualZ(0.4, frame="q1"), Play(W, channel="drive:q1"), BOTH)),
    ]
    if flux:
        seqs += cz.probe_sequences(cz.CZPulse(), np.array([0.2, 40e-9, 0.3, -0.5]), 3)[3:5]
    else:  # cross-resonance and its cancellation tone share q1's frame
        cr = np.full(40, 0.3 + 0j)
        seqs.append(PulseSequence((Play(W, channel="drive:q0"), Barrier(), VirtualZ(0.9, frame="q1"),
                                   Play(cr, channel="drive:q0@q1"), Play(-0.1j * cr, channel="drive:q1"),
                                   Barrier(), VirtualZ(-0.3, frame="q1"), Play(cr, channel="drive:q0@q1"), BOTH)))
    return seqs


def _unfactored(dev: mqd.SimulatedMultiQubitDevice, seq: PulseSequence) -> np.ndarray:
    sched = dev._schedule(seq, "sequence")
    _, om = dev._subsystem(sched)
    rho = mqd._propagate_segments(om, dev._initial_state(om)[None], sched.segments, dev.open_system)
    return np.real(np.diagonal(rho[0]))


@pytest.mark.parametrize("preset", ["two_transmons_cz", "two_transmons_cr"])
@pytest.mark.parametrize("open_system", [False, True])
def test_cached_segments_match_the_engine_on_each_segment(preset, open_system):
    dev = make_multi_qubit_device(preset, np.random.default_rng(1), open_system=open_system)
    for seq in _sequences(preset == "two_transmons_cz"):
        sched = dev._schedule(seq, "sequence")
        got = dev._populations(sched, seq)[2][0]
        want = _unfactored(dev, seq)
        assert np.max(np.abs(got - want)) < 1e-12
        _, op = dev.schedule_propagator(seq)
        _, om = dev._subsystem(sched)
        acc = np.eye(op.shape[0], dtype=np.complex128)
        for seg in sched.segments:
            acc = mqd._segment_operator(om, seg, open_system)[0] @ acc
        assert np.max(np.abs(op - acc)) < 1e-11


def test_a_pulse_is_propagated_once_per_truth_at_any_time_or_phase(monkeypatch):
    drift = MultiQubitDrift({"q0": ModeDrift(frequency_hz=RandomWalk(sigma_per_sqrt_hour=1e6))})
    dev = mqd.SimulatedMultiQubitDevice(get_multi_qubit_preset("two_transmons_cz").params, drift,
                                        rng=np.random.default_rng(0), open_system=False)
    calls: list[int] = []
    real = mqd.propagate.unitaries
    monkeypatch.setattr(mqd.propagate, "unitaries", lambda *a, **k: calls.append(1) or real(*a, **k))
    # (plays on one channel back to back share a window: the delays keep them apart)
    seqs = [PulseSequence((*[Play(W, channel="drive:q0"), VirtualZ(0.1 * k, frame="q0"),
                             Delay(3e-9, channel="drive:q0")] * (k + 1), BOTH)) for k in range(4)]
    dev.outcome_probabilities(seqs)
    assert len(calls) == 1  # one content, four start times and four frame phases
    dev.advance(60.0)  # the truth drifts: built again
    dev.outcome_probabilities([PulseSequence((Play(W, channel="drive:q0"), Delay(8e-9), BOTH))])
    assert len(calls) == 2
