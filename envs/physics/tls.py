"""A transmon coupled to a two-level-system (TLS) defect: the joint model and its channels.

The fast engine knows one transmon; a TLS defect needs the joint space transmon ⊗ TLS
(dimension D = 2·N, index n·2 + s with s = 0 the TLS ground and 1 its excited state). In
the rotating frame of the drive (frequency f_d, qubit detuning δ = f01 − f_d):

    H/ħ = 2π·δ·n + π·α·n(n−1) + 2π·(δ + Δ)·σ⁺σ⁻ + 2π·g·(a†σ⁻ + a·σ⁺)
          + π·Ω_R·(u(t)·a† + u*(t)·a)

with Δ = f_TLS − f01 (a TLS near the 1–2 transition has Δ ≈ α) and g the coupling. The
coupling and every drift term conserve the total excitation number N = n + σ⁺σ⁻, which is
why a frame change of the drive is the conjugation by exp(iφN) here (the device uses it for
``VirtualZ``). Collapse operators: the transmon's √(1/T1)·a and √(2/Tφ)·n (``model.py``),
the TLS's √(1/T1_TLS)·σ⁻ and √(2/Tφ_TLS)·σ⁺σ⁻. The TLS is not driven directly.

Propagators are exact for the piecewise-constant drive: one Padé ``expm`` of the D²×D²
Lindbladian per sample (the slow, obvious path of ``reference.py``, on the joint space).
``reduced_channels`` traces the TLS out of a joint channel started with the TLS in its
ground state: the transmon channel that one gate applies from a relaxed TLS.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import expm

from .model import (
    TWO_PI,
    Transmon,
    _kron,
    _require,
    annihilation,
    drift_energies_rad_s,
    drive_scale_rad_s,
)

ComplexArray = NDArray[np.complex128]


@dataclass(frozen=True)
class TLSDefect:
    """A two-level-system defect coupled to the transmon.

    Attributes:
        detuning_hz: Δ = f_TLS − f01 in Hz (near 0: resonant with the qubit; near α:
            with the 1–2 transition), |Δ| <= 2 GHz.
        coupling_hz: g/2π in Hz, in [0, 100 MHz] (0: decoupled).
        t1_s: TLS relaxation time in seconds, > 0.
        t2_s: TLS coherence time in seconds, in (0, 2·t1_s]; None: 2·t1_s (no pure dephasing).
    """

    detuning_hz: float
    coupling_hz: float
    t1_s: float
    t2_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("detuning_hz", "coupling_hz", "t1_s"):
            v = getattr(self, name)
            _require(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v),
                     f"TLSDefect.{name}", v, "a finite real number")
        _require(abs(self.detuning_hz) <= 2e9, "TLSDefect.detuning_hz", self.detuning_hz, "|Δ| <= 2e9 Hz")
        _require(0 <= self.coupling_hz <= 1e8, "TLSDefect.coupling_hz", self.coupling_hz, "[0, 1e8] Hz")
        _require(self.t1_s > 0, "TLSDefect.t1_s", self.t1_s, "> 0 s")
        if self.t2_s is not None:
            _require(isinstance(self.t2_s, int | float) and math.isfinite(self.t2_s)
                     and 0 < self.t2_s <= 2 * self.t1_s * (1 + 1e-12),
                     "TLSDefect.t2_s", self.t2_s, f"(0, 2·t1_s = {2 * self.t1_s!r}] s or None")

    @property
    def tphi_s(self) -> float:
        """TLS pure-dephasing time from 1/Tφ = 1/T2 − 1/(2·T1); inf without dephasing."""
        if self.t2_s is None:
            return math.inf
        rate = 1.0 / self.t2_s - 1.0 / (2.0 * self.t1_s)
        return math.inf if rate <= 0 else 1.0 / rate


def joint_dim(levels: int) -> int:
    return 2 * levels


@functools.lru_cache(maxsize=64)
def joint_operators(t: Transmon, tls: TLSDefect) -> tuple[ComplexArray, ComplexArray, tuple[ComplexArray, ...]]:
    """(H0 (D, D) rad/s, drive operator π·Ω_R·a† (D, D) rad/s, collapse operators (D, D)).

    H(u) = H0 + u·A + u*·A† with A the returned drive operator. Read-only arrays (cached).
    """
    n = t.levels
    a = annihilation(n)
    eye_t = np.eye(n, dtype=np.complex128)
    sm = np.array([[0, 1], [0, 0]], dtype=np.complex128)  # σ⁻ = |g><e|
    ee = sm.conj().T @ sm  # σ⁺σ⁻ = |e><e|
    eye_s = np.eye(2, dtype=np.complex128)
    h0 = np.kron(np.diag(drift_energies_rad_s(t)).astype(np.complex128), eye_s)
    h0 = h0 + TWO_PI * (t.detuning_hz + tls.detuning_hz) * np.kron(eye_t, ee)
    cpl = np.kron(a.conj().T, sm)
    h0 = h0 + TWO_PI * tls.coupling_hz * (cpl + cpl.conj().T)
    drive = drive_scale_rad_s(t) * np.kron(a.conj().T, eye_s)
    ops = [math.sqrt(1.0 / t.t1_s) * np.kron(a, eye_s)]
    if math.isfinite(t.tphi_s):
        ops.append(math.sqrt(2.0 / t.tphi_s) * np.kron(np.diag(np.arange(n, dtype=np.float64)), eye_s))
    ops.append(math.sqrt(1.0 / tls.t1_s) * np.kron(eye_t, sm))
    if math.isfinite(tls.tphi_s):
        ops.append(math.sqrt(2.0 / tls.tphi_s) * np.kron(eye_t, ee))
    out: list[ComplexArray] = [np.asarray(m, dtype=np.complex128) for m in (h0, drive, *ops)]
    for m in out:
        m.setflags(write=False)
    return out[0], out[1], tuple(out[2:])


def excitation_numbers(levels: int) -> NDArray[np.float64]:
    """Total excitation number n + s of each joint basis state: (D,)."""
    return np.add.outer(np.arange(levels, dtype=np.float64), np.arange(2, dtype=np.float64)).reshape(-1)


def _liouvillian(h: ComplexArray, ops: tuple[ComplexArray, ...]) -> ComplexArray:
    """Column-stacking Lindbladian of (..., D, D) Hamiltonians (as ``model.lindbladians``)."""
    d = h.shape[-1]
    eye = np.eye(d, dtype=np.complex128)
    hT = np.swapaxes(h, -1, -2)
    gen = -1j * (_kron(eye, h) - _kron(hT, eye))
    diss = np.zeros((d * d, d * d), dtype=np.complex128)
    for c in ops:
        cdc = c.conj().T @ c
        diss += np.kron(c.conj(), c) - 0.5 * np.kron(eye, cdc) - 0.5 * np.kron(cdc.T, eye)
    return gen + diss  # type: ignore[no-any-return]


def joint_superoperators(t: Transmon, tls: TLSDefect, waveforms: ComplexArray) -> ComplexArray:
    """Joint channels of piecewise-constant pulses, sample 0 acting first.

    Args:
        waveforms: (B, S) complex drive samples (|u| <= 1 is the caller's to check).
    Returns:
        (B, D², D²) column-stacking superoperators, D = 2·levels.
    """
    w = np.asarray(waveforms, dtype=np.complex128)
    h0, drive, ops = joint_operators(t, tls)
    u = w[..., None, None]
    h = h0 + u * drive + np.conj(u) * drive.conj().T  # (B, S, D, D)
    steps = expm(_liouvillian(h, ops) * t.dt_s)
    out = steps[:, 0].copy()
    for k in range(1, steps.shape[1]):
        out = steps[:, k] @ out
    return out  # type: ignore[no-any-return]


def joint_free_channel(t: Transmon, tls: TLSDefect, duration_s: float) -> ComplexArray:
    """Zero-drive joint channel over ``duration_s`` seconds: (D², D²)."""
    h0, _, ops = joint_operators(t, tls)
    return expm(_liouvillian(h0, ops) * float(duration_s))  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=8)
def _reduction_indices(levels: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Joint column-stacking indices: (2, N²) outputs (r, s; c, s) per TLS state s, and (N²,)
    inputs (r, 0; c, 0), both ordered by the transmon's column-stacking index r + c·N."""
    n = levels
    d = 2 * n
    rr, cc = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    r = rr.reshape(-1, order="F")  # transmon index r + c·N, column stacking
    c = cc.reshape(-1, order="F")
    outs = np.stack([(2 * r + s) + (2 * c + s) * d for s in (0, 1)])
    ins = (2 * r) + (2 * c) * d
    return outs, ins


def reduced_channels(joint: ComplexArray, levels: int) -> ComplexArray:
    """The transmon channel ρ ↦ Tr_TLS[S(ρ ⊗ |g><g|)] of joint channels S: (B, D², D²) ->
    (B, N², N²), column stacking."""
    outs, ins = _reduction_indices(levels)
    j = np.asarray(joint)
    return j[..., outs[0][:, None], ins[None, :]] + j[..., outs[1][:, None], ins[None, :]]  # type: ignore[no-any-return]
