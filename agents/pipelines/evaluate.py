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

import collections.abc
import dataclasses
import functools
import operator
import types
import typing
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
from pulsecal.agents.pinned_env import make_pinned
from pulsecal.agents.pipelines.common import trained_env_kwargs
from pulsecal.configs.env_schema import AmplitudeLimitConf, VerificationConf
from pulsecal.envs.amplitude_limit import AmplitudeLimit

# -- schemas ----------------------------------------------------------------------------------


@dataclass
class EvaluatedAgentConf:
    """One agent: a training run directory (or model .zip) and the benchmark it plays.

    A run directory says what it trained: ``task``, ``algo``, ``env_id`` and ``env_kwargs``
    default to its ``config.yaml`` (null: the run's). An explicit ``env_kwargs`` entry wins
    over the run's; an ``algo``, ``env_id`` or ``task`` other than the run's is refused, as
    is any setting that gives the model other observation or action spaces, before any
    benchmark runs. A model .zip says nothing: ``task`` and ``algo`` are required.

    ``algo: zero`` is no model at all: the all-zero action every step (``path`` unused). On
    GateCalibration-v1, whose actions are residuals around the env's running estimate,
    that is the estimator by itself: the reference for what a trained policy adds.
    """

    name: str = MISSING
    task: str | None = None
    algo: str | None = None
    path: str | None = None
    normalisation: str | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    env_id: str | None = None


# EvaluationSettings fields whose config is not their own plain value: ``baselines`` is
# built from the ``baseline`` section, ``targets`` is the benchmark's own, and the two
# below are typed by their schemas in pulsecal.configs.env_schema.
_NOT_CONFIGURED = ("baselines", "targets")
_OWN_SCHEMA: dict[str, type] = {"amplitude_limit": AmplitudeLimitConf, "verification": VerificationConf}


def _plain_type(hint: Any) -> Any:
    """The structured-config type of a settings field type: tuples as lists, mappings as
    dicts, a path as a string (what YAML and the command line can write)."""
    if hint is Path:
        return str
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        plain = [_plain_type(a) for a in args]
        return functools.reduce(operator.or_, plain)
    if origin is tuple:
        return list[args[0]]  # type: ignore[valid-type]
    if origin is collections.abc.Mapping:
        return dict[args[0], args[1]]  # type: ignore[valid-type]
    return hint


def _plain_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is dataclasses.MISSING:
        return MISSING if f.default_factory is dataclasses.MISSING else field(default_factory=f.default_factory)
    if isinstance(f.default, tuple):
        return field(default_factory=functools.partial(list, f.default))
    return f.default


def _settings_fields() -> list[tuple[str, Any, Any]]:
    """``EvaluationSettings``' configurable fields as schema fields, in its order."""
    hints = typing.get_type_hints(EvaluationSettings)
    out: list[tuple[str, Any, Any]] = []
    for f in dataclasses.fields(EvaluationSettings):
        if f.name in _NOT_CONFIGURED:
            continue
        if f.name in _OWN_SCHEMA:
            conf = _OWN_SCHEMA[f.name]
            out.append((f.name, conf, field(default_factory=conf)))
        else:
            out.append((f.name, _plain_type(hints[f.name]), _plain_default(f)))
    return out


# The whole evaluation (``configs/evaluate.yaml``): EvaluationSettings' fields (documented
# there), with ``baseline`` (name -> one baseline config, configs/baseline/method/*.yaml,
# each typed by its own schema, so untyped here; built with its _target_) and the agents.
EvaluateConf = dataclasses.make_dataclass("EvaluateConf", [
    ("baseline", dict[str, Any], MISSING),
    *_settings_fields(),
    ("agents", list[EvaluatedAgentConf], field(default_factory=list)),
])
EvaluateConf.__module__ = __name__


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


@dataclass(frozen=True)
class _RunRecord:
    """What a training run directory says it trained (config.yaml)."""

    algo: str | None
    env_id: str | None
    env_kwargs: dict[str, Any]
    source: Path


def _run_record(path: Path) -> _RunRecord | None:
    """The run's algorithm, env id and env settings; None for a folder without config.yaml."""
    import yaml

    config_path = path / "config.yaml"
    if not config_path.is_file():
        return None
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    algo = (config.get("agent") or {}).get("name")
    env_id = (config.get("env") or {}).get("id")
    return _RunRecord(None if algo is None else str(algo), None if env_id is None else str(env_id),
                      trained_env_kwargs(path), config_path)


def _task_of(env_id: str) -> str | None:
    family = env_id.rsplit("-v", 1)[0]
    return next((task for task, default in ENV_IDS.items() if default.rsplit("-v", 1)[0] == family), None)


def _from_run(conf: EvaluatedAgentConf, run: _RunRecord) -> EvaluatedAgentConf:
    """``conf`` completed from the run; raises ``ValueError`` naming the first key of
    ``conf`` that contradicts the run."""
    where = f"agents[{conf.name}]"
    for key, have in (("algo", run.algo), ("env_id", run.env_id)):
        want = getattr(conf, key)
        if want is not None and have is not None and want != have:
            named = "agent.name" if key == "algo" else "env.id"
            raise ValueError(f"{where}.{key}={want!r}: the run trained {have!r} ({run.source}: {named}): "
                             f"allowed {have!r}, or leave {key} unset to take the run's")
    env_id = conf.env_id or run.env_id
    run_task = None if env_id is None else _task_of(env_id)
    if conf.task is not None and run_task is not None and conf.task != run_task:
        raise ValueError(f"{where}.task={conf.task!r}: the run trained {env_id!r} ({run.source}), a "
                         f"{run_task} env: allowed {run_task!r}, or leave task unset to take the run's")
    task = conf.task or run_task
    if task is None:
        raise ValueError(f"{where}.task is missing: the run trained {env_id!r} ({run.source}), no benchmark's "
                         f"env: allowed one of {', '.join(ENV_IDS)} with a matching env_id")
    algo = conf.algo or run.algo
    if algo is None:
        raise ValueError(f"{where}.algo is missing: {run.source} names no agent.name")
    return EvaluatedAgentConf(name=conf.name, task=task, algo=algo, path=conf.path, normalisation=conf.normalisation,
                              env_kwargs={**run.env_kwargs, **dict(conf.env_kwargs)},
                              env_id=None if env_id == ENV_IDS[task] else env_id)


def _layout_key(conf: EvaluatedAgentConf, run: _RunRecord, policy: Any) -> None:
    """Refuse an explicit ``env_kwargs`` entry that gives the run's model other spaces,
    naming it (``check_agents`` later checks every benchmark's env as a whole)."""
    import gymnasium as gym

    import pulsecal.envs  # noqa: F401  (registers the env ids)

    assert conf.task is not None
    env_id = conf.env_id or ENV_IDS[conf.task]
    for key, value in conf.env_kwargs.items():
        if key in run.env_kwargs and run.env_kwargs[key] == value:
            continue
        try:
            env = make_pinned(env_id, **{**run.env_kwargs, key: value})
        except (TypeError, ValueError, gym.error.Error) as err:
            raise ValueError(f"agents[{conf.name}].env_kwargs.{key}={value!r}: {env_id} refuses it: {err}") from None
        same = env.observation_space == policy.observation_space and env.action_space == policy.action_space
        env.close()
        if not same:
            trained = run.env_kwargs.get(key, "the env's default")
            raise ValueError(f"agents[{conf.name}].env_kwargs.{key}={value!r}: changes the observation or action "
                             f"space the run's model was trained with ({run.source}): allowed its training value "
                             f"{trained!r}, or leave env_kwargs.{key} unset")


def _zero_policy(conf: EvaluatedAgentConf) -> policies.FunctionPolicy:
    import numpy as np

    import pulsecal.envs  # noqa: F401  (registers the env ids)

    env_id = conf.env_id if conf.env_id is not None else ENV_IDS.get(conf.task)
    if env_id is None:
        raise ValueError(f"agents[{conf.name}].task={conf.task!r} is out of range: allowed {', '.join(ENV_IDS)}")
    env = make_pinned(env_id)
    shape = env.action_space.shape or ()
    env.close()
    zero = np.zeros(shape, dtype=np.float32)
    return policies.FunctionPolicy(lambda _obs: zero)


def _required(conf: EvaluatedAgentConf, key: str, why: str) -> str:
    value = getattr(conf, key)
    if value is None:
        raise ValueError(f"agents[{conf.name}].{key} is missing: {why}")
    return str(value)


def _agent(conf: EvaluatedAgentConf) -> AgentSpec:
    if conf.algo == ZERO_POLICY:
        task = _required(conf, "task", f"algo={ZERO_POLICY!r} has no run to take it from")
        return AgentSpec(conf.name, task, _zero_policy(conf), dict(conf.env_kwargs), conf.env_id)
    if conf.path is None:
        raise ValueError(f"agents[{conf.name}].path is missing: allowed an existing run directory or model .zip "
                         f"(or algo={ZERO_POLICY!r}, which needs none)")
    path = Path(conf.path)
    run = _run_record(path) if path.is_dir() else None
    if run is not None:
        conf = _from_run(conf, run)
    if path.is_dir():
        algo = _required(conf, "algo", f"{path} has no config.yaml to take it from")
        policy = policies.SB3Policy.from_run_dir(path, algo)
    elif path.is_file():
        algo = _required(conf, "algo", "a model .zip does not say which algorithm wrote it")
        policy = policies.SB3Policy.load(algo, path, conf.normalisation)
    else:
        raise ValueError(f"agents[{conf.name}].path={conf.path!r} is out of range: allowed an existing run "
                         "directory or model .zip")
    if run is not None:
        _layout_key(conf, run, policy)
    task = _required(conf, "task", "allowed one of " + ", ".join(ENV_IDS))
    return AgentSpec(conf.name, task, policy, dict(conf.env_kwargs), conf.env_id)


def _amplitude_limit(conf: AmplitudeLimitConf) -> AmplitudeLimit:
    """The configured limit: the fields set (null: the default's)."""
    return AmplitudeLimit(**{k: v for k, v in dataclasses.asdict(conf).items() if v is not None})


def to_settings(cfg: DictConfig) -> tuple[EvaluationSettings, list[AgentSpec]]:
    """The composed config as typed settings and agents (raises ``ValueError`` naming the key)."""
    conf: Any = OmegaConf.to_object(cfg)
    plain = {name: getattr(conf, name) for name, _, _ in _settings_fields() if name not in _OWN_SCHEMA}
    settings = EvaluationSettings(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in plain.items()},
        baselines=baselines(cfg), amplitude_limit=_amplitude_limit(conf.amplitude_limit),
        verification={k: v for k, v in dataclasses.asdict(conf.verification).items() if v is not None},
    )
    return settings, [_agent(a) for a in conf.agents]


def evaluate(cfg: DictConfig) -> EvaluationReport:
    """Run the evaluation the composed config describes; returns the report."""
    settings, agents = to_settings(cfg)
    return run_evaluation(settings, agents)
