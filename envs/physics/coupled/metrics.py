"""Metrics of multi-qubit operations on the 2^n computational subspace, valid with leakage.

What the two-qubit calibration work scores and reports: gate fidelity to a target
(optionally after the best local virtual-Z phases), leakage and seepage, the conditional
phase and the |11⟩ swap/leak populations of a CZ, the coherence limit of a gate of
duration T (the static spectrum, ZZ rate and dressed basis are in ``spectrum``;
single-qubit fidelities with a spectator in ``spectator``). docs/two_qubit_metrics.md
states every definition and convention; in short:

- Operations are what the coupled engines return: (B, D, D) unitaries or (B, D², D²)
  column-stacking superoperators (vec(KρK†) = (K̄⊗K)·vec ρ), in the modes' own frames and
  in the bare product basis (mode 0 most significant).
- The computational subspace is ``OperatorModel.computational_indices()``: qubits in their
  two qubit levels, couplers in 0, ordered as a binary number with the first qubit most
  significant. Every other basis state is the leakage subspace.
- Average gate fidelity of a (possibly leaky) operation with Kraus operators K_k, block
  M_k = P·K_k·P on the d = 2^n computational states, to a d×d unitary V:

      F = ( Σ_k Tr(M_k†M_k) + Σ_k |Tr(V†M_k)|² ) / ( d(d+1) ),

  read off a superoperator without a Kraus decomposition (Σ_k M_k,ij·M*_k,i'j' is the entry
  S[i + i'D, j + j'D]). Equal to (d·F_pro + 1 − L1)/(d + 1) (Wood & Gambetta 2018).

The module is pure: arrays in, arrays out; it needs the model only for dimensions and
indices.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.linalg import expm

from ..metrics import op_batch
from .controls import as_operator_model
from .model import TWO_PI, CoupledModel
from .operators import OperatorModel
from .reference import idle_superoperator

OpKind = Literal["unitary", "superoperator"]
ModelArg = CoupledModel | OperatorModel
ComplexArray = NDArray[np.complex128]
FloatArray = NDArray[np.float64]

_S2 = 1.0 / math.sqrt(2.0)
_I2 = np.eye(2, dtype=np.complex128)
_X = np.array([[0, 1], [1, 0]], dtype=np.complex128)
_Y = np.array([[0, -1j], [1j, 0]], dtype=np.complex128)
_Z = np.diag([1.0, -1.0]).astype(np.complex128)

#: Named two-qubit targets, first qubit (the control of CX, ECR, ZX90) most significant.
TARGETS_2Q: dict[str, ComplexArray] = {
    "CZ": np.diag([1, 1, 1, -1]).astype(np.complex128),
    "CX": np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=np.complex128),
    # Qiskit's ECRGate with q0 the control, written with q0 most significant:
    # RZX(−π/4)·(X⊗I)·RZX(π/4) = (X⊗I − Y⊗X)/√2.
    "ECR": (_S2 * (np.kron(_X, _I2) - np.kron(_Y, _X))).astype(np.complex128),
    "ISWAP": np.array([[1, 0, 0, 0], [0, 0, 1j, 0], [0, 1j, 0, 0], [0, 0, 0, 1]], dtype=np.complex128),
    "SQRT_ISWAP": np.array([[1, 0, 0, 0], [0, _S2, 1j * _S2, 0], [0, 1j * _S2, _S2, 0], [0, 0, 0, 1]],
                           dtype=np.complex128),
    # exp(−iπ/4·Z⊗X) = (I − i·Z⊗X)/√2: the cross-resonance gate's native rotation.
    "ZX90": (_S2 * (np.eye(4) - 1j * np.kron(_Z, _X))).astype(np.complex128),
}
TARGETS_2Q["CNOT"] = TARGETS_2Q["CX"]


def target_unitary(target: str | ArrayLike, n_qubits: int = 2) -> ComplexArray:
    """A 2^n×2^n target: a name in ``TARGETS_2Q`` (n = 2), "I" (any n) or a matrix, checked unitary."""
    d = 2 ** n_qubits
    if isinstance(target, str):
        name = target.upper()
        if name == "I":
            return np.eye(d, dtype=np.complex128)
        if name not in TARGETS_2Q:
            raise ValueError(f"target={target!r} is unknown: allowed {[*sorted(TARGETS_2Q), 'I']} "
                             "or a unitary matrix")
        if n_qubits != 2:
            raise ValueError(f"target={target!r} is a two-qubit gate but the model has {n_qubits} "
                             f"qubits: pass a {d}×{d} unitary instead")
        return TARGETS_2Q[name].copy()
    v = np.asarray(target, dtype=np.complex128)
    if v.shape != (d, d):
        raise ValueError(f"target has shape {v.shape}: allowed ({d}, {d}) for {n_qubits} qubits")
    if not np.all(np.isfinite(v)) or not np.allclose(v.conj().T @ v, np.eye(d), atol=1e-10):
        raise ValueError("target is not unitary (V†V ≠ I within 1e-10)")
    return v


# -- input handling ------------------------------------------------------------------------


def _ops(om: OperatorModel, ops: ArrayLike, kind: OpKind) -> tuple[ComplexArray, bool]:
    """(B, D, D) or (B, D², D²) complex, and whether a single op was given."""
    arr, single = op_batch(ops, kind)
    d = om.dimension
    want = d if kind == "unitary" else d * d
    if arr.ndim != 3 or arr.shape[1:] != (want, want):
        raise ValueError(f"ops has shape {np.shape(ops)}: allowed (B, {want}, {want}) or ({want}, {want}) "
                         f"for kind={kind!r} on a model of dimension {d}")
    return arr, single


def _qubit_positions(om: OperatorModel) -> list[int]:
    return [i for i, q in enumerate(om.qubit_levels) if q is not None]


def _n_qubits(om: OperatorModel) -> int:
    n = len(_qubit_positions(om))
    if n == 0:
        raise ValueError("the model has no qubit modes (every mode has qubit_levels None)")
    return n


def _block_moments(comp: NDArray[np.intp], dim: int, arr: ComplexArray, kind: OpKind
                   ) -> tuple[FloatArray, ComplexArray]:
    """Purity term Σ_k Tr(M_k†M_k) (B,) and T[b, i, i', j, j'] = Σ_k M_k,ij·M*_k,i'j'
    (B, d, d, d, d) of the block on basis states ``comp`` of a dimension-``dim`` space."""
    if kind == "unitary":
        m = arr[:, comp[:, None], comp[None, :]]
        t = np.einsum("bij,bkl->bikjl", m, m.conj())
    else:
        rows = comp[:, None] + dim * comp[None, :]  # (i, i') -> i + i'·D
        t = arr[:, rows[:, :, None, None], rows[None, None, :, :]]
    d = comp.size
    purity = np.einsum("biijj->b", t).real
    return purity, t.reshape(arr.shape[0], d, d, d, d)


# -- gate fidelity -------------------------------------------------------------------------


@dataclass(frozen=True)
class GateFidelity:
    """Result of ``gate_fidelity``.

    Attributes:
        fidelity: (B,) average gate fidelity, after the virtual-Z phases when they were
            optimised, else equal to ``raw``.
        raw: (B,) the fidelity with no phase correction.
        phases_before: (B, n) angles b_q (rad, wrapped to (−π, π]) of the local Z applied
            before the operation; zeros when not optimised.
        phases_after: (B, n) angles a_q applied after it. The corrected operation is
            Z(a)·U·Z(b) with Z(φ) = ⊗_q diag(1, e^{iφ_q}) on the qubits' levels 0, 1.
    """

    fidelity: FloatArray
    raw: FloatArray
    phases_before: FloatArray
    phases_after: FloatArray


def gate_fidelity(
    model: ModelArg, ops: ArrayLike, target: str | ArrayLike, *, kind: OpKind, virtual_z: bool = False,
) -> GateFidelity:
    """Average gate fidelity on the computational subspace, valid with leakage.

    Args:
        model: the model ``ops`` were propagated with (for its dimensions and qubits).
        ops: (B, D, D) unitaries (``kind="unitary"``) or (B, D², D²) column-stacking
            superoperators (``kind="superoperator"``), in the modes' frames; one op without
            the batch axis gives 0-d fidelities and (n,) phases.
        target: a name in ``TARGETS_2Q`` ("CZ", "CX"/"CNOT", "ECR", "ISWAP", "SQRT_ISWAP",
            "ZX90"), "I", or any 2^n×2^n unitary (checked).
        kind: what ``ops`` holds; explicit, as in the single-qubit metrics, and checked
            against the shape ((D, D) or (D², D²) for the model's dimension D).
        virtual_z: maximise F over local Z phases before and after each qubit (2n angles).
    Returns:
        ``GateFidelity`` (fidelity, raw, phases_before, phases_after).

    The phase search: F(θ) = const + Re Σ_p C_p·e^{i p·θ} with p ∈ {−1, 0, 1}^{2n}, a
    trigonometric polynomial of degree one in each angle, so each angle alone has a
    closed-form maximiser (θ_m = −arg of its e^{iθ_m} coefficient). Exact coordinate
    ascent runs from the uncorrected point and from seven seeded random starts; Newton
    steps on the non-degenerate directions then finish the best of them. Deterministic,
    never below ``raw`` (the uncorrected point is a start and every step is an ascent).
    """
    om = as_operator_model(model)
    arr, single = _ops(om, ops, kind)
    n = _n_qubits(om)
    out = _fidelity(om.computational_indices(), om.dimension, arr, kind, target_unitary(target, n), virtual_z)
    if single:
        return GateFidelity(out.fidelity[0], out.raw[0], out.phases_before[0], out.phases_after[0])
    return out


def _fidelity(comp: NDArray[np.intp], dim: int, arr: ComplexArray, kind: OpKind, v: ComplexArray,
              virtual_z: bool) -> GateFidelity:
    """``gate_fidelity`` on the 2^n basis states ``comp`` of a dimension-``dim`` space, batched."""
    d = comp.size
    n = d.bit_length() - 1
    purity, t = _block_moments(comp, dim, arr, kind)
    # W[i, j, i', j'] = V*_ij·V_i'j'·T[i, i', j, j']: Σ_k |Tr(V†M_k)|² = Re Σ W.
    w = np.einsum("ij,kl,bikjl->bijkl", v.conj(), v, t)
    raw = (purity + w.reshape(w.shape[0], -1).sum(axis=1).real) / (d * (d + 1))
    b = arr.shape[0]
    before = np.zeros((b, n))
    after = np.zeros((b, n))
    fid = raw.copy()
    if virtual_z:
        coef = _phase_coefficients(w, n)
        best_val, theta = _maximise_phases(coef, n)
        fid = np.maximum((purity + best_val) / (d * (d + 1)), raw)
        after = _wrap(theta[:, :n])
        before = _wrap(theta[:, n:])
    return GateFidelity(fid, raw, before, after)


def _wrap(x: FloatArray) -> FloatArray:
    out = np.angle(np.exp(1j * x))
    return np.where(out <= -math.pi, out + TWO_PI, out)


def _bits(n: int) -> NDArray[np.int64]:
    """(2^n, n): bits of each computational index, first qubit most significant."""
    return np.array([[(i >> (n - 1 - q)) & 1 for q in range(n)] for i in range(2 ** n)], dtype=np.int64)


def _phase_coefficients(w: ComplexArray, n: int) -> ComplexArray:
    """C (B, 3^{2n}): W summed by pattern p = (x_i − x_i', x_j − x_j') ∈ {−1, 0, 1}^{2n}.

    Z(a)·M·Z(b) multiplies M_ij by e^{i(a·x_i + b·x_j)}, so the term W[i, j, i', j'] picks up
    e^{i(a·(x_i − x_i') + b·(x_j − x_j'))}. Pattern index Σ_m (p_m + 1)·3^m.
    """
    bits = _bits(n)
    d = 2 ** n
    i, j, ip, jp = (g.ravel() for g in np.meshgrid(*[np.arange(d)] * 4, indexing="ij"))
    pat = np.concatenate([bits[i] - bits[ip], bits[j] - bits[jp]], axis=1)  # (d^4, 2n)
    index = (pat + 1) @ (3 ** np.arange(2 * n))
    coef = np.zeros((3 ** (2 * n), w.shape[0]), dtype=np.complex128)
    np.add.at(coef, index, w.reshape(w.shape[0], -1).T)
    return coef.T


def _patterns(n: int) -> FloatArray:
    """(3^{2n}, 2n): the pattern p of each coefficient index."""
    m = 2 * n
    return np.array([[(k // 3 ** q) % 3 - 1 for q in range(m)] for k in range(3 ** m)], dtype=np.float64)


# Up to this batch the coordinate ascent contracts pairwise (``_contraction_specs``); above
# it one planned many-operand einsum per angle (``_paths``), whose planning then costs less
# than numpy's generic two-operand loops on the larger operands (at batch 1 pairwise took
# 6.5 ms a search against 11.9 ms, at batch 16 20.3 against 18.1 ms).
_PAIRWISE_BATCH = 4
_PATHS: dict[tuple[int, int, int], dict[int, tuple[str, list[Any]]]] = {}


def _paths(tensor: ComplexArray, m: int, n_starts: int) -> dict[int, tuple[str, list[Any]]]:
    """Per angle q: the many-operand einsum of ``_maximise_phases`` and its contraction
    path, searched once per shape."""
    bsz = tensor.shape[0]
    paths = _PATHS.get((m, bsz, n_starts))
    if paths is None:
        letters = "acdefghijklmnopq"[:m]
        paths = {}
        for q in range(m):
            spec = "b" + letters + "," + ",".join("bs" + letters[r] for r in range(m) if r != q) + "->bs" + letters[q]
            shapes = [tensor] + [np.empty((bsz, n_starts, 3), dtype=np.complex128)] * (m - 1)
            paths[q] = (spec, np.einsum_path(spec, *shapes, optimize="optimal")[0])
        if len(_PATHS) < 64:
            _PATHS[(m, bsz, n_starts)] = paths
    return paths


@functools.cache
def _contraction_specs(m: int) -> tuple[tuple[tuple[int, str], ...], ...]:
    """Per angle q of ``_maximise_phases``: the (angle r, two-operand einsum) steps that
    contract the (B, 3, …, 3) coefficient tensor with every other angle's phase vector
    (B, S, 3), leaving (B, S, 3) on axis q."""
    letters = "acdefghijklmnopq"[:m]
    out = []
    for q in range(m):
        remaining = list(range(m))
        prefix = "b"
        chain = []
        for r in (k for k in range(m) if k != q):
            src = prefix + "".join(letters[k] for k in remaining)
            remaining.remove(r)
            chain.append((r, f"{src},bs{letters[r]}->bs" + "".join(letters[k] for k in remaining)))
            prefix = "bs"
        out.append(tuple(chain))
    return tuple(out)


def _maximise_phases(coef: ComplexArray, n: int, n_random: int = 7, sweeps: int = 40,
                     newton: int = 8) -> tuple[FloatArray, FloatArray]:
    """max over θ ∈ R^{2n} of f(θ) = Re Σ_p C_p·e^{i p·θ}: (B,) values and (B, 2n) maximisers."""
    pats = _patterns(n)  # (P, m)
    m = 2 * n
    bsz = coef.shape[0]
    rng = np.random.default_rng(20181)
    starts = np.concatenate([np.zeros((1, m)), rng.uniform(0.0, TWO_PI, (n_random, m))])
    theta = np.broadcast_to(starts[None], (bsz, starts.shape[0], m)).copy()  # (B, S, m)
    c = coef[:, None, :]  # (B, 1, P)

    def value(th: FloatArray) -> FloatArray:
        return np.sum(c * np.exp(1j * (th @ pats.T)), axis=-1).real

    # Exact coordinate ascent: f = F0 + Re(G·e^{iθ_q}) in angle q alone, maximal at −arg G.
    # G comes from contracting C, as a (3, …, 3) tensor (axis q holds p_q + 1), with the
    # phase vectors e^{i·(−1, 0, 1)·θ_r} of every other angle r.
    tensor = coef.reshape(bsz, *[3] * m).transpose(0, *range(m, 0, -1))
    specs = _contraction_specs(m)
    paths = None if bsz <= _PAIRWISE_BATCH else _paths(tensor, m, theta.shape[1])
    steps = np.array([-1.0, 0.0, 1.0])
    # Each angle's phase vector, renewed when that angle moves (not once per use).
    phase_vecs = [np.exp(1j * theta[..., r, None] * steps) for r in range(m)]
    for _ in range(sweeps):
        previous = theta.copy()
        for q in range(m):
            # Small batches (an env scores one gate): one angle contracted at a time, two
            # operands per einsum, which numpy runs directly; a many-operand einsum
            # re-checks its path on every call, and that was most of an env's truth.
            if paths is None:
                gq = tensor
                for r, spec in specs[q]:
                    gq = np.einsum(spec, gq, phase_vecs[r])  # ends (B, S, 3): p_q = −1, 0, +1
            else:
                spec, path = paths[q]
                gq = np.einsum(spec, tensor, *[phase_vecs[r] for r in range(m) if r != q], optimize=path)
            g = gq[..., 2] + np.conj(gq[..., 0])
            theta[..., q] = np.where(np.abs(g) > 0, -np.angle(g), theta[..., q])
            phase_vecs[q] = np.exp(1j * theta[..., q, None] * steps)
        if np.max(np.abs(np.angle(np.exp(1j * (theta - previous))))) < 1e-13:
            break
    # Newton on the best start, on the curved directions only: the Hessian is singular
    # along ridges (a CZ target's F depends on a + b only), where coordinate ascent has
    # already converged; across a valley it converges only linearly, which Newton finishes.
    val = value(theta)
    rows = np.arange(bsz)
    pick = np.argmax(val, axis=1)
    theta, val = theta[rows, pick][:, None], val[rows, pick][:, None]
    for _ in range(newton):
        ph = c * np.exp(1j * (theta @ pats.T))
        grad = np.einsum("bsp,pm->bsm", 1j * ph, pats).real
        hess = -np.einsum("bsp,pm,pn->bsmn", ph, pats, pats).real
        lam, vec = np.linalg.eigh(hess)
        scale = np.maximum(np.abs(lam).max(axis=-1, keepdims=True), 1e-300)
        keep = lam < -1e-9 * scale
        proj = np.einsum("bsmk,bsm->bsk", vec, grad)
        step = -np.einsum("bsmk,bsk->bsm", vec, np.where(keep, proj / np.where(keep, lam, 1.0), 0.0))
        small = np.max(np.abs(step), axis=-1, keepdims=True) < 0.2
        trial = theta + np.where(small, step, 0.0)
        new = value(trial)
        better = new >= val
        theta = np.where(better[..., None], trial, theta)
        val = np.where(better, new, val)
    return val[:, 0], theta[:, 0]


# -- leakage and seepage -------------------------------------------------------------------


def _populations(om: OperatorModel, arr: ComplexArray, kind: OpKind) -> FloatArray:
    """P[b, k, j] = population of basis state k after basis state j, (B, D, D)."""
    if kind == "unitary":
        return np.abs(arr) ** 2
    dim = om.dimension
    diag = np.arange(dim) * (dim + 1)
    return arr[:, diag[:, None], diag[None, :]].real


def _subspaces(model: ModelArg, ops: ArrayLike, kind: OpKind
               ) -> tuple[OperatorModel, ComplexArray, bool, NDArray[np.intp], NDArray[np.intp]]:
    """The model, the ops as a batch (and whether one op was given), and the basis indices
    of the computational subspace and of the rest (the leakage subspace)."""
    om = as_operator_model(model)
    arr, single = _ops(om, ops, kind)
    comp = om.computational_indices()
    return om, arr, single, comp, np.setdiff1d(np.arange(om.dimension), comp)


def leakage(model: ModelArg, ops: ArrayLike, *, kind: OpKind) -> FloatArray:
    """Leakage L1 = Tr[P_L·E(P_C/d_C)] (Wood & Gambetta 2018): the population that leaves the
    computational subspace C for the rest L, from the maximally mixed computational state.

    Args:
        ops: (B, D, D) unitaries or (B, D², D²) superoperators (or one op).
    Returns:
        (B,) (0-d for one op).
    """
    om, arr, single, comp, leak = _subspaces(model, ops, kind)
    p = _populations(om, arr, kind)
    out = p[:, leak[:, None], comp[None, :]].sum(axis=(1, 2)) / comp.size
    return out[0] if single else out


def seepage(model: ModelArg, ops: ArrayLike, *, kind: OpKind) -> FloatArray:
    """Seepage L2 = Tr[P_C·E(P_L/d_L)] (Wood & Gambetta 2018): the population that returns to
    the computational subspace from the maximally mixed leakage state; 0 when there is no
    leakage subspace. For a unitary d_C·L1 = d_L·L2. Arguments and shapes as ``leakage``.
    """
    om, arr, single, comp, leak = _subspaces(model, ops, kind)
    if leak.size == 0:
        out = np.zeros(arr.shape[0])
    else:
        p = _populations(om, arr, kind)
        out = p[:, comp[:, None], leak[None, :]].sum(axis=(1, 2)) / leak.size
    return out[0] if single else out


# -- conditional phase and |11⟩ populations ------------------------------------------------


def _pair_indices(om: OperatorModel, qubits: Sequence[str] | None) -> tuple[int, int, dict[str, int]]:
    """Mode positions of the pair and the basis index of |l0 l1⟩ (others in 0) by label."""
    names = [om.names[i] for i in _qubit_positions(om)]
    if qubits is None:
        if len(names) != 2:
            raise ValueError(f"qubits=None needs a two-qubit model; this one has qubits {names}: "
                             "pass qubits=(control, target)")
        qubits = names
    qubits = tuple(qubits)
    if len(qubits) != 2 or qubits[0] == qubits[1] or any(q not in names for q in qubits):
        raise ValueError(f"qubits={qubits!r}: allowed two different qubits of {names}")
    p0, p1 = om.names.index(qubits[0]), om.names.index(qubits[1])
    idx: dict[str, int] = {}
    for l0 in range(3):
        for l1 in range(3):
            if l0 >= om.dims[p0] or l1 >= om.dims[p1]:
                continue
            levels = [0] * len(om.dims)
            levels[p0], levels[p1] = l0, l1
            idx[f"{l0}{l1}"] = int(np.ravel_multi_index(levels, om.dims))
    return p0, p1, idx


def conditional_phase(model: ModelArg, ops: ArrayLike, *, kind: OpKind,
                      qubits: Sequence[str] | None = None) -> FloatArray:
    """φ = arg U_11,11 − arg U_10,10 − arg U_01,01 + arg U_00,00 (rad, wrapped to (−π, π]).

    In the modes' frames and the bare basis; the other modes (other qubits, couplers) in 0.
    For a superoperator the same combination is read from the coherences E(|c⟩⟨00|)_{c,00}
    = Σ_k K_cc·K*_00,00, whose arguments are arg U_cc − arg U_00 for a unitary. Local Z
    phases cancel in φ, so it is the phase a CZ must reach (π).

    Args:
        ops: (B, D, D) or (B, D², D²) (or one op).
        qubits: the pair (first, second); default the model's two qubits.
    Returns:
        (B,) (0-d for one op).
    """
    om = as_operator_model(model)
    arr, single = _ops(om, ops, kind)
    _, _, idx = _pair_indices(om, qubits)
    if kind == "unitary":
        diag = {k: arr[:, idx[k], idx[k]] for k in ("00", "01", "10", "11")}
        z = diag["11"] * np.conj(diag["10"]) * np.conj(diag["01"]) * diag["00"]
    else:
        dim = om.dimension
        ref = idx["00"]
        coh = {k: arr[:, idx[k] + ref * dim, idx[k] + ref * dim] for k in ("00", "01", "10", "11")}
        z = coh["11"] * np.conj(coh["10"]) * np.conj(coh["01"]) * coh["00"]
    out = _wrap(np.angle(z))
    return out[0] if single else out


@dataclass(frozen=True)
class ElevenPopulations:
    """Where |11⟩ goes: populations of |11⟩, |20⟩, |02⟩ and |01⟩ + |10⟩ after the operation,
    each (B,); |20⟩ (|02⟩) is 0 when the first (second) mode has only two levels."""

    p11: FloatArray
    p20: FloatArray
    p02: FloatArray
    p_single: FloatArray


def eleven_populations(model: ModelArg, ops: ArrayLike, *, kind: OpKind,
                       qubits: Sequence[str] | None = None) -> ElevenPopulations:
    """Populations after starting in |11⟩ (others in 0): kept, swapped to |20⟩ / |02⟩ (the
    CZ's leakage through the |11⟩↔|20⟩ and |11⟩↔|02⟩ crossings), or lost to one excitation.

    Args:
        ops: (B, D, D) or (B, D², D²) (or one op).
    """
    om = as_operator_model(model)
    arr, single = _ops(om, ops, kind)
    _, _, idx = _pair_indices(om, qubits)
    p = _populations(om, arr, kind)[:, :, idx["11"]]
    zero = np.zeros(arr.shape[0])

    def pop(label: str) -> FloatArray:
        return p[:, idx[label]] if label in idx else zero

    out = [pop("11"), pop("20"), pop("02"), pop("01") + pop("10")]
    if single:
        out = [x[0] for x in out]
    return ElevenPopulations(*out)


# -- coherence limit -----------------------------------------------------------------------


def coherence_limit(model: ModelArg, duration_s: float | ArrayLike, *, coherent_idle: bool = False) -> FloatArray:
    """Exact coherence-limited average infidelity 1 − F of an n-qubit gate of duration T.

    Default: the channel e^{T·𝒟} of the model's dissipator alone, scored against the
    identity on the computational subspace. This is an ideal controller that undoes every
    coherent evolution, so what is left is every mode's own T1 decay, thermal excitation
    (|0⟩→|1⟩ and |1⟩→|2⟩, which leaks) and per-transition dephasing, exactly, on all
    levels, including the couplers' thermal excitation out of |0⟩. Not included: any effect
    of the couplings or the drives: the collapse operators act on bare modes, so exchange
    does not hybridise them into dressed decay channels and no ZZ or Purcell-like
    transfer enters.

    ``coherent_idle=True``: the idle channel itself (``reference.idle_superoperator``: the
    static Hamiltonian with its couplings and anharmonicity, in the modes' frames, with the
    same decoherence), scored after the best local virtual-Z phases. That adds what free
    evolution does coherently and frame updates cannot undo (static ZZ, exchange between
    near-resonant modes, hybridisation), so it is the floor of an idle, not of a gate.

    Args:
        duration_s: T (s), scalar or (K,).
    Returns:
        (K,) infidelities, 0-d for a scalar T.
    """
    om = as_operator_model(model)
    times = np.atleast_1d(np.asarray(duration_s, dtype=np.float64))
    if times.ndim != 1 or not np.all(np.isfinite(times)) or np.any(times < 0):
        raise ValueError(f"duration_s={duration_s!r} is out of range: allowed finite times >= 0 s")
    ident = "I"
    out = np.empty(times.size)
    for k, t in enumerate(times):
        if coherent_idle:
            s = idle_superoperator(om, float(t))
        else:
            s = expm(float(t) * om.dissipator())
        out[k] = 1.0 - float(gate_fidelity(om, s, ident, kind="superoperator", virtual_z=coherent_idle).fidelity)
    return out[0] if np.ndim(duration_s) == 0 else out


def coherence_limit_product(duration_s: float | ArrayLike, t1_s: Sequence[float],
                            t2_s: Sequence[float]) -> FloatArray:
    """Closed-form coherence limit 1 − F of n independent two-level qubits.

    Each qubit's channel is amplitude damping with dephasing: its computational block keeps
    the trace (u_q = Σ_k Tr M_k†M_k = 2) and has o_q = Σ_k |Tr M_k|² = 1 + e^{−T/T1} +
    2·e^{−T/T2} (populations e^{−T/T1} and coherences e^{−T/T2}; a thermal population p
    moves weight between the two diagonal terms without changing their sum). For a product
    channel both sums factorise, so with d = 2^n

        F = ( 2^n + Π_q (1 + e^{−T/T1,q} + 2·e^{−T/T2,q}) ) / ( d(d+1) );

    n = 1 is the single-qubit 1/2 − e^{−T/T1}/6 − e^{−T/T2}/3. Exact for two-level modes;
    with more levels it omits leakage by thermal excitation of |1⟩ (``coherence_limit``
    has it).

    Args:
        duration_s: T (s), scalar or (K,).
        t1_s, t2_s: per-qubit T1 and T2 (s), length n each.
    Returns:
        (K,) infidelities, 0-d for a scalar T.
    """
    t = np.asarray(duration_s, dtype=np.float64)
    t1 = np.asarray(t1_s, dtype=np.float64)
    t2 = np.asarray(t2_s, dtype=np.float64)
    if t1.ndim != 1 or t1.shape != t2.shape or t1.size == 0:
        raise ValueError(f"t1_s, t2_s have shapes {t1.shape}, {t2.shape}: allowed two (n,) sequences, n >= 1")
    if np.any(t < 0) or not np.all(np.isfinite(t)) or np.any(t1 <= 0) or np.any(t2 <= 0) or np.any(t2 > 2 * t1):
        raise ValueError("coherence_limit_product: allowed duration_s >= 0, t1_s > 0 and 0 < t2_s <= 2·t1_s")
    d = 2 ** t1.size
    tt = t[..., None]
    o = np.prod(1.0 + np.exp(-tt / t1) + 2.0 * np.exp(-tt / t2), axis=-1)
    return 1.0 - (d + o) / (d * (d + 1))


__all__ = [
    "TARGETS_2Q",
    "ElevenPopulations",
    "GateFidelity",
    "coherence_limit",
    "coherence_limit_product",
    "conditional_phase",
    "eleven_populations",
    "gate_fidelity",
    "leakage",
    "seepage",
    "target_unitary",
]
