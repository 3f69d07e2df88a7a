"""Two-qubit (CZ, ECR) programs for the stored Rigetti pulse properties: compiled from the
envs' own sequences, proven offline (reference parser round trip, semantic pass on the
device's frames and ports, the parsed text's trace equal to the IR's render, the safety
envelope), and the parsed text played back on the simulated backend with the outcome of
the original sequence (docs/lab_channels.md, "Two-qubit programs on Braket")."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("openpulse")
pytest.importorskip("braket.pulse")

from pulsecal.envs import cr_calibration_core as cr
from pulsecal.envs import cz_calibration_core as cz
from pulsecal.envs import rb2q
from pulsecal.envs.cz_calibration import NOMINAL_PARAMS
from pulsecal.envs.multi_qubit_presets import get_multi_qubit_preset
from pulsecal.envs.protocol import Barrier, Delay, Measure, PulseSequence, VirtualZ
from pulsecal.hardware.adapters.braket_pair import (
    pair_limits,
    pair_mapping,
    pair_program,
    simulated_sequence,
)
from pulsecal.hardware.adapters.openpulse import BraketBackend
from pulsecal.hardware.adapters.simulated import SimulatedMultiQubitBackend
from pulsecal.hardware.safety import SafetyEnvelope

KNOBS = cr.ECRKnobs(0.70024, 0.104478, 0.01, 1.516)  # an ECR the replay session calibrates
CZ_PARAMS = np.array([NOMINAL_PARAMS[0], NOMINAL_PARAMS[1], 0.8, -1.1])


@pytest.fixture(scope="module")
def braket() -> BraketBackend:
    return BraketBackend()


def _sim(preset: str) -> SimulatedMultiQubitBackend:
    dev = get_multi_qubit_preset(preset).make(np.random.default_rng(3), open_system=False)
    return SimulatedMultiQubitBackend(dev, rng=np.random.default_rng(0))


def _round_trip(braket: BraketBackend, gate: str, seqs: list[PulseSequence], sim: SimulatedMultiQubitBackend
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    m = pair_mapping(gate, braket)  # type: ignore[arg-type]
    envelope = SafetyEnvelope(pair_limits(braket, m), braket.capabilities())
    back, texts = [], []
    for s in seqs:
        prog = pair_program(braket, m, s)
        assert envelope.check(prog, shots=100) == []
        # Refuses unless the text parses and round-trips, passes the semantic pass and its
        # trace equals the program's render.
        art = braket.compile(prog)
        assert envelope.check_trace(art.trace) == []
        texts.append(art.payload.source)
        back.append(simulated_sequence(braket, m, art.payload.source, prog, sim))
    dev = sim.device
    return dev.outcome_probabilities(seqs), dev.outcome_probabilities(back), texts


def test_the_stored_properties_map_a_cz_and_an_ecr(braket: BraketBackend) -> None:
    cz_map = pair_mapping("CZ", braket)
    # The cphase frame is on qubit 0's fast-flux port: Braket qubit 0 is the tunable one,
    # the envs CZ's flux:q1.
    assert cz_map.frames == {"drive:q1": "q0_rf_frame", "drive:q0": "q1_rf_frame", "flux:q1": "q0_q1_cphase_frame"}
    assert cz_map.qubits == {"q1": 0, "q0": 1}
    ecr_map = pair_mapping("ECR", braket)
    assert ecr_map.cr == {"drive:q0@q1": "q0_rf_frame"}
    lim = pair_limits(braket, ecr_map)
    assert lim.max_frequency_offset_hz == pytest.approx(abs(4738e6 - 4512e6) + 1e6)
    assert {f.name for f in lim.allowed_frames} == {"q0_rf_frame", "q1_rf_frame"}
    with pytest.raises(ValueError, match="gate='iSWAP'"):
        pair_mapping("iSWAP", braket)  # type: ignore[arg-type]


def test_an_ecr_program_round_trips_to_the_simulated_outcome(braket: BraketBackend) -> None:
    sim = _sim("two_transmons_cr")
    seq = cr.ecr_sequence(KNOBS, cr.ECRShape(), 50e6, 1e-9, 1, control_excited=True)
    want, got, (text,) = _round_trip(braket, "ECR", [seq], sim)
    # The CR halves play q0's line at q1's frequency, the echo at q0's own.
    assert "set_frequency(q0_rf_frame, 4738000000.0)" in text and "set_frequency(q0_rf_frame, 4512000000.0)" in text
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert want[0].max() < 0.9  # the ECR entangles: no outcome near certain
    # The check can fail: the same text without the frequency switch plays the CR halves at
    # q0's frequency, which the simulated pair answers differently.
    m = pair_mapping("ECR", braket)
    prog = pair_program(braket, m, seq)
    flat = "\n".join(line for line in text.splitlines() if "set_frequency" not in line)
    wrong = sim.device.outcome_probabilities([simulated_sequence(braket, m, flat, prog, sim)])
    assert np.abs(wrong - want).max() > 0.05


def test_a_cz_program_round_trips_to_the_simulated_outcome(braket: BraketBackend) -> None:
    sim = _sim("two_transmons_cz")
    seq = cz.probe_sequences(cz.CZPulse(), CZ_PARAMS)[2]  # conditional Ramsey, control in |1⟩
    want, got, (text,) = _round_trip(braket, "CZ", [seq], sim)
    assert "set_frequency(q0_q1_cphase_frame, 0.0)" in text
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_unsafe_or_unplayable_two_qubit_programs_are_refused(braket: BraketBackend) -> None:
    m = pair_mapping("CZ", braket)
    seq = cz.probe_sequences(cz.CZPulse(), np.array([0.6, 52e-9, 0.0, 0.0]))[6]
    v = SafetyEnvelope(pair_limits(braket, m), braket.capabilities()).check(pair_program(braket, m, seq), shots=100)
    assert "max_flux_amplitude" in [x.limit for x in v] and "q0_q1_cphase_frame" in v[0].where
    # A CR tone and a drive pulse of the control at once: one frame per line cannot play both.
    plays = cr.cr_half_plays(KNOBS, cr.ECRShape())
    pi = cr.x_pi(cr.ECRShape(), "q0", 50e6, 1e-9)
    with pytest.raises(ValueError, match="overlaps a drive play of 'q0_rf_frame'"):
        pair_program(braket, pair_mapping("ECR", braket), PulseSequence((*plays, pi, Barrier(), Measure(("q0", "q1")))))
    # A delay of the drive role while the CR tone plays would be serialised on the shared
    # frame and move the later plays: refused rather than sent late.
    idle = Delay(40e-9, channel="drive:q0")
    with pytest.raises(ValueError, match="without moving plays in time"):
        pair_program(braket, pair_mapping("ECR", braket),
                     PulseSequence((*plays, idle, Barrier(), pi, Barrier(), Measure(("q0", "q1")))))


@pytest.mark.slow  # the SDK serializer and the reference parser: ~2 s per program
def test_every_probe_of_both_envs_round_trips(braket: BraketBackend) -> None:
    shape = cr.ECRShape()
    ecr_seqs = cr.tomography_sequences(KNOBS, shape, 50e6, 1e-9) + [
        cr.ecr_sequence(KNOBS, shape, 50e6, 1e-9, 2, c, undo_echo=True) for c in (False, True)]
    # Interleaved RB programs: virtual Zs on both modes between CR tones and drive pulses,
    # so the control's frame switches back and forth with each role's own phase.
    model = get_multi_qubit_preset("two_transmons_cr").params.model
    natives = rb2q.TwoQubitNatives("ECR", PulseSequence(tuple(cr.ecr_ops(KNOBS, shape, 50e6, 1e-9))),
                                   (rb2q.nominal_single_qubit(model, "q0"), rb2q.nominal_single_qubit(model, "q1")))
    programs = rb2q.rb_programs(np.random.default_rng(1), (2,), 2, natives, interleaved=True)
    assert all(any(isinstance(x, VirtualZ) and x.frame == "q1" for x in p) for p in programs)
    ecr_seqs += [rb2q.program_sequence(p, natives.pulses(1e-9)) for p in programs]
    want, got, _ = _round_trip(braket, "ECR", ecr_seqs, _sim("two_transmons_cr"))
    np.testing.assert_allclose(got, want, atol=1e-9)
    want, got, _ = _round_trip(braket, "CZ", cz.probe_sequences(cz.CZPulse(), CZ_PARAMS), _sim("two_transmons_cz"))
    np.testing.assert_allclose(got, want, atol=1e-9)
