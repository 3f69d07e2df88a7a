"""The default verification on physics its model lacks: a quasi-static detuning noise, a
TLS that the identity trains' echo decouples, and the RB cross-check's estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pulsecal.envs.calibration import true_metrics_devices
from pulsecal.envs.drag import DragGate, optimal_params
from pulsecal.envs.presets import get_preset
from pulsecal.envs.rb import gates_per_clifford
from pulsecal.envs.stress import QuasiStaticNoiseDevice, TLSDefect, TLSDevice
from pulsecal.envs.verification import (
    Reason,
    VerificationSettings,
    stated_coherence_of,
    verify_devices,
)
from pulsecal.envs.verification_rb import rb_error

GATE = DragGate(20e-9)


def _truth_ratio(dev, p) -> float:  # type: ignore[no-untyped-def]
    truth = true_metrics_devices([dev], GATE.waveforms(p, dev.dt_s))
    assert truth is not None
    return float((1 - truth["fidelity"][0]) / truth["coherence_limit"][0])


def test_rb_error_recovers_the_decay_of_exact_survivals() -> None:
    """Survival B + A·p^m at m = 1 and m = 400, read with the readout's asymptote B: the
    error per play is (1 − p)/2 / (plays per Clifford)."""
    p, a, e0, p1x, m, k, shots = 0.999, 0.45, 0.03, 0.93, 400, 16, 10**6
    b = 1 - 0.5 * (e0 + p1x)
    rows = []
    for length in (1, m):
        n0 = round(shots * (b + a * p**length))
        rows += [[n0, shots - n0]] * k
    r, sd = rb_error(np.array(rows), shots, m, e0, p1x, (1e6, 1e6))
    assert r == pytest.approx((1 - p) / 2 / gates_per_clifford(), rel=1e-3)
    assert 0 < sd < 0.02 * r
    # No signal left above the asymptote at m: nothing to fit.
    flat = np.array([[round(shots * b), shots - round(shots * b)]] * (2 * k))
    assert math.isnan(rb_error(flat, shots, m, e0, p1x, (1e6, 1e6))[0])


def test_a_quasi_static_detuning_noise_is_measured_and_fails_the_gate() -> None:
    """σ = 280 kHz of detuning drawn afresh for every batch, T1 = 290 µs: the noise averages
    to ~1.9× the limit over a 20 ns gate; within one batch it is one offset. The default's
    Ramsey checks, both quadratures in 4 batches, read the noise (its rms per gate within a
    factor 2 of 2π·σ·t), charge it and fail the gate naming the detuning."""
    params = get_preset("transmon_20ns").params
    params = params.replace(transmon=params.transmon.replace(t1_s=290e-6, t2_s=200e-6), p1_given_0=0.02,
                            p0_given_1=0.04)
    dev = QuasiStaticNoiseDevice(params, 280e3, rng=np.random.default_rng(3))
    p = optimal_params(dev.current_transmon(), GATE).as_array()[None]
    assert _truth_ratio(dev, p) > 1.5
    (v,) = verify_devices([dev], GATE, p, [stated_coherence_of(dev)])
    assert not v.calibrated, v.describe()
    assert v.limiting == "detuning"
    want = 2 * math.pi * 280e3 * 20e-9
    assert 0.5 * want < v.checks["detuning_noise_angle"] < 2 * want


def test_a_tls_the_trains_decouple_is_refused_by_the_rb_cross_check() -> None:
    """A TLS 2 MHz above the qubit (g/2π = 0.3 MHz, TLS T1 = 2.7 µs): back-to-back π pulses
    decouple so slow a defect, so the identity trains and the residual checks stay clean
    while one gate entangles with it (true 1 − F > 1.5× the limit). Without the RB
    cross-check the gate passes; random Clifford sequences, which echo nothing, see it."""
    params = get_preset("transmon_20ns").params
    params = params.replace(transmon=params.transmon.replace(t1_s=60e-6, t2_s=100e-6), p1_given_0=0.02,
                            p0_given_1=0.04)
    tls = TLSDefect(detuning_hz=2.0e6, coupling_hz=0.3e6, t1_s=2.7e-6, t2_s=2.7e-6)
    dev = TLSDevice(params, tls, rng=np.random.default_rng(5))
    p = optimal_params(dev.current_transmon(), GATE).as_array()[None]
    assert _truth_ratio(dev, p) > 1.5
    (v,) = verify_devices([dev], GATE, p, [stated_coherence_of(dev)])
    assert not v.calibrated, v.describe()
    dev = TLSDevice(params, tls, rng=np.random.default_rng(5))
    (w,) = verify_devices([dev], GATE, p, [stated_coherence_of(dev)], VerificationSettings(rb_sequences=0))
    assert w.calibrated, w.describe()
    # Refused by the cross-check: its RB error over the threshold, or (here) no RB signal
    # left after m Cliffords chosen for a gate at the threshold.
    assert v.reason is Reason.UNSTABLE_OR_TLS_LIKE and v.limiting == "model"
    assert not v.checks["rb_z"] <= 3.0
