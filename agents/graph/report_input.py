"""The report's input: the run's nodes, the device layout, a maintenance timeline and the
figures of merit, validated on construction (``agents.graph.report`` draws and writes it).

Every bad field raises a ValueError naming the field, the value and what is allowed, so a
report builder finds its mistake before anything is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .experiment import ExperimentResult
from .report_maintenance import MaintenanceTimeline

NodeState = Literal["done", "failed", "blocked", "skipped", "pending"]
NODE_STATES: tuple[NodeState, ...] = ("done", "failed", "blocked", "skipped", "pending")
TimelineAction = Literal["check", "calibrate"]
TIMELINE_ACTIONS: tuple[TimelineAction, ...] = ("check", "calibrate")


# -- input --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeRecord:
    """One node of the run.

    Attributes:
        name: unique node name (``"rabi:q3"``).
        experiment: the experiment it runs.
        target: the qubit or pair it occupies.
        state: ``done``, ``failed``, ``blocked`` (a dependency failed), ``skipped`` or
            ``pending`` (never reached).
        result: its last ``ExperimentResult``, or None when it never ran.
        attempts: how many times it ran.
    """

    name: str
    experiment: str
    target: str | tuple[str, ...]
    state: NodeState
    result: ExperimentResult | None = None
    attempts: int = 0

    def __post_init__(self) -> None:
        _require(isinstance(self.name, str) and self.name != "", "NodeRecord.name", self.name, "a non-empty string")
        _require(self.state in NODE_STATES, f"NodeRecord({self.name!r}).state", self.state, f"one of {NODE_STATES}")
        _require(isinstance(self.attempts, int) and not isinstance(self.attempts, bool) and self.attempts >= 0,
                 f"NodeRecord({self.name!r}).attempts", self.attempts, "an integer >= 0")
        _require(self.result is None or isinstance(self.result, ExperimentResult),
                 f"NodeRecord({self.name!r}).result", type(self.result).__name__, "an ExperimentResult or None")


@dataclass(frozen=True)
class DeviceLayout:
    """The device's coupling map as the report draws it.

    Attributes:
        qubits: qubit names.
        edges: coupled pairs.
        positions: optional 2-D position per qubit; when absent a square grid is used if
            the edges are exactly a grid's, otherwise the qubits sit on a circle.
    """

    qubits: tuple[str, ...]
    edges: tuple[tuple[str, str], ...] = ()
    positions: Mapping[str, tuple[float, float]] | None = None

    def __post_init__(self) -> None:
        qs = tuple(self.qubits)
        _require(len(qs) >= 1 and len(set(qs)) == len(qs), "DeviceLayout.qubits", qs, "one or more distinct names")
        edges = tuple((str(e[0]), str(e[1])) for e in self.edges)
        for e in edges:
            _require(e[0] in qs and e[1] in qs and e[0] != e[1], "DeviceLayout.edges", e,
                     f"pairs of two different qubits of {list(qs)}")
        if self.positions is not None:
            for q in qs:
                p = self.positions.get(q)
                _require(p is not None and len(p) == 2 and all(math.isfinite(float(v)) for v in p),
                         f"DeviceLayout.positions[{q!r}]", p, "a finite (x, y) for every qubit")
        object.__setattr__(self, "qubits", qs)
        object.__setattr__(self, "edges", edges)

    def layout(self) -> dict[str, tuple[float, float]]:
        """Position per qubit: the given ones, else a grid or a circle."""
        if self.positions is not None:
            return {q: (float(self.positions[q][0]), float(self.positions[q][1])) for q in self.qubits}
        n = len(self.qubits)
        want = {frozenset(e) for e in self.edges}
        for rows in range(2, n):
            if n % rows or n // rows < 2:
                continue
            cols = n // rows
            grid = {frozenset((self.qubits[r * cols + c], self.qubits[r * cols + c + 1]))
                    for r in range(rows) for c in range(cols - 1)}
            grid |= {frozenset((self.qubits[r * cols + c], self.qubits[(r + 1) * cols + c]))
                     for r in range(rows - 1) for c in range(cols)}
            if grid == want:
                return {q: (float(i % cols), -float(i // cols)) for i, q in enumerate(self.qubits)}
        if n == 1:
            return {self.qubits[0]: (0.0, 0.0)}
        # Clockwise from the top, so q0 is at twelve o'clock as on most device drawings.
        return {q: (math.sin(2 * math.pi * i / n), math.cos(2 * math.pi * i / n)) for i, q in enumerate(self.qubits)}


@dataclass(frozen=True)
class TimelineEvent:
    """One action of a maintenance run.

    Attributes:
        time_s: device clock when it ran.
        node: the node's name.
        action: ``check`` (check_data) or ``calibrate``.
        status: the result's status (``in_spec``, ``out_of_spec``, ``bad_data``).
        gate_error: the gate error known after it, if any.
    """

    time_s: float
    node: str
    action: TimelineAction
    status: str
    gate_error: float | None = None

    def __post_init__(self) -> None:
        _require(math.isfinite(self.time_s) and self.time_s >= 0, "TimelineEvent.time_s", self.time_s, "a finite time >= 0 s")
        _require(self.action in TIMELINE_ACTIONS, "TimelineEvent.action", self.action, f"one of {TIMELINE_ACTIONS}")
        if self.gate_error is not None:
            _require(math.isfinite(self.gate_error) and 0 <= self.gate_error <= 1, "TimelineEvent.gate_error",
                     self.gate_error, "a value in [0, 1] or None")


PairKey = tuple[str, str]


@dataclass(frozen=True)
class ReportInput:
    """Everything a report shows.

    Attributes:
        run_id: the run's identifier.
        device: the device's name.
        nodes: the graph's nodes.
        edges: dependencies (``(a, b)``: node b depends on node a, a is drawn first).
        layout: the device's qubits and couplers.
        gate_error_1q: 1Q gate error per qubit (optional per qubit).
        readout_fidelity: readout assignment fidelity per qubit.
        gate_error_2q: 2Q gate error per coupled pair (either order).
        total_shots: shots of the whole run; None sums the nodes' results.
        total_device_time_s: device time of the whole run; None sums the nodes' results.
        timeline: the maintenance run's actions in time order (empty for a bring-up).
        notes: lines shown under the title (where the numbers come from, caveats).
        maintenance: a maintenance run's per-qubit timeline (``report_maintenance``), or None.
    """

    run_id: str
    device: str
    nodes: tuple[NodeRecord, ...]
    edges: tuple[tuple[str, str], ...]
    layout: DeviceLayout
    gate_error_1q: Mapping[str, float] = field(default_factory=dict)
    readout_fidelity: Mapping[str, float] = field(default_factory=dict)
    gate_error_2q: Mapping[PairKey, float] = field(default_factory=dict)
    total_shots: int | None = None
    total_device_time_s: float | None = None
    timeline: tuple[TimelineEvent, ...] = ()
    notes: tuple[str, ...] = ()
    maintenance: MaintenanceTimeline | None = None

    def __post_init__(self) -> None:
        nodes = tuple(self.nodes)
        names = [n.name for n in nodes]
        dup = sorted({n for n in names if names.count(n) > 1})
        _require(not dup, "ReportInput.nodes", dup, "unique node names")
        known = set(names)
        edges = tuple((str(a), str(b)) for a, b in self.edges)
        for e in edges:
            _require(e[0] in known and e[1] in known and e[0] != e[1], "ReportInput.edges", e,
                     "pairs of two different node names")
        _layers(names, edges)  # raises on a cycle
        qs = set(self.layout.qubits)
        for key, fig in (("gate_error_1q", self.gate_error_1q), ("readout_fidelity", self.readout_fidelity)):
            for q, v in fig.items():
                _require(q in qs, f"ReportInput.{key}", q, f"a qubit of {list(self.layout.qubits)}")
                _require(math.isfinite(v) and 0 <= v <= 1, f"ReportInput.{key}[{q!r}]", v, "a value in [0, 1]")
        pairs = {frozenset(e) for e in self.layout.edges}
        for p, v in self.gate_error_2q.items():
            _require(len(p) == 2 and frozenset(p) in pairs, "ReportInput.gate_error_2q", p,
                     "a coupled pair of DeviceLayout.edges")
            _require(math.isfinite(v) and 0 <= v <= 1, f"ReportInput.gate_error_2q[{p!r}]", v, "a value in [0, 1]")
        if self.total_shots is not None:
            _require(self.total_shots >= 0, "ReportInput.total_shots", self.total_shots, "an integer >= 0")
        if self.total_device_time_s is not None:
            _require(math.isfinite(self.total_device_time_s) and self.total_device_time_s >= 0,
                     "ReportInput.total_device_time_s", self.total_device_time_s, "a finite time >= 0 s")
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "timeline", tuple(sorted(self.timeline, key=lambda ev: ev.time_s)))
        object.__setattr__(self, "notes", tuple(self.notes))

    @property
    def shots(self) -> int:
        if self.total_shots is not None:
            return int(self.total_shots)
        return sum(n.result.shots for n in self.nodes if n.result is not None)

    @property
    def device_time_s(self) -> float:
        if self.total_device_time_s is not None:
            return float(self.total_device_time_s)
        return float(sum(n.result.device_time_s for n in self.nodes if n.result is not None))


def _require(ok: bool, name: str, value: object, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r}: allowed {allowed}")


# -- the graph's layers ---------------------------------------------------------------------


def _layers(names: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layer of every node (sources at 0); ValueError naming a cycle's nodes."""
    parents: dict[str, list[str]] = {n: [] for n in names}
    children: dict[str, list[str]] = {n: [] for n in names}
    for a, b in edges:
        parents[b].append(a)
        children[a].append(b)
    indeg = {n: len(parents[n]) for n in names}
    layer = dict.fromkeys(names, 0)
    ready = [n for n in names if indeg[n] == 0]
    seen = 0
    while ready:
        n = ready.pop()
        seen += 1
        for c in children[n]:
            layer[c] = max(layer[c], layer[n] + 1)
            indeg[c] -= 1
            if indeg[c] == 0:
                ready.append(c)
    if seen != len(names):
        raise ValueError(f"ReportInput.edges: a cycle through {sorted(n for n in names if indeg[n] > 0)}: "
                         "allowed a directed acyclic graph")
    return layer
