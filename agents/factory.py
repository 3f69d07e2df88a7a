"""Build Stable-Baselines3 algorithms on pulsecal's batched environments.

SB3 is wrapped, never re-implemented: this module only turns typed settings into an
SB3 (or sb3-contrib) algorithm on a ``VecEnv`` of ``n_envs`` copies, with
``VecNormalize`` where the settings ask for it. An environment whose Gymnasium spec has
a ``vector_entry_point`` (pulsecal's envs do: N copies share one propagator call) is
built natively batched and exposed to SB3 through the env package's VecEnv adapter;
any other env falls back to SB3's ``DummyVecEnv``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor, VecNormalize
from torch import nn

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "ppo": PPO,
    "recurrent_ppo": RecurrentPPO,
    "sac": SAC,
    "td3": TD3,
}

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}

_ON_POLICY = ("ppo", "recurrent_ppo")


@dataclass(frozen=True)
class AlgorithmSpec:
    """What to train: an SB3 algorithm, its policy network and its hyperparameters.

    ``algo`` is one of :data:`ALGORITHMS`; ``hyperparams`` are the algorithm's own
    keyword arguments (``learning_rate``, ``n_steps``, ...), passed unchanged except
    ``action_noise_sigma`` (TD3), which becomes Gaussian action noise. ``net_arch``
    and ``activation`` shape the policy (``lstm_hidden_size`` for recurrent PPO).
    ``normalize_obs`` / ``normalize_reward`` wrap the env in ``VecNormalize``.
    """

    algo: str
    policy: str = "MlpPolicy"
    hyperparams: Mapping[str, Any] = field(default_factory=dict)
    net_arch: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    lstm_hidden_size: int | None = None
    log_std_init: float | None = None
    normalize_obs: bool = True
    normalize_reward: bool = False

    def __post_init__(self) -> None:
        if self.algo not in ALGORITHMS:
            raise ValueError(f"AlgorithmSpec.algo={self.algo!r}: allowed {', '.join(ALGORITHMS)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"AlgorithmSpec.activation={self.activation!r}: allowed {', '.join(ACTIVATIONS)}")
        if not self.net_arch or any(int(n) <= 0 for n in self.net_arch):
            raise ValueError(f"AlgorithmSpec.net_arch={self.net_arch!r}: allowed non-empty positive widths")
        if self.lstm_hidden_size is not None and self.algo != "recurrent_ppo":
            raise ValueError(f"AlgorithmSpec.lstm_hidden_size is only for recurrent_ppo, not {self.algo!r}")
        object.__setattr__(self, "net_arch", tuple(int(n) for n in self.net_arch))
        object.__setattr__(self, "hyperparams", dict(self.hyperparams))

    @property
    def gamma(self) -> float:
        return float(self.hyperparams.get("gamma", 0.99))

    def policy_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "net_arch": list(self.net_arch),
            "activation_fn": ACTIVATIONS[self.activation],
        }
        if self.lstm_hidden_size is not None:
            kwargs["lstm_hidden_size"] = self.lstm_hidden_size
        if self.log_std_init is not None and self.algo != "td3":
            kwargs["log_std_init"] = self.log_std_init
        return kwargs


def resolve_env_id(env_id: str) -> str:
    """Gymnasium's ``"module:EnvId-v0"`` form: import ``module`` (which registers the
    env), return ``EnvId-v0``. Plain ids are returned unchanged."""
    if ":" in env_id:
        module, env_id = env_id.split(":", 1)
        importlib.import_module(module)
    gym.spec(env_id)  # raises gymnasium.error.Error naming the id if it is unknown
    return env_id


def make_vec_env(
    env_id: str,
    n_envs: int,
    seed: int,
    env_kwargs: Mapping[str, Any] | None = None,
    max_episode_steps: int | None = None,
    reset_options: Sequence[Mapping[str, Any]] | None = None,
) -> VecEnv:
    """``n_envs`` copies of ``env_id`` as one SB3 ``VecEnv`` (with episode statistics).

    Natively batched when the env registers a ``vector_entry_point`` and
    ``pulsecal.agents.vec_env`` provides its SB3 adapter; otherwise one ``gym.make`` per
    copy. Copy i is seeded ``seed + i`` (SB3 convention). ``reset_options[i]`` is
    passed to every reset of copy i (e.g. a fixed held-out device).
    """
    if n_envs <= 0:
        raise ValueError(f"make_vec_env: n_envs={n_envs}: allowed >= 1")
    if reset_options is not None and len(reset_options) != n_envs:
        raise ValueError(f"make_vec_env: {len(reset_options)} reset_options for n_envs={n_envs}")
    env_id = resolve_env_id(env_id)
    kwargs = dict(env_kwargs or {})
    venv: VecEnv | None = None
    if gym.spec(env_id).vector_entry_point is not None:
        venv = _native_vec_env(env_id, n_envs, kwargs, max_episode_steps)
    if venv is None:
        make_kwargs: dict[str, Any] = dict(kwargs)
        if max_episode_steps is not None:
            make_kwargs["max_episode_steps"] = max_episode_steps
        venv = DummyVecEnv([_env_thunk(env_id, make_kwargs) for _ in range(n_envs)])
    venv.seed(seed)
    if reset_options is not None:
        venv.set_options([dict(o) for o in reset_options])
    return VecMonitor(venv)


def _env_thunk(env_id: str, kwargs: dict[str, Any]) -> Callable[[], gym.Env]:
    return lambda: gym.make(env_id, **kwargs)


def _native_vec_env(
    env_id: str, n_envs: int, kwargs: dict[str, Any], max_episode_steps: int | None
) -> VecEnv | None:
    """The env package's batched vector env behind its SB3 adapter, if it has one."""
    try:
        vector_mod = importlib.import_module("pulsecal.agents.vec_env")
    except ImportError:
        return None
    make = getattr(vector_mod, "make_sb3_vec_env", None)
    if make is None:
        return None
    if max_episode_steps is not None:
        kwargs = {**kwargs, "max_episode_steps": max_episode_steps}
    venv: VecEnv = make(env_id, n_envs=n_envs, **kwargs)
    return venv


def wrap_normalization(venv: VecEnv, spec: AlgorithmSpec, training: bool = True) -> VecEnv:
    """``VecNormalize`` around ``venv`` when the spec normalises anything."""
    if not (spec.normalize_obs or spec.normalize_reward):
        return venv
    return VecNormalize(
        venv,
        training=training,
        norm_obs=spec.normalize_obs,
        norm_reward=spec.normalize_reward and training,
        gamma=spec.gamma,
    )


def build_algorithm(
    spec: AlgorithmSpec,
    venv: VecEnv,
    seed: int,
    device: str = "cpu",
    verbose: int = 0,
) -> BaseAlgorithm:
    """A fresh SB3 algorithm for ``spec`` on ``venv`` (already normalised if wanted)."""
    cls = ALGORITHMS[spec.algo]
    hyper = dict(spec.hyperparams)
    if spec.algo in _ON_POLICY:
        _check_rollout(hyper, venv.num_envs)
    sigma = hyper.pop("action_noise_sigma", None)
    if sigma is not None and spec.algo == "td3" and sigma > 0:
        dim = int(np.prod(venv.action_space.shape or (1,)))
        hyper["action_noise"] = NormalActionNoise(np.zeros(dim), np.full(dim, float(sigma)))
    return cls(
        spec.policy,
        venv,
        policy_kwargs=spec.policy_kwargs(),
        seed=seed,
        device=device,
        verbose=verbose,
        **hyper,
    )


def _check_rollout(hyper: dict[str, Any], n_envs: int) -> None:
    # SB3 accepts a minibatch larger than the rollout and silently trains on less.
    n_steps = int(hyper.get("n_steps", 2048))
    batch = int(hyper.get("batch_size", 64))
    if batch > n_steps * n_envs:
        raise ValueError(
            f"batch_size={batch} exceeds the rollout n_steps*n_envs = {n_steps}*{n_envs}: "
            f"allowed <= {n_steps * n_envs}"
        )


def load_algorithm(
    algo: str, path: str | Path, venv: VecEnv | None = None, device: str = "cpu"
) -> BaseAlgorithm:
    """Load an SB3 zip written by this project (the one pickle-bearing format we accept)."""
    if algo not in ALGORITHMS:
        raise ValueError(f"load_algorithm: algo={algo!r}: allowed {', '.join(ALGORITHMS)}")
    return ALGORITHMS[algo].load(str(path), env=venv, device=device)
