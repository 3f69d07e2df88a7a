"""The report's figures: the graph as a layered DAG, the device map, each node's data by
its kind and the maintenance timeline, each drawn to a PNG with matplotlib on the Agg
canvas (no pyplot state, no display).

A node's drawing raises nothing for bad data: ``_node_figure`` returns why it could not be
drawn, and the page lists the data as a table instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

from .report_input import NODE_STATES, NodeRecord, PairKey, ReportInput, _layers

# Colours a reader can tell apart also in greyscale print: dark green, red, orange,
# mid grey, light blue.
STATE_COLOURS: dict[str, str] = {
    "done": "#2e7d32", "failed": "#c62828", "blocked": "#ef6c00", "skipped": "#9e9e9e", "pending": "#90caf9",
}
STATUS_COLOURS: dict[str, str] = {"in_spec": "#2e7d32", "out_of_spec": "#ef6c00", "bad_data": "#c62828"}
_MISSING = "#d0d0d0"
_DPI = 100


# -- the graph ----------------------------------------------------------------------------


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

