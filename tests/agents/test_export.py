"""Export parity: the ONNX folder acts exactly as SB3's deterministic ``predict``.

Each algorithm is trained for a few hundred steps on a small test-local environment
(with and without VecNormalize, whose statistics then differ from identity), exported,
loaded through the lab runner, and compared with SB3 on 10,000 random observations drawn
from the observation box widened by half its width on each side, so about half the
coordinates lie outside what the policy saw in training. RecurrentPPO is compared step
by step along 10,000 observations split into episodes, carrying its LSTM state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from pulsecal.agents.export import (
    ExportMetadata,
    ObservationNormalisation,
    export_policy,
    metadata_from_env,
    reference_actions,
    sample_observations,
)
from pulsecal.agents.runner import PolicyState, load_policy

N_PARITY = 10_000
TOL = 1e-5


class ToyCalibration(gym.Env[np.ndarray, np.ndarray]):
    """A calibration-shaped toy: two populations, a leakage estimate and a drift in Hz.

    Action Space: Box([-1, -0.5], [1, 2]) (deliberately not [-1, 1], so the action
    unscaling of squashed policies is exercised). Observation Space: four values, one of
    them on a 1e6 scale, so missing normalisation would show. Episode End: never by
    itself; the time limit is a ``TimeLimit`` wrapper.
    """

    observation_labels = ("p1_x90", "p1_y90", "leakage", "drift_hz")
    observation_units = ("1", "1", "1", "Hz")
    action_labels = ("delta_amplitude", "delta_beta")
    action_units = ("1", "1")
    pulse_parametrisation: ClassVar[dict[str, Any]] = {"family": "drag", "parameters": ["amplitude", "beta_s"]}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(
            low=np.array([0, 0, 0, -1e6], dtype=np.float32), high=np.array([1, 1, 0.2, 1e6], dtype=np.float32)
        )
        self.action_space = spaces.Box(
            low=np.array([-1, -0.5], dtype=np.float32), high=np.array([1, 2], dtype=np.float32)
        )
        self._error = np.zeros(2)

    def _obs(self) -> np.ndarray:
        noise = self.np_random.normal(scale=0.02, size=4)
        p = 0.5 + 0.4 * np.tanh(self._error)
        obs = np.array([p[0], p[1], 0.05 * abs(self._error[0]), 2e5 * self._error[1]]) + noise * [1, 1, 0.1, 1e4]
        return np.clip(obs, self.observation_space.low, self.observation_space.high).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._error = self.np_random.uniform(-1, 1, size=2)
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._error = self._error - 0.3 * np.asarray(action, dtype=np.float64)
        return self._obs(), -float(np.sum(self._error**2)), False, False, {}


def make_env() -> gym.Env[Any, Any]:
    return gym.wrappers.TimeLimit(ToyCalibration(), max_episode_steps=16)


ALGOS: dict[str, tuple[type[BaseAlgorithm], str, dict[str, Any]]] = {
    "ppo": (PPO, "MlpPolicy", {"n_steps": 64, "batch_size": 64, "n_epochs": 2, "policy_kwargs": {"net_arch": [16, 16]}}),
    "sac": (SAC, "MlpPolicy", {"learning_starts": 64, "buffer_size": 1000, "batch_size": 32, "policy_kwargs": {"net_arch": [16, 16]}}),
    "td3": (TD3, "MlpPolicy", {"learning_starts": 64, "buffer_size": 1000, "batch_size": 32, "policy_kwargs": {"net_arch": [16, 16]}}),
    "recurrent_ppo": (
        RecurrentPPO,
        "MlpLstmPolicy",
        {"n_steps": 64, "batch_size": 64, "n_epochs": 2, "policy_kwargs": {"net_arch": [16], "lstm_hidden_size": 8}},
    ),
}


def train(name: str, normalise: bool, steps: int = 256) -> tuple[BaseAlgorithm, VecNormalize | None]:
    cls, policy, kwargs = ALGOS[name]
    venv: Any = DummyVecEnv([make_env])
    if normalise:
        venv = VecNormalize(venv, norm_obs=True, norm_reward=True, clip_obs=5.0)
    model = cls(policy, venv, seed=0, device="cpu", **kwargs)
    model.learn(steps)
    return model, (venv if normalise else None)


@pytest.mark.parametrize("normalise", [False, True], ids=["raw", "vecnormalize"])
@pytest.mark.parametrize("name", ["ppo", "sac", "td3"])
def test_feedforward_parity(name: str, normalise: bool, tmp_path: Path) -> None:
    model, venv = train(name, normalise)
    if venv is not None:
        # Training must have moved the statistics, or the check would not test them.
        assert not np.allclose(venv.obs_rms.mean, 0.0)
    folder = export_policy(model, tmp_path / "export", vec_normalize=venv, metadata=metadata_from_env(make_env()))
    policy = load_policy(folder, out_of_bounds="allow")

    obs = sample_observations(model.observation_space, N_PARITY, np.random.default_rng(1))  # type: ignore[arg-type]
    space = model.observation_space
    outside = (obs < space.low) | (obs > space.high)  # type: ignore[union-attr]
    assert 0.3 < outside.any(axis=1).mean() < 1.0, "the sample must cover in- and out-of-box observations"

    expected = reference_actions(model, venv, obs)
    got = policy.act_batch(obs)
    diff = float(np.max(np.abs(got - expected)))
    print(f"\nparity {name} {'vecnormalize' if normalise else 'raw'}: max |onnx - sb3| = {diff:.3g} over {N_PARITY}")
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert diff <= TOL
    # Single-observation path, float32 input, as the lab calls it.
    for i in range(20):
        np.testing.assert_allclose(policy.act(obs[i].astype(np.float32)), reference_actions(model, venv, obs[i].astype(np.float32)), atol=TOL)


@pytest.mark.parametrize("normalise", [False, True], ids=["raw", "vecnormalize"])
def test_recurrent_parity(normalise: bool, tmp_path: Path) -> None:
    """10,000 observations as 100 parallel episodes of 100 steps with random resets,
    then one episode step by step through ``act_with_state`` as the lab runs it."""
    model, venv = train("recurrent_ppo", normalise)
    folder = export_policy(model, tmp_path / "export", vec_normalize=venv)
    policy = load_policy(folder, out_of_bounds="allow")
    assert policy.recurrent

    rng = np.random.default_rng(2)
    n_envs, n_steps = 100, N_PARITY // 100
    obs = sample_observations(model.observation_space, N_PARITY, rng).reshape(n_steps, n_envs, -1)  # type: ignore[arg-type]
    starts = rng.uniform(size=(n_steps, n_envs)) < 1 / 30
    starts[0] = True
    sb3_state: Any = None
    state = policy.initial_batch_state(n_envs)
    worst = 0.0
    for t in range(n_steps):
        sb3_obs = obs[t] if venv is None else venv.normalize_obs(obs[t])
        expected, sb3_state = model.predict(sb3_obs, state=sb3_state, episode_start=starts[t], deterministic=True)
        keep = (~starts[t]).astype(np.float32)[None, :, None]
        state = PolicyState(tuple(a * keep for a in state.arrays))
        actions, state = policy.act_batch_with_state(obs[t], state)
        worst = max(worst, *(float(np.max(np.abs(x - y))) for x, y in zip((actions, *state.arrays), (expected, *sb3_state), strict=True)))
    print(f"\nparity recurrent_ppo {'vecnormalize' if normalise else 'raw'}: max |onnx - sb3| (actions and LSTM state) = {worst:.3g} over {N_PARITY}")
    assert worst <= TOL

    sb3_state, state = None, policy.initial_state()
    for t in range(n_steps):
        sb3_obs = obs[t, 0] if venv is None else venv.normalize_obs(obs[t, 0])
        expected, sb3_state = model.predict(sb3_obs, state=sb3_state, episode_start=np.array([t == 0]), deterministic=True)
        action, state = policy.act_with_state(obs[t, 0], state)
        np.testing.assert_allclose(action, expected, atol=TOL)
        np.testing.assert_allclose(state.arrays[0], sb3_state[0], atol=TOL)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_manifest_describes_the_policy(tmp_path: Path) -> None:
    model, venv = train("sac", True, steps=96)
    meta = metadata_from_env(
        make_env(),
        env_id="pulsecal/Toy-v3",
        pulse={"family": "drag"},
        device={"preset": "transmon_short", "ranges": {"t1_s": [2e-5, 8e-5]}},
        safety={"max_amplitude": 0.9},
        training_config={"agent": {"algo": "sac"}, "total_timesteps": 96},
        seed=7,
    )
    folder = export_policy(model, tmp_path / "export", vec_normalize=venv, metadata=meta, torchscript=True)
    manifest = json.loads((folder / "manifest.json").read_text())

    assert manifest["schema"] == "pulsecal/policy-export" and manifest["schema_version"] == 1
    assert manifest["env"]["id"] == "pulsecal/Toy-v3" and manifest["env"]["version"] == 3
    assert manifest["env"]["description"]["pulse_parametrisation"]["family"] == "drag"
    assert manifest["observation"]["labels"] == list(ToyCalibration.observation_labels)
    assert manifest["observation"]["units"][3] == "Hz"
    assert manifest["action"]["labels"] == ["delta_amplitude", "delta_beta"]
    assert manifest["action"]["low"] == [-1.0, -0.5] and manifest["action"]["high"] == [1.0, 2.0]
    assert manifest["action"]["postprocess"]["kind"] == "unscale_tanh_then_clip"
    norm = manifest["observation"]["normalisation"]
    assert norm["folded_into_graph"] and norm["clip_obs"] == 5.0
    np.testing.assert_array_equal(norm["mean"], venv.obs_rms.mean)  # type: ignore[union-attr]
    assert manifest["device"]["preset"] == "transmon_short" and manifest["safety"]["max_amplitude"] == 0.9
    assert manifest["training"]["seed"] == 7 and manifest["training"]["config"]["agent"]["algo"] == "sac"
    assert manifest["provenance"]["export_versions"]["torch"] == th.__version__
    assert manifest["export_check"]["max_abs_diff"] <= TOL
    assert set(manifest["files"]) == {"policy.onnx", "policy.pt"}

    # The TorchScript twin computes the same actions from the same raw observations.
    scripted = th.jit.load(str(folder / "policy.pt"))
    obs = sample_observations(model.observation_space, 256, np.random.default_rng(3))  # type: ignore[arg-type]
    with th.no_grad():
        pt_actions = scripted(th.as_tensor(obs)).numpy()
    np.testing.assert_allclose(pt_actions, reference_actions(model, venv, obs), atol=TOL)


def test_generic_layout_when_env_says_nothing(tmp_path: Path) -> None:
    model = PPO("MlpPolicy", "Pendulum-v1", n_steps=32, batch_size=32, policy_kwargs={"net_arch": [8]}, device="cpu")
    folder = export_policy(model, tmp_path / "export", metadata=ExportMetadata(env_id="Pendulum-v1"))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["observation"]["labels"] == ["observation[0]", "observation[1]", "observation[2]"]
    assert manifest["observation"]["normalisation"] is None
    assert manifest["env"]["version"] == 1


def test_export_refuses_to_overwrite_and_bad_inputs(tmp_path: Path) -> None:
    model = PPO("MlpPolicy", "Pendulum-v1", n_steps=32, batch_size=32, policy_kwargs={"net_arch": [8]}, device="cpu")
    target = tmp_path / "export"
    target.mkdir()
    (target / "notes.txt").write_text("operator notes")
    with pytest.raises(FileExistsError, match="not empty"):
        export_policy(model, target)
    wrong = ObservationNormalisation(mean=np.zeros(5), var=np.ones(5), epsilon=1e-8, clip_obs=10.0)
    with pytest.raises(ValueError, match="normalisation shape"):
        export_policy(model, tmp_path / "other", vec_normalize=wrong)
    with pytest.raises(ValueError, match="observation labels has 2 entries"):
        export_policy(model, tmp_path / "third", metadata=ExportMetadata(observation_labels=["a", "b"]))
    discrete = PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, device="cpu")
    with pytest.raises(ValueError, match="allowed a Box"):
        export_policy(discrete, tmp_path / "fourth")


def test_observation_normalisation_validates() -> None:
    with pytest.raises(ValueError, match="epsilon"):
        ObservationNormalisation(mean=np.zeros(2), var=np.ones(2), epsilon=0.0, clip_obs=10.0)
    with pytest.raises(ValueError, match="var"):
        ObservationNormalisation(mean=np.zeros(2), var=-np.ones(2), epsilon=1e-8, clip_obs=10.0)


# ------------------------------------------------------------------ run directories


def _fake_run(run: Path, *, resumed: bool) -> tuple[BaseAlgorithm, VecNormalize]:
    """A run directory laid out as ``pulsecal-train`` writes it, from a quick Pendulum run."""
    import yaml

    from pulsecal.agents.persistence import save_model_atomic, save_normalization, write_json_atomic

    venv = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]), clip_obs=7.0)
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, policy_kwargs={"net_arch": [8]}, device="cpu", seed=0)
    model.learn(64)
    suffix = "-r1" if resumed else ""
    if resumed:  # the first attempt's artefacts stay; the resumed run adds -r1 names
        (run / "model.zip").parent.mkdir(parents=True, exist_ok=True)
        (run / "model.zip").write_bytes(b"first attempt")
        write_json_atomic(run / "metrics.json", {"model": "model.zip", "normalization": None})
    save_model_atomic(model, run / f"model{suffix}.zip")
    save_normalization(venv, run / f"vecnormalize{suffix}.npz")
    config = {"env": {"id": "Pendulum-v1", "kwargs": {}}, "agent": {"name": "ppo"}, "seed": 4, "device": {"preset": "none"}}
    (run / f"config{suffix}.yaml").write_text(yaml.safe_dump(config))
    write_json_atomic(
        run / f"provenance{suffix}.json",
        {"seed": 4, "git_revision": "abc123", "packages": {"torch": th.__version__}, "env_id": "Pendulum-v1", "algo": "ppo", "argv": ["pulsecal-train"]},
    )
    write_json_atomic(run / f"metrics{suffix}.json", {"model": f"model{suffix}.zip", "normalization": f"vecnormalize{suffix}.npz"})
    return model, venv


@pytest.mark.parametrize("resumed", [False, True], ids=["fresh", "resumed"])
def test_export_run_directory(tmp_path: Path, resumed: bool) -> None:
    from pulsecal.agents.export import export_run

    model, venv = _fake_run(tmp_path / "run", resumed=resumed)
    folder = export_run(tmp_path / "run")
    assert folder == tmp_path / "run" / "export"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["env"]["id"] == "Pendulum-v1" and manifest["training"]["seed"] == 4
    assert manifest["training"]["git_revision"] == "abc123"
    assert manifest["training"]["config"]["agent"]["name"] == "ppo"
    assert manifest["training"]["source"]["model"]["file"] == ("model-r1.zip" if resumed else "model.zip")
    assert manifest["observation"]["normalisation"]["clip_obs"] == 7.0
    obs = sample_observations(model.observation_space, 500, np.random.default_rng(5))  # type: ignore[arg-type]
    np.testing.assert_allclose(load_policy(folder, out_of_bounds="allow").act_batch(obs), reference_actions(model, venv, obs), atol=TOL)


def test_export_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pulsecal.scripts.export import main

    _fake_run(tmp_path / "run", resumed=False)
    out = tmp_path / "lab" / "policy"
    assert main([f"run_dir={tmp_path / 'run'}", f"out={out}", "torchscript=true"]) == 0
    assert "PPO for Pendulum-v1" in capsys.readouterr().out
    assert (out / "policy.pt").is_file() and load_policy(out).env_id == "Pendulum-v1"
    assert main([f"run_dir={tmp_path / 'run'}", f"out={out}"]) == 2  # never overwrites silently
    assert "not empty" in capsys.readouterr().err
    assert main(["run_dir=x", "colour=blue"]) == 2
    assert "error: colour: unknown option" in capsys.readouterr().err
    assert main(["torchscript=maybe", "run_dir=x"]) == 2
    assert main([]) == 2
    assert "error: run_dir: required" in capsys.readouterr().err
    assert main([f"run_dir={tmp_path / 'nothing'}"]) == 2
    assert "no config.yaml" in capsys.readouterr().err


def test_session_on_the_real_gate_calibration_env(tmp_path: Path) -> None:
    """An (untrained) exported policy drives pulsecal/GateCalibration-v0 through the runner."""
    import pulsecal.envs  # noqa: F401  (registers the ids)
    from pulsecal.agents.runner import session

    env = gym.make("pulsecal/GateCalibration-v0", max_episode_steps=3)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=32, policy_kwargs={"net_arch": [8]}, device="cpu", seed=0)
    folder = export_policy(model, tmp_path / "export", metadata=metadata_from_env(env))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["env"]["id"] == "pulsecal/GateCalibration-v0" and manifest["pulse"]["gate"] == "DragGate"
    # The observation is labelled with the env's own names, not observation[0..9].
    names = env.unwrapped.env_description().observation_names
    assert manifest["observation"]["labels"] == list(names) and names[0] == "p1_amplitude_4"
    assert manifest["observation"]["labels"][-1] == "shot_budget_fraction"
    result = session(env, load_policy(folder), max_steps=10, seed=0)
    assert result.truncated and len(result.steps) == 3
    for record in result.steps:
        expected, _ = model.predict(record.observation.astype(np.float32), deterministic=True)
        np.testing.assert_allclose(record.action, expected, atol=TOL)


@pytest.mark.parametrize(
    "agent", ["ppo", pytest.param("sac", marks=pytest.mark.slow), pytest.param("recurrent_ppo", marks=pytest.mark.slow)]
)
def test_export_a_real_training_run(tmp_path: Path, agent: str) -> None:
    """``pulsecal-train experiment=smoke`` on GateCalibration, exported, run by the lab runner."""
    from hydra import compose, initialize_config_module

    import pulsecal.envs  # noqa: F401
    from pulsecal.agents.export import export_run
    from pulsecal.agents.factory import load_algorithm
    from pulsecal.agents.pipelines.train import train as run_train
    from pulsecal.agents.runner import session

    th.set_num_threads(1)
    with initialize_config_module("pulsecal.configs", version_base="1.3"):
        cfg = compose("train", overrides=["experiment=smoke", "logger=csv", f"agent={agent}"])
    run_train(cfg, run_dir=tmp_path / "run")
    folder = export_run(tmp_path / "run", torchscript=agent != "recurrent_ppo")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["env"]["id"] == "pulsecal/GateCalibration-v0"
    assert manifest["export_check"]["max_abs_diff"] <= TOL
    policy = load_policy(folder, out_of_bounds="allow")
    env = gym.make("pulsecal/GateCalibration-v0", max_episode_steps=5)
    result = session(env, policy, max_steps=5, seed=1)
    assert len(result.steps) == 5
    if agent != "recurrent_ppo":
        model = load_algorithm(agent, tmp_path / "run" / "model.zip")
        from pulsecal.agents.export import read_normalisation

        norm = read_normalisation(tmp_path / "run" / "vecnormalize.npz")
        obs = np.stack([r.observation for r in result.steps])
        np.testing.assert_allclose(np.stack([r.action for r in result.steps]), reference_actions(model, norm, obs), atol=TOL)


@pytest.mark.parametrize("env_id", ["pulsecal/GateCalibration-v1", "pulsecal/PulseShaping-v0"])
def test_metadata_reads_the_env_description(env_id: str) -> None:
    """The manifest's env settings, pulse family and device come from the env's public
    ``env_description()``, the env's own frozen objects in JSON form."""
    import dataclasses

    import pulsecal.envs  # noqa: F401  (registers the ids)

    env = gym.make(env_id)
    about = env.unwrapped.env_description()
    meta = metadata_from_env(env)
    config = meta.env_description["config"]
    assert set(config) == {f.name for f in dataclasses.fields(about.config)}
    for f in dataclasses.fields(about.config):
        value = getattr(about.config, f.name)
        if value is None or isinstance(value, bool | int | str):
            assert config[f.name] == value, f.name
    assert meta.pulse is not None and meta.pulse["gate"] == type(about.gate).__name__
    assert meta.pulse["gate_settings"]["duration_s"] == about.gate.duration_s
    assert meta.device is not None and meta.device["preset"] == about.preset.name
    assert (meta.device["training_ranges"] is None) == (about.sampler is None)
    assert meta.observation_labels == list(about.observation_names)
    assert len(meta.observation_labels) == env.observation_space.shape[0]
