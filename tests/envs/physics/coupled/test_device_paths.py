"""The engine paths a device takes, one pulse at a time: the flux line's compiled first-order
low-pass is the recurrence state += k·(x − state) from rest, to the bit; and a batch-1
pulse (scalar block kernels) gives the unitaries of the same pulse in a larger batch
(SIMD-lane kernels)."""

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


def test_small_batches_take_the_scalar_kernel_with_the_lanes_numbers() -> None:
    # Below chain._LANE_MIN_BATCH the 2- and 3-state blocks of a flux pulse run the scalar
    # loop instead of the 16-lane kernels: the same algorithm, so the same unitaries.
    from pulsecal.envs.physics.coupled import CoupledModel, Coupling, FluxTuning, Mode, chain, fast

    model = CoupledModel((Mode("q0", 5.0e9, -330e6), Mode("q1", 6.0e9, -300e6, flux=FluxTuning(max_offset=0.3))),
                         (Coupling("q0", "q1", 10e6),))
    x = np.random.default_rng(1).uniform(0.0, 0.25, (2 * chain._LANE_MIN_BATCH, 40))
    batched = fast.unitaries(model, {"flux:q1": x})
    for b in range(2):
        np.testing.assert_allclose(fast.unitaries(model, {"flux:q1": x[b]})[0], batched[b], atol=1e-13, rtol=0)
