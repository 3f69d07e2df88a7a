"""A plain function ``observation -> action`` as a ``pulsecal.hardware.policy.Policy``.

The all-zero action, a hand-written controller in a test, a scripted agent: anything
without recurrent state. Its state is None; an optional ``reset`` hook runs at every
``initial_state()`` (an episode start), for functions that keep memory of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray


class FunctionPolicy:
    """``fn(observation) -> action`` as a policy without recurrent state.

    Args:
        fn: maps an observation to an action in the env's action box (cast to float32).
        reset: called by ``initial_state()``, i.e. at the start of every episode.
    """

    def __init__(self, fn: Callable[[NDArray[Any]], Any], reset: Callable[[], None] | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"FunctionPolicy.fn is {type(fn).__name__}: allowed a callable observation -> action")
        if reset is not None and not callable(reset):
            raise TypeError(f"FunctionPolicy.reset is {type(reset).__name__}: allowed None or a callable")
        self._fn = fn
        self._reset = reset

    def describe(self) -> dict[str, Any]:
        return {"kind": "function", "function": getattr(self._fn, "__qualname__", type(self._fn).__name__)}

    def initial_state(self) -> None:
        if self._reset is not None:
            self._reset()
        return None

    def act(self, observation: NDArray[Any], state: None) -> tuple[NDArray[np.float32], None]:
        return np.asarray(self._fn(observation), dtype=np.float32), None
