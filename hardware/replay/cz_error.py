"""The CZ error a multi-qubit backend's own counts give for a set of gate parameters.

A CZ session's report says what its probes read at 200 shots each, with the policy
acting on them. Judging where a session started and ended needs the same reading done
again, outside the session, at many shots: that is ``measured_cz_error``. It plays the
CZ env's own probes (``cz_calibration_core``: the seven reference sequences without the
gate, then the eight probes of the gate) on the backend's frames (``session_channels``),
behind the safety envelope of ``two_qubit_limits``, and reads them with the env's
analysis. Nothing in it comes from a simulator's hidden state, so it applies to qibolab's
emulator and to instruments alike.

What it reports (every number from counts of outcomes 00, 01, 10, 11, q0 first):

- ``conditional_phase_rad``: q1's Ramsey phase with q0 in |1⟩ minus with q0 in |0⟩, each
  less its no-gate reference; π for a CZ. ``conditional_phase_error_rad`` = |φ − π|
  wrapped to [0, π];
- ``target_phase_rad``, ``control_phase_rad``: the residual single-qubit phases of q1 and
  q0 (0 when the virtual Zs are right);
- ``leakage``: the fraction read "01" after one CZ from |11⟩, less that fraction without
  the gate. |02⟩ reads "01" (every level ≥ 1 reads as 1), so this is the population the
  gate left in |02⟩ (plus any q0 decay during it, which it cannot tell apart);
- ``eleven_loss``: the |11⟩ fraction without the gate minus after one gate;
- ``cz_error``: ``cz_calibration_core.estimated_error`` of those readings, the env's own
  error figure: 1 − F of diag(1, e^{iθt}, e^{iθc}, e^{i(θt+θc+φ)}) against CZ, plus a
  quarter of ``eleven_loss``, plus the repetition-amplified leak; ``phase_error`` is its
  first part alone.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ...envs import cz_calibration_core as core
from ..backend import Backend
from ..guard import GuardedBackend
from ..ledger import ShotLedger
from ..program_compiler import from_sequence
from ..safety import SafetyLimits
from .two_qubit import session_channels, two_qubit_limits

_OUTCOMES = ("00", "01", "10", "11")


@dataclass(frozen=True)
class CZErrorMeasurement:
    """One ``measured_cz_error`` reading (module docstring for each field)."""

    params: tuple[float, float, float, float]
    shots: int
    conditional_phase_rad: float
    conditional_phase_error_rad: float
    target_phase_rad: float
    control_phase_rad: float
    leakage: float
    eleven_loss: float
    phase_error: float
    cz_error: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _counts_row(counts: dict[str, int]) -> list[int]:
    return [int(counts.get(k, 0)) for k in _OUTCOMES]


class _Probes:
    """Sequences played through the guard (the only way a program reaches a backend), one
    job each, under keys unique to this measurement."""

    def __init__(self, guard: GuardedBackend, channels: dict[str, Any], dt_s: float, shots: int) -> None:
        self.guard = guard
        self.channels = channels
        self.dt_s = dt_s
        self.shots = shots
        self.run_id = uuid.uuid4().hex

    def run(self, seqs: Sequence[Any], tag: str) -> np.ndarray:
        """(1, len(seqs), 4) counts of outcomes 00, 01, 10, 11."""
        rows = []
        for i, seq in enumerate(seqs):
            prog = from_sequence(seq, self.channels, self.dt_s, shots=self.shots)
            handle = self.guard.submit(prog, self.shots, f"cz-error:{self.run_id}:{tag}:{i}")
            rows.append(_counts_row(dict(self.guard.result(handle, 600.0).counts)))
        return np.asarray(rows, dtype=np.int64)[None]


def measured_cz_error(backend: Backend, params: Sequence[float], shots: int = 10_000, *,
                      limits: SafetyLimits | None = None, ramp_s: float = 5e-9) -> CZErrorMeasurement:
    """Play the CZ env's reference and probe sequences for ``params`` (amplitude_phi0,
    length_s, phase_q0_rad, phase_q1_rad) on ``backend``, ``shots`` each, and read the CZ
    error from the counts (module docstring). ``limits``: the envelope (default
    ``two_qubit_limits(backend)``, raised to ``shots`` per job)."""
    p = np.asarray(params, dtype=np.float64)
    if p.shape != (4,) or not np.all(np.isfinite(p)):
        raise ValueError(f"params={list(params)!r}: allowed 4 finite numbers {core.PARAMETER_NAMES}")
    if isinstance(shots, bool) or not isinstance(shots, int) or not 1 <= shots <= 1_000_000:
        raise ValueError(f"shots={shots!r}: allowed an integer in [1, 1000000]")
    channels = session_channels(backend.capabilities())
    missing = sorted({"drive:q0", "drive:q1", core.FLUX_CHANNEL} - set(channels))
    if missing:
        raise ValueError(f"backend {getattr(backend, 'name', type(backend).__name__)!r}: no frame for "
                         f"{missing}: allowed a backend with frames q0_drive, q1_drive and q1_flux")
    if limits is None:
        limits = two_qubit_limits(backend, max_shots_per_job=max(shots, 10_000))
    dt_s = backend.capabilities().sample_time_s[channels[core.FLUX_CHANNEL].port]
    pulse = core.CZPulse(ramp_s=ramp_s, dt_s=dt_s)
    probe = _Probes(GuardedBackend(backend, limits, ShotLedger(None, fsync=False)), channels, dt_s, shots)
    ref = probe.run(core.reference_sequences(pulse), "reference")
    probes = probe.run(core.probe_sequences(pulse, p), "probe")
    offsets = core.reference_offsets(ref)
    r = core.analyse(probes, offsets=offsets)
    frac_ref = ref[0, 6] / ref[0, 6].sum()
    frac_one = probes[0, 6] / probes[0, 6].sum()
    cond = float(r.conditional_phase[0])
    zero = np.zeros(1)
    phase_err = core.estimated_error(r.target_phase, r.conditional_phase, r.control_phase,
                                     zero, zero, p11_ref=0.0)
    return CZErrorMeasurement(
        params=(float(p[0]), float(p[1]), float(p[2]), float(p[3])), shots=shots,
        conditional_phase_rad=cond,
        conditional_phase_error_rad=float(abs(math.remainder(cond - math.pi, 2 * math.pi))),
        target_phase_rad=float(r.target_phase[0]), control_phase_rad=float(r.control_phase[0]),
        leakage=float(frac_one[1] - frac_ref[1]), eleven_loss=float(frac_ref[3] - frac_one[3]),
        phase_error=float(phase_err[0]), cz_error=float(r.estimated_error[0]))


__all__ = ["CZErrorMeasurement", "measured_cz_error"]
