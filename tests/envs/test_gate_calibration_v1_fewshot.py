"""GateCalibration-v1's ``beta_unit_floor_s`` option (docs/fewshot.md): validation, the
default left unchanged, and the wide-start failure it removes."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import pulsecal.envs  # noqa: F401  (registers the ids)
from pulsecal.envs.gate_calibration_v1 import GateCalibrationV1Config

ENV_ID = "pulsecal/GateCalibration-v1"
WIDE = {"miscalibration": (0.15, 1.0, 3e6, 0.0), "window": 3.0}


@pytest.mark.parametrize("bad", [0.0, -1e-9, math.nan, 1e-6, "0.5ns"])
def test_beta_unit_floor_is_validated(bad: object) -> None:
    with pytest.raises(ValueError, match=r"beta_unit_floor_s=.*\(0, 1e-7\]"):
        GateCalibrationV1Config(beta_unit_floor_s=bad)  # type: ignore[arg-type]


def _reset(beta_offset: float, **kwargs: object) -> gym.Env:
    env = gym.make(ENV_ID, **WIDE, **kwargs)
    # a start β 95 % below the textbook one: the unit |start β| is 5 % of the textbook β
    env.reset(seed=3, options={"device_params": env.unwrapped.core.preset.params,
                               "miscalibration": {"amplitude": 0.0, "beta_s": beta_offset, "detuning_hz": 0.0}})
    return env


def test_default_keeps_the_starting_beta_as_unit_and_the_observation_shape() -> None:
    env = _reset(-0.95)
    core = env.unwrapped.core
    assert core.unit[0, 1] == abs(core.start[0, 1])
    assert env.observation_space.shape == (20,)
    env.close()


def test_floor_raises_a_small_beta_unit_only() -> None:
    env = _reset(-0.95, beta_unit_floor_s=5e-10)
    core = env.unwrapped.core
    assert abs(core.start[0, 1]) < 5e-11
    assert core.unit[0, 1] == 5e-10
    assert core.prior_sigma[0, 1] == pytest.approx(1.0 * 5e-10 / math.sqrt(3.0))
    assert env.observation_space.shape == (20,)
    env.close()
    env = _reset(+0.9, beta_unit_floor_s=1e-11)  # |start β| above the floor: unchanged
    core = env.unwrapped.core
    assert core.unit[0, 1] == abs(core.start[0, 1])
    env.close()


def _estimator_ratio(**kwargs: object) -> float:
    env = _reset(-0.95, shot_budget=1000, **kwargs)
    info: dict = {}
    done = False
    while not done:
        _, _, term, trunc, info = env.step(np.zeros(4, dtype=np.float32))
        done = bool(term or trunc)
    env.close()
    return (1.0 - info["fidelity"]) / info["coherence_limit"]


def test_floor_lets_the_estimator_reach_the_limit_from_a_near_zero_beta() -> None:
    """Without the floor the window (3 × |start β|) ends short of the optimum."""
    without = _estimator_ratio()
    with_floor = _estimator_ratio(beta_unit_floor_s=5e-10)
    assert with_floor < 1.3, with_floor
    assert without > 2.0 * with_floor, (without, with_floor)
