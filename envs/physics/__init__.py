"""Physics kernel: the transmon model, exact piecewise-constant propagation and gate metrics.

Pure functions over NumPy arrays; no Gymnasium, Stable-Baselines3 or Hydra imports.
"""

from .metrics import (
    TARGETS,
    coherence_limit,
    gate_fidelity,
    leakage,
    leakage_superoperator,
    target_gate,
)
from .model import Transmon, annihilation, collapse_operators, hamiltonians_rad_s, lindbladians
from .propagate import ENGINES, check_waveforms, superoperators, unitaries

__all__ = [
    "ENGINES",
    "TARGETS",
    "Transmon",
    "annihilation",
    "check_waveforms",
    "coherence_limit",
    "collapse_operators",
    "gate_fidelity",
    "hamiltonians_rad_s",
    "leakage",
    "leakage_superoperator",
    "lindbladians",
    "superoperators",
    "target_gate",
    "unitaries",
]
