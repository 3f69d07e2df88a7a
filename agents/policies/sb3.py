"""A Stable-Baselines3 model with its training run's observation normalisation, as a policy.

The one SB3 adapter: ``pulsecal-replay policy=sb3`` builds it from a run directory
(``SB3Policy(run_dir)``), the evaluation from a run directory, a model zip or a loaded
model (``from_run_dir``, ``load``, ``from_model``). This module imports torch (through
``pulsecal.agents.factory``); only those two callers reach it, so replaying an exported
policy never does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml
from numpy.typing import DTypeLike, NDArray

from pulsecal.agents.export import read_normalisation
from pulsecal.agents.factory import ALGORITHMS, load_algorithm

from .onnx import file_sha256

# An LSTM policy's state and whether the next step starts an episode (SB3's episode_start).
SB3State = tuple[Any, bool]


class ObservationTransform(Protocol):
    """The run's observation normalisation (``export.ObservationNormalisation``, or anything
    mapping a batch of observations to the float32 batch the model saw in training)."""

    def apply(self, obs: NDArray[Any]) -> NDArray[np.float32]: ...


class SB3Policy:
    """An SB3 model as a ``pulsecal.hardware.policy.Policy``: the observation normalised as
    ``VecNormalize`` does at evaluation (clip((obs − mean)/sqrt(var + ε), ±clip_obs)),
    deterministic actions, a recurrent policy's LSTM state threaded through ``act``.

    ``SB3Policy(run_dir)`` reads a training run directory (``pulsecal.agents.training``
    layout): ``config.yaml`` (its ``agent.name`` picks the SB3 class), ``model.zip`` and the
    pickle-free statistics ``vecnormalize.npz`` + ``.json``. SB3's zip is the one
    pickle-bearing format accepted, and only for runs this project wrote.

    Two settings differ between the callers, and each keeps its own so the numbers do not
    move: replay normalises the journaled observation in float64 and passes the model's
    action through; the evaluation (``from_model`` and the constructors built on it) casts
    the env's observation to float32 first and clips the action to [-1, 1].

    Args:
        run_dir: the run directory.
        model: the model file inside it (a checkpoint's zip works too).
        normalization: the statistics file (None: the model saw raw observations).
        algo: SB3 algorithm name; default from ``config.yaml``.
    """

    def __init__(self, run_dir: str | Path, *, model: str = "model.zip",
                 normalization: str | None = "vecnormalize.npz", algo: str | None = None) -> None:
        path = Path(run_dir)
        if not path.is_dir():
            raise ValueError(f"SB3Policy.run_dir={str(run_dir)!r}: allowed a training run directory")
        if algo is None:
            algo = _algo_from_config(path / "config.yaml")
        if algo not in ALGORITHMS:
            raise ValueError(f"SB3Policy.algo={algo!r}: allowed {sorted(ALGORITHMS)}")
        norm = None
        if normalization is not None and (path / normalization).exists():
            norm = read_normalisation(path / normalization)
        self._setup(load_algorithm(algo, path / model, None, device="cpu"), norm, algo=algo, run_dir=path,
                    model_path=path / model, deterministic=True, observation_dtype=np.float64,
                    clip_actions=False)

    def _setup(self, model: Any, normalisation: ObservationTransform | None, *, algo: str | None,
               run_dir: Path | None, model_path: Path | None, deterministic: bool,
               observation_dtype: DTypeLike, clip_actions: bool) -> None:
        self.model = model
        self.normalisation = normalisation
        self.algo = algo
        self.run_dir = run_dir
        self.model_path = model_path
        self.deterministic = bool(deterministic)
        self.observation_dtype = np.dtype(observation_dtype)
        self.clip_actions = bool(clip_actions)

    @classmethod
    def from_model(cls, model: Any, normalisation: ObservationTransform | None = None, *,
                   deterministic: bool = True, observation_dtype: DTypeLike = np.float32,
                   clip_actions: bool = True, algo: str | None = None,
                   model_path: str | Path | None = None) -> SB3Policy:
        """A loaded SB3 algorithm, played as the evaluation plays it (by default: float32
        observations, actions clipped to [-1, 1]).

        Args:
            model: a loaded ``BaseAlgorithm`` (anything with SB3's ``predict``).
            normalisation: the run's observation transform, or None when it did not normalise.
            deterministic: the mode of the action distribution, not a sample.
            observation_dtype: the precision the observation is taken in before normalising.
            clip_actions: clip each action to [-1, 1].
            algo, model_path: what ``describe()`` records.
        """
        if not hasattr(model, "predict"):
            raise TypeError(f"SB3Policy.model is {type(model).__name__}: allowed a Stable-Baselines3 algorithm")
        policy = cls.__new__(cls)
        policy._setup(model, normalisation, algo=algo, run_dir=None,
                      model_path=None if model_path is None else Path(model_path), deterministic=deterministic,
                      observation_dtype=observation_dtype, clip_actions=clip_actions)
        return policy

    @classmethod
    def load(cls, algo: str, model_path: str | Path, normalisation_path: str | Path | None = None) -> SB3Policy:
        """A model zip written by this project (``factory.load_algorithm``) and, optionally,
        its ``vecnormalize.npz`` (read without pickle), played as the evaluation plays it."""
        norm = None if normalisation_path is None else read_normalisation(normalisation_path)
        return cls.from_model(load_algorithm(algo, model_path), norm, algo=algo, model_path=model_path)

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, algo: str) -> SB3Policy:
        """The final model of a training run directory (``model.zip``, newest ``-r<k>``
        revision, plus ``vecnormalize.npz`` when present), played as the evaluation plays it."""
        d = Path(run_dir)
        models = sorted(d.glob("model*.zip"), key=lambda p: p.stat().st_mtime)
        if not models:
            raise FileNotFoundError(f"run_dir={str(d)!r} holds no model*.zip: allowed a finished training run")
        norms = sorted(d.glob("vecnormalize*.npz"), key=lambda p: p.stat().st_mtime)
        policy = cls.load(algo, models[-1], norms[-1] if norms else None)
        policy.run_dir = d
        return policy

    @property
    def observation_space(self) -> Any:
        """The observation space the model was trained on (the env must give the same)."""
        return self.model.observation_space

    @property
    def action_space(self) -> Any:
        return self.model.action_space

    def describe(self) -> dict[str, Any]:
        return {"kind": "sb3", "run_dir": None if self.run_dir is None else str(self.run_dir), "algo": self.algo,
                "model_sha256": None if self.model_path is None else file_sha256(self.model_path),
                "normalized": self.normalisation is not None}

    def initial_state(self) -> SB3State:
        return (None, True)

    def normalize(self, observation: NDArray[Any]) -> NDArray[np.float32]:
        """The observation as the model saw it in training."""
        obs = np.asarray(observation, dtype=self.observation_dtype)[None]
        if self.normalisation is not None:
            obs = self.normalisation.apply(obs)
        return np.asarray(obs, dtype=np.float32)[0]

    def act(self, observation: NDArray[Any], state: SB3State) -> tuple[NDArray[np.float32], SB3State]:
        lstm_state, episode_start = state
        action, lstm_state = self.model.predict(self.normalize(observation)[None], state=lstm_state,
                                                episode_start=np.array([episode_start]),
                                                deterministic=self.deterministic)
        out = np.asarray(action, dtype=np.float32)[0]
        return (np.clip(out, -1.0, 1.0) if self.clip_actions else out), (lstm_state, False)


def _algo_from_config(path: Path) -> str:
    if not path.exists():
        raise ValueError(f"{path}: missing; pass algo= or point run_dir at a pulsecal training run")
    cfg = yaml.safe_load(path.read_text())
    name = (cfg or {}).get("agent", {}).get("name") if isinstance(cfg, dict) else None
    if not isinstance(name, str):
        raise ValueError(f"{path}: agent.name={name!r}: allowed an SB3 algorithm name")
    return name
