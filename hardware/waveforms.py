"""The IR's waveforms (``pulsecal.hardware.ir``): parametric shapes sampled at bin
mid-points, sampled arrays resampled area-preserving onto a device grid, their JSON form,
and the field checks every IR value goes through.

Parametric waveforms are sampled at t_k = (k + ½)·dt; Drag is u = I + i·β·dI/dt (β in
seconds, PHYSICS.md), then rotated by e^{i·angle}.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

# A parametric duration may miss the grid by this fraction of a sample (float noise only).
GRID_TOLERANCE = 1e-6

ComplexArray = NDArray[np.complex128]


def fail_field(owner: str, name: str, value: object, allowed: str) -> None:
    """Raise the house error for a field: ``<owner>.<name>=<value>: allowed <allowed>``."""
    raise ValueError(f"{owner}.{name}={value!r}: allowed {allowed}")


def real_field(owner: str, name: str, value: object, *, positive: bool = False,
          nonnegative: bool = False) -> float:
    """``value`` as a finite float (optionally > 0 or >= 0), else ``fail_field``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        fail_field(owner, name, value, "a real number")
    v = float(value)  # type: ignore[arg-type]
    if not math.isfinite(v):
        fail_field(owner, name, value, "a finite real number")
    if positive and not v > 0:
        fail_field(owner, name, value, "> 0")
    if nonnegative and not v >= 0:
        fail_field(owner, name, value, ">= 0")
    return v


def name_field(owner: str, fname: str, value: object) -> str:
    """``value`` if it is a non-empty name of at most 128 characters, else ``fail_field``."""
    if not isinstance(value, str) or not value or len(value) > 128:
        fail_field(owner, fname, value, "a non-empty string of at most 128 characters")
    return value  # type: ignore[return-value]


def set_field(obj: object, name: str, value: object) -> None:
    """Set a field of a frozen dataclass in its ``__post_init__`` (validated values)."""
    object.__setattr__(obj, name, value)



def _grid_samples(owner: str, duration_s: float, dt_s: float) -> int:
    n_float = duration_s / dt_s
    n = round(n_float)
    if n < 1 or abs(n - n_float) > GRID_TOLERANCE * max(1.0, n_float):
        raise ValueError(
            f"{owner}.duration_s={duration_s!r} is {n_float:.9g} samples of dt_s={dt_s!r}: "
            "allowed a whole number >= 1 of samples"
        )
    return n


def _gaussian_envelope(n: int, dt_s: float, duration_s: float, sigma_s: float,
                       amplitude: float, zero_at_edges: bool) -> tuple[ComplexArray, ComplexArray]:
    """(I, dI/dt) sampled at bin mid-points."""
    t = (np.arange(n) + 0.5) * dt_s - 0.5 * duration_s
    with np.errstate(over="ignore", under="ignore"):  # extreme sigma: g underflows to 0, fine
        g = np.exp(-0.5 * (t / sigma_s) ** 2)
        dg = -(t / sigma_s**2) * g
    if zero_at_edges:
        edge = math.exp(-0.5 * (0.5 * duration_s / sigma_s) ** 2)
        scale = amplitude / (1.0 - edge)
        return scale * (g - edge) + 0j, scale * dg + 0j
    return amplitude * g + 0j, amplitude * dg + 0j


@dataclass(frozen=True)
class Gaussian:
    """Gaussian of ``duration_s`` with width ``sigma_s``, peak ``amplitude``, rotated by ``angle``."""

    duration_s: float
    sigma_s: float
    amplitude: float
    angle: float = 0.0
    zero_at_edges: bool = False
    kind: ClassVar[str] = "gaussian"

    def __post_init__(self) -> None:
        set_field(self, "duration_s", real_field("Gaussian", "duration_s", self.duration_s, positive=True))
        set_field(self, "sigma_s", real_field("Gaussian", "sigma_s", self.sigma_s, positive=True))
        set_field(self, "amplitude", real_field("Gaussian", "amplitude", self.amplitude))
        set_field(self, "angle", real_field("Gaussian", "angle", self.angle))
        if not isinstance(self.zero_at_edges, bool):
            fail_field("Gaussian", "zero_at_edges", self.zero_at_edges, "a bool")

    def samples(self, dt_s: float) -> ComplexArray:
        n = _grid_samples("Gaussian", self.duration_s, dt_s)
        i, _ = _gaussian_envelope(n, dt_s, self.duration_s, self.sigma_s, self.amplitude,
                                  self.zero_at_edges)
        return i * np.exp(1j * self.angle)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "duration_s": self.duration_s, "sigma_s": self.sigma_s,
                "amplitude": self.amplitude, "angle": self.angle,
                "zero_at_edges": self.zero_at_edges}


@dataclass(frozen=True)
class Drag:
    """DRAG: Gaussian I plus Q = ``beta_s``·dI/dt (β in seconds, as Braket and Qblox take it)."""

    duration_s: float
    sigma_s: float
    amplitude: float
    beta_s: float
    angle: float = 0.0
    zero_at_edges: bool = False
    kind: ClassVar[str] = "drag"

    def __post_init__(self) -> None:
        set_field(self, "duration_s", real_field("Drag", "duration_s", self.duration_s, positive=True))
        set_field(self, "sigma_s", real_field("Drag", "sigma_s", self.sigma_s, positive=True))
        set_field(self, "amplitude", real_field("Drag", "amplitude", self.amplitude))
        set_field(self, "beta_s", real_field("Drag", "beta_s", self.beta_s))
        set_field(self, "angle", real_field("Drag", "angle", self.angle))
        if not isinstance(self.zero_at_edges, bool):
            fail_field("Drag", "zero_at_edges", self.zero_at_edges, "a bool")

    def samples(self, dt_s: float) -> ComplexArray:
        n = _grid_samples("Drag", self.duration_s, dt_s)
        i, di = _gaussian_envelope(n, dt_s, self.duration_s, self.sigma_s, self.amplitude,
                                   self.zero_at_edges)
        return (i + 1j * self.beta_s * di) * np.exp(1j * self.angle)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "duration_s": self.duration_s, "sigma_s": self.sigma_s,
                "amplitude": self.amplitude, "beta_s": self.beta_s, "angle": self.angle,
                "zero_at_edges": self.zero_at_edges}


@dataclass(frozen=True)
class Constant:
    """Flat pulse of ``duration_s`` at ``amplitude``·e^{i·angle}."""

    duration_s: float
    amplitude: float
    angle: float = 0.0
    kind: ClassVar[str] = "constant"

    def __post_init__(self) -> None:
        set_field(self, "duration_s", real_field("Constant", "duration_s", self.duration_s, positive=True))
        set_field(self, "amplitude", real_field("Constant", "amplitude", self.amplitude))
        set_field(self, "angle", real_field("Constant", "angle", self.angle))

    def samples(self, dt_s: float) -> ComplexArray:
        n = _grid_samples("Constant", self.duration_s, dt_s)
        return np.full(n, self.amplitude * np.exp(1j * self.angle), dtype=np.complex128)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "duration_s": self.duration_s, "amplitude": self.amplitude,
                "angle": self.angle}


@dataclass(frozen=True, eq=False)
class Sampled:
    """Complex samples (S,) on a grid of ``dt_s``; resampled by the renderer if the device's
    grid differs."""

    samples: ComplexArray
    dt_s: float
    kind: ClassVar[str] = "sampled"

    def __post_init__(self) -> None:
        try:
            w = np.array(self.samples, dtype=np.complex128).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f"Sampled.samples of type {type(self.samples).__name__}: "
                             "allowed a 1-D array of complex numbers") from None
        if w.size == 0:
            fail_field("Sampled", "samples", "[]", "at least one sample")
        if not np.all(np.isfinite(w)):
            fail_field("Sampled", "samples", "NaN/inf", "finite complex samples")
        w.setflags(write=False)
        set_field(self, "samples", w)
        set_field(self, "dt_s", real_field("Sampled", "dt_s", self.dt_s, positive=True))

    @property
    def duration_s(self) -> float:
        return self.samples.size * self.dt_s

    def samples_on(self, dt_s: float) -> ComplexArray:
        return resample(self.samples, self.dt_s, dt_s)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Sampled) and other.dt_s == self.dt_s
                and np.array_equal(other.samples, self.samples))

    def __hash__(self) -> int:
        return hash((self.dt_s, self.samples.tobytes()))

    def to_dict(self) -> dict[str, Any]:
        # + 0.0 turns -0.0 into 0.0: the same waveform must have one canonical form.
        return {"kind": self.kind, "dt_s": self.dt_s,
                "re": (self.samples.real + 0.0).tolist(),
                "im": (self.samples.imag + 0.0).tolist()}


Waveform = Gaussian | Drag | Constant | Sampled
WAVEFORM_KINDS: dict[str, type] = {c.kind: c for c in (Gaussian, Drag, Constant, Sampled)}


def waveform_from_dict(d: Mapping[str, Any]) -> Waveform:
    kind = d.get("kind")
    if kind == "sampled":
        re = np.asarray(d["re"], dtype=np.float64)
        im = np.asarray(d["im"], dtype=np.float64)
        if re.shape != im.shape:
            raise ValueError(f"Sampled re/im lengths {re.size}/{im.size}: allowed equal lengths")
        w = np.empty(re.shape, dtype=np.complex128)
        w.real, w.imag = re, im  # re + 1j*im would lose the sign of zeros
        return Sampled(w, float(d["dt_s"]))
    cls = WAVEFORM_KINDS.get(str(kind))
    if cls is None:
        raise ValueError(f"waveform kind={kind!r}: allowed one of {sorted(WAVEFORM_KINDS)}")
    args = {k: v for k, v in d.items() if k != "kind"}
    return cls(**args)  # type: ignore[no-any-return]


def resample(samples: ArrayLike, src_dt_s: float, dst_dt_s: float) -> ComplexArray:
    """Piecewise-constant ``samples`` on ``src_dt_s`` → bins of ``dst_dt_s`` preserving the
    area ∫u dt of every destination bin (the rotation angle a pulse produces); the last bin
    is zero-padded. Identity when the grids agree."""
    w = np.asarray(samples, dtype=np.complex128).reshape(-1)
    if abs(src_dt_s - dst_dt_s) <= 1e-12 * dst_dt_s:
        return w.copy()
    total_s = w.size * src_dt_s
    n = max(1, math.ceil(total_s / dst_dt_s - GRID_TOLERANCE))
    src_edges = np.arange(w.size + 1) * src_dt_s
    cum = np.concatenate([[0.0 + 0j], np.cumsum(w) * src_dt_s])
    dst_edges = np.minimum(np.arange(n + 1) * dst_dt_s, total_s)
    c = np.interp(dst_edges, src_edges, cum.real) + 1j * np.interp(dst_edges, src_edges, cum.imag)
    return np.diff(c) / dst_dt_s
