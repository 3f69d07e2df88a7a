"""Helpers shared by the env tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from pulsecal.envs.presets import make_device
from pulsecal.envs.simulated_device import SimulatedDevice


class OpaqueDevice:
    """A ``Device`` without the optional extensions (no batched path, no simulated truth),
    as a hardware ``BackendDevice`` is, over a simulator (``inner``; default the
    ``transmon_20ns`` preset drawn from seed 0). It counts its ``run`` calls and shots."""

    def __init__(self, inner: SimulatedDevice | None = None) -> None:
        self.inner = inner if inner is not None else make_device("transmon_20ns", np.random.default_rng(0))
        self.calls = 0
        self.shots = 0

    @property
    def dt_s(self) -> float:
        return self.inner.dt_s

    @property
    def clock_s(self) -> float:
        return self.inner.clock_s

    def run(self, sequences, shots):  # type: ignore[no-untyped-def]
        self.calls += 1
        self.shots += len(sequences) * shots
        return self.inner.run(sequences, shots)

    def advance(self, duration_s: float) -> None:
        self.inner.advance(duration_s)


def powell_on_reward(env: Any, dim: int) -> dict[str, Any]:
    """Maximise the reward of an env in ``action_mode="set"`` (the action is the whole
    setting, so the reward is a function of it) by two rounds of Powell from the origin of
    its ``dim`` action coordinates; returns the ``info`` of the best setting found."""
    from scipy.optimize import minimize

    def cost(z: np.ndarray) -> float:
        _, r, _, _, _ = env.step(np.clip(z, -1, 1).astype(np.float32))
        return -r

    z = np.zeros(dim)
    for _ in range(2):
        z = np.clip(minimize(cost, z, method="Powell", options={"maxfev": 1500, "xtol": 1e-3}).x, -1, 1)
    _, _, _, _, info = env.step(z.astype(np.float32))
    return info
