"""Every engine computes the same propagators: ours (numba), plain NumPy/SciPy, QuTiP's own
operators and Liouvillian, and qiskit-dynamics' Solver (optional extra).

Tolerances are the project's cross-engine contract: unitaries to 1e-7 elementwise, average
gate fidelities to 1e-9 (closed) and 1e-8 (open).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from pulsecal.envs.physics import Transmon, gate_fidelity, superoperators, unitaries

from .conftest import needs_dynamics, random_waveforms

U_TOL = 1e-7
F_TOL_CLOSED = 1e-9
F_TOL_OPEN = 1e-8
BATCH = 16
SAMPLES = 20


def device(levels: int) -> Transmon:
    """A demanding but physical device: strong drive, detuned, short coherence."""
    return Transmon(levels=levels, anharmonicity_hz=-230e6, rabi_max_hz=140e6,
                    detuning_hz=7e6, t1_s=12e-6, t2_s=9e-6, dt_s=1e-9)


def devices(batch: int) -> tuple[Transmon, ...]:
    """One transmon per pulse, three distinct ones, so grouping by row is exercised."""
    base = device(3)
    kinds = (base, base.replace(anharmonicity_hz=-310e6, detuning_hz=-4e6),
             base.replace(rabi_max_hz=90e6, t1_s=40e-6, t2_s=70e-6))
    return tuple(kinds[i % 3] for i in range(batch))


@cache
def waveforms(levels: int) -> np.ndarray:
    return random_waveforms(np.random.default_rng(levels), BATCH, SAMPLES)


@cache
def closed(engine: str, levels: int) -> np.ndarray:
    return unitaries(device(levels), waveforms(levels), engine=engine)


@cache
def opened(engine: str, levels: int) -> np.ndarray:
    return superoperators(device(levels), waveforms(levels), engine=engine)


# qiskit-dynamics jit-compiles once per (transmon, samples, closed/open) and that takes
# seconds, so only the 3-level cases run by default; 2 and 4 levels run with -m slow.
CASES = [
    pytest.param(engine, levels, id=f"{engine}-{levels}",
                 marks=[needs_dynamics, *([pytest.mark.slow] if levels != 3 else [])])
    if engine == "qiskit-dynamics" else pytest.param(engine, levels, id=f"{engine}-{levels}")
    for engine in ("numpy", "qutip", "qiskit-dynamics")
    for levels in (2, 3, 4)
]


def _assert_agree(ref: np.ndarray, got: np.ndarray, kind: str, f_tol: float) -> None:
    """Operators within U_TOL of the reference and their X and SX fidelities within f_tol."""
    assert np.max(np.abs(got - ref)) <= U_TOL
    for target in ("X", "SX"):
        f_ref = gate_fidelity(ref, target, kind=kind)
        f_got = gate_fidelity(got, target, kind=kind)
        assert np.max(np.abs(f_got - f_ref)) <= f_tol


@pytest.mark.parametrize(("engine", "levels"), CASES)
def test_unitaries_agree(engine: str, levels: int) -> None:
    _assert_agree(closed("numpy-reference", levels), closed(engine, levels), "unitary", F_TOL_CLOSED)


@pytest.mark.parametrize(("engine", "levels"), CASES)
def test_superoperators_agree(engine: str, levels: int) -> None:
    _assert_agree(opened("numpy-reference", levels), opened(engine, levels), "superoperator", F_TOL_OPEN)


def test_fast_engine_is_much_closer_than_the_contract() -> None:
    """Our engine is exact up to rounding; drift towards the tolerance would hide a bug."""
    for levels in (2, 3, 4):
        assert np.max(np.abs(closed("numpy", levels) - closed("numpy-reference", levels))) < 1e-12
        assert np.max(np.abs(opened("numpy", levels) - opened("numpy-reference", levels))) < 1e-12


@pytest.mark.parametrize("engine", ["numpy", "qutip", pytest.param(
    "qiskit-dynamics", marks=[needs_dynamics, pytest.mark.slow])])
def test_per_row_transmons(engine: str) -> None:
    """A tuple of transmons equals simulating each row on its own device."""
    w = random_waveforms(np.random.default_rng(7), BATCH, SAMPLES)
    rows = devices(BATCH)
    if engine == "qiskit-dynamics":  # one jit per distinct transmon: keep two of them
        rows = tuple(rows[i % 2] for i in range(BATCH))
    u_ref = unitaries(rows, w, engine="numpy-reference")
    s_ref = superoperators(rows, w, engine="numpy-reference")
    u = unitaries(rows, w, engine=engine)
    s = superoperators(rows, w, engine=engine)
    assert np.max(np.abs(u - u_ref)) <= U_TOL
    assert np.max(np.abs(s - s_ref)) <= U_TOL
    assert np.max(np.abs(gate_fidelity(s, "X", kind="superoperator")
                         - gate_fidelity(s_ref, "X", kind="superoperator"))) <= F_TOL_OPEN
    # and each row is what a single-device call gives
    for i in (0, 1, 5):
        np.testing.assert_allclose(u[i], unitaries(rows[i], w[i], engine="numpy-reference"),
                                   atol=U_TOL)
