"""Baselines every agent is compared against, all on the agents' own device path.

- ``StandardCalibration``: the calibration sequence a lab runs (Ramsey, Rabi, fine
  amplitude by error amplification, DRAG scan and fine DRAG), curve fits on every shot.
- ``NelderMeadCalibration``, ``CMAESCalibration``: black-box optimisers on the measured,
  probe-estimated infidelity.
- ``RPECalibration``: robust phase estimation (Kimmel, Low & Yoder 2015) of detuning,
  amplitude and DRAG β at depths 2^k, each unwrapped by the last.
- ``SMCCalibration``: an adaptive Bayesian estimator (particle filter with Liu–West
  resampling) choosing each probe by expected information gain.
- ``grape``: the model-based optimum (GRAPE on piecewise-constant I/Q, true Hamiltonian,
  leakage and open-system fidelity), the physical reference for pulse shaping.

Calibration baselines implement the ``Baseline`` protocol (``protocol.py``): they run
through a ``CalibrationTask`` and report the shots its devices ran; randomness comes only
from passed generators. Each registers its name (``register_baseline``), so the evaluation
builds its default set, and checks configured names, from the registry. GRAPE is no
``Baseline``: it optimises on the true model and spends no shots, so it is the
pulse-shaping benchmark's reference rather than a calibration method under a budget.
"""

from __future__ import annotations

# The registry keeps import order, and the default set lists the lab's own sequence first.
from .standard import STAGES, StandardCalibration

# isort: split
from .blackbox import BlackBoxSettings, CMAESCalibration, NelderMeadCalibration
from .common import CalibrationResult, miscalibrated_start, run_steps, run_within_limits
from .grape import GrapeResult, calibrated_drag, evaluate_waveform, grape
from .protocol import (
    Baseline,
    default_baselines,
    make_baseline,
    register_baseline,
    registered_baselines,
)
from .rpe import RPECalibration
from .smc import SMCCalibration

__all__ = [
    "STAGES",
    "Baseline",
    "BlackBoxSettings",
    "CMAESCalibration",
    "CalibrationResult",
    "GrapeResult",
    "NelderMeadCalibration",
    "RPECalibration",
    "SMCCalibration",
    "StandardCalibration",
    "calibrated_drag",
    "default_baselines",
    "evaluate_waveform",
    "grape",
    "make_baseline",
    "miscalibrated_start",
    "register_baseline",
    "registered_baselines",
    "run_steps",
    "run_within_limits",
]
