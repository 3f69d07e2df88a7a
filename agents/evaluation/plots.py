"""The evaluation's PNG plots: infidelity against shots (every method, and a zoom on the
ones near the coherence limit), pulse shapes, and the drift-tracking timeline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def write_plots(out_dir: Path, rows: Sequence[Mapping[str, Any]], shapes: Mapping[str, NDArray[np.complex128]],
                dt_s: float, timelines: Mapping[str, tuple[FloatArray, FloatArray]]) -> list[Path]:
    """infidelity_vs_shots.png, pulse_shapes.png, drift_timeline.png (those with data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    cal = [r for r in rows if r["task"] == "calibration"]
    if cal:
        paths.append(plot_calibration(cal, out_dir / "infidelity_vs_shots.png"))
    if shapes:
        fig, (ax_i, ax_q) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
        for name, w in shapes.items():
            # Sample k holds from k·dt to (k+1)·dt, the last one included: stairs over the
            # n + 1 edges draw it as a step, where step(where="post") leaves it a spike.
            edges = (np.arange(len(w) + 1) * dt_s) * 1e9
            ax_i.stairs(np.real(w), edges, label=name)
            ax_q.stairs(np.imag(w), edges, label=name)
        ax_i.set_ylabel("I (full scale)")
        ax_q.set_ylabel("Q (full scale)")
        ax_q.set_xlabel("time (ns)")
        ax_i.legend(fontsize=8)
        fig.tight_layout()
        paths.append(out_dir / "pulse_shapes.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    if timelines:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for name, (t, e) in timelines.items():
            ax.plot(np.asarray(t) / 3600.0, e, label=name)
        ax.set_yscale("log")
        ax.set_xlabel("device time (h)")
        ax.set_ylabel("interval error (true)")
        ax.set_title("interval error: true gate infidelity + a circuit's frame error from the residual\n"
                     "detuning, averaged over each decision interval (what DriftTracking's reward penalises)",
                     fontsize=8)
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(out_dir / "drift_timeline.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


# Methods whose median ratio reaches this at some budget get the zoomed panel.
ZOOM_MEDIAN_RATIO = 1.5


def method_offsets(methods: Sequence[str], spread: float = 0.05) -> dict[str, float]:
    """Multiplicative x offsets, one per method, evenly spaced around 1 (even on a log
    axis), so markers of methods that agree at one budget do not hide each other."""
    n = len(methods)
    return {m: 1.0 + spread * (k - (n - 1) / 2) for k, m in enumerate(methods)}


def _plain_budget_axis(ax: Any, budgets: Sequence[int]) -> None:
    # Ticks at the budgets, written out (200, 1,000, ...), no 10^x labels or minor ticks.
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.xaxis.set_major_locator(FixedLocator(list(budgets)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{b:,}" for b in budgets])
    # Room for the offsets on both sides, and every budget's tick inside the axis.
    ax.set_xlim(min(budgets) / 1.25, max(budgets) * 1.25)


def plot_calibration(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """``infidelity_vs_shots.png``: (1 − F)/coherence limit against the shot budget.

    Left: every method, median with its p10–p90 band, log axes. Right: the methods that
    come near the limit (median <= ``ZOOM_MEDIAN_RATIO``× at some budget) on a linear
    ratio axis, median (filled) and p90 (open) per budget, each method shifted slightly
    along x so lines that agree to the third digit stay visible. Same numbers, two scales.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cal = [r for r in rows if r["task"] == "calibration"]
    methods = sorted({str(r["method"]) for r in cal})
    stats: dict[str, tuple[list[int], list[FloatArray]]] = {}
    for m in methods:
        budgets = sorted({int(r["budget"]) for r in cal if r["method"] == m})
        stats[m] = (budgets, [np.array([float(r["ratio"]) for r in cal if r["method"] == m and int(r["budget"]) == b])
                              for b in budgets])
    colors = {m: f"C{k % 10}" for k, m in enumerate(methods)}
    near = [m for m in methods if any(np.median(v) <= ZOOM_MEDIAN_RATIO for v in stats[m][1])]
    offsets = method_offsets(methods)
    all_budgets = sorted({b for m in methods for b in stats[m][0]})
    fig, axes = plt.subplots(1, 2 if near else 1, figsize=(11 if near else 6, 4.2), squeeze=False)
    ax = axes[0, 0]
    for m in methods:
        budgets, vals = stats[m]
        x = [b * offsets[m] for b in budgets]
        ax.plot(x, [np.median(v) for v in vals], "o-", color=colors[m], label=m)
        ax.fill_between(x, [np.percentile(v, 10) for v in vals], [np.percentile(v, 90) for v in vals],
                        color=colors[m], alpha=0.15)
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
    _plain_budget_axis(ax, all_budgets)
    ax.axhline(1.0, color="k", lw=0.8, ls=":")
    ax.set_xlabel("shot budget per device (methods offset for legibility)")
    ax.set_ylabel("(1 − F) / coherence limit  (median, p10–p90)")
    ax.set_title("all methods", fontsize=9)
    ax.legend(fontsize=8)
    if near:
        zoom = axes[0, 1]
        top = 1.0
        for m in near:
            budgets, vals = stats[m]
            x = [b * offsets[m] for b in budgets]
            med = [float(np.median(v)) for v in vals]
            p90 = [float(np.percentile(v, 90)) for v in vals]
            zoom.plot(x, med, "o-", color=colors[m], label=f"{m} median")
            zoom.plot(x, p90, "^--", color=colors[m], mfc="none", label=f"{m} p90")
            top = max([top, *(q for q in p90 if q <= 2 * ZOOM_MEDIAN_RATIO)])
        zoom.set_xscale("log")
        _plain_budget_axis(zoom, sorted({b for m in near for b in stats[m][0]}))
        zoom.ticklabel_format(axis="y", style="plain", useOffset=False)
        zoom.set_ylim(0.995, top + 0.1 * (top - 0.995) + 1e-3)
        zoom.axhline(1.0, color="k", lw=0.8, ls=":")
        zoom.set_xlabel("shot budget per device (methods offset for legibility)")
        zoom.set_ylabel("(1 − F) / coherence limit")
        zoom.set_title(f"zoom: methods with median <= {ZOOM_MEDIAN_RATIO:g}× at some budget", fontsize=9)
        zoom.grid(True, axis="y", alpha=0.3)
        zoom.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
