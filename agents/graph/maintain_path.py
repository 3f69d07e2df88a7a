"""One drift path for maintenance runs: the drift state on a grid of device time, drawn once
from a seed, so strategies compared on copies of one device (and a run resumed after a
kill) see one truth (``agents/graph/maintain.py``, "One drift path")."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def check_positive(owner: str, name: str, value: Any, high: float = math.inf) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and 0 < value <= high
    if not ok:
        raise ValueError(f"{owner}.{name}={value!r}: allowed a number > 0 and <= {high:g}")
    return float(value)


def encode_drift_state(state: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    """A drift state as JSON: keys ``"q3/frequency_hz"``, arrays as lists."""
    out: dict[str, Any] = {}
    for k, v in state.items():
        out["/".join(k)] = v.tolist() if hasattr(v, "tolist") else v
    return out


def decode_drift_state(data: Mapping[str, Any]) -> dict[tuple[str, ...], Any]:
    return {tuple(k.split("/")): (np.asarray(v, dtype=np.float64) if isinstance(v, list) else v)
            for k, v in data.items()}


class DriftPath:
    """One drift path on a grid of ``step_s`` from ``start_clock_s``: the state at grid
    point k+1 is the exact transition of the state at k over ``step_s``, drawn from a
    generator seeded by ``seed`` alone. ``state_at(t)`` is the state at the last grid point
    at or before t (the first before the start, the last past the end).

    Args:
        drift: the device's ``MultiQubitDrift``.
        start: the drift state at ``start_clock_s`` (the device's, when maintenance began).
        duration_s: how far the path goes.
    """

    def __init__(self, drift: Any, start: Mapping[tuple[str, ...], Any], start_clock_s: float, duration_s: float,
                 seed: int, step_s: float = 60.0) -> None:
        self.start_clock_s = float(start_clock_s)
        self.step_s = check_positive("DriftPath", "step_s", step_s)
        rng = np.random.default_rng([int(seed), 0xD21F7])
        n = math.ceil(check_positive("DriftPath", "duration_s", duration_s) / self.step_s) + 1
        states = [dict(start)]
        for _ in range(n):
            states.append(drift.advance(states[-1], self.step_s, rng))
        self._states = states

    def state_at(self, clock_s: float) -> dict[tuple[str, ...], Any]:
        k = math.floor((clock_s - self.start_clock_s) / self.step_s)
        return self._states[min(max(k, 0), len(self._states) - 1)]


__all__ = ["DriftPath", "check_positive", "decode_drift_state", "encode_drift_state"]
