"""``info_truth="end"`` of the two-qubit envs: the simulation truth in ``info`` only on the
step that ends an episode (NaN before), with observations, rewards and the final truth
exactly those of the default ``"step"`` (closed-system devices, one short episode each)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from pulsecal.envs import cz_calibration_core as core
from pulsecal.envs.cr_calibration import CRCalibrationEnv
from pulsecal.envs.cr_calibration_core import CRCalibrationConfig, CRCalibrationCore
from pulsecal.envs.cz_calibration import TRUTH_KEYS, CZCalibrationConfig, CZCalibrationEnv


def _episode(env: Any, seed: int) -> tuple[list[np.ndarray], list[float], list[dict[str, Any]]]:
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    observations, rewards, infos = [obs], [], [info]
    for _ in range(40):
        obs, r, term, trunc, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        observations.append(obs)
        rewards.append(float(r))
        infos.append(info)
        if term or trunc:
            assert term, "the budget, not the time limit, ends these episodes"
            break
    return observations, rewards, infos


@pytest.mark.parametrize("make, keys", [
    (lambda truth: CZCalibrationEnv(open_system=False, shot_budget=7 * 400 + 4 * 800, info_truth=truth), TRUTH_KEYS),
    (lambda truth: CRCalibrationEnv(open_system=False, shot_budget=4 * 3000, info_truth=truth),
     CRCalibrationCore.truth_keys),
])
def test_truth_only_at_the_end_and_nothing_else_changes(make: Any, keys: tuple[str, ...]) -> None:
    obs_a, rew_a, info_a = _episode(make("step"), seed=3)
    obs_b, rew_b, info_b = _episode(make("end"), seed=3)
    assert len(obs_a) == len(obs_b) >= 3
    for a, b in zip(obs_a, obs_b, strict=True):
        np.testing.assert_array_equal(a, b)
    assert rew_a == rew_b
    for k in keys:
        assert all(math.isfinite(float(i[k])) for i in info_a), k
        assert all(math.isnan(float(i[k])) for i in info_b[:-1]), k
        assert float(info_b[-1][k]) == float(info_a[-1][k]), k
    for k in ("shots_used", "device_time_s"):
        assert [i[k] for i in info_a] == [i[k] for i in info_b]


def test_truth_keys_are_those_of_true_metrics() -> None:
    env = CZCalibrationEnv(open_system=False)
    env.reset(seed=0)
    c = env.core
    assert tuple(core.true_metrics(c.devices[0], c.pulse, c.params[0])) == TRUTH_KEYS


@pytest.mark.parametrize("cfg", [CZCalibrationConfig, CRCalibrationConfig])
def test_bad_info_truth_names_the_field(cfg: Any) -> None:
    with pytest.raises(ValueError, match=r"info_truth.*'episode'.*step.*end"):
        cfg(info_truth="episode")
