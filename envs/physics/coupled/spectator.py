"""Single-qubit errors in a coupled model: one qubit's reduced channel with a spectator
prepared in a given level (every other mode traced out after the operation), and its
fidelity to a single-qubit target with the spectator in |0⟩, in |1⟩ and their mean.
docs/two_qubit_metrics.md states the conventions.

The module is pure: arrays in, arrays out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .. import metrics as metrics_1q
from .controls import as_operator_model
from .metrics import ComplexArray, FloatArray, ModelArg, OpKind, _fidelity, _ops, _qubit_positions


@dataclass(frozen=True)
class SpectatorFidelity:
    """Single-qubit fidelity of one qubit's reduced operation, each (B,): with the spectator
    in |0⟩, in |1⟩, and their mean (the spectator maximally mixed on its qubit levels: the
    fidelity is linear in the channel)."""

    spectator_0: FloatArray
    spectator_1: FloatArray
    mean: FloatArray


def reduced_channel(model: ModelArg, ops: ArrayLike, *, kind: OpKind, qubit: str,
                    spectator: str | None = None, spectator_level: int = 0) -> ComplexArray:
    """Qubit ``qubit``'s channel when ``spectator`` starts in ``spectator_level`` and every
    other mode in 0, everything but ``qubit``'s mode traced out after the operation.

    Args:
        ops: (B, D, D) or (B, D², D²) (or one op).
    Returns:
        (B, d_k², d_k²) column-stacking superoperators on all d_k levels of the qubit's mode
        (a single-qubit channel ``envs.physics.metrics`` scores on its levels 0, 1).
    """
    om = as_operator_model(model)
    arr, single = _ops(om, ops, kind)
    names = [om.names[i] for i in _qubit_positions(om)]
    if qubit not in names:
        raise ValueError(f"qubit={qubit!r}: allowed one of {names}")
    k = om.names.index(qubit)
    levels = [0] * len(om.dims)
    if spectator is not None:
        if spectator not in om.names or spectator == qubit:
            raise ValueError(f"spectator={spectator!r}: allowed a mode of {list(om.names)} other than {qubit!r}")
        s = om.names.index(spectator)
        if not (0 <= spectator_level < om.dims[s]):
            raise ValueError(f"spectator_level={spectator_level!r}: allowed 0..{om.dims[s] - 1}")
        levels[s] = spectator_level
    dk = om.dims[k]
    dim = om.dimension
    inputs = []
    for j in range(dk):
        levels[k] = j
        inputs.append(int(np.ravel_multi_index(levels, om.dims)))
    b = arr.shape[0]
    out = np.empty((b, dk * dk, dk * dk), dtype=np.complex128)
    for j, a in enumerate(inputs):
        for jp, ap in enumerate(inputs):
            if kind == "unitary":
                rho = arr[:, :, a][:, :, None] * arr[:, :, ap].conj()[:, None, :]
            else:
                rho = arr[:, :, a + ap * dim].reshape(b, dim, dim).transpose(0, 2, 1)
            out[:, :, j + jp * dk] = _trace_out(rho, om.dims, k).transpose(0, 2, 1).reshape(b, -1)
    return out[0] if single else out


def _trace_out(rho: ComplexArray, dims: tuple[int, ...], keep: int) -> ComplexArray:
    """(B, D, D) -> (B, d_keep, d_keep): partial trace over every mode but ``keep``."""
    b = rho.shape[0]
    t = rho.reshape(b, *dims, *dims)
    m = len(dims)
    t = np.moveaxis(t, (1 + keep, 1 + m + keep), (1, 2))
    rest = math.prod(dims) // dims[keep]
    t = t.reshape(b, dims[keep], dims[keep], rest, rest)
    return np.einsum("bijrr->bij", t)


def spectator_fidelity(model: ModelArg, ops: ArrayLike, target: str | ArrayLike, *, kind: OpKind,
                       qubit: str, spectator: str | None = None,
                       virtual_z: bool = False) -> SpectatorFidelity:
    """Fidelity of ``qubit``'s reduced operation to a single-qubit target with its neighbour
    ``spectator`` in |0⟩ and in |1⟩ (other modes in 0), leakage-valid on the qubit's levels
    0, 1 as ``envs.physics.metrics.gate_fidelity`` scores a single transmon.

    Args:
        ops: (B, D, D) or (B, D², D²) (or one op).
        target: a single-qubit name ("X", "SX", "Y", "H", "I") or a 2×2 unitary.
        spectator: default the other qubit of a two-qubit model.
        virtual_z: apply one pair of Z phases on ``qubit`` (before and after), the same for
            both spectator states, chosen to maximise their mean: a frame update cannot
            depend on the neighbour's state, so what remains of the difference is the
            conditional (spectator) error.
    Returns:
        ``SpectatorFidelity`` with (B,) fields (0-d for one op).
    """
    om = as_operator_model(model)
    names = [om.names[i] for i in _qubit_positions(om)]
    if qubit not in names:
        raise ValueError(f"qubit={qubit!r}: allowed one of {names}")
    if spectator is None:
        others = [q for q in names if q != qubit]
        if len(others) != 1:
            raise ValueError(f"spectator=None needs a two-qubit model; pass spectator= one of {others}")
        spectator = others[0]
    v = metrics_1q.target_gate(target)
    chans = [np.asarray(reduced_channel(om, ops, kind=kind, qubit=qubit, spectator=spectator, spectator_level=lv))
             for lv in (0, 1)]
    single = chans[0].ndim == 2
    chans = [c[None] if single else c for c in chans]
    dk = om.dims[om.names.index(qubit)]
    comp = np.array([0, 1], dtype=np.intp)
    if virtual_z:
        # F is linear in the channel: the phases that maximise the mean are those of the
        # spectator-averaged channel; then both channels are scored at them.
        best = _fidelity(comp, dk, 0.5 * (chans[0] + chans[1]), "superoperator", v, True)
        z = np.ones((chans[0].shape[0], dk), dtype=np.complex128)
        zb, za = z.copy(), z.copy()
        za[:, 1] = np.exp(1j * best.phases_after[:, 0])
        zb[:, 1] = np.exp(1j * best.phases_before[:, 0])
        lift_a = np.einsum("bi,bj->bij", za.conj(), za).reshape(za.shape[0], -1)  # diag of Z̄⊗Z
        lift_b = np.einsum("bi,bj->bij", zb.conj(), zb).reshape(zb.shape[0], -1)
        chans = [lift_a[:, :, None] * c * lift_b[:, None, :] for c in chans]
    fids = [_fidelity(comp, dk, c, "superoperator", v, False).raw for c in chans]
    out = SpectatorFidelity(fids[0], fids[1], 0.5 * (fids[0] + fids[1]))
    if single:
        return SpectatorFidelity(out.spectator_0[0], out.spectator_1[0], out.mean[0])
    return out


__all__ = [
    "SpectatorFidelity",
    "reduced_channel",
    "spectator_fidelity",
]
