"""No env runs past the end of its episode: a step after it is refused until reset, so no
shot past the budget, no second past the horizon, no reward past the time limit. Vector
envs autoreset instead (Gymnasium's next-step mode). Bad reset options and wrongly shaped
vector actions are refused by name."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode

import pulsecal.envs  # noqa: F401  (registers the ids)
from pulsecal.envs.episode_end import EpisodeEndEnforcing, make
from pulsecal.envs.gate_calibration import GateCalibrationEnv
from pulsecal.envs.registration import ENV_SPECS

ENV_IDS = tuple(ENV_SPECS)
# How each id ends with its registered settings: the env itself, or TimeLimit.
TERMINATING = ("pulsecal/GateCalibration-v0", "pulsecal/GateCalibration-v1",
               "pulsecal/DriftTracking-v0", "pulsecal/DriftTracking-v1", "pulsecal/CRCalibration-v0",
               "pulsecal/CZCalibration-v0")
TRUNCATED = ("pulsecal/PulseShaping-v0", "pulsecal/PulseShaping-v1")
# Open-system two-qubit envs cost ~1.2 s per step: their generic checks run in the slow tier.
SLOW_IDS = frozenset({"pulsecal/CZCalibration-v0"})


def _ids(ids: tuple[str, ...]) -> list[object]:
    return [pytest.param(i, marks=pytest.mark.slow) if i in SLOW_IDS else i for i in ids]



def _run_to_end(env: gym.Env, seed: int = 0) -> tuple[int, bool, bool, dict]:
    """Step with a seeded random policy until the episode ends: (steps, term, trunc, info)."""
    env.reset(seed=seed)
    env.action_space.seed(seed)
    steps = 0
    while True:
        _, _, term, trunc, info = env.step(env.action_space.sample())
        steps += 1
        if term or trunc:
            return steps, term, trunc, info
        assert steps < 1000, "the episode never ended"


def _shots_used(core: object) -> int:
    """Copy 0's shots (the DRAG cores count them in their task, PulseShaping's in itself)."""
    return int(getattr(core, "task", core).shots_used[0])


def test_every_registered_id_is_covered() -> None:
    assert set(TERMINATING) | set(TRUNCATED) == set(ENV_IDS)


@pytest.mark.parametrize("env_id", _ids(ENV_IDS))
def test_step_after_the_end_raises_until_reset(env_id: str) -> None:
    env = make(env_id)
    steps, term, trunc, _ = _run_to_end(env)
    assert (term, trunc) == ((True, False) if env_id in TERMINATING else (False, True))
    how = "terminated" if term else "truncated"
    for _ in range(2):  # and it stays refused
        with pytest.raises(ResetNeeded, match=rf"{env_id}: the episode ended \({how}\) at step {steps}; "
                                              r"call reset\(\) before step\(\)"):
            env.step(env.action_space.sample())
    # reset clears it: a whole new episode, ending the same way.
    assert _run_to_end(env, seed=1)[1:3] == (term, trunc)


@pytest.mark.parametrize("env_id", _ids(TERMINATING))
def test_plain_gym_make_refuses_a_step_after_termination(env_id: str) -> None:
    """The env guards its own termination, with no pulsecal wrapper around it."""
    env = gym.make(env_id)
    steps, term, _, _ = _run_to_end(env)
    assert term
    with pytest.raises(ResetNeeded, match=rf"ended \(terminated\) at step {steps}"):
        env.step(env.action_space.sample())
    env.reset()
    env.step(env.action_space.sample())


@pytest.mark.parametrize(("env_id", "limit"), [
    pytest.param(i, 3, marks=pytest.mark.slow) if i in SLOW_IDS else (i, 3) for i in ENV_IDS] + [
    (i, None) for i in TRUNCATED])
def test_plain_gym_make_refuses_a_step_after_truncation(env_id: str, limit: int | None) -> None:
    """The registered spec puts EpisodeEndEnforcing outside TimeLimit: a plain gym.make env
    refuses after truncation by the registered limit (PulseShaping) or by any override."""
    env = gym.make(env_id) if limit is None else gym.make(env_id, max_episode_steps=limit)
    steps, _, trunc, _ = _run_to_end(env)
    assert trunc and steps == (limit or gym.spec(env_id).max_episode_steps)
    state = (_shots_used(env.unwrapped.core), env.unwrapped.device.clock_s)
    for _ in range(2):
        with pytest.raises(ResetNeeded, match=rf"{env_id}: the episode ended \(truncated\) at step {steps}; "
                                              r"call reset\(\) before step\(\)"):
            env.step(env.action_space.sample())
    # The refused step measured nothing: no shot, no device time.
    assert (_shots_used(env.unwrapped.core), env.unwrapped.device.clock_s) == state
    assert _run_to_end(env, seed=1)[2]


def test_the_wrapper_is_not_added_twice_and_survives_a_spec_round_trip() -> None:
    env = make("pulsecal/PulseShaping-v0")
    assert isinstance(env, EpisodeEndEnforcing) and not isinstance(env.env, EpisodeEndEnforcing)
    again = gym.make(env.spec)
    assert isinstance(again, EpisodeEndEnforcing) and not isinstance(again.env, EpisodeEndEnforcing)


def test_direct_construction_refuses_before_reset_and_after_termination() -> None:
    env = GateCalibrationEnv()
    with pytest.raises(ResetNeeded, match=r"before calling env.reset\(\)"):
        env.step(np.zeros(3, dtype=np.float32))
    steps, term, _, _ = _run_to_end(env)
    assert term
    with pytest.raises(ResetNeeded, match=rf"GateCalibrationEnv: the episode ended \(terminated\) at step {steps}"):
        env.step(np.zeros(3, dtype=np.float32))


def test_a_failed_reset_needs_another_reset() -> None:
    env = gym.make("pulsecal/GateCalibration-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="unknown"):
        env.reset(options={"no_such_option": 1})
    with pytest.raises(ResetNeeded, match=r"the last reset\(\) raised: call reset\(\) before step\(\)"):
        env.step(np.zeros(3, dtype=np.float32))
    env.reset(seed=0)
    env.step(np.zeros(3, dtype=np.float32))


def test_gate_calibration_v0_never_spends_past_its_budget() -> None:
    env = gym.make("pulsecal/GateCalibration-v0")
    budget = env.unwrapped.core.cfg.shot_budget
    assert budget == 1000
    for seed in range(3):
        _, term, _, info = _run_to_end(env, seed)
        assert term and info["shots_used"] <= budget
        used = _shots_used(env.unwrapped.core)
        with pytest.raises(ResetNeeded):
            env.step(np.zeros(3, dtype=np.float32))
        assert _shots_used(env.unwrapped.core) == used  # the refused step measured nothing


def test_drift_tracking_v1_never_runs_past_24_hours() -> None:
    env = gym.make("pulsecal/DriftTracking-v1")
    _, term, _, info = _run_to_end(env)
    assert term and info["device_time_s"] <= 24 * 3600.0
    clock = env.unwrapped.device.clock_s
    with pytest.raises(ResetNeeded):
        env.step(env.action_space.sample())
    assert env.unwrapped.device.clock_s == clock


@pytest.mark.parametrize("env_id", TRUNCATED)
def test_pulse_shaping_pays_no_reward_after_truncation(env_id: str) -> None:
    env = make(env_id, max_episode_steps=5)
    steps, _, trunc, _ = _run_to_end(env)
    assert (steps, trunc) == (5, True)
    core = env.unwrapped.core
    state = (_shots_used(core), env.unwrapped.device.clock_s)
    with pytest.raises(ResetNeeded, match=r"ended \(truncated\) at step 5"):
        env.step(env.action_space.sample())
    assert (_shots_used(core), env.unwrapped.device.clock_s) == state


def test_time_limit_given_to_make_is_the_one_enforced() -> None:
    """A longer limit than the registered one is honoured (the guard sits outside it)."""
    env = make("pulsecal/PulseShaping-v0", max_episode_steps=60)
    assert _run_to_end(env)[:3] == (60, False, True)
    assert isinstance(env, EpisodeEndEnforcing) and env.spec is not None and env.spec.max_episode_steps == 60


@pytest.mark.parametrize("env_id", _ids(ENV_IDS))
def test_vector_env_autoresets_in_next_step_mode_and_never_overshoots(env_id: str) -> None:
    venv = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", max_episode_steps=10)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    venv.reset(seed=0)
    venv.action_space.seed(0)
    ended = np.zeros(2, dtype=np.bool_)
    resets = terminations = 0
    budget = getattr(venv.unwrapped.core.cfg, "shot_budget", None)
    for _ in range(24):
        _, rew, term, trunc, info = venv.step(venv.action_space.sample())
        # The step after an end only resets that copy: no reward, no end, no shots yet.
        assert not rew[ended].any() and not term[ended].any() and not trunc[ended].any()
        resets += int(ended.sum())
        terminations += int(term.sum())
        if budget is not None:
            assert (info["shots_used"] <= budget).all()
        ended = term | trunc
    assert resets >= 2
    if env_id.startswith("pulsecal/GateCalibration"):
        assert terminations >= 2  # the budget (v0) or the rounds (v1) ended episodes, not the limit


def test_gymnasium_sync_vector_env_over_the_single_envs_never_steps_an_ended_copy() -> None:
    # SyncVectorEnv's next-step autoreset resets an ended copy instead of stepping it, so the
    # single envs' refusal never fires through it.
    venv = gym.make_vec("pulsecal/GateCalibration-v0", num_envs=2, vectorization_mode="sync")
    venv.reset(seed=0)
    venv.action_space.seed(0)
    terminations = 0
    for _ in range(20):
        _, _, term, _, info = venv.step(venv.action_space.sample())
        terminations += int(term.sum())
        assert (info["shots_used"] <= 1000).all()
    assert terminations >= 4


@pytest.mark.parametrize("env_id", _ids(ENV_IDS))
def test_make_vec_builds_the_vector_entry_point_by_default(env_id: str) -> None:
    """Gymnasium refuses additional_wrappers for a vector entry point; the registered
    spec's wrapper for gym.make must not stop gym.make_vec's default mode."""
    venv = gym.make_vec(env_id, num_envs=2)
    assert type(venv).__name__ == ENV_SPECS[env_id][1].rsplit(":", 1)[1]
    assert venv.max_episode_steps == gym.spec(env_id).max_episode_steps
    assert venv.unwrapped.spec is not None and venv.unwrapped.spec.additional_wrappers == ()


@pytest.mark.parametrize("env_id", _ids(ENV_IDS))
def test_sync_vector_env_autoresets_after_truncation(env_id: str) -> None:
    """SyncVectorEnv (next-step autoreset) over single envs truncated by TimeLimit resets
    the ended copies instead of stepping them: no refusal, no reward on the reset step."""
    venv = gym.make_vec(env_id, num_envs=2, vectorization_mode="sync", max_episode_steps=3)
    venv.reset(seed=0)
    venv.action_space.seed(0)
    truncations = 0
    ended = np.zeros(2, dtype=np.bool_)
    for _ in range(8):
        _, rew, term, trunc, _ = venv.step(venv.action_space.sample())
        assert not rew[ended].any() and not (term | trunc)[ended].any()
        truncations += int(trunc.sum())
        ended = term | trunc
    assert truncations == 4  # steps 3 and 7 of each copy (step 4 was the reset)


@pytest.mark.parametrize("shape", [(3,), (2, 4), (1, 3), (3, 3), (2, 3, 1)])
def test_vector_env_wrong_shape_action_names_the_shape(shape: tuple[int, ...]) -> None:
    venv = gym.make_vec("pulsecal/GateCalibration-v0", num_envs=2, vectorization_mode="vector_entry_point")
    venv.reset(seed=0)
    used = venv.unwrapped.core.task.shots_used.copy()
    with pytest.raises(ValueError, match=rf"actions have shape {re_shape(shape)}: allowed \(2, 3\)"):
        venv.step(np.zeros(shape, dtype=np.float32))
    np.testing.assert_array_equal(venv.unwrapped.core.task.shots_used, used)  # refused before any shot


def re_shape(shape: tuple[int, ...]) -> str:
    return str(shape).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize("env_id", _ids(ENV_IDS))
def test_reset_with_options_not_a_dict_is_refused_by_name(env_id: str) -> None:
    env = gym.make(env_id)
    for bad in (5, "device", [("device", None)]):
        with pytest.raises(TypeError, match=r"reset options=.* is not allowed: allowed None or a dict"):
            env.reset(options=bad)
    env.reset(seed=0, options=None)


def test_vector_reset_with_options_not_a_dict_is_refused_by_name() -> None:
    venv = gym.make_vec("pulsecal/GateCalibration-v0", num_envs=2, vectorization_mode="vector_entry_point")
    with pytest.raises(TypeError, match=r"reset options=5 \(int\) is not allowed"):
        venv.reset(options=5)
    with pytest.raises(TypeError, match=r"reset options\['per_copy'\]\[1\]=5 \(int\) is not allowed"):
        venv.reset(options={"per_copy": [{}, 5]})
    venv.reset(seed=0, options={"per_copy": [None, {}]})
