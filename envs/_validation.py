"""Argument checks shared by the envs modules: one wording for every refusal.

Errors name the field, the value and what is allowed, as the house style asks. The physics
kernel keeps its own copy so that ``envs.physics`` imports nothing else of ``envs``.
"""

from __future__ import annotations

import math

import numpy as np


def require(cond: bool, name: str, value: object, allowed: str) -> None:
    """Raise ``ValueError`` naming the field, its value and the allowed range."""
    if not cond:
        raise ValueError(f"{name}={value!r} is out of range: allowed {allowed}")


def finite(name: str, value: object) -> float:
    """``value`` as a float, refusing bools, non-numbers, NaN and ±inf by name."""
    require(
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool)
        and math.isfinite(float(value)),  # type: ignore[arg-type]
        name, value, "a finite real number",
    )
    return float(value)  # type: ignore[arg-type]
