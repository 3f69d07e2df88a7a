"""Pulse parametrisations: reference infidelities, sampling convention, limits, distortion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pulsecal.envs import pulses
from pulsecal.envs.physics import Transmon, gate_fidelity, unitaries

ALPHA = -300e6
RABI = 100e6


@pytest.fixture(scope="module")
def fine_pi_pulses() -> dict[str, float]:
    """1 − F of 20 ns σ = T/4 π pulses on a 0.05 ns grid (close to continuous time)."""
    dt = 0.05e-9
    t = Transmon(anharmonicity_hz=ALPHA, rabi_max_hz=RABI, dt_s=dt)
    shape = pulses.DragPulse(1.0, 20e-9)
    amp = pulses.pi_amplitude(shape, RABI, dt)
    out = {}
    for name, beta in (("gauss", 0.0), ("drag", pulses.drag_beta(ALPHA))):
        u = unitaries(t, shape.replace(amplitude=amp, beta_s=beta).waveform(dt))
        out[name] = float(1 - gate_fidelity(u, "X", kind="unitary"))
        out[name + "_vz"] = float(1 - gate_fidelity(u, "X", kind="unitary", virtual_z=True))
    return out


def test_reference_infidelities_match_physics_table(fine_pi_pulses: dict[str, float]) -> None:
    # PHYSICS.md: plain Gaussian 3.0e-3, DRAG β = −1/(2α) ≈ 9e-6 at α/2π = −300 MHz, 20 ns.
    assert fine_pi_pulses["gauss"] == pytest.approx(3.0e-3, rel=0.05)
    assert fine_pi_pulses["gauss_vz"] == pytest.approx(3.0e-3, rel=0.05)
    assert fine_pi_pulses["drag"] == pytest.approx(9e-6, rel=0.1)
    assert fine_pi_pulses["drag_vz"] == pytest.approx(9e-6, rel=0.1)


def test_drag_beta_value_and_sign() -> None:
    assert pulses.drag_beta(-300e6) == pytest.approx(0.2653e-9, rel=1e-3)


def test_pi_amplitude_makes_a_two_level_pi_pulse() -> None:
    dt = 1e-9
    t = Transmon(levels=2, rabi_max_hz=RABI, dt_s=dt)
    shape = pulses.DragPulse(1.0, 20e-9)
    u = unitaries(t, shape.replace(amplitude=pulses.pi_amplitude(shape, RABI, dt)).waveform(dt))
    assert abs(u[1, 0]) ** 2 == pytest.approx(1.0, abs=1e-12)
    half = pulses.pi_amplitude(shape, RABI, dt, angle=math.pi / 2)
    u = unitaries(t, shape.replace(amplitude=half).waveform(dt))
    assert abs(u[1, 0]) ** 2 == pytest.approx(0.5, abs=1e-12)


def test_samples_are_taken_at_interval_midpoints() -> None:
    p = pulses.DragPulse(0.5, 8e-9, beta_s=0.3e-9, sigma_s=2e-9)
    w = p.waveform(1e-9)
    assert w.shape == (8,) and w.dtype == np.complex128
    t = (np.arange(8) + 0.5) * 1e-9
    g = np.exp(-((t - 4e-9) ** 2) / (2 * 4e-18))
    g0 = math.exp(-(16e-18) / (2 * 4e-18))
    i_ref = 0.5 * (g - g0) / (1 - g0)
    np.testing.assert_allclose(w.real, i_ref, atol=1e-14)
    # Q is β times the analytic derivative of I.
    dq = 0.5 * (-(t - 4e-9) / 4e-18) * g / (1 - g0)
    np.testing.assert_allclose(w.imag, 0.3e-9 * dq, atol=1e-14)
    # Symmetric I, antisymmetric Q about the centre.
    np.testing.assert_allclose(w.real, w.real[::-1], atol=1e-15)
    np.testing.assert_allclose(w.imag, -w.imag[::-1], atol=1e-15)


def test_phase_and_detuning_ramp() -> None:
    base = pulses.DragPulse(0.4, 20e-9)
    w0 = base.waveform(1e-9)
    np.testing.assert_allclose(base.replace(phase=0.7).waveform(1e-9), w0 * np.exp(0.7j), atol=1e-15)
    wd = base.replace(detuning_hz=5e6).waveform(1e-9)
    t = (np.arange(20) + 0.5) * 1e-9
    np.testing.assert_allclose(wd, w0 * np.exp(-2j * math.pi * 5e6 * (t - 10e-9)), atol=1e-15)


def test_detuned_pulse_is_resonant_with_a_detuned_qubit() -> None:
    # A drive offset by Δ is resonant with a qubit detuned by Δ (PHYSICS sign convention).
    dt = 0.1e-9
    shape = pulses.DragPulse(1.0, 20e-9)
    amp = pulses.pi_amplitude(shape, RABI, dt)
    qubit = Transmon(levels=2, rabi_max_hz=RABI, detuning_hz=8e6, dt_s=dt)
    p_match = abs(unitaries(qubit, shape.replace(amplitude=amp, detuning_hz=8e6).waveform(dt))[1, 0]) ** 2
    p_wrong = abs(unitaries(qubit, shape.replace(amplitude=amp, detuning_hz=-8e6).waveform(dt))[1, 0]) ** 2
    assert p_match == pytest.approx(1.0, abs=1e-4)
    assert p_wrong < 0.99


def test_lifted_gaussian_is_drag_without_beta() -> None:
    g = pulses.lifted_gaussian(0.3, 16e-9, phase=0.2)
    assert g == pulses.DragPulse(0.3, 16e-9, phase=0.2)


def test_duration_must_be_whole_samples() -> None:
    with pytest.raises(ValueError, match=r"DragPulse\.duration_s=2\.05e-08.*whole number"):
        pulses.DragPulse(0.5, 20.5e-9).waveform(1e-9)
    assert pulses.n_samples(20e-9, 1e-9) == 20
    assert pulses.n_samples(6e-9, 0.5e-9) == 12
    assert pulses.round_to_grid(20.4e-9, 1e-9) == pytest.approx(20e-9)
    assert pulses.DragPulse(0.5, pulses.round_to_grid(20.4e-9, 1e-9)).waveform(1e-9).shape == (20,)


def test_amplitude_limit_policy() -> None:
    loud = pulses.DragPulse(1.0, 8e-9, beta_s=2e-9)  # |u| > 1 where Q peaks
    with pytest.raises(ValueError, match=r"peak \|u\| = .*allowed \|u\| <= 1"):
        loud.waveform(1e-9)
    w = loud.waveform(1e-9, clip=True)
    assert np.max(np.abs(w)) <= 1.0
    raw = pulses.DragPulse(1.0, 8e-9).waveform(1e-9) + 1j * 2e-9 * np.gradient(
        pulses.DragPulse(1.0, 8e-9).waveform(1e-9).real, 1e-9
    )
    clipped, n = pulses.clip_amplitude(raw * 1.5)
    assert n > 0 and np.max(np.abs(clipped)) == pytest.approx(1.0)
    # Clipping keeps the phase of every sample.
    over = np.abs(raw * 1.5) > 1
    np.testing.assert_allclose(np.angle(clipped[over]), np.angle(raw[over]), atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"amplitude": 1.5, "duration_s": 20e-9}, "DragPulse.amplitude"),
        ({"amplitude": 0.5, "duration_s": -1e-9}, "DragPulse.duration_s"),
        ({"amplitude": 0.5, "duration_s": 20e-9, "beta_s": 0.3}, "DragPulse.beta_s"),
        ({"amplitude": 0.5, "duration_s": 20e-9, "sigma_s": 0.0}, "DragPulse.sigma_s"),
        ({"amplitude": float("nan"), "duration_s": 20e-9}, "DragPulse.amplitude"),
    ],
)
def test_drag_validation_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        pulses.DragPulse(**kwargs)


def test_shaped_pulse_adds_smooth_corrections() -> None:
    base = pulses.DragPulse(0.4, 20e-9, beta_s=0.2e-9, detuning_hz=1e6, phase=0.3)
    np.testing.assert_allclose(pulses.ShapedPulse(base).waveform(1e-9), base.waveform(1e-9), atol=1e-15)
    np.testing.assert_allclose(
        pulses.ShapedPulse(base, (0.0, 0.0), (0.0, 0.0)).waveform(1e-9), base.waveform(1e-9), atol=1e-15
    )
    shaped = pulses.ShapedPulse(base, (0.1, -0.05), (0.02, 0.0)).waveform(1e-9)
    diff = shaped - base.waveform(1e-9)
    # Corrections vanish towards both ends and respect the base's frame.
    assert abs(diff[0]) < 0.03 and abs(diff[-1]) < 0.03
    t = (np.arange(20) + 0.5) * 1e-9
    frame = np.exp(1j * (-2 * math.pi * 1e6 * (t - 10e-9) + 0.3))
    ref = (0.1 * np.sin(math.pi * t / 20e-9) - 0.05 * np.sin(2 * math.pi * t / 20e-9)) + 1j * 0.02 * np.sin(
        math.pi * t / 20e-9
    )
    np.testing.assert_allclose(diff, ref * frame, atol=1e-14)
    with pytest.raises(ValueError, match=r"ShapedPulse\.coeffs_q"):
        pulses.ShapedPulse(base, (0.1,), ())
    with pytest.raises(ValueError, match=r"ShapedPulse\.coeffs_i\[0\]"):
        pulses.ShapedPulse(base, (2.0,), (0.0,))


def test_piecewise_constant_resampling() -> None:
    p = pulses.PiecewiseConstantPulse((0.1, 0.2), (0.0, -0.3), segment_s=2e-9)
    np.testing.assert_allclose(p.waveform(1e-9), [0.1, 0.1, 0.2 - 0.3j, 0.2 - 0.3j])
    assert p.duration_s == pytest.approx(4e-9)
    np.testing.assert_allclose(pulses.PiecewiseConstantPulse((0.1,), (0.2,)).waveform(1e-9), [0.1 + 0.2j])
    with pytest.raises(ValueError, match=r"PiecewiseConstantPulse\.segment_s"):
        p.waveform(1.5e-9)
    with pytest.raises(ValueError, match=r"PiecewiseConstantPulse\.q_values"):
        pulses.PiecewiseConstantPulse((0.1, 0.2), (0.0,))
    with pytest.raises(ValueError, match="peak"):
        pulses.PiecewiseConstantPulse((0.9,), (0.9,)).waveform(1e-9)
    q = pulses.PiecewiseConstantPulse.from_waveform([0.5j, 0.25], segment_s=1e-9)
    np.testing.assert_allclose(q.waveform(1e-9), [0.5j, 0.25])


def test_low_pass_is_exact_area_preserving_and_ringing_free() -> None:
    dt = 1e-9
    lp = pulses.LowPass(rise_time_s=2e-9)
    tau = 2e-9 / math.log(9.0)
    # Step response: exact average of 1 − e^{−t/τ} over each sample.
    step = np.ones(10, dtype=np.complex128)
    y = lp.apply(step, dt)
    assert y.shape == (10 + lp.tail_samples(dt),)
    k = np.arange(10)
    ref = 1 - tau / dt * (np.exp(-k * dt / tau) - np.exp(-(k + 1) * dt / tau))
    np.testing.assert_allclose(y[:10].real, ref, atol=1e-14)
    # Area (rotation angle) kept up to the cut tail; no overshoot; phase carried.
    w = pulses.DragPulse(0.6, 20e-9, phase=1.1).waveform(dt)
    yw = lp.apply(w, dt)
    assert abs(yw.sum() - w.sum()) < 1e-4 * abs(w.sum())
    assert np.max(np.abs(yw)) <= np.max(np.abs(w)) + 1e-15
    assert abs(yw[-1]) < 1e-4 * np.max(np.abs(yw))
    np.testing.assert_allclose(pulses.LowPass(0.0).apply(w, dt), w)
    with pytest.raises(ValueError, match=r"LowPass\.rise_time_s"):
        pulses.LowPass(-1e-9)
