"""Amplitude-limited devices: the gate duration at which the π pulse fits, and a record of
every limit a parameter met.

An AWG's output is bounded (|u| <= 1, full scale), and on a weakly driven qubit the π
pulse of the nominal duration needs more than that. A lab then lengthens the gate: the
DRAG shape is kept and stretched to the shortest duration on the AWG grid at which the
pulse's peak stays within a headroom below full scale (the amplitude needed falls as the
envelope's area grows). ``fit_gate`` makes that choice from an amplitude the calibration
knows before it starts (the textbook value of the device's Rabi rate, or the start from
the parameter store) and says at which duration it ended, or refuses the device naming
the limit when even the longest allowed duration does not fit.

``LimitLog`` is the other half of "no silent clipping": whoever has to bring a requested
parameter back inside a bound (an env's parameter window, the full-scale amplitude) says
so in it, and the log becomes ``info["limits"]`` / a result's ``limits`` record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ._validation import finite, require
from .drag import DragGate

# Full scale of the AWG: |u| <= 1 (``DragParams.amplitude``).
FULL_SCALE = 1.0


@dataclass(frozen=True)
class AmplitudeLimit:
    """How a calibration handles a π pulse that does not fit the AWG's range.

    Attributes:
        headroom: the largest |amplitude| (fraction of full scale) the gate may need at
            the duration it is calibrated at, in (0, 1]; below 1 so that a calibration
            that moves the amplitude by its start error still fits. A device whose
            nominal-duration π pulse needs at most this keeps the nominal duration.
        max_duration_factor: the longest duration allowed, as a multiple of the nominal
            one (>= 1); a device that needs more is refused.
        grid_samples: the duration is a whole multiple of this many AWG samples (>= 1;
            1: any whole number of samples).
        lengthen: False keeps the nominal duration always and refuses a device that does
            not fit it (no lengthening).
    """

    headroom: float = 0.9
    max_duration_factor: float = 4.0
    grid_samples: int = 1
    lengthen: bool = True

    def __post_init__(self) -> None:
        require(0 < finite("amplitude_limit.headroom", self.headroom) <= FULL_SCALE,
                "amplitude_limit.headroom", self.headroom, "(0, 1] of full scale")
        require(finite("amplitude_limit.max_duration_factor", self.max_duration_factor) >= 1,
                "amplitude_limit.max_duration_factor", self.max_duration_factor, ">= 1 (× nominal duration)")
        require(isinstance(self.grid_samples, int) and not isinstance(self.grid_samples, bool)
                and 1 <= self.grid_samples <= 4096, "amplitude_limit.grid_samples", self.grid_samples,
                "an int in [1, 4096]")
        require(isinstance(self.lengthen, bool), "amplitude_limit.lengthen", self.lengthen, "a bool")


@dataclass(frozen=True)
class GateFit:
    """Where a calibration's gate ended: its duration and the amplitude it needs there.

    Attributes:
        nominal_duration_s: the configured gate duration.
        duration_s: the duration chosen (== nominal unless lengthened).
        requested_amplitude: the amplitude the decision started from, at the nominal
            duration (may exceed full scale).
        amplitude: the same rotation's amplitude at ``duration_s`` (|amplitude| <= 1
            unless ``failure``).
        failure: None, or why the device cannot be calibrated within the limits
            ("amplitude limit: needs |u|=1.7 at 80 ns > 0.9 ...").
    """

    nominal_duration_s: float
    duration_s: float
    requested_amplitude: float
    amplitude: float
    failure: str | None = None

    @property
    def lengthened(self) -> bool:
        return self.duration_s > self.nominal_duration_s

    def as_dict(self) -> dict[str, Any]:
        """The record as plain values (env ``info``, results, reports)."""
        return {"nominal_duration_s": self.nominal_duration_s, "duration_s": self.duration_s,
                "requested_amplitude": self.requested_amplitude, "amplitude": self.amplitude,
                "lengthened": self.lengthened, "failure": self.failure}


def stretched(gate: DragGate, n_samples: int, dt_s: float) -> DragGate:
    """``gate``'s shape at ``n_samples`` samples: σ scales with the duration (the default
    σ = T/4 does so by itself), the SX area fraction is kept."""
    duration_s = n_samples * dt_s
    sigma = None if gate.sigma_s is None else gate.sigma_s * duration_s / gate.duration_s
    return DragGate(duration_s, sigma, gate.sx_area_fraction)


def amplitude_at(amplitude: float, gate: DragGate, other: DragGate, dt_s: float) -> float:
    """The amplitude of the same rotation on ``other``: the area amplitude·Σg·dt is kept."""
    return float(amplitude) * gate.area_s(dt_s) / other.area_s(dt_s)


def fit_gate(amplitude: float, gate: DragGate, dt_s: float, limit: AmplitudeLimit) -> tuple[DragGate, GateFit]:
    """The gate to calibrate at, given the amplitude the nominal ``gate`` needs.

    ``gate`` itself when |amplitude| <= ``limit.headroom`` (devices that fit are left
    alone); else, with ``limit.lengthen``, the shortest stretch of it on the AWG grid
    (multiples of ``grid_samples`` samples, up to ``max_duration_factor`` × nominal) at
    which the same rotation needs at most the headroom. None does: the longest allowed
    gate, which is fine if it needs at most full scale there; else a ``GateFit.failure``
    naming the amplitude it would need there (the device is refused).

    Returns:
        (gate, GateFit); the amplitude in the fit is the rotation's at that gate.
    """
    a = finite("amplitude", amplitude)
    n0 = gate.n_samples(dt_s)
    nominal_s = n0 * dt_s
    if abs(a) <= limit.headroom:
        return gate, GateFit(nominal_s, nominal_s, a, a)
    grid = limit.grid_samples
    n_max = math.floor(limit.max_duration_factor * n0 / grid + 1e-9) * grid if limit.lengthen else n0
    best = gate
    if limit.lengthen:
        n = (n0 // grid + 1) * grid
        while n <= n_max:
            cand = stretched(gate, n, dt_s)
            need = amplitude_at(a, gate, cand, dt_s)
            if abs(need) <= limit.headroom:
                return cand, GateFit(nominal_s, n * dt_s, a, need)
            best = cand
            n += grid
    need = amplitude_at(a, gate, best, dt_s)
    longest = best.n_samples(dt_s) * dt_s
    if abs(need) <= FULL_SCALE and best is not gate:
        # Within full scale at the longest gate, short of the headroom: calibratable.
        return best, GateFit(nominal_s, longest, a, need)
    how = (f"max duration {limit.max_duration_factor:g}× nominal {nominal_s * 1e9:.4g} ns"
           if limit.lengthen else "lengthening off")
    reason = (f"amplitude limit: needs |u|={abs(need):.3g} at {longest * 1e9:.4g} ns > 1 "
              f"(full scale; {how})")
    return best, GateFit(nominal_s, longest, a, need, reason if abs(need) > FULL_SCALE else None)


@dataclass
class LimitLog:
    """Every parameter a bound brought back: per parameter, the bound's name, how many
    times it acted, and the last requested and applied values.

    ``record`` is called by whoever applies the bound; ``as_dict`` is the structured
    record a verdict or report reads: ``{parameter: {"bound", "requested", "applied",
    "count"}}`` (empty: nothing was clipped).
    """

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def record(self, parameter: str, bound: str, requested: float, applied: float, count: int = 1) -> None:
        e = self.entries.setdefault(parameter, {"bound": bound, "requested": 0.0, "applied": 0.0, "count": 0})
        e["bound"] = bound
        e["requested"] = float(requested)
        e["applied"] = float(applied)
        e["count"] += int(count)

    def merge(self, other: dict[str, dict[str, Any]]) -> None:
        for name, e in other.items():
            self.record(name, e["bound"], e["requested"], e["applied"], e["count"])

    def __bool__(self) -> bool:
        return bool(self.entries)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self.entries.items()}
