"""The opt-in verdict at the end of a calibration episode (``verification`` env option)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from env_helpers import OpaqueDevice

import pulsecal.envs  # noqa: F401  (registers the ids)
from pulsecal.envs.drag import optimal_params
from pulsecal.envs.gate_calibration import GateCalibrationEnv, GateCalibrationVectorEnv
from pulsecal.envs.verification import StatedCoherence, Verdict, VerificationSettings

SETTINGS = VerificationSettings()
# The env reserves the verification's most (all its stages) from shot_budget; 860 shots are
# left to the calibration, the reset and 6 or 7 steps of 120.
BUDGET = 860 + SETTINGS.max_shots


def _run_episode(env: gym.Env, options: dict[str, Any] | None = None, seed: int = 3) -> list[dict[str, Any]]:
    _, info = env.reset(seed=seed, options=options)
    infos = [info]
    while True:
        _, _, term, trunc, info = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
        infos.append(info)
        if term or trunc:
            return infos


def test_without_the_option_no_verdict_is_run_or_reported() -> None:
    infos = _run_episode(GateCalibrationEnv(shot_budget=1500))
    assert all("verdict" not in i and "verification_shots" not in i for i in infos)
    # The whole budget goes to the calibration: the reset and 11 steps of 120 shots.
    assert infos[-1]["shots_used"] == 12 * 120


def test_v1_episode_ends_with_a_verdict_whose_shots_are_counted_within_the_budget() -> None:
    env = gym.make("pulsecal/GateCalibration-v1", shot_budget=BUDGET, verification={})
    infos = _run_episode(env)
    assert all(i["verdict"] is None and i["verification_shots"] == 0 for i in infos[:-1])
    last = infos[-1]
    v = last["verdict"]
    # The rounds share what the verification leaves: 860 // 48 = 17 shots per twin; the
    # verdict is clear after one stage, and the gate passes the RB cross-check.
    assert v.calibrated, v.describe()
    assert isinstance(v, Verdict) and last["verification_shots"] == SETTINGS.shots + SETTINGS.rb_check_shots == v.shots_used
    assert infos[-2]["shots_used"] == 48 * 17
    assert last["shots_used"] == 48 * 17 + SETTINGS.shots + SETTINGS.rb_check_shots <= BUDGET
    # The v1 estimator at the default preset ends at its limit (1.05×), and the verdict says
    # so: calibrated, its interval below the threshold, its estimate near the truth. The
    # default measures the decay (its rate ratio can be < 1), so the interval may start
    # below the stated limit.
    true = 1.0 - last["fidelity"]
    assert v.calibrated, v.describe()
    assert true <= SETTINGS.threshold * v.coherence_limit
    assert v.error_interval[0] < v.error_interval[1] <= SETTINGS.threshold * v.coherence_limit
    assert abs(v.error_estimate - true) < 0.25 * true
    assert v.coherence_limit == pytest.approx(last["coherence_limit"], rel=1e-9)
    # The quick checks take the stated limit as exact: their interval starts at it.
    quick = VerificationSettings.quick()
    env = gym.make("pulsecal/GateCalibration-v1", shot_budget=860 + quick.max_shots, verification=quick)
    q = _run_episode(env)[-1]
    vq = q["verdict"]
    assert vq.calibrated and q["verification_shots"] == quick.shots == 640, vq.describe()
    assert vq.coherence_limit <= vq.error_interval[0] < vq.error_interval[1] <= quick.threshold * vq.coherence_limit
    assert abs(vq.error_estimate - (1.0 - q["fidelity"])) < 0.25 * (1.0 - q["fidelity"])


def test_v0_uncorrected_start_fails_with_a_residual_named() -> None:
    env = GateCalibrationEnv(shot_budget=BUDGET, verification={})
    # The zero policy leaves a 5 % amplitude error in place: far above the limit.
    last = _run_episode(env, {"miscalibration": {"amplitude": 0.05}})[-1]
    v = last["verdict"]
    assert 1.0 - last["fidelity"] > 10 * last["coherence_limit"]
    assert not v.calibrated and v.reason == "residual_error" and v.limiting == "amplitude"
    # 860 shots left to the calibration: the reset and 6 steps of 120 (a 7th would pass),
    # as the env's shot plan says.
    assert last["shots_used"] == 7 * 120 + SETTINGS.shots
    assert env.calibration_state().shot_plan.steps_per_episode == 6


def test_a_budget_that_cannot_hold_the_verification_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="shot_budget"):
        GateCalibrationEnv(shot_budget=120 + SETTINGS.max_shots - 1, verification={})
    with pytest.raises(ValueError, match="verification"):
        GateCalibrationEnv(verification={"shots_per_chek": 8})


def test_the_verification_runs_on_the_device_and_needs_the_labs_coherence_there() -> None:
    dev = OpaqueDevice()
    truth = dev.inner.current_transmon()
    start = optimal_params(truth, GateCalibrationEnv().unwrapped.core.gate)
    env = GateCalibrationEnv(shot_budget=BUDGET, verification={})
    with pytest.raises(ValueError, match="stated_coherence"):
        env.reset(seed=0, options={"device": dev, "initial_params": start})
    stated = StatedCoherence(truth.t1_s, truth.t2_s)
    last = _run_episode(env, {"device": dev, "initial_params": start, "stated_coherence": stated})[-1]
    v = last["verdict"]
    # Every shot of the episode, the verification's too, ran on the device; no truth is
    # reported, the verdict comes from the device's counts.
    assert "fidelity" not in last
    assert dev.shots == last["shots_used"] == 7 * 120 + SETTINGS.shots + SETTINGS.rb_check_shots
    assert last["verification_shots"] == SETTINGS.shots + SETTINGS.rb_check_shots
    assert v.coherence_limit == pytest.approx(stated.limit(20e-9))
    assert v.calibrated, v.describe()


def test_the_vector_env_reports_the_verdict_of_ending_copies() -> None:
    env = GateCalibrationVectorEnv(2, shot_budget=BUDGET, verification={})
    env.reset(seed=5)
    for _ in range(10):
        _, _, term, _, info = env.step(np.zeros((2, 3), dtype=np.float32))
        if term.any():
            break
    assert term.all()
    assert all(isinstance(v, Verdict) for v in info["verdict"])
    assert list(info["verification_shots"]) == [SETTINGS.shots] * 2


def test_drift_tracking_verifies_the_tracked_gate_at_the_end_of_its_day() -> None:
    env = gym.make("pulsecal/DriftTracking-v1", episode_s=1800.0, verification={})
    infos = _run_episode(env, seed=1)
    assert [i["verdict"] is None for i in infos] == [True] * (len(infos) - 1) + [False]
    last = infos[-1]
    # Its error (1.5× the limit) is not bounded below the threshold by one stage, so all
    # three run (no RB cross-check: it is not passed) and its estimate ends over it.
    assert isinstance(last["verdict"], Verdict) and last["verification_shots"] == SETTINGS.stages * SETTINGS.shots
    assert last["verdict"].reason == "residual_error"
    assert last["shots_used"] >= SETTINGS.stages * SETTINGS.shots
