"""Multi-qubit readout: true level populations -> outcome probabilities of the measured qubits.

Each measured qubit's levels are lumped into n classes: n = 2 (two-state readout, the
default: |0⟩ reads as 0, |1⟩ and every higher level as 1, as a dispersive readout usually
classifies them) or n = 3 (three-state readout: |0⟩, |1⟩, and |2⟩ with anything above).
Outcomes of k measured qubits are the n^k strings, first qubit most significant, so a
two-state single qubit gives the (n0, n1) columns of the single-qubit device.

Errors, in this order of application:

- per qubit, an assignment matrix A (n × n), A[i, j] = P(read j | true class i);
- correlated readout crosstalk per ordered pair (source, target): while the source's true
  class is excited (>= 1) the target's read outcome 0 and 1 are swapped with probability
  ``flip`` (a state-dependent readout shift of the target's resonator, the dominant
  correlated error of frequency-multiplexed readout). Several sources act independently.

The joint readout matrix M (n^k × n^k, M[c, o] = P(outcome o | true classes c)) is
built exactly from these parts; without crosstalk it is the Kronecker product of the A.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ._validation import finite, require

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class QubitReadout:
    """One qubit's assignment matrix: ``assignment[i][j]`` = P(read j | true class i)."""

    assignment: tuple[tuple[float, ...], ...] = ((1.0, 0.0), (0.0, 1.0))

    def __post_init__(self) -> None:
        a = np.asarray(self.assignment, dtype=np.float64)
        require(a.ndim == 2 and a.shape[0] == a.shape[1] and a.shape[0] in (2, 3),
                "QubitReadout.assignment", self.assignment, "a 2×2 or 3×3 matrix")
        require(bool(np.all(np.isfinite(a))) and bool(np.all((a >= 0) & (a <= 1))),
                "QubitReadout.assignment", self.assignment, "probabilities in [0, 1]")
        require(bool(np.allclose(a.sum(axis=1), 1.0, atol=1e-9)), "QubitReadout.assignment",
                self.assignment, "rows summing to 1 (P(read j | class i) over j)")
        object.__setattr__(self, "assignment", tuple(tuple(float(x) for x in row) for row in a))

    @classmethod
    def two_state(cls, p1_given_0: float = 0.0, p0_given_1: float = 0.0) -> QubitReadout:
        for name, v in (("p1_given_0", p1_given_0), ("p0_given_1", p0_given_1)):
            require(0.0 <= finite(f"QubitReadout.{name}", v) < 0.5, f"QubitReadout.{name}", v, "[0, 0.5)")
        return cls(((1.0 - p1_given_0, p1_given_0), (p0_given_1, 1.0 - p0_given_1)))

    @property
    def classes(self) -> int:
        return len(self.assignment)

    @property
    def matrix(self) -> FloatArray:
        return np.asarray(self.assignment, dtype=np.float64)


@dataclass(frozen=True)
class ReadoutCrosstalk:
    """While ``source`` is excited, ``target``'s outcome 0 ↔ 1 is swapped with probability ``flip``."""

    source: str
    target: str
    flip: float

    def __post_init__(self) -> None:
        f = finite(f"ReadoutCrosstalk[{self.source}->{self.target}].flip", self.flip)
        require(0.0 <= f <= 0.5, f"ReadoutCrosstalk[{self.source}->{self.target}].flip", f, "[0, 0.5]")
        require(self.source != self.target, "ReadoutCrosstalk", (self.source, self.target), "two different qubits")


@dataclass(frozen=True)
class Readout:
    """A device's readout.

    Attributes:
        qubits: assignment per qubit name; a qubit not listed reads perfectly.
        crosstalk: correlated readout errors between pairs.
        three_state: 3 classes per qubit (3^k outcomes) instead of 2 (2^k); every listed
            assignment must then be 3 × 3, else 2 × 2.
    """

    qubits: Mapping[str, QubitReadout] = field(default_factory=dict)
    crosstalk: tuple[ReadoutCrosstalk, ...] = ()
    three_state: bool = False

    def __post_init__(self) -> None:
        n = self.classes
        for q, r in self.qubits.items():
            require(isinstance(r, QubitReadout), f"Readout.qubits[{q}]", r, "a QubitReadout")
            require(r.classes == n, f"Readout.qubits[{q}].assignment", r.assignment,
                    f"{n}×{n} (three_state={self.three_state})")
        object.__setattr__(self, "qubits", dict(self.qubits))
        object.__setattr__(self, "crosstalk", tuple(self.crosstalk))
        for x in self.crosstalk:
            require(isinstance(x, ReadoutCrosstalk), "Readout.crosstalk", x, "ReadoutCrosstalk")

    @property
    def classes(self) -> int:
        return 3 if self.three_state else 2

    def assignment(self, qubit: str) -> FloatArray:
        r = self.qubits.get(qubit)
        return np.eye(self.classes) if r is None else r.matrix

    def matrix(self, measured: Sequence[str]) -> FloatArray:
        """M (n^k, n^k): M[c, o] = P(outcome o | true classes c) of the measured qubits."""
        n, k = self.classes, len(measured)
        base = [self.assignment(q) for q in measured]
        pos = {q: i for i, q in enumerate(measured)}
        pairs = [(pos[x.source], pos[x.target], x.flip) for x in self.crosstalk
                 if x.source in pos and x.target in pos and x.flip > 0]
        if not pairs:
            prod: FloatArray = np.ones((1, 1))
            for a in base:
                prod = np.asarray(np.kron(prod, a), dtype=np.float64)
            return prod
        swap = np.eye(n)
        swap[[0, 1]] = swap[[1, 0]]
        out = np.empty((n ** k, n ** k))
        for c, classes in enumerate(itertools.product(range(n), repeat=k)):
            row = np.ones(1)
            for t in range(k):
                r = base[t][classes[t]]
                for s, tt, flip in pairs:
                    if tt == t and classes[s] >= 1:
                        r = (1.0 - flip) * r + flip * (r @ swap)
                row = np.kron(row, r)
            out[c] = row
        return out

    def outcome_probabilities(self, populations: FloatArray, dims: Sequence[int], positions: Sequence[int],
                              measured: Sequence[str]) -> FloatArray:
        """Level populations (B, D) of a model with mode sizes ``dims`` -> outcome
        probabilities (B, n^k) of the modes at ``positions`` (named ``measured``)."""
        classes = class_probabilities(populations, dims, positions, self.classes)
        # A device reads the same qubits call after call: each matrix is built once.
        cache: dict[tuple[str, ...], FloatArray] = self.__dict__.setdefault("_matrices", {})
        key = tuple(measured)
        m = cache.get(key)
        if m is None:
            m = cache[key] = self.matrix(key)
            m.setflags(write=False)
        p = classes @ m
        p = np.clip(p, 0.0, None)
        return p / p.sum(axis=1, keepdims=True)


def class_probabilities(populations: FloatArray, dims: Sequence[int], positions: Sequence[int], n: int) -> FloatArray:
    """(B, D) level populations -> (B, n^k) probabilities of the true classes of the modes
    at ``positions`` (levels >= n − 1 lumped into the last class), first most significant."""
    b = populations.shape[0]
    p = populations.reshape(b, *dims)
    others = tuple(1 + i for i in range(len(dims)) if i not in positions)
    marg = p.sum(axis=others) if others else p
    # sum() keeps the remaining axes in model order: put them in ``positions`` order.
    kept = sorted(positions)
    marg = np.moveaxis(marg, [1 + kept.index(q) for q in positions], list(range(1, 1 + len(positions))))
    for ax in range(1, 1 + len(positions)):
        head = np.take(marg, range(n - 1), axis=ax)
        tail = np.take(marg, range(n - 1, marg.shape[ax]), axis=ax).sum(axis=ax, keepdims=True)
        marg = np.concatenate([head, tail], axis=ax)
    return marg.reshape(b, -1)
