"""The two-qubit Clifford group (11,520 elements modulo phase), compiled to a device's natives.

Construction (Corcoles et al. 2013, Barends et al. 2014): with C1 the 24 single-qubit
Cliffords, S1 = {I, S, S²} the rotations by 2π/3 about (1, 1, 1) (X → Y → Z → X), and E an
entangler locally equivalent to CNOT (here CZ), every two-qubit Clifford is exactly one of

    single-qubit class   (C1 ⊗ C1)                                            576
    CNOT-like class      (C1 ⊗ C1) · E · (S1 ⊗ S1)                           5184
    iSWAP-like class     (C1 ⊗ C1) · E · (X/2 ⊗ X/2) · E · (S1 ⊗ S1)          5184
    SWAP-like class      (C1 ⊗ C1) · E · (H ⊗ H) · E · (H ⊗ H) · E · (I ⊗ H)  576

(matrix products: the rightmost layer acts first). ``clifford_group()`` builds the
11,520 unitaries from these words and checks that they are distinct modulo global phase,
so a wrong middle layer fails at build time rather than giving a short group.

Each element is a word of local layers (one single-qubit Clifford per qubit) and
entanglers. ``compile_clifford`` turns it into native operations: π and π/2 rotations
about XY axes (``rb.cliffords``: fewest plays per single-qubit Clifford), virtual Z
rotations, and the device's entangler, CZ (a flux pair) or ECR (a cross-resonance pair).
For ECR every CZ of the word is replaced by CZ = (A ⊗ B) · ECR · (C ⊗ D) up to phase, the
local Cliffords found once by a search and merged into the neighbouring layers, so an ECR
word has as many entanglers as the CZ word. ``NativeOp`` is device-independent; the
device sequences are built in ``envs.rb2q``.

Layering: envs only (numpy), no engine.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from ._validation import require
from .physics.coupled.metrics import TARGETS_2Q
from .rb import cliffords, rotation, rz

ComplexArray = NDArray[np.complex128]

Entangler = Literal["CZ", "ECR"]
ENTANGLERS: tuple[Entangler, ...] = ("CZ", "ECR")
GROUP_SIZE = 11520

# Local layer: the single-qubit Clifford indices (into ``rb.cliffords()``) of q0 and q1.
Layer = tuple[int, int]


@dataclass(frozen=True)
class NativeOp:
    """One native operation of a compiled Clifford.

    Attributes:
        kind: "x" (π rotation), "sx" (π/2 rotation), "z" (a virtual Z rotation, free) or
            "entangler" (the device's CZ or ECR on both qubits).
        qubit: 0 or 1 (the first qubit is the most significant); -1 for the entangler.
        angle: the rotation axis φ in the XY plane of "x"/"sx" (R(θ, φ) =
            exp(−iθ/2·(cos φ·X + sin φ·Y))) or the angle of "z" (Rz(a) = diag(e^{−ia/2},
            e^{ia/2})); 0 for the entangler.
    """

    kind: Literal["x", "sx", "z", "entangler"]
    qubit: int
    angle: float = 0.0


def _keys(u: ComplexArray) -> list[bytes]:
    """Hashable keys of unitaries (N, d, d) modulo global phase: each scaled so that its
    first entry of modulus > 1e-6 is real positive, rounded to 1e-6."""
    flat = np.asarray(u).reshape(len(u), -1)
    k = np.argmax(np.abs(flat) > 1e-6, axis=1)
    ph = flat[np.arange(len(flat)), k]
    v = flat * (np.abs(ph) / ph)[:, None]
    r = np.round(np.concatenate([v.real, v.imag], axis=1), 6) + 0.0  # + 0.0: no negative zeros
    return [row.tobytes() for row in r]


@functools.lru_cache(maxsize=1)
def _one_qubit() -> tuple[ComplexArray, NDArray[np.intp], dict[bytes, int]]:
    """(24, 2, 2) unitaries of ``rb.cliffords()``, their (24, 24) multiplication table
    (table[a, b] = index of C[a]·C[b]) and the key -> index map."""
    c1 = np.stack([c.unitary for c in cliffords()])
    index = {k: i for i, k in enumerate(_keys(c1))}
    prod = np.einsum("aij,bjk->abik", c1, c1).reshape(-1, 2, 2)
    table = np.array([index[k] for k in _keys(prod)], dtype=np.intp).reshape(24, 24)
    return c1, table, index


def _c1_index(u: ComplexArray) -> int:
    return _one_qubit()[2][_keys(np.asarray(u)[None])[0]]


def _local(layer: Layer) -> ComplexArray:
    c1 = _one_qubit()[0]
    return np.kron(c1[layer[0]], c1[layer[1]])


@dataclass(frozen=True)
class CliffordGroup:
    """The 11,520 two-qubit Cliffords (identity first).

    Attributes:
        unitaries: (11520, 4, 4) ideal unitaries (basis |q0 q1⟩, q0 most significant).
        words: per element, its local layers in time order, one more than its CZs
            (``len(words[i]) - 1`` entanglers between consecutive layers).
    """

    unitaries: ComplexArray
    words: tuple[tuple[Layer, ...], ...]
    _index: dict[bytes, int]

    def __len__(self) -> int:
        return len(self.words)

    def index(self, u: ComplexArray) -> int:
        """Index of a 4×4 unitary modulo global phase; ValueError if it is not a Clifford."""
        k = self._index.get(_keys(np.asarray(u, dtype=np.complex128)[None])[0])
        if k is None:
            raise ValueError("CliffordGroup.index: the unitary is not a two-qubit Clifford")
        return k

    def indices(self, u: ComplexArray) -> NDArray[np.intp]:
        """Indices of unitaries (N, 4, 4); ValueError if one is not a Clifford."""
        try:
            return np.array([self._index[k] for k in _keys(np.asarray(u, dtype=np.complex128))], dtype=np.intp)
        except KeyError:
            raise ValueError("CliffordGroup.indices: a unitary is not a two-qubit Clifford") from None

    def inverse(self, i: int) -> int:
        """Index of the inverse of element ``i``."""
        return self.index(self.unitaries[i].conj().T)

    def entanglers(self, i: int) -> int:
        """CZs (or ECRs) in element ``i``'s compiled form."""
        return len(self.words[i]) - 1


@functools.lru_cache(maxsize=1)
def clifford_group() -> CliffordGroup:
    """The group from the four classes of the module docstring, checked distinct."""
    s = _c1_index(_rot3())
    s1 = (0, s, _one_qubit()[1][s, s])
    h = _c1_index(np.array([[1, 1], [1, -1]], dtype=np.complex128) / math.sqrt(2))
    x2 = _c1_index(rotation(math.pi / 2, 0.0))
    locals_ = [(a, b) for a in range(24) for b in range(24)]
    tails = [(a, b) for a in s1 for b in s1]
    words: list[tuple[Layer, ...]] = [(ab,) for ab in locals_]
    words += [(t, ab) for t in tails for ab in locals_]
    words += [(t, (x2, x2), ab) for t in tails for ab in locals_]
    words += [((0, h), (h, h), (h, h), ab) for ab in locals_]
    cz = TARGETS_2Q["CZ"]
    k = np.stack([_local(ab) for ab in locals_])
    t = np.stack([_local(ab) for ab in tails])
    mid = cz @ _local((x2, x2)) @ cz
    swap = cz @ _local((h, h)) @ cz @ _local((h, h)) @ cz @ _local((0, h))
    units = np.concatenate([  # in the order of ``words``: the last layer varies fastest
        k, np.einsum("kij,jl,tlm->tkim", k, cz, t).reshape(-1, 4, 4),
        np.einsum("kij,jl,tlm->tkim", k, mid, t).reshape(-1, 4, 4), k @ swap])
    index: dict[bytes, int] = {}
    for n, key in enumerate(_keys(units)):
        index.setdefault(key, n)
    require(len(index) == GROUP_SIZE, "clifford_group", len(index), f"{GROUP_SIZE} distinct elements")
    return CliffordGroup(units, tuple(words), index)


def _rot3() -> ComplexArray:
    """The rotation by 2π/3 about (1, 1, 1)/√3: X → Y → Z → X."""
    c, s = math.cos(math.pi / 3), math.sin(math.pi / 3) / math.sqrt(3)
    x = np.array([[0, 1], [1, 0]], dtype=np.complex128)
    y = np.array([[0, -1j], [1j, 0]], dtype=np.complex128)
    z = np.diag([1.0, -1.0]).astype(np.complex128)
    return np.asarray(c * np.eye(2) - 1j * s * (x + y + z))


@functools.lru_cache(maxsize=1)
def _cz_from_ecr() -> tuple[Layer, Layer]:
    """(after, before): local layers with CZ = L_after · ECR · L_before up to phase."""
    cz, ecr = TARGETS_2Q["CZ"], TARGETS_2Q["ECR"]
    group = clifford_group()
    locals_ = {k: n for n, k in enumerate(_keys(group.unitaries[:576]))}
    for n in range(576):
        before = group.words[n][0]
        rest = cz @ (ecr @ _local(before)).conj().T
        m = locals_.get(_keys(rest[None])[0])
        if m is not None:
            return group.words[m][0], before
    raise AssertionError("ECR is not locally equivalent to CZ")  # pragma: no cover


def _mul(after: Layer, before: Layer) -> Layer:
    """The layer ``after`` · ``before`` (``before`` acts first)."""
    t = _one_qubit()[1]
    return int(t[after[0], before[0]]), int(t[after[1], before[1]])


def native_word(i: int, entangler: Entangler = "CZ") -> tuple[Layer, ...]:
    """Element ``i``'s local layers around its entanglers for ``entangler`` (CZ: the
    group's word; ECR: each CZ replaced by its local-ECR-local form, locals merged)."""
    require(entangler in ENTANGLERS, "entangler", entangler, f"one of {list(ENTANGLERS)}")
    w = clifford_group().words[i]
    if entangler == "CZ" or len(w) == 1:
        return w
    after, before = _cz_from_ecr()
    out = [_mul(before, w[0])]
    for layer in w[1:-1]:
        out.append(_mul(before, _mul(layer, after)))
    out.append(_mul(w[-1], after))
    return tuple(out)


def _layer_ops(layer: Layer) -> list[NativeOp]:
    """A local layer as plays and trailing virtual Zs: C = Rz(z)·Π R(θ_k, φ_k) per qubit
    (``rb.cliffords`` pushes each Clifford's Z rotations to its end)."""
    ops: list[NativeOp] = []
    cl = cliffords()
    for q in (0, 1):
        c = cl[layer[q]]
        ops += [NativeOp("x" if kind == "X" else "sx", q, float(phi)) for kind, phi in c.steps]
        if c.z % (2 * math.pi):
            ops.append(NativeOp("z", q, float(c.z)))
    return ops


@functools.lru_cache(maxsize=2)
def compiled_group(entangler: Entangler = "CZ") -> tuple[tuple[NativeOp, ...], ...]:
    """Every element's native operations in time order (``compile_clifford`` of each)."""
    out = []
    for i in range(GROUP_SIZE):
        word = native_word(i, entangler)
        ops = _layer_ops(word[0])
        for layer in word[1:]:
            ops.append(NativeOp("entangler", -1))
            ops += _layer_ops(layer)
        out.append(tuple(ops))
    return tuple(out)


def compile_clifford(i: int, entangler: Entangler = "CZ") -> tuple[NativeOp, ...]:
    """Element ``i`` as native operations in time order (``NativeOp``)."""
    require(isinstance(i, int | np.integer) and 0 <= int(i) < GROUP_SIZE, "i", i, f"an integer in [0, {GROUP_SIZE})")
    return compiled_group(entangler)[int(i)]


def ideal_unitary(ops: Sequence[NativeOp], entangler: Entangler = "CZ") -> ComplexArray:
    """The 4×4 unitary of native operations with ideal natives (``TARGETS_2Q`` entangler)."""
    require(entangler in ENTANGLERS, "entangler", entangler, f"one of {list(ENTANGLERS)}")
    e = TARGETS_2Q[entangler]
    u = np.eye(4, dtype=np.complex128)
    eye = np.eye(2, dtype=np.complex128)
    for op in ops:
        if op.kind == "entangler":
            u = e @ u
            continue
        g = rz(op.angle) if op.kind == "z" else rotation(math.pi if op.kind == "x" else math.pi / 2, op.angle)
        u = (np.kron(g, eye) if op.qubit == 0 else np.kron(eye, g)) @ u
    return u


def mean_natives(entangler: Entangler = "CZ") -> tuple[float, float]:
    """(entanglers, single-qubit plays) per Clifford, averaged over the group."""
    comp = compiled_group(entangler)
    ent = np.mean([sum(op.kind == "entangler" for op in ops) for ops in comp])
    plays = np.mean([sum(op.kind in ("x", "sx") for op in ops) for ops in comp])
    return float(ent), float(plays)


__all__ = ["ENTANGLERS", "GROUP_SIZE", "CliffordGroup", "Entangler", "NativeOp", "clifford_group",
           "compile_clifford", "compiled_group", "ideal_unitary", "mean_natives", "native_word"]
