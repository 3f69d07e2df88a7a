"""Time-correlated drift of device parameters along wall-clock seconds.

Each process is a frozen dataclass of parameters plus an explicit state, in the
functional style of Gymnasium's functional envs: ``init_state(rng)`` draws a state from the
stationary (or starting) distribution, ``advance(state, dt_s, rng)`` returns the state
``dt_s`` seconds later, ``value(state)`` reads it. Nothing is hidden: all randomness comes
from the ``numpy.random.Generator`` passed in, and every transition is the *exact* law of
the continuous-time process over ``dt_s`` (so one step of 2·dt and two steps of dt have the
same distribution; tests check it).

``DriftModel`` bundles optional processes for the device parameters that drift in
practice (PHYSICS.md, "Drift"): qubit frequency (additive detuning), drive amplitude
(relative scale), T1 (multiplicative factor, TLS telegraph switching) and anharmonicity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from ._validation import finite, require
from .physics import Transmon

HOUR_S = 3600.0


def _check_dt(dt_s: float) -> float:
    require(math.isfinite(dt_s) and dt_s >= 0, "dt_s", dt_s, "a finite value >= 0 s")
    return float(dt_s)


@runtime_checkable
class DriftProcess(Protocol):
    """A scalar stochastic process in wall-clock seconds with explicit state."""

    def init_state(self, rng: np.random.Generator) -> Any: ...

    def advance(self, state: Any, dt_s: float, rng: np.random.Generator) -> Any: ...

    def value(self, state: Any) -> float: ...


@dataclass(frozen=True)
class OrnsteinUhlenbeck:
    """Mean-reverting Gaussian process: dx = −(x − mean)/τ·dt + σ·√(2/τ)·dW.

    Exact transition over dt: x' = mean + (x − mean)·ρ + sigma·√(1 − ρ²)·ξ, ρ = e^{−dt/τ};
    stationary law N(mean, sigma²), autocorrelation e^{−|Δt|/τ}. State: a float.

    Attributes:
        sigma: stationary standard deviation (units of the drifting quantity), >= 0.
        tau_s: correlation time in seconds, > 0.
        mean: stationary mean.
    """

    sigma: float
    tau_s: float
    mean: float = 0.0

    def __post_init__(self) -> None:
        require(finite("OrnsteinUhlenbeck.sigma", self.sigma) >= 0, "OrnsteinUhlenbeck.sigma", self.sigma, ">= 0")
        require(finite("OrnsteinUhlenbeck.tau_s", self.tau_s) > 0, "OrnsteinUhlenbeck.tau_s", self.tau_s, "> 0 s")
        finite("OrnsteinUhlenbeck.mean", self.mean)

    def init_state(self, rng: np.random.Generator) -> float:
        """A draw from the stationary law."""
        return self.mean + self.sigma * float(rng.standard_normal())

    def advance(self, state: float, dt_s: float, rng: np.random.Generator) -> float:
        dt = _check_dt(dt_s)
        rho = math.exp(-dt / self.tau_s)
        # √(1 − ρ²) via expm1 keeps the tiny-step noise accurate.
        noise = self.sigma * math.sqrt(-math.expm1(-2.0 * dt / self.tau_s))
        return self.mean + (state - self.mean) * rho + noise * float(rng.standard_normal())

    def value(self, state: float) -> float:
        return float(state)


@dataclass(frozen=True)
class RandomWalk:
    """Brownian motion (Wiener process) started at ``start``.

    ``sigma_per_sqrt_hour`` is the standard deviation of the change over one hour, so
    Var[x(t) − x(0)] = sigma_per_sqrt_hour² · t / 3600 s ("20 kHz/√h" means a typical
    20 kHz excursion after one hour, ~40 kHz after four). Exact transition:
    x' = x + sigma_per_sqrt_hour·√(dt/3600)·ξ. State: a float.

    Attributes:
        sigma_per_sqrt_hour: diffusion scale, >= 0 (units of the quantity per √hour).
        start: value at t = 0.
    """

    sigma_per_sqrt_hour: float
    start: float = 0.0

    def __post_init__(self) -> None:
        s = finite("RandomWalk.sigma_per_sqrt_hour", self.sigma_per_sqrt_hour)
        require(s >= 0, "RandomWalk.sigma_per_sqrt_hour", self.sigma_per_sqrt_hour, ">= 0")
        finite("RandomWalk.start", self.start)

    def init_state(self, rng: np.random.Generator) -> float:
        return float(self.start)

    def advance(self, state: float, dt_s: float, rng: np.random.Generator) -> float:
        dt = _check_dt(dt_s)
        return state + self.sigma_per_sqrt_hour * math.sqrt(dt / HOUR_S) * float(rng.standard_normal())

    def value(self, state: float) -> float:
        return float(state)


@dataclass(frozen=True)
class OneOverF:
    """1/f-like noise: a sum of ``n_terms`` independent OU processes with correlation times
    log-spaced in [tau_min_s, tau_max_s], each with variance sigma²/n_terms.

    Equal variance per log-spaced term gives a power spectrum ∝ 1/f between about
    1/(2π·tau_max_s) and 1/(2π·tau_min_s), flat below and 1/f² above. The stationary
    standard deviation of the sum is ``sigma``. State: (n_terms,) float array.

    Attributes:
        sigma: stationary standard deviation of the sum, >= 0.
        tau_min_s, tau_max_s: shortest and longest correlation times, 0 < min <= max.
        n_terms: number of OU terms, in [1, 64].
        mean: stationary mean of the sum.
    """

    sigma: float
    tau_min_s: float
    tau_max_s: float
    n_terms: int = 8
    mean: float = 0.0

    def __post_init__(self) -> None:
        require(finite("OneOverF.sigma", self.sigma) >= 0, "OneOverF.sigma", self.sigma, ">= 0")
        lo = finite("OneOverF.tau_min_s", self.tau_min_s)
        hi = finite("OneOverF.tau_max_s", self.tau_max_s)
        require(lo > 0, "OneOverF.tau_min_s", self.tau_min_s, "> 0 s")
        require(hi >= lo, "OneOverF.tau_max_s", self.tau_max_s, f">= tau_min_s = {lo!r} s")
        require(
            isinstance(self.n_terms, int | np.integer) and not isinstance(self.n_terms, bool)
            and 1 <= self.n_terms <= 64,
            "OneOverF.n_terms", self.n_terms, "an integer in [1, 64]",
        )
        finite("OneOverF.mean", self.mean)

    @property
    def taus_s(self) -> NDArray[np.float64]:
        """Correlation times of the terms, shape (n_terms,)."""
        return np.geomspace(self.tau_min_s, self.tau_max_s, int(self.n_terms))

    @property
    def term_sigma(self) -> float:
        return self.sigma / math.sqrt(int(self.n_terms))

    def init_state(self, rng: np.random.Generator) -> NDArray[np.float64]:
        return self.term_sigma * rng.standard_normal(int(self.n_terms))

    def advance(
        self, state: NDArray[np.float64], dt_s: float, rng: np.random.Generator
    ) -> NDArray[np.float64]:
        dt = _check_dt(dt_s)
        taus = self.taus_s
        rho = np.exp(-dt / taus)
        noise = self.term_sigma * np.sqrt(-np.expm1(-2.0 * dt / taus))
        return state * rho + noise * rng.standard_normal(int(self.n_terms))

    def value(self, state: NDArray[np.float64]) -> float:
        return self.mean + float(np.sum(state))


@dataclass(frozen=True)
class Telegraph:
    """Two-state Markov switching (random telegraph), e.g. a TLS moving in and out of
    resonance with the qubit.

    State 0 has value ``low``, state 1 has ``high``; it jumps 0→1 at ``rate_up_hz`` and
    1→0 at ``rate_down_hz`` (mean dwell times 1/rate). Exact transition over dt with
    k = rate_up + rate_down: P(1 at t+dt | 0) = rate_up/k·(1 − e^{−k·dt}),
    P(0 at t+dt | 1) = rate_down/k·(1 − e^{−k·dt}). ``init_state`` draws from the
    stationary law P(1) = rate_up/k. State: an int, 0 or 1.

    Attributes:
        low, high: values in states 0 and 1.
        rate_up_hz, rate_down_hz: switching rates in 1/s, > 0.
    """

    low: float
    high: float
    rate_up_hz: float
    rate_down_hz: float

    def __post_init__(self) -> None:
        finite("Telegraph.low", self.low)
        finite("Telegraph.high", self.high)
        for name in ("rate_up_hz", "rate_down_hz"):
            v = getattr(self, name)
            require(finite(f"Telegraph.{name}", v) > 0, f"Telegraph.{name}", v, "> 0 1/s")

    @property
    def p_high(self) -> float:
        """Stationary probability of state 1."""
        return self.rate_up_hz / (self.rate_up_hz + self.rate_down_hz)

    def init_state(self, rng: np.random.Generator) -> int:
        return int(rng.random() < self.p_high)

    def advance(self, state: int, dt_s: float, rng: np.random.Generator) -> int:
        dt = _check_dt(dt_s)
        k = self.rate_up_hz + self.rate_down_hz
        mix = -math.expm1(-k * dt)
        p_switch = (self.rate_up_hz if state == 0 else self.rate_down_hz) / k * mix
        return 1 - state if rng.random() < p_switch else state

    def value(self, state: int) -> float:
        return float(self.high if state else self.low)


# -- the bundle for a device -----------------------------------------------------------------

_MODEL_FIELDS = ("detuning_hz", "amplitude", "t1_factor", "anharmonicity_hz")
_MIN_T1_FACTOR = 1e-3


@dataclass(frozen=True)
class DriftState:
    """Explicit state of a ``DriftModel``: one entry per field of ``DriftModel`` (None when
    that process is absent), plus the time it refers to."""

    detuning_hz: Any = None
    amplitude: Any = None
    t1_factor: Any = None
    anharmonicity_hz: Any = None
    time_s: float = 0.0


@dataclass(frozen=True)
class DriftValues:
    """Drift offsets at one time.

    Attributes:
        detuning_hz: added to the qubit detuning (Hz).
        amplitude: relative drive-amplitude change; the drive scale is multiplied by
            (1 + amplitude).
        t1_factor: multiplies T1 (> 0; clipped at 1e-3 if a process strays below).
        anharmonicity_hz: added to the anharmonicity (Hz).
    """

    detuning_hz: float = 0.0
    amplitude: float = 0.0
    t1_factor: float = 1.0
    anharmonicity_hz: float = 0.0


@dataclass(frozen=True)
class DriftModel:
    """Optional drift processes for the parameters of one device.

    How the values act (``apply``):
        detuning_hz        δ → δ + value                          (additive, Hz)
        amplitude          scale → scale·(1 + value)              (relative)
        t1_factor          T1 → T1·value, with Tφ held fixed, so  (multiplicative)
                           1/T2 = 1/(2·T1·value) + 1/Tφ; T2 <= 2·T1 holds by construction
                           (a TLS changes relaxation, not pure dephasing).
        anharmonicity_hz   α → α + value                          (additive, Hz)

    Attributes:
        detuning_hz, amplitude, t1_factor, anharmonicity_hz: a process (anything with
            ``init_state``/``advance``/``value``) or None for "does not drift".
    """

    detuning_hz: DriftProcess | None = None
    amplitude: DriftProcess | None = None
    t1_factor: DriftProcess | None = None
    anharmonicity_hz: DriftProcess | None = None

    def __post_init__(self) -> None:
        for name in _MODEL_FIELDS:
            p = getattr(self, name)
            if p is not None and not isinstance(p, DriftProcess):
                raise TypeError(
                    f"DriftModel.{name} is {type(p).__name__}: allowed a drift process "
                    "(OrnsteinUhlenbeck, RandomWalk, OneOverF, Telegraph) or None"
                )

    def _active(self) -> list[tuple[str, DriftProcess]]:
        return [(n, p) for n in _MODEL_FIELDS if (p := getattr(self, n)) is not None]

    def init_state(self, rng: np.random.Generator) -> DriftState:
        """Initial state at time 0 (processes drawn in field order)."""
        return DriftState(**{n: p.init_state(rng) for n, p in self._active()})

    def advance(self, state: DriftState, dt_s: float, rng: np.random.Generator) -> DriftState:
        """The state ``dt_s`` seconds later (processes advanced in field order)."""
        dt = _check_dt(dt_s)
        new = {n: p.advance(getattr(state, n), dt, rng) for n, p in self._active()}
        return DriftState(time_s=state.time_s + dt, **new)

    def values(self, state: DriftState) -> DriftValues:
        vals = {n: p.value(getattr(state, n)) for n, p in self._active()}
        if "t1_factor" in vals:
            vals["t1_factor"] = max(vals["t1_factor"], _MIN_T1_FACTOR)
        return DriftValues(**vals)

    @staticmethod
    def apply_to_transmon(transmon: Transmon, values: DriftValues, rabi_scale: float = 1.0) -> Transmon:
        """The transmon with drift applied (see class docstring for T1/T2), and Ω_R
        multiplied by ``rabi_scale`` (the device folds its amplitude scale in here)."""
        if values == DriftValues() and rabi_scale == 1.0:
            return transmon
        t1 = transmon.t1_s * values.t1_factor
        rate_phi = max(1.0 / transmon.t2_s - 0.5 / transmon.t1_s, 0.0)
        t2 = min(1.0 / (0.5 / t1 + rate_phi), 2.0 * t1)
        # Built directly (not dataclasses.replace): this runs once per device per run call.
        return Transmon(
            levels=transmon.levels,
            anharmonicity_hz=transmon.anharmonicity_hz + values.anharmonicity_hz,
            rabi_max_hz=transmon.rabi_max_hz * rabi_scale,
            detuning_hz=transmon.detuning_hz + values.detuning_hz,
            t1_s=t1,
            t2_s=t2,
            dt_s=transmon.dt_s,
        )
