"""What a calibration baseline is, and where baselines are found by name.

A ``Baseline`` calibrates devices of a ``CalibrationTask`` from given starting parameters
under a shot budget per device, and returns a ``CalibrationResult`` whose ``shots_used``
is what the task's devices counted. The evaluation suite knows baselines only through
this protocol: it runs whatever baselines its settings hold, in their order, and names
their rows by ``Baseline.name``.

The registry maps a name to a factory (usually the baseline class) so a baseline can be
built from a name alone (``make_baseline("cmaes", sigma0=0.3)``) and the evaluation's
default set is "one of each registered". Adding a baseline is one module that defines
the class and decorates it with ``@register_baseline("<name>")`` (imported by
``pulsecal.agents.baselines``), plus one config ``configs/baseline/method/<name>.yaml``
whose ``_target_`` names the class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from pulsecal.envs.calibration import CalibrationTask

from .common import CalibrationResult


@runtime_checkable
class Baseline(Protocol):
    """A calibration method every agent is compared against.

    Attributes:
        name: the method's name in results tables (unique within one evaluation).
    """

    @property
    def name(self) -> str: ...

    def min_budget(self) -> int:
        """Smallest shot budget per device this baseline accepts."""
        ...

    def run(self, task: CalibrationTask, start: ArrayLike, budget: int,
            rng: np.random.Generator | None = None, index: Sequence[int] | None = None) -> CalibrationResult:
        """Calibrate devices ``index`` of ``task`` (default: all, B of them) from ``start``
        ((B, 4) or (4,)) with at most ``budget`` shots each; ``rng`` seeds randomised
        methods (deterministic ones ignore it)."""
        ...


BaselineFactory = Callable[..., Baseline]
_REGISTRY: dict[str, BaselineFactory] = {}
_F = TypeVar("_F", bound=BaselineFactory)


def register_baseline(name: str) -> Callable[[_F], _F]:
    """Class decorator: make ``name`` build this baseline (``make_baseline(name, ...)``)."""
    if not (isinstance(name, str) and name.isidentifier()):
        raise ValueError(f"name={name!r} is out of range: allowed a Python identifier")

    def add(factory: _F) -> _F:
        known = _REGISTRY.get(name)
        if known is not None and known is not factory:
            raise ValueError(f"name={name!r} is out of range: allowed a name not registered yet "
                             f"({known.__module__}.{getattr(known, '__qualname__', known)!s} has it)")
        _REGISTRY[name] = factory
        return factory

    return add


def registered_baselines() -> tuple[str, ...]:
    """Registered names, in registration order."""
    return tuple(_REGISTRY)


def make_baseline(name: str, **settings: object) -> Baseline:
    """The baseline registered as ``name``, built with ``settings`` (its keyword arguments)."""
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ValueError(f"name={name!r} is out of range: allowed one of {list(_REGISTRY)}")
    return factory(**settings)


def default_baselines() -> tuple[Baseline, ...]:
    """One of each registered baseline with its default settings, in registration order."""
    return tuple(make_baseline(name) for name in _REGISTRY)
