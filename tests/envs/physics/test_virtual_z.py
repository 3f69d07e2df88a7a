"""Virtual-Z corrected fidelity: never below the raw one, equal when no Z correction can
help, and 1 for a gate that is the target up to frame rotations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pulsecal.envs.physics import Transmon, gate_fidelity, superoperators, unitaries

from .conftest import random_waveforms


def rz(theta: float) -> np.ndarray:
    return np.diag([1.0, np.exp(1j * theta)])


def rx(theta: float) -> np.ndarray:
    c, s = math.cos(theta / 2), math.sin(theta / 2)
    return np.array([[c, -1j * s], [-1j * s, c]])


@pytest.mark.parametrize("kind", ["unitary", "superoperator"])
def test_virtual_z_never_lowers_fidelity(kind: str, rng: np.random.Generator) -> None:
    tr = Transmon(levels=3, t1_s=20e-6, t2_s=20e-6)
    w = 0.3 * random_waveforms(rng, 24, 16)
    ops = unitaries(tr, w) if kind == "unitary" else superoperators(tr, w)
    raw = gate_fidelity(ops, "X", kind=kind)  # type: ignore[arg-type]
    best = gate_fidelity(ops, "X", kind=kind, virtual_z=True)  # type: ignore[arg-type]
    assert np.all(best >= raw - 1e-15)
    assert np.any(best > raw + 1e-6)


@pytest.mark.parametrize("error", [0.0, 0.03, -0.2])
def test_virtual_z_equals_raw_for_an_error_without_z_part(error: float) -> None:
    """An amplitude error X → R_x(π + ε) commutes with nothing a frame change could undo:
    F(a, b) = F(Z(a)·R_x·Z(b)) is maximal at a = b = 0, so both values coincide."""
    u = rx(math.pi + error)
    raw = float(gate_fidelity(u, "X", kind="unitary"))
    best = float(gate_fidelity(u, "X", kind="unitary", virtual_z=True))
    assert best == pytest.approx(raw, abs=1e-12)
    assert raw == pytest.approx(1 - (2 / 3) * math.sin(error / 2) ** 2, abs=1e-12)


@pytest.mark.parametrize(("before", "after"), [(0.4, -1.1), (2.5, 0.3), (-3.0, 3.0)])
def test_virtual_z_recovers_a_frame_rotated_x(before: float, after: float) -> None:
    u3 = np.eye(3, dtype=complex)
    u3[:2, :2] = rz(after) @ np.array([[0, 1], [1, 0]]) @ rz(before)
    assert float(gate_fidelity(u3, "X", kind="unitary")) < 0.99
    assert float(gate_fidelity(u3, "X", kind="unitary", virtual_z=True)) == pytest.approx(
        1.0, abs=1e-12)
    # the same on the superoperator of that unitary (column stacking: conj(U) ⊗ U)
    s = np.kron(u3.conj(), u3)
    assert float(gate_fidelity(s, "X", kind="superoperator", virtual_z=True)) == pytest.approx(
        1.0, abs=1e-12)


@pytest.mark.parametrize("target", ["X", "Y", "I", np.diag([1.0, -1.0])])
@pytest.mark.parametrize("kind", ["unitary", "superoperator"])
def test_closed_form_frame_optimum_matches_iterative_and_brute_force(
        target: object, kind: str, rng: np.random.Generator) -> None:
    """For (anti-)diagonal targets F depends on a ∓ b only and its maximum is closed form
    (metrics._max_over_frames_closed_form); it must agree with the general grid+Newton
    maximiser to rounding and never fall below a dense brute-force grid over (a, b)."""
    from pulsecal.envs.physics import metrics

    tr = Transmon(levels=3, t1_s=20e-6, t2_s=15e-6, detuning_hz=2e6)
    w = 0.3 * random_waveforms(rng, 16, 16)
    ops = unitaries(tr, w) if kind == "unitary" else superoperators(tr, w)
    v = metrics.target_gate(target)  # type: ignore[arg-type]
    purity, coef = metrics._phase_coefficients(ops, v, kind)  # type: ignore[arg-type]
    closed = metrics._max_over_frames_closed_form(coef, v)
    assert closed is not None
    np.testing.assert_allclose(closed, metrics._max_over_frames(coef), rtol=0, atol=1e-12)
    grid = np.linspace(0.0, 2 * math.pi, 361, endpoint=False)
    e = np.exp(1j * np.outer(grid, [-1.0, 0.0, 1.0]))
    brute = np.einsum("gp,bpq,hq->bgh", e, coef, e).real.reshape(len(ops), -1).max(axis=1)
    assert np.all(brute <= closed + 1e-13)
    # the grid's step is 1°: it is within a second-order distance of the optimum
    assert np.all(closed - brute <= 1e-3 * np.abs(closed))
    fid = gate_fidelity(ops, target, kind=kind, virtual_z=True)  # type: ignore[arg-type]
    np.testing.assert_allclose(fid, (purity + closed) / 6.0, rtol=0, atol=1e-15)


def test_general_targets_keep_the_iterative_maximiser() -> None:
    from pulsecal.envs.physics import metrics

    for name in ("SX", "H"):
        v = metrics.target_gate(name)
        assert metrics._max_over_frames_closed_form(np.zeros((1, 3, 3), complex), v) is None


@pytest.mark.parametrize("kind", ["unitary", "superoperator"])
@pytest.mark.parametrize("target", ["X", "SX", "H"])
def test_gate_fidelities_equal_the_two_calls(kind: str, target: str, rng: np.random.Generator) -> None:
    from pulsecal.envs.physics.metrics import gate_fidelities

    tr = Transmon(levels=3, t1_s=20e-6, t2_s=20e-6)
    w = 0.3 * random_waveforms(rng, 6, 16)
    ops = unitaries(tr, w) if kind == "unitary" else superoperators(tr, w)
    vz, raw = gate_fidelities(ops, target, kind=kind)  # type: ignore[arg-type]
    assert np.array_equal(vz, gate_fidelity(ops, target, kind=kind, virtual_z=True))  # type: ignore[arg-type]
    assert np.array_equal(raw, gate_fidelity(ops, target, kind=kind))  # type: ignore[arg-type]
    one = gate_fidelities(ops[0], target, kind=kind)  # type: ignore[arg-type]
    assert one[0] == vz[0] and one[1] == raw[0] and np.ndim(one[0]) == 0


@pytest.mark.parametrize("levels", [2, 3, 4])
@pytest.mark.parametrize("target", ["X", "Y", "I", "SX", "H"])  # compiled closed forms and the generic route
def test_metrics_from_real_forms_equal_the_column_stacking_route(
        levels: int, target: str, rng: np.random.Generator) -> None:
    """``superoperator_metrics_real`` reads the fidelities and the leakage off the real
    forms R through linear functionals; they must be those of S = w·R·w† (float rounding)."""
    from pulsecal.envs.physics.fast import superoperators_real
    from pulsecal.envs.physics.metrics import (
        gate_fidelities,
        leakage_superoperator,
        superoperator_metrics_real,
    )
    from pulsecal.envs.physics.real_basis import from_hermitian_basis, hermitian_basis

    tr = Transmon(levels=levels, t1_s=20e-6, t2_s=15e-6)
    real = superoperators_real([tr], 0.3 * random_waveforms(rng, 7, 16))
    assert real is not None
    basis = hermitian_basis(levels)[0]
    s = from_hermitian_basis(real, basis)
    vz, raw = gate_fidelities(s, target, kind="superoperator")
    got = superoperator_metrics_real(real, basis, target)
    for a, b in zip(got, (vz, raw, leakage_superoperator(s)), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-15)
    assert levels == 2 or np.all(got[2] > 1e-8)  # leakage is really exercised
    with pytest.raises(ValueError, match="real"):
        superoperator_metrics_real(real[:, :2], basis, target)
