"""Pulse parametrisations mapped to sampled complex waveforms on the device's sample grid.

An agent acts on a handful of physical parameters (amplitude, DRAG β, detuning, phase,
smooth-basis coefficients); the device plays complex samples u = I + iQ with |u| <= 1 on a
grid of ``dt_s``. This module is the map between the two, plus the hardware limits on it:

- Sampling convention: sample k represents the interval [k·dt, (k+1)·dt] and takes the
  value of the continuous shape at its midpoint (k + 1/2)·dt. A pulse's duration must be
  a whole number of samples (``n_samples`` rejects anything else; ``round_to_grid`` is the
  explicit way to snap a duration).
- Amplitude limit: ``waveform(dt_s, clip=False)`` raises when any |u| > 1; with
  ``clip=True`` over-range samples are clipped in magnitude (phase kept, as a saturating
  AWG would) and ``clip_amplitude`` reports how many samples were clipped.
- AWG distortion: ``LowPass`` is a first-order low-pass filter applied exactly to the
  piecewise-constant AWG output (see its docstring for the tail it appends).

Frequencies in the drive frame follow PHYSICS.md: a pulse with ``detuning_hz = Δ`` is a
drive at (frame frequency + Δ), i.e. u(t) is multiplied by e^{−i2π·Δ·t}; it is resonant
with a qubit whose ``Transmon.detuning_hz`` is Δ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import finite, require

ComplexArray = NDArray[np.complex128]
FloatArray = NDArray[np.float64]

# Durations are floats in seconds; allow this relative slack before calling a duration
# "not a whole number of samples" (20e-9 / 1e-9 is 19.999999999999996 in binary).
_GRID_RTOL = 1e-6
_AMPLITUDE_SLACK = 1e-9


def n_samples(duration_s: float, dt_s: float, *, name: str = "duration_s") -> int:
    """Number of samples of a duration that must be a whole number of samples on ``dt_s``.

    Raises ``ValueError`` (naming ``name``) when ``duration_s / dt_s`` is not an integer
    >= 1 within a relative tolerance of 1e-6; use ``round_to_grid`` to snap explicitly.
    """
    require(dt_s > 0 and math.isfinite(dt_s), "dt_s", dt_s, "a finite value > 0 s")
    ratio = float(duration_s) / dt_s
    n = round(ratio)
    if n < 1 or abs(ratio - n) > _GRID_RTOL * max(1.0, ratio):
        raise ValueError(
            f"{name}={duration_s!r} is {ratio:.6g} samples of dt_s={dt_s!r}: allowed a whole "
            f"number >= 1 of samples (round_to_grid({duration_s!r}, {dt_s!r}) = "
            f"{round_to_grid(duration_s, dt_s)!r} s)"
        )
    return n


def round_to_grid(duration_s: float, dt_s: float) -> float:
    """``duration_s`` snapped to the nearest whole number (>= 1) of samples of ``dt_s``."""
    require(dt_s > 0 and math.isfinite(dt_s), "dt_s", dt_s, "a finite value > 0 s")
    return max(1, round(float(duration_s) / dt_s)) * dt_s


def midpoints(n: int, dt_s: float) -> FloatArray:
    """Sample times (k + 1/2)·dt_s, k = 0..n−1: shape (n,)."""
    return (np.arange(n, dtype=np.float64) + 0.5) * dt_s


def clip_amplitude(waveform: ArrayLike) -> tuple[ComplexArray, int]:
    """Clip |u| to 1 sample by sample, keeping each sample's phase.

    Args:
        waveform: (S,) complex samples.
    Returns:
        the clipped (S,) waveform and the number of samples that were over range.
    """
    w = np.array(waveform, dtype=np.complex128).reshape(-1)
    mag = np.abs(w)
    over = mag > 1.0
    if np.any(over):
        w[over] = w[over] / mag[over]
    return w, int(np.count_nonzero(over))


def _limit(w: ComplexArray, clip: bool, what: str) -> ComplexArray:
    peak = float(np.max(np.abs(w))) if w.size else 0.0
    if peak <= 1.0 + _AMPLITUDE_SLACK:
        # Within rounding slack of full scale: snap to |u| <= 1 silently.
        return clip_amplitude(w)[0] if peak > 1.0 else w
    if not clip:
        raise ValueError(
            f"{what} has peak |u| = {peak:.6g}: allowed |u| <= 1 (full-scale AWG amplitude); "
            "lower the amplitude or pass clip=True"
        )
    return clip_amplitude(w)[0]


@runtime_checkable
class PulseShape(Protocol):
    """Anything that samples itself on a grid: ``waveform(dt_s) -> (S,) complex128``."""

    @property
    def duration_s(self) -> float: ...

    def waveform(self, dt_s: float, *, clip: bool = False) -> ComplexArray: ...


# -- DRAG and the lifted Gaussian ------------------------------------------------------------


@dataclass(frozen=True)
class DragPulse:
    """Lifted-Gaussian DRAG pulse.

        I(t) = amplitude · (G(t) − G(0)) / (1 − G(0)),  G(t) = exp(−(t − T/2)² / (2σ²)),
        Q(t) = beta_s · dI/dt            (analytic derivative, β in seconds),
        u(t) = (I + iQ) · e^{−i2π·detuning_hz·(t − T/2)} · e^{i·phase}.

    The "lift" makes I vanish at both ends. The detuning ramp is referenced to the pulse
    centre so that a symmetric pulse keeps its rotation axis at ``phase`` whatever the
    detuning (detuning and phase calibrate independently). First-order DRAG for a
    transmon is ``beta_s = −1/(2·2π·anharmonicity_hz)`` (see ``drag_beta``).

    Attributes:
        amplitude: peak of I in full-scale units, in [−1, 1].
        duration_s: T, > 0 and a whole number of samples of the grid it is sampled on.
        beta_s: DRAG coefficient β in seconds, |β| <= 1e-6 s.
        detuning_hz: drive-frequency offset Δ in Hz, |Δ| <= 1e9.
        phase: global phase φ in rad (rotation axis in the XY plane), finite.
        sigma_s: Gaussian width σ in seconds; None means duration_s / 4.
    """

    amplitude: float
    duration_s: float
    beta_s: float = 0.0
    detuning_hz: float = 0.0
    phase: float = 0.0
    sigma_s: float | None = None

    def __post_init__(self) -> None:
        amp = finite("DragPulse.amplitude", self.amplitude)
        require(abs(amp) <= 1.0, "DragPulse.amplitude", self.amplitude, "[-1, 1]")
        dur = finite("DragPulse.duration_s", self.duration_s)
        require(0 < dur <= 1e-3, "DragPulse.duration_s", self.duration_s, "(0, 1e-3] s")
        beta = finite("DragPulse.beta_s", self.beta_s)
        require(abs(beta) <= 1e-6, "DragPulse.beta_s", self.beta_s, "[-1e-6, 1e-6] s")
        det = finite("DragPulse.detuning_hz", self.detuning_hz)
        require(abs(det) <= 1e9, "DragPulse.detuning_hz", self.detuning_hz, "[-1e9, 1e9] Hz")
        finite("DragPulse.phase", self.phase)
        if self.sigma_s is not None:
            sig = finite("DragPulse.sigma_s", self.sigma_s)
            require(sig > 0, "DragPulse.sigma_s", self.sigma_s, "> 0 s (or None for T/4)")

    @property
    def sigma(self) -> float:
        """σ in seconds (duration_s / 4 unless given)."""
        return self.duration_s / 4.0 if self.sigma_s is None else float(self.sigma_s)

    def envelope(self, t_s: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Unit-amplitude lifted Gaussian and its time derivative at times ``t_s`` (shape (S,))."""
        half = 0.5 * self.duration_s
        sig = self.sigma
        g0 = math.exp(-(half**2) / (2.0 * sig**2))
        x = t_s - half
        g = np.exp(-(x**2) / (2.0 * sig**2))
        norm = 1.0 - g0
        return (g - g0) / norm, (-x / sig**2) * g / norm

    def _frame(self, t_s: FloatArray, iq: ArrayLike) -> ComplexArray:
        rot = -2.0 * math.pi * self.detuning_hz * (t_s - 0.5 * self.duration_s) + self.phase
        return np.asarray(iq, dtype=np.complex128) * np.exp(1j * rot)

    def waveform(self, dt_s: float, *, clip: bool = False) -> ComplexArray:
        """Samples at the interval midpoints: shape (S,), S = duration_s / dt_s."""
        t = midpoints(n_samples(self.duration_s, dt_s, name="DragPulse.duration_s"), dt_s)
        g, dg = self.envelope(t)
        iq = self.amplitude * (g + 1j * self.beta_s * dg)
        return _limit(self._frame(t, iq), clip, "DragPulse waveform")

    def replace(self, **changes: float | None) -> DragPulse:
        """A copy with some fields changed (validated again)."""
        import dataclasses

        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def lifted_gaussian(
    amplitude: float, duration_s: float, *, phase: float = 0.0, sigma_s: float | None = None
) -> DragPulse:
    """Plain lifted Gaussian: a ``DragPulse`` with β = 0 and no detuning."""
    return DragPulse(amplitude, duration_s, beta_s=0.0, phase=phase, sigma_s=sigma_s)


def drag_beta(anharmonicity_hz: float) -> float:
    """First-order DRAG coefficient β = −1/(2·α_ang) in seconds, α_ang = 2π·anharmonicity_hz.

    ≈ +0.265 ns for α/2π = −300 MHz (positive because α is negative).
    """
    require(anharmonicity_hz != 0, "anharmonicity_hz", anharmonicity_hz, "!= 0 Hz")
    return -1.0 / (2.0 * 2.0 * math.pi * anharmonicity_hz)


def pi_amplitude(
    shape: DragPulse, rabi_max_hz: float, dt_s: float, *, angle: float = math.pi
) -> float:
    """Amplitude that makes ``shape``'s sampled I quadrature rotate by ``angle`` (2 levels).

    On two levels a drive u rotates by 2π·Ω_R·∫u dt, so the amplitude is
    angle / (2π·Ω_R·dt·Σ_k g_k) with g the unit lifted Gaussian sampled on ``dt_s`` (the
    sampled sum, not the continuous integral, so it is exact on the grid). ``shape``'s
    own amplitude is ignored. Raises if the result exceeds 1 (drive too weak for the angle).
    """
    require(rabi_max_hz > 0, "rabi_max_hz", rabi_max_hz, "> 0 Hz")
    t = midpoints(n_samples(shape.duration_s, dt_s, name="DragPulse.duration_s"), dt_s)
    area = float(np.sum(shape.envelope(t)[0])) * dt_s
    amp = angle / (2.0 * math.pi * rabi_max_hz * area)
    if abs(amp) > 1.0:
        raise ValueError(
            f"angle={angle!r} needs amplitude {amp:.4g} at rabi_max_hz={rabi_max_hz!r} and "
            f"duration_s={shape.duration_s!r}: allowed |amplitude| <= 1 (use a longer pulse)"
        )
    return amp


# -- shaped pulses: DRAG base plus a smooth basis --------------------------------------------


def sine_basis(n_coeffs: int, n: int, dt_s: float) -> FloatArray:
    """Smooth basis functions sin(π·(j+1)·t/T) at the sample midpoints: shape (K, S).

    Each vanishes at both ends of the pulse (t = 0 and t = T = n·dt_s), so adding them
    never creates a step at the pulse edges.
    """
    t = midpoints(n, dt_s)
    j = np.arange(1, n_coeffs + 1, dtype=np.float64)[:, None]
    return np.sin(math.pi * j * t[None, :] / (n * dt_s))


@dataclass(frozen=True)
class ShapedPulse:
    """A DRAG base plus K sine components on I and K on Q, in the base pulse's frame.

        u(t) = [I_base + Σ_j coeffs_i[j]·s_j(t) + i(Q_base + Σ_j coeffs_q[j]·s_j(t))]
               · e^{−i2π·Δ·(t − T/2)} · e^{iφ},       s_j(t) = sin(π(j+1)t/T),

    with Δ, φ, T of ``base``. The corrections live in the base's frame so that the
    base's detuning and phase keep their meaning.

    Attributes:
        base: the DRAG pulse the corrections are added to.
        coeffs_i, coeffs_q: K coefficients each (same K >= 0), each in [−1, 1].
    """

    base: DragPulse
    coeffs_i: tuple[float, ...] = ()
    coeffs_q: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.base, DragPulse):
            raise TypeError(f"ShapedPulse.base is {type(self.base).__name__}: allowed DragPulse")
        ci = tuple(finite(f"ShapedPulse.coeffs_i[{k}]", c) for k, c in enumerate(self.coeffs_i))
        cq = tuple(finite(f"ShapedPulse.coeffs_q[{k}]", c) for k, c in enumerate(self.coeffs_q))
        require(
            len(ci) == len(cq), "ShapedPulse.coeffs_q", self.coeffs_q,
            f"the same length as coeffs_i ({len(ci)})",
        )
        for name, cs in (("coeffs_i", ci), ("coeffs_q", cq)):
            for k, c in enumerate(cs):
                require(abs(c) <= 1.0, f"ShapedPulse.{name}[{k}]", c, "[-1, 1]")
        object.__setattr__(self, "coeffs_i", ci)
        object.__setattr__(self, "coeffs_q", cq)

    @property
    def duration_s(self) -> float:
        return self.base.duration_s

    def waveform(self, dt_s: float, *, clip: bool = False) -> ComplexArray:
        """Samples at the interval midpoints: shape (S,)."""
        b = self.base
        n = n_samples(b.duration_s, dt_s, name="ShapedPulse.base.duration_s")
        t = midpoints(n, dt_s)
        g, dg = b.envelope(t)
        iq = b.amplitude * (g + 1j * b.beta_s * dg)
        k = len(self.coeffs_i)
        if k:
            basis = sine_basis(k, n, dt_s)
            iq = iq + np.asarray(self.coeffs_i) @ basis + 1j * (np.asarray(self.coeffs_q) @ basis)
        return _limit(b._frame(t, iq), clip, "ShapedPulse waveform")


# -- piecewise-constant I/Q ------------------------------------------------------------------


@dataclass(frozen=True)
class PiecewiseConstantPulse:
    """Piecewise-constant I/Q on a segment grid, resampled (held) onto the device grid.

    Attributes:
        i_values, q_values: (M,) segment values (same M >= 1), finite.
        segment_s: segment length in seconds; a whole number of device samples at
            sampling time (None means one segment per device sample).
    """

    i_values: tuple[float, ...]
    q_values: tuple[float, ...]
    segment_s: float | None = None

    def __post_init__(self) -> None:
        iv = tuple(finite(f"PiecewiseConstantPulse.i_values[{k}]", v) for k, v in enumerate(self.i_values))
        qv = tuple(finite(f"PiecewiseConstantPulse.q_values[{k}]", v) for k, v in enumerate(self.q_values))
        require(len(iv) >= 1, "PiecewiseConstantPulse.i_values", self.i_values, "at least one value")
        require(
            len(qv) == len(iv), "PiecewiseConstantPulse.q_values", self.q_values,
            f"the same length as i_values ({len(iv)})",
        )
        if self.segment_s is not None:
            seg = finite("PiecewiseConstantPulse.segment_s", self.segment_s)
            require(seg > 0, "PiecewiseConstantPulse.segment_s", self.segment_s, "> 0 s")
        object.__setattr__(self, "i_values", iv)
        object.__setattr__(self, "q_values", qv)

    @classmethod
    def from_waveform(cls, samples: ArrayLike, segment_s: float | None = None) -> PiecewiseConstantPulse:
        """From complex segment values u = I + iQ: shape (M,)."""
        w = np.asarray(samples, dtype=np.complex128).reshape(-1)
        return cls(tuple(w.real.tolist()), tuple(w.imag.tolist()), segment_s)

    @property
    def duration_s(self) -> float:
        if self.segment_s is None:
            raise ValueError("PiecewiseConstantPulse.segment_s is None: duration depends on dt_s")
        return len(self.i_values) * float(self.segment_s)

    def waveform(self, dt_s: float, *, clip: bool = False) -> ComplexArray:
        """Device samples (each segment held for segment_s / dt_s samples): shape (S,)."""
        reps = 1 if self.segment_s is None else n_samples(
            self.segment_s, dt_s, name="PiecewiseConstantPulse.segment_s"
        )
        u = np.asarray(self.i_values) + 1j * np.asarray(self.q_values)
        return _limit(np.repeat(u, reps), clip, "PiecewiseConstantPulse waveform")


# -- AWG distortion --------------------------------------------------------------------------


@dataclass(frozen=True)
class LowPass:
    """First-order low-pass (single-pole RC) distortion of the AWG output.

    The AWG holds each sample for dt (zero-order hold); the line responds with
    τ·dy/dt = x − y, τ = rise_time_s / ln 9 (10–90 % rise time). This is solved exactly
    for the piecewise-constant input, and each output sample is the exact *average* of
    y over its interval, so that the simulator's piecewise-constant model keeps the
    pulse area (rotation angle). The output is a convex combination of inputs: no
    ringing, no overshoot, |y| <= max|x| <= 1.

    Tail: the response outlasts the input. ``apply`` appends the
    ``tail_samples(dt_s) = ceil(τ·ln(1/tail_tolerance)/dt)`` samples after which the tail
    is below ``tail_tolerance`` of its starting value, so the output is longer than the
    input by that fixed number of samples (independent of the waveform, so repeated
    pulses stay on a regular grid). The tail of one pulse overlapping the next one is
    not modelled: each played waveform is filtered from rest.

    Attributes:
        rise_time_s: 10–90 % rise time in seconds, >= 0 (0 means no distortion).
        tail_tolerance: relative level at which the tail is cut, in (0, 1).
    """

    rise_time_s: float
    tail_tolerance: float = 1e-4

    def __post_init__(self) -> None:
        rt = finite("LowPass.rise_time_s", self.rise_time_s)
        require(0 <= rt <= 1e-6, "LowPass.rise_time_s", self.rise_time_s, "[0, 1e-6] s")
        tol = finite("LowPass.tail_tolerance", self.tail_tolerance)
        require(0 < tol < 1, "LowPass.tail_tolerance", self.tail_tolerance, "(0, 1)")

    @property
    def tau_s(self) -> float:
        """Time constant τ = rise_time_s / ln 9."""
        return self.rise_time_s / math.log(9.0)

    def tail_samples(self, dt_s: float) -> int:
        """Number of samples appended after the input ends."""
        if self.rise_time_s == 0:
            return 0
        return math.ceil(self.tau_s * math.log(1.0 / self.tail_tolerance) / dt_s)

    def apply(self, waveform: ArrayLike, dt_s: float) -> ComplexArray:
        """Filtered waveform: (S,) -> (S + tail_samples(dt_s),)."""
        x = np.asarray(waveform, dtype=np.complex128).reshape(-1)
        if self.rise_time_s == 0:
            return x.copy()
        x = np.concatenate([x, np.zeros(self.tail_samples(dt_s), dtype=np.complex128)])
        r = dt_s / self.tau_s
        a = math.exp(-r)
        # Average over a sample of y(t) = x + (y0 − x)·e^{−t/τ}: x + (y0 − x)·c.
        c = -math.expm1(-r) / r
        y_start = _first_order_recursion(x, a)  # y at the start of each sample
        return x + (y_start - x) * c

    def apply_many(self, waveforms: ComplexArray, dt_s: float) -> ComplexArray:
        """Filtered (B, S) -> (B, S + tail_samples(dt_s))."""
        return np.stack([self.apply(w, dt_s) for w in np.asarray(waveforms)])


def _first_order_recursion(x: ComplexArray, a: float) -> ComplexArray:
    """y_0 = 0, y_{k+1} = a·y_k + (1 − a)·x_k: the filter state at the start of each sample.

    Closed form y_k = (1 − a)·Σ_{j<k} a^{k−1−j}·x_j, evaluated with scipy's lfilter (a
    C loop), shape (S,).
    """
    from scipy.signal import lfilter

    y_end = lfilter([1.0 - a], [1.0, -a], x)
    out = np.empty_like(x)
    out[0] = 0.0
    out[1:] = y_end[:-1]
    return out
