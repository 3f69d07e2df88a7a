"""Registration of the pulsecal environments with Gymnasium (string entry points only,
so registering imports nothing heavy)."""

from __future__ import annotations

import gymnasium as gym

# id -> (module:class, module:vector class, max_episode_steps)
ENV_SPECS: dict[str, tuple[str, str, int]] = {
    "pulsecal/GateCalibration-v0": (
        "pulsecal.envs.gate_calibration:GateCalibrationEnv",
        "pulsecal.envs.gate_calibration:GateCalibrationVectorEnv",
        50,
    ),
    "pulsecal/GateCalibration-v1": (
        "pulsecal.envs.gate_calibration_v1:GateCalibrationV1Env",
        "pulsecal.envs.gate_calibration_v1:GateCalibrationV1VectorEnv",
        200,  # the env terminates itself after `rounds` actions (default 8)
    ),
    "pulsecal/PulseShaping-v0": (
        "pulsecal.envs.pulse_shaping:PulseShapingEnv",
        "pulsecal.envs.pulse_shaping:PulseShapingVectorEnv",
        50,
    ),
    "pulsecal/PulseShaping-v1": (
        "pulsecal.envs.pulse_shaping_v1:PulseShapingV1Env",
        "pulsecal.envs.pulse_shaping_v1:PulseShapingV1VectorEnv",
        50,
    ),
    "pulsecal/DriftTracking-v0": (
        "pulsecal.envs.drift_tracking:DriftTrackingEnv",
        "pulsecal.envs.drift_tracking:DriftTrackingVectorEnv",
        144,  # 24 h of device time at the default 10 min per decision
    ),
    "pulsecal/DriftTracking-v1": (
        "pulsecal.envs.drift_tracking_v1:DriftTrackingV1Env",
        "pulsecal.envs.drift_tracking_v1:DriftTrackingV1VectorEnv",
        144,
    ),
}


def register_envs() -> None:
    """Register every pulsecal id (idempotent: ids already registered are left alone)."""
    for env_id, (entry, vector_entry, steps) in ENV_SPECS.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point=entry,
            vector_entry_point=vector_entry,
            max_episode_steps=steps,
        )
