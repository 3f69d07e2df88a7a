"""``pulsecal-evaluate``: agents and baselines on held-out devices, results table and plots.

    pulsecal-evaluate
    pulsecal-evaluate n_devices=20 budgets=[1000] drift=false baseline=quick
    pulsecal-evaluate 'agents=[{name: ppo, task: calibration, algo: ppo, path: runs/<run>}]'

The one place the evaluate config becomes objects: :func:`evaluate` converts the
composed config (typed by the schemas below and the baseline schemas of
``pulsecal.configs.schema``, registered in Hydra's ConfigStore so a wrong type fails at
compose time) into ``EvaluationSettings`` and ``AgentSpec``s, building every configured
baseline with ``hydra.utils.instantiate``, and runs ``pulsecal.agents.evaluation.evaluate``.
Bad values exit with status 2 and one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate
from omegaconf import MISSING, DictConfig, OmegaConf

from pulsecal.agents import policies  # its torch-bearing SB3Policy loads when an agent has a model
from pulsecal.agents.baselines import Baseline
from pulsecal.agents.evaluation import (
    ENV_IDS,
    AgentSpec,
    EvaluationReport,
    EvaluationSettings,
)
from pulsecal.agents.evaluation import evaluate as run_evaluation

# -- schemas ----------------------------------------------------------------------------------


@dataclass
class EvaluatedAgentConf:
    """One agent: a training run directory (or model .zip) and the benchmark it plays.

    ``algo: zero`` is no model at all: the all-zero action every step (``path`` unused). On
    GateCalibration-v1, whose actions are residuals around the env's running estimate,
    that is the estimator by itself: the reference for what a trained policy adds.
    """

    name: str = MISSING
    task: str = MISSING
    algo: str = MISSING
    path: str | None = None
    normalisation: str | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    env_id: str | None = None


@dataclass
class EvaluateConf:
    """The whole evaluation (``configs/evaluate.yaml``)."""

    # name -> one baseline config (configs/baseline/method/*.yaml, each typed by its own
    # schema, so the values are untyped here), built with its _target_.
    baseline: dict[str, Any] = MISSING
    out_dir: str = MISSING
    n_devices: int = 100
    seed: int = 12345
    budgets: list[int] = field(default_factory=lambda: [1000, 5000, 20000])
    # Names from ``baseline`` to run; null: all of them.
    methods: list[str] | None = None
    gate_duration_s: float = 20e-9
    miscalibration: list[float] = field(default_factory=lambda: [0.05, 0.5, 1e6, 0.0])
    workers: int = 2
    chunk_size: int = 25
    pulse_shaping: bool = True
    shaping_preset: str = "transmon_short"
    shaping_duration_s: float = 6e-9
    shaping_held_out: int = 0
    shaping_realistic: int = 0
    # Ranges of the realistic shaping set ({base: {DeviceSampler field: [lo, hi]}, rise_time_s});
    # null: REALISTIC_HELD_OUT_SAMPLER.
    shaping_realistic_sampler: dict[str, Any] | None = None
    grape_restarts: int = 2
    grape_maxiter: int = 400
    drift: bool = True
    drift_devices: int = 4
    drift_realistic: int = 0
    # DeviceSampler ranges of the realistic drift set; null: REALISTIC_DRIFT_SAMPLER.
    drift_sampler: dict[str, Any] | None = None
    drift_hours: float = 24.0
    drift_interval_s: float = 600.0
    drift_recalibration: str = "standard"
    recalibration_interval_s: float = 3600.0
    recalibration_budget: int = 1000
    circuit_time_s: float = 1e-6
    progress: bool = True
    plots: bool = True
    agents: list[EvaluatedAgentConf] = field(default_factory=list)


def register_configs() -> None:
    """Store the evaluate schemas in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="evaluate_schema", node=EvaluateConf)


register_configs()


# -- config -> objects ------------------------------------------------------------------------


def baselines(cfg: DictConfig) -> tuple[Baseline, ...]:
    """The configured baseline set, each built with its ``_target_``, named by its key."""
    section = cfg.get("baseline") or {}
    return tuple(instantiate(node, _convert_="all", name=str(key)) for key, node in section.items())


ZERO_POLICY = "zero"


def _zero_policy(conf: EvaluatedAgentConf) -> policies.FunctionPolicy:
    import gymnasium as gym
    import numpy as np

    import pulsecal.envs  # noqa: F401  (registers the env ids)

    env_id = conf.env_id if conf.env_id is not None else ENV_IDS.get(conf.task)
    if env_id is None:
        raise ValueError(f"agents[{conf.name}].task={conf.task!r} is out of range: allowed {', '.join(ENV_IDS)}")
    env = gym.make(env_id)
    shape = env.action_space.shape or ()
    env.close()
    zero = np.zeros(shape, dtype=np.float32)
    return policies.FunctionPolicy(lambda _obs: zero)


def _agent(conf: EvaluatedAgentConf) -> AgentSpec:
    if conf.algo == ZERO_POLICY:
        return AgentSpec(conf.name, conf.task, _zero_policy(conf), dict(conf.env_kwargs), conf.env_id)
    if conf.path is None:
        raise ValueError(f"agents[{conf.name}].path is missing: allowed an existing run directory or model .zip "
                         f"(or algo={ZERO_POLICY!r}, which needs none)")
    path = Path(conf.path)
    if path.is_dir():
        policy = policies.SB3Policy.from_run_dir(path, conf.algo)
    elif path.is_file():
        policy = policies.SB3Policy.load(conf.algo, path, conf.normalisation)
    else:
        raise ValueError(f"agents[{conf.name}].path={conf.path!r} is out of range: allowed an existing run "
                         "directory or model .zip")
    return AgentSpec(conf.name, conf.task, policy, dict(conf.env_kwargs), conf.env_id)


def to_settings(cfg: DictConfig) -> tuple[EvaluationSettings, list[AgentSpec]]:
    """The composed config as typed settings and agents (raises ``ValueError`` naming the key)."""
    conf: EvaluateConf = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    settings = EvaluationSettings(
        out_dir=Path(conf.out_dir), n_devices=conf.n_devices, seed=conf.seed, budgets=tuple(conf.budgets),
        baselines=baselines(cfg), methods=None if conf.methods is None else tuple(conf.methods),
        gate_duration_s=conf.gate_duration_s,
        miscalibration=tuple(conf.miscalibration),  # type: ignore[arg-type]
        workers=conf.workers, chunk_size=conf.chunk_size,
        pulse_shaping=conf.pulse_shaping, shaping_preset=conf.shaping_preset,
        shaping_duration_s=conf.shaping_duration_s, shaping_held_out=conf.shaping_held_out,
        shaping_realistic=conf.shaping_realistic, shaping_realistic_sampler=conf.shaping_realistic_sampler,
        drift_realistic=conf.drift_realistic, drift_sampler=conf.drift_sampler,
        grape_restarts=conf.grape_restarts,
        grape_maxiter=conf.grape_maxiter, drift=conf.drift, drift_devices=conf.drift_devices,
        drift_hours=conf.drift_hours, drift_interval_s=conf.drift_interval_s,
        drift_recalibration=conf.drift_recalibration, recalibration_interval_s=conf.recalibration_interval_s, recalibration_budget=conf.recalibration_budget,
        circuit_time_s=conf.circuit_time_s, progress=conf.progress, plots=conf.plots,
    )
    return settings, [_agent(a) for a in conf.agents]


def evaluate(cfg: DictConfig) -> EvaluationReport:
    """Run the evaluation the composed config describes; returns the report."""
    settings, agents = to_settings(cfg)
    return run_evaluation(settings, agents)
