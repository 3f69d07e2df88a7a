"""States through a pulse without its propagator (``fast.evolve_vectors``, what
``evolve_states`` runs for open systems): the same as applying the propagator, on flat tops
(merged runs take the matrix exponential), smooth pulses (the vector series), driven
pulses (one dense block in its real basis) and non-Hermitian inputs (the complex path)."""

from __future__ import annotations

import numpy as np
import pytest

from pulsecal.envs.physics.coupled import CoupledModel, FluxTuning, fast
from pulsecal.envs.physics.coupled import reference as ref
from pulsecal.envs.physics.coupled.controls import check_pulse
from pulsecal.envs.physics.coupled.model import compile_model, thermal_state

from .test_fast_engine import random_controls, random_model


def _flat_top(rng: np.random.Generator, batch: int) -> np.ndarray:
    ramp = 0.5 * (1 - np.cos(np.pi * (np.arange(4) + 0.5) / 4))
    shape = np.concatenate([ramp, np.ones(30), ramp[::-1]])
    return rng.uniform(-0.15, 0.15, (batch, 1)) * shape


@pytest.mark.parametrize("case", ["flat top", "smooth", "driven", "not hermitian"])
def test_vectors_match_the_propagator(case):
    rng = np.random.default_rng(3)
    model = random_model(rng, (3, 3))
    if case == "flat top":  # no line distortion, so the flat top stays flat and its runs merge
        q1 = model.modes[1]
        model = CoupledModel((model.modes[0], q1.replace(flux=FluxTuning(asymmetry=0.3))), model.couplings,
                             model.crosstalk)
    om = compile_model(model)
    d = om.dimension
    if case == "driven":
        controls = {k: v[:4, :6] for k, v in random_controls(rng, model, 6).items()}
    elif case == "smooth":
        controls = {"flux:q1": rng.uniform(-0.15, 0.15, (4, 12))}
    else:
        controls = {"flux:q1": _flat_top(rng, 4)}
    rho = np.broadcast_to(thermal_state(model), (4, d, d)).copy()
    if case == "not hermitian":
        rho[:, 0, 1] = 0.1
    vec = rho.transpose(0, 2, 1).reshape(4, -1)
    pulse = check_pulse(om, controls, t0_s=7e-9)
    if case == "flat top":  # one 30-sample run: the matrix exponential's step
        assert fast.merge_runs(fast._coefficients(om, pulse, om.frame_hz, 1, ("flux:q1",), ())).shape[1] == 9
    got = fast.evolve_vectors(om, pulse, True, vec)
    assert got is not None
    want = np.einsum("bij,bj->bi", ref.superoperators(model, controls, t0_s=7e-9), vec)
    np.testing.assert_allclose(got, want, atol=1e-11, rtol=0)


def test_several_frame_frequencies_are_left_to_the_propagator():
    rng = np.random.default_rng(4)
    model = random_model(rng, (2, 2))
    om = compile_model(model)
    pulse = check_pulse(om, {"drive:q0": [0.1, 0.2], "drive:q1": [0.1, 0.1]})
    assert fast.evolve_vectors(om, pulse, True, np.eye(1, om.dimension ** 2, dtype=complex)) is None
