"""The flux line's first-order low-pass (compiled) is the recurrence state += k·(x − state)
from rest, to the bit, on one row and on a batch."""

from __future__ import annotations

import numpy as np
import pytest

from pulsecal.envs.physics.coupled.controls import _first_order


def _recurrence(x: np.ndarray, k: float) -> np.ndarray:
    out = np.empty_like(x)
    state = np.zeros(x.shape[0])
    for s in range(x.shape[1]):
        state = state + k * (x[:, s] - state)
        out[:, s] = state
    return out


@pytest.mark.parametrize("shape", [(1, 60), (5, 181), (3, 1)])
@pytest.mark.parametrize("k", [1.0 - np.exp(-2.0), 0.3, 1e-3])
def test_compiled_low_pass_is_the_recurrence(shape: tuple[int, int], k: float) -> None:
    x = np.random.default_rng(shape[1]).uniform(-0.3, 0.3, shape)
    np.testing.assert_array_equal(_first_order(x, k), _recurrence(x, k))
