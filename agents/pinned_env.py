"""``gym.make`` of an env id that a training run or a config names on purpose.

Gymnasium warns that ``pulsecal/GateCalibration-v0`` "is out of date" whenever a later
version is registered. That advice is for someone picking a version; a policy trained on
v0 must be exported and evaluated on v0, so the warning would only repeat on every
export and evaluation of the default env. Only that one message is silenced, only
around the ``make`` call.
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym

_OUT_OF_DATE = r"(?s).*The environment \S+ is out of date\. You should consider upgrading"


def make_pinned(env_id: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """``gym.make(env_id, **kwargs)`` without Gymnasium's "out of date" warning for a
    version that is not the newest (every other warning passes)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_OUT_OF_DATE)
        return gym.make(env_id, **kwargs)


__all__ = ["make_pinned"]
