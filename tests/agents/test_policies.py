"""The one SB3 adapter, as replay and the evaluation each play it, and the package's lazy imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pulsecal.hardware.policy import Policy


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from pulsecal.agents.persistence import save_normalization
    from pulsecal.envs.gate_calibration import GateCalibrationEnv

    run = tmp_path_factory.mktemp("run")
    venv = VecNormalize(DummyVecEnv([lambda: GateCalibrationEnv(shots_per_probe=20)]))
    PPO("MlpPolicy", venv, n_steps=8, batch_size=8, seed=0, device="cpu").save(str(run / "model.zip"))
    venv.obs_rms.mean = np.full(venv.observation_space.shape, 0.25)
    venv.obs_rms.var = np.full(venv.observation_space.shape, 0.07)
    save_normalization(venv, run / "vecnormalize.npz")
    (run / "config.yaml").write_text("agent:\n  name: ppo\n")
    return run


def test_sb3_policy_keeps_each_callers_numerics(run_dir: Path) -> None:
    """Replay normalises the observation in float64 and passes the action through; the
    evaluation casts to float32 first and clips to [-1, 1]. Both through one class."""
    from pulsecal.agents.export import read_normalisation
    from pulsecal.agents.policies import SB3Policy

    replay, evaluation = SB3Policy(run_dir), SB3Policy.from_run_dir(run_dir, "ppo")
    assert isinstance(replay, Policy) and isinstance(evaluation, Policy)
    assert evaluation.describe()["model_sha256"] == replay.describe()["model_sha256"]
    norm = read_normalisation(run_dir / "vecnormalize.npz")
    assert norm is not None
    obs = np.random.default_rng(7).uniform(0, 1, (5, *replay.model.observation_space.shape))
    state_r, state_e = replay.initial_state(), evaluation.initial_state()
    for o in obs:
        a_r, state_r = replay.act(o, state_r)
        a_e, state_e = evaluation.act(o, state_e)
        want_r, _ = replay.model.predict(norm.apply(o[None]), deterministic=True)
        want_e, _ = replay.model.predict(norm.apply(o.astype(np.float32)[None]), deterministic=True)
        assert a_r.dtype == a_e.dtype == np.float32
        np.testing.assert_array_equal(a_r, np.asarray(want_r, dtype=np.float32)[0])
        np.testing.assert_array_equal(a_e, np.clip(np.asarray(want_e, dtype=np.float32)[0], -1.0, 1.0))
    with pytest.raises(TypeError, match="model"):
        SB3Policy.from_model(object())


def test_policies_package_imports_no_learner_until_asked() -> None:
    code = ("import sys, pulsecal.agents.policies as p; p.FunctionPolicy; p.ScriptedPolicy; "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'stable_baselines3') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
