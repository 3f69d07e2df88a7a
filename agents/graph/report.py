"""A calibration run as a static HTML report: one folder, ``index.html`` and its PNGs.

The report is what a person looks at after a bring-up or a maintenance run: the graph
drawn as a layered DAG with each node coloured by its state, the device map coloured by
gate and readout errors, each node's measured data with its fit, and the timeline of a
maintenance run. It takes its own explicit input (``ReportInput``), built from the
experiment contract (``agents.graph.experiment.ExperimentResult``), so any graph, journal
or hand-written script can produce one.

Everything is drawn with matplotlib on the Agg canvas (no pyplot state, no display) and
linked relatively, so the folder can be copied, zipped or opened from ``file://`` with no
server and no network. Every string that comes from the input is escaped.

Node data is drawn by ``result.data["kind"]`` (docs/calibration_report.md):

- ``"curve"``: ``x``, ``y`` (measured), optional ``fit`` (on ``x``) or ``fit_x``/``fit``
  (a dense fit curve), ``y_err``, ``x_label``, ``y_label``, ``x_scale`` (``"linear"`` or
  ``"log"``), ``vlines`` (``[{"x": ..., "label": ...}]``, e.g. a fitted peak);
- ``"map"``: ``x`` (nx), ``y`` (ny), ``z`` (ny × nx), ``x_label``, ``y_label``,
  ``z_label``, optional ``marker`` ``[x, y]`` (the chosen point of a chevron);
- ``"iq"``: ``points`` ``[[i, q], ...]``, ``labels`` (the prepared state of each point),
  optional ``boundary`` (a polyline ``[[i, q], ...]``), ``x_label``, ``y_label``.

Data without a kind, of another kind, or that does not fit its kind's shape is listed
as a table (with the reason), never an exception: one bad node must not cost the report.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

from .experiment import ExperimentResult, target_name
from .report_maintenance import MAINTENANCE_PNG, MaintenanceTimeline, maintenance_section

NodeState = Literal["done", "failed", "blocked", "skipped", "pending"]
NODE_STATES: tuple[NodeState, ...] = ("done", "failed", "blocked", "skipped", "pending")
TimelineAction = Literal["check", "calibrate"]
TIMELINE_ACTIONS: tuple[TimelineAction, ...] = ("check", "calibrate")

# Colours a reader can tell apart also in greyscale print: dark green, red, orange,
# mid grey, light blue.
STATE_COLOURS: dict[str, str] = {
    "done": "#2e7d32", "failed": "#c62828", "blocked": "#ef6c00", "skipped": "#9e9e9e", "pending": "#90caf9",
}
STATUS_COLOURS: dict[str, str] = {"in_spec": "#2e7d32", "out_of_spec": "#ef6c00", "bad_data": "#c62828"}
_MISSING = "#d0d0d0"
_DPI = 100


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


# -- the graph ----------------------------------------------------------------------------


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


def graph_positions(names: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, tuple[int, float]]:
    """(layer, row) per node: layers left to right, rows ordered by the mean row of each
    node's parents (a few barycentre sweeps) so that edges cross little."""
    layer = _layers(names, edges)
    parents: dict[str, list[str]] = {n: [] for n in names}
    for a, b in edges:
        parents[b].append(a)
    columns: dict[int, list[str]] = {}
    for n in names:
        columns.setdefault(layer[n], []).append(n)
    row: dict[str, float] = {}
    for k in sorted(columns):
        col = columns[k]
        if k > 0:
            order = {n: i for i, n in enumerate(col)}
            col.sort(key=lambda n: (np.mean([row[p] for p in parents[n]]) if parents[n] else order[n], order[n]))
        for i, n in enumerate(col):
            row[n] = float(i)
    height = max(len(c) for c in columns.values())
    # Centre every column on the tallest one.
    return {n: (layer[n], row[n] + (height - len(columns[layer[n]])) / 2) for n in names}


def _draw_graph(report: ReportInput, path: Path) -> None:
    names = [n.name for n in report.nodes]
    if not names:
        fig = Figure(figsize=(6, 1.5), dpi=_DPI)
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no nodes", ha="center", va="center")
        ax.set_axis_off()
        _save(fig, path)
        return
    pos = graph_positions(names, report.edges)
    n_layers = 1 + max(p[0] for p in pos.values())
    n_rows = 1 + max(p[1] for p in pos.values())
    col_w, row_h, box_w, box_h = 2.6, 0.62, 2.1, 0.46
    fig = Figure(figsize=(max(6.0, 0.8 + col_w * n_layers * 0.8), max(2.5, 1.2 + row_h * n_rows * 0.8)), dpi=_DPI)
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.90))
    xy = {n: (p[0] * col_w, -p[1] * row_h) for n, p in pos.items()}
    by_name = {n.name: n for n in report.nodes}
    for a, b in report.edges:
        (x0, y0), (x1, y1) = xy[a], xy[b]
        ax.add_patch(FancyArrowPatch((x0 + box_w / 2, y0), (x1 - box_w / 2, y1), arrowstyle="-|>",
                                     mutation_scale=8, color="#555555", lw=0.7, shrinkA=0, shrinkB=1))
    for n, (x, y) in xy.items():
        node = by_name[n]
        colour = STATE_COLOURS[node.state]
        ax.add_patch(FancyBboxPatch((x - box_w / 2, y - box_h / 2), box_w, box_h,
                                    boxstyle="round,pad=0.02,rounding_size=0.08", fc=colour, ec="#333333", lw=0.6))
        text = "white" if node.state in ("done", "failed") else "black"
        ax.text(x, y, _short(n, 24), ha="center", va="center", fontsize=9, color=text)
    ax.set_xlim(-box_w / 2 - 0.2, (n_layers - 1) * col_w + box_w / 2 + 0.2)
    ax.set_ylim(-(n_rows - 1) * row_h - box_h / 2 - 0.1, box_h / 2 + 0.1)
    ax.set_axis_off()
    counts = {s: sum(1 for n in report.nodes if n.state == s) for s in NODE_STATES}
    handles = [FancyBboxPatch((0, 0), 1, 1, fc=STATE_COLOURS[s], ec="#333333", lw=0.6) for s in NODE_STATES]
    fig.legend(handles, [f"{s} ({counts[s]})" for s in NODE_STATES], loc="upper center", ncol=5,
               frameon=False, fontsize=10)
    _save(fig, path)


def _short(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


# -- the device map -----------------------------------------------------------------------


def _pair_value(values: Mapping[PairKey, float], a: str, b: str) -> float | None:
    v = values.get((a, b))
    return values.get((b, a)) if v is None else v


def _error_norm(values: Sequence[float]) -> Normalize:
    pos = [v for v in values if v > 0]
    if not pos:
        return Normalize(0.0, 1.0)
    # Whole decades, so the colour bar's ticks are readable powers of ten.
    lo = 10.0 ** math.floor(math.log10(min(pos)))
    hi = 10.0 ** math.ceil(math.log10(max(pos)))
    return LogNorm(lo, hi if hi > lo else 10 * lo)


def _draw_device(report: ReportInput, path: Path) -> None:
    lay = report.layout
    xy = lay.layout()
    xs = np.array([p[0] for p in xy.values()])
    ys = np.array([p[1] for p in xy.values()])
    span = max(float(np.ptp(xs)), float(np.ptp(ys)), 1.0)
    fig = Figure(figsize=(7.6, 6.0), dpi=_DPI)
    ax = fig.add_axes((0.03, 0.05, 0.66, 0.88))
    gate_norm = _error_norm([*report.gate_error_1q.values(), *report.gate_error_2q.values()])
    ro_norm = Normalize(0.0, max([0.05, *(1 - f for f in report.readout_fidelity.values())]))
    gate_cmap, ro_cmap = "RdYlGn_r", "Purples"
    gcm = matplotlib.colormaps[gate_cmap]
    rcm = matplotlib.colormaps[ro_cmap]
    pts = np.stack([xs, ys], axis=1)
    gaps = np.linalg.norm(pts[:, None] - pts[None, :], axis=-1)
    nearest = float(gaps[gaps > 0].min()) if len(pts) > 1 else span
    r = min(0.09 * span, 0.2 * nearest)
    # On a ring every label goes outwards; elsewhere (grids, given positions) below its qubit.
    radii = np.hypot(xs - xs.mean(), ys - ys.mean())
    radial = len(pts) > 2 and float(np.ptp(radii)) < 1e-6 * span
    for a, b in lay.edges:
        (x0, y0), (x1, y1) = xy[a], xy[b]
        v = _pair_value(report.gate_error_2q, a, b)
        if v is None:
            ax.plot([x0, x1], [y0, y1], color=_MISSING, lw=3, ls="--", zorder=1)
        else:
            ax.plot([x0, x1], [y0, y1], color=gcm(gate_norm(max(v, 1e-12))), lw=6, zorder=1, solid_capstyle="round")
            ax.text((x0 + x1) / 2, (y0 + y1) / 2, f"{v:.1e}", fontsize=7, ha="center", va="center", zorder=4,
                    bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 0.5})
    for q, (x, y) in xy.items():
        e = report.gate_error_1q.get(q)
        f = report.readout_fidelity.get(q)
        face = _MISSING if e is None else gcm(gate_norm(max(e, 1e-12)))
        ring = "#999999" if f is None else rcm(ro_norm(1 - f))
        ax.add_patch(Circle((x, y), r, fc=face, ec=ring, lw=5, zorder=2))
        ax.text(x, y, q, ha="center", va="center", fontsize=9, fontweight="bold", zorder=3,
                color="black")
        label = ("1Q n/a" if e is None else f"1Q {e:.1e}") + "\n" + ("RO n/a" if f is None else f"RO {100 * f:.1f}%")
        if radial:
            dx, dy = x - float(xs.mean()), y - float(ys.mean())
            norm = math.hypot(dx, dy) or 1.0
            ux, uy = dx / norm, dy / norm
            ha = "left" if ux > 0.3 else "right" if ux < -0.3 else "center"
            ax.text(x + 1.35 * r * ux, y + 1.35 * r * uy + (0.0 if ha != "center" else 0.55 * r * np.sign(uy or 1)),
                    label, ha=ha, va="center", fontsize=7, zorder=3)
        else:
            ax.text(x, y - 1.25 * r, label, ha="center", va="top", fontsize=7, zorder=3)
    pad = 3.2 * r
    ax.set_xlim(xs.min() - pad, xs.max() + pad)
    ax.set_ylim(ys.min() - pad, ys.max() + pad)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(f"{report.device}: fill = 1Q gate error, line = 2Q gate error, ring = readout", fontsize=9)
    cax1 = fig.add_axes((0.74, 0.12, 0.03, 0.76))
    bar = fig.colorbar(ScalarMappable(gate_norm, gate_cmap), cax=cax1)
    bar.set_label("gate error (1Q fill, 2Q line)", fontsize=8)
    if isinstance(gate_norm, LogNorm) and gate_norm.vmin is not None and gate_norm.vmax is not None:
        # 1-2-5 ticks in every decade: a bar of one or two decades reads at a glance.
        lo, hi = float(gate_norm.vmin), float(gate_norm.vmax)
        ticks = [m * 10.0**k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                 for m in (1, 2, 5) if lo * (1 - 1e-9) <= m * 10.0**k <= hi * (1 + 1e-9)]
        bar.set_ticks(ticks, labels=[f"{t:.0e}" for t in ticks])
        bar.ax.minorticks_off()
    cax2 = fig.add_axes((0.89, 0.12, 0.03, 0.76))
    fig.colorbar(ScalarMappable(ro_norm, ro_cmap), cax=cax2).set_label("readout assignment infidelity (ring)",
                                                                       fontsize=8)
    for c in (cax1, cax2):
        c.tick_params(labelsize=7)
    _save(fig, path)


# -- node data ----------------------------------------------------------------------------


def _floats(value: Any, name: str, ndim: int = 1) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.ndim != ndim or a.size == 0:
        raise ValueError(f"data.{name}: shape {a.shape}: allowed {ndim}-D and not empty")
    return a


def _plot_curve(data: Mapping[str, Any], fig: Figure) -> None:
    ax = fig.add_subplot()
    x, y = _floats(data["x"], "x"), _floats(data["y"], "y")
    if x.shape != y.shape:
        raise ValueError(f"data.y: length {y.size}: allowed the length of data.x ({x.size})")
    if "y_err" in data:
        err = _floats(data["y_err"], "y_err")
        if err.shape != y.shape:
            raise ValueError(f"data.y_err: length {err.size}: allowed the length of data.y ({y.size})")
        ax.errorbar(x, y, yerr=err, fmt="o", ms=3.5, lw=0.8, color="#1f77b4", label="data")
    else:
        ax.plot(x, y, "o", ms=3.5, color="#1f77b4", label="data")
    if "fit" in data:
        fx = _floats(data.get("fit_x", data["x"]), "fit_x")
        fy = _floats(data["fit"], "fit")
        if fx.shape != fy.shape:
            raise ValueError(f"data.fit: length {fy.size}: allowed the length of data.fit_x or data.x ({fx.size})")
        ax.plot(fx, fy, "-", color="#d62728", lw=1.4, label="fit")
    for v in data.get("vlines", ()) or ():
        ax.axvline(float(v["x"]), color="#555555", ls=":", lw=1)
        ax.annotate(str(v.get("label", "")), (float(v["x"]), 1.0), xycoords=("data", "axes fraction"),
                    xytext=(3, -12), textcoords="offset points", fontsize=7, color="#333333")
    if data.get("x_scale") == "log":
        ax.set_xscale("log")
    ax.set_xlabel(str(data.get("x_label", "x")))
    ax.set_ylabel(str(data.get("y_label", "y")))
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)


def _plot_map(data: Mapping[str, Any], fig: Figure) -> None:
    ax = fig.add_subplot()
    x, y, z = _floats(data["x"], "x"), _floats(data["y"], "y"), _floats(data["z"], "z", 2)
    if z.shape != (y.size, x.size):
        raise ValueError(f"data.z: shape {z.shape}: allowed (len(y), len(x)) = ({y.size}, {x.size})")
    mesh = ax.pcolormesh(x, y, z, shading="nearest", cmap="magma")
    fig.colorbar(mesh, ax=ax).set_label(str(data.get("z_label", "z")), fontsize=8)
    if "marker" in data:
        mx, my = (float(v) for v in data["marker"])
        ax.plot([mx], [my], marker="x", color="#00e5ff", ms=10, mew=2, label="chosen")
        ax.legend(fontsize=7, loc="upper right")
    ax.set_xlabel(str(data.get("x_label", "x")))
    ax.set_ylabel(str(data.get("y_label", "y")))


def _plot_iq(data: Mapping[str, Any], fig: Figure) -> None:
    ax = fig.add_subplot()
    pts = _floats(data["points"], "points", 2)
    if pts.shape[1] != 2:
        raise ValueError(f"data.points: shape {pts.shape}: allowed (n, 2) [[i, q], ...]")
    labels = [str(v) for v in data.get("labels", ["?"] * len(pts))]
    if len(labels) != len(pts):
        raise ValueError(f"data.labels: length {len(labels)}: allowed one per point ({len(pts)})")
    colours = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
    for i, lab in enumerate(sorted(set(labels))):
        sel = np.array([v == lab for v in labels])
        ax.plot(pts[sel, 0], pts[sel, 1], ".", ms=2.5, alpha=0.5, color=colours[i % len(colours)],
                label=f"prepared |{lab}⟩")
    if data.get("boundary") is not None:
        b = _floats(data["boundary"], "boundary", 2)
        if b.shape[1] != 2:
            raise ValueError(f"data.boundary: shape {b.shape}: allowed (m, 2), a polyline [[i, q], ...]")
        ax.plot(b[:, 0], b[:, 1], "k--", lw=1.2, label="discriminator")
    # The blobs set the view (a boundary polyline may run far past them), with a margin.
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = 0.08 * float(max(hi - lo)) or 1.0
    ax.set_xlim(lo[0] - pad, hi[0] + pad)
    ax.set_ylim(lo[1] - pad, hi[1] + pad)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(str(data.get("x_label", "I")))
    ax.set_ylabel(str(data.get("y_label", "Q")))
    ax.legend(fontsize=7, loc="best", markerscale=4)


PLOTTERS = {"curve": _plot_curve, "map": _plot_map, "iq": _plot_iq}


def _node_figure(node: NodeRecord, path: Path) -> str | None:
    """Draw the node's data to ``path``; None when drawn, else why it is listed as a table."""
    assert node.result is not None
    data = node.result.data
    kind = data.get("kind") if isinstance(data, Mapping) else None
    plot = PLOTTERS.get(kind) if isinstance(kind, str) else None
    if plot is None:
        return f"data kind {kind!r} has no drawing (drawn kinds: {sorted(PLOTTERS)})"
    fig = Figure(figsize=(6.0, 3.8), dpi=_DPI, layout="constrained")
    try:
        plot(data, fig)
    except (KeyError, ValueError, TypeError) as exc:
        reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        return f"data of kind {kind!r} cannot be drawn: {reason}"
    res = node.result
    fig.suptitle(f"{node.name} ({res.status}) {_short(res.message, 70)}", fontsize=9)
    _save(fig, path)
    return None


# -- timeline -----------------------------------------------------------------------------


def _draw_timeline(report: ReportInput, path: Path) -> None:
    events = report.timeline
    nodes = list(dict.fromkeys(ev.node for ev in events))
    has_err = any(ev.gate_error is not None for ev in events)
    fig = Figure(figsize=(9.0, 1.6 + 0.32 * len(nodes) + (2.6 if has_err else 0.0)), dpi=_DPI,
                 layout="constrained")
    t_h = np.array([ev.time_s / 3600.0 for ev in events])
    if has_err:
        gs = fig.add_gridspec(2, 1, height_ratios=(max(1.0, 0.32 * len(nodes)), 2.4))
        ax = fig.add_subplot(gs[0])
        ax_err = fig.add_subplot(gs[1], sharex=ax)
    else:
        ax = fig.add_subplot()
    row = {n: i for i, n in enumerate(nodes)}
    # A check and the calibration it triggered share a time: the small check marker is
    # drawn over the larger calibration diamond so both stay visible.
    for ev, t in zip(events, t_h, strict=True):
        check = ev.action == "check"
        ax.plot([t], [row[ev.node]], marker="o" if check else "D", ms=5 if check else 10, ls="none",
                color=STATUS_COLOURS.get(ev.status, "#555555"), mec="black", mew=0.4, zorder=3 if check else 2)
    ax.set_yticks(range(len(nodes)), [_short(n, 28) for n in nodes], fontsize=8)
    ax.set_ylim(len(nodes) - 0.5, -0.5)
    ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], marker="o", ls="none", color="#bbbbbb", mec="black", label="check"),
               Line2D([], [], marker="D", ls="none", color="#bbbbbb", mec="black", label="calibrate")]
    handles += [Line2D([], [], marker="s", ls="none", color=c, label=s) for s, c in STATUS_COLOURS.items()]
    ax.legend(handles=handles, fontsize=8, ncol=5, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    if has_err:
        ax.tick_params(labelbottom=False)
        for n in nodes:
            pts = [(ev.time_s / 3600.0, ev.gate_error) for ev in events if ev.node == n and ev.gate_error is not None]
            if pts:
                ax_err.plot(*zip(*pts, strict=True), "-o", ms=3, lw=1, label=_short(n, 20))
        ax_err.set_yscale("log")
        ax_err.set_ylabel("gate error")
        ax_err.grid(alpha=0.3)
        ax_err.legend(fontsize=7, loc="upper left", ncol=4)
        ax_err.set_xlabel("device time (h)")
    else:
        ax.set_xlabel("device time (h)")
    _save(fig, path)


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=_DPI)


# -- HTML ---------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "node"


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _table(rows: Sequence[Sequence[object]], head: Sequence[str] | None = None, cls: str = "") -> str:
    out = [f'<table class="{_e(cls)}">' if cls else "<table>"]
    if head:
        out.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>")
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{c if isinstance(c, _Raw) else _e(_fmt(c))}</td>" for c in r) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


class _Raw(str):
    """Already-escaped HTML for ``_table`` cells."""


def _summary(value: Any) -> str:
    """One cell for an arbitrary data value: scalars as they are, arrays by shape and start."""
    if isinstance(value, str | int | float | bool) or value is None:
        return _fmt(value)
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return _short(repr(value), 120)
    if a.ndim == 0:
        return _fmt(float(a))
    head = ", ".join(f"{v:.4g}" for v in a.reshape(-1)[:6])
    return f"array {a.shape}: [{head}{', …' if a.size > 6 else ''}]"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 1.6em; }
h3 { margin-bottom: 0.3em; } .meta { color: #555; } .note { color: #6d4c00; background: #fff8e1;
padding: 0.3em 0.6em; margin: 0.2em 0; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } img { max-width: 100%; border: 1px solid #eee; }
.state { display: inline-block; padding: 0 0.5em; border-radius: 0.6em; color: #fff; font-size: 0.85em; }
.state-blocked, .state-skipped, .state-pending { color: #000; }
.node { margin: 1em 0 2em; } .why { color: #8a6d3b; font-style: italic; }
.row { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; } .row img { max-width: 620px; }
"""

# The report's own check that it rendered: after the page loaded, every image is marked
# with data-loaded="1" (decoded, non-zero width) or "0", the body with the tally and the
# title ends in "[images a/b]", which a headless browser's dumped DOM shows.
_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    var good = imgs[i].complete && imgs[i].naturalWidth > 0;
    imgs[i].setAttribute("data-loaded", good ? "1" : "0");
    if (good) { ok++; }
  }
  document.body.setAttribute("data-images-loaded", ok + "/" + imgs.length);
  document.title = document.title + " [images " + ok + "/" + imgs.length + "]";
});
"""


def _state_badge(state: str) -> _Raw:
    return _Raw(f'<span class="state state-{_e(state)}" style="background:{STATE_COLOURS[state]}">{_e(state)}</span>')


def write_report(folder: str | Path, report: ReportInput) -> Path:
    """Write ``index.html`` and its PNGs into ``folder`` (created if missing); returns the
    path of ``index.html``. Every link is relative to the folder."""
    if not isinstance(report, ReportInput):
        raise TypeError(f"write_report: report is a {type(report).__name__}: allowed a ReportInput")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    _draw_graph(report, out / "graph.png")
    _draw_device(report, out / "device.png")
    title = f"Calibration report: {report.run_id} on {report.device}"
    body: list[str] = [f"<h1>{_e(title)}</h1>"]
    counts = {s: sum(1 for n in report.nodes if n.state == s) for s in NODE_STATES}
    body.append('<p class="meta">' + _e(
        f"{len(report.nodes)} nodes ({', '.join(f'{v} {k}' for k, v in counts.items() if v)}); "
        f"{report.shots} shots; device time {report.device_time_s:.3f} s ({report.device_time_s / 60:.2f} min)")
        + "</p>")
    body += [f'<p class="note">{_e(n)}</p>' for n in report.notes]
    body.append("<h2>Calibration graph</h2>")
    body.append('<img src="graph.png" alt="calibration graph, nodes coloured by state">')
    body.append("<h2>Device</h2>")
    body.append('<img src="device.png" alt="device map coloured by gate and readout errors">')
    rows: list[list[object]] = []
    for q in report.layout.qubits:
        e, f = report.gate_error_1q.get(q), report.readout_fidelity.get(q)
        rows.append([q, "n/a" if e is None else f"{e:.3g}", "n/a" if f is None else f"{f:.4f}"])
    body.append(_table(rows, ["qubit", "1Q gate error", "readout assignment fidelity"]))
    if report.layout.edges:
        body.append(_table([[f"{a}-{b}", "n/a" if (v := _pair_value(report.gate_error_2q, a, b)) is None
                             else f"{v:.3g}"] for a, b in report.layout.edges], ["pair", "2Q gate error"]))
    body.append("<h2>Nodes</h2>")
    rows = []
    for i, n in enumerate(report.nodes):
        r = n.result
        link = _Raw(f'<a href="#node-{i}">{_e(n.name)}</a>')
        rows.append([link, n.experiment, target_name(n.target), _state_badge(n.state), n.attempts,
                     "" if r is None else r.status, "" if r is None else r.shots,
                     "" if r is None else f"{r.device_time_s:.3g}", "" if r is None else r.message])
    body.append(_table(rows, ["node", "experiment", "target", "state", "attempts", "status", "shots",
                              "device time (s)", "message"], "nodes"))
    for i, n in enumerate(report.nodes):
        body.append(f'<div class="node" id="node-{i}" data-node="{_e(n.name)}" data-state="{_e(n.state)}">')
        body.append(f"<h3>{_e(n.name)} {_state_badge(n.state)}</h3>")
        r = n.result
        if r is None:
            body.append("<p>not run</p></div>")
            continue
        body.append(f"<p>{_e(r.experiment)} on {_e(target_name(r.target))}: <b>{_e(r.status)}</b>, "
                    f"{r.shots} shots, {r.device_time_s:.3g} s. {_e(r.message)}</p>")
        png = f"node_{i:03d}_{_slug(n.name)}.png"
        why = _node_figure(n, out / png)
        if why is None:
            body.append('<div class="row">')
            body.append(f'<img src="{_e(png)}" alt="{_e(n.name)} data and fit">')
        else:
            (out / png).unlink(missing_ok=True)
            body.append(f'<p class="why">{_e(why)}</p>')
            body.append('<div class="row">')
            if isinstance(r.data, Mapping) and r.data:
                body.append(_table([[k, _summary(v)] for k, v in r.data.items()], ["data", "value"]))
        if r.values:
            body.append(_table([[k, v] for k, v in r.values.items()], ["parameter", "value"]))
        if r.quality:
            body.append(_table([[k, v] for k, v in r.quality.items()], ["fit quality", "value"]))
        body.append("</div></div>")
    if report.timeline:
        _draw_timeline(report, out / "timeline.png")
        body.append("<h2>Maintenance timeline</h2>")
        body.append('<img src="timeline.png" alt="maintenance timeline">')
        n_cal = sum(1 for ev in report.timeline if ev.action == "calibrate")
        body.append(f"<p>{len(report.timeline) - n_cal} checks, {n_cal} calibrations over "
                    f"{report.timeline[-1].time_s / 3600:.2f} h of device time.</p>")
    else:
        (out / "timeline.png").unlink(missing_ok=True)
    if report.maintenance is not None:
        body += maintenance_section(report.maintenance, out)
    else:
        (out / MAINTENANCE_PNG).unlink(missing_ok=True)
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + f"\n<script>{_SCRIPT}</script>\n</body>\n</html>\n")
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
