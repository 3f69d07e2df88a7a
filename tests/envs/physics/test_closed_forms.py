"""Propagators and metrics against closed-form results, each derived next to its test.

Model (PHYSICS.md): H/ħ = 2πδ·n + πα·n(n−1) + πΩ_R·(u·a† + u*·a), collapse operators
√(1/T1)·a and √(2/Tφ)·n with 1/Tφ = 1/T2 − 1/(2T1). On two levels a + a† = σx,
i(a† − a) = σy and n = (1 − σz)/2; the anharmonic term vanishes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pulsecal.envs.physics import (
    Transmon,
    coherence_limit,
    gate_fidelity,
    leakage,
    superoperators,
    unitaries,
)

ENGINES = ["numpy", "numpy-reference", "qutip"]
SX = np.array([[0, 1], [1, 0]], dtype=complex)
SY = np.array([[0, -1j], [1j, 0]], dtype=complex)
SZ = np.diag([1.0, -1.0]).astype(complex)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("quadrature", [1.0, 1j, np.exp(0.3j)])
def test_two_level_rabi(engine: str, quadrature: complex) -> None:
    """Constant drive u = e^{iφ} on two levels, δ = 0, for a time t.

    H = πΩ_R·(cos φ·σx + sin φ·σy) = πΩ_R·σ_φ with σ_φ² = I, so
    U(t) = cos(πΩ_R t)·I − i·sin(πΩ_R t)·σ_φ: a rotation by 2πΩ_R·t about the φ axis,
    and the excited population after starting in |0> is sin²(πΩ_R t).
    """
    tr = Transmon(levels=2, rabi_max_hz=37e6, dt_s=1e-9)
    n_samples = 11
    t = n_samples * tr.dt_s
    u = complex(quadrature)
    u /= abs(u)
    got = unitaries(tr, np.full(n_samples, u), engine=engine)
    sigma = u.real * SX + u.imag * SY
    angle = math.pi * tr.rabi_max_hz * t
    expected = math.cos(angle) * np.eye(2) - 1j * math.sin(angle) * sigma
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert abs(abs(got[1, 0]) ** 2 - math.sin(angle) ** 2) < 1e-12


@pytest.mark.parametrize("engine", ENGINES)
def test_detuned_rabi(engine: str) -> None:
    """Constant drive u = 1 with detuning δ on two levels.

    H = 2πδ·n + πΩσx = πδ·I + π(Ω·σx − δ·σz). With Ω' = √(Ω² + δ²),
    U = e^{−iπδt}·[cos(πΩ't)·I − i·sin(πΩ't)·(Ω·σx − δ·σz)/Ω'].
    """
    tr = Transmon(levels=2, rabi_max_hz=50e6, detuning_hz=20e6, dt_s=0.5e-9)
    n_samples = 17
    t = n_samples * tr.dt_s
    om, de = tr.rabi_max_hz, tr.detuning_hz
    omp = math.hypot(om, de)
    expected = np.exp(-1j * math.pi * de * t) * (
        math.cos(math.pi * omp * t) * np.eye(2)
        - 1j * math.sin(math.pi * omp * t) * (om * SX - de * SZ) / omp
    )
    got = unitaries(tr, np.ones(n_samples), engine=engine)
    np.testing.assert_allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
def test_free_evolution_phases(engine: str) -> None:
    """Zero drive: H is diagonal, so U = diag(exp(−i(2πδ·n + πα·n(n−1))·t)).

    On the qubit levels the relative phase is the Ramsey phase −2πδ·t; level 2 also
    picks up −2πα·t.
    """
    tr = Transmon(levels=3, detuning_hz=3.3e6, anharmonicity_hz=-250e6, dt_s=2e-9)
    n_samples = 25
    t = n_samples * tr.dt_s
    got = unitaries(tr, np.zeros(n_samples), engine=engine)
    n = np.arange(3)
    energies = 2 * math.pi * tr.detuning_hz * n + math.pi * tr.anharmonicity_hz * n * (n - 1)
    np.testing.assert_allclose(got, np.diag(np.exp(-1j * energies * t)), atol=1e-12)
    ramsey_phase = np.angle(got[1, 1] / got[0, 0])
    expected = -2 * math.pi * tr.detuning_hz * t
    assert abs(np.angle(np.exp(1j * (ramsey_phase - expected)))) < 1e-12


@pytest.mark.parametrize("engine", ENGINES)
def test_ramsey_sequence(engine: str) -> None:
    """π/2 pulse, free delay τ, π/2 pulse on two levels with detuning, in ONE waveform.

    The waveform is piecewise constant, so the exact propagator is the product of the three
    closed forms: U = U_p·diag(1, e^{−2πiδτ})·U_p, with U_p the detuned-Rabi unitary of
    the pulse (see ``test_detuned_rabi``). As Ω/δ → ∞ the fringe tends to P1 = cos²(πδτ);
    at finite pulse length the detuning also acts during the pulses, so only the
    exact product is asserted.
    """
    tr = Transmon(levels=2, rabi_max_hz=250e6, detuning_hz=1e6, dt_s=1e-9)
    pulse = 1  # 1 ns at 250 MHz: a rotation of 2π·0.25 = π/2
    delay = 123
    w = np.concatenate([np.ones(pulse), np.zeros(delay), np.ones(pulse)])
    om, de = tr.rabi_max_hz, tr.detuning_hz
    omp = math.hypot(om, de)
    tp = pulse * tr.dt_s
    u_p = np.exp(-1j * math.pi * de * tp) * (
        math.cos(math.pi * omp * tp) * np.eye(2)
        - 1j * math.sin(math.pi * omp * tp) * (om * SX - de * SZ) / omp
    )
    tau = delay * tr.dt_s
    expected = u_p @ np.diag([1.0, np.exp(-2j * math.pi * de * tau)]) @ u_p
    got = unitaries(tr, w, engine=engine)
    np.testing.assert_allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("levels", [2, 3])
def test_t1_t2_decay_without_drive(engine: str, levels: int) -> None:
    """Zero drive, δ = 0: populations and the 0–1 coherence decay exponentially.

    With L = D[√(1/T1)·a] + D[√(2/Tφ)·n] and ρ supported on {|0>, |1>}:
    dρ11/dt = −ρ11/T1 and dρ01/dt = −(1/(2T1) + 1/Tφ)·ρ01 = −ρ01/T2, so in column stacking
    (index r + c·N) S[1+N, 1+N] = e^{−t/T1}, S[0, 1+N] = 1 − e^{−t/T1},
    S[0+N, 0+N] = e^{−t/T2} (the anharmonic phase never touches levels 0 and 1).
    """
    tr = Transmon(levels=levels, t1_s=3e-6, t2_s=2e-6, dt_s=5e-9)
    n_samples = 40
    t = n_samples * tr.dt_s
    s = superoperators(tr, np.zeros(n_samples), engine=engine)
    n = levels
    assert abs(s[1 + n, 1 + n] - math.exp(-t / tr.t1_s)) < 1e-12
    assert abs(s[0, 1 + n] - (1 - math.exp(-t / tr.t1_s))) < 1e-12
    assert abs(s[0 + n, 0 + n] - math.exp(-t / tr.t2_s)) < 1e-12
    assert abs(s[1, 1] - math.exp(-t / tr.t2_s)) < 1e-12


def test_coherence_limit_formula_and_reference_numbers() -> None:
    """1 − F = 1/2 − e^{−t/T1}/6 − e^{−t/T2}/3 and PHYSICS.md's two reference values."""
    t, t1, t2 = 37e-9, 55e-6, 41e-6
    exact = 0.5 - math.exp(-t / t1) / 6 - math.exp(-t / t2) / 3
    assert float(coherence_limit(t, t1, t2)) == pytest.approx(exact, rel=1e-14)
    assert float(coherence_limit(20e-9, 100e-6, 100e-6)) == pytest.approx(1.0e-4, rel=0.01)
    assert float(coherence_limit(20e-9, 300e-6, 300e-6)) == pytest.approx(3.3e-5, rel=0.02)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("levels", [2, 3])
def test_idle_channel_fidelity_is_the_coherence_limit(engine: str, levels: int) -> None:
    """An idle (u = 0, δ = 0) channel of duration t, compared with I.

    The qubit block of the channel maps ρ00 += (1 − e^{−t/T1})ρ11, ρ11 → e^{−t/T1}ρ11,
    ρ01 → e^{−t/T2}ρ01. From F = (Σ_k Tr(M_k†M_k) + Σ_k |Tr M_k|²)/6, read off S:
    Σ Tr(M†M) = 2 and Σ|Tr M|² = S[00,00] + S[11,11] + S[00,11] + S[11,00]
    = 1 + e^{−t/T1} + 2e^{−t/T2}, so 1 − F = 1/2 − e^{−t/T1}/6 − e^{−t/T2}/3.
    """
    tr = Transmon(levels=levels, t1_s=20e-6, t2_s=30e-6, dt_s=1e-9)
    n_samples = 50
    s = superoperators(tr, np.zeros(n_samples), engine=engine)
    f = float(gate_fidelity(s, "I", kind="superoperator"))
    limit = float(coherence_limit(n_samples * tr.dt_s, tr.t1_s, tr.t2_s))
    assert 1 - f == pytest.approx(limit, rel=1e-10, abs=1e-15)


def test_ideal_gate_fidelity_is_one_and_two_levels_never_leak() -> None:
    """An exact X embedded in three levels has F = 1 and no leakage; any two-level U has L = 0."""
    u = np.eye(3, dtype=complex)
    u[:2, :2] = SX
    assert float(gate_fidelity(u, "X", kind="unitary")) == pytest.approx(1.0, abs=1e-15)
    assert float(leakage(u)) == 0.0
    tr = Transmon(levels=2)
    w = np.linspace(0, 1, 20) * np.exp(0.4j)
    assert float(leakage(unitaries(tr, w))) == 0.0
    # Exact π pulse on two levels: constant u = 1 for 1/(2Ω_R).
    tr = Transmon(levels=2, rabi_max_hz=50e6, dt_s=1e-9)
    pi_pulse = unitaries(tr, np.ones(10))  # 10 ns · 50 MHz = 1/2
    assert float(gate_fidelity(pi_pulse, "X", kind="unitary")) == pytest.approx(1.0, abs=1e-14)
