"""Randomized benchmarking: the Clifford compilation, and the measured error against closed forms.

A depolarising channel of strength λ after every play commutes with every Clifford, so a
Clifford of k plays is depolarised by (1 − λ)^k and the RB decay per uniformly random
Clifford is exactly p = mean over the 24 Cliffords of (1 − λ)^k (the inverting Clifford
only changes the amplitude A). The toy device below implements exactly that through the
``Device`` protocol, reading each play's rotation off its label and its frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from pulsecal.envs import rb
from pulsecal.envs.drag import DragGate
from pulsecal.envs.protocol import Delay, Play, PulseSequence, VirtualZ


class DepolarisingDevice:
    """Ideal X/SX rotations about the frame's axis, then depolarising λ; no readout error."""

    dt_s = 1e-9

    def __init__(self, lam: float, seed: int = 0) -> None:
        self.lam = lam
        self.clock_s = 0.0
        self.rng = np.random.default_rng(seed)

    def advance(self, duration_s: float) -> None:
        self.clock_s += duration_s

    def run(self, sequences: Sequence[PulseSequence], shots: int) -> np.ndarray:
        out = np.zeros((len(sequences), 2), dtype=np.int64)
        for k, seq in enumerate(sequences):
            rho = np.array([[1, 0], [0, 0]], dtype=np.complex128)
            frame = 0.0
            for op in seq.ops:
                if isinstance(op, VirtualZ):
                    frame += op.phase
                elif isinstance(op, Play):
                    u = rb.rotation(math.pi if op.label == "X" else math.pi / 2, frame)
                    rho = u @ rho @ u.conj().T
                    rho = (1 - self.lam) * rho + self.lam * np.eye(2) / 2
                else:
                    assert isinstance(op, Delay)
            p1 = float(np.clip(rho[1, 1].real, 0, 1))
            n1 = int(self.rng.binomial(shots, p1))
            out[k] = (shots - n1, n1)
        return out


def test_the_clifford_table_is_the_group_and_sequences_invert() -> None:
    cl = rb.cliffords()
    assert len(cl) == 24
    assert len({rb.clifford_index(c.unitary) for c in cl}) == 24
    for c in cl:  # the plays and the trailing Z reproduce the stored unitary
        u = np.eye(2, dtype=np.complex128)
        for kind, phi in c.steps:
            u = rb.rotation(math.pi if kind == "X" else math.pi / 2, phi) @ u
        assert rb.clifford_index(rb.rz(c.z) @ u) == rb.clifford_index(c.unitary)
    rng = np.random.default_rng(3)
    for _ in range(10):
        _, ideal = rb.sequence_steps(rng.integers(0, 24, 17).tolist())
        assert abs(ideal[0, 1]) < 1e-9  # identity up to a Z: survival 1 when noise-free


def _params() -> np.ndarray:
    return np.array([0.5, 0.0, 0.0, 0.0])


def test_rb_on_a_noise_free_device_measures_no_error() -> None:
    res = rb.run_rb(DepolarisingDevice(0.0), DragGate(20e-9), _params(), lengths=(1, 20, 80), n_random=3,
                    shots=50, rng=np.random.default_rng(0))
    assert res.survival == (1.0, 1.0, 1.0)
    assert res.error_per_gate < 1e-5
    assert res.shots_used == 3 * 3 * 50


def test_rb_on_a_depolarised_device_measures_the_known_rate() -> None:
    lam = 0.004
    counts = np.array([len(c.steps) for c in rb.cliffords()])
    p_exact = float(np.mean((1 - lam) ** counts))
    r_exact = (1 - p_exact) / 2
    res = rb.run_rb(DepolarisingDevice(lam, seed=1), DragGate(20e-9), _params(), lengths=(1, 30, 100, 300),
                    n_random=6, shots=400, rng=np.random.default_rng(2))
    assert res.error_per_clifford == pytest.approx(r_exact, rel=0.15)
    assert res.interval[0] <= res.error_per_gate <= res.interval[1]
    assert res.error_per_gate == pytest.approx(r_exact / rb.gates_per_clifford(), rel=0.15)
