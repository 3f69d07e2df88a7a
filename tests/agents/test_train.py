"""Training machinery end to end on a tiny test-local env: run directory artefacts,
save -> load -> predict, clean one-line errors for bad configs, joblib multirun,
and a smoke run of every experiment config on the real envs (once registered).

The toy env (``test_train:PulsecalToy-v0``, Gymnasium's "module:id" form, so a
subprocess with this folder on PYTHONPATH finds it) nudges two hidden parameters
towards a per-episode target: a calibration problem small enough for unit tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

TOY_ID = "test_train:PulsecalToy-v0"


class ToyCalibrationEnv(gym.Env):
    """Two parameters in [-1, 1] nudged by actions toward a hidden target; info like the
    real envs (fidelity, leakage, shots_used, device_time_s, waveform, dt_s)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, shots_per_step: int = 100, **_device_kwargs: Any) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.shots_per_step = shots_per_step
        self._target = np.zeros(2)
        self._p = np.zeros(2)
        self._shots = 0
        self._t = 0

    def _error(self) -> float:
        return float(np.sum((self._p - self._target) ** 2))

    def _obs(self) -> np.ndarray:
        noise = self.np_random.normal(0.0, 0.01, 2)
        return np.concatenate([self._p - self._target + noise, [self._t / 10]]).astype(np.float32)

    def _info(self) -> dict[str, Any]:
        err = self._error()
        return {
            "fidelity": 1.0 - min(0.5, err),
            "leakage": 1e-4 * err,
            "shots_used": self._shots,
            "device_time_s": self._shots * 200e-6,
            "waveform": np.full(20, complex(*self._p) / 2),
            "dt_s": 1e-9,
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # type: ignore[override]
        super().reset(seed=seed)
        self._target = self.np_random.uniform(-0.5, 0.5, 2)
        self._p = np.zeros(2)
        self._shots = 0
        self._t = 0
        return self._obs(), self._info()

    def step(self, action):  # type: ignore[override]
        self._p = np.clip(self._p + 0.2 * np.asarray(action, dtype=float), -1, 1)
        self._shots += self.shots_per_step
        self._t += 1
        return self._obs(), -self._error(), False, False, self._info()


if "PulsecalToy-v0" not in gym.registry:
    gym.register("PulsecalToy-v0", entry_point=ToyCalibrationEnv, max_episode_steps=10)


# ------------------------------------------------------------------ helpers

TINY = [
    f"env.id={TOY_ID}",
    "env.n_envs=2",
    "total_timesteps=256",
    "agent.n_steps=64",
    "agent.batch_size=64",
    "agent.n_epochs=2",
    "agent.policy_kwargs.net_arch=[16]",
    "callbacks.eval_every_steps=128",
    "callbacks.eval_episodes=2",
    "callbacks.checkpoint_every_steps=128",
    "callbacks.progress_bar=false",
    "device.n_eval_devices=2",
    "logger=csv",
]


def compose(overrides: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("pulsecal.configs", version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


_CLI = "from pulsecal.scripts.train import main; main()"


def _cli_env() -> dict[str, str]:
    # This folder on PYTHONPATH: the subprocess imports the test envs registered here.
    return {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def run_cli(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _CLI, *args], cwd=cwd, env=_cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def start_cli(args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    """``pulsecal-train`` as ``run_cli`` runs it, in the background with its output dropped
    (for tests that kill it)."""
    return subprocess.Popen([sys.executable, "-c", _CLI, *args], cwd=cwd, env=_cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def sigkill_long_run(args: list[str], run_dir: Path, cwd: Path, ready: Callable[[], bool], *,
                     poll_s: float, wait_s: float = 120) -> None:
    """Start ``args`` as a run far longer than the test (``total_timesteps=100000``) in
    ``run_dir``, wait until ``ready()`` (at most ``wait_s``), then SIGKILL it."""
    args = [a for a in args if not a.startswith("total_timesteps")] + [
        "total_timesteps=100000", f"hydra.run.dir={run_dir}"]
    proc = start_cli(args, cwd)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and not ready():
        time.sleep(poll_s)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


class Crash(BaseCallback):
    """Simulates a crash mid-run (after the first checkpoint), for the resume tests."""

    def __init__(self, at_step: int) -> None:
        super().__init__()
        self.at_step = at_step

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.at_step:
            raise RuntimeError("simulated crash")
        return True


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


# -------------------------------------------------------------------- tests


def test_train_writes_a_replayable_run_dir(tmp_path: Path) -> None:
    from pulsecal.agents.pipelines.train import train

    metrics = train(compose(TINY), run_dir=tmp_path)
    assert metrics["num_timesteps"] >= 256
    assert 0.0 <= metrics["final_infidelity"] <= 0.5
    assert metrics["objective"] == metrics["final_infidelity"]
    for name in ("model.zip", "vecnormalize.npz", "vecnormalize.json", "config.yaml", "command.txt",
                 "provenance.json", "eval.csv", "metrics.json", "learning_curve.png", "logs/progress.csv"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "learning_curve.png").stat().st_size > 5_000
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*.zip"))
    assert ckpts[:2] == ["step_0000000128.zip", "step_0000000256.zip"]
    import json

    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["seed"] == 0 and "stable-baselines3" in prov["packages"] and prov["git_revision"]
    # Nothing pickled besides SB3's zip: normalisation is npz (no object arrays) + JSON.
    np.load(tmp_path / "vecnormalize.npz", allow_pickle=False)


ALGO_HYPER = {
    "ppo": {"n_steps": 32, "batch_size": 32, "n_epochs": 1},
    "recurrent_ppo": {"n_steps": 32, "batch_size": 32, "n_epochs": 1},
    "sac": {"learning_starts": 32, "batch_size": 32, "buffer_size": 1000},
    "td3": {"learning_starts": 32, "batch_size": 32, "buffer_size": 1000, "action_noise_sigma": 0.1},
}


@pytest.mark.parametrize("algo", sorted(ALGO_HYPER))
def test_save_load_predict_identical(tmp_path: Path, algo: str) -> None:
    from stable_baselines3.common.vec_env import VecNormalize

    from pulsecal.agents.factory import (
        AlgorithmSpec,
        build_algorithm,
        load_algorithm,
        make_vec_env,
        wrap_normalization,
    )
    from pulsecal.agents.persistence import (
        load_normalization,
        save_model_atomic,
        save_normalization,
    )

    spec = AlgorithmSpec(algo, "MlpLstmPolicy" if algo == "recurrent_ppo" else "MlpPolicy",
                         hyperparams=ALGO_HYPER[algo], net_arch=(8,),
                         lstm_hidden_size=8 if algo == "recurrent_ppo" else None)
    venv = wrap_normalization(make_vec_env(TOY_ID, 2, seed=3), spec)
    model = build_algorithm(spec, venv, seed=3)
    model.learn(128)
    assert isinstance(venv, VecNormalize)
    save_model_atomic(model, tmp_path / "m.zip")
    save_normalization(venv, tmp_path / "n.npz")

    venv2 = load_normalization(make_vec_env(TOY_ID, 2, seed=3), tmp_path / "n.npz", training=False)
    model2 = load_algorithm(algo, tmp_path / "m.zip", venv2)
    raw = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    venv.training = False
    a1, s1 = model.predict(venv.normalize_obs(raw), deterministic=True)
    a2, s2 = model2.predict(venv2.normalize_obs(raw), deterministic=True)
    np.testing.assert_array_equal(a1, a2)
    if algo == "recurrent_ppo":  # and the next step from the carried LSTM state
        np.testing.assert_array_equal(model.predict(venv.normalize_obs(raw), state=s1, deterministic=True)[0],
                                      model2.predict(venv2.normalize_obs(raw), state=s2, deterministic=True)[0])
    assert model2.num_timesteps == model.num_timesteps


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["total_timesteps=-5"], "total_timesteps"),
        (["env.shots_per_probe=-10"], "env.shots_per_probe"),
        (["agent=nope"], "agent"),
        (["device.t1_s=1e-4", "device.t2_s=3e-4"], "device.t2_s"),
        (["agent.learnin_rate=0.1"], "agent.learnin_rate"),
        (["seed=abc"], "seed"),
        (["env.id=pulsecal/NoSuchEnv-v0"], "env.id"),
        (["logger.formats=[csv,tensorbord]"], "logger.formats"),
        (["env=gate_calibration_v1", "env.id=pulsecal/GateCalibration-v1", "env.kwargs.shot_budget=-5"],
         "env.kwargs.shot_budget"),
        # A misspelt env option fails while Hydra composes, before any run directory exists.
        (["env.kwargs.shots_per_prob=3"], "env.kwargs.shots_per_prob"),
        (["env.kwargs.shot_budget=lots"], "env.kwargs.shot_budget"),
        # The options of GateCalibration-v0's schema are not those of v1.
        (["env.id=pulsecal/GateCalibration-v1"], "env.id"),
        (["env.id=pulsecal/GateCalibration-v0", "device.preset=nope"], "device.preset"),
    ],
)
def test_bad_config_exits_with_key_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    args: list[str], key: str,
) -> None:
    from pulsecal.scripts.train import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["pulsecal-train", *TINY, *args])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}: "), lines
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_bad_config_from_the_console_script(tmp_path: Path) -> None:
    proc = run_cli([f"env.id={TOY_ID}", "total_timesteps=-5"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: total_timesteps: must be a positive integer, got -5"
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_cli_runs_from_any_directory(tmp_path: Path) -> None:
    proc = run_cli([*TINY, "hydra.run.dir=out"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "out" / "model.zip").is_file()
    assert (tmp_path / "out" / ".hydra" / "config.yaml").is_file()


def test_multirun_joblib_ppo_and_sac(tmp_path: Path) -> None:
    common = [a for a in TINY if not a.startswith("agent.")] + [
        "total_timesteps=128", "agent.batch_size=32", "agent.policy_kwargs.net_arch=[16]"]
    proc = run_cli(["--multirun", *common, "agent=ppo,sac", "hydra.sweep.dir=sweep"], cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    for job, algo in (("0", "ppo"), ("1", "sac")):
        assert (tmp_path / "sweep" / job / "model.zip").is_file()
        assert f"name: {algo}" in (tmp_path / "sweep" / job / "config.yaml").read_text()
