"""CRCalibration-v0: recover an echoed cross-resonance (ECR) gate on a fixed-frequency pair.

The env is thin over ``envs.cr_calibration_core`` (pulses, probe sequences, analysis,
truth and the batched core); docs/cr_calibration.md describes the task and its numbers.
"""

from __future__ import annotations

from .cr_calibration_core import CRCalibrationCore
from .vector import BatchedVectorEnv, SingleCoreEnv


class CRCalibrationEnv(SingleCoreEnv):
    """Calibrate an ECR gate (control q0, target q1) from CR-tomography signals.

    ## Description
    The gate is CR(+)·X_c·CR(−): two flat-top Gaussian-square CR halves on
    ``drive:q0@q1``, each with a simultaneous cancellation tone on ``drive:q1`` (both at
    the target's frame), negated in the second half, and a Gaussian π pulse on the
    control between them. Every step runs CR Hamiltonian tomography of one CR half at the
    current setting: six sequences (control |0⟩ / |1⟩ × target measured along x, y, z),
    ``shots_per_sequence`` shots each, through ``Device.run``.

    ## Action Space
    ``Box(-1, 1, (4,), float32)``: changes of the CR amplitude (× ``amp_step`` × the
    nominal amplitude), the CR phase (× ``phase_step_rad``), the cancellation amplitude
    (× ``cancel_step``) and its phase (× ``phase_step_rad``).

    ## Observation Space
    ``Box(-1, 1, (11,), float32)``: the measured target Bloch components ⟨x⟩, ⟨y⟩, ⟨z⟩
    with the control in |0⟩ and in |1⟩ (raw, readout error included); the CR amplitude
    relative to nominal − 1, the CR phase / π, the cancellation amplitude / 0.2, its
    phase / π; 2 × (budget fraction left) − 1. No truth.

    ## Rewards
    −``half_cr_error`` of the measured Bloch vectors: the squared distance from an ideal
    RZX(±π/4) half (no x components, no common y, |Δy|/2 = sin π/4, mean z = cos π/4).
    Measured only.

    ## Starting State
    A device from ``MultiQubitSampler(preset)`` (or the preset, ``randomize_device=False``,
    or ``options["params"]``); the start is the spec-sheet setting (perturbative ZX rate)
    with the CR amplitude × (1 + U(±``amp_start_spread``)), phase + U(±
    ``phase_start_spread_rad``), cancellation U(0, ``cancel_start_max``) at a random
    phase. The reset runs the first tomography.

    ## Episode End
    Terminated when the next step would exceed ``shot_budget``; truncation by TimeLimit.

    ## Arguments
    ``cfg`` (``CRCalibrationConfig``) or its fields as keyword arguments.
    ``info`` (truth, evaluation only): ``fidelity``/``infidelity`` of the full ECR to
    "ECR" after the best virtual Z, ``leakage``, ``coherence_limit`` of its duration;
    ``measured_error``, ``knobs`` (4,), ``shots_used``, ``device_time_s``, ``waveform``
    (the CR half) and ``dt_s``.

    ## Version History
    - v0: initial version.
    """

    core_class = CRCalibrationCore


class CRCalibrationVectorEnv(BatchedVectorEnv):
    """N copies of ``CRCalibrationEnv``."""

    core_class = CRCalibrationCore
