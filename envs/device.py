"""The simulated device's public names under one import path.

The device's parts live in modules by job: ``simulated_device`` (``DeviceParams``,
``SimulatedDevice``), ``sequence_template``, ``sequence_compiler`` (``PlayOperators``),
``fleet_plan``, ``delay_channels`` and ``physics.free_evolution``. This module re-exports
their public names so that code building or driving a simulated device needs one import
path, not the layout of the modules behind it.
"""

from .physics.free_evolution import free_evolution
from .sequence_compiler import PlayOperators
from .sequence_template import DELAY, FRAME, PLAY, SequenceTemplate
from .simulated_device import DeviceParams, SimulatedDevice

__all__ = [
    "DELAY",
    "FRAME",
    "PLAY",
    "DeviceParams",
    "PlayOperators",
    "SequenceTemplate",
    "SimulatedDevice",
    "free_evolution",
]
