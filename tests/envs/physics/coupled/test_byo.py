"""Bring-your-own models: the same two-transmon device as a CoupledModel, as QuTiP objects
and as a qiskit-dynamics Solver gives the same propagators and the same measured
distribution through every engine; bad input names its field."""

from __future__ import annotations

import math

import numpy as np
import pytest
import qutip

from pulsecal.envs.physics.coupled import byo, check_pulse
from pulsecal.envs.physics.coupled import engine_qutip as eq
from pulsecal.envs.physics.coupled import reference as ref
from pulsecal.envs.physics.coupled.model import compile_model, thermal_state

from ..conftest import needs_dynamics
from . import byo_device as dev

TOL = 1e-7
BATCH = 16


def qutip_model(levels: int = 3):
    p = dev.qutip_parts(levels)
    return byo.from_qutip(p["h"], p["controls"], c_ops=p["c_ops"], dt_s=dev.DT, frame_hz=dev.F0,
                          mode_frames_hz=(dev.F0, dev.F1), max_abs={"flux:q1": 500.0})


def dynamics_model(levels: int = 3):
    return byo.from_qiskit_dynamics(dev.qiskit_solver(levels), dev.QISKIT_CHANNELS, dims=(levels, levels),
                                    frame_hz=dev.F0, time_unit_s=1e-9, max_abs={"flux:q1": 500.0})


def probe(samples: int = 3, seed: int = 3):
    """The same probe for the CoupledModel (flux in Φ0) and for the BYO models (flux in MHz)."""
    rng = np.random.default_rng(seed)
    u = 0.6 * np.exp(1j * rng.uniform(0, 2 * np.pi, (BATCH, samples)))
    phi = rng.uniform(-0.15, 0.15, (BATCH, samples))
    coupled = {"drive:q0": u, "flux:q1": phi}
    shift_hz = check_pulse(compile_model(dev.coupled_model()), coupled).reals["flux:q1"]
    return coupled, {"drive:q0": u, "flux:q1": shift_hz / dev.FLUX_UNIT_HZ}


def measured_distribution(om, s: np.ndarray, rho0: np.ndarray) -> np.ndarray:
    """(B, 4) outcome probabilities of both qubits, |2⟩ reading as 1 (first qubit most significant)."""
    d = om.dimension
    rho = (s @ rho0.reshape(-1, order="F")).reshape(s.shape[0], d, d, order="F")
    pops = np.einsum("bii->bi", rho).real
    levels = om.level_numbers()
    outcome = (np.minimum(levels[0], 1) * 2 + np.minimum(levels[1], 1)).astype(int)
    out = np.zeros((s.shape[0], 4))
    for i, k in enumerate(outcome):
        out[:, k] += pops[:, i]
    return out


def test_the_three_descriptions_compile_to_the_same_operators():
    om_c, om_q, om_d = compile_model(dev.coupled_model()), qutip_model(), dynamics_model()
    for om in (om_q, om_d):
        assert om.dims == (3, 3) and om.mode_frames_hz == pytest.approx((dev.F0, dev.F1), abs=1e-3)
        np.testing.assert_allclose(om.h_static, om_c.h_static, atol=1e-3)  # rad/s, entries ~1e9
        assert om.shiftable
        for name in ("drive:q0", "drive:q0@q1", "drive:q1"):
            np.testing.assert_allclose(om.drives[name].raising, om_c.drives[name].raising, atol=1e-3)
            assert om.drives[name].frequency_hz == pytest.approx(om_c.drives[name].frequency_hz, abs=1e-3)
        np.testing.assert_allclose(om.dissipator(), om_c.dissipator(), atol=1e-6)


@pytest.mark.parametrize("open_system", [False, True])
def test_byo_models_agree_through_reference_and_qutip(open_system):
    coupled, byo_controls = probe()
    om_c = compile_model(dev.coupled_model())
    fn = ref.superoperators if open_system else ref.unitaries
    expected = fn(om_c, coupled)
    for om in (qutip_model(), dynamics_model()):
        np.testing.assert_allclose(fn(om, byo_controls), expected, atol=TOL, rtol=0)
        pulse = check_pulse(om, byo_controls)
        got = eq.superoperators(om, pulse) if open_system else eq.unitaries(om, pulse)
        np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)
    np.testing.assert_allclose((eq.superoperators if open_system else eq.unitaries)(om_c, check_pulse(om_c, coupled)),
                               expected, atol=TOL, rtol=0)


def test_cross_resonance_on_byo_models_agrees_through_reference_and_qutip():
    # q0's drive at its own frame and at q1's: the Hamiltonian turns within a sample, so the
    # reference substeps and QuTiP integrates its ODE (a small batch: both are slow here;
    # test_cross_engine runs batch 16).
    rng = np.random.default_rng(5)
    controls = {"drive:q0": 0.5 * np.exp(1j * rng.uniform(0, 2 * np.pi, (4, 2))),
                "drive:q0@q1": 0.5 * np.exp(1j * rng.uniform(0, 2 * np.pi, (4, 2)))}
    om_c = compile_model(dev.coupled_model())
    expected = ref.unitaries(om_c, controls, max_phase_step=0.01)
    for om in (qutip_model(), dynamics_model()):
        pulse = check_pulse(om, controls)
        assert ref.substeps(om, pulse)[1] > 1
        np.testing.assert_allclose(eq.unitaries(om, pulse), expected, atol=TOL, rtol=0)


def test_measured_distribution_agrees_through_every_engine():
    coupled, byo_controls = probe()
    om_c = compile_model(dev.coupled_model())
    rho0 = thermal_state(dev.coupled_model())
    expected = measured_distribution(om_c, ref.superoperators(om_c, coupled), rho0)
    assert np.allclose(expected.sum(axis=1), 1.0, atol=1e-12) and expected.min() >= -1e-12
    assert np.ptp(expected[:, 2]) > 1e-2  # the probe excites q0, and differently per row
    for om in (qutip_model(), dynamics_model()):
        pulse = check_pulse(om, byo_controls)
        for s in (ref.superoperators(om, byo_controls), eq.superoperators(om, pulse)):
            np.testing.assert_allclose(measured_distribution(om, s, rho0), expected, atol=TOL, rtol=0)


@needs_dynamics
@pytest.mark.slow  # one JAX compile per model and closed/open: ~20 s each on a shared core
@pytest.mark.parametrize("open_system", [False, True])
def test_byo_models_agree_through_dynamics(open_system):
    from pulsecal.envs.physics.coupled import engine_dynamics as ed

    coupled, byo_controls = probe()
    om_c = compile_model(dev.coupled_model())
    expected = (ref.superoperators if open_system else ref.unitaries)(om_c, coupled)
    rho0 = thermal_state(dev.coupled_model())
    for om, controls in ((om_c, coupled), (qutip_model(), byo_controls), (dynamics_model(), byo_controls)):
        pulse = check_pulse(om, controls)
        got = ed.superoperators(om, pulse) if open_system else ed.unitaries(om, pulse)
        np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)
        if open_system:
            np.testing.assert_allclose(measured_distribution(om, got, rho0),
                                       measured_distribution(om_c, expected, rho0), atol=TOL, rtol=0)


@needs_dynamics
def test_from_qiskit_dynamics_reads_the_solver_as_the_solver_runs_it():
    # The user's own Solver, run by qiskit-dynamics in its rotating frame with its signal
    # convention (Re[d·e^{i2πft}] per operator), against the converted model through the
    # reference engine: checks the frame, units and I/Q reading of from_qiskit_dynamics.
    from qiskit_dynamics import DiscreteSignal

    solver = dev.qiskit_solver(open_system=False)
    om = dynamics_model()
    rng = np.random.default_rng(7)
    u = 0.6 * np.exp(1j * rng.uniform(0, 2 * np.pi, 3))
    x = rng.uniform(-80, 80, 3)
    zero = np.zeros(3)
    sigs = [DiscreteSignal(1.0, u), DiscreteSignal(1.0, -1j * u)] + [DiscreteSignal(1.0, zero)] * 4 \
        + [DiscreteSignal(1.0, x)]
    res = solver.solve(t_span=[0.0, 3.0], y0=np.eye(9, dtype=complex), signals=sigs,
                       method="DOP853", atol=1e-12, rtol=1e-12)
    expected = ref.unitaries(om, {"drive:q0": u, "flux:q1": x})[0]
    np.testing.assert_allclose(np.asarray(res.y[-1]), expected, atol=1e-8)


# -- bad input ----------------------------------------------------------------------------


def _qutip_kwargs(**changes):
    p = dev.qutip_parts(2)
    kw = {"h_static": p["h"], "controls": list(p["controls"]), "c_ops": p["c_ops"], "dt_s": 1e-9,
          "frame_hz": dev.F0, "max_abs": {"flux:q1": 500.0}}
    kw.update(changes)
    return kw


def _replace_control(k, entry):
    controls = list(dev.qutip_parts(2)["controls"])
    controls[k] = entry
    return controls


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"h_static": qutip.tensor(qutip.num(3), qutip.qeye(2))}, r"controls\['drive:q0'\].operator has dims"),
        ({"dims": (2, 3)}, "h_static has dims"),
        ({"h_static": qutip.tensor(qutip.destroy(2), qutip.qeye(2))}, "h_static is not Hermitian"),
        ({"controls": _replace_control(3, (qutip.tensor(qutip.qeye(2), qutip.destroy(2)), "flux:q1", None))},
         r"controls\['flux:q1'\].operator is not Hermitian"),
        ({"controls": _replace_control(0, (qutip.tensor(qutip.create(2), qutip.qeye(2)), "drive q0", None))},
         "not a channel name"),
        ({"controls": _replace_control(0, (qutip.tensor(qutip.create(2), qutip.qeye(2)), "drive:q7", None))},
         "names mode 'q7'"),
        ({"controls": _replace_control(3, (qutip.tensor(qutip.qeye(2), qutip.num(2)), "flux:q1", 5e9))},
         r"controls\[3\].frequency_hz"),
        ({"frame_hz": -5e9}, "frame_hz"),
        ({"frame_hz": 5e15}, "frame_hz"),
        ({"mode_frames_hz": (5e9, 4.9)}, r"mode_frames_hz\[1\]"),
        ({"controls": _replace_control(1, (qutip.tensor(qutip.create(2), qutip.qeye(2)), "drive:q0@q1", -1e9))},
         "frequency_hz"),
        ({"h_static": np.full((4, 4), np.nan), "dims": (2, 2)}, r"h_static\[0, 0\] = .* is not finite"),
        ({"c_ops": [np.diag([1.0, np.inf, 0, 0])]}, r"c_ops\[0\]\[1, 1\]"),
        ({"qubit_levels": ((0, 1), (0, 2))}, r"qubit_levels\[1\]"),
        ({"qubit_levels": (None, None)}, "qubit_levels"),
        ({"dt_s": 1.0}, "dt_s"),
        ({"max_abs": {"flux:q1": -1.0}}, r"max_abs\['flux:q1'\]"),
        ({"max_abs": {"drive:q0": 1.0}}, "max_abs"),
        ({"mode_names": ("q0",)}, "mode_names"),
    ],
)
def test_from_qutip_refuses_bad_input_naming_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        byo.from_qutip(**_qutip_kwargs(**changes))


def test_from_qutip_result_rejects_out_of_range_samples():
    om = byo.from_qutip(**_qutip_kwargs())
    with pytest.raises(ValueError, match="flux:q1"):
        check_pulse(om, {"flux:q1": [600.0]})


@needs_dynamics
def test_from_qiskit_dynamics_refuses_what_it_cannot_represent():
    from qiskit_dynamics import Solver

    a = np.diag([1.0, math.sqrt(2)], 1).astype(complex)
    a = np.pad(a, ((0, 0), (0, 0)))
    h = np.diag([0.0, 0.0, -2.0]).astype(complex)
    x = a + a.conj().T
    with pytest.raises(ValueError, match="dissipator_operators"):
        byo.from_qiskit_dynamics(Solver(static_hamiltonian=h, hamiltonian_operators=[x], dissipator_operators=[a]),
                                 {"drive:q0": (0, None)}, dims=(3,), frame_hz=5e9, dt_s=1e-9)
    with pytest.raises(ValueError, match="not diagonal"):
        byo.from_qiskit_dynamics(Solver(static_hamiltonian=h, hamiltonian_operators=[x], rotating_frame=h + 0.1 * x),
                                 {"drive:q0": (0, None)}, dims=(3,), frame_hz=5e9, dt_s=1e-9)
    with pytest.raises(ValueError, match="one frame frequency per mode"):
        byo.from_qiskit_dynamics(Solver(static_hamiltonian=h, hamiltonian_operators=[x], rotating_frame=np.diag(h)),
                                 {"drive:q0": (0, None)}, dims=(3,), frame_hz=5e9, dt_s=1e-9)
    with pytest.raises(ValueError, match=r"hamiltonian_operators\[1\] are not mapped"):
        byo.from_qiskit_dynamics(Solver(static_hamiltonian=h, hamiltonian_operators=[x, 1j * (a.conj().T - a)]),
                                 {"drive:q0": (0, None)}, dims=(3,), frame_hz=5e9, dt_s=1e-9)
    with pytest.raises(ValueError, match="dt_s"):
        byo.from_qiskit_dynamics(Solver(static_hamiltonian=h, hamiltonian_operators=[x]),
                                 {"drive:q0": (0, None)}, dims=(3,), frame_hz=5e9)
    with pytest.raises(ValueError, match="static_hamiltonian has shape"):
        byo.from_qiskit_dynamics(Solver(static_hamiltonian=h, hamiltonian_operators=[x]),
                                 {"drive:q0": (0, None)}, dims=(2, 2), frame_hz=5e9, dt_s=1e-9)
