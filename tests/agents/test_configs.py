"""Every config group composes against its schema and converts into the typed objects
of pulsecal.agents; every experiment smoke-runs for a few hundred steps."""

from __future__ import annotations

import importlib.resources
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from test_train import compose  # noqa: E402

CONFIGS = importlib.resources.files("pulsecal.configs")


def options(group: str) -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in CONFIGS.joinpath(group).iterdir()
                  if p.name.endswith(".yaml"))


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_groups_exist() -> None:
    # New env versions add options (e.g. gate_calibration_v1); the three tasks must stay.
    assert {"drift_tracking", "gate_calibration", "pulse_shaping"} <= set(options("env"))
    assert options("device") == ["randomized", "transmon_20ns", "transmon_drifting", "transmon_short"]
    assert options("agent") == ["ppo", "recurrent_ppo", "sac", "td3"]
    assert {"smoke", "gate_calibration_ppo", "pulse_shaping_sac", "drift_tracking_ppo"} <= set(options("experiment"))


@pytest.mark.parametrize(
    "override",
    [f"{g}={o}" for g in ("env", "device", "agent", "callbacks", "logger", "experiment", "hparams_search")
     for o in options(g)],
)
def test_every_option_composes_and_converts(override: str) -> None:
    from pulsecal.agents.factory import AlgorithmSpec
    from pulsecal.agents.training import TrainSettings
    from pulsecal.scripts.train import algorithm_spec, to_train_conf, train_settings

    conf = to_train_conf(compose([override]))
    assert isinstance(algorithm_spec(conf), AlgorithmSpec)
    assert isinstance(train_settings(conf), TrainSettings)


def test_hydra_section_composes_with_joblib_and_optuna() -> None:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("pulsecal.configs", version_base="1.3"):
        cfg = hydra_compose("train", overrides=["hparams_search=ppo_optuna"], return_hydra_config=True)
    assert cfg.hydra.launcher.n_jobs == 2 and "Joblib" in cfg.hydra.launcher._target_
    assert "Optuna" in cfg.hydra.sweeper._target_ and cfg.hydra.sweeper.direction == "minimize"
    assert set(cfg.hydra.sweeper.params) >= {"agent.learning_rate", "agent.n_steps"}


@pytest.mark.parametrize(
    ("override", "key"),
    [("agent.n_steps=abc", "agent.n_steps"), ("callbacks.eval_evry_steps=5", "callbacks.eval_evry_steps"),
     ("device.randomize=maybe", "device.randomize")],
)
def test_schema_rejects_at_compose_time(override: str, key: str) -> None:
    from pulsecal.scripts.train import format_error

    with pytest.raises(Exception) as exc:
        compose([override])
    assert format_error(exc.value).startswith(f"error: {key}: ")


def _smoke(experiment: str, tmp_path: Path) -> dict[str, float]:
    from pulsecal.scripts.train import train

    pytest.importorskip("pulsecal.envs.registration")
    overrides = [f"experiment={experiment}", "total_timesteps=256", "env.n_envs=2", "device.n_eval_devices=2",
                 "callbacks.eval_every_steps=128", "callbacks.eval_episodes=2",
                 "callbacks.checkpoint_every_steps=128", "callbacks.progress_bar=false",
                 "callbacks.target_infidelity=null", "agent.batch_size=32", "logger=csv",
                 "agent.policy_kwargs.net_arch=[16]"]
    if "ppo" in experiment:
        overrides.append("agent.n_steps=64")
    return train(compose(overrides), run_dir=tmp_path)


def test_smoke_experiment_runs(tmp_path: Path) -> None:
    metrics = _smoke("smoke", tmp_path)
    assert metrics["num_timesteps"] >= 256 and (tmp_path / "model.zip").is_file()


@pytest.mark.parametrize("experiment", ["gate_calibration_ppo", "pulse_shaping_sac", "drift_tracking_ppo"])
def test_experiment_smoke_runs(experiment: str, tmp_path: Path) -> None:
    metrics = _smoke(experiment, tmp_path)
    assert metrics["num_timesteps"] >= 256 and (tmp_path / "model.zip").is_file()
