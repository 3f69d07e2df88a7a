"""Stable-Baselines3 agents for pulse calibration.

- ``factory``: SB3 / sb3-contrib algorithms from typed settings on batched envs.
- ``callbacks``: evaluation on held-out devices, checkpoints, early stop, info scalars.
- ``persistence``: atomic files, pickle-free normalisation statistics and replay buffers,
  checkpoints.
- ``training``: one resumable training run into a run directory; ``training_devices``:
  the device (or population) it trains on and its held-out evaluation devices.
- ``baselines``: the calibration baselines behind one ``Baseline`` protocol, by name.
- ``evaluation``: agents against the baselines on held-out devices, tables and plots.
- ``pipelines``: the console scripts' jobs (train, evaluate, demo, results, ...).
- ``provenance``: what a run directory records (config, command, versions, curve).

Nothing here reads a Hydra config; ``pulsecal.agents.pipelines.train`` converts one. This file
imports nothing eagerly: the lab-side runner in this package must import without
torch or Stable-Baselines3, so the names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "AlgorithmSpec": "factory",
    "build_algorithm": "factory",
    "load_algorithm": "factory",
    "make_vec_env": "factory",
    "wrap_normalization": "factory",
    "ALGORITHMS": "factory",
    "CheckpointCallback": "callbacks",
    "EvalOnDevicesCallback": "callbacks",
    "InfoScalarsCallback": "callbacks",
    "StopAtInfidelity": "callbacks",
    "Checkpoint": "persistence",
    "latest_checkpoint": "persistence",
    "list_checkpoints": "persistence",
    "load_normalization": "persistence",
    "save_checkpoint": "persistence",
    "save_normalization": "persistence",
    "load_replay_buffer": "persistence",
    "prune_replay_buffers": "persistence",
    "save_replay_buffer": "persistence",
    "TrainSettings": "training",
    "run_training": "training",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pulsecal.agents' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pulsecal.agents.{module}"), name)
