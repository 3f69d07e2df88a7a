"""Physics demo: a Gaussian and a DRAG X gate on the default transmon.

Prints fidelity (raw and with virtual-Z), leakage and the coherence limit for both
pulses, closed and open system, and saves a PNG of the waveforms and the level
populations during each pulse. This is what `make demo` runs until training lands.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from pulsecal.envs.physics import (
    Transmon,
    coherence_limit,
    gate_fidelity,
    leakage,
    superoperators,
    unitaries,
)


def lifted_gaussian(duration_s: float, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Lifted Gaussian (σ = T/4) and its analytic time derivative at sample midpoints."""
    n = round(duration_s / dt_s)
    t = (np.arange(n) + 0.5) * dt_s
    sigma = duration_s / 4.0
    g = np.exp(-((t - duration_s / 2) ** 2) / (2 * sigma**2))
    g0 = math.exp(-((duration_s / 2) ** 2) / (2 * sigma**2))
    dg = -(t - duration_s / 2) / sigma**2 * g / (1 - g0)
    return (g - g0) / (1 - g0), dg


def x_gate_pulses(tr: Transmon, duration_s: float) -> dict[str, np.ndarray]:
    """Gaussian and DRAG (β = −1/(2α), α in rad/s) π pulses with ∫I dt = 1/(2·Ω_R)."""
    g, dg = lifted_gaussian(duration_s, tr.dt_s)
    amp = 1.0 / (2.0 * tr.rabi_max_hz) / (g.sum() * tr.dt_s)
    beta_s = -1.0 / (2.0 * 2.0 * math.pi * tr.anharmonicity_hz)
    return {"Gaussian": amp * g.astype(np.complex128), "DRAG": amp * (g + 1j * beta_s * dg)}


def level_populations(tr: Transmon, waveform: np.ndarray) -> np.ndarray:
    """(S+1, N) populations of each level after each sample, starting in |0>."""
    prefixes = np.stack([np.concatenate([waveform[:k], np.zeros(len(waveform) - k)])
                         for k in range(len(waveform) + 1)])
    # Zero-padding after the prefix would add free evolution; populations are unchanged by
    # it only for a closed system with no drive, which is the case here.
    us = unitaries(tr, prefixes)
    return np.abs(us[:, :, 0]) ** 2


def run(out_dir: Path, duration_s: float = 20e-9) -> dict[str, dict[str, float]]:
    tr = Transmon()
    pulses = x_gate_pulses(tr, duration_s)
    limit = float(coherence_limit(duration_s, tr.t1_s, tr.t2_s))
    report: dict[str, dict[str, float]] = {}
    print(f"Transmon: {tr}")
    print(f"X gate, {duration_s * 1e9:.0f} ns, σ = T/4; coherence limit 1−F = {limit:.3e}\n")
    print(f"{'pulse':<10}{'1−F closed':>14}{'1−F closed+vZ':>16}{'1−F open+vZ':>14}{'leakage':>12}")
    for name, w in pulses.items():
        u = unitaries(tr, w[None])
        s = superoperators(tr, w[None])
        row = {
            "infidelity_closed": float(1 - gate_fidelity(u, "X", kind="unitary")[0]),
            "infidelity_closed_vz": float(1 - gate_fidelity(u, "X", kind="unitary", virtual_z=True)[0]),
            "infidelity_open_vz": float(
                1 - gate_fidelity(s, "X", kind="superoperator", virtual_z=True)[0]
            ),
            "leakage": float(leakage(u)[0]),
        }
        report[name] = row
        print(f"{name:<10}{row['infidelity_closed']:>14.3e}{row['infidelity_closed_vz']:>16.3e}"
              f"{row['infidelity_open_vz']:>14.3e}{row['leakage']:>12.2e}")
    print(f"\nOpen-system DRAG is {report['DRAG']['infidelity_open_vz'] / limit:.2f}× the coherence limit.")
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "physics_demo.png"
    _plot(tr, pulses, png)
    print(f"Saved {png}")
    return report


def _plot(tr: Transmon, pulses: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(pulses), figsize=(10, 6), sharex=True)
    for col, (name, w) in enumerate(pulses.items()):
        t_ns = np.arange(len(w) + 1) * tr.dt_s * 1e9
        ax = axes[0, col]
        ax.stairs(w.real, t_ns, label="I")
        ax.stairs(w.imag, t_ns, label="Q")
        ax.set_title(f"{name} X gate")
        ax.set_ylabel("amplitude (full scale)")
        ax.legend()
        pops = level_populations(tr, w)
        ax = axes[1, col]
        for lev in range(tr.levels):
            ax.plot(t_ns, pops[:, lev], label=f"|{lev}⟩")
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.set_xlabel("time (ns)")
        ax.set_ylabel("population")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder for the PNG")
    p.add_argument("--duration-ns", type=float, default=20.0)
    args = p.parse_args(argv)
    run(args.out, args.duration_ns * 1e-9)

