"""The verification's randomized-benchmarking cross-check (``VerificationSettings.rb_sequences``).

The checks' estimate is a model: coherent residuals of three families, a Markovian decay
measured by echoed identity trains, a modelled leakage. Physics outside it can leave every
check clean while the gate is bad: a TLS a few MHz off the qubit is decoupled by the trains'
back-to-back π pulses (the echo undoes each gate's entanglement with it), and quasi-static
detuning noise looks like one detuning per shot batch. Random Clifford sequences echo
nothing systematically, so such errors add up in them. Before a gate is declared
``calibrated``, random sequences of 1 and of m Cliffords (m chosen so that a gate at the
threshold decays its signal by 1/e) measure the error per play; a gate whose RB error is
above ``threshold`` × the limit at z > ``z_alarm`` fails as ``unstable_or_tls_like``.

RB is not the estimate: on non-Markovian errors it reads more than the gate's own 1 − F
(a TLS's exchange adds up over a sequence; a low-pass tail overlaps the next pulse), so it
only vetoes. The estimate: with the survival asymptote B = 1 − (p(1|0) + P1(X))/2 from the
readout checks, (y_m − B)/(y_1 − B) = p^(m−1), r = (1 − p)/2 per Clifford, r / (plays per
Clifford) per play; the standard error from the scatter over the random sequences (shot
noise and sequence-to-sequence variance together) and from B's shot noise.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .probes import gate_steps_sequence
from .protocol import Play, PulseSequence
from .rb import gates_per_clifford, sequence_steps
from .verification_settings import VerificationSettings

FloatArray = NDArray[np.float64]

# Fixed seed of the random Clifford draws: the check sequences of a verification are fixed,
# like its other checks' depths (a device index is added, so devices do not share them).
_RB_SEED = 20_261_207


def rb_cliffords(settings: VerificationSettings, gate_s: float, limit: float) -> int:
    """m, the long RB length: a gate at ``threshold`` × ``limit`` per play decays the RB
    signal by 1/e over m Cliffords, 4…4000 of them, the sequence within ``max_train_s``."""
    g = gates_per_clifford()
    m = 1.0 / (2.0 * g * settings.threshold * max(limit, 1e-12))
    if settings.max_train_s is not None:
        m = min(m, settings.max_train_s / (gate_s * g) - 2)
    return int(min(4000, max(4, round(m))))


def rb_sequences(settings: VerificationSettings, m: int, x: Play, sx: Play, gate_s: float,
                 detuning_hz: float, dt_s: float, index: int) -> list[PulseSequence]:
    """``rb_sequences`` random sequences of 1 Clifford, then as many of ``m`` (each with its
    inverting Clifford)."""
    rng = np.random.default_rng([_RB_SEED, index])
    out = []
    for length in (1, m):
        for j in range(settings.rb_sequences):
            steps, _ = sequence_steps(rng.integers(0, 24, length).tolist())
            out.append(gate_steps_sequence(steps, x, sx, gate_s, detuning_hz, dt_s, name=f"verify_rb_{length}_{j}"))
    return out


def rb_error(counts: ArrayLike, shots: int, m: int, e0: float, p1x: float,
             readout_shots: tuple[float, float]) -> tuple[float, float]:
    """(error per play, its standard error) from the counts (2·K, 2) of ``rb_sequences``.

    ``e0``, ``p1x`` are the readout checks' P1 (run with ``readout_shots`` shots each);
    NaN when the long sequences' signal is not above the asymptote (nothing to fit)."""
    c = np.asarray(counts, dtype=np.float64).reshape(2, -1, 2)
    surv = c[:, :, 0] / shots  # P(|0>) per sequence, (2, K)
    k = surv.shape[1]
    y = surv.mean(axis=1)
    # Scatter over the random sequences, floored by the binomial variance of the pooled shots.
    var = np.maximum(surv.var(axis=1, ddof=1) / k, np.maximum(y * (1 - y), 0.25 / (k * shots)) / (k * shots))
    b = 1.0 - 0.5 * (e0 + p1x)
    var_b = 0.25 * (max(e0 * (1 - e0), 1 / readout_shots[0]) / readout_shots[0]
                    + max(p1x * (1 - p1x), 1 / readout_shots[1]) / readout_shots[1])
    s1, sm = y[0] - b, y[1] - b
    if not (s1 > 0 and sm > 0):
        return math.nan, math.nan
    g = gates_per_clifford()
    ln_p = (math.log(sm) - math.log(s1)) / (m - 1)
    p = math.exp(min(ln_p, 0.0))
    r = (1.0 - p) / 2.0 / g
    # Delta method on ln p; B enters both signals (correlated).
    d_b = (-1.0 / sm + 1.0 / s1)
    sd_ln = math.sqrt(var[1] / sm**2 + var[0] / s1**2 + d_b**2 * var_b) / (m - 1)
    return float(r), float(0.5 * p * sd_ln / g)
