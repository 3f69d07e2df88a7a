"""Device time and the drift that moves along it, shared by the simulated devices.

A simulated device keeps one clock: every shot, delay and ``advance`` moves it forward, and
the device's drift processes evolve exactly over each step, drawn from the generator its
``_drift_generator`` returns. What a device must do when its truth has moved (empty the
caches keyed by it) is its own ``_drift_moved``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validation import finite, require


class DriftingClock:
    """``clock_s`` and ``advance`` of a device whose drift evolves along its clock.

    The device sets ``_clock_s``, ``_drift`` (a drift model with ``advance(state, d, rng)``,
    or None) and ``_drift_state``, and implements ``_drift_generator`` and ``_drift_moved``.
    """

    _clock_s: float
    _drift: Any
    _drift_state: Any

    @property
    def clock_s(self) -> float:
        return self._clock_s

    def _drift_generator(self) -> np.random.Generator:
        raise NotImplementedError

    def _drift_moved(self) -> None:
        raise NotImplementedError

    def advance(self, duration_s: float) -> None:
        """Let ``duration_s`` seconds of device time pass; drift evolves exactly over it."""
        d = finite("duration_s", duration_s)
        require(d >= 0, "duration_s", duration_s, ">= 0 s")
        self._tick(d)

    def _tick(self, d: float) -> None:
        if d == 0:
            return
        self._clock_s += d
        if self._drift is not None and self._drift_state is not None:
            self._drift_state = self._drift.advance(self._drift_state, d, self._drift_generator())
            self._drift_moved()
