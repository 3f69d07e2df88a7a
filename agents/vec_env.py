"""Stable-Baselines3 adapter of the natively batched pulsecal environments.

``SB3VecEnv`` is an SB3 ``VecEnv`` over a ``pulsecal.envs.vector.BatchedVectorEnv``'s core,
with SB3's conventions (a copy that ends is reset in the same step, ``terminal_observation``
and ``TimeLimit.truncated`` in its info). It lives in ``agents`` because it needs SB3 (and
so torch): the environments themselves import neither.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray
from stable_baselines3.common.vec_env import VecEnv

from pulsecal.envs.vector import BatchedVectorEnv, FloatArray, check_reset_options


def make_sb3_vec_env(env_id: str, n_envs: int = 1, seed: int | None = None, **kwargs: Any) -> SB3VecEnv:
    """An ``SB3VecEnv`` for a registered pulsecal id (its max_episode_steps applied)."""
    spec = gym.spec(env_id)
    if spec.vector_entry_point is None or not isinstance(spec.vector_entry_point, str):
        raise ValueError(f"env_id={env_id!r} has no batched vector entry point")
    vec_kwargs = {**spec.kwargs, **kwargs}
    vec_kwargs.setdefault("max_episode_steps", spec.max_episode_steps)
    mod, name = spec.vector_entry_point.split(":")
    cls = getattr(importlib.import_module(mod), name)
    venv = SB3VecEnv(cls(num_envs=n_envs, **vec_kwargs))
    if seed is not None:
        venv.seed(seed)
    return venv


class SB3VecEnv(VecEnv):
    """Stable-Baselines3 ``VecEnv`` over a ``BatchedVectorEnv``'s core, SB3 semantics.

    A copy that ends is reset in the same ``step_wait``: the returned observation is the
    new episode's first, the last one is in ``infos[i]["terminal_observation"]``, and
    ``infos[i]["TimeLimit.truncated"]`` says whether the time limit ended it.
    """

    def __init__(self, venv: BatchedVectorEnv) -> None:
        self.venv = venv
        self.core = venv.core
        self.max_episode_steps = venv.max_episode_steps
        self.render_mode = venv.render_mode
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._seeds: list[int | None] = [None] * self.num_envs
        # None: no options for that copy (SB3 declares a list of dicts; the core takes None too).
        self._options: list[dict[str, Any] | None] = [None] * self.num_envs  # type: ignore[assignment]
        self._actions: NDArray[Any] | None = None
        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)

    def reset(self) -> NDArray[np.float32]:
        for i, s in enumerate(self._seeds):
            self.core.seed_copy(i, s)
        self._seeds = [None] * self.num_envs
        idx = list(range(self.num_envs))
        obs, _, _, infos = self.core.advance([], None, idx, self._options)
        self._elapsed[:] = 0
        self.reset_infos = list(infos)
        return obs.astype(np.float32)

    def step_async(self, actions: NDArray[Any]) -> None:
        a = np.asarray(actions)
        shape = (self.num_envs, *self.core.action_space.shape)
        if a.shape != shape:
            raise ValueError(f"actions have shape {a.shape}: allowed {shape}, one row per copy "
                             f"(num_envs={self.num_envs}) of action_space.shape {self.core.action_space.shape}")
        self._actions = a

    def step_wait(self) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.bool_], list[dict[str, Any]]]:
        assert self._actions is not None
        core = self.core
        idx = list(range(self.num_envs))
        time_up = None if self.max_episode_steps is None else self._elapsed >= self.max_episode_steps - 1
        ends = core.ends_after_step(idx)
        ending = ends if ends is None or time_up is None else ends | time_up
        merged = [] if ending is None else ending.nonzero()[0].tolist()
        new_obs: FloatArray | None = None
        if merged and ends is not None:
            # The copies that end are known before the step: reset them in the same call
            # (one measurement call instead of two).
            obs64, rew, term, infos, new_obs, _ = core.advance_and_reset(
                idx, self._actions, merged, [self._options[i] for i in merged])
            if not np.array_equal(term, ends):
                raise RuntimeError(f"{type(core).__name__}.ends_after_step predicted "
                                   f"{ends.tolist()}, the step terminated {term.tolist()}")
        else:
            obs64, rew, term, infos = core.advance(idx, self._actions)
        infos = list(infos)  # SB3 wants a list of plain dicts (and one is replaced below)
        self._elapsed += 1
        done = term.copy() if time_up is None else term | time_up
        obs = obs64.astype(np.float32)
        ended = done.nonzero()[0].tolist()
        if ended:
            # As TimeLimit: truncated only if the time limit, not the env, ended the episode.
            truncated = [False] * len(ended) if time_up is None else (time_up[ended] & ~term[ended]).tolist()
            for i, trunc in zip(ended, truncated, strict=True):
                infos[i] = dict(infos[i])
                infos[i]["terminal_observation"] = obs[i].copy()
                infos[i]["TimeLimit.truncated"] = trunc
            if new_obs is None:
                new_obs, _, _, _ = core.advance([], None, ended, [self._options[i] for i in ended])
            obs[ended] = new_obs
            self._elapsed[ended] = 0
        return obs, rew.astype(np.float32), done, infos

    def close(self) -> None:
        self.venv.close()

    def seed(self, seed: int | None = None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        self._seeds = [seed + i for i in range(self.num_envs)]
        return list(self._seeds)

    def set_options(self, options: list[dict] | dict | None = None) -> None:
        if options is None:
            options = {}
        if isinstance(options, Mapping):
            self._options = [dict(options)] * self.num_envs
            return
        if not isinstance(options, Sequence) or isinstance(options, str):
            check_reset_options(options)  # raises, naming the value
        per_copy: list[dict[str, Any] | None] = list(options)
        if len(per_copy) != self.num_envs:
            raise ValueError(f"set_options got {len(per_copy)} entries: allowed one per copy ({self.num_envs}) "
                             "or one dict for all")
        for i, o in enumerate(per_copy):
            check_reset_options(o, f"options[{i}]")
        self._options = per_copy

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        owner = self.venv if attr_name in ("render_mode", "max_episode_steps") else self.core
        return [getattr(owner, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.core, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        return [getattr(self.core, method_name)(*args, **kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def get_images(self) -> Sequence[NDArray[np.uint8] | None]:
        return [self.core.render_copy(i) for i in range(self.num_envs)]

    def _indices(self, indices: Any) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)
