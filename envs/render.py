"""Pictures of an environment's state for ``render_mode="rgb_array"`` (matplotlib, Agg).

Kept apart from the environments so that plotting never runs unless asked for and the
envs import no plotting library.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray


def render_calibration(
    waveform: NDArray[np.complex128], dt_s: float, history: Sequence[NDArray[np.float64]],
    labels: Sequence[str], *, title: str = "", width_px: int = 640, height_px: int = 320,
) -> NDArray[np.uint8]:
    """The current pulse (I, Q) and the recent probe measurements as an RGB array.

    Args:
        waveform: (S,) complex samples.
        history: per step, (K,) measured excited fractions (NaN where not measured).
        labels: K probe names.
    Returns:
        (height_px, width_px, 3) uint8.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 80
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    w = np.asarray(waveform)
    t_ns = np.arange(w.size + 1) * dt_s * 1e9
    ax1.stairs(w.real, t_ns, label="I")
    ax1.stairs(w.imag, t_ns, label="Q")
    ax1.set_xlabel("time (ns)")
    ax1.set_ylabel("amplitude (full scale)")
    ax1.legend(loc="upper right", fontsize=7)
    ax1.set_title(title, fontsize=8)
    recent = np.array(list(history)[-20:]) if len(history) else np.zeros((0, len(labels)))
    if recent.size:
        for k, name in enumerate(labels):
            ax2.plot(np.arange(recent.shape[0]), recent[:, k], marker=".", label=name)
    ax2.axhline(0.5, color="gray", lw=0.5)
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("recent steps")
    ax2.set_ylabel("excited fraction")
    if recent.size:
        ax2.legend(loc="upper right", fontsize=6)
    fig.tight_layout()
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])
