"""Control samples for a coupled model: validated once, then handed to any engine.

A pulse is a mapping channel name -> samples, every channel the same number of samples S
on the model's AWG grid, each either one row (S,) shared by the batch or (B, S). Drive
channels take complex samples with |u| <= 1; real channels (flux) take real samples within
the channel's ``max_abs`` (for flux: offsets in Φ0 from the idle bias). A real channel's
line distortion (for flux: low-pass, then exponential overshoot, from rest at sample 0) and
its transfer (for flux: the SQUID's frequency shift) are applied here, so every engine sees
the same x(t) multiplying the same operator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ..jit import jit
from .model import CoupledModel, FloatArray, FluxTuning, compile_model
from .operators import OperatorModel

_SLACK = 1e-9


@dataclass(frozen=True)
class Pulse:
    """Validated controls: drive samples per drive channel (B, S) complex; the value x
    multiplying each real channel's operator (B, S) float; where the pulse starts in time."""

    drives: dict[str, np.ndarray]
    reals: dict[str, np.ndarray]
    batch: int
    n_samples: int
    t0_s: float

    def active_frequencies(self, model: OperatorModel) -> tuple[float, ...]:
        """Distinct frame frequencies (Hz) of the drive channels that play anything."""
        out: list[float] = []
        for name, u in self.drives.items():
            if np.any(u != 0):
                f = model.drives[name].frequency_hz
                if f not in out:
                    out.append(f)
        return tuple(out)


def distort_flux(tuning: FluxTuning, samples: FloatArray, dt_s: float) -> FloatArray:
    """Flux as it reaches the SQUID: first-order low-pass, then exponential overshoot.

    samples: (B, S) -> (B, S). Both filters start at rest (zero offset) at sample 0.
    """
    y = np.asarray(samples, dtype=np.float64)
    if tuning.low_pass_tau_s > 0.0:
        y = _first_order(y, 1.0 - math.exp(-dt_s / tuning.low_pass_tau_s))
    if tuning.overshoot != 0.0:
        slow = _first_order(y, 1.0 - math.exp(-dt_s / tuning.overshoot_tau_s))
        y = y + tuning.overshoot * (y - slow)
    return y


def _first_order(x: FloatArray, k: float) -> FloatArray:
    out = np.empty_like(x)
    _first_order_kernel(np.ascontiguousarray(x, dtype=np.float64), float(k), out)
    return out


# Compiled because a device filters every flux pulse it plays, one row of ~50–200 samples at
# a time, where a numpy loop over the samples cost ~0.5 ms. No FMA contraction, so the
# result is the same number as state + k·(x − state) evaluated step by step in numpy.
@jit(fastmath=False)
def _first_order_kernel(x: FloatArray, k: float, out: FloatArray) -> None:
    for b in range(x.shape[0]):
        state = 0.0
        for s in range(x.shape[1]):
            state = state + k * (x[b, s] - state)
            out[b, s] = state


def as_operator_model(model: CoupledModel | OperatorModel) -> OperatorModel:
    if isinstance(model, OperatorModel):
        return model
    if isinstance(model, CoupledModel):
        return compile_model(model)
    raise ValueError(f"model={type(model).__name__}: allowed a CoupledModel or an OperatorModel")


def check_pulse(
    model: CoupledModel | OperatorModel, controls: Mapping[str, ArrayLike], *, t0_s: float = 0.0,
    distort: bool = True,
) -> Pulse:
    """Validate ``controls`` against ``model``; raise ValueError naming the channel at fault."""
    om = as_operator_model(model)
    allowed = sorted(om.channels)
    if not isinstance(controls, Mapping) or not controls:
        raise ValueError(f"controls={controls!r}: allowed a non-empty mapping channel name -> samples, "
                         f"channels {allowed}")
    if not (isinstance(t0_s, int | float) and math.isfinite(t0_s) and t0_s >= 0):
        raise ValueError(f"t0_s={t0_s!r} is out of range: allowed a finite time >= 0 s")
    rows: dict[str, np.ndarray] = {}
    batch, n_samples = 1, None
    for name, raw in controls.items():
        is_drive = name in om.drives
        if not is_drive and name not in om.reals:
            raise ValueError(f"controls[{name!r}]: the model has no channel {name!r}: allowed {allowed}")
        try:
            arr = np.asarray(raw, dtype=np.complex128 if is_drive else np.float64)
        except (TypeError, ValueError) as exc:
            kind = "complex" if is_drive else "real"
            raise ValueError(f"controls[{name!r}] cannot be read as {kind} samples: {exc}") from None
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] == 0:
            raise ValueError(f"controls[{name!r}] has shape {np.shape(raw)}: allowed (S,) or (B, S), S >= 1")
        if n_samples is None:
            n_samples = arr.shape[1]
        elif arr.shape[1] != n_samples:
            raise ValueError(
                f"controls[{name!r}] has {arr.shape[1]} samples, another channel {n_samples}: "
                "allowed the same number of samples on every channel (pad with zeros)"
            )
        if arr.shape[0] != 1:
            if batch not in (1, arr.shape[0]):
                raise ValueError(f"controls[{name!r}] has batch {arr.shape[0]}, another channel {batch}")
            batch = arr.shape[0]
        if not np.all(np.isfinite(arr)):
            b, s = np.argwhere(~np.isfinite(arr))[0]
            raise ValueError(f"controls[{name!r}][{b}, {s}] is not finite")
        mag = np.abs(arr)
        if is_drive:
            limit, what = 1.0, "|u| <= 1 (full-scale AWG amplitude)"
        else:
            limit = om.reals[name].max_abs
            what = f"|sample| <= {limit:g}" + (" Φ0 (the mode's flux max_offset)" if name.startswith(("flux:", "coupler:")) else "")
        if np.any(mag > limit + _SLACK):
            b, s = np.unravel_index(int(np.argmax(mag)), mag.shape)
            raise ValueError(f"controls[{name!r}][{b}, {s}] = {arr[b, s]!r}: allowed {what}")
        rows[name] = arr
    assert n_samples is not None
    drives: dict[str, np.ndarray] = {}
    reals: dict[str, np.ndarray] = {}
    for name, arr in rows.items():
        full = np.ascontiguousarray(np.broadcast_to(arr, (batch, n_samples)))
        if name in om.drives:
            drives[name] = full
            continue
        rc = om.reals[name]
        x = full.real.astype(np.float64)
        if distort and rc.distortion is not None:
            x = rc.distortion(x, om.dt_s)  # type: ignore[operator]
        if rc.transfer is not None:
            x = rc.transfer(x)
        reals[name] = np.ascontiguousarray(x, dtype=np.float64)
    return Pulse(drives, reals, batch, n_samples, float(t0_s))
