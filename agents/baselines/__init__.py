"""Baselines every agent is compared against, all on the agents' own device path.

- ``StandardCalibration``: the calibration sequence a lab runs (Ramsey, Rabi, fine
  amplitude by error amplification, DRAG scan and fine DRAG), curve fits on every shot.
- ``NelderMeadCalibration``, ``CMAESCalibration``: black-box optimisers on the measured,
  probe-estimated infidelity.
- ``grape``: the model-based optimum (GRAPE on piecewise-constant I/Q, true Hamiltonian,
  leakage and open-system fidelity), the physical reference for pulse shaping.

Calibration baselines run through a ``CalibrationTask`` and report the shots its
devices ran; randomness comes only from passed generators.
"""

from __future__ import annotations

from .blackbox import BlackBoxSettings, CMAESCalibration, NelderMeadCalibration
from .common import CalibrationResult, miscalibrated_start, run_steps
from .grape import GrapeResult, calibrated_drag, evaluate_waveform, grape
from .standard import STAGES, StandardCalibration

__all__ = [
    "STAGES",
    "BlackBoxSettings",
    "CMAESCalibration",
    "CalibrationResult",
    "GrapeResult",
    "NelderMeadCalibration",
    "StandardCalibration",
    "calibrated_drag",
    "evaluate_waveform",
    "grape",
    "miscalibrated_start",
    "run_steps",
]
