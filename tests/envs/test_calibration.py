"""The shared calibration core: waveforms, probe physics, analysis, shot accounting.

Probe models (derived in ``calibration.Probe``): with an over-rotation ε per X,
SX·X^n ends (n + 1/2)·π·ε past the equator, so P1 = (1 + sin((n + ½)πε))/2; Ramsey with
a π/2 quadrature reads P1 = (1 − sin(2π(δ − Δ)τ))/2 for qubit detuning δ and drive
correction Δ; a DRAG error tilts X and X̄ oppositely, so SY·(X̄X)^n is odd in β − β_opt.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pulsecal.envs.calibration import (
    CalibrationTask,
    DragGate,
    DragParams,
    Probe,
    analyse,
    nominal_params,
    optimal_params,
)
from pulsecal.envs.device import DeviceParams, SimulatedDevice
from pulsecal.envs.physics import Transmon
from pulsecal.envs.pulses import DragPulse

GATE = DragGate(20e-9)


def _device(**changes: float) -> SimulatedDevice:
    tr = Transmon(anharmonicity_hz=-300e6, rabi_max_hz=100e6, detuning_hz=changes.pop("detuning_hz", 0.0))
    return SimulatedDevice(DeviceParams(tr, **changes), rng=np.random.default_rng(0))


def test_gate_waveform_matches_pulses_drag() -> None:
    p = DragParams(0.4, 0.3e-9, 250e3, 0.7)
    w = GATE.waveforms(p.as_array(), 1e-9)
    ref = DragPulse(p.amplitude, 20e-9, p.beta_s, p.detuning_hz, p.phase).waveform(1e-9)
    np.testing.assert_allclose(w, ref, atol=1e-15)
    np.testing.assert_allclose(GATE.waveforms(p.as_array(), 1e-9, 0.5), 0.5 * ref, atol=1e-15)


@pytest.mark.parametrize("amplitude", [0.5, 1.0 - 2e-9, 1.0, 1.05, math.nan])
def test_gate_waveform_clips_like_the_array_form(amplitude: float) -> None:
    # The clip runs only when the kernel's bound on |amp·shape| cannot rule it out; either
    # way the samples are the array form's, bit for bit, and saturated ones sit at |u| = 1.
    p = np.array([[amplitude, 2e-9, 3e5, 0.4], [0.3, 0.0, 0.0, 0.0]])
    g, dg, x = GATE.envelope(1e-9)
    ref = (p[:, :1] * (g + (1j * p[:, 1:2]) * dg)) * np.exp(1j * (-2 * math.pi * p[:, 2:3] * x + p[:, 3:]))
    mag = np.abs(ref)
    ref = np.where(mag > 1.0, ref / np.maximum(mag, 1.0), ref)
    with np.errstate(invalid="ignore"):
        w = GATE.waveforms(p, 1e-9)
    np.testing.assert_array_equal(w, ref)
    assert not np.any(np.abs(w) > 1.0)


def test_amplitude_probe_is_signed_and_matches_model() -> None:
    dev = _device()
    opt = optimal_params(dev.current_transmon(), GATE)
    task = CalibrationTask([dev], GATE, (Probe("amplitude", 8),))
    for eps in (-0.01, 0.01):
        p = opt.as_array() * np.array([1 + eps, 1, 1, 1])
        p1 = dev.excited_probabilities(task.sequences(p[None])[0])[0]
        expected = 0.5 * (1 + math.sin(8.5 * math.pi * eps))
        assert p1 == pytest.approx(expected, abs=0.01)
        angle = analyse([[p1]], task.probes, GATE.duration_s).family_angle[0, 0]
        assert angle == pytest.approx(math.pi * eps, rel=0.1)


def test_ramsey_frame_ramp_cancels_qubit_detuning_across_delays() -> None:
    dev = _device(detuning_hz=150e3)
    nom = nominal_params(dev.current_transmon(), GATE)
    assert nom.detuning_hz == 150e3
    task = CalibrationTask([dev], GATE, (Probe("ramsey", delay_s=1e-6),))
    corrected = dev.excited_probabilities(task.sequences(nom.as_array()[None])[0])[0]
    assert corrected == pytest.approx(0.5, abs=2e-3)
    off = nom.as_array().copy()
    off[2] = 100e3  # 50 kHz residual: P1 = (1 − sin(2π·50e3·1e-6))/2
    p1 = dev.excited_probabilities(task.sequences(off[None])[0])[0]
    assert p1 == pytest.approx(0.5 * (1 - math.sin(2 * math.pi * 50e3 * 1e-6)), abs=0.01)


def test_drag_probe_is_odd_in_beta_error() -> None:
    dev = _device()
    opt = optimal_params(dev.current_transmon(), GATE).as_array()
    task = CalibrationTask([dev], GATE, (Probe("drag", 4),))
    vals = []
    for rel in (-0.2, 0.0, 0.2):
        p = opt * np.array([1, 1 + rel, 1, 1])
        vals.append(dev.excited_probabilities(task.sequences(p[None])[0])[0])
    assert vals[1] == pytest.approx(0.5, abs=5e-3)
    assert (vals[0] - 0.5) * (vals[2] - 0.5) < 0
    assert abs(vals[0] - 0.5) > 0.05


def test_analyse_unwraps_deep_probe_with_shallow_one() -> None:
    probes = (Probe("amplitude", 4), Probe("amplitude", 16))
    angle = 0.12  # deep probe accumulates 16.5·0.12 = 1.98 rad: past the sine's turning point
    p1 = [[0.5 * (1 + math.sin(pr.gain(20e-9) * angle)) for pr in probes]]
    a = analyse(p1, probes, 20e-9)
    assert a.family_angle[0, 0] == pytest.approx(angle, rel=1e-6)
    assert a.infidelity[0] == pytest.approx(angle**2 / 6, rel=1e-6)


def test_measure_counts_shots_and_skips_zero() -> None:
    devs = [_device(), _device()]
    task = CalibrationTask(devs, GATE)
    p = np.tile(nominal_params(devs[0].current_transmon(), GATE).as_array(), (2, 1))
    out = task.measure(p, [10, 0])
    assert out.shape == (2, len(task.probes))
    assert np.all(np.isfinite(out[0])) and np.all(np.isnan(out[1]))
    assert task.shots_used.tolist() == [10 * len(task.probes), 0]
    assert devs[0].clock_s > 0 and devs[1].clock_s == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"kind": "nope"}, "Probe.kind"), ({"kind": "amplitude", "depth": 3}, "Probe.depth"),
     ({"kind": "ramsey"}, "Probe.delay_s")],
)
def test_probe_validation_names_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Probe(**kwargs)


def test_drag_params_validation() -> None:
    with pytest.raises(ValueError, match=r"DragParams\.amplitude"):
        DragParams(1.5, 0.0)
    with pytest.raises(ValueError, match=r"DragParams\.beta_s"):
        DragParams(0.5, float("nan"))


# -- the template path: same sequences, same counts as the PulseSequence path -----------------


def _fleet(open_system: bool, n: int = 5, **changes: float) -> list[SimulatedDevice]:
    tr = Transmon(anharmonicity_hz=-300e6, rabi_max_hz=100e6, detuning_hz=0.3e6)
    return [SimulatedDevice(DeviceParams(tr.replace(detuning_hz=0.3e6 * i), p1_given_0=0.02, **changes),
                            rng=np.random.default_rng(20 + i), open_system=open_system)
            for i in range(n)]


def _rows(rng: np.random.Generator, n: int) -> np.ndarray:
    nom = nominal_params(Transmon(anharmonicity_hz=-300e6, rabi_max_hz=100e6), GATE).as_array()
    p = nom * (1 + rng.uniform(-0.05, 0.05, (n, 4)))
    p[:, 2] = rng.uniform(-1e6, 1e6, n)
    p[0, 2] = 0.0  # no frame ramp: its frame changes vanish from the sequences
    return p


@pytest.mark.parametrize("probes", [None, (Probe("amplitude", 0), Probe("drag", 0), Probe("drag", 1),
                                        Probe("amplitude", 2), Probe("ramsey", delay_s=37e-9))])
def test_template_expands_to_the_probe_sequences(probes: tuple[Probe, ...] | None) -> None:
    """``Probe.tokens`` (the template) and ``Probe.sequence`` are two writings of one layout."""
    task = CalibrationTask(_fleet(True, 3), GATE, **({} if probes is None else {"probes": probes}))
    p = _rows(np.random.default_rng(1), 3)
    template, waves, phases = task.template_inputs(p)
    for b, seqs in enumerate(task.sequences(p)):
        got = template.expand(waves[b], phases[b], task.dt_s)
        for g, s in zip(got, seqs, strict=True):
            assert g.name == s.name and len(g.ops) == len(s.ops)
            for x, y in zip(g.ops, s.ops, strict=True):
                assert type(x) is type(y)
                if hasattr(x, "waveform"):
                    np.testing.assert_array_equal(x.waveform, y.waveform)
                else:
                    assert x == y  # VirtualZ phase and Delay duration, bit for bit


@pytest.mark.parametrize("open_system", [True, False])
def test_measure_template_path_equals_sequence_path(open_system: bool) -> None:
    """``measure`` runs simulated devices through ``SimulatedDevice.run_template``; it must
    give exactly what the generic ``run_on_devices`` gives for ``sequences`` (populations to
    the bit, hence counts, generators and clocks), mixed shot counts and a device that
    appears twice included."""
    from pulsecal.envs import sequence_compiler
    from pulsecal.envs.calibration import run_on_devices

    fast, slow = _fleet(open_system), _fleet(open_system)
    tf, ts = CalibrationTask(fast, GATE), CalibrationTask(slow, GATE)
    rng = np.random.default_rng(2)
    index = [0, 1, 2, 3, 4, 2]
    shots = [20, 0, 20, 7, 20, 7]
    for _ in range(6):
        p = _rows(rng, len(index))
        got = tf.measure(p, shots, index=index)
        counts = run_on_devices([slow[i] for i in index], ts.sequences(p), shots)
        want = np.full_like(got, np.nan)
        for j, c in enumerate(counts):
            if shots[j]:
                want[j] = c[:, 1] / shots[j]
        np.testing.assert_array_equal(got, want)
        devs = [fast[i] for i in index]
        pf = SimulatedDevice.template_probabilities(devs, *tf.template_inputs(p))
        ps = sequence_compiler.populations([slow[i] for i in index], ts.sequences(p))
        np.testing.assert_array_equal(pf, np.stack(ps))
    assert [d.clock_s for d in fast] == [d.clock_s for d in slow]
    np.testing.assert_array_equal(tf.shots_used, 6 * np.array([120, 0, 120 + 42, 42, 120]))


def test_run_template_equals_run_many_on_any_layout() -> None:
    from pulsecal.envs.device import SequenceTemplate

    rng = np.random.default_rng(3)
    toks = [("play", 0), ("play", 1), ("play", 2), ("frame", 0), ("frame", 1), ("delay", 0),
            ("delay", 37), ("delay", 300)]
    layout = (*(tuple(toks[i] for i in rng.integers(0, len(toks), int(rng.integers(0, 30))))
                for _ in range(5)), ())
    template = SequenceTemplate(layout, n_waveforms=3, n_phases=2)
    a, b = _fleet(True, 3, amplitude_scale=0.98), _fleet(True, 3, amplitude_scale=0.98)
    waves = np.stack([np.stack([DragPulse(amp, 20e-9, beta_s=0.2e-9, phase=ph).waveform(1e-9)
                                for amp, ph in ((0.4, 0.0), (0.2, 1.0), (0.3, -2.0))]) for _ in a])
    waves *= rng.uniform(0.9, 1.0, (3, 1, 1))
    phases = rng.uniform(-3, 3, (3, 2))
    phases[1, 0] = 0.0
    got = SimulatedDevice.run_template(a, template, waves, phases, 50)
    want = SimulatedDevice.run_many(b, [template.expand(waves[i], phases[i], 1e-9) for i in range(3)], 50)
    np.testing.assert_array_equal(got, np.stack(want))
    assert [d.clock_s for d in a] == [d.clock_s for d in b]
    with pytest.raises(ValueError, match="phases"):
        SimulatedDevice.run_template(a, template, waves, np.full((3, 2), np.nan), 50)
    with pytest.raises(ValueError, match="waveforms"):
        SimulatedDevice.run_template(a, template, 5 * waves, phases, 50)
    with pytest.raises(ValueError, match=r"SequenceTemplate\.sequences"):
        SequenceTemplate(((("play", 3),),), n_waveforms=3, n_phases=0)


def _analyse_array_form(p1: np.ndarray, probes: tuple, gate_duration_s: float) -> tuple:
    """``analyse`` written with NumPy arrays: the reference the numba kernel must match bit for bit."""
    from pulsecal.envs.probe_analysis import _analysis_ranks
    from pulsecal.envs.probes import FAMILIES

    two_pi = 2.0 * math.pi
    p = np.atleast_2d(np.asarray(p1, dtype=np.float64))
    gains = np.array([pr.gain(gate_duration_s) for pr in probes])
    theta = np.arcsin(np.clip(2.0 * p - 1.0, -1.0, 1.0))
    ang = theta / gains
    num = np.zeros((p.shape[0], len(FAMILIES)))
    den = np.zeros((p.shape[0], len(FAMILIES)))
    for fams, cols, weights in _analysis_ranks(tuple(pr.kind for pr in probes), tuple(gains.tolist())):
        g = gains[cols]
        nu, de = num[:, fams], den[:, fams]
        th = theta[:, cols]
        ok = np.isfinite(th)
        est = np.where(de > 0, nu / np.where(de > 0, de, 1.0), 0.0)
        pred = g * est
        t = np.where(ok, th, 0.0)
        c1 = t + two_pi * np.round((pred - t) / two_pi)
        c2 = math.pi - t + two_pi * np.round((pred - (math.pi - t)) / two_pi)
        unwrapped = np.where(de > 0, np.where(np.abs(c1 - pred) <= np.abs(c2 - pred), c1, c2), t)
        a_k = unwrapped / g
        ang[:, cols] = np.where(ok, a_k, np.nan)
        num[:, fams] = nu + np.where(ok, weights * a_k, 0.0)
        den[:, fams] = de + np.where(ok, weights, 0.0)
    fam = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return ang, fam, np.sum(fam**2, axis=1) / 6.0


def test_analyse_matches_its_array_form_bit_for_bit() -> None:
    from pulsecal.envs.calibration import default_probes

    rng = np.random.default_rng(3)
    for probes in (default_probes(), default_probes()[::-1], default_probes()[:3]):
        for _ in range(50):
            # (beyond [0, 1] and ±inf too: the clip before the arcsine is compiled)
            p1 = rng.uniform(-0.1, 1.1, (9, len(probes)))
            p1[rng.uniform(size=p1.shape) < 0.1] = np.nan
            p1[rng.uniform(size=p1.shape) < 0.1] = 0.5
            p1[rng.uniform(size=p1.shape) < 0.05] = rng.choice([0.0, 1.0, np.inf, -np.inf])
            got = analyse(p1, probes, 20e-9)
            ref = _analyse_array_form(p1, probes, 20e-9)
            for a, b in zip((got.angles, got.family_angle, got.infidelity), ref, strict=True):
                assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("open_system", [True, False])
def test_truth_after_measure_is_the_measured_operators_or_computed_afresh(open_system: bool) -> None:
    """``x_truth`` right after ``measure`` reuses the X propagators the measurement applied;
    they must be the device's truth (``true_metrics_devices`` recomputes it from the
    waveforms: the same numbers up to the batch's float rounding). A drifted model, other
    rows or no preceding measurement fall back to the recomputation itself."""
    from pulsecal.envs.calibration import true_metrics_devices
    from pulsecal.envs.drift import DriftModel, RandomWalk

    fleet = _fleet(open_system)
    task = CalibrationTask(fleet, GATE)
    p = _rows(np.random.default_rng(4), 5)
    idx = [4, 0, 2, 3, 1]
    task.measure(p, 20, index=idx)
    assert task._last_ops is not None
    w, got = task.x_truth(p, idx)
    want = true_metrics_devices([fleet[i] for i in idx], w, "X")
    assert got is not None and want is not None and list(got) == list(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-13)
    assert task._last_ops is None  # one-shot
    _, again = task.x_truth(p, idx)
    assert again is not None and all(np.array_equal(again[k], want[k]) for k in want)
    task.measure(p, 20, index=idx)
    _, other = task.x_truth(p[::-1].copy(), idx[::-1])  # other rows: recomputed
    ref = true_metrics_devices([fleet[i] for i in idx[::-1]], task.gate.waveforms(p[::-1], task.dt_s), "X")
    assert other is not None and ref is not None and all(np.array_equal(other[k], ref[k]) for k in ref)

    drift = DriftModel(amplitude=RandomWalk(0.05))
    dev = SimulatedDevice(DeviceParams(fleet[0].current_params().transmon), drift,
                          rng=np.random.default_rng(5), open_system=open_system)
    task = CalibrationTask([dev], GATE)
    task.measure(p[:1], 50)
    model_then = task._last_ops[1].models[0] if task._last_ops is not None else None
    w, got = task.x_truth(p[:1], [0])
    assert dev.current_transmon() != model_then  # the measurement's shots moved the drift
    want = true_metrics_devices([dev], w, "X")
    assert got is not None and want is not None and all(np.array_equal(got[k], want[k]) for k in want)


def test_run_template_follows_drift_with_its_delay_channels() -> None:
    """``run_template`` reuses the stacked delay channels of a fleet of models from call to
    call; when T1 drifts (a new model per device) the channels must follow, as
    ``run_many``'s do."""
    from pulsecal.envs.device import SequenceTemplate
    from pulsecal.envs.drift import DriftModel, RandomWalk

    template = SequenceTemplate(((("play", 0), ("delay", 300), ("play", 0)),
                                 (("play", 0), ("delay", 37), ("frame", 0), ("play", 0))),
                                n_waveforms=1, n_phases=1)
    drift = DriftModel(t1_factor=RandomWalk(0.3))
    tr = Transmon(anharmonicity_hz=-300e6, rabi_max_hz=100e6, t1_s=2e-6, t2_s=3e-6)

    def fleet() -> list[SimulatedDevice]:
        return [SimulatedDevice(DeviceParams(tr), drift, rng=np.random.default_rng(40 + i)) for i in range(3)]

    a, b = fleet(), fleet()
    waves = np.stack([DragPulse(0.3, 20e-9).waveform(1e-9)[None] for _ in a])
    phases = np.full((3, 1), 0.7)
    for _ in range(3):
        got = SimulatedDevice.template_probabilities(a, template, waves, phases)
        want = [d.excited_probabilities(template.expand(waves[i], phases[i], 1e-9)) for i, d in enumerate(b)]
        np.testing.assert_allclose(got, np.stack(want), rtol=0, atol=1e-12)
        for d in (*a, *b):
            d.advance(3600.0)
    assert a[0].current_transmon().t1_s != tr.t1_s  # the models did drift
