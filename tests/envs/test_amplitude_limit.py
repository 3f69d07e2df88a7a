"""Amplitude-limited devices: the gate is lengthened to where its π pulse fits the headroom,
a device that fits no allowed gate is refused naming the limit, and every clip is in info.

A weakly driven device (Ω_R/2π = 35 MHz) needs |u| ≈ 1.33 for the 20 ns lifted-Gaussian π
pulse; the amplitude needed falls as the envelope's area grows, so ~31 ns fits 0.9 of full
scale. At 8 MHz even 80 ns (4× nominal) would need |u| ≈ 1.5: refused.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import pulsecal.envs  # noqa: F401  (registers the env ids)
from pulsecal.envs.amplitude_limit import AmplitudeLimit, amplitude_at, fit_gate, stretched
from pulsecal.envs.calibration import CalibrationTask, DragGate
from pulsecal.envs.device import DeviceParams, SimulatedDevice
from pulsecal.envs.drag import nominal_values
from pulsecal.envs.presets import get_preset

DT = 1e-9


def _weak(rabi_hz: float) -> DeviceParams:
    p = get_preset("transmon_20ns").params
    return p.replace(transmon=p.transmon.replace(rabi_max_hz=rabi_hz))


def test_fit_gate_keeps_a_fitting_gate_and_picks_the_shortest_that_fits() -> None:
    gate = DragGate(20e-9)
    lim = AmplitudeLimit()
    same, fit = fit_gate(0.6, gate, DT, lim)
    assert same is gate and not fit.lengthened and fit.failure is None
    a = nominal_values(_weak(35e6).transmon, gate)[0]
    assert 1.3 < a < 1.4  # Ω_R/2π ≈ 47 MHz needs |u| = 1: 47/35 ≈ 1.34
    longer, fit = fit_gate(a, gate, DT, lim)
    n = longer.n_samples(DT)
    assert fit.lengthened and fit.failure is None and fit.duration_s == pytest.approx(n * DT)
    assert abs(fit.amplitude) <= 0.9 < abs(amplitude_at(a, gate, stretched(gate, n - 1, DT), DT))
    # the same rotation: amplitude × envelope area is kept
    assert fit.amplitude * longer.area_s(DT) == pytest.approx(a * gate.area_s(DT), rel=1e-12)
    grid, _ = fit_gate(a, gate, DT, AmplitudeLimit(grid_samples=8))
    assert grid.n_samples(DT) % 8 == 0 and grid.n_samples(DT) >= n


def test_fit_gate_refuses_naming_the_limit() -> None:
    gate = DragGate(20e-9)
    a = nominal_values(_weak(8e6).transmon, gate)[0]
    longest, fit = fit_gate(a, gate, DT, AmplitudeLimit())
    assert longest.n_samples(DT) == 80
    assert fit.failure is not None and fit.failure.startswith("amplitude limit: needs |u|=1.")
    assert "at 80 ns > 1" in fit.failure
    _, off = fit_gate(1.2, gate, DT, AmplitudeLimit(lengthen=False))
    assert off.failure is not None and "at 20 ns > 1" in off.failure and "lengthening off" in off.failure
    with pytest.raises(ValueError, match=r"amplitude_limit.headroom=1.5 is out of range: allowed \(0, 1\]"):
        AmplitudeLimit(headroom=1.5)


def test_mixed_gates_measure_as_each_device_alone() -> None:
    """The task runs each device at its own gate: a batch of a nominal and a lengthened
    device reads what each reads alone (same device seeds)."""
    params = [get_preset("transmon_20ns").params, _weak(35e6)]

    def task(which: list[int]) -> CalibrationTask:
        devs = [SimulatedDevice(params[k], rng=np.random.default_rng(k)) for k in which]
        t = CalibrationTask(devs, DragGate(20e-9))
        starts = np.array([nominal_values(d.current_transmon(), t.gate) for d in devs])
        return t, t.fit_gates(starts)[0]

    both, p = task([0, 1])
    assert both.gates[0] is both.gate and both.gates[1].n_samples(DT) > 20
    mixed = both.measure(p, 40)
    for k in (0, 1):
        alone, q = task([k])
        np.testing.assert_array_equal(alone.measure(q, 40)[0], mixed[k])
    truth = both.true_metrics(p)
    assert truth is not None and truth["coherence_limit"][1] > truth["coherence_limit"][0]


def _episode(env_id: str, params: DeviceParams, action: float = 0.0, **kw: object) -> list[dict]:
    env = gym.make(env_id, **kw)
    _, info = env.reset(seed=1, options={"device_params": params})
    infos = [info]
    done = False
    while not done:
        a = np.full(env.action_space.shape, action, dtype=np.float32)
        _, _, term, trunc, info = env.step(a)
        infos.append(info)
        done = term or trunc
    env.close()
    return infos


def test_v1_estimator_calibrates_a_weak_drive_device_at_a_longer_gate() -> None:
    """The v1 estimator alone (zero actions) at 1000 shots on Ω_R/2π = 35 MHz: the gate is
    31 ns here (the start's amplitude, 0.9 × full scale) and ends near its coherence limit."""
    infos = _episode("pulsecal/GateCalibration-v1", _weak(35e6), shot_budget=1000)
    first, last = infos[0], infos[-1]
    assert first["gate_duration_s"] == pytest.approx(31e-9) == last["gate_duration_s"]
    assert last["waveform"].shape == (31,)
    assert last["limits"] == {} and last["limit_failure"] is None
    ratio = (1 - last["fidelity"]) / last["coherence_limit"]
    assert ratio < 1.1, ratio


def test_fitting_device_keeps_the_nominal_gate_and_reports_no_limit() -> None:
    infos = _episode("pulsecal/GateCalibration-v1", get_preset("transmon_20ns").params, shot_budget=600)
    assert {i["gate_duration_s"] for i in infos} == {20e-9}
    assert all(i["limits"] == {} and i["limit_failure"] is None for i in infos)


def test_device_beyond_the_longest_gate_is_failed_naming_the_limit() -> None:
    for env_id in ("pulsecal/GateCalibration-v0", "pulsecal/GateCalibration-v1"):
        infos = _episode(env_id, _weak(8e6), shot_budget=600)
        last = infos[-1]
        assert last["gate_duration_s"] == pytest.approx(80e-9)
        assert last["limit_failure"].startswith("amplitude limit: needs |u|=1.")
        assert "at 80 ns > 1" in last["limit_failure"]
        amp = last["limits"]["amplitude"]
        assert amp["bound"] == "full scale" and amp["requested"] > 1 and amp["applied"] == 1.0


def test_window_clips_are_counted_in_info() -> None:
    """v0: +1 on every parameter each step walks into the window (± window·max_step)."""
    infos = _episode("pulsecal/GateCalibration-v0", get_preset("transmon_20ns").params, action=1.0,
                     shot_budget=20 * 6 * 8)
    assert infos[0]["limits"] == {} and infos[1]["limits"] == {}
    last = infos[-1]["limits"]["amplitude"]
    # window 2 × max_step: steps 1 and 2 fit, every later one is brought back
    assert last["bound"] == "window" and last["count"] == len(infos) - 3
    assert last["requested"] > last["applied"] == pytest.approx(infos[-1]["params"][0])
