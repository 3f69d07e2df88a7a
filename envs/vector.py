"""Natively batched environments: one core steps N copies with one physics call.

Every pulsecal environment is written once as a ``BatchedCore``: N copies with their own
random generators and devices, advanced together so that the devices' shots go through
one batched device call (``protocol.BatchedDevice``) and the truth metrics through one
propagator call.
Three thin adapters sit on a core:

- the single ``gymnasium.Env`` of each environment file (a core with N = 1, whose copy-0
  generator is the env's own ``np_random``);
- ``BatchedVectorEnv``, a ``gymnasium.vector.VectorEnv`` (registered as the
  ``vector_entry_point``), with Gymnasium's next-step autoreset and the time limit;
- ``pulsecal.agents.vec_env.SB3VecEnv``, a Stable-Baselines3 ``VecEnv`` with SB3's
  conventions (same-step reset, ``terminal_observation`` and ``TimeLimit.truncated`` in
  infos); it lives with the agents so that importing an env never imports SB3 or torch.

Seeding: copy i seeded with s_i uses ``gymnasium.utils.seeding.np_random(s_i)``, exactly
what ``Env.reset(seed=s_i)`` creates, and nothing in a copy depends on another copy, so
copy i reproduces the single env seeded s_i step for step. ``reset(seed=s)`` with an int
seeds copy i with s + i (Gymnasium's convention for vector envs).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, overload

import gymnasium as gym
import numpy as np
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from numpy.typing import NDArray

from .contract import EnvDescription
from .episode_end import episode_ended_message
from .physics.calibration_kernels import abs_peak

FloatArray = NDArray[np.float64]


class InfoColumns(Sequence[dict[str, Any]]):
    """The infos of n copies held as one array per key, as a batched core computes them.

    A read-only sequence of per-copy dicts (``infos[j]`` builds copy j's dict on access:
    1-D columns give Python scalars, as ``float(x)``/``int(x)``/``bool(x)`` would, wider
    ones give the copy's row), so a single env or SB3 sees plain dicts, while
    ``BatchedVectorEnv`` turns the columns into the vector info without a dict per copy.
    """

    def __init__(self, columns: dict[str, NDArray[Any]]) -> None:
        sizes = set(map(len, columns.values()))
        if len(sizes) > 1:
            raise ValueError(f"info columns have lengths {sorted(sizes)}: allowed one length")
        self.columns = columns
        self._n = sizes.pop() if sizes else 0

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, j: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, j: slice) -> InfoColumns: ...

    def __getitem__(self, j: int | slice) -> dict[str, Any] | InfoColumns:
        if isinstance(j, slice):
            return InfoColumns({k: c[j] for k, c in self.columns.items()})
        # (an object column holds the copy's value itself: a dict, an optional string)
        return {k: (c[j].item() if c.ndim == 1 and c.dtype.kind != "O" else c[j])
                for k, c in self.columns.items()}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # Every dict at once: one ``tolist`` per scalar column instead of one ``item`` per
        # entry (the same Python values).
        cols = [(k, c.tolist() if c.ndim == 1 else c) for k, c in self.columns.items()]
        for j in range(self._n):
            yield {k: c[j] for k, c in cols}


def check_reset_options(options: Any, name: str = "options") -> None:
    """Refuse reset options that are neither None nor a dict (``reset(options=5)``), by
    name, before anything is reset."""
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"reset {name}={options!r} ({type(options).__name__}) is not allowed: "
                        "allowed None or a dict of option name -> value")


class BatchedCore(ABC):
    """N copies of an environment advanced together.

    Subclasses keep per-copy state in arrays indexed by copy and implement three hooks;
    ``advance`` batches them so that resets and steps of the same call share one
    measurement call and one truth call.
    """

    observation_space: gym.spaces.Box
    action_space: gym.spaces.Box
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}

    def __init__(self, num_envs: int) -> None:
        if not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r} is out of range: allowed an integer >= 1")
        self.num_envs = int(num_envs)
        self.rngs: list[np.random.Generator] = [seeding.np_random(None)[0] for _ in range(self.num_envs)]

    def seed_copy(self, i: int, seed: int | None) -> None:
        if seed is not None:
            self.rngs[i] = seeding.np_random(int(seed))[0]

    def check_actions(self, actions: NDArray[Any]) -> NDArray[np.float64]:
        """(n, A) actions, validated: NaN/inf raise; finite values outside [−1, 1] raise.

        Out-of-space actions raise rather than being clipped, so that a policy bug shows
        up at once instead of as a silently saturated control.
        """
        a = np.asarray(actions, dtype=np.float64)
        shape = self.action_space.shape
        if a.shape[1:] != shape:
            raise ValueError(f"action has shape {a.shape[1:]}: allowed {shape}")
        # One compiled pass for the common case (NaN/inf make the peak NaN/inf, failing it).
        peak = abs_peak(a.reshape(-1)) if a.size else 0.0
        if not peak <= 1.0:
            if not np.isfinite(a).all():
                raise ValueError("action has NaN/inf entries: allowed finite values in [-1, 1]")
            if peak > 1.0 + 1e-6:
                raise ValueError(f"action has entries up to {peak:.4g} in magnitude: allowed [-1, 1]")
            return np.clip(a, -1.0, 1.0)
        # Already within [-1, 1]: clipping would change nothing (a copy, never the caller's array).
        return a if a is not actions else a.copy()

    def advance(
        self,
        step_idx: Sequence[int],
        actions: NDArray[Any] | None,
        reset_idx: Sequence[int] = (),
        reset_options: Sequence[dict[str, Any] | None] | None = None,
    ) -> tuple[FloatArray, FloatArray, NDArray[np.bool_], Sequence[dict[str, Any]]]:
        """Step the copies ``step_idx`` with ``actions`` and reset ``reset_idx``.

        Returns, in the order step_idx + reset_idx: observations (n, obs_dim), rewards
        (n,), terminated (n,) and one info dict per copy (rewards and terminated are 0 and
        False for reset copies).
        """
        step_idx = [int(i) for i in step_idx]
        reset_idx = [int(i) for i in reset_idx]
        if step_idx:
            assert actions is not None
            acts = self.check_actions(actions)
            if len(acts) != len(step_idx):
                raise ValueError(f"actions have shape {acts.shape} ({len(acts)} rows): allowed one per stepped "
                                 f"copy ({len(step_idx)})")
        opts = list(reset_options) if reset_options is not None else [None] * len(reset_idx)
        for o in opts:
            check_reset_options(o)
        for i, o in zip(reset_idx, opts, strict=True):
            self._reset_copy(i, o or {})
        if step_idx:
            self._apply_actions(step_idx, acts)
        return self._observe(step_idx, reset_idx)

    def ends_after_step(self, idx: list[int]) -> NDArray[np.bool_] | None:
        """Whether stepping copies ``idx`` terminates them, if that is known before the step
        (e.g. a shot budget); None when only the step can tell. Lets ``SB3VecEnv`` reset
        ending copies in the step's own call (``advance_and_reset``)."""
        return None

    def advance_and_reset(
        self,
        step_idx: Sequence[int],
        actions: NDArray[Any],
        then_reset: Sequence[int],
        reset_options: Sequence[dict[str, Any] | None] | None = None,
    ) -> tuple[FloatArray, FloatArray, NDArray[np.bool_], Sequence[dict[str, Any]], FloatArray,
               Sequence[dict[str, Any]]]:
        """Step ``step_idx``, then reset ``then_reset`` (a subset): the step's observations,
        rewards, terminated and infos, then the reset copies' first observations and infos.

        By default two ``advance`` calls; a core may do both in one measurement call, with
        the same result.
        """
        obs, rew, term, infos = self.advance(step_idx, actions)
        new_obs, _, _, new_infos = self.advance([], None, then_reset, reset_options)
        return obs, rew, term, infos, new_obs, new_infos

    def _apply_actions(self, idx: list[int], actions: NDArray[np.float64]) -> None:
        """Apply validated actions (n, A) to copies ``idx`` (distinct); per copy by default,
        a core may override it with one array operation over all copies."""
        for j, i in enumerate(idx):
            self._apply_action(i, actions[j])

    @abstractmethod
    def _reset_copy(self, i: int, options: dict[str, Any]) -> None:
        """Draw copy i's device and starting state from ``self.rngs[i]``."""

    @abstractmethod
    def _apply_action(self, i: int, action: FloatArray) -> None:
        """Apply a validated action in [−1, 1] to copy i (no device calls yet)."""

    @abstractmethod
    def _observe(
        self, step_idx: list[int], reset_idx: list[int]
    ) -> tuple[FloatArray, FloatArray, NDArray[np.bool_], Sequence[dict[str, Any]]]:
        """Run the batched measurements and truth, return obs, reward, terminated, infos."""

    def render_copy(self, i: int) -> NDArray[np.uint8]:
        raise NotImplementedError


class BatchedVectorEnv(VectorEnv):
    """A Gymnasium ``VectorEnv`` over a ``BatchedCore`` (next-step autoreset).

    Subclasses set ``core_class``; the constructor takes ``num_envs``,
    ``max_episode_steps`` (the time limit, as ``TimeLimit`` does for one env),
    ``render_mode`` and the environment's own keyword arguments.
    """

    core_class: type[BatchedCore]
    metadata: dict[str, Any] = {  # noqa: RUF012  (Gymnasium declares it an instance attribute)
        "autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": ["rgb_array"]}

    def __init__(
        self, num_envs: int = 1, *, max_episode_steps: int | None = None,
        render_mode: str | None = None, **kwargs: Any,
    ) -> None:
        if max_episode_steps is not None and (not isinstance(max_episode_steps, int) or max_episode_steps < 1):
            raise ValueError(f"max_episode_steps={max_episode_steps!r} is out of range: allowed an int >= 1 or None")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r} is out of range: allowed None or 'rgb_array'")
        self.core = self.core_class(num_envs=num_envs, **kwargs)  # type: ignore[call-arg]
        self.num_envs = self.core.num_envs
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.single_observation_space = self.core.observation_space
        self.single_action_space = self.core.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self._autoreset = np.zeros(self.num_envs, dtype=np.bool_)
        self._obs = np.zeros((self.num_envs, *self.single_observation_space.shape), dtype=np.float32)

    @property
    def unwrapped_devices(self) -> list[Any]:
        return list(getattr(self.core, "devices", []))

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None,
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Reset all copies (or those in ``options["reset_mask"]``).

        ``options`` go to every copy; ``options["per_copy"]``, a sequence of one dict per
        copy, adds copy-specific options (e.g. one evaluation device per copy).
        """
        check_reset_options(options)
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        per_copy = options.pop("per_copy", None)
        if per_copy is not None and len(per_copy) != self.num_envs:
            raise ValueError(f"options['per_copy'] has {len(per_copy)} entries: allowed one per copy ({self.num_envs})")
        for i, extra in enumerate(per_copy if per_copy is not None else ()):
            check_reset_options(extra, f"options['per_copy'][{i}]")
        copy_opts = [{**options, **((per_copy[i] or {}) if per_copy is not None else {})} for i in range(self.num_envs)]
        idx = list(range(self.num_envs)) if mask is None else [int(i) for i in np.flatnonzero(mask)]
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, int | np.integer):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"seed has {len(seeds)} entries: allowed one per copy ({self.num_envs})")
        for i in idx:
            self.core.seed_copy(i, seeds[i])
        obs, _, _, infos = self.core.advance([], None, idx, [copy_opts[i] for i in idx])
        self._obs[idx] = obs
        self._elapsed[idx] = 0
        self._autoreset[idx] = False
        return self._obs.copy(), self._batch_infos(infos, idx)

    def step(
        self, actions: NDArray[Any]
    ) -> tuple[NDArray[np.float32], NDArray[np.float64], NDArray[np.bool_], NDArray[np.bool_], dict[str, Any]]:
        a = np.asarray(actions)
        shape = (self.num_envs, *self.core.action_space.shape)
        if a.shape != shape:
            # Checked here, on the whole batch: the core sees only the rows of the copies
            # that step, and would name their shape instead of the one passed.
            raise ValueError(f"actions have shape {a.shape}: allowed {shape}, one row per copy "
                             f"(num_envs={self.num_envs}) of single_action_space.shape "
                             f"{self.core.action_space.shape}")
        reset_idx = self._autoreset.nonzero()[0].tolist()
        step_idx = (~self._autoreset).nonzero()[0].tolist() if reset_idx else list(range(self.num_envs))
        obs, rew, term, infos = self.core.advance(step_idx, a[step_idx] if reset_idx else a, reset_idx)
        order = step_idx + reset_idx
        if order == list(range(self.num_envs)):
            # Every copy stepped, or every copy reset (the usual case): rows in copy order.
            self._obs[:] = obs
            rewards = np.array(rew, dtype=np.float64)
            terminated = np.array(term, dtype=np.bool_)
        else:
            rewards = np.zeros(self.num_envs)
            terminated = np.zeros(self.num_envs, dtype=np.bool_)
            self._obs[order] = obs
            rewards[order] = rew
            terminated[order] = term
        self._elapsed += 1
        self._elapsed[reset_idx] = 0
        # As gymnasium.wrappers.TimeLimit: truncated at the limit even if also terminated
        # (never a copy that reset: its count is 0).
        truncated = (np.zeros(self.num_envs, dtype=np.bool_) if self.max_episode_steps is None
                     else self._elapsed >= self.max_episode_steps)
        self._autoreset = terminated | truncated
        return self._obs.copy(), rewards, terminated, truncated, self._batch_infos(infos, order)

    def _batch_infos(self, infos: Sequence[dict[str, Any]], order: list[int]) -> dict[str, Any]:
        """Gymnasium's vector info (``_add_info`` folded over the copies), built key by key.

        Folding ``_add_info`` allocates a few arrays per key and copy, a large share of a
        batched step; when every copy reports the same flat keys with scalar or same-shape
        array values, one array per key gives the identical result (dtype from the first
        copy's value, as ``_add_info`` takes it). Anything else takes the fold.
        """
        if not infos:
            return {}
        rows = np.asarray(order, dtype=np.int64)
        mask = np.zeros(self.num_envs, dtype=np.bool_)
        mask[rows] = True
        out: dict[str, Any] = {}
        if isinstance(infos, InfoColumns):
            every = order == list(range(self.num_envs))  # then a copy of a column is the array
            for key, column in infos.columns.items():
                if column.dtype.kind == "O":
                    # Dicts and optional strings (``info["limits"]``): Gymnasium's own fold
                    # of this key alone (a dict nests, a string gives an object array).
                    sub: dict[str, Any] = {}
                    for j, i in enumerate(order):
                        sub = self._add_info(sub, {key: column[j]}, i)
                    out.update(sub)
                    continue
                if every:
                    full = np.array(column, order="C")
                else:
                    full = np.zeros((self.num_envs, *column.shape[1:]), dtype=column.dtype)
                    full[rows] = column
                out[key] = full
                out[f"_{key}"] = mask.copy()
            return out
        keys = infos[0].keys()
        values: dict[str, list[Any]] = {}
        same_keys = all(info.keys() == keys for info in infos)
        for key in keys:
            col = [info[key] for info in infos] if same_keys else None
            if col is None or key == "final_obs":
                values = {}
                break
            first = col[0]
            kind = type(first)
            if kind in (int, float, bool) or issubclass(kind, np.number):
                if set(map(type, col)) != {kind}:
                    values = {}
                    break
            elif isinstance(first, np.ndarray):
                if not all(isinstance(v, np.ndarray) and v.shape == first.shape and v.dtype == first.dtype
                           for v in col):
                    values = {}
                    break
            else:
                values = {}
                break
            values[key] = col
        if len(values) != len(keys):
            vinfo: dict[str, Any] = {}
            for j, i in enumerate(order):
                vinfo = self._add_info(vinfo, infos[j], i)
            return vinfo
        for key, col in values.items():
            first = col[0]
            if isinstance(first, np.ndarray):
                arr = np.zeros((self.num_envs, *first.shape), dtype=first.dtype)
                arr[rows] = np.stack(col)
            else:
                arr = np.zeros(self.num_envs, dtype=type(first))
                arr[rows] = col
            out[key] = arr
            out[f"_{key}"] = mask.copy()
        return out

    def render(self) -> tuple[NDArray[np.uint8], ...] | None:
        if self.render_mode is None:
            return None
        return tuple(self.core.render_copy(i) for i in range(self.num_envs))


class SingleCoreEnv(gym.Env):
    """A ``gymnasium.Env`` over a core with one copy (the time limit lives in TimeLimit).

    A step after one that terminated raises ``gymnasium.error.ResetNeeded`` until
    ``reset`` (``episode_end`` says why, and how truncation is covered).
    """

    core_class: type[BatchedCore]
    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 4}  # noqa: RUF012

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r} is out of range: allowed None or 'rgb_array'")
        self.render_mode = render_mode
        self.core = self.core_class(num_envs=1, **kwargs)  # type: ignore[call-arg]
        self.observation_space = self.core.observation_space
        self.action_space = self.core.action_space
        # Steps of the current episode, and the step at which it terminated (None while it
        # runs; -1 before the first reset, -2 after a reset that raised).
        self._episode_steps = 0
        self._terminated_at: int | None = -1

    def env_description(self) -> EnvDescription:
        """The env's settings, pulse family, device preset and training sampler
        (``contract.EnvDescription``), for export manifests."""
        core = self.core
        names = getattr(core, "observation_names", None)
        return EnvDescription(getattr(core, "cfg", None), getattr(core, "gate", None),
                              getattr(core, "preset", None), getattr(core, "sampler", None),
                              names() if callable(names) else None)

    @property
    def device(self) -> Any:
        """The device of the current episode (the simulated one holds the true Transmon)."""
        return self.core.devices[0]  # type: ignore[attr-defined]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        self.core.rngs[0] = self.np_random
        # A reset that raises may leave the copy half drawn: it needs another reset.
        self._terminated_at = -2
        obs, _, _, infos = self.core.advance([], None, [0], [options])
        self._episode_steps = 0
        self._terminated_at = None
        return obs[0].astype(np.float32), infos[0]

    def step(self, action: Any) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """One step; ``ResetNeeded`` before the first reset and after a step that terminated.

        A terminated episode has no next step (the budget is spent, the horizon reached):
        stepping on would spend shots and device time past them. Truncation is the time
        limit's (``TimeLimit``, outside this env): ``episode_end.EpisodeEndEnforcing``
        refuses after it.
        """
        if self._terminated_at is not None:
            if self._terminated_at == -1:
                raise ResetNeeded("Cannot call env.step() before calling env.reset()")
            if self._terminated_at < 0:
                raise ResetNeeded("the last reset() raised: call reset() before step()")
            name = self.spec.id if self.spec is not None else type(self).__name__
            raise ResetNeeded(episode_ended_message(name, "terminated", self._terminated_at))
        a = np.asarray(action, dtype=np.float64)[None]
        obs, rew, term, infos = self.core.advance([0], a)
        self._episode_steps += 1
        terminated = bool(term[0])
        if terminated:
            self._terminated_at = self._episode_steps
        return obs[0].astype(np.float32), float(rew[0]), terminated, False, infos[0]

    def render(self) -> NDArray[np.uint8] | None:  # type: ignore[override]
        if self.render_mode is None:
            return None
        return self.core.render_copy(0)
