"""Which qubits of a multi-qubit device are coupled: line, ring, square grid or edge list.

A ``CouplingMap`` names its qubits ``q0 … q{n−1}`` and lists undirected edges; it builds
the ``Coupling`` terms of a device's model (``couplings``, ``build_model``) and answers
which qubits neighbour a set of qubits (what ``SimulatedMultiQubitDevice`` holds as
spectators). Grid qubit (row r, column c) of a ``rows × cols`` grid is ``q{r·cols + c}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ._validation import finite, require
from .multi_qubit_model import DeviceModel
from .physics.coupled import Coupling, Crosstalk, Mode

Edge = tuple[str, str]


def qubit_name(i: int) -> str:
    return f"q{i}"


@dataclass(frozen=True)
class CouplingMap:
    """Qubits and the undirected edges between them.

    Attributes:
        qubits: qubit names in basis order.
        edges: pairs of coupled qubits, each once, in the order given.
        kind: how it was built (``line``, ``ring``, ``grid``, ``edges``), for descriptions.
    """

    qubits: tuple[str, ...]
    edges: tuple[Edge, ...]
    kind: str = "edges"

    def __post_init__(self) -> None:
        qs = tuple(self.qubits)
        require(len(qs) >= 1 and len(set(qs)) == len(qs), "CouplingMap.qubits", qs, "one or more distinct names")
        seen: set[frozenset[str]] = set()
        edges = []
        for e in self.edges:
            require(isinstance(e, tuple | list) and len(e) == 2, "CouplingMap.edges", e, "pairs (a, b)")
            a, b = e
            require(a in qs and b in qs, "CouplingMap.edges", e, f"pairs of qubits in {list(qs)}")
            require(a != b, "CouplingMap.edges", e, "two different qubits")
            key = frozenset((a, b))
            require(key not in seen, "CouplingMap.edges", e, "each pair at most once")
            seen.add(key)
            edges.append((a, b))
        object.__setattr__(self, "qubits", qs)
        object.__setattr__(self, "edges", tuple(edges))

    # -- constructors ---------------------------------------------------------------------

    @classmethod
    def line(cls, n: int) -> CouplingMap:
        """q0 – q1 – … – q{n−1}."""
        _check_count("n", n, 1)
        return cls(tuple(map(qubit_name, range(n))), tuple((qubit_name(i), qubit_name(i + 1)) for i in range(n - 1)),
                   "line")

    @classmethod
    def ring(cls, n: int) -> CouplingMap:
        """A line closed from q{n−1} back to q0 (n >= 3)."""
        _check_count("n", n, 3)
        q = tuple(map(qubit_name, range(n)))
        return cls(q, tuple((q[i], q[(i + 1) % n]) for i in range(n)), "ring")

    @classmethod
    def grid(cls, rows: int, cols: int) -> CouplingMap:
        """A square grid, nearest neighbours coupled: horizontal edges row by row, then vertical."""
        _check_count("rows", rows, 1)
        _check_count("cols", cols, 1)
        q = tuple(map(qubit_name, range(rows * cols)))
        horizontal = [(q[r * cols + c], q[r * cols + c + 1]) for r in range(rows) for c in range(cols - 1)]
        vertical = [(q[r * cols + c], q[(r + 1) * cols + c]) for r in range(rows - 1) for c in range(cols)]
        return cls(q, tuple(horizontal + vertical), "grid")

    @classmethod
    def from_edges(cls, edges: Iterable[Sequence[str]], qubits: Sequence[str] | None = None) -> CouplingMap:
        """An explicit edge list; ``qubits`` defaults to the names in the edges, sorted by number."""
        pairs = [tuple(e) for e in edges]
        if qubits is None:
            names = {x for e in pairs for x in e}
            qubits = sorted(names, key=lambda s: (len(s), s))
        return cls(tuple(qubits), tuple(pairs), "edges")  # type: ignore[arg-type]

    # -- queries --------------------------------------------------------------------------

    def neighbours(self, names: Iterable[str]) -> tuple[str, ...]:
        """Qubits coupled to any of ``names`` and not among them, in basis order."""
        inside = set(names)
        for n in inside:
            require(n in self.qubits, "qubit", n, f"one of {list(self.qubits)}")
        out = {b if a in inside else a for a, b in self.edges if (a in inside) != (b in inside)}
        return tuple(q for q in self.qubits if q in out)

    def couplings(self, j_hz: float | Mapping[Edge, float]) -> tuple[Coupling, ...]:
        """One ``Coupling`` per edge: ``j_hz`` the same for all, or per edge (either order)."""
        out = []
        for a, b in self.edges:
            if isinstance(j_hz, Mapping):
                j = j_hz.get((a, b), j_hz.get((b, a)))  # type: ignore[call-overload]
                require(j is not None, "j_hz", (a, b), "a value for every edge of the map")
            else:
                j = j_hz
            out.append(Coupling(a, b, finite(f"j_hz[{a},{b}]", j)))
        return tuple(out)

    def build_model(self, modes: Sequence[Mode], j_hz: float | Mapping[Edge, float],
                    crosstalk: Sequence[Crosstalk] = (), dt_s: float = 1e-9) -> DeviceModel:
        """The ``DeviceModel`` of ``modes`` (one per qubit, named as the map's qubits) coupled
        along the edges (``DeviceModel.restrict`` cuts simulable ``CoupledModel``s out of it)."""
        names = tuple(m.name for m in modes)
        require(names == self.qubits, "modes", names, f"one Mode per qubit, in order {list(self.qubits)}")
        return DeviceModel(tuple(modes), self.couplings(j_hz), tuple(crosstalk), dt_s)


def _check_count(name: str, value: object, low: int) -> None:
    require(isinstance(value, int) and not isinstance(value, bool) and low <= value <= 1024,
            name, value, f"an integer in [{low}, 1024]")
