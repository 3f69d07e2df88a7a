"""DriftTracking-v0: device time, probe choice, reward from the interval's true error."""

from __future__ import annotations

import numpy as np
import pytest

from pulsecal.envs.drift_tracking import DriftTrackingEnv


def test_time_advances_and_episode_spans_device_time() -> None:
    env = DriftTrackingEnv(episode_s=3600.0)
    env.reset(seed=0)
    a = np.zeros(env.action_space.shape, dtype=np.float32)
    a[0] = -1.0  # shot level 0: no probe
    steps, term = 0, False
    while not term:
        _, r, term, _, info = env.step(a)
        steps += 1
        assert info["shots_used"] == 0
        assert r == pytest.approx(-1e3 * info["interval_error"])
    assert steps == 6 and info["device_time_s"] == pytest.approx(3600.0)


def test_probe_costs_shots_and_device_time() -> None:
    env = DriftTrackingEnv()
    env.reset(seed=0)
    a = np.zeros(env.action_space.shape, dtype=np.float32)
    a[0], a[1] = 1.0, -1.0  # most shots, all probes
    obs, _, _, _, info = env.step(a)
    k = len(env.unwrapped.core.cfg.probes)
    assert info["shots_used"] == 256 * k
    assert info["device_time_s"] == pytest.approx(600.0 + 256 * k * 200e-6)
    assert np.all(obs[k:2 * k] == 0.0)  # every probe fresh


def test_tracking_with_truth_beats_doing_nothing() -> None:
    # An oracle that re-centres the detuning on the drifting qubit earns more than idling.
    def run(track: bool) -> float:
        env = DriftTrackingEnv(episode_s=6 * 3600.0, parameters=("detuning_hz",))
        env.reset(seed=3)
        total = 0.0
        core = env.unwrapped.core
        for _ in range(36):
            a = np.array([-1.0, 0.0, 0.0], dtype=np.float32)
            if track:
                err = env.unwrapped.device.current_transmon().detuning_hz - core.params[0, 2]
                a[2] = np.clip(err / core.step_scale(0)[2], -1, 1)
            _, r, term, _, _ = env.step(a)
            total += r
            if term:
                break
        return total

    assert run(True) > run(False)


def test_same_seed_same_drift() -> None:
    outs = []
    for _ in range(2):
        env = DriftTrackingEnv()
        env.reset(seed=4)
        outs.append([env.step(np.full(5, 0.3, dtype=np.float32))[4]["fidelity"] for _ in range(3)])
    assert outs[0] == outs[1]


def test_invalid_kwargs() -> None:
    with pytest.raises(ValueError, match="shot_levels"):
        DriftTrackingEnv(shot_levels=(-1,))
    with pytest.raises(ValueError, match="episode_s"):
        DriftTrackingEnv(episode_s=10.0)


def test_measurement_based_tracker_beats_idling() -> None:
    """Ramsey probes alone carry enough information to follow the frequency drift: a
    tracker that corrects the detuning from its last Ramsey estimate beats idling."""
    import math

    from pulsecal.envs.calibration import analyse

    def run(track: bool) -> float:
        env = DriftTrackingEnv(episode_s=12 * 3600.0)
        env.reset(seed=0)
        core = env.unwrapped.core
        total, term = 0.0, False
        while not term:
            a = np.array([0.6 if track else -1.0, 1.0, 0.0, 0.0, 0.0], dtype=np.float32)  # 64 shots, Ramsey
            if track and core.history[0]:
                angle = analyse(core.last_p1[:1], core.cfg.probes, core.gate.duration_s).family_angle[0, 2]
                # Ramsey reads P1 = (1 − sin(2π(δ − Δ)τ))/2, so the angle is −2π(δ − Δ)·T.
                a[4] = np.clip(-angle / (2 * math.pi * core.gate.duration_s) / core.step_scale(0)[2], -1, 1)
            _, r, term, _, _ = env.step(a)
            total += r
        return total

    assert run(True) > run(False) + 100
