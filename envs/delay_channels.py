"""The exact free-evolution channels of ``Delay``s, in the form the run loops apply, cached.

A channel is a pure function of (model, samples, open_system), so one cache serves all
devices: a fleet of copies of one preset (and a device drawn again at every reset)
computes each delay channel once.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from numpy.typing import NDArray

from .physics import Transmon
from .physics.free_evolution import free_evolution
from .physics.real_basis import real_basis, to_real

# Channels in kernel form (real basis if open), by (model, samples, open_system).
_FREE_CACHE: OrderedDict[tuple[Transmon, int, bool], NDArray[Any]] = OrderedDict()
_FREE_CACHE_LIMIT = 1024


def free_channels(keys: list[tuple[Transmon, int, bool]], open_system: bool) -> list[NDArray[Any]]:
    """Kernel-form free evolution (real basis if open) for each (model, samples, open) key."""
    out: list[NDArray[Any] | None] = [None] * len(keys)
    todo: dict[tuple[Transmon, int, bool], list[int]] = {}
    for i, key in enumerate(keys):
        hit = _FREE_CACHE.get(key)
        if hit is not None:
            _FREE_CACHE.move_to_end(key)
            out[i] = hit
        else:
            todo.setdefault(key, []).append(i)
    if todo:
        ts = [k[0] for k in todo]
        props: NDArray[Any] = free_evolution(ts, [k[1] * k[0].dt_s for k in todo], open_system=open_system)
        if open_system:
            props = to_real(props, real_basis(ts[0].levels)[0])
        for (key, rows), m in zip(todo.items(), props, strict=True):
            m.setflags(write=False)
            _FREE_CACHE[key] = m
            for i in rows:
                out[i] = m
        while len(_FREE_CACHE) > _FREE_CACHE_LIMIT:
            _FREE_CACHE.popitem(last=False)
    return out  # type: ignore[return-value]
