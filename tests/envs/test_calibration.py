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
