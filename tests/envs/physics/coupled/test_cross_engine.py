"""Cross-engine checks on random coupled models: the plain reference propagator vs the QuTiP
engine vs the qiskit-dynamics engine, closed and open, with flux, drives, cross-resonance,
crosstalk, thermal populations and T1/T2.

Piecewise-constant pulses (every playing drive at one frame) are exact in every engine;
pulses with a cross-resonance drive beside the control's own drive turn within a sample,
where QuTiP and qiskit-dynamics integrate converged ODEs and the reference uses CF4
substeps. The fidelity is the average gate fidelity on the computational subspace of the
propagator projected on it (valid with leakage): for a trace-non-increasing map E with
Kraus operators K_k and a target unitary V on d states,
F = [Σ_k |Tr(V†K_k)|² + Tr(Σ_k K_k†K_k)]/(d(d+1)), which in column-stacking
superoperators is [Tr(S_V†S) + vec(I)ᵀ·S·vec(I)]/(d(d+1)) with S_V = V̄⊗V.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import unitary_group

from pulsecal.envs.physics.coupled import (
    CoupledModel,
    Coupling,
    Crosstalk,
    FluxTuning,
    Mode,
    check_pulse,
)
from pulsecal.envs.physics.coupled import engine_qutip as eq
from pulsecal.envs.physics.coupled import reference as ref
from pulsecal.envs.physics.coupled.model import compile_model

from ..conftest import needs_dynamics

BATCH = 16
TOL = 1e-7


def random_model(rng: np.random.Generator, levels: tuple[int, ...]) -> CoupledModel:
    modes = []
    for i, d in enumerate(levels):
        t1 = rng.uniform(15e-6, 80e-6)
        modes.append(Mode(
            f"q{i}", rng.uniform(4.8e9, 5.2e9), -rng.uniform(280e6, 340e6), d, t1,
            rng.uniform(0.3, 1.9) * t1, rng.uniform(0.0, 0.05), rng.uniform(40e6, 80e6),
            flux=FluxTuning(asymmetry=rng.uniform(0, 0.5), max_offset=0.2, low_pass_tau_s=0.5e-9) if i == 1 else None,
        ))
    couplings = tuple(Coupling(f"q{i}", f"q{i + 1}", rng.uniform(2e6, 5e6)) for i in range(len(levels) - 1))
    xtalk = (Crosstalk("q0", "q1", complex(rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1))),
             Crosstalk("q1", "q0", complex(rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1))))
    return CoupledModel(tuple(modes), couplings, xtalk)


def random_controls(rng: np.random.Generator, samples: int, cross_resonance: bool) -> dict[str, np.ndarray]:
    def drive(scale: float) -> np.ndarray:
        return scale * np.sqrt(rng.uniform(0, 1, (BATCH, samples))) * np.exp(1j * rng.uniform(0, 2 * np.pi, (BATCH, samples)))

    out = {"drive:q0": drive(0.8), "flux:q1": rng.uniform(-0.15, 0.15, (BATCH, samples))}
    if cross_resonance:
        out["drive:q0@q1"] = drive(0.8)
    else:
        out["drive:q1"] = 0.0 * drive(1.0)  # a silent channel at another frame keeps the pulse exact
    return out


def _sub(om, d_full: int) -> tuple[np.ndarray, np.ndarray]:
    idx = om.computational_indices()
    sup = np.array([i + j * d_full for j in idx for i in idx])
    return idx, sup


def fidelity_closed(om, u: np.ndarray, target: np.ndarray) -> np.ndarray:
    idx, _ = _sub(om, om.dimension)
    m = u[:, idx][:, :, idx]
    d = len(idx)
    tr = np.einsum("ij,bij->b", target.conj(), m)
    return (np.einsum("bij,bij->b", m.conj(), m).real + np.abs(tr) ** 2) / (d * (d + 1))


def fidelity_open(om, s: np.ndarray, target: np.ndarray) -> np.ndarray:
    _, sup = _sub(om, om.dimension)
    m = s[:, sup][:, :, sup]
    d = round(np.sqrt(len(sup)))
    sv = np.kron(target.conj(), target)
    vec_i = np.eye(d).reshape(-1, order="F")
    return (np.einsum("ij,bij->b", sv.conj(), m).real + np.einsum("i,bij,j->b", vec_i, m, vec_i).real) / (d * (d + 1))


def compare(om, pulse, controls, engines, open_system: bool, target: np.ndarray) -> None:
    fn = ref.superoperators if open_system else ref.unitaries
    expected = fn(om, controls, t0_s=pulse.t0_s, max_phase_step=0.01)
    f_ref = (fidelity_open if open_system else fidelity_closed)(om, expected, target)
    for name, engine in engines:
        got = (engine.superoperators if open_system else engine.unitaries)(om, pulse)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=TOL, rtol=0, err_msg=name)
        f = (fidelity_open if open_system else fidelity_closed)(om, got, target)
        assert np.max(np.abs(f - f_ref)) <= (1e-7 if open_system else 1e-8), name


def _case(seed: int, levels: tuple[int, ...], samples: int, cross_resonance: bool):
    rng = np.random.default_rng(seed)
    model = random_model(rng, levels)
    om = compile_model(model)
    controls = random_controls(rng, samples, cross_resonance)
    pulse = check_pulse(om, controls, t0_s=float(rng.integers(0, 50)) * model.dt_s)
    target = unitary_group.rvs(len(om.computational_indices()), random_state=seed)
    return om, controls, pulse, target


def _dynamics():
    from pulsecal.envs.physics.coupled import engine_dynamics

    return engine_dynamics


@pytest.mark.parametrize("levels", [(2, 2), (2, 3)])
@pytest.mark.parametrize("open_system", [False, True])
def test_piecewise_constant_reference_vs_qutip(levels, open_system):
    om, controls, pulse, target = _case(11 + levels[1], levels, 3, False)
    assert ref.substeps(om, pulse)[1] == 1
    compare(om, pulse, controls, [("qutip", eq)], open_system, target)


@pytest.mark.parametrize("open_system", [False, True])
def test_cross_resonance_reference_vs_qutip_ode(open_system):
    om, controls, pulse, target = _case(5, (2, 2), 2, True)
    assert ref.substeps(om, pulse)[1] > 1
    compare(om, pulse, controls, [("qutip", eq)], open_system, target)


def test_qutip_ode_agrees_with_its_exact_path():
    om, _, pulse, _ = _case(8, (2, 3), 3, False)
    np.testing.assert_allclose(eq.unitaries_sesolve(om, pulse), eq.unitaries(om, pulse), atol=TOL, rtol=0)


@needs_dynamics
@pytest.mark.parametrize("open_system", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_piecewise_constant_reference_vs_dynamics(open_system):
    om, controls, pulse, target = _case(21, (2, 3), 3, False)
    compare(om, pulse, controls, [("qiskit-dynamics", _dynamics())], open_system, target)


# Every size closed and open, piecewise constant and with cross-resonance, except the open
# cross-resonance pulse on 3 modes × 3 levels: its 729 × 729 superoperator through QuTiP's
# mesolve and 250 CF4 substeps per sample does not finish in a test run on one core.
SWEEP = [(levels, cr, open_system)
         for levels in [(2, 2), (3, 3), (4, 4), (3, 3, 3)]
         for cr in (False, True)
         for open_system in (False, True)
         if not (cr and open_system and len(levels) == 3)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("levels", "cross_resonance", "open_system"), SWEEP,
    ids=["x".join(map(str, lv)) + ("-cr" if cr else "-pwc") + ("-open" if o else "-closed") for lv, cr, o in SWEEP],
)
def test_sweep_every_engine(levels, cross_resonance, open_system):
    samples = 4 if not cross_resonance else (1 if open_system and max(levels) > 3 else 2)
    om, controls, pulse, target = _case(100 + sum(levels), levels, samples, cross_resonance)
    engines: list = [("qutip", eq)]
    try:
        engines.append(("qiskit-dynamics", _dynamics()))
        _dynamics()._import()
    except ImportError:
        engines.pop()
    compare(om, pulse, controls, engines, open_system, target)
