"""The transmon model: parameters, operators and generators in one place.

Everything the engines need to know about the physics is built here, so that the
fast engine and the reference engines (QuTiP, qiskit-dynamics) start from the same
Hamiltonian and the same collapse operators, and the conversion from SI units at
the API (hertz, seconds) to angular frequency happens exactly once.

    H(t)/hbar = 2π·δ·n + π·α·n(n−1) + π·Ω_R·( u(t)·a† + u*(t)·a )

Collapse operators: √(1/T1)·a and √(2/Tφ)·n with 1/Tφ = 1/T2 − 1/(2·T1).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

TWO_PI = 2.0 * math.pi

ComplexArray = NDArray[np.complex128]
FloatArray = NDArray[np.float64]


def _require(cond: bool, field: str, value: object, allowed: str) -> None:
    if not cond:
        raise ValueError(f"{field}={value!r} is out of range: allowed {allowed}")


@dataclass(frozen=True)
class Transmon:
    """A driven transmon truncated to ``levels`` levels, in the drive's rotating frame.

    Attributes:
        levels: number of transmon levels kept (>= 2; 3 by default so leakage exists).
        anharmonicity_hz: α, f12 − f01 in Hz (negative for a transmon).
        rabi_max_hz: Ω_R, the 0–1 Rabi frequency at full-scale drive |u| = 1, in Hz.
        detuning_hz: δ = qubit frequency − drive frequency, in Hz.
        t1_s: energy relaxation time in seconds.
        t2_s: 0–1 coherence time in seconds; must satisfy T2 <= 2·T1.
        dt_s: AWG sample time in seconds; waveforms are piecewise constant on it.
    """

    levels: int = 3
    anharmonicity_hz: float = -300e6
    rabi_max_hz: float = 100e6
    detuning_hz: float = 0.0
    t1_s: float = 100e-6
    t2_s: float = 100e-6
    dt_s: float = 1e-9

    def __post_init__(self) -> None:
        _require(
            isinstance(self.levels, int | np.integer) and not isinstance(self.levels, bool)
            and 2 <= int(self.levels) <= 12,
            "levels", self.levels, "an integer in [2, 12]",
        )
        for f in fields(self):
            if f.name == "levels":
                continue
            v = getattr(self, f.name)
            _require(
                isinstance(v, int | float | np.floating | np.integer) and not isinstance(v, bool)
                and math.isfinite(float(v)),
                f.name, v, "a finite real number",
            )
        _require(self.rabi_max_hz > 0, "rabi_max_hz", self.rabi_max_hz, "> 0 Hz")
        _require(self.t1_s > 0, "t1_s", self.t1_s, "> 0 s")
        _require(self.t2_s > 0, "t2_s", self.t2_s, "> 0 s")
        _require(
            self.t2_s <= 2.0 * self.t1_s * (1.0 + 1e-12),
            "t2_s", self.t2_s, f"<= 2·t1_s = {2.0 * self.t1_s!r} s",
        )
        _require(self.dt_s > 0, "dt_s", self.dt_s, "> 0 s")

    # -- derived quantities (angular units, rad/s) -------------------------------------------

    @property
    def tphi_s(self) -> float:
        """Pure-dephasing time Tφ from 1/Tφ = 1/T2 − 1/(2·T1); ``inf`` when T2 = 2·T1."""
        rate = 1.0 / self.t2_s - 1.0 / (2.0 * self.t1_s)
        return math.inf if rate <= 0.0 else 1.0 / rate

    def replace(self, **changes: float | int) -> Transmon:
        """A copy with some fields changed (validated again)."""
        import dataclasses

        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def annihilation(levels: int) -> ComplexArray:
    """Truncated annihilation operator a: (levels, levels), a|n> = √n |n−1>."""
    return np.diag(np.sqrt(np.arange(1, levels, dtype=np.float64)), k=1).astype(np.complex128)


def drift_energies_rad_s(t: Transmon) -> FloatArray:
    """Diagonal of the drift Hamiltonian in rad/s: 2π·δ·n + π·α·n(n−1); shape (levels,)."""
    n = np.arange(t.levels, dtype=np.float64)
    return TWO_PI * t.detuning_hz * n + math.pi * t.anharmonicity_hz * n * (n - 1.0)


def drive_scale_rad_s(t: Transmon) -> float:
    """Prefactor π·Ω_R (rad/s) multiplying u·a† + u*·a."""
    return math.pi * t.rabi_max_hz


def hamiltonians_rad_s(t: Transmon, waveforms: ComplexArray) -> ComplexArray:
    """Per-sample Hamiltonians in rad/s.

    Args:
        waveforms: (..., S) complex drive samples.
    Returns:
        (..., S, N, N) Hermitian matrices.
    """
    a = annihilation(t.levels)
    h0 = np.diag(drift_energies_rad_s(t)).astype(np.complex128)
    u = np.asarray(waveforms, dtype=np.complex128)[..., None, None]
    return h0 + drive_scale_rad_s(t) * (u * a.conj().T + np.conj(u) * a)


def collapse_operators(t: Transmon) -> list[ComplexArray]:
    """Lindblad collapse operators (units √(1/s)): √(1/T1)·a and, if Tφ is finite, √(2/Tφ)·n."""
    return _collapse_operators(t.levels, t.t1_s, t.tphi_s)


def _collapse_operators(levels: int, t1_s: float, tphi_s: float) -> list[ComplexArray]:
    a = annihilation(levels)
    ops = [math.sqrt(1.0 / t1_s) * a]
    if math.isfinite(tphi_s):
        n = np.diag(np.arange(levels, dtype=np.float64)).astype(np.complex128)
        ops.append(math.sqrt(2.0 / tphi_s) * n)
    return ops


def lindbladians(t: Transmon, waveforms: ComplexArray) -> ComplexArray:
    """Per-sample Lindblad generators in column-stacking convention, units 1/s.

    With vec(ρ) stacking the columns of ρ, vec(A·ρ·B) = (Bᵀ ⊗ A)·vec(ρ), and

        L = −i(I⊗H − Hᵀ⊗I) + Σ_k [ C̄_k⊗C_k − ½ I⊗(C_k†C_k) − ½ (C_k†C_k)ᵀ⊗I ].

    Args:
        waveforms: (..., S) complex drive samples.
    Returns:
        (..., S, N², N²).
    """
    n = t.levels
    eye = np.eye(n, dtype=np.complex128)
    h = hamiltonians_rad_s(t, waveforms)
    hT = np.swapaxes(h, -1, -2)
    gen = -1j * (_kron(eye, h) - _kron(hT, eye))
    return gen + _dissipator(n, t.t1_s, t.tphi_s)


@functools.lru_cache(maxsize=256)
def _dissipator(levels: int, t1_s: float, tphi_s: float) -> ComplexArray:
    """Σ_k [C̄_k⊗C_k − ½ I⊗(C_k†C_k) − ½ (C_k†C_k)ᵀ⊗I], (N², N²), read-only.

    Depends on (levels, T1, Tφ) only, so a drifting detuning or drive amplitude reuses it
    (cached: engines rebuild generators for every drifted model). ``_kron`` multiplies
    the same entry pairs as ``np.kron``, so the values are the same to the bit.
    """
    n = levels
    eye = np.eye(n, dtype=np.complex128)
    diss = np.zeros((n * n, n * n), dtype=np.complex128)
    for c in _collapse_operators(levels, t1_s, tphi_s):
        cdc = c.conj().T @ c
        diss += _kron(c.conj(), c) - 0.5 * _kron(eye, cdc) - 0.5 * _kron(cdc.T, eye)
    diss.setflags(write=False)
    return diss


def _kron(a: ComplexArray, b: ComplexArray) -> ComplexArray:
    """Batched Kronecker product over the last two axes (broadcasting the leading ones)."""
    a = np.asarray(a)
    b = np.asarray(b)
    out = a[..., :, None, :, None] * b[..., None, :, None, :]
    sh = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return out.reshape(*sh, a.shape[-2] * b.shape[-2], a.shape[-1] * b.shape[-1])
