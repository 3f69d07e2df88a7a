"""The fast coupled engine against the plain reference: random models (flux, drives, CR,
crosstalk, thermal), per-row models, a dense bring-your-own model, substeps converging to
a fine-step solution, states through a probe sequence, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from pulsecal.envs.physics.coupled import CoupledModel, Coupling, Crosstalk, FluxTuning, Mode, fast
from pulsecal.envs.physics.coupled import propagate as prop
from pulsecal.envs.physics.coupled import reference as ref
from pulsecal.envs.physics.coupled.model import compile_model, thermal_state
from pulsecal.envs.physics.coupled.operators import OperatorModel

BATCH = 16


def random_model(rng: np.random.Generator, levels: tuple[int, ...]) -> CoupledModel:
    """Mode 0 fixed-frequency, the others flux-tunable, neighbours coupled, line crosstalk."""
    modes = []
    for i, lv in enumerate(levels):
        t1 = rng.uniform(10e-6, 50e-6)
        flux = None if i == 0 else FluxTuning(asymmetry=rng.uniform(0, 0.6), low_pass_tau_s=rng.uniform(0, 2e-9),
                                              overshoot=rng.uniform(-0.05, 0.05))
        modes.append(Mode(f"q{i}", rng.uniform(4.8e9, 5.2e9) + 0.4e9 * i, rng.uniform(-340e6, -200e6),
                          levels=lv, t1_s=t1, t2_s=rng.uniform(0.5, 1.8) * t1,
                          thermal_population=rng.uniform(0.0, 0.05), rabi_max_hz=rng.uniform(30e6, 80e6),
                          flux=flux))
    couplings = tuple(Coupling(f"q{i}", f"q{i + 1}", rng.uniform(2e6, 10e6)) for i in range(len(levels) - 1))
    crosstalk = (Crosstalk("q0", "q1", 0.08 * np.exp(1j * rng.uniform(0, 2 * np.pi))),)
    return CoupledModel(tuple(modes), couplings, crosstalk)


def random_controls(rng: np.random.Generator, model: CoupledModel, samples: int) -> dict[str, np.ndarray]:
    """Flux on every tunable mode, a CR drive q0 -> q1 and q1's own drive (one frame)."""
    def drive(scale: float) -> np.ndarray:
        return scale * np.sqrt(rng.uniform(0, 1, (BATCH, samples))) * np.exp(1j * rng.uniform(0, 2 * np.pi, (BATCH, samples)))

    out = {f"flux:{m.name}": rng.uniform(-0.15, 0.15, (BATCH, samples)) for m in model.modes if m.flux is not None}
    out["drive:q0@q1"] = drive(0.6)
    out["drive:q1"] = drive(0.3)
    return out


@pytest.mark.parametrize("levels", [(2, 2), (3, 3), (4, 4), (3, 3, 3)])
def test_unitaries_match_the_reference(levels):
    rng = np.random.default_rng(sum(levels))
    model = random_model(rng, levels)
    controls = random_controls(rng, model, 8)
    np.testing.assert_allclose(fast.unitaries(model, controls), ref.unitaries(model, controls), atol=1e-9, rtol=0)
    flux_only = {k: v for k, v in controls.items() if k.startswith("flux:")}
    np.testing.assert_allclose(fast.unitaries(model, flux_only), ref.unitaries(model, flux_only), atol=1e-9, rtol=0)


def check_superoperators(levels: tuple[int, ...], samples: int, driven: bool) -> None:
    rng = np.random.default_rng(10 + sum(levels))
    model = random_model(rng, levels)
    controls = random_controls(rng, model, samples)
    if not driven:
        controls = {k: v for k, v in controls.items() if k.startswith("flux:")}
    np.testing.assert_allclose(fast.superoperators(model, controls), ref.superoperators(model, controls),
                               atol=1e-9, rtol=0)


@pytest.mark.parametrize("levels", [(2, 2), (3, 3), (4, 4)])
def test_flux_superoperators_match_the_reference(levels):
    check_superoperators(levels, 3, driven=False)


@pytest.mark.parametrize("levels", [(2, 2), (3, 3)])
def test_driven_superoperators_match_the_reference(levels):
    check_superoperators(levels, 5, driven=True)


@pytest.mark.slow
@pytest.mark.parametrize(("levels", "driven"), [((4, 4), True), ((3, 3, 3), False), ((3, 3, 3), True)])
def test_large_superoperators_match_the_reference(levels, driven):
    # D² = 256 or 729 states: the reference's expm per sample takes seconds. Driven, one
    # dense block; flux only, the coherence orders.
    check_superoperators(levels, 2, driven=driven)


def test_flux_pulses_run_on_excitation_manifolds():
    # What makes flux pulses cheap: with no drive playing, the generators split into the
    # excitation-number manifolds (closed: 1, 2, 3, 2, 1 states for 2 × 3 levels) and the
    # coherence orders N_ket − N_bra (open: 19 states for order 0, 9² = 81 in all).
    om = compile_model(random_model(np.random.default_rng(0), (3, 3)))
    closed = fast._terms(om, om.frame_hz, ("flux:q1",), (), False)
    assert sorted(len(b) for b in fast.blocks(closed)) == [1, 1, 2, 2, 3]
    open_ = fast._terms(om, om.frame_hz, ("flux:q1",), (), True)
    assert sorted(len(b) for b in fast.blocks(open_)) == [1, 1, 4, 4, 10, 10, 16, 16, 19]
    driven = fast._terms(om, om.frame_hz, ("flux:q1",), ("drive:q0",), False)
    assert [len(b) for b in fast.blocks(driven)] == [9]


def test_two_frame_frequencies_converge_to_a_fine_step_solution():
    # A drive at q0's frame and a CR drive at q1's play together: the Hamiltonian turns
    # within a sample and both engines substep (CF4). Same step: the same numbers; the
    # default step against a ten times finer reference: the CF4 error, O(step⁴).
    rng = np.random.default_rng(4)
    model = random_model(rng, (3, 3))
    c = {k: v[:4, :3] for k, v in random_controls(rng, model, 3).items()}
    controls = {"drive:q0@q1": c["drive:q0@q1"], "drive:q0": c["drive:q1"], "flux:q1": c["flux:q1"]}
    assert ref.substeps(compile_model(model), fast.check_rows(model, controls, 0.0)[1])[1] > 1
    tight = {"max_phase_step": 0.01}
    np.testing.assert_allclose(fast.unitaries(model, controls, **tight), ref.unitaries(model, controls, **tight),
                               atol=1e-10, rtol=0)
    two = {k: v[:2] for k, v in controls.items()}
    fine = ref.unitaries(model, two, max_phase_step=0.005)
    np.testing.assert_allclose(fast.unitaries(model, two), fine, atol=1e-6, rtol=0)
    np.testing.assert_allclose(fast.unitaries(model, two, max_phase_step=0.02), fine, atol=1e-8, rtol=0)
    s_controls = {k: v[:2, :2] for k, v in controls.items()}
    np.testing.assert_allclose(fast.superoperators(model, s_controls), ref.superoperators(model, s_controls),
                               atol=1e-10, rtol=0)


def test_substepped_dissipation_matches_the_exact_path():
    # A vanishing drive at the control's frame forces substeps on a CR pulse that is exact
    # in one exponential per sample; both paths must dissipate the same (T1 = 2 µs).
    model = CoupledModel((Mode("q0", 4.9e9, levels=2, t1_s=2e-6, t2_s=2e-6), Mode("q1", 5.1e9, levels=2)),
                         (Coupling("q0", "q1", 3e6),))
    cr = 0.3 * np.ones(4)
    exact = ref.superoperators(model, {"drive:q0@q1": cr})
    forced = {"drive:q0@q1": cr, "drive:q0": np.full(4, 1e-300)}
    np.testing.assert_allclose(fast.superoperators(model, forced, max_phase_step=0.01), exact, atol=1e-10)
    np.testing.assert_allclose(ref.superoperators(model, forced, max_phase_step=0.01), exact, atol=1e-10)


def test_one_model_per_row():
    rng = np.random.default_rng(5)
    base = random_model(rng, (3, 3))
    rows = [base.replace_mode("q1", frequency_hz=base.mode("q1").frequency_hz + 20e6 * b,
                              flux=FluxTuning(asymmetry=0.05 * b)) for b in range(BATCH)]
    controls = random_controls(rng, base, 6)
    got = fast.unitaries(rows, controls)
    want = np.stack([ref.unitaries(m, {k: v[b] for k, v in controls.items()})[0] for b, m in enumerate(rows)])
    np.testing.assert_allclose(got, want, atol=1e-9, rtol=0)
    sub = {k: v[:4] for k, v in controls.items()}
    got_s = prop.superoperators(rows[:4], sub)
    want_s = prop.superoperators(rows[:4], sub, engine="numpy-reference")
    np.testing.assert_allclose(got_s, want_s, atol=1e-9, rtol=0)


def bring_your_own(rng: np.random.Generator) -> OperatorModel:
    """Two modes (3 × 2 levels) with a random Hermitian static H: no structure to exploit."""
    from pulsecal.envs.physics.coupled.operators import DriveControl, RealControl

    d = 6
    x = rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d))
    h = 2 * np.pi * 5e6 * (x + x.conj().T)
    raising = 2 * np.pi * 20e6 * (rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d)))
    y = rng.normal(size=(d, d))
    c = np.sqrt(1 / 30e-6) * (rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d))) / d
    return OperatorModel(dims=(3, 2), names=("a", "b"), qubit_levels=((0, 1), (0, 1)), frame_hz=5e9,
                         mode_frames_hz=(5e9, 5e9), h_static=h,
                         drives={"drive:a": DriveControl(raising, 5e9, "a")},
                         reals={"bias": RealControl(2 * np.pi * 1e6 * (y + y.T), 1.0)},
                         collapse=(c,), dt_s=1e-9, shiftable=False)


def test_bring_your_own_model_runs_dense():
    rng = np.random.default_rng(6)
    om = bring_your_own(rng)
    controls = {"drive:a": 0.5 * np.exp(1j * rng.uniform(0, 6, (BATCH, 7))), "bias": rng.uniform(-1, 1, (BATCH, 7))}
    assert [len(b) for b in fast.blocks(fast._terms(om, om.frame_hz, ("bias",), ("drive:a",), True))] == [36]
    np.testing.assert_allclose(prop.unitaries(om, controls), ref.unitaries(om, controls), atol=1e-9, rtol=0)
    np.testing.assert_allclose(prop.superoperators(om, controls), ref.superoperators(om, controls), atol=1e-9, rtol=0)


def test_large_blocks_take_the_blas_path():
    # 3 modes × 3 levels driven: one 27-state block, above the compiled loop's size.
    rng = np.random.default_rng(7)
    model = random_model(rng, (3, 3, 3))
    controls = {k: v[:3, :4] for k, v in random_controls(rng, model, 4).items()}
    assert fast._DENSE_BLAS < 27
    np.testing.assert_allclose(fast.unitaries(model, controls), ref.unitaries(model, controls), atol=1e-9, rtol=0)


def test_idle_of_any_length_matches_the_reference():
    model = random_model(np.random.default_rng(8), (3, 3))
    om = compile_model(model)
    for duration in (13e-9, 2.5e-6):
        np.testing.assert_allclose(fast.idle_propagator(om, duration, True, 7e-9),
                                   ref.idle_superoperator(model, duration, t0_s=7e-9), atol=1e-9)
        np.testing.assert_allclose(fast.idle_propagator(om, duration, False, 7e-9),
                                   ref.idle_unitary(model, duration, t0_s=7e-9), atol=1e-9)


def test_evolve_states_follows_the_sequence():
    # Pulse, idle, frame change, pulse from the thermal state: the same as multiplying the
    # reference's superoperators, with the second pulse's samples turned by e^{iφ}.
    rng = np.random.default_rng(9)
    model = random_model(rng, (3, 3))
    c = random_controls(rng, model, 5)
    first = {"drive:q0@q1": c["drive:q0@q1"], "drive:q1": c["drive:q1"]}
    second = {"flux:q1": c["flux:q1"], "drive:q1": c["drive:q1"][:, ::-1]}
    phi = rng.uniform(0, 2 * np.pi, BATCH)
    segments = [first, prop.Idle(40e-9), prop.FramePhase("q1", phi), second]
    got = prop.evolve_states(model, segments)
    d = model.dimension
    vec = np.broadcast_to(thermal_state(model).reshape(-1, order="F"), (BATCH, d * d))
    vec = np.einsum("bij,bj->bi", ref.superoperators(model, first), vec)
    vec = ref.idle_superoperator(model, 40e-9, t0_s=5e-9) @ vec.T
    turned = dict(second, **{"drive:q1": np.exp(1j * phi)[:, None] * second["drive:q1"]})
    vec = np.einsum("bij,jb->bi", ref.superoperators(model, turned, t0_s=45e-9), vec)
    want = vec.reshape(BATCH, d, d).transpose(0, 2, 1)
    np.testing.assert_allclose(got, want, atol=1e-9)
    pops = prop.evolve_states(model, segments, populations=True)
    np.testing.assert_allclose(pops, np.diagonal(want, axis1=1, axis2=2).real, atol=1e-9)
    np.testing.assert_allclose(pops.sum(axis=1), 1.0, atol=1e-12)
    closed = prop.evolve_states(model, segments, open_system=False, engine="numpy-reference")
    np.testing.assert_allclose(prop.evolve_states(model, segments, open_system=False), closed, atol=1e-9)


def test_evolve_states_skips_blocks_the_state_never_reaches():
    # From |00⟩ through flux pulses only coherence order 0 is occupied: the other blocks
    # are skipped, and the result is still the full superoperator's.
    rng = np.random.default_rng(11)
    model = random_model(rng, (3, 3))
    flux = {"flux:q1": rng.uniform(-0.15, 0.15, (BATCH, 6))}
    d = model.dimension
    rho0 = np.zeros((d, d), dtype=complex)
    rho0[0, 0] = 1.0
    want = np.einsum("bij,j->bi", ref.superoperators(model, flux), rho0.reshape(-1, order="F"))
    got = prop.evolve_states(model, [flux, prop.Idle(1e-6), flux], rho0)
    want = np.einsum("ij,bj->bi", ref.idle_superoperator(model, 1e-6, t0_s=6e-9), want)
    want = np.einsum("bij,bj->bi", ref.superoperators(model, flux, t0_s=1006e-9), want)
    np.testing.assert_allclose(got, want.reshape(BATCH, d, d).transpose(0, 2, 1), atol=1e-9)
    psi = np.zeros((BATCH, d, d), dtype=complex)
    psi[:, 1, 1] = 1.0
    u = ref.unitaries(model, flux)
    np.testing.assert_allclose(prop.evolve_states(model, [flux], psi, open_system=False),
                               u @ psi @ u.conj().transpose(0, 2, 1), atol=1e-9)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: prop.unitaries(m, {"drive:q0": [0.1]}, engine="scipy"), "engine='scipy' is unknown"),
        (lambda m: prop.unitaries(m, {"drive:q0": [0.1]}, max_phase_step=0.0), "max_phase_step"),
        (lambda m: prop.unitaries(m, {"drive:q9": [0.1]}), "no channel 'drive:q9'"),
        (lambda m: prop.unitaries([m, m], {"drive:q0": np.zeros((3, 2))}), "sequence of 2"),
        (lambda m: prop.evolve_states(m, [prop.FramePhase("q7", 0.1)]), "mode='q7'"),
        (lambda m: prop.evolve_states(m, [{"drive:q0": [0.1]}], rho0=np.eye(3)), "rho0 has shape"),
        (lambda m: prop.Idle(-1e-9), "duration_s"),
    ],
)
def test_bad_input_is_named(call, message):
    model = random_model(np.random.default_rng(0), (3, 3))
    with pytest.raises(ValueError, match=message):
        call(model)


def test_generated_lane_kernels_match_their_generator_and_the_scalar_kernel():
    from pulsecal.envs.physics.coupled import _codegen, _lanes

    assert _codegen.TARGET.read_text() == _codegen.source()
    rng = np.random.default_rng(12)
    for n in _lanes.CHAINS:
        h = rng.normal(size=(1, 3, n, n)) + 1j * rng.normal(size=(1, 3, n, n))
        mats = -1j * (h + h.conj().transpose(0, 1, 3, 2))
        coef = rng.normal(size=(BATCH + 3, 5, 3))  # a partial last lane block
        want = np.empty((BATCH + 3, n, n), dtype=complex)
        fast._chain_kernel(mats, coef, fast._TAYLOR, want)
        got = np.empty_like(want)
        flat = mats.reshape(1, 3, n * n)
        _lanes.CHAINS[n](np.ascontiguousarray(flat.real), np.ascontiguousarray(flat.imag), coef, fast._TAYLOR, got)
        np.testing.assert_allclose(got, want, atol=1e-12)
