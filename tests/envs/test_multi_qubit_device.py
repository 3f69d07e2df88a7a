"""The simulated multi-qubit device: counts, channels, frames, readout, drift, spectators,
presets and bad input. The reference engine is slow: short pulses, two transmons, small
batches."""

from __future__ import annotations

import numpy as np
import pytest

from pulsecal.envs.coupling_map import CouplingMap
from pulsecal.envs.device import DeviceParams, SimulatedDevice
from pulsecal.envs.drift import RandomWalk, Telegraph
from pulsecal.envs.multi_qubit_device import MultiQubitParams, SimulatedMultiQubitDevice
from pulsecal.envs.multi_qubit_drift import ModeDrift, MultiQubitDrift
from pulsecal.envs.multi_qubit_model import DeviceModel
from pulsecal.envs.multi_qubit_presets import (
    MultiQubitSampler,
    get_multi_qubit_preset,
    held_out_multi_qubit_devices,
    make_multi_qubit_device,
    multi_qubit_preset_names,
)
from pulsecal.envs.physics import Transmon
from pulsecal.envs.physics.coupled import CoupledModel, Coupling, Mode
from pulsecal.envs.physics.coupled.controls import as_operator_model
from pulsecal.envs.physics.coupled.model import thermal_state
from pulsecal.envs.protocol import Barrier, Delay, Measure, Play, PulseSequence, VirtualZ
from pulsecal.envs.readout import QubitReadout, Readout

# A π pulse at Ω = 50 MHz: area Ω·u·T = 50e6 · 0.5 · 20e-9 = 1/2 turn.
PI = np.full(20, 0.5, dtype=np.complex128)


def quiet_pair(**readout):
    """Two far-detuned, weakly coupled, long-lived transmons: π pulses are near perfect."""
    model = CoupledModel(
        (Mode("q0", 5.0e9, -330e6, t1_s=1e-3, t2_s=1e-3, rabi_max_hz=50e6),
         Mode("q1", 5.4e9, -330e6, t1_s=1e-3, t2_s=1e-3, rabi_max_hz=50e6)),
        (Coupling("q0", "q1", 0.5e6),),
    )
    return MultiQubitParams(model, Readout(readout) if readout else Readout())


def test_pi_pulses_on_each_qubit_give_the_expected_counts():
    dev = SimulatedMultiQubitDevice(quiet_pair(), rng=np.random.default_rng(0))
    seqs = [
        PulseSequence(()),
        PulseSequence((Play(PI, channel="drive:q0"),)),
        PulseSequence((Play(PI, channel="drive:q1"),)),
        # one after the other: two frames playing at once cost the reference engine substeps
        PulseSequence((Play(PI, channel="drive:q0"), Barrier(), Play(PI, channel="drive:q1"))),
    ]
    counts = dev.run(seqs, 1000)
    assert counts.shape == (4, 4) and counts.dtype == np.int64
    np.testing.assert_array_equal(counts.sum(axis=1), 1000)
    # outcome index = 2·bit(q0) + bit(q1); square pulses leak a little (α/Ω ≈ 7)
    np.testing.assert_array_equal(np.argmax(counts, axis=1), [0b00, 0b10, 0b01, 0b11])
    p = dev.outcome_probabilities(seqs)
    assert np.all(p[[0, 1, 2, 3], [0b00, 0b10, 0b01, 0b11]] > 0.98)


def test_one_qubit_is_the_single_qubit_device():
    # One mode with its frame on resonance is the single-transmon model at zero detuning:
    # the same probabilities through Play, VirtualZ and an exact idle Delay, (n0, n1) columns.
    t = Transmon(anharmonicity_hz=-300e6, rabi_max_hz=100e6, t1_s=20e-6, t2_s=15e-6)
    single = SimulatedDevice(DeviceParams(transmon=t), rng=np.random.default_rng(0))
    multi = SimulatedMultiQubitDevice(
        MultiQubitParams(CoupledModel((Mode("q0", 5e9, -300e6, t1_s=20e-6, t2_s=15e-6, rabi_max_hz=100e6),))),
        rng=np.random.default_rng(0))
    w = 0.25 * np.sin(np.linspace(0, np.pi, 20)) ** 2 * np.exp(0.3j)
    seqs = [PulseSequence((Play(w), VirtualZ(1.1), Play(w), Delay(2e-6), Play(w)))]
    p1 = single.excited_probabilities(seqs)
    p = multi.outcome_probabilities(seqs)
    assert p.shape == (1, 2)
    np.testing.assert_allclose(p[:, 1], p1, atol=1e-9)
    assert multi.run(seqs, 10).shape == (1, 2)


def test_measure_selects_the_columns():
    dev = SimulatedMultiQubitDevice(quiet_pair(), rng=np.random.default_rng(0))
    x1 = Play(PI, channel="drive:q1")
    p = dev.outcome_probabilities([PulseSequence((x1, Measure(("q1",)))), PulseSequence((x1, Measure(("q0",))))])
    assert p.shape == (2, 2)
    assert p[0, 1] > 0.98 and p[1, 0] > 0.98
    rev = dev.outcome_probabilities([PulseSequence((x1, Measure(("q1", "q0"))))])
    assert rev[0, 0b10] > 0.98  # q1 listed first: the most significant bit
    with pytest.raises(ValueError, match="same number of measured qubits"):
        dev.outcome_probabilities([PulseSequence((x1,)), PulseSequence((x1, Measure(("q0",))))])


def test_assignment_matrix_shapes_the_counts():
    dev = SimulatedMultiQubitDevice(quiet_pair(q0=QubitReadout.two_state(0.1, 0.0)), rng=np.random.default_rng(0))
    p = dev.outcome_probabilities([PulseSequence((Delay(1e-9), Measure(("q0",))))])
    np.testing.assert_allclose(p[0], [0.9, 0.1], atol=1e-9)


def test_three_state_readout_tells_level_two_apart():
    # π on 0–1, then π on 1–2: the 1–2 transition sits α below the frame, so its drive
    # turns as e^{−i2παt} with t the sequence's clock (matrix element √2: amplitude / √2).
    alpha = -150e6
    model = CoupledModel((Mode("q0", 5e9, alpha, t1_s=1e-3, t2_s=1e-3, rabi_max_hz=20e6),))
    n = 50
    t = (np.arange(n) + 0.5 + n) * 1e-9
    seq = PulseSequence((Play(np.full(n, 0.5)), Play(0.5 / np.sqrt(2) * np.exp(-2j * np.pi * alpha * t))))
    three = SimulatedMultiQubitDevice(MultiQubitParams(model, Readout(three_state=True)), rng=np.random.default_rng(0))
    two = SimulatedMultiQubitDevice(MultiQubitParams(model), rng=np.random.default_rng(0))
    p3 = three.outcome_probabilities([seq])
    assert p3.shape == (1, 3) and p3[0, 2] > 0.98
    np.testing.assert_allclose(two.outcome_probabilities([seq])[0], [p3[0, 0], p3[0, 1] + p3[0, 2]], atol=1e-12)
    assert three.run([seq, seq], 100).shape == (2, 3)


def test_cross_resonance_flips_the_target_conditionally():
    dev = make_multi_qubit_device("two_transmons_cr", np.random.default_rng(0), open_system=False)
    cr = Play(np.full(250, 0.5, dtype=np.complex128), channel="drive:q0@q1")
    names, u = dev.schedule_propagator(PulseSequence((cr,)))
    assert names == ("q0", "q1")
    idx = lambda a, b: 3 * a + b  # noqa: E731
    flip_c0 = abs(u[idx(0, 1), idx(0, 0)]) ** 2 + abs(u[idx(1, 1), idx(0, 0)]) ** 2
    flip_c1 = abs(u[idx(1, 1), idx(1, 0)]) ** 2 + abs(u[idx(0, 1), idx(1, 0)]) ** 2
    assert flip_c1 - flip_c0 > 0.5  # the ZX term: the target turns only with the control excited


def test_flux_pulse_to_the_11_02_crossing_is_a_cz():
    dev = make_multi_qubit_device("two_transmons_cz", np.random.default_rng(0), open_system=False)
    model = dev.current_model()
    q0, q1 = model.mode("q0"), model.mode("q1")
    grid = np.linspace(0.0, 0.3, 30001)
    phi = grid[np.argmin(np.abs(q1.frequency_at(grid) - (q0.frequency_hz - q1.anharmonicity_hz)))]
    assert 0.1 < phi < 0.3  # the crossing is within the flux line's max_offset
    n = round(1.0 / (2 * np.sqrt(2) * 8e6) / 1e-9)  # one full |11⟩ -> |02⟩ -> |11⟩ oscillation
    _, u = dev.schedule_propagator(PulseSequence((Play(np.full(n, phi), channel="flux:q1"),)))
    i00, i01, i10, i11 = 0, 1, 3, 4
    assert abs(u[i11, i11]) ** 2 > 0.99
    cphase = np.angle(u[i11, i11] * u[i00, i00] / (u[i01, i01] * u[i10, i10]))
    assert abs(abs(cphase) - np.pi) < 0.05


def test_virtual_z_on_the_target_frame_shifts_a_later_cr_pulse():
    # VirtualZ(π) on q1's frame turns the CR drive u into −u: the same as playing −u.
    dev = make_multi_qubit_device("two_transmons_cr", np.random.default_rng(0), open_system=False)
    w = np.full(30, 0.4, dtype=np.complex128)
    x0 = Play(PI, channel="drive:q0")
    shifted = PulseSequence((x0, Barrier(), VirtualZ(np.pi, frame="q1"), Play(w, channel="drive:q0@q1")))
    negated = PulseSequence((x0, Barrier(), Play(-w, channel="drive:q0@q1")))
    plain = PulseSequence((x0, Barrier(), Play(w, channel="drive:q0@q1")))
    _, a = dev.schedule_propagator(shifted)
    _, b = dev.schedule_propagator(negated)
    _, c = dev.schedule_propagator(plain)
    np.testing.assert_allclose(a, b, atol=1e-10)
    assert np.max(np.abs(a - c)) > 0.1
    # a frame change on q0 does not touch the CR channel (it plays at q1's frame)
    _, d = dev.schedule_propagator(PulseSequence((x0, VirtualZ(np.pi, frame="q0"), Barrier(),
                                                  Play(w, channel="drive:q0@q1"))))
    np.testing.assert_allclose(d, c, atol=1e-10)


def test_delay_on_one_channel_delays_that_channel_only():
    dev = SimulatedMultiQubitDevice(quiet_pair(), rng=np.random.default_rng(0), open_system=False)
    x0, x1 = Play(PI, channel="drive:q0"), Play(PI, channel="drive:q1")
    _, parallel = dev.schedule_propagator(PulseSequence((x0, x1)))
    _, delayed = dev.schedule_propagator(PulseSequence((Delay(20e-9, channel="drive:q1"), x0, x1)))
    _, serial = dev.schedule_propagator(PulseSequence((x0, Barrier(), x1)))
    np.testing.assert_allclose(delayed, serial, atol=1e-10)
    assert np.max(np.abs(parallel - serial)) > 1e-3


def test_seeded_devices_reproduce_and_the_shot_clock_advances():
    seqs = [PulseSequence((Play(0.5 * PI, channel="drive:q0"),))] * 3
    a = SimulatedMultiQubitDevice(quiet_pair(), rng=np.random.default_rng(5))
    b = SimulatedMultiQubitDevice(quiet_pair(), rng=np.random.default_rng(5))
    c = SimulatedMultiQubitDevice(quiet_pair(), rng=np.random.default_rng(6))
    ca, cb, cc = a.run(seqs, 500), b.run(seqs, 500), c.run(seqs, 500)
    np.testing.assert_array_equal(ca, cb)
    assert not np.array_equal(ca, cc)
    assert a.clock_s == pytest.approx(3 * 500 * 200e-6)


def test_drift_moves_parameters_with_the_clock_and_frames_stay():
    params = quiet_pair()
    drift = MultiQubitDrift(
        {"q0": ModeDrift(frequency_hz=RandomWalk(sigma_per_sqrt_hour=1e6),
                         t1_factor=Telegraph(0.5, 0.5, 1.0, 1.0), amplitude=RandomWalk(0.05))},
        {("q1", "q0"): RandomWalk(sigma_per_sqrt_hour=1e5)},
    )
    dev = SimulatedMultiQubitDevice(params, drift, rng=np.random.default_rng(1))
    m0 = dev.current_model()
    assert isinstance(m0, DeviceModel)
    assert m0.mode("q0").t1_s == pytest.approx(0.5e-3)  # the telegraph's value in both states
    dev.advance(3600.0)
    m1 = dev.current_model()
    f0, f1 = m0.mode("q0"), m1.mode("q0")
    assert f1.frequency_hz != f0.frequency_hz and f1.frame_hz == f0.frame_hz == 5.0e9
    assert f1.rabi_max_hz != f0.rabi_max_hz and m1.mode("q1") == m0.mode("q1")
    assert m1.coupling("q0", "q1").j_hz != m0.coupling("q0", "q1").j_hz
    assert f1.t2_s <= 2 * f1.t1_s
    before = dev.current_model()
    dev.run([PulseSequence((Delay(1e-9),))], 10)  # the run's shots are clock time too
    assert dev.current_model() is not before


def test_spectators_on_grid_4x4():
    dev = make_multi_qubit_device("grid_4x4", np.random.default_rng(0), open_system=False)
    interior = PulseSequence((Delay(1e-9), Measure(("q5",))))
    assert dev.subsystem(interior) == ("q1", "q4", "q5", "q6", "q9")
    corner_cr = PulseSequence((Play(PI, channel="drive:q0@q1"), Measure(("q0", "q1"))))
    # q0, q1 touched, their neighbours q2, q4, q5 spectators (q0's crosstalk reaches q1, q4)
    assert dev.subsystem(corner_cr) == ("q0", "q1", "q2", "q4", "q5")
    alone = make_multi_qubit_device("grid_4x4", np.random.default_rng(0), spectators="none")
    assert alone.subsystem(interior) == ("q5",)
    with pytest.raises(ValueError, match="dimension 243: allowed <= max_dimension = 27"):
        make_multi_qubit_device("grid_4x4", np.random.default_rng(0)).run([interior], 10)
    # spectators truncated to two levels fit, and run
    cut = make_multi_qubit_device("grid_4x4", np.random.default_rng(0), open_system=False, spectator_levels=2)
    p = cut.outcome_probabilities([PulseSequence((Play(PI, channel="drive:q0"), Measure(("q0",))))])
    assert p.shape == (1, 2) and p[0, 1] > 0.9


def test_presets_and_sampler():
    assert multi_qubit_preset_names() == ("grid_4x4", "ring_8", "two_transmons_cr", "two_transmons_cz")
    for name in multi_qubit_preset_names():
        preset = get_multi_qubit_preset(name)
        assert preset.params.qubits == preset.coupling_map.qubits
    assert len(get_multi_qubit_preset("grid_4x4").coupling_map.edges) == 24
    cr = get_multi_qubit_preset("two_transmons_cr").params.model
    assert all(4.8e9 <= m.frequency_hz <= 5.2e9 and -340e6 <= m.anharmonicity_hz <= -320e6 for m in cr.modes)
    sampler = MultiQubitSampler(preset="ring_8")
    a = sampler.sample(np.random.default_rng(3))
    assert a.model.modes != get_multi_qubit_preset("ring_8").params.model.modes
    assert a.model.modes == sampler.sample(np.random.default_rng(3)).model.modes
    for m in a.model.modes:
        assert m.frame_hz == m.idle_frequency_hz and m.t2_s <= 2 * m.t1_s
    held = held_out_multi_qubit_devices(3)
    assert held[:2] == held_out_multi_qubit_devices(2)
    trained = [MultiQubitSampler().sample(np.random.default_rng(s)).model.modes for s in range(20)]
    assert all(h.model.modes not in trained for h in held)
    with pytest.raises(ValueError, match=r"MultiQubitSampler.t1_factor=\(2.0, 1.0\)"):
        MultiQubitSampler(t1_factor=(2.0, 1.0))
    with pytest.raises(ValueError, match="'grid_5x5' is unknown"):
        get_multi_qubit_preset("grid_5x5")


def test_coupling_maps():
    assert CouplingMap.line(3).edges == (("q0", "q1"), ("q1", "q2"))
    assert CouplingMap.ring(4).edges[-1] == ("q3", "q0")
    g = CouplingMap.grid(2, 3)
    assert len(g.edges) == 7 and g.neighbours(["q4"]) == ("q1", "q3", "q5")
    e = CouplingMap.from_edges([("q2", "q10"), ("q10", "q1")])
    assert e.qubits == ("q1", "q2", "q10")
    with pytest.raises(ValueError, match="each pair at most once"):
        CouplingMap.from_edges([("q0", "q1"), ("q1", "q0")])
    with pytest.raises(ValueError, match=r"ring.*|n=2"):
        CouplingMap.ring(2)
    with pytest.raises(ValueError, match="a value for every edge"):
        CouplingMap.line(3).couplings({("q0", "q1"): 1e6})


def test_bring_your_own_operator_model_runs_from_its_ground_state():
    om = as_operator_model(quiet_pair().model.restrict(("q0", "q1")))
    dev = SimulatedMultiQubitDevice(MultiQubitParams(om), rng=np.random.default_rng(0))
    p = dev.outcome_probabilities([PulseSequence((Play(PI, channel="drive:q1"),))])
    assert p[0, 0b01] > 0.98
    with pytest.raises(ValueError, match="cannot drift"):
        SimulatedMultiQubitDevice(MultiQubitParams(om), MultiQubitDrift())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda d: d.run([PulseSequence((Play(PI, channel="drive:q5"),))], 10),
         r"sequences\[0\]\.ops\[0\]\.channel='drive:q5' is not a channel"),
        (lambda d: d.run([PulseSequence(()), PulseSequence((Measure(("q3",)),))], 10),
         r"sequences\[1\]\.ops\[0\]\.qubits: 'q3' is not a qubit"),
        (lambda d: d.run([PulseSequence(())], 0), "shots=0"),
        (lambda d: d.advance(-1.0), "duration_s=-1.0"),
    ],
)
def test_bad_input_names_the_field(call, message):
    dev = SimulatedMultiQubitDevice(quiet_pair(), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=message):
        call(dev)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SimulatedMultiQubitDevice(quiet_pair(), spectators="all"), "spectators='all'"),
        (lambda: SimulatedMultiQubitDevice(quiet_pair(), spectator_levels=1), "spectator_levels=1"),
        (lambda: SimulatedMultiQubitDevice(quiet_pair(), MultiQubitDrift({"q9": ModeDrift()})),
         r"drift.modes\['q9'\]"),
        (lambda: MultiQubitParams(quiet_pair().model, Readout({"q4": QubitReadout()})), "MultiQubitParams.readout"),
        (lambda: MultiQubitParams(quiet_pair().model, rep_time_s=0.0), "rep_time_s"),
    ],
)
def test_bad_construction_names_the_field(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_single_qubit_device_refuses_multi_qubit_sequences():
    dev = SimulatedDevice(DeviceParams(), rng=np.random.default_rng(0))
    ok = PulseSequence((Play(PI),))
    for bad in (PulseSequence((Play(PI, channel="drive:q0"),)), PulseSequence((VirtualZ(0.1, frame="q0"),)),
                PulseSequence((Play(PI), Barrier())), PulseSequence((Play(PI), Measure(("q0",))))):
        with pytest.raises(ValueError, match=r"sequences\[1\]\.ops\[\d\] .*single-qubit sequences only"):
            dev.run([ok, bad], 10)


def test_repeated_sequences_are_simulated_once_per_truth(monkeypatch):
    import pulsecal.envs.multi_qubit_device as mqd

    calls = []
    real = mqd._propagate_segments
    monkeypatch.setattr(mqd, "_propagate_segments", lambda *a: calls.append(1) or real(*a))
    drift = MultiQubitDrift({"q0": ModeDrift(frequency_hz=RandomWalk(sigma_per_sqrt_hour=1e6))})
    dev = SimulatedMultiQubitDevice(quiet_pair(), drift, rng=np.random.default_rng(0))
    # equal content, different objects: one simulation
    seqs = [PulseSequence((Play(PI.copy(), channel="drive:q0"),)) for _ in range(3)]
    first = dev.outcome_probabilities(seqs)
    assert len(calls) == 1 and np.all(first == first[0])
    dev.outcome_probabilities(seqs)
    assert len(calls) == 1
    dev.advance(60.0)  # the truth drifts: simulated again
    dev.outcome_probabilities(seqs)
    assert len(calls) == 2


def test_truth_propagator_agrees_with_the_counts_path():
    # The evaluation truth composes the segments' superoperators; the run path evolves
    # density matrices. Same physics, so the same populations (what a faster engine in
    # ``_propagate_segments`` must keep).
    model = CoupledModel(
        (Mode("q0", 5.0e9, -330e6, t1_s=5e-6, t2_s=4e-6, thermal_population=0.03, rabi_max_hz=50e6),
         Mode("q1", 5.1e9, -330e6, t1_s=8e-6, t2_s=6e-6, rabi_max_hz=50e6)),
        (Coupling("q0", "q1", 3e6),),
    )
    dev = SimulatedMultiQubitDevice(MultiQubitParams(model), rng=np.random.default_rng(0))
    seq = PulseSequence((Play(PI, channel="drive:q0"), Delay(300e-9), Play(0.5 * PI, channel="drive:q1")))
    names, s = dev.schedule_propagator(seq)
    assert names == ("q0", "q1")
    rho = (s @ thermal_state(model).reshape(-1, order="F")).reshape(9, 9, order="F")
    pops = np.real(np.diag(rho)).reshape(3, 3)
    want = [pops[0, 0], pops[0, 1:].sum(), pops[1:, 0].sum(), pops[1:, 1:].sum()]
    np.testing.assert_allclose(dev.outcome_probabilities([seq])[0], want, atol=1e-12)
    assert abs(np.trace(rho) - 1) < 1e-12
