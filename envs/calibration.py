"""The calibration task shared by the environments and the baselines.

One place decides how a DRAG gate is parametrised, which error-amplifying sequences are
run to learn about it, how their outcomes are read, and how shots are counted, so that an
RL agent and a textbook calibration spend the same shots on the same device:

- ``DragGate`` (fixed shape) + ``DragParams`` (amplitude, beta_s, detuning_hz, phase): the
  X gate is a lifted-Gaussian DRAG pulse (same formula as ``pulses.DragPulse``); SX is the
  half-area pulse with the same β and detuning. ``detuning_hz`` is a drive-frequency
  correction: a continuous frame ramp e^{−i2π·Δ·t} over the *whole sequence*, Delays
  included, realised as one waveform per gate plus ``VirtualZ(−2π·Δ·duration)`` after every
  Play and Delay, so it really cancels a qubit detuning Δ. Y, X̄ = X(−π), SY are the same
  Play framed by VirtualZ, so a sequence needs only two distinct waveforms (X and SX) and
  a device that caches propagators by waveform computes two per step.
- ``Probe``: one error-amplifying sequence whose ideal excited population is 1/2 and
  whose deviation from 1/2 is signed and grows with depth (see ``Probe`` for the three
  families: amplitude, DRAG, Ramsey).
- ``analyse``: side-effect free reading of measured populations into per-gate rotation
  error angles and an estimated infidelity (the measurement-only reward).
- ``CalibrationTask``: devices + gate + probes + shot counter. ``measure`` runs all probes
  on B devices in one batched call when they support it (``protocol.BatchedDevice``);
  ``true_metrics`` evaluates the gate on each device's hidden current truth (simulation
  only, for info/evaluation).

The pieces live in modules by job (``drag``, ``probes``, ``probe_analysis``,
``calibration_task``); this module gathers their public names under one import path.
"""

from .calibration_task import CalibrationTask, true_metrics_devices
from .drag import PARAMETER_NAMES, DragGate, DragParams, nominal_params, optimal_params
from .physics.calibration_kernels import TWO_PI
from .probe_analysis import Analysis, analyse
from .probes import (
    FAMILIES,
    SX_SLOT,
    X_SLOT,
    Probe,
    ProbeKind,
    Step,
    default_probes,
    gate_steps_sequence,
)
from .protocol import run_on_devices

__all__ = [
    "FAMILIES",
    "PARAMETER_NAMES",
    "SX_SLOT",
    "TWO_PI",
    "X_SLOT",
    "Analysis",
    "CalibrationTask",
    "DragGate",
    "DragParams",
    "Probe",
    "ProbeKind",
    "Step",
    "analyse",
    "default_probes",
    "gate_steps_sequence",
    "nominal_params",
    "optimal_params",
    "run_on_devices",
    "true_metrics_devices",
]
