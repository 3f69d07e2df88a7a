"""pulsecal.envs: physics kernel, pulses, drift, simulated device and Gymnasium environments.

Importing the package registers the ``pulsecal/*`` environment ids with Gymnasium (string
entry points: nothing heavy is imported until an env is made).
"""

from .drift import (
    DriftModel,
    DriftState,
    DriftValues,
    OneOverF,
    OrnsteinUhlenbeck,
    RandomWalk,
    Telegraph,
)
from .physics.free_evolution import free_evolution
from .presets import (
    PRESETS,
    DevicePreset,
    DeviceSampler,
    get_preset,
    held_out_devices,
    make_device,
    preset_names,
)
from .protocol import (
    Barrier,
    BatchedDevice,
    Delay,
    Device,
    Measure,
    Play,
    PulseSequence,
    SimulatedTruth,
    VirtualZ,
    run_on_devices,
)
from .pulses import (
    DragPulse,
    LowPass,
    PiecewiseConstantPulse,
    ShapedPulse,
    clip_amplitude,
    drag_beta,
    lifted_gaussian,
    n_samples,
    pi_amplitude,
    round_to_grid,
    sine_basis,
)
from .registration import register_envs
from .sequence_template import SequenceTemplate
from .simulated_device import DeviceParams, SimulatedDevice

register_envs()

__all__ = [
    "PRESETS",
    "Barrier",
    "BatchedDevice",
    "Delay",
    "Device",
    "DeviceParams",
    "DevicePreset",
    "DeviceSampler",
    "DragPulse",
    "DriftModel",
    "DriftState",
    "DriftValues",
    "LowPass",
    "Measure",
    "OneOverF",
    "OrnsteinUhlenbeck",
    "PiecewiseConstantPulse",
    "Play",
    "PulseSequence",
    "RandomWalk",
    "SequenceTemplate",
    "ShapedPulse",
    "SimulatedDevice",
    "SimulatedTruth",
    "Telegraph",
    "VirtualZ",
    "clip_amplitude",
    "drag_beta",
    "free_evolution",
    "get_preset",
    "held_out_devices",
    "lifted_gaussian",
    "make_device",
    "n_samples",
    "pi_amplitude",
    "preset_names",
    "register_envs",
    "round_to_grid",
    "run_on_devices",
    "sine_basis",
]
