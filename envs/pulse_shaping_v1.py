"""PulseShaping-v1: find a short, low-leakage pulse for a target gate on devices that vary.

It is built to generalise across devices: each episode draws a device around
``transmon_short`` (anharmonicity, drive strength and amplitude error, AWG low-pass
distortion, coherence, detuning; ``ShapingDeviceSampler``), the textbook start is designed
from a *characterised* device (what a lab's spectroscopy, Rabi and scope measurements
give, with their errors), the shape coordinates are relative to that start's amplitude,
and the observation carries the characterisation so that a policy can map device to pulse.
"""

from __future__ import annotations

from dataclasses import dataclass

from .pulse_shaping_core import PulseShapingConfig, PulseShapingCore
from .vector import BatchedVectorEnv, SingleCoreEnv


@dataclass(frozen=True)
class PulseShapingV1Config(PulseShapingConfig):
    """``PulseShapingConfig`` with the v1 defaults (randomised, characterised devices,
    finer correction steps)."""

    randomize_device: bool = True
    characterised: bool = True
    max_step: float = 0.05
    # Wider than v0: on weakly anharmonic devices (α/2π ≈ −175 MHz) the optimum needs
    # more amplitude reduction and shape than v0 allows (its optimum sits on v0's bounds).
    amplitude_range: float = 0.3
    detuning_range_hz: float = 80e6
    coeff_range: float = 0.4


class PulseShapingV1Core(PulseShapingCore):
    config_class = PulseShapingV1Config


class PulseShapingV1Env(SingleCoreEnv):
    """Shape a short pulse on a device drawn around ``transmon_short`` (PulseShaping-v1).

    ## Description
    As PulseShaping-v0, but every episode draws a new device (``ShapingDeviceSampler``:
    α/2π −320…−160 MHz, Ω_R 320…480 MHz, ±5 % amplitude error, AWG rise time 0–0.8 ns,
    T1 50–200 µs, detuning ±0.5 MHz) unless ``reset(options={"device_params": ...})``
    fixes it; the start is the textbook DRAG pulse of the *characterised* device
    (Rabi rate ±0.3 %, α ±0.1 %, detuning ±10 kHz, rise time ±5 %, 1σ); sine
    coefficients are relative to that start's amplitude.

    ## Action Space
    As v0, ``action_mode="delta"`` with ``max_step`` 0.05 by default.

    ## Observation Space
    As v0 plus the 4 characterised device features (see ``PulseShapingEnv``).

    ## Rewards
    As v0 (``reward_mode="privileged"`` by default: SIMULATION KNOWLEDGE).

    ## Starting State
    Textbook DRAG of the characterised device plus a small random sine perturbation.

    ## Episode End
    Never terminates; ``TimeLimit`` truncation (50 steps registered).

    ## Arguments
    Those of ``PulseShapingEnv`` (``PulseShapingV1Config`` defaults).

    ## Version History
    - v1: randomised devices, characterised start and features, relative shape units,
      max_step 0.05, ranges: amplitude 0.3, detuning 80 MHz, coefficients 0.4.
    """

    core_class = PulseShapingV1Core


class PulseShapingV1VectorEnv(BatchedVectorEnv):
    """N copies of ``PulseShapingV1Env`` sharing one propagator call per step."""

    core_class = PulseShapingV1Core
