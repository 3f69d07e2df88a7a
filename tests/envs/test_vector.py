"""Batched vector envs equal N single envs with the same seeds."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import pulsecal.envs  # noqa: F401  (registers the ids)
from pulsecal.envs.vector import BatchedVectorEnv

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
    with pytest.raises(ValueError, match=rf"actions have shape \({rows}, 3\): allowed \(2, 3\), one row per copy"):
        venv.step(np.zeros((rows, 3), dtype=np.float32))


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
    assert list(dicts[0]) == ["shots_used", "device_time_s", "waveform", "dt_s", "params", "gate_duration_s",
                              "limits", "limit_failure", "fidelity", "fidelity_raw", "leakage", "coherence_limit",
                              "infidelity_estimate"]
    assert type(dicts[0]["limits"]) is dict and dicts[0]["limit_failure"] is None
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
        if isinstance(v, dict):  # info["limits"]: Gymnasium nests a dict value
            assert got[k].keys() == v.keys()
            continue
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        np.testing.assert_array_equal(got[k], v)
