"""DriftTracking-v0: keep a gate calibrated on a device that drifts over hours.

The tracking-friendly redesign is ``drift_tracking_v1``."""

from __future__ import annotations

from . import contract
from .drift_tracking_core import DriftTrackingCore
from .vector import BatchedVectorEnv, SingleCoreEnv


class DriftTrackingEnv(SingleCoreEnv):
    """Keep a DRAG gate calibrated on a device that drifts over hours of device time.

    ## Description
    The device (``transmon_drifting`` by default: frequency and amplitude random walks,
    T1 telegraph switching) drifts along its clock. At each decision the agent chooses a
    probe (which sequences and how many shots) and a parameter correction; the device
    clock advances with the probe's shots and then by ``decision_interval_s`` of user
    workload (10 min by default). An episode spans ``episode_s`` (24 h) of device time.

    ## Action Space
    ``Box(-1, 1, (2 + P,), float32)``: a[0] picks a shot level from ``shot_levels``
    (shots per probe; 0 = do not measure) in equal bins, a[1] picks the probe set (all,
    amplitude, drag, ramsey), a[2:] moves the P calibrated parameters by ``max_step``
    units (as in GateCalibration). NaN/inf or out-of-range actions raise ``ValueError``.

    ## Observation Space
    ``Box(float32)`` of 2K + P + 1: the last measured excited fraction of each probe
    (0.5 before any), the age of each measurement (0 = this step, +0.1 per decision,
    capped at 1), the parameters as (value − start)/max_step, and the elapsed fraction
    of the episode.

    ## Rewards
    −``error_scale`` × the interval's true error (trapezoid of the error after the
    correction and at the end of the interval) − ``shot_cost`` per 1000 shots. The true
    error is the gate's infidelity (virtual Z, open system) plus the frame error a
    circuit of ``circuit_time_s`` suffers from the residual detuning,
    (2/3)·sin²(π·(δ − Δ)·t): frequency drift matters at circuit level, not within one
    gate. The reward uses simulation truth (this env is a simulation benchmark of a
    tracking policy); ``info["infidelity_estimate"]`` is the measurement-only estimate.

    ## Starting State
    A freshly calibrated gate: textbook parameters with a small miscalibration
    (``miscalibration``), on a device at clock 0. Reset options as in GateCalibration.

    ## Episode End
    Terminated when the next decision would pass ``episode_s``; ``TimeLimit`` truncation
    as registered (144 steps = 24 h at 10 min). With ``verification`` set (default off)
    the terminating step verifies the tracked gate on the device and its info carries
    ``verdict`` and ``verification_shots`` (as GateCalibration-v0).

    ## Arguments
    decision_interval_s, episode_s, shot_levels, circuit_time_s, error_scale plus the
    fields of ``GateCalibrationConfig`` (``DriftTrackingConfig``), render_mode. ``info``:
    fidelity, fidelity_raw, leakage, coherence_limit, gate_error, interval_error (truth),
    infidelity_estimate, shots_used, device_time_s, waveform, dt_s, params.

    ## Version History
    - v0: initial version.
    """

    core_class = DriftTrackingCore

    def calibration_state(self, index: int = 0) -> contract.CalibrationState:
        return contract.drift_tracking_state(self.core, index, "pulsecal/DriftTracking-v0")


class DriftTrackingVectorEnv(BatchedVectorEnv):
    """N copies of ``DriftTrackingEnv`` sharing device calls per step."""

    core_class = DriftTrackingCore

    def calibration_state(self, index: int = 0) -> contract.CalibrationState:
        return contract.drift_tracking_state(self.core, index, "pulsecal/DriftTracking-v0")


