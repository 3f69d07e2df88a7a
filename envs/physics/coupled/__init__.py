"""Coupled transmons: the multi-mode model, its control channels and its propagators."""

from .controls import Pulse, check_pulse, distort_flux
from .model import (
    Channel,
    CoupledModel,
    Coupling,
    Crosstalk,
    FluxTuning,
    Mode,
    collapse_operators,
    parse_channel,
)

__all__ = [
    "Channel",
    "CoupledModel",
    "Coupling",
    "Crosstalk",
    "FluxTuning",
    "Mode",
    "Pulse",
    "check_pulse",
    "collapse_operators",
    "distort_flux",
    "parse_channel",
]
