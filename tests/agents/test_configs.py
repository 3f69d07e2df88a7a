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
    assert options("device") == ["pair_cr", "pair_cz", "randomized", "transmon_20ns", "transmon_drifting",
                                 "transmon_emulator", "transmon_short"]
    assert options("agent") == ["ppo", "recurrent_ppo", "sac", "td3"]
    assert {"smoke", "gate_calibration_ppo", "pulse_shaping_sac", "drift_tracking_ppo"} <= set(options("experiment"))


@pytest.mark.parametrize(
    "override",
    [f"{g}={o}" for g in ("env", "device", "agent", "callbacks", "logger", "experiment", "hparams_search")
     for o in options(g)],
)
def test_every_option_composes_and_converts(override: str) -> None:
    from pulsecal.agents.factory import AlgorithmSpec
    from pulsecal.agents.pipelines.train import algorithm_spec, to_train_conf, train_settings
    from pulsecal.agents.training import TrainSettings

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
    from pulsecal.agents.pipelines.console import format_error

    with pytest.raises(Exception) as exc:
        compose([override])
    assert format_error(exc.value).startswith(f"error: {key}: ")


def _smoke(experiment: str, tmp_path: Path) -> dict[str, float]:
    from pulsecal.agents.pipelines.train import train

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


# Smoke-run in tests/agents/test_shaping_drift_agents.py (next to their short trainings) and
# tests/agents/test_two_qubit_agents.py (shorter than _smoke, with export and a torch-free episode).
SMOKED_ELSEWHERE = {"pulse_shaping_agent", "drift_tracking_agent"}
SMOKED_WITH_TWO_QUBIT_AGENTS = {"cz_calibration_agent", "cr_calibration_agent"}


@pytest.mark.parametrize("experiment", [o for o in options("experiment") if o != "smoke"
                                        and o not in SMOKED_ELSEWHERE | SMOKED_WITH_TWO_QUBIT_AGENTS])
def test_experiment_smoke_runs(experiment: str, tmp_path: Path) -> None:
    """Every shipped experiment (new ones included automatically) trains a few hundred steps."""
    metrics = _smoke(experiment, tmp_path)
    assert metrics["num_timesteps"] >= 256 and (tmp_path / "model.zip").is_file()


def test_experiments_smoked_elsewhere_still_are() -> None:
    import test_shaping_drift_agents as other

    marks = [m for m in other.test_agent_experiment_smoke_runs.pytestmark if m.name == "parametrize"]
    assert SMOKED_ELSEWHERE <= set(marks[0].args[1]) and SMOKED_ELSEWHERE <= set(options("experiment"))
    import test_two_qubit_agents as two

    marks = [m for m in two.test_experiment_trains_exports_and_runs_torch_free.pytestmark if m.name == "parametrize"]
    assert SMOKED_WITH_TWO_QUBIT_AGENTS <= set(marks[0].args[1])
    assert SMOKED_WITH_TWO_QUBIT_AGENTS <= set(options("experiment"))


# A two-qubit env and its device config only work together (each alone would pair with
# the default of the other group); the CZ env runs closed-system here, as it trains.
PAIRED = {"env=cz_calibration": ["device=pair_cz", "env.kwargs.open_system=false"],
          "env=cr_calibration": ["device=pair_cr"],
          "device=pair_cz": ["env=cz_calibration", "env.kwargs.open_system=false"],
          "device=pair_cr": ["env=cr_calibration"]}


@pytest.mark.parametrize("override", [f"{g}={o}" for g in ("env", "device") for o in options(g)])
def test_every_env_and_device_option_instantiates(override: str) -> None:
    """Beyond converting: the training and held-out evaluation envs of every env and device
    option build, reset and take a step (the envs check their own arguments)."""
    import gymnasium as gym
    import numpy as np

    from pulsecal.agents.pipelines.train import _env_factories, to_train_conf

    pytest.importorskip("pulsecal.envs.registration")
    conf = to_train_conf(compose([override, *PAIRED.get(override, []), "env.n_envs=2", "device.n_eval_devices=2"]))
    make_train, make_eval = _env_factories(conf, conf.env.id)
    for venv in (make_train(), make_eval()):
        obs = venv.reset()
        assert obs.shape[0] == 2 and isinstance(venv.action_space, gym.spaces.Box)
        obs, _, _, _ = venv.step(np.zeros((2, *venv.action_space.shape), dtype=np.float32))
        assert np.all(np.isfinite(obs))
        venv.close()


@pytest.mark.parametrize("baseline", options("baseline"))
def test_every_evaluate_baseline_option_instantiates(baseline: str, tmp_path: Path) -> None:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from pulsecal.agents.baselines import StandardCalibration
    from pulsecal.agents.pipelines.evaluate import to_settings

    with initialize_config_module("pulsecal.configs", version_base="1.3"):
        cfg = hydra_compose("evaluate", overrides=[f"baseline={baseline}", f"out_dir={tmp_path}"])
    settings, agents = to_settings(cfg)
    assert isinstance(settings.baseline("standard"), StandardCalibration) and agents == []
    assert settings.methods == ("standard", "nelder_mead", "cmaes")


@pytest.mark.parametrize("profile", [None, *options("results_profile")])
def test_every_results_profile_composes(profile: str | None) -> None:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from pulsecal.agents.pipelines.results import _runs, to_results_conf

    with initialize_config_module("pulsecal.configs", version_base="1.3"):
        cfg = hydra_compose("results", overrides=[] if profile is None else [f"results_profile={profile}"])
    conf = to_results_conf(cfg)
    for _key, _task, _a, experiment in _runs(conf):
        assert experiment in options("experiment")


# Env config fields a config file cannot express (objects built in code), per schema.
CODE_ONLY_ENV_FIELDS = {"probes", "sampler"}


@pytest.mark.parametrize("schema_name", ["gate_calibration_schema", "gate_calibration_v1_schema",
                                         "pulse_shaping_schema", "pulse_shaping_v1_schema",
                                         "drift_tracking_schema", "drift_tracking_v1_schema"])
def test_env_schema_lists_the_options_of_its_env(schema_name: str) -> None:
    """Each typed env schema offers exactly the options of its env's config dataclass
    (those a config file can express), so the schema and the env cannot drift apart."""
    import dataclasses
    import importlib

    import gymnasium as gym

    import pulsecal.envs  # noqa: F401  (registers the env ids)
    from pulsecal.configs.env_schema import ENV_SCHEMAS

    schema = ENV_SCHEMAS[schema_name]
    assert schema.schema_env_id is not None
    module, name = str(gym.spec(schema.schema_env_id).entry_point).split(":")
    config_class = getattr(importlib.import_module(module), name).core_class.config_class
    options_class = {f.name: f for f in dataclasses.fields(schema)}["kwargs"].default_factory  # type: ignore[misc]
    offered = {f.name for f in dataclasses.fields(options_class)}
    fields = {f.name for f in dataclasses.fields(config_class)}
    assert offered <= fields
    assert fields - offered <= CODE_ONLY_ENV_FIELDS


@pytest.mark.parametrize("env_option", options("env"))
def test_every_env_option_uses_the_schema_of_its_id(env_option: str) -> None:
    from pulsecal.agents.pipelines.train import to_train_conf

    conf = to_train_conf(compose([f"env={env_option}"]))
    assert type(conf.env).schema_env_id == conf.env.id


def test_misspelt_env_option_fails_at_compose_time_naming_it() -> None:
    from pulsecal.agents.pipelines.console import format_error

    with pytest.raises(Exception) as exc:
        compose(["env=gate_calibration_v1", "env.kwargs.shot_budgt=1000"])
    line = format_error(exc.value)
    assert line.startswith("error: env.kwargs.shot_budgt: ") and "\n" not in line


def test_sampler_schema_lists_the_device_sampler_fields() -> None:
    import dataclasses

    from pulsecal.configs.env_schema import DeviceSamplerConf
    from pulsecal.envs.presets import DeviceSampler

    # plus ``name``, the base sampler a config picks (DeviceSampler.from_mapping)
    assert {f.name for f in dataclasses.fields(DeviceSamplerConf)} == {f.name for f in dataclasses.fields(DeviceSampler)} | {"name"}
