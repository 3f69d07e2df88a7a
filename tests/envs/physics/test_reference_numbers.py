"""PHYSICS.md's DRAG table, first row: α/2π = −300 MHz, 20 ns, σ = T/4, closed system,
fine time grid, virtual-Z allowed. Plain Gaussian 1 − F ≈ 3.0e-3, DRAG with
β = −1/(2α_ang) ≈ 9e-6. Each must hold within a factor 1.5.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pulsecal.envs.physics import Transmon, gate_fidelity, unitaries


def lifted_gaussian_pi_pulse(tr: Transmon, duration_s: float, beta_s: float) -> np.ndarray:
    """I: lifted Gaussian (σ = T/4, zero at the ends) scaled so ∫I dt = 1/(2Ω_R), sampled at
    sample midpoints; Q = β·dI/dt (analytic derivative)."""
    n = round(duration_s / tr.dt_s)
    t = (np.arange(n) + 0.5) * tr.dt_s
    sigma = duration_s / 4
    g = np.exp(-((t - duration_s / 2) ** 2) / (2 * sigma**2))
    g0 = math.exp(-((duration_s / 2) ** 2) / (2 * sigma**2))
    shape = (g - g0) / (1 - g0)
    dshape = -(t - duration_s / 2) / sigma**2 * g / (1 - g0)
    amp = 1.0 / (2 * tr.rabi_max_hz) / (shape.sum() * tr.dt_s)
    return amp * (shape + 1j * beta_s * dshape)


@pytest.mark.parametrize(
    ("drag", "expected"), [(False, 3.0e-3), (True, 9e-6)], ids=["gaussian", "drag"]
)
def test_drag_table_first_row(drag: bool, expected: float) -> None:
    tr = Transmon(levels=3, anharmonicity_hz=-300e6, rabi_max_hz=100e6, dt_s=0.05e-9)
    beta = -1.0 / (2 * 2 * math.pi * tr.anharmonicity_hz) if drag else 0.0
    if drag:
        assert beta == pytest.approx(0.265e-9, rel=0.01)  # positive for negative α
    u = unitaries(tr, lifted_gaussian_pi_pulse(tr, 20e-9, beta))
    infidelity = 1.0 - float(gate_fidelity(u, "X", kind="unitary", virtual_z=True))
    assert expected / 1.5 <= infidelity <= expected * 1.5
