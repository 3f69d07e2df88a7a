"""Shared helpers for the physics-kernel tests: random waveforms and engine availability."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

HAVE_DYNAMICS = importlib.util.find_spec("qiskit_dynamics") is not None
needs_dynamics = pytest.mark.skipif(not HAVE_DYNAMICS, reason="optional extra pulsecal[dynamics]")


def random_waveforms(rng: np.random.Generator, batch: int, samples: int) -> np.ndarray:
    """(batch, samples) complex samples uniform in the unit disc (|u| <= 1), some exactly 0."""
    r = np.sqrt(rng.uniform(0.0, 1.0, (batch, samples)))
    phi = rng.uniform(0.0, 2 * np.pi, (batch, samples))
    w = r * np.exp(1j * phi)
    w[:, 0] = 0.0  # pulses usually start at zero: the kernels special-case |u| = 0
    return w


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20260121)
