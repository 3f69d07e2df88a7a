"""The idles of the textbook CZ's leakage probe, chosen per pair from its known frequencies.

The probe (``CZTextbook.leakage_length``) reads |11⟩ after three CZs. The leak amplitudes
of the three gates add coherently, each turned by the phase φ that the leaked state (the
tunable qubit's |2⟩ with the control in |0⟩: |02⟩ in the tunable-qubit-first convention)
gains on |11⟩ from one gate to the next. The leaked population after three gates is
therefore ε²·S(φ) with

    S(φ) = |1 + e^{iφ} + e^{2iφ}|² / 9   (1 at φ = 0, zero at φ = ±2π/3),

and φ is a property of the device and the pulse that no prior gives. An idle of d between
the gates adds 2π·Δ·d to φ, where Δ = f02 − f11 is the pair's idle detuning (the flux
is at its idle bias then). Reading every length with idles 0 and d and keeping the larger
loss sees at least W(Δ·d) = min over φ of max(S(φ), S(φ + 2πΔd)) of the peak. W is zero
when Δ·d is a multiple of 1/3 turn: a shift of 0 keeps a cancelling φ, a shift of ±1/3
turn takes one cancelling φ (+2π/3) onto the other (−2π/3). That is the blind spot of a
fixed 1 ns idle on a pair with Δ ≈ 1/3 GHz (ring_8's q7-q0, Δ = 0.31 GHz). W is largest,
1/9, at half a turn (mod 1), which is what ``choose_leakage_idles`` aims for; a quarter
turn gives 0.019 and a sixth 0.060 (``two_idle_sensitivity``, tested).

Δ comes from values known before the CZ: the two qubits' frequencies (measured by the
single-qubit chain; the graph's node reads them from the store) and the tunable qubit's
anharmonicity (the spec sheet's, unless measured), with an uncertainty for what is not
measured. The idle is on
the AWG grid, so the reachable shifts are multiples of Δ·dt; a longer idle reaches nearer
half a turn but turns an error of Δ further, so the choice maximises W averaged over
Δ's uncertainty interval.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

# The probe's gates per sequence (CZTextbook._leakage_pass plays three).
PROBE_GATES = 3
# The idles of a pair whose f02 − f11 is not known: 1 ns, the idle the textbook was tuned
# with on held-out two_transmons_cz devices, where the per-pair choice measured no better
# (docs/cz_calibration.md, "The leakage probe's idle, per pair").
FIXED_IDLES_S = (0.0, 1e-9)
# What is not measured before the CZ: the tunable qubit's anharmonicity, known from the
# spec sheet to about the held-out sampler's spread of ±15 MHz.
DETUNING_UNCERTAINTY_HZ = 15e6
# φ grid of the minimum over the unknown inter-gate phase (W is smooth: 720 points
# resolve it to ~1e-4).
_PHI_TURNS = np.arange(720) / 720.0


def pair_detuning_hz(tunable_hz: float, control_hz: float, tunable_anharmonicity_hz: float) -> float:
    """Δ = f02 − f11 at idle (Hz): E(|2⟩ of the tunable) − E(|1⟩ of each) = f_t + α_t − f_c."""
    for name, v in (("tunable_hz", tunable_hz), ("control_hz", control_hz),
                    ("tunable_anharmonicity_hz", tunable_anharmonicity_hz)):
        if not math.isfinite(float(v)):
            raise ValueError(f"{name}={v!r} is out of range: allowed a finite frequency")
    return float(tunable_hz) + float(tunable_anharmonicity_hz) - float(control_hz)


def repeated_leak_sensitivity(phase_turns: FloatArray | float, gates: int = PROBE_GATES) -> FloatArray:
    """S(φ): the leaked population after ``gates`` coherent leaks turned by φ each (in
    turns), over ``gates``² times one gate's: 1 at φ = 0, zero at φ = k/gates turns."""
    phi = 2 * np.pi * np.asarray(phase_turns, dtype=np.float64)
    s = np.sum(np.exp(1j * np.multiply.outer(phi, np.arange(gates))), axis=-1)
    return np.asarray(np.abs(s) ** 2 / gates**2, dtype=np.float64)


def two_idle_sensitivity(shift_turns: float, gates: int = PROBE_GATES) -> float:
    """W: the least, over the unknown inter-gate phase, of the larger of the two readings'
    sensitivities (idle 0 and an idle that shifts the phase by ``shift_turns``)."""
    a = repeated_leak_sensitivity(_PHI_TURNS, gates)
    b = repeated_leak_sensitivity(_PHI_TURNS + float(shift_turns), gates)
    return float(np.min(np.maximum(a, b)))


def choose_leakage_idles(detuning_hz: float, dt_s: float, *, uncertainty_hz: float = 0.0,
                         max_idle_s: float = 10e-9, gates: int = PROBE_GATES) -> tuple[float, float]:
    """(0, d): the probe's idles for a pair of detuning Δ = ``detuning_hz`` (± ``uncertainty_hz``).

    d is a whole number of AWG samples ``dt_s`` in [dt_s, ``max_idle_s``]: the one whose W
    (``two_idle_sensitivity`` of Δ'·d), averaged over Δ' in [Δ − u, Δ + u], is largest.
    The shortest d within 0.005 of the best is kept (a shorter idle decoheres less and
    turns an error of Δ less)."""
    det, dt, u, top = (float(x) for x in (detuning_hz, dt_s, uncertainty_hz, max_idle_s))
    if not (math.isfinite(det) and 1e6 <= abs(det) <= 5e9):
        raise ValueError(f"detuning_hz={detuning_hz!r} is out of range: allowed |f02 − f11| in [1e6, 5e9] Hz")
    if not (math.isfinite(dt) and 0 < dt <= 10e-9):
        raise ValueError(f"dt_s={dt_s!r} is out of range: allowed (0, 10e-9] s")
    if not (math.isfinite(u) and 0 <= u <= 0.5 * abs(det)):
        raise ValueError(f"uncertainty_hz={uncertainty_hz!r} is out of range: allowed [0, |detuning_hz| / 2]")
    if not (math.isfinite(top) and dt <= top <= 20e-9):
        raise ValueError(f"max_idle_s={max_idle_s!r} is out of range: allowed [dt_s, 20e-9] s")
    if not (isinstance(gates, int) and 2 <= gates <= 25):
        raise ValueError(f"gates={gates!r} is out of range: allowed an integer in [2, 25]")
    dets = det + np.linspace(-u, u, 21) if u > 0 else np.array([det])
    n_max = math.floor(top / dt + 1e-9)
    score = np.array([np.mean([two_idle_sensitivity(float(x) * n * dt, gates) for x in dets])
                      for n in range(1, n_max + 1)])
    n = 1 + int(np.flatnonzero(score >= score.max() - 0.005)[0])
    return 0.0, n * dt


__all__ = ["DETUNING_UNCERTAINTY_HZ", "FIXED_IDLES_S", "PROBE_GATES", "choose_leakage_idles",
           "pair_detuning_hz", "repeated_leak_sensitivity", "two_idle_sensitivity"]
