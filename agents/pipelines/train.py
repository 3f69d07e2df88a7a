"""``pulsecal-train``: Hydra-configured training of an SB3 agent on a pulsecal env.

    pulsecal-train env=gate_calibration agent=ppo device=transmon_short
    pulsecal-train experiment=smoke
    pulsecal-train --multirun agent=ppo,sac seed=0,1 experiment=smoke
    pulsecal-train -m hparams_search=ppo_optuna experiment=gate_calibration_ppo
    pulsecal-train resume=runs/<run>            # continue after a crash or kill

This is the one place a config becomes objects: :func:`train` validates the composed
config (every range and cross-field check, before anything is written), converts it
into the typed settings of :mod:`pulsecal.agents` and runs. Bad values exit with status
2 and one line, ``error: <key>: <problem>``, and leave no run directory behind.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from stable_baselines3.common.callbacks import BaseCallback

from pulsecal.agents.factory import AlgorithmSpec, make_vec_env, resolve_env_id
from pulsecal.agents.persistence import Checkpoint, latest_checkpoint, latest_revision
from pulsecal.agents.pipelines.console import first_line
from pulsecal.agents.provenance import write_provenance
from pulsecal.agents.training import TrainSettings, run_training
from pulsecal.agents.training_devices import (
    MULTI_QUBIT_ENV_IDS,
    MultiQubitTrainingDevices,
    TrainingDevices,
)
from pulsecal.configs.env_schema import env_schema_for
from pulsecal.configs.schema import (
    AGENT_SCHEMAS,
    ConfigError,
    TrainConf,
    register_configs,
    register_resolvers,
)

register_configs()
register_resolvers()

GROUPS = ("env", "device", "agent", "callbacks", "logger", "experiment", "hparams_search")


# ----------------------------------------------------------------- config -> objects


def to_train_conf(cfg: DictConfig) -> TrainConf:
    """The composed config as a checked :class:`TrainConf` (raises :class:`ConfigError`)."""
    try:
        conf = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(str(err.full_key or "config"), first_line(err.msg or str(err))) from None
    if not isinstance(conf, TrainConf):
        raise ConfigError("config", "not composed from train.yaml (train_schema)")
    conf.check()
    return conf


def algorithm_spec(conf: TrainConf) -> AlgorithmSpec:
    agent = conf.agent
    pk = agent.policy_kwargs
    return AlgorithmSpec(
        algo=agent.name,
        policy=agent.policy,
        hyperparams=agent.hyperparams(),
        net_arch=tuple(pk.net_arch),
        activation=pk.activation,
        lstm_hidden_size=pk.lstm_hidden_size,
        log_std_init=pk.log_std_init,
        normalize_obs=agent.normalize_obs,
        normalize_reward=agent.normalize_reward,
    )


def train_settings(conf: TrainConf) -> TrainSettings:
    cb = conf.callbacks
    return TrainSettings(
        total_timesteps=conf.total_timesteps,
        seed=conf.seed,
        eval_every_steps=cb.eval_every_steps,
        eval_episodes=cb.eval_episodes,
        checkpoint_every_steps=cb.checkpoint_every_steps,
        target_infidelity=cb.target_infidelity,
        progress_bar=cb.progress_bar,
        info_scalars=cb.info_scalars,
        logger_formats=tuple(conf.logger.formats),
        torch_device=conf.torch_device,
    )


def _is_pulsecal_env(env_id: str) -> bool:
    entry = gym.spec(env_id).entry_point or gym.spec(env_id).vector_entry_point
    return isinstance(entry, str) and entry.startswith("pulsecal.envs")


def _in_device(err: ConfigError) -> ConfigError:
    """A ``TrainingDevices`` error keyed by its config path (``device.<field>``)."""
    return err.within("device") if err.key else ConfigError("device", err.problem)


def training_devices(conf: TrainConf) -> TrainingDevices:
    """``conf.device`` built with its ``_target_`` (raises :class:`ConfigError` naming the key)."""
    try:
        devices = instantiate(conf.device, _convert_="all")
    except ConfigError as err:
        raise _in_device(err) from None
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, ConfigError):
            raise _in_device(cause) from None
        raise ConfigError("device._target_", first_line(str(err))) from None
    if not isinstance(devices, TrainingDevices):
        raise ConfigError("device._target_", f"builds a {type(devices).__name__}: allowed TrainingDevices")
    return devices


def env_kwargs(conf: TrainConf, devices: TrainingDevices) -> dict[str, Any]:
    """Constructor arguments of a pulsecal env: device preset, randomisation, shots, options."""
    kwargs = devices.env_options()
    if conf.env.shots_per_probe is not None:
        kwargs["shots_per_probe"] = conf.env.shots_per_probe
    kwargs.update(conf.env.env_options())
    return kwargs


def run_env_kwargs(conf: TrainConf, env_id: str) -> dict[str, Any]:
    """The constructor arguments both envs of the run get (``provenance.json`` records
    them as ``env_kwargs``, so an export describes the env training really used)."""
    if _is_pulsecal_env(env_id):
        devices = training_devices(conf)
        multi = env_id in MULTI_QUBIT_ENV_IDS
        if multi != isinstance(devices, MultiQubitTrainingDevices):
            allowed = "a multi-qubit preset (device=pair_cz, pair_cr)" if multi else \
                "a single-transmon preset (device=transmon_20ns, randomized, ...)"
            raise ConfigError("device", f"preset {devices.preset!r} does not fit env {env_id}: allowed {allowed}")
        return env_kwargs(conf, devices)
    return conf.env.env_options()


def _env_factories(conf: TrainConf, env_id: str) -> tuple[Any, Any]:
    """Factories of the training env and of the held-out evaluation env."""
    train_options: list[dict[str, Any]] | None = None
    eval_options: list[dict[str, Any]] | None = None
    kwargs = run_env_kwargs(conf, env_id)
    if _is_pulsecal_env(env_id):
        try:
            train_options, eval_options = training_devices(conf).reset_options(conf.env.n_envs)
        except ConfigError as err:
            raise _in_device(err) from None
    n_eval = conf.device.n_eval_devices

    def make_train() -> Any:
        return make_vec_env(env_id, conf.env.n_envs, conf.seed, kwargs, conf.env.max_episode_steps, train_options)

    def make_eval() -> Any:
        return make_vec_env(env_id, n_eval, conf.device.eval_seed, kwargs, conf.env.max_episode_steps, eval_options)

    return make_train, make_eval


def stored_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as a run directory stores it (``config.yaml``): env options
    left unset (null in the env's schema) are left out, so a run records only the
    options it set and readers of ``env.kwargs`` pass each one on as it is."""
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    env = container.get("env")
    if isinstance(env, dict) and isinstance(env.get("kwargs"), dict):
        env["kwargs"] = _without_nulls(env["kwargs"])
    return {str(k): v for k, v in container.items()}


def _without_nulls(options: dict[str, Any]) -> dict[str, Any]:
    return {k: _without_nulls(v) if isinstance(v, dict) else v for k, v in options.items() if v is not None}


# ------------------------------------------------------------------------- resume


def _resume_conf(resume_dir: Path, overrides: Sequence[str]) -> DictConfig:
    """The stored config of ``resume_dir`` with plain ``key=value`` overrides applied."""
    stored_path = resume_dir / "config.yaml"
    if not stored_path.is_file():
        raise ConfigError("resume", f"{resume_dir} is not a pulsecal run directory (no config.yaml)")
    stored = OmegaConf.load(stored_path)
    assert isinstance(stored, DictConfig)
    agent_name = OmegaConf.select(stored, "agent.name")
    if agent_name not in AGENT_SCHEMAS:
        raise ConfigError("resume", f"{stored_path} has unknown agent.name {agent_name!r}")
    schema = OmegaConf.structured(TrainConf)
    schema.agent = OmegaConf.structured(AGENT_SCHEMAS[agent_name])
    schema.env = OmegaConf.structured(env_schema_for(OmegaConf.select(stored, "env.id")))
    try:
        merged = OmegaConf.merge(schema, stored)
        for item in overrides:
            key, sep, value = item.partition("=")
            key = key.lstrip("+")
            if not sep or key == "resume" or key.startswith("hydra"):
                continue
            if key.split(".")[0] in GROUPS and "." not in key:
                raise ConfigError(key, "a resumed run keeps its config groups; only values may change")
            OmegaConf.update(merged, key, yaml.safe_load(value) if value else None, merge=True)
    except OmegaConfBaseException as err:
        raise ConfigError(str(err.full_key or "resume"), first_line(err.msg or str(err))) from None
    merged.resume = str(resume_dir)
    assert isinstance(merged, DictConfig)
    return merged


def _find_resume_checkpoint(resume_dir: Path) -> Checkpoint:
    ckpt = latest_checkpoint(resume_dir / "checkpoints")
    if ckpt is None:
        raise ConfigError("resume", f"{resume_dir} has no complete checkpoint to resume from")
    return ckpt


# -------------------------------------------------------------------------- train


def train(
    cfg: DictConfig,
    run_dir: Path | str | None = None,
    extra_callbacks: Sequence[BaseCallback] = (),
) -> dict[str, float]:
    """Train as configured; return the final metrics (and ``objective`` for sweepers).

    ``run_dir`` defaults to Hydra's output directory. With ``cfg.resume`` set, the run
    continues in that directory from its last checkpoint, with its stored config
    (plain ``key=value`` overrides from the command line still apply).
    """
    overrides: list[str] = []
    if HydraConfig.initialized():
        overrides = list(HydraConfig.get().overrides.task)
    resume_from: Checkpoint | None = None
    if cfg.get("resume"):
        resume_dir = Path(str(cfg.resume)).resolve()
        cfg = _resume_conf(resume_dir, overrides)
        resume_from = _find_resume_checkpoint(resume_dir)
        run_dir = resume_dir
    conf = to_train_conf(cfg)
    try:
        import pulsecal.envs  # noqa: F401  (registers pulsecal/<Name>-v<N>)
    except ImportError:
        pass
    try:
        env_id = resolve_env_id(conf.env.id)
    except (gym.error.Error, ImportError) as err:
        raise ConfigError("env.id", f"unknown environment {conf.env.id!r} ({first_line(str(err))})") from None
    make_train, make_eval = _env_factories(conf, env_id)
    # Build both envs before anything is written: the envs validate their own arguments.
    try:
        train_env, eval_env = make_train(), make_eval()
    except (TypeError, ValueError) as err:
        raise ConfigError(_env_error_key(conf, str(err)),
                          f"{conf.env.id} rejects its arguments: {first_line(str(err))}") from None
    if run_dir is None:
        run_dir = HydraConfig.get().runtime.output_dir
    run_dir = Path(run_dir)

    # Everything above only reads; from here on the run directory gets artefacts.
    print(f"run folder: {run_dir}", flush=True)
    if resume_from is not None:
        print(_resume_line(run_dir, resume_from, conf.total_timesteps), flush=True)
    torch.set_num_threads(conf.torch_threads)
    write_provenance(
        run_dir,
        OmegaConf.to_yaml(OmegaConf.create(stored_config(cfg))),
        seed=conf.seed,
        extra={
            "env_id": env_id,
            "env_kwargs": run_env_kwargs(conf, env_id),
            "algo": conf.agent.name,
            "resumed_from_step": None if resume_from is None else resume_from.step,
        },
    )
    metrics = run_training(
        algorithm_spec(conf),
        lambda: train_env,
        lambda: eval_env,
        train_settings(conf),
        run_dir,
        resume_from=resume_from,
        extra_callbacks=extra_callbacks,
    )
    metrics["objective"] = metrics[conf.optimized_metric]
    for line in _summary_lines(run_dir, metrics, conf.optimized_metric):
        print(line, flush=True)
    return metrics


def _resume_line(run_dir: Path, ckpt: Checkpoint, total_timesteps: int) -> str:
    """What a resume does, said before it starts (a finished run is said to be one)."""
    done = latest_revision(run_dir / "metrics.json")
    if done is None:
        return f"resuming from the checkpoint at step {ckpt.step} to total_timesteps={total_timesteps}"
    step = json.loads(done.read_text(encoding="utf-8")).get("num_timesteps")
    finished = f"this run already finished ({done.name}: step {step if step is None else int(step)})"
    if ckpt.step >= total_timesteps:
        return (f"{finished}: nothing left to train up to total_timesteps={total_timesteps}; its final model is "
                "evaluated again and saved under new -r<k> names (raise total_timesteps to train on)")
    return f"{finished}; training on from the checkpoint at step {ckpt.step} to total_timesteps={total_timesteps}"


def _summary_lines(run_dir: Path, metrics: dict[str, float], optimized: str) -> list[str]:
    """The final metric and where the artefacts are (from the run's newest metrics.json)."""
    head = (f"done at step {int(metrics['num_timesteps'])}: final_infidelity={metrics['final_infidelity']:.4g} "
            f"(median {metrics['final_infidelity_median']:.4g})")
    if optimized != "final_infidelity":
        head += f", {optimized}={metrics[optimized]:.4g}"
    lines = [head]
    path = latest_revision(run_dir / "metrics.json")
    record = json.loads(path.read_text(encoding="utf-8")) if path is not None else {}
    artefacts = {"model": record.get("model"), "normalisation": record.get("normalization"),
                 "metrics": None if path is None else path.name, "learning curve": record.get("learning_curve")}
    lines += [f"  {what:<15} {run_dir / name}" for what, name in artefacts.items() if name]
    lines.append(f"  export with     pulsecal-export run_dir={run_dir}")
    return lines


def _env_error_key(conf: TrainConf, message: str) -> str:
    """``env.kwargs.<name>`` when the env's message starts with one of the configured
    options (the envs write ``<field>=<value> is out of range ...``), else ``env``."""
    name = message.strip().split("=", 1)[0].strip()
    return f"env.kwargs.{name}" if name in conf.env.env_options() else "env"


# ----------------------------------------------------------------- entry point


__all__ = ["to_train_conf", "train"]
