"""Multi-qubit readout: class lumping, assignment matrices, pairwise crosstalk, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from pulsecal.envs.readout import QubitReadout, Readout, ReadoutCrosstalk, class_probabilities


def basis_population(levels, dims):
    p = np.zeros((1, int(np.prod(dims))))
    p[0, np.ravel_multi_index(levels, dims)] = 1.0
    return p


def test_levels_above_one_read_as_one_and_three_state_keeps_them():
    dims = (3, 3)
    pop = basis_population((2, 1), dims)
    np.testing.assert_array_equal(class_probabilities(pop, dims, [0, 1], 2), [[0, 0, 0, 1]])
    three = class_probabilities(pop, dims, [0, 1], 3)
    assert three.shape == (1, 9) and three[0, 2 * 3 + 1] == 1.0
    # columns follow the order the qubits are listed in, not the model's basis order
    np.testing.assert_array_equal(class_probabilities(basis_population((1, 0), dims), dims, [1, 0], 2),
                                  [[0, 1, 0, 0]])


def test_marginal_over_unmeasured_modes():
    dims = (2, 3, 2)
    rng = np.random.default_rng(0)
    pop = rng.random((2, 12))
    pop /= pop.sum(axis=1, keepdims=True)
    got = class_probabilities(pop, dims, [2], 2)
    want = pop.reshape(2, 2, 3, 2).sum(axis=(1, 2))
    np.testing.assert_allclose(got, want, atol=1e-15)


def test_assignment_matrices_combine_as_a_kronecker_product():
    a = QubitReadout.two_state(0.02, 0.05)
    b = QubitReadout.two_state(0.01, 0.08)
    r = Readout({"q0": a, "q1": b})
    np.testing.assert_allclose(r.matrix(("q0", "q1")), np.kron(a.matrix, b.matrix), atol=1e-15)
    # ground state on both: the outcome probabilities are the |00⟩ row
    p = r.outcome_probabilities(basis_population((0, 0), (3, 3)), (3, 3), [0, 1], ("q0", "q1"))
    np.testing.assert_allclose(p[0], [0.98 * 0.99, 0.98 * 0.01, 0.02 * 0.99, 0.02 * 0.01], atol=1e-15)


def test_crosstalk_flips_the_target_only_while_the_source_is_excited():
    r = Readout(crosstalk=(ReadoutCrosstalk("q0", "q1", 0.1),))
    m = r.matrix(("q0", "q1"))
    np.testing.assert_allclose(m[0b00], [1, 0, 0, 0])
    np.testing.assert_allclose(m[0b01], [0, 1, 0, 0])
    np.testing.assert_allclose(m[0b10], [0, 0, 0.9, 0.1])
    np.testing.assert_allclose(m[0b11], [0, 0, 0.1, 0.9])
    np.testing.assert_allclose(m.sum(axis=1), 1.0)
    # not among the measured qubits: no effect
    np.testing.assert_allclose(r.matrix(("q1",)), np.eye(2))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: QubitReadout(((0.9, 0.2), (0.0, 1.0))), "rows summing to 1"),
        (lambda: QubitReadout(((1.0,),)), "2×2 or 3×3"),
        (lambda: QubitReadout.two_state(0.6, 0.0), "p1_given_0"),
        (lambda: ReadoutCrosstalk("q0", "q1", 0.7), "flip"),
        (lambda: ReadoutCrosstalk("q0", "q0", 0.1), "two different qubits"),
        (lambda: Readout({"q0": QubitReadout()}, three_state=True), r"Readout.qubits\[q0\].assignment"),
    ],
)
def test_bad_readout_names_the_field(build, message):
    with pytest.raises(ValueError, match=message):
        build()
