"""Typed schemas behind the Hydra config groups, and the checks Hydra cannot express.

Every YAML file of a group starts from one of these dataclasses (registered in
Hydra's ConfigStore by :func:`register_configs`), so a wrong type or an unknown key
fails while Hydra composes, with the key's name in the message. Range and
cross-field checks (negative shots, T2 > 2·T1) live in ``check()`` methods that the
entry point runs before anything is written; they raise :class:`ConfigError`, which
carries the dotted key so the entry point can print ``error: <key>: <problem>``.

These are configuration records only. Library code in ``pulsecal.agents`` takes
typed keyword arguments or frozen dataclasses; ``pulsecal.agents.pipelines.train`` converts.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf


class KeyedError(ValueError):
    """A value refused at a dotted ``key``, printed as ``"<key>: <problem>"``."""

    def __init__(self, key: str, problem: str) -> None:
        # Both in args, so the error survives pickling back from a joblib worker.
        super().__init__(key, problem)
        self.key = key
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.key}: {self.problem}"


class ConfigError(KeyedError):
    """A configuration value is out of range; ``key`` is the dotted config key."""

    def within(self, section: str) -> ConfigError:
        """The same error with ``section.`` prefixed to its key."""
        return ConfigError(f"{section}.{self.key}", self.problem)


def _positive_int(key: str, value: int) -> None:
    if value <= 0:
        raise ConfigError(key, f"must be a positive integer, got {value}")


def _non_negative_int(key: str, value: int) -> None:
    if value < 0:
        raise ConfigError(key, f"must be >= 0, got {value}")


def _positive_float(key: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(key, f"must be a finite value > 0, got {value}")


def _in_range(key: str, value: float, low: float, high: float) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(key, f"must be in [{low}, {high}], got {value}")


# --------------------------------------------------------------------------- env


def _set_fields(options: Any) -> dict[str, Any]:
    """The non-null fields of an options object (nested ones too), as plain values."""
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        items = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    else:
        items = dict(options or {})
    return {k: _set_fields(v) if dataclasses.is_dataclass(v) else v for k, v in items.items() if v is not None}


@dataclass
class EnvConf:
    """Which registered environment to train on, and how many batched copies.

    ``kwargs`` go to the environment constructor: env-specific options, untyped here and
    typed in the per-env schemas of ``env_schema.py``, whose fields default to null ("the
    env's default"). ``shots_per_probe`` and ``max_episode_steps`` are named because every
    env has them and they must be validated (null = the env's registered default).
    """

    # The env id whose options ``kwargs`` describes (None: any env, untyped options).
    schema_env_id: ClassVar[str | None] = None

    id: str = MISSING
    n_envs: int = 8
    shots_per_probe: int | None = None
    max_episode_steps: int | None = None
    kwargs: Any = field(default_factory=dict)

    def env_options(self) -> dict[str, Any]:
        """The constructor options this config sets (nulls left out: the env's defaults)."""
        return _set_fields(self.kwargs)

    def check(self) -> None:
        if not self.id:
            raise ConfigError("id", "must name a registered environment id")
        _positive_int("n_envs", self.n_envs)
        if self.shots_per_probe is not None:
            _positive_int("shots_per_probe", self.shots_per_probe)
        if self.max_episode_steps is not None:
            _positive_int("max_episode_steps", self.max_episode_steps)
        # A typed schema is for one env id: another pulsecal id would silently get options
        # it does not take, or lose ones it needs.
        want = self.schema_env_id
        if want is not None and re.fullmatch(r"pulsecal/\w+-v\d+", self.id) and self.id != want:
            raise ConfigError("id", f"{self.id} does not take the options of {want}: choose the env "
                                    "option of that id (e.g. env=gate_calibration_v1 for GateCalibration-v1)")


# ------------------------------------------------------------------------ device


@dataclass
class DeviceConf:
    """The simulated device the env trains on: a preset, optionally randomised.

    Null physical fields keep the preset's value; set ones override it (SI units). Built
    with ``_target_`` (``hydra.utils.instantiate``) into ``TrainingDevices``.
    """

    _target_: str = "pulsecal.agents.training_devices.TrainingDevices"
    preset: str = MISSING
    randomize: bool = False
    t1_s: float | None = None
    t2_s: float | None = None
    anharmonicity_hz: float | None = None
    detuning_hz: float | None = None
    n_eval_devices: int = 8
    eval_seed: int = 20_240_601

    def check(self) -> None:
        if not self.preset:
            raise ConfigError("preset", "must name a device preset")
        if self.t1_s is not None:
            _positive_float("t1_s", self.t1_s)
        if self.t2_s is not None:
            _positive_float("t2_s", self.t2_s)
        if self.t1_s is not None and self.t2_s is not None and self.t2_s > 2 * self.t1_s:
            raise ConfigError(
                "t2_s", f"T2 = {self.t2_s:g} s exceeds 2·T1 = {2 * self.t1_s:g} s (physically impossible)"
            )
        if self.anharmonicity_hz is not None and not self.anharmonicity_hz < 0:
            raise ConfigError("anharmonicity_hz", f"must be negative for a transmon, got {self.anharmonicity_hz}")
        if self.detuning_hz is not None and not math.isfinite(self.detuning_hz):
            raise ConfigError("detuning_hz", f"must be finite, got {self.detuning_hz}")
        _positive_int("n_eval_devices", self.n_eval_devices)


# ------------------------------------------------------------------------- agent


@dataclass
class PolicyConf:
    """Network shape; ``activation`` is a name (tanh, relu, elu), never code."""

    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"
    lstm_hidden_size: int | None = None
    log_std_init: float | None = None

    def check(self) -> None:
        if not self.net_arch or any(n <= 0 for n in self.net_arch):
            raise ConfigError("net_arch", f"must be a non-empty list of positive widths, got {self.net_arch}")
        if self.activation not in ("tanh", "relu", "elu", "leaky_relu", "gelu"):
            raise ConfigError("activation", f"unknown activation {self.activation!r} (tanh, relu, elu, leaky_relu, gelu)")
        if self.lstm_hidden_size is not None:
            _positive_int("lstm_hidden_size", self.lstm_hidden_size)


@dataclass
class AgentConf:
    """Fields every algorithm has. ``name`` picks the SB3 class."""

    name: str = MISSING
    policy: str = "MlpPolicy"
    learning_rate: float = 3e-4
    gamma: float = 0.99
    normalize_obs: bool = True
    normalize_reward: bool = False
    policy_kwargs: PolicyConf = field(default_factory=PolicyConf)

    def check(self) -> None:
        _positive_float("learning_rate", self.learning_rate)
        _in_range("gamma", self.gamma, 0.0, 1.0)
        try:
            self.policy_kwargs.check()
        except ConfigError as err:
            raise err.within("policy_kwargs") from None

    def hyperparams(self) -> dict[str, Any]:
        """Algorithm keyword arguments (everything but the fields handled by the factory)."""
        skip = {"name", "policy", "normalize_obs", "normalize_reward", "policy_kwargs"}
        return {k: v for k, v in vars(self).items() if k not in skip}


@dataclass
class PPOConf(AgentConf):
    name: str = "ppo"
    n_steps: int = 128
    batch_size: int = 256
    n_epochs: int = 10
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = None

    def check(self) -> None:
        super().check()
        _positive_int("n_steps", self.n_steps)
        if self.batch_size <= 1:
            raise ConfigError("batch_size", f"must be > 1, got {self.batch_size}")
        _positive_int("n_epochs", self.n_epochs)
        _in_range("gae_lambda", self.gae_lambda, 0.0, 1.0)
        _positive_float("clip_range", self.clip_range)
        if self.ent_coef < 0:
            raise ConfigError("ent_coef", f"must be >= 0, got {self.ent_coef}")


@dataclass
class RecurrentPPOConf(PPOConf):
    name: str = "recurrent_ppo"
    policy: str = "MlpLstmPolicy"


@dataclass
class OffPolicyConf(AgentConf):
    buffer_size: int = 100_000
    learning_starts: int = 1_000
    batch_size: int = 256
    tau: float = 0.005
    train_freq: int = 1
    gradient_steps: int = 1

    def check(self) -> None:
        super().check()
        _positive_int("buffer_size", self.buffer_size)
        _non_negative_int("learning_starts", self.learning_starts)
        _positive_int("batch_size", self.batch_size)
        _in_range("tau", self.tau, 0.0, 1.0)
        _positive_int("train_freq", self.train_freq)
        if self.gradient_steps == 0 or self.gradient_steps < -1:
            raise ConfigError("gradient_steps", f"must be > 0 or -1, got {self.gradient_steps}")


@dataclass
class SACConf(OffPolicyConf):
    name: str = "sac"
    # "auto", "auto_<init>" or a number written as a string (OmegaConf has no str|float).
    ent_coef: str = "auto"

    def check(self) -> None:
        super().check()
        if not self.ent_coef.startswith("auto"):
            try:
                value = float(self.ent_coef)
            except ValueError:
                raise ConfigError("ent_coef", f"must be 'auto', 'auto_<init>' or a number, got {self.ent_coef!r}") from None
            if value < 0:
                raise ConfigError("ent_coef", f"must be >= 0, got {value}")

    def hyperparams(self) -> dict[str, Any]:
        params = super().hyperparams()
        if not self.ent_coef.startswith("auto"):
            params["ent_coef"] = float(self.ent_coef)
        return params


@dataclass
class TD3Conf(OffPolicyConf):
    name: str = "td3"
    policy_delay: int = 2
    target_policy_noise: float = 0.2
    target_noise_clip: float = 0.5
    action_noise_sigma: float = 0.1

    def check(self) -> None:
        super().check()
        _positive_int("policy_delay", self.policy_delay)
        if self.action_noise_sigma < 0:
            raise ConfigError("action_noise_sigma", f"must be >= 0, got {self.action_noise_sigma}")


# --------------------------------------------------------------------- callbacks


@dataclass
class CallbacksConf:
    """Evaluation, checkpoints, early stop, progress display (steps are env steps)."""

    eval_every_steps: int = 10_000
    eval_episodes: int = 16
    checkpoint_every_steps: int = 20_000
    target_infidelity: float | None = None
    progress_bar: bool = True
    info_scalars: bool = True

    def check(self) -> None:
        _positive_int("eval_every_steps", self.eval_every_steps)
        _positive_int("eval_episodes", self.eval_episodes)
        _positive_int("checkpoint_every_steps", self.checkpoint_every_steps)
        if self.target_infidelity is not None:
            _in_range("target_infidelity", self.target_infidelity, 0.0, 1.0)


# ------------------------------------------------------------------------ logger

LOGGER_FORMATS = ("stdout", "log", "csv", "json", "tensorboard")


@dataclass
class LoggerConf:
    """SB3 logger output formats written into the run directory."""

    formats: list[str] = field(default_factory=lambda: ["csv", "tensorboard"])

    def check(self) -> None:
        for fmt in self.formats:
            if fmt not in LOGGER_FORMATS:
                raise ConfigError("formats", f"unknown format {fmt!r} (allowed: {', '.join(LOGGER_FORMATS)})")


# --------------------------------------------------------------------- baselines
# One schema per baseline config (configs/baseline/method/*.yaml). Each is built with its
# ``_target_`` by ``hydra.utils.instantiate``; these fields are its keyword arguments, so
# a misspelt or mistyped one fails at compose time. A baseline whose config has no schema
# here still instantiates, checked only by its own ``__post_init__``.


@dataclass
class StandardConf:
    """``StandardCalibration`` keyword arguments (see its docstring)."""

    _target_: str = "pulsecal.agents.baselines.StandardCalibration"
    name: str = "standard"
    ramsey_delays_s: list[float] = field(default_factory=lambda: [1e-7, 4e-7, 1.6e-6])
    rabi_points: int = 6
    rabi_span: float = 0.5
    amplitude_prior: float = 0.08
    beta_prior: float = 0.6
    detuning_prior_hz: float = 1.5e6
    rabi_min_shots: int = 24
    amplitude_depths: list[int] = field(default_factory=lambda: [2, 8, 32, 64])
    drag_scan_depth: int = 4
    drag_scan_points: int = 4
    drag_scan_span: float = 0.5
    drag_depths: list[int] = field(default_factory=lambda: [8, 32])
    drag_slope: float = -0.125
    drag_slope_tolerance: float = 0.3
    slope_range: float = 4.0
    beta_floor_s: float = 2.5e-10
    unwrap_sigma: float = 1.0
    trust_sigma: float = 5.0
    allocation: list[float] = field(default_factory=lambda: [0.16, 0.0, 0.28, 0.30, 0.26])
    level_growth: float = 1.5
    min_shots: int = 4


@dataclass
class BlackBoxConf:
    """``BlackBoxSettings`` keyword arguments (the env's default probes are not configurable)."""

    _target_: str = "pulsecal.agents.baselines.BlackBoxSettings"
    shots_per_probe: int | None = None
    miscalibration: list[float] = field(default_factory=lambda: [0.05, 0.5, 1e6, 0.0])
    floor: float = 1e-6


@dataclass
class NelderMeadConf:
    """``NelderMeadCalibration`` keyword arguments."""

    _target_: str = "pulsecal.agents.baselines.NelderMeadCalibration"
    name: str = "nelder_mead"
    settings: BlackBoxConf = field(default_factory=BlackBoxConf)
    initial_step: float = 0.5


@dataclass
class CMAESConf:
    """``CMAESCalibration`` keyword arguments."""

    _target_: str = "pulsecal.agents.baselines.CMAESCalibration"
    name: str = "cmaes"
    settings: BlackBoxConf = field(default_factory=BlackBoxConf)
    sigma0: float = 0.5
    popsize: int | None = None


@dataclass
class RPEConf:
    """``RPECalibration`` keyword arguments."""

    _target_: str = "pulsecal.agents.baselines.RPECalibration"
    name: str = "rpe"
    ramsey_delay_s: float = 50e-9
    max_ramsey_depths: int = 6
    max_amplitude_depth: int = 64
    max_drag_depth: int = 32
    drag_slope: float = -0.125
    beta_floor_s: float = 2.5e-10
    amplitude_range: float = 0.25
    allocation: list[float] = field(default_factory=lambda: [0.25, 0.4, 0.35])
    min_shots: int = 4
    depth_shots: int = 6


@dataclass
class SMCConf:
    """``SMCCalibration`` keyword arguments."""

    _target_: str = "pulsecal.agents.baselines.SMCCalibration"
    name: str = "smc"
    particles: int = 500
    shots_per_probe: int = 20
    prior_range: list[float] = field(default_factory=lambda: [0.2, 1.2, 3.5e6])
    readout_range: list[float] = field(default_factory=lambda: [0.12, 0.25])
    amplitude_depths: list[int] = field(default_factory=lambda: [2, 4, 8, 16, 32, 64])
    drag_depths: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    ramsey_delays_s: list[float] = field(default_factory=lambda: [5e-8, 2e-7, 8e-7, 1.6e-6])
    drag_tilt: float = 0.067
    beta_floor_s: float = 2.5e-10
    liu_west_a: float = 0.98
    resample_threshold: float = 0.5


BASELINE_SCHEMAS: dict[str, type] = {
    "standard": StandardConf,
    "rpe": RPEConf,
    "smc": SMCConf,
    "nelder_mead": NelderMeadConf,
    "cmaes": CMAESConf,
}


# ------------------------------------------------------------------------- train

# Metrics train() returns that a sweeper may minimise.
OBJECTIVES = ("final_infidelity", "final_infidelity_median", "best_infidelity", "final_leakage", "final_shots")


@dataclass
class TrainConf:
    """The whole training run (``configs/train.yaml``)."""

    # One schema per env id (env_schema.py) and per algorithm, so these two fields are
    # untyped here; each env/*.yaml and agent/*.yaml starts from its own schema, which does
    # the type checking.
    env: Any = MISSING
    device: DeviceConf = MISSING
    agent: Any = MISSING
    callbacks: CallbacksConf = MISSING
    logger: LoggerConf = MISSING
    seed: int = 0
    total_timesteps: int = 100_000
    torch_device: str = "cpu"
    torch_threads: int = 1
    # Directory of an earlier run to continue from its last checkpoint.
    resume: str | None = None
    # Name of the metric (a key of train()'s result) returned to a sweeper; minimised.
    optimized_metric: str = "final_infidelity"

    def check(self) -> None:
        _non_negative_int("seed", self.seed)
        _positive_int("total_timesteps", self.total_timesteps)
        _positive_int("torch_threads", self.torch_threads)
        if self.optimized_metric not in OBJECTIVES:
            raise ConfigError(
                "optimized_metric", f"unknown metric {self.optimized_metric!r} (one of {', '.join(OBJECTIVES)})"
            )
        if self.torch_device not in ("cpu", "cuda", "auto") and not self.torch_device.startswith("cuda:"):
            raise ConfigError("torch_device", f"must be cpu, cuda, cuda:<n> or auto, got {self.torch_device!r}")
        if not isinstance(self.env, EnvConf):
            raise ConfigError("env", "not composed from an env schema (env/*.yaml: defaults: [<env>_schema])")
        for name in ("env", "device", "agent", "callbacks", "logger"):
            try:
                getattr(self, name).check()
            except ConfigError as err:
                raise err.within(name) from None
        if isinstance(self.agent, PPOConf):
            rollout = self.agent.n_steps * self.env.n_envs
            if self.agent.batch_size > rollout:
                raise ConfigError(
                    "agent.batch_size",
                    f"{self.agent.batch_size} exceeds the rollout agent.n_steps*env.n_envs = {rollout}",
                )


AGENT_SCHEMAS: dict[str, type[AgentConf]] = {
    "ppo": PPOConf,
    "recurrent_ppo": RecurrentPPOConf,
    "sac": SACConf,
    "td3": TD3Conf,
}


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent).

    Group files name their schema first in their defaults list, e.g.
    ``agent/ppo.yaml``: ``defaults: [ppo_schema, _self_]``.
    """
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConf)
    from pulsecal.configs.env_schema import ENV_SCHEMAS  # it builds on EnvConf above

    for name, env_schema in ENV_SCHEMAS.items():
        cs.store(group="env", name=name, node=env_schema)
    cs.store(group="device", name="device_schema", node=DeviceConf)
    for name, schema in AGENT_SCHEMAS.items():
        cs.store(group="agent", name=f"{name}_schema", node=schema)
    cs.store(group="callbacks", name="callbacks_schema", node=CallbacksConf)
    cs.store(group="logger", name="logger_schema", node=LoggerConf)
    for name, schema in BASELINE_SCHEMAS.items():
        cs.store(group="baseline/method", name=f"{name}_schema", node=schema)


def _run_dir(resume: str | None, fresh: str) -> str:
    """``hydra.run.dir``: the resumed run's own directory, else a fresh one."""
    return str(resume) if resume else fresh


def _hydra_subdir(resume: str | None, stamp: str) -> str:
    """``hydra.output_subdir``: a new subdirectory per resume, never the first run's."""
    return f".hydra/resume_{stamp}" if resume else ".hydra"


def register_resolvers() -> None:
    """The two resolvers ``train.yaml`` uses for its Hydra output paths (idempotent)."""
    OmegaConf.register_new_resolver("pulsecal.run_dir", _run_dir, replace=True)
    OmegaConf.register_new_resolver("pulsecal.hydra_subdir", _hydra_subdir, replace=True)
