"""The IQ plot of a ``ReadoutClassification`` result: the blobs coloured by prepared state,
the fitted centres, the boundary (or the three-state regions) and the fidelity, drawn from
the result's ``data`` alone, so a journal replays it without the device."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .readout import ThreeStateDiscriminator


def plot_iq(data: Mapping[str, Any], title: str = "") -> Any:
    """A matplotlib Figure of ``ReadoutClassification`` result data: points coloured by the
    prepared state, the fitted centres, the two-state boundary (or, when the data has a
    covariance, the three-state classifier's regions), the fidelity in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    colours = ("tab:blue", "tab:red", "tab:green")
    pts = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in data["points"]]
    allp = np.concatenate(pts)
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    pad = 0.08 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    if "covariance" in data:
        disc = ThreeStateDiscriminator(tuple(tuple(c) for c in data["centres"]),
                                       tuple(tuple(r) for r in data["covariance"]))
        gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
        cls = disc.classify(np.stack([gx, gy], axis=-1))
        ax.contourf(gx, gy, cls, levels=[-0.5, 0.5, 1.5, 2.5], colors=colours, alpha=0.08)
        ax.contour(gx, gy, cls, levels=[0.5, 1.5], colors="0.4", linewidths=0.8)
    for i, p in enumerate(pts):
        ax.scatter(p[:, 0], p[:, 1], s=5, alpha=0.45, color=colours[i % 3], label=f"prepared {data['states'][i]}",
                   edgecolors="none")
    for i, c in enumerate(data["centres"]):
        ax.plot(c[0], c[1], marker="X", markersize=11, color=colours[i % 3], markeredgecolor="k")
    if "covariance" not in data:  # the three-state regions are drawn instead
        b = np.asarray(data["boundary"])
        ax.plot(b[:, 0], b[:, 1], "k--", linewidth=1.4, label="boundary")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(data.get("x_label", "I"))
    ax.set_ylabel(data.get("y_label", "Q"))
    head = f"{title}: " if title else ""
    kind = "three-state " if "covariance" in data else ""
    ax.set_title(f"{head}{kind}assignment fidelity {100 * float(data['fidelity']):.2f} %", fontsize=10)
    ax.legend(fontsize=8, loc="best", markerscale=2)
    fig.tight_layout()
    return fig


def save_iq_plot(data: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    """``plot_iq`` written as a PNG."""
    import matplotlib.pyplot as plt

    fig = plot_iq(data, title)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
