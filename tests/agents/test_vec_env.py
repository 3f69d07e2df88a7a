"""The SB3 adapter of the batched envs: SB3's same-step reset semantics, equal to single envs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import pulsecal.envs  # noqa: F401  (registers the ids)
from pulsecal.agents.vec_env import SB3VecEnv, make_sb3_vec_env

CASES = {
    "pulsecal/GateCalibration-v0": {"shots_per_probe": 10, "shot_budget": 250},
    "pulsecal/DriftTracking-v0": {"episode_s": 3000.0},
}
MAX_STEPS = 4


def _actions(space: gym.spaces.Box, n_steps: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (n_steps, n, *space.shape)).astype(np.float32)


@pytest.mark.parametrize("env_id", ["pulsecal/GateCalibration-v0", "pulsecal/DriftTracking-v0"])
def test_sb3_adapter_same_step_reset(env_id: str) -> None:
    kw = CASES[env_id]
    venv = make_sb3_vec_env(env_id, n_envs=2, seed=5, max_episode_steps=MAX_STEPS, **kw)
    assert isinstance(venv, SB3VecEnv)
    singles = [gym.make(env_id, max_episode_steps=MAX_STEPS, **kw) for _ in range(2)]
    obs = venv.reset()
    sobs = [e.reset(seed=5 + i)[0] for i, e in enumerate(singles)]
    np.testing.assert_allclose(obs, np.stack(sobs), rtol=1e-6)
    acts = _actions(venv.action_space, 8, 2)
    ended = 0
    for t in range(8):
        obs, rew, dones, infos = venv.step(acts[t])
        for i, e in enumerate(singles):
            o, r, term, trunc, _ = e.step(acts[t, i])
            assert rew[i] == pytest.approx(r, rel=1e-5, abs=1e-6)
            assert dones[i] == (term or trunc)
            if term or trunc:
                ended += 1
                np.testing.assert_allclose(infos[i]["terminal_observation"], o, rtol=1e-6, atol=1e-7)
                assert infos[i]["TimeLimit.truncated"] == (trunc and not term)
                o, _ = e.reset()
            np.testing.assert_allclose(obs[i], o, rtol=1e-6, atol=1e-7)
    assert ended >= 2


@pytest.mark.parametrize("rows", [1, 3])
def test_actions_need_one_row_per_stepped_copy(rows: int) -> None:
    # One row must not be broadcast over every copy, nor a surplus row ignored.
    sb3 = make_sb3_vec_env("pulsecal/GateCalibration-v0", n_envs=2, seed=0)
    sb3.reset()
    with pytest.raises(ValueError, match=rf"actions have shape \({rows}, 3\): allowed \(2, 3\), one row per copy"):
        sb3.step(np.zeros((rows, 3), dtype=np.float32))


def test_sb3_adapter_resets_ended_copies_and_never_spends_past_the_budget() -> None:
    # SB3's same-step reset: stepping on after an end is the next episode, never an error.
    sb3 = make_sb3_vec_env("pulsecal/GateCalibration-v0", n_envs=2, seed=0)
    sb3.reset()
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(20):
        _, _, dones, infos = sb3.step(rng.uniform(-1, 1, (2, 3)).astype(np.float32))
        ended += int(dones.sum())
        assert all(i["shots_used"] <= 1000 for i in infos)
        assert (sb3.core.task.shots_used <= 1000).all()
    assert ended >= 4


@pytest.mark.parametrize("shape", [(3,), (2, 4), (2, 3, 1)])
def test_sb3_adapter_wrong_shape_action_names_the_shape(shape: tuple[int, ...]) -> None:
    sb3 = make_sb3_vec_env("pulsecal/GateCalibration-v0", n_envs=2, seed=0)
    sb3.reset()
    pattern = str(shape).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=rf"actions have shape {pattern}: allowed \(2, 3\)"):
        sb3.step(np.zeros(shape, dtype=np.float32))


def test_sb3_adapter_options_not_dicts_are_refused_by_name() -> None:
    sb3 = make_sb3_vec_env("pulsecal/GateCalibration-v0", n_envs=2, seed=0)
    with pytest.raises(TypeError, match=r"reset options=5 \(int\) is not allowed"):
        sb3.set_options(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"reset options\[1\]=5 \(int\) is not allowed"):
        sb3.set_options([{}, 5])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="set_options got 1 entries: allowed one per copy"):
        sb3.set_options([{}])
    sb3.set_options([None, {"miscalibration": {"amplitude": 0.01}}])  # type: ignore[list-item]
    sb3.reset()


def test_sb3_ppo_learns_a_few_steps_on_the_batched_env() -> None:
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    venv = make_sb3_vec_env("pulsecal/GateCalibration-v0", n_envs=2, seed=0)
    model = PPO("MlpPolicy", venv, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=32)
    assert model.num_timesteps == 32


@pytest.mark.parametrize(("n_envs", "budget"), [(3, 600), (8, 600), (3, 960)])
def test_sb3_merged_step_and_reset_equals_two_calls(n_envs: int, budget: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """GateCalibration predicts its budget terminations, so ``SB3VecEnv`` resets ending
    copies inside the step's own call; the result must be the two-call path's: the same
    observations, rewards, dones and terminal observations bit for bit (the truth metrics
    may differ in the last bits when the physics batches pulses differently)."""
    from pulsecal.envs.gate_calibration import GateCalibrationCore

    def run(merge: bool) -> list:
        if not merge:
            monkeypatch.setattr(GateCalibrationCore, "ends_after_step", lambda self, idx: None)
        venv = make_sb3_vec_env("pulsecal/GateCalibration-v0", n_envs=n_envs, seed=11,
                                max_episode_steps=5, shot_budget=budget)
        out = [venv.reset()]
        acts = _actions(venv.action_space, 24, n_envs)
        calls = 0
        advance = venv.core.advance

        def counted(*a, **k):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return advance(*a, **k)

        venv.core.advance = counted  # type: ignore[method-assign]
        for t in range(24):
            obs, rew, dones, infos = venv.step(acts[t])
            out += [obs, rew, dones]
            out += [i.get("terminal_observation", np.zeros(0)) for i in infos]
            out += [np.array([i.get("TimeLimit.truncated", False) for i in infos])]
            out += [np.array([i["fidelity"] for i in infos])]
        monkeypatch.undo()
        return [calls, *out]

    merged, two = run(True), run(False)
    assert merged[0] == 24 < two[0]  # one core call per step
    # budget 600 ends episodes by termination (4 steps), 960 by the time limit (5 steps)
    for a, b in zip(merged[1:], two[1:], strict=True):
        if a.dtype == np.float64 and a.ndim == 1 and a.size == n_envs:
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)  # truth
        else:
            np.testing.assert_array_equal(a, b)
