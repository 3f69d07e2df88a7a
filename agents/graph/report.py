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
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .experiment import target_name
from .report_figures import (
    PLOTTERS,
    STATE_COLOURS,
    STATUS_COLOURS,
    _draw_device,
    _draw_graph,
    _draw_timeline,
    _node_figure,
    _pair_value,
    _short,
    graph_positions,
)
from .report_input import (
    NODE_STATES,
    TIMELINE_ACTIONS,
    DeviceLayout,
    NodeRecord,
    NodeState,
    PairKey,
    ReportInput,
    TimelineAction,
    TimelineEvent,
)
from .report_maintenance import MAINTENANCE_PNG, maintenance_section

# The names callers import from here (agents.pipelines, the demo, the tests and docs):
# the input lives in report_input, the drawing in report_figures.
__all__ = [
    "NODE_STATES", "PLOTTERS", "STATE_COLOURS", "STATUS_COLOURS", "TIMELINE_ACTIONS", "DeviceLayout", "NodeRecord",
    "NodeState", "PairKey", "ReportInput", "TimelineAction", "TimelineEvent", "graph_positions", "write_report",
]


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
