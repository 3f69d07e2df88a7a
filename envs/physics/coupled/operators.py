"""The operator form every coupled-model engine runs: matrices, not physics parameters.

``CoupledModel`` (our parametrised transmons) and a bring-your-own model (QuTiP objects or
a qiskit-dynamics model) both compile to an ``OperatorModel``; the fast engine and the
reference engines only ever see this form, so a user's own device runs through exactly
the code that ours does.

    H(t) = H_static + Σ_c [ v_c(t)·R_c + v_c(t)*·R_c† ] + Σ_r x_r(t)·O_r,
    v_c(t) = u_c(t)·e^{−i2π(f_c − frame_hz)t},

with H_static in a common frame where every mode rotates at ``frame_hz``; R_c the raising
part of drive channel c (its samples u_c complex, |u| <= 1, at frame frequency f_c); O_r a
Hermitian operator of real channel r with x_r = transfer(sample) (a flux channel's
frequency shift, or the sample itself). Dissipation: time-independent collapse operators.
States are reported in the modes' own frames g_i: U = M(t1)·U_common·M(t0)†,
M(t) = exp(i2π·Σ_i (g_i − frame_hz)·n_i·t).

``shiftable`` says whether the common frame may be moved to another frequency f': true when
H_static and every real-channel operator commute with the total excitation number N, every
R_c raises N by one and every collapse operator changes N by a fixed amount. Then
H' = H_static − 2π(f' − frame_hz)·N is the same model in the frame at f', and an engine can
pick f' = the one frequency that plays, making the pulse piecewise constant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

ComplexArray = NDArray[np.complex128]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class DriveControl:
    """A complex channel: raising operator R (rad/s at |u| = 1) at frame frequency f (Hz)."""

    raising: ComplexArray
    frequency_hz: float
    line: str = ""


@dataclass(frozen=True, eq=False)
class RealControl:
    """A real channel: Hermitian operator O (rad/s per unit of x) with x = transfer(sample).

    ``max_abs`` bounds |sample|; ``distortion`` (an object with ``apply(samples, dt_s)``)
    is what the line does to the samples before ``transfer``; ``mode`` names the mode it tunes.
    """

    operator: ComplexArray
    max_abs: float
    transfer: Callable[[FloatArray], FloatArray] | None = None
    distortion: object | None = None
    mode: str = ""
    diagonal: bool = False


@dataclass(frozen=True, eq=False)
class OperatorModel:
    """A multi-mode model as matrices (shapes: D = Π dims).

    Attributes:
        dims: levels of each mode, basis order as ``qutip.tensor`` (mode 0 most significant).
        names: mode names.
        qubit_levels: per mode, the two levels forming its qubit, or ``None`` for a mode
            that is kept in level 0 (a coupler) and is not part of the computational space.
        frame_hz: the common frame of ``h_static`` (every mode rotating at it).
        mode_frames_hz: g_i, each mode's own frame frequency for reporting.
        h_static: (D, D) Hermitian, rad/s.
        drives: channel name -> DriveControl.
        reals: channel name -> RealControl.
        collapse: (D, D) collapse operators, √(1/s).
        dt_s: AWG sample time.
        shiftable: whether the common frame may be moved (module docstring).
        source: what it was compiled from (for error messages and caching).
    """

    dims: tuple[int, ...]
    names: tuple[str, ...]
    qubit_levels: tuple[tuple[int, int] | None, ...]
    frame_hz: float
    mode_frames_hz: tuple[float, ...]
    h_static: ComplexArray
    drives: dict[str, DriveControl]
    reals: dict[str, RealControl]
    collapse: tuple[ComplexArray, ...]
    dt_s: float
    shiftable: bool
    source: object = None
    _cache: dict[str, object] = field(default_factory=dict, repr=False)

    @property
    def dimension(self) -> int:
        return int(np.prod(self.dims))

    @property
    def channels(self) -> tuple[str, ...]:
        return (*self.drives, *self.reals)

    def level_numbers(self) -> FloatArray:
        """(n_modes, D): each mode's level in each basis state."""
        if "levels" not in self._cache:
            arr = np.indices(self.dims).reshape(len(self.dims), -1).astype(np.float64)
            arr.setflags(write=False)
            self._cache["levels"] = arr
        return self._cache["levels"]  # type: ignore[return-value]

    def total_number(self) -> FloatArray:
        """Diagonal of N = Σ_i n_i, (D,)."""
        return self.level_numbers().sum(axis=0)

    def frame_phases(self, frame_hz: float, t_s: float) -> ComplexArray:
        """Diagonal of M(t) = exp(i2π·Σ_i (g_i − frame_hz)·n_i·t), (D,)."""
        g = np.asarray(self.mode_frames_hz) - frame_hz
        return np.exp(1j * 2.0 * np.pi * (g @ self.level_numbers()) * t_s)

    def static_in_frame(self, frame_hz: float) -> ComplexArray:
        """H_static moved to a common frame at ``frame_hz`` (needs ``shiftable``)."""
        if frame_hz == self.frame_hz:
            return self.h_static
        if not self.shiftable:
            raise ValueError("this model's frame cannot be moved (it does not conserve excitations)")
        shift = 2.0 * np.pi * (frame_hz - self.frame_hz) * self.total_number()
        return self.h_static - np.diag(shift)

    def computational_indices(self) -> NDArray[np.intp]:
        """Basis indices of the 2^n qubit states, first qubit most significant."""
        if "comp" not in self._cache:
            qubits = [i for i, q in enumerate(self.qubit_levels) if q is not None]
            idx = []
            for bits in range(2 ** len(qubits)):
                levels = [0] * len(self.dims)
                for k, pos in enumerate(qubits):
                    lv = self.qubit_levels[pos]
                    assert lv is not None
                    levels[pos] = lv[(bits >> (len(qubits) - 1 - k)) & 1]
                idx.append(int(np.ravel_multi_index(levels, self.dims)))
            arr = np.asarray(idx, dtype=np.intp)
            arr.setflags(write=False)
            self._cache["comp"] = arr
        return self._cache["comp"]  # type: ignore[return-value]

    def dissipator(self) -> ComplexArray:
        """Σ_k [C̄⊗C − ½ I⊗C†C − ½ (C†C)ᵀ⊗I], column stacking, (D², D²), read-only."""
        if "diss" not in self._cache:
            d = self.dimension
            eye = np.eye(d, dtype=np.complex128)
            out = np.zeros((d * d, d * d), dtype=np.complex128)
            for c in self.collapse:
                cdc = c.conj().T @ c
                out += np.kron(c.conj(), c) - 0.5 * np.kron(eye, cdc) - 0.5 * np.kron(cdc.T, eye)
            out.setflags(write=False)
            self._cache["diss"] = out
        return self._cache["diss"]  # type: ignore[return-value]


def is_shiftable(dims: tuple[int, ...], h_static: ComplexArray, drives: dict[str, DriveControl],
                 reals: dict[str, RealControl], collapse: tuple[ComplexArray, ...]) -> bool:
    """Whether the model conserves excitations as ``OperatorModel.shiftable`` requires."""
    n = np.indices(dims).reshape(len(dims), -1).sum(axis=0).astype(np.float64)
    diff = n[:, None] - n[None, :]  # N·X − X·N = diff ∘ X elementwise

    def changes_by(x: ComplexArray, k: float) -> bool:
        scale = max(float(np.abs(x).max()), 1e-300)
        return bool(np.all(np.abs(x[np.abs(diff - k) > 0.5]) <= 1e-12 * scale))

    if not changes_by(h_static, 0.0):
        return False
    if not all(changes_by(c.raising, 1.0) for c in drives.values()):
        return False
    if not all(changes_by(r.operator, 0.0) for r in reals.values()):
        return False
    return all(any(changes_by(c, float(k)) for k in range(-max(dims), max(dims) + 1)) for c in collapse)
