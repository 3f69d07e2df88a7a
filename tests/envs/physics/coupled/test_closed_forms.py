"""Two coupled transmons against closed-form results, each derived next to its test.

Model (envs/physics/coupled/model.py), ħ = 1, angular frequencies ω = 2πf, g = 2πJ:

    H = Σ_i [ ω_i·n_i + (α_i/2)·n_i(n_i − 1) ] + g·(a0†a1 + a0·a1†)
        + ε·(e^{−iω_d t}·a_c† + h.c.)                 (a drive on line c at ω_d)

with α_i = 2π·anharmonicity_hz, so E(|2⟩) − E(|1⟩) = ω + α, and ε = π·Ω_R·|u| for a sample
u on a line whose full-scale Rabi frequency is Ω_R (a resonant drive on a lone qubit then
rotates it at Ω_R·|u| Hz). Bare states |n0 n1⟩, q0 written first. Propagation is
``reference.py`` (exact: one exponential per sample when one frame plays).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import logm
from scipy.optimize import brentq, minimize_scalar

from pulsecal.envs.physics.coupled import (
    CoupledModel,
    Coupling,
    FluxTuning,
    Mode,
    check_pulse,
    spectrum,
)
from pulsecal.envs.physics.coupled import metrics as cm
from pulsecal.envs.physics.coupled import reference as ref
from pulsecal.envs.physics.coupled.model import compile_model

DT = 1e-9


def _idx(model: CoupledModel, *levels: int) -> int:
    return int(np.ravel_multi_index(levels, model.dims))


@pytest.mark.parametrize("detuning_hz", [0.0, 4e6, -7e6])
def test_detuned_exchange_is_a_rabi_oscillation(detuning_hz: float) -> None:
    """The one-excitation manifold {|01⟩, |10⟩} is closed under H (exchange conserves the
    excitation number, so higher levels never enter). On it

        H = [[ω1, g], [g, ω0]] = ((ω0 + ω1)/2)·I + (g·σx − (Δω/2)·σz),  Δω = ω0 − ω1,

    a two-level Rabi problem with generalised frequency Ω = √(4g² + Δω²):

        P(|01⟩ → |10⟩)(t) = (4g²/Ω²)·sin²(Ω t/2) = (4J²/(4J² + Δ²))·sin²(π·√(4J² + Δ²)·t)

    with Δ = f0 − f1 in Hz. Populations do not depend on the frames, so the reported
    (modes' frames) unitary must give it to rounding error; on resonance it is sin²(2πJt).
    """
    j = 3e6
    model = CoupledModel((Mode("q0", 5e9 + detuning_hz), Mode("q1", 5e9)), (Coupling("q0", "q1", j),))
    i01, i10 = _idx(model, 0, 1), _idx(model, 1, 0)
    rate = math.sqrt(4 * j * j + detuning_hz**2)
    for t in (17e-9, 40e-9, 83.3e-9, 250e-9):
        u = ref.idle_unitary(model, t)
        expected = (4 * j * j / rate**2) * math.sin(math.pi * rate * t) ** 2
        assert abs(u[i10, i01]) ** 2 == pytest.approx(expected, abs=1e-12)
        assert abs(u[i01, i01]) ** 2 == pytest.approx(1.0 - expected, abs=1e-12)


@pytest.mark.parametrize(
    ("f0", "f1", "alpha0", "alpha1", "j"),
    [
        (5.0e9, 4.8e9, -330e6, -330e6, 3e6),  # IBM-like, straddling (|Δ| < |α|)
        (4.9e9, 5.15e9, -340e6, -310e6, 2e6),  # control below target: Δ < 0
        (5.2e9, 4.7e9, -300e6, -320e6, 4e6),  # outside the straddling regime
    ],
)
def test_static_zz_matches_second_order_perturbation(f0: float, f1: float, alpha0: float,
                                                     alpha1: float, j: float) -> None:
    """Second order in g. The idle H conserves N, so each bare state only mixes within its
    manifold: |10⟩ ↔ |01⟩ with element g, |11⟩ ↔ |20⟩ and |11⟩ ↔ |02⟩ with √2·g
    (a†|1⟩ = √2|2⟩). With E20 − E11 = Δω + α0 and E02 − E11 = −Δω + α1 (Δω = ω0 − ω1):

        δE11 = 2g²/(E11 − E20) + 2g²/(E11 − E02) = 2g²·( 1/(Δω − α1) − 1/(Δω + α0) ),
        δE10 = g²/Δω,  δE01 = −g²/Δω,  δE00 = 0,

    so ζ = E11 − E10 − E01 + E00 = 2J²·(1/(Δ − α1) − 1/(Δ + α0)) in Hz (the same expression
    with J, Δ = f0 − f1, α in Hz, since every term is (2π)²J²/(2π·Hz)). The neglected
    fourth-order terms are relative (J/(Δ + α0))², (J/Δ)² ≲ 1e-3 for these parameters.
    """
    model = CoupledModel((Mode("q0", f0, alpha0), Mode("q1", f1, alpha1)), (Coupling("q0", "q1", j),))
    delta = f0 - f1
    expected = 2 * j * j * (1.0 / (delta - alpha1) - 1.0 / (delta + alpha0))
    zeta = float(spectrum.static_zz_hz(model))
    assert zeta == pytest.approx(expected, rel=0.02)
    assert math.copysign(1.0, zeta) == math.copysign(1.0, expected)


def test_eleven_twenty_avoided_crossing_gap() -> None:
    """Tune q0 (flux) down through E11 = E20, i.e. f0 + α0 = f1. The N = 2 block in the
    basis (|02⟩, |11⟩, |20⟩) is

        [[E02, √2g, 0], [√2g, E11, √2g], [0, √2g, E20]];

    where E11 = E20 the |11⟩/|20⟩ pair splits by 2·√2g, i.e. 2√2·J in Hz. |02⟩ sits
    δ' = E11 − E02 ≈ 500 MHz away: it shifts E11 by 2g²/δ' (moving the crossing) but does not
    couple to |20⟩, so the minimum splitting changes only at relative order (√2J/δ')² ≈ 1e-3.
    The static Hamiltonian is ``reference.hamiltonian`` of a held flux sample.
    """
    j = 5e6
    q0 = Mode("q0", 6.0e9, -250e6, flux=FluxTuning())
    model = CoupledModel((q0, Mode("q1", 5.5e9, -250e6)), (Coupling("q0", "q1", j),))
    om = compile_model(model)
    crossing = brentq(lambda p: q0.frequency_at(p) + q0.anharmonicity_hz - 5.5e9, 0.0, 0.4)
    block = np.flatnonzero(om.total_number() == 2)  # |02⟩, |11⟩, |20⟩

    def splitting_hz(offset: float) -> float:
        pulse = check_pulse(om, {"flux:q0": [offset]})
        h = ref.hamiltonian(om, pulse, 0, 0, 0.0, om.frame_hz, om.h_static)
        e = np.sort(np.linalg.eigvalsh(h[np.ix_(block, block)])) / (2 * math.pi)
        return float(e[2] - e[1])  # the upper pair: E02 is 500 MHz below

    best = minimize_scalar(splitting_hz, bounds=(crossing - 0.01, crossing + 0.01), method="bounded",
                           options={"xatol": 1e-9})
    assert best.fun == pytest.approx(2 * math.sqrt(2) * j, rel=2e-3)
    assert abs(best.x - crossing) < 2e-3  # the minimum sits at the bare crossing, shifted by 2g²/δ'
    assert splitting_hz(crossing - 0.005) > 1.5 * best.fun  # a real minimum, not a plateau


def test_cross_resonance_zx_rate_at_weak_drive() -> None:
    """Drive the control q0's line at the target's frequency ω1 (``drive:q0@q1``).

    First order in g: the dressed states are |10⟩' = |10⟩ + (g/Δω)|01⟩, |01⟩' = |01⟩ −
    (g/Δω)|10⟩ and |11⟩' = |11⟩ − (√2g/(Δω + α0))|20⟩ + (√2g/(Δω − α1))|02⟩. The drive
    ε·(a0†e^{−iω1 t} + h.c.) then has target-flipping elements that depend on the control:

        ⟨01|' a0† |00⟩' = −g/Δω,     ⟨11|' a0† |10⟩' = g/Δω − 2g/(Δω + α0),

    (a0†|10⟩' = √2|20⟩ + (g/Δω)|11⟩). Resonant with the target, first order in ε, the
    target sees ε·m_c·X with m_0, m_1 these elements, i.e. H_eff = ν_IX·I⊗X + ν_ZX·Z⊗X with

        ν_ZX = ε·(m_0 − m_1)/2 = −(g·ε/Δω)·(α0/(Δω + α0)),   ν_IX = −g·ε/(Δω + α0).

    This is Magesan & Gambetta (PRA 101, 052308, 2020)'s −(JΩ/Δ)·α/(Δ + α) with their Ω our
    ε = πΩ_R|u| and the coefficient of Z⊗X itself (not of ZX/2); a two-level control
    (α0 → ∞) gives ν_IX → 0 and ν_ZX → −gε/Δω. The fit: for control c ∈ {0, 1} the target
    block V_c(T) of a constant CR pulse of length T is exp(−i(ν_IX ± ν_ZX)·T·X + small Z
    and fast terms), so the X part of i·log V_c grows linearly in T; its slope (least
    squares over T = 100..300 ns, which averages the O((ε/Δω)²) wiggles of the off-resonant
    control) gives ν_IX ± ν_ZX. Measured deviation ~0.4 % (higher orders in ε/(Δω + α0));
    checked to 1 % (the issue asks 5 %).
    """
    j, f0, f1, alpha = 3e6, 5.0e9, 4.8e9, -330e6
    rabi = 100e6
    model = CoupledModel((Mode("q0", f0, alpha, rabi_max_hz=rabi), Mode("q1", f1, alpha)),
                         (Coupling("q0", "q1", j),))
    comp = model.computational_indices()
    x = np.array([[0, 1], [1, 0]], dtype=complex)
    g, dw, a0 = 2 * math.pi * j, 2 * math.pi * (f0 - f1), 2 * math.pi * alpha
    lengths = np.arange(100, 301, 25)
    for amp in (0.05, 0.1):
        eps = math.pi * rabi * amp
        x_part: dict[int, list[float]] = {0: [], 1: []}
        for n in lengths:
            u = ref.unitaries(model, {"drive:q0@q1": np.full(n, amp)})[0]
            for c in (0, 1):
                block = u[np.ix_(comp[2 * c:2 * c + 2], comp[2 * c:2 * c + 2])]
                block = block / np.sqrt(np.linalg.det(block))
                if np.trace(block).real < 0:  # the SU(2) branch with rotation angle < π
                    block = -block
                x_part[c].append(0.5 * np.trace(1j * logm(block) @ x).real)
        slope = {c: np.polyfit(lengths * DT, x_part[c], 1)[0] for c in (0, 1)}
        zx, ix = 0.5 * (slope[0] - slope[1]), 0.5 * (slope[0] + slope[1])
        assert zx == pytest.approx(-(g * eps / dw) * (a0 / (dw + a0)), rel=0.01)
        assert ix == pytest.approx(-g * eps / (dw + a0), rel=0.03)


def _flat_top(ramp: int, hold: int) -> np.ndarray:
    up = np.sin(0.5 * math.pi * (np.arange(ramp) + 0.5) / ramp) ** 2
    return np.concatenate([up, np.ones(hold), up[::-1]])


def test_adiabatic_cz_phase_is_the_integral_of_zz() -> None:
    """Slow flux excursion of q0 towards (not through) the |11⟩↔|20⟩ crossing and back.

    Adiabatically each dressed computational state |c⟩' follows its instantaneous
    eigenstate and picks up e^{−i∫E_c(t)dt} (no geometric phase: H is real, the path opens
    and closes at idle). The frames are linear in the excitation numbers, so they cancel in
    φ = arg U11 − arg U10 − arg U01 + arg U00 and, in the idle dressed basis,

        φ = −∫(E11 − E10 − E01 + E00) dt = −2π·∫ζ(t) dt = −2π·dt·Σ_k ζ(x_k)

    for piecewise-constant samples x_k. The amplitude is chosen so that −2π∫ζ = π: a CZ.
    Tolerance: the first adiabatic correction to a level is |⟨m|∂_t n⟩|²/(E_n − E_m); with
    the |11⟩/|20⟩ mixing angle changing by Δθ ≈ 0.15 over a ramp of T_r = 80 ns and a gap
    ≳ 2π·75 MHz it moves φ by ~ 2·Δθ²/(gap·T_r) ≈ 1e-3 rad (measured 1.4e-3); checked to
    5e-3 rad, with the population left in |20⟩ below 1e-3 (measured 6e-5). In the bare basis
    the same pulse is off by ~1e-3 rad more and leaves ~0.3 % in bare |20⟩: bare |11⟩ is not
    an eigenstate at idle (docs/two_qubit_metrics.md).
    """
    j = 10e6
    q0 = Mode("q0", 6.0e9, -250e6, flux=FluxTuning())
    model = CoupledModel((q0, Mode("q1", 5.5e9, -250e6)), (Coupling("q0", "q1", j),))
    crossing = brentq(lambda p: q0.frequency_at(p) + q0.anharmonicity_hz - 5.5e9, 0.0, 0.4)
    shape = _flat_top(80, 140)

    def zz_area(amp: float) -> float:
        return float(np.sum(spectrum.static_zz_hz(model, {"flux:q0": amp * shape})) * DT)

    amp = brentq(lambda a: zz_area(a) + 0.5, 0.0, 0.95 * crossing)
    assert q0.frequency_at(amp) + q0.anharmonicity_hz - 5.5e9 > 50e6  # stays 50 MHz off the crossing
    u = ref.unitaries(model, {"flux:q0": amp * shape})[0]
    dressed = spectrum.to_dressed_basis(model, u, kind="unitary", duration_s=shape.size * DT)
    phi = float(cm.conditional_phase(model, dressed, kind="unitary"))
    expected = -2 * math.pi * zz_area(amp)  # = π
    assert abs(np.angle(np.exp(1j * (phi - expected)))) < 5e-3
    assert float(cm.eleven_populations(model, dressed, kind="unitary").p20) < 1e-3


def test_coherence_limit_of_two_idle_qubits() -> None:
    """Two uncoupled qubits (J = 0), own T1, T2.

    On two levels each qubit's idle channel in its own frame is amplitude damping with
    dephasing: populations relax as e^{−T/T1}, coherences as e^{−T/T2}; per qubit
    Σ_k Tr M_k†M_k = 2 and Σ_k |Tr M_k|² = 1 + e^{−T/T1} + 2e^{−T/T2}, both multiplicative
    over independent qubits, so F = (4 + Π_q(1 + e^{−T/T1,q} + 2e^{−T/T2,q}))/20. The same
    holds with three levels at zero thermal population (|2⟩ is never reached from the
    computational states), and the idle channel of ``reference.idle_superoperator`` has the
    same computational block (no Hamiltonian acts there for J = 0 in the modes' frames).
    With a thermal population p and three levels, |1⟩ is excited to |2⟩ at rate 2p/T1
    (|⟨2|a†|1⟩|² = 2): to first order in T/T1 each qubit leaks L_q = ½·2p·T/T1 on average
    and every leaked input scores zero, so the exact limit exceeds the product formula by
    Σ_q p_q·T/T1,q (relative corrections ~T/T1).
    """
    t1, t2 = (80e-6, 120e-6), (60e-6, 150e-6)
    times = np.array([100e-9, 300e-9, 5e-6])
    product = cm.coherence_limit_product(times, t1, t2)
    assert product[0] == pytest.approx(1 - (4 + np.prod([1 + math.exp(-100e-9 / a) + 2 * math.exp(-100e-9 / b)
                                                         for a, b in zip(t1, t2, strict=True)])) / 20, abs=1e-15)
    for levels in (2, 3):
        model = CoupledModel(tuple(Mode(f"q{i}", f, levels=levels, t1_s=t1[i], t2_s=t2[i])
                                   for i, f in enumerate((5.0e9, 4.8e9))))
        exact = cm.coherence_limit(model, times)
        idle = [1 - float(cm.gate_fidelity(model, ref.idle_superoperator(model, t), "I", kind="superoperator").raw)
                for t in times]
        np.testing.assert_allclose(exact, product, rtol=0, atol=1e-12)
        np.testing.assert_allclose(idle, product, rtol=0, atol=1e-12)
    p = 0.02
    hot = CoupledModel(tuple(Mode(f"q{i}", f, t1_s=t1[i], t2_s=t2[i], thermal_population=p)
                             for i, f in enumerate((5.0e9, 4.8e9))))
    excess = float(cm.coherence_limit(hot, 300e-9)) - float(cm.coherence_limit_product(300e-9, t1, t2))
    assert excess == pytest.approx(sum(p * 300e-9 / a for a in t1), rel=0.02)
