"""The two-qubit Clifford group: size, closure, compilation to natives, inverses.

Every check compares against the ideal unitaries (``TARGETS_2Q`` entanglers, exact
single-qubit rotations), modulo global phase."""

from __future__ import annotations

import numpy as np
import pytest

from pulsecal.envs import clifford2q as c2
from pulsecal.envs.physics.coupled.metrics import TARGETS_2Q


def _equal_up_to_phase(u: np.ndarray, v: np.ndarray) -> bool:
    return bool(abs(abs(np.trace(u.conj().T @ v)) - 4.0) < 1e-9)


def test_group_has_11520_distinct_elements_identity_first() -> None:
    g = c2.clifford_group()
    assert len(g) == c2.GROUP_SIZE == 11520
    assert len(set(g.indices(g.unitaries))) == 11520
    assert _equal_up_to_phase(g.unitaries[0], np.eye(4))


def test_group_is_closed_under_products_and_contains_the_entanglers() -> None:
    g = c2.clifford_group()
    rng = np.random.default_rng(7)
    a, b = rng.integers(0, len(g), (2, 2000))
    g.indices(np.einsum("nij,njk->nik", g.unitaries[a], g.unitaries[b]))  # raises if one is outside
    for name in ("CZ", "ECR", "CX", "SWAP", "ISWAP"):
        if name in TARGETS_2Q:
            g.index(TARGETS_2Q[name])
    with pytest.raises(ValueError, match="not a two-qubit Clifford"):
        g.index(np.diag([1, 1, 1, np.exp(0.25j * np.pi)]))  # CPhase(π/4) is not a Clifford


@pytest.mark.parametrize("entangler", c2.ENTANGLERS)
def test_every_compiled_element_equals_its_clifford(entangler: c2.Entangler) -> None:
    g = c2.clifford_group()
    comp = c2.compiled_group(entangler)
    units = np.stack([c2.ideal_unitary(ops, entangler) for ops in comp])
    assert np.array_equal(g.indices(units), np.arange(len(g)))
    # The ECR form keeps the CZ form's entangler count (CZ = local · ECR · local).
    for i in range(0, len(g), 97):
        assert sum(op.kind == "entangler" for op in comp[i]) == g.entanglers(i)
    assert c2.mean_natives(entangler)[0] == pytest.approx(1.5)  # (0·576 + 1·5184 + 2·5184 + 3·576)/11520


def test_inverse_times_element_is_identity() -> None:
    g = c2.clifford_group()
    for i in (0, 1, 575, 576, 5000, 5760, 11519):
        assert _equal_up_to_phase(g.unitaries[g.inverse(i)] @ g.unitaries[i], np.eye(4))


def test_refused_inputs_name_the_argument() -> None:
    with pytest.raises(ValueError, match="entangler"):
        c2.native_word(3, "CNOT")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="i"):
        c2.compile_clifford(11520)
