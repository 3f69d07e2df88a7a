"""CRCalibration-v0: spaces, checker, seeding, shot accounting, truth only in info, and the
ECR pulse conventions (closed-system devices: decoherence is not what these check)."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import pulsecal.envs  # noqa: F401  (registers the ids)
from pulsecal.envs.cr_calibration import CRCalibrationEnv
from pulsecal.envs.cr_calibration_core import (
    CRCalibrationConfig,
    ECRKnobs,
    ECRShape,
    bloch_from_counts,
    ecr_truth,
    half_cr_error,
    nominal_knobs,
    tomography_sequences,
)
from pulsecal.envs.multi_qubit_device import SimulatedMultiQubitDevice
from pulsecal.envs.multi_qubit_presets import get_multi_qubit_preset

ID = "pulsecal/CRCalibration-v0"


def _env(**kw: object) -> CRCalibrationEnv:
    return CRCalibrationEnv(randomize_device=False, shots_per_sequence=200, shot_budget=6000, **kw)


def test_checker_and_spaces() -> None:
    env = gym.make(ID)
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=UserWarning)
        check_env(env.unwrapped, skip_render_check=True)
    assert env.action_space == gym.spaces.Box(-1, 1, (4,), np.float32)
    assert env.observation_space.shape == (11,)
    assert env.unwrapped.render() is None


def test_same_seed_same_episode_and_different_seed_differs() -> None:
    def episode(seed: int) -> list[np.ndarray]:
        env = CRCalibrationEnv()  # sampled devices
        out = [env.reset(seed=seed)[0]]
        for a in (np.full(4, 0.5, np.float32), np.full(4, -0.3, np.float32)):
            out.append(env.step(a)[0])
        return out

    a, b, c = episode(3), episode(3), episode(4)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_episode_spends_shots_and_terminates_within_budget() -> None:
    env = _env()
    _, info = env.reset(seed=0)
    assert info["shots_used"] == 6 * 200
    steps, term = 0, False
    while not term:
        _, r, term, trunc, info = env.step(env.action_space.sample())
        steps += 1
        assert not trunc and r <= 0.0
    assert info["shots_used"] == 6000 and steps == 4
    assert info["device_time_s"] == pytest.approx(6000 * 200e-6)


def test_truth_only_in_info_and_observation_is_measured() -> None:
    # Two devices with identical truth but different shot-noise streams: the observations
    # differ (they are counts), the truth in info does not.
    env = _env()
    o1, i1 = env.reset(seed=0, options={"params": get_multi_qubit_preset("two_transmons_cr").params})
    env2 = _env()
    o2, i2 = env2.reset(seed=1, options={"params": get_multi_qubit_preset("two_transmons_cr").params})
    env2.core.knobs[0] = env.core.knobs[0]
    o1, _, _, _, i1 = env.step(np.zeros(4, np.float32))
    o2, _, _, _, i2 = env2.step(np.zeros(4, np.float32))
    assert i1["fidelity"] == pytest.approx(i2["fidelity"], abs=1e-12)
    assert not np.array_equal(o1[:6], o2[:6])
    for key in ("fidelity", "infidelity", "leakage", "coherence_limit"):
        assert key in i1
    assert 0 < i1["coherence_limit"] < 0.01


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ValueError, match="shots_per_sequence=3"):
        CRCalibrationConfig(shots_per_sequence=3)
    with pytest.raises(ValueError, match=r"ECRKnobs\.cr_amp=1\.5"):
        ECRKnobs(1.5)
    with pytest.raises(ValueError, match="allowed 'params'"):
        _env().reset(seed=0, options={"device": 1})


def test_ideal_half_and_nominal_ecr() -> None:
    """The nominal setting's CR half rotates the target by about ±π/4 depending on the
    control (ZX), and its ECR is within a few 1e-2 of the ECR already (IX uncancelled)."""
    params = get_multi_qubit_preset("two_transmons_cr").params
    dev = SimulatedMultiQubitDevice(params, rng=np.random.default_rng(0), open_system=False)
    shape = ECRShape()
    k = nominal_knobs(params.model, shape)
    p = dev.outcome_probabilities(tomography_sequences(k, shape, 50e6, dev.dt_s))
    b = bloch_from_counts(p * 1e6)
    # Control-dependent y rotation: opposite-signed ZX contributions beyond the common IX.
    assert abs(b[1, 1] - b[0, 1]) / 2 > 0.3
    assert half_cr_error(b) < 0.5
    truth = ecr_truth(dev, k, shape, 50e6)
    assert 0.95 < truth.fidelity < 1.0
    assert truth.duration_s == pytest.approx((2 * 120 + 20) * 1e-9)


def test_half_cr_error_is_zero_for_the_ideal_vectors() -> None:
    s, c = math.sin(math.pi / 4), math.cos(math.pi / 4)
    ideal = np.array([[0.0, -s, c], [0.0, s, c]])
    assert half_cr_error(ideal) == pytest.approx(0.0, abs=1e-15)
    assert half_cr_error(ideal[:, ::-1]) > 0.5
