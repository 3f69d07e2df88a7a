"""PulseShaping-v1: randomised, characterised devices; v0 unchanged."""

from __future__ import annotations

import numpy as np
from env_helpers import powell_on_reward

from pulsecal.envs.presets import get_preset
from pulsecal.envs.pulse_shaping import PulseShapingEnv
from pulsecal.envs.pulse_shaping_core import ShapingDeviceSampler, held_out_shaping_devices
from pulsecal.envs.pulse_shaping_v1 import PulseShapingV1Env


def test_v0_observation_unchanged() -> None:
    env = PulseShapingEnv()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (12,)


def test_v1_draws_a_device_per_episode_and_observes_its_characterisation() -> None:
    env = PulseShapingV1Env()
    seen = set()
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        assert obs.shape == (16,)
        seen.add(env.unwrapped.device.current_transmon().anharmonicity_hz)
        true = env.unwrapped.device.current_transmon()
        nominal = get_preset("transmon_short").params.transmon
        # Characterised α within ~0.1 %: the feature matches the truth closely.
        assert abs(obs[12] * 0.2 + 1 - true.anharmonicity_hz / nominal.anharmonicity_hz) < 0.01
    assert len(seen) == 3


def test_v1_fixed_device_and_held_out_population() -> None:
    env = PulseShapingV1Env()
    preset = get_preset("transmon_short").params
    obs, _ = env.reset(seed=0, options={"device_params": preset})
    assert env.unwrapped.device.current_params() == preset
    assert np.all(np.abs(obs[12:14]) < 0.05) and obs[14] == 0.0
    a = held_out_shaping_devices(4, seed=1)
    assert a == held_out_shaping_devices(4, seed=1) and a[:2] == held_out_shaping_devices(2, seed=1)
    assert any(d.distortion is not None for d in a)
    ShapingDeviceSampler().sample(np.random.default_rng(0))


def test_v1_action_space_reaches_near_the_coherence_limit_on_the_preset() -> None:
    env = PulseShapingV1Env(action_mode="set")
    env.reset(seed=0, options={"device_params": get_preset("transmon_short").params, "initial_z": np.zeros(11)})
    info = powell_on_reward(env, 11)
    assert 1 - info["fidelity"] < 1.5 * info["coherence_limit"]
