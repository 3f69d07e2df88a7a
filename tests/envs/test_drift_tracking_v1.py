"""DriftTracking-v1: probe at the end of the interval, estimate observation, trackability."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import pulsecal.envs  # noqa: F401  (registers the ids)
from pulsecal.envs.drift_tracking_v1 import DriftTrackingV1Env


def _action(shots: float, probe_set: float, correction: np.ndarray) -> np.ndarray:
    return np.concatenate([[shots, probe_set], correction]).astype(np.float32)


def test_spaces_and_start_without_readings() -> None:
    env = DriftTrackingV1Env()
    obs, _ = env.reset(seed=0)
    # 2 families (estimate, age), 4 probes, elapsed fraction; shots, probe set, 2 parameters.
    assert obs.shape == (9,) and env.action_space.shape == (4,)
    assert np.all(obs[:2] == 0.0) and np.all(obs[2:4] == 1.0) and np.all(obs[4:8] == 0.5)


def test_probe_runs_after_the_workload_and_is_fresh() -> None:
    env = DriftTrackingV1Env()
    env.reset(seed=0)
    obs, r, _, _, info = env.step(_action(0.9, -0.9, np.zeros(2)))  # 128 shots, deepest Ramsey
    assert info["shots_used"] == 128 and info["shots_step"] == 128
    assert info["device_time_s"] == pytest.approx(600.0 + 128 * 200e-6)
    assert obs[3] == 0.0 and obs[2] == 1.0  # Ramsey family just probed, amplitude never
    assert r == pytest.approx(-1e3 * info["interval_error"] - 0.128)


def test_following_the_estimates_tracks_the_drift() -> None:
    """A tracker that applies the observed corrections (deep Ramsey every step, amplitude
    hourly, 128 shots) keeps the time-averaged error far below idling, below 1e-3, at
    under 24k shots a day: the observation carries what a policy needs."""
    def run(track: bool) -> tuple[float, int]:
        env = gym.make("pulsecal/DriftTracking-v1", episode_s=12 * 3600.0)
        obs, _ = env.reset(seed=1)
        errs, k, done = [], 0, False
        while not done:
            probe = 0.25 if k % 6 == 5 else -0.9  # amplitude hourly, else deepest Ramsey
            a = _action(0.9, probe, np.clip(obs[:2], -1, 1)) if track else _action(-1.0, 0.0, np.zeros(2))
            obs, _, term, trunc, info = env.step(a)
            errs.append(info["interval_error"])
            k, done = k + 1, term or trunc
        return float(np.mean(errs)), int(info["shots_used"])

    tracked, shots = run(True)
    idle, _ = run(False)
    assert tracked < 1e-3 and tracked < idle / 5
    assert shots * 2 < 24_000  # 12 h


def test_invalid_kwargs() -> None:
    from pulsecal.envs.calibration import Probe

    with pytest.raises(ValueError, match="probes"):
        DriftTrackingV1Env(probes=(Probe("drag", 2),))
    with pytest.raises(ValueError, match="parameters"):
        DriftTrackingV1Env(parameters=("beta_s",))
