"""The calibrated DRAG gate: its fixed shape, its four parameters, and where they start.

``DragGate`` (fixed shape) + ``DragParams`` (amplitude, beta_s, detuning_hz, phase): the X
gate is a lifted-Gaussian DRAG pulse (same formula as ``pulses.DragPulse``); SX is the
half-area pulse with the same β and detuning. ``detuning_hz`` is a drive-frequency
correction, realised by the probes as a frame ramp (``probes``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import finite, require
from .physics import (
    Transmon,
    gate_fidelity,
    unitaries,
)
from .physics.calibration_kernels import (
    TWO_PI,
    drag_factors,
)

FloatArray = NDArray[np.float64]
ComplexArray = NDArray[np.complex128]

PARAMETER_NAMES: tuple[str, ...] = ("amplitude", "beta_s", "detuning_hz", "phase")

# ``drag_factors``' bound on |amp·shape| under which ``DragGate.waveforms_by_fraction``
# skips its clip: far enough below 1 that no rounding of the phase factor, the product or
# the modulus (each within a few ulps) can lift a sample above 1.
_NO_CLIP_BOUND = 1.0 - 1e-9


@dataclass(frozen=True)
class DragParams:
    """Calibration parameters of a DRAG X gate (SX: half area, same β, detuning, phase).

    Attributes:
        amplitude: peak of the X pulse's I quadrature, full-scale units, in [−1, 1].
        beta_s: DRAG coefficient β in seconds (Q = β·dI/dt).
        detuning_hz: drive-frequency correction Δ in Hz (frame ramp over the whole sequence).
        phase: drive phase in rad (rotation axis in the XY plane).
    """

    amplitude: float
    beta_s: float
    detuning_hz: float = 0.0
    phase: float = 0.0

    def __post_init__(self) -> None:
        for name in PARAMETER_NAMES:
            finite(f"DragParams.{name}", getattr(self, name))
        require(abs(self.amplitude) <= 1.0, "DragParams.amplitude", self.amplitude, "[-1, 1]")

    def as_array(self) -> FloatArray:
        """(4,) in the order of ``PARAMETER_NAMES``."""
        return np.array(self.as_tuple())

    def as_tuple(self) -> tuple[float, float, float, float]:
        """The four values as Python floats, in the order of ``PARAMETER_NAMES``."""
        return (float(self.amplitude), float(self.beta_s), float(self.detuning_hz), float(self.phase))

    @classmethod
    def from_array(cls, values: ArrayLike) -> DragParams:
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        require(v.shape == (4,), "values", v.shape, "shape (4,) in PARAMETER_NAMES order")
        return cls(*(float(x) for x in v))


@dataclass(frozen=True)
class DragGate:
    """Fixed shape of the calibrated gates: lifted Gaussian of ``duration_s``, σ = ``sigma_s``.

    Attributes:
        duration_s: pulse length T in seconds (a whole number of device samples).
        sigma_s: Gaussian width in seconds; None means T/4.
        sx_area_fraction: SX area relative to X (0.5: the half-area pulse).
    """

    duration_s: float = 20e-9
    sigma_s: float | None = None
    sx_area_fraction: float = 0.5

    def __post_init__(self) -> None:
        require(finite("DragGate.duration_s", self.duration_s) > 0, "DragGate.duration_s",
                self.duration_s, "> 0 s")
        if self.sigma_s is not None:
            require(finite("DragGate.sigma_s", self.sigma_s) > 0, "DragGate.sigma_s",
                    self.sigma_s, "> 0 s or None")
        require(0 < finite("DragGate.sx_area_fraction", self.sx_area_fraction) <= 1,
                "DragGate.sx_area_fraction", self.sx_area_fraction, "(0, 1]")

    def n_samples(self, dt_s: float) -> int:
        n = round(self.duration_s / dt_s)
        if not (n >= 1 and abs(n * dt_s - self.duration_s) <= 1e-6 * self.duration_s):
            # (the message only when it fails: formatting it costs more than the check)
            require(False, "DragGate.duration_s", self.duration_s, f"a whole number of samples of dt_s={dt_s}")
        return n

    def envelope(self, dt_s: float) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Unit lifted Gaussian g, dg/dt (1/s) and the midpoint times t − T/2, each (S,).

        Same formula and sampling (interval midpoints) as ``pulses.DragPulse``; cached
        (read-only arrays), since every step of every copy needs it.
        """
        return _envelope(self, float(dt_s))

    def _envelope(self, dt_s: float) -> tuple[FloatArray, FloatArray, FloatArray]:
        n = self.n_samples(dt_s)
        t = (np.arange(n, dtype=np.float64) + 0.5) * dt_s
        half = 0.5 * n * dt_s
        sig = half / 2.0 if self.sigma_s is None else float(self.sigma_s)
        g0 = math.exp(-(half**2) / (2.0 * sig**2))
        x: FloatArray = t - half
        g = np.exp(-(x**2) / (2.0 * sig**2))
        env: FloatArray = (g - g0) / (1.0 - g0)
        deriv: FloatArray = (-x / sig**2) * g / (1.0 - g0)
        for arr in (env, deriv, x):
            arr.setflags(write=False)
        return env, deriv, x

    def waveforms(self, params: ArrayLike, dt_s: float, area_fraction: float = 1.0) -> ComplexArray:
        """Samples of the gate for a batch of parameter rows.

        The detuning ramp is referenced to the pulse centre (as ``DragPulse``), so the
        rotation axis stays at ``phase`` whatever the detuning.

        Args:
            params: (B, 4) rows in ``PARAMETER_NAMES`` order (or (4,)).
            area_fraction: 1 for X, ``sx_area_fraction`` for SX.
        Returns:
            (B, S) complex waveforms ((S,) for a 1-D ``params``); |u| is clipped to 1 in
            magnitude, as a saturating AWG would.
        """
        p = np.asarray(params, dtype=np.float64)
        single = p.ndim == 1
        w = self.waveforms_by_fraction(np.atleast_2d(p), dt_s, (area_fraction,))[:, 0]
        return w[0] if single else w

    def waveforms_by_fraction(self, p: FloatArray, dt_s: float,
                              fractions: tuple[float, ...]) -> ComplexArray:
        """(B, F, S): ``waveforms(p, dt_s, f)`` for each area fraction f of (B, 4) rows ``p``,
        sharing the envelope and the phase ramp.

        Bit for bit the array operations (amp·shape)·e^{i·rot}, shape = g + i·β·dg, rot =
        −2π·Δ·x + phase: a compiled loop forms amp·shape and i·rot exactly as NumPy does
        (plain IEEE, the real operand promoted to complex), the exponential and the complex
        product stay NumPy's (that product is fused, FMA, where the CPU has it)."""
        g, dg, x = self.envelope(dt_s)
        p = np.ascontiguousarray(p, dtype=np.float64)
        scaled = np.empty((p.shape[0], len(fractions), g.size), dtype=np.complex128)
        exponent = np.empty((p.shape[0], g.size), dtype=np.complex128)
        bound = drag_factors(p, g, dg, x, np.array(fractions, dtype=np.float64), scaled, exponent)
        w = scaled * np.exp(exponent)[:, None, :]
        # |w| is |amp·shape| times a unit phase factor, up to a few ulps of rounding; below
        # this bound no sample can exceed 1, so the clip (three array passes) is skipped.
        if not bound <= _NO_CLIP_BOUND:
            mag = np.abs(w)
            over = mag > 1.0
            if over.any():
                w = np.where(over, w / np.maximum(mag, 1.0), w)
        return w

    def area_s(self, dt_s: float) -> float:
        """Σ_k g_k·dt of the unit envelope (seconds)."""
        return float(np.sum(self.envelope(dt_s)[0])) * dt_s


@functools.lru_cache(maxsize=64)
def _envelope(gate: DragGate, dt_s: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    return gate._envelope(dt_s)


def nominal_values(transmon: Transmon, gate: DragGate) -> tuple[float, float, float, float]:
    """``nominal_params``' four values without the full-scale cap: the amplitude exceeds 1
    on a device whose π pulse does not fit ``gate`` (``amplitude_limit.fit_gate`` then
    chooses a longer gate), which a ``DragParams`` cannot hold."""
    amp = 1.0 / (2.0 * transmon.rabi_max_hz * gate.area_s(transmon.dt_s))
    beta = -1.0 / (2.0 * TWO_PI * transmon.anharmonicity_hz)
    return (amp, beta, float(transmon.detuning_hz), 0.0)


def nominal_params(
    transmon: Transmon, gate: DragGate, amplitude_scale: float = 1.0
) -> DragParams:
    """Textbook X gate: π area on two levels, β = −1/(2·α_ang), Δ = the qubit's detuning.

    The amplitude is capped at full scale (a ``DragParams`` cannot hold more): the DRAG
    calibrations start from ``nominal_values`` and ``amplitude_limit.fit_gate`` instead,
    so that a device that does not fit is lengthened or refused rather than capped.

    ``transmon`` is the model the device simulates (``SimulatedDevice.current_transmon()``
    already folds the amplitude scale into Ω_R); ``amplitude_scale`` multiplies Ω_R again
    for a bare ``DeviceParams.transmon``.
    """
    # A pure function of hashable frozen values with a frozen result: cached (every env
    # reset asks for it, mostly for the same preset model).
    return _nominal_params(transmon, gate, float(amplitude_scale))


@functools.lru_cache(maxsize=256)
def _nominal_params(transmon: Transmon, gate: DragGate, amplitude_scale: float) -> DragParams:
    amp = 1.0 / (2.0 * transmon.rabi_max_hz * amplitude_scale * gate.area_s(transmon.dt_s))
    beta = -1.0 / (2.0 * TWO_PI * transmon.anharmonicity_hz)
    return DragParams(min(amp, 1.0), beta, transmon.detuning_hz, 0.0)


def optimal_params(
    transmon: Transmon, gate: DragGate, amplitude_scale: float = 1.0, *, target: str = "X",
    area_fraction: float = 1.0,
) -> DragParams:
    """Parameters that cancel the hidden errors (simulation knowledge, never for an agent).

    Amplitude and β minimise the closed-system 1 − F (virtual Z) on this device's exact
    N-level model, by Nelder-Mead from ``nominal_params``. The detuning correction is set
    to the qubit's detuning: its job is the frame over a whole circuit (idle times
    included), which a single gate's fidelity barely sees; optimising it on one gate
    would trade a ~1e-6 gain inside the gate for a MHz frame error between gates.
    """
    from scipy.optimize import minimize

    if amplitude_scale != 1.0:
        transmon = transmon.replace(rabi_max_hz=transmon.rabi_max_hz * amplitude_scale)
    p0 = nominal_params(transmon, gate).as_array()


    scale = np.array([p0[0] * 0.01, abs(p0[1]) * 0.1 + 1e-12])

    def cost(z: FloatArray) -> float:
        p = p0.copy()
        p[:2] = p0[:2] + z * scale
        w = gate.waveforms(p, transmon.dt_s, area_fraction)
        u = unitaries(transmon, w[None])
        return float(np.log10(1.0 - gate_fidelity(u, target, kind="unitary", virtual_z=True)[0] + 1e-16))

    res = minimize(cost, np.zeros(2), method="Nelder-Mead",
                   options={"xatol": 1e-4, "fatol": 1e-5, "maxiter": 300})
    best = p0.copy()
    best[:2] = p0[:2] + res.x * scale
    return DragParams.from_array(best)


def parameter_rows(values: ArrayLike) -> FloatArray:
    """``np.atleast_2d(np.asarray(values, dtype=np.float64))``: a 2-D float64 array is
    returned as is, which is what those calls return for it, without their call cost
    (every env step passes its rows through several of these)."""
    if type(values) is np.ndarray and values.ndim == 2 and values.dtype == np.float64:
        return values
    return np.atleast_2d(np.asarray(values, dtype=np.float64))
