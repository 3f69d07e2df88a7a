"""The coupled model's contract: one mode is the single-transmon model, exchange swaps at
2J on resonance, frames and the common-frame shift agree, bad input names its field."""

from __future__ import annotations

import numpy as np
import pytest

from pulsecal.envs.physics import Transmon, unitaries
from pulsecal.envs.physics.coupled import (
    CoupledModel,
    Coupling,
    Crosstalk,
    FluxTuning,
    Mode,
    check_pulse,
)
from pulsecal.envs.physics.coupled import reference as ref


def test_one_mode_is_the_single_transmon_model():
    # One mode whose frame sits 3 MHz above it is the single-transmon model at δ = −3 MHz.
    model = CoupledModel((Mode("q0", 5e9, -250e6, rabi_max_hz=80e6, frame_hz=5e9 + 3e6),))
    w = 0.3 * np.exp(1j * np.linspace(0.0, 2.0, 20))
    t = Transmon(detuning_hz=-3e6, rabi_max_hz=80e6, anharmonicity_hz=-250e6)
    np.testing.assert_allclose(ref.unitaries(model, {"drive:q0": w})[0], unitaries(t, w), atol=1e-12)


def test_resonant_exchange_swaps_at_twice_j():
    # H = 2πJ(a†b + ab†) on resonance: P(|01⟩ -> |10⟩) = sin²(2πJt), a full swap at t = 1/(4J).
    j = 2.5e6
    model = CoupledModel((Mode("q0", 5e9), Mode("q1", 5e9)), (Coupling("q0", "q1", j),))
    n = 70
    u = ref.unitaries(model, {"drive:q0": np.zeros(n)})[0]
    i01, i10 = np.ravel_multi_index((0, 1), (3, 3)), np.ravel_multi_index((1, 0), (3, 3))
    assert abs(u[i10, i01]) ** 2 == pytest.approx(np.sin(2 * np.pi * j * n * 1e-9) ** 2, abs=1e-12)


def test_cross_resonance_frame_agrees_with_the_substepped_path():
    # A CR drive alone is piecewise constant in the target's frame (one exponential per
    # sample); adding a vanishing drive at the control's frame forces the substepped path,
    # which must converge to the same unitary.
    model = CoupledModel((Mode("q0", 4.9e9), Mode("q1", 5.1e9)), (Coupling("q0", "q1", 3e6),))
    cr = 0.3 * np.ones(30)
    exact = ref.unitaries(model, {"drive:q0@q1": cr})[0]
    forced = ref.unitaries(model, {"drive:q0@q1": cr, "drive:q0": np.full(30, 1e-300)}, max_phase_step=0.01)[0]
    np.testing.assert_allclose(forced, exact, atol=1e-9)


def test_superoperator_preserves_trace():
    model = CoupledModel((Mode("q0", 4.9e9, t1_s=20e-6, t2_s=15e-6, thermal_population=0.02),
                          Mode("q1", 5.1e9, levels=2)), (Coupling("q0", "q1", 3e6),))
    s = ref.superoperators(model, {"drive:q0": 0.2 * np.ones(10)})[0]
    d = model.dimension
    trace_row = np.eye(d).reshape(-1, order="F")  # vec(I)ᵀ·S = vec(I)ᵀ for a trace-preserving map
    np.testing.assert_allclose(trace_row @ s, trace_row, atol=1e-12)


def test_squid_formula_sweet_spot_and_symmetric_zero():
    m = Mode("q1", 6e9, -200e6, flux=FluxTuning())
    assert m.frequency_at(0.0) == pytest.approx(6e9)
    # symmetric SQUID: f + E_C = (f_max + E_C)·|cos πΦ|^{1/2}
    assert m.frequency_at(0.25) == pytest.approx((6e9 + 200e6) * np.sqrt(np.cos(np.pi / 4)) - 200e6)
    asym = Mode("q1", 6e9, -200e6, flux=FluxTuning(asymmetry=0.5))
    assert asym.frequency_at(0.5) == pytest.approx((6e9 + 200e6) * np.sqrt(0.5) - 200e6)


@pytest.mark.parametrize(
    ("controls", "message"),
    [
        ({"drive:q7": [0.1]}, "no channel 'drive:q7'"),
        ({"flux:q0": [0.1]}, "no channel 'flux:q0'"),
        ({"flux:q1": [0.6]}, "max_offset"),
        ({"drive:q0": [1.2]}, "|u| <= 1"),
        ({"drive:q0": [np.nan]}, "not finite"),
        ({"drive:q0": [0.1, 0.2], "flux:q1": [0.1]}, "same number of samples"),
    ],
)
def test_bad_controls_name_the_channel(controls, message):
    model = CoupledModel((Mode("q0", 5e9), Mode("q1", 6e9, flux=FluxTuning())), (Coupling("q0", "q1", 5e6),))
    with pytest.raises(ValueError, match=message.replace("|", r"\|")):
        check_pulse(model, controls)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Mode("q0", -5e9), "frequency_hz"),
        (lambda: Mode("q0", 5e9, frame_hz=1e15), "frame_hz"),
        (lambda: Mode("q0", 5e9, t1_s=10e-6, t2_s=30e-6), "t2_s"),
        (lambda: Mode("q0", 5e9, levels=1), "levels"),
        (lambda: CoupledModel((Mode("q0", 5e9),), (Coupling("q0", "q9", 1e6),)), "q9"),
        (lambda: CoupledModel((Mode("q0", 5e9), Mode("q1", 5e9)), (), (Crosstalk("q0", "q1", 2.0),)), "fraction"),
    ],
)
def test_bad_model_names_the_field(build, field):
    with pytest.raises(ValueError, match=field):
        build()
