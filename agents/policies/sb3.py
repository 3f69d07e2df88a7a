"""A policy from a ``pulsecal-train`` run directory: the SB3 model with its normalisation.

This module imports torch (through ``pulsecal.agents.factory``); only the ``policy=sb3``
config reaches it, so replaying an exported policy never does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from pulsecal.agents.factory import ALGORITHMS, load_algorithm

from .onnx import file_sha256

# An LSTM policy's state and whether the next step starts an episode (SB3's episode_start).
SB3State = tuple[Any, bool]


class SB3Policy:
    """A policy from a training run directory (``pulsecal.agents.training`` layout):
    ``config.yaml`` (its ``agent.name`` picks the SB3 class), ``model.zip`` and the
    pickle-free normalisation statistics ``vecnormalize.npz`` + ``.json``.

    Observations are normalised exactly as ``VecNormalize`` does at evaluation
    (clip((obs − mean)/sqrt(var + ε), ±clip_obs)); actions are deterministic. SB3's zip is
    the one pickle-bearing format accepted, and only for runs this project wrote.

    Args:
        run_dir: the run directory.
        model: the model file inside it (a checkpoint's zip works too).
        normalization: the statistics file (None: the model saw raw observations).
        algo: SB3 algorithm name; default from ``config.yaml``.
    """

    def __init__(self, run_dir: str | Path, *, model: str = "model.zip",
                 normalization: str | None = "vecnormalize.npz", algo: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise ValueError(f"SB3Policy.run_dir={str(run_dir)!r}: allowed a training run directory")
        if algo is None:
            algo = _algo_from_config(self.run_dir / "config.yaml")
        if algo not in ALGORITHMS:
            raise ValueError(f"SB3Policy.algo={algo!r}: allowed {sorted(ALGORITHMS)}")
        self.algo = algo
        self.model_path = self.run_dir / model
        self.model = load_algorithm(algo, self.model_path, None, device="cpu")
        self._norm: dict[str, Any] | None = None
        if normalization is not None and (self.run_dir / normalization).exists():
            self._norm = _load_obs_normalization(self.run_dir / normalization)

    def describe(self) -> dict[str, Any]:
        return {"kind": "sb3", "run_dir": str(self.run_dir), "algo": self.algo,
                "model_sha256": file_sha256(self.model_path), "normalized": self._norm is not None}

    def initial_state(self) -> SB3State:
        return (None, True)

    def normalize(self, observation: NDArray[Any]) -> NDArray[np.float32]:
        obs = np.asarray(observation, dtype=np.float64)
        n = self._norm
        if n is None:
            return obs.astype(np.float32)
        z = (obs - n["mean"]) / np.sqrt(n["var"] + n["epsilon"])
        return np.clip(z, -n["clip_obs"], n["clip_obs"]).astype(np.float32)

    def act(self, observation: NDArray[Any], state: SB3State) -> tuple[NDArray[np.float32], SB3State]:
        lstm_state, episode_start = state
        action, lstm_state = self.model.predict(self.normalize(observation), state=lstm_state,
                                                episode_start=np.array([episode_start]), deterministic=True)
        return np.asarray(action, dtype=np.float32).reshape(-1), (lstm_state, False)


def _algo_from_config(path: Path) -> str:
    if not path.exists():
        raise ValueError(f"{path}: missing; pass algo= or point run_dir at a pulsecal training run")
    cfg = yaml.safe_load(path.read_text())
    name = (cfg or {}).get("agent", {}).get("name") if isinstance(cfg, dict) else None
    if not isinstance(name, str):
        raise ValueError(f"{path}: agent.name={name!r}: allowed an SB3 algorithm name")
    return name


def _load_obs_normalization(path: Path) -> dict[str, Any] | None:
    settings = json.loads(path.with_suffix(".json").read_text())
    if settings.get("format") != "pulsecal-vecnormalize-1":
        raise ValueError(f"{path.with_suffix('.json')}: format={settings.get('format')!r}: "
                         "allowed 'pulsecal-vecnormalize-1'")
    if not settings.get("norm_obs", False):
        return None
    with np.load(path, allow_pickle=False) as data:
        return {"mean": np.asarray(data["obs_mean"], dtype=np.float64),
                "var": np.asarray(data["obs_var"], dtype=np.float64),
                "epsilon": float(settings["epsilon"]), "clip_obs": float(settings["clip_obs"])}
