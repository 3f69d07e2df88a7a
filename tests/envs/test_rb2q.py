"""Two-qubit RB and interleaved RB on the simulated multi-qubit device.

Closed form used below: a CZ whose conditional phase is off by δ, V = diag(1, 1, 1,
−e^{iδ}), has |Tr CZ†·V| = |3 + e^{iδ}| and average gate infidelity
1 − F = (d − |Tr U†V|²/d)/(d + 1), d = 4 (Nielsen 2002); interleaved RB measures the
average gate infidelity of the interleaved gate (Magesan et al. 2012). On the device the
gate also carries its leakage and coherent remainders, so the comparison is with
``metrics.gate_fidelity`` of the gate as played (frames applied, no virtual-Z search),
and the closed form is checked against that metric for the measured conditional phase.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pulsecal.envs import cz_calibration_core as czc
from pulsecal.envs import rb2q
from pulsecal.envs.cr_calibration_core import (
    ECRKnobs,
    ECRShape,
    drive_rabi_hz,
    ecr_ops,
    nominal_knobs,
)
from pulsecal.envs.cz_calibration import CZCalibrationConfig, CZCalibrationEnv
from pulsecal.envs.multi_qubit_presets import make_multi_qubit_device
from pulsecal.envs.physics.coupled import metrics as m2
from pulsecal.envs.protocol import Barrier, Delay, Measure, Play, PulseSequence, VirtualZ
from pulsecal.envs.verification import Reason

AMP, LENGTH = 0.1533, 52e-9


def _cz_device(open_system: bool = False, seed: int = 0):  # type: ignore[no-untyped-def]
    return make_multi_qubit_device("two_transmons_cz", np.random.default_rng(seed), open_system=open_system)


def _cz_natives(dev, length_s: float = LENGTH, delay_s: float = 0.0,  # type: ignore[no-untyped-def]
                exact_undo: bool = False):
    """The flux CZ (then ``delay_s`` of idle, whose static ZZ adds to the conditional
    phase) with frame updates from the closed-system unitary (the test's stand-in for a
    calibrated gate): the best virtual Z (``metrics.gate_fidelity``), or with
    ``exact_undo`` the ones that undo its single-qubit phases, so that the gate as played
    is diag(1, 1, 1, −e^{iδ}) on the qubits plus leakage. Textbook 1Q pulses."""
    ops: list = [Play(czc.CZPulse().waveform(AMP, length_s).astype(np.complex128), channel="flux:q1")]
    if delay_s:
        ops.append(Delay(delay_s))
    gate = PulseSequence(tuple(ops))
    _, u = _cz_device(False).schedule_propagator(gate)
    comp = [0, 1, 3, 4]  # |00⟩, |01⟩, |10⟩, |11⟩ of two three-level modes
    d = np.diagonal(u)[comp]
    a_q1, a_q0 = np.angle(d[1] / d[0]), np.angle(d[2] / d[0])
    if not exact_undo:
        names, _ = dev.schedule_propagator(gate)
        g = m2.gate_fidelity(dev.params.model.restrict(names), u, "CZ", kind="unitary", virtual_z=True)
        a_q0, a_q1 = -(g.phases_before + g.phases_after)
    frames = (VirtualZ(float(czc.VZ_SIGN * -a_q0), frame="q0"), VirtualZ(float(czc.VZ_SIGN * -a_q1), frame="q1"))
    single = (rb2q.nominal_single_qubit(dev.params.model, "q0"), rb2q.nominal_single_qubit(dev.params.model, "q1"))
    return rb2q.TwoQubitNatives("CZ", gate, single, frames)


def _played_infidelity(dev, nat: rb2q.TwoQubitNatives) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(1 − F of the gate as played, frames applied; its conditional phase), truth."""
    names, op = dev.schedule_propagator(nat.gate)
    model = dev.params.model.restrict(names)
    kind = "superoperator" if dev.open_system else "unitary"
    phases = {vz.frame: czc.VZ_SIGN * vz.phase for vz in nat.gate_frames}
    corrected = czc._apply_local_z(model, op, kind, phases)
    f = float(m2.gate_fidelity(model, corrected, "CZ", kind=kind).fidelity)
    return 1.0 - f, float(m2.conditional_phase(model, op, kind=kind))


def test_composed_programs_equal_the_device_running_the_whole_sequence() -> None:
    """run_programs' composition (one process per native, frame covariance) against the
    device simulating the equivalent sequence sample by sample."""
    for preset in ("two_transmons_cz", "two_transmons_cr"):
        dev = make_multi_qubit_device(preset, np.random.default_rng(0), open_system=False)
        model = dev.params.model
        single = (rb2q.nominal_single_qubit(model, "q0"), rb2q.nominal_single_qubit(model, "q1"))
        if preset.endswith("cz"):
            gate = PulseSequence((Play(czc.CZPulse().waveform(AMP, LENGTH).astype(np.complex128), channel="flux:q1"),))
        else:
            k = nominal_knobs(model, ECRShape())
            gate = PulseSequence(tuple(ecr_ops(ECRKnobs(k.cr_amp, k.cr_phase_rad, 0.01, 0.3), ECRShape(),
                                               drive_rabi_hz(model, "q0"), dev.dt_s)))
        nat = rb2q.TwoQubitNatives("CZ" if preset.endswith("cz") else "ECR", gate, single)
        natives = nat.pulses(dev.dt_s)
        progs = rb2q.rb_programs(np.random.default_rng(3), (2, 3), 2, nat, interleaved=True)
        p = dev.program_probabilities(natives, progs, ("q0", "q1"))
        seqs = []
        for prog in progs:
            ops: list = []
            for item in prog:
                ops += [item] if isinstance(item, VirtualZ) else [*natives[item].ops, Barrier()]
            seqs.append(PulseSequence((*ops, Measure(("q0", "q1")))))
        np.testing.assert_allclose(p, dev.outcome_probabilities(seqs), atol=2e-6)


def test_rb_on_a_closed_device_matches_the_gate_and_charges_its_shots() -> None:
    dev = _cz_device()
    nat = _cz_natives(dev)
    s = rb2q.RB2QSettings(n_random=10, shots=200)
    clock = dev.clock_s
    irb = rb2q.run_irb(dev, nat, s)
    n_seq = 2 * len(s.lengths) * s.n_random
    assert irb.shots_used == s.total_shots == n_seq * s.shots
    assert dev.clock_s - clock == pytest.approx(n_seq * s.shots * dev.params.rep_time_s)
    # Closed system: the reference error per Clifford is the natives' own coherent error
    # (1.5 CZs and ~4 single-qubit pulses per Clifford, each ~1e-3).
    assert 0 < irb.reference.epc < 0.006
    truth, _ = _played_infidelity(dev, nat)
    assert abs(irb.gate_error - truth) < 3 * irb.gate_error_sigma + 2e-4
    assert irb.gate_error_sigma < 2e-3


def test_interleaved_error_of_a_mis_set_cz_matches_the_closed_form() -> None:
    dev = _cz_device()
    nat = _cz_natives(dev, delay_s=200e-9, exact_undo=True)  # 200 ns of static ZZ (~190 kHz): δ ≈ 0.34 rad
    truth, cphase = _played_infidelity(dev, nat)
    delta = math.remainder(cphase - math.pi, 2 * math.pi)
    closed = (4 - abs(3 + np.exp(1j * delta)) ** 2 / 4) / 5
    assert 0.3 < abs(delta) < 0.4
    assert truth == pytest.approx(closed, rel=0.05)  # the rest: leakage and dressing
    irb = rb2q.run_irb(dev, nat, rb2q.RB2QSettings(n_random=10, shots=200))
    assert abs(irb.gate_error - closed) < 3 * irb.gate_error_sigma, (irb.gate_error, irb.gate_error_sigma, closed)


def test_verdict_passes_a_good_cz_and_flags_a_bad_one() -> None:
    dev = _cz_device()
    s = rb2q.RB2QSettings(n_random=10, shots=200)
    stated = rb2q.stated_of_preset(dev.params.model)
    good = rb2q.verify_entangler(dev, _cz_natives(dev), s, stated)
    assert good.calibrated, good.describe()
    assert good.shots_used == s.total_shots
    bad = rb2q.verify_entangler(dev, _cz_natives(dev, LENGTH + 8e-9), s, stated)  # leaks: 1 − F ≈ 0.09
    assert not bad.calibrated and bad.reason is Reason.RESIDUAL_ERROR, bad.describe()
    assert bad.error_interval[0] > s.threshold * bad.coherence_limit


def test_cz_env_verdict_is_opt_in_and_its_shots_are_counted() -> None:
    budget = 7 * 400 + 2 * 800
    plain = CZCalibrationEnv(open_system=False, shot_budget=budget)
    _, info = plain.reset(seed=1)
    assert "verdict" not in info
    s = {"n_random": 2, "shots": 20, "lengths": (1, 4, 16)}
    env = CZCalibrationEnv(open_system=False, shot_budget=budget, verification=s)
    _, info = env.reset(seed=1)
    assert info["verdict"] is None
    before = info["shots_used"]
    _, _, term, _, info = env.step(np.zeros(4, np.float32))
    assert term
    v = info["verdict"]
    assert v is not None and v.shots_used == info["verification_shots"] == 2 * 3 * 2 * 20
    assert info["shots_used"] == before + 800 + v.shots_used


def test_refused_inputs_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"RB2QSettings\.lengths"):
        rb2q.RB2QSettings(lengths=(1, 2))
    with pytest.raises(ValueError, match=r"RB2QSettings\.n_random"):
        rb2q.RB2QSettings(n_random=1)
    with pytest.raises(ValueError, match="verification"):
        rb2q.RB2QSettings.from_mapping({"shot": 3})
    with pytest.raises(ValueError, match=r"SingleQubitNative\.amplitude"):
        rb2q.SingleQubitNative(amplitude=1.5)
    with pytest.raises(ValueError, match=r"TwoQubitNatives\.entangler"):
        rb2q.TwoQubitNatives("CX", PulseSequence(()), (rb2q.SingleQubitNative(),) * 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"CZCalibrationConfig\.verification"):
        CZCalibrationConfig(verification=3)  # type: ignore[arg-type]
    dev = _cz_device()
    with pytest.raises(ValueError, match=r"natives\['z'\]\.ops\[0\]"):
        dev.run_programs({"z": PulseSequence((VirtualZ(0.1, frame="q0"),))}, [["z"]], ("q0", "q1"), 10)
    both = PulseSequence((Play(np.full(8, 0.1 + 0j), channel="drive:q0"), Play(np.full(8, 0.1 + 0j), channel="drive:q1")))
    with pytest.raises(ValueError, match="one frame"):
        dev.run_programs({"both": both}, [["both"]], ("q0", "q1"), 10)


@pytest.mark.slow
def test_open_system_rb_agrees_with_the_average_gate_fidelity() -> None:
    """Open system, leakage kept: interleaved RB against 1 − F on the computational
    subspace (``metrics.gate_fidelity``, which counts leakage as error)."""
    dev = _cz_device(open_system=True)
    nat = _cz_natives(dev)
    truth, _ = _played_infidelity(dev, nat)
    irb = rb2q.run_irb(dev, nat, rb2q.RB2QSettings(n_random=20, shots=200))
    assert abs(irb.gate_error - truth) < 3 * irb.gate_error_sigma, (irb.gate_error, irb.gate_error_sigma, truth)
