"""Signed error-amplifying sequences for the standard calibration, built from X and SX.

The env's ``calibration.Probe`` families read one quadrature each, so a readout offset
(P("1") at the equator is ½·(1 + p(1|0) − p(0|1)), not ½) looks like a calibration error;
at depth 24 a 2 % offset is a 0.1 % amplitude error, which is the whole error budget
near the coherence limit. A lab therefore runs every probe twice with the signal's sign
flipped (the first π/2 pulse about the opposite axis, or the Ramsey analysis pulse a
half turn further on): the difference cancels the offset exactly and the sum is free
readout information. The sequences here follow the frame conventions of
``calibration.Probe`` (a gate with axis φ is VirtualZ(φ)·Play·VirtualZ(−φ), and the
drive-frequency correction Δ advances the frame by −2π·Δ·duration after every Play and
Delay), so the same X and SX waveforms serve every sequence and the device computes two
propagators per parameter set.
"""

from __future__ import annotations

import math

from pulsecal.envs.calibration import Step, gate_steps_sequence

# ``build``: gate steps -> PulseSequence with merged frames (shared with the envs' probes).
build = gate_steps_sequence


def amplitude_steps(depth: int, sign: int) -> list[Step]:
    """SX (axis 0 for sign +1, π for −1) then X^depth, depth even.

    With an over-rotation ε per X: P+ − P− = C·sin(depth·π·ε)·cos(πε/2), C the contrast.
    """
    return [("SX", 0.0 if sign > 0 else math.pi), *[("X", 0.0)] * depth]


def drag_steps(depth: int, sign: int) -> list[Step]:
    """SY (axis ±π/2) then (X̄·X)^depth: a β error tilts X and X̄ oppositely, so the
    pairs rotate the +X (or −X) state about Y; P+ − P− is odd in β − β_opt."""
    steps: list[Step] = [("SX", sign * math.pi / 2)]
    for _ in range(depth):
        steps += [("X", math.pi), ("X", 0.0)]
    return steps


def ramsey_steps(delay_s: float, analysis_phase: float) -> list[Step]:
    """SX, Delay(τ), SX about axis ψ: P = B + (C/2)·cos(θ + ψ), θ = 2π(δ − Δ)τ + θ0."""
    return [("SX", 0.0), ("D", delay_s), ("SX", analysis_phase)]


def rabi_steps() -> list[Step]:
    """A lone SX: scanned in amplitude, P = B + C·sin²(π·a/(4·a_π))."""
    return [("SX", 0.0)]
