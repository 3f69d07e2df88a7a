"""The end of an episode, enforced: no ``step`` after it ended until ``reset``.

Gymnasium leaves stepping an ended episode undefined; for a calibration env it is worse
than undefined, since every further step spends shots past the budget or device time past
the horizon. An env refuses such a step with ``gymnasium.error.ResetNeeded``, the error
Gymnasium's ``OrderEnforcing`` raises for a step before the first reset.

Where the refusal lives follows who ends the episode:

- termination is the env's own: ``vector.SingleCoreEnv`` refuses a step after a step that
  returned ``terminated=True``, however the env was built;
- truncation is the time limit's, and ``gym.make`` puts ``TimeLimit`` outside every other
  wrapper, so nothing inside it can see the limit (``gym.make(id, max_episode_steps=K)``
  tells only ``TimeLimit``). ``EpisodeEndEnforcing`` refuses after either end and has to
  sit outside ``TimeLimit``: every registered pulsecal id lists it in its spec's
  ``additional_wrappers``, which ``gym.make`` applies there (``registration`` says how
  ``gym.make_vec`` still builds the vector entry point). ``make`` adds it to an env whose
  spec does not.

Vector envs never raise for this: they autoreset (``BatchedVectorEnv`` in Gymnasium's
next-step mode, the SB3 adapter in the same step).
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
from gymnasium.error import ResetNeeded


def episode_ended_message(env_name: str, how: str, step: int) -> str:
    """The refusal of a step after the episode ended (``how``: terminated or truncated)."""
    return (f"{env_name}: the episode ended ({how}) at step {step}; "
            "call reset() before step()")


class EpisodeEndEnforcing(gym.Wrapper[Any, Any, Any, Any], gym.utils.RecordConstructorArgs):
    """Raise ``ResetNeeded`` on a ``step`` after one that returned terminated or truncated,
    until ``reset``. Put it outside ``TimeLimit`` (as ``make`` does) to see truncation."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self._steps = 0
        self._ended: str | None = None

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._ended is not None:
            name = self.spec.id if self.spec is not None else type(self.unwrapped).__name__
            raise ResetNeeded(episode_ended_message(name, self._ended, self._steps))
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        if terminated or truncated:
            self._ended = "terminated" if terminated else "truncated"
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        out = self.env.reset(seed=seed, options=options)
        # Only a reset that succeeded starts a new episode.
        self._steps = 0
        self._ended = None
        return out


def make(env_id: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """``gym.make(env_id, **kwargs)`` with ``EpisodeEndEnforcing`` outside its ``TimeLimit``,
    so that a step after truncation is refused as well as one after termination (a
    pulsecal id's spec already puts it there; it is not added twice)."""
    env = gym.make(env_id, **kwargs)
    if isinstance(env, EpisodeEndEnforcing):
        return env
    return EpisodeEndEnforcing(env)
