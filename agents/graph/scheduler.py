"""Running a calibration graph: parallel groups, one device clock and shot ledger, isolation.

**Parallel groups.** Qubits that interact must not be calibrated at once, so the coupling
map is coloured greedily with a crosstalk distance d (``colour_qubits``): two qubits
within d edges of each other never get the same colour. A node occupies its target's
qubits (both qubits of a coupler), and two nodes may share a group only if every qubit of
one is more than d edges from every qubit of the other. Each step the scheduler takes the
nodes whose dependencies are all finished, orders them by their qubits' colours (then by
graph order), fills groups first-fit under that rule, and runs the first group; then it
looks again, so a node becomes runnable as soon as its dependencies are done.

**One shared clock.** A group's nodes run "in parallel": on the simulated device they are
executed one after another, but the run's device clock (``RunReport.clock_s``) is charged
the group's *maximum* device time (each node's time being the sum of its experiments'
``device_time_s``: shots × repetition time plus the sequences' own durations), which is
what the group would take on hardware that plays its members at once. This ignores
crosstalk between the group's members, which the colouring distance is there to make
small; and the simulated device's own clock (its drift) advances by the sum, i.e. it
drifts for longer than the parallel run would take: conservative for the calibration.
``check_state`` timeouts and the store's ``clock_s`` use the run clock.

**One shot ledger.** Every experiment run is charged to one ``hardware.ledger.ShotLedger``
(``ledger.json`` in the run folder); with ``budget_shots`` set, an experiment whose shots
would pass the budget is not started: its node ends ``failed`` (or ``not_run`` if it had
run nothing), and the run goes on with nodes that fit.

**Retries, time limits and isolation.** A node's calibrate attempt that is not
``in_spec`` (or took longer than its ``time_limit_s``) is followed by ``diagnose`` and a
retry, up to ``retries`` times. Diagnose walks the dependencies depth first
(``Node.diagnose``): check_data of each, and one that fails is diagnosed in turn over its
own dependencies before it is recalibrated (a recalibration whose value moved is confirmed
by one more calibrate, as a node's own attempts are); the walk continues over every
dependency, each node checked at most once per diagnosis, and the root causes it found
(with their chains) are kept on the node's outcome for fault isolation (``faults.py``).
An experiment that can say its data was too few to decide (``escalate(result)``, e.g.
interleaved RB whose interval straddles its threshold) gets its retry with the larger
shot plan it returns. A node that still fails marks its target failed: every node that
depends on it, directly or not, ends ``blocked`` (its record names the failed node), and
the run goes on with the rest of the device.

**Journal and resume.** With a ``GraphJournal``, every node start, experiment run and outcome
is appended (``journal.py``); a scheduler given the journal of an interrupted run skips
the nodes it finished and continues the clock and the ledger from it.
"""

from __future__ import annotations

import math
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pulsecal.hardware.ledger import utc_day

from .experiment import ExperimentResult
from .graph import CalibrationGraph
from .journal import GraphJournal, read_state, result_to_dict
from .node import Calibration, Diagnosis, Node, RootCause
from .store import ParameterStore

CALIBRATED, SKIPPED, FAILED, BLOCKED, NOT_RUN = "calibrated", "skipped", "failed", "blocked", "not_run"
OUTCOMES = (CALIBRATED, SKIPPED, FAILED, BLOCKED, NOT_RUN)
_DONE_OK = (CALIBRATED, SKIPPED)


def qubit_distances(qubits: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, dict[str, float]]:
    """Edge counts between every two qubits of a coupling map (``inf``: not connected)."""
    adj: dict[str, set[str]] = {q: set() for q in qubits}
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    out: dict[str, dict[str, float]] = {}
    for q in qubits:
        d: dict[str, float] = {x: math.inf for x in qubits}
        d[q] = 0
        todo = deque([q])
        while todo:
            x = todo.popleft()
            for y in adj[x]:
                if d[y] == math.inf:
                    d[y] = d[x] + 1
                    todo.append(y)
        out[q] = d
    return out


def colour_qubits(qubits: Sequence[str], edges: Sequence[tuple[str, str]], distance: int) -> dict[str, int]:
    """Greedy colouring, in qubit order, of the coupling map's distance-``distance`` power:
    qubits within ``distance`` edges of each other get different colours (``distance`` 0:
    every qubit colour 0)."""
    if isinstance(distance, bool) or not isinstance(distance, int) or distance < 0:
        raise ValueError(f"crosstalk_distance={distance!r}: allowed an integer >= 0")
    dist = qubit_distances(qubits, edges)
    colour: dict[str, int] = {}
    for q in qubits:
        taken = {colour[p] for p in colour if 0 < dist[q][p] <= distance}
        c = 0
        while c in taken:
            c += 1
        colour[q] = c
    return colour


def node_distance(a: Node, b: Node, dist: Mapping[str, Mapping[str, float]]) -> float:
    """The fewest edges between a qubit of ``a`` and a qubit of ``b`` (0 if they share one)."""
    return min(dist[x][y] for x in a.qubits for y in b.qubits)


def parallel_groups(nodes: Sequence[Node], dist: Mapping[str, Mapping[str, float]], colour: Mapping[str, int],
                    distance: int) -> list[list[Node]]:
    """First-fit groups of ``nodes`` (given in graph order) where no two members are within
    ``distance`` edges; nodes are placed in the order of their qubits' colours."""
    rank = {n.name: i for i, n in enumerate(nodes)}
    ordered = sorted(nodes, key=lambda n: (tuple(sorted(colour[q] for q in n.qubits)), rank[n.name]))
    groups: list[list[Node]] = []
    for n in ordered:
        for g in groups:
            if all(node_distance(n, m, dist) > distance for m in g):
                g.append(n)
                break
        else:
            groups.append([n])
    return groups


@dataclass(frozen=True)
class NodeOutcome:
    """How one node ended.

    Attributes:
        node: its name.
        outcome: ``calibrated``, ``skipped`` (check_state said in spec), ``failed``,
            ``blocked`` (a dependency failed), ``not_run`` (the shot budget ran out).
        shots: shots its experiments spent (diagnosed dependencies' included).
        device_time_s: device time they took.
        clock_s: the run clock when it ended.
        attempts: calibrate attempts.
        blocked_by: for ``blocked``, the failed node that blocked it.
        recalibrated: dependencies its diagnoses recalibrated.
        message: one line.
        roots: the root causes its diagnoses found, over all its attempts (None: not
            recorded, e.g. an outcome read from a journal older than the field).
    """

    node: str
    outcome: str
    shots: int = 0
    device_time_s: float = 0.0
    clock_s: float = 0.0
    attempts: int = 0
    blocked_by: str | None = None
    recalibrated: tuple[str, ...] = ()
    message: str = ""
    roots: tuple[RootCause, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "outcome": self.outcome, "shots": self.shots,
                "device_time_s": self.device_time_s, "clock_s": self.clock_s, "attempts": self.attempts,
                "blocked_by": self.blocked_by, "recalibrated": list(self.recalibrated), "message": self.message,
                "roots": None if self.roots is None else [c.to_dict() for c in self.roots]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NodeOutcome:
        return cls(node=str(d["node"]), outcome=str(d["outcome"]), shots=int(d.get("shots", 0)),
                   device_time_s=float(d.get("device_time_s", 0.0)), clock_s=float(d.get("clock_s", 0.0)),
                   attempts=int(d.get("attempts", 0)), blocked_by=d.get("blocked_by"),
                   recalibrated=tuple(d.get("recalibrated", ())), message=str(d.get("message", "")),
                   roots=None if d.get("roots") is None else tuple(RootCause.from_dict(c) for c in d["roots"]))


@dataclass
class RunReport:
    """A graph run's outcome: every node's, the run clock, the shots, the groups run."""

    outcomes: dict[str, NodeOutcome] = field(default_factory=dict)
    clock_s: float = 0.0
    shots: int = 0
    groups: list[list[str]] = field(default_factory=list)
    resumed: int = 0  # nodes finished by an earlier process of this run

    def with_outcome(self, outcome: str) -> list[str]:
        return [n for n, o in self.outcomes.items() if o.outcome == outcome]

    @property
    def failed(self) -> list[str]:
        return self.with_outcome(FAILED)

    @property
    def blocked(self) -> dict[str, str | None]:
        return {n: o.blocked_by for n, o in self.outcomes.items() if o.outcome == BLOCKED}

    def to_dict(self) -> dict[str, Any]:
        return {"clock_s": self.clock_s, "shots": self.shots, "groups": self.groups, "resumed": self.resumed,
                "failed": self.failed, "blocked": self.blocked,
                "counts": {k: len(self.with_outcome(k)) for k in OUTCOMES},
                "nodes": {n: o.to_dict() for n, o in self.outcomes.items()}}


class _BudgetExhausted(Exception):
    pass


def _escalated(node: Node, r: ExperimentResult) -> Node:
    """``node`` with the larger shot plan its experiment asks for after ``r`` (an
    experiment's optional ``escalate(result) -> Experiment | None``: None when more shots
    would not help, e.g. the data was bad for another reason or the plan is at its cap)."""
    escalate = getattr(node.experiment, "escalate", None)
    if not callable(escalate):
        return node
    more = escalate(r)
    return node if more is None else replace(node, experiment=more)


@dataclass
class _Tally:
    shots: int = 0
    device_time_s: float = 0.0
    recalibrated: list[str] = field(default_factory=list)
    roots: list[RootCause] = field(default_factory=list)


ProgressCallback = Callable[[NodeOutcome, "RunReport", int], None]


class Scheduler:
    """Runs a ``CalibrationGraph`` on one device (module docstring).

    Args:
        graph: the nodes.
        device: what the experiments measure (an ``envs.protocol.Device``).
        store: the parameter store nodes read and accepted calibrations are written to.
        qubits, edges: the device's coupling map (for the groups).
        journal: the run's journal (None: no journal, no resume).
        ledger: the run's shot ledger (an ``hardware.ledger.ShotLedger``, or None).
        seed: seeds every experiment's generator (one stream per node, op and process).
        run_id: recorded in the store's provenance.
        budget_shots: the most shots the run may spend (None: no limit).
        progress: called after each node ends with (outcome, report so far, total nodes).
        start_clock_s: the run clock's start; None: the newest ``clock_s`` in the store (0
            for an empty one), so the store's clock stays monotone across runs on one device.
            The clock counts device time spent calibrating, not idle time between runs.
    """

    def __init__(self, graph: CalibrationGraph, device: Any, store: ParameterStore, *,
                 qubits: Sequence[str], edges: Sequence[tuple[str, str]], journal: GraphJournal | None = None,
                 ledger: Any = None, seed: int = 0, run_id: str = "", budget_shots: int | None = None,
                 progress: ProgressCallback | None = None, config: Mapping[str, Any] | None = None,
                 start_clock_s: float | None = None) -> None:
        self.graph = graph
        self.device = device
        self.store = store
        self.journal = journal
        self.ledger = ledger
        self.seed = int(seed)
        self.run_id = run_id
        if budget_shots is not None and (isinstance(budget_shots, bool) or not isinstance(budget_shots, int)
                                         or budget_shots < 0):
            raise ValueError(f"budget_shots={budget_shots!r}: allowed an integer >= 0 or None")
        self.budget_shots = budget_shots
        self.progress = progress
        self.config = dict(config or {})
        self.qubits = tuple(qubits)
        self.dist = qubit_distances(self.qubits, edges)
        for name in graph.names:
            for q in graph[name].qubits:
                if q not in self.dist:
                    raise ValueError(f"node {name}: qubit {q!r} is not on the device: allowed {list(self.qubits)}")
        self.colour = colour_qubits(self.qubits, edges, graph.crosstalk_distance)
        self.report = RunReport()
        if start_clock_s is None:
            start_clock_s = max((v.clock_s for v in store.versions), default=0.0)
        self.report.clock_s = float(start_clock_s)
        self._epoch = 0
        self._op_count = 0
        self._group_start = 0.0

    # -- accounting -----------------------------------------------------------------------------

    def _rng(self, node: Node) -> np.random.Generator:
        self._op_count += 1
        return np.random.default_rng([self.seed, self._epoch, zlib.crc32(node.name.encode()), self._op_count])

    def _op(self, node: Node, op: str, of: Node, tally: _Tally) -> ExperimentResult:
        """Run ``op`` (check_data / calibrate) of node ``of`` as part of ``node``'s work."""
        cost = of.shot_cost(cheap=op == "check_data")
        if self.budget_shots is not None and self.report.shots + cost > self.budget_shots:
            raise _BudgetExhausted(f"{op} of {of.name} needs {cost} shots, {self.budget_shots - self.report.shots} "
                                   f"left of budget_shots {self.budget_shots}")
        params = self.store.current()
        fn = of.check_data if op == "check_data" else of.calibrate
        r = fn(self.device, params, self._rng(of))
        tally.shots += r.shots
        tally.device_time_s += r.device_time_s
        self.report.shots += r.shots
        if self.ledger is not None and r.shots > 0:
            self.ledger.charge(f"{self._epoch}:{self._op_count}:{of.name}:{op}", int(r.shots), utc_day(time.time()))
        if self.journal is not None:
            self.journal.append("op", node=node.name, of=of.name, op=op, result=result_to_dict(r),
                                device_clock_s=float(getattr(self.device, "clock_s", 0.0)))
        return r

    def _accept(self, of: Node, r: ExperimentResult, tally: _Tally) -> None:
        unknown = sorted(set(r.values) - set(of.writes))
        if unknown:
            raise ValueError(f"{of.name}: the experiment returned {unknown[0]!r}, which it does not declare in "
                             f"writes {list(of.writes)}")
        self.store.record(of.name, r.values, experiment=r.experiment,
                          experiment_id=f"{self.run_id}/{of.name}/{len(self.store.versions) + 1}",
                          target=of.prefix, verdict=r.status, quality=dict(r.quality), shots=r.shots,
                          device_time_s=r.device_time_s, clock_s=self._group_start + tally.device_time_s,
                          run_id=self.run_id)

    def _last(self, node: Node) -> Calibration | None:
        v = self.store.latest(node.name)
        return None if v is None else Calibration(v.verdict, v.clock_s)

    # -- one node -------------------------------------------------------------------------------

    def _recalibrate(self, node: Node, dep: Node, tally: _Tally) -> bool:
        """Calibrate ``dep`` (its dependencies already diagnosed by the walk); True if
        accepted. A good fit whose value moved (``out_of_spec`` with values: drift, a T1
        that dropped) is recorded and confirmed by one more calibrate, as a node's own
        attempts are: a dependency that really changed is put right, not failed."""
        for confirming in (False, True):
            r = self._op(node, "calibrate", dep, tally)
            if r.status == "in_spec":
                self._accept(dep, r, tally)
                tally.recalibrated.append(dep.name)
                return True
            if confirming or not (r.status == "out_of_spec" and r.values):
                return False
            self._accept(dep, r, tally)
        return False

    def _diagnose(self, node: Node, tally: _Tally) -> Diagnosis:
        diag = node.diagnose(self.graph.dependencies(node.name), lambda d: self._op(node, "check_data", d, tally),
                             lambda d: self._recalibrate(node, d, tally), dependencies_of=self._dependencies)
        tally.roots.extend(diag.roots)
        return diag

    def _dependencies(self, node: Node) -> list[Node]:
        return list(self.graph.dependencies(node.name))

    def _execute(self, node: Node) -> NodeOutcome:
        tally = _Tally()
        deps = self.graph.dependencies(node.name)
        clocks = {}
        for d in deps:
            v = self.store.latest(d.name)
            if v is not None:
                clocks[d.name] = v.clock_s
        state = node.check_state(self.store.current(), self._last(node), self._group_start, clocks)
        if state.ok:
            return NodeOutcome(node.name, SKIPPED, message="check_state: in spec")
        attempts = 0
        message = ""
        current = node  # its experiment's shot plan grows when a result was too few to decide
        try:
            while True:
                attempts += 1
                r = self._op(node, "calibrate", current, tally)
                if r.status == "in_spec":
                    self._accept(current, r, tally)
                    return self._outcome(node, CALIBRATED, tally, attempts, r.message)
                message = f"attempt {attempts}: {r.status}: {r.message}"
                if attempts > node.retries:
                    return self._outcome(node, FAILED, tally, attempts, message)
                if r.status == "out_of_spec" and r.values:
                    # A good fit whose value moved beyond the tolerance from the stored one
                    # (a coarse prior, drift): its value is recorded, with its verdict, and
                    # the next attempt confirms it; the dependencies are not in question.
                    self._accept(current, r, tally)
                    continue
                current = _escalated(current, r)
                diag = self._diagnose(node, tally)
                if diag.not_recalibrated:
                    roots = ", ".join(" → ".join(c.chain) for c in diag.roots if not c.recalibrated)
                    return self._outcome(node, FAILED, tally, attempts,
                                         f"{message}; dependency {', '.join(diag.not_recalibrated)} failed its "
                                         f"check ({diag.status}) and its recalibration"
                                         + (f" (root cause {roots})" if roots else ""))
        except _BudgetExhausted as err:
            kind = NOT_RUN if tally.shots == 0 and attempts <= 1 else FAILED
            return self._outcome(node, kind, tally, attempts - 1 if kind == NOT_RUN else attempts,
                                 f"shot budget: {err}")
        except Exception as err:
            # One node's crash (an experiment refusing its input, a backend error) is that
            # node's failure: isolated like a failed fit, so the rest of the device goes on.
            # The journal and the report keep the exception's type and text.
            return self._outcome(node, FAILED, tally, attempts, f"raised {type(err).__name__}: {err}")

    def _outcome(self, node: Node, kind: str, tally: _Tally, attempts: int, message: str) -> NodeOutcome:
        return NodeOutcome(node.name, kind, tally.shots, tally.device_time_s,
                           self._group_start + tally.device_time_s, attempts, None, tuple(tally.recalibrated),
                           message, tuple(tally.roots))

    def _finish(self, o: NodeOutcome) -> None:
        self.report.outcomes[o.node] = o
        if self.journal is not None:
            self.journal.append("node_end", **o.to_dict())
        if self.progress is not None:
            self.progress(o, self.report, len(self.graph))

    # -- the run --------------------------------------------------------------------------------

    def _resume(self) -> None:
        if self.journal is None:
            return
        state = read_state(self.journal)
        self._epoch = state.epochs
        for name, rec in state.finished.items():
            if name in self.graph:
                self.report.outcomes[name] = NodeOutcome.from_dict(rec)
        self.report.resumed = len(self.report.outcomes)
        self.report.groups = [list(g) for g in state.groups]
        if state.epochs:
            self.report.clock_s = state.clock_s
        self.report.shots = state.shots
        advance = getattr(self.device, "advance", None)
        behind = state.device_clock_s - float(getattr(self.device, "clock_s", 0.0))
        if callable(advance) and behind > 0:  # a rebuilt simulated device starts at clock 0
            advance(behind)
        self.journal.append("run_start", epoch=self._epoch + 1, run_id=self.run_id, resumed_nodes=self.report.resumed,
                            clock_s=self.report.clock_s, config=self.config)
        self._epoch += 1

    def run(self) -> RunReport:
        """Run every node not finished yet; returns the report (also journaled)."""
        self._resume()
        order = self.graph.order()
        while True:
            pending = [n for n in order if n not in self.report.outcomes]
            if not pending:
                break
            ready: list[Node] = []
            for name in pending:
                node = self.graph[name]
                bad = [d for d in node.dependencies if d in self.report.outcomes
                       and self.report.outcomes[d].outcome not in _DONE_OK]
                if bad:
                    first = self.report.outcomes[bad[0]]
                    root = first.blocked_by if first.outcome == BLOCKED else first.node
                    self._finish(NodeOutcome(name, BLOCKED, clock_s=self.report.clock_s, blocked_by=root,
                                             message=f"dependency {bad[0]} {first.outcome}"))
                elif all(d in self.report.outcomes for d in node.dependencies):
                    ready.append(node)
            if not ready:
                # In a DAG some pending node has all its dependencies finished, so this
                # pass blocked it: look again.
                continue
            group = parallel_groups(ready, self.dist, self.colour, self.graph.crosstalk_distance)[0]
            self._run_group(group)
        if self.journal is not None:
            self.journal.append("run_end", **{k: v for k, v in self.report.to_dict().items() if k != "nodes"})
        return self.report

    def _run_group(self, group: list[Node]) -> None:
        names = [n.name for n in group]
        self.report.groups.append(names)
        self._group_start = self.report.clock_s
        longest = 0.0
        for node in group:
            if self.journal is not None:
                self.journal.append("node_start", node=node.name, group=len(self.report.groups) - 1,
                                    clock_s=self._group_start)
            o = self._execute(node)
            longest = max(longest, o.device_time_s)
            self._finish(o)
        self.report.clock_s = self._group_start + longest
        if self.journal is not None:
            self.journal.append("group_end", nodes=names, clock_s=self.report.clock_s, device_time_s=longest)


__all__ = ["BLOCKED", "CALIBRATED", "FAILED", "NOT_RUN", "OUTCOMES", "SKIPPED", "NodeOutcome", "RunReport",
           "Scheduler", "colour_qubits", "node_distance", "parallel_groups", "qubit_distances"]
