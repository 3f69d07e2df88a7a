"""Two-qubit metrics: fidelity against its definition (an exact state average), virtual-Z
phases, leakage and seepage, conditional phase, dressed basis, spectators, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import expm

from pulsecal.envs.physics import gate_fidelity as gate_fidelity_1q
from pulsecal.envs.physics.coupled import CoupledModel, Coupling, Mode, spectator, spectrum
from pulsecal.envs.physics.coupled import metrics as cm
from pulsecal.envs.physics.coupled import reference as ref

PAIR = CoupledModel((Mode("q0", 5.0e9, -330e6, t1_s=30e-6, t2_s=25e-6),
                     Mode("q1", 4.8e9, -320e6, t1_s=40e-6, t2_s=35e-6)), (Coupling("q0", "q1", 3e6),))
COMP = PAIR.computational_indices()


def _random_unitary(rng: np.random.Generator, d: int, scale: float) -> np.ndarray:
    h = rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d))
    return expm(-1j * scale * (h + h.conj().T))


def _embed(block: np.ndarray, leak_scale: float, rng: np.random.Generator) -> np.ndarray:
    """A 9×9 unitary whose computational block is close to ``block`` and leaks a little."""
    u = np.eye(PAIR.dimension, dtype=complex)
    u[np.ix_(COMP, COMP)] = block
    return _random_unitary(rng, PAIR.dimension, leak_scale) @ u


def _superop(u: np.ndarray) -> np.ndarray:
    return np.kron(u.conj(), u)  # column stacking: vec(UρU†) = (Ū⊗U)·vec ρ


def _zphases(after: np.ndarray, before: np.ndarray, u4: np.ndarray) -> np.ndarray:
    def z(ph: np.ndarray) -> np.ndarray:
        return np.diag([np.exp(1j * (ph[0] * ((i >> 1) & 1) + ph[1] * (i & 1))) for i in range(4)])
    return z(after) @ u4 @ z(before)


def _stabilizer_states() -> list[np.ndarray]:
    """The 60 two-qubit stabilizer states (an exact state 3-design), by closing |00⟩ under
    H, S on each qubit and CZ, up to global phase."""
    h = np.array([[1, 1], [1, -1]]) / math.sqrt(2)
    s = np.diag([1, 1j])
    gens = [np.kron(h, np.eye(2)), np.kron(np.eye(2), h), np.kron(s, np.eye(2)), np.kron(np.eye(2), s),
            np.diag([1, 1, 1, -1])]

    def key(v: np.ndarray) -> tuple:
        k = np.flatnonzero(np.abs(v) > 1e-9)[0]
        w = v * abs(v[k]) / v[k]
        return tuple(np.round(w, 8))

    start = np.array([1, 0, 0, 0], dtype=complex)
    seen, frontier = {key(start): start}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for g in gens:
                w = g @ v
                if key(w) not in seen:
                    seen[key(w)] = w
                    nxt.append(w)
        frontier = nxt
    return list(seen.values())


def test_stabilizer_states_are_sixty() -> None:
    assert len(_stabilizer_states()) == 60


@pytest.mark.parametrize("target", ["CZ", "CX", "ECR", "ISWAP", "SQRT_ISWAP", "ZX90"])
def test_fidelity_is_the_average_over_a_state_design(target: str, rng: np.random.Generator) -> None:
    """F = ∫dψ ⟨ψ|V†·E(|ψ⟩⟨ψ|)·V|ψ⟩ over computational states ψ, embedded in the full space
    with leaked output simply not counted; the 60 stabilizer states are a 3-design, so
    their mean is the Haar integral exactly. Checked for a leaky unitary and for a
    Lindblad channel (reference superoperator of a random two-line pulse)."""
    v = cm.TARGETS_2Q[target]
    u = _embed(v @ _random_unitary(rng, 4, 0.05), 0.03, rng)
    w = 0.2 * np.exp(1j * rng.uniform(0, 2 * np.pi, (2, 12)))
    s = ref.superoperators(PAIR, {"drive:q0": w[0], "drive:q1@q0": w[1]})[0]
    for op, kind in ((u, "unitary"), (s, "superoperator")):
        total = 0.0
        for psi in _stabilizer_states():
            full = np.zeros(PAIR.dimension, dtype=complex)
            full[COMP] = psi
            if kind == "unitary":
                out = op @ full
                rho = np.outer(out, out.conj())
            else:
                rho = (op @ np.outer(full, full.conj()).reshape(-1, order="F")).reshape(PAIR.dimension, -1, order="F")
            vpsi = np.zeros(PAIR.dimension, dtype=complex)
            vpsi[COMP] = v @ psi
            total += float((vpsi.conj() @ rho @ vpsi).real)
        got = cm.gate_fidelity(PAIR, op, target, kind=kind)  # type: ignore[arg-type]
        assert float(got.raw) == pytest.approx(total / 60, abs=1e-12)
        assert float(got.fidelity) == float(got.raw)  # no phase search asked for


def test_unitary_and_superoperator_paths_agree(rng: np.random.Generator) -> None:
    us = np.stack([_embed(cm.TARGETS_2Q["CX"] @ _random_unitary(rng, 4, 0.1), 0.05, rng) for _ in range(5)])
    ss = np.stack([_superop(u) for u in us])
    a = cm.gate_fidelity(PAIR, us, "CX", kind="unitary", virtual_z=True)
    b = cm.gate_fidelity(PAIR, ss, "CX", kind="superoperator", virtual_z=True)
    np.testing.assert_allclose(a.raw, b.raw, atol=1e-13)
    np.testing.assert_allclose(a.fidelity, b.fidelity, atol=1e-12)
    np.testing.assert_allclose(cm.leakage(PAIR, us, kind="unitary"), cm.leakage(PAIR, ss, kind="superoperator"), atol=1e-14)
    np.testing.assert_allclose(cm.seepage(PAIR, us, kind="unitary"), cm.seepage(PAIR, ss, kind="superoperator"), atol=1e-14)
    np.testing.assert_allclose(cm.conditional_phase(PAIR, us, kind="unitary"),
                               cm.conditional_phase(PAIR, ss, kind="superoperator"), atol=1e-12)


@pytest.mark.parametrize("target", ["CZ", "CX", "ECR", "ISWAP", "SQRT_ISWAP", "ZX90"])
def test_virtual_z_recovers_frame_rotated_targets(target: str, rng: np.random.Generator) -> None:
    for _ in range(3):
        after, before = rng.uniform(-np.pi, np.pi, 2), rng.uniform(-np.pi, np.pi, 2)
        u = _embed(_zphases(after, before, cm.TARGETS_2Q[target]), 0.0, rng)
        res = cm.gate_fidelity(PAIR, u, target, kind="unitary", virtual_z=True)
        assert float(res.fidelity) == pytest.approx(1.0, abs=1e-12)
        # the reported phases undo the rotation: Z(a)·U·Z(b) is the target
        fixed = _zphases(res.phases_after, res.phases_before, u[np.ix_(COMP, COMP)])
        overlap = abs(np.trace(cm.TARGETS_2Q[target].conj().T @ fixed)) / 4
        assert overlap == pytest.approx(1.0, abs=1e-12)


def test_virtual_z_on_a_conditional_phase_error() -> None:
    """U = diag(1, 1, 1, e^{iφ}) against CZ's neighbour I: local Z phases remove the ZI and
    IZ parts of the controlled phase, e^{iφ/4}·exp(iφ/4·(ZZ − ZI − IZ)), leaving
    exp(iφ/4·ZZ), whose trace is 4·cos(φ/4): F = (4 + 16·cos²(φ/4))/20. Raw:
    |Tr U|² = |3 + e^{iφ}|² = 10 + 6·cos φ, F = (14 + 6·cos φ)/20."""
    for phi in (0.1, 0.7, 2.0, np.pi):
        u = np.eye(9, dtype=complex)
        u[COMP[3], COMP[3]] = np.exp(1j * phi)
        res = cm.gate_fidelity(PAIR, u, "I", kind="unitary", virtual_z=True)
        assert float(res.raw) == pytest.approx((14 + 6 * math.cos(phi)) / 20, abs=1e-13)
        assert float(res.fidelity) == pytest.approx((4 + 16 * math.cos(phi / 4) ** 2) / 20, abs=1e-12)
        assert float(cm.conditional_phase(PAIR, u, kind="unitary")) == pytest.approx(phi, abs=1e-12)


def test_virtual_z_is_a_maximum_and_deterministic(rng: np.random.Generator) -> None:
    us = np.stack([_embed(cm.TARGETS_2Q["ECR"] @ _random_unitary(rng, 4, 0.25), 0.05, rng) for _ in range(4)])
    res = cm.gate_fidelity(PAIR, us, "ECR", kind="unitary", virtual_z=True)
    again = cm.gate_fidelity(PAIR, us, "ECR", kind="unitary", virtual_z=True)
    np.testing.assert_array_equal(res.fidelity, again.fidelity)
    assert np.all(res.fidelity >= res.raw)
    comp_blocks = us[:, COMP[:, None], COMP[None, :]]
    for b in range(us.shape[0]):
        leak_free = cm.gate_fidelity(PAIR, us[b], "ECR", kind="unitary")
        best_random = leak_free.raw
        for _ in range(400):
            a, c = rng.uniform(-np.pi, np.pi, 2), rng.uniform(-np.pi, np.pi, 2)
            u = us[b].copy()
            u[np.ix_(COMP, COMP)] = _zphases(a, c, comp_blocks[b])
            best_random = max(best_random, float(cm.gate_fidelity(PAIR, u, "ECR", kind="unitary").raw))
        assert res.fidelity[b] >= best_random - 1e-12


def test_one_mode_matches_the_single_qubit_metrics(rng: np.random.Generator) -> None:
    one = CoupledModel((Mode("q0", 5e9),))
    us = np.stack([_random_unitary(rng, 3, 0.3) for _ in range(6)])
    for vz in (False, True):
        got = cm.gate_fidelity(one, us, [[0, 1], [1, 0]], kind="unitary", virtual_z=vz).fidelity
        np.testing.assert_allclose(got, gate_fidelity_1q(us, "X", kind="unitary", virtual_z=vz), atol=1e-12)


def test_leakage_and_seepage_of_a_unitary_balance(rng: np.random.Generator) -> None:
    """For a unitary, Tr[P_L·U·P_C·U†] = Tr[P_C·U·P_L·U†] (what leaves C is what enters it
    from L, Wood & Gambetta 2018), so d_C·L1 = d_L·L2 with d_C = 4, d_L = 5."""
    u = _random_unitary(rng, 9, 0.2)
    l1, l2 = float(cm.leakage(PAIR, u, kind="unitary")), float(cm.seepage(PAIR, u, kind="unitary"))
    assert l1 > 1e-3
    assert 4 * l1 == pytest.approx(5 * l2, rel=1e-12)
    two_level = CoupledModel((Mode("q0", 5e9, levels=2), Mode("q1", 4.8e9, levels=2)))
    assert float(cm.seepage(two_level, _random_unitary(rng, 4, 0.2), kind="unitary")) == 0.0


def test_decay_seeps_back() -> None:
    """Uncoupled idle with T1, no thermal population: nothing leaves the computational space
    (L1 = 0), and of the five leakage states |02⟩, |12⟩, |20⟩, |21⟩, |22⟩ a |2⟩ decays
    (rate 2/T1, |⟨1|a|2⟩|² = 2) into C, never back. With e_q = e^{−2T/T1,q}:

        L2 = (1/5)·[ 2(1 − e_1) + 2(1 − e_0) + (1 − e_0)(1 − e_1) ]."""
    free = PAIR.replace(couplings=())
    t = 1e-6
    s = ref.idle_superoperator(free, t)
    e0, e1 = math.exp(-2 * t / 30e-6), math.exp(-2 * t / 40e-6)
    expected = (2 * (1 - e1) + 2 * (1 - e0) + (1 - e0) * (1 - e1)) / 5
    assert float(cm.seepage(free, s, kind="superoperator")) == pytest.approx(expected, abs=1e-12)
    assert float(cm.leakage(free, s, kind="superoperator")) == pytest.approx(0.0, abs=1e-15)


def test_eleven_populations_of_a_partial_swap() -> None:
    """A rotation by θ in the {|11⟩, |20⟩} plane: |11⟩ → cos θ|11⟩ − i sin θ|20⟩."""
    theta = 0.3
    g = np.zeros((9, 9), dtype=complex)
    i11, i20 = 4, 6
    g[i11, i20] = g[i20, i11] = 1.0
    u = expm(-1j * theta * g)
    pops = cm.eleven_populations(PAIR, u, kind="unitary")
    assert float(pops.p20) == pytest.approx(math.sin(theta) ** 2, abs=1e-14)
    assert float(pops.p11) == pytest.approx(math.cos(theta) ** 2, abs=1e-14)
    assert float(pops.p02) == 0.0
    assert float(pops.p_single) == 0.0


def test_idle_is_diagonal_in_the_dressed_basis() -> None:
    """Free evolution does not change dressed states, also in the modes' frames where the
    exchange term rotates: W(t)†·U_idle(t)·W(0) is diagonal, with the dressed energies."""
    t = 137e-9
    u = ref.idle_unitary(PAIR, t)
    bare_offdiag = np.abs(u - np.diag(np.diagonal(u))).max()
    dressed = spectrum.to_dressed_basis(PAIR, u, kind="unitary", duration_s=t)
    assert bare_offdiag > 1e-3
    assert np.abs(dressed - np.diag(np.diagonal(dressed))).max() < 1e-12
    s = spectrum.to_dressed_basis(PAIR, _superop(u), kind="superoperator", duration_s=t)
    np.testing.assert_allclose(s, _superop(dressed), atol=1e-12)
    # idle conditional phase in the dressed basis: −2π·ζ·t
    phi = float(cm.conditional_phase(PAIR, dressed, kind="unitary"))
    assert phi == pytest.approx(-2 * math.pi * float(spectrum.static_zz_hz(PAIR)) * t, abs=1e-9)


def test_static_zz_vanishes_without_coupling_and_follows_flux_batch() -> None:
    free = PAIR.replace(couplings=())
    assert float(spectrum.static_zz_hz(free)) == pytest.approx(0.0, abs=1e-6)
    from pulsecal.envs.physics.coupled import FluxTuning
    tunable = PAIR.replace_mode("q0", flux=FluxTuning())
    zz = spectrum.static_zz_hz(tunable, {"flux:q0": np.array([0.0, 0.05, 0.1])})
    assert zz.shape == (3,)
    assert zz[0] == pytest.approx(float(spectrum.static_zz_hz(PAIR)), rel=1e-12)
    # each point against the second-order formula at q0's tuned frequency (test_closed_forms)
    for offset, z in zip((0.0, 0.05, 0.1), zz, strict=True):
        delta = float(tunable.mode("q0").frequency_at(offset)) - 4.8e9
        assert z == pytest.approx(2 * 9e12 * (1 / (delta + 320e6) - 1 / (delta - 330e6)), rel=0.02)


def test_spectator_fidelity_of_a_cz() -> None:
    """Under CZ, q1 undergoes I with q0 in |0⟩ and Z with q0 in |1⟩. Against I: F = 1 and
    F(Z, I) = (2 + |Tr Z|²)/6 = 1/3. One frame update, shared by both spectator states,
    cannot help: with q1 turned by c = a + b, F0 = (2 + |1 + e^{ic}|²)/6 and
    F1 = (2 + |1 − e^{ic}|²)/6 sum to 4/3 for every c, so the mean stays 2/3. A local Z on
    q1 (the same for both spectator states) is removed entirely."""
    u = np.eye(9, dtype=complex)
    u[COMP[3], COMP[3]] = -1
    raw = spectator.spectator_fidelity(PAIR, u, "I", kind="unitary", qubit="q1")
    assert float(raw.spectator_0) == pytest.approx(1.0, abs=1e-14)
    assert float(raw.spectator_1) == pytest.approx(1 / 3, abs=1e-14)
    assert float(raw.mean) == pytest.approx(2 / 3, abs=1e-14)
    vz = spectator.spectator_fidelity(PAIR, _superop(u), "I", kind="superoperator", qubit="q1", virtual_z=True)
    assert float(vz.mean) == pytest.approx(2 / 3, abs=1e-12)
    local = np.kron(np.eye(3), np.diag([1.0, np.exp(0.8j), np.exp(-0.3j)]))
    both = spectator.spectator_fidelity(PAIR, np.stack([local, local @ u]), "I", kind="unitary", qubit="q1",
                                 virtual_z=True)
    assert both.spectator_0[0] == pytest.approx(1.0, abs=1e-12)
    assert both.spectator_1[0] == pytest.approx(1.0, abs=1e-12)
    assert both.mean[1] == pytest.approx(2 / 3, abs=1e-12)


def test_spectator_reduced_channel_traces_out_the_neighbour(rng: np.random.Generator) -> None:
    """For a product U = A⊗B the reduced channel of q1 is B's, whatever the spectator."""
    a, b = _random_unitary(rng, 3, 0.4), _random_unitary(rng, 3, 0.4)
    u = np.kron(a, b)
    for level in (0, 1):
        ch = spectator.reduced_channel(PAIR, u, kind="unitary", qubit="q1", spectator="q0", spectator_level=level)
        np.testing.assert_allclose(ch, _superop(b), atol=1e-13)
    sf = spectator.spectator_fidelity(PAIR, u, "X", kind="unitary", qubit="q1")
    assert float(sf.spectator_0) == pytest.approx(float(gate_fidelity_1q(b, "X", kind="unitary")), abs=1e-13)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: cm.gate_fidelity(PAIR, np.eye(9), "CCZ", kind="unitary"), "target='CCZ' is unknown"),
        (lambda: cm.gate_fidelity(PAIR, np.eye(9), np.ones((4, 4)), kind="unitary"), "not unitary"),
        (lambda: cm.gate_fidelity(PAIR, np.eye(9), np.eye(2), kind="unitary"), r"allowed \(4, 4\)"),
        (lambda: cm.gate_fidelity(PAIR, np.eye(9), "CZ", kind="superoperator"), "kind='superoperator'"),
        (lambda: cm.gate_fidelity(PAIR, np.eye(9), "CZ", kind="chi"), "kind='chi'"),  # type: ignore[arg-type]
        (lambda: cm.conditional_phase(PAIR, np.eye(9), kind="unitary", qubits=("q0", "q0")), "two different qubits"),
        (lambda: spectrum.static_zz_hz(PAIR, {"flux:q0": 0.1}), "no real channel 'flux:q0'"),
        (lambda: cm.coherence_limit(PAIR, -1e-9), "duration_s"),
        (lambda: cm.coherence_limit_product(1e-7, [1e-5], [3e-5]), "t2_s"),
        (lambda: spectator.spectator_fidelity(PAIR, np.eye(9), "X", kind="unitary", qubit="q7"), "qubit='q7'"),
    ],
)
def test_bad_input_names_the_field(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_three_qubits_and_a_coupler(rng: np.random.Generator) -> None:
    """n = 3 (six phases) recovers a frame-rotated 8×8 target; a coupler between two qubits
    is outside the computational space (in 0), and its excitation counts as leakage."""
    three = CoupledModel(tuple(Mode(f"q{i}", 5e9 - 0.2e9 * i, levels=2) for i in range(3)))
    v = _random_unitary(rng, 8, 1.0)
    bits = np.array([[(i >> (2 - q)) & 1 for q in range(3)] for i in range(8)])
    a, b = rng.uniform(-np.pi, np.pi, 3), rng.uniform(-np.pi, np.pi, 3)
    u = np.diag(np.exp(1j * bits @ a)) @ v @ np.diag(np.exp(1j * bits @ b))
    res = cm.gate_fidelity(three, u, v, kind="unitary", virtual_z=True)
    assert float(res.raw) < 0.9
    assert float(res.fidelity) == pytest.approx(1.0, abs=1e-10)
    assert res.phases_before.shape == (3,)
    with pytest.raises(ValueError, match="two-qubit gate"):
        cm.gate_fidelity(three, u, "CZ", kind="unitary")

    tc = CoupledModel((Mode("q0", 5e9), Mode("c01", 6e9, kind="coupler", rabi_max_hz=None), Mode("q1", 4.8e9)),
                      (Coupling("q0", "c01", 50e6), Coupling("c01", "q1", 50e6)))
    comp = tc.computational_indices()
    assert list(comp) == [0, 1, 9, 10]  # |q0 c q1⟩ with c = 0
    cz = np.eye(27, dtype=complex)
    cz[10, 10] = -1
    assert float(cm.gate_fidelity(tc, cz, "CZ", kind="unitary").raw) == pytest.approx(1.0, abs=1e-14)
    swap_into_coupler = np.eye(27, dtype=complex)
    swap_into_coupler[[1, 3], :] = swap_into_coupler[[3, 1], :]  # |001⟩ ↔ |010⟩ (q1 → coupler)
    assert float(cm.leakage(tc, swap_into_coupler, kind="unitary")) == pytest.approx(0.25, abs=1e-14)
    assert float(spectrum.static_zz_hz(tc)) != 0.0
