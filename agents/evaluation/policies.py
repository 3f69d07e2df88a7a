"""What the evaluation plays in the envs: a policy is anything with ``act(obs) -> action``.

``FunctionPolicy`` wraps a plain function (scripted agents, the all-zero action);
``SB3Policy`` adapts a Stable-Baselines3 model with its run's observation normalisation,
keeping a recurrent policy's state across an episode.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray


@runtime_checkable
class EvaluatedPolicy(Protocol):
    """What the evaluation plays in an env: anything that maps an observation to an
    action in the env's action space (an optional ``reset()`` starts an episode)."""

    def act(self, obs: NDArray[np.float32]) -> NDArray[np.float32]: ...


class FunctionPolicy:
    """A plain function ``obs -> action`` as an ``EvaluatedPolicy`` (optionally with a reset hook)."""

    def __init__(self, fn: Callable[[NDArray[np.float32]], Any], reset: Callable[[], None] | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"fn is {type(fn).__name__}: allowed a callable obs -> action")
        self._fn = fn
        self._reset = reset

    def act(self, obs: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray(self._fn(obs), dtype=np.float32)

    def reset(self) -> None:
        if self._reset is not None:
            self._reset()


class SB3Policy:
    """A Stable-Baselines3 model as an ``EvaluatedPolicy``: deterministic actions, recurrent state
    kept across an episode, the run's observation normalisation applied first.

    Args:
        model: a loaded ``BaseAlgorithm``.
        normalisation: the training run's observation transform (``export.ObservationNormalisation``,
            anything with ``apply(obs)``), or None when the run did not normalise.
    """

    def __init__(self, model: Any, normalisation: Any | None = None, deterministic: bool = True) -> None:
        if not hasattr(model, "predict"):
            raise TypeError(f"model is {type(model).__name__}: allowed a Stable-Baselines3 algorithm")
        self.model = model
        self.normalisation = normalisation
        self.deterministic = bool(deterministic)
        self.reset()

    def reset(self) -> None:
        self._state: Any = None
        self._start = np.ones((1,), dtype=bool)

    def act(self, obs: NDArray[np.float32]) -> NDArray[np.float32]:
        o = np.asarray(obs, dtype=np.float32)[None]
        if self.normalisation is not None:
            o = self.normalisation.apply(o)
        action, self._state = self.model.predict(o, state=self._state, episode_start=self._start,
                                                 deterministic=self.deterministic)
        self._start = np.zeros((1,), dtype=bool)
        return np.clip(np.asarray(action, dtype=np.float32)[0], -1.0, 1.0)

    @classmethod
    def load(cls, algo: str, model_path: str | Path, normalisation_path: str | Path | None = None) -> SB3Policy:
        """A model zip written by this project (``factory.load_algorithm``) and, optionally,
        its ``vecnormalize.npz`` (read without pickle)."""
        from pulsecal.agents.export import read_normalisation
        from pulsecal.agents.factory import load_algorithm

        norm = None if normalisation_path is None else read_normalisation(normalisation_path)
        return cls(load_algorithm(algo, model_path), norm)

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, algo: str) -> SB3Policy:
        """The final model of a training run directory (``model.zip``, newest ``-r<k>``
        revision, plus ``vecnormalize.npz`` when present)."""
        d = Path(run_dir)
        models = sorted(d.glob("model*.zip"), key=lambda p: p.stat().st_mtime)
        if not models:
            raise FileNotFoundError(f"run_dir={str(d)!r} holds no model*.zip: allowed a finished training run")
        norms = sorted(d.glob("vecnormalize*.npz"), key=lambda p: p.stat().st_mtime)
        return cls.load(algo, models[-1], norms[-1] if norms else None)
