"""The calibration DAG: nodes by name, edges from their dependencies, built from a YAML definition.

A ``CalibrationGraph`` holds ``Node``s by name (``"<template>:<target>"``) and checks, when
it is made, that every dependency names a node of the graph and that there is no cycle (a
cycle is refused with its nodes named in order). ``order()`` is a topological order that
is stable: among nodes whose dependencies are met, the one listed first comes first.

``graph_from_definition`` builds one from a plain mapping, the form of
``configs/graph/bringup.yaml`` (docs/calibration_graph.md):

.. code-block:: yaml

    crosstalk_distance: 1        # qubits within this coupling-map distance never share a group
    qubits: null                 # null: every qubit of the device; or a list
    couplers: null               # null: every edge of the coupling map; or ["q0-q1", ...]
    qubit_nodes:                 # templates instantiated on every qubit
      - name: spectroscopy
        experiment: {_target_: pulsecal.agents.graph.experiments.spectroscopy.Spectroscopy}
      - name: rabi
        experiment: {_target_: ..., points: 21}
        depends_on: [spectroscopy]   # qubit templates: the same qubit's node
        timeout_s: 3600
        retries: 1
    coupler_nodes:               # templates instantiated on every coupler
      - name: cz
        experiment: {_target_: ...}
        depends_on: [rabi]           # a qubit template: both qubits' nodes; a coupler one: this pair's

Experiments are built from ``_target_`` (an import path ``package.module.Class``) with the
other keys as keyword arguments: the node library's classes drop in by path, and so do a
user's own. Nothing is evaluated: the path is imported and the class called.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulsecal.configs.schema import KeyedError

from .experiment import Experiment
from .node import Node, Target

GRAPH_KEYS = ("name", "description", "crosstalk_distance", "qubits", "couplers", "qubit_nodes", "coupler_nodes")
TEMPLATE_KEYS = ("name", "experiment", "depends_on", "timeout_s", "retries", "time_limit_s")


class GraphError(KeyedError):
    """A graph definition or graph is refused; ``key`` is the dotted key of the definition
    (``graph.qubit_nodes[1].depends_on``) or the node concerned. Not a ``ConfigError``: a
    graph refused while it runs is no configuration value to report as one."""


class CalibrationGraph:
    """Nodes and the dependency edges between them; refuses unknown dependencies and cycles.

    Args:
        nodes: the nodes, in the order ties are broken in (names must be unique).
        crosstalk_distance: the scheduler's distance (kept with the graph it was defined with).
    """

    def __init__(self, nodes: Iterable[Node], crosstalk_distance: int = 1) -> None:
        self._nodes: dict[str, Node] = {}
        for n in nodes:
            if n.name in self._nodes:
                raise GraphError(n.name, "two nodes of this name: allowed one per template and target")
            self._nodes[n.name] = n
        for n in self._nodes.values():
            for d in n.dependencies:
                if d not in self._nodes:
                    raise GraphError(n.name, f"depends on {d!r}, which is not a node of the graph")
                if d == n.name:
                    raise GraphError(n.name, "depends on itself")
        if isinstance(crosstalk_distance, bool) or not isinstance(crosstalk_distance, int) or crosstalk_distance < 0:
            raise GraphError("crosstalk_distance", f"{crosstalk_distance!r}: allowed an integer >= 0")
        self.crosstalk_distance = crosstalk_distance
        self._order = self._topological_order()

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __getitem__(self, name: str) -> Node:
        return self._nodes[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._nodes)

    def order(self) -> tuple[str, ...]:
        """A topological order: dependencies first, ties in the order the nodes were given."""
        return self._order

    def dependencies(self, name: str) -> tuple[Node, ...]:
        """The direct dependencies of ``name``, in graph order."""
        deps = set(self._nodes[name].dependencies)
        return tuple(self._nodes[n] for n in self._order if n in deps)

    def dependents(self, name: str) -> tuple[str, ...]:
        """Every node that depends on ``name`` directly or through others, in graph order."""
        found: set[str] = set()
        frontier = [name]
        while frontier:
            x = frontier.pop()
            for n in self._nodes.values():
                if x in n.dependencies and n.name not in found:
                    found.add(n.name)
                    frontier.append(n.name)
        return tuple(n for n in self._order if n in found)

    def _topological_order(self) -> tuple[str, ...]:
        # Kahn's algorithm, taking the first ready node in given order each time, so the
        # order (and with it the schedule) is reproducible.
        remaining = {n: set(node.dependencies) for n, node in self._nodes.items()}
        done: list[str] = []
        while remaining:
            ready = [n for n in self._nodes if n in remaining and not remaining[n]]
            if not ready:
                raise GraphError(" -> ".join(_find_cycle(remaining)), "the dependencies form a cycle: allowed a DAG")
            n = ready[0]
            done.append(n)
            del remaining[n]
            for deps in remaining.values():
                deps.discard(n)
        return tuple(done)


def _find_cycle(remaining: Mapping[str, set[str]]) -> list[str]:
    """One cycle among the nodes left when none is ready, as ``[a, b, ..., a]``."""
    start = next(iter(remaining))
    path: list[str] = []
    seen: dict[str, int] = {}
    x = start
    while x not in seen:  # every left node has a dependency that is also left, so this walk cycles
        seen[x] = len(path)
        path.append(x)
        x = sorted(remaining[x])[0]
    cycle = path[seen[x]:]
    return [*cycle, x]


# -- building from a definition ----------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """One ``qubit_nodes`` / ``coupler_nodes`` entry, its experiment built."""

    name: str
    kind: str  # "qubit" or "coupler"
    experiment: Experiment
    depends_on: tuple[str, ...]
    timeout_s: float
    retries: int
    time_limit_s: float


def build_experiment(spec: Any, key: str) -> Experiment:
    """The experiment ``{_target_: "pkg.mod.Class", **kwargs}`` describes. An argument that
    is itself such a mapping is built the same way first (``gate: {_target_:
    pulsecal.envs.drag.DragGate, duration_s: 40e-9}``: a device whose drive needs a longer
    gate)."""
    exp = _build(spec, key)
    if not isinstance(exp, Experiment):
        raise GraphError(f"{key}._target_", f"{spec['_target_']!r} is not an Experiment (name, reads, writes, shots, run)")
    return exp


def _build(spec: Any, key: str) -> Any:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("_target_"), str):
        raise GraphError(key, f"{spec!r}: allowed a mapping with _target_: <package.module.Class> and its arguments")
    path = spec["_target_"]
    module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise GraphError(f"{key}._target_", f"{path!r}: allowed an import path package.module.Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise GraphError(f"{key}._target_", f"{path!r}: cannot import {module_name!r} ({err})") from None
    cls = getattr(module, attr, None)
    if cls is None or not callable(cls):
        raise GraphError(f"{key}._target_", f"{path!r}: {module_name} has no class {attr!r}")
    kwargs = {k: _build(v, f"{key}.{k}") if isinstance(v, Mapping) and "_target_" in v else v
              for k, v in spec.items() if k != "_target_"}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise GraphError(key, f"{path}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) refused: {err}") from None


def _number(value: Any, key: str, *, integer: bool = False, low: float = 0.0, strict: bool = True) -> Any:
    if isinstance(value, str) and value.lower() in ("inf", ".inf"):
        value = math.inf
    kind = (int,) if integer else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool) and not (isinstance(value, float) and math.isnan(value))
    if ok:
        ok = value > low if strict else value >= low
    if not ok:
        what = "an integer" if integer else "a number"
        raise GraphError(key, f"{value!r}: allowed {what} {'>' if strict else '>='} {low:g}")
    return value


def _templates(entries: Any, kind: str, key: str) -> list[Template]:
    if entries is None:
        return []
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        raise GraphError(key, f"{entries!r}: allowed a list of node templates")
    out: list[Template] = []
    for i, e in enumerate(entries):
        k = f"{key}[{i}]"
        if not isinstance(e, Mapping):
            raise GraphError(k, f"{e!r}: allowed a mapping with keys {list(TEMPLATE_KEYS)}")
        unknown = sorted(set(e) - set(TEMPLATE_KEYS))
        if unknown:
            raise GraphError(f"{k}.{unknown[0]}", f"unknown key: allowed {list(TEMPLATE_KEYS)}")
        name = e.get("name")
        if not isinstance(name, str) or not name.replace("_", "").isalnum():
            raise GraphError(f"{k}.name", f"{name!r}: allowed a name of letters, digits and _")
        deps = e.get("depends_on") or []
        if not isinstance(deps, Sequence) or isinstance(deps, str) or not all(isinstance(d, str) for d in deps):
            raise GraphError(f"{k}.depends_on", f"{deps!r}: allowed a list of template names")
        out.append(Template(
            name=name, kind=kind, experiment=build_experiment(e.get("experiment"), f"{k}.experiment"),
            depends_on=tuple(deps),
            timeout_s=float(_number(e.get("timeout_s", math.inf), f"{k}.timeout_s")),
            retries=int(_number(e.get("retries", 1), f"{k}.retries", integer=True, strict=False)),
            time_limit_s=float(_number(e.get("time_limit_s", math.inf), f"{k}.time_limit_s")),
        ))
    return out


def _pair(spec: Any, key: str) -> tuple[str, str]:
    if isinstance(spec, str) and spec.count("-") == 1:
        a, b = spec.split("-")
        return a, b
    if isinstance(spec, Sequence) and not isinstance(spec, str) and len(spec) == 2:
        return str(spec[0]), str(spec[1])
    raise GraphError(key, f"{spec!r}: allowed a pair 'q0-q1' or [q0, q1]")


def graph_from_definition(definition: Mapping[str, Any], qubits: Sequence[str],
                          edges: Sequence[tuple[str, str]], *, key: str = "graph",
                          channels: Sequence[str] | None = None) -> CalibrationGraph:
    """The graph a definition (``configs/graph/*.yaml`` as a plain mapping) describes for a
    device with ``qubits`` and coupling-map ``edges``. Every refusal is a ``GraphError``
    naming the definition's key, the value and what is allowed.

    ``channels``: the device's channel names. A coupler template whose experiment has
    ``applies_to(pair, channels)`` is instantiated only on the pairs it returns True for
    (a flux CZ only where a qubit has a flux line), and so are the coupler templates that
    depend on it; None: every coupler gets every template."""
    if not isinstance(definition, Mapping):
        raise GraphError(key, f"{definition!r}: allowed a mapping with keys {list(GRAPH_KEYS)}")
    unknown = sorted(set(definition) - set(GRAPH_KEYS))
    if unknown:
        raise GraphError(f"{key}.{unknown[0]}", f"unknown key: allowed {list(GRAPH_KEYS)}")
    distance = _number(definition.get("crosstalk_distance", 1), f"{key}.crosstalk_distance", integer=True,
                       strict=False)
    device_qubits = tuple(qubits)
    chosen = definition.get("qubits")
    if chosen is None:
        use_qubits = device_qubits
    else:
        if not isinstance(chosen, Sequence) or isinstance(chosen, str):
            raise GraphError(f"{key}.qubits", f"{chosen!r}: allowed null or a list of qubits of {list(device_qubits)}")
        bad = [q for q in chosen if q not in device_qubits]
        if bad:
            raise GraphError(f"{key}.qubits", f"{bad[0]!r} is not a qubit of the device: allowed {list(device_qubits)}")
        use_qubits = tuple(q for q in device_qubits if q in set(chosen))
    device_edges = [tuple(e) for e in edges]
    chosen_c = definition.get("couplers")
    if chosen_c is None:
        pairs = [(a, b) for a, b in device_edges if a in use_qubits and b in use_qubits]
    else:
        if not isinstance(chosen_c, Sequence) or isinstance(chosen_c, str):
            raise GraphError(f"{key}.couplers", f"{chosen_c!r}: allowed null or a list of pairs 'q0-q1'")
        pairs = []
        for i, c in enumerate(chosen_c):
            a, b = _pair(c, f"{key}.couplers[{i}]")
            if (a, b) not in device_edges and (b, a) not in device_edges:
                raise GraphError(f"{key}.couplers[{i}]", f"{c!r} is not an edge of the coupling map: allowed "
                                 f"{['-'.join(e) for e in device_edges]}")
            pairs.append((a, b))
    q_templates = _templates(definition.get("qubit_nodes"), "qubit", f"{key}.qubit_nodes")
    c_templates = _templates(definition.get("coupler_nodes"), "coupler", f"{key}.coupler_nodes")
    names = [t.name for t in (*q_templates, *c_templates)]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise GraphError(f"{key}.qubit_nodes", f"template name {dup[0]!r} given twice: allowed unique names")
    q_names = {t.name for t in q_templates}
    c_names = {t.name for t in c_templates}
    for group, templates in (("qubit_nodes", q_templates), ("coupler_nodes", c_templates)):
        for i, t in enumerate(templates):
            for d in t.depends_on:
                allowed = q_names if t.kind == "qubit" else q_names | c_names
                if d not in allowed:
                    raise GraphError(f"{key}.{group}[{i}].depends_on", f"{d!r} is not a template this one can depend "
                                     f"on: allowed {sorted(allowed)}")
    nodes: list[Node] = []
    for t in q_templates:
        for q in use_qubits:
            nodes.append(_node(t, q, [f"{d}:{q}" for d in t.depends_on]))
    skipped: set[tuple[str, str, str]] = set()  # (template, a, b) not instantiated
    for t in c_templates:
        applies = getattr(t.experiment, "applies_to", None)
        for a, b in pairs:
            if (channels is not None and callable(applies) and not applies((a, b), tuple(channels))) or any(
                    (d, a, b) in skipped for d in t.depends_on):
                skipped.add((t.name, a, b))
                continue
            deps: list[str] = []
            for d in t.depends_on:
                deps.extend([f"{d}:{a}", f"{d}:{b}"] if d in q_names else [f"{d}:{a}-{b}"])
            nodes.append(_node(t, (a, b), deps))
    return CalibrationGraph(nodes, crosstalk_distance=int(distance))


def _node(t: Template, target: Target, deps: list[str]) -> Node:
    return Node(t.experiment, target, template=t.name, dependencies=tuple(deps), timeout_s=t.timeout_s,
                retries=t.retries, time_limit_s=t.time_limit_s)


def load_definition(path: str) -> dict[str, Any]:
    """A graph definition from a YAML file (safe loader: plain data only)."""
    import yaml

    with open(path) as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise GraphError(str(path), "allowed a YAML mapping (a graph definition)")
    return data


__all__ = ["CalibrationGraph", "GraphError", "Template", "build_experiment", "graph_from_definition",
           "load_definition"]
