"""Two-qubit RB programs as plain pulse sequences (``rb2q.program_sequence``): the same
outcome probabilities as the device's composed processes (``run_programs``)."""

from __future__ import annotations

import numpy as np
import pytest

from pulsecal.envs import rb2q
from pulsecal.envs.cr_calibration_core import ECRKnobs, ECRShape, ecr_ops
from pulsecal.envs.multi_qubit_presets import get_multi_qubit_preset
from pulsecal.envs.protocol import PulseSequence


def test_program_sequences_play_what_the_composed_processes_compute() -> None:
    spec = get_multi_qubit_preset("two_transmons_cr")
    dev = spec.make(np.random.default_rng(3), open_system=False)
    model = spec.params.model
    gate = PulseSequence(tuple(ecr_ops(ECRKnobs(0.7, 0.1, 0.01, 1.5), ECRShape(), 50e6, dev.dt_s)))
    natives = rb2q.TwoQubitNatives("ECR", gate, (rb2q.nominal_single_qubit(model, "q0"),
                                                 rb2q.nominal_single_qubit(model, "q1")))
    pulses = natives.pulses(dev.dt_s)
    programs = rb2q.rb_programs(np.random.default_rng(0), (1, 3), 2, natives, interleaved=True)
    composed = dev.program_probabilities(pulses, programs, rb2q.QUBITS)
    played = dev.outcome_probabilities([rb2q.program_sequence(p, pulses) for p in programs])
    np.testing.assert_allclose(played, composed, atol=1e-10)
    assert composed[:, 0].min() < 0.99  # the programs do something (not all trivially |00⟩)
    with pytest.raises(ValueError, match=r"program\[0\]"):
        rb2q.program_sequence(["nope"], pulses)
