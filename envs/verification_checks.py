"""The verification's check sequences: which gate steps each check plays, how its
excited population reads, and the sequences sent to a device (``docs/verification.md``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .drag import DragGate, parameter_rows
from .probes import Step, gate_steps_sequence
from .protocol import Play, PulseSequence
from .verification_settings import StatedCoherence, VerificationSettings

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Check:
    """One check sequence: its gate steps and how its excited population reads.

    ``family`` is "readout", "amplitude", "drag", "detuning" or "train"; for the three
    residual families P1 = m + sign·(C·decay/2)·sin(gain·θ), θ the per-gate angle."""

    name: str
    family: str
    steps: tuple[Step, ...]
    gain: float = 0.0
    sign: float = 1.0
    duration_s: float = 0.0
    train: bool = False
    phase: float = 0.0


def checks(settings: VerificationSettings, gate_s: float, stated: StatedCoherence) -> tuple[Check, ...]:
    """The check set for a gate of ``gate_s`` seconds (identity-train length from ``stated``)."""
    out = [Check("readout_0", "readout", (("D", 0.0),)),
           Check("readout_1", "readout", (("X", 0.0),), duration_s=gate_s)]
    for n in settings.amplitude_depths:
        out.append(Check(f"amplitude_{n}", "amplitude", (("SX", 0.0),) + (("X", 0.0),) * n,
                         gain=n + 0.5, duration_s=(n + 1) * gate_s))
    for n in settings.drag_depths:
        out.append(Check(f"drag_{n}", "drag", (("SX", math.pi / 2),) + (("X", math.pi), ("X", 0.0)) * n,
                         gain=2.0 * n, sign=-1.0, duration_s=(2 * n + 1) * gate_s))
    for tau in settings.ramsey_delays_s:
        out.append(Check(f"ramsey_{tau * 1e9:g}ns", "detuning", (("SX", 0.0), ("D", tau), ("SX", math.pi / 2)),
                         gain=tau / gate_s, duration_s=tau + 2 * gate_s))
    if settings.detuning_noise:
        # The cosine quadrature, SX·τ·SX (an X at zero detuning): with the sine one it
        # measures the Ramsey contrast, which a batch-to-batch detuning noise lowers.
        for tau in settings.ramsey_delays_s:
            out.append(Check(f"ramsey_cos_{tau * 1e9:g}ns", "detuning", (("SX", 0.0), ("D", tau), ("SX", 0.0)),
                             gain=tau / gate_s, duration_s=tau + 2 * gate_s, phase=math.pi / 2))
    n = train_blocks(settings, gate_s, stated)
    # X·X̄·X̄·X is the identity to first order in an amplitude error (the rotations about x
    # cancel), in a DRAG error (X·X̄ and X̄·X turn about ±y) and in a residual detuning (an
    # echo), so the trains see only decay and leakage.
    blocks: tuple[Step, ...] = (("X", 0.0), ("X", math.pi), ("X", math.pi), ("X", 0.0)) * n
    out.append(Check(f"train_even_{n}", "train", blocks, duration_s=4 * n * gate_s, train=True))
    out.append(Check(f"train_odd_{n}", "train", (*blocks, ("X", 0.0)), duration_s=(4 * n + 1) * gate_s,
                     train=True))
    if settings.equator_trains:
        # The same blocks on +x (SY prepares it; rotations about ±x keep it, an amplitude
        # error to all orders): the state sits on the equator and decays with T2. SY maps
        # +x to |1>, SY† to |0>.
        sy, syd = ("SX", math.pi / 2), ("SX", -math.pi / 2)
        out.append(Check(f"equator_a_{n}", "train", (sy, *blocks, sy), duration_s=(4 * n + 1) * gate_s, train=True))
        out.append(Check(f"equator_b_{n}", "train", (sy, *blocks, syd), duration_s=(4 * n + 1) * gate_s, train=True))
    if settings.t1_delay_fraction is not None:
        tau = t1_delay(settings, gate_s, stated)
        out.append(Check("t1_delay", "t1", (("X", 0.0), ("D", tau)), duration_s=tau))
    return tuple(out)


def t1_delay(settings: VerificationSettings, gate_s: float, stated: StatedCoherence) -> float:
    """The T1 check's delay: ``t1_delay_fraction`` × stated T1, within ``max_train_s``
    (less the X before it) and 1 ms."""
    assert settings.t1_delay_fraction is not None
    tau = settings.t1_delay_fraction * stated.t1_s
    if settings.max_train_s is not None:
        tau = min(tau, settings.max_train_s - gate_s)
    return float(max(gate_s, min(tau, 1e-3)))


def train_blocks(settings: VerificationSettings, gate_s: float, stated: StatedCoherence) -> int:
    """Blocks X·X̄·X̄·X of the identity trains: ``train_fraction``/Γ long, 1…4000, the odd
    train at most ``max_train_s`` long."""
    t = settings.train_fraction * 2.0 / (1.0 / stated.t1_s + 1.0 / stated.t2_s)
    n = min(4000, max(1, round(t / (4 * gate_s))))
    if settings.max_train_s is not None:
        # The odd train, (4n + 1) gates, within max_train_s.
        n = min(n, max(1, int((settings.max_train_s / gate_s - 1) // 4)))
    return int(n)


def _decay(check: Check, stated: StatedCoherence) -> float:
    """Contrast left of a check's signal after its duration under the stated T1/T2.

    Amplitude trains rotate the state in the y–z plane (half T1, half T2 on average); DRAG
    trains hold it along x (T2); Ramsey idles on the equator (T2). The factor only scales a
    signal read near P1 = 1/2, so its approximation enters the residuals at second order."""
    r1, r2 = 1.0 / stated.t1_s, 1.0 / stated.t2_s
    rate = 0.5 * (r1 + r2) if check.family == "amplitude" else r2
    return math.exp(-rate * check.duration_s)


def amplitude_peak(gate: DragGate, params: ArrayLike, dt_s: float) -> FloatArray:
    """(B,) peak |u| the X waveform of each row would need before any clipping."""
    p = parameter_rows(params)
    g, dg, _ = gate.envelope(dt_s)
    return np.asarray(np.abs(p[:, :1] * (g[None, :] + 1j * p[:, 1:2] * dg[None, :])).max(axis=1))


# Check families run with ``reference_shots`` (the rest with ``shots_per_check``).
_REFERENCE = ("readout", "train", "t1")


def check_sequences(check_set: Sequence[Check], x: Play, sx: Play, gate_s: float, detuning_hz: float,
                    dt_s: float) -> list[PulseSequence]:
    return [gate_steps_sequence(ch.steps, x, sx, gate_s, detuning_hz, dt_s, name=f"verify_{ch.name}")
            for ch in check_set]
