"""Model-mismatch stress devices: each reduces to the plain device when its extra physics is
switched off, changes the truth when it is on, and runs through ``CalibrationTask``.

Closed forms used here:

- Vacuum Rabi oscillation: a transmon in |1⟩ resonant with a TLS in |g⟩ (Δ = 0, coupling
  g/2π, no decay) oscillates as P(transmon excited, t) = cos²(2π·g·t); with the TLS
  relaxing much faster than it swaps it decays instead, at the Purcell-like rate
  Γ = 4·(2π·g)²/γ_TLS (γ_TLS = 1/T1_TLS), so P ≈ exp(−Γ·t) (4g²/γ for the amplitude
  coupling of H = 2π·g·(a†σ⁻ + aσ⁺), adiabatically eliminating the TLS coherence).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pulsecal.envs.calibration import CalibrationTask, DragGate
from pulsecal.envs.device import DeviceParams, SimulatedDevice
from pulsecal.envs.drag import nominal_params
from pulsecal.envs.physics import Transmon
from pulsecal.envs.physics.tls import TLSDefect, joint_superoperators, reduced_channels
from pulsecal.envs.presets import DeviceSampler
from pulsecal.envs.protocol import Delay, Device, Play, PulseSequence, SimulatedTruth, VirtualZ
from pulsecal.envs.pulses import LowPass
from pulsecal.envs.stress import (
    STRESS_KINDS,
    QuasiStaticNoiseDevice,
    StressSpec,
    TLSDevice,
    stress_devices,
)

GATE = DragGate(20e-9)
PARAMS = DeviceParams(
    transmon=Transmon(anharmonicity_hz=-250e6, rabi_max_hz=120e6, detuning_hz=0.4e6, t1_s=60e-6, t2_s=50e-6),
    p1_given_0=0.02, p0_given_1=0.05,
)


def _start(dev: SimulatedTruth) -> np.ndarray:
    return nominal_params(dev.current_transmon(), GATE).as_array()[None]


def _sequences(dev: SimulatedTruth) -> list[PulseSequence]:
    """The default probes, plus one with a frame change between two plays and a delay."""
    task = CalibrationTask([dev], GATE)
    p = _start(dev)
    wx, _ = task.waveforms(p)
    extra = PulseSequence((Play(wx[0]), VirtualZ(0.7), Delay(0.35e-6), Play(wx[0] * 0.5), VirtualZ(-1.9),
                           Play(wx[0] * 0.5)))
    return [*task.sequences(p)[0], extra]


def test_stress_devices_implement_the_device_protocol_and_its_truth() -> None:
    for spec in stress_devices(5, seed=3):
        dev = spec.make(np.random.default_rng(0))
        assert isinstance(dev, Device) and isinstance(dev, SimulatedTruth), spec.label


# -- TLS ----------------------------------------------------------------------------------------


def test_tls_with_zero_coupling_is_the_plain_device() -> None:
    plain = SimulatedDevice(PARAMS, rng=np.random.default_rng(0))
    tls = TLSDevice(PARAMS, TLSDefect(detuning_hz=0.0, coupling_hz=0.0, t1_s=1e-6), rng=np.random.default_rng(0))
    seqs = _sequences(plain)
    np.testing.assert_allclose(tls.excited_probabilities(seqs), plain.excited_probabilities(seqs), atol=1e-11)
    p = _start(plain)
    a = CalibrationTask([plain], GATE).true_metrics(p)
    b = CalibrationTask([tls], GATE).true_metrics(p)
    assert a is not None and b is not None
    for key in ("fidelity", "fidelity_raw", "leakage", "coherence_limit"):
        np.testing.assert_allclose(b[key], a[key], rtol=0, atol=1e-11, err_msg=key)


def test_tls_frame_change_equals_shifting_the_later_waveform() -> None:
    # VirtualZ is the drive's frame: with a coupled TLS too, a frame change φ before a Play is
    # the same as playing that waveform times e^{iφ} (the last frame change is invisible).
    dev = TLSDevice(PARAMS, TLSDefect(detuning_hz=0.5e6, coupling_hz=3e6, t1_s=0.5e-6), rng=np.random.default_rng(0))
    wx = CalibrationTask([dev], GATE).waveforms(_start(dev))[0][0] * 0.5
    a = PulseSequence((Play(wx), Delay(40e-9), VirtualZ(1.1), Play(wx), VirtualZ(0.4), Play(wx)))
    b = PulseSequence((Play(wx), Delay(40e-9), Play(wx * np.exp(1.1j)), Play(wx * np.exp(1.5j))))
    pa, pb = dev.excited_probabilities([a, b])
    assert abs(pa - pb) < 1e-12 and 0.05 < pa < 0.95


def test_tls_vacuum_rabi_oscillation_and_purcell_decay() -> None:
    # Long coherence everywhere: the π pulse then a delay t swaps the excitation into the TLS.
    long = DeviceParams(transmon=Transmon(anharmonicity_hz=-300e6, rabi_max_hz=100e6, t1_s=1.0, t2_s=1.0))
    g = 1e6
    dev = TLSDevice(long, TLSDefect(detuning_hz=0.0, coupling_hz=g, t1_s=1.0, t2_s=2.0))
    wx = CalibrationTask([dev], GATE).waveforms(_start(dev))[0][0]
    ts = np.array([62.5e-9, 125e-9, 187.5e-9, 250e-9])
    p = dev.excited_probabilities([PulseSequence((Play(wx), Delay(t))) for t in ts])
    # The swap runs during the 20 ns pulse too, from its middle on (±5 % of a quarter period).
    want = np.cos(2 * np.pi * g * (ts + 10e-9)) ** 2
    np.testing.assert_allclose(p, want, atol=0.03)
    # A fast-relaxing TLS: overdamped, exponential decay at Γ = 4(2πg)²/γ.
    g, t1_tls = 0.2e6, 20e-9
    dev = TLSDevice(long, TLSDefect(detuning_hz=0.0, coupling_hz=g, t1_s=t1_tls))
    ts = np.array([0.5e-6, 1e-6, 2e-6])
    p = dev.excited_probabilities([PulseSequence((Play(wx), Delay(t))) for t in ts])
    gamma = 4 * (2 * np.pi * g) ** 2 * t1_tls
    np.testing.assert_allclose(p, np.exp(-gamma * (ts + 10e-9)), rtol=0.03)


def test_tls_truth_is_a_trace_preserving_qubit_channel_that_a_resonant_tls_degrades() -> None:
    t = PARAMS.transmon
    near = TLSDefect(detuning_hz=0.3e6, coupling_hz=1.5e6, t1_s=0.5e-6)
    wx = CalibrationTask([SimulatedDevice(PARAMS)], GATE).waveforms(_start(SimulatedDevice(PARAMS)))[0]
    red = reduced_channels(joint_superoperators(t, near, wx), t.levels)[0]
    rho = np.zeros((3, 3), dtype=complex)
    rho[1, 1], rho[0, 1], rho[1, 0], rho[0, 0] = 0.5, 0.5, 0.5, 0.5
    out = (red @ rho.reshape(-1, order="F")).reshape(3, 3, order="F")
    assert abs(np.trace(out) - 1) < 1e-12 and np.allclose(out, out.conj().T, atol=1e-14)
    assert np.linalg.eigvalsh(out).min() > -1e-12
    plain = CalibrationTask([SimulatedDevice(PARAMS)], GATE).true_metrics(_start(SimulatedDevice(PARAMS)))
    dev = TLSDevice(PARAMS, near)
    bad = CalibrationTask([dev], GATE).true_metrics(_start(dev))
    assert plain is not None and bad is not None
    assert 1 - bad["fidelity"][0] > 3 * (1 - plain["fidelity"][0])


def test_tls_defect_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"TLSDefect\.coupling_hz=-1\.0 is out of range: allowed \[0, 1e8\] Hz"):
        TLSDefect(detuning_hz=0.0, coupling_hz=-1.0, t1_s=1e-6)
    with pytest.raises(ValueError, match=r"TLSDefect\.t2_s=3e-06 is out of range"):
        TLSDefect(detuning_hz=0.0, coupling_hz=1e6, t1_s=1e-6, t2_s=3e-6)


# -- quasi-static detuning noise ----------------------------------------------------------------


def test_quasi_static_noise_with_zero_sigma_is_the_plain_device() -> None:
    plain = SimulatedDevice(PARAMS, rng=np.random.default_rng(4))
    noisy = QuasiStaticNoiseDevice(PARAMS, 0.0, rng=np.random.default_rng(4))
    p = _start(plain)
    a = CalibrationTask([plain], GATE)
    b = CalibrationTask([noisy], GATE)
    for _ in range(3):  # the same counts: the same shot stream, the same physics
        np.testing.assert_array_equal(b.measure(p, 50), a.measure(p, 50))
    seqs = _sequences(plain)
    np.testing.assert_array_equal(noisy.run(seqs, 30), plain.run(seqs, 30))
    assert noisy.clock_s == plain.clock_s
    ta, tb = a.true_metrics(p), b.true_metrics(p)
    assert ta is not None and tb is not None
    for key in ("fidelity", "leakage", "coherence_limit"):
        np.testing.assert_allclose(tb[key], ta[key], rtol=0, atol=1e-12, err_msg=key)


def test_quasi_static_offset_is_fresh_every_batch_and_has_its_sigma() -> None:
    sigma = 200e3
    dev = QuasiStaticNoiseDevice(PARAMS, sigma, rng=np.random.default_rng(5))
    seq = [PulseSequence((Delay(1e-8),))]
    offsets = []
    for _ in range(400):
        dev.run(seq, 1)
        offsets.append(dev.offset_hz)
    offsets_arr = np.array(offsets)
    assert len(set(offsets)) == 400
    assert abs(offsets_arr.std() / sigma - 1) < 0.12 and abs(offsets_arr.mean()) < 4 * sigma / 20
    # What a lab calibrates to is the mean; the truth averages the gate over the Gaussian.
    assert dev.current_transmon().detuning_hz == PARAMS.transmon.detuning_hz
    # Ramsey fringes of a batch sit at the drawn offset: a 2 µs Ramsey differs batch to batch.
    sx = CalibrationTask([dev], GATE).waveforms(_start(dev))[1][0]
    ramsey = [PulseSequence((Play(sx), Delay(2e-6), Play(sx)))]
    ps = []
    for _ in range(5):
        counts = dev.run(ramsey, 1)
        ps.append((dev.offset_hz, counts))
    assert len({o for o, _ in ps}) == 5


def test_quasi_static_truth_is_the_channel_averaged_over_the_offset() -> None:
    # A long gate (a slow 200 ns pulse) so that the detuning noise shows in one gate.
    gate = DragGate(200e-9)
    params = PARAMS.replace(transmon=PARAMS.transmon.replace(rabi_max_hz=20e6))
    plain = SimulatedDevice(params)
    p = nominal_params(plain.current_transmon(), gate).as_array()[None]
    f0 = CalibrationTask([plain], gate).true_metrics(p)
    f1 = CalibrationTask([QuasiStaticNoiseDevice(params, 1e6)], gate).true_metrics(p)
    assert f0 is not None and f1 is not None
    # Average of the infidelity over δ ~ N(0, σ²): monotone in |δ| near the optimum, so
    # the average lies between the centre and the infidelity at 3σ.
    far = SimulatedDevice(params.replace(transmon=params.transmon.replace(detuning_hz=params.transmon.detuning_hz + 3e6)))
    f3 = CalibrationTask([far], gate).true_metrics(p)
    assert f3 is not None
    assert 1 - f0["fidelity"][0] < 1 - f1["fidelity"][0] < 1 - f3["fidelity"][0]
    with pytest.raises(ValueError, match=r"detuning_sigma_hz=-1\.0 is out of range"):
        QuasiStaticNoiseDevice(params, -1.0)


# -- AWG low-pass and the 4th level --------------------------------------------------------------


def test_low_pass_of_infinite_bandwidth_is_the_plain_device() -> None:
    p = _start(SimulatedDevice(PARAMS))
    plain = CalibrationTask([SimulatedDevice(PARAMS)], GATE).true_metrics(p)
    ideal = CalibrationTask([SimulatedDevice(PARAMS.replace(distortion=LowPass(0.0)))], GATE).true_metrics(p)
    tiny = CalibrationTask([SimulatedDevice(PARAMS.replace(distortion=LowPass(1e-13)))], GATE).true_metrics(p)
    slow = CalibrationTask([SimulatedDevice(PARAMS.replace(distortion=LowPass(3e-9)))], GATE).true_metrics(p)
    assert plain is not None and ideal is not None and tiny is not None and slow is not None
    assert ideal["fidelity"][0] == plain["fidelity"][0]
    # A vanishing rise time passes the samples through, up to the transient each sample's
    # average keeps (a fraction τ/dt of the step), and appends the filter's tail (one idle
    # sample here): the limit is the plain device playing that padded waveform.
    wx = CalibrationTask([SimulatedDevice(PARAMS)], GATE).waveforms(p)[0]
    padded = np.concatenate([wx, np.zeros((1, 1))], axis=1)
    want = SimulatedDevice.play_operators([SimulatedDevice(PARAMS)], padded)
    errors = []
    for rise in (1e-12, 1e-13):
        lp = LowPass(rise)
        assert lp.tail_samples(PARAMS.dt_s) == 1
        got = SimulatedDevice.play_operators([SimulatedDevice(PARAMS.replace(distortion=lp))], wx)
        errors.append(float(np.abs(got - want).max()))
    assert errors[1] < 1e-5 and 8 < errors[0] / errors[1] < 12  # converges linearly in τ
    assert abs(tiny["fidelity"][0] - plain["fidelity"][0]) < 3e-5
    # A 3 ns rise on a 20 ns gate (the policy's amplitude and β no longer fit the shape
    # played) costs a visible error on top of the plain gate's (measured: +1.2e-4).
    assert slow["fidelity"][0] < plain["fidelity"][0] - 5e-5


def test_four_level_device_leaks_into_its_fourth_level() -> None:
    spec = StressSpec("four_level", PARAMS.replace(transmon=PARAMS.transmon.replace(levels=4)))
    dev = spec.make()
    assert isinstance(dev, SimulatedDevice) and dev.current_transmon().levels == 4
    # A fast, strong pulse (4 ns) leaks visibly; the population of |3⟩ after it is >= 0.
    fast = DragGate(4e-9)
    strong = spec.params.replace(transmon=spec.params.transmon.replace(rabi_max_hz=600e6, anharmonicity_hz=-150e6))
    sdev = SimulatedDevice(strong)
    w = fast.waveforms(nominal_params(sdev.current_transmon(), fast).as_array()[None], sdev.dt_s)
    sup = SimulatedDevice.play_operators([sdev], w)[0]
    for start in (0, 1):
        rho = np.zeros((4, 4), dtype=complex)
        rho[start, start] = 1
        out = (sup @ rho.reshape(-1, order="F")).reshape(4, 4, order="F").diagonal().real
        assert out[3] > 1e-7 and out[3] >= 0
    truth = CalibrationTask([dev], GATE).true_metrics(_start(dev))
    three = CalibrationTask([SimulatedDevice(PARAMS)], GATE).true_metrics(_start(dev))
    assert truth is not None and three is not None
    assert truth["leakage"][0] >= 0 and abs(truth["fidelity"][0] - three["fidelity"][0]) < 1e-3


# -- the labelled set -------------------------------------------------------------------------------


def test_stress_set_is_labelled_seeded_and_in_its_ranges() -> None:
    specs = stress_devices(20, seed=11)
    assert specs == stress_devices(20, seed=11) and stress_devices(7, seed=11) == specs[:7]
    assert specs != stress_devices(20, seed=12)
    assert [s.label for s in specs] == [STRESS_KINDS[i % 5] for i in range(20)]
    for s in specs:
        t = s.params.transmon
        assert 50e6 <= t.rabi_max_hz <= 200e6 and -400e6 <= t.anharmonicity_hz <= -150e6
        assert t.levels == (4 if s.label == "four_level" else 3)
        if s.tls is not None:
            centre = 0.0 if s.label == "tls_qubit" else t.anharmonicity_hz
            assert abs(s.tls.detuning_hz - centre) <= 3e6 and 0.1e6 <= s.tls.coupling_hz <= 2e6
            assert 0.2e-6 <= s.tls.t1_s <= 3e-6
        assert (s.detuning_sigma_hz > 0) == (s.label == "quasi_static")
        assert (s.params.distortion is not None) == (s.label == "low_pass")
    # The base transmons are the realistic population's (3 levels, Ω_R >= 50 MHz).
    assert DeviceSampler.realistic().anharmonicity_hz == (-400e6, -150e6)
    with pytest.raises(ValueError, match=r"open_system=False is out of range: allowed True for tls_qubit"):
        specs[1].make(open_system=False)


def test_every_stress_device_runs_through_the_calibration_task() -> None:
    for spec in stress_devices(5, seed=2):
        dev = spec.make(np.random.default_rng(1))
        task = CalibrationTask([dev], GATE)
        p = _start(dev)
        pops = task.measure(p, 40)
        assert pops.shape == (1, len(task.probes)) and np.all((pops >= 0) & (pops <= 1)), spec.label
        assert task.shots_used[0] == 40 * len(task.probes)
        truth = task.true_metrics(p)
        assert truth is not None, spec.label
        assert 0.9 < truth["fidelity"][0] <= 1 and truth["leakage"][0] >= 0 and truth["coherence_limit"][0] > 0


def test_a_tls_device_plays_through_the_v1_env() -> None:
    import gymnasium as gym

    import pulsecal.envs  # noqa: F401

    spec = stress_devices(2, seed=2)[1]
    env = gym.make("pulsecal/GateCalibration-v1", shot_budget=480)
    _, info = env.reset(seed=0, options={"device": spec.make(np.random.default_rng(0))})
    _, _, _, _, info = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    assert math.isfinite(info["fidelity"]) and 0 < info["fidelity"] <= 1
    env.close()
