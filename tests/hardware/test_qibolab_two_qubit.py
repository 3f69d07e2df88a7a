"""Two-qubit programs end to end on qibolab's emulator (``pulsecal_emulator_2q_coupled``):
envs channel sequences → IR → guard → qibolab flux, drive and cross-resonance channels →
correlated two-qubit counts.

Closed forms the counts are checked against (the platform's own parameters, read back):

- flux: the emulator's SQUID formula f(Φ) = (f0 − α)·|cos πΦ|^{1/2} + α puts q0 on q1's
  frequency at cos πΦ = ((f1 − α)/(f0 − α))²; there the exchange 2πJ(a†b + h.c.) swaps
  |10⟩ ↔ |01⟩ with P(01) = sin²(2πJ·t), complete at t = 1/(4J);
- cross-resonance: with q0 in |0⟩, a tone on q0's line at q1's frequency drives q1 at the
  rate J·Ω/Δ to lowest order (Δ = f0 − f1, Ω = q0's Rabi rate times the amplitude), so
  P(q1 = 1) = sin²(π·J·Ω/Δ·∫u dt / u_max) for a flat-top pulse of amplitude u_max.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hw_helpers import numpy_global_seed, shipped_qibolab_backend

from pulsecal.envs.protocol import Barrier, Measure, Play, PulseSequence
from pulsecal.hardware import ir
from pulsecal.hardware.guard import GuardedBackend
from pulsecal.hardware.ledger import ShotLedger
from pulsecal.hardware.safety import SafetyLimits, SafetyViolation

SHOTS = 200


@pytest.fixture(scope="module")
def coupled() -> Iterator[Any]:
    pytest.importorskip("qibolab")
    with numpy_global_seed(11), shipped_qibolab_backend("pulsecal_emulator_2q_coupled") as backend:
        yield backend


def _channels(backend: Any) -> dict[str, ir.Frame]:
    caps = backend.capabilities()
    return {"drive:q0": caps.frame("q0_drive"), "drive:q1": caps.frame("q1_drive"),
            "drive:q0@q1": caps.frame("q0_q1_cr"), "flux:q0": caps.frame("q0_flux")}


def _params(backend: Any) -> tuple[float, float, float, float, float]:
    """(f0, f1, α0, J, Ω0) in Hz from the platform's configs."""
    ham = backend.platform.config("hamiltonian")
    q0, q1 = ham.qubits[0], ham.qubits[1]
    j = next(iter(ham.pairs.values())).coupling
    rabi = backend.platform.config(backend.platform.qubits[0].drive).rabi_frequency
    return q0.frequency, q1.frequency, q0.anharmonicity, j, rabi


def _pi_pulse(rabi_hz: float) -> np.ndarray:
    g = ir.Gaussian(40e-9, 10e-9, 1.0).samples(1e-9).real
    return g / (2 * rabi_hz * float(np.sum(g)) * 1e-9)


def _run(backend: Any, seq: PulseSequence, limits: SafetyLimits, key: str) -> dict[str, int]:
    prog = ir.from_sequence(seq, _channels(backend), backend.dt_s, shots=SHOTS)
    g = GuardedBackend(backend, limits, ShotLedger(None, fsync=False))
    counts = dict(g.result(g.submit(prog, SHOTS, key), 10.0).counts)
    assert sorted(counts) == ["00", "01", "10", "11"] and sum(counts.values()) == SHOTS
    return counts


def _lab_limits(backend: Any, **changes: object) -> SafetyLimits:
    args: dict[str, object] = {"allowed_frames": backend.capabilities().frames, "max_pulse_duration_s": 1e-6,
                               "max_drive_energy_s": 1e-6}
    args.update(changes)
    return SafetyLimits(**args)  # type: ignore[arg-type]


def _resonant_flux(backend: Any) -> float:
    f0, f1, a0, _, _ = _params(backend)
    return math.acos(((f1 - a0) / (f0 - a0)) ** 2) / math.pi


def test_coupled_platform_exposes_drive_cr_and_flux_frames(coupled: Any) -> None:
    caps = coupled.capabilities()
    assert [(f.name, f.port, f.frequency_hz, f.kind) for f in caps.frames] == [
        ("q0_drive", "0/drive", 5.0e9, "drive"), ("q1_drive", "1/drive", 4.8e9, "drive"),
        ("q0_q1_cr", "0/drive_cr1", 4.8e9, "cr"), ("q0_flux", "0/flux", 0.0, "flux")]
    assert caps.drive_frames == {0: "q0_drive", 1: "q1_drive"}


def test_flux_pulse_swaps_the_excitation_to_the_neighbour(coupled: Any) -> None:
    _, _, _, j, rabi = _params(coupled)
    n = round(1 / (4 * j) / coupled.dt_s)  # 25 samples: a full swap
    flux = _resonant_flux(coupled)
    swap = PulseSequence((Play(_pi_pulse(rabi), channel="drive:q0"), Barrier(),
                          Play(np.full(n, flux), channel="flux:q0"), Measure(("q0", "q1"))))
    # The default envelope refuses the flux step (0.123 in one sample, at sample 40 where the
    # flux line starts after the π pulse, > 0.1 per sample) and
    # names the channel; a lab that allows such steps says so in its limits.
    with pytest.raises(SafetyViolation, match=r"flux frame 'q0_flux' sample 40: max_flux_slew_per_sample=0\.12"):
        _run(coupled, swap, _lab_limits(coupled), "default-limits")
    counts = _run(coupled, swap, _lab_limits(coupled, max_flux_slew_per_sample=0.2), "swap")
    assert counts["01"] >= 0.9 * SHOTS, counts  # first bit q0, second q1: the excitation moved


@pytest.mark.slow
def test_idle_half_swap_and_cross_resonance_follow_their_closed_forms(coupled: Any) -> None:
    f0, f1, _, j, rabi = _params(coupled)
    idle = PulseSequence((Play(_pi_pulse(rabi), channel="drive:q0"), Barrier(),
                          Play(np.full(25, 0.0), channel="flux:q0"), Measure(("q0", "q1"))))
    counts = _run(coupled, idle, _lab_limits(coupled), "no-swap")
    assert counts["10"] >= 0.9 * SHOTS, counts  # parked at the sweet spot: nothing moves
    n = 12
    half = PulseSequence((Play(_pi_pulse(rabi), channel="drive:q0"), Barrier(),
                          Play(np.full(n, _resonant_flux(coupled)), channel="flux:q0"), Measure(("q0", "q1"))))
    counts = _run(coupled, half, _lab_limits(coupled, max_flux_slew_per_sample=0.2), "half")
    p01 = math.sin(2 * math.pi * j * n * coupled.dt_s) ** 2
    # 200 shots: binomial σ ≈ 0.035; 0.12 leaves room for the non-resonant dressing.
    assert abs(counts["01"] / SHOTS - p01) < 0.12, (counts, p01)
    assert counts["01"] + counts["10"] >= 0.95 * SHOTS, counts

    amp = 0.4
    ramp = np.sin(np.linspace(0, np.pi / 2, 10)) ** 2
    w = amp * np.concatenate([ramp, np.ones(200), ramp[::-1]])
    cr = PulseSequence((Play(w + 0j, channel="drive:q0@q1"), Measure(("q0", "q1"))))
    # Above the envelope's CR limit the tone is refused before it runs, by name.
    with pytest.raises(SafetyViolation, match=r"cr frame 'q0_q1_cr' sample \d+: max_cr_amplitude=0\.4"):
        _run(coupled, cr, _lab_limits(coupled, max_cr_amplitude=0.3), "cr-refused")
    counts = _run(coupled, cr, _lab_limits(coupled), "cr")
    rate = j * rabi * amp / (f0 - f1)
    p1 = math.sin(math.pi * rate * float(np.sum(w)) / amp * coupled.dt_s) ** 2
    assert abs((counts["01"] + counts["11"]) / SHOTS - p1) < 0.12, (counts, p1)
    assert counts["00"] + counts["01"] >= 0.95 * SHOTS, counts  # the control stays in |0⟩
