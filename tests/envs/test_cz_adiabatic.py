"""The adiabatic CZ shape (``CZPulse(shape="adiabatic")``, Martinis & Geller, PRA 90,
022307 (2014)): its flux ↔ angle map, its waveform, and two closed forms.

Closed forms (the |11⟩–|02⟩ pair alone, H/h = [[0, g], [g, Δ(t)]] with Δ(t) the shape's
own map): (1) in the adiabatic limit |11⟩ follows the lower eigenstate, whose energy is
−g·tan(θ/2) below |11⟩'s (θ = arctan(2g/Δ)), so the |11⟩ amplitude ends with the phase
2π∫g·tan(θ/2)dt that ``phase_estimate`` integrates; (2) the non-adiabatic error
(population left in |02⟩) falls as the pulse gets longer at fixed g. Then the full
device: at the family's optimum on a closed pair the conditional phase is π."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy.linalg import expm

from pulsecal.agents.baselines.model_optimum_2q import ModelOptimumCZ
from pulsecal.envs import cz_calibration_core as core
from pulsecal.envs.multi_qubit_presets import make_multi_qubit_device

ADIABATIC = core.CZPulse(shape="adiabatic", lambda_2=0.378)


# The single-term series (λ_2 = λ_3 = 0) of the closed forms: the pure adiabatic shape.
SINGLE_TERM = core.CZPulse(shape="adiabatic")


def _hamiltonian(pulse: core.CZPulse, delta_hz: float) -> np.ndarray:
    return 2 * np.pi * np.array([[0.0, pulse.coupling_hz], [pulse.coupling_hz, delta_hz]])


def _two_level(pulse: core.CZPulse, amplitude: float, length: float, steps: int = 4000) -> np.ndarray:
    """Amplitudes on the idle pair's (lower, upper) eigenstates after the pulse, from the
    lower one (|11⟩ dressed by |02⟩ at idle); the shape's continuous θ(t), no sampling."""
    t = (np.arange(steps) + 0.5) * length / steps
    delta = 2 * pulse.coupling_hz / np.tan(pulse.angle_trace(amplitude, t, length))
    _, v = np.linalg.eigh(_hamiltonian(pulse, float(pulse.detuning_hz(0.0))))
    psi = v[:, 0].astype(np.complex128)
    for d in delta:
        psi = expm(-1j * _hamiltonian(pulse, float(d)) * (length / steps)) @ psi
    return np.asarray(v.conj().T @ psi)


def test_map_is_consistent() -> None:
    p = ADIABATIC
    assert float(p.angle(p.resonance_phi0)) == pytest.approx(math.pi / 2, abs=1e-9)
    assert float(p.detuning_hz(0.0)) == pytest.approx(6.1e9 - (5.5e9 + 230e6), rel=1e-9)
    phis = np.linspace(0.01, 0.2, 20)
    assert np.allclose(p.flux_of_angle(p.angle(phis)), phis, atol=1e-12)


def test_waveform_is_the_amplitude_at_its_midpoint_and_symmetric() -> None:
    p = ADIABATIC
    w = p.waveform(0.155, 50e-9)
    assert w.size == 50 + p.settle_samples and np.all(w[50:] == 0)
    assert np.allclose(w[:50], w[:50][::-1], atol=1e-12)
    mid = float(p.flux_of_angle(p.angle_trace(0.155, np.array([25e-9]), 50e-9))[0])
    assert mid == pytest.approx(0.155, abs=1e-9)
    # λ_2 > 0 adds two humps around the midpoint, slightly above it
    assert 0.155 < float(w.max()) < 0.156
    assert np.all(np.diff(w[:15]) > 0) and w[0] > 0
    # the default flat top is untouched by the option
    assert np.array_equal(core.CZPulse().waveform(0.155, 50e-9),
                          dataclasses.replace(p, shape="flat_top").waveform(0.155, 50e-9))


@pytest.mark.parametrize(("field", "value"), [("shape", "snz"), ("coupling_hz", 0.0), ("resonance_phi0", 0.6),
                                              ("lambda_2", 1.5), ("tuning_hz", 1e8)])
def test_bad_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"CZPulse.{field}"):
        core.CZPulse(**{field: value})  # type: ignore[arg-type]


def test_adiabatic_phase_matches_the_two_level_closed_form() -> None:
    p = SINGLE_TERM
    amp = p.resonance_phi0
    # The lower branch's energy is −g·tan(θ/2): the |11⟩ amplitude ends with e^{+i·2π∫g
    # tan(θ/2) dt}. The first non-adiabatic correction, (θ'/2)²/gap, shifts it by a
    # fraction that falls as 1/T (measured: 4.7 % at 80 ns, g·T = 0.9).
    rel = []
    for length in (80e-9, 320e-9):
        psi = _two_level(p, amp, length)
        assert abs(psi[1]) ** 2 < 2e-4
        want = p.phase_estimate(amp, length)
        rel.append(abs(math.remainder(float(np.angle(psi[0])) - want, 2 * math.pi)) / want)
    assert rel[0] < 0.06
    assert rel[1] < 0.4 * rel[0] and rel[1] < 0.02


def test_two_level_leakage_falls_with_length() -> None:
    p = SINGLE_TERM
    # The worst population left on the upper branch over a few lengths around each T (the
    # error oscillates in T, with zeros; its envelope is what falls).
    def worst(centre: float) -> float:
        return max(float(abs(_two_level(p, p.resonance_phi0, centre + d, steps=1500)[1]) ** 2)
                   for d in (-3e-9, 0.0, 3e-9))

    # measured: 0.35, 1.9e-3, 4.3e-4 (g = 11.3 MHz: g·T = 0.45, 0.9, 1.8)
    short, mid, long = worst(40e-9), worst(80e-9), worst(160e-9)
    assert short > 50 * mid > 100 * long


def test_conditional_phase_is_pi_at_the_closed_optimum() -> None:
    dev = make_multi_qubit_device("two_transmons_cz", np.random.default_rng(0), open_system=False,
                                  spectators="none")
    r = ModelOptimumCZ(pulse=ADIABATIC, maxfev=80).run(dev, np.array([0.1533, 52e-9, 0.0, 0.0]))
    assert r.pulse is not None and r.pulse.shape == "adiabatic"
    t = core.true_metrics(dev, r.pulse, r.params)
    assert abs(math.remainder(t["conditional_phase"] - math.pi, 2 * math.pi)) < 0.02 * math.pi
    assert t["leakage"] < 5e-4
    assert 1.0 - t["fidelity"] < 1e-3
    assert 30e-9 <= r.params[1] <= 60e-9


def test_leakage_limit_is_the_thermal_excitation_closed_form() -> None:
    """L1 of the dissipator alone over T from the maximally mixed computational state:
    each qubit is in |1⟩ half the time and goes to |2⟩ at rate 2·p/T1 (the collapse
    operator √(p/T1)·a†, |⟨2|a†|1⟩|² = 2), so L1 ≈ T·Σ_q p_q/T1_q."""
    params = np.array([0.15, 54e-9, 0.0, 0.0])
    pulse = core.CZPulse()
    closed = make_multi_qubit_device("two_transmons_cz", np.random.default_rng(0), open_system=False,
                                     spectators="none")
    assert core.leakage_limit(closed, pulse, params) == 0.0
    dev = make_multi_qubit_device("two_transmons_cz", np.random.default_rng(0), spectators="none")
    t = pulse.waveform(0.15, 54e-9).size * pulse.dt_s
    want = t * sum(m.thermal_population / m.t1_s for m in dev.current_model().modes)
    assert core.leakage_limit(dev, pulse, params) == pytest.approx(want, rel=0.02)


def test_env_option_plays_the_adiabatic_shape_and_keeps_the_default() -> None:
    from pulsecal.envs.cz_calibration import CZCalibrationConfig, CZCalibrationEnv

    env = CZCalibrationEnv(open_system=False, pulse_shape="adiabatic")
    _, info = env.reset(seed=0)
    amp, length = info["params"][:2]
    w = ADIABATIC.waveform(amp, length)
    assert np.allclose(info["waveform"][: w.size], w) and np.all(info["waveform"][w.size:] == 0)
    assert CZCalibrationEnv(open_system=False).core.pulse.shape == "flat_top"
    with pytest.raises(ValueError, match=r"CZCalibrationConfig\.pulse_shape"):
        CZCalibrationConfig(pulse_shape="snz")
