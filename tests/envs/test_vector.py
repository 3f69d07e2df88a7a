"""Batched vector envs equal N single envs with the same seeds; SB3 adapter semantics."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import pulsecal.envs  # noqa: F401  (registers the ids)
from pulsecal.envs.vector import BatchedVectorEnv, SB3VecEnv, make_sb3_vec_env

# Small episodes so that autoreset happens within a few steps.
CASES = {
    "pulsecal/GateCalibration-v0": {"shots_per_probe": 10, "shot_budget": 250},
    "pulsecal/PulseShaping-v0": {"reward_mode": "measured", "shots_per_probe": 20},
    "pulsecal/DriftTracking-v0": {"episode_s": 3000.0},
}
MAX_STEPS = 4
SEEDS = [11, 12, 13]


def _actions(space: gym.spaces.Box, n_steps: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (n_steps, n, *space.shape)).astype(np.float32)


@pytest.mark.parametrize("env_id", list(CASES))
def test_vector_env_equals_single_envs(env_id: str) -> None:
    kw = CASES[env_id]
    n, steps = len(SEEDS), 9
    venv = gym.make_vec(env_id, num_envs=n, max_episode_steps=MAX_STEPS, **kw)
    assert isinstance(venv, BatchedVectorEnv)
    singles = [gym.make(env_id, max_episode_steps=MAX_STEPS, **kw) for _ in SEEDS]
    acts = _actions(venv.single_action_space, steps, n)

    vobs, vinfo = venv.reset(seed=SEEDS)
    sobs = [e.reset(seed=s)[0] for e, s in zip(singles, SEEDS, strict=True)]
    np.testing.assert_allclose(vobs, np.stack(sobs), rtol=1e-6)
    done = [False] * n
    resets = 0
    for t in range(steps):
        vobs, vr, vterm, vtrunc, vinfo = venv.step(acts[t])
        for i, e in enumerate(singles):
            if done[i]:  # next-step autoreset: this step only resets copy i
                o, info = e.reset()
                r, term, trunc = 0.0, False, False
            else:
                o, r, term, trunc, info = e.step(acts[t, i])
            np.testing.assert_allclose(vobs[i], o, rtol=1e-6, atol=1e-7)
            assert vr[i] == pytest.approx(r, rel=1e-9, abs=1e-12)
            assert (bool(vterm[i]), bool(vtrunc[i])) == (term, trunc)
            assert vinfo["fidelity"][i] == pytest.approx(info["fidelity"], abs=1e-12)
            assert vinfo["shots_used"][i] == info["shots_used"]
            resets += done[i]
            done[i] = term or trunc
    assert resets >= 1  # autoreset was exercised


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


def test_vector_reset_seed_int_means_seed_plus_index() -> None:
    venv = gym.make_vec("pulsecal/GateCalibration-v0", num_envs=2)
    a, _ = venv.reset(seed=3)
    b, _ = venv.reset(seed=[3, 4])
    np.testing.assert_array_equal(a, b)


def test_vector_bad_actions_raise() -> None:
    venv = gym.make_vec("pulsecal/GateCalibration-v0", num_envs=2)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        venv.step(np.full((2, 3), np.nan, dtype=np.float32))


def test_check_actions_validates_clips_and_never_returns_the_callers_array() -> None:
    core = gym.make_vec("pulsecal/GateCalibration-v0", num_envs=2).unwrapped.core
    inside = np.array([[0.5, -1.0, 1.0], [0.0, 0.25, -0.75]])
    out = core.check_actions(inside)
    np.testing.assert_array_equal(out, inside)
    assert out is not inside and not np.shares_memory(out, inside)
    # Within the 1e-6 tolerance: clipped onto the bound; beyond it, or NaN/inf: refused.
    np.testing.assert_array_equal(core.check_actions(np.array([[1.0 + 5e-7, 0.0, -1.0 - 5e-7]] * 2)),
                                  [[1.0, 0.0, -1.0]] * 2)
    for bad, msg in ((1.01, "magnitude"), (np.nan, "NaN/inf"), (-np.inf, "NaN/inf")):
        a = inside.copy()
        a[1, 2] = bad
        with pytest.raises(ValueError, match=msg):
            core.check_actions(a)
    with pytest.raises(ValueError, match="shape"):
        core.check_actions(np.zeros((2, 4)))


@pytest.mark.parametrize("rows", [1, 3])
def test_actions_need_one_row_per_stepped_copy(rows: int) -> None:
    # One row must not be broadcast over every copy, nor a surplus row ignored.
    venv = gym.make_vec("pulsecal/GateCalibration-v0", num_envs=2)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match="one per stepped copy"):
        venv.step(np.zeros((rows, 3), dtype=np.float32))
    sb3 = make_sb3_vec_env("pulsecal/GateCalibration-v0", n_envs=2, seed=0)
    sb3.reset()
    with pytest.raises(ValueError, match="one per stepped copy"):
        sb3.step(np.zeros((rows, 3), dtype=np.float32))


def test_sb3_ppo_learns_a_few_steps_on_the_batched_env() -> None:
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    venv = make_sb3_vec_env("pulsecal/GateCalibration-v0", n_envs=2, seed=0)
    model = PPO("MlpPolicy", venv, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=32)
    assert model.num_timesteps == 32


def test_vector_reset_per_copy_options_fix_each_device() -> None:
    from pulsecal.envs.presets import held_out_devices

    devices = held_out_devices(3, seed=1)
    venv = gym.make_vec("pulsecal/GateCalibration-v0", num_envs=3)
    venv.reset(seed=0, options={"per_copy": [{"device_params": d} for d in devices],
                                "miscalibration": {"amplitude": 0.01}})
    for dev, d in zip(venv.core.devices, devices, strict=True):
        assert dev.current_params() == d
    with pytest.raises(ValueError, match="per_copy"):
        venv.reset(options={"per_copy": [{}]})


def test_batched_infos_equal_gymnasiums_fold() -> None:
    """``_batch_infos`` builds the vector info in one go; it must equal folding Gymnasium's
    ``_add_info`` over the copies (keys, order, dtypes, masks), with a fallback for infos
    it cannot batch (missing keys, nested dicts, mixed types)."""
    venv = gym.make_vec("pulsecal/GateCalibration-v0", num_envs=4)
    _, _ = venv.reset(seed=1)
    inner = venv.unwrapped if hasattr(venv.unwrapped, "_batch_infos") else venv
    waves = [np.full(3, 1j * k) for k in range(3)]
    cases = [
        [{"a": 1.5, "b": 2, "c": True, "w": waves[k], "n": np.float32(k)} for k in range(3)],
        [{"a": 1.5}, {"a": 2.5, "extra": 1}, {"a": 0.5}],  # differing keys
        [{"a": 1.5, "d": {"x": 1}}, {"a": 2.5, "d": {"x": 2}}, {"a": 0.5, "d": {"x": 3}}],
        [{"a": 1}, {"a": 2.5}, {"a": 3}],  # int first, then a float
        [{"s": "x"}, {"s": "y"}, {"s": "z"}],
    ]
    for infos in cases:
        order = [3, 0, 2]
        ref: dict = {}
        for j, i in enumerate(order):
            ref = inner._add_info(ref, infos[j], i)
        got = inner._batch_infos(infos, order)
        assert list(got) == list(ref)
        for k, v in ref.items():
            if isinstance(v, dict):
                assert got[k].keys() == v.keys()
                continue
            assert got[k].dtype == v.dtype and got[k].shape == v.shape
            assert all(a == b for a, b in zip(got[k].ravel(), v.ravel(), strict=True)) or \
                np.array_equal(got[k], v)


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


def test_info_columns_read_as_the_per_copy_dicts_and_batch_as_their_fold() -> None:
    """A core may hand its infos over as ``InfoColumns``: each entry must be the plain dict
    (Python scalars, array rows) and the vector info the fold of those dicts."""
    from pulsecal.envs.vector import InfoColumns

    venv = gym.make_vec("pulsecal/GateCalibration-v0", num_envs=4)
    venv.reset(seed=2)
    inner = venv.unwrapped if hasattr(venv.unwrapped, "_batch_infos") else venv
    _, _, _, infos = inner.core.advance([3, 0, 2], np.zeros((3, 3)), [1])
    assert isinstance(infos, InfoColumns) and len(infos) == 4
    dicts = [infos[j] for j in range(4)]
    assert list(dicts[0]) == ["shots_used", "device_time_s", "waveform", "dt_s", "params", "fidelity",
                              "fidelity_raw", "leakage", "coherence_limit", "infidelity_estimate"]
    assert type(dicts[0]["shots_used"]) is int and type(dicts[0]["fidelity"]) is float
    assert dicts[1]["waveform"].shape == infos.columns["waveform"].shape[1:]
    assert [d["shots_used"] for d in infos[2:]] == [d["shots_used"] for d in dicts[2:]]
    order = [3, 0, 2, 1]
    ref: dict = {}
    for j, i in enumerate(order):
        ref = inner._add_info(ref, dicts[j], i)
    got = inner._batch_infos(infos, order)
    assert list(got) == list(ref)
    for k, v in ref.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        np.testing.assert_array_equal(got[k], v)
