"""A replay session runs in the env settings its policy was trained under: an exported
policy's manifest (or an SB3 run's config.yaml) gives them without any override; an
explicit ``env.*`` of the replay config wins; one that would change the policy's
observation or action layout is refused naming the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

V0 = "pulsecal/GateCalibration-v0"
# Nondefault training settings (the replay defaults are 50 shots per probe, 100 000 shots).
TRAINED = {"shots_per_probe": 30, "shot_budget": 3000, "max_step": (0.04, 0.5, 1.0e6, 0.2)}


@pytest.fixture(scope="module")
def v0_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    import gymnasium as gym
    from stable_baselines3 import PPO

    import pulsecal.envs  # noqa: F401  (registers the ids)
    from pulsecal.agents.export import export_policy, metadata_from_env

    env = gym.make(V0, **TRAINED)
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=16, policy_kwargs={"net_arch": [8]}, device="cpu", seed=0)
    return export_policy(model, tmp_path_factory.mktemp("v0") / "export", metadata=metadata_from_env(env))


def _config(overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_module

    import pulsecal.agents.pipelines.replay  # noqa: F401  (registers the replay schemas)

    with initialize_config_module(config_module="pulsecal.configs", version_base="1.3"):
        return compose(config_name="replay", overrides=overrides)


def _container(overrides: list[str]) -> dict[str, Any]:
    from omegaconf import OmegaConf

    out = OmegaConf.to_container(_config(overrides), resolve=True)
    assert isinstance(out, dict)
    return out  # type: ignore[return-value]


def test_session_takes_the_manifest_settings_without_overrides(v0_export: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from pulsecal.agents.pipelines.replay import replay

    r = replay(_config(["backend=simulated", "policy=onnx", f"policy.folder={v0_export}", "max_steps=2",
                        "plots=false", f"folder={tmp_path / 's'}"]))
    env = json.loads((tmp_path / "s" / "session.json").read_text())["settings"]["env"]
    assert (env["shots_per_probe"], env["shot_budget"], env["max_step"]) == (30, 3000, [0.04, 0.5, 1.0e6, 0.2])
    assert env["device"] == "transmon_20ns" and "reward" not in env and "sampler" not in env
    assert r.ledger_shots == 3 * 6 * 30  # the initial measurement and two steps of 6 probes x 30 shots
    out = capsys.readouterr().out
    assert "env settings from the policy" in out and "shots_per_probe=30" in out and "shot_budget=3000" in out


def test_explicit_setting_wins_over_the_manifest(v0_export: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pulsecal.agents.pipelines.replay_env import session_env

    env, _ = session_env(_container(["backend=simulated", "policy=onnx", f"policy.folder={v0_export}",
                                     "env.shots_per_probe=40", "+env.gate_duration_s=3.0e-8"]))
    assert (env["shots_per_probe"], env["shot_budget"], env["gate_duration_s"]) == (40, 3000, 3.0e-8)
    assert "shots_per_probe=40 (trained with 30)" in capsys.readouterr().out
    # The scripted policy records nothing: the replay defaults, as before.
    plain, gate_s = session_env(_container(["backend=simulated", "policy=scripted"]))
    assert (plain["shots_per_probe"], plain["shot_budget"], gate_s) == (50, 100_000, 20e-9)


@pytest.mark.parametrize(("override", "key", "change"), [
    ("+env.probes=[{kind: amplitude, depth: 4}]", "probes", r"observation shape \(10,\) -> \(5,\)"),
    ("env.parameters=[amplitude]", "parameters", r"observation shape"),
    ("+env.miscalibration=[0.2,0.5,1.0e6,0.0]", "miscalibration", r"observation or action bounds"),
])
def test_layout_changing_override_is_refused_naming_the_key(v0_export: Path, override: str, key: str,
                                                            change: str) -> None:
    from pulsecal.agents.pipelines.replay_env import session_env

    with pytest.raises(ValueError, match=rf"env\.{key}=.*changes the observation/action layout.*{change}.*"
                                         rf"allowed its training value"):
        session_env(_container(["backend=simulated", "policy=onnx", f"policy.folder={v0_export}", override]))


def test_sb3_run_directory_gives_its_config_settings(tmp_path: Path) -> None:
    from pulsecal.agents.pipelines.replay_env import session_env

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(
        "env:\n  id: pulsecal/GateCalibration-v1\n  shots_per_probe: null\n  kwargs:\n    shot_budget: 1200\n"
        "    rounds: 5\n    reward: truth\n    sampler: {rabi_max_hz: [45.0e+6, 55.0e+6]}\n"
        "device:\n  preset: transmon_20ns\nagent:\n  name: ppo\n")
    c = _container(["backend=simulated", "policy=sb3", f"policy.run_dir={run}"])
    env, _ = session_env(c)
    assert (env["shot_budget"], env["rounds"]) == (1200, 5)
    assert "reward" not in env and "sampler" not in env  # training-only: never on a backend
    with pytest.raises(ValueError, match=r"env_id='pulsecal/GateCalibration-v0': allowed the policy's own"):
        session_env({**c, "env_id": V0})


@pytest.mark.parametrize(("env_id", "env", "max_steps", "warned"), [
    ("pulsecal/GateCalibration-v1", {"rounds": 12}, 8, True),
    ("pulsecal/GateCalibration-v1", {}, 8, False),          # default rounds 8
    ("pulsecal/GateCalibration-v1", {"rounds": 12}, 12, False),
    ("pulsecal/GateCalibration-v0", {}, 3, False),          # v0 ends on its shot budget
])
def test_a_session_shorter_than_the_policys_episode_is_said(env_id: str, env: dict[str, Any], max_steps: int,
                                                            warned: bool,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from pulsecal.agents.pipelines.replay_env import warn_if_cut_short

    warn_if_cut_short(env_id, env, max_steps)
    err = capsys.readouterr().err
    assert ("max_steps=" in err and "episode of 12 steps" in err and "set max_steps=12" in err) is warned
