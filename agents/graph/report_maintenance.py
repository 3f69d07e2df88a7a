"""The maintenance section of the HTML report: per qubit what was checked and recalibrated
when, the gate error over the run, and the shots of every hour.

A run of 24 h on 8 qubits makes thousands of checks over ~90 nodes, too many for a row
per node (``report_figures._draw_timeline``), so this figure has a row per qubit: every check a
small dot coloured by its status, every accepted recalibration a diamond; a coupler's
nodes (idle pair, coupler probe, ZZ, CZ) have a row of their own. Under it the true X
error of each qubit's current pulses and the true CZ error of each coupler's, each with
its coherence limit drawn over it, and the excess over the limit (a simulated device's
truth samples, evaluation only; absent on a backend), then the shots per hour.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

_DPI = 110
_STATUS = {"in_spec": "#4caf50", "out_of_spec": "#ff9800", "bad_data": "#e53935"}
MAINTENANCE_PNG = "maintenance.png"


@dataclass(frozen=True)
class MaintenanceEvent:
    """One operation: ``check`` or ``calibrate`` (``recalibration``: an accepted one,
    from a check's own fit or a full calibration)."""

    time_s: float
    qubit: str
    node: str
    action: str
    status: str
    shots: int = 0


@dataclass(frozen=True)
class MaintenanceTimeline:
    """What the section shows.

    Attributes:
        strategy: ``graph`` or ``fixed``.
        start_clock_s: the device clock when maintenance began (times are drawn from it).
        hours: the run's hours.
        qubits: the rows, in order.
        events: checks and calibrations (``action`` ``check`` / ``calibrate``).
        recalibrations: accepted recalibrations: (time_s, qubit, node).
        samples: truth samples: (time_s, {qubit: (x_error, sx_error, coherence_limit)}).
        shots_per_hour: shots of each hour.
    """

    strategy: str
    start_clock_s: float
    hours: float
    qubits: tuple[str, ...]
    events: tuple[MaintenanceEvent, ...] = ()
    recalibrations: tuple[tuple[float, str, str], ...] = ()
    samples: tuple[tuple[float, Mapping[str, tuple[float, float, float]]], ...] = ()
    shots_per_hour: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not (isinstance(self.hours, int | float) and math.isfinite(self.hours) and self.hours > 0):
            raise ValueError(f"MaintenanceTimeline.hours={self.hours!r}: allowed a finite number > 0")
        unknown = sorted({e.qubit for e in self.events} - set(self.qubits))
        if unknown:
            raise ValueError(f"MaintenanceTimeline.events: qubit {unknown[0]!r}: allowed one of {list(self.qubits)}")


def _series(t: MaintenanceTimeline, target: str) -> np.ndarray:
    """(hours, error, limit) rows of ``target``'s truth samples."""
    return np.asarray([((ts - t.start_clock_s) / 3600.0, s[target][0], s[target][2])
                       for ts, s in t.samples if target in s], dtype=np.float64).reshape(-1, 3)


def _error_panel(ax: Axes, t: MaintenanceTimeline, targets: Sequence[str], colour: Mapping[str, str],
                 label: str) -> None:
    """Each target's true error (solid) and, drawn over it, its coherence limit (dashed on a
    white edge): the limit is often within a few % of the error and would hide under it."""
    for q in targets:
        d = _series(t, q)
        if not d.size:
            continue
        ax.plot(d[:, 0], d[:, 1], "-", lw=1.0, color=colour[q], label=q, zorder=2)
        ax.plot(d[:, 0], d[:, 2], "-", lw=2.6, color="white", zorder=3)
        ax.plot(d[:, 0], d[:, 2], "--", lw=1.3, color=colour[q], dashes=(2.5, 1.5), zorder=4)
    ax.set_yscale("log")
    ax.set_ylabel(label, fontsize=8)
    ax.grid(alpha=0.3, which="both")
    handles, _ = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], ls="--", lw=1.3, color="0.3", dashes=(2.5, 1.5),
                          label="coherence\nlimit"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.tick_params(labelbottom=False)


def draw_maintenance(t: MaintenanceTimeline, path: Path) -> None:
    """The figure: checks and recalibrations per row (qubit or coupler), the true X error of
    each qubit and the true CZ error of each coupler with their coherence limits, the
    excess of every gate over its limit (what calibration can remove), the shots per hour."""
    targets = [q for q in t.qubits if any(q in s for _, s in t.samples)]
    qubits = [q for q in targets if "-" not in q]
    pairs = [q for q in targets if "-" in q]
    n = max(1, len(t.qubits))
    heights = ([max(1.2, 0.32 * n)] + ([2.4] if qubits else []) + ([2.0] if pairs else [])
               + ([2.4] if targets else []) + [1.3])
    fig = Figure(figsize=(10.0, 1.0 + sum(heights)), dpi=_DPI, layout="constrained")
    gs = fig.add_gridspec(len(heights), 1, height_ratios=heights)
    ax = fig.add_subplot(gs[0])
    row = {q: i for i, q in enumerate(t.qubits)}
    colour = {q: f"C{i % 10}" for i, q in enumerate(t.qubits)}
    t0 = t.start_clock_s
    checks = [e for e in t.events if e.action == "check"]
    for status, c in _STATUS.items():
        pts = [((e.time_s - t0) / 3600.0, row[e.qubit]) for e in checks if e.status == status]
        if pts:
            x, y = zip(*pts, strict=True)
            ax.plot(x, y, "o", ms=3.5 if status == "in_spec" else 5, color=c, mec="black", mew=0.3,
                    ls="none", zorder=3)
    cal = [((ts - t0) / 3600.0, row[q]) for ts, q, _ in t.recalibrations if q in row]
    if cal:
        x, y = zip(*cal, strict=True)
        ax.plot(x, y, "D", ms=8, mfc="none", mec="#1565c0", mew=1.4, ls="none", zorder=4)
    ax.set_yticks(range(n), list(t.qubits) or [""], fontsize=8)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlim(0, t.hours)
    ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], marker="o", ls="none", color=c, mec="black", mew=0.3, label=f"check {s}")
               for s, c in _STATUS.items()]
    handles.append(Line2D([], [], marker="D", ls="none", mfc="none", mec="#1565c0", mew=1.4,
                          label="recalibration accepted"))
    ax.legend(handles=handles, fontsize=8, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.set_title(f"maintenance ({t.strategy}): checks and recalibrations per qubit and coupler", fontsize=9,
                 pad=18)
    ax.tick_params(labelbottom=False)
    k = 1
    if qubits:
        _error_panel(fig.add_subplot(gs[k], sharex=ax), t, qubits, colour, "true X error")
        k += 1
    if pairs:
        _error_panel(fig.add_subplot(gs[k], sharex=ax), t, pairs, colour, "true CZ error")
        k += 1
    if targets:
        ax_x = fig.add_subplot(gs[k], sharex=ax)
        k += 1
        for q in targets:
            d = _series(t, q)
            if d.size:
                # clipped at 1e-6 so a log axis keeps an error at (or, by the limit's
                # approximation, a hair below) its limit
                ax_x.plot(d[:, 0], np.maximum(d[:, 1] - d[:, 2], 1e-6), "-" if q in qubits else "-.",
                          lw=1.0, color=colour[q], label=q)
        ax_x.set_yscale("log")
        ax_x.set_ylabel("error − coherence limit", fontsize=8)
        ax_x.grid(alpha=0.3, which="both")
        ax_x.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
                    title="solid: X\ndash-dot: CZ" if pairs else None, title_fontsize=7)
        ax_x.tick_params(labelbottom=False)
    ax_s = fig.add_subplot(gs[k], sharex=ax)
    sph = list(t.shots_per_hour)
    ax_s.bar(np.arange(len(sph)) + 0.5, sph, width=0.9, color="#78909c")
    ax_s.set_ylabel("shots / hour")
    ax_s.set_xlabel("device time since maintenance began (h)")
    ax_s.grid(axis="y", alpha=0.3)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=_DPI)


def maintenance_section(t: MaintenanceTimeline, folder: Path) -> list[str]:
    """The section's HTML lines; draws ``maintenance.png`` into ``folder``."""
    draw_maintenance(t, folder / MAINTENANCE_PNG)
    rows = []
    for q in t.qubits:
        ev = [e for e in t.events if e.qubit == q]
        errs = [s[q] for _, s in t.samples if q in s]
        x = f"{np.mean([v[0] for v in errs]):.3g}" if errs else "n/a"
        lim = f"{np.mean([v[2] for v in errs]):.3g}" if errs else "n/a"
        rows.append([q, sum(1 for e in ev if e.action == "check"),
                     sum(1 for e in ev if e.action == "check" and e.status != "in_spec"),
                     sum(1 for _, qq, _ in t.recalibrations if qq == q), sum(e.shots for e in ev), x, lim])
    head = ["qubit or coupler", "checks", "not in spec", "recalibrations", "shots",
            "time-averaged true error (X; CZ of a coupler)", "coherence limit"]
    table = ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
             + "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
             + "</table>")
    total = sum(t.shots_per_hour)
    return ["<h2>Maintenance</h2>",
            f'<img src="{MAINTENANCE_PNG}" alt="maintenance: checks, recalibrations, gate error, shots per hour">',
            f"<p>{html.escape(t.strategy)} strategy, {t.hours:g} h of device time, {total} shots "
            f"({total / t.hours:.0f} per hour). Gate errors are the simulation's truth for the store's "
            "pulses at each tick (evaluation only, never read by a decision).</p>",
            table]


def qubit_rows(nodes: Sequence[str]) -> tuple[str, ...]:
    """The qubits (and pairs) the nodes target, in first-seen order."""
    return tuple(dict.fromkeys(n.partition(":")[2] for n in nodes))


__all__ = ["MAINTENANCE_PNG", "MaintenanceEvent", "MaintenanceTimeline", "draw_maintenance", "maintenance_section",
           "qubit_rows"]
