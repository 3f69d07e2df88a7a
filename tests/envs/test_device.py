"""The simulated device: sequence semantics against direct simulation, shot statistics,
readout error, clock and drift bookkeeping, batching across devices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pulsecal.envs.device import DeviceParams, SimulatedDevice, free_evolution
from pulsecal.envs.drift import DriftModel, OrnsteinUhlenbeck, RandomWalk
from pulsecal.envs.physics import Transmon, superoperators, unitaries
from pulsecal.envs.protocol import Delay, Device, Play, PulseSequence, VirtualZ
from pulsecal.envs.pulses import DragPulse, LowPass, pi_amplitude

DT = 1e-9
TRANSMON = Transmon(detuning_hz=1.3e6, t1_s=30e-6, t2_s=20e-6)
PI_AMP = pi_amplitude(DragPulse(1.0, 20e-9), 100e6, DT)


def _wave(amp: float = PI_AMP, **kw: float) -> np.ndarray:
    return DragPulse(amp, 20e-9, **kw).waveform(DT)


def _seq(*ops) -> PulseSequence:
    return PulseSequence(tuple(ops))


@pytest.mark.parametrize("open_system", [True, False])
def test_sequence_equals_one_concatenated_waveform(open_system: bool) -> None:
    dev = SimulatedDevice(DeviceParams(TRANSMON, amplitude_scale=0.97), open_system=open_system)
    w1, w2 = _wave(PI_AMP / 2, beta_s=0.3e-9), _wave(phase=0.4)
    seq = _seq(Play(w1), VirtualZ(0.7), Play(w2), Delay(37e-9), VirtualZ(-0.2), Play(w1), VirtualZ(3.0))
    full = np.concatenate([w1, w2 * np.exp(0.7j), np.zeros(37), w1 * np.exp(0.5j)])
    # Amplitude scale = Ω_R·scale on the same waveform.
    eff = TRANSMON.replace(rabi_max_hz=97e6)
    if open_system:
        ref = 1 - superoperators(eff, full)[0, 0].real
    else:
        ref = 1 - abs(unitaries(eff, full)[0, 0]) ** 2
    assert dev.excited_probabilities([seq])[0] == pytest.approx(ref, abs=1e-10)
    assert dev.current_transmon() == eff


def test_repeated_gates_and_shared_prefixes() -> None:
    dev = SimulatedDevice(DeviceParams(TRANSMON))
    g, h = Play(_wave(0.9 * PI_AMP)), Play(_wave(beta_s=0.2e-9, phase=0.3))
    seqs = [_seq(*([g] * k)) for k in (1, 5, 16)]
    seqs += [_seq(*([g, h] * 3)), _seq(g, g, h, h, h), _seq(), _seq(VirtualZ(1.0))]
    p = dev.excited_probabilities(seqs)
    wg, wh = g.waveform, h.waveform
    refs = [np.tile(wg, 1), np.tile(wg, 5), np.tile(wg, 16), np.tile(np.concatenate([wg, wh]), 3),
            np.concatenate([wg, wg, wh, wh, wh])]
    for i, w in enumerate(refs):
        assert p[i] == pytest.approx(1 - superoperators(TRANSMON, w)[0, 0].real, abs=1e-10)
    assert p[5] == 0.0 and p[6] == 0.0
    # A long run (beyond step-by-step chaining) uses repeated squaring: same answer.
    long = dev.excited_probabilities([_seq(*([g] * 100))])[0]
    assert long == pytest.approx(1 - superoperators(TRANSMON, np.tile(wg, 100))[0, 0].real, abs=1e-9)


def test_equal_waveforms_in_distinct_play_objects_are_one_propagator() -> None:
    dev = SimulatedDevice(DeviceParams(TRANSMON))
    w = _wave()
    a = dev.excited_probabilities([_seq(Play(w), Play(w.copy()))])
    b = dev.excited_probabilities([_seq(*([Play(w)] * 2))])
    assert a[0] == pytest.approx(b[0], abs=1e-14)


def test_delay_is_exact_free_evolution() -> None:
    for n in (1, 7, 300):
        f = free_evolution([TRANSMON], [n * DT])[0]
        np.testing.assert_allclose(f, superoperators(TRANSMON, np.zeros(n)), atol=1e-11)
        fu = free_evolution([TRANSMON], [n * DT], open_system=False)[0]
        np.testing.assert_allclose(fu, unitaries(TRANSMON, np.zeros(n)), atol=1e-11)
    # Long delays are cheap and follow T1: a π pulse then T decays as e^{−T/T1}.
    dev = SimulatedDevice(DeviceParams(Transmon(t1_s=30e-6, t2_s=20e-6)))
    x = Play(_wave(beta_s=0.265e-9))
    p0 = dev.excited_probabilities([_seq(x)])[0]
    p = dev.excited_probabilities([_seq(x, Delay(10e-6)), _seq(x, Delay(4e-6), VirtualZ(1.0), Delay(6e-6))])
    assert p[0] == pytest.approx(p0 * math.exp(-10e-6 / 30e-6), rel=1e-3)
    assert p[1] == pytest.approx(p[0], abs=1e-12)


def test_ramsey_fringe_follows_detuning() -> None:
    # X/2 – delay τ – X/2 on a closed two-level qubit: the delay adds a phase 2πδτ, so
    # P1(τ) = A + B·cos(2πδτ) + C·sin(2πδτ) exactly (A, B, C set by the pulses).
    t = Transmon(levels=2, detuning_hz=2e6)
    dev = SimulatedDevice(DeviceParams(t), open_system=False)
    half = pi_amplitude(DragPulse(1.0, 20e-9), 100e6, DT, angle=math.pi / 2)
    sx = Play(DragPulse(half, 20e-9).waveform(DT))
    tau = np.arange(0, 400e-9, 25e-9)
    p = dev.excited_probabilities([_seq(sx, Delay(float(d)), sx) for d in tau])
    for freq, ok in ((2e6, True), (2.1e6, False)):
        basis = np.stack([np.ones_like(tau), np.cos(2 * np.pi * freq * tau), np.sin(2 * np.pi * freq * tau)], 1)
        resid = p - basis @ np.linalg.lstsq(basis, p, rcond=None)[0]
        assert (np.max(np.abs(resid)) < 1e-9) == ok
    assert np.ptp(p) > 0.9  # full-contrast fringe


def test_counts_are_unbiased_binomial() -> None:
    dev = SimulatedDevice(DeviceParams(TRANSMON), rng=np.random.default_rng(3))
    seqs = [_seq(Play(_wave(a))) for a in (0.0, 0.3 * PI_AMP, 0.5 * PI_AMP, PI_AMP)]
    p = dev.excited_probabilities(seqs)
    shots = 20_000
    counts = dev.run(seqs, shots)
    assert counts.shape == (4, 2) and counts.dtype == np.int64
    assert np.all(counts.sum(axis=1) == shots)
    sigma = np.sqrt(np.maximum(p * (1 - p), 1e-6) / shots)
    assert np.all(np.abs(counts[:, 1] / shots - p) <= 4 * sigma + 1e-12)


def test_readout_error_is_applied() -> None:
    prm = DeviceParams(TRANSMON, p1_given_0=0.1, p0_given_1=0.05)
    dev = SimulatedDevice(prm, rng=np.random.default_rng(4))
    seqs = [_seq(), _seq(Play(_wave(beta_s=0.265e-9)))]
    p = dev.excited_probabilities(seqs)
    read = dev.readout_probabilities(seqs)
    np.testing.assert_allclose(read, p * 0.95 + (1 - p) * 0.1)
    assert read[0] == pytest.approx(0.1)
    shots = 40_000
    n1 = dev.run(seqs, shots)[:, 1] / shots
    assert np.all(np.abs(n1 - read) <= 4 * np.sqrt(read * (1 - read) / shots))


def test_clock_advances_with_shots_and_drift_follows() -> None:
    drift = DriftModel(detuning_hz=RandomWalk(sigma_per_sqrt_hour=1e6))
    dev = SimulatedDevice(DeviceParams(TRANSMON, rep_time_s=100e-6), drift, rng=np.random.default_rng(5))
    assert isinstance(dev, Device)
    assert dev.clock_s == 0.0 and dev.dt_s == DT
    before = dev.current_transmon()
    seqs = [_seq(Play(_wave()))] * 3
    dev.run(seqs, 1000)
    assert dev.clock_s == pytest.approx(3 * 1000 * 100e-6)
    assert dev.drift_state is not None and dev.drift_state.time_s == pytest.approx(0.3)
    after = dev.current_transmon()
    assert after.detuning_hz != before.detuning_hz
    assert dev.current_params().transmon.detuning_hz == pytest.approx(after.detuning_hz)
    dev.advance(3600.0)
    assert dev.clock_s == pytest.approx(3600.3)
    dev.run([], 10)
    assert dev.clock_s == pytest.approx(3600.3)
    dev.reset()
    assert dev.clock_s == 0.0


def test_parameters_are_held_during_a_run() -> None:
    # Counts of one call come from the truth at the start of the call.
    drift = DriftModel(detuning_hz=OrnsteinUhlenbeck(sigma=5e6, tau_s=1e-3))
    dev = SimulatedDevice(DeviceParams(TRANSMON), drift, rng=np.random.default_rng(6))
    twin = SimulatedDevice(DeviceParams(TRANSMON), drift, rng=np.random.default_rng(6))
    seqs = [_seq(Play(_wave(0.5 * PI_AMP)))]
    p = twin.excited_probabilities(seqs)
    n1 = dev.run(seqs, 1_000_000)[0, 1] / 1_000_000
    assert n1 == pytest.approx(p[0], abs=5 * math.sqrt(0.25 / 1_000_000))


def test_seeds_make_runs_reproducible() -> None:
    drift = DriftModel(detuning_hz=RandomWalk(2e5), amplitude=RandomWalk(0.01))

    def go(seed: int) -> list[np.ndarray]:
        dev = SimulatedDevice(DeviceParams(TRANSMON), drift, rng=np.random.default_rng(seed))
        seqs = [_seq(Play(_wave(0.5 * PI_AMP)))] * 2
        out = [dev.run(seqs, 500) for _ in range(3)]
        dev.advance(100.0)
        return [*out, dev.run(seqs, 500)]

    np.random.seed(0)  # noqa: NPY002 - proves the global generator plays no role
    a = go(1)
    np.random.seed(99)  # noqa: NPY002 - proves the global generator plays no role
    b = go(1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, go(2), strict=True))


def test_from_seed_equals_constructor_with_default_rng() -> None:
    # Same shot and drift streams as SimulatedDevice(..., rng=np.random.default_rng(seed)).
    drift = DriftModel(detuning_hz=RandomWalk(2e5), amplitude=RandomWalk(0.01))
    seqs = [_seq(Play(_wave(0.5 * PI_AMP)))] * 2
    for seed in (0, 7, 2**63 - 1):
        for d in (drift, None):
            a = SimulatedDevice(DeviceParams(TRANSMON), d, rng=np.random.default_rng(seed))
            b = SimulatedDevice.from_seed(DeviceParams(TRANSMON), d, seed)
            for dev in (a, b):
                dev.advance(10.0)
            assert a.current_transmon() == b.current_transmon()
            assert np.array_equal(a.run(seqs, 500), b.run(seqs, 500))
            a.reset()
            b.reset()
            assert a.current_transmon() == b.current_transmon()
            assert np.array_equal(a.run(seqs, 500), b.run(seqs, 500))
    with pytest.raises(TypeError):
        SimulatedDevice.from_seed(TRANSMON, None, 0)  # type: ignore[arg-type]


def test_run_many_equals_separate_runs() -> None:
    drift = DriftModel(detuning_hz=RandomWalk(5e6), amplitude=RandomWalk(0.05))
    params = [DeviceParams(TRANSMON.replace(detuning_hz=d), amplitude_scale=s, p1_given_0=0.02)
              for d, s in ((0.0, 1.0), (2e5, 1.02), (-1e5, 0.97))]

    def fleet() -> list[SimulatedDevice]:
        return [SimulatedDevice(p, drift, rng=np.random.default_rng(10 + i)) for i, p in enumerate(params)]

    def seqs_for(i: int, step: int) -> list[PulseSequence]:
        g = Play(_wave((0.5 + 0.1 * i + 0.01 * step) * PI_AMP))
        sx = Play(_wave(0.5 * PI_AMP))
        return [_seq(*([g] * k)) for k in (1, 2, 4)] + [_seq(sx, Delay(100e-9), VirtualZ(0.3), sx)]

    together, alone = fleet(), fleet()
    for step in range(3):
        many = SimulatedDevice.run_many(together, [seqs_for(i, step) for i in range(3)], 300)
        single = [d.run(seqs_for(i, step), 300) for i, d in enumerate(alone)]
        for m, s in zip(many, single, strict=True):
            np.testing.assert_array_equal(m, s)
    assert [d.clock_s for d in together] == [d.clock_s for d in alone]
    assert [d.current_transmon() for d in together] == [d.current_transmon() for d in alone]


def test_play_operators_is_the_applied_truth_with_distortion() -> None:
    lp = LowPass(rise_time_s=2e-9)
    dev = SimulatedDevice(DeviceParams(TRANSMON, amplitude_scale=1.02, distortion=lp))
    w = _wave()
    op = SimulatedDevice.play_operators([dev], w[None])[0]
    ref = superoperators(TRANSMON.replace(rabi_max_hz=102e6), lp.apply(w, DT))
    np.testing.assert_allclose(op, ref, atol=1e-12)
    assert dev.excited_probabilities([_seq(Play(w))])[0] == pytest.approx(1 - ref[0, 0].real, abs=1e-12)


def test_bad_inputs_raise_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"DeviceParams\.p1_given_0"):
        DeviceParams(p1_given_0=0.7)
    with pytest.raises(ValueError, match=r"DeviceParams\.amplitude_scale"):
        DeviceParams(amplitude_scale=0.0)
    with pytest.raises(ValueError, match=r"DeviceParams\.rep_time_s"):
        DeviceParams(rep_time_s=-1.0)
    dev = SimulatedDevice(DeviceParams())
    with pytest.raises(ValueError, match="shots"):
        dev.run([_seq()], 0)
    with pytest.raises(ValueError, match="duration_s"):
        dev.advance(-1.0)
    with pytest.raises(ValueError, match="sequences_per_device"):
        SimulatedDevice.run_many([dev], [], 10)
    with pytest.raises(TypeError, match="PulseSequence"):
        dev.run([(Play(_wave()),)], 10)  # type: ignore[list-item]


def _direct_p_excited(transmon: Transmon, seq: PulseSequence, open_system: bool) -> float:
    """Independent semantics: each Play is simulated on its frame-shifted waveform, each
    Delay by the zero-drive physics, and the products are taken in plain matrix form."""
    n = transmon.levels
    dim = n * n if open_system else n
    prop = np.eye(dim, dtype=complex)
    phase = 0.0
    for op in seq.ops:
        if isinstance(op, VirtualZ):
            phase += op.phase
            continue
        if isinstance(op, Play):
            w = op.waveform * np.exp(1j * phase)
        else:
            k = round(op.duration_s / transmon.dt_s)
            if k == 0:
                continue
            w = np.zeros(k, dtype=complex)
        m = superoperators(transmon, w) if open_system else unitaries(transmon, w)
        prop = m @ prop
    return float(1 - prop[0, 0].real) if open_system else float(1 - abs(prop[0, 0]) ** 2)


@pytest.mark.parametrize("open_system", [True, False])
@pytest.mark.parametrize("levels", [2, 3, 4])
def test_compiled_programs_match_direct_simulation(open_system: bool, levels: int) -> None:
    """Random sequences over a few shared objects (as the probes build them: one Play or
    VirtualZ object repeated), several devices, one object shared by two devices."""
    rng = np.random.default_rng(levels)
    tr = [TRANSMON.replace(levels=levels, detuning_hz=d) for d in (1.3e6, -0.4e6, 0.0)]
    devs = [SimulatedDevice(DeviceParams(t, amplitude_scale=s), open_system=open_system)
            for t, s in zip(tr, (1.0, 0.97, 1.04), strict=True)]
    shared = Play(_wave(0.4 * PI_AMP, beta_s=0.2e-9))
    seqs = []
    for _ in devs:
        pool = [shared, Play(_wave(0.3 * PI_AMP, phase=rng.uniform(0, 6))), Play(_wave(0.6 * PI_AMP)),
                VirtualZ(float(rng.uniform(-3, 3))), VirtualZ(float(rng.uniform(-3, 3))),
                Delay(float(rng.integers(1, 200)) * DT), Delay(0.0)]
        seqs.append([_seq(*(pool[i] for i in rng.integers(0, len(pool), int(rng.integers(0, 40)))))
                     for _ in range(4)])
    got = [d.excited_probabilities(s) for d, s in zip(devs, seqs, strict=True)]
    many = np.concatenate([SimulatedDevice.run_many(devs, seqs, 10**6)[i][:, 1] for i in range(3)])
    for d, s, g in zip(devs, seqs, got, strict=True):
        ref = [_direct_p_excited(d.current_transmon(), q, open_system) for q in s]
        np.testing.assert_allclose(g, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(many / 10**6, np.concatenate(got), atol=5e-3)


def test_frame_change_blocks_are_the_diagonal_phase_in_the_real_basis() -> None:
    from pulsecal.envs.physics import free_evolution, real_basis

    for levels in (2, 3, 4):
        w, sym, anti, _ = real_basis.real_basis(levels)
        phases = np.array([0.3, -2.1])
        cos, sin, neg_sin = real_basis.frame_changes(phases, levels, True)
        pair_gap = real_basis.pair_gaps(levels)[1]
        order = free_evolution.coherence_order(levels, True)
        for f, phi in enumerate(phases):
            full = (w.conj().T @ np.diag(np.exp(-1j * phi * order)) @ w)
            assert np.max(np.abs(full.imag)) < 1e-15
            ref = np.eye(levels * levels)
            for p, (s, a) in enumerate(zip(sym, anti, strict=True)):
                g = pair_gap[p]
                ref[s, s], ref[s, a], ref[a, s], ref[a, a] = cos[f, g], sin[f, g], neg_sin[f, g], cos[f, g]
            np.testing.assert_allclose(full.real, ref, atol=1e-15)


def test_frame_change_blocks_hold_numpys_cos_and_sin_of_each_pairs_angle() -> None:
    """One angle per distinct gap, shared by the pairs with that gap: bit for bit the
    array form cos/sin(φ·(k − j)) per pair."""
    from pulsecal.envs.physics import real_basis

    phases = np.random.default_rng(0).uniform(-40, 40, 50)
    for levels in (2, 3, 4, 5):
        gap = real_basis.real_basis(levels)[3]
        cos, sin, neg_sin = real_basis.frame_changes(phases, levels, True)
        pair_gap = real_basis.pair_gaps(levels)[1]
        ang = phases[:, None] * gap[None, :]
        np.testing.assert_array_equal(cos[:, pair_gap], np.cos(ang))
        np.testing.assert_array_equal(sin[:, pair_gap], np.sin(ang))
        np.testing.assert_array_equal(neg_sin[:, pair_gap], -np.sin(ang))


def test_play_operators_reuses_what_run_computed_until_the_model_drifts() -> None:
    drift = DriftModel(amplitude=RandomWalk(0.05))
    dev = SimulatedDevice(DeviceParams(TRANSMON), drift, rng=np.random.default_rng(3))
    w = _wave(0.9 * PI_AMP)
    dev.run([_seq(Play(w))], 10)  # the clock moves, the amplitude drifts
    op = SimulatedDevice.play_operators([dev], w[None])[0]
    np.testing.assert_allclose(op, superoperators(dev.current_transmon(), w), atol=1e-13)
    still = SimulatedDevice(DeviceParams(TRANSMON), rng=np.random.default_rng(3))
    still.run([_seq(Play(w))], 10)
    assert ("play", w.tobytes()) in still.play_cache
    # The cache holds the real Hermitian-basis form the run loop uses; the truth is that
    # very propagator in column stacking (no second physics call).
    from pulsecal.envs.physics.real_basis import from_hermitian_basis, real_basis

    cached = still.play_cache[("play", w.tobytes())]
    np.testing.assert_array_equal(SimulatedDevice.play_operators([still], w[None])[0],
                                  from_hermitian_basis(cached[None], real_basis(3)[0])[0])


def test_waveform_check_is_exactly_abs_u_at_most_the_limit() -> None:
    """``scan_waveforms_and_phases`` skips abs(u) for samples whose square is clearly below the
    limit: the verdict must be abs(u) <= limit's, sample by sample, right at the limit too."""
    from pulsecal.envs.physics.sequence_kernels import BAD_WAVEFORM, scan_waveforms_and_phases

    rng = np.random.default_rng(0)
    limit = 1.0 + 1e-9
    radius = limit * (1.0 + rng.uniform(-3e-12, 3e-12, 20000))
    radius[:2000] = limit * (1.0 + rng.integers(-40, 41, 2000) * 2.0**-52)
    samples = radius * np.exp(1j * rng.uniform(0, 2 * np.pi, radius.size))
    samples = np.concatenate([samples, [np.nan, complex(np.inf, 0), complex(0, np.nan), 1e-300, 1e200 + 0j]])
    no_phases = np.zeros(0)
    verdicts = []
    for u in samples:
        bad = bool(scan_waveforms_and_phases(np.array([u]), no_phases, limit) & BAD_WAVEFORM)
        assert bad == (not abs(u) <= limit), u
        verdicts.append(bad)
    assert 1000 < sum(verdicts) < len(samples) - 1000  # both verdicts, many right at the limit
