"""The static spectrum of a coupled model: its idle Hamiltonian (with real channels held at
constant samples), the dressed computational energies, the static ZZ rate of a pair, and
the idle dressed basis with operations expressed in it. docs/two_qubit_metrics.md states
the conventions (the computational subspace and basis order are those of ``metrics``).

The module is pure: arrays in, arrays out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment

from .controls import as_operator_model
from .metrics import (
    ComplexArray,
    FloatArray,
    ModelArg,
    OpKind,
    _ops,
    _pair_indices,
    _qubit_positions,
)
from .model import TWO_PI


def static_hamiltonian(model: ModelArg, flux: Mapping[str, ArrayLike] | None = None) -> ComplexArray:
    """The idle Hamiltonian (rad/s) in the model's common frame, with real channels held at
    constant samples (for flux: an offset in Φ0 from the idle bias, through the channel's
    transfer; no line distortion, as for a held DC value). (B, D, D); B = 1 without flux.

    Args:
        flux: real channel name -> a sample (scalar or (B,)).
    """
    om = as_operator_model(model)
    h0 = om.h_static
    if not flux:
        return h0[None].copy()
    rows: dict[str, FloatArray] = {}
    batch = 1
    for name, raw in flux.items():
        if name not in om.reals:
            raise ValueError(f"flux[{name!r}]: the model has no real channel {name!r}: allowed {sorted(om.reals)}")
        x = np.atleast_1d(np.asarray(raw, dtype=np.float64))
        rc = om.reals[name]
        if x.ndim != 1 or not np.all(np.isfinite(x)) or np.any(np.abs(x) > rc.max_abs + 1e-9):
            raise ValueError(f"flux[{name!r}]={raw!r}: allowed finite samples (scalar or (B,)) with "
                             f"|sample| <= {rc.max_abs:g}")
        if x.size != 1:
            if batch not in (1, x.size):
                raise ValueError(f"flux[{name!r}] has {x.size} values, another channel {batch}")
            batch = x.size
        rows[name] = rc.transfer(x) if rc.transfer is not None else x
    h = np.broadcast_to(h0, (batch, *h0.shape)).copy()
    for name, x in rows.items():
        h += np.broadcast_to(x, (batch,))[:, None, None] * om.reals[name].operator[None]
    return h


def dressed_energies_hz(model: ModelArg, flux: Mapping[str, ArrayLike] | None = None) -> FloatArray:
    """Energies (Hz, in the model's common frame) of the dressed computational states, (B, 2^n).

    Each bare computational state is matched to one eigenvector of the static Hamiltonian,
    maximising the total overlap Σ |⟨bare|dressed⟩|² (an assignment, so two bare states
    never share a dressed state even where they hybridise strongly).
    """
    om = as_operator_model(model)
    h = static_hamiltonian(om, flux)
    comp = om.computational_indices()
    energies, vecs = np.linalg.eigh(h)
    out = np.empty((h.shape[0], comp.size))
    for b in range(h.shape[0]):
        overlap = np.abs(vecs[b][comp, :]) ** 2  # (2^n, D)
        rows, cols = linear_sum_assignment(-overlap)
        out[b, rows] = energies[b, cols] / TWO_PI
    return out


def static_zz_hz(model: ModelArg, flux: Mapping[str, ArrayLike] | None = None, *,
                 qubits: Sequence[str] | None = None) -> FloatArray:
    """Static ZZ rate ζ = E11 − E10 − E01 + E00 (Hz) of a pair from the dressed energies.

    Frame shifts linear in the excitation numbers cancel in ζ, so it is the lab-frame value.
    The effective Hamiltonian of the pair contains (ζ/4)·Z⊗Z (×2π in rad/s), and an idle of
    duration t gives the conditional phase −2π·ζ·t in the dressed basis (``to_dressed_basis``).

    Args:
        flux: real channel name -> held sample (scalar or (B,)), as ``static_hamiltonian``.
        qubits: the pair; default the model's two qubits (other qubits are read in 0).
    Returns:
        (B,) (0-d without ``flux`` or with scalar samples).
    """
    om = as_operator_model(model)
    p0, p1, _ = _pair_indices(om, qubits)
    pos = _qubit_positions(om)
    n = len(pos)
    e = dressed_energies_hz(om, flux)

    def col(b0: int, b1: int) -> int:
        bits = [0] * n
        bits[pos.index(p0)], bits[pos.index(p1)] = b0, b1
        return int(sum(bit << (n - 1 - k) for k, bit in enumerate(bits)))

    zz = e[:, col(1, 1)] - e[:, col(1, 0)] - e[:, col(0, 1)] + e[:, col(0, 0)]
    return zz[0] if zz.size == 1 else zz


def dressed_states(model: ModelArg) -> ComplexArray:
    """W (D, D): eigenvectors of the idle Hamiltonian, column c the dressed state labelled by
    bare state c (assigned by maximum total overlap over all D states), phase fixed so that
    ⟨c|W_c⟩ is real and positive. Degenerate idle levels (exactly resonant modes) have no
    unique dressed states; the assignment then picks one basis of the degenerate space."""
    om = as_operator_model(model)
    if "dressed" not in om._cache:
        _, vecs = np.linalg.eigh(om.h_static)
        rows, cols = linear_sum_assignment(-(np.abs(vecs) ** 2))
        w = np.empty_like(vecs)
        w[:, rows] = vecs[:, cols]
        diag = np.diagonal(w).copy()
        w = w * (np.conj(diag) / np.maximum(np.abs(diag), 1e-300))[None, :]
        w.setflags(write=False)
        om._cache["dressed"] = w
    return om._cache["dressed"]  # type: ignore[return-value]


def to_dressed_basis(model: ModelArg, ops: ArrayLike, *, kind: OpKind, duration_s: float,
                     t0_s: float = 0.0) -> ComplexArray:
    """An operation from t0 to t0 + duration in the modes' frames, expressed in the idle
    dressed basis (what a lab's readout and state preparation address): W(t1)†·U·W(t0).

    In the modes' frames the dressed states turn with the frames, W(t) = M(t)·W·M(t)†
    (M the frame phases of ``OperatorModel.frame_phases``), because exchange between modes
    with different frames is time-dependent there; a superoperator is conjugated by
    W̄(t)⊗W(t). Every metric of this module then reads dressed instead of bare states.

    Args:
        ops: (B, D, D) or (B, D², D²) (or one op) in the modes' frames.
        duration_s: t1 − t0, the operation's length (n_samples·dt_s for a pulse).
        t0_s: when the operation starts (the ``t0_s`` it was propagated with).
    Returns:
        ops of the same shape in the dressed basis.
    """
    om = as_operator_model(model)
    arr, single = _ops(om, ops, kind)
    for name, value in (("duration_s", duration_s), ("t0_s", t0_s)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name}={value!r} is out of range: allowed a finite time >= 0 s")
    w = dressed_states(om)

    def at(t: float) -> ComplexArray:
        m = om.frame_phases(om.frame_hz, t)
        return (m[:, None] * w) * np.conj(m)[None, :]

    w0, w1 = at(t0_s), at(t0_s + duration_s)
    if kind == "superoperator":
        w0 = np.kron(w0.conj(), w0).astype(np.complex128)
        w1 = np.kron(w1.conj(), w1).astype(np.complex128)
    out = np.einsum("ji,bjk,kl->bil", w1.conj(), arr, w0)
    return out[0] if single else out


__all__ = [
    "dressed_energies_hz",
    "dressed_states",
    "static_hamiltonian",
    "static_zz_hz",
    "to_dressed_basis",
]
