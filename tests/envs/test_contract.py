"""The public env contract (``pulsecal.envs.contract``): for every calibration env id, the
state's parameters are the ones the env applies, its measurement is the observation's
probe part, its action entries say what an action does, and its shot plan is what
``info["shots_used"]`` counts over an episode."""

from __future__ import annotations

import json
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import pulsecal.envs  # noqa: F401  (registers the ids)
from pulsecal.envs.calibration import DragGate
from pulsecal.envs.contract import CALIBRATION_STATE_VERSION, CalibrationState, probes_from_json

# Small episodes: a few steps each.
SETTINGS: dict[str, dict[str, Any]] = {
    "pulsecal/GateCalibration-v0": {"shots_per_probe": 5, "shot_budget": 300, "open_system": False},
    "pulsecal/GateCalibration-v1": {"rounds": 3, "shot_budget": 360, "open_system": False},
    "pulsecal/DriftTracking-v0": {"episode_s": 3600.0, "open_system": False},
    "pulsecal/DriftTracking-v1": {"episode_s": 3600.0, "open_system": False},
}


def _check_state(state: CalibrationState, env_id: str, obs: np.ndarray, info: dict[str, Any]) -> None:
    assert state.version == CALIBRATION_STATE_VERSION and state.env_id == env_id
    assert state.parameter_names == ("amplitude", "beta_s", "detuning_hz", "phase")
    assert [p.unit for p in state.parameters] == ["full scale", "s", "Hz", "rad"]
    # The parameters are the ones the env applies: its info and the waveform it plays.
    assert state.parameter_values == tuple(float(x) for x in info["params"])
    wave = DragGate(state.gate.duration_s).waveforms(np.asarray(state.parameter_values), info["dt_s"])
    np.testing.assert_array_equal(wave, info["waveform"])
    start, stop = state.measurement.observation_slice
    assert len(state.measurement.names) == len(state.measurement.values) == stop - start
    np.testing.assert_array_equal(np.asarray(state.measurement.values, dtype=np.float32), obs[start:stop])
    assert [e.index for e in state.action] == list(range(len(state.action)))
    json.dumps(state.to_dict(), allow_nan=False)


@pytest.mark.parametrize("env_id", sorted(SETTINGS))
def test_state_matches_what_the_env_applies_measures_and_spends(env_id: str) -> None:
    env = gym.make(env_id, **SETTINGS[env_id]).unwrapped
    obs, info = env.reset(seed=1)
    state = env.calibration_state()
    _check_state(state, env_id, obs, info)
    assert len(state.action) == env.action_space.shape[0]
    plan = state.shot_plan
    assert info["shots_used"] == plan.reset_shots
    settings = state.settings
    assert settings["shot_budget"] == plan.shot_budget
    assert settings["gate_duration_s"] == state.gate.duration_s
    assert probes_from_json(settings["probes"]) == env.core.cfg.probes  # JSON form round-trips

    rng = np.random.default_rng(0)
    used, steps, terminated = info["shots_used"], 0, False
    while not terminated and steps < 40:
        before = state
        action = (0.2 * rng.uniform(-1, 1, env.action_space.shape)).astype(np.float32)
        obs, _, terminated, _, info = env.step(action)
        steps += 1
        state = env.calibration_state()
        _check_state(state, env_id, obs, info)
        # What each parameter entry says the action does (no entry reaches the window here).
        for e in before.action:
            if e.kind not in ("step", "around_estimate"):
                continue
            want = e.reference + float(action[e.index]) * e.per_unit_action
            assert state.parameter(e.name) == pytest.approx(want, rel=1e-12, abs=1e-12 * abs(e.per_unit_action))
        measures = plan.measuring_steps is None or steps <= plan.measuring_steps
        spent = plan.step_shots(action, before.action) if measures else 0
        assert info["shots_used"] - used == spent
        used = info["shots_used"]
    assert terminated
    if plan.steps_per_episode is not None:
        assert steps == plan.steps_per_episode
        assert used == plan.shots_after(steps)


@pytest.mark.parametrize("env_id", sorted(SETTINGS))
def test_vector_env_state_per_copy(env_id: str) -> None:
    venv = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", **SETTINGS[env_id])
    obs, infos = venv.reset(seed=[3, 4])
    for i in range(2):
        state = venv.unwrapped.calibration_state(i)
        assert state.parameter_values == tuple(float(x) for x in infos["params"][i])
        start, stop = state.measurement.observation_slice
        np.testing.assert_array_equal(np.asarray(state.measurement.values, dtype=np.float32), obs[i, start:stop])
    assert venv.unwrapped.calibration_state(0) != venv.unwrapped.calibration_state(1)


@pytest.mark.parametrize("env_id", sorted(SETTINGS))
def test_observation_names_say_what_each_entry_holds(env_id: str) -> None:
    """``env_description().observation_names`` (what an export's manifest labels the
    observation with) agree with the calibration state: the measurement's slice carries
    its probes' names, each moved parameter's entry holds its offset from the start, the
    budget share is the shots spent over the budget."""
    env = gym.make(env_id, **SETTINGS[env_id]).unwrapped
    obs, _ = env.reset(seed=2)
    start = env.calibration_state()
    names = env.env_description().observation_names
    assert names is not None and len(names) == obs.shape[0] == len(set(names))
    action = np.full(env.action_space.shape, 0.3, dtype=np.float32)
    obs, _, _, _, info = env.step(action)
    state = env.calibration_state()
    lo, hi = state.measurement.observation_slice
    prefix, suffix = ("", "_twin_signal") if env_id.endswith("GateCalibration-v1") else ("p1_", "")
    assert names[lo:hi] == tuple(f"{prefix}{n}{suffix}" for n in state.measurement.names)
    steps = [e for e in start.action if e.kind == "step"]
    # v0 observes each moved parameter's (value - start) / max_step: the action after one step.
    for e in steps if env_id.endswith("-v0") else ():
        moved = (state.parameter(e.name) - start.parameter(e.name)) / e.per_unit_action
        assert obs[names.index(f"{e.name}_from_start_steps")] == pytest.approx(moved, abs=1e-6)
        assert moved == pytest.approx(0.3, abs=1e-6)
    if "shot_budget_fraction" in names:
        assert obs[names.index("shot_budget_fraction")] == pytest.approx(
            info["shots_used"] / state.shot_plan.shot_budget, rel=1e-6)
    if env_id.endswith("GateCalibration-v1"):
        assert obs[names.index("round_fraction")] == pytest.approx(1 / SETTINGS[env_id]["rounds"])


@pytest.mark.parametrize(("env_id", "kwargs"), [
    ("pulsecal/PulseShaping-v0", {}), ("pulsecal/PulseShaping-v0", {"reward_mode": "measured"}),
    ("pulsecal/PulseShaping-v1", {}),
])
def test_pulse_shaping_observation_names(env_id: str, kwargs: dict[str, Any]) -> None:
    env = gym.make(env_id, **kwargs).unwrapped
    names = env.env_description().observation_names
    assert names is not None and len(names) == env.observation_space.shape[0] == len(set(names))
    assert names[:3] == ("amplitude_z", "beta_z", "detuning_z") and "score" in names
    assert ("p1_ground" in names) == (kwargs.get("reward_mode") == "measured")
    assert ("rise_time" in names) == env_id.endswith("-v1")


def test_session_envs_refuse_their_own_verification_and_unknown_reset_options() -> None:
    from pulsecal.envs.contract import refuse_env_verification, session_reset_options

    refuse_env_verification(None, "CZ")
    with pytest.raises(ValueError, match=r"env.verification=\{\}: allowed None in a session .* final ECR"):
        refuse_env_verification({}, "ECR")
    assert session_reset_options({"device": "d", "initial_params": [1, 2, 3, 4]}) == ("d", [1, 2, 3, 4])
    assert session_reset_options({}) == (None, None)
    with pytest.raises(ValueError, match=r"reset options \['seed_of'\]: allowed \['device', 'initial_params'\]"):
        session_reset_options({"seed_of": 1})
