"""Registration of the pulsecal environments with Gymnasium (string entry points only,
so registering imports nothing heavy).

Every id lists ``episode_end.EpisodeEndEnforcing`` in its spec's ``additional_wrappers``,
the one place ``gym.make`` puts a wrapper outside its ``TimeLimit``: so a plain
``gym.make(id)`` (with any ``max_episode_steps``) refuses a step after truncation as well
as after termination. ``gym.make_vec`` refuses a spec with ``additional_wrappers`` when it
builds the ``vector_entry_point``, and it deep-copies the spec first: the spec's deep copy
therefore leaves that wrapper out. No vector env needs it (they autoreset instead of
stepping an ended copy, docs/episodes.md).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec, WrapperSpec

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
    "pulsecal/CRCalibration-v0": (
        "pulsecal.envs.cr_calibration:CRCalibrationEnv",
        "pulsecal.envs.cr_calibration:CRCalibrationVectorEnv",
        50,  # the env terminates itself when the shot budget runs out
    ),
    "pulsecal/CZCalibration-v0": (
        "pulsecal.envs.cz_calibration:CZCalibrationEnv",
        "pulsecal.envs.cz_calibration:CZCalibrationVectorEnv",
        50,  # the env terminates itself when the shot budget cannot pay another round
    ),
}

# The refusal of a step after either end of an episode (RecordConstructorArgs, no kwargs).
EPISODE_END_WRAPPER = WrapperSpec(
    name="EpisodeEndEnforcing",
    entry_point="pulsecal.envs.episode_end:EpisodeEndEnforcing",
    kwargs={},
)


@dataclasses.dataclass
class PulsecalEnvSpec(EnvSpec):
    """A registered pulsecal spec: ``EpisodeEndEnforcing`` for ``gym.make``; its deep copy,
    the one ``gym.make_vec`` builds from, is a plain ``EnvSpec`` without it."""

    def __deepcopy__(self, memo: dict[int, Any]) -> EnvSpec:
        fields = {f.name: copy.deepcopy(getattr(self, f.name), memo)
                  for f in dataclasses.fields(EnvSpec) if f.init}
        fields["additional_wrappers"] = tuple(w for w in fields["additional_wrappers"]
                                              if w != EPISODE_END_WRAPPER)
        return EnvSpec(**fields)


def register_envs() -> None:
    """Register every pulsecal id (idempotent: ids already registered are left alone)."""
    for env_id, (entry, vector_entry, steps) in ENV_SPECS.items():
        if env_id in gym.registry:
            continue
        # gym.register makes its checks (id syntax, versions) and a plain EnvSpec; the
        # registry then holds the same settings as a PulsecalEnvSpec.
        gym.register(
            id=env_id,
            entry_point=entry,
            vector_entry_point=vector_entry,
            max_episode_steps=steps,
            additional_wrappers=(EPISODE_END_WRAPPER,),
        )
        plain = gym.registry[env_id]
        gym.registry[env_id] = PulsecalEnvSpec(**{f.name: getattr(plain, f.name)
                                                  for f in dataclasses.fields(EnvSpec) if f.init})
